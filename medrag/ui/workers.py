"""Worker processes started from inside the Streamlit server (an import uses a pool of them)."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def spawn_safe_main() -> Iterator[None]:
    """Hide the page script from worker processes started while the block runs.

    A spawned worker, and the fork server that imports start from, re-run the file of
    ``sys.modules["__main__"]``; under Streamlit that module is the page script itself, so each would
    re-run the page (and start its own import). Without a ``__file__`` on ``__main__`` they import
    nothing extra. (tests/test_browser_e2e.py imports 220 images from the Library page of a real server.)
    """
    main = sys.modules.get("__main__")
    path = getattr(main, "__file__", None)
    if main is None or path is None or getattr(main, "__spec__", None) is not None:
        yield
        return
    del main.__file__
    try:
        yield
    finally:
        main.__file__ = path


__all__ = ["spawn_safe_main"]
