"""The one printer of the ``medrag`` command line: everything it prints goes through here.

File names, CSV cells, labels, reports, model output and server error text are data, and data may hold
terminal escapes (``ESC [2J`` clears the screen, ``ESC ]0;…BEL`` retitles the window), other controls, bidi
overrides, or line breaks that forge a line of output ("Saved to history…"). So:

- :func:`echo` prints ONE line: escapes and controls stripped, any line break in it shown as a visible ``\\n``;
- :func:`blank` prints an empty line (a command's own layout; no data in it);
- :func:`lines` prints a multi-line text of the CLI's own layout (a table) line by line, each through
  :func:`echo`;
- :func:`block` prints multi-line data meant to be read as prose (a reasoning text): escapes and controls
  stripped, its own line breaks kept, each line indented;
- :func:`stream` writes a streamed piece (a reasoning token) without a newline;
- :func:`progress_bar` draws a tqdm bar on stderr (numbers only, no data).

Nothing else in :mod:`medrag.cli` calls ``print``.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any, TextIO

from medrag.textsafe import one_line, printable, strip_escapes

#: How a line break inside data is shown on a line of output.
VISIBLE_NEWLINE = "\\n"


def clean(text: object) -> str:
    """``text`` as it would be printed on one line (for building padded columns before :func:`echo`)."""
    return one_line(text, newline=VISIBLE_NEWLINE)


def _stream(err: bool) -> TextIO:
    # Looked up per call, so redirections (tests, contextlib.redirect_stdout) are honoured.
    return sys.stderr if err else sys.stdout


def _write(text: str, err: bool) -> None:
    stream = _stream(err)
    try:
        stream.write(text)
    except UnicodeEncodeError:
        # A terminal or pipe that cannot show some characters (LANG=C): show them escaped, never crash.
        encoding = getattr(stream, "encoding", None) or "ascii"
        stream.write(text.encode(encoding, "backslashreplace").decode(encoding, "replace"))


def echo(text: object = "", *, err: bool = False) -> None:
    """Print ``text`` as exactly one line (on stderr when ``err``)."""
    _write(clean(text) + "\n", err)


def blank(*, err: bool = False) -> None:
    """Print an empty line."""
    _write("\n", err)


def lines(text: str, *, err: bool = False) -> None:
    """Print each line of a multi-line text the CLI laid out itself (a table), each through :func:`echo`."""
    for line in text.splitlines():
        echo(line, err=err)


def block(text: str, *, indent: str = "", err: bool = False) -> None:
    """Print multi-line prose from data: controls stripped, its line breaks kept, each line ``indent``-ed."""
    for line in strip_escapes(text).splitlines() or [""]:
        _write(f"{indent}{printable(line)}\n", err)


def stream(piece: str) -> None:
    """Write a streamed piece of text (newlines kept, controls stripped) to stdout and flush."""
    out = _stream(False)
    _write(printable(piece), False)
    out.flush()


def progress_bar(desc: str) -> Callable[[int, int], None]:
    """An ``on_progress(done, total)`` that draws a tqdm bar on stderr (the Settings page shows a fit's last one)."""
    from tqdm import tqdm

    bar: list[Any] = []

    def update(done: int, total: int) -> None:
        if not bar:
            bar.append(tqdm(total=total, desc=desc, unit="film", mininterval=1.0))
        bar[0].update(done - bar[0].n)
        if done >= total:
            bar[0].close()

    return update


__all__ = ["VISIBLE_NEWLINE", "blank", "block", "clean", "echo", "lines", "progress_bar", "stream"]
