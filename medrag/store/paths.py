"""File paths in the database, stored relative to the data folder so that the folder moves as one.

A path under the data folder (thumbnails, uploads, demo images, parquet originals) is stored relative to it,
in POSIX form (``thumbs/ab/ab12….jpg``); a library image outside it (the user's own folder) stays absolute.
Reads turn relative values back into absolute paths under the data folder the database is in *now*, so
callers only ever see absolute paths. The database knows its data folder: it is the folder of the file.

:func:`relativise_stored_paths` is the schema-2 migration: it rewrites the absolute paths an older database
holds, including those of a data folder that was already moved before the upgrade.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterable, Sequence
from pathlib import Path, PurePosixPath, PureWindowsPath
from typing import Any

import duckdb
import pandas as pd

#: Matches a stored value that is absolute (POSIX, Windows drive or UNC); anything else is data-folder relative.
_ABSOLUTE = re.compile(r"^(?:/|\\\\|[A-Za-z]:[\\/])")
#: The path-valued columns of each table (``sources.source_key`` is handled apart: it is the primary key).
PATH_COLUMNS: dict[str, tuple[str, ...]] = {
    "cases": ("image_path", "thumb_path"),
    "analyses": ("thumb_path", "upload_path"),
}
#: The path fields of a neighbour saved in an analysis' ``neighbours`` JSON.
NEIGHBOUR_PATHS = ("thumb_path", "image_path")
#: The data folder's content-addressed sub-folders: ``<root>/<name>/<hash[:2]>/<hash>.<ext>``.
_CONTENT_FOLDERS = ("thumbs", "uploads", "images")


def is_absolute(value: str) -> bool:
    """Whether a stored path value is absolute (as opposed to relative to the data folder)."""
    return bool(_ABSOLUTE.match(value)) or PurePosixPath(value).is_absolute() or bool(PureWindowsPath(value).anchor)


def to_stored(root: Path | None, value: str) -> str:
    """The value to store for the path ``value``: relative (POSIX) when it lies under ``root``, else absolute."""
    if not value or root is None:
        return value
    # String work, not pathlib: an import stores three paths a case, and pathlib's parsing was most of
    # the main process's own time in an import (bench_ingest profile).
    absolute = os.path.normpath(os.path.abspath(value))
    prefix = os.path.normpath(os.path.abspath(root))
    if absolute == prefix:
        return "."
    if absolute.startswith(prefix.rstrip(os.sep) + os.sep):
        return absolute[len(prefix.rstrip(os.sep)) + 1:].replace(os.sep, "/")
    return absolute


def to_absolute(root: Path | None, value: str | None) -> str:
    """The absolute path a stored value means in the data folder ``root`` ("" stays "")."""
    if not value:
        return ""
    if root is None or is_absolute(value):
        return value
    return str(root.joinpath(*PurePosixPath(value).parts))


def resolve_frame(frame: pd.DataFrame, root: Path | None, columns: Iterable[str]) -> pd.DataFrame:
    """``frame`` with the stored path ``columns`` (those it has) made absolute, vectorised."""
    if root is None or frame.empty:
        return frame
    prefix = str(root) + os.sep
    for column in columns:
        if column not in frame.columns:
            continue
        values = frame[column].fillna("").astype(str)
        relative = (values != "") & ~values.str.match(_ABSOLUTE.pattern)
        if relative.any():
            tails = values[relative] if os.sep == "/" else values[relative].str.replace("/", os.sep, regex=False)
            frame[column] = values.where(~relative, prefix + tails)
    return frame


def neighbours_stored(root: Path | None, neighbours: Sequence[Any]) -> list[Any]:
    """Saved-neighbour dicts with their paths in stored form (other items are left as they are)."""
    return [_map_paths(n, lambda v: to_stored(root, v)) for n in neighbours]


def neighbours_resolved(root: Path | None, neighbours: Sequence[Any]) -> list[Any]:
    """Saved-neighbour dicts with their stored paths made absolute."""
    return [_map_paths(n, lambda v: to_absolute(root, v)) for n in neighbours]


def _map_paths(item: Any, convert: Any) -> Any:
    if not isinstance(item, dict):
        return item
    return {k: (convert(v) if k in NEIGHBOUR_PATHS and isinstance(v, str) else v) for k, v in item.items()}


# --------------------------------------------------------------------------- migration to schema 2
def _old_roots(values: Iterable[str]) -> set[Path]:
    """Data folders that absolute content-addressed paths were written under (``<root>/thumbs/ab/ab….jpg``)."""
    roots: set[Path] = set()
    for value in values:
        if value and is_absolute(value):
            path = Path(value)
            if len(path.parents) > 2 and path.parents[1].name in _CONTENT_FOLDERS and len(path.parent.name) == 2:
                roots.add(path.parents[2])
    return roots


class _Relativiser:
    """Maps an absolute path of this or an earlier data folder to its stored (relative) form."""

    def __init__(self, root: Path, old_roots: set[Path]) -> None:
        self.root = root
        self.roots = sorted({root, *old_roots}, key=lambda p: len(str(p)), reverse=True)
        self.marker = f"/{root.name}/"

    def __call__(self, value: str) -> str:
        if not value or not is_absolute(value):
            return value
        path = Path(os.path.normpath(value))
        for old in self.roots:
            if path.is_relative_to(old):
                return path.relative_to(old).as_posix()
        # A folder moved under the same name: the tail after "/<name>/" that exists here now is ours.
        posix = path.as_posix()
        at = posix.rfind(self.marker)
        if at >= 0:
            tail = posix[at + len(self.marker):]
            if tail and (self.root / tail).exists():
                return tail
        return value


def relativise_stored_paths(cur: duckdb.DuckDBPyConnection, root: Path | None) -> None:
    """Schema 2: rewrite absolute paths under the data folder (now or when they were written) as relative ones."""
    if root is None:
        return
    seen: list[str] = []
    for table, columns in PATH_COLUMNS.items():
        for column in columns:
            query = f"SELECT DISTINCT {column} FROM {table} WHERE {column} <> ''"
            seen += [r[0] for r in cur.execute(query).fetchall()]
    convert = _Relativiser(root, _old_roots(seen))
    cases = cur.execute("SELECT case_id, image_path, thumb_path FROM cases").fetchall()
    changed = [(cid, convert(img), convert(th)) for cid, img, th in cases if (convert(img), convert(th)) != (img, th)]
    if changed:
        cur.register("moved_cases", pd.DataFrame(changed, columns=["case_id", "image_path", "thumb_path"]))
        cur.execute(
            "UPDATE cases SET image_path = m.image_path, thumb_path = m.thumb_path FROM moved_cases m "
            "WHERE cases.case_id = m.case_id"
        )
        cur.unregister("moved_cases")
    rows = cur.execute("SELECT id, thumb_path, upload_path, neighbours FROM analyses").fetchall()
    updates = []
    for analysis_id, thumb, upload, neighbours_json in rows:
        try:
            neighbours = json.loads(neighbours_json or "[]")
        except ValueError:
            neighbours = None
        new_json = neighbours_json
        if isinstance(neighbours, list):
            converted = [_map_paths(n, convert) for n in neighbours]
            if converted != neighbours:
                new_json = json.dumps(converted, default=str)
        new = (convert(thumb or ""), convert(upload or ""), new_json)
        if new != (thumb or "", upload or "", neighbours_json):
            updates.append((analysis_id, *new))
    if updates:
        cur.register("moved_analyses", pd.DataFrame(updates, columns=["id", "thumb_path", "upload_path", "neighbours"]))
        cur.execute(
            "UPDATE analyses SET thumb_path = m.thumb_path, upload_path = m.upload_path, neighbours = m.neighbours "
            "FROM moved_analyses m WHERE analyses.id = m.id"
        )
        cur.unregister("moved_analyses")
    sources = cur.execute("SELECT source_key, size, mtime_ns, case_id FROM sources").fetchall()
    moved = [(convert(key), size, mtime, cid) for key, size, mtime, cid in sources if convert(key) != key]
    if moved:
        old_keys = [key for key, *_ in sources if convert(key) != key]
        cur.execute("DELETE FROM sources WHERE list_contains(?, source_key)", [old_keys])
        cur.register("moved_sources", pd.DataFrame(moved, columns=["source_key", "size", "mtime_ns", "case_id"]))
        cur.execute("INSERT OR REPLACE INTO sources SELECT source_key, size, mtime_ns, case_id FROM moved_sources")
        cur.unregister("moved_sources")


__all__ = [
    "PATH_COLUMNS", "is_absolute", "neighbours_resolved", "neighbours_stored", "relativise_stored_paths",
    "resolve_frame", "to_absolute", "to_stored",
]
