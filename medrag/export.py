"""Exporting the analysis history to CSV or Parquet: safe targets, atomic writes, no formula injection.

Used alike by ``medrag history --export`` (:func:`export_history`) and the app's Export buttons
(:func:`history_export_bytes`, :func:`history_csv_bytes`).

- The target is checked before anything is written (:func:`check_target`): a path that resolves, following
  symlinks, into the data folder or onto the database is refused (an export once replaced the live
  database); an existing file only with ``force``; a missing folder or a folder as target get a message.
- The file is written through :func:`medrag.fsutil.atomic_writer`: a full disk or a kill leaves the old file
  (or no file), never a 0-byte or half-written one.
- CSV cells that a spreadsheet would run as a formula (starting with ``= + - @``, tab or CR) get a leading
  ``'`` (OWASP "CSV injection"). Parquet keeps values as they are: it is not opened as a spreadsheet.
- Rows are read from DuckDB in batches and written as they come, so a large history is never held whole.
"""

from __future__ import annotations

import errno
import io
import os
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO, Literal

import duckdb
import pandas as pd

from medrag.errors import InputError, StoreError
from medrag.fsutil import atomic_writer
from medrag.store.analyses import history_where

if TYPE_CHECKING:
    import pyarrow as pa

    from medrag.store.factory import AnyStore

Format = Literal["csv", "parquet"]
FORMATS: tuple[str, ...] = ("csv", "parquet")
#: A cell starting with one of these is a formula (or a DDE call) to Excel, LibreOffice and Sheets.
FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r")
#: Rows read and written per batch.
BATCH_ROWS = 2_000


@dataclass(frozen=True)
class ExportResult:
    """What an export wrote."""

    path: Path
    rows: int
    format: str
    bytes: int


# ----------------------------------------------------------------------------- cells


def neutralise_cell(value: Any) -> Any:
    """``value`` with a leading ``'`` if it is text a spreadsheet would run as a formula; else unchanged."""
    if isinstance(value, str) and value.startswith(FORMULA_PREFIXES):
        return "'" + value
    return value


def neutralise_frame(frame: pd.DataFrame) -> pd.DataFrame:
    """A copy of ``frame`` whose text cells are :func:`neutralise_cell`-ed (numbers and dates unchanged)."""
    out = frame.copy()
    for column in out.columns:
        series = out[column]
        if series.dtype == object or pd.api.types.is_string_dtype(series.dtype):
            out[column] = series.map(neutralise_cell, na_action="ignore")
    return out


def history_csv_bytes(frame: pd.DataFrame) -> bytes:
    """``frame`` (history rows) as UTF-8 CSV bytes with formula cells neutralised: what a download serves."""
    return neutralise_frame(frame).to_csv(index=False).encode("utf-8")


# ----------------------------------------------------------------------------- targets


def export_format(target: Path, fmt: str | None = None) -> Format:
    """The format to write: ``fmt`` if given, else from the suffix (``.parquet``/``.pq`` → parquet, else CSV)."""
    chosen = (fmt or ("parquet" if Path(target).suffix.lower() in (".parquet", ".pq") else "csv")).lower()
    if chosen not in FORMATS:
        raise InputError(f"Unknown export format {fmt!r}; use csv or parquet.")
    return "parquet" if chosen == "parquet" else "csv"


def _inside(path: Path, folder: Path) -> bool:
    return path == folder or folder in path.parents


def check_target(target: Path | str, *, protected: Sequence[Path | str] = (), force: bool = False) -> Path:
    """The real path to write ``target`` to, or an :class:`~medrag.errors.InputError` saying why not.

    ``protected`` are folders (the data folder) and files (the database) an export must never write into
    or over; ``target`` is resolved first, following symlinks, so a link pointing into them is refused too.
    """
    given = Path(target).expanduser()
    try:
        real = given.resolve()
    except (OSError, RuntimeError) as exc:  # a symlink loop
        raise InputError(f"Cannot export to {given}: {exc}. Give another file name.") from None
    for item in protected:
        guarded = Path(item).expanduser().resolve()
        if _inside(real, guarded):
            where = "the data folder" if guarded.is_dir() else "the database"
            raise InputError(
                f"Refusing to export to {given}: it is inside {where} ({guarded}), and writing there could "
                "destroy the library or the history. Export to a file outside it, e.g. ~/medrag-history.csv."
            )
    if real.is_dir():
        raise InputError(f"{given} is a folder; give a file name inside it, e.g. {given / 'medrag-history.csv'}.")
    if not real.parent.is_dir():
        raise InputError(f"The folder {given.parent} does not exist; create it first or export somewhere else.")
    if real.exists() and not real.is_file():
        raise InputError(f"{given} exists and is not a regular file; export to a new file name.")
    if (real.exists() or given.is_symlink()) and not force:
        raise InputError(f"{given} already exists; pass --force to replace it, or choose another name.")
    return real


# ----------------------------------------------------------------------------- writing


#: PostgreSQL type oids of the history's columns as Arrow types (anything else is exported as text)
_PG_ARROW = {20: "int64", 23: "int64", 701: "float64", 16: "bool", 1114: "timestamp[us]", 1184: "timestamp[us, tz=UTC]"}


@contextmanager
def history_reader(store: AnyStore, search: str | None = None, limit: int | None = None
                   ) -> Iterator[pa.RecordBatchReader]:
    """Every history row matching ``search`` (newest first, the newest ``limit`` if given; all columns, JSON
    as text) as an Arrow batch reader filled as it is read (the store is held open meanwhile): DuckDB's own
    reader, or PostgreSQL's rows from a server-side cursor."""
    from medrag.store import Store

    if not isinstance(store, Store):
        with store.history_batches(search, limit, BATCH_ROWS) as (columns, batches):
            yield _pg_reader(columns, batches)
        return
    where, params = history_where(search)
    sql = f"SELECT * FROM analyses{where} ORDER BY id DESC"
    if limit is not None:
        sql += " LIMIT ?"
        params.append(max(0, int(limit)))
    with store.cursor() as cur:
        yield cur.sql(sql, params=params).to_arrow_reader(BATCH_ROWS)


def _pg_reader(columns: list[tuple[str, int]], batches: Iterator[list[tuple[Any, ...]]]) -> pa.RecordBatchReader:
    import pyarrow as pa

    def arrow_type(oid: int) -> pa.DataType:
        name = _PG_ARROW.get(oid, "string")
        return pa.timestamp("us", tz="UTC") if name.endswith("tz=UTC]") else (
            pa.timestamp("us") if name.startswith("timestamp") else pa.type_for_alias(name))

    schema = pa.schema([(name, arrow_type(oid)) for name, oid in columns])
    text = {i for i, (_, oid) in enumerate(columns) if oid not in _PG_ARROW}

    def record_batches() -> Iterator[pa.RecordBatch]:
        for rows in batches:
            arrays = [[(None if v is None else str(v)) if i in text else v for v in column]
                      for i, column in enumerate(zip(*rows, strict=True))]
            yield pa.RecordBatch.from_arrays([pa.array(a, type=f.type) for a, f in zip(arrays, schema, strict=True)],
                                             schema=schema)

    return pa.RecordBatchReader.from_batches(schema, record_batches())


def write_history(handle: BinaryIO, reader: pa.RecordBatchReader, fmt: Format) -> int:
    """Write the batches of ``reader`` to ``handle`` as ``fmt`` (CSV cells neutralised); returns the row count."""
    rows = 0
    if fmt == "parquet":
        import pyarrow.parquet as pq

        with pq.ParquetWriter(handle, reader.schema) as writer:
            for batch in reader:
                writer.write_batch(batch)
                rows += batch.num_rows
        return rows
    header = True
    for batch in reader:
        frame = batch.to_pandas()
        handle.write(neutralise_frame(frame).to_csv(index=False, header=header).encode("utf-8"))
        header = False
        rows += len(frame)
    if header:  # no rows: the header line alone
        handle.write(pd.DataFrame(columns=reader.schema.names).to_csv(index=False).encode("utf-8"))
    return rows


def export_history(
    store: AnyStore,
    target: Path | str,
    fmt: str | None = None,
    limit: int | None = None,
    force: bool = False,
    *,
    search: str | None = None,
    protected: Sequence[Path | str] = (),
) -> ExportResult:
    """Write the history (every row, or the newest ``limit``; only rows matching ``search``) to ``target``.

    ``protected`` is what the target must not resolve into: pass the data folder (the store's own file is
    always protected). Raises :class:`~medrag.errors.InputError` for a refused target or a failed write
    (full disk, permission); in every failure case ``target`` is as it was before.
    """
    from medrag.store import Store

    guarded = [*protected]
    if isinstance(store, Store) and not store.in_memory:
        db = Path(store.path)
        guarded += [db, db.with_name(db.name + ".wal")]
    real = check_target(target, protected=guarded, force=force)
    chosen = export_format(Path(target), fmt)  # the name the user gave decides, not a link's target
    kept = " and the old file is unchanged" if real.exists() else ""
    try:
        with atomic_writer(real) as handle, history_reader(store, search, limit) as reader:
            rows = write_history(handle, reader, chosen)
    except OSError as exc:
        full = exc.errno in (errno.ENOSPC, errno.EDQUOT)
        reason = "the disk is full" if full else (exc.strerror or str(exc))
        advice = "free some space or export elsewhere" if full else "check the folder's permissions or export elsewhere"
        raise InputError(f"Could not write {target}: {reason}. Nothing was written{kept}; {advice}.") from None
    except duckdb.Error as exc:
        raise StoreError(
            f"Could not read the history from {getattr(store, 'path', 'the database')} ({type(exc).__name__}); "
            f"nothing was written{kept}. Run `medrag history` to check the database."
        ) from None
    return ExportResult(path=real, rows=rows, format=chosen, bytes=os.path.getsize(real))


def history_export_bytes(
    store: AnyStore, fmt: str = "csv", *, search: str | None = None, limit: int | None = None
) -> bytes:
    """The history as CSV (formula cells neutralised) or Parquet bytes, for a download button.

    Builds the export only when called: a page should call it when the user asks for the file.
    """
    chosen = export_format(Path(f"export.{fmt}"), fmt)
    buffer = io.BytesIO()
    with history_reader(store, search, limit) as reader:
        write_history(buffer, reader, chosen)
    return buffer.getvalue()


__all__ = [
    "BATCH_ROWS", "FORMATS", "FORMULA_PREFIXES", "ExportResult", "check_target", "export_format", "export_history",
    "history_csv_bytes", "history_export_bytes", "history_reader", "neutralise_cell", "neutralise_frame",
    "write_history",
]
