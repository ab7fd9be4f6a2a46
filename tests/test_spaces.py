"""Every tunable method declares a valid search space whose sampled points pass the config validators."""

from __future__ import annotations

import dataclasses
import random

import pytest

from unlearnkit.errors import ConfigError
from unlearnkit.methods.base import get_method, list_methods
from unlearnkit.spaces import NOT_TUNABLE, SPACES, Param, sample_random, space_of


def test_every_method_has_a_space_or_a_reason():
    for m in list_methods():
        assert (m in SPACES) != (m in NOT_TUNABLE), m
    assert set(NOT_TUNABLE) == {"gradtau", "retrain"}
    assert set(SPACES) <= set(list_methods())


@pytest.mark.parametrize("method", sorted(SPACES))
def test_sampled_points_pass_the_validators(method):
    space = space_of(method)
    fields = {f.name for f in dataclasses.fields(get_method(method).config_cls)}
    assert {p.name for p in space} <= fields
    for p in space:
        assert set(p.when) <= {q.name for q in space}
    rng = random.Random(0)
    for _ in range(30):
        point = sample_random(space, rng)
        get_method(method).config_cls(seed=0, **point)  # raises ConfigError if a range is invalid


@pytest.mark.parametrize("bad", [Param("lr", "float", 1.0, 0.1), Param("lr", "float", 0.0, 1.0, log=True),
                                 Param("lr", "categorical"), Param("lr", "weird", 0, 1),
                                 Param("lr", "float", 0.1, 1.0, source="guess")])
def test_bad_spaces_give_one_line_errors(monkeypatch, bad):
    monkeypatch.setitem(SPACES, "finetune", (bad,))
    with pytest.raises(ConfigError) as e:
        space_of("finetune")
    assert "\n" not in str(e.value)


def test_gradtau_has_none():
    with pytest.raises(ConfigError, match="untuned reference"):
        space_of("gradtau")
