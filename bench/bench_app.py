"""The app as a user feels it, in a real browser: server start, first paint of Analyze, the first text question
after an import, the first and the second analysis of an uploaded X-ray, and a page switch. Medians (and
min/max) over a few fresh servers.

    python bench/bench_app.py                 # 3 runs: 240 demo phantoms + an import of the real images
    python bench/bench_app.py --runs 5 --cases 1000 --no-import

Each run copies a demo data folder (built once, before the first run, with `medrag demo`), starts
`streamlit run streamlit_app.py` on it on a free port, opens Chromium with Playwright and measures:

* server start: process start until /_stcore/health answers;
* first paint of Analyze: from the moment the server answers, opening /Analyze until its Analyze button is
  visible (then until the script run is over: "Analyze idle");
* import (not a target): on the Library page, import ../shared/data/cxr-real with its labels CSV (1,389 real
  images) until the summary is shown, as the walk of #13 did (skipped with --no-import or without the data);
* first text question after the import: Analyze → "Question only" → click Analyze until "Saved to history
  as #N" is shown (the reports' vectors are built in the background after an import; before #13 this waited
  for every report to be embedded, 30.5 s);
* first analysis: click Analyze on the uploaded image until "Saved to history as #N" is shown;
* second analysis: the same again (models loaded), until the reasoning and the neighbour cards are
  visible ("second analysis: result visible") and until the script run is over ("second analysis");
* page switch: sidebar link to History until its analysis heading is shown and the run is over.

Targets: first paint <= 2 s after the server answers; first text question after an import <= 1.5 s;
second analysis <= 0.8 s until the result is visible (<= 1.5 s until the run is over).
Needs /usr/bin/chromium and Playwright (the browser test's requirements).
"""

from __future__ import annotations

import argparse
import csv
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import common  # first: pins thread counts
import numpy as np

CHROMIUM = Path("/usr/bin/chromium")
IDLE = '[data-testid="stStatusWidget"]'
TARGETS = {
    "first paint of Analyze": 2.0,
    "first text question after the import": 1.5,
    "second analysis: result visible": 0.8,
    "second analysis": 1.5,
}
QUESTION = "What are the signs of pneumonia on a chest x-ray?"
SAVED = "Saved to history as #"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _env(data_dir: Path, cases: int) -> dict[str, str]:
    return {**os.environ, "MEDRAG_DATA_DIR": str(data_dir), "MEDRAG_DEMO_CASES": str(cases), "MEDRAG_WEB": "off",
            "HF_HUB_OFFLINE": "1"}


def _upload_image(tmp: Path) -> Path:
    labels = common.REAL_DATA / "labels.csv"
    if labels.is_file():
        with labels.open(newline="", encoding="utf-8") as handle:
            for row in csv.DictReader(handle):
                path = common.REAL_DATA / row["image"]
                if path.suffix.lower() == ".png" and path.is_file():
                    return path
    from PIL import Image

    from medrag.phantoms import generate_phantom

    target = tmp / "query.png"
    pixels = generate_phantom(frozenset({"effusion"}), seed=31_337, size=256)
    Image.fromarray((np.clip(pixels, 0, 1) * 255).round().astype(np.uint8)).save(target)
    return target


def _wait_idle(page, timeout_s: float = 120.0) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout_s
    quiet = 0
    while time.monotonic() < deadline:
        quiet = quiet + 1 if page.locator(IDLE).count() == 0 else 0
        if quiet >= 3:
            return
        page.wait_for_timeout(50)
    raise RuntimeError("the app did not finish its run")


def _start_server(data_dir: Path, cases: int) -> tuple[subprocess.Popen[bytes], str, float]:
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    started = time.perf_counter()
    proc = subprocess.Popen(
        [sys.executable, "-m", "streamlit", "run", str(common.REPO_ROOT / "streamlit_app.py"),
         "--server.address", "127.0.0.1", "--server.port", str(port), "--server.headless", "true"],
        cwd=common.REPO_ROOT, env=_env(data_dir, cases), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    while True:
        if proc.poll() is not None:
            raise RuntimeError(f"streamlit exited with {proc.returncode}")
        try:
            with urllib.request.urlopen(f"{url}/_stcore/health", timeout=1) as reply:
                if reply.read().strip() == b"ok":
                    return proc, url, time.perf_counter() - started
        except OSError:
            time.sleep(0.05)


def _cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of the server process so far (a load-independent view of each step)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def _saved_texts(page) -> list[str]:  # type: ignore[no-untyped-def]
    return page.get_by_test_id("stAlertContentSuccess").filter(has_text=SAVED).all_inner_texts()


def _click_and_wait_saved(page, button, before: list[str]) -> None:  # type: ignore[no-untyped-def]
    """Click, then wait for a "Saved to history as #N" that was not there before."""
    button.click()
    page.wait_for_function(
        "prev => { const n = [...document.querySelectorAll('[data-testid=\"stAlertContentSuccess\"]')]"
        ".map(e => e.innerText).find(t => t.includes('Saved to history as #')); return n && n !== prev; }",
        arg=before[0] if before else "", timeout=180_000, polling=20,
    )


def _stage_seconds(page) -> float:  # type: ignore[no-untyped-def]
    """Sum of the seconds in the stage boxes' labels ("Found 5 similar cases … · 0.02 s")."""
    labels = page.locator('[data-testid="stExpander"] summary').all_inner_texts()
    return float(sum(float(m.group(1)) for text in labels for m in [re.search(r"· (\d+\.\d+) s\s*$", text)] if m))


def _import_real(page, url: str) -> None:  # type: ignore[no-untyped-def]
    """Import ../shared/data/cxr-real from the Library page, as a user would."""
    from playwright.sync_api import expect

    page.goto(f"{url}/Library")
    _wait_idle(page)
    page.get_by_role("tab", name="Import and re-index").click()
    _wait_idle(page)
    page.get_by_role("textbox", name="Folder (or .parquet / Open-i .tgz) on this machine").fill(str(common.REAL_DATA))
    page.get_by_role("textbox", name="Labels CSV (optional)").first.fill(str(common.REAL_DATA / "labels.csv"))
    page.get_by_role("button", name="Import", exact=True).first.click()  # the path form, not the upload
    expect(page.get_by_text(" added").first).to_be_visible(timeout=600_000)
    _wait_idle(page)


def one_run(browser, base_dir: Path, run_dir: Path, cases: int, upload: Path, real: bool):  # type: ignore[no-untyped-def]
    """One fresh server and page on a copy of the demo data; returns (wall seconds, server CPU seconds) per step."""
    from playwright.sync_api import expect

    shutil.copytree(base_dir, run_dir)
    out: dict[str, float] = {}
    cpu: dict[str, float] = {}
    proc, url, out["server start"] = _start_server(run_dir, cases)
    cpu["server start"] = _cpu_seconds(proc.pid)
    try:
        page = browser.new_page(viewport={"width": 1440, "height": 1000})
        c0 = _cpu_seconds(proc.pid)
        t0 = time.perf_counter()
        page.goto(f"{url}/Analyze")
        analyze_button = page.get_by_role("button", name="Analyze", exact=True)
        expect(analyze_button).to_be_visible(timeout=120_000)
        out["first paint of Analyze"] = time.perf_counter() - t0
        cpu["first paint of Analyze"] = _cpu_seconds(proc.pid) - c0
        _wait_idle(page)
        out["Analyze idle"] = time.perf_counter() - t0
        cpu["Analyze idle"] = _cpu_seconds(proc.pid) - c0

        if real:
            c0 = _cpu_seconds(proc.pid)
            t0 = time.perf_counter()
            _import_real(page, url)
            out["import of the real images (not a target)"] = time.perf_counter() - t0
            cpu["import of the real images (not a target)"] = _cpu_seconds(proc.pid) - c0
            page.locator('[data-testid="stSidebar"]').get_by_role("link", name="Analyze").click()
            _wait_idle(page)
            page.get_by_text("Question only", exact=True).click()
            _wait_idle(page)
            page.get_by_label("Question (optional with an image)").fill(QUESTION)
            page.keyboard.press("Enter")
            _wait_idle(page)
            c0 = _cpu_seconds(proc.pid)
            t0 = time.perf_counter()
            _click_and_wait_saved(page, analyze_button, _saved_texts(page))
            out["first text question after the import"] = time.perf_counter() - t0
            cpu["first text question after the import"] = _cpu_seconds(proc.pid) - c0
            _wait_idle(page)
            out["first text question: pipeline stages (in the above)"] = _stage_seconds(page)
            cpu["first text question: pipeline stages (in the above)"] = float("nan")
            print("text question stages:", page.locator('[data-testid="stExpander"] summary').all_inner_texts(),
                  file=sys.stderr)
            page.get_by_text("Upload an image", exact=True).click()
            _wait_idle(page)

        page.locator('[data-testid="stFileUploaderDropzoneInput"]').set_input_files(str(upload))
        _wait_idle(page)
        for step in ("first analysis", "second analysis"):
            before = _saved_texts(page)
            c0 = _cpu_seconds(proc.pid)
            t0 = time.perf_counter()
            _click_and_wait_saved(page, analyze_button, before)
            if step == "second analysis":
                # The result as the user reads it: the reasoning and the neighbour cards on screen.
                expect(page.get_by_text("Impression").first).to_be_visible(timeout=60_000)
                expect(page.get_by_role("button", name="Open side by side").first).to_be_visible(timeout=60_000)
                out["second analysis: result visible"] = time.perf_counter() - t0
                cpu["second analysis: result visible"] = _cpu_seconds(proc.pid) - c0
            _wait_idle(page)
            out[step] = time.perf_counter() - t0
            cpu[step] = _cpu_seconds(proc.pid) - c0
            if step == "second analysis":
                # What the pipeline itself took: the sum of the stage boxes' "· 0.12 s" (no UI in it).
                pipeline = _stage_seconds(page)
                out["second analysis: pipeline stages (in the above)"] = pipeline
                cpu["second analysis: pipeline stages (in the above)"] = float("nan")

        c0 = _cpu_seconds(proc.pid)
        t0 = time.perf_counter()
        page.locator('[data-testid="stSidebar"]').get_by_role("link", name="History").click()
        expect(page.get_by_role("heading", name="Analysis #").first).to_be_visible(timeout=60_000)
        _wait_idle(page)
        out["page switch (History)"] = time.perf_counter() - t0
        cpu["page switch (History)"] = _cpu_seconds(proc.pid) - c0
        page.close()
    finally:
        _stop(proc)
    return out, cpu


def main() -> int:
    """Run the benchmark and print a Markdown table."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--cases", type=int, default=240, help="demo library size")
    parser.add_argument("--no-import", action="store_true", help="skip the import of the real images")
    args = parser.parse_args()
    if not CHROMIUM.exists():
        print("needs /usr/bin/chromium (apt-get install -y chromium)", file=sys.stderr)
        return 2
    real = not args.no_import and (common.REAL_DATA / "labels.csv").is_file()
    from playwright.sync_api import sync_playwright

    with tempfile.TemporaryDirectory(prefix="medrag-bench-app-") as tmp:
        base_dir = Path(tmp) / "base"
        t0 = time.perf_counter()
        subprocess.run([sys.executable, "-m", "medrag", "demo", "--n", str(args.cases)], check=True,
                       env=_env(base_dir, args.cases), cwd=common.REPO_ROOT, stdout=subprocess.DEVNULL)
        print(f"demo library of {args.cases} cases built in {time.perf_counter() - t0:.1f} s (not timed below)")
        upload = _upload_image(Path(tmp))
        results: list[dict[str, float]] = []
        cpus: list[dict[str, float]] = []
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=["--no-sandbox"])
            try:
                for i in range(args.runs):
                    wall, cpu = one_run(browser, base_dir, Path(tmp) / f"run{i}", args.cases, upload, real)
                    results.append(wall)
                    cpus.append(cpu)
                    print(f"run {i + 1}: " + ", ".join(f"{k} {v:.2f} s" for k, v in results[-1].items()), flush=True)
            finally:
                browser.close()

    print()
    print(common.header())
    library = f"{args.cases} demo cases" + (" + the 1,389 real images imported in the run" if real else "")
    print(f"Upload: {upload.name} · library: {library} · web search off · {args.runs} fresh servers\n")
    print("| step | median s | min s | max s | server CPU s (median) | target |")
    print("|---|---|---|---|---|---|")
    for step in results[0]:
        values = np.array([r[step] for r in results])
        cpu_values = [c[step] for c in cpus if not np.isnan(c[step])]
        cpu_median = float(np.median(cpu_values)) if cpu_values else float("nan")
        target = TARGETS.get(step)
        verdict = "" if target is None else f"≤ {target} s {'✓' if np.median(values) <= target else '✗'}"
        print(
            f"| {step} | {np.median(values):.2f} | {values.min():.2f} | {values.max():.2f} "
            f"| {'—' if np.isnan(cpu_median) else f'{cpu_median:.2f}'} | {verdict} |"
        )
    print("\nServer CPU s: user+system time of the streamlit process during the step; wall time above it on a busy "
          "machine is waiting for a core (see the load average).")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
