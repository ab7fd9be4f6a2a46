"""Model registry: build a classifier by name from a dataset's input shape and class count.

Every built-in architecture is a plain ``nn.Module`` mapping ``(batch, *input_shape)`` to ``(batch, num_classes)``
logits. Builders are registered by name with :func:`register_model`; :func:`build_model` checks the shape, the class
count and the keyword options before building, so a typo fails with the list of valid options.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from torch import nn

from ..errors import ConfigError, IncompatibleModelError

__all__ = ["ModelSpec", "build_model", "get_model_spec", "list_models", "model_identity", "register_model",
           "split_model_name"]

Builder = Callable[..., nn.Module]


@dataclass(frozen=True)
class ModelSpec:
    """A registered architecture.

    Attributes:
        name: Registry name (lower case).
        builder: ``builder(input_shape, num_classes, **options) -> nn.Module``.
        summary: One line for ``unlearnkit models`` / the README.
        image_only: True when the model needs ``(channels, height, width)`` inputs (conv nets, ViT).
        arg: The keyword option that a ``NAME:VALUE`` model name fills (``hf:DIR`` fills ``path``), or None.
        source_id: ``source_id(VALUE) -> dict``: what identifies the thing ``VALUE`` names (e.g. a hash of a model
            directory's files), recorded in the model description and so in every cache key.
    """

    name: str
    builder: Builder
    summary: str
    image_only: bool
    arg: str | None = None
    source_id: Callable[[str], dict[str, Any]] | None = None

    @property
    def options(self) -> dict[str, Any]:
        """Keyword options of the builder and their defaults."""
        params = list(inspect.signature(self.builder).parameters.values())[2:]
        return {p.name: p.default for p in params if p.kind is p.KEYWORD_ONLY}


_REGISTRY: dict[str, ModelSpec] = {}


def register_model(name: str, builder: Builder, *, summary: str, image_only: bool, force: bool = False,
                   arg: str | None = None, source_id: Callable[[str], dict[str, Any]] | None = None) -> ModelSpec:
    """Register ``builder`` under ``name``.

    Args:
        name: Lower-case registry name.
        builder: ``builder(input_shape, num_classes, *, option=default, ...) -> nn.Module``; options must be
            keyword-only so :func:`build_model` can check them.
        summary: One-line description.
        image_only: Whether the model only accepts ``(C, H, W)`` inputs.
        force: Replace an existing registration instead of raising.
        arg: The keyword option a ``NAME:VALUE`` name fills (see :class:`ModelSpec`).
        source_id: What identifies a ``VALUE`` (see :class:`ModelSpec`).

    Returns:
        The registered :class:`ModelSpec`.

    Raises:
        ConfigError: The name is not lower case or is already taken (and ``force`` is false).
    """
    if name != name.lower() or not name:
        raise ConfigError(f"model names must be non-empty lower case, got {name!r}")
    if name in _REGISTRY and not force:
        raise ConfigError(f"a model named {name!r} is already registered; pick another name or pass force=True")
    if arg is not None and arg not in ModelSpec(name, builder, summary, image_only).options:
        raise ConfigError(f"model {name!r}: arg={arg!r} is not a keyword option of its builder")
    spec = ModelSpec(name=name, builder=builder, summary=summary, image_only=image_only, arg=arg,
                     source_id=source_id)
    _REGISTRY[name] = spec
    return spec


def list_models() -> list[str]:
    """Names of every registered model, sorted."""
    return sorted(_REGISTRY)


def split_model_name(name: str) -> tuple[str, str | None]:
    """``"hf:DIR"`` -> ``("hf", "DIR")``; ``"cnn"`` -> ``("cnn", None)``."""
    base, sep, value = str(name).partition(":")
    return base.strip(), (value.strip() if sep else None)


def get_model_spec(name: str) -> ModelSpec:
    """The :class:`ModelSpec` registered as ``name`` (or as the ``NAME`` of ``NAME:VALUE``).

    Raises:
        ConfigError: Unknown name (the message lists the valid ones), or a ``:VALUE`` the model does not take.
    """
    base, value = split_model_name(name)
    if base not in _REGISTRY:
        raise ConfigError(f"unknown model {name!r}; valid models: {', '.join(list_models())}")
    spec = _REGISTRY[base]
    if value is not None and spec.arg is None:
        raise ConfigError(f"model {base!r} takes no ':VALUE' argument, got {name!r}")
    if value is not None and not value:
        raise ConfigError(f"model {base!r} needs a value after ':', e.g. {base}:PATH")
    return spec


def model_identity(name: str) -> dict[str, Any]:
    """What identifies the ``VALUE`` of a ``NAME:VALUE`` model beyond its name (``{}`` for plain names): goes into
    the model description, hence every cache key."""
    spec = get_model_spec(name)
    value = split_model_name(name)[1]
    return dict(spec.source_id(value)) if value is not None and spec.source_id is not None else {}


def build_model(name: str, input_shape: tuple[int, ...] | list[int], num_classes: int, **kw: Any) -> nn.Module:
    """Build the registered model ``name`` for inputs of ``input_shape`` (without the batch dimension).

    Args:
        name: A name from :func:`list_models` (``mlp``, ``cnn``, ``resnet18``, ``vit``, ``transformer``), or
            ``NAME:VALUE`` for a model with an ``arg`` (``hf:DIR``).
        input_shape: Shape of one example, e.g. ``(3, 32, 32)`` for images or ``(20,)`` for feature vectors.
        num_classes: Number of output logits (≥ 2).
        **kw: Architecture options (see each builder; e.g. ``width=8`` for ``resnet18``).

    Returns:
        A freshly initialised ``nn.Module``; its initialisation draws from torch's global generator, so it is
        deterministic under ``torch.manual_seed``.

    Raises:
        ConfigError: Unknown model name or option, or fewer than two classes.
        IncompatibleModelError: An image model was asked for non-image inputs.

    Example:
        >>> import torch
        >>> net = build_model("cnn", (3, 32, 32), 10)
        >>> net(torch.zeros(2, 3, 32, 32)).shape
        torch.Size([2, 10])
    """
    spec = get_model_spec(name)
    value = split_model_name(name)[1]
    if value is not None:
        if spec.arg in kw:
            raise ConfigError(f"model {name!r}: pass {spec.arg} either in the name or as an option, not both")
        kw = {**kw, str(spec.arg): value}
    shape = tuple(int(s) for s in input_shape)
    if not shape or any(s < 1 for s in shape):
        raise ConfigError(f"input_shape must be a non-empty tuple of positive sizes, got {tuple(input_shape)!r}")
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 2:
        raise ConfigError(f"num_classes must be an int >= 2, got {num_classes!r}")
    if spec.image_only and len(shape) != 3:
        raise IncompatibleModelError(
            f"model {name!r} needs image inputs shaped (channels, height, width), got input_shape {shape}; "
            f"use --model mlp for feature vectors (e.g. csv: datasets)")
    unknown = sorted(set(kw) - set(spec.options))
    if unknown:
        valid = ", ".join(f"{k}={v!r}" for k, v in spec.options.items()) or "none"
        raise ConfigError(f"unknown option(s) {', '.join(unknown)} for model {name!r}; valid options: {valid}")
    return spec.builder(shape, num_classes, **kw)
