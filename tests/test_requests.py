import numpy as np
import pytest
import torch

from unlearnkit.data.base import LabeledDataset
from unlearnkit.errors import RequestError
from unlearnkit.requests import ForgetRequest

NAMES = [str(i) for i in range(4)]


def _train(n=40, sub=True):
    y = torch.arange(n) % 4
    return LabeledDataset(torch.randn(n, 3), y, sub=(torch.arange(n) // 4) % 2 if sub else None)


def test_class_requests():
    tr = _train()
    s = ForgetRequest.parse("class:3").resolve(tr, class_names=NAMES)
    assert s.forget_classes == (3,) and (tr.y[s.forget_idx] == 3).all()
    assert len(s.forget_idx) + len(s.retain_idx) == len(tr)
    assert not np.intersect1d(s.forget_idx, s.retain_idx).size
    s2 = ForgetRequest.parse("class:1,3").resolve(tr, class_names=NAMES)
    assert s2.forget_classes == (1, 3) and len(s2.forget_idx) == 20
    s3 = ForgetRequest.parse("class:circle").resolve(tr, class_names=["a", "circle", "b", "c"])
    assert s3.forget_classes == (1,)


def test_random_request_seeded():
    tr = _train(100)
    a = ForgetRequest.parse("random:0.1").resolve(tr, class_names=NAMES, seed=0)
    b = ForgetRequest.parse("random:0.1").resolve(tr, class_names=NAMES, seed=0)
    c = ForgetRequest.parse("random:0.1").resolve(tr, class_names=NAMES, seed=1)
    assert len(a.forget_idx) == 10 and np.array_equal(a.forget_idx, b.forget_idx)
    assert not np.array_equal(a.forget_idx, c.forget_idx)
    assert a.key == b.key != c.key


def test_ids_request(tmp_path):
    tr = _train()
    p = tmp_path / "ids.txt"
    p.write_text("1, 5\n7")
    s = ForgetRequest.parse(f"ids:{p}").resolve(tr, class_names=NAMES)
    assert s.forget_idx.tolist() == [1, 5, 7]


def test_subclass_request():
    tr = _train()
    s = ForgetRequest.parse("subclass:2/1").resolve(tr, class_names=NAMES, sub_names={2: ["filled", "outline"]})
    assert (tr.y[s.forget_idx] == 2).all() and (tr.sub[s.forget_idx] == 1).all()
    s2 = ForgetRequest.parse("subclass:2/outline").resolve(tr, class_names=NAMES, sub_names={2: ["filled", "outline"]})
    assert np.array_equal(s.forget_idx, s2.forget_idx)


@pytest.mark.parametrize("text,match", [
    ("class:9", "unknown class '9'; valid: 0=0, 1=1, 2=2, 3=3"),
    ("class:", "nothing after"),
    ("class:1,1", "twice"),
    ("random:0", "strictly between 0 and 1"),
    ("random:1.5", "strictly between 0 and 1"),
    ("random:abc", "not a number"),
    ("random:0.001", "selects nothing"),
    ("bogus:1", "unknown forget request kind"),
    ("class3", "valid forms"),
    ("subclass:2", "subclass:CLASS/SUB"),
])
def test_bad_requests(text, match):
    tr = _train()
    with pytest.raises(RequestError, match=match):
        ForgetRequest.parse(text).resolve(tr, class_names=NAMES)


def test_bad_ids_files(tmp_path):
    tr = _train()
    cases = {"range.txt": ("3 40", "out of range"), "dup.txt": ("3 3", "more than once"),
             "empty.txt": ("", "empty"), "text.txt": ("a b", "integers only")}
    for name, (content, match) in cases.items():
        p = tmp_path / name
        p.write_text(content)
        with pytest.raises(RequestError, match=match):
            ForgetRequest.parse(f"ids:{p}").resolve(tr, class_names=NAMES)
    with pytest.raises(RequestError, match="not found"):
        ForgetRequest.parse(f"ids:{tmp_path / 'missing.txt'}").resolve(tr, class_names=NAMES)
    allp = tmp_path / "all.txt"
    allp.write_text(" ".join(str(i) for i in range(40)))
    with pytest.raises(RequestError, match="whole training set"):
        ForgetRequest.parse(f"ids:{allp}").resolve(tr, class_names=NAMES)


def test_subclass_needs_sublabels():
    with pytest.raises(RequestError, match="no sub-classes"):
        ForgetRequest.parse("subclass:1/0").resolve(_train(sub=False), class_names=NAMES)
