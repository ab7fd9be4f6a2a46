"""Tokenisers of the text datasets: a sub-word vocabulary trained on the training split only (Hugging Face
``tokenizers``: BPE or WordPiece), the word-level vocabulary of :mod:`unlearnkit.data.textsynth`, or a given
``tokenizer.json`` file.

Kinds (``tokenizer=`` of :func:`~unlearnkit.data.load_dataset`, ``--tokenizer`` on the command line):

* ``bpe`` (default of ``textcsv:``/``jsonl:``): ``tokenizers.models.BPE`` trained with ``BpeTrainer`` on the
  training split's texts, lower-cased (``normalizers.Lowercase``) and pre-split by ``pre_tokenizers.Whitespace``
  (``\\w+|[^\\w\\s]+``); at most ``vocab_size`` tokens (default :data:`DEFAULT_VOCAB_SIZE`; the trainer stops
  earlier when no pair is left to merge). A character never seen in training maps to ``[UNK]``.
* ``wordpiece``: the same with ``models.WordPiece`` and ``WordPieceTrainer`` (``##`` continuation prefix).
* ``word`` (default of ``textsynth``): lower-cased ``\\w+`` words and single punctuation marks, one id per training
  word (by decreasing frequency, ties by spelling), at most ``vocab_size`` ids when given; others map to ``[UNK]``.
* a file (``tokenizer_file=``, ``--tokenizer-file``): a ``tokenizers`` JSON file (``tokenizer.json`` as saved by
  ``Tokenizer.save`` or shipped with a Hugging Face model) used as it is, post-processor included (so a BERT file
  adds ``[CLS]``/``[SEP]``); its pad id is the file's padding setting, else the id of one of :data:`PAD_NAMES`.

The trained kinds reserve id 0 for ``[PAD]`` and id 1 for ``[UNK]``. Every kind cuts a text to ``max_len`` ids
(``tokenizers``' own truncation for the HF kinds, so a post-processor's special tokens are kept) and pads it with
the pad id, which the ``transformer`` model masks out.

Reproducibility, measured with tokenizers 0.23.3 on 3,000 random texts (800 random words; scripts of this
session, not kept): ``bpe`` gave the same tokenizer JSON and the same ids in four separate processes and in five
trainings within one process, at vocabulary sizes 300 and 2,000. ``wordpiece`` did not: at 300 the token *set* was
the same but the trainer's ids were permuted in each of four processes; at 2,000 the token set itself differed in
each of four processes and in each of five trainings within one process (pairs with equal counts at the
vocabulary cut are taken in hash-map order; ``TOKENIZERS_PARALLELISM=false`` and ``RAYON_NUM_THREADS=1`` did not
help, nor did a ``BpeTrainer`` with a ``##`` continuation prefix, which showed the same behaviour). So here the
WordPiece ids are reassigned in a canonical order (special tokens, then by spelling), which made the 300 case
reproducible (the same ids in three processes); a token set that differs at the cut still changes the ids, hence
the dataset hash, so a cached model is never reused for other ids. ``bpe`` is the default for that reason, and a
``wordpiece`` load warns.
"""

from __future__ import annotations

import hashlib
import os
import re
import tempfile
import warnings
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import DataError, UnlearnWarning

__all__ = ["DEFAULT_VOCAB_SIZE", "PAD_NAMES", "TOKENIZER_KINDS", "TextTokenizer", "TokenizerSpec", "fit_tokenizer",
           "word_tokens"]

TOKENIZER_KINDS = ("bpe", "wordpiece", "word")
DEFAULT_VOCAB_SIZE = 8000
PAD, UNK = "[PAD]", "[UNK]"
PAD_NAMES = ("[PAD]", "<pad>", "<PAD>", "<|pad|>", "[pad]")
_WORD = re.compile(r"\w+|[^\w\s]")


def word_tokens(text: str) -> list[str]:
    """The word-level tokens of ``text``: lower-cased ``\\w+`` words and single punctuation marks."""
    return _WORD.findall(text.lower())


def _import_tokenizers() -> Any:
    try:
        import tokenizers
    except ImportError:  # a core dependency, so only a broken install gets here
        raise DataError("the sub-word tokenizers need the 'tokenizers' package (a dependency of unlearnkit): "
                        "pip install tokenizers") from None
    return tokenizers


@dataclass(frozen=True)
class TokenizerSpec:
    """What tokenises a text dataset: ``kind`` (``bpe``, ``wordpiece``, ``word``) and ``vocab_size``, or ``file``
    (a ``tokenizer.json``). :meth:`describe` is recorded in the dataset manifest and its content hash."""

    kind: str = "bpe"
    vocab_size: int | None = None
    file: str | None = None

    def __post_init__(self) -> None:
        if self.file is not None:
            if self.vocab_size is not None:
                raise DataError("a tokenizer file has its own vocabulary: drop the vocabulary size "
                                "(--tokenizer-vocab-size) or the file (--tokenizer-file)")
            if not Path(self.file).expanduser().is_file():
                raise DataError(f"tokenizer file {self.file!r} does not exist (or is not a file); pass the path of "
                                "a tokenizer.json saved by the tokenizers library")
            return
        if self.kind not in TOKENIZER_KINDS:
            raise DataError(f"unknown tokenizer {self.kind!r}; valid: {', '.join(TOKENIZER_KINDS)} (or a "
                            "tokenizer.json file with --tokenizer-file)")
        if self.vocab_size is not None and (isinstance(self.vocab_size, bool) or not isinstance(self.vocab_size, int)
                                            or self.vocab_size < 3):
            raise DataError(f"tokenizer vocabulary size must be an int >= 3 (pad, unknown and one token), got "
                            f"{self.vocab_size!r}")

    @classmethod
    def make(cls, kind: str | None, vocab_size: int | None, file: str | None, *, default: str) -> TokenizerSpec:
        """The spec of ``load_dataset``'s options (``kind`` None: ``default``; a file excludes a kind)."""
        if file is not None and kind is not None:
            raise DataError(f"pass either a tokenizer kind ({kind!r}) or a tokenizer file, not both")
        return cls(kind="file" if file is not None else (kind or default).strip().lower(),
                   vocab_size=vocab_size, file=None if file is None else str(file))

    def describe(self) -> dict[str, Any]:
        """JSON-able settings (a file is named by its path and the SHA-256 of its bytes)."""
        if self.file is not None:
            data = Path(self.file).expanduser().read_bytes()
            return {"kind": "file", "file": str(Path(self.file).expanduser()),
                    "file_sha256": hashlib.sha256(data).hexdigest()[:16]}
        size = self.vocab_size if self.vocab_size is not None or self.kind == "word" else DEFAULT_VOCAB_SIZE
        return {"kind": self.kind, "vocab_size": size, "trained_on": "training split"}


class TextTokenizer:
    """A fitted tokeniser: :meth:`encode` maps texts to padded id arrays; ``pad_id`` and ``vocab_size`` configure
    the model. ``hf`` is the ``tokenizers.Tokenizer`` (None for the word-level kind, whose list is ``vocab``)."""

    def __init__(self, kind: str, *, hf: Any = None, vocab: list[str] | None = None, pad_id: int = 0,
                 unk_id: int | None = 1) -> None:
        self.kind, self.hf, self.vocab = kind, hf, vocab
        self.pad_id, self.unk_id = int(pad_id), unk_id
        self._index = None if vocab is None else {w: i for i, w in enumerate(vocab)}

    @property
    def vocab_size(self) -> int:
        if self.hf is not None:
            return int(self.hf.get_vocab_size(with_added_tokens=True))
        return len(self.vocab or [])

    def token_to_id(self, token: str) -> int | None:
        if self.hf is not None:
            return self.hf.token_to_id(token)
        return (self._index or {}).get(token)

    def tokens(self) -> set[str]:
        """Every token of the vocabulary."""
        return set(self.hf.get_vocab(with_added_tokens=True)) if self.hf is not None else set(self.vocab or [])

    def encode(self, texts: list[str] | list[list[str]], max_len: int) -> np.ndarray:
        """Ids ``(n, max_len)`` (int64), cut to ``max_len`` and padded with :attr:`pad_id`. The word-level kind
        also takes pre-split texts (lists of words)."""
        out = np.full((len(texts), max_len), self.pad_id, dtype=np.int64)
        if self.hf is not None:
            self.hf.enable_truncation(max_len)
            self.hf.no_padding()
            rows = [e.ids for e in self.hf.encode_batch([str(t) for t in texts])]
        else:
            unk = int(self.unk_id if self.unk_id is not None else 1)
            index = self._index or {}
            rows = [[index.get(w, unk) for w in (t if isinstance(t, list) else word_tokens(t))[:max_len]]
                    for t in texts]
        for i, ids in enumerate(rows):
            out[i, :len(ids)] = ids
        return out

    def to_json(self) -> str:
        """The ``tokenizer.json`` text (HF kinds only)."""
        if self.hf is None:
            raise DataError("the word-level tokenizer has no tokenizer.json form; its vocabulary is .vocab")
        return str(self.hf.to_str())

    def save(self, path: str | Path) -> None:
        """Write :meth:`to_json` atomically to ``path`` (load it back with ``--tokenizer-file``)."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                f.write(self.to_json())
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise


def _trained_hf(kind: str, texts: list[str], vocab_size: int) -> Any:
    tk = _import_tokenizers()
    models, trainers, normalizers, pre_tokenizers = tk.models, tk.trainers, tk.normalizers, tk.pre_tokenizers
    if kind == "bpe":
        tok = tk.Tokenizer(models.BPE(unk_token=UNK))
        trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=[PAD, UNK], show_progress=False)
    else:
        tok = tk.Tokenizer(models.WordPiece(unk_token=UNK, continuing_subword_prefix="##"))
        trainer = trainers.WordPieceTrainer(vocab_size=vocab_size, special_tokens=[PAD, UNK], show_progress=False,
                                            continuing_subword_prefix="##")
    tok.normalizer = normalizers.Lowercase()
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.train_from_iterator(texts, trainer=trainer)
    if kind == "wordpiece":
        # The trainer's ids follow a hash map's order (a different permutation in every process): reassign them
        # in a canonical order, specials first, then by spelling.
        vocab = tok.get_vocab()
        order = [PAD, UNK] + sorted(t for t in vocab if t not in (PAD, UNK))
        canon = tk.Tokenizer(models.WordPiece({t: i for i, t in enumerate(order)}, unk_token=UNK,
                                              continuing_subword_prefix="##"))
        canon.normalizer = normalizers.Lowercase()
        canon.pre_tokenizer = pre_tokenizers.Whitespace()
        tok = canon
    return tok


def _pad_of_file(tok: Any, path: str) -> int:
    padding = tok.padding
    if padding and padding.get("pad_id") is not None and tok.id_to_token(int(padding["pad_id"])) is not None:
        return int(padding["pad_id"])
    for name in PAD_NAMES:
        i = tok.token_to_id(name)
        if i is not None:
            return int(i)
    raise DataError(f"tokenizer file {path}: no pad token (no padding setting and none of {', '.join(PAD_NAMES)}); "
                    "add one, e.g. tokenizer.add_special_tokens(['[PAD]']) before saving")


def fit_tokenizer(train_texts: list[str] | list[list[str]], spec: TokenizerSpec) -> TextTokenizer:
    """The tokenizer of ``spec``, trained on ``train_texts`` only (the training split), or read from its file.

    Raises:
        DataError: an unreadable tokenizer file, or one without a pad token.
    """
    if spec.file is not None:
        tk = _import_tokenizers()
        try:
            tok = tk.Tokenizer.from_file(str(Path(spec.file).expanduser()))
        except Exception as e:  # tokenizers raises a bare Exception on a malformed file
            first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            raise DataError(f"tokenizer file {spec.file}: cannot read it as a tokenizers JSON file ({first})") from None
        unk = None
        model = getattr(tok, "model", None)
        if getattr(model, "unk_token", None):
            unk = tok.token_to_id(model.unk_token)
        return TextTokenizer("file", hf=tok, pad_id=_pad_of_file(tok, spec.file), unk_id=unk)
    if spec.kind == "word":
        split = [t if isinstance(t, list) else word_tokens(t) for t in train_texts]
        counts = Counter(w for t in split for w in t)
        words = sorted(counts, key=lambda w: (-counts[w], w))
        if spec.vocab_size is not None:
            words = words[: spec.vocab_size - 2]
        return TextTokenizer("word", vocab=[PAD, UNK, *words])
    if spec.kind == "wordpiece":
        warnings.warn("the WordPiece trainer of the tokenizers library is not reproducible (across processes, and "
                      "within one when pairs tie at the vocabulary cut; see unlearnkit.data.tokenizer); use "
                      "tokenizer='bpe' (the default) for reproducible ids", UnlearnWarning, stacklevel=3)
    texts = [" ".join(t) if isinstance(t, list) else t for t in train_texts]
    size = spec.vocab_size if spec.vocab_size is not None else DEFAULT_VOCAB_SIZE
    return TextTokenizer(spec.kind, hf=_trained_hf(spec.kind, texts, size), pad_id=0, unk_id=1)
