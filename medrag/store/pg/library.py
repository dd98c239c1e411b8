"""The library on PostgreSQL: cases, their vectors per encoder version, source fingerprints, ingest batches.

The same methods and return types as the DuckDB mixins (:mod:`medrag.store.cases`,
:mod:`medrag.store.embeddings`, :mod:`medrag.store.ingest`), built on their row conversions
(``case_row`` / ``row_to_case``, the source-key rules). Many rows go in as one ``unnest`` statement (or
``COPY`` for vectors), and counts come from the rows a statement really inserted, so two replicas
importing at once never miscount each other's cases.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
import psycopg

from medrag.errors import StoreError
from medrag.records import Case
from medrag.store.cases import CASE_COLUMNS, case_row, case_select, row_to_case
from medrag.store.connection import utcnow
from medrag.store.ingest import _absolute_key, _stored_key
from medrag.store.paths import PATH_COLUMNS, resolve_frame, to_absolute, to_stored
from medrag.store.pg.connection import PgDatabase

#: PostgreSQL types of :data:`~medrag.store.cases.CASE_COLUMNS`, for the ``unnest`` of a batch insert.
_CASE_TYPES = (
    "text", "text", "text", "text", "text", "text", "text", "text", "boolean", "text", "integer", "integer",
    "timestamp",
)


def frame_of(cur: psycopg.Cursor[Any]) -> pd.DataFrame:
    """The rows of the cursor's last query as a DataFrame with its column names."""
    columns = [d.name for d in cur.description or ()]
    return pd.DataFrame(cur.fetchall(), columns=columns)


def _filters(label: str | None, dataset: str | None) -> tuple[list[str], list[Any]]:
    where: list[str] = []
    params: list[Any] = []
    if label:
        where.append("label = %s")
        params.append(label)
    if dataset:
        where.append("dataset = %s")
        params.append(dataset)
    return where, params


def insert_cases(cur: psycopg.Cursor[Any], rows: Sequence[Sequence[Any]]) -> int:
    """Insert ``cases`` rows (in CASE_COLUMNS order) whose id is new, in one statement; returns how many went in."""
    if not rows:
        return 0
    columns = list(zip(*rows, strict=True))
    unnest = ", ".join(f"%s::{t}[]" for t in _CASE_TYPES)
    cur.execute(
        f"INSERT INTO cases ({', '.join(CASE_COLUMNS)}) SELECT * FROM unnest({unnest}) "
        "ON CONFLICT (case_id) DO NOTHING",
        [list(c) for c in columns],
    )
    return max(0, cur.rowcount)


def insert_vectors(
    cur: psycopg.Cursor[Any], encoder: str, version: str, case_ids: Sequence[str], vectors: np.ndarray
) -> None:
    """Replace the vectors of ``case_ids`` for ``encoder`` inside the caller's transaction (one COPY)."""
    matrix = np.ascontiguousarray(vectors, dtype=np.float32)
    ids = list(case_ids)
    cur.execute("DELETE FROM embeddings WHERE encoder = %s AND case_id = ANY(%s)", [encoder, ids])
    with cur.copy("COPY embeddings (case_id, encoder, version, vector) FROM STDIN") as copy:
        for case_id, row in zip(ids, matrix.tolist(), strict=True):
            copy.write_row((case_id, encoder, version, row))


#: Bytes before the elements of a one-dimensional binary array: ndim, has-nulls, element type, size, lower bound.
_ARRAY_HEADER = 20


def decode_float4_arrays(blobs: Sequence[bytes]) -> np.ndarray:
    """(n, dim) float32 from ``array_send`` of one-dimensional ``real[]`` values of one length, without nulls.

    After the header each element is a 4-byte length (always 4) and a big-endian float.
    """
    sizes = {len(b) for b in blobs}
    if len(sizes) != 1 or (next(iter(sizes)) - _ARRAY_HEADER) % 8:
        raise StoreError("The stored vectors differ in length for one encoder version; run `medrag index --rebuild`.")
    dim = (next(iter(sizes)) - _ARRAY_HEADER) // 8
    raw = np.frombuffer(b"".join(blobs), dtype=np.uint8).reshape(len(blobs), -1)[:, _ARRAY_HEADER:]
    pairs = np.ascontiguousarray(raw).view(">f4").reshape(len(blobs), dim, 2)
    return np.ascontiguousarray(pairs[:, :, 1], dtype=np.float32)


class PgLibrary(PgDatabase):
    """Reads and writes ``cases``, ``embeddings`` and ``sources`` (DuckDB's CaseStore, EmbeddingStore, IngestStore)."""

    # ------------------------------------------------------------------ cases
    def add_cases(self, cases: Sequence[Case], sizes: Sequence[tuple[int, int]] | None = None) -> int:
        """Insert cases whose ``case_id`` is new (identical pixels are stored once); returns how many."""
        if not cases:
            return 0
        now = utcnow()
        rows = [case_row(c, sizes[i] if sizes else (None, None), now, self.data_root) for i, c in enumerate(cases)]
        with self.transaction() as cur:
            return insert_cases(cur, rows)

    def existing_case_ids(self, case_ids: Iterable[str]) -> set[str]:
        """Which of ``case_ids`` are already in the library."""
        ids = list(dict.fromkeys(case_ids))
        if not ids:
            return set()
        with self.cursor() as cur:
            rows = cur.execute("SELECT case_id FROM cases WHERE case_id = ANY(%s)", [ids]).fetchall()
        return {r[0] for r in rows}

    def count_cases(self) -> int:
        """Number of library cases."""
        with self.cursor() as cur:
            row = cur.execute("SELECT count(*) FROM cases").fetchone()
        return int(row[0]) if row else 0

    def get_case(self, case_id: str) -> Case | None:
        """One case by id, or None."""
        return self.get_cases([case_id]).get(case_id)

    def get_cases(self, case_ids: Sequence[str]) -> dict[str, Case]:
        """Cases by id (missing ids are simply absent)."""
        if not case_ids:
            return {}
        with self.cursor() as cur:
            rows = cur.execute(
                f"SELECT {case_select()} FROM cases WHERE case_id = ANY(%s)", [list(case_ids)]
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
            where.append("label = ANY(%s)")
            params.append(list(labels))
        if text:
            where.append("(report ILIKE %s OR label ILIKE %s)")
            params += [f"%{text}%", f"%{text}%"]
        sql = "SELECT * FROM cases" + (" WHERE " + " AND ".join(where) if where else "") + " ORDER BY added_at, case_id"
        if limit is not None:
            sql += " LIMIT %s"
            params.append(int(limit))
        with self.cursor() as cur:
            cur.execute(sql, params)
            frame = frame_of(cur)
        return resolve_frame(frame, self.data_root, PATH_COLUMNS["cases"])

    def case_files(self) -> list[tuple[str, str, str]]:
        """(case_id, image path, thumbnail path) of every case, paths absolute, in library order."""
        with self.cursor() as cur:
            sql = "SELECT case_id, image_path, thumb_path FROM cases ORDER BY added_at, case_id"
            rows = cur.execute(sql).fetchall()
        root = self.data_root
        return [(r[0], to_absolute(root, r[1]), to_absolute(root, r[2])) for r in rows]

    def set_thumb_paths(self, thumbs: Mapping[str, str]) -> None:
        """Point cases (case_id → thumbnail path) at re-created thumbnails, in one transaction."""
        if not thumbs:
            return
        ids = list(thumbs)
        paths = [to_stored(self.data_root, thumbs[cid]) for cid in ids]
        with self.transaction() as cur:
            cur.execute(
                "UPDATE cases SET thumb_path = n.thumb_path "
                "FROM unnest(%s::text[], %s::text[]) AS n(case_id, thumb_path) WHERE cases.case_id = n.case_id",
                [ids, paths],
            )

    def label_counts(self) -> dict[str, int]:
        """Cases per label, most common first."""
        with self.cursor() as cur:
            rows = cur.execute("SELECT label, count(*) n FROM cases GROUP BY label ORDER BY n DESC, label").fetchall()
        return {r[0]: int(r[1]) for r in rows}

    def dataset_counts(self) -> dict[str, int]:
        """Cases per dataset, most common first."""
        with self.cursor() as cur:
            sql = "SELECT dataset, count(*) n FROM cases GROUP BY dataset ORDER BY n DESC, dataset"
            rows = cur.execute(sql).fetchall()
        return {r[0]: int(r[1]) for r in rows}

    def case_ids_where(self, *, label: str | None = None, dataset: str | None = None) -> set[str]:
        """Ids of cases matching the filters (for filtered search)."""
        where, params = _filters(label, dataset)
        sql = "SELECT case_id FROM cases" + (" WHERE " + " AND ".join(where) if where else "")
        with self.cursor() as cur:
            return {r[0] for r in cur.execute(sql, params).fetchall()}

    # ------------------------------------------------------------------ embeddings
    def cases_missing_embeddings(self, encoder: str, version: str) -> list[Case]:
        """Cases with no vector for this encoder version (what an incremental re-index must embed)."""
        with self.cursor() as cur:
            rows = cur.execute(
                f"SELECT {case_select('c.')} FROM cases c LEFT JOIN embeddings e "
                "ON e.case_id = c.case_id AND e.encoder = %s AND e.version = %s "
                "WHERE e.case_id IS NULL ORDER BY c.added_at, c.case_id",
                [encoder, version],
            ).fetchall()
        return [row_to_case(r, self.data_root) for r in rows]

    def put_embeddings(self, encoder: str, version: str, case_ids: Sequence[str], vectors: np.ndarray) -> None:
        """Store vectors (replacing any older version's) in one transaction."""
        if len(case_ids) != len(vectors):
            raise StoreError("put_embeddings: ids and vectors differ in length (a bug: please report it).")
        if not case_ids:
            return
        with self.transaction() as cur:
            insert_vectors(cur, encoder, version, case_ids, vectors)

    def drop_embeddings(self, encoder: str, keep_version: str | None = None) -> int:
        """Delete an encoder's vectors (all, or all but ``keep_version``); returns how many."""
        with self.transaction() as cur:
            if keep_version is None:
                cur.execute("DELETE FROM embeddings WHERE encoder = %s", [encoder])
            else:
                cur.execute("DELETE FROM embeddings WHERE encoder = %s AND version <> %s", [encoder, keep_version])
            return max(0, cur.rowcount)

    def load_embeddings(self, encoder: str, version: str) -> tuple[list[str], np.ndarray]:
        """All (case ids, vectors) of one encoder version, in library order."""
        # Each vector as PostgreSQL's binary array (array_send), decoded by numpy in one pass: turning
        # real[] into Python floats cost 11 s for 100k x 274 vectors (bench/bench_pg_scale.py).
        with self.cursor() as cur:
            rows = cur.execute(
                "SELECT e.case_id, array_send(e.vector) FROM embeddings e JOIN cases c USING (case_id) "
                "WHERE e.encoder = %s AND e.version = %s ORDER BY c.added_at, c.case_id",
                [encoder, version],
            ).fetchall()
        if not rows:
            return [], np.zeros((0, 0), dtype=np.float32)
        return [r[0] for r in rows], decode_float4_arrays([bytes(r[1]) for r in rows])

    def embeddings_stamp(self) -> tuple[int, int]:
        """(number of vectors, newest vector's serial): changes whenever vectors are added, replaced or dropped.

        A replica compares it with the stamp its FAISS cache was built at to know when to reload.
        """
        with self.cursor() as cur:
            row = cur.execute("SELECT count(*), coalesce(max(serial), 0) FROM embeddings").fetchone()
        return (int(row[0]), int(row[1])) if row else (0, 0)

    # ------------------------------------------------------------------ ingest
    def add_ingest_batch(
        self,
        cases: Sequence[Case],
        sizes: Sequence[tuple[int, int]],
        sources: Sequence[tuple[str, int, int, str]],
        embeddings: tuple[str, str, Sequence[str], np.ndarray] | None = None,
    ) -> int:
        """Cases, their source fingerprints and (optionally) vectors in ONE transaction; returns new cases.

        ``sources`` rows are (source_key, size, mtime_ns, case_id); ``embeddings`` is
        (encoder, version, case_ids, vectors). A crash leaves either all of a batch or none of it.
        """
        if len(cases) != len(sizes):
            raise StoreError("add_ingest_batch: cases and sizes differ in length (a bug: please report it).")
        now = utcnow()
        rows = [case_row(case, size, now, self.data_root) for case, size in zip(cases, sizes, strict=True)]
        # One row per key (the last wins, as a replace would): ON CONFLICT may not touch a row twice.
        latest = {_stored_key(self, key): (size, mtime, cid) for key, size, mtime, cid in sources}  # type: ignore[arg-type]
        keyed = [(key, *rest) for key, rest in latest.items()]
        with self.transaction() as cur:
            added = insert_cases(cur, rows)
            if keyed:
                columns = [list(c) for c in zip(*keyed, strict=True)]
                cur.execute(
                    "INSERT INTO sources (source_key, size, mtime_ns, case_id) "
                    "SELECT * FROM unnest(%s::text[], %s::bigint[], %s::bigint[], %s::text[]) "
                    "ON CONFLICT (source_key) DO UPDATE SET size = excluded.size, mtime_ns = excluded.mtime_ns, "
                    "case_id = excluded.case_id",
                    columns,
                )
            if embeddings is not None and len(embeddings[2]):
                insert_vectors(cur, *embeddings)
        return added

    def known_sources(self) -> dict[str, tuple[int, int]]:
        """source_key → (size, mtime_ns) of every file already ingested (to skip unchanged files)."""
        with self.cursor() as cur:
            rows = cur.execute("SELECT source_key, size, mtime_ns FROM sources").fetchall()
        return {_absolute_key(self, r[0]): (int(r[1]), int(r[2])) for r in rows}  # type: ignore[arg-type]

    def correct_folder_labels(self, rows: Sequence[tuple[str, str, str]]) -> int:
        """As :meth:`medrag.store.ingest.IngestStore.correct_folder_labels`: one statement, one transaction."""
        keys = [_stored_key(self, key) for key, _, _ in rows]  # type: ignore[arg-type]
        with self.transaction() as cur:
            cur.execute(
                "UPDATE cases SET label = r.new_label "
                "FROM unnest(%s::text[], %s::text[], %s::text[]) AS r(source_key, old_label, new_label) "
                "JOIN sources s ON s.source_key = r.source_key "
                "WHERE cases.case_id = s.case_id AND cases.label = r.old_label AND r.new_label <> r.old_label",
                (keys, [old for _, old, _ in rows], [new for _, _, new in rows]),
            )
            return int(cur.rowcount or 0)
