"""Write a ``csv:`` dataset the presets have never seen: a 10-class tabular set from scikit-learn's generator.

``sklearn.datasets.make_classification`` (seeded): 3,000 rows, 24 features of which 12 informative and 4 redundant,
10 classes with 2 clusters each, 2% flipped labels and ``class_sep=1.2``, so a small MLP fits its training set but not
its test set perfectly. The file has a header (``f0..f23,label``) and is what README's "Defaults from the data"
tables call the tabular set. Usage::

    python benchmarks/make_tabular.py OUT.csv [--rows 3000] [--seed 0]
"""

from __future__ import annotations

import argparse
import csv
from pathlib import Path

from sklearn.datasets import make_classification


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out", type=Path)
    ap.add_argument("--rows", type=int, default=3000)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    x, y = make_classification(n_samples=args.rows, n_features=24, n_informative=12, n_redundant=4, n_classes=10,
                               n_clusters_per_class=2, flip_y=0.02, class_sep=1.2, random_state=args.seed)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    tmp = args.out.with_suffix(args.out.suffix + ".tmp")
    with tmp.open("w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow([f"f{i}" for i in range(x.shape[1])] + ["label"])
        for row, label in zip(x, y):
            w.writerow([f"{v:.6g}" for v in row] + [int(label)])
    tmp.replace(args.out)
    print(f"wrote {args.rows} rows, {x.shape[1]} features, 10 classes to {args.out}")


if __name__ == "__main__":
    main()
