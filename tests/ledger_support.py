"""Shared fixtures of the ledger tests: a real SQLite file, or a fresh database on a real PostgreSQL server.

PostgreSQL: set ``UNLEARNKIT_TEST_POSTGRES_URL`` to a URL of a server where the user may create databases (``.ci/run``
starts one on loopback and sets it). Without it the PostgreSQL cases are skipped, except under ``CI=true``,
where a missing server fails them.
"""

from __future__ import annotations

import os
import sqlite3
import uuid
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

PG_ENV = "UNLEARNKIT_TEST_POSTGRES_URL"
BACKENDS = ["sqlite", "postgresql"]


def _pg_admin_url() -> str:
    url = os.environ.get(PG_ENV)
    if not url:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"CI=true but {PG_ENV} is not set: .ci/run must start PostgreSQL and set it")
        pytest.skip(f"{PG_ENV} not set (no PostgreSQL server for the ledger tests)")
    return url


def _with_db(url: str, db: str) -> str:
    from urllib.parse import urlsplit, urlunsplit

    return urlunsplit(urlsplit(url)._replace(path="/" + db))


@contextmanager
def ledger_location(backend: str, tmp_path: Path) -> Iterator[str]:
    """A fresh, empty ledger location: a SQLite path, or a new database on the PostgreSQL server (dropped after)."""
    if backend == "sqlite":
        yield str(tmp_path / "ledger.sqlite")
        return
    admin = _pg_admin_url()  # skips (or fails under CI) before psycopg is needed
    import psycopg

    db = "ledger_test_" + uuid.uuid4().hex[:12]
    with psycopg.connect(admin, autocommit=True) as c:
        c.execute(f"CREATE DATABASE {db}")
    try:
        yield _with_db(admin, db)
    finally:
        with psycopg.connect(admin, autocommit=True) as c:
            c.execute(f"DROP DATABASE IF EXISTS {db} WITH (FORCE)")


def raw_execute(where: str, *statements: str) -> None:
    """Run SQL on the ledger behind its back (what an attacker with database access could do)."""
    if where.startswith("postgresql://"):
        import psycopg

        with psycopg.connect(where, autocommit=True) as c:
            for s in statements:
                c.execute(s)
        return
    c = sqlite3.connect(where)
    try:
        for s in statements:
            c.execute(s)
        c.commit()
    finally:
        c.close()


def raw_query(where: str, sql: str) -> list[tuple[Any, ...]]:
    if where.startswith("postgresql://"):
        import psycopg

        with psycopg.connect(where, autocommit=True) as c:
            return list(c.execute(sql).fetchall())
    c = sqlite3.connect(where)
    try:
        return list(c.execute(sql).fetchall())
    finally:
        c.close()


def snapshot(where: str) -> list[Any]:
    """Every row of every ledger table (to show that a refused operation changed nothing)."""
    return [raw_query(where, f"SELECT * FROM {t} ORDER BY seq") for t in ("requests", "applications", "evidence")] + [
        raw_query(where, "SELECT * FROM chain_head")]


def write_ids(path: Path, train_positions: Iterable[Any], *, raw: bool = False, sep: str = " ") -> str:
    """Write an ids file naming the digits training examples at ``train_positions`` by their user ids (the index in
    ``load_digits()``, :mod:`unlearnkit.data.ids`), so tests can speak of training indices; ``raw=True`` writes the
    values as given (for ids that must be refused)."""
    values = list(train_positions)
    if not raw:
        from unlearnkit.data import load_dataset

        src = load_dataset("digits", seed=0).train.source_ids
        values = [src[int(i)] for i in values]
    path.write_text(sep.join(str(v) for v in values) + "\n")
    return str(path)
