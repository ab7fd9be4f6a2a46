"""Named recipes for baselines that two seed papers configure differently, and the epoch-wise lr schedules they use.

A recipe config is a dataclass whose tunable fields default to ``None``, meaning "take the value of the chosen
recipe" (``recipe="sfron"``, ``recipe="salun"``, ...). A field set explicitly overrides the recipe, so
``FinetuneConfig(recipe="salun", epochs=3)`` is SalUn's fine-tuning for three epochs. The config keeps the ``None``
values (its dict and JSON echo what the user asked for); :meth:`RecipeConfig.get` resolves a field and
:meth:`RecipeConfig.resolved` all of them.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import field
from typing import Any, ClassVar

import torch

from ..errors import ConfigError
from .base import UnlearnConfig

__all__ = ["OptimRecipeConfig", "RecipeConfig", "epoch_lr", "make_optimizer", "optimizer_step", "set_lr"]


@dataclasses.dataclass
class RecipeConfig(UnlearnConfig):
    """Base of configs with named recipes; subclasses set ``RECIPES`` and a ``recipe`` field with its default."""

    #: recipe name -> {field: value}; every ``None``-defaulted field must have a value in every recipe.
    RECIPES: ClassVar[dict[str, dict[str, Any]]] = {}

    def validate(self) -> None:
        super().validate()
        recipe = getattr(self, "recipe", None)
        if recipe not in self.RECIPES:
            raise ConfigError(f"{type(self).__name__}.recipe must be one of {sorted(self.RECIPES)}, got {recipe!r}")

    def get(self, name: str) -> Any:
        """The value of field ``name``: the one set explicitly, else the recipe's."""
        value = getattr(self, name)
        if value is None:
            return self.RECIPES[self.recipe][name]  # type: ignore[attr-defined]
        return value

    def resolved(self) -> dict[str, Any]:
        """Every field with the recipe's values filled in."""
        return {f.name: self.get(f.name) if f.name in self.RECIPES[self.recipe] else getattr(self, f.name)  # type: ignore[attr-defined]
                for f in dataclasses.fields(self)}

    def _check_opt(self, name: str, lo: float | None = None, hi: float | None = None, **kw: Any) -> None:
        """``_check_range`` on an explicitly set value (``None`` means the recipe's, which is checked by tests)."""
        if getattr(self, name) is not None:
            self._check_range(name, lo, hi, **kw)
            if not kw.get("integer") and math.isinf(float(getattr(self, name))):
                raise ConfigError(f"{type(self).__name__}.{name} must be finite, got {getattr(self, name)!r}")

    def _check_opt_choice(self, name: str, choices: tuple[Any, ...]) -> None:
        if getattr(self, name) is not None:
            self._check_choice(name, choices)


@dataclasses.dataclass
class OptimRecipeConfig(RecipeConfig):
    """A recipe config with the optimiser fields every fine-tuning baseline shares (all ``None`` = the recipe's)."""

    #: the lr schedules a subclass accepts (``step`` needs ``lr_decay_epochs``, only ``scrub`` has them).
    SCHEDULES: ClassVar[tuple[str, ...]] = ("constant", "cosine")

    epochs: int | None = field(default=None, metadata={"help": "Passes over the data the method uses (None: the "
                                                               "recipe's)."})
    lr: float | None = field(default=None, metadata={"help": "Learning rate (None: the recipe's)."})
    momentum: float | None = field(default=None, metadata={"help": "SGD momentum (None: the recipe's)."})
    weight_decay: float | None = field(default=None, metadata={"help": "Weight decay (None: the recipe's)."})
    batch_size: int | None = field(default=None, metadata={"help": "Mini-batch size (None: the recipe's)."})
    schedule: str | None = field(default=None, metadata={
        "help": "Learning rate over epochs: 'constant', 'cosine' (per epoch, to 0) or, where offered, 'step' "
                "(None: the recipe's)."})
    optimizer: str | None = field(default=None, metadata={"help": "'sgd' or 'adam' (None: the recipe's)."})

    def validate(self) -> None:
        super().validate()
        self._check_opt("epochs", 0, integer=True)
        self._check_opt("lr", 0.0)
        self._check_opt("momentum", 0.0, 1.0, hi_open=True)
        self._check_opt("weight_decay", 0.0)
        self._check_opt("batch_size", 1, integer=True)
        self._check_opt_choice("schedule", self.SCHEDULES)
        self._check_opt_choice("optimizer", ("sgd", "adam"))

    def make_optimizer(self, params: list[torch.nn.Parameter]) -> torch.optim.Optimizer:
        return make_optimizer(params, self.get("optimizer"), self.get("lr"), self.get("momentum"),
                              self.get("weight_decay"))


def epoch_lr(base: float, schedule: str, epoch: int, epochs: int, *, milestones: tuple[int, ...] = (),
             rate: float = 0.1) -> float:
    """The learning rate of epoch ``epoch`` (0-based) of ``epochs``.

    ``constant``: ``base``. ``cosine``: ``base·(1 + cos(π·epoch/epochs))/2``, the closed form of torch's
    ``CosineAnnealingLR(T_max=epochs)`` stepped once per epoch (as the SFR-on repository's baselines do).
    ``step``: ``base·rate^k`` with k the number of ``milestones`` below the 1-based epoch number (SCRUB's
    ``adjust_learning_rate``: with milestones (3, 5, 9) epochs 1-3 run at ``base``, 4-5 at ``base·rate``).
    """
    if schedule == "cosine":
        return base * (1.0 + math.cos(math.pi * epoch / max(epochs, 1))) / 2.0
    if schedule == "step":
        return base * rate ** sum(1 for m in milestones if epoch + 1 > m)
    return base


def set_lr(opt: torch.optim.Optimizer, lr: float) -> None:
    for group in opt.param_groups:
        group["lr"] = lr


def make_optimizer(params: list[torch.nn.Parameter], name: str, lr: float, momentum: float,
                   weight_decay: float) -> torch.optim.Optimizer:
    """``sgd`` (with momentum and weight decay) or ``adam`` (weight decay as L2, momentum unused)."""
    if name == "adam":
        return torch.optim.Adam(params, lr=lr, weight_decay=weight_decay)
    return torch.optim.SGD(params, lr=lr, momentum=momentum, weight_decay=weight_decay)


def optimizer_step(opt: torch.optim.Optimizer, loss: torch.Tensor, max_norm: float = 0.0) -> float:
    """Zero the gradients, back-propagate ``loss``, clip the total norm of the optimiser's parameters' gradients
    to ``max_norm`` (0: no clipping), step; returns the loss value."""
    opt.zero_grad(set_to_none=True)
    loss.backward()
    if max_norm > 0:
        torch.nn.utils.clip_grad_norm_([p for g in opt.param_groups for p in g["params"]], max_norm)
    opt.step()
    return float(loss.detach())
