"""Multi-label evaluation (issue 18): the evaluator's multi-label metrics, `unlearnkit run` on a multi-label
dataset end to end, and the one-line refusals of the commands that only serve single-label classification."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from sklearn.metrics import roc_auc_score
from torch import nn

from unlearnkit.data.base import LabeledDataset
from unlearnkit.errors import DataError, UnsupportedTaskError
from unlearnkit.evaluation import EvalSets, Evaluator
from unlearnkit.evaluation import metrics as M

L = 5


def _multi(n: int, seed: int) -> LabeledDataset:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 6, generator=g)
    y = (torch.rand(n, L, generator=g) < 0.35).float()
    y[torch.arange(n), torch.randint(0, L, (n,), generator=g)] = 1.0  # at least one label each
    return LabeledDataset(x, y)


def _net(seed: int) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(6, 16), nn.Tanh(), nn.Linear(16, L)).eval()


@pytest.fixture(scope="module")
def multi_sets() -> EvalSets:
    return EvalSets(forget=_multi(40, 1), retain=_multi(120, 2), test=_multi(50, 3), val=_multi(20, 4),
                    task="multilabel")


def test_multilabel_metrics_follow_their_definitions(multi_sets) -> None:
    model, ref = _net(0), _net(1)
    m = Evaluator(multi_sets, seed=0).evaluate(model, reference=ref)
    with torch.no_grad():
        out = {n: model(getattr(multi_sets, n).x) for n in ("forget", "retain", "test")}
    ys = {n: getattr(multi_sets, n).y for n in ("forget", "retain", "test")}
    # accuracy: argmax of the logits equals argmax of the multi-hot target (the first positive label)
    for n, key in (("forget", "forget_acc"), ("retain", "retain_acc"), ("test", "test_acc")):
        want = 100.0 * float((out[n].argmax(1) == ys[n].argmax(1)).float().mean())
        assert m[key] == pytest.approx(want)
    # loss attack: ROC AUC of the BCE with logits summed over labels, forget (members) vs test
    bce = {n: F.binary_cross_entropy_with_logits(out[n].double(), ys[n].double(), reduction="none").sum(1).numpy()
           for n in ("forget", "test")}
    lab = np.r_[np.ones(40), np.zeros(50)]
    # low loss = member: the attack's score is the negated loss
    assert m["mia_loss_auc"] == pytest.approx(roc_auc_score(lab, -np.r_[bce["forget"], bce["test"]]))
    assert m["n_forget"] == 40 and len(m["per_class_test_acc"]) == L
    assert m["avg_gap"] is not None and m["js_to_retrain"] > 0 and m["act_dist_to_retrain"] > 0
    same = Evaluator(multi_sets, seed=0).evaluate(model, reference=model)
    assert same["js_to_retrain"] == pytest.approx(0.0, abs=1e-12) and same["avg_gap"] == 0.0


def test_bernoulli_metrics_by_hand() -> None:
    z, w = np.array([[0.3, -1.2, 2.0]]), np.array([[-0.5, 0.4, 2.0]])
    p, q = 1 / (1 + np.exp(-z)), 1 / (1 + np.exp(-w))

    def h(a):  # binary entropy
        return -(a * np.log(a) + (1 - a) * np.log(1 - a))

    assert M.bernoulli_entropy(z)[0] == pytest.approx(h(p).sum())
    js = (h((p + q) / 2) - (h(p) + h(q)) / 2).sum()  # JS = H(mixture) − mean of the entropies, per label
    assert M.bernoulli_js_divergence(z, w) == pytest.approx(js)
    assert M.sigmoid_activation_distance(z, w) == pytest.approx(np.linalg.norm(p - q))


def test_multilabel_evalsets_refuse_what_is_undefined(multi_sets) -> None:
    with pytest.raises(UnsupportedTaskError, match="class requests are not defined on a multi-label task"):
        EvalSets(forget=multi_sets.forget, retain=multi_sets.retain, test=multi_sets.test, forget_classes=(1,),
                 task="multilabel")
    narrow = LabeledDataset(multi_sets.test.x, multi_sets.test.y[:, :3])
    with pytest.raises(DataError, match="labels, not num_classes=5"):
        EvalSets(forget=multi_sets.forget, retain=multi_sets.retain, test=narrow, task="multilabel")
    flat = LabeledDataset(multi_sets.test.x, multi_sets.test.y.argmax(1))
    with pytest.raises(DataError, match="multi-hot targets of shape"):
        EvalSets(forget=multi_sets.forget, retain=multi_sets.retain, test=flat, task="multilabel")


# ----------------------------------------------------------------------------------------------------------------
# command line
# ----------------------------------------------------------------------------------------------------------------


def _cli(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, "-m", "unlearnkit", *args], capture_output=True, text=True, env=env,
                          timeout=900)


DATA = ("--dataset", "textsynth-multilabel:120", "--epochs", "1", "--threads", "1")


@pytest.mark.slow
def test_cli_run_on_a_multilabel_dataset_end_to_end(tmp_path) -> None:
    from unlearnkit.methods.base import get_method, list_methods

    cache = ("--cache-dir", str(tmp_path / "cache"))
    out = tmp_path / "run"
    p = _cli("run", *DATA, *cache, "--forget", "random:0.2", "--methods", "all", "--seeds", "0", "--out", str(out))
    assert p.returncode == 0, p.stderr
    serving = {m for m in list_methods() if m != "retrain" and "multilabel" in get_method(m).tasks}
    refused = {m for m in list_methods() if m != "retrain"} - serving
    assert "salun" in refused and "gradtau" in serving
    for m in refused:  # skipped with their capability message, not run
        assert f"warning: skipping {m}: {m} does not serve the multilabel task" in " ".join(p.stdout.split())
    res = json.loads((out / "results.json").read_text())
    assert res["run_info"]["dataset"]["task"] == "multilabel"
    recs = {r["method"]: r for r in res["records"]}
    assert set(recs) == serving | {"original", "retrain"}
    for name in serving:
        assert recs[name]["status"] == "ok", recs[name]
        mt = recs[name]["metrics"]
        assert all(mt[k] is not None for k in ("forget_acc", "retain_acc", "test_acc", "mia_efficacy",
                                               "mia_loss_auc", "avg_gap", "js_to_retrain"))
    assert (out / "report.md").is_file()
    # A refused method named explicitly is a one-line error, before any training.
    p = _cli("run", *DATA, *cache, "--forget", "random:0.2", "--methods", "gradtau,salun", "--out",
             str(tmp_path / "r2"))
    assert p.returncode == 2 and len(p.stderr.strip().splitlines()) == 1
    assert "salun does not serve the multilabel task" in p.stderr and not (tmp_path / "r2").exists()
    # Class requests are not defined when an example has several labels.
    p = _cli("run", *DATA, *cache, "--forget", "class:2", "--methods", "gradtau", "--out", str(tmp_path / "r3"))
    assert p.returncode == 2 and len(p.stderr.strip().splitlines()) == 1 and "random: or ids:" in p.stderr


def test_audit_and_ledger_refuse_multilabel_datasets(tmp_path) -> None:
    p = _cli("audit", *DATA, "--cache-dir", str(tmp_path / "cache"), "--forget", "random:0.2", "--models", "4",
             "--out", str(tmp_path / "a"))
    assert p.returncode == 2 and len(p.stderr.strip().splitlines()) == 1, p.stderr
    assert "unlearnkit audit (U-LiRA and forgetting quality) supports single-label classification" in p.stderr
    assert "multilabel task" in p.stderr and not (tmp_path / "cache").exists()  # nothing trained
    ids = tmp_path / "ids.txt"
    ids.write_text("3\n4\n")
    p = _cli("request", "add", "--ledger", str(tmp_path / "l.db"), "--dataset", "textsynth-multilabel:120",
             "--ids", str(ids))
    assert p.returncode == 2 and len(p.stderr.strip().splitlines()) == 1, p.stderr
    assert "the deletion-request ledger" in p.stderr and "multilabel task" in p.stderr


@pytest.mark.slow
def test_cli_bench_on_text_skips_scenarios_that_do_not_apply(tmp_path) -> None:
    cache = ("--cache-dir", str(tmp_path / "cache"))
    out = tmp_path / "bench"
    p = _cli("bench", "--dataset", "textsynth:120", "--epochs", "1", "--threads", "1", *cache, "--seeds", "0",
             "--methods", "gradtau,unsir", "--out", str(out))
    assert p.returncode == 0, p.stderr
    flat = " ".join(p.stdout.split())
    assert "warning: skipping scenario subclass: this dataset has no sub-classes" in flat
    res = json.loads((out / "results.json").read_text())
    assert set(res["run_info"]["skipped_scenarios"]) == {"subclass"}
    recs = {(r["scenario"], r["method"], r.get("step", 0)): r for r in res["records"]}
    assert {sc for sc, _, _ in recs} == {"class1", "class3", "random1", "random10", "random30", "seq_random",
                                         "seq_class", "seq_ids"}
    # unsir is refused by its model check (token ids have no input gradient) before it runs, as a reasoned n/a
    assert recs["class1", "unsir", 0]["status"] == "n/a" and "discrete" in recs["class1", "unsir", 0]["reason"]
    assert recs["random10", "unsir", 0]["status"] == "n/a"
    # gradtau's epoch rule gives 0 epochs when three of eight classes are forgotten: an n/a row, not a crash
    assert recs["class3", "gradtau", 0]["status"] == "n/a" and "0 epochs" in recs["class3", "gradtau", 0]["reason"]
    for sc in ("class1", "random10", "seq_random"):
        ok = [r for k, r in recs.items() if k[0] == sc and k[1] == "gradtau"]
        assert ok and all(r["status"] == "ok" and r["metrics"]["avg_gap"] is not None for r in ok)
    assert len([k for k in recs if k[0] == "seq_ids" and k[1] == "gradtau"]) == 5  # every step
    report = (out / "report.md").read_text()
    assert "scenario `subclass` skipped: this dataset has no sub-classes" in report
    assert "| – | gradtau | n/a: gradtau's epoch rule" in report
    # A scenario named explicitly that does not apply is a one-line error, before any training or file.
    p = _cli("bench", "--dataset", "textsynth:120", "--epochs", "1", *cache, "--seeds", "0", "--methods", "gradtau",
             "--scenarios", "random10,subclass", "--out", str(tmp_path / "b2"))
    assert p.returncode == 2 and len(p.stderr.strip().splitlines()) == 1, p.stderr
    assert "scenario subclass does not apply to textsynth:120" in p.stderr and not (tmp_path / "b2").exists()
    # Multi-label: the class scenarios do not apply; methods that do not serve the task are skipped under 'all'.
    p = _cli("bench", "--dataset", "textsynth-multilabel:120", "--epochs", "1", *cache, "--seeds", "0",
             "--methods", "gradtau", "--scenarios", "all", "--out", str(tmp_path / "b3"))
    assert p.returncode == 0, p.stderr
    res = json.loads((tmp_path / "b3" / "results.json").read_text())
    assert set(res["run_info"]["skipped_scenarios"]) == {"class1", "class3", "subclass", "seq_class"}
    assert all(r["status"] == "ok" for r in res["records"])


# ----------------------------------------------------------------------------------------------------------------
# gradtau: the epoch rule's arithmetic and the hinge from the command line
# ----------------------------------------------------------------------------------------------------------------


def test_gradtau_epoch_rule_matches_the_notebooks_float_expression() -> None:
    import unlearnkit
    from unlearnkit.methods.gradtau import resolve_gradtau

    # The docstring's example: n_r = 190, n_f = 6 batches; the notebooks' int(n_r / (2 * n_f) * 6) is 95 in floats.
    assert int(190 / (2 * 6) * 6) == 95
    cfg = unlearnkit.GradTauConfig(batch_size=1)  # one example per batch: n_f, n_r are the set sizes
    assert resolve_gradtau(cfg, 6, 190).epochs == 95
    for n_f in range(1, 60):
        for n_r in range(3 * n_f, 400, 7):
            assert resolve_gradtau(cfg, n_f, n_r).epochs == int(n_r / (2 * n_f) * 6)
            assert resolve_gradtau(cfg, n_f, n_r, text=True).epochs == int(n_r / (2 * n_f))


def test_gradtau_symmetric_hinge_is_selectable_with_set() -> None:
    from unlearnkit.errors import ConfigError
    from unlearnkit.pipeline import build_config_provenance

    cfg, prov = build_config_provenance("gradtau", dataset="textsynth", kind="random", seed=0,
                                        overrides={"hinge": "symmetric"})
    assert cfg.hinge == "symmetric" and prov["hinge"]["source"] == "--set"
    assert build_config_provenance("gradtau", dataset="textsynth", kind="random", seed=0)[0].hinge == "one_sided"
    with pytest.raises(ConfigError, match="hinge"):
        build_config_provenance("gradtau", dataset="textsynth", kind="random", seed=0, overrides={"hinge": "both"})


def test_make_benchmarks_md_update_replaces_or_appends_one_section() -> None:
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parent.parent / "benchmarks" / "make_benchmarks_md.py"
    spec = importlib.util.spec_from_file_location("make_benchmarks_md", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)  # type: ignore[union-attr]
    text = "# Benchmarks\n\nintro\n\n## digits\n\nd1\n\n## shapes\n\ns1\n"
    assert mod.update(text, {}) == text
    replaced = mod.update(text, {"digits": ["## digits", "", "d2", ""]})
    assert replaced == "# Benchmarks\n\nintro\n\n## digits\n\nd2\n\n## shapes\n\ns1\n"
    added = mod.update(text, {"textsynth": ["## textsynth", "", "t1", ""]})
    assert added == text + "\n## textsynth\n\nt1\n"
