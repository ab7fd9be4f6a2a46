"""What a deletion request names, as training-set indices: the one place the ledger maps user ids to rows.

An ``--ids`` file lists the user's own ids (CSV data row or ``--id-column`` value, image file path relative to the
folder, CIFAR batch position, the index in the embedded dataset; see :mod:`unlearnkit.data.ids`), resolved through
the same :meth:`ForgetRequest.resolve` as ``ids:PATH`` everywhere else. The ledger stores both: the ids as the user
gave them, and the training indices with each sample's content hash. Ids that fall in the val or test split were
never trained on; they are kept among the ids as given and reported, and only the training ones are forgotten.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from ..data.base import content_hash
from ..data.ids import read_ids_file, user_ids_of
from ..errors import RequestError
from ..requests import ForgetRequest

__all__ = ["indices_request", "sample_hashes", "training_indices"]


def training_indices(exp: Any, *, ids_file: str | None = None, cls: str | None = None,
                     log: Any = None) -> tuple[str, list[str] | None, np.ndarray, tuple[int, ...] | None]:
    """``(selector, ids as given, sorted training indices, forgotten classes)`` of one request on ``exp``'s data.

    Exactly one of ``ids_file`` (a text file of ids) and ``cls`` (a class id or name) is given. Invalid input
    (missing file, non-integers, an id out of range, an id listed twice, an unknown class) raises a one-line
    :class:`~unlearnkit.errors.RequestError` from :meth:`ForgetRequest.resolve`.
    """
    if (ids_file is None) == (cls is None):
        raise RequestError("a request names either --ids FILE or --class C, not both and not neither")
    req = ForgetRequest(kind="ids", path=str(ids_file)) if ids_file is not None else ForgetRequest.parse(f"class:{cls}")
    split = exp.resolve(req, 0)  # the seed only draws random: requests, which the ledger does not take
    given = None
    if ids_file is not None:
        given = read_ids_file(ids_file)  # resolve() has validated the file
        for name, held in split.held_out_ids.items():
            if log is not None:
                log(f"{len(held)} of the ids are in the {name} split (never trained on; recorded, nothing to "
                    f"forget): {', '.join(held[:5])}{' ...' if len(held) > 5 else ''}")
    return str(req) if cls is not None else f"ids:{Path(ids_file).name}", given, split.forget_idx, \
        split.forget_classes


def sample_hashes(train: Any, idx: np.ndarray) -> list[str]:
    """Content hash (16 hex digits of SHA-256) of each training sample's input and label, in ``idx`` order."""
    x, y = train.x.numpy(), train.y.numpy()
    return [content_hash(x[i], y[i:i + 1]) for i in idx]


def indices_request(train: Any, idx: np.ndarray, path: Path) -> str:
    """A forget-request string that names exactly the training indices ``idx`` of ``train`` (for ``run_audit``):
    an ``ids:`` file of their user ids (``train.source_ids``), written atomically. The inverse of
    :func:`training_indices` for ids files."""
    from ..checkpoints import atomic_write_text

    src = user_ids_of(train)
    atomic_write_text(path, "\n".join(str(src[int(i)]) for i in idx) + "\n")
    return f"ids:{path}"
