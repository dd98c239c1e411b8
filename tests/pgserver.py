"""A throwaway PostgreSQL server for the tests, and a store fixture over both backends.

``pg_server_url`` (session): ``$MEDRAG_TEST_DATABASE_URL`` when set, else a server started from Debian's
``initdb`` / ``pg_ctl`` (``/usr/lib/postgresql/*/bin``) in a temporary directory, listening on 127.0.0.1 on
a free port, with a database ``medrag_test``; stopped and deleted at the end. PostgreSQL refuses to run as
root, so as root the directory belongs to ``postgres`` and the commands run through ``runuser``. The tests
that need it skip, saying why, when the binaries are missing or the server does not start.

``any_store``: a fresh, empty store per test, once an in-memory DuckDB store and once a PgStore on an
emptied ``public`` schema.

tests/conftest.py registers this module as a plugin, so every test module can ask for these fixtures.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

DATABASE = "medrag_test"


def _binaries() -> Path | None:
    """The newest PostgreSQL bin folder that has initdb and pg_ctl, or None."""
    folders = sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=lambda p: int(Path(p).parent.name or 0)
                     if Path(p).parent.name.isdigit() else 0, reverse=True)
    for folder in folders:
        if (Path(folder) / "initdb").is_file() and (Path(folder) / "pg_ctl").is_file():
            return Path(folder)
    found = shutil.which("initdb")
    if found and shutil.which("pg_ctl"):
        return Path(found).resolve().parent
    return None


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _run(command: list[str], as_postgres: bool) -> subprocess.CompletedProcess[str]:
    if as_postgres:
        command = ["runuser", "-u", "postgres", "--", *command]
    return subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)


class ThrowawayServer:
    """One PostgreSQL cluster in a temporary directory (``start`` / ``stop``)."""

    def __init__(self, bindir: Path) -> None:
        self.bindir = bindir
        self.root = Path(tempfile.mkdtemp(prefix="medrag-pg-"))
        self.data = self.root / "data"
        self.port = _free_port()
        self.as_postgres = os.geteuid() == 0
        if self.as_postgres:
            account = pwd.getpwnam("postgres")
            os.chown(self.root, account.pw_uid, account.pw_gid)

    def start(self) -> str:
        """Initialise and start the cluster, create the test database; returns its URL (raises RuntimeError)."""
        init = _run([str(self.bindir / "initdb"), "-D", str(self.data), "-A", "trust", "-U", "postgres",
                     "-E", "UTF8", "--locale=C", "--no-sync"], self.as_postgres)
        if init.returncode:
            raise RuntimeError(f"initdb failed: {(init.stderr or init.stdout).strip()[-400:]}")
        options = (f"-c listen_addresses=127.0.0.1 -p {self.port} -k {self.root} -c fsync=off "
                   "-c synchronous_commit=off -c full_page_writes=off -c max_connections=200")
        started = _run([str(self.bindir / "pg_ctl"), "-D", str(self.data), "-o", options,
                        "-l", str(self.root / "server.log"), "-w", "-t", "60", "start"], self.as_postgres)
        if started.returncode:
            log = (self.root / "server.log").read_text(errors="replace") if (self.root / "server.log").exists() else ""
            raise RuntimeError(f"pg_ctl start failed: {(started.stderr or started.stdout).strip()} {log[-400:]}")
        import psycopg

        with psycopg.connect(self.url("postgres"), autocommit=True) as con:
            con.execute(f"CREATE DATABASE {DATABASE}")
        return self.url(DATABASE)

    def url(self, database: str) -> str:
        """The URL of ``database`` on this server."""
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}"

    def stop(self) -> None:
        """Stop the server (immediately: its data is thrown away) and delete its directory."""
        if self.data.exists():
            _run([str(self.bindir / "pg_ctl"), "-D", str(self.data), "-m", "immediate", "-w", "stop"],
                 self.as_postgres)
        shutil.rmtree(self.root, ignore_errors=True)


@pytest.fixture(scope="session")
def pg_server_url() -> Iterator[str]:
    """The URL of an empty-to-start PostgreSQL database for the tests, or skip with the reason."""
    external = os.environ.get("MEDRAG_TEST_DATABASE_URL")
    if external:
        yield external
        return
    try:
        import psycopg  # noqa: F401
    except ImportError:
        pytest.skip("psycopg is not installed (pip install -r requirements.txt)")
    bindir = _binaries()
    if bindir is None:
        pytest.skip("PostgreSQL's initdb/pg_ctl not found: apt-get install postgresql, or set MEDRAG_TEST_DATABASE_URL")
    if os.geteuid() == 0 and (shutil.which("runuser") is None or _has_no_postgres_user()):
        pytest.skip("running as root without a 'postgres' user or runuser: PostgreSQL refuses to run as root")
    server = ThrowawayServer(bindir)
    try:
        url = server.start()
    except (RuntimeError, OSError, subprocess.SubprocessError) as exc:
        server.stop()
        pytest.skip(f"a throwaway PostgreSQL server could not start: {exc}")
    try:
        yield url
    finally:
        server.stop()


def _has_no_postgres_user() -> bool:
    try:
        pwd.getpwnam("postgres")
    except KeyError:
        return True
    return False


def fresh_database(url: str, name: str) -> str:
    """The URL of a new, empty database ``name`` on the server of ``url`` (dropped first if it exists)."""
    from urllib.parse import urlsplit

    import psycopg

    with psycopg.connect(url, autocommit=True) as con:
        con.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        con.execute(f"CREATE DATABASE {name}")
    return urlsplit(url)._replace(path=f"/{name}").geturl()


def reset_database(url: str) -> None:
    """Empty the database at ``url`` (drop and re-create its ``public`` schema)."""
    import psycopg

    with psycopg.connect(url, autocommit=True) as con:
        con.execute("DROP SCHEMA IF EXISTS public CASCADE")
        con.execute("CREATE SCHEMA public")


@pytest.fixture(params=["duckdb-memory", "postgres"])
def any_store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Any]:
    """A fresh, empty store: an in-memory DuckDB ``Store``, then a ``PgStore`` on an emptied database."""
    if request.param == "duckdb-memory":
        from medrag.store import Store

        yield Store(":memory:")
        return
    url = request.getfixturevalue("pg_server_url")
    reset_database(url)
    from medrag.store.pg import PgStore

    store = PgStore(url, data_root=tmp_path)
    try:
        yield store
    finally:
        store.close()
