"""Bad input, table-driven: every hostile input in tests/badinputs.py gets a specific message (or a
documented accept) from the pipeline, the CLI (``medrag analyze FILE``, ``medrag ingest``) and the app's
upload path, never a traceback, and nothing already stored changes (every table fingerprinted before
and after)."""

from __future__ import annotations

import contextlib
import io
import os
import re
import subprocess
import sys
import unicodedata
from collections.abc import Iterator
from pathlib import Path

import pytest

import badinputs
from badinputs import CSV_CASES, HOSTILE_NAMES, IMAGE_CASES, QUERY_CASES, BadCsv, BadInput
from leakscan import cases_digest, rows_digest, table_digests
from medrag import errors as E
from medrag.analysis import Analysis
from medrag.config import Settings
from medrag.events import StageFailed
from medrag.library import IMAGE_SUFFIXES
from medrag.pipeline import MAX_QUESTION_CHARS, run_analysis
from pgsuite import store_env

REPO = Path(__file__).resolve().parents[1]
REJECTS = [c for c in IMAGE_CASES if c.error is not None]
ACCEPTS = [c for c in IMAGE_CASES if c.error is None]
#: Accepted by the decoder, then refused by the image guard (not a radiograph).
GUARD_REFUSED = {"RGB photo", "all-black image", "all-white image"}
_TERMINAL_HOSTILE = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f\u200e\u200f\u202a-\u202e\u2066-\u2069]")


def _ids(cases: list[BadInput] | tuple[BadInput, ...]) -> list[str]:
    return [c.kind.replace(" ", "-") for c in cases]


# ----------------------------------------------------------------------------- fixtures and helpers


@pytest.fixture(scope="module")
def lib(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    """A 24-case phantom library with one analysis already in its history."""
    from medrag.workbench import Workbench

    settings = Settings(data_dir=tmp_path_factory.mktemp("badinput"), demo_cases=24, web_provider="off")
    wb = Workbench(settings)
    wb.ensure_library()
    wb.ensure_index("text")
    first = wb.store.cases_frame(limit=1).iloc[0]["image_path"]
    assert run_analysis(wb, Path(first), web=False).analysis_id
    return wb


@contextlib.contextmanager
def stored_unchanged(wb, *, new_analyses: int = 0) -> Iterator[None]:  # type: ignore[no-untyped-def]
    """Every table is byte-for-byte the same afterwards, except ``new_analyses`` appended history rows."""
    before = table_digests(wb.store)
    max_id = wb.store.count_analyses() and int(wb.store.history_frame(limit=1)["id"].iloc[0])
    old_rows = rows_digest(wb.store, "SELECT * FROM analyses WHERE id <= ?", [max_id])
    yield
    after = table_digests(wb.store)
    changed = sorted(t for t in before if t != "analyses" and before[t] != after.get(t))
    assert changed == [], f"stored tables changed: {changed}"
    assert after["analyses"][0] == before["analyses"][0] + new_analyses
    assert rows_digest(wb.store, "SELECT * FROM analyses WHERE id <= ?", [max_id]) == old_rows, (
        "old history rows changed"
    )


def cli(*argv: str) -> tuple[int, str, str]:
    """``medrag.cli.main(argv)`` in-process: (exit code, stdout, stderr). Any exception fails the test."""
    from medrag.cli import main

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(list(argv))
    return code, out.getvalue(), err.getvalue()


def _is_error(name: str, expected: type[E.MedRAGError]) -> bool:
    found = getattr(E, name, None)
    return isinstance(found, type) and issubclass(found, expected)


def _write(tmp_path: Path, case: BadInput) -> Path:
    path = tmp_path / case.filename
    path.write_bytes(case.make())
    return path


# ----------------------------------------------------------------------------- images: pipeline


@pytest.mark.parametrize("case", REJECTS, ids=_ids(REJECTS))
def test_pipeline_rejects_image(lib, case: BadInput) -> None:  # type: ignore[no-untyped-def]
    with stored_unchanged(lib):
        events = list(lib.analyze(case.make(), name=case.filename, web=False))
    failed = [e for e in events if isinstance(e, StageFailed)]
    assert [f.stage for f in failed] == ["input"], failed
    assert _is_error(failed[0].error_type, case.error), f"{failed[0].error_type} is not a {case.error.__name__}"
    assert case.fragment.lower() in failed[0].message.lower(), failed[0].message
    result = Analysis.fold(events)
    assert "Traceback" not in failed[0].message and result.finished and not result.ok


@pytest.mark.parametrize("case", ACCEPTS, ids=_ids(ACCEPTS))
def test_pipeline_accepts_image(lib, case: BadInput) -> None:  # type: ignore[no-untyped-def]
    refused = case.kind in GUARD_REFUSED
    with stored_unchanged(lib, new_analyses=0 if refused else 1):
        result = run_analysis(lib, case.make(), name=case.filename, web=False)
    assert result.failures == {}, result.failures
    warnings = " ".join(result.meta["warnings"]).lower()
    assert case.fragment.lower() in warnings, warnings
    if case.kind == "EXIF-rotated JPEG":
        assert result.meta.get("orientation_corrected") and result.meta["height"] == 128
    assert result.verdict is not None
    if refused:
        assert not result.verdict.allowed and result.verdict.reason and result.refused
    else:
        assert result.verdict.allowed, result.verdict.reason
        row = lib.store.get_analysis(result.analysis_id)
        assert row is not None and row.reasoning.strip() and row.neighbours


# ----------------------------------------------------------------------------- images: CLI analyze


@pytest.mark.slow
@pytest.mark.parametrize("case", IMAGE_CASES, ids=_ids(IMAGE_CASES))
def test_cli_analyze_image(lib, case: BadInput, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    path = _write(tmp_path, case)
    refused = case.kind in GUARD_REFUSED
    saved = case.error is None and not refused
    with stored_unchanged(lib, new_analyses=1 if saved else 0):
        code, out, err = cli("--data-dir", str(lib.settings.data_dir), "analyze", str(path), "--no-web")
    assert "Traceback" not in out + err
    if case.error is not None:
        assert code == 2 and "[input failed]" in err and case.fragment.lower() in err.lower(), err
    elif refused:
        assert code == 3 and "Refused:" in out
    else:
        assert code == 0 and "Saved to history" in out, err[-2000:]


@pytest.mark.slow
def test_cli_analyze_subprocess_has_no_traceback(lib, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """The real console script: a decompression bomb and an empty file give one-line errors."""
    for case in (badinputs.IMAGE_CASES[9], badinputs.IMAGE_CASES[0]):
        path = _write(tmp_path, case)
        proc = subprocess.run(
            [
                sys.executable,
                "-m",
                "medrag",
                "--data-dir",
                str(lib.settings.data_dir),
                "analyze",
                str(path),
                "--no-web",
            ],
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=180,
            env={**os.environ, "HF_HUB_OFFLINE": "1", **store_env(lib.settings.data_dir)},
        )
        assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr[-2000:]
        assert case.fragment in proc.stderr.lower()


# ----------------------------------------------------------------------------- images: CLI ingest


@pytest.fixture(scope="module")
def ingest_lib(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    """A small library of its own (imports change it; each test checks its own delta)."""
    from medrag.workbench import Workbench

    settings = Settings(data_dir=tmp_path_factory.mktemp("ingest-data"), demo_cases=12, web_provider="off")
    wb = Workbench(settings)
    wb.ensure_library()
    return wb


def _old_cases_unchanged(wb) -> tuple[set[str], str]:  # type: ignore[no-untyped-def]
    ids = set(wb.store.case_ids_where())
    return ids, cases_digest(wb.store, sorted(ids))


def test_cli_ingest_folder_of_bad_images(ingest_lib, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    from medrag.cli.library import MAX_LISTED

    wb = ingest_lib
    ids, digest = _old_cases_unchanged(wb)
    analyses = table_digests(wb.store)["analyses"]
    # A folder scan reads image suffixes only (.gif is not one): other files are passed over silently.
    scanned = [c for c in REJECTS if Path(c.filename).suffix in IMAGE_SUFFIXES]
    assert len(scanned) == len(REJECTS) - 1
    # The CLI lists at most MAX_LISTED skipped files: one folder per batch of rejects, so every line is seen.
    batches = [scanned[i : i + MAX_LISTED] for i in range(0, len(scanned), MAX_LISTED)]
    for number, batch in enumerate(batches):
        folder = tmp_path / f"bad{number}" / "normal"
        folder.mkdir(parents=True)
        for case in batch + ([c for c in IMAGE_CASES if c not in scanned] if number == 0 else []):
            _write(folder, case)
        code, out, err = cli("--data-dir", str(wb.settings.data_dir), "ingest", str(folder.parent))
        # Exit 1 when nothing at all could be imported (a batch of rejects only).
        assert "Traceback" not in out + err and code == (0 if number == 0 else 1), err[-2000:]
        skipped = {line for line in out.splitlines() if line.startswith("  skipped ")}
        for case in batch:
            line = next((s for s in skipped if f"/{case.filename}:" in s), None)
            assert line is not None, f"{case.filename} not reported as skipped"
            assert case.fragment.lower() in line.lower(), line
        assert len(skipped) == len(batch)
    added = set(wb.store.case_ids_where()) - ids
    assert 1 <= len(added) <= len(ACCEPTS), "accepted images are imported (identical pixels once)"
    assert cases_digest(wb.store, sorted(ids)) == digest
    assert table_digests(wb.store)["analyses"] == analyses
    # Accepted-with-warning images keep their warning with the case.
    extras = " ".join(wb.store.cases_frame()["extra"])
    assert "blank image" in extras and "non-finite" in extras


@pytest.mark.slow
def test_cli_ingest_subprocess_has_no_traceback(tmp_path: Path) -> None:
    folder = tmp_path / "bad" / "normal"
    folder.mkdir(parents=True)
    scanned = [c for c in REJECTS if Path(c.filename).suffix in IMAGE_SUFFIXES]
    for case in scanned:
        _write(folder, case)
    proc = subprocess.run(
        [sys.executable, "-m", "medrag", "--data-dir", str(tmp_path / "data"), "ingest", str(folder.parent)],
        cwd=REPO, capture_output=True, text=True, timeout=180,
        env={**os.environ, "HF_HUB_OFFLINE": "1", **store_env(tmp_path / "data")},
    )
    assert "Traceback" not in proc.stderr + proc.stdout
    assert proc.returncode == 1, "nothing could be imported: exit 1"
    assert f"{len(scanned)} skipped with errors" in proc.stdout


def test_cli_ingest_missing_and_wrong_paths(ingest_lib, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    wb = ingest_lib
    with stored_unchanged(wb):
        for target, fragment in (
            (tmp_path / "nowhere", "does not exist"),
            (_write(tmp_path, IMAGE_CASES[1]), "not a folder"),
        ):
            code, out, err = cli("--data-dir", str(wb.settings.data_dir), "ingest", str(target))
            assert code == 2 and err.startswith("error: ") and fragment in err and "Traceback" not in err, err


# ----------------------------------------------------------------------------- labels CSV and parquet


@pytest.mark.parametrize("case", CSV_CASES, ids=[c.kind.replace(" ", "-") for c in CSV_CASES])
def test_cli_ingest_labels_csv(ingest_lib, case: BadCsv, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    wb = ingest_lib
    folder = tmp_path / "lib"
    folder.mkdir()
    seed = 300 + CSV_CASES.index(case) * 2
    (folder / "a.png").write_bytes(badinputs.png_bytes(96, seed))
    (folder / "b.png").write_bytes(badinputs.png_bytes(96, seed + 1))
    csv_path = tmp_path / "labels.csv"
    csv_path.write_bytes(case.content)
    before = wb.store.count_cases()
    ids, digest = _old_cases_unchanged(wb)
    code, out, err = cli("--data-dir", str(wb.settings.data_dir), "ingest", str(folder), "--labels", str(csv_path))
    assert "Traceback" not in out + err
    if case.error:
        assert code == 2 and err.startswith("error: ") and case.error in err.lower(), err
    else:
        assert code == 0, err
        for fragment in case.row_errors:
            assert any(fragment in line for line in out.splitlines() if "skipped" in line), out
        for fragment in case.notes:
            assert any(fragment in line for line in out.splitlines() if "note:" in line), out
        labels = wb.store.label_counts()
        assert all(label in labels for label in case.labels), labels
    assert wb.store.count_cases() == before + case.added
    assert cases_digest(wb.store, sorted(ids)) == digest


def test_cli_ingest_parquet_with_corrupt_cells(ingest_lib, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    wb = ingest_lib
    good = tmp_path / "cells.parquet"
    good.write_bytes(badinputs.parquet_corrupt_cell())
    bad = tmp_path / "fake.parquet"
    bad.write_bytes(badinputs.not_parquet())
    before = wb.store.count_cases()
    code, out, err = cli("--data-dir", str(wb.settings.data_dir), "ingest", str(good))
    assert code == 0 and "Traceback" not in out + err
    skipped = [line for line in out.splitlines() if line.startswith("  skipped ")]
    assert len(skipped) == 2 and any("no bytes" in s for s in skipped) and any("png" in s.lower() for s in skipped), out
    assert wb.store.count_cases() == before + 1
    with stored_unchanged(wb):
        code, out, err = cli("--data-dir", str(wb.settings.data_dir), "ingest", str(bad))
    assert code == 2 and "not a readable parquet" in err and "Traceback" not in err


# ----------------------------------------------------------------------------- queries and names


@pytest.mark.parametrize(("kind", "value"), QUERY_CASES, ids=[k.replace(" ", "-") for k, _ in QUERY_CASES])
def test_queries(lib, kind: str, value: str) -> None:  # type: ignore[no-untyped-def]
    question = badinputs.query_text(value)
    empty = not question.strip()
    with stored_unchanged(lib, new_analyses=0 if empty else 1):
        result = run_analysis(lib, None, question=question, web=False)
    if empty:
        assert list(result.failures) == ["input"] and "Nothing to analyse" in result.failures["input"]
        return
    assert result.verdict is not None and result.verdict.allowed, result.verdict
    row = lib.store.get_analysis(result.analysis_id)
    assert row is not None and len(row.question) <= MAX_QUESTION_CHARS and row.reasoning.strip()
    assert row.failures == {}, row.failures  # a cut question is a note, not a failed stage
    if kind == "1 MB query":
        assert any(f"first {MAX_QUESTION_CHARS:,} of" in note for note in row.notes), row.notes


@pytest.mark.slow
@pytest.mark.parametrize(("kind", "value"), QUERY_CASES, ids=[k.replace(" ", "-") for k, _ in QUERY_CASES])
def test_cli_queries(lib, kind: str, value: str) -> None:  # type: ignore[no-untyped-def]
    question = badinputs.query_text(value)
    code, out, err = cli("--data-dir", str(lib.settings.data_dir), "analyze", "--text", question, "--no-web")
    assert "Traceback" not in out + err
    if not question.strip():
        assert code == 2 and "Nothing to analyse" in err
    else:
        assert code == 0, err[-1000:]
        assert len(out) < 200_000, "a 1 MB question is not echoed back in full"
    hostile = sorted({f"U+{ord(ch):04X}" for ch in _TERMINAL_HOSTILE.findall(out + err)})
    assert hostile == [], f"terminal control / bidi characters from the input reach the terminal: {hostile}"


@pytest.mark.parametrize("name", HOSTILE_NAMES, ids=["ansi-escape", "rtl-override", "bidi-isolates"])
def test_hostile_file_names(lib, name: str, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    path = tmp_path / name
    path.write_bytes(badinputs.png_bytes(128, 77))
    result = run_analysis(lib, path, web=False)
    assert result.analysis_id, result.failures
    saved = lib.store.get_analysis(result.analysis_id)
    assert saved is not None
    stored = saved.input_name
    assert stored and not _TERMINAL_HOSTILE.search(stored) and all(unicodedata.category(c)[0] != "C" for c in stored)
    code, out, err = cli("--data-dir", str(lib.settings.data_dir), "analyze", str(path), "--no-web")
    assert code == 0 and "Traceback" not in err
    assert not _TERMINAL_HOSTILE.search(out + err), "the file name's escapes reach the terminal"


def test_cli_history_does_not_replay_terminal_escapes(lib) -> None:  # type: ignore[no-untyped-def]
    """Questions and names stored by the tests above are listed without their control characters."""
    code, out, err = cli("--data-dir", str(lib.settings.data_dir), "history", "--limit", "200")
    assert code == 0 and "Traceback" not in err
    hostile = sorted({f"U+{ord(ch):04X}" for ch in _TERMINAL_HOSTILE.findall(out)})
    assert hostile == [], f"`medrag history` prints raw control / bidi characters: {hostile}"


# ----------------------------------------------------------------------------- the app's upload path


_APP_NAME = {".gif": ".png", ".tif": ".png"}  # the uploader only offers png/jpg/jpeg/dcm/dicom: rename


@pytest.mark.slow
def test_app_upload_path(lib, monkeypatch: pytest.MonkeyPatch) -> None:  # type: ignore[no-untyped-def]
    """Each input uploaded on the Analyze page: rejects show their message, accepts analyse, no exception."""
    from streamlit.testing.v1 import AppTest

    monkeypatch.setenv("MEDRAG_DATA_DIR", str(lib.settings.data_dir))
    monkeypatch.setenv("MEDRAG_WEB", "off")
    at = AppTest.from_file(str(REPO / "streamlit_app.py"), default_timeout=180)
    at.run()
    at.switch_page("pages/1_Analyze.py").run()
    assert not at.exception, [e.value for e in at.exception]
    for case in IMAGE_CASES:
        stem, suffix = os.path.splitext(case.filename)
        name = stem + _APP_NAME.get(suffix, suffix)
        refused = case.kind in GUARD_REFUSED
        saved = case.error is None and not refused
        with stored_unchanged(lib, new_analyses=1 if saved else 0):
            at.file_uploader(key="analyze_upload").set_value((name, case.make(), "application/octet-stream")).run()
            assert not at.exception, (case.kind, [e.value for e in at.exception])
            errors = " ".join(e.value for e in at.error)
            if case.error is not None:
                assert case.fragment.lower() in errors.lower(), (case.kind, errors)
                assert at.button(key="analyze_run").disabled
            else:
                assert errors == "", (case.kind, errors)
                at.button(key="analyze_run").click().run()
                assert not at.exception, (case.kind, [e.value for e in at.exception])
                shown = " ".join(str(getattr(el, "value", "")) for el in [*at.error, *at.warning, *at.info])
                if refused:
                    assert "chest" in shown.lower(), (case.kind, shown)
        texts = " ".join(str(getattr(el, "value", "")) for el in [*at.markdown, *at.error, *at.text])
        assert "Traceback" not in texts
