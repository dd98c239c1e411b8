"""Process-wide resources behind ``st.cache_resource``: one :class:`Workbench` per data folder.

The workbench owns the DuckDB connection, the encoders, the indexes and the reasoner, and builds each
of them once under its own lock, so every session of the app shares them and no model loads twice.
Nothing returned from a cache here is ever mutated by the pages.
"""

from __future__ import annotations

import atexit
import gc
import logging
import os
import threading
import weakref
from typing import Any

import numpy as np
import pandas as pd
import streamlit as st

from medrag.analysis import Analysis
from medrag.config import Settings
from medrag.engine.search import LibraryMap
from medrag.errors import MedRAGError
from medrag.ui.appconfig import app_settings
from medrag.ui.figures import map_hover
from medrag.ui.images import load_pixels
from medrag.ui.workers import spawn_safe_main  # noqa: F401 - re-exported (its home before medrag.ui.workers)
from medrag.workbench import Workbench

log = logging.getLogger("medrag.ui")

#: Seconds between a page's first run and the background loading of the backends.
WARM_UP_DELAY_S = 1.0

# Timers and leases to stop at exit, so no daemon thread wakes up in a half-finalised interpreter.
_TIMERS: weakref.WeakSet[threading.Timer] = weakref.WeakSet()
_LEASES: weakref.WeakSet[StoreLease] = weakref.WeakSet()
_WARMED: set[str] = set()
#: data folders whose warm-up has ended (models loaded, or it stopped on an error the pages will show)
_WARM_DONE: set[str] = set()
_WARM_LOCK = threading.Lock()


@st.cache_resource(show_spinner=False, max_entries=8)
def _workbench(data_dir: str, _settings: Settings) -> Workbench:
    # No model hub here: a loader that tried it would stall for ~25 s before failing.
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    return Workbench(_settings)


def get_workbench() -> Workbench:
    """The shared workbench for the configured data folder (built on first call)."""
    settings = app_settings()
    return _workbench(str(settings.data_dir), settings)


#: Seconds the app keeps the database open after its last page run.
STORE_LINGER_S = 3.0


class StoreLease:
    """Keeps the store's file open while the app is in use, and lets go when it has been idle a moment.

    Opening and closing the DuckDB file costs ~17 ms of CPU per call and a page run makes a dozen
    calls; keeping it open costs ~0.5 ms per call. Letting go after :data:`STORE_LINGER_S` idle seconds
    lets a CLI command (``medrag ingest``) take its turn, as the store intends.
    """

    def __init__(self, workbench: Workbench, linger_s: float = STORE_LINGER_S) -> None:
        self._store = workbench.store
        self._linger_s = linger_s
        self._lock = threading.Lock()
        self._session: Any = None
        self._timer: threading.Timer | None = None
        _LEASES.add(self)

    def touch(self) -> None:
        """Open the file (if closed) and push the release back by the linger time."""
        with self._lock:
            if self._session is None:
                session = self._store.session()
                session.__enter__()
                self._session = session
            if self._timer is not None:
                self._timer.cancel()
            self._timer = threading.Timer(self._linger_s, self.release)
            self._timer.name, self._timer.daemon = "medrag-store-linger", True
            self._timer.start()

    def release(self) -> None:
        """Let go of the file now (calls still running keep their own hold until they finish)."""
        with self._lock:
            if self._timer is not None:
                self._timer.cancel()
                self._timer = None
            if self._session is not None:
                session, self._session = self._session, None
                session.__exit__(None, None, None)

    @property
    def held(self) -> bool:
        """Whether the lease holds the file open now."""
        return self._session is not None


@st.cache_resource(show_spinner=False, max_entries=8)
def _lease(data_dir: str, _workbench: Workbench) -> StoreLease:
    return StoreLease(_workbench)


def keep_store_open(workbench: Workbench) -> None:
    """Hold the database open for this page run and a few idle seconds after it."""
    _lease(str(workbench.settings.data_dir), workbench).touch()


def ensure_library_ready(workbench: Workbench) -> None:
    """Build the synthetic demo library with a progress bar when the library is empty (first start).

    The work is :meth:`Workbench.ensure_library` (the one demo bootstrap, also behind the CLI); this draws it.
    """
    if workbench.store.count_cases() > 0:
        return
    settings = workbench.settings
    with st.status("First start: building the synthetic demo library…", expanded=True) as box:
        st.write(
            f"Drawing {settings.demo_cases} synthetic phantom chest X-rays into {settings.demo_dir}, "
            "importing them and building the search index. This happens once."
        )
        bar = st.progress(0.0, text="Drawing phantoms…")

        def on_progress(done: int, total: int) -> None:
            text = "Building the index…" if done >= total else f"Importing {done} / {total} cases…"
            bar.progress(min(done / max(total, 1), 1.0), text=text)

        # No cache to clear: the cached library reads are keyed on the case count, which this changes.
        with spawn_safe_main():
            report = workbench.ensure_library(on_progress=on_progress)
        bar.progress(1.0, text="Done")
        added = report.added if report is not None else workbench.store.count_cases()
        box.update(label=f"Demo library ready: {added} cases", state="complete", expanded=False)


def _freeze_heap() -> None:
    """Move everything loaded so far out of the garbage collector's sight (``gc.freeze``).

    The loaded models (torch, transformers, spaCy) leave millions of long-lived objects; each full
    collection walked them all, 0.7-1.3 s every few page runs (measured in the server during an
    analysis, issue #13), which is most of what a click on Analyze used to wait for beyond the pipeline.
    """
    gc.collect()
    gc.freeze()


def _warm(workbench: Workbench) -> None:
    try:
        _warm_steps(workbench)
    finally:
        _WARM_DONE.add(str(workbench.settings.data_dir))


def warm_up_finished(workbench: Workbench) -> bool:
    """Whether the background loading of the models has ended for this data folder."""
    return str(workbench.settings.data_dir) in _WARM_DONE


def _warm_steps(workbench: Workbench) -> None:
    try:
        workbench.backend_status()  # builds encoders, reasoner, summariser
        workbench.index("image")
        workbench.library_map()
        workbench.text_encoder.embed_text(["chest x-ray"])  # MiniLM loads on first use (~5 s)
        # The image readers' torch models load on first read: do it here, not in the first analysis.
        workbench.backends.reader.read(np.full((256, 256), 0.5, dtype=np.float32))
        from medrag.guard import check_text

        check_text("Is there a pleural effusion?", workbench.text_encoder)  # embeds the guard's prototypes once
        _text_in_background(workbench)  # the reports' vectors, so the first text question does not wait
        # One unsaved question through the whole pipeline: the reasoner's and the summariser's first-use
        # costs (the labeler's rules, its NLP pipeline) are paid here, not by the user's first analysis.
        for _event in workbench.analyze(None, question="What are the signs of a pleural effusion?", k=3, web=False,
                                        save=False):
            pass
        _freeze_heap()
    except MedRAGError:
        pass  # the page that needs the backend shows the error when it asks
    except Exception as exc:  # noqa: BLE001 - e.g. the interpreter shutting down mid-load; the page retries
        log.debug("background warm-up stopped: %s", exc)


#: data folder → the case count the text index was last brought up to date for
_TEXT_FRESH: dict[str, int] = {}
_TEXT_LOCK = threading.Lock()


def _build_text_index(workbench: Workbench) -> None:
    """Embed the reports of cases the text index lacks (what a first text question would otherwise wait for)."""
    key = str(workbench.settings.data_dir)
    count = workbench.store.count_cases()
    if count == 0 or _TEXT_FRESH.get(key) == count:
        return
    with workbench.store.session():  # one open of the file, not two per batch of vectors written
        workbench.ensure_index("text")
        library_map_frame(workbench)  # the map and the readable names of the grown library
    _TEXT_FRESH[key] = count


def _text_in_background(workbench: Workbench) -> None:
    if not _TEXT_LOCK.acquire(blocking=False):
        return  # one build at a time; the next page run looks again
    try:
        _build_text_index(workbench)
    except MedRAGError:
        pass  # a text question shows the error when it asks
    except Exception as exc:  # noqa: BLE001 - e.g. the interpreter shutting down; the next page run retries
        log.debug("text index refresh stopped: %s", exc)
    finally:
        _TEXT_LOCK.release()


def prepare_after_import(workbench: Workbench) -> None:
    """Embed the new reports and lay out the grown library's map now (the import's last step, with its bar).

    So the first text question, and the first result after the import, find everything ready; waits for
    a background refresh already under way instead of doing the work twice.
    """
    with _TEXT_LOCK:
        try:
            _build_text_index(workbench)
        except MedRAGError as exc:  # the import itself worked; a text question will say what is wrong
            log.warning("after the import: %s", exc)


def refresh_text_index(workbench: Workbench) -> None:
    """Bring the text index up to date in a daemon thread when the library grew (an import here or by the CLI).

    Cheap when nothing changed (one count query); the warm-up does the first build.
    """
    key = str(workbench.settings.data_dir)
    if key not in _WARMED or _TEXT_LOCK.locked():
        return  # the warm-up has not run yet (it builds it), or a build is under way
    if _TEXT_FRESH.get(key) == workbench.store.count_cases():
        return
    timer = threading.Timer(0.0, _text_in_background, args=(workbench,))
    timer.name, timer.daemon = "medrag-text-index", True
    _TIMERS.add(timer)
    timer.start()


def text_index_ready(workbench: Workbench) -> bool:
    """Whether the text index, the library map and the readable names are up to date for this library.

    Then a first text question (or the first result after an import) has nothing to compute first.
    """
    return _TEXT_FRESH.get(str(workbench.settings.data_dir)) == workbench.store.count_cases()


def warm_up_in_background(workbench: Workbench) -> None:
    """Load the backends and the index in a daemon thread, once per data folder, so the first analysis is quick."""
    key = str(workbench.settings.data_dir)
    with _WARM_LOCK:
        if key in _WARMED:
            return
        _WARMED.add(key)
    # A moment's delay: the page that asked paints first instead of sharing the GIL with model imports.
    timer = threading.Timer(WARM_UP_DELAY_S, _warm, args=(workbench,))
    timer.name, timer.daemon = "medrag-warm-up", True
    _TIMERS.add(timer)
    timer.start()


@st.cache_resource(show_spinner=False, max_entries=8)
def _map_frame(
    data_dir: str, map_token: tuple[int, int, int], names_key: tuple[Any, ...], _library_map: LibraryMap,
    _workbench: Workbench,
) -> pd.DataFrame:
    from medrag.ui import data

    coords = np.asarray(_library_map.coords, dtype=np.float32)
    frame = pd.DataFrame({"case_id": list(_library_map.case_ids), "x": coords[:, 0], "y": coords[:, 1]})
    # The readable names come from the one shared table of them (built once per library state).
    named = data.case_index(_workbench)[["case_id", "label", "dataset", "synthetic", "title", "caption"]]
    frame = frame.merge(named, on="case_id", how="left")
    frame["label"] = frame["label"].fillna("unlabelled")
    frame["synthetic"] = frame["synthetic"].fillna(False).astype(bool)
    for column in ("dataset", "title", "caption"):
        frame[column] = frame[column].fillna("")
    frame["snippet"] = frame.pop("caption").map(lambda text: text if len(text) <= 120 else text[:119].rstrip() + "…")
    frame["hover"] = map_hover(frame)  # once per map, not once per analysis shown
    return frame


def _map_token(library_map: LibraryMap) -> tuple[int, int, int]:
    # generation + id + size: a rebuilt map is a new object of a new generation (and usually a new size).
    return library_map.generation, id(library_map), len(library_map.case_ids)


def library_map_frame(workbench: Workbench) -> pd.DataFrame:
    """The library map as a table, one row per case (cached per map): x, y, case_id, label, dataset,
    synthetic, title (the readable name) and snippet (the report, else the fine label and demographics)."""
    from medrag.ui import data

    library_map = workbench.library_map()
    return _map_frame(str(workbench.settings.data_dir), _map_token(library_map), data.library_key(workbench),
                      library_map, workbench)


@st.cache_data(show_spinner=False, max_entries=256)
def _embedding_xy(
    path: str, encoder_version: str, map_token: tuple[int, int, int], data_dir: str, _workbench: Workbench
) -> tuple[float, float]:
    vector = _workbench.embed_image(load_pixels(path))
    return _workbench.library_map().project(vector)


def query_position(workbench: Workbench, analysis: Analysis) -> tuple[float, float] | None:
    """Where an analysis's image lands on the library map (None for a text question or when it cannot be placed).

    A fresh analysis carries its query vector and is projected directly; one reopened from the history
    has none, so its stored image is embedded again (cached per file).
    """
    if analysis.input_kind != "image":
        return None
    library_map = workbench.library_map()
    vector = analysis.query_vector
    if (vector is not None and analysis.encoder == workbench.image_encoder_name
            and np.shape(vector)[-1:] == np.shape(library_map.mean)[-1:]):
        return library_map.project(vector)
    if not analysis.image_path:
        return None
    try:
        return _embedding_xy(
            analysis.image_path, str(workbench.image_encoder.version), _map_token(library_map),
            str(workbench.settings.data_dir), workbench,
        )
    except MedRAGError:
        return None


#: Longest wait at exit for a warm-up that is loading models.
EXIT_JOIN_S = 60.0


@atexit.register
def _stop_background() -> None:
    # A warm-up still loading models when the interpreter exits can abort the process from C++
    # ("terminate called without an active exception"): cancel those not started, wait for the rest.
    for timer in list(_TIMERS):
        timer.cancel()
    for timer in list(_TIMERS):
        if timer.is_alive():
            timer.join(EXIT_JOIN_S)
    for lease in list(_LEASES):
        lease.release()
