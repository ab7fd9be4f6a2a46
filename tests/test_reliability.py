"""Issue 22 acceptance: every ordinary mistake through the API and the CLI gives a typed error (API) or one line
and exit status 2 (CLI), before any training, leaving no partial output.

API checks run on tiny models and a few dozen examples; CLI checks run `unlearnkit` in a subprocess with a spy
that fails the test if any model training or method call starts.
"""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset, TensorDataset

import unlearnkit.api as api_mod
from unlearnkit import DataError, FinetuneConfig, GradientAscentConfig, RandomLabelConfig, UnlearnError, unlearn
from unlearnkit.data.base import LabeledDataset
from unlearnkit.errors import DivergedError

# ---------------------------------------------------------------------------------------------------------------
# API: the same checks for a TensorDataset, a custom Dataset and a LabeledDataset
# ---------------------------------------------------------------------------------------------------------------


class PairDataset(Dataset):
    """A user's own map-style dataset: (input, int label) pairs, no tensors exposed."""

    def __init__(self, x: torch.Tensor, y: torch.Tensor) -> None:
        self._x, self._y = x, y

    def __len__(self) -> int:
        return len(self._y)

    def __getitem__(self, i: int):
        return self._x[i], int(self._y[i])


KINDS = {
    "tensor": lambda x, y: TensorDataset(x, y),
    "custom": PairDataset,
    "labeled": lambda x, y: LabeledDataset(x, y),
}


def _mlp(d: int = 6, k: int = 3) -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(d, 8), nn.ReLU(), nn.Linear(8, k))


def _xy(n: int, seed: int, d: int = 6, k: int = 3) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, d, generator=g), torch.randint(0, k, (n,), generator=g)


@pytest.fixture
def no_method_runs(monkeypatch):
    """Make any method call fail loudly: a check that fires only after the method started is a test failure."""
    real = api_mod.method_for_config

    def spy(config):
        spec = real(config)

        def boom(*a, **k):
            raise AssertionError("the method ran before the inputs were validated")

        return dataclasses.replace(spec, fn=boom)

    monkeypatch.setattr(api_mod, "method_for_config", spy)


def _weights(m: nn.Module) -> list[torch.Tensor]:
    return [p.detach().clone() for p in m.state_dict().values()]


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_nan_forget_inputs_are_refused(kind, no_method_runs):
    x, y = _xy(8, 1)
    x[3, 2] = float("nan")
    rx, ry = _xy(30, 2)
    model = _mlp()
    before = _weights(model)
    with pytest.raises(DataError, match="NaN or Inf"):
        unlearn(model, forget=DataLoader(KINDS[kind](x, y)), retain=DataLoader(KINDS[kind](rx, ry)),
                config=GradientAscentConfig(lr=1.0))
    assert all(torch.equal(a, b) for a, b in zip(before, _weights(model)))


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_inf_retain_inputs_are_refused(kind, no_method_runs):
    x, y = _xy(8, 1)
    rx, ry = _xy(30, 2)
    rx[-1, 0] = float("inf")
    with pytest.raises(DataError, match="retain set contains NaN or Inf"):
        unlearn(_mlp(), forget=DataLoader(KINDS[kind](x, y)), retain=DataLoader(KINDS[kind](rx, ry)),
                config=FinetuneConfig())


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_overlap_is_found_by_content_across_objects(kind, no_method_runs):
    x, y = _xy(40, 3)
    forget = KINDS[kind](x[:10], y[:10])
    retain = KINDS[kind](x[7:], y[7:])  # rows 7, 8, 9 are in both, in two separately built datasets
    with pytest.raises(DataError, match="3 forget examples also appear in the retain set"):
        unlearn(_mlp(), forget=DataLoader(forget), retain=DataLoader(retain), config=RandomLabelConfig())


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_disjoint_separately_built_sets_are_accepted(kind):
    # Two separately built LabeledDatasets both have default ids 0..N-1: ids of two id spaces are never compared.
    x, y = _xy(40, 4)
    res = unlearn(_mlp(), forget=DataLoader(KINDS[kind](x[:10], y[:10])),
                  retain=DataLoader(KINDS[kind](x[10:], y[10:])), config=RandomLabelConfig(epochs=1))
    assert all(torch.isfinite(p).all() for p in res.model.parameters())


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_a_shape_error_is_not_hidden_behind_an_overlap_error(kind, no_method_runs):
    x, y = _xy(10, 5, d=7)
    rx, ry = _xy(30, 6)
    with pytest.raises(DataError, match="cannot take the forget inputs of shape"):
        unlearn(_mlp(), forget=DataLoader(KINDS[kind](x, y)), retain=DataLoader(KINDS[kind](rx, ry)),
                config=RandomLabelConfig())


@pytest.mark.parametrize("kind", sorted(KINDS))
@pytest.mark.parametrize("label", [42, -1])
def test_out_of_range_labels_without_num_classes(kind, label, no_method_runs):
    x, y = _xy(10, 7)
    y[4] = label
    rx, ry = _xy(30, 8)
    with pytest.raises(DataError, match=r"forget labels must lie in \[0, 2\] \(the model has 3 outputs\)"):
        unlearn(_mlp(), forget=DataLoader(KINDS[kind](x, y)), retain=DataLoader(KINDS[kind](rx, ry)),
                config=GradientAscentConfig())


@pytest.mark.parametrize("classes", [[-1], [3], [0, 7]])
def test_forget_classes_out_of_range(classes, no_method_runs):
    x, y = _xy(10, 9)
    rx, ry = _xy(30, 10)
    with pytest.raises(DataError, match=r"out of range: valid classes are 0\.\.2"):
        unlearn(_mlp(), forget=DataLoader(TensorDataset(x, y)), retain=DataLoader(TensorDataset(rx, ry)),
                forget_classes=classes, config=RandomLabelConfig())


def test_float_labels_and_bad_items_are_typed_errors(no_method_runs):
    x, _ = _xy(10, 11)
    rx, ry = _xy(30, 12)
    retain = DataLoader(TensorDataset(rx, ry))
    with pytest.raises(DataError, match="integer class ids"):
        unlearn(_mlp(), forget=DataLoader(TensorDataset(x, torch.full((10,), 0.5))), retain=retain,
                config=GradientAscentConfig())

    class Broken(Dataset):
        def __len__(self):
            return 3

        def __getitem__(self, i):
            raise KeyError(i)

    with pytest.raises(DataError, match=r"reading forget.dataset\[0\] failed"):
        unlearn(_mlp(), forget=DataLoader(Broken()), retain=retain, config=GradientAscentConfig())


def test_large_custom_dataset_is_checked_by_a_bounded_seeded_scan(no_method_runs, monkeypatch):
    monkeypatch.setattr(api_mod, "SCAN_LIMIT", 50)
    x, y = _xy(500, 13)
    x[:, 0] = float("nan")  # every row: any sample finds it
    rx, ry = _xy(30, 14)
    with pytest.raises(DataError, match="NaN"):
        unlearn(_mlp(), forget=DataLoader(PairDataset(x, y)), retain=DataLoader(PairDataset(rx, ry)),
                config=GradientAscentConfig())


def test_a_diverged_run_is_an_error_not_a_result():
    x, y = _xy(10, 15)
    with pytest.raises(DivergedError, match="non-finite") as e:
        unlearn(_mlp(), forget=DataLoader(TensorDataset(x, y)), config=GradientAscentConfig(lr=1e38, epochs=3))
    assert isinstance(e.value, UnlearnError) and e.value.result is not None


def test_unrelated_rows_with_equal_keys_are_not_an_overlap():
    # The content keys are hashes: a key collision is confirmed row by row before anything is refused.
    x, y = _xy(20, 16)
    f, r = api_mod._Scan("forget", 20, x[:5], y[:5], None, None, True), \
        api_mod._Scan("retain", 15, x[5:], y[5:], None, None, True)
    api_mod._check_overlap(f, r, DataLoader(TensorDataset(x[:5], y[:5])), DataLoader(TensorDataset(x[5:], y[5:])))
    keys = api_mod._row_keys(x, y)
    assert len(np.unique(keys)) == 20
