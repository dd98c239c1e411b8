"""The database's shape as data: the newest tables (``CREATE``) and the steps from each older version (``MIGRATIONS``).

To change the shape: edit ``CREATE`` to the new shape, add ``MIGRATIONS[n]`` (the statements that turn a
version n-1 file into version n, new tables included), and raise ``SCHEMA_VERSION`` to n.
:mod:`medrag.store.connection` applies them when a file is opened.
"""

from __future__ import annotations

from collections.abc import Mapping

from medrag.errors import StoreError

#: The shape this MedRAG writes; a file with a higher version is refused (it was made by a newer MedRAG).
SCHEMA_VERSION = 1

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
)

#: version n → the statements that turn a version n-1 file into version n (version 1 is the first shape).
MIGRATIONS: Mapping[int, tuple[str, ...]] = {}


def migration_steps(found: int, target: int) -> list[tuple[int, tuple[str, ...]]]:
    """The (version, statements) steps that bring a version ``found`` file to ``target``, oldest first."""
    missing = [v for v in range(found + 1, target + 1) if v not in MIGRATIONS]
    if missing:
        raise StoreError(
            f"No migration to schema version(s) {missing} in medrag.store.schema (a bug: please report it)."
        )
    return [(v, MIGRATIONS[v]) for v in range(found + 1, target + 1)]
