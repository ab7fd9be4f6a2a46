"""write_report renders report.md and PNG plots from a synthetic results dict, without a display."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

from unlearnkit.errors import DataError
from unlearnkit.evaluation import summarize, write_report

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _record(method: str, request: str, seed: int, rng: np.random.Generator, *, gap: float | None) -> dict:
    edges = list(np.logspace(-6, 2, 33))
    metrics = {
        "forget_acc": float(rng.uniform(0, 100)), "retain_acc": float(rng.uniform(90, 100)),
        "test_acc": float(rng.uniform(80, 95)), "mia_efficacy": float(rng.uniform(0, 100)),
        "mia_loss_auc": float(rng.uniform(0.4, 0.7)), "per_class_test_acc": [float(v) for v in rng.uniform(0, 100, 5)],
        "seconds": float(rng.uniform(0.5, 30)), "avg_gap": gap, "tow": None if gap is None else 1 - gap / 100,
        "test_acc_remaining": float(rng.uniform(80, 95)), "test_acc_forgotten": float(rng.uniform(0, 10)),
    }
    plots = {"loss_hist": {"edges": edges, "forget": rng.integers(0, 20, 32).tolist(),
                           "test": rng.integers(0, 20, 32).tolist()}}
    return {"method": method, "request": request, "seed": seed, "config": {}, "metrics": metrics, "plots": plots}


def _results(rng: np.random.Generator) -> dict:
    records = []
    for req in ("class:3", "random:0.1"):
        for seed in (0, 1, 2):
            records.append(_record("original", req, seed, rng, gap=float(rng.uniform(20, 40))))
            records.append(_record("retrain", req, seed, rng, gap=0.0))
            records.append(_record("finetune", req, seed, rng, gap=float(rng.uniform(1, 10))))
            records.append(_record("svd", req, seed, rng, gap=float(rng.uniform(1, 10))))
    return {"schema": "unlearnkit.results/1", "run_info": {"dataset": "shapes", "model": "cnn"},
            "records": records, "summary": summarize(records)}


def test_report_renders_plots_and_links(tmp_path: Path) -> None:
    res = _results(np.random.default_rng(0))
    res["records"].append({"method": "unsir", "request": "random:0.1", "seed": 0, "status": "n/a",
                           "reason": "class requests only", "metrics": {}})
    res["summary"] = summarize(res["records"])
    path = write_report(res, tmp_path)
    assert path == tmp_path / "report.md"
    md = path.read_text()
    links = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", md)
    # Three plots per request, two requests.
    assert len(links) == 6
    for link in links:
        assert not Path(link).is_absolute()
        png = tmp_path / link
        data = png.read_bytes()
        assert data.startswith(PNG_MAGIC) and len(data) > 2000
    # Original and retrain rows first, then methods; mean ± CI cells with three seeds.
    table = [ln for ln in md.splitlines() if ln.startswith("| ")]
    methods = [ln.split("|")[1].strip() for ln in table if not ln.startswith("| method")]
    assert methods[:4] == ["original", "retrain", "finetune", "svd"]
    assert "±" in table[1]
    assert "## Request `class:3`" in md and "## Request `random:0.1`" in md
    assert "| unsir | | n/a: class requests only |" in md


def test_report_without_summary_and_missing_rows(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    recs = [_record("finetune", "class:1", 0, rng, gap=None)]
    recs[0]["plots"] = {}
    path = write_report({"records": recs}, tmp_path / "out")
    md = path.read_text()
    # The original and retrained rows are shown even when absent, and plots without data are skipped with a note.
    assert "original (missing)" in md and "retrain (missing)" in md
    assert md.count("_No data for this plot") == 2  # loss histograms and cost-quality (no avg_gap)
    links = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", md)
    assert links == ["plots/per_class_class_1.png"]
    assert (tmp_path / "out" / links[0]).read_bytes().startswith(PNG_MAGIC)
    assert not any("±" in ln for ln in md.splitlines() if ln.startswith("| "))  # one seed: no CI


def test_report_rejects_bad_input(tmp_path: Path) -> None:
    with pytest.raises(DataError):
        write_report({"schema": "x"}, tmp_path)
