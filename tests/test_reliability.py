"""Issue 22 acceptance: every ordinary mistake through the API and the CLI gives a typed error (API) or one line
and exit status 2 (CLI), before any training, leaving no partial output.

API checks run on tiny models and a few dozen examples; CLI checks run `unlearnkit` in a subprocess with a spy
that fail the test if any model training or method call starts.
"""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset, TensorDataset

import unlearnkit.api as api_mod
from unlearnkit import DataError, FinetuneConfig, GradientAscentConfig, RandomLabelConfig, UnlearnError, unlearn
from unlearnkit.data.base import LabeledDataset
from unlearnkit.errors import DivergedError

# ---------------------------------------------------------------------------------------------------------------
# API: the same checks for a TensorDataset, a custom Dataset and a LabeledDataset
# ---------------------------------------------------------------------------------------------------------------


class PairDataset(Dataset):
    """A user's own map-style dataset: (input, int label) pairs, no tensors exposed."""

    def __init__(self, x: torch.Tensor, y: torch.Tensor) -> None:
        self._x, self._y = x, y

    def __len__(self) -> int:
        return len(self._y)

    def __getitem__(self, i: int):
        return self._x[i], int(self._y[i])


KINDS = {
    "tensor": lambda x, y: TensorDataset(x, y),
    "custom": PairDataset,
    "labeled": lambda x, y: LabeledDataset(x, y),
}


def _mlp(d: int = 6, k: int = 3) -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(d, 8), nn.ReLU(), nn.Linear(8, k))


def _xy(n: int, seed: int, d: int = 6, k: int = 3) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, d, generator=g), torch.randint(0, k, (n,), generator=g)


@pytest.fixture
def no_method_runs(monkeypatch):
    """Make any method call fail loudly: a check that fires only after the method started is a test failure."""
    real = api_mod.method_for_config

    def spy(config):
        spec = real(config)

        def boom(*a, **k):
            raise AssertionError("the method ran before the inputs were validated")

        return dataclasses.replace(spec, fn=boom)

    monkeypatch.setattr(api_mod, "method_for_config", spy)


def _weights(m: nn.Module) -> list[torch.Tensor]:
    return [p.detach().clone() for p in m.state_dict().values()]


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_nan_forget_inputs_are_refused(kind, no_method_runs):
    x, y = _xy(8, 1)
    x[3, 2] = float("nan")
    rx, ry = _xy(30, 2)
    model = _mlp()
    before = _weights(model)
    with pytest.raises(DataError, match="NaN or Inf"):
        unlearn(model, forget=DataLoader(KINDS[kind](x, y)), retain=DataLoader(KINDS[kind](rx, ry)),
                config=GradientAscentConfig(lr=1.0))
    assert all(torch.equal(a, b) for a, b in zip(before, _weights(model)))


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_inf_retain_inputs_are_refused(kind, no_method_runs):
    x, y = _xy(8, 1)
    rx, ry = _xy(30, 2)
    rx[-1, 0] = float("inf")
    with pytest.raises(DataError, match="retain set contains NaN or Inf"):
        unlearn(_mlp(), forget=DataLoader(KINDS[kind](x, y)), retain=DataLoader(KINDS[kind](rx, ry)),
                config=FinetuneConfig())


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_overlap_is_found_by_content_across_objects(kind, no_method_runs):
    x, y = _xy(40, 3)
    forget = KINDS[kind](x[:10], y[:10])
    retain = KINDS[kind](x[7:], y[7:])  # rows 7, 8, 9 are in both, in two separately built datasets
    with pytest.raises(DataError, match="3 forget examples also appear in the retain set"):
        unlearn(_mlp(), forget=DataLoader(forget), retain=DataLoader(retain), config=RandomLabelConfig())


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_disjoint_separately_built_sets_are_accepted(kind):
    # Two separately built LabeledDatasets both have default ids 0..N-1: ids of two id spaces are never compared.
    x, y = _xy(40, 4)
    res = unlearn(_mlp(), forget=DataLoader(KINDS[kind](x[:10], y[:10])),
                  retain=DataLoader(KINDS[kind](x[10:], y[10:])), config=RandomLabelConfig(epochs=1))
    assert all(torch.isfinite(p).all() for p in res.model.parameters())


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_a_shape_error_is_not_hidden_behind_an_overlap_error(kind, no_method_runs):
    x, y = _xy(10, 5, d=7)
    rx, ry = _xy(30, 6)
    with pytest.raises(DataError, match="cannot take the forget inputs of shape"):
        unlearn(_mlp(), forget=DataLoader(KINDS[kind](x, y)), retain=DataLoader(KINDS[kind](rx, ry)),
                config=RandomLabelConfig())


@pytest.mark.parametrize("kind", sorted(KINDS))
@pytest.mark.parametrize("label", [42, -1])
def test_out_of_range_labels_without_num_classes(kind, label, no_method_runs):
    x, y = _xy(10, 7)
    y[4] = label
    rx, ry = _xy(30, 8)
    with pytest.raises(DataError, match=r"forget labels must lie in \[0, 2\] \(the model has 3 outputs\)"):
        unlearn(_mlp(), forget=DataLoader(KINDS[kind](x, y)), retain=DataLoader(KINDS[kind](rx, ry)),
                config=GradientAscentConfig())


@pytest.mark.parametrize("classes", [[-1], [3], [0, 7]])
def test_forget_classes_out_of_range(classes, no_method_runs):
    x, y = _xy(10, 9)
    rx, ry = _xy(30, 10)
    with pytest.raises(DataError, match=r"out of range: valid classes are 0\.\.2"):
        unlearn(_mlp(), forget=DataLoader(TensorDataset(x, y)), retain=DataLoader(TensorDataset(rx, ry)),
                forget_classes=classes, config=RandomLabelConfig())


def test_float_labels_and_bad_items_are_typed_errors(no_method_runs):
    x, _ = _xy(10, 11)
    rx, ry = _xy(30, 12)
    retain = DataLoader(TensorDataset(rx, ry))
    with pytest.raises(DataError, match="integer class ids"):
        unlearn(_mlp(), forget=DataLoader(TensorDataset(x, torch.full((10,), 0.5))), retain=retain,
                config=GradientAscentConfig())

    with pytest.raises(DataError, match=r"one class id per example \(shape \(N,\)\), got shape \(10, 3\)"):
        unlearn(_mlp(), forget=DataLoader(TensorDataset(x, torch.zeros(10, 3, dtype=torch.long))), retain=retain,
                config=GradientAscentConfig())

    class Broken(Dataset):
        def __len__(self):
            return 3

        def __getitem__(self, i):
            raise KeyError(i)

    with pytest.raises(DataError, match=r"reading forget.dataset\[0\] failed"):
        unlearn(_mlp(), forget=DataLoader(Broken()), retain=retain, config=GradientAscentConfig())


def test_large_custom_dataset_is_checked_by_a_bounded_seeded_scan(no_method_runs, monkeypatch):
    monkeypatch.setattr(api_mod, "SCAN_LIMIT", 50)
    x, y = _xy(500, 13)
    x[:, 0] = float("nan")  # every row: any sample finds it
    rx, ry = _xy(30, 14)
    with pytest.raises(DataError, match="NaN"):
        unlearn(_mlp(), forget=DataLoader(PairDataset(x, y)), retain=DataLoader(PairDataset(rx, ry)),
                config=GradientAscentConfig())


def test_a_diverged_run_is_an_error_not_a_result():
    x, y = _xy(10, 15)
    with pytest.raises(DivergedError, match="non-finite") as e:
        unlearn(_mlp(), forget=DataLoader(TensorDataset(x, y)), config=GradientAscentConfig(lr=1e38, epochs=3))
    assert isinstance(e.value, UnlearnError) and e.value.result is not None


def test_unrelated_rows_with_equal_keys_are_not_an_overlap():
    # The content keys are hashes: a key collision is confirmed row by row before anything is refused.
    x, y = _xy(20, 16)
    f, r = api_mod._Scan("forget", 20, x[:5], y[:5], None, None, True), \
        api_mod._Scan("retain", 15, x[5:], y[5:], None, None, True)
    api_mod._check_overlap(f, r, DataLoader(TensorDataset(x[:5], y[:5])), DataLoader(TensorDataset(x[5:], y[5:])))
    keys = api_mod._row_keys(x, y)
    assert len(np.unique(keys)) == 20


# ---------------------------------------------------------------------------------------------------------------
# CLI: one line, exit status 2, before any training, no output left behind
# ---------------------------------------------------------------------------------------------------------------


@pytest.fixture
def cli(monkeypatch, capsys):
    """Run ``unlearnkit`` in-process with training and unlearning replaced by spies that fail the test."""
    import unlearnkit.pipeline as pipeline
    from unlearnkit.cli import main

    def no_training(*a, **k):
        raise AssertionError("training started before the input was validated")

    monkeypatch.setattr(pipeline, "train", no_training)
    monkeypatch.setattr(pipeline, "unlearn", no_training)

    def run(*args: str) -> tuple[int, str, str]:
        try:
            code = main(list(args))
        except SystemExit as e:  # argparse
            code = int(e.code or 0)
        out, err = capsys.readouterr()
        return code, out, err

    return run


def _one_line(result, match):
    code, out, err = result
    assert code == 2, (code, out, err)
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "Traceback" not in err, err
    assert match in lines[0], lines[0]


def _csv(path: Path, rows: list[str]) -> Path:
    path.write_text("\n".join(rows) + "\n")
    return path


def _numeric_csv(path: Path, n: int = 60, marker: int | None = None) -> Path:
    rng = np.random.default_rng(0)
    rows = []
    for i in range(n):
        c = i % 3
        f = rng.normal(c, 0.3, size=4)
        if i == marker:
            f[0] = 999.0
        rows.append(",".join(f"{v:.4f}" for v in f) + f",{c}")
    return _csv(path, rows)


def test_cli_bad_inputs_give_one_line_before_any_work(cli, tmp_path):
    out = tmp_path / "out"
    base = ["--cache-dir", str(tmp_path / "cache"), "--out", str(out), "-q"]
    binary = tmp_path / "ids.bin"
    binary.write_bytes(bytes(range(256)))
    a_file = tmp_path / "a_file"
    a_file.write_text("x")
    many = _csv(tmp_path / "many.csv", [f"{i * 0.1:.1f},k{i % 25:02d}" for i in range(100)])
    cases = [
        (["run", "--methods", "finetune", "--set", "finetune.lr=inf", *base], "must be a finite number"),
        (["run", "--methods", "finetune", "--set", "finetune.lr=nan", *base], "must be a finite number"),
        (["run", "--methods", "svd", "--set", "svd.alpah_r=30", *base], "has no field 'alpah_r'"),
        (["run", "--methods", "finetune", "--set", "svd.alpha_r=30", *base], "not in --methods"),
        (["run", "--methods", "svd", "--forget", "random:0.1", "--set", "svd.alpah_r=30", *base],
         "has no field 'alpah_r'"),
        (["run", "--device", "cuda", *base], "CUDA is not available"),
        (["run", "--device", "nosuch", *base], "unknown --device 'nosuch'"),
        (["run", "--seeds", "-1", *base], "--seeds must be integers in 0.."),
        (["run", "--forget", f"ids:{binary}", *base], "is a binary file"),
        (["run", "--forget", "class:Z9", "--dataset", f"csv:{many}", *base], "valid: 0..24 or a name: k00, k01,"),
        (["run", "--header", *base], "applies only to csv"),
        (["run", "--threads", "0", *base], "expected a positive integer"),
        (["run", "--cache-dir", str(tmp_path / "c"), "--out", str(a_file), "-q"], "is a file"),
        (["run", "--cache-dir", str(tmp_path / "c"), "--out", str(a_file / "sub"), "-q"], "is a file, not a folder"),
        (["train", "--seed", "-1", "--cache-dir", str(tmp_path / "c")], "expected an integer"),
        (["train", "--out", str(tmp_path), "--cache-dir", str(tmp_path / "c"), "-q"], "is a folder"),
        (["unlearn", "--checkpoint", "missing.safetensors", "--method", "random_label", "--forget", "class:3",
          "--out", str(out / "u.safetensors"), "--set", "finetune.epochs=2"], "--set names finetune"),
        (["unlearn", "--checkpoint", "missing.safetensors", "--method", "random_label", "--forget", "class:3",
          "--out", str(out / "u.safetensors"), "--set", "random_label.epoch=2"], "has no field 'epoch'"),
        (["unlearn", "--checkpoint", "missing.safetensors", "--method", "finetune", "--forget", "class:3",
          "--out", str(out / "u.safetensors"), "--stats", str(a_file)], "does not use recorded layer statistics"),
        (["unlearn", "--checkpoint", "missing.safetensors", "--method", "svd", "--forget", "random:0.1",
          "--out", str(out / "u.safetensors")], "does not support random requests"),
        (["unlearn", "--checkpoint", "missing.safetensors", "--method", "finetune", "--forget", "class:3",
          "--out", str(tmp_path)], "is a folder"),
        (["unlearn", "--epochs", "3", "--checkpoint", "c", "--method", "finetune", "--forget", "class:3",
          "--out", "u"], "unrecognized arguments: --epochs"),
        (["evaluate", "--checkpoint", "missing.safetensors", "--forget", "class:3", "--out", str(tmp_path)],
         "is a folder"),
    ]
    before = sorted(p.name for p in tmp_path.iterdir())
    for args, match in cases:
        _one_line(cli(*args), match)
    assert not out.exists() and not (tmp_path / "cache").exists() and not (tmp_path / "c").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == before


def test_cli_report_on_a_non_results_file(cli, tmp_path):
    (tmp_path / "results.json").write_text("[]")
    _one_line(cli("report", str(tmp_path)), "not an unlearnkit results file")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["results.json"]


def test_cli_csv_mistakes(cli, tmp_path):
    one = _csv(tmp_path / "one.csv", ["0.1,0.2,a", "0.3,0.4,a", "0.5,0.6,b", "0.7,0.8,b", "0.9,1.0,c"])
    _one_line(cli("run", "--dataset", f"csv:{one}", "--out", str(tmp_path / "o"), "-q"),
              "class 'c' has a single example (line 5)")
    dup = _csv(tmp_path / "dup.csv", ["u1,0.1,0", "u1,0.2,1", "u3,0.3,0", "u4,0.4,1"])
    _one_line(cli("run", "--dataset", f"csv:{dup}", "--id-column", "0", "--out", str(tmp_path / "o"), "-q"),
              "id 'u1' in id column 'column 0' is not unique")
    assert not (tmp_path / "o").exists()


def test_cli_errors_that_are_oserrors_are_one_line(cli, tmp_path, monkeypatch):
    import unlearnkit.cli as cli_mod

    def full(*a, **k):
        raise OSError(28, "No space left on device", str(tmp_path / "results.json"))

    monkeypatch.setattr(cli_mod, "cmd_methods", full)
    monkeypatch.setattr(cli_mod, "build_parser", _parser_with(cli_mod, "methods", full))
    _one_line(cli("methods"), "No space left on device")


def _parser_with(cli_mod, name, fn):
    real = cli_mod.build_parser

    def build():
        ap = real()
        for action in ap._subparsers._group_actions:
            action.choices[name].set_defaults(fn=fn)
        return ap

    return build


# ---------------------------------------------------------------------------------------------------------------
# ids name the user's rows; data loaders (issue 19's data items)
# ---------------------------------------------------------------------------------------------------------------


def test_ids_on_a_csv_forget_exactly_the_named_data_row(tmp_path):
    from unlearnkit.data import load_dataset
    from unlearnkit.requests import ForgetRequest

    # The split depends only on the number of rows and the seed: pick a data row that lands in the training split
    # at another position (so that positional ids would name the wrong row) and plant the marker there.
    plain = load_dataset(f"csv:{_numeric_csv(tmp_path / 'p.csv', n=60)}", seed=0)
    marker = next(int(v) for i, v in enumerate(plain.train.source_ids) if int(v) != i and i > 3)
    f = _numeric_csv(tmp_path / "d.csv", n=60, marker=marker)
    s = load_dataset(f"csv:{f}", seed=0)
    assert int(np.flatnonzero(s.train.source_ids == marker)[0]) != marker
    ids = tmp_path / "ids.txt"
    ids.write_text(f"{marker}\n")
    split = ForgetRequest.parse(f"ids:{ids}").resolve(s.train, class_names=s.class_names,
                                                      held_out={"val": s.val, "test": s.test})
    forget = split.forget_set(s.train)
    raw0 = forget.x[:, 0] * s.std[0] + s.mean[0]
    assert len(forget) == 1 and abs(float(raw0[0]) - 999.0) < 1e-2
    assert split.id_map == {str(marker): int(split.forget_idx[0])}
    # Every other row is retained, the marker nowhere among them.
    retain_raw0 = split.retain_set(s.train).x[:, 0] * s.std[0] + s.mean[0]
    assert len(retain_raw0) == len(s.train) - 1 and float(retain_raw0.max()) < 100


def test_ids_in_val_or_test_are_reported_and_unknown_ids_refused(tmp_path):
    from unlearnkit.data import load_dataset
    from unlearnkit.errors import RequestError
    from unlearnkit.requests import ForgetRequest

    s = load_dataset(f"csv:{_numeric_csv(tmp_path / 'd.csv')}", seed=0)
    held = {"val": s.val, "test": s.test}
    tr, te = int(s.train.source_ids[0]), int(s.test.source_ids[0])
    ids = tmp_path / "ids.txt"
    ids.write_text(f"{tr}\n{te}\n")
    split = ForgetRequest.parse(f"ids:{ids}").resolve(s.train, class_names=s.class_names, held_out=held)
    assert split.forget_idx.tolist() == [0] and split.held_out_ids == {"test": (str(te),)}
    ids.write_text(f"{te}\n")
    with pytest.raises(RequestError, match="names no training example: every id is in a held-out split"):
        ForgetRequest.parse(f"ids:{ids}").resolve(s.train, class_names=s.class_names, held_out=held)
    ids.write_text("60\n")
    with pytest.raises(RequestError, match="1 ids are in no split of this dataset"):
        ForgetRequest.parse(f"ids:{ids}").resolve(s.train, class_names=s.class_names, held_out=held)


def test_id_column_and_folder_paths_are_ids(tmp_path):
    from PIL import Image

    from unlearnkit.data import load_dataset
    from unlearnkit.data.ids import resolve_user_ids

    rows = [f"user{i:03d},{i % 2 + 0.01 * i:.3f},{i % 2}" for i in range(40)]
    s = load_dataset(f"csv:{_csv(tmp_path / 'u.csv', rows)}", id_column=0, seed=0)
    assert s.input_shape == (1,)  # the id column is not a feature
    res = resolve_user_ids(["user007"], s.train, held_out={"val": s.val, "test": s.test})
    found = [n for n, ds in (("train", s.train), ("val", s.val), ("test", s.test)) if "user007" in ds.source_ids]
    assert found and (res.train_ids == ("user007",) if found == ["train"] else res.held_out == {found[0]: ("user007",)})
    for c in ("a", "b"):
        (tmp_path / "img" / c).mkdir(parents=True)
        for i in range(8):
            Image.new("RGB", (4, 4), (i * 20, 0, 0)).save(tmp_path / "img" / c / f"{i}.png")
    f = load_dataset(f"folder:{tmp_path / 'img'}", seed=0)
    name = str(f.train.source_ids[2])
    r = resolve_user_ids([name], f.train)
    assert name.count("/") == 1 and r.train_idx.tolist() == [2]


def test_cli_ids_command_shows_the_mapping(cli, tmp_path):
    f = _numeric_csv(tmp_path / "d.csv")
    code, out, err = cli("ids", "--dataset", f"csv:{f}", "5", "59", "99")
    assert code == 0, err
    lines = out.strip().splitlines()
    assert "data row number from 0" in lines[0]
    rows = {ln.split("\t")[0]: ln.split("\t")[1:] for ln in lines[1:]}
    assert set(rows) == {"5", "59", "99"} and rows["99"][0] == "-"
    assert all(rows[k][0] in ("train", "val", "test") for k in ("5", "59"))


def test_numeric_header_csv_is_read_with_the_right_classes(tmp_path):
    from unlearnkit.data import load_dataset
    from unlearnkit.errors import UnlearnWarning

    rng = np.random.default_rng(1)
    rows = ["label," + ",".join(str(j) for j in range(1, 17))]
    labels = [i % 4 for i in range(80)]
    rows += [f"{c}," + ",".join(f"{v:.3f}" for v in rng.normal(c, 1, 16)) for c in labels]
    f = _csv(tmp_path / "h.csv", rows)
    with pytest.warns(UnlearnWarning, match="taking the first row as a header"):
        s = load_dataset(f"csv:{f}", label_column="0", seed=0)
    assert s.class_names == ["0", "1", "2", "3"] and s.manifest["header"] is True
    assert len(s.train) + len(s.val) + len(s.test) == 80 and s.input_shape == (16,)
    # The explicit flags agree with the detection, and --no-header makes the header row an error, not a class.
    assert load_dataset(f"csv:{f}", label_column="0", header=True, seed=0).hash == s.hash
    with pytest.raises(DataError, match="'label' is not a number|has a single example"):
        load_dataset(f"csv:{f}", label_column="0", header=False, seed=0)


def test_grayscale_folder_keeps_one_channel(tmp_path):
    from PIL import Image

    from unlearnkit.data import load_dataset

    for c in ("a", "b"):
        (tmp_path / c).mkdir()
        for i in range(8):
            Image.new("L", (6, 5), 30 * i).save(tmp_path / c / f"{i}.png")
    s = load_dataset(f"folder:{tmp_path}", seed=0)
    assert s.input_shape == (1, 5, 6) and s.manifest["channels"] == 1
    Image.new("RGB", (6, 5), (255, 0, 0)).save(tmp_path / "a" / "colour.png")
    assert load_dataset(f"folder:{tmp_path}", seed=0).input_shape == (3, 5, 6)


def test_cifar_batch_repickled_with_protocol_2_is_accepted_and_codecs_stays_restricted(tmp_path):
    import io
    import pickle

    from unlearnkit.data import safe_load_pickle

    obj = {"data": np.arange(12, dtype=np.uint8).reshape(2, 6), "labels": [1, 2], "name": b"raw \xff bytes"}
    p = tmp_path / "b"
    p.write_bytes(pickle.dumps(obj, protocol=2))
    assert b"_codecs" in p.read_bytes()
    back = safe_load_pickle(p)
    assert back["name"] == obj["name"] and np.array_equal(back["data"], obj["data"])

    class Evil:
        def __reduce__(self):
            import _codecs

            return (_codecs.encode, ("x", "rot13"))

    buf = io.BytesIO()
    pickle.Pickler(buf, protocol=2).dump(Evil())
    p.write_bytes(buf.getvalue())
    with pytest.raises(DataError, match="only latin-1"):
        safe_load_pickle(p)


# ---------------------------------------------------------------------------------------------------------------
# smaller items: file modes, checkpoint messages, partial results, error rows, audit caveat, plot colours
# ---------------------------------------------------------------------------------------------------------------


def test_atomic_files_get_the_umask_mode(tmp_path):
    from unlearnkit.checkpoints import atomic_write_text

    old = os.umask(0o022)
    try:
        atomic_write_text(tmp_path / "r.json", "{}")
        assert (tmp_path / "r.json").stat().st_mode & 0o777 == 0o644
        os.umask(0o077)
        atomic_write_text(tmp_path / "s.json", "{}")
        assert (tmp_path / "s.json").stat().st_mode & 0o777 == 0o600
    finally:
        os.umask(old)


def test_checkpoint_mismatch_names_the_tensor_and_both_shapes(tmp_path):
    from unlearnkit.checkpoints import build_from_checkpoint, save_checkpoint
    from unlearnkit.errors import CheckpointError
    from unlearnkit.models import build_model

    model = build_model("mlp", (6,), 3)
    spec = {"name": "mlp", "input_shape": [6], "num_classes": 4, "kwargs": {}}
    save_checkpoint(tmp_path / "m.safetensors", model, {"model": spec})
    with pytest.raises(CheckpointError, match=r"has shape \(3, \d+\) in the checkpoint but \(4, \d+\) in the model"):
        build_from_checkpoint(tmp_path / "m.safetensors")


def test_audit_report_repeats_the_small_k_caveat(tmp_path):
    from unlearnkit.audit import _render

    rec = {"method": "retrain", "status": "ok", "models": 4,
           "metrics": {k: 0.5 for k in ("ulira_accuracy", "ulira_auc", "ulira_tpr_at_1pct_fpr",
                                        "ulira_tpr_at_0.1pct_fpr", "forgetting_quality", "challenge_score")},
           "per_example": {"epsilon": [0.1, 0.2]}}
    text = _render({"records": [rec]}, {}, tmp_path).read_text()
    assert "K = 4 shadow models" in text and "K ≥ 32" in text
    rec["models"] = 32
    assert "Caveat" not in _render({"records": [rec]}, {}, tmp_path).read_text()


def test_plot_colours_are_unique_per_series():
    from unlearnkit.evaluation.report import series_colours

    for n in (3, 10, 12, 20, 25):
        assert len(set(series_colours(n))) == n


def test_run_writes_partial_results_and_a_diverged_method_is_an_error_row(tmp_path, monkeypatch):
    import unlearnkit.cli as cli_mod
    from unlearnkit.cli import main

    f = _numeric_csv(tmp_path / "d.csv", n=90)
    out = tmp_path / "run"
    snapshots = []
    real = cli_mod._write_results

    def spy(o, results):
        snapshots.append(len(results["records"]))
        real(o, results)

    monkeypatch.setattr(cli_mod, "_write_results", spy)
    code = main(["run", "--dataset", f"csv:{f}", "--model", "mlp", "--epochs", "2", "--forget", "class:1",
                 "--methods", "gradient_ascent,finetune", "--set", "gradient_ascent.lr=1e30",
                 "--set", "gradient_ascent.epochs=5", "--cache-dir", str(tmp_path / "c"), "--out", str(out), "-q"])
    assert code == 0
    assert snapshots[:4] == [1, 2, 3, 4]  # one results.json per finished record, then the final one
    res = json.loads((out / "results.json").read_text())
    ga = next(r for r in res["records"] if r["method"] == "gradient_ascent")
    assert ga["status"] == "error" and "non-finite" in ga["reason"] and not ga["metrics"]
    assert next(r for r in res["records"] if r["method"] == "finetune")["status"] == "ok"
    assert res["run_info"]["threads_source"] in ("default", "OMP_NUM_THREADS")


@pytest.mark.parametrize("device,match", [("nosuch", "unknown device"), ("cuda:7", "not available")])
def test_api_device_errors_are_typed(device, match, no_method_runs):
    from unlearnkit.errors import ConfigError

    if device.startswith("cuda") and torch.cuda.is_available() and torch.cuda.device_count() > 7:
        pytest.skip("this machine has 8 CUDA devices")
    x, y = _xy(10, 17)
    with pytest.raises(ConfigError, match=match):
        unlearn(_mlp(), forget=DataLoader(TensorDataset(x, y)), config=GradientAscentConfig(), device=device)


def test_non_tty_logs_get_a_line_at_least_every_period(monkeypatch, capsys):
    import time

    from unlearnkit.cli import _Heartbeat

    monkeypatch.setattr(_Heartbeat, "EVERY", 1.0)
    monkeypatch.setattr(_Heartbeat, "active", True)
    log = _Heartbeat.wrap(lambda m: print(m))
    log("training original model")
    time.sleep(3.5)
    monkeypatch.setattr(_Heartbeat, "active", False)
    out = capsys.readouterr().out
    assert out.startswith("training original model") and "... still working on the step above" in out


def test_thread_count_is_part_of_the_model_cache_key(tmp_path, monkeypatch):
    from unlearnkit.pipeline import Experiment

    f = _numeric_csv(tmp_path / "d.csv", n=60)
    keys = []
    monkeypatch.setattr("unlearnkit.checkpoints.ModelCache.get", lambda self, key: keys.append(key))
    exp = Experiment(f"csv:{f}", "mlp", cache_dir=tmp_path / "c", progress=False, log=lambda m: None)
    monkeypatch.setattr("unlearnkit.pipeline.train", _stop)
    old = torch.get_num_threads()
    try:
        for n in (1, 2, 1):
            torch.set_num_threads(n)
            with pytest.raises(_Stop):
                exp.original(0)
    finally:
        torch.set_num_threads(old)
    assert keys[0] == keys[2] != keys[1]


class _Stop(Exception):
    pass


def _stop(*a, **k):
    raise _Stop
