"""``shapes``: a procedural 32×32 RGB dataset of 10 shape classes, each with a filled and an outline sub-class.

Classes: circle, triangle, square, hexagon, star, cross, crescent, arrow, semicircle, ell (an L). Sub-classes
(``sub`` labels, ``sub_names``): 0 ``filled``, 1 ``outline``. Each image shows one labelled shape, drawn with
signed-distance functions evaluated on the pixel grid for all images of a class at once (numpy only; about 3 s for
7,000 images on one core):

* the shape: random centre, radius (5.5–12 px), rotation and hue; filled or drawn as a 1.2–2.2 px outline;
* background: a random darker colour with a random linear gradient (the shape's colour is drawn from a brighter
  range, with some overlap so low-contrast shapes occur);
* clutter: 1–4 thin line segments or small blobs in random colours, and 0–1 more drawn over the shape (occlusion);
* a distractor (45% of images): a smaller shape (3–6 px) of another class in a random colour;
* pixel noise: Gaussian, standard deviation drawn per image in [0.02, 0.11].

Difficulty was tuned with ``benchmarks/shapes_difficulty.py`` so that the default CNN with the default training
recipe fits its training set (≈100% train accuracy) at 85–95% test accuracy, and so that a model retrained without
a random 10% forget set is at least 8 points less accurate on that forget set than the original model, the gap by
which random-subset unlearning is measured. Measured with the defaults (``shapes``: 5000/1000/1000 images, data
seed 0; ``cnn``; 30 epochs of SGD, cosine schedule), training seeds 0, 1, 2: train accuracy 100.0% each, test
accuracy 88.0 / 88.5 / 87.9%, forget-set gap 16.2 / 14.0 / 11.8 points (mean 14.0).
The gap comes from hard but correctly labelled examples (small, low-contrast, occluded or noisy shapes, distractors,
lookalike pairs such as circle/hexagon, small outlines that look filled), which a network gets right only by
memorising them; labels are not corrupted (``label_noise=0``, available as a knob). Any label noise is applied to
all splits alike, so forget and test examples stay exchangeable.

Everything is drawn from one ``numpy.random.Generator`` seeded with ``seed``, so the images, labels and splits are a
pure function of ``(seed, sizes)``.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..errors import DataError
from ._split import hashed_split, standardise

__all__ = ["SHAPE_CLASSES", "SUB_NAMES", "ShapesStyle", "load_shapes", "render_shapes", "render_split"]

SHAPE_CLASSES = ["circle", "triangle", "square", "hexagon", "star", "cross", "crescent", "arrow", "semicircle",
                 "ell"]
SUB_NAMES = ["filled", "outline"]
SIZE = 32


@dataclass(frozen=True)
class ShapesStyle:
    """The knobs of the generator (defaults are the tuned values; see the module docstring).

    Attributes:
        scale: Range of the shape's radius in pixels.
        thickness: Range of the outline width in pixels.
        background: Range of each RGB channel of the background colour.
        foreground: Range of each RGB channel of the shape's colour (by default brighter than the background, so
            the shape is an edge of known sign; its hue is still random).
        invert_p: Probability of swapping the two ranges (a dark shape on a light background).
        clutter: Range (inclusive) of clutter items per image.
        occluders: Range (inclusive) of clutter items drawn over the shape.
        distractor_p: Probability of a smaller distractor shape of another class.
        distractor_scale: Range of the distractor's radius in pixels.
        noise: Range of the per-image Gaussian pixel-noise standard deviation (pixels in [0, 1]).
        gradient: Largest per-channel amplitude of the background's linear gradient.
        label_noise: Fraction of examples (in every split alike) whose label is replaced by another class.
    """

    scale: tuple[float, float] = (5.5, 12.0)
    thickness: tuple[float, float] = (1.2, 2.2)
    background: tuple[float, float] = (0.0, 0.55)
    foreground: tuple[float, float] = (0.45, 1.0)
    invert_p: float = 0.0
    clutter: tuple[int, int] = (1, 4)
    occluders: tuple[int, int] = (0, 1)
    distractor_p: float = 0.45
    distractor_scale: tuple[float, float] = (3.0, 6.0)
    noise: tuple[float, float] = (0.02, 0.11)
    gradient: float = 0.2
    label_noise: float = 0.0


# ---------------------------------------------------------------------------------------------------------------
# Signed distance functions in shape-local units (radius 1); negative inside.
# ---------------------------------------------------------------------------------------------------------------


def _box(x: np.ndarray, y: np.ndarray, bx: float, by: float, cx: float = 0.0, cy: float = 0.0) -> np.ndarray:
    dx, dy = np.abs(x - cx) - bx, np.abs(y - cy) - by
    outside = np.hypot(np.maximum(dx, 0), np.maximum(dy, 0))
    return outside + np.minimum(np.maximum(dx, dy), 0)


def _ngon(x: np.ndarray, y: np.ndarray, n: int, phase: float = 0.0) -> np.ndarray:
    """Regular n-gon of circumradius 1, exact distance (fold into one edge's sector, distance to that segment)."""
    sector = 2 * math.pi / n
    r = np.hypot(x, y)
    a = np.mod(np.arctan2(y, x) - phase, sector) - sector / 2
    px, py = r * np.cos(a), np.abs(r * np.sin(a))
    apothem, half = math.cos(math.pi / n), math.sin(math.pi / n)
    return np.sign(px - apothem) * np.hypot(px - apothem, np.maximum(py - half, 0))


def _star(x: np.ndarray, y: np.ndarray, points: int = 5, inner: float = 0.45) -> np.ndarray:
    """Star with ``points`` tips at radius 1 and inner vertices at ``inner`` (folded-sector segment distance)."""
    sector = 2 * math.pi / points
    r = np.hypot(x, y)
    a = np.abs(np.mod(np.arctan2(y, x) + sector / 2, sector) - sector / 2)
    px, py = r * np.cos(a), r * np.sin(a)
    ax, ay = 1.0, 0.0
    bx, by = inner * math.cos(sector / 2), inner * math.sin(sector / 2)
    ex, ey = bx - ax, by - ay
    t = np.clip(((px - ax) * ex + (py - ay) * ey) / (ex * ex + ey * ey), 0, 1)
    dist = np.hypot(px - ax - t * ex, py - ay - t * ey)
    # Inside iff on the origin's side of the tip→inner-vertex line.
    side = ex * (py - ay) - ey * (px - ax)
    return np.where(side > 0, -dist, dist)


def _halfplanes(x: np.ndarray, y: np.ndarray, planes: list[tuple[float, float, float]]) -> np.ndarray:
    """Convex polygon as the max of half-plane distances ``nx·x + ny·y - c`` (mitred outside the corners)."""
    return np.max(np.stack([nx * x + ny * y - c for nx, ny, c in planes]), axis=0)


def _arrow(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    shaft = _box(x, y, 0.5, 0.2, cx=-0.4, cy=0.0)
    s = 1 / math.sqrt(1 + 0.8 ** 2)
    head = _halfplanes(x, y, [(-1.0, 0.0, -0.1), (0.8 * s, s, 0.8 * s), (0.8 * s, -s, 0.8 * s)])
    return np.minimum(shaft, head)


_SDF: dict[str, Callable[[np.ndarray, np.ndarray], np.ndarray]] = {
    "circle": lambda x, y: np.hypot(x, y) - 0.95,
    "triangle": lambda x, y: _ngon(x, y + 0.15, 3, phase=math.pi / 2 - math.pi / 3),
    "square": lambda x, y: _box(x, y, 0.75, 0.75),
    "hexagon": lambda x, y: _ngon(x, y, 6),
    "star": _star,
    "cross": lambda x, y: np.minimum(_box(x, y, 0.95, 0.3), _box(x, y, 0.3, 0.95)),
    "crescent": lambda x, y: np.maximum(np.hypot(x, y) - 0.95, -(np.hypot(x - 0.5, y) - 0.8)),
    "arrow": _arrow,
    "semicircle": lambda x, y: np.maximum(np.hypot(x, y + 0.4) - 1.0, -(y + 0.4)),
    "ell": lambda x, y: np.minimum(_box(x, y, 0.28, 0.9, cx=-0.45), _box(x, y, 0.85, 0.28, cy=0.6)),
}


# ---------------------------------------------------------------------------------------------------------------
# Rendering
# ---------------------------------------------------------------------------------------------------------------

_GRID_Y, _GRID_X = np.mgrid[0:SIZE, 0:SIZE].astype(np.float32) + 0.5


def _coverage(dist_px: np.ndarray) -> np.ndarray:
    """Anti-aliased coverage from a signed distance in pixels (a one-pixel ramp)."""
    return np.clip(0.5 - dist_px, 0.0, 1.0)


def _paint(img: np.ndarray, cov: np.ndarray, colour: np.ndarray) -> None:
    """Alpha-composite ``colour`` (n×3) with coverage ``cov`` (n×H×W) onto ``img`` (n×3×H×W) in place."""
    c = cov[:, None]
    img *= 1 - c
    img += c * colour[:, :, None, None]


def _draw_shapes(img: np.ndarray, rng: np.random.Generator, cls: np.ndarray, sub: np.ndarray, cx: np.ndarray,
                 cy: np.ndarray, radius: np.ndarray, colour: np.ndarray, thickness: np.ndarray) -> None:
    """Draw shape ``cls[i]`` (filled or outline per ``sub[i]``) on ``img[i]``, vectorised over each class."""
    theta = rng.uniform(0, 2 * math.pi, len(cls)).astype(np.float32)
    for k, name in enumerate(SHAPE_CLASSES):
        idx = np.flatnonzero(cls == k)
        if idx.size == 0:
            continue
        c, s = np.cos(theta[idx])[:, None, None], np.sin(theta[idx])[:, None, None]
        dx = _GRID_X[None] - cx[idx, None, None]
        dy = _GRID_Y[None] - cy[idx, None, None]
        r = radius[idx, None, None]
        # Rotate the pixel grid by -theta into the shape's frame, in radius units.
        lx, ly = (c * dx + s * dy) / r, (-s * dx + c * dy) / r
        d = _SDF[name](lx, ly) * r
        outline = sub[idx, None, None] == 1
        d = np.where(outline, np.abs(d) - thickness[idx, None, None] / 2, d)
        sel = img[idx]
        _paint(sel, _coverage(d), colour[idx])
        img[idx] = sel


def _clutter(img: np.ndarray, rng: np.random.Generator, counts: np.ndarray) -> None:
    """Draw ``counts[i]`` clutter items on image ``i``: thin segments (2/3) or small blobs (1/3)."""
    for j in range(int(counts.max(initial=0))):
        idx = np.flatnonzero(counts > j)
        m = idx.size
        p0 = rng.uniform(0, SIZE, (m, 2)).astype(np.float32)
        ang = rng.uniform(0, 2 * math.pi, m)
        length = rng.uniform(4, 14, m)
        p1 = p0 + np.stack([np.cos(ang), np.sin(ang)], 1).astype(np.float32) * length[:, None].astype(np.float32)
        width = rng.uniform(0.6, 1.4, m).astype(np.float32)
        blob = rng.random(m) < 1 / 3
        blob_r = rng.uniform(1.0, 2.5, m).astype(np.float32)
        colour = rng.uniform(0, 1, (m, 3)).astype(np.float32)
        ex, ey = (p1 - p0)[:, 0, None, None], (p1 - p0)[:, 1, None, None]
        px, py = _GRID_X[None] - p0[:, 0, None, None], _GRID_Y[None] - p0[:, 1, None, None]
        t = np.clip((px * ex + py * ey) / (ex * ex + ey * ey), 0, 1)
        seg = np.hypot(px - t * ex, py - t * ey) - width[:, None, None] / 2
        dot = np.hypot(px, py) - blob_r[:, None, None]
        d = np.where(blob[:, None, None], dot, seg)
        sel = img[idx]
        _paint(sel, _coverage(d), colour)
        img[idx] = sel


def render_shapes(n: int, seed: int, style: ShapesStyle | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray,
                                                                               np.ndarray]:
    """Render ``n`` images.

    Args:
        n: Number of images.
        seed: Seed of the ``numpy.random.Generator`` every random choice is drawn from.
        style: Generator knobs; the tuned defaults when None.

    Returns:
        ``(images, labels, sub_labels, clean_labels)``: float32 ``n×3×32×32`` in [0, 1], int64 labels (after label
        noise), int64 sub-labels (0 filled, 1 outline) and the int64 labels before label noise.
    """
    st = style or ShapesStyle()
    rng = np.random.default_rng(seed)
    k = len(SHAPE_CLASSES)
    # Balanced classes and sub-classes, in random order.
    y = rng.permutation(np.arange(n) % k).astype(np.int64)
    sub = rng.permutation((np.arange(n) // k) % 2).astype(np.int64) if n else np.zeros(0, np.int64)

    # Background: a colour plus a linear gradient of random direction, per-channel amplitude.
    invert = rng.random(n) < st.invert_p
    bg_lo = np.where(invert, st.foreground[0], st.background[0])[:, None]
    bg_hi = np.where(invert, st.foreground[1], st.background[1])[:, None]
    fg_lo = np.where(invert, st.background[0], st.foreground[0])[:, None]
    fg_hi = np.where(invert, st.background[1], st.foreground[1])[:, None]
    base = (bg_lo + (bg_hi - bg_lo) * rng.random((n, 3))).astype(np.float32)
    g_ang = rng.uniform(0, 2 * math.pi, n)
    g_amp = rng.uniform(-st.gradient, st.gradient, (n, 3)).astype(np.float32)
    ramp = (np.cos(g_ang)[:, None, None] * (_GRID_X[None] - SIZE / 2)
            + np.sin(g_ang)[:, None, None] * (_GRID_Y[None] - SIZE / 2)) / SIZE
    img = base[:, :, None, None] + g_amp[:, :, None, None] * ramp[:, None].astype(np.float32)
    img = np.clip(img, 0, 1).astype(np.float32)

    # Clutter under the shape, then a distractor, then the shape, then occluding clutter on top.
    _clutter(img, rng, rng.integers(st.clutter[0], st.clutter[1] + 1, n))

    radius = rng.uniform(*st.scale, n).astype(np.float32)
    margin = radius * 0.6
    cx = rng.uniform(margin, SIZE - margin).astype(np.float32)
    cy = rng.uniform(margin, SIZE - margin).astype(np.float32)
    thick = rng.uniform(*st.thickness, n).astype(np.float32)
    colour = (fg_lo + (fg_hi - fg_lo) * rng.random((n, 3))).astype(np.float32)

    has_d = rng.random(n) < st.distractor_p
    d_cls = (y + rng.integers(1, k, n)) % k
    d_sub = rng.integers(0, 2, n)
    d_r = rng.uniform(*st.distractor_scale, n).astype(np.float32)
    d_cx = rng.uniform(0, SIZE, n).astype(np.float32)
    d_cy = rng.uniform(0, SIZE, n).astype(np.float32)
    d_col = rng.uniform(0, 1, (n, 3)).astype(np.float32)
    d_th = rng.uniform(*st.thickness, n).astype(np.float32)
    di = np.flatnonzero(has_d)
    if di.size:
        sel = img[di]
        _draw_shapes(sel, rng, d_cls[di], d_sub[di], d_cx[di], d_cy[di], d_r[di], d_col[di], d_th[di])
        img[di] = sel

    _draw_shapes(img, rng, y, sub, cx, cy, radius, colour, thick)
    _clutter(img, rng, rng.integers(st.occluders[0], st.occluders[1] + 1, n))

    sigma = rng.uniform(*st.noise, n).astype(np.float32)
    img += rng.standard_normal(img.shape, dtype=np.float32) * sigma[:, None, None, None]
    np.clip(img, 0, 1, out=img)

    clean = y.copy()
    flip = rng.random(n) < st.label_noise
    y = np.where(flip, (y + rng.integers(1, k, n)) % k, y)
    return img, y, sub, clean


def render_split(n_train: int, n_val: int, n_test: int, seed: int, style: ShapesStyle | None = None
                 ) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[np.ndarray]]:
    """Validate the sizes, render ``n_train + n_val + n_test`` images (:func:`render_shapes`) and draw the seeded
    hashed split: ``(images in [0, 1], labels, sub-labels, [train, val, test] indices)``. Shared by
    :func:`load_shapes` and the diffusion loader, so both see the same pictures in the same splits.

    Raises:
        DataError: A size is not a positive int.
    """
    for name, v in (("train", n_train), ("val", n_val), ("test", n_test)):
        if isinstance(v, bool) or not isinstance(v, int) or v < 1:
            raise DataError(f"shapes {name} size must be a positive int, got {v!r}; use e.g. shapes:5000")
    n = n_train + n_val + n_test
    img, y, sub, _ = render_shapes(n, seed, style)
    return img, y, sub, hashed_split(n, seed, [n_train, n_val, n_test])


def load_shapes(n_train: int = 5000, n_val: int = 1000, n_test: int = 1000, seed: int = 0,
                style: ShapesStyle | None = None) -> dict[str, Any]:
    """Render ``n_train + n_val + n_test`` images and split them with a seeded hashed split.

    Returns:
        A dict with ``train``/``val``/``test`` tuples ``(x, y, sub)`` of standardised arrays, ``mean``/``std``.

    Raises:
        DataError: A size is not a positive int.
    """
    img, y, sub, parts = render_split(n_train, n_val, n_test, seed, style)
    (xtr, xva, xte), mean, std = standardise(*(img[p] for p in parts))
    return {"train": (xtr, y[parts[0]], sub[parts[0]]), "val": (xva, y[parts[1]], sub[parts[1]]),
            "test": (xte, y[parts[2]], sub[parts[2]]), "mean": mean, "std": std,
            "label_noise": (style or ShapesStyle()).label_noise, "source_ids": parts}
