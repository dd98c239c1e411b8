"""Crash safety: ``kill -9`` of ``medrag ingest`` and ``medrag index`` at seeded random moments.

After every kill the library must open, hold no half-written rows (every case has its thumbnail,
every embedding and source fingerprint has its case), keep every row committed before the kill,
and its index files must agree with each other (or be detected as stale and rebuilt by
``Workbench.ensure_index``). At the end a normal ingest completes the library: no image is lost.
"""

from __future__ import annotations

import logging
import os
import random
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from medrag.config import Settings
from medrag.errors import IndexMismatchError

pytestmark = pytest.mark.duckdb_only(
    "kills processes writing the data folder's DuckDB file and checks what the file and the index files hold"
)
REPO = Path(__file__).resolve().parents[1]
KILLS = 20
INGEST_ROUNDS = sum(1 for r in range(KILLS) if r % 3 != 2)
FOLDERS, PER_FOLDER = 1 + INGEST_ROUNDS, 40  # one store batch per ingest; `index --rebuild` writes many
SEED = 20260


@dataclass
class CrashLog:
    """What the kills did (printed for RELIABILITY.md)."""

    kills: int = 0
    ingest_kills: int = 0
    index_kills: int = 0
    finished_before_kill: int = 0
    index_loaded_ok: int = 0
    index_mismatch_detected: int = 0
    index_missing: int = 0
    tmp_leftovers: int = 0
    rows_lost: int = 0
    cases_after_each_kill: list[int] = field(default_factory=list)


def _make_sources(root: Path) -> list[Path]:
    """One folder per ingest round (so every ingest has work to do); pixels differ between folders."""
    from medrag.phantoms import generate_phantom

    base = [
        np.round(generate_phantom(frozenset(), 1000 + i, size=96) * 255).astype(np.uint8) for i in range(PER_FOLDER)
    ]
    folders = []
    for f in range(FOLDERS):
        folder = root / f"batch{f:02d}"
        (folder / "normal").mkdir(parents=True)
        for i, pixels in enumerate(base):
            marked = pixels.copy()
            marked[0, 0], marked[0, 1] = f, 255 - f  # a distinct pixel hash per folder
            Image.fromarray(marked).save(folder / "normal" / f"{i:03d}.png")
        folders.append(folder)
    return folders


def _run_and_kill(args: list[str], delay: float | None) -> bool:
    """Start ``python -m medrag ARGS`` in its own process group, SIGKILL the group after ``delay`` s.

    Returns True when the command had already finished by itself (``delay=None``: let it finish).
    """
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "medrag", *args], cwd=REPO, env=env, stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE, start_new_session=True,
    )
    try:
        proc.wait(timeout=delay if delay is not None else 240)
        finished = True
    except subprocess.TimeoutExpired:
        finished = False
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    stderr = proc.stderr.read().decode("utf-8", "replace") if proc.stderr else ""
    if finished:
        assert proc.returncode == 0, f"medrag {' '.join(args)} failed on its own: {stderr[-2000:]}"
        assert "Traceback" not in stderr
    return finished


def _check_consistent(settings: Settings, committed_before: set[str], log: CrashLog) -> set[str]:
    """The invariants after a kill; returns the case ids now present."""
    from medrag.encoders import build_encoder
    from medrag.index import VectorIndex
    from medrag.store import Store

    store = Store(settings.db_path, lock_timeout=30)
    with store.cursor() as cur:
        cases = {r[0]: r[1] for r in cur.execute("SELECT case_id, thumb_path FROM cases").fetchall()}
        orphan_vectors = cur.execute(
            "SELECT count(*) FROM embeddings e LEFT JOIN cases c USING (case_id) WHERE c.case_id IS NULL"
        ).fetchone()[0]
        orphan_sources = cur.execute(
            "SELECT count(*) FROM sources s LEFT JOIN cases c USING (case_id) WHERE c.case_id IS NULL"
        ).fetchone()[0]
    assert orphan_vectors == 0, "embeddings without a case (half-written batch)"
    assert orphan_sources == 0, "source fingerprints without a case (half-written batch)"
    # Stored paths under the data folder are relative to it (medrag.store.paths).
    missing_thumbs = [cid for cid, thumb in cases.items() if not (settings.data_dir / thumb).is_file()]
    assert not missing_thumbs, f"{len(missing_thumbs)} case rows without their thumbnail file"
    lost = committed_before - set(cases)
    log.rows_lost += len(lost)
    assert not lost, f"{len(lost)} committed cases disappeared after a kill"
    # Files under their final names are complete (temp files may be left over, never renamed half-done).
    for thumb in settings.thumbs_dir.rglob("*.jpg"):
        with Image.open(thumb) as im:
            im.load()  # a truncated JPEG raises here (verify() checks nothing for JPEG)
    log.tmp_leftovers += sum(1 for p in settings.data_dir.rglob("*") if ".tmp" in p.name)
    # The saved index: either its two files agree, or load says so and it is rebuilt.
    encoder = build_encoder(settings.image_encoder, settings)
    if encoder.is_fitted:
        try:
            index = VectorIndex.load(settings.index_dir, encoder.name, encoder.version)
            assert set(index.ids) <= set(cases), "the saved index names cases that do not exist"
            log.index_loaded_ok += 1
        except IndexMismatchError as exc:
            if "no saved" in str(exc):
                log.index_missing += 1
            else:
                log.index_mismatch_detected += 1
            assert "index" in str(exc).lower()
    else:
        log.index_missing += 1
    return set(cases)


def _ensure_index_agrees(settings: Settings, caplog: pytest.LogCaptureFixture) -> None:
    from medrag.index import VectorIndex
    from medrag.workbench import Workbench

    if not settings.db_path.exists():
        return
    wb = Workbench(settings)
    if wb.store.count_cases() == 0:
        return
    with caplog.at_level(logging.WARNING, logger="medrag"):
        index = wb.ensure_index("image")
    ids = set(wb.store.case_ids_where())
    assert set(index.ids) == ids and len(index) == len(ids), "index and cases table disagree after ensure_index"
    reloaded = VectorIndex.load(settings.index_dir, wb.image_encoder.name, wb.image_encoder.version)
    assert list(reloaded.ids) == list(index.ids), "saved .faiss/.json disagree with the live index"


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_kill_9_ingest_and_index_twenty_times(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    folders = _make_sources(tmp_path / "src")
    settings = Settings(data_dir=tmp_path / "data", web_provider="off")
    data = str(settings.data_dir)
    rng = random.Random(SEED)
    log = CrashLog()
    started = time.monotonic()
    # Calibrate: one full ingest and one full rebuild, not killed, so kills land inside the work.
    t0 = time.monotonic()
    assert _run_and_kill(["--data-dir", data, "ingest", str(folders[0])], None)
    ingest_s = time.monotonic() - t0
    t0 = time.monotonic()
    assert _run_and_kill(["--data-dir", data, "index", "--kind", "image", "--rebuild"], None)
    index_s = time.monotonic() - t0
    present = _check_consistent(settings, set(), log)
    log.index_loaded_ok = log.index_missing = log.tmp_leftovers = 0
    for round_ in range(KILLS):
        if round_ % 3 == 2:
            args = ["--data-dir", data, "index", "--kind", "image", "--rebuild"]
            delay = rng.uniform(0.25, 1.0) * index_s
            log.index_kills += 1
        else:
            args = ["--data-dir", data, "ingest", str(folders[1 + log.ingest_kills])]
            delay = rng.uniform(0.25, 1.0) * ingest_s
            log.ingest_kills += 1
        if _run_and_kill(args, delay):
            log.finished_before_kill += 1
        log.kills += 1
        present = _check_consistent(settings, present, log)
        log.cases_after_each_kill.append(len(present))
        _ensure_index_agrees(settings, caplog)
    # A normal run afterwards completes the library: every source image is a case.
    from medrag.workbench import Workbench

    wb = Workbench(settings)
    wb.ingest(folders[0].parent)
    index = wb.ensure_index("image")
    total = wb.store.count_cases()
    log.rows_lost += FOLDERS * PER_FOLDER - total
    print(f"\ncrash log: {log}; full ingest {ingest_s:.1f} s, full index {index_s:.1f} s; "
          f"{time.monotonic() - started:.0f} s in all")
    assert total == FOLDERS * PER_FOLDER, f"{FOLDERS * PER_FOLDER - total} images lost"
    assert len(index) == total
    assert log.kills == KILLS and log.finished_before_kill < KILLS // 2, "most runs must really be killed mid-way"
    assert log.rows_lost == 0


def _small_library(tmp_path: Path, n: int = 24) -> Settings:
    from medrag.workbench import Workbench

    folder = tmp_path / "src" / "normal"
    folder.mkdir(parents=True)
    from medrag.phantoms import generate_phantom

    for i in range(n):
        Image.fromarray(np.round(generate_phantom(frozenset(), 500 + i, size=96) * 255).astype(np.uint8)).save(
            folder / f"{i}.png"
        )
    settings = Settings(data_dir=tmp_path / "data", web_provider="off")
    Workbench(settings).ingest(folder.parent)
    return settings


def test_index_torn_between_faiss_and_json_is_detected_and_rebuilt(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The one window a random kill rarely hits: new .faiss replaced, old .json still there."""
    from medrag.index import VectorIndex
    from medrag.workbench import Workbench

    settings = _small_library(tmp_path)
    wb = Workbench(settings)
    encoder = wb.image_encoder
    faiss_path = settings.index_dir / f"{encoder.name}.faiss"
    json_path = settings.index_dir / f"{encoder.name}.json"
    good_json = json_path.read_bytes()
    # Another (smaller) index's .faiss under the final name, the old stamp beside it.
    ids, vectors = wb.store.load_embeddings(encoder.name, encoder.version)
    other = VectorIndex.build(ids[:5], vectors[:5], encoder_name=encoder.name, encoder_version=encoder.version)
    other.save(tmp_path / "other")
    faiss_path.write_bytes((tmp_path / "other" / faiss_path.name).read_bytes())
    json_path.write_bytes(good_json)
    with pytest.raises(IndexMismatchError, match="index"):
        VectorIndex.load(settings.index_dir, encoder.name, encoder.version)
    fresh = Workbench(settings)
    with caplog.at_level(logging.WARNING, logger="medrag"):
        index = fresh.ensure_index("image")
    assert len(index) == len(ids) == fresh.store.count_cases()
    assert any("rebuilding" in r.getMessage() for r in caplog.records), "the rebuild is reported"
    assert len(VectorIndex.load(settings.index_dir, encoder.name, encoder.version)) == len(ids)


@pytest.mark.parametrize("damage", ["truncate-faiss", "truncate-json", "empty-json", "garbage-faiss", "delete-faiss"])
def test_damaged_index_files_are_rebuilt(tmp_path: Path, damage: str) -> None:
    from medrag.index import VectorIndex
    from medrag.workbench import Workbench

    settings = _small_library(tmp_path, n=12)
    encoder = Workbench(settings).image_encoder
    faiss_path = settings.index_dir / f"{encoder.name}.faiss"
    json_path = settings.index_dir / f"{encoder.name}.json"
    if damage == "truncate-faiss":
        faiss_path.write_bytes(faiss_path.read_bytes()[:100])
    elif damage == "truncate-json":
        json_path.write_bytes(json_path.read_bytes()[:40])
    elif damage == "empty-json":
        json_path.write_bytes(b"")
    elif damage == "garbage-faiss":
        faiss_path.write_bytes(b"\x00garbage" * 50)
    else:
        faiss_path.unlink()
    with pytest.raises(IndexMismatchError):
        VectorIndex.load(settings.index_dir, encoder.name, encoder.version)
    index = Workbench(settings).ensure_index("image")
    assert len(index) == 12
    assert len(VectorIndex.load(settings.index_dir, encoder.name, encoder.version)) == 12


def test_leftover_temp_files_break_nothing(tmp_path: Path) -> None:
    """Temp files a kill leaves behind (thumbs, index, models, uploads) are ignored by import, index and analysis."""
    from medrag.pipeline import run_analysis
    from medrag.workbench import Workbench

    settings = _small_library(tmp_path, n=12)
    junk = [
        settings.thumbs_dir / "ab" / ".abcdef.jpg.x1y2.tmp",
        settings.index_dir / ".classic.faiss.k3j4.tmp",
        settings.index_dir / ".classic.json.k3j4.tmp",
        settings.models_dir / ".classic.npz.zz.tmp",
        settings.uploads_dir / "cd" / "cdef.tmp4242",
        settings.data_dir / "images" / "ef" / "ef01.tmp77",
    ]
    for path in junk:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"half-written")
    wb = Workbench(settings)
    assert len(wb.ensure_index("image")) == 12
    report = wb.ingest(tmp_path / "src")
    assert report.unchanged == 12 and not report.errors
    image = wb.store.cases_frame(limit=1).iloc[0]["image_path"]
    result = run_analysis(wb, Path(image), web=False)
    assert result.analysis_id and not result.failures, result.failures


def _children(pid: int) -> list[tuple[int, str]]:
    """(pid, command line) of the direct children of ``pid`` (from /proc)."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
            if int(fields[1]) == pid:
                cmd = (stat.parent / "cmdline").read_bytes().replace(b"\0", b" ").decode("utf-8", "replace")
                found.append((int(stat.parent.name), cmd))
        except (OSError, IndexError, ValueError):
            continue
    return found


def _import_workers(pid: int) -> list[int]:
    """Worker processes of an import in process ``pid``: spawned children, or children of its fork server."""
    workers = []
    for child, cmd in _children(pid):
        if "resource_tracker" in cmd:
            continue
        if "forkserver" in cmd:
            workers.extend(grandchild for grandchild, _ in _children(child))
        elif "spawn_main" in cmd:
            workers.append(child)
    return workers


@pytest.mark.slow
@pytest.mark.timeout(300)
@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs /proc to find the worker processes")
def test_kill_9_of_an_ingest_worker_process(tmp_path: Path) -> None:
    """Imports of 200+ images decode in worker processes; one dying must not end in a traceback or bad rows."""
    from medrag.workbench import Workbench

    folder = tmp_path / "src" / "normal"
    folder.mkdir(parents=True)
    # 512 px and 600 images keep the workers busy for seconds, so the kill lands while they run.
    base = np.round(
        __import__("medrag.phantoms", fromlist=["x"]).generate_phantom(frozenset(), 5, size=512) * 255
    ).astype(np.uint8)
    for i in range(600):
        marked = base.copy()
        marked[0, 0], marked[0, 1] = i % 256, i // 256
        Image.fromarray(marked).save(folder / f"{i}.png")
    settings = Settings(data_dir=tmp_path / "data", web_provider="off")
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "medrag", "--data-dir", str(settings.data_dir), "ingest", str(folder.parent)],
        cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True,
    )
    victim = None
    deadline = time.monotonic() + 120
    while victim is None and time.monotonic() < deadline and proc.poll() is None:
        workers = _import_workers(proc.pid)
        if workers:
            time.sleep(0.5)  # let it decode a little first
            try:
                os.kill(workers[0], signal.SIGKILL)
                victim = workers[0]
            except ProcessLookupError:  # that worker already finished: look again
                continue
        else:
            time.sleep(0.1)
    try:
        out, err = proc.communicate(timeout=180)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    out_text, err_text = out.decode("utf-8", "replace"), err.decode("utf-8", "replace")
    assert victim is not None, "the import used worker processes"
    assert "Traceback" not in err_text, f"a dead worker ends the import with a traceback:\n{err_text[-1500:]}"
    log = CrashLog()
    present = _check_consistent(settings, set(), log)
    wb = Workbench(settings)
    wb.ingest(folder.parent)
    assert wb.store.count_cases() == 600 and len(present) <= 600
    assert out_text or err_text
