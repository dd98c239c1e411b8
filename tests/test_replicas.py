"""Two app replicas on one PostgreSQL store (issue #14 item 2): real `streamlit run` processes, real browser
sessions spread over them, every analysis kept, and an import made elsewhere found by a search in a replica.

Scaled to the 2-core CI machine: 2 replicas × 2 sessions each × 5 rounds = 20 concurrent text analyses. The
issue's scale, 8 sessions × 50 analyses, is the same test with ``MEDRAG_TEST_REPLICA_SESSIONS=4
MEDRAG_TEST_REPLICA_ROUNDS=50`` (run by hand; BENCHMARKS.md gives its figures). Skips without Chromium,
Playwright or a PostgreSQL server (tests/pgserver.py).
"""

from __future__ import annotations

import io
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from pgserver import fresh_database
from test_browser_e2e import CHROMIUM, REPO, _free_port, _wait_healthy, wait_idle

pytestmark = [pytest.mark.browser, pytest.mark.slow, pytest.mark.timeout(600)]
SESSIONS_PER_REPLICA = int(os.environ.get("MEDRAG_TEST_REPLICA_SESSIONS") or 2)
ROUNDS = int(os.environ.get("MEDRAG_TEST_REPLICA_ROUNDS") or 5)
#: the options every replica runs with (docs/compose.yaml's medrag service runs the same; test_deploy_compose.py)
STREAMLIT_OPTIONS = ("--server.headless", "true", "--browser.gatherUsageStats", "false")
#: the settings the replicas get beyond the test's own MEDRAG_DEMO_CASES (compose gives its replicas the same)
REPLICA_VARIABLES = ("MEDRAG_DATABASE_URL", "MEDRAG_DATA_DIR", "MEDRAG_WEB", "HF_HUB_OFFLINE")
MARKER = "Replica marker: large left tension pneumothorax with rightward mediastinal shift."


def _cli(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "medrag", *args], cwd=REPO, env=env, capture_output=True,
                          text=True, timeout=300, check=False)


@pytest.fixture(scope="module")
def replicas(pg_server_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path, list[str]]]:
    """(database URL, shared data folder, two replica URLs): a demo library in PostgreSQL, two servers on it."""
    if not CHROMIUM.exists():
        pytest.skip("Chromium is not installed at /usr/bin/chromium (apt-get install -y chromium)")
    pytest.importorskip("playwright.sync_api", reason="Playwright is not installed (pip install playwright)")
    url = fresh_database(pg_server_url, "medrag_replicas")
    shared = tmp_path_factory.mktemp("replica-shared")
    env = {**os.environ, **dict(zip(REPLICA_VARIABLES, (url, str(shared), "off", "1"), strict=True)),
           "MEDRAG_DEMO_CASES": "24"}
    built = _cli("demo", "--n", "24", env=env)
    assert built.returncode == 0, built.stderr[-2000:]
    procs, urls = start_servers(env, 2, shared)
    try:
        yield url, shared, urls
    finally:
        stop_servers(procs)


def start_servers(env: dict[str, str], count: int, folder: Path, *, ports: list[int] | None = None,
                  extra_args: tuple[str, ...] = ()) -> tuple[list[subprocess.Popen[bytes]], list[str]]:
    """``count`` `streamlit run` processes with ``env`` on ``ports`` (default: free ones) and ``extra_args``
    (Streamlit options), healthy; their logs go to ``folder``."""
    procs, urls = [], []
    for n in range(count):
        port = ports[n] if ports else _free_port()
        log = folder / f"streamlit-{n}.log"
        with log.open("wb") as sink:
            procs.append(subprocess.Popen(
                [sys.executable, "-m", "streamlit", "run", str(REPO / "streamlit_app.py"), "--server.address",
                 "127.0.0.1", "--server.port", str(port), *STREAMLIT_OPTIONS, *extra_args],
                cwd=REPO, env=env, stdout=sink, stderr=subprocess.STDOUT, start_new_session=True,
            ))
        urls.append(f"http://127.0.0.1:{port}")
        _wait_healthy(urls[-1], procs[-1], log)
    return procs, urls


def stop_servers(procs: list[subprocess.Popen[bytes]]) -> None:
    """Stop the servers :func:`start_servers` started (their whole process groups)."""
    for proc in procs:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(timeout=30)


def _saved_text(page) -> str:  # type: ignore[no-untyped-def]
    found = page.get_by_test_id("stAlertContentSuccess").filter(has_text="Saved to history as #")
    return found.first.inner_text() if found.count() else ""


def _ask(page, question: str) -> str:  # type: ignore[no-untyped-def]
    """Type a question and press Analyze (does not wait); returns the success text shown before."""
    before = _saved_text(page)
    page.get_by_label("Question (optional with an image)").fill(question)
    page.get_by_label("Question (optional with an image)").press("Tab")
    page.get_by_role("button", name="Analyze", exact=True).click()
    return before


def _wait_saved(page, before: str, timeout_s: float = 240.0) -> int:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        text = _saved_text(page)
        if text and text != before:
            return int(text.rsplit("#", 1)[1].strip())
        page.wait_for_timeout(200)
    raise AssertionError(f"no new 'Saved to history' within {timeout_s:.0f} s")


def test_two_replicas_keep_every_analysis_and_see_each_others_imports(replicas: tuple[str, Path, list[str]]) -> None:
    from playwright.sync_api import sync_playwright

    from medrag.store.pg import PgStore

    url, shared, servers = replicas
    expected: set[str] = set()
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=["--no-sandbox"])
        try:
            pages = []
            for server in servers:
                for _ in range(SESSIONS_PER_REPLICA):
                    page = browser.new_context().new_page()  # one browser session each
                    page.goto(f"{server}/Analyze")
                    wait_idle(page, timeout_s=240)
                    page.get_by_text("Question only", exact=True).click()
                    wait_idle(page)
                    pages.append(page)
            for round_no in range(ROUNDS):
                waiting = []
                for number, page in enumerate(pages):
                    question = f"Session {number} round {round_no}: is there a pleural effusion?"
                    expected.add(question)
                    waiting.append((page, _ask(page, question)))
                for page, before in waiting:  # all sessions' analyses run at once on the two servers
                    _wait_saved(page, before)

            # A third process (the CLI) imports cases whose reports carry a marker; replica b finds them.
            incoming = shared.parent / "replica-incoming"
            (incoming / "images").mkdir(parents=True)
            rows = ["image,label,report"]
            for i in range(6):
                pixels = np.full((96, 96), 0.3 + 0.05 * i, dtype=np.float32)
                buffer = io.BytesIO()
                Image.fromarray((pixels * 255).astype(np.uint8)).save(buffer, format="PNG")
                (incoming / "images" / f"marker_{i}.png").write_bytes(buffer.getvalue())
                rows.append(f'images/marker_{i}.png,replicatest,"{MARKER} Case {i}."')
            (incoming / "labels.csv").write_text("\n".join(rows) + "\n")
            env = {**os.environ, "MEDRAG_DATABASE_URL": url, "MEDRAG_DATA_DIR": str(shared), "HF_HUB_OFFLINE": "1"}
            imported = _cli("ingest", str(incoming), "--labels", str(incoming / "labels.csv"), env=env)
            assert imported.returncode == 0, imported.stderr[-2000:]
            page_b = pages[-1]
            found: set[str] = set()
            for attempt in range(4):  # the replica embeds the new reports in the background
                question = f"Is there a large left tension pneumothorax with mediastinal shift? ({attempt})"
                expected.add(question)
                analysis_id = _wait_saved(page_b, _ask(page_b, question))
                with PgStore(url, data_root=shared) as store:
                    saved = store.get_analysis(analysis_id)
                assert saved is not None
                found = {n.label for n in saved.neighbours}
                if "replicatest" in found:
                    break
                page_b.wait_for_timeout(3000)
            assert "replicatest" in found, found
        finally:
            browser.close()
    with PgStore(url, data_root=shared) as store:
        frame = store.history_frame()
        assert store.count_analyses() == len(expected) == len(frame)
        assert set(frame["question"]) == expected and frame["id"].is_unique
