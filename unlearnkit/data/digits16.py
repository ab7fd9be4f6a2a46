"""Digits for diffusion: scikit-learn's 8×8 digits upsampled to 16×16 and scaled to [−1, 1].

The split is the ``digits`` dataset's (same seeded hashed split, same 70/15/15 shares, so example ``i`` of the
train split is the same image as in ``load_dataset("digits", seed=seed)``); only the pixels differ: raw values
0..16 are divided by 16, mapped to [−1, 1] (DDPM's data range; no standardisation), then bilinearly upsampled
(``torch.nn.functional.interpolate``, ``align_corners=False``) to ``size``×``size`` so the two-level UNet has an
even 8×8 bottom level.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from ..errors import ConfigError
from ._split import hashed_split, split_sizes
from .base import LabeledDataset
from .digits import DIGITS_FRACTIONS

__all__ = ["load_digits_for_diffusion"]


def load_digits_for_diffusion(seed: int = 0, *, size: int = 16) -> dict[str, LabeledDataset]:
    """``{"train", "val", "test"}`` :class:`LabeledDataset` of ``1×size×size`` images in [−1, 1] (see module doc)."""
    from sklearn.datasets import load_digits

    if not isinstance(size, int) or size < 8:
        raise ConfigError(f"size must be an int >= 8, got {size!r}")
    d = load_digits()
    x = torch.from_numpy(d.images.astype(np.float32)[:, None] / 16.0 * 2.0 - 1.0)
    if size != 8:
        x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False).clamp(-1.0, 1.0)
    y = torch.from_numpy(d.target.astype(np.int64))
    parts = hashed_split(len(y), seed, split_sizes(len(y), DIGITS_FRACTIONS, "digits"))
    return {name: LabeledDataset(x[torch.from_numpy(p)], y[torch.from_numpy(p)], source_ids=p)
            for name, p in zip(("train", "val", "test"), parts, strict=True)}
