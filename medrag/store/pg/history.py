"""The analysis history and the web-result cache on PostgreSQL.

The same methods and return types as :class:`~medrag.store.analyses.AnalysisStore` and
:class:`~medrag.store.webcache.WebCacheStore`, built on their pieces: the history columns, sorts and
search (``history_where``, its ``?`` placeholders turned into psycopg's), the path rules of
:mod:`medrag.store.paths` and :meth:`Analysis.to_row` / :meth:`Analysis.from_row`.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import pandas as pd

from medrag.analysis import Analysis
from medrag.store.analyses import (
    _ANALYSIS_JSON,
    _JSON_OBJECTS,
    HISTORY_COLUMNS,
    HISTORY_DERIVED,
    HISTORY_SORTS,
    history_where,
)
from medrag.store.connection import utcnow
from medrag.store.paths import (
    PATH_COLUMNS,
    neighbours_resolved,
    neighbours_stored,
    resolve_frame,
    to_absolute,
    to_stored,
)
from medrag.store.pg.connection import PgDatabase, pg_sql
from medrag.store.pg.library import frame_of

#: :data:`~medrag.store.analyses.HISTORY_DERIVED` in PostgreSQL's JSON operators (the neighbours column is text).
PG_HISTORY_DERIVED: dict[str, str] = {
    "top_label": "(a.neighbours::jsonb -> 0 ->> 'label')",
    "top_score": (
        "(CASE WHEN jsonb_typeof(a.neighbours::jsonb -> 0 -> 'score') = 'number' "
        "THEN (a.neighbours::jsonb -> 0 ->> 'score')::double precision END)"
    ),
}
assert set(PG_HISTORY_DERIVED) == set(HISTORY_DERIVED)  # one list of derived columns for both stores


def _where(search: str | None, labels: Sequence[str] | None, backends: Sequence[str] | None) -> tuple[str, list[Any]]:
    where, params = history_where(search, labels, backends)
    return pg_sql(where), params


class PgHistory(PgDatabase):
    """Reads and writes ``analyses`` and ``web_cache``."""

    @contextmanager
    def history_batches(
        self, search: str | None = None, limit: int | None = None, batch_rows: int = 2048
    ) -> Iterator[tuple[list[tuple[str, int]], Iterator[list[tuple[Any, ...]]]]]:
        """Every history row matching ``search`` (newest first, the newest ``limit`` if given; every column as
        stored): ``(columns as (name, PostgreSQL type oid), batches of rows)``, read through a server-side
        cursor so a large history is never held in memory at once."""
        where, params = _where(search, None, None)
        sql = f"SELECT * FROM analyses{where} ORDER BY id DESC"
        if limit is not None:
            sql += " LIMIT %s"
            params.append(max(0, int(limit)))
        with self.pool.connection() as conn, conn.cursor(name="medrag_history_export") as cur:
            cur.execute(sql, params)
            first = cur.fetchmany(batch_rows)
            columns = [(d.name, int(d.type_code)) for d in (cur.description or ())]

            def batches() -> Iterator[list[tuple[Any, ...]]]:
                chunk = first
                while chunk:
                    yield chunk
                    chunk = cur.fetchmany(batch_rows)

            yield columns, batches()

    # ------------------------------------------------------------------ analyses
    def save_analysis(self, analysis: Analysis) -> int:
        """Append one analysis to the history; returns its id."""
        values = analysis.to_row()
        for key in PATH_COLUMNS["analyses"]:
            values[key] = to_stored(self.data_root, values[key])
        values["neighbours"] = neighbours_stored(self.data_root, values["neighbours"])
        for key in _ANALYSIS_JSON:
            values[key] = json.dumps(values[key], default=str)
        columns = ["created_at", *values]
        params = [utcnow(), *values.values()]
        with self.transaction() as cur:
            row = cur.execute(
                f"INSERT INTO analyses ({', '.join(columns)}) VALUES ({', '.join(['%s'] * len(columns))}) RETURNING id",
                params,
            ).fetchone()
        assert row is not None  # INSERT … RETURNING always yields the new row
        return int(row[0])

    def get_analysis(self, analysis_id: int) -> Analysis | None:
        """One saved analysis, exactly as it was shown, or None."""
        with self.cursor() as cur:
            cur.execute("SELECT * FROM analyses WHERE id = %s", [int(analysis_id)])
            frame = frame_of(cur)
        if frame.empty:
            return None
        row: dict[str, Any] = {str(k): v for k, v in frame.iloc[0].to_dict().items()}
        for key in _ANALYSIS_JSON:
            row[key] = json.loads(row[key]) if row.get(key) else ({} if key in _JSON_OBJECTS else [])
        row["id"] = int(row["id"])
        for key in PATH_COLUMNS["analyses"]:
            row[key] = to_absolute(self.data_root, row.get(key))
        row["neighbours"] = neighbours_resolved(self.data_root, row["neighbours"])
        return Analysis.from_row(row)

    def history_frame(self, limit: int | None = None, search: str | None = None) -> pd.DataFrame:
        """Past analyses, newest first (JSON columns left as text)."""
        sql = "SELECT * FROM analyses"
        params: list[Any] = []
        if search:
            sql += (" WHERE label ILIKE %s OR input_name ILIKE %s OR question ILIKE %s OR notes ILIKE %s "
                    "OR tags ILIKE %s")
            params += [f"%{search}%"] * 5
        sql += " ORDER BY id DESC"
        if limit is not None:
            sql += " LIMIT %s"
            params.append(int(limit))
        with self.cursor() as cur:
            cur.execute(sql, params)
            frame = frame_of(cur)
        return resolve_frame(frame, self.data_root, PATH_COLUMNS["analyses"])

    def history_page(
        self,
        offset: int = 0,
        limit: int = 50,
        search: str | None = None,
        sort: str = "id",
        descending: bool = True,
        columns: Sequence[str] = HISTORY_COLUMNS,
        *,
        labels: Sequence[str] | None = None,
        backends: Sequence[str] | None = None,
    ) -> pd.DataFrame:
        """One page of the history, sorted, searched and filtered in PostgreSQL: light columns only.

        As :meth:`medrag.store.analyses.AnalysisStore.history_page` (same columns, sorts, search and
        filters; ties in ``sort`` broken by id so pages never overlap or skip a row).
        """
        unknown = [c for c in columns if c not in HISTORY_COLUMNS and c not in HISTORY_DERIVED]
        if unknown:
            raise ValueError(f"Unknown history columns {unknown}; use {list(HISTORY_COLUMNS) + list(HISTORY_DERIVED)}.")
        if sort not in HISTORY_SORTS:
            raise ValueError(f"Cannot sort the history by {sort!r}; use one of {list(HISTORY_SORTS)}.")
        where, params = _where(search, labels, backends)
        order = "DESC" if descending else "ASC"
        key = f"{sort} {order} NULLS LAST" + ("" if sort == "id" else f", id {order}")
        selected = ", ".join(PG_HISTORY_DERIVED.get(c, f"a.{c}") + f" AS {c}" for c in columns) or "a.id AS id"
        sql = (
            f"SELECT {selected} FROM (SELECT id FROM analyses{where} ORDER BY {key} LIMIT %s OFFSET %s) AS page "
            f"JOIN analyses a USING (id) ORDER BY a.{key.replace(', id', ', a.id')}"
        )
        params += [max(0, int(limit)), max(0, int(offset))]
        with self.cursor() as cur:
            cur.execute(sql, params)
            frame = frame_of(cur)
        if frame.empty and not len(frame.columns):
            frame = pd.DataFrame(columns=list(columns) or ["id"])
        return resolve_frame(frame, self.data_root, PATH_COLUMNS["analyses"])

    def count_history(
        self, search: str | None = None, *, labels: Sequence[str] | None = None, backends: Sequence[str] | None = None
    ) -> int:
        """How many history rows :meth:`history_page` pages through for this search and these filters."""
        where, params = _where(search, labels, backends)
        with self.cursor() as cur:
            row = cur.execute(f"SELECT count(*) FROM analyses{where}", params).fetchone()
        return int(row[0]) if row else 0

    def history_values(self, column: str, search: str | None = None) -> list[str]:
        """The distinct ``label`` or ``reasoner_backend`` values among the rows matching ``search`` (for filters)."""
        if column not in ("label", "reasoner_backend"):
            raise ValueError(f"history_values lists 'label' or 'reasoner_backend', not {column!r}.")
        where, params = _where(search, None, None)
        with self.cursor() as cur:
            sql = f"SELECT DISTINCT coalesce({column}, '') FROM analyses{where} ORDER BY 1"
            rows = cur.execute(sql, params).fetchall()
        return [str(r[0]) for r in rows]

    def count_analyses(self) -> int:
        """Number of history rows."""
        with self.cursor() as cur:
            row = cur.execute("SELECT count(*) FROM analyses").fetchone()
        return int(row[0]) if row else 0

    def update_analysis_notes(self, analysis_id: int, notes: str, tags: Sequence[str]) -> None:
        """Set the notes and tags of a history row."""
        clean_tags = sorted({t.strip() for t in tags if t and t.strip()})
        with self.transaction() as cur:
            cur.execute(
                "UPDATE analyses SET notes = %s, tags = %s WHERE id = %s",
                [notes, json.dumps(clean_tags), int(analysis_id)],
            )

    def delete_analysis(self, analysis_id: int) -> bool:
        """Delete one history row; returns whether it existed."""
        with self.transaction() as cur:
            cur.execute("DELETE FROM analyses WHERE id = %s", [int(analysis_id)])
            return cur.rowcount > 0

    # ------------------------------------------------------------------ web cache
    def get(self, key: str) -> list[dict[str, Any]] | None:
        """Web cache lookup (implements ``medrag.websearch.WebCache``)."""
        with self.cursor() as cur:
            row = cur.execute("SELECT results FROM web_cache WHERE key = %s", [key]).fetchone()
        return json.loads(row[0]) if row else None

    def put(self, key: str, provider: str, results: list[dict[str, Any]]) -> None:
        """Web cache insert or replace (implements ``medrag.websearch.WebCache``)."""
        with self.transaction() as cur:
            cur.execute(
                "INSERT INTO web_cache (key, provider, created_at, results) VALUES (%s, %s, %s, %s) "
                "ON CONFLICT (key) DO UPDATE SET provider = excluded.provider, created_at = excluded.created_at, "
                "results = excluded.results",
                [key, provider, utcnow(), json.dumps(results, default=str)],
            )
