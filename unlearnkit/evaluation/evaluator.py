"""The evaluator: cached per-example signals per (model, set), and the tier-(a)/(b) metric dict of a model.

Usage::

    sets = EvalSets(forget=f, retain=r, test=t, val=v, forget_classes=(3,), num_classes=10)
    ev = Evaluator(sets, device="cpu", batch_size=512, seed=0)
    m_orig = ev.evaluate(original, reference=retrained)
    m_u = ev.evaluate(unlearned, reference=retrained, seconds=res.seconds, peak_memory_mb=res.peak_memory_mb,
                      reference_seconds=retrain_seconds)
    plots = m_u.pop("_plots")        # plot data for results.json's record["plots"]

**Caching.** Logits are computed once per (model content hash, set) and kept; the tier-(a) metrics of a model are
kept per content hash too, so the retrained reference is run and attacked once however many methods are compared
with it. :attr:`Evaluator.forward_passes` counts model forward calls. Editing a model in place changes its hash, so
a stale cache entry is never used.

**Output.** :meth:`Evaluator.evaluate` returns a flat dict: scalars (accuracies, attack accuracies, rates and gaps in
percent; AUC, KS, JS, distances and ToW unitless), ``per_class_test_acc`` (a list, ``None`` for a class without test
examples), and ``_plots``, a compact dict of plot data (``{"loss_hist": {"edges", "forget", "test"}}``: counts of
forget and class-matched test losses in log-spaced bins) that the caller stores as ``record["plots"]`` for
:func:`unlearnkit.evaluation.write_report`. Undefined metrics are ``None`` (never NaN, so results.json stays strict
JSON). The key set is the same for every call: tier-(b) keys are ``None`` without a reference. Every key is defined
in ``docs/metrics.md``.

**Sets.** The retain set is evaluated in full (retain accuracy) unless ``retain_limit`` caps it; the membership
attacks use a seeded subsample of it of the size of the test set as "members" (SalUn), the same rows for every
model. Non-members of the loss attacks are the test examples of the classes present in the forget set (class
matching, SCRUB); when the test set holds none of those classes (e.g. a class with no test example), the loss
attacks (``mia_lr_loss_acc``, ``mia_loss_*``, ``loss_ks_forget_test``) are ``None`` rather than computed against
other classes, which would measure the class and not membership.
"""

from __future__ import annotations

import copy
import math
import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import Dataset, Subset

from ..errors import ConfigError, DataError, UnlearnWarning, UnsupportedTaskError
from . import metrics as M
from .signals import Signals, compute_signals, model_hash

__all__ = ["METRICS_VERSION", "EvalSets", "Evaluator", "split_plots"]

# Bump when a metric's definition changes, so results from different versions are not compared silently (§5.9).
METRICS_VERSION = "unlearnkit.metrics/2"  # /2: SalUn's class-request protocol for test_acc, mia_efficacy

# Loss histogram bins for the report: log-spaced over [1e-6, 1e2] nats, 4 bins per decade.
LOSS_HIST_EDGES = np.logspace(-6.0, 2.0, 33)

_SET_NAMES = ("forget", "retain", "test", "val")


def _labels_of(ds: Dataset, multilabel: bool = False) -> np.ndarray | None:
    """The class ids of a set's ``.y`` (None without one); multi-label: the primary label, argmax of the target."""
    y = getattr(ds, "y", None)
    if not isinstance(y, torch.Tensor):
        return None
    if multilabel:
        if y.ndim != 2:
            raise DataError(f"a multi-label task needs multi-hot targets of shape (N, labels), got a set with "
                            f"labels of shape {tuple(y.shape)}")
        return y.detach().cpu().argmax(dim=1).numpy().astype(np.int64)
    return y.detach().cpu().numpy().astype(np.int64)


def _task_name(task: Any) -> str:
    """``classification`` or ``multilabel``, the tasks the evaluator scores; any other task is refused."""
    from ..tasks import as_task

    name = as_task(task).name
    if name not in ("classification", "multilabel"):
        raise UnsupportedTaskError(f"the evaluator scores classification and multilabel tasks, not {name!r}")
    return name


def _len(ds: Dataset) -> int:
    try:
        return len(ds)  # type: ignore[arg-type]
    except TypeError as e:
        raise DataError(f"evaluation sets need a length; {type(ds).__name__} has none") from e


@dataclass
class EvalSets:
    """The fixed index sets every model is evaluated on.

    Attributes:
        forget: the forget set D_f (training examples to forget).
        retain: the retain set D_r (the rest of the training set).
        test: the held-out test set.
        val: an optional validation split (reported as ``val_acc``).
        forget_classes: the forgotten class ids for class requests, None for random / id / sub-class requests.
            Turns on ``test_acc_remaining`` / ``test_acc_forgotten`` and turns off the Streisand flag.
        num_classes: number of classes; inferred from the labels (max + 1) when None (multi-label: the targets'
            width).
        task: ``"classification"`` (default; also a classification :class:`~unlearnkit.tasks.Task` or a bare loss
            function) or ``"multilabel"``: the sets' ``.y`` are multi-hot targets ``(N, labels)``, accuracy is
            argmax of the logits against argmax of the target, the loss signal is BCE summed over labels
            (``docs/metrics.md``). Class requests (``forget_classes``) are not defined for multi-label sets.

    Raises:
        DataError: an empty set, labels out of range, or forget labels outside ``forget_classes``.
        UnsupportedTaskError: a task other than classification and multilabel, or ``forget_classes`` with a
            multi-label task.
    """

    forget: Dataset
    retain: Dataset
    test: Dataset
    val: Dataset | None = None
    forget_classes: tuple[int, ...] | None = None
    num_classes: int | None = None
    task: Any = None

    def __post_init__(self) -> None:
        self.task = _task_name(self.task)
        multi = self.task == "multilabel"
        if multi and self.forget_classes is not None:
            raise UnsupportedTaskError("class requests are not defined on a multi-label task (an example carries "
                                       "several labels); forget a random: or ids: set instead")
        for name in _SET_NAMES:
            ds = getattr(self, name)
            if ds is None and name == "val":
                continue
            if ds is None or _len(ds) == 0:
                raise DataError(f"the {name} set is empty or missing: the evaluator needs at least one example in "
                                "forget, retain and test")
        labels = {n: _labels_of(getattr(self, n), multi) for n in _SET_NAMES if getattr(self, n) is not None}
        if self.num_classes is None:
            if any(v is None for v in labels.values()):
                raise DataError("num_classes is needed when a set does not expose its labels as a `.y` tensor")
            self.num_classes = (int(self.forget.y.shape[1]) if multi  # type: ignore[attr-defined]
                                else int(max(int(v.max()) for v in labels.values() if v is not None)) + 1)
        self.num_classes = int(self.num_classes)
        if self.num_classes < 2:
            raise DataError(f"num_classes must be at least 2, got {self.num_classes}")
        if multi:
            for n in _SET_NAMES:
                y = getattr(getattr(self, n), "y", None)
                if isinstance(y, torch.Tensor) and y.shape[1] != self.num_classes:
                    raise DataError(f"the {n} set's targets have {y.shape[1]} labels, not num_classes="
                                    f"{self.num_classes}")
        for n, y in labels.items():
            if y is not None and (y.min() < 0 or y.max() >= self.num_classes):
                raise DataError(f"{n} labels must lie in [0, {self.num_classes - 1}], got range "
                                f"[{y.min()}, {y.max()}]; pass the right num_classes")
        if self.forget_classes is not None:
            fc = tuple(sorted({int(c) for c in self.forget_classes}))
            if not fc or fc[0] < 0 or fc[-1] >= self.num_classes:
                raise DataError(f"forget_classes must be non-empty ids in [0, {self.num_classes - 1}], got "
                                f"{self.forget_classes}")
            self.forget_classes = fc
            fy = labels.get("forget")
            if fy is not None and not np.isin(fy, fc).all():
                extra = sorted(set(np.unique(fy).tolist()) - set(fc))
                raise DataError(f"the forget set holds classes {extra} outside forget_classes={fc}; for a class "
                                "request the forget set is those classes' examples, else pass forget_classes=None")


def split_plots(metrics: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """``(metrics without "_plots", plots)``: what a results.json record stores under ``metrics`` and ``plots``."""
    m = dict(metrics)
    return m, m.pop("_plots", {}) or {}


def _none_if_nan(v: Any) -> Any:
    if isinstance(v, (float, np.floating)):
        return None if not math.isfinite(float(v)) else float(v)
    if isinstance(v, (list, tuple)):
        return [_none_if_nan(e) for e in v]
    if isinstance(v, dict):
        return {k: _none_if_nan(e) for k, e in v.items()}
    return v


class Evaluator:
    """Evaluates models on fixed sets from cached per-example signals.

    Args:
        sets: the forget/retain/test(/val) sets.
        device: where forward passes run; None runs each model where its parameters are. A model on another device
            is moved for the pass and moved back.
        batch_size: examples per forward call.
        seed: fixes the retain subsample of the membership attacks and the attack's CV splits and balancing draws.
        retain_limit: evaluate retain accuracy on a seeded subsample of this many retain examples (at least the
            test-set size is kept for the attacks) instead of the full retain set; None = full set.

    Raises:
        ConfigError: a non-positive batch size or retain_limit.
    """

    def __init__(self, sets: EvalSets, device: torch.device | str | None = None, batch_size: int = 512,
                 seed: int = 0, retain_limit: int | None = None) -> None:
        if not isinstance(batch_size, int) or batch_size < 1:
            raise ConfigError(f"batch_size must be a positive integer, got {batch_size!r}")
        if retain_limit is not None and (not isinstance(retain_limit, int) or retain_limit < 1):
            raise ConfigError(f"retain_limit must be a positive integer or None, got {retain_limit!r}")
        self.sets = sets
        self.device = torch.device(device) if device is not None else None
        self.batch_size = batch_size
        self.seed = int(seed)
        self.forward_passes = 0
        self._signals: dict[tuple[str, str], Signals] = {}
        self._tier_a: dict[str, dict[str, Any]] = {}
        n_test = _len(sets.test)
        retain: Dataset = sets.retain
        rng = np.random.default_rng(self.seed)
        if retain_limit is not None and retain_limit < _len(retain):
            keep = np.sort(rng.choice(_len(retain), max(retain_limit, min(n_test, _len(retain))), replace=False))
            retain = retain.subset(keep) if hasattr(retain, "subset") else Subset(retain, keep.tolist())
        self._data: dict[str, Dataset] = {"forget": sets.forget, "retain": retain, "test": sets.test}
        if sets.val is not None:
            self._data["val"] = sets.val
        n_retain = _len(retain)
        # SalUn: members = |D_test| retain examples (all of them when the retain set is smaller). Sorted, seeded,
        # and the same rows for every model (§5.10).
        self.retain_mia_indices = np.sort(rng.choice(n_retain, min(n_test, n_retain), replace=False))
        # Class requests (SalUn): the non-members are the test examples of the remaining classes, so the members
        # are that many retain examples: the first ones of the same seeded draw.
        self.salun_mia_indices = self.retain_mia_indices
        ty = _labels_of(sets.test)
        if sets.forget_classes is not None and ty is not None:
            n_keep = int((~np.isin(ty, sets.forget_classes)).sum())
            self.salun_mia_indices = np.sort(rng.permutation(self.retain_mia_indices)[:min(n_keep, n_retain)]) \
                if n_keep < len(self.retain_mia_indices) else self.retain_mia_indices

    # -----------------------------------------------------------------------------------------------------------

    @property
    def set_names(self) -> tuple[str, ...]:
        """Names of the sets each model is run on (``val`` only when given)."""
        return tuple(self._data)

    def _count(self) -> None:
        self.forward_passes += 1

    def clear_cache(self) -> None:
        """Drop every cached signal and metric dict (e.g. between unrelated experiments)."""
        self._signals.clear()
        self._tier_a.clear()

    def signals(self, model: nn.Module, name: str, *, _hash: str | None = None) -> Signals:
        """Logits and labels of ``model`` on set ``name`` (forget, retain, test, val), computed at most once.

        Raises:
            DataError: unknown set name or a set the model cannot be run on.
        """
        if name not in self._data:
            raise DataError(f"unknown evaluation set {name!r}; available: {', '.join(self._data)}")
        key = (_hash or model_hash(model), name)
        if key not in self._signals:
            self._signals[key] = compute_signals(model, self._data[name], name, batch_size=self.batch_size,
                                                 device=self.device, num_classes=self.sets.num_classes,
                                                 on_batch=self._count, multilabel=self.sets.task == "multilabel")
        return self._signals[key]

    # -----------------------------------------------------------------------------------------------------------

    def _compute_tier_a(self, model: nn.Module, h: str) -> dict[str, Any]:
        S = {n: self.signals(model, n, _hash=h) for n in self._data}
        f, r, t = S["forget"], S["retain"], S["test"]
        fc = self.sets.forget_classes
        m: dict[str, Any] = {}
        m["forget_acc"] = M.accuracy(f.predictions, f.labels)
        m["unlearn_acc"] = 100.0 - m["forget_acc"]
        m["retain_acc"] = M.accuracy(r.predictions, r.labels)
        m["test_acc"] = m["test_acc_full"] = M.accuracy(t.predictions, t.labels)
        m["val_acc"] = M.accuracy(S["val"].predictions, S["val"].labels) if "val" in S else math.nan
        m["per_class_test_acc"] = M.per_class_accuracy(t.predictions, t.labels, int(self.sets.num_classes or 0)
                                                       ).tolist()
        if fc is not None:
            gone = np.isin(t.labels, fc)
            m["test_acc_remaining"] = M.accuracy(t.predictions[~gone], t.labels[~gone])
            m["test_acc_forgotten"] = M.accuracy(t.predictions[gone], t.labels[gone])
            # SalUn's protocol for class-wise forgetting: TA on the test set without the forgotten classes.
            m["test_acc"] = m["test_acc_remaining"]
        else:
            m["test_acc_remaining"] = m["test_acc_forgotten"] = math.nan
        finite = all(s.finite for s in S.values())
        m["nonfinite_logits"] = 0.0 if finite else 1.0
        matched = M.class_matched_mask(t.labels, f.labels)
        attack_keys = ("mia_efficacy", "mia_efficacy_full_test", "mia_entropy_member_rate", "mia_lr_loss_acc",
                       "mia_loss_auc", "mia_loss_tpr_at_1pct_fpr", "mia_loss_tpr_at_0.1pct_fpr",
                       "mia_loss_best_balanced_acc", "loss_ks_forget_test")
        for k in attack_keys:
            m[k] = math.nan
        if not finite:
            warnings.warn("the model produced NaN/Inf logits: accuracies count those rows as wrong and the "
                          "membership attacks are reported as None", UnlearnWarning, stacklevel=3)
        else:
            rm = r.subset(self.retain_mia_indices, "retain_mia")
            m["mia_efficacy"] = m["mia_efficacy_full_test"] = M.mia_efficacy(rm.confidence, t.confidence,
                                                                               f.confidence)
            if fc is not None:
                # SalUn's protocol for class requests: the attack's non-members are the test examples of the
                # remaining classes, and its members a retain subsample of that size (self.salun_mia_indices).
                keep = ~np.isin(t.labels, fc)
                if keep.any():
                    rs = r.subset(self.salun_mia_indices, "retain_mia_salun")
                    m["mia_efficacy"] = M.mia_efficacy(rs.confidence, t.confidence[keep], f.confidence)
                else:
                    m["mia_efficacy"] = math.nan
            m["mia_entropy_member_rate"] = M.svc_member_rate(rm.entropy, t.entropy, f.entropy)
            if matched.any():
                tl = t.losses[matched]
                m["mia_lr_loss_acc"] = M.lr_loss_attack_accuracy(f.losses, tl, n_splits=10, seed=self.seed)
                la = M.loss_attack(f.losses, tl, fprs=(0.01, 0.001))
                m["mia_loss_auc"] = la["auc"]
                m["mia_loss_tpr_at_1pct_fpr"] = la["tpr_at_0.01"]
                m["mia_loss_tpr_at_0.1pct_fpr"] = la["tpr_at_0.001"]
                m["mia_loss_best_balanced_acc"] = la["best_balanced_acc"]
                m["loss_ks_forget_test"] = M.ks_statistic(f.losses, tl)
        m["streisand_flag"] = (M.streisand_flag(m["forget_acc"], m["test_acc"], len(f), len(t))
                               if fc is None else math.nan)
        m["n_forget"], m["n_retain"], m["n_test"] = len(f), len(r), len(t)
        m["_plots"] = {"loss_hist": {
            "edges": [float(e) for e in LOSS_HIST_EDGES],
            "forget": M.loss_histogram(f.losses, LOSS_HIST_EDGES),
            "test": M.loss_histogram(t.losses[matched], LOSS_HIST_EDGES),
        }}
        return m

    def tier_a(self, model: nn.Module, *, _hash: str | None = None) -> dict[str, Any]:
        """Tier-(a) metrics of ``model`` (cached per content hash; NaN for undefined values, ``_plots`` included)."""
        h = _hash or model_hash(model)
        if h not in self._tier_a:
            self._tier_a[h] = self._compute_tier_a(model, h)
        return copy.deepcopy(self._tier_a[h])

    def evaluate(self, model: nn.Module, reference: nn.Module | None = None, seconds: float | None = None,
                 peak_memory_mb: float | None = None, reference_seconds: float | None = None) -> dict[str, Any]:
        """All metrics of ``model``: tier (a) always, tier (b) against ``reference`` (the retrained model) if given.

        Args:
            model: the model to score (left on its device and in its train/eval mode).
            reference: the retrained-from-scratch model of the same seed; gaps are ``model − reference``.
            seconds: wall time of the unlearning call, passed through (and used for ``rte``).
            peak_memory_mb: peak memory of the unlearning call, passed through.
            reference_seconds: wall time of the retraining; ``rte = reference_seconds / seconds``.

        Returns:
            The flat metric dict described in the module docstring (``None`` for undefined values).
        """
        h = model_hash(model)
        m = self.tier_a(model, _hash=h)
        plots = m.pop("_plots")
        m["seconds"] = None if seconds is None else float(seconds)
        m["peak_memory_mb"] = None if peak_memory_mb is None else float(peak_memory_mb)
        m["rte"] = (float(reference_seconds) / float(seconds)
                    if seconds is not None and reference_seconds is not None and seconds > 0 else math.nan)
        tier_b = ["avg_gap", "tow", "tow_mia", "js_to_retrain", "js_to_retrain_test", "act_dist_to_retrain",
                  "act_dist_to_retrain_test", "per_class_l1_gap"]
        for k in tier_b:
            m[k] = math.nan
        for k in M.GAP_METRICS:
            m[f"gap_{k}"] = m[f"absgap_{k}"] = math.nan
        if reference is not None:
            hr = model_hash(reference)
            ra = self.tier_a(reference, _hash=hr)
            m.update(M.gaps(m, ra))
            core = ("forget_acc", "retain_acc", "test_acc", "mia_efficacy")
            if all(math.isfinite(m[k]) and math.isfinite(ra[k]) for k in core):
                m["avg_gap"] = M.avg_gap(m, ra)
                m["tow"] = M.tow(m, ra)
                m["tow_mia"] = M.tow_mia(m, ra)
            f, fr = self.signals(model, "forget", _hash=h), self.signals(reference, "forget", _hash=hr)
            t, tr = self.signals(model, "test", _hash=h), self.signals(reference, "test", _hash=hr)
            if f.finite and fr.finite and t.finite and tr.finite:
                # Multi-label outputs are per-label Bernoulli probabilities σ(z), not one softmax distribution.
                js, act = ((M.bernoulli_js_divergence, M.sigmoid_activation_distance) if f.multilabel
                           else (M.js_divergence, M.activation_distance))
                m["js_to_retrain"] = js(f.logits, fr.logits)
                m["js_to_retrain_test"] = js(t.logits, tr.logits)
                m["act_dist_to_retrain"] = act(f.logits, fr.logits)
                m["act_dist_to_retrain_test"] = act(t.logits, tr.logits)
            m["per_class_l1_gap"] = M.per_class_l1_gap(m["per_class_test_acc"], ra["per_class_test_acc"])
        m["_plots"] = plots
        return _none_if_nan(m)
