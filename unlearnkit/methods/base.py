"""Method contract: the config base class, the data a method receives, and the registry.

A method is one module in ``unlearnkit/methods/``: a ``@dataclass`` config deriving from :class:`UnlearnConfig`,
a plain function ``fn(model, data, config) -> history`` that edits ``model`` in place, and one call to
:func:`register_method` at the end of the module. :func:`unlearnkit.unlearn` copies the model, validates the
inputs against the method's capability flags, seeds, times and dispatches on the config's type.
"""

from __future__ import annotations

import dataclasses
import json
import math
import re
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal, TypeVar

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader

from ..errors import ConfigError, IncompatibleModelError, UnlearnError, UnlearnWarning
from ..tasks import Task, as_task

__all__ = [
    "ANY_LOSS_TASK",
    "RELABEL_NOTE",
    "History",
    "MethodSpec",
    "UnlearnConfig",
    "UnlearnData",
    "config_for_task",
    "get_method",
    "list_methods",
    "method_for_config",
    "register_method",
]

History = dict[str, list[float]]
RequestKind = Literal["class", "random", "ids", "subclass"]
ALL_KINDS: frozenset[str] = frozenset({"class", "random", "ids", "subclass"})
#: ``MethodSpec.tasks`` of a method whose only task-specific piece is ``data.task.loss`` (model and batch in, loss out).
ANY_LOSS_TASK: frozenset[str] = frozenset({"classification", "multilabel"})
#: ``MethodSpec.task_note`` of the methods that draw random wrong class ids.
RELABEL_NOTE = "it draws random wrong class ids for the forget set, which a multi-hot target does not have"

C = TypeVar("C", bound="UnlearnConfig")


# ---------------------------------------------------------------------------------------------------------------
# Config base class
# ---------------------------------------------------------------------------------------------------------------


@dataclass
class UnlearnConfig:
    """Base of every method config. Subclasses are dataclasses whose fields carry ``metadata={"help": ...}``.

    ``__post_init__`` calls :meth:`validate`, which subclasses extend with range checks that raise
    :class:`~unlearnkit.errors.ConfigError` naming the field, the valid range and the received value.
    """

    seed: int = field(default=0, metadata={"help": "Seed of every random choice the method makes."})

    #: Field values that make the method a no-op (0 steps, lr 0, ...). The shared contract test checks that the
    #: method then returns bit-identical weights. Every registered config must define it.
    ZERO_STRENGTH: ClassVar[dict[str, Any] | None] = None

    def __post_init__(self) -> None:
        self.validate()

    # -- validation helpers --------------------------------------------------------------------------------------
    def validate(self) -> None:
        """Check every field; subclasses call ``super().validate()`` first."""
        if not isinstance(self.seed, int) or isinstance(self.seed, bool):
            raise ConfigError(f"{type(self).__name__}.seed must be an int, got {self.seed!r}")

    def _check_range(self, name: str, lo: float | None = None, hi: float | None = None, *,
                     lo_open: bool = False, hi_open: bool = False, integer: bool = False) -> None:
        """Raise ``ConfigError`` unless ``lo <= self.name <= hi`` (open bounds when asked)."""
        value = getattr(self, name)
        kind = "an int" if integer else "a number"
        ok_type = isinstance(value, int) if integer else isinstance(value, (int, float))
        if isinstance(value, bool) or not ok_type or (not integer and math.isnan(float(value))):
            raise ConfigError(f"{type(self).__name__}.{name} must be {kind}, got {value!r}")
        bad = (lo is not None and (value <= lo if lo_open else value < lo)) or (
            hi is not None and (value >= hi if hi_open else value > hi))
        if bad:
            lb = "(" if lo_open else "["
            rb = ")" if hi_open else "]"
            rng = f"{lb}{'-inf' if lo is None else lo}, {'inf' if hi is None else hi}{rb}"
            raise ConfigError(f"{type(self).__name__}.{name} must be in {rng}, got {value!r}")

    def _check_choice(self, name: str, choices: tuple[Any, ...]) -> None:
        value = getattr(self, name)
        if value not in choices:
            raise ConfigError(f"{type(self).__name__}.{name} must be one of {list(choices)}, got {value!r}")

    # -- serialisation ---------------------------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_dict(cls: type[C], d: Mapping[str, Any]) -> C:
        """Build a config from a dict; unknown keys are dropped with a warning, missing required keys raise."""
        names = {f.name for f in dataclasses.fields(cls) if f.init}
        unknown = sorted(set(d) - names)
        if unknown:
            warnings.warn(f"{cls.__name__}: ignoring unknown keys {unknown} (written by a newer unlearnkit? "
                          "upgrade the package to use them)", UnlearnWarning, stacklevel=2)
        kwargs = {k: v for k, v in d.items() if k in names}
        for f in dataclasses.fields(cls):
            # JSON turns tuples into lists; restore the declared container type.
            if f.name in kwargs and isinstance(kwargs[f.name], list) and "tuple" in str(f.type):
                kwargs[f.name] = tuple(kwargs[f.name])
        try:
            return cls(**kwargs)
        except TypeError as e:
            raise TypeError(f"{cls.__name__}.from_dict: {e}") from None

    @classmethod
    def field_help(cls) -> dict[str, str]:
        return {f.name: f.metadata.get("help", "") for f in dataclasses.fields(cls)}


# ---------------------------------------------------------------------------------------------------------------
# What a method receives
# ---------------------------------------------------------------------------------------------------------------


def default_loss(logits: torch.Tensor, y: torch.Tensor, reduction: str = "mean") -> torch.Tensor:
    """Cross-entropy (the classification task's loss); kept for callers of the older ``loss_fn`` interface."""
    return F.cross_entropy(logits, y, reduction=reduction)


def task_of_call(task: Task | str | None, loss_fn: Callable[..., torch.Tensor] | None) -> Task:
    """The task of an ``unlearn`` call or an :class:`UnlearnData`: ``task`` when given, else the older ``loss_fn``
    as a task (classification when it is omitted or :func:`default_loss`)."""
    if task is not None:
        return as_task(task)
    return as_task(None if loss_fn in (None, default_loss) else loss_fn)


@dataclass
class UnlearnData:
    """Everything a method may use besides the model and its config.

    Loaders yield ``(x, y)`` batches. A method that needs its own batch size or shuffling re-batches
    ``loader.dataset`` with :func:`unlearnkit.methods._common.rebatch`. ``val`` is held-out data from the training
    distribution (never the test set); ``stats`` carries statistics recorded at training time (``pgu``).

    ``task`` (:class:`unlearnkit.tasks.Task`) is where every method takes its loss from:
    ``data.task.loss(model, x, y, reduction="mean"|"none")``. ``loss_fn`` is the older interface
    (``loss_fn(logits, y)``): given alone it becomes the task (:class:`~unlearnkit.tasks.LossFnTask`); when omitted
    it is the task's ``output_loss``. Classification (cross-entropy) when neither is given.
    """

    forget: DataLoader | None
    retain: DataLoader | None
    val: DataLoader | None = None
    forget_classes: tuple[int, ...] | None = None
    num_classes: int | None = None
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    loss_fn: Callable[..., torch.Tensor] | None = None
    stats: Any = None
    progress: bool = False
    task: Task | None = None
    #: ``on_step(iteration, model)``: called after every iteration (1-based) by the iterative methods.
    on_step: Callable[[int, nn.Module], None] | None = None

    def __post_init__(self) -> None:
        self.task = task_of_call(self.task, self.loss_fn)
        if self.loss_fn is None:
            self.loss_fn = self.task.loss_fn()

    def step_done(self, iteration: int, model: nn.Module) -> None:
        """Call ``on_step`` (if any) after iteration ``iteration`` (1-based), with the model's mode restored."""
        if self.on_step is not None:
            was = model.training
            self.on_step(iteration, model)
            model.train(was)


# ---------------------------------------------------------------------------------------------------------------
# Registry
# ---------------------------------------------------------------------------------------------------------------

MethodFn = Callable[[nn.Module, UnlearnData, Any], "History | None"]
ModelValidator = Callable[[nn.Module], "list[UnlearnError]"]


def _default_validate_model(model: nn.Module) -> list[UnlearnError]:
    if not any(p.requires_grad for p in model.parameters()):
        return [IncompatibleModelError("the model has no trainable parameters: set requires_grad=True on the "
                                       "parameters the method may change")]
    return []


@dataclass(frozen=True)
class MethodSpec:
    """A registered method and its capability flags (the shared tests read these, never method names)."""

    name: str
    config_cls: type[UnlearnConfig]
    fn: MethodFn
    summary: str
    paper: str
    requires_forget: bool = True
    requires_retain: bool = True
    requires_val: bool = False
    requires_forget_classes: bool = False
    supported_requests: frozenset[str] = ALL_KINDS
    supports_distributed: bool = False
    gradient_free: bool = False
    stochastic: bool = True
    is_baseline: bool = False
    touches: Literal["all", "last_layer", "salient", "weights"] = "all"
    #: False for methods that never look at the forget set's loss (``finetune`` relies on catastrophic forgetting),
    #: whose forget loss need not rise at a small budget; the contract test checks the direction only when True.
    raises_forget_loss: bool = True
    #: True for methods that can work from statistics recorded at training time (``unlearn(..., stats=...)``)
    #: instead of the retain data (``pgu``); ``unlearnkit run --record-stats`` runs them that way.
    uses_recorded_stats: bool = False
    validate_model: ModelValidator = _default_validate_model
    #: The tasks (``unlearnkit.tasks``) the method serves; ``unlearn`` refuses others with UnsupportedRequestError.
    #: Methods whose only task-specific piece is ``data.task.loss`` serve every task whose loss is a function of the
    #: model and the batch; the default is classification only.
    tasks: frozenset[str] = frozenset({"classification"})
    #: Why the method does not serve the other tasks (appended to the refusal).
    task_note: str = ""
    #: Why the method may miss the goal of a class request (forget <= 5%, kept classes within 5 points), shown
    #: after the measured numbers in the note of a run that missed it (``unlearnkit.evaluation.verdicts``).
    class_note: str = ""


_REGISTRY: dict[str, MethodSpec] = {}
_NAME_RE = re.compile(r"^[a-z][a-z0-9_]*$")


def register_method(name: str, *, config_cls: type[UnlearnConfig], fn: MethodFn, summary: str, paper: str,
                    force: bool = False, **flags: Any) -> MethodSpec:
    """Register a method under ``name``; its config class then selects it in :func:`unlearnkit.unlearn`."""
    if not _NAME_RE.match(name):
        raise ValueError(f"method name must be lower case letters, digits and '_', starting with a letter; "
                         f"got {name!r}")
    if not (isinstance(config_cls, type) and issubclass(config_cls, UnlearnConfig)):
        raise TypeError(f"config_cls for {name!r} must subclass UnlearnConfig, got {config_cls!r}")
    if name in _REGISTRY and not force:
        raise ValueError(f"a method named {name!r} is already registered; pass force=True to replace it")
    for other in _REGISTRY.values():
        if other.config_cls is config_cls and other.name != name and not force:
            raise ValueError(f"{config_cls.__name__} already selects method {other.name!r}; "
                             "give each method its own config class")
    if "supported_requests" in flags:
        flags["supported_requests"] = frozenset(flags["supported_requests"])
        unknown = flags["supported_requests"] - ALL_KINDS
        if unknown:
            raise ValueError(f"unknown request kinds {sorted(unknown)}; valid: {sorted(ALL_KINDS)}")
    if "tasks" in flags:
        flags["tasks"] = frozenset(flags["tasks"])
    spec = MethodSpec(name=name, config_cls=config_cls, fn=fn, summary=summary, paper=paper, **flags)
    _REGISTRY[name] = spec
    return spec


def get_method(name: str) -> MethodSpec:
    _ensure_builtin_methods()
    try:
        return _REGISTRY[name]
    except KeyError:
        raise ConfigError(f"unknown method {name!r}; registered methods: {', '.join(sorted(_REGISTRY))}") from None


def list_methods() -> list[str]:
    """Names of every registered method, sorted."""
    _ensure_builtin_methods()
    return sorted(_REGISTRY)


def method_for_config(config: UnlearnConfig) -> MethodSpec:
    _ensure_builtin_methods()
    for spec in _REGISTRY.values():
        if type(config) is spec.config_cls:
            return spec
    raise ConfigError(f"no registered method takes a {type(config).__name__}; pass one of "
                      f"{', '.join(s.config_cls.__name__ for s in _REGISTRY.values())}")


def config_for_task(method: str, task: Task | str | None = None, **overrides: Any) -> UnlearnConfig:
    """The config of ``method`` with the task's per-method settings (``Task.method_defaults``; the generation
    task's come from the spec, see :data:`unlearnkit.tasks.diffusion.GENERATION_DEFAULTS`), then ``overrides``.

    Example:
        >>> config_for_task("sfron", "generation", seed=1).n_iters
        150
    """
    spec = get_method(method)
    defaults = as_task(task).method_defaults.get(spec.name, {})
    return spec.config_cls(**{**defaults, **overrides})


def _ensure_builtin_methods() -> None:
    # Importing the package registers the built-in methods (each module ends with register_method).
    from .. import methods  # noqa: F401
