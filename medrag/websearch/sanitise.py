"""Making provider results safe to show: allowlisted http(s) links, plain-text titles and snippets.

Only links whose host is an allowlisted domain or one of its subdomains pass (``pubmed.ncbi.nlm.nih.gov``
matches ``nih.gov``, ``nih.gov.evil.com`` does not); URLs with credentials, backslashes or control characters
are refused; HTML is stripped with a real parser; images pass only over ``https`` from allowlisted domains.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable, Sequence
from html.parser import HTMLParser
from typing import Any
from urllib.parse import urlsplit

from medrag.records import WebResult

MAX_TITLE_CHARS = 200
MAX_SNIPPET_CHARS = 500


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


def dedupe_results(results: Iterable[WebResult | None], limit: int) -> list[WebResult]:
    """The first ``limit`` results, skipping Nones and repeated URLs (trailing slash and case ignored)."""
    seen: set[str] = set()
    out: list[WebResult] = []
    for result in results:
        if result is None:
            continue
        key = result.url.rstrip("/").lower()
        if key in seen:
            continue
        seen.add(key)
        out.append(result)
        if len(out) >= limit:
            break
    return out


__all__ = [
    "MAX_SNIPPET_CHARS",
    "MAX_TITLE_CHARS",
    "allowed_domain",
    "dedupe_results",
    "make_result",
    "minimal_domains",
    "normalise_allowlist",
    "strip_html",
]
