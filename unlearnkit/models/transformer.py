"""``transformer``: a small Transformer encoder classifier over token ids, in plain PyTorch.

Input: a batch of token ids ``(batch, length)`` (int64), padded at any position with ``pad_id``. The attention mask
comes from the pad id (methods only ever call ``model(x)``): pad positions are masked out as attention keys and
left out of the mean pooling, so adding or removing pad tokens never changes a prediction (tests/test_text.py checks
it). Positions are learned embeddings of the token's position among the non-pad tokens of its row, so pads *between*
tokens do not shift the positions either.

Architecture: token + position embeddings → ``layers`` pre-norm blocks (``vit.EncoderBlock``: multi-head
self-attention with a fused ``qkv`` ``nn.Linear`` and an ``out_proj`` ``nn.Linear``, then a GELU MLP of two Linears
of width ``4·dim``) →
LayerNorm → mean over non-pad tokens → dropout → Linear head. As in ``vit``, attention is written with ``nn.Linear``
layers rather than ``nn.MultiheadAttention``, so the methods that act on layer inputs (``svd``, ``pgu``) see every
weight matrix; their activation capture flattens token inputs ``(batch, length, dim)`` into rows, pad positions
included (their rows are what the layer really receives).
A row made only of pad tokens is read as if its first token were real (a defined output instead of NaN).
"""

from __future__ import annotations

import torch
from torch import nn

from ..errors import ConfigError
from .registry import register_model
from .vit import EncoderBlock

__all__ = ["TextTransformer", "transformer"]


class TextTransformer(nn.Module):
    """Encoder classifier over token ids; ``forward(x) -> logits (batch, num_classes)``.

    ``discrete_inputs = True`` tells methods that differentiate with respect to the inputs (``unsir``'s noise) that
    the inputs are token ids.
    """

    discrete_inputs = True

    def __init__(self, vocab_size: int, num_classes: int, max_len: int, *, dim: int = 64, heads: int = 4,
                 layers: int = 2, dropout: float = 0.1, pad_id: int = 0) -> None:
        super().__init__()
        if dim % heads:
            raise ConfigError(f"transformer: dim ({dim}) must be a multiple of heads ({heads})")
        self.pad_id = int(pad_id)
        self.max_len = int(max_len)
        self.tok = nn.Embedding(vocab_size, dim)
        self.pos = nn.Embedding(max_len, dim)
        # The ViT's pre-norm blocks (fused qkv and out_proj Linears, GELU MLP of width 4·dim), with the pad mask.
        self.blocks = nn.ModuleList(EncoderBlock(dim, heads, 4.0) for _ in range(layers))
        self.norm = nn.LayerNorm(dim)
        self.drop = nn.Dropout(dropout)
        self.head = nn.Linear(dim, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.long()
        pad = x == self.pad_id
        empty = pad.all(dim=1)
        if bool(empty.any()):
            pad = pad.clone()
            pad[empty, 0] = False
        keep = (~pad).long()
        # position of each token among the real tokens of its row (pads do not advance it)
        pos = (keep.cumsum(dim=1) - 1).clamp(min=0, max=self.max_len - 1)
        h = self.tok(x) + self.pos(pos)
        for block in self.blocks:
            h = block(h, pad)
        h = self.norm(h)
        w = keep.unsqueeze(-1).to(h.dtype)
        pooled = (h * w).sum(dim=1) / w.sum(dim=1)
        return self.head(self.drop(pooled))


def transformer(input_shape: tuple[int, ...], num_classes: int, *, vocab_size: int = 0, dim: int = 32,
                heads: int = 4, layers: int = 2, dropout: float = 0.1, pad_id: int = 0) -> nn.Module:
    """Builder for the registry: ``input_shape`` is ``(length,)`` of the padded token ids; ``vocab_size`` is the
    tokenizer's (the text datasets record it in their manifest, and the pipeline passes it)."""
    if len(input_shape) != 1:
        raise ConfigError(f"transformer takes token ids of shape (length,), got input shape {tuple(input_shape)}; "
                          "use it with a text dataset (textsynth, textcsv:PATH, jsonl:PATH)")
    if vocab_size < 2:
        raise ConfigError("transformer needs vocab_size >= 2 (the tokenizer's vocabulary size); pass "
                          "vocab_size=... or use a text dataset, which sets it")
    return TextTransformer(vocab_size, num_classes, input_shape[0], dim=dim, heads=heads, layers=layers,
                           dropout=dropout, pad_id=pad_id)


register_model("transformer", transformer, image_only=False,
               summary="small Transformer encoder over token ids (pad-masked attention, mean pooling); text datasets")
