"""Memory of a big library: N synthetic cases (rows + embeddings in DuckDB), the index built and saved, then
a fresh process that opens it the way the app does (``Workbench(settings).index("image")``) and searches.

    python bench/bench_memory.py                 # 100k cases, classic dim, about 5-10 min
    python bench/bench_memory.py --n 20000       # quicker

Reports RSS (current and peak) after each step, the DuckDB file size and the index file size. The
"serve" step runs in a child process so its peak RSS is not inflated by the build.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import common  # first: pins thread counts
import numpy as np
from vectors import gaussian_mixture

BATCH = 5000


def _snap(label: str, start: float, log: list[dict[str, Any]]) -> None:
    log.append({"step": label, "rss_MiB": common.mib(common.rss_bytes()),
                "peak_MiB": common.mib(common.peak_rss_bytes()), "seconds": time.perf_counter() - start})
    print(f"  {label:55s} RSS {log[-1]['rss_MiB']:7.0f} MiB  peak {log[-1]['peak_MiB']:7.0f} MiB  "
          f"({log[-1]['seconds']:.1f} s)", flush=True)


def _files_mib(paths: list[Path]) -> float:
    return common.mib(sum(p.stat().st_size for p in paths if p.is_file()))


def _case_row(i: int, seed: int, findings: frozenset[str], reports: list[str]) -> dict[str, Any]:
    from medrag.phantoms import label_for

    digest = hashlib.sha256(f"bench-{seed}-{i}".encode()).hexdigest()
    return {
        "case_id": digest, "label": label_for(findings), "dataset": "synthetic-bench",
        "image_path": f"/nonexistent/images/{digest}.png",
        "thumb_path": f"/nonexistent/thumbs/{digest[:2]}/{digest}.png",
        "report": reports[i % len(reports)], "patient_id": f"bench-{i}", "view": "PA", "synthetic": True,
    }


def _bulk_insert(store: Any, rows: list[dict[str, Any]], encoder: str, version: str, vectors: np.ndarray) -> None:
    """Cases and vectors in two set-based INSERTs from Arrow tables (same columns as Store writes)."""
    import datetime as dt

    import pyarrow as pa

    if not rows:
        return
    now = dt.datetime.now(dt.UTC).replace(tzinfo=None)
    cases = pa.table({
        **{key: [r[key] for r in rows] for key in rows[0]},
        "extra": ["{}"] * len(rows), "width": [512] * len(rows), "height": [512] * len(rows),
        "added_at": [now] * len(rows),
    })
    dim = vectors.shape[1]
    emb = pa.table({
        "case_id": [r["case_id"] for r in rows], "encoder": [encoder] * len(rows), "version": [version] * len(rows),
        "vector": pa.FixedSizeListArray.from_arrays(pa.array(np.ascontiguousarray(vectors).ravel()), dim),
    })
    columns = ", ".join(cases.column_names)
    with store.transaction() as cur:
        cur.register("bench_cases", cases)
        cur.execute(f"INSERT INTO cases ({columns}) SELECT {columns} FROM bench_cases")
        cur.unregister("bench_cases")
        cur.register("bench_emb", emb)
        cur.execute("INSERT INTO embeddings (case_id, encoder, version, vector) "
                    "SELECT case_id, encoder, version, vector::FLOAT[] FROM bench_emb")
        cur.unregister("bench_emb")


def build(data_dir: Path, n: int, seed: int, api_count: int = 2000) -> dict[str, Any]:
    """Write n synthetic cases + vectors into a fresh data folder and build/save the index (in-process)."""
    from medrag.config import Settings
    from medrag.encoders.classic import DIM, STATE_FILE, ClassicEncoder
    from medrag.phantoms import demo_mix, phantom_report
    from medrag.records import Case
    from medrag.store import Store
    from medrag.workbench import Workbench

    log: list[dict[str, Any]] = []
    start = time.perf_counter()
    settings = Settings(data_dir=data_dir, web_provider="off")
    data_dir.mkdir(parents=True, exist_ok=True)
    # A fitted encoder state, so the workbench accepts the stored vectors as current (no images to fit on).
    encoder = ClassicEncoder(mean=np.random.default_rng(seed).random(DIM, dtype=np.float32) * 0.1)
    encoder.save_state(settings.models_dir / STATE_FILE)
    _snap("imports + fitted encoder state", start, log)

    findings = demo_mix(n, seed)
    reports = [phantom_report(f, i) for i, f in enumerate(findings[:2000])]  # 2,000 distinct texts, reused
    vectors = gaussian_mixture(n, DIM, seed=seed)
    _snap(f"{n:,} synthetic vectors in memory ({common.mib(vectors.nbytes):.0f} MiB)", start, log)

    store = Store(settings.db_path)
    case_rows = [_case_row(i, seed, findings[i], reports) for i in range(n)]
    # The Store API (executemany) for the first rows, timed: that is what an import does per batch.
    api_rows = min(n, api_count)
    t0 = time.perf_counter()
    for lo in range(0, api_rows, 500):
        hi = min(api_rows, lo + 500)
        store.add_cases([Case(**r) for r in case_rows[lo:hi]], [(512, 512)] * (hi - lo))
    api_cases_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    for lo in range(0, api_rows, 500):
        hi = min(api_rows, lo + 500)
        store.put_embeddings(encoder.name, encoder.version, [r["case_id"] for r in case_rows[lo:hi]], vectors[lo:hi])
    api_vectors_s = time.perf_counter() - t0
    _snap(f"{api_rows:,} rows via Store.add_cases ({api_cases_s:.1f} s) + put_embeddings ({api_vectors_s:.1f} s)",
          start, log)
    # The rest in bulk (Arrow → INSERT … SELECT), or 100k rows would take hours through executemany.
    t0 = time.perf_counter()
    _bulk_insert(store, case_rows[api_rows:], encoder.name, encoder.version, vectors[api_rows:])
    bulk_s = time.perf_counter() - t0
    insert_s = api_cases_s + api_vectors_s + bulk_s
    _snap(f"{n - api_rows:,} more rows via bulk Arrow insert ({bulk_s:.1f} s)", start, log)
    del vectors

    bench = Workbench(settings, store=store)
    t0 = time.perf_counter()
    index = bench.ensure_index("image")
    index_s = time.perf_counter() - t0
    _snap(f"Workbench.ensure_index: built + saved {index.kind} ({index_s:.0f} s)", start, log)
    return {"log": log, "insert_s": insert_s, "index_build_s": index_s, "index_kind": index.kind,
            "api_rows": api_rows,
            "api_cases_per_s": common.fmt(api_rows / api_cases_s if api_cases_s else float("nan")),
            "api_vectors_per_s": common.fmt(api_rows / api_vectors_s if api_vectors_s else float("nan")),
            "bulk_s": bulk_s}


def serve(data_dir: Path, queries: int) -> dict[str, Any]:
    """Open the library as the app does and search; RSS after each step (run in a fresh process)."""
    log: list[dict[str, Any]] = []
    start = time.perf_counter()
    import faiss  # noqa: F401  (loaded by the workbench anyway; counted in the baseline)

    from medrag.config import Settings
    from medrag.phantoms import demo_mix, generate_phantom
    from medrag.workbench import Workbench

    _snap("imports (medrag, faiss, duckdb)", start, log)
    settings = Settings(data_dir=data_dir, web_provider="off")
    bench = Workbench(settings)
    count = bench.store.count_cases()
    _snap(f"Workbench opened, {count:,} cases", start, log)
    t0 = time.perf_counter()
    index = bench.index("image")
    open_s = time.perf_counter() - t0
    _snap(f"index ready: {index.kind}, {len(index):,} vectors ({open_s:.1f} s)", start, log)
    images = [generate_phantom(f, 500_000 + i) for i, f in enumerate(demo_mix(20, seed=3))]
    latencies = []
    for i in range(queries):
        t0 = time.perf_counter()
        found = bench.search_image(images[i % len(images)], 10)
        latencies.append(time.perf_counter() - t0)
        if len(found) != 10:
            raise SystemExit(f"search returned {len(found)} neighbours, expected 10")
    lat = common.stats(latencies)
    _snap(f"{queries} search_image calls (p50 {lat['p50'] * 1e3:.1f} ms, p95 {lat['p95'] * 1e3:.1f} ms)", start, log)
    return {"log": log, "index_open_s": open_s, "search_p50_ms": lat["p50"] * 1e3, "search_p95_ms": lat["p95"] * 1e3}


def index_only(data_dir: Path) -> dict[str, Any]:
    """RSS of VectorIndex.load alone (no DuckDB, no encoders)."""
    log: list[dict[str, Any]] = []
    start = time.perf_counter()
    from medrag.config import Settings
    from medrag.encoders.classic import STATE_FILE, ClassicEncoder
    from medrag.index import VectorIndex

    settings = Settings(data_dir=data_dir)
    encoder = ClassicEncoder()
    encoder.load_state(settings.models_dir / STATE_FILE)
    _snap("imports (medrag.index, faiss)", start, log)
    index = VectorIndex.load(settings.index_dir, encoder.name, encoder.version)
    _snap(f"VectorIndex.load: {index.kind}, {len(index):,} vectors", start, log)
    return {"log": log}


def embeddings_only(data_dir: Path) -> dict[str, Any]:
    """RSS of Store.load_embeddings alone (what Workbench.ensure_index reads on every start)."""
    log: list[dict[str, Any]] = []
    start = time.perf_counter()
    from medrag.config import Settings
    from medrag.encoders.classic import STATE_FILE, ClassicEncoder
    from medrag.store import Store

    settings = Settings(data_dir=data_dir)
    encoder = ClassicEncoder()
    encoder.load_state(settings.models_dir / STATE_FILE)
    store = Store(settings.db_path)
    _snap("imports + Store opened", start, log)
    t0 = time.perf_counter()
    ids, vectors = store.load_embeddings(encoder.name, encoder.version)
    took = time.perf_counter() - t0
    _snap(f"Store.load_embeddings: {len(ids):,} × {vectors.shape[1]} ({took:.1f} s)", start, log)
    return {"log": log, "load_embeddings_s": took}


def _child(mode: str, data_dir: Path, queries: int) -> dict[str, Any]:
    cmd = [sys.executable, str(Path(__file__).resolve()), f"--{mode}", str(data_dir), "--queries", str(queries)]
    out = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if out.returncode != 0:
        raise SystemExit(f"{mode} child failed:\n{out.stdout}\n{out.stderr}")
    print(out.stdout.split("@@JSON@@")[0], end="")
    return json.loads(out.stdout.split("@@JSON@@")[1])


def main() -> None:
    """Build, then measure serving in child processes; print markdown."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=100_000, help="cases (default 100000)")
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--api-rows", type=int, default=2000,
                        help="rows written through Store.add_cases/put_embeddings (timed); the rest in bulk")
    parser.add_argument("--keep", type=Path, default=None, help="build into this folder and keep it")
    parser.add_argument("--serve", type=Path, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--index-only", type=Path, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--embeddings-only", type=Path, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    if args.serve or args.index_only or args.embeddings_only:
        if args.serve:
            result = serve(args.serve, args.queries)
        elif args.index_only:
            result = index_only(args.index_only)
        else:
            result = embeddings_only(args.embeddings_only)
        print("@@JSON@@" + json.dumps(result))
        return

    with tempfile.TemporaryDirectory(prefix="medrag-bench-memory-") as tmp_text:
        data_dir = args.keep or Path(tmp_text) / "data"
        print(f"build ({args.n:,} cases) in {data_dir}:", flush=True)
        built = build(data_dir, args.n, args.seed, args.api_rows)
        from medrag.config import Settings

        settings = Settings(data_dir=data_dir)
        db_files = [settings.db_path, settings.db_path.with_name(settings.db_path.name + ".wal")]
        sizes = {"duckdb_MiB": _files_mib(db_files), "index_dir_MiB": _files_mib(list(settings.index_dir.glob("*")))}
        print("serve (fresh process, as the app opens it):", flush=True)
        served = _child("serve", data_dir, args.queries)
        print("index alone (fresh process):", flush=True)
        alone = _child("index-only", data_dir, args.queries)
        print("stored vectors alone (fresh process):", flush=True)
        vectors_alone = _child("embeddings-only", data_dir, args.queries)

    print("\n" + common.header() + "\n")
    print(f"{args.n:,} cases; DuckDB file {sizes['duckdb_MiB']:.0f} MiB; index files {sizes['index_dir_MiB']:.0f} MiB "
          f"({built['index_kind']}); index build {built['index_build_s']:.0f} s; Store API: "
          f"{built['api_cases_per_s']} cases/s (add_cases), {built['api_vectors_per_s']} vectors/s (put_embeddings) "
          f"over {built['api_rows']:,} rows; bulk Arrow insert of the rest {built['bulk_s']:.1f} s\n")
    rows = [{"phase": "build", **r} for r in built["log"]]
    rows += [{"phase": "serve", **r} for r in served["log"]]
    rows += [{"phase": "index only", **r} for r in alone["log"]]
    rows += [{"phase": "stored vectors only", **r} for r in vectors_alone["log"]]
    print(common.table(rows, ["phase", "step", "rss_MiB", "peak_MiB", "seconds"]))
    common.write_json(args.json, {"n": args.n, "sizes": sizes, "build": built, "serve": served, "index_only": alone,
                                   "embeddings_only": vectors_alone})


if __name__ == "__main__":
    main()
