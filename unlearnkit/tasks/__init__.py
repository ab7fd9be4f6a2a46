"""Tasks: the loss, accuracy and membership signal of a learning problem (see :mod:`unlearnkit.tasks.base`)."""

from .base import LossFnTask, Task, as_task, get_task, list_tasks, register_task
from .classification import ClassificationTask
from .multilabel import MultiLabelTask

__all__ = ["ClassificationTask", "LossFnTask", "MultiLabelTask", "Task", "as_task", "get_task", "list_tasks",
           "register_task"]
