"""Per-iteration cost of one SFR-on-style diffusion unlearning iteration against one plain diffusion training step.

Issue #17, acceptance 4 (goal <= 2.2x): an SFR-on iteration on DDPM (spec ``sfron_salun.md`` §2.1) is a forget step
(per-example ε-loss, adaptive weights λ = 0.5, loss −α·Σ w_i ℓ_i, gradients multiplied by the saliency mask, norm
clipped to 1, Adam) followed by an unmasked remain step (mean ε-loss, clip 1, Adam). The plain step is one training
step (mean ε-loss, clip 1, Adam) on a batch of the same size. Both use the default digits UNet
(:class:`unlearnkit.models.unet.ConditionalUNet`, 16×16) and batch 128, lr 1e-4 as the spec. The mask is a random
50% of the elements: its content does not change the cost. This does not call the ``sfron`` method (which is not yet
wired to the diffusion task); it reproduces its iteration's operations to time them.

Reports CPU seconds (``time.process_time``, robust to a loaded machine) and wall seconds per step, medians over
``--reps`` timed repetitions after one warm-up. Run with ``OMP_NUM_THREADS=1``::

    OMP_NUM_THREADS=1 python benchmarks/diffusion_step_cost.py --reps 5
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import torch

from unlearnkit.data.digits16 import load_digits_for_diffusion
from unlearnkit.diffusion import DiffusionTask
from unlearnkit.methods.sfron import adaptive_forget_weights
from unlearnkit.models.unet import ConditionalUNet


def _timed(fn, reps: int) -> tuple[float, float]:
    fn()  # warm-up
    cpu, wall = [], []
    for _ in range(reps):
        c0, w0 = time.process_time(), time.perf_counter()
        fn()
        cpu.append(time.process_time() - c0)
        wall.append(time.perf_counter() - w0)
    return statistics.median(cpu), statistics.median(wall)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--forget-class", type=int, default=3)
    args = ap.parse_args()
    torch.manual_seed(0)
    train = load_digits_for_diffusion(0)["train"]
    fx = train.x[train.y == args.forget_class][: args.batch]
    rx = train.x[train.y != args.forget_class][: args.batch]
    fy = torch.full((len(fx),), args.forget_class)
    ry = train.y[train.y != args.forget_class][: args.batch]
    model = ConditionalUNet(1, 10)
    task = DiffusionTask()
    opt = torch.optim.Adam(model.parameters(), lr=1e-4, betas=(0.9, 0.999), eps=1e-8)
    mask = {n: (torch.rand_like(p) < 0.5).float() for n, p in model.named_parameters()}
    params = dict(model.named_parameters())
    model.train()

    def step(loss: torch.Tensor, masked: bool) -> None:
        opt.zero_grad(set_to_none=True)
        loss.backward()
        if masked:
            for n, p in params.items():
                if p.grad is not None:
                    p.grad.mul_(mask[n])
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()

    def plain() -> None:
        step(task.loss(model, rx, ry), masked=False)

    def sfron_iteration() -> None:
        losses = task.loss(model, fx, fy, reduction="none")
        w = adaptive_forget_weights(losses.detach(), 0.5, eps=1e-8)
        step(-10.0 * (w * losses).sum(), masked=True)
        step(task.loss(model, rx, ry), masked=False)

    p_cpu, p_wall = _timed(plain, args.reps)
    s_cpu, s_wall = _timed(sfron_iteration, args.reps)
    print(json.dumps({"batch": args.batch, "forget_batch": len(fx), "reps": args.reps,
                      "threads": torch.get_num_threads(),
                      "plain_step": {"cpu_s": round(p_cpu, 4), "wall_s": round(p_wall, 4)},
                      "sfron_iteration": {"cpu_s": round(s_cpu, 4), "wall_s": round(s_wall, 4)},
                      "ratio_cpu": round(s_cpu / p_cpu, 3), "ratio_wall": round(s_wall / p_wall, 3)}, indent=2))


if __name__ == "__main__":
    main()
