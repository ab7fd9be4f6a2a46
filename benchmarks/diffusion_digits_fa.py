"""Train the original class-conditional UNet on 16x16 digits, then measure its FA on a class (issue #17, item 6).

Trains :class:`unlearnkit.models.unet.ConditionalUNet` with :data:`unlearnkit.diffusion.DIGITS_RECIPE` (timed: CPU and
wall seconds), trains (or loads from ``--cache``) the judge ``cnn`` on the real training split, reports the judge's
real test accuracy, then :func:`unlearnkit.evaluation.generation.generation_metrics` of the original for
``--forget-class`` (FA, fa_entropy, fa_prob, fa_kept, judge-FD against the real *test* images of the remaining
classes) and, as a floor for judge-FD, the judge-FD of the real training vs real test remaining-class images.
``--grid PATH`` saves a PNG with 8 samples per class. Run with ``OMP_NUM_THREADS=1``::

    OMP_NUM_THREADS=1 python benchmarks/diffusion_digits_fa.py --grid /tmp/grid.png
"""

from __future__ import annotations

import argparse
import json
import time

import torch

from unlearnkit.checkpoints import ModelCache
from unlearnkit.data.digits16 import load_digits_for_diffusion
from unlearnkit.diffusion import DIGITS_RECIPE, sample, train_diffusion
from unlearnkit.evaluation.generation import (
    frechet_distance,
    generation_metrics,
    judge_features,
    judge_probs,
    train_judge,
)
from unlearnkit.models.unet import ConditionalUNet


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--train-steps", type=int, default=DIGITS_RECIPE["steps"])
    ap.add_argument("--forget-class", type=int, default=3)
    ap.add_argument("--n-forget", type=int, default=200)
    ap.add_argument("--n-per-kept", type=int, default=20)
    ap.add_argument("--sampler-steps", type=int, default=50, help="DDIM steps (eta 0, guidance 2)")
    ap.add_argument("--cache", default="/tmp/unlearnkit_gen_cache")
    ap.add_argument("--save", default=None, help="save the trained UNet's state dict (safetensors) here")
    ap.add_argument("--grid", default=None, help="PNG path for an 8-per-class sample grid")
    args = ap.parse_args()
    d = load_digits_for_diffusion(0)
    torch.manual_seed(0)
    model = ConditionalUNet(1, 10)
    log = train_diffusion(model, d["train"], steps=args.train_steps, batch_size=DIGITS_RECIPE["batch_size"],
                          lr=DIGITS_RECIPE["lr"], seed=0)
    if args.save:
        from safetensors.torch import save_file
        save_file({k: v.contiguous() for k, v in model.state_dict().items()}, args.save)
    judge = train_judge(d["train"], cache=ModelCache(args.cache))
    acc = float((judge_probs(judge, d["test"].x).argmax(1) == d["test"].y).double().mean() * 100)
    rest = d["test"].subset(torch.nonzero(d["test"].y != args.forget_class).flatten())
    c0, w0 = time.process_time(), time.perf_counter()
    res = generation_metrics(model, judge, rest, forget_class=args.forget_class, num_classes=10,
                             n_forget=args.n_forget, n_per_kept=args.n_per_kept, seed=0, method="ddim",
                             steps=args.sampler_steps, eta=0.0)
    res.update(sample_cpu_s=time.process_time() - c0, sample_wall_s=time.perf_counter() - w0)
    real_train = d["train"].x[d["train"].y != args.forget_class]
    res["judge_fd_real_train_vs_test"] = frechet_distance(judge_features(judge, real_train),
                                                          judge_features(judge, rest.x))
    print(json.dumps({"train_steps": args.train_steps, "train_cpu_s": log.cpu_seconds, "train_wall_s": log.seconds,
                      "loss_first50": sum(log.losses[:50]) / max(1, len(log.losses[:50])),
                      "loss_last50": sum(log.losses[-50:]) / max(1, len(log.losses[-50:])),
                      "judge_test_acc": acc, "n_forget": args.n_forget, "n_per_kept": args.n_per_kept,
                      **res}, indent=2))
    if args.grid:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        x = sample(model, [c for c in range(10) for _ in range(8)], method="ddim", steps=args.sampler_steps,
                   eta=0.0, seed=5)
        fig, ax = plt.subplots(10, 8, figsize=(4, 5))
        for i in range(80):
            ax[i // 8, i % 8].imshow(x[i, 0].numpy(), cmap="gray", vmin=-1, vmax=1)
            ax[i // 8, i % 8].axis("off")
        fig.savefig(args.grid, dpi=80)


if __name__ == "__main__":
    main()
