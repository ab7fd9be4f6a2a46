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

__all__ = ["all_reduce_mean", "all_reduce_sum", "is_distributed", "is_main_process", "rank", "rank_zero_only",
           "world_size"]

F = TypeVar("F", bound=Callable[..., Any])


def is_distributed() -> bool:
    """True when a process group is initialised with more than one rank."""
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def rank() -> int:
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank()
    return int(os.environ.get("RANK", "0"))


def world_size() -> int:
    if dist.is_available() and dist.is_initialized():
        return dist.get_world_size()
    return 1


def is_main_process() -> bool:
    return rank() == 0


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
