"""The PostgreSQL store's shape as data: the newest tables (``CREATE``) and the steps from each older version.

The same tables and columns as the DuckDB file (:mod:`medrag.store.schema`) in PostgreSQL's types: vectors
are ``real[]``, the analyses' JSON columns are text (decoded on read, as in DuckDB, so both stores return
the same frames), and ``embeddings.serial`` numbers every written vector so that
:meth:`~medrag.store.pg.PgStore.embeddings_stamp` changes whenever one is added or replaced.

To change the shape: edit ``CREATE``, add ``MIGRATIONS[n]`` (SQL statements, or functions of a cursor, that
turn a version n-1 database into version n) and raise ``SCHEMA_VERSION`` to n. The versions are this
backend's own (a new PostgreSQL database starts at the newest shape; paths are stored relative from the start).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from medrag.errors import StoreError

#: The shape this MedRAG writes; a database with a higher version is refused (a newer MedRAG made it).
SCHEMA_VERSION = 2

#: One migration step: an SQL statement, or a function of a psycopg cursor.
Step = str | Callable[[Any], None]

#: The key/value table that records ``schema_version`` (created first, so the version can be read).
META = "CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT)"

#: A constant key for ``pg_advisory_xact_lock``: replicas starting together set the schema up one at a time.
SCHEMA_LOCK_KEY = 0x6D656472  # "medr"

#: Builds the newest shape on an empty database (harmless on a current one: everything is IF NOT EXISTS).
CREATE: tuple[str, ...] = (
    META,
    """CREATE TABLE IF NOT EXISTS cases (
        case_id TEXT PRIMARY KEY,
        label TEXT NOT NULL,
        dataset TEXT NOT NULL,
        image_path TEXT NOT NULL,
        thumb_path TEXT NOT NULL,
        report TEXT DEFAULT '',
        patient_id TEXT DEFAULT '',
        view TEXT DEFAULT '',
        synthetic BOOLEAN DEFAULT FALSE,
        extra TEXT DEFAULT '{}',
        width INTEGER,
        height INTEGER,
        added_at TIMESTAMP)""",
    "CREATE INDEX IF NOT EXISTS cases_order ON cases (added_at, case_id)",
    """CREATE TABLE IF NOT EXISTS embeddings (
        case_id TEXT NOT NULL,
        encoder TEXT NOT NULL,
        version TEXT NOT NULL,
        vector REAL[] NOT NULL,
        serial BIGSERIAL NOT NULL,
        PRIMARY KEY (case_id, encoder))""",
    """CREATE TABLE IF NOT EXISTS analyses (
        id BIGSERIAL PRIMARY KEY,
        created_at TIMESTAMP NOT NULL,
        input_kind TEXT NOT NULL,
        input_name TEXT DEFAULT '',
        image_hash TEXT DEFAULT '',
        thumb_path TEXT DEFAULT '',
        upload_path TEXT DEFAULT '',
        question TEXT DEFAULT '',
        encoder TEXT DEFAULT '',
        reasoner_backend TEXT DEFAULT '',
        reasoner_model TEXT DEFAULT '',
        summariser_backend TEXT DEFAULT '',
        reasoning TEXT DEFAULT '',
        label TEXT DEFAULT '',
        findings TEXT DEFAULT '{}',
        neighbours TEXT DEFAULT '[]',
        web_results TEXT DEFAULT '[]',
        web_status TEXT DEFAULT '',
        guard TEXT DEFAULT '{}',
        meta TEXT DEFAULT '{}',
        timings TEXT DEFAULT '{}',
        errors TEXT DEFAULT '[]',
        total_seconds DOUBLE PRECISION DEFAULT 0,
        notes TEXT DEFAULT '',
        tags TEXT DEFAULT '[]')""",
    """CREATE TABLE IF NOT EXISTS sources (
        source_key TEXT PRIMARY KEY,
        size BIGINT NOT NULL,
        mtime_ns BIGINT NOT NULL,
        case_id TEXT NOT NULL)""",
    """CREATE TABLE IF NOT EXISTS web_cache (
        key TEXT PRIMARY KEY,
        provider TEXT NOT NULL,
        created_at TIMESTAMP NOT NULL,
        results TEXT NOT NULL)""",
)

#: Version 2: the teaching tables (medrag.store.teaching), the DuckDB file's columns in PostgreSQL's types.
TEACHING: tuple[str, ...] = (
    """CREATE TABLE IF NOT EXISTS lesson_sets (
        set_id BIGSERIAL PRIMARY KEY,
        name TEXT NOT NULL UNIQUE,
        description TEXT DEFAULT '',
        created_at TIMESTAMP NOT NULL,
        updated_at TIMESTAMP NOT NULL)""",
    """CREATE TABLE IF NOT EXISTS lesson_items (
        item_id BIGSERIAL PRIMARY KEY,
        set_id BIGINT NOT NULL,
        position INTEGER NOT NULL,
        ref_kind TEXT NOT NULL,
        ref_id TEXT NOT NULL,
        note TEXT DEFAULT '',
        added_at TIMESTAMP NOT NULL)""",
    "CREATE INDEX IF NOT EXISTS lesson_items_set ON lesson_items (set_id, position)",
    """CREATE TABLE IF NOT EXISTS quiz_answers (
        answer_id BIGSERIAL PRIMARY KEY,
        session_id TEXT NOT NULL,
        quiz_name TEXT NOT NULL,
        learner TEXT NOT NULL,
        mode TEXT NOT NULL,
        question_no INTEGER NOT NULL,
        kind TEXT NOT NULL,
        ref_kind TEXT NOT NULL,
        ref_id TEXT NOT NULL,
        truth TEXT DEFAULT '',
        answer TEXT DEFAULT '',
        correct BOOLEAN NOT NULL,
        click_x DOUBLE PRECISION,
        click_y DOUBLE PRECISION,
        answered_at TIMESTAMP NOT NULL)""",
    """CREATE TABLE IF NOT EXISTS annotations (
        annotation_id BIGSERIAL PRIMARY KEY,
        ref_kind TEXT NOT NULL,
        ref_id TEXT NOT NULL,
        shape TEXT NOT NULL,
        x0 DOUBLE PRECISION NOT NULL,
        y0 DOUBLE PRECISION NOT NULL,
        x1 DOUBLE PRECISION NOT NULL,
        y1 DOUBLE PRECISION NOT NULL,
        label TEXT DEFAULT '',
        created_at TIMESTAMP NOT NULL)""",
)
CREATE = CREATE + TEACHING

#: version n → the steps that turn a version n-1 database into version n (version 1 is the first shape).
MIGRATIONS: Mapping[int, tuple[Step, ...]] = {2: TEACHING}

#: The tables of the newest shape.
TABLES: tuple[str, ...] = ("meta", "cases", "embeddings", "sources", "analyses", "web_cache",
                          "lesson_sets", "lesson_items", "quiz_answers", "annotations")


def migration_steps(found: int, target: int) -> list[tuple[int, tuple[Step, ...]]]:
    """The (version, steps) that bring a version ``found`` database to ``target``, oldest first."""
    missing = [v for v in range(found + 1, target + 1) if v not in MIGRATIONS]
    if missing:
        raise StoreError(
            f"No migration to schema version(s) {missing} in medrag.store.pg.schema (a bug: please report it)."
        )
    return [(v, MIGRATIONS[v]) for v in range(found + 1, target + 1)]
