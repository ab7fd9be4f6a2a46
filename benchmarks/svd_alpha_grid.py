"""The ``svd`` method's (alpha_r, alpha_f) grid on ``class:3``: forget-class vs remaining-class accuracy (issue 4).

For each dataset and seed this loads the cached original of ``unlearnkit run`` (same data split, model, recipe and
cache key, so it is the model the CLI unlearns), computes the layer SVDs once and evaluates the whole official grid
``alpha_r ∈ {10, 30, 100, 300, 1000} × alpha_f ∈ {1, 3, 10, 30, 100}`` (``analysis/tune_our.py``):

* on the **val** split (held out from training, never the test set): the numbers the search selects on;
* on the **test** split, for display only: nothing is selected on them.

The point the CLI's search picks (``--set svd.search=true``: default config, legacy early stop, val only) is
recomputed and marked. Writes ``OUT/svd_alpha_grid.json`` and the figure (default ``docs/img/svd_alpha_grid.png``).

Run: ``OMP_NUM_THREADS=1 .venv/bin/python benchmarks/svd_alpha_grid.py --cache-dir /tmp/s2_cache`` (trains the
originals into the cache if they are not there; digits ~10 s per seed, shapes ~1 min per seed on one core).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

REQUEST = "class:3"


def grid_for(dataset: str, seed: int, cache_dir: str) -> dict:
    import torch

    from unlearnkit import SvdConfig
    from unlearnkit.methods.base import UnlearnData
    from unlearnkit.methods.svd import svd_search
    from unlearnkit.pipeline import Experiment, build_config

    exp = Experiment(dataset, cache_dir=cache_dir, progress=False, log=lambda *_: None)
    original = exp.original(seed).model
    split = exp.resolve(REQUEST, seed)
    ld = exp.data.loaders(split)
    test = torch.utils.data.DataLoader(exp.splits.test, batch_size=128)

    def data(val):
        return UnlearnData(forget=ld["forget"], retain=ld["retain"], val=val, forget_classes=split.forget_classes,
                           num_classes=exp.splits.num_classes)

    # The CLI's config (presets + search=true), so the marked point is the one `unlearnkit run` picks.
    cli_cfg = build_config("svd", dataset=dataset, kind="class", seed=seed, overrides={"search": True})
    assert isinstance(cli_cfg, SvdConfig)
    full = SvdConfig(**{**cli_cfg.to_dict(), "search_early_stop": False})
    t0 = time.perf_counter()
    on_val = svd_search(original, data(ld["val"]), full)
    seconds = time.perf_counter() - t0
    on_test = svd_search(original, data(test), full)  # display only: same spaces (same seed), test accuracies
    picked = svd_search(original, data(ld["val"]), cli_cfg)
    return {
        "dataset": dataset, "seed": seed, "full_grid_seconds": seconds,
        "grid": [{"alpha_r": v.alpha_r, "alpha_f": v.alpha_f, "val_retain": v.retain_acc, "val_forget": v.forget_acc,
                  "val_score": v.score, "test_retain": t.retain_acc, "test_forget": t.forget_acc}
                 for v, t in zip(on_val.grid, on_test.grid)],
        "original": {"val_retain": on_val.original_retain_acc, "val_forget": on_val.original_forget_acc,
                     "test_retain": on_test.original_retain_acc, "test_forget": on_test.original_forget_acc},
        "picked": {"alpha_r": picked.config.alpha_r, "alpha_f": picked.config.alpha_f, "improved": picked.improved,
                   "points_tried": len(picked.grid)},
    }


def plot(rows: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    datasets = list(dict.fromkeys(r["dataset"] for r in rows))
    fig, axes = plt.subplots(len(datasets), 2, figsize=(12, 4.6 * len(datasets)), squeeze=False)
    cmap = plt.get_cmap("viridis")
    for j, ds in enumerate(datasets):
        runs = [r for r in rows if r["dataset"] == ds]
        seeds = [r["seed"] for r in runs]
        ars = sorted({g["alpha_r"] for g in runs[0]["grid"]})
        for i, part in enumerate(("val", "test")):
            ax = axes[j][i]
            for k, a_r in enumerate(ars):
                pts = sorted({g["alpha_f"] for g in runs[0]["grid"] if g["alpha_r"] == a_r})
                fx = [np.mean([100 * g[f"{part}_forget"] for r in runs for g in r["grid"]
                               if g["alpha_r"] == a_r and g["alpha_f"] == a_f]) for a_f in pts]
                ry = [np.mean([100 * g[f"{part}_retain"] for r in runs for g in r["grid"]
                               if g["alpha_r"] == a_r and g["alpha_f"] == a_f]) for a_f in pts]
                c = cmap(k / max(len(ars) - 1, 1))
                ax.plot(fx, ry, "-o", color=c, ms=4, label=f"α_r={a_r:g}")
                for a_f, x, y in zip(pts, fx, ry):
                    ax.annotate(f"{a_f:g}", (x, y), fontsize=6, color=c, xytext=(3, 2), textcoords="offset points")
            ox = np.mean([100 * r["original"][f"{part}_forget"] for r in runs])
            oy = np.mean([100 * r["original"][f"{part}_retain"] for r in runs])
            ax.plot([ox], [oy], "ks", ms=7, label="original")
            for r in runs:
                p = r["picked"]
                g = next(g for g in r["grid"] if g["alpha_r"] == p["alpha_r"] and g["alpha_f"] == p["alpha_f"]) \
                    if p["improved"] else None
                x = 100 * (g[f"{part}_forget"] if g else r["original"][f"{part}_forget"])
                y = 100 * (g[f"{part}_retain"] if g else r["original"][f"{part}_retain"])
                ax.plot([x], [y], "*", color="red", ms=11, mec="k", mew=0.5,
                        label="search pick (per seed)" if r is runs[0] else None)
            what = "val split (the search selects here)" if part == "val" else "test split (display only)"
            ax.set_title(f"{ds}, {REQUEST}, seeds {','.join(map(str, seeds))}: {what}", fontsize=9)
            ax.set_xlabel(f"forget-class accuracy on {part} (%)")
            ax.set_ylabel(f"remaining-class accuracy on {part} (%)")
            ax.set_xlim(-3, 103)
            ax.grid(alpha=0.3)
            if i == 0 and j == 0:
                ax.legend(fontsize=7, loc="lower left")
    fig.suptitle("svd α grid: lines = mean over seeds for one α_r, point labels = α_f, "
                 "red stars = the search's pick per seed (chosen on val)", fontsize=10)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)


def main() -> None:
    import torch

    torch.set_num_threads(1)
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--datasets", default="digits,shapes")
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--cache-dir", default=".unlearnkit_cache")
    ap.add_argument("--out", default="runs/svd_alpha_grid")
    ap.add_argument("--png", default="docs/img/svd_alpha_grid.png")
    args = ap.parse_args()
    rows = [grid_for(ds, int(s), args.cache_dir) for ds in args.datasets.split(",") for s in args.seeds.split(",")]
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "svd_alpha_grid.json").write_text(json.dumps(rows, indent=1))
    plot(rows, Path(args.png))
    print(f"{'dataset':>8} {'seed':>4} {'pick α_r':>8} {'α_f':>5} {'val fgt':>8} {'val ret':>8} "
          f"{'test fgt':>8} {'test ret':>8} {'orig test ret':>13}")
    for r in rows:
        p = r["picked"]
        g = next((g for g in r["grid"] if g["alpha_r"] == p["alpha_r"] and g["alpha_f"] == p["alpha_f"]),
                 None) if p["improved"] else None
        src = g or {k: r["original"][k] for k in ("val_forget", "val_retain", "test_forget", "test_retain")}
        print(f"{r['dataset']:>8} {r['seed']:>4} {p['alpha_r']:>8g} {p['alpha_f']:>5g} "
              f"{100 * src['val_forget']:>8.1f} {100 * src['val_retain']:>8.1f} {100 * src['test_forget']:>8.1f} "
              f"{100 * src['test_retain']:>8.1f} {100 * r['original']['test_retain']:>13.1f}")
    print(f"json: {out / 'svd_alpha_grid.json'}  figure: {args.png}")


if __name__ == "__main__":
    main()
