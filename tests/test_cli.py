"""End-to-end tests of the `unlearnkit` command (short training recipes keep them to seconds)."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

FAST = ["--epochs", "3", "-q"]


def _cli(*args, cwd=None, env_extra=None, check=True):
    env = {**os.environ, "OMP_NUM_THREADS": "1", **(env_extra or {})}
    p = subprocess.run([sys.executable, "-m", "unlearnkit", *args], capture_output=True, text=True, cwd=cwd,
                       env=env, timeout=600)
    if check and p.returncode != 0:
        raise AssertionError(f"exit {p.returncode}\nstdout:\n{p.stdout}\nstderr:\n{p.stderr}")
    return p


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    return str(tmp_path_factory.mktemp("cache"))


def test_run_end_to_end_and_cache_reuse(tmp_path, cache):
    out = tmp_path / "run"
    p = _cli("run", "--methods", "finetune,gradient_ascent", "--out", str(out), "--cache-dir", cache, *FAST[:2])
    assert "training original" in p.stdout and "forget acc" in p.stdout
    res = json.loads((out / "results.json").read_text())
    assert res["schema"] == "unlearnkit.results/1"
    methods = {r["method"] for r in res["records"]}
    assert methods == {"original", "retrain", "finetune", "gradient_ascent"}
    for r in res["records"]:
        m = r["metrics"]
        for key in ("forget_acc", "retain_acc", "test_acc", "test_acc_remaining", "test_acc_forgotten"):
            assert 0.0 <= m[key] <= 100.0, (r["method"], key, m[key])
        if r["method"] not in ("original", "retrain"):
            for key in ("seconds", "mia_efficacy", "mia_loss_auc", "avg_gap", "tow", "js_to_retrain", "rte"):
                assert key in m and m[key] is not None, (r["method"], key)
    assert res["run_info"]["dataset"]["hash"] and res["run_info"]["git"] is not None
    report = (out / "report.md").read_text()
    assert ".png" in report
    # Second run: both models come from the model cache and every record from OUT/cells (nothing recomputed).
    p2 = _cli("run", "--methods", "finetune,gradient_ascent", "--out", str(out), "--cache-dir", cache, *FAST[:2])
    assert p2.stdout.count("reusing cached") == 2 and "training original" not in p2.stdout
    assert p2.stdout.count("reusing the ") == 4 and " took " not in p2.stdout
    assert json.loads((out / "results.json").read_text())["records"] == res["records"]
    # A changed config is a different cell; --fresh recomputes everything, with the same results (determinism).
    p3 = _cli("run", "--methods", "finetune,gradient_ascent", "--out", str(out), "--cache-dir", cache, *FAST[:2],
              "--set", "finetune.epochs=1")
    assert "finetune (seed 0) took" in p3.stdout and "gradient_ascent (seed 0) took" not in p3.stdout
    p4 = _cli("run", "--methods", "finetune,gradient_ascent", "--out", str(out), "--cache-dir", cache, *FAST[:2],
              "--fresh")
    assert "reusing the " not in p4.stdout and "gradient_ascent (seed 0) took" in p4.stdout
    res2 = json.loads((out / "results.json").read_text())
    a = {r["method"]: r["metrics"]["test_acc"] for r in res["records"]}
    b = {r["method"]: r["metrics"]["test_acc"] for r in res2["records"]}
    assert a == b  # deterministic under the seed
    # Report re-rendering from results.json alone.
    (out / "report.md").unlink()
    _cli("report", str(out))
    assert (out / "report.md").is_file()


def _assert_one_line_error(p, match):
    assert p.returncode == 2, (p.returncode, p.stdout, p.stderr)
    err = p.stderr.strip()
    assert "Traceback" not in p.stderr and len(err.splitlines()) == 1, p.stderr
    assert err.startswith("error: ") and match in err, err


@pytest.mark.parametrize("request_text,match", [
    ("class:42", "unknown class '42'; valid: 0=0"),
    ("random:0", "strictly between 0 and 1"),
    ("random:1.5", "strictly between 0 and 1"),
    ("random:0.0001", "selects nothing"),
    ("nonsense", "valid forms"),
])
def test_bad_requests_exit_cleanly(request_text, match, tmp_path, cache):
    p = _cli("run", "--forget", request_text, "--out", str(tmp_path), "--cache-dir", cache, *FAST, check=False)
    _assert_one_line_error(p, match)
    assert not (tmp_path / "results.json").exists()


@pytest.mark.parametrize("content,match", [
    ("5 99999", "out of range"),
    ("5 5", "more than once"),
    ("", "empty"),
    ("ALL", "whole training set"),
])
def test_bad_ids_files_exit_cleanly(content, match, tmp_path, cache):
    f = tmp_path / "ids.txt"
    if content == "ALL":
        from unlearnkit.data import load_dataset

        content = " ".join(str(i) for i in load_dataset("digits").train.source_ids)  # ids name the user's rows
    f.write_text(content)
    p = _cli("run", "--forget", f"ids:{f}", "--out", str(tmp_path), "--cache-dir", cache, *FAST, check=False)
    _assert_one_line_error(p, match)


def test_other_bad_input(tmp_path, cache):
    _assert_one_line_error(_cli("run", "--methods", "nope", "--cache-dir", cache, *FAST, check=False),
                           "unknown method 'nope'")
    _assert_one_line_error(_cli("run", "--dataset", "csv:/no/such.csv", "--cache-dir", cache, *FAST, check=False),
                           "does not exist")
    _assert_one_line_error(_cli("run", "--methods", "finetune", "--search", "--cache-dir", cache, *FAST,
                                check=False), "has a hyperparameter search (methods with one: svd)")
    _assert_one_line_error(_cli("evaluate", "--checkpoint", str(tmp_path / "missing.safetensors"), "--forget",
                                "class:3", "--cache-dir", cache, *FAST, check=False), "not found")
    bad = tmp_path / "corrupt.safetensors"
    bad.write_bytes(b"\x08\x00\x00\x00\x00\x00\x00\x00{garbage")
    _assert_one_line_error(_cli("evaluate", "--checkpoint", str(bad), "--forget", "class:3", "--cache-dir", cache,
                                *FAST, check=False), "corrupt")


def test_step_by_step_with_checkpoints(tmp_path, cache):
    orig = tmp_path / "orig.safetensors"
    ref = tmp_path / "ref.safetensors"
    unl = tmp_path / "unl.safetensors"
    _cli("train", "--out", str(orig), "--cache-dir", cache, *FAST)
    _cli("train", "--forget", "class:3", "--out", str(ref), "--cache-dir", cache, *FAST)
    _cli("unlearn", "--checkpoint", str(orig), "--method", "random_label", "--forget", "class:3", "--out", str(unl),
         "--set", "random_label.epochs=1", "--set", "random_label.lr=0.05", "-q")
    p = _cli("evaluate", "--checkpoint", str(unl), "--reference", str(ref), "--forget", "class:3",
             "--cache-dir", cache, *FAST)
    m = json.loads(p.stdout)
    assert m["forget_acc"] < 50 and "avg_gap" in m and "rte" in m
    assert json.loads(Path(str(unl).replace(".safetensors", ".json")).read_text())["method"] == "random_label"


def test_record_stats_runs_pgu_without_retain_data(tmp_path):
    from unlearnkit.methods.pgu import LayerStats

    cache = tmp_path / "cache"
    out = tmp_path / "run"
    args = ("run", "--methods", "pgu,finetune", "--record-stats", "--out", str(out), "--cache-dir", str(cache),
            "--epochs", "2")
    p = _cli(*args)
    assert "recorded layer statistics" in p.stdout
    stats = list((cache / "models").glob("*.stats.safetensors"))
    assert len(stats) == 1  # the original's only (references never need them)
    assert (cache / "models" / stats[0].name.replace(".stats", "")).is_file()
    recs = {r["method"]: r for r in json.loads((out / "results.json").read_text())["records"]}
    assert recs["pgu"]["inputs"] == {"recorded_stats": stats[0].name, "retain_data": False}
    assert "inputs" not in recs["finetune"]
    # A cached original without (or with unreadable) statistics gets them recorded again; the record is reused.
    stats[0].write_bytes(b"not a safetensors file")
    p = _cli(*args)
    assert "recorded layer statistics of the cached model" in p.stdout and "pgu (seed 0) took" not in p.stdout
    LayerStats.load(stats[0])
    # Step by step: train --record-stats writes NAME.stats.safetensors beside --out; unlearn --stats uses it.
    orig = tmp_path / "orig.safetensors"
    _cli("train", "--out", str(orig), "--record-stats", "--cache-dir", str(cache), "--epochs", "2", "-q")
    side = tmp_path / "orig.stats.safetensors"
    assert LayerStats.load(side).grams.keys() == LayerStats.load(stats[0]).grams.keys()
    p = _cli("unlearn", "--checkpoint", str(orig), "--method", "pgu", "--forget", "class:3", "--stats", str(side),
             "--out", str(tmp_path / "unl.safetensors"), "-q")
    assert "pgu:" in p.stdout


def test_csv_dataset(tmp_path, cache):
    import numpy as np

    rng = np.random.default_rng(0)
    y = np.arange(300) % 3
    x = rng.normal(size=(300, 5)) + y[:, None]
    lines = ["a,b,label,c,d"] + [f"{r[0]:.4f},{r[1]:.4f},{c},{r[2]:.4f},{r[3]:.4f}" for r, c in zip(x, y)]
    f = tmp_path / "data.csv"
    f.write_text("\n".join(lines))
    out = tmp_path / "out"
    _cli("run", "--dataset", f"csv:{f}", "--label-column", "label", "--model", "mlp", "--forget", "random:0.1",
         "--methods", "finetune", "--out", str(out), "--cache-dir", cache, *FAST)
    res = json.loads((out / "results.json").read_text())
    assert {r["method"] for r in res["records"]} == {"original", "retrain", "finetune"}


def test_methods_listing():
    p = _cli("methods")
    for name in ("svd", "unsir", "pgu", "sfron", "gradtau", "salun", "finetune"):
        assert name in p.stdout
