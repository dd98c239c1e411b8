"""Which store a run uses: PostgreSQL when the settings name a database URL, else the data folder's DuckDB file."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from medrag.config import Settings
    from medrag.store import Store
    from medrag.store.pg import PgStore


def open_store(settings: Settings) -> Store | PgStore:
    """The store for ``settings``: :class:`~medrag.store.pg.PgStore` on ``settings.database_url`` when set
    (files such as thumbnails stay under ``settings.data_dir``, which replicas must share), else the DuckDB
    :class:`~medrag.store.Store` at ``settings.db_path``."""
    if settings.database_url:
        # Imported here: psycopg is only needed by deployments that use PostgreSQL.
        from medrag.store.pg import PgStore

        return PgStore(settings.database_url, data_root=settings.data_dir)
    from medrag.store import Store

    return Store(settings.db_path)
