"""Seeded hashed splits and train-statistics standardisation, shared by every loader."""

from __future__ import annotations

import numpy as np

from ..errors import DataError

__all__ = ["example_keys", "hashed_split", "split_sizes", "standardise"]

_MASK = np.uint64(0xFFFFFFFFFFFFFFFF)


def _splitmix64(z: np.ndarray) -> np.ndarray:
    """SplitMix64 finaliser (Steele et al., 2014) on a uint64 array; wraps modulo 2**64 by design."""
    z = (z + np.uint64(0x9E3779B97F4A7C15)) & _MASK
    z = ((z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)) & _MASK
    z = ((z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)) & _MASK
    return z ^ (z >> np.uint64(31))


def example_keys(n: int, seed: int, salt: int = 0) -> np.ndarray:
    """A pseudo-random uint64 key per example index, a pure function of ``(seed, salt, index)``.

    Because each key depends only on its own index, an example's key (and hence which split it lands in, up to the
    split sizes) does not depend on how the other examples are stored or ordered.
    """
    with np.errstate(over="ignore"):
        base = _splitmix64(np.array([(int(seed) * 1_000_003 + int(salt)) & 0xFFFFFFFFFFFFFFFF], dtype=np.uint64))
        return _splitmix64(np.arange(n, dtype=np.uint64) ^ base[0])


def split_sizes(n: int, fractions: tuple[float, ...], what: str) -> list[int]:
    """Sizes for ``fractions`` of ``n`` examples (rounded, the first split takes the remainder), each at least 1.

    Raises:
        DataError: ``n`` is too small to give every split at least one example.
    """
    sizes = [max(1, int(round(f * n))) for f in fractions[1:]]
    first = n - sum(sizes)
    if first < 1:
        raise DataError(f"{what} has only {n} examples, too few to split into {len(fractions)} non-empty parts "
                        f"(fractions {fractions}); supply more data")
    return [first, *sizes]


def hashed_split(n: int, seed: int, sizes: list[int], salt: int = 0) -> list[np.ndarray]:
    """Split indices ``0..n-1`` into parts of the given sizes by ranking the examples' hash keys.

    Each example gets the key :func:`example_keys` ``(n, seed)[i]``; examples sorted by key fill the parts in
    order. The same ``(seed, n)`` always gives the same split, and each part's indices are returned sorted.
    """
    if sum(sizes) != n:
        raise DataError(f"split sizes {sizes} do not add up to the {n} examples")
    order = np.argsort(example_keys(n, seed, salt), kind="stable")
    parts, start = [], 0
    for s in sizes:
        parts.append(np.sort(order[start:start + s]))
        start += s
    return parts


def standardise(train: np.ndarray, *others: np.ndarray, scale: float = 1.0,
                chunk: int = 4096) -> tuple[list[np.ndarray], list[float], list[float]]:
    """Standardise arrays per index of axis 1 (channel or feature) with the mean and std of ``train``.

    Values are first multiplied by ``scale`` (e.g. 1/255 for uint8 images, so the reported statistics are in
    [0, 1] units). Statistics are accumulated in float64 over row chunks in two passes (mean, then squared
    deviations), which stays exact for large offsets and never materialises a float64 copy of a big dataset.
    Constant channels get std 1 so they map to 0 instead of dividing by zero.

    Returns:
        ``([train, *others] standardised as float32, mean, std)`` with one mean/std per index of axis 1.
    """
    if train.shape[0] == 0:
        raise DataError("cannot standardise an empty training split")
    other_axes = (0, *range(2, train.ndim))
    count = train.shape[0] * (int(np.prod(train.shape[2:])) if train.ndim > 2 else 1)
    total = np.zeros(train.shape[1], dtype=np.float64)
    for s in range(0, train.shape[0], chunk):
        total += (train[s:s + chunk].astype(np.float64) * scale).sum(axis=other_axes)
    mean = total / count
    bshape = (1, -1) + (1,) * (train.ndim - 2)
    sq = np.zeros(train.shape[1], dtype=np.float64)
    for s in range(0, train.shape[0], chunk):
        sq += ((train[s:s + chunk].astype(np.float64) * scale - mean.reshape(bshape)) ** 2).sum(axis=other_axes)
    std = np.sqrt(sq / count)
    std = np.where(std < 1e-8, 1.0, std)
    m32, inv32 = mean.reshape(bshape).astype(np.float32), (1.0 / std).reshape(bshape).astype(np.float32)
    out = []
    for a in (train, *others):
        res = np.empty(a.shape, dtype=np.float32)
        for s in range(0, a.shape[0], chunk):
            res[s:s + chunk] = (a[s:s + chunk].astype(np.float32) * np.float32(scale) - m32) * inv32
        out.append(res)
    return out, [float(v) for v in mean], [float(v) for v in std]
