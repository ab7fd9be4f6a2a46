"""Evaluator: every key present, signals computed once (forward passes counted), reference gaps, validation."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from torch import nn

from unlearnkit.data.base import LabeledDataset
from unlearnkit.errors import ConfigError, DataError, UnlearnWarning
from unlearnkit.evaluation import EvalSets, Evaluator, split_plots, summarize
from unlearnkit.evaluation import metrics as M

NUM_CLASSES = 4
BATCH = 32


def _data(n: int, seed: int) -> LabeledDataset:
    g = torch.Generator().manual_seed(seed)
    y = torch.randint(0, NUM_CLASSES, (n,), generator=g)
    x = torch.randn(n, 6, generator=g) + 2.0 * nn.functional.one_hot(y, 6).float()
    return LabeledDataset(x, y)


def _train(ds: LabeledDataset, seed: int, steps: int = 150) -> nn.Module:
    torch.manual_seed(seed)
    m = nn.Sequential(nn.Linear(6, 32), nn.ReLU(), nn.Linear(32, NUM_CLASSES))
    opt = torch.optim.Adam(m.parameters(), 1e-2)
    for _ in range(steps):
        opt.zero_grad()
        nn.functional.cross_entropy(m(ds.x), ds.y).backward()
        opt.step()
    return m


@pytest.fixture(scope="module")
def world() -> dict:
    train, test, val = _data(300, 0), _data(150, 1), _data(70, 2)
    forget_idx = (train.y == 2).nonzero().squeeze(1)
    retain_idx = (train.y != 2).nonzero().squeeze(1)
    class_sets = EvalSets(forget=train.subset(forget_idx), retain=train.subset(retain_idx), test=test, val=val,
                          forget_classes=(2,), num_classes=NUM_CLASSES)
    perm = torch.randperm(300, generator=torch.Generator().manual_seed(5))
    rand_sets = EvalSets(forget=train.subset(perm[:30]), retain=train.subset(perm[30:]), test=test,
                         num_classes=NUM_CLASSES)
    original = _train(train, 0)
    retrained = _train(train.subset(retain_idx), 1)
    return {"class": class_sets, "random": rand_sets, "original": original, "retrained": retrained}


def _batches(sets: EvalSets) -> int:
    sizes = [len(sets.forget), len(sets.retain), len(sets.test)] + ([len(sets.val)] if sets.val is not None else [])
    return sum(math.ceil(n / BATCH) for n in sizes)


class _Counter:
    def __init__(self, model: nn.Module) -> None:
        self.n = 0
        model.register_forward_hook(lambda *_: self._inc())

    def _inc(self) -> None:
        self.n += 1


TIER_A = ["forget_acc", "unlearn_acc", "retain_acc", "test_acc", "val_acc", "per_class_test_acc",
          "test_acc_remaining", "test_acc_forgotten", "mia_efficacy", "mia_entropy_member_rate", "mia_lr_loss_acc",
          "mia_loss_auc", "mia_loss_tpr_at_1pct_fpr", "mia_loss_tpr_at_0.1pct_fpr", "loss_ks_forget_test",
          "streisand_flag", "seconds", "peak_memory_mb", "nonfinite_logits"]
TIER_B = ["avg_gap", "tow", "tow_mia", "js_to_retrain", "js_to_retrain_test", "act_dist_to_retrain",
          "act_dist_to_retrain_test", "per_class_l1_gap", "rte"] + \
    [f"{p}_{m}" for m in M.GAP_METRICS for p in ("gap", "absgap")]


def test_evaluate_returns_every_key(world: dict) -> None:
    ev = Evaluator(world["class"], device="cpu", batch_size=BATCH, seed=0)
    out = ev.evaluate(world["original"], reference=world["retrained"], seconds=2.0, peak_memory_mb=12.5,
                      reference_seconds=50.0)
    metrics, plots = split_plots(out)
    missing = [k for k in TIER_A + TIER_B if k not in metrics]
    assert not missing
    # A class request with val: every figure is defined except the Streisand flag (random requests only).
    undefined = sorted(k for k, v in metrics.items() if v is None)
    assert undefined == ["streisand_flag"]
    assert metrics["rte"] == pytest.approx(25.0) and metrics["seconds"] == 2.0 and metrics["peak_memory_mb"] == 12.5
    assert len(metrics["per_class_test_acc"]) == NUM_CLASSES
    h = plots["loss_hist"]
    assert len(h["edges"]) == len(h["forget"]) + 1 == len(h["test"]) + 1
    assert sum(h["forget"]) == len(world["class"].forget)
    json.dumps(out, allow_nan=False)  # strict JSON: undefined values are None, never NaN
    # Original vs retrain on a forgotten class: the original still knows it, the retrain does not.
    assert metrics["gap_forget_acc"] > 50 and metrics["avg_gap"] > 10 and metrics["tow"] < 0.6
    # Without a reference the tier-(b) keys are present and None.
    solo = ev.evaluate(world["original"])
    assert all(solo[k] is None for k in TIER_B)
    assert set(solo) == set(out)


def test_accuracies_match_direct_computation(world: dict) -> None:
    sets = world["class"]
    ev = Evaluator(sets, batch_size=BATCH)
    m = ev.evaluate(world["original"])
    with torch.no_grad():
        pt = world["original"](sets.test.x).argmax(1)
        pf = world["original"](sets.forget.x).argmax(1)
    y = sets.test.y
    assert m["test_acc_full"] == pytest.approx(100 * (pt == y).float().mean().item())
    assert m["forget_acc"] == pytest.approx(100 * (pf == sets.forget.y).float().mean().item())
    keep = y != 2
    # Class request: SalUn's protocol, TA on the test set without the forgotten class.
    assert m["test_acc"] == pytest.approx(100 * (pt[keep] == y[keep]).float().mean().item())
    assert m["test_acc_remaining"] == pytest.approx(100 * (pt[keep] == y[keep]).float().mean().item())
    assert m["test_acc_forgotten"] == pytest.approx(100 * (pt[~keep] == y[~keep]).float().mean().item())
    assert m["unlearn_acc"] == pytest.approx(100 - m["forget_acc"])


def test_each_signal_computed_once(world: dict) -> None:
    sets = world["class"]
    model, ref = world["original"], world["retrained"]
    cm, cr = _Counter(model), _Counter(ref)
    ev = Evaluator(sets, batch_size=BATCH)
    ev.evaluate(model)
    assert cm.n == ev.forward_passes == _batches(sets)
    ev.evaluate(model)                       # same model again: nothing recomputed
    ev.signals(model, "forget")
    assert cm.n == ev.forward_passes == _batches(sets)
    ev.evaluate(model, reference=ref)        # the reference costs one pass over each set, once
    ev.evaluate(model, reference=ref)
    assert cr.n == _batches(sets)
    assert ev.forward_passes == 2 * _batches(sets) == cm.n + cr.n
    ev.evaluate(model, reference=model)      # self-reference: no new pass
    assert ev.forward_passes == 2 * _batches(sets)


def test_in_place_edit_invalidates_cache(world: dict) -> None:
    sets = world["random"]
    model = _train(_data(100, 9), 3, steps=20)
    ev = Evaluator(sets, batch_size=BATCH)
    a = ev.evaluate(model)
    with torch.no_grad():
        model[2].bias.add_(torch.tensor([5.0, 0.0, 0.0, 0.0]))
    b = ev.evaluate(model)
    assert ev.forward_passes == 2 * _batches(sets)
    assert a["test_acc"] != b["test_acc"]


def test_reference_gaps_zero_for_self(world: dict) -> None:
    ev = Evaluator(world["class"], batch_size=BATCH)
    m = ev.evaluate(world["original"], reference=world["original"])
    for k in M.GAP_METRICS:
        assert m[f"gap_{k}"] == 0.0 and m[f"absgap_{k}"] == 0.0
    assert m["avg_gap"] == 0.0 and m["tow"] == 1.0 and m["tow_mia"] == 1.0 and m["per_class_l1_gap"] == 0.0
    assert m["js_to_retrain"] == pytest.approx(0.0, abs=1e-12)
    assert m["act_dist_to_retrain"] == 0.0 and m["act_dist_to_retrain_test"] == 0.0


def test_random_request_streisand_and_class_keys(world: dict) -> None:
    sets = world["random"]
    ev = Evaluator(sets, batch_size=BATCH)
    m = ev.evaluate(world["original"])
    assert m["test_acc_remaining"] is None and m["test_acc_forgotten"] is None and m["val_acc"] is None
    assert m["forget_acc"] >= m["test_acc"] and m["streisand_flag"] == 0.0

    class Overforget(nn.Module):
        """The original model, except that it answers a wrong class on exactly the forget examples."""

        def __init__(self, base: nn.Module, fx: torch.Tensor, fy: torch.Tensor) -> None:
            super().__init__()
            self.base, self.fx, self.fy = base, fx, fy

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            z = self.base(x)
            hit = (x[:, None, :] == self.fx[None]).all(-1)          # (batch, |forget|)
            idx = hit.float().argmax(1)
            wrong = nn.functional.one_hot((self.fy[idx] + 1) % NUM_CLASSES, NUM_CLASSES).float() * 50.0
            return torch.where(hit.any(1, keepdim=True), wrong, z)

    m2 = ev.evaluate(Overforget(world["original"], sets.forget.x, sets.forget.y))
    assert m2["forget_acc"] == 0.0 and m2["test_acc"] == m["test_acc"]
    assert m2["streisand_flag"] == 1.0


def test_attack_uses_same_retain_subsample_for_all_models(world: dict) -> None:
    ev1 = Evaluator(world["class"], batch_size=BATCH, seed=4)
    ev2 = Evaluator(world["class"], batch_size=BATCH, seed=4)
    np.testing.assert_array_equal(ev1.retain_mia_indices, ev2.retain_mia_indices)
    assert len(ev1.retain_mia_indices) == min(len(world["class"].test), len(world["class"].retain))
    assert ev1.evaluate(world["original"]) == ev2.evaluate(world["original"])  # deterministic under a seed


def test_model_state_restored(world: dict) -> None:
    model = _train(_data(50, 4), 0, steps=5)
    model.train()
    model[0].eval()  # mixed flags must come back as they were
    Evaluator(world["random"], batch_size=BATCH).evaluate(model)
    assert model.training and not model[0].training and model[2].training
    assert next(model.parameters()).device.type == "cpu"


def test_nonfinite_logits_reported_not_raised(world: dict) -> None:
    model = _train(_data(50, 4), 0, steps=5)
    with torch.no_grad():
        model[2].weight[0, 0] = float("nan")
    with pytest.warns(UnlearnWarning):
        m = Evaluator(world["random"], batch_size=BATCH).evaluate(model)
    assert m["nonfinite_logits"] == 1.0 and m["mia_efficacy"] is None and m["forget_acc"] is not None


def test_missing_forget_class_in_test_gives_none(world: dict) -> None:
    train, test = _data(200, 6), _data(100, 7)
    test = test.subset((test.y != 3).nonzero().squeeze(1))
    sets = EvalSets(forget=train.subset((train.y == 3).nonzero().squeeze(1)),
                    retain=train.subset((train.y != 3).nonzero().squeeze(1)), test=test, forget_classes=(3,),
                    num_classes=NUM_CLASSES)
    m = Evaluator(sets, batch_size=BATCH).evaluate(world["original"])
    assert m["mia_loss_auc"] is None and m["mia_lr_loss_acc"] is None and m["loss_ks_forget_test"] is None
    assert m["test_acc_forgotten"] is None and m["mia_efficacy"] is not None


def test_validation_errors(world: dict) -> None:
    s = world["class"]
    empty = s.forget.subset([])
    with pytest.raises(DataError, match="forget set is empty"):
        EvalSets(forget=empty, retain=s.retain, test=s.test, num_classes=NUM_CLASSES)
    with pytest.raises(DataError, match="outside forget_classes"):
        EvalSets(forget=s.forget, retain=s.retain, test=s.test, forget_classes=(1,), num_classes=NUM_CLASSES)
    with pytest.raises(DataError, match="labels must lie"):
        EvalSets(forget=s.forget, retain=s.retain, test=s.test, num_classes=2)
    with pytest.raises(ConfigError):
        Evaluator(s, batch_size=0)
    with pytest.raises(DataError, match="unknown evaluation set"):
        Evaluator(s).signals(world["original"], "train")
    assert EvalSets(forget=s.forget, retain=s.retain, test=s.test).num_classes == NUM_CLASSES


def test_retain_limit_and_summary_over_seeds(world: dict) -> None:
    ev = Evaluator(world["class"], batch_size=BATCH, retain_limit=100)
    m = ev.evaluate(world["original"], reference=world["retrained"])
    assert m["n_retain"] == max(100, len(world["class"].test))
    recs = []
    for seed in (0, 1):
        e = Evaluator(world["random"], batch_size=BATCH, seed=seed)
        met, plots = split_plots(e.evaluate(world["original"], reference=world["retrained"], seconds=1.0 + seed))
        recs.append({"method": "x", "request": "random:0.1", "seed": seed, "metrics": met, "plots": plots})
    summ = summarize(recs)[0]["metrics"]
    assert summ["seconds"] == 1.5 and summ["seconds_ci95"] > 0
    assert "mia_lr_loss_acc_ci95" in summ and "forget_acc_ci95" in summ


def test_class_requests_follow_salun_protocol_for_ta_and_mia(world: dict) -> None:
    """Issue 19: for class requests TA and the attack's non-members exclude the forgotten classes (SalUn); the
    full-test figures stay as ``test_acc_full`` and ``mia_efficacy_full_test``. Random requests are unchanged."""
    from unlearnkit.evaluation import metrics as M
    from unlearnkit.evaluation.signals import compute_signals

    sets = world["class"]
    model = world["original"]
    ev = Evaluator(sets, batch_size=BATCH, seed=4)
    m = ev.evaluate(model, reference=world["retrained"])
    sig = {n: compute_signals(model, getattr(sets, n), n, batch_size=BATCH, num_classes=NUM_CLASSES)
           for n in ("forget", "retain", "test")}
    keep = ~np.isin(sig["test"].labels, (2,))
    members = sig["retain"].confidence[ev.salun_mia_indices]
    assert len(ev.salun_mia_indices) == min(int(keep.sum()), len(sets.retain))
    assert set(ev.salun_mia_indices) <= set(ev.retain_mia_indices)
    assert m["mia_efficacy"] == pytest.approx(M.mia_efficacy(members, sig["test"].confidence[keep],
                                                             sig["forget"].confidence))
    full_members = sig["retain"].confidence[ev.retain_mia_indices]
    assert m["mia_efficacy_full_test"] == pytest.approx(M.mia_efficacy(full_members, sig["test"].confidence,
                                                                       sig["forget"].confidence))
    assert m["test_acc"] == m["test_acc_remaining"] != m["test_acc_full"]
    ra = ev.evaluate(world["retrained"])
    assert m["avg_gap"] == pytest.approx(np.mean([abs(m[k] - ra[k]) for k in
                                                  ("forget_acc", "retain_acc", "test_acc", "mia_efficacy")]))
    rnd = Evaluator(world["random"], batch_size=BATCH, seed=4).evaluate(model)
    assert rnd["test_acc"] == rnd["test_acc_full"] and rnd["mia_efficacy"] == rnd["mia_efficacy_full_test"]
