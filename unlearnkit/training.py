"""One training loop for original, retrained and shadow models.

SGD (momentum, weight decay) or Adam, cosine or constant learning rate, optional augmentation (random crop with
4-pixel reflection padding and horizontal flip, for images of 16 pixels or more), a progress bar, and determinism
under a seed on CPU: the shuffling order and the augmentation draw from generators seeded by ``seed``.
Under torch.distributed (launched with torchrun) the data is sharded across ranks (the recipe's batch size stays
the global batch) and the model is wrapped in DistributedDataParallel; DDP averages the gradients, so every rank
holds the same weights.
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, Dataset
from tqdm.auto import tqdm

from .distributed import (
    broadcast_module_,
    epoch_loader,
    is_distributed,
    is_main_process,
)
from .errors import ConfigError, DataError
from .stats import LayerStats
from .tasks import ClassificationTask, Task, as_task

__all__ = ["TrainCallback", "TrainLog", "TrainRecipe", "evaluate_accuracy", "predict_logits", "train"]


@dataclass
class TrainRecipe:
    """How a model is trained. Saved in every checkpoint manifest; part of the cache key."""

    epochs: int = field(default=30, metadata={"help": "Passes over the training set."})
    batch_size: int = field(default=128, metadata={"help": "Mini-batch size."})
    optimizer: Literal["sgd", "adam"] = field(default="sgd", metadata={"help": "sgd (momentum) or adam."})
    lr: float = field(default=0.05, metadata={"help": "Peak learning rate."})
    momentum: float = field(default=0.9, metadata={"help": "SGD momentum."})
    weight_decay: float = field(default=5e-4, metadata={"help": "Weight decay."})
    schedule: Literal["cosine", "constant"] = field(default="cosine", metadata={"help": "Learning-rate schedule."})
    augment: bool = field(default=False, metadata={"help": "Random crop + horizontal flip (images >= 16 px)."})
    label_smoothing: float = field(default=0.0, metadata={"help": "Label smoothing of the cross-entropy."})

    def __post_init__(self) -> None:
        def bad(name: str, rng: str) -> ConfigError:
            return ConfigError(f"TrainRecipe.{name} must be {rng}, got {getattr(self, name)!r}")

        if not isinstance(self.epochs, int) or self.epochs < 0:
            raise bad("epochs", "an int >= 0")
        if not isinstance(self.batch_size, int) or self.batch_size < 1:
            raise bad("batch_size", "an int >= 1")
        if self.optimizer not in ("sgd", "adam"):
            raise bad("optimizer", "'sgd' or 'adam'")
        if self.schedule not in ("cosine", "constant"):
            raise bad("schedule", "'cosine' or 'constant'")
        if not (self.lr >= 0 and math.isfinite(self.lr)):
            raise bad("lr", "a finite number >= 0")
        if not 0 <= self.momentum < 1:
            raise bad("momentum", "in [0, 1)")
        if self.weight_decay < 0:
            raise bad("weight_decay", ">= 0")
        if not 0 <= self.label_smoothing < 1:
            raise bad("label_smoothing", "in [0, 1)")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> TrainRecipe:
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in names})


class TrainCallback(Protocol):
    def on_batch(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> None: ...


@dataclass
class TrainLog:
    """What :func:`train` returns: per-step and per-epoch losses, the training wall time (``seconds``), and with
    ``record_stats`` the layer statistics and the seconds their pass took (not included in ``seconds``)."""

    losses: list[float]
    epoch_losses: list[float]
    seconds: float
    stats: LayerStats | None = None
    stats_seconds: float = 0.0


def _augment(x: torch.Tensor, g: torch.Generator) -> torch.Tensor:
    """Random 4-px-padded crop and horizontal flip, per example, on (N, C, H, W) images."""
    if x.ndim != 4 or min(x.shape[-2:]) < 16:
        return x
    n, _, h, w = x.shape
    pad = F.pad(x, (4, 4, 4, 4), mode="reflect")
    dy = torch.randint(0, 9, (n,), generator=g)
    dx = torch.randint(0, 9, (n,), generator=g)
    flip = torch.rand(n, generator=g) < 0.5
    rows = (dy[:, None] + torch.arange(h)[None, :]).to(x.device)  # (n, h)
    cols = (dx[:, None] + torch.arange(w)[None, :]).to(x.device)  # (n, w)
    cols = torch.where(flip.to(x.device)[:, None], cols.flip(1), cols)
    idx_n = torch.arange(n, device=x.device)[:, None, None]
    out = pad.permute(0, 2, 3, 1)[idx_n, rows[:, :, None], cols[:, None, :]]  # (n, h, w, C)
    return out.permute(0, 3, 1, 2).contiguous()


def _optimizer(model: nn.Module, r: TrainRecipe) -> torch.optim.Optimizer:
    params = [p for p in model.parameters() if p.requires_grad]
    if r.optimizer == "adam":
        return torch.optim.Adam(params, lr=r.lr, weight_decay=r.weight_decay)
    return torch.optim.SGD(params, lr=r.lr, momentum=r.momentum, weight_decay=r.weight_decay, nesterov=r.momentum > 0)


def train(model: nn.Module, dataset: Dataset, *, recipe: TrainRecipe | None = None, seed: int = 0,
          device: torch.device | str | None = None, progress: bool = False, desc: str = "train",
          callbacks: Sequence[TrainCallback] = (),
          loss_fn: Callable[..., torch.Tensor] | None = None, record_stats: bool = False,
          task: Task | str | None = None) -> TrainLog:
    """Train ``model`` in place on ``dataset`` (items ``(x, y)``) with ``recipe``; deterministic under ``seed``.

    Args:
        model: the model to train (its initialisation is the caller's: seed before building it).
        dataset: training examples.
        recipe: optimiser, schedule, epochs, augmentation; ``TrainRecipe()`` by default.
        seed: seeds the data order and augmentation.
        device: where to train (default: where the model is).
        progress: show a progress bar (rank 0 only).
        callbacks: objects with ``on_batch(model, x, y)``, called after every optimiser step.
        loss_fn: ``loss_fn(logits, y)``; the older form of ``task``.
        task: the task (:mod:`unlearnkit.tasks`) whose ``loss(model, x, y)`` is minimised; classification
            (cross-entropy with the recipe's label smoothing) by default.
        record_stats: after the last epoch, record the per-layer input Gram matrices of the trained model over
            ``dataset`` (:class:`~unlearnkit.stats.LayerStats`, one pass without augmentation, seeded by
            ``seed``), so that ``pgu`` can later forget without the retain data. They are taken with the final
            weights, as the official code does right after training: sums accumulated during the last epoch would
            mix weights of different steps and would not subtract exactly from forget statistics of the model.

    Returns:
        A :class:`TrainLog` with per-step and per-epoch losses, the wall time, and the statistics if recorded.
    """
    r = recipe or TrainRecipe()
    if len(dataset) == 0:  # type: ignore[arg-type]
        raise DataError("cannot train on an empty dataset")
    dev = torch.device(device) if device is not None else next(model.parameters()).device
    model.to(dev)
    g = torch.Generator()
    g.manual_seed(int(seed))
    torch.manual_seed(int(seed))  # dropout and any other global-RNG use inside the model

    # The recipe's batch size is global: each of W ranks takes batch_size // W examples of the same global batch.
    loader = epoch_loader(dataset, r.batch_size, shuffle=True, seed=int(seed))
    net: nn.Module = model
    if is_distributed():
        from torch.nn.parallel import DistributedDataParallel

        if isinstance(model, DistributedDataParallel):  # already wrapped (e.g. by unlearn() for `retrain`)
            model = model.module
        else:
            net = DistributedDataParallel(model, device_ids=[dev.index] if dev.type == "cuda" else None)
    opt = _optimizer(model, r)
    total = max(1, r.epochs * len(loader))
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, (lambda s: 0.5 * (1 + math.cos(math.pi * min(s, total) / total))) if r.schedule == "cosine"
        else (lambda s: 1.0))
    if task is not None and loss_fn is not None:
        raise ConfigError("pass either task= or loss_fn=, not both")
    the_task = as_task(task if task is not None else loss_fn)
    if isinstance(the_task, ClassificationTask) and not the_task.label_smoothing and r.label_smoothing:
        the_task = ClassificationTask(label_smoothing=r.label_smoothing)

    losses: list[float] = []
    epoch_losses: list[float] = []
    t0 = time.perf_counter()
    net.train()
    bar = tqdm(range(r.epochs), desc=desc, disable=not (progress and is_main_process()), leave=False)
    for epoch in bar:
        run, count = 0.0, 0
        for x, y in loader:
            x, y = x.to(dev, non_blocking=True), y.to(dev, non_blocking=True)
            if r.augment:
                x = _augment(x, g)
            loss = the_task.loss(net, x, y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            li = loss.item()
            if not math.isfinite(li):
                raise DataError(f"training diverged (loss {li}) at epoch {epoch}: lower the learning rate")
            losses.append(li)
            run += li * len(y)
            count += len(y)
            for cb in callbacks:
                cb.on_batch(model, x, y)
        epoch_losses.append(run / max(count, 1))
        bar.set_postfix(loss=f"{epoch_losses[-1]:.3f}")
    broadcast_module_(model, buffers_only=True)  # BN statistics of rank 0 on every rank (no-op in one process)
    model.eval()
    log = TrainLog(losses=losses, epoch_losses=epoch_losses, seconds=time.perf_counter() - t0)
    if record_stats:
        t1 = time.perf_counter()
        log.stats = record_layer_stats(model, dataset, seed=seed, device=dev, progress=progress)
        log.stats_seconds = time.perf_counter() - t1
    return log


def record_layer_stats(model: nn.Module, dataset: Dataset, *, seed: int = 0, device: torch.device | str | None = None,
                       progress: bool = False) -> LayerStats:
    """``pgu``'s layer statistics of a trained ``model`` over its training ``dataset`` (C_full): the pass that
    ``train(..., record_stats=True)`` makes after its last epoch, also used for a cached model that lacks them."""
    return LayerStats.from_loader(model, dataset, device=device, seed=int(seed),
                                  progress=progress and is_main_process())


@torch.no_grad()
def predict_logits(model: nn.Module, dataset: Dataset, *, batch_size: int = 512,
                   device: torch.device | str | None = None) -> torch.Tensor:
    """Logits of ``model`` (eval mode) on every example of ``dataset``, in order, on the CPU."""
    dev = torch.device(device) if device is not None else next(model.parameters()).device
    was = model.training
    model.eval()
    out = [model(x.to(dev)).float().cpu() for x, _ in DataLoader(dataset, batch_size=batch_size)]
    model.train(was)
    return torch.cat(out) if out else torch.empty(0)


def evaluate_accuracy(model: nn.Module, dataset: Dataset, **kw: Any) -> float:
    """Top-1 accuracy in percent (multi-hot targets: against their argmax, docs/metrics.md)."""
    logits = predict_logits(model, dataset, **kw)
    y = torch.as_tensor([int(t) for _, t in DataLoader(dataset, batch_size=4096) for t in t]) \
        if not hasattr(dataset, "y") else dataset.y  # type: ignore[attr-defined]
    if y.ndim == 2:  # multi-hot targets: the multi-label accuracy (argmax of the logits == argmax of the target)
        y = y.argmax(1)
    return float((logits.argmax(1) == y).float().mean() * 100) if len(y) else float("nan")
