"""``medrag backup`` / ``restore``: a checked copy, a faithful round trip, refusals, and ``kill -9`` mid-backup.

The library is the 30-case synthetic demo plus a 20,000-row history (~40 MB), so that a backup takes long
enough for seeded random kills to land inside it.
"""

from __future__ import annotations

import hashlib
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import duckdb
import pytest

from medrag.analysis import Analysis
from medrag.backup import manifest_path, restore, verify_backup
from medrag.cli import main
from medrag.config import Settings
from medrag.errors import BackupError
from medrag.store import Store
from medrag.store.connection import forget_file
from medrag.store.health import table_counts
from medrag.workbench import Workbench

pytestmark = pytest.mark.duckdb_only("these back up and restore the DuckDB file; tests/test_backup_pg.py the database")
REPO = Path(__file__).resolve().parents[1]
N, HISTORY = 30, 20_000
KILLS, SEED = 8, 1212


@pytest.fixture(scope="module")
def pristine(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("backup-pristine") / "data"
    wb = Workbench(Settings(data_dir=folder, web_provider="off"))
    wb.build_demo(n=N, seed=0)
    with wb.store.transaction() as cur:
        cur.execute(
            "INSERT INTO analyses (created_at, input_kind, question, label, reasoning) "
            "SELECT now(), 'text', 'q' || range, 'normal', repeat(md5(range::VARCHAR), 64) FROM range(?)", [HISTORY]
        )
    forget_file(folder / "medrag.duckdb")
    return folder


@pytest.fixture()
def data(pristine: Path, tmp_path: Path) -> Path:
    target = tmp_path / "data"
    shutil.copytree(pristine, target)
    return target


def _counts(db: Path) -> dict[str, int]:
    forget_file(db)
    con = duckdb.connect(str(db), read_only=True)
    try:
        tables = tuple(r[0] for r in con.execute("SELECT table_name FROM duckdb_tables()").fetchall())
        return table_counts(con, tables)
    finally:
        con.close()


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    capsys.readouterr()
    code = main(list(args))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_backup_then_restore_gives_back_identical_rows(data: Path, capsys: pytest.CaptureFixture[str]) -> None:
    db = data / "medrag.duckdb"
    Store(db).save_analysis(Analysis(input_kind="text", question="before the backup"))
    before = _counts(db)
    code, out, err = _cli(capsys, "--data-dir", str(data), "backup")
    assert code == 0, err
    (made,) = (data / "backups").glob("*.duckdb")
    assert made.name.startswith("medrag-") and f"to {made}" in out
    manifest = verify_backup(made)
    assert manifest.rows == before and manifest.sha256 == _sha(made)
    assert before["cases"] == N and before["analyses"] == HISTORY + 1
    # Life goes on after the backup ...
    store = Store(db)
    for question in ("after the backup", "and another"):
        store.save_analysis(Analysis(input_kind="text", question=question))
    store.delete_analysis(1)
    changed = _counts(db)
    assert changed != before
    # ... and restore puts back exactly what the backup holds, keeping the changed database aside.
    code, out, err = _cli(capsys, "--data-dir", str(data), "restore", str(made))
    assert code == 0, err
    assert _counts(db) == before
    (aside,) = data.glob("medrag.duckdb.before-restore-*")
    assert _counts(aside) == changed and f"kept as {aside}" in out
    restored = Store(db)
    assert restored.count_analyses() == HISTORY + 1
    assert restored.save_analysis(Analysis(input_kind="text", question="next")) == HISTORY + 2  # ids go on from it
    print(f"\nround trip: {before}")


def test_backup_and_restore_refuse_what_they_must(data: Path, capsys: pytest.CaptureFixture[str]) -> None:
    db = data / "medrag.duckdb"
    target = data.parent / "copy.duckdb"
    assert _cli(capsys, "--data-dir", str(data), "backup", str(target))[0] == 0
    code, _, err = _cli(capsys, "--data-dir", str(data), "backup", str(target))
    assert code == 2 and "already exists" in err and "--force" in err
    assert _cli(capsys, "--data-dir", str(data), "backup", str(target), "--force")[0] == 0
    code, _, err = _cli(capsys, "--data-dir", str(data), "backup", str(db))
    assert code == 2 and "live database" in err
    live = _sha(db)
    # A torn copy (cut in half, its manifest beside it), a flipped byte, a file without a manifest: all refused.
    torn = data.parent / "torn.duckdb"
    shutil.copyfile(target, torn)
    shutil.copyfile(manifest_path(target), manifest_path(torn))
    os.truncate(torn, torn.stat().st_size // 2)
    flipped = data.parent / "flipped.duckdb"
    shutil.copyfile(target, flipped)
    shutil.copyfile(manifest_path(target), manifest_path(flipped))
    with open(flipped, "r+b") as handle:
        handle.seek(flipped.stat().st_size // 2)
        byte = handle.read(1)
        handle.seek(-1, os.SEEK_CUR)
        handle.write(bytes([byte[0] ^ 0xFF]))
    bare = data.parent / "bare.duckdb"
    shutil.copyfile(target, bare)
    for bad, words in ((torn, "torn"), (flipped, "torn"), (bare, "no manifest")):
        code, _, err = _cli(capsys, "--data-dir", str(data), "restore", str(bad))
        assert code == 2 and words in err, err
    assert _sha(db) == live and not list(data.glob("medrag.duckdb.before-restore-*"))


def _backup_process(data: Path) -> subprocess.Popen[bytes]:
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    return subprocess.Popen(
        [sys.executable, "-m", "medrag", "--data-dir", str(data), "backup"], cwd=REPO, env=env,
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True,
    )


def test_kill_9_during_backup_leaves_no_backup_or_a_complete_one(data: Path) -> None:
    db = data / "medrag.duckdb"
    live_counts, live_sha = _counts(db), _sha(db)
    backups = data / "backups"
    started = time.perf_counter()
    proc = _backup_process(data)
    _, stderr = proc.communicate(timeout=600)
    full = time.perf_counter() - started
    assert proc.returncode == 0, stderr.decode()
    complete = {p.name for p in backups.glob("*.duckdb")}
    rng = random.Random(SEED)
    outcomes = {"complete": 0, "none": 0, "torn_left": 0}
    for _ in range(KILLS):
        delay = rng.uniform(0.3, 1.2) * full  # most land inside the backup, a few after it
        proc = _backup_process(data)
        try:
            proc.wait(timeout=delay)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        names = {p.name for p in backups.glob("*.duckdb")}
        new = names - complete
        for name in new:  # whatever carries a backup's name verifies
            verify_backup(backups / name)
        complete |= new
        leftovers = [p for p in backups.iterdir() if p.name.startswith(".")]
        for leftover in leftovers:  # what a kill left half-written is refused by restore
            with pytest.raises(BackupError):
                restore(Settings(data_dir=data), leftover)
        outcomes["complete" if new else "torn_left" if leftovers else "none"] += 1
        assert _counts(db) == live_counts and _sha(db) == live_sha  # the live database is untouched
    print(f"\nkill -9 during backup (full run {full:.1f} s): {outcomes}, {len(complete)} complete backups in all")
    assert outcomes["torn_left"] + outcomes["none"] >= 1  # some kills landed before the backup was complete
    # The next backup clears what killed ones left, and every backup restores.
    assert main(["--data-dir", str(data), "backup"]) == 0
    assert not [p for p in backups.iterdir() if p.name.startswith(".")]
    newest = max(backups.glob("*.duckdb"), key=lambda p: p.stat().st_mtime)
    restore(Settings(data_dir=data), newest)
    assert _counts(db) == live_counts
