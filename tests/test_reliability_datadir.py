"""The data folder as one thing (issue 12, items 4-8): it moves, it vanishes, it is damaged, its disk fills up,
its thumbnails are deleted, and MedRAG says so in words, loses nothing it can keep, and rebuilds what it can.

Every library here is the synthetic demo (``Workbench.build_demo(n=30)``).
"""

from __future__ import annotations

import errno
import hashlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

import duckdb
import pytest

from medrag.analysis import Analysis
from medrag.cli import main
from medrag.config import Settings
from medrag.errors import StoreDamagedError, StoreMovedError
from medrag.store import Store
from medrag.store.connection import forget_file
from medrag.workbench import Workbench

pytestmark = pytest.mark.duckdb_only(
    "each test works on a copy of a data folder, which carries its DuckDB file (moved, deleted, damaged, "
    "repaired); a PostgreSQL database does not travel with the folder"
)
REPO = Path(__file__).resolve().parents[1]
N = 30


def _settings(data_dir: Path) -> Settings:
    return Settings(data_dir=data_dir, web_provider="off")


def _build(data_dir: Path) -> Workbench:
    wb = Workbench(_settings(data_dir))
    wb.build_demo(n=N, seed=0)
    return wb


@pytest.fixture(scope="module")
def pristine(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 30-case demo data folder built once; tests work on copies of it."""
    folder = tmp_path_factory.mktemp("pristine") / "data"
    _build(folder)
    forget_file(folder / "medrag.duckdb")
    return folder


@pytest.fixture()
def data(pristine: Path, tmp_path: Path) -> Path:
    """A private copy of the pristine data folder (paths inside are relative, so a copy is complete)."""
    target = tmp_path / "data"
    shutil.copytree(pristine, target)
    return target


def _cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    capsys.readouterr()
    code = main(list(args))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def _files(store: Store) -> list[tuple[str, str, str]]:
    return store.case_files()


# --------------------------------------------------------------------------- item 4: the folder moves as one
def test_moved_data_folder_resolves_every_path_and_rebuilds_every_vector(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    old, new = tmp_path / "data", tmp_path / "elsewhere" / "renamed"
    wb = _build(old)
    wb.save_analysis(Analysis(input_kind="image", thumb_path=_files(wb.store)[0][2]))
    forget_file(old / "medrag.duckdb")
    new.parent.mkdir()
    subprocess.run(["mv", str(old), str(new)], check=True)
    assert not old.exists()
    store = Store(new / "medrag.duckdb")
    files = _files(store)
    assert len(files) == N
    assert sum(Path(image).is_file() for _, image, _ in files) == N  # demo images
    assert sum(Path(thumb).is_file() for _, _, thumb in files) == N  # thumbnails
    assert all(Path(p).is_relative_to(new) for _, image, thumb in files for p in (image, thumb))
    saved = store.get_analysis(1)
    assert saved is not None and Path(saved.thumb_path).is_file() and Path(saved.thumb_path).is_relative_to(new)
    forget_file(new / "medrag.duckdb")
    code, out, err = _cli(capsys, "--data-dir", str(new), "index", "--rebuild", "--kind", "image")
    assert code == 0, err
    assert f"image index: {N} vectors" in out
    assert "could not be read" not in err
    assert not old.exists()


def test_an_older_database_with_absolute_paths_is_migrated_after_its_folder_moved(data: Path, tmp_path: Path) -> None:
    """Schema 1 stored absolute paths: the migration makes those of the (old) data folder relative."""
    old_root = "/somewhere/that/was/data"
    store = Store(data / "medrag.duckdb")
    store.save_analysis(Analysis(input_kind="image", thumb_path=_files(store)[0][2], upload_path=""))
    with store.transaction() as cur:  # what a schema-1 file written at old_root holds
        for table, columns in (("cases", ("image_path", "thumb_path")), ("analyses", ("thumb_path",))):
            for column in columns:
                cur.execute(f"UPDATE {table} SET {column} = ? || '/' || {column} WHERE {column} <> ''", [old_root])
        cur.execute("UPDATE meta SET value = '1' WHERE key = 'schema_version'")
    forget_file(data / "medrag.duckdb")
    moved = tmp_path / "moved-and-renamed"
    os.rename(data, moved)
    store = Store(moved / "medrag.duckdb")
    with store.cursor() as cur:
        assert cur.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone() == ("2",)
        stored = cur.execute("SELECT image_path, thumb_path FROM cases").fetchall()
    assert not any(p.startswith("/") for row in stored for p in row)  # now relative
    files = _files(store)
    assert sum(Path(i).is_file() and Path(t).is_file() for _, i, t in files) == N
    saved = store.get_analysis(1)
    assert saved is not None and Path(saved.thumb_path).is_file()


def test_a_missing_source_image_is_reported_never_silently_dropped(
    data: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    files = _files(Store(data / "medrag.duckdb"))
    forget_file(data / "medrag.duckdb")
    thumb_only, gone = files[:3], files[3:5]
    for _, image, _ in thumb_only:
        Path(image).unlink()  # the thumbnail is still there
    for _, image, thumb in gone:
        Path(image).unlink()
        Path(thumb).unlink()
    code, out, err = _cli(capsys, "--data-dir", str(data), "index", "--rebuild", "--kind", "image")
    assert code == 1  # some cases are not in the index
    assert f"image index: {N - len(gone)} vectors" in out
    assert f"{len(gone)} cases could not be read" in err and "are not in the image index" in err
    assert f"{len(thumb_only)} cases could not be read" in err and "embedded from their thumbnail" in err
    for case_id, _, _ in gone + thumb_only:
        assert case_id[:12] in err
    assert "2 cases have lost their thumbnail and their image cannot be read" in out


# --------------------------------------------------------------------------- item 5: moved while running
def test_a_folder_moved_while_running_gives_a_clear_error_and_is_not_recreated(data: Path, tmp_path: Path) -> None:
    wb = Workbench(_settings(data))
    first = list(wb.analyze(None, question="Is there cardiomegaly?", web=False))
    assert any(type(e).__name__ == "AnalysisSaved" for e in first)
    moved = tmp_path / "moved"
    os.rename(data, moved)
    image = next((moved / "demo" / "images").rglob("*.png"))  # an image analysis writes an upload and a thumbnail
    with pytest.raises(StoreMovedError, match="moved or deleted while MedRAG was running") as caught:
        list(wb.analyze(image, web=False))
    assert "--data-dir" in str(caught.value)
    with pytest.raises(StoreMovedError):
        wb.store.count_analyses()  # never DuckDB's "Table with name … does not exist" from an empty new file
    with pytest.raises(StoreMovedError):
        wb.ingest(moved / "demo")
    with pytest.raises(StoreMovedError):
        Workbench(_settings(data))  # a new workbench in this process does not make an empty folder either
    assert not data.exists()
    forget_file(moved / "medrag.duckdb")
    assert Store(moved / "medrag.duckdb").count_analyses() == 1


def test_a_database_deleted_while_running_is_not_recreated_empty(data: Path) -> None:
    store = Store(data / "medrag.duckdb")
    assert store.count_cases() == N
    (data / "medrag.duckdb").unlink()
    with pytest.raises(StoreMovedError, match="is gone"):
        store.count_cases()
    assert not (data / "medrag.duckdb").exists()


# --------------------------------------------------------------------------- item 6: a damaged database
def _assert_damaged_message(text: str) -> None:
    assert "is damaged" in text and "medrag restore" in text and "medrag repair" in text, text
    assert "Traceback" not in text


def test_a_truncated_database_is_detected_at_open_and_repair_salvages_it(
    data: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    db = data / "medrag.duckdb"
    os.truncate(db, 1 << 20)
    with pytest.raises(StoreDamagedError, match="cut short"):
        Store(db)
    for command in (["history"], ["index"], ["ingest", str(data / "demo")]):
        code, out, err = _cli(capsys, "--data-dir", str(data), *command)
        assert code != 0, command
        _assert_damaged_message(err)
    # analyze in its own process: exit status and stderr exactly as a script sees them
    run = subprocess.run(
        [sys.executable, "-m", "medrag", "--data-dir", str(data), "analyze", "--text", "cardiomegaly?", "--no-web"],
        cwd=REPO, capture_output=True, text=True, timeout=300, env={**os.environ, "HF_HUB_OFFLINE": "1"},
    )
    assert run.returncode != 0
    _assert_damaged_message(run.stderr)
    assert os.path.getsize(db) == 1 << 20  # nothing was written into the damaged file
    code, out, err = _cli(capsys, "--data-dir", str(data), "repair")
    assert code in (0, 1), err
    assert "kept as" in out and list(data.glob("medrag.duckdb.damaged-*"))
    with capsys.disabled():
        print(f"\ntruncated to 1 MB, repair said:\n{out}")
    # What repair could not keep comes back from the images: every case is in the library again.
    code, out, err = _cli(capsys, "--data-dir", str(data), "ingest", str(data / "demo"))
    assert code == 0, err
    assert Store(db).count_cases() == N


def _damage_a_block_of(db: Path, table: str, column: str, *, middle: bool = True) -> None:
    """Zero the whole 256 KiB block that holds a middle (or the first) segment of ``table.column``."""
    con = duckdb.connect(str(db), read_only=True)
    blocks = sorted({r[0] for r in con.execute(
        "SELECT block_id FROM pragma_storage_info(?) WHERE column_name = ? AND block_id >= 0", [table, column]
    ).fetchall()})
    (block_size,) = con.execute("SELECT block_size FROM pragma_database_size()").fetchone()  # type: ignore[misc]
    con.close()
    assert len(blocks) >= (3 if middle else 1), blocks
    with open(db, "r+b") as handle:
        handle.seek(3 * 4096 + blocks[len(blocks) // 2 if middle else 0] * block_size)
        handle.write(bytes(block_size))


HISTORY = 20_000


def test_zeroed_blocks_are_told_once_and_repair_keeps_every_readable_row(
    data: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    db = data / "medrag.duckdb"
    store = Store(db)
    with store.transaction() as cur:  # a long history: 20,000 analyses of ~2 KB each, over many blocks
        cur.execute(
            "INSERT INTO analyses (created_at, input_kind, question, label, reasoning) "
            "SELECT now(), 'text', 'q' || range, 'normal', repeat(md5(range::VARCHAR), 64) FROM range(?)", [HISTORY]
        )
    forget_file(db)
    duckdb.connect(str(db)).execute("CHECKPOINT").close()
    _damage_a_block_of(db, "analyses", "reasoning")
    store = Store(db)  # the damage is in a data block: opening works
    assert store.count_cases() == N
    with pytest.raises(StoreDamagedError, match="is damaged"):
        store.history_frame()
    with pytest.raises(StoreDamagedError):  # told once: from now on nothing touches the file
        store.save_analysis(Analysis(input_kind="text", question="after the damage"))
    forget_file(db)
    code, out, err = _cli(capsys, "--data-dir", str(data), "history", "--export", str(data.parent / "history.csv"))
    assert code != 0 and not (data.parent / "history.csv").exists()
    _assert_damaged_message(err)
    code, out, err = _cli(capsys, "--data-dir", str(data), "repair")
    assert code == 1, out + err  # some values were lost
    assert f"cases: {N:,} of {N:,} rows kept" in out and f"analyses: {HISTORY:,} of {HISTORY:,} rows kept" in out
    assert "kept without their reasoning" in out
    repaired = Store(db)
    assert repaired.count_cases() == N and repaired.count_analyses() == HISTORY
    with repaired.cursor() as cur:
        intact, blank = cur.execute(
            "SELECT count(*) FILTER (reasoning = repeat(md5((id - 1)::VARCHAR), 64)), count(*) FILTER (reasoning = '') "
            "FROM analyses"
        ).fetchone()  # type: ignore[misc]
        assert cur.execute("SELECT count(*) FROM analyses WHERE label <> 'normal' OR question = ''").fetchone() == (0,)
    assert intact + blank == HISTORY and 0 < blank <= 2 * 2048, (intact, blank)
    new_id = repaired.save_analysis(Analysis(input_kind="text", question="after the repair"))
    assert new_id == HISTORY + 1
    assert len(repaired.history_frame()) == HISTORY + 1
    assert list(data.glob("medrag.duckdb.damaged-*"))
    with capsys.disabled():
        print(f"\nzeroed block: {HISTORY} of {HISTORY} analyses kept, {blank} without reasoning; {N} of {N} cases")


def test_damage_found_during_analyze_fails_its_save_and_exits_non_zero(
    data: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    db = data / "medrag.duckdb"
    _damage_a_block_of(db, "cases", "case_id", middle=False)  # the 30 cases fit one block: the search reads it
    before = hashlib.sha256(db.read_bytes()).hexdigest()
    code, out, err = _cli(capsys, "--data-dir", str(data), "analyze", "--text", "Is the heart enlarged?", "--no-web")
    assert code == 4, out + err  # not saved: a script must not take it for a saved analysis
    assert "[save failed]" in err and "is damaged" in err and "medrag repair" in err
    assert "Saved to history" not in out
    assert hashlib.sha256(db.read_bytes()).hexdigest() == before and not Path(f"{db}.wal").exists()


def test_a_zeroed_database_header_is_detected_and_repaired_from_its_twin(
    data: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    db = data / "medrag.duckdb"
    with open(db, "r+b") as handle:
        handle.seek(4096)
        handle.write(bytes(4096))
    with pytest.raises(StoreDamagedError, match="Corrupt database file"):
        Store(db)
    code, out, err = _cli(capsys, "--data-dir", str(data), "repair")
    assert "header" in out, out
    assert Store(db).count_cases() > 0


# --------------------------------------------------------------------------- item 7: a full disk
def test_a_full_disk_on_rebuild_is_said_in_words_and_loses_nothing(
    data: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    import medrag.store.embeddings as embeddings
    from medrag.index import VectorIndex

    db = data / "medrag.duckdb"
    Store(db).save_analysis(Analysis(input_kind="text", question="kept"))
    forget_file(db)

    def full_wal(*args: object, **kwargs: object) -> None:
        raise duckdb.TransactionException(
            f'TransactionContext Error: Failed to commit: Could not write file "{db}.wal": No space left on device'
        )

    monkeypatch.setattr(embeddings, "insert_embeddings", full_wal)
    code, out, err = _cli(capsys, "--data-dir", str(data), "index", "--rebuild", "--kind", "image")
    assert code == 2 and "disk" in err and "is full" in err and "nothing was lost" in err, err
    monkeypatch.undo()

    def full_index(self: VectorIndex, directory: Path) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(VectorIndex, "save", full_index)
    code, out, err = _cli(capsys, "--data-dir", str(data), "index", "--rebuild", "--kind", "image")
    assert code == 2 and "is full" in err, err
    monkeypatch.undo()
    forget_file(db)
    store = Store(db)
    assert store.count_cases() == N and store.count_analyses() == 1  # data intact
    code, out, err = _cli(capsys, "--data-dir", str(data), "index", "--kind", "image")
    assert code == 0 and f"image index: {N} vectors" in out  # and the index comes back once there is room


# --------------------------------------------------------------------------- item 8: deleted thumbnails
def _thumbs(data: Path) -> int:
    return sum(1 for _ in (data / "thumbs").rglob("*.jpg")) if (data / "thumbs").exists() else 0


def test_deleted_thumbnails_are_regenerated_by_ingest_demo_and_rebuild(
    data: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert _thumbs(data) == N
    shutil.rmtree(data / "thumbs")
    code, out, err = _cli(capsys, "--data-dir", str(data), "ingest", str(data / "demo"))
    assert code == 0, err
    assert f"re-created {N} missing thumbnails" in out and f"{N} unchanged" in out
    assert _thumbs(data) == N
    shutil.rmtree(data / "thumbs")
    code, out, err = _cli(capsys, "--data-dir", str(data), "demo", "--n", str(N))
    assert code == 0 and _thumbs(data) == N, err
    for _, _, thumb in _files(Store(data / "medrag.duckdb"))[:5]:
        Path(thumb).unlink()
    forget_file(data / "medrag.duckdb")
    code, out, err = _cli(capsys, "--data-dir", str(data), "index", "--rebuild", "--kind", "image")
    assert code == 0 and "re-created 5 missing thumbnails" in out, out + err
    assert _thumbs(data) == N
    assert all(Path(t).is_file() for _, _, t in _files(Store(data / "medrag.duckdb")))
