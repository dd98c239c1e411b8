"""Trusted web references: SerpAPI or Tavily behind one interface, filtered to an allowlist.

Every result is sanitised before anyone sees it: only ``http(s)`` links whose host is an
allowlisted domain or one of its subdomains (``pubmed.ncbi.nlm.nih.gov`` matches ``nih.gov``,
``nih.gov.evil.com`` does not), no credentials or backslashes in URLs, HTML stripped from titles
and snippets with a real parser, images only over ``https`` from allowlisted domains. Queries
are biased to the same sites (``site:`` terms for Google via SerpAPI, ``include_domains`` for
Tavily). Errors never echo the API key.

:func:`search_references` is what the pipeline calls: it never raises when no key is set
(it says how to turn web search on) and goes through an optional :class:`WebCache`.
"""

from __future__ import annotations

import hashlib
import logging
import re
import threading
import unicodedata
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict
from html.parser import HTMLParser
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable
from urllib.parse import urlsplit

from medrag.errors import MedRAGError, WebSearchError
from medrag.records import WebResult

if TYPE_CHECKING:
    from medrag.config import Settings

#: (connect, read) seconds for SerpAPI; Tavily's client takes one number (the read value is used).
DEFAULT_TIMEOUT: tuple[float, float] = (5.0, 20.0)
MAX_TITLE_CHARS = 200
MAX_SNIPPET_CHARS = 500
#: Google ignores words after the 32nd, so the site: bias is capped to fit.
_SECRET_PARAM = re.compile(r"((?:api_key|apikey|api-key|key|token)=)[^&\s'\"]+", re.IGNORECASE)


class _RedactSecrets(logging.Filter):
    """urllib3 logs request URLs at DEBUG, and SerpAPI puts the key in the query string: mask it."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if "=" in message:
            record.msg, record.args = _SECRET_PARAM.sub(r"\1***", message), None
        return True


for _logger_name in ("urllib3.connectionpool", "httpx", "httpcore", "requests"):
    logging.getLogger(_logger_name).addFilter(_RedactSecrets())

_GOOGLE_MAX_WORDS = 32
NO_KEY_STATUS = "web search off: set SERPAPI_API_KEY or TAVILY_API_KEY"


@runtime_checkable
class WebSearchProvider(Protocol):
    """A search backend returning sanitised, allowlisted results."""

    name: str

    def search(self, query: str, max_results: int) -> list[WebResult]:
        """At most ``max_results`` results; raises WebSearchError on any provider failure."""
        ...


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


# ---------------------------------------------------------------- sanitising


class _TextExtractor(HTMLParser):
    """Collects text nodes, dropping script/style contents; entities are decoded by the parser."""

    _SKIP = {"script", "style", "template", "noscript"}
    _BLOCK = {"br", "p", "div", "li", "tr", "td", "h1", "h2", "h3", "h4"}

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self._skipping = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in self._SKIP:
            self._skipping += 1
        elif tag in self._BLOCK:
            self.parts.append(" ")

    def handle_endtag(self, tag: str) -> None:
        if tag in self._SKIP and self._skipping:
            self._skipping -= 1
        elif tag in self._BLOCK:
            self.parts.append(" ")

    def handle_data(self, data: str) -> None:
        if not self._skipping:
            self.parts.append(data)


def strip_html(text: str, max_chars: int = MAX_SNIPPET_CHARS) -> str:
    """Plain text from an HTML fragment: tags removed, entities decoded, whitespace collapsed.

    Control and invisible formatting characters are dropped; the result is cut to ``max_chars``
    (with an ellipsis) so a provider cannot flood the page.
    """
    if not text:
        return ""
    parser = _TextExtractor()
    parser.feed(str(text))
    parser.close()
    plain = "".join(parser.parts)
    plain = "".join(ch for ch in plain if unicodedata.category(ch) not in {"Cc", "Cf", "Co", "Cs"} or ch in "\t\n")
    plain = re.sub(r"\s+", " ", plain).strip()
    if len(plain) > max_chars:
        plain = plain[: max_chars - 1].rstrip() + "…"
    return plain


def normalise_allowlist(allowlist: Iterable[str]) -> tuple[str, ...]:
    """Lower-cased bare domains, deduplicated in order; entries like ``https://x.org/`` become ``x.org``."""
    domains: dict[str, None] = {}
    for entry in allowlist:
        entry = str(entry).strip().lower()
        if "//" in entry:
            entry = urlsplit(entry).hostname or ""
        entry = entry.strip(".").removeprefix("*.").removeprefix("www.")
        if entry and re.fullmatch(r"[a-z0-9.-]+", entry) and "." in entry:
            domains[entry] = None
    return tuple(domains)


def minimal_domains(allowlist: Iterable[str]) -> tuple[str, ...]:
    """The allowlist without entries already covered by a parent (``ncbi.nlm.nih.gov`` under ``nih.gov``)."""
    domains = normalise_allowlist(allowlist)
    return tuple(d for d in domains if not any(d != p and d.endswith("." + p) for p in domains))


def allowed_domain(url: str, allowlist: Sequence[str], *, schemes: Iterable[str] = ("http", "https")) -> str | None:
    """The allowlist entry ``url`` belongs to, or None when the URL is not safe to link.

    A URL is refused when its scheme is not in ``schemes``, it carries credentials
    (``https://nih.gov@evil.com``), contains backslashes, whitespace or control characters
    (browsers and parsers disagree on those), has a non-ASCII host, or its host is not an
    allowlisted domain or a subdomain of one.
    """
    if not isinstance(url, str) or not url or len(url) > 2048:
        return None
    if "\\" in url or any(ch.isspace() or unicodedata.category(ch) in {"Cc", "Cf"} for ch in url):
        return None
    try:
        parts = urlsplit(url)
        host = parts.hostname
        parts.port  # noqa: B018 - raises ValueError on a malformed port
    except ValueError:
        return None
    if parts.scheme.lower() not in set(schemes) or not host or "@" in parts.netloc:
        return None
    host = host.rstrip(".")
    if not host.isascii():
        return None
    for domain in normalise_allowlist(allowlist):
        if host == domain or host.endswith("." + domain):
            return domain
    return None


def make_result(
    *,
    title: Any,
    url: Any,
    snippet: Any,
    image_url: Any = "",
    provider: str,
    allowlist: Sequence[str],
) -> WebResult | None:
    """A sanitised :class:`WebResult`, or None when the link is not allowlisted http(s)."""
    if not isinstance(url, str):
        return None
    url = url.strip()
    domain = allowed_domain(url, allowlist)
    if domain is None:
        return None
    host = (urlsplit(url).hostname or domain).rstrip(".")
    image = image_url.strip() if isinstance(image_url, str) else ""
    if image and allowed_domain(image, allowlist, schemes=("https",)) is None:
        image = ""
    clean_title = strip_html(title if isinstance(title, str) else "", MAX_TITLE_CHARS) or host
    return WebResult(
        title=clean_title,
        url=url,
        domain=host.removeprefix("www."),
        snippet=strip_html(snippet if isinstance(snippet, str) else "", MAX_SNIPPET_CHARS),
        image_url=image,
        provider=provider,
    )


def _dedupe(results: Iterable[WebResult], limit: int) -> list[WebResult]:
    seen: set[str] = set()
    out: list[WebResult] = []
    for result in results:
        key = result.url.rstrip("/").lower()
        if key in seen:
            continue
        seen.add(key)
        out.append(result)
        if len(out) >= limit:
            break
    return out


def site_query(query: str, allowlist: Sequence[str]) -> str:
    """``query`` plus ``(site:a OR site:b ...)`` over the minimal allowlist, within Google's 32 words."""
    query = " ".join(query.split())
    words = len(query.split())
    sites: list[str] = []
    for domain in minimal_domains(allowlist):
        # each extra site costs "site:x" plus an "OR"
        if words + 2 * (len(sites) + 1) - 1 > _GOOGLE_MAX_WORDS:
            break
        sites.append(f"site:{domain}")
    return f"{query} ({' OR '.join(sites)})" if sites else query


def _redact(message: str, secrets: Iterable[str | None]) -> str:
    for secret in secrets:
        if secret:
            message = message.replace(secret, "***")
    return message


# ---------------------------------------------------------------- providers


class SerpApiProvider:
    """Google results through SerpAPI (``serpapi`` package's Client, endpoint overridable).

    ``serpapi.Client`` builds its URL from the ``BASE_DOMAIN`` attribute, so a base URL is
    injected by setting it on the instance (tests point it at 127.0.0.1).
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
        self._api_key = api_key
        self.allowlist = normalise_allowlist(allowlist)
        self.base_url = (base_url or "https://serpapi.com").rstrip("/")
        self.timeout = timeout

    def __repr__(self) -> str:
        return f"SerpApiProvider(base_url={self.base_url!r})"

    def search(self, query: str, max_results: int) -> list[WebResult]:
        """Allowlisted organic results for ``query`` (biased with ``site:`` terms)."""
        import requests
        import serpapi

        client = serpapi.Client(api_key=self._api_key, timeout=self.timeout)
        client.BASE_DOMAIN = self.base_url
        where = f"SerpAPI ({self.base_url})"
        try:
            data = client.search(
                engine="google",
                q=site_query(query, self.allowlist),
                num=10,
                safe="active",
                output="json",
            )
        except serpapi.TimeoutError:
            raise WebSearchError(
                f"{where} did not answer within {self.timeout[1]:g} s; try again later or set MEDRAG_WEB=off."
            ) from None
        except serpapi.HTTPConnectionError:
            raise WebSearchError(
                f"Cannot connect to {where}; check the network (or the SerpAPI base URL) or set MEDRAG_WEB=off."
            ) from None
        except serpapi.HTTPError as exc:
            detail = f": {exc.error}" if isinstance(getattr(exc, "error", None), str) else ""
            hint = " Check SERPAPI_API_KEY." if exc.status_code in (401, 403) else ""
            raise WebSearchError(
                _redact(f"{where} answered HTTP {exc.status_code}{detail}.{hint}", [self._api_key])
            ) from None
        except (requests.RequestException, ValueError, TypeError) as exc:
            raise WebSearchError(
                f"{where} request failed ({type(exc).__name__}); check the SerpAPI base URL or set MEDRAG_WEB=off."
            ) from None
        finally:
            client.session.close()
        if not isinstance(data, Mapping):
            raise WebSearchError(f"{where} returned a response that is not a JSON object; try again later.")
        payload = dict(data)
        organic = payload.get("organic_results", [])
        error = payload.get("error")
        if isinstance(error, str) and not organic:
            if "hasn't returned any results" in error or "no results" in error.lower():
                return []
            raise WebSearchError(_redact(f"{where} reported an error: {error}", [self._api_key]))
        if not isinstance(organic, list):
            raise WebSearchError(f"{where} returned malformed results ('organic_results' is not a list).")
        results = (
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
        )
        return _dedupe((r for r in results if r is not None), max_results)


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
            raise WebSearchError(_redact(f"{where} refused the request: {exc}", [self._api_key])) from None
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
        results = (
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
        )
        return _dedupe((r for r in results if r is not None), max_results)

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


# ---------------------------------------------------------------- entry points


def build_provider(settings: "Settings") -> WebSearchProvider | None:
    """The configured provider, or None when web search is off or has no key.

    ``web_provider="auto"`` picks SerpAPI when SERPAPI_API_KEY is set, else Tavily when
    TAVILY_API_KEY is set, else None.
    """
    choice = settings.web_provider
    if choice == "off":
        return None
    if choice in ("auto", "serpapi") and settings.serpapi_api_key:
        return SerpApiProvider(
            settings.serpapi_api_key, allowlist=settings.allowlist, base_url=settings.serpapi_base_url
        )
    if choice in ("auto", "tavily") and settings.tavily_api_key:
        return TavilyProvider(settings.tavily_api_key, allowlist=settings.allowlist, base_url=settings.tavily_base_url)
    return None


def _off_status(settings: "Settings") -> str:
    if settings.web_provider == "off":
        return "web search off (MEDRAG_WEB=off)"
    if settings.web_provider == "serpapi":
        return "web search off: set SERPAPI_API_KEY"
    if settings.web_provider == "tavily":
        return "web search off: set TAVILY_API_KEY"
    return NO_KEY_STATUS


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


def _from_cache(items: list[dict], allowlist: Sequence[str], limit: int) -> list[WebResult]:
    # Re-sanitise: the cache lives on disk and may predate a stricter rule.
    results = (
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
    )
    return _dedupe((r for r in results if r is not None), limit)


def _status(count: int, provider: str, cached: bool, note: str = "") -> str:
    noun = "result" if count == 1 else "results"
    return f"{count} {noun} from {provider}{' (cached)' if cached else ''}{note}"


def search_references(
    query: str, settings: "Settings", cache: WebCache | None = None
) -> tuple[list[WebResult], str]:
    """Trusted references for ``query`` and a one-line status for the UI.

    Returns ``([], "web search off: ...")`` when no provider is configured (never raises for
    that). Provider failures raise :class:`WebSearchError`. Cache failures are not fatal: the
    search runs uncached and the status says so.
    """
    provider = build_provider(settings)
    if provider is None:
        return [], _off_status(settings)
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
            results = _from_cache(hit, settings.allowlist, limit)
            return results, _status(len(results), provider.name, cached=True)
    results = provider.search(query, limit)
    if cache is not None and not note:
        try:
            cache.put(key, provider.name, [asdict(r) for r in results])
        except MedRAGError:
            note = " (cache unavailable)"
    return results, _status(len(results), provider.name, cached=False, note=note)


_STOPWORDS = frozenset(
    "a an and are as at be by can could do does for from has have how i in is it its me my of on or "
    "please show tell that the there this to was what when where which who why will with would you your "
    "possible probable likely small large moderate mild severe left right bilateral suspected "
    "look looks like appear appears see seen find image picture patient".split()
)
_NORMAL_LABEL = re.compile(r"^\s*(no (acute|finding|significant|active)|normal\b)")
_CXR_WORDS = ("chest x-ray", "chest xray", "chest radiograph", "cxr", "x-ray", "xray", "radiograph")


def web_query_for(label: str, question: str = "") -> str:
    """A reference-search query such as ``"chest x-ray cardiomegaly radiology"``.

    Keeps the clinical words of the label and question (drops filler words, severity and side,
    search operators like ``site:``), adds "chest x-ray" and "radiology", at most 10 words.
    A normal label becomes ``"normal chest x-ray radiology"``.
    """
    if _NORMAL_LABEL.search(label.casefold()):
        if not question.strip():
            return "normal chest x-ray radiology"
        label = "normal"
    text = f"{label} {question}".casefold()
    for phrase in _CXR_WORDS:
        text = text.replace(phrase, " ")
    words: list[str] = []
    for token in text.split():
        if ":" in token:  # search operators (site:, inurl:) from user text
            continue
        word = re.sub(r"[^\w/-]+", "", token).strip("-/")
        if not word or word in _STOPWORDS or word.isdigit() or word in words:
            continue
        words.append(word)
    core = " ".join(words[:7])
    return f"chest x-ray {core} radiology".replace("  ", " ") if core else "chest x-ray radiology"
