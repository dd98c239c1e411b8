"""One lock for every torch forward pass in the process, and the only place that changes torch's thread count.

``torch.set_num_threads`` is process-wide: besides OpenMP it resizes the pthreadpool that XNNPACK convolutions
run on, so calling it while another thread is inside a forward pass can crash the process (a segmentation fault
seen in CI: the app's warm-up thread segmenting a film while a page run read another). Serialising the forward
passes costs nothing on this project's 2-core machines, where two concurrent passes only fought for the cores.

A thread's OpenMP thread count is fixed the first time it touches torch: one that starts while another thread
has lowered the count keeps the lowered count. So every pass here sets the count it wants explicitly, the
process's count (taken at the first pass) unless it asks for another.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager

_INFERENCE_LOCK = threading.RLock()
_default_threads: int | None = None


def default_threads() -> int:
    """The thread count torch passes run with unless they ask for another (taken at the first pass)."""
    global _default_threads
    with _INFERENCE_LOCK:
        if _default_threads is None:
            import torch

            _default_threads = torch.get_num_threads()
        return _default_threads


@contextmanager
def torch_inference(threads: int | None = None) -> Iterator[None]:
    """Hold the process's inference lock (re-entrant) inside ``torch.inference_mode``, on ``threads`` threads.

    ``threads`` defaults to :func:`default_threads`; the calling thread's previous count is restored before
    the lock is released, so no other forward pass ever sees the count change under it.
    """
    import torch

    with _INFERENCE_LOCK, torch.inference_mode():
        wanted = threads if threads is not None else default_threads()
        previous = torch.get_num_threads()
        if wanted != previous:
            torch.set_num_threads(wanted)
        try:
            yield
        finally:
            if wanted != previous:
                torch.set_num_threads(previous)
