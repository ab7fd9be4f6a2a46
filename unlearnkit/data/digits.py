"""``digits``: scikit-learn's bundled 8×8 handwritten digits (1,797 images, 10 classes; real data, offline).

Sub-classes (for ``subclass:`` requests): digits has no sub-labels of its own, so each class is split into two
writing styles by 2-means clustering of its raw pixels (scikit-learn ``KMeans(n_clusters=2, n_init=10,
random_state=0)`` over all 1,797 images, independent of the split seed). Sub-class 0, ``major``, is the larger
cluster, 1, ``minor``, the smaller (class 3: 115 / 68 images; the smallest minor cluster is class 9's, 34).
Unlike ``shapes``' filled/outline sub-classes these are discovered, not generated: they are real modes of the
data, but a model need not treat them as distinct.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ._split import hashed_split, split_sizes, standardise

__all__ = ["DIGITS_FRACTIONS", "DIGITS_SUB_NAMES", "digit_styles", "load_digits_arrays"]

# train / val / test shares of the 1,797 images.
DIGITS_FRACTIONS = (0.7, 0.15, 0.15)
DIGITS_SUB_NAMES = ("major", "minor")


def digit_styles(pixels: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Sub-label (0 = larger, 1 = smaller 2-means cluster of its class) for every image; see the module doc."""
    from sklearn.cluster import KMeans

    sub = np.zeros(len(labels), dtype=np.int64)
    for c in np.unique(labels):
        rows = np.flatnonzero(labels == c)
        km = KMeans(n_clusters=2, n_init=10, random_state=0).fit(pixels[rows].reshape(len(rows), -1))
        lab = km.labels_.astype(np.int64)
        if (lab == 1).sum() > (lab == 0).sum():
            lab = 1 - lab
        sub[rows] = lab
    return sub


def load_digits_arrays(seed: int) -> dict[str, Any]:
    """The digits as ``1×8×8`` float images, split by a seeded hashed split and standardised with train stats.

    Returns:
        A dict with ``train``/``val``/``test`` tuples ``(x, y, sub)`` and the scalar ``mean``/``std`` (one channel).
    """
    from sklearn.datasets import load_digits

    d = load_digits()
    x = d.images.astype(np.float32)[:, None]  # (1797, 1, 8, 8), values 0..16
    y = d.target.astype(np.int64)
    sub = digit_styles(x, y)
    parts = hashed_split(len(y), seed, split_sizes(len(y), DIGITS_FRACTIONS, "digits"))
    (xtr, xva, xte), mean, std = standardise(*(x[p] for p in parts))
    return {"train": (xtr, y[parts[0]], sub[parts[0]]), "val": (xva, y[parts[1]], sub[parts[1]]),
            "test": (xte, y[parts[2]], sub[parts[2]]), "mean": mean,
            "std": std, "source_ids": parts}
