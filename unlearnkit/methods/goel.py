"""``cf_k`` and ``eu_k``: Goel et al.'s catastrophic forgetting / exact unlearning of the last k layers.

Paper: Goel, Prabhu, Sanyal, Lim, Torr, Kumaraguru, "Towards Adversarial Evaluation of Machine Unlearning"
(a.k.a. "Evaluating Inexact Unlearning Requires Revisiting Forgetting"), 2022, https://arxiv.org/abs/2201.06640;
official code https://github.com/shash42/Evaluating-Inexact-Unlearning. Deep Unlearning compares against both with
k = 1 (``goel`` in https://github.com/sangamesh-kodge/class_forgetting).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch
from torch import nn
from tqdm.auto import tqdm

from ..errors import IncompatibleModelError, UnlearnError
from ._common import loader_seed, rebatch
from ._distill import unwrap
from ._recipes import OptimRecipeConfig, epoch_lr, optimizer_step, set_lr
from .base import ANY_LOSS_TASK, History, UnlearnData, register_method

__all__ = ["CfkConfig", "EukConfig", "last_k_layers"]

_WEIGHT_LAYERS = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)
_SALT_RETAIN, _SALT_INIT = 100_000, 600_000


def last_k_layers(model: nn.Module, k: int) -> list[tuple[str, nn.Module]]:
    """The leaf modules from the k-th last weight layer (Linear/Conv) on, in ``named_modules`` order.

    A "layer" is a Linear or Conv module; the normalisation and other parametrised leaves that follow the first
    selected weight layer belong to it (a Conv-BN pair counts once). ``k`` larger than the number of weight
    layers selects every parametrised leaf from the first weight layer on.
    """
    leaves = [(n, m) for n, m in unwrap(model).named_modules()
              if not list(m.children()) and (list(m.parameters(recurse=False)) or list(m.buffers(recurse=False)))]
    weight_pos = [i for i, (_, m) in enumerate(leaves) if isinstance(m, _WEIGHT_LAYERS)]
    if not weight_pos or k <= 0:
        return []
    start = weight_pos[-min(k, len(weight_pos))]
    return leaves[start:]


def _validate_model(model: nn.Module) -> list[UnlearnError]:
    if not any(isinstance(m, _WEIGHT_LAYERS) for m in model.modules()):
        return [IncompatibleModelError("cf_k / eu_k train the last k Linear/Conv layers, and the model has none")]
    return []


@dataclass
class CfkConfig(OptimRecipeConfig):
    """Fine-tune only the last ``k`` layers on the retain set (CF-k)."""

    ZERO_STRENGTH: ClassVar[dict[str, Any]] = {"epochs": 0}
    RECIPES: ClassVar[dict[str, dict[str, Any]]] = {
        # DU's goel baseline: k = 1, retain set. The spec gives no optimiser values for it: FT's SFR-on recipe
        # (SGD 0.01, momentum 0.9, wd 5e-4, 10 epochs, cosine per epoch, batch 128).
        "du": dict(k=1, epochs=10, lr=0.01, momentum=0.9, weight_decay=5e-4, batch_size=128, schedule="cosine",
                   optimizer="sgd"),
    }
    recipe: str = field(default="du", metadata={"help": "'du' (Deep Unlearning's goel baseline, k = 1)."})
    k: int | None = field(default=None, metadata={"help": "Number of last Linear/Conv layers trained (None: 1)."})
    #: EU-k re-initialises the selected layers before training them.
    REINIT: ClassVar[bool] = False

    def validate(self) -> None:
        super().validate()
        self._check_opt("k", 1, integer=True)


@dataclass
class EukConfig(CfkConfig):
    """Re-initialise the last ``k`` layers, then train only them on the retain set (EU-k)."""

    REINIT: ClassVar[bool] = True


def _train_last_k(model: nn.Module, data: UnlearnData, cfg: CfkConfig) -> History:
    hist: History = {"retain_loss": [], "trained_params": []}
    epochs, dev = cfg.get("epochs"), data.device
    if epochs == 0:
        return hist
    chosen = last_k_layers(model, cfg.get("k"))
    chosen_ids = {id(m) for _, m in chosen}
    params = [p for _, m in chosen for p in m.parameters(recurse=False) if p.requires_grad]
    hist["trained_params"].append(float(sum(p.numel() for p in params)))
    inner = unwrap(model)
    if cfg.REINIT:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(loader_seed(cfg.seed, _SALT_INIT))  # the same draw on every rank
            for _, m in chosen:
                if hasattr(m, "reset_running_stats"):
                    m.reset_running_stats()
                if hasattr(m, "reset_parameters"):
                    m.reset_parameters()
    if cfg.get("lr") == 0.0 or not params:
        return hist
    # Outside DDP, freezing the other parameters lets backward stop at the first trained layer; under DDP every
    # parameter keeps its gradient (DDP expects them all) and the optimiser steps the chosen ones only.
    frozen = [] if inner is not model else [p for p in inner.parameters()
                                             if p.requires_grad and all(p is not q for q in params)]
    for p in frozen:
        p.requires_grad_(False)
    opt = cfg.make_optimizer(params)
    retain = rebatch(data.retain, cfg.get("batch_size"), shuffle=True, seed=loader_seed(cfg.seed, _SALT_RETAIN))  # type: ignore[arg-type]
    try:
        for epoch in tqdm(range(epochs), desc="eu_k" if cfg.REINIT else "cf_k", disable=not data.progress,
                          leave=False):
            set_lr(opt, epoch_lr(cfg.get("lr"), cfg.get("schedule"), epoch, epochs))
            # Only the chosen layers train; every other layer stays in eval mode (its statistics are untouched).
            model.train()
            for m in inner.modules():
                if not list(m.children()) and id(m) not in chosen_ids:
                    m.eval()
            for x, y in retain:
                hist["retain_loss"].append(optimizer_step(opt, data.task.loss(model, x.to(dev), y.to(dev))))
    finally:
        for p in frozen:
            p.requires_grad_(True)
    return hist


def cf_k(model: nn.Module, data: UnlearnData, cfg: CfkConfig) -> History:
    r"""CF-k: fine-tune only the last k layers on the retain set; the rest of the network is frozen.

    Paper: Goel et al., "Towards Adversarial Evaluation of Machine Unlearning", 2022 (arXiv 2201.06640); official
    code https://github.com/shash42/Evaluating-Inexact-Unlearning; compared against by Deep Unlearning (k = 1).

    **Layers.** The last k Linear/Conv modules in ``named_modules`` order, with the normalisation layers that
    follow them (:func:`last_k_layers`); for the built-in CNN, MLP and ResNet, k = 1 is the classifier head.
    Every other module stays in eval mode, so its weights *and* normalisation statistics are bit-identical
    afterwards.

    **Defaults** (recipe ``du``): k = 1; the spec gives DU's goel loop without optimiser values, so FT's SFR-on
    recipe is used: SGD lr 0.01, momentum 0.9, weight decay 5e-4, 10 epochs, cosine per epoch, batch 128.

    **Deviations.** The frozen layers are held in eval mode (the reference code freezes their parameters only);
    the choice makes "touches the last k layers only" exact.
    """
    return _train_last_k(model, data, cfg)


def eu_k(model: nn.Module, data: UnlearnData, cfg: EukConfig) -> History:
    r"""EU-k: re-initialise the last k layers (their ``reset_parameters``, seeded), then train only them on the
    retain set, so that what they hold comes from the retain set alone ("exact unlearning" of those layers).

    Paper and code as :func:`cf_k`; compared against by Deep Unlearning (k = 1). Same layer selection, loop and
    defaults as :func:`cf_k`. **Deviation**: Goel et al. train the re-initialised layers for the original training
    schedule; here the FT-sized recipe (10 epochs) is used for both, so EU-k may under-fit the retain set when
    k is large.
    """
    return _train_last_k(model, data, cfg)


register_method("cf_k", config_cls=CfkConfig, fn=cf_k, is_baseline=True,
                summary="Fine-tune only the last k layers on the retain set (catastrophic forgetting).",
                paper="Goel et al., Towards Adversarial Evaluation of Machine Unlearning, 2022 (CF-k)",
                requires_forget=False, supports_distributed=True, raises_forget_loss=False, touches="last_layer",
                validate_model=_validate_model, tasks=ANY_LOSS_TASK,
                class_note="cf_k has no forget-set term and trains only the last k layers on the kept classes, so "
                           "the class survives wherever those layers can still separate it (eu_k re-initialises "
                           "them first)")
register_method("eu_k", config_cls=EukConfig, fn=eu_k, is_baseline=True,
                summary="Re-initialise the last k layers and train only them on the retain set.",
                paper="Goel et al., Towards Adversarial Evaluation of Machine Unlearning, 2022 (EU-k)",
                requires_forget=False, supports_distributed=True, raises_forget_loss=False, touches="last_layer",
                validate_model=_validate_model, tasks=ANY_LOSS_TASK)
