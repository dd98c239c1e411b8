"""Case-library import: folders (with an optional labels CSV), Open-i XML reports, Hugging Face-style parquet.

Every importer turns its source into :class:`IngestItem` rows; :func:`ingest_items` then decodes them
(in worker processes for large imports), writes content-addressed thumbnails, embeds them with the
library's image encoder when that is cheap, and stores each batch in one transaction. Import is
incremental and idempotent: unchanged files are skipped by (path, size, mtime) and identical pixels are
stored once (the case id is the pixel hash).
"""

from __future__ import annotations

import csv
import io
import json
import logging
import math
import os
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath, PureWindowsPath
from typing import TYPE_CHECKING, Any

import numpy as np

from medrag.config import Settings
from medrag.errors import LibraryError, MedRAGError
from medrag.imaging.dicom import looks_like_dicom
from medrag.ingest_worker import IngestItem, PreparedImage, import_encoder, init_worker, is_two_stage, prepare

if TYPE_CHECKING:
    from medrag.store.factory import AnyStore

IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".dcm", ".dicom", ".tif", ".tiff", ".bmp"})
_IMAGE_COLUMNS = ("image", "path", "file", "filename", "image_path")
_LABEL_COLUMNS = ("label", "finding", "findings_label", "diagnosis")
_KNOWN_COLUMNS = {"image", "label", "report", "patient_id", "view", "dataset", "synthetic"}
#: Longest cell read from a labels CSV (the csv module's default, 131,072, is short for a long report).
MAX_CSV_FIELD_CHARS = 4 * 2**20
#: Write to the database after this many prepared images, or this many seconds, whichever comes first.
_FLUSH_ITEMS = 512
_FLUSH_SECONDS = 1.0
#: Imports this large are spread over worker processes (smaller ones finish before workers would start).
_PARALLEL_FROM = 200
#: Items handed to a worker at a time.
_CHUNK = 16

log = logging.getLogger("medrag")


@dataclass
class IngestReport:
    """What an import did."""

    source: str
    seen: int = 0
    added: int = 0
    duplicates: int = 0
    unchanged: int = 0
    embedded: int = 0
    errors: list[tuple[str, str]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    seconds: float = 0.0

    def summary(self) -> str:
        """One line for the terminal or the app."""
        rate = self.seen / self.seconds if self.seconds > 0 else 0.0
        text = (
            f"{self.source}: {self.seen} seen, {self.added} added, {self.duplicates} duplicate pixels, "
            f"{self.unchanged} unchanged, {len(self.errors)} skipped with errors "
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
        label = _pick(row, _LABEL_COLUMNS) or (parts[0] if len(parts) > 1 else "unlabelled")
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


def ingest_items(
    items: Iterable[IngestItem],
    settings: Settings,
    store: AnyStore,
    report: IngestReport,
    *,
    encoder: Any = None,
    progress: bool = False,
    on_progress: Callable[[int, int], None] | None = None,
    workers: int | None = None,
) -> IngestReport:
    """Decode, thumbnail, embed and store ``items``; updates and returns ``report``.

    Each image is decoded once. With a weight-free encoder the vectors are stored with their cases; an
    encoder that still needs fitting (the classic one, on a new library) is fitted on the imported
    features at the end and its state saved, so indexing needs no second pass over the images.
    ``encoder`` is the caller's instance (the workbench passes its own so a fit is seen by both).

    Results are written in batches of up to :data:`_FLUSH_ITEMS` cases or :data:`_FLUSH_SECONDS` of
    work, each in one transaction on one opening of the database: between batches the file is free for
    another process (the app) to take its turn.
    """
    start = time.perf_counter()
    known = store.known_sources()
    todo: list[IngestItem] = []
    for item in items:
        report.seen += 1
        if known.get(item.source_key) == (item.size, item.mtime_ns) and item.mtime_ns:
            report.unchanged += 1
        else:
            todo.append(item)
    if encoder is None:
        encoder = import_encoder(settings)
    elif not _is_weight_free(encoder):
        encoder = None
    workers = workers if workers is not None else (min(2, os.cpu_count() or 1) if len(todo) >= _PARALLEL_FROM else 0)
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=len(todo), unit="img", desc="ingest", leave=False)
    done = 0
    pending: list[tuple[str, np.ndarray]] = []
    batch: list[PreparedImage] = []
    last_flush = time.perf_counter()

    def flush() -> None:
        nonlocal done, batch, last_flush
        if batch:
            _write_batch(batch, encoder, store, report, pending)
            done += len(batch)
            if bar is not None:
                bar.update(len(batch))
            if on_progress is not None:
                on_progress(done, len(todo))
        batch = []
        last_flush = time.perf_counter()

    for prepared in _prepared_stream(todo, settings, encoder is not None, workers, encoder):
        batch.append(prepared)
        if len(batch) >= _FLUSH_ITEMS or time.perf_counter() - last_flush >= _FLUSH_SECONDS:
            flush()
    flush()
    if bar is not None:
        bar.close()
    if pending:
        _fit_and_store(encoder, pending, settings, store, report)
    report.seconds = time.perf_counter() - start
    return report


def _is_weight_free(encoder: Any) -> bool:
    from medrag.encoders import get_encoder_spec

    try:
        return get_encoder_spec(encoder.name).weight_free
    except MedRAGError:
        return False


def _fit_and_store(
    encoder: Any, pending: list[tuple[str, np.ndarray]], settings: Settings, store: AnyStore, report: IngestReport
) -> None:
    from medrag.engine.vectors import fit_encoder

    features = np.stack([f for _, f in pending])
    seen = fit_encoder(encoder, settings.models_dir, features=features)
    vectors = encoder.project(features)
    store.put_embeddings(encoder.name, encoder.version, [cid for cid, _ in pending], vectors)
    report.embedded += len(pending)
    report.notes.append(f"fitted the {encoder.name} encoder on {seen} imported images")


def _prepared_stream(
    todo: list[IngestItem], settings: Settings, embed: bool, workers: int, encoder: Any = None
) -> Iterator[PreparedImage]:
    """Every item prepared, in order: in this process, or in ``workers`` worker processes."""
    if workers <= 1:
        init_worker(settings, False, encoder)
        yield from map(prepare, todo)
        return
    context = _worker_context()
    received = 0
    try:
        with ProcessPoolExecutor(
            workers, mp_context=context, initializer=init_worker, initargs=(settings, embed)
        ) as pool:
            for prepared in pool.map(prepare, todo, chunksize=_CHUNK):
                received += 1
                yield prepared
    except (BrokenProcessPool, OSError) as exc:
        # A worker died (killed, out of memory) or none could start (process limits, a sandbox without
        # sockets): finish the rest in this process, slower rather than failed.
        if isinstance(exc, BrokenProcessPool):
            log.warning("an import worker stopped unexpectedly; continuing in the main process")
        else:
            log.warning("import workers could not start (%s); importing in the main process", exc)
        init_worker(settings, False, encoder)
        yield from map(prepare, todo[received:])


def _worker_context() -> Any:
    """forkserver where the platform has it, else spawn; never a plain fork.

    A plain fork would copy the parent's DuckDB, torch and Streamlit threads mid-state. The fork server
    is a clean single-threaded process that imports the worker module once and forks each worker from
    it, so a worker starts in a few milliseconds instead of re-importing numpy, PIL and the encoder
    (about 0.45 s of CPU per worker with spawn), and a second import in the same app pays nothing.
    """
    import multiprocessing

    if "forkserver" in multiprocessing.get_all_start_methods():
        context = multiprocessing.get_context("forkserver")
        context.set_forkserver_preload(["medrag.ingest_worker", "medrag.imaging", "medrag.encoders.classic"])
        return context
    return multiprocessing.get_context("spawn")


def _write_batch(
    batch: list[PreparedImage],
    encoder: Any,
    store: AnyStore,
    report: IngestReport,
    pending: list[tuple[str, np.ndarray]],
) -> None:
    cases, sizes, sources, ids, vectors = [], [], [], [], []
    in_batch: set[str] = set()
    for prepared in batch:
        if prepared.case is None:
            report.errors.append((prepared.item.source_key, prepared.error))
            continue
        case = prepared.case
        sources.append((prepared.item.source_key, prepared.item.size, prepared.item.mtime_ns, case.case_id))
        if case.case_id in in_batch:
            continue
        in_batch.add(case.case_id)
        cases.append(case)
        sizes.append(prepared.size)
        if prepared.vector is not None:
            ids.append(case.case_id)
            vectors.append(prepared.vector)
    with store.session():  # one opening of the file for the look-up and the insert
        existing = store.existing_case_ids(c.case_id for c in cases)
        new_cases = [(c, s) for c, s in zip(cases, sizes, strict=True) if c.case_id not in existing]
        report.duplicates += len(batch) - len([p for p in batch if p.case is None]) - len(new_cases)
        new_ids = {c.case_id for c, _ in new_cases}
        keep = [i for i, cid in enumerate(ids) if cid in new_ids]
        embeddings = None
        if keep and encoder is not None:
            matrix = np.stack([vectors[i] for i in keep])
            kept_ids = [ids[i] for i in keep]
            if is_two_stage(encoder) and not encoder.is_fitted:
                pending.extend(zip(kept_ids, matrix, strict=True))
            else:
                if is_two_stage(encoder):
                    matrix = encoder.project(matrix)
                embeddings = (encoder.name, encoder.version, kept_ids, matrix)
                report.embedded += len(keep)
        report.added += store.add_ingest_batch(
            [c for c, _ in new_cases], [s for _, s in new_cases], sources, embeddings
        )


def ingest_path(
    source: Path,
    settings: Settings,
    store: AnyStore,
    *,
    labels_csv: Path | None = None,
    images_dir: Path | None = None,
    progress: bool = False,
    on_progress: Callable[[int, int], None] | None = None,
    encoder: Any = None,
) -> IngestReport:
    """Import ``source``: a folder (optionally with a labels CSV), an Open-i .tgz/.xml, or a .parquet."""
    source = Path(source).expanduser()
    if not source.exists():
        raise LibraryError(f"{source} does not exist; give a folder of images, a .parquet or an Open-i .tgz/.xml.")
    report = IngestReport(source=str(source))
    name = source.name.lower()
    if source.is_file() and name.endswith(".parquet"):
        items: Iterable[IngestItem] = list(iter_parquet(source, report))
    elif source.is_file() and (name.endswith((".tgz", ".tar.gz", ".xml"))) or (
        source.is_dir() and images_dir is not None and any(source.glob("*.xml"))
    ):
        items = list(iter_openi(source, images_dir, report))
    elif source.is_dir():
        if labels_csv is None and (source / "labels.csv").is_file():
            labels_csv = source / "labels.csv"
            report.notes.append(f"using {labels_csv} for labels")
        items = list(iter_labelled_folder(source, labels_csv, report) if labels_csv else iter_folder(source, report))
    else:
        raise LibraryError(
            f"{source} is not a folder, .parquet, .tgz or .xml; to analyse a single image use `medrag analyze`."
        )
    return ingest_items(items, settings, store, report, encoder=encoder, progress=progress, on_progress=on_progress)
