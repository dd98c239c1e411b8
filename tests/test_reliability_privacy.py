"""Privacy: DICOM metadata is de-identified before anything is stored or shown; burned-in annotation
is flagged; uploads are stored content-addressed under the data folder, never at a user-chosen path.

The main test feeds DICOMs full of distinctive PHI through ``medrag ingest`` and ``medrag analyze`` (the
CLI, in-process) and through the pipeline, then searches the DuckDB file (its bytes and every column of
every table via SQL), every file under the data folder and everything printed or yielded: zero hits.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

import badinputs
from leakscan import files_containing, text_column_hits
from medrag import events as ev
from medrag.config import Settings
from pgsuite import folder_store

PHI_VALUES = [*badinputs.PHI.values(), "PrivatePhiTagValue"]


def _needles() -> list[str]:
    """Each PHI value plus the pieces a formatter might produce (name parts, ISO dates)."""
    out = set(PHI_VALUES)
    for value in PHI_VALUES:
        out |= {part for part in value.replace("^", " ").split() if len(part) >= 6 and not part.isdigit()}
    for date in (badinputs.PHI["PatientBirthDate"], badinputs.PHI["StudyDate"]):
        out |= {date, f"{date[:4]}-{date[4:6]}-{date[6:]}", f"{date[6:]}/{date[4:6]}/{date[:4]}"}
    out -= {"General", "Hospital", "description", "Comment"}
    return sorted(out)


@pytest.fixture(scope="module")
def phi_run(tmp_path_factory: pytest.TempPathFactory) -> dict:  # type: ignore[type-arg]
    """Ingest 3 PHI DICOMs (one with burned-in annotation) and analyse 2 more, via the CLI and the pipeline."""
    from medrag.analysis import Analysis
    from medrag.cli import main
    from medrag.workbench import Workbench

    root = tmp_path_factory.mktemp("phi")
    folder = root / "incoming" / "normal"
    folder.mkdir(parents=True)
    for seed in range(3):
        (folder / f"img{seed}.dcm").write_bytes(badinputs.dicom_with_phi(burned_in=seed == 2, seed=seed))
    query = root / "query.dcm"
    query.write_bytes(badinputs.dicom_with_phi(burned_in=True, seed=10))
    data = root / "data"
    import contextlib
    import io

    printed = io.StringIO()
    codes = []
    with contextlib.redirect_stdout(printed), contextlib.redirect_stderr(printed):
        codes.append(main(["--data-dir", str(data), "ingest", str(root / "incoming")]))
        codes.append(main(["--data-dir", str(data), "analyze", str(query), "--no-web"]))
    settings = Settings(data_dir=data, web_provider="off")
    wb = Workbench(settings)
    events = list(wb.analyze(badinputs.dicom_with_phi(burned_in=True, seed=11), name="upload.dcm", web=False))
    result = Analysis.fold(events)
    return {"root": root, "settings": settings, "wb": wb, "printed": printed.getvalue(), "codes": codes,
            "events": events, "result": result}


def test_cli_ingest_and_analyze_of_phi_dicoms_succeed(phi_run: dict) -> None:  # type: ignore[type-arg]
    assert phi_run["codes"] == [0, 0], phi_run["printed"][-3000:]
    assert "Traceback" not in phi_run["printed"]
    wb = phi_run["wb"]
    assert wb.store.count_cases() == 3
    assert phi_run["result"].analysis_id, phi_run["result"].failures
    assert wb.store.count_analyses() == 2


def test_no_phi_in_database_files_or_output(phi_run: dict) -> None:  # type: ignore[type-arg]
    settings: Settings = phi_run["settings"]
    needles = _needles()
    # Sanity: the inputs really carry the PHI (the scan can find it).
    assert files_containing(phi_run["root"] / "incoming", PHI_VALUES), "the PHI is in the source DICOMs"
    assert text_column_hits(folder_store(settings.data_dir), needles) == []
    assert files_containing(settings.data_dir, needles) == {}
    shown = phi_run["printed"] + "\n".join(repr(e) for e in phi_run["events"])
    assert [n for n in needles if n.lower() in shown.lower()] == []


def test_deidentified_tags_are_kept_and_shown(phi_run: dict) -> None:  # type: ignore[type-arg]
    ready = next(e for e in phi_run["events"] if isinstance(e, ev.InputReady))
    tags = ready.meta["dicom"]
    assert tags.get("Modality") == "DX" and tags.get("View") == "PA"
    assert tags.get("Age") == "90+Y", "ages over 89 are capped (HIPAA safe harbour)"
    assert not {"PatientName", "Patient's Name", "PatientID", "InstitutionName"} & set(tags)


def test_burned_in_annotation_is_flagged(phi_run: dict) -> None:  # type: ignore[type-arg]
    wb = phi_run["wb"]
    ready = next(e for e in phi_run["events"] if isinstance(e, ev.InputReady))
    assert ready.meta["burned_in_annotation"] is True
    assert any("burned-in" in w for w in ready.meta["warnings"])
    row = wb.store.get_analysis(phi_run["result"].analysis_id)
    assert row is not None and row.meta["burned_in_annotation"] is True
    frame = wb.store.cases_frame()
    flagged = [extra for extra in frame["extra"] if "burned-in" in extra]
    assert len(flagged) == 1, "the one ingested file with BurnedInAnnotation YES carries the warning"


def test_cli_analyze_warns_about_burned_in_annotation(phi_run: dict) -> None:  # type: ignore[type-arg]
    """The terminal user sees the same warning the app shows."""
    assert "burned-in" in phi_run["printed"].lower(), phi_run["printed"][-2000:]


def test_uploads_are_content_addressed_not_user_paths(phi_run: dict, tmp_path: Path) -> None:  # type: ignore[type-arg]
    from medrag.pipeline import run_analysis

    wb = phi_run["wb"]
    settings: Settings = phi_run["settings"]
    hostile = str(tmp_path / "escape" / ".." / "chosen-by-user.png")
    result = run_analysis(wb, badinputs.png_bytes(96, 5), name=hostile, web=False)
    row = wb.store.get_analysis(result.analysis_id)
    assert row is not None
    upload = Path(row.upload_path)
    assert upload.is_file() and upload.is_relative_to(settings.uploads_dir)
    assert upload.stem == result.image_hash and upload.parent.name == upload.stem[:2]
    assert not (tmp_path / "chosen-by-user.png").exists() and not (tmp_path / "escape").exists()
    assert all(p.is_relative_to(settings.data_dir) for p in (Path(row.thumb_path), upload))
    # The stored analysis points only inside the data folder.
    for value in (row.thumb_path, row.upload_path):
        assert Path(value).resolve().is_relative_to(settings.data_dir)


def test_deid_scrub_dataset_removes_basic_profile_attributes() -> None:
    """medrag.deid.scrub_dataset (for exports): PHI attributes gone or blank, private tags dropped."""
    import io

    import pydicom

    from medrag.deid import scrub_dataset

    ds = pydicom.dcmread(io.BytesIO(badinputs.dicom_with_phi()))
    clean = scrub_dataset(ds)
    buf = io.BytesIO()
    clean.save_as(buf, enforce_file_format=True)
    payload = buf.getvalue()
    assert [v for v in PHI_VALUES if v.encode() in payload] == []
    assert clean.PatientIdentityRemoved == "YES" and "PatientName" in clean and str(clean.PatientName) == ""
    assert clean.SOPInstanceUID != ds.SOPInstanceUID
    assert dataclasses.is_dataclass(ev.InputReady)
