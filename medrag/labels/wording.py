"""The one-line label: "Cardiomegaly with small left pleural effusion" from the findings and their mentions.

Present findings come first, then uncertain ones ("possible ..."), each with the size, side and site
words written next to its strongest mention; support devices are appended. Word lists and display
names come from ``rules.toml`` (``[wording]``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from medrag.labels.rules import load_rules
from medrag.records import FINDINGS, FindingStatus

_RULES = load_rules()
_SIZE_WORDS = frozenset(_RULES.size_words)
_SITE_WORDS = frozenset(_RULES.site_words)


@dataclass
class Mention:
    """One finding mention: its status and the descriptive words around it."""

    finding: str
    status: FindingStatus
    modifiers: tuple[str, ...]
    text: str


def mention_modifiers(ent: Any) -> tuple[str, ...]:
    """The size, side and site words (first of each, in that order) in the four tokens before ``ent`` or in it."""
    doc = ent.doc
    words = [t.lower_ for t in doc[max(ent.sent.start, ent.start - 4) : ent.end]]
    size = next((w for w in words if w in _SIZE_WORDS), None)
    side = next((_RULES.side_words[w] for w in words if w in _RULES.side_words), None)
    site = next((w.rstrip("s") for w in words if w in _SITE_WORDS), None)
    return tuple(w for w in (size, side, site) if w)


def _phrase(mention: Mention) -> str:
    name = _RULES.display[mention.finding]
    if mention.finding == "nodule/mass" and "mass" in mention.text:
        name = "mass"
    modifiers = mention.modifiers
    if mention.finding == "cardiomegaly":  # the heart has a size, not a side
        modifiers = tuple(m for m in modifiers if m in _SIZE_WORDS)
    return " ".join((*modifiers, name))


def _join(parts: Sequence[str]) -> str:
    return parts[0] if len(parts) == 1 else ", ".join(parts[:-1]) + " and " + parts[-1]


def _capitalise(text: str) -> str:
    return text[:1].upper() + text[1:]


def make_label(findings: dict[str, FindingStatus], best: dict[str, Mention], others: Sequence[str]) -> str:
    """The label for ``findings``; ``best`` is each finding's strongest mention, ``others`` other abnormalities."""
    abnormal = [f for f in FINDINGS if f not in ("no finding", "support devices")]
    parts = [_phrase(best[f]) for f in abnormal if findings[f] == "present"]
    parts += ["possible " + _phrase(best[f]) for f in abnormal if findings[f] == "uncertain"]
    devices = "; support devices" if findings["support devices"] == "present" else ""
    max_parts = _RULES.max_label_parts
    if len(parts) > max_parts:
        extra = len(parts) - (max_parts - 1)
        parts = parts[: max_parts - 1] + [f"{extra} other findings"]
    if parts:
        head, rest = parts[0], parts[1:]
        return _capitalise(head + (" with " + _join(rest) if rest else "") + devices)
    if findings["no finding"] == "present":
        return "No acute cardiopulmonary abnormality" + devices
    if findings["no finding"] == "uncertain":
        return "Indeterminate; no definite abnormality" + devices
    if others:
        return _capitalise(others[0]) + "; no acute cardiopulmonary abnormality" + devices
    if devices:
        return "Support devices; no acute cardiopulmonary abnormality stated"
    return "No findings stated"


__all__ = ["Mention", "make_label", "mention_modifiers"]
