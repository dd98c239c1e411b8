"""Which store a run uses: PostgreSQL when the settings name a database URL, else the data folder's DuckDB file."""

from __future__ import annotations

from typing import TYPE_CHECKING, TypeAlias

if TYPE_CHECKING:
    from medrag.config import Settings
    from medrag.store import Store
    from medrag.store.pg import PgStore

#: Either history store; both offer the same methods. A string so importing it needs neither backend loaded
#: (and psycopg stays optional); modules that only annotate with it import it under ``TYPE_CHECKING``.
AnyStore: TypeAlias = "Store | PgStore"


def open_store(settings: Settings) -> AnyStore:
    """The store for ``settings``: :class:`~medrag.store.pg.PgStore` on ``settings.database_url`` when set
    (files such as thumbnails stay under ``settings.data_dir``, which replicas must share), else the DuckDB
    :class:`~medrag.store.Store` at ``settings.db_path``."""
    if settings.database_url:
        # Imported here: psycopg is only needed by deployments that use PostgreSQL.
        from medrag.store.pg import PgStore

        return PgStore(settings.database_url, data_root=settings.data_dir)
    from medrag.store import Store

    return Store(settings.db_path)
