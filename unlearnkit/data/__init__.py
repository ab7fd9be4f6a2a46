"""Datasets: ``load_dataset(spec, seed=...)`` returns standardised train/val/test splits with a manifest.

Built in: ``digits`` and ``shapes`` (offline, no download); users' own data: ``cifar10:PATH``, ``cifar100:PATH``,
``folder:PATH`` and ``csv:PATH``. See :mod:`unlearnkit.data.loaders` for the split rules and
:mod:`unlearnkit.data.ids` for the ids that name examples in deletion requests.

Example:
    >>> from unlearnkit.data import load_dataset
    >>> s = load_dataset("shapes:200", seed=0)
    >>> s.input_shape, s.num_classes, s.sub_names[0]
    ((3, 32, 32), 10, ['filled', 'outline'])
"""

from __future__ import annotations

from .base import DatasetSplits, LabeledDataset, content_hash
from .cifar import SafeUnpickler, safe_load_pickle
from .ids import IdResolution, read_ids_file, resolve_user_ids
from .loaders import DATASETS, list_datasets, load_dataset
from .shapes import SHAPE_CLASSES, SUB_NAMES, ShapesStyle, render_shapes

__all__ = ["DATASETS", "SHAPE_CLASSES", "SUB_NAMES", "DatasetSplits", "IdResolution", "LabeledDataset",
           "SafeUnpickler", "ShapesStyle", "content_hash", "list_datasets", "load_dataset", "read_ids_file",
           "render_shapes", "resolve_user_ids", "safe_load_pickle"]
