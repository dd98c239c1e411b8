"""Keeps the library's vectors and FAISS indexes in sync with the store: the only code that fits an encoder
or embeds library cases (the import hands its decoded features here instead of fitting on its own).

Vectors live in the store (``embeddings`` table); a FAISS file in ``index_dir`` is a cache stamped with the
encoder's name and version, extended when only new cases arrived and rebuilt otherwise. Every index save
renames a file into ``index_dir``, which changes the folder's mtime: one ``stat`` per search tells whether
another process (a CLI import) has added cases since this one loaded its index.

A case whose image cannot be read is never dropped from an index silently: it is embedded from its thumbnail
when that reads (and reported), or left out and reported (:class:`EmbedReport`, printed by ``medrag index``).
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from medrag.config import Settings
from medrag.encoders import FittableEncoder
from medrag.engine.backends import Backends
from medrag.errors import IndexMismatchError, LibraryError, MedRAGError
from medrag.store.health import disk_full_error, is_disk_full

if TYPE_CHECKING:
    from medrag.store.factory import AnyStore

log = logging.getLogger("medrag")

#: How many cases an unfitted encoder is fitted on (at import and at index time alike).
FIT_SAMPLE = 2000
#: How often (seconds) a shared store is asked whether its vectors changed.
STORE_POLL_S = 1.0
#: Cases embedded per batch when bringing an index up to date.
EMBED_BATCH = 64
#: Distinct case texts whose vectors one :meth:`LibraryVectors.embed_missing` remembers for later batches.
SHARED_TEXTS = 4096


def case_text(label: str, report: str) -> str:
    """The text a case is searched by: its label and its report."""
    return f"{label}. {report}".strip()


def read_case_pixels(image_path: str, thumb_path: str) -> tuple[np.ndarray | None, str]:
    """A library case's pixels and where they came from: ``"image"``, ``"thumbnail"``, or (None, "") for neither."""
    from medrag.imaging import load_image

    for path, source in ((image_path, "image"), (thumb_path, "thumbnail")):
        if not path:
            continue
        try:
            return load_image(Path(path)).pixels, source
        except (MedRAGError, OSError):
            continue
    return None, ""


def case_pixels(image_path: str, thumb_path: str) -> np.ndarray | None:
    """A library case's pixels: its image, else its thumbnail, else None when neither can be read."""
    return read_case_pixels(image_path, thumb_path)[0]


#: At most this many cases are named in an :class:`EmbedReport` line (the rest are counted).
NAMED_CASES = 10


@dataclass
class EmbedReport:
    """What bringing one index up to date found: how many cases were embedded, and which could not be read."""

    kind: str
    embedded: int = 0
    #: "case id (image path)" of cases left out of the index: neither their image nor their thumbnail reads
    unreadable: list[str] = field(default_factory=list)
    #: "case id (image path)" of cases whose image is missing or unreadable, embedded from their thumbnail
    from_thumbnail: list[str] = field(default_factory=list)

    def lines(self) -> list[str]:
        """The problems as lines for the terminal (none when every case was read from its image)."""
        found = []
        for cases, what in (
            (self.unreadable, f"are not in the {self.kind} index (neither image nor thumbnail reads)"),
            (self.from_thumbnail, "were embedded from their thumbnail (their image is missing or unreadable)"),
        ):
            if cases:
                more = f" and {len(cases) - NAMED_CASES} more" if len(cases) > NAMED_CASES else ""
                found.append(
                    f"{len(cases)} cases could not be read: {', '.join(cases[:NAMED_CASES])}{more}; they {what}. "
                    "Put the files back (or re-import the folder) and run `medrag index --rebuild`."
                )
        return found


def _named(case: Any) -> str:
    return f"{case.case_id[:12]} ({case.image_path or 'no image path'})"


def fit_encoder(
    encoder: Any, models_dir: Path, *, features: np.ndarray | None = None, images: Sequence[np.ndarray] = ()
) -> int:
    """Fit a fittable encoder on at most :data:`FIT_SAMPLE` cases and save its state; returns how many it saw.

    ``features`` are pre-computed per-image features (an import already decoded the images); otherwise
    ``images`` are pixels.
    """
    if features is not None:
        sample = features[:FIT_SAMPLE]
        encoder.fit_features(sample)
        seen = len(sample)
    else:
        sample_images = list(images)[:FIT_SAMPLE]
        encoder.fit(sample_images)
        seen = len(sample_images)
    models_dir.mkdir(parents=True, exist_ok=True)
    encoder.save_state(models_dir / f"{encoder.name}.npz")
    return seen


class LibraryVectors:
    """The up-to-date image and text indexes of one store."""

    def __init__(self, settings: Settings, store: AnyStore, backends: Backends) -> None:
        self.settings = settings
        self.store = store
        self.backends = backends
        self._lock = threading.RLock()
        self._indexes: dict[str, Any] = {}
        self._stamps: dict[str, int] = {}
        self._polled: dict[str, float] = {}
        self._store_stamps: dict[str, tuple[int, int]] = {}
        #: bumped whenever an index changes, so derived data (the library map) knows to recompute
        self.generation = 0
        #: per kind, what the last :meth:`ensure_index` found while embedding (unreadable cases)
        self.reports: dict[str, EmbedReport] = {}

    def encoder_for(self, kind: str) -> Any:
        """The encoder whose vectors the ``kind`` ("image" or "text") index holds."""
        return self.backends.image_encoder if kind == "image" else self.backends.text_encoder

    def _fit_if_needed(self, encoder: Any) -> None:
        if not isinstance(encoder, FittableEncoder) or encoder.is_fitted:
            return
        cases = self.store.cases_frame(limit=FIT_SAMPLE)
        if cases.empty:
            return
        images = [case_pixels(str(row.image_path), str(row.thumb_path)) for row in cases.itertuples()]
        fit_encoder(encoder, self.settings.models_dir, images=[im for im in images if im is not None])

    def embed_missing(self, kind: str, *, progress: bool = False) -> EmbedReport:
        """Embed every case that has no vector for the current encoder; reports what could not be read."""
        encoder = self.encoder_for(kind)
        report = EmbedReport(kind)
        missing = self.store.cases_missing_embeddings(encoder.name, encoder.version)
        if not missing:
            return report
        bar = None
        if progress:
            from tqdm import tqdm

            bar = tqdm(total=len(missing), unit="case", desc=f"embed {encoder.name}", leave=False)
        shared: dict[str, np.ndarray] = {}
        for start in range(0, len(missing), EMBED_BATCH):
            batch = missing[start : start + EMBED_BATCH]
            if kind == "image":
                read = [read_case_pixels(c.image_path, c.thumb_path) for c in batch]
                pixels = [p for p, _ in read]
                keep = [i for i, p in enumerate(pixels) if p is not None]
                for case, (found, source) in zip(batch, read, strict=True):
                    if found is None:
                        report.unreadable.append(_named(case))
                    elif source == "thumbnail":
                        report.from_thumbnail.append(_named(case))
                vectors = encoder.embed([pixels[i] for i in keep]) if keep else np.zeros((0, encoder.dim), np.float32)
            else:
                keep = list(range(len(batch)))
                # Cases without a report share their text ("pneumonia."): embed each distinct text once,
                # across batches too (remembering at most SHARED_TEXTS of them).
                texts = [case_text(c.label, c.report) for c in batch]
                new = [text for text in dict.fromkeys(texts) if text not in shared]
                fresh = dict(zip(new, np.asarray(encoder.embed_text(new)), strict=True)) if new else {}
                vectors = np.stack([shared[t] if t in shared else fresh[t] for t in texts])
                for text, vector in fresh.items():
                    if len(shared) < SHARED_TEXTS:
                        shared[text] = vector
            self.store.put_embeddings(encoder.name, encoder.version, [batch[i].case_id for i in keep], vectors)
            report.embedded += len(keep)
            if bar is not None:
                bar.update(len(batch))
        if bar is not None:
            bar.close()
        for line in report.lines():
            log.warning("%s", line)
        return report

    def _save(self, index: Any) -> None:
        """Save an index; a full disk is said in words (the previous index files stay as they were)."""
        try:
            index.save(self.settings.index_dir)
        except (OSError, RuntimeError) as exc:
            if is_disk_full(exc):
                raise disk_full_error(self.settings.index_dir / "index") from exc
            raise

    def ensure_index(self, kind: str = "image", *, progress: bool = False, rebuild: bool = False) -> Any:
        """The up-to-date index for ``kind``: fits an unfitted encoder, embeds new cases, rebuilds if stale."""
        from medrag.index import VectorIndex

        with self._lock:
            encoder = self.encoder_for(kind)
            if rebuild:
                self.store.drop_embeddings(encoder.name)
                self._indexes.pop(kind, None)
            if kind == "image":
                self._fit_if_needed(encoder)
                self.store.drop_embeddings(encoder.name, keep_version=encoder.version)
            self.reports[kind] = self.embed_missing(kind, progress=progress)
            ids, vectors = self.store.load_embeddings(encoder.name, encoder.version)
            current = self._indexes.get(kind)
            if current is None and not rebuild:
                try:
                    current = VectorIndex.load(self.settings.index_dir, encoder.name, encoder.version)
                except IndexMismatchError as exc:
                    # A missing index is normal on first use; anything else is worth a warning.
                    note = log.info if str(exc).startswith("no saved") else log.warning
                    note("%s; rebuilding it from the stored vectors", exc)
                    current = None
            if not ids:
                raise LibraryError("The library is empty; run `medrag demo` or `medrag ingest FOLDER` first.")
            if current is not None and list(current.ids) != ids:
                known = list(current.ids)
                if ids[: len(known)] == known:
                    # New cases only: extend the index instead of rebuilding it.
                    current.add(ids[len(known):], vectors[len(known):])
                    self._save(current)
                    self.generation += 1
                else:
                    current = None
            if current is None:
                current = VectorIndex.build(ids, vectors, encoder_name=encoder.name, encoder_version=encoder.version)
                self._save(current)
                self.generation += 1
            if self._indexes.get(kind) is not current:
                self.generation += 1
            self._indexes[kind] = current
            self._stamps[kind] = self._index_dir_stamp()
            if getattr(self.store, "shared", False):
                self._store_stamps[kind] = self.store.embeddings_stamp()
                self._polled[kind] = time.monotonic()
            return current

    def _index_dir_stamp(self) -> int:
        try:
            return os.stat(self.settings.index_dir).st_mtime_ns
        except FileNotFoundError:
            return 0

    def index(self, kind: str = "image") -> Any:
        """The cached index for ``kind``, built on first use and refreshed when another process saved one."""
        found = self._indexes.get(kind)
        if found is not None and self._stamps.get(kind) == self._index_dir_stamp() and not self._store_changed(kind):
            return found
        return self.ensure_index(kind)

    def _store_changed(self, kind: str) -> bool:
        """For a store shared by several processes (PostgreSQL): did another one add or change vectors?

        Asked at most once per :data:`STORE_POLL_S` seconds, so a replica's searches stay at FAISS speed
        and what another replica or an import added shows up within that time, without a restart.
        """
        if not getattr(self.store, "shared", False):
            return False
        now = time.monotonic()
        if now - self._polled.get(kind, 0.0) < STORE_POLL_S:
            return False
        self._polled[kind] = now
        stamp = self.store.embeddings_stamp()
        changed = kind in self._store_stamps and self._store_stamps[kind] != stamp
        self._store_stamps[kind] = stamp
        return changed


__all__ = [
    "EMBED_BATCH", "FIT_SAMPLE", "EmbedReport", "LibraryVectors", "case_pixels", "case_text", "fit_encoder",
    "read_case_pixels",
]
