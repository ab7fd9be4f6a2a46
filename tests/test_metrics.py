"""Metric functions against scikit-learn / scipy and hand-computed values; hypothesis properties."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats
from sklearn.metrics import accuracy_score, recall_score, roc_auc_score

from unlearnkit.data.base import LabeledDataset
from unlearnkit.errors import DataError
from unlearnkit.evaluation import mean_ci95, summarize
from unlearnkit.evaluation import metrics as M
from unlearnkit.evaluation.signals import compute_signals

RNG = np.random.default_rng(1234)


# ---------------------------------------------------------------------------------------------------------------
# Accuracies
# ---------------------------------------------------------------------------------------------------------------


def test_accuracy_equals_sklearn() -> None:
    logits = RNG.normal(size=(257, 7))
    y = RNG.integers(0, 7, 257)
    assert M.accuracy(logits, y) == pytest.approx(100 * accuracy_score(y, logits.argmax(1)))
    assert M.accuracy(logits.argmax(1), y) == pytest.approx(100 * accuracy_score(y, logits.argmax(1)))
    assert math.isnan(M.accuracy(np.zeros((0, 3)), np.zeros(0)))


def test_per_class_accuracy_equals_sklearn_recall() -> None:
    logits = RNG.normal(size=(300, 5))
    y = RNG.integers(0, 4, 300)  # class 4 has no example
    pc = M.per_class_accuracy(logits, y, 5)
    ref = 100 * recall_score(y, logits.argmax(1), labels=[0, 1, 2, 3], average=None, zero_division=0)
    np.testing.assert_allclose(pc[:4], ref)
    assert math.isnan(pc[4])


def test_class_matched_mask() -> None:
    assert M.class_matched_mask([0, 1, 2, 3, 1], [1, 3, 3]).tolist() == [False, True, False, True, True]


# ---------------------------------------------------------------------------------------------------------------
# Signals from logits
# ---------------------------------------------------------------------------------------------------------------


def test_losses_confidence_entropy_match_torch_and_scipy() -> None:
    z = RNG.normal(size=(50, 6)) * 3
    y = RNG.integers(0, 6, 50)
    ce = torch.nn.functional.cross_entropy(torch.tensor(z), torch.tensor(y), reduction="none").numpy()
    np.testing.assert_allclose(M.cross_entropy_losses(z, y), ce, rtol=1e-10)
    p = torch.softmax(torch.tensor(z), 1).numpy()
    np.testing.assert_allclose(M.true_label_confidence(z, y), p[np.arange(50), y], rtol=1e-10)
    np.testing.assert_allclose(M.entropy(z), stats.entropy(p, axis=1), rtol=1e-10)
    # Huge logits stay finite (no overflow in the softmax).
    big = np.array([[1000.0, 0.0, -1000.0]])
    assert np.isfinite(M.cross_entropy_losses(big, [2])).all()
    assert M.entropy(big)[0] == pytest.approx(0.0, abs=1e-12)


def test_modified_entropy_closed_form_and_stability() -> None:
    # Two classes, p = (0.8, 0.2), y = 0: −(1 − 0.8)·ln 0.8 − 0.2·ln(1 − 0.2) = −0.4·ln 0.8.
    z = np.log([[0.8, 0.2]])
    assert M.modified_entropy(z, [0])[0] == pytest.approx(-0.4 * math.log(0.8), rel=1e-12)
    # y = 1: −(1 − 0.2)·ln 0.2 − 0.8·ln(1 − 0.8).
    assert M.modified_entropy(z, [1])[0] == pytest.approx(-0.8 * math.log(0.2) - 0.8 * math.log(0.2), rel=1e-12)
    # Direct formula on moderate logits with 4 classes.
    zz = RNG.normal(size=(40, 4))
    y = RNG.integers(0, 4, 40)
    p = np.exp(zz) / np.exp(zz).sum(1, keepdims=True)
    py = p[np.arange(40), y]
    other = p * np.log(1 - p)
    other[np.arange(40), y] = 0
    ref = -(1 - py) * np.log(py) - other.sum(1)
    np.testing.assert_allclose(M.modified_entropy(zz, y), ref, rtol=1e-9)
    # Saturated softmax: a confident mistake is large and finite, a confident hit is ~0.
    sat = np.array([[60.0, 0.0, 0.0], [60.0, 0.0, 0.0]])
    me = M.modified_entropy(sat, [0, 1])
    assert np.isfinite(me).all() and me[0] < 1e-20 and me[1] > 50


# ---------------------------------------------------------------------------------------------------------------
# ROC analysis and attacks
# ---------------------------------------------------------------------------------------------------------------


def test_roc_auc_equals_sklearn_and_hand_value() -> None:
    # Members {0.9, 0.8, 0.3} vs non-members {0.5, 0.2}: 5 of 6 pairs ordered correctly.
    assert M.roc_auc([0.9, 0.8, 0.3], [0.5, 0.2]) == pytest.approx(5 / 6)
    m, n = RNG.normal(0.3, 1, 80), RNG.normal(0, 1, 120)
    ref = roc_auc_score(np.r_[np.ones(80), np.zeros(120)], np.r_[m, n])
    assert M.roc_auc(m, n) == pytest.approx(ref)
    assert math.isnan(M.roc_auc([], [1.0]))


def test_tpr_at_fpr_interpolates_hand_roc() -> None:
    fpr = np.array([0.0, 0.0, 0.2, 0.2, 0.4, 1.0])
    tpr = np.array([0.0, 0.5, 0.5, 0.75, 1.0, 1.0])
    assert M.tpr_at_fpr(fpr, tpr, 0.0) == pytest.approx(0.5)      # top of the vertical segment at 0
    assert M.tpr_at_fpr(fpr, tpr, 0.1) == pytest.approx(0.5)      # flat segment
    assert M.tpr_at_fpr(fpr, tpr, 0.2) == pytest.approx(0.75)     # top of the vertical segment at 0.2
    assert M.tpr_at_fpr(fpr, tpr, 0.3) == pytest.approx(0.875)    # halfway between (0.2, 0.75) and (0.4, 1)
    assert M.tpr_at_fpr(fpr, tpr, 1.0) == pytest.approx(1.0)
    with pytest.raises(DataError):
        M.tpr_at_fpr(fpr, tpr, 1.5)


def test_loss_attack_hand_computed() -> None:
    # Loss order (ascending): M M N M N M N N N  -> ROC (0,.25) (0,.5) (.2,.5) (.2,.75) (.4,.75) (.4,1) ...
    members = [0.1, 0.2, 0.4, 0.6]
    nonmembers = [0.3, 0.5, 0.7, 0.8, 0.9]
    out = M.loss_attack(members, nonmembers, fprs=(0.01, 0.1, 0.2, 0.3, 0.4))
    assert out["auc"] == pytest.approx(17 / 20)  # 5 + 5 + 4 + 3 of 20 pairs
    assert out["auc"] == pytest.approx(roc_auc_score([1] * 4 + [0] * 5, -np.array(members + nonmembers)))
    assert out["tpr_at_0.01"] == pytest.approx(50.0)
    assert out["tpr_at_0.1"] == pytest.approx(50.0)
    assert out["tpr_at_0.2"] == pytest.approx(75.0)
    assert out["tpr_at_0.3"] == pytest.approx(75.0)
    assert out["tpr_at_0.4"] == pytest.approx(100.0)
    assert out["best_balanced_acc"] == pytest.approx(80.0)  # (1 + 1 − 0.4)/2 at (0.4, 1)


def test_loss_attack_tie_gives_diagonal_segment() -> None:
    # One member and one non-member share the lowest loss: ROC goes (0,0) -> (0.5, 0.5) diagonally.
    out = M.loss_attack([0.1, 0.5], [0.1, 0.9], fprs=(0.25,))
    assert out["tpr_at_0.25"] == pytest.approx(25.0)


def test_ks_equals_scipy() -> None:
    a, b = RNG.normal(0, 1, 137), RNG.normal(0.4, 1.3, 211)
    assert M.ks_statistic(a, b) == pytest.approx(stats.ks_2samp(a, b).statistic)
    ai, bi = RNG.integers(0, 5, 60), RNG.integers(1, 7, 45)  # heavy ties
    assert M.ks_statistic(ai, bi) == pytest.approx(stats.ks_2samp(ai, bi).statistic)
    assert M.ks_statistic([1.0, 2.0], [1.0, 2.0]) == 0.0


def test_mia_efficacy_and_entropy_rate_directions() -> None:
    members = RNG.uniform(0.95, 1.0, 300)        # training data: confident
    nonmembers = RNG.uniform(0.3, 0.9, 300)      # unseen data: less confident
    assert M.mia_efficacy(members, nonmembers, RNG.uniform(0.3, 0.9, 100)) > 90  # forget looks unseen
    assert M.mia_efficacy(members, nonmembers, RNG.uniform(0.95, 1.0, 100)) < 10  # forget looks trained on
    assert M.svc_member_rate(members, nonmembers, RNG.uniform(0.95, 1.0, 100)) > 90
    assert math.isnan(M.mia_efficacy([], nonmembers, members))


def test_lr_loss_attack_accuracy() -> None:
    sep = M.lr_loss_attack_accuracy(RNG.uniform(0, 0.1, 200), RNG.uniform(1, 2, 500), seed=0)
    assert sep == pytest.approx(100.0)
    same = M.lr_loss_attack_accuracy(RNG.exponential(1, 400), RNG.exponential(1, 400), seed=0)
    assert 40 < same < 60
    a, b = RNG.exponential(1, 300), RNG.exponential(1.2, 90)
    assert M.lr_loss_attack_accuracy(a, b, seed=7) == M.lr_loss_attack_accuracy(a, b, seed=7)
    # Clipping: an infinite loss does not break the fit.
    assert math.isfinite(M.lr_loss_attack_accuracy(np.r_[np.inf, a[:99]], b[:90], seed=0))
    assert math.isnan(M.lr_loss_attack_accuracy(a[:9], b, seed=0))


def test_streisand_flag() -> None:
    # Large sets: margin is the 2-point floor.
    assert M.streisand_margin(90.0, 10_000, 10_000) == 2.0
    assert M.streisand_flag(87.0, 90.0, 10_000, 10_000) == 1.0
    assert M.streisand_flag(89.0, 90.0, 10_000, 10_000) == 0.0
    # Small sets: 1.96·100·sqrt(.9·.1·(1/100 + 1/100)) = 8.315 points.
    assert M.streisand_margin(90.0, 100, 100) == pytest.approx(1.96 * 100 * math.sqrt(0.09 * 0.02))
    assert M.streisand_flag(83.0, 90.0, 100, 100) == 0.0
    assert M.streisand_flag(81.0, 90.0, 100, 100) == 1.0


# ---------------------------------------------------------------------------------------------------------------
# Tier (b): gaps to the retrained model
# ---------------------------------------------------------------------------------------------------------------

U = {"forget_acc": 10.0, "retain_acc": 95.0, "test_acc": 90.0, "mia_efficacy": 80.0}
R = {"forget_acc": 0.0, "retain_acc": 97.0, "test_acc": 91.0, "mia_efficacy": 100.0}


def test_avg_gap_tow_hand_computed() -> None:
    assert M.avg_gap(U, R) == pytest.approx((10 + 2 + 1 + 20) / 4)
    assert M.tow(U, R) == pytest.approx(0.9 * 0.98 * 0.99)
    assert M.tow_mia(U, R) == pytest.approx(0.8 * 0.98 * 0.99)
    assert M.tow(R, R) == 1.0 and M.avg_gap(R, R) == 0.0
    g = M.gaps(U, R, names=("forget_acc", "retain_acc", "val_acc"))
    assert g["gap_forget_acc"] == 10.0 and g["gap_retain_acc"] == -2.0 and g["absgap_retain_acc"] == 2.0
    assert math.isnan(g["gap_val_acc"])


def test_js_divergence_closed_form_two_classes() -> None:
    p, q = np.array([0.8, 0.2]), np.array([0.4, 0.6])
    m = (p + q) / 2
    hand = 0.5 * (0.8 * math.log(0.8 / 0.6) + 0.2 * math.log(0.2 / 0.4)) + \
        0.5 * (0.4 * math.log(0.4 / 0.6) + 0.6 * math.log(0.6 / 0.4))
    assert m.tolist() == pytest.approx([0.6, 0.4])
    lp, lq = np.log(p)[None], np.log(q)[None]
    assert M.js_divergence(lp, lq) == pytest.approx(hand, rel=1e-12)
    assert M.js_divergence(lq, lp) == pytest.approx(hand, rel=1e-12)
    # Disjoint supports reach the maximum ln 2; identical outputs give 0.
    assert M.js_divergence([[100.0, -100.0]], [[-100.0, 100.0]]) == pytest.approx(math.log(2), rel=1e-9)
    assert M.js_divergence(lp, lp) == pytest.approx(0.0, abs=1e-15)
    assert M.activation_distance(lp, lq) == pytest.approx(0.4 * math.sqrt(2))


def test_per_class_l1_gap() -> None:
    assert M.per_class_l1_gap([90, 80, np.nan], [85, 90, 50]) == pytest.approx(15.0)


# ---------------------------------------------------------------------------------------------------------------
# Statistics over seeds
# ---------------------------------------------------------------------------------------------------------------


def test_mean_ci95_hand_computed() -> None:
    mean, half = mean_ci95([1.0, 2.0, 3.0])
    # s = 1, t_{0.975, 2} = 4.302652729911275 (Student-t table).
    assert mean == 2.0
    assert half == pytest.approx(4.302652729911275 / math.sqrt(3))
    mean, half = mean_ci95([5.0])
    assert mean == 5.0 and math.isnan(half)


def test_summarize_groups_and_ci() -> None:
    recs = [{"method": "ft", "request": "class:3", "seed": s,
             "metrics": {"forget_acc": v, "per_class_test_acc": [v, None], "flag": s == 1, "note": "x",
                         "val_acc": None, "_hidden": 1}}
            for s, v in ((0, 1.0), (1, 2.0), (2, 3.0))]
    recs.append({"method": "retrain", "request": "class:3", "seed": 0, "metrics": {"forget_acc": 0.0}})
    out = summarize(recs)
    assert [(r["method"], r["seeds"]) for r in out] == [("ft", [0, 1, 2]), ("retrain", [0])]
    m = out[0]["metrics"]
    assert m["forget_acc"] == 2.0 and m["forget_acc_ci95"] == pytest.approx(4.302652729911275 / math.sqrt(3))
    assert m["per_class_test_acc"] == [2.0, None]
    assert m["flag"] == pytest.approx(1 / 3) and m["note"] == "x" and m["val_acc"] is None
    assert "_hidden" not in m and "forget_acc_ci95" not in out[1]["metrics"]
    with pytest.raises(DataError):
        summarize([{"request": "x"}])
    # Cells a method cannot serve: no statistics, status and reason kept when no seed ran.
    na = [{"method": "svd", "request": "random:0.1", "seed": s, "status": "n/a", "reason": "class requests only",
           "metrics": {}} for s in (0, 1)]
    ok_and_na = [{"method": "ft", "request": "r", "seed": 0, "status": "ok", "metrics": {"x": 1.0}},
                 {"method": "ft", "request": "r", "seed": 1, "status": "n/a", "metrics": {}}]
    s_na, s_mixed = summarize(na + ok_and_na)
    assert s_na["status"] == "n/a" and s_na["reason"] == "class requests only" and s_na["metrics"] == {}
    assert s_mixed["status"] == "ok" and s_mixed["seeds"] == [0] and s_mixed["metrics"] == {"x": 1.0}


# ---------------------------------------------------------------------------------------------------------------
# Properties
# ---------------------------------------------------------------------------------------------------------------


@settings(max_examples=60, deadline=None)
@given(st.lists(st.floats(-1e6, 1e6), min_size=1, max_size=30), st.lists(st.floats(-1e6, 1e6), min_size=1,
                                                                          max_size=30))
def test_auc_in_unit_interval(a: list[float], b: list[float]) -> None:
    auc = M.roc_auc(a, b)
    assert 0.0 <= auc <= 1.0
    out = M.loss_attack(a, b)
    assert 0.0 <= out["auc"] <= 1.0 and 0.0 <= out["tpr_at_0.01"] <= 100.0


@settings(max_examples=15, deadline=None)
@given(st.integers(0, 2**31 - 1))
def test_auc_half_for_same_distribution(seed: int) -> None:
    rng = np.random.default_rng(seed)
    # n = m = 2000: the AUC's standard deviation under H0 is about 0.009, so 0.05 is more than 5 sigma.
    assert abs(M.roc_auc(rng.normal(size=2000), rng.normal(size=2000)) - 0.5) < 0.05


_NET = torch.nn.Sequential(torch.nn.Linear(5, 8), torch.nn.Tanh(), torch.nn.Linear(8, 3))
_DS = LabeledDataset(torch.randn(37, 5, generator=torch.Generator().manual_seed(3)),
                     torch.randint(0, 3, (37,), generator=torch.Generator().manual_seed(4)))


@settings(max_examples=20, deadline=None)
@given(st.integers(1, 40))
def test_signals_batch_split_invariant(batch_size: int) -> None:
    full = compute_signals(_NET, _DS, "s", batch_size=64)
    part = compute_signals(_NET, _DS, "s", batch_size=batch_size)
    np.testing.assert_allclose(part.logits, full.logits, rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(part.labels, full.labels)
    assert M.accuracy(part.predictions, part.labels) == M.accuracy(full.predictions, full.labels)
    np.testing.assert_allclose(part.losses, full.losses, rtol=1e-5, atol=1e-6)
