"""``digits``: scikit-learn's bundled 8×8 handwritten digits (1,797 images, 10 classes; real data, offline)."""

from __future__ import annotations

from typing import Any

import numpy as np

from ._split import hashed_split, split_sizes, standardise

__all__ = ["DIGITS_FRACTIONS", "load_digits_arrays"]

# train / val / test shares of the 1,797 images.
DIGITS_FRACTIONS = (0.7, 0.15, 0.15)


def load_digits_arrays(seed: int) -> dict[str, Any]:
    """The digits as ``1×8×8`` float images, split by a seeded hashed split and standardised with train stats.

    Returns:
        A dict with ``train``/``val``/``test`` tuples ``(x, y)`` and the scalar ``mean``/``std`` (one channel).
    """
    from sklearn.datasets import load_digits

    d = load_digits()
    x = d.images.astype(np.float32)[:, None]  # (1797, 1, 8, 8), values 0..16
    y = d.target.astype(np.int64)
    parts = hashed_split(len(y), seed, split_sizes(len(y), DIGITS_FRACTIONS, "digits"))
    (xtr, xva, xte), mean, std = standardise(*(x[p] for p in parts))
    return {"train": (xtr, y[parts[0]]), "val": (xva, y[parts[1]]), "test": (xte, y[parts[2]]), "mean": mean,
            "std": std, "source_ids": parts}
