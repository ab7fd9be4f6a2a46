"""``retrain``: the gold-standard reference, training from scratch on the retain set only.

It is exact unlearning by definition and the target every other method is judged against (evaluation spec §0).
The model is re-initialised in place (every submodule's ``reset_parameters``, seeded by ``config.seed``) and
trained with :func:`unlearnkit.training.train` on ``data.retain``; the recipe fields default to the CLI's
training recipe for ``digits``/``cnn`` and should match the recipe the original model was trained with.

On the ``generation`` task the loss is the task's ε-prediction loss (training.train takes it from ``data.task``)
and :data:`unlearnkit.tasks.diffusion.GENERATION_DEFAULTS` gives the original's recipe in epochs (Adam 1e-3,
batch 64, 61 epochs). Deviation: :func:`unlearnkit.diffusion.train_diffusion`, which trains the CLI's original
and reference UNets, also warms the lr up over 100 steps and clips gradients to norm 1; ``training.train`` does
neither.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch
from torch import nn

from ..errors import IncompatibleModelError, UnlearnError, UnlearnWarning
from ..training import TrainRecipe, train
from .base import ANY_LOSS_TASK, History, UnlearnConfig, UnlearnData, register_method

__all__ = ["RetrainConfig", "reinitialize"]


def reinitialize(model: nn.Module, seed: int) -> None:
    """Re-draw every parameter from its module's own initialiser (``reset_parameters``), seeded."""
    torch.manual_seed(int(seed))
    covered: set[int] = set()
    for m in model.modules():
        reset = getattr(m, "reset_parameters", None)
        if callable(reset):
            reset()
            covered.update(id(p) for p in m.parameters())
    missed = [n for n, p in model.named_parameters() if id(p) not in covered]
    if missed:
        warnings.warn(f"retrain: parameters {missed[:5]} have no reset_parameters() and keep their trained "
                      "values; give their module a reset_parameters() method", UnlearnWarning, stacklevel=2)


def _validate(model: nn.Module) -> list[UnlearnError]:
    if not any(callable(getattr(m, "reset_parameters", None)) for m in model.modules()):
        return [IncompatibleModelError("retrain needs modules with reset_parameters() to re-initialise the model")]
    return []


@dataclass
class RetrainConfig(UnlearnConfig):
    """Training recipe of the reference; ``epochs=0`` returns the model untouched (no re-initialisation)."""

    ZERO_STRENGTH: ClassVar[dict[str, Any]] = {"epochs": 0}
    epochs: int = field(default=30, metadata={"help": "Training epochs on the retain set."})
    batch_size: int = field(default=64, metadata={"help": "Mini-batch size."})
    optimizer: str = field(default="sgd", metadata={"help": "sgd or adam."})
    lr: float = field(default=0.05, metadata={"help": "Peak learning rate (cosine schedule)."})
    momentum: float = field(default=0.9, metadata={"help": "SGD momentum."})
    weight_decay: float = field(default=5e-4, metadata={"help": "Weight decay."})
    augment: bool = field(default=False, metadata={"help": "Random crop + flip augmentation."})

    def validate(self) -> None:
        super().validate()
        self._check_range("epochs", 0, integer=True)
        self._check_range("batch_size", 1, integer=True)
        self._check_choice("optimizer", ("sgd", "adam"))
        self._check_range("lr", 0.0)

    def recipe(self) -> TrainRecipe:
        return TrainRecipe(epochs=self.epochs, batch_size=self.batch_size, optimizer=self.optimizer,  # type: ignore[arg-type]
                           lr=self.lr, momentum=self.momentum, weight_decay=self.weight_decay, augment=self.augment)


def retrain(model: nn.Module, data: UnlearnData, cfg: RetrainConfig) -> History:
    if cfg.epochs == 0:
        return {"retain_loss": []}
    reinitialize(model, cfg.seed)
    log = train(model, data.retain.dataset, recipe=cfg.recipe(), seed=cfg.seed, device=data.device,  # type: ignore[union-attr]
                progress=data.progress, desc="retrain", task=data.task)
    return {"retain_loss": log.epoch_losses}


register_method("retrain", config_cls=RetrainConfig, fn=retrain, is_baseline=True,
                summary="Train from scratch on the retain set (exact unlearning; the reference).",
                paper="Exact unlearning baseline (e.g. Bourtoule et al., SISA, IEEE S&P 2021)",
                requires_forget=False, supports_distributed=True, validate_model=_validate,
                tasks=ANY_LOSS_TASK | {"generation"})
