"""The in-process engine: store, encoders, indexes and backends, each built once and shared.

The CLI makes one :class:`Workbench`; the Streamlit app keeps one in ``st.cache_resource`` and shares it
between sessions, so every lazy member is built under a lock and never rebuilt needlessly. A backend
that cannot load (missing weights, no server) falls back to the offline default, and
:meth:`Workbench.backend_status` says which one actually runs and why.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from medrag.config import Settings, load_settings
from medrag.encoders import FittableEncoder, build_encoder, get_encoder_spec
from medrag.errors import BackendUnavailableError, IndexMismatchError, LibraryError, MedRAGError
from medrag.events import Event
from medrag.library import FIT_SAMPLE, IngestReport, ingest_path
from medrag.reasoners import Reasoner, Summariser, build_reasoner, build_summariser
from medrag.records import CXRImage, Neighbour
from medrag.store import Store

log = logging.getLogger("medrag")

_DEFAULTS = {"image_encoder": "classic", "text_encoder": "minilm", "reasoner": "evidence", "summariser": "rules"}


@dataclass(frozen=True)
class _LibraryMap:
    index_id: int
    case_ids: list[str]
    coords: np.ndarray
    mean: np.ndarray
    components: np.ndarray

    def project(self, vector: np.ndarray) -> np.ndarray:
        """2-D coordinates of one embedding on this map."""
        return (np.asarray(vector, dtype=np.float32) - self.mean) @ self.components.T


@dataclass(frozen=True)
class BackendStatus:
    """Which backend a stage uses, which was asked for, and why they differ."""

    stage: str
    requested: str
    active: str
    model: str
    note: str = ""


class Workbench:
    """Store + encoders + indexes + backends for one data folder."""

    def __init__(self, settings: Settings | None = None, store: Store | None = None) -> None:
        self.settings = settings or load_settings()
        self.settings.data_dir.mkdir(parents=True, exist_ok=True)
        self.store = store or Store(self.settings.db_path)
        self._lock = threading.RLock()
        self._members: dict[str, Any] = {}
        self._notes: dict[str, str] = {}
        self._indexes: dict[str, Any] = {}
        self._index_stamps: dict[str, int] = {}
        self._map: _LibraryMap | None = None

    # ----------------------------------------------------------------- backends
    def _member(self, stage: str, build: Callable[[str], Any]) -> Any:
        with self._lock:
            if stage not in self._members:
                requested = getattr(self.settings, stage)
                try:
                    self._members[stage] = build(requested)
                except BackendUnavailableError as exc:
                    fallback = _DEFAULTS[stage]
                    if requested == fallback:
                        raise
                    self._notes[stage] = f"{requested} unavailable, using {fallback}: {exc}"
                    log.warning(self._notes[stage])
                    self._members[stage] = build(fallback)
            return self._members[stage]

    @property
    def image_encoder(self) -> Any:
        """The library's image encoder (fitted state loaded when present)."""
        return self._member("image_encoder", lambda name: build_encoder(name, self.settings))

    @property
    def text_encoder(self) -> Any:
        """The text encoder for reports, labels and questions."""
        return self._member("text_encoder", lambda name: build_encoder(name, self.settings))

    @property
    def reasoner(self) -> Reasoner:
        """The reasoning backend that will actually run."""
        return self._member("reasoner", lambda name: build_reasoner(name, self.settings))

    @property
    def summariser(self) -> Summariser:
        """The summariser backend that will actually run."""
        return self._member("summariser", lambda name: build_summariser(name, self.settings))

    def fallback_reasoner(self) -> Reasoner:
        """The offline reasoner, used when the configured one fails mid-analysis."""
        return build_reasoner(_DEFAULTS["reasoner"], self.settings)

    def backend_status(self) -> list[BackendStatus]:
        """For each stage: requested vs active backend and why (loads the backends)."""
        statuses = []
        for stage in ("image_encoder", "text_encoder", "reasoner", "summariser"):
            try:
                member = getattr(self, stage)
                active, model = member.name, str(getattr(member, "model", getattr(member, "version", "")))
            except MedRAGError as exc:
                active, model = "unavailable", str(exc)
            statuses.append(BackendStatus(stage, getattr(self.settings, stage), active, model, self._notes.get(stage, "")))
        return statuses

    # ------------------------------------------------------------------ library
    def ensure_library(self, *, progress: bool = False) -> IngestReport | None:
        """Build and import the synthetic demo library when the library is empty; returns its report."""
        if self.store.count_cases() > 0:
            return None
        from medrag.phantoms import build_demo_library

        with self._lock:
            if self.store.count_cases() > 0:
                return None
            csv_path = build_demo_library(self.settings.demo_dir, n=self.settings.demo_cases)
            report = ingest_path(
                csv_path.parent, self.settings, self.store, labels_csv=csv_path, progress=progress, encoder=self.image_encoder
            )
            self.ensure_index(progress=progress)
            return report

    def ingest(
        self,
        source: Path,
        *,
        labels_csv: Path | None = None,
        images_dir: Path | None = None,
        progress: bool = False,
        on_progress: Callable[[int, int], None] | None = None,
    ) -> IngestReport:
        """Import a folder / CSV / Open-i / parquet source, then bring the indexes up to date."""
        report = ingest_path(
            source, self.settings, self.store, labels_csv=labels_csv, images_dir=images_dir,
            progress=progress, on_progress=on_progress, encoder=self.image_encoder,
        )
        if report.added or report.embedded:
            self.ensure_index(progress=progress)
        return report

    # ------------------------------------------------------------------ indexes
    def _fit_if_needed(self, encoder: Any, progress: bool) -> None:
        if not isinstance(encoder, FittableEncoder) or encoder.is_fitted:
            return
        cases = self.store.cases_frame(limit=FIT_SAMPLE)
        if cases.empty:
            return
        images = [self._pixels_of(row.image_path, row.thumb_path) for row in cases.itertuples()]
        encoder.fit([im for im in images if im is not None])
        self.settings.models_dir.mkdir(parents=True, exist_ok=True)
        encoder.save_state(self.settings.models_dir / f"{encoder.name}.npz")

    @staticmethod
    def _pixels_of(image_path: str, thumb_path: str) -> np.ndarray | None:
        from medrag.imaging import load_image

        for path in (image_path, thumb_path):
            try:
                return load_image(Path(path)).pixels
            except (MedRAGError, OSError):
                continue
        return None

    def _embed_missing(self, encoder: Any, kind: str, progress: bool) -> int:
        missing = self.store.cases_missing_embeddings(encoder.name, encoder.version)
        if not missing:
            return 0
        bar = None
        if progress:
            from tqdm import tqdm

            bar = tqdm(total=len(missing), unit="case", desc=f"embed {encoder.name}", leave=False)
        for start in range(0, len(missing), 64):
            batch = missing[start : start + 64]
            if kind == "image":
                pixels = [self._pixels_of(c.image_path, c.thumb_path) for c in batch]
                keep = [i for i, p in enumerate(pixels) if p is not None]
                vectors = encoder.embed([pixels[i] for i in keep]) if keep else np.zeros((0, encoder.dim), np.float32)
            else:
                keep = list(range(len(batch)))
                vectors = encoder.embed_text([case_text(c.label, c.report) for c in batch])
            self.store.put_embeddings(encoder.name, encoder.version, [batch[i].case_id for i in keep], vectors)
            if bar is not None:
                bar.update(len(batch))
        if bar is not None:
            bar.close()
        return len(missing)

    def ensure_index(self, kind: str = "image", *, progress: bool = False, rebuild: bool = False) -> Any:
        """The up-to-date index for ``kind`` ("image" or "text"): embeds new cases, rebuilds if stale."""
        from medrag.index import VectorIndex

        with self._lock:
            encoder = self.image_encoder if kind == "image" else self.text_encoder
            if rebuild:
                self.store.drop_embeddings(encoder.name)
                self._indexes.pop(kind, None)
            if kind == "image":
                self._fit_if_needed(encoder, progress)
                self.store.drop_embeddings(encoder.name, keep_version=encoder.version)
            self._embed_missing(encoder, kind, progress)
            ids, vectors = self.store.load_embeddings(encoder.name, encoder.version)
            current = self._indexes.get(kind)
            if current is None and not rebuild:
                try:
                    current = VectorIndex.load(self.settings.index_dir, encoder.name, encoder.version)
                except IndexMismatchError as exc:
                    # A missing index is normal on first use; anything else is worth a warning.
                    (log.info if str(exc).startswith("no saved") else log.warning)("%s; rebuilding it from the stored vectors", exc)
                    current = None
            if not ids:
                raise LibraryError("The library is empty; run `medrag demo` or `medrag ingest FOLDER` first.")
            if current is not None and list(current.ids) != ids:
                known = list(current.ids)
                if ids[: len(known)] == known:
                    # New cases only: extend the index instead of rebuilding it.
                    current.add(ids[len(known):], vectors[len(known):])
                    current.save(self.settings.index_dir)
                    self._map = None
                else:
                    current = None
            if current is None:
                current = VectorIndex.build(ids, vectors, encoder_name=encoder.name, encoder_version=encoder.version)
                current.save(self.settings.index_dir)
                self._map = None
            self._indexes[kind] = current
            self._index_stamps[kind] = self._index_dir_stamp()
            return current

    def _index_dir_stamp(self) -> int:
        try:
            return os.stat(self.settings.index_dir).st_mtime_ns
        except FileNotFoundError:
            return 0

    def index(self, kind: str = "image") -> Any:
        """The cached index for ``kind``, built on first use and refreshed when another process saved one.

        Every index save renames a file into ``index_dir``, which changes the folder's mtime: one stat per
        search tells whether (say) a CLI import has added cases since this process loaded its index.
        """
        found = self._indexes.get(kind)
        if found is not None and self._index_stamps.get(kind) == self._index_dir_stamp():
            return found
        return self.ensure_index(kind)

    # ------------------------------------------------------------------ search
    def _neighbours(self, hits: Sequence[tuple[str, float]]) -> list[Neighbour]:
        cases = self.store.get_cases([cid for cid, _ in hits])
        found = []
        for rank, (cid, score) in enumerate(hits, start=1):
            case = cases.get(cid)
            if case is None:
                continue
            found.append(Neighbour(
                case_id=cid, score=float(score), rank=rank, label=case.label, dataset=case.dataset,
                report=case.report, thumb_path=case.thumb_path, image_path=case.image_path, synthetic=case.synthetic,
            ))
        return found

    def _allowed(self, label: str | None, dataset: str | None, exclude: set[str] | None) -> set[str] | None:
        if not label and not dataset and not exclude:
            return None
        allowed = self.store.case_ids_where(label=label, dataset=dataset)
        return allowed - (exclude or set())

    def search_image(
        self, image: CXRImage | np.ndarray, k: int | None = None, *, label: str | None = None,
        dataset: str | None = None, exclude: set[str] | None = None,
    ) -> list[Neighbour]:
        """The k library cases most similar to an image."""
        pixels = image.pixels if isinstance(image, CXRImage) else image
        index = self.index("image")
        vector = self.image_encoder.embed([pixels])[0]
        hits = index.search(vector, k or self.settings.k, allowed_ids=self._allowed(label, dataset, exclude))[0]
        return self._neighbours(hits)

    def search_text(
        self, text: str, k: int | None = None, *, label: str | None = None, dataset: str | None = None,
    ) -> list[Neighbour]:
        """The k cases whose label + report best match ``text`` (MiniLM, or a CLIP text tower)."""
        image_encoder = self.image_encoder
        if hasattr(image_encoder, "embed_text"):
            # A CLIP-style encoder searches images with text directly.
            vector = image_encoder.embed_text([text])[0]
            index = self.index("image")
        else:
            vector = self.text_encoder.embed_text([text])[0]
            index = self.index("text")
        hits = index.search(vector, k or self.settings.k, allowed_ids=self._allowed(label, dataset, None))[0]
        return self._neighbours(hits)

    def search_label(self, label: str, k: int | None = None, *, dataset: str | None = None) -> list[Neighbour]:
        """Disease label → similar X-rays: exact label matches first, then the closest by text."""
        exact = self.store.cases_frame(label=label, dataset=dataset, limit=k or self.settings.k)
        if len(exact):
            return self._neighbours([(cid, 1.0) for cid in exact["case_id"]])
        return self.search_text(f"chest x-ray showing {label}", k, dataset=dataset)

    def library_map(self) -> "_LibraryMap":
        """2-D PCA of every image embedding (computed once per index; ``project`` places a query on it)."""
        index = self.index("image")
        with self._lock:
            if self._map is None or self._map.index_id != id(index):
                ids, vectors = self.store.load_embeddings(self.image_encoder.name, self.image_encoder.version)
                mean = vectors.mean(axis=0)
                _, _, vt = np.linalg.svd(vectors - mean, full_matrices=False)
                components = vt[:2]
                coords = np.ascontiguousarray((vectors - mean) @ components.T, dtype=np.float32)
                self._map = _LibraryMap(id(index), ids, coords, mean, components)
            return self._map

    def embed_image(self, image: CXRImage | np.ndarray) -> np.ndarray:
        """The query vector of an image with the library's encoder."""
        pixels = image.pixels if isinstance(image, CXRImage) else image
        return self.image_encoder.embed([pixels])[0]

    # ------------------------------------------------------------------ analysis
    def analyze(self, source: Path | bytes | str | None = None, *, question: str = "", name: str = "", **options: Any) -> Iterator[Event]:
        """Run the pipeline (see :func:`medrag.pipeline.analyze`)."""
        from medrag.pipeline import analyze

        return analyze(self, source, question=question, name=name, **options)


def case_text(label: str, report: str) -> str:
    """The text a case is searched by: its label and its report."""
    return f"{label}. {report}".strip()


def encoder_is_weight_free(name: str) -> bool:
    """Whether the registered encoder needs no downloaded weights."""
    return get_encoder_spec(name).weight_free
