"""Per-step cost of ``pgu``'s gradient projection on ``resnet18`` (issue 6, criterion 4).

One ``pgu`` step is forward + forget loss + backward + a manual SGD update of every Conv2d/Linear weight. With
projection the update uses ``G − G·U_k·U_kᵀ`` (in whichever factored form is thinner, exactly as the method does);
without, it uses ``G``. The projectors come from ``LayerStats`` recorded on random 32×32 inputs with the default
``eps=0.95`` (σ energy rule). Steps with and without projection are interleaved and the median of ``--reps`` steps
is reported, with the projection alone timed separately, so background load affects both sides alike.

The CIFAR-style ResNet-18 is used at reduced width by default (``--widths 8,16``; the standard net is width 64,
about 16× the FLOPs of width 16), because this machine has two shared CPU cores; pass ``--widths 64`` on a
bigger machine. Times are process CPU time per step on one thread.

Run: ``.venv/bin/python benchmarks/pgu_overhead.py [--widths 8,16] [--batch 32] [--reps 8]``.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
from torch.utils.data import TensorDataset

from unlearnkit.methods.pgu import LayerStats, _projector, pgu_forget_loss
from unlearnkit.models import build_model
from unlearnkit.stats import projectable_layers


def step(model: torch.nn.Module, layers, projectors, x, y, lr: float = 1e-3) -> tuple[float, float]:  # noqa: ANN001
    """One pgu step; returns (total CPU seconds, CPU seconds spent in the projection)."""
    t0 = time.process_time()
    for p in model.parameters():
        p.grad = None
    pgu_forget_loss(model(x), y).backward()
    t_proj = 0.0
    with torch.no_grad():
        for la in layers:
            g = la.weight.grad.flatten(1)
            if projectors is not None:
                t1 = time.process_time()
                g = projectors[la.name](g)
                t_proj += time.process_time() - t1
            la.weight.add_(g.view_as(la.weight), alpha=-lr)
    return time.process_time() - t0, t_proj


def run(width: int, batch: int, reps: int) -> dict:
    torch.manual_seed(0)
    model = build_model("resnet18", (3, 32, 32), 10, width=width)
    model.train()
    layers = projectable_layers(model)
    stats = LayerStats.from_loader(model.eval(), TensorDataset(torch.randn(256, 3, 32, 32)), batch_size=64)
    t0 = time.process_time()
    projectors = {la.name: _projector(stats.grams[la.name], 0.95, "sigma", False, torch.device("cpu"))
                  for la in layers}
    build = time.process_time() - t0
    model.train()
    for m in model.modules():  # pgu freezes BatchNorm statistics
        if isinstance(m, torch.nn.BatchNorm2d):
            m.eval()
    x, y = torch.randn(batch, 3, 32, 32), torch.randint(0, 10, (batch,))
    plain, proj, proj_only = [], [], []
    for i in range(reps + 2):
        a, _ = step(model, layers, None, x, y)
        b, p = step(model, layers, projectors, x, y)
        if i >= 2:  # two warm-up rounds
            plain.append(a)
            proj.append(b)
            proj_only.append(p)
    kept = sum(p.kept for p in projectors.values()) / sum(p.dim for p in projectors.values())
    return {"width": width, "params": sum(p.numel() for p in model.parameters()), "plain": statistics.median(plain),
            "proj": statistics.median(proj), "proj_only": statistics.median(proj_only), "build": build,
            "kept": kept, "max_d": max(la.dim for la in layers)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--widths", default="8,16")
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--reps", type=int, default=8)
    args = ap.parse_args()
    torch.set_num_threads(1)
    rows = [run(int(w), args.batch, args.reps) for w in args.widths.split(",")]
    print(f"resnet18 on 3x32x32, batch {args.batch}, one thread, median CPU ms per step over {args.reps} steps")
    print(f"{'width':>5} {'params':>9} {'max d':>6} {'kept dims':>9} {'step w/o':>9} {'step with':>10} "
          f"{'projection':>11} {'overhead':>9} {'build P (once)':>15}")
    for r in rows:
        print(f"{r['width']:>5} {r['params']:>9,} {r['max_d']:>6} {100 * r['kept']:>8.1f}% {1e3 * r['plain']:>9.1f} "
              f"{1e3 * r['proj']:>10.1f} {1e3 * r['proj_only']:>11.1f} "
              f"{100 * r['proj_only'] / r['plain']:>8.1f}% {1e3 * r['build']:>13.0f}ms")


if __name__ == "__main__":
    main()
