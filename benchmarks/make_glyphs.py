"""Write a ``folder:`` dataset the presets have never seen: 28x28 grayscale glyphs of the digits 0-9.

Each image is one digit drawn with PIL's built-in bitmap font, scaled up, rotated (+-20 degrees), shifted, stroke-
thickened at random and overlaid with Gaussian noise, so classes overlap a little. Usage::

    python benchmarks/make_glyphs.py OUT_DIR [--per-class 300] [--seed 0]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter, ImageFont


def glyph(digit: int, rng: np.random.Generator) -> Image.Image:
    small = Image.new("L", (8, 12), 0)
    ImageDraw.Draw(small).text((1, 0), str(digit), fill=255, font=ImageFont.load_default(size=11))
    big = small.resize((16, 24), Image.BILINEAR)
    if rng.random() < 0.5:
        big = big.filter(ImageFilter.MaxFilter(3))  # a thicker stroke
    canvas = Image.new("L", (28, 28), 0)
    canvas.paste(big, (6 + int(rng.integers(-3, 4)), 2 + int(rng.integers(-2, 3))))
    canvas = canvas.rotate(float(rng.uniform(-20, 20)), resample=Image.BILINEAR)
    arr = np.asarray(canvas, dtype=np.float32) + rng.normal(0, 40, (28, 28))
    return Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8), mode="L")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out")
    ap.add_argument("--per-class", type=int, default=300)
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args()
    rng = np.random.default_rng(a.seed)
    for d in range(10):
        folder = Path(a.out) / str(d)
        folder.mkdir(parents=True, exist_ok=True)
        for i in range(a.per_class):
            glyph(d, rng).save(folder / f"{i:04d}.png")
    print(f"wrote {10 * a.per_class} images to {a.out}")


if __name__ == "__main__":
    main()
