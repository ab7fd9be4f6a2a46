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


def standardise(train: np.ndarray, *others: np.ndarray, axes: tuple[int, ...]) -> tuple[list[np.ndarray],
                                                                                           list[float], list[float]]:
    """Standardise arrays with the mean and std of ``train`` over ``axes`` (per channel or per feature).

    Constant channels get std 1 so they map to 0 instead of dividing by zero.

    Returns:
        ``([train, *others] standardised as float32, mean, std)`` with mean/std as flat lists.
    """
    mean = train.mean(axis=axes, keepdims=True, dtype=np.float64)
    std = train.std(axis=axes, keepdims=True, dtype=np.float64)
    std = np.where(std < 1e-8, 1.0, std)
    out = [((a - mean) / std).astype(np.float32) for a in (train, *others)]
    return out, [float(v) for v in mean.ravel()], [float(v) for v in std.ravel()]
