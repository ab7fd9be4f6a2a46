"""Measure how hard ``textsynth`` is for the ``transformer`` model and a given training recipe.

Prints, per training seed: the original model's train and test accuracy, and for a random forget set (default 10%)
the original's and a retrained model's accuracy on the forget set; their difference is the gap random-subset
unlearning is measured by (target: at least 8 points). One CPU thread; two models trained per seed.

Usage::

    python benchmarks/textsynth_difficulty.py --seeds 0

Result with the defaults (textsynth 2000/400/400, data seed 0, transformer dim 32, Adam 2e-3 cosine 25 epochs,
batch 64), seed 0, on the shared 2-core machine under load (Dec 2026)::

    {"seed": 0, "original_s": 52.0, "original_train": 99.9, "original_test": 84.8, "original_forget": 99.5,
     "retrained_s": 28.9, "retrained_train": 99.9, "retrained_test": 83.8, "retrained_forget": 78.0, "gap": 21.5}

The forget set here is a seeded random permutation's first 10% (not the CLI's request resolver).
"""

from __future__ import annotations

import argparse
import json
import time

import torch

from unlearnkit.data import load_dataset
from unlearnkit.models import build_model
from unlearnkit.training import TrainRecipe, evaluate_accuracy, train


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--spec", default="textsynth")
    ap.add_argument("--data-seed", type=int, default=0)
    ap.add_argument("--seeds", default="0")
    ap.add_argument("--fraction", type=float, default=0.1)
    ap.add_argument("--recipe", default='{"epochs": 25, "batch_size": 64, "optimizer": "adam", "lr": 2e-3, '
                                        '"weight_decay": 0.0}')
    ap.add_argument("--model-kwargs", default="{}")
    args = ap.parse_args()
    torch.set_num_threads(1)
    splits = load_dataset(args.spec, seed=args.data_seed)
    recipe = TrainRecipe(**json.loads(args.recipe))
    kw = {"vocab_size": splits.manifest["vocab_size"], **json.loads(args.model_kwargs)}
    print(f"{args.spec}: {len(splits.train)}/{len(splits.val)}/{len(splits.test)}, vocab {kw['vocab_size']}, "
          f"recipe {recipe}")
    for seed in (int(s) for s in args.seeds.split(",")):
        n = len(splits.train)
        perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
        forget_idx, retain_idx = perm[: int(args.fraction * n)], perm[int(args.fraction * n):]
        forget, retain = splits.train.subset(forget_idx), splits.train.subset(retain_idx)
        row = {"seed": seed}
        for name, data in (("original", splits.train), ("retrained", retain)):
            torch.manual_seed(seed)
            model = build_model("transformer", splits.input_shape, splits.num_classes, **kw)
            t0 = time.perf_counter()
            train(model, data, recipe=recipe, seed=seed)
            row[f"{name}_s"] = round(time.perf_counter() - t0, 1)
            row[f"{name}_train"] = round(evaluate_accuracy(model, data), 1)
            row[f"{name}_test"] = round(evaluate_accuracy(model, splits.test), 1)
            row[f"{name}_forget"] = round(evaluate_accuracy(model, forget), 1)
        row["gap"] = round(row["original_forget"] - row["retrained_forget"], 1)
        print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
