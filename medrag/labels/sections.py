"""Report sections: which parts of a text describe this image, and how a long text is cut.

Section names come from ``rules.toml`` (``[sections]``). A heading is a known section name at the start
of a line or after a full stop, optionally in markdown (``#``, ``**``), followed by a colon or the end
of the line.
"""

from __future__ import annotations

import re

from medrag.labels.rules import load_rules

#: Characters of text the labeler reads; longer texts are truncated (see :func:`truncate_for_labeling`).
MAX_CHARS = 20_000
#: Of :data:`MAX_CHARS`, how many are reserved for the last impression section when it lies beyond the head.
IMPRESSION_CHARS = 4_000

#: Sections that describe something other than this image; their mentions are ignored.
SKIPPED_SECTIONS: frozenset[str] = load_rules().skipped_sections


def _normalise(name: str) -> str:
    return re.sub(r"[\s-]+", " ", name.lower())


_SKIPPED_NORMALISED = frozenset(_normalise(s) for s in SKIPPED_SECTIONS)
# Longest first, so "clinical history" wins over "history".
_HEADING_NAMES = sorted({*SKIPPED_SECTIONS, *load_rules().kept_sections}, key=lambda n: (-len(n), n))
_HEADING_RE = re.compile(
    r"(?:^|(?<=[.\n]))[ \t>#*_-]*(?P<name>"
    + "|".join(re.escape(n).replace(r"\ ", r"\s+").replace(r"\-", r"[- ]?") for n in _HEADING_NAMES)
    # "**Similar-case evidence.**" (MedRAG's own reasoning) ends its heading with a full stop inside the bold
    + r")[ \t*_]*(?:\.[ \t*_]*(?=\n)|:|(?=\n)|$)",
    re.IGNORECASE | re.MULTILINE,
)
_IMPRESSION_RE = re.compile(
    r"(?:^|(?<=[.\n]))[ \t>#*_-]*(?:impressions?|conclusions?)[ \t*_]*(?::|(?=\n))", re.IGNORECASE | re.MULTILINE
)


def truncate_for_labeling(text: str, max_chars: int = MAX_CHARS) -> tuple[str, bool]:
    """Cut ``text`` to at most ``max_chars`` characters, keeping the head and the last impression.

    Returns ``(text, truncated)``. Reports put the conclusion last, so when an impression
    heading lies beyond the head, up to 4,000 characters from it replace the end of the head.
    """
    if len(text) <= max_chars:
        return text, False
    impression = None
    for match in _IMPRESSION_RE.finditer(text, max(0, max_chars - IMPRESSION_CHARS)):
        impression = match
    if impression is not None and impression.start() > max_chars - IMPRESSION_CHARS:
        tail = text[impression.start() : impression.start() + IMPRESSION_CHARS]
        head = text[: max_chars - len(tail) - 2]
        return head + "\n\n" + tail, True
    return text[:max_chars], True


def strip_skipped_sections(text: str) -> str:
    """``text`` without the sections in :data:`SKIPPED_SECTIONS` (headings of kept sections dropped too)."""
    pieces: list[str] = []
    position, keep = 0, True
    for match in _HEADING_RE.finditer(text):
        if keep:
            pieces.append(text[position : match.start()])
        keep = _normalise(match.group("name")) not in _SKIPPED_NORMALISED
        position = match.end()
    if keep:
        pieces.append(text[position:])
    return "\n".join(p.strip() for p in pieces if p.strip())


__all__ = ["IMPRESSION_CHARS", "MAX_CHARS", "SKIPPED_SECTIONS", "strip_skipped_sections", "truncate_for_labeling"]
