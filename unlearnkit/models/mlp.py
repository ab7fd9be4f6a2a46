"""``mlp``: a multi-layer perceptron that flattens any input (images or feature vectors)."""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn

from ..errors import ConfigError
from .registry import register_model

__all__ = ["MLP"]


class MLP(nn.Module):
    """Flatten → (Linear → ReLU) × len(hidden) → Linear.

    Args:
        in_features: Number of input values per example (the product of the input shape).
        num_classes: Number of logits.
        hidden: Hidden layer widths; empty gives a linear classifier.
        dropout: Dropout probability after each hidden layer (0 disables it).
    """

    def __init__(self, in_features: int, num_classes: int, hidden: Sequence[int] = (256, 128),
                 dropout: float = 0.0) -> None:
        super().__init__()
        layers: list[nn.Module] = [nn.Flatten()]
        width = in_features
        for h in hidden:
            layers += [nn.Linear(width, h), nn.ReLU(inplace=True)]
            if dropout > 0:
                layers.append(nn.Dropout(dropout))
            width = h
        self.features = nn.Sequential(*layers)
        self.head = nn.Linear(width, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


def _build_mlp(input_shape: tuple[int, ...], num_classes: int, *, hidden: Sequence[int] = (256, 128),
               dropout: float = 0.0) -> nn.Module:
    hidden = tuple(hidden)
    if any(isinstance(h, bool) or not isinstance(h, int) or h < 1 for h in hidden):
        raise ConfigError(f"mlp hidden sizes must be positive ints, got {hidden!r}")
    if not 0.0 <= float(dropout) < 1.0:
        raise ConfigError(f"mlp dropout must be in [0, 1), got {dropout!r}")
    return MLP(math.prod(input_shape), num_classes, hidden, float(dropout))


register_model("mlp", _build_mlp, image_only=False,
               summary="multi-layer perceptron on flattened inputs (any shape, incl. csv feature vectors)")
