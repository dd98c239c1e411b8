"""Google results through SerpAPI (the ``serpapi`` package's Client), sanitised and allowlisted."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from medrag.errors import WebSearchError
from medrag.records import WebResult
from medrag.websearch.providers import DEFAULT_TIMEOUT, ProviderSpec, register_provider
from medrag.websearch.query import site_query
from medrag.websearch.redact import install_log_redaction, reply_detail
from medrag.websearch.sanitise import dedupe_results, make_result, normalise_allowlist

if TYPE_CHECKING:
    from medrag.config import Settings


class SerpApiProvider:
    """Google results through SerpAPI (``serpapi`` package's Client, endpoint overridable).

    ``serpapi.Client`` builds its URL from the ``BASE_DOMAIN`` attribute, so a base URL is
    injected by setting it on the instance (tests point it at 127.0.0.1). The client sends the request
    (key, user agent, timeout); the answer is checked here (:meth:`_fetch`).
    """

    name = "serpapi"

    def __init__(
        self,
        api_key: str,
        *,
        allowlist: Sequence[str],
        base_url: str | None = None,
        timeout: tuple[float, float] = DEFAULT_TIMEOUT,
    ) -> None:
        if not api_key:
            raise WebSearchError("SerpAPI needs an API key; set SERPAPI_API_KEY.")
        # The key travels in the query string, which urllib3 logs at DEBUG.
        install_log_redaction()
        self._api_key = api_key
        self.allowlist = normalise_allowlist(allowlist)
        self.base_url = (base_url or "https://serpapi.com").rstrip("/")
        self.timeout = timeout

    def __repr__(self) -> str:
        return f"SerpApiProvider(base_url={self.base_url!r})"

    def search(self, query: str, max_results: int) -> list[WebResult]:
        """Allowlisted organic results for ``query`` (biased with ``site:`` terms)."""
        payload = self._fetch(query)
        organic = payload.get("organic_results", [])
        error = payload.get("error")
        if error and not organic:
            if isinstance(error, str) and ("hasn't returned any results" in error or "no results" in error.lower()):
                return []
            detail = reply_detail(error, [self._api_key]) or "no description"
            raise WebSearchError(f"{self._where} reported an error: {detail}; try again later or set MEDRAG_WEB=off.")
        if not isinstance(organic, list):
            raise WebSearchError(f"{self._where} returned malformed results ('organic_results' is not a list).")
        return dedupe_results(
            (
                make_result(
                    title=item.get("title"),
                    url=item.get("link"),
                    snippet=item.get("snippet"),
                    image_url=item.get("thumbnail", ""),
                    provider=self.name,
                    allowlist=self.allowlist,
                )
                for item in organic
                if isinstance(item, dict)
            ),
            max_results,
        )

    @property
    def _where(self) -> str:
        return f"SerpAPI ({self.base_url})"

    def _fetch(self, query: str) -> dict[str, Any]:
        """The JSON object SerpAPI answered; every failure is a WebSearchError without the key.

        The status and body are read here rather than by ``serpapi``'s own error path, which fails with an
        AttributeError on an error body that is not a JSON object (a list, a string), chained to a requests
        error whose text holds the request URL, key included.
        """
        import requests
        import serpapi

        client = serpapi.Client(api_key=self._api_key, timeout=self.timeout)
        client.BASE_DOMAIN = self.base_url
        where = self._where
        params = {
            "engine": "google", "q": site_query(query, self.allowlist), "num": 10, "safe": "active", "output": "json",
        }
        try:
            response = client.request("GET", "/search", params=params, assert_200=False)
            status = response.status_code
            content_type = response.headers.get("Content-Type", "").split(";", 1)[0].strip().lower()
            body = response.text
        except serpapi.TimeoutError:
            raise WebSearchError(
                f"{where} did not answer within {self.timeout[1]:g} s; try again later or set MEDRAG_WEB=off."
            ) from None
        except serpapi.HTTPConnectionError:
            raise WebSearchError(
                f"Cannot connect to {where}; check the network (or the SerpAPI base URL) or set MEDRAG_WEB=off."
            ) from None
        except (requests.RequestException, ValueError, TypeError) as exc:
            raise WebSearchError(
                f"{where} request failed ({type(exc).__name__}); check the SerpAPI base URL or set MEDRAG_WEB=off."
            ) from None
        finally:
            client.session.close()
        try:
            data: Any = json.loads(body)
        except ValueError:
            data = body if content_type.startswith("text/") and content_type != "text/html" else None
        if status != 200:
            detail = reply_detail(data.get("error") if isinstance(data, dict) else data, [self._api_key])
            hint = " Check SERPAPI_API_KEY." if status in (401, 403) else " Try again later or set MEDRAG_WEB=off."
            raise WebSearchError(f"{where} answered HTTP {status}{': ' + detail if detail else ''}.{hint}")
        if not isinstance(data, dict):
            raise WebSearchError(f"{where} returned a response that is not a JSON object; try again later.")
        return data


def _api_key(settings: Settings) -> str | None:
    return settings.serpapi_api_key


def _build(settings: Settings) -> SerpApiProvider:
    return SerpApiProvider(
        settings.serpapi_api_key or "", allowlist=settings.allowlist, base_url=settings.serpapi_base_url
    )


register_provider(ProviderSpec("serpapi", "SERPAPI_API_KEY", _api_key, _build, auto_rank=0))

__all__ = ["SerpApiProvider"]
