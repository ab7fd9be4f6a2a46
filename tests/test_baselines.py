"""Reference tests of the baselines: recipes, explicit constructions of each update, and what each one touches."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

import unlearnkit
from unlearnkit.errors import ConfigError
from unlearnkit.methods import _saliency as sal
from unlearnkit.methods.bad_teacher import BadTeacherConfig, bad_teacher_loss
from unlearnkit.methods.baselines import (
    AmnesiacConfig,
    FinetuneConfig,
    GradientAscentConfig,
    NegGradPlusConfig,
    RandomLabelConfig,
)
from unlearnkit.methods.fisher import FisherConfig, fisher_noise_scale, head_parameters
from unlearnkit.methods.goel import CfkConfig, EukConfig, last_k_layers
from unlearnkit.methods.scrub import ScrubConfig, scrub_kl
from unlearnkit.methods.ssd import SsdConfig, ssd_dampen_
from unlearnkit.testing import toy_problem

# ---------------------------------------------------------------------------------------------------------------
# Fixtures
# ---------------------------------------------------------------------------------------------------------------


def _blobs(n: int = 120, d: int = 6, k: int = 3, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    centers = torch.randn(k, d, generator=g) * 2.0
    y = torch.arange(n) % k
    return centers[y] + torch.randn(n, d, generator=g), y


def _mlp(bn: bool = False, seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    mid: list[nn.Module] = [nn.BatchNorm1d(8)] if bn else []
    return nn.Sequential(nn.Linear(6, 8), *mid, nn.ReLU(), nn.Linear(8, 3))


def _loaders(x: torch.Tensor, y: torch.Tensor, n_forget: int = 12, bs: int = 32) -> tuple[DataLoader, DataLoader]:
    return (DataLoader(TensorDataset(x[:n_forget], y[:n_forget]), batch_size=bs),
            DataLoader(TensorDataset(x[n_forget:], y[n_forget:]), batch_size=bs))


@pytest.fixture(scope="module")
def toy():
    return toy_problem(seed=0)


# ---------------------------------------------------------------------------------------------------------------
# Recipes
# ---------------------------------------------------------------------------------------------------------------


def test_recipe_values_resolve_and_explicit_fields_override():
    c = FinetuneConfig()
    assert c.recipe == "sfron" and c.epochs is None and c.get("epochs") == 10 and c.get("schedule") == "cosine"
    s = FinetuneConfig(recipe="salun", epochs=3)
    assert s.get("epochs") == 3 and s.get("batch_size") == 256 and s.get("schedule") == "constant"
    assert FinetuneConfig.from_dict(s.to_dict()) == s and s.to_dict()["lr"] is None
    ga = GradientAscentConfig()
    assert (ga.get("lr"), ga.get("epochs"), ga.get("mode"), ga.get("max_norm"), ga.get("momentum"),
            ga.get("weight_decay")) == (1e-4, 9, "eval", 0.1, 0.9, 5e-4)
    rl = RandomLabelConfig()
    assert (rl.get("lr"), rl.get("order"), rl.get("labels"), rl.get("schedule")) == (0.003, "mixed", "once_wrong",
                                                                                      "cosine")
    assert AmnesiacConfig().get("optimizer") == "adam" and AmnesiacConfig().get("lr") == 1e-4
    with pytest.raises(ConfigError, match="recipe"):
        FinetuneConfig(recipe="nope")
    with pytest.raises(ConfigError, match="must be"):
        GradientAscentConfig(mode="sideways")
    with pytest.raises(ConfigError, match="must be"):
        ScrubConfig(kd_T=0.0)


@pytest.mark.parametrize("cls", [FinetuneConfig, GradientAscentConfig, RandomLabelConfig, AmnesiacConfig,
                                 NegGradPlusConfig, CfkConfig, EukConfig, ScrubConfig, BadTeacherConfig])
def test_every_recipe_is_complete_and_valid(cls):
    # Every None-defaulted field has a value in every recipe, and a config built from those values is valid.
    none_fields = {f for f, v in cls().to_dict().items() if v is None}
    for name, values in cls.RECIPES.items():
        assert none_fields <= set(values), f"{cls.__name__} recipe {name!r} lacks {none_fields - set(values)}"
        cls(recipe=name, **{k: v for k, v in values.items() if k in none_fields})


# ---------------------------------------------------------------------------------------------------------------
# gradient_ascent (SFR-on recipe) and neggrad_plus: one step equals the hand-written update
# ---------------------------------------------------------------------------------------------------------------


def test_gradient_ascent_sfron_recipe_one_step_is_clipped_ascent_in_eval_mode():
    x, y = _blobs()
    model = _mlp(bn=True)
    with torch.no_grad():  # non-trivial running statistics, so eval and train mode differ
        model(x)
    forget = DataLoader(TensorDataset(x[:16], y[:16]), batch_size=16)
    cfg = GradientAscentConfig(epochs=1, lr=0.5, batch_size=16, momentum=0.0, weight_decay=0.0)
    res = unlearnkit.unlearn(model, forget=forget, config=cfg)
    ref = _mlp(bn=True)
    ref.load_state_dict(model.state_dict())
    ref.eval()
    grads = torch.autograd.grad(F.cross_entropy(ref(x[:16]), y[:16]), list(ref.parameters()))
    norm = torch.sqrt(sum((g * g).sum() for g in grads))
    scale = min(1.0, 0.1 / (float(norm) + 1e-6))  # clip_grad_norm_'s rule
    for got, p, g in zip(res.model.parameters(), ref.parameters(), grads):
        torch.testing.assert_close(got, p + 0.5 * scale * g, rtol=1e-5, atol=1e-6)
    # Eval mode: the running statistics did not move.
    torch.testing.assert_close(res.model[1].running_mean, model[1].running_mean, rtol=0, atol=0)


def test_neggrad_plus_one_step_matches_hand_written():
    x, y = _blobs()
    model = _mlp()
    forget, retain = (DataLoader(TensorDataset(x[:10], y[:10]), batch_size=10),
                      DataLoader(TensorDataset(x[10:], y[10:]), batch_size=110))
    cfg = NegGradPlusConfig(epochs=1, lr=0.1, batch_size=110, momentum=0.0, weight_decay=0.0, beta=0.7)
    res = unlearnkit.unlearn(model, forget=forget, retain=retain, config=cfg)
    loss = 0.7 * F.cross_entropy(model(x[10:]), y[10:]) - 0.3 * F.cross_entropy(model(x[:10]), y[:10])
    grads = torch.autograd.grad(loss, list(model.parameters()))
    for got, p, g in zip(res.model.parameters(), model.parameters(), grads):
        torch.testing.assert_close(got, p - 0.1 * g, rtol=1e-5, atol=1e-6)


# ---------------------------------------------------------------------------------------------------------------
# random_label / amnesiac: which examples and labels each epoch sees
# ---------------------------------------------------------------------------------------------------------------


class _Recorder(nn.Module):
    """Feature 0 carries the example index; the model records it per training-mode forward pass (unlearn's own
    input checks run in eval mode)."""

    def __init__(self) -> None:
        super().__init__()
        self.lin = nn.Linear(5, 3)
        self.seen: list[torch.Tensor] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.training:
            self.seen.append(x[:, 0].long().clone())
        return self.lin(x[:, 1:])


def _record(cfg, n_forget: int = 12):
    x, y = _blobs(d=5)
    xi = torch.cat([torch.arange(len(y)).float().unsqueeze(1), x], dim=1)
    labels: list[torch.Tensor] = []
    model = _Recorder()

    def loss_fn(logits, target, reduction="mean"):
        if model.training:
            labels.append(target.clone())
        return F.cross_entropy(logits, target, reduction=reduction)

    forget, retain = _loaders(xi, y, n_forget)
    res = unlearnkit.unlearn(model, forget=forget, retain=retain, config=cfg, loss_fn=loss_fn, inplace=True)
    return res, torch.cat(res.model.seen), torch.cat(labels), y


def test_random_label_sfron_recipe_sees_each_forget_example_once_per_epoch_with_one_fixed_wrong_label():
    epochs, n_f = 3, 12
    res, idx, lab, y = _record(RandomLabelConfig(epochs=epochs, batch_size=16), n_f)
    n = len(y)
    per_epoch = idx.view(epochs, n)  # every epoch covers every example exactly once
    for e in range(epochs):
        assert sorted(per_epoch[e].tolist()) == list(range(n))
    lab = lab.view(epochs, n)
    got = {}
    for e in range(epochs):
        for i, lbl in zip(per_epoch[e].tolist(), lab[e].tolist()):
            got.setdefault(i, set()).add(lbl)
    for i in range(n):
        assert len(got[i]) == 1, "labels are drawn once per run"
        (lbl,) = got[i]
        assert (lbl != int(y[i])) if i < n_f else (lbl == int(y[i]))
    # One mixed loader: forget and retain examples share batches (not one forget batch per retain batch).
    first_batch = per_epoch[0][:16]
    assert (first_batch < n_f).any() and (first_batch >= n_f).any()
    assert len(res.history["mixed_loss"]) == epochs * math.ceil(n / 16)


def test_random_label_salun_recipe_runs_forget_then_retain_and_redraws_labels():
    epochs, n_f = 4, 12
    _, idx, lab, y = _record(RandomLabelConfig(recipe="salun", epochs=epochs, batch_size=8), n_f)
    n = len(y)
    per_epoch, lab = idx.view(epochs, n), lab.view(epochs, n)
    draws = []
    for e in range(epochs):
        assert (per_epoch[e][:n_f] < n_f).all() and (per_epoch[e][n_f:] >= n_f).all()
        order = torch.argsort(per_epoch[e][:n_f])
        draws.append(lab[e][:n_f][order])
        assert torch.equal(lab[e][n_f:], y[per_epoch[e][n_f:]])
    assert any(not torch.equal(draws[0], d) for d in draws[1:]), "labels are redrawn every epoch"


def test_amnesiac_uses_adam_on_the_mixed_loader():
    res, idx, lab, y = _record(AmnesiacConfig(epochs=2, batch_size=16))
    assert len(idx) == 2 * len(y) and "mixed_loss" in res.history


# ---------------------------------------------------------------------------------------------------------------
# salun: the SFR-on re-run settings exist and behave as documented
# ---------------------------------------------------------------------------------------------------------------


def test_salun_sfron_rerun_draws_wrong_labels_once_per_run():
    from unlearnkit.methods.salun import SalunConfig

    cfg = SalunConfig(order="mixed", schedule="cosine", mask_fraction=0.2, lr=0.007, batch_size=16, epochs=3,
                      labels_once=True, reset_unmasked=False)
    _, idx, lab, y = _record(cfg)
    n = len(y)
    per_epoch, lab = idx.view(3, n), lab.view(3, n)
    got: dict[int, set] = {}
    for e in range(3):
        for i, lbl in zip(per_epoch[e].tolist(), lab[e].tolist()):
            got.setdefault(i, set()).add(lbl)
    assert all(len(got[i]) == 1 and next(iter(got[i])) != int(y[i]) for i in range(12))


# ---------------------------------------------------------------------------------------------------------------
# cf_k / eu_k: only the last k layers change
# ---------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("cls,k", [(CfkConfig, 1), (EukConfig, 1), (CfkConfig, 2), (EukConfig, 2)])
def test_cf_k_and_eu_k_touch_only_the_last_k_layers(toy, cls, k):
    ld = toy.loaders()
    model = toy.model
    chosen = {n for n, _ in last_k_layers(model, k)}
    assert chosen == ({"fc"} if k == 1 else {"features.4", "features.5", "fc"})
    res = unlearnkit.unlearn(model, forget=ld["forget"], retain=ld["retain"], num_classes=ld["num_classes"],
                             config=cls(k=k, epochs=2, batch_size=32))
    before, after = model.state_dict(), res.model.state_dict()
    for name in before:
        module = name.rsplit(".", 1)[0]
        if module in chosen:
            if before[name].is_floating_point():
                assert not torch.equal(before[name], after[name]), f"{name} should have changed"
        else:
            assert torch.equal(before[name], after[name]), f"{name} changed but is outside the last {k} layers"
    assert all(p.requires_grad for p in res.model.parameters())  # frozen flags restored


def test_eu_k_reinitialises_before_training(toy):
    ld = toy.loaders()
    res = unlearnkit.unlearn(toy.model, forget=ld["forget"], retain=ld["retain"], num_classes=ld["num_classes"],
                             config=EukConfig(lr=0.0, epochs=1))  # re-initialise, then no step
    torch.manual_seed(0)
    assert not torch.equal(res.model.fc.weight, toy.model.fc.weight)
    assert torch.equal(res.model.features[0].weight, toy.model.features[0].weight)


# ---------------------------------------------------------------------------------------------------------------
# ssd
# ---------------------------------------------------------------------------------------------------------------


def test_ssd_dampen_formula_on_hand_values():
    lin = nn.Linear(3, 1, bias=False)
    with torch.no_grad():
        lin.weight.copy_(torch.tensor([[1.0, -2.0, 3.0]]))
    imp_f = {"weight": torch.tensor([[5.0, 100.0, 30.0]])}
    imp_d = {"weight": torch.tensor([[1.0, 2.0, 3.0]])}
    counts = ssd_dampen_(lin, imp_f, imp_d, alpha=10.0, lam=1.0)
    # 5 > 10 no; 100 > 20 yes: x min(2/100, 1); 30 > 30 no (strict).
    assert counts == {"weight": 1}
    assert lin.weight.tolist() == [[1.0, pytest.approx(-2.0 * 0.02), 3.0]]
    counts = ssd_dampen_(lin, imp_f, imp_d, alpha=1.0, lam=100.0)  # factor capped at 1: values stay
    assert counts == {"weight": 3} and lin.weight.tolist()[0][0] == 1.0


def test_ssd_end_to_end_selected_params_follow_the_formula_others_bit_identical(toy):
    ld = toy.loaders()
    model = toy.model
    cfg = SsdConfig(alpha=2.0, lam=1.0, batch_size=64)
    res = unlearnkit.unlearn(model, forget=ld["forget"], retain=ld["retain"], num_classes=ld["num_classes"],
                             config=cfg)
    from torch.utils.data import ConcatDataset

    from unlearnkit.methods._common import rebatch

    imp_f = sal.squared_gradients(model, rebatch(ld["forget"].dataset, 64, shuffle=False), F.cross_entropy, "cpu")
    full = ConcatDataset([ld["retain"].dataset, ld["forget"].dataset])
    imp_d = sal.squared_gradients(model, rebatch(full, 64, shuffle=False), F.cross_entropy, "cpu")
    after = dict(res.model.named_parameters())
    n_sel = 0
    for name, p in model.named_parameters():
        sel = imp_f[name] > 2.0 * imp_d[name]
        n_sel += int(sel.sum())
        assert torch.equal(after[name][~sel], p[~sel]), name
        expected = p[sel] * (imp_d[name][sel] / imp_f[name][sel]).clamp(max=1.0)
        torch.testing.assert_close(after[name][sel], expected, rtol=1e-6, atol=0)
    assert n_sel > 0
    assert res.history["dampened_fraction"][0] == pytest.approx(n_sel / sum(p.numel() for p in model.parameters()))
    for name, b in model.named_buffers():  # no forward pass in train mode: statistics untouched
        assert torch.equal(b, dict(res.model.named_buffers())[name])


# ---------------------------------------------------------------------------------------------------------------
# scrub and bad_teacher
# ---------------------------------------------------------------------------------------------------------------


def test_scrub_kl_equals_explicit_formula():
    g = torch.Generator().manual_seed(0)
    s, t = torch.randn(5, 4, generator=g), torch.randn(5, 4, generator=g)
    T = 4.0
    p_t, log_q = torch.softmax(t / T, 1), torch.log_softmax(s / T, 1)
    explicit = (p_t * (p_t.log() - log_q)).sum(1).mean() * T * T
    torch.testing.assert_close(scrub_kl(s, t, T), explicit)


def test_scrub_max_step_increases_kl_to_the_teacher_on_the_forget_batch():
    x, y = _blobs()
    model = _mlp(bn=True)  # train-mode student vs eval-mode teacher: KL > 0 at the start, so the step moves
    with torch.no_grad():
        model(x)
    model.eval()
    forget, retain = _loaders(x, y, n_forget=16, bs=16)
    # One max step on the single forget batch; min steps with zero loss weights and no decay/momentum change
    # nothing, so the result is exactly the max step.
    cfg = ScrubConfig(epochs=1, msteps=1, lr=0.05, momentum=0.0, weight_decay=0.0, gamma=0.0, alpha=0.0,
                      forget_batch_size=16, batch_size=64, schedule="constant")
    res = unlearnkit.unlearn(model, forget=forget, retain=retain, config=cfg)
    xf = x[:16]
    with torch.no_grad():
        t = model(xf)

    def kl(m: nn.Module) -> torch.Tensor:
        m.train()
        return scrub_kl(m(xf), t, 4.0)

    student = _mlp(bn=True)
    student.load_state_dict(model.state_dict())
    k0 = kl(student)
    grads = torch.autograd.grad(k0, list(student.parameters()))
    for got, p, gr in zip(res.model.parameters(), student.parameters(), grads):
        torch.testing.assert_close(got, p + 0.05 * gr, rtol=1e-5, atol=1e-6)  # ascent on the KL
    assert float(kl(res.model).detach()) > float(k0.detach()) > 0


@pytest.mark.parametrize("reduction", ["mean", "batchmean"])
def test_bad_teacher_loss_equals_explicit_kl(reduction):
    g = torch.Generator().manual_seed(1)
    s, good, bad = (torch.randn(6, 5, generator=g) for _ in range(3))
    is_f = torch.tensor([True, False, True, False, False, True])
    T = 2.0
    target = np.where(is_f.numpy()[:, None], torch.softmax(bad / T, 1).numpy(), torch.softmax(good / T, 1).numpy())
    log_q = torch.log_softmax(s / T, 1).numpy()
    elem = target * (np.log(target) - log_q)
    explicit = elem.sum() / (elem.size if reduction == "mean" else 6)
    got = bad_teacher_loss(s, is_f, good, bad, T, reduction)
    assert float(got) == pytest.approx(float(explicit), rel=1e-5)


def test_bad_teacher_trains_toward_the_random_teacher_on_forget_examples(toy):
    ld = toy.loaders()
    res = unlearnkit.unlearn(toy.model, forget=ld["forget"], retain=ld["retain"], num_classes=ld["num_classes"],
                             config=BadTeacherConfig(epochs=3, batch_size=32))
    from unlearnkit.methods._common import loader_seed
    from unlearnkit.methods._distill import random_init_copy
    from unlearnkit.methods.bad_teacher import _SALT_INIT

    bad = random_init_copy(toy.model, loader_seed(0, _SALT_INIT))
    xf, xr = ld["forget"].dataset.x, ld["retain"].dataset.x
    with torch.no_grad():
        def kl(m, x, t):
            return float(scrub_kl(m(x), t(x), 1.0))
        # Closer to the incompetent teacher on the forget set; still close to the original on the retain set.
        assert kl(res.model, xf, bad) < kl(toy.model, xf, bad)
        assert kl(res.model, xr, toy.model) < 0.5 * kl(res.model, xf, toy.model)


# ---------------------------------------------------------------------------------------------------------------
# fisher
# ---------------------------------------------------------------------------------------------------------------


def _brute_expected_fisher(model, x, num_classes):
    """Golatkar's expected Fisher diagonal by brute force: one example and one class at a time,
    mean over examples of sum_c p(c|x) (d CE(x, c) / d theta)^2."""
    ref = {n: torch.zeros_like(p) for n, p in model.named_parameters()}
    for i in range(len(x)):
        out = model(x[i:i + 1])
        prob = torch.softmax(out, 1).detach()
        for c in range(num_classes):
            grads = torch.autograd.grad(F.cross_entropy(out, torch.tensor([c])), list(model.parameters()),
                                        retain_graph=True)
            for (n, _), gr in zip(model.named_parameters(), grads):
                ref[n] += prob[0, c] * gr.pow(2)
    return {n: r / len(x) for n, r in ref.items()}


def test_expected_fisher_equals_brute_force_loop():
    x, y = _blobs(n=20)
    model = _mlp(bn=True)
    with torch.no_grad():
        model(x)
    model.eval()
    got = sal.expected_fisher_diagonal(model, DataLoader(TensorDataset(x, y), batch_size=7), "cpu")
    ref = _brute_expected_fisher(model, x, 3)
    for n in ref:
        torch.testing.assert_close(got[n], ref[n], rtol=1e-4, atol=1e-9)


def test_fisher_noise_scale_and_forgotten_class_rows(toy):
    f = torch.tensor([[0.0, 1.0], [1e-2, 1e4]])
    var = fisher_noise_scale(f, 1e-6, is_head=False)
    expected_rows = torch.tensor([(1e3 + 1.0 / (1 + 1e-8)) / 2, (1.0 / (1e-2 + 1e-8) + 1.0 / (1e4 + 1e-8)) / 2])
    torch.testing.assert_close(var[:, 0], 1e-6 * expected_rows)
    assert torch.equal(var[:, 0], var[:, 1])
    assert head_parameters(toy.model, toy.num_classes) == {"fc.weight", "fc.bias"}
    ld = toy.loaders()
    res = unlearnkit.unlearn(toy.model, forget=ld["forget"], retain=ld["retain"], num_classes=ld["num_classes"],
                             forget_classes=ld["forget_classes"], config=FisherConfig(alpha=1e-6))
    row = res.model.fc.weight[toy.forget_class].detach()
    # mu = 0 and var = 1e-4 x 10: the forgotten class's head row is pure N(0, 1e-3) noise.
    bias = res.model.fc.bias[toy.forget_class].detach()
    assert float(row.abs().max()) < 6 * math.sqrt(1e-3) and float(bias.abs()) < 0.2
    others = [c for c in range(toy.num_classes) if c != toy.forget_class]
    assert not torch.equal(res.model.fc.weight[others], toy.model.fc.weight[others])


def test_sampled_fisher_equals_brute_force_with_the_same_draws():
    x, y = _blobs(n=20)
    model = _mlp()
    model.eval()
    got = sal.expected_fisher_diagonal(model, DataLoader(TensorDataset(x, y), batch_size=20), "cpu",
                                       sample=torch.Generator().manual_seed(3))
    with torch.no_grad():
        draws = torch.multinomial(torch.softmax(model(x), 1), 1, generator=torch.Generator().manual_seed(3)).flatten()
    ref = {n: torch.zeros_like(p) for n, p in model.named_parameters()}
    for i in range(len(x)):
        grads = torch.autograd.grad(F.cross_entropy(model(x[i:i + 1]), draws[i:i + 1]), list(model.parameters()))
        for (n, _), gr in zip(model.named_parameters(), grads):
            ref[n] += gr.pow(2)
    for n in ref:
        torch.testing.assert_close(got[n], ref[n] / len(x), rtol=1e-4, atol=1e-9)


def test_expected_fisher_on_the_channels_last_cnn_equals_brute_force():
    from unlearnkit.models.registry import build_model

    torch.manual_seed(0)
    model = build_model("cnn", (3, 16, 16), 4)  # its forward asks for channels-last memory
    model.eval()
    x, y = torch.rand(6, 3, 16, 16), torch.randint(0, 4, (6,))
    got = sal.expected_fisher_diagonal(model, DataLoader(TensorDataset(x, y), batch_size=3), "cpu")
    ref = _brute_expected_fisher(model, x, 4)
    for n in ref:
        torch.testing.assert_close(got[n], ref[n], rtol=1e-3, atol=1e-10)
