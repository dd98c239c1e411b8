"""Index sizing: where does exact IndexFlatIP search pass 2 ms p95 for one query (k=10)?

Also HNSW (M=32) recall@10 against exact search vs efSearch, on clustered unit vectors (random
unclustered vectors are the worst case and unlike real embeddings). Feeds `choose_index_kind`.
Timings on a shared machine are noisy: run it when the machine is otherwise idle. With other
processes busy, FAISS's OpenMP team (2 threads) can stall a single query by tens of ms, so the flat
table is measured with 1 and with 2 threads.
Run: .venv/bin/python bench/encoder_experiments/index_latency.py  (about 2 minutes)
"""

from __future__ import annotations

import time

import faiss
import numpy as np


def clustered(n: int, dim: int, seed: int, clusters: int = 200) -> np.ndarray:
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((clusters, dim)).astype(np.float32)
    x = centres[rng.integers(0, clusters, n)] + 0.6 * rng.standard_normal((n, dim)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def p95_ms(index: faiss.Index, queries: np.ndarray, k: int = 10) -> tuple[float, float]:
    times = []
    for q in queries:
        t = time.perf_counter()
        index.search(q[None, :], k)
        times.append((time.perf_counter() - t) * 1000)
    return float(np.median(times)), float(np.percentile(times, 95))


def main() -> None:
    dim = 512
    print(f"faiss {faiss.__version__}, {faiss.omp_get_max_threads()} threads, dim {dim}")
    base = clustered(100_000, dim, 0)
    queries = clustered(300, dim, 1)
    print(f"{'n':>8}{'threads':>8}{'flat median ms':>16}{'flat p95 ms':>13}")
    for n in (5_000, 10_000, 15_000, 20_000, 30_000, 50_000, 100_000):
        flat = faiss.IndexFlatIP(dim)
        flat.add(base[:n])
        for threads in (1, 2):
            faiss.omp_set_num_threads(threads)
            med, p95 = p95_ms(flat, queries)
            print(f"{n:>8}{threads:>8}{med:>16.2f}{p95:>13.2f}", flush=True)
    faiss.omp_set_num_threads(2)

    n = 50_000
    flat = faiss.IndexFlatIP(dim)
    flat.add(base[:n])
    _, truth = flat.search(queries, 10)
    t = time.perf_counter()
    hnsw = faiss.IndexHNSWFlat(dim, 32, faiss.METRIC_INNER_PRODUCT)
    hnsw.hnsw.efConstruction = 80
    hnsw.add(base[:n])
    print(f"\nHNSW M=32 efConstruction=80, n={n}: build {time.perf_counter() - t:.1f} s")
    print(f"{'efSearch':>8}{'recall@10':>11}{'median ms':>11}{'p95 ms':>9}")
    for ef in (16, 32, 48, 64, 96, 128):
        hnsw.hnsw.efSearch = ef
        _, got = hnsw.search(queries, 10)
        recall = np.mean([len(set(a) & set(b)) / 10 for a, b in zip(got, truth)])
        med, p95 = p95_ms(hnsw, queries)
        print(f"{ef:>8}{recall:>11.3f}{med:>11.2f}{p95:>9.2f}", flush=True)


if __name__ == "__main__":
    main()
