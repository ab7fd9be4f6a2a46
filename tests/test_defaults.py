"""Data-derived defaults (unlearnkit.defaults): the rules reproduce the digits/shapes presets, apply to any
dataset, and every run says where each non-default value came from."""

from __future__ import annotations

import json

import pytest

from unlearnkit.defaults import DataSizes, paper_default_warning, rule_overrides
from unlearnkit.pipeline import Experiment, build_config, build_config_provenance
from unlearnkit.presets import method_overrides


@pytest.fixture(scope="module")
def exps():
    return {d: Experiment(d, progress=False, log=lambda m: None) for d in ("digits", "shapes")}


@pytest.mark.parametrize("dataset", ["digits", "shapes"])
@pytest.mark.parametrize("request_text", ["class:3", "random:0.1"])
@pytest.mark.parametrize("method", ["unsir", "pgu", "fisher", "svd"])
def test_rules_reproduce_the_named_presets(exps, dataset, request_text, method):
    """With the sizes, each config equals the one the presets alone gave (the lead's benchmark matrix keeps its
    configs); every rule value that a preset also states is that preset's value."""
    exp = exps[dataset]
    split = exp.resolve(request_text, 0)
    kind = split.request.kind
    before = build_config(method, dataset=dataset, kind=kind, seed=0)
    after, prov = exp.config_for(method, split, 0, use_tuned=False)
    assert after == before
    preset = method_overrides(method, dataset, kind)
    for f, (v, _) in rule_overrides(method, exp.sizes(split)).items():
        if method == "svd":  # the measured alphas replace the rule's search on these two datasets
            assert prov["search"]["source"] == "preset" and after.search is False
        elif f in preset:
            assert preset[f] == v, (f, preset[f], v)
            assert prov[f]["source"] == "rule"


def test_unsir_rule_values_scale_with_class_size():
    def sizes(per_class, n_classes=10, opt="sgd"):
        return DataSizes(n_train=per_class * n_classes, num_classes=n_classes, n_forget=per_class,
                         n_retain=per_class * (n_classes - 1), input_shape=(1, 28, 28), kind="class",
                         n_forget_classes=1, optimizer=opt)

    cifar = {f: v for f, (v, _) in rule_overrides("unsir", sizes(5000, opt="adam")).items()}
    assert cifar == {"noise_batch": 256, "retain_per_class": 1000}  # the official values
    small = {f: v for f, (v, _) in rule_overrides("unsir", sizes(300)).items()}
    assert small["noise_batch"] == 16 and small["retain_per_class"] == 250 and small["batch_size"] == 64
    assert small["impair_lr"] == 0.01


def test_paper_default_warning_once_per_unruled_method():
    assert paper_default_warning("gradient_ascent", "csv:x.csv", {}) is not None
    assert paper_default_warning("gradient_ascent", "csv:x.csv", {"lr": {"source": "--set"}}) is None
    assert paper_default_warning("gradtau", "csv:x.csv", {}) is None
    assert paper_default_warning("gradient_ascent", "cifar", {}) is None


def test_provenance_sources_and_precedence():
    sizes = DataSizes(n_train=3000, num_classes=10, n_forget=300, n_retain=2700, input_shape=(1, 28, 28),
                      kind="class", n_forget_classes=1, optimizer="sgd")
    cfg, prov = build_config_provenance("unsir", dataset="folder:x", kind="class", seed=0, sizes=sizes,
                                        tuned={"impair_lr": 0.03}, overrides={"repair_lr": "0.004"})
    assert cfg.noise_batch == 16 and prov["noise_batch"]["source"] == "rule"
    assert cfg.impair_lr == 0.03 and prov["impair_lr"]["source"] == "tuned file"
    assert cfg.repair_lr == 0.004 and prov["repair_lr"]["source"] == "--set"
    assert "seed" not in prov


def test_run_records_provenance_and_svd_choice(tmp_path, capsys):
    from unlearnkit.cli import main

    out = tmp_path / "o"
    code = main(["run", "--dataset", "digits", "--forget", "class:3", "--methods", "svd,unsir", "--seeds", "0",
                 "--search", "--out", str(out), "--cache-dir", str(tmp_path / "c"), "--epochs", "3",
                 "--set", "unsir.impair_epochs=1", "--set", "unsir.repair_epochs=1"])
    assert code == 0
    recs = {r["method"]: r for r in json.loads((out / "results.json").read_text())["records"]}
    assert recs["svd"]["provenance"]["search"]["source"] == "--set"
    chosen = recs["svd"]["chosen"]
    assert set(chosen) == {"alpha_r", "alpha_f"} and chosen["alpha_r"] in recs["svd"]["config"]["grid_r"]
    assert recs["unsir"]["provenance"]["noise_batch"]["source"] == "rule"
    assert recs["unsir"]["provenance"]["impair_epochs"]["source"] == "--set"
    text = capsys.readouterr()
    assert "unsir settings: " in text.out + text.err
    report = (out / "report.md").read_text()
    assert "chosen by its search: seed 0: alpha_r=" in report and "`noise_batch=8` (rule)" in report
