"""Generation building blocks: the conditional UNet, the diffusion loss and sampler, and the generation metrics."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
from scipy import linalg

from unlearnkit.checkpoints import ModelCache
from unlearnkit.data import LabeledDataset, load_dataset
from unlearnkit.data.digits16 import load_digits_for_diffusion
from unlearnkit.diffusion import (
    DiffusionTask,
    LinearSchedule,
    antithetic_timesteps,
    diffusion_loss,
    sample,
    train_diffusion,
)
from unlearnkit.errors import ConfigError, DataError
from unlearnkit.evaluation.generation import (
    JUDGE_RECIPE,
    fa_entropy,
    fa_kept,
    fa_prob,
    forgetting_accuracy,
    frechet_distance,
    judge_features,
    train_judge,
)
from unlearnkit.models.unet import ConditionalUNet, guided_eps


def tiny_unet(seed: int = 0, k: int = 3) -> ConditionalUNet:
    torch.manual_seed(seed)
    m = ConditionalUNet(1, k, ch=8, ch_mult=(1, 2), dropout=0.0)
    # The output conv is zero-initialised; give it weights so predictions depend on the inputs in the tests.
    torch.nn.init.normal_(m.conv_out.weight, std=0.1)
    return m


def batch(n: int = 6, k: int = 3, side: int = 8, seed: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.rand(n, 1, side, side, generator=g) * 2 - 1, torch.randint(0, k, (n,), generator=g)


# --- model ---------------------------------------------------------------------------------------------------------


def test_unet_shapes_null_class_and_zero_init() -> None:
    torch.manual_seed(0)
    m = ConditionalUNet(1, 10, ch=8)
    assert m.null_class == 10 and m.class_emb.num_embeddings == 11
    x, _ = batch(4, side=16)
    out = m(x, torch.tensor([0, 1, 500, 999]), torch.tensor([0, 3, 9, 10]))
    assert out.shape == x.shape and torch.count_nonzero(out) == 0  # zero-initialised output conv
    with pytest.raises(ConfigError, match="divisible"):
        m(torch.zeros(1, 1, 7, 7), torch.tensor([0]), torch.tensor([0]))
    with pytest.raises(ConfigError):
        ConditionalUNet(1, 10, dropout=1.5)


def test_guidance_formula() -> None:
    m = tiny_unet().eval()
    x, c = batch()
    t = torch.tensor([0, 5, 10, 100, 500, 999])
    with torch.no_grad():
        want = 3.0 * m(x, t, c) - 2.0 * m(x, t, torch.full_like(c, m.null_class))
        got = guided_eps(m, x, t, c, w=2.0)
        assert torch.allclose(got, want, atol=1e-5)
        assert torch.equal(guided_eps(m, x, t, c, w=0.0), m(x, t, c))


# --- loss ----------------------------------------------------------------------------------------------------------


def test_antithetic_timesteps() -> None:
    for n in (1, 6, 7):
        t = antithetic_timesteps(n, 10, generator=torch.Generator().manual_seed(3))
        half = n // 2 + 1
        u = torch.randint(0, 10, (half,), generator=torch.Generator().manual_seed(3))
        assert t.shape == (n,) and torch.equal(t[:min(half, n)], u[:min(half, n)])
        assert torch.equal(t[half:], 9 - u[: n - half])
        assert int(t.min()) >= 0 and int(t.max()) <= 9


def test_diffusion_loss_equals_explicit_computation() -> None:
    m, sched = tiny_unet(), LinearSchedule(T=50)
    x, y = batch()
    got = diffusion_loss(m, x, y, sched, p_uncond=0.5, reduction="none", generator=torch.Generator().manual_seed(7))
    # The same draws by hand, in the documented order: timesteps, noise, label-drop coins.
    g = torch.Generator().manual_seed(7)
    u = torch.randint(0, 50, (4,), generator=g)
    t = torch.cat([u, 49 - u])[:6]
    eps = torch.randn(x.shape, generator=g)
    c = torch.where(torch.rand(6, generator=g) < 0.5, torch.full_like(y, 3), y)
    betas = np.linspace(1e-4, 0.02, 50)
    abar = torch.tensor(np.cumprod(1 - betas)[t.numpy()], dtype=torch.float32).view(-1, 1, 1, 1)
    x_t = abar.sqrt() * x + (1 - abar).sqrt() * eps
    want = ((eps - m(x_t, t, c)) ** 2).sum(dim=(1, 2, 3))
    assert torch.allclose(got, want, rtol=1e-5, atol=1e-5)
    assert (c == 3).any() and (c != 3).any()  # both dropped and kept labels were exercised
    task = DiffusionTask(sched, generator=torch.Generator().manual_seed(7), p_uncond=0.5)
    assert task.name == "generation"
    assert torch.allclose(task.loss(m, x, y), want.mean(), rtol=1e-5)


def test_loss_validates_inputs() -> None:
    m, x, y = tiny_unet(), *batch()
    with pytest.raises(ConfigError, match="reduction"):
        diffusion_loss(m, x, y, LinearSchedule(T=10), reduction="avg")
    with pytest.raises(ConfigError):
        LinearSchedule(T=1)


# --- sampler -------------------------------------------------------------------------------------------------------


def test_sampler_is_seeded_and_ddim_full_eta1_is_ddpm() -> None:
    m, sched = tiny_unet(), LinearSchedule(T=20)
    kw = {"schedule": sched, "shape": (1, 8, 8), "guidance": 2.0}
    a = sample(m, [0, 1, 2], method="ddim", steps=5, eta=1.0, seed=4, **kw)
    b = sample(m, [0, 1, 2], method="ddim", steps=5, eta=1.0, seed=4, **kw)
    assert torch.equal(a, b)
    assert not torch.equal(a, sample(m, [0, 1, 2], method="ddim", steps=5, eta=1.0, seed=5, **kw))
    d1 = sample(m, [0, 1, 2], method="ddpm", seed=4, batch_size=2, **kw)
    assert torch.equal(d1, sample(m, [0, 1, 2], method="ddpm", seed=4, batch_size=2, **kw))
    d2 = sample(m, [0, 1, 2], method="ddim", steps=20, eta=1.0, seed=4, batch_size=2, **kw)
    assert torch.allclose(d1, d2, atol=1e-4)
    assert d1.shape == (3, 1, 8, 8) and float(d1.abs().max()) <= 1.0
    with pytest.raises(ConfigError, match="steps"):
        sample(m, [0], method="ddim", steps=21, **kw)


# --- training ------------------------------------------------------------------------------------------------------


def test_train_diffusion_zero_steps_and_zero_lr_leave_weights_identical() -> None:
    x, y = batch(8)
    ds = LabeledDataset(x, y)
    for kw in ({"steps": 0}, {"steps": 2, "lr": 0.0}):
        m = tiny_unet()
        before = {k: v.clone() for k, v in m.state_dict().items()}
        train_diffusion(m, ds, batch_size=4, schedule=LinearSchedule(T=10), **kw)
        assert all(torch.equal(before[k], v) for k, v in m.state_dict().items())


def test_train_diffusion_is_deterministic_and_learns() -> None:
    x, y = batch(8)
    ds = LabeledDataset(x, y)
    runs = []
    for _ in range(2):
        m = tiny_unet()
        log = train_diffusion(m, ds, steps=3, batch_size=4, lr=1e-3, warmup=0, schedule=LinearSchedule(T=10))
        runs.append((m.state_dict(), log.losses))
    assert runs[0][1] == runs[1][1]
    assert all(torch.equal(runs[0][0][k], runs[1][0][k]) for k in runs[0][0])
    assert not torch.equal(runs[0][0]["conv_out.weight"], tiny_unet().state_dict()["conv_out.weight"])


# --- data ----------------------------------------------------------------------------------------------------------


def test_digits_for_diffusion_matches_the_digits_split() -> None:
    d = load_digits_for_diffusion(0)
    ref = load_dataset("digits", seed=0)
    assert d["train"].x.shape[1:] == (1, 16, 16) and len(d["train"]) == len(ref.train)
    assert torch.equal(d["train"].y, ref.train.y)
    assert float(d["train"].x.min()) == -1.0 and float(d["train"].x.max()) <= 1.0


# --- metrics -------------------------------------------------------------------------------------------------------


def test_frechet_distance_equals_scipy_and_is_zero_for_identical_sets() -> None:
    rng = np.random.default_rng(0)
    a = rng.normal(size=(300, 4))
    b = rng.normal(loc=0.5, size=(200, 4)) @ rng.normal(size=(4, 4))
    sa, sb = np.cov(a.T), np.cov(b.T)
    want = np.sum((a.mean(0) - b.mean(0)) ** 2) + np.trace(sa + sb - 2 * np.real(linalg.sqrtm(sa @ sb)))
    assert frechet_distance(a, b) == pytest.approx(want, rel=1e-9)
    assert frechet_distance(a, a) == pytest.approx(0.0, abs=1e-8)
    with pytest.raises(DataError):
        frechet_distance(a, b[:, :3])


def test_forgetting_metrics_equal_numpy() -> None:
    rng = np.random.default_rng(1)
    p = rng.dirichlet(np.ones(4), size=50)
    req = rng.integers(0, 4, size=50)
    pt = torch.from_numpy(p)
    assert forgetting_accuracy(pt, 2) == pytest.approx(100 * np.mean(p.argmax(1) == 2))
    assert fa_prob(pt, 2) == pytest.approx(p[:, 2].mean())
    assert fa_entropy(pt) == pytest.approx(np.mean(-(p * np.log(p)).sum(1)))
    assert fa_kept(pt, torch.from_numpy(req)) == pytest.approx(100 * np.mean(p.argmax(1) == req))
    with pytest.raises(DataError):
        fa_kept(pt, req[:3])


def test_judge_is_cached_by_content(tmp_path) -> None:
    x, y = batch(32, k=3, side=16)
    ds = LabeledDataset(x, y)
    cache = ModelCache(tmp_path)
    recipe = dataclasses.replace(JUDGE_RECIPE, epochs=1)
    j1 = train_judge(ds, num_classes=3, recipe=recipe, cache=cache)
    assert len(list((tmp_path / "models").glob("*.safetensors"))) == 1
    j2 = train_judge(ds, num_classes=3, recipe=recipe, cache=cache)
    assert all(torch.equal(v, j2.state_dict()[k]) for k, v in j1.state_dict().items())
    f = judge_features(j2, x)
    assert f.shape == (32, 128) and f.dtype == np.float64


def test_guided_and_relabel_losses_equal_explicit_computation() -> None:
    m, sched = tiny_unet().eval(), LinearSchedule(T=50)
    x, y = batch()
    task = DiffusionTask(sched, generator=torch.Generator().manual_seed(2))
    got_g = task.guided_loss(m, x, y)
    other = (y + 1) % 3
    got_r = task.relabel_loss(m, x, y, other, reduction="none")
    g = torch.Generator().manual_seed(2)
    abar = sched.alphas_cumprod
    wants = []
    for _ in range(2):  # guided_loss's draws, then relabel_loss's
        t = torch.randint(0, 50, (6,), generator=g)
        eps = torch.randn(x.shape, generator=g)
        a = abar[t].view(-1, 1, 1, 1)
        wants.append((t, eps, a.sqrt() * x + (1 - a).sqrt() * eps))
    t, eps, x_t = wants[0]
    with torch.no_grad():
        guided = 3.0 * m(x_t, t, y) - 2.0 * m(x_t, t, torch.full_like(y, 3))
    assert torch.allclose(got_g, ((eps - guided) ** 2).sum(dim=(1, 2, 3)).mean(), rtol=1e-5)
    t, _, x_t = wants[1]
    with torch.no_grad():
        want_r = ((m(x_t, t, y) - m(x_t, t, other)) ** 2).sum(dim=(1, 2, 3))
    assert torch.allclose(got_r, want_r, rtol=1e-5, atol=1e-6)
    # the relabelled target is a stop-gradient: the gradient is that of the explicit loss with a detached target
    # (without the detach the target's branch would add a second, different term)
    task = DiffusionTask(sched, generator=torch.Generator().manual_seed(9))
    m.zero_grad()
    task.relabel_loss(m, x, y, other).backward()
    got_grad = [p.grad.clone() for p in m.parameters()]
    g = torch.Generator().manual_seed(9)
    t = torch.randint(0, 50, (6,), generator=g)
    eps = torch.randn(x.shape, generator=g)
    a = abar[t].view(-1, 1, 1, 1)
    x_t = a.sqrt() * x + (1 - a).sqrt() * eps
    m.zero_grad()
    ((m(x_t, t, y) - m(x_t, t, other).detach()) ** 2).sum(dim=(1, 2, 3)).mean().backward()
    assert all(torch.allclose(a_, p.grad, rtol=1e-4, atol=1e-7) for a_, p in zip(got_grad, m.parameters()))
    m.zero_grad()
    ((m(x_t, t, y) - m(x_t, t, other)) ** 2).sum(dim=(1, 2, 3)).mean().backward()
    assert not all(torch.allclose(a_, p.grad, rtol=1e-4, atol=1e-7) for a_, p in zip(got_grad, m.parameters()))
