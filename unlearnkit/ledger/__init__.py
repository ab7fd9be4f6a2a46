"""Deletion requests as a workflow: a hash-chained ledger of requests, their application to a deployed model, and a
verification report per request.

- :class:`Ledger`: ``add_request``, ``requests``, ``apply``, ``report``, ``verify`` (see ``core.py``).
- Storage (``store.py``): one SQLite file by default (``unlearnkit-ledger.sqlite``, WAL mode), or PostgreSQL
  (``postgresql://...``, with ``pip install 'unlearnkit[postgres]'``); schema versioned with migrations; every row
  carries the SHA-256 of its content and of the previous row.
- Evidence tiers (``evidence.py``): ``cheap``, ``standard``, ``audit``.
- Reports (``report.py``): JSON and self-contained HTML.
- CLI (``cli.py``): ``unlearnkit request add|list|apply|report`` and ``unlearnkit ledger verify``.

Layering: above the pipeline, evaluation and checkpoints, below the CLI; nothing below imports this package.
"""

from __future__ import annotations

from .core import Application, Ledger, Request, VerifyResult, file_sha256
from .store import SCHEMA_VERSION, LedgerError, LedgerIntegrityError

__all__ = ["SCHEMA_VERSION", "Application", "Ledger", "LedgerError", "LedgerIntegrityError", "Request",
           "VerifyResult", "file_sha256"]
