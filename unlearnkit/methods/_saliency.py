"""Weight-saliency masks shared by the saliency-based methods (``salun``, ``sfron``) and reusable by others.

A *mask* is a ``dict[str, torch.Tensor]`` mapping a parameter name (as in ``model.named_parameters()``) to a
boolean tensor of the parameter's shape; ``True`` marks a *salient* element, i.e. one the method may change.
Only trainable parameters (``requires_grad=True``) appear in a mask.

Pieces, each usable on its own:

* scores: :func:`squared_gradients` (the diagonal "Fisher" of SFR-on's mask and of SSD's importances: the squared
  gradient of the batch-mean loss, averaged over batches), :func:`expected_fisher_diagonal` (the per-example
  Fisher under the model's own predictive distribution, Golatkar et al.'s Fisher forgetting) and
  :func:`accumulated_gradients` (SalUn: the gradient of the batch-mean loss, summed over batches);
* thresholding: :func:`ratio_mask` (keep where ``score_f / score_r >= gamma``), :func:`top_fraction_mask` (keep the
  globally largest fraction) and :func:`threshold_mask` (keep where ``score >= t``);
* one-call builders: :func:`ratio_saliency_mask` (SFR-on) and :func:`gradient_saliency_mask` (SalUn);
* applying a mask: :func:`mask_gradients` (zero gradients outside the mask before an optimiser step),
  :func:`restore_outside_mask` (put non-salient weights back to a reference and clear their optimiser state),
  :func:`mask_fraction` (share of elements kept).

Distributed runs: the score accumulators sum their per-rank totals *and* their batch counts with
:func:`unlearnkit.distributed.all_reduce_sum` before dividing, so every rank derives the same scores and
therefore the same mask, whether or not the model is wrapped in DistributedDataParallel.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping

import torch
from torch import nn
from torch.utils.data import DataLoader

from ..distributed import all_reduce_sum
from ..errors import ConfigError, DataError
from ..tasks import Task, as_task

__all__ = [
    "Mask",
    "accumulated_gradients",
    "expected_fisher_diagonal",
    "gradient_saliency_mask",
    "mask_fraction",
    "mask_gradients",
    "ratio_mask",
    "ratio_saliency_mask",
    "restore_outside_mask",
    "squared_gradients",
    "threshold_mask",
    "top_fraction_mask",
    "trainable_parameters",
]

Mask = dict[str, torch.Tensor]
Scores = Mapping[str, torch.Tensor]
LossFn = Task | Callable[..., torch.Tensor]
BatchLoss = Callable[[nn.Module, torch.Tensor, torch.Tensor], torch.Tensor]

# The official SFR-on code adds this to both Fishers before dividing, so 0/0 gives ratio 1 (kept at gamma = 1).
RATIO_EPS = 1e-15


def trainable_parameters(model: nn.Module) -> list[tuple[str, nn.Parameter]]:
    """``(name, parameter)`` for every parameter with ``requires_grad``, in ``named_parameters`` order."""
    return [(n, p) for n, p in model.named_parameters() if p.requires_grad]


# ---------------------------------------------------------------------------------------------------------------
# Scores from gradients
# ---------------------------------------------------------------------------------------------------------------


def _gradient_pass(model: nn.Module, loader: DataLoader, loss_fn: LossFn, device: torch.device,
                   transform: Callable[[torch.Tensor], torch.Tensor], *, train_mode: bool,
                   batch_loss: BatchLoss | None = None, clip: float | None = None) -> tuple[dict, int]:
    """Sum ``transform(grad of the batch-mean loss)`` over the batches of ``loader``; returns (sums, n_batches).

    ``batch_loss(model, x, y)`` replaces the task's ``loss`` when given; with ``clip`` each batch's gradient is
    clipped to that total norm before the transform. The model's train/eval mode and any ``.grad`` it held are
    restored afterwards, so the pass has no side effect on the weights, the optimiser or (in eval mode) the
    normalisation statistics.
    """
    task = as_task(loss_fn)  # a Task, or a bare loss_fn(logits, y)
    compute = batch_loss if batch_loss is not None else task.loss
    params = trainable_parameters(model)
    sums = {n: torch.zeros_like(p, dtype=torch.float32) for n, p in params}
    saved_grads = {n: p.grad for n, p in params}
    was_training = model.training
    model.train(train_mode)
    n_batches = 0
    try:
        for x, y in loader:
            x, y = x.to(device), y.to(device)
            for _, p in params:
                p.grad = None
            loss = compute(model, x, y)
            loss.backward()
            if clip is not None:
                torch.nn.utils.clip_grad_norm_([p for _, p in params], clip)
            for n, p in params:
                # A parameter the loss does not reach has no gradient: it contributes zero.
                if p.grad is not None:
                    sums[n] += transform(p.grad.detach().float())
            n_batches += 1
    finally:
        for n, p in params:
            p.grad = saved_grads[n]
        model.train(was_training)
    return sums, n_batches


def _reduce(sums: dict[str, torch.Tensor], n_batches: int, device: torch.device) -> tuple[dict, int]:
    """All-reduce every sum and the batch count, so that all ranks share the global totals."""
    count = all_reduce_sum(torch.tensor([float(n_batches)], device=device, dtype=torch.float64))
    for t in sums.values():
        all_reduce_sum(t)
    return sums, int(count.item())


def squared_gradients(model: nn.Module, loader: DataLoader, loss_fn: LossFn, device: torch.device | str, *,
                      train_mode: bool = False, batch_loss: BatchLoss | None = None,
                      clip: float | None = None) -> dict[str, torch.Tensor]:
    """SFR-on's diagonal "Fisher": the squared gradient of each batch's *mean* loss, averaged over batches.

    This is deliberately not a per-sample empirical Fisher (spec §1.3, pitfall 3): for every batch the mean loss
    is back-propagated and ``grad ** 2`` accumulated, then divided by the number of batches (over all ranks).

    Args:
        model: the model; its weights are not changed.
        loader: batches ``(x, y)``; batch composition matters because the batch-mean gradient is squared.
        loss_fn: the task (:class:`unlearnkit.tasks.Task`, its ``loss``) or a bare ``loss_fn(logits, y)`` returning
            the batch-mean loss.
        device: where to move each batch.
        train_mode: run the forward passes in train mode (default eval: normalisation layers use their running
            statistics, as the official code does).
        batch_loss: ``batch_loss(model, x, y)``, the batch-mean loss to differentiate instead of the task's
            ``loss`` (SFR-on's DDPM mask: the task's ``mask_loss`` on the guided prediction).
        clip: clip each batch gradient to this total norm before squaring it (SFR-on's DDPM ``generate_fisher``
            clips to 1.0); ``None`` does not clip (the classification code).

    Returns:
        ``{name: tensor}`` (float32, parameter shape) for every trainable parameter.

    Raises:
        DataError: the loader yields no batch.
    """
    device = torch.device(device)
    sums, n = _reduce(*_gradient_pass(model, loader, loss_fn, device, lambda g: g * g, train_mode=train_mode,
                                      batch_loss=batch_loss, clip=clip), device=device)
    if n == 0:
        raise DataError("cannot compute saliency scores from an empty loader: pass at least one example")
    return {k: v / n for k, v in sums.items()}


def expected_fisher_diagonal(model: nn.Module, loader: DataLoader, device: torch.device | str, *,
                             sample: torch.Generator | None = None) -> dict[str, torch.Tensor]:
    r"""The diagonal Fisher information under the model's predictive distribution, averaged over examples:

    .. math:: F = \frac{1}{N} \sum_i \sum_y p_\theta(y \mid x_i)\, \big(\nabla_\theta \log p_\theta(y \mid x_i)\big)^2

    This is Golatkar et al.'s ``hessian`` of the Fisher-forgetting code (model in eval mode, one example at a time,
    every class weighted by its predicted probability; labels of the data are not used). Per-example gradients are
    computed with ``torch.func.vmap`` over each batch, one vectorised pass per class, so the cost is
    ``num_classes`` per-example gradient passes over the data (a per-example autograd loop where the model's
    forward cannot run under vmap). With ``sample`` (a CPU generator) the sum over y is replaced by one class per
    example drawn from ``p_θ(y | x_i)``, the unbiased Monte-Carlo estimate at the cost of one pass. Under
    torch.distributed the sums and the example count are all-reduced.

    Args:
        model: a classifier returning logits; its weights and mode are not changed (a DDP wrapper is unwrapped).
        loader: batches ``(x, y)`` (``y`` unused).
        device: where to move each batch.

    Returns:
        ``{name: tensor}`` (float32, parameter shape) for every trainable parameter of the unwrapped model.

    Raises:
        DataError: the loader yields no example.
    """
    from torch.func import functional_call, grad, vmap

    net = model.module if isinstance(model, nn.parallel.DistributedDataParallel) else model
    device = torch.device(device)
    params = {n: p.detach() for n, p in net.named_parameters() if p.requires_grad}
    fixed = {n: p.detach() for n, p in net.named_parameters() if not p.requires_grad}
    fixed.update(dict(net.named_buffers()))
    sums = {n: torch.zeros_like(p, dtype=torch.float32) for n, p in params.items()}

    def nll(ps: dict, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        out = functional_call(net, (ps, fixed), (x.unsqueeze(0),))
        return torch.nn.functional.cross_entropy(out, y.unsqueeze(0))

    per_example = vmap(grad(nll), in_dims=(None, 0, 0))

    def squared_grads_vmap(x: torch.Tensor, y: torch.Tensor) -> dict[str, torch.Tensor]:
        return {k: v.float().pow(2) for k, v in per_example(params, x, y).items()}

    def squared_grads_loop(x: torch.Tensor, y: torch.Tensor) -> dict[str, torch.Tensor]:
        # Fallback for models whose forward cannot run under vmap: one autograd call per example.
        rows: dict[str, list[torch.Tensor]] = {k: [] for k in params}
        live = [p for p in net.parameters() if p.requires_grad]
        for i in range(x.shape[0]):
            gi = torch.autograd.grad(torch.nn.functional.cross_entropy(net(x[i:i + 1]), y[i:i + 1]), live)
            for k, v in zip(params, gi):
                rows[k].append(v.float().pow(2))
        return {k: torch.stack(v) for k, v in rows.items()}

    was_training = net.training
    net.eval()
    n = 0
    use_vmap = True
    try:
        for x, _ in loader:
            x = x.to(device)
            if x.ndim == 4:  # already channels-last, so a model that asks for that layout needs no copy under vmap
                x = x.contiguous(memory_format=torch.channels_last)
            with torch.no_grad():
                probs = torch.softmax(net(x), dim=1).float()
            if sample is not None:  # one y per example, y ~ p(y | x): weight 1
                ys = [torch.multinomial(probs.cpu(), 1, generator=sample).flatten().to(device)]
                weights = [torch.ones(x.shape[0], device=device)]
            else:  # every class, weighted by its probability
                ys = [torch.full((x.shape[0],), c, dtype=torch.long, device=device) for c in range(probs.shape[1])]
                weights = [probs[:, c] for c in range(probs.shape[1])]
            for y, w in zip(ys, weights):
                if use_vmap:
                    try:
                        g2 = squared_grads_vmap(x, y)
                    except RuntimeError:  # an operation vmap does not support: fall back, same result
                        use_vmap = False
                if not use_vmap:
                    g2 = squared_grads_loop(x, y)
                for k in sums:
                    sums[k] += torch.tensordot(w, g2[k], dims=1)
            n += int(x.shape[0])
    finally:
        net.train(was_training)
    sums, n = _reduce(sums, n, device)
    if n == 0:
        raise DataError("cannot compute a Fisher estimate from an empty loader: pass at least one example")
    return {k: v / n for k, v in sums.items()}


def accumulated_gradients(model: nn.Module, loader: DataLoader, loss_fn: LossFn, device: torch.device | str, *,
                          train_mode: bool = False) -> dict[str, torch.Tensor]:
    """SalUn's saliency scores before the absolute value: the gradient of each batch-mean loss, summed over batches.

    Args:
        model: the model; its weights are not changed.
        loader: batches ``(x, y)``.
        loss_fn: the task (:class:`unlearnkit.tasks.Task`, its ``loss``) or a bare ``loss_fn(logits, y)`` returning
            the batch-mean loss.
        device: where to move each batch.
        train_mode: run the forward passes in train mode (default eval, as SalUn's ``generate_mask.py``).

    Returns:
        ``{name: tensor}`` (float32, parameter shape) for every trainable parameter, summed over all ranks.

    Raises:
        DataError: the loader yields no batch.
    """
    device = torch.device(device)
    sums, n = _reduce(*_gradient_pass(model, loader, loss_fn, device, lambda g: g, train_mode=train_mode),
                      device=device)
    if n == 0:
        raise DataError("cannot compute saliency scores from an empty loader: pass at least one example")
    return sums


# ---------------------------------------------------------------------------------------------------------------
# Thresholding
# ---------------------------------------------------------------------------------------------------------------


def _check_same_keys(a: Scores, b: Scores) -> None:
    if set(a) != set(b):
        raise ValueError(f"score dicts name different parameters: only in the first {sorted(set(a) - set(b))}, "
                         f"only in the second {sorted(set(b) - set(a))}")
    for k in a:
        if a[k].shape != b[k].shape:
            raise ValueError(f"scores for {k!r} have shapes {tuple(a[k].shape)} and {tuple(b[k].shape)}")


def ratio_mask(forget_scores: Scores, remain_scores: Scores, gamma: float, *, eps: float = RATIO_EPS) -> Mask:
    """Keep an element when ``(forget + eps) / (remain + eps) >= gamma`` (SFR-on's balanced saliency, spec §1.3).

    Args:
        forget_scores: non-negative scores on the forget data (e.g. :func:`squared_gradients`).
        remain_scores: the same scores on the remain data, same names and shapes.
        gamma: the threshold γ (> 0); 1.0 keeps elements more important to the forget set than to the remain set.
        eps: added to both scores, so elements with no gradient anywhere have ratio 1.

    Returns:
        A boolean mask per parameter.

    Raises:
        ConfigError: ``gamma`` is not a positive finite number.
    """
    if not (isinstance(gamma, (int, float)) and math.isfinite(gamma) and gamma > 0):
        raise ConfigError(f"gamma must be a positive finite number, got {gamma!r}")
    _check_same_keys(forget_scores, remain_scores)
    return {k: (forget_scores[k] + eps) / (remain_scores[k] + eps) >= gamma for k in forget_scores}


def threshold_mask(scores: Scores, threshold: float) -> Mask:
    """Keep an element when ``score >= threshold``."""
    return {k: v >= threshold for k, v in scores.items()}


def top_fraction_mask(scores: Scores, fraction: float) -> Mask:
    """Keep the globally largest ``floor(fraction * N)`` elements over all parameters (SalUn's rule, spec §3.1).

    Ranking is across every tensor at once, not per layer. Ties are broken by position (a stable sort over the
    parameters in ``scores`` order, then row-major), so the mask is deterministic and keeps exactly
    ``floor(fraction * N)`` elements, as the official ``generate_mask.py`` does.

    Args:
        scores: the saliency scores (pass absolute values for SalUn).
        fraction: share of elements to keep, in [0, 1].

    Returns:
        A boolean mask per parameter.

    Raises:
        ConfigError: ``fraction`` outside [0, 1].
    """
    if not (isinstance(fraction, (int, float)) and 0.0 <= fraction <= 1.0):
        raise ConfigError(f"fraction must be in [0, 1], got {fraction!r}")
    names = list(scores)
    if not names:
        return {}
    flat = torch.cat([scores[k].detach().reshape(-1).float() for k in names])
    k_keep = int(flat.numel() * fraction)
    keep = torch.zeros(flat.numel(), dtype=torch.bool, device=flat.device)
    if k_keep > 0:
        order = torch.argsort(-flat, stable=True)
        keep[order[:k_keep]] = True
    out: Mask = {}
    start = 0
    for k in names:
        n = scores[k].numel()
        out[k] = keep[start:start + n].view(scores[k].shape)
        start += n
    return out


def mask_fraction(mask: Mask) -> float:
    """Share of elements the mask keeps (1.0 for an empty mask, which restricts nothing)."""
    total = sum(m.numel() for m in mask.values())
    if total == 0:
        return 1.0
    return float(sum(int(m.sum()) for m in mask.values())) / total


# ---------------------------------------------------------------------------------------------------------------
# One-call builders
# ---------------------------------------------------------------------------------------------------------------


def ratio_saliency_mask(model: nn.Module, forget: DataLoader, remain: DataLoader, loss_fn: LossFn,
                        device: torch.device | str, *, gamma: float = 1.0) -> Mask:
    """SFR-on's forget/remain-balanced mask: :func:`squared_gradients` on both sets, then :func:`ratio_mask`."""
    f = squared_gradients(model, forget, loss_fn, device)
    r = squared_gradients(model, remain, loss_fn, device)
    return ratio_mask(f, r, gamma)


def gradient_saliency_mask(model: nn.Module, forget: DataLoader, loss_fn: LossFn, device: torch.device | str, *,
                           fraction: float = 0.5) -> Mask:
    """SalUn's mask: the top ``fraction`` of ``|sum of forget-batch gradients|``, globally."""
    g = accumulated_gradients(model, forget, loss_fn, device)
    return top_fraction_mask({k: v.abs() for k, v in g.items()}, fraction)


# ---------------------------------------------------------------------------------------------------------------
# Applying a mask
# ---------------------------------------------------------------------------------------------------------------


def _masked_params(model: nn.Module, mask: Mask) -> Iterable[tuple[nn.Parameter, torch.Tensor]]:
    params = dict(trainable_parameters(model))
    missing = sorted(set(mask) - set(params))
    if missing:
        raise ValueError(f"the mask names parameters the model does not have (or that are frozen): {missing[:5]}; "
                         "build the mask from the same model object")
    for name, m in mask.items():
        p = params[name]
        if m.shape != p.shape:
            raise ValueError(f"mask for {name!r} has shape {tuple(m.shape)} but the parameter has {tuple(p.shape)}")
        yield p, m


def mask_gradients(model: nn.Module, mask: Mask) -> None:
    """Zero, in place, every gradient element outside the mask (call between ``backward()`` and ``step()``).

    ``masked_fill`` rather than a multiply, so a non-finite gradient outside the mask is zeroed too. Parameters
    the mask does not name are left alone. Note that an optimiser step still moves non-salient weights through
    weight decay and momentum; use zero weight decay and momentum, or :func:`restore_outside_mask`, to pin them.
    """
    for p, m in _masked_params(model, mask):
        if p.grad is not None:
            p.grad.masked_fill_(~m.to(p.grad.device), 0.0)


@torch.no_grad()
def restore_outside_mask(model: nn.Module, mask: Mask, reference: Mapping[str, torch.Tensor],
                         optimizer: torch.optim.Optimizer | None = None) -> None:
    """Set every weight outside the mask back to ``reference`` and zero its optimiser state (momentum, moments).

    This is the official SalUn's fix of Feb 2026 (commit ``a6e89fd``): it keeps non-salient weights exactly at
    θ_o despite weight decay, i.e. the model is ``m ⊙ θ + (1 − m) ⊙ θ_o`` after every step.
    """
    params = dict(trainable_parameters(model))
    for name, m in mask.items():
        p = params[name]
        off = ~m.to(p.device)
        p.copy_(torch.where(off, reference[name].to(p.device, p.dtype), p))
        if optimizer is not None:
            for v in optimizer.state.get(p, {}).values():
                if isinstance(v, torch.Tensor) and v.shape == p.shape:
                    v.masked_fill_(off, 0.0)
