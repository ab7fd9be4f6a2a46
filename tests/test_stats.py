"""Tests of :mod:`unlearnkit.stats`, the layer-statistics module shared by ``svd``, ``pgu`` and the training loop."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from unlearnkit.errors import CheckpointError, DataError
from unlearnkit.stats import (
    GramAccumulator,
    LayerStats,
    collect_layer_stats,
    projectable_layers,
    weights_fingerprint,
)
from unlearnkit.training import TrainRecipe, train


def _net() -> nn.Module:
    torch.manual_seed(3)
    return nn.Sequential(nn.Conv2d(2, 4, 3, padding=1, stride=2), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 9, 3))


def test_gram_of_every_layer_equals_the_explicit_sum_over_rows() -> None:
    net = _net().double()
    x = torch.randn(10, 2, 6, 6, dtype=torch.float64)
    accs = collect_layer_stats(net, TensorDataset(x), projectable_layers(net), device=torch.device("cpu"),
                               batch_size=3, stride="one")
    rows = F.unfold(x, 3, padding=1).transpose(1, 2).reshape(-1, 18)  # stride 1 (pgu's convention)
    torch.testing.assert_close(accs["0"].gram, rows.T @ rows, rtol=1e-12, atol=1e-10)
    h = net[2](net[1](net[0](x)))
    torch.testing.assert_close(accs["3"].gram, h.T @ h, rtol=1e-12, atol=1e-10)
    assert isinstance(accs["0"], GramAccumulator) and accs["0"].rows == 10 * 36


def test_layer_stats_subtract_exactly_and_round_trip_through_safetensors(tmp_path) -> None:
    net = _net()
    x = torch.randn(30, 2, 6, 6)
    full = LayerStats.from_loader(net, DataLoader(TensorDataset(x), batch_size=7))
    part = LayerStats.from_loader(net, DataLoader(TensorDataset(x[20:]), batch_size=4))
    rest = LayerStats.from_loader(net, DataLoader(TensorDataset(x[:20]), batch_size=16))
    diff = full - part
    for k in full.grams:
        torch.testing.assert_close(diff.grams[k], rest.grams[k], rtol=1e-9, atol=1e-9)
        assert diff.rows[k] == rest.rows[k]
    assert full.meta["model_hash"] == weights_fingerprint(net)
    full.save(tmp_path / "s.safetensors")
    back = LayerStats.load(tmp_path / "s.safetensors")
    assert back.meta == full.meta and all(torch.equal(back.grams[k], full.grams[k]) for k in full.grams)
    with pytest.raises(CheckpointError):
        LayerStats.load(tmp_path / "missing.safetensors")
    other = LayerStats.from_loader(net, DataLoader(TensorDataset(x), batch_size=7), conv_stride="layer")
    with pytest.raises(DataError, match="conv_stride"):
        full - other


def test_training_loop_records_the_stats_of_its_final_weights() -> None:
    net = _net()
    x, y = torch.randn(24, 2, 6, 6), torch.arange(24) % 3
    ds = TensorDataset(x, y)
    log = train(net, ds, recipe=TrainRecipe(epochs=2, batch_size=8), seed=1, record_stats=True)
    assert isinstance(log.stats, LayerStats)
    direct = LayerStats.from_loader(net, ds, seed=1)
    assert log.stats.meta["model_hash"] == weights_fingerprint(net)
    for k in direct.grams:
        torch.testing.assert_close(log.stats.grams[k], direct.grams[k])
