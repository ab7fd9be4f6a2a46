"""The experiment pipeline behind the CLI: data, cached original and retrained models, methods, evaluation.

One :class:`Experiment` per (dataset, model, recipe), made of three roles that can each be built, read and tested
alone: :class:`ExperimentData` (splits, resolved requests, loaders, the evaluator of a request), :class:`ModelStore`
(architecture, training and the model cache) and :class:`MethodRunner` (a method's CLI config and the one call to
:func:`~unlearnkit.unlearn` behind ``run``, ``bench``, ``audit`` and the ledger). Models are cached by content (see
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
from .defaults import DataSizes, rule_overrides
from .defaults import resolve as resolve_defaults
from .distributed import barrier, broadcast_module_, broadcast_object, is_main_process
from .errors import ConfigError, UnlearnError, UnsupportedRequestError, UnsupportedTaskError
from .methods.base import MethodSpec, UnlearnConfig, get_method
from .models import build_model, get_model_spec, model_identity
from .presets import method_overrides, train_recipe
from .requests import ForgetRequest, ForgetSplit
from .tasks import Task, get_task
from .training import TrainRecipe, record_layer_stats, train

__all__ = ["Experiment", "ExperimentData", "MethodRunner", "ModelStore", "TrainedModel", "build_config",
           "build_config_provenance", "check_supported", "code_fingerprint", "forget_ids_record", "parse_overrides"]

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


def build_config(method: str, *, dataset: str, kind: str, seed: int, overrides: dict[str, Any] | None = None,
                 sizes: DataSizes | None = None, tuned: dict[str, Any] | None = None) -> UnlearnConfig:
    """The config the CLI uses: method defaults, then data rules (with ``sizes``), presets, a tuned file's values,
    ``--set`` overrides, then the seed (:func:`build_config_provenance` also says where each value came from)."""
    return build_config_provenance(method, dataset=dataset, kind=kind, seed=seed, overrides=overrides, sizes=sizes,
                                   tuned=tuned)[0]


def build_config_provenance(method: str, *, dataset: str, kind: str, seed: int,
                            overrides: dict[str, Any] | None = None, sizes: DataSizes | None = None,
                            tuned: dict[str, Any] | None = None) -> tuple[UnlearnConfig, dict[str, dict[str, Any]]]:
    """:func:`build_config` and ``{field: {"source": rule|preset|tuned file|--set, "why"?}}`` of every value that
    is not the config's default (:func:`unlearnkit.defaults.resolve`)."""
    spec = get_method(method)
    kw, prov = resolve_defaults(method, sizes=sizes, preset=method_overrides(method, dataset, kind), tuned=tuned,
                                overrides=overrides)
    kw = {k: _coerce(spec.config_cls, k, v) for k, v in kw.items()}
    kw["seed"] = seed
    cfg = spec.config_cls(**kw)
    # A preset that states the same value as the rule is reported as the rule (the preset is then redundant).
    for f, (v, why) in rule_overrides(method, sizes).items():
        if prov.get(f, {}).get("source") == "preset" and getattr(cfg, f, None) == v:
            prov[f] = {"source": "rule", "why": why}
    return cfg, prov


def check_supported(spec: MethodSpec, split: ForgetSplit, task: Task | None = None) -> str | None:
    """None if ``spec`` can serve ``split`` (on ``task``, when given); otherwise the reason (for "n/a" cells and
    one-line errors)."""
    kind = split.request.kind
    if kind not in spec.supported_requests:
        ok = ", ".join(sorted(spec.supported_requests))
        return f"{spec.name} does not support {kind} requests (supports: {ok})"
    if spec.requires_forget_classes and not split.forget_classes:
        return f"{spec.name} needs whole forgotten classes"
    return task_reason(spec, task) if task is not None else None


def task_reason(spec: MethodSpec, task: Task) -> str | None:
    """None if ``spec`` serves ``task``; otherwise the method's one-line capability message."""
    if task.name not in spec.tasks:
        return f"{spec.name} does not serve the {task.name} task" + (f" ({spec.task_note})" if spec.task_note else "")
    return None


def methods_for_task(methods: list[str], task: Task, *, explicit: bool, log: Log = print) -> list[str]:
    """``methods`` that serve ``task``. A method named explicitly that does not is an error (its capability
    message, :class:`UnsupportedTaskError`); under ``--methods all`` (``explicit=False``) it is skipped with a
    warning line."""
    keep = []
    for name in methods:
        reason = task_reason(get_method(name), task)
        if reason is None:
            keep.append(name)
        elif explicit:
            raise UnsupportedTaskError(f"{reason}; drop it from --methods")
        else:
            log(f"warning: skipping {name}: {reason}")
    if not keep:
        raise UnsupportedTaskError(f"none of the methods serves the {task.name} task")
    return keep


class ExperimentData:
    """The data role: one dataset's splits (loaded once), forget requests resolved on them, their loaders and the
    evaluator of a request. Knows nothing of models or methods."""

    def __init__(self, dataset: str = "digits", *, data_seed: int = 0, label_column: str | None = None,
                 data_options: dict[str, Any] | None = None) -> None:
        self.dataset_spec = dataset
        self.data_seed = data_seed
        self.label_column = label_column
        self.data_options = dict(data_options or {})  # more load_dataset options (csv: header, id_column)
        self._splits: DatasetSplits | None = None

    @property
    def splits(self) -> DatasetSplits:
        if self._splits is None:
            self._splits = load_dataset(self.dataset_spec, seed=self.data_seed, label_column=self.label_column,
                                        **self.data_options)
        return self._splits

    @property
    def task(self) -> Task:
        """The dataset's task (``classification`` unless its manifest says otherwise)."""
        return get_task(self.splits.manifest.get("task"))

    def require_classification(self, what: str) -> None:
        """Raise :class:`UnsupportedTaskError` (one line) when the dataset's task is not classification: for the
        commands and requests defined only for single-label classes (``what`` names them)."""
        task = self.task.name
        if task != "classification":
            raise UnsupportedTaskError(f"{what} supports single-label classification datasets only; "
                                       f"{self.dataset_spec!r} is a {task} task")

    def resolve(self, request: str | ForgetRequest, seed: int) -> ForgetSplit:
        req = ForgetRequest.parse(request) if isinstance(request, str) else request
        if req.kind in ("class", "subclass") and self.task.name != "classification":
            raise UnsupportedTaskError(f"{req.kind}: requests are not defined on the {self.task.name} dataset "
                                       f"{self.dataset_spec!r} (an example carries several labels); forget a "
                                       "random: or ids: set instead")
        s = self.splits
        return req.resolve(s.train, class_names=s.class_names, seed=seed, sub_names=s.sub_names,
                           held_out={"val": s.val, "test": s.test})

    def loaders(self, split: ForgetSplit, batch_size: int = 128) -> dict[str, DataLoader]:
        s = self.splits
        return {"forget": DataLoader(split.forget_set(s.train), batch_size=batch_size),
                "retain": DataLoader(split.retain_set(s.train), batch_size=batch_size),
                "val": DataLoader(s.val, batch_size=batch_size)}

    def evaluator(self, split: ForgetSplit, seed: int, device: str | torch.device = "cpu", *,
                  val_as_test: bool = False) -> Any:
        """The :class:`~unlearnkit.evaluation.Evaluator` for ``split``: its forget and retain sets, this dataset's
        test and val splits, seeded with ``seed``. ``val_as_test`` puts the val split in the held-out role and leaves
        the test split out (``unlearnkit tune``'s objective never reads test)."""
        from .evaluation import EvalSets, Evaluator

        s = self.splits
        test, val = (s.val, None) if val_as_test else (s.test, s.val)
        return Evaluator(EvalSets(forget=split.forget_set(s.train), retain=split.retain_set(s.train), test=test,
                                  val=val, forget_classes=split.forget_classes, num_classes=s.num_classes,
                                  task=self.task),
                         device=device, seed=seed)


class ModelStore:
    """The model role: builds the architecture and trains or loads originals, retrained references and shadows,
    cached by content (dataset hash, model, architecture, recipe, seed, and the training subset's identity)."""

    def __init__(self, data: ExperimentData, model: str | None = None, *, model_kwargs: dict[str, Any] | None = None,
                 recipe: TrainRecipe | None = None, cache_dir: Path | str = ".unlearnkit_cache",
                 device: str | torch.device = "cpu", progress: bool = True, log: Log = print,
                 record_stats: bool = False) -> None:
        from .presets import DEFAULT_MODEL

        self.data = data
        self.model_name = model or DEFAULT_MODEL.get(data.dataset_spec.split(":", 1)[0], "mlp")
        self.model_kwargs = dict(model_kwargs or {})
        self.recipe = recipe or train_recipe(data.dataset_spec, self.model_name)
        self.cache = ModelCache(cache_dir)
        self.device = torch.device(device)
        self.progress = progress
        self.log = log
        # Originals get pgu's layer statistics (C_full) recorded by the training loop and stored beside the checkpoint.
        self.record_stats = bool(record_stats)
        self._arch: str | None = None
        self._probe: nn.Module | None = None

    def kwargs(self) -> dict[str, Any]:
        """The model's options: those a text dataset names for a token model (``vocab_size``, ``pad_id``, from its
        manifest) when the model takes them, then the caller's (which win)."""
        options = get_model_spec(self.model_name).options
        man = self.data.splits.manifest
        given = {k: man[k] for k in ("vocab_size", "pad_id") if k in man and k in options}
        return {**given, **self.model_kwargs}

    def model_spec(self) -> dict[str, Any]:
        s = self.data.splits
        # NAME:VALUE models (hf:DIR) add what identifies VALUE (a hash of the directory's files) to every cache key
        return {"name": self.model_name, "kwargs": self.kwargs(), "input_shape": list(s.input_shape),
                "num_classes": s.num_classes, **model_identity(self.model_name)}

    def new_model(self, seed: int) -> nn.Module:
        torch.manual_seed(int(seed))
        s = self.data.splits
        return build_model(self.model_name, s.input_shape, s.num_classes, **self.kwargs()).to(self.device)

    def arch_signature(self) -> str:
        """Hash of the model's parameter and buffer names and shapes: part of every cache key, so that a change to
        an architecture's code never loads checkpoints of the old layout."""
        if self._arch is None:
            with torch.random.fork_rng(devices=[]):
                s = self.data.splits
                net = build_model(self.model_name, s.input_shape, s.num_classes, **self.kwargs())
            desc = ";".join(f"{k}:{tuple(v.shape)}" for k, v in net.state_dict().items())
            self._arch = hashlib.sha256(desc.encode()).hexdigest()[:16]
        return self._arch

    def model_reason(self, spec: MethodSpec) -> str | None:
        """None if ``spec``'s model check (``MethodSpec.validate_model``) accepts this architecture; otherwise its
        first message. The check runs on an untrained instance (it inspects structure, not weights)."""
        if self._probe is None:
            with torch.random.fork_rng(devices=[]):
                s = self.data.splits
                self._probe = build_model(self.model_name, s.input_shape, s.num_classes, **self.kwargs())
        problems = spec.validate_model(self._probe)
        return str(problems[0]) if problems else None

    def trained(self, role: str, seed: int, data: LabeledDataset, extra: dict[str, Any],
                info: dict[str, Any] | None = None) -> TrainedModel:
        """A model of ``role`` trained on ``data`` with this store's recipe and ``seed``, from the cache or trained
        now (and cached). ``extra`` goes into the cache key and the manifest (it must name what makes ``data``
        this subset, e.g. the forget set's hash); ``info`` only into the manifest."""
        # The CPU thread count changes the order of floating-point sums, hence the weights: it is part of the key.
        # One thread (the default) adds nothing, so caches keyed before the count was recorded stay valid as
        # one-thread models (a cache filled with more threads before then is reused, not bit-identical).
        threads = torch.get_num_threads() if self.device.type == "cpu" else None
        by_threads = {} if threads in (None, 1) else {"threads": threads}
        splits = self.data.splits
        key = self.cache.key(role=role, dataset=splits.hash, model=self.model_spec(), arch=self.arch_signature(),
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
                tm.stats_path = self.ensure_stats(tm, data, seed)
            return tm
        model = self.new_model(seed)
        self.log(f"training {role} model (seed {seed}, {len(data)} examples, {self.recipe.epochs} epochs)")
        tlog = train(model, data, recipe=self.recipe, seed=seed, device=self.device, progress=self.progress,
                     desc=f"{role} s{seed}", record_stats=record, task=self.data.task)
        man = {"role": role, "dataset": splits.manifest, "model": self.model_spec(),
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

    def ensure_stats(self, tm: TrainedModel, data: LabeledDataset, seed: int) -> Path:
        """The statistics file of a cached model; recorded now (same pass as the training loop's) if missing or
        not from these weights."""
        from .stats import LayerStats, weights_fingerprint

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
        return self.trained("original", seed, self.data.splits.train, {})

    def retrained(self, split: ForgetSplit, seed: int) -> TrainedModel:
        # ids: requests record which user id is which training example (not part of the key: forget_hash is).
        splits = self.data.splits
        info = {"forget_ids": forget_ids_record(splits, split)} if split.id_map is not None else None
        return self.trained("retrain", seed, split.retain_set(splits.train),
                            {"request": str(split.request), "forget_hash": split.key}, info)


class MethodRunner:
    """The method role: builds the CLI's config of a method (:func:`build_config`) and runs it on a copy of a model
    through :func:`unlearnkit.unlearn`, for a resolved request or for explicit forget/retain index sets (the
    bench's sequential steps, the audit's shadows). The one place the pipeline calls ``unlearn``."""

    def __init__(self, data: ExperimentData, models: ModelStore | None = None, *, device: str | torch.device = "cpu",
                 progress: bool = True, log: Log = print, batch_size: int = 128) -> None:
        self.data = data
        self.models = models  # the training recipe's optimizer (a rule input) and where tuned files live
        self.device = torch.device(device)
        self.progress = progress
        self.log = log
        self.batch_size = batch_size

    # --- settings --------------------------------------------------------------------------------------------------
    def sizes(self, split: ForgetSplit) -> DataSizes:
        """The data sizes the rules of :mod:`unlearnkit.defaults` see for ``split``."""
        opt = self.models.recipe.optimizer if self.models is not None else None
        return DataSizes.of(self.data.splits, split, optimizer=opt)

    def tuned_file(self, method: str, split: ForgetSplit) -> Path | None:
        """Where ``unlearnkit tune`` keeps ``method``'s tuned values for requests like ``split`` on these data (None
        without a model store: no cache)."""
        from .tuned import request_size, tuned_path

        if self.models is None:
            return None
        req = split.request
        size = request_size(req.kind, n_forget=len(split.forget_idx), n_forget_classes=len(split.forget_classes or ()),
                            fraction=req.fraction)
        return tuned_path(self.models.cache.root, dataset_hash=self.data.splits.hash, model=self.models.model_name,
                          kind=req.kind, size=size, method=method)

    def config_for(self, method: str, split: ForgetSplit, seed: int, overrides: dict[str, Any] | None = None,
                   *, use_tuned: bool = True) -> tuple[UnlearnConfig, dict[str, dict[str, Any]]]:
        """The CLI's config for ``method`` on ``split`` and where each non-default value came from: rules of the
        data sizes, named presets, a tuned file in the cache (if ``use_tuned`` and one exists), ``overrides``."""
        from .tuned import load_tuned

        path = self.tuned_file(method, split) if use_tuned else None
        tuned = load_tuned(path) if path is not None else None
        return build_config_provenance(method, dataset=self.data.dataset_spec, kind=split.request.kind, seed=seed,
                                       overrides=overrides, sizes=self.sizes(split), tuned=tuned)

    def run_on(self, config: UnlearnConfig, model: nn.Module, forget_idx: Any, retain_idx: Any, *,
               forget_classes: tuple[int, ...] | None, stats: Any = None, retain: bool = True,
               progress: bool | None = None) -> UnlearnResult:
        """Unlearn training examples ``forget_idx`` from a copy of ``model``, with ``retain_idx`` as the retain set
        (none when ``retain`` is False) and the val split as held-out data; progress bars as the runner's unless
        ``progress`` says otherwise."""
        s, bs = self.data.splits, self.batch_size
        return unlearn(model, forget=DataLoader(s.train.subset(forget_idx), batch_size=bs),
                       retain=DataLoader(s.train.subset(retain_idx), batch_size=bs) if retain else None,
                       val=DataLoader(s.val, batch_size=bs), config=config, forget_classes=forget_classes,
                       num_classes=s.num_classes, stats=stats, device=self.device,
                       progress=self.progress if progress is None else progress, task=self.data.task)

    def run(self, method: str, original: nn.Module, split: ForgetSplit, seed: int,
            overrides: dict[str, Any] | None = None, stats: Any = None,
            config: UnlearnConfig | None = None) -> tuple[UnlearnResult, UnlearnConfig]:
        """Run ``method`` on a copy of ``original`` for ``split``, with ``config`` if given, else the CLI's config
        (:func:`build_config` with ``overrides``). With ``stats`` (recorded layer statistics, or their path), a
        method flagged ``uses_recorded_stats`` that does not require retain data gets no retain data."""
        spec = get_method(method)
        reason = check_supported(spec, split, self.data.task)
        if reason:
            raise UnsupportedRequestError(reason)
        cfg = config if config is not None else self.config_for(method, split, seed, overrides)[0]
        # With recorded statistics a method that can use them runs without the retain data (pgu's selling point).
        with_retain = not (stats is not None and spec.uses_recorded_stats and not spec.requires_retain)
        t0 = time.perf_counter()
        res = self.run_on(cfg, original, split.forget_idx, split.retain_idx, forget_classes=split.forget_classes,
                          stats=stats, retain=with_retain)
        self.log(f"{method} (seed {seed}) took {res.seconds:.2f}s (with checks {time.perf_counter() - t0:.2f}s)")
        return res, cfg


class Experiment:
    """One (dataset, model, recipe) as the CLI sees it: the three roles, :attr:`data` (:class:`ExperimentData`),
    :attr:`models` (:class:`ModelStore`) and :attr:`runner` (:class:`MethodRunner`), built from one set of options.
    Each role can be built and used alone; the methods here are the shortest names for what the commands need."""

    def __init__(self, dataset: str = "digits", model: str | None = None, *, model_kwargs: dict[str, Any] | None = None,
                 recipe: TrainRecipe | None = None, data_seed: int = 0, cache_dir: Path | str = ".unlearnkit_cache",
                 device: str | torch.device = "cpu", progress: bool = True, log: Log = print,
                 label_column: str | None = None, record_stats: bool = False,
                 data_options: dict[str, Any] | None = None) -> None:
        self.data = ExperimentData(dataset, data_seed=data_seed, label_column=label_column, data_options=data_options)
        self.models = ModelStore(self.data, model, model_kwargs=model_kwargs, recipe=recipe, cache_dir=cache_dir,
                                 device=device, progress=progress, log=log, record_stats=record_stats)
        self.runner = MethodRunner(self.data, self.models, device=device, progress=progress, log=log)
        self.device = self.models.device
        self.log = log

    # The options the commands record and print.
    @property
    def dataset_spec(self) -> str:
        return self.data.dataset_spec

    @property
    def data_seed(self) -> int:
        return self.data.data_seed

    @property
    def model_name(self) -> str:
        return self.models.model_name

    @property
    def recipe(self) -> TrainRecipe:
        return self.models.recipe

    @property
    def splits(self) -> DatasetSplits:
        return self.data.splits

    @property
    def progress(self) -> bool:
        return self.models.progress

    @progress.setter
    def progress(self, on: bool) -> None:
        """Progress bars of training and of the methods (the bench and the audit turn them off: one line a cell)."""
        self.models.progress = self.runner.progress = bool(on)

    @property
    def task(self) -> Task:
        return self.data.task

    def check_supported(self, spec: MethodSpec, split: ForgetSplit) -> str | None:
        """:func:`check_supported` on this dataset's task, then the method's model check on this architecture
        (e.g. ``unsir`` refuses a token-id model): the reason of an "n/a" cell, before any training."""
        return check_supported(spec, split, self.data.task) or self.models.model_reason(spec)

    def resolve(self, request: str | ForgetRequest, seed: int) -> ForgetSplit:
        return self.data.resolve(request, seed)

    def model_spec(self) -> dict[str, Any]:
        return self.models.model_spec()

    def original(self, seed: int) -> TrainedModel:
        return self.models.original(seed)

    def retrained(self, split: ForgetSplit, seed: int) -> TrainedModel:
        return self.models.retrained(split, seed)

    def evaluator(self, split: ForgetSplit, seed: int) -> Any:
        return self.data.evaluator(split, seed, self.device)

    def config_for(self, method: str, split: ForgetSplit, seed: int, overrides: dict[str, Any] | None = None,
                   *, use_tuned: bool = True) -> tuple[UnlearnConfig, dict[str, dict[str, Any]]]:
        return self.runner.config_for(method, split, seed, overrides, use_tuned=use_tuned)

    def tuned_file(self, method: str, split: ForgetSplit) -> Path | None:
        return self.runner.tuned_file(method, split)

    def sizes(self, split: ForgetSplit) -> DataSizes:
        return self.runner.sizes(split)

    def run_method(self, method: str, original: nn.Module, split: ForgetSplit, seed: int,
                   overrides: dict[str, Any] | None = None, stats: Any = None,
                   config: UnlearnConfig | None = None) -> tuple[UnlearnResult, UnlearnConfig]:
        return self.runner.run(method, original, split, seed, overrides=overrides, stats=stats, config=config)
