"""Model zoo: ``mlp``, ``cnn``, ``resnet18``, ``vit`` and ``transformer`` (token ids), and ``hf:PATH`` (a Hugging
Face sequence classifier; the ``[hf]`` extra), built by name with :func:`build_model`.

Example:
    >>> from unlearnkit.models import build_model, list_models
    >>> list_models()
    ['cnn', 'hf', 'mlp', 'resnet18', 'transformer', 'vit']
    >>> net = build_model("resnet18", (3, 32, 32), 10, width=8)
"""

from __future__ import annotations

from . import cnn, hf, mlp, resnet, transformer, vit  # noqa: F401  (each module registers its model on import)
from .cnn import SmallCNN
from .hf import HFSequenceClassifier
from .mlp import MLP
from .registry import ModelSpec, build_model, get_model_spec, list_models, model_identity, register_model
from .resnet import BasicBlock, ResNet18
from .transformer import TextTransformer
from .vit import VisionTransformer

__all__ = ["MLP", "BasicBlock", "HFSequenceClassifier", "ModelSpec", "ResNet18", "SmallCNN", "TextTransformer",
           "VisionTransformer", "build_model", "get_model_spec", "list_models", "model_identity", "register_model"]
