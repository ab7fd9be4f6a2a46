"""Pure metric functions of per-example signals (logits, losses) and labels.

Every function here takes numpy arrays (or anything ``np.asarray`` accepts) and returns plain floats or arrays, so
the same code scores the unlearned, the original and the retrained model, and the audit tier (issue 10) reuses it.
Nothing in this module runs a model: :class:`unlearnkit.evaluation.Evaluator` computes the logits once per model and
set and calls these functions.

Units: accuracies, attack accuracies, member/non-member rates, TPRs and gaps between them are in **percent**
(0–100), as SalUn and the results tables report them. AUC, the KS statistic, JS divergence (nats), activation
distance and Tug-of-War are unitless. Undefined values (an empty set, a class with no test example) are ``nan``;
the evaluator turns them into ``None`` in its output.

Definitions, sources and better directions are documented per function and in ``docs/metrics.md``. The spec is
``shared/specs/evaluation.md`` (sections cited as §x.y).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score, roc_curve
from sklearn.model_selection import StratifiedShuffleSplit, cross_val_score
from sklearn.svm import SVC

from ..errors import DataError

__all__ = [
    "GAP_METRICS",
    "accuracy",
    "activation_distance",
    "avg_gap",
    "bernoulli_entropy",
    "bernoulli_js_divergence",
    "class_matched_mask",
    "cross_entropy_losses",
    "entropy",
    "gaps",
    "js_divergence",
    "ks_statistic",
    "log_softmax",
    "loss_attack",
    "loss_histogram",
    "lr_loss_attack_accuracy",
    "mia_efficacy",
    "modified_entropy",
    "per_class_accuracy",
    "per_class_l1_gap",
    "roc_auc",
    "sigmoid_activation_distance",
    "softmax",
    "streisand_flag",
    "streisand_margin",
    "svc_member_rate",
    "tow",
    "tow_mia",
    "tpr_at_fpr",
    "true_label_confidence",
]

# Metrics whose signed/absolute gap to the retrained reference the evaluator reports (tier b, §6).
GAP_METRICS: tuple[str, ...] = (
    "forget_acc", "retain_acc", "test_acc", "test_acc_full", "val_acc", "unlearn_acc", "test_acc_remaining",
    "test_acc_forgotten", "mia_efficacy", "mia_efficacy_full_test", "mia_entropy_member_rate", "mia_lr_loss_acc",
    "mia_loss_auc", "mia_loss_tpr_at_1pct_fpr", "mia_loss_tpr_at_0.1pct_fpr", "loss_ks_forget_test",
)

# SCRUB clips per-example losses to ±100 before the logistic-regression attack (§2.5), so a few infinite or huge
# losses (float overflow of a saturated softmax) cannot dominate the fit.
LOSS_CLIP = 100.0


# ---------------------------------------------------------------------------------------------------------------
# Per-example signals from logits
# ---------------------------------------------------------------------------------------------------------------


def _logits(logits: Any) -> np.ndarray:
    z = np.asarray(logits, dtype=np.float64)
    if z.ndim != 2:
        raise DataError(f"logits must be a 2-D array (examples × classes), got shape {z.shape}")
    return z


def _labels(labels: Any, n: int) -> np.ndarray:
    y = np.asarray(labels).astype(np.int64, copy=False).reshape(-1)
    if y.shape[0] != n:
        raise DataError(f"got {y.shape[0]} labels for {n} examples; pass one label per row of logits")
    return y


def _logsumexp(z: np.ndarray, axis: int = 1) -> np.ndarray:
    m = np.max(z, axis=axis, keepdims=True)
    m = np.where(np.isfinite(m), m, 0.0)
    with np.errstate(divide="ignore"):
        return np.log(np.sum(np.exp(z - m), axis=axis)) + np.squeeze(m, axis=axis)


def log_softmax(logits: Any) -> np.ndarray:
    """Row-wise log-softmax in float64, stable for large logits."""
    z = _logits(logits)
    return z - _logsumexp(z)[:, None]


def softmax(logits: Any) -> np.ndarray:
    """Row-wise softmax in float64."""
    return np.exp(log_softmax(logits))


def cross_entropy_losses(logits: Any, labels: Any) -> np.ndarray:
    """Per-example cross-entropy ``logsumexp(z) − z_y`` (nats). Lower means the model fits the example better."""
    z = _logits(logits)
    y = _labels(labels, z.shape[0])
    return _logsumexp(z) - z[np.arange(z.shape[0]), y]


def true_label_confidence(logits: Any, labels: Any) -> np.ndarray:
    """Per-example softmax probability of the true label, ``p_y``: SalUn's MIA feature (§2.3)."""
    return np.exp(-cross_entropy_losses(logits, labels))


def entropy(logits: Any) -> np.ndarray:
    """Per-example Shannon entropy of the softmax (nats): the Bad-Teacher / zero-shot attack feature (§2.4)."""
    lp = log_softmax(logits)
    p = np.exp(lp)
    # 0·log 0 = 0: exp(-inf) is exactly 0, and the product with a finite mask avoids nan.
    return -np.sum(np.where(p > 0, p * lp, 0.0), axis=1)


def _bernoulli_logits(logits: Any) -> np.ndarray:
    """``(n, L)`` multi-label logits as ``(n·L, 2)`` two-class logits ``[z, 0]``: softmax of a row is
    ``[σ(z), 1 − σ(z)]``, the label's Bernoulli distribution, so the softmax metrics apply per label."""
    z = _logits(logits)
    return np.stack([z.reshape(-1), np.zeros(z.size)], axis=1)


def bernoulli_entropy(logits: Any) -> np.ndarray:
    """Multi-label: per-example sum over labels of the binary entropy of ``σ(z_l)`` (nats)."""
    z = _logits(logits)
    return entropy(_bernoulli_logits(z)).reshape(z.shape).sum(axis=1)


def _log1m_softmax(logits: np.ndarray) -> np.ndarray:
    """``log(1 − p_j)`` for every entry, accurate even when ``p_j`` is within rounding of 1.

    Only the largest probability of a row can exceed ½; for it, ``1 − p_max = Σ_{k≠max} p_k`` is taken as a
    log-sum-exp of the other logits (no cancellation). The others use ``log1p(−p)``, which is accurate for p ≤ ½.
    """
    z = logits
    lse = _logsumexp(z)
    lp = z - lse[:, None]
    with np.errstate(divide="ignore"):  # the argmax entries may hit log(0) here; they are replaced below
        out = np.log1p(-np.minimum(np.exp(lp), 1.0))
    am = np.argmax(z, axis=1)
    rows = np.arange(z.shape[0])
    others = z.copy()
    others[rows, am] = -np.inf
    out[rows, am] = _logsumexp(others) - lse
    return out


def modified_entropy(logits: Any, labels: Any) -> np.ndarray:
    """Song & Mittal's modified prediction entropy, the correct version (§2.3 item 6).

    ``Mentr(x, y) = −(1 − p_y)·log p_y − Σ_{j≠y} p_j·log(1 − p_j)``. Low for confidently correct predictions
    (members), high for confident mistakes. This follows the numpy ``MIA.py`` of Song & Mittal / SalUn, not the torch
    variant in SalUn's ``SVC_MIA.py``, which takes ``log p`` where ``log(1 − p)`` is needed and indexes the label
    column of every row with one label. Computed from logits with ``log(1 − p)`` evaluated without cancellation.
    """
    z = _logits(logits)
    y = _labels(labels, z.shape[0])
    rows = np.arange(z.shape[0])
    lp = z - _logsumexp(z)[:, None]
    l1m = _log1m_softmax(z)
    p = np.exp(lp)
    term_y = -np.exp(l1m[rows, y]) * lp[rows, y]
    t = -p * l1m
    t[rows, y] = 0.0
    return term_y + np.sum(t, axis=1)


# ---------------------------------------------------------------------------------------------------------------
# Accuracies
# ---------------------------------------------------------------------------------------------------------------


def _pred(pred_or_logits: Any) -> np.ndarray:
    a = np.asarray(pred_or_logits)
    return np.argmax(a, axis=1) if a.ndim == 2 else a.reshape(-1)


def accuracy(pred_or_logits: Any, labels: Any) -> float:
    """Share of correct predictions in percent (``nan`` for an empty set). Accepts logits (argmax) or labels."""
    p = _pred(pred_or_logits)
    y = _labels(labels, p.shape[0])
    if y.size == 0:
        return math.nan
    return float(100.0 * np.mean(p == y))


def per_class_accuracy(pred_or_logits: Any, labels: Any, num_classes: int) -> np.ndarray:
    """Accuracy (percent) on the examples of each class ``0..num_classes−1``; ``nan`` for a class with none."""
    p = _pred(pred_or_logits)
    y = _labels(labels, p.shape[0])
    counts = np.bincount(y, minlength=num_classes).astype(np.float64)
    hits = np.bincount(y, weights=(p == y).astype(np.float64), minlength=num_classes)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(counts > 0, 100.0 * hits / np.maximum(counts, 1), np.nan)[:num_classes]


def class_matched_mask(test_labels: Any, forget_labels: Any) -> np.ndarray:
    """Boolean mask of the test examples whose class occurs in the forget set (SCRUB's class matching, §2.5, §5.6).

    Non-members of other classes would let an attack detect the class instead of membership.
    """
    return np.isin(np.asarray(test_labels), np.unique(np.asarray(forget_labels)))


# ---------------------------------------------------------------------------------------------------------------
# ROC analysis
# ---------------------------------------------------------------------------------------------------------------


def _member_labels(members: np.ndarray, nonmembers: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    scores = np.concatenate([members, nonmembers])
    labels = np.concatenate([np.ones(members.shape[0]), np.zeros(nonmembers.shape[0])])
    return scores, labels


def roc_auc(member_scores: Any, nonmember_scores: Any) -> float:
    """ROC AUC of "member if score is high" (scikit-learn's ``roc_auc_score``); ``nan`` if a side is empty.

    0.5: the attack cannot tell the sets apart; 1: every member scores above every non-member.
    """
    m = np.asarray(member_scores, dtype=np.float64).reshape(-1)
    n = np.asarray(nonmember_scores, dtype=np.float64).reshape(-1)
    if m.size == 0 or n.size == 0:
        return math.nan
    s, y = _member_labels(m, n)
    return float(roc_auc_score(y, s))


def tpr_at_fpr(fpr: Any, tpr: Any, target: float) -> float:
    """TPR of a ROC curve at false-positive rate ``target`` (fractions in [0, 1]).

    Convention: the ROC curve is the piecewise-linear curve through the points of ``roc_curve`` (with
    ``drop_intermediate=False``); the value is the **highest** TPR on that curve at FPR exactly ``target``. Where
    ``target`` falls between two ROC points it is the linear interpolation between them, which a randomised mix of
    the two neighbouring thresholds achieves; where the curve rises vertically at ``target`` it is the top of that
    segment. LiRA's code instead takes the last ROC point with FPR below the target (a step function), which is
    never higher. With fewer than ``1/target`` non-members the value is an interpolation towards the first ROC
    point and carries little information.
    """
    f = np.asarray(fpr, dtype=np.float64)
    t = np.asarray(tpr, dtype=np.float64)
    if f.size == 0:
        return math.nan
    if not 0.0 <= target <= 1.0:
        raise DataError(f"target FPR must lie in [0, 1], got {target}")
    i = int(np.searchsorted(f, target, side="right")) - 1  # last point with fpr <= target
    if i < 0:
        return 0.0
    if f[i] == target or i == f.size - 1:
        return float(t[i])
    return float(t[i] + (t[i + 1] - t[i]) * (target - f[i]) / (f[i + 1] - f[i]))


def loss_attack(member_losses: Any, nonmember_losses: Any,
                fprs: Sequence[float] = (0.01, 0.001)) -> dict[str, float]:
    """Loss-threshold membership attack (Yeom et al. 2018; §2.2): predict "member" when the loss is low.

    Members are the forget set, non-members the class-matched test set. Returns ``auc`` (threshold-free, in [0, 1])
    and ``tpr_at_<f>`` (percent) for each FPR ``f`` in ``fprs`` (fractions), interpolated as :func:`tpr_at_fpr`
    documents, plus ``best_balanced_acc`` (percent; max over thresholds of (TPR + TNR)/2).
    The retrained model's value is the target: about 0.5 AUC for random forget sets (forget ≈ test data).
    """
    m = np.asarray(member_losses, dtype=np.float64).reshape(-1)
    n = np.asarray(nonmember_losses, dtype=np.float64).reshape(-1)
    out: dict[str, float] = {"auc": math.nan, "best_balanced_acc": math.nan}
    for f in fprs:
        out[f"tpr_at_{f:g}"] = math.nan
    if m.size == 0 or n.size == 0:
        return out
    # Score = −loss so that "higher score = more likely member"; losses may contain +inf (p_y underflow): clip.
    s, y = _member_labels(-np.clip(m, -1e300, 1e300), -np.clip(n, -1e300, 1e300))
    fpr, tpr, _ = roc_curve(y, s, drop_intermediate=False)
    out["auc"] = float(roc_auc_score(y, s))
    out["best_balanced_acc"] = float(100.0 * np.max((tpr + 1.0 - fpr) / 2.0))
    for f in fprs:
        out[f"tpr_at_{f:g}"] = 100.0 * tpr_at_fpr(fpr, tpr, f)
    return out


def ks_statistic(a: Any, b: Any) -> float:
    """Two-sample Kolmogorov–Smirnov statistic ``sup_x |F_a(x) − F_b(x)|`` of the empirical CDFs, in [0, 1].

    Used on forget vs class-matched test losses as a retrain-free distribution distance (§6 tier a). The retrained
    model's value is the target (small for random forget sets). Equals ``scipy.stats.ks_2samp(a, b).statistic``.
    """
    x = np.sort(np.asarray(a, dtype=np.float64).reshape(-1))
    z = np.sort(np.asarray(b, dtype=np.float64).reshape(-1))
    if x.size == 0 or z.size == 0:
        return math.nan
    grid = np.concatenate([x, z])
    fa = np.searchsorted(x, grid, side="right") / x.size
    fb = np.searchsorted(z, grid, side="right") / z.size
    return float(np.max(np.abs(fa - fb)))


# ---------------------------------------------------------------------------------------------------------------
# Population attacks (no shadow models)
# ---------------------------------------------------------------------------------------------------------------


def _col(a: Any) -> np.ndarray:
    return np.asarray(a, dtype=np.float64).reshape(-1, 1)


def svc_member_rate(member_feat: Any, nonmember_feat: Any, target_feat: Any) -> float:
    """Percent of ``target_feat`` an RBF SVC (C=3, gamma='auto') predicts "member".

    The SVC is fit on ``member_feat`` (label 1) against ``nonmember_feat`` (label 0), as in SalUn's ``SVC_MIA`` and
    Bad Teacher's entropy attack (§2.3, §2.4). ``nan`` when a set is empty.
    """
    m, n, t = _col(member_feat), _col(nonmember_feat), _col(target_feat)
    if m.shape[0] == 0 or n.shape[0] == 0 or t.shape[0] == 0:
        return math.nan
    # Non-finite features (an entropy of a NaN logit) would make libsvm fail with an obscure message.
    for name, a in (("member", m), ("non-member", n), ("target", t)):
        if not np.all(np.isfinite(a)):
            raise DataError(f"the {name} attack features contain NaN/Inf: the model produced non-finite logits")
    clf = SVC(C=3.0, gamma="auto", kernel="rbf")
    clf.fit(np.concatenate([m, n]), np.concatenate([np.ones(m.shape[0]), np.zeros(n.shape[0])]))
    return float(100.0 * np.mean(clf.predict(t)))


def mia_efficacy(member_conf: Any, nonmember_conf: Any, forget_conf: Any) -> float:
    """SalUn / Jia et al. MIA-Efficacy (§2.3): percent of the forget set predicted **non-member**.

    An RBF SVC (C=3, gamma='auto') on the true-label confidence ``p_y`` is fit on a retain subsample of the size of
    the test set (members) against the test set (non-members), then applied to the forget set:
    ``100 · TN / |D_f|``. Target: the retrained model's value (near 100 for class forgetting, about the share of
    test-like forget examples, far below 100, for random forgetting). Not "higher is better" (§5.1).
    """
    rate = svc_member_rate(member_conf, nonmember_conf, forget_conf)
    return math.nan if math.isnan(rate) else 100.0 - rate


def lr_loss_attack_accuracy(forget_losses: Any, test_losses: Any, *, n_splits: int = 10, seed: int = 0) -> float:
    """Cross-validated logistic-regression attack on losses (starter kit / SCRUB / Deep Unlearn, §2.5), percent.

    Forget losses (label 1) against non-member losses (label 0; pass the class-matched test set). The larger side
    is subsampled at random (seeded) to the size of the smaller, losses are clipped to ±100 (SCRUB), and
    ``LogisticRegression`` is scored by ``StratifiedShuffleSplit(n_splits, test_size=0.1, random_state=seed)``; the
    result is the mean held-out accuracy. Target: the retrained model's value (about 50 for i.i.d. forget sets).
    ``nan`` when either side has fewer than 10 examples (a 10% split would hold fewer than one per class).
    """
    f = np.asarray(forget_losses, dtype=np.float64).reshape(-1)
    t = np.asarray(test_losses, dtype=np.float64).reshape(-1)
    n = min(f.size, t.size)
    if n < 10:
        return math.nan
    rng = np.random.default_rng(seed)
    # Sorted draws keep the subsample independent of the order of the larger side's signals.
    if f.size > n:
        f = f[np.sort(rng.choice(f.size, n, replace=False))]
    if t.size > n:
        t = t[np.sort(rng.choice(t.size, n, replace=False))]
    x = np.clip(np.concatenate([f, t]), -LOSS_CLIP, LOSS_CLIP).reshape(-1, 1)
    y = np.concatenate([np.ones(n), np.zeros(n)])
    cv = StratifiedShuffleSplit(n_splits=n_splits, test_size=0.1, random_state=seed)
    scores = cross_val_score(LogisticRegression(), x, y, cv=cv, scoring="accuracy")
    return float(100.0 * np.mean(scores))


def streisand_margin(test_acc: float, n_forget: int, n_test: int) -> float:
    """Margin (percentage points) below test accuracy at which the Streisand flag trips.

    ``max(2, 1.96 · 100 · sqrt(p(1−p)(1/n_f + 1/n_t)))`` with ``p = test_acc/100``: the 95% two-proportion
    sampling band of the difference between forget and test accuracy if forget examples behaved like unseen data,
    with a floor of 2 points so that tiny sampling noise on large sets does not trip it.
    """
    p = min(max(test_acc / 100.0, 0.0), 1.0)
    band = 1.96 * 100.0 * math.sqrt(p * (1.0 - p) * (1.0 / max(n_forget, 1) + 1.0 / max(n_test, 1)))
    return max(2.0, band)


def streisand_flag(forget_acc: float, test_acc: float, n_forget: int, n_test: int) -> float:
    """1.0 when forget accuracy is below test accuracy by more than :func:`streisand_margin`, else 0.0 (§5.2).

    Meant for random (non-class) requests: a retrained model scores forget ≈ test accuracy there, so a forget set
    that does markedly *worse* than unseen data is over-forgotten and stands out to an attacker. Returned as a
    float so that the mean over seeds is the share of flagged runs; ``nan`` if an input is ``nan``.
    """
    if math.isnan(forget_acc) or math.isnan(test_acc):
        return math.nan
    return 1.0 if forget_acc < test_acc - streisand_margin(test_acc, n_forget, n_test) else 0.0


def loss_histogram(losses: Any, edges: np.ndarray) -> list[int]:
    """Counts of ``losses`` in the bins ``edges`` after clipping into ``[edges[0], edges[-1]]`` (for plots)."""
    x = np.clip(np.nan_to_num(np.asarray(losses, dtype=np.float64), posinf=edges[-1]), edges[0], edges[-1])
    return np.histogram(x, bins=edges)[0].astype(int).tolist()


# ---------------------------------------------------------------------------------------------------------------
# Distances to the retrained reference (tier b)
# ---------------------------------------------------------------------------------------------------------------


def js_divergence(logits_p: Any, logits_q: Any) -> float:
    """Mean over examples of the Jensen–Shannon divergence of two models' softmax outputs, in nats (§3).

    ``JS(p‖q) = ½KL(p‖m) + ½KL(q‖m)``, ``m = ½(p + q)``; per example in ``[0, ln 2]``, symmetric, 0 when the two
    models agree. Textbook definition (not Bad-Teacher's reversed-KL ``JSDiv``). Lower is better.
    """
    lp, lq = log_softmax(logits_p), log_softmax(logits_q)
    if lp.shape != lq.shape:
        raise DataError(f"the two models' logits differ in shape: {lp.shape} vs {lq.shape}")
    if lp.shape[0] == 0:
        return math.nan
    lm = np.logaddexp(lp, lq) - math.log(2.0)
    p, q = np.exp(lp), np.exp(lq)
    kl_pm = np.sum(np.where(p > 0, p * (lp - lm), 0.0), axis=1)
    kl_qm = np.sum(np.where(q > 0, q * (lq - lm), 0.0), axis=1)
    return float(np.mean(0.5 * kl_pm + 0.5 * kl_qm))


def bernoulli_js_divergence(logits_p: Any, logits_q: Any) -> float:
    """Multi-label: mean over examples of the Jensen–Shannon divergence of the two models' per-label Bernoulli
    outputs ``σ(z_l)``, summed over the labels (nats; per example in ``[0, L·ln 2]``). Lower is better."""
    zp, zq = _logits(logits_p), _logits(logits_q)
    if zp.shape != zq.shape:
        raise DataError(f"the two models' logits differ in shape: {zp.shape} vs {zq.shape}")
    if zp.shape[0] == 0:
        return math.nan
    return js_divergence(_bernoulli_logits(zp), _bernoulli_logits(zq)) * zp.shape[1]


def sigmoid_activation_distance(logits_p: Any, logits_q: Any) -> float:
    """Multi-label: mean over examples of ``‖σ(p) − σ(q)‖₂`` over the per-label probabilities. Lower is better."""
    zp, zq = _logits(logits_p), _logits(logits_q)
    if zp.shape != zq.shape:
        raise DataError(f"the two models' logits differ in shape: {zp.shape} vs {zq.shape}")
    if zp.shape[0] == 0:
        return math.nan
    return float(np.mean(np.linalg.norm(_sigmoid(zp) - _sigmoid(zq), axis=1)))


def _sigmoid(z: np.ndarray) -> np.ndarray:
    return np.exp(-np.logaddexp(0.0, -z))


def activation_distance(logits_p: Any, logits_q: Any) -> float:
    """Mean over examples of ``‖softmax(p) − softmax(q)‖₂`` (Chundawat et al. AAAI'23, §3). Lower is better."""
    p, q = softmax(logits_p), softmax(logits_q)
    if p.shape != q.shape:
        raise DataError(f"the two models' logits differ in shape: {p.shape} vs {q.shape}")
    if p.shape[0] == 0:
        return math.nan
    return float(np.mean(np.linalg.norm(p - q, axis=1)))


def gaps(unlearned: Mapping[str, Any], reference: Mapping[str, Any],
         names: Sequence[str] = GAP_METRICS) -> dict[str, float]:
    """``gap_<m> = u − r`` (signed) and ``absgap_<m> = |u − r|`` for each metric ``m`` present in both dicts.

    Signed gaps show the direction (negative forget-accuracy gap: over-forgetting, §5.2). Missing or ``None``
    values give ``nan``.
    """
    out: dict[str, float] = {}
    for m in names:
        u, r = unlearned.get(m), reference.get(m)
        if u is None or r is None or (isinstance(u, float) and math.isnan(u)) or (
                isinstance(r, float) and math.isnan(r)):
            out[f"gap_{m}"] = out[f"absgap_{m}"] = math.nan
        else:
            out[f"gap_{m}"] = float(u) - float(r)
            out[f"absgap_{m}"] = abs(float(u) - float(r))
    return out


def avg_gap(u: Mapping[str, float], r: Mapping[str, float]) -> float:
    """SalUn's Avg. Gap (§1.2): mean absolute gap, in points, over UA, RA, TA and MIA-Efficacy.

    ``UA = 100 − FA``, so ``|ΔUA| = |ΔFA|`` and the forget-accuracy gap is used directly. Lower is better; 0 means
    the unlearned model matches the retrained one on all four. For class requests the evaluator's ``test_acc`` and
    ``mia_efficacy`` follow SalUn's class-wise protocol (forgotten classes removed from the test set, for TA and
    for the attack's non-members), so this is SalUn's figure there too.
    """
    keys = ("forget_acc", "retain_acc", "test_acc", "mia_efficacy")
    return float(np.mean([abs(float(u[k]) - float(r[k])) for k in keys]))


def tow(u: Mapping[str, float], r: Mapping[str, float]) -> float:
    """Tug-of-War (Zhao et al. NeurIPS'24, §1.3): ``Π_{s∈{forget,retain,test}} (1 − |acc_u(s) − acc_r(s)|)``.

    Accuracies are converted from percent to fractions. In [0, 1]; 1 means the retrained model is matched on all
    three splits. Higher is better.
    """
    return float(np.prod([1.0 - abs(float(u[k]) - float(r[k])) / 100.0
                          for k in ("forget_acc", "retain_acc", "test_acc")]))


def tow_mia(u: Mapping[str, float], r: Mapping[str, float]) -> float:
    """ToW-MIA (RUM ``analysis_mia.py``, §1.3): ToW with the forget factor replaced by the MIA-Efficacy gap."""
    return float(np.prod([1.0 - abs(float(u[k]) - float(r[k])) / 100.0
                          for k in ("mia_efficacy", "retain_acc", "test_acc")]))


def per_class_l1_gap(acc_u: Any, acc_r: Any) -> float:
    """L1 distance (sum over classes, percentage points) between two per-class test-accuracy vectors.

    Classes without test examples (``nan`` in either vector) are skipped. Lower is better; 0 matches the retrain.
    """
    a = np.asarray(acc_u, dtype=np.float64)
    b = np.asarray(acc_r, dtype=np.float64)
    d = np.abs(a - b)
    return float(np.sum(d[np.isfinite(d)])) if np.isfinite(d).any() else math.nan
