"""``unlearnkit tune``: choose a method's settings on a proxy request drawn from the training data only.

For a real request R (``class:3``, ``random:0.1``) the tuner draws a **proxy request** of the same kind and size from
the training split, disjoint from R (class requests: other classes; random requests: other training examples), and
minimises, with Optuna's TPE sampler (seeded), the gap of the unlearned model to the model retrained without the
proxy forget set::

    objective = mean |Δ| over (forget acc, retain acc, val acc, MIA efficacy)   [+ λ · seconds / retrain seconds]

measured with the usual evaluator but with the **val** split in the role of the held-out set (``test_acc`` and the
attack's non-members): the test split is never read while tuning. The originals and proxy references come from the
pipeline's model cache. Trials whose running mean over the tune seeds is worse than the median of earlier trials at
the same step are pruned (Optuna's ``MedianPruner``), as are settings that diverge. The study lives in SQLite
(``OUT/study.db``), so a killed tune resumes: finished trials are loaded, never re-run.

The best trial is then **confirmed** on a second proxy draw (disjoint from the real request and from the search
proxy, training data only, its own cached reference): it is kept only if it also beats the untuned config there,
otherwise the untuned config is kept, because the best of many trials on one draw is optimistically biased (on
``shapes`` ``random:0.1`` pgu's pick beat the untuned config on the proxy, 3.96 against 5.38, and lost on the test
request, 4.76 against 4.10, before this step existed).
The chosen values are written to a tuned-settings file in the model cache (:mod:`unlearnkit.tuned`), keyed by
dataset hash, model, request kind and size, and method, which ``run`` and ``bench`` pick up (provenance
"tuned file"). The report gives the search history, the chosen values, the proxy gap and the **test** gap on the
real request of the chosen values against the untuned config and gradtau (the untuned reference) on fresh seeds.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .checkpoints import atomic_write_text
from .errors import ConfigError, DivergedError, UnsupportedRequestError
from .pipeline import Experiment
from .requests import ForgetRequest, ForgetSplit
from .spaces import Param, active, space_of

__all__ = ["TuneResult", "objective_gap", "pareto_front", "proxy_split", "tune_method", "write_tune_report"]

Log = Callable[[str], None]


def proxy_split(exp: Experiment, real: ForgetSplit, seed: int, *, avoid: ForgetSplit | None = None,
                draw: int = 0) -> ForgetSplit:
    """A request of ``real``'s kind and size drawn from the training split only and disjoint from ``real``'s forget
    set: other classes for class requests, other training examples for random ones.

    ``draw`` > 0 gives another draw (the confirmation proxy); ``avoid`` (the search proxy) is then left out too:
    its examples always for random requests, its classes when enough other classes remain for class requests."""
    req = real.request
    train = exp.splits.train
    rng = np.random.default_rng([int(seed), 7919] + ([int(draw)] if draw else []))
    if req.kind == "class":
        gone = set(int(c) for c in real.forget_classes or ())
        others = [c for c in range(exp.splits.num_classes) if c not in gone]
        k = len(gone)
        if len(others) < k or len(others) - k < 1:
            raise UnsupportedRequestError(f"tune: {req} leaves too few other classes for a proxy request of "
                                          f"{k} class(es) with at least one kept class")
        if avoid is not None and avoid.forget_classes:
            # restricting the pool leaves the kept-class count (len(others) - k) as it is
            used = {int(x) for x in avoid.forget_classes}
            fresh = [c for c in others if c not in used]
            if len(fresh) >= k:
                others = fresh
        chosen = sorted(int(c) for c in rng.choice(others, size=k, replace=False))
        names = exp.splits.class_names
        proxy = ForgetRequest(kind="class", classes=tuple(str(names[c]) if names else str(c) for c in chosen))
        split = proxy.resolve(train, class_names=names, seed=seed, sub_names=exp.splits.sub_names)
    elif req.kind == "random":
        n = len(real.forget_idx)
        pool = np.setdiff1d(np.arange(len(train)), real.forget_idx)
        if avoid is not None:
            pool = np.setdiff1d(pool, avoid.forget_idx)
        if len(pool) - n < 1:
            raise UnsupportedRequestError(f"tune: {req} leaves too few training examples for a disjoint proxy")
        forget = np.sort(rng.choice(pool, size=n, replace=False))
        split = ForgetSplit(request=req, forget_idx=forget, retain_idx=np.setdiff1d(np.arange(len(train)), forget),
                            forget_classes=None)
    else:
        raise UnsupportedRequestError(f"tune supports class and random requests, not {req.kind} requests "
                                      f"({req}); tune on a class:/random: request of the same size")
    assert not np.intersect1d(split.forget_idx, real.forget_idx).size
    return split


def objective_gap(m: dict[str, Any], r: dict[str, Any]) -> float:
    """Mean absolute gap (points) over forget, retain and val accuracy and MIA efficacy (val as the held-out set)."""
    keys = ("forget_acc", "retain_acc", "test_acc", "mia_efficacy")  # "test_acc" of the val evaluator = val acc
    return float(np.mean([abs(float(m[k]) - float(r[k])) for k in keys]))


def _suggest(trial: Any, space: tuple[Param, ...]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for p in space:
        if not active(p, out):
            continue
        if p.kind == "categorical":
            out[p.name] = trial.suggest_categorical(p.name, list(p.choices))
        elif p.kind == "int":
            out[p.name] = trial.suggest_int(p.name, int(p.low), int(p.high), log=p.log)
        else:
            out[p.name] = trial.suggest_float(p.name, p.low, p.high, log=p.log)
    return out


@dataclass
class TuneResult:
    method: str
    values: dict[str, Any]
    proxy_gap: float
    default_proxy_gap: float
    trials: int
    history: list[dict[str, Any]] = field(default_factory=list)
    tuned_file: str = ""
    fresh: dict[str, Any] = field(default_factory=dict)
    confirmation: dict[str, Any] = field(default_factory=dict)  # gaps of best and untuned on the second proxy draw


class _Proxy:
    """Originals, proxy splits, references and val evaluators for the tune seeds (models from the cache)."""

    def __init__(self, exp: Experiment, real: dict[int, ForgetSplit], seeds: list[int]) -> None:
        self.exp, self.seeds, self.real = exp, seeds, real
        self.orig = {s: exp.original(s) for s in seeds}
        self._search = {s: self._prepare(proxy_split(exp, real[s], s), s) for s in seeds}
        self._confirm: dict[int, tuple[ForgetSplit, Any, Any, dict]] = {}  # built on first use

    def _prepare(self, split: ForgetSplit, seed: int) -> tuple[ForgetSplit, Any, Any, dict]:
        """``(split, its retrained reference, its val evaluator, the reference's metrics)``; val in the held-out
        role: accuracy and MIA non-members on val, never test."""
        ref = self.exp.retrained(split, seed)
        ev = self.exp.data.evaluator(split, seed, self.exp.device, val_as_test=True)
        return split, ref, ev, ev.tier_a(ref.model)

    def gap(self, method: str, seed: int, values: dict[str, Any], *, confirm: bool = False) -> tuple[float, float]:
        """``(proxy gap, cost)`` of one run, cost = the run's seconds / the proxy reference's training seconds;
        ``confirm``: on the confirmation proxy (a second draw, disjoint from the real request and the search proxy,
        with its own reference, trained on first use and cached like every model)."""
        if confirm and seed not in self._confirm:
            search_split = self._search[seed][0]
            self._confirm[seed] = self._prepare(
                proxy_split(self.exp, self.real[seed], seed, avoid=search_split, draw=1), seed)
        split, ref, ev, ref_m = (self._confirm if confirm else self._search)[seed]
        cfg, _ = self.exp.config_for(method, split, seed, values, use_tuned=False)
        stats = self.orig[seed].stats_path if self.exp.models.record_stats else None
        res, _ = self.exp.run_method(method, self.orig[seed].model, split, seed, config=cfg, stats=stats)
        g = objective_gap(ev.tier_a(res.model), ref_m)
        return g, res.seconds / max(1e-9, ref.seconds)


def pareto_front(points: list[tuple[float, float]]) -> list[int]:
    """Indices of the points ``(cost, gap)`` that no other point dominates (no worse in both, better in one),
    sorted by cost: the settings on the cost-quality frontier. Duplicates keep their first index."""
    order = sorted(range(len(points)), key=lambda i: (points[i][0], points[i][1], i))
    front, best = [], math.inf
    for i in order:
        if points[i][1] < best:
            front.append(i)
            best = points[i][1]
    return front


def tune_method(exp: Experiment, method: str, request: str, *, seeds: list[int], out: Path,
                trials: int | None = None, budget_minutes: float | None = None, cost_lambda: float = 0.0,
                eval_seeds: list[int] | None = None, log: Log = print) -> TuneResult:
    """Tune ``method`` for requests like ``request`` (see the module docstring); writes the study, the tuned file
    and returns the chosen values with their proxy gap."""
    import optuna

    space = space_of(method)
    if trials is None and budget_minutes is None:
        raise ConfigError("tune needs a budget: pass --trials N or --budget-minutes T")
    if trials is not None and trials < 1:
        raise ConfigError(f"--trials must be >= 1, got {trials}")
    if budget_minutes is not None and not (math.isfinite(budget_minutes) and budget_minutes > 0):
        raise ConfigError(f"--budget-minutes must be a positive number, got {budget_minutes}")
    if not (math.isfinite(cost_lambda) and cost_lambda >= 0):
        raise ConfigError(f"--cost-lambda must be a non-negative number, got {cost_lambda}")
    real = {s: exp.resolve(request, s) for s in seeds}
    from .methods.base import get_method

    reason = exp.check_supported(get_method(method), real[seeds[0]])
    if reason:
        raise UnsupportedRequestError(reason)
    out.mkdir(parents=True, exist_ok=True)
    proxy = _Proxy(exp, real, seeds)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    storage = f"sqlite:///{(out / 'study.db').resolve()}"
    key = json.dumps({"dataset": exp.splits.hash, "model": exp.model_name, "request": request, "method": method,
                      "seeds": seeds, "lambda": cost_lambda, "space": [repr(p) for p in space]}, sort_keys=True)
    from .data.base import content_hash

    name = f"{method}-{content_hash(extra={'k': key})[:12]}"
    probe = optuna.load_study if _exists(storage, name) else None
    n_before = len(probe(study_name=name, storage=storage).trials) if probe else 0
    study = optuna.create_study(study_name=name, storage=storage, load_if_exists=True, direction="minimize",
                                sampler=optuna.samplers.TPESampler(seed=int(seeds[0]) + n_before),
                                pruner=optuna.pruners.MedianPruner(n_startup_trials=3, n_warmup_steps=0))
    # A trial left RUNNING by a killed process is failed (it is re-sampled, not counted as finished).
    from optuna.trial import TrialState

    for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        study._storage.set_trial_state_values(t._trial_id, TrialState.FAIL)
    finished = [t for t in study.trials if t.state in (TrialState.COMPLETE, TrialState.PRUNED)]
    if finished:
        log(f"{method}: resuming study {name}: {len(finished)} finished trial(s) loaded from {out / 'study.db'}")
        if trials is not None and len(finished) >= trials:
            log(f"{method}: the study already holds {len(finished)} >= --trials {trials} finished trials")

    def objective(trial: Any) -> float:
        values = _suggest(trial, space)
        gaps, costs = [], []
        for i, s in enumerate(seeds):
            try:
                g, c = proxy.gap(method, s, values)
            except (DivergedError, ConfigError) as e:
                trial.set_user_attr("pruned_because", str(e))
                raise optuna.TrialPruned(str(e)) from None
            gaps.append(g)
            costs.append(c)
            trial.report(float(np.mean(gaps) + cost_lambda * np.mean(costs)), i)
            if i < len(seeds) - 1 and trial.should_prune():  # hopeless after i+1 seeds: skip the remaining ones
                raise optuna.TrialPruned()
        # Both parts are kept whatever lambda is, so the report can draw the cost-quality frontier.
        trial.set_user_attr("gap", float(np.mean(gaps)))
        trial.set_user_attr("cost", float(np.mean(costs)))
        return float(np.mean(gaps) + cost_lambda * np.mean(costs))

    if not any(t.user_attrs.get("default") for t in study.trials):
        # The untuned config (rules/presets) as the first trial, so the pick is never worse than it on the proxy.
        g, c = (float(np.mean(v)) for v in zip(*[proxy.gap(method, s, {}) for s in seeds]))
        study.add_trial(optuna.trial.create_trial(value=g + cost_lambda * c, params={}, distributions={},
                                                  user_attrs={"default": True, "gap": g, "cost": c}))
    # --trials counts every finished trial, the untuned one included.
    finished = [t for t in study.trials if t.state in (TrialState.COMPLETE, TrialState.PRUNED)]
    remaining = None if trials is None else max(0, trials - len(finished))
    t0 = time.perf_counter()
    if remaining != 0:
        study.optimize(objective, n_trials=remaining, timeout=None if budget_minutes is None else 60 * budget_minutes,
                       catch=())
    done = [t for t in study.trials if t.state == TrialState.COMPLETE]
    default_gap = next(t.value for t in done if t.user_attrs.get("default"))
    best = min(done, key=lambda t: t.value)
    values = dict(best.params)
    log(f"{method}: {len(study.trials)} trials ({time.perf_counter() - t0:.1f}s this session); proxy gap "
        f"{best.value:.2f} (untuned {default_gap:.2f}); best {values or 'the untuned config'}")
    # Confirmation: the best of many trials on one proxy draw is optimistic (selection on noise). The pick is kept
    # only if it also beats the untuned config on a second, disjoint proxy draw (training data only, as before);
    # otherwise the untuned config is kept.
    confirmation: dict[str, Any] = {}
    if values:
        def objective_on_confirm(v: dict[str, Any]) -> float:
            gc = [proxy.gap(method, s, v, confirm=True) for s in seeds]
            return float(np.mean([g for g, _ in gc]) + cost_lambda * np.mean([c for _, c in gc]))

        ct, cu = objective_on_confirm(values), objective_on_confirm({})
        confirmation = {"tuned": ct, "untuned": cu, "kept": "tuned" if ct < cu else "untuned"}
        log(f"{method}: confirmation proxy: best {ct:.2f}, untuned {cu:.2f} -> "
            + ("kept the best" if ct < cu else "kept the untuned config (the best did not carry over)"))
        if ct >= cu:
            values = {}
    chosen_gap = float(best.value) if values else float(default_gap)
    history = [{"number": t.number, "state": t.state.name, "value": t.value, "params": t.params,
                "default": bool(t.user_attrs.get("default")), "gap": t.user_attrs.get("gap"),
                "cost": t.user_attrs.get("cost"),
                "chosen": t.number == best.number if values else bool(t.user_attrs.get("default"))}
               for t in study.trials]
    from .tuned import save_tuned

    path = exp.tuned_file(method, real[seeds[0]])
    save_tuned(path, values, {"method": method, "dataset": exp.dataset_spec, "dataset_hash": exp.splits.hash,
                              "model": exp.model_name, "request": request, "proxy_gap": chosen_gap,
                              "untuned_proxy_gap": default_gap, "confirmation": confirmation,
                              "tune_seeds": seeds, "cost_lambda": cost_lambda,
                              "study": str(out / "study.db"), "study_name": name})
    log(f"{method}: tuned settings written to {path} (run and bench pick them up)")
    res = TuneResult(method, values, chosen_gap, float(default_gap), len(study.trials), history, str(path),
                     confirmation=confirmation)
    if eval_seeds:
        res.fresh = fr = _fresh_test_gaps(exp, method, request, values, eval_seeds, log)
        log(f"{method}: test avg_gap on fresh seeds {eval_seeds}: tuned {fr['tuned']['mean']}, untuned "
            f"{fr['untuned']['mean']}, gradtau {fr['gradtau']['mean']}")
    return res


def _exists(storage: str, name: str) -> bool:
    import optuna

    try:
        return name in {s.study_name for s in optuna.get_all_study_summaries(storage)}
    except Exception:  # noqa: BLE001 - a new or unreadable database holds no such study
        return False


def _fresh_test_gaps(exp: Experiment, method: str, request: str, values: dict[str, Any], seeds: list[int],
                     log: Log) -> dict[str, Any]:
    """avg_gap on the **test** split of the real request on ``seeds`` (not used by the tuner): the tuned values, the
    untuned config and gradtau (the untuned reference)."""
    from .methods.base import get_method

    out: dict[str, list[float]] = {"tuned": [], "untuned": [], "gradtau": []}
    for s in seeds:
        split = exp.resolve(request, s)
        orig, ref = exp.original(s), exp.retrained(split, s)
        ev = exp.evaluator(split, s)
        for label, m, vals in (("tuned", method, values), ("untuned", method, {}), ("gradtau", "gradtau", {})):
            if exp.check_supported(get_method(m), split):
                continue
            cfg, _ = exp.config_for(m, split, s, vals, use_tuned=False)
            try:
                r, _ = exp.run_method(m, orig.model, split, s, config=cfg)
            except DivergedError as e:
                log(f"{m} ({label}, seed {s}): {e}")
                out[label].append(float("nan"))
                continue
            out[label].append(float(ev.evaluate(r.model, reference=ref.model)["avg_gap"]))
    return {"seeds": seeds, **{k: {"per_seed": v, "mean": float(np.mean(v)) if v else None} for k, v in out.items()}}


def _plot_frontier(r: TuneResult, path: Path) -> bool:
    """Every finished trial's proxy gap against its cost (seconds / retrain seconds), the Pareto frontier and the
    chosen trial; False when no trial recorded both (studies from before the costs were kept)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    done = [h for h in r.history if h["state"] == "COMPLETE" and h.get("gap") is not None
            and h.get("cost") is not None]
    if not done:
        return False
    pts = [(float(h["cost"]), float(h["gap"])) for h in done]
    front = [pts[i] for i in pareto_front(pts)]
    fig = Figure(figsize=(5, 3.2))
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    ax.plot([p[0] for p in pts], [p[1] for p in pts], "o", ms=3, alpha=0.5, label="trial")
    ax.step([p[0] for p in front], [p[1] for p in front], "-", where="post", label="frontier")
    for h, p in zip(done, pts):
        if h.get("default"):
            ax.plot(*p, "s", ms=7, mfc="none", label="untuned")
        if h.get("chosen"):
            ax.plot(*p, "*", ms=11, label="chosen")
    ax.set_xlabel("seconds / retrain seconds (rte)")
    ax.set_ylabel("proxy gap")
    ax.set_title(f"{r.method}: cost-quality frontier")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    return True


def write_tune_report(results: list[TuneResult], out: Path, info: dict[str, Any]) -> Path:
    """``OUT/tune.json``, ``OUT/tune_report.md``, one search-history plot and one cost-quality frontier plot per
    method."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    lines = [f"# unlearnkit tune: {info.get('dataset')} · {info.get('model')} · forget {info.get('request')}", "",
             "Objective: mean |gap| to the model retrained without a **proxy** request (same kind and size, drawn "
             "from the training data, disjoint from the real one) over forget, retain and **val** accuracy and MIA "
             "efficacy (val as the held-out set; the test split is never read while tuning)"
             + (f", + {info['cost_lambda']} x seconds / retrain seconds" if info.get("cost_lambda") else "") + ".",
             f"Tune seeds: {info.get('seeds')}. Fresh seeds for the test gap: {info.get('eval_seeds') or 'none'}.",
             "The best trial is kept only if it also beats the untuned config on a second, disjoint proxy draw "
             "(the confirmation column: best / untuned there).",
             "", "| method | trials | untuned proxy gap | tuned proxy gap | confirmation best / untuned | "
             "chosen values | test avg_gap untuned | test avg_gap tuned | gradtau (untuned reference) |",
             "|---|---|---|---|---|---|---|---|---|"]

    def f(x: Any) -> str:
        return "-" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.2f}"

    plots = []
    for r in results:
        fr = r.fresh or {}
        vals = ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in r.values.items())
        cf = r.confirmation or {}
        conf = f"{f(cf.get('tuned'))} / {f(cf.get('untuned'))}" if cf else "-"
        lines.append(f"| {r.method} | {r.trials} | {f(r.default_proxy_gap)} | {f(r.proxy_gap)} | {conf} | "
                     f"{vals or '(untuned kept)'} | {f((fr.get('untuned') or {}).get('mean'))} | "
                     f"{f((fr.get('tuned') or {}).get('mean'))} | {f((fr.get('gradtau') or {}).get('mean'))} |")
        fig = Figure(figsize=(5, 3))
        FigureCanvasAgg(fig)
        ax = fig.add_subplot()
        pts = [(h["number"], h["value"]) for h in r.history if h["state"] == "COMPLETE" and h["value"] is not None]
        if pts:
            xs, ys = zip(*pts)
            ax.plot(xs, ys, "o", ms=3, label="completed trial")
            ax.plot(xs, np.minimum.accumulate(ys), "-", label="best so far")
            ax.legend()
        ax.set_xlabel("trial")
        ax.set_ylabel("proxy gap")
        n_pruned = sum(h["state"] == "PRUNED" for h in r.history)
        ax.set_title(f"{r.method} ({n_pruned} pruned trials not drawn)" if n_pruned else r.method)
        fig.tight_layout()
        fig.savefig(out / f"tune_history_{r.method}.png", dpi=90)
        plots += ["", f"![{r.method}](tune_history_{r.method}.png)"]
        if _plot_frontier(r, out / f"tune_frontier_{r.method}.png"):
            plots += ["", f"![{r.method} cost-quality frontier](tune_frontier_{r.method}.png)"]
    lines += plots
    lines += ["", "Tuned files (picked up by `run` and `bench`): " + ", ".join(r.tuned_file for r in results)]
    atomic_write_text(out / "tune.json", json.dumps({"info": info, "results": [r.__dict__ for r in results]},
                                                    indent=2, default=str))
    path = out / "tune_report.md"
    atomic_write_text(path, "\n".join(lines) + "\n")
    return path
