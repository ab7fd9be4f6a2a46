"""``fisher``: Fisher forgetting, Gaussian noise on the weights scaled by the inverse retain-set Fisher.

Paper: Golatkar, Achille, Soatto, "Eternal Sunshine of the Spotless Net: Selective Forgetting in Deep Networks",
CVPR 2020, https://arxiv.org/abs/1911.04933. Official code: https://github.com/AdityaGolatkar/SelectiveForgetting
(notebooks: ``hessian`` and ``get_mean_var``). Compared against by UNSIR, as its Fisher baseline.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch
from torch import nn

from ._common import loader_seed, make_generator, rebatch
from ._distill import unwrap
from ._saliency import expected_fisher_diagonal
from .base import History, UnlearnConfig, UnlearnData, register_method

__all__ = ["FisherConfig", "fisher_noise_scale", "head_parameters"]

_SALT_NOISE, _SALT_SAMPLE = 800_000, 900_000


@dataclass
class FisherConfig(UnlearnConfig):
    """Hyperparameters of :func:`fisher`; defaults are the official notebook's."""

    ZERO_STRENGTH: ClassVar[dict[str, Any]] = {"alpha": 0.0}

    alpha: float = field(default=1e-6, metadata={
        "help": "Noise scale α: variance = α / (Fisher + 1e-8), clamped (official notebook 1e-6; UNSIR tunes it). "
                "0 leaves the model unchanged."})
    classes: str = field(default="all", metadata={
        "help": "'all': the exact expectation over every class (official; num_classes per-example gradient passes); "
                "'sampled': one class per example drawn from the model's prediction (unbiased, one pass)."})
    batch_size: int = field(default=64, metadata={
        "help": "Examples per vectorised per-example-gradient pass (memory only; the estimate does not depend on "
                "it)."})

    def validate(self) -> None:
        super().validate()
        self._check_range("alpha", 0.0)
        self._check_range("batch_size", 1, integer=True)
        self._check_choice("classes", ("all", "sampled"))


def head_parameters(model: nn.Module, num_classes: int) -> set[str]:
    """Names of the weight and bias of the last Linear layer with ``num_classes`` outputs (the classifier)."""
    last = None
    for name, m in unwrap(model).named_modules():
        if isinstance(m, nn.Linear) and m.out_features == num_classes:
            last = name
    if last is None:
        return set()
    prefix = f"{last}." if last else ""
    return {f"{prefix}weight", f"{prefix}bias"}


def fisher_noise_scale(fisher: torch.Tensor, alpha: float, *, is_head: bool) -> torch.Tensor:
    """The official ``get_mean_var`` variance before the class rows: ``α·min(1/(F + 1e-8), 1e3)`` (1e2 for the
    head), averaged over dimension 1 for matrices and kernels (one variance per output unit and tap), ×10 for the
    head and for one-dimensional parameters (biases, normalisation)."""
    var = (1.0 / (fisher + 1e-8)).clamp(max=1e3)
    if is_head:
        var = var.clamp(max=1e2)
    var = alpha * var
    if var.ndim > 1:
        var = var.mean(dim=1, keepdim=True).expand_as(fisher).clone()
    return var


def fisher(model: nn.Module, data: UnlearnData, cfg: FisherConfig) -> History:
    r"""Fisher forgetting: θ ← μ + sqrt(Σ)·ε, ε ~ N(0, I), with Σ from the inverse diagonal Fisher on D_r.

    Paper: Golatkar et al., "Eternal Sunshine of the Spotless Net", CVPR 2020 (arXiv 1911.04933); official code
    https://github.com/AdityaGolatkar/SelectiveForgetting.

    **Algorithm.** The diagonal Fisher F of the retain set under the model's predictive distribution
    (:func:`~unlearnkit.methods._saliency.expected_fisher_diagonal`): weights the remaining data needs (large F)
    get little noise, the rest much. Per parameter (the official ``get_mean_var``)::

        var = α·min(1/(F + 1e-8), 1e3)           (1e2 for the classifier head)
        var = mean over dim 1 (matrices, kernels), broadcast back
        μ = θ;  for a class request, the head rows of the forgotten classes: μ = 0, var = 1e-4
        var ×10 for the head and for 1-d parameters (biases, normalisation)
        θ ← μ + sqrt(var)·ε

    **Cost**: one pass of per-example gradients over D_r for *each class* (the expectation over y), i.e.
    ``num_classes × |D_r|`` per-example gradients, vectorised in batches of ``batch_size``; no optimiser step.

    With ``classes='sampled'`` the expectation over y is estimated from one class per example drawn from the
    model's prediction (unbiased; ``num_classes`` times cheaper); the CLI's ``shapes`` preset uses it for cost.

    **Defaults**: α = 1e-6 (the official notebook's call; UNSIR tunes α per setting and does not publish it),
    ``classes='all'`` (the official exact expectation).

    **Deviations.** The official rule "head = any parameter whose first dimension equals num_classes" is replaced by
    the last Linear layer with ``num_classes`` outputs (a conv layer with ``num_classes`` channels would otherwise
    be treated as a head). Noise is drawn on a CPU generator seeded from ``cfg.seed`` (the same on every rank).
    """
    hist: History = {"mean_noise_std": []}
    if cfg.alpha == 0.0:
        return hist
    dev = data.device
    sample = make_generator(loader_seed(cfg.seed, _SALT_SAMPLE)) if cfg.classes == "sampled" else None
    fis = expected_fisher_diagonal(model, rebatch(data.retain, cfg.batch_size, shuffle=False), dev,  # type: ignore[arg-type]
                                   sample=sample)
    num_classes = int(data.num_classes or 0)
    head = head_parameters(model, num_classes)
    classes = list(data.forget_classes or [])
    g = make_generator(loader_seed(cfg.seed, _SALT_NOISE))
    stds = []
    with torch.no_grad():
        for name, p in unwrap(model).named_parameters():
            if not p.requires_grad:
                continue
            is_head = name in head
            var = fisher_noise_scale(fis[name], cfg.alpha, is_head=is_head)
            mu = p.detach().clone().float()
            if is_head and classes:
                mu[classes] = 0.0
                var[classes] = 1e-4
            if is_head or p.ndim == 1:
                var = var * 10.0
            noise = torch.randn(p.shape, generator=g).to(p.device)
            p.copy_((mu + var.sqrt() * noise).to(p.dtype))
            stds.append(float(var.sqrt().mean()))
    hist["mean_noise_std"].append(sum(stds) / max(len(stds), 1))
    return hist


register_method("fisher", config_cls=FisherConfig, fn=fisher, is_baseline=True,
                summary="Gaussian noise on the weights, scaled by the inverse diagonal Fisher of the retain set "
                        "(Fisher forgetting).",
                paper="Golatkar et al., Eternal Sunshine of the Spotless Net, CVPR 2020 (Fisher forgetting)",
                requires_forget=False, supports_distributed=True, raises_forget_loss=False,
                task_note="its Fisher samples one class per example from the model's softmax")
