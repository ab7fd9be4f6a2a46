"""Class-conditional DDPM pieces: the linear β schedule, the ε-prediction loss, a :class:`DiffusionTask`, a seeded
sampler (DDPM ancestral and DDIM with η) with classifier-free guidance, and a small training loop.

Faithful to SFR-on's DDPM code as ``../shared/specs/sfron_salun.md`` §2.1 describes it (itself built on the DDIM
code of Song et al., https://github.com/ermongroup/ddim, ``functions/losses.py`` and ``functions/denoising.py``):

* linear β from 1e-4 to 0.02 over T = 1000 steps (T configurable);
* per-example loss ℓ_i = ‖ε − ε_θ(√ᾱ_t·x_0 + √(1−ᾱ_t)·ε, t, c)‖², summed over pixels, one t per example drawn
  antithetically (⌊n/2⌋+1 uniform draws t, then T−1−t, truncated to n), and the label replaced by the null class
  with probability 0.1 (cond_drop_prob) during the loss;
* the "generalized" DDIM sampler with η, guided by ε̃ = (1+w)·ε_c − w·ε_∅ (w = 2).

The schedule, the loss, guidance and the task itself live in :mod:`unlearnkit.tasks.diffusion` (the task layer, so
that methods can use them) and are re-exported here.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import torch
from torch import nn
from torch.utils.data import Dataset

from .errors import ConfigError, DataError
from .tasks.diffusion import DiffusionTask, LinearSchedule, antithetic_timesteps, diffusion_loss, guided_eps

__all__ = ["DIGITS_RECIPE", "DiffusionTask", "LinearSchedule", "TrainDiffusionLog", "antithetic_timesteps",
           "diffusion_loss", "guided_eps", "sample", "train_diffusion"]


# --- sampling ------------------------------------------------------------------------------------------------------


@torch.no_grad()
def sample(model: nn.Module, classes: torch.Tensor | Sequence[int], *, schedule: LinearSchedule | None = None,
           method: Literal["ddpm", "ddim"] = "ddim", steps: int | None = None, eta: float = 0.0,
           guidance: float = 2.0, shape: tuple[int, ...] = (1, 16, 16), seed: int = 0,
           batch_size: int = 256) -> torch.Tensor:
    """Generate one image per entry of ``classes``, guided at scale ``guidance``; deterministic under ``seed``.

    * ``method="ddpm"``: ancestral sampling over all T steps, x_{t−1} = (x_t − β_t/√(1−ᾱ_t)·ε̃)/√α_t + σ_t·z with
      σ_t² = β̃_t = β_t(1−ᾱ_{t−1})/(1−ᾱ_t) (no noise at t = 0).
    * ``method="ddim"``: DDIM's generalized steps over ``steps`` timesteps 0, T/steps, ... (``steps=None``: all T),
      σ = η·√((1−ᾱ_{t'}/ᾱ_t)(1−ᾱ_{t'})/(1−ᾱ_t)). With ``steps = T`` and ``eta = 1`` this is the DDPM sampler above.

    The model is put in eval mode for the call and its mode restored. Noise comes from a CPU generator seeded with
    ``seed`` (initial noise for all rows first, then one draw per step per batch), so the output does not depend
    on the device's RNG; the images are returned clamped to [−1, 1] on the model's device.
    """
    sched = schedule or LinearSchedule()
    classes = torch.as_tensor(classes, dtype=torch.long)
    if method not in ("ddpm", "ddim"):
        raise ConfigError(f"sampler method must be 'ddpm' or 'ddim', got {method!r}")
    if method == "ddpm" and steps not in (None, sched.T):
        raise ConfigError(f"the ddpm sampler runs all T={sched.T} steps; use method='ddim' for steps={steps}")
    steps = sched.T if steps is None else steps
    if not isinstance(steps, int) or not 1 <= steps <= sched.T:
        raise ConfigError(f"steps must be an int in [1, T={sched.T}], got {steps!r}")
    if eta < 0:
        raise ConfigError(f"eta must be >= 0, got {eta}")
    dev = next(model.parameters()).device
    was_training = model.training
    model.eval()
    gen = torch.Generator().manual_seed(seed)
    out = []
    try:
        for start in range(0, len(classes), batch_size):
            c = classes[start:start + batch_size].to(dev)
            x = torch.randn((len(c), *shape), generator=gen).to(dev)
            if method == "ddpm":
                x = _ddpm_loop(model, x, c, sched, guidance, gen)
            else:
                x = _ddim_loop(model, x, c, sched, steps, eta, guidance, gen)
            out.append(x.clamp(-1.0, 1.0))
    finally:
        model.train(was_training)
    return torch.cat(out) if out else torch.empty((0, *shape), device=dev)


def _ddpm_loop(model: nn.Module, x: torch.Tensor, c: torch.Tensor, s: LinearSchedule, w: float,
               gen: torch.Generator) -> torch.Tensor:
    betas, abar = s.betas.double(), s.alphas_cumprod.double()
    for i in reversed(range(s.T)):
        t = torch.full((len(c),), i, dtype=torch.long, device=x.device)
        eps = guided_eps(model, x, t, c, w=w)
        ab_prev = abar[i - 1] if i > 0 else torch.tensor(1.0, dtype=torch.float64)
        mean = (x - float(betas[i] / (1 - abar[i]).sqrt()) * eps) / float((1 - betas[i]).sqrt())
        if i > 0:
            sigma = float((betas[i] * (1 - ab_prev) / (1 - abar[i])).sqrt())
            x = mean + sigma * torch.randn(x.shape, generator=gen).to(x.device)
        else:
            x = mean
    return x


def _ddim_loop(model: nn.Module, x: torch.Tensor, c: torch.Tensor, s: LinearSchedule, steps: int, eta: float,
               w: float, gen: torch.Generator) -> torch.Tensor:
    skip = s.T // steps
    seq = list(range(0, s.T, skip))[:steps]
    abar = s.alphas_cumprod.double()
    for k in reversed(range(len(seq))):
        i, j = seq[k], (seq[k - 1] if k > 0 else -1)
        at = abar[i]
        an = abar[j] if j >= 0 else torch.tensor(1.0, dtype=torch.float64)
        t = torch.full((len(c),), i, dtype=torch.long, device=x.device)
        eps = guided_eps(model, x, t, c, w=w)
        x0 = (x - float((1 - at).sqrt()) * eps) / float(at.sqrt())
        c1 = float(eta * ((1 - at / an) * (1 - an) / (1 - at)).sqrt())
        c2 = float((1 - an - c1 ** 2).clamp_min(0).sqrt())
        x = float(an.sqrt()) * x0 + c2 * eps
        if j >= 0 and c1 > 0:  # no noise on the final step (σ = 0 there), as the DDPM sampler
            x = x + c1 * torch.randn(x.shape, generator=gen).to(x.device)
    return x


# The recipe for the original model on 16x16 digits with the default ConditionalUNet (511k parameters): 1,200 Adam
# steps of batch 64 (about 61 epochs of the 1,257 training images). Measured once (a one-off script doing what
# benchmarks/diffusion_digits_fa.py does; that script itself was only smoke-run;
# OMP_NUM_THREADS=1, machine loaded by other jobs): 288 s CPU (4.8 min), 865 s wall; loss 189 -> 6.5 (sum over
# 256 pixels). With DDIM 50 steps, eta 0, w 2 the judge calls 99.5% of 200 generated 3s a 3 (FA).
DIGITS_RECIPE = {"steps": 1200, "batch_size": 64, "lr": 1e-3}


# --- training ------------------------------------------------------------------------------------------------------


@dataclass
class TrainDiffusionLog:
    """Per-step losses and timings of :func:`train_diffusion`."""

    losses: list[float]
    seconds: float
    cpu_seconds: float


def train_diffusion(model: nn.Module, dataset: Dataset, *, steps: int, batch_size: int = 128, lr: float = 1e-3,
                    seed: int = 0, schedule: LinearSchedule | None = None, p_uncond: float = 0.1,
                    grad_clip: float = 1.0, warmup: int = 100, cosine: bool = True) -> TrainDiffusionLog:
    """Train ``model`` in place for ``steps`` Adam steps on ``dataset`` (items ``(x, y)``, x in [−1, 1]).

    Adam (β 0.9/0.999, eps 1e-8, no weight decay) as the spec, gradient norm clipped to ``grad_clip`` (DDIM's
    config: 1.0), a linear warm-up over ``warmup`` steps then (``cosine``) a cosine decay to 0. Batches are drawn
    by reshuffling the dataset every epoch from a generator seeded by ``seed``; the loss's draws come from a second
    seeded generator, so training is deterministic under ``seed`` on CPU. Deviation: the DDIM CIFAR-10 recipe uses
    lr 2e-4 over 800k steps with EMA 0.9999; a few thousand steps on a CPU need a larger lr and a decaying schedule
    instead of EMA.
    """
    if not isinstance(steps, int) or steps < 0:
        raise ConfigError(f"steps must be an int >= 0, got {steps!r}")
    if batch_size < 1 or lr < 0 or grad_clip <= 0:
        raise ConfigError(f"need batch_size >= 1, lr >= 0, grad_clip > 0; got {batch_size}, {lr}, {grad_clip}")
    if len(dataset) == 0:
        raise DataError("train_diffusion got an empty dataset")
    sched = schedule or LinearSchedule()
    x_all = torch.stack([dataset[i][0] for i in range(len(dataset))])
    y_all = torch.stack([torch.as_tensor(dataset[i][1]) for i in range(len(dataset))]).long()
    dev = next(model.parameters()).device
    opt = torch.optim.Adam(model.parameters(), lr=lr, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0)

    def lr_at(k: int) -> float:
        f = min(1.0, (k + 1) / warmup) if warmup > 0 else 1.0
        if cosine and steps > 0:
            f *= 0.5 * (1.0 + torch.cos(torch.tensor(torch.pi * k / steps)).item())
        return lr * f

    order_gen = torch.Generator().manual_seed(seed)
    loss_gen = torch.Generator().manual_seed(seed + 1)
    model.train()
    losses: list[float] = []
    t0, c0 = time.perf_counter(), time.process_time()
    perm, pos = torch.randperm(len(y_all), generator=order_gen), 0
    for k in range(steps):
        if pos + batch_size > len(perm):
            perm, pos = torch.randperm(len(y_all), generator=order_gen), 0
        idx = perm[pos:pos + min(batch_size, len(perm))]
        pos += len(idx)
        for g in opt.param_groups:
            g["lr"] = lr_at(k)
        loss = diffusion_loss(model, x_all[idx].to(dev), y_all[idx].to(dev), sched, p_uncond=p_uncond,
                              generator=loss_gen)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
        opt.step()
        losses.append(float(loss.detach()))
    model.eval()
    return TrainDiffusionLog(losses=losses, seconds=time.perf_counter() - t0, cpu_seconds=time.process_time() - c0)
