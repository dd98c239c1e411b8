"""Helpers for the reliability tests: find a string anywhere MedRAG writes, fingerprint what is stored."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import duckdb


def files_containing(folder: Path, needles: list[str]) -> dict[str, list[str]]:
    """``{needle: [files whose bytes contain it (UTF-8 or UTF-16)]}`` over every file under ``folder``."""
    hits: dict[str, list[str]] = {}
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        data = path.read_bytes()
        for needle in needles:
            if needle.encode("utf-8") in data or needle.encode("utf-16-le") in data:
                hits.setdefault(needle, []).append(str(path))
    return hits


def _connect(db_path: Path) -> duckdb.DuckDBPyConnection:
    return duckdb.connect(str(db_path), read_only=True)


def text_column_hits(db_path: Path, needles: list[str]) -> list[str]:
    """``table.column: needle`` for every column (cast to text) of every table holding a needle (ILIKE)."""
    hits = []
    con = _connect(db_path)
    try:
        tables = [r[0] for r in con.execute("SELECT table_name FROM information_schema.tables").fetchall()]
        for table in tables:
            columns = [r[0] for r in con.execute(
                "SELECT column_name FROM information_schema.columns WHERE table_name = ?", [table]).fetchall()]
            for column in columns:
                for needle in needles:
                    n = con.execute(
                        f'SELECT count(*) FROM "{table}" WHERE CAST("{column}" AS VARCHAR) ILIKE ?', [f"%{needle}%"]
                    ).fetchone()[0]
                    if n:
                        hits.append(f"{table}.{column}: {needle}")
    finally:
        con.close()
    return hits


def table_digests(store: object) -> dict[str, tuple[int, str]]:
    """``{table: (rows, sha256 of the rows sorted)}`` for every table, read through a Store's cursor."""
    out = {}
    with store.cursor() as cur:  # type: ignore[attr-defined]
        tables = [r[0] for r in cur.execute("SELECT table_name FROM information_schema.tables ORDER BY 1").fetchall()]
        for table in tables:
            rows = cur.execute(f'SELECT * FROM "{table}"').fetchall()
            text = sorted(json.dumps(list(r), default=str) for r in rows)
            out[table] = (len(rows), hashlib.sha256("\n".join(text).encode()).hexdigest())
    return out


def rows_digest(store: object, sql: str, params: list[object] | None = None) -> str:
    """sha256 of the (sorted) rows a query returns."""
    with store.cursor() as cur:  # type: ignore[attr-defined]
        rows = cur.execute(sql, params or []).fetchall()
    return hashlib.sha256("\n".join(sorted(json.dumps(list(r), default=str) for r in rows)).encode()).hexdigest()
