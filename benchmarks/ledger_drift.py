"""Sequential drift of deletion requests: 5 requests applied one after another vs one batched application.

For each seed: the cached original (default CNN and recipe), the 5 random-sized ``ids`` requests of the bench's
``seq_ids`` scenario (each 1-4% of the training set, disjoint), recorded in two ledgers through the Python API;
one ledger applies them sequentially (requests 1-4 with ``--evidence cheap``, request 5 with ``standard``), the
other in one batch (``standard``). Printed and
written to ``OUT/drift.json``: the gap (``avg_gap``, on the union of the 5 requests) of each to the model retrained
without the union (from the model cache), next to the noise floor (a second retraining, seed + 10000).

    OMP_NUM_THREADS=1 python benchmarks/ledger_drift.py --dataset shapes --seeds 0,1,2 --out runs/ledger-drift

The method config: ``ids`` requests of individual users are random subsets of the training set, so the ledger
passes the dataset's random-subset preset (``presets.method_overrides(method, dataset, "random")``) explicitly.
"""

from __future__ import annotations

import argparse
import json
import shutil
import time
from pathlib import Path

import numpy as np

from unlearnkit.bench import SCENARIOS, scenario_splits
from unlearnkit.checkpoints import save_checkpoint
from unlearnkit.evaluation import mean_ci95
from unlearnkit.ledger import Ledger
from unlearnkit.pipeline import Experiment
from unlearnkit.presets import method_overrides


def run_seed(dataset: str, method: str, seed: int, out: Path, cache: str) -> dict:
    exp = Experiment(dataset, cache_dir=cache, progress=False, log=print)
    orig = exp.original(seed)
    steps = scenario_splits(exp, SCENARIOS["seq_ids"], seed)
    new = [steps[0].forget_idx] + [np.setdiff1d(b.forget_idx, a.forget_idx) for a, b in zip(steps, steps[1:])]
    overrides = dict(method_overrides(method, dataset, "random"))
    res: dict = {"seed": seed, "sizes": [int(len(x)) for x in new], "n_train": len(exp.splits.train),
                 "overrides": overrides}
    for mode in ("sequential", "batch"):
        d = out / f"s{seed}" / mode
        if d.exists():
            shutil.rmtree(d)
        d.mkdir(parents=True)
        ckpt = save_checkpoint(d / "model.safetensors", orig.model, orig.manifest)
        t0 = time.perf_counter()
        with Ledger(d / "ledger.sqlite", cache_dir=cache, log=print) as led:
            for i, idx in enumerate(new):
                f = d / f"request{i + 1}.ids"
                f.write_text("\n".join(str(int(j)) for j in idx) + "\n")
                led.add_request(checkpoint=ckpt, ids=f, reason="benchmark", requester=f"user-{i + 1}")
                if mode == "sequential" and i == 3:
                    # Requests 1-4 with cheap evidence (no retraining: the per-step retrained references would
                    # cost 8 trainings per seed); request 5, the one measured, with standard evidence.
                    led.apply(checkpoint=ckpt, method=method, evidence="cheap", seed=seed, overrides=overrides)
            led.apply(checkpoint=ckpt, method=method, evidence="standard", batch=mode == "batch", seed=seed,
                      overrides=overrides)
            led.report(5, d / "reports")
            ev = {e["request_id"]: e for e in led.evidence()}
            assert led.verify().ok
        last = ev[5]["drift"]
        res[mode] = {"avg_gap_union": last["sequential_avg_gap"], "noise_floor_union": last["noise_floor_avg_gap"],
                     "forget_acc_union": last["sequential_forget_acc"], "test_acc": last["sequential_test_acc"],
                     "reference_forget_acc_union": last["reference_forget_acc"], "seconds": time.perf_counter() - t0}
        if mode == "sequential":
            res[mode]["single_step_avg_gap_union"] = last["single_step_avg_gap"]
            res[mode]["per_step_forget_acc"] = [ev[i]["metrics"]["after"]["forget_acc"] for i in sorted(ev)]
            res[mode]["per_step_test_acc"] = [ev[i]["metrics"]["after"]["test_acc"] for i in sorted(ev)]
        print(json.dumps({mode: res[mode]}))
    return res


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dataset", default="shapes")
    ap.add_argument("--method", default="sfron")
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--cache-dir", default=".unlearnkit_cache")
    ap.add_argument("--out", default="runs/ledger-drift")
    args = ap.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    runs = []
    for s in (int(x) for x in args.seeds.split(",")):
        runs.append(run_seed(args.dataset, args.method, s, out, args.cache_dir))
        (out / "drift.json").write_text(json.dumps({"dataset": args.dataset, "method": args.method, "runs": runs},
                                                   indent=1))
    for key, get in [("sequential avg_gap", lambda r: r["sequential"]["avg_gap_union"]),
                     ("batched avg_gap", lambda r: r["batch"]["avg_gap_union"]),
                     ("single-step avg_gap", lambda r: r["sequential"]["single_step_avg_gap_union"]),
                     ("noise floor", lambda r: r["sequential"]["noise_floor_union"]),
                     ("sequential forget acc", lambda r: r["sequential"]["forget_acc_union"]),
                     ("batched forget acc", lambda r: r["batch"]["forget_acc_union"]),
                     ("retrained forget acc", lambda r: r["sequential"]["reference_forget_acc_union"])]:
        vals = [get(r) for r in runs]
        m, ci = mean_ci95(vals)
        print(f"{key}: {m:.2f} ± {ci:.2f}  per seed {', '.join(f'{v:.2f}' for v in vals)}")


if __name__ == "__main__":
    main()
