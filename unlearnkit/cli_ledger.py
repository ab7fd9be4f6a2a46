"""``unlearnkit request add|list|apply|report`` and ``unlearnkit ledger verify``: deletion requests as a workflow.

Attached to the main parser by :func:`add_ledger_parsers`; the ledger package is imported only when a command
runs, so ``unlearnkit --help`` stays fast. Expected failures raise :class:`~unlearnkit.errors.UnlearnError`,
which ``unlearnkit.cli.main`` prints as one ``error: ...`` line (exit status 2); ``ledger verify`` exits 1 with
the first broken row.
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any

__all__ = ["add_ledger_parsers"]


def _ledger(args: argparse.Namespace) -> Any:
    from .ledger import Ledger

    log = (lambda m: None) if getattr(args, "quiet", False) else (lambda m: print(m, file=sys.stderr))
    return Ledger(args.ledger, cache_dir=getattr(args, "cache_dir", ".unlearnkit_cache"),
                  device=getattr(args, "device", "cpu"), log=log)


def cmd_request_add(args: argparse.Namespace) -> int:
    with _ledger(args) as led:
        rid = led.add_request(checkpoint=args.checkpoint, dataset=args.dataset, data_seed=args.data_seed,
                              label_column=args.label_column, ids=args.ids, cls=args.cls, reason=args.reason,
                              requester=args.requester)
    print(rid)
    return 0


def cmd_request_list(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.table import Table

    with _ledger(args) as led:
        reqs = led.requests(pending=args.pending)
    t = Table(title=f"{'pending ' if args.pending else ''}deletion requests")
    for c in ("id", "received", "dataset", "selector", "samples", "requester", "reason", "status"):
        t.add_column(c)
    for r in reqs:
        t.add_row(str(r.id), r.received_at, r.dataset.get("spec", ""), r.selector, str(r.n_samples), r.requester,
                  r.reason, "pending" if r.pending else f"applied ({r.application_id})")
    Console(highlight=False, width=None if sys.stdout.isatty() else 160).print(t)
    return 0


def cmd_request_apply(args: argparse.Namespace) -> int:
    from .pipeline import parse_overrides

    overrides = parse_overrides(args.set)
    for m in overrides:
        if m != args.method:
            from .errors import ConfigError

            raise ConfigError(f"--set names method {m!r}, but --method is {args.method!r}")
    with _ledger(args) as led:
        ids = led.apply(checkpoint=args.checkpoint, method=args.method, evidence=args.evidence, batch=args.batch,
                        seed=args.seed, overrides=overrides.get(args.method), audit_models=args.audit_models,
                        dataset=args.dataset, model=args.model, data_seed=args.data_seed,
                        label_column=args.label_column)
    print(f"applied: {len(ids)} application(s)" + (f" ({', '.join(map(str, ids))})" if ids else ""))
    return 0


def cmd_request_report(args: argparse.Namespace) -> int:
    with _ledger(args) as led:
        page, js = led.report(args.id, args.out)
    print(f"report: {page}  {js}")
    return 0


def cmd_ledger_verify(args: argparse.Namespace) -> int:
    with _ledger(args) as led:
        res = led.verify(check_files=not args.no_files)
    print(res, file=sys.stdout if res.ok else sys.stderr)
    return 0 if res.ok else 1


def _where(p: argparse.ArgumentParser) -> None:
    p.add_argument("--ledger", default=None, metavar="PATH|URL",
                   help="SQLite file or postgresql:// URL (env UNLEARNKIT_LEDGER; default unlearnkit-ledger.sqlite)")
    p.add_argument("-q", "--quiet", action="store_true", help="no log lines")


def add_ledger_parsers(sub: Any) -> None:
    """Add the ``request`` and ``ledger`` command groups to the main parser's subparsers ``sub``."""
    req = sub.add_parser("request", help="deletion requests: add, list, apply to a deployed model, report")
    rs = req.add_subparsers(dest="request_command", required=True)

    p = rs.add_parser("add", help="record a deletion request; prints its id")
    _where(p)
    p.add_argument("--checkpoint", default=None, help="the deployed checkpoint (its manifest names the dataset)")
    p.add_argument("--dataset", default=None, help="or the dataset spec, as for `unlearnkit run`")
    p.add_argument("--data-seed", type=int, default=0, help="with --dataset: the split seed (default 0)")
    p.add_argument("--label-column", default=None, help="with --dataset csv:PATH: the label column")
    p.add_argument("--ids", default=None, metavar="FILE", help="text file of the ids to delete")
    p.add_argument("--class", dest="cls", default=None, metavar="C", help="delete every sample of class C")
    p.add_argument("--reason", default="", help="legal basis or free-text reason (e.g. 'GDPR Art. 17')")
    p.add_argument("--requester", default="", help="requester reference (a ticket number; no personal data)")
    p.set_defaults(fn=cmd_request_add)

    p = rs.add_parser("list", help="list the requests")
    _where(p)
    p.add_argument("--pending", action="store_true", help="only the requests not applied yet")
    p.set_defaults(fn=cmd_request_list)

    p = rs.add_parser("apply", help="apply every pending request to the checkpoint, in order, with evidence")
    _where(p)
    p.add_argument("--checkpoint", required=True, help="the deployed checkpoint; replaced atomically")
    p.add_argument("--method", required=True, help="unlearning method (see `unlearnkit methods`)")
    p.add_argument("--evidence", default="standard",
                   help="cheap: metrics only; standard: + retrained reference, noise floor, drift (default); "
                        "audit: + U-LiRA")
    p.add_argument("--batch", action="store_true", help="one application for all pending requests")
    p.add_argument("--seed", type=int, default=0, help="method and reference seed (default 0)")
    p.add_argument("--set", action="append", metavar="METHOD.FIELD=VALUE", help="override a config field")
    p.add_argument("--audit-models", type=int, default=8, help="--evidence audit: shadow models K (default 8)")
    p.add_argument("--cache-dir", default=os.environ.get("UNLEARNKIT_CACHE", ".unlearnkit_cache"),
                   help="model cache of the retrained references (env UNLEARNKIT_CACHE)")
    p.add_argument("--device", default="cpu", help="cpu or cuda (default cpu)")
    p.add_argument("--dataset", default=None,
                   help="for a plain safetensors classifier without an unlearnkit manifest: its dataset spec")
    p.add_argument("--model", default=None, help="... and its model (mlp | cnn | resnet18 | vit; default the "
                                                 "dataset's)")
    p.add_argument("--data-seed", type=int, default=0, help="... and its split seed (default 0)")
    p.add_argument("--label-column", default=None, help="... and a csv: dataset's label column")
    p.set_defaults(fn=cmd_request_apply)

    p = rs.add_parser("report", help="write the verification report of one request (HTML and JSON)")
    _where(p)
    p.add_argument("id", type=int)
    p.add_argument("--out", default=".", help="output folder (default: the working directory)")
    p.set_defaults(fn=cmd_request_report)

    led = sub.add_parser("ledger", help="ledger maintenance: verify the hash chain and the checkpoints")
    ls = led.add_subparsers(dest="ledger_command", required=True)
    p = ls.add_parser("verify", help="check the hash chain and every recorded checkpoint file; exit 1 if broken")
    _where(p)
    p.add_argument("--no-files", action="store_true", help="check the hash chain only")
    p.set_defaults(fn=cmd_ledger_verify)
