"""The ``unlearnkit`` command: train, unlearn, evaluate and report on an embedded or user-supplied dataset.

Subcommands: ``run`` (the main job), ``methods``, ``train``, ``unlearn``, ``evaluate``, ``report``.
Every expected failure (bad request, bad data, missing or corrupt checkpoint, bad option) exits with status 2 and a
single ``error: ...`` line, without a traceback.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .errors import ConfigError, UnlearnError

__all__ = ["main"]


# ---------------------------------------------------------------------------------------------------------------
# helpers
# ---------------------------------------------------------------------------------------------------------------


def _console():  # noqa: ANN202 - rich is imported lazily to keep `unlearnkit --help` fast
    from rich.console import Console

    # Wide enough for the results table when the output is a file or a CI log (rich assumes 80 columns there).
    return Console(stderr=False, highlight=False, width=None if sys.stdout.isatty() else 160)


def _parse_seeds(text: str) -> list[int]:
    try:
        seeds = [int(s) for s in text.split(",") if s.strip()]
    except ValueError:
        raise ConfigError(f"--seeds must be comma-separated integers, e.g. 0,1,2; got {text!r}") from None
    if not seeds or len(set(seeds)) != len(seeds):
        raise ConfigError(f"--seeds must list at least one seed, each once; got {text!r}")
    if min(seeds) < 0 or max(seeds) >= 2**31:
        raise ConfigError(f"--seeds must be integers in 0..2147483647, got {text!r}")
    return seeds


def _writable_ancestor(path: Path) -> Path:
    """The nearest existing ancestor of ``path``; OSError-free checks that it is a writable folder."""
    p = path.absolute()
    while not p.exists():
        if p.is_symlink():  # a dangling link would be created "through"
            raise ConfigError(f"{p} is a broken symbolic link; remove it or choose another output path")
        p = p.parent
    if not p.is_dir():
        raise ConfigError(f"cannot create {path}: {p} is a file, not a folder; choose another output path")
    if not os.access(p, os.W_OK | os.X_OK):
        raise ConfigError(f"cannot write under {p} (permission denied); choose another output path")
    return p


def check_output_dir(out: Path) -> None:
    """Refuse an output folder that cannot be written, before any work (nothing is created here)."""
    if out.exists():
        if not out.is_dir():
            raise ConfigError(f"--out {out} is a file; --out takes a folder (it will hold results.json, report.md)")
        if not os.access(out, os.W_OK | os.X_OK):
            raise ConfigError(f"cannot write to --out {out} (permission denied); choose another folder")
        return
    _writable_ancestor(out)


def check_output_file(path: str | Path | None, what: str = "--out") -> None:
    """Refuse an output file path that is a folder or cannot be written, before any work."""
    if path is None:
        return
    p = Path(path)
    if p.is_dir():
        raise ConfigError(f"{what} {p} is a folder; {what} takes a file name, e.g. {p / 'model.safetensors'}")
    if p.exists():
        if not os.access(p, os.W_OK) or not os.access(p.parent.absolute(), os.W_OK | os.X_OK):
            raise ConfigError(f"cannot write {what} {p} (permission denied); choose another path")
        return
    _writable_ancestor(p.parent)


def _check_device(text: str) -> str:
    import torch

    try:
        dev = torch.device(text)
    except (RuntimeError, ValueError):
        raise ConfigError(f"unknown --device {text!r}; valid: cpu, cuda, cuda:N") from None
    if dev.type == "cuda":
        n = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if n == 0:
            raise ConfigError(f"--device {text}: CUDA is not available on this machine (no GPU or a CPU-only torch); "
                              "use --device cpu")
        if dev.index is not None and dev.index >= n:
            raise ConfigError(f"--device {text}: this machine has {n} CUDA device(s), cuda:0..cuda:{n - 1}")
    elif dev.type == "mps":
        if not torch.backends.mps.is_available():
            raise ConfigError(f"--device {text}: MPS is not available on this machine; use --device cpu")
    elif dev.type != "cpu":
        raise ConfigError(f"unsupported --device {text!r}; valid: cpu, cuda, cuda:N")
    return text


def _resolve_methods(text: str) -> list[str]:
    from .methods.base import get_method, list_methods

    if text.strip() == "all":
        return [m for m in list_methods() if m != "retrain"]
    names = [m.strip() for m in text.split(",") if m.strip()]
    if not names:
        raise ConfigError("--methods is empty; pass 'all' or a comma-separated list (see `unlearnkit methods`)")
    for n in names:
        get_method(n)  # raises ConfigError listing the registered methods
    return names


def _git_info() -> dict[str, Any]:
    root = Path(__file__).resolve().parent.parent
    def git(*args: str) -> str:
        try:
            return subprocess.run(["git", *args], cwd=root, capture_output=True, text=True, timeout=5).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            return ""
    return {"sha": git("rev-parse", "HEAD"), "branch": git("rev-parse", "--abbrev-ref", "HEAD"),
            "dirty": bool(git("status", "--porcelain", "--untracked-files=no"))}


def _run_info(args: argparse.Namespace, exp: Any) -> dict[str, Any]:
    import platform

    import torch

    from .checkpoints import package_versions

    return {"command": "unlearnkit " + " ".join(sys.argv[1:]), "git": _git_info(), "versions": package_versions(),
            "device": str(exp.device), "torch_threads": torch.get_num_threads(), "threads_source": _THREADS[1],
            "cpu_count": os.cpu_count(),
            "platform": platform.platform(), "dataset": exp.splits.manifest, "model": exp.model_spec(),
            "recipe": exp.recipe.to_dict(), "seeds": args.seeds, "time": time.strftime("%Y-%m-%dT%H:%M:%S")}


def _fmt(summary: dict[str, Any], key: str, digits: int = 1) -> str:
    v = summary["metrics"].get(key)
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "–"
    ci = summary["metrics"].get(f"{key}_ci95")
    s = f"{v:.{digits}f}"
    return f"{s} ± {ci:.{digits}f}" if ci is not None and not math.isnan(ci) else s


TABLE_COLUMNS = [("forget_acc", "forget acc", 1), ("retain_acc", "retain acc", 1), ("test_acc", "test acc", 1),
                 ("test_acc_remaining", "test acc (kept cls)", 1), ("mia_efficacy", "MIA-eff.", 1),
                 ("mia_loss_auc", "loss AUC", 3), ("avg_gap", "avg gap", 2), ("seconds", "seconds", 2),
                 ("rte", "RTE", 1)]


def _print_table(summary: list[dict[str, Any]], title: str) -> None:
    from rich.table import Table

    cols = [c for c in TABLE_COLUMNS if any(c[0] in s["metrics"] for s in summary)]
    t = Table(title=title)
    t.add_column("method")
    for _, head, _ in cols:
        t.add_column(head, justify="right")
    for s in summary:
        if s.get("status") in ("n/a", "error"):
            t.add_row(s["method"], *([s["status"]] + [""] * (len(cols) - 1)))
            continue
        # (!): the method missed the goal of a class request; the warning lines below the table say why.
        t.add_row(s["method"] + (" (!)" if s.get("note") else ""), *(_fmt(s, k, d) for k, _, d in cols))
    _console().print(t)


def _write_results(out: Path, results: dict[str, Any]) -> None:
    from .checkpoints import atomic_write_text
    from .distributed import is_main_process

    if not is_main_process():
        return
    atomic_write_text(out / "results.json", json.dumps(results, indent=1, sort_keys=False, default=_json_default))


def _json_default(o: Any) -> Any:
    import numpy as np

    if isinstance(o, (np.floating, np.integer)):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    return str(o)


def _experiment(args: argparse.Namespace):  # noqa: ANN202
    from .pipeline import Experiment

    _check_device(args.device)
    log = (lambda m: None) if args.quiet else _Heartbeat.wrap(lambda m: _console().print(f"[dim]{m}[/dim]"))
    recipe = None
    if getattr(args, "epochs", None) is not None:
        import dataclasses

        from .presets import DEFAULT_MODEL, train_recipe

        if args.epochs < 1:
            raise ConfigError(f"--epochs must be >= 1, got {args.epochs}")
        model = args.model or DEFAULT_MODEL.get(args.dataset.split(":", 1)[0], "mlp")
        recipe = dataclasses.replace(train_recipe(args.dataset, model), epochs=args.epochs)
    return Experiment(args.dataset, getattr(args, "model", None), recipe=recipe, data_seed=args.data_seed,
                      cache_dir=getattr(args, "cache_dir", ".unlearnkit_cache"),
                      device=args.device, progress=not args.quiet and sys.stderr.isatty(), log=log,
                      label_column=args.label_column, record_stats=getattr(args, "record_stats", False),
                      data_options={k: v for k, v in (("header", args.header), ("id_column", args.id_column),
                                                      ("text_column", args.text_column),
                                                      ("tokenizer", args.tokenizer),
                                                      ("tokenizer_file", args.tokenizer_file),
                                                      ("tokenizer_vocab_size", args.tokenizer_vocab_size))
                                    if v is not None})


class _Heartbeat:
    """Progress in logs: when stdout is not a terminal (CI logs, ``nohup``), a long phase prints
    ``... still working: <last log line> (N s)`` at least every ``EVERY`` seconds, so a log never looks hung.
    Terminals get tqdm's bars instead."""

    EVERY = 30.0
    active = False  # only while a command runs (main sets it), so an in-process caller never gets stray lines
    _last: tuple[float, str] | None = None
    _thread: Any = None

    @classmethod
    def wrap(cls, log: Any) -> Any:
        if sys.stdout.isatty():
            return log

        def logged(msg: str) -> None:
            cls._last = (time.monotonic(), msg)
            log(msg)

        if cls._thread is None:
            import threading

            cls._last = (time.monotonic(), "starting")
            start = time.monotonic()

            def beat() -> None:
                printed = 0.0
                while True:
                    time.sleep(1.0)
                    t_msg = cls._last[0] if cls._last is not None else start
                    now = time.monotonic()
                    if cls.active and now - max(t_msg, printed) >= cls.EVERY:
                        printed = now
                        print(f"... still working on the step above ({now - t_msg:.0f} s since its log line, "
                              f"{now - start:.0f} s in all)", flush=True)

            cls._thread = threading.Thread(target=beat, daemon=True)
            cls._thread.start()
        return logged


def _record(method: str, request: str, seed: int, metrics: dict[str, Any], config: dict[str, Any] | None = None,
            status: str = "ok", reason: str | None = None) -> dict[str, Any]:
    rec: dict[str, Any] = {"method": method, "request": request, "seed": seed, "status": status}
    if reason:
        rec["reason"] = reason
    if config is not None:
        rec["config"] = config
    plots = metrics.pop("_plots", None)
    rec["metrics"] = metrics
    if plots is not None:
        rec["plots"] = plots
    return rec


# ---------------------------------------------------------------------------------------------------------------
# run
# ---------------------------------------------------------------------------------------------------------------


class _CellCache:
    """Finished records of ``unlearnkit run`` in ``OUT/cells/``, keyed by everything they depend on.

    A record is reused when the same (method or reference, seed, request, dataset split, model, recipe, cached
    original and reference checkpoints, method config) *and the same unlearnkit source code* produced it before in
    this output folder; otherwise it is computed and written atomically. So an interrupted run resumes, and an
    unchanged re-run only reads; ``--fresh`` recomputes everything (the trained models still come from the model
    cache). Rank 0 decides, and under torch.distributed every rank follows it.
    """

    def __init__(self, root: Path, *, fresh: bool, log: Any, base: dict[str, Any]) -> None:
        from .pipeline import code_fingerprint

        self.root, self.fresh, self.log = root, fresh, log
        self.base = {**base, "code": code_fingerprint()}

    def __call__(self, name: str, seed: int, parts: dict[str, Any], compute: Any) -> dict[str, Any]:
        from .checkpoints import atomic_write_text
        from .data.base import content_hash
        from .distributed import broadcast_object, is_main_process

        key = content_hash(extra={**self.base, **parts, "name": name, "seed": int(seed)})
        path = self.root / f"{name}__s{seed}__{key}.json"
        rec = None
        if not self.fresh and is_main_process() and path.is_file():
            try:
                rec = json.loads(path.read_text())
            except (OSError, json.JSONDecodeError):
                rec = None  # a damaged cell is recomputed
        rec = broadcast_object(rec)
        if rec is not None:
            self.log(f"reusing the {name} result (seed {seed}) from {path}")
            return rec
        rec = compute()
        if is_main_process():
            atomic_write_text(path, json.dumps(rec, default=_json_default))
        return rec


def _say_settings(exp: Any, methods: list[str], split: Any, seed: int, provenance: dict[tuple[str, int], Any],
                  configs: dict[tuple[str, int], Any]) -> None:
    """One line per method: its non-default settings and their sources; the tuned file if one applied; one
    warning line per method that runs on its paper's defaults on a dataset unlike the paper's."""
    from .defaults import settings_messages

    for name in methods:
        if (name, seed) not in provenance:
            continue
        prov = provenance[name, seed]
        if any(p["source"] == "tuned file" for p in prov.values()):
            exp.log(f"{name}: using tuned settings from {exp.tuned_file(name, split)}")
        for line in settings_messages(name, exp.dataset_spec, prov, configs[name, seed]):
            exp.log(line)


def cmd_run(args: argparse.Namespace) -> int:
    from .distributed import is_main_process

    if args.task == "generation":  # class forgetting in a diffusion model: its own pipeline (unlearnkit.genrun)
        from .genrun import run_generation

        res = run_generation(args, log=(lambda m: None) if args.quiet else (lambda m: _console().print(m)))
        _console().print(f"run: {len(res['records'])} records in {Path(args.out) / 'results.json'}; report "
                         f"{Path(args.out) / 'report.md'} ({res['wall_seconds']:.1f}s)")
        return 0
    from .evaluation import summarize, write_report
    from .evaluation.verdicts import annotate
    from .methods.base import get_method
    from .pipeline import methods_for_task, parse_overrides

    t_start = time.perf_counter()
    seeds = args.seeds = _parse_seeds(args.seeds)
    methods = _resolve_methods(args.methods)
    overrides = parse_overrides(args.set)
    _check_overrides(overrides, methods, args.dataset, kinds=())
    if args.search:
        def has_search(m: str) -> bool:
            return "search" in get_method(m).config_cls.__dataclass_fields__

        searchable = [m for m in methods if has_search(m)]
        if not searchable:
            from .methods.base import list_methods

            have = [m for m in list_methods() if has_search(m)]
            raise ConfigError(f"--search: none of {', '.join(methods)} has a hyperparameter search "
                              f"(methods with one: {', '.join(have)})")
        for m in searchable:
            overrides.setdefault(m, {}).setdefault("search", "true")
    exp = _experiment(args)
    methods = methods_for_task(methods, exp.task, explicit=args.methods.strip() != "all", log=exp.log)
    out = Path(args.out)
    request = args.forget
    # Everything that can be checked is checked before any training: the request for every seed, every method's
    # config (presets and --set through the configs' own validators) and the output folder.
    splits = {s: exp.resolve(request, s) for s in seeds}
    ids_info = _report_ids(exp, splits[seeds[0]])
    configs: dict[tuple[str, int], Any] = {}
    provenance: dict[tuple[str, int], Any] = {}
    for seed in seeds:
        for name in methods:
            if exp.check_supported(get_method(name), splits[seed]) is None:
                configs[name, seed], provenance[name, seed] = exp.config_for(name, splits[seed], seed,
                                                                             overrides.get(name))
    _say_settings(exp, methods, splits[seeds[0]], seeds[0], provenance, configs)
    # Also for methods whose cells are n/a, so that a typo is never silently ignored.
    _check_overrides(overrides, methods, exp.dataset_spec, kinds=(splits[seeds[0]].request.kind,))
    check_output_dir(out)
    records: list[dict[str, Any]] = []

    def save_partial() -> None:  # after every record, so an interrupted run leaves what it finished
        info = {**_run_info(args, exp), "partial": True}
        if ids_info is not None:
            info["forget_ids"] = ids_info
        _write_results(out, {"schema": "unlearnkit.results/1", "run_info": info, "records": records,
                             "summary": summarize(records)})

    # The checkpoints' file names are content keys over the dataset split, model, architecture, recipe, seed and
    # request, so naming them (below) keys each record on all of those.
    cell = _CellCache(out / "cells", fresh=args.fresh, log=exp.log, base={"request": request})
    for seed in seeds:
        split = splits[seed]
        orig = exp.original(seed)
        ref = exp.retrained(split, seed)
        models = {"original": orig.path.name, "reference": ref.path.name}
        ev = exp.evaluator(split, seed)
        records.append(cell("original", seed, models, lambda seed=seed, ev=ev, orig=orig, ref=ref: _record(
            "original", request, seed, ev.evaluate(orig.model, reference=ref.model))))
        save_partial()

        def _reference_record(seed: int = seed, split: Any = split, ref: Any = ref, ev: Any = ev) -> dict[str, Any]:
            floor_ref = None
            if len(seeds) > 1 and seed == seeds[0]:
                # Noise floor: a second reference with another seed on the same retain set (spec §5 pitfall 4); one
                # pair (first seed) bounds the cost to one extra training.
                floor_ref = exp.models.trained("retrain", seed + 10_000, split.retain_set(exp.splits.train),
                                         {"request": str(split.request), "forget_hash": split.key}).model
            return _record("retrain", request, seed, ev.evaluate(ref.model, reference=floor_ref, seconds=ref.seconds))

        records.append(cell("retrain", seed, {**models, "floor": len(seeds) > 1 and seed == seeds[0]},
                            _reference_record))
        save_partial()
        for name in methods:
            spec = get_method(name)
            reason = exp.check_supported(spec, split)
            if reason:
                records.append(_record(name, request, seed, {}, status="n/a", reason=reason))
                continue
            cfg, prov = configs[name, seed], provenance[name, seed]
            stats = orig.stats_path if spec.uses_recorded_stats else None

            def _method_record(name: str = name, seed: int = seed, split: Any = split, orig: Any = orig,
                               ref: Any = ref, ev: Any = ev, cfg: Any = cfg, stats: Any = stats,
                               prov: Any = prov) -> dict[str, Any]:
                from .defaults import chosen_by_search
                from .errors import DivergedError

                try:
                    res, cfg = exp.run_method(name, orig.model, split, seed, config=cfg, stats=stats)
                except DivergedError as e:  # an error row, never a result that reads like perfect forgetting
                    exp.log(f"{name} (seed {seed}): {e}")
                    return _record(name, request, seed, {}, config=cfg.to_dict(), status="error", reason=str(e))
                metrics = ev.evaluate(res.model, reference=ref.model, seconds=res.seconds,
                                      peak_memory_mb=res.peak_memory_mb, reference_seconds=ref.seconds)
                rec = _record(name, request, seed, metrics, config=cfg.to_dict())
                rec["provenance"] = prov
                chosen = chosen_by_search(cfg.to_dict(), res.history)
                if chosen:
                    rec["chosen"] = chosen
                if stats is not None:
                    rec["inputs"] = {"recorded_stats": stats.name, "retain_data": False}
                return rec

            key = {**models, "config": cfg.to_dict()}
            if stats is not None:
                key["recorded_stats"] = stats.name
            records.append(cell(name, seed, key, _method_record))
            save_partial()
    summary = summarize(records)
    tuned = {r["method"] for r in records if any(p.get("source") == "tuned file"
                                                 for p in (r.get("provenance") or {}).values())}
    notes = annotate(summary, request_kind=splits[seeds[0]].request.kind, tuned=tuned)
    results = {"schema": "unlearnkit.results/1", "run_info": _run_info(args, exp), "records": records,
               "summary": summary}
    if ids_info is not None:
        results["run_info"]["forget_ids"] = ids_info
    results["run_info"]["total_seconds"] = time.perf_counter() - t_start
    _write_results(out, results)
    if not is_main_process():
        return 0
    report = write_report(results, out)
    _print_table(summary, f"{exp.dataset_spec} · {exp.model_name} · forget {request} · seeds {seeds}")
    for name, note in notes.items():
        _console().print(f"warning: {name} {note}", markup=False, highlight=False)
    _console().print(f"results: {out / 'results.json'}   report: {report}   "
                     f"({time.perf_counter() - t_start:.1f}s)")
    return 0


# ---------------------------------------------------------------------------------------------------------------
# methods, train, unlearn, evaluate, report
# ---------------------------------------------------------------------------------------------------------------


def _report_ids(exp: Any, split: Any) -> dict[str, Any] | None:
    """For an ``ids:`` request: log how many ids were found in the training split and which are held out."""
    from .pipeline import forget_ids_record

    if split.id_map is None:
        return None
    rec = forget_ids_record(exp.splits, split)
    exp.log(f"ids: {len(rec['map'])} ids name training examples ({rec['scheme']}); `unlearnkit ids` shows them")
    for name, held in rec["held_out"].items():
        shown = ", ".join(held[:10]) + (", ..." if len(held) > 10 else "")
        exp.log(f"ids: {len(held)} requested ids are in the {name} split, never trained on, so not forgotten: "
                f"{shown}")
    return rec


def _label_text(names: list[str], y: Any) -> str:
    """A training example's class name; a multi-hot target's positive labels joined with ``|``."""
    if getattr(y, "ndim", 0) == 1:
        return "|".join(names[i] for i in y.nonzero().flatten().tolist())
    return names[int(y)]


def cmd_ids(args: argparse.Namespace) -> int:
    """Show how user ids map to the splits: the dataset's id scheme, then one line per id (split, index, class)."""
    from .data.ids import read_ids_file, resolve_user_ids

    exp = _experiment(args)
    s = exp.splits
    wanted: list[str] = list(args.ids or [])
    if args.forget:
        if not args.forget.startswith("ids:"):
            raise ConfigError(f"--forget takes an ids:PATH request here, got {args.forget!r}")
        wanted += read_ids_file(args.forget[4:])
    print(f"{s.manifest.get('spec', exp.dataset_spec)}: ids are the {s.manifest.get('ids', 'training positions')}; "
          f"train {len(s.train)}, val {len(s.val)}, test {len(s.test)} examples (data seed {exp.data_seed})")
    if not wanted:  # the first rows of each split, as a sample of what ids look like
        for name, ds in (("train", s.train), ("val", s.val), ("test", s.test)):
            src = ds.source_ids if ds.source_ids is not None else range(len(ds))
            for i, v in list(enumerate(src))[: args.limit]:
                print(f"{v}\t{name}\t{i}\t{_label_text(s.class_names, ds.y[i])}")
        return 0
    res = resolve_user_ids(wanted, s.train, held_out={"val": s.val, "test": s.test})
    for uid, i in zip(res.train_ids, res.train_idx.tolist()):
        print(f"{uid}\ttrain\t{i}\t{_label_text(s.class_names, s.train.y[i])}")
    for name, held in res.held_out.items():
        for uid in held:
            print(f"{uid}\t{name}\t-\t(held out: never trained on)")
    for uid in res.unknown:
        print(f"{uid}\t-\t-\t(not an id of this dataset)")
    return 0


def cmd_methods(args: argparse.Namespace) -> int:
    from rich.table import Table

    from .methods.base import get_method, list_methods

    t = Table(title="registered methods")
    for c in ("name", "summary", "needs", "requests", "paper"):
        t.add_column(c)
    for n in list_methods():
        s = get_method(n)
        needs = [k for k, v in (("forget", s.requires_forget), ("retain", s.requires_retain), ("val", s.requires_val),
                                ("class ids", s.requires_forget_classes)) if v]
        t.add_row(n, s.summary, ", ".join(needs) or "–", ",".join(sorted(s.supported_requests)), s.paper)
    _console().print(t)
    return 0


def cmd_train(args: argparse.Namespace) -> int:
    import shutil

    from .checkpoints import atomic_write, save_checkpoint
    from .pipeline import stats_path

    exp = _experiment(args)
    split = exp.resolve(args.forget, args.seed) if args.forget else None
    check_output_file(args.out)
    if split is not None:
        tm = exp.retrained(split, args.seed)
    else:
        tm = exp.original(args.seed)
    if args.out:
        save_checkpoint(args.out, tm.model, tm.manifest)
        if tm.stats_path is not None:  # the cached file as it is, copied atomically beside --out
            atomic_write(stats_path(Path(args.out)), lambda tmp: shutil.copyfile(tm.stats_path, tmp))
    acc = _quick_acc(tm.model, exp)
    _console().print(f"{tm.manifest['role']} model: test acc {acc:.1f}%  checkpoint: {args.out or tm.path}"
                     + ("  (reused from cache)" if tm.reused else "")
                     + (f"  statistics: {stats_path(Path(args.out or tm.path))}" if tm.stats_path else ""))
    return 0


def _quick_acc(model: Any, exp: Any) -> float:
    from .training import evaluate_accuracy

    return evaluate_accuracy(model, exp.splits.test, device=exp.device)


def _load_for(exp: Any, path: str) -> Any:
    from .checkpoints import build_from_checkpoint
    from .errors import CheckpointError

    model, man = build_from_checkpoint(path, exp.device)
    if man.get("dataset", {}).get("hash") not in (None, exp.splits.hash):
        raise CheckpointError(f"checkpoint {path} was trained on another dataset/split "
                              f"({man['dataset'].get('dataset')}); pass the matching --dataset and --data-seed")
    return model, man


def cmd_unlearn(args: argparse.Namespace) -> int:
    from .checkpoints import save_checkpoint
    from .errors import UnsupportedRequestError
    from .methods.base import get_method
    from .pipeline import parse_overrides

    spec = get_method(args.method)
    overrides = parse_overrides(args.set)
    others = sorted(set(overrides) - {args.method})
    if others:
        raise ConfigError(f"--set names {', '.join(others)}, but --method is {args.method}: write "
                          f"--set {args.method}.FIELD=VALUE")
    if args.stats is not None:
        if not spec.uses_recorded_stats:
            raise ConfigError(f"--stats: {args.method} does not use recorded layer statistics; drop --stats "
                              "(methods that use them: pgu)")
        if not Path(args.stats).is_file():
            raise ConfigError(f"--stats {args.stats} not found; record it with `unlearnkit train --record-stats`")
    exp = _experiment(args)
    split = exp.resolve(args.forget, args.seed)
    reason = exp.check_supported(spec, split)
    if reason:
        raise UnsupportedRequestError(reason)
    cfg, prov = exp.config_for(args.method, split, args.seed, overrides.get(args.method))
    _say_settings(exp, [args.method], split, args.seed, {(args.method, args.seed): prov},
                  {(args.method, args.seed): cfg})
    check_output_file(args.out)
    model, man = _load_for(exp, args.checkpoint)
    res, cfg = exp.run_method(args.method, model, split, args.seed, stats=args.stats, config=cfg)
    save_checkpoint(args.out, res.model, {**man, "role": "unlearned", "method": args.method, "config": cfg.to_dict(),
                                          "request": str(split.request), "unlearn_seconds": res.seconds})
    _console().print(f"{args.method}: {res.seconds:.2f}s, test acc {_quick_acc(res.model, exp):.1f}%  "
                     f"-> {args.out}")
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    exp = _experiment(args)
    split = exp.resolve(args.forget, args.seed)
    check_output_file(args.out)
    model, man = _load_for(exp, args.checkpoint)
    ref = _load_for(exp, args.reference)[0] if args.reference else None
    ref_seconds = None
    if args.reference:
        ref_seconds = _load_for(exp, args.reference)[1].get("train_seconds")
    ev = exp.evaluator(split, args.seed)
    metrics = ev.evaluate(model, reference=ref, seconds=man.get("unlearn_seconds"), reference_seconds=ref_seconds)
    metrics.pop("_plots", None)
    text = json.dumps(metrics, indent=1, default=_json_default)
    if args.out:
        from .checkpoints import atomic_write_text

        atomic_write_text(args.out, text)
    print(text)
    return 0


def _check_overrides(overrides: dict[str, dict[str, str]], methods: list[str], dataset: str,
                     kinds: tuple[str, ...] = ("class", "random")) -> None:
    """Every ``--set`` names a method that will run and builds a valid config for each request kind in ``kinds``
    (presets differ by kind), before any training."""
    from .pipeline import build_config

    for m, fields in overrides.items():
        if m not in methods:
            raise ConfigError(f"--set names method {m!r}, which is not in --methods ({', '.join(methods)})")
        for kind in kinds:
            build_config(m, dataset=dataset, kind=kind, seed=0, overrides=fields)


def cmd_bench(args: argparse.Namespace) -> int:
    from .bench import _parse_scenarios, run_bench
    from .pipeline import methods_for_task, parse_overrides

    if args.task == "generation":
        from .genrun import bench_generation

        args.seeds = ",".join(map(str, _parse_seeds(args.seeds)))
        res = bench_generation(args, log=(lambda m: None) if args.quiet else (lambda m: _console().print(m)))
        _console().print(f"bench: {sum(len(r['records']) for r in res)} generation records")
        return 0

    t0 = time.perf_counter()
    args.seeds = _parse_seeds(args.seeds)
    methods = _resolve_methods(args.methods)
    scenarios = _parse_scenarios(args.scenarios)
    _check_overrides(parse_overrides(args.set), methods, args.dataset)
    exp = _experiment(args)
    exp.progress = False  # one line per cell instead of nested bars
    log = (lambda m: None) if args.quiet else (lambda m: _console().print(m))
    methods = methods_for_task(methods, exp.task, explicit=args.methods.strip() != "all", log=log)
    out = Path(args.out or f"runs/bench-{args.dataset.replace(':', '_').replace('/', '_')}")
    check_output_dir(out)
    results = run_bench(exp, methods=methods, scenarios=scenarios, seeds=args.seeds, out=out,
                        overrides=parse_overrides(args.set), log=log, run_info=_run_info(args, exp),
                        explicit_scenarios=args.scenarios.strip() != "all")
    from .distributed import is_main_process

    if not is_main_process():
        return 0
    n_ok = sum(r.get("status") == "ok" for r in results["records"])
    _console().print(f"bench: {n_ok} records in {out / 'results.json'}; report {out / 'report.md'} "
                     f"({time.perf_counter() - t0:.1f}s)")
    return 0


def cmd_audit(args: argparse.Namespace) -> int:
    from .audit import run_audit
    from .pipeline import parse_overrides

    t0 = time.perf_counter()
    args.seeds = [args.seed]
    methods = _resolve_methods(args.methods)
    _check_overrides(parse_overrides(args.set), methods, args.dataset)
    exp = _experiment(args)
    exp.progress = False
    out = Path(args.out or "runs/audit")
    check_output_dir(out)
    log = (lambda m: None) if args.quiet else (lambda m: _console().print(m))
    run_audit(exp, request=args.forget, methods=methods, k=args.models, n=args.n, seed=args.seed, out=out,
              overrides=parse_overrides(args.set), log=log, run_info=_run_info(args, exp))
    from .distributed import is_main_process

    if is_main_process():
        _console().print(f"audit: {out / 'audit.json'}  report: {out / 'audit.md'} ({time.perf_counter() - t0:.0f}s)")
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from .evaluation import write_report

    d = Path(args.dir)
    p = d / "results.json"
    if not p.is_file():
        raise ConfigError(f"{p} not found: pass the --out folder of an `unlearnkit run`")
    try:
        results = json.loads(p.read_text())
    except json.JSONDecodeError as e:
        raise ConfigError(f"{p} is not valid JSON ({e.msg} at line {e.lineno})") from None
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError(f"cannot read {p}: {e}") from None
    if not isinstance(results, dict) or not isinstance(results.get("records"), list):
        raise ConfigError(f"{p} is not an unlearnkit results file (expected an object with a 'records' list, got "
                          f"{type(results).__name__}); pass the --out folder of an `unlearnkit run` or `bench`")
    check_output_dir(d)
    if results.get("schema") == "unlearnkit.bench/1":
        from .bench import render_bench_report

        _console().print(f"report: {render_bench_report(results, d)}")
        return 0
    _console().print(f"report: {write_report(results, d)}")
    return 0


# ---------------------------------------------------------------------------------------------------------------
# argument parsing
# ---------------------------------------------------------------------------------------------------------------


def _common(p: argparse.ArgumentParser, *, training: bool = True) -> None:
    """Options every data command takes; ``training=False`` drops those that only matter when models are trained
    (``--model``, ``--cache-dir``, ``--epochs``), for commands that read checkpoints instead."""
    p.add_argument("--dataset", default="digits",
                   help="digits | shapes[:N] | textsynth[:N] | textsynth-multilabel[:N] | textcsv:PATH | "
                        "jsonl:PATH | cifar10:PATH | cifar100:PATH | folder:PATH | csv:PATH (default digits)")
    if training:
        p.add_argument("--model", default=None, help="mlp | cnn | resnet18 | vit | transformer (default: cnn for "
                                                     "images, transformer for text)")
    p.add_argument("--label-column", default=None, help="label column of a csv: dataset (name or index; default last)")
    p.add_argument("--header", action=argparse.BooleanOptionalAction, default=None,
                   help="csv: whether the first row is a header (default: detected)")
    p.add_argument("--id-column", default=None,
                   help="csv: column of unique example ids that ids:PATH requests name (name or index; not a "
                        "feature); default: data row numbers from 0")
    p.add_argument("--text-column", default=None,
                   help="textcsv:/jsonl: the text column (default 'text'; the label column is --label-column, "
                        "default 'label')")
    p.add_argument("--tokenizer", default=None, choices=["bpe", "wordpiece", "word"],
                   help="text datasets: tokenizer trained on the training split only: bpe (default for textcsv:/"
                        "jsonl:; reproducible), wordpiece (its trainer is not reproducible across processes) or word "
                        "(one id per training word; default for textsynth)")
    p.add_argument("--tokenizer-file", default=None, metavar="PATH",
                   help="text datasets: a tokenizer.json (Hugging Face tokenizers) to use instead of a trained one; "
                        "its pad token is the pad id")
    p.add_argument("--tokenizer-vocab-size", type=_positive_int, default=None, metavar="N",
                   help="text datasets: vocabulary size of the trained tokenizer (default 8000 for bpe/wordpiece, "
                        "every training word for word)")
    p.add_argument("--data-seed", type=_nonneg_int, default=0, help="seed of the train/val/test split (default 0)")
    p.add_argument("--device", default="cuda" if _cuda() else "cpu", help="cpu or cuda (default: cuda if available)")
    if training:
        p.add_argument("--cache-dir", default=os.environ.get("UNLEARNKIT_CACHE", ".unlearnkit_cache"),
                       help="where trained models are cached (env UNLEARNKIT_CACHE; default .unlearnkit_cache)")
        p.add_argument("--epochs", type=int, default=None,
                       help="override the training recipe's epochs (originals, references, shadows)")
    p.add_argument("--threads", type=_positive_int, default=None, metavar="N",
                   help="torch intra-op threads per process (default: OMP_NUM_THREADS if set, else 1; more than "
                        "one thread on a shared or small machine can be 10-20x slower, and the thread count "
                        "changes the trained weights, so it is part of the model cache key)")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bars or log lines")


def _positive_int(text: str) -> int:
    try:
        v = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if v < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return v


def set_threads(threads: int | None) -> tuple[int, str]:
    """Set torch's intra-op thread count for this process; returns ``(threads, source)``.

    ``threads`` (``--threads N``) wins; else ``OMP_NUM_THREADS`` when the user set it (torch already honours it);
    else one thread. One thread per process is the safe default: on a 2-core machine shared with other jobs, two
    torch threads ran 10-20x slower than one (spinning threads fight over the cores), and several processes each
    with as many threads as cores oversubscribe any machine.
    """
    import torch

    if threads is not None:
        torch.set_num_threads(int(threads))
        return int(threads), "--threads"
    env = os.environ.get("OMP_NUM_THREADS", "").strip()
    if env:
        return torch.get_num_threads(), "OMP_NUM_THREADS"
    torch.set_num_threads(1)
    return 1, "default"


_THREADS: tuple[int, str] = (0, "unset")


def _cuda() -> bool:
    try:
        import torch

        return torch.cuda.is_available()
    except ImportError:
        return False


class _Parser(argparse.ArgumentParser):
    """argparse with the CLI's error convention: one ``error: ...`` line and exit status 2 (no usage block)."""

    def error(self, message: str) -> None:  # type: ignore[override]
        print(f"error: {self.prog}: {message} (see `{self.prog} --help`)", file=sys.stderr)
        raise SystemExit(2)


def _nonneg_int(text: str) -> int:
    try:
        v = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer >= 0, got {text!r}") from None
    if v < 0 or v >= 2**31:
        raise argparse.ArgumentTypeError(f"expected an integer in 0..2147483647, got {text!r}")
    return v


def build_parser() -> argparse.ArgumentParser:
    ap = _Parser(prog="unlearnkit", description="Machine unlearning for PyTorch classifiers.")
    sub = ap.add_subparsers(dest="command", required=True)

    p = sub.add_parser("run", help="train (or reuse) original + retrained reference, run methods, evaluate, report")
    _common(p)
    p.add_argument("--forget", default="class:3", help="forget request: class:3 | class:3,7 | random:0.1 | ids:PATH "
                                                       "| subclass:C/S (default class:3)")
    p.add_argument("--methods", default="all", help="'all' or a comma-separated list (default all)")
    p.add_argument("--seeds", default="0", help="comma-separated seeds (default 0)")
    p.add_argument("--out", default="runs/latest", help="output folder (default runs/latest)")
    p.add_argument("--set", action="append", metavar="METHOD.FIELD=VALUE",
                   help="override a method's config field, e.g. --set finetune.epochs=3 (repeatable)")
    p.add_argument("--fresh", action="store_true",
                   help="recompute every record even if OUT/cells holds it from an identical earlier run")
    p.add_argument("--search", action="store_true",
                   help="let methods with a built-in hyperparameter search (svd) choose on the val split, never test")
    p.add_argument("--record-stats", action="store_true",
                   help="record pgu's layer statistics when training the original (stored beside its checkpoint) "
                        "and run pgu from them, without the retain data")
    from .genrun import add_generation_options

    add_generation_options(p)
    p.set_defaults(fn=cmd_run)

    p = sub.add_parser("methods", help="list registered methods with their paper")
    p.set_defaults(fn=cmd_methods)

    p = sub.add_parser("train", help="train (or reuse) an original model, or a retrained reference with --forget")
    _common(p)
    p.add_argument("--seed", type=_nonneg_int, default=0, help="training seed (default 0)")
    p.add_argument("--forget", default=None, help="train the reference without this forget request")
    p.add_argument("--out", default=None, help="also write the checkpoint here (.safetensors)")
    p.add_argument("--record-stats", action="store_true",
                   help="also record pgu's layer statistics (original models), stored beside the checkpoint as "
                        "NAME.stats.safetensors")
    p.set_defaults(fn=cmd_train)

    p = sub.add_parser("unlearn", help="unlearn a checkpoint with one method")
    _common(p, training=False)
    p.add_argument("--checkpoint", required=True, metavar="PATH",
                   help="the trained model (.safetensors from `unlearnkit train --out`); its manifest must match "
                        "--dataset and --data-seed")
    p.add_argument("--method", required=True, help="a registered method (see `unlearnkit methods`)")
    p.add_argument("--forget", required=True, help="forget request: class:3 | class:3,7 | random:0.1 | ids:PATH "
                                                   "| subclass:C/S")
    p.add_argument("--seed", type=_nonneg_int, default=0,
                   help="seed of the method and of random: requests (default 0)")
    p.add_argument("--out", required=True, help="where to write the unlearned checkpoint (.safetensors)")
    p.add_argument("--set", action="append", metavar="METHOD.FIELD=VALUE",
                   help="override a field of --method's config, e.g. --set finetune.epochs=3 (repeatable); "
                        "checked before any work")
    p.add_argument("--stats", default=None, metavar="PATH",
                   help="layer statistics recorded at training time (train --record-stats), for methods that use "
                        "them (pgu, which then runs without the retain data)")
    p.set_defaults(fn=cmd_unlearn)

    p = sub.add_parser("evaluate", help="evaluate a checkpoint (optionally against a retrained reference)")
    _common(p)
    p.add_argument("--checkpoint", required=True)
    p.add_argument("--reference", default=None, help="retrained reference checkpoint, for the gap metrics")
    p.add_argument("--forget", required=True, help="the forget request the checkpoint was unlearned for")
    p.add_argument("--seed", type=_nonneg_int, default=0, help="evaluation seed (default 0)")
    p.add_argument("--out", default=None, help="also write the metrics JSON here")
    p.set_defaults(fn=cmd_evaluate)

    p = sub.add_parser("bench", help="every (scenario, method, seed) cell, resumable, with a leaderboard report")
    _common(p)
    p.add_argument("--methods", default="all", help="'all' or a comma-separated list (default all)")
    p.add_argument("--scenarios", default="all",
                   help="'all' or a list of class1,class3,random1,random10,random30,subclass,seq_random,seq_class")
    p.add_argument("--seeds", default="0,1,2", help="comma-separated seeds (default 0,1,2)")
    p.add_argument("--out", default=None, help="output folder (default runs/bench-DATASET)")
    p.add_argument("--set", action="append", metavar="METHOD.FIELD=VALUE")
    add_generation_options(p)
    p.set_defaults(fn=cmd_bench)

    p = sub.add_parser("audit", help="gold-standard audit: U-LiRA and the challenge forgetting quality")
    _common(p)
    p.add_argument("--forget", default="class:3", help="forget request (default class:3)")
    p.add_argument("--methods", default="finetune", help="comma-separated methods to audit (default finetune)")
    p.add_argument("--models", type=int, default=32, help="K shadow models (even; default 32)")
    p.add_argument("--n", type=int, default=None, help="N models per side for forgetting quality (default K)")
    p.add_argument("--seed", type=_nonneg_int, default=0)
    p.add_argument("--out", default=None, help="output folder (default runs/audit)")
    p.add_argument("--set", action="append", metavar="METHOD.FIELD=VALUE")
    p.set_defaults(fn=cmd_audit)

    p = sub.add_parser("ids", help="show the dataset's example ids (what ids:PATH requests name) and where given "
                                   "ids are: train (with their index), val or test")
    _common(p, training=False)
    p.add_argument("ids", nargs="*", help="ids to look up (default: the first rows of each split)")
    p.add_argument("--forget", default=None, metavar="ids:PATH", help="look up the ids of this request file")
    p.add_argument("--limit", type=_positive_int, default=5, help="rows per split shown without ids (default 5)")
    p.set_defaults(fn=cmd_ids)

    p = sub.add_parser("report", help="re-render DIR/report.md and its plots from DIR/results.json")
    p.add_argument("dir")
    p.set_defaults(fn=cmd_report)

    from .cli_ledger import add_ledger_parsers  # `request` and `ledger`: deletion requests as a workflow

    add_ledger_parsers(sub)
    from .cli_tune import add_tune_parser  # `tune`: Optuna on a proxy request

    add_tune_parser(sub, _common)
    return ap


def _one_line(e: BaseException) -> str:
    text = " ".join(str(e).split()) or type(e).__name__
    return text


def main(argv: Sequence[str] | None = None) -> int:
    from .distributed import init_from_env, is_main_process

    args = build_parser().parse_args(argv)
    # Under torchrun: one process group for the whole command (gloo on CPU, nccl on CUDA); a single process skips it.
    dist_device = init_from_env()
    if dist_device is not None and hasattr(args, "device"):
        args.device = str(dist_device)
    if not is_main_process() and hasattr(args, "quiet"):
        args.quiet = True  # rank 0 alone prints, writes results and reports
    global _THREADS
    _THREADS = set_threads(getattr(args, "threads", None))
    try:
        _Heartbeat.active, _Heartbeat._last = True, (time.monotonic(), "start")
        return int(args.fn(args) or 0)
    except UnlearnError as e:
        print(f"error: {_one_line(e)}", file=sys.stderr)
        return 2
    except OSError as e:  # disk full, permission denied, ...: one line, no traceback
        where = f" ({e.filename})" if getattr(e, "filename", None) else ""
        print(f"error: {e.strerror or e}{where}", file=sys.stderr)
        return 2
    except ValueError as e:
        print(f"error: {_one_line(e)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        return 130
    finally:
        _Heartbeat.active = False
        if dist_device is not None:
            import torch.distributed as dist

            if dist.is_initialized():
                dist.destroy_process_group()


if __name__ == "__main__":
    raise SystemExit(main())
