"""Built-in unlearning methods. Each public module here registers one or more methods when imported."""

from __future__ import annotations

import importlib
import pkgutil

from .base import (
    MethodSpec,
    UnlearnConfig,
    UnlearnData,
    get_method,
    list_methods,
    method_for_config,
    register_method,
)

__all__ = ["MethodSpec", "UnlearnConfig", "UnlearnData", "get_method", "list_methods", "method_for_config",
           "register_method"]

# Import every method module (not the private helpers) so that each registers itself. Discovery avoids one
# hand-kept import list that every new method would have to edit.
for _info in sorted(pkgutil.iter_modules(__path__), key=lambda i: i.name):
    if not _info.name.startswith("_") and _info.name != "base":
        _mod = importlib.import_module(f"{__name__}.{_info.name}")
        for _name in getattr(_mod, "__all__", ()):
            globals()[_name] = getattr(_mod, _name)
            __all__.append(_name)
