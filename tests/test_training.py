import pytest
import torch
from torch import nn

from unlearnkit.checkpoints import ModelCache, atomic_write_text, load_checkpoint, save_checkpoint
from unlearnkit.data.base import LabeledDataset
from unlearnkit.errors import CheckpointError, ConfigError, DataError
from unlearnkit.training import TrainRecipe, _augment, evaluate_accuracy, train


def _problem(n=120):
    g = torch.Generator().manual_seed(1)
    y = torch.arange(n) % 2
    x = torch.randn(n, 3, 16, 16, generator=g) + (2.0 * y - 1.0)[:, None, None, None]
    return LabeledDataset(x, y)


def _model(seed=0):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 14 * 14, 2))


@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
def test_training_is_deterministic_and_learns(optimizer):
    ds = _problem()
    r = TrainRecipe(epochs=4, batch_size=16, optimizer=optimizer, lr=0.01 if optimizer == "adam" else 0.05,
                    augment=True)
    m1, m2, m3 = _model(), _model(), _model()
    log = train(m1, ds, recipe=r, seed=0)
    train(m2, ds, recipe=r, seed=0)
    train(m3, ds, recipe=r, seed=1)
    s1, s2, s3 = m1.state_dict(), m2.state_dict(), m3.state_dict()
    assert all(torch.equal(s1[k], s2[k]) for k in s1)
    assert not all(torch.equal(s1[k], s3[k]) for k in s1)
    assert log.epoch_losses[-1] < log.epoch_losses[0]
    assert evaluate_accuracy(m1, ds) > 70


def test_augment_identity_offsets_and_flip():
    x = torch.arange(2 * 1 * 16 * 16, dtype=torch.float).reshape(2, 1, 16, 16)

    class FixedGen(torch.Generator):
        pass

    g = torch.Generator().manual_seed(0)
    out = _augment(x, g)
    assert out.shape == x.shape
    # Every output row must be a (possibly flipped) contiguous window of the reflect-padded input.
    pad = torch.nn.functional.pad(x, (4, 4, 4, 4), mode="reflect")
    for i in range(2):
        found = False
        for dy in range(9):
            for dx in range(9):
                win = pad[i, :, dy:dy + 16, dx:dx + 16]
                if torch.equal(out[i], win) or torch.equal(out[i], win.flip(-1)):
                    found = True
        assert found
    small = torch.randn(2, 1, 8, 8)
    assert torch.equal(_augment(small, g), small)  # too small to augment


def test_recipe_validation():
    with pytest.raises(ConfigError, match="epochs"):
        TrainRecipe(epochs=-1)
    with pytest.raises(ConfigError, match="optimizer"):
        TrainRecipe(optimizer="lbfgs")
    with pytest.raises(DataError, match="empty"):
        train(_model(), LabeledDataset(torch.empty(0, 3, 16, 16), torch.empty(0)), recipe=TrainRecipe(epochs=1))


def test_checkpoint_round_trip_and_corruption(tmp_path):
    m = _model()
    p = save_checkpoint(tmp_path / "m.safetensors", m, {"role": "original", "seed": 0})
    state, man = load_checkpoint(p)
    assert man["role"] == "original" and "versions" in man and (tmp_path / "m.json").is_file()
    assert all(torch.equal(state[k], v) for k, v in m.state_dict().items())
    # No temporary files left behind.
    assert sorted(f.name for f in tmp_path.iterdir()) == ["m.json", "m.safetensors"]
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(p.read_bytes()[:100])
    with pytest.raises(CheckpointError, match="corrupt"):
        load_checkpoint(bad)
    with pytest.raises(CheckpointError, match="not found"):
        load_checkpoint(tmp_path / "missing.safetensors")
    cache = ModelCache(tmp_path / "cache")
    k = cache.key(a=1)
    assert cache.get(k) is None
    cache.path(k).parent.mkdir(parents=True)
    cache.path(k).write_bytes(b"garbage")
    assert cache.get(k) is None  # corrupt cache entries are retrained, not trusted
    atomic_write_text(tmp_path / "x.txt", "hello")
    assert (tmp_path / "x.txt").read_text() == "hello"


def test_single_example_tail_batch_is_merged_not_dropped():
    from unlearnkit.distributed import EpochShuffleSampler, MergedTailBatchSampler
    from unlearnkit.methods._common import rebatch

    for n, bs, sizes in [(33, 16, [16, 17]), (34, 16, [16, 16, 2]), (1, 16, [1]), (32, 16, [16, 16])]:
        bsamp = MergedTailBatchSampler(EpochShuffleSampler(n, shuffle=True, seed=0), bs)
        batches = list(bsamp)
        assert [len(b) for b in batches] == sizes and len(bsamp) == len(sizes)
        assert sorted(i for b in batches for i in b) == list(range(n))
    ds = LabeledDataset(torch.randn(33, 3), torch.arange(33) % 2)
    assert [len(y) for _, y in rebatch(ds, 16, shuffle=False)] == [16, 17]
    assert [len(y) for _, y in rebatch(ds, 16, shuffle=False, drop_last=True)] == [16, 16]
    # A BatchNorm after global pooling trains on a set of 16k+1 examples (one example alone would raise).
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(3, 4, 3), nn.AdaptiveAvgPool2d(1), nn.BatchNorm2d(4), nn.Flatten(), nn.Linear(4, 2))
    train(net, _problem(33), recipe=TrainRecipe(epochs=1, batch_size=16), seed=0)
