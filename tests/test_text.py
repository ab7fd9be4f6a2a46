"""Text as a first-class domain (issue 18): tasks, the textsynth dataset and tokenizer, the transformer model, and
the shared method contract run on a tiny text model (classification and multi-label)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader

import unlearnkit
from unlearnkit.data import load_dataset
from unlearnkit.data.base import LabeledDataset
from unlearnkit.data.textsynth import PAD_ID, UNK_ID, build_vocab, encode, generate_textsynth, load_textsynth
from unlearnkit.errors import ConfigError, DataError, UnlearnError, UnsupportedTaskError
from unlearnkit.methods.base import get_method
from unlearnkit.models import build_model
from unlearnkit.tasks import ClassificationTask, LossFnTask, MultiLabelTask, as_task, get_task
from unlearnkit.testing import check_method_contract, text_toy_problem

# ----------------------------------------------------------------------------------------------------------------
# tasks
# ----------------------------------------------------------------------------------------------------------------


def test_classification_task_is_cross_entropy_bit_for_bit() -> None:
    g = torch.Generator().manual_seed(0)
    logits, y = torch.randn(7, 5, generator=g), torch.randint(0, 5, (7,), generator=g)
    t = get_task("classification")
    assert torch.equal(t.output_loss(logits, y), F.cross_entropy(logits, y))
    assert torch.equal(t.output_loss(logits, y, reduction="none"), F.cross_entropy(logits, y, reduction="none"))
    assert torch.equal(t.output_correct(logits, y), logits.argmax(1) == y)


def test_multilabel_task_loss_is_bce_summed_over_labels_and_accuracy_is_argmax_vs_argmax() -> None:
    g = torch.Generator().manual_seed(1)
    logits = torch.randn(6, 4, generator=g, dtype=torch.float64)
    y = (torch.rand(6, 4, generator=g) < 0.4).long()
    y[0] = 0
    y[0, 2] = 1
    t = MultiLabelTask()
    p = 1 / (1 + np.exp(-logits.numpy()))
    manual = -(y.numpy() * np.log(p) + (1 - y.numpy()) * np.log(1 - p)).sum(axis=1)
    np.testing.assert_allclose(t.output_loss(logits, y, reduction="none").numpy(), manual, rtol=1e-12)
    np.testing.assert_allclose(float(t.output_loss(logits, y)), manual.mean(), rtol=1e-12)
    np.testing.assert_allclose(MultiLabelTask("mean").output_loss(logits, y, reduction="none").numpy(),
                               manual / 4, rtol=1e-12)
    np.testing.assert_allclose(t.example_losses(logits.numpy(), y.numpy()), manual, rtol=1e-12)
    # the membership signal is the sum over labels even when training uses the mean
    np.testing.assert_allclose(MultiLabelTask("mean").example_losses(logits.numpy(), y.numpy()), manual,
                               rtol=1e-12)
    assert t.output_correct(logits, y).tolist() == (logits.argmax(1) == y.argmax(1)).tolist()
    assert t.check_targets(torch.ones(3), 4, "forget") is not None
    assert t.check_targets(torch.full((3, 4), 2), 4, "forget") is not None
    assert t.check_targets(torch.ones(3, 5).long(), 4, "forget") is not None


def test_as_task_and_errors() -> None:
    assert isinstance(as_task(None), ClassificationTask)
    assert isinstance(as_task("multilabel"), MultiLabelTask)
    assert isinstance(as_task(F.cross_entropy), LossFnTask)
    with pytest.raises(ConfigError, match="unknown task"):
        get_task("regression")
    with pytest.raises(ConfigError):
        MultiLabelTask("max")


# ----------------------------------------------------------------------------------------------------------------
# data and tokenizer
# ----------------------------------------------------------------------------------------------------------------


def test_vocabulary_comes_from_the_training_split_only() -> None:
    d = load_textsynth(60, 40, 40, seed=3)
    texts, _ = generate_textsynth(140, seed=3)
    train_words = {w for t in texts[:60] for w in t}
    assert set(d["vocab"][2:]) == train_words
    held_out_only = {w for t in texts[60:] for w in t} - train_words
    assert held_out_only, "the test needs words that occur only in val/test"
    # those words map to the unknown id, never to an id of their own
    enc = encode(texts[60:], d["vocab"], d["max_len"])
    assert np.array_equal(enc, np.concatenate([d["val"][0], d["test"][0]]))
    ids_of = {w: i for i, w in enumerate(d["vocab"])}
    assert all(w not in ids_of for w in held_out_only)
    assert (enc == UNK_ID).any()


def test_encode_pads_and_cuts() -> None:
    vocab = build_vocab([["a", "b", "a"]])
    assert vocab == ["[PAD]", "[UNK]", "a", "b"]
    out = encode([["a", "z"], ["b"] * 5], vocab, 3)
    assert out.tolist() == [[2, UNK_ID, PAD_ID], [3, 3, 3]]


def test_textsynth_loader_and_manifest() -> None:
    s = load_dataset("textsynth:200", seed=0)
    assert s.input_shape == (32,) and s.num_classes == 8 and len(s.train) == 200
    assert s.manifest["task"] == "classification" and s.manifest["vocab_size"] > 50
    assert load_dataset("textsynth:200", seed=0).hash == s.hash
    m = load_dataset("textsynth-multilabel:200", seed=0)
    assert m.manifest["task"] == "multilabel" and m.train.y.shape == (200, 8)
    assert set(m.train.y.unique().tolist()) <= {0, 1} and (m.train.y.sum(1) >= 1).all()
    with pytest.raises(DataError, match="positive number"):
        load_dataset("textsynth:0")


# ----------------------------------------------------------------------------------------------------------------
# model
# ----------------------------------------------------------------------------------------------------------------


def test_padding_never_changes_a_prediction() -> None:
    torch.manual_seed(0)
    m = build_model("transformer", (24,), 5, vocab_size=50, dim=16, heads=2, layers=2).eval()
    g = torch.Generator().manual_seed(0)
    x = torch.randint(2, 50, (6, 24), generator=g)
    lengths = [24, 10, 3, 1, 17, 8]
    for i, n in enumerate(lengths):
        x[i, n:] = PAD_ID
    ref = m(x)
    more = torch.cat([x, torch.zeros(6, 9, dtype=torch.long)], dim=1)  # extra trailing pads
    torch.testing.assert_close(m(more), ref, rtol=0, atol=1e-5)
    inner = x.clone()  # pads moved between the tokens of row 1
    row = x[1, :10]
    inner[1] = PAD_ID
    inner[1, [0, 2, 3, 7, 8, 11, 12, 15, 16, 20]] = row
    torch.testing.assert_close(m(inner)[1], ref[1], rtol=0, atol=1e-5)
    # the batch does not matter either (each row alone gives its own logits)
    torch.testing.assert_close(m(x[2:3, :3]), ref[2:3], rtol=0, atol=1e-5)
    # float-stored ids (how datasets store inputs) are read as the same ids
    assert torch.equal(m(x.float()), ref)
    # an all-pad row gives finite logits
    assert torch.isfinite(m(torch.zeros(2, 24, dtype=torch.long))).all()


def test_transformer_builder_errors() -> None:
    with pytest.raises(ConfigError, match="vocab_size"):
        build_model("transformer", (16,), 3)
    with pytest.raises(ConfigError, match="token ids"):
        build_model("transformer", (3, 8, 8), 3, vocab_size=10)


# ----------------------------------------------------------------------------------------------------------------
# unlearn() with tasks
# ----------------------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def text_cls():
    return text_toy_problem(seed=0, task="classification")


@pytest.fixture(scope="module")
def text_multi():
    return text_toy_problem(seed=0, task="multilabel")


def test_toy_text_models_learn(text_cls, text_multi) -> None:
    for prob in (text_cls, text_multi):
        with torch.no_grad():
            ok = prob.task.correct(prob.model, prob.train.x, prob.train.y).float().mean()
        assert ok > 0.5, f"{prob.task.name}: train accuracy {ok:.2f}"


def test_unlearn_refuses_a_method_on_a_task_it_does_not_serve(text_multi) -> None:
    assert "multilabel" not in get_method("salun").tasks
    ld = text_multi.loaders(forget_idx=torch.arange(0, 300, 10))
    with pytest.raises(UnsupportedTaskError, match="'salun' does not serve the 'multilabel' task.*class.id"):
        unlearnkit.unlearn(text_multi.model, forget=ld["forget"], retain=ld["retain"], val=ld["val"],
                           config=unlearnkit.SalunConfig(), task="multilabel")
    with pytest.raises(ConfigError, match="either task= or loss_fn="):
        unlearnkit.unlearn(text_multi.model, forget=ld["forget"], retain=ld["retain"],
                           config=unlearnkit.FinetuneConfig(), task="multilabel", loss_fn=F.cross_entropy)


def test_multilabel_targets_are_checked(text_multi) -> None:
    bad = LabeledDataset(text_multi.train.x[:20], torch.full((20, 8), 3))
    with pytest.raises(DataError, match="0/1 multi-hot"):
        unlearnkit.unlearn(text_multi.model, forget=DataLoader(bad, batch_size=8),
                           retain=DataLoader(text_multi.train.subset(torch.arange(20, 300)), batch_size=8),
                           config=unlearnkit.FinetuneConfig(), task="multilabel")


def test_old_loss_fn_interface_gives_the_same_weights_as_the_task(text_cls) -> None:
    ld = text_cls.loaders(forget_idx=torch.arange(0, 300, 10))
    cfg = unlearnkit.GradientAscentConfig(seed=0)
    a = unlearnkit.unlearn(text_cls.model, forget=ld["forget"], retain=ld["retain"], config=cfg)
    b = unlearnkit.unlearn(text_cls.model, forget=ld["forget"], retain=ld["retain"], config=cfg,
                           loss_fn=lambda o, y, reduction="mean": F.cross_entropy(o, y, reduction=reduction))
    assert all(torch.equal(a.model.state_dict()[k], v) for k, v in b.model.state_dict().items())


# ----------------------------------------------------------------------------------------------------------------
# the shared contract on text
# ----------------------------------------------------------------------------------------------------------------

METHODS = unlearnkit.list_methods()
# Cases where the contract's "different seeds give different weights" check fails for reasons that are not text's:
# svd's seeded row sampling never triggers on so few token rows. (gradient_ascent's SFR-on recipe was seed-independent
# on one-batch toy forget sets; the contract now checks a method flagged stochastic with batches of 8 when its own
# batches hold the whole set.) Strict: when this is fixed, the xfail turns into a failure and this set must shrink.
TOY_SIZE_DETERMINISTIC = {("svd", "classification")}


@pytest.mark.parametrize("task", ["classification", "multilabel"])
@pytest.mark.parametrize("name", METHODS)
def test_contract_on_text(name, task, text_cls, text_multi, request) -> None:
    """Every registered method either passes the contract on a tiny text model or is refused with its capability
    message (the task it does not serve, or the model it cannot take)."""
    if (name, task) in TOY_SIZE_DETERMINISTIC:
        request.applymarker(pytest.mark.xfail(strict=True, raises=AssertionError,
                                              reason="seeds do not matter at the toy size (see above)"))
    spec = get_method(name)
    prob = text_cls if task == "classification" else text_multi
    expect_refusal = task not in spec.tasks or name == "unsir"
    try:
        out = check_method_contract(name, prob)
    except UnlearnError as e:
        assert expect_refusal, f"{name} refused on text {task}: {e}"
        msg = str(e)
        assert "\n" not in msg and name in msg or "discrete token ids" in msg
        if task not in spec.tasks:
            assert isinstance(e, UnsupportedTaskError)
        return
    assert not expect_refusal, f"{name} should be refused on text {task}"
    if spec.raises_forget_loss:
        assert out["forget_loss_after"] >= out["forget_loss_before"] - 1e-6


# ----------------------------------------------------------------------------------------------------------------
# command line
# ----------------------------------------------------------------------------------------------------------------


@pytest.mark.slow
def test_cli_run_on_textsynth_end_to_end(tmp_path) -> None:
    import json
    import os
    import subprocess
    import sys

    env = {**os.environ, "OMP_NUM_THREADS": "1"}

    def cli(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "unlearnkit", *args], capture_output=True, text=True, env=env,
                              timeout=600)

    out = tmp_path / "run"
    p = cli("run", "--dataset", "textsynth:120", "--forget", "random:0.15", "--methods", "gradtau,finetune,unsir",
            "--seeds", "0", "--epochs", "2", "--out", str(out), "--cache-dir", str(tmp_path / "cache"), "-q")
    assert p.returncode == 0, p.stderr
    res = json.loads((out / "results.json").read_text())
    text = json.dumps(res)
    assert "transformer" in text and "gradtau" in text and "finetune" in text
    # textsynth-multilabel through the CLI: tests/test_text_eval.py


# ----------------------------------------------------------------------------------------------------------------
# user text files
# ----------------------------------------------------------------------------------------------------------------


def _rows(n: int = 40) -> list[tuple[str, str]]:
    words = {"pos": ["good", "great", "fine"], "neg": ["bad", "awful", "poor"]}
    return [(f"this is {words[c][i % 3]} stuff number {i}, really", c)
            for i, c in ((i, "pos" if i % 2 else "neg") for i in range(n))]


def test_textcsv_and_jsonl_load(tmp_path) -> None:
    import csv
    import json

    rows = _rows()
    p = tmp_path / "a.csv"
    with p.open("w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["id", "body", "label"])
        w.writerows([(i, t, c) for i, (t, c) in enumerate(rows)])
    s = load_dataset(f"textcsv:{p}", text_column="body", tokenizer="word")  # BPE: tests/test_text_tokenizers.py
    assert s.class_names == ["neg", "pos"] and s.manifest["task"] == "classification"
    assert s.input_shape == (64,) and len(s.train) + len(s.val) + len(s.test) == 40
    # vocabulary from the training split only: the row numbers of val/test rows are unknown tokens
    vocab_size = s.manifest["vocab_size"]
    assert vocab_size < 2 + 9 + 40
    j = tmp_path / "a.jsonl"
    j.write_text("\n".join(json.dumps({"text": t, "label": [c, "x"] if i % 4 == 0 else [c]})
                           for i, (t, c) in enumerate(rows)), encoding="utf-8")
    m = load_dataset(f"jsonl:{j}", seed=1)
    assert m.manifest["task"] == "multilabel" and m.train.y.shape[1] == len(m.class_names) == 3


@pytest.mark.parametrize("case,match", [
    ("empty", "is empty"),
    ("missing_column", "no column 'text'"),
    ("empty_text", "empty text"),
    ("unknown_label", "labels the training split lacks"),
    ("not_utf8", "not valid UTF-8"),
])
def test_bad_text_files_give_one_line_errors(tmp_path, case, match) -> None:
    p = tmp_path / "bad.csv"
    rows = "\n".join(f"word{i} more words,{'a' if i % 2 else 'b'}" for i in range(30))
    body = {"empty": "", "missing_column": "body,label\nhello,a\n",
            "empty_text": "text,label\n" + rows + "\n ,a\n",
            "unknown_label": "text,label\n" + rows + "\n" + "\n".join(f"odd {i},c{i}" for i in range(30)) + "\n",
            }.get(case)
    if case == "not_utf8":
        p.write_bytes(b"text,label\nhello \xff\xfe world,a\n")
    else:
        p.write_text(body, encoding="utf-8")
    with pytest.raises(DataError, match=match) as e:
        load_dataset(f"textcsv:{p}")
    assert "\n" not in str(e.value)
