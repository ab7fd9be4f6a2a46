"""``bad_teacher``: distil from a competent teacher on D_r and an incompetent (random) teacher on D_f.

Paper: Chundawat, Tarun, Mandal, Kankanhalli, "Can Bad Teaching Induce Forgetting? Unlearning in Deep Networks
Using an Incompetent Teacher", AAAI 2023, https://arxiv.org/abs/2205.08096. Official code:
https://github.com/vikram2000b/bad-teaching-unlearning (``unlearn.py``: ``UnlearnerLoss``, ``blindspot_unlearner``).
Compared against by SFR-on (re-run in its repository, whose settings are the default recipe).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import ConcatDataset, Subset
from tqdm.auto import tqdm

from ._common import loader_seed, make_generator, rebatch
from ._distill import frozen_copy, kl_to_teacher, random_init_copy
from ._labels import Tagged
from ._recipes import OptimRecipeConfig, epoch_lr, optimizer_step, set_lr
from .base import History, UnlearnData, register_method

__all__ = ["BadTeacherConfig", "bad_teacher_loss"]

_SALT_LOADER, _SALT_INIT, _SALT_SUBSET = 100_000, 600_000, 700_000


@dataclass
class BadTeacherConfig(OptimRecipeConfig):
    """Hyperparameters of :func:`bad_teacher`; recipes ``sfron`` (default) and ``official``."""

    ZERO_STRENGTH: ClassVar[dict[str, Any]] = {"epochs": 0}
    RECIPES: ClassVar[dict[str, dict[str, Any]]] = {
        # SFR-on repository, CIFAR-10 (spec sfron_salun.md §4.3): SGD 0.02 (momentum 0.9, batch 128 as all its
        # baselines; wd 5e-4 as its other SGD baselines), 10 epochs, cosine, KL temperature 1, KL with the
        # default 'mean' reduction; the whole retain set.
        "sfron": dict(epochs=10, lr=0.02, momentum=0.9, weight_decay=5e-4, batch_size=128, schedule="cosine",
                      optimizer="sgd", temperature=1.0, reduction="mean", retain_fraction=1.0),
        # Official code (unlearn.py: F.kl_div with its default 'mean' reduction; batch 256) as the SSD repository
        # calls it: Adam 1e-4, 1 epoch (the function's default is 10), KL temperature 1, a 30% random subset of the
        # retain set mixed with the forget set.
        "official": dict(epochs=1, lr=1e-4, momentum=0.0, weight_decay=0.0, batch_size=256, schedule="constant",
                         optimizer="adam", temperature=1.0, reduction="mean", retain_fraction=0.3),
    }
    recipe: str = field(default="sfron", metadata={
        "help": "'sfron' (the SFR-on repository's re-run) or 'official' (the paper's code)."})
    temperature: float | None = field(default=None, metadata={"help": "KL temperature (None: the recipe's)."})
    reduction: str | None = field(default=None, metadata={
        "help": "'mean' (per element: batch mean / num_classes; official and SFR-on) or 'batchmean' (the per-example "
                "KL, as DeepUnlearn's copy) (None: the recipe's)."})
    retain_fraction: float | None = field(default=None, metadata={
        "help": "Share of the retain set mixed with the forget set, a seeded random subset (None: the recipe's)."})

    def validate(self) -> None:
        super().validate()
        self._check_opt("temperature", 0.0, lo_open=True)
        self._check_opt_choice("reduction", ("mean", "batchmean"))
        self._check_opt("retain_fraction", 0.0, 1.0, lo_open=True)


def bad_teacher_loss(student_logits: torch.Tensor, is_forget: torch.Tensor, competent_logits: torch.Tensor,
                     incompetent_logits: torch.Tensor, temperature: float, reduction: str) -> torch.Tensor:
    """The official ``UnlearnerLoss``: KL from the student to the incompetent teacher's softmax on forget examples
    and to the competent teacher's on retain examples (both at temperature T)."""
    tag = is_forget.to(student_logits.dtype).unsqueeze(1)
    target = tag * F.softmax(incompetent_logits / temperature, dim=1) + \
        (1 - tag) * F.softmax(competent_logits / temperature, dim=1)
    return kl_to_teacher(student_logits, target, temperature, reduction=reduction)


def bad_teacher(model: nn.Module, data: UnlearnData, cfg: BadTeacherConfig) -> History:
    r"""Bad Teacher: the student (starting from θ_o) imitates θ_o on D_r and a randomly initialised model on D_f.

    Paper: Chundawat et al., "Can Bad Teaching Induce Forgetting?", AAAI 2023 (arXiv 2205.08096); official code
    https://github.com/vikram2000b/bad-teaching-unlearning.

    **Algorithm.** Competent teacher: a frozen copy of the original model. Incompetent teacher: a frozen copy with
    every layer re-initialised (seeded). Forget and retain examples are mixed in one shuffled loader, each tagged
    l = 1 (forget) or 0 (retain); per batch the target distribution is
    ``l·softmax(t_bad/T) + (1 − l)·softmax(t_good/T)`` and the loss is ``KL(target ‖ softmax(student/T))``
    (:func:`bad_teacher_loss`). Teachers run in eval mode, the student in train mode.

    **Recipes.** ``sfron`` (default; the SFR-on repository's re-run): SGD lr 0.02, momentum 0.9, weight decay 5e-4,
    10 epochs, cosine per epoch, batch 128, T = 1, the whole retain set, and KL with PyTorch's default ``'mean'``
    reduction, i.e. averaged over batch *and* classes: 1/num_classes of the per-example KL. That scaling is the
    official ``UnlearnerLoss``'s too (``F.kl_div`` default), kept on purpose (it acts as a smaller learning rate;
    ``reduction='batchmean'``, DeepUnlearn's copy, removes it). ``official``: Adam 1e-4, 1 epoch (as the SSD
    repository calls ``blindspot_unlearner``; the function's default is 10), batch 256, a 30% random subset of the
    retain set.

    **Deviations.** The SFR-on recipe's weight decay (5e-4) is assumed from its other SGD baselines; the
    official code's retain subset is drawn with Python's ``random`` (here a seeded torch permutation).
    """
    hist: History = {"kl": []}
    epochs, dev = cfg.get("epochs"), data.device
    if epochs == 0 or cfg.get("lr") == 0.0:
        return hist
    T, reduction = float(cfg.get("temperature")), cfg.get("reduction")
    good = frozen_copy(model)
    bad = random_init_copy(model, loader_seed(cfg.seed, _SALT_INIT))
    retain_ds = data.retain.dataset  # type: ignore[union-attr]
    frac = float(cfg.get("retain_fraction"))
    if frac < 1.0:
        n = len(retain_ds)
        keep = torch.randperm(n, generator=make_generator(loader_seed(cfg.seed, _SALT_SUBSET)))[:max(1, int(frac * n))]
        retain_ds = Subset(retain_ds, keep.sort().values.tolist())
    mixed = rebatch(ConcatDataset([Tagged(data.forget.dataset, True), Tagged(retain_ds, False)]),  # type: ignore[union-attr]
                    cfg.get("batch_size"), shuffle=True, seed=loader_seed(cfg.seed, _SALT_LOADER))
    opt = cfg.make_optimizer([p for p in model.parameters() if p.requires_grad])
    model.train()
    for epoch in tqdm(range(epochs), desc="bad_teacher", disable=not data.progress, leave=False):
        set_lr(opt, epoch_lr(cfg.get("lr"), cfg.get("schedule"), epoch, epochs))
        for x, _, is_f in mixed:
            x, is_f = x.to(dev), is_f.to(dev)
            with torch.no_grad():
                tg, tb = good(x), bad(x)
            hist["kl"].append(optimizer_step(opt, bad_teacher_loss(model(x), is_f, tg, tb, T, reduction)))
    return hist


register_method("bad_teacher", config_cls=BadTeacherConfig, fn=bad_teacher, is_baseline=True,
                summary="Distil the original model on the retain set and a randomly initialised one on the forget "
                        "set (competent / incompetent teachers).",
                paper="Chundawat et al., Can Bad Teaching Induce Forgetting?, AAAI 2023 (arXiv 2205.08096)",
                supports_distributed=True, task_note="its teachers' KL is over a softmax of one class per example")
