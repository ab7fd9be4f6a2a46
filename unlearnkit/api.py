"""The ``unlearn()`` façade: validate, copy the model (unless ``inplace``), seed, dispatch on the config, time."""

from __future__ import annotations

import copy
import os
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader

from .distributed import broadcast_module_, is_distributed
from .errors import (
    ConfigError,
    DataError,
    DivergedError,
    UnsupportedRequestError,
    UnsupportedTaskError,
)
from .methods.base import History, MethodSpec, UnlearnConfig, UnlearnData, method_for_config, task_of_call
from .tasks import ClassificationTask, Task

__all__ = ["UnlearnResult", "unlearn"]


@dataclass
class UnlearnResult:
    """What :func:`unlearn` returns, whatever the method.

    Attributes:
        model: the unlearned model (the caller's own object when ``inplace=True``, else a deep copy).
        method: the registry name of the method that ran.
        config: the config as a dict (``config_cls.from_dict`` rebuilds it).
        history: per-step scalars logged by the method (e.g. ``{"forget_loss": [...]}``).
        seconds: wall-clock time of the method call (CUDA synchronised), excluding validation and the copy.
        peak_memory_mb: peak extra memory during the call: CUDA peak allocation on GPU, else growth of the
            process's resident set size, sampled every 5 ms (an approximation that misses shorter peaks).
    """

    model: nn.Module
    method: str
    config: dict[str, Any]
    history: History = field(default_factory=dict)
    seconds: float = 0.0
    peak_memory_mb: float = 0.0


# ---------------------------------------------------------------------------------------------------------------
# input validation through the Dataset protocol
# ---------------------------------------------------------------------------------------------------------------

#: Examples read from a dataset that is not backed by tensors (a custom ``Dataset``) when checking it: all of them
#: up to this many, else a seeded random sample of this many (the check is then a bounded one, not a proof).
SCAN_LIMIT = 2048


@dataclass
class _Scan:
    """What the checks saw of one loader's dataset: the scanned rows, and how they can be compared with another's."""

    name: str
    n: int | None
    x: torch.Tensor | None  # scanned inputs, stacked (None when items differ in shape or the dataset is iterable)
    y: torch.Tensor | None  # scanned labels
    ids: torch.Tensor | None  # ids of the scanned rows in ``space`` (None: compare content instead)
    space: Any  # id space: rows with equal ids in one space are the same example
    full: bool  # every row was scanned


def _tensor_view(ds: Any) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None, Any] | None:
    """(x, y, ids, id space) of a tensor-backed dataset: LabeledDataset, TensorDataset, or a Subset of one."""
    from torch.utils.data import Subset, TensorDataset

    from .data.base import LabeledDataset

    if isinstance(ds, LabeledDataset):
        return ds.x, ds.y, ds.ids, ds.id_space
    if isinstance(ds, TensorDataset) and len(ds.tensors) >= 2:
        return ds.tensors[0], ds.tensors[1], torch.arange(len(ds.tensors[0])), ds
    if isinstance(ds, Subset):
        inner = _tensor_view(ds.dataset)
        if inner is not None:
            idx = torch.as_tensor(list(ds.indices), dtype=torch.long)
            x, y, ids, space = inner
            return x[idx], y[idx], None if ids is None else ids[idx], space
    return None


def _scan(name: str, loader: DataLoader) -> _Scan:
    """Read ``loader.dataset`` through the Dataset protocol (tensors directly when it has them) and check what can
    be checked without the model: emptiness, NaN/Inf inputs, label type and shape."""
    if not isinstance(loader, DataLoader):
        raise DataError(f"{name} must be a torch DataLoader (or None), got {type(loader).__name__}")
    ds = loader.dataset
    try:
        n: int | None = len(ds)  # type: ignore[arg-type]
    except TypeError:
        n = None
    if n == 0:
        raise DataError(f"the {name} set is empty: pass at least one example, or {name}=None if the method "
                        "does not need it")
    view = _tensor_view(ds)
    if view is not None:
        x, y, ids, space = view
        sc = _Scan(name, n, x, y, ids, space, full=True)
    elif n is None or not hasattr(ds, "__getitem__"):
        return _Scan(name, n, None, None, None, None, full=False)  # an iterable dataset is not scanned
    else:
        if n <= SCAN_LIMIT:
            rows = list(range(n))
        else:
            rows = sorted(int(i) for i in torch.randperm(n, generator=torch.Generator().manual_seed(0))[:SCAN_LIMIT])
        xs, ys = [], []
        for i in rows:
            try:
                item = ds[i]
            except Exception as e:  # a user's __getitem__ may raise anything
                raise DataError(f"reading {name}.dataset[{i}] failed ({type(e).__name__}: {e}); items must be "
                                "(input, label) pairs") from None
            if not isinstance(item, (tuple, list)) or len(item) < 2:
                raise DataError(f"{name}.dataset[{i}] is a {type(item).__name__}, not an (input, label) pair")
            xs.append(torch.as_tensor(item[0]))
            ys.append(torch.as_tensor(item[1]))
        same = all(t.shape == xs[0].shape for t in xs)
        x = torch.stack(xs) if same else None
        for t in ([] if same else xs):
            _check_finite(name, t)
        try:
            y = torch.stack(ys)
        except RuntimeError:
            raise DataError(f"{name} labels must be one class id per example; got labels of shapes "
                            f"{sorted({tuple(t.shape) for t in ys})}") from None
        sc = _Scan(name, n, x, y, torch.as_tensor(rows), ds, full=len(rows) == n)
    if sc.x is not None:
        _check_finite(name, sc.x)
    return sc


def _check_finite(name: str, x: torch.Tensor) -> None:
    if x.is_floating_point() or x.is_complex():
        bad = ~torch.isfinite(x.reshape(len(x), -1) if x.ndim else x.reshape(1, 1)).all(dim=1)
        if bool(bad.any()):
            raise DataError(f"the {name} set contains NaN or Inf inputs ({int(bad.sum())} examples, the first at "
                            f"position {int(bad.nonzero()[0])}): clean or drop those rows first")


def _check_labels(sc: _Scan, num_classes: int, strict: bool) -> None:
    """Labels must be class ids in ``[0, num_classes)``. With a custom loss (``strict=False``) targets may be
    anything the loss takes (e.g. multi-label vectors): only 1-D integer labels are range-checked then."""
    y = sc.y
    if y is None or not len(y):
        return
    if not strict and (y.ndim != 1 or y.is_floating_point() or y.dtype == torch.bool):
        return
    if y.ndim != 1:
        raise DataError(f"{sc.name} labels must be one class id per example (shape (N,)), got shape "
                        f"{tuple(y.shape)}; pass loss_fn= for other targets")
    if y.is_floating_point() or y.dtype == torch.bool:
        if y.dtype == torch.bool or not bool((y == y.round()).all()):
            raise DataError(f"{sc.name} labels must be integer class ids in [0, {num_classes - 1}], got {y.dtype} "
                            "values")
    lo, hi = int(y.min()), int(y.max())
    if lo < 0 or hi >= num_classes:
        where = "" if sc.full else f" (in a seeded sample of {len(y)} of its {sc.n} examples)"
        raise DataError(f"{sc.name} labels must lie in [0, {num_classes - 1}] (the model has {num_classes} "
                        f"outputs), got range [{lo}, {hi}]{where}")


def _row_keys(x: torch.Tensor, y: torch.Tensor | None, chunk: int = 1024) -> np.ndarray:
    """A 64-bit key per row of (input, label), equal for equal rows: a fixed random linear map of the row's values
    (as float64 words) modulo 2**64. Labels may be class ids or target vectors. Matches are confirmed exactly by the
    caller."""
    parts = [x.reshape(len(x), -1)] + ([] if y is None else [y.reshape(len(y), -1)])
    width = sum(p.shape[1] for p in parts)
    rng = np.random.default_rng(0x0DD5)
    coef = rng.integers(1, 2**63, size=width, dtype=np.uint64) | np.uint64(1)
    keys = np.empty(len(x), dtype=np.uint64)
    with np.errstate(over="ignore"):
        for s in range(0, len(x), chunk):
            w = torch.cat([p[s:s + chunk].detach().cpu().double() for p in parts], dim=1).contiguous().numpy()
            keys[s:s + chunk] = (w.view(np.uint64) * coef).sum(axis=1, dtype=np.uint64)
    return keys


def _check_overlap(f: _Scan | None, r: _Scan | None, forget: DataLoader | None, retain: DataLoader | None) -> None:
    """Refuse a forget set that shares examples with the retain set.

    Ids are compared when both sets come from one id space (subsets of one dataset, or ids given explicitly);
    otherwise the content is: a forget example whose input and label equal a retain example's is an overlap. The
    comparison covers the scanned rows (every row of tensor-backed datasets; up to ``SCAN_LIMIT`` of others).
    """
    if f is None or r is None or forget is None or retain is None:
        return
    if forget.dataset is retain.dataset:
        raise DataError("forget and retain are the same dataset: the retain set must exclude the forget set")
    if f.ids is not None and r.ids is not None and f.space is r.space:
        both = torch.isin(f.ids, r.ids)
        if bool(both.any()):
            ex = f.ids[both][:5].tolist()
            raise DataError(f"{int(both.sum())} examples are in both the forget and the retain set (ids {ex}...): "
                            "remove the forget examples from the retain set")
        return
    if f.x is None or r.x is None or f.x.shape[1:] != r.x.shape[1:]:
        return  # different input shapes: the shape probe reports it
    if (f.y is None) != (r.y is None) or (f.y is not None and r.y is not None and f.y.shape[1:] != r.y.shape[1:]):
        return  # labels of different shapes cannot be equal
    fk, rk = _row_keys(f.x, f.y), _row_keys(r.x, r.y)
    cand = np.flatnonzero(np.isin(fk, rk))
    if not len(cand):
        return
    where: dict[int, list[int]] = {}
    for j, k in enumerate(rk.tolist()):
        where.setdefault(k, []).append(j)
    hits = [i for i in cand.tolist() if any(torch.equal(f.x[i], r.x[j]) and (f.y is None or r.y is None or
                                                                             torch.equal(f.y[i], r.y[j]))
                                            for j in where[int(fk[i])])]
    if hits:
        sampled = "" if f.full and r.full else " (found in the scanned sample)"
        pos = [int(f.ids[i]) for i in hits[:5]] if f.ids is not None else hits[:5]
        raise DataError(f"{len(hits)} forget examples also appear in the retain set with identical inputs and "
                        f"labels{sampled} (forget ids {pos}): remove them from the retain set, or pass "
                        "LabeledDatasets with explicit ids if equal rows are distinct examples")


def _probe_shapes(model: nn.Module, loaders: Iterable[tuple[str, DataLoader | None]], num_classes: int | None,
                  device: torch.device, task: Task | None = None) -> int | None:
    """One forward pass on a single example of each loader (through ``task.probe``): catches shape mismatches
    before any heavy work. Returns the number of classes of the model (None if no loader could be probed)."""
    the_task = task if task is not None else ClassificationTask()
    was = model.training
    model.eval()
    width = None
    try:
        with torch.no_grad():
            for name, loader in loaders:
                if loader is None or not hasattr(loader.dataset, "__getitem__"):
                    continue
                x0 = torch.as_tensor(loader.dataset[0][0]).unsqueeze(0).to(device)  # type: ignore[index]
                try:
                    k = the_task.probe(model, x0)
                except (RuntimeError, ValueError, TypeError, IndexError) as e:
                    msg = (str(e).splitlines() or [type(e).__name__])[0]
                    raise DataError(f"the model cannot take the {name} inputs of shape {tuple(x0.shape[1:])}: "
                                    f"{msg}") from None
                if num_classes is not None and k is not None and k != num_classes:
                    raise DataError(f"the model outputs {k} logits but num_classes={num_classes}")
                width = k
    finally:
        model.train(was)
    return width


_WARM = False


def _warm_up_once() -> None:
    """Pay PyTorch's one-off lazy imports (the first optimiser built in a process imports ``torch._dynamo``, about
    1-4 s on this project's CPU machine) before the timer starts, so that they are not billed to whichever method
    happens to run first."""
    global _WARM
    if not _WARM:
        torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=0.0)
        _WARM = True


class _single_example_batchnorm:  # noqa: N801 (used as a context manager)
    """While a method runs, a BatchNorm layer in training mode that receives one value per channel (a batch of one
    example at 1×1 resolution, e.g. forgetting a single sample) normalises that call with its running statistics,
    as in eval mode, instead of raising "Expected more than 1 value per channel" (batch statistics of one value are
    undefined). Every other call is untouched; the hooks are removed afterwards."""

    def __init__(self, model: nn.Module) -> None:
        self.bns = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
        self.handles: list[Any] = []

    @staticmethod
    def _pre(m: nn.Module, args: tuple[Any, ...]) -> None:
        x = args[0] if args else None
        if m.training and isinstance(x, torch.Tensor) and x.dim() >= 2 and x.numel() // x.shape[1] == 1:
            m.training = False
            m._uk_single = True  # type: ignore[assignment]

    @staticmethod
    def _post(m: nn.Module, args: tuple[Any, ...], out: Any) -> None:
        if getattr(m, "_uk_single", False):
            m.training = True
            del m._uk_single

    def __enter__(self) -> _single_example_batchnorm:
        for m in self.bns:
            self.handles += [m.register_forward_pre_hook(self._pre), m.register_forward_hook(self._post)]
        return self

    def __exit__(self, *exc: Any) -> None:
        for h in self.handles:
            h.remove()
        for m in self.bns:
            if getattr(m, "_uk_single", False):
                m.training = True
                del m._uk_single


class _PeakMemory:
    """Peak memory over a block: CUDA's own counter on GPU, sampled RSS growth on CPU (Linux /proc)."""

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.peak_mb = 0.0
        self._stop = threading.Event()

    @staticmethod
    def _rss_mb() -> float:
        try:
            with open("/proc/self/statm") as f:
                return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20
        except (OSError, ValueError):
            return 0.0

    def __enter__(self) -> _PeakMemory:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
            self._base = torch.cuda.memory_allocated(self.device) / 2**20
        else:
            self._base = self._rss_mb()
            self._max = self._base
            self._thread = threading.Thread(target=self._sample, daemon=True)
            self._thread.start()
        return self

    def _sample(self) -> None:
        while not self._stop.wait(0.005):
            self._max = max(self._max, self._rss_mb())

    def __exit__(self, *exc: Any) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            self.peak_mb = torch.cuda.max_memory_allocated(self.device) / 2**20 - self._base
        else:
            self._stop.set()
            self._thread.join()
            self._max = max(self._max, self._rss_mb())
            self.peak_mb = self._max - self._base


def _device(device: torch.device | str) -> torch.device:
    """``device`` as a torch.device that exists on this machine, else a ConfigError (not torch's RuntimeError or
    an AssertionError from deep inside CUDA initialisation)."""
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError, ValueError):
        raise ConfigError(f"unknown device {device!r}; valid: 'cpu', 'cuda', 'cuda:N'") from None
    if dev.type == "cuda":
        n = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if n == 0 or (dev.index is not None and dev.index >= n):
            raise ConfigError(f"device {device!r} is not available here ({n} CUDA devices); pass device='cpu'")
    elif dev.type == "mps" and not torch.backends.mps.is_available():
        raise ConfigError(f"device {device!r} is not available here; pass device='cpu'")
    return dev


def _infer_device(model: nn.Module) -> torch.device:
    for p in model.parameters():
        return p.device
    return torch.device("cpu")


def unlearn(model: nn.Module, *, forget: DataLoader | None, retain: DataLoader | None = None,
            config: UnlearnConfig, val: DataLoader | None = None,
            forget_classes: Iterable[int] | None = None, num_classes: int | None = None,
            loss_fn: Callable[..., torch.Tensor] | None = None, stats: Any = None,
            device: torch.device | str | None = None, inplace: bool = False,
            progress: bool = False, task: Task | str | None = None,
            on_step: Callable[[int, nn.Module], None] | None = None) -> UnlearnResult:
    """Remove the influence of ``forget`` from ``model`` with the method that ``config``'s type selects.

    Args:
        model: any classifier ``nn.Module`` mapping a batch to logits ``(batch, classes)``.
        forget: loader of the examples to forget, yielding ``(x, y)``; ``None`` only for methods that work from
            class ids alone (``unsir``).
        retain: loader of (a subset of) the remaining training data, for methods that need it.
        config: a method config, e.g. ``unlearnkit.FinetuneConfig(epochs=2)``; its type selects the method.
        val: held-out data from the training distribution (never the test set), for methods that need it.
        forget_classes: the forgotten class ids for class-wise requests (required by class-only methods).
        num_classes: number of classes; inferred from the model's output width (one forward pass) when omitted.
            Labels are checked against it when it is given or the default loss is used.
        loss_fn: ``loss_fn(logits, y, reduction=...)``; the older form of ``task`` (cross-entropy by default).
        stats: training-time statistics a method may use (``pgu``'s recorded Gram matrices).
        device: where to run; by default where the model's parameters are. The model is moved there only
            when ``device`` is given explicitly.
        inplace: modify ``model`` itself; by default a deep copy is unlearned and ``model`` is left untouched.
        progress: show progress bars.
        task: the learning problem (:mod:`unlearnkit.tasks`): a :class:`~unlearnkit.tasks.Task` or its name
            (``"classification"``, the default, or ``"multilabel"``). Methods take their loss from it; a method that
            does not serve the task is refused. ``"generation"`` is a class-conditional diffusion model
            ``model(x_t, t, c)`` (:mod:`unlearnkit.tasks.diffusion`); its per-method settings are
            :func:`unlearnkit.methods.base.config_for_task`.
        on_step: ``on_step(iteration, model)``, called by iterative methods after each of their iterations
            (``sfron``, ``salun``, ``finetune``, ``gradient_ascent``; 1-based), e.g. to checkpoint metrics. Its time
            counts towards ``seconds``; it must not change the model.

    Under torch.distributed (launched with ``torchrun``), every rank calls ``unlearn`` with the same arguments: the
    model is wrapped in DistributedDataParallel for methods flagged ``supports_distributed``, data that the method
    re-batches is sharded across ranks (the config's batch size stays the global batch), global statistics are
    all-reduced, and every rank ends with the same weights.

    Returns:
        An :class:`UnlearnResult` holding the unlearned model, the history and the wall time.

    Raises:
        ConfigError: the config is not a registered method's config.
        DataError: an empty forget set, NaN inputs, overlapping forget/retain sets, labels out of range, or
            inputs the model cannot take. Checked for any map-style ``Dataset`` before any heavy work:
            ``LabeledDataset``, ``TensorDataset`` and ``Subset`` of them in full (their tensors are read
            directly); any other dataset through ``__getitem__``, every item up to ``SCAN_LIMIT`` (2048) items,
            else a seeded random sample of that many (a bounded check, not a proof). Overlap compares ids when both
            sets share an id space (subsets of one dataset, or explicit ``ids``), else the inputs and labels.
        UnsupportedRequestError: the method needs data or class ids that were not given.
        UnsupportedTaskError: the method does not serve ``task`` (``MethodSpec.tasks``).
        IncompatibleModelError: the model lacks what the method needs.
        DivergedError: the method left NaN/Inf weights (``err.result`` holds the result).
    """
    spec: MethodSpec = method_for_config(config)
    if task is not None and loss_fn is not None:
        raise ConfigError("pass either task= or loss_fn=, not both (a Task carries its own loss)")
    the_task = task_of_call(task, loss_fn)
    if the_task.name not in spec.tasks:
        # The notes explain the multi-label refusals; on the generation task the reason is the same for all.
        note = ("it works on a classifier's outputs, which a diffusion model does not have"
                if the_task.name == "generation" else spec.task_note)
        raise UnsupportedTaskError(f"method {spec.name!r} does not serve the {the_task.name!r} task (it serves: "
                                   f"{', '.join(sorted(spec.tasks))})" + (f"; {note}" if note else ""))
    strict_labels = loss_fn is None and isinstance(the_task, ClassificationTask)
    classes = tuple(sorted({int(c) for c in forget_classes})) if forget_classes is not None else None

    # --- validate everything before any heavy work --------------------------------------------------------------
    if spec.requires_forget and forget is None:
        raise UnsupportedRequestError(f"method {spec.name!r} needs the forget samples: pass forget=DataLoader")
    if spec.requires_retain and retain is None:
        raise UnsupportedRequestError(f"method {spec.name!r} needs retain data: pass retain=DataLoader")
    if spec.requires_val and val is None:
        raise UnsupportedRequestError(f"method {spec.name!r} needs held-out data from the training distribution "
                                      "(not the test set): pass val=DataLoader")
    if spec.requires_forget_classes and not classes:
        raise UnsupportedRequestError(f"method {spec.name!r} forgets whole classes: pass forget_classes=[...]; "
                                      "it cannot serve random-subset requests")
    if forget is None and not classes:
        raise DataError("nothing to forget: pass forget=DataLoader and/or forget_classes")
    if num_classes is not None and (isinstance(num_classes, bool) or not isinstance(num_classes, int)
                                    or num_classes < 1):
        raise DataError(f"num_classes must be a positive int, got {num_classes!r}")
    if classes and num_classes is not None and (classes[0] < 0 or classes[-1] >= num_classes):
        raise DataError(f"forget_classes {list(classes)} out of range: valid classes are 0..{num_classes - 1}")
    if device is not None:
        _device(device)
    scans = {name: _scan(name, loader) for name, loader in (("forget", forget), ("retain", retain), ("val", val))
             if loader is not None}
    if num_classes is not None:
        for sc in scans.values():
            _check_labels(sc, num_classes, strict=strict_labels)
    _check_overlap(scans.get("forget"), scans.get("retain"), forget, retain)
    problems = spec.validate_model(model)
    if problems:
        raise problems[0]

    dev = _device(device) if device is not None else _infer_device(model)
    work = model if inplace else copy.deepcopy(model)
    if device is not None:
        work.to(dev)
    width = _probe_shapes(work, (("forget", forget), ("retain", retain), ("val", val)), num_classes, dev, the_task)
    given = num_classes is not None
    if num_classes is None:
        num_classes = width
    if classes and num_classes is not None and (classes[0] < 0 or classes[-1] >= num_classes):
        raise DataError(f"forget_classes {list(classes)} out of range: valid classes are 0..{num_classes - 1} "
                        f"(the model has {num_classes} outputs)")
    if num_classes is not None and not given and strict_labels:
        # With the default cross-entropy a label outside the model's outputs would fail deep inside the method.
        for sc in scans.values():
            _check_labels(sc, num_classes, strict=True)

    if not isinstance(the_task, ClassificationTask):
        for sc in scans.values():
            if sc.y is not None and len(sc.y):
                msg = the_task.check_targets(sc.y, num_classes, sc.name)
                if msg:
                    raise DataError(msg)

    data = UnlearnData(forget=forget, retain=retain, val=val, forget_classes=classes, num_classes=num_classes,
                       device=dev, stats=stats, progress=progress, task=the_task, on_step=on_step)

    # --- run -----------------------------------------------------------------------------------------------------
    net: nn.Module = work
    if is_distributed():
        if not spec.supports_distributed:
            raise UnsupportedRequestError(f"method {spec.name!r} does not support torch.distributed runs; launch it "
                                          "as a single process")
        broadcast_module_(work)  # every rank starts from rank 0's weights
        if not spec.gradient_free and any(p.requires_grad for p in work.parameters()):
            # PyTorch's own engine averages the gradients of every backward pass across ranks; the method code is
            # unchanged (it sees a module that behaves like the model).
            from torch.nn.parallel import DistributedDataParallel

            net = DistributedDataParallel(work, device_ids=[dev.index] if dev.type == "cuda" else None)
    _warm_up_once()
    torch.manual_seed(config.seed)
    with _PeakMemory(dev) as mem, _single_example_batchnorm(work):
        t0 = time.perf_counter()
        history = spec.fn(net, data, config) or {}
        broadcast_module_(work, buffers_only=True)  # no-op in one process; syncs BN statistics under DDP
        if dev.type == "cuda":
            torch.cuda.synchronize(dev)
        seconds = time.perf_counter() - t0
    work.eval()
    result = UnlearnResult(model=work, method=spec.name, config=config.to_dict(), history=dict(history),
                           seconds=seconds, peak_memory_mb=max(mem.peak_mb, 0.0))
    bad = [k for k, v in work.state_dict().items() if v.is_floating_point() and not bool(torch.isfinite(v).all())]
    if bad:
        raise DivergedError(f"{spec.name} left non-finite (NaN/Inf) values in {bad[0]}"
                            + (f" and {len(bad) - 1} more tensors" if len(bad) > 1 else "")
                            + ": the run diverged; lower the learning rate or the number of steps (the error's "
                            "`result` holds the model" + (", which is the caller's own: inplace=True)" if inplace
                                                          else ")"), result)
    return result
