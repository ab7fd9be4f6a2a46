"""Whether each method met the goal of a class-forgetting request, and why not when it did not.

The goal (issue 16, acceptance 4) is the one a user removing a class expects of any method: the forgotten class is
gone — forget-set accuracy at most :data:`MAX_FORGET_ACC` percent — and the kept classes are unharmed — test
accuracy on the kept classes (``test_acc_remaining``) at most :data:`MAX_KEPT_DROP` points below the original
model's. Both are read off the summary (means over seeds) of a run, so they are statements about the run's own
test split, not tuned on it.

:func:`goal_notes` returns, for every method row that missed the goal, a one-line note that says which part it
missed with the measured numbers, followed by the method's own explanation when its registration gives one
(``MethodSpec.class_note``: e.g. ``finetune`` relies on catastrophic forgetting and has no forget-set term), else
a pointer to ``unlearnkit tune``.
:func:`annotate` writes those notes into the summary rows (``"note"``), where the CLI table, ``results.json`` and
``report.md`` show them.
"""

from __future__ import annotations

import math
from collections.abc import Collection, Mapping, MutableMapping, Sequence
from typing import Any

__all__ = ["MAX_FORGET_ACC", "MAX_KEPT_DROP", "annotate", "goal_notes"]

#: Forget-set accuracy (percent) at or below which a class counts as forgotten.
MAX_FORGET_ACC = 5.0
#: Largest drop (points) of kept-class test accuracy against the original's that still counts as unharmed.
MAX_KEPT_DROP = 5.0

_REFERENCE_ROWS = frozenset({"original", "retrain", "noise_floor"})


def _num(v: Any) -> float | None:
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(float(v)):
        return None
    return float(v)


def _class_note(method: str) -> str:
    from ..methods.base import get_method  # registry lookup only; evaluation sits above methods

    try:
        return get_method(method).class_note
    except Exception:  # a method of an older results file that is no longer registered
        return ""


def goal_notes(summary: Sequence[Mapping[str, Any]], *, request_kind: str = "class",
               tuned: Collection[str] = ()) -> dict[str, str]:
    """``{method: note}`` for each method row of ``summary`` that missed the class-forgetting goal.

    Rows ``original``, ``retrain`` and ``noise_floor`` are references, not candidates; rows that did not run
    (``status`` other than ``"ok"``) already carry their reason. Only class requests have this goal: for another
    ``request_kind``, or when the original's row or its ``test_acc_remaining`` is missing, the result is empty.
    ``tuned`` names the methods that ran with a tuned file's settings: their note says so instead of pointing to
    ``unlearnkit tune``.
    """
    if request_kind != "class":
        return {}
    original = next((r for r in summary if r.get("method") == "original"), None)
    base = _num((original or {}).get("metrics", {}).get("test_acc_remaining"))
    if base is None:
        return {}
    notes: dict[str, str] = {}
    for row in summary:
        method = str(row.get("method", ""))
        if method in _REFERENCE_ROWS or row.get("status", "ok") != "ok":
            continue
        m = row.get("metrics", {})
        forget, kept = _num(m.get("forget_acc")), _num(m.get("test_acc_remaining"))
        missed = []
        if forget is None or forget > MAX_FORGET_ACC:
            missed.append("forget acc " + ("unknown" if forget is None else f"{forget:.1f}%")
                          + f" > {MAX_FORGET_ACC:g}%")
        if kept is None or kept < base - MAX_KEPT_DROP:
            missed.append("kept-class test acc " + ("unknown" if kept is None else
                          f"{kept:.1f}%, {base - kept:.1f} points below the original's {base:.1f}%"))
        if missed:
            why = _class_note(method)
            if method in tuned:
                why = "with the settings `unlearnkit tune` chose (tuned file)" + (f"; {why}" if why else "")
            elif not why:
                why = f"`unlearnkit tune --methods {method}` searches its settings on a proxy request"
            notes[method] = "misses the class goal: " + "; ".join(missed) + f" — {why}"
    return notes


def annotate(summary: Sequence[MutableMapping[str, Any]], *, request_kind: str = "class",
             tuned: Collection[str] = ()) -> dict[str, str]:
    """Put :func:`goal_notes` into the rows of ``summary`` (key ``"note"``) and return them."""
    notes = goal_notes(summary, request_kind=request_kind, tuned=tuned)
    for row in summary:
        if row.get("method") in notes:
            row["note"] = notes[str(row["method"])]
    return notes
