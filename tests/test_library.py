"""Library import: folders, labels CSV (with hostile rows), Open-i XML, parquet; incremental and idempotent."""

from __future__ import annotations

import io
import tarfile
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from PIL import Image

from medrag.config import Settings
from medrag.errors import LibraryError
from medrag.library import ingest_items, ingest_path, iter_folder, read_labels_csv, resolve_inside
from medrag.store import Store
from pgsuite import folder_store


def _png(path: Path, seed: int, size: int = 64) -> Path:
    rng = np.random.default_rng(seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(rng.integers(0, 255, (size, size), dtype=np.uint8)).save(path)
    return path


@pytest.fixture()
def env(tmp_path: Path) -> tuple[Settings, Store]:
    settings = Settings(data_dir=tmp_path / "data", image_encoder="classic")
    return settings, folder_store(settings.data_dir)


def test_folder_ingest_is_incremental_and_dedups_pixels(tmp_path: Path, env) -> None:  # type: ignore[no-untyped-def]
    settings, store = env
    folder = tmp_path / "lib"
    for i in range(4):
        _png(folder / ("normal" if i < 2 else "effusion") / f"{i}.png", seed=i)
    _png(folder / "effusion" / "copy.png", seed=0)  # identical pixels to normal/0.png
    first = ingest_path(folder, settings, store)
    assert (first.seen, first.added, first.duplicates) == (5, 4, 1)
    # Files are visited in sorted order, so effusion/copy.png claims the shared pixels first.
    assert store.label_counts() == {"effusion": 3, "normal": 1}
    thumbs = list(settings.thumbs_dir.rglob("*.jpg"))
    assert len(thumbs) == 4
    again = ingest_path(folder, settings, store)
    assert (again.added, again.unchanged) == (0, 5)
    _png(folder / "normal" / "new.png", seed=99)
    third = ingest_path(folder, settings, store)
    assert (third.added, third.unchanged) == (1, 5)
    assert store.count_cases() == 5


def test_worker_processes_import_exactly_what_the_main_process_imports(tmp_path: Path) -> None:
    """Same cases, thumbnails and vectors whether images are prepared in workers (fork server) or in-process."""
    from medrag.library import IngestReport

    folder = tmp_path / "src"
    for i in range(40):
        _png(folder / ("normal" if i % 2 else "effusion") / f"{i}.png", seed=i, size=96)
    _png(folder / "normal" / "copy.png", seed=0, size=96)  # a duplicate of effusion/0.png
    results = {}
    for workers in (0, 2):
        settings = Settings(data_dir=tmp_path / f"data{workers}", image_encoder="classic")
        store = folder_store(settings.data_dir)
        steps: list[tuple[int, int]] = []
        report = ingest_items(
            iter_folder(folder), settings, store, IngestReport(source=str(folder)), workers=workers,
            on_progress=lambda done, total, seen=steps: seen.append((done, total)),
        )
        assert (report.seen, report.added, report.duplicates, report.errors) == (41, 40, 1, [])
        assert steps and steps[-1] == (41, 41) and [d for d, _ in steps] == sorted(d for d, _ in steps)
        frame = store.cases_frame()
        from medrag.encoders import build_encoder

        ids, vectors = store.load_embeddings("classic", build_encoder("classic", settings).version)
        results[workers] = (
            dict(zip(frame["case_id"], frame["label"], strict=True)),
            sorted(Path(t).name for t in frame["thumb_path"]),
            dict(zip(ids, vectors.tolist(), strict=True)),
        )
        assert all(Path(t).is_file() for t in frame["thumb_path"])
    assert results[0][0] == results[2][0] and results[0][1] == results[2][1]
    assert len(results[0][2]) == 40 and results[0][2].keys() == results[2][2].keys()
    for case_id, vector in results[0][2].items():
        assert np.allclose(vector, results[2][2][case_id], atol=1e-6)


def test_the_worker_module_does_not_import_the_database() -> None:
    """Workers start fast because medrag.ingest_worker pulls in neither DuckDB nor pandas."""
    import subprocess
    import sys

    code = (
        "import sys, medrag.ingest_worker as w; from medrag.config import Settings; "
        "w.init_worker(Settings(), True); "
        "print(sorted(m for m in ('duckdb', 'pandas', 'torch', 'streamlit') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    assert out.stdout.strip() == "[]", out.stdout + out.stderr


def test_labels_csv_hostile_rows_are_reported_not_fatal(tmp_path: Path, env) -> None:  # type: ignore[no-untyped-def]
    settings, store = env
    folder = tmp_path / "lib"
    _png(folder / "a.png", 1)
    _png(folder / "b.png", 2)
    _png(tmp_path / "outside.png", 3)
    csv_text = (
        "\ufeffimage,label,report,patient_id,view,site\n"
        "a.png,normal,Clear lungs.,p1,PA,north\n"
        "a.png,normal,Clear lungs.,p1,PA,north\n"          # duplicate row
        "b.png,alien-label,,p2,AP,\n"                      # unknown labels are accepted as given
        "../outside.png,normal,,p3,PA,\n"                  # escapes the folder
        "/etc/passwd,normal,,p4,PA,\n"                     # absolute path
        "missing.png,normal,,p5,PA,\n"
    )
    (folder / "labels.csv").write_text(csv_text, encoding="utf-8")
    report = ingest_path(folder, settings, store, labels_csv=folder / "labels.csv")
    assert report.added == 2
    messages = " | ".join(m for _, m in report.errors)
    assert "escapes the library folder" in messages and "absolute path" in messages and "not found" in messages
    assert any("duplicate row" in n for n in report.notes)
    frame = store.cases_frame()
    row = frame[frame["label"] == "normal"].iloc[0]
    assert row["patient_id"] == "p1" and row["view"] == "PA" and '"site": "north"' in row["extra"]
    assert "alien-label" in set(frame["label"])


def test_csv_without_image_column_is_refused(tmp_path: Path) -> None:
    bad = tmp_path / "labels.csv"
    bad.write_text("file_name_wrong,label\nx.png,normal\n")
    with pytest.raises(LibraryError, match="no image column"):
        read_labels_csv(bad)


def test_resolve_inside(tmp_path: Path) -> None:
    assert resolve_inside(tmp_path, "a/b.png") == (tmp_path / "a" / "b.png").resolve()
    for hostile in ("../../etc/passwd", "/etc/passwd", "a/../../x.png", "C:\\x.png"):
        with pytest.raises(LibraryError):
            resolve_inside(tmp_path, hostile)


def test_parquet_with_corrupt_cell(tmp_path: Path, env) -> None:  # type: ignore[no-untyped-def]
    settings, store = env
    buffers = []
    for seed in (5, 6):
        buf = io.BytesIO()
        Image.fromarray(np.random.default_rng(seed).integers(0, 255, (64, 64), dtype=np.uint8)).save(buf, format="PNG")
        buffers.append(buf.getvalue())
    table = pa.table(
        {
            "image": [
                {"bytes": buffers[0], "path": None},
                {"bytes": b"garbage", "path": None},
                {"bytes": buffers[1], "path": None},
            ],
            "findings": ["The heart is enlarged.", "x", "Lungs are clear."],
            "impression": ["Cardiomegaly.", "x", "No acute cardiopulmonary abnormality."],
            "reasoning": ["step 1", "x", "step 2"],
        }
    )
    path = tmp_path / "cxr.parquet"
    pq.write_table(table, path)
    report = ingest_path(path, settings, store)
    assert report.added == 2 and len(report.errors) == 1 and report.errors[0][0].endswith("cxr.parquet#1")
    frame = store.cases_frame()
    assert all(Path(p).is_file() for p in frame["image_path"])  # content-addressed copies under data/images
    assert "cardiomegaly" in " ".join(frame["label"]).lower()
    assert "normal" in set(frame["label"])


def test_openi_reports_join_their_images(tmp_path: Path, env) -> None:  # type: ignore[no-untyped-def]
    settings, store = env
    xml = """<?xml version="1.0" encoding="utf-8"?>
<eCitation><uId id="CXR1"/><IUXRId id="1"/><MedlineCitation><Article><Abstract>
<AbstractText Label="FINDINGS">The heart is enlarged. No pleural effusion.</AbstractText>
<AbstractText Label="IMPRESSION">Cardiomegaly.</AbstractText>
</Abstract></Article></MedlineCitation>
<MeSH><major>Cardiomegaly</major></MeSH>
<parentImage id="CXR1_1_IM-0001-3001"><url>/hadoop/storage/radiology/extract/CXR1_1_IM-0001-3001.jpg</url></parentImage>
</eCitation>"""
    reports_dir = tmp_path / "ecgen-radiology"
    reports_dir.mkdir()
    (reports_dir / "1.xml").write_text(xml)
    archive = tmp_path / "reports.tgz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(reports_dir, arcname="ecgen-radiology")
    images = tmp_path / "images"
    _png(images / "CXR1_1_IM-0001-3001.png", 7)
    no_images = ingest_path(archive, settings, store)
    assert no_images.added == 0 and any("--images" in n for n in no_images.notes)
    report = ingest_path(archive, settings, store, images_dir=images)
    assert report.added == 1
    case = store.cases_frame().iloc[0]
    assert case["dataset"] == "openi" and "cardiomegaly" in case["label"] and "enlarged" in case["report"]


def test_an_import_whose_workers_cannot_start_finishes_in_process(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """A machine that refuses new processes (limits, sandboxes) gets a slower import, not a failed one."""
    import logging
    import multiprocessing

    from medrag import library

    class _NoProcesses(type(multiprocessing.get_context("spawn"))):  # type: ignore[misc]
        def Process(self, *args, **kwargs):  # type: ignore[no-untyped-def] # noqa: N802 - multiprocessing's name
            raise OSError(11, "Resource temporarily unavailable")

    monkeypatch.setattr(library, "_worker_context", lambda: _NoProcesses())
    folder = tmp_path / "src"
    for i in range(6):
        _png(folder / "normal" / f"{i}.png", seed=i)
    settings = Settings(data_dir=tmp_path / "data", image_encoder="classic")
    store = folder_store(settings.data_dir)
    with caplog.at_level(logging.WARNING, logger="medrag"):
        report = ingest_items(iter_folder(folder), settings, store, library.IngestReport(source="x"), workers=2)
    assert (report.added, report.errors) == (6, []) and store.count_cases() == 6
    assert any("could not start" in r.getMessage() for r in caplog.records)
