"""Importing from the browser: a zip or several images (plus an optional labels CSV), with progress.

The uploads are written to a new folder under ``<data folder>/imports/`` (the library keeps pointing at
the files, so they must stay) and that folder is imported like any other. A zip is unpacked with limits
and safe names (:mod:`medrag.teaching.ziputil`). A labels CSV uploaded beside loose images may name them
with the folders they had on the educator's machine (``images/normal/a.png``): a name that is not found
is matched by its file name instead.
"""

from __future__ import annotations

import csv
import io
import secrets
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

import streamlit as st

from medrag.errors import InputError, MedRAGError
from medrag.fsutil import atomic_write, atomic_write_text
from medrag.ingest_sources import MAX_CSV_FIELD_CHARS
from medrag.teaching.ziputil import extract_zip, safe_name
from medrag.ui.safe import escape_markdown

if TYPE_CHECKING:
    from medrag.workbench import Workbench

#: File endings the library imports (plus the labels CSV).
IMAGE_SUFFIXES: tuple[str, ...] = (".png", ".jpg", ".jpeg", ".dcm", ".dicom", ".tif", ".tiff", ".bmp")
UPLOAD_TYPES = [s.lstrip(".") for s in IMAGE_SUFFIXES] + ["zip", "csv"]
#: The image-path columns a labels CSV may use (as the library importer reads them).
_IMAGE_COLUMNS = ("image", "path", "file", "filename", "image_path")


@dataclass
class StagedUpload:
    """The folder the uploads were written to, ready to import, and what was left out."""

    folder: Path
    images: int = 0
    labels_csv: Path | None = None
    skipped: list[tuple[str, str]] = field(default_factory=list)


def new_import_folder(data_dir: Path) -> Path:
    """A new, empty ``<data folder>/imports/upload-<UTC time>-<random>`` folder."""
    stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
    folder = Path(data_dir) / "imports" / f"upload-{stamp}-{secrets.token_hex(3)}"
    folder.mkdir(parents=True, exist_ok=False)
    return folder


def _rewrite_csv(data: bytes, folder: Path, by_name: dict[str, str]) -> str:
    """The CSV with each image path that is not under ``folder`` replaced by the staged file of that name."""
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise InputError("The labels CSV is not UTF-8 text; save it as UTF-8 CSV and upload it again.") from None
    reader = csv.DictReader(io.StringIO(text), strict=True)
    # The importer's own limit on a field (a long report), not the csv module's 131,072 characters.
    previous_limit = csv.field_size_limit(MAX_CSV_FIELD_CHARS)
    try:
        fields = list(reader.fieldnames or [])
        column = next((f for f in fields if f.strip().lower() in _IMAGE_COLUMNS), None)
        if column is None:
            return text  # the importer says what is missing
        out = io.StringIO()
        writer = csv.DictWriter(out, fieldnames=fields, lineterminator="\n")
        writer.writeheader()
        for row in reader:
            given = (row.get(column) or "").strip()
            safe = safe_name(given)
            if (safe is None or not folder.joinpath(*safe.parts).is_file()) and Path(
                given.replace("\\", "/")
            ).name in by_name:
                row[column] = by_name[Path(given.replace("\\", "/")).name]
            writer.writerow(row)
    except csv.Error as exc:
        raise InputError(
            f"The labels CSV cannot be read near line {reader.line_num}: {exc}. Fix that row (a quote left open, "
            f"or a field over {MAX_CSV_FIELD_CHARS:,} characters) and upload it again."
        ) from None
    finally:
        csv.field_size_limit(previous_limit)
    return out.getvalue()


def stage_uploads(
    files: Sequence[tuple[str, bytes]],
    labels: tuple[str, bytes] | None,
    data_dir: Path,
    on_file: Callable[[int, int], None] | None = None,
) -> StagedUpload:
    """Write uploaded images and zips (unpacked) to a new import folder; place the labels CSV beside them."""
    folder = new_import_folder(data_dir)
    staged = StagedUpload(folder)
    csv_in_zip: list[Path] = []
    for done, (name, payload) in enumerate(files, start=1):
        base = safe_name(Path(name.replace("\\", "/")).name)
        if base is None:
            staged.skipped.append((name, "unsafe file name"))
        elif base.suffix.lower() == ".zip":
            result = extract_zip(payload, folder / base.stem, (*IMAGE_SUFFIXES, ".csv"))
            staged.skipped += [(f"{name}: {member}", why) for member, why in result.skipped]
            csv_in_zip += [p for p in result.files if p.suffix.lower() == ".csv"]
            staged.images += sum(p.suffix.lower() in IMAGE_SUFFIXES for p in result.files)
        elif base.suffix.lower() in IMAGE_SUFFIXES:
            atomic_write(folder / base.name, payload, durable=False)
            staged.images += 1
        elif base.suffix.lower() == ".csv" and labels is None:
            labels = (name, payload)
        else:
            staged.skipped.append((name, "not an image, a zip or a labels CSV"))
        if on_file is not None:
            on_file(done, len(files))
    if labels is not None:
        by_name = {
            p.name: p.relative_to(folder).as_posix()
            for p in folder.rglob("*")
            if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES
        }
        staged.labels_csv = folder / "labels.csv"
        atomic_write_text(staged.labels_csv, _rewrite_csv(labels[1], folder, by_name), durable=False)
    elif len(csv_in_zip) == 1:
        # A zip made of a labelled folder: import that folder, whose CSV names images relative to it.
        staged.folder, staged.labels_csv = csv_in_zip[0].parent, csv_in_zip[0]
    return staged


def render_upload_import(workbench: Workbench, key: str = "upload_import") -> None:
    """The Library page's browser import: files or a zip, an optional labels CSV, Import with progress."""
    from medrag.ui import data, state

    st.markdown(
        "**Upload from this browser**: a zip of a folder, or several images; add a labels CSV to name "
        "their labels (columns such as `image`, `label`, `report`)."
    )
    files = st.file_uploader("Images or a zip", type=UPLOAD_TYPES, accept_multiple_files=True, key=f"{key}_files")
    labels = st.file_uploader("Labels CSV (optional)", type=["csv"], key=f"{key}_csv")
    if not st.button("Import the uploads", type="primary", key=f"{key}_run", disabled=not files):
        return
    bar = st.progress(0.0, text="Saving the uploads…")

    def on_file(done: int, total: int) -> None:
        bar.progress(0.2 * done / max(total, 1), text=f"Saved {done} / {total} files")

    try:
        staged = stage_uploads(
            [(f.name, f.getvalue()) for f in files or []],
            (labels.name, labels.getvalue()) if labels is not None else None,
            workbench.settings.data_dir,
            on_file=on_file,
        )
        if staged.images == 0:
            raise InputError("No image among the uploads (PNG, JPEG, DICOM or a zip of them); nothing to import.")

        def on_progress(done: int, total: int) -> None:
            bar.progress(0.2 + 0.8 * min(done / max(total, 1), 1.0), text=f"Imported {done:,} / {total:,} images")

        with st.spinner("Importing and indexing…"):
            report = data.import_folder(workbench, staged.folder, labels_csv=staged.labels_csv, on_progress=on_progress)
    except MedRAGError as exc:
        bar.empty()
        st.error(escape_markdown(str(exc)))
        return
    bar.progress(1.0, text="Done")
    st.session_state[state.LIBRARY_FLASH] = {
        "summary": report.summary(),
        "notes": [*report.notes, *(f"left out {name}: {why}" for name, why in staged.skipped[:20])],
        "errors": [(str(a), str(b)) for a, b in report.errors],
    }
    st.rerun()


__all__ = ["IMAGE_SUFFIXES", "StagedUpload", "new_import_folder", "render_upload_import", "stage_uploads"]
