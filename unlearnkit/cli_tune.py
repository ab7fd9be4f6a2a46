"""``unlearnkit tune``: Optuna on a proxy request (:mod:`unlearnkit.tune`), attached by :func:`add_tune_parser`.

Optuna and the tuner are imported only when the command runs, so ``unlearnkit --help`` stays fast.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

__all__ = ["add_tune_parser", "tune_methods"]


def cmd_tune(args: argparse.Namespace) -> int:
    from . import cli
    from .errors import ConfigError
    from .spaces import space_of
    from .tune import tune_method, write_tune_report

    seeds = cli._parse_seeds(args.seeds)
    eval_seeds = cli._parse_seeds(args.eval_seeds) if args.eval_seeds else []
    if set(seeds) & set(eval_seeds):
        raise ConfigError(f"--eval-seeds {args.eval_seeds} must differ from the tune seeds {args.seeds} "
                          "(the test gap is measured on seeds the tuner never saw)")
    methods = tune_methods(args.methods)
    for m in methods:
        space_of(m)  # one-line error for a method without a space, before any training
    if args.trials is None and args.budget_minutes is None:
        raise ConfigError("tune needs a budget: pass --trials N or --budget-minutes T")
    exp = cli._experiment(args)
    out = Path(args.out)
    cli.check_output_dir(out)
    per = None if args.budget_minutes is None else args.budget_minutes / len(methods)
    results = [tune_method(exp, m, args.forget, seeds=seeds, out=out, trials=args.trials, budget_minutes=per,
                           cost_lambda=args.cost_lambda, eval_seeds=eval_seeds, log=exp.log) for m in methods]
    info = {"dataset": exp.dataset_spec, "model": exp.model_name, "request": args.forget, "seeds": seeds,
            "eval_seeds": eval_seeds, "cost_lambda": args.cost_lambda, "trials": args.trials,
            "budget_minutes": args.budget_minutes}
    report = write_tune_report(results, out, info)
    cli._console().print(f"tune report: {report}")
    return 0


def tune_methods(text: str) -> list[str]:
    """The methods of ``--methods``: a comma-separated list, or ``all`` for every registered method that declares a
    search space (:data:`unlearnkit.spaces.SPACES`; gradtau and retrain have none), in registry order."""
    from . import cli
    from .methods.base import list_methods
    from .spaces import SPACES

    if text.strip() == "all":
        return [m for m in list_methods() if m in SPACES]
    return cli._resolve_methods(text)


def _float(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None


def add_tune_parser(sub: Any, common: Any) -> None:
    """Add ``tune`` to the main parser's subparsers ``sub``; ``common`` adds the dataset/model/cache options."""
    p = sub.add_parser("tune", help="choose method settings with Optuna on a proxy request from the training data "
                                    "(val-based, never test); writes a tuned file that run and bench pick up")
    common(p)
    p.add_argument("--forget", default="class:0", help="the request kind and size to tune for (default class:0)")
    p.add_argument("--methods", required=True, help="comma-separated methods, or 'all' for every method with a "
                                                    "search space (gradtau has none: it is the untuned reference)")
    p.add_argument("--trials", type=int, default=None,
                   help="trials per method, the untuned config's and resumed ones included")
    p.add_argument("--budget-minutes", type=_float, default=None, help="wall-clock budget for all methods")
    p.add_argument("--seeds", default="0,1", help="tune seeds: each trial is scored on one original and proxy draw "
                                                "per seed (default 0,1: with one seed the pick can fit one "
                                                "original's proxy and lose on the real request, README)")
    p.add_argument("--eval-seeds", default="", help="fresh seeds for the test gap of the chosen values on the real "
                                                    "request (e.g. 3,4,5; default: none)")
    p.add_argument("--cost-lambda", type=_float, default=0.0, help="objective += L x seconds / retrain seconds")
    p.add_argument("--out", default="tune_out", help="output folder: study.db, tune.json, tune_report.md")
    p.set_defaults(fn=cmd_tune)
