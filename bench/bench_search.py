"""Vector-search benchmark: latency p50/p95 (single queries, k=10), recall@10 against exact search,
build time and memory, for FAISS (flat, HNSW, HNSW-SQ8, IVF-Flat/SQ8/PQ, IVF-PQ + SQ8 re-rank),
numpy brute force, hnswlib and usearch — all in one run, one structure alive at a time.

    python bench/bench_search.py                                   # defaults (10k,100k; classic dim; mix+real)
    python bench/bench_search.py --sizes 10k,100k --dims 384,512,1024 --data mix
    python bench/bench_search.py --sizes 1M --dims 512,classic --data mix \
        --methods numpy,flat,ivf-sq8,ivf-pq,ivf-pq-rsq8,hnsw-sq8,usearch-i8

Data sets: ``mix`` (anisotropic Gaussian mixture on the unit sphere, queries held out) and ``real``
(classic-encoder embeddings of the real CXRs + 4 augmentations each, jittered up to size along the
augmentation directions; queries are held-out images, see bench/vectors.py). Results print as markdown
tables; ``--json`` also writes them to a file.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import math
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import common  # first: pins thread counts before numpy/faiss load
import faiss
import numpy as np
from vectors import jitter_to_size, mixture_split, real_classic_pool

K = 10
M = 32
EF_CONSTRUCTION = 40
EF_SWEEP = (16, 32, 64, 128, 256)
NPROBE_SWEEP = (4, 8, 16, 32, 64, 128)
REFINE_K_FACTOR = 4
SQ_PAD = True  # --no-sq-pad turns it off
ALL_METHODS = (
    "numpy", "flat", "hnsw", "hnsw-sq8", "ivf-flat", "ivf-sq8", "ivf-pq", "ivf-pq-rsq8",
    "hnswlib", "usearch", "usearch-i8", "medrag", "medrag-flat", "medrag-hnsw", "medrag-ivfpq",
)
DEFAULT_METHODS = ("numpy", "flat", "hnsw", "ivf-sq8", "ivf-pq-rsq8", "hnswlib", "usearch", "medrag")


def classic_dim() -> int:
    """The classic encoder's output dimension (512 if the encoder is missing)."""
    try:
        from medrag.config import Settings
        from medrag.encoders import build_encoder

        with tempfile.TemporaryDirectory() as tmp:
            return int(build_encoder("classic", Settings(data_dir=Path(tmp))).dim)
    except Exception:  # the classic encoder may not exist yet in a partial checkout
        return 512


@dataclass
class Built:
    """One built search structure: batch search, search-time settings to sweep, its size."""

    search: Callable[[np.ndarray, int], np.ndarray]
    sweep: list[tuple[str, Callable[[], None]]] = field(default_factory=lambda: [("", lambda: None)])
    nbytes: int = 0
    single: Callable[[np.ndarray, int], np.ndarray] | None = None
    keep: list[Any] = field(default_factory=list)
    note: str = ""


@dataclass
class Ctx:
    """Per-(data, n, dim) shared state: the coarse quantizer and assignments all IVF variants reuse."""

    x: np.ndarray
    seed: int
    nlist: int = 0
    centroids: np.ndarray | None = None
    assign: np.ndarray | None = None
    coarse_seconds: float = 0.0


# --------------------------------------------------------------------------- faiss helpers
def _faiss_bytes(index: faiss.Index) -> int:
    return int(faiss.serialize_index(index).nbytes)


def _faiss_search(index: faiss.Index, pad: int = 0) -> Callable[[np.ndarray, int], np.ndarray]:
    def search(q: np.ndarray, k: int) -> np.ndarray:
        if pad:
            q = np.pad(q, ((0, 0), (0, pad)))
        return index.search(q, k)[1]

    return search


def _pad_for_pq(dim: int) -> tuple[int, int]:
    """(padded dim, m) for PQ with 8 dims per sub-quantizer (m must divide the dim)."""
    padded = int(math.ceil(dim / 8) * 8)
    return padded, padded // 8


def _train_sample(x: np.ndarray, size: int, seed: int) -> np.ndarray:
    if len(x) <= size:
        return x
    idx = np.sort(np.random.default_rng(seed).choice(len(x), size, replace=False))
    return np.ascontiguousarray(x[idx])


def _coarse(ctx: Ctx) -> None:
    """k-means centroids (nlist ≈ 4·sqrt(n)) and every vector's list, computed once per data set."""
    if ctx.centroids is not None:
        return
    n, d = ctx.x.shape
    ctx.nlist = max(16, int(round(4 * math.sqrt(n))))
    start = time.perf_counter()
    km = faiss.Kmeans(d, ctx.nlist, niter=10, seed=ctx.seed, max_points_per_centroid=40, verbose=False)
    km.train(_train_sample(ctx.x, 40 * ctx.nlist, ctx.seed))
    quantizer = faiss.IndexFlatL2(d)
    quantizer.add(km.centroids)
    _, assign = quantizer.search(ctx.x, 1)
    ctx.centroids = km.centroids
    ctx.assign = np.ascontiguousarray(assign.ravel().astype(np.int64))
    ctx.coarse_seconds = time.perf_counter() - start


def _ivf(ctx: Ctx, make: Callable[[faiss.Index, int], faiss.IndexIVF], pad: int = 0, train: bool = True) -> Built:
    _coarse(ctx)
    d = ctx.x.shape[1] + pad
    quantizer = faiss.IndexFlatL2(d)
    quantizer.add(np.pad(ctx.centroids, ((0, 0), (0, pad))) if pad else ctx.centroids)
    index = make(quantizer, d)
    if train:
        index.train(np.pad(_train_sample(ctx.x, 32768, ctx.seed), ((0, 0), (0, pad))))
    for start in range(0, len(ctx.x), 100_000):
        chunk = ctx.x[start : start + 100_000]
        if pad:
            chunk = np.pad(chunk, ((0, 0), (0, pad)))
        chunk = np.ascontiguousarray(chunk)
        index.add_core(len(chunk), faiss.swig_ptr(chunk), None, faiss.swig_ptr(ctx.assign[start : start + len(chunk)]))
    sweep = [(f"nprobe={p}", (lambda p=p: setattr(index, "nprobe", p))) for p in NPROBE_SWEEP if p <= ctx.nlist]
    return Built(
        _faiss_search(index, pad), sweep, _faiss_bytes(index), keep=[quantizer, index], note=f"nlist={ctx.nlist}"
    )


# --------------------------------------------------------------------------- methods
def build_numpy(ctx: Ctx) -> Built:
    x = ctx.x

    def search(q: np.ndarray, k: int) -> np.ndarray:
        scores = q @ x.T
        top = np.argpartition(-scores, k, axis=1)[:, :k]
        order = np.argsort(-np.take_along_axis(scores, top, axis=1), axis=1)
        return np.take_along_axis(top, order, axis=1)

    return Built(search, nbytes=x.nbytes, note="q @ X.T + argpartition")


def build_flat(ctx: Ctx) -> Built:
    index = faiss.IndexFlatIP(ctx.x.shape[1])
    index.add(ctx.x)
    return Built(_faiss_search(index), nbytes=_faiss_bytes(index), keep=[index])


def _hnsw_sweep(hnsw: Any) -> list[tuple[str, Callable[[], None]]]:
    return [(f"ef={ef}", (lambda ef=ef: setattr(hnsw, "efSearch", ef))) for ef in EF_SWEEP]


def build_hnsw(ctx: Ctx) -> Built:
    index = faiss.IndexHNSWFlat(ctx.x.shape[1], M, faiss.METRIC_INNER_PRODUCT)
    index.hnsw.efConstruction = EF_CONSTRUCTION
    index.add(ctx.x)
    return Built(_faiss_search(index), _hnsw_sweep(index.hnsw), _faiss_bytes(index), keep=[index])


def build_hnsw_sq8(ctx: Ctx) -> Built:
    dim = ctx.x.shape[1]
    pad = _sq_pad(dim)
    index = faiss.IndexHNSWSQ(dim + pad, faiss.ScalarQuantizer.QT_8bit, M)
    index.hnsw.efConstruction = EF_CONSTRUCTION
    index.train(np.pad(_train_sample(ctx.x, 32768, ctx.seed), ((0, 0), (0, pad))))
    for start in range(0, len(ctx.x), 100_000):
        index.add(np.ascontiguousarray(np.pad(ctx.x[start : start + 100_000], ((0, 0), (0, pad)))))
    note = f"zero-padded {dim}→{dim + pad}" if pad else ""
    return Built(_faiss_search(index, pad), _hnsw_sweep(index.hnsw), _faiss_bytes(index), keep=[index], note=note)


def build_ivf_flat(ctx: Ctx) -> Built:
    return _ivf(ctx, lambda q, d: faiss.IndexIVFFlat(q, d, ctx.nlist), train=False)


def _sq_pad(dim: int) -> int:
    """Zero columns to add so SQ8 codes take FAISS's SIMD path (it needs dim % 8 == 0; 274-d ran 7× slower)."""
    return (-dim) % 8 if SQ_PAD else 0


def build_ivf_sq8(ctx: Ctx) -> Built:
    pad = _sq_pad(ctx.x.shape[1])
    built = _ivf(
        ctx, lambda q, d: faiss.IndexIVFScalarQuantizer(q, d, ctx.nlist, faiss.ScalarQuantizer.QT_8bit), pad=pad
    )
    built.note += f", zero-padded {ctx.x.shape[1]}→{ctx.x.shape[1] + pad}" if pad else ""
    return built


def build_ivf_pq(ctx: Ctx) -> Built:
    d = ctx.x.shape[1]
    padded, m = _pad_for_pq(d)
    built = _ivf(ctx, lambda q, dd: faiss.IndexIVFPQ(q, dd, ctx.nlist, m, 8), pad=padded - d)
    built.note += f", m={m}" + (f", zero-padded {d}→{padded}" if padded != d else "")
    return built


def build_ivf_pq_rsq8(ctx: Ctx) -> Built:
    """IVF-PQ candidates re-ranked with SQ8 codes (k_factor × k candidates)."""
    d = ctx.x.shape[1]
    padded, m = _pad_for_pq(d)
    pad = padded - d
    inner = _ivf(ctx, lambda q, dd: faiss.IndexIVFPQ(q, dd, ctx.nlist, m, 8), pad=pad)
    ivf = inner.keep[1]
    refine = faiss.IndexScalarQuantizer(padded, faiss.ScalarQuantizer.QT_8bit)
    refine.train(np.pad(_train_sample(ctx.x, 32768, ctx.seed), ((0, 0), (0, pad))))
    for start in range(0, len(ctx.x), 100_000):
        refine.add(np.ascontiguousarray(np.pad(ctx.x[start : start + 100_000], ((0, 0), (0, pad)))))
    index = faiss.IndexRefine(ivf, refine)
    index.k_factor = REFINE_K_FACTOR
    sweep = [(f"nprobe={p}", (lambda p=p: setattr(ivf, "nprobe", p))) for p in NPROBE_SWEEP if p <= ctx.nlist]
    note = inner.note + f", re-rank {REFINE_K_FACTOR}×k with SQ8"
    return Built(_faiss_search(index, pad), sweep, _faiss_bytes(index), keep=[inner.keep, refine, index], note=note)


def build_hnswlib(ctx: Ctx) -> Built:
    import hnswlib

    n, d = ctx.x.shape
    index = hnswlib.Index(space="ip", dim=d)
    index.init_index(max_elements=n, ef_construction=EF_CONSTRUCTION, M=M, random_seed=ctx.seed)
    index.add_items(ctx.x, np.arange(n), num_threads=common.THREADS)
    with tempfile.TemporaryDirectory() as tmp:
        index.save_index(f"{tmp}/h.bin")
        nbytes = Path(f"{tmp}/h.bin").stat().st_size

    def search(q: np.ndarray, k: int) -> np.ndarray:
        return index.knn_query(q, k, num_threads=common.THREADS)[0].astype(np.int64)

    def single(q: np.ndarray, k: int) -> np.ndarray:
        return index.knn_query(q, k, num_threads=1)[0]

    sweep = [(f"ef={ef}", (lambda ef=ef: index.set_ef(ef))) for ef in EF_SWEEP]
    return Built(search, sweep, nbytes, single=single, keep=[index])


def _build_usearch(ctx: Ctx, dtype: str) -> Built:
    from usearch.index import Index

    n, d = ctx.x.shape
    metric = "cos" if dtype == "i8" else "ip"  # i8 quantisation is defined for cosine; rows are unit anyway
    index = Index(ndim=d, metric=metric, dtype=dtype, connectivity=M, expansion_add=EF_CONSTRUCTION)
    index.add(np.arange(n), ctx.x, threads=common.THREADS)

    def search(q: np.ndarray, k: int) -> np.ndarray:
        return np.asarray(index.search(q, k, threads=common.THREADS).keys, dtype=np.int64).reshape(len(q), k)

    def single(q: np.ndarray, k: int) -> np.ndarray:
        return index.search(q, k, threads=1).keys

    sweep = [(f"ef={ef}", (lambda ef=ef: setattr(index, "expansion_search", ef))) for ef in EF_SWEEP]
    return Built(search, sweep, int(index.serialized_length), single=single, keep=[index])


def build_usearch(ctx: Ctx) -> Built:
    return _build_usearch(ctx, "f32")


def build_usearch_i8(ctx: Ctx) -> Built:
    return _build_usearch(ctx, "i8")


def build_medrag(ctx: Ctx, kind: str = "auto") -> Built | None:
    """medrag.index.VectorIndex as the app builds it (None when index.py is not there yet)."""
    try:
        from medrag.index import VectorIndex
    except ImportError:
        return None
    n = len(ctx.x)
    ids = [f"c{i}" for i in range(n)]
    index = VectorIndex.build(ids, ctx.x, encoder_name="bench", encoder_version="1", kind=kind)
    position = {cid: i for i, cid in enumerate(ids)}

    def search(q: np.ndarray, k: int) -> np.ndarray:
        hits = index.search(q, k)
        return np.array([[position[cid] for cid, _ in row] + [-1] * (k - len(row)) for row in hits], dtype=np.int64)

    with tempfile.TemporaryDirectory() as tmp:
        index.save(Path(tmp))
        nbytes = sum(p.stat().st_size for p in Path(tmp).rglob("*") if p.is_file())
    kind = getattr(index, "kind", "") or type(getattr(index, "_index", index)).__name__
    return Built(search, nbytes=nbytes, keep=[index], note=f"VectorIndex ({kind}), saved files incl. ids")


BUILDERS: dict[str, Callable[[Ctx], Built | None]] = {
    "numpy": build_numpy, "flat": build_flat, "hnsw": build_hnsw, "hnsw-sq8": build_hnsw_sq8,
    "ivf-flat": build_ivf_flat, "ivf-sq8": build_ivf_sq8, "ivf-pq": build_ivf_pq, "ivf-pq-rsq8": build_ivf_pq_rsq8,
    "hnswlib": build_hnswlib, "usearch": build_usearch, "usearch-i8": build_usearch_i8, "medrag": build_medrag,
    "medrag-flat": lambda ctx: build_medrag(ctx, "flat"),
    "medrag-hnsw": lambda ctx: build_medrag(ctx, "hnsw"),
    "medrag-ivfpq": lambda ctx: build_medrag(ctx, "ivfpq"),
}


# --------------------------------------------------------------------------- measuring
def recall_at_k(found: np.ndarray, truth: np.ndarray) -> float:
    """Mean |found ∩ truth| / k over queries."""
    k = truth.shape[1]
    return float(np.mean([len(set(f[:k].tolist()) & set(t.tolist())) / k for f, t in zip(found, truth, strict=True)]))


@dataclass
class Variant:
    """One (structure, search-time setting, OpenMP threads) combination whose latency is measured."""

    method: str
    built: Built
    label: str
    apply: Callable[[], None]
    threads: int
    times: list[float] = field(default_factory=list)
    spent: float = 0.0

    def run_block(self, queries: np.ndarray, start: int, count: int) -> None:
        """Time ``count`` single queries (k=10) starting at ``start`` (wrapping around)."""
        self.apply()
        faiss.omp_set_num_threads(self.threads)
        fn = self.built.single or self.built.search
        with _blas_threads(self.threads if self.method == "numpy" else None):
            for i in range(start, start + count):
                one = queries[i % len(queries)][None, :]
                t0 = time.perf_counter()
                fn(one, K)
                took = time.perf_counter() - t0
                self.times.append(took)
                self.spent += took


@contextlib.contextmanager
def _blas_threads(n: int | None) -> Iterator[None]:
    """Limit numpy's BLAS pool to ``n`` threads inside the block (threadpoolctl, when installed)."""
    if n is None:
        yield
        return
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # then numpy keeps OPENBLAS_NUM_THREADS from common.py
        yield
        return
    with threadpool_limits(limits=n, user_api="blas"):
        yield


def interleaved_latencies(
    variants: list[Variant], queries: np.ndarray, per_variant: int, budget_s: float, seed: int
) -> None:
    """Single-query latencies, measured round-robin in blocks of 10 queries in a shuffled order each round,
    so that machine noise hits every variant alike. A variant stops after ``per_variant`` queries or once
    it has spent ``budget_s`` (with at least 20 queries)."""
    rng = np.random.default_rng(seed)
    block = 10
    for v in variants:  # warm-up: first touches, lazy allocations
        v.run_block(queries, 0, 3)
        v.times.clear()
        v.spent = 0.0
    for round_no in range(math.ceil(per_variant / block)):
        active = [v for v in variants if len(v.times) < per_variant and not (v.spent > budget_s and len(v.times) >= 20)]
        if not active:
            break
        for i in rng.permutation(len(active)):
            active[i].run_block(queries, round_no * block, block)
    faiss.omp_set_num_threads(common.THREADS)


def datasets(
    kinds: list[str], sizes: list[int], dims: list[int], n_queries: int, seed: int, cdim: int
) -> Iterator[tuple[str, int, int, np.ndarray, np.ndarray]]:
    """(data name, n, dim, base, queries) for each requested combination, one at a time."""
    for kind in kinds:
        if kind == "mix":
            for dim in dims:
                for n in sizes:
                    x, q = mixture_split(n, n_queries, dim, seed)
                    yield "mix", n, dim, x, q
        elif kind == "real":
            if not common.REAL_DATA.is_dir():
                print(f"[skip] real: {common.REAL_DATA} is absent")
                continue
            pool = real_classic_pool(common.REAL_DATA, seed=seed)
            for n in sizes:
                yield "real", n, cdim, jitter_to_size(pool, n, seed=seed), pool.queries
        else:
            raise SystemExit(f"unknown data kind {kind!r}; use mix and/or real")


def run(args: argparse.Namespace) -> list[dict[str, Any]]:
    """Measure every method on every data set; returns result rows."""
    common.set_faiss_threads(common.THREADS)
    cdim = classic_dim()
    dims = [cdim if d == "classic" else int(d) for d in args.dims.split(",")]
    methods = args.methods.split(",")
    omp = common.parse_ints(args.omp)
    unknown = [m for m in methods if m not in BUILDERS]
    if unknown:
        raise SystemExit(f"unknown methods {unknown}; choose from {', '.join(ALL_METHODS)}")
    rows: list[dict[str, Any]] = []
    sizes = common.parse_ints(args.sizes)
    for name, n, dim, x, queries in datasets(args.data.split(","), sizes, dims, args.queries, args.seed, cdim):
        print(f"\n### {name} n={n:,} dim={dim} ({len(queries)} queries)", flush=True)
        exact = faiss.IndexFlatIP(dim)
        exact.add(x)
        sims, truth = exact.search(queries, K)
        del exact
        print(f"difficulty: mean cos top-1 {sims[:, 0].mean():.3f}, top-10 {sims[:, -1].mean():.3f}", flush=True)
        ctx = Ctx(x=x, seed=args.seed)
        # Keep every structure alive (and interleave their latency rounds) when they fit; else one at a time.
        together = x.nbytes * (len(methods) + 1) <= args.interleave_gib * 2**30
        pending: list[tuple[str, Built, dict[str, Any]]] = []

        def measure(
            group: list[tuple[str, Built, dict[str, Any]]],
            name: str, n: int, dim: int, queries: np.ndarray, truth: np.ndarray,
        ) -> None:
            variants: list[Variant] = []
            for method, built, info in group:
                for label, apply in built.sweep:
                    apply()
                    faiss.omp_set_num_threads(common.THREADS)
                    recall = recall_at_k(built.search(queries, K), truth)
                    for threads in (omp if _uses_omp(method) else [1]):
                        v = Variant(method, built, label, apply, threads)
                        v.recall, v.info = recall, info  # type: ignore[attr-defined]
                        variants.append(v)
            interleaved_latencies(variants, queries, args.latency_queries, args.latency_budget, args.seed)
            for v in variants:
                lat = common.stats(v.times)
                row = {
                    "data": name, "n": n, "dim": dim, "method": v.method,
                    "param": v.label + (f" {v.threads}t" if len(omp) > 1 and _uses_omp(v.method) else ""),
                    "recall@10": v.recall, "p50_ms": lat["p50"] * 1e3, "p95_ms": lat["p95"] * 1e3,  # type: ignore[attr-defined]
                    "queries": lat["n"], **v.info,  # type: ignore[attr-defined]
                }
                rows.append(row)
                print(
                    f"{row['method']:12s} {row['param']:14s} recall@10 {row['recall@10']:.3f}  "
                    f"p50 {row['p50_ms']:.3f} ms  "
                    f"p95 {row['p95_ms']:.3f} ms  build {row['build_s']:.1f} s  {row['index_MiB']:.0f} MiB "
                    f"(RSS +{row['rss_delta_MiB']:.0f}) {row['note']}",
                    flush=True,
                )

        for method in methods:
            if n > args.max_numpy and method == "numpy":
                continue
            gc.collect()
            rss0 = common.rss_bytes()
            start = time.perf_counter()
            built = BUILDERS[method](ctx)
            build_s = time.perf_counter() - start
            if built is None:
                print(f"[skip] {method}: not available", flush=True)
                continue
            gc.collect()
            info = {"build_s": build_s, "index_MiB": common.mib(built.nbytes),
                    "rss_delta_MiB": common.mib(common.rss_bytes() - rss0), "note": built.note}
            print(f"built {method} in {build_s:.1f} s", flush=True)
            if together:
                pending.append((method, built, info))
            else:
                measure([(method, built, info)], name, n, dim, queries, truth)
            del built
            gc.collect()
        if pending:
            measure(pending, name, n, dim, queries, truth)
        pending.clear()
        if ctx.centroids is not None:
            print(f"(IVF coarse k-means + assignment, shared by the IVF rows: {ctx.coarse_seconds:.1f} s, "
                  f"included in the first IVF row's build time)")
        del ctx, x, queries
        gc.collect()
    return rows


def _uses_omp(method: str) -> bool:
    """Whether the method's single-query search runs on a thread pool we size (FAISS OpenMP or numpy BLAS).

    medrag's VectorIndex picks its own thread count for small batches, so it is measured as it comes.
    """
    return method not in ("hnswlib", "usearch", "usearch-i8") and not method.startswith("medrag")


def best_rows(rows: list[dict[str, Any]], target: float = 0.95) -> list[dict[str, Any]]:
    """Per (data, n, dim, method): the setting with the lowest p95 among those with recall@10 ≥ ``target``
    (else the one with the highest recall), so each method shows its cheapest good operating point."""
    groups: dict[tuple[Any, ...], list[dict[str, Any]]] = {}
    for row in rows:
        groups.setdefault((row["data"], row["n"], row["dim"], row["method"]), []).append(row)
    out = []
    for group in groups.values():
        good = [r for r in group if r["recall@10"] >= target]
        out.append(min(good, key=lambda r: r["p95_ms"]) if good else max(group, key=lambda r: r["recall@10"]))
    return out


def print_tables(rows: list[dict[str, Any]]) -> None:
    """The full table, then each method's cheapest setting with recall@10 ≥ 0.95."""
    cols = ["data", "n", "dim", "method", "param", "recall@10", "p50_ms", "p95_ms", "queries", "build_s",
            "index_MiB", "rss_delta_MiB", "note"]
    print(common.table(rows, cols))
    print("\nCheapest setting per method with recall@10 ≥ 0.95 (lowest p95; else its best recall):\n")
    print(common.table(best_rows(rows), cols[:-1]))


def main() -> None:
    """Parse flags, run, print markdown tables."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="10k,100k", help="comma list; k/M suffixes (default 10k,100k)")
    parser.add_argument("--dims", default="classic", help="comma list of dims or 'classic' (default classic)")
    parser.add_argument("--data", default="mix,real", help="mix and/or real (default both)")
    parser.add_argument("--methods", default=",".join(DEFAULT_METHODS), help=f"any of {','.join(ALL_METHODS)}")
    parser.add_argument("--queries", type=int, default=500, help="held-out queries for mix (default 500)")
    parser.add_argument("--latency-queries", type=int, default=200,
                        help="single queries timed per setting (default 200)")
    parser.add_argument("--latency-budget", type=float, default=3.0,
                        help="stop a setting after this many seconds of queries (min 20)")
    parser.add_argument("--omp", default=f"1,{common.THREADS}",
                        help="threads (FAISS OpenMP / numpy BLAS) for single queries; default 1,2 measures both")
    parser.add_argument("--interleave-gib", type=float, default=6.0,
                        help="keep all structures alive and interleave latency rounds "
                        "when n·dim·4·(methods+1) fits (GiB)")
    parser.add_argument("--max-numpy", type=int, default=2_000_000, help="skip numpy brute force above this n")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", type=Path, default=None, help="also write results here")
    parser.add_argument("--no-sq-pad", action="store_true", help="do not zero-pad SQ8 vectors to a multiple of 8 dims")
    parser.add_argument("--summarise", type=Path, default=None, help="print the tables of a saved --json file and exit")
    args = parser.parse_args()
    if args.summarise:
        import json

        saved = json.loads(args.summarise.read_text(encoding="utf-8"))
        print(f"Command: `{saved['command']}`  \nMachine: {saved['machine']}\n")
        print_tables(saved["rows"])
        return
    global SQ_PAD
    SQ_PAD = not args.no_sq_pad
    started = time.perf_counter()
    rows = run(args)
    print("\n" + common.header())
    print_tables(rows)
    print(f"\n(total {time.perf_counter() - started:.0f} s)")
    common.write_json(args.json, {"rows": rows})


if __name__ == "__main__":
    main()
