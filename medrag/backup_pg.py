"""``medrag backup`` / ``restore`` when the store is PostgreSQL (``MEDRAG_DATABASE_URL``): PostgreSQL's own tools.

- :func:`backup_pg` counts every table's rows inside one repeatable-read transaction, exports that
  transaction's snapshot and has ``pg_dump --snapshot`` dump exactly it (custom format), so the manifest's
  counts are the dump's. The dump is written to a temp file, listed back with ``pg_restore --list`` (every
  table's data must be in it), its manifest written, and only then renamed to its name, as the DuckDB backup.
- :func:`restore_pg` verifies the file against its manifest (size, SHA-256), backs the current database up
  first (``<data>/backups/before-restore-<time>.pgdump``, so nothing stored is lost), then runs
  ``pg_restore --clean --if-exists --single-transaction``: the database is either the backup's or unchanged.
  The restored row counts are checked against the manifest.

The files under the data folder (thumbnails, uploads) are not in the dump: copy the shared folder beside it.
The tools come from ``PATH`` or Debian's ``/usr/lib/postgresql/*/bin`` (newest first); they must be at least
the server's major version, which pg_dump itself checks.
"""

from __future__ import annotations

import glob
import json
import os
import shutil
import subprocess
import time
from pathlib import Path

from medrag.backup_manifest import Manifest, fsync_file, manifest_path, manifest_temp, publish
from medrag.config import Settings
from medrag.errors import BackupError
from medrag.fsutil import file_sha256

#: What ``Manifest.source`` starts with for a PostgreSQL dump.
SOURCE_PREFIX = "postgresql://"


def _tool(name: str) -> str:
    """The newest ``pg_dump`` / ``pg_restore`` found, or a BackupError saying how to install it."""
    candidates = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"),
                        key=lambda p: int(Path(p).parents[1].name) if Path(p).parents[1].name.isdigit() else 0,
                        reverse=True)
    found = candidates[0] if candidates else shutil.which(name)
    if not found:
        raise BackupError(f"{name} is not installed: apt-get install postgresql-client (the same major version as "
                          "the server, or newer), then run the command again.")
    return found


def _connection_env(url: str) -> dict[str, str]:
    """The URL as libpq's PG* variables: the password never appears on a command line (``ps`` shows those)."""
    from psycopg.conninfo import conninfo_to_dict

    names = {"host": "PGHOST", "port": "PGPORT", "user": "PGUSER", "password": "PGPASSWORD", "dbname": "PGDATABASE",
             "sslmode": "PGSSLMODE"}
    info = conninfo_to_dict(url)
    return {names[k]: str(v) for k, v in info.items() if k in names and v is not None}


def _run(command: list[str], what: str, url: str | None = None) -> str:
    env = {**os.environ, **_connection_env(url)} if url else None
    done = subprocess.run(command, capture_output=True, text=True, timeout=3600, check=False, env=env)
    if done.returncode:
        detail = (done.stderr or done.stdout).strip().splitlines()
        raise BackupError(f"{what} failed: {detail[-1] if detail else f'exit status {done.returncode}'}.")
    return done.stdout


def default_dump_path(settings: Settings, stem: str = "medrag") -> Path:
    """``<data>/backups/<stem>-<time>.pgdump`` (a numbered suffix if that name is taken)."""
    folder = settings.data_dir / "backups"
    stamp = time.strftime("%Y%m%d-%H%M%S")
    target, n = folder / f"{stem}-{stamp}.pgdump", 2
    while target.exists() or manifest_path(target).exists():
        target, n = folder / f"{stem}-{stamp}-{n}.pgdump", n + 1
    return target


def _counts(cur: object, tables: list[str]) -> dict[str, int]:
    rows: dict[str, int] = {}
    for table in tables:
        found = cur.execute(f'SELECT count(*) FROM "{table}"').fetchone()  # type: ignore[attr-defined]
        rows[table] = int(found[0])
    return rows


def _tables(cur: object) -> list[str]:
    from medrag.store.pg.schema import TABLES

    found = {r[0] for r in cur.execute(  # type: ignore[attr-defined]
        "SELECT table_name FROM information_schema.tables WHERE table_schema = 'public'").fetchall()}
    return [t for t in TABLES if t in found] + sorted(found - set(TABLES))


def backup_pg(settings: Settings, target: Path | None = None, *, force: bool = False) -> tuple[Path, Manifest]:
    """Dump the PostgreSQL database of ``settings`` to ``target`` (default :func:`default_dump_path`), checked."""
    import psycopg

    from medrag.store.pg import describe_url

    url = settings.database_url
    if not url:
        raise BackupError("This MedRAG uses the data folder's DuckDB file, not PostgreSQL; use `medrag backup`.")
    target = Path(target).expanduser().resolve() if target is not None else default_dump_path(settings)
    if target.is_dir():
        raise BackupError(f"{target} is a folder; give a file name such as {target / 'medrag.pgdump'}.")
    if (target.exists() or manifest_path(target).exists()) and not force:
        raise BackupError(f"{target} already exists; choose a new name, or pass --force to replace it.")
    pg_dump = _tool("pg_dump")
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    try:
        with psycopg.connect(url, autocommit=True) as con:
            con.execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
            tables = _tables(con)
            if "meta" not in tables:
                raise BackupError(f"{describe_url(url)} holds no MedRAG store (no meta table); check the URL.")
            version_row = con.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
            rows = _counts(con, tables)
            snapshot = con.execute("SELECT pg_export_snapshot()").fetchone()
            assert snapshot is not None
            # The transaction stays open until the dump is done: pg_dump reads exactly the counted snapshot.
            _run([pg_dump, "--format=custom", "--no-owner", "--no-privileges", f"--snapshot={snapshot[0]}",
                  f"--file={tmp}"], "pg_dump", url)
            con.execute("ROLLBACK")
        listed = _run([_tool("pg_restore"), "--list", str(tmp)], "pg_restore --list")
        missing = [t for t in tables if f"TABLE DATA public {t} " not in listed]
        if missing:
            raise BackupError(f"The dump lacks the data of {', '.join(missing)}; run backup again.")
        fsync_file(tmp)
        manifest = Manifest(created_at=time.strftime("%Y-%m-%dT%H:%M:%S%z"), source=describe_url(url),
                            schema_version=int(version_row[0]) if version_row else 0, rows=rows,
                            size=tmp.stat().st_size, sha256=file_sha256(tmp))
        publish(tmp, target, manifest)
    except psycopg.Error as exc:
        raise BackupError(f"Could not read {describe_url(url)} to back it up: {exc}".rstrip(".") + ".") from exc
    except OSError as exc:
        raise BackupError(f"Could not write the backup {target}: {exc}. Nothing was changed.") from exc
    finally:
        tmp.unlink(missing_ok=True)
        manifest_temp(target).unlink(missing_ok=True)
    return target, manifest


def verify_dump(path: Path) -> Manifest:
    """The manifest of a complete PostgreSQL dump at ``path``; a BackupError saying what is wrong otherwise."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise BackupError(f"{path} does not exist (or is not a file); give a backup made by `medrag backup`.")
    try:
        data = json.loads(manifest_path(path).read_text(encoding="utf-8"))
        manifest = Manifest(**{k: data[k] for k in Manifest.__dataclass_fields__ if k in data})
    except FileNotFoundError:
        raise BackupError(f"{path} has no manifest beside it: it is not a complete backup made by `medrag backup`; "
                          "use another backup.") from None
    except (ValueError, TypeError, KeyError) as exc:
        raise BackupError(f"The manifest of {path} is unreadable ({exc}); use another backup.") from exc
    if not manifest.source.startswith(SOURCE_PREFIX):
        raise BackupError(f"{path} is a backup of a DuckDB file, and this MedRAG uses PostgreSQL; unset "
                          "MEDRAG_DATABASE_URL to restore it into the data folder, or give a PostgreSQL backup.")
    if path.stat().st_size != manifest.size or file_sha256(path) != manifest.sha256:
        raise BackupError(f"{path} is not the file its manifest describes (torn or changed); it was not restored.")
    return manifest


def restore_pg(settings: Settings, backup_file: Path) -> tuple[Manifest, Path | None]:
    """Replace the PostgreSQL database's contents with a verified dump; returns its manifest and the dump of
    what it replaced (made first, so nothing stored is lost)."""
    import psycopg

    from medrag.store.pg import PgStore
    from medrag.store.pg.schema import SCHEMA_VERSION

    url = settings.database_url
    if not url:
        raise BackupError("This MedRAG uses the data folder's DuckDB file, not PostgreSQL; use `medrag restore`.")
    manifest = verify_dump(backup_file)
    if manifest.schema_version > SCHEMA_VERSION:
        raise BackupError(f"{backup_file} was made by a newer MedRAG (schema {manifest.schema_version}); upgrade "
                          "MedRAG to restore it.")
    pg_restore = _tool("pg_restore")
    PgStore(url, data_root=settings.data_dir).close()  # the schema exists (or is migrated): a dump can be made
    aside, _ = backup_pg(settings, default_dump_path(settings, "before-restore"))
    _run([pg_restore, "--clean", "--if-exists", "--no-owner", "--no-privileges", "--single-transaction",
          f"--dbname={_connection_env(url).get('PGDATABASE', '')}", str(Path(backup_file).expanduser())],
         "pg_restore", url)
    with psycopg.connect(url) as con:
        rows = _counts(con, [t for t in manifest.rows if t in _tables(con)])
    if rows != manifest.rows:
        raise BackupError(f"The restored database holds {rows}, not the backup's {manifest.rows}; the database "
                          f"before the restore is kept in {aside} (`medrag restore {aside}`).")
    return manifest, aside


__all__ = ["backup_pg", "default_dump_path", "restore_pg", "verify_dump"]
