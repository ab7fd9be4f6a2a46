"""Tests of ``salun`` (SalUn) and of the gradient-saliency half of the shared saliency code."""

from __future__ import annotations

import json

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

import unlearnkit
from unlearnkit.errors import ConfigError, DataError
from unlearnkit.methods import _saliency as sal
from unlearnkit.methods import get_method
from unlearnkit.methods.salun import SalunConfig, random_labels

# ---------------------------------------------------------------------------------------------------------------
# Fixtures
# ---------------------------------------------------------------------------------------------------------------


def _blobs(n: int = 240, d: int = 8, k: int = 3, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    centers = torch.randn(k, d, generator=g) * 2.5
    y = torch.arange(n) % k
    return centers[y] + torch.randn(n, d, generator=g), y


def _mlp(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(8, 16), nn.BatchNorm1d(16), nn.ReLU(), nn.Linear(16, 3))


@pytest.fixture(scope="module")
def setup() -> dict:
    x, y = _blobs()
    model = _mlp()
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(60):
        opt.zero_grad()
        F.cross_entropy(model(x), y).backward()
        opt.step()
    model.eval()
    f, r = y == 0, y != 0  # forget class 0: its loss must rise
    return {"model": model, "x": x, "y": y, "f": f, "r": r,
            "forget": DataLoader(TensorDataset(x[f], y[f]), batch_size=32),
            "retain": DataLoader(TensorDataset(x[r], y[r]), batch_size=32)}


def _run(setup: dict, **kw) -> unlearnkit.UnlearnResult:
    cfg = SalunConfig(**{"batch_size": 32, "epochs": 3, **kw})
    return unlearnkit.unlearn(setup["model"], forget=setup["forget"], retain=setup["retain"], config=cfg)


def _mask(setup: dict, fraction: float = 0.5) -> sal.Mask:
    loader = DataLoader(setup["forget"].dataset, batch_size=32)
    return sal.gradient_saliency_mask(setup["model"], loader, F.cross_entropy, "cpu", fraction=fraction)


# ---------------------------------------------------------------------------------------------------------------
# Shared saliency code: gradient accumulation and top-fraction thresholding
# ---------------------------------------------------------------------------------------------------------------


def test_top_fraction_mask_hand_values_global_and_ties() -> None:
    scores = {"a": torch.tensor([[5.0, 1.0], [3.0, 0.0]]), "b": torch.tensor([4.0, 3.0, 2.0])}
    m = sal.top_fraction_mask(scores, 3 / 7)  # floor(7*3/7) = 3 elements: 5, 4 and the first 3 (ties by position)
    assert m["a"].tolist() == [[True, False], [True, False]]
    assert m["b"].tolist() == [True, False, False]
    m = sal.top_fraction_mask(scores, 0.5)  # floor(3.5) = 3, same as above
    assert sum(int(v.sum()) for v in m.values()) == 3
    assert sal.mask_fraction(sal.top_fraction_mask(scores, 1.0)) == 1.0
    assert sal.mask_fraction(sal.top_fraction_mask(scores, 0.0)) == 0.0
    with pytest.raises(ConfigError, match="fraction"):
        sal.top_fraction_mask(scores, 1.5)


def test_accumulated_gradients_is_sum_of_batch_mean_gradients_and_side_effect_free() -> None:
    torch.manual_seed(2)
    model = nn.Sequential(nn.Linear(4, 5), nn.BatchNorm1d(5), nn.Linear(5, 3))
    x, y = torch.randn(10, 4), torch.randint(0, 3, (10,))
    loader = DataLoader(TensorDataset(x, y), batch_size=4)
    model.eval()
    want = torch.zeros_like(model[0].weight)
    for xb, yb in loader:
        want += torch.autograd.grad(F.cross_entropy(model(xb), yb), model[0].weight)[0]
    model.train()  # the pass runs in eval mode and restores train mode afterwards
    before = {k: v.clone() for k, v in model.state_dict().items()}
    got = sal.accumulated_gradients(model, loader, F.cross_entropy, "cpu")
    assert torch.allclose(got["0.weight"], want, atol=1e-6)
    assert model.training and all(p.grad is None for p in model.parameters())
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())  # BN running stats untouched


def test_mask_from_constructed_model_selects_expected_parameters() -> None:
    # Forget inputs use features 0-1 only, so |∇ forget loss| is zero on weight columns 2-3: the top half of the
    # 12 weights is exactly columns 0-1.
    torch.manual_seed(0)
    model = nn.Linear(4, 3, bias=False)
    x = torch.zeros(16, 4)
    x[:, :2] = torch.randn(16, 2)
    loader = DataLoader(TensorDataset(x, torch.randint(0, 3, (16,))), batch_size=8)
    mask = sal.gradient_saliency_mask(model, loader, F.cross_entropy, "cpu", fraction=0.5)
    want = torch.zeros(3, 4, dtype=torch.bool)
    want[:, :2] = True
    assert torch.equal(mask["weight"], want)


def test_restore_outside_mask_resets_weights_and_momentum() -> None:
    model = nn.Linear(3, 2)
    ref = {n: p.detach().clone() for n, p in model.named_parameters()}
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=0.1)
    mask = {"weight": torch.tensor([[True, False, True], [False, False, True]]), "bias": torch.tensor([True, False])}
    model(torch.randn(4, 3)).sum().backward()
    opt.step()
    sal.restore_outside_mask(model, mask, ref, opt)
    for n, p in model.named_parameters():
        assert torch.equal(p.detach()[~mask[n]], ref[n][~mask[n]])
        assert (opt.state[p]["momentum_buffer"][~mask[n]] == 0).all()
        assert (p.detach()[mask[n]] != ref[n][mask[n]]).all()


# ---------------------------------------------------------------------------------------------------------------
# The method
# ---------------------------------------------------------------------------------------------------------------


def test_random_labels_exclude_true_label_and_cover_the_others() -> None:
    y = torch.tensor([0, 1, 2, 3] * 250)
    g = torch.Generator().manual_seed(0)
    new = random_labels(y, 4, g, exclude_true=True)
    assert not (new == y).any()
    for c in range(4):
        assert set(new[y == c].tolist()) == set(range(4)) - {c}
    new_all = random_labels(y, 4, torch.Generator().manual_seed(0), exclude_true=False)
    assert (new_all == y).any() and new_all.min() >= 0 and new_all.max() < 4


@pytest.mark.parametrize("kw", [{}, {"reset_unmasked": False, "momentum": 0.0, "weight_decay": 0.0},
                                {"order": "mixed"}])
def test_parameters_outside_mask_do_not_change(setup, kw) -> None:
    res = _run(setup, **kw)
    mask = _mask(setup)
    old, new = dict(setup["model"].named_parameters()), dict(res.model.named_parameters())
    moved = 0
    for n, m in mask.items():
        assert torch.equal(new[n].detach()[~m], old[n].detach()[~m]), f"{n} moved outside the mask"
        moved += int((new[n].detach()[m] != old[n].detach()[m]).sum())
    assert moved > 0
    assert res.history["mask_fraction"][0] == pytest.approx(0.5, abs=1 / 200)


def test_paper_era_variant_lets_weight_decay_move_unmasked_weights(setup) -> None:
    # Documented behaviour of reset_unmasked=False: only the gradient is masked, so weight decay still acts.
    res = _run(setup, reset_unmasked=False, momentum=0.0, weight_decay=0.1)
    mask = _mask(setup)
    old, new = dict(setup["model"].named_parameters()), dict(res.model.named_parameters())
    assert any(not torch.equal(new[n].detach()[~m], old[n].detach()[~m]) for n, m in mask.items())


@pytest.mark.parametrize("kw", [{"epochs": 0}, {"lr": 0.0}, {"mask_fraction": 0.0}])
def test_zero_strength_returns_identical_weights(setup, kw) -> None:
    before = {k: v.clone() for k, v in setup["model"].state_dict().items()}
    after = _run(setup, **kw).model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)


def test_same_seed_same_weights_different_seed_differs(setup) -> None:
    a, b, c = (_run(setup, seed=s, epochs=2).model.state_dict() for s in (5, 5, 6))
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert any(not torch.equal(a[k], c[k]) for k in a)


def test_forgets_class_keeps_retain_and_stays_finite(setup) -> None:
    x, y, f, r = setup["x"], setup["y"], setup["f"], setup["r"]
    res = _run(setup, epochs=5)
    assert all(torch.isfinite(p).all() for p in res.model.parameters())
    with torch.no_grad():
        before = F.cross_entropy(setup["model"].eval()(x[f]), y[f]).item()
        model = res.model.eval()
        after = F.cross_entropy(model(x[f]), y[f]).item()
        forget_acc = (model(x[f]).argmax(1) == y[f]).float().mean().item()
        retain_acc = (model(x[r]).argmax(1) == y[r]).float().mean().item()
    assert after > before + 1.0
    assert forget_acc < 0.2 and retain_acc > 0.95
    assert len(res.history["forget_loss"]) == 5 * 3 and len(res.history["retain_loss"]) == 5 * 5


# ---------------------------------------------------------------------------------------------------------------
# Errors, config and registry
# ---------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("kw, field", [({"mask_fraction": 1.2}, "mask_fraction"), ({"epochs": -1}, "epochs"),
                                       ({"order": "random"}, "order"), ({"schedule": "step"}, "schedule"),
                                       ({"reset_unmasked": 1}, "reset_unmasked"), ({"lr": -0.1}, "lr")])
def test_bad_config_raises_config_error(kw, field) -> None:
    with pytest.raises(ConfigError, match=field):
        SalunConfig(**kw)


def test_config_json_round_trip() -> None:
    cfg = SalunConfig(mask_fraction=0.2, order="mixed", schedule="cosine")
    assert SalunConfig.from_dict(json.loads(cfg.to_json())) == cfg


def test_shape_and_class_errors(setup) -> None:
    bad = DataLoader(TensorDataset(torch.randn(10, 5), torch.zeros(10, dtype=torch.long)), batch_size=4)
    with pytest.raises(DataError, match="cannot take"):
        unlearnkit.unlearn(setup["model"], forget=bad, retain=setup["retain"], config=SalunConfig())
    one_class = nn.Linear(8, 1)
    ds = DataLoader(TensorDataset(torch.randn(6, 8), torch.zeros(6, dtype=torch.long)), batch_size=3)
    with pytest.raises(DataError, match="2 classes"):
        unlearnkit.unlearn(one_class, forget=ds, retain=DataLoader(TensorDataset(torch.randn(6, 8),
                           torch.zeros(6, dtype=torch.long))), config=SalunConfig(epochs=1))


def test_registry_flags() -> None:
    spec = get_method("salun")
    assert spec.config_cls is SalunConfig and spec.requires_retain and spec.requires_forget
    assert spec.supports_distributed and spec.touches == "salient"
    assert spec.supported_requests == frozenset({"class", "random", "ids", "subclass"})
