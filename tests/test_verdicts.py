"""The class-forgetting goal notes (issue 16, acceptance 4): which rows miss it, why, and where the CLI shows it."""

import json

import pytest

from unlearnkit.evaluation import write_report
from unlearnkit.evaluation.verdicts import MAX_FORGET_ACC, MAX_KEPT_DROP, annotate, goal_notes
from unlearnkit.methods.base import get_method


def _row(method, forget, kept, status="ok"):
    return {"method": method, "request": "class:3", "seeds": [0], "status": status,
            "metrics": {} if status != "ok" else {"forget_acc": forget, "test_acc_remaining": kept}}


SUMMARY = [_row("original", 99.0, 90.0), _row("retrain", 0.0, 90.5), _row("good", 1.0, 89.0),
           _row("edge", MAX_FORGET_ACC, 90.0 - MAX_KEPT_DROP), _row("leaky", 12.5, 90.0),
           _row("harmful", 0.0, 80.0), _row("both", 50.0, 70.0), _row("finetune", 99.0, 90.0),
           _row("skipped", None, None, status="n/a")]


def test_goal_notes_name_the_missed_part_with_numbers():
    notes = goal_notes(SUMMARY)
    assert set(notes) == {"leaky", "harmful", "both", "finetune"}  # references, the boundary and n/a rows excluded
    assert "forget acc 12.5% > 5%" in notes["leaky"] and "kept-class" not in notes["leaky"]
    assert notes["leaky"].endswith("`unlearnkit tune --methods leaky` searches its settings on a proxy request")
    tuned = goal_notes(SUMMARY, tuned={"leaky", "finetune"})
    assert tuned["leaky"].endswith("with the settings `unlearnkit tune` chose (tuned file)")
    assert tuned["finetune"].endswith("(tuned file); " + get_method("finetune").class_note)
    assert "kept-class test acc 80.0%, 10.0 points below the original's 90.0%" in notes["harmful"]
    assert "forget acc" not in notes["harmful"]
    assert "forget acc 50.0%" in notes["both"] and "20.0 points below" in notes["both"]
    # The method's own explanation follows the measured numbers.
    assert notes["finetune"].endswith(get_method("finetune").class_note) and get_method("finetune").class_note


def test_goal_applies_to_class_requests_with_an_original_only():
    assert goal_notes(SUMMARY, request_kind="random") == {}
    assert goal_notes([r for r in SUMMARY if r["method"] != "original"]) == {}


def test_annotate_puts_notes_in_rows_and_the_report(tmp_path):
    rows = [dict(r) for r in SUMMARY]
    notes = annotate(rows)
    assert {r["method"] for r in rows if "note" in r} == set(notes)
    recs = [{"method": r["method"], "request": "class:3", "seed": 0, "metrics": r["metrics"],
             "status": r["status"]} for r in SUMMARY]
    text = write_report({"records": recs, "summary": rows}, tmp_path).read_text()
    header = next(line for line in text.splitlines() if line.startswith("| method |"))
    assert header.endswith("| note |")
    leaky = next(line for line in text.splitlines() if line.startswith("| leaky |"))
    assert "forget acc 12.5% > 5%" in leaky
    good = next(line for line in text.splitlines() if line.startswith("| good |"))
    assert good.endswith("|  |")  # an empty note cell for a row that met the goal


@pytest.mark.slow
def test_cli_run_marks_and_warns_exactly_the_rows_that_miss(tmp_path):
    from tests.test_cli import _cli

    out = tmp_path / "run"
    p = _cli("run", "--methods", "gradient_ascent,gradtau", "--forget", "class:3", "--epochs", "3", "-q",
             "--out", str(out), "--cache-dir", str(tmp_path / "cache"))
    summary = json.loads((out / "results.json").read_text())["summary"]
    base = next(r for r in summary if r["method"] == "original")["metrics"]["test_acc_remaining"]
    for r in summary:
        if r["method"] in ("original", "retrain"):
            continue
        m = r["metrics"]
        missed = m["forget_acc"] > MAX_FORGET_ACC or m["test_acc_remaining"] < base - MAX_KEPT_DROP
        assert ("note" in r) == missed, r
        assert (f"warning: {r['method']} misses the class goal" in p.stdout) == missed
        assert (f"{r['method']} (!)" in p.stdout) == missed
