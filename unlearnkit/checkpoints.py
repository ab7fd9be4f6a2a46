"""Checkpoints in safetensors (never pickle), written atomically, with a JSON manifest; a content-keyed cache.

A checkpoint is one ``.safetensors`` file whose metadata holds the manifest (dataset and split hash, model name and
arguments, training recipe, seed, request, package versions, training seconds); a readable copy of the manifest is
written beside it as ``.json``. Both are written to a temporary file in the same folder and renamed into place,
so a crash never leaves a half-written checkpoint under the final name.
"""

from __future__ import annotations

import json
import os
import platform
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .data.base import content_hash
from .errors import CheckpointError

__all__ = ["ModelCache", "atomic_write", "atomic_write_text", "build_from_checkpoint", "load_checkpoint",
           "package_versions", "save_checkpoint", "state_dict_mismatch"]

FORMAT = "unlearnkit.checkpoint/1"


def package_versions() -> dict[str, str]:
    import numpy
    import sklearn

    from . import __version__

    return {"unlearnkit": __version__, "torch": torch.__version__, "numpy": numpy.__version__,
            "scikit-learn": sklearn.__version__, "python": platform.python_version()}


def _default_mode() -> int:
    """The mode ``open()`` gives a new file: 0o666 minus the process umask (read without changing it for long)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return 0o666 & ~mask


def atomic_write(path: Path | str, write: Callable[[str], None]) -> Path:
    """Create ``path`` atomically: ``write(tmp)`` fills a temporary file in the same folder, which is then renamed
    into place, so a crash never leaves a half-written file under the final name (the temporary file is removed)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        os.chmod(tmp, _default_mode())  # mkstemp's 0600 would make results private; honour the umask instead
        write(tmp)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def atomic_write_text(path: Path | str, text: str) -> None:
    """Write ``text`` to ``path`` through a temporary file (flushed to disk) and an atomic rename."""
    def write(tmp: str) -> None:
        with open(tmp, "w") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())

    atomic_write(path, write)


def save_checkpoint(path: Path | str, model: nn.Module, manifest: dict[str, Any]) -> Path:
    """Save ``model``'s state dict and ``manifest`` atomically; returns the path."""
    from safetensors.torch import save_file

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    man = {"format": FORMAT, **manifest}
    man.setdefault("versions", package_versions())
    # safetensors refuses shared storage and non-contiguous tensors: clone into plain contiguous tensors.
    state = {k: v.detach().cpu().contiguous().clone() for k, v in model.state_dict().items()}
    header = {"manifest": json.dumps(man, sort_keys=True, default=str)}
    atomic_write(path, lambda tmp: save_file(state, tmp, metadata=header))
    atomic_write_text(path.with_suffix(".json"), json.dumps(man, indent=2, sort_keys=True, default=str))
    return path


def load_checkpoint(path: Path | str) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Read a checkpoint: ``(state_dict, manifest)``. Raises CheckpointError when missing or corrupt."""
    from safetensors import safe_open

    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} not found: train one with `unlearnkit train` or check the path")
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
            state = {k: f.get_tensor(k) for k in f.keys()}
        manifest = json.loads(meta["manifest"])
    except Exception as e:  # safetensors raises several error types for truncated or foreign files
        raise CheckpointError(f"checkpoint {path} is corrupt or not an unlearnkit safetensors file "
                              f"({type(e).__name__}); delete it and train again") from None
    if manifest.get("format") != FORMAT:
        raise CheckpointError(f"checkpoint {path} has format {manifest.get('format')!r}, expected {FORMAT!r}")
    return state, manifest


def build_from_checkpoint(path: Path | str, device: str | torch.device = "cpu") -> tuple[nn.Module, dict[str, Any]]:
    """Rebuild the model a checkpoint describes and load its weights."""
    from .models import build_model

    state, man = load_checkpoint(path)
    spec = man.get("model") or {}
    try:
        model = build_model(spec["name"], tuple(spec["input_shape"]), int(spec["num_classes"]),
                            **spec.get("kwargs", {}))
    except (KeyError, RuntimeError, TypeError, ValueError) as e:
        raise CheckpointError(f"checkpoint {path} has no usable model description ({type(e).__name__}: {e}); "
                              "train it again with this unlearnkit") from None
    mismatch = state_dict_mismatch(model.state_dict(), state)
    if mismatch:
        raise CheckpointError(f"checkpoint {path} does not match its model description "
                              f"({spec.get('name')}): {mismatch}; train it again with this unlearnkit")
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as e:
        raise CheckpointError(f"checkpoint {path} does not match its model description: "
                              f"{str(e).splitlines()[0]}") from None
    return model.to(device).eval(), man


def state_dict_mismatch(expected: dict[str, torch.Tensor], got: dict[str, torch.Tensor]) -> str | None:
    """The first difference between a model's state dict and a checkpoint's, in words (None when they match):
    a tensor the checkpoint lacks, one it has in excess, or one whose shape differs (both shapes named)."""
    for k, v in expected.items():
        if k not in got:
            return f"tensor {k!r} {tuple(v.shape)} is missing from the checkpoint"
        if tuple(got[k].shape) != tuple(v.shape):
            return f"tensor {k!r} has shape {tuple(got[k].shape)} in the checkpoint but {tuple(v.shape)} in the model"
    extra = [k for k in got if k not in expected]
    if extra:
        return f"the checkpoint has tensor {extra[0]!r} {tuple(got[extra[0]].shape)}, which the model lacks"
    return None


class ModelCache:
    """Trained models keyed by the content of everything that determines them.

    The key hashes the dataset's split hash, the model description, the training recipe, the seed and (for
    retrained references) the forget set, so the same inputs are trained once and reused.
    """

    def __init__(self, root: Path | str) -> None:
        self.root = Path(root)

    def key(self, **parts: Any) -> str:
        return content_hash(extra=parts)

    def path(self, key: str) -> Path:
        return self.root / "models" / f"{key}.safetensors"

    def get(self, key: str) -> Path | None:
        p = self.path(key)
        if not p.is_file():
            return None
        try:
            load_checkpoint(p)
        except CheckpointError:
            return None  # a corrupt cache entry is retrained, not trusted
        return p
