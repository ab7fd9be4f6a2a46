"""Random labels and dataset wrappers shared by the relabelling methods (``random_label``, ``amnesiac``, ``salun``)
and the teacher methods (``bad_teacher``).

Labels are drawn on a CPU generator for the whole forget set at once (:func:`draw_labels`), so that every rank of a
distributed run holds the same labels for the same examples, whatever shard it reads.
"""

from __future__ import annotations

import torch
from torch.utils.data import Dataset

__all__ = ["Relabelled", "Tagged", "draw_labels", "labels_of", "random_labels"]


def random_labels(y: torch.Tensor, num_classes: int, g: torch.Generator, *, exclude_true: bool) -> torch.Tensor:
    """Uniform random labels, drawn on the CPU generator ``g`` (so runs are reproducible on any device).

    With ``exclude_true`` the label is uniform over the ``num_classes - 1`` wrong classes, else over all classes.
    """
    if exclude_true:
        shift = torch.randint(1, num_classes, y.shape, generator=g)
        return (y + shift.to(y.device)) % num_classes
    return torch.randint(0, num_classes, y.shape, generator=g).to(y.device)


def labels_of(ds: Dataset) -> torch.Tensor:
    """The labels of every item of ``ds`` (read from ``ds.y`` when present, else item by item)."""
    y = getattr(ds, "y", None)
    if isinstance(y, torch.Tensor) and y.ndim == 1 and len(y) == len(ds):  # type: ignore[arg-type]
        return y.long().cpu()
    return torch.as_tensor([int(ds[i][1]) for i in range(len(ds))], dtype=torch.long)  # type: ignore[arg-type]


def draw_labels(ds: Dataset, num_classes: int, g: torch.Generator, *, exclude_true: bool) -> torch.Tensor:
    """One random label per item of ``ds`` (see :func:`random_labels`)."""
    return random_labels(labels_of(ds), num_classes, g, exclude_true=exclude_true)


class Relabelled(Dataset):
    """Items ``(x, labels[i])``: ``ds`` with its labels replaced. ``labels`` may be refilled in place between
    passes (a fresh draw per epoch) because items are read lazily."""

    def __init__(self, ds: Dataset, labels: torch.Tensor) -> None:
        if len(labels) != len(ds):  # type: ignore[arg-type]
            raise ValueError(f"{len(labels)} labels for {len(ds)} examples")  # type: ignore[arg-type]
        self.ds, self.labels = ds, labels

    def __len__(self) -> int:
        return len(self.ds)  # type: ignore[arg-type]

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        return self.ds[i][0], self.labels[i]


class Tagged(Dataset):
    """Items ``(x, y, tag)``: marks which examples of a mixed loader come from the forget set."""

    def __init__(self, ds: Dataset, tag: bool) -> None:
        self.ds, self.tag = ds, tag

    def __len__(self) -> int:
        return len(self.ds)  # type: ignore[arg-type]

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor, bool]:
        x, y = self.ds[i][:2]
        return x, y, self.tag
