"""Opening the DuckDB database: one shared connection per file, lock retry, cursors, transactions, schema.

DuckDB lets one process write a file at a time, and a process holding it open blocks every other process,
even readers. So every :class:`Database` on one file in a process shares ONE connection (a cursor per
thread) and closes it as soon as no thread is using it: the app and a CLI ingest can take turns. A
process that finds the file locked waits and retries (bounded), then raises :class:`StoreLockedError`
saying what to do. Committed transactions are in DuckDB's write-ahead log, so a killed process (kill -9)
loses at most the transaction it was in.

``":memory:"`` is a private in-memory database instead: it lives as long as its connection, so that one
connection is kept for the object's lifetime and never shared or closed when idle.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Protocol

import duckdb

import medrag.store.schema as schema
from medrag.errors import StoreError, StoreLockedError

MEMORY = ":memory:"


def utcnow() -> datetime:
    """Now in UTC without a zone (what the TIMESTAMP columns hold)."""
    return datetime.now(UTC).replace(tzinfo=None)


def _is_lock_error(exc: Exception) -> bool:
    text = str(exc).lower()
    return "lock" in text and ("conflicting" in text or "could not set" in text)


def _connect_with_retry(path: str, lock_timeout: float) -> duckdb.DuckDBPyConnection:
    deadline = time.monotonic() + lock_timeout
    delay = 0.05
    while True:
        try:
            return duckdb.connect(path)
        except duckdb.IOException as exc:
            if not _is_lock_error(exc):
                raise StoreError(f"Cannot open the database {path}: {exc}. Check the path and permissions.") from exc
            if time.monotonic() >= deadline:
                raise StoreLockedError(
                    f"The database {path} is held by another MedRAG process (the app or a CLI command) "
                    f"and was not released within {lock_timeout:.0f} s. Wait for it to finish, or stop it, "
                    "then run the command again."
                ) from exc
            # Jittered backoff, so two waiting processes do not retry in step.
            time.sleep(delay * (0.5 + random.random()))
            delay = min(delay * 1.6, 1.0)


class _Connection(Protocol):
    def acquire(self) -> duckdb.DuckDBPyConnection: ...

    def release(self) -> None: ...


class _SharedConnection:
    """A reference-counted connection to one database file, shared by the threads of a process."""

    def __init__(self, path: str, lock_timeout: float) -> None:
        self.path = path
        self.lock_timeout = lock_timeout
        self.users = 0
        self.con: duckdb.DuckDBPyConnection | None = None
        self.guard = threading.Lock()

    def acquire(self) -> duckdb.DuckDBPyConnection:
        with self.guard:
            if self.con is None:
                self.con = _connect_with_retry(self.path, self.lock_timeout)
            self.users += 1
            return self.con

    def release(self) -> None:
        with self.guard:
            self.users -= 1
            if self.users == 0 and self.con is not None:
                self.con.close()  # unlocks the file for other processes
                self.con = None


class _MemoryConnection:
    """The one connection of a private in-memory database (closing it would drop the data)."""

    def __init__(self) -> None:
        self.con = duckdb.connect(MEMORY)

    def acquire(self) -> duckdb.DuckDBPyConnection:
        return self.con

    def release(self) -> None:
        pass


_SHARED: dict[str, _SharedConnection] = {}
_SHARED_GUARD = threading.Lock()


def _shared_connection(path: str, lock_timeout: float) -> _SharedConnection:
    with _SHARED_GUARD:
        shared = _SHARED.get(path)
        if shared is None:
            shared = _SHARED[path] = _SharedConnection(path, lock_timeout)
    shared.lock_timeout = lock_timeout
    return shared


class Database:
    """A DuckDB file (or ``":memory:"``) with the MedRAG schema: cursors, sessions and transactions on it."""

    def __init__(self, path: Path | str, *, lock_timeout: float = 120.0) -> None:
        self.path = str(path)
        self.in_memory = self.path == MEMORY
        self._connection: _Connection
        if self.in_memory:
            self._connection = _MemoryConnection()
        else:
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
            self.path = str(Path(self.path).resolve())
            self._connection = _shared_connection(self.path, lock_timeout)
        self._init_schema()

    @contextmanager
    def cursor(self) -> Iterator[duckdb.DuckDBPyConnection]:
        """A cursor for this thread on the shared connection, released (and the file unlocked) after."""
        con = self._connection.acquire()
        try:
            cur = con.cursor()
            try:
                yield cur
            finally:
                cur.close()
        finally:
            self._connection.release()

    @contextmanager
    def session(self) -> Iterator[None]:
        """Keep the file open across several operations (saves re-opening it; holds the lock meanwhile)."""
        self._connection.acquire()
        try:
            yield
        finally:
            self._connection.release()

    @contextmanager
    def transaction(self) -> Iterator[duckdb.DuckDBPyConnection]:
        """A cursor inside BEGIN … COMMIT; rolled back on any error, so no half-written rows."""
        with self.cursor() as cur:
            cur.execute("BEGIN TRANSACTION")
            try:
                yield cur
            except BaseException:
                cur.execute("ROLLBACK")
                raise
            cur.execute("COMMIT")

    def _init_schema(self) -> None:
        """Create the tables, or migrate an older file to :data:`schema.SCHEMA_VERSION`, in one transaction."""
        with self.transaction() as cur:
            cur.execute(schema.META)
            row = cur.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
            found = None if row is None else int(row[0])
            if found is not None and found > schema.SCHEMA_VERSION:
                raise StoreError(
                    f"{self.path} has schema version {found}, newer than this MedRAG ({schema.SCHEMA_VERSION}); "
                    "upgrade MedRAG or point MEDRAG_DATA_DIR at another folder."
                )
            if found is not None:
                for _version, statements in schema.migration_steps(found, schema.SCHEMA_VERSION):
                    for statement in statements:
                        cur.execute(statement)
            for statement in schema.CREATE:
                cur.execute(statement)
            if found is None:
                cur.execute("INSERT INTO meta VALUES ('schema_version', ?)", [str(schema.SCHEMA_VERSION)])
            elif found < schema.SCHEMA_VERSION:
                cur.execute(
                    "UPDATE meta SET value = ? WHERE key = 'schema_version'", [str(schema.SCHEMA_VERSION)]
                )
