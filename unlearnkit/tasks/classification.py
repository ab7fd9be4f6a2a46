"""Single-label classification: cross-entropy on ``model(x)`` against class ids, top-1 accuracy."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .base import Task, register_task

__all__ = ["ClassificationTask"]


class ClassificationTask(Task):
    """Targets are class ids ``(batch,)``; the loss is cross-entropy on the logits ``(batch, classes)``.

    ``label_smoothing`` is used by the training loop only (methods and the evaluator use the plain loss).
    """

    name = "classification"

    def __init__(self, label_smoothing: float = 0.0) -> None:
        self.label_smoothing = float(label_smoothing)

    def output_loss(self, out: torch.Tensor, y: torch.Tensor, reduction: str = "mean") -> torch.Tensor:
        if self.label_smoothing:
            return F.cross_entropy(out, y, reduction=reduction, label_smoothing=self.label_smoothing)
        return F.cross_entropy(out, y, reduction=reduction)

    def output_correct(self, out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return out.argmax(dim=1) == y

    def check_targets(self, y: torch.Tensor, num_outputs: int | None, where: str) -> str | None:
        if y.ndim != 1 or y.is_floating_point() or y.dtype == torch.bool:
            return (f"{where} labels must be integer class ids of shape (N,) for a classification task, got "
                    f"{y.dtype} of shape {tuple(y.shape)}")
        return None

    def __eq__(self, other: object) -> bool:
        return type(self) is type(other) and self.label_smoothing == other.label_smoothing  # type: ignore[attr-defined]

    def __hash__(self) -> int:
        return hash((type(self), self.label_smoothing))

    def __repr__(self) -> str:
        return f"ClassificationTask(label_smoothing={self.label_smoothing})" if self.label_smoothing else \
            "ClassificationTask()"


register_task("classification", ClassificationTask)
