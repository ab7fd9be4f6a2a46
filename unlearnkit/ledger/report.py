"""The verification report of one request: JSON and a self-contained HTML page (plots embedded as base64 PNG).

What it shows: what was removed (counts and hashes, never the data), when, by which method and configuration, the
model hashes before and after, the evidence against the retrained reference and the noise floor, the sequential
drift, and a plain statement of what this evidence does and does not prove.
"""

from __future__ import annotations

import base64
import html
import io
import json
import time
from pathlib import Path
from typing import Any

from ..checkpoints import atomic_write_text

__all__ = ["render_html", "report_data", "write_report"]

SCHEMA = "unlearnkit.ledger-report/1"
_ROWS = (("forget_acc", "forget accuracy (%)", 1), ("retain_acc", "retain accuracy (%)", 1),
         ("test_acc", "test accuracy (%)", 1), ("mia_efficacy", "MIA-Efficacy (%)", 1),
         ("mia_loss_auc", "loss-attack AUC", 3), ("avg_gap", "avg_gap to retrained (points)", 2))


def report_data(ledger: Any, request_id: int) -> dict[str, Any]:
    """The report of ``request_id`` as a JSON-able dict (schema ``unlearnkit.ledger-report/1``)."""
    r = ledger.request(request_id)
    out: dict[str, Any] = {
        "schema": SCHEMA, "generated_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "ledger": ledger.store.where, "chain": str(ledger.verify()),
        "request": {"id": r.id, "received_at": r.received_at, "requester": r.requester, "reason": r.reason,
                    "dataset": r.dataset, "dataset_hash": r.dataset_hash, "kind": r.kind, "selector": r.selector,
                    "n_samples": r.n_samples, "n_ids_given": len(r.user_ids) if r.user_ids is not None else None,
                    "train_indices_sha256": r.indices_hash, "sample_hashes_sha256": r.samples_hash,
                    "row_hash": r.row_hash},
        "status": "pending" if r.pending else "applied", "application": None, "evidence": None, "drift_history": [],
    }
    if not r.pending:
        app = next(a for a in ledger.applications() if a.id == r.application_id)
        out["application"] = {k: getattr(app, k) for k in (
            "id", "mode", "request_ids", "method", "config", "seed", "code_version", "started_at", "finished_at",
            "seconds", "model_before", "model_after", "checkpoint", "after_path", "row_hash")}
        ev = [e for e in ledger.evidence(request_id=r.id) if e["application_id"] == app.id]
        if ev:
            e = ev[0]
            m = dict(e["metrics"])
            plots = m.pop("plots", {})
            out["evidence"] = {"tier": e["tier"], "metrics": m, "reference": e["reference"],
                               "noise_floor": e["noise_floor"], "drift": e["drift"], "row_hash": e["row_hash"],
                               "_plots": plots}
        lineage = [a for a in ledger.applications(dataset_hash=r.dataset_hash) if a.id <= app.id]
        drift_by_app = {e["application_id"]: e["drift"] for e in ledger.evidence() if e.get("drift")}
        out["drift_history"] = [{"application_id": a.id, "request_ids": a.request_ids, **drift_by_app[a.id]}
                                for a in lineage if a.id in drift_by_app]
    out["statement"] = statement(out)
    return out


def _f(v: Any, d: int = 2) -> str:
    return "–" if v is None else f"{float(v):.{d}f}"


def statement(rep: dict[str, Any]) -> list[str]:
    """What the evidence does and does not prove, in plain sentences."""
    if rep["status"] == "pending":
        return ["This request is recorded but not yet applied: the deployed model has not been changed for it."]
    app, ev = rep["application"], rep["evidence"] or {}
    s = [f"The {rep['request']['n_samples']} training samples of this request were removed from the deployed model "
         f"by approximate unlearning ({app['method']}, application {app['id']}, {app['mode']}), which changed the "
         f"model from {app['model_before'][:16]} to {app['model_after'][:16]}. The model was not retrained from "
         "scratch."]
    m = ev.get("metrics", {})
    a, b = m.get("after", {}), m.get("before", {})
    s.append(f"On these samples the model's accuracy went from {_f(b.get('forget_acc'), 1)}% to "
             f"{_f(a.get('forget_acc'), 1)}%, and the loss-based membership attack's AUC from "
             f"{_f(b.get('mia_loss_auc'), 3)} to {_f(a.get('mia_loss_auc'), 3)} (0.5: members cannot be told from "
             "unseen test data).")
    ref, floor, drift = ev.get("reference"), ev.get("noise_floor"), ev.get("drift")
    if ref and floor:
        rm = ref.get("metrics", {})
        gap, nf = a.get("avg_gap"), floor.get("avg_gap_request")
        close = gap is not None and nf is not None and gap <= 2 * nf
        s.append(f"A model retrained from scratch without everything forgotten so far scores "
                 f"{_f(rm.get('forget_acc'), 1)}% on these samples; the unlearned model's average gap to it is "
                 f"{_f(gap)} points, against a noise floor of {_f(nf)} points (two retrainings with different seeds "
                 f"differ by that much). " + (
                     "The gap is within twice the noise floor: on these metrics the unlearned model behaves like "
                     "the retrained one." if close else
                     "The gap exceeds twice the noise floor: the unlearned model is measurably different from a "
                     "retrained one, and an observer with these metrics could tell them apart."))
    else:
        s.append("Evidence tier 'cheap': no retrained reference was compared, so nothing here says how close the "
                 "model is to one that never saw the samples; re-apply with --evidence standard for that.")
    if drift and not drift.get("single_step_is_this_model"):
        seq, one, nfu = drift.get("sequential_avg_gap"), drift.get("single_step_avg_gap"), \
            drift.get("noise_floor_avg_gap")
        worse = seq is not None and one is not None and nfu is not None and seq > one + nfu
        s.append(f"After {drift['step']} sequential applications, the deployed model's gap to the model retrained "
                 f"without all {drift['n_requests_union']} requests is {_f(seq)} points; one application of the "
                 f"same method to the original model would be at {_f(one)}. " + (
                     "Sequential drift exceeds the noise floor: consider retraining from scratch." if worse else
                     "Sequential application has not drifted beyond the noise floor."))
    if ev.get("tier") == "audit" and m.get("audit"):
        rows = {x["method"]: x for x in m["audit"]}
        u = rows.get(app["method"], {}).get("metrics", {})
        base = rows.get("retrain", {}).get("metrics", {})
        s.append(f"U-LiRA audit of {app['method']} on these samples: attack accuracy {_f(u.get('ulira_accuracy'), 1)}%"
                 f" (50% = unlearned models indistinguishable from never-trained ones; retraining from scratch "
                 f"scores {_f(base.get('ulira_accuracy'), 1)}% with the same "
                 f"{rows.get(app['method'], {}).get('models')} shadow models, the attack's baseline at this K). It "
                 "audits the method on these samples, not this model.")
    s.append("What this does not prove: approximate unlearning gives statistical evidence, not a proof of exact "
             "removal. The metrics above are estimates on finite sets; stronger attacks than those run may still "
             "detect traces of the samples, and nothing here covers copies of the data outside this model "
             "(backups, logs, other models trained on it).")
    return s


def _png(fig: Any) -> str:
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    FigureCanvasAgg(fig)
    buf = io.BytesIO()
    fig.tight_layout()
    fig.savefig(buf, format="png", dpi=100)
    return base64.b64encode(buf.getvalue()).decode()


def _plots(rep: dict[str, Any]) -> list[tuple[str, str]]:
    from ..evaluation.report import new_axes

    out = []
    ev = rep.get("evidence") or {}
    m = ev.get("metrics") or {}
    if m:
        fig, ax = new_axes((6.4, 3.4))
        keys = [("forget_acc", "forget acc"), ("retain_acc", "retain acc"), ("test_acc", "test acc"),
                ("mia_efficacy", "MIA-Efficacy")]
        series = [("before", m.get("before", {})), ("after", m.get("after", {}))]
        if ev.get("reference"):
            series.append(("retrained reference", ev["reference"].get("metrics", {})))
        w = 0.8 / len(series)
        for j, (name, vals) in enumerate(series):
            ax.bar([i + j * w for i in range(len(keys))], [vals.get(k) or 0.0 for k, _ in keys], w, label=name)
        ax.set_xticks([i + w * (len(series) - 1) / 2 for i in range(len(keys))], [lbl for _, lbl in keys])
        ax.set_ylabel("percent")
        ax.set_ylim(0, 125)  # headroom for the legend above the bars
        ax.set_title("this request's samples: before, after, retrained")
        ax.legend(fontsize=7, loc="upper center", ncol=len(series))
        out.append(("Accuracies and membership attack", _png(fig)))
    hist = rep.get("drift_history") or []
    if hist:
        fig, ax = new_axes((6.4, 3.4))
        steps = [h["step"] for h in hist]
        ax.plot(steps, [h["sequential_avg_gap"] for h in hist], marker="o", label="sequential (deployed)")
        ax.plot(steps, [h["single_step_avg_gap"] for h in hist], marker="s", label="single-step on the union")
        ax.plot(steps, [h["noise_floor_avg_gap"] for h in hist], linestyle="--", marker="x", label="noise floor")
        ax.set_xticks(steps)
        ax.set_xlabel("application (step)")
        ax.set_ylabel("avg_gap to retrained (points)")
        ax.set_title("sequential drift vs the retrained-on-the-union reference")
        ax.legend(fontsize=7)
        out.append(("Sequential drift", _png(fig)))
    return out


_CSS = """body{font-family:sans-serif;max-width:900px;margin:2em auto;color:#222;line-height:1.4}
table{border-collapse:collapse;margin:.5em 0}td,th{border:1px solid #bbb;padding:3px 8px;text-align:left}
th{background:#eee}code{font-size:90%}.ok{color:#075}.bad{color:#a00}img{max-width:100%}
.statement{background:#f6f6f0;border-left:4px solid #996;padding:.5em 1em}"""


def _kv(rows: list[tuple[str, Any]]) -> str:
    return "<table>" + "".join(f"<tr><th>{html.escape(k)}</th><td>{html.escape(str(v))}</td></tr>"
                               for k, v in rows) + "</table>"


def render_html(rep: dict[str, Any]) -> str:
    """A self-contained HTML page (no external resources, no scripts) for a report dict."""
    req = rep["request"]
    e = html.escape
    parts = [f"<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'><title>Deletion request {req['id']}"
             f"</title><style>{_CSS}</style></head><body>",
             f"<h1>Deletion request {req['id']}: {e(rep['status'])}</h1>",
             f"<p class='{'ok' if rep['chain'].startswith('ledger OK') else 'bad'}'>{e(rep['chain'])}</p>",
             "<h2>What was removed</h2>",
             _kv([("received", req["received_at"]), ("requester", req["requester"] or "–"),
                  ("reason / legal basis", req["reason"] or "–"), ("dataset", req["dataset"].get("spec")),
                  ("dataset hash", req["dataset_hash"]), ("selector", req["selector"]),
                  ("training samples", req["n_samples"]),
                  ("ids given", "–" if req["n_ids_given"] is None else req["n_ids_given"]),
                  ("SHA-256 of the training indices", req["train_indices_sha256"]),
                  ("SHA-256 of the samples' content hashes", req["sample_hashes_sha256"]),
                  ("ledger row hash", req["row_hash"])])]
    app = rep.get("application")
    if app:
        parts += ["<h2>How and when</h2>",
                  _kv([("application", f"{app['id']} ({app['mode']}, requests {app['request_ids']})"),
                       ("method", app["method"]), ("seed", app["seed"]),
                       ("config", json.dumps(app["config"], sort_keys=True)),
                       ("code", json.dumps(app["code_version"], sort_keys=True)),
                       ("started / finished", f"{app['started_at']} / {app['finished_at']}"),
                       ("unlearning seconds", _f(app["seconds"])), ("model before (SHA-256)", app["model_before"]),
                       ("model after (SHA-256)", app["model_after"]), ("deployed checkpoint", app["checkpoint"])])]
    ev = rep.get("evidence")
    if ev:
        m = ev["metrics"]
        ref = (ev.get("reference") or {}).get("metrics", {})
        head = "<tr><th>metric</th><th>before</th><th>after</th>" + ("<th>retrained reference</th>" if ref else "")
        body = "".join(f"<tr><td>{e(lbl)}</td><td>{_f(m['before'].get(k), d)}</td><td>{_f(m['after'].get(k), d)}"
                       f"</td>" + (f"<td>{_f(ref.get(k), d) if k != 'avg_gap' else '0 (by definition)'}</td>"
                                   if ref else "") + "</tr>" for k, lbl, d in _ROWS)
        parts += [f"<h2>Evidence (tier {e(ev['tier'])})</h2>", f"<table>{head}</tr>{body}</table>"]
        if ev.get("noise_floor"):
            nf, dr = ev["noise_floor"], ev.get("drift") or {}
            parts.append(_kv([("noise floor (avg_gap of a second retraining)", _f(nf.get("avg_gap_request"))),
                              ("reference model (SHA-256)", ev["reference"]["sha256"]),
                              ("samples forgotten so far (union)", ev["reference"]["n_forgotten_union"]),
                              ("sequential avg_gap on the union", _f(dr.get("sequential_avg_gap"))),
                              ("single-step avg_gap on the union", _f(dr.get("single_step_avg_gap"))),
                              ("noise floor on the union", _f(dr.get("noise_floor_avg_gap")))]))
    for title, b64 in _plots(rep):
        parts.append(f"<h3>{e(title)}</h3><img alt='{e(title)}' src='data:image/png;base64,{b64}'>")
    parts.append("<h2>What this evidence does and does not prove</h2><div class='statement'>"
                 + "".join(f"<p>{e(p)}</p>" for p in rep["statement"]) + "</div>")
    parts.append(f"<p><small>generated {e(rep['generated_at'])} by unlearnkit from ledger {e(rep['ledger'])}"
                 "</small></p></body></html>")
    return "\n".join(parts)


def write_report(ledger: Any, request_id: int, out_dir: Path) -> tuple[Path, Path]:
    """Write ``out_dir/request-<id>.json`` and ``.html`` atomically; returns both paths."""
    rep = report_data(ledger, request_id)
    out_dir.mkdir(parents=True, exist_ok=True)
    js, page = out_dir / f"request-{request_id}.json", out_dir / f"request-{request_id}.html"
    data = {k: v for k, v in rep.items()}
    if data.get("evidence"):
        data["evidence"] = {k: v for k, v in data["evidence"].items() if k != "_plots"}
    atomic_write_text(js, json.dumps(data, indent=1, sort_keys=True))
    atomic_write_text(page, render_html(rep))
    return page, js
