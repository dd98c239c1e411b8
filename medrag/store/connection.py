"""Opening the DuckDB database: one shared connection per file, lock retry, cursors, transactions, schema.

DuckDB lets one process write a file at a time, and a process holding it open blocks every other process,
even readers. So every :class:`Database` on one file in a process shares ONE connection (a cursor per
thread) and closes it as soon as no thread is using it: the app and a CLI ingest can take turns. A
process that finds the file locked waits and retries (bounded), then raises :class:`StoreLockedError`
saying what to do. Committed transactions are in DuckDB's write-ahead log, so a killed process (kill -9)
loses at most the transaction it was in.

``":memory:"`` is a private in-memory database instead: it lives as long as its connection, so that one
connection is kept for the object's lifetime and never shared or closed when idle.

Trouble is told once, here, in words: a damaged file (:mod:`medrag.store.health`) raises
:class:`StoreDamagedError` on first sight and on every later use in the process (nothing more is written to
it); a full disk raises :class:`DiskFullError`; a file that vanished or was replaced since this process opened
it (the data folder was moved, deleted, restored over) raises :class:`StoreMovedError` instead of DuckDB
quietly creating an empty database at the old place.
"""

from __future__ import annotations

import os
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
from medrag.errors import StoreDamagedError, StoreError, StoreLockedError, StoreMovedError
from medrag.store.health import (
    check_size,
    damaged_error,
    disk_full_error,
    is_damage,
    is_disk_full,
    is_lock_error,
)

MEMORY = ":memory:"


def utcnow() -> datetime:
    """Now in UTC without a zone (what the TIMESTAMP columns hold)."""
    return datetime.now(UTC).replace(tzinfo=None)


def _connect_with_retry(path: str, lock_timeout: float) -> duckdb.DuckDBPyConnection:
    deadline = time.monotonic() + lock_timeout
    delay = 0.05
    while True:
        try:
            return duckdb.connect(path)
        except duckdb.Error as exc:
            if is_damage(exc):
                raise damaged_error(path, exc) from exc
            if is_disk_full(exc):
                raise disk_full_error(path) from exc
            if not isinstance(exc, duckdb.IOException):
                raise
            if not is_lock_error(exc):
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


def _file_identity(path: str) -> tuple[int, int] | None:
    try:
        info = os.stat(path)
    except FileNotFoundError:
        return None
    return (info.st_dev, info.st_ino)


def moved_error(path: str, *, replaced: bool) -> StoreMovedError:
    """The message for a database that vanished (or was swapped) under a running process."""
    folder = Path(path).parent
    what = (
        "was replaced by another file (a restore, a repair, or another folder moved into its place)"
        if replaced else "is gone"
    )
    return StoreMovedError(
        f"The data folder {folder} was moved or deleted while MedRAG was running: its database {Path(path).name} "
        f"{what}. Nothing was written and no new data folder was made. Restart MedRAG, with "
        "--data-dir NEW (or MEDRAG_DATA_DIR=NEW) if the folder now lives elsewhere."
    )


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
        #: (device, inode) of the file this process first opened: a different one later means it was swapped
        self.identity: tuple[int, int] | None = None
        #: set once the file is found damaged: every later use raises it instead of touching the file
        self.damaged: StoreDamagedError | None = None

    def check_identity(self) -> None:
        """Raise :class:`StoreMovedError` when the file this process opened is no longer at its path."""
        if self.identity is None:
            return
        now = _file_identity(self.path)
        if now != self.identity:
            raise moved_error(self.path, replaced=now is not None)

    def acquire(self) -> duckdb.DuckDBPyConnection:
        with self.guard:
            if self.damaged is not None:
                raise self.damaged
            if self.con is None:
                # Checked before connecting: DuckDB would otherwise create an empty file at the old path.
                self.check_identity()
                con = _connect_with_retry(self.path, self.lock_timeout)
                if self.identity is None:
                    try:
                        check_size(con, self.path)
                    except StoreDamagedError as exc:
                        con.close()
                        self.damaged = exc
                        raise
                    except duckdb.Error as exc:
                        con.close()
                        if is_damage(exc):
                            self.damaged = damaged_error(self.path, exc)
                            raise self.damaged from exc
                        raise
                    self.identity = _file_identity(self.path)
                self.con = con
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


def forget_file(path: Path | str) -> None:
    """Drop this process's memory of a database file (after a restore or repair put a new file there on purpose).

    Objects opened before keep the old memory and say the file was replaced; open a new ``Store``.
    """
    with _SHARED_GUARD:
        shared = _SHARED.pop(str(Path(path).resolve()), None)
    if shared is not None:
        with shared.guard:
            if shared.con is not None and shared.users == 0:
                shared.con.close()
                shared.con = None


def known_file(path: Path | str) -> bool:
    """Whether this process has opened the database file at ``path`` (and so knows which file it should be)."""
    shared = _SHARED.get(str(Path(path).resolve()))
    return shared is not None and shared.identity is not None


class Database:
    """A DuckDB file (or ``":memory:"``) with the MedRAG schema: cursors, sessions and transactions on it."""

    def __init__(self, path: Path | str, *, lock_timeout: float = 120.0) -> None:
        self.path = str(path)
        self.in_memory = self.path == MEMORY
        self._connection: _Connection
        #: the data folder that stored paths are relative to: the database file's folder (None in memory)
        self.data_root: Path | None = None
        if self.in_memory:
            self._connection = _MemoryConnection()
        else:
            self.path = str(Path(self.path).resolve())
            shared = _shared_connection(self.path, lock_timeout)
            # A data folder this process already used must not be re-created empty after it moved away.
            shared.check_identity()
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
            self.data_root = Path(self.path).parent
            self._connection = shared
        self._init_schema()

    def check_location(self) -> None:
        """Raise :class:`StoreMovedError` if the database file was moved, deleted or replaced since it was opened.

        Called before work that writes files into the data folder (an analysis' upload, an import's
        thumbnails), so that a moved folder is never re-created empty at its old place.
        """
        if isinstance(self._connection, _SharedConnection):
            if self._connection.damaged is not None:
                raise self._connection.damaged
            self._connection.check_identity()

    def _translate(self, exc: duckdb.Error) -> StoreError | None:
        """The MedRAG error a DuckDB error stands for (damage, full disk), or None to let it through."""
        if is_disk_full(exc):
            return disk_full_error(self.path)
        if is_damage(exc):
            error = damaged_error(self.path, exc)
            if isinstance(self._connection, _SharedConnection):
                self._connection.damaged = error
            return error
        return None

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
        except duckdb.Error as exc:
            translated = self._translate(exc)
            if translated is None:
                raise
            raise translated from exc
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
                try:
                    cur.execute("ROLLBACK")
                except duckdb.Error:
                    pass  # the transaction is already gone (a failed commit, an invalidated database)
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
                for _version, steps in schema.migration_steps(found, schema.SCHEMA_VERSION):
                    for step in steps:
                        if isinstance(step, str):
                            cur.execute(step)
                        else:
                            step(cur, self.data_root)
            for statement in schema.CREATE:
                cur.execute(statement)
            if found is None:
                cur.execute("INSERT INTO meta VALUES ('schema_version', ?)", [str(schema.SCHEMA_VERSION)])
            elif found < schema.SCHEMA_VERSION:
                cur.execute(
                    "UPDATE meta SET value = ? WHERE key = 'schema_version'", [str(schema.SCHEMA_VERSION)]
                )
