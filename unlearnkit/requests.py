"""Forget requests: what to delete, resolved to forget/retain index sets of a training set.

Syntax (CLI and :meth:`ForgetRequest.parse`):

=====================  ================================================================================
``class:3``            every training example of class 3 (a class name works too: ``class:circle``)
``class:3,7``          several classes at once
``random:0.1``         a uniformly random 10% of the training set, drawn from the request seed
``ids:PATH``           the examples whose ids a text file lists, one per line: the user's own ids (CSV data row or id
                       column, image file path, CIFAR position; :mod:`unlearnkit.data.ids`), never positions in
                       the hashed training split
``subclass:3/0``       sub-class 0 of class 3, for datasets with sub-labels (names work: ``subclass:circle/filled``)
=====================  ================================================================================

Every invalid request fails in :meth:`ForgetRequest.resolve`, before any training, with a one-line
:class:`~unlearnkit.errors.RequestError` that says what is valid.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import torch

from .data.base import LabeledDataset, content_hash
from .data.ids import read_ids_file, resolve_user_ids
from .errors import RequestError

__all__ = ["ForgetRequest", "ForgetSplit"]

Kind = Literal["class", "random", "ids", "subclass"]
_SYNTAX = "valid forms: class:3, class:3,7, random:0.1, ids:PATH, subclass:3/0"


@dataclass(frozen=True)
class ForgetSplit:
    """A resolved request: sorted forget and retain indices into the training set (disjoint, covering it).

    For ``ids:`` requests, ``id_map`` maps each user id found in the training split to its index there, and
    ``held_out_ids`` lists the requested ids that are in the val or test split (the model never trained on them).
    """

    request: ForgetRequest
    forget_idx: np.ndarray
    retain_idx: np.ndarray
    forget_classes: tuple[int, ...] | None
    id_map: dict[str, int] | None = None
    held_out_ids: dict[str, tuple[str, ...]] = field(default_factory=dict)

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
                sub_names: dict[int, list[str]] | None = None,
                held_out: Mapping[str, LabeledDataset] | None = None) -> ForgetSplit:
        """Forget/retain indices on ``train``; ``seed`` draws random requests (and nothing else). ``held_out``
        (e.g. ``{"val": splits.val, "test": splits.test}``) lets ``ids:`` requests report ids found there."""
        n = len(train)
        y = train.y.numpy()
        forget_classes: tuple[int, ...] | None = None
        id_map: dict[str, int] | None = None
        held: dict[str, tuple[str, ...]] = {}
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
            res = resolve_user_ids(read_ids_file(self.path), train, held_out=held_out)
            if res.unknown:
                numeric = train.source_ids is None or train.source_ids.dtype.kind in "iu"
                shown = ", ".join(repr(u) for u in res.unknown[:3]) + (", ..." if len(res.unknown) > 3 else "")
                raise RequestError(f"ids file {self.path}: {len(res.unknown)} ids are in no split of this dataset "
                                   f"({shown}){': out of range' if numeric else ''}; list ids as "
                                   "`unlearnkit ids --dataset D` shows them")
            if not len(res.train_idx):
                where = "; ".join(f"{k}: {', '.join(v[:5])}" for k, v in res.held_out.items())
                raise RequestError(f"ids file {self.path} names no training example: every id is in a held-out "
                                   f"split ({where}), which the model never trained on; nothing to forget")
            id_map, held = res.mapping(), dict(res.held_out)
            mask = np.zeros(n, dtype=bool)
            mask[res.train_idx] = True
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
                           forget_classes, id_map, held)


def _class_id(token: str, names: list[str], what: str = "class") -> int:
    if token in names:
        return names.index(token)
    try:
        i = int(token)
    except ValueError:
        i = -1
    if 0 <= i < len(names) and str(i) == token.strip():
        return i
    if len(names) <= 20:
        shown = ", ".join(f"{j}={nm}" for j, nm in enumerate(names))
    else:  # ids or names both work: list the names too (all of them up to 100)
        listed = ", ".join(names[:100]) + (", ..." if len(names) > 100 else "")
        shown = f"0..{len(names) - 1} or a name: {listed}"
    raise RequestError(f"unknown {what} {token!r}; valid: {shown}")


def as_tensor(idx: np.ndarray) -> torch.Tensor:
    return torch.as_tensor(idx, dtype=torch.long)
