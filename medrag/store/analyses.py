"""The analysis history: saving, reading, searching, annotating and deleting rows of ``analyses``."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import pandas as pd

from medrag.analysis import Analysis
from medrag.store.connection import Database, utcnow
from medrag.store.paths import (
    PATH_COLUMNS,
    neighbours_resolved,
    neighbours_stored,
    resolve_frame,
    to_absolute,
    to_stored,
)

#: JSON-typed columns of ``analyses`` (stored as text, decoded on read).
_ANALYSIS_JSON = ("findings", "neighbours", "web_results", "guard", "meta", "timings", "errors", "tags")
#: Those of them that hold an object (the others hold a list).
_JSON_OBJECTS = ("findings", "guard", "meta", "timings")

#: The light columns a history list shows: no reasoning text, no neighbours / web-results / meta JSON.
HISTORY_COLUMNS: tuple[str, ...] = (
    "id", "created_at", "input_kind", "input_name", "question", "label", "encoder", "reasoner_backend",
    "reasoner_model", "summariser_backend", "web_status", "total_seconds", "notes", "tags", "errors", "thumb_path",
)
#: Columns computed for the rows of one page only: the best match, from the (heavy) neighbours JSON.
HISTORY_DERIVED: dict[str, str] = {
    "top_label": "json_extract_string(a.neighbours, '$[0].label')",
    "top_score": "TRY_CAST(json_extract(a.neighbours, '$[0].score') AS DOUBLE)",
}
#: What a history search looks in (case-insensitive substring).
HISTORY_SEARCHED: tuple[str, ...] = ("label", "input_name", "question", "notes", "tags")
#: What a history page can be sorted by.
HISTORY_SORTS: tuple[str, ...] = (
    "id", "created_at", "input_kind", "input_name", "label", "reasoner_backend", "total_seconds",
)


def _like_pattern(search: str) -> str:
    """``search`` as an ILIKE substring pattern: its own ``%``, ``_`` and ``\\`` match literally."""
    escaped = search.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


def history_where(
    search: str | None, labels: Sequence[str] | None = None, backends: Sequence[str] | None = None
) -> tuple[str, list[Any]]:
    """The WHERE clause (or "") and its parameters for a history search and label / backend filters."""
    clauses: list[str] = []
    params: list[Any] = []
    if search:
        clauses.append("(" + " OR ".join(f"{c} ILIKE ? ESCAPE '\\'" for c in HISTORY_SEARCHED) + ")")
        params += [_like_pattern(search)] * len(HISTORY_SEARCHED)
    for column, values in (("label", labels), ("reasoner_backend", backends)):
        if values:
            clauses.append(f"{column} IN ({', '.join('?' * len(values))})")
            params += [str(v) for v in values]
    return (" WHERE " + " AND ".join(clauses)) if clauses else "", params


class AnalysisStore(Database):
    """Reads and writes the ``analyses`` table."""

    def save_analysis(self, analysis: Analysis) -> int:
        """Append one analysis to the history; returns its id."""
        values = analysis.to_row()
        # Paths under the data folder are stored relative to it, so the folder can move (medrag.store.paths).
        for key in PATH_COLUMNS["analyses"]:
            values[key] = to_stored(self.data_root, values[key])
        values["neighbours"] = neighbours_stored(self.data_root, values["neighbours"])
        for key in _ANALYSIS_JSON:
            values[key] = json.dumps(values[key], default=str)
        columns = ["created_at", *values]
        params = [utcnow(), *values.values()]
        with self.transaction() as cur:
            row = cur.execute(
                f"INSERT INTO analyses ({', '.join(columns)}) VALUES ({', '.join('?' * len(columns))}) RETURNING id",
                params,
            ).fetchone()
        assert row is not None  # INSERT … RETURNING always yields the new row
        return int(row[0])

    def get_analysis(self, analysis_id: int) -> Analysis | None:
        """One saved analysis, exactly as it was shown, or None."""
        with self.cursor() as cur:
            frame = cur.execute("SELECT * FROM analyses WHERE id = ?", [int(analysis_id)]).df()
        if frame.empty:
            return None
        row = {str(k): v for k, v in frame.iloc[0].items()}
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
            sql += " WHERE label ILIKE ? OR input_name ILIKE ? OR question ILIKE ? OR notes ILIKE ? OR tags ILIKE ?"
            params += [f"%{search}%"] * 5
        sql += " ORDER BY id DESC"
        if limit is not None:
            sql += " LIMIT ?"
            params.append(int(limit))
        with self.cursor() as cur:
            frame = cur.execute(sql, params).df()
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
        """One page of the history, sorted, searched and filtered in DuckDB: light columns only.

        ``columns`` may name any of :data:`HISTORY_COLUMNS` and :data:`HISTORY_DERIVED` (``top_label``,
        ``top_score``: the best match, read from the neighbours JSON of this page's rows only). ``search``
        is a case-insensitive substring of :data:`HISTORY_SEARCHED`; ``labels`` / ``backends`` keep rows
        whose label / reasoner backend is one of them. Ties in ``sort`` are broken by id, so pages never
        overlap or skip a row.
        """
        unknown = [c for c in columns if c not in HISTORY_COLUMNS and c not in HISTORY_DERIVED]
        if unknown:
            raise ValueError(f"Unknown history columns {unknown}; use {list(HISTORY_COLUMNS) + list(HISTORY_DERIVED)}.")
        if sort not in HISTORY_SORTS:
            raise ValueError(f"Cannot sort the history by {sort!r}; use one of {list(HISTORY_SORTS)}.")
        where, params = history_where(search, labels, backends)
        order = "DESC" if descending else "ASC"
        key = f"{sort} {order} NULLS LAST" + ("" if sort == "id" else f", id {order}")
        # The page's ids first (a scan of one or two light columns), then only those rows' other columns.
        selected = ", ".join(HISTORY_DERIVED.get(c, f"a.{c}") + f" AS {c}" for c in columns) or "a.id AS id"
        sql = (
            f"SELECT {selected} FROM (SELECT id FROM analyses{where} ORDER BY {key} LIMIT ? OFFSET ?) AS page "
            f"JOIN analyses a USING (id) ORDER BY a.{key.replace(', id', ', a.id')}"
        )
        params += [max(0, int(limit)), max(0, int(offset))]
        with self.cursor() as cur:
            frame = cur.execute(sql, params).df()
        return resolve_frame(frame, self.data_root, PATH_COLUMNS["analyses"])

    def count_history(
        self, search: str | None = None, *, labels: Sequence[str] | None = None, backends: Sequence[str] | None = None
    ) -> int:
        """How many history rows :meth:`history_page` pages through for this search and these filters."""
        where, params = history_where(search, labels, backends)
        with self.cursor() as cur:
            return int(cur.execute(f"SELECT count(*) FROM analyses{where}", params).fetchall()[0][0])

    def history_values(self, column: str, search: str | None = None) -> list[str]:
        """The distinct ``label`` or ``reasoner_backend`` values among the rows matching ``search`` (for filters)."""
        if column not in ("label", "reasoner_backend"):
            raise ValueError(f"history_values lists 'label' or 'reasoner_backend', not {column!r}.")
        where, params = history_where(search, None, None)
        with self.cursor() as cur:
            sql = f"SELECT DISTINCT coalesce({column}, '') FROM analyses{where} ORDER BY 1"
            rows = cur.execute(sql, params).fetchall()
        return [str(r[0]) for r in rows]

    def count_analyses(self) -> int:
        """Number of history rows."""
        with self.cursor() as cur:
            return int(cur.execute("SELECT count(*) FROM analyses").fetchall()[0][0])

    def update_analysis_notes(self, analysis_id: int, notes: str, tags: Sequence[str]) -> None:
        """Set the notes and tags of a history row."""
        clean_tags = sorted({t.strip() for t in tags if t and t.strip()})
        with self.transaction() as cur:
            cur.execute(
                "UPDATE analyses SET notes = ?, tags = ? WHERE id = ?",
                [notes, json.dumps(clean_tags), int(analysis_id)],
            )

    def delete_analysis(self, analysis_id: int) -> bool:
        """Delete one history row; returns whether it existed."""
        with self.transaction() as cur:
            n = cur.execute("SELECT count(*) FROM analyses WHERE id = ?", [int(analysis_id)]).fetchall()[0][0]
            cur.execute("DELETE FROM analyses WHERE id = ?", [int(analysis_id)])
        return bool(n)
