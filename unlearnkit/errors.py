"""Typed errors and warnings.

Every error raised for bad user input derives from :class:`UnlearnError` and from the matching built-in
(mostly ``ValueError``), so ``except ValueError`` keeps working. Messages say what was received and what to do.
"""

from __future__ import annotations

__all__ = [
    "CheckpointError",
    "ConfigError",
    "DataError",
    "DivergedError",
    "IncompatibleModelError",
    "RequestError",
    "UnlearnError",
    "UnlearnWarning",
    "UnsupportedRequestError",
    "UnsupportedTaskError",
]


class UnlearnError(Exception):
    """Root of every error unlearnkit raises on purpose."""


class UnlearnWarning(UserWarning):
    """Root of every warning unlearnkit emits (legal but risky settings, suspicious results)."""


class ConfigError(UnlearnError, ValueError):
    """A method or training configuration has an invalid field."""


class RequestError(UnlearnError, ValueError):
    """A forget request is malformed or cannot be resolved on this dataset."""


class UnsupportedRequestError(UnlearnError, ValueError):
    """The method cannot serve this kind of request (e.g. ``svd`` with a random-subset request)."""


class UnsupportedTaskError(UnsupportedRequestError):
    """The method does not serve the task (``MethodSpec.tasks``), e.g. ``unsir`` on text."""


class DataError(UnlearnError, ValueError):
    """Data is missing, empty, of the wrong shape, or contains NaN/Inf."""


class IncompatibleModelError(UnlearnError, ValueError):
    """The model lacks what the method needs (e.g. no Linear/Conv layers, no trainable parameters)."""


class CheckpointError(UnlearnError, ValueError):
    """A checkpoint is missing, corrupt, or does not match its manifest."""


class DivergedError(UnlearnError, FloatingPointError):
    """A method left the model with NaN or Inf weights (e.g. a learning rate far too large); ``result`` holds the
    :class:`~unlearnkit.UnlearnResult` for inspection."""

    def __init__(self, message: str, result: object = None) -> None:
        super().__init__(message)
        self.result = result
