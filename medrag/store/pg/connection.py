"""Opening the PostgreSQL store: a connection pool, cursors, transactions, schema set-up with migrations.

Unlike the DuckDB file, a PostgreSQL database is shared by any number of processes (app replicas, CLI
imports) at once, so there is no lock to wait for: each thread borrows a pooled connection for one
cursor or transaction and gives it back. Replicas that start together set the schema up one at a time
(a transaction-scoped advisory lock). A server that cannot be reached raises :class:`StoreError` saying
where MedRAG looked (the URL without its password) and what to check.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import psycopg
from psycopg.conninfo import conninfo_to_dict
from psycopg_pool import ConnectionPool, PoolTimeout

import medrag.store.pg.schema as pg_schema
from medrag.errors import StoreError

#: URL schemes that name a PostgreSQL server (what ``MEDRAG_DATABASE_URL`` / ``--database-url`` accept).
URL_SCHEMES = ("postgresql://", "postgres://")


def is_database_url(value: str) -> bool:
    """Whether ``value`` is a PostgreSQL URL (``postgresql://…`` or ``postgres://…``)."""
    return value.strip().lower().startswith(URL_SCHEMES)


def describe_url(url: str) -> str:
    """The URL as it may be shown: host, port, database and user, never the password."""
    try:
        info = conninfo_to_dict(url)
    except psycopg.ProgrammingError:
        return "postgresql://(unparseable URL)"
    user = f"{info['user']}@" if info.get("user") else ""
    host = info.get("host") or "localhost"
    port = f":{info['port']}" if info.get("port") else ""
    return f"postgresql://{user}{host}{port}/{info.get('dbname', '')}"


def pg_sql(sql: str) -> str:
    """DuckDB-style ``?`` placeholders (as the shared query builders write them) as psycopg's ``%s``."""
    return sql.replace("%", "%%").replace("?", "%s")


class PgDatabase:
    """A PostgreSQL database with the MedRAG schema: pooled cursors and transactions on it.

    ``data_root`` is the (shared) data folder that stored file paths are relative to, as the DuckDB file's
    folder is for :class:`~medrag.store.connection.Database`; None keeps paths as given.
    """

    #: never an in-memory database (code that copies the DuckDB file checks this)
    in_memory = False

    def __init__(
        self, url: str, *, data_root: Path | str | None = None, pool_size: int = 8, connect_timeout: float = 15.0
    ) -> None:
        if not is_database_url(url):
            raise StoreError(f"{describe_url(url)} is not a PostgreSQL URL; use postgresql://USER@HOST:PORT/DB.")
        self.url = url
        #: what messages show for this database (no password)
        self.path = describe_url(url)
        self.data_root: Path | None = Path(data_root).resolve() if data_root is not None else None
        self.pool = ConnectionPool(
            url, min_size=1, max_size=max(1, pool_size), open=False, check=ConnectionPool.check_connection,
            kwargs={"connect_timeout": max(1, int(connect_timeout))}, name="medrag-store",
        )
        try:
            self.pool.open(wait=True, timeout=connect_timeout)
        except PoolTimeout as exc:
            self.pool.close()
            raise StoreError(
                f"Cannot reach the PostgreSQL store at {self.path} within {connect_timeout:.0f} s. Check that the "
                "server runs, the URL (MEDRAG_DATABASE_URL or --database-url) and the password, then try again."
            ) from exc
        try:
            self._init_schema()
        except BaseException:
            self.pool.close()
            raise

    def close(self) -> None:
        """Close the pool's connections (the object is unusable afterwards)."""
        self.pool.close()

    def __enter__(self) -> PgDatabase:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def check_location(self) -> None:
        """Nothing to check: the database is a server, not a file that could move (kept for the interface)."""

    @contextmanager
    def cursor(self) -> Iterator[psycopg.Cursor[Any]]:
        """A cursor on a pooled connection; its work is committed when the block ends, rolled back on error."""
        try:
            with self.pool.connection() as conn, conn.cursor() as cur:
                yield cur
        except PoolTimeout as exc:
            raise StoreError(
                f"No connection to the PostgreSQL store at {self.path} came free or could be made; the server "
                "may be down or at its connection limit. Check it, then try again."
            ) from exc
        except psycopg.OperationalError as exc:
            raise StoreError(
                f"The PostgreSQL store at {self.path} failed: {exc}. Check the server, then try again."
            ) from exc

    @contextmanager
    def session(self) -> Iterator[None]:
        """Kept for the interface: a server needs no file held open across several operations."""
        yield

    @contextmanager
    def transaction(self) -> Iterator[psycopg.Cursor[Any]]:
        """A cursor inside one transaction; rolled back on any error, so no half-written rows."""
        with self.cursor() as cur:
            yield cur

    def _init_schema(self) -> None:
        """Create the tables, or migrate an older database to :data:`pg_schema.SCHEMA_VERSION`, in one transaction."""
        with self.transaction() as cur:
            cur.execute("SELECT pg_advisory_xact_lock(%s)", [pg_schema.SCHEMA_LOCK_KEY])
            cur.execute(pg_schema.META)
            row = cur.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
            found = None if row is None else int(row[0])
            if found is not None and found > pg_schema.SCHEMA_VERSION:
                raise StoreError(
                    f"{self.path} has schema version {found}, newer than this MedRAG ({pg_schema.SCHEMA_VERSION}); "
                    "upgrade MedRAG or point MEDRAG_DATABASE_URL at another database."
                )
            if found is not None:
                for _version, steps in pg_schema.migration_steps(found, pg_schema.SCHEMA_VERSION):
                    for step in steps:
                        if isinstance(step, str):
                            cur.execute(step)
                        else:
                            step(cur)
            for statement in pg_schema.CREATE:
                cur.execute(statement)
            if found is None:
                cur.execute("INSERT INTO meta VALUES ('schema_version', %s)", [str(pg_schema.SCHEMA_VERSION)])
            elif found < pg_schema.SCHEMA_VERSION:
                cur.execute(
                    "UPDATE meta SET value = %s WHERE key = 'schema_version'", [str(pg_schema.SCHEMA_VERSION)]
                )
