"""Text that came from files, users, servers or models, made safe to print on a terminal or store as a name.

Three levels, each built on the one before:

- :func:`strip_escapes` removes whole terminal escape sequences (CSI ``ESC [ … m``, OSC ``ESC ] … BEL``/ST,
  DCS/PM/APC/SOS strings, two-byte ``ESC x`` and their 8-bit C1 forms), so no ``[2J`` residue is left;
- :func:`printable` also drops every other control, format and bidi character (newlines and tabs kept on
  request);
- :func:`one_line` makes the text one line: line breaks become ``newline`` (a space, or a visible ``\\n``),
  so text from data cannot forge a line of output.
"""

from __future__ import annotations

import re
import unicodedata

# Bidirectional overrides and isolates can make a terminal show text in a misleading order.
_BIDI = frozenset("\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069\u200e\u200f\u061c")
_DROPPED_CATEGORIES = frozenset({"Cc", "Cf", "Cs", "Co"})

# ECMA-48: a string command (OSC, DCS, SOS, PM, APC; 7-bit ESC x or 8-bit C1) runs to BEL or ST; a CSI has
# parameter bytes, intermediate bytes and one final byte; anything else after ESC is intermediates + a final.
# An unterminated string loses only its introducer (its text stays, harmless once the ESC is gone).
_ESCAPE = re.compile(
    r"(?:\x1b[\]PX^_]|[\x90\x98\x9d\x9e\x9f])[^\x07\x1b\x9c]*(?:\x07|\x1b\\|\x9c)"
    r"|(?:\x1b\[|\x9b)[0-?]*[ -/]*[@-~]"
    r"|\x1b[ -/]*[0-~]"
)
#: Everything a terminal (or a spreadsheet, or a log viewer) may take as the end of a line.
_LINE_BREAK = re.compile("\r\n|[\n\r\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029]")


def strip_escapes(text: str) -> str:
    """``text`` without terminal escape sequences (whole sequences, not only their ESC byte)."""
    return _ESCAPE.sub("", text)


def printable(text: str, *, keep_newlines: bool = True) -> str:
    """``text`` without escape sequences, control characters and bidi controls.

    Newlines and tabs are kept when ``keep_newlines`` is true; everything else non-printable is dropped.
    """
    kept = []
    for ch in strip_escapes(text):
        if keep_newlines and ch in "\n\t":
            kept.append(ch)
        elif ch in _BIDI or unicodedata.category(ch) in _DROPPED_CATEGORIES:
            continue
        else:
            kept.append(ch)
    return "".join(kept)


def one_line(text: object, *, newline: str = " ") -> str:
    """``str(text)`` as one printable line: escapes and controls dropped, each line break → ``newline``.

    ``newline=" "`` for names and stored messages; ``newline="\\\\n"`` (a visible backslash-n) where the reader
    should see that the text held a line break. Tabs become spaces.
    """
    broken = _LINE_BREAK.sub("\n", strip_escapes(str(text)))
    return printable(broken).replace("\t", " ").replace("\n", newline)


__all__ = ["one_line", "printable", "strip_escapes"]
