"""``vit``: a small Vision Transformer (Dosovitskiy et al., ICLR 2021) built from ``nn.Linear`` layers only.

Patches are flattened and embedded by a Linear layer; a class token and learned position embeddings are added;
each pre-norm encoder block has multi-head self-attention with one fused ``qkv`` Linear (so q, k and v share one
input, which is what the ``svd`` method projects once) and an ``out_proj`` Linear, then an MLP of two Linears. The
head reads the class token after a final LayerNorm, as in torchvision's ``VisionTransformer``.
``nn.MultiheadAttention`` is deliberately not used: its packed ``in_proj_weight`` is not a Linear module, and the
methods that act on layer inputs (``svd``, ``pgu``) must see every weight matrix as a Linear.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import ConfigError, IncompatibleModelError
from .registry import register_model

__all__ = ["Attention", "EncoderBlock", "VisionTransformer", "default_patch_size"]


class Attention(nn.Module):
    """Multi-head self-attention with a fused ``qkv`` input projection and an ``out_proj`` output projection."""

    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(dim, 3 * dim)
        self.out_proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor, pad: torch.Tensor | None = None) -> torch.Tensor:
        """``pad`` (``(batch, tokens)``, True = ignore) masks keys out of the attention: the text transformer's
        padding. Images pass none."""
        b, t, d = x.shape
        q, k, v = self.qkv(x).view(b, t, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)
        # Written out rather than F.scaled_dot_product_attention: identical maths, and bit-for-bit the same on
        # every backend, which the determinism tests rely on.
        att = (q @ k.transpose(-2, -1)) * (1.0 / math.sqrt(d // self.heads))
        if pad is not None:
            att = att.masked_fill(pad[:, None, None, :], float("-inf"))
        out = att.softmax(dim=-1) @ v
        return self.out_proj(out.transpose(1, 2).reshape(b, t, d))


class EncoderBlock(nn.Module):
    """Pre-norm transformer block: x + Attn(LN(x)), then x + MLP(LN(x)) with GELU."""

    def __init__(self, dim: int, heads: int, mlp_ratio: float) -> None:
        super().__init__()
        hidden = int(dim * mlp_ratio)
        self.ln1 = nn.LayerNorm(dim)
        self.attn = Attention(dim, heads)
        self.ln2 = nn.LayerNorm(dim)
        self.fc1 = nn.Linear(dim, hidden)
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor, pad: torch.Tensor | None = None) -> torch.Tensor:
        x = x + self.attn(self.ln1(x), pad)
        return x + self.fc2(F.gelu(self.fc1(self.ln2(x))))


class VisionTransformer(nn.Module):
    """A small ViT for 8×8 to 32×32 images.

    Args:
        input_shape: ``(channels, height, width)``; height and width must be multiples of ``patch_size``.
        num_classes: Number of logits.
        patch_size: Side of the square patches.
        dim: Token width.
        depth: Number of encoder blocks.
        heads: Attention heads (must divide ``dim``).
        mlp_ratio: MLP hidden width as a multiple of ``dim``.
    """

    def __init__(self, input_shape: tuple[int, int, int], num_classes: int, patch_size: int, dim: int = 64,
                 depth: int = 4, heads: int = 4, mlp_ratio: float = 2.0) -> None:
        super().__init__()
        c, h, w = input_shape
        self.patch_size = patch_size
        n_tokens = (h // patch_size) * (w // patch_size)
        self.patch_embed = nn.Linear(c * patch_size * patch_size, dim)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, dim))
        self.pos_embed = nn.Parameter(torch.empty(1, n_tokens + 1, dim))
        # ViT's initialisation of the position embeddings (std 0.02); drawn from the global generator.
        nn.init.normal_(self.pos_embed, std=0.02)
        self.blocks = nn.Sequential(*[EncoderBlock(dim, heads, mlp_ratio) for _ in range(depth)])
        self.norm = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, num_classes)

    def patchify(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, C, H, W)`` → ``(B, tokens, C·p·p)``, tokens in row-major order."""
        p = self.patch_size
        b, c, h, w = x.shape
        x = x.reshape(b, c, h // p, p, w // p, p).permute(0, 2, 4, 1, 3, 5)
        return x.reshape(b, (h // p) * (w // p), c * p * p)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        tokens = self.patch_embed(self.patchify(x))
        tokens = torch.cat([self.cls_token.expand(x.shape[0], -1, -1), tokens], dim=1) + self.pos_embed
        return self.head(self.norm(self.blocks(tokens))[:, 0])


def default_patch_size(height: int, width: int) -> int:
    """Largest of 4, 2, 1 dividing both sides while leaving at least 4×4 patches (4 for 32×32, 2 for 8×8)."""
    for p in (4, 2):
        if height % p == 0 and width % p == 0 and height // p >= 4 and width // p >= 4:
            return p
    return 1


def _build_vit(input_shape: tuple[int, ...], num_classes: int, *, patch_size: int | None = None, dim: int = 64,
               depth: int = 4, heads: int = 4, mlp_ratio: float = 2.0) -> nn.Module:
    c, h, w = input_shape
    for name, value in (("dim", dim), ("depth", depth), ("heads", heads)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ConfigError(f"vit {name} must be a positive int, got {value!r}")
    if dim % heads:
        raise ConfigError(f"vit heads must divide dim, got dim={dim}, heads={heads}")
    if not float(mlp_ratio) > 0:
        raise ConfigError(f"vit mlp_ratio must be > 0, got {mlp_ratio!r}")
    p = default_patch_size(h, w) if patch_size is None else patch_size
    if isinstance(p, bool) or not isinstance(p, int) or p < 1:
        raise ConfigError(f"vit patch_size must be a positive int, got {patch_size!r}")
    if h % p or w % p:
        raise IncompatibleModelError(f"vit patch_size {p} must divide the image size {h}x{w}; pass a patch_size "
                                     f"that divides both sides")
    return VisionTransformer((c, h, w), num_classes, p, dim, depth, heads, float(mlp_ratio))


register_model("vit", _build_vit, image_only=True,
               summary="small patch ViT (Linear patch embedding, fused qkv Linear, class token; dim/depth/heads)")
