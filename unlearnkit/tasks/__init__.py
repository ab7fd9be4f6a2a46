"""Tasks: the loss, accuracy and membership signal of a learning problem (see :mod:`unlearnkit.tasks.base`):
``classification``, ``multilabel`` and ``generation`` (a class-conditional diffusion model,
:mod:`unlearnkit.tasks.diffusion`)."""

from .base import LossFnTask, Task, as_task, get_task, list_tasks, register_task
from .classification import ClassificationTask
from .diffusion import DiffusionTask
from .multilabel import MultiLabelTask

__all__ = ["ClassificationTask", "DiffusionTask", "LossFnTask", "MultiLabelTask", "Task", "as_task", "get_task",
           "list_tasks", "register_task"]
