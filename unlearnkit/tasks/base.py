"""The task abstraction: what a model's outputs mean and how a batch's per-example loss is computed.

A :class:`Task` owns everything that differs between learning problems and that methods, the training loop and the
evaluator used to hard-code as cross-entropy on ``model(x)``:

* :meth:`Task.loss` computes the loss *from the model and the batch*, so a task whose loss does not call
  ``model(x)`` (a diffusion task calls ``model(x_t, t, c)`` on a noised input) fits the same interface;
* :meth:`Task.correct` says which examples the model gets right (the accuracy metric);
* :meth:`Task.example_losses` turns stored outputs into the per-example loss signal of the membership attacks.

Methods take the loss from ``UnlearnData.task`` and declare the task names they serve in ``MethodSpec.tasks``;
:func:`unlearnkit.unlearn` refuses a method on a task it does not serve.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ClassVar

import numpy as np
import torch
from torch import nn

from ..errors import ConfigError, IncompatibleModelError

__all__ = ["LossFnTask", "Task", "as_task", "get_task", "list_tasks", "register_task"]


class Task:
    """Base class of a task. Subclasses set :attr:`name` and implement :meth:`output_loss` and :meth:`correct`.

    Tasks whose loss is a function of ``model(x)`` (classification, multi-label) only implement
    :meth:`output_loss`; :meth:`loss` calls the model once and applies it. A task whose loss needs a different call
    (generation) overrides :meth:`loss` itself.
    """

    #: The task's name, as listed in ``MethodSpec.tasks``.
    name: ClassVar[str] = ""
    #: Per-method config overrides on this task ({method: {field: value}}), applied by
    #: :func:`unlearnkit.methods.base.config_for_task`; empty for tasks whose defaults are the configs' own.
    method_defaults: ClassVar[dict[str, dict[str, Any]]] = {}

    # -- training / unlearning losses -----------------------------------------------------------------------------
    def loss(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, reduction: str = "mean") -> torch.Tensor:
        """The loss of ``model`` on the batch ``(x, y)``: a scalar (``reduction="mean"``) or one value per example
        (``reduction="none"``)."""
        return self.output_loss(model(x), y, reduction=reduction)

    def output_loss(self, out: torch.Tensor, y: torch.Tensor, reduction: str = "mean") -> torch.Tensor:
        """The loss of the model outputs ``out`` against the targets ``y`` (see :meth:`loss`)."""
        raise NotImplementedError(f"task {self.name!r} computes its loss from the model: call Task.loss")

    def loss_fn(self) -> Callable[..., torch.Tensor]:
        """``fn(outputs, y, reduction="mean")``: the older ``UnlearnData.loss_fn`` interface of this task."""
        return self.output_loss

    # -- evaluation -----------------------------------------------------------------------------------------------
    def correct(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Boolean tensor ``(batch,)``: which examples ``model`` gets right."""
        return self.output_correct(model(x), y)

    def output_correct(self, out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    # -- hooks of method steps that differ between tasks --------------------------------------------------------
    def mask_loss(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """The batch-mean loss whose squared gradient is SFR-on's saliency "Fisher" (:meth:`loss` by default)."""
        return self.loss(model, x, y)

    def relabel_loss(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, y_new: torch.Tensor,
                     reduction: str = "mean") -> torch.Tensor:
        """Random-labelling's loss of the batch ``x`` with true labels ``y`` trained towards the labels ``y_new``;
        by default the task's loss against ``y_new`` (``y`` unused)."""
        return self.loss(model, x, y_new, reduction=reduction)

    def next_labels(self, y: torch.Tensor, num_classes: int) -> torch.Tensor:
        """A deterministic other class per example, (y + 1) mod K (SalUn's diffusion relabelling)."""
        return (y + 1) % int(num_classes)

    def probe(self, model: nn.Module, x0: torch.Tensor) -> int | None:
        """One forward pass on a batch of one example; raises ``IncompatibleModelError`` when the output does not
        fit the task. Returns the number of classes the model outputs (``None`` when unknown)."""
        out = model(x0)
        if not isinstance(out, torch.Tensor) or out.ndim != 2:
            raise IncompatibleModelError("the model must map a batch to logits of shape "
                                         f"(batch, classes); got {getattr(out, 'shape', type(out))}")
        return int(out.shape[1])

    def predict(self, model: nn.Module, x: torch.Tensor) -> torch.Tensor:
        """The model's predicted class per example (argmax of the outputs)."""
        return model(x).argmax(dim=1)

    def example_losses(self, outputs: np.ndarray, targets: np.ndarray) -> np.ndarray:
        """Per-example loss (float64) of stored outputs: the signal of the loss-based membership attacks."""
        with torch.no_grad():
            t = torch.as_tensor(np.asarray(outputs), dtype=torch.float64)
            per = self.output_loss(t, torch.as_tensor(np.asarray(targets)), reduction="none")
        return per.reshape(len(t), -1).sum(dim=1).numpy().astype(np.float64)

    def example_correct(self, outputs: np.ndarray, targets: np.ndarray) -> np.ndarray:
        """Boolean array: which stored outputs are right (rows with non-finite outputs count as wrong)."""
        out = np.asarray(outputs)
        with torch.no_grad():
            ok = self.output_correct(torch.as_tensor(out), torch.as_tensor(np.asarray(targets))).numpy()
        return ok & np.all(np.isfinite(out.reshape(len(out), -1)), axis=1)

    def check_targets(self, y: torch.Tensor, num_outputs: int | None, where: str) -> str | None:
        """A message when the targets ``y`` do not fit this task (``None`` when they do)."""
        return None

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"

    def __eq__(self, other: Any) -> bool:
        return type(self) is type(other)

    def __hash__(self) -> int:
        return hash(type(self))


class LossFnTask(Task):
    """A task given by a bare ``loss_fn(outputs, y, reduction="mean")`` (the older ``unlearn(..., loss_fn=...)``
    interface): the loss is ``loss_fn(model(x), y)``; accuracy is argmax of the outputs against class-id targets
    (or against the argmax of vector targets)."""

    def __init__(self, fn: Callable[..., torch.Tensor], name: str = "classification") -> None:
        self.fn = fn
        self.task_name = name

    @property  # type: ignore[override]
    def name(self) -> str:  # type: ignore[override]
        return self.task_name

    def output_loss(self, out: torch.Tensor, y: torch.Tensor, reduction: str = "mean") -> torch.Tensor:
        return self.fn(out, y) if reduction == "mean" else self.fn(out, y, reduction=reduction)

    def output_correct(self, out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return out.argmax(dim=1) == (y if y.ndim == 1 else y.argmax(dim=1))

    def __eq__(self, other: Any) -> bool:
        return isinstance(other, LossFnTask) and other.fn is self.fn and other.task_name == self.task_name

    def __hash__(self) -> int:
        return hash((LossFnTask, id(self.fn), self.task_name))

    def __repr__(self) -> str:
        return f"LossFnTask({getattr(self.fn, '__name__', self.fn)!r}, name={self.task_name!r})"


def as_task(task_or_loss: Task | Callable[..., torch.Tensor] | str | None) -> Task:
    """A :class:`Task` from a task, a task name, ``None`` (classification) or a bare ``loss_fn(outputs, y)``."""
    if isinstance(task_or_loss, Task):
        return task_or_loss
    if task_or_loss is None or isinstance(task_or_loss, str):
        return get_task(task_or_loss)
    if callable(task_or_loss):
        return LossFnTask(task_or_loss)
    raise ConfigError(f"expected a Task, a task name or a loss function, got {type(task_or_loss).__name__}")


_TASKS: dict[str, Callable[[], Task]] = {}


def register_task(name: str, factory: Callable[[], Task]) -> None:
    """Make ``get_task(name)`` return ``factory()``."""
    _TASKS[name] = factory


def get_task(task: str | Task | None) -> Task:
    """A :class:`Task` from its name (``None`` means ``"classification"``); a ``Task`` is returned as is."""
    if isinstance(task, Task):
        return task
    name = "classification" if task is None else task
    try:
        return _TASKS[name]()
    except KeyError:
        raise ConfigError(f"unknown task {name!r}; known tasks: {', '.join(sorted(_TASKS))}") from None


def list_tasks() -> list[str]:
    return sorted(_TASKS)
