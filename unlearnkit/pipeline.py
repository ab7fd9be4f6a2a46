"""The experiment pipeline behind the CLI: data, cached original and retrained models, methods, evaluation.

One :class:`Experiment` per (dataset, model, recipe). Models are cached by content (see
:class:`~unlearnkit.checkpoints.ModelCache`): the original depends on (dataset hash, model, recipe, seed); the
retrained reference also on the forget set. Both are trained once and reused by every method, seed and re-run.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils.data import DataLoader

from .api import UnlearnResult, unlearn
from .checkpoints import ModelCache, atomic_write, build_from_checkpoint, save_checkpoint
from .data import load_dataset
from .data.base import DatasetSplits, LabeledDataset
from .distributed import barrier, broadcast_module_, broadcast_object, is_main_process
from .errors import ConfigError, UnlearnError, UnsupportedRequestError, UnsupportedTaskError
from .methods.base import MethodSpec, UnlearnConfig, get_method
from .models import build_model, get_model_spec
from .presets import method_overrides, train_recipe
from .requests import ForgetRequest, ForgetSplit
from .tasks import Task, get_task
from .training import TrainRecipe, record_layer_stats, train

__all__ = ["Experiment", "TrainedModel", "build_config", "code_fingerprint", "forget_ids_record", "parse_overrides"]

Log = Callable[[str], None]

# Part of every cache key: bump it when a change to the training loop changes what a recipe produces.
TRAINING_CODE_VERSION = 3


def code_fingerprint() -> str:
    """SHA-256 (16 hex digits) of every unlearnkit source file: results cached by ``unlearnkit run`` are reused
    only by the same code."""
    global _CODE_FP
    if _CODE_FP is None:
        root = Path(__file__).resolve().parent
        h = hashlib.sha256()
        for f in sorted(root.rglob("*.py")):
            h.update(str(f.relative_to(root)).encode())
            h.update(f.read_bytes())
        _CODE_FP = h.hexdigest()[:16]
    return _CODE_FP


_CODE_FP: str | None = None


def stats_path(checkpoint: Path) -> Path:
    """Where a checkpoint's recorded layer statistics live: ``<key>.stats.safetensors`` beside ``<key>.safetensors``."""
    return checkpoint.with_name(checkpoint.stem + ".stats.safetensors")


def save_stats(path: Path, stats: Any) -> None:
    """Write ``stats`` (a LayerStats) atomically (:func:`~unlearnkit.checkpoints.atomic_write`)."""
    atomic_write(path, stats.save)


def forget_ids_record(splits: DatasetSplits, split: ForgetSplit) -> dict[str, Any]:
    """What an ``ids:`` request named, for manifests and results: the id scheme, ``{user id: training index}``,
    and the requested ids found in the val/test splits (not trained on, so not forgotten)."""
    return {"scheme": splits.manifest.get("ids", "position in the training split"), "map": dict(split.id_map or {}),
            "held_out": {k: list(v) for k, v in split.held_out_ids.items()}}


@dataclass
class TrainedModel:
    model: nn.Module
    manifest: dict[str, Any]
    path: Path
    reused: bool
    stats_path: Path | None = None  # recorded layer statistics beside the checkpoint (``record_stats``)

    @property
    def seconds(self) -> float:
        return float(self.manifest.get("train_seconds", float("nan")))


def parse_overrides(items: list[str] | None) -> dict[str, dict[str, str]]:
    """``["finetune.epochs=3", "svd.alpha_f=30"]`` -> ``{"finetune": {"epochs": "3"}, "svd": {"alpha_f": "30"}}``."""
    out: dict[str, dict[str, str]] = {}
    for item in items or []:
        key, eq, value = item.partition("=")
        method, dot, fname = key.partition(".")
        if not eq or not dot or not method or not fname:
            raise ConfigError(f"cannot read --set {item!r}; write METHOD.FIELD=VALUE, e.g. finetune.epochs=3")
        out.setdefault(method.strip(), {})[fname.strip()] = value.strip()
    return out


def _coerce(cls: type[UnlearnConfig], name: str, raw: Any) -> Any:
    fields = {f.name: f for f in dataclasses.fields(cls)}
    if name not in fields:
        raise ConfigError(f"{cls.__name__} has no field {name!r}; fields: {', '.join(sorted(fields))}")
    if not isinstance(raw, str):
        return raw
    f = fields[name]
    default = f.default if f.default is not dataclasses.MISSING else None
    text = raw.strip()
    if text.lower() in ("none", "null", "auto") and (default is None or "None" in str(f.type)):
        return None
    typ = str(f.type)
    try:
        if typ.startswith("dict") or (f.default_factory is dict):  # type: ignore[comparison-overlap]
            value = json.loads(text)
            if not isinstance(value, dict):
                raise ValueError
            return value
        if isinstance(default, bool) or typ == "bool":
            if text.lower() not in ("true", "false", "1", "0", "yes", "no"):
                raise ValueError
            return text.lower() in ("true", "1", "yes")
        if isinstance(default, tuple) or typ.startswith("tuple"):
            items = [t.strip() for t in text.split(",") if t.strip()]
            return tuple(_finite(cls, name, _scalar(t)) for t in items)
        if isinstance(default, int) or typ.startswith("int"):
            return int(text)
        if isinstance(default, float) or typ.startswith("float") or "float" in typ:
            return _finite(cls, name, float(text))
    except ConfigError:
        raise
    except ValueError:
        hint = ' (write a JSON object, e.g. \'{"conv1": 0.9}\')' if typ.startswith("dict") else ""
        raise ConfigError(f"{cls.__name__}.{name}: cannot read {raw!r} as {typ}{hint}") from None
    return text


def _finite(cls: type, name: str, v: Any) -> Any:
    """``v`` unless it is a NaN or infinite float: ``--set finetune.lr=inf`` would train a NaN model whose forget
    accuracy of 0 reads like perfect forgetting."""
    if isinstance(v, float) and not math.isfinite(v):
        raise ConfigError(f"{cls.__name__}.{name} must be a finite number, got {v!r}")
    return v


def _scalar(t: str) -> int | float | str:
    """``t`` as an int, else a float, else the string itself (tuple fields hold numbers or names)."""
    for conv in (int, float):
        try:
            return conv(t)
        except ValueError:
            pass
    return t


def build_config(method: str, *, dataset: str, kind: str, seed: int,
                 overrides: dict[str, Any] | None = None) -> UnlearnConfig:
    """The config the CLI uses: method defaults, then presets, then ``--set`` overrides, then the seed."""
    spec = get_method(method)
    kw: dict[str, Any] = dict(method_overrides(method, dataset, kind))
    kw.update(overrides or {})
    kw = {k: _coerce(spec.config_cls, k, v) for k, v in kw.items()}
    kw["seed"] = seed
    return spec.config_cls(**kw)


class Experiment:
    """Trains or loads originals and references for one (dataset, model, recipe) and runs methods on them."""

    def __init__(self, dataset: str = "digits", model: str | None = None, *, model_kwargs: dict[str, Any] | None = None,
                 recipe: TrainRecipe | None = None, data_seed: int = 0, cache_dir: Path | str = ".unlearnkit_cache",
                 device: str | torch.device = "cpu", progress: bool = True, log: Log = print,
                 label_column: str | None = None, record_stats: bool = False,
                 data_options: dict[str, Any] | None = None) -> None:
        from .presets import DEFAULT_MODEL

        self.dataset_spec = dataset
        self.model_name = model or DEFAULT_MODEL.get(dataset.split(":", 1)[0], "mlp")
        self.model_kwargs = dict(model_kwargs or {})
        self.recipe = recipe or train_recipe(dataset, self.model_name)
        self.data_seed = data_seed
        self.cache = ModelCache(cache_dir)
        self.device = torch.device(device)
        self.progress = progress
        self.log = log
        self.label_column = label_column
        self.data_options = dict(data_options or {})  # more load_dataset options (csv: header, id_column)
        # Originals get pgu's layer statistics (C_full) recorded by the training loop and stored beside the checkpoint.
        self.record_stats = bool(record_stats)
        self._splits: DatasetSplits | None = None
        self._arch: str | None = None

    # --- data ------------------------------------------------------------------------------------------------------
    @property
    def splits(self) -> DatasetSplits:
        if self._splits is None:
            self._splits = load_dataset(self.dataset_spec, seed=self.data_seed, label_column=self.label_column,
                                        **self.data_options)
            if self._splits.manifest.get("task", "classification") != "classification":
                task = self._splits.manifest["task"]
                self._splits = None
                raise UnsupportedTaskError(
                    f"dataset {self.dataset_spec!r} is a {task} task, which the evaluator and reports do not handle "
                    f"yet; use the Python API: unlearnkit.unlearn(..., task={task!r})")
            # Text datasets name the options a token model needs (vocab_size, pad_id); the user's own win.
            options = get_model_spec(self.model_name).options
            given = {k: self._splits.manifest[k] for k in ("vocab_size", "pad_id")
                     if k in self._splits.manifest and k in options}
            self.model_kwargs = {**given, **self.model_kwargs}
        return self._splits

    @property
    def task(self) -> Task:
        """The dataset's task (``classification`` unless its manifest says otherwise)."""
        return get_task(self.splits.manifest.get("task"))

    def resolve(self, request: str | ForgetRequest, seed: int) -> ForgetSplit:
        req = ForgetRequest.parse(request) if isinstance(request, str) else request
        s = self.splits
        return req.resolve(s.train, class_names=s.class_names, seed=seed, sub_names=s.sub_names,
                           held_out={"val": s.val, "test": s.test})

    # --- models ----------------------------------------------------------------------------------------------------
    def model_spec(self) -> dict[str, Any]:
        s = self.splits
        return {"name": self.model_name, "kwargs": self.model_kwargs, "input_shape": list(s.input_shape),
                "num_classes": s.num_classes}

    def new_model(self, seed: int) -> nn.Module:
        torch.manual_seed(int(seed))
        s = self.splits
        return build_model(self.model_name, s.input_shape, s.num_classes, **self.model_kwargs).to(self.device)

    def arch_signature(self) -> str:
        """Hash of the model's parameter and buffer names and shapes: part of every cache key, so that a change to
        an architecture's code never loads checkpoints of the old layout."""
        if self._arch is None:
            with torch.random.fork_rng(devices=[]):
                s = self.splits
                net = build_model(self.model_name, s.input_shape, s.num_classes, **self.model_kwargs)
            desc = ";".join(f"{k}:{tuple(v.shape)}" for k, v in net.state_dict().items())
            self._arch = hashlib.sha256(desc.encode()).hexdigest()[:16]
        return self._arch

    def _trained(self, role: str, seed: int, data: LabeledDataset, extra: dict[str, Any],
                 info: dict[str, Any] | None = None) -> TrainedModel:
        # The CPU thread count changes the order of floating-point sums, hence the weights: it is part of the key.
        # One thread (the default) adds nothing, so caches keyed before the count was recorded stay valid as
        # one-thread models (a cache filled with more threads before then is reused, not bit-identical).
        threads = torch.get_num_threads() if self.device.type == "cpu" else None
        by_threads = {} if threads in (None, 1) else {"threads": threads}
        key = self.cache.key(role=role, dataset=self.splits.hash, model=self.model_spec(), arch=self.arch_signature(),
                             recipe=self.recipe.to_dict(), seed=int(seed), code=TRAINING_CODE_VERSION,
                             **by_threads, **extra)
        # Rank 0 decides whether the cache holds the model, so all ranks take the same branch (a collective
        # training run on some ranks only would hang); others receive rank 0's weights if their disk lacks it.
        record = self.record_stats and role == "original"
        hit = broadcast_object(self.cache.get(key) if is_main_process() else None)
        if hit is not None:
            if is_main_process() or Path(hit).is_file():
                model, man = build_from_checkpoint(hit, self.device)
            else:
                model, man = self.new_model(seed), {}
            man = broadcast_object(man)
            broadcast_module_(model)
            self.log(f"reusing cached {role} model (seed {seed}) from {hit}")
            tm = TrainedModel(model.eval(), man, Path(hit), reused=True)
            if record:
                tm.stats_path = self._ensure_stats(tm, data, seed)
            return tm
        model = self.new_model(seed)
        self.log(f"training {role} model (seed {seed}, {len(data)} examples, {self.recipe.epochs} epochs)")
        tlog = train(model, data, recipe=self.recipe, seed=seed, device=self.device, progress=self.progress,
                     desc=f"{role} s{seed}", record_stats=record, task=self.task)
        man = {"role": role, "dataset": self.splits.manifest, "model": self.model_spec(),
               "recipe": self.recipe.to_dict(), "seed": int(seed), "train_seconds": tlog.seconds, "threads": threads,
               "final_train_loss": tlog.epoch_losses[-1] if tlog.epoch_losses else None, **extra, **(info or {})}
        path = self.cache.path(key)
        if is_main_process():
            save_checkpoint(path, model, man)
            if tlog.stats is not None:
                save_stats(stats_path(path), tlog.stats)
                self.log(f"recorded layer statistics in {tlog.stats_seconds:.1f}s: {stats_path(path)}")
        barrier()
        return TrainedModel(model.eval(), man, path, reused=False, stats_path=stats_path(path) if record else None)

    def _ensure_stats(self, tm: TrainedModel, data: LabeledDataset, seed: int) -> Path:
        """The statistics file of a cached model; recorded now (same pass as the training loop's) if missing or
        not from these weights."""
        from .methods.pgu import LayerStats, weights_fingerprint

        path = stats_path(tm.path)
        ok = False
        if is_main_process() and path.is_file():
            try:
                ok = LayerStats.load(path).meta.get("model_hash") == weights_fingerprint(tm.model)
            except UnlearnError:
                ok = False
        if not broadcast_object(ok if is_main_process() else None):
            t0 = time.perf_counter()
            st = record_layer_stats(tm.model, data, seed=seed, device=self.device, progress=self.progress)
            if is_main_process():
                save_stats(path, st)
            barrier()
            self.log(f"recorded layer statistics of the cached model in {time.perf_counter() - t0:.1f}s: {path}")
        return path

    def original(self, seed: int) -> TrainedModel:
        return self._trained("original", seed, self.splits.train, {})

    def retrained(self, split: ForgetSplit, seed: int) -> TrainedModel:
        # ids: requests record which user id is which training example (not part of the key: forget_hash is).
        info = {"forget_ids": forget_ids_record(self.splits, split)} if split.id_map is not None else None
        return self._trained("retrain", seed, split.retain_set(self.splits.train),
                             {"request": str(split.request), "forget_hash": split.key}, info)

    # --- methods ---------------------------------------------------------------------------------------------------
    def check_supported(self, spec: MethodSpec, split: ForgetSplit) -> str | None:
        """None if ``spec`` can serve ``split``; otherwise the reason (for "n/a" cells)."""
        kind = split.request.kind
        if kind not in spec.supported_requests:
            ok = ", ".join(sorted(spec.supported_requests))
            return f"{spec.name} does not support {kind} requests (supports: {ok})"
        if spec.requires_forget_classes and not split.forget_classes:
            return f"{spec.name} needs whole forgotten classes"
        if self.task.name not in spec.tasks:
            return f"{spec.name} does not serve the {self.task.name} task" + (f" ({spec.task_note})"
                                                                              if spec.task_note else "")
        return None

    def evaluator(self, split: ForgetSplit, seed: int) -> Any:
        """The :class:`~unlearnkit.evaluation.Evaluator` for ``split``: its forget and retain sets, this dataset's
        test and val splits, seeded with ``seed``."""
        from .evaluation import EvalSets, Evaluator

        s = self.splits
        return Evaluator(EvalSets(forget=split.forget_set(s.train), retain=split.retain_set(s.train), test=s.test,
                                  val=s.val, forget_classes=split.forget_classes, num_classes=s.num_classes),
                         device=self.device, seed=seed)

    def loaders(self, split: ForgetSplit, batch_size: int = 128) -> dict[str, DataLoader]:
        s = self.splits
        return {"forget": DataLoader(split.forget_set(s.train), batch_size=batch_size),
                "retain": DataLoader(split.retain_set(s.train), batch_size=batch_size),
                "val": DataLoader(s.val, batch_size=batch_size)}

    def run_method(self, method: str, original: nn.Module, split: ForgetSplit, seed: int,
                   overrides: dict[str, Any] | None = None, stats: Any = None,
                   config: UnlearnConfig | None = None) -> tuple[UnlearnResult, UnlearnConfig]:
        """Run ``method`` on a copy of ``original`` for ``split``, with ``config`` if given, else the CLI's config
        (:func:`build_config` with ``overrides``). With ``stats`` (recorded layer statistics, or their path), a
        method flagged ``uses_recorded_stats`` that does not require retain data gets no retain data."""
        spec = get_method(method)
        reason = self.check_supported(spec, split)
        if reason:
            raise UnsupportedRequestError(reason)
        cfg = config if config is not None else build_config(method, dataset=self.dataset_spec,
                                                             kind=split.request.kind, seed=seed, overrides=overrides)
        ld = self.loaders(split)
        # With recorded statistics a method that can use them runs without the retain data (pgu's selling point).
        retain = None if stats is not None and spec.uses_recorded_stats and not spec.requires_retain else ld["retain"]
        t0 = time.perf_counter()
        res = unlearn(original, forget=ld["forget"], retain=retain, val=ld["val"], config=cfg,
                      forget_classes=split.forget_classes, num_classes=self.splits.num_classes,
                      stats=stats, device=self.device, progress=self.progress, task=self.task)
        self.log(f"{method} (seed {seed}) took {res.seconds:.2f}s (with checks {time.perf_counter() - t0:.2f}s)")
        return res, cfg
