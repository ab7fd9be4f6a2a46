"""Forget requests: what to delete, resolved to forget/retain index sets of a training set.

Syntax (CLI and :meth:`ForgetRequest.parse`):

=====================  ================================================================================
``class:3``            every training example of class 3 (a class name works too: ``class:circle``)
``class:3,7``          several classes at once
``random:0.1``         a uniformly random 10% of the training set, drawn from the request seed
``ids:PATH``           the training-set indices listed in a text file (whitespace/comma separated)
``subclass:3/0``       sub-class 0 of class 3, for datasets with sub-labels (names work: ``subclass:circle/filled``)
=====================  ================================================================================

Every invalid request fails in :meth:`ForgetRequest.resolve`, before any training, with a one-line
:class:`~unlearnkit.errors.RequestError` that says what is valid.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import torch

from .data.base import LabeledDataset, content_hash
from .errors import RequestError

__all__ = ["ForgetRequest", "ForgetSplit"]

Kind = Literal["class", "random", "ids", "subclass"]
_SYNTAX = "valid forms: class:3, class:3,7, random:0.1, ids:PATH, subclass:3/0"


@dataclass(frozen=True)
class ForgetSplit:
    """A resolved request: sorted forget and retain indices into the training set (disjoint, covering it)."""

    request: ForgetRequest
    forget_idx: np.ndarray
    retain_idx: np.ndarray
    forget_classes: tuple[int, ...] | None

    @property
    def key(self) -> str:
        """Content hash of the forget set: the cache key part of everything that depends on the request."""
        return content_hash(self.forget_idx, extra={"n": int(len(self.forget_idx) + len(self.retain_idx))})

    def forget_set(self, train: LabeledDataset) -> LabeledDataset:
        return train.subset(self.forget_idx)

    def retain_set(self, train: LabeledDataset) -> LabeledDataset:
        return train.subset(self.retain_idx)


@dataclass(frozen=True)
class ForgetRequest:
    """A deletion request; :meth:`parse` reads the CLI syntax, :meth:`resolve` applies it to a training set."""

    kind: Kind
    classes: tuple[str, ...] = ()
    fraction: float = 0.0
    path: str = ""
    subclass: tuple[str, str] = ("", "")

    # --- parsing -----------------------------------------------------------------------------------------------
    @classmethod
    def parse(cls, text: str) -> ForgetRequest:
        if not isinstance(text, str) or ":" not in text:
            raise RequestError(f"cannot read forget request {text!r}; {_SYNTAX}")
        kind, _, arg = text.partition(":")
        kind, arg = kind.strip().lower(), arg.strip()
        if not arg:
            raise RequestError(f"forget request {text!r} has nothing after ':'; {_SYNTAX}")
        if kind == "class":
            parts = tuple(p.strip() for p in arg.split(","))
            if any(not p for p in parts):
                raise RequestError(f"empty class name in {text!r}; write class:3 or class:3,7")
            if len(set(parts)) != len(parts):
                raise RequestError(f"class listed twice in {text!r}; list each class once")
            return cls(kind="class", classes=parts)
        if kind == "random":
            try:
                frac = float(arg)
            except ValueError:
                raise RequestError(f"random:{arg} is not a number; write a fraction in (0, 1), e.g. random:0.1") \
                    from None
            if not 0.0 < frac < 1.0:
                raise RequestError(f"random fraction must lie strictly between 0 and 1, got {frac}")
            return cls(kind="random", fraction=frac)
        if kind == "ids":
            return cls(kind="ids", path=arg)
        if kind == "subclass":
            m = re.fullmatch(r"([^/]+)/([^/]+)", arg)
            if not m:
                raise RequestError(f"cannot read {text!r}; write subclass:CLASS/SUB, e.g. subclass:3/0")
            return cls(kind="subclass", subclass=(m.group(1).strip(), m.group(2).strip()))
        raise RequestError(f"unknown forget request kind {kind!r}; {_SYNTAX}")

    def __str__(self) -> str:
        if self.kind == "class":
            return "class:" + ",".join(self.classes)
        if self.kind == "random":
            return f"random:{self.fraction:g}"
        if self.kind == "ids":
            return f"ids:{self.path}"
        return f"subclass:{self.subclass[0]}/{self.subclass[1]}"

    # --- resolution --------------------------------------------------------------------------------------------
    def resolve(self, train: LabeledDataset, *, class_names: list[str], seed: int = 0,
                sub_names: dict[int, list[str]] | None = None) -> ForgetSplit:
        """Forget/retain indices on ``train``; ``seed`` draws random requests (and nothing else)."""
        n = len(train)
        y = train.y.numpy()
        forget_classes: tuple[int, ...] | None = None
        if self.kind == "class":
            ids = tuple(sorted({_class_id(c, class_names) for c in self.classes}))
            forget_classes = ids
            mask = np.isin(y, ids)
        elif self.kind == "random":
            k = int(round(self.fraction * n))
            if k == 0:
                raise RequestError(f"random:{self.fraction:g} of {n} training examples selects nothing; "
                                   f"use a fraction of at least {1 / n:.2g}")
            rng = np.random.default_rng([int(seed), 0x5EED])
            mask = np.zeros(n, dtype=bool)
            mask[rng.choice(n, size=k, replace=False)] = True
        elif self.kind == "ids":
            idx = _read_ids(self.path)
            bad = idx[(idx < 0) | (idx >= n)]
            if len(bad):
                raise RequestError(f"ids file {self.path} has index {int(bad[0])} out of range; the training set "
                                   f"has indices 0..{n - 1}")
            uniq, counts = np.unique(idx, return_counts=True)
            if (counts > 1).any():
                raise RequestError(f"ids file {self.path} lists index {int(uniq[counts > 1][0])} more than once; "
                                   "list each index once")
            mask = np.zeros(n, dtype=bool)
            mask[idx] = True
        else:
            if train.sub is None or not sub_names:
                raise RequestError("this dataset has no sub-classes; subclass:CLASS/SUB needs a dataset with "
                                   "sub-labels (e.g. shapes); use class:, random: or ids: instead")
            c = _class_id(self.subclass[0], class_names)
            names = sub_names.get(c, [])
            s = _class_id(self.subclass[1], names, what=f"sub-class of class {class_names[c]}")
            mask = (y == c) & (train.sub.numpy() == s)
        forget_idx = np.flatnonzero(mask)
        if len(forget_idx) == 0:
            raise RequestError(f"request {self} selects no training example; the forget set must not be empty")
        if len(forget_idx) == n:
            raise RequestError(f"request {self} selects the whole training set ({n} examples); nothing would be "
                               "left to retain: forget fewer examples, or train a new model")
        return ForgetSplit(self, forget_idx.astype(np.int64), np.flatnonzero(~mask).astype(np.int64),
                           forget_classes)


def _class_id(token: str, names: list[str], what: str = "class") -> int:
    if token in names:
        return names.index(token)
    try:
        i = int(token)
    except ValueError:
        i = -1
    if 0 <= i < len(names) and str(i) == token.strip():
        return i
    shown = ", ".join(f"{j}={nm}" for j, nm in enumerate(names)) if len(names) <= 20 else f"0..{len(names) - 1}"
    raise RequestError(f"unknown {what} {token!r}; valid: {shown}")


def _read_ids(path: str) -> np.ndarray:
    p = Path(path)
    if not p.is_file():
        raise RequestError(f"ids file {path} not found; ids:PATH needs a text file of training-set indices")
    text = p.read_text().replace(",", " ").split()
    try:
        idx = np.array([int(t) for t in text], dtype=np.int64)
    except ValueError:
        raise RequestError(f"ids file {path} must hold integers only (whitespace or comma separated)") from None
    if idx.size == 0:
        raise RequestError(f"ids file {path} is empty; the forget set must not be empty")
    return idx


def as_tensor(idx: np.ndarray) -> torch.Tensor:
    return torch.as_tensor(idx, dtype=torch.long)
