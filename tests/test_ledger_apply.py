"""Applying requests: end to end on digits with sfron (acceptance 2), crash safety under SIGKILL (acceptance 1), the
HTML report in headless Chromium, and tamper detection of the SQLite file and the checkpoints."""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from ledger_support import BACKENDS, ledger_location, raw_execute, raw_query, snapshot, write_ids

from unlearnkit.checkpoints import save_checkpoint
from unlearnkit.cli import main
from unlearnkit.ledger import Ledger, file_sha256
from unlearnkit.ledger.core import CRASH_ENV
from unlearnkit.pipeline import Experiment
from unlearnkit.presets import train_recipe

EPOCHS = 3  # a short recipe keeps the originals and the retrained references (same recipe) to seconds


@pytest.fixture(scope="module")
def original(tmp_path_factory) -> tuple[Path, Path]:
    """A digits CNN checkpoint of the pipeline (3 epochs) and the model cache it came from."""
    d = tmp_path_factory.mktemp("orig")
    recipe = dataclasses.replace(train_recipe("digits", "cnn"), epochs=EPOCHS)
    exp = Experiment("digits", recipe=recipe, cache_dir=d / "cache", progress=False, log=lambda m: None)
    tm = exp.original(0)
    return save_checkpoint(d / "model.safetensors", tm.model, tm.manifest), d / "cache"


def _deploy_copy(original: Path, folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(original, folder / "model.safetensors")
    shutil.copyfile(original.with_suffix(".json"), folder / "model.json")
    os.chmod(folder / "model.safetensors", 0o644)
    return folder / "model.safetensors"


def _ids(folder: Path, name: str, ids) -> str:
    """An ids file naming the digits training examples at positions ``ids`` by their user ids."""
    return write_ids(folder / name, ids, sep=",")


def _check_consistent(led: Ledger, ckpt: Path, n_requests: int) -> None:
    """Every request applied exactly once, every version file and the deployed file match the rows."""
    apps = led.applications()
    applied = [rid for a in apps for rid in a.request_ids]
    assert sorted(applied) == list(range(1, n_requests + 1)), applied
    assert len(set(applied)) == len(applied)
    for a, b in zip(apps, apps[1:]):
        assert b.model_before == a.model_after  # one unbroken lineage
    for a in apps:
        assert file_sha256(a.after_path) == a.model_after
    assert file_sha256(ckpt) == apps[-1].model_after
    assert sorted(e["request_id"] for e in led.evidence()) == list(range(1, n_requests + 1))
    res = led.verify()
    assert res.ok, str(res)


# --- end to end on digits -----------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def e2e(original, tmp_path_factory):
    """Three requests (two ids files, one class) added and applied sequentially with sfron, reports rendered."""
    ckpt_orig, cache = original
    d = tmp_path_factory.mktemp("e2e")
    ckpt = _deploy_copy(ckpt_orig, d)
    where = str(d / "ledger.sqlite")
    out: list[str] = []
    for extra in (["--ids", _ids(d, "a.ids", [5, 17, 40]), "--reason", "GDPR Art. 17", "--requester", "T-1"],
                  ["--ids", _ids(d, "b.ids", [100, 101, 102])], ["--class", "3", "--reason", "CCPA"]):
        assert main(["request", "add", "--ledger", where, "--checkpoint", str(ckpt), *extra]) == 0
    t0 = time.perf_counter()
    assert main(["request", "apply", "--ledger", where, "--checkpoint", str(ckpt), "--method", "sfron",
                 "--cache-dir", str(cache), "-q"]) == 0
    seconds = time.perf_counter() - t0
    for rid in (1, 2, 3):
        assert main(["request", "report", "--ledger", where, str(rid), "--out", str(d / "reports")]) == 0
    return {"dir": d, "ckpt": ckpt, "ckpt_orig": ckpt_orig, "where": where, "cache": cache, "seconds": seconds,
            "out": out}


def test_e2e_sequential_application(e2e, capsys):
    with Ledger(e2e["where"], log=lambda m: None) as led:
        apps = led.applications()
        assert [a.request_ids for a in apps] == [[1], [2], [3]]
        assert all(a.method == "sfron" and a.mode == "sequential" for a in apps)
        assert apps[0].model_before == file_sha256(e2e["ckpt_orig"])
        assert e2e["ckpt"].stat().st_mode & 0o777 == 0o644  # replaced, with its permissions kept
        _check_consistent(led, e2e["ckpt"], 3)
        assert not led.requests(pending=True)
        ev = {e["request_id"]: e for e in led.evidence()}
        assert [ev[i]["drift"]["step"] for i in (1, 2, 3)] == [1, 2, 3]
        assert ev[1]["drift"]["single_step_is_this_model"] and not ev[3]["drift"]["single_step_is_this_model"]
        m3 = ev[3]["metrics"]
        # class 3 is forgotten: the original knew it, the unlearned model does not (the retrained model neither)
        assert m3["before"]["forget_acc"] > 90 and m3["after"]["forget_acc"] < 20
        assert ev[3]["reference"]["metrics"]["forget_acc"] < 20
        assert ev[3]["noise_floor"]["avg_gap_request"] is not None and m3["after"]["avg_gap"] is not None
    capsys.readouterr()
    # the same samples again: refused, naming the request that forgot them
    rc = main(["request", "add", "--ledger", e2e["where"], "--checkpoint", str(e2e["ckpt"]), "--ids",
               str(e2e["dir"] / "a.ids")])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1
    assert "(training index 5) is already forgotten by request 1 (ids:a.ids, applied in application 1)" in err[0]
    rc = main(["request", "add", "--ledger", e2e["where"], "--checkpoint", str(e2e["ckpt"]), "--class", "3"])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1 and "every sample of class:3 is already forgotten by request 3" in err[0]
    # nothing pending: apply changes nothing
    before = snapshot(e2e["where"])
    assert main(["request", "apply", "--ledger", e2e["where"], "--checkpoint", str(e2e["ckpt"]), "--method",
                 "sfron", "-q"]) == 0
    assert snapshot(e2e["where"]) == before


def test_e2e_report_json(e2e):
    d = json.loads((e2e["dir"] / "reports" / "request-3.json").read_text())
    assert d["schema"] == "unlearnkit.ledger-report/1" and d["status"] == "applied"
    assert d["application"]["method"] == "sfron" and d["application"]["model_after"] != d["application"][
        "model_before"]
    assert d["request"]["reason"] == "CCPA" and d["request"]["selector"] == "class:3"
    assert [h["step"] for h in d["drift_history"]] == [1, 2, 3]
    last = d["drift_history"][-1]
    for k in ("sequential_avg_gap", "single_step_avg_gap", "noise_floor_avg_gap"):
        assert isinstance(last[k], float)
    text = " ".join(d["statement"])
    assert "not a proof of exact removal" in text and "noise floor" in text
    raw = (e2e["dir"] / "reports" / "request-1.json").read_text()
    assert '"train_indices"' not in raw and '"user_ids"' not in raw  # counts and hashes, never the ids or data


def test_wrong_checkpoint_refused(e2e, capsys):
    # a new request, then apply to a model that is not the lineage's head (the untouched original)
    with Ledger(e2e["where"], log=lambda m: None) as led:
        gone = set(led.request(3).train_indices)
    free = next(i for i in range(200, 400) if i not in gone)
    assert main(["request", "add", "--ledger", e2e["where"], "--checkpoint", str(e2e["ckpt"]), "--ids",
                 _ids(e2e["dir"], "c.ids", [free])]) == 0
    stale = _deploy_copy(e2e["ckpt_orig"], e2e["dir"] / "stale")
    before = snapshot(e2e["where"])
    capsys.readouterr()
    rc = main(["request", "apply", "--ledger", e2e["where"], "--checkpoint", str(stale), "--method", "sfron"])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1 and "is not the model this ledger last produced" in err[0]
    # a method that cannot serve an ids request fails before any work
    rc = main(["request", "apply", "--ledger", e2e["where"], "--checkpoint", str(e2e["ckpt"]), "--method", "svd"])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1 and "svd does not support ids requests" in err[0] and "stay pending" in err[0]
    assert snapshot(e2e["where"]) == before
    with Ledger(e2e["where"], log=lambda m: None) as led:
        assert [r.id for r in led.requests(pending=True)] == [4]


CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync",
                  "--enable-logging=stderr", "--v=0", "--window-size=1000,1600", "--hide-scrollbars"]


def _chromium() -> str:
    exe = shutil.which("chromium") or shutil.which("chromium-browser")
    if not exe:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail("CI=true but chromium is not installed: .ci/run must install it")
        pytest.skip("chromium not installed (apt-get install chromium)")
    return exe


def _render(exe: str, page: Path, shot: Path, profile: Path) -> list[str]:
    """Screenshot ``page``; returns the page's console messages (Chromium logs them as INFO:CONSOLE lines)."""
    r = subprocess.run([exe, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", f"--screenshot={shot}",
                        page.resolve().as_uri()], capture_output=True, text=True, timeout=120,
                       env={**os.environ, "HOME": str(profile)})
    assert r.returncode == 0, r.stderr[-2000:]
    return [ln for ln in r.stderr.splitlines() if ":CONSOLE" in ln]


def _not_blank(shot: Path) -> tuple[int, float]:
    from PIL import Image

    im = Image.open(shot).convert("RGB")
    px = list(im.get_flattened_data()) if hasattr(im, "get_flattened_data") else list(im.getdata())
    colours = len(set(px))
    dark = sum(1 for p in px if sum(p) < 600) / len(px)
    return colours, dark


def test_report_html_in_headless_chromium(e2e, tmp_path):
    exe = _chromium()
    page = e2e["dir"] / "reports" / "request-3.html"
    html = page.read_text()
    assert "data:image/png;base64," in html and html.count("<img") == 2
    # self-contained: no external resource of any kind
    assert "http://" not in html and "https://" not in html and "<script" not in html and "<link" not in html
    # the console check can fail: a page that logs an error is caught
    bad = tmp_path / "bad.html"
    bad.write_text("<html><body><p>x</p><script>console.error('boom-from-page')</script></body></html>")
    assert any("boom-from-page" in ln for ln in _render(exe, bad, tmp_path / "bad.png", tmp_path / "p0"))
    console = _render(exe, page, tmp_path / "report.png", tmp_path / "p1")
    assert console == []
    colours, dark = _not_blank(tmp_path / "report.png")
    assert colours > 50 and dark > 0.01, (colours, dark)
    # and a blank page is recognised as blank by the same check
    blank = tmp_path / "blank.html"
    blank.write_text("<html><body></body></html>")
    _render(exe, blank, tmp_path / "blank.png", tmp_path / "p2")
    assert _not_blank(tmp_path / "blank.png")[1] == 0.0


def test_verify_detects_changed_checkpoint_and_one_byte_of_a_request_row(e2e, capsys):
    where, ckpt = e2e["where"], e2e["ckpt"]
    assert main(["ledger", "verify", "--ledger", where]) == 0
    # a deployed checkpoint that is not the recorded one
    data = bytearray(ckpt.read_bytes())
    saved = bytes(data)
    data[-1] ^= 0x01
    ckpt.write_bytes(bytes(data))
    capsys.readouterr()
    assert main(["ledger", "verify", "--ledger", where]) == 1
    assert "deployed checkpoint" in capsys.readouterr().err
    ckpt.write_bytes(saved)
    assert main(["ledger", "verify", "--ledger", where]) == 0
    # one byte of request 1's row, changed through sqlite3: 'GDPR Art. 17' -> 'GDPR Art. 18'
    assert raw_query(where, "SELECT reason FROM requests WHERE id = 1") == [("GDPR Art. 17",)]
    raw_execute(where, "UPDATE requests SET reason = 'GDPR Art. 18' WHERE id = 1")
    capsys.readouterr()
    assert main(["ledger", "verify", "--ledger", where]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "requests row id=1 (chain position 1)" in err[0] and "edited" in err[0]


# --- crash safety ---------------------------------------------------------------------------------------------------


def _apply_proc(where: str, ckpt: Path, cache: Path, crash: str | None = None) -> subprocess.Popen:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    env.pop(CRASH_ENV, None)
    if crash:
        env[CRASH_ENV] = crash
    return subprocess.Popen([sys.executable, "-m", "unlearnkit", "request", "apply", "--ledger", where,
                             "--checkpoint", str(ckpt), "--method", "gradient_ascent", "--evidence", "cheap",
                             "--cache-dir", str(cache), "-q"], env=env, cwd=ckpt.parent,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _n_apps(where: str) -> int:
    return int(raw_query(where, "SELECT COUNT(*) FROM applications")[0][0])


@pytest.mark.parametrize("backend", BACKENDS)
def test_sigkill_during_apply_then_rerun(backend, original, tmp_path):
    ckpt_orig, cache = original
    with ledger_location(backend, tmp_path) as where:
        ckpt = _deploy_copy(ckpt_orig, tmp_path / "deploy")
        h0 = file_sha256(ckpt)
        with Ledger(where, log=lambda m: None) as led:
            led.add_request(checkpoint=ckpt, ids=_ids(tmp_path, "a.ids", [5, 17, 40]))
            led.add_request(checkpoint=ckpt, ids=_ids(tmp_path, "b.ids", [100, 101, 102]))
            led.add_request(checkpoint=ckpt, cls="3")
        # Each step is a fresh process (~10-25 s on the shared machine): PostgreSQL runs the two steps whose
        # outcome depends on the database's transactions (2 and 4); SQLite runs all four.
        full = backend == "sqlite"
        # 1. killed inside the first commit's transaction: nothing recorded, nothing deployed
        if full:
            p = _apply_proc(where, ckpt, cache, crash="commit")
            p.communicate(timeout=300)
            assert p.returncode == -signal.SIGKILL
            assert _n_apps(where) == 0 and file_sha256(ckpt) == h0
            with Ledger(where, log=lambda m: None) as led:
                assert len(led.requests(pending=True)) == 3 and led.verify().ok
        # 2. killed after the first commit, before deployment: recorded, the deployed file one step behind
        p = _apply_proc(where, ckpt, cache, crash="deploy")
        p.communicate(timeout=300)
        assert p.returncode == -signal.SIGKILL
        assert _n_apps(where) == 1 and file_sha256(ckpt) == h0
        with Ledger(where, log=lambda m: None) as led:
            assert "awaits a re-run" in led.verify().problem
        # 3. killed at a random moment once the second application is recorded
        if full:
            p = _apply_proc(where, ckpt, cache)
            deadline = time.time() + 300
            while _n_apps(where) < 2 and p.poll() is None and time.time() < deadline:
                time.sleep(0.02)
            p.send_signal(signal.SIGKILL)
            p.communicate(timeout=60)
            assert _n_apps(where) >= 2
        # 4. the re-run resumes and finishes
        p = _apply_proc(where, ckpt, cache)
        out, err = p.communicate(timeout=300)
        assert p.returncode == 0, err
        with Ledger(where, log=lambda m: None) as led:
            _check_consistent(led, ckpt, 3)
            assert [a.request_ids for a in led.applications()] == [[1], [2], [3]]


def test_batch_application(original, tmp_path):
    ckpt_orig, cache = original
    ckpt = _deploy_copy(ckpt_orig, tmp_path / "deploy")
    where = str(tmp_path / "ledger.sqlite")
    with Ledger(where, cache_dir=cache, log=lambda m: None) as led:
        led.add_request(checkpoint=ckpt, ids=_ids(tmp_path, "a.ids", [5, 17, 40]))
        led.add_request(checkpoint=ckpt, ids=_ids(tmp_path, "b.ids", [100, 101, 102]))
        assert led.apply(checkpoint=ckpt, method="sfron", evidence="cheap", batch=True) == [1]
        a = led.applications()[0]
        assert a.request_ids == [1, 2] and a.mode == "batch"
        _check_consistent(led, ckpt, 2)
        ev = led.evidence()
        assert [e["tier"] for e in ev] == ["cheap", "cheap"] and all(e["reference"] is None for e in ev)
        assert all(e["metrics"]["after"]["n_forget"] == 3 for e in ev)


def test_plain_safetensors_classifier(original, tmp_path, capsys):
    """A safetensors state dict without an unlearnkit manifest, with its dataset (and model) named on the CLI."""
    from safetensors.torch import save_file

    from unlearnkit.checkpoints import build_from_checkpoint

    ckpt_orig, cache = original
    model, _ = build_from_checkpoint(ckpt_orig)
    ckpt = tmp_path / "plain.safetensors"
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(ckpt))
    where = str(tmp_path / "ledger.sqlite")
    assert main(["request", "add", "--ledger", where, "--dataset", "digits", "--ids",
                 _ids(tmp_path, "a.ids", [5, 17, 40])]) == 0
    before = snapshot(where)
    capsys.readouterr()
    base = ["request", "apply", "--ledger", where, "--checkpoint", str(ckpt), "--method", "gradient_ascent",
            "--evidence", "cheap", "--cache-dir", str(cache), "-q"]
    assert main(base) == 2  # without --dataset it cannot be read
    assert "not an unlearnkit safetensors file" in capsys.readouterr().err
    assert main([*base, "--dataset", "digits", "--model", "mlp"]) == 2  # the wrong architecture
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "is not a state dict of model mlp on digits" in err[0]
    assert snapshot(where) == before
    assert main([*base, "--dataset", "digits", "--model", "cnn"]) == 0
    with Ledger(where, log=lambda m: None) as led:
        _check_consistent(led, ckpt, 1)
        assert led.applications()[0].model_before != led.applications()[0].model_after
