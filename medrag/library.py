"""Case-library import: folders (with an optional labels CSV), Open-i XML reports, Hugging Face-style parquet.

Every importer turns its source into :class:`IngestItem` rows; :func:`ingest_items` then decodes them
(in worker processes for large imports), writes content-addressed thumbnails, embeds them with the
library's image encoder when that is cheap, and stores each batch in one transaction. Import is
incremental and idempotent: unchanged files are skipped by (path, size, mtime) and identical pixels are
stored once (the case id is the pixel hash).
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from medrag.config import Settings
from medrag.errors import LibraryError, MedRAGError
from medrag.ingest_worker import IngestItem, PreparedImage, import_encoder, init_worker, is_two_stage, prepare

if TYPE_CHECKING:
    from medrag.store.factory import AnyStore

from medrag.ingest_sources import (  # re-exported: importers use them from here
    IMAGE_SUFFIXES,
    MAX_CSV_FIELD_CHARS,
    IngestReport,
    iter_folder,
    iter_labelled_folder,
    iter_openi,
    iter_parquet,
    read_labels_csv,
    resolve_inside,
)

_FLUSH_ITEMS = 512
_FLUSH_SECONDS = 1.0
#: Imports this large are spread over worker processes (smaller ones finish before workers would start).
_PARALLEL_FROM = 200
#: Items handed to a worker at a time.
_CHUNK = 16

log = logging.getLogger("medrag")


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
    ray_address: str | None = None,
) -> IngestReport:
    """Decode, thumbnail, embed and store ``items``; updates and returns ``report``.

    Each image is decoded once. With a weight-free encoder the vectors are stored with their cases; an
    encoder that still needs fitting (the classic one, on a new library) is fitted on the imported
    features at the end and its state saved, so indexing needs no second pass over the images.
    ``encoder`` is the caller's instance (the workbench passes its own so a fit is seen by both).

    Results are written in batches of up to :data:`_FLUSH_ITEMS` cases or :data:`_FLUSH_SECONDS` of
    work, each in one transaction on one opening of the database: between batches the file is free for
    another process (the app) to take its turn. ``ray_address`` spreads the per-image work over a Ray
    cluster (:mod:`medrag.ingest_ray`; ``"local"`` starts one here) instead of local worker processes.
    """
    start = time.perf_counter()
    known = store.known_sources()
    todo: list[IngestItem] = []
    relabel: list[tuple[str, str, str]] = []  # (source key, folder label stored before, label now)
    for item in items:
        if item.replaces_label:
            relabel.append((item.source_key, item.replaces_label, item.label))
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

    if ray_address is not None and todo:
        from medrag.ingest_ray import ray_prepared_stream

        stream = ray_prepared_stream(todo, settings, encoder is not None, ray_address)
    else:
        stream = _prepared_stream(todo, settings, encoder is not None, workers, encoder)
    for prepared in stream:
        batch.append(prepared)
        if len(batch) >= _FLUSH_ITEMS or time.perf_counter() - last_flush >= _FLUSH_SECONDS:
            flush()
    flush()
    if bar is not None:
        bar.close()
    if pending:
        _fit_and_store(encoder, pending, settings, store, report)
    _correct_folder_labels(relabel, settings, store, report)
    report.seconds = time.perf_counter() - start
    return report


def _correct_folder_labels(rows: list[tuple[str, str, str]], settings: Settings, store: AnyStore,
                           report: IngestReport) -> None:
    """Relabel the cases an earlier import labelled by their folder's name where the CSV now names the label."""
    if not rows:
        return
    report.relabelled = store.correct_folder_labels(rows)
    if report.relabelled:
        report.notes.append(f"{report.relabelled} cases an earlier import had labelled by their folder's name "
                            f"('{rows[0][1]}') now carry the labels of the CSV")
        try:  # a running app keys its cached library reads on the index folder's stamp
            settings.index_dir.mkdir(parents=True, exist_ok=True)
            os.utime(settings.index_dir)
        except OSError:
            pass


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
    ray_address: str | None = None,
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
    return ingest_items(items, settings, store, report, encoder=encoder, progress=progress, on_progress=on_progress,
                        ray_address=ray_address)

__all__ = [
    "IMAGE_SUFFIXES",
    "MAX_CSV_FIELD_CHARS",
    "IngestReport",
    "iter_folder",
    "iter_labelled_folder",
    "iter_openi",
    "iter_parquet",
    "read_labels_csv",
    "resolve_inside",
    "ingest_items",
    "ingest_path",
]
