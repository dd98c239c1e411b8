"""A synthetic 100k-case library in PostgreSQL: import throughput, a replica's vector load, index build, search.

    python bench/bench_pg_scale.py              # 100,000 cases x 274-d, batches of 5,000
    python bench/bench_pg_scale.py --n 20000

Cases are written through ``PgStore.add_ingest_batch`` with their vectors (what an import's batches do);
then a fresh ``PgStore`` (a replica starting) loads every vector (``load_embeddings``), builds the index the
app would (``VectorIndex.build(kind="auto")``) and answers 200 single queries (p50/p95). A throwaway server
is started as in tests/pgserver.py (fsync off: the figures are the store's work, not the disk's).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

import common  # noqa: F401 - first: pins thread counts
import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))

from pgserver import ThrowawayServer, _binaries, fresh_database  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=100_000)
    parser.add_argument("--dim", type=int, default=274)
    parser.add_argument("--batch", type=int, default=5_000)
    args = parser.parse_args()
    from medrag.index import VectorIndex
    from medrag.records import Case
    from medrag.store.pg import PgStore

    bindir = _binaries()
    if bindir is None:
        raise SystemExit("needs Debian's postgresql binaries")
    server = ThrowawayServer(bindir)
    url = fresh_database(server.start(), "bench_scale")
    rng = np.random.default_rng(0)
    rows = []
    try:
        store = PgStore(url, data_root=Path("/tmp/bench-scale-data"))
        started = time.perf_counter()
        for start in range(0, args.n, args.batch):
            count = min(args.batch, args.n - start)
            cases = [Case(case_id=f"s{i:07d}", label=("normal", "pneumonia", "effusion")[i % 3], dataset="synthetic",
                          image_path=f"/tmp/bench-scale-data/images/{i}.png",
                          thumb_path=f"/tmp/bench-scale-data/thumbs/{i}.jpg", report=f"report {i}")
                     for i in range(start, start + count)]
            vectors = rng.standard_normal((count, args.dim)).astype(np.float32)
            vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
            ids = [c.case_id for c in cases]
            store.add_ingest_batch(cases, [(512, 512)] * count, [(f"/src/{c}", 1, 1, c) for c in ids],
                                   ("classic", "bench", ids, vectors))
        import_s = time.perf_counter() - started
        rows.append(("import (add_ingest_batch with vectors)", import_s, f"{args.n / import_s:,.0f} cases/s"))
        store.close()

        replica = PgStore(url, data_root=Path("/tmp/bench-scale-data"))
        started = time.perf_counter()
        ids, matrix = replica.load_embeddings("classic", "bench")
        load_s = time.perf_counter() - started
        rows.append(("a replica loads every vector (load_embeddings)", load_s, f"{len(ids):,} × {matrix.shape[1]}"))
        started = time.perf_counter()
        index = VectorIndex.build(ids, matrix, encoder_name="classic", encoder_version="bench", kind="auto")
        build_s = time.perf_counter() - started
        rows.append((f"index build ({index.kind})", build_s, ""))
        queries = matrix[rng.choice(len(ids), 200, replace=False)]
        times = []
        for query in queries:
            t = time.perf_counter()
            index.search(query[None, :], 10)
            times.append((time.perf_counter() - t) * 1000)
        ordered = sorted(times)
        rows.append(("search p50 / p95 (ms, k=10)", statistics.median(ordered) / 1000,
                     f"{statistics.median(ordered):.2f} / {ordered[int(0.95 * len(ordered))]:.2f} ms"))
        replica.close()
    finally:
        server.stop()
    print(f"\nCommand: `python bench/bench_pg_scale.py --n {args.n} --dim {args.dim} --batch {args.batch}`  ")
    when = time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())
    print(f"Date: {when}; load average (1 min): {os.getloadavg()[0]:.2f}\n")
    print("| step | seconds | |\n|---|---:|---|")
    for name, seconds, note in rows:
        print(f"| {name} | {seconds:.2f} | {note} |")


if __name__ == "__main__":
    main()
