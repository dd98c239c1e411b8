"""The PostgreSQL store: the same interface as the DuckDB :class:`~medrag.store.Store`, shared by many processes.

Chosen by ``MEDRAG_DATABASE_URL=postgresql://…`` (or ``--database-url``) through
:func:`medrag.store.factory.open_store`. One job per module:

- :mod:`~medrag.store.pg.connection`: the connection pool, cursors, transactions, schema set-up and migrations
- :mod:`~medrag.store.pg.schema`: the tables as data and the migrations between schema versions
- :mod:`~medrag.store.pg.library`: cases, embeddings (and their stamp), source fingerprints, ingest batches
- :mod:`~medrag.store.pg.history`: the analysis history and the web-result cache
- :mod:`~medrag.store.pg.teaching`: lesson sets, quiz answers and annotations (the DuckDB store's queries)
"""

from __future__ import annotations

from medrag.store.pg.connection import PgDatabase, describe_url, is_database_url
from medrag.store.pg.history import PgHistory
from medrag.store.pg.library import PgLibrary
from medrag.store.pg.schema import SCHEMA_VERSION
from medrag.store.pg.teaching import PgTeaching

__all__ = ["SCHEMA_VERSION", "PgDatabase", "PgStore", "describe_url", "is_database_url"]


class PgStore(PgLibrary, PgHistory, PgTeaching):
    """Cases, embeddings, analyses (history), the web cache and the teaching tables in one PostgreSQL database."""

    #: several processes write it: each one's FAISS cache asks it (throttled) whether vectors changed
    shared = True
