"""In-memory labelled datasets and the train/val/test bundle every loader returns."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from ..errors import DataError

__all__ = ["USER_ID_SPACE", "DatasetSplits", "LabeledDataset", "content_hash"]

#: The id space of ids passed explicitly to :class:`LabeledDataset`: comparable across datasets.
USER_ID_SPACE = "user"


class LabeledDataset(Dataset):
    """Inputs ``x`` (float tensor, N×…), labels ``y`` (int64, N), optional sub-labels and stable example ids.

    ``ids`` are the examples' indices in the split they come from (the training set for forget/retain subsets),
    so overlap between two subsets can be checked. Ids are compared only within one *id space*: a dataset built
    without ``ids`` starts its own space, and its :meth:`subset` calls share it; ids given explicitly belong to one
    shared user space (the caller vouches that equal ids mean the same example). ``source_ids`` (optional, one per
    row) name the examples in the user's own terms (CSV data row or id column, image file path, CIFAR position):
    see :func:`unlearnkit.data.resolve_user_ids`. Items are ``(x[i], y[i])``.
    """

    def __init__(self, x: torch.Tensor, y: torch.Tensor, sub: torch.Tensor | None = None,
                 ids: torch.Tensor | None = None, source_ids: Sequence[Any] | np.ndarray | None = None) -> None:
        if x.shape[0] != y.shape[0]:
            raise DataError(f"x has {x.shape[0]} rows but y has {y.shape[0]} labels; they must match")
        self.x = x.float() if not x.is_floating_point() else x
        self.y = y.long()
        self.sub = sub.long() if sub is not None else None
        self.ids = ids.long() if ids is not None else torch.arange(x.shape[0])
        self.id_space: Any = USER_ID_SPACE if ids is not None else object()
        if source_ids is not None and len(source_ids) != x.shape[0]:
            raise DataError(f"source_ids has {len(source_ids)} entries but x has {x.shape[0]} rows")
        self.source_ids = None if source_ids is None else np.asarray(source_ids)

    def __len__(self) -> int:
        return int(self.y.shape[0])

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        return self.x[i], self.y[i]

    def subset(self, idx: Sequence[int] | torch.Tensor | np.ndarray) -> LabeledDataset:
        """The rows at positions ``idx`` (ids, their id space and source ids are carried over, so subsets of
        subsets keep the original ids)."""
        a = np.asarray(idx, dtype=np.int64)
        t = torch.as_tensor(a)
        out = LabeledDataset(self.x[t], self.y[t], None if self.sub is None else self.sub[t], self.ids[t],
                             None if self.source_ids is None else self.source_ids[a])
        out.id_space = self.id_space
        return out

    @property
    def input_shape(self) -> tuple[int, ...]:
        return tuple(self.x.shape[1:])


def content_hash(*arrays: Any, extra: Any = None) -> str:
    """SHA-256 (first 16 hex digits) of tensors/arrays and a JSON-able extra; stable across runs and platforms."""
    h = hashlib.sha256()
    for a in arrays:
        arr = a.detach().cpu().numpy() if isinstance(a, torch.Tensor) else np.asarray(a)
        arr = np.ascontiguousarray(arr)
        h.update(str(arr.dtype).encode())
        h.update(str(arr.shape).encode())
        h.update(arr.tobytes())
    if extra is not None:
        h.update(json.dumps(extra, sort_keys=True, default=str).encode())
    return h.hexdigest()[:16]


@dataclass
class DatasetSplits:
    """A dataset split into train/val/test, with its class names and a manifest carrying a content hash.

    ``sub_names[c]`` lists the sub-class names of class ``c`` for datasets with sub-labels (``shapes``).
    ``mean``/``std`` are per-channel statistics already applied to ``x`` (kept for users' own inputs).
    """

    name: str
    train: LabeledDataset
    val: LabeledDataset
    test: LabeledDataset
    class_names: list[str]
    sub_names: dict[int, list[str]] | None = None
    manifest: dict[str, Any] = field(default_factory=dict)
    mean: list[float] | None = None
    std: list[float] | None = None
    #: Text datasets: the fitted tokenizer (:class:`~unlearnkit.data.tokenizer.TextTokenizer`), else None.
    tokenizer: Any = None

    def __post_init__(self) -> None:
        if not self.manifest.get("hash"):
            self.manifest = dict(self.manifest)
            self.manifest.setdefault("dataset", self.name)
            self.manifest["sizes"] = {"train": len(self.train), "val": len(self.val), "test": len(self.test)}
            extra: dict[str, Any] = {"name": self.name, "classes": self.class_names}
            # A text dataset's tokenizer settings (a dict; textsynth's default word level keeps its older string,
            # and so its older hash) are part of the hash: other settings never reuse a model cached for these.
            if isinstance(self.manifest.get("tokenizer"), dict):
                extra["tokenizer"] = self.manifest["tokenizer"]
            self.manifest["hash"] = content_hash(self.train.x, self.train.y, self.val.x, self.val.y, self.test.x,
                                                 self.test.y, extra=extra)

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def input_shape(self) -> tuple[int, ...]:
        return self.train.input_shape

    @property
    def hash(self) -> str:
        return str(self.manifest["hash"])
