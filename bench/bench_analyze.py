"""End-to-end analysis latency with models already loaded (web off): time to the first reasoning token
(from the call), total, and every stage's time from ``AnalysisFinished.timings``; medians and p95.

    python bench/bench_analyze.py                    # demo library + real library, 50 runs each, ~3 min
    python bench/bench_analyze.py --libraries demo --runs 50

Libraries live in temporary data folders: ``demo`` (the synthetic phantom library, ``Workbench.ensure_library``)
and ``real`` (the real CXRs in ../shared/data/cxr-real minus the query images, when present). Queries are
images that are not in the library: fresh phantoms for ``demo``, held-out real images for ``real``; the
``text`` kind asks a different question each run instead. Then cProfile over more runs shows what the time goes to.
"""

from __future__ import annotations

import argparse
import contextlib
import cProfile
import csv
import io
import pstats
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

import common  # first: pins thread counts
import numpy as np

_TEMPLATES = (
    "Is there {0} on this chest x-ray?",
    "What does {0} look like on a PA chest radiograph?",
    "Signs of {0} on chest x-ray",
    "Could these opacities be {0} or {1}?",
    "How is {0} distinguished from {1} on a frontal film?",
)
_FINDINGS = ("cardiomegaly", "a right pleural effusion", "pneumothorax", "pneumonia", "atelectasis",
             "consolidation", "pulmonary edema", "a lung nodule", "emphysema", "a rib fracture", "a mass")


def questions(n: int) -> list[str]:
    """``n`` different questions: the text encoder remembers recent texts, so a repeated question would
    measure its cache, not a new question (which is embedded once, by the guard, and reused by the search)."""
    pairs = [(a, b) for a in _FINDINGS for b in _FINDINGS if a != b]
    distinct = dict.fromkeys(t.format(*pair) for pair in pairs for t in _TEMPLATES)  # ordered, no repeats
    pool = list(distinct)
    np.random.default_rng(0).shuffle(pool)
    out = pool[:n]
    assert len(set(out)) == n, "questions must not repeat"
    return out


#: ``--readers``: the image readers to run (None = the Settings default).
READERS: tuple[str, ...] | None = None


def _readers() -> dict[str, Any]:
    return {} if READERS is None else {"readers": READERS}


def _settings(data_dir: Path) -> Any:
    from medrag.config import Settings

    return Settings(data_dir=data_dir, web_provider="off", **_readers())


def demo_library(root: Path, n_queries: int) -> tuple[Any, list[Path]]:
    """A Workbench over the demo library and ``n_queries`` fresh phantom PNGs (seeds not in the library)."""
    from PIL import Image

    from medrag.imaging import to_uint8
    from medrag.phantoms import demo_mix, generate_phantom
    from medrag.workbench import Workbench

    bench = Workbench(_settings(root / "demo-data"))
    bench.ensure_library()
    queries = []
    qdir = root / "demo-queries"
    qdir.mkdir()
    for i, findings in enumerate(demo_mix(n_queries, seed=9_999)):
        path = qdir / f"q{i:03d}.png"
        Image.fromarray(to_uint8(generate_phantom(findings, seed=1_000_000 + i))).save(path)
        queries.append(path)
    return bench, queries


def real_library(root: Path, n_queries: int, seed: int = 0) -> tuple[Any, list[Path]]:
    """A Workbench over the real images minus ``n_queries`` held-out ones (the queries)."""
    from medrag.workbench import Workbench

    source = common.REAL_DATA
    with open(source / "labels.csv", newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh)
        rows = list(reader)
        fields = reader.fieldnames or []
    rng = np.random.default_rng(seed)
    held = set(rng.choice(len(rows), n_queries, replace=False).tolist())
    lib = root / "real-src"
    for i, row in enumerate(rows):
        if i in held:
            continue
        target = lib / row["image"]
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(source / row["image"], target)
    with open(lib / "labels.csv", "w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fields)
        writer.writeheader()
        writer.writerows(r for i, r in enumerate(rows) if i not in held)
    bench = Workbench(_settings(root / "real-data"))
    bench.ingest(lib)
    return bench, [source / rows[i]["image"] for i in sorted(held)]


def one_run(bench: Any, query: Path | str, kind: str) -> dict[str, float]:
    """Run one analysis to completion; seconds to first token (from the call), total and per stage."""
    from medrag.events import AnalysisFinished, ReasoningToken, StageFailed

    start = time.perf_counter()
    first = float("nan")
    finished: AnalysisFinished | None = None
    failures = []
    events = bench.analyze(query) if kind == "image" else bench.analyze(None, question=str(query))
    for event in events:
        if isinstance(event, ReasoningToken) and first != first:
            first = time.perf_counter() - start
        elif isinstance(event, StageFailed):
            failures.append(f"{event.stage}: {event.message}")
        elif isinstance(event, AnalysisFinished):
            finished = event
    wall = time.perf_counter() - start
    if finished is None or finished.refused or failures:
        refused = getattr(finished, "refused", None)
        raise SystemExit(f"analysis of {query} did not complete cleanly: refused={refused} {failures}")
    out = {"first_token": first, "total": wall}
    out.update({f"stage:{k}": v for k, v in finished.timings.items()})
    return out


def measure(bench: Any, queries: list[Any], kind: str, runs: int, warmup: int) -> list[dict[str, float]]:
    """``warmup`` untimed runs (loads models), then ``runs`` timed ones cycling through ``queries``."""
    for i in range(warmup):
        one_run(bench, queries[i % len(queries)], kind)
    return [one_run(bench, queries[(warmup + i) % len(queries)], kind) for i in range(runs)]


def summarise(name: str, kind: str, results: list[dict[str, float]]) -> list[dict[str, Any]]:
    """One row per measured quantity: p50 / p95 / mean in ms."""
    keys = ["first_token", "total"] + sorted({k for r in results for k in r if k.startswith("stage:")})
    rows = []
    for key in keys:
        s = common.stats(r[key] for r in results if key in r)
        rows.append({"library": name, "input": kind, "measure": key, "p50_ms": s["p50"] * 1e3,
                     "p95_ms": s["p95"] * 1e3, "mean_ms": s["mean"] * 1e3, "runs": s["n"]})
    return rows


def profile(bench: Any, queries: list[Any], kind: str, runs: int, top: int) -> str:
    """cProfile of ``runs`` analyses: the top functions by own time and by cumulative time."""
    prof = cProfile.Profile()
    prof.enable()
    for i in range(runs):
        one_run(bench, queries[i % len(queries)], kind)
    prof.disable()
    out = []
    for sort in ("tottime", "cumulative"):
        buf = io.StringIO()
        pstats.Stats(prof, stream=buf).strip_dirs().sort_stats(sort).print_stats(top)
        lines = [ln for ln in buf.getvalue().splitlines() if ln.strip()]
        begin = next((i for i, ln in enumerate(lines) if ln.lstrip().startswith("ncalls")), 0)
        out.append(f"by {sort} ({runs} runs):\n" + "\n".join(lines[begin:]))
    return "\n\n".join(out)


def main() -> None:
    """Build the libraries, measure, profile, print markdown."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--libraries", default="demo,real", help="demo and/or real")
    parser.add_argument("--kinds", default="image,text", help="image and/or text (a question)")
    parser.add_argument("--runs", type=int, default=50)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--profile-runs", type=int, default=20, help="0 to skip profiling")
    parser.add_argument("--top", type=int, default=25)
    parser.add_argument("--torch-threads", type=int, default=None,
                        help="torch.set_num_threads(N) before loading models (default: leave torch's own choice)")
    parser.add_argument("--hold-store", action="store_true",
                        help="keep the DuckDB file open during the timed runs "
                        "(Store.session(), as the app's StoreLease does)")
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument("--readers", default=None,
                        help="comma-separated image readers ('' = none, to compare with builds before them)")
    args = parser.parse_args()
    global READERS
    READERS = None if args.readers is None else tuple(r for r in args.readers.split(",") if r)
    if args.torch_threads:
        import torch

        torch.set_num_threads(args.torch_threads)
    rows: list[dict[str, Any]] = []
    setup: list[dict[str, Any]] = []
    profiles: dict[str, str] = {}
    with tempfile.TemporaryDirectory(prefix="medrag-bench-analyze-") as tmp_text:
        tmp = Path(tmp_text)
        for name in args.libraries.split(","):
            if name == "real" and not common.REAL_DATA.is_dir():
                print(f"[skip] real: {common.REAL_DATA} is absent")
                continue
            print(f"building the {name} library...", flush=True)
            start = time.perf_counter()
            bench, images = demo_library(tmp, 50) if name == "demo" else real_library(tmp, 50)
            cases = bench.store.count_cases()
            setup.append({"library": name, "cases": cases, "build_s": time.perf_counter() - start,
                          "index": repr(bench.index("image"))})
            for kind in args.kinds.split(","):
                n_queries = 1 + args.warmup + args.runs + args.profile_runs
                queries: list[Any] = images if kind == "image" else questions(n_queries)
                start = time.perf_counter()
                one_run(bench, queries[0], kind)  # first call loads what this kind needs
                load_s = time.perf_counter() - start
                print(f"{name}/{kind}: first (cold) analysis {load_s:.2f} s; timing {args.runs} runs...", flush=True)
                with bench.store.session() if args.hold_store else contextlib.nullcontext():
                    results = measure(bench, queries[1:], kind, args.runs, args.warmup)
                summary = summarise(name, kind, results)
                for row in summary:
                    row["cold_first_s"] = load_s
                rows.extend(summary)
                columns = ["library", "input", "measure", "p50_ms", "p95_ms", "mean_ms", "runs"]
                print(common.table(summary, columns), flush=True)
                if args.profile_runs:
                    rest = queries[1 + args.warmup + args.runs :] or queries
                    profiles[f"{name}/{kind}"] = profile(bench, rest, kind, args.profile_runs, args.top)
            del bench
    import torch

    held = "; DuckDB held open during timed runs" if args.hold_store else ""
    print("\n" + common.header() + f"; torch threads {torch.get_num_threads()}{held}\n")
    print(common.table(setup, ["library", "cases", "build_s", "index"]) + "\n")
    print(common.table(rows, ["library", "input", "measure", "p50_ms", "p95_ms", "mean_ms", "runs", "cold_first_s"]))
    for title, text in profiles.items():
        print(f"\n#### profile {title}\n```\n{text}\n```")
    common.write_json(args.json, {"setup": setup, "rows": rows, "profiles": profiles})


if __name__ == "__main__":
    main()
