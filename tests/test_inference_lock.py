"""Torch forward passes in one process take turns, and none sees another change torch's thread count.

The app reads films on a warm-up thread while page runs read others; ``torch.set_num_threads`` (which the
segmenter uses for its single-threaded pass) resizes a pool that a concurrent convolution may be running on,
and CI once died of a segmentation fault in exactly that overlap.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

from medrag.inference_lock import default_threads, torch_inference
from medrag.phantoms import generate_phantom
from medrag.reading.cnn import CnnReader
from medrag.reading.segment import default_segmenter

WAIT_S = 0.3  # long enough for an unguarded pass to have begun; a guarded one never begins while we hold the lock


def _film() -> np.ndarray:
    return generate_phantom(frozenset({"effusion"}), seed=7, size=192)


def _watch(target: Any, name: str, monkeypatch: pytest.MonkeyPatch) -> tuple[threading.Event, list[int]]:
    """Patch ``target.name`` to record that it ran and the thread count it ran with."""
    import torch

    entered, counts = threading.Event(), []
    original: Callable[..., Any] = getattr(target, name)

    def watched(*args: Any, **kwargs: Any) -> Any:
        counts.append(torch.get_num_threads())
        entered.set()
        return original(*args, **kwargs)

    monkeypatch.setattr(target, name, watched)
    return entered, counts


def _other_count() -> int:
    """A thread count other than the default, for the holder of the lock to set."""
    return 1 if default_threads() != 1 else 2


def _blocked_while_held(run: Callable[[], object], entered: threading.Event) -> None:
    """``run`` on another thread does not reach its forward pass while this thread holds the lock with another
    thread count (the worker thread even starts under that count, as the app's warm-up thread can)."""
    errors: list[BaseException] = []

    def worker() -> None:
        try:
            run()
        except BaseException as exc:  # noqa: BLE001 - reported below, on the test's thread
            errors.append(exc)

    with torch_inference(threads=_other_count()):
        thread = threading.Thread(target=worker, daemon=True)
        thread.start()
        assert not entered.wait(WAIT_S), "a forward pass began while another thread held the inference lock"
    thread.join(timeout=60)
    assert not thread.is_alive() and not errors, errors
    assert entered.is_set()


def test_thread_count_is_restored_and_the_lock_is_reentrant() -> None:
    import torch

    before, other = torch.get_num_threads(), _other_count()
    with torch_inference(threads=other):
        assert torch.get_num_threads() == other
        with torch_inference():  # a reader that calls another reader inside its pass must not deadlock
            assert torch.get_num_threads() == default_threads()
        assert torch.get_num_threads() == other
    assert torch.get_num_threads() == before


def test_segmenter_pass_waits_for_another_threads_pass(monkeypatch: pytest.MonkeyPatch) -> None:
    import torch

    before = torch.get_num_threads()
    segmenter = default_segmenter()
    entered, counts = _watch(segmenter.net, "forward_with_features", monkeypatch)
    _blocked_while_held(lambda: segmenter.segment(_film()), entered)
    assert counts == [1]  # its own single-threaded pass, set and restored inside the lock
    assert torch.get_num_threads() == before


def test_cnn_pass_waits_and_never_runs_on_the_segmenters_thread_count(monkeypatch: pytest.MonkeyPatch) -> None:
    reader = CnnReader()
    if not reader.available():
        pytest.skip("medrag-cnn weights are not in this checkout")
    film = _film()
    reader.network_input(film)  # the crop's segmentation runs now, so only the CNN's own pass is watched below
    entered, counts = _watch(reader.load(), "forward_features", monkeypatch)
    _blocked_while_held(lambda: reader.forward(film), entered)
    # the default count, although the worker thread began while the holder had set another
    assert counts == [default_threads()]
