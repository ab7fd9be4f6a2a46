"""SFR-on's baseline ordering (issue 20, criterion 3) from a finished ``unlearnkit bench`` folder.

Avg.D is SFR-on's aggregate: the mean absolute gap to the retrained model over forget, retain and test accuracy
and its entropy-attack MIA (``mia_entropy_member_rate``; spec ``sfron_salun.md`` §6.2-6.4). ``avg_gap`` is ours
(MIA-Efficacy instead). Both are read from the bench's per-seed cells, nothing recomputed; mean ± 95% Student-t
half-width over seeds, and each seed's Avg.D.

Run: ``python benchmarks/sfron_ordering.py DIR [--scenario random10] [--methods sfron,salun,scrub,bad_teacher]``
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
from scipy import stats

AVG_D = ("absgap_forget_acc", "absgap_retain_acc", "absgap_test_acc", "absgap_mia_entropy_member_rate")
SHOWN = ("forget_acc", "retain_acc", "test_acc", "mia_entropy_member_rate")


def _pm(v: list[float]) -> str:
    a = np.asarray(v, dtype=float)
    if a.size < 2:
        return f"{a.mean():.2f}"
    half = stats.t.ppf(0.975, a.size - 1) * a.std(ddof=1) / np.sqrt(a.size)
    return f"{a.mean():.2f} ± {half:.2f}"


def rows(folder: Path, scenario: str, methods: list[str]) -> list[str]:
    out = ["| method | FA | RA | TA | MIA (entropy member rate) | Avg.D (SFR-on's) | per seed Avg.D | avg_gap (ours) |",
           "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for m in ["original", "retrain", *methods]:
        cells = sorted((folder / "cells").glob(f"{scenario}__{m}__s*.json"))
        recs = [r for c in cells for r in json.loads(c.read_text()) if r.get("status") == "ok"]
        if not recs:
            out.append(f"| `{m}` | – | – | – | – | – | – | – |")
            continue
        met = [r["metrics"] for r in recs]
        shown = [_pm([x[k] for x in met]) for k in SHOWN]
        if m == "retrain":
            d, per, g = "–", "–", "–"
        else:
            ds = [float(np.mean([x[k] for k in AVG_D])) for x in met]
            d, per, g = _pm(ds), " / ".join(f"{v:.2f}" for v in ds), _pm([x["avg_gap"] for x in met])
        label = f"*{m}*" if m in ("original", "retrain") else f"`{m}`"
        out.append(f"| {label} | {' | '.join(shown)} | {d} | {per} | {g} |")
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("folder", type=Path)
    ap.add_argument("--scenario", default="random10")
    ap.add_argument("--methods", default="sfron,salun,scrub,bad_teacher")
    a = ap.parse_args(argv)
    print("\n".join(rows(a.folder, a.scenario, a.methods.split(","))))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
