"""Text that came from files, users or models, made safe to print on a terminal or store as a name."""

from __future__ import annotations

import unicodedata

# Bidirectional overrides and isolates can make a terminal show text in a misleading order.
_BIDI = frozenset("\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069\u200e\u200f\u061c")


def printable(text: str, *, keep_newlines: bool = True) -> str:
    """``text`` without control characters (ANSI escapes included) and bidi controls.

    Newlines and tabs are kept when ``keep_newlines`` is true; everything else non-printable is dropped.
    """
    kept = []
    for ch in text:
        if keep_newlines and ch in "\n\t":
            kept.append(ch)
        elif ch in _BIDI or unicodedata.category(ch) in {"Cc", "Cf", "Cs", "Co"}:
            continue
        else:
            kept.append(ch)
    return "".join(kept)
