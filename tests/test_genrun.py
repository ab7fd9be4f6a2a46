"""``unlearnkit run --task generation`` end to end on a tiny size (seconds), and its refusals."""

from __future__ import annotations

import json

import pytest

from unlearnkit.cli import main
from unlearnkit.genrun import steps_to_forget

TINY = ["--task", "generation", "--dataset", "digits", "--forget", "class:3", "--threads", "1", "-q",
        "--train-steps", "3", "--unet-ch", "8", "--judge-epochs", "1", "--n-forget", "6", "--n-per-kept", "3",
        "--sampler-steps", "2", "--checkpoint-every", "2", "--checkpoint-n-forget", "4",
        "--checkpoint-n-per-kept", "3"]


def test_run_generation_end_to_end(tmp_path):
    out, cache = tmp_path / "run", tmp_path / "cache"
    # gradient_ascent only: sfron's mask pass over the whole remain set would take most of the test's time (its
    # pieces are tested in tests/test_generation_methods.py).
    argv = ["run", *TINY, "--methods", "gradient_ascent", "--seeds", "0", "--out", str(out),
            "--cache-dir", str(cache), "--set", "gradient_ascent.epochs=4"]
    assert main(argv) == 0
    res = json.loads((out / "results.json").read_text())
    assert res["settings"]["sampler"]["steps"] == 2 and res["settings"]["task"] == "generation"
    by = {r["method"]: r for r in res["records"]}
    assert set(by) == {"original", "retrain", "gradient_ascent"}
    for r in by.values():
        assert {"fa", "fa_kept", "judge_fd", "fa_entropy", "fa_prob", "seconds", "rte",
                "sampler_steps"} <= set(r["metrics"])
        assert 0.0 <= r["metrics"]["fa"] <= 100.0 and r["metrics"]["sampler_steps"] == 2.0
    assert [p["iteration"] for p in by["gradient_ascent"]["curve"]] == [0, 2, 4]
    cfg = by["gradient_ascent"]["config"]
    assert cfg["epochs"] == 4 and cfg["optimizer"] == "adam" and cfg["lr"] == 1e-4  # generation defaults + --set
    report = (out / "report.md").read_text()
    assert "| gradient_ascent |" in report and "curves.png" in report and "samples_gradient_ascent.png" in report
    for name in ("curves.png", "samples_original.png", "samples_retrain.png", "samples_gradient_ascent.png"):
        assert (out / name).read_bytes()[:4] == b"\x89PNG"
    # A second run reuses the cached models and the finished records (same results, bit for bit).
    assert main(argv) == 0
    again = json.loads((out / "results.json").read_text())
    assert again["records"] == res["records"]
    # --only-cached reports what is there and computes nothing (finetune has no record yet: skipped).
    partial = [*argv, "--only-cached", "--methods", "gradient_ascent,finetune", "--seeds", "0,1"]
    assert main(partial) == 0
    part = json.loads((out / "results.json").read_text())
    assert [r["method"] for r in part["records"]] == ["original", "retrain", "gradient_ascent"]
    assert not list((out / "cells").glob("finetune-*"))


@pytest.mark.parametrize("extra, msg", [
    (["--methods", "svd"], "does not serve the 'generation' task"),
    (["--methods", "random_label"], "does not serve the 'generation' task"),
    (["--forget", "random:0.1"], "one whole class"),
    (["--dataset", "cifar10:/nowhere"], "digits (16x16) and shapes[:N]"),
    (["--dataset", "shapes:abc"], "shapes:N needs a positive number of training images"),
    (["--set", "sfron.n_iters=-1"], "n_iters"),
])
def test_run_generation_refuses_before_work(tmp_path, capsys, extra, msg):
    argv = ["run", *TINY, "--methods", "sfron", "--out", str(tmp_path / "o"), "--cache-dir", str(tmp_path / "c"),
            *extra]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert msg in err and err.count("\n") == 1
    assert not (tmp_path / "c").exists()  # refused before any model was trained


def test_run_generation_on_shapes(tmp_path):
    """shapes:N for generation: 3x32x32 images in [-1, 1], the same labels as the classification loader; the UNet
    gets a third level at 32x32 (bottom 8x8)."""
    from unlearnkit.data.loaders import load_dataset
    from unlearnkit.data.shapes_diffusion import load_shapes_for_diffusion

    d = load_shapes_for_diffusion(60, 12, 12, seed=0)
    x = d["train"].x
    assert x.shape == (60, 3, 32, 32) and -1.0 <= float(x.min()) <= float(x.max()) <= 1.0
    cls = load_dataset("shapes:60", seed=0)
    assert d["train"].y.tolist() == cls.train.y.tolist()
    out = tmp_path / "run"
    tiny = [a if a != "digits" else "shapes:60" for a in TINY]
    assert main(["run", *tiny, "--methods", "finetune", "--seeds", "0", "--out", str(out),
                 "--cache-dir", str(tmp_path / "cache"), "--set", "finetune.epochs=1"]) == 0
    res = json.loads((out / "results.json").read_text())
    assert res["settings"]["dataset"] == "shapes:60" and res["settings"]["unet"]["in_channels"] == 3
    assert res["settings"]["unet"]["kwargs"]["ch_mult"] == [1, 2, 2]
    assert {r["method"] for r in res["records"]} == {"original", "retrain", "finetune"}
    for name in ("samples_original.png", "samples_finetune.png"):  # RGB grids
        assert (out / name).read_bytes()[:4] == b"\x89PNG"


def test_steps_to_forget_rule():
    base = {"fa": 90.0, "fa_kept": 95.0, "judge_fd": 10.0}
    curve = [{"iteration": 0, **base}, {"iteration": 10, "fa": 3.0, "fa_kept": 80.0, "judge_fd": 9.0},
             {"iteration": 20, "fa": 6.0, "fa_kept": 95.0, "judge_fd": 9.0},
             {"iteration": 30, "fa": 5.0, "fa_kept": 90.0, "judge_fd": 15.0}]
    assert steps_to_forget(curve, base) == 30
    assert steps_to_forget(curve[:3], base) is None
