"""``medrag backup`` / ``restore``: a consistent, verified copy of the database, and putting one back.

- :func:`backup` copies the live database with DuckDB's ``ATTACH`` + ``COPY FROM DATABASE`` inside one
  transaction on the store's own connection (so the copy is one snapshot, and other processes wait on the
  file lock as for any command), into a temp file beside the target. The copy is checked (opened read-only,
  every row of every table read and counted against the live counts), its manifest (row counts, schema
  version, size, SHA-256) is written, and only then is the file renamed to its name: a kill at any moment
  leaves no backup or a complete one, never a torn file under a backup's name.
- :func:`verify_backup` accepts a file only when its manifest is beside it and its size, SHA-256, schema
  version and row counts all agree; :func:`restore` uses it, keeps the current database aside
  (``medrag.duckdb.before-restore-<time>``) and swaps the copy in with one rename.

:mod:`medrag.repair` salvages a damaged database with the helpers here.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path

import duckdb

from medrag.backup_manifest import Manifest, fsync_file, manifest_path, manifest_temp, publish
from medrag.config import Settings
from medrag.errors import BackupError, StoreError, StoreLockedError
from medrag.fsutil import file_sha256, fsync_dir
from medrag.store import schema
from medrag.store.connection import Database, forget_file
from medrag.store.health import check_size, quoted, table_counts


def _stamp() -> str:
    return time.strftime("%Y%m%d-%H%M%S")


def sql_text(value: str | Path) -> str:
    """A path as an SQL string literal (ATTACH takes no parameters)."""
    return "'" + str(value).replace("'", "''") + "'"


def default_backup_path(settings: Settings) -> Path:
    """``<data>/backups/medrag-<time>.duckdb`` (a numbered suffix if that name is taken)."""
    folder = settings.data_dir / "backups"
    target = folder / f"medrag-{_stamp()}.duckdb"
    n = 2
    while target.exists() or manifest_path(target).exists():
        target = folder / f"medrag-{_stamp()}-{n}.duckdb"
        n += 1
    return target


def ordered_tables(tables: set[str]) -> list[str]:
    return [t for t in schema.TABLES if t in tables] + sorted(tables - set(schema.TABLES))


def tables_of(con: duckdb.DuckDBPyConnection, catalog: str) -> set[str]:
    rows = con.execute("SELECT table_name FROM duckdb_tables() WHERE database_name = ?", [catalog]).fetchall()
    return {r[0] for r in rows}


def schema_version_of(con: duckdb.DuckDBPyConnection, catalog: str) -> int:
    row = con.execute(f"SELECT value FROM {quoted(catalog)}.meta WHERE key = 'schema_version'").fetchone()
    return int(row[0]) if row else 0


def read_database(path: Path) -> tuple[int, dict[str, int]]:
    """(schema version, rows per table) of a database file, reading every row; raises duckdb.Error if it cannot."""
    con = duckdb.connect(str(path), read_only=True)
    try:
        catalog = con.execute("SELECT current_database()").fetchone()[0]  # type: ignore[index]
        tables = tuple(ordered_tables(tables_of(con, catalog)))
        return schema_version_of(con, catalog), table_counts(con, tables)
    finally:
        con.close()


def _clean_stale_temps(folder: Path) -> None:
    """Remove temp files that killed backups left (their process is gone); a running one's stay."""
    for leftover in folder.glob(".*.tmp*"):
        parts = leftover.name.split(".")
        pid = next((int(p) for p in parts if p.isdigit()), None)
        if pid is None or pid == os.getpid():
            continue
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            leftover.unlink(missing_ok=True)
        except OSError:
            continue


# --------------------------------------------------------------------------- backup
def _copy_live(store: Database, tmp: Path) -> dict[str, int]:
    """Copy the live database into the new file ``tmp``; returns the rows per table the copy must hold."""
    with store.cursor() as cur:
        (catalog,) = cur.execute("SELECT current_database()").fetchone() or ("",)
        cur.execute(f"ATTACH {sql_text(tmp)} AS medrag_backup")
        try:
            # One transaction: the copy and the counts it is checked against are one snapshot.
            cur.execute("BEGIN TRANSACTION")
            try:
                cur.execute(f"COPY FROM DATABASE {quoted(str(catalog))} TO medrag_backup")
                live = {}
                for table in tables_of(cur, str(catalog)):
                    (count,) = cur.execute(f"SELECT count(*) FROM {quoted(str(catalog))}.{table}").fetchone() or (0,)
                    live[table] = int(count)
                cur.execute("COMMIT")
            except BaseException:
                cur.execute("ROLLBACK")
                raise
        finally:
            cur.execute("DETACH medrag_backup")
    return live


def backup(settings: Settings, target: Path | None = None, *, force: bool = False) -> tuple[Path, Manifest]:
    """Write a verified copy of the database to ``target`` (default :func:`default_backup_path`) and its manifest;
    with a PostgreSQL store, a checked ``pg_dump`` (:func:`medrag.backup_pg.backup_pg`)."""
    from medrag.store import Store

    if settings.database_url:
        from medrag.backup_pg import backup_pg

        return backup_pg(settings, target, force=force)
    db = settings.db_path
    if not db.is_file():
        raise BackupError(f"There is no database at {db} to back up; check --data-dir.")
    target = Path(target).expanduser().resolve() if target is not None else default_backup_path(settings)
    if target == db.resolve() or (target.parent == db.parent.resolve() and target.name.startswith(db.name + ".")):
        raise BackupError(f"{target} is the live database (or one of its own files); choose another backup path.")
    if target.is_dir():
        raise BackupError(f"{target} is a folder; give a file name such as {target / 'medrag-backup.duckdb'}.")
    if (target.exists() or manifest_path(target).exists()) and not force:
        raise BackupError(f"{target} already exists; choose a new name, or pass --force to replace it.")
    target.parent.mkdir(parents=True, exist_ok=True)
    _clean_stale_temps(target.parent)
    tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    try:
        live = _copy_live(Store(db), tmp)
        fsync_file(tmp)
        version, rows = read_database(tmp)
        if rows != live:
            raise BackupError(f"The copy does not match the database (copy {rows}, database {live}); run backup again.")
        manifest = Manifest(
            created_at=time.strftime("%Y-%m-%dT%H:%M:%S%z"), source=str(db), schema_version=version, rows=rows,
            size=tmp.stat().st_size, sha256=file_sha256(tmp),
        )
        publish(tmp, target, manifest)
    except OSError as exc:
        raise BackupError(
            f"Could not write the backup {target}: {exc}. Nothing was changed; free some space or pick another place."
        ) from exc
    except duckdb.Error as exc:
        raise BackupError(f"Could not copy the database into {target}: {exc}.") from exc
    finally:
        for leftover in (tmp, tmp.with_name(tmp.name + ".wal"), manifest_temp(target)):
            leftover.unlink(missing_ok=True)
    return target, manifest


def verify_backup(path: Path) -> Manifest:
    """The manifest of a complete, intact backup at ``path``; raises :class:`BackupError` saying what is wrong."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise BackupError(f"{path} does not exist (or is not a file); give a backup made by `medrag backup`.")
    sidecar = manifest_path(path)
    try:
        data = json.loads(sidecar.read_text(encoding="utf-8"))
        manifest = Manifest(**{k: data[k] for k in Manifest.__dataclass_fields__ if k in data})
    except FileNotFoundError:
        raise BackupError(
            f"{path} has no manifest ({sidecar.name}) beside it: it is not a complete backup made by "
            "`medrag backup` (an interrupted backup leaves none). Use another backup."
        ) from None
    except (ValueError, TypeError, KeyError) as exc:
        raise BackupError(f"The manifest {sidecar} is unreadable ({exc}); use another backup.") from exc
    size = path.stat().st_size
    if size != manifest.size or file_sha256(path) != manifest.sha256:
        raise BackupError(
            f"{path} is not the file its manifest describes ({size:,} bytes, expected {manifest.size:,}, or its "
            "SHA-256 differs): it is torn or was changed. It was not restored; use another backup."
        )
    try:
        version, rows = read_database(path)
    except duckdb.Error as exc:
        raise BackupError(f"{path} cannot be read as a database ({exc}); it was not restored.") from exc
    if rows != manifest.rows or version != manifest.schema_version:
        raise BackupError(f"{path} holds {rows}, but its manifest says {manifest.rows}; it was not restored.")
    if version > schema.SCHEMA_VERSION:
        raise BackupError(f"{path} was made by a newer MedRAG (schema {version}); upgrade MedRAG to restore it.")
    return manifest


def ensure_unused(db: Path) -> None:
    """Refuse to swap the database while another process has it open (DuckDB holds an fcntl lock on it).

    A check just before the swap, not a lock held across it: POSIX drops a process's lock on a file when any
    of its descriptors of that file closes, which DuckDB's own connections in this process do.
    """
    forget_file(db)
    try:
        import fcntl
    except ImportError:  # Windows: there the rename itself fails while the file is open
        return
    if not db.exists():
        return
    with open(db, "rb+") as handle:
        try:
            fcntl.lockf(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            raise StoreLockedError(
                f"{db} is open in another MedRAG process (the app or a command); stop it, then run this again."
            ) from None


def set_aside(db: Path, suffix: str) -> Path | None:
    """Keep the current database (and its WAL) under ``<name>.<suffix>-<time>``; the live name stays in place."""
    if not db.exists():
        return None
    aside = db.with_name(f"{db.name}.{suffix}-{_stamp()}")
    n = 2
    while aside.exists():
        aside = db.with_name(f"{db.name}.{suffix}-{_stamp()}-{n}")
        n += 1
    try:
        os.link(db, aside)  # a second name: no moment without a database at the live name
    except OSError:
        shutil.copy2(db, aside)
    wal = db.with_name(db.name + ".wal")
    if wal.exists():
        os.replace(wal, aside.with_name(aside.name + ".wal"))
    return aside


def _checkpoint(db: Path) -> None:
    """Fold a healthy database's WAL into its file before it is set aside; a damaged one is left untouched.

    (The WAL of one that cannot be folded is set aside with it by :func:`set_aside`.)
    """
    if not db.with_name(db.name + ".wal").exists():
        return  # nothing to fold, and connecting to a missing file would create one
    try:
        con = duckdb.connect(str(db))
    except duckdb.Error:
        return
    try:
        check_size(con, str(db))
        con.execute("CHECKPOINT")
    except (duckdb.Error, StoreError):
        pass
    finally:
        con.close()


def restore(settings: Settings, backup_file: Path) -> tuple[Manifest, Path | None]:
    """Put a verified backup in place of the database; returns its manifest and where the old database was kept
    (with a PostgreSQL store: :func:`medrag.backup_pg.restore_pg`)."""
    if settings.database_url:
        from medrag.backup_pg import restore_pg

        return restore_pg(settings, backup_file)
    backup_file = Path(backup_file).expanduser().resolve()
    db = settings.db_path
    if backup_file == db.resolve():
        raise BackupError(f"{backup_file} is the live database itself; give a backup file.")
    manifest = verify_backup(backup_file)
    db.parent.mkdir(parents=True, exist_ok=True)
    tmp = db.with_name(f".{db.name}.restore.{os.getpid()}.tmp")
    try:
        shutil.copyfile(backup_file, tmp)
        fsync_file(tmp)
        if file_sha256(tmp) != manifest.sha256:
            raise BackupError(f"The copy of {backup_file} into {db.parent} came out different; nothing was changed.")
        forget_file(db)
        _checkpoint(db)
        ensure_unused(db)
        aside = set_aside(db, "before-restore")
        os.replace(tmp, db)
        fsync_dir(db.parent)
    except OSError as exc:
        raise BackupError(f"Could not restore {backup_file} into {db.parent}: {exc}. Nothing was changed.") from exc
    finally:
        tmp.unlink(missing_ok=True)
    forget_file(db)
    return manifest, aside


__all__ = [
    "Manifest", "backup", "default_backup_path", "ensure_unused", "fsync_file", "manifest_path", "ordered_tables",
    "read_database", "restore", "schema_version_of", "set_aside", "sql_text", "tables_of", "verify_backup",
]
