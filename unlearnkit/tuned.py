"""Tuned-settings files written by ``unlearnkit tune`` and read by ``run``/``bench``.

One JSON file per (dataset hash, model, request kind, request size, method) in ``<cache dir>/tuned/``. The request
size is the number of forgotten classes for class requests, the fraction for random ones, else the forget-set
size, so that a file tuned on ``class:3`` applies to ``class:5`` (one class) but not to ``class:1,3``.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from .checkpoints import atomic_write_text

__all__ = ["load_tuned", "request_size", "save_tuned", "tuned_path"]

SCHEMA = "unlearnkit.tuned/1"


def request_size(kind: str, *, n_forget: int, n_forget_classes: int = 0, fraction: float = 0.0) -> str:
    """The size part of a tuned file's key."""
    if kind == "class":
        return f"{n_forget_classes}cls"
    if kind == "random":
        return f"{fraction:g}"
    return f"n{n_forget}"


def tuned_path(cache_dir: Path | str, *, dataset_hash: str, model: str, kind: str, size: str, method: str) -> Path:
    safe = re.sub(r"[^A-Za-z0-9_.-]", "_", f"{dataset_hash[:16]}__{model}__{kind}__{size}__{method}")
    return Path(cache_dir) / "tuned" / f"{safe}.json"


def load_tuned(path: Path) -> dict[str, Any] | None:
    """The ``values`` of a tuned file, or None if it is missing or unreadable (an unreadable file is ignored, as
    a damaged cache entry is)."""
    try:
        data = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return None
    if not isinstance(data, dict) or data.get("schema") != SCHEMA or not isinstance(data.get("values"), dict):
        return None
    return dict(data["values"])


def save_tuned(path: Path, values: dict[str, Any], info: dict[str, Any]) -> None:
    atomic_write_text(path, json.dumps({"schema": SCHEMA, "values": values, **info}, indent=2, default=str))
