"""``sfron``: SFR-on, saliency-masked, adaptively weighted forgetting with online remain-geometry correction.

Paper: Huang, Cheng, Zheng, Wang, He, Li, Huang, "Unified Gradient-Based Machine Unlearning with Remain Geometry
Enhancement", NeurIPS 2024 (spotlight), https://arxiv.org/abs/2409.19732. Official code:
https://github.com/K1nght/Unified-Unlearning-w-Remain-Geometry (``Classification/``, HEAD ``36bb7f6``).
The implementation follows ``shared/specs/sfron_salun.md`` §1 and §4.1 (classification) and §2.1 and §4.2 (class
forgetting in a class-conditional DDPM, the ``generation`` task, ``DDPM/`` of the official code): one code path,
whose task-specific pieces are the task's loss and its mask loss.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch
from torch import nn
from tqdm.auto import tqdm

from ..distributed import all_reduce_sum, world_size
from ..errors import ConfigError
from ._common import cycle, loader_seed, rebatch
from ._saliency import Mask, mask_fraction, mask_gradients, ratio_mask, squared_gradients, trainable_parameters
from .base import ANY_LOSS_TASK, History, UnlearnConfig, UnlearnData, register_method

__all__ = ["SfronConfig"]

# The spec's CIFAR-10 run: 1500 remain steps of batch 128 over a 45,000-image remain set (random 10% of 50,000).
_CIFAR_ITERS, _CIFAR_BATCH, _CIFAR_REMAIN = 1500, 128, 45_000
CIFAR_RETAIN_EPOCHS = _CIFAR_ITERS * _CIFAR_BATCH / _CIFAR_REMAIN  # = 4.2667 passes over the remain set

# Loader salts far apart: rebatch reseeds every pass with (seed + pass), so close salts would repeat orders.
_SALT_FORGET, _SALT_RETAIN, _SALT_FISHER_F, _SALT_FISHER_R = 100_000, 200_000, 300_000, 400_000


# ---------------------------------------------------------------------------------------------------------------
# Config
# ---------------------------------------------------------------------------------------------------------------


@dataclass
class SfronConfig(UnlearnConfig):
    """Hyperparameters of :func:`sfron`; defaults are the official CIFAR-10 classification settings (spec §4.1).

    The number of iterations is given in *remain epochs* so that it scales with the dataset:
    ``n_iters = round(retain_epochs * |D_r| / batch_size)`` (``batch_size`` is the global batch under
    torch.distributed), and ``retain_epochs`` defaults to 1500·128/45000 ≈ 4.267, which reproduces the official
    1500 iterations on CIFAR-10. Set ``n_iters`` to fix the count instead.
    """

    ZERO_STRENGTH: ClassVar[dict[str, Any]] = {"n_iters": 0}

    retain_epochs: float = field(default=CIFAR_RETAIN_EPOCHS, metadata={
        "help": "Length of the run in passes over the remain set (n_iters = round(retain_epochs*|D_r|/batch)); "
                "default 1500*128/45000, the official CIFAR-10 run."})
    n_iters: int | None = field(default=None, metadata={
        "help": "Number of iterations (remain steps); overrides retain_epochs when set."})
    lr: float = field(default=0.01, metadata={"help": "Learning rate of the shared optimiser (both step kinds)."})
    momentum: float = field(default=0.9, metadata={"help": "SGD momentum (buffer shared by forget and remain steps)."})
    weight_decay: float = field(default=5e-4, metadata={"help": "Weight decay of the shared optimiser."})
    optimizer: str = field(default="sgd", metadata={
        "help": "'sgd' (CIFAR-10 default), 'adamw' (the TinyImageNet block of the official code) or 'adam' (DDPM: "
                "Adam, betas 0.9/0.999, eps 1e-8)."})
    lr_schedule: str = field(default="cosine", metadata={
        "help": "Learning rate over the run: 'cosine' (to 0, stepped per iteration; classification) or 'constant' "
                "(DDPM)."})
    batch_size: int = field(default=128, metadata={"help": "Batch size of forget and remain batches."})
    mask_batch_size: int | None = field(default=None, metadata={
        "help": "Batch size of the two squared-gradient passes of the saliency mask (None: batch_size, as the "
                "official code, whose one loader serves both)."})
    forget_freq: int = field(default=5, metadata={
        "help": "A forget step every forget_freq iterations (before that iteration's remain step)."})
    forget_alpha: float = field(default=25.0, metadata={"help": "Scale α of the forget (ascent) loss at step 0."})
    alpha_schedule: str = field(default="cosine", metadata={
        "help": "Decay of α over the run: 'cosine' (default), 'linear' or 'constant'."})
    max_norm: float | None = field(default=7.0, metadata={
        "help": "Gradient-norm clip of forget steps; None disables."})
    remain_max_norm: float | None = field(default=None, metadata={
        "help": "Gradient-norm clip of remain steps; None (classification: never clipped) disables; DDPM: 1.0."})
    lam: float = field(default=0.5, metadata={
        "help": "Temperature λ of the adaptive forget weights w_i ∝ loss_i^-λ; 0 gives plain gradient ascent."})
    weight_eps: float = field(default=1e-15, metadata={
        "help": "The eps of the adaptive weights c_i = 1/(loss_i^λ + eps): 1e-15 in the classification code, 1e-8 "
                "in the DDPM code."})
    gamma: float = field(default=1.0, metadata={
        "help": "Saliency threshold γ: keep weights whose forget/remain squared-gradient ratio is >= γ."})
    use_mask: bool = field(default=True, metadata={"help": "Apply the saliency mask to forget steps (the 'S')."})
    mask_grad_clip: float | None = field(default=None, metadata={
        "help": "Clip each batch gradient of the mask passes to this norm before squaring it (DDPM: 1.0); None "
                "(classification) does not clip."})

    def validate(self) -> None:
        super().validate()
        self._check_range("retain_epochs", 0.0)
        if self.n_iters is not None:
            self._check_range("n_iters", 0, integer=True)
        self._check_range("lr", 0.0)
        self._check_range("momentum", 0.0, 1.0, hi_open=True)
        self._check_range("weight_decay", 0.0)
        self._check_choice("optimizer", ("sgd", "adamw", "adam"))
        self._check_choice("lr_schedule", ("cosine", "constant"))
        self._check_range("batch_size", 1, integer=True)
        if self.mask_batch_size is not None:
            self._check_range("mask_batch_size", 1, integer=True)
        self._check_range("forget_freq", 1, integer=True)
        self._check_range("forget_alpha", 0.0)
        self._check_choice("alpha_schedule", ("cosine", "linear", "constant"))
        for name in ("max_norm", "remain_max_norm", "mask_grad_clip"):
            if getattr(self, name) is not None:
                self._check_range(name, 0.0, lo_open=True)
        self._check_range("lam", 0.0)
        self._check_range("weight_eps", 0.0, lo_open=True)
        self._check_range("gamma", 0.0, lo_open=True)
        if not isinstance(self.use_mask, bool):
            raise ConfigError(f"SfronConfig.use_mask must be a bool, got {self.use_mask!r}")
        for name in ("retain_epochs", "forget_alpha", "lam", "gamma", "lr"):
            if math.isinf(float(getattr(self, name))):
                raise ConfigError(f"SfronConfig.{name} must be finite, got {getattr(self, name)!r}")


# ---------------------------------------------------------------------------------------------------------------
# Pieces
# ---------------------------------------------------------------------------------------------------------------


def adaptive_forget_weights(losses: torch.Tensor, lam: float, *, eps: float = 1e-15) -> torch.Tensor:
    """SFR-on's per-sample forget weights ``w_i = c_i / Σ_j c_j`` with ``c_i = 1 / (ℓ_i^λ + eps)`` (spec §1.4).

    Computed on detached losses, so the weights carry no gradient. Equivalent to ``softmax(-λ·log ℓ)``: samples
    whose loss is still small (still memorised) get more weight; λ = 0 gives uniform weights (plain ascent).
    Under torch.distributed the normaliser ``Σ_j c_j`` is summed over the ranks, so the weights are normalised
    over the global batch and sum to one across ranks.

    Args:
        losses: per-sample losses, shape ``(B,)``, non-negative.
        lam: temperature λ >= 0.

    Returns:
        Weights of shape ``(B,)``.

    Raises:
        ValueError: ``losses`` is not one-dimensional.
    """
    if losses.ndim != 1:
        raise ValueError(f"per-sample losses must have shape (batch,), got {tuple(losses.shape)}: pass the "
                         "loss with reduction='none'")
    c = 1.0 / (losses.detach().clamp_min(0.0).pow(lam) + eps)
    total = all_reduce_sum(c.sum().reshape(1).clone())
    return c / total


def _alpha(cfg: SfronConfig, step: int, n_iters: int) -> float:
    if cfg.alpha_schedule == "cosine":
        return cfg.forget_alpha * (1.0 + math.cos(math.pi * step / n_iters)) / 2.0
    if cfg.alpha_schedule == "linear":
        return cfg.forget_alpha * (1.0 - step / n_iters)
    return cfg.forget_alpha


def _cosine_lr(base: float, step: int, n_iters: int) -> float:
    # The closed form of torch's CosineAnnealingLR(T_max=n_iters, eta_min=0) stepped once per iteration.
    return base * (1.0 + math.cos(math.pi * step / n_iters)) / 2.0


def _clip(model: nn.Module, max_norm: float | None) -> None:
    if max_norm is not None:
        torch.nn.utils.clip_grad_norm_([p for _, p in trainable_parameters(model)], max_norm)


def _forget_step(model: nn.Module, opt: torch.optim.Optimizer, x: torch.Tensor, y: torch.Tensor,
                 data: UnlearnData, cfg: SfronConfig, alpha: float, mask: Mask | None) -> float:
    """One masked, clipped, weighted ascent step; returns the (unweighted) mean forget loss of the batch."""
    losses = data.task.loss(model, x, y, reduction="none")
    w = adaptive_forget_weights(losses, cfg.lam, eps=cfg.weight_eps)
    # DDP averages gradients over ranks; scaling by the world size makes the result the gradient of the
    # globally weighted sum Σ_i w_i ℓ_i (a no-op in one process).
    weighted = (w * losses).sum() * world_size()
    opt.zero_grad(set_to_none=True)
    (-alpha * weighted).backward()
    if mask is not None:
        mask_gradients(model, mask)
    _clip(model, cfg.max_norm)
    opt.step()
    return float(losses.detach().mean())


def _remain_step(model: nn.Module, opt: torch.optim.Optimizer, x: torch.Tensor, y: torch.Tensor,
                 data: UnlearnData, cfg: SfronConfig) -> float:
    loss = data.task.loss(model, x, y)
    opt.zero_grad(set_to_none=True)
    loss.backward()
    _clip(model, cfg.remain_max_norm)
    opt.step()
    return float(loss.detach())


def _num_iters(cfg: SfronConfig, retain_loader: torch.utils.data.DataLoader) -> int:
    if cfg.n_iters is not None:
        return cfg.n_iters
    if cfg.retain_epochs == 0:
        return 0
    # batch_size is the global batch (rebatch shards it across ranks), so count the whole remain set.
    n_remain = len(retain_loader.dataset)  # type: ignore[arg-type]
    return max(1, round(cfg.retain_epochs * n_remain / cfg.batch_size))


# ---------------------------------------------------------------------------------------------------------------
# The method
# ---------------------------------------------------------------------------------------------------------------


def sfron(model: nn.Module, data: UnlearnData, cfg: SfronConfig) -> History:
    r"""SFR-on: masked, adaptively weighted gradient ascent on D_f alternated with descent on D_r.

    Paper: Huang et al., "Unified Gradient-Based Machine Unlearning with Remain Geometry Enhancement", NeurIPS 2024,
    https://arxiv.org/abs/2409.19732; official code https://github.com/K1nght/Unified-Unlearning-w-Remain-Geometry.

    **Algorithm.** Unlearning is cast as steepest descent towards the retrained model under a metric that
    preserves the remain-set outputs (to second order the remain-loss Hessian H_r). H_r is never formed: a
    *fast-slow* ("online") alternation approximates it, because the remain gradient taken after a forget step
    δ_f is ∇L_r(θ) + H_r·δ_f, so the pair of steps damps the forget step along high-curvature remain directions.
    Before the loop, a saliency mask m is computed once (on the model as given, in eval mode): the squared
    gradient of the batch-mean loss averaged over one pass of D_f (F_f) and of D_r (F_r), and
    m = [(F_f + 1e-15) / (F_r + 1e-15) >= γ] for every element of every trainable tensor (heads and
    normalisation affine parameters included). The loop then runs, with one optimiser and one momentum buffer::

        for t in 0..n_iters-1:                              # model in train mode
            lr_t = lr·(1 + cos(π t / n_iters))/2
            if t % forget_freq == 0:
                α_t = forget_alpha·(1 + cos(π t / n_iters))/2
                c_i = 1/(ℓ_i^λ + 1e-15) (detached);  w_i = c_i / Σ_j c_j   # on a forget batch
                g   = m ⊙ ∇(−α_t Σ_i w_i ℓ_i);  clip ‖g‖ to max_norm;  optimiser step
            g = ∇ mean CE on a remain batch (no mask, no clip);  optimiser step

    so the effective forget step decays as cos² (lr and α both decay).

    **Defaults** (spec §4.1, official CIFAR-10 ResNet-18 random-10% settings): SGD lr 0.01, momentum 0.9,
    weight decay 5e-4, cosine lr to 0 over the run; forget_freq 5; forget_alpha 25, cosine-decayed; clip 7.0 on
    forget steps only; λ = 0.5 (adaptive weights, "adaga"); mask on, γ = 1.0; batch 128 for both sets, and for
    the mask's passes (``mask_batch_size=None`` follows ``batch_size``, as the official code's single loader).
    **Length**: the official run has 1500 iterations on a 45,000-image remain set with batch 128, i.e.
    4.267 remain epochs (and, for a 10% request, 7.68 forget epochs). Here the length is set in remain epochs,
    ``n_iters = round(retain_epochs·|D_r|/batch_size)`` with ``retain_epochs = 1500·128/45000``, which gives
    exactly 1500 on CIFAR-10 and keeps the number of passes over each set constant on smaller datasets
    (``batch_size`` is the global batch under torch.distributed). ``n_iters`` overrides it.

    **Random-subset vs class requests.** The official code releases random-subset settings only; for a class
    request the same algorithm runs with D_f = every training example of the forgotten classes and D_r = all
    other examples (spec §1.6). Which request it is only matters to the evaluation (forgotten- vs remaining-class
    test accuracy); the spec gives no class-wise hyperparameters, so the config keeps the official defaults. The
    CLI's presets (``unlearnkit/presets.py``) adjust them for class requests on the embedded datasets, chosen on
    seed 0's validation split: twice the length on ``digits`` (the official length is only 38 iterations there)
    and a forget-step clip of 1.0 instead of 7.0 on ``shapes`` (at 7.0 the whole-class ascent cost 8.5 points of
    kept-class accuracy). For random subsets of ``shapes`` the preset sets the run by its cost: the paper's run
    costs 1/26 of its 200-epoch retrain (RTE 26), while the official length in passes costs ~1/3 of the 30-epoch
    retrain used here; the preset runs 0.5 remain passes at batch 16 (141 iterations; at batch 128 the official
    length is only 150 iterations on 4,500 images and left the forget set untouched) and keeps the mask's passes
    on the official batch of 128 (``mask_batch_size``). See the README's method notes for the numbers.

    **Deviations from the official code** (each a choice the spec leaves open or a bug it lists):

    * The mask is recomputed on every call and never cached on disk (the official cache is not keyed by the seed,
      spec pitfall 2); its cost is part of the method's wall time, as the paper's RTE ablation implies.
    * Data augmentation is whatever the caller's loaders apply; unlearnkit's in-memory datasets have none, so
      the Fisher passes and the steps see un-augmented inputs (the official code augments both).
    * The "EMA/slow model" path is omitted: its default β = 1.0 makes it a no-op (spec pitfall 7).
    * The lr follows the closed form of ``CosineAnnealingLR`` instead of its recursive update (same values up
      to rounding). ``alpha_schedule='linear'``/``'constant'`` and ``optimizer='adamw'`` are the code's
      non-default options; ``expdecay`` is not provided.
    * Under torch.distributed the adaptive weights are normalised over the global batch (the normaliser is
      all-reduced) and the squared-gradient sums and batch counts are all-reduced, so every rank holds the same
      mask and applies the same update.

    As in the official code, forget steps run in train mode (normalisation statistics see forget batches), and
    weight decay and momentum still move masked-out weights during forget steps: the mask multiplies only the raw
    gradient.

    **Generation** (task ``generation``, a class-conditional DDPM; spec §2.1 and §4.2, official ``DDPM/``). The same
    loop with the task's ε-prediction loss (one antithetic timestep per example, labels dropped with probability
    0.1, as the official forget loss keeps), so ℓ_i is the per-example ε-loss summed over pixels. The settings
    are :data:`unlearnkit.tasks.diffusion.GENERATION_DEFAULTS` (``config_for_task("sfron", "generation")``):
    150 iterations, each a forget step (``forget_freq=1``; adaptive weights λ 0.5 with eps 1e-8, α_t =
    10·(1+cos(π t/n))/2, mask, clip 1) then an unmasked remain step (clip 1, ``remain_max_norm``), one Adam
    optimiser (lr 1e-4, β 0.9/0.999, eps 1e-8, wd 0, constant lr: ``lr_schedule='constant'``), batch 128 for both.
    The mask's squared gradients differentiate the task's ``mask_loss``: the *guided* prediction (w = 2, no label
    drop, one uniform t per example) in eval mode, each batch gradient clipped to norm 1 before squaring
    (``mask_grad_clip=1.0``), averaged over one pass of the forget class and one of the remaining classes;
    γ = 1. Bugs and pitfalls of the official DDPM code that the spec lists, and what is done here instead:

    * the Fisher files are cached on disk in a directory not keyed by the seed (pitfall 2), so later seeds reuse
      the first run's mask and their time excludes the Fisher pass: here the mask is recomputed on every call
      from the call's own seeded batches and its time is part of ``seconds`` (hence of ``rte``);
    * the config says 150 iterations while the abstract says 50 steps suffice (pitfall 12): the default is the
      config's 150, and ``unlearnkit run --task generation`` checkpoints FA and judge-FD every 10 iterations so
      the step count that suffices is read off the curve (``UnlearnData.on_step``);
    * the loaders are materialised once as Python lists, so each image is flipped once at load time rather than
      per epoch (pitfall 12): unlearnkit's digits have no augmentation, so there is nothing to reproduce;
    * the EMA (mu = 1e-4) leaves the shadow weights equal to the live weights to within 1e-4 and the sampling
      config loads the non-EMA weights: no EMA is kept; the live weights are the result;
    * the FID reference of an older version skipped class 0 whatever class was forgotten (pitfall 12): the
      CLI's judge-FD compares against the real images of exactly the remaining classes.

    Args:
        model: the trained classifier (or class-conditional diffusion model); edited in place.
        data: forget and (full) retain loaders; ``data.task.loss(model, x, y, reduction='none')`` must return
            per-sample losses. ``data.on_step`` is called after every iteration.
        cfg: the hyperparameters.

    Returns:
        History with ``forget_loss`` (mean unweighted forget loss per forget step), ``retain_loss`` (per
        iteration), ``alpha`` (per forget step), and ``mask_fraction`` / ``n_iters`` (one value each).

    Raises:
        ConfigError: invalid hyperparameters (raised by the config).
        DataError: empty forget or retain data.

    Example:
        >>> import torch, unlearnkit
        >>> from torch.utils.data import DataLoader, TensorDataset
        >>> _ = torch.manual_seed(0)
        >>> x, y = torch.randn(200, 8), torch.randint(0, 3, (200,))
        >>> model = torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.ReLU(), torch.nn.Linear(16, 3))
        >>> forget = DataLoader(TensorDataset(x[:20], y[:20]), batch_size=32)
        >>> retain = DataLoader(TensorDataset(x[20:], y[20:]), batch_size=32)
        >>> res = unlearnkit.unlearn(model, forget=forget, retain=retain, config=unlearnkit.SfronConfig(seed=0))
        >>> len(res.history["retain_loss"]) == res.history["n_iters"][0]
        True
    """
    hist: History = {"forget_loss": [], "retain_loss": [], "alpha": [], "mask_fraction": [], "n_iters": []}
    dev = data.device
    retain = rebatch(data.retain, cfg.batch_size, shuffle=True, seed=loader_seed(cfg.seed, _SALT_RETAIN))  # type: ignore[arg-type]
    n_iters = _num_iters(cfg, retain)
    hist["n_iters"].append(float(n_iters))
    # Zero strength: nothing may change, not even normalisation statistics, so return before any forward pass.
    if n_iters == 0 or cfg.lr == 0.0:
        return hist
    forget = rebatch(data.forget, cfg.batch_size, shuffle=True, seed=loader_seed(cfg.seed, _SALT_FORGET))  # type: ignore[arg-type]

    # --- Step A: forget/remain-balanced saliency mask, computed once at the starting point ----------------------
    mask: Mask | None = None
    if cfg.use_mask:
        mask_batch = cfg.mask_batch_size or cfg.batch_size
        mask_kw = dict(batch_loss=data.task.mask_loss, clip=cfg.mask_grad_clip)
        fisher_f = squared_gradients(model, rebatch(data.forget, mask_batch, shuffle=True,  # type: ignore[arg-type]
                                                    seed=loader_seed(cfg.seed, _SALT_FISHER_F)), data.task, dev,
                                     **mask_kw)
        fisher_r = squared_gradients(model, rebatch(data.retain, mask_batch, shuffle=True,  # type: ignore[arg-type]
                                                    seed=loader_seed(cfg.seed, _SALT_FISHER_R)), data.task, dev,
                                     **mask_kw)
        mask = ratio_mask(fisher_f, fisher_r, cfg.gamma)
        del fisher_f, fisher_r
        hist["mask_fraction"].append(mask_fraction(mask))

    # --- Step B/C: alternating masked weighted ascent and remain descent, one shared optimiser -----------------
    params = [p for _, p in trainable_parameters(model)]
    if cfg.optimizer == "sgd":
        opt: torch.optim.Optimizer = torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum,
                                                     weight_decay=cfg.weight_decay)
    elif cfg.optimizer == "adam":
        opt = torch.optim.Adam(params, lr=cfg.lr, betas=(0.9, 0.999), eps=1e-8, weight_decay=cfg.weight_decay)
    else:
        opt = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    f_iter, r_iter = cycle(forget), cycle(retain)
    model.train()
    for step in tqdm(range(n_iters), desc="sfron", disable=not data.progress, leave=False):
        for group in opt.param_groups:
            group["lr"] = _cosine_lr(cfg.lr, step, n_iters) if cfg.lr_schedule == "cosine" else cfg.lr
        if step % cfg.forget_freq == 0:
            alpha = _alpha(cfg, step, n_iters)
            xf, yf = next(f_iter)
            hist["forget_loss"].append(_forget_step(model, opt, xf.to(dev), yf.to(dev), data, cfg, alpha, mask))
            hist["alpha"].append(alpha)
        xr, yr = next(r_iter)
        hist["retain_loss"].append(_remain_step(model, opt, xr.to(dev), yr.to(dev), data, cfg))
        data.step_done(step + 1, model)
    return hist


register_method("sfron", config_cls=SfronConfig, fn=sfron,
                summary="Saliency-masked, loss-weighted gradient ascent on the forget set alternated with "
                        "retain descent (fast-slow remain-geometry update).",
                paper="Huang et al., Unified Gradient-Based Machine Unlearning with Remain Geometry Enhancement, "
                      "NeurIPS 2024 (arXiv 2409.19732)",
                requires_forget=True, requires_retain=True, supported_requests={"class", "random", "ids", "subclass"},
                supports_distributed=True, touches="salient", tasks=ANY_LOSS_TASK | {"generation"})
