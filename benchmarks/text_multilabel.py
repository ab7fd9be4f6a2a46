"""∇τ's text preset against the NLP notebook's fine-tune baseline on ``textsynth-multilabel`` (issue 18, acceptance 3).

For each seed: train the original ``transformer`` on the multi-label training set (task ``multilabel``: BCE with
logits summed over labels), retrain a reference without a random forget set (default 15%), then unlearn with

* ``gradtau``: defaults (text preset: α₀ = 0.5, E = ⌊n_r/(2n_f)⌋, AdamW 3e-4, train mode, one-sided hinge), and
  ``hinge="symmetric"`` (the notebook's relu(δ²));
* ``finetune (notebook)``: the same loop with α₀ = 0 and 2E epochs, as the ∇τ notebook runs its baseline.

Reports forget / retain / test accuracy (argmax of logits == argmax of the multi-hot target), the loss-attack AUC
(ROC AUC of the BCE-summed loss, forget vs test; 0.5 is ideal) and ``avg_gap``: the mean absolute difference to the
retrained model over forget, retain and test accuracy and the AUC (×100). One CPU thread.

Usage::

    python benchmarks/text_multilabel.py --seeds 0
"""

from __future__ import annotations

import argparse
import json

import numpy as np
import torch
from sklearn.metrics import roc_auc_score
from torch.utils.data import DataLoader

import unlearnkit
from unlearnkit.data import load_dataset
from unlearnkit.methods.gradtau import resolve_gradtau
from unlearnkit.models import build_model
from unlearnkit.presets import train_recipe
from unlearnkit.tasks import get_task
from unlearnkit.training import predict_logits, train


def metrics(model, task, forget, retain, test) -> dict:
    out = {}
    sig = {}
    for name, ds in (("forget", forget), ("retain", retain), ("test", test)):
        logits = predict_logits(model, ds).numpy()
        y = ds.y.numpy()
        out[f"{name}_acc"] = 100 * float(task.example_correct(logits, y).mean())
        sig[name] = task.example_losses(logits, y)
    lab = np.r_[np.ones(len(sig["forget"])), np.zeros(len(sig["test"]))]
    out["loss_auc"] = float(roc_auc_score(lab, np.r_[sig["forget"], sig["test"]]))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--spec", default="textsynth-multilabel")
    ap.add_argument("--seeds", default="0")
    ap.add_argument("--fraction", type=float, default=0.15)
    args = ap.parse_args()
    torch.set_num_threads(1)
    s = load_dataset(args.spec, seed=0)
    task = get_task("multilabel")
    recipe = train_recipe(args.spec, "transformer")
    kw = {"vocab_size": s.manifest["vocab_size"]}
    for seed in (int(v) for v in args.seeds.split(",")):
        n = len(s.train)
        perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
        f_idx, r_idx = perm[: int(args.fraction * n)].sort().values, perm[int(args.fraction * n):].sort().values
        forget, retain = s.train.subset(f_idx), s.train.subset(r_idx)
        models = {}
        for name, data in (("original", s.train), ("retrain", retain)):
            torch.manual_seed(seed)
            m = build_model("transformer", s.input_shape, s.num_classes, **kw)
            train(m, data, recipe=recipe, seed=seed, task=task)
            models[name] = m.eval()
        plan = resolve_gradtau(unlearnkit.GradTauConfig(), len(forget), len(retain), text=True)
        configs = {"gradtau": unlearnkit.GradTauConfig(seed=seed),
                   "gradtau (symmetric)": unlearnkit.GradTauConfig(seed=seed, hinge="symmetric"),
                   "finetune (notebook)": unlearnkit.GradTauConfig(seed=seed, alpha0=0.0, epochs=2 * plan.epochs)}
        ld = {"forget": DataLoader(forget, batch_size=128), "retain": DataLoader(retain, batch_size=128),
              "val": DataLoader(s.val, batch_size=128)}
        rows = {k: metrics(m, task, forget, retain, s.test) for k, m in models.items()}
        for name, cfg in configs.items():
            res = unlearnkit.unlearn(models["original"], **ld, config=cfg, task=task)
            rows[name] = {**metrics(res.model, task, forget, retain, s.test), "seconds": round(res.seconds, 1)}
        ref = rows["retrain"]
        for name, r in rows.items():
            r["avg_gap"] = float(np.mean([abs(r[k] - ref[k]) for k in ("forget_acc", "retain_acc", "test_acc")]
                                         + [100 * abs(r["loss_auc"] - ref["loss_auc"])]))
            print(json.dumps({"seed": seed, "model": name, "E": plan.epochs,
                              **{k: round(v, 3) for k, v in r.items()}}), flush=True)


if __name__ == "__main__":
    main()
