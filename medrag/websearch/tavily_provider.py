"""Tavily search (``tavily-python``'s TavilyClient), restricted to the allowlist and sanitised."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from medrag.errors import WebSearchError
from medrag.records import WebResult
from medrag.websearch.providers import DEFAULT_TIMEOUT, ProviderSpec, register_provider
from medrag.websearch.redact import install_log_redaction, reply_detail
from medrag.websearch.sanitise import allowed_domain, dedupe_results, make_result, minimal_domains, normalise_allowlist

if TYPE_CHECKING:
    from medrag.config import Settings


class TavilyProvider:
    """Tavily search (``tavily-python``'s TavilyClient, which accepts ``api_base_url``)."""

    name = "tavily"

    def __init__(
        self,
        api_key: str,
        *,
        allowlist: Sequence[str],
        base_url: str | None = None,
        timeout: float = DEFAULT_TIMEOUT[1],
    ) -> None:
        if not api_key:
            # TavilyClient without a key silently switches to "keyless" mode; never allow that.
            raise WebSearchError("Tavily needs an API key; set TAVILY_API_KEY.")
        install_log_redaction()
        self._api_key = api_key
        self.allowlist = normalise_allowlist(allowlist)
        self.base_url = (base_url or "https://api.tavily.com").rstrip("/")
        self.timeout = float(timeout)

    def __repr__(self) -> str:
        return f"TavilyProvider(base_url={self.base_url!r})"

    def search(self, query: str, max_results: int) -> list[WebResult]:
        """Allowlisted results for ``query`` (restricted with ``include_domains``)."""
        import requests
        import tavily
        from tavily import errors as tavily_errors

        where = f"Tavily ({self.base_url})"
        client = tavily.TavilyClient(api_key=self._api_key, api_base_url=self.base_url)
        try:
            data = client.search(
                " ".join(query.split()),
                search_depth="basic",
                max_results=min(max(2 * max_results, 5), 20),
                include_domains=list(minimal_domains(self.allowlist)),
                include_images=True,
                include_image_descriptions=True,
                timeout=self.timeout,
            )
        except tavily_errors.TimeoutError:
            raise WebSearchError(
                f"{where} did not answer within {self.timeout:g} s; try again later or set MEDRAG_WEB=off."
            ) from None
        except (tavily_errors.InvalidAPIKeyError, tavily_errors.ForbiddenError):
            raise WebSearchError(f"{where} rejected the API key; check TAVILY_API_KEY.") from None
        except tavily_errors.UsageLimitExceededError:
            raise WebSearchError(f"{where} says the usage limit is reached; try later or use SerpAPI.") from None
        except tavily_errors.BadRequestError as exc:
            # The client passes the server's detail on as given: any JSON value, of any length.
            detail = reply_detail(exc.args[0] if exc.args and isinstance(exc.args[0], str) else "", [self._api_key])
            raise WebSearchError(f"{where} refused the request{': ' + detail if detail else ''}.") from None
        except requests.HTTPError as exc:
            status = exc.response.status_code if exc.response is not None else "error"
            raise WebSearchError(f"{where} answered HTTP {status}; try again later or set MEDRAG_WEB=off.") from None
        except requests.ConnectionError:
            raise WebSearchError(
                f"Cannot connect to {where}; check the network (or the Tavily base URL) or set MEDRAG_WEB=off."
            ) from None
        except requests.Timeout:
            raise WebSearchError(f"{where} did not answer in time; try again later or set MEDRAG_WEB=off.") from None
        except (requests.RequestException, ValueError, TypeError, AttributeError) as exc:
            # JSON decode errors are ValueErrors; a non-object body makes the client fail on .setdefault.
            raise WebSearchError(
                f"{where} returned a malformed response ({type(exc).__name__}); try again later."
            ) from None
        finally:
            client.close()
        if not isinstance(data, dict) or not isinstance(data.get("results", []), list):
            raise WebSearchError(f"{where} returned malformed results ('results' is not a list).")
        images = self._images_by_domain(data.get("images"))
        return dedupe_results(
            (
                make_result(
                    title=item.get("title"),
                    url=item.get("url"),
                    snippet=item.get("content"),
                    image_url=images.get(allowed_domain(str(item.get("url", "")), self.allowlist) or "", ""),
                    provider=self.name,
                    allowlist=self.allowlist,
                )
                for item in data["results"]
                if isinstance(item, dict)
            ),
            max_results,
        )

    def _images_by_domain(self, images: Any) -> dict[str, str]:
        """First allowlisted https image per allowlist domain (Tavily returns images per query, not per result)."""
        found: dict[str, str] = {}
        for image in images if isinstance(images, list) else []:
            url = image.get("url") if isinstance(image, dict) else image
            if not isinstance(url, str):
                continue
            domain = allowed_domain(url.strip(), self.allowlist, schemes=("https",))
            if domain and domain not in found:
                found[domain] = url.strip()
        return found


def _api_key(settings: Settings) -> str | None:
    return settings.tavily_api_key


def _build(settings: Settings) -> TavilyProvider:
    return TavilyProvider(
        settings.tavily_api_key or "", allowlist=settings.allowlist, base_url=settings.tavily_base_url
    )


register_provider(ProviderSpec("tavily", "TAVILY_API_KEY", _api_key, _build, auto_rank=1))

__all__ = ["TavilyProvider"]
