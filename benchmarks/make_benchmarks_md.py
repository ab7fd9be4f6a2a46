"""Regenerate ``BENCHMARKS.md`` from finished ``unlearnkit bench`` output folders.

Each folder contributes its leaderboards (its ``report.md`` as the bench wrote it) under a heading, with the command,
the machine and, when a ``/usr/bin/time -v`` log of the bench process is given, its wall-clock and CPU time. The
plots are copied to ``docs/img/bench/<name>_*.png`` so that the file renders on its own.

Usage::

    /usr/bin/time -v unlearnkit bench --dataset digits --seeds 0,1,2 --out runs/bench-digits 2> digits.time
    python benchmarks/make_benchmarks_md.py --bench digits=runs/bench-digits:digits.time \\
        --bench shapes=runs/bench-shapes --note "free text added under the title"

``--update`` keeps the other sections of the existing file (their bench folders need not exist any more) and
replaces, or appends, only the sections named by ``--bench``; the title and notes stay as they are, and ``--note``
paragraphs go under the updated section's heading::

    /usr/bin/time -v unlearnkit bench --dataset textsynth --seeds 0 --out runs/bench-textsynth 2> textsynth.time
    python benchmarks/make_benchmarks_md.py --update --bench textsynth=runs/bench-textsynth:textsynth.time

``--table DIR`` instead prints the README's compact table of a finished folder (forget accuracy and ``avg_gap`` of
``class1`` and ``random10`` per method, sorted by the class1 gap), so that the README's numbers come from the same
files::

    python benchmarks/make_benchmarks_md.py --table runs/bench-digits

Regenerate it whenever a method or a preset changes (bench cells are keyed by scenario, method and seed only, so
delete the changed method's ``cells/*__<method>__*`` files first, or use a new output folder).
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _time_log(path: Path) -> str:
    text = path.read_text()
    wall = re.search(r"Elapsed \(wall clock\) time \(h:mm:ss or m:ss\): (\S+)", text)
    user = re.search(r"User time \(seconds\): ([\d.]+)", text)
    sys_ = re.search(r"System time \(seconds\): ([\d.]+)", text)
    status = re.search(r"Exit status: (\d+)", text)
    parts = []
    if wall:
        parts.append(f"wall clock {wall.group(1)}")
    if user and sys_:
        parts.append(f"CPU {(float(user.group(1)) + float(sys_.group(1))) / 60:.1f} min (user + system)")
    if status:
        parts.append(f"exit status {status.group(1)}")
    return ", ".join(parts)


def section(name: str, out: Path, time_log: Path | None) -> list[str]:
    res = json.loads((out / "results.json").read_text())
    info = res.get("run_info", {})
    report = (out / "report.md").read_text().splitlines()
    img_dir = ROOT / "docs" / "img" / "bench"
    img_dir.mkdir(parents=True, exist_ok=True)
    body = []
    for line in report[1:]:  # drop the report's own title
        m = re.match(r"!\[(.*)\]\((.+\.png)\)", line)
        if m:
            dst = img_dir / f"{name}_{Path(m.group(2)).name}"
            shutil.copyfile(out / m.group(2), dst)
            line = f"![{m.group(1)}]({dst.relative_to(ROOT).as_posix()})"
        body.append(re.sub(r"^## ", "### ", line))
    n_cells = len(list((out / "cells").glob("*.json")))
    head = [f"## {name}", ""]
    if info:  # a generation run (genrun) has no run_info; its settings are in its report
        head.append(f"- machine: {info.get('platform', '?')}, {info.get('cpu_count', '?')} CPUs, torch "
                    f"{info.get('versions', {}).get('torch', '?')}, {info.get('torch_threads', '?')} thread(s), "
                    f"device {info.get('device', '?')}")
    head.append(f"- cells: {n_cells}, records: {len(res.get('records', []))}")
    if time_log is not None and time_log.is_file():
        head.append(f"- bench process: {_time_log(time_log)}")
    return head + body + [""]


def _cell(m: dict | None, key: str) -> str:
    if not m or m.get(key) is None:
        return "–"
    ci = m.get(f"{key}_ci95")
    return f"{m[key]:.2f}" + (f" ± {ci:.2f}" if ci is not None and ci == ci else "")


def table(out: Path, scenarios: tuple[str, str] = ("class1", "random10")) -> list[str]:
    """The README's table: per method, forget accuracy and avg_gap in two scenarios (last step), from results.json."""
    summary = json.loads((out / "results.json").read_text())["summary"]
    by: dict[str, dict[str, dict]] = {}
    for s in summary:
        if s["scenario"] in scenarios and s.get("status") != "n/a":
            by.setdefault(s["method"], {})[s["scenario"]] = s.get("metrics", s)
    first = scenarios[0]

    def order(name: str) -> tuple[int, float]:
        if name in ("original", "retrain"):
            return (0, 0.0 if name == "original" else 1.0)
        g = by[name].get(first, {}).get("avg_gap")
        return (1, float("inf") if g is None else float(g))

    head = f"| method | {first} forget acc | {first} avg_gap | {scenarios[1]} forget acc | {scenarios[1]} avg_gap |"
    lines = [head, "|---|---:|---:|---:|---:|"]
    for name in sorted(by, key=order):
        label = f"*{name}*" if name in ("original", "retrain") else f"`{name}`"
        a, b = by[name].get(first), by[name].get(scenarios[1])
        lines.append(f"| {label} | {_cell(a, 'forget_acc')} | {_cell(a, 'avg_gap')} | {_cell(b, 'forget_acc')} | "
                     f"{_cell(b, 'avg_gap')} |")
    return lines


def update(text: str, sections: dict[str, list[str]]) -> str:
    """``text`` (a BENCHMARKS.md) with each ``## NAME`` section of ``sections`` replaced in place, or appended when
    the file has none of that name; everything else is kept byte for byte."""
    lines = text.rstrip("\n").split("\n")
    starts = [i for i, ln in enumerate(lines) if ln.startswith("## ")]
    blocks = [lines[:starts[0]] if starts else lines]
    names = []
    for a, b in zip(starts, [*starts[1:], len(lines)]):
        names.append(lines[a][3:].strip())
        blocks.append(lines[a:b])
    for name, body in sections.items():
        body = body[:-1] if body and body[-1] == "" else body
        if name in names:
            blocks[names.index(name) + 1] = body + [""]
        else:
            if blocks[-1] and blocks[-1][-1] != "":
                blocks[-1] = [*blocks[-1], ""]
            names.append(name)
            blocks.append(body + [""])
    return "\n".join(ln for block in blocks for ln in block).rstrip("\n") + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--bench", action="append", metavar="NAME=DIR[:TIMELOG]",
                    help="a finished bench output folder, optionally with its /usr/bin/time -v log")
    ap.add_argument("--table", type=Path, default=None, metavar="DIR",
                    help="print the README's compact table of one finished bench folder instead")
    ap.add_argument("--note", action="append", default=[],
                    help="a paragraph added under the title (with --update: under the section's heading; repeatable)")
    ap.add_argument("--out", type=Path, default=ROOT / "BENCHMARKS.md")
    ap.add_argument("--update", action="store_true",
                    help="keep the other sections of the existing --out file; replace or append only these")
    a = ap.parse_args(argv)
    if a.table is not None:
        print("\n".join(table(a.table)))
        return 0
    if not a.bench:
        ap.error("give --bench NAME=DIR (repeatable) or --table DIR")
    if a.update:
        if not a.out.is_file():
            ap.error(f"--update: {a.out} does not exist; run without --update to create it")
        new = {}
        for spec in a.bench:
            name, _, rest = spec.partition("=")
            folder, _, tlog = rest.partition(":")
            body = section(name, Path(folder), Path(tlog) if tlog else None)
            # With --update the notes go under the updated section's heading (the file's title stays as it is).
            new[name] = body[:2] + [ln for note in a.note for ln in (note, "")] + body[2:]
        tmp = a.out.with_name(a.out.name + ".tmp")
        tmp.write_text(update(a.out.read_text(), new))
        tmp.replace(a.out)
        print(f"updated {a.out}: {', '.join(new)}")
        return 0
    lines = ["# Benchmarks", "",
             "Generated by `python benchmarks/make_benchmarks_md.py` from `unlearnkit bench` output folders; "
             "each section names its command. Leaderboards are sorted by `avg_gap` (mean absolute gap to the "
             "retrained reference over forget, retain and test accuracy and MIA-Efficacy; lower is better), mean "
             "± 95% CI over seeds. `rte` divides the reference's recorded training time by the method's time; "
             "seconds depend on the machine's load at the time and are not comparable across sections.", ""]
    for note in a.note:
        lines += [note, ""]
    for spec in a.bench:
        name, _, rest = spec.partition("=")
        folder, _, tlog = rest.partition(":")
        lines += section(name, Path(folder), Path(tlog) if tlog else None)
    a.out.write_text("\n".join(lines))
    print(f"wrote {a.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
