"""Markdown table of a class run's goal check: forget acc, kept-class test acc, avg_gap and the note per method.

Reads one or two ``results.json`` files of ``unlearnkit run`` on the same class request (e.g. before and after
``unlearnkit tune``) and prints one row per method; README's "Defaults from the data" tables are made with it::

    python benchmarks/goal_table.py RUN/results.json [TUNED_RUN/results.json]
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from unlearnkit.evaluation.verdicts import goal_notes


def _load(path: str) -> dict[str, dict]:
    summary = json.loads(Path(path).read_text())["summary"]
    notes = goal_notes(summary)
    return {r["method"]: {**r, "met": r["method"] not in notes} for r in summary}


def _cells(r: dict | None) -> list[str]:
    if r is None or r.get("status", "ok") != "ok":
        return ["–"] * 4
    m = r["metrics"]
    met = "" if r["method"] in ("original", "retrain") else ("yes" if r["met"] else "**no**")
    return [f"{m['forget_acc']:.1f}", f"{m['test_acc_remaining']:.1f}", f"{m['avg_gap']:.2f}", met]


def main() -> None:
    runs = [_load(p) for p in sys.argv[1:3]]
    head = ["forget acc", "kept-class test acc", "avg gap", "goal met"]
    cols = head if len(runs) == 1 else [f"{h} (untuned)" for h in head] + [f"{h} (tuned)" for h in head]
    print("| method | " + " | ".join(cols) + " |")
    print("|---|" + "---:|" * len(cols))
    for name in runs[0]:
        cells = [c for run in runs for c in _cells(run.get(name))]
        print(f"| {name} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
