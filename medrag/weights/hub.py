"""Switch huggingface_hub (and so transformers and open_clip) offline for a load, or online for a pull.

huggingface_hub reads ``HF_HUB_OFFLINE`` once at import; its ``constants.HF_HUB_OFFLINE`` is what every request
checks, so that constant is what is switched, under one lock, and restored when the block ends.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager

_OFFLINE_LOCK = threading.RLock()


@contextmanager
def _hub_mode(offline: bool) -> Iterator[None]:
    from huggingface_hub import constants

    with _OFFLINE_LOCK:
        previous = constants.HF_HUB_OFFLINE
        constants.HF_HUB_OFFLINE = offline
        try:
            yield
        finally:
            constants.HF_HUB_OFFLINE = previous


def hub_offline() -> AbstractContextManager[None]:
    """Force huggingface_hub into offline mode inside the ``with`` block (every model load uses it)."""
    return _hub_mode(True)


def hub_online() -> AbstractContextManager[None]:
    """Lift offline mode inside the block: only for ``medrag models pull``, where the user asked to download."""
    return _hub_mode(False)


__all__ = ["hub_offline", "hub_online"]
