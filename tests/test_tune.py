"""unlearnkit tune: the proxy request, the objective's data, resuming a killed study, one-line errors."""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

pytest.importorskip("optuna")

from unlearnkit.cli import main  # noqa: E402
from unlearnkit.pipeline import Experiment  # noqa: E402
from unlearnkit.presets import train_recipe  # noqa: E402
from unlearnkit.tune import proxy_split, tune_method  # noqa: E402

EPOCHS = "5"


def _exp(cache: Path) -> Experiment:
    recipe = dataclasses.replace(train_recipe("digits", "cnn"), epochs=int(EPOCHS))
    return Experiment("digits", recipe=recipe, cache_dir=cache, progress=False, log=lambda m: None)


@pytest.mark.parametrize("request_text", ["class:3", "class:1,3", "random:0.1"])
def test_proxy_is_disjoint_training_data_of_the_same_kind_and_size(tmp_path, request_text):
    exp = _exp(tmp_path)
    for seed in (0, 1):
        real = exp.resolve(request_text, seed)
        proxy = proxy_split(exp, real, seed)
        assert proxy.request.kind == real.request.kind
        assert len(proxy.forget_idx) > 0 and not np.intersect1d(proxy.forget_idx, real.forget_idx).size
        n = len(exp.splits.train)
        assert proxy.forget_idx.max() < n and proxy.retain_idx.max() < n  # indices into the training split only
        assert len(np.union1d(proxy.forget_idx, proxy.retain_idx)) == n
        if real.forget_classes:
            assert len(proxy.forget_classes) == len(real.forget_classes)
            assert not set(proxy.forget_classes) & set(real.forget_classes)
        else:
            assert len(proxy.forget_idx) == len(real.forget_idx)
        ev = exp.data.evaluator(proxy, seed, exp.device, val_as_test=True)  # what the tuner scores with
        assert ev.sets.test is exp.splits.val and ev.sets.val is None  # val is the held-out set; test is absent
        # The confirmation proxy: another draw, disjoint from the real request and from the search proxy.
        conf = proxy_split(exp, real, seed, avoid=proxy, draw=1)
        assert conf.request.kind == real.request.kind
        assert not np.intersect1d(conf.forget_idx, real.forget_idx).size
        assert not np.intersect1d(conf.forget_idx, proxy.forget_idx).size
        if real.forget_classes:
            assert not set(conf.forget_classes) & (set(real.forget_classes) | set(proxy.forget_classes))
        else:
            assert len(conf.forget_idx) == len(real.forget_idx)


@pytest.mark.parametrize("confirm_best, kept", [(5.0, "untuned"), (0.5, "tuned")])
def test_the_best_trial_is_kept_only_if_it_also_wins_on_the_confirmation_proxy(tmp_path, monkeypatch, confirm_best,
                                                                               kept):
    """Every suggested trial beats the untuned config on the search proxy (gap 1 vs 10); on the confirmation draw
    the untuned config scores 1.0 and the best ``confirm_best``: the pick survives only when it wins there too."""
    import unlearnkit.tune as tune_mod

    def fake_gap(self, method, seed, values, *, confirm=False):
        if confirm:
            return (confirm_best if values else 1.0), 0.0
        return (1.0 if values else 10.0), 0.0

    monkeypatch.setattr(tune_mod._Proxy, "gap", fake_gap)
    exp = _exp(tmp_path / "cache")
    res = tune_method(exp, "finetune", "class:3", seeds=[0], out=tmp_path / "out", trials=3, log=lambda m: None)
    assert res.confirmation == {"tuned": confirm_best, "untuned": 1.0, "kept": kept}
    stored = json.loads(Path(res.tuned_file).read_text())
    if kept == "untuned":
        assert res.values == {} and res.proxy_gap == res.default_proxy_gap == 10.0
        assert [h for h in res.history if h["chosen"]] == [h for h in res.history if h["default"]]
    else:
        assert res.values and res.proxy_gap == 1.0
    assert stored["values"] == res.values and stored["confirmation"]["kept"] == kept
    assert stored["proxy_gap"] == res.proxy_gap  # the kept values' gap, not the discarded best trial's


def test_objective_never_reads_test(tmp_path):
    """Poisoned test labels (every one wrong) leave the whole search, hence the chosen values, unchanged."""
    picks = []
    for poison in (False, True):
        exp = _exp(tmp_path / "cache")
        if poison:
            y = exp.splits.test.y
            exp.splits.test.y = (y + 1) % exp.splits.num_classes
            assert not torch.equal(exp.splits.test.y, y)
        res = tune_method(exp, "svd", "class:3", seeds=[0], out=tmp_path / f"o{poison}", trials=4, log=lambda m: None)
        picks.append((res.values, [h["value"] for h in res.history]))
        assert res.trials == 4 and res.history[0]["default"]  # --trials counts the untuned first trial
    assert picks[0] == picks[1]


def _tune_cmd(tmp_path: Path, trials: int) -> list[str]:
    return [sys.executable, "-m", "unlearnkit", "tune", "--dataset", "digits", "--forget", "class:3", "--methods",
            "svd", "--trials", str(trials), "--seeds", "0", "--epochs", EPOCHS, "--out", str(tmp_path / "out"),
            "--cache-dir", str(tmp_path / "cache")]


def _finished(db: Path) -> list[tuple[int, str]]:
    import optuna

    if not db.is_file():
        return []
    try:
        (summary,) = optuna.get_all_study_summaries(f"sqlite:///{db}")
        study = optuna.load_study(study_name=summary.study_name, storage=f"sqlite:///{db}")
    except Exception:  # noqa: BLE001 - the database is being created
        return []
    return [(t.number, json.dumps(t.params, sort_keys=True)) for t in study.trials
            if t.state.name in ("COMPLETE", "PRUNED")]


def test_sigkilled_tune_resumes_without_repeating_finished_trials(tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    db = tmp_path / "out" / "study.db"
    proc = subprocess.Popen(_tune_cmd(tmp_path, 400), env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 300
        while len(_finished(db)) < 4 and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.5)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    finally:
        if proc.poll() is None:
            proc.kill()
    before = _finished(db)
    assert 4 <= len(before) < 400
    total = len(before) + 3
    run = subprocess.run(_tune_cmd(tmp_path, total), env=env, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr
    assert f"{len(before)} finished trial(s) loaded" in run.stdout + run.stderr
    after = _finished(db)
    assert len(after) == total  # exactly the missing trials were run
    assert set(before) <= set(after)  # the finished ones were kept, not re-run
    assert run.stdout.count("svd (seed 0) took") == 3  # three new evaluations in the resumed session


@pytest.mark.parametrize("extra, needle", [
    ([], "needs a budget"),
    (["--trials", "0"], "--trials must be >= 1"),
    (["--budget-minutes", "-1"], "--budget-minutes must be a positive number"),
    (["--trials", "2", "--methods", "gradtau"], "untuned reference"),
    (["--trials", "2", "--methods", "nosuch"], "nosuch"),
    (["--trials", "2", "--cost-lambda", "-1"], "--cost-lambda"),
    (["--trials", "2", "--eval-seeds", "0"], "--eval-seeds"),
])
def test_bad_spaces_and_budgets_give_one_line_errors(tmp_path, capsys, extra, needle):
    argv = ["tune", "--dataset", "digits", "--forget", "class:3", "--methods", "svd", "--epochs", EPOCHS,
            "--out", str(tmp_path / "o"), "--cache-dir", str(tmp_path / "c")]
    if "--methods" in extra:
        i = argv.index("--methods")
        del argv[i:i + 2]
    code = main(argv + extra)
    err = capsys.readouterr().err.strip()
    assert code == 2 and needle in err and len(err.splitlines()) == 1, err


def test_run_picks_up_the_tuned_file(tmp_path, capsys):
    from unlearnkit.tuned import save_tuned

    exp = _exp(tmp_path / "cache")
    tune_method(exp, "svd", "class:3", seeds=[0], out=tmp_path / "t", trials=2, log=lambda m: None)
    path = exp.tuned_file("svd", exp.resolve("class:3", 0))
    assert path.is_file()
    save_tuned(path, {"alpha_f": 10.0}, {"note": "test"})  # a known value, whatever the short search chose
    out = tmp_path / "run"
    assert main(["run", "--dataset", "digits", "--forget", "class:5", "--methods", "svd", "--seeds", "1",
                 "--epochs", EPOCHS, "--out", str(out), "--cache-dir", str(tmp_path / "cache")]) == 0
    text = capsys.readouterr()
    (rec,) = [r for r in json.loads((out / "results.json").read_text())["records"] if r["method"] == "svd"]
    assert rec["provenance"]["alpha_f"]["source"] == "tuned file" and rec["config"]["alpha_f"] == 10.0
    assert "using tuned settings from" in text.out + text.err
    # a request of another size (two classes) has its own key: the file does not apply
    assert exp.tuned_file("svd", exp.resolve("class:1,3", 0)) != path


def test_methods_all_is_every_method_with_a_space():
    from unlearnkit.cli_tune import tune_methods
    from unlearnkit.methods.base import list_methods
    from unlearnkit.spaces import SPACES

    chosen = tune_methods("all")
    assert chosen and set(chosen) == set(SPACES) & set(list_methods())
    assert "gradtau" not in chosen and "retrain" not in chosen
    assert tune_methods("sfron, pgu") == ["sfron", "pgu"]


def test_pareto_front_equals_a_brute_force_construction():
    from unlearnkit.tune import pareto_front

    rng = np.random.default_rng(0)
    for _ in range(50):
        pts = [tuple(map(float, p)) for p in rng.integers(0, 6, size=(int(rng.integers(1, 12)), 2))]
        dominated = {i for i, p in enumerate(pts) for j, q in enumerate(pts)
                     if (q[0] <= p[0] and q[1] <= p[1] and q != p) or (q == p and j < i)}
        expect = sorted(set(range(len(pts))) - dominated, key=lambda i: (pts[i][0], pts[i][1]))
        assert pareto_front(pts) == expect


def test_cost_lambda_objective_and_frontier_plot(tmp_path):
    from unlearnkit.tune import write_tune_report

    exp = _exp(tmp_path / "cache")
    lam = 0.5
    res = tune_method(exp, "finetune", "class:3", seeds=[0], out=tmp_path / "t", trials=3, cost_lambda=lam,
                      log=lambda m: None)
    done = [h for h in res.history if h["state"] == "COMPLETE"]
    assert len(done) >= 2 and sum(h["chosen"] for h in res.history) == 1
    for h in done:  # the objective is the gap plus lambda x cost, both parts recorded
        assert h["cost"] > 0 and h["value"] == pytest.approx(h["gap"] + lam * h["cost"])
    assert res.proxy_gap == min(h["value"] for h in done)
    report = write_tune_report([res], tmp_path / "t", {"cost_lambda": lam}).read_text()
    assert "tune_frontier_finetune.png" in report and (tmp_path / "t" / "tune_frontier_finetune.png").stat().st_size
