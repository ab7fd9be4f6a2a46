import pickle
import warnings

import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

import unlearnkit
from unlearnkit import (
    ConfigError,
    DataError,
    FinetuneConfig,
    GradientAscentConfig,
    RandomLabelConfig,
    UnlearnConfig,
    UnsupportedRequestError,
    register_method,
    unlearn,
)
from unlearnkit.data.base import LabeledDataset
from unlearnkit.methods.base import UnlearnData, method_for_config


def _mlp():
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(10, 20), nn.ReLU(), nn.Linear(20, 2))


def _data(n=100):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(n, 10, generator=g)
    y = (x[:, 0] > 0).long()
    return LabeledDataset(x, y)


def test_public_all_importable():
    for name in unlearnkit.__all__:
        assert hasattr(unlearnkit, name), name
    assert unlearnkit.__all__ == sorted(unlearnkit.__all__)


def test_one_gradient_ascent_step_matches_hand_written():
    ds = _data()
    model = _mlp()
    forget = ds.subset(range(16))
    cfg = GradientAscentConfig(recipe="salun", epochs=1, lr=0.1, batch_size=16, momentum=0.0, weight_decay=0.0)
    res = unlearn(model, forget=DataLoader(forget, batch_size=16), config=cfg)
    # Hand-written: p <- p + lr * dL/dp on the single batch of 16.
    ref = _mlp()
    loss = nn.functional.cross_entropy(ref(forget.x), forget.y)
    grads = torch.autograd.grad(loss, list(ref.parameters()))
    with torch.no_grad():
        expected = [p + 0.1 * g for p, g in zip(ref.parameters(), grads)]
    for got, exp in zip(res.model.parameters(), expected):
        torch.testing.assert_close(got, exp, rtol=1e-6, atol=1e-7)


def test_copy_by_default_and_inplace():
    ds = _data()
    model = _mlp()
    w = model[0].weight.clone()
    res = unlearn(model, forget=DataLoader(ds.subset(range(10))), retain=DataLoader(ds.subset(range(10, 100))),
                  config=FinetuneConfig(epochs=1))
    assert torch.equal(model[0].weight, w) and res.model is not model
    res2 = unlearn(model, forget=DataLoader(ds.subset(range(10))), retain=DataLoader(ds.subset(range(10, 100))),
                   config=FinetuneConfig(epochs=1), inplace=True)
    assert res2.model is model and not torch.equal(model[0].weight, w)


@pytest.mark.parametrize("bad", [
    lambda: FinetuneConfig(epochs=-1),
    lambda: FinetuneConfig(lr=float("nan")),
    lambda: FinetuneConfig(momentum=1.0),
    lambda: RandomLabelConfig(batch_size=0),
    lambda: GradientAscentConfig(epochs=1.5),
])
def test_config_validation(bad):
    with pytest.raises(ConfigError, match="must be"):
        bad()


def test_config_round_trip_and_unknown_keys():
    c = FinetuneConfig(epochs=2, lr=0.1, seed=3)
    assert FinetuneConfig.from_dict(c.to_dict()) == c
    assert pickle.loads(pickle.dumps(c)) == c
    with pytest.warns(unlearnkit.UnlearnWarning, match="upgrade"):
        assert FinetuneConfig.from_dict({**c.to_dict(), "future_field": 1}) == c


def test_input_validation_errors():
    ds = _data()
    model = _mlp()
    f = DataLoader(ds.subset(range(10)))
    r = DataLoader(ds.subset(range(10, 100)))
    with pytest.raises(DataError, match="empty"):
        unlearn(model, forget=DataLoader(ds.subset([])), retain=r, config=RandomLabelConfig())
    with pytest.raises(DataError, match="both the forget and the retain"):
        unlearn(model, forget=f, retain=DataLoader(ds.subset(range(5, 100))), config=RandomLabelConfig())
    with pytest.raises(DataError, match="same dataset"):
        unlearn(model, forget=r, retain=r, config=RandomLabelConfig())
    nan = LabeledDataset(torch.full((4, 10), float("nan")), torch.zeros(4, dtype=torch.long), ids=torch.arange(4) + 500)
    with pytest.raises(DataError, match="NaN"):
        unlearn(model, forget=DataLoader(nan), retain=r, config=RandomLabelConfig())
    wrong = LabeledDataset(torch.randn(4, 7), torch.zeros(4, dtype=torch.long), ids=torch.arange(4) + 500)
    with pytest.raises(DataError, match="cannot take"):
        unlearn(model, forget=DataLoader(wrong), retain=r, config=RandomLabelConfig())
    with pytest.raises(DataError, match="labels must lie"):
        unlearn(model, forget=f, retain=r, config=RandomLabelConfig(), num_classes=1)
    with pytest.raises(UnsupportedRequestError, match="retain"):
        unlearn(model, forget=f, config=FinetuneConfig())
    with pytest.raises(DataError, match="forget_classes"):
        unlearn(model, forget=f, retain=r, config=RandomLabelConfig(), forget_classes=[5], num_classes=2)


def test_registry_rules():
    from dataclasses import dataclass

    @dataclass
    class MyConfig(UnlearnConfig):
        pass

    def noop(model, data: UnlearnData, cfg):
        return {}

    with pytest.raises(ValueError, match="lower case"):
        register_method("MyMethod", config_cls=MyConfig, fn=noop, summary="s", paper="p")
    with pytest.raises(ValueError, match="already registered"):
        register_method("finetune", config_cls=MyConfig, fn=noop, summary="s", paper="p")
    with pytest.raises(ValueError, match="request kinds"):
        register_method("my_method", config_cls=MyConfig, fn=noop, summary="s", paper="p",
                        supported_requests={"bogus"})
    spec = register_method("my_noop_method", config_cls=MyConfig, fn=noop, summary="s", paper="p", force=True)
    try:
        assert method_for_config(MyConfig()) is spec
        ds = _data()
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            res = unlearn(_mlp(), forget=DataLoader(ds.subset(range(5))), retain=DataLoader(ds.subset(range(5, 50))),
                          config=MyConfig())
        assert res.method == "my_noop_method"
    finally:
        from unlearnkit.methods import base

        base._REGISTRY.pop("my_noop_method", None)


def test_unknown_config_type():
    class NotAConfig(UnlearnConfig):
        pass

    with pytest.raises(ConfigError, match="no registered method"):
        unlearn(_mlp(), forget=DataLoader(_data().subset(range(5))), config=NotAConfig())


def test_forgetting_a_single_example_through_batchnorm_at_1x1():
    from unlearnkit.methods.baselines import GradientAscentConfig, RandomLabelConfig

    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(1, 4, 3), nn.AdaptiveAvgPool2d(1), nn.BatchNorm2d(4), nn.Flatten(), nn.Linear(4, 3))
    x, y = torch.randn(20, 1, 6, 6), torch.arange(20) % 3
    forget = DataLoader(TensorDataset(x[:1], y[:1]), batch_size=8)
    retain = DataLoader(TensorDataset(x[1:], y[1:]), batch_size=8)
    for cfg in (GradientAscentConfig(lr=0.1), RandomLabelConfig(epochs=1)):
        res = unlearn(net, forget=forget, retain=retain, config=cfg, num_classes=3)
        assert not torch.equal(res.model[0].weight, net[0].weight)
    # The single-example allowance lives only inside unlearn(): afterwards BatchNorm raises as usual.
    res.model.train()
    with pytest.raises(ValueError, match="more than 1 value per channel"):
        res.model(x[:1])
