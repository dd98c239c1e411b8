"""Ingest benchmark: images/s importing the real CXRs with the classic encoder, through the real code path
(``medrag.workbench.Workbench(settings).ingest(folder)``), plus a breakdown and profiles.

    python bench/bench_ingest.py                      # all 1,389 images, about 1 min
    python bench/bench_ingest.py --limit 300          # quicker
    python bench/bench_ingest.py --repeat 5           # five fresh imports of each kind, median reported

Stages, each on the same images:

1. decode only (``medrag.imaging.load_image``), one core;
2. decode + classic embed, one core;
3. per-image components (median ms over a sample): file read, PNG decode to float, pixel hash, file hash,
   thumbnail, classic features;
4. full ingest, cold: a fresh data folder (the encoder is not fitted yet: workers compute its features,
   the encoder is fitted on them at the end and ``ensure_index`` builds the index from the stored vectors);
   the first run also starts the import fork server (once per process);
5. full ingest, warm encoder: a fresh data folder that already holds the fitted classic state, so worker
   processes embed during import (what adding images to an existing library costs);
6. cProfile of a cold ingest (main process) and of the per-image worker function
   ``medrag.ingest_worker.prepare`` in-process.

Stages 4 and 5 run ``--repeat`` times each (fresh folders, alternating); the table shows the median and
every run is in the JSON.
"""

from __future__ import annotations

import argparse
import cProfile
import hashlib
import io
import pstats
import shutil
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import common  # first: pins thread counts
import numpy as np


def _real_paths(source: Path, limit: int | None) -> list[Path]:
    paths = sorted((source / "images").rglob("*.png"))
    return paths[:limit] if limit else paths


def _subset_folder(source: Path, paths: list[Path], dest: Path) -> Path:
    """A temporary folder with copies of ``paths`` and their labels.csv rows (for --limit runs; the importer
    refuses symlinks that leave the folder)."""
    import csv

    keep = {str(p.relative_to(source)) for p in paths}
    dest.mkdir(parents=True)
    for p in paths:
        link = dest / p.relative_to(source)
        link.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(p, link)
    with open(source / "labels.csv", newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh)
        rows = [r for r in reader if r["image"] in keep]
        fields = reader.fieldnames or []
    with open(dest / "labels.csv", "w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fields)
        writer.writeheader()
        writer.writerows(rows)
    return dest


def per_second(count: int, seconds: float) -> float:
    """Throughput, guarding against a zero duration."""
    return count / seconds if seconds > 0 else float("nan")


def stage_decode(paths: list[Path]) -> float:
    """Seconds to decode every path with load_image (one core)."""
    from medrag.imaging import load_image

    start = time.perf_counter()
    for p in paths:
        load_image(p)
    return time.perf_counter() - start


def stage_decode_embed(paths: list[Path]) -> float:
    """Seconds to decode and classic-embed every path, one image at a time (one core)."""
    from medrag.encoders.classic import ClassicEncoder
    from medrag.imaging import load_image

    encoder = ClassicEncoder()
    start = time.perf_counter()
    for p in paths:
        encoder.embed([load_image(p).pixels])
    return time.perf_counter() - start


def components(paths: list[Path], thumbs: Path) -> list[dict[str, Any]]:
    """Median / p95 ms of each piece of per-image work over ``paths``."""
    from PIL import Image

    from medrag.encoders.classic import raw_features
    from medrag.imaging import compute_pixel_hash, load_image, make_thumbnail, save_thumbnail

    parts: dict[str, list[float]] = {k: [] for k in (
        "read file", "PIL decode → float32", "load_image (all of it)", "pixel hash (sha256 of uint8)",
        "file hash (sha256)", "make_thumbnail (LANCZOS 256)", "save_thumbnail (JPEG q 90, atomic, no fsync)",
        "  alternative: thumbnail PNG compress_level=1, no fsync", "  alternative: thumbnail JPEG q=90, no fsync",
        "classic features",
        "analysis upload copy: 16-bit PNG encode (as pipeline._store_upload)",
        "  alternative: 16-bit PNG compress_level=1",
    )}

    def clock(name: str, fn: Callable[[], Any]) -> Any:
        start = time.perf_counter()
        out = fn()
        parts[name].append(time.perf_counter() - start)
        return out

    def time_one(p: Path) -> None:
        data = clock("read file", p.read_bytes)
        clock("PIL decode → float32", lambda: np.asarray(Image.open(io.BytesIO(data)), dtype=np.float32) / 255.0)
        image = clock("load_image (all of it)", lambda: load_image(p))
        clock("pixel hash (sha256 of uint8)", lambda: compute_pixel_hash(image.pixels))
        clock("file hash (sha256)", lambda: hashlib.sha256(data).hexdigest())
        clock("make_thumbnail (LANCZOS 256)", lambda: make_thumbnail(image.pixels))
        clock("save_thumbnail (JPEG q 90, atomic, no fsync)", lambda: save_thumbnail(image, thumbs))
        clock("  alternative: thumbnail PNG compress_level=1, no fsync",
              lambda: make_thumbnail(image.pixels).save(thumbs / "alt.png", format="PNG", compress_level=1))
        clock("  alternative: thumbnail JPEG q=90, no fsync",
              lambda: make_thumbnail(image.pixels).save(thumbs / "alt.jpg", format="JPEG", quality=90))
        clock("classic features", lambda: raw_features(image.pixels))
        u16 = Image.fromarray(np.round(np.clip(image.pixels, 0.0, 1.0) * 65535).astype(np.uint16))
        clock("analysis upload copy: 16-bit PNG encode (as pipeline._store_upload)",
              lambda: u16.save(io.BytesIO(), format="PNG"))
        clock("  alternative: 16-bit PNG compress_level=1",
              lambda: u16.save(io.BytesIO(), format="PNG", compress_level=1))

    thumbs.mkdir(parents=True, exist_ok=True)
    for p in paths:
        time_one(p)
    rows = []
    for name, samples in parts.items():
        s = common.stats(samples)
        rows.append({"component": name, "p50_ms": s["p50"] * 1e3, "p95_ms": s["p95"] * 1e3, "n": s["n"]})
    return rows


def full_ingest(source: Path, data_dir: Path, profile: cProfile.Profile | None = None) -> dict[str, Any]:
    """Workbench(...).ingest(source) into ``data_dir``; wall time split into import and ensure_index."""
    from medrag.config import Settings
    from medrag.workbench import Workbench

    settings = Settings(data_dir=data_dir, web_provider="off")
    bench = Workbench(settings)
    index_seconds = [0.0]
    original = bench.ensure_index

    def timed_ensure_index(*args: Any, **kwargs: Any) -> Any:
        start = time.perf_counter()
        try:
            return original(*args, **kwargs)
        finally:
            index_seconds[0] += time.perf_counter() - start

    bench.ensure_index = timed_ensure_index  # type: ignore[method-assign]
    start = time.perf_counter()
    if profile is not None:
        profile.enable()
    report = bench.ingest(source)
    if profile is not None:
        profile.disable()
    total = time.perf_counter() - start
    if report.errors:
        print(f"  {len(report.errors)} import errors, first: {report.errors[0]}")
    n_index = len(bench.index("image"))
    return {
        "seen": report.seen, "added": report.added, "embedded_during_import": report.embedded,
        "errors": len(report.errors), "indexed": n_index, "total_s": total,
        "ensure_index_s": index_seconds[0], "import_s": total - index_seconds[0],
    }


def _median_run(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """The run with the median total time (its own split into import and index)."""
    ordered = sorted(runs, key=lambda r: r["total_s"])
    return ordered[(len(ordered) - 1) // 2]


def profile_text(profile: cProfile.Profile, top: int, sort: str) -> str:
    """The ``top`` rows of a profile sorted by ``sort``, with repo paths shortened."""
    buf = io.StringIO()
    stats = pstats.Stats(profile, stream=buf)
    stats.strip_dirs().sort_stats(sort).print_stats(top)
    lines = [ln for ln in buf.getvalue().splitlines() if ln.strip()]
    start = next((i for i, ln in enumerate(lines) if ln.lstrip().startswith("ncalls")), 0)
    return "\n".join(lines[start:])


def profile_prepare(paths: list[Path], data_dir: Path, top: int) -> str:
    """cProfile of ingest_worker.prepare (decode, thumbnail, embed) over ``paths``, in this process."""
    from medrag import ingest_sources, ingest_worker
    from medrag.config import Settings
    from medrag.encoders.classic import ClassicEncoder

    settings = Settings(data_dir=data_dir, web_provider="off")
    # embed as an import does (fitted or not: same cost)
    ingest_worker.init_worker(settings, embed=False, encoder=ClassicEncoder())
    items = [ingest_sources._file_item(p, label="x", dataset="bench") for p in paths]
    profile = cProfile.Profile()
    profile.enable()
    for item in items:
        ingest_worker.prepare(item)
    profile.disable()
    return profile_text(profile, top, "tottime") + "\n" + profile_text(profile, top, "cumulative")


def main() -> None:
    """Run every stage and print markdown tables."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--source", type=Path, default=common.REAL_DATA, help="folder with images/ and labels.csv")
    parser.add_argument("--limit", type=int, default=None, help="use the first N images only")
    parser.add_argument("--sample", type=int, default=200,
                        help="images for the component breakdown and _prepare profile")
    parser.add_argument("--repeat", type=int, default=3, help="fresh full imports of each kind (median reported)")
    parser.add_argument("--top", type=int, default=14, help="profile rows to print")
    parser.add_argument("--skip-profile", action="store_true")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    if not (args.source / "images").is_dir():
        raise SystemExit(f"{args.source}/images is absent; pass --source FOLDER (with images/ and labels.csv).")
    paths = _real_paths(args.source, args.limit)
    n = len(paths)
    sample = paths[:: max(1, n // args.sample)][: args.sample]
    rows: list[dict[str, Any]] = []
    results: dict[str, Any] = {"n": n}
    with tempfile.TemporaryDirectory(prefix="medrag-bench-ingest-") as tmp_text:
        tmp = Path(tmp_text)
        source = _subset_folder(args.source, paths, tmp / "src") if args.limit else args.source

        print(f"decode only, one core ({n} images)...", flush=True)
        secs = stage_decode(paths)
        rows.append({"stage": "decode only (load_image), 1 core", "seconds": secs, "images_per_s": per_second(n, secs)})
        print("decode + classic embed, one core...", flush=True)
        secs = stage_decode_embed(paths)
        rows.append({"stage": "decode + classic embed, 1 core", "seconds": secs, "images_per_s": per_second(n, secs)})

        cold_runs: list[dict[str, Any]] = []
        warm_runs: list[dict[str, Any]] = []
        for run in range(args.repeat):
            print(f"full ingest {run + 1}/{args.repeat}, cold (fresh data folder, encoder not fitted)...", flush=True)
            cold_dir = tmp / f"cold{run}"
            cold_runs.append(full_ingest(source, cold_dir))
            print(f"full ingest {run + 1}/{args.repeat}, warm encoder (fitted state present)...", flush=True)
            warm_dir = tmp / f"warm{run}"
            (warm_dir / "models").mkdir(parents=True)
            for state in (cold_dir / "models").glob("*.npz"):
                shutil.copy(state, warm_dir / "models" / state.name)
            warm_runs.append(full_ingest(source, warm_dir))
            shutil.rmtree(cold_dir)
            shutil.rmtree(warm_dir)
        cold, warm = _median_run(cold_runs), _median_run(warm_runs)
        first = cold_runs[0]
        for stage, seconds in (
            (f"full ingest, cold: Workbench.ingest (median of {args.repeat})", cold["total_s"]),
            ("  of which import (decode, thumbnail, features in workers, DuckDB)", cold["import_s"]),
            ("  of which fit + ensure_index (build from stored vectors)", cold["ensure_index_s"]),
            ("  first cold run (includes starting the fork server)", first["total_s"]),
            (f"full ingest, warm encoder: Workbench.ingest (median of {args.repeat})", warm["total_s"]),
            ("  of which import (decode, thumbnail, embed in workers, DuckDB)", warm["import_s"]),
            ("  of which ensure_index (build from stored vectors)", warm["ensure_index_s"]),
        ):
            rows.append({"stage": stage, "seconds": seconds, "images_per_s": per_second(n, seconds)})
        results.update(cold_runs=cold_runs, warm_runs=warm_runs)
        results.update(cold=cold, warm=warm, stages=rows)

        print(f"component breakdown over {len(sample)} images...", flush=True)
        parts = components(sample, tmp / "thumbs")
        results["components"] = parts

        profiles: dict[str, str] = {}
        if not args.skip_profile:
            print("profiling a cold ingest (main process)...", flush=True)
            profile = cProfile.Profile()
            full_ingest(source, tmp / "profiled", profile)
            profiles["cold ingest, main process, by cumulative time"] = profile_text(profile, args.top, "cumulative")
            profiles["cold ingest, main process, by own time"] = profile_text(profile, args.top, "tottime")
            print(f"profiling ingest_worker.prepare over {len(sample)} images...", flush=True)
            title = f"ingest_worker.prepare × {len(sample)} (one worker's view), by own time"
            profiles[title] = profile_prepare(sample, tmp / "prep", args.top)
        results["profiles"] = profiles

    print("\n" + common.header())
    print(f"\n{n} images from {args.source}\n")
    print(common.table(rows, ["stage", "seconds", "images_per_s"]))
    print(f"\ncold: {cold}\nwarm: {warm}\n")
    print(common.table(parts, ["component", "p50_ms", "p95_ms", "n"]))
    for title, text in profiles.items():
        print(f"\n#### {title}\n```\n{text}\n```")
    common.write_json(args.json, results)


if __name__ == "__main__":
    main()
