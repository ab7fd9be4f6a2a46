"""Teachers and the KL to a teacher, shared by the distillation methods (``scrub``, ``bad_teacher``).

A teacher is a frozen copy of a model in eval mode (:func:`frozen_copy`), or a randomly re-initialised copy
(:func:`random_init_copy`, Bad Teacher's incompetent teacher). :func:`kl_to_teacher` is the one KL implementation:
``KL(p_teacher || p_student)`` at temperature T with the student's log-softmax, as ``F.kl_div`` computes it.
Under torch.distributed the student is the DDP-wrapped model; teachers are plain modules (no gradient flows through
them) built from the unwrapped model, identical on every rank.
"""

from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["frozen_copy", "kl_to_teacher", "random_init_copy", "unwrap"]


def unwrap(model: nn.Module) -> nn.Module:
    """The module inside a DistributedDataParallel wrapper (the model itself otherwise)."""
    return model.module if isinstance(model, nn.parallel.DistributedDataParallel) else model


def frozen_copy(model: nn.Module) -> nn.Module:
    """A deep copy in eval mode with every parameter frozen (``requires_grad=False``)."""
    t = copy.deepcopy(unwrap(model))
    t.eval()
    for p in t.parameters():
        p.requires_grad_(False)
    return t


def random_init_copy(model: nn.Module, seed: int) -> nn.Module:
    """A frozen copy whose every submodule with ``reset_parameters`` is re-initialised (seeded; the same on every
    rank); normalisation layers also reset their running statistics."""
    t = frozen_copy(model)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        for m in t.modules():
            if hasattr(m, "reset_running_stats"):
                m.reset_running_stats()
            if hasattr(m, "reset_parameters"):
                m.reset_parameters()
    for p in t.parameters():
        p.requires_grad_(False)
    return t


def kl_to_teacher(student_logits: torch.Tensor, teacher_probs: torch.Tensor, temperature: float = 1.0, *,
                  reduction: str = "batchmean") -> torch.Tensor:
    """``F.kl_div(log_softmax(student/T), teacher_probs, reduction)``, i.e. ``KL(teacher || student)``.

    ``teacher_probs`` are probabilities (already ``softmax(teacher/T)``, or a mixture of teachers).
    ``reduction='batchmean'`` sums over classes and averages over the batch (the KL per example);
    ``'mean'`` averages over every element, i.e. ``batchmean / num_classes``; ``'sum'`` sums everything.
    """
    log_p = F.log_softmax(student_logits / temperature, dim=1)
    if reduction == "mean":  # the same as F.kl_div's 'mean' without its deprecation warning
        return F.kl_div(log_p, teacher_probs, reduction="sum") / log_p.numel()
    return F.kl_div(log_p, teacher_probs, reduction=reduction)
