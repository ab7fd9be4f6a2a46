"""unlearnkit: machine unlearning for PyTorch classifiers, with honest evaluation."""

from __future__ import annotations

from .api import UnlearnResult, unlearn
from .errors import (
    CheckpointError,
    ConfigError,
    DataError,
    IncompatibleModelError,
    RequestError,
    UnlearnError,
    UnlearnWarning,
    UnsupportedRequestError,
)
from .methods import *  # noqa: F401,F403  (config classes of every built-in method)
from .methods import __all__ as _method_all
from .methods.base import MethodSpec, UnlearnConfig, UnlearnData, get_method, list_methods, register_method

__version__ = "0.1.0"

__all__ = sorted({
    "CheckpointError", "ConfigError", "DataError", "IncompatibleModelError", "MethodSpec", "RequestError",
    "UnlearnConfig", "UnlearnData", "UnlearnError", "UnlearnResult", "UnlearnWarning", "UnsupportedRequestError",
    "get_method", "list_methods", "register_method", "unlearn", *_method_all,
})
