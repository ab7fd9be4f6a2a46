"""unlearnkit: machine unlearning for PyTorch classifiers, with honest evaluation.

The entry point is :func:`unlearn`; a method is chosen by the type of its config (``FinetuneConfig``,
``SvdConfig``, ...). See ``unlearnkit methods`` for the registered methods and ``docs/metrics.md`` for the metrics.
"""

from __future__ import annotations

from .api import UnlearnResult, unlearn
from .errors import (
    CheckpointError,
    ConfigError,
    DataError,
    DivergedError,
    IncompatibleModelError,
    RequestError,
    UnlearnError,
    UnlearnWarning,
    UnsupportedRequestError,
)
from .methods import *  # noqa: F403  (the config class of every built-in method)
from .methods import __all__ as _method_all
from .methods.base import MethodSpec, UnlearnConfig, UnlearnData, get_method, list_methods, register_method

__version__ = "0.1.0"

__all__ = [
    "CheckpointError",
    "ConfigError",
    "DataError",
    "DivergedError",
    "IncompatibleModelError",
    "MethodSpec",
    "RequestError",
    "UnlearnConfig",
    "UnlearnData",
    "UnlearnError",
    "UnlearnResult",
    "UnlearnWarning",
    "UnsupportedRequestError",
    "get_method",
    "list_methods",
    "register_method",
    "unlearn",
]
__all__ = sorted(set(__all__) | set(_method_all))  # noqa: PLE0605
