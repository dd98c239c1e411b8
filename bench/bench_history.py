"""History at scale: ``medrag history`` (the CLI function, in-process) and ``Store.history_page`` /
``count_history`` on a store holding N analyses (default 100,000), medians over repeats.

    python bench/bench_history.py                     # 100k rows, 15 repeats
    python bench/bench_history.py --rows 20000 --repeats 30 --json /tmp/history.json

The rows are made in DuckDB by one ``INSERT … SELECT`` from ``range(N)`` (seconds, not the hours real
analyses would take), sized like real ones: a ~3 KB reasoning text, five neighbours with report snippets
(~2.5 KB of JSON), web results, meta and timings JSON; labels, backends, file names and questions vary
per row so neither the search nor DuckDB's compression sees one repeated value. For comparison the table
also times what the History page and the CLI did before paging: ``history_frame()`` (every row, every
column) and ``history_frame(limit=20)``.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import common  # first: pins thread counts

LABELS = ("normal", "cardiomegaly", "pneumonia", "effusion", "atelectasis", "edema", "nodule", "pneumothorax")
BACKENDS = ("evidence", "hf", "openai")

_FILL = """
INSERT INTO analyses (id, created_at, input_kind, input_name, image_hash, thumb_path, upload_path, question,
    encoder, reasoner_backend, reasoner_model, summariser_backend, reasoning, label, findings, neighbours,
    web_results, web_status, guard, meta, timings, errors, total_seconds, notes, tags)
SELECT
    i + 1,
    TIMESTAMP '2024-01-01' + to_seconds(i * 60),
    CASE WHEN i % 5 = 0 THEN 'text' ELSE 'image' END,
    CASE WHEN i % 5 = 0 THEN '' ELSE 'case-' || i || '-' || substr(md5(i::VARCHAR), 1, 8) || '.png' END,
    md5(i::VARCHAR),
    'thumbs/' || substr(md5(i::VARCHAR), 1, 2) || '/' || md5(i::VARCHAR) || '.png',
    'uploads/' || substr(md5(i::VARCHAR), 1, 2) || '/' || md5(i::VARCHAR) || '.png',
    CASE WHEN i % 3 = 0 THEN 'Is there ' || $labels[1 + (i * 7) % 8] || ' in case ' || i || '?' ELSE '' END,
    'classic',
    $backends[1 + i % 3],
    'model-' || (i % 3),
    'rules',
    '### Technical assessment' || chr(10) || repeat(md5(i::VARCHAR) || ' lungs clear, heart size normal. ', 60),
    $labels[1 + i % 8],
    '{"cardiomegaly": "absent", "effusion": "present"}',
    '[' || list_aggr(list_transform(range(5), lambda r:
        '{"case_id": "' || md5((i * 5 + r)::VARCHAR) || '", "score": ' || (0.99 - r * 0.05 - (i % 97) / 1000.0)
        || ', "rank": ' || (r + 1) || ', "label": "' || $labels[1 + (i + r) % 8]
        || '", "dataset": "openi", "report": "' || repeat('The heart is normal in size ' || r || '. ', 12)
        || '", "synthetic": false}'), 'string_agg', ', ') || ']',
    '[{"title": "Radiopaedia ' || i || '", "url": "https://radiopaedia.org/articles/' || i
        || '", "domain": "radiopaedia.org", "snippet": "' || repeat('snippet ', 30) || '"}]',
    '1 result from serpapi',
    '{"allowed": true, "reason": "", "score": 0.9}',
    '{"width": 2048, "height": 2048, "warnings": [], "notes": ["n' || i || '"]}',
    '{"input": 0.01, "neighbours": 0.02, "reasoning": 1.5, "summary": 0.1, "web": 0.4}',
    CASE WHEN i % 50 = 0 THEN '[{"stage": "web", "message": "SerpAPI answered HTTP 500."}]' ELSE '[]' END,
    2.0 + (i % 100) / 50.0,
    CASE WHEN i % 10 = 0 THEN 'follow up ' || i ELSE '' END,
    CASE WHEN i % 20 = 0 THEN '["teaching"]' ELSE '[]' END
FROM range($rows) AS t(i)
"""


def fill(store: Any, rows: int) -> float:
    """Insert ``rows`` synthetic analyses in one statement; returns the seconds it took."""
    start = time.perf_counter()
    with store.transaction() as cur:
        cur.execute(_FILL, {"rows": rows, "labels": list(LABELS), "backends": list(BACKENDS)})
        cur.execute("SELECT setval('analyses_id_seq', ?)", [rows])
    return time.perf_counter() - start


def median_seconds(fn: Callable[[], Any], repeats: int, warmup: int = 2) -> dict[str, float]:
    """p50/p95/min of ``fn()`` over ``repeats`` calls after ``warmup`` untimed ones."""
    for _ in range(warmup):
        fn()
    samples = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - start)
    return common.stats(samples)


def cli_call(argv: list[str]) -> Callable[[], None]:
    """The CLI's ``main(argv)`` in-process, output swallowed; fails loudly on a non-zero exit."""
    from medrag.cli import main

    def run() -> None:
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()) as err:
            code = main(argv)
        if code != 0:
            raise SystemExit(f"medrag {' '.join(argv)} exited {code}: {err.getvalue()}")

    return run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--skip-full", action="store_true", help="do not time history_frame() (all rows)")
    parser.add_argument("--json", help="also write the rows to this file")
    args = parser.parse_args()

    from medrag.config import Settings
    from medrag.store import Store

    with tempfile.TemporaryDirectory(prefix="medrag-bench-history-") as tmp:
        data = Path(tmp) / "data"
        settings = Settings(data_dir=data)
        data.mkdir()
        store = Store(settings.db_path)
        seconds = fill(store, args.rows)
        db_mb = settings.db_path.stat().st_size / 1e6
        print(f"Filled {store.count_analyses():,} analyses in {seconds:.1f} s (database {db_mb:,.0f} MB)\n")
        last = max(0, args.rows - 50)
        base = ["--data-dir", str(data)]
        cases: list[tuple[str, Callable[[], Any]]] = [
            ("medrag history (newest 20)", cli_call([*base, "history"])),
            ("medrag history --offset 50000", cli_call([*base, "history", "--offset", str(args.rows // 2)])),
            ("medrag history --search pneumonia", cli_call([*base, "history", "--search", "pneumonia"])),
            ("medrag history --search no-such-text", cli_call([*base, "history", "--search", "no-such-text"])),
            ("history_page(0, 50)", lambda: store.history_page(0, 50)),
            (f"history_page({last}, 50) (last page)", lambda: store.history_page(last, 50)),
            ("history_page(0, 50, sort='label')", lambda: store.history_page(0, 50, sort="label", descending=False)),
            ("history_page(0, 50, search='pneumonia')", lambda: store.history_page(0, 50, search="pneumonia")),
            ("history_page(0, 50, search='case-4242')", lambda: store.history_page(0, 50, search="case-4242")),
            (
                "history_page + top_label/top_score",
                lambda: store.history_page(0, 50, columns=("id", "label", "top_label", "top_score")),
            ),
            ("count_history()", lambda: store.count_history()),
            ("count_history('pneumonia')", lambda: store.count_history("pneumonia")),
            ("before: history_frame(limit=20)", lambda: store.history_frame(limit=20)),
        ]
        if not args.skip_full:
            cases.append(("before: history_frame() (all rows)", lambda: store.history_frame()))
        rows = []

        def measure(name: str, fn: Callable[[], Any], repeats: int, warmup: int = 2) -> None:
            s = median_seconds(fn, repeats, warmup=warmup)
            rows.append({"case": name, "p50_ms": s["p50"] * 1000, "p95_ms": s["p95"] * 1000, "n": s["n"]})

        # The CLI opens (and closes) the database inside each call, as a fresh `medrag history` does.
        for name, fn in cases:
            if name.startswith("medrag"):
                measure(name, fn, args.repeats)
        # The app holds the store open across a rerun (store.session()).
        with store.session():
            for name, fn in cases:
                if not name.startswith("medrag"):
                    full = "all rows" in name
                    measure(name, fn, min(args.repeats, 3) if full else args.repeats, warmup=1 if full else 2)
        # A whole `medrag history` process: Python start-up and imports included.
        command = [sys.executable, "-m", "medrag", *base, "history"]
        measure(
            "python -m medrag history (new process)",
            lambda: subprocess.run(command, check=True, capture_output=True, cwd=common.REPO_ROOT),
            max(3, args.repeats // 3), warmup=1,
        )
        print(common.header() + "\n")
        print(f"| {args.rows:,} analyses | p50 ms | p95 ms | n |\n|---|---:|---:|---:|")
        for row in rows:
            print(f"| {row['case']} | {row['p50_ms']:.1f} | {row['p95_ms']:.1f} | {row['n']} |")
        if args.json:
            Path(args.json).write_text(json.dumps({"rows": args.rows, "results": rows}, indent=2))


if __name__ == "__main__":
    main()
