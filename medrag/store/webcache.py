"""The web-result cache (the ``web_cache`` table): query key → the results a provider returned."""

from __future__ import annotations

import json
from typing import Any

from medrag.store.connection import Database, utcnow


class WebCacheStore(Database):
    """Reads and writes ``web_cache``; implements ``medrag.websearch.WebCache``."""

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
                [key, provider, utcnow(), json.dumps(results, default=str)],
            )
