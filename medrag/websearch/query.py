"""Search queries: what to search for a finding, and how a query is biased to the allowlisted sites."""

from __future__ import annotations

import re
from collections.abc import Sequence

from medrag.websearch.sanitise import minimal_domains

#: Google ignores words after the 32nd, so the site: bias is capped to fit.
_GOOGLE_MAX_WORDS = 32

_STOPWORDS = frozenset(
    "a an and are as at be by can could do does for from has have how i in is it its me my of on or "
    "please show tell that the there this to was what when where which who why will with would you your "
    "possible probable likely small large moderate mild severe left right bilateral suspected "
    "look looks like appear appears see seen find image picture patient".split()
)
_NORMAL_LABEL = re.compile(r"^\s*(no (acute|finding|significant|active)|normal\b)")
_CXR_WORDS = ("chest x-ray", "chest xray", "chest radiograph", "cxr", "x-ray", "xray", "radiograph")


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


__all__ = ["site_query", "web_query_for"]
