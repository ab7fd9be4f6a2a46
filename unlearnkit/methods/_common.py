"""Small pieces shared by several methods: re-batching, seeded loaders, cycling, BN handling, parameter filters."""

from __future__ import annotations

import contextlib
import itertools
from collections.abc import Iterator

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from ..stats import unwrap_model

__all__ = ["batchnorm_eval", "cycle", "loader_seed", "make_generator", "rebatch", "takes_token_ids",
           "weight_parameters"]

_BN = (nn.modules.batchnorm._BatchNorm, nn.GroupNorm, nn.LayerNorm, nn.modules.instancenorm._InstanceNorm)


def make_generator(seed: int) -> torch.Generator:
    g = torch.Generator()
    g.manual_seed(int(seed))
    return g


def loader_seed(seed: int, salt: int) -> int:
    """A distinct, reproducible seed per purpose (noise, impair, repair, ...) derived from the config seed."""
    return (int(seed) * 1_000_003 + int(salt)) % (2**31 - 1)


def rebatch(loader_or_dataset: DataLoader | Dataset, batch_size: int, *, shuffle: bool, seed: int = 0,
            drop_last: bool = False) -> DataLoader:
    """A new DataLoader over the same dataset, with its own (global) batch size and a seeded order.

    The order changes on every pass (seed + pass number). Under torch.distributed the dataset is sharded across
    ranks and each rank takes ``batch_size // world_size`` examples per step, so ``batch_size`` stays the global
    batch and a multi-process run follows the same global batches as a single process
    (:class:`~unlearnkit.distributed.EpochShuffleSampler`). Without ``drop_last``, a last batch of a single
    example is merged into the previous one (BatchNorm cannot train on one example at 1×1 resolution).
    """
    from ..distributed import epoch_loader

    ds = loader_or_dataset.dataset if isinstance(loader_or_dataset, DataLoader) else loader_or_dataset
    return epoch_loader(ds, batch_size, shuffle=shuffle, seed=seed, drop_last=drop_last)


def cycle(loader: DataLoader) -> Iterator:
    """Iterate over ``loader`` forever (re-shuffling each pass when the loader shuffles)."""
    for epoch in itertools.count():
        sampler = getattr(loader, "sampler", None)
        if hasattr(sampler, "set_epoch"):  # a user's DistributedSampler (ours reshuffles by itself)
            sampler.set_epoch(epoch)
        yielded = False
        for batch in loader:
            yielded = True
            yield batch
        if not yielded:
            raise ValueError("cannot cycle over an empty loader")


@contextlib.contextmanager
def batchnorm_eval(model: nn.Module) -> Iterator[None]:
    """Keep normalisation layers in eval mode (running statistics frozen) while the rest trains."""
    states = [(m, m.training) for m in model.modules() if isinstance(m, _BN)]
    for m, _ in states:
        m.eval()
    try:
        yield
    finally:
        for m, was in states:
            m.train(was)


def weight_parameters(model: nn.Module) -> list[tuple[str, nn.Parameter]]:
    """Trainable weights of Linear/Conv layers (no biases, no normalisation parameters)."""
    out = []
    for mname, m in model.named_modules():
        if isinstance(m, (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)) and m.weight.requires_grad:
            out.append((f"{mname}.weight" if mname else "weight", m.weight))
    return out


def takes_token_ids(model: nn.Module) -> bool:
    """True for models that declare token-id inputs (``discrete_inputs = True``, e.g. ``transformer``), looking
    through DistributedDataParallel: datasets store token ids as float tensors, so the dtype alone does not tell."""
    return bool(getattr(unwrap_model(model), "discrete_inputs", False))
