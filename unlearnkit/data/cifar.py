"""``cifar10:PATH`` and ``cifar100:PATH``: the standard CIFAR "python version" pickle batches, read safely.

Security: the batches are pickle files, and unpickling an untrusted file with the plain :mod:`pickle` module can run
arbitrary code. They are read here with :class:`SafeUnpickler`, whose ``find_class`` refuses every global except
the three that numpy arrays need (``numpy.core.multiarray._reconstruct`` (also under its numpy-2 name
``numpy._core.multiarray``), ``numpy.ndarray`` and ``numpy.dtype``), plus ``_codecs.encode`` replaced by a function
that can only encode a str as latin-1 (how protocol-2 pickles written by Python 3 store ``bytes``, e.g. a batch
re-pickled with ``protocol=2``); dicts, lists, bytes, str and ints need no globals. A file that asks for anything
else (``os.system``, ``builtins.eval``, ...) fails with a ``DataError`` before any of its code can run.
"""

from __future__ import annotations

import io
import pickle
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import DataError

__all__ = ["CIFAR10_CLASSES", "SafeUnpickler", "load_cifar_arrays", "safe_load_pickle"]

CIFAR10_CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]

_NP_RECONSTRUCT = np.ndarray.__reduce__(np.zeros(1))[0]  # numpy's array-rebuilding function, whatever its module


def _latin1_bytes(text: Any, encoding: str = "latin1") -> bytes:
    """``_codecs.encode`` restricted to what protocol-2 pickles of ``bytes`` need: a str encoded as latin-1."""
    if not isinstance(text, str) or encoding.replace("-", "").replace("_", "").lower() not in ("latin1", "iso88591"):
        raise DataError(f"refusing _codecs.encode({type(text).__name__}, {encoding!r}) in a CIFAR batch: only "
                        "latin-1 text, as protocol-2 pickles store bytes, is allowed")
    return text.encode("latin1")


class SafeUnpickler(pickle.Unpickler):
    """An unpickler that can rebuild plain containers and numpy arrays and nothing else.

    ``find_class`` returns only ``numpy.ndarray``, ``numpy.dtype`` and numpy's ``_reconstruct``; every other global
    raises :class:`~unlearnkit.errors.DataError`, so a malicious pickle cannot reach ``os.system`` or ``eval``.
    """

    _ALLOWED: dict[tuple[str, str], Any] = {
        # Protocol-2 pickles written by Python 3 store bytes as _codecs.encode(str, "latin1"): a safe stand-in that
        # can only turn a str into bytes.
        ("_codecs", "encode"): _latin1_bytes,
        ("numpy.core.multiarray", "_reconstruct"): _NP_RECONSTRUCT,
        ("numpy._core.multiarray", "_reconstruct"): _NP_RECONSTRUCT,
        ("numpy", "ndarray"): np.ndarray,
        ("numpy", "dtype"): np.dtype,
    }

    def find_class(self, module: str, name: str) -> Any:
        try:
            return self._ALLOWED[(module, name)]
        except KeyError:
            raise DataError(f"refusing to unpickle {module}.{name}: CIFAR batches may only contain dicts, lists, "
                            f"bytes, str, ints and numpy arrays; this file is not a genuine CIFAR batch") from None


def safe_load_pickle(path: Path) -> Any:
    """Load ``path`` with :class:`SafeUnpickler`.

    ``encoding="latin1"`` is how numpy arrays pickled by Python 2 (the original CIFAR files) must be read.

    Raises:
        DataError: The file is missing, is not a pickle, or asks for a forbidden global.
    """
    try:
        data = path.read_bytes()
    except OSError as e:
        raise DataError(f"cannot read CIFAR batch {path}: {e.strerror or e}") from None
    try:
        return SafeUnpickler(io.BytesIO(data), encoding="latin1").load()
    except DataError:
        raise
    except Exception as e:  # truncated or non-pickle files raise many different exception types
        raise DataError(f"{path} is not a readable CIFAR pickle batch ({type(e).__name__}: {e})") from None


def _key(d: dict, name: str) -> Any:
    """``d[name]`` whether the file stored its keys as str or bytes."""
    for k in (name, name.encode()):
        if k in d:
            return d[k]
    raise KeyError(name)


def _read_batch(path: Path, label_key: str) -> tuple[np.ndarray, np.ndarray]:
    obj = safe_load_pickle(path)
    try:
        if not isinstance(obj, dict):
            raise TypeError(f"top level is a {type(obj).__name__}, not a dict")
        data = _key(obj, "data")
        labels = np.asarray(_key(obj, label_key), dtype=np.int64)
        if not isinstance(data, np.ndarray) or data.dtype.kind not in "ui" or data.ndim != 2 or data.shape[1] != 3072:
            got = f"shape {data.shape} dtype {data.dtype}" if isinstance(data, np.ndarray) else type(data).__name__
            raise TypeError(f"'data' is {got}, expected a uint8 array of shape (N, 3072)")
        if labels.ndim != 1:
            raise TypeError(f"'{label_key}' has shape {labels.shape}, expected a flat list")
        if len(labels) != len(data):
            raise TypeError(f"{len(data)} images but {len(labels)} labels")
    except (KeyError, TypeError, ValueError) as e:
        raise DataError(f"{path} is not a CIFAR batch: {e}; expected a dict with 'data' (N×3072 uint8) and "
                        f"'{label_key}'") from None
    return data.reshape(-1, 3, 32, 32).astype(np.uint8), labels


def _names(meta: Path, key: str, n: int, default: list[str] | None) -> list[str]:
    if meta.exists():
        obj = safe_load_pickle(meta)
        try:
            names = [v.decode() if isinstance(v, bytes) else str(v) for v in _key(obj, key)]
            if len(names) >= n:
                return names
        except (KeyError, TypeError):
            pass
    return default if default is not None and len(default) >= n else [str(i) for i in range(n)]


def load_cifar_arrays(path: str, which: str) -> dict[str, Any]:
    """Read CIFAR-10 or CIFAR-100 batches from ``path`` (the ``cifar-10-batches-py`` / ``cifar-100-python``
    folder, or a folder containing it).

    CIFAR-10 uses ``data_batch_*`` (every one present; the standard set has 1..5) and ``test_batch``, names from
    ``batches.meta``; CIFAR-100 uses ``train``/``test`` with ``fine_labels``, names from ``meta``.

    Returns:
        ``{"train": (x, y), "test": (x, y), "class_names": [...], "files": [...]}`` with uint8 ``N×3×32×32`` images.

    Raises:
        DataError: Missing folder or files, or malformed/forbidden pickles.
    """
    root = Path(path).expanduser()
    if not root.is_dir():
        raise DataError(f"{which} path {path!r} is not a folder; pass the folder holding the python-version batches "
                        f"(e.g. {which}:data/cifar-10-batches-py)")
    sub = "cifar-10-batches-py" if which == "cifar10" else "cifar-100-python"
    if (root / sub).is_dir():
        root = root / sub
    if which == "cifar10":
        train_files = sorted(root.glob("data_batch_*"))
        test_file, label_key, meta, meta_key = root / "test_batch", "labels", root / "batches.meta", "label_names"
        default, n_cls = CIFAR10_CLASSES, 10
        expected = "data_batch_1..5 and test_batch"
    else:
        train_files = [root / "train"] if (root / "train").is_file() else []
        test_file, label_key, meta, meta_key = root / "test", "fine_labels", root / "meta", "fine_label_names"
        default, n_cls = None, 100
        expected = "train and test"
    if not train_files or not test_file.is_file():
        raise DataError(f"{root} does not hold the {which} python batches ({expected}); download the 'python "
                        f"version' archive and pass its extracted folder")
    parts = [_read_batch(f, label_key) for f in train_files]
    x_tr = np.concatenate([p[0] for p in parts])
    y_tr = np.concatenate([p[1] for p in parts])
    x_te, y_te = _read_batch(test_file, label_key)
    top = int(max(y_tr.max(initial=0), y_te.max(initial=0)))
    if min(y_tr.min(initial=0), y_te.min(initial=0)) < 0 or top >= n_cls:
        raise DataError(f"{which} labels must lie in 0..{n_cls - 1}; found a label {top if top >= n_cls else -1}")
    names = _names(meta, meta_key, n_cls, default)[:n_cls]
    return {"train": (x_tr, y_tr), "test": (x_te, y_te), "class_names": names,
            "files": [f.name for f in [*train_files, test_file]], "root": str(root)}
