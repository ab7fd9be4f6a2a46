"""Every default the CLI uses, in one place: model and training recipe per dataset, method settings per scenario.

Where a preset below is a rule of the data sizes, :mod:`unlearnkit.defaults` states that rule for every dataset and
reproduces the preset's values on digits and shapes (tests/test_defaults.py checks it; provenance then says "rule");
the presets stay for callers that build configs without the sizes. Method presets start from each config's own
defaults (the paper's or official code's, see each method's docstring) and override only what the scale of these
datasets requires; every override names its source.
Lookup order for a method on (dataset, request kind): ``(method, dataset, kind)``, ``(method, dataset, "*")``,
``(method, "*", kind)``, ``(method, "*", "*")``; later entries are more general, and the first match wins per field
(more specific entries override more general ones).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .training import TrainRecipe

__all__ = ["DEFAULT_MODEL", "METHOD_PRESETS", "method_overrides", "train_recipe"]

# Default model per dataset family (the part of the spec before ':').
DEFAULT_MODEL: dict[str, str] = {"digits": "cnn", "shapes": "cnn", "textsynth": "transformer",
                                 "textsynth-multilabel": "transformer", "textcsv": "transformer",
                                 "jsonl": "transformer"}

# Training recipe per (dataset family, model); "*" matches any. Chosen so the original fits its training set.
_RECIPES: dict[tuple[str, str], dict[str, Any]] = {
    ("digits", "*"): dict(epochs=30, batch_size=64, optimizer="sgd", lr=0.05),
    ("shapes", "*"): dict(epochs=30, batch_size=128, optimizer="sgd", lr=0.05),
    # transformer on token ids: Adam without weight decay fits the training texts (benchmarks/textsynth_difficulty.py).
    ("*", "transformer"): dict(epochs=25, batch_size=64, optimizer="adam", lr=2e-3, weight_decay=0.0),
    ("*", "mlp"): dict(epochs=40, batch_size=64, optimizer="adam", lr=1e-3, weight_decay=0.0),
    ("*", "vit"): dict(epochs=40, batch_size=64, optimizer="adam", lr=1e-3, weight_decay=0.05),
    # hf:PATH with pretrained weights (a Hugging Face sequence classifier): the usual fine-tuning step (BERT, Devlin
    # et al. 2019: Adam, 2e-5..5e-5, 2-4 epochs, batch 16/32); not tuned here.
    ("*", "hf"): dict(epochs=4, batch_size=32, optimizer="adam", lr=5e-5, weight_decay=0.0),
    # hf:PATH with a config only (random weights): trained from scratch like the transformer, at half its step
    # (BERT's post-norm blocks); checked on one 600-row file only (README "Text").
    ("*", "hf-scratch"): dict(epochs=25, batch_size=64, optimizer="adam", lr=1e-3, weight_decay=0.0),
    ("*", "*"): dict(epochs=30, batch_size=128, optimizer="sgd", lr=0.05),
}


def _family(dataset: str) -> str:
    return dataset.split(":", 1)[0]


def train_recipe(dataset: str, model: str) -> TrainRecipe:
    fam = _family(dataset)
    model, _, arg = model.partition(":")  # hf:DIR -> hf, or hf-scratch for a config without weights
    if model == "hf" and not (Path(arg).expanduser().is_dir() and any(Path(arg).expanduser().glob("*.safetensors"))):
        model = "hf-scratch"
    merged: dict[str, Any] = {}
    for key in ((fam, model), (fam, "*"), ("*", model), ("*", "*")):
        for k, v in _RECIPES.get(key, {}).items():
            merged.setdefault(k, v)
    return TrainRecipe(**merged)


# (method, dataset family or "*", request kind or "*") -> config overrides, with the reason.
METHOD_PRESETS: dict[tuple[str, str, str], dict[str, Any]] = {
    # unsir: the official defaults are for ResNet18 on CIFAR-10 (5,000 images per class, noise batch 256, retain
    # subset 1,000 per class, Adam-trained model). Here the noise batch is scaled with the class size (256 x
    # 126/5000 ~ 8 for digits, 256 x 500/5000 ~ 26 -> 32 for shapes) so that noise does not outnumber the retain
    # data; on shapes the retain subset is 250 of each class's 500 images (official: 1,000 of 5,000; all of
    # digits' ~126 are used); the mini-batch is 64 (more steps on these small sets); and the impair/repair
    # learning rates are lowered 4-5x, because our originals are SGD-trained and the official values wrecked them
    # (digits: 17-80% remaining-class accuracy at the official settings). Measured in README "Method notes"
    # (digits and shapes, class:3, seeds 0-2). impair_lr 0.01 was chosen on seed 0, class:3, by forget-set accuracy
    # and kept-class accuracy on the *val* split (no test data). digits: 0.0025 left 37.8% of the forget set
    # recognised; 0.005 forgot all at 98.8% kept-class val accuracy, 0.01 at 100.0% (original 99.6; the official
    # settings: 87.6). shapes: 0.005 left 7.9% recognised, 0.01 0.6% at -1.1 points; retain_per_class=100 (the
    # official 20%) cost 17+ points, 200 cost 2.8.
    ("unsir", "digits", "*"): dict(noise_batch=8, batch_size=64, impair_lr=0.01, repair_lr=0.002),
    ("unsir", "shapes", "*"): dict(noise_batch=32, retain_per_class=250, batch_size=64, impair_lr=0.01,
                                   repair_lr=0.002),
    # svd: the official alphas (100, 3 for CIFAR-10) are themselves the pick of a per-dataset grid search (spec
    # §1 step 6). Here each pair is the pick of that search (official grid {10..1000} x {1..100}, score
    # retain_acc x (1 - forget_acc)) on the val split of seed 0, class:3 (`benchmarks/svd_alpha_grid.py`);
    # (100, 3) left 11-25% of digits' test class-3 images recognised. Seeds 0-2 in README "Method notes".
    # Multi-class requests use the same pair: each forgotten class gets its own forget space (SvdConfig.multi_class),
    # so the one-class alpha_f applies per class (digits class:1,3 and class:1,3,7: 0% forget accuracy, seeds 0-2).
    # search=False: these measured pairs replace the data rule (unlearnkit.defaults) that runs the search on val.
    ("svd", "digits", "*"): dict(alpha_r=30.0, alpha_f=3.0, search=False),
    ("svd", "shapes", "*"): dict(alpha_r=10.0, alpha_f=3.0, search=False),
    # pgu: at the official plain-SGD step (lr 0.05 -> 0.01) nothing moves on these originals, which the CLI's recipe
    # fits to ~100% train accuracy (forget loss stays at 2.98 ~ -log(0.05), forget accuracy 100% for 99 epochs on
    # digits class:3 and shapes random:0.1). step="normalized" keeps the projected direction (so the update stays
    # orthogonal to the kept subspaces) but takes steps of length lr; lr 0.1 -> 0.02 (the official 5:1 decay) was
    # chosen on seed 0 (val-based stopping rules; digits class:3, shapes class:3 and random:0.1; 0.05 and 0.2
    # gave the same end points in 80 and 13 epochs). Deviation documented in pgu_unlearn; seeds 0-2 in README.
    # Not for digits random requests: there the original already matches the retrained model (forget acc ~99%
    # either way), forget and val accuracy fall together, and the val guard stopped 5 points down (seed 0: avg_gap
    # 3.41 vs 1.26 unchanged), so the official step, which leaves the model as it is, is kept.
    # The published update without any preset is the separate method `pgu_official` (its own bench rows).
    ("pgu", "digits", "class"): dict(step="normalized", lr_start=0.1, lr_end=0.02),
    ("pgu", "shapes", "*"): dict(step="normalized", lr_start=0.1, lr_end=0.02),
    # sfron, class requests: the official code has random-subset settings only and the spec says the class-wise
    # n_iters/alpha/gamma/lambda are unknown ("tune them"). Chosen on seed 0's *val* split (accuracy on the
    # held-out images of the forgotten / kept classes), class:3; seeds 0-2 in README "Method notes".
    # digits: the official length (4.27 remain epochs) is only 38 iterations (8 forget steps) on 1,131 remain
    # images and left 21% of held-out class-3 images recognised; twice the length (75 iterations) left 0%.
    ("sfron", "digits", "class"): dict(retain_epochs=2 * 1500 * 128 / 45_000),
    # shapes: at the official forget-step clip (norm 7) the ascent on a whole class cost 8.5 points of held-out
    # kept-class accuracy (87.0 -> 78.5); clip 2 cost 1.7, clip 1 cost 0.3 and still forgot the class (0%).
    ("sfron", "shapes", "class"): dict(max_norm=1.0),
    # shapes, random subsets: the official batch 128 gives 150 iterations (30 forget steps) on 4,500 remain images
    # against 1,500 on CIFAR-10, and the run changed nothing (forget accuracy 100%, as the original). The length is
    # set by cost: the paper's run costs 1/26 of its 200-epoch retrain (rte 26); against our 30-epoch retrain the
    # official 4.27 remain passes (plus the mask pass) give rte ~3, and rte >= 10 leaves about two passes in all,
    # one of which the mask takes. So 0.5 remain passes at batch 16 (141 iterations, 28 forget steps), with the
    # mask's squared gradients still taken on the official batch of 128. Chosen on seeds 0-2, random:0.1, by the
    # mean absolute gap to the retrained reference in forget, retain and *val* accuracy (no test data):
    # 3.63 / 3.63 / 3.26 against 4.37 / 5.47 / 3.23 for the previous preset (4.27 passes at batch 32, ~4x the
    # cost) and 5.9 / 6.1 / 4.0 for the original; 0.35 passes: 3.78 / 4.25 (seeds 1-2), 0.75: 2.53 / 3.50 / 3.02
    # at ~1.4x the cost of 0.5 (rte < 10). Batch 8 overshoots (gap 13.3). Reported on seeds 0-2.
    ("sfron", "shapes", "random"): dict(retain_epochs=0.5, batch_size=16, mask_batch_size=128),
    # The fine-tuning baselines (finetune, gradient_ascent, neggrad_plus, random_label, amnesiac, cf_k, eu_k, scrub,
    # bad_teacher) have no presets: their recipes (the seed papers' settings) are in epochs, which scale with the
    # data by themselves; ssd's alpha/lambda are the official ones everywhere.
    # fisher, shapes: the exact Fisher (every class, official) takes num_classes per-example gradient passes over
    # D_r: 4,500 retain images x 10 classes at 0.31 s per 64 examples and class (measured, one thread) is ~220 s
    # per request, 5x the ~40 s 30-epoch retrain it should undercut. 'sampled' (one class per example drawn from
    # the model's prediction, an unbiased estimate of the same Fisher) costs one pass (~22 s). Chosen by cost
    # alone, not by any metric; digits (~1,100-1,600 retain 8x8 images, ~11 s exact) keeps the official setting.
    ("fisher", "shapes", "*"): dict(classes="sampled"),
}


def method_overrides(method: str, dataset: str, kind: str) -> dict[str, Any]:
    fam = _family(dataset)
    merged: dict[str, Any] = {}
    for key in ((method, fam, kind), (method, fam, "*"), (method, "*", kind), (method, "*", "*")):
        for k, v in METHOD_PRESETS.get(key, {}).items():
            merged.setdefault(k, v)
    return merged
