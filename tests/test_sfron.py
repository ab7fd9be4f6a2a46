"""Tests of ``sfron`` (SFR-on) and of the ratio-mask half of the shared saliency code."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

import unlearnkit
from unlearnkit.errors import ConfigError, DataError
from unlearnkit.methods import _saliency as sal
from unlearnkit.methods import get_method
from unlearnkit.methods import sfron as sfron_mod
from unlearnkit.methods.sfron import SfronConfig, adaptive_forget_weights

# ---------------------------------------------------------------------------------------------------------------
# Fixtures: a few hundred points, tiny models
# ---------------------------------------------------------------------------------------------------------------


def _blobs(n: int = 240, d: int = 8, k: int = 3, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    centers = torch.randn(k, d, generator=g) * 2.5
    y = torch.arange(n) % k
    x = centers[y] + torch.randn(n, d, generator=g)
    return x, y


def _mlp(d: int = 8, k: int = 3, seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(d, 16), nn.BatchNorm1d(16), nn.ReLU(), nn.Linear(16, k))


def _trained(x: torch.Tensor, y: torch.Tensor, epochs: int = 60) -> nn.Module:
    model = _mlp()
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    model.train()
    for _ in range(epochs):
        opt.zero_grad()
        F.cross_entropy(model(x), y).backward()
        opt.step()
    return model.eval()


@pytest.fixture(scope="module")
def setup() -> dict:
    torch.manual_seed(0)
    x, y = _blobs()
    model = _trained(x, y)
    forget = DataLoader(TensorDataset(x[:24], y[:24]), batch_size=16)
    retain = DataLoader(TensorDataset(x[24:], y[24:]), batch_size=16)
    return {"model": model, "forget": forget, "retain": retain, "x": x, "y": y}


def _state(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def _run(setup: dict, **kw) -> unlearnkit.UnlearnResult:
    cfg = SfronConfig(**{"batch_size": 16, **kw})
    return unlearnkit.unlearn(setup["model"], forget=setup["forget"], retain=setup["retain"], config=cfg)


# ---------------------------------------------------------------------------------------------------------------
# Adaptive per-sample weights
# ---------------------------------------------------------------------------------------------------------------


def test_weights_sum_to_one_and_decrease_with_loss() -> None:
    losses = torch.tensor([0.05, 0.3, 1.0, 2.5, 7.0])
    w = adaptive_forget_weights(losses, 0.5)
    assert torch.isclose(w.sum(), torch.tensor(1.0), atol=1e-6)
    assert (w[1:] < w[:-1]).all(), "weights must decrease as the loss grows"
    # The spec's closed form: w = softmax(-λ·log ℓ), i.e. w_i ∝ ℓ_i^-λ.
    assert torch.allclose(w, torch.softmax(-0.5 * losses.log(), 0), atol=1e-6)
    assert torch.allclose(w[0] / w[4], torch.tensor((7.0 / 0.05) ** 0.5), rtol=1e-5)


def test_weights_lambda_zero_is_plain_ascent_and_larger_lambda_sharper() -> None:
    losses = torch.tensor([0.1, 1.0, 3.0])
    assert torch.allclose(adaptive_forget_weights(losses, 0.0), torch.full((3,), 1 / 3))
    assert adaptive_forget_weights(losses, 2.0)[0] > adaptive_forget_weights(losses, 0.5)[0]


def test_weights_carry_no_gradient_and_reject_bad_shape() -> None:
    losses = torch.tensor([0.5, 1.5], requires_grad=True)
    assert not adaptive_forget_weights(losses, 0.5).requires_grad
    with pytest.raises(ValueError, match="reduction='none'"):
        adaptive_forget_weights(torch.ones(2, 3), 0.5)


# ---------------------------------------------------------------------------------------------------------------
# Saliency mask (shared code, ratio rule)
# ---------------------------------------------------------------------------------------------------------------


def test_ratio_mask_hand_values() -> None:
    f = {"w": torch.tensor([2.0, 1.0, 0.0, 0.5])}
    r = {"w": torch.tensor([1.0, 1.0, 0.0, 1.0])}
    assert sal.ratio_mask(f, r, 1.0)["w"].tolist() == [True, True, True, False]  # 0/0 -> ratio 1 (kept)
    assert sal.ratio_mask(f, r, 1.5)["w"].tolist() == [True, False, False, False]
    assert sal.ratio_mask(f, r, 0.5)["w"].tolist() == [True, True, True, True]
    with pytest.raises(ConfigError, match="gamma"):
        sal.ratio_mask(f, r, 0.0)
    with pytest.raises(ValueError, match="shapes"):
        sal.ratio_mask(f, {"w": torch.ones(3)}, 1.0)


def test_squared_gradients_is_mean_of_squared_batch_mean_gradients() -> None:
    torch.manual_seed(1)
    model = nn.Linear(4, 3)
    x, y = torch.randn(10, 4), torch.randint(0, 3, (10,))
    loader = DataLoader(TensorDataset(x, y), batch_size=4)  # batches of 4, 4, 2
    want = torch.zeros_like(model.weight)
    for xb, yb in loader:
        gw, = torch.autograd.grad(F.cross_entropy(model(xb), yb), model.weight)
        want += gw ** 2 / 3
    before = _state(model)
    got = sal.squared_gradients(model, loader, F.cross_entropy, "cpu")
    assert torch.allclose(got["weight"], want, atol=1e-7)
    assert model.weight.grad is None, "the pass must not leave gradients behind"
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


def test_mask_from_constructed_model_selects_expected_parameters() -> None:
    # Forget inputs live on features 0-1, remain inputs on features 2-3: the forget loss has gradient only in
    # weight columns 0-1 and the remain loss only in columns 2-3, so the γ=1 ratio mask is exactly columns 0-1.
    torch.manual_seed(0)
    model = nn.Linear(4, 3, bias=False)
    xf = torch.zeros(12, 4)
    xf[:, :2] = torch.randn(12, 2)
    xr = torch.zeros(30, 4)
    xr[:, 2:] = torch.randn(30, 2)
    forget = DataLoader(TensorDataset(xf, torch.randint(0, 3, (12,))), batch_size=4)
    retain = DataLoader(TensorDataset(xr, torch.randint(0, 3, (30,))), batch_size=4)
    mask = sal.ratio_saliency_mask(model, forget, retain, F.cross_entropy, "cpu", gamma=1.0)
    want = torch.zeros(3, 4, dtype=torch.bool)
    want[:, :2] = True
    assert torch.equal(mask["weight"], want)
    assert sal.mask_fraction(mask) == 0.5


def test_mask_covers_every_trainable_tensor_including_norm_and_head(setup) -> None:
    f = sal.squared_gradients(setup["model"], setup["forget"], F.cross_entropy, "cpu")
    names = {n for n, p in setup["model"].named_parameters()}
    assert set(f) == names  # Linear weights/biases, BatchNorm affine, head


# ---------------------------------------------------------------------------------------------------------------
# The method
# ---------------------------------------------------------------------------------------------------------------


def test_parameters_outside_mask_do_not_change_during_forget_steps(setup, monkeypatch) -> None:
    # Disable the remain steps so only forget steps move the weights; with no momentum and no weight decay (the
    # two things the official code lets act on masked weights) nothing outside the mask may change.
    monkeypatch.setattr(sfron_mod, "_remain_step", lambda *a, **k: 0.0)
    res = _run(setup, n_iters=10, forget_freq=1, momentum=0.0, weight_decay=0.0, gamma=1.0)
    def fisher(key: str, salt: int) -> dict[str, torch.Tensor]:
        loader = sfron_mod.rebatch(setup[key], 16, shuffle=True, seed=sfron_mod.loader_seed(0, salt))
        return sal.squared_gradients(setup["model"], loader, F.cross_entropy, "cpu")

    mask = sal.ratio_mask(fisher("forget", sfron_mod._SALT_FISHER_F), fisher("retain", sfron_mod._SALT_FISHER_R), 1.0)
    assert 0.0 < sal.mask_fraction(mask) < 1.0, "the test needs a mask that keeps some and drops some weights"
    assert res.history["mask_fraction"][0] == pytest.approx(sal.mask_fraction(mask))
    old, new = dict(setup["model"].named_parameters()), dict(res.model.named_parameters())
    changed_inside = 0
    for name, m in mask.items():
        assert torch.equal(new[name].detach()[~m], old[name].detach()[~m]), f"{name} moved outside the mask"
        changed_inside += int((new[name].detach()[m] != old[name].detach()[m]).sum())
    assert changed_inside > 0


@pytest.mark.parametrize("mask_batch", [None, 48])
def test_mask_passes_use_mask_batch_size(setup, mask_batch) -> None:
    # The two squared-gradient passes run on mask_batch_size batches (None: the step batch), and the batch matters:
    # the statistic is the mean of squared batch-mean gradients.
    res = _run(setup, n_iters=1, batch_size=8, mask_batch_size=mask_batch)

    def fraction(batch: int) -> float:
        def fisher(key: str, salt: int) -> dict[str, torch.Tensor]:
            loader = sfron_mod.rebatch(setup[key], batch, shuffle=True, seed=sfron_mod.loader_seed(0, salt))
            return sal.squared_gradients(setup["model"], loader, F.cross_entropy, "cpu")

        return sal.mask_fraction(sal.ratio_mask(fisher("forget", sfron_mod._SALT_FISHER_F),
                                                fisher("retain", sfron_mod._SALT_FISHER_R), 1.0))

    assert fraction(8) != pytest.approx(fraction(48))
    assert res.history["mask_fraction"][0] == pytest.approx(fraction(mask_batch or 8))


def test_forget_step_masks_then_clips(setup) -> None:
    model = _mlp()
    model.load_state_dict(setup["model"].state_dict())
    mask = {n: torch.rand_like(p) > 0.5 for n, p in model.named_parameters()}
    opt = torch.optim.SGD(model.parameters(), lr=1.0)
    data = unlearnkit.UnlearnData(forget=None, retain=None)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    x, y = setup["x"][:16], setup["y"][:16]
    cfg = SfronConfig(max_norm=1e-3)
    _ = sfron_mod._forget_step(model, opt, x, y, data, cfg, 25.0, mask)
    delta = torch.cat([(p.detach() - before[n]).reshape(-1) for n, p in model.named_parameters()])
    assert delta.norm() <= 1e-3 * (1 + 1e-4), "the forget step must be clipped to max_norm (lr=1)"
    for n, p in model.named_parameters():
        assert torch.equal(p.detach()[~mask[n]], before[n][~mask[n]])


@pytest.mark.parametrize("kw", [{"n_iters": 0}, {"retain_epochs": 0.0}, {"lr": 0.0}])
def test_zero_strength_returns_identical_weights(setup, kw) -> None:
    before = _state(setup["model"])
    res = _run(setup, **kw)
    after = res.model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)  # BatchNorm buffers included


def test_same_seed_same_weights_different_seed_differs(setup) -> None:
    a, b, c = (_run(setup, seed=s, n_iters=12) for s in (3, 3, 4))
    sa, sb, sc = a.model.state_dict(), b.model.state_dict(), c.model.state_dict()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    assert any(not torch.equal(sa[k], sc[k]) for k in sa)


def test_defaults_forget_and_stay_finite(setup) -> None:
    # A class request: the retrained model would not know class 0, so its forget loss must rise.
    x, y = setup["x"], setup["y"]
    f, r = y == 0, y != 0
    forget = DataLoader(TensorDataset(x[f], y[f]), batch_size=16)
    retain = DataLoader(TensorDataset(x[r], y[r]), batch_size=16)
    res = unlearnkit.unlearn(setup["model"], forget=forget, retain=retain, config=SfronConfig(batch_size=16),
                             forget_classes=[0])
    assert all(torch.isfinite(p).all() for p in res.model.parameters())
    with torch.no_grad():
        before = F.cross_entropy(setup["model"].eval()(x[f]), y[f]).item()
        after = F.cross_entropy(res.model.eval()(x[f]), y[f]).item()
        retain_acc = (res.model(x[r]).argmax(1) == y[r]).float().mean().item()
    assert after > before + 1.0, "the forget-set loss must rise"
    assert retain_acc > 0.95
    h = res.history
    assert len(h["retain_loss"]) == h["n_iters"][0]
    assert len(h["forget_loss"]) == math.ceil(h["n_iters"][0] / 5)
    assert h["alpha"][0] == 25.0 and h["alpha"][-1] < 25.0


def test_step_count_scaling_rule(setup) -> None:
    # 216 retain examples, batch 16: round(1500*128/45000 * 216/16) = round(57.6) = 58.
    assert _run(setup, n_iters=0).history["n_iters"] == [0.0]
    cfg = SfronConfig(batch_size=16)
    retain = sfron_mod.rebatch(setup["retain"], 16, shuffle=True)
    assert sfron_mod._num_iters(cfg, retain) == 58
    # The official CIFAR-10 run: 45,000 remain images, batch 128 -> 1500 iterations.
    big = DataLoader(TensorDataset(torch.zeros(45_000, 1), torch.zeros(45_000)), batch_size=128, shuffle=True)
    assert sfron_mod._num_iters(SfronConfig(), big) == 1500
    assert sfron_mod._num_iters(SfronConfig(n_iters=7), big) == 7


def test_alpha_and_lr_schedules() -> None:
    cfg = SfronConfig()
    assert sfron_mod._alpha(cfg, 0, 100) == 25.0
    assert sfron_mod._alpha(cfg, 50, 100) == pytest.approx(12.5)
    assert sfron_mod._cosine_lr(0.01, 100, 100) == pytest.approx(0.0, abs=1e-12)
    assert sfron_mod._alpha(SfronConfig(alpha_schedule="constant"), 60, 100) == 25.0
    assert sfron_mod._alpha(SfronConfig(alpha_schedule="linear"), 25, 100) == pytest.approx(18.75)


def test_without_mask_and_with_adamw_runs(setup) -> None:
    res = _run(setup, n_iters=6, use_mask=False, optimizer="adamw", lr=1e-3, lam=0.0)
    assert res.history["mask_fraction"] == []
    assert all(torch.isfinite(p).all() for p in res.model.parameters())


# ---------------------------------------------------------------------------------------------------------------
# Errors, config and registry
# ---------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("kw, field", [({"gamma": 0.0}, "gamma"), ({"lam": -1.0}, "lam"),
                                       ({"optimizer": "rmsprop"}, "optimizer"), ({"forget_freq": 0}, "forget_freq"),
                                       ({"max_norm": 0.0}, "max_norm"), ({"n_iters": -1}, "n_iters"),
                                       ({"alpha_schedule": "exp"}, "alpha_schedule"),
                                       ({"forget_alpha": float("inf")}, "forget_alpha"),
                                       ({"mask_batch_size": 0}, "mask_batch_size")])
def test_bad_config_raises_config_error(kw, field) -> None:
    with pytest.raises(ConfigError, match=field):
        SfronConfig(**kw)


def test_config_json_round_trip() -> None:
    cfg = SfronConfig(gamma=2.0, n_iters=10, max_norm=None)
    assert SfronConfig.from_dict(__import__("json").loads(cfg.to_json())) == cfg


def test_shape_errors(setup) -> None:
    # Inputs the model cannot take, and a mask that does not match the model, fail with clear errors.
    bad = DataLoader(TensorDataset(torch.randn(10, 5), torch.zeros(10, dtype=torch.long)), batch_size=4)
    with pytest.raises(DataError, match="cannot take"):
        unlearnkit.unlearn(setup["model"], forget=bad, retain=setup["retain"], config=SfronConfig())
    with pytest.raises(ValueError, match="shape"):
        sal.mask_gradients(setup["model"], {"0.weight": torch.ones(3, 3, dtype=torch.bool)})
    with pytest.raises(ValueError, match="does not have"):
        sal.mask_gradients(setup["model"], {"nope": torch.ones(1, dtype=torch.bool)})


def test_needs_retain_and_registry_flags(setup) -> None:
    spec = get_method("sfron")
    assert spec.config_cls is SfronConfig and spec.requires_retain and spec.requires_forget
    assert spec.supports_distributed and spec.touches == "salient"
    assert spec.supported_requests == frozenset({"class", "random", "ids", "subclass"})
    with pytest.raises(unlearnkit.UnsupportedRequestError, match="retain"):
        unlearnkit.unlearn(setup["model"], forget=setup["forget"], config=SfronConfig())


@pytest.mark.parametrize(("dataset", "kind", "want"), [
    ("digits", "class", {"retain_epochs": 2 * 1500 * 128 / 45_000}),
    ("shapes", "class", {"max_norm": 1.0}),
    ("shapes", "random", {"retain_epochs": 0.5, "batch_size": 16, "mask_batch_size": 128}),
])
def test_cli_presets_build_valid_configs(dataset: str, kind: str, want: dict) -> None:
    # The CLI's per-dataset presets must name real fields with valid values, and leave the rest at the defaults.
    from unlearnkit.pipeline import build_config

    cfg = build_config("sfron", dataset=dataset, kind=kind, seed=3)
    assert isinstance(cfg, SfronConfig) and cfg.seed == 3
    for field, value in want.items():
        assert getattr(cfg, field) == pytest.approx(value)
    default = SfronConfig()
    changed = {f for f in ("retain_epochs", "max_norm", "batch_size", "mask_batch_size", "lr", "forget_alpha", "lam",
                           "gamma") if getattr(cfg, f) != getattr(default, f)}
    assert changed == set(want)
    assert build_config("sfron", dataset="digits", kind="random", seed=0) == SfronConfig(seed=0)
