"""``VectorIndex``: a FAISS inner-product index keyed by case id, stamped with its encoder.

Kinds (``flat``, ``hnsw``, ``ivfsq8``, ``ivfpq``; see :mod:`medrag.index_kinds`) are picked with
:func:`choose_index_kind`, or passed as ``kind``.

Every kind keeps FAISS int64 labels of its own and maps them to string ids, so ``add`` and ``remove``
work incrementally. Adding an id that is already present **replaces** its vector (the id moves to
the end of :attr:`VectorIndex.ids`). ``search(..., allowed_ids=...)`` filters inside FAISS with an
``IDSelectorBatch``; where an approximate kind returns fewer hits than the filter allows, it falls
back to an exact scan of the allowed vectors (flat/hnsw) or to probing every list (ivfsq8/ivfpq).

On disk an index is ``<name>.faiss`` + ``<name>.json`` (the stamp). ``save`` writes each atomically and
durably (:mod:`medrag.fsutil`: temp file, fsync, ``os.replace``, fsync of the folder), the JSON last;
the JSON records the ``.faiss`` file's SHA-256, so a crash between the two replaces leaves a mismatch
that ``load`` detects and reports as :class:`IndexMismatchError` (callers rebuild from the stored vectors).
"""

from __future__ import annotations

import hashlib
import json
import re
import threading
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

import faiss
import numpy as np

from medrag.errors import IndexMismatchError, InputError
from medrag.fsutil import atomic_write, atomic_writer, file_sha256
from medrag.index_kinds import (
    FLAT_MAX,
    HNSW_MAX,
    INDEX_KINDS,
    KINDS,
    IndexKind,
    choose_index_kind,
    get_index_kind,
    pad_columns,
)

FORMAT_VERSION = 1
#: Batches smaller than this search on one OpenMP thread: with the other core busy, a 2-thread team
#: stalled a single flat query over 10k × 512 from 0.6 ms to 25 ms median (docs/encoder-experiments.md).
_SMALL_BATCH = 16


@contextmanager
def _omp_threads(n: int | None) -> Iterator[None]:
    """Temporarily run FAISS on ``n`` threads (None: leave as is). Process-wide, so only a hint."""
    if n is None:
        yield
        return
    before = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(n)
    try:
        yield
    finally:
        faiss.omp_set_num_threads(before)


def _safe_name(name: str) -> str:
    cleaned = re.sub(r"[^A-Za-z0-9_.-]+", "_", name).strip("._")
    if not cleaned:
        raise InputError(f"encoder name {name!r} cannot name an index file; use letters, digits, '-' or '_'.")
    return cleaned


def _as_matrix(vectors: np.ndarray, dim: int | None, what: str) -> np.ndarray:
    arr = np.asarray(vectors, dtype=np.float32)
    if arr.ndim == 1 and dim is not None and arr.size == dim:
        arr = arr[None, :]
    if arr.ndim != 2 or (dim is not None and arr.shape[1] != dim):
        want = f"(n, {dim})" if dim is not None else "(n, dim)"
        raise InputError(
            f"{what} must have shape {want}, got {arr.shape}; embed with the encoder this index was built with."
        )
    if not np.all(np.isfinite(arr)):
        raise InputError(f"{what} contain NaN or infinity; check the encoder output.")
    return np.ascontiguousarray(arr)


def _check_ids(ids: Sequence[str]) -> list[str]:
    out = [str(i) for i in ids]
    seen: set[str] = set()
    for cid in out:
        if cid in seen:
            raise InputError(f"id {cid!r} appears twice in one call; pass each id once.")
        seen.add(cid)
    return out


def _write_faiss(index: faiss.Index, target: Path) -> str:
    """Write ``index`` to ``target`` atomically and durably, streamed; returns the SHA-256 of its bytes."""
    digest = hashlib.sha256()
    with atomic_writer(target) as handle:

        def write(chunk: bytes) -> None:
            digest.update(chunk)
            handle.write(chunk)

        faiss.write_index(index, faiss.PyCallbackIOWriter(write))  # type: ignore[attr-defined]  # missing from the stub
    return digest.hexdigest()


class VectorIndex:
    """A FAISS inner-product index over string ids, stamped with the encoder that made the vectors."""

    def __init__(
        self,
        index: faiss.Index,
        *,
        kind: str,
        dim: int,
        encoder_name: str,
        encoder_version: str,
        ids: Sequence[str] = (),
        labels: Sequence[int] = (),
        created_at: str | None = None,
    ) -> None:
        """Wrap an existing FAISS index; use :meth:`build` or :meth:`load` rather than this."""
        self._index = index
        self._kind = kind
        self._spec: IndexKind = get_index_kind(kind)
        self._dim = dim
        self.encoder_name = encoder_name
        self.encoder_version = encoder_version
        self.created_at = created_at or datetime.now(UTC).isoformat(timespec="seconds")
        self._label_of: dict[str, int] = dict(zip(ids, (int(x) for x in labels), strict=True))
        self._id_of: dict[int, str] = {label: cid for cid, label in self._label_of.items()}
        self._next_label = max(self._id_of, default=-1) + 1
        self._lock = threading.RLock()

    # -- construction ------------------------------------------------------------------------------
    @classmethod
    def build(
        cls,
        ids: Sequence[str],
        vectors: np.ndarray,
        *,
        encoder_name: str,
        encoder_version: str,
        kind: str = "auto",
    ) -> VectorIndex:
        """A new index over ``vectors`` (n, dim) named by ``ids``; ``kind="auto"`` uses :func:`choose_index_kind`."""
        id_list = _check_ids(ids)
        matrix = _as_matrix(vectors, None, "vectors")
        if matrix.shape[0] != len(id_list):
            raise InputError(f"{len(id_list)} ids but {matrix.shape[0]} vectors; pass one id per vector.")
        dim = int(matrix.shape[1])
        if dim == 0:
            raise InputError("vectors have dimension 0; embed the images first.")
        chosen = choose_index_kind(len(id_list), dim) if kind == "auto" else kind
        spec = get_index_kind(chosen)
        index = cls(
            spec.build(dim, matrix if spec.trained else None),
            kind=chosen,
            dim=dim,
            encoder_name=encoder_name,
            encoder_version=encoder_version,
        )
        index.add(id_list, matrix)
        return index

    # -- properties --------------------------------------------------------------------------------
    @property
    def ids(self) -> list[str]:
        """The ids in the index, oldest first (a replaced id counts as newest)."""
        with self._lock:
            return list(self._label_of)

    @property
    def dim(self) -> int:
        """Vector dimension."""
        return self._dim

    @property
    def kind(self) -> str:
        """``flat``, ``hnsw``, ``ivfsq8`` or ``ivfpq``."""
        return self._kind

    def __len__(self) -> int:
        with self._lock:
            return len(self._label_of)

    def __contains__(self, case_id: object) -> bool:
        with self._lock:
            return case_id in self._label_of

    def __repr__(self) -> str:
        return (
            f"VectorIndex(kind={self._kind!r}, n={len(self)}, dim={self._dim}, "
            f"encoder={self.encoder_name!r} {self.encoder_version!r})"
        )

    # -- mutation ----------------------------------------------------------------------------------
    def add(self, ids: Sequence[str], vectors: np.ndarray) -> None:
        """Add vectors; an id already in the index has its vector replaced."""
        id_list = _check_ids(ids)
        matrix = _as_matrix(vectors, self._dim, "vectors")
        if matrix.shape[0] != len(id_list):
            raise InputError(f"{len(id_list)} ids but {matrix.shape[0]} vectors; pass one id per vector.")
        if not id_list:
            return
        with self._lock:
            existing = [cid for cid in id_list if cid in self._label_of]
            if existing:
                self.remove(existing)
            labels = np.arange(self._next_label, self._next_label + len(id_list), dtype=np.int64)
            self._index.add_with_ids(self._faiss_rows(matrix), labels)
            self._next_label += len(id_list)
            for cid, label in zip(id_list, labels.tolist(), strict=True):
                self._label_of[cid] = label
                self._id_of[label] = cid

    def remove(self, ids: Iterable[str]) -> int:
        """Remove the given ids (unknown ids are ignored); returns how many were removed.

        flat and the IVF kinds delete in place; an HNSW graph cannot delete, so hnsw rebuilds from the
        remaining vectors (about 20 s per 100k at dim 512: batch removals).
        """
        with self._lock:
            gone = [cid for cid in dict.fromkeys(str(i) for i in ids) if cid in self._label_of]
            if not gone:
                return 0
            labels = np.asarray([self._label_of[cid] for cid in gone], dtype=np.int64)
            if not self._spec.deletes:
                self._rebuild_without(labels)  # e.g. HNSW graphs do not support deletion
            else:
                self._index.remove_ids(faiss.IDSelectorBatch(labels))
            for cid, label in zip(gone, labels.tolist(), strict=True):
                del self._label_of[cid]
                del self._id_of[label]
            return len(gone)

    def _rebuild_without(self, labels: np.ndarray) -> None:
        drop = set(labels.tolist())
        keep = np.asarray([lab for lab in self._label_of.values() if lab not in drop], dtype=np.int64)
        fresh = self._spec.build(self._dim, None)
        if keep.size:
            fresh.add_with_ids(self._index.reconstruct_batch(keep), keep)
        self._index = fresh

    def _faiss_rows(self, matrix: np.ndarray) -> np.ndarray:
        return pad_columns(matrix, self._index.d) if self._index.d != self._dim else matrix

    # -- search ------------------------------------------------------------------------------------
    def search(
        self, query: np.ndarray, k: int, allowed_ids: set[str] | None = None
    ) -> list[list[tuple[str, float]]]:
        """The ``k`` best (id, inner product) per query row, best first.

        ``query`` is (dim,) or (n, dim). ``allowed_ids`` restricts results to those ids (ids not in the
        index are ignored); an empty set gives empty lists.
        """
        if k < 1:
            raise InputError(f"k must be at least 1, got {k}.")
        queries = _as_matrix(query, self._dim, "query")
        with self._lock, _omp_threads(1 if len(queries) < _SMALL_BATCH else None):
            if not self._label_of or allowed_ids is not None and not allowed_ids:
                return [[] for _ in range(len(queries))]
            if allowed_ids is None:
                allowed = None
                want = min(k, len(self._label_of))
                scores, labels = self._index.search(self._faiss_rows(queries), want)
            else:
                allowed = np.asarray(
                    sorted(self._label_of[cid] for cid in allowed_ids if cid in self._label_of), dtype=np.int64
                )
                if allowed.size == 0:
                    return [[] for _ in range(len(queries))]
                want = min(k, int(allowed.size))
                params = self._spec.search_params(self._index, faiss.IDSelectorBatch(allowed), False)
                scores, labels = self._index.search(self._faiss_rows(queries), want, params=params)
            results = [self._hits(s, lab) for s, lab in zip(scores, labels, strict=True)]
            for row, hits in enumerate(results):
                if len(hits) < want:  # approximate kinds can come up short (tight filter, k near n)
                    if allowed is None:
                        allowed = np.fromiter(self._id_of, dtype=np.int64, count=len(self._id_of))
                    results[row] = self._search_subset(queries[row], allowed, want)
            return results

    def _search_subset(self, query: np.ndarray, allowed: np.ndarray, k: int) -> list[tuple[str, float]]:
        if self._spec.trained:  # inverted lists keep no direct map to reconstruct from: probe them all
            params = self._spec.search_params(self._index, faiss.IDSelectorBatch(allowed), True)
            scores, labels = self._index.search(self._faiss_rows(query[None, :]), k, params=params)
            return self._hits(scores[0], labels[0])
        vectors = self._index.reconstruct_batch(allowed)
        scores = vectors @ query
        order = np.lexsort((allowed, -scores))[:k]
        return [(self._id_of[int(allowed[i])], float(scores[i])) for i in order]

    def _hits(self, scores: np.ndarray, labels: np.ndarray) -> list[tuple[str, float]]:
        return [(self._id_of[int(lab)], float(s)) for s, lab in zip(scores, labels, strict=True) if lab >= 0]

    # -- persistence -------------------------------------------------------------------------------
    def save(self, directory: Path) -> tuple[Path, Path]:
        """Write ``<encoder>.faiss`` then ``<encoder>.json`` into ``directory`` atomically; returns both paths."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        name = _safe_name(self.encoder_name)
        faiss_path, json_path = directory / f"{name}.faiss", directory / f"{name}.json"
        with self._lock:
            digest = _write_faiss(self._index, faiss_path)
            stamp = {
                "format": FORMAT_VERSION,
                "encoder_name": self.encoder_name,
                "encoder_version": self.encoder_version,
                "dim": self._dim,
                "kind": self._kind,
                "count": len(self._label_of),
                "created_at": self.created_at,
                "saved_at": datetime.now(UTC).isoformat(timespec="seconds"),
                "faiss_sha256": digest,
                "ids": list(self._label_of),
                "labels": list(self._label_of.values()),
            }
            atomic_write(json_path, json.dumps(stamp).encode("utf-8"))
        return faiss_path, json_path

    @classmethod
    def load(cls, directory: Path, encoder_name: str, encoder_version: str) -> VectorIndex:
        """The index saved for ``encoder_name`` in ``directory``.

        Raises :class:`IndexMismatchError` when it is missing, corrupt, inconsistent (the .faiss and
        .json disagree) or was built with another encoder version.
        """
        directory = Path(directory)
        name = _safe_name(encoder_name)
        faiss_path, json_path = directory / f"{name}.faiss", directory / f"{name}.json"
        rebuild = "run `medrag index --rebuild`"
        if not json_path.is_file() or not faiss_path.is_file():
            raise IndexMismatchError(f"no saved {encoder_name} index in {directory}; {rebuild}.")
        try:
            stamp = json.loads(json_path.read_text(encoding="utf-8"))
            stored_name, stored_version = str(stamp["encoder_name"]), str(stamp["encoder_version"])
            dim, kind, count = int(stamp["dim"]), str(stamp["kind"]), int(stamp["count"])
            ids = [str(i) for i in stamp["ids"]]
            labels = [int(x) for x in stamp["labels"]]
            digest = str(stamp["faiss_sha256"])
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise IndexMismatchError(f"{json_path} is unreadable or incomplete ({exc}); {rebuild}.") from exc
        if (stored_name, stored_version) != (encoder_name, encoder_version):
            raise IndexMismatchError(
                f"the index in {directory} was built with {stored_name} {stored_version}, the current "
                f"encoder is {encoder_name} {encoder_version}: {rebuild}."
            )
        if kind not in INDEX_KINDS or len(ids) != count or len(labels) != count or len(set(ids)) != count:
            raise IndexMismatchError(f"{json_path} is inconsistent (kind {kind!r}, count {count}); {rebuild}.")
        if file_sha256(faiss_path) != digest:
            raise IndexMismatchError(
                f"{faiss_path.name} does not match {json_path.name} (an interrupted save?); {rebuild}."
            )
        try:
            index = faiss.read_index(str(faiss_path))
        except Exception as exc:  # FAISS raises RuntimeError with C++ text for any corrupt file
            raise IndexMismatchError(f"{faiss_path} cannot be read ({exc}); {rebuild}.") from exc
        if index.ntotal != count or index.d < dim:
            raise IndexMismatchError(
                f"{faiss_path.name} holds {index.ntotal} vectors of dim {index.d}, the stamp says {count} of "
                f"dim {dim}; {rebuild}."
            )
        if isinstance(index, faiss.IndexIDMap2):
            stored = faiss.vector_to_array(index.id_map)
            if sorted(stored.tolist()) != sorted(labels):
                raise IndexMismatchError(f"{faiss_path.name} and {json_path.name} list different vectors; {rebuild}.")
        INDEX_KINDS.get(kind).restore(index)
        return cls(
            index,
            kind=kind,
            dim=dim,
            encoder_name=stored_name,
            encoder_version=stored_version,
            ids=ids,
            labels=labels,
            created_at=str(stamp.get("created_at") or ""),
        )


__all__ = ["FLAT_MAX", "FORMAT_VERSION", "HNSW_MAX", "KINDS", "VectorIndex", "choose_index_kind"]
