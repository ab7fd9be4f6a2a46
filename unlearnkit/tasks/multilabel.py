"""Multi-label classification (GoEmotions-style): several labels per example, as a multi-hot target.

Loss: binary cross-entropy with logits, **summed over the labels** per example (then averaged over the batch for
``reduction="mean"``). The ∇τ NLP notebook (github.com/dnl-trpp/Nabla-Tau, ``Unlearning_main_NLP.ipynb``) trains and
unlearns with the mean over labels (``BCEWithLogitsLoss()``) and attacks with the sum; the two differ by the constant
factor ``num_labels``, which for the unlearning objective equals a rescaled learning rate on Adam-type optimisers
(scale-invariant) and leaves the attack unchanged. ``reduction_over_labels="mean"`` gives the notebook's training loss
exactly.

Accuracy, as the notebook defines it: an example is right when the argmax of its logits is the argmax of its
multi-hot target (the first positive label).
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from ..errors import ConfigError
from .base import Task, register_task

__all__ = ["MultiLabelTask"]


class MultiLabelTask(Task):
    """Targets are multi-hot float vectors ``(batch, labels)`` of 0/1; outputs are one logit per label."""

    name = "multilabel"

    def __init__(self, reduction_over_labels: str = "sum") -> None:
        if reduction_over_labels not in ("sum", "mean"):
            raise ConfigError(f"reduction_over_labels must be 'sum' or 'mean', got {reduction_over_labels!r}")
        self.reduction_over_labels = reduction_over_labels

    def output_loss(self, out: torch.Tensor, y: torch.Tensor, reduction: str = "mean") -> torch.Tensor:
        per = F.binary_cross_entropy_with_logits(out, y.to(out.dtype), reduction="none")
        per = per.sum(dim=1) if self.reduction_over_labels == "sum" else per.mean(dim=1)
        if reduction == "none":
            return per
        if reduction == "sum":
            return per.sum()
        return per.mean()

    def output_correct(self, out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return out.argmax(dim=1) == y.argmax(dim=1)

    def example_losses(self, outputs: np.ndarray, targets: np.ndarray) -> np.ndarray:
        # The membership signal is always the sum over labels (the notebook's attack), whatever the training loss.
        out = torch.as_tensor(np.asarray(outputs), dtype=torch.float64)
        tgt = torch.as_tensor(np.asarray(targets), dtype=torch.float64)
        with torch.no_grad():
            per = F.binary_cross_entropy_with_logits(out, tgt, reduction="none").sum(dim=1)
        return per.numpy().astype(np.float64)

    def check_targets(self, y: torch.Tensor, num_outputs: int | None, where: str) -> str | None:
        if y.ndim != 2:
            return (f"{where} targets must be multi-hot vectors of shape (N, labels) for a multi-label task, got "
                    f"shape {tuple(y.shape)}")
        if num_outputs is not None and y.shape[1] != num_outputs:
            return f"{where} targets have {y.shape[1]} labels but the model has {num_outputs} outputs"
        if len(y) and not bool(((y == 0) | (y == 1)).all()):
            return f"{where} targets must be 0/1 multi-hot vectors"
        return None

    def __eq__(self, other: object) -> bool:
        return type(self) is type(other) and self.reduction_over_labels == other.reduction_over_labels  # type: ignore[attr-defined]

    def __hash__(self) -> int:
        return hash((type(self), self.reduction_over_labels))


register_task("multilabel", MultiLabelTask)
