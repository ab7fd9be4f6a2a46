"""``folder:PATH``: an image folder with one sub-folder per class, read with Pillow.

Class names are the sub-folder names in sorted order (class id = position). Images keep their own colour mode:
when every image is grayscale (Pillow modes ``1``, ``L``, ``LA``, ``I``, ``I;16``, ``F``) the dataset has one
channel, otherwise every image is converted to RGB (three channels; alpha is dropped). Each is resized (bilinear)
to one common size: ``size`` when given (an int for a square, or ``(height, width)``); otherwise
the images' own size when they all share one, or 32×32 when their sizes differ. Hidden files and files Pillow does not
recognise by extension are skipped; an image that cannot be decoded is an error naming the file.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from ..errors import DataError

__all__ = ["GRAY_MODES", "IMAGE_EXTENSIONS", "load_folder_arrays"]

IMAGE_EXTENSIONS = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".ppm", ".pgm"}
DEFAULT_MIXED_SIZE = (32, 32)
GRAY_MODES = frozenset({"1", "L", "LA", "I", "I;16", "F"})


def _size_hw(size: int | tuple[int, int] | list[int]) -> tuple[int, int]:
    if isinstance(size, int) and not isinstance(size, bool):
        hw = (size, size)
    elif isinstance(size, (tuple, list)) and len(size) == 2:
        hw = (size[0], size[1])
    else:
        raise DataError(f"image size must be an int or (height, width), got {size!r}")
    if not all(isinstance(v, int) and not isinstance(v, bool) and v >= 1 for v in hw):
        raise DataError(f"image size must be positive ints, got {size!r}")
    return hw


def load_folder_arrays(path: str, size: int | tuple[int, int] | None = None) -> dict[str, Any]:
    """Read every image under ``path/<class>/``.

    Returns:
        ``{"x": uint8 N×C×H×W (C = 1 for all-grayscale folders, else 3), "y": int64 N, "class_names": [...],
        "files": [paths relative to the folder], "size": (H, W)}``,
        examples ordered by class then file name (so example indices are stable).

    Raises:
        DataError: Missing folder, no class sub-folders, a class without images, an unreadable image.
    """
    from PIL import Image, UnidentifiedImageError

    root = Path(path).expanduser()
    if not root.is_dir():
        raise DataError(f"folder dataset path {path!r} is not a folder; pass a folder with one sub-folder of "
                        f"images per class (folder:PATH)")
    classes = sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not classes:
        raise DataError(f"folder {root} has no class sub-folders; put the images of each class in its own "
                        f"sub-folder, e.g. {root}/cat/1.png")
    files: list[Path] = []
    labels: list[int] = []
    for c, name in enumerate(classes):
        imgs = sorted(p for p in (root / name).iterdir()
                      if p.is_file() and not p.name.startswith(".") and p.suffix.lower() in IMAGE_EXTENSIONS)
        if not imgs:
            raise DataError(f"class folder {root / name} has no images (extensions: "
                            f"{', '.join(sorted(IMAGE_EXTENSIONS))}); add images or remove the folder")
        files += imgs
        labels += [c] * len(imgs)
    if len(classes) < 2:
        raise DataError(f"folder {root} has a single class ({classes[0]}); a classifier needs at least two class "
                        f"sub-folders")

    def read(f: Path, mode: str) -> Any:
        try:
            with Image.open(f) as im:
                return im.convert(mode)
        except (UnidentifiedImageError, OSError) as e:
            raise DataError(f"cannot read image {f}: {e}; remove or replace the file") from None

    fixed = _size_hw(size) if size is not None else None
    # Reading only the headers is cheap: the common size and whether any image has colour.
    sizes, modes = set(), set()
    for f in files:
        try:
            with Image.open(f) as im:
                sizes.add(im.size)
                modes.add(im.mode)
        except (UnidentifiedImageError, OSError) as e:
            raise DataError(f"cannot read image {f}: {e}; remove or replace the file") from None
    if fixed is not None:
        h, w = fixed
    elif len(sizes) == 1:
        w, h = next(iter(sizes))
    else:
        h, w = DEFAULT_MIXED_SIZE  # mixed sizes all go to 32×32
    mode = "L" if modes <= GRAY_MODES else "RGB"
    x = np.empty((len(files), 1 if mode == "L" else 3, h, w), dtype=np.uint8)
    for i, f in enumerate(files):
        im = read(f, mode)
        if im.size != (w, h):
            im = im.resize((w, h), Image.Resampling.BILINEAR)
        a = np.asarray(im, dtype=np.uint8)
        x[i] = a[None] if a.ndim == 2 else a.transpose(2, 0, 1)
    return {"x": x, "y": np.asarray(labels, dtype=np.int64), "class_names": classes,
            "files": [f.relative_to(root).as_posix() for f in files], "size": (h, w), "root": str(root)}
