"""Readable names for library cases: what a picker, a card or a handout calls a case (never its hash id).

A case's id is the sha256 of its pixels, which means nothing to a reader. Its *title* is built from what
the import kept: the file name (or a title column), the label, the dataset, the patient, sex and age, the
view and the fine label, with synthetic phantoms always marked. Its *caption* is the report snippet where
one exists, else the fine label and the demographics.

Pure text (no streamlit, no pandas): the app's pages and the teaching package both use it.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from pathlib import PurePath
from typing import Any

from medrag.case_truth import fine_label_text, label_from_nih
from medrag.records import Case

#: What every synthetic case's title starts with, so it is never taken for a real patient.
SYNTHETIC_MARK = "synthetic phantom"
#: Columns of a labels CSV (kept in ``extra``) that name a case better than its file does.
_TITLE_KEYS = ("title", "name", "case_name")
#: A file stem that is itself a hash (a content-addressed copy): not a name a reader can use.
_HASHLIKE = re.compile(r"^[0-9a-f]{24,}$", re.IGNORECASE)


def is_synthetic(case: Case) -> bool:
    """Whether a case is a synthetic phantom (flagged at import, or from the ``synthetic`` dataset)."""
    return bool(case.synthetic) or case.dataset.strip().lower() == "synthetic"


def real_cases(cases: Iterable[Case]) -> list[Case]:
    """The cases that are real images (synthetic phantoms left out), in their order."""
    return [case for case in cases if not is_synthetic(case)]


def _missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and value != value)  # None or NaN


def _text(value: Any) -> str:
    return "" if _missing(value) else " ".join(str(value).split())


def file_name(case: Case) -> str:
    """The case's file name as imported (from the labels CSV or the folder), or "" when it has none usable."""
    extra = case.extra or {}
    for candidate in (extra.get("source_file"), extra.get("file_name"), extra.get("filename"), case.image_path):
        name = PurePath(str(candidate or "")).name
        if name and not _HASHLIKE.match(PurePath(name).stem):
            return name
    return ""


def _name(case: Case) -> str:
    extra = case.extra or {}
    for key in _TITLE_KEYS:
        title = _text(extra.get(key))
        if title:
            return title
    return file_name(case) or f"{case.dataset or 'library'} image"


def _demographics(case: Case) -> str:
    extra = case.extra or {}
    sex = _text(extra.get("sex") or extra.get("gender")).upper()[:1]
    age = _text(extra.get("age"))
    if age and age.replace(".", "", 1).isdigit():
        age = f"{float(age):g} y"  # "34.0" (a CSV read as floats) reads as "34 y"
    return " ".join(part for part in (sex, age) if part)


def fine_label(case: Case) -> str:
    """The finer label the source gave (NIH findings, bacterial/viral pneumonia), or "" when it adds nothing."""
    raw = fine_label_text(case.extra)
    label = case.label.strip().lower()
    if raw.lower() == label or (label and label_from_nih(raw) == label):
        return ""  # the label already says it (a label made from NIH's Finding Labels at import)
    return raw.replace("|", ", ")


def case_title(case: Case) -> str:
    """One line naming a case: file name or title, label, dataset, patient, sex/age, view, fine label.

    Synthetic phantoms start with :data:`SYNTHETIC_MARK`. Never the hash id.
    """
    parts = [_name(case), case.label or "unlabelled"]
    dataset = _text(case.dataset)
    if dataset and dataset.lower() != "synthetic":
        parts.append(dataset)
    if case.patient_id and not is_synthetic(case):
        parts.append(f"patient {_text(case.patient_id)}")
    for part in (_demographics(case), _text(case.view), fine_label(case)):
        if part:
            parts.append(part)
    if is_synthetic(case):
        parts.insert(0, SYNTHETIC_MARK)
    return " · ".join(parts)


def case_facts(case: Case) -> str:
    """What is known of a case besides its report: fine label, sex/age, view, population, dataset."""
    extra = case.extra or {}
    parts = []
    fine = fine_label(case) or fine_label_text(extra)
    if fine:
        parts.append(f"fine label: {fine}")
    for part in (_demographics(case), f"{_text(case.view)} view" if case.view else "", _text(extra.get("population"))):
        if part:
            parts.append(part)
    parts.append(SYNTHETIC_MARK if is_synthetic(case) else (_text(case.dataset) or "library"))
    return " · ".join(parts)


def case_caption(case: Case, limit: int = 160) -> str:
    """The report snippet (at most ``limit`` characters) where the case has one, else :func:`case_facts`."""
    report = _text(case.report)
    if not report:
        return "No report · " + case_facts(case)
    return report if len(report) <= limit else report[: max(limit - 1, 0)].rstrip() + "…"


def case_from_row(row: Mapping[Any, Any]) -> Case:
    """A :class:`Case` from a row of ``Store.cases_frame()`` (whose ``extra`` is JSON text)."""
    def cell(name: str) -> str:
        value = row.get(name)
        return "" if _missing(value) else str(value)

    extra = row.get("extra")
    if isinstance(extra, str):
        try:
            extra = json.loads(extra)
        except ValueError:
            extra = {}
    return Case(
        case_id=cell("case_id"), label=_text(row.get("label")), dataset=_text(row.get("dataset")),
        image_path=cell("image_path"), thumb_path=cell("thumb_path"), report=cell("report"),
        patient_id=cell("patient_id"), view=cell("view"), synthetic=row.get("synthetic") is True or
        str(row.get("synthetic")).lower() in {"true", "1"}, extra=dict(extra) if isinstance(extra, Mapping) else {},
    )


__all__ = [
    "SYNTHETIC_MARK", "case_caption", "case_facts", "case_from_row", "case_title", "file_name", "fine_label",
    "is_synthetic", "real_cases",
]
