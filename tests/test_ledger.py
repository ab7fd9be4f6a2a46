"""The ledger's storage on a real SQLite file and (with UNLEARNKIT_TEST_POSTGRES_URL) a real PostgreSQL server:
hash chain, tamper detection, concurrent writers, migrations, refused inputs that change nothing."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from ledger_support import BACKENDS, ledger_location, raw_execute, raw_query, snapshot, write_ids

from unlearnkit.cli import main
from unlearnkit.data import load_dataset
from unlearnkit.ledger import SCHEMA_VERSION, Ledger, LedgerError
from unlearnkit.ledger.store import GENESIS, open_store, row_hash

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(params=BACKENDS)
def where(request, tmp_path):
    with ledger_location(request.param, tmp_path) as w:
        yield w


def _ids(tmp_path: Path, name: str, ids, raw: bool = False) -> str:
    """An ids file naming the digits training examples at positions ``ids`` (``raw``: the ids as given)."""
    return write_ids(tmp_path / name, ids, raw=raw)


def _three(led: Ledger, tmp_path: Path) -> list[int]:
    return [led.add_request(dataset="digits", ids=_ids(tmp_path, "a.ids", [1, 2, 3]), reason="GDPR Art. 17",
                            requester="T-1"),
            led.add_request(dataset="digits", ids=_ids(tmp_path, "b.ids", [10, 11])),
            led.add_request(dataset="digits", cls="3")]


# --- the chain ---------------------------------------------------------------------------------------------------


def test_rows_are_chained_and_verify(where, tmp_path):
    with Ledger(where, log=lambda m: None) as led:
        ids = _three(led, tmp_path)
        assert ids == [1, 2, 3]
        res = led.verify()
        assert res.ok and res.rows == 3, str(res)
        rows = led.store.rows("requests")
        prev = GENESIS
        for r in rows:  # the chain, recomputed by hand
            assert r["prev_hash"] == prev and row_hash("requests", r, r["seq"], prev) == r["row_hash"]
            prev = r["row_hash"]
        assert led.store.head() == (3, prev)
        r1 = led.request(1)
        src = load_dataset("digits", seed=0).train.source_ids  # the ids file names training examples 1, 2, 3
        assert r1.user_ids == [str(src[i]) for i in (1, 2, 3)] and r1.train_indices == [1, 2, 3]
        assert len(r1.sample_hashes) == 3
        assert r1.reason == "GDPR Art. 17" and r1.requester == "T-1" and r1.pending
        r3 = led.request(3)
        assert r3.kind == "class" and r3.user_ids is None and r3.n_samples == len(r3.train_indices) > 100
        assert [r.id for r in led.requests(pending=True)] == [1, 2, 3]


@pytest.mark.parametrize("tamper, expect", [
    ("edit", "requests row id=2 (chain position 2): its content does not match its hash"),
    ("delete", "requests row id=3 (chain position 3): expected chain position 2"),
    ("delete_last", "the last rows were deleted"),
    ("swap", "requests row id=2 (chain position 1): does not follow the previous row"),
    ("swap_content", "requests row id=1 (chain position 1): its content does not match its hash"),
])
def test_chain_detects_tampering(where, tmp_path, tamper, expect):
    with Ledger(where, log=lambda m: None) as led:
        _three(led, tmp_path)
    stmts = {
        "edit": ["UPDATE requests SET reason = 'GDPR Art. 18' WHERE id = 2"],
        "delete": ["DELETE FROM requests WHERE id = 2"],
        "delete_last": ["DELETE FROM requests WHERE id = 3"],
        # reorder two rows: each keeps its content and hashes, their chain positions are exchanged
        "swap": ["UPDATE requests SET seq = 100 WHERE id = 1", "UPDATE requests SET seq = 1 WHERE id = 2",
                 "UPDATE requests SET seq = 2 WHERE id = 1"],
        # exchange the two rows' whole content (ids, hashes and positions stay): the rows now lie
        "swap_content": ["UPDATE requests SET id = 100 WHERE id = 1", "UPDATE requests SET id = 1 WHERE id = 2",
                         "UPDATE requests SET id = 2 WHERE id = 100",
                         "UPDATE requests SET seq = 100 WHERE seq = 1", "UPDATE requests SET seq = 1 WHERE seq = 2",
                         "UPDATE requests SET seq = 2 WHERE seq = 100"],
    }[tamper]
    if tamper == "swap_content":
        # keep each position's hashes where they were: move prev/row hashes back with the positions
        h = {s: (p, r) for s, p, r in raw_query(where, "SELECT seq, prev_hash, row_hash FROM requests")}
        stmts += [f"UPDATE requests SET prev_hash = '{h[1][0]}', row_hash = '{h[1][1]}' WHERE seq = 1",
                  f"UPDATE requests SET prev_hash = '{h[2][0]}', row_hash = '{h[2][1]}' WHERE seq = 2"]
    raw_execute(where, *stmts)
    with Ledger(where, log=lambda m: None) as led:
        res = led.verify()
    assert not res.ok
    assert expect in res.problem, res.problem


def test_verify_cli_exit_status(where, tmp_path, capsys):
    with Ledger(where, log=lambda m: None) as led:
        _three(led, tmp_path)
    assert main(["ledger", "verify", "--ledger", where]) == 0
    assert "ledger OK: 3 rows" in capsys.readouterr().out
    raw_execute(where, "UPDATE requests SET requester = 'T-2' WHERE id = 1")
    assert main(["ledger", "verify", "--ledger", where]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "requests row id=1" in err[0] and "edited" in err[0]


# --- concurrency ---------------------------------------------------------------------------------------------------

WRITER = r"""
import sys, time
from pathlib import Path
from unlearnkit.ledger import Ledger
where, tag, n, folder = sys.argv[1], sys.argv[2], int(sys.argv[3]), Path(sys.argv[4])
led = Ledger(where, log=lambda m: None)
led.add_request(dataset="digits", ids=str(folder / f"{tag}-warm.ids"))  # loads the data before the race
(folder / f"{tag}.ready").touch()
while not (folder / "go").exists():
    time.sleep(0.001)
t0 = time.time()
ids = [led.add_request(dataset="digits", ids=str(folder / f"{tag}-{i}.ids"), requester=f"{tag}-{i}") for i in range(n)]
print(t0, time.time(), *ids)
"""


def test_two_processes_add_concurrently(where, tmp_path):
    n = 40
    base = {"a": 0, "b": 500}
    for tag, off in base.items():
        _ids(tmp_path, f"{tag}-warm.ids", [off + 400])
        for i in range(n):
            _ids(tmp_path, f"{tag}-{i}.ids", [off + 2 * i, off + 2 * i + 1])
    script = tmp_path / "writer.py"
    script.write_text(WRITER)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    procs = [subprocess.Popen([sys.executable, str(script), where, tag, str(n), str(tmp_path)],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=tmp_path)
             for tag in base]
    deadline = time.time() + 180
    while not all((tmp_path / f"{t}.ready").exists() for t in base):  # both have imported torch and loaded digits
        assert time.time() < deadline and all(p.poll() is None for p in procs), [p.communicate() for p in procs]
        time.sleep(0.05)
    (tmp_path / "go").touch()  # then both add their requests at once
    outs = [p.communicate(timeout=240) for p in procs]
    for p, (_, err) in zip(procs, outs):
        assert p.returncode == 0, err
    spans = [tuple(float(x) for x in out.split()[:2]) for out, _ in outs]
    printed = [int(x) for out, _ in outs for x in out.split()[2:]]
    assert len(printed) == 2 * n and len(set(printed)) == 2 * n  # every add got its own id
    with Ledger(where, log=lambda m: None) as led:
        reqs = led.requests()
        assert [r.id for r in reqs] == list(range(1, 2 * n + 3))  # consecutive, nothing lost, nothing duplicated
        got = sorted(r.requester for r in reqs if r.requester)
        assert got == sorted(f"{t}-{i}" for t in base for i in range(n))
        assert led.verify().ok
    # the two writers really ran at the same time (otherwise this test would not test concurrency)
    assert max(s for s, _ in spans) < min(e for _, e in spans), spans


# --- migrations ------------------------------------------------------------------------------------------------------


def test_schema_version_and_migrations(where):
    s = open_store(where)
    try:
        assert s.query("SELECT value FROM meta WHERE key = 'schema_version'") == [(str(SCHEMA_VERSION),)]
        assert s.migrate() == SCHEMA_VERSION  # re-opening migrates nothing
    finally:
        s.close()
    raw_execute(where, f"UPDATE meta SET value = '{SCHEMA_VERSION + 1}' WHERE key = 'schema_version'")
    with pytest.raises(LedgerError, match="newer than this unlearnkit understands"):
        open_store(where)


def test_default_location_and_env(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("UNLEARNKIT_LEDGER", raising=False)
    Ledger(log=lambda m: None).close()
    assert (tmp_path / "unlearnkit-ledger.sqlite").is_file()
    monkeypatch.setenv("UNLEARNKIT_LEDGER", str(tmp_path / "other.sqlite"))
    Ledger(log=lambda m: None).close()
    assert (tmp_path / "other.sqlite").is_file()
    assert raw_query(str(tmp_path / "other.sqlite"), "PRAGMA journal_mode") == [("wal",)]


# --- refused input: one line, nothing changed -------------------------------------------------------------------------


def _bad_inputs(tmp_path: Path) -> list[tuple[list[str], str]]:
    return [
        (["--ids", _ids(tmp_path, "oor.ids", [5, 99999], raw=True)], "('99999'): out of range"),
        (["--ids", _ids(tmp_path, "dup.ids", [5, 7, 5], raw=True)], "id 5 is listed more than once"),
        (["--ids", _ids(tmp_path, "neg.ids", [-1], raw=True)], "('-1'): out of range"),
        (["--ids", str(tmp_path / "missing.ids")], "not found"),
        (["--ids", _ids(tmp_path, "txt.ids", ["abc"], raw=True)], "is not an integer"),
        (["--ids", _ids(tmp_path, "empty.ids", [], raw=True)], "is empty"),
        (["--ids", _ids(tmp_path, "again.ids", [2])], "(training index 2) is already listed in request 1"),
        (["--class", "11"], "unknown class '11'"),
        (["--ids", _ids(tmp_path, "x.ids", [9]), "--class", "3"], "either --ids FILE or --class C"),
        ([], "either --ids FILE or --class C"),
    ]


def test_bad_request_inputs_one_line_nothing_changed(where, tmp_path, capsys):
    with Ledger(where, log=lambda m: None) as led:
        led.add_request(dataset="digits", ids=_ids(tmp_path, "a.ids", [1, 2, 3]))
    before = snapshot(where)
    capsys.readouterr()
    for extra, msg in _bad_inputs(tmp_path):
        rc = main(["request", "add", "--ledger", where, "--dataset", "digits", *extra])
        cap = capsys.readouterr()
        lines = cap.err.strip().splitlines()
        assert rc == 2 and len(lines) == 1 and lines[0].startswith("error: ") and msg in lines[0], (extra, cap.err)
        assert cap.out == ""
        assert snapshot(where) == before, extra
    for argv, msg in [
        (["request", "add", "--ledger", where, "--ids", str(tmp_path / "a.ids")], "exactly one of --checkpoint"),
        (["request", "add", "--ledger", where, "--dataset", "digits", "--checkpoint", "c.safetensors", "--class",
          "3"], "exactly one of --checkpoint"),
        (["request", "add", "--ledger", where, "--checkpoint", str(tmp_path / "nope.safetensors"), "--class", "3"],
         "not found"),
        (["request", "report", "--ledger", where, "7"], "no request 7"),
        (["request", "apply", "--ledger", where, "--checkpoint", str(tmp_path / "nope.safetensors"), "--method",
          "sfron"], "not found"),
        (["request", "apply", "--ledger", where, "--checkpoint", "c", "--method", "nosuch"], "nosuch"),
        (["request", "apply", "--ledger", where, "--checkpoint", "c", "--method", "sfron", "--evidence", "gold"],
         "--evidence must be one of"),
    ]:
        rc = main(argv)
        lines = capsys.readouterr().err.strip().splitlines()
        assert rc == 2 and len(lines) == 1 and msg in lines[0], (argv, lines)
        assert snapshot(where) == before, argv


def test_request_list_cli(where, tmp_path, capsys):
    with Ledger(where, log=lambda m: None) as led:
        _three(led, tmp_path)
    capsys.readouterr()
    assert main(["request", "list", "--ledger", where, "--pending"]) == 0
    out = capsys.readouterr().out
    assert "class:3" in out and "ids:a.ids" in out and out.count("pending") >= 3


def test_unreachable_postgres_is_one_line(capsys):
    pytest.importorskip("psycopg")  # installed by `pip install '.[postgres]'` (.ci/run does)
    rc = main(["request", "list", "--ledger", "postgresql://nobody:secret@127.0.0.1:9/none"])
    lines = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(lines) == 1 and "cannot connect to the PostgreSQL ledger" in lines[0]
    assert "secret" not in lines[0]


def test_report_json_of_pending_request(where, tmp_path):
    with Ledger(where, log=lambda m: None) as led:
        _three(led, tmp_path)
        page, js = led.report(1, tmp_path / "rep")
    d = json.loads(js.read_text())
    assert d["status"] == "pending" and d["request"]["n_samples"] == 3 and d["application"] is None
    text = js.read_text() + page.read_text()
    assert "train_indices\"" not in text  # counts and hashes, never the indices or the data


# --- bench: seq_ids -------------------------------------------------------------------------------------------------


def test_bench_seq_ids_scenario():
    import numpy as np

    from unlearnkit.bench import SCENARIOS, scenario_splits
    from unlearnkit.pipeline import Experiment

    exp = Experiment("digits", progress=False, log=lambda m: None)
    sc = SCENARIOS["seq_ids"]
    steps = scenario_splits(exp, sc, seed=0)
    n = len(exp.splits.train)
    assert len(steps) == 5 and all(sp.request.kind == "ids" for sp in steps)
    sizes = np.diff([0, *[len(sp.forget_idx) for sp in steps]])
    assert all(round(0.01 * n) <= k <= round(0.04 * n) for k in sizes), sizes
    assert len(set(sizes.tolist())) > 1  # random sizes, not one fixed size
    for a, b in zip(steps, steps[1:]):
        assert np.isin(a.forget_idx, b.forget_idx).all()  # the union grows
    for sp in steps:
        assert len(np.intersect1d(sp.forget_idx, sp.retain_idx)) == 0 and len(sp.forget_idx) + len(sp.retain_idx) == n
    again = scenario_splits(exp, sc, seed=0)
    assert all(np.array_equal(x.forget_idx, y.forget_idx) for x, y in zip(steps, again))  # seeded
    assert not np.array_equal(scenario_splits(exp, sc, seed=1)[0].forget_idx, steps[0].forget_idx)
