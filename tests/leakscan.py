"""Helpers for the reliability tests: find a string anywhere MedRAG writes, fingerprint what is stored."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path


def files_containing(folder: Path, needles: list[str]) -> dict[str, list[str]]:
    """``{needle: [files whose bytes contain it (UTF-8 or UTF-16)]}`` over every file under ``folder``."""
    hits: dict[str, list[str]] = {}
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        data = path.read_bytes()
        for needle in needles:
            if needle.encode("utf-8") in data or needle.encode("utf-16-le") in data:
                hits.setdefault(needle, []).append(str(path))
    return hits


#: the tables MedRAG made (DuckDB's ``main`` schema, PostgreSQL's ``public``), not the engine's own catalog
USER_TABLES = ("SELECT table_name FROM information_schema.tables "
               "WHERE table_schema NOT IN ('pg_catalog', 'information_schema') ORDER BY 1")


def portable_sql(store: object, sql: str) -> str:
    """``?`` placeholders as the store's driver wants them (psycopg: ``%s``)."""
    if type(store).__name__ == "PgStore":
        from medrag.store.pg.connection import pg_sql

        return pg_sql(sql)
    return sql


def text_column_hits(store: object, needles: list[str]) -> list[str]:
    """``table.column: needle`` for every column (cast to text) of every table holding a needle (ILIKE)."""
    hits = []
    with store.cursor() as cur:  # type: ignore[attr-defined]
        tables = [r[0] for r in cur.execute(USER_TABLES).fetchall()]
        for table in tables:
            columns = [r[0] for r in cur.execute(portable_sql(store,
                "SELECT column_name FROM information_schema.columns WHERE table_name = ? "
                "AND table_schema NOT IN ('pg_catalog', 'information_schema')"), [table]).fetchall()]
            for column in columns:
                for needle in needles:
                    query = f'SELECT count(*) FROM "{table}" WHERE CAST("{column}" AS VARCHAR) ILIKE ?'
                    n = cur.execute(portable_sql(store, query), [f"%{needle}%"]).fetchone()[0]
                    if n:
                        hits.append(f"{table}.{column}: {needle}")
    return hits


def table_digests(store: object) -> dict[str, tuple[int, str]]:
    """``{table: (rows, sha256 of the rows sorted)}`` for every table, read through a Store's cursor."""
    out = {}
    with store.cursor() as cur:  # type: ignore[attr-defined]
        tables = [r[0] for r in cur.execute(USER_TABLES).fetchall()]
        for table in tables:
            rows = cur.execute(f'SELECT * FROM "{table}"').fetchall()
            text = sorted(json.dumps(list(r), default=str) for r in rows)
            out[table] = (len(rows), hashlib.sha256("\n".join(text).encode()).hexdigest())
    return out


def rows_digest(store: object, sql: str, params: list[object] | None = None) -> str:
    """sha256 of the (sorted) rows a query (``?`` placeholders) returns."""
    with store.cursor() as cur:  # type: ignore[attr-defined]
        rows = cur.execute(portable_sql(store, sql), params or []).fetchall()
    return hashlib.sha256("\n".join(sorted(json.dumps(list(r), default=str) for r in rows)).encode()).hexdigest()


def cases_digest(store: object, case_ids: list[str]) -> str:
    """sha256 of the rows of these cases."""
    marks = ", ".join("?" for _ in case_ids) or "NULL"
    return rows_digest(store, f"SELECT * FROM cases WHERE case_id IN ({marks})", list(case_ids))
