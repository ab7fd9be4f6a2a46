"""One contract test run over every registered method (rows come from the registry, never from a hand list)."""

import pytest

import unlearnkit
from unlearnkit.methods.base import get_method
from unlearnkit.testing import check_method_contract, toy_problem

METHODS = unlearnkit.list_methods()


@pytest.fixture(scope="module")
def problem():
    return toy_problem(seed=0)


@pytest.mark.parametrize("name", METHODS)
def test_contract(name, problem):
    out = check_method_contract(name, problem)
    if get_method(name).raises_forget_loss:
        assert out["forget_loss_after"] >= out["forget_loss_before"] - 1e-6


def test_matrix_covers_registry():
    # The five published methods and the baselines must all be registered (and hence covered above).
    expected = {"svd", "unsir", "pgu", "sfron", "gradtau", "salun", "retrain", "finetune", "gradient_ascent",
                "random_label", "neggrad_plus", "amnesiac", "cf_k", "eu_k", "ssd", "scrub", "bad_teacher", "fisher"}
    assert expected <= set(METHODS), f"missing: {expected - set(METHODS)}"


@pytest.mark.parametrize("name", METHODS)
def test_every_config_field_has_help(name):
    import dataclasses

    spec = get_method(name)
    missing = [f.name for f in dataclasses.fields(spec.config_cls) if not f.metadata.get("help")]
    assert not missing, f"{spec.config_cls.__name__} fields without help text: {missing}"


@pytest.mark.parametrize("name", METHODS)
def test_capability_flags_consistent(name):
    spec = get_method(name)
    assert spec.supported_requests, "a method must support at least one request kind"
    if spec.requires_forget_classes:
        assert spec.supported_requests <= {"class"}, "class-id methods cannot claim random/ids requests"
    assert spec.paper and spec.summary
