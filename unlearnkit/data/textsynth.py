"""``textsynth``: a procedural text-classification dataset (the text counterpart of ``shapes``), and its multi-label
variant ``textsynth-multilabel``.

Each example is a "sentence" of 8–30 words over a synthetic vocabulary, generated from one ``numpy`` generator
seeded with ``seed`` (so texts, labels and splits are a pure function of ``(seed, sizes)``):

* vocabularies: ``shared`` filler words (used by every class), ``CLASS_WORDS`` topic words per class, and
  ``pair`` words that two neighbouring classes share (class c and c+1 mod C), so that lookalike classes occur;
* templates: a sentence is a sequence of slots, each slot filled with a filler word (most slots), a topic word of
  the example's class, a pair word of the class, or a *decoy* topic word of another class;
* difficulty: the number of topic words per label is geometric (none with probability ``TOPIC_P`` = 0.08, at most
  4), and 0–2 pair words (shared with a neighbouring class) and, in 35% of texts, a decoy topic word of another
  class are added: texts with no or one ambiguous cue are right only when memorised, which is what makes a random
  forget set measurable (a retrained model is less accurate on it than the original);
* multi-label (``textsynth-multilabel``): 1–3 labels per example; each label contributes topic words; the target
  is the multi-hot vector (accuracy as in the ∇τ NLP notebook: argmax of logits == argmax of the target, i.e. the
  lowest-index positive label).

Measured with ``benchmarks/textsynth_difficulty.py`` (``textsynth``: 2000/400/400 texts, data seed 0; model
``transformer`` dim 32, 2 blocks; Adam lr 2e-3, cosine, 25 epochs, batch 64; training seed 0; random 10% forget
set): train accuracy 99.9%, test accuracy 84.8%, forget-set accuracy 99.5% (original) vs 78.0% (retrained on the
other 90%): a gap of 21.5 points. One seed only; ``TOPIC_P`` and ``N_TOPIC`` were chosen on this seed (first with
a bag-of-words logistic regression as a quick proxy, then with the transformer: ``TOPIC_P`` 0.15 gave 71.5% test
accuracy and a 24.5-point gap).

Tokenisation: by default a word-level vocabulary **built from the training split only** (pad id 0, unknown id 1,
then the training words by decreasing frequency, ties by spelling); val/test words unseen in training map to the
unknown id. ``tokenizer=`` (``--tokenizer bpe|wordpiece``) trains a sub-word vocabulary on the training texts
instead (:mod:`unlearnkit.data.tokenizer`).
Token ids are padded (or cut) to ``max_len`` with the pad id. The ids are stored as float tensors like every other
dataset's inputs (exact for ids < 2**24); the ``transformer`` model reads them as integers.
"""

from __future__ import annotations

import numpy as np

from ..errors import DataError
from .tokenizer import TextTokenizer, TokenizerSpec, fit_tokenizer

__all__ = ["PAD_ID", "UNK_ID", "build_vocab", "encode", "generate_textsynth", "load_textsynth"]

PAD_ID = 0
UNK_ID = 1
NUM_CLASSES = 8
N_SHARED = 300
N_TOPIC = 10
N_PAIR = 8
TOPIC_P = 0.08  # P(no topic word); the number of topic words per label is geometric
MAX_LEN = 32


def _words(prefix: str, n: int) -> list[str]:
    return [f"{prefix}{i}" for i in range(n)]


def generate_textsynth(n: int, *, seed: int, multilabel: bool = False,
                       num_classes: int = NUM_CLASSES) -> tuple[list[list[str]], np.ndarray]:
    """``n`` texts (lists of words) and their labels (int64 ``(n,)``, or multi-hot int64 ``(n, C)``)."""
    rng = np.random.default_rng(seed)
    shared = _words("w", N_SHARED)
    topic = [_words(f"t{c}_", N_TOPIC) for c in range(num_classes)]
    pair = [_words(f"p{c}_", N_PAIR) for c in range(num_classes)]  # pair[c] is shared by classes c and c+1
    shared_p = 1.0 / np.arange(1, N_SHARED + 1) ** 0.8  # Zipf-like filler frequencies
    shared_p /= shared_p.sum()
    texts: list[list[str]] = []
    labels = np.zeros((n, num_classes) if multilabel else n, dtype=np.int64)
    for i in range(n):
        if multilabel:
            k = int(rng.choice([1, 2, 3], p=[0.5, 0.35, 0.15]))
            cls = [int(c) for c in rng.choice(num_classes, size=k, replace=False)]
            labels[i, cls] = 1
        else:
            cls = [int(rng.integers(num_classes))]
            labels[i] = cls[0]
        length = int(rng.integers(8, 31))
        slots = list(rng.choice(shared, size=length, p=shared_p))
        for c in cls:
            n_topic = min(int(rng.geometric(TOPIC_P)) - 1, 4)  # 0 with prob TOPIC_P: weak examples
            n_pair = int(rng.integers(0, 3))
            cues = [topic[c][int(j)] for j in rng.integers(0, N_TOPIC, n_topic)]
            cues += [pair[c if rng.random() < 0.5 else (c - 1) % num_classes][int(j)]
                     for j in rng.integers(0, N_PAIR, n_pair)]
            for w in cues:
                slots[int(rng.integers(0, len(slots)))] = w
        if rng.random() < 0.35:  # a decoy topic word of another class
            d = int(rng.integers(num_classes))
            if d not in cls:
                slots[int(rng.integers(0, len(slots)))] = topic[d][int(rng.integers(N_TOPIC))]
        texts.append([str(w) for w in slots])
    return texts, labels


def build_vocab(texts: list[list[str]]) -> list[str]:
    """Word list (index = token id) from ``texts`` only: ``[pad], [unk]``, then words by frequency, then spelling
    (the ``word`` tokenizer of :mod:`unlearnkit.data.tokenizer`)."""
    return list(fit_tokenizer(texts, TokenizerSpec("word")).vocab or [])


def encode(texts: list[list[str]], vocab: list[str], max_len: int) -> np.ndarray:
    """Token ids ``(n, max_len)`` (int64), cut or padded with :data:`PAD_ID`; unknown words get :data:`UNK_ID`."""
    return TextTokenizer("word", vocab=vocab, pad_id=PAD_ID, unk_id=UNK_ID).encode(texts, max_len)


def load_textsynth(n_train: int, n_val: int, n_test: int, *, seed: int = 0, multilabel: bool = False,
                   max_len: int = MAX_LEN, tokenizer: TokenizerSpec | None = None) -> dict:
    """Generate, tokenise (``tokenizer``, default the word level, trained on the training split only) and split
    the dataset; ``"tokenizer"`` in the result is the fitted :class:`~unlearnkit.data.tokenizer.TextTokenizer`."""
    if min(n_train, n_val, n_test) < 1:
        raise DataError(f"textsynth sizes must be positive, got {(n_train, n_val, n_test)}")
    texts, y = generate_textsynth(n_train + n_val + n_test, seed=seed, multilabel=multilabel)
    cuts = {"train": (0, n_train), "val": (n_train, n_train + n_val),
            "test": (n_train + n_val, n_train + n_val + n_test)}
    spec = tokenizer or TokenizerSpec("word")
    # the word level reads the generated word lists as they are; the sub-word kinds read the texts they spell
    as_input = (lambda ts: ts) if spec.kind == "word" else (lambda ts: [" ".join(t) for t in ts])
    tok = fit_tokenizer(as_input(texts[:n_train]), spec)
    out: dict = {"vocab": tok.vocab, "max_len": max_len, "tokenizer": tok}
    for k, (a, b) in cuts.items():
        out[k] = (tok.encode(as_input(texts[a:b]), max_len), y[a:b])
        out[f"{k}_ids"] = np.arange(a, b)
    return out
