"""Measure how hard ``shapes`` is for the default CNN and training recipe.

Prints, for each data seed:

* the original model's train and test accuracy (target: train ≈ 100%, test 85–95%);
* for a random 10% forget set (``random:0.1``, the CLI's request), the original model's accuracy on the forget set
  and that of a model retrained from scratch on the remaining 90%; their difference is the gap random-subset
  unlearning is measured by (target: at least 8 points).

Usage::

    python benchmarks/shapes_difficulty.py                    # default spec, model and recipe (from presets)
    python benchmarks/shapes_difficulty.py --spec shapes:2000 --seeds 0,1 --epochs 20

Everything runs on one CPU thread; the default run trains 2 models per seed.

Results with the defaults (shapes: 5000 train / 1000 val / 1000 test, data seed 0; model cnn; recipe epochs=30,
batch_size=128, SGD lr=0.05 momentum=0.9 nesterov, weight_decay=5e-4, cosine schedule, no augmentation), one run
per seed, November 2026, on the shared 2-core machine::

    seed  train acc  test acc  forget acc original  forget acc retrained  gap (points)
    0     100.0      88.0      100.0                83.8                  16.2
    1     100.0      88.5      100.0                86.0                  14.0
    2     100.0      87.9      100.0                88.2                  11.8
    mean  100.0      88.1      100.0                86.0                  14.0

Training one model took 105–181 s on that machine while it was loaded with other jobs (load average 8–16 on
2 cores); a calibration step benchmark puts an idle core at roughly 35–40 s per model.
"""

from __future__ import annotations

import argparse
import json
import time

import torch

from unlearnkit.data import load_dataset
from unlearnkit.models import build_model
from unlearnkit.presets import DEFAULT_MODEL, train_recipe
from unlearnkit.requests import ForgetRequest
from unlearnkit.training import TrainRecipe, evaluate_accuracy, train


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--spec", default="shapes")
    ap.add_argument("--model", default=DEFAULT_MODEL["shapes"])
    ap.add_argument("--data-seed", type=int, default=0, help="seed of the generated images and the split")
    ap.add_argument("--seeds", default="0", help="comma-separated training/request seeds")
    ap.add_argument("--forget", default="random:0.1")
    ap.add_argument("--recipe", default="{}", help="JSON overrides of the default training recipe")
    ap.add_argument("--model-kwargs", default="{}", help="JSON options of the model")
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    t0 = time.perf_counter()
    splits = load_dataset(args.spec, seed=args.data_seed)
    t_data = time.perf_counter() - t0
    recipe = TrainRecipe.from_dict({**train_recipe(args.spec, args.model).to_dict(), **json.loads(args.recipe)})
    mkw = json.loads(args.model_kwargs)
    print(f"dataset {args.spec} (data seed {args.data_seed}): train {len(splits.train)}, val {len(splits.val)}, "
          f"test {len(splits.test)}; generated/loaded in {t_data:.1f}s")
    print(f"model {args.model} {mkw}; recipe {recipe.to_dict()}")
    rows = []
    for seed in [int(s) for s in args.seeds.split(",")]:
        fs = ForgetRequest.parse(args.forget).resolve(splits.train, class_names=splits.class_names, seed=seed,
                                                      sub_names=splits.sub_names)
        forget, retain = fs.forget_set(splits.train), fs.retain_set(splits.train)
        res: dict[str, float] = {"seed": seed}
        for role, data in (("original", splits.train), ("retrain", retain)):
            torch.manual_seed(seed)
            model = build_model(args.model, splits.input_shape, splits.num_classes, **mkw)
            log = train(model, data, recipe=recipe, seed=seed)
            res[f"{role}_seconds"] = log.seconds
            res[f"{role}_train_acc"] = evaluate_accuracy(model, data)
            res[f"{role}_test_acc"] = evaluate_accuracy(model, splits.test)
            res[f"{role}_forget_acc"] = evaluate_accuracy(model, forget)
        res["gap"] = res["original_forget_acc"] - res["retrain_forget_acc"]
        rows.append(res)
        print(f"seed {seed}: original train {res['original_train_acc']:.1f}% test {res['original_test_acc']:.1f}% "
              f"forget {res['original_forget_acc']:.1f}% ({res['original_seconds']:.0f}s) | retrain test "
              f"{res['retrain_test_acc']:.1f}% forget {res['retrain_forget_acc']:.1f}% "
              f"({res['retrain_seconds']:.0f}s) | gap {res['gap']:.1f} points", flush=True)
    if len(rows) > 1:
        mean = {k: sum(r[k] for r in rows) / len(rows) for k in rows[0] if k != "seed"}
        print(f"mean over {len(rows)} seeds: original train {mean['original_train_acc']:.1f}% test "
              f"{mean['original_test_acc']:.1f}% | retrain forget {mean['retrain_forget_acc']:.1f}% | gap "
              f"{mean['gap']:.1f} points | train seconds {mean['original_seconds']:.0f}")


if __name__ == "__main__":
    main()
