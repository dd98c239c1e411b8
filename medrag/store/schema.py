"""The database's shape as data: the newest tables (``CREATE``) and the steps from each older version (``MIGRATIONS``).

To change the shape: edit ``CREATE`` to the new shape, add ``MIGRATIONS[n]`` (the steps that turn a
version n-1 file into version n, new tables included), and raise ``SCHEMA_VERSION`` to n. A step is an SQL
statement, or a function of (cursor, data folder) for a change SQL alone cannot make (rewriting paths).
:mod:`medrag.store.connection` applies them when a file is opened, in one transaction.

Versions: 1, the first shape; 2, paths under the data folder stored relative to it (:mod:`medrag.store.paths`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path

import duckdb

from medrag.errors import StoreError
from medrag.store.paths import relativise_stored_paths

#: The shape this MedRAG writes; a file with a higher version is refused (it was made by a newer MedRAG).
SCHEMA_VERSION = 2

#: One migration step: an SQL statement, or a function of (cursor, data folder or None for ``:memory:``).
Step = str | Callable[[duckdb.DuckDBPyConnection, Path | None], None]

#: The key/value table that records ``schema_version`` (created first, so the version can be read).
META = "CREATE TABLE IF NOT EXISTS meta (key VARCHAR PRIMARY KEY, value VARCHAR)"

#: Builds the newest shape on an empty file (and is harmless on a current one: everything is IF NOT EXISTS).
CREATE: tuple[str, ...] = (
    META,
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
    # Teaching (medrag.store.teaching): lesson sets and their items, quiz answers, annotations.
    "CREATE SEQUENCE IF NOT EXISTS lesson_sets_id_seq START 1",
    """CREATE TABLE IF NOT EXISTS lesson_sets (
        set_id BIGINT PRIMARY KEY DEFAULT nextval('lesson_sets_id_seq'),
        name VARCHAR NOT NULL UNIQUE,
        description VARCHAR DEFAULT '',
        created_at TIMESTAMP NOT NULL,
        updated_at TIMESTAMP NOT NULL)""",
    "CREATE SEQUENCE IF NOT EXISTS lesson_items_id_seq START 1",
    """CREATE TABLE IF NOT EXISTS lesson_items (
        item_id BIGINT PRIMARY KEY DEFAULT nextval('lesson_items_id_seq'),
        set_id BIGINT NOT NULL,
        position INTEGER NOT NULL,
        ref_kind VARCHAR NOT NULL,
        ref_id VARCHAR NOT NULL,
        note VARCHAR DEFAULT '',
        added_at TIMESTAMP NOT NULL)""",
    "CREATE SEQUENCE IF NOT EXISTS quiz_answers_id_seq START 1",
    """CREATE TABLE IF NOT EXISTS quiz_answers (
        answer_id BIGINT PRIMARY KEY DEFAULT nextval('quiz_answers_id_seq'),
        session_id VARCHAR NOT NULL,
        quiz_name VARCHAR NOT NULL,
        learner VARCHAR NOT NULL,
        mode VARCHAR NOT NULL,
        question_no INTEGER NOT NULL,
        kind VARCHAR NOT NULL,
        ref_kind VARCHAR NOT NULL,
        ref_id VARCHAR NOT NULL,
        truth VARCHAR DEFAULT '',
        answer VARCHAR DEFAULT '',
        correct BOOLEAN NOT NULL,
        click_x DOUBLE,
        click_y DOUBLE,
        answered_at TIMESTAMP NOT NULL)""",
    "CREATE SEQUENCE IF NOT EXISTS annotations_id_seq START 1",
    """CREATE TABLE IF NOT EXISTS annotations (
        annotation_id BIGINT PRIMARY KEY DEFAULT nextval('annotations_id_seq'),
        ref_kind VARCHAR NOT NULL,
        ref_id VARCHAR NOT NULL,
        shape VARCHAR NOT NULL,
        x0 DOUBLE NOT NULL,
        y0 DOUBLE NOT NULL,
        x1 DOUBLE NOT NULL,
        y1 DOUBLE NOT NULL,
        label VARCHAR DEFAULT '',
        created_at TIMESTAMP NOT NULL)""",
)

#: version n → the steps that turn a version n-1 file into version n (version 1 is the first shape).
MIGRATIONS: Mapping[int, tuple[Step, ...]] = {
    2: (relativise_stored_paths,),
}

#: The tables of the newest shape, in the order a copy (backup check, repair) visits them.
TABLES: tuple[str, ...] = ("meta", "cases", "embeddings", "sources", "analyses", "web_cache",
                          "lesson_sets", "lesson_items", "quiz_answers", "annotations")


def migration_steps(found: int, target: int) -> list[tuple[int, tuple[Step, ...]]]:
    """The (version, statements) steps that bring a version ``found`` file to ``target``, oldest first."""
    missing = [v for v in range(found + 1, target + 1) if v not in MIGRATIONS]
    if missing:
        raise StoreError(
            f"No migration to schema version(s) {missing} in medrag.store.schema (a bug: please report it)."
        )
    return [(v, MIGRATIONS[v]) for v in range(found + 1, target + 1)]
