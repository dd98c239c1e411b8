"""Keeping search results between runs: the cache interface, an in-memory cache, and the cache key."""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Iterable, Sequence
from typing import Protocol, runtime_checkable

from medrag.records import WebResult
from medrag.websearch.sanitise import dedupe_results, make_result, normalise_allowlist


@runtime_checkable
class WebCache(Protocol):
    """Where search results are kept between runs (the app implements it on the DuckDB store)."""

    def get(self, key: str) -> list[dict] | None:
        """The cached result dicts for ``key``, or None on a miss."""
        ...

    def put(self, key: str, provider: str, results: list[dict]) -> None:
        """Store result dicts (``dataclasses.asdict(WebResult)``) under ``key``."""
        ...


class DictWebCache:
    """An in-memory, thread-safe :class:`WebCache` (tests, one-off scripts)."""

    def __init__(self) -> None:
        self._data: dict[str, tuple[str, list[dict]]] = {}
        self._lock = threading.Lock()

    def get(self, key: str) -> list[dict] | None:
        """The cached result dicts for ``key`` (copies), or None."""
        with self._lock:
            hit = self._data.get(key)
            return [dict(item) for item in hit[1]] if hit else None

    def put(self, key: str, provider: str, results: list[dict]) -> None:
        """Store copies of ``results``."""
        with self._lock:
            self._data[key] = (provider, [dict(item) for item in results])

    def __len__(self) -> int:
        with self._lock:
            return len(self._data)


def normalise_query(query: str) -> str:
    """Case-folded, whitespace-collapsed query (what the cache key uses)."""
    return " ".join(query.casefold().split())


def allowlist_hash(allowlist: Iterable[str]) -> str:
    """A short, order-insensitive hash of the allowlist."""
    joined = "\n".join(sorted(normalise_allowlist(allowlist)))
    return hashlib.sha256(joined.encode("utf-8")).hexdigest()[:16]


def cache_key(provider: str, query: str, allowlist: Iterable[str], max_results: int) -> str:
    """``provider|normalised query|n<max_results>|allowlist hash``."""
    return f"{provider}|{normalise_query(query)}|n{max_results}|{allowlist_hash(allowlist)}"


def results_from_cache(items: list[dict], allowlist: Sequence[str], limit: int) -> list[WebResult]:
    """Cached result dicts as WebResults, sanitised again: the cache lives on disk and may predate a stricter rule."""
    return dedupe_results(
        (
            make_result(
                title=item.get("title"),
                url=item.get("url"),
                snippet=item.get("snippet"),
                image_url=item.get("image_url", ""),
                provider=str(item.get("provider", "")),
                allowlist=allowlist,
            )
            for item in items
            if isinstance(item, dict)
        ),
        limit,
    )


__all__ = ["DictWebCache", "WebCache", "allowlist_hash", "cache_key", "normalise_query", "results_from_cache"]
