"""The benchmark matrix: scenario construction, and SIGKILL-resume equivalence on a tiny matrix."""

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from unlearnkit.bench import SCENARIOS, scenario_splits
from unlearnkit.pipeline import Experiment

TIMING = {"seconds", "rte", "peak_memory_mb"}


@pytest.fixture(scope="module")
def exp(tmp_path_factory):
    return Experiment("digits", cache_dir=tmp_path_factory.mktemp("c"), progress=False, log=lambda m: None)


def test_sequential_random_steps(exp):
    steps = scenario_splits(exp, SCENARIOS["seq_random"], seed=0)
    n = len(exp.splits.train)
    k = int(round(0.02 * n))
    assert len(steps) == 5
    prev = np.zeros(0, dtype=np.int64)
    for t, sp in enumerate(steps):
        assert len(sp.forget_idx) == k * (t + 1)  # disjoint draws: the union grows by k each step
        assert np.isin(prev, sp.forget_idx).all()
        assert len(np.intersect1d(sp.forget_idx, sp.retain_idx)) == 0
        assert len(sp.forget_idx) + len(sp.retain_idx) == n
        prev = sp.forget_idx
    # Each step's reference is trained without the union so far: its cache key differs step to step.
    assert len({sp.key for sp in steps}) == 5
    other = scenario_splits(exp, SCENARIOS["seq_random"], seed=1)
    assert not np.array_equal(other[0].forget_idx, steps[0].forget_idx)


def test_sequential_class_steps(exp):
    steps = scenario_splits(exp, SCENARIOS["seq_class"], seed=0)
    y = exp.splits.train.y.numpy()
    for t, sp in enumerate(steps):
        cls = (1, 3, 5)[: t + 1]
        assert sp.forget_classes == cls
        assert set(np.unique(y[sp.forget_idx])) == set(cls)
        assert not np.isin(y[sp.retain_idx], cls).any()


def test_subclass_scenario(exp):
    if exp.splits.train.sub is None:
        pytest.skip("dataset without sub-labels")
    (sp,) = scenario_splits(exp, SCENARIOS["subclass"], seed=0)
    tr = exp.splits.train
    assert (tr.y[sp.forget_idx] == 3).all() and (tr.sub[sp.forget_idx] == 0).all()
    # The reference keeps the other sub-class of the same class.
    kept = sp.retain_idx[(tr.y[sp.retain_idx] == 3).numpy()]
    assert len(kept) > 0 and (tr.sub[kept] == 1).all()


def _bench(out, cache, rl_epochs=1, **kw):
    cmd = [sys.executable, "-m", "unlearnkit", "bench", "--dataset", "digits", "--methods",
           "gradient_ascent,random_label", "--scenarios", "class1,seq_class", "--seeds", "0", "--epochs", "2",
           "--out", str(out), "--cache-dir", str(cache), "--set", f"random_label.epochs={rl_epochs}"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, **kw)


def _strip(records):
    out = []
    for r in records:
        r = dict(r)
        r["metrics"] = {k: v for k, v in r["metrics"].items() if k not in TIMING}
        out.append(r)
    return out


@pytest.mark.slow
def test_sigkill_resume_equals_uninterrupted(tmp_path):
    cache = tmp_path / "cache"
    killed = tmp_path / "killed"
    p = _bench(killed, cache)
    cells = killed / "cells"
    deadline = time.time() + 600
    while time.time() < deadline and not (cells.is_dir() and len(list(cells.glob("*.json"))) >= 2):
        time.sleep(0.2)
        assert p.poll() is None, p.communicate()
    p.send_signal(signal.SIGKILL)
    p.wait()
    done_before = {f.name: f.stat().st_mtime_ns for f in cells.glob("*.json")}
    assert 2 <= len(done_before) < 8
    assert not list(cells.glob(".*tmp"))  # atomic writes leave no partial files under the final names
    p = _bench(killed, cache)
    stdout, stderr = p.communicate(timeout=900)
    assert p.returncode == 0, stderr
    # Finished cells were not recomputed.
    for name, mtime in done_before.items():
        assert (cells / name).stat().st_mtime_ns == mtime
    fresh = tmp_path / "fresh"
    p = _bench(fresh, cache)
    _, stderr = p.communicate(timeout=900)
    assert p.returncode == 0, stderr
    a = json.loads((killed / "results.json").read_text())
    b = json.loads((fresh / "results.json").read_text())
    # (original, retrain, 2 methods) x (class1: 1 step + seq_class: 3 steps)
    assert len(a["records"]) == len(b["records"]) == 4 * 4
    assert _strip(a["records"]) == _strip(b["records"])
    report = (killed / "report.md").read_text()
    assert "## class1" in report and "bench_seq_class.png" in report and (killed / "bench_seq_class.png").is_file()

    # A changed config recomputes that method's cells (and only those) instead of reusing stale results.
    before = {f.name: f.stat().st_mtime_ns for f in (fresh / "cells").glob("*.json")}
    p = _bench(fresh, cache, rl_epochs=2)
    stdout, stderr = p.communicate(timeout=900)
    assert p.returncode == 0, stderr
    for name, mtime in before.items():
        changed = (fresh / "cells" / name).stat().st_mtime_ns != mtime
        assert changed == ("__random_label__" in name), name
    recs = json.loads((fresh / "results.json").read_text())["records"]
    assert {r["config"]["epochs"] for r in recs if r["method"] == "random_label"} == {2}
