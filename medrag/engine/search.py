"""Similar-case search over the library's indexes, and the library map (a 2-D PCA of the image vectors)."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from medrag.engine.backends import Backends
from medrag.engine.vectors import LibraryVectors
from medrag.records import CXRImage, Neighbour

if TYPE_CHECKING:
    from medrag.store.factory import AnyStore


@dataclass(frozen=True)
class LibraryMap:
    """Every image embedding's 2-D PCA coordinates; ``project`` places any other vector on the same map."""

    generation: int
    case_ids: list[str]
    coords: np.ndarray
    mean: np.ndarray
    components: np.ndarray

    def project(self, vector: np.ndarray) -> tuple[float, float]:
        """Where one embedding lands on this map."""
        xy = (np.asarray(vector, dtype=np.float32) - self.mean) @ self.components.T
        return float(xy[0]), float(xy[1])


class Searcher:
    """k-nearest library cases for an image, a text or a vector, with label / dataset / exclusion filters."""

    def __init__(self, store: AnyStore, vectors: LibraryVectors, backends: Backends, default_k: int) -> None:
        self.store = store
        self.vectors = vectors
        self.backends = backends
        self.default_k = default_k
        self._lock = threading.RLock()
        self._map: LibraryMap | None = None

    # ------------------------------------------------------------------ queries → vectors
    def embed_image(self, image: CXRImage | np.ndarray) -> np.ndarray:
        """The query vector of an image with the library's encoder."""
        pixels = image.pixels if isinstance(image, CXRImage) else image
        self.vectors.index("image")  # a new library fits its encoder before the first query is embedded
        vector: np.ndarray = self.backends.image_encoder.embed([pixels])[0]
        return vector

    def embed_question(self, text: str) -> tuple[str, np.ndarray]:
        """(index kind, vector) of a text query: a CLIP-style image encoder searches images with text directly."""
        image_encoder = self.backends.image_encoder
        if hasattr(image_encoder, "embed_text"):
            return "image", image_encoder.embed_text([text])[0]
        return "text", self.backends.text_encoder.embed_text([text])[0]

    # ------------------------------------------------------------------ search
    def search_vector(
        self, kind: str, vector: np.ndarray, k: int | None = None, *, label: str | None = None,
        dataset: str | None = None, exclude: set[str] | None = None,
    ) -> list[Neighbour]:
        """The k cases nearest to ``vector`` in the ``kind`` ("image"/"text") index."""
        index = self.vectors.index(kind)
        hits = index.search(vector, k or self.default_k, allowed_ids=self._allowed(label, dataset, exclude))[0]
        return self.neighbours(hits)

    def search_image(
        self, image: CXRImage | np.ndarray, k: int | None = None, *, label: str | None = None,
        dataset: str | None = None, exclude: set[str] | None = None,
    ) -> list[Neighbour]:
        """The k library cases most similar to an image."""
        return self.search_vector("image", self.embed_image(image), k, label=label, dataset=dataset, exclude=exclude)

    def search_text(
        self, text: str, k: int | None = None, *, label: str | None = None, dataset: str | None = None
    ) -> list[Neighbour]:
        """The k cases whose label + report best match ``text`` (MiniLM, or a CLIP text tower)."""
        kind, vector = self.embed_question(text)
        return self.search_vector(kind, vector, k, label=label, dataset=dataset)

    def search_label(self, label: str, k: int | None = None, *, dataset: str | None = None) -> list[Neighbour]:
        """Disease label → similar X-rays: exact label matches first, then the closest by text."""
        exact = self.store.cases_frame(label=label, dataset=dataset, limit=k or self.default_k)
        if len(exact):
            return self.neighbours([(cid, 1.0) for cid in exact["case_id"]])
        return self.search_text(f"chest x-ray showing {label}", k, dataset=dataset)

    def neighbours(self, hits: Sequence[tuple[str, float]]) -> list[Neighbour]:
        """Index hits (case id, score) as :class:`Neighbour` records, ranked from 1."""
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

    # ------------------------------------------------------------------ map
    def library_map(self) -> LibraryMap:
        """2-D PCA of every image embedding (computed once per index generation)."""
        self.vectors.index("image")
        with self._lock:
            generation = self.vectors.generation
            if self._map is None or self._map.generation != generation:
                encoder = self.backends.image_encoder
                ids, vectors = self.store.load_embeddings(encoder.name, encoder.version)
                mean = vectors.mean(axis=0)
                _, _, vt = np.linalg.svd(vectors - mean, full_matrices=False)
                components = vt[:2]
                coords = np.ascontiguousarray((vectors - mean) @ components.T, dtype=np.float32)
                self._map = LibraryMap(generation, ids, coords, mean, components)
            return self._map


__all__ = ["LibraryMap", "Searcher"]
