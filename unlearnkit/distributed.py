"""Thin helpers over ``torch.distributed``; every function is a no-op in a single process.

Launch (one process is the default; N processes on one machine)::

    unlearnkit run ...
    torchrun --nproc_per_node N -m unlearnkit run ...

Methods call :func:`all_reduce_sum` on global statistics (Gram matrices, saliency scores, held-out losses) so that
every rank applies the same update; in a single process it returns the tensor unchanged.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable
from typing import Any, TypeVar

import torch
import torch.distributed as dist

__all__ = [
    "EpochShuffleSampler",
    "MergedTailBatchSampler",
    "all_reduce_mean",
    "all_reduce_sum",
    "barrier",
    "broadcast_module_",
    "broadcast_object",
    "epoch_loader",
    "gather_rows",
    "init_from_env",
    "is_distributed",
    "is_main_process",
    "local_batch_size",
    "rank",
    "rank_zero_only",
    "world_size",
]

F = TypeVar("F", bound=Callable[..., Any])


def is_distributed() -> bool:
    """True when a process group is initialised with more than one rank."""
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def rank() -> int:
    """This process's rank in the initialised group, 0 without one (consistent with :func:`world_size`)."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank()
    return 0


def world_size() -> int:
    if dist.is_available() and dist.is_initialized():
        return dist.get_world_size()
    return 1


def is_main_process() -> bool:
    """Rank 0 (before the group exists, a torchrun worker reads its rank from the environment)."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank() == 0
    return os.environ.get("RANK", "0") == "0"


def rank_zero_only(fn: F) -> F:
    """Run ``fn`` on rank 0 only (returns None elsewhere): use it for file and console output."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        if is_main_process():
            return fn(*args, **kwargs)
        return None

    return wrapper  # type: ignore[return-value]


def all_reduce_sum(t: torch.Tensor) -> torch.Tensor:
    """Sum ``t`` over ranks in place and return it (identity in a single process)."""
    if is_distributed():
        dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return t


def all_reduce_mean(t: torch.Tensor) -> torch.Tensor:
    """Average ``t`` over ranks in place and return it (identity in a single process)."""
    if is_distributed():
        dist.all_reduce(t, op=dist.ReduceOp.SUM)
        t /= dist.get_world_size()
    return t


# ---------------------------------------------------------------------------------------------------------------
# Process group set-up (torchrun) and data sharding
# ---------------------------------------------------------------------------------------------------------------


def init_from_env() -> torch.device | None:
    """Initialise the default process group when launched by torchrun (WORLD_SIZE > 1); return this rank's device.

    Backend ``nccl`` when CUDA is available (each rank takes ``cuda:LOCAL_RANK``), else ``gloo``. A single process
    (no WORLD_SIZE, or 1) does nothing and returns None, so the single-process path needs no set-up at all.
    """
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1 or not dist.is_available():
        return None
    if torch.cuda.is_available():
        local = int(os.environ.get("LOCAL_RANK", "0"))
        torch.cuda.set_device(local)
        device = torch.device("cuda", local)
        backend = "nccl"
    else:
        device, backend = torch.device("cpu"), "gloo"
    if not dist.is_initialized():
        dist.init_process_group(backend=backend)
    return device


def barrier() -> None:
    if is_distributed():
        dist.barrier()


def broadcast_object(obj: Any, src: int = 0) -> Any:
    """``obj`` from rank ``src`` on every rank (identity in a single process)."""
    if not is_distributed():
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=src)
    return box[0]


def broadcast_module_(module: torch.nn.Module, src: int = 0, *, buffers_only: bool = False) -> None:
    """Copy every parameter and buffer of ``module`` (only the buffers if asked) from rank ``src``, in place.

    After a DDP run the parameters agree on every rank, but BatchNorm running statistics were updated from each
    rank's own shard in the last forward pass: broadcasting the buffers makes the ranks hold identical models.
    """
    if not is_distributed():
        return
    with torch.no_grad():
        for t in ([] if buffers_only else list(module.parameters())) + list(module.buffers()):
            dist.broadcast(t.data, src=src)


def gather_rows(local: torch.Tensor, positions: torch.Tensor, total: int) -> torch.Tensor:
    """Reassemble a (total, ...) tensor from each rank's rows at ``positions`` (no duplicates, nothing dropped)."""
    if not is_distributed():
        out = local.new_empty((total, *local.shape[1:]))
        out[positions] = local
        return out
    ws = dist.get_world_size()
    shards: list[Any] = [None] * ws
    dist.all_gather_object(shards, (positions.cpu(), local.cpu()))
    out = local.new_empty((total, *local.shape[1:])).cpu()
    seen = torch.zeros(total, dtype=torch.bool)
    for pos, rows in shards:
        if bool(seen[pos].any()):
            raise RuntimeError("gather_rows: a row was computed on two ranks")
        out[pos] = rows
        seen[pos] = True
    if not bool(seen.all()):
        raise RuntimeError("gather_rows: some rows were computed on no rank")
    return out.to(local.device)


class EpochShuffleSampler(torch.utils.data.Sampler[int]):
    """Seeded sampler whose order changes on every pass, and that shards identically under torch.distributed.

    Pass ``e`` draws ``randperm(n)`` from a generator seeded with ``seed + e``; rank ``r`` of ``W`` takes positions
    ``r, r+W, ...`` of it (padded by wrapping to a multiple of W, as DistributedSampler does). With a per-rank batch of
    B/W, step s of all ranks together covers exactly the examples a single process sees in step s with batch B, so a
    DDP run and a single-process run follow the same global batches.
    """

    def __init__(self, n: int, *, shuffle: bool = True, seed: int = 0) -> None:
        self.n, self.shuffle, self.seed = int(n), bool(shuffle), int(seed)
        self.rank, self.world = rank(), world_size()
        self.epoch = 0

    def _order(self) -> torch.Tensor:
        if self.shuffle:
            g = torch.Generator()
            g.manual_seed(self.seed + self.epoch)
            return torch.randperm(self.n, generator=g)
        return torch.arange(self.n)

    def __len__(self) -> int:
        return -(-self.n // self.world)

    def __iter__(self) -> Any:
        order = self._order()
        self.epoch += 1
        per = len(self)
        if per * self.world > self.n:
            order = torch.cat([order, order[: per * self.world - self.n]])
        return iter(order[self.rank:: self.world].tolist())


class MergedTailBatchSampler(torch.utils.data.Sampler[list[int]]):
    """Batches of ``batch_size`` from ``sampler``, except that a last batch of a single example is merged into the
    one before it.

    A batch of one example cannot go through BatchNorm in training mode wherever the feature map is 1×1 (after
    global pooling, or a BatchNorm1d head): PyTorch raises "Expected more than 1 value per channel". Dropping the
    example would silently skip data; merging keeps every example and changes one step's batch size by one. Under
    torch.distributed every rank's sampler yields the same number of indices, so all ranks merge alike.
    """

    def __init__(self, sampler: torch.utils.data.Sampler[int], batch_size: int) -> None:
        self.sampler, self.batch_size = sampler, int(batch_size)

    def __len__(self) -> int:
        n = len(self.sampler)  # type: ignore[arg-type]
        full, rest = divmod(n, self.batch_size)
        return full + (1 if rest > 1 or (rest == 1 and full == 0) else 0)

    def __iter__(self) -> Any:
        idx = list(iter(self.sampler))
        batches = [idx[i:i + self.batch_size] for i in range(0, len(idx), self.batch_size)]
        if len(batches) > 1 and len(batches[-1]) == 1:
            tail = batches.pop()
            batches[-1] = batches[-1] + tail
        return iter(batches)


def epoch_loader(dataset: Any, batch_size: int, *, shuffle: bool, seed: int, drop_last: bool = False) -> Any:
    """A DataLoader over ``dataset`` with a *global* ``batch_size``: an :class:`EpochShuffleSampler` (seeded, a new
    order every pass, sharded per rank) and, unless ``drop_last``, a :class:`MergedTailBatchSampler` so that no
    batch holds a single example."""
    from torch.utils.data import DataLoader

    sampler = EpochShuffleSampler(len(dataset), shuffle=shuffle, seed=int(seed))
    if drop_last:
        return DataLoader(dataset, batch_size=local_batch_size(batch_size), sampler=sampler, drop_last=True)
    return DataLoader(dataset, batch_sampler=MergedTailBatchSampler(sampler, local_batch_size(batch_size)))


def local_batch_size(global_batch: int) -> int:
    """The per-rank batch that makes ``global_batch`` across ranks (at least 1)."""
    return max(1, int(global_batch) // world_size())
