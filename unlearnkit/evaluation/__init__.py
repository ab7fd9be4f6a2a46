"""Evaluation suite: per-example signals, tier-(a)/(b) metrics, multi-seed statistics, reports, audit attacks.

- :class:`EvalSets`, :class:`Evaluator`: cached signals and the metric dict of a model (see ``evaluator.py``).
- :mod:`.metrics`: pure metric functions of logits/losses and labels.
- :func:`summarize`, :func:`mean_ci95`: mean ± 95% Student-t CI over seeds.
- :func:`write_report`: ``report.md`` + PNG plots from a results.json dict.
- :mod:`.audit_metrics`: gold-tier attack functions (U-LiRA, the NeurIPS'23 challenge's forgetting quality).

Definitions, sources, better directions and the retrained model's expected values: ``docs/metrics.md``.
"""

from __future__ import annotations

from . import audit_metrics, metrics
from .evaluator import METRICS_VERSION, EvalSets, Evaluator, split_plots
from .report import write_report
from .signals import Signals, compute_signals, model_hash
from .stats import mean_ci95, summarize

__all__ = [
    "METRICS_VERSION",
    "EvalSets",
    "Evaluator",
    "Signals",
    "audit_metrics",
    "compute_signals",
    "mean_ci95",
    "metrics",
    "model_hash",
    "split_plots",
    "summarize",
    "write_report",
]
