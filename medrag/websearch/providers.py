"""Search providers behind one interface, a registry of them, and the choice the settings make.

Built-in providers (SerpAPI, Tavily) register themselves when their module is imported, on the first lookup.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol, runtime_checkable

from medrag.records import WebResult
from medrag.registry import Registry

if TYPE_CHECKING:
    from medrag.config import Settings

#: (connect, read) seconds for SerpAPI; Tavily's client takes one number (the read value is used).
DEFAULT_TIMEOUT: tuple[float, float] = (5.0, 20.0)
NO_KEY_STATUS = "web search off: set SERPAPI_API_KEY or TAVILY_API_KEY"


@runtime_checkable
class WebSearchProvider(Protocol):
    """A search backend returning sanitised, allowlisted results."""

    name: str

    def search(self, query: str, max_results: int) -> list[WebResult]:
        """At most ``max_results`` results; raises WebSearchError on any provider failure."""
        ...


@dataclass(frozen=True)
class ProviderSpec:
    """A registry entry: how to build a provider from the settings, and which key it needs."""

    name: str
    #: The variable that holds the key (named in the "web search off" status).
    key_variable: str
    api_key: Callable[[Settings], str | None]
    #: Called only when ``api_key(settings)`` is set.
    build: Callable[[Settings], WebSearchProvider]
    #: Lower ranks are tried first when ``web_provider="auto"``.
    auto_rank: int = 100


registry: Registry[ProviderSpec] = Registry(
    "web provider", ["medrag.websearch.serpapi_provider", "medrag.websearch.tavily_provider"]
)


def register_provider(spec: ProviderSpec) -> None:
    """Add (or replace) a web search provider."""
    registry.register(spec.name, spec)


def build_provider(settings: Settings) -> WebSearchProvider | None:
    """The configured provider, or None when web search is off or has no key.

    ``web_provider="auto"`` picks the first provider (by ``auto_rank``: SerpAPI, then Tavily) whose key is
    set, else None.
    """
    choice = settings.web_provider
    if choice == "off":
        return None
    names = registry.names() if choice == "auto" else [choice]
    for spec in sorted((registry.get(name) for name in names), key=lambda spec: (spec.auto_rank, spec.name)):
        if spec.api_key(settings):
            return spec.build(settings)
    return None


def off_status(settings: Settings) -> str:
    """Why :func:`build_provider` gave no provider, as the one-line status the UI shows."""
    if settings.web_provider == "off":
        return "web search off (MEDRAG_WEB=off)"
    if settings.web_provider == "auto":
        return NO_KEY_STATUS
    return f"web search off: set {registry.get(settings.web_provider).key_variable}"


__all__ = [
    "DEFAULT_TIMEOUT",
    "NO_KEY_STATUS",
    "ProviderSpec",
    "WebSearchProvider",
    "build_provider",
    "off_status",
    "register_provider",
    "registry",
]
