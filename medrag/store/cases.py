"""The library's cases: adding them, looking them up, filtering and counting them (the ``cases`` table).

Image and thumbnail paths under the data folder are stored relative to it (:mod:`medrag.store.paths`) and
come back absolute: callers never see the stored form.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from medrag.records import Case
from medrag.store.connection import Database, utcnow
from medrag.store.paths import PATH_COLUMNS, resolve_frame, to_absolute, to_stored

#: Columns of ``cases`` in table order (what an insert writes).
CASE_COLUMNS = (
    "case_id", "label", "dataset", "image_path", "thumb_path", "report", "patient_id", "view",
    "synthetic", "extra", "width", "height", "added_at",
)

#: The columns :func:`row_to_case` reads, in its order.
CASE_FIELDS = CASE_COLUMNS[:10]


def case_select(prefix: str = "") -> str:
    """The SELECT list that :func:`row_to_case` decodes (``prefix`` is a table alias such as ``"c."``)."""
    return ", ".join(prefix + name for name in CASE_FIELDS)


def case_row(case: Case, size: tuple[int | None, int | None], added_at: Any, root: Path | None = None) -> list[Any]:
    """One ``cases`` row (in :data:`CASE_COLUMNS` order) for a case and its pixel size; paths stored under ``root``."""
    width, height = size
    return [
        case.case_id, case.label, case.dataset, to_stored(root, case.image_path), to_stored(root, case.thumb_path),
        case.report, case.patient_id, case.view, case.synthetic, json.dumps(case.extra, default=str), width, height,
        added_at,
    ]


def row_to_case(row: Sequence[Any], root: Path | None = None) -> Case:
    """A :class:`Case` from a row selected with :func:`case_select`, its stored paths resolved under ``root``."""
    return Case(
        case_id=row[0], label=row[1], dataset=row[2], image_path=to_absolute(root, row[3]),
        thumb_path=to_absolute(root, row[4]), report=row[5] or "", patient_id=row[6] or "", view=row[7] or "",
        synthetic=bool(row[8]), extra=json.loads(row[9] or "{}"),
    )


def _filters(label: str | None, dataset: str | None) -> tuple[list[str], list[Any]]:
    where: list[str] = []
    params: list[Any] = []
    if label:
        where.append("label = ?")
        params.append(label)
    if dataset:
        where.append("dataset = ?")
        params.append(dataset)
    return where, params


class CaseStore(Database):
    """Reads and writes the ``cases`` table."""

    def add_cases(self, cases: Sequence[Case], sizes: Sequence[tuple[int, int]] | None = None) -> int:
        """Insert cases whose ``case_id`` is new (identical pixels are stored once); returns how many."""
        if not cases:
            return 0
        now = utcnow()
        root = self.data_root
        rows = [case_row(case, sizes[i] if sizes else (None, None), now, root) for i, case in enumerate(cases)]
        with self.transaction() as cur:
            before = cur.execute("SELECT count(*) FROM cases").fetchall()[0][0]
            cur.executemany(
                f"INSERT INTO cases ({', '.join(CASE_COLUMNS)}) VALUES ({', '.join('?' * len(CASE_COLUMNS))}) "
                "ON CONFLICT (case_id) DO NOTHING",
                rows,
            )
            after = cur.execute("SELECT count(*) FROM cases").fetchall()[0][0]
        return int(after - before)

    def existing_case_ids(self, case_ids: Iterable[str]) -> set[str]:
        """Which of ``case_ids`` are already in the library."""
        ids = list(dict.fromkeys(case_ids))
        if not ids:
            return set()
        with self.cursor() as cur:
            rows = cur.execute("SELECT case_id FROM cases WHERE list_contains(?, case_id)", [ids]).fetchall()
        return {r[0] for r in rows}

    def count_cases(self) -> int:
        """Number of library cases."""
        with self.cursor() as cur:
            return int(cur.execute("SELECT count(*) FROM cases").fetchall()[0][0])

    def get_case(self, case_id: str) -> Case | None:
        """One case by id, or None."""
        found = self.get_cases([case_id])
        return found.get(case_id)

    def get_cases(self, case_ids: Sequence[str]) -> dict[str, Case]:
        """Cases by id (missing ids are simply absent)."""
        if not case_ids:
            return {}
        with self.cursor() as cur:
            rows = cur.execute(
                f"SELECT {case_select()} FROM cases WHERE list_contains(?, case_id)", [list(case_ids)]
            ).fetchall()
        return {r[0]: row_to_case(r, self.data_root) for r in rows}

    def cases_frame(
        self,
        *,
        label: str | None = None,
        dataset: str | None = None,
        text: str | None = None,
        limit: int | None = None,
        labels: Sequence[str] | None = None,
    ) -> pd.DataFrame:
        """The library as a DataFrame, optionally filtered by label (or any of ``labels``), dataset and report
        text (ILIKE)."""
        where, params = _filters(label, dataset)
        if labels is not None:
            where.append("list_contains(?, label)")
            params.append(list(labels))
        if text:
            where.append("(report ILIKE ? OR label ILIKE ?)")
            params += [f"%{text}%", f"%{text}%"]
        sql = "SELECT * FROM cases" + (" WHERE " + " AND ".join(where) if where else "") + " ORDER BY added_at, case_id"
        if limit is not None:
            sql += " LIMIT ?"
            params.append(int(limit))
        with self.cursor() as cur:
            frame = cur.execute(sql, params).df()
        return resolve_frame(frame, self.data_root, PATH_COLUMNS["cases"])

    def case_files(self) -> list[tuple[str, str, str]]:
        """(case_id, image path, thumbnail path) of every case, paths absolute, in library order."""
        with self.cursor() as cur:
            rows = cur.execute(
                "SELECT case_id, image_path, thumb_path FROM cases ORDER BY added_at, case_id"
            ).fetchall()
        root = self.data_root
        return [(r[0], to_absolute(root, r[1]), to_absolute(root, r[2])) for r in rows]

    def set_thumb_paths(self, thumbs: Mapping[str, str]) -> None:
        """Point cases (case_id → thumbnail path) at re-created thumbnails, in one transaction."""
        if not thumbs:
            return
        frame = pd.DataFrame(
            [(cid, to_stored(self.data_root, path)) for cid, path in thumbs.items()], columns=["case_id", "thumb_path"]
        )
        with self.transaction() as cur:
            cur.register("new_thumbs", frame)
            cur.execute(
                "UPDATE cases SET thumb_path = n.thumb_path FROM new_thumbs n WHERE cases.case_id = n.case_id"
            )
            cur.unregister("new_thumbs")

    def label_counts(self) -> dict[str, int]:
        """Cases per label, most common first."""
        with self.cursor() as cur:
            rows = cur.execute("SELECT label, count(*) n FROM cases GROUP BY label ORDER BY n DESC, label").fetchall()
        return {r[0]: int(r[1]) for r in rows}

    def dataset_counts(self) -> dict[str, int]:
        """Cases per dataset, most common first."""
        with self.cursor() as cur:
            rows = cur.execute("SELECT dataset, count(*) n FROM cases GROUP BY dataset ORDER BY n DESC").fetchall()
        return {r[0]: int(r[1]) for r in rows}

    def case_ids_where(self, *, label: str | None = None, dataset: str | None = None) -> set[str]:
        """Ids of cases matching the filters (for filtered search)."""
        where, params = _filters(label, dataset)
        sql = "SELECT case_id FROM cases" + (" WHERE " + " AND ".join(where) if where else "")
        with self.cursor() as cur:
            return {r[0] for r in cur.execute(sql, params).fetchall()}
