"""``unet``: a small class-conditional DDPM UNet (ε-prediction) with a learned null class for classifier-free guidance.

The design is the DDPM/DDIM CIFAR-10 UNet that SFR-on's generation code uses (spec ``sfron_salun.md`` §2.1: ch 128,
ch_mult [1, 2, 2, 2], 2 res-blocks per level, attention at 16×16, dropout 0.1, a class embedding added to the time
embedding, cond_drop_prob 0.1), scaled down for 16×16 one-channel digits on a CPU: base width 32, ch_mult (1, 2)
(levels 16×16 and 8×8), one res-block per level, self-attention only in the middle block (8×8), dropout 0.1.

The class embedding has ``num_classes + 1`` rows; row ``num_classes`` is the learned *null* class used for the
unconditional prediction (label drop during training, the ε_∅ term of guidance).

This module is not in the classifier registry (:func:`unlearnkit.models.build_model`): registry models map inputs
to logits, and the UNet's forward is ``model(x_t, t, c) -> ε``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import ConfigError
from ..tasks.diffusion import guided_eps

__all__ = ["ConditionalUNet", "guided_eps", "timestep_embedding"]


def timestep_embedding(t: torch.Tensor, dim: int) -> torch.Tensor:
    """Sinusoidal embedding of integer timesteps ``t`` (shape ``(B,)``) into ``dim`` features (DDPM's)."""
    half = dim // 2
    freqs = torch.exp(-math.log(10000.0) * torch.arange(half, dtype=torch.float32, device=t.device) / max(half - 1, 1))
    args = t.float()[:, None] * freqs[None]
    emb = torch.cat([torch.sin(args), torch.cos(args)], dim=1)
    return F.pad(emb, (0, 1)) if dim % 2 else emb


def _norm(c: int) -> nn.GroupNorm:
    return nn.GroupNorm(min(8, c), c)


class _ResBlock(nn.Module):
    """GN-SiLU-conv, + projected embedding, GN-SiLU-dropout-conv, with a 1×1 skip when the width changes."""

    def __init__(self, cin: int, cout: int, emb_dim: int, dropout: float) -> None:
        super().__init__()
        self.norm1, self.conv1 = _norm(cin), nn.Conv2d(cin, cout, 3, padding=1)
        self.emb = nn.Linear(emb_dim, cout)
        self.norm2, self.drop, self.conv2 = _norm(cout), nn.Dropout(dropout), nn.Conv2d(cout, cout, 3, padding=1)
        self.skip = nn.Conv2d(cin, cout, 1) if cin != cout else nn.Identity()

    def forward(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        h = self.conv1(F.silu(self.norm1(x)))
        h = h + self.emb(F.silu(emb))[:, :, None, None]
        h = self.conv2(self.drop(F.silu(self.norm2(h))))
        return self.skip(x) + h


class _Attention(nn.Module):
    """Single-head self-attention over the spatial positions, with a residual connection (DDPM's AttnBlock)."""

    def __init__(self, c: int) -> None:
        super().__init__()
        self.norm, self.qkv, self.proj = _norm(c), nn.Conv2d(c, 3 * c, 1), nn.Conv2d(c, c, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        q, k, v = self.qkv(self.norm(x)).reshape(b, 3, c, h * w).unbind(1)
        out = F.scaled_dot_product_attention(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2))
        return x + self.proj(out.transpose(1, 2).reshape(b, c, h, w))


class ConditionalUNet(nn.Module):
    """Class-conditional ε-prediction UNet: ``forward(x_t, t, c) -> ε`` of the same shape as ``x_t``.

    Args:
        in_channels: Image channels (1 for digits).
        num_classes: Number of real classes K; the class embedding has K + 1 rows, row K is the null class.
        ch: Base width.
        ch_mult: Width multiplier per resolution level; the image is halved between levels, so the side must be
            divisible by ``2 ** (len(ch_mult) - 1)``.
        dropout: Dropout inside the res-blocks (0.1 as the spec).
        attention: Self-attention in the middle (lowest-resolution) block.
    """

    def __init__(self, in_channels: int = 1, num_classes: int = 10, *, ch: int = 32,
                 ch_mult: Sequence[int] = (1, 2), dropout: float = 0.1, attention: bool = True) -> None:
        super().__init__()
        ch_mult = tuple(ch_mult)
        if num_classes < 1 or ch < 8 or not ch_mult or any(m < 1 for m in ch_mult) or not 0.0 <= dropout < 1.0:
            raise ConfigError(f"ConditionalUNet needs num_classes >= 1, ch >= 8, positive ch_mult and dropout in "
                              f"[0, 1); got num_classes={num_classes}, ch={ch}, ch_mult={ch_mult}, dropout={dropout}")
        self.in_channels, self.num_classes, self.null_class = in_channels, num_classes, num_classes
        self.ch, self.levels = ch, len(ch_mult)
        emb_dim = 4 * ch
        self.time_mlp = nn.Sequential(nn.Linear(ch, emb_dim), nn.SiLU(), nn.Linear(emb_dim, emb_dim))
        self.class_emb = nn.Embedding(num_classes + 1, emb_dim)
        self.conv_in = nn.Conv2d(in_channels, ch, 3, padding=1)
        widths = [ch * m for m in ch_mult]
        self.down = nn.ModuleList()
        self.downsample = nn.ModuleList()
        c = ch
        for i, w in enumerate(widths):
            self.down.append(_ResBlock(c, w, emb_dim, dropout))
            c = w
            self.downsample.append(nn.Conv2d(c, c, 3, stride=2, padding=1) if i < len(widths) - 1 else nn.Identity())
        self.mid1 = _ResBlock(c, c, emb_dim, dropout)
        self.mid_attn = _Attention(c) if attention else nn.Identity()
        self.mid2 = _ResBlock(c, c, emb_dim, dropout)
        self.up = nn.ModuleList()
        self.upsample = nn.ModuleList()
        for i, w in reversed(list(enumerate(widths))):
            self.up.append(_ResBlock(c + w, w, emb_dim, dropout))
            c = w
            self.upsample.append(nn.Conv2d(c, c, 3, padding=1) if i > 0 else nn.Identity())
        self.norm_out = _norm(c)
        self.conv_out = nn.Conv2d(c, in_channels, 3, padding=1)
        # Zero-initialised output conv (as DDPM++ / guided-diffusion): the untrained net predicts ε = 0.
        nn.init.zeros_(self.conv_out.weight)
        nn.init.zeros_(self.conv_out.bias)

    def forward(self, x: torch.Tensor, t: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        if x.ndim != 4 or x.shape[1] != self.in_channels:
            raise ConfigError(f"ConditionalUNet expects (B, {self.in_channels}, H, W) inputs, got {tuple(x.shape)}")
        side = 2 ** (self.levels - 1)
        if x.shape[2] % side or x.shape[3] % side:
            raise ConfigError(f"image side {tuple(x.shape[2:])} must be divisible by {side} for {self.levels} levels")
        emb = self.time_mlp(timestep_embedding(t, self.ch)) + self.class_emb(c)
        h = self.conv_in(x)
        skips = []
        for block, down in zip(self.down, self.downsample, strict=True):
            h = block(h, emb)
            skips.append(h)
            h = down(h)
        h = self.mid2(self.mid_attn(self.mid1(h, emb)), emb)
        for block, up in zip(self.up, self.upsample, strict=True):
            h = block(torch.cat([h, skips.pop()], dim=1), emb)
            if not isinstance(up, nn.Identity):
                h = up(F.interpolate(h, scale_factor=2.0, mode="nearest"))
        return self.conv_out(F.silu(self.norm_out(h)))
