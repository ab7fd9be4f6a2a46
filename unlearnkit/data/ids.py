"""User ids: how a deletion request names examples in the user's own terms, and their training-split indices.

Every loader gives each example a *source id* that does not depend on the split seed:

=====================  ===========================================================================================
``csv:PATH``           the data row number, counting from 0 (header and blank lines not counted), or the value of
                       the id column (``--id-column NAME``; the column is then not a feature; values must be unique)
``folder:PATH``        the image's path relative to PATH, e.g. ``cat/0001.png``
``cifar10/100:PATH``   the image's position in the official training batches, concatenated in file order
                       (``data_batch_1`` holds 0..9999, ...); the official test batch has no ids
``digits``             the image's index in ``sklearn.datasets.load_digits()`` (0..1796)
``shapes[:N]``         the index of the generated image (0..N_train+N_val+N_test-1, for the data seed)
a ``LabeledDataset``   built without ``source_ids``: its positions (0..N-1)
=====================  ===========================================================================================

:func:`resolve_user_ids` maps a list of source ids to positions in the training split and reports the ids that
fall in the val or test split (the model never trained on them) and the ids the dataset does not have. It is the
one place ``ids:PATH`` requests, ``unlearnkit ids`` and the deletion-request ledger resolve ids.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import RequestError
from .base import LabeledDataset

__all__ = ["IdResolution", "read_ids_file", "resolve_user_ids", "user_ids_of"]


@dataclass(frozen=True)
class IdResolution:
    """The result of :func:`resolve_user_ids`.

    Attributes:
        train_ids: the requested ids found in the training split, in request order.
        train_idx: their positions in the training split (int64, aligned with ``train_ids``).
        held_out: for each held-out split (``"val"``, ``"test"``), the requested ids found there.
        unknown: requested ids found in no split.
    """

    train_ids: tuple[str, ...]
    train_idx: np.ndarray
    held_out: dict[str, tuple[str, ...]] = field(default_factory=dict)
    unknown: tuple[str, ...] = ()

    def mapping(self) -> dict[str, int]:
        """``{user id: training-split index}``, e.g. for a manifest."""
        return {k: int(i) for k, i in zip(self.train_ids, self.train_idx.tolist())}


def user_ids_of(ds: LabeledDataset) -> np.ndarray:
    """The user id of each row of ``ds``: its ``source_ids``, or its positions when it has none."""
    return ds.source_ids if ds.source_ids is not None else np.arange(len(ds))


def _key(v: Any, numeric: bool) -> Any:
    if numeric:
        return int(v)
    return str(v)


def resolve_user_ids(ids: Iterable[Any], train: LabeledDataset, *,
                     held_out: Mapping[str, LabeledDataset] | None = None) -> IdResolution:
    """Map user ids (see the module table) to training-split indices.

    Args:
        ids: the ids to find, as strings or ints (compared as integers when the dataset's ids are integers,
            else as strings).
        train: the training split (``DatasetSplits.train``), whose ``source_ids`` name its rows.
        held_out: other splits to look in, e.g. ``{"val": splits.val, "test": splits.test}``.

    Returns:
        An :class:`IdResolution`; nothing is raised for ids in held-out splits or unknown ids: the caller decides.

    Raises:
        RequestError: an id is listed twice, or an integer id scheme gets a non-integer id.
    """
    src = user_ids_of(train)
    numeric = src.dtype.kind in "iu"
    want: list[Any] = []
    for raw in ids:
        text = str(raw).strip()
        if numeric:
            try:
                want.append(int(text))
            except ValueError:
                raise RequestError(f"id {text!r} is not an integer: this dataset's ids are integers only (row "
                                   "numbers or positions, see `unlearnkit ids --help`)") from None
        else:
            want.append(text)
    seen: set[Any] = set()
    for w in want:
        if w in seen:
            raise RequestError(f"id {w!r} is listed more than once; list each id once")
        seen.add(w)
    pos = {_key(v, numeric): i for i, v in enumerate(src.tolist())}
    found = [(w, pos[w]) for w in want if w in pos]
    rest = [w for w in want if w not in pos]
    held: dict[str, tuple[str, ...]] = {}
    for name, ds in (held_out or {}).items():
        if ds is None or ds.source_ids is None or not rest:
            continue
        there = {_key(v, numeric) for v in ds.source_ids.tolist()}
        hits = [w for w in rest if w in there]
        if hits:
            held[name] = tuple(str(w) for w in hits)
            rest = [w for w in rest if w not in there]
    return IdResolution(train_ids=tuple(str(w) for w, _ in found),
                        train_idx=np.asarray([i for _, i in found], dtype=np.int64), held_out=held,
                        unknown=tuple(str(w) for w in rest))


def read_ids_file(path: str | Path) -> list[str]:
    """The ids listed in a text file: one per line; lines of integers may also hold several, separated by commas
    or whitespace. Blank lines and lines starting with ``#`` are skipped.

    Raises:
        RequestError: missing, unreadable, binary or empty file.
    """
    p = Path(path).expanduser()
    if not p.is_file():
        raise RequestError(f"ids file {path} not found; ids:PATH needs a text file of ids, one per line "
                           "(see `unlearnkit ids --help` for what the ids of each dataset are)")
    try:
        raw = p.read_bytes()
    except OSError as e:
        raise RequestError(f"cannot read ids file {path}: {e.strerror or e}") from None
    if b"\0" in raw:
        raise RequestError(f"ids file {path} is a binary file; write one id per line as text")
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise RequestError(f"ids file {path} is not UTF-8 text; write one id per line as text") from None
    out: list[str] = []
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        parts = line.replace(",", " ").split()
        if len(parts) > 1 and all(_is_int(t) for t in parts):
            out += parts
        else:
            out.append(line)
    if not out:
        raise RequestError(f"ids file {path} is empty; the forget set must not be empty")
    return out


def _is_int(t: str) -> bool:
    return t.lstrip("+-").isdigit()
