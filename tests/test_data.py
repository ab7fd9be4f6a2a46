"""Datasets: built-in digits/shapes, users' CIFAR/folder/CSV files (written here), splits, manifests, errors."""

from __future__ import annotations

import os
import pickle
import struct
from pathlib import Path

import numpy as np
import pytest
import torch

from unlearnkit.data import DATASETS, list_datasets, load_dataset, render_shapes, safe_load_pickle
from unlearnkit.data._split import example_keys, hashed_split, split_sizes, standardise
from unlearnkit.data.loaders import DEFAULT_SHAPES_TRAIN, shapes_sizes
from unlearnkit.data.shapes import SHAPE_CLASSES, ShapesStyle
from unlearnkit.errors import DataError


def _rows(split: torch.Tensor) -> set[bytes]:
    return {row.numpy().tobytes() for row in split}


# ---------------------------------------------------------------------------------------------------------------
# Splits and standardisation
# ---------------------------------------------------------------------------------------------------------------


def test_hashed_split_is_a_stable_partition() -> None:
    parts = hashed_split(100, 3, [70, 15, 15])
    allidx = np.concatenate(parts)
    assert sorted(allidx.tolist()) == list(range(100))
    assert [len(p) for p in parts] == [70, 15, 15]
    again = hashed_split(100, 3, [70, 15, 15])
    assert all(np.array_equal(a, b) for a, b in zip(parts, again))
    other = hashed_split(100, 4, [70, 15, 15])
    assert not np.array_equal(parts[1], other[1])
    # An example's key depends on its own index only, not on how many examples there are.
    assert np.array_equal(example_keys(50, 3), example_keys(100, 3)[:50])


def test_split_sizes_and_too_small_data() -> None:
    assert split_sizes(1797, (0.7, 0.15, 0.15), "x") == [1257, 270, 270]
    assert split_sizes(3, (0.7, 0.15, 0.15), "x") == [1, 1, 1]
    with pytest.raises(DataError, match="too few"):
        split_sizes(2, (0.7, 0.15, 0.15), "tiny.csv")


def test_standardise_uses_train_statistics_per_channel() -> None:
    rng = np.random.default_rng(0)
    train = rng.normal([[5.0], [-2.0]], [[2.0], [0.5]], size=(4000, 2, 3)).astype(np.float32)
    test = np.full((2, 2, 3), 5.0, dtype=np.float32)
    (tr, te), mean, std = standardise(train, test, chunk=7)
    np.testing.assert_allclose(tr.mean(axis=(0, 2)), 0, atol=1e-5)
    np.testing.assert_allclose(tr.std(axis=(0, 2)), 1, atol=1e-4)
    np.testing.assert_allclose(mean, train.astype(np.float64).mean(axis=(0, 2)), rtol=1e-6)
    np.testing.assert_allclose(te[:, 0], (5.0 - mean[0]) / std[0], rtol=1e-5)
    # A constant feature maps to 0, not to NaN.
    (c,), _, s = standardise(np.ones((5, 1)))
    assert s == [1.0] and np.all(c == 0)


# ---------------------------------------------------------------------------------------------------------------
# digits
# ---------------------------------------------------------------------------------------------------------------


def test_digit_styles_are_per_class_2_means() -> None:
    from sklearn.cluster import KMeans
    from sklearn.datasets import load_digits

    s = load_dataset("digits", seed=0)
    for split in (s.train, s.val, s.test):
        assert split.sub is not None and set(split.sub.unique().tolist()) == {0, 1}
    d = load_digits()
    from unlearnkit.data.digits import digit_styles

    sub = digit_styles(d.images, d.target)
    for c in (3, 9):
        rows = d.target == c
        # Sub-class 0 is the larger cluster, and the split matches KMeans up to the label swap.
        assert (sub[rows] == 0).sum() > (sub[rows] == 1).sum()
        km = KMeans(n_clusters=2, n_init=10, random_state=0).fit(d.data[rows]).labels_
        assert (km == sub[rows]).all() or (km == 1 - sub[rows]).all()
    # The sub-labels travel with the images: under any split seed a training image keeps its sub-label.
    from unlearnkit.data.digits import load_digits_arrays

    for seed in (0, 1):
        arr = load_digits_arrays(seed)
        assert (arr["train"][2] == sub[arr["source_ids"][0]]).all()
    assert torch.equal(s.train.sub, torch.from_numpy(load_digits_arrays(0)["train"][2]))


def test_digits() -> None:
    s = load_dataset("digits", seed=0)
    assert s.input_shape == (1, 8, 8) and s.num_classes == 10 and s.class_names[3] == "3"
    assert (len(s.train), len(s.val), len(s.test)) == (1257, 270, 270)
    assert s.train.x.dtype == torch.float32 and s.train.y.dtype == torch.int64
    assert set(s.train.y.tolist()) == set(range(10))
    assert abs(float(s.train.x.mean())) < 1e-4 and abs(float(s.train.x.std()) - 1) < 1e-3
    assert s.sub_names == {c: ["major", "minor"] for c in range(10)}
    m = s.manifest
    for key in ("dataset", "spec", "seed", "sizes", "class_names", "hash", "normalization"):
        assert key in m
    assert m["sizes"] == {"train": 1257, "val": 270, "test": 270}
    assert load_dataset("digits", seed=0).hash == s.hash
    t = load_dataset("digits", seed=1)
    assert t.hash != s.hash and not torch.equal(t.test.y, s.test.y)
    # The three splits are disjoint sets of images.
    tr, te = _rows(s.train.x), _rows(s.test.x)
    assert len(tr & te) <= 5  # the digits data holds a handful of exact duplicate images


# ---------------------------------------------------------------------------------------------------------------
# shapes
# ---------------------------------------------------------------------------------------------------------------


def test_shapes_contents_and_sub_labels() -> None:
    s = load_dataset("shapes:150", seed=0)
    assert s.input_shape == (3, 32, 32) and s.class_names == SHAPE_CLASSES
    assert (len(s.train), len(s.val), len(s.test)) == (150, 30, 30)
    assert s.sub_names == {c: ["filled", "outline"] for c in range(10)}
    for part in (s.train, s.val, s.test):
        assert part.sub is not None and set(part.sub.tolist()) <= {0, 1}
    assert set(s.train.sub.tolist()) == {0, 1}
    assert len(set(s.train.y.tolist())) == 10
    assert torch.isfinite(s.train.x).all()
    assert s.manifest["sizes"]["train"] == 150 and s.manifest["generator"]["label_noise"] == 0.0


def test_shapes_is_deterministic_from_the_seed() -> None:
    a, b, c = (load_dataset("shapes:60", seed=k) for k in (5, 5, 6))
    assert torch.equal(a.train.x, b.train.x) and torch.equal(a.train.y, b.train.y)
    assert torch.equal(a.train.sub, b.train.sub) and a.hash == b.hash
    assert not torch.equal(a.train.x, c.train.x) and a.hash != c.hash


def test_render_shapes_balanced_and_label_noise() -> None:
    img, y, sub, clean = render_shapes(200, 0)
    assert img.shape == (200, 3, 32, 32) and img.dtype == np.float32
    assert img.min() >= 0 and img.max() <= 1
    assert np.bincount(y, minlength=10).tolist() == [20] * 10
    assert np.bincount(sub).tolist() == [100, 100]
    assert np.array_equal(y, clean)
    # The shape itself is drawn: images of a clean style differ between filled and outline versions.
    noisy = render_shapes(2000, 0, ShapesStyle(label_noise=0.2))
    flipped = noisy[1] != noisy[3]
    assert 0.15 < flipped.mean() < 0.25


def test_shapes_filled_shapes_cover_more_pixels_than_outlines() -> None:
    plain = ShapesStyle(clutter=(0, 0), occluders=(0, 0), distractor_p=0.0, noise=(0.0, 0.0),
                        gradient=0.0, scale=(10.0, 10.0), thickness=(1.0, 1.0))
    img, y, sub, _ = render_shapes(400, 1, plain)
    # Pixels that differ from the (uniform) background, whose colour is the image's median colour.
    med = np.median(img.reshape(400, 3, -1), axis=2)[:, :, None, None]
    ink = (np.abs(img - med).sum(1) > 0.15).mean(axis=(1, 2))
    assert ink[sub == 0].mean() > 1.5 * ink[sub == 1].mean()


def test_shapes_default_sizes() -> None:
    assert shapes_sizes(DEFAULT_SHAPES_TRAIN) == (5000, 1000, 1000)
    assert shapes_sizes(20) == (20, 10, 10)


def test_shapes_bad_sizes() -> None:
    for spec in ("shapes:0", "shapes:abc", "shapes:-5"):
        with pytest.raises(DataError, match="positive"):
            load_dataset(spec)


# ---------------------------------------------------------------------------------------------------------------
# CIFAR pickle batches
# ---------------------------------------------------------------------------------------------------------------


class _Py2Pickler(pickle._Pickler):  # type: ignore[name-defined]
    """Writes str and bytes the way Python 2's cPickle wrote its str (BINSTRING), as in the real CIFAR files."""

    dispatch = dict(pickle._Pickler.dispatch)  # type: ignore[attr-defined]

    def save_py2_str(self, obj: str | bytes) -> None:
        b = obj.encode("latin1") if isinstance(obj, str) else obj
        if len(b) < 256:
            self.write(pickle.SHORT_BINSTRING + bytes([len(b)]) + b)
        else:
            self.write(pickle.BINSTRING + struct.pack("<i", len(b)) + b)
        self.memoize(obj)

    dispatch[bytes] = save_py2_str
    dispatch[str] = save_py2_str


def _write_batch(path: Path, data: np.ndarray, labels: list[int], label_key: str = "labels",
                 py2: bool = False) -> None:
    obj = {"batch_label": "fake", label_key: labels, "data": data, "filenames": [f"{i}.png" for i in labels]}
    if py2:
        import io

        buf = io.BytesIO()
        _Py2Pickler(buf, protocol=2).dump(obj)
        # Python 2's numpy named its module numpy.core.multiarray; numpy 2 writes numpy._core.multiarray.
        path.write_bytes(buf.getvalue().replace(b"numpy._core.multiarray", b"numpy.core.multiarray"))
    else:
        path.write_bytes(pickle.dumps(obj, protocol=4))


def _fake_images(rng: np.random.Generator, labels: list[int]) -> np.ndarray:
    # The red plane of each image is 10 × its label, so labels can be checked against pixels after loading.
    data = rng.integers(0, 256, (len(labels), 3072), dtype=np.uint8)
    data[:, :1024] = (np.asarray(labels, dtype=np.uint8) * 10)[:, None]
    return data


@pytest.mark.parametrize("py2", [False, True], ids=["py3-pickle", "py2-pickle"])
def test_cifar10_batches(tmp_path: Path, py2: bool) -> None:
    rng = np.random.default_rng(0)
    root = tmp_path / "cifar-10-batches-py"
    root.mkdir()
    train_labels = []
    for b in (1, 2):
        labels = [int(v) for v in rng.integers(0, 10, 25)]
        train_labels += labels
        _write_batch(root / f"data_batch_{b}", _fake_images(rng, labels), labels, py2=py2)
    test_labels = [int(v) for v in rng.integers(0, 10, 12)]
    _write_batch(root / "test_batch", _fake_images(rng, test_labels), test_labels, py2=py2)
    names = ["a", "b", "c", "d", "e", "f", "g", "h", "i", "j"]
    meta = {"label_names": names, "num_cases_per_batch": 25}
    (root / "batches.meta").write_bytes(pickle.dumps(meta, protocol=4))

    s = load_dataset(f"cifar10:{tmp_path}", seed=0)  # the parent folder works too
    assert s.class_names == names and s.input_shape == (3, 32, 32)
    assert (len(s.train), len(s.val), len(s.test)) == (45, 5, 12)
    assert s.test.y.tolist() == test_labels
    assert sorted(s.train.y.tolist() + s.val.y.tolist()) == sorted(train_labels)
    # Labels still match their images after the split and the standardisation.
    red_mean, red_std = s.mean[0], s.std[0]
    for part in (s.train, s.val, s.test):
        red = part.x[:, 0, 0, 0] * red_std + red_mean
        np.testing.assert_allclose(red.numpy() * 255, part.y.numpy() * 10.0, atol=1e-2)
    assert load_dataset(f"cifar10:{root}", seed=0).hash == s.hash
    assert not torch.equal(load_dataset(f"cifar10:{root}", seed=1).val.y, s.val.y) or len(set(train_labels)) == 1


def test_cifar100_batches(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    labels = [int(v) for v in rng.integers(0, 100, 40)]
    _write_batch(tmp_path / "train", _fake_images(rng, [v % 25 for v in labels]), labels, "fine_labels")
    _write_batch(tmp_path / "test", _fake_images(rng, labels[:10]), labels[:10], "fine_labels")
    (tmp_path / "meta").write_bytes(pickle.dumps({"fine_label_names": [f"c{i}" for i in range(100)]}))
    s = load_dataset(f"cifar100:{tmp_path}", seed=0)
    assert s.num_classes == 100 and s.class_names[7] == "c7"
    assert (len(s.train), len(s.val), len(s.test)) == (36, 4, 10)
    assert s.test.y.tolist() == labels[:10]


class _Evil:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple:
        return os.system, (f"touch {self.marker}",)


def test_malicious_pickle_is_refused(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    root = tmp_path / "c10"
    root.mkdir()
    (root / "data_batch_1").write_bytes(pickle.dumps({"data": _Evil(marker), "labels": [0]}))
    (root / "test_batch").write_bytes(pickle.dumps({"data": np.zeros((1, 3072), np.uint8), "labels": [0]},
                                                   protocol=4))
    with pytest.raises(DataError, match=r"refusing to unpickle (posix|os|nt)\.system"):
        load_dataset(f"cifar10:{root}")
    assert not marker.exists()
    # Other gadgets are refused as well; only numpy's array rebuilding is let through.
    for payload in (pickle.dumps(eval), pickle.dumps(np.load), pickle.dumps(torch.zeros(2))):
        p = tmp_path / "x.pkl"
        p.write_bytes(payload)
        with pytest.raises(DataError, match="refusing to unpickle"):
            safe_load_pickle(p)
    p.write_bytes(pickle.dumps({"a": [1, "s", b"b"], "arr": np.arange(3)}, protocol=4))
    assert safe_load_pickle(p)["arr"].tolist() == [0, 1, 2]


def test_cifar_errors(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="not a folder"):
        load_dataset(f"cifar10:{tmp_path / 'missing'}")
    with pytest.raises(DataError, match="data_batch_1..5 and test_batch"):
        load_dataset(f"cifar10:{tmp_path}")
    (tmp_path / "data_batch_1").write_bytes(b"this is not a pickle")
    (tmp_path / "test_batch").write_bytes(pickle.dumps({"data": np.zeros((1, 3072), np.uint8), "labels": [0]},
                                                       protocol=4))
    with pytest.raises(DataError, match="not a readable CIFAR pickle"):
        load_dataset(f"cifar10:{tmp_path}")
    (tmp_path / "data_batch_1").write_bytes(pickle.dumps({"data": np.zeros((2, 10), np.uint8), "labels": [0, 1]},
                                                         protocol=4))
    with pytest.raises(DataError, match=r"\(N, 3072\)"):
        load_dataset(f"cifar10:{tmp_path}")
    with pytest.raises(DataError, match="train and test"):
        load_dataset(f"cifar100:{tmp_path}")


# ---------------------------------------------------------------------------------------------------------------
# Image folders
# ---------------------------------------------------------------------------------------------------------------

COLOURS = {"blue": (0, 0, 255), "green": (0, 255, 0), "red": (255, 0, 0)}


def _write_folder(root: Path, n: int = 7, size: tuple[int, int] = (12, 10)) -> None:
    from PIL import Image

    for name, rgb in COLOURS.items():
        (root / name).mkdir(parents=True)
        for i in range(n):
            Image.new("RGB", size, rgb).save(root / name / f"{i:02d}.png")


def test_folder_dataset(tmp_path: Path) -> None:
    from PIL import Image

    _write_folder(tmp_path)
    Image.new("L", (12, 10), 128).save(tmp_path / "green" / "gray.png")  # grayscale becomes RGB
    (tmp_path / "red" / "notes.txt").write_text("not an image")  # skipped by extension
    s = load_dataset(f"folder:{tmp_path}", seed=0)
    assert s.class_names == ["blue", "green", "red"]
    assert s.input_shape == (3, 10, 12)  # (channels, height, width) of the common size
    assert len(s.train) + len(s.val) + len(s.test) == 22
    assert (len(s.val), len(s.test)) == (3, 3)
    # The dominant channel of each (non-gray) image is its class colour.
    for part in (s.train, s.val, s.test):
        raw = part.x * torch.tensor(s.std)[:, None, None] + torch.tensor(s.mean)[:, None, None]
        dom = raw.mean((2, 3)).argmax(1)
        colourful = raw.mean((2, 3)).max(1).values > 0.9
        expected = torch.tensor([2, 1, 0])[part.y]  # blue→channel 2, green→1, red→0
        assert torch.equal(dom[colourful], expected[colourful])
    assert s.manifest["image_size"] == [10, 12]
    assert load_dataset(f"folder:{tmp_path}", seed=0, size=8).input_shape == (3, 8, 8)
    assert load_dataset(f"folder:{tmp_path}", seed=0, size=(6, 4)).input_shape == (3, 6, 4)


def test_folder_mixed_sizes_default_to_32(tmp_path: Path) -> None:
    from PIL import Image

    _write_folder(tmp_path, n=3)
    Image.new("RGB", (50, 20), (9, 9, 9)).save(tmp_path / "red" / "big.jpg")
    assert load_dataset(f"folder:{tmp_path}").input_shape == (3, 32, 32)


def test_folder_errors(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="not a folder"):
        load_dataset(f"folder:{tmp_path / 'nope'}")
    with pytest.raises(DataError, match="no class sub-folders"):
        load_dataset(f"folder:{tmp_path}")
    _write_folder(tmp_path, n=2)
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="has no images"):
        load_dataset(f"folder:{tmp_path}")
    (tmp_path / "empty").rmdir()
    (tmp_path / "red" / "broken.png").write_bytes(b"\x89PNG garbage")
    with pytest.raises(DataError, match="broken.png"):
        load_dataset(f"folder:{tmp_path}")
    with pytest.raises(DataError, match="size"):
        load_dataset(f"folder:{tmp_path}", size=0)


# ---------------------------------------------------------------------------------------------------------------
# CSV
# ---------------------------------------------------------------------------------------------------------------


def _write_csv(path: Path, header: bool = True, label_first: bool = False, n: int = 40) -> np.ndarray:
    rng = np.random.default_rng(0)
    feats = rng.normal(size=(n, 3)) * [1.0, 10.0, 100.0] + [0.0, 5.0, -50.0]
    labels = ["dog" if f[0] > 0 else "cat" for f in feats]
    lines = (["species,a,b,c"] if label_first else ["a,b,c,species"]) if header else []
    for f, lab in zip(feats, labels):
        cells = [f"{v:.6f}" for v in f]
        lines.append(",".join([lab, *cells] if label_first else [*cells, lab]))
    path.write_text("\n".join(lines) + "\n\n")
    return feats


def test_csv_with_header_and_string_labels(tmp_path: Path) -> None:
    p = tmp_path / "animals.csv"
    feats = _write_csv(p)
    s = load_dataset(f"csv:{p}", seed=0)
    assert s.class_names == ["cat", "dog"] and s.input_shape == (3,)
    assert len(s.train) + len(s.val) + len(s.test) == 40
    assert s.manifest["feature_names"] == ["a", "b", "c"] and s.manifest["label_column"] == "species"
    np.testing.assert_allclose(s.train.x.mean(0).numpy(), 0, atol=1e-5)
    # Labels follow the features they came with: feature a > 0 ⇔ dog.
    for part in (s.train, s.val, s.test):
        a = part.x[:, 0] * s.std[0] + s.mean[0]
        assert torch.equal(part.y, (a > 0).long())
    # Standardised with the training rows' statistics: the train split is the first part of the hashed split.
    train_rows = hashed_split(40, 0, split_sizes(40, (0.7, 0.15, 0.15), "x"))[0]
    np.testing.assert_allclose(s.mean, feats[train_rows].mean(0), rtol=1e-5)
    q = tmp_path / "first.csv"
    _write_csv(q, label_first=True)
    for col in ("species", 0, "0", -4):
        assert load_dataset(f"csv:{q}", label_column=col).class_names == ["cat", "dog"]


def test_csv_without_header_numeric_labels(tmp_path: Path) -> None:
    p = tmp_path / "nums.csv"
    rows = [f"{i * 0.5},{-i},{label}" for i, label in enumerate([2, 10, 2, 10, 1] * 4)]
    p.write_text("\n".join(rows))
    s = load_dataset(f"csv:{p}")
    assert s.class_names == ["1", "2", "10"]  # numeric order, not string order
    assert s.input_shape == (2,) and s.manifest["feature_names"] == ["x0", "x1"]
    assert set(torch.cat([s.train.y, s.val.y, s.test.y]).tolist()) == {0, 1, 2}


@pytest.mark.parametrize("bad, match", [
    ("1,2,a\n3,nan,b\n5,6,a\n7,8,b\n", "NaN and Inf"),
    ("1,2,a\n3,inf,b\n5,6,a\n7,8,b\n", "NaN and Inf"),
    ("1,2,a\n3,4,b\n5,6,a\n7,x,b\n", "not a number"),
    ("1,2,a\n3,4,b\n5,a\n7,8,b\n", "has 2 columns"),
    ("1,2,a\n3,,b\n5,6,a\n7,8,b\n", "not a number"),
    ("1,2,a\n3,4,\n5,6,a\n7,8,b\n", "empty label"),
    ("1,2,a\n3,4,a\n5,6,a\n7,8,a\n", "single class"),
    ("\n\n", "empty"),
    ("a,b\n", "no data rows"),
])
def test_csv_errors(tmp_path: Path, bad: str, match: str) -> None:
    p = tmp_path / "bad.csv"
    p.write_text(bad)
    with pytest.raises(DataError, match=match):
        load_dataset(f"csv:{p}")


def test_csv_label_column_errors(tmp_path: Path) -> None:
    p = tmp_path / "animals.csv"
    _write_csv(p)
    with pytest.raises(DataError, match="valid names: a, b, c, species"):
        load_dataset(f"csv:{p}", label_column="kind")
    with pytest.raises(DataError, match="out of range"):
        load_dataset(f"csv:{p}", label_column=9)
    with pytest.raises(DataError, match="does not exist"):
        load_dataset(f"csv:{tmp_path / 'missing.csv'}")


# ---------------------------------------------------------------------------------------------------------------
# Specs
# ---------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("spec", ["mnist", "digits:3", "csv:", "folder", "", "cifar10:"])
def test_bad_specs(spec: str) -> None:
    with pytest.raises(DataError, match="valid"):
        load_dataset(spec)


def test_options_only_where_they_apply() -> None:
    with pytest.raises(DataError, match="label_column applies only to csv"):
        load_dataset("digits", label_column="x")
    with pytest.raises(DataError, match="size applies only to folder"):
        load_dataset("shapes:10", size=16)
    assert list_datasets() == sorted(DATASETS) == ["cifar10", "cifar100", "csv", "digits", "folder", "jsonl",
                                                     "shapes", "textcsv", "textsynth", "textsynth-multilabel"]
