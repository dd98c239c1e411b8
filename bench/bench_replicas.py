"""App replicas under concurrent sessions: analyses per second and latency, one vs two `streamlit run`
processes on PostgreSQL, with one process on the DuckDB file as the reference, measured in one run.

    python bench/bench_replicas.py                       # 8 sessions x 5 text questions per setting
    python bench/bench_replicas.py --sessions 8 --rounds 10
    python bench/bench_replicas.py --sessions 8 --rounds 50 --settings pg-2   # the issue's 8 x 50, two replicas

Each setting gets fresh servers on a fresh store holding the 24-phantom demo library; Chromium sessions
(one browser context each) are spread round-robin over the servers and warmed with one question each; then
every round all sessions press Analyze at once and the script waits for each "Saved to history as #N". The
latency of an analysis is from its click to that message. Needs /usr/bin/chromium, Playwright and Debian's
PostgreSQL binaries (a throwaway server is started as in tests/pgserver.py).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import common  # noqa: F401 - first: pins thread counts

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))

from pgserver import ThrowawayServer, _binaries, fresh_database  # noqa: E402
from test_browser_e2e import CHROMIUM, wait_idle  # noqa: E402
from test_replicas import _ask, _saved_text, start_servers, stop_servers  # noqa: E402

#: setting name -> (app processes, on PostgreSQL?)
SETTINGS: dict[str, tuple[int, bool]] = {"duckdb-1": (1, False), "pg-1": (1, True), "pg-2": (2, True)}


def run_setting(name: str, replicas: int, database_url: str | None, sessions: int, rounds: int) -> dict[str, Any]:
    """One setting's figures: analyses/s, latency p50/p95, rows kept."""
    from playwright.sync_api import sync_playwright

    folder = Path(tempfile.mkdtemp(prefix=f"bench-replicas-{name}-"))
    env = {**os.environ, "MEDRAG_DATA_DIR": str(folder), "MEDRAG_WEB": "off", "MEDRAG_DEMO_CASES": "24",
           "HF_HUB_OFFLINE": "1"}
    if database_url:
        env["MEDRAG_DATABASE_URL"] = database_url
    built = subprocess.run([sys.executable, "-m", "medrag", "demo", "--n", "24"], cwd=REPO, env=env,
                           capture_output=True, text=True, check=False)
    if built.returncode:
        raise SystemExit(built.stderr[-2000:])
    procs, urls = start_servers(env, replicas, folder)
    latencies: list[float] = []
    try:
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=["--no-sandbox"])
            pages = []
            for n in range(sessions):
                page = browser.new_context().new_page()
                page.goto(f"{urls[n % replicas]}/Analyze")
                wait_idle(page, timeout_s=300)
                page.get_by_text("Question only", exact=True).click()
                wait_idle(page)
                pages.append(page)
            for page in pages:  # warm every server (models, text index) before timing
                before = _ask(page, f"warm-up {id(page)}: what does a pleural effusion look like?")
                _wait(page, before)
            started = time.perf_counter()
            per_round: list[float] = []
            for round_no in range(rounds):
                clicks = []
                for n, page in enumerate(pages):
                    before = _ask(page, f"{name} session {n} round {round_no}: is there a pleural effusion?")
                    clicks.append((page, before, time.perf_counter()))
                this_round = []
                for page, before, clicked in clicks:
                    _wait(page, before)
                    this_round.append(time.perf_counter() - clicked)
                latencies.extend(this_round)
                per_round.append(statistics.median(this_round))
            wall = time.perf_counter() - started
            browser.close()
    finally:
        stop_servers(procs)
    from medrag.config import Settings
    from medrag.store.factory import open_store

    store = open_store(Settings(data_dir=folder, database_url=database_url, web_provider="off"))
    kept = int(store.count_analyses())
    ordered = sorted(latencies)
    return {"setting": name, "replicas": replicas, "sessions": sessions, "analyses": len(latencies),
            "rows kept": kept, "expected rows": sessions * (rounds + 1), "wall s": round(wall, 2),
            "analyses/s": round(len(latencies) / wall, 2), "p50 s": round(statistics.median(ordered), 2),
            "p95 s": round(ordered[min(len(ordered) - 1, int(0.95 * len(ordered)))], 2),
            # does a long session slow down? the median latency of the first and the last fifth of the rounds
            "p50 first / last rounds s": f"{_fifth(per_round, first=True):.2f} / {_fifth(per_round, first=False):.2f}"}


def _fifth(values: list[float], *, first: bool) -> float:
    """The median of the first (or last) fifth of ``values`` (at least one value)."""
    n = max(1, len(values) // 5)
    return statistics.median(values[:n] if first else values[-n:])


def _wait(page: Any, before: str, timeout_s: float = 300.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        text = _saved_text(page)
        if text and text != before:
            return
        page.wait_for_timeout(50)
    raise SystemExit("an analysis did not finish in time")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sessions", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument("--settings", default=",".join(SETTINGS),
                        help=f"comma-separated settings to run, of {', '.join(SETTINGS)} (default: all)")
    args = parser.parse_args()
    chosen = [name.strip() for name in args.settings.split(",") if name.strip()]
    unknown = sorted(set(chosen) - set(SETTINGS))
    if unknown or not chosen:
        raise SystemExit(f"unknown setting(s) {', '.join(unknown) or '(none given)'}: "
                         f"choose from {', '.join(SETTINGS)}")
    bindir = _binaries()
    if bindir is None or not CHROMIUM.exists():
        raise SystemExit("needs Debian's postgresql binaries and /usr/bin/chromium")
    server = ThrowawayServer(bindir)
    url = server.start()
    rows = []
    try:
        for name in chosen:
            replicas, on_postgres = SETTINGS[name]
            database = fresh_database(url, f"bench_{name.replace('-', '_')}") if on_postgres else None
            rows.append(run_setting(name, replicas, database, args.sessions, args.rounds))
    finally:
        server.stop()
    columns = list(rows[0])
    print(f"\nCommand: `python bench/bench_replicas.py --sessions {args.sessions} --rounds {args.rounds} "
          f"--settings {','.join(chosen)}`  ")
    print(f"Date: {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}; load average (1 min) at the end: "
          f"{os.getloadavg()[0]:.2f}\n")
    print("| " + " | ".join(columns) + " |")
    print("|" + "---|" * len(columns))
    for row in rows:
        print("| " + " | ".join(str(row[c]) for c in columns) + " |")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1))
    lost = [row["setting"] for row in rows if row["rows kept"] != row["expected rows"]]
    if lost:
        raise SystemExit(f"history rows lost or doubled in: {', '.join(lost)}")


if __name__ == "__main__":
    main()
