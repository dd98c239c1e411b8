"""Is the database file sound? Classifying DuckDB's errors, the cheap check at open, the full check of a copy.

DuckDB reports damage in several ways (DuckDB 2.0, measured on a 30-case library):

- a zeroed or overwritten main header: ``IOException`` "... exists, but it is not a valid DuckDB database file!"
  at connect;
- a damaged database header or any damaged data/metadata block: plain ``duckdb.Error`` "Corrupt database
  file: computed checksum … does not match stored checksum …", at connect (headers, catalog) or only when a
  query first reads the block;
- a truncated file: nothing at connect (``count(*)`` still answers from metadata), then ``IOException``
  "Could not read enough bytes from file …" when a query reaches past the end; a write then extends the file
  and buries the damage. :func:`check_size` catches truncation at open, in O(1): the file must hold its
  three 4 KiB headers plus every block the database says it has.

A full disk shows as ``TransactionException`` "Failed to commit: Could not write file "….wal": No space left
on device" (or ``IOException`` / ``FatalException`` with the same words during a checkpoint).
"""

from __future__ import annotations

import errno
import os
from pathlib import Path

import duckdb

from medrag.errors import DiskFullError, StoreDamagedError

#: Words of DuckDB error messages that mean the file itself is damaged.
_DAMAGE_MARKERS = (
    "corrupt database file",
    "not a valid duckdb database file",
    "could not read enough bytes",
    "checksum",
)
#: DuckDB's file layout: a main header and two alternating database headers of 4 KiB each, then blocks.
HEADERS_BYTES = 3 * 4096


def is_damage(exc: BaseException) -> bool:
    """Whether a DuckDB error says the database file is damaged."""
    text = str(exc).lower()
    return isinstance(exc, duckdb.Error) and any(marker in text for marker in _DAMAGE_MARKERS)


def is_lock_error(exc: BaseException) -> bool:
    """Whether a DuckDB error says another process holds the file."""
    text = str(exc).lower()
    return "lock" in text and ("conflicting" in text or "could not set" in text)


def is_disk_full(exc: BaseException) -> bool:
    """Whether an error (DuckDB's or the OS's) means the disk is full."""
    if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return True
    # DuckDB's errors, and faiss' RuntimeError around a failed write, carry the OS's words only.
    text = str(exc).lower()
    return "no space left on device" in text or "[errno 28]" in text


def damaged_error(path: str | Path, detail: object) -> StoreDamagedError:
    """The one message for a damaged database: what happened and the two ways out."""
    first = str(detail).strip().splitlines()[0][:300] if str(detail).strip() else "unreadable"
    return StoreDamagedError(
        f"The database {path} is damaged ({first}). Nothing more is written to it. To recover: "
        f"`medrag restore BACKUP` puts back a backup made by `medrag backup` (in {Path(path).parent / 'backups'}), "
        f"or `medrag repair` copies what is still readable into a new database and keeps the damaged file "
        f"aside as {Path(path).name}.damaged-<time>."
    )


def disk_full_error(path: str | Path) -> DiskFullError:
    """The one message for a full disk."""
    return DiskFullError(
        f"The disk holding {Path(path).parent} is full: the last change was not written and nothing was lost. "
        "Free some space and run the command again."
    )


def check_size(con: duckdb.DuckDBPyConnection, path: str) -> None:
    """Raise :class:`StoreDamagedError` when the file is shorter than the blocks its tables are stored in.

    Usually one pragma: the file holds every block the database counts. Only when it is shorter (free blocks
    at the end may have been cut off by a checkpoint, or a WAL replayed at open made blocks that live only
    in memory) are the blocks that stored segments point at checked (a few ms per table).
    """
    row = con.execute("SELECT block_size, total_blocks FROM pragma_database_size() LIMIT 1").fetchone()
    if row is None or row[0] is None:
        return
    block_size, counted = int(row[0]), int(row[1])
    actual = os.path.getsize(path)
    if actual >= HEADERS_BYTES + block_size * counted:
        return
    needed = 0
    tables = con.execute("SELECT table_name FROM duckdb_tables() WHERE database_name = current_database()")
    for (table,) in tables.fetchall():
        (top,) = con.execute(
            "SELECT max(greatest(block_id, coalesce(list_max(additional_block_ids), -1))) "
            "FROM pragma_storage_info(?) WHERE persistent", [table],
        ).fetchone() or (None,)
        needed = max(needed, int(top) + 1 if top is not None else 0)
    expected = HEADERS_BYTES + block_size * needed
    if actual < expected:
        raise damaged_error(path, f"the file is {actual:,} bytes but its blocks need {expected:,}: it was cut short")


def quoted(name: str) -> str:
    """An SQL identifier in double quotes (a database's name is its file's stem, which may hold ``-`` or ``.``)."""
    return '"' + name.replace('"', '""') + '"'


def table_counts(con: duckdb.DuckDBPyConnection, tables: tuple[str, ...], catalog: str = "") -> dict[str, int]:
    """Rows per table, reading every column of every row (so a damaged block anywhere raises)."""
    prefix = f"{quoted(catalog)}." if catalog else ""
    present = {r[0] for r in con.execute(
        "SELECT table_name FROM duckdb_tables() WHERE database_name = coalesce(nullif(?, ''), current_database())",
        [catalog],
    ).fetchall()}
    counts: dict[str, int] = {}
    for table in tables:
        if table not in present:
            continue
        # hash() of the whole row makes DuckDB read every column's blocks (count(*) reads none).
        row = con.execute(f"SELECT count(*), min(hash(t)) FROM {prefix}{table} t").fetchone()
        counts[table] = int(row[0]) if row else 0
    return counts


__all__ = [
    "HEADERS_BYTES", "check_size", "damaged_error", "disk_full_error", "is_damage", "is_disk_full", "is_lock_error",
    "quoted", "table_counts",
]
