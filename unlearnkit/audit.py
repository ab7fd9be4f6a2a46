"""``unlearnkit audit``: the gold-standard tier (c) — U-LiRA and the NeurIPS'23 challenge forgetting quality.

**U-LiRA** (Hayes et al. 2024; evaluation spec §2.8). The request defines a *target set* T of training examples
(``class:c``: every example of c; ``random:f``: a seeded random f of the pool; ``subclass``/``ids`` likewise). K
shadow models are trained on random halves of the training pool, drawn as K/2 complementary pairs so that every
example is inside exactly half of the shadows. Shadow k forgets F_k = H_k ∩ T (so a ``random:0.1`` target set
gives each shadow a forget set of about 10% of its half) with the method under test. For every example of T and
every shadow, the example was either *unlearned* (in F_k) or *never seen* (not in H_k). Each shadow in turn is the
target model; Gaussians are fitted to the example's logit-scaled confidence under the other K−1 shadows in each
world, and the log-likelihood ratio is the attack score (``ulira_leave_one_out``). 50% accuracy / 0.5 AUC means
unlearned models cannot be told from models that never saw the example. ``retrain`` as the "method" retrains each
shadow on H_k \\ F_k from scratch; ``original`` skips unlearning.

**Forgetting quality F** (spec §2.6). N models retrained on D \\ D_f (seeds 0..N−1) and N runs of the method from
one and the same original model (method seeds 0..N−1); per forget example the official ε estimate from the two
samples of φ, binned into points, averaged into F, and F · (RA_U/RA_R) · (TA_U/TA_R). N defaults to K. ``retrain``
as the method uses N further retrained models (seeds N..2N−1); ``original`` is deterministic and so scores
ε = cap (F = 0) by the scorer's degenerate-distribution rule. Small N caps the measurable ε near ln N: with N = 32
an example beyond ε ≈ 4 earns nothing, however far beyond.

Everything expensive is cached and resumable: shadow and retrained models in the content-keyed model cache, and each
(method, model) signal row in ``OUT/signals/`` (written atomically), so a killed audit restarts where it stopped.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .checkpoints import atomic_write, atomic_write_text
from .data.base import content_hash
from .distributed import broadcast_object, is_main_process
from .errors import ConfigError
from .evaluation import audit_metrics as A
from .methods.base import get_method
from .pipeline import Experiment
from .requests import ForgetRequest
from .training import predict_logits

__all__ = ["run_audit"]


def _halves(n: int, k: int, seed: int) -> list[np.ndarray]:
    """K random halves of range(n) as K/2 complementary pairs (every index in exactly K/2 halves)."""
    out = []
    for j in range(k // 2):
        perm = np.random.default_rng([int(seed), 0xA0D17, j]).permutation(n)
        out += [np.sort(perm[: n // 2]), np.sort(perm[n // 2:])]
    return out


def _save_npz(path: Path, **arrays: np.ndarray) -> None:
    def write(tmp: str) -> None:
        with open(tmp, "wb") as f:  # a file object: np.savez would append ".npz" to a name
            np.savez(f, **arrays)

    atomic_write(path, write)


def _acc(logits: torch.Tensor, y: torch.Tensor) -> float:
    return float((logits.argmax(1) == y).float().mean() * 100)


class _Auditor:
    def __init__(self, exp: Experiment, request: str, k: int, n: int, seed: int, out: Path,
                 overrides: dict[str, dict[str, Any]], log: Callable[[str], None]) -> None:
        self.exp, self.k, self.n, self.seed, self.out, self.overrides, self.log = exp, k, n, seed, out, overrides, log
        s = exp.splits
        self.train = s.train
        self.split = exp.resolve(request, seed)
        self.request = ForgetRequest.parse(request) if isinstance(request, str) else request
        self.targets = self.split.forget_idx  # T
        self.halves = _halves(len(self.train), k, seed)
        self.kind = self.split.request.kind
        # A fixed utility subsample: retain accuracy on at most 2000 retain examples, test accuracy on the test set.
        rng = np.random.default_rng([seed, 7])
        r = self.split.retain_idx
        self.retain_eval = self.train.subset(np.sort(rng.choice(r, min(2000, len(r)), replace=False)))

    # --- signals of one model on T (and its utility) -------------------------------------------------------------
    def _row(self, tag: str, make_model: Callable[[], torch.nn.Module]) -> dict[str, np.ndarray]:
        path = self.out / "signals" / f"{tag}.npz"
        cached = None
        if is_main_process() and path.is_file():
            with np.load(path) as z:
                cached = {k: z[k] for k in z.files}
        # Rank 0's disk decides, so that every rank takes the same branch (the compute branch runs collectives).
        cached = broadcast_object(cached)
        if cached is not None:
            return cached
        model = make_model()
        t_set = self.train.subset(self.targets)
        logits = predict_logits(model, t_set, device=self.exp.device)
        phi = A.logit_scaled_confidence(logits.numpy(), t_set.y.numpy())
        ra = _acc(predict_logits(model, self.retain_eval, device=self.exp.device), self.retain_eval.y)
        ta = _acc(predict_logits(model, self.exp.splits.test, device=self.exp.device), self.exp.splits.test.y)
        row = {"phi": phi.astype(np.float64), "retain_acc": np.array(ra), "test_acc": np.array(ta)}
        if is_main_process():
            _save_npz(path, **row)
        return row

    def _shadow(self, j: int):  # noqa: ANN202
        h = self.halves[j]
        return self.exp.models.trained("shadow", self.seed * 1000 + j, self.train.subset(h),
                                       {"half": content_hash(h)}).model

    def _unlearn(self, method: str, model: torch.nn.Module, forget_idx: np.ndarray, retain_idx: np.ndarray,
                 mseed: int, classes: tuple[int, ...] | None) -> torch.nn.Module:
        cfg = self.exp.config_for(method, self.split, mseed, self.overrides.get(method))[0]
        return self.exp.runner.run_on(cfg, model, forget_idx, retain_idx, forget_classes=classes,
                                      progress=False).model

    # --- U-LiRA ----------------------------------------------------------------------------------------------------
    def ulira(self, method: str) -> tuple[dict[str, Any], A.ULiraResult]:
        phis, states = [], []
        for j, h in enumerate(self.halves):
            in_h = np.isin(self.targets, h)
            f_idx = self.targets[in_h]
            r_idx = np.setdiff1d(h, f_idx)
            state = np.where(in_h, A.UNLEARNED, A.NEVER_SEEN)
            key = content_hash(h, f_idx, extra={"m": method, "ov": self.overrides.get(method), "s": self.seed})
            if method == "original":
                row = self._row(f"ulira__original__{j}__{key}", lambda j=j: self._shadow(j))
            elif method == "retrain":
                row = self._row(f"ulira__retrain__{j}__{key}", lambda j=j, h=h, f_idx=f_idx, r_idx=r_idx:
                                self.exp.models.trained("shadow_retrain", self.seed * 1000 + j,
                                                        self.train.subset(r_idx),
                                                        {"half": content_hash(h),
                                                         "forget_hash": content_hash(f_idx)}).model)
            else:
                row = self._row(f"ulira__{method}__{j}__{key}", lambda j=j, f_idx=f_idx, r_idx=r_idx: self._unlearn(
                    method, self._shadow(j), f_idx, r_idx, self.seed * 1000 + j, self.split.forget_classes))
            phis.append(row["phi"])
            states.append(state)
            if (j + 1) % 8 == 0:
                self.log(f"  u-lira {method}: {j + 1}/{self.k} shadows")
        # Few shadows per world leave too few values for a per-example σ: pool it, as LiRA advises at small K.
        res = A.ulira_leave_one_out(np.stack(phis), np.stack(states), global_variance=self.k <= 16)
        return res.metrics("ulira"), res

    # --- challenge forgetting quality -------------------------------------------------------------------------
    def _retrained_row(self, i: int) -> dict[str, np.ndarray]:
        return self._row(f"fq__retrain_ref__{i}__{self.split.key}",
                         lambda: self.exp.retrained(self.split, self.seed * 1000 + i).model)

    def forgetting_quality(self, method: str) -> tuple[dict[str, Any], np.ndarray]:
        ref = [self._retrained_row(i) for i in range(self.n)]
        if method == "retrain":
            rows = [self._retrained_row(self.n + i) for i in range(self.n)]
        elif method == "original":
            orig = self.exp.original(self.seed).model
            rows = [self._row(f"fq__original__{self.split.key}__{self.seed}", lambda: orig)] * self.n
        else:
            orig = self.exp.original(self.seed).model
            key = content_hash(extra={"ov": self.overrides.get(method), "split": self.split.key, "s": self.seed})
            rows = [self._row(f"fq__{method}__{i}__{key}", lambda i=i: self._unlearn(
                method, orig, self.split.forget_idx, self.split.retain_idx, i, self.split.forget_classes))
                for i in range(self.n)]
        eps = A.challenge_epsilons(np.stack([r["phi"] for r in rows]), np.stack([r["phi"] for r in ref]))
        fq = A.forgetting_quality(eps, self.n)
        score = A.challenge_score(fq, [float(r["retain_acc"]) for r in rows], [float(r["retain_acc"]) for r in ref],
                                  [float(r["test_acc"]) for r in rows], [float(r["test_acc"]) for r in ref])
        return {"forgetting_quality": fq, "challenge_score": score,
                "retain_acc": float(np.mean([float(r["retain_acc"]) for r in rows])),
                "test_acc": float(np.mean([float(r["test_acc"]) for r in rows]))}, eps


#: Below this many shadow models the report warns that its numbers are not to be quoted (README, audit section).
SMALL_K = 32


def run_audit(exp: Experiment, *, request: str, methods: list[str], k: int = 32, n: int | None = None,
              seed: int = 0, out: Path, overrides: dict[str, dict[str, Any]] | None = None,
              log: Callable[[str], None] = print, run_info: dict[str, Any] | None = None) -> dict[str, Any]:
    """Audit ``methods`` (plus ``original`` and ``retrain``) and write ``out/audit.json`` and ``out/audit.md``.

    Raises:
        UnsupportedTaskError: the dataset is not single-label classification (U-LiRA's statistic and the
            forgetting-quality test are defined on one true class per example).
    """
    exp.data.require_classification("unlearnkit audit (U-LiRA and forgetting quality)")
    if k < 4 or k % 2:
        raise ConfigError(f"--models must be an even number >= 4 (shadows come in complementary pairs), got {k}")
    n = n or k
    if n < 3:
        raise ConfigError(f"the forgetting-quality population needs at least 3 models, got {n}")
    if k < SMALL_K:
        log(f"audit: K = {k} shadow models is enough to check that the audit runs, too few for numbers: use K >= "
            f"{SMALL_K} (--models {SMALL_K})")
    out.mkdir(parents=True, exist_ok=True)
    aud = _Auditor(exp, request, k, n, seed, out, overrides or {}, log)
    records, curves = [], {}
    for method in ["original", "retrain", *[m for m in methods if m not in ("original", "retrain")]]:
        t0 = time.perf_counter()
        if method not in ("original", "retrain"):
            spec = exp.check_supported(get_method(method), aud.split)
            if spec:
                records.append({"method": method, "status": "n/a", "reason": spec})
                continue
        um, res = aud.ulira(method)
        fm, eps = aud.forgetting_quality(method)
        rec = {"method": method, "status": "ok", "request": request, "seed": seed, "models": k, "n": n,
               "n_targets": int(len(aud.targets)),
               "metrics": {**um, **fm, "seconds": time.perf_counter() - t0},
               "per_example": {"ulira_accuracy": _clean(res.per_example_accuracy), "epsilon": _clean(eps)}}
        records.append(rec)
        valid = np.isfinite(res.scores)
        curves[method] = (res.scores[valid], res.is_unlearned[valid])
        log(f"audit {method}: u-lira acc {_f(um['ulira_accuracy'], 1)}%, auc {_f(um['ulira_auc'], 3)}, "
            f"F {_f(fm['forgetting_quality'], 3)} ({time.perf_counter() - t0:.0f}s)")
    results = {"schema": "unlearnkit.audit/1", "run_info": run_info or {}, "records": records}
    if is_main_process():
        atomic_write_text(out / "audit.json", json.dumps(results, indent=1))
        _render(results, curves, out)
    return results


def _f(v: Any, d: int) -> str:
    return "–" if v is None else f"{v:.{d}f}"


def _clean(a: np.ndarray) -> list[float | None]:
    return [None if not math.isfinite(float(v)) else round(float(v), 6) for v in np.asarray(a).ravel()]


def _render(results: dict[str, Any], curves: dict[str, tuple[np.ndarray, np.ndarray]], out: Path) -> Path:
    from sklearn.metrics import roc_curve

    from .evaluation.report import finish_plot, new_axes

    lines = ["# unlearnkit audit (tier c)", ""]
    k = min((int(r["models"]) for r in results["records"] if r.get("models")), default=None)
    if k is not None and k < SMALL_K:
        lines += [f"> **Caveat: K = {k} shadow models.** With so few, the leave-one-out Gaussians are fitted on "
                  f"{k - 1} models and even retraining scores far from 50%: these numbers only show that the audit "
                  f"runs. Use K ≥ {SMALL_K} (`--models {SMALL_K}`) for numbers.", ""]
    lines += ["| method | U-LiRA acc % | U-LiRA AUC | TPR@1%FPR | TPR@0.1%FPR | forgetting quality F | score |",
             "|---|---:|---:|---:|---:|---:|---:|"]

    for r in results["records"]:
        if r["status"] != "ok":
            lines.append(f"| {r['method']} | n/a: {r.get('reason')} | | | | | |")
            continue
        m = r["metrics"]
        lines.append(f"| {r['method']} | {_f(m['ulira_accuracy'], 1)} | {_f(m['ulira_auc'], 3)} | "
                     f"{_f(m['ulira_tpr_at_1pct_fpr'], 1)} | {_f(m['ulira_tpr_at_0.1pct_fpr'], 1)} | "
                     f"{_f(m['forgetting_quality'], 3)} | {_f(m['challenge_score'], 3)} |")
    fig, ax = new_axes((5.0, 5.0))
    for name, (s, t) in curves.items():
        if t.any() and (~t).any():
            fpr, tpr, _ = roc_curve(t, s)
            ax.plot(np.maximum(fpr, 1e-4), np.maximum(tpr, 1e-4), label=name)
    ax.plot([1e-4, 1], [1e-4, 1], "k--", lw=0.7)
    ax.set_xscale("log")
    ax.set_yscale("log")
    finish_plot(fig, ax, out / "audit_roc.png", xlabel="false positive rate", ylabel="true positive rate",
                title="U-LiRA ROC (unlearned vs never seen)")
    fig, ax = new_axes()
    for r in results["records"]:
        if r["status"] == "ok":
            e = np.array([v for v in r["per_example"]["epsilon"] if v is not None])
            ax.hist(np.minimum(e, 10), bins=np.arange(0, 10.5, 0.5), histtype="step", label=r["method"])
    finish_plot(fig, ax, out / "audit_epsilon.png", xlabel="per-example ε (clipped at 10 for display)",
                ylabel="forget examples", title="challenge ε per forget example")
    lines += ["", "![U-LiRA ROC](audit_roc.png)", "", "![per-example epsilon](audit_epsilon.png)", ""]
    p = out / "audit.md"
    atomic_write_text(p, "\n".join(lines))
    return p


