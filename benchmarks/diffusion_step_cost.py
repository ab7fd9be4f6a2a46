"""Per-iteration cost of the ``sfron`` method on the generation task against one plain diffusion training step.

Issue #17, acceptance 4 (goal <= 2.2x): an SFR-on iteration on DDPM (spec ``sfron_salun.md`` §2.1) is a forget step
(per-example ε-loss, adaptive weights, masked, clipped, Adam) followed by an unmasked remain step. This runs the
registered ``sfron`` method itself through :func:`unlearnkit.unlearn` (``task="generation"``, its generation
settings from ``config_for_task``) for ``--iters`` iterations and times each iteration from the ``on_step``
callback (CPU and wall time between consecutive calls), so the one-off mask pass is excluded; the mask pass is
timed separately as the time before the first iteration. The plain step is one training step (mean ε-loss,
clip 1, Adam) on a remain batch of the same size. Both use :class:`unlearnkit.models.unet.ConditionalUNet` on 16×16
digits (``--ch``), batch 128, lr 1e-4 as the spec. Medians over the timed iterations / repetitions, after one
warm-up. Run with ``OMP_NUM_THREADS=1``::

    OMP_NUM_THREADS=1 python benchmarks/diffusion_step_cost.py --iters 6 --reps 5

``rte`` at the method's default length is printed as an estimate: the reference training time given by
``--retrain-seconds`` (from the run's results.json, ``models.*.retrain_train_seconds``) over (mask pass + 150 ×
the median iteration).
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import torch
from torch.utils.data import DataLoader

import unlearnkit
from unlearnkit.data.digits16 import load_digits_for_diffusion
from unlearnkit.methods.base import config_for_task
from unlearnkit.models.unet import ConditionalUNet
from unlearnkit.tasks.diffusion import DiffusionTask


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--iters", type=int, default=6)
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--ch", type=int, default=32)
    ap.add_argument("--forget-class", type=int, default=3)
    ap.add_argument("--retrain-seconds", type=float, default=None)
    args = ap.parse_args()
    torch.manual_seed(0)
    train = load_digits_for_diffusion(0)["train"]
    fm = train.y == args.forget_class
    forget = train.subset(torch.nonzero(fm).flatten())
    retain = train.subset(torch.nonzero(~fm).flatten())
    model = ConditionalUNet(1, 10, ch=args.ch)
    task = DiffusionTask()

    # --- the method, timed per iteration -----------------------------------------------------------------------
    stamps: list[tuple[float, float]] = []
    t_start = (time.process_time(), time.perf_counter())
    cfg = config_for_task("sfron", "generation", n_iters=args.iters, batch_size=args.batch)
    unlearnkit.unlearn(model, forget=DataLoader(forget, batch_size=128), retain=DataLoader(retain, batch_size=128),
                       config=cfg, num_classes=10, task=task,
                       on_step=lambda i, m: stamps.append((time.process_time(), time.perf_counter())))
    mask_cpu, mask_wall = stamps[0][0] - t_start[0], stamps[0][1] - t_start[1]  # includes iteration 1 and checks
    it_cpu = statistics.median(b[0] - a[0] for a, b in zip(stamps[1:], stamps[2:]))
    it_wall = statistics.median(b[1] - a[1] for a, b in zip(stamps[1:], stamps[2:]))

    # --- the plain training step on a batch of the same size ----------------------------------------------------
    rx, ry = retain.x[: args.batch], retain.y[: args.batch]
    opt = torch.optim.Adam(model.parameters(), lr=1e-4, betas=(0.9, 0.999), eps=1e-8)
    model.train()

    def plain() -> None:
        loss = task.loss(model, rx, ry)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()

    plain()
    cpu, wall = [], []
    for _ in range(args.reps):
        c0, w0 = time.process_time(), time.perf_counter()
        plain()
        cpu.append(time.process_time() - c0)
        wall.append(time.perf_counter() - w0)
    p_cpu, p_wall = statistics.median(cpu), statistics.median(wall)
    out = {"batch": args.batch, "forget_batch": min(args.batch, len(forget)), "ch": args.ch,
           "threads": torch.get_num_threads(), "iters_timed": len(stamps) - 2,
           "plain_step": {"cpu_s": round(p_cpu, 4), "wall_s": round(p_wall, 4)},
           "sfron_iteration": {"cpu_s": round(it_cpu, 4), "wall_s": round(it_wall, 4)},
           "mask_pass_and_first_iteration": {"cpu_s": round(mask_cpu, 3), "wall_s": round(mask_wall, 3)},
           "ratio_cpu": round(it_cpu / p_cpu, 3), "ratio_wall": round(it_wall / p_wall, 3)}
    if args.retrain_seconds:
        out["rte_estimate_150_iterations"] = round(args.retrain_seconds / (mask_wall + 149 * it_wall), 2)
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
