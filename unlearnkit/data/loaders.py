"""``load_dataset(spec)``: every dataset unlearnkit knows, as standardised train/val/test splits with a manifest.

=====================  ===========================================================================================
``digits``             scikit-learn's bundled 8×8 digits, ``1×8×8`` images (70/15/15 split)
``shapes`` ``shapes:N``  procedural 32×32 RGB shapes, 10 classes × 2 sub-classes; N training images (default 5000),
                       val and test N/5 each
``cifar10:PATH``       CIFAR-10 python batches; val = 10% of the official training set, test = the test batch
``cifar100:PATH``      CIFAR-100 python batches (fine labels); val and test as for CIFAR-10
``folder:PATH``        one sub-folder of images per class, RGB, resized to a common size (70/15/15 split)
``csv:PATH``           numeric feature columns and a label column, 1-D inputs (70/15/15 split)
=====================  ===========================================================================================

Splits are *seeded hashed splits*: each example gets a pseudo-random key that is a pure function of
``(seed, example index)``, examples are ranked by key, and the ranking fills train, val and test (or train and val,
when the dataset has an official test set) with sizes fixed by the fractions above. The same seed gives the same
split on any machine. Inputs are standardised per channel (images) or per feature (CSV) with the training split's
statistics, which are kept in ``DatasetSplits.mean``/``std`` and in the manifest.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..errors import DataError
from ._split import hashed_split, split_sizes, standardise
from .base import DatasetSplits, LabeledDataset
from .cifar import load_cifar_arrays
from .digits import DIGITS_SUB_NAMES, load_digits_arrays
from .folder import load_folder_arrays
from .shapes import SHAPE_CLASSES, SUB_NAMES, load_shapes
from .tabular import load_csv_arrays
from .textfile import encode_text_splits, load_text_rows
from .textsynth import MAX_LEN as TEXTSYNTH_MAX_LEN
from .textsynth import load_textsynth
from .tokenizer import TokenizerSpec

__all__ = ["DATASETS", "DEFAULT_SHAPES_TRAIN", "list_datasets", "load_dataset", "shapes_sizes"]

DATASETS: dict[str, str] = {
    "digits": "scikit-learn's bundled 8x8 handwritten digits (1,797 images, 10 classes)",
    "shapes": "procedural 32x32 RGB shapes, 10 classes x 2 sub-classes (filled/outline); shapes:N for N train images",
    "cifar10": "cifar10:PATH - the CIFAR-10 python pickle batches (read with a restricted unpickler)",
    "cifar100": "cifar100:PATH - the CIFAR-100 python pickle batches, fine labels",
    "folder": "folder:PATH - one sub-folder of images per class, read with Pillow",
    "csv": "csv:PATH - numeric feature columns plus a label column (--label-column, default the last)",
    "textsynth": "procedural text, 8 topic classes, word-level token ids (vocabulary from the training split); "
                 "textsynth:N for N train texts",
    "textsynth-multilabel": "textsynth with 1-3 labels per text (multi-hot targets, task 'multilabel')",
    "textcsv": "textcsv:PATH - a CSV with a header, a text column (default 'text') and a label column (default "
               "'label'; several labels as a|b make it multi-label)",
    "jsonl": "jsonl:PATH - one JSON object per line with a text and a label (a list of labels for multi-label)",
}
_VALID = ("valid: digits, shapes, shapes:N, textsynth, textsynth:N, textsynth-multilabel, cifar10:PATH, "
          "cifar100:PATH, folder:PATH, csv:PATH")
DEFAULT_TEXTSYNTH_TRAIN = 2000
_PATH_KINDS = ("cifar10", "cifar100", "folder", "csv", "textcsv", "jsonl")
TEXT_MAX_LEN = 64
DEFAULT_SHAPES_TRAIN = 5000
VAL_FRACTION_OF_TRAIN = 0.1  # for datasets with an official test split (CIFAR)
FRACTIONS = (0.7, 0.15, 0.15)  # train / val / test for folder and csv


def list_datasets() -> list[str]:
    """Names of the dataset kinds (the part of a spec before ``:``), sorted; see :data:`DATASETS`."""
    return sorted(DATASETS)


def shapes_sizes(n_train: int) -> tuple[int, int, int]:
    """(train, val, test) sizes of ``shapes:N``: val and test are N/5 each (at least 10), 1000 for the default."""
    other = max(10, n_train // 5)
    return n_train, other, other


def _parse(spec: str) -> tuple[str, str]:
    if not isinstance(spec, str) or not spec.strip():
        raise DataError(f"dataset spec must be a non-empty string, got {spec!r}; {_VALID}")
    kind, sep, arg = spec.strip().partition(":")
    kind = kind.strip().lower()
    if kind not in DATASETS:
        raise DataError(f"unknown dataset {spec!r}; {_VALID}")
    if kind == "digits" and sep:
        raise DataError(f"dataset 'digits' takes no argument, got {spec!r}; {_VALID}")
    if kind in _PATH_KINDS and not arg.strip():
        raise DataError(f"dataset {kind!r} needs a path, e.g. {kind}:data/my_{kind}; {_VALID}")
    return kind, arg.strip()


def _train_size(kind: str, arg: str, default: int, what: str, example: int) -> int:
    """The N of a generated dataset's ``KIND:N`` spec (``default`` without one)."""
    if not arg:
        return default
    try:
        n = int(arg)
    except ValueError:
        n = -1
    if n < 1:
        raise DataError(f"{kind}:N needs a positive number of training {what}, got {arg!r}; e.g. {kind}:{example}")
    return n


def _tensor_split(x: np.ndarray, y: np.ndarray, sub: np.ndarray | None = None,
                  source_ids: np.ndarray | None = None) -> LabeledDataset:
    return LabeledDataset(torch.from_numpy(np.ascontiguousarray(x)), torch.from_numpy(np.ascontiguousarray(y)),
                          None if sub is None else torch.from_numpy(np.ascontiguousarray(sub)),
                          source_ids=source_ids)


def load_dataset(spec: str, *, seed: int = 0, label_column: str | int | None = None,
                 size: int | tuple[int, int] | None = None, header: bool | None = None,
                 id_column: str | int | None = None, text_column: str | None = None, tokenizer: str | None = None,
                 tokenizer_file: str | None = None, tokenizer_vocab_size: int | None = None) -> DatasetSplits:
    """Load the dataset named by ``spec`` and split it with ``seed``.

    Args:
        spec: ``digits``, ``shapes``, ``shapes:N``, ``cifar10:PATH``, ``cifar100:PATH``, ``folder:PATH`` or
            ``csv:PATH``.
        seed: Seed of the split (and, for ``shapes``, of the generated images).
        label_column: ``csv`` only: name or index of the label column (default: the last column).
        header: ``csv`` only: whether the first row is a header (default: detected, see
            :mod:`unlearnkit.data.tabular`).
        id_column: ``csv`` only: name or index of a column of unique example ids (not a feature); by default
            examples are named by their data row number.
        size: ``folder`` only: common image size, an int (square) or ``(height, width)``; by default the images'
            own size when all share one, else 32×32.
        text_column: ``textcsv``/``jsonl`` only: the text column (default ``text``).
        tokenizer: text datasets only: ``bpe`` (default of ``textcsv``/``jsonl``), ``wordpiece`` or ``word``
            (default of ``textsynth``), trained on the training split only (:mod:`unlearnkit.data.tokenizer`).
        tokenizer_file: text datasets only: a ``tokenizer.json`` to use instead of a trained tokenizer.
        tokenizer_vocab_size: text datasets only: the trained tokenizer's vocabulary size (default 8000 for
            ``bpe``/``wordpiece``, every training word for ``word``).

    Returns:
        :class:`DatasetSplits` with standardised float inputs, int64 labels, class names (``sub`` labels and
        ``sub_names`` for ``shapes``) and a manifest holding the dataset name, spec, seed, sizes, class names,
        normalisation statistics and a content hash.

    Raises:
        DataError: Unknown spec, missing path, empty folder, malformed or unsafe file, NaN/Inf in a CSV, or an
            option given to a dataset that does not take it. The message says what is valid.

    Example:
        >>> splits = load_dataset("digits", seed=0)
        >>> splits.input_shape, splits.num_classes, len(splits.train)
        ((1, 8, 8), 10, 1257)
    """
    kind, arg = _parse(spec)
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
        raise DataError(f"dataset seed must be an int, got {seed!r}")
    seed = int(seed)
    if text_column is not None and kind not in ("textcsv", "jsonl"):
        raise DataError(f"text_column applies only to textcsv:PATH and jsonl:PATH datasets, not {kind!r}")
    for opt, value, flag in (("label_column", label_column, "--label-column"), ("header", header, "--header"),
                             ("id_column", id_column, "--id-column")):
        if value is not None and kind != "csv" and not (opt == "label_column" and kind in ("textcsv", "jsonl")):
            raise DataError(f"{opt} applies only to csv:PATH datasets, not {kind!r}; drop {flag}")
    text_kinds = ("textsynth", "textsynth-multilabel", "textcsv", "jsonl")
    for opt, value, flag in (("tokenizer", tokenizer, "--tokenizer"), ("tokenizer_file", tokenizer_file,
                                                                     "--tokenizer-file"),
                             ("tokenizer_vocab_size", tokenizer_vocab_size, "--tokenizer-vocab-size")):
        if value is not None and kind not in text_kinds:
            raise DataError(f"{opt} applies only to text datasets (textsynth, textcsv:PATH, jsonl:PATH), not "
                            f"{kind!r}; drop {flag}")
    tok_spec = None
    if kind in text_kinds:
        tok_spec = TokenizerSpec.make(tokenizer, tokenizer_vocab_size, tokenizer_file,
                                      default="word" if kind.startswith("textsynth") else "bpe")
    if size is not None and kind != "folder":
        raise DataError(f"size applies only to folder:PATH datasets, not {kind!r}; drop the image size option")
    manifest: dict[str, Any] = {"dataset": kind, "spec": spec.strip(), "seed": seed}
    sub_names: dict[int, list[str]] | None = None

    if kind == "digits":
        d = load_digits_arrays(seed)
        train, val, test = (_tensor_split(*d[k], source_ids=ids) for k, ids in zip(("train", "val", "test"),
                                                                                   d["source_ids"]))
        manifest["ids"] = "index in sklearn.datasets.load_digits() (0..1796)"
        names = [str(i) for i in range(10)]
        sub_names = {c: list(DIGITS_SUB_NAMES) for c in range(10)}
        manifest["source"] = "sklearn.datasets.load_digits"
        manifest["sub_labels"] = "2-means per class on raw pixels (KMeans n_init=10 random_state=0); 0 = larger"
        manifest["fractions"] = list(FRACTIONS)
    elif kind == "shapes":
        sizes = shapes_sizes(_train_size(kind, arg, DEFAULT_SHAPES_TRAIN, "images", 5000))
        d = load_shapes(*sizes, seed=seed)
        train, val, test = (_tensor_split(*d[k], source_ids=ids) for k, ids in zip(("train", "val", "test"),
                                                                                   d["source_ids"]))
        manifest["ids"] = f"index of the generated image (0..{sum(sizes) - 1}) for this data seed"
        names = list(SHAPE_CLASSES)
        sub_names = {c: list(SUB_NAMES) for c in range(len(names))}
        manifest["generator"] = {"image_size": 32, "label_noise": d["label_noise"]}
    elif kind in ("textsynth", "textsynth-multilabel"):
        sizes = shapes_sizes(_train_size(kind, arg, DEFAULT_TEXTSYNTH_TRAIN, "texts", 4000))
        multi = kind == "textsynth-multilabel"
        d = load_textsynth(*sizes, seed=seed, multilabel=multi, tokenizer=tok_spec)
        train, val, test = (_tensor_split(*d[k], source_ids=d[f"{k}_ids"]) for k in ("train", "val", "test"))
        names = [f"topic{c}" for c in range(d["train"][1].shape[1] if multi else int(d["train"][1].max()) + 1)]
        d.update(mean=[0.0], std=[1.0])  # token ids are not standardised
        # The default word level keeps its older manifest string (and so the dataset hash of models already cached)
        default_tok = tok_spec == TokenizerSpec("word")
        manifest.update(ids=f"index of the generated text (0..{sum(sizes) - 1}) for this data seed",
                        task="multilabel" if multi else "classification", vocab_size=d["tokenizer"].vocab_size,
                        pad_id=d["tokenizer"].pad_id, max_len=TEXTSYNTH_MAX_LEN,
                        tokenizer="word-level vocabulary from the training split only" if default_tok
                        else tok_spec.describe())
    elif kind in ("textcsv", "jsonl"):
        texts, labels, multi = load_text_rows(kind, arg, text_column, None if label_column is None
                                              else str(label_column))
        parts = hashed_split(len(texts), seed, split_sizes(len(texts), FRACTIONS, f"text file {arg}"))
        d = encode_text_splits(texts, labels, parts, multi, TEXT_MAX_LEN, arg, tok_spec)
        train, val, test = (_tensor_split(*d[k], source_ids=p) for k, p in zip(("train", "val", "test"), parts))
        names = d["classes"]
        d.update(mean=[0.0], std=[1.0])
        manifest.update(source=str(Path(arg).expanduser()), ids="data row number from 0", fractions=list(FRACTIONS),
                        task="multilabel" if multi else "classification", vocab_size=d["tokenizer"].vocab_size,
                        pad_id=d["tokenizer"].pad_id, max_len=TEXT_MAX_LEN, tokenizer=tok_spec.describe())
    elif kind in ("cifar10", "cifar100"):
        d = load_cifar_arrays(arg, kind)
        x_all, y_all = d["train"]
        tr, va = hashed_split(len(y_all), seed,
                              split_sizes(len(y_all), (1 - VAL_FRACTION_OF_TRAIN, VAL_FRACTION_OF_TRAIN), kind))
        (xtr, xva, xte), mean, std = standardise(x_all[tr], x_all[va], d["test"][0], scale=1 / 255)
        d.update(mean=mean, std=std)
        train, val = _tensor_split(xtr, y_all[tr], source_ids=tr), _tensor_split(xva, y_all[va], source_ids=va)
        test = _tensor_split(xte, d["test"][1])
        manifest["ids"] = "position in the official training batches, concatenated in file order (test batch: none)"
        names = d["class_names"]
        manifest.update(source=d["root"], files=d["files"], val_fraction_of_train=VAL_FRACTION_OF_TRAIN)
    elif kind == "folder":
        d = load_folder_arrays(arg, size)
        parts = hashed_split(len(d["y"]), seed, split_sizes(len(d["y"]), FRACTIONS, f"folder {arg}"))
        (xtr, xva, xte), mean, std = standardise(*(d["x"][p] for p in parts), scale=1 / 255)
        d.update(mean=mean, std=std)
        files = np.asarray(d["files"], dtype=str)
        train, val, test = (_tensor_split(xs, d["y"][p], source_ids=files[p])
                            for xs, p in zip((xtr, xva, xte), parts))
        names = d["class_names"]
        manifest.update(source=d["root"], image_size=list(d["size"]), channels=int(d["x"].shape[1]),
                        fractions=list(FRACTIONS), ids="image path relative to the folder")
    else:  # csv
        d = load_csv_arrays(arg, label_column, header=header, id_column=id_column)
        parts = hashed_split(len(d["y"]), seed, split_sizes(len(d["y"]), FRACTIONS, f"CSV file {arg}"))
        (xtr, xva, xte), mean, std = standardise(*(d["x"][p] for p in parts))
        d.update(mean=mean, std=std)
        train, val, test = (_tensor_split(xs, d["y"][p], source_ids=d["ids"][p])
                            for xs, p in zip((xtr, xva, xte), parts))
        manifest.update(header=bool(d["header"]), ids=f"id column {d['id_name']!r}" if id_column is not None else
                        "data row number from 0 (header and blank lines not counted)")
        names = d["class_names"]
        manifest.update(source=str(Path(arg).expanduser()), label_column=d["label_name"],
                        feature_names=d["feature_names"], fractions=list(FRACTIONS))

    manifest.update(class_names=list(names), num_classes=len(names), input_shape=list(train.input_shape),
                    normalization={"mean": d["mean"], "std": d["std"]})
    return DatasetSplits(name=kind, train=train, val=val, test=test, class_names=list(names), sub_names=sub_names,
                         manifest=manifest, mean=list(d["mean"]), std=list(d["std"]), tokenizer=d.get("tokenizer"))
