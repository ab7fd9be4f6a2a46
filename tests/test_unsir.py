"""Tests of the ``unsir`` method (issue 5): noise learning, impair set, zero strength, legacy mode, errors."""

from __future__ import annotations

import copy
import doctest
import json
import os
import socket
import tempfile

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

import unlearnkit
from unlearnkit.data.base import LabeledDataset
from unlearnkit.errors import ConfigError, DataError, UnsupportedRequestError
from unlearnkit.methods import unsir as unsir_mod
from unlearnkit.methods.base import UnlearnData, default_loss, get_method
from unlearnkit.methods.unsir import (
    NoiseRetainDataset,
    UnsirConfig,
    impair_noise,
    learn_noise,
    retain_subset_indices,
)

NUM_CLASSES = 4
SHAPE = (3, 8, 8)


# ---------------------------------------------------------------------------------------------------------------
# Fixtures: a tiny conv net with BatchNorm trained on structured random 3x8x8 data
# ---------------------------------------------------------------------------------------------------------------


class TinyConv(nn.Module):
    def __init__(self, in_ch: int = 3, num_classes: int = NUM_CLASSES) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(in_ch, 8, 3, padding=1, bias=False), nn.BatchNorm2d(8), nn.ReLU(),
                                  nn.MaxPool2d(2), nn.Conv2d(8, 16, 3, padding=1, bias=False), nn.BatchNorm2d(16),
                                  nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.head = nn.Linear(16, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.body(x))


def _make_data(n: int, seed: int, shape: tuple[int, ...] = SHAPE) -> LabeledDataset:
    # Each class is a fixed random pattern plus noise: learnable in a few dozen steps, not trivially separable.
    g = torch.Generator().manual_seed(1234)
    protos = torch.randn(NUM_CLASSES, *shape, generator=g)
    g = torch.Generator().manual_seed(seed)
    y = torch.arange(n) % NUM_CLASSES
    x = protos[y] + 1.0 * torch.randn(n, *shape, generator=g)
    return LabeledDataset(x, y)


def _train(model: nn.Module, ds: LabeledDataset, steps: int = 80) -> nn.Module:
    opt = torch.optim.Adam(model.parameters(), lr=0.01)
    g = torch.Generator().manual_seed(0)
    model.train()
    for _ in range(steps):
        idx = torch.randint(0, len(ds), (64,), generator=g)
        loss = F.cross_entropy(model(ds.x[idx]), ds.y[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
    return model.eval()


@pytest.fixture(scope="module")
def trained() -> tuple[nn.Module, LabeledDataset, LabeledDataset]:
    torch.manual_seed(0)
    train_ds, test_ds = _make_data(400, 1), _make_data(200, 2)
    model = _train(TinyConv(), train_ds)
    return model, train_ds, test_ds


def _retain_loader(ds: LabeledDataset, forget: list[int]) -> DataLoader:
    keep = torch.nonzero(~torch.isin(ds.y, torch.tensor(forget))).flatten()
    return DataLoader(ds.subset(keep), batch_size=64)


def _small_cfg(**kw: object) -> UnsirConfig:
    base = dict(noise_batch=32, noise_steps=10, noise_copies=4, batch_size=32, impair_lr=0.01, repair_lr=0.005)
    base.update(kw)
    return UnsirConfig(**base)  # type: ignore[arg-type]


def _acc(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    model.eval()
    with torch.no_grad():
        return float((model(x).argmax(1) == y).float().mean())


def _state_equal(a: nn.Module, b: nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


# ---------------------------------------------------------------------------------------------------------------
# Noise learning
# ---------------------------------------------------------------------------------------------------------------


def test_learned_noise_raises_target_loss_vs_random_noise_of_same_norm(trained):
    model, _, _ = trained
    cfg = UnsirConfig(noise_batch=64, noise_steps=40)
    noise, hist = learn_noise(model, [2], SHAPE, cfg, device="cpu", loss_fn=default_loss)
    n = noise[2]
    assert n.shape == (64, *SHAPE)
    g = torch.Generator().manual_seed(7)
    r = torch.randn(n.shape, generator=g)
    r = r * (n.flatten(1).norm(dim=1) / r.flatten(1).norm(dim=1)).view(-1, 1, 1, 1)
    y = torch.full((64,), 2)
    model.eval()
    with torch.no_grad():
        loss_learned = F.cross_entropy(model(n), y).item()
        loss_random = F.cross_entropy(model(r), y).item()
    assert loss_learned > loss_random + 1.0, (loss_learned, loss_random)
    # The objective decreases over the steps (the -CE term grows faster than the penalty).
    assert hist["noise_loss"][-1] < hist["noise_loss"][0]
    assert len(hist["noise_loss"]) == 40


def test_noise_learning_leaves_normalisation_buffers_and_grads_untouched(trained):
    model = copy.deepcopy(trained[0]).train()  # train mode on entry: the method must still not update BN stats
    before = copy.deepcopy(model)
    learn_noise(model, [0, 3], SHAPE, _small_cfg(), device="cpu", loss_fn=default_loss)
    assert _state_equal(model, before)  # parameters and running_mean/var/num_batches_tracked
    assert all(p.grad is None for p in model.parameters())
    assert all(m.training for m in model.modules())  # training flags restored
    # The legacy (official) behaviour does update them: the check above can fail.
    legacy = copy.deepcopy(before)
    learn_noise(legacy, [0], SHAPE, _small_cfg(legacy=True), device="cpu", loss_fn=default_loss)
    bn = [k for k in legacy.state_dict() if "running_mean" in k]
    assert any(not torch.equal(legacy.state_dict()[k], before.state_dict()[k]) for k in bn)


def test_joint_multiclass_noise_equals_per_class_noise(trained):
    model = trained[0]
    cfg = _small_cfg()
    joint, _ = learn_noise(model, [1, 3], SHAPE, cfg, device="cpu", loss_fn=default_loss)
    for c in (1, 3):
        alone, _ = learn_noise(model, [c], SHAPE, cfg, device="cpu", loss_fn=default_loss)
        torch.testing.assert_close(joint[c], alone[c], rtol=1e-4, atol=1e-4)


def test_noise_clamp_is_respected(trained):
    noise, _ = learn_noise(trained[0], [1], SHAPE, _small_cfg(noise_clamp=(-0.5, 0.25)), device="cpu",
                           loss_fn=default_loss)
    assert float(noise[1].min()) >= -0.5 and float(noise[1].max()) <= 0.25


# ---------------------------------------------------------------------------------------------------------------
# Impair set
# ---------------------------------------------------------------------------------------------------------------


def test_each_noise_sample_carries_its_own_class_label():
    noise = {1: torch.randn(5, *SHAPE), 3: torch.randn(5, *SHAPE)}
    nx, ny = impair_noise(noise, UnsirConfig())
    assert ny.tolist() == [1] * 5 + [3] * 5
    assert torch.equal(nx, torch.cat([noise[1], noise[3]]))
    retain = TensorDataset(torch.randn(7, *SHAPE), torch.tensor([0, 2, 0, 2, 0, 2, 0]))
    ds = NoiseRetainDataset(nx, ny, copies=3, retain=retain)
    assert len(ds) == 3 * 10 + 7
    for i in range(30):
        x, y = ds[i]
        c = 1 if (i % 10) < 5 else 3
        assert int(y) == c and any(torch.equal(x, row) for row in noise[c])
    assert [int(ds[30 + i][1]) for i in range(7)] == retain.tensors[1].tolist()
    assert all(ds[i][1].dtype == torch.long for i in range(len(ds)))


def test_legacy_impair_noise_uses_channel_count_rows_labelled_zero():
    noise = {1: torch.randn(5, *SHAPE), 3: torch.randn(5, *SHAPE)}
    nx, ny = impair_noise(noise, UnsirConfig(legacy=True))
    assert ny.tolist() == [0] * 6  # 3 rows (= channels) per class, all labelled 0 as in the official notebook
    assert torch.equal(nx, torch.cat([noise[1][:3], noise[3][:3]]))


def test_retain_subset_excludes_forgotten_classes_and_caps_per_class():
    labels = torch.tensor([0, 1, 2, 0, 1, 2, 0, 1, 2, 0, 3, 3])
    idx = retain_subset_indices(labels, [1, 3], 2, "first", seed=0)
    assert idx.tolist() == [0, 2, 3, 5]
    a = retain_subset_indices(labels, [1, 3], 2, "random", seed=5)
    b = retain_subset_indices(labels, [1, 3], 2, "random", seed=5)
    assert torch.equal(a, b) and set(labels[a].tolist()) == {0, 2}
    assert (labels[a] == 0).sum() == 2 and (labels[a] == 2).sum() == 2
    assert retain_subset_indices(labels, [1], None, "random", 0).tolist() == [0, 2, 3, 5, 6, 8, 9, 10, 11]


# ---------------------------------------------------------------------------------------------------------------
# The method through unlearn()
# ---------------------------------------------------------------------------------------------------------------


def test_forgets_the_class_without_forget_samples(trained):
    model, train_ds, test_ds = trained
    res = unlearnkit.unlearn(model, forget=None, retain=_retain_loader(train_ds, [3]), forget_classes=[3],
                             config=_small_cfg(noise_steps=20, impair_lr=0.02, repair_lr=0.01, batch_size=64))
    f = test_ds.y == 3
    before_f, after_f = _acc(model, test_ds.x[f], test_ds.y[f]), _acc(res.model, test_ds.x[f], test_ds.y[f])
    after_r = _acc(res.model, test_ds.x[~f], test_ds.y[~f])
    assert before_f > 0.8 and after_f < 0.1, (before_f, after_f)
    assert after_r > 0.7, after_r
    with torch.no_grad():  # the forget-class loss moves up
        assert F.cross_entropy(res.model(test_ds.x[f]), test_ds.y[f]) > F.cross_entropy(model(test_ds.x[f]),
                                                                                       test_ds.y[f]) + 1.0
    assert all(torch.isfinite(p).all() for p in res.model.parameters())
    assert len(res.history["impair_loss"]) > 0 and len(res.history["repair_loss"]) > 0


@pytest.mark.parametrize("zero", [dict(impair_epochs=0, repair_epochs=0), dict(impair_lr=0.0, repair_lr=0.0)])
@pytest.mark.parametrize("legacy", [False, True])
def test_zero_impair_and_repair_return_identical_weights(trained, zero, legacy):
    model, train_ds, _ = trained
    res = unlearnkit.unlearn(model, forget=None, retain=_retain_loader(train_ds, [1]), forget_classes=[1],
                             config=_small_cfg(legacy=legacy, **zero))
    assert _state_equal(res.model, model)


def test_same_seed_same_weights_different_seed_differs(trained):
    model, train_ds, _ = trained
    retain = _retain_loader(train_ds, [0, 2])

    def run(seed: int) -> nn.Module:
        return unlearnkit.unlearn(model, forget=None, retain=retain, forget_classes=[0, 2],
                                  config=_small_cfg(seed=seed)).model

    a, b, c = run(0), run(0), run(1)
    assert _state_equal(a, b)
    assert not _state_equal(a, c)


def test_legacy_and_default_differ(trained):
    model, train_ds, _ = trained
    retain = _retain_loader(train_ds, [2])
    out = [unlearnkit.unlearn(model, forget=None, retain=retain, forget_classes=[2],
                              config=_small_cfg(legacy=leg)).model for leg in (False, True)]
    assert not _state_equal(*out)


def test_noise_follows_the_data_input_shape():
    # 1-channel 6x6 images and flat feature vectors: the noise takes the shape of a retain sample.
    for shape, net in (((1, 6, 6), TinyConv(in_ch=1)), ((10,), nn.Sequential(nn.Linear(10, 16), nn.ReLU(),
                                                                              nn.Linear(16, NUM_CLASSES)))):
        ds = _make_data(80, 3, shape)
        noise, _ = learn_noise(net, [1], tuple(ds.x.shape[1:]), _small_cfg(noise_steps=2), device="cpu",
                               loss_fn=default_loss)
        assert noise[1].shape == (32, *shape)
        res = unlearnkit.unlearn(net, forget=None, retain=_retain_loader(ds, [1]), forget_classes=[1],
                                 config=_small_cfg(noise_steps=2))
        assert all(torch.isfinite(p).all() for p in res.model.parameters())


def test_retain_set_containing_the_forgotten_class_is_filtered(trained, monkeypatch):
    # unlearn() with a retain loader that (wrongly) holds class 1 too: the impair/repair data never contains it.
    model, train_ds, _ = trained
    seen: list[torch.Tensor] = []
    orig = unsir_mod._train_pass

    def spy(model, loader, data, cfg, lr, epochs, name):
        seen.extend(y for _, y in loader)
        return orig(model, loader, data, cfg, lr, epochs, name)

    monkeypatch.setattr(unsir_mod, "_train_pass", spy)
    data = UnlearnData(forget=None, retain=DataLoader(train_ds, batch_size=64), forget_classes=(1,),
                       num_classes=NUM_CLASSES)
    unsir_mod.unsir(copy.deepcopy(model), data, _small_cfg(noise_steps=1))
    labels = torch.cat(seen)
    # impair: 4 copies x 32 noise rows labelled 1 + retain subset (no class 1); repair: retain subset only.
    n_retain = int((train_ds.y != 1).sum())
    assert int((labels == 1).sum()) == 4 * 32
    assert len(labels) == 2 * n_retain + 4 * 32


# ---------------------------------------------------------------------------------------------------------------
# Errors, config and registry
# ---------------------------------------------------------------------------------------------------------------


def test_errors_no_forget_classes_and_out_of_range(trained):
    model, train_ds, _ = trained
    retain = _retain_loader(train_ds, [1])
    with pytest.raises(UnsupportedRequestError, match="forget_classes"):
        unlearnkit.unlearn(model, forget=None, retain=retain, config=_small_cfg())
    with pytest.raises(UnsupportedRequestError, match="retain"):
        unlearnkit.unlearn(model, forget=None, forget_classes=[1], config=_small_cfg())
    with pytest.raises(DataError, match="out of range"):
        unlearnkit.unlearn(model, forget=None, retain=retain, forget_classes=[7], config=_small_cfg())
    # Direct calls (bypassing unlearn()) check the same things.
    with pytest.raises(UnsupportedRequestError):
        unsir_mod.unsir(model, UnlearnData(forget=None, retain=retain, num_classes=NUM_CLASSES), _small_cfg())
    with pytest.raises(DataError, match="out of range"):
        unsir_mod.unsir(model, UnlearnData(forget=None, retain=retain, forget_classes=(4,),
                                           num_classes=NUM_CLASSES), _small_cfg())
    only_forgotten = DataLoader(train_ds.subset(torch.nonzero(train_ds.y == 1).flatten()), batch_size=8)
    with pytest.raises(DataError, match="no sample outside"):
        unsir_mod.unsir(model, UnlearnData(forget=None, retain=only_forgotten, forget_classes=(1,),
                                           num_classes=NUM_CLASSES), _small_cfg())


@pytest.mark.parametrize("bad", [dict(noise_batch=0), dict(noise_steps=-1), dict(noise_lr=-0.1),
                                 dict(noise_clamp=(1.0, 0.0)), dict(noise_clamp=(0.0,)), dict(retain_per_class=0),
                                 dict(retain_selection="last"), dict(optimizer="rmsprop"), dict(batch_size=0),
                                 dict(impair_epochs=1.5), dict(legacy="yes")])
def test_config_validation(bad):
    with pytest.raises(ConfigError):
        UnsirConfig(**bad)  # type: ignore[arg-type]


def test_config_round_trip_and_registry_flags():
    cfg = UnsirConfig(noise_clamp=(-2.0, 2.0), retain_per_class=None, legacy=True, seed=3)
    back = UnsirConfig.from_dict(cfg.to_dict())
    assert back == cfg and UnsirConfig.from_dict(json.loads(cfg.to_json())) == cfg
    spec = get_method("unsir")
    assert spec.config_cls is UnsirConfig
    assert (spec.requires_forget, spec.requires_forget_classes, spec.requires_retain) == (False, True, True)
    assert spec.supported_requests == frozenset({"class"}) and spec.supports_distributed and spec.stochastic
    d = UnsirConfig()
    assert (d.noise_batch, d.noise_steps, d.noise_lr, d.noise_l2, d.noise_copies, d.impair_lr, d.repair_lr,
            d.impair_epochs, d.repair_epochs, d.batch_size, d.optimizer, d.legacy) == (
        256, 40, 0.1, 0.1, 20, 0.02, 0.01, 1, 1, 256, "adam", False)


def test_docstring_example_runs():
    torch.manual_seed(0)
    finder = doctest.DocTestFinder()
    runner = doctest.DocTestRunner()
    for t in finder.find(unsir_mod.unsir, "unsir", globs={}):
        runner.run(t)
    assert runner.failures == 0 and runner.tries > 0


# ---------------------------------------------------------------------------------------------------------------
# Two processes (gloo): every rank learns the same noise and ends with the same weights
# ---------------------------------------------------------------------------------------------------------------


def _ddp_worker(rank: int, world: int, port: int, out_dir: str) -> None:
    import torch.distributed as dist

    torch.set_num_threads(1)
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=world)
    try:
        torch.manual_seed(0)
        ds = _make_data(160, 1)
        model = _train(TinyConv(), ds, steps=20)
        noise, _ = learn_noise(model, [1, 2], SHAPE, _small_cfg(noise_steps=5), device="cpu", loss_fn=default_loss)
        ddp = nn.parallel.DistributedDataParallel(model)
        data = UnlearnData(forget=None, retain=_retain_loader(ds, [1]), forget_classes=(1,),
                           num_classes=NUM_CLASSES)
        unsir_mod.unsir(ddp, data, _small_cfg(noise_steps=5))
        torch.save({"noise": noise, "state": model.state_dict()}, os.path.join(out_dir, f"r{rank}.pt"))
    finally:
        dist.destroy_process_group()


@pytest.mark.ddp
def test_two_ranks_learn_identical_noise_and_weights():
    import torch.multiprocessing as mp

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with tempfile.TemporaryDirectory() as d:
        mp.spawn(_ddp_worker, args=(2, port, d), nprocs=2, join=True)
        r0, r1 = (torch.load(os.path.join(d, f"r{r}.pt")) for r in (0, 1))
    for c in (1, 2):
        assert torch.equal(r0["noise"][c], r1["noise"][c])
    # Parameters are kept in sync by DDP; BN running statistics are per rank under plain DDP (no SyncBatchNorm).
    for k, v in r0["state"].items():
        if "running" not in k and "num_batches" not in k:
            assert torch.equal(v, r1["state"][k]), k
