"""``pgu`` with and without retain data (issue 6, criterion 3).

``unlearnkit run`` hands ``pgu`` the retain loader, so the CLI measures the *with-retain-data* mode: ``C_retain``
is computed directly on the retain set. The paper's mode needs no retain data: the per-layer Gram statistics of the
full training set are recorded once right after training (``LayerStats.from_loader(original, train)``) and at
deletion time ``C_retain = C_full − C_forget``, with ``C_forget`` from the forget set alone. This script runs both
modes on the same originals, requests, presets (``build_config``, exactly what the CLI uses) and seeds, evaluates
them with the CLI's evaluator against the same retrained references, and prints mean ± 95% CI over the seeds.
In the recorded mode ``unlearn`` is called with ``retain=None``, so the retain data cannot be touched.

Run: ``OMP_NUM_THREADS=1 .venv/bin/python benchmarks/pgu_modes.py --dataset digits --forget class:3
--seeds 0,1,2 --cache-dir /tmp/s2_cache``.
"""

from __future__ import annotations

import argparse
import json
import warnings
from pathlib import Path

import torch
from torch.utils.data import DataLoader

from unlearnkit.api import unlearn
from unlearnkit.evaluation import summarize
from unlearnkit.methods.pgu import LayerStats
from unlearnkit.pipeline import Experiment, build_config

COLUMNS = [("forget_acc", "forget acc", 1), ("retain_acc", "retain acc", 1), ("test_acc", "test acc", 1),
           ("test_acc_remaining", "test acc (kept cls)", 1), ("mia_efficacy", "MIA-eff.", 1),
           ("avg_gap", "avg gap", 2), ("seconds", "seconds", 2)]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dataset", default="digits")
    ap.add_argument("--forget", default="class:3")
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--cache-dir", default=".unlearnkit_cache")
    ap.add_argument("--out", default=None, help="also write the records as JSON here")
    args = ap.parse_args()
    torch.set_num_threads(1)
    seeds = [int(s) for s in args.seeds.split(",")]
    exp = Experiment(args.dataset, progress=False, log=lambda m: None, cache_dir=args.cache_dir)
    s = exp.splits
    records = []
    for seed in seeds:
        split = exp.resolve(args.forget, seed)
        orig, ref = exp.original(seed), exp.retrained(split, seed)
        ev = exp.evaluator(split, seed)
        ld = exp.data.loaders(split)
        cfg = build_config("pgu", dataset=exp.dataset_spec, kind=split.request.kind, seed=seed)
        # Recorded once "right after training", over the whole training set with the original model.
        stats = LayerStats.from_loader(orig.model, DataLoader(s.train, batch_size=128), seed=seed)
        common = dict(forget=ld["forget"], val=ld["val"], config=cfg, forget_classes=split.forget_classes,
                      num_classes=s.num_classes, device=exp.device)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            runs = {"pgu (retain data)": unlearn(orig.model, retain=ld["retain"], **common),
                    "pgu (recorded stats)": unlearn(orig.model, retain=None, stats=stats, **common)}
        for name, res in runs.items():
            m = ev.evaluate(res.model, reference=ref.model, seconds=res.seconds)
            m.pop("_plots", None)
            m["returned_epoch"] = res.history["returned_epoch"][0]
            records.append({"method": name, "request": args.forget, "seed": seed, "metrics": m})
            kept = m.get("test_acc_remaining")
            print(f"seed {seed} {name}: forget {m['forget_acc']:.1f} test {m['test_acc']:.1f}"
                  + (f" test(kept) {kept:.1f}" if kept is not None else "")
                  + f" avg_gap {m['avg_gap']:.2f} epoch {m['returned_epoch']:.0f}", flush=True)
    summary = summarize(records)
    print(f"\n{args.dataset} · forget {args.forget} · seeds {seeds} (mean ± 95% CI)")
    cols = [c for c in COLUMNS if summary[0]["metrics"].get(c[0]) is not None]
    print("| method | " + " | ".join(h for _, h, _ in cols) + " |")
    print("|---" * (len(cols) + 1) + "|")
    for row in summary:
        mt = row["metrics"]
        cells = [f"{mt[k]:.{d}f}" + (f" ± {mt[k + '_ci95']:.{d}f}" if mt.get(k + "_ci95") is not None else "")
                 for k, _, d in cols]
        print(f"| {row['method']} | " + " | ".join(cells) + " |")
    if args.out:
        Path(args.out).write_text(json.dumps({"records": records, "summary": summary}, indent=1, default=str))


if __name__ == "__main__":
    main()
