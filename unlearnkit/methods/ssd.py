"""``ssd``: Selective Synaptic Dampening, a retrain-free, gradient-step-free edit of the weights.

Paper: Foster, Schoepf, Brintrup, "Fast Machine Unlearning Without Retraining Through Selective Synaptic
Dampening", AAAI 2024, https://arxiv.org/abs/2308.07707. Official code:
https://github.com/if-loops/selective-synaptic-dampening (``ssd.py``: ``ParameterPerturber.calc_importance`` and
``modify_weight``). Compared against by Deep Unlearning and ∇τ.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch
from torch import nn
from torch.utils.data import ConcatDataset

from ._common import rebatch
from ._saliency import squared_gradients, trainable_parameters
from .base import ANY_LOSS_TASK, History, UnlearnConfig, UnlearnData, register_method

__all__ = ["SsdConfig", "ssd_dampen_"]


@dataclass
class SsdConfig(UnlearnConfig):
    """Hyperparameters of :func:`ssd`; defaults are the official ones (``forget_random_main.py``)."""

    ZERO_STRENGTH: ClassVar[dict[str, Any]] = {"alpha": math.inf}

    alpha: float = field(default=10.0, metadata={
        "help": "Selection α: dampen parameters whose forget importance exceeds α times their importance on the "
                "whole training set (official 10; inf selects nothing)."})
    lam: float = field(default=1.0, metadata={
        "help": "Dampening λ: selected parameters are multiplied by min(λ·imp_D/imp_f, 1) (official 1)."})
    batch_size: int = field(default=128, metadata={
        "help": "Batch size of the two importance passes (official 128; the squared batch-mean gradient depends "
                "on it)."})

    def validate(self) -> None:
        super().validate()
        self._check_range("alpha", 0.0)
        self._check_range("lam", 0.0)
        self._check_range("batch_size", 1, integer=True)


@torch.no_grad()
def ssd_dampen_(model: nn.Module, imp_forget: dict[str, torch.Tensor], imp_full: dict[str, torch.Tensor],
                alpha: float, lam: float) -> dict[str, int]:
    r"""SSD's update, in place: where ``imp_f > α·imp_D``, ``θ ← θ·min(λ·imp_D/imp_f, 1)``; elsewhere θ unchanged.

    The comparison is strict, as in the official ``torch.where(fimp > oimp.mul(alpha))``. Parameters not selected
    are not written at all, so they stay bit-identical.

    Returns:
        ``{name: number of dampened elements}``.
    """
    counts = {}
    for name, p in trainable_parameters(model):
        f, d = imp_forget[name].to(p.device), imp_full[name].to(p.device)
        sel = f > d * alpha
        counts[name] = int(sel.sum())
        if counts[name]:
            factor = (d[sel] * lam / f[sel]).clamp(max=1.0)
            p[sel] = p[sel] * factor.to(p.dtype)
    return counts


def ssd(model: nn.Module, data: UnlearnData, cfg: SsdConfig) -> History:
    r"""SSD: dampen the parameters far more important to the forget set than to the training data.

    Paper: Foster et al., "Fast Machine Unlearning Without Retraining Through Selective Synaptic Dampening",
    AAAI 2024 (arXiv 2308.07707); official code https://github.com/if-loops/selective-synaptic-dampening.

    **Algorithm.** Importances are the diagonal of the empirical Fisher as the official ``calc_importance``
    estimates it: the squared gradient of each batch's mean cross-entropy, averaged over batches (the same
    estimator as SFR-on's mask, :func:`unlearnkit.methods._saliency.squared_gradients`; model in eval mode).
    ``imp_f`` is computed on D_f and ``imp_D`` on the full training set D = D_r ∪ D_f. Then, for every
    parameter element,

    .. math:: \theta \leftarrow \begin{cases} \theta \cdot \min(\lambda\, imp_D / imp_f,\ 1) &
              \text{if } imp_f > \alpha\, imp_D \\ \theta & \text{otherwise.} \end{cases}

    No gradient step is taken; the cost is one gradient pass over D_f and one over D.

    **Defaults** (official ``forget_random_main.py`` / ``forget_full_class_main.py``): α (selection weighting) 10,
    λ (dampening constant) 1, exponent 1 and upper bound 1 (fixed here), batch 128 for both passes, loaders not
    shuffled (forget set first-to-last; full set = retain then forget, as the official ``ConcatDataset``).

    **Deviations.** None in the algorithm. The official code's layer filters (``min_layer``/``max_layer``) are
    unused there and not offered. ``alpha=inf`` selects nothing (the zero-strength setting).
    """
    hist: History = {"dampened_fraction": []}
    if math.isinf(cfg.alpha):
        return hist  # nothing can be selected: not even the importance passes run
    dev = data.device
    forget_ds = data.forget.dataset  # type: ignore[union-attr]
    full_ds = ConcatDataset([data.retain.dataset, forget_ds])  # type: ignore[union-attr]
    imp_f = squared_gradients(model, rebatch(forget_ds, cfg.batch_size, shuffle=False), data.task, dev)
    imp_d = squared_gradients(model, rebatch(full_ds, cfg.batch_size, shuffle=False), data.task, dev)
    counts = ssd_dampen_(model, imp_f, imp_d, cfg.alpha, cfg.lam)
    total = sum(p.numel() for _, p in trainable_parameters(model))
    hist["dampened_fraction"].append(sum(counts.values()) / max(total, 1))
    return hist


register_method("ssd", config_cls=SsdConfig, fn=ssd, is_baseline=True,
                summary="Dampen the weights far more important (diagonal Fisher) to the forget set than to the "
                        "training data; no gradient step.",
                paper="Foster et al., Fast Machine Unlearning Without Retraining Through Selective Synaptic "
                      "Dampening, AAAI 2024 (arXiv 2308.07707)",
                supports_distributed=True, stochastic=False, tasks=ANY_LOSS_TASK)
