"""Ledger storage: one append-only hash chain over three tables, on SQLite (default) or PostgreSQL.

Every row of ``requests``, ``applications`` and ``evidence`` holds its position ``seq`` in one chain shared by the
three tables, the SHA-256 of the previous row (``prev_hash``) and the SHA-256 of its own content with that
(``row_hash``); ``chain_head`` holds the last position and hash, so removing the last row is detected as well.
Rows are never updated: a request is *pending* until an application row names it.

Writers are serialised: SQLite by ``BEGIN IMMEDIATE`` (WAL mode; readers never block), PostgreSQL by a
transaction-level advisory lock, so concurrent ``request add`` calls from several processes or machines get
consecutive ids and one unbroken chain. Every change is one transaction: it commits whole or not at all.

The schema is versioned (``meta.schema_version``); :data:`MIGRATIONS` lists the statements that bring a ledger
from each version to the next, applied in order inside one transaction when a ledger is opened.
"""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from ..errors import UnlearnError

__all__ = ["GENESIS", "MIGRATIONS", "SCHEMA_VERSION", "TABLES", "LedgerError", "LedgerIntegrityError", "Store",
           "canonical", "open_store", "row_hash"]

GENESIS = "0" * 64  # prev_hash of the first row

# Columns of each chained table (besides seq, prev_hash, row_hash), in hashing order. JSON values are stored as
# canonical JSON text, so the hash of a row is the same on both backends.
TABLES: dict[str, tuple[str, ...]] = {
    "requests": ("id", "received_at", "requester", "reason", "dataset", "dataset_hash", "kind", "selector",
                 "user_ids", "train_indices", "sample_hashes", "n_samples"),
    "applications": ("id", "request_ids", "checkpoint", "model_before", "model_after", "after_path", "method",
                     "config", "seed", "code_version", "dataset_hash", "mode", "started_at", "finished_at",
                     "seconds"),
    "evidence": ("id", "application_id", "request_id", "tier", "metrics", "reference", "noise_floor", "drift"),
}
INT_COLUMNS = {"id", "n_samples", "seed", "application_id", "request_id"}

SCHEMA_VERSION = 1


def _table_sql(name: str) -> str:
    cols = ", ".join(f"{c} {'BIGINT' if c in INT_COLUMNS else 'TEXT'}{' PRIMARY KEY' if c == 'id' else ''}"
                     for c in TABLES[name])
    return (f"CREATE TABLE {name} ({cols}, seq BIGINT NOT NULL UNIQUE, prev_hash TEXT NOT NULL, "
            "row_hash TEXT NOT NULL)")


# version -> statements that create it from the previous version
MIGRATIONS: dict[int, tuple[str, ...]] = {
    1: (
        "CREATE TABLE chain_head (id BIGINT PRIMARY KEY, seq BIGINT NOT NULL, hash TEXT NOT NULL)",
        "INSERT INTO chain_head (id, seq, hash) VALUES (1, 0, '" + GENESIS + "')",
        *(_table_sql(t) for t in TABLES),
    ),
}


class LedgerError(UnlearnError, ValueError):
    """A ledger operation was refused (bad input, wrong checkpoint, unknown request); nothing was changed."""


class LedgerIntegrityError(LedgerError):
    """The hash chain or a recorded checkpoint does not match: the ledger or a file was altered."""


def canonical(value: Any) -> str:
    """Canonical JSON (sorted keys, no spaces): the text that is stored and hashed."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=False)


def row_hash(table: str, row: dict[str, Any], seq: int, prev: str) -> str:
    """SHA-256 of a row's table, position, content and the previous row's hash."""
    body = {"table": table, "seq": int(seq), "prev": prev, **{c: row.get(c) for c in TABLES[table]}}
    return hashlib.sha256(canonical(body).encode()).hexdigest()


class Store:
    """A DB-API connection with the few operations the ledger needs; see :func:`open_store`."""

    kind = ""
    param = "?"

    def __init__(self, conn: Any, where: str) -> None:
        self.conn = conn
        self.where = where

    # --- backend specifics ---------------------------------------------------------------------------------------
    def _begin_write(self, cur: Any) -> None:
        raise NotImplementedError

    def _table_exists(self, cur: Any, name: str) -> bool:
        raise NotImplementedError

    def close(self) -> None:
        self.conn.close()

    # --- common ----------------------------------------------------------------------------------------------------
    def sql(self, text: str) -> str:
        return text.replace("?", self.param)

    @contextmanager
    def write(self) -> Iterator[Any]:
        """One write transaction holding the ledger's writer lock; commits on success, rolls back on any error."""
        cur = self.conn.cursor()
        self._begin_write(cur)
        try:
            yield cur
        except BaseException:
            self.conn.rollback()
            raise
        else:
            self.conn.commit()
        finally:
            cur.close()

    def query(self, text: str, params: Sequence[Any] = (), cur: Any = None) -> list[tuple[Any, ...]]:
        own = cur is None
        cur = cur or self.conn.cursor()
        try:
            cur.execute(self.sql(text), tuple(params))
            return list(cur.fetchall())
        finally:
            if own:
                cur.close()
                self._end_read()

    def _end_read(self) -> None:
        """End the implicit read transaction (PostgreSQL opens one per statement outside autocommit)."""

    def migrate(self) -> int:
        """Bring the schema to :data:`SCHEMA_VERSION`; returns the version found before."""
        with self.write() as cur:
            if not self._table_exists(cur, "meta"):
                cur.execute("CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
                cur.execute(self.sql("INSERT INTO meta (key, value) VALUES ('schema_version', ?)"), ("0",))
            cur.execute("SELECT value FROM meta WHERE key = 'schema_version'")
            found = int(cur.fetchone()[0])
            if found > SCHEMA_VERSION:
                raise LedgerError(f"ledger {self.where} has schema version {found}, newer than this unlearnkit "
                                  f"understands ({SCHEMA_VERSION}); upgrade unlearnkit")
            for v in range(found + 1, SCHEMA_VERSION + 1):
                for stmt in MIGRATIONS[v]:
                    cur.execute(stmt)
                cur.execute(self.sql("UPDATE meta SET value = ? WHERE key = 'schema_version'"), (str(v),))
        return found

    def append(self, cur: Any, table: str, row: dict[str, Any]) -> dict[str, Any]:
        """Append ``row`` to ``table`` at the end of the chain (inside :meth:`write`); returns it with its hashes."""
        cur.execute("SELECT seq, hash FROM chain_head WHERE id = 1")
        seq, prev = cur.fetchone()
        seq = int(seq) + 1
        h = row_hash(table, row, seq, prev)
        cols = [*TABLES[table], "seq", "prev_hash", "row_hash"]
        vals = [row.get(c) for c in TABLES[table]] + [seq, prev, h]
        cur.execute(self.sql(f"INSERT INTO {table} ({', '.join(cols)}) VALUES ({', '.join('?' * len(cols))})"),
                    vals)
        cur.execute(self.sql("UPDATE chain_head SET seq = ?, hash = ? WHERE id = 1"), (seq, h))
        return {**row, "seq": seq, "prev_hash": prev, "row_hash": h}

    def next_id(self, cur: Any, table: str) -> int:
        cur.execute(f"SELECT COALESCE(MAX(id), 0) FROM {table}")
        return int(cur.fetchone()[0]) + 1

    def rows(self, table: str, where: str = "", params: Sequence[Any] = (), cur: Any = None) -> list[dict[str, Any]]:
        cols = [*TABLES[table], "seq", "prev_hash", "row_hash"]
        got = self.query(f"SELECT {', '.join(cols)} FROM {table} {where} ORDER BY seq", params, cur=cur)
        return [dict(zip(cols, r)) for r in got]

    def head(self, cur: Any = None) -> tuple[int, str]:
        got = self.query("SELECT seq, hash FROM chain_head WHERE id = 1", cur=cur)
        if not got:
            raise LedgerIntegrityError(f"ledger {self.where}: the chain head row is missing")
        return int(got[0][0]), str(got[0][1])


class SQLiteStore(Store):
    kind = "sqlite"
    param = "?"

    def __init__(self, path: Path) -> None:
        # isolation_level=None: no implicit transactions; every write is an explicit BEGIN IMMEDIATE ... COMMIT.
        conn = sqlite3.connect(str(path), timeout=60.0, isolation_level=None)
        conn.execute("PRAGMA busy_timeout = 60000")
        mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
        if str(mode).lower() != "wal":
            conn.close()
            raise LedgerError(f"ledger {path}: cannot switch SQLite to WAL mode (got {mode}); put the ledger on a "
                              "local file system")
        conn.execute("PRAGMA synchronous = FULL")  # a committed request survives a power loss, not only a crash
        super().__init__(conn, str(path))

    def _begin_write(self, cur: Any) -> None:
        # BEGIN IMMEDIATE takes the write lock now, so the read of the chain head and the insert are atomic
        # with respect to other writers; busy_timeout makes a concurrent writer wait instead of failing.
        for attempt in range(600):
            try:
                cur.execute("BEGIN IMMEDIATE")
                return
            except sqlite3.OperationalError as e:
                if "locked" not in str(e) and "busy" not in str(e):
                    raise
                time.sleep(0.1 + 0.001 * attempt)
        raise LedgerError(f"ledger {self.where} stayed locked by another writer for minutes; retry later")

    def _table_exists(self, cur: Any, name: str) -> bool:
        cur.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", (name,))
        return cur.fetchone() is not None


class PostgresStore(Store):
    kind = "postgresql"
    param = "%s"
    LOCK_KEY = 0x756E6C6B  # "unlk": the advisory lock every writer of this database takes

    def __init__(self, url: str) -> None:
        try:
            import psycopg
        except ImportError:
            raise LedgerError("a postgresql:// ledger needs psycopg: pip install 'unlearnkit[postgres]'") from None
        try:
            conn = psycopg.connect(url, connect_timeout=10)
        except psycopg.Error as e:
            raise LedgerError(f"cannot connect to the PostgreSQL ledger ({str(e).strip().splitlines()[0]}); check "
                              "the URL and that the server runs") from None
        super().__init__(conn, _redact(url))

    def _begin_write(self, cur: Any) -> None:
        self.conn.rollback()  # end any implicit read transaction; psycopg opens the write transaction now
        cur.execute("SELECT pg_advisory_xact_lock(%s)", (self.LOCK_KEY,))

    def _end_read(self) -> None:
        self.conn.rollback()

    def _table_exists(self, cur: Any, name: str) -> bool:
        cur.execute("SELECT to_regclass(%s) IS NOT NULL", (name,))
        return bool(cur.fetchone()[0])


def _redact(url: str) -> str:
    """The URL without its password, for messages."""
    from urllib.parse import urlsplit, urlunsplit

    p = urlsplit(url)
    if p.password:
        netloc = f"{p.username}:***@{p.hostname}" + (f":{p.port}" if p.port else "")
        return urlunsplit(p._replace(netloc=netloc))
    return url


DEFAULT_PATH = "unlearnkit-ledger.sqlite"
ENV_VAR = "UNLEARNKIT_LEDGER"


def ledger_location(where: str | os.PathLike[str] | None) -> str:
    """``where``, else ``$UNLEARNKIT_LEDGER``, else ``unlearnkit-ledger.sqlite`` in the working directory."""
    return str(where or os.environ.get(ENV_VAR) or DEFAULT_PATH)


def open_store(where: str | os.PathLike[str] | None = None) -> Store:
    """Open (creating and migrating) the ledger at ``where``: a file path or a ``postgresql://`` URL."""
    loc = ledger_location(where)
    if loc.startswith(("postgresql://", "postgres://")):
        store: Store = PostgresStore(loc)
    else:
        path = Path(loc)
        if path.is_dir():
            raise LedgerError(f"ledger path {path} is a directory; pass a file, e.g. {path / DEFAULT_PATH}")
        if not path.parent.is_dir():
            raise LedgerError(f"ledger folder {path.parent} does not exist; create it or pass another --ledger")
        store = SQLiteStore(path)
    try:
        store.migrate()
    except BaseException:
        store.close()
        raise
    return store
