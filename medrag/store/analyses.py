"""The analysis history: saving, reading, searching, annotating and deleting rows of ``analyses``."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import pandas as pd

from medrag.analysis import Analysis
from medrag.store.connection import Database, utcnow

#: JSON-typed columns of ``analyses`` (stored as text, decoded on read).
_ANALYSIS_JSON = ("findings", "neighbours", "web_results", "guard", "meta", "timings", "errors", "tags")
#: Those of them that hold an object (the others hold a list).
_JSON_OBJECTS = ("findings", "guard", "meta", "timings")


class AnalysisStore(Database):
    """Reads and writes the ``analyses`` table."""

    def save_analysis(self, analysis: Analysis) -> int:
        """Append one analysis to the history; returns its id."""
        values = analysis.to_row()
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
        row = frame.iloc[0].to_dict()
        for key in _ANALYSIS_JSON:
            row[key] = json.loads(row[key]) if row.get(key) else ({} if key in _JSON_OBJECTS else [])
        row["id"] = int(row["id"])
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
            return cur.execute(sql, params).df()

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
