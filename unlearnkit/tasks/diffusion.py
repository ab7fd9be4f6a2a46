"""The ``generation`` task: class-conditional DDPM (ε-prediction) with classifier-free guidance.

Faithful to SFR-on's DDPM code as ``shared/specs/sfron_salun.md`` §2.1 describes it (itself built on the DDIM code of
Song et al., https://github.com/ermongroup/ddim, ``functions/losses.py``):

* linear β from 1e-4 to 0.02 over T = 1000 steps (T configurable);
* per-example loss ℓ_i = ‖ε − ε_θ(√ᾱ_t·x_0 + √(1−ᾱ_t)·ε, t, c)‖², summed over pixels, one t per example drawn
  antithetically (⌊n/2⌋+1 uniform draws t, then T−1−t, truncated to n), and the label replaced by the null class
  with probability 0.1 (cond_drop_prob) during the loss;
* classifier-free guidance ε̃ = (1+w)·ε_c − w·ε_∅ with w = 2 (the sampler and SFR-on's Fisher mask use it).

The task lives here (the lowest layer) so that methods can use it; the sampler and the training loop are in
:mod:`unlearnkit.diffusion`, which re-exports these pieces.

:meth:`DiffusionTask.loss` is the loss every task-agnostic method (``sfron``, ``salun``, ``gradient_ascent``,
``finetune``, ``retrain``) calls through ``data.task.loss``. The generation-specific steps of the two saliency
methods are task hooks, so each method keeps one code path:

* :meth:`DiffusionTask.mask_loss` — SFR-on's Fisher-mask loss (the *guided* prediction, no label drop);
* :meth:`DiffusionTask.relabel_loss` — SalUn's forget loss for diffusion (the prediction for the true class pulled
  towards a stop-gradient prediction for another class).

:data:`GENERATION_DEFAULTS` holds each method's settings on this task, from the spec (see the comments there).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from ..errors import ConfigError, IncompatibleModelError
from .base import Task, register_task

__all__ = ["GENERATION_DEFAULTS", "DiffusionTask", "LinearSchedule", "antithetic_timesteps", "diffusion_loss",
           "guided_eps"]


@dataclass(frozen=True)
class LinearSchedule:
    """DDPM's linear β schedule. ``alphas_cumprod[t]`` is ᾱ_t for t = 0..T−1 (float64 maths, float32 tensors)."""

    T: int = 1000
    beta_start: float = 1e-4
    beta_end: float = 0.02
    betas: torch.Tensor = field(init=False, repr=False, compare=False)
    alphas_cumprod: torch.Tensor = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not isinstance(self.T, int) or self.T < 2:
            raise ConfigError(f"LinearSchedule T must be an int >= 2, got {self.T!r}")
        if not 0.0 < self.beta_start <= self.beta_end < 1.0:
            raise ConfigError(f"need 0 < beta_start <= beta_end < 1, got {self.beta_start}, {self.beta_end}")
        betas = torch.linspace(self.beta_start, self.beta_end, self.T, dtype=torch.float64)
        object.__setattr__(self, "betas", betas.float())
        object.__setattr__(self, "alphas_cumprod", torch.cumprod(1.0 - betas, dim=0).float())


def _null_class(model: nn.Module, null_class: int | None = None) -> int:
    """The null label: ``null_class`` if given, else the (DDP-unwrapped) model's ``.null_class``."""
    if null_class is not None:
        return int(null_class)
    net = getattr(model, "module", model) if isinstance(model, nn.parallel.DistributedDataParallel) else model
    null = getattr(net, "null_class", None)
    if null is None:
        raise ConfigError("the generation task needs the model's null class (the model has no .null_class "
                          "attribute): use unlearnkit.models.unet.ConditionalUNet or pass null_class")
    return int(null)


def guided_eps(model: nn.Module, x: torch.Tensor, t: torch.Tensor, c: torch.Tensor, *, w: float = 2.0,
               null_class: int | None = None) -> torch.Tensor:
    """Classifier-free guidance: ε̃ = (1 + w)·ε(x, t, c) − w·ε(x, t, ∅), the spec's cond_scale w = 2.

    Both predictions come from one forward pass over the doubled batch (the same maths, half the Python overhead,
    and one forward per backward under DistributedDataParallel). ``w = 0`` returns the plain conditional
    prediction without the null pass.

    Args:
        model: ``model(x_t, t, c) -> ε``.
        x, t, c: noisy images, integer timesteps and class labels (one per row).
        w: guidance scale.
        null_class: the null label (default ``model.null_class``).
    """
    if w == 0:
        return model(x, t, c)
    null = _null_class(model, null_class)
    both = model(torch.cat([x, x]), torch.cat([t, t]), torch.cat([c, torch.full_like(c, null)]))
    eps_c, eps_null = both.chunk(2)
    return (1.0 + w) * eps_c - w * eps_null


def antithetic_timesteps(n: int, T: int, *, generator: torch.Generator | None = None,
                         device: torch.device | str | None = None) -> torch.Tensor:
    """One timestep per example: ⌊n/2⌋+1 uniform draws t in [0, T), then T−1−t, truncated to n (DDIM's code)."""
    t = torch.randint(0, T, (n // 2 + 1,), generator=generator)
    return torch.cat([t, T - 1 - t])[:n].to(device)


def _reduce(per: torch.Tensor, reduction: str) -> torch.Tensor:
    if reduction == "none":
        return per
    return per.mean() if reduction == "mean" else per.sum()


def _check_reduction(reduction: str) -> None:
    if reduction not in ("none", "mean", "sum"):
        raise ConfigError(f"reduction must be 'none', 'mean' or 'sum', got {reduction!r}")


def diffusion_loss(model: nn.Module, x0: torch.Tensor, y: torch.Tensor, schedule: LinearSchedule, *,
                   p_uncond: float = 0.1, null_class: int | None = None, reduction: str = "mean",
                   generator: torch.Generator | None = None) -> torch.Tensor:
    """ε-prediction loss of ``model`` on clean images ``x0`` with labels ``y``.

    Random draws, in this order, from ``generator`` (or torch's global RNG): the antithetic timesteps, the noise ε
    (shape of ``x0``), then the label-drop coin flips (one uniform per example; dropped when < ``p_uncond``).

    Args:
        reduction: ``"none"`` (per-example sums over pixels, shape ``(B,)``), ``"mean"`` or ``"sum"`` over the batch.

    Returns:
        The loss; differentiable in the model's parameters.
    """
    _check_reduction(reduction)
    if not 0.0 <= p_uncond <= 1.0:
        raise ConfigError(f"p_uncond must be in [0, 1], got {p_uncond}")
    null = _null_class(model, null_class)
    n, dev = x0.shape[0], x0.device
    t = antithetic_timesteps(n, schedule.T, generator=generator, device=dev)
    eps = torch.randn(x0.shape, generator=generator).to(dev)
    drop = torch.rand(n, generator=generator).to(dev) < p_uncond
    c = torch.where(drop, torch.full_like(y, null), y)
    a = schedule.alphas_cumprod.to(dev)[t].view(-1, *([1] * (x0.ndim - 1)))
    x_t = a.sqrt() * x0 + (1.0 - a).sqrt() * eps
    per = (eps - model(x_t, t, c)).square().flatten(1).sum(1)
    return _reduce(per, reduction)


class DiffusionTask(Task):
    """The ``generation`` task: a class-conditional ε-prediction model ``model(x_t, t, c)``; ``x`` are clean images
    in [−1, 1] and ``y`` their classes.

    ``loss(model, x, y, reduction)`` has the classification task's signature, so a method written against the task
    abstraction calls it unchanged. A diffusion model does not classify, so :meth:`correct` is not defined:
    generation is evaluated with :mod:`unlearnkit.evaluation.generation` (FA, judge-FD).

    Args:
        schedule: the noise schedule (default: linear, T = 1000).
        p_uncond: label-drop probability inside the loss (0.1 as the spec).
        guidance: the guidance scale w used by samplers and guided predictions (2.0 as the spec).
        generator: optional RNG for the loss's draws (default: torch's global RNG, which ``unlearn`` seeds with the
            config's seed).
    """

    name = "generation"

    def __init__(self, schedule: LinearSchedule | None = None, *, p_uncond: float = 0.1, guidance: float = 2.0,
                 generator: torch.Generator | None = None) -> None:
        if not 0.0 <= p_uncond <= 1.0:
            raise ConfigError(f"p_uncond must be in [0, 1], got {p_uncond}")
        self.schedule = schedule or LinearSchedule()
        self.p_uncond, self.guidance, self.generator = p_uncond, guidance, generator

    # -- the loss every method uses -------------------------------------------------------------------------------
    def loss(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, reduction: str = "mean") -> torch.Tensor:
        """The ε-prediction loss with antithetic timesteps and 10% label drop (see :func:`diffusion_loss`)."""
        return diffusion_loss(model, x, y, self.schedule, p_uncond=self.p_uncond, reduction=reduction,
                              generator=self.generator)

    # -- hooks of the generation-specific method steps ------------------------------------------------------------
    def guided(self, model: nn.Module, x_t: torch.Tensor, t: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        """The guided prediction ε̃ at scale ``self.guidance``."""
        return guided_eps(model, x_t, t, c, w=self.guidance)

    def _noised(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Uniform timesteps (one per row), noise ε and x_t, drawn in that order from ``self.generator``."""
        t = torch.randint(0, self.schedule.T, (x.shape[0],), generator=self.generator).to(x.device)
        eps = torch.randn(x.shape, generator=self.generator).to(x.device)
        a = self.schedule.alphas_cumprod.to(x.device)[t].view(-1, *([1] * (x.ndim - 1)))
        return t, eps, a.sqrt() * x + (1.0 - a).sqrt() * eps

    def mask_loss(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """SFR-on's Fisher-mask loss: mean over the batch of ‖ε − ε̃(x_t, t, y)‖² summed over pixels, with the
        *guided* prediction (scale ``self.guidance``), one uniform t per example and no label drop (spec §2.1,
        ``generate_fisher``: mode test, cond_scale 2). ``sfron`` runs it in eval mode and clips each batch gradient
        to norm 1 before squaring it (``SfronConfig.mask_grad_clip``)."""
        t, eps, x_t = self._noised(x)
        return (eps - self.guided(model, x_t, t, y)).square().flatten(1).sum(1).mean()

    guided_loss = mask_loss  # the name this loss had before the task hooks

    def relabel_loss(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, y_new: torch.Tensor,
                     reduction: str = "mean") -> torch.Tensor:
        """SalUn's diffusion forget loss: ‖ε_θ(x_t | y) − sg[ε_θ(x_t | y_new)]‖² summed over pixels, one uniform t
        per example (SalUn and SFR-on's ``rl`` use y_new = (y + 1) mod K); the target carries no gradient, so the
        prediction for the forgotten class is pulled towards the prediction for another class."""
        _check_reduction(reduction)
        t, _, x_t = self._noised(x)
        with torch.no_grad():
            target = model(x_t, t, y_new)
        per = (model(x_t, t, y) - target).square().flatten(1).sum(1)
        return _reduce(per, reduction)

    # -- what the API needs -------------------------------------------------------------------------------------
    def probe(self, model: nn.Module, x0: torch.Tensor) -> int | None:
        """One forward pass ``model(x0, t=0, c=0)``; the output must have the input's shape. Returns the number of
        real classes (``model.num_classes``) when the model says it."""
        t = torch.zeros(x0.shape[0], dtype=torch.long, device=x0.device)
        c = torch.zeros(x0.shape[0], dtype=torch.long, device=x0.device)
        out = model(x0, t, c)
        if not isinstance(out, torch.Tensor) or out.shape != x0.shape:
            raise IncompatibleModelError("a generation model must map (x_t, t, c) to a prediction of ε shaped like "
                                         f"x_t {tuple(x0.shape)}; got {getattr(out, 'shape', type(out))}")
        net = getattr(model, "module", model)
        k = getattr(net, "num_classes", None)
        return int(k) if k is not None else None

    def check_targets(self, y: torch.Tensor, num_outputs: int | None, where: str) -> str | None:
        if y.ndim != 1 or y.is_floating_point() or y.dtype == torch.bool:
            return (f"{where} labels must be integer class ids of shape (N,) for the generation task, got "
                    f"{y.dtype} of shape {tuple(y.shape)}")
        return None

    def __eq__(self, other: Any) -> bool:
        return (type(self) is type(other) and self.schedule == other.schedule and self.p_uncond == other.p_uncond
                and self.guidance == other.guidance)

    def __hash__(self) -> int:
        return hash((type(self), self.schedule, self.p_uncond, self.guidance))

    def __repr__(self) -> str:
        return f"DiffusionTask(T={self.schedule.T}, p_uncond={self.p_uncond}, guidance={self.guidance})"


# Each method's settings on the generation task, overriding its config defaults (the classification ones).
# Sources: spec sfron_salun.md §2.1 (SFR-on DDPM), §3.1 (SalUn DDPM), §4.2 (table). Iterations are optimiser
# iterations; sfron's and salun's are fixed counts in the official configs (not scaled by the data size).
GENERATION_DEFAULTS: dict[str, dict[str, Any]] = {
    # SFR-on DDPM (§2.1, §4.2): 150 iterations (config n_iters; checkpoints every 10), batch 128 forget / 128
    # remain, one forget step per iteration (forget_freq effectively 1), adaptive GA λ 0.5 (eps 1e-8), α 10
    # cosine-decayed, mask and clip 1.0 on the forget step, remain step clipped to 1.0, Adam lr 1e-4 (β1 0.9,
    # eps 1e-8, wd 0, no lr schedule), mask γ 1 from guided-prediction squared gradients clipped to 1 per batch.
    "sfron": dict(n_iters=150, batch_size=128, optimizer="adam", lr=1e-4, weight_decay=0.0, lr_schedule="constant",
                  forget_freq=1, forget_alpha=10.0, alpha_schedule="cosine", max_norm=1.0, remain_max_norm=1.0,
                  lam=0.5, weight_eps=1e-8, gamma=1.0, mask_grad_clip=1.0),
    # SalUn DDPM (§3.1): forget loss ‖ε(x_t|c) − sg ε(x_t|(c+1) mod K)‖² + 1e-3 × remain diffusion loss in one
    # step per iteration, 1000 iterations, batch 128, Adam lr 1e-4, grad clip 1.0 before the mask, top-50% mask;
    # gradients are only masked (the DDPM code predates the Feb 2026 weight reset; with Adam and wd 0 a weight
    # whose gradient is always masked never moves, so the reset would change nothing).
    "salun": dict(order="joint", n_iters=1000, batch_size=128, optimizer="adam", lr=1e-4, weight_decay=0.0,
                  schedule="constant", mask_fraction=0.5, max_norm=1.0, retain_weight=1e-3, relabel="next",
                  reset_unmasked=False),
    # Plain GA and FT have no DDPM settings in the spec: the DDPM unlearning optimiser of both codes (Adam 1e-4,
    # wd 0, batch 128, constant lr; GA clipped to 1.0 like the forget steps there) in train mode. Lengths are in
    # epochs (the recipes' unit): 150 forget epochs is 150 steps when the forget class fits one batch (digits),
    # sfron's iteration count; finetune's 17 remain epochs are 153 steps on digits' 1,131 remain images.
    "gradient_ascent": dict(epochs=150, batch_size=128, optimizer="adam", lr=1e-4, weight_decay=0.0,
                            schedule="constant", mode="train", max_norm=1.0),
    "finetune": dict(epochs=17, batch_size=128, optimizer="adam", lr=1e-4, weight_decay=0.0, schedule="constant"),
    # retrain: the original's recipe as a TrainRecipe (unlearnkit.diffusion.DIGITS_RECIPE: Adam 1e-3, batch 64,
    # about 61 epochs of digits' training split); training.train has no warm-up and no gradient clipping, which
    # DIGITS_RECIPE's train_diffusion adds (a documented deviation of the method; the CLI's reference model is
    # trained with train_diffusion like the original).
    "retrain": dict(epochs=61, batch_size=64, optimizer="adam", lr=1e-3, weight_decay=0.0),
}


DiffusionTask.method_defaults = GENERATION_DEFAULTS
register_task("generation", DiffusionTask)
