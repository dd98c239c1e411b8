"""Trusted web references: SerpAPI or Tavily behind one interface, filtered to an allowlist.

- :mod:`~medrag.websearch.sanitise`: allowlisted http(s) links, HTML-free titles and snippets;
- :mod:`~medrag.websearch.query`: the query for a finding and its ``site:`` bias;
- :mod:`~medrag.websearch.providers`: the provider interface, their registry and the settings' choice;
- :mod:`~medrag.websearch.serpapi_provider`, :mod:`~medrag.websearch.tavily_provider`: the two providers;
- :mod:`~medrag.websearch.cache`: the result cache interface and its key;
- :mod:`~medrag.websearch.redact`: API keys kept out of logs (:func:`install_log_redaction`) and errors;
- :mod:`~medrag.websearch.search`: :func:`search_references`, what the pipeline calls. It never raises when
  no key is set (it says how to turn web search on) and goes through an optional :class:`WebCache`.
"""

from medrag.websearch.cache import (
    DictWebCache,
    WebCache,
    allowlist_hash,
    cache_key,
    normalise_query,
)
from medrag.websearch.providers import (
    DEFAULT_TIMEOUT,
    NO_KEY_STATUS,
    ProviderSpec,
    WebSearchProvider,
    build_provider,
    register_provider,
)
from medrag.websearch.query import site_query, web_query_for
from medrag.websearch.redact import install_log_redaction
from medrag.websearch.sanitise import (
    MAX_SNIPPET_CHARS,
    MAX_TITLE_CHARS,
    allowed_domain,
    make_result,
    minimal_domains,
    normalise_allowlist,
    strip_html,
)
from medrag.websearch.search import search_references
from medrag.websearch.serpapi_provider import SerpApiProvider
from medrag.websearch.tavily_provider import TavilyProvider

__all__ = [
    "DEFAULT_TIMEOUT",
    "MAX_SNIPPET_CHARS",
    "MAX_TITLE_CHARS",
    "NO_KEY_STATUS",
    "DictWebCache",
    "ProviderSpec",
    "SerpApiProvider",
    "TavilyProvider",
    "WebCache",
    "WebSearchProvider",
    "allowed_domain",
    "allowlist_hash",
    "build_provider",
    "cache_key",
    "install_log_redaction",
    "make_result",
    "minimal_domains",
    "normalise_allowlist",
    "normalise_query",
    "register_provider",
    "search_references",
    "site_query",
    "strip_html",
    "web_query_for",
]
