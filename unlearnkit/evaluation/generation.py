"""Evaluation of class forgetting in a conditional generator (spec ``sfron_salun.md`` §2.3, scaled to this toolkit).

* A **judge** classifier (the toolkit's ``cnn``) trained on the real training split of the same data; it plays the
  role of SFR-on's fine-tuned ResNet-34. :func:`train_judge` caches it by content with
  :class:`unlearnkit.checkpoints.ModelCache` when given a cache.
* Metrics as pure functions of the judge's probabilities / features:
  ``fa`` (forgetting accuracy, %: generated forgotten-class images the judge calls the forgotten class),
  ``fa_entropy`` (mean entropy of those predictions, nats), ``fa_prob`` (mean probability of the forgotten class),
  ``fa_kept`` (judge accuracy, %, on generated remaining-class images w.r.t. the class they were asked for) and
  ``judge_fd`` (Fréchet distance between Gaussian fits of the judge's penultimate features of generated and real
  remaining-class images). judge-FD uses our small judge's features instead of Inception-v3 (whose weights cannot
  be downloaded here), so it is **not comparable with published FID**; it only ranks models on the same data.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..checkpoints import ModelCache, build_from_checkpoint, save_checkpoint
from ..data import LabeledDataset
from ..errors import ConfigError, DataError
from ..models import build_model
from ..training import TrainRecipe, train

__all__ = ["JUDGE_RECIPE", "fa_entropy", "fa_kept", "fa_prob", "forgetting_accuracy", "frechet_distance",
           "generation_metrics", "judge_features", "judge_probs", "train_judge"]

# Adam, 30 epochs, constant lr: reaches about 97-99% test accuracy on 16x16 digits in a few seconds.
JUDGE_RECIPE = TrainRecipe(epochs=30, batch_size=64, optimizer="adam", lr=2e-3, weight_decay=0.0,
                           schedule="cosine")


def train_judge(train_set: LabeledDataset, *, num_classes: int = 10, seed: int = 0,
                recipe: TrainRecipe | None = None, cache: ModelCache | None = None,
                dataset_hash: str | None = None) -> nn.Module:
    """Train (or load from ``cache``) the judge ``cnn`` on real images; returned in eval mode.

    The cache key hashes the role, ``dataset_hash`` (default: a content hash of ``train_set``'s tensors), the
    model description, the recipe and the seed, like the pipeline's classifier cache.
    """
    recipe = recipe or JUDGE_RECIPE
    spec = {"name": "cnn", "input_shape": list(train_set.input_shape), "num_classes": num_classes, "kwargs": {}}
    key = None
    if cache is not None:
        from ..data import content_hash

        data_key = dataset_hash or content_hash(train_set.x.numpy(), train_set.y.numpy())
        key = cache.key(role="judge", dataset=data_key, model=spec, recipe=dataclasses.asdict(recipe), seed=seed)
        hit = cache.get(key)
        if hit is not None:
            return build_from_checkpoint(hit)[0]
    torch.manual_seed(seed)
    judge = build_model("cnn", tuple(train_set.input_shape), num_classes)
    train(judge, train_set, recipe=recipe, seed=seed)
    judge.eval()
    if cache is not None and key is not None:
        save_checkpoint(cache.path(key), judge, {"model": spec, "role": "judge", "seed": seed})
    return judge


@torch.no_grad()
def judge_probs(judge: nn.Module, x: torch.Tensor, batch_size: int = 512) -> torch.Tensor:
    """Softmax probabilities of the judge on images ``x`` (eval mode), as float64 on CPU."""
    judge.eval()
    out = [F.softmax(judge(x[i:i + batch_size]).double(), dim=1).cpu() for i in range(0, len(x), batch_size)]
    return torch.cat(out) if out else torch.empty(0, 0, dtype=torch.float64)


@torch.no_grad()
def judge_features(judge: nn.Module, x: torch.Tensor, batch_size: int = 512) -> np.ndarray:
    """The judge's penultimate features (after global pooling, before the linear head), float64 ``(N, D)``."""
    if not (hasattr(judge, "features") and hasattr(judge, "pool")):
        raise ConfigError("judge_features needs a SmallCNN-like judge with .features and .pool")
    judge.eval()
    out = [torch.flatten(judge.pool(judge.features(x[i:i + batch_size])), 1).double().cpu()
           for i in range(0, len(x), batch_size)]
    return torch.cat(out).numpy()


def _check_probs(probs: torch.Tensor) -> torch.Tensor:
    probs = torch.as_tensor(probs, dtype=torch.float64)
    if probs.ndim != 2 or probs.shape[0] == 0:
        raise DataError(f"need a non-empty (N, K) probability matrix, got shape {tuple(probs.shape)}")
    return probs


def forgetting_accuracy(probs: torch.Tensor, forget_class: int) -> float:
    """FA, %: share of rows whose arg-max is ``forget_class``."""
    p = _check_probs(probs)
    return float((p.argmax(1) == forget_class).double().mean() * 100.0)


def fa_entropy(probs: torch.Tensor) -> float:
    """Mean entropy (nats) of the judge's predictive distributions."""
    p = _check_probs(probs)
    return float(-(p * torch.log(p.clamp_min(1e-300))).sum(1).mean())


def fa_prob(probs: torch.Tensor, forget_class: int) -> float:
    """Mean probability the judge gives to ``forget_class``."""
    return float(_check_probs(probs)[:, forget_class].mean())


def fa_kept(probs: torch.Tensor, requested: torch.Tensor | Sequence[int]) -> float:
    """Judge accuracy, %, w.r.t. the classes the images were generated for."""
    p = _check_probs(probs)
    req = torch.as_tensor(requested, dtype=torch.long)
    if req.shape != (p.shape[0],):
        raise DataError(f"need one requested class per row: {p.shape[0]} rows, {tuple(req.shape)} labels")
    return float((p.argmax(1) == req).double().mean() * 100.0)


def frechet_distance(a: np.ndarray, b: np.ndarray) -> float:
    """Fréchet distance between Gaussian fits of feature sets ``a`` and ``b`` (rows = samples).

    d² = ‖μ_a − μ_b‖² + tr(Σ_a + Σ_b − 2 (Σ_a Σ_b)^{1/2}), with unbiased covariances and the matrix square root from
    :func:`scipy.linalg.sqrtm` (its tiny imaginary part from rounding is dropped, as in the FID reference code).
    """
    from scipy import linalg

    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if a.ndim != 2 or b.ndim != 2 or a.shape[1] != b.shape[1] or min(len(a), len(b)) < 2:
        raise DataError(f"need two (N>=2, D) feature matrices with the same D, got {a.shape} and {b.shape}")
    mu_a, mu_b = a.mean(0), b.mean(0)
    s_a, s_b = np.atleast_2d(np.cov(a, rowvar=False)), np.atleast_2d(np.cov(b, rowvar=False))
    covmean = linalg.sqrtm(s_a @ s_b)
    if not np.isfinite(covmean).all():  # singular product: regularise as the FID reference code does
        off = np.eye(s_a.shape[0]) * 1e-6
        covmean = linalg.sqrtm((s_a + off) @ (s_b + off))
    covmean = np.real(covmean)
    d = float(((mu_a - mu_b) ** 2).sum() + np.trace(s_a) + np.trace(s_b) - 2.0 * np.trace(covmean))
    return max(d, 0.0)


def generation_metrics(model: nn.Module, judge: nn.Module, real_remaining: LabeledDataset, *, forget_class: int,
                       num_classes: int, n_forget: int = 500, n_per_kept: int = 50, seed: int = 0,
                       **sampler: Any) -> dict[str, float]:
    """Sample and score a conditional diffusion model: ``fa``, ``fa_entropy``, ``fa_prob``, ``fa_kept``, ``judge_fd``.

    ``n_forget`` images of ``forget_class`` and ``n_per_kept`` images of every other class are generated with
    :func:`unlearnkit.diffusion.sample` (``sampler`` keywords are passed on: ``method``, ``steps``, ``eta``,
    ``guidance``, ``schedule``, ``shape``), seeds ``seed`` and ``seed + 1``. judge-FD compares the generated
    remaining-class images with ``real_remaining`` (real images of the remaining classes). The sampler settings
    are echoed in the result under ``sampler_steps`` so every result records its step count. The judge's features
    have 128 dimensions, so judge-FD needs ``n_per_kept * (num_classes - 1)`` well above 128 generated images
    (scipy warns of a singular covariance product otherwise) and is biased upwards at small sample sizes: compare
    judge-FDs only at equal sample counts.
    """
    from ..diffusion import LinearSchedule, sample

    if not 0 <= forget_class < num_classes:
        raise ConfigError(f"forget_class must be in [0, {num_classes}), got {forget_class}")
    kept = [c for c in range(num_classes) if c != forget_class]
    shape = sampler.pop("shape", tuple(real_remaining.input_shape))
    xf = sample(model, [forget_class] * n_forget, shape=shape, seed=seed, **sampler)
    req = torch.tensor([c for c in kept for _ in range(n_per_kept)])
    xk = sample(model, req, shape=shape, seed=seed + 1, **sampler)
    pf, pk = judge_probs(judge, xf), judge_probs(judge, xk)
    fd = frechet_distance(judge_features(judge, xk), judge_features(judge, real_remaining.x))
    steps = sampler.get("steps") or (sampler.get("schedule") or LinearSchedule()).T
    return {"fa": forgetting_accuracy(pf, forget_class), "fa_entropy": fa_entropy(pf),
            "fa_prob": fa_prob(pf, forget_class), "fa_kept": fa_kept(pk, req), "judge_fd": fd,
            "sampler_steps": float(steps)}
