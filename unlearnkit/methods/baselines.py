"""Baselines the published methods are compared with: ``finetune``, ``gradient_ascent``, ``random_label``.

``retrain`` lives in :mod:`unlearnkit.methods.retrain` because it reuses the training loop.
Each baseline is a few epochs of SGD; its defaults follow the SalUn code's CIFAR-10 baselines in spirit
(few epochs, a small learning rate) and were scaled to this repository's small datasets.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch
from torch import nn
from tqdm.auto import tqdm

from ._common import loader_seed, make_generator, rebatch
from .base import History, UnlearnConfig, UnlearnData, register_method

__all__ = ["FinetuneConfig", "GradientAscentConfig", "RandomLabelConfig"]


def _sgd(model: nn.Module, lr: float, momentum: float, weight_decay: float) -> torch.optim.Optimizer:
    params = [p for p in model.parameters() if p.requires_grad]
    return torch.optim.SGD(params, lr=lr, momentum=momentum, weight_decay=weight_decay)


@dataclass
class _SGDConfig(UnlearnConfig):
    epochs: int = field(default=5, metadata={"help": "Passes over the data the method uses."})
    lr: float = field(default=0.01, metadata={"help": "SGD learning rate."})
    momentum: float = field(default=0.9, metadata={"help": "SGD momentum."})
    weight_decay: float = field(default=5e-4, metadata={"help": "SGD weight decay."})
    batch_size: int = field(default=64, metadata={"help": "Mini-batch size."})

    def validate(self) -> None:
        super().validate()
        self._check_range("epochs", 0, integer=True)
        self._check_range("lr", 0.0)
        self._check_range("momentum", 0.0, 1.0, hi_open=True)
        self._check_range("weight_decay", 0.0)
        self._check_range("batch_size", 1, integer=True)


def _run_epochs(model: nn.Module, loader: torch.utils.data.DataLoader, data: UnlearnData, cfg: _SGDConfig,
                sign: float, name: str, relabel: torch.Generator | None = None) -> History:
    """``cfg.epochs`` passes of SGD on ``sign * loss``; with ``relabel`` each batch gets random wrong labels."""
    hist: History = {f"{name}_loss": []}
    if cfg.epochs == 0 or cfg.lr == 0.0:
        return hist
    opt = _sgd(model, cfg.lr, cfg.momentum, cfg.weight_decay)
    model.train()
    for _ in tqdm(range(cfg.epochs), desc=name, disable=not data.progress, leave=False):
        for x, y in loader:
            x, y = x.to(data.device), y.to(data.device)
            if relabel is not None:
                y = _random_wrong_labels(y, int(data.num_classes or 0), relabel)
            loss = data.loss_fn(model(x), y)
            opt.zero_grad(set_to_none=True)
            (sign * loss).backward()
            opt.step()
            hist[f"{name}_loss"].append(loss.item())
    return hist


def _random_wrong_labels(y: torch.Tensor, num_classes: int, g: torch.Generator) -> torch.Tensor:
    """A label drawn uniformly among the classes other than ``y`` (as SalUn's random-label baseline does)."""
    if num_classes < 2:
        return y
    shift = torch.randint(1, num_classes, y.shape, generator=g).to(y.device)
    return (y + shift) % num_classes


# ---------------------------------------------------------------------------------------------------------------


@dataclass
class FinetuneConfig(_SGDConfig):
    """Fine-tune on the retain set only (catastrophic forgetting of the forget set); Golatkar et al. 2020's FT."""

    ZERO_STRENGTH: ClassVar[dict[str, Any]] = {"epochs": 0}
    epochs: int = field(default=5, metadata={"help": "Passes over the retain set."})
    lr: float = field(default=0.02, metadata={"help": "SGD learning rate."})


def finetune(model: nn.Module, data: UnlearnData, cfg: FinetuneConfig) -> History:
    loader = rebatch(data.retain, cfg.batch_size, shuffle=True, seed=loader_seed(cfg.seed, 1))  # type: ignore[arg-type]
    return _run_epochs(model, loader, data, cfg, +1.0, "retain")


@dataclass
class GradientAscentConfig(_SGDConfig):
    """Gradient ascent on the forget loss only (NegGrad); Thudi et al. 2022 / Graves et al. 2021."""

    ZERO_STRENGTH: ClassVar[dict[str, Any]] = {"lr": 0.0}
    epochs: int = field(default=3, metadata={"help": "Passes over the forget set."})
    lr: float = field(default=1e-3, metadata={"help": "SGD learning rate of the ascent."})
    momentum: float = field(default=0.0, metadata={"help": "SGD momentum."})
    weight_decay: float = field(default=0.0, metadata={"help": "SGD weight decay."})


def gradient_ascent(model: nn.Module, data: UnlearnData, cfg: GradientAscentConfig) -> History:
    loader = rebatch(data.forget, cfg.batch_size, shuffle=True, seed=loader_seed(cfg.seed, 1))  # type: ignore[arg-type]
    return _run_epochs(model, loader, data, cfg, -1.0, "forget")


@dataclass
class RandomLabelConfig(_SGDConfig):
    """Fine-tune on the forget set with random wrong labels mixed with the retain set; Golatkar et al. 2020."""

    ZERO_STRENGTH: ClassVar[dict[str, Any]] = {"epochs": 0}
    epochs: int = field(default=3, metadata={"help": "Passes over forget ∪ retain."})
    lr: float = field(default=0.01, metadata={"help": "SGD learning rate."})


def random_label(model: nn.Module, data: UnlearnData, cfg: RandomLabelConfig) -> History:
    hist: History = {"forget_loss": [], "retain_loss": []}
    if cfg.epochs == 0 or cfg.lr == 0.0:
        return hist
    g = make_generator(loader_seed(cfg.seed, 2))
    forget = rebatch(data.forget, cfg.batch_size, shuffle=True, seed=loader_seed(cfg.seed, 1))  # type: ignore[arg-type]
    retain = rebatch(data.retain, cfg.batch_size, shuffle=True, seed=loader_seed(cfg.seed, 3))  # type: ignore[arg-type]
    opt = _sgd(model, cfg.lr, cfg.momentum, cfg.weight_decay)
    model.train()
    for _ in tqdm(range(cfg.epochs), desc="random_label", disable=not data.progress, leave=False):
        # One forget batch (relabelled) then one retain batch, until the retain pass ends; forget cycles.
        fit = iter(forget)
        for xr, yr in retain:
            try:
                xf, yf = next(fit)
            except StopIteration:
                fit = iter(forget)
                xf, yf = next(fit)
            for x, y, key in ((xf, _random_wrong_labels(yf, int(data.num_classes or 0), g), "forget_loss"),
                              (xr, yr, "retain_loss")):
                x, y = x.to(data.device), y.to(data.device)
                loss = data.loss_fn(model(x), y)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                hist[key].append(loss.item())
    return hist


register_method("finetune", config_cls=FinetuneConfig, fn=finetune, is_baseline=True,
                summary="Fine-tune on the retain set only.",
                paper="Golatkar et al., Eternal Sunshine of the Spotless Net, CVPR 2020 (FT baseline)",
                requires_forget=False, supports_distributed=True, raises_forget_loss=False)
register_method("gradient_ascent", config_cls=GradientAscentConfig, fn=gradient_ascent, is_baseline=True,
                summary="Gradient ascent on the forget-set loss (NegGrad).",
                paper="Thudi et al., Unrolling SGD, EuroS&P 2022 (GA baseline)",
                requires_retain=False, supports_distributed=True)
register_method("random_label", config_cls=RandomLabelConfig, fn=random_label, is_baseline=True,
                summary="Train on forget samples with random wrong labels, interleaved with retain batches.",
                paper="Golatkar et al., CVPR 2020; Fan et al. SalUn, ICLR 2024 (RL baseline)",
                supports_distributed=True)
