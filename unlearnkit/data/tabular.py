"""``csv:PATH``: a table of numeric feature columns plus one label column.

Format: comma-separated (tab-separated when the file ends in ``.tsv``), an optional header row, blank lines ignored.
The label column is chosen by name (needs a header) or by index (negative counts from the end); by default it is the
last column. Labels may be numbers or strings; classes are the distinct labels in sorted order (numerically when
every label is a number), and class ids are positions in that order. Every other column must be a finite number:
a non-numeric cell, an empty cell, NaN or Inf is a ``DataError`` naming the line and the column.

Header: ``header=True``/``False`` (``--header``/``--no-header``) says whether the first row is a header. By default
it is detected: the first row is a header when the label (or id) column is given by a name it contains, when one of
its feature cells is not a number, or when its label cell holds a value no other row has (a numeric header such as
``label,1,2,...,16`` would otherwise become a training example of an extra class and shift every class id above
it); the last rule warns, since a genuine single-example first class would be taken for a header. Every class
must have at least two examples (one example cannot be both trained on and evaluated): a class with a single
example is an error naming its line.

Ids (``id_column``, ``--id-column``): by default each data row is named by its number, counting from 0 (header
and blank lines not counted); with an id column, by that column's values (unique; the column is not a feature).
"""

from __future__ import annotations

import csv
import math
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import DataError, UnlearnWarning

__all__ = ["load_csv_arrays"]


def _is_number(s: str) -> bool:
    try:
        float(s)
    except ValueError:
        return False
    return True


def _label_index(label_column: str | int | None, first: list[str], width: int,
                 what: str = "label") -> tuple[int, bool]:
    """(column index of the label (or id) column, whether it was found by header name)."""
    if label_column is None:
        return width - 1, False
    if isinstance(label_column, bool):
        raise DataError(f"{what}_column must be a column name or index, got {label_column!r}")
    if isinstance(label_column, str):
        name = label_column.strip()
        try:
            label_column = int(name)  # an integer is an index, even when a header cell reads the same
        except ValueError:
            if name in first:
                return first.index(name), True
            shown = ", ".join(first) if len(first) <= 30 else ", ".join(first[:30]) + ", ..."
            raise DataError(f"{what} column {name!r} is not in the CSV header; valid names: {shown} "
                            f"(or pass a column index, 0..{width - 1})") from None
    if not isinstance(label_column, int):
        raise DataError(f"{what}_column must be a column name or index, got {label_column!r}")
    if not -width <= label_column < width:
        raise DataError(f"{what} column index {label_column} is out of range for {width} columns; valid: "
                        f"0..{width - 1} or -{width}..-1")
    return label_column % width, False


def load_csv_arrays(path: str, label_column: str | int | None = None, *, header: bool | None = None,
                    id_column: str | int | None = None) -> dict[str, Any]:
    """Read ``path`` into float features and integer class ids.

    Returns:
        ``{"x": float64 N×F, "y": int64 N, "class_names": [...], "feature_names": [...], "label_name": str,
        "header": bool, "ids": N row numbers (int64) or id-column values (str), "id_name": str}``.

    Raises:
        DataError: Missing/empty file, ragged rows, a bad label or id column, non-numeric or non-finite features,
            fewer than two classes, a class with a single example, duplicate ids.
    """
    p = Path(path).expanduser()
    if not p.is_file():
        raise DataError(f"CSV file {path!r} does not exist; pass csv:PATH to a file of numeric feature columns "
                        f"and a label column")
    if header not in (None, True, False):
        raise DataError(f"header must be True, False or None (detect), got {header!r}")
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
    if width < 2 + (id_column is not None):
        raise DataError(f"CSV file {p} has {width} column(s); it needs at least one feature column and a label "
                        "column" + (" besides the id column" if id_column is not None else ""))
    li, by_name = _label_index(label_column, first, width)
    ii, id_by_name = (None, False) if id_column is None else _label_index(id_column, first, width, what="id")
    if ii == li:
        raise DataError(f"the id column and the label column are the same column ({li}); pass different columns")
    feat_cols = [j for j in range(width) if j not in (li, ii)]
    if header is None:
        header = by_name or id_by_name or any(not _is_number(first[j]) for j in feat_cols)
        if not header and len(rows) > 2 and all(len(r) == width and r[li] != first[li] for _, r in rows[1:]):
            # A label value seen once, in row 1, among numeric features: a numeric header like label,1,2,...,16.
            header = True
            warnings.warn(f"{p}: taking the first row as a header, since its label {first[li]!r} appears in no "
                          "other row; pass --no-header (header=False) if it is data", UnlearnWarning, stacklevel=3)
    elif not header and (by_name or id_by_name):
        raise DataError(f"a column was chosen by a header name, but header=False (--no-header); pass column "
                        f"indices instead, 0..{width - 1}")
    if header:
        feature_names, label_name = [first[j] for j in feat_cols], first[li]
        id_name = first[ii] if ii is not None else "data row (from 0)"
        rows = rows[1:]
    else:
        feature_names, label_name = [f"x{j}" for j in feat_cols], f"column {li}"
        id_name = f"column {ii}" if ii is not None else "data row (from 0)"
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
    counts = np.bincount(y, minlength=len(names))
    if (counts == 1).any():
        c = int(np.flatnonzero(counts == 1)[0])
        line = rows[int(np.flatnonzero(y == c)[0])][0]
        raise DataError(f"{p}: class {names[c]!r} has a single example (line {line}); every class needs at least "
                        "two. Is that line a header (pass --header) or is --label-column wrong? Otherwise remove it")
    if ii is None:
        ids: np.ndarray = np.arange(len(rows), dtype=np.int64)
    else:
        ids = np.asarray([row[ii] for _, row in rows], dtype=str)
        uniq, first_at, cnt = np.unique(ids, return_index=True, return_counts=True)
        if (cnt > 1).any() or (ids == "").any():
            bad = "" if (ids == "").any() else str(uniq[cnt > 1][0])
            line = rows[int(np.flatnonzero(ids == bad)[0])][0]
            raise DataError(f"{p} line {line}: id {bad!r} in id column {id_name!r} is "
                            + ("empty" if bad == "" else "not unique") + "; every row needs its own id")
    return {"x": x, "y": y, "class_names": names, "feature_names": feature_names, "label_name": label_name,
            "header": header, "ids": ids, "id_name": id_name}


def _numbered(reader: Any) -> Any:
    for row in reader:
        yield reader.line_num, row
