"""The audit command end to end on a tiny configuration (K = 4 shadows, 2 training epochs)."""

import json
import os
import subprocess
import sys

import pytest

pytestmark = pytest.mark.slow


def _audit(out, cache):
    cmd = [sys.executable, "-m", "unlearnkit", "audit", "--dataset", "digits", "--forget", "class:3", "--methods",
           "gradient_ascent", "--models", "4", "--epochs", "2", "--out", str(out), "--cache-dir", str(cache)]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=900, env={**os.environ, "OMP_NUM_THREADS": "1"})


def test_audit_end_to_end_and_resume(tmp_path):
    out, cache = tmp_path / "audit", tmp_path / "cache"
    p = _audit(out, cache)
    assert p.returncode == 0, p.stderr
    res = json.loads((out / "audit.json").read_text())
    by = {r["method"]: r for r in res["records"]}
    assert set(by) == {"original", "retrain", "gradient_ascent"}
    for r in by.values():
        m = r["metrics"]
        for k in ("ulira_accuracy", "ulira_auc", "ulira_tpr_at_1pct_fpr", "forgetting_quality"):
            assert k in m
        assert 0 <= m["forgetting_quality"] <= 1
        assert len(r["per_example"]["epsilon"]) == r["n_targets"]
    # The untouched model is deterministic: the scorer gives it the capped epsilon on every example (F = 0).
    assert by["original"]["metrics"]["forgetting_quality"] == 0.0
    assert (out / "audit_roc.png").stat().st_size > 0 and "audit_roc.png" in (out / "audit.md").read_text()
    # Resume: a second run trains nothing and recomputes no signal.
    sig = {f.name: f.stat().st_mtime_ns for f in (out / "signals").glob("*.npz")}
    p2 = _audit(out, cache)
    assert p2.returncode == 0, p2.stderr
    assert "training" not in p2.stdout
    assert {f.name: f.stat().st_mtime_ns for f in (out / "signals").glob("*.npz")} == sig
    assert json.loads((out / "audit.json").read_text())["records"][0]["metrics"]["ulira_auc"] == \
        res["records"][0]["metrics"]["ulira_auc"]


def test_killed_audit_resumes_without_retraining(tmp_path):
    import signal
    import time

    out, cache = tmp_path / "audit", tmp_path / "cache"
    cmd = [sys.executable, "-m", "unlearnkit", "audit", "--dataset", "digits", "--forget", "class:3", "--methods",
           "gradient_ascent", "--models", "4", "--epochs", "2", "--out", str(out), "--cache-dir", str(cache)]
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                         env={**os.environ, "OMP_NUM_THREADS": "1"})
    models = cache / "models"
    deadline = time.time() + 600
    while time.time() < deadline and len(list(models.glob("*.safetensors"))) < 3:
        time.sleep(0.1)
        assert p.poll() is None, p.communicate()
    p.send_signal(signal.SIGKILL)
    p.wait()
    before = {f.name: f.stat().st_mtime_ns for f in models.glob("*.safetensors")}
    assert len(before) >= 3
    p2 = _audit(out, cache)
    assert p2.returncode == 0, p2.stderr
    # Every model finished before the kill was reused as it was; the rest were trained now.
    assert {n: (models / n).stat().st_mtime_ns for n in before} == before
    assert p2.stdout.count("reusing cached") >= len(before)
    assert len(list(models.glob("*.safetensors"))) > len(before)
    assert json.loads((out / "audit.json").read_text())["records"]
