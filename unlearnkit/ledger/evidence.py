"""The evidence recorded with each application, per request, in three tiers.

- ``cheap``: the toolkit's tier-(a) metrics (``unlearnkit.evaluation.Evaluator``) of the model before and after, on
  the request's own samples, the retain set (everything never forgotten), test and val: forget/retain/test accuracy
  and the membership attacks (MIA-Efficacy, loss-attack AUC, ...). No retraining.
- ``standard``: also the model retrained from scratch without *everything forgotten so far* (the union), from the
  content-keyed model cache with the original's recipe, and the tier-(b) gaps to it (``avg_gap`` etc.); the noise
  floor as the project defines it (a second reference, seed + 10000, on the same retain set, compared with the
  first: the smallest ``avg_gap`` any method can be expected to reach); and the sequential drift: the gap on the
  union of the deployed model (requests applied one after another) next to the gap of one application of the
  same method and config to the first model of the lineage with the whole union (the single-step application).
- ``audit``: also U-LiRA and the forgetting quality (``unlearnkit audit``) of the method on the union, with K
  shadow models. This audits the *method* on these samples, not the deployed model itself.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import numpy as np

from .store import canonical

__all__ = ["gather"]


def _evaluator(exp: Any, forget_idx: np.ndarray, retain_idx: np.ndarray, classes: Any, seed: int) -> Any:
    from ..evaluation import EvalSets, Evaluator

    s = exp.splits
    return Evaluator(EvalSets(forget=s.train.subset(forget_idx), retain=s.train.subset(retain_idx), test=s.test,
                              val=s.val, forget_classes=classes, num_classes=s.num_classes),
                     device=exp.device, seed=seed)


def _strip(m: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    from ..evaluation import split_plots

    return split_plots(m)


def gather(ledger: Any, exp: Any, *, tier: str, group: list[Any], split: Any, before: Any, after: Any, result: Any,
           method: str, cfg: Any, seed: int, initial: Path, is_first: bool, prior: list[Any],
           audit_models: int, overrides: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    """One evidence row (without ids) per request of ``group``."""
    from ..requests import ForgetRequest, ForgetSplit
    from .core import file_sha256, load_model

    n = len(exp.splits.train)
    retain = split.retain_idx
    union = np.setdiff1d(np.arange(n), retain).astype(np.int64)
    lineage_requests = [r for r in ledger.requests(dataset_hash=exp.splits.hash) if not r.pending] + list(group)
    union_classes = (tuple(sorted({int(exp.splits.train.y[i]) for i in union}))
                     if all(r.kind == "class" for r in lineage_requests) else None)
    ref = floor = single = None
    reference: dict[str, Any] | None = None
    if tier in ("standard", "audit"):
        kind = "class" if union_classes else "ids"
        req = (ForgetRequest(kind="class", classes=tuple(str(c) for c in union_classes)) if union_classes
               else ForgetRequest(kind="ids", path="ledger-union"))
        usplit = ForgetSplit(req, union, retain, union_classes)
        ref = exp.retrained(usplit, seed)
        floor = exp.models.trained("retrain", seed + 10_000, usplit.retain_set(exp.splits.train),
                             {"request": str(usplit.request), "forget_hash": usplit.key})
        if is_first:
            single = after  # the first application of a lineage *is* the single-step application
        else:
            first = load_model(initial, exp)
            sres, _ = exp.run_method(method, first, usplit, seed, config=cfg)
            single = sres.model
        uev = _evaluator(exp, union, retain, union_classes, seed)
        seq_m = uev.evaluate(after, reference=ref.model)
        one_m = seq_m if single is after else uev.evaluate(single, reference=ref.model)
        floor_u = uev.evaluate(floor.model, reference=ref.model)["avg_gap"]
        reference = {"sha256": file_sha256(ref.path), "cache_file": ref.path.name, "seed": seed,
                     "train_seconds": ref.seconds, "reused_from_cache": ref.reused, "n_forgotten_union": len(union),
                     "union_indices_sha256": hashlib.sha256(canonical([int(i) for i in union]).encode()).hexdigest(),
                     "kind": kind}
        drift = {"step": len(prior) + 1, "n_requests_union": len(lineage_requests),
                 "sequential_avg_gap": seq_m["avg_gap"], "single_step_avg_gap": one_m["avg_gap"],
                 "noise_floor_avg_gap": floor_u, "single_step_is_this_model": single is after,
                 "sequential_forget_acc": seq_m["forget_acc"], "single_step_forget_acc": one_m["forget_acc"],
                 "reference_forget_acc": uev.evaluate(ref.model)["forget_acc"],
                 "sequential_test_acc": seq_m["test_acc"], "single_step_test_acc": one_m["test_acc"]}
    audit = None
    if tier == "audit":
        from ..audit import run_audit
        from .resolve import indices_request

        out = initial.parent / f"audit-{hashlib.sha256(canonical([int(i) for i in union]).encode()).hexdigest()[:16]}"
        out.mkdir(parents=True, exist_ok=True)
        request = indices_request(exp.splits.train, union, out / "union.ids")
        res = run_audit(exp, request=request, methods=[method], k=audit_models, seed=seed, out=out,
                        overrides={method: dict(overrides or {})},
                        log=ledger.log)
        audit = [{"method": r["method"], "status": r["status"], "models": r.get("models"),
                  "metrics": r.get("metrics", {}), "reason": r.get("reason")} for r in res["records"]]
    rows = []
    for r in group:
        idx = np.array(r.train_indices, dtype=np.int64)
        classes = tuple(sorted({int(exp.splits.train.y[i]) for i in idx})) if r.kind == "class" else None
        ev = _evaluator(exp, idx, retain, classes, seed)
        ref_model = ref.model if ref is not None else None
        m_after, plots = _strip(ev.evaluate(after, reference=ref_model, seconds=result.seconds,
                                            peak_memory_mb=result.peak_memory_mb,
                                            reference_seconds=ref.seconds if ref is not None else None))
        m_before, plots_before = _strip(ev.evaluate(before, reference=ref_model))
        metrics: dict[str, Any] = {"after": m_after, "before": m_before,
                                   "plots": {"after": plots, "before": plots_before}}
        if tier == "audit":
            metrics["audit"] = audit
        row: dict[str, Any] = {"request_id": r.id, "tier": tier, "metrics": metrics, "reference": None,
                               "noise_floor": None, "drift": None}
        if ref is not None:
            m_ref, plots_ref = _strip(ev.evaluate(ref.model))
            metrics["plots"]["reference"] = plots_ref
            m_single = m_after if single is after else _strip(ev.evaluate(single, reference=ref.model))[0]
            row["reference"] = {**(reference or {}), "metrics": m_ref}
            row["noise_floor"] = {"avg_gap_request": ev.evaluate(floor.model, reference=ref.model)["avg_gap"],
                                  "avg_gap_union": floor_u, "seed": seed + 10_000,
                                  "sha256": file_sha256(floor.path)}
            row["drift"] = {**drift, "request_single_step_avg_gap": m_single["avg_gap"]}
        rows.append(row)
    return rows
