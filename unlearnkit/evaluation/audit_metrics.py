"""Gold-tier attack functions (spec tier c): U-LiRA and the NeurIPS 2023 unlearning challenge's forgetting quality.

Pure numpy functions of per-example logit-scaled confidences ``φ`` collected from many models; the audit command
(issue 10) trains the shadow / retrained / unlearned models and caches their signals, then calls these.

- :func:`logit_scaled_confidence`: ``φ = log p_y − log Σ_{j≠y} p_j`` from logits, computed stably.
- U-LiRA (Hayes et al. 2024, arXiv 2403.01218; spec §2.8): :func:`gaussian_fit`, :func:`gaussian_log_lr`,
  :func:`ulira`, :func:`ulira_leave_one_out`, :func:`attack_summary`.
- Challenge forgetting quality (google-deepmind/unlearning_evaluation ``metric.py`` @ffae0ff and the Aug 2023
  tech report; spec §2.6): :func:`challenge_epsilon`, :func:`challenge_epsilons`, :func:`challenge_bins`,
  :func:`forgetting_quality`, :func:`challenge_score`.

Conventions: state arrays mark, per (model, example), ``UNLEARNED`` (1: the example was trained on and then
unlearned), ``NEVER_SEEN`` (0: not in that model's training set) or ``OTHER`` (−1: e.g. retained; ignored).
Accuracies and TPRs are returned in percent, AUC in [0, 1].
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from sklearn.metrics import roc_auc_score, roc_curve

from ..errors import DataError
from .metrics import _logsumexp, tpr_at_fpr

__all__ = [
    "CHALLENGE_DELTA",
    "CHALLENGE_EPSILON_CAP",
    "NEVER_SEEN",
    "OTHER",
    "UNLEARNED",
    "ULiraResult",
    "attack_summary",
    "challenge_bins",
    "challenge_epsilon",
    "challenge_epsilons",
    "challenge_score",
    "forgetting_quality",
    "gaussian_fit",
    "gaussian_log_lr",
    "logit_scaled_confidence",
    "ulira",
    "ulira_leave_one_out",
]

UNLEARNED, NEVER_SEEN, OTHER = 1, 0, -1

# Official scorer constants (metric.py): δ of the (ε, δ) estimate, the ε cap, grid density of the decision rules.
CHALLENGE_DELTA = 1e-5
CHALLENGE_EPSILON_CAP = 50.0
_THRESHOLDS_PER_UNIT = 100
_INTERVAL_BUFFER = 2.0
_DEGENERATE_RATIO = 0.01
_BIN_WIDTH = 0.5


# ---------------------------------------------------------------------------------------------------------------
# The statistic
# ---------------------------------------------------------------------------------------------------------------


def logit_scaled_confidence(logits: Any, labels: Any) -> np.ndarray:
    """``φ(x) = log p_y − log Σ_{j≠y} p_j = z_y − logsumexp_{j≠y} z_j`` per example (spec §0), in float64.

    The second form needs no softmax, so it stays exact where ``p_y`` rounds to 1 (the official scorer adds
    1e-45 inside the logs instead, which saturates φ near ±103). Logits may be ``(n, C)`` or ``(models, n, C)``
    with labels ``(n,)``.

    Raises:
        DataError: fewer than two classes or a label/shape mismatch.
    """
    z = np.asarray(logits, dtype=np.float64)
    y = np.asarray(labels).astype(np.int64).reshape(-1)
    if z.ndim not in (2, 3) or z.shape[-1] < 2:
        raise DataError(f"logits must have shape (n, C) or (models, n, C) with C >= 2, got {z.shape}")
    if z.shape[-2] != y.shape[0]:
        raise DataError(f"got {y.shape[0]} labels for {z.shape[-2]} examples")
    flat = z.reshape(-1, z.shape[-1])
    yy = np.tile(y, flat.shape[0] // y.shape[0])
    rows = np.arange(flat.shape[0])
    zy = flat[rows, yy].copy()
    others = flat.copy()
    others[rows, yy] = -np.inf
    return (zy - _logsumexp(others)).reshape(z.shape[:-1])


# ---------------------------------------------------------------------------------------------------------------
# U-LiRA
# ---------------------------------------------------------------------------------------------------------------


def _check_pair(phi: Any, state: Any) -> tuple[np.ndarray, np.ndarray]:
    p = np.asarray(phi, dtype=np.float64)
    s = np.asarray(state).astype(np.int64)
    if p.ndim != 2 or p.shape != s.shape:
        raise DataError(f"phi and state must be 2-D arrays (models × examples) of one shape, got {p.shape} and "
                        f"{s.shape}")
    if not np.isin(s, (UNLEARNED, NEVER_SEEN, OTHER)).all():
        raise DataError("state entries must be UNLEARNED (1), NEVER_SEEN (0) or OTHER (-1)")
    return p, s


def gaussian_fit(phi: Any, mask: Any, *, global_variance: bool = False,
                 min_std: float = 1e-3) -> tuple[np.ndarray, np.ndarray]:
    """Per-example Gaussian ``N(μ, σ²)`` fitted to ``phi[mask]`` along the model axis.

    ``μ`` is the mean and ``σ`` the maximum-likelihood standard deviation (ddof 0) of each example's selected
    values. With ``global_variance=True`` every example shares one ``σ``: the pooled within-example standard
    deviation ``sqrt(Σ_examples Σ_models (φ − μ_example)² / Σ counts)``, which LiRA recommends when there are few
    shadow models (its code's fixed variance instead takes the std of all values, mixing in the spread *between*
    examples' means; pooling within examples is the estimate of the shared variance the Gaussian model assumes).
    ``σ`` is floored at ``min_std`` so that identical values do not give an infinite likelihood.

    Args:
        phi: ``(models, examples)`` statistics.
        mask: boolean ``(models, examples)``: which values belong to this population.
        global_variance: share one pooled σ across examples.
        min_std: floor of σ.

    Returns:
        ``(mu, sigma)``, each of shape ``(examples,)``; ``nan`` where an example has too few values (none for
        ``mu``; fewer than two for a per-example ``sigma``).
    """
    p = np.asarray(phi, dtype=np.float64)
    w = np.asarray(mask, dtype=bool)
    if p.shape != w.shape or p.ndim != 2:
        raise DataError(f"phi and mask must be 2-D of one shape, got {p.shape} and {w.shape}")
    c = w.sum(axis=0).astype(np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        mu = np.where(c > 0, np.where(w, p, 0.0).sum(axis=0) / c, np.nan)
        ss = np.where(w, (p - np.nan_to_num(mu)) ** 2, 0.0).sum(axis=0)
        if global_variance:
            tot = float(c[c > 0].sum())
            sd_all = math.sqrt(float(ss[c > 0].sum()) / tot) if tot > 0 else math.nan
            sd = np.where(c > 0, max(sd_all, min_std), np.nan)
        else:
            sd = np.where(c > 1, np.maximum(np.sqrt(ss / np.maximum(c, 1)), min_std), np.nan)
    return mu, sd


def gaussian_log_lr(phi: Any, mu_u: Any, sd_u: Any, mu_n: Any, sd_n: Any) -> np.ndarray:
    """``log N(φ; μ_u, σ_u²) − log N(φ; μ_n, σ_n²)``: positive favours "unlearned", negative "never seen".

    Broadcasts; ``phi`` is typically ``(targets, examples)`` and the parameters ``(examples,)``.
    """
    x = np.asarray(phi, dtype=np.float64)
    mu_u, sd_u, mu_n, sd_n = (np.asarray(a, dtype=np.float64) for a in (mu_u, sd_u, mu_n, sd_n))
    lu = -0.5 * ((x - mu_u) / sd_u) ** 2 - np.log(sd_u)
    ln = -0.5 * ((x - mu_n) / sd_n) ** 2 - np.log(sd_n)
    return lu - ln


def attack_summary(scores: Any, is_member: Any, fprs: Sequence[float] = (0.01, 0.001)) -> dict[str, float]:
    """Attack quality of ``scores`` (higher = member) against the truth ``is_member``.

    Returns ``accuracy``: balanced accuracy ``(TPR + TNR)/2`` in percent of the rule "member iff score > 0" (the
    likelihood-ratio test at equal priors, so nothing is tuned on the evaluated pairs; 50 is ideal), ``auc`` (0.5
    ideal), ``best_balanced_accuracy`` (percent, the best threshold chosen with hindsight as LiRA's ``sweep`` does;
    optimistic) and ``tpr_at_<f>`` (percent, ROC interpolated as :func:`unlearnkit.evaluation.metrics.tpr_at_fpr`
    documents) for each FPR ``f``. ``nan`` entries when a class is missing.
    """
    s = np.asarray(scores, dtype=np.float64).reshape(-1)
    y = np.asarray(is_member).astype(bool).reshape(-1)
    keep = np.isfinite(s)
    s, y = s[keep], y[keep]
    out: dict[str, float] = {"accuracy": math.nan, "auc": math.nan, "best_balanced_accuracy": math.nan}
    for f in fprs:
        out[f"tpr_at_{f:g}"] = math.nan
    if y.all() or not y.any():
        return out
    pred = s > 0
    out["accuracy"] = float(100.0 * 0.5 * (np.mean(pred[y]) + np.mean(~pred[~y])))
    out["auc"] = float(roc_auc_score(y, s))
    fpr, tpr, _ = roc_curve(y, s, drop_intermediate=False)
    out["best_balanced_accuracy"] = float(100.0 * np.max((tpr + 1.0 - fpr) / 2.0))
    for f in fprs:
        out[f"tpr_at_{f:g}"] = 100.0 * tpr_at_fpr(fpr, tpr, f)
    return out


@dataclass
class ULiraResult:
    """U-LiRA scores and their analysis.

    Attributes:
        scores: ``(targets, examples)`` log-likelihood ratios; ``nan`` where the pair is not evaluated (state
            OTHER, or too few shadow values to fit the example's Gaussians).
        is_unlearned: ``(targets, examples)`` truth (meaningful where ``scores`` is finite).
        aggregate: :func:`attack_summary` over every evaluated (target, example) pair.
        per_example_accuracy: ``(examples,)`` balanced accuracy (percent) over the targets of each example.
        per_example_auc: ``(examples,)`` AUC over the targets of each example (``nan`` without both outcomes).
    """

    scores: np.ndarray
    is_unlearned: np.ndarray
    aggregate: dict[str, float] = field(default_factory=dict)
    per_example_accuracy: np.ndarray = field(default_factory=lambda: np.zeros(0))
    per_example_auc: np.ndarray = field(default_factory=lambda: np.zeros(0))

    def metrics(self, prefix: str = "ulira") -> dict[str, float | None]:
        """The aggregate as flat ``<prefix>_accuracy``, ``_auc``, ``_tpr_at_1pct_fpr``, ``_tpr_at_0.1pct_fpr``."""
        a = self.aggregate
        raw = {f"{prefix}_accuracy": a.get("accuracy"), f"{prefix}_auc": a.get("auc"),
               f"{prefix}_best_balanced_accuracy": a.get("best_balanced_accuracy"),
               f"{prefix}_tpr_at_1pct_fpr": a.get("tpr_at_0.01"), f"{prefix}_tpr_at_0.1pct_fpr": a.get("tpr_at_0.001")}
        return {k: (None if v is None or not math.isfinite(v) else float(v)) for k, v in raw.items()}


def _analyse(scores: np.ndarray, truth: np.ndarray) -> ULiraResult:
    valid = np.isfinite(scores)
    agg = attack_summary(scores[valid], truth[valid])
    n = scores.shape[1]
    acc = np.full(n, np.nan)
    auc = np.full(n, np.nan)
    for j in range(n):
        v = valid[:, j]
        if v.any():
            summ = attack_summary(scores[v, j], truth[v, j], fprs=())
            acc[j], auc[j] = summ["accuracy"], summ["auc"]
    return ULiraResult(scores=scores, is_unlearned=truth, aggregate=agg, per_example_accuracy=acc,
                       per_example_auc=auc)


def ulira(target_phi: Any, target_state: Any, shadow_phi: Any, shadow_state: Any, *,
          global_variance: bool = False, min_std: float = 1e-3) -> ULiraResult:
    """U-LiRA (spec §2.8): per-example Gaussian likelihood-ratio test of "unlearned" against "never seen".

    For each example, one Gaussian is fitted to its ``φ`` under the shadow models where it was trained on and
    unlearned, another to its ``φ`` under the shadows that never saw it (:func:`gaussian_fit`). Each target
    (model, example) pair with state UNLEARNED or NEVER_SEEN is scored by :func:`gaussian_log_lr`, and the scores are
    analysed per example and over all pairs (:func:`attack_summary`). Balanced accuracy and AUC of 50% / 0.5 mean
    the unlearned models are indistinguishable from models that never saw the examples (retraining scores that).

    Args:
        target_phi, target_state: ``(targets, examples)`` statistics and states of the audited models.
        shadow_phi, shadow_state: ``(shadows, examples)`` statistics and states of the shadow models (disjoint from
            the targets).
        global_variance: one pooled σ per population (few shadows).
        min_std: floor of σ.
    """
    tp, ts = _check_pair(target_phi, target_state)
    sp, ss = _check_pair(shadow_phi, shadow_state)
    if tp.shape[1] != sp.shape[1]:
        raise DataError(f"targets cover {tp.shape[1]} examples but shadows cover {sp.shape[1]}")
    mu_u, sd_u = gaussian_fit(sp, ss == UNLEARNED, global_variance=global_variance, min_std=min_std)
    mu_n, sd_n = gaussian_fit(sp, ss == NEVER_SEEN, global_variance=global_variance, min_std=min_std)
    with np.errstate(invalid="ignore"):
        scores = gaussian_log_lr(tp, mu_u, sd_u, mu_n, sd_n)
    scores = np.where(ts == OTHER, np.nan, scores)
    return _analyse(scores, ts == UNLEARNED)


def ulira_leave_one_out(phi: Any, state: Any, *, global_variance: bool = False,
                        min_std: float = 1e-3) -> ULiraResult:
    """U-LiRA where every model is the target once and the Gaussians are fitted on all the *other* models.

    Equivalent to calling :func:`ulira` K times with one target and the remaining K−1 models as shadows, computed
    in one vectorised pass from sums (values are centred per example first, so the sums lose no precision).
    """
    p, s = _check_pair(phi, state)
    out = np.full(p.shape, np.nan)
    # Centre per example (on all selected values) so Σx² − (Σx)²/n does not cancel catastrophically.
    sel = s != OTHER
    cnt = np.maximum(sel.sum(axis=0), 1)
    centre = np.where(sel, p, 0.0).sum(axis=0) / cnt
    x = p - centre
    params = []
    for pop in (UNLEARNED, NEVER_SEEN):
        w = s == pop
        c_all, s1_all, s2_all = w.sum(0), np.where(w, x, 0.0).sum(0), np.where(w, x * x, 0.0).sum(0)
        c = c_all[None, :] - w                   # counts without the target row
        s1 = s1_all[None, :] - np.where(w, x, 0.0)
        s2 = s2_all[None, :] - np.where(w, x * x, 0.0)
        with np.errstate(invalid="ignore", divide="ignore"):
            mu = np.where(c > 0, s1 / c, np.nan)
            ssd = np.maximum(s2 - np.where(c > 0, s1 * s1 / np.maximum(c, 1), 0.0), 0.0)
            if global_variance:
                tot = np.where(c > 0, c, 0).sum(axis=1, keepdims=True)
                pooled = np.sqrt(np.where(c > 0, ssd, 0.0).sum(axis=1, keepdims=True) / np.maximum(tot, 1))
                sd = np.where(c > 0, np.maximum(np.broadcast_to(pooled, c.shape), min_std), np.nan)
            else:
                sd = np.where(c > 1, np.maximum(np.sqrt(ssd / np.maximum(c, 1)), min_std), np.nan)
        params.append((mu, sd))
    (mu_u, sd_u), (mu_n, sd_n) = params
    with np.errstate(invalid="ignore"):
        out = gaussian_log_lr(x, mu_u, sd_u, mu_n, sd_n)
    out = np.where(s == OTHER, np.nan, out)
    return _analyse(out, s == UNLEARNED)


# ---------------------------------------------------------------------------------------------------------------
# NeurIPS 2023 challenge: per-example ε and forgetting quality F
# ---------------------------------------------------------------------------------------------------------------


def _count_ge(sorted_x: np.ndarray, t: np.ndarray) -> np.ndarray:
    return sorted_x.size - np.searchsorted(sorted_x, t, side="left")


def _count_in(sorted_x: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    n = np.searchsorted(sorted_x, hi, side="right") - np.searchsorted(sorted_x, lo, side="left")
    return np.maximum(n, 0)


def _threshold_counts(pos: np.ndarray, neg: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Family (a): "positive iff φ ≥ t", t on a grid over the pooled range at 100 thresholds per unit."""
    lo = min(pos.min(), neg.min())
    hi = max(pos.max(), neg.max())
    # As the official code: torch.linspace on the float64 extremes, whose result is float32 (torch's default
    # dtype), compared with the float64 statistics. Built on the CPU here; the official grid is built on the GPU.
    n = int(np.ceil((hi - lo) * _THRESHOLDS_PER_UNIT))
    t = torch.linspace(torch.tensor(lo, dtype=torch.float64), torch.tensor(hi, dtype=torch.float64), n)
    t = t.to(torch.float64).numpy()
    tp = _count_ge(pos, t)
    fp = _count_ge(neg, t)
    return tp, pos.size - tp, fp, np.full_like(fp, neg.size)


def _interval_counts(pos: np.ndarray, neg: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Family (b): "the peakier sample iff l ≤ φ ≤ r", the official grid of (l, r) pairs.

    The peakier sample (smaller range; on a tie the sample oriented negative, as the official code swaps when
    ``range(pos) >= range(neg)``) becomes the positive class. Right ends r run over [min + w − 2, max + 2] of the
    peakier sample at 100 per unit, w its range; for each r, 400 left ends l span [r − w − 2, r − w + 2], built
    as the official code builds them: one ``np.linspace(r − w − 2, r − w + 2, 400)`` per r (vectorised, same
    arithmetic), not ``r + linspace(−w − 2, −w + 2)``, whose rounding differs and can put a left end exactly on the
    peakier sample's minimum where the official grid has it just above (or below).
    """
    if np.ptp(pos) >= np.ptp(neg):
        pos, neg = neg, pos
    width = float(np.ptp(pos))
    r_lo, r_hi = pos.min() + width - _INTERVAL_BUFFER, pos.max() + _INTERVAL_BUFFER
    right = np.linspace(r_lo, r_hi, int(np.ceil((r_hi - r_lo) * _THRESHOLDS_PER_UNIT)))
    n_left = int(np.ceil(2 * _INTERVAL_BUFFER * _THRESHOLDS_PER_UNIT))
    left = np.linspace(right - width - _INTERVAL_BUFFER, right - width + _INTERVAL_BUFFER, n_left, axis=1).reshape(-1)
    r = np.repeat(right, n_left)
    tp = _count_in(pos, left, r)
    fp = _count_in(neg, left, r)
    return tp, pos.size - tp, fp, np.full_like(fp, neg.size)


def _rule_epsilons(tp: np.ndarray, fn: np.ndarray, fp: np.ndarray, n_neg: np.ndarray, n_pos: int,
                   delta: float) -> np.ndarray:
    """ε per rule; ``inf`` for perfect separation, ``nan`` for discarded rules (exactly one error rate zero)."""
    fpr = fp / n_neg
    fnr = fn / n_pos
    with np.errstate(divide="ignore", invalid="ignore"):
        a = np.log(1.0 - delta - fpr) - np.log(fnr)
        b = np.log(1.0 - delta - fnr) - np.log(fpr)
        e = np.fmax(a, b)  # nan only when both are nan (both rates 1), which the official code also drops
    e = np.maximum(e, 0.0)  # nan stays nan
    both = (fp == 0) & (fn == 0)
    one = (fp == 0) ^ (fn == 0)
    e = np.where(both, np.inf, e)
    return np.where(one, np.nan, e)


def challenge_epsilon(unlearned: Any, retrained: Any, *, delta: float = CHALLENGE_DELTA,
                      cap: float = CHALLENGE_EPSILON_CAP,
                      rules: Sequence[str] = ("threshold", "interval")) -> float:
    """The challenge's ε estimate for one forget example from its ``φ`` under N unlearned and N retrained models.

    Exactly the official scorer's procedure (spec §2.6, ``metric.py`` @ffae0ff):

    1. Degenerate guard: if (range of the narrower sample) / (range of the wider) < 0.01, ε = ``cap``.
       Both samples constant (a case the official code crashes on): ε = 0 if they are equal, else ``cap``.
    2. Orientation: the sample with the larger median is "positive" (the unlearned one on a tie).
    3. Rules: (a) single thresholds "positive iff φ ≥ t"; (b) intervals "peakier sample iff l ≤ φ ≤ r"
       (:func:`_interval_counts` documents the grid).
    4. Per rule: FPR = FNR = 0 gives ε = ∞; exactly one of them 0 discards the rule (small-N artefact); otherwise
       ``ε = max(log(1 − δ − FPR) − log FNR, log(1 − δ − FNR) − log FPR)`` clipped below at 0.
    5. ε_s = the largest ε over the kept rules, clipped to ``[0, cap]``. If every rule is discarded (only possible
       for tiny contrived samples; the official code asserts) ε_s = 0.

    Grids are built with the official arithmetic: the interval ends in float64 with one ``np.linspace`` per right
    end, the single thresholds with ``torch.linspace`` in float32 (here on the CPU, officially on the GPU). A
    grid point can coincide with a sample value even for continuous statistics, since the interval grid is
    anchored at the peakier sample's extremes (``r = min + w − 2``, so ``r − w + 2`` is that minimum up to rounding),
    so the grid's rounding decides whether that sample counts; building it as the official code does makes the two
    agree exactly. Issue 19 measured ε 3.258 against the official 2.890 for one example in 60 (N = 32) with the
    former ``r + linspace(−w − 2, −w + 2)`` grid; the test fixture (two models nearly tied at the peakier
    sample's minimum) shows 3.401 against 3.367, and equality with the official construction.

    Args:
        unlearned, retrained: 1-D samples of ``φ`` (one value per model).
        delta: δ of the (ε, δ) estimate (official 1e-5).
        cap: the ε cap (official 50).
        rules: which rule families to use (both by default, as the official scorer).
    """
    u = np.sort(np.asarray(unlearned, dtype=np.float64).reshape(-1))
    r = np.sort(np.asarray(retrained, dtype=np.float64).reshape(-1))
    if u.size < 2 or r.size < 2:
        raise DataError(f"need at least 2 models per side, got {u.size} unlearned and {r.size} retrained")
    if not (np.all(np.isfinite(u)) and np.all(np.isfinite(r))):
        raise DataError("the φ samples contain NaN/Inf; check the models' logits")
    unknown = set(rules) - {"threshold", "interval"}
    if unknown or not rules:
        raise DataError(f"rules must be a non-empty subset of ('threshold', 'interval'), got {tuple(rules)}")
    du, dr = float(np.ptp(u)), float(np.ptp(r))
    largest, smallest = max(du, dr), min(du, dr)
    if largest == 0.0:
        return 0.0 if u[0] == r[0] else float(cap)
    if smallest / largest < _DEGENERATE_RATIO:
        return float(cap)
    pos, neg = (r, u) if np.median(r) > np.median(u) else (u, r)
    eps: list[np.ndarray] = []
    for fam in rules:
        tp, fn, fp, n_neg = (_threshold_counts if fam == "threshold" else _interval_counts)(pos, neg)
        # In the interval family the roles may be swapped; sizes follow the arrays actually used.
        n_pos = tp + fn
        eps.append(_rule_epsilons(tp, fn, fp, n_neg, n_pos, delta))
    e = np.concatenate(eps)
    e = e[~np.isnan(e)]
    if e.size == 0:
        return 0.0
    return float(np.clip(np.max(e), 0.0, cap))


def challenge_epsilons(unlearned_phi: Any, retrained_phi: Any, **kw: Any) -> np.ndarray:
    """:func:`challenge_epsilon` for every example: inputs ``(N_unlearned, n)`` and ``(N_retrained, n)``."""
    u = np.asarray(unlearned_phi, dtype=np.float64)
    r = np.asarray(retrained_phi, dtype=np.float64)
    if u.ndim != 2 or r.ndim != 2 or u.shape[1] != r.shape[1]:
        raise DataError(f"expected (models, examples) arrays over the same examples, got {u.shape} and {r.shape}")
    return np.array([challenge_epsilon(u[:, j], r[:, j], **kw) for j in range(u.shape[1])])


def challenge_bins(num_models: int) -> list[tuple[float, float, float]]:
    """The scoring bins ``(lo, hi, points)``: ``[0.5k, 0.5(k+1))`` earns ``2^−k`` while ``0.5(k+1) ≤ ⌈ln(N−1)⌉``.

    ``N`` is the number of unlearned models (official code). With N samples per side the smallest non-zero error
    rate is 1/N, so finite ε estimates saturate near ln N and smaller N measures less: N = 512 gives 14 bins up
    to ε = 7, N = 32 gives 8 bins up to 4, N = 3 two bins up to 1. An ε beyond the last bin earns 0.

    Raises:
        DataError: N < 3 (no bin would exist).
    """
    if num_models < 3:
        raise DataError(f"the challenge score needs at least 3 models per side, got {num_models}")
    max_eps = math.ceil(math.log(num_models - 1))
    bins = []
    k = 0
    while _BIN_WIDTH * (k + 1) <= max_eps:
        bins.append((_BIN_WIDTH * k, _BIN_WIDTH * (k + 1), 2.0 ** -k))
        k += 1
    return bins


def forgetting_quality(epsilons: Any, num_models: int) -> float:
    """``F = (1/|D_f|) Σ_s H(s)``, ``H(s) = 2^−k`` for ε_s in bin k of :func:`challenge_bins`; in [0, 1]."""
    e = np.asarray(epsilons, dtype=np.float64).reshape(-1)
    if e.size == 0:
        raise DataError("no per-example epsilons given; the forget set must be non-empty")
    bins = challenge_bins(num_models)
    pts = np.zeros(e.size)
    done = np.zeros(e.size, dtype=bool)
    for _lo, hi, p in bins:  # first bin whose upper end exceeds ε, as the official loop does
        hit = (~done) & (e < hi)
        pts[hit] = p
        done |= hit
    return float(np.mean(pts))


def challenge_score(forget_quality: float, retain_acc_unlearned: Any, retain_acc_retrained: Any,
                    test_acc_unlearned: Any, test_acc_retrained: Any) -> float:
    """Final challenge score ``F · (RA_U / RA_R) · (TA_U / TA_R)`` (spec §1.5), accuracies averaged over models.

    Ratios above 1 (beating the retrained models' utility) are kept, as the official scorer does.
    """
    ra_u, ra_r, ta_u, ta_r = (float(np.mean(np.asarray(a, dtype=np.float64)))
                              for a in (retain_acc_unlearned, retain_acc_retrained, test_acc_unlearned,
                                        test_acc_retrained))
    if ra_r <= 0 or ta_r <= 0:
        raise DataError(f"the retrained models' retain/test accuracy must be positive, got {ra_r}, {ta_r}")
    return float(forget_quality * (ra_u / ra_r) * (ta_u / ta_r))
