"""How many requests this process sends one shared inference server at once (a semaphore per server URL).

A class of learners on a few app processes shares one vLLM / Ollama server: each process keeps at most
``limit`` requests in flight to it (``MEDRAG_OPENAI_MAX_CONCURRENT``); the next waits for a slot, and after
``wait_s`` gets a clear "busy" error (the pipeline then lets the offline reasoner write the reading).
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager

from medrag.errors import BackendUnavailableError

#: Requests one process streams from one server at once unless MEDRAG_OPENAI_MAX_CONCURRENT says otherwise.
DEFAULT_MAX_CONCURRENT = 4

_lock = threading.Lock()
#: base URL → (limit, semaphore); a new limit for the same server replaces the semaphore
_slots: dict[str, tuple[int, threading.BoundedSemaphore]] = {}


def _semaphore(base_url: str, limit: int) -> threading.BoundedSemaphore:
    with _lock:
        known = _slots.get(base_url)
        if known is None or known[0] != limit:
            known = (limit, threading.BoundedSemaphore(limit))
            _slots[base_url] = known
        return known[1]


@contextmanager
def server_slot(base_url: str, limit: int, wait_s: float) -> Iterator[None]:
    """Hold one of ``limit`` slots for ``base_url`` while the block runs; raise when none frees in ``wait_s``."""
    semaphore = _semaphore(base_url, limit)
    if not semaphore.acquire(timeout=wait_s):
        raise BackendUnavailableError(
            f"The inference server at {base_url} is busy: this app already has {limit} request(s) waiting on it "
            f"and none finished within {wait_s:g} s. Try again shortly, or raise MEDRAG_OPENAI_MAX_CONCURRENT "
            "if the server has capacity to spare."
        )
    try:
        yield
    finally:
        semaphore.release()


__all__ = ["DEFAULT_MAX_CONCURRENT", "server_slot"]
