"""The one call the pipeline makes: trusted references for a query, through an optional cache."""

from __future__ import annotations

import logging
from dataclasses import asdict
from typing import TYPE_CHECKING

from medrag.errors import MedRAGError, WebSearchError
from medrag.records import WebResult
from medrag.websearch.cache import WebCache, cache_key, results_from_cache
from medrag.websearch.providers import build_provider, off_status

if TYPE_CHECKING:
    from medrag.config import Settings

log = logging.getLogger("medrag")


def _status(count: int, provider: str, cached: bool, note: str = "") -> str:
    noun = "result" if count == 1 else "results"
    return f"{count} {noun} from {provider}{' (cached)' if cached else ''}{note}"


def search_references(
    query: str, settings: Settings, cache: WebCache | None = None
) -> tuple[list[WebResult], str]:
    """Trusted references for ``query`` and a one-line status for the UI.

    Returns ``([], "web search off: ...")`` when no provider is configured (never raises for
    that). Provider failures raise :class:`WebSearchError` (an unexpected exception from a provider
    becomes one too, naming only its type). Cache failures are not fatal: the
    search runs uncached and the status says so.
    """
    provider = build_provider(settings)
    if provider is None:
        return [], off_status(settings)
    if not query.strip():
        return [], "web search skipped: empty query"
    limit = settings.web_max_results
    key = cache_key(provider.name, query, settings.allowlist, limit)
    note = ""
    if cache is not None:
        try:
            hit = cache.get(key)
        except MedRAGError:
            hit, note = None, " (cache unavailable)"
        if hit is not None:
            results = results_from_cache(hit, settings.allowlist, limit)
            return results, _status(len(results), provider.name, cached=True)
    try:
        results = provider.search(query, limit)
    except MedRAGError:
        raise
    except Exception as exc:
        # The last guard against a reply no provider check foresaw. Only the type is named, and the original
        # is not chained: an HTTP library's error text can hold the request URL, key and all.
        log.warning("web search via %s failed unexpectedly (%s)", provider.name, type(exc).__name__)
        raise WebSearchError(
            f"web search via {provider.name} failed on an unexpected reply ({type(exc).__name__}); "
            "try again later or set MEDRAG_WEB=off."
        ) from None
    if cache is not None and not note:
        try:
            cache.put(key, provider.name, [asdict(r) for r in results])
        except MedRAGError:
            note = " (cache unavailable)"
    return results, _status(len(results), provider.name, cached=False, note=note)


__all__ = ["search_references"]
