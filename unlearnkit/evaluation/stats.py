"""Statistics over seeds: mean and 95% Student-t confidence half-width, and the per-(method, request) summary."""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np
from scipy import stats as st

from ..errors import DataError

__all__ = ["mean_ci95", "summarize"]


def mean_ci95(values: Iterable[float]) -> tuple[float, float]:
    """Mean and 95% Student-t half-width ``t_{0.975, n−1} · s / √n`` (``s`` the sample std, ddof=1).

    RUM reports ToW and the accuracies this way over paired seeds (spec §1.3, §5.4). With one value the half-width
    is ``nan``; with none both are ``nan``. Non-finite values are ignored.
    """
    v = np.asarray([float(x) for x in values], dtype=np.float64)
    v = v[np.isfinite(v)]
    if v.size == 0:
        return math.nan, math.nan
    mean = float(np.mean(v))
    if v.size == 1:
        return mean, math.nan
    half = float(st.t.ppf(0.975, v.size - 1) * np.std(v, ddof=1) / math.sqrt(v.size))
    return mean, half


def _is_number(v: Any) -> bool:
    return isinstance(v, (bool, int, float, np.bool_, np.integer, np.floating))


def _clean(x: float | None) -> float | None:
    return None if x is None or not math.isfinite(x) else float(x)


def summarize(records: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """One summary record per ``(method, request)``, in order of first appearance.

    Each input record is ``{"method", "request", "seed", "metrics": {...}}``. For every scalar metric the summary
    holds the mean over the seeds where it is defined (``None`` values and non-finite numbers are skipped; booleans
    count as 0/1) and, when more than one seed contributed, ``<name>_ci95``, the 95% Student-t half-width. List
    metrics (per-class accuracy) are averaged element-wise, without a CI. Other values (strings, dicts) are taken
    from the first record. Metric names starting with ``_`` are skipped. Records with a ``status`` other than
    ``"ok"`` (cells a method cannot serve) are left out of the statistics; a group with no ``"ok"`` record keeps
    the first record's ``status`` and ``reason`` and empty metrics.

    Returns:
        ``[{"method", "request", "seeds": [...], "n_seeds": int, "status": str, "metrics": {...}}, ...]``
        (plus ``reason`` for groups that did not run).

    Raises:
        DataError: a record lacks ``method`` or ``metrics``.
    """
    groups: dict[tuple[str, str], list[Mapping[str, Any]]] = {}
    for i, r in enumerate(records):
        if "method" not in r or not isinstance(r.get("metrics"), Mapping):
            raise DataError(f"record {i} has no 'method' or no 'metrics' dict: {sorted(r)}; each record needs "
                            "method, request, seed and metrics")
        groups.setdefault((str(r["method"]), str(r.get("request", ""))), []).append(r)
    out: list[dict[str, Any]] = []
    for (method, request), all_recs in groups.items():
        # Records of cells that did not run (status "n/a", with a reason) carry no metrics; the group keeps their
        # status only when no seed ran, so the CLI table and the report can say why.
        recs = [r for r in all_recs if r.get("status", "ok") == "ok"]
        if not recs:
            first = all_recs[0]
            entry = {"method": method, "request": request, "seeds": [r.get("seed") for r in all_recs],
                     "n_seeds": 0, "status": first.get("status"), "metrics": {}}
            if first.get("reason"):
                entry["reason"] = first["reason"]
            out.append(entry)
            continue
        names: list[str] = []
        for r in recs:
            names += [k for k in r["metrics"] if k not in names and not k.startswith("_")]
        summ: dict[str, Any] = {}
        for k in names:
            vals = [r["metrics"].get(k) for r in recs]
            present = [v for v in vals if v is not None]
            if not present:
                summ[k] = None
            elif all(_is_number(v) for v in present):
                finite = [float(v) for v in present if math.isfinite(float(v))]
                mean, half = mean_ci95(finite)
                summ[k] = _clean(mean)
                if len(finite) > 1:
                    summ[f"{k}_ci95"] = _clean(half)
            elif all(isinstance(v, (list, tuple)) for v in present):
                width = max(len(v) for v in present)
                arr = np.full((len(present), width), np.nan)
                for i, v in enumerate(present):
                    arr[i, :len(v)] = [np.nan if e is None else float(e) for e in v]
                with np.errstate(all="ignore"):
                    col_n = np.sum(np.isfinite(arr), axis=0)
                    col = np.where(col_n > 0, np.nansum(arr, axis=0) / np.maximum(col_n, 1), np.nan)
                summ[k] = [_clean(float(c)) for c in col]
            else:
                summ[k] = present[0]
        out.append({"method": method, "request": request, "seeds": [r.get("seed") for r in recs],
                    "n_seeds": len(recs), "status": "ok", "metrics": summ})
    return out
