"""Index kinds: how each FAISS index type is built, searched under a filter and restored after loading.

The built-in kinds live in :data:`INDEX_KINDS` (a :class:`~medrag.registry.Registry`):

* ``flat``  — ``IndexFlatIP``: exact; the default for small and mid-sized libraries;
* ``hnsw``  — ``IndexHNSWFlat`` (M=32, inner product): approximate, fast on big libraries;
* ``ivfsq8`` — ``IndexIVFScalarQuantizer`` (8-bit): compressed 4x, the automatic choice above
  ``HNSW_MAX`` vectors (1M classic vectors: recall@10 0.977, p95 1.2 ms, 279 MiB);
* ``ivfpq`` — ``IndexIVFPQ``: compressed 32x or more, for libraries far too big for memory.

:func:`choose_index_kind` picks one from the library's size.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import faiss
import numpy as np

from medrag.errors import ConfigError, IndexMismatchError, InputError
from medrag.registry import Registry

#: The built-in kinds, smallest library first.
KINDS: tuple[str, ...] = ("flat", "hnsw", "ivfsq8", "ivfpq")

#: Exact search up to this many vectors (at dim 512; the rule scales with n × dim). Measured on the
#: 2-core dev machine, one query, k=10, one thread (docs/encoder-experiments.md): the
#: uncontended cost is 1.1 ms at 15k and 1.7 ms at 20k (FACTS.md, idle, 2 threads: 10.4 ms at 100k),
#: so p95 passes 2 ms at about 20k. Under heavy load p95 is set by CPU scheduling at any n ≥ 7.5k,
#: which no index kind avoids.
FLAT_MAX = 20_000
#: Above this, float32 vectors (plus HNSW links) stop fitting comfortably in memory: compress.
HNSW_MAX = 500_000
#: bench/bench_search.py, 1M real-derived classic vectors (274-d, zero-padded to 280): IVF-SQ8 with 4,000
#: lists and nprobe 64 gave recall@10 0.977, p95 1.24 ms on one core, 279 MiB; float32 HNSW at 1M held
#: 1.33 GB, over the 1 GB budget. Hence HNSW up to HNSW_MAX, IVF-SQ8 above.
IVFSQ8_NPROBE = 64
HNSW_M = 32
HNSW_EF_CONSTRUCTION = 80
#: docs/encoder-experiments.md (index), 50k vectors matched to real classic embeddings: efSearch 32 →
#: recall@10 0.940, 48 → 0.968, 64 → 0.979 (about 1.5 ms a query on one busy core).
HNSW_EF_SEARCH = 64
IVFPQ_MIN_TRAIN = 10_000
IVFPQ_NPROBE = 16


@dataclass(frozen=True)
class IndexKind:
    """One kind of index: an empty-index factory plus what search, removal and loading need to know."""

    name: str
    #: ``(dim, training vectors or None) -> empty FAISS index``; trained kinds raise ConfigError on too few
    build: Callable[[int, np.ndarray | None], faiss.Index]
    #: ``(index, selector, exhaustive) -> search parameters`` that apply an id filter
    search_params: Callable[[faiss.Index, faiss.IDSelector, bool], faiss.SearchParameters]
    #: inverted-file kinds: they need training vectors and are searched with nprobe
    trained: bool = False
    #: False where the FAISS index cannot delete in place (HNSW): removal rebuilds from the kept vectors
    deletes: bool = True
    #: settings FAISS does not save with the index, set again after loading
    restore: Callable[[faiss.Index], None] = lambda index: None


INDEX_KINDS: Registry[IndexKind] = Registry("index kind")


def get_index_kind(name: str) -> IndexKind:
    """The registered kind called ``name``; ConfigError lists the valid names."""
    if name not in INDEX_KINDS:
        raise ConfigError(f"index kind {name!r} is unknown; use one of: auto, {', '.join(INDEX_KINDS.names())}.")
    return INDEX_KINDS.get(name)


def choose_index_kind(n: int, dim: int) -> str:
    """The index kind for ``n`` vectors of ``dim`` floats: flat (exact) while a query stays ≲ 2 ms p95.

    The threshold scales with dimension because flat search costs n × dim (measured at dim 512).
    """
    if n < 0 or dim <= 0:
        raise InputError(f"choose_index_kind needs n >= 0 and dim > 0, got n={n}, dim={dim}.")
    if n * dim <= FLAT_MAX * 512:
        return "flat"
    if n <= HNSW_MAX:
        return "hnsw"
    return "ivfsq8"


def pad_columns(matrix: np.ndarray, width: int) -> np.ndarray:
    """``matrix`` zero-padded on the right to ``width`` columns (float32)."""
    out = np.zeros((matrix.shape[0], width), dtype=np.float32)
    out[:, : matrix.shape[1]] = matrix
    return out


def pq_layout(dim: int) -> tuple[int, int]:
    """(padded dim, PQ sub-quantisers): pad to a multiple of 8 so each sub-vector has ≥ 8 dims."""
    padded = -(-dim // 8) * 8
    m = max(d for d in range(1, 65) if padded % d == 0 and padded // d >= 8)
    return padded, m


# --------------------------------------------------------------------------- built-in kinds


def _build_flat(dim: int, train: np.ndarray | None) -> faiss.Index:
    return faiss.IndexIDMap2(faiss.IndexFlatIP(dim))


def _build_hnsw(dim: int, train: np.ndarray | None) -> faiss.Index:
    inner = faiss.IndexHNSWFlat(dim, HNSW_M, faiss.METRIC_INNER_PRODUCT)
    inner.hnsw.efConstruction = HNSW_EF_CONSTRUCTION
    inner.hnsw.efSearch = HNSW_EF_SEARCH
    return faiss.IndexIDMap2(inner)


def _ivf_builder(kind: str) -> Callable[[int, np.ndarray | None], faiss.Index]:
    def build(dim: int, train: np.ndarray | None) -> faiss.Index:
        n = 0 if train is None else len(train)
        if train is None or n < IVFPQ_MIN_TRAIN:
            raise ConfigError(
                f"an {kind} index needs at least {IVFPQ_MIN_TRAIN} vectors to train, got {n}; "
                "use kind='flat' or 'hnsw' (or 'auto')."
            )
        # Both pad to a multiple of 8 dims: PQ needs it, and SQ8's SIMD path is 7x faster with it.
        padded, m = pq_layout(dim)
        # about 4·√n lists, but at least 39 training vectors per list (FAISS's k-means advice)
        nlist = int(max(1, min(65_536, 4 * np.sqrt(n), n // 39)))
        quantizer = faiss.IndexFlatIP(padded)
        index: faiss.IndexIVF
        if kind == "ivfsq8":
            index = faiss.IndexIVFScalarQuantizer(
                quantizer, padded, nlist, faiss.ScalarQuantizer.QT_8bit, faiss.METRIC_INNER_PRODUCT
            )
            index.nprobe = IVFSQ8_NPROBE
        else:
            index = faiss.IndexIVFPQ(quantizer, padded, nlist, m, 8, faiss.METRIC_INNER_PRODUCT)
            index.nprobe = IVFPQ_NPROBE
        index.train(pad_columns(train, padded))
        return index

    return build


def _plain_params(index: faiss.Index, selector: faiss.IDSelector, exhaustive: bool) -> faiss.SearchParameters:
    # FAISS's stub omits the keyword constructor its SWIG wrapper adds to every parameter class.
    return faiss.SearchParameters(sel=selector)  # type: ignore[call-arg]


def _hnsw_params(index: faiss.Index, selector: faiss.IDSelector, exhaustive: bool) -> faiss.SearchParameters:
    return faiss.SearchParametersHNSW(sel=selector, efSearch=HNSW_EF_SEARCH)  # type: ignore[attr-defined]


def _ivf_params(index: faiss.Index, selector: faiss.IDSelector, exhaustive: bool) -> faiss.SearchParameters:
    ivf = faiss.extract_index_ivf(index)
    return faiss.SearchParametersIVF(sel=selector, nprobe=ivf.nlist if exhaustive else ivf.nprobe)  # type: ignore[call-arg]


def _restore_hnsw(index: faiss.Index) -> None:
    inner = faiss.downcast_index(index.index) if isinstance(index, faiss.IndexIDMap) else index
    if not isinstance(inner, faiss.IndexHNSW):
        raise IndexMismatchError(f"an hnsw index holds a {type(inner).__name__}; run `medrag index --rebuild`.")
    inner.hnsw.efSearch = HNSW_EF_SEARCH


INDEX_KINDS.register("flat", IndexKind("flat", _build_flat, _plain_params))
INDEX_KINDS.register("hnsw", IndexKind("hnsw", _build_hnsw, _hnsw_params, deletes=False, restore=_restore_hnsw))
for _name in ("ivfsq8", "ivfpq"):
    INDEX_KINDS.register(_name, IndexKind(_name, _ivf_builder(_name), _ivf_params, trained=True))


__all__ = [
    "FLAT_MAX",
    "HNSW_EF_CONSTRUCTION",
    "HNSW_EF_SEARCH",
    "HNSW_M",
    "HNSW_MAX",
    "INDEX_KINDS",
    "IVFPQ_MIN_TRAIN",
    "IVFPQ_NPROBE",
    "IVFSQ8_NPROBE",
    "KINDS",
    "IndexKind",
    "choose_index_kind",
    "get_index_kind",
    "pad_columns",
    "pq_layout",
]
