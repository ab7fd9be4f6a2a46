"""Tokenizers of the text datasets (issue 18): sub-word vocabularies trained on the training split only (Hugging
Face ``tokenizers`` BPE/WordPiece), the word level, a given tokenizer.json, determinism, the dataset hash, the pad id
with the transformer's pad mask, bad inputs and the command line on a tiny textcsv file."""

from __future__ import annotations

import csv
import hashlib
import json
import os
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

from unlearnkit.data import load_dataset
from unlearnkit.data.tokenizer import TokenizerSpec, fit_tokenizer
from unlearnkit.errors import DataError, UnlearnWarning
from unlearnkit.models import build_model

tokenizers = pytest.importorskip("tokenizers")

TOPICS = {"pos": ["good", "great", "lovely", "fine"], "neg": ["bad", "awful", "poor", "grim"]}
FILLER = ["the", "movie", "was", "really", "quite", "story", "acting", "and", "plot", "ending"]


def _rows(n: int = 120, seed: int = 0) -> list[tuple[str, str]]:
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        c = "pos" if i % 2 else "neg"
        words = list(rng.choice(FILLER, size=int(rng.integers(4, 9))))
        words.insert(int(rng.integers(0, len(words))), TOPICS[c][int(rng.integers(4))])
        out.append((" ".join(words) + ("!" if i % 3 == 0 else "."), c))
    return out


def _write_csv(path: Path, rows: list[tuple[str, str]]) -> Path:
    with path.open("w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["text", "label"])
        w.writerows(rows)
    return path


def _load(path: Path, **kw):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UnlearnWarning)  # wordpiece's reproducibility warning
        return load_dataset(f"textcsv:{path}", **kw)


# ----------------------------------------------------------------------------------------------------------------
# trained on the training split only
# ----------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["bpe", "wordpiece", "word"])
def test_no_test_set_token_leaks_into_the_vocabulary(tmp_path, kind) -> None:
    rows = _rows()
    first = _load(_write_csv(tmp_path / "a.csv", rows), tokenizer=kind)
    held_out = {int(i) for i in first.val.source_ids} | {int(i) for i in first.test.source_ids}
    # The split is a function of (seed, row number) only: the same rows are held out when their text changes.
    # Give the held-out rows a word and a character that no training row has.
    leaky = [(t + " zebracorn lovelyending ж" if i in held_out else t, c) for i, (t, c) in enumerate(rows)]
    s = _load(_write_csv(tmp_path / "b.csv", leaky), tokenizer=kind)
    assert [int(i) for i in s.test.source_ids] == [int(i) for i in first.test.source_ids]
    tok = s.tokenizer
    vocab = tok.tokens()
    assert not {"zebracorn", "lovelyending", "##lovelyending"} & vocab and not any("ж" in t for t in vocab)
    # every token is spelled in the training rows (less the "##" continuation mark of WordPiece)
    train_text = " ".join(rows[int(i)][0].lower() for i in s.train.source_ids)
    assert all(t.removeprefix("##") in train_text for t in vocab - {"[PAD]", "[UNK]"})
    if kind != "wordpiece":  # (WordPiece training is not reproducible: see test_wordpiece_...)
        # the vocabulary is exactly the one trained on the training rows alone (held-out text changed, it did not)
        assert vocab == first.tokenizer.tokens()
        alone = fit_tokenizer([rows[int(i)][0] for i in s.train.source_ids], TokenizerSpec(kind))
        assert vocab == alone.tokens()
    # every held-out row now holds the unknown id ("ж" is unseen; for the word level "zebracorn" too)
    unk = tok.token_to_id("[UNK]")
    assert unk == 1 and bool((s.test.x == unk).any(dim=1).all())
    if kind != "word":  # the sub-word kinds spell the unseen word with pieces learnt from training
        enc = tok.hf.encode("lovelyending")  # unseen word, letters seen in training
        assert len(enc.tokens) > 1 and unk not in enc.ids and set(enc.tokens) <= vocab


def test_the_word_level_of_textsynth_is_unchanged() -> None:
    """textsynth's default (word level) gives the ids and dataset hash it gave before the tokenizer options."""
    from unlearnkit.data.textsynth import build_vocab, generate_textsynth

    s = load_dataset("textsynth:60")
    texts, _ = generate_textsynth(60 + 12 + 12, seed=0)
    vocab = build_vocab(texts[:60])
    assert s.tokenizer.vocab == vocab and s.manifest["vocab_size"] == len(vocab)
    index = {w: i for i, w in enumerate(vocab)}
    assert s.test.x[0, :len(texts[72])].long().tolist() == [index.get(w, 1) for w in texts[72][:32]]
    b = load_dataset("textsynth:60", tokenizer="bpe", tokenizer_vocab_size=300)
    assert b.manifest["tokenizer"] == {"kind": "bpe", "vocab_size": 300, "trained_on": "training split"}
    assert b.hash != s.hash and b.manifest["vocab_size"] <= 300


# ----------------------------------------------------------------------------------------------------------------
# determinism and the content hash
# ----------------------------------------------------------------------------------------------------------------

_IDS_SCRIPT = """
import hashlib, sys, warnings
warnings.simplefilter("ignore")
from unlearnkit.data import load_dataset
s = load_dataset("textcsv:" + sys.argv[1], tokenizer=sys.argv[2])
print(s.hash, hashlib.sha256(s.tokenizer.to_json().encode()).hexdigest()[:16])
"""


def test_bpe_training_is_reproducible_across_processes(tmp_path) -> None:
    """Two fresh processes (each with its own hash-map seeds) train the same BPE tokenizer: same JSON, same ids."""
    p = _write_csv(tmp_path / "a.csv", _rows(300))
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    outs = {subprocess.run([sys.executable, "-c", _IDS_SCRIPT, str(p), "bpe"], capture_output=True, text=True,
                           env=env, timeout=120, check=True).stdout.strip() for _ in range(2)}
    here = _load(p, tokenizer="bpe")
    assert outs == {f"{here.hash} {hashlib.sha256(here.tokenizer.to_json().encode()).hexdigest()[:16]}"}


def test_wordpiece_ids_are_canonical_and_it_warns(tmp_path) -> None:
    p = _write_csv(tmp_path / "a.csv", _rows())
    with pytest.warns(UnlearnWarning, match="not reproducible"):
        s = load_dataset(f"textcsv:{p}", tokenizer="wordpiece")
    vocab = s.tokenizer.hf.get_vocab()
    order = sorted(vocab, key=vocab.get)
    assert order[:2] == ["[PAD]", "[UNK]"] and order[2:] == sorted(order[2:])
    assert any(t.startswith("##") for t in order)


def test_tokenizer_settings_are_part_of_the_dataset_hash(tmp_path) -> None:
    p = _write_csv(tmp_path / "a.csv", _rows())
    a, b = _load(p), _load(p, tokenizer_vocab_size=9000)
    # the tiny file runs out of merges long before either size: same ids, yet another dataset hash
    assert torch.equal(a.train.x, b.train.x) and a.hash != b.hash
    assert a.manifest["tokenizer"]["vocab_size"] == 8000 and b.manifest["tokenizer"]["vocab_size"] == 9000
    assert _load(p).hash == a.hash
    assert len({a.hash, _load(p, tokenizer="word").hash, _load(p, tokenizer="wordpiece").hash}) == 3
    small = _load(p, tokenizer_vocab_size=40)
    assert small.manifest["vocab_size"] <= 40 and not torch.equal(small.train.x, a.train.x)


# ----------------------------------------------------------------------------------------------------------------
# a given tokenizer file, pad id and max_len with the transformer
# ----------------------------------------------------------------------------------------------------------------


def _file_tokenizer(path: Path, pad: str | None = "<pad>") -> Path:
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.normalizer = normalizers.Lowercase()
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    specials = ["<s>", "<unk>", "</s>"] + ([pad] if pad else [])  # the pad id is 3, not 0
    tok.train_from_iterator([t for t, _ in _rows(40, seed=5)] + ["zebracorn"],
                            trainers.BpeTrainer(vocab_size=120, special_tokens=specials, show_progress=False))
    tok.save(str(path))
    return path


def test_a_tokenizer_file_is_used_as_it_is(tmp_path) -> None:
    from tokenizers import Tokenizer

    f = _file_tokenizer(tmp_path / "tokenizer.json")
    p = _write_csv(tmp_path / "a.csv", _rows())
    s = load_dataset(f"textcsv:{p}", tokenizer_file=str(f))
    ref = Tokenizer.from_file(str(f))
    assert s.manifest["pad_id"] == 3 and s.manifest["vocab_size"] == ref.get_vocab_size()
    assert s.manifest["tokenizer"]["kind"] == "file" and len(s.manifest["tokenizer"]["file_sha256"]) == 16
    text = _rows()[int(s.test.source_ids[0])][0]
    ids = ref.encode(text).ids
    row = s.test.x[0].long()
    assert row[:len(ids)].tolist() == ids and bool((row[len(ids):] == 3).all())
    # another file is another dataset (hash), even with the same path
    _file_tokenizer(f, pad="[PAD]")
    assert load_dataset(f"textcsv:{p}", tokenizer_file=str(f)).hash != s.hash
    # a fitted tokenizer saves as a tokenizer.json that loads back to the same ids
    b = _load(p)
    b.tokenizer.save(tmp_path / "saved" / "tokenizer.json")
    again = load_dataset(f"textcsv:{p}", tokenizer_file=str(tmp_path / "saved" / "tokenizer.json"))
    assert torch.equal(again.train.x, b.train.x) and again.manifest["pad_id"] == 0


def test_max_len_cuts_with_the_files_truncation(tmp_path) -> None:
    long = [(" ".join(["the movie was good"] * 40), "pos"), (" ".join(["bad plot"] * 50), "neg")] * 30
    s = _load(_write_csv(tmp_path / "a.csv", long))
    assert s.input_shape == (64,) and bool((s.train.x != 0).all())  # every row filled, none longer


def test_a_nonzero_pad_id_keeps_the_transformers_pad_mask(tmp_path) -> None:
    """The pad id of a tokenizer file (3) reaches the transformer: extra pad tokens never change a prediction."""
    f = _file_tokenizer(tmp_path / "tokenizer.json")
    s = load_dataset(f"textcsv:{_write_csv(tmp_path / 'a.csv', _rows())}", tokenizer_file=str(f))
    torch.manual_seed(0)
    net = build_model("transformer", s.input_shape, s.num_classes, vocab_size=s.manifest["vocab_size"],
                      pad_id=s.manifest["pad_id"]).eval()
    x = s.test.x[:6].long()
    spread = torch.full_like(x, 3)
    for r in range(len(x)):
        toks = x[r][x[r] != 3]
        spread[r, 1:2 * len(toks):2] = toks  # a pad before and between every token
    assert not torch.equal(spread, x)
    with torch.no_grad():
        torch.testing.assert_close(net(x.float()), net(spread.float()), rtol=1e-5, atol=1e-5)
        other = build_model("transformer", s.input_shape, s.num_classes, vocab_size=s.manifest["vocab_size"],
                            pad_id=0).eval()
        other.load_state_dict(net.state_dict())
        assert not torch.allclose(other(x.float()), other(spread.float()), atol=1e-5)  # pad id 0 would not mask 3


# ----------------------------------------------------------------------------------------------------------------
# bad inputs (tests/test_text.py has the textcsv cases of bad files; these add jsonl and the tokenizer options)
# ----------------------------------------------------------------------------------------------------------------

_JSONL_ROWS = "\n".join(json.dumps({"text": f"word{i} more words", "label": "a" if i % 2 else "b"})
                        for i in range(30))


@pytest.mark.parametrize("case,match", [
    ("empty", "is empty"),
    ("missing_key", "has no key 'text'"),
    ("empty_text", "empty text"),
    ("empty_label", "empty label"),
    ("unknown_label", "labels the training split lacks"),
    ("not_utf8", "not valid UTF-8"),
    ("not_json", "is not JSON"),
])
def test_bad_jsonl_files_give_one_line_errors(tmp_path, case, match) -> None:
    p = tmp_path / "bad.jsonl"
    body = {"empty": "\n\n", "missing_key": '{"body": "hello", "label": "a"}\n',
            "empty_text": _JSONL_ROWS + '\n{"text": "", "label": "a"}\n',
            "empty_label": _JSONL_ROWS + '\n{"text": "hello", "label": []}\n',
            "unknown_label": _JSONL_ROWS + "\n" + "\n".join(json.dumps({"text": f"odd {i}", "label": f"c{i}"})
                                                          for i in range(30)),
            "not_json": _JSONL_ROWS + "\n{text: hello}\n"}.get(case)
    if case == "not_utf8":
        p.write_bytes(b'{"text": "hello \xff world", "label": "a"}\n')
    else:
        p.write_text(body, encoding="utf-8")
    with pytest.raises(DataError, match=match) as e:
        load_dataset(f"jsonl:{p}")
    assert "\n" not in str(e.value)


def test_bad_tokenizer_options_give_one_line_errors(tmp_path) -> None:
    p = _write_csv(tmp_path / "a.csv", _rows())
    f = _file_tokenizer(tmp_path / "tok.json")
    nopad = _file_tokenizer(tmp_path / "nopad.json", pad=None)
    broken = tmp_path / "broken.json"
    broken.write_text('{"version": "1.0", "model": 3}', encoding="utf-8")
    cases = [
        (dict(tokenizer="sentencepiece"), "unknown tokenizer 'sentencepiece'"),
        (dict(tokenizer="bpe", tokenizer_file=str(f)), "not both"),
        (dict(tokenizer_file=str(f), tokenizer_vocab_size=100), "has its own vocabulary"),
        (dict(tokenizer_file=str(tmp_path / "missing.json")), "does not exist"),
        (dict(tokenizer_file=str(nopad)), "no pad token"),
        (dict(tokenizer_file=str(broken)), "cannot read it"),
        (dict(tokenizer_vocab_size=2), "vocabulary size must be an int >= 3"),
    ]
    for kw, match in cases:
        with pytest.raises(DataError, match=match) as e:
            load_dataset(f"textcsv:{p}", **kw)
        assert "\n" not in str(e.value), kw
    with pytest.raises(DataError, match="only to text datasets"):
        load_dataset("digits", tokenizer="bpe")


# ----------------------------------------------------------------------------------------------------------------
# command line
# ----------------------------------------------------------------------------------------------------------------


@pytest.mark.slow
def test_cli_run_on_a_textcsv_file_with_the_bpe_tokenizer(tmp_path) -> None:
    p = _write_csv(tmp_path / "reviews.csv", _rows(100))
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    out = tmp_path / "run"
    args = ["run", "--dataset", f"textcsv:{p}", "--tokenizer", "bpe", "--tokenizer-vocab-size", "200",
            "--forget", "random:0.1", "--methods", "finetune", "--seeds", "0", "--epochs", "1",
            "--out", str(out), "--cache-dir", str(tmp_path / "cache"), "--threads", "1", "-q"]
    r = subprocess.run([sys.executable, "-m", "unlearnkit", *args], capture_output=True, text=True, env=env,
                       timeout=600)
    assert r.returncode == 0, r.stderr
    res = json.loads((out / "results.json").read_text())
    text = json.dumps(res)
    assert '"kind": "bpe"' in text and '"vocab_size": 200' in text and "transformer" in text
    assert "finetune" in text and any(r.get("method") == "finetune" and r.get("status") == "ok"
                                      for r in res["records"])
    bad = subprocess.run([sys.executable, "-m", "unlearnkit", *args[:5], "--tokenizer-file", str(tmp_path / "x"),
                          *args[7:]], capture_output=True, text=True, env=env, timeout=120)
    assert bad.returncode == 2 and len(bad.stderr.strip().splitlines()) == 1 and "not both" in bad.stderr
