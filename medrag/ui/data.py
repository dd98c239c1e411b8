"""Every read and write the pages make on the library and the history: pages call these, never the store.

Reads are cached with ``st.cache_data`` under a key that changes when the data does: the number of cases
(or analyses), which another process (a CLI import) changes too, the index folder's modification time for
the library, and a generation that every write made through this module bumps (a note edited, a row
deleted). A write also clears the caches it made stale, so no stale copy lingers in memory.
Cached values are copies (``st.cache_data`` pickles them), so a page may change what it gets.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd
import streamlit as st

from medrag.analysis import Analysis
from medrag.case_truth import finding_counts, label_parts
from medrag.casenames import case_caption, case_from_row, case_title, is_synthetic
from medrag.records import Case
from medrag.ui.roles import require_educator

if TYPE_CHECKING:
    from medrag.library import IngestReport
    from medrag.store.factory import AnyStore
    from medrag.workbench import Workbench

_LOCK = threading.Lock()
#: (data folder, "library" | "history") → how many writes this process made through this module
_GENERATIONS: dict[tuple[str, str], int] = {}


def _generation(workbench: Workbench, what: str) -> int:
    with _LOCK:
        return _GENERATIONS.get((str(workbench.settings.data_dir), what), 0)


def _bump(workbench: Workbench, what: str) -> None:
    with _LOCK:
        key = (str(workbench.settings.data_dir), what)
        _GENERATIONS[key] = _GENERATIONS.get(key, 0) + 1


def _index_stamp(workbench: Workbench) -> int:
    try:
        return os.stat(workbench.settings.index_dir).st_mtime_ns
    except OSError:
        return 0


def _library_key(workbench: Workbench) -> tuple[str, int, int, int]:
    """Changes whenever the library may have: a case count, a saved index, a write from this app."""
    return (str(workbench.settings.data_dir), workbench.store.count_cases(), _index_stamp(workbench),
            _generation(workbench, "library"))


def library_key(workbench: Workbench) -> tuple[str, int, int, int]:
    """What the cached library reads are keyed on (changes whenever the library may have)."""
    return _library_key(workbench)


def _history_key(workbench: Workbench) -> tuple[str, int, int]:
    return str(workbench.settings.data_dir), workbench.store.count_analyses(), _generation(workbench, "history")


#: A label filter's value that matches every label naming one finding: "any with effusion" keeps "effusion" and
#: "edema + effusion" (a multi-label library such as NIH's has a label per combination of findings).
ANY_LABEL_PREFIX = "any with "


# ---------------------------------------------------------------------------------------------- library reads
@st.cache_data(show_spinner=False, max_entries=32)
def _label_counts(key: tuple[Any, ...], _store: AnyStore) -> dict[str, int]:
    return _store.label_counts()


@st.cache_data(show_spinner=False, max_entries=32)
def _dataset_counts(key: tuple[Any, ...], _store: AnyStore) -> dict[str, int]:
    return _store.dataset_counts()


@st.cache_data(show_spinner=False, max_entries=64)
def _cases_frame(key: tuple[Any, ...], label: str | None, dataset: str | None, text: str | None,
                 limit: int | None, _store: AnyStore) -> pd.DataFrame:
    if label and label.startswith(ANY_LABEL_PREFIX):
        finding = label[len(ANY_LABEL_PREFIX):]
        named = [name for name in _store.label_counts() if finding in label_parts(name)]
        return _store.cases_frame(labels=named, dataset=dataset, text=text, limit=limit)
    return _store.cases_frame(label=label, dataset=dataset, text=text, limit=limit)


@st.cache_data(show_spinner=False, max_entries=512)
def _get_case(key: tuple[Any, ...], case_id: str, _store: AnyStore) -> Case | None:
    return _store.get_case(case_id)


@st.cache_data(show_spinner=False, max_entries=64)
def _case_ids_where(key: tuple[Any, ...], label: str | None, dataset: str | None, _store: AnyStore) -> set[str]:
    return _store.case_ids_where(label=label, dataset=dataset)


@st.cache_data(show_spinner=False, max_entries=64)
def _get_cases(key: tuple[Any, ...], case_ids: tuple[str, ...], _store: AnyStore) -> dict[str, Case]:
    return _store.get_cases(list(case_ids))


#: Columns of :func:`case_index`.
CASE_INDEX_COLUMNS = ("case_id", "title", "caption", "label", "dataset", "synthetic", "image_path", "thumb_path")


@st.cache_resource(show_spinner=False, max_entries=4)
def _case_index(key: tuple[Any, ...], _store: AnyStore) -> pd.DataFrame:
    # A resource, not data: one shared, read-only table (a 100k-case library would be pickled every call).
    cases = [case_from_row(row) for row in _store.cases_frame().to_dict("records")]
    return pd.DataFrame({
        "case_id": [c.case_id for c in cases],
        "title": [case_title(c) for c in cases],
        "caption": [case_caption(c, 400) for c in cases],
        "label": [c.label for c in cases],
        "dataset": [c.dataset for c in cases],
        "synthetic": [is_synthetic(c) for c in cases],
        "image_path": [c.image_path for c in cases],
        "thumb_path": [c.thumb_path for c in cases],
    }, columns=list(CASE_INDEX_COLUMNS))


def count_cases(workbench: Workbench) -> int:
    """How many cases the library holds (asked afresh each time: it is what the other caches are keyed on)."""
    return workbench.store.count_cases()


def label_counts(workbench: Workbench) -> dict[str, int]:
    """Cases per label, most common first."""
    return _label_counts(_library_key(workbench), workbench.store)


def dataset_counts(workbench: Workbench) -> dict[str, int]:
    """Cases per dataset, most common first."""
    return _dataset_counts(_library_key(workbench), workbench.store)


def cases_frame(
    workbench: Workbench, *, label: str | None = None, dataset: str | None = None, text: str | None = None,
    limit: int | None = None,
) -> pd.DataFrame:
    """The library's cases as a table, filtered by label (``"any with <finding>"``: every label naming it), dataset
    and report text."""
    return _cases_frame(_library_key(workbench), label, dataset, text, limit, workbench.store)


def get_case(workbench: Workbench, case_id: str) -> Case | None:
    """One library case, or None when it is not (or no longer) in the library."""
    return _get_case(_library_key(workbench), case_id, workbench.store)


def get_cases(workbench: Workbench, case_ids: Sequence[str]) -> dict[str, Case]:
    """Library cases by id (ids no longer in the library are simply absent)."""
    return _get_cases(_library_key(workbench), tuple(case_ids), workbench.store)


def case_index(workbench: Workbench) -> pd.DataFrame:
    """Every case with its readable name: case_id, title, caption, label, dataset, synthetic, image and thumb path.

    Shared and read-only (filter it into a new frame; never change it in place).
    """
    return _case_index(_library_key(workbench), workbench.store)


def case_choices(
    workbench: Workbench, *, label: str | None = None, real_only: bool = False, dataset: str | None = None,
) -> pd.DataFrame:
    """The rows of :func:`case_index` with this label (or, for ``"any with <finding>"``, every label naming the
    finding) and dataset, synthetic phantoms left out when ``real_only``."""
    index = case_index(workbench)
    keep = pd.Series(True, index=index.index)
    if label and label.startswith(ANY_LABEL_PREFIX):
        finding = label[len(ANY_LABEL_PREFIX):]
        keep &= index["label"].map(lambda value: finding in label_parts(str(value)))
    elif label:
        keep &= index["label"] == label
    if dataset:
        keep &= index["dataset"] == dataset
    if real_only:
        keep &= ~index["synthetic"]
    return index[keep]


def library_kinds(workbench: Workbench) -> tuple[int, int]:
    """(real cases, synthetic phantoms) in the library."""
    synthetic = int(case_index(workbench)["synthetic"].sum())
    return len(case_index(workbench)) - synthetic, synthetic


def case_ids_where(workbench: Workbench, *, label: str | None = None, dataset: str | None = None) -> set[str]:
    """Ids of the cases with this label and/or dataset."""
    return _case_ids_where(_library_key(workbench), label, dataset, workbench.store)


# ---------------------------------------------------------------------------------------------- library writes
def library_changed(workbench: Workbench) -> None:
    """Forget every cached library read (after an import, a re-index or the demo bootstrap)."""
    _bump(workbench, "library")
    for cached in (_label_counts, _dataset_counts, _cases_frame, _get_case, _get_cases, _case_ids_where, _case_index):
        cached.clear()


def import_folder(
    workbench: Workbench, source: Path, *, labels_csv: Path | None = None,
    on_progress: Callable[[int, int], None] | None = None,
) -> IngestReport:
    """Import a folder (or parquet / Open-i archive) into the library and index it; returns the report."""
    from medrag.ui.workers import spawn_safe_main

    require_educator("import into the library")
    try:
        with spawn_safe_main():
            return workbench.ingest(source, labels_csv=labels_csv, on_progress=on_progress)
    finally:
        # The next page run (open_workbench → resources.refresh_text_index) embeds the new reports in
        # the background, so the first text question does not wait for them.
        library_changed(workbench)


def reindex(workbench: Workbench) -> Any:
    """Re-embed every case with the current image encoder and rebuild the image index; returns the index."""
    require_educator("rebuild the index")
    try:
        return workbench.ensure_index("image", rebuild=True)
    finally:
        library_changed(workbench)


# ---------------------------------------------------------------------------------------------- history
@st.cache_data(show_spinner=False, max_entries=64)
def _history_frame(key: tuple[Any, ...], search: str | None, limit: int | None, _store: AnyStore) -> pd.DataFrame:
    return _store.history_frame(limit=limit, search=search)


@st.cache_data(show_spinner=False, max_entries=64)
def _get_analysis(key: tuple[Any, ...], analysis_id: int, _store: AnyStore) -> Analysis | None:
    return _store.get_analysis(analysis_id)


@st.cache_data(show_spinner=False, max_entries=64)
def _history_page(key: tuple[Any, ...], offset: int, limit: int, search: str | None, labels: tuple[str, ...],
                  backends: tuple[str, ...], columns: tuple[str, ...], _store: AnyStore) -> pd.DataFrame:
    return _store.history_page(offset, limit, search, columns=columns, labels=labels or None,
                               backends=backends or None)


@st.cache_data(show_spinner=False, max_entries=64)
def _count_history(key: tuple[Any, ...], search: str | None, labels: tuple[str, ...], backends: tuple[str, ...],
                   _store: AnyStore) -> int:
    return _store.count_history(search, labels=labels or None, backends=backends or None)


@st.cache_data(show_spinner=False, max_entries=64)
def _history_values(key: tuple[Any, ...], column: str, search: str | None, _store: AnyStore) -> list[str]:
    return _store.history_values(column, search)


#: The history columns a page of the History table needs (light: no reasoning or neighbour lists).
HISTORY_PAGE_COLUMNS = ("id", "created_at", "input_kind", "input_name", "question", "label", "reasoner_backend",
                        "total_seconds", "top_label", "top_score")


def history_page(
    workbench: Workbench, *, offset: int, limit: int, search: str | None = None,
    labels: Sequence[str] = (), backends: Sequence[str] = (),
) -> pd.DataFrame:
    """One page of past analyses, newest first, searched and filtered in the database (light columns)."""
    return _history_page(_history_key(workbench), int(offset), int(limit), search, tuple(labels), tuple(backends),
                         HISTORY_PAGE_COLUMNS, workbench.store)


def count_history(
    workbench: Workbench, *, search: str | None = None, labels: Sequence[str] = (), backends: Sequence[str] = ()
) -> int:
    """How many past analyses match the search and the filters."""
    return _count_history(_history_key(workbench), search, tuple(labels), tuple(backends), workbench.store)


def history_values(workbench: Workbench, column: str, search: str | None = None) -> list[str]:
    """The distinct labels (``column="label"``) or reasoner backends among the matching analyses."""
    return _history_values(_history_key(workbench), column, search, workbench.store)


def count_analyses(workbench: Workbench) -> int:
    """How many analyses the history holds (asked afresh each time)."""
    return workbench.store.count_analyses()


def history_frame(workbench: Workbench, *, search: str | None = None, limit: int | None = None) -> pd.DataFrame:
    """Past analyses, newest first (JSON columns as text), optionally searched and limited."""
    return _history_frame(_history_key(workbench), search, limit, workbench.store)


def get_analysis(workbench: Workbench, analysis_id: int) -> Analysis | None:
    """One saved analysis exactly as it was shown, or None when it was deleted."""
    return _get_analysis(_history_key(workbench), int(analysis_id), workbench.store)


def history_changed(workbench: Workbench) -> None:
    """Forget every cached history read (after an analysis was saved, annotated or deleted)."""
    _bump(workbench, "history")
    for cached in (_history_frame, _get_analysis, _history_page, _count_history, _history_values):
        cached.clear()


def update_analysis_notes(workbench: Workbench, analysis_id: int, notes: str, tags: Sequence[str]) -> None:
    """Set the reader's notes and tags of a saved analysis (the educator only, in class mode)."""
    require_educator("edit an analysis' notes and tags")
    try:
        workbench.store.update_analysis_notes(analysis_id, notes, tags)
    finally:
        history_changed(workbench)


def delete_analysis(workbench: Workbench, analysis_id: int) -> bool:
    """Delete a saved analysis; returns whether it existed (the educator only, in class mode)."""
    require_educator("delete an analysis")
    try:
        return workbench.store.delete_analysis(analysis_id)
    finally:
        history_changed(workbench)


__all__ = [
    "ANY_LABEL_PREFIX", "CASE_INDEX_COLUMNS", "finding_counts", "label_parts", "HISTORY_PAGE_COLUMNS",
    "case_choices", "case_ids_where", "case_index", "cases_frame",
    "count_analyses", "count_cases", "count_history", "dataset_counts", "delete_analysis", "get_analysis",
    "get_case", "get_cases", "history_changed", "history_frame", "history_page", "history_values",
    "import_folder", "label_counts", "library_changed", "library_key", "library_kinds", "reindex",
    "update_analysis_notes",
]
