"""Rendering untrusted text (files, models, the web) as text, never as HTML or active markup."""

from __future__ import annotations

import re
from urllib.parse import urlsplit

# Every character CommonMark/GFM (and Streamlit's LaTeX, colour and emoji extensions) gives meaning to.
_ALL_MARKDOWN = re.compile(r"([\\`*_{}\[\]()<>#+\-.!|~$:=>])")
# What turns plain reasoning text into links, images, HTML, tables or maths: emphasis and headings are kept.
_ACTIVE_MARKDOWN = re.compile(r"([\\\[\]<>$|~`])")


def escape_markdown(text: object) -> str:
    """``text`` with every Markdown special character escaped: renders exactly as written."""
    return _ALL_MARKDOWN.sub(r"\\\1", str(text))


def defang_markdown(text: str) -> str:
    """Keep headings, bold and lists, but make links, images, raw HTML, tables and LaTeX inert.

    Works piece by piece on a token stream, because each special character is escaped on its own.
    """
    return _ACTIVE_MARKDOWN.sub(r"\\\1", text)


def safe_url(url: object) -> str | None:
    """The URL when it is a plain http(s) link with a host, else ``None`` (javascript:, data:, ...)."""
    if not isinstance(url, str):
        return None
    candidate = url.strip()
    if not candidate or any(ch.isspace() or ord(ch) < 32 for ch in candidate):
        return None
    try:
        parts = urlsplit(candidate)
    except ValueError:
        return None
    if parts.scheme.lower() not in ("http", "https") or not parts.hostname:
        return None
    return candidate


def shorten(text: object, limit: int = 240) -> str:
    """One-line text of at most ``limit`` characters (whitespace collapsed, ellipsis when cut)."""
    flat = " ".join(str(text or "").split())
    return flat if len(flat) <= limit else flat[: max(limit - 1, 0)].rstrip() + "…"
