"""Methods on the ``generation`` task (issue 17): the contract, refusals, sfron's Fisher mask, salun's loss."""

from __future__ import annotations

import copy

import pytest
import torch
from torch.utils.data import DataLoader

import unlearnkit
from unlearnkit.errors import UnsupportedTaskError
from unlearnkit.methods._saliency import ratio_mask, squared_gradients
from unlearnkit.methods.base import config_for_task, get_method
from unlearnkit.tasks import get_task
from unlearnkit.tasks.diffusion import GENERATION_DEFAULTS, DiffusionTask, LinearSchedule
from unlearnkit.testing import check_method_contract, diffusion_toy_problem, state_equal

GEN_METHODS = [m for m in unlearnkit.list_methods() if "generation" in get_method(m).tasks]
REFUSED = ["svd", "unsir", "pgu", "random_label"]

# Each method's generation defaults, shortened so the contract runs in seconds on the toy problem.
SMALL = {
    "sfron": dict(n_iters=4, batch_size=16),
    "salun": dict(n_iters=4, batch_size=16),
    "gradient_ascent": dict(epochs=2, batch_size=8),
    "finetune": dict(epochs=1, batch_size=16),
    "retrain": dict(epochs=2, batch_size=16),
}


@pytest.fixture(scope="module")
def problem():
    return diffusion_toy_problem(seed=0)


def test_generation_methods_are_the_task_agnostic_ones():
    assert set(GEN_METHODS) == {"sfron", "salun", "gradient_ascent", "finetune", "retrain"}
    assert get_task("generation") == DiffusionTask()
    assert set(GENERATION_DEFAULTS) == set(GEN_METHODS)


@pytest.mark.parametrize("name", sorted(SMALL))
def test_contract_on_generation(name, problem):
    kw = {**GENERATION_DEFAULTS[name], **SMALL[name]}
    out = check_method_contract(name, problem, config_kwargs=kw)
    if get_method(name).raises_forget_loss:
        assert out["forget_loss_after"] >= out["forget_loss_before"] - 1e-6


@pytest.mark.parametrize("name", REFUSED)
def test_classification_only_methods_are_refused(name, problem):
    ld = problem.loaders()
    cfg = get_method(name).config_cls()
    with pytest.raises(UnsupportedTaskError) as e:
        unlearnkit.unlearn(problem.model, forget=ld["forget"], retain=ld["retain"], val=ld["val"],
                           forget_classes=[1], num_classes=3, config=cfg, task="generation")
    msg = str(e.value)
    assert "\n" not in msg and f"{name!r} does not serve the 'generation' task" in msg


def test_config_for_task_applies_the_spec_defaults():
    c = config_for_task("sfron", "generation", seed=3)
    assert (c.n_iters, c.forget_freq, c.forget_alpha, c.lam, c.gamma, c.max_norm, c.remain_max_norm,
            c.optimizer, c.lr, c.mask_grad_clip, c.seed) == (150, 1, 10.0, 0.5, 1.0, 1.0, 1.0, "adam", 1e-4, 1.0, 3)
    s = config_for_task("salun", "generation")
    assert (s.n_iters, s.mask_fraction, s.retain_weight, s.relabel, s.order) == (1000, 0.5, 1e-3, "next", "joint")
    assert config_for_task("sfron").n_iters is None  # classification keeps the config's own defaults


def test_fisher_mask_equals_explicit_construction(problem):
    """sfron's mask on diffusion: squared guided-prediction gradients, each batch clipped to norm 1, averaged over
    batches, ratio >= γ; rebuilt here by hand from the same draws."""
    task: DiffusionTask = problem.task  # type: ignore[assignment]
    model = copy.deepcopy(problem.model)
    torch.nn.init.normal_(model.conv_out.weight, std=0.3)  # larger gradients, so the clip binds
    ld = problem.loaders(batch_size=10)
    forget, retain = ld["forget"], ld["retain"]

    def explicit(loader: DataLoader) -> dict[str, torch.Tensor]:
        params = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
        acc = {n: torch.zeros_like(p) for n, p in params}
        model.eval()
        nb = 0
        for x, y in loader:
            t = torch.randint(0, task.schedule.T, (len(x),))
            eps = torch.randn(x.shape)
            a = task.schedule.alphas_cumprod[t].view(-1, 1, 1, 1)
            x_t = a.sqrt() * x + (1 - a).sqrt() * eps
            null = torch.full_like(y, model.null_class)
            guided = 3.0 * model(x_t, t, y) - 2.0 * model(x_t, t, null)
            loss = (eps - guided).square().flatten(1).sum(1).mean()
            grads = torch.autograd.grad(loss, [p for _, p in params])
            norm = torch.sqrt(sum(g.square().sum() for g in grads))
            scale = min(1.0, 1.0 / (float(norm) + 1e-6))
            for (n, _), g in zip(params, grads, strict=True):
                acc[n] += (g * scale) ** 2
            nb += 1
        return {n: v / nb for n, v in acc.items()}

    torch.manual_seed(5)
    ff = squared_gradients(model, forget, task, "cpu", batch_loss=task.mask_loss, clip=1.0)
    fr = squared_gradients(model, retain, task, "cpu", batch_loss=task.mask_loss, clip=1.0)
    torch.manual_seed(5)
    ef, er = explicit(forget), explicit(retain)
    for n in ff:
        torch.testing.assert_close(ff[n], ef[n], rtol=1e-3, atol=1e-10)
        torch.testing.assert_close(fr[n], er[n], rtol=1e-3, atol=1e-10)
    mask = ratio_mask(ff, fr, 1.0)
    n_clear = 0
    for n, m in mask.items():
        ratio = (ef[n] + 1e-15) / (er[n] + 1e-15)
        # Away from the threshold and from float32 rounding noise (scores ~1e-10 of a near-zero gradient).
        clear = ((ratio - 1.0).abs() > 1e-2) & (torch.minimum(ef[n], er[n]) > 1e-8)
        assert torch.equal(m[clear], (ratio >= 1.0)[clear]), (n, ef[n][~torch.eq(m, ratio >= 1)],
                                                              er[n][~torch.eq(m, ratio >= 1)])
        n_clear += int(clear.sum())
    assert n_clear > 0.5 * sum(m.numel() for m in mask.values())
    frac = sum(int(m.sum()) for m in mask.values()) / sum(m.numel() for m in mask.values())
    assert 0.0 < frac < 1.0
    # Without the clip the scores differ (the clip was binding), so the test can tell the two apart.
    torch.manual_seed(5)
    unclipped = squared_gradients(model, forget, task, "cpu", batch_loss=task.mask_loss)
    assert any(not torch.allclose(unclipped[n], ff[n]) for n in ff)


def test_salun_diffusion_loss_equals_explicit_computation(problem):
    task = DiffusionTask(LinearSchedule(T=50))
    model = copy.deepcopy(problem.model)
    torch.nn.init.normal_(model.conv_out.weight, std=0.3)
    x, y = problem.train.x[:6], problem.train.y[:6]
    y_new = task.next_labels(y, 3)
    assert torch.equal(y_new, (y + 1) % 3)
    torch.manual_seed(9)
    got = task.relabel_loss(model, x, y, y_new)
    torch.manual_seed(9)
    t = torch.randint(0, 50, (6,))
    eps = torch.randn(x.shape)
    a = task.schedule.alphas_cumprod[t].view(-1, 1, 1, 1)
    x_t = a.sqrt() * x + (1 - a).sqrt() * eps
    want = (model(x_t, t, y) - model(x_t, t, y_new).detach()).square().flatten(1).sum(1).mean()
    torch.testing.assert_close(got, want)
    # The target is a stop-gradient: the gradient is that of the prediction for the true class only.
    got.backward()
    assert model.class_emb.weight.grad is not None
    g_rows = model.class_emb.weight.grad.abs().sum(1)
    assert all(float(g_rows[int(c)]) > 0 for c in y.unique())
    # One joint salun step minimises forget loss + retain_weight x retain loss (checked through the history).
    ld = problem.loaders(batch_size=16)
    cfg = config_for_task("salun", "generation", n_iters=2, batch_size=16)
    r = unlearnkit.unlearn(problem.model, forget=ld["forget"], retain=ld["retain"], num_classes=3, config=cfg,
                           task=problem.task)
    assert len(r.history["forget_loss"]) == len(r.history["retain_loss"]) == 2


def test_zero_iterations_return_identical_weights(problem):
    ld = problem.loaders()
    for name, zero in (("sfron", {"n_iters": 0}), ("salun", {"n_iters": 0}), ("gradient_ascent", {"epochs": 0}),
                       ("finetune", {"epochs": 0}), ("retrain", {"epochs": 0})):
        cfg = config_for_task(name, "generation", **zero)
        r = unlearnkit.unlearn(problem.model, forget=ld["forget"], retain=ld["retain"], num_classes=3, config=cfg,
                               task=problem.task)
        assert state_equal(r.model, problem.model), name


def test_on_step_sees_every_iteration(problem):
    ld = problem.loaders()
    seen: list[int] = []
    cfg = config_for_task("sfron", "generation", n_iters=3, batch_size=16)
    unlearnkit.unlearn(problem.model, forget=ld["forget"], retain=ld["retain"], num_classes=3, config=cfg,
                       task=problem.task, on_step=lambda i, m: seen.append(i))
    assert seen == [1, 2, 3]


def test_generation_model_probe_rejects_a_classifier(problem):
    ld = problem.loaders()
    clf = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 3))
    with pytest.raises(unlearnkit.errors.UnlearnError):
        unlearnkit.unlearn(clf, forget=ld["forget"], retain=ld["retain"], num_classes=3,
                           config=config_for_task("finetune", "generation", epochs=1), task="generation")
