"""``medrag repair``: salvage what is readable of a damaged database into a new one, and swap it in.

The damaged file is opened read-only as it is, else with a damaged header replaced (DuckDB keeps a main
header and two alternating database headers; a zeroed one is patched from a fresh file or from its twin).
Each table is copied whole, or else in slices of :data:`SLICE_ROWS` rows (DuckDB reads a column 2,048 rows
at a time, so a damaged block costs the slices it overlaps). A slice that does not read whole keeps the
columns that do read when every required (NOT NULL) one is among them: a history row that lost its
reasoning text keeps its question, label and findings. Rows whose case was lost are dropped (a source
fingerprint of a lost case would stop a re-import from bringing it back); id sequences move past the ids
kept. The new file replaces the damaged one with one rename, and the damaged file is kept as
``medrag.duckdb.damaged-<time>``. When nothing reads at all, the new database is empty and the report says
so, table by table.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import duckdb

from medrag.backup import (
    ensure_unused,
    fsync_file,
    ordered_tables,
    read_database,
    schema_version_of,
    set_aside,
    sql_text,
    tables_of,
)
from medrag.config import Settings
from medrag.errors import StoreError, StoreLockedError
from medrag.fsutil import fsync_dir
from medrag.store import schema
from medrag.store.connection import forget_file
from medrag.store.health import is_damage, is_lock_error

#: Rows copied per slice when a table cannot be copied whole (DuckDB's vector size: what one read touches).
SLICE_ROWS = 2048


@dataclass
class RepairReport:
    """What :func:`repair` found and kept, per table."""

    damaged: bool = True
    #: table → (rows the damaged file says it had, or None when unknown; rows copied into the new file)
    tables: dict[str, tuple[int | None, int]] = field(default_factory=dict)
    #: where the damaged file was kept
    aside: Path | None = None
    #: what was done to read it ("" when it opened as it was)
    patched: str = ""
    #: rows dropped after the copy because what they belong to was lost (embeddings, sources of lost cases)
    orphans: dict[str, int] = field(default_factory=dict)
    #: table → (rows kept without some of their columns, those columns) where a block of a column was lost
    partial: dict[str, tuple[int, list[str]]] = field(default_factory=dict)

    @property
    def lost(self) -> dict[str, int]:
        """Rows lost per table (where the damaged file still said how many it had)."""
        return {t: found - kept for t, (found, kept) in self.tables.items() if found is not None and found > kept}


def _patched_copies(db: Path, work: Path) -> Iterator[tuple[Path, str]]:
    """The damaged file as it is, then copies with a damaged header replaced (DuckDB keeps two of them)."""
    yield db, ""
    data = db.read_bytes()
    if len(data) < 3 * 4096:
        return
    fresh = work / "fresh.duckdb"
    duckdb.connect(str(fresh)).close()
    variants = {
        "the main header was rebuilt": fresh.read_bytes()[:4096] + data[4096:],
        "database header 1 was replaced by header 2": data[:4096] + data[8192:12288] + data[8192:],
        "database header 2 was replaced by header 1": data[:8192] + data[4096:8192] + data[12288:],
    }
    for n, (what, payload) in enumerate(variants.items()):
        candidate = work / f"patched{n}.duckdb"
        candidate.write_bytes(payload)
        wal = db.with_name(db.name + ".wal")
        if wal.exists():
            shutil.copyfile(wal, candidate.with_name(candidate.name + ".wal"))
        yield candidate, what


def _scalar(con: duckdb.DuckDBPyConnection, sql: str) -> int:
    (value,) = con.execute(sql).fetchone() or (0,)
    return int(value or 0)


def _readable(con: duckdb.DuckDBPyConnection, table: str, column: str, window: list[int]) -> bool:
    try:
        con.execute(f'SELECT min(hash("{column}")) FROM damaged.{table} WHERE rowid >= ? AND rowid < ?', window)
        return True
    except duckdb.Error:
        return False


def _columns(con: duckdb.DuckDBPyConnection, catalog: str, table: str) -> list[tuple[str, bool]]:
    """(name, required) of a table's columns in order; required: NOT NULL (primary keys included)."""
    rows = con.execute(
        "SELECT column_name, NOT is_nullable FROM duckdb_columns() "
        "WHERE database_name = coalesce(?, current_database()) AND table_name = ? ORDER BY column_index",
        [catalog or None, table],
    ).fetchall()
    return [(str(r[0]), bool(r[1])) for r in rows]


def _copy_table(con: duckdb.DuckDBPyConnection, table: str, report: RepairReport) -> tuple[int | None, int]:
    """Copy ``damaged.table`` into ``main.table``: whole, else slice by slice; returns (rows found, rows copied)."""
    old = {name for name, _ in _columns(con, "damaged", table)}
    new = [(name, required) for name, required in _columns(con, "", table) if name in old]
    names = [name for name, _ in new]
    found: int | None
    try:
        found = _scalar(con, f"SELECT count(*) FROM damaged.{table}")  # answered from metadata: survives most damage
    except duckdb.Error:
        found = None

    def insert(columns: list[str], where: str = "", params: list[int] | None = None) -> None:
        listed = ", ".join(f'"{c}"' for c in columns)
        con.execute(f"INSERT INTO main.{table} ({listed}) SELECT {listed} FROM damaged.{table}{where}", params or [])

    try:
        insert(names)
    except duckdb.Error:
        try:
            end = _scalar(con, f"SELECT coalesce(max(rowid) + 1, 0) FROM damaged.{table}")
        except duckdb.Error:
            end = found or 0
        partial, missing = 0, set()
        for start in range(0, end, SLICE_ROWS):
            window = [start, start + SLICE_ROWS]
            try:
                insert(names, " WHERE rowid >= ? AND rowid < ?", window)
                continue
            except duckdb.Error:
                pass
            readable = [(name, required) for name, required in new if _readable(con, table, name, window)]
            if len(readable) == len(new) or any(req and (name, req) not in readable for name, req in new):
                continue  # a required column is unreadable here: these rows are lost
            before = _scalar(con, f"SELECT count(*) FROM main.{table}")
            try:
                insert([name for name, _ in readable], " WHERE rowid >= ? AND rowid < ?", window)
            except duckdb.Error:
                continue
            partial += _scalar(con, f"SELECT count(*) FROM main.{table}") - before
            missing |= {name for name, _ in new} - {name for name, _ in readable}
        if partial:
            report.partial[table] = (partial, sorted(missing))
    return found, _scalar(con, f"SELECT count(*) FROM main.{table}")


def _advance_sequences(con: duckdb.DuckDBPyConnection) -> None:
    """Move each id sequence past the largest id copied, so new rows never reuse an id."""
    rows = con.execute(
        "SELECT table_name, column_name, column_default FROM duckdb_columns() "
        "WHERE database_name = current_database() AND column_default LIKE 'nextval(%'"
    ).fetchall()
    for table, column, default in rows:
        sequence = default.split("'")[1]
        top = _scalar(con, f'SELECT coalesce(max("{column}"), 0) FROM main.{table}')
        if top:
            con.execute(f"SELECT max(nextval('{sequence}')) FROM range(?)", [int(top)])


def _salvage(source: Path | None, target: Path, root: Path, report: RepairReport) -> None:
    """A new database at ``target`` with what reads of ``source`` (None: an empty one)."""
    con = duckdb.connect(str(target))
    try:
        for statement in schema.CREATE:
            con.execute(statement)
        con.execute("INSERT INTO meta VALUES ('schema_version', ?)", [str(schema.SCHEMA_VERSION)])
        if source is None:
            con.execute("CHECKPOINT")
            return
        con.execute(f"ATTACH {sql_text(source)} AS damaged (READ_ONLY)")
        try:
            found_version = schema_version_of(con, "damaged")
        except duckdb.Error:
            found_version = schema.SCHEMA_VERSION
        (current,) = con.execute("SELECT current_database()").fetchone() or ("",)
        present = tables_of(con, "damaged") & tables_of(con, str(current))
        try:
            con.execute("INSERT INTO meta SELECT * FROM damaged.meta WHERE key <> 'schema_version'")
        except duckdb.Error:
            pass  # nothing but the version lives there today
        for table in ordered_tables(present - {"meta"}):
            report.tables[table] = _copy_table(con, table, report)
        con.execute("DETACH damaged")
        # What lost its case goes too: a lost case's source fingerprint would stop a re-import bringing it back.
        for table in ("embeddings", "sources"):
            orphaned = f"FROM {table} WHERE case_id NOT IN (SELECT case_id FROM cases)"
            (gone,) = con.execute(f"SELECT count(*) {orphaned}").fetchone() or (0,)
            if gone:
                con.execute(f"DELETE {orphaned}")
                report.orphans[table] = int(gone)
        _advance_sequences(con)
        for _version, steps in schema.migration_steps(min(found_version, schema.SCHEMA_VERSION), schema.SCHEMA_VERSION):
            for step in steps:
                if not isinstance(step, str):  # the new file has the new shape: only data steps apply
                    step(con, root)
        con.execute("CHECKPOINT")
    finally:
        con.close()


def repair(settings: Settings, *, force: bool = False) -> RepairReport:
    """Copy what is readable of a damaged database into a new one and swap it in (the damaged file is kept)."""
    if settings.database_url:
        raise StoreError(
            "`medrag repair` salvages the data folder's DuckDB file, and this MedRAG uses PostgreSQL "
            "(MEDRAG_DATABASE_URL), which recovers by itself after a crash; if rows are lost, put a backup back "
            "with `medrag restore FILE.pgdump`."
        )
    db = settings.db_path
    if not db.is_file():
        raise StoreError(f"There is no database at {db} to repair; check --data-dir.")
    report = RepairReport()
    forget_file(db)
    try:
        read_database(db)
        if not force:
            report.damaged = False
            return report
    except duckdb.Error as exc:
        if is_lock_error(exc):
            raise StoreLockedError(f"{db} is open in another MedRAG process; stop it, then run repair again.") from exc
        if not is_damage(exc):
            raise StoreError(f"{db} cannot be opened ({exc}); it was left as it is.") from exc
    tmp = db.with_name(f".{db.name}.repair.{os.getpid()}.tmp")
    try:
        tmp.unlink(missing_ok=True)
        with tempfile.TemporaryDirectory(prefix="medrag-repair-") as work:
            for source, what in _patched_copies(db, Path(work)):
                try:
                    _salvage(source, tmp, settings.data_dir, report)
                    report.patched = what
                    break
                except duckdb.Error:
                    report.tables.clear()
                    report.orphans.clear()
                    tmp.unlink(missing_ok=True)
            else:  # nothing opens: start from an empty database, saying what was lost
                _salvage(None, tmp, settings.data_dir, report)
                report.patched = "nothing could be read: a new, empty database was made"
        fsync_file(tmp)
        ensure_unused(db)
        report.aside = set_aside(db, "damaged")
        os.replace(tmp, db)
        fsync_dir(db.parent)
    except OSError as exc:
        raise StoreError(
            f"Could not write the repaired database into {db.parent}: {exc}. Nothing was changed."
        ) from exc
    finally:
        tmp.unlink(missing_ok=True)
    forget_file(db)
    return report


__all__ = ["SLICE_ROWS", "RepairReport", "repair"]
