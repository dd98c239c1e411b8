"""The whole suite on PostgreSQL: ``MEDRAG_TEST_STORE=postgres`` (``make test-postgres``).

In that mode every data folder a test opens through :func:`medrag.store.factory.open_store` without a
database URL of its own gets its own fresh PostgreSQL database on the throwaway server of
``tests/pgserver.py`` (or on ``$MEDRAG_TEST_DATABASE_URL``'s server) instead of the folder's DuckDB file: the
same code paths a deployment with ``MEDRAG_DATABASE_URL`` runs, one database per folder so tests stay as
isolated as with DuckDB. Subprocesses (the CLI, Streamlit servers) cannot see this substitution; the tests
that start them pass :func:`store_env` for their data folder, which names that folder's database.

A database made while a test runs for a folder inside that test's ``tmp_path`` is dropped when the test
ends; the others (module and session fixtures, folders shared between tests) when the session ends. Tests of
the DuckDB file itself (locks, crash recovery, damage checks, file backups, folders copied or moved with their
file) carry ``@pytest.mark.duckdb_only`` and are skipped in this mode, saying so.
"""

from __future__ import annotations

import functools
import itertools
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from medrag.config import Settings

#: True when this run keeps every store in PostgreSQL
PG_SUITE = os.environ.get("MEDRAG_TEST_STORE", "duckdb").strip().lower() == "postgres"


class SuiteDatabases:
    """One fresh database per data folder on one server; remembers which a running test made."""

    def __init__(self, server_url: str) -> None:
        self.server_url = server_url
        self.by_folder: dict[str, str] = {}
        #: the stores opened on each folder's database, closed before it is dropped (else their pools retry)
        self.opened: dict[str, list[Any]] = {}
        self._names = itertools.count()
        #: databases made since the running test began (None between tests: fixtures of wider scope)
        self.made_by_test: list[str] | None = None

    def url_for(self, data_dir: Path | str) -> str:
        """The URL of ``data_dir``'s database, created (empty) the first time the folder is asked for."""
        from pgserver import fresh_database

        key = str(Path(data_dir).expanduser().resolve())
        if key not in self.by_folder:
            name = f"suite_{os.getpid()}_{next(self._names)}"
            self.by_folder[key] = fresh_database(self.server_url, name)
            if self.made_by_test is not None:
                self.made_by_test.append(key)
        return self.by_folder[key]

    def remember(self, data_dir: Path | str, store: Any) -> Any:
        """Note ``store`` as opened on ``data_dir``'s database; returns it."""
        self.opened.setdefault(str(Path(data_dir).expanduser().resolve()), []).append(store)
        return store

    def drop(self, keys: list[str]) -> None:
        """Close the stores opened on these folders' databases, then drop the databases."""
        import psycopg

        for key in keys:
            for store in self.opened.pop(key, []):
                store.close()
        with psycopg.connect(self.server_url, autocommit=True) as con:
            for key in keys:
                url = self.by_folder.pop(key, None)
                if url is not None:
                    con.execute(f"DROP DATABASE IF EXISTS {url.rsplit('/', 1)[1]} WITH (FORCE)")


_databases: SuiteDatabases | None = None


def store_env(data_dir: Path | str) -> dict[str, str]:
    """Environment for a subprocess working on ``data_dir``: its database URL in the PostgreSQL mode, else {}."""
    if _databases is None:
        return {}
    return {"MEDRAG_DATABASE_URL": _databases.url_for(data_dir)}


def suite_database_url(data_dir: Path | str) -> str | None:
    """The database ``data_dir`` uses in the PostgreSQL mode, None in the DuckDB one."""
    return None if _databases is None else _databases.url_for(data_dir)


def suite_store(data_dir: Path) -> Any | None:
    """In the PostgreSQL mode, a ``PgStore`` on a fresh database for ``data_dir`` (closed and dropped with it);
    None in the DuckDB mode."""
    if _databases is None:
        return None
    from medrag.store.pg import PgStore

    return _databases.remember(data_dir, PgStore(_databases.url_for(data_dir), data_root=data_dir))


def folder_store(data_dir: Path | str) -> Any:
    """The store a workbench on ``data_dir`` uses, for a test to look into: the folder's DuckDB file, or in the
    PostgreSQL mode a ``PgStore`` on the folder's database."""
    if _databases is None:
        from medrag.store import Store

        return Store(Path(data_dir) / "medrag.duckdb")
    from medrag.store.pg import PgStore

    return _databases.remember(data_dir, PgStore(_databases.url_for(data_dir), data_root=Path(data_dir)))


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers",
                            "duckdb_only: tests the DuckDB file itself; skipped with MEDRAG_TEST_STORE=postgres")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if not PG_SUITE:
        return
    for item in items:
        marker = item.get_closest_marker("duckdb_only")
        if marker is not None:
            why = marker.args[0] if marker.args else "it tests the DuckDB file itself"
            item.add_marker(pytest.mark.skip(reason=f"MEDRAG_TEST_STORE=postgres: {why}"))


def _store_opener(databases: SuiteDatabases, original: Callable[[Settings], Any]) -> Callable[[Settings], Any]:
    @functools.wraps(original)  # inspect.unwrap gives a test the factory itself
    def open_store(settings: Settings) -> Any:
        if settings.database_url:
            return original(settings)
        from dataclasses import replace

        store = original(replace(settings, database_url=databases.url_for(settings.data_dir)))
        return databases.remember(settings.data_dir, store)

    return open_store


@pytest.fixture(scope="session", autouse=True)
def _postgres_for_every_store(request: pytest.FixtureRequest) -> Iterator[None]:
    """In the PostgreSQL mode: route every store opened without a URL to its folder's own database."""
    global _databases
    if not PG_SUITE:
        yield
        return
    import medrag.store.factory as factory
    import medrag.workbench as workbench

    server_url = request.getfixturevalue("pg_server_url")
    databases = SuiteDatabases(server_url)
    opener = _store_opener(databases, factory.open_store)
    patch = pytest.MonkeyPatch()
    patch.setattr(factory, "open_store", opener)
    patch.setattr(workbench, "open_store", opener)
    _databases = databases
    try:
        yield
    finally:
        _databases = None
        patch.undo()
        databases.drop(list(databases.by_folder))


@pytest.fixture(autouse=True)
def _drop_test_databases(request: pytest.FixtureRequest) -> Iterator[None]:
    """In the PostgreSQL mode: when a test ends, drop the databases it made for folders in its own
    ``tmp_path`` (nothing else can use those again); the rest last until the session ends, as the folders do."""
    if _databases is None:
        yield
        return
    databases = _databases
    # Asked for now: at teardown the test's tmp_path may already be gone.
    own = Path(request.getfixturevalue("tmp_path")).resolve() if "tmp_path" in request.fixturenames else None
    databases.made_by_test = []
    try:
        yield
    finally:
        made, databases.made_by_test = databases.made_by_test or [], None
        if own is not None:
            databases.drop([key for key in made if Path(key).is_relative_to(own)])
