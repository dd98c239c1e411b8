"""The DuckDB store: library cases, embeddings, the analysis history and the web-result cache.

One file (``settings.db_path``), or ``":memory:"`` for a private in-memory database (tests, throwaway
work). All SQL is parameterised. The package, one job per module:

- :mod:`~medrag.store.connection`: the shared connection per file, lock retry, cursors, transactions, schema set-up
- :mod:`~medrag.store.schema`: the tables as data and the migrations between schema versions
- :mod:`~medrag.store.cases`: the library's cases
- :mod:`~medrag.store.embeddings`: vectors per encoder version
- :mod:`~medrag.store.ingest`: source fingerprints and the all-or-nothing ingest batch
- :mod:`~medrag.store.analyses`: the analysis history (:class:`~medrag.analysis.Analysis` rows)
- :mod:`~medrag.store.webcache`: the web-result cache
- :mod:`~medrag.store.teaching`: lesson sets, quiz answers and annotations

Each table's class is a :class:`~medrag.store.connection.Database` that can be opened alone; :class:`Store`
is all of them on one database.
"""

from __future__ import annotations

from medrag.store.analyses import AnalysisStore
from medrag.store.cases import CaseStore
from medrag.store.connection import Database
from medrag.store.embeddings import EmbeddingStore
from medrag.store.ingest import IngestStore
from medrag.store.schema import SCHEMA_VERSION
from medrag.store.stamps import StampStore
from medrag.store.teaching import TeachingStore
from medrag.store.webcache import WebCacheStore

__all__ = ["SCHEMA_VERSION", "Database", "Store"]


class Store(CaseStore, IngestStore, EmbeddingStore, AnalysisStore, WebCacheStore, TeachingStore, StampStore):
    """Cases, embeddings, analyses (history) and the web cache in one DuckDB file (or ``:memory:``)."""
