"""Every ``>>>`` example in the package's docstrings runs and prints what it shows."""

import doctest
import importlib
import pkgutil

import pytest
import torch

import unlearnkit

MODULES = sorted(m.name for m in pkgutil.walk_packages(unlearnkit.__path__, "unlearnkit.")
                 if not m.name.endswith("__main__"))


@pytest.mark.parametrize("name", ["unlearnkit", *MODULES])
def test_docstring_examples(name):
    mod = importlib.import_module(name)
    torch.manual_seed(0)
    res = doctest.testmod(mod, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE, verbose=False)
    assert res.failed == 0, f"{res.failed} of {res.attempted} docstring examples failed in {name}"


def test_examples_exist():
    finder = doctest.DocTestFinder()
    n = sum(len(t.examples) for name in MODULES for t in finder.find(importlib.import_module(name)))
    assert n >= 20, n
