"""The pipeline: ``--set`` values read into each config field's type, and the three roles of ``Experiment`` (data,
model store, method runner), each used alone."""

import pytest
import torch
from torch.utils.data import DataLoader

import unlearnkit
from unlearnkit.errors import ConfigError, UnsupportedRequestError
from unlearnkit.methods.base import get_method
from unlearnkit.models import build_model
from unlearnkit.pipeline import ExperimentData, MethodRunner, ModelStore, build_config, check_supported
from unlearnkit.training import TrainRecipe


def test_set_values_are_coerced_to_field_types():
    c = build_config("pgu", dataset="shapes", kind="random", seed=3,
                     overrides={"eps_layers": '{"features.0.0": 0.9}', "exclude": "head, features.0.0",
                                "epochs": "7", "lr_start": "0.2", "gap_val_guard": "false", "batch_size": "none"})
    assert c.eps_layers == {"features.0.0": 0.9} and c.exclude == ("head", "features.0.0")
    assert c.epochs == 7 and c.lr_start == 0.2 and c.gap_val_guard is False and c.batch_size is None
    assert c.seed == 3
    assert build_config("svd", dataset="digits", kind="class", seed=0, overrides={"grid_r": "10,30"}).grid_r == \
        (10.0, 30.0)
    assert build_config("unsir", dataset="digits", kind="class", seed=0,
                        overrides={"noise_clamp": "-1,1"}).noise_clamp == (-1.0, 1.0)


@pytest.mark.parametrize("method,field,value,match", [
    ("pgu", "eps_layers", "x", "JSON object"),
    ("pgu", "eps_layers", "[1, 2]", "JSON object"),
    ("pgu", "epochs", "many", "cannot read 'many'"),
    ("pgu", "nope", "1", "has no field 'nope'"),
])
def test_bad_set_values_fail_with_a_hint(method, field, value, match):
    with pytest.raises(ConfigError, match=match):
        build_config(method, dataset="shapes", kind="random", seed=0, overrides={field: value})


# --- the three roles of Experiment, each used alone (issue 19) ------------------------------------------------------


def _state(m: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in m.state_dict().items()}


def test_data_role_resolves_and_evaluates_without_any_model(monkeypatch):
    import unlearnkit.pipeline as P

    monkeypatch.setattr(P, "train", lambda *a, **k: pytest.fail("the data role must not train"))
    data = ExperimentData("digits", data_seed=0)
    split = data.resolve("class:3", seed=0)
    ld = data.loaders(split, batch_size=50)
    assert len(ld["forget"].dataset) == int((data.splits.train.y == 3).sum())
    assert len(ld["forget"].dataset) + len(ld["retain"].dataset) == len(data.splits.train)
    assert len(ld["val"].dataset) == len(data.splits.val)
    ev = data.evaluator(split, seed=0)
    assert ev.sets.forget_classes == (3,) and len(ev.sets.test) == len(data.splits.test)


def test_model_store_trains_once_and_keys_by_the_subset(tmp_path):
    data = ExperimentData("digits", data_seed=0)
    logs: list[str] = []
    store = ModelStore(data, "mlp", recipe=TrainRecipe(epochs=1, batch_size=256, optimizer="sgd", lr=0.05),
                       cache_dir=tmp_path, progress=False, log=logs.append)
    first = store.original(0)
    again = store.original(0)
    assert not first.reused and again.reused
    assert all(torch.equal(a, b) for a, b in zip(_state(first.model).values(), _state(again.model).values()))
    split = data.resolve("class:3", seed=0)
    ref = store.retrained(split, 0)
    assert not ref.reused and ref.path != first.path and ref.manifest["forget_hash"] == split.key
    other = store.trained("retrain", 0, split.retain_set(data.splits.train), {"request": "x", "forget_hash": "y"})
    assert not other.reused and other.path not in (first.path, ref.path)
    assert sum("training" in m for m in logs) == 3


def test_method_runner_is_unlearn_on_the_split_and_refuses_what_the_method_cannot_serve():
    data = ExperimentData("digits", data_seed=0)
    split = data.resolve("class:3", seed=0)
    torch.manual_seed(0)
    s = data.splits
    model = build_model("mlp", s.input_shape, s.num_classes)
    runner = MethodRunner(data, progress=False, log=lambda m: None)
    cfg = unlearnkit.FinetuneConfig(epochs=1, seed=0)
    res, used = runner.run("finetune", model, split, seed=0, config=cfg)
    assert used is cfg
    direct = unlearnkit.unlearn(model, forget=DataLoader(split.forget_set(s.train), batch_size=128),
                                retain=DataLoader(split.retain_set(s.train), batch_size=128),
                                val=DataLoader(s.val, batch_size=128), config=cfg,
                                forget_classes=split.forget_classes, num_classes=s.num_classes)
    assert all(torch.equal(a, b) for a, b in zip(_state(res.model).values(), _state(direct.model).values()))
    # The config the CLI would build: rules, presets and overrides, with where each value came from; without a
    # model store there is no cache, hence no tuned file.
    cfg2, prov = runner.config_for("finetune", split, 4, {"epochs": "2"})
    assert cfg2.epochs == 2 and cfg2.seed == 4 and prov["epochs"]["source"] == "--set"
    assert runner.tuned_file("finetune", split) is None
    svd = get_method("svd")
    rnd = data.resolve("random:0.1", seed=0)
    assert "random" not in svd.supported_requests  # svd forgets whole classes only
    assert "does not support random requests" in check_supported(svd, rnd)
    with pytest.raises(UnsupportedRequestError, match="does not support random"):
        runner.run("svd", model, rnd, seed=0)
    assert check_supported(get_method("finetune"), rnd) is None
