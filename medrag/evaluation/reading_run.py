"""Runs ``medrag eval reading`` over a library (and a mask folder): loads each film, reads it, scores it."""

from __future__ import annotations

import csv
import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

from medrag.case_truth import box_text, fine_label_text
from medrag.evaluation.reading import (
    LabelledImage,
    ReadingReport,
    dice,
    evaluate_reading,
    parse_boxes,
    parse_nih_labels,
)
from medrag.reading.base import ImageReading
from medrag.records import Case

ReadFn = Callable[[np.ndarray, str | None], ImageReading | None]


def labelled_cases(
    cases: list[Case], exclude_patients: frozenset[str] | set[str] = frozenset()
) -> list[tuple[Case, LabelledImage]]:
    """Library cases with NIH fine labels, as :class:`LabelledImage` (patients in ``exclude_patients`` left out).

    Both shared layouts are read: cxr-real's ``fine_label`` and ``bbox_xywh_in_output_px``, nih-train's
    ``finding_labels`` and ``bbox`` (boxes in the stored image's pixels in both)."""
    out = []
    for case in cases:
        extra = case.extra if isinstance(case.extra, dict) else json.loads(case.extra or "{}")
        fine = fine_label_text(extra)
        if not fine or case.patient_id in exclude_patients:
            continue
        size = (int(extra.get("height") or 0), int(extra.get("width") or 0))
        out.append((case, LabelledImage(
            case.case_id, case.patient_id or case.case_id, parse_nih_labels(fine), case.view,
            parse_boxes(box_text(extra)), size,
        )))
    return out


def read_cases(
    pairs: list[tuple[Case, LabelledImage]], read: ReadFn, *, on_progress: Callable[[int, int], None] | None = None,
    on_read: Callable[[LabelledImage, ImageReading], None] | None = None,
) -> Iterator[tuple[LabelledImage, ImageReading]]:
    """Each labelled case with its reading (unreadable images skipped); ``on_read`` sees each one first."""
    from medrag.errors import MedRAGError
    from medrag.imaging import load_image

    for done, (case, label) in enumerate(pairs, start=1):
        try:
            image = load_image(Path(case.image_path))
        except (MedRAGError, OSError):
            continue
        reading = read(image.pixels, case.view or None)
        if on_progress is not None:
            on_progress(done, len(pairs))
        if reading is not None:
            if not label.size[0]:
                label = LabelledImage(
                    label.case_id, label.patient_id, label.findings, label.view, label.boxes, image.shape
                )
            if on_read is not None:
                on_read(label, reading)
            yield label, reading


def evaluate_library(
    cases: list[Case], read: ReadFn, *, exclude_patients: frozenset[str] | set[str] = frozenset(), rounds: int = 500,
    on_progress: Callable[[int, int], None] | None = None,
    on_read: Callable[[LabelledImage, ImageReading], None] | None = None,
) -> ReadingReport:
    """Read every labelled case (held-out patients only) and score the readings (``on_read`` sees each)."""
    pairs = labelled_cases(cases, exclude_patients)
    report = evaluate_reading(read_cases(pairs, read, on_progress=on_progress, on_read=on_read), rounds=rounds)
    # The training patients actually present in this library (not the size of the whole training set).
    report.excluded_patients = len({c.patient_id for c in cases if c.patient_id in exclude_patients})
    return report


def mask_dice(
    mask_folder: Path, segment: Callable[[np.ndarray], np.ndarray], *, patients: set[str] | None = None
) -> dict[str, Any]:
    """Lung Dice of ``segment`` against a mask folder with a labels.csv (image, lungs_mask, patient_id columns)."""
    from medrag.imaging import load_image

    rows = list(csv.DictReader((mask_folder / "labels.csv").open(encoding="utf-8")))
    scores: list[float] = []
    for row in rows:
        if patients is not None and row.get("patient_id") not in patients:
            continue
        if not row.get("lungs_mask"):
            continue
        image = load_image(mask_folder / row["image"])
        truth = load_image(mask_folder / row["lungs_mask"]).pixels > 0.5
        predicted = segment(image.pixels)
        if predicted.shape != truth.shape:
            from PIL import Image

            predicted = np.asarray(Image.fromarray(predicted.astype(np.uint8) * 255).resize(truth.shape[::-1])) > 127
        scores.append(dice(predicted, truth))
    if not scores:
        return {"images": 0}
    values = np.asarray(scores)
    return {"images": len(values), "mean": float(values.mean()), "median": float(np.median(values)),
            "min": float(values.min())}


__all__ = ["evaluate_library", "labelled_cases", "mask_dice", "read_cases"]
