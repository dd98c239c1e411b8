"""The DuckDB store: library cases, embeddings, the analysis history and the web-result cache.

One file (``settings.db_path``). DuckDB lets one process write a file at a time, and a process holding
it open blocks every other process, even readers. So a :class:`Store` shares ONE connection per file per
process (a cursor per thread) and closes it as soon as no thread is using it: the app and a CLI ingest
can take turns. A process that finds the file locked waits and retries (bounded), then raises
:class:`StoreLockedError` saying what to do. All SQL is parameterised.
"""

from __future__ import annotations

import json
import random
import threading
import time
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import pandas as pd

from medrag.errors import StoreError, StoreLockedError
from medrag.records import Case

SCHEMA_VERSION = 1

_SCHEMA = [
    "CREATE TABLE IF NOT EXISTS meta (key VARCHAR PRIMARY KEY, value VARCHAR)",
    """CREATE TABLE IF NOT EXISTS cases (
        case_id VARCHAR PRIMARY KEY,
        label VARCHAR NOT NULL,
        dataset VARCHAR NOT NULL,
        image_path VARCHAR NOT NULL,
        thumb_path VARCHAR NOT NULL,
        report VARCHAR DEFAULT '',
        patient_id VARCHAR DEFAULT '',
        view VARCHAR DEFAULT '',
        synthetic BOOLEAN DEFAULT FALSE,
        extra VARCHAR DEFAULT '{}',
        width INTEGER,
        height INTEGER,
        added_at TIMESTAMP)""",
    """CREATE TABLE IF NOT EXISTS embeddings (
        case_id VARCHAR NOT NULL,
        encoder VARCHAR NOT NULL,
        version VARCHAR NOT NULL,
        vector FLOAT[] NOT NULL,
        PRIMARY KEY (case_id, encoder))""",
    "CREATE SEQUENCE IF NOT EXISTS analyses_id_seq START 1",
    """CREATE TABLE IF NOT EXISTS analyses (
        id BIGINT PRIMARY KEY DEFAULT nextval('analyses_id_seq'),
        created_at TIMESTAMP NOT NULL,
        input_kind VARCHAR NOT NULL,
        input_name VARCHAR DEFAULT '',
        image_hash VARCHAR DEFAULT '',
        thumb_path VARCHAR DEFAULT '',
        upload_path VARCHAR DEFAULT '',
        question VARCHAR DEFAULT '',
        encoder VARCHAR DEFAULT '',
        reasoner_backend VARCHAR DEFAULT '',
        reasoner_model VARCHAR DEFAULT '',
        summariser_backend VARCHAR DEFAULT '',
        reasoning VARCHAR DEFAULT '',
        label VARCHAR DEFAULT '',
        findings VARCHAR DEFAULT '{}',
        neighbours VARCHAR DEFAULT '[]',
        web_results VARCHAR DEFAULT '[]',
        web_status VARCHAR DEFAULT '',
        guard VARCHAR DEFAULT '{}',
        meta VARCHAR DEFAULT '{}',
        timings VARCHAR DEFAULT '{}',
        errors VARCHAR DEFAULT '[]',
        total_seconds DOUBLE DEFAULT 0,
        notes VARCHAR DEFAULT '',
        tags VARCHAR DEFAULT '[]')""",
    """CREATE TABLE IF NOT EXISTS sources (
        source_key VARCHAR PRIMARY KEY,
        size BIGINT NOT NULL,
        mtime_ns BIGINT NOT NULL,
        case_id VARCHAR NOT NULL)""",
    """CREATE TABLE IF NOT EXISTS web_cache (
        key VARCHAR PRIMARY KEY,
        provider VARCHAR NOT NULL,
        created_at TIMESTAMP NOT NULL,
        results VARCHAR NOT NULL)""",
]

_CASE_COLUMNS = (
    "case_id", "label", "dataset", "image_path", "thumb_path", "report", "patient_id", "view",
    "synthetic", "extra", "width", "height", "added_at",
)

#: JSON-typed columns of ``analyses`` (stored as text, decoded on read).
_ANALYSIS_JSON = ("findings", "neighbours", "web_results", "guard", "meta", "timings", "errors", "tags")


@dataclass
class AnalysisRecord:
    """One history row to save (see the ``analyses`` table)."""

    input_kind: str
    input_name: str = ""
    image_hash: str = ""
    thumb_path: str = ""
    upload_path: str = ""
    question: str = ""
    encoder: str = ""
    reasoner_backend: str = ""
    reasoner_model: str = ""
    summariser_backend: str = ""
    reasoning: str = ""
    label: str = ""
    findings: dict[str, str] = field(default_factory=dict)
    neighbours: list[dict[str, Any]] = field(default_factory=list)
    web_results: list[dict[str, Any]] = field(default_factory=list)
    web_status: str = ""
    guard: dict[str, Any] = field(default_factory=dict)
    meta: dict[str, Any] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)
    errors: list[dict[str, str]] = field(default_factory=list)
    total_seconds: float = 0.0
    notes: str = ""
    tags: list[str] = field(default_factory=list)


def _utcnow() -> datetime:
    return datetime.now(timezone.utc).replace(tzinfo=None)


def _is_lock_error(exc: Exception) -> bool:
    text = str(exc).lower()
    return "lock" in text and ("conflicting" in text or "could not set" in text)


class _SharedConnection:
    """A reference-counted connection to one database file, shared by the threads of a process."""

    def __init__(self, path: str, lock_timeout: float) -> None:
        self.path = path
        self.lock_timeout = lock_timeout
        self.users = 0
        self.con: duckdb.DuckDBPyConnection | None = None
        self.guard = threading.Lock()

    def acquire(self) -> duckdb.DuckDBPyConnection:
        with self.guard:
            if self.con is None:
                self.con = _connect_with_retry(self.path, self.lock_timeout)
            self.users += 1
            return self.con

    def release(self, keep_open: bool) -> None:
        with self.guard:
            self.users -= 1
            if self.users == 0 and not keep_open and self.con is not None:
                self.con.close()
                self.con = None


def _connect_with_retry(path: str, lock_timeout: float) -> duckdb.DuckDBPyConnection:
    deadline = time.monotonic() + lock_timeout
    delay = 0.05
    while True:
        try:
            return duckdb.connect(path)
        except duckdb.IOException as exc:
            if not _is_lock_error(exc):
                raise StoreError(f"Cannot open the database {path}: {exc}. Check the path and permissions.") from exc
            if time.monotonic() >= deadline:
                raise StoreLockedError(
                    f"The database {path} is held by another MedRAG process (the app or a CLI command) "
                    f"and was not released within {lock_timeout:.0f} s. Wait for it to finish, or stop it, "
                    "then run the command again."
                ) from exc
            time.sleep(delay * (0.5 + random.random()))
            delay = min(delay * 1.6, 1.0)


_SHARED: dict[str, _SharedConnection] = {}
_SHARED_GUARD = threading.Lock()


class Store:
    """Cases, embeddings, analyses (history) and the web cache in one DuckDB file (or ``:memory:``)."""

    def __init__(self, path: Path | str, *, lock_timeout: float = 120.0) -> None:
        self.path = str(path)
        self.in_memory = self.path == ":memory:"
        if not self.in_memory:
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
            self.path = str(Path(self.path).resolve())
        # An in-memory database lives as long as its connection, so it is never closed while in use.
        key = f":memory:{id(self)}" if self.in_memory else self.path
        with _SHARED_GUARD:
            shared = _SHARED.get(key)
            if shared is None:
                shared = _SharedConnection(self.path, lock_timeout)
                _SHARED[key] = shared
        shared.lock_timeout = lock_timeout
        self._shared = shared
        self._init_schema()

    @contextmanager
    def cursor(self) -> Iterator[duckdb.DuckDBPyConnection]:
        """A cursor for this thread on the shared connection, released (and the file unlocked) after."""
        con = self._shared.acquire()
        try:
            cur = con.cursor()
            try:
                yield cur
            finally:
                cur.close()
        finally:
            self._shared.release(keep_open=self.in_memory)

    @contextmanager
    def session(self) -> Iterator[None]:
        """Keep the file open across several operations (saves re-opening it; holds the lock meanwhile)."""
        self._shared.acquire()
        try:
            yield
        finally:
            self._shared.release(keep_open=self.in_memory)

    @contextmanager
    def transaction(self) -> Iterator[duckdb.DuckDBPyConnection]:
        """A cursor inside BEGIN … COMMIT; rolled back on any error, so no half-written rows."""
        with self.cursor() as cur:
            cur.execute("BEGIN TRANSACTION")
            try:
                yield cur
            except BaseException:
                cur.execute("ROLLBACK")
                raise
            cur.execute("COMMIT")

    def _init_schema(self) -> None:
        with self.transaction() as cur:
            for statement in _SCHEMA:
                cur.execute(statement)
            row = cur.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
            if row is None:
                cur.execute("INSERT INTO meta VALUES ('schema_version', ?)", [str(SCHEMA_VERSION)])
            elif int(row[0]) > SCHEMA_VERSION:
                raise StoreError(
                    f"{self.path} has schema version {row[0]}, newer than this MedRAG ({SCHEMA_VERSION}); "
                    "upgrade MedRAG or point MEDRAG_DATA_DIR at another folder."
                )

    # ------------------------------------------------------------------ cases
    def add_cases(self, cases: Sequence[Case], sizes: Sequence[tuple[int, int]] | None = None) -> int:
        """Insert cases whose ``case_id`` is new (identical pixels are stored once); returns how many."""
        if not cases:
            return 0
        now = _utcnow()
        rows = []
        for i, case in enumerate(cases):
            width, height = sizes[i] if sizes else (None, None)
            rows.append([
                case.case_id, case.label, case.dataset, case.image_path, case.thumb_path, case.report,
                case.patient_id, case.view, case.synthetic, json.dumps(case.extra, default=str), width,
                height, now,
            ])
        with self.transaction() as cur:
            before = cur.execute("SELECT count(*) FROM cases").fetchall()[0][0]
            cur.executemany(
                f"INSERT INTO cases ({', '.join(_CASE_COLUMNS)}) VALUES ({', '.join('?' * len(_CASE_COLUMNS))}) "
                "ON CONFLICT (case_id) DO NOTHING",
                rows,
            )
            after = cur.execute("SELECT count(*) FROM cases").fetchall()[0][0]
        return int(after - before)

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
        now = _utcnow()
        case_frame = pd.DataFrame(
            [
                [c.case_id, c.label, c.dataset, c.image_path, c.thumb_path, c.report, c.patient_id, c.view,
                 c.synthetic, json.dumps(c.extra, default=str), w, h, now]
                for c, (w, h) in zip(cases, sizes)
            ],
            columns=list(_CASE_COLUMNS),
        )
        source_frame = pd.DataFrame(list(sources), columns=["source_key", "size", "mtime_ns", "case_id"])
        # Whole-frame inserts: executemany costs about 4 ms a row in DuckDB, a frame a few ms in all.
        with self.transaction() as cur:
            before = cur.execute("SELECT count(*) FROM cases").fetchall()[0][0]
            if len(case_frame):
                cur.register("new_cases", case_frame)
                cur.execute(
                    f"INSERT INTO cases ({', '.join(_CASE_COLUMNS)}) SELECT {', '.join(_CASE_COLUMNS)} FROM new_cases "
                    "ON CONFLICT (case_id) DO NOTHING"
                )
                cur.unregister("new_cases")
            if len(source_frame):
                cur.register("new_sources", source_frame)
                cur.execute("INSERT OR REPLACE INTO sources SELECT source_key, size, mtime_ns, case_id FROM new_sources")
                cur.unregister("new_sources")
            if embeddings is not None and len(embeddings[2]):
                self._insert_embeddings(cur, *embeddings)
            after = cur.execute("SELECT count(*) FROM cases").fetchall()[0][0]
        return int(after - before)

    @staticmethod
    def _insert_embeddings(
        cur: duckdb.DuckDBPyConnection, encoder: str, version: str, case_ids: Sequence[str], vectors: np.ndarray
    ) -> None:
        import pyarrow as pa

        matrix = np.ascontiguousarray(vectors, dtype=np.float32)
        table = pa.table({
            "case_id": pa.array(list(case_ids), pa.string()),
            "vector": pa.FixedSizeListArray.from_arrays(pa.array(matrix.reshape(-1)), matrix.shape[1]).cast(
                pa.list_(pa.float32())
            ),
        })
        cur.execute("DELETE FROM embeddings WHERE encoder = ? AND list_contains(?, case_id)", [encoder, list(case_ids)])
        cur.register("new_vectors", table)
        cur.execute("INSERT INTO embeddings SELECT case_id, ?, ?, vector FROM new_vectors", [encoder, version])
        cur.unregister("new_vectors")

    def known_sources(self) -> dict[str, tuple[int, int]]:
        """source_key → (size, mtime_ns) of every file already ingested (to skip unchanged files)."""
        with self.cursor() as cur:
            rows = cur.execute("SELECT source_key, size, mtime_ns FROM sources").fetchall()
        return {r[0]: (int(r[1]), int(r[2])) for r in rows}

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
                "SELECT case_id, label, dataset, image_path, thumb_path, report, patient_id, view, synthetic, extra "
                "FROM cases WHERE list_contains(?, case_id)",
                [list(case_ids)],
            ).fetchall()
        return {r[0]: _row_to_case(r) for r in rows}

    def cases_frame(
        self,
        *,
        label: str | None = None,
        dataset: str | None = None,
        text: str | None = None,
        limit: int | None = None,
    ) -> pd.DataFrame:
        """The library as a DataFrame, optionally filtered by label, dataset and report text (ILIKE)."""
        where, params = [], []
        if label:
            where.append("label = ?")
            params.append(label)
        if dataset:
            where.append("dataset = ?")
            params.append(dataset)
        if text:
            where.append("(report ILIKE ? OR label ILIKE ?)")
            params += [f"%{text}%", f"%{text}%"]
        sql = "SELECT * FROM cases" + (" WHERE " + " AND ".join(where) if where else "") + " ORDER BY added_at, case_id"
        if limit is not None:
            sql += " LIMIT ?"
            params.append(int(limit))
        with self.cursor() as cur:
            return cur.execute(sql, params).df()

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
        where, params = [], []
        if label:
            where.append("label = ?")
            params.append(label)
        if dataset:
            where.append("dataset = ?")
            params.append(dataset)
        sql = "SELECT case_id FROM cases" + (" WHERE " + " AND ".join(where) if where else "")
        with self.cursor() as cur:
            return {r[0] for r in cur.execute(sql, params).fetchall()}

    # ------------------------------------------------------------- embeddings
    def cases_missing_embeddings(self, encoder: str, version: str) -> list[Case]:
        """Cases with no vector for this encoder version (what an incremental re-index must embed)."""
        with self.cursor() as cur:
            rows = cur.execute(
                "SELECT c.case_id, c.label, c.dataset, c.image_path, c.thumb_path, c.report, c.patient_id, c.view, "
                "c.synthetic, c.extra FROM cases c LEFT JOIN embeddings e "
                "ON e.case_id = c.case_id AND e.encoder = ? AND e.version = ? "
                "WHERE e.case_id IS NULL ORDER BY c.added_at, c.case_id",
                [encoder, version],
            ).fetchall()
        return [_row_to_case(r) for r in rows]

    def put_embeddings(self, encoder: str, version: str, case_ids: Sequence[str], vectors: np.ndarray) -> None:
        """Store vectors (replacing any older version's) in one transaction."""
        if len(case_ids) != len(vectors):
            raise StoreError("put_embeddings: ids and vectors differ in length (a bug: please report it).")
        if not case_ids:
            return
        with self.transaction() as cur:
            self._insert_embeddings(cur, encoder, version, case_ids, vectors)

    def drop_embeddings(self, encoder: str, keep_version: str | None = None) -> int:
        """Delete an encoder's vectors (all, or all but ``keep_version``); returns how many."""
        with self.transaction() as cur:
            if keep_version is None:
                n = cur.execute("SELECT count(*) FROM embeddings WHERE encoder = ?", [encoder]).fetchall()[0][0]
                cur.execute("DELETE FROM embeddings WHERE encoder = ?", [encoder])
            else:
                n = cur.execute(
                    "SELECT count(*) FROM embeddings WHERE encoder = ? AND version <> ?", [encoder, keep_version]
                ).fetchall()[0][0]
                cur.execute("DELETE FROM embeddings WHERE encoder = ? AND version <> ?", [encoder, keep_version])
        return int(n)

    def load_embeddings(self, encoder: str, version: str) -> tuple[list[str], np.ndarray]:
        """All (case ids, vectors) of one encoder version, in library order."""
        with self.cursor() as cur:
            # Through Arrow: Python float lists cost 1.1 GiB and 4.7 s at 100k vectors (bench_memory.py).
            table = cur.sql(
                "SELECT e.case_id, e.vector FROM embeddings e JOIN cases c USING (case_id) "
                "WHERE e.encoder = ? AND e.version = ? ORDER BY c.added_at, c.case_id",
                params=[encoder, version],
            ).to_arrow_table()
        if table.num_rows == 0:
            return [], np.zeros((0, 0), dtype=np.float32)
        vectors = table.column("vector").combine_chunks()
        flat = vectors.flatten().to_numpy(zero_copy_only=False).astype(np.float32, copy=False)
        return table.column("case_id").to_pylist(), np.ascontiguousarray(flat.reshape(table.num_rows, -1))

    # --------------------------------------------------------------- analyses
    def save_analysis(self, record: AnalysisRecord) -> int:
        """Append one history row; returns its id."""
        values = dict(record.__dict__)
        for key in _ANALYSIS_JSON:
            values[key] = json.dumps(values[key], default=str)
        columns = ["created_at", *values]
        params = [_utcnow(), *values.values()]
        with self.transaction() as cur:
            row = cur.execute(
                f"INSERT INTO analyses ({', '.join(columns)}) VALUES ({', '.join('?' * len(columns))}) RETURNING id",
                params,
            ).fetchone()
        return int(row[0])

    def get_analysis(self, analysis_id: int) -> dict[str, Any] | None:
        """One history row as a dict with JSON fields decoded, or None."""
        with self.cursor() as cur:
            frame = cur.execute("SELECT * FROM analyses WHERE id = ?", [int(analysis_id)]).df()
        if frame.empty:
            return None
        row = frame.iloc[0].to_dict()
        for key in _ANALYSIS_JSON:
            row[key] = json.loads(row[key]) if row.get(key) else ({} if key in ("findings", "guard", "meta", "timings") else [])
        row["id"] = int(row["id"])
        return row

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
                "UPDATE analyses SET notes = ?, tags = ? WHERE id = ?", [notes, json.dumps(clean_tags), int(analysis_id)]
            )

    def delete_analysis(self, analysis_id: int) -> bool:
        """Delete one history row; returns whether it existed."""
        with self.transaction() as cur:
            n = cur.execute("SELECT count(*) FROM analyses WHERE id = ?", [int(analysis_id)]).fetchall()[0][0]
            cur.execute("DELETE FROM analyses WHERE id = ?", [int(analysis_id)])
        return bool(n)

    # -------------------------------------------------------------- web cache
    def get(self, key: str) -> list[dict[str, Any]] | None:
        """Web cache lookup (implements ``medrag.websearch.WebCache``)."""
        with self.cursor() as cur:
            row = cur.execute("SELECT results FROM web_cache WHERE key = ?", [key]).fetchone()
        return json.loads(row[0]) if row else None

    def put(self, key: str, provider: str, results: list[dict[str, Any]]) -> None:
        """Web cache insert or replace (implements ``medrag.websearch.WebCache``)."""
        with self.transaction() as cur:
            cur.execute(
                "INSERT OR REPLACE INTO web_cache VALUES (?, ?, ?, ?)",
                [key, provider, _utcnow(), json.dumps(results, default=str)],
            )


def _row_to_case(row: Sequence[Any]) -> Case:
    return Case(
        case_id=row[0], label=row[1], dataset=row[2], image_path=row[3], thumb_path=row[4], report=row[5] or "",
        patient_id=row[6] or "", view=row[7] or "", synthetic=bool(row[8]), extra=json.loads(row[9] or "{}"),
    )
