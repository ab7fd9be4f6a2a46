"""User text data: ``textcsv:PATH`` (a CSV file with a header row) and ``jsonl:PATH`` (one JSON object per line).

Each row has a text column (default ``text``) and a label column (default ``label``): one class name per row, or,
for a multi-label file, several class names separated by ``|`` in a CSV cell or given as a JSON list. Rows are split
70/15/15 into train/val/test with the same seeded hashed split as ``csv:PATH``; the class list is the sorted set of
the training split's labels, and a val/test label outside it is an error (a class the model would never be trained
on).

Tokenisation (:mod:`unlearnkit.data.tokenizer`): by default a Hugging Face ``tokenizers`` BPE vocabulary of at most
8,000 tokens **trained on the training split only** (lower-cased, split on whitespace and punctuation; pad id 0,
unknown id 1), so a word that occurs only in val/test rows is never a token of its own: it is spelled with
sub-word pieces learnt from training, and a character never seen in training is ``[UNK]``. Options:
``tokenizer="wordpiece"`` (WordPiece, ``##`` pieces; warns: its trainer is not reproducible across processes),
``tokenizer="word"`` (one id per training word, the ``textsynth`` default), ``tokenizer_vocab_size=N``, or
``tokenizer_file=PATH`` (a ``tokenizer.json``, used as it is, with its own pad id). Ids are cut or padded with the
pad id to ``max_len`` (64). The tokenizer is retrained on every load from the file's training rows (BPE training
is deterministic: the same file, seed and settings give the same ids); its settings (and a tokenizer file's
SHA-256) are recorded in the manifest and are part of the dataset's content hash, so changing them never reuses a
cached model. The fitted tokenizer is ``DatasetSplits.tokenizer`` (``.save(path)`` writes its tokenizer.json).
"""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import DataError
from .tokenizer import TokenizerSpec, fit_tokenizer, word_tokens

__all__ = ["encode_text_splits", "load_text_rows", "tokenize"]

tokenize = word_tokens  # the word-level tokens (kept under its older name)

def _read(path: str) -> str:
    p = Path(path).expanduser()
    if not p.is_file():
        raise DataError(f"text file {path!r} does not exist (or is not a file)")
    raw = p.read_bytes()
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        line = raw[: e.start].count(b"\n") + 1
        raise DataError(f"{path}: not valid UTF-8 (byte {e.start}, line {line}); re-save the file as UTF-8") from None
    if not text.strip():
        raise DataError(f"{path} is empty: it needs a header (textcsv) or JSON lines (jsonl) with a text and a "
                        "label per row")
    return text


def load_text_rows(kind: str, path: str, text_column: str | None, label_column: str | None
                   ) -> tuple[list[str], list[list[str]], bool]:
    """Texts, label lists and whether any row has several labels."""
    tcol, lcol = text_column or "text", label_column or "label"
    body = _read(path)
    rows: list[tuple[int, Any, Any]] = []
    if kind == "textcsv":
        reader = csv.DictReader(io.StringIO(body))
        cols = reader.fieldnames or []
        for c in (tcol, lcol):
            if c not in cols:
                raise DataError(f"{path}: no column {c!r} (columns: {', '.join(cols)}); pass "
                                f"{'text_column' if c == tcol else 'label_column'}=NAME")
        rows = [(i + 2, r[tcol], r[lcol]) for i, r in enumerate(reader)]
    else:
        for i, line in enumerate(body.splitlines(), start=1):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as e:
                raise DataError(f"{path}: line {i} is not JSON ({e.msg})") from None
            if not isinstance(obj, dict):
                raise DataError(f"{path}: line {i} is not a JSON object")
            for c in (tcol, lcol):
                if c not in obj:
                    raise DataError(f"{path}: line {i} has no key {c!r} (keys: {', '.join(map(str, obj))}); pass "
                                    f"{'text_column' if c == tcol else 'label_column'}=NAME")
            rows.append((i, obj[tcol], obj[lcol]))
    if not rows:
        raise DataError(f"{path} has a header but no data rows")
    texts, labels = [], []
    for line, t, lab in rows:
        if not isinstance(t, str) or not t.strip():
            raise DataError(f"{path}: line {line} has an empty text; drop the row or fill it in")
        labs = ([str(v) for v in lab] if isinstance(lab, list) else
                [s.strip() for s in str(lab).split("|")] if kind == "textcsv" else [str(lab)])
        labs = [s for s in labs if s.strip()] if labs else []
        if not labs or lab is None:
            raise DataError(f"{path}: line {line} has an empty label")
        texts.append(t)
        labels.append(labs)
    return texts, labels, any(len(v) > 1 for v in labels)


def encode_text_splits(texts: list[str], labels: list[list[str]], parts: list[np.ndarray], multilabel: bool,
                       max_len: int, path: str, tokenizer: TokenizerSpec | None = None) -> dict:
    """Tokenise (a tokenizer fitted on ``parts[0]``, the training split, or read from its file) and encode labels
    (classes from training). ``"tokenizer"`` in the result is the fitted tokenizer."""
    tok = fit_tokenizer([texts[i] for i in parts[0]], tokenizer or TokenizerSpec())
    classes = sorted({c for i in parts[0] for c in labels[i]})
    index = {c: k for k, c in enumerate(classes)}
    out: dict = {"vocab": tok.vocab, "classes": classes, "tokenizer": tok}
    for name, p in zip(("train", "val", "test"), parts):
        unknown = sorted({c for i in p for c in labels[i]} - set(index))
        if unknown:
            raise DataError(f"{path}: the {name} split has labels the training split lacks ({unknown[:5]}): add "
                            "training rows of those classes or drop them")
        if multilabel:
            y = np.zeros((len(p), len(classes)), dtype=np.int64)
            for r, i in enumerate(p):
                y[r, [index[c] for c in labels[i]]] = 1
        else:
            y = np.array([index[labels[i][0]] for i in p], dtype=np.int64)
        out[name] = (tok.encode([texts[i] for i in p], max_len), y)
    return out
