"""The ``unlearn()`` façade: validate, copy the model (unless ``inplace``), seed, dispatch on the config, time."""

from __future__ import annotations

import copy
import os
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn
from torch.utils.data import DataLoader

from .distributed import broadcast_module_, is_distributed
from .errors import DataError, IncompatibleModelError, UnsupportedRequestError
from .methods.base import History, MethodSpec, UnlearnConfig, UnlearnData, default_loss, method_for_config

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


def _dataset_tensors(loader: DataLoader | None) -> tuple[torch.Tensor | None, torch.Tensor | None, Any]:
    ds = getattr(loader, "dataset", None)
    return getattr(ds, "x", None), getattr(ds, "y", None), getattr(ds, "ids", None)


def _check_loader(name: str, loader: DataLoader | None, num_classes: int | None) -> None:
    if loader is None:
        return
    if not isinstance(loader, DataLoader):
        raise DataError(f"{name} must be a torch DataLoader (or None), got {type(loader).__name__}")
    try:
        n = len(loader.dataset)  # type: ignore[arg-type]
    except TypeError:
        n = None
    if n == 0:
        raise DataError(f"the {name} set is empty: pass at least one example, or {name}=None if the method "
                        "does not need it")
    x, y, _ = _dataset_tensors(loader)
    if x is not None and x.is_floating_point() and not torch.isfinite(x).all():
        raise DataError(f"the {name} set contains NaN or Inf inputs: clean or drop those rows first")
    if y is not None and num_classes is not None and len(y) and (int(y.min()) < 0 or int(y.max()) >= num_classes):
        raise DataError(f"{name} labels must lie in [0, {num_classes - 1}], got range "
                        f"[{int(y.min())}, {int(y.max())}]")


def _check_overlap(forget: DataLoader | None, retain: DataLoader | None) -> None:
    if forget is None or retain is None:
        return
    fds, rds = forget.dataset, retain.dataset
    if fds is rds:
        raise DataError("forget and retain are the same dataset: the retain set must exclude the forget set")
    _, _, fids = _dataset_tensors(forget)
    _, _, rids = _dataset_tensors(retain)
    if isinstance(fids, torch.Tensor) and isinstance(rids, torch.Tensor):
        both = torch.isin(fids, rids)
        if bool(both.any()):
            ex = fids[both][:5].tolist()
            raise DataError(f"{int(both.sum())} examples are in both the forget and the retain set (ids {ex}...): "
                            "remove the forget examples from the retain set")


def _probe_shapes(model: nn.Module, loaders: Iterable[tuple[str, DataLoader | None]], num_classes: int | None,
                  device: torch.device) -> None:
    """One forward pass on a single example of each loader: catches shape mismatches before any heavy work."""
    was = model.training
    model.eval()
    try:
        with torch.no_grad():
            for name, loader in loaders:
                if loader is None:
                    continue
                ds = loader.dataset
                x0 = ds[0][0].unsqueeze(0).to(device)  # type: ignore[index]
                try:
                    out = model(x0)
                except RuntimeError as e:
                    raise DataError(f"the model cannot take the {name} inputs of shape {tuple(x0.shape[1:])}: "
                                    f"{str(e).splitlines()[0]}") from None
                if not isinstance(out, torch.Tensor) or out.ndim != 2:
                    raise IncompatibleModelError("the model must map a batch to logits of shape "
                                                 f"(batch, classes); got {getattr(out, 'shape', type(out))}")
                if num_classes is not None and out.shape[1] != num_classes:
                    raise DataError(f"the model outputs {out.shape[1]} logits but num_classes={num_classes}")
    finally:
        model.train(was)


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


def _infer_device(model: nn.Module) -> torch.device:
    for p in model.parameters():
        return p.device
    return torch.device("cpu")


def unlearn(model: nn.Module, *, forget: DataLoader | None, retain: DataLoader | None = None,
            config: UnlearnConfig, val: DataLoader | None = None,
            forget_classes: Iterable[int] | None = None, num_classes: int | None = None,
            loss_fn: Callable[..., torch.Tensor] | None = None, stats: Any = None,
            device: torch.device | str | None = None, inplace: bool = False,
            progress: bool = False) -> UnlearnResult:
    """Remove the influence of ``forget`` from ``model`` with the method that ``config``'s type selects.

    Args:
        model: any classifier ``nn.Module`` mapping a batch to logits ``(batch, classes)``.
        forget: loader of the examples to forget, yielding ``(x, y)``; ``None`` only for methods that work from
            class ids alone (``unsir``).
        retain: loader of (a subset of) the remaining training data, for methods that need it.
        config: a method config, e.g. ``unlearnkit.FinetuneConfig(epochs=2)``; its type selects the method.
        val: held-out data from the training distribution (never the test set), for methods that need it.
        forget_classes: the forgotten class ids for class-wise requests (required by class-only methods).
        num_classes: number of classes; inferred from a forward pass when omitted.
        loss_fn: ``loss_fn(logits, y, reduction=...)``; cross-entropy by default.
        stats: training-time statistics a method may use (``pgu``'s recorded Gram matrices).
        device: where to run; by default where the model's parameters are. The model is moved there only
            when ``device`` is given explicitly.
        inplace: modify ``model`` itself; by default a deep copy is unlearned and ``model`` is left untouched.
        progress: show progress bars.

    Under torch.distributed (launched with ``torchrun``), every rank calls ``unlearn`` with the same arguments: the
    model is wrapped in DistributedDataParallel for methods flagged ``supports_distributed``, data that the method
    re-batches is sharded across ranks (the config's batch size stays the global batch), global statistics are
    all-reduced, and every rank ends with the same weights.

    Returns:
        An :class:`UnlearnResult` holding the unlearned model, the history and the wall time.

    Raises:
        ConfigError: the config is not a registered method's config.
        DataError: an empty forget set, NaN inputs, overlapping forget/retain sets, labels out of range, or
            inputs the model cannot take.
        UnsupportedRequestError: the method needs data or class ids that were not given.
        IncompatibleModelError: the model lacks what the method needs.
    """
    spec: MethodSpec = method_for_config(config)
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
    if classes and num_classes is not None and (classes[0] < 0 or classes[-1] >= num_classes):
        raise DataError(f"forget_classes {list(classes)} out of range: valid classes are 0..{num_classes - 1}")
    for name, loader in (("forget", forget), ("retain", retain), ("val", val)):
        _check_loader(name, loader, num_classes)
    _check_overlap(forget, retain)
    problems = spec.validate_model(model)
    if problems:
        raise problems[0]

    dev = torch.device(device) if device is not None else _infer_device(model)
    work = model if inplace else copy.deepcopy(model)
    if device is not None:
        work.to(dev)
    _probe_shapes(work, (("forget", forget), ("retain", retain)), num_classes, dev)
    if num_classes is None:
        probe = forget or retain
        if probe is not None:
            with torch.no_grad():
                was = work.training
                work.eval()
                num_classes = int(work(probe.dataset[0][0].unsqueeze(0).to(dev)).shape[1])  # type: ignore[index]
                work.train(was)
    if classes and num_classes is not None and classes[-1] >= num_classes:
        raise DataError(f"forget_classes {list(classes)} out of range: valid classes are 0..{num_classes - 1}")

    data = UnlearnData(forget=forget, retain=retain, val=val, forget_classes=classes, num_classes=num_classes,
                       device=dev, loss_fn=loss_fn or default_loss, stats=stats, progress=progress)

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
    return UnlearnResult(model=work, method=spec.name, config=config.to_dict(), history=dict(history),
                         seconds=seconds, peak_memory_mb=max(mem.peak_mb, 0.0))
