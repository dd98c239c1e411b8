"""End to end in a real browser: `streamlit run` on 127.0.0.1, driven by Chromium through Playwright.

Uploads a real chest X-ray (../shared/data/cxr-real, else a demo phantom), waits for the streamed
reasoning and the neighbour grid, opens History and sees the new row. Screenshots of every page go to
artifacts/screenshots/ (git-ignored). Skips when /usr/bin/chromium or Playwright is missing.
"""

from __future__ import annotations

import csv
import io
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
CHROMIUM = Path("/usr/bin/chromium")
REAL_DATA = REPO.parent / "shared" / "data" / "cxr-real"
SCREENSHOTS = REPO / "artifacts" / "screenshots"
DEMO_CASES = 24
IDLE = '[data-testid="stStatusWidget"]'

pytestmark = [pytest.mark.browser, pytest.mark.slow, pytest.mark.timeout(240)]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _wait_healthy(url: str, proc: subprocess.Popen[bytes], log: Path, timeout: float = 90.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"streamlit exited with {proc.returncode}:\n{log.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as reply:
                if reply.read().strip() == b"ok":
                    return
        except OSError:
            pass
        time.sleep(0.25)
    raise AssertionError(f"streamlit did not answer within {timeout:.0f} s:\n{log.read_text()[-3000:]}")


#: url of a running test server → its log file
_LOGS: dict[str, Path] = {}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A `streamlit run streamlit_app.py` on a free port with a fresh data folder; killed afterwards."""
    if not CHROMIUM.exists():
        pytest.skip("Chromium is not installed at /usr/bin/chromium (apt-get install -y chromium)")
    pytest.importorskip("playwright.sync_api", reason="Playwright is not installed (pip install playwright)")
    port = _free_port()
    data_dir = tmp_path_factory.mktemp("e2e-data")
    log = data_dir / "streamlit.log"
    env = {
        **os.environ,
        "MEDRAG_DATA_DIR": str(data_dir),
        "MEDRAG_DEMO_CASES": str(DEMO_CASES),
        "MEDRAG_WEB": "off",
        "HF_HUB_OFFLINE": "1",
    }
    command = [
        sys.executable, "-m", "streamlit", "run", str(REPO / "streamlit_app.py"),
        "--server.address", "127.0.0.1", "--server.port", str(port), "--server.headless", "true",
        "--browser.gatherUsageStats", "false",
    ]
    with log.open("wb") as sink:
        proc = subprocess.Popen(command, cwd=REPO, env=env, stdout=sink, stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_healthy(url, proc, log)
        _LOGS[url] = log
        yield url
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=10)


def _upload_file(tmp_path: Path) -> Path:
    """A real chest X-ray PNG when ../shared/data/cxr-real is present, else a demo phantom."""
    labels = REAL_DATA / "labels.csv"
    if labels.is_file():
        with labels.open(newline="", encoding="utf-8") as handle:
            for row in csv.DictReader(handle):
                candidate = REAL_DATA / row["image"]
                if candidate.suffix.lower() == ".png" and candidate.is_file():
                    return candidate
    from PIL import Image

    from medrag.phantoms import generate_phantom

    pixels = generate_phantom(frozenset({"cardiomegaly"}), seed=424_242, size=256)
    target = tmp_path / "phantom.png"
    buffer = io.BytesIO()
    Image.fromarray((pixels.clip(0, 1) * 255).round().astype("uint8")).save(buffer, format="PNG")
    target.write_bytes(buffer.getvalue())
    return target


def wait_idle(page, timeout_s: float = 120.0) -> None:  # type: ignore[no-untyped-def]
    """Wait until the app has rendered and Streamlit's running indicator has been gone for a moment."""
    page.wait_for_selector('[data-testid="stApp"]', timeout=timeout_s * 1000)
    deadline = time.monotonic() + timeout_s
    quiet = 0
    while time.monotonic() < deadline:
        quiet = quiet + 1 if page.locator(IDLE).count() == 0 else 0
        if quiet >= 4:  # 4 × 250 ms without the indicator
            return
        page.wait_for_timeout(250)
    raise AssertionError(f"the app was still running after {timeout_s:.0f} s")


def _shot(page, name: str) -> None:  # type: ignore[no-untyped-def]
    """The whole page: Streamlit scrolls inside its main block, so grow the viewport to fit it first."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    size = page.viewport_size
    height = page.evaluate("document.querySelector('[data-testid=\"stMain\"]').scrollHeight")
    page.set_viewport_size({"width": size["width"], "height": min(max(int(height), size["height"]), 8000)})
    page.wait_for_timeout(400)  # let plotly and the grid re-layout
    page.screenshot(path=str(SCREENSHOTS / f"{name}.png"))
    page.set_viewport_size(size)


def _open_page(page, name: str) -> None:  # type: ignore[no-untyped-def]
    page.locator('[data-testid="stSidebar"]').get_by_role("link", name=name).click()
    wait_idle(page)


def test_upload_analyze_and_find_it_in_history(server: str, tmp_path: Path) -> None:
    from playwright.sync_api import expect, sync_playwright

    upload = _upload_file(tmp_path)
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=["--no-sandbox"])
        try:
            page = browser.new_page(viewport={"width": 1440, "height": 1000})
            errors: list[str] = []
            page.on("pageerror", lambda exc: errors.append(str(exc)))

            page.goto(server)
            wait_idle(page, timeout_s=180)  # first start builds the demo library
            expect(page.get_by_text("For education and research only").first).to_be_visible()
            expect(page.get_by_text("Start an analysis")).to_be_visible()
            _shot(page, "0_home")

            _open_page(page, "Analyze")
            page.locator('[data-testid="stFileUploaderDropzoneInput"]').set_input_files(str(upload))
            wait_idle(page)
            expect(page.locator('[data-testid="stPlotlyChart"]').first).to_be_visible()
            page.get_by_role("button", name="Analyze", exact=True).click()
            saved = page.get_by_test_id("stAlertContentSuccess").filter(has_text="Saved to history as #")
            expect(saved).to_be_visible(timeout=120_000)
            wait_idle(page)
            analysis_id = saved.inner_text().rsplit("#", 1)[1].strip()
            # The streamed reasoning is there, in full, and so is the neighbour grid.
            expect(page.get_by_text("Reasoning by").first).to_be_visible()
            expect(page.get_by_text("Impression").first).to_be_visible()
            expect(page.get_by_role("button", name="Open side by side")).to_have_count(5)
            _shot(page, "1_analyze")

            page.get_by_role("button", name="Open side by side").first.click()
            wait_idle(page)
            expect(page.get_by_role("button", name="Close")).to_be_visible()
            _shot(page, "1_analyze_side_by_side")

            _open_page(page, "History")
            expect(page.get_by_role("heading", name=f"Analysis #{analysis_id}")).to_be_visible()
            expect(page.locator('[data-testid="stDataFrame"]').first).to_be_visible()
            _shot(page, "3_history")

            for index, name in ((2, "Library"), (4, "Compare"), (5, "Settings")):
                _open_page(page, name)
                expect(page.get_by_text("For education and research only").first).to_be_visible()
                _shot(page, f"{index}_{name.lower()}")
            assert not page.get_by_text("Traceback").count()
            assert errors == [], errors
        finally:
            browser.close()


def test_library_import_runs_its_workers_inside_the_server(server: str, tmp_path: Path) -> None:
    """An import large enough for worker processes (fork server) works from the Streamlit server process.

    Under Streamlit the __main__ module is the page script; a worker that re-ran it would start its own
    import. The log must not show the fallback to a single process either.
    """
    from PIL import Image
    from playwright.sync_api import expect, sync_playwright

    from medrag.library import _PARALLEL_FROM
    from medrag.phantoms import generate_phantom

    folder = tmp_path / "teaching-set" / "effusion"
    folder.mkdir(parents=True)
    count = _PARALLEL_FROM + 20
    for i in range(count):
        pixels = generate_phantom(frozenset({"effusion"}), seed=90_000 + i, size=192)
        Image.fromarray((pixels.clip(0, 1) * 255).round().astype("uint8")).save(folder / f"{i:03d}.png")
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=["--no-sandbox"])
        try:
            page = browser.new_page(viewport={"width": 1440, "height": 1000})
            page.goto(f"{server}/Library")
            wait_idle(page, timeout_s=180)
            page.get_by_role("tab", name="Import and re-index").click()
            wait_idle(page)
            page.get_by_label("Folder (or .parquet / Open-i .tgz) on this machine").fill(str(folder.parent))
            page.get_by_role("button", name="Import").click()
            expect(page.get_by_text(f"{count} seen, {count} added")).to_be_visible(timeout=180_000)
            wait_idle(page)
            _shot(page, "2_library_import")
            assert not page.get_by_text("Traceback").count()
        finally:
            browser.close()
    log = _LOGS[server].read_text(errors="replace")
    assert "worker stopped unexpectedly" not in log and "Traceback" not in log, log[-3000:]
