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

Third part, ``resnet18`` (issue 19): the paper's own architecture, ResNet-18 at width 64 on 3×32×32 inputs (every
3×3 conv of ``layer3``/``layer4`` has fan-in d = 2304 or 4608, which the former 2048 limit sent to the rank-1024
sketch), random initialisation, the default ``SvdConfig`` (S = 900: 100 retain images of each of 9 classes and
900 forget images, ``max_patches`` = 10 000). Two fresh child processes on the same images: ``unlearnkit``'s svd
(exact Gram + ``eigh`` on every layer) and an official-style implementation written here (per layer and set, the
``n × d`` float32 activation matrix with the same row budget, its thin SVD, the d×d matrices ``M_r``, ``M_f`` and
``P = I − M_f + M_f·M_r``, then ``W ← W Pᵀ``). Reported: wall and CPU seconds of the call, growth of the resident set
during it (``ru_maxrss``, so the peak), and the largest relative difference between the two projected weights
(the row draws differ, so it is small, not zero).

Run: ``OMP_NUM_THREADS=1 .venv/bin/python benchmarks/svd_memory.py [--cache-dir DIR] [--part memory|rte|resnet18|all]``
(memory ~1 minute; rte ~1-2 minutes, one shapes retrain, plus the original's training if it is not cached; resnet18
~10-20 minutes on one thread).
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


def _synthetic(n_forget: int, n_retain_per_class: int, model: str, **model_kw: object):  # noqa: ANN202
    """Seeded random 3×32×32 images (class 0 forgotten, classes 1-9 retained) and a model at random init."""
    import torch

    from unlearnkit.data.base import LabeledDataset
    from unlearnkit.models import build_model

    torch.set_num_threads(1)
    g = torch.Generator().manual_seed(0)
    yf = torch.zeros(n_forget, dtype=torch.long)
    yr = torch.arange(1, CLASSES).repeat_interleave(n_retain_per_class)
    forget = LabeledDataset(torch.randn(len(yf), 3, 32, 32, generator=g), yf)
    retain = LabeledDataset(torch.randn(len(yr), 3, 32, 32, generator=g), yr,
                            ids=torch.arange(len(yf), len(yf) + len(yr)))
    torch.manual_seed(0)
    return build_model(model, (3, 32, 32), CLASSES, **model_kw).eval(), forget, retain


def child(samples: int) -> dict:
    import torch
    from torch.utils.data import DataLoader

    import unlearnkit
    from unlearnkit.stats import projectable_layers

    net, forget, retain = _synthetic(N_FORGET, N_RETAIN_PER_CLASS, "cnn")
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


R18_RETAIN_PER_CLASS, R18_FORGET = 100, 900


def _official_style_svd(net, forget, retain, alpha_r: float, alpha_f: float, max_patches: int) -> None:  # noqa: ANN001
    """Activation matrices, their thin SVDs and d×d projections, as the official code (spec §1 steps 2-5)."""
    import torch

    from unlearnkit.stats import layer_rows, projectable_layers

    layers = projectable_layers(net)
    g = torch.Generator().manual_seed(0)

    def activations(ds) -> dict:  # noqa: ANN001
        rows: dict[str, list] = {la.name: [] for la in layers}
        n, seen = len(ds), 0
        def hook(la):  # noqa: ANN001, ANN202
            def f(_m, args, _o):  # noqa: ANN001, ANN202
                x = args[0]
                per = la.kind == "conv2d" or x.ndim > 2
                cnt = max_patches * (seen + x.shape[0]) // n - max_patches * seen // n if per else None
                rows[la.name].append(layer_rows(la, x, count=cnt, generator=g))
            return f
        hs = [la.module.register_forward_hook(hook(la)) for la in layers]
        with torch.no_grad():
            for i in range(0, n, 128):
                x = torch.stack([ds[j][0] for j in range(i, min(n, i + 128))])
                net(x)
                seen += x.shape[0]
        for h in hs:
            h.remove()
        return {k: torch.cat(v) for k, v in rows.items()}

    def scaled(r, alpha: float):  # noqa: ANN001, ANN202
        u, sv, _ = torch.linalg.svd(r.T, full_matrices=False)  # d × k, the official thin SVD of R (d × n)
        e = sv**2 / (sv**2).sum()
        lam = alpha * e / ((alpha - 1) * e + 1)
        return (u * lam) @ u.T

    a_r, a_f = activations(retain), activations(forget)
    with torch.no_grad():
        for la in layers:
            m_r, m_f = scaled(a_r.pop(la.name), alpha_r), scaled(a_f.pop(la.name), alpha_f)
            p = torch.eye(la.dim) - m_f + m_f @ m_r
            w = la.weight
            w.copy_((w.flatten(1) @ p.T).view_as(w))


def r18_child(which: str, out_path: str) -> dict:
    import torch
    from torch.utils.data import DataLoader

    import unlearnkit

    net, forget, retain = _synthetic(R18_FORGET, R18_RETAIN_PER_CLASS, "resnet18", width=64)
    cfg = unlearnkit.SvdConfig()
    rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    w0, c0 = time.perf_counter(), time.process_time()
    if which == "unlearnkit":
        res = unlearnkit.unlearn(net, forget=DataLoader(forget, batch_size=128),
                                 retain=DataLoader(retain, batch_size=128), forget_classes=[0], num_classes=CLASSES,
                                 config=cfg, inplace=True)
        assert res.history["layers_projected"][0] > 0
    else:
        _official_style_svd(net, forget, retain, cfg.alpha_r, cfg.alpha_f, cfg.max_patches)
    wall, cpu = time.perf_counter() - w0, time.process_time() - c0
    torch.save({k: v.detach().clone() for k, v in net.state_dict().items()}, out_path)
    return {"which": which, "seconds": wall, "cpu_seconds": cpu,
            "peak_growth_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024 - rss0}


def resnet18() -> None:
    import tempfile

    import torch

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for which in ("unlearnkit", "official"):
            path = os.path.join(tmp, f"{which}.pt")
            out = subprocess.run([sys.executable, __file__, "--r18-child", which, path], capture_output=True,
                                 text=True)
            if out.returncode:
                sys.exit(f"resnet18 child {which} failed:\n{out.stderr}")
            rows.append(json.loads(out.stdout.strip().splitlines()[-1]))
        a = torch.load(os.path.join(tmp, "unlearnkit.pt"))
        b = torch.load(os.path.join(tmp, "official.pt"))
    diff = max(float((a[k] - b[k]).norm() / b[k].norm().clamp_min(1e-12)) for k in a if k.endswith("weight")
               and a[k].ndim > 1)
    print("\nresnet18 width 64, 3x32x32, S = 900 (900 retain + 900 forget images), max_patches 10000, one thread")
    print(f"{'':>34} {'wall s':>8} {'cpu s':>8} {'peak growth MB':>15}")
    for r in rows:
        name = "unlearnkit (Gram + eigh, exact)" if r["which"] == "unlearnkit" else "official-style activation SVD"
        print(f"{name:>34} {r['seconds']:>8.1f} {r['cpu_seconds']:>8.1f} {r['peak_growth_mb']:>15.1f}")
    print(f"largest relative weight difference between the two (different row draws): {diff:.2e}")


def rte(cache_dir: str, seed: int = 0) -> None:
    import torch

    import unlearnkit
    from unlearnkit.pipeline import Experiment, build_config
    from unlearnkit.training import train

    torch.set_num_threads(1)
    exp = Experiment("shapes", cache_dir=cache_dir, progress=False, log=lambda *_: None)
    original = exp.original(seed).model
    split = exp.resolve("class:3", seed)
    ld = exp.data.loaders(split)

    def run_svd(**over: object) -> tuple[float, float]:
        cfg = build_config("svd", dataset="shapes", kind="class", seed=seed, overrides=dict(over))
        c0 = time.process_time()
        res = unlearnkit.unlearn(original, forget=ld["forget"], retain=ld["retain"], val=ld["val"], config=cfg,
                                 forget_classes=split.forget_classes, num_classes=exp.splits.num_classes)
        return res.seconds, time.process_time() - c0

    load0 = os.getloadavg()[0]
    svd_runs = [run_svd() for _ in range(3)]
    model = exp.models.new_model(seed)
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
    ap.add_argument("--part", choices=("memory", "rte", "resnet18", "all"), default="all")
    ap.add_argument("--cache-dir", default=".unlearnkit_cache", help="model cache of `unlearnkit run`")
    args = ap.parse_args()
    if args.part in ("memory", "all"):
        memory()
    if args.part in ("rte", "all"):
        rte(args.cache_dir)
    if args.part in ("resnet18", "all"):
        resnet18()


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--child":
        print(json.dumps(child(int(sys.argv[2]))))
    elif len(sys.argv) == 4 and sys.argv[1] == "--r18-child":
        print(json.dumps(r18_child(sys.argv[2], sys.argv[3])))
    else:
        main()
