"""``unlearnkit bench``: every (scenario, method, seed) cell, resumable, with a leaderboard report.

Scenarios (each a kind of forget request):

==============  ==============================================================================================
``class1``      one class (``class:3``)
``class3``      three classes at once (``class:1,3,7``)
``random1``     a random 1% of the training set
``random10``    a random 10%
``random30``    a random 30%
``subclass``    one sub-class of one class (``subclass:3/0``); the reference keeps the other sub-class
``seq_random``  5 requests of a random 2% each, arriving one after another (disjoint draws)
``seq_class``   3 requests of one class each (classes 1, 3, 5), one after another
``seq_ids``     5 ``ids`` requests of random sizes (each 1-4% of the training set, drawn from the seed; disjoint),
                one after another: deletion requests as they arrive (``unlearnkit request``)
==============  ==============================================================================================

In a sequential scenario each request is applied to the previous step's unlearned model, and after each step the
model is compared with a model retrained without the union of everything deleted so far.

Resumability: each finished cell is written atomically to ``OUT/cells/<scenario>__<method>__s<seed>.json``; a
restarted bench with the same arguments skips every cell whose file exists and records the method config it would
use now (a cell computed under another preset, default or ``--set`` is recomputed), and trained originals and references
come from the content-keyed model cache. ``OUT/results.json`` and ``OUT/report.md`` are rebuilt from the cell files
at the end, so a killed and restarted bench ends with the same results as an uninterrupted one (timings aside).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .checkpoints import atomic_write_text
from .distributed import barrier, broadcast_object, is_main_process
from .errors import (
    ConfigError,
    DivergedError,
    RequestError,
    UnlearnError,
    UnsupportedRequestError,
    UnsupportedTaskError,
)
from .methods.base import get_method
from .pipeline import Experiment, ExperimentData
from .requests import ForgetRequest, ForgetSplit

__all__ = ["SCENARIOS", "Scenario", "applicable_scenarios", "render_bench_report", "run_bench"]


@dataclass(frozen=True)
class Scenario:
    name: str
    kind: str  # the request kind the methods see: class | random | subclass
    description: str
    requests: tuple[str, ...] = ()  # single-step scenarios: one request
    steps: int = 1
    step_fraction: float = 0.0  # seq_random
    step_classes: tuple[int, ...] = ()  # seq_class
    step_size_range: tuple[float, ...] = ()  # seq_ids: (low, high) of each step's fraction, drawn uniformly

    @property
    def sequential(self) -> bool:
        return self.steps > 1


SCENARIOS: dict[str, Scenario] = {s.name: s for s in [
    Scenario("class1", "class", "one class", ("class:3",)),
    Scenario("class3", "class", "three classes at once", ("class:1,3,7",)),
    Scenario("random1", "random", "random 1%", ("random:0.01",)),
    Scenario("random10", "random", "random 10%", ("random:0.1",)),
    Scenario("random30", "random", "random 30%", ("random:0.3",)),
    Scenario("subclass", "subclass", "one sub-class of class 3", ("subclass:3/0",)),
    Scenario("seq_random", "random", "5 sequential random 2% requests", steps=5, step_fraction=0.02),
    Scenario("seq_class", "class", "3 sequential one-class requests (1, 3, 5)", steps=3, step_classes=(1, 3, 5)),
    Scenario("seq_ids", "ids", "5 sequential ids requests of random size (1-4% each)", steps=5,
             step_size_range=(0.01, 0.04)),
]}


def _parse_scenarios(text: str) -> list[Scenario]:
    if text.strip() == "all":
        return list(SCENARIOS.values())
    out = []
    for name in (t.strip() for t in text.split(",") if t.strip()):
        if name not in SCENARIOS:
            raise ConfigError(f"unknown scenario {name!r}; valid: all, {', '.join(SCENARIOS)}")
        out.append(SCENARIOS[name])
    if not out:
        raise ConfigError("--scenarios is empty; pass 'all' or a comma-separated list")
    return out


def scenario_splits(data: ExperimentData | Experiment, sc: Scenario, seed: int) -> list[ForgetSplit]:
    """The cumulative forget/retain splits after each step of ``sc`` (one split for single-step scenarios)."""
    train = data.splits.train
    n = len(train)
    if sc.kind in ("class", "subclass") and data.task.name != "classification":
        raise UnsupportedTaskError(f"{sc.kind} requests are not defined on the {data.task.name} dataset "
                                   f"{data.dataset_spec!r} (an example carries several labels)")
    if not sc.sequential:
        return [data.resolve(sc.requests[0], seed)]
    if sc.step_classes:
        if max(sc.step_classes) >= data.splits.num_classes:
            raise RequestError(f"scenario {sc.name} needs classes {list(sc.step_classes)}; the dataset has "
                               f"{data.splits.num_classes}")
        steps = [np.flatnonzero(train.y.numpy() == c) for c in sc.step_classes]
    elif sc.step_size_range:
        rng = np.random.default_rng([int(seed), 0x5E1D])
        sizes = [max(1, int(round(f * n))) for f in rng.uniform(*sc.step_size_range, size=sc.steps)]
        perm, ends = rng.permutation(n), np.cumsum([0, *sizes])
        steps = [np.sort(perm[a:b]) for a, b in zip(ends[:-1], ends[1:])]
    else:
        k = int(round(sc.step_fraction * n))
        if k == 0:
            raise RequestError(f"scenario {sc.name}: {sc.step_fraction:g} of {n} examples selects nothing")
        perm = np.random.default_rng([int(seed), 0x5E0]).permutation(n)
        steps = [np.sort(perm[i * k:(i + 1) * k]) for i in range(sc.steps)]
    out, union = [], np.zeros(0, dtype=np.int64)
    for t, new in enumerate(steps):
        union = np.union1d(union, new).astype(np.int64)
        classes = tuple(sc.step_classes[:t + 1]) if sc.step_classes else None
        if classes:
            req = ForgetRequest(kind="class", classes=tuple(str(c) for c in sc.step_classes[:t + 1]))
        elif sc.step_size_range:  # names the step; the forget set itself is in the split (and its cache key)
            req = ForgetRequest(kind="ids", path=f"{sc.name}#{t + 1}")
        else:
            req = ForgetRequest(kind="random", fraction=round(sc.step_fraction * (t + 1), 6))
        retain = np.setdiff1d(np.arange(n), union).astype(np.int64)
        out.append(ForgetSplit(req, union, retain, classes))
    return out


def _cell_path(out: Path, sc: str, method: str, seed: int) -> Path:
    return out / "cells" / f"{sc}__{method}__s{seed}.json"


def _cell_done(path: Path, config: dict[str, Any] | None) -> bool:
    """Whether a cell file holds a finished cell for ``config``: it exists, parses, and every record that ran
    recorded exactly that config. A changed preset, default or ``--set`` therefore recomputes the cell instead of
    reusing results of another configuration; ``original``/``retrain`` cells (``config`` None) only need to exist."""
    if not path.exists():
        return False
    if config is None:
        return True
    try:
        recs = json.loads(path.read_text())
    except (OSError, ValueError):
        return False
    return isinstance(recs, list) and all(r.get("config") == config for r in recs if r.get("status") == "ok")


def applicable_scenarios(data: ExperimentData | Experiment, scenarios: list[Scenario], seeds: list[int], *,
                         explicit: bool = True, log: Callable[[str], None] = print
                         ) -> tuple[dict[tuple[str, int], list[ForgetSplit]], dict[str, str]]:
    """The splits of every scenario that applies to the dataset, on every seed, and ``{name: reason}`` of those that
    do not (a class scenario on a multi-label dataset, ``subclass`` on a dataset without sub-classes, classes the
    dataset lacks). A scenario that does not apply is an error when named explicitly (``explicit``) and skipped
    with a warning line otherwise (``--scenarios all``). Everything is resolved before any training."""
    plans: dict[tuple[str, int], list[ForgetSplit]] = {}
    skipped: dict[str, str] = {}
    for sc in scenarios:
        try:
            for s in seeds:
                plans[(sc.name, s)] = scenario_splits(data, sc, s)
        except (RequestError, UnsupportedRequestError) as e:
            if explicit:
                raise type(e)(f"scenario {sc.name} does not apply to {data.dataset_spec}: {e}") from None
            for s in seeds:
                plans.pop((sc.name, s), None)
            skipped[sc.name] = str(e)
            log(f"warning: skipping scenario {sc.name}: {e}")
    if not any(k[0] not in skipped for k in plans):
        raise RequestError(f"no scenario applies to {data.dataset_spec}: " +
                           "; ".join(f"{k}: {v}" for k, v in skipped.items()))
    return plans, skipped


def run_bench(exp: Experiment, *, methods: list[str], scenarios: list[Scenario], seeds: list[int], out: Path,
              overrides: dict[str, dict[str, Any]] | None = None, log: Callable[[str], None] = print,
              run_info: dict[str, Any] | None = None, explicit_scenarios: bool = True) -> dict[str, Any]:
    """Run (or resume) the matrix; returns the results dict also written to ``out/results.json``.

    Scenarios that do not apply to the dataset (:func:`applicable_scenarios`) raise when ``explicit_scenarios``,
    else are skipped with a warning and listed under ``run_info["skipped_scenarios"]`` and in the report."""
    from .defaults import chosen_by_search, settings_messages

    # Validate every scenario on every seed first: bad requests fail before any training (and before any file).
    plans, skipped = applicable_scenarios(exp.data, scenarios, seeds, explicit=explicit_scenarios, log=log)
    scenarios = [sc for sc in scenarios if sc.name not in skipped]
    run_info = {**(run_info or {}), **({"skipped_scenarios": skipped} if skipped else {})}
    out.mkdir(parents=True, exist_ok=True)
    total = len(scenarios) * len(seeds) * (len(methods) + 2)
    done = 0
    for seed in seeds:
        orig = None
        for sc in scenarios:
            steps = plans[(sc.name, seed)]
            # Rank 0's disk decides which cells remain, so every rank runs the same cells (they run collectives).
            todo = None
            if is_main_process():
                todo = []
                for m in ["original", "retrain", *methods]:
                    path = _cell_path(out, sc.name, m, seed)
                    want = None if m in ("original", "retrain") else json.loads(json.dumps(exp.config_for(
                        m, steps[0], seed, (overrides or {}).get(m))[0].to_dict(), default=_default))
                    if not _cell_done(path, want):
                        if path.exists():
                            log(f"{path.name}: computed with another config (or unreadable); recomputing")
                        todo.append(m)
            todo = broadcast_object(todo)
            done += len(methods) + 2 - len(todo)
            if not todo:
                continue
            orig = orig or exp.models.original(seed)
            refs = [exp.models.retrained(sp, seed) for sp in steps]
            evs = [exp.data.evaluator(sp, seed, exp.device) for sp in steps]
            for method in todo:
                t0 = time.perf_counter()
                recs: list[dict[str, Any]] = []
                if method in ("original", "retrain"):
                    for t, (sp, ref, ev) in enumerate(zip(steps, refs, evs)):
                        model = orig.model if method == "original" else ref.model
                        m = ev.evaluate(model, reference=ref.model if method == "original" else None,
                                        seconds=None if method == "original" else ref.seconds)
                        recs.append(_rec(sc, method, seed, t, sp, m, None))
                else:
                    spec = get_method(method)
                    reason = exp.check_supported(spec, steps[0]) or (
                        f"{method} does not support {sc.kind} requests" if sc.kind not in spec.supported_requests
                        else None)
                    if reason:
                        recs.append({"scenario": sc.name, "method": method, "seed": seed, "status": "n/a",
                                     "reason": reason, "metrics": {}})
                    else:
                        model, total_s = orig.model, 0.0
                        for t, (sp, ref, ev) in enumerate(zip(steps, refs, evs)):
                            # A sequential step forgets only what is new, from the previous step's model.
                            new = np.setdiff1d(sp.forget_idx, steps[t - 1].forget_idx) if t else sp.forget_idx
                            # Sizes of the scenario's first step: one config for the whole sequence.
                            cfg, prov = exp.config_for(method, steps[0], seed, (overrides or {}).get(method))
                            if t == 0 and seed == seeds[0]:
                                for line in settings_messages(method, exp.dataset_spec, prov, cfg):
                                    log(line)
                            new_classes = (tuple(c for c in sp.forget_classes if not steps[t - 1].forget_classes
                                                 or c not in steps[t - 1].forget_classes)
                                           if sp.forget_classes and t else sp.forget_classes)
                            try:
                                res = exp.runner.run_on(cfg, model, new, sp.retain_idx, forget_classes=new_classes,
                                                        progress=False)
                            except UnlearnError as e:
                                # One cell's refusal (e.g. gradtau's epoch rule giving 0 epochs when the forget
                                # set outweighs the retain set) or divergence is a row with its reason, not the end
                                # of the bench; a divergence is an error row, never a result.
                                status = "error" if isinstance(e, DivergedError) else "n/a"
                                log(f"{sc.name} · {method} · seed {seed}"
                                    + (f" (step {t + 1})" if sc.sequential else "") + f": {status}: {e}")
                                recs = [{"scenario": sc.name, "method": method, "seed": seed, "step": t,
                                         "status": status, "reason": str(e), "metrics": {}}]
                                break
                            model, total_s = res.model, total_s + res.seconds
                            m = ev.evaluate(model, reference=ref.model, seconds=total_s,
                                            peak_memory_mb=res.peak_memory_mb,
                                            reference_seconds=ref.seconds)
                            recs.append(_rec(sc, method, seed, t, sp, m, cfg.to_dict()))
                            recs[-1]["provenance"] = prov
                            chosen = chosen_by_search(cfg.to_dict(), res.history)
                            if chosen:
                                recs[-1]["chosen"] = chosen
                if is_main_process():
                    atomic_write_text(_cell_path(out, sc.name, method, seed), json.dumps(recs, default=_default))
                done += 1
                log(f"[{done}/{total}] {sc.name} · {method} · seed {seed}: {time.perf_counter() - t0:.1f}s")
    barrier()
    if not is_main_process():
        return {"records": [], "summary": []}
    results = collect(out, run_info)
    render_bench_report(results, out)
    return results


def _default(o: Any) -> Any:
    if isinstance(o, (np.floating, np.integer)):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    return str(o)


def _rec(sc: Scenario, method: str, seed: int, step: int, sp: ForgetSplit, metrics: dict[str, Any],
         config: dict[str, Any] | None) -> dict[str, Any]:
    plots = metrics.pop("_plots", None)
    r = {"scenario": sc.name, "method": method, "request": str(sp.request), "seed": seed, "step": step,
         "n_forget": int(len(sp.forget_idx)), "status": "ok", "metrics": metrics}
    if config is not None:
        r["config"] = config
    if plots is not None:
        r["plots"] = plots
    return r


def collect(out: Path, run_info: dict[str, Any]) -> dict[str, Any]:
    """All cell records in a stable order, and per-(scenario, step, method) summaries."""
    from .evaluation import summarize

    records: list[dict[str, Any]] = []
    for p in sorted((out / "cells").glob("*.json")):
        records.extend(json.loads(p.read_text()))
    records.sort(key=lambda r: (r["scenario"], r["method"], r["seed"], r.get("step", 0)))
    summary = []
    groups: dict[tuple[str, int], list[dict[str, Any]]] = {}
    for r in records:
        groups.setdefault((r["scenario"], r.get("step", 0)), []).append(r)
    for (sc, step), rs in sorted(groups.items()):
        ok = [dict(r, request=f"{sc}#{step}") for r in rs if r.get("status") == "ok"]
        for s in summarize(ok):
            s.update(scenario=sc, step=step)
            summary.append(s)
        for r in rs:
            if r.get("status") in ("n/a", "error") and not any(x["method"] == r["method"] and
                                                               x.get("scenario") == sc for x in summary):
                summary.append({"scenario": sc, "step": step, "method": r["method"], "status": r["status"],
                                "reason": r.get("reason"), "metrics": {}})
    results = {"schema": "unlearnkit.bench/1", "run_info": run_info, "records": records, "summary": summary}
    atomic_write_text(out / "results.json", json.dumps(results, indent=1, default=_default))
    return results


def _pm(m: dict[str, Any], k: str, d: int = 2) -> str:
    v = m.get(k)
    if v is None or (isinstance(v, float) and not np.isfinite(v)):
        return "–"
    ci = m.get(f"{k}_ci95")
    return f"{v:.{d}f} ± {ci:.{d}f}" if ci is not None and np.isfinite(ci) else f"{v:.{d}f}"


def render_bench_report(results: dict[str, Any], out: Path) -> Path:
    """Leaderboards per scenario (sorted by avg_gap), the sequential plot and the cost–quality plot."""
    from .evaluation.report import finish_plot, new_axes, settings_lines

    summary = results["summary"]
    lines = ["# unlearnkit bench", ""]
    info = results.get("run_info", {})
    if info:
        lines += [f"- command: `{info.get('command', '')}`", f"- dataset: {info.get('dataset', {}).get('dataset')}"
                  f" (hash {info.get('dataset', {}).get('hash')}), model: {info.get('model', {}).get('name')}",
                  f"- seeds: {info.get('seeds')}, device: {info.get('device')}, git: {info.get('git', {}).get('sha')}"]
        lines += [f"- scenario `{k}` skipped: {v}" for k, v in (info.get("skipped_scenarios") or {}).items()]
        lines.append("")
    scen = sorted({s["scenario"] for s in summary}, key=lambda n: list(SCENARIOS).index(n) if n in SCENARIOS else 99)
    for sc in scen:
        rows = [s for s in summary if s["scenario"] == sc]
        last = max(s["step"] for s in rows)
        rows = [s for s in rows if s["step"] == last]
        desc = SCENARIOS[sc].description if sc in SCENARIOS else sc
        lines += [f"## {sc}: {desc}" + (f" (after step {last + 1})" if last else ""), "",
                  "| rank | method | avg_gap | forget_acc | retain_acc | test_acc | mia_efficacy | seconds | rte |",
                  "|---:|---|---:|---:|---:|---:|---:|---:|---:|"]
        refs = [s for s in rows if s["method"] in ("original", "retrain")]
        ranked = sorted([s for s in rows if s["method"] not in ("original", "retrain")
                         and s.get("status") not in ("n/a", "error")],
                        key=lambda s: s["metrics"].get("avg_gap", float("inf")))
        for i, s in enumerate(ranked, 1):
            m = s["metrics"]
            lines.append(f"| {i} | {s['method']} | {_pm(m, 'avg_gap')} | {_pm(m, 'forget_acc', 1)} | "
                         f"{_pm(m, 'retain_acc', 1)} | {_pm(m, 'test_acc', 1)} | {_pm(m, 'mia_efficacy', 1)} | "
                         f"{_pm(m, 'seconds')} | {_pm(m, 'rte', 1)} |")
        for s in refs:
            m = s["metrics"]
            lines.append(f"| – | *{s['method']}* | {_pm(m, 'avg_gap')} | {_pm(m, 'forget_acc', 1)} | "
                         f"{_pm(m, 'retain_acc', 1)} | {_pm(m, 'test_acc', 1)} | {_pm(m, 'mia_efficacy', 1)} | "
                         f"{_pm(m, 'seconds')} | – |")
        na = [s for s in rows if s.get("status") in ("n/a", "error")]
        for s in na:
            lines.append(f"| – | {s['method']} | {s['status']}: {s.get('reason', '')} | | | | | | |")
        lines.append("")
        lines += settings_lines([r for r in results.get("records", []) if r.get("scenario") == sc
                                 and r.get("step", 0) == 0])
    # Sequential scenarios: avg_gap over steps per method.
    for sc in [s for s in scen if s in SCENARIOS and SCENARIOS[s].sequential]:
        fig, ax = new_axes()
        meths = sorted({s["method"] for s in summary if s["scenario"] == sc and s.get("status") not in ("n/a", "error")
                        and s["method"] not in ("retrain",)})
        for meth in meths:
            pts = sorted((s["step"] + 1, s["metrics"].get("avg_gap", np.nan)) for s in summary
                         if s["scenario"] == sc and s["method"] == meth)
            ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o", label=meth)
        finish_plot(fig, ax, out / f"bench_{sc}.png", xlabel="step (requests applied)",
                    ylabel="avg_gap to retrain (points)", title=f"{sc}: gap to the reference over steps")
        lines += [f"![{sc}](bench_{sc}.png)", ""]
    # Cost–quality across methods (single-step scenarios, mean over scenarios).
    fig, ax = new_axes()
    for sc in scen:
        pts = [s for s in summary if s["scenario"] == sc and s.get("status") not in ("n/a", "error")
               and s["method"] not in ("original", "retrain") and s["step"] == max(
                   x["step"] for x in summary if x["scenario"] == sc)]
        ax.scatter([max(s["metrics"].get("seconds", np.nan), 1e-3) for s in pts],
                   [s["metrics"].get("avg_gap", np.nan) for s in pts], label=sc, s=18)
        for s in pts:
            ax.annotate(s["method"], (max(s["metrics"].get("seconds", np.nan), 1e-3),
                                      s["metrics"].get("avg_gap", np.nan)), fontsize=6)
    ax.set_xscale("log")
    finish_plot(fig, ax, out / "bench_cost_quality.png", xlabel="unlearning seconds (log)",
                ylabel="avg_gap (points)", title="cost vs quality")
    lines += ["## Cost vs quality", "", "![cost vs quality](bench_cost_quality.png)", ""]
    path = out / "report.md"
    atomic_write_text(path, "\n".join(lines))
    return path
