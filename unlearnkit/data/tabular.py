"""``csv:PATH``: a table of numeric feature columns plus one label column.

Format: comma-separated (tab-separated when the file ends in ``.tsv``), an optional header row, blank lines ignored.
The label column is chosen by name (needs a header) or by index (negative counts from the end); by default it is the
last column. Labels may be numbers or strings; classes are the distinct labels in sorted order (numerically when
every label is a number), and class ids are positions in that order. Every other column must be a finite number:
a non-numeric cell, an empty cell, NaN or Inf is a ``DataError`` naming the line and the column.

The first row is taken as a header when the label column is given by a name it contains, or when one of its
feature cells is not a number.
"""

from __future__ import annotations

import csv
import math
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import DataError

__all__ = ["load_csv_arrays"]


def _is_number(s: str) -> bool:
    try:
        float(s)
    except ValueError:
        return False
    return True


def _label_index(label_column: str | int | None, first: list[str], width: int) -> tuple[int, bool]:
    """(column index of the label, whether the label was found by header name)."""
    if label_column is None:
        return width - 1, False
    if isinstance(label_column, bool):
        raise DataError(f"label_column must be a column name or index, got {label_column!r}")
    if isinstance(label_column, str):
        name = label_column.strip()
        if name in first:
            return first.index(name), True
        try:
            label_column = int(name)
        except ValueError:
            shown = ", ".join(first) if len(first) <= 30 else ", ".join(first[:30]) + ", ..."
            raise DataError(f"label column {name!r} is not in the CSV header; valid names: {shown} "
                            f"(or pass a column index, 0..{width - 1})") from None
    if not isinstance(label_column, int):
        raise DataError(f"label_column must be a column name or index, got {label_column!r}")
    if not -width <= label_column < width:
        raise DataError(f"label column index {label_column} is out of range for {width} columns; valid: "
                        f"0..{width - 1} or -{width}..-1")
    return label_column % width, False


def load_csv_arrays(path: str, label_column: str | int | None = None) -> dict[str, Any]:
    """Read ``path`` into float features and integer class ids.

    Returns:
        ``{"x": float64 N×F, "y": int64 N, "class_names": [...], "feature_names": [...], "label_name": str}``.

    Raises:
        DataError: Missing/empty file, ragged rows, a bad label column, non-numeric or non-finite features, fewer
            than two classes.
    """
    p = Path(path).expanduser()
    if not p.is_file():
        raise DataError(f"CSV file {path!r} does not exist; pass csv:PATH to a file of numeric feature columns "
                        f"and a label column")
    delimiter = "\t" if p.suffix.lower() == ".tsv" else ","
    try:
        with p.open(newline="", encoding="utf-8-sig") as fh:
            rows = [(line, [c.strip() for c in row]) for line, row in _numbered(csv.reader(fh, delimiter=delimiter))]
    except (OSError, UnicodeDecodeError, csv.Error) as e:
        raise DataError(f"cannot read CSV file {p}: {e}") from None
    rows = [(line, row) for line, row in rows if any(row)]
    if not rows:
        raise DataError(f"CSV file {p} is empty; it needs rows of numeric features plus a label column")
    first = rows[0][1]
    width = len(first)
    if width < 2:
        raise DataError(f"CSV file {p} has {width} column; it needs at least one feature column and a label column")
    li, by_name = _label_index(label_column, first, width)
    feat_cols = [j for j in range(width) if j != li]
    header = by_name or any(not _is_number(first[j]) for j in feat_cols)
    if header:
        feature_names, label_name = [first[j] for j in feat_cols], first[li]
        rows = rows[1:]
    else:
        feature_names, label_name = [f"x{j}" for j in feat_cols], f"column {li}"
    if not rows:
        raise DataError(f"CSV file {p} has a header but no data rows")

    x = np.empty((len(rows), len(feat_cols)), dtype=np.float64)
    raw_labels: list[str] = []
    for i, (line, row) in enumerate(rows):
        if len(row) != width:
            raise DataError(f"{p} line {line} has {len(row)} columns but the first row has {width}; every row "
                            f"needs the same columns")
        for k, j in enumerate(feat_cols):
            cell = row[j]
            try:
                v = float(cell)
            except ValueError:
                raise DataError(f"{p} line {line}, column {feature_names[k]!r}: {cell!r} is not a number; feature "
                                f"columns must be numeric (choose the label column with label_column / "
                                f"--label-column)") from None
            if not math.isfinite(v):
                raise DataError(f"{p} line {line}, column {feature_names[k]!r} holds {cell!r}; NaN and Inf are "
                                f"not allowed: remove or impute those values")
            x[i, k] = v
        if not row[li]:
            raise DataError(f"{p} line {line} has an empty label; every row needs a label in column "
                            f"{label_name!r}")
        raw_labels.append(row[li])

    numeric = all(_is_number(s) for s in raw_labels)
    if numeric:
        values = np.asarray([float(s) for s in raw_labels])
        if not np.isfinite(values).all():
            bad = raw_labels[int(np.flatnonzero(~np.isfinite(values))[0])]
            raise DataError(f"{p}: labels must be finite; found {bad!r}")
        uniq = np.unique(values)
        y = np.searchsorted(uniq, values).astype(np.int64)
        names = [str(int(v)) if float(v).is_integer() else repr(float(v)) for v in uniq]
    else:
        names = sorted(set(raw_labels))
        index = {s: c for c, s in enumerate(names)}
        y = np.asarray([index[s] for s in raw_labels], dtype=np.int64)
    if len(names) < 2:
        raise DataError(f"{p} has a single class ({names[0]!r}) in label column {label_name!r}; a classifier needs "
                        f"at least two (is --label-column right?)")
    return {"x": x, "y": y, "class_names": names, "feature_names": feature_names, "label_name": label_name,
            "header": header}


def _numbered(reader: Any) -> Any:
    for row in reader:
        yield reader.line_num, row
