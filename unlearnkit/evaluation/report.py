"""Render ``report.md`` and its PNG plots from the results dict the CLI writes as ``results.json``.

Input layout (schema ``unlearnkit.results/1``)::

    {"schema": "unlearnkit.results/1", "run_info": {...},
     "records": [{"method", "request", "seed", "config", "metrics": {...}, "plots": {...}}, ...],
     "summary": [{"method", "request", "seeds", "n_seeds", "metrics": {...}}, ...]}   # optional

Only this dict is read, so ``unlearnkit report DIR`` can re-render a report from ``DIR/results.json`` alone. When
``summary`` is missing it is computed with :func:`unlearnkit.evaluation.summarize`. ``plots`` of a record is the
``_plots`` dict :meth:`Evaluator.evaluate` returns (``loss_hist``); per-class accuracy comes from the
``per_class_test_acc`` metric.

Plots are drawn with matplotlib's object API on the Agg canvas (``matplotlib.figure.Figure``), so no display is
needed and pyplot's global backend is never touched.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from ..errors import DataError
from .stats import summarize

__all__ = ["REPORT_COLUMNS", "series_colours", "write_report"]

# (metric, header, format, better) shown in the results table when at least one row has the metric.
# "better": "r" = closest to the retrained model, "↓"/"↑" = lower/higher.
REPORT_COLUMNS: tuple[tuple[str, str, str, str], ...] = (
    ("forget_acc", "FA %", "{:.2f}", "r"),
    ("retain_acc", "RA %", "{:.2f}", "r"),
    ("test_acc", "TA %", "{:.2f}", "r"),
    ("test_acc_remaining", "TA rem. %", "{:.2f}", "r"),
    ("test_acc_forgotten", "TA forg. %", "{:.2f}", "r"),
    ("mia_efficacy", "MIA-Eff %", "{:.2f}", "r"),
    ("mia_loss_auc", "Loss AUC", "{:.3f}", "r"),
    ("mia_lr_loss_acc", "LR-loss %", "{:.2f}", "r"),
    ("avg_gap", "Avg.Gap", "{:.2f}", "↓"),
    ("tow", "ToW", "{:.3f}", "↑"),
    ("tow_mia", "ToW-MIA", "{:.3f}", "↑"),
    ("js_to_retrain", "JS→r", "{:.4f}", "↓"),
    ("act_dist_to_retrain", "ActDist→r", "{:.4f}", "↓"),
    ("seconds", "Time s", "{:.2f}", "↓"),
    ("rte", "RTE", "{:.1f}", "↑"),
    ("streisand_flag", "Streisand", "{:.2f}", "↓"),
)

_FIRST = ("original", "retrain", "noise_floor")


def _slug(s: str) -> str:
    return re.sub(r"[^A-Za-z0-9]+", "_", s).strip("_") or "request"


def _num(v: Any) -> float | None:
    if isinstance(v, bool) or v is None:
        return None if v is None else float(v)
    if isinstance(v, (int, float)) and math.isfinite(float(v)):
        return float(v)
    return None


def _ordered(rows: Sequence[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    first = [r for name in _FIRST for r in rows if r["method"] == name]
    return first + [r for r in rows if r["method"] not in _FIRST]


def _cell(m: Mapping[str, Any], key: str, fmt: str) -> str:
    v = _num(m.get(key))
    if v is None:
        return "—"
    ci = _num(m.get(f"{key}_ci95"))
    return fmt.format(v) + (f" ± {fmt.format(ci)}" if ci is not None else "")


def _table(rows: Sequence[Mapping[str, Any]]) -> list[str]:
    cols = [c for c in REPORT_COLUMNS if any(_num(r["metrics"].get(c[0])) is not None for r in rows)]
    noted = any(r.get("note") for r in rows)
    lines = ["| method | seeds | " + " | ".join(f"{h} ({b})" for _, h, _, b in cols) + (" | note" if noted else "")
             + " |", "|---|---|" + "---|" * (len(cols) + noted)]
    for r in rows:
        if r.get("status", "ok") != "ok":
            why = f"{r.get('status')}" + (f": {r['reason']}" if r.get("reason") else "")
            lines.append(f"| {r['method']} | | " + " | ".join([why.replace("|", "/")] + [""] * (len(cols) - 1
                                                                                             + noted)) + " |")
            continue
        cells = [_cell(r["metrics"], k, fmt) for k, _, fmt, _ in cols]
        if noted:
            cells.append(str(r.get("note", "")).replace("|", "/"))
        seeds = ",".join(str(s) for s in r.get("seeds", []))
        lines.append(f"| {r['method']} | {seeds} | " + " | ".join(cells) + " |")
    return lines


def series_colours(n: int) -> list[Any]:
    """``n`` distinct colours: tab10 up to 10 series, tab20 up to 20, else evenly spaced hues (matplotlib's default
    cycle repeats after 10, so the 12 rows of a full run would share colours)."""
    from matplotlib import colormaps

    if n <= 10:
        return [colormaps["tab10"](i) for i in range(n)]
    if n <= 20:
        return [colormaps["tab20"](i) for i in range(n)]
    return [colormaps["hsv"](i / n) for i in range(n)]


_MARKERS = "osD^v<>pP*Xh"


def _save(fig: Figure, path: Path) -> None:
    FigureCanvasAgg(fig)
    fig.savefig(path, dpi=110, format="png")


def new_axes(figsize: tuple[float, float] = (6.0, 4.0)) -> tuple[Figure, Any]:
    """A figure with one axes on the Agg canvas (no pyplot state, no display needed)."""
    fig = Figure(figsize=figsize)
    return fig, fig.add_subplot(1, 1, 1)


def finish_plot(fig: Figure, ax: Any, path: Path, *, xlabel: str, ylabel: str, title: str,
                legend: bool = True) -> None:
    """Label the axes, add the legend, lay out and write the PNG."""
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    if legend and ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=7)
    fig.tight_layout()
    _save(fig, path)


# ---------------------------------------------------------------------------------------------------------------
# Plots
# ---------------------------------------------------------------------------------------------------------------


def _plot_per_class(rows: Sequence[Mapping[str, Any]], path: Path, class_names: Sequence[str] | None) -> bool:
    series = [(r["method"], r["metrics"].get("per_class_test_acc")) for r in rows]
    series = [(n, [np.nan if _num(v) is None else float(v) for v in s]) for n, s in series if isinstance(s, list)]
    if not series:
        return False
    k = max(len(s) for _, s in series)
    fig = Figure(figsize=(max(6.0, 0.55 * k * max(1, len(series)) / 2 + 2), 4.0))
    ax = fig.add_subplot(1, 1, 1)
    width = 0.8 / len(series)
    x = np.arange(k)
    colours = series_colours(len(series))
    for i, (name, s) in enumerate(series):
        vals = np.full(k, np.nan)
        vals[:len(s)] = s
        ax.bar(x - 0.4 + width * (i + 0.5), np.nan_to_num(vals), width, label=name, color=colours[i])
    labels = list(class_names) if class_names and len(class_names) == k else [str(c) for c in range(k)]
    ax.set_xticks(x)
    ax.set_xticklabels(labels, rotation=45 if k > 12 else 0, fontsize=8)
    ax.set_ylim(0, 105)
    ax.set_xlabel("class")
    ax.set_ylabel("test accuracy (%)")
    ax.set_title("Per-class test accuracy")
    # Outside the axes: inside, the legend would hide bars (accuracies fill the whole 0–100 range).
    ax.legend(fontsize=7, ncol=min(6, len(series)), loc="lower center", bbox_to_anchor=(0.5, 1.08), frameon=False)
    fig.tight_layout()
    _save(fig, path)
    return True


def _loss_hists(records: Sequence[Mapping[str, Any]], methods: Sequence[str]) -> list[tuple[str, dict[str, Any]]]:
    """Per method, the forget/test loss histograms summed over seeds (bins must agree)."""
    out = []
    for name in methods:
        acc: dict[str, Any] | None = None
        for r in records:
            h = (r.get("plots") or {}).get("loss_hist") if r.get("method") == name else None
            if not h or not h.get("edges"):
                continue
            if acc is None:
                acc = {"edges": list(h["edges"]), "forget": np.zeros(len(h["edges"]) - 1),
                       "test": np.zeros(len(h["edges"]) - 1)}
            if list(h["edges"]) != acc["edges"]:
                continue
            acc["forget"] += np.asarray(h.get("forget", 0), dtype=float)
            acc["test"] += np.asarray(h.get("test", 0), dtype=float)
        if acc is not None:
            out.append((name, acc))
    return out


def _plot_loss_hists(hists: Sequence[tuple[str, dict[str, Any]]], path: Path) -> bool:
    if not hists:
        return False
    n = len(hists)
    ncol = min(3, n)
    nrow = math.ceil(n / ncol)
    fig = Figure(figsize=(4.2 * ncol, 3.0 * nrow))
    for i, (name, h) in enumerate(hists):
        ax = fig.add_subplot(nrow, ncol, i + 1)
        edges = np.asarray(h["edges"])
        for key, colour in (("forget", "tab:red"), ("test", "tab:blue")):
            c = np.asarray(h[key], dtype=float)
            # Fractions, not counts: the forget and test sets differ in size.
            frac = c / c.sum() if c.sum() > 0 else c
            ax.stairs(frac, edges, label=f"{key} (n={int(c.sum())})", color=colour, fill=False, linewidth=1.4)
        ax.set_xscale("log")
        ax.set_title(name, fontsize=9)
        ax.set_xlabel("cross-entropy loss", fontsize=8)
        ax.set_ylabel("fraction", fontsize=8)
        ax.tick_params(labelsize=7)
        ax.legend(fontsize=7)
    fig.suptitle("Loss distributions: forget vs class-matched test", fontsize=10)
    fig.tight_layout()
    _save(fig, path)
    return True


def _plot_cost_quality(rows: Sequence[Mapping[str, Any]], path: Path) -> bool:
    pts = []
    for r in rows:
        m = r["metrics"]
        s, g = _num(m.get("seconds")), _num(m.get("avg_gap"))
        if s is not None and g is not None and s > 0:
            pts.append((r["method"], s, g, _num(m.get("seconds_ci95")) or 0.0, _num(m.get("avg_gap_ci95")) or 0.0))
    if not pts:
        return False
    fig = Figure(figsize=(7.5, 4.0))
    ax = fig.add_subplot(1, 1, 1)
    # Names go in a legend beside the axes, not next to the points: points of similar cost and quality would make
    # their labels overlap. Each series has its own colour and marker.
    colours = series_colours(len(pts))
    for i, (name, s, g, se, ge) in enumerate(pts):
        ax.errorbar([s], [g], xerr=[[min(se, s * 0.999)], [se]], yerr=[[ge], [ge]], fmt=_MARKERS[i % len(_MARKERS)],
                    capsize=3, label=name, color=colours[i])
    ax.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.02, 0.5), frameon=False)
    secs = [p[1] for p in pts]
    if max(secs) / min(secs) > 10:
        ax.set_xscale("log")
    ax.set_xlabel("wall time (s)")
    ax.set_ylabel("Avg. Gap to retrain (points, lower is better)")
    ax.set_title("Cost vs quality")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    _save(fig, path)
    return True


# ---------------------------------------------------------------------------------------------------------------
# Report
# ---------------------------------------------------------------------------------------------------------------


def _run_info_lines(info: Mapping[str, Any]) -> list[str]:
    lines = []
    for k, v in info.items():
        text = v if isinstance(v, str) else json.dumps(v, default=str)
        if len(text) > 160:
            text = text[:157] + "..."
        lines.append(f"- **{k}**: {text}")
    return lines


def settings_lines(records: Sequence[Mapping[str, Any]]) -> list[str]:
    """Where each method's non-default settings came from (rule / preset / tuned file / --set), and the values a
    built-in search chose per seed (svd --search), from the records' ``provenance`` and ``chosen``."""
    out: list[str] = []
    seen: set[str] = set()
    for r in records:
        m, prov = str(r.get("method")), r.get("provenance")
        if prov is None or m in seen:
            continue
        seen.add(m)
        cfg = r.get("config") or {}
        parts = [f"`{f}={cfg.get(f)!r}` ({p.get('source')})" for f, p in sorted(prov.items())]
        text = ", ".join(parts) if parts else "the method's own defaults"
        chosen = [(x.get("seed"), x["chosen"]) for x in records if x.get("method") == m and x.get("chosen")]
        if chosen:
            text += "; chosen by its search: " + "; ".join(
                f"seed {s}: " + ", ".join(f"{k}={v:g}" for k, v in c.items()) for s, c in chosen)
        out.append(f"- **{m}**: {text}")
    return (["Settings (source of every non-default value):", ""] + out + [""]) if out else []



def write_report(results: Mapping[str, Any], out_dir: Path | str) -> Path:
    """Write ``out_dir/report.md`` and its plots under ``out_dir/plots/``; return the report's path.

    One section per forget request: the results table (rows ``original``, ``retrain`` and, when present,
    ``noise_floor`` first, even if missing from the results; mean ± 95% CI over seeds), the per-class test accuracy
    of every model, the forget-vs-test loss histograms of every model, and cost (seconds) against quality
    (``avg_gap``). Plots without data are skipped with a note.

    Raises:
        DataError: ``results`` has no ``records`` list.
    """
    records = results.get("records")
    if not isinstance(records, list):
        raise DataError("results has no 'records' list; pass the dict loaded from results.json "
                        "(schema unlearnkit.results/1)")
    out = Path(out_dir)
    plot_dir = out / "plots"
    plot_dir.mkdir(parents=True, exist_ok=True)
    summary = results.get("summary") or summarize(records)
    info = results.get("run_info") or {}
    class_names = info.get("class_names") if isinstance(info, Mapping) else None

    lines = ["# unlearnkit report", ""]
    if info:
        lines += _run_info_lines(info) + [""]
    lines += ["Every cell is the mean over seeds, ± the 95% Student-t half-width when there are several seeds. "
              "Column markers: (r) closest to the `retrain` row is best, (↓) lower is better, (↑) higher is better. "
              "Accuracies and attack rates are in percent. Definitions: `docs/metrics.md`.", ""]

    requests: list[str] = []
    for r in list(summary) + records:
        req = str(r.get("request", ""))
        if req not in requests:
            requests.append(req)
    for req in requests:
        rows = [dict(r) for r in summary if str(r.get("request", "")) == req]
        present = {r["method"] for r in rows}
        for name in ("original", "retrain"):
            if name not in present:
                rows.append({"method": name + " (missing)", "request": req, "seeds": [], "metrics": {}})
        rows = _ordered(rows)
        slug = _slug(req)
        lines += [f"## Request `{req}`", ""] + _table(rows) + [""]
        req_records = [r for r in records if str(r.get("request", "")) == req]
        lines += settings_lines(req_records)
        methods = [r["method"] for r in rows]
        drawn = {
            "per_class": _plot_per_class([r for r in rows if r["metrics"]], plot_dir / f"per_class_{slug}.png",
                                         class_names),
            "loss_hist": _plot_loss_hists(_loss_hists(req_records, methods), plot_dir / f"loss_hist_{slug}.png"),
            "cost_quality": _plot_cost_quality(rows, plot_dir / f"cost_quality_{slug}.png"),
        }
        titles = {"per_class": "Per-class test accuracy", "loss_hist": "Loss distributions of forget vs test",
                  "cost_quality": "Cost vs quality"}
        for key, ok in drawn.items():
            lines += [f"### {titles[key]}", ""]
            lines += ([f"![{titles[key]}](plots/{key}_{slug}.png)", ""] if ok
                      else ["_No data for this plot in the results._", ""])
    path = out / "report.md"
    path.write_text("\n".join(lines), encoding="utf-8")
    return path
