"""Peak memory of the ``svd`` method when the number of samples it reads grows from 500 to 5000 (issue 4, crit. 3).

Each measurement runs in a fresh child process so the allocator starts clean. Every child builds the *same*
synthetic data set (5000 samples of the forgotten class, 600 of each of 9 retained classes, 3×32×32, so the data's
own memory is identical) and the default ``cnn`` at random initialisation (memory does not depend on training),
then calls ``unlearnkit.unlearn`` with ``SvdConfig(samples=S)``: S // 9 retain samples per class and S forget
samples. Reported per S:

* ``peak growth``: growth of the resident set during the ``unlearn`` call (``UnlearnResult.peak_memory_mb``,
  sampled every 5 ms);
* ``max RSS``: the child's lifetime maximum resident set (``ru_maxrss``), data and model included;
* ``wall s`` / ``cpu s``: wall-clock and process CPU time of the call (the CPU time is the meaningful one on a
  shared machine);
* ``naive R``: what the official implementation's activation matrices would take for the same run (every layer's
  ``d × n`` matrix for both sets in float32, convs capped at ``max_patches`` rows, Linear layers uncapped), for
  comparison.

Second part, ``rte`` on ``shapes`` (issue 4, crit. 3): retrain seconds / svd seconds, both measured live in this
process, back to back, single-threaded, so they share the machine's load. ``shapes``, ``class:3``, seed 0, with the
CLI's config (``unlearnkit.presets``; no search) and the CLI's cached original; the retrain is the pipeline's
(same recipe, retain set and seed), timed here rather than read from the cache manifest (which may have been
trained under another load). svd runs 3 times before and 3 times after the retrain (median reported); the α search
(``search=True``) is timed once. Both wall-clock and process CPU time are reported: on a shared machine the CPU
ratio is the one that does not depend on what else runs.

Run: ``OMP_NUM_THREADS=1 .venv/bin/python benchmarks/svd_memory.py [--cache-dir DIR] [--part memory|rte|all]``
(memory ~1 minute; rte ~1-2 minutes, one shapes retrain, plus the original's training if it is not cached).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time

SAMPLES = (500, 5000)
N_FORGET, N_RETAIN_PER_CLASS, CLASSES = 5000, 600, 10


def child(samples: int) -> dict:
    import torch
    from torch.utils.data import DataLoader

    import unlearnkit
    from unlearnkit.data.base import LabeledDataset
    from unlearnkit.models import build_model
    from unlearnkit.stats import projectable_layers

    torch.set_num_threads(1)
    g = torch.Generator().manual_seed(0)
    yf = torch.zeros(N_FORGET, dtype=torch.long)
    yr = torch.arange(1, CLASSES).repeat_interleave(N_RETAIN_PER_CLASS)
    forget = LabeledDataset(torch.randn(len(yf), 3, 32, 32, generator=g), yf)
    retain = LabeledDataset(torch.randn(len(yr), 3, 32, 32, generator=g), yr,
                            ids=torch.arange(len(yf), len(yf) + len(yr)))
    torch.manual_seed(0)
    net = build_model("cnn", (3, 32, 32), CLASSES).eval()
    cfg = unlearnkit.SvdConfig(samples=samples)
    rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    cpu0 = time.process_time()
    res = unlearnkit.unlearn(net, forget=DataLoader(forget, batch_size=128), retain=DataLoader(retain, batch_size=128),
                             forget_classes=[0], num_classes=CLASSES, config=cfg)
    cpu = time.process_time() - cpu0
    n_retain, n_forget = res.history["retain_samples"][0], res.history["forget_samples"][0]
    # Rows the official code would store per layer: convs capped at max_patches, Linear layers one row per sample.
    naive = 0.0
    with torch.no_grad():
        shapes: dict[str, tuple] = {}
        hooks = [la.module.register_forward_hook(lambda m, i, o, n=la.name: shapes.__setitem__(n, i[0].shape))
                 for la in projectable_layers(net)]
        net(torch.zeros(1, 3, 32, 32))
        for h in hooks:
            h.remove()
    for la in projectable_layers(net):
        for n in (n_retain, n_forget):
            if la.kind == "conv2d":
                s = shapes[la.name]
                rows = min(cfg.max_patches, n * s[-1] * s[-2])
            else:
                rows = n
            naive += la.dim * rows * 4 / 2**20
    return {"samples": samples, "retain": n_retain, "forget": n_forget, "peak_growth_mb": res.peak_memory_mb,
            "max_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, "rss_before_mb": rss0,
            "seconds": res.seconds, "cpu_seconds": cpu, "naive_mb": naive}


def rte(cache_dir: str, seed: int = 0) -> None:
    import torch

    import unlearnkit
    from unlearnkit.pipeline import Experiment, build_config
    from unlearnkit.training import train

    torch.set_num_threads(1)
    exp = Experiment("shapes", cache_dir=cache_dir, progress=False, log=lambda *_: None)
    original = exp.original(seed).model
    split = exp.resolve("class:3", seed)
    ld = exp.loaders(split)

    def run_svd(**over: object) -> tuple[float, float]:
        cfg = build_config("svd", dataset="shapes", kind="class", seed=seed, overrides=dict(over))
        c0 = time.process_time()
        res = unlearnkit.unlearn(original, forget=ld["forget"], retain=ld["retain"], val=ld["val"], config=cfg,
                                 forget_classes=split.forget_classes, num_classes=exp.splits.num_classes)
        return res.seconds, time.process_time() - c0

    load0 = os.getloadavg()[0]
    svd_runs = [run_svd() for _ in range(3)]
    model = exp.new_model(seed)
    w0, c0 = time.perf_counter(), time.process_time()
    train(model, split.retain_set(exp.splits.train), recipe=exp.recipe, seed=seed, device=exp.device)
    retrain_wall, retrain_cpu = time.perf_counter() - w0, time.process_time() - c0
    svd_runs += [run_svd() for _ in range(3)]
    search_wall, search_cpu = run_svd(search=True)
    load1 = os.getloadavg()[0]
    svd_wall = statistics.median(r[0] for r in svd_runs)
    svd_cpu = statistics.median(r[1] for r in svd_runs)
    print(f"\nrte on shapes class:3 seed {seed} (load average {load0:.1f} -> {load1:.1f} on "
          f"{os.cpu_count()} cores)")
    print(f"{'':>22} {'wall s':>8} {'cpu s':>8} {'rte wall':>9} {'rte cpu':>8}")
    print(f"{'retrain (live)':>22} {retrain_wall:>8.2f} {retrain_cpu:>8.2f}")
    print(f"{'svd (median of 6)':>22} {svd_wall:>8.2f} {svd_cpu:>8.2f} {retrain_wall / svd_wall:>9.1f} "
          f"{retrain_cpu / svd_cpu:>8.1f}")
    print(f"{'svd with alpha search':>22} {search_wall:>8.2f} {search_cpu:>8.2f} {retrain_wall / search_wall:>9.1f} "
          f"{retrain_cpu / search_cpu:>8.1f}")
    print(f"svd runs (wall, cpu): {[(round(a, 2), round(b, 2)) for a, b in svd_runs]}; target rte >= 50")


def memory() -> None:
    rows = []
    for s in SAMPLES:
        t0 = time.perf_counter()
        out = subprocess.run([sys.executable, __file__, "--child", str(s)], capture_output=True, text=True)
        if out.returncode:
            sys.exit(f"child with S={s} failed:\n{out.stderr}")
        rows.append(json.loads(out.stdout.strip().splitlines()[-1]))
        rows[-1]["wall"] = time.perf_counter() - t0
    print(f"{'S':>6} {'retain':>7} {'forget':>7} {'peak growth MB':>15} {'max RSS MB':>11} {'naive R MB':>11} "
          f"{'wall s':>7} {'cpu s':>6}")
    for r in rows:
        print(f"{r['samples']:>6} {int(r['retain']):>7} {int(r['forget']):>7} {r['peak_growth_mb']:>15.1f} "
              f"{r['max_rss_mb']:>11.1f} {r['naive_mb']:>11.1f} {r['seconds']:>7.2f} "
              f"{r['cpu_seconds']:>6.2f}")
    a, b = rows[0], rows[-1]
    growth = (b["peak_growth_mb"] - a["peak_growth_mb"]) / max(a["peak_growth_mb"], 1e-9)
    rss_growth = (b["max_rss_mb"] - a["max_rss_mb"]) / a["max_rss_mb"]
    print(f"\npeak-growth change {a['samples']} -> {b['samples']} samples: {100 * growth:+.1f}%  "
          f"(max RSS {100 * rss_growth:+.1f}%; target < +20%)")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--part", choices=("memory", "rte", "all"), default="all")
    ap.add_argument("--cache-dir", default=".unlearnkit_cache", help="model cache of `unlearnkit run`")
    args = ap.parse_args()
    if args.part in ("memory", "all"):
        memory()
    if args.part in ("rte", "all"):
        rte(args.cache_dir)


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--child":
        print(json.dumps(child(int(sys.argv[2]))))
    else:
        main()
