"""``resnet18``: ResNet-18 with the CIFAR-style stem (He et al., 2016; the usual CIFAR adaptation).

The stem is a single 3×3 stride-1 convolution with no max-pool, so 32×32 inputs keep their resolution into the
first stage; four stages of two BasicBlocks each with strides 1, 2, 2, 2 and widths ``width·(1, 2, 4, 8)``; adaptive
average pooling and a linear head. Projection shortcuts (1×1 conv + BatchNorm, as in the ``downsample`` of
torchvision's BasicBlock) are used where the shape changes, which the ``svd`` method projects like any conv.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import ConfigError
from .registry import register_model

__all__ = ["BasicBlock", "ResNet18"]


class BasicBlock(nn.Module):
    """Two 3×3 conv-BN layers with an identity or projection shortcut."""

    expansion = 1

    def __init__(self, in_planes: int, planes: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_planes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride=1, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.downsample: nn.Module | None = None
        if stride != 1 or in_planes != planes:
            self.downsample = nn.Sequential(nn.Conv2d(in_planes, planes, 1, stride=stride, bias=False),
                                            nn.BatchNorm2d(planes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        shortcut = x if self.downsample is None else self.downsample(x)
        return F.relu(out + shortcut)


class ResNet18(nn.Module):
    """CIFAR-style ResNet-18.

    Args:
        in_channels: Input channels.
        num_classes: Number of logits.
        width: Channels of the first stage (64 in the standard net; the stages use 1×, 2×, 4×, 8×).
    """

    def __init__(self, in_channels: int, num_classes: int, width: int = 64) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, width, 3, stride=1, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        planes, layers = width, []
        for i, stride in enumerate((1, 2, 2, 2)):
            out = width * 2 ** i
            layers.append(nn.Sequential(BasicBlock(planes, out, stride), BasicBlock(out, out, 1)))
            planes = out
        self.layer1, self.layer2, self.layer3, self.layer4 = layers
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(planes, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.layer4(self.layer3(self.layer2(self.layer1(out))))
        return self.fc(torch.flatten(self.pool(out), 1))


def _build_resnet18(input_shape: tuple[int, ...], num_classes: int, *, width: int = 64) -> nn.Module:
    if isinstance(width, bool) or not isinstance(width, int) or width < 1:
        raise ConfigError(f"resnet18 width must be a positive int, got {width!r}")
    return ResNet18(input_shape[0], num_classes, width)


register_model("resnet18", _build_resnet18, image_only=True,
               summary="ResNet-18, CIFAR stem (3x3 conv, stride 1, no max-pool), `width` option (default 64)")
