"""The in-process engine for one data folder: the store plus the engine's parts, each built once and shared.

The CLI makes one :class:`Workbench`; the Streamlit app keeps one in ``st.cache_resource`` and shares it
between sessions. The work itself lives in :mod:`medrag.engine` (backends with fallback, vectors and
indexes, search); this class composes them and is the :class:`~medrag.engine.protocol.AnalysisEngine` the
pipeline runs on.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from medrag.config import Settings, load_settings
from medrag.engine.backends import Backends, BackendStatus
from medrag.engine.search import LibraryMap, Searcher
from medrag.engine.vectors import EmbedReport, LibraryVectors
from medrag.events import Event, StageStarted
from medrag.library import IngestReport, ingest_path
from medrag.reading.base import ImageReading
from medrag.reasoners import Reasoner, Summariser
from medrag.records import Case, CXRImage, Neighbour
from medrag.store.factory import open_store

if TYPE_CHECKING:
    from medrag.analysis import Analysis
    from medrag.engine.thumbnails import ThumbnailReport
    from medrag.store.factory import AnyStore


class Workbench:
    """Store + backends + vectors + search for one data folder."""

    def __init__(self, settings: Settings | None = None, store: AnyStore | None = None) -> None:
        self.settings = settings or load_settings()
        # The store first: it refuses to re-create a data folder this process used that has since moved away.
        self.store = store or open_store(self.settings)
        self.store.check_location()
        self.settings.data_dir.mkdir(parents=True, exist_ok=True)
        self.backends = Backends(self.settings)
        self.vectors = LibraryVectors(self.settings, self.store, self.backends)
        self.searcher = Searcher(self.store, self.vectors, self.backends, self.settings.k)
        self._library_lock = threading.Lock()
        #: what the last ``ensure_index(rebuild=True)`` re-created (None before one)
        self.thumbnail_report: ThumbnailReport | None = None

    # ------------------------------------------------------------------ backends
    @property
    def image_encoder(self) -> Any:
        """The library's image encoder (fitted state loaded when present)."""
        return self.backends.image_encoder

    @property
    def text_encoder(self) -> Any:
        """The text encoder for reports, labels and questions."""
        return self.backends.text_encoder

    @property
    def reasoner(self) -> Reasoner:
        """The reasoning backend that will actually run."""
        return self.backends.reasoner

    @property
    def summariser(self) -> Summariser:
        """The summariser backend that will actually run."""
        return self.backends.summariser

    @property
    def image_encoder_name(self) -> str:
        """The name of the image encoder searches use."""
        return str(self.backends.image_encoder.name)

    @property
    def text_encoder_name(self) -> str:
        """The name of the encoder text questions are searched with."""
        image_encoder = self.backends.image_encoder
        return str(image_encoder.name if hasattr(image_encoder, "embed_text") else self.backends.text_encoder.name)

    @property
    def web_cache(self) -> AnyStore:
        """The store doubles as the web-result cache."""
        return self.store

    def backend_status(self) -> list[BackendStatus]:
        """For each stage: requested vs active backend and why (loads the backends)."""
        return self.backends.status()

    # ------------------------------------------------------------------ library
    def ensure_library(
        self, *, progress: bool = False, on_progress: Callable[[int, int], None] | None = None
    ) -> IngestReport | None:
        """Build and import the synthetic demo library when the library is empty; returns its report.

        The one demo bootstrap: the app's first start and `medrag analyze` on an empty library both use it.
        """
        if self.store.count_cases() > 0:
            return None
        with self._library_lock:
            if self.store.count_cases() > 0:
                return None
            return self.build_demo(n=self.settings.demo_cases, progress=progress, on_progress=on_progress)

    def build_demo(
        self, *, n: int, seed: int | None = None, progress: bool = False,
        on_progress: Callable[[int, int], None] | None = None,
    ) -> IngestReport:
        """Write the synthetic phantom library (``n`` cases) into the data folder, import and index it."""
        from medrag.phantoms import build_demo_library

        options: dict[str, Any] = {} if seed is None else {"seed": seed}
        csv_path = build_demo_library(self.settings.demo_dir, n=n, **options)
        return self.ingest(
            csv_path.parent, labels_csv=csv_path, progress=progress, on_progress=on_progress, reindex=True
        )

    def ingest(
        self,
        source: Path,
        *,
        labels_csv: Path | None = None,
        images_dir: Path | None = None,
        progress: bool = False,
        on_progress: Callable[[int, int], None] | None = None,
        reindex: bool = False,
        ray_address: str | None = None,
    ) -> IngestReport:
        """Import a folder / CSV / Open-i / parquet source, then bring the indexes up to date.

        Any thumbnail missing from the data folder is made again from its image (unchanged sources too).
        ``ray_address`` ("local" or a cluster's address) runs the per-image work on Ray workers.
        """
        from medrag.engine.thumbnails import restore_missing_thumbnails

        self.store.check_location()
        report = ingest_path(
            source, self.settings, self.store, labels_csv=labels_csv, images_dir=images_dir,
            progress=progress, on_progress=on_progress, encoder=self.image_encoder, ray_address=ray_address,
        )
        report.notes += restore_missing_thumbnails(self.store, self.settings).notes()
        if reindex or report.added or report.embedded:
            self.ensure_index(progress=progress)
        return report

    # ------------------------------------------------------------------ indexes
    def ensure_index(self, kind: str = "image", *, progress: bool = False, rebuild: bool = False) -> Any:
        """The up-to-date index for ``kind`` ("image" or "text"): embeds new cases, rebuilds if stale.

        A rebuild first re-creates missing thumbnails; :meth:`embed_report` then says which cases could not
        be read (left out, or embedded from their thumbnail).
        """
        self.store.check_location()
        if rebuild and kind == "image":
            from medrag.engine.thumbnails import restore_missing_thumbnails

            self.thumbnail_report = restore_missing_thumbnails(self.store, self.settings)
        return self.vectors.ensure_index(kind, progress=progress, rebuild=rebuild)

    def embed_report(self, kind: str = "image") -> EmbedReport | None:
        """What the last :meth:`ensure_index` of ``kind`` found while embedding (None before the first)."""
        return self.vectors.reports.get(kind)

    def index(self, kind: str = "image") -> Any:
        """The cached index for ``kind``, refreshed when another process saved one."""
        return self.vectors.index(kind)

    # ------------------------------------------------------------------ reading
    def read_image(self, image: CXRImage) -> ImageReading | None:
        """What the configured image readers see on ``image`` (None when no reader is configured)."""
        view = str(image.meta.get("view") or image.meta.get("dicom", {}).get("ViewPosition") or "") or None
        reading: ImageReading | None = self.backends.reader.read(image.pixels, view_hint=view)
        return reading

    def reader_trained_patients(self) -> set[str]:
        """Patient ids the configured image readers were trained on (an analysis of one is no fair test)."""
        trained = getattr(self.backends.reader, "trained_patients", None)
        return set(trained()) if callable(trained) else set()

    # ------------------------------------------------------------------ search
    def embed_image(self, image: CXRImage | np.ndarray) -> np.ndarray:
        """The query vector of an image with the library's encoder."""
        return self.searcher.embed_image(image)

    def embed_question(self, text: str) -> tuple[str, np.ndarray]:
        """(index kind, vector) of a text question."""
        return self.searcher.embed_question(text)

    def search_vector(
        self, kind: str, vector: np.ndarray, k: int | None = None, *, label: str | None = None,
        dataset: str | None = None, exclude: set[str] | None = None,
    ) -> list[Neighbour]:
        """The k nearest library cases to a query vector."""
        return self.searcher.search_vector(kind, vector, k, label=label, dataset=dataset, exclude=exclude)

    def search_image(
        self, image: CXRImage | np.ndarray, k: int | None = None, *, label: str | None = None,
        dataset: str | None = None, exclude: set[str] | None = None,
    ) -> list[Neighbour]:
        """The k library cases most similar to an image."""
        return self.searcher.search_image(image, k, label=label, dataset=dataset, exclude=exclude)

    def search_text(
        self, text: str, k: int | None = None, *, label: str | None = None, dataset: str | None = None
    ) -> list[Neighbour]:
        """The k cases whose label + report best match ``text``."""
        return self.searcher.search_text(text, k, label=label, dataset=dataset)

    def search_label(self, label: str, k: int | None = None, *, dataset: str | None = None) -> list[Neighbour]:
        """Disease label → similar X-rays: exact label matches first, then the closest by text."""
        return self.searcher.search_label(label, k, dataset=dataset)

    def library_map(self) -> LibraryMap:
        """2-D PCA of every image embedding (``project`` places a query on it)."""
        return self.searcher.library_map()

    # ------------------------------------------------------------------ analysis
    def check_location(self) -> None:
        """Raise StoreMovedError when the data folder was moved or deleted while this process ran."""
        self.store.check_location()

    def library_case(self, case_id: str) -> Case | None:
        """The library case with this id (a case's id is its pixels' hash), None when the library has none."""
        return self.store.get_cases([case_id]).get(case_id) if case_id else None

    def save_analysis(self, analysis: Analysis) -> int:
        """Append an analysis to the history; returns its id."""
        return self.store.save_analysis(analysis)

    def analyze(
        self, source: Path | bytes | str | None = None, *, question: str = "", name: str = "", **options: Any
    ) -> Iterator[Event]:
        """Run the pipeline on this workbench (see :func:`medrag.pipeline.analyze`).

        Raises :class:`~medrag.errors.StoreMovedError` at once when the data folder moved away while running
        (the upload would otherwise re-create it, empty, at the old place).
        """
        from medrag.pipeline import analyze

        self.store.check_location()

        events = analyze(self, source, question=question, name=name, **options)
        return self._store_held(events, web=bool(options.get("web", True)))

    def _store_held(self, events: Iterator[Event], *, web: bool) -> Iterator[Event]:
        """``events`` with the store's file held open from the first stage, let go before a web search.

        Each store call would otherwise reopen the DuckDB file (about 20 ms with the damage check; an analysis
        makes several). The network is not waited on with the file held, so another process is kept out for
        the length of the local stages only; the save after a web search opens the file again.
        """
        with contextlib.ExitStack() as held:
            held.enter_context(self.store.session())
            for event in events:
                if web and isinstance(event, StageStarted) and event.stage == "web":
                    held.close()
                yield event


__all__ = ["BackendStatus", "LibraryMap", "Workbench"]
