"""Where an import's images come from: a folder, a labels CSV, Open-i reports or a parquet file.

Each source yields :class:`~medrag.ingest_worker.IngestItem` records and notes what it skipped (and why) in the
:class:`IngestReport`; every source applies the same containment rule (:func:`resolve_inside`), so no import
reads a file outside the folder it was given. :mod:`medrag.library` decodes, embeds and stores the items.
"""


from __future__ import annotations

import csv
import io
import json
import math
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath, PureWindowsPath
from typing import TYPE_CHECKING, Any

from medrag.case_truth import fine_label_text, label_from_nih
from medrag.errors import LibraryError
from medrag.imaging.dicom import looks_like_dicom
from medrag.ingest_worker import IngestItem

if TYPE_CHECKING:
    pass

IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".dcm", ".dicom", ".tif", ".tiff", ".bmp"})
_IMAGE_COLUMNS = ("image", "path", "file", "filename", "image_path")
_LABEL_COLUMNS = ("label", "finding", "findings_label", "diagnosis")
_KNOWN_COLUMNS = {"image", "label", "report", "patient_id", "view", "dataset", "synthetic"}
#: Longest cell read from a labels CSV (the csv module's default, 131,072, is short for a long report).
MAX_CSV_FIELD_CHARS = 4 * 2**20
#: Write to the database after this many prepared images, or this many seconds, whichever comes first.

@dataclass
class IngestReport:
    """What an import did."""

    source: str
    seen: int = 0
    added: int = 0
    duplicates: int = 0
    unchanged: int = 0
    embedded: int = 0
    #: cases an earlier import had labelled by their folder's name, now labelled from the CSV
    relabelled: int = 0
    errors: list[tuple[str, str]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    seconds: float = 0.0

    def summary(self) -> str:
        """One line for the terminal or the app."""
        rate = self.seen / self.seconds if self.seconds > 0 else 0.0
        text = (
            f"{self.source}: {self.seen} seen, {self.added} added, {self.duplicates} duplicate pixels, "
            f"{self.unchanged} unchanged, "
            + (f"{self.relabelled} relabelled from the CSV, " if self.relabelled else "")
            + f"{len(self.errors)} skipped with errors "
            f"({self.seconds:.1f} s, {rate:.0f} images/s)"
        )
        return text


# --------------------------------------------------------------------------- sources → items
def _file_item(path: Path, *, resolved: bool = False, **fields: Any) -> IngestItem:
    stat = path.stat()
    key = str(path if resolved else path.resolve())
    return IngestItem(source_key=key, path=path, size=stat.st_size, mtime_ns=stat.st_mtime_ns, **fields)


def iter_folder(folder: Path, report: IngestReport | None = None) -> Iterator[IngestItem]:
    """Every image under ``folder`` (recursively); label = the first sub-folder's name, dataset = folder name.

    A symbolic link that leads out of ``folder`` is not followed (:func:`resolve_inside`): it is listed in
    ``report.errors`` (or just passed over without a report).
    """
    folder = folder.resolve()
    for path in sorted(folder.rglob("*")):
        if path.name.startswith("."):
            continue
        relative = path.relative_to(folder)
        if path.is_symlink():
            try:
                path = resolve_inside(folder, str(relative))
            except LibraryError as exc:
                if report is not None:
                    report.errors.append((str(folder / relative), str(exc)))
                continue
        if not path.is_file():
            continue
        # A file without a suffix is sniffed: DICOM archives often name files by bare UID.
        is_image = relative.suffix.lower() in IMAGE_SUFFIXES or (not relative.suffix and looks_like_dicom(path))
        if not is_image:
            continue
        label = relative.parts[0] if len(relative.parts) > 1 else "unlabelled"
        yield _file_item(path, label=label, dataset=folder.name)


def _pick(row: dict[str, str], names: Sequence[str]) -> str:
    for name in names:
        value = row.get(name)
        if value is not None and str(value).strip():
            return str(value).strip()
    return ""


def resolve_inside(root: Path, relative: str, *, folder_name: str = "library folder") -> Path:
    """``root / relative`` with every link resolved, refusing what would read a file outside ``root``.

    The one containment rule of every importer (folder walk, labels CSV, Open-i image ids): absolute paths
    (POSIX, Windows drive or UNC), ``..`` that climbs out, and symbolic links (of the file or of a folder
    on the way) whose target lies outside are all refused with a :class:`LibraryError`. ``folder_name``
    says what ``root`` is in the message.
    """
    if not relative:
        raise LibraryError("the image cell is empty")
    if (
        PurePosixPath(relative).is_absolute() or Path(relative).is_absolute() or PureWindowsPath(relative).anchor
        or (len(relative) > 1 and relative[1] == ":")
    ):
        raise LibraryError(f"absolute path {relative!r} is not allowed; make it relative to the {folder_name} {root}")
    real_root = root.resolve()
    try:
        candidate = (root / relative).resolve()
    except (RuntimeError, OSError):  # RuntimeError: a symbolic link loop
        raise LibraryError(f"{relative!r} is a symbolic link that never reaches a file (a loop); remove it") from None
    if candidate.is_relative_to(real_root):
        return candidate
    if Path(os.path.normpath(real_root / relative)).is_relative_to(real_root):
        raise LibraryError(
            f"{relative!r} is a symbolic link that leads outside the {folder_name} {root}; links out of it are "
            "not followed: copy the image into the folder instead"
        )
    raise LibraryError(f"path {relative!r} escapes the {folder_name} {root}; keep images inside it")


def read_labels_csv(csv_path: Path) -> list[dict[str, str]]:
    """Rows of a labels CSV (UTF-8, BOM tolerated). Needs an image column; other columns are kept."""
    try:
        text = csv_path.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise LibraryError(f"labels CSV {csv_path} does not exist; check the --labels path.") from None
    except UnicodeDecodeError:
        raise LibraryError(f"labels CSV {csv_path} is not UTF-8 text; save it as UTF-8 CSV.") from None
    # strict: a quote left open is an error (not the rest of the file read as one field).
    reader = csv.DictReader(io.StringIO(text), strict=True)
    rows: list[dict[str, str]] = []
    done_line = 0  # the last line of the last record read: a failing record starts on the next one
    previous_limit = csv.field_size_limit(MAX_CSV_FIELD_CHARS)
    try:
        columns = [c.strip().lower() for c in (reader.fieldnames or [])]
        if not any(name in columns for name in _IMAGE_COLUMNS):
            raise LibraryError(
                f"labels CSV {csv_path} has no image column (found: {', '.join(columns) or 'nothing'}); "
                f"add a column named 'image' with paths relative to the folder."
            )
        done_line = reader.line_num
        for raw in reader:
            rows.append({(k or "").strip().lower(): (v or "").strip() for k, v in raw.items() if k is not None})
            done_line = reader.line_num
    except csv.Error as exc:
        raise _csv_error(csv_path, done_line + 1, exc) from None
    finally:
        csv.field_size_limit(previous_limit)
    return rows


def _csv_error(csv_path: Path, line: int, exc: csv.Error) -> LibraryError:
    """What a malformed labels CSV gets: the file, the line its bad record starts on, and what to do."""
    where = f"labels CSV {csv_path} line {line}"
    reason = str(exc)
    if "field larger than field limit" in reason:
        return LibraryError(
            f"{where}: a cell is longer than {MAX_CSV_FIELD_CHARS:,} characters, the most MedRAG reads in one "
            "cell (a long report fits easily); shorten it, or look on that line for a double quote that is never "
            'closed and so runs the rest of the file into one cell (write a quote inside a cell as "").'
        )
    if "unexpected end of data" in reason:
        return LibraryError(
            f"{where}: a double quote opened there is never closed, so the rest of the file would be read as one "
            'cell; close the quote, or write a quote inside a cell as "" (saving the file again from a '
            "spreadsheet does this)."
        )
    return LibraryError(
        f"{where} is not valid CSV ({reason}); check the quotes on that line (a quote inside a cell is "
        'written "") or save the file again from a spreadsheet as UTF-8 CSV.'
    )


def iter_labelled_folder(folder: Path, csv_path: Path, report: IngestReport) -> Iterator[IngestItem]:
    """Images listed in a labels CSV (paths relative to ``folder``); bad rows are reported, not fatal."""
    folder = folder.resolve()
    seen: set[str] = set()
    for line, row in enumerate(read_labels_csv(csv_path), start=2):
        relative = _pick(row, _IMAGE_COLUMNS)
        where = f"{csv_path.name} line {line}"
        try:
            path = resolve_inside(folder, relative)
        except LibraryError as exc:
            report.errors.append((where, str(exc)))
            continue
        if str(path) in seen:
            report.notes.append(f"{where}: duplicate row for {relative} ignored")
            continue
        seen.add(str(path))
        if not path.is_file():
            report.errors.append((where, f"image {relative} not found under {folder}"))
            continue
        extra = {k: v for k, v in row.items() if k not in _KNOWN_COLUMNS and k not in _IMAGE_COLUMNS and v}
        extra["source_file"] = relative
        parts = Path(relative).parts
        # NIH's own CSV (and nih-train's) has no label column, only its Finding Labels; a folder name
        # ("images/") is no label at all.
        folder_label = parts[0] if len(parts) > 1 else "unlabelled"
        label = _pick(row, _LABEL_COLUMNS) or label_from_nih(fine_label_text(row)) or folder_label
        yield _file_item(
            path,
            resolved=True,
            label=label,
            dataset=row.get("dataset") or folder.name,
            report=row.get("report", ""),
            patient_id=row.get("patient_id", ""),
            view=row.get("view", ""),
            synthetic=row.get("synthetic", "").lower() in {"1", "true", "yes"},
            extra=extra,
            # Before NIH's Finding Labels were read, a CSV without a label column stored the folder's name.
            replaces_label=folder_label if label != folder_label else "",
        )


def iter_openi(reports: Path, images_dir: Path | None, report: IngestReport) -> Iterator[IngestItem]:
    """Open-i (IU X-ray) XML reports (a .tgz, a folder of .xml, or one .xml) joined to their images.

    Images are looked up as ``<images_dir>/<parentImage id>.png`` (or .jpg/.dcm). The label is the
    labeler's reading of the impression, the report is findings + impression, MeSH terms go to extra.
    """
    from medrag.evaluation.labeler import read_openi_reports

    parsed = read_openi_reports(reports)
    if images_dir is None:
        report.notes.append(
            f"{len(parsed)} Open-i reports read, but no images folder was given: pass --images DIR "
            "(the folder with the CXR*.png files) to import them as cases."
        )
        return
    from medrag.labels import label_text

    for entry in parsed:
        text = "\n".join(part for part in (f"FINDINGS: {entry.findings}" if entry.findings else "",
                                           f"IMPRESSION: {entry.impression}" if entry.impression else "") if part)
        found: list[Path] = []
        refused = False
        for image_id in entry.image_ids:
            try:
                found += [p for p in _image_candidates(images_dir, image_id) if p.is_file()]
            except LibraryError as exc:
                refused = True
                report.errors.append((f"Open-i {entry.uid}", f"image id {image_id!r} refused: {exc}"))
        if not found:
            if not refused:
                report.errors.append((f"Open-i {entry.uid}", "none of its images are in the images folder"))
            continue
        label = _short_label(label_text(text).present()) if text else "unlabelled"
        for path in found:
            yield _file_item(
                path, label=label, dataset="openi", report=text, patient_id=str(entry.uid),
                extra={"mesh_major": list(entry.mesh_major)},
            )


def _image_candidates(images_dir: Path, image_id: str) -> list[Path]:
    """The files an Open-i image id may name, each inside ``images_dir`` (a hostile id raises LibraryError)."""
    return [
        resolve_inside(images_dir, f"{image_id}{suffix}", folder_name="images folder")
        for suffix in (".png", ".jpg", ".jpeg", ".dcm")
    ]


def _short_label(present: Sequence[str]) -> str:
    present = [p for p in present if p != "no finding"]
    return " + ".join(present[:2]) if present else "normal"


def iter_parquet(parquet_path: Path, report: IngestReport) -> Iterator[IngestItem]:
    """A Hugging Face-style parquet: an image column (bytes or {'bytes': ...}) and text columns.

    Text columns used: label, findings, impression, reasoning, report (any that exist). Without a
    label column the label is the labeler's reading of the text.
    """
    import pyarrow.parquet as pq

    try:
        table = pq.read_table(parquet_path)
    except Exception as exc:  # pyarrow raises many types for a bad file
        raise LibraryError(f"{parquet_path} is not a readable parquet file ({exc}).") from exc
    columns = set(table.column_names)
    image_column = next((c for c in ("image", "img", "jpg", "png") if c in columns), None)
    if image_column is None:
        raise LibraryError(f"{parquet_path} has no image column (columns: {', '.join(sorted(columns))}).")
    from medrag.labels import label_text

    for index, row in enumerate(table.to_pylist()):
        cell = row.get(image_column)
        data = cell.get("bytes") if isinstance(cell, dict) else cell
        where = f"{parquet_path.name} row {index}"
        if not isinstance(data, (bytes, bytearray)) or not data:
            # A path in the cell is never opened: it could name any file on this machine.
            has_path = isinstance(cell, dict) and bool(cell.get("path"))
            note = " (its 'path' is not followed: cells must carry the image bytes)" if has_path else ""
            report.errors.append((where, f"the image cell holds no bytes{note}"))
            continue
        texts = {k: _cell_text(row[k]) for k in ("findings", "impression", "reasoning", "report") if row.get(k)}
        report_text = "\n".join(f"{k.upper()}: {v}" for k, v in texts.items() if k != "reasoning")
        label = _label_text(row.get("label")) or _short_label(
            label_text(report_text or texts.get("reasoning", "")).present()
        )
        extra: dict[str, Any] = {}
        for key, value in row.items():
            if key not in {image_column, "label", *texts}:
                try:
                    plain = _json_data(value)
                except TypeError:  # binary data has no place in the JSON metadata
                    continue
                if plain is not None:
                    extra[key] = plain
        if "reasoning" in texts:
            extra["reasoning"] = texts["reasoning"]
        yield IngestItem(
            source_key=f"parquet:{parquet_path.resolve()}#{index}", data=bytes(data), label=label,
            dataset=_cell_text(row.get("dataset")) or parquet_path.stem, report=report_text,
            patient_id=_cell_text(row.get("patient_id")), view=_cell_text(row.get("view")), extra=extra,
            size=len(data), mtime_ns=0,
        )


def _json_data(value: Any) -> Any:
    """A parquet cell (``to_pylist`` form: structs are dicts, lists and maps are lists) as JSON data.

    NaN and infinities become null; dates, decimals and the like become their text. Raises TypeError
    for binary data, at any depth.
    """
    if value is None or isinstance(value, (str, bool, int)):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, (bytes, bytearray, memoryview)):
        raise TypeError("binary data")
    if isinstance(value, dict):
        return {str(k): _json_data(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_data(v) for v in value]
    return str(value)


def _cell_text(value: Any) -> str:
    """A cell used as text: strings as they are, nested values as JSON (never Python's repr), null as ""."""
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    try:
        data = _json_data(value)
    except TypeError:
        return ""
    if data is None:
        return ""
    return json.dumps(data, ensure_ascii=False) if isinstance(data, (dict, list)) else str(data)


def _label_text(value: Any) -> str:
    """A label cell: a list of findings is joined as MedRAG writes combined labels ("a + b")."""
    if isinstance(value, (list, tuple)) and value and all(isinstance(v, str) for v in value):
        return " + ".join(v.strip() for v in value if v.strip())
    return _cell_text(value).strip()


# --------------------------------------------------------------------------- items → store


