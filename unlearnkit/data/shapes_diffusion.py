"""Shapes for diffusion: the ``shapes`` images (:mod:`unlearnkit.data.shapes`), 32×32 RGB, scaled to [−1, 1].

The images, labels and split are ``load_shapes``'s for the same ``seed`` and sizes (so example ``i`` of the train
split is the same picture as in ``load_dataset("shapes:N", seed=seed)``); only the pixels differ: the rendered
values in [0, 1] are mapped to [−1, 1] (DDPM's data range, no standardisation). ``size=16`` (or 8) averages
2×2 (4×4) blocks (``torch.nn.functional.interpolate``, ``mode="area"``) for a cheaper UNet, but loses the task: the
judge ``cnn`` (its default recipe) scores 47% on the real 16×16 test images against 85.5% at 32×32 (data seed 0,
5,000 training images, measured 2026-12-04), so the generation CLI uses 32×32.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ..errors import ConfigError
from .base import LabeledDataset
from .shapes import render_split

__all__ = ["load_shapes_for_diffusion"]


def load_shapes_for_diffusion(n_train: int = 5000, n_val: int = 1000, n_test: int = 1000, seed: int = 0, *,
                              size: int = 32) -> dict[str, LabeledDataset]:
    """``{"train", "val", "test"}`` :class:`LabeledDataset` of ``3×size×size`` images in [−1, 1] (module doc)."""
    if size not in (8, 16, 32):
        raise ConfigError(f"size must be 8, 16 or 32 (32 / a power of two), got {size!r}")
    img, y, _sub, parts = render_split(n_train, n_val, n_test, seed)
    x = torch.from_numpy(img).float() * 2.0 - 1.0
    if size != 32:
        x = F.interpolate(x, size=(size, size), mode="area")
    yt = torch.from_numpy(y)
    return {name: LabeledDataset(x[torch.from_numpy(p)], yt[torch.from_numpy(p)], source_ids=p)
            for name, p in zip(("train", "val", "test"), parts, strict=True)}
