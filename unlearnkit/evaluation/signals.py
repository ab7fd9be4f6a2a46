"""Per-example signals of one model on one set: logits once, everything else derived from them.

The spec's single design idea (``shared/specs/evaluation.md`` §0): run each model once over each fixed index set,
keep the logits, and compute every metric as a pure function of them. :func:`compute_signals` is that one pass;
:func:`model_hash` is the cache key that makes "once" hold across calls.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset, Subset

from ..distributed import gather_rows, is_distributed, rank, world_size
from ..errors import DataError
from ..tasks import MultiLabelTask
from . import metrics as M

__all__ = ["Signals", "compute_signals", "model_hash"]


@dataclass
class Signals:
    """Logits (float32, ``n × C``) and labels (int64, ``n``) of one model on one set; derived signals are lazy.

    Attributes:
        name: the set's name (``forget``, ``retain``, ``test``, ``val``).
        logits: the model's raw outputs, in example order.
        labels: the true labels; for a multi-label task the *primary* label of each example, the argmax of its
            multi-hot target (the first positive label), which accuracy and the per-class metrics compare with.
        targets: the multi-hot targets (float32, ``n × C``) of a multi-label task; ``None`` for classification.
            With targets, the loss is the BCE with logits summed over labels (the task's membership signal) and
            entropy is the sum of the per-label binary entropies (``docs/metrics.md``).
    """

    name: str
    logits: np.ndarray
    labels: np.ndarray
    targets: np.ndarray | None = None
    _cache: dict[str, np.ndarray] = field(default_factory=dict, repr=False)

    @property
    def multilabel(self) -> bool:
        return self.targets is not None

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    def _get(self, key: str, fn: Callable[[], np.ndarray]) -> np.ndarray:
        if key not in self._cache:
            self._cache[key] = fn()
        return self._cache[key]

    @property
    def losses(self) -> np.ndarray:
        """Per-example cross-entropy (float64); multi-label: BCE with logits summed over the labels."""
        if self.targets is not None:
            targets = self.targets
            return self._get("losses", lambda: MultiLabelTask().example_losses(self.logits, targets))
        return self._get("losses", lambda: M.cross_entropy_losses(self.logits, self.labels))

    @property
    def confidence(self) -> np.ndarray:
        """Per-example true-label probability ``p_y``."""
        return self._get("confidence", lambda: np.exp(-self.losses))

    @property
    def entropy(self) -> np.ndarray:
        """Per-example softmax entropy (nats); multi-label: the sum of the per-label binary entropies."""
        fn = M.bernoulli_entropy if self.targets is not None else M.entropy
        return self._get("entropy", lambda: fn(self.logits))

    @property
    def predictions(self) -> np.ndarray:
        """Per-example argmax class."""
        return self._get("pred", self._predictions)

    def _predictions(self) -> np.ndarray:
        pred = np.argmax(self.logits, axis=1)
        # A row with NaN/Inf logits (a diverged model) counts as wrong, never as class 0 by accident.
        return np.where(np.all(np.isfinite(self.logits), axis=1), pred, -1)

    @property
    def finite(self) -> bool:
        """True when every logit is finite."""
        return bool(np.all(np.isfinite(self.logits)))

    def subset(self, idx: np.ndarray, name: str | None = None) -> Signals:
        """The signals of the rows ``idx`` (no forward pass)."""
        return Signals(name or self.name, self.logits[idx], self.labels[idx],
                       None if self.targets is None else self.targets[idx])


def model_hash(model: nn.Module) -> str:
    """SHA-256 (first 16 hex digits) of a model's class name and its full ``state_dict`` (names, dtypes, values).

    Two models with the same architecture and state give the same outputs in eval mode, so this is a safe cache key;
    editing any parameter or buffer in place changes it. Tensors of any dtype (bfloat16 included) are hashed by
    their raw bytes.
    """
    h = hashlib.sha256()
    h.update(type(model).__qualname__.encode())
    for k, v in model.state_dict().items():
        h.update(k.encode())
        if isinstance(v, torch.Tensor):
            t = v.detach().cpu().contiguous()
            h.update(f"{t.dtype}{tuple(t.shape)}".encode())
            # reshape(-1) first: viewing a 0-d tensor as bytes fails; uint8 view covers dtypes numpy lacks.
            h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
        else:
            h.update(repr(v).encode())
    return h.hexdigest()[:16]


def _batches(ds: Dataset, batch_size: int) -> Any:
    """Yield ``(x, y)`` batches in order; slices tensors directly for :class:`LabeledDataset`-like sets."""
    x = getattr(ds, "x", None)
    y = getattr(ds, "y", None)
    if isinstance(x, torch.Tensor) and isinstance(y, torch.Tensor):
        for i in range(0, int(y.shape[0]), batch_size):
            yield x[i:i + batch_size], y[i:i + batch_size]
    else:
        yield from DataLoader(ds, batch_size=batch_size, shuffle=False)


def _model_device(model: nn.Module) -> torch.device:
    for p in model.parameters():
        return p.device
    for b in model.buffers():
        return b.device
    return torch.device("cpu")


def compute_signals(model: nn.Module, ds: Dataset, name: str, *, batch_size: int = 512,
                    device: torch.device | str | None = None, num_classes: int | None = None,
                    on_batch: Callable[[], None] | None = None, multilabel: bool = False) -> Signals:
    """One forward pass of ``model`` over ``ds`` in eval mode, without gradients.

    The model runs where its parameters are unless ``device`` differs, in which case it is moved there for the pass
    and moved back afterwards; each module's train/eval flag is restored too, so the caller's model is left as it was.

    Args:
        model: any classifier returning logits ``(batch, C)``.
        ds: yields ``(x, y)``; a ``LabeledDataset`` is sliced directly, anything else goes through a DataLoader.
        name: the set's name, kept on the result.
        batch_size: examples per forward call.
        device: where to run; None uses the model's own device.
        num_classes: if given, labels outside ``[0, num_classes)`` and logits of another width raise DataError.
        on_batch: called once per forward call (the evaluator counts passes with it).
        multilabel: the set's targets are multi-hot vectors ``(n, C)`` (kept as :attr:`Signals.targets`; the
            labels are their argmax).

    Raises:
        DataError: empty set, labels out of range, outputs that are not 2-D class logits. Non-finite logits are
            kept (see :attr:`Signals.finite`); the evaluator reports them instead of failing.
    """
    home = _model_device(model)
    dev = torch.device(device) if device is not None else home
    flags = {m: m.training for m in model.modules()}
    zs: list[torch.Tensor] = []
    ys: list[torch.Tensor] = []
    # Under torch.distributed each rank runs every W-th example and the rows are gathered back into example order
    # (gather_rows checks that no row is duplicated or dropped). Every rank holds the same model, so the result
    # equals the single-process pass.
    n_all = len(ds)  # type: ignore[arg-type]
    positions = None
    if is_distributed() and n_all >= world_size():
        positions = torch.arange(rank(), n_all, world_size())
        ds = ds.subset(positions) if hasattr(ds, "subset") else Subset(ds, positions.tolist())
    try:
        if dev != home:
            model.to(dev)
        model.eval()
        with torch.inference_mode():
            for xb, yb in _batches(ds, batch_size):
                z = model(xb.to(dev))
                if on_batch is not None:
                    on_batch()
                zs.append(z.detach().float().cpu())
                yb = torch.as_tensor(yb).cpu()
                ys.append(yb.float() if multilabel else yb.long())
    finally:
        if dev != home:
            model.to(home)
        for m, f in flags.items():
            m.training = f
    if not zs:
        raise DataError(f"the {name} set is empty: the evaluator needs at least one example in it")
    if positions is not None:
        logits_t = gather_rows(torch.cat(zs), positions, n_all)
        labels_t = gather_rows(torch.cat(ys), positions, n_all)
    else:
        logits_t, labels_t = torch.cat(zs), torch.cat(ys)
    logits = logits_t.numpy()
    targets = None
    if multilabel:
        targets = labels_t.numpy().astype(np.float32)
        if targets.ndim != 2 or targets.shape[0] != logits.shape[0] or not np.isin(targets, (0.0, 1.0)).all():
            raise DataError(f"the {name} set's targets must be 0/1 multi-hot vectors of shape (N, labels) for a "
                            f"multi-label task, got shape {tuple(targets.shape)}")
        if logits.shape != targets.shape:
            raise DataError(f"the model returned outputs of shape {tuple(logits.shape)} on the {name} set, whose "
                            f"targets have shape {tuple(targets.shape)}; a multi-label model needs one logit per "
                            "label")
        labels = targets.argmax(axis=1).astype(np.int64)
    else:
        labels = labels_t.numpy().astype(np.int64)
    if logits.ndim != 2:
        raise DataError(f"the model returned outputs of shape {tuple(logits.shape)} on the {name} set; the "
                        "evaluator needs class logits of shape (batch, num_classes)")
    if num_classes is not None:
        if logits.shape[1] != num_classes:
            raise DataError(f"the model outputs {logits.shape[1]} logits but the sets have {num_classes} classes; "
                            "pass the matching num_classes or model")
        if labels.min() < 0 or labels.max() >= num_classes:
            raise DataError(f"{name} labels must lie in [0, {num_classes - 1}], got range "
                            f"[{labels.min()}, {labels.max()}]")
    return Signals(name, logits, labels, targets)
