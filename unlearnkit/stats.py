"""Layer statistics: the inputs of every weight layer, captured and reduced; shared by ``svd``, ``pgu`` and training.

This module sits below both :mod:`unlearnkit.training` and :mod:`unlearnkit.methods` (it imports only
``distributed`` and ``errors``): the training loop records ``pgu``'s full-training statistics with it, and the
methods ``svd`` (Deep Unlearning) and ``pgu`` compute their subspaces with it. Both methods reason about the
*inputs* of every weight layer: ``svd`` takes the uncentred SVD of the input activations of each Conv2d/Linear,
``pgu`` the uncentred Gram matrix ``Σ x xᵀ`` of the same inputs. Forward hooks capture those inputs and reduce
them, batch by batch, to a per-layer statistic whose size does not depend on the number of samples:

* a **Conv2d** input is unfolded into patches with the layer's own kernel, padding (including non-zero padding
  modes) and dilation, at the layer's stride or at stride 1 (``pgu``'s convention); each patch is a row of length
  ``d = C_in·kh·kw`` in the ``(C_in, kh, kw)`` order of ``weight.flatten(1)``, so rows and weights line up;
* a **Linear** input ``(..., d)`` is flattened over every leading dimension (ViT tokens become rows);
* rows are accumulated into a :class:`GramAccumulator` (exact ``d×d`` float64 Gram matrix) when ``d`` is at most
  ``dense_max_dim`` (default :data:`DEFAULT_DENSE_MAX_DIM` = 8192: one such matrix is 512 MiB), otherwise into a
  :class:`SketchAccumulator`, a streaming rank-capped SVD that never builds a ``d×d`` matrix (memory
  ``O(d·rank)``) and whose Gram-matrix error is bounded by the energy it dropped (see the class);
* optionally, layers with more than one row per sample (convs, token Linears) keep only a seeded random subset of
  their rows, with a budget spread over the batches in proportion to their size (``svd``'s ``max_patches``);
* under ``torch.distributed`` each rank accumulates its own shard and :meth:`reduce` sums the statistics with
  :func:`unlearnkit.distributed.all_reduce_sum`, so every rank ends with the statistics of the whole data.

:class:`LayerStats` holds recorded Gram matrices (``pgu``'s ``C_full``, taken right after training by
``train(..., record_stats=True)``), subtracts them exactly, and stores them in a safetensors file.

Grouped convolutions and ``nn.MultiheadAttention`` are not supported: a grouped conv's weight does not act on a
whole patch, and ``nn.MultiheadAttention`` reads its packed ``in_proj_weight`` and ``out_proj.weight`` directly, so
forward hooks never see the inputs of those weights. :func:`check_model` reports both.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Literal, Protocol

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, Dataset, Subset
from tqdm.auto import tqdm

from .distributed import all_reduce_sum, is_distributed, rank, world_size
from .errors import CheckpointError, ConfigError, DataError, IncompatibleModelError, UnlearnError

__all__ = [
    "Accumulator",
    "GramAccumulator",
    "LayerInfo",
    "LayerStats",
    "SketchAccumulator",
    "check_model",
    "collect_layer_stats",
    "conv_rows",
    "dataset_labels",
    "layer_rows",
    "projectable_layers",
    "shard_dataset",
    "unwrap_model",
    "weights_fingerprint",
]

ConvStride = Literal["layer", "one"]

# Largest fan-in d whose exact d×d float64 Gram matrix is built: 8192² × 8 B = 512 MiB per layer (and set). Every
# Conv2d of VGG11/ResNet-18 on CIFAR (d ≤ 512·3·3 = 4608, 162 MiB) takes the exact path; only wider layers (e.g. the
# VGG-ImageNet fc1, d = 25 088, 4.7 GiB) take the sketch.
DEFAULT_DENSE_MAX_DIM = 8192
# Directions whose eigenvalue is below this multiple of d·eps64·λ_max are numerical zeros (rank tolerance, as
# numpy's matrix_rank; the Gram matrices are exact float64 sums of float32 products, so the noise is ~d·eps64).
_RANK_RTOL_FACTOR = 64.0


# ---------------------------------------------------------------------------------------------------------------
# Layers
# ---------------------------------------------------------------------------------------------------------------


def unwrap_model(model: nn.Module) -> nn.Module:
    """The wrapped module of a ``DistributedDataParallel`` model (layer names must not carry ``module.``)."""
    return model.module if isinstance(model, nn.parallel.DistributedDataParallel) else model


@dataclass(frozen=True)
class LayerInfo:
    """A weight layer whose input statistics are collected.

    Attributes:
        name: The module's name in ``unwrap_model(model).named_modules()``.
        module: The ``nn.Linear`` or ``nn.Conv2d`` itself.
        kind: ``"linear"`` or ``"conv2d"``.
        dim: ``d``, the length of one input row (= ``weight.flatten(1).shape[1]``).
    """

    name: str
    module: nn.Module
    kind: Literal["linear", "conv2d"]
    dim: int

    @property
    def weight(self) -> nn.Parameter:
        return self.module.weight  # type: ignore[return-value]


def _mha_children(model: nn.Module) -> set[int]:
    ids: set[int] = set()
    for m in model.modules():
        if isinstance(m, nn.MultiheadAttention):
            ids.update(id(c) for c in m.modules())
    return ids


def check_model(model: nn.Module) -> list[UnlearnError]:
    """Problems that stop the activation-based methods from handling ``model`` (empty list when it is fine)."""
    base = unwrap_model(model)
    problems: list[UnlearnError] = []
    mha = [n for n, m in base.named_modules() if isinstance(m, nn.MultiheadAttention)]
    if mha:
        problems.append(IncompatibleModelError(
            f"the model uses nn.MultiheadAttention ({', '.join(mha[:3])}{'...' if len(mha) > 3 else ''}), whose "
            "fused path reads in_proj_weight/out_proj.weight directly, so their inputs cannot be captured with "
            "hooks: write attention with separate nn.Linear layers (as unlearnkit.models' vit does)"))
    if not projectable_layers(base):
        problems.append(IncompatibleModelError(
            "the model has no nn.Linear or (non-grouped) nn.Conv2d layer: the method acts on those layers' weights"))
    return problems


def projectable_layers(model: nn.Module, exclude: Sequence[str] = ()) -> list[LayerInfo]:
    """Every ``nn.Linear`` and non-grouped ``nn.Conv2d`` of ``model``, in registration order.

    Args:
        model: The model (a ``DistributedDataParallel`` wrapper is looked through).
        exclude: Module names to leave out; a name also excludes every layer below it (``"head"``, ``"blocks.0"``).
    """
    base = unwrap_model(model)
    skip = _mha_children(base)
    out: list[LayerInfo] = []
    for name, m in base.named_modules():
        if id(m) in skip or any(name == e or name.startswith(e + ".") for e in exclude):
            continue
        if isinstance(m, nn.Conv2d) and m.groups == 1:
            out.append(LayerInfo(name, m, "conv2d", int(m.weight[0].numel())))
        elif isinstance(m, nn.Linear):
            out.append(LayerInfo(name, m, "linear", int(m.in_features)))
    return out


# ---------------------------------------------------------------------------------------------------------------
# Rows of a layer's input
# ---------------------------------------------------------------------------------------------------------------


def _pad_like_conv(m: nn.Conv2d, x: torch.Tensor) -> torch.Tensor:
    # _reversed_padding_repeated_twice is what Conv2d itself pads with for every padding mode and for the string
    # paddings ("same" may be asymmetric); padding here and unfolding with padding 0 reproduces the conv exactly.
    pad = tuple(int(p) for p in m._reversed_padding_repeated_twice)
    if not any(pad):
        return x
    mode = "constant" if m.padding_mode == "zeros" else m.padding_mode
    return F.pad(x, pad, mode=mode)


def conv_rows(m: nn.Conv2d, x: torch.Tensor, *, stride: ConvStride = "layer", count: int | None = None,
              generator: torch.Generator | None = None) -> torch.Tensor:
    """Patches of ``x`` as ``m`` sees them, one row per (image, output position), shape ``(rows, C_in·kh·kw)``.

    Args:
        m: The convolution.
        x: Its input, ``(B, C_in, H, W)`` (a single unbatched ``(C_in, H, W)`` image is accepted too).
        stride: ``"layer"`` uses ``m.stride``; ``"one"`` unfolds at stride 1 (``pgu``'s convention).
        count: Keep only this many patches, drawn uniformly without replacement from all ``B·L`` patches (all of
            them when ``count`` is None or at least ``B·L``).
        generator: Generator of that draw (CPU).
    """
    if x.ndim == 3:
        x = x.unsqueeze(0)
    x = _pad_like_conv(m, x)
    kh, kw = m.kernel_size
    dh, dw = m.dilation
    sh, sw = (1, 1) if stride == "one" else m.stride
    b, c, h, w = x.shape
    ho, wo = (h - dh * (kh - 1) - 1) // sh + 1, (w - dw * (kw - 1) - 1) // sw + 1
    total = b * max(ho, 0) * max(wo, 0)
    d = c * kh * kw
    if total <= 0:
        return x.new_zeros(0, d)
    if count is None or count >= total:
        cols = F.unfold(x, (kh, kw), dilation=(dh, dw), stride=(sh, sw))  # (B, d, L), d in (C, kh, kw) order
        return cols.transpose(1, 2).reshape(-1, d)
    # Gather the chosen patches directly instead of unfolding everything: memory O(count·d), not O(B·L·d). In a
    # channels-last view every kernel tap of a patch is one contiguous C-vector, so kh·kw row gathers build the
    # patches (3-4x faster than one element-wise gather); stacking the taps last gives the (C, kh, kw) order.
    idx = torch.randperm(total, generator=generator)[:count].to(x.device)
    L = ho * wo
    bi, pos = idx // L, idx % L
    oy, ox = (pos // wo) * sh, (pos % wo) * sw
    xl = x.permute(0, 2, 3, 1)  # (B, H, W, C), a view
    taps = [xl[bi, oy + i * dh, ox + j * dw] for i in range(kh) for j in range(kw)]  # kh·kw × (q, C)
    return torch.stack(taps, dim=2).reshape(idx.shape[0], d)


def layer_rows(layer: LayerInfo, x: torch.Tensor, *, stride: ConvStride = "layer", count: int | None = None,
               generator: torch.Generator | None = None) -> torch.Tensor:
    """Rows of ``layer``'s input ``x``: conv patches (see :func:`conv_rows`) or Linear inputs flattened over
    every leading dimension; ``count`` subsamples rows without replacement (all rows when None or too large)."""
    if layer.kind == "conv2d":
        return conv_rows(layer.module, x, stride=stride, count=count, generator=generator)  # type: ignore[arg-type]
    r = x.reshape(-1, layer.dim)
    if count is not None and count < r.shape[0]:
        keep = torch.randperm(r.shape[0], generator=generator)[:count].to(r.device)
        r = r[keep]
    return r


def _rows_per_sample(layer: LayerInfo, x: torch.Tensor) -> int:
    """> 1 for convs and token-shaped Linear inputs (these get the row budget), 1 for ``(B, d)`` inputs."""
    if layer.kind == "conv2d":
        return 2  # any value > 1: the exact count is not needed, only whether a budget applies
    return 1 if x.ndim <= 2 else int(math.prod(x.shape[1:-1]))


# ---------------------------------------------------------------------------------------------------------------
# Accumulators
# ---------------------------------------------------------------------------------------------------------------


class Accumulator(Protocol):
    """Streaming statistic of the rows ``r`` (``n×d``) of one layer: ``Σ rᵀr`` or a factorisation of it."""

    dim: int
    rows: int

    def add(self, r: torch.Tensor) -> None: ...

    def reduce(self) -> None: ...

    @property
    def energy(self) -> float: ...

    def factors(self) -> tuple[torch.Tensor, torch.Tensor]: ...


def _rank_tol(top: float, d: int) -> float:
    return top * max(d, 1) * _RANK_RTOL_FACTOR * torch.finfo(torch.float64).eps


class GramAccumulator:
    """Uncentred Gram matrix ``G = Σ rᵀr`` (float64, ``d×d``) of every row added.

    ``exact=True`` (default): the rows are cast to float64 before the product, so the Gram matrix of float32
    activations is exact up to float64 rounding, which keeps the subtraction ``C_full − C_forget`` of ``pgu`` and
    the rank tolerance sound. ``exact=False`` multiplies each batch in the rows' own precision (float32 for float32
    activations, ~2-3x faster) and sums the batch products in float64: relative error ~1e-7 per batch, enough for
    ``svd``'s subspaces, which are never subtracted.
    """

    def __init__(self, dim: int, device: torch.device | str = "cpu", *, exact: bool = True) -> None:
        self.dim = int(dim)
        self.gram = torch.zeros(self.dim, self.dim, dtype=torch.float64, device=device)
        self.rows = 0
        self.exact = bool(exact)

    def add(self, r: torch.Tensor) -> None:
        if r.shape[0] == 0:
            return
        r = r.detach()
        if self.exact or r.dtype == torch.float64:
            r = r.to(torch.float64)
            self.gram.addmm_(r.T, r)
        else:
            self.gram += (r.T @ r).to(torch.float64)
        self.rows += int(r.shape[0])

    def reduce(self) -> None:
        """Sum over ranks (no-op in one process)."""
        all_reduce_sum(self.gram)
        n = torch.tensor([float(self.rows)], dtype=torch.float64, device=self.gram.device)
        self.rows = int(all_reduce_sum(n).item())

    @property
    def energy(self) -> float:
        """``Σ ‖r‖²`` = trace of the Gram matrix = sum of squared singular values of the stacked rows."""
        return float(torch.diagonal(self.gram).sum())

    def factors(self) -> tuple[torch.Tensor, torch.Tensor]:
        """``(U, λ)``: eigenvectors ``d×k`` and eigenvalues ``k`` (= squared singular values), descending, with
        numerically-zero directions dropped; ``U diag(λ) Uᵀ = G`` up to that tolerance."""
        return eigh_desc(self.gram, drop_zero=True)


def eigh_desc(sym: torch.Tensor, *, drop_zero: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """Eigen-decomposition of a symmetric PSD matrix with eigenvalues clamped at 0 and sorted descending.

    Negative eigenvalues (rounding, or a difference of Gram matrices) are clamped to 0, as ``pgu``'s spec §8.4
    recommends instead of the official code's silent sign flip. ``drop_zero`` removes directions below the rank
    tolerance.
    """
    d = sym.shape[0]
    if d == 0:
        return sym.new_zeros(0, 0), sym.new_zeros(0)
    evals, evecs = torch.linalg.eigh(sym)
    evals = evals.flip(0).clamp_min(0.0)
    evecs = evecs.flip(1)
    if drop_zero:
        top = float(evals[0]) if evals.numel() else 0.0
        keep = evals > _rank_tol(top, d) if top > 0 else torch.zeros_like(evals, dtype=torch.bool)
        evals, evecs = evals[keep], evecs[:, keep]
    return evecs, evals


class SketchAccumulator:
    """Streaming thin SVD of the stacked rows, rank-capped, for layers whose ``d×d`` matrix would be large.

    The state is ``B = U·diag(s)`` (``d×k``, ``k ≤ max_rank``). Buffered rows are merged every ``max_rank`` rows:
    ``B ← top-max_rank part of svd([B | Rᵀ])``. While the total rank stays within ``max_rank`` this is exact
    (``B Bᵀ = Σ rᵀr``); beyond it the smallest directions are dropped (incremental truncated SVD), and the total
    energy ``Σ ‖r‖²`` is still tracked exactly so that normalised energies ``e = s²/Σ‖r‖²`` stay correct.
    Memory is ``O(d·max_rank)``, never ``d×d``.

    **Error.** Each merge drops a positive semi-definite part of the Gram matrix, so ``G − B Bᵀ`` is PSD and
    ``‖G − B Bᵀ‖₂ ≤ tr(G − B Bᵀ) =`` :attr:`dropped_energy` ``= Σ‖r‖² − ‖B‖²_F`` (exact, tested). Measured on
    real activations (issue #19: a d = 2304 layer with 10,000 rows, rank 1024): 97.3% of the energy kept, a 9.5%
    relative error in ``M_r`` at ``α_r = 1000``, and 97-101 s CPU against 8 s for the exact Gram matrix, which is
    why the exact path is the default up to ``d = 8192``.
    """

    def __init__(self, dim: int, max_rank: int, device: torch.device | str = "cpu") -> None:
        self.dim = int(dim)
        self.max_rank = int(max_rank)
        self.B = torch.zeros(self.dim, 0, dtype=torch.float64, device=device)
        self._buf: list[torch.Tensor] = []
        self._buf_rows = 0
        self._energy = 0.0
        self.rows = 0

    def add(self, r: torch.Tensor) -> None:
        if r.shape[0] == 0:
            return
        r = r.detach().to(torch.float64)
        self._energy += float((r * r).sum())
        self.rows += int(r.shape[0])
        # Merge in chunks of at most max_rank rows so the SVD input stays d × 2·max_rank.
        for chunk in r.split(self.max_rank):
            self._buf.append(chunk)
            self._buf_rows += chunk.shape[0]
            if self._buf_rows >= self.max_rank:
                self._merge()

    def _merge(self) -> None:
        if not self._buf:
            return
        m = torch.cat([self.B, torch.cat(self._buf).T], dim=1)
        self._buf, self._buf_rows = [], 0
        self.B = _truncated_basis(m, self.max_rank)

    def reduce(self) -> None:
        """Combine the ranks' sketches (no-op in one process): each rank writes its ``B`` into its own slot of a
        zero buffer, an all-reduce sum gathers them, and one SVD of the concatenation merges them."""
        self._merge()
        if not is_distributed():
            return
        ws, rk = world_size(), rank()
        slots = torch.zeros(ws, self.dim, self.max_rank, dtype=torch.float64, device=self.B.device)
        slots[rk, :, : self.B.shape[1]] = self.B
        all_reduce_sum(slots)
        self.B = _truncated_basis(slots.permute(1, 0, 2).reshape(self.dim, -1), self.max_rank)
        stats = torch.tensor([self._energy, float(self.rows)], dtype=torch.float64, device=self.B.device)
        all_reduce_sum(stats)
        self._energy, self.rows = float(stats[0]), int(stats[1].item())

    @property
    def energy(self) -> float:
        return self._energy

    @property
    def dropped_energy(self) -> float:
        """``Σ‖r‖² − ‖B‖²_F``: the trace of ``G − B Bᵀ``, hence a bound on its spectral norm (0 while exact)."""
        self._merge()
        return max(0.0, self._energy - float((self.B * self.B).sum()))

    def factors(self) -> tuple[torch.Tensor, torch.Tensor]:
        self._merge()
        if self.B.shape[1] == 0:
            return self.B.new_zeros(self.dim, 0), self.B.new_zeros(0)
        u, s, _ = torch.linalg.svd(self.B, full_matrices=False)
        lam = s * s
        keep = lam > _rank_tol(float(lam[0]), self.dim)
        return u[:, keep], lam[keep]


def _truncated_basis(m: torch.Tensor, max_rank: int) -> torch.Tensor:
    if m.shape[1] == 0:
        return m
    u, s, _ = torch.linalg.svd(m, full_matrices=False)
    k = min(max_rank, int((s > 0).sum()))
    return u[:, :k] * s[:k]


# ---------------------------------------------------------------------------------------------------------------
# Collection
# ---------------------------------------------------------------------------------------------------------------


def shard_dataset(ds: Dataset) -> Dataset:
    """This rank's share of ``ds`` (items ``rank, rank + world, ...``); ``ds`` itself in one process.

    Unlike ``DistributedSampler`` nothing is padded or repeated, so summed statistics equal the single-process ones.
    """
    if not is_distributed():
        return ds
    return Subset(ds, list(range(rank(), len(ds), world_size())))  # type: ignore[arg-type]


def dataset_labels(ds: Dataset) -> torch.Tensor:
    """Integer labels of every item of ``ds`` (fast path for datasets with a ``y`` tensor and their Subsets)."""
    y = getattr(ds, "y", None)
    if isinstance(y, torch.Tensor) and y.ndim == 1 and len(y) == len(ds):  # type: ignore[arg-type]
        return y.detach().cpu().long()
    if isinstance(ds, Subset):
        return dataset_labels(ds.dataset)[torch.as_tensor(list(ds.indices), dtype=torch.long)]
    return torch.tensor([int(ds[i][1]) for i in range(len(ds))], dtype=torch.long)  # type: ignore[arg-type]


def _inputs(loader: Iterable) -> Iterator[torch.Tensor]:
    for batch in loader:
        yield batch[0] if isinstance(batch, (tuple, list)) else batch


def collect_layer_stats(model: nn.Module, data: Dataset | DataLoader, layers: Sequence[LayerInfo], *,
                        device: torch.device, batch_size: int = 128, stride: ConvStride = "layer",
                        max_rows: int | None = None, generator: torch.Generator | None = None,
                        dense_max_dim: int | None = None, sketch_rank: int = 1024, exact: bool = True,
                        progress: bool = False, desc: str = "layer inputs") -> dict[str, Accumulator]:
    """One forward pass over ``data`` under ``torch.no_grad``, accumulating every layer's input statistics.

    The model's train/eval state is the caller's choice (``svd`` uses eval; ``pgu`` eval with Dropout in train
    mode); this function never changes it, and never computes a gradient. Under ``torch.distributed`` each rank
    processes its own shard (:func:`shard_dataset`) and the statistics are all-reduced at the end.

    Args:
        model: The network (a DDP wrapper is looked through; the forward pass uses the inner module).
        data: A dataset or loader yielding ``(x, y)`` or ``x``; only inputs are used.
        layers: From :func:`projectable_layers` on the same model.
        device: Where the forward pass and the statistics live.
        batch_size: Batch size of the pass (the loader's own batch size when it has one).
        stride: Conv unfolding stride, ``"layer"`` or ``"one"``.
        max_rows: Row budget per layer for layers with several rows per sample (convs, token Linears), shared
            over the batches in proportion to their size; None keeps every row.
        generator: Generator of the row subsampling (seeded by the caller).
        dense_max_dim: Layers with ``d`` above this use a :class:`SketchAccumulator`; None: always exact Gram.
        sketch_rank: Rank cap of the sketches.
        exact: Gram products in float64 (True) or in the activations' precision, summed in float64
            (:class:`GramAccumulator`).
        progress: Show a progress bar.
        desc: Its label.

    Returns:
        ``{layer name: accumulator}`` for every layer in ``layers``.
    """
    base = unwrap_model(model)
    ds = data.dataset if isinstance(data, DataLoader) else data
    bs = data.batch_size if isinstance(data, DataLoader) and data.batch_size else batch_size
    local = shard_dataset(ds)
    n_local = len(local)  # type: ignore[arg-type]
    loader = DataLoader(local, batch_size=bs, shuffle=False)

    accs: dict[str, Accumulator] = {}
    for layer in layers:
        if dense_max_dim is not None and layer.dim > dense_max_dim:
            accs[layer.name] = SketchAccumulator(layer.dim, sketch_rank, device)
        else:
            accs[layer.name] = GramAccumulator(layer.dim, device, exact=exact)

    state = {"seen": 0, "batch": 0}

    def quota(rows_per_sample: int) -> int | None:
        if max_rows is None or rows_per_sample <= 1 or n_local == 0:
            return None
        # Budget spread over batches in proportion to their size; the shares sum to max_rows exactly.
        before, after = state["seen"], state["seen"] + state["batch"]
        return max_rows * after // n_local - max_rows * before // n_local

    def make_hook(layer: LayerInfo):  # noqa: ANN202
        def hook(_m: nn.Module, args: tuple, _out: torch.Tensor) -> None:
            x = args[0]
            count = quota(_rows_per_sample(layer, x))
            accs[layer.name].add(layer_rows(layer, x, stride=stride, count=count, generator=generator))
        return hook

    handles = [layer.module.register_forward_hook(make_hook(layer)) for layer in layers]
    try:
        with torch.no_grad():
            for x in tqdm(_inputs(loader), desc=desc, disable=not progress, leave=False, total=len(loader)):
                state["batch"] = int(x.shape[0])
                base(x.to(device))
                state["seen"] += state["batch"]
    finally:
        for h in handles:
            h.remove()
    for acc in accs.values():
        acc.reduce()
    return accs


# ---------------------------------------------------------------------------------------------------------------
# Recorded statistics (C_full) and their file
# ---------------------------------------------------------------------------------------------------------------

_FORMAT = "unlearnkit.layer_stats/1"


def _set_dropout_train(model: nn.Module) -> None:
    for m in model.modules():
        if isinstance(m, nn.modules.dropout._DropoutNd):
            m.train()


def weights_fingerprint(model: nn.Module, layers: Sequence[LayerInfo] | None = None) -> str:
    """SHA-256 (16 hex digits) of the tracked layers' weights: tells whether stats were recorded on this model."""
    h = hashlib.sha256()
    for layer in layers if layers is not None else projectable_layers(model):
        h.update(layer.name.encode())
        h.update(layer.weight.detach().to("cpu", torch.float32).contiguous().numpy().tobytes())
    return h.hexdigest()[:16]


class LayerStats:
    """Per-layer uncentred Gram matrices ``C_l = Σ x xᵀ`` of the inputs of every Conv2d/Linear (spec §2 step 0).

    Conv inputs are unfolded with the layer's padding and dilation at stride 1 (``conv_stride="one"``, the
    official convention; ``"layer"`` uses the layer's stride); Linear inputs are flattened over every leading
    dimension. Sums are unnormalised and float64, so statistics of disjoint data add and subtract exactly:
    ``C_retain = C_full − C_forget``. Build them once after training with :meth:`from_loader`, store them beside
    the checkpoint with :meth:`save`, and pass them to ``unlearn(..., stats=...)`` so that ``pgu`` needs no retain
    data at deletion time.

    Attributes:
        grams: ``{layer name: d×d float64 Gram matrix}``.
        rows: ``{layer name: number of rows summed}``.
        meta: ``format``, ``conv_stride``, ``dropout``, ``samples`` and ``model_hash`` (weights fingerprint).

    Example:
        >>> import torch
        >>> from torch.utils.data import DataLoader, TensorDataset
        >>> net = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.ReLU(), torch.nn.Linear(8, 3))
        >>> st = LayerStats.from_loader(net, DataLoader(TensorDataset(torch.randn(50, 4)), batch_size=16))
        >>> sorted(st.grams), st.grams["0"].shape, st.rows["0"]
        (['0', '2'], torch.Size([4, 4]), 50)
    """

    def __init__(self, grams: dict[str, torch.Tensor], rows: dict[str, int], meta: dict[str, Any]) -> None:
        self.grams = grams
        self.rows = rows
        self.meta = dict(meta)
        # Datasets whose statistics were subtracted in place by earlier requests (pgu's update_stats), in memory
        # only (not saved): pgu's cumulative mode measures forget accuracy on them too.
        self.forgotten: list[Dataset] = []

    # -- construction ---------------------------------------------------------------------------------------------
    @classmethod
    def from_loader(cls, model: nn.Module, loader: DataLoader | Dataset, *, conv_stride: ConvStride = "one",
                    dropout: str = "train", device: torch.device | str | None = None, batch_size: int = 128,
                    seed: int | None = 0, exclude: Sequence[str] = (), progress: bool = False) -> LayerStats:
        """One no-grad pass over ``loader`` (inputs only) with ``model`` in eval mode.

        Args:
            model: The trained model θ₀ (its train/eval state is restored afterwards).
            loader: The data, typically the full training set (a loader's own batches and transforms are used).
            conv_stride: ``"one"`` (official) or ``"layer"``.
            dropout: ``"train"`` keeps Dropout active during the pass (the official code does), ``"eval"``
                switches it off; BatchNorm always uses its running statistics.
            device: Where to run (default: the model's device).
            batch_size: Batch size when ``loader`` is a dataset.
            seed: Seeds the Dropout masks (None: the global generator as it is).
            exclude: Module names to skip.
            progress: Show a progress bar.

        Returns:
            The statistics; under ``torch.distributed`` every rank holds the sums over all ranks' shards.
        """
        base = unwrap_model(model)
        if dropout not in ("train", "eval"):
            raise ConfigError(f"LayerStats.from_loader: dropout must be 'train' or 'eval', got {dropout!r}")
        if conv_stride not in ("one", "layer"):
            raise ConfigError(f"LayerStats.from_loader: conv_stride must be 'one' or 'layer', got {conv_stride!r}")
        dev = torch.device(device) if device is not None else next(base.parameters()).device
        layers = projectable_layers(base, exclude)
        if not layers:
            raise IncompatibleModelError("the model has no nn.Linear or nn.Conv2d layer to record statistics for")
        was = base.training
        base.eval()
        if dropout == "train":
            _set_dropout_train(base)
        try:
            with torch.random.fork_rng(devices=[dev] if dev.type == "cuda" else []):
                if seed is not None:
                    torch.manual_seed(int(seed))
                accs = collect_layer_stats(base, loader, layers, device=dev, batch_size=batch_size,
                                           stride=conv_stride, progress=progress, desc="pgu statistics")
        finally:
            base.train(was)
        n = len(loader.dataset if isinstance(loader, DataLoader) else loader)  # type: ignore[arg-type]
        grams = {k: a.gram for k, a in accs.items()}  # type: ignore[attr-defined]
        rows = {k: int(a.rows) for k, a in accs.items()}
        meta = {"format": _FORMAT, "conv_stride": conv_stride, "dropout": dropout, "samples": int(n),
                "model_hash": weights_fingerprint(base, layers)}
        return cls(grams, rows, meta)

    # -- algebra --------------------------------------------------------------------------------------------------
    def subtract(self, other: LayerStats) -> LayerStats:
        """``C_self − C_other`` per layer (e.g. full-training minus forget statistics)."""
        missing = sorted(set(self.grams) ^ set(other.grams))
        if missing:
            raise DataError(f"the two LayerStats cover different layers ({missing[:5]}): record both on the same "
                            "model")
        if self.meta.get("conv_stride") != other.meta.get("conv_stride"):
            raise DataError(f"cannot subtract statistics unfolded at conv_stride={other.meta.get('conv_stride')!r} "
                            f"from statistics at {self.meta.get('conv_stride')!r}: use the same convention")
        grams = {k: self.grams[k] - other.grams[k].to(self.grams[k].device) for k in self.grams}
        rows = {k: self.rows[k] - other.rows[k] for k in self.rows}
        meta = dict(self.meta, samples=int(self.meta.get("samples", 0)) - int(other.meta.get("samples", 0)))
        return LayerStats(grams, rows, meta)

    __sub__ = subtract

    def to(self, device: torch.device | str) -> LayerStats:
        return LayerStats({k: v.to(device) for k, v in self.grams.items()}, dict(self.rows), self.meta)

    def check_layers(self, layers: Sequence[LayerInfo]) -> None:
        """Raise ``IncompatibleModelError`` unless every layer has a Gram matrix of the right size."""
        missing = [la.name for la in layers if la.name not in self.grams]
        wrong = [f"{la.name} (d={la.dim}, stats {tuple(self.grams[la.name].shape)})" for la in layers
                 if la.name in self.grams and tuple(self.grams[la.name].shape) != (la.dim, la.dim)]
        if missing or wrong:
            raise IncompatibleModelError(
                "the recorded statistics do not match the model: "
                + (f"no statistics for layers {missing[:5]}; " if missing else "")
                + (f"wrong sizes for {wrong[:3]}; " if wrong else "")
                + "record them with LayerStats.from_loader(model, train_loader) on this architecture")

    # -- persistence ----------------------------------------------------------------------------------------------
    def save(self, path: str | os.PathLike) -> None:
        """Write a safetensors file (Gram matrices and row counts; ``meta`` in the header)."""
        from safetensors.torch import save_file

        tensors: dict[str, torch.Tensor] = {}
        for k, g in self.grams.items():
            tensors[f"gram/{k}"] = g.detach().cpu().contiguous()
            tensors[f"rows/{k}"] = torch.tensor([self.rows[k]], dtype=torch.int64)
        save_file(tensors, os.fspath(path), metadata={"unlearnkit": json.dumps(self.meta, sort_keys=True)})

    @classmethod
    def load(cls, path: str | os.PathLike, device: torch.device | str = "cpu") -> LayerStats:
        """Read a file written by :meth:`save`.

        Raises:
            CheckpointError: The file is missing, unreadable, or not a LayerStats file.
        """
        from safetensors import safe_open

        p = os.fspath(path)
        if not os.path.isfile(p):
            raise CheckpointError(f"no statistics file at {p}: record it with LayerStats.from_loader(...).save()")
        try:
            with safe_open(p, framework="pt", device=str(device)) as f:
                meta = json.loads((f.metadata() or {}).get("unlearnkit", "{}"))
                keys = list(f.keys())
                tensors = {k: f.get_tensor(k) for k in keys}
        except Exception as e:  # safetensors raises several types for corrupt files
            raise CheckpointError(f"cannot read statistics file {p}: {e}") from None
        if meta.get("format") != _FORMAT:
            raise CheckpointError(f"{p} is not a unlearnkit LayerStats file (format {meta.get('format')!r}, "
                                  f"expected {_FORMAT!r})")
        grams = {k[len("gram/"):]: v.to(torch.float64) for k, v in tensors.items() if k.startswith("gram/")}
        rows = {k[len("rows/"):]: int(v.item()) for k, v in tensors.items() if k.startswith("rows/")}
        return cls(grams, rows, meta)
