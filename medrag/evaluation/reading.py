"""``medrag eval reading``: how well the image readers read a labelled library, per finding, by patient.

- per finding: AUC of the reading's probability (or status, for readers without one) and F1 of its status
  (present or uncertain counts as positive; ``f1_present``: only present) against the library's fine labels
  (NIH ``Finding Labels``), with 95% bootstrap confidence intervals resampled by patient;
- view accuracy (PA / AP) against the cases' ``view``;
- localisation: the share of expert boxes (NIH ``bbox``) that contain the reading's peak (the middle of the
  opacity map's densest region where the reading has one, else the classifier heatmap's hottest cell) —
  ``localisation_peak``, one point per film — ``localisation_finding``: the point the reading gives for the box's
  own finding (the heart's centre for cardiomegaly, the costophrenic angle for effusion, the apex of the smaller
  lung for pneumothorax, the map's peak otherwise; :mod:`medrag.reading.places`);
  and, more lenient, ``localisation``: that peak, the heatmap's peak, or a zone the reading flagged or placed
  the box's finding in overlaps the box;
- segmentation Dice against a folder of lung masks (``--masks``, the cxr-masks layout).

Patients a trained reader learned from are left out (``exclude_patients``), so the figures are held-out.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numpy.typing import ArrayLike

from medrag.case_truth import NIH_FINDINGS
from medrag.reading.base import ImageReading

#: The findings the issue's F1 target is over.
F1_FINDINGS: tuple[str, ...] = ("pneumonia", "effusion", "edema", "atelectasis", "no finding")
_STATUS_SCORE = {"present": 1.0, "uncertain": 0.5, "absent": 0.0, "not mentioned": 0.0}


@dataclass(frozen=True)
class LabelledImage:
    """One labelled film: its patient, its NIH findings, its view and its expert boxes."""

    case_id: str
    patient_id: str
    findings: frozenset[str]
    view: str = ""
    #: (finding, x, y, w, h) in the image's own pixels
    boxes: tuple[tuple[str, float, float, float, float], ...] = ()
    size: tuple[int, int] = (0, 0)


@dataclass
class ReadingReport:
    """Every figure ``medrag eval reading`` prints (and writes with ``--json``)."""

    images: int = 0
    patients: int = 0
    per_finding: dict[str, dict[str, Any]] = field(default_factory=dict)
    macro_auc: float = float("nan")
    macro_f1: float = float("nan")
    #: the same F1 when only "present" counts as a call ("possible" as not called)
    macro_f1_present: float = float("nan")
    view_accuracy: float = float("nan")
    view_ci: tuple[float, float] = (float("nan"), float("nan"))
    localisation: float = float("nan")
    localisation_peak: float = float("nan")
    localisation_finding: float = float("nan")
    boxes: int = 0
    dice: dict[str, Any] = field(default_factory=dict)
    excluded_patients: int = 0

    def to_json(self) -> str:
        """The report as JSON (NaN written as null)."""
        def clean(value: Any) -> Any:
            if isinstance(value, float) and math.isnan(value):
                return None
            if isinstance(value, dict):
                return {k: clean(v) for k, v in value.items()}
            if isinstance(value, (list, tuple)):
                return [clean(v) for v in value]
            return value
        return json.dumps(clean(vars(self)), indent=2)


def parse_nih_labels(fine_label: str) -> frozenset[str]:
    """``"Effusion|Infiltration"`` → {"effusion", "opacity"}; unknown names are ignored."""
    return frozenset(NIH_FINDINGS[p.strip()] for p in str(fine_label or "").split("|") if p.strip() in NIH_FINDINGS)


def parse_boxes(text: str) -> tuple[tuple[str, float, float, float, float], ...]:
    """``"Pneumonia:301,298,108,90|Effusion:..."`` → ((finding, x, y, w, h), ...)."""
    boxes = []
    for part in str(text or "").split("|"):
        name, _, numbers = part.partition(":")
        finding = NIH_FINDINGS.get(name.strip().replace("Infiltrate", "Infiltration"))
        values = [float(v) for v in numbers.split(",") if v.strip()]
        if finding and len(values) == 4:
            boxes.append((finding, *values))
    return tuple(boxes)  # type: ignore[arg-type]


def auc(labels: ArrayLike, scores: ArrayLike) -> float:
    """ROC AUC by the rank-sum formula (ties count half); NaN when one class is missing."""
    y = np.asarray(labels, dtype=bool)
    s = np.asarray(scores, dtype=np.float64)
    positives, negatives = int(y.sum()), int((~y).sum())
    if positives == 0 or negatives == 0:
        return float("nan")
    order = np.argsort(s, kind="mergesort")
    ranks = np.empty(len(s), dtype=np.float64)
    sorted_scores = s[order]
    i = 0
    while i < len(s):
        j = i
        while j + 1 < len(s) and sorted_scores[j + 1] == sorted_scores[i]:
            j += 1
        ranks[order[i : j + 1]] = (i + j) / 2.0 + 1.0
        i = j + 1
    return float((ranks[y].sum() - positives * (positives + 1) / 2.0) / (positives * negatives))


def f1(labels: ArrayLike, predicted: ArrayLike) -> float:
    """F1 of binary predictions (NaN when there is nothing to score)."""
    y, p = np.asarray(labels, dtype=bool), np.asarray(predicted, dtype=bool)
    tp, fp, fn = int((y & p).sum()), int((~y & p).sum()), int((y & ~p).sum())
    return float("nan") if tp + fp + fn == 0 else 2 * tp / (2 * tp + fp + fn)


def on_rows(
    metric: Callable[[np.ndarray, np.ndarray], float], labels: np.ndarray, values: np.ndarray
) -> Callable[[np.ndarray], float]:
    """``metric`` of the rows ``ix`` of ``labels`` and ``values``, as :func:`bootstrap_ci` resamples them."""
    return lambda ix: metric(labels[ix], values[ix])


def bootstrap_ci(
    groups: Sequence[str], metric: Callable[[np.ndarray], float], *, rounds: int = 500, seed: int = 0
) -> tuple[float, float]:
    """95% interval of ``metric(indices)`` over patient-resampled bootstraps."""
    rng = np.random.default_rng(seed)
    by_patient: dict[str, list[int]] = {}
    for index, patient in enumerate(groups):
        by_patient.setdefault(patient, []).append(index)
    patients = list(by_patient)
    values = []
    for _ in range(rounds):
        drawn = rng.integers(0, len(patients), len(patients))
        indices = np.fromiter((i for d in drawn for i in by_patient[patients[d]]), dtype=np.int64)
        value = metric(indices)
        if not math.isnan(value):
            values.append(value)
    if not values:
        return (float("nan"), float("nan"))
    return (float(np.percentile(values, 2.5)), float(np.percentile(values, 97.5)))


def _score(reading: ImageReading, finding: str) -> tuple[float, int]:
    read = reading.findings.get(finding)
    if read is None:
        return 0.0, 0
    score = read.probability if read.probability is not None else _STATUS_SCORE[read.status]
    return float(score), int(read.status in ("present", "uncertain"))


def _status(reading: ImageReading, finding: str) -> str:
    read = reading.findings.get(finding)
    return read.status if read is not None else "not mentioned"


def _inside(point: tuple[float, float] | None, box: tuple[float, float, float, float]) -> bool:
    x, y, w, h = box
    return point is not None and bool(x <= point[0] <= x + w and y <= point[1] <= y + h)


def _peak_in(grid: np.ndarray | None, box: tuple[float, float, float, float], size: tuple[int, int],
             *, region: bool = False) -> bool:
    """Does the box hold the map's hottest cell (with ``region``: the middle of its densest region)?"""
    if grid is None or not np.asarray(grid).size or not size[0] or not size[1]:
        return False
    from medrag.reading.grids import densest_region, peak

    row, col, _ = (densest_region if region else peak)(grid)
    return _inside((col * size[1], row * size[0]), box)


def _peak_hit(reading: ImageReading, box: tuple[float, float, float, float], size: tuple[int, int]) -> bool:
    """Does the box hold the reading's one peak (the opacity map's, else the heatmap's)?"""
    from medrag.reading.places import map_peak

    return bool(size[0] and size[1]) and _inside(map_peak(reading, size), box)


def _point_hit(reading: ImageReading, finding: str, box: tuple[float, float, float, float],
               size: tuple[int, int]) -> bool:
    """Does the box hold the point the reading gives for the box's own finding?"""
    from medrag.reading.places import finding_point

    return bool(size[0] and size[1]) and _inside(finding_point(reading, finding, size), box)


def _hit(reading: ImageReading, finding: str, box: tuple[float, float, float, float], size: tuple[int, int]) -> bool:
    x, y, w, h = box
    overlays = reading.overlays
    if _peak_in(overlays.opacity, box, size, region=True) or _peak_in(overlays.heatmap, box, size):
        return True
    read = reading.findings.get(finding)
    zones = set(read.where if read else ()) | set(reading.flagged_zones())
    for zone in zones:
        zx, zy, zw, zh = overlays.zone_boxes.get(zone, (0.0, 0.0, 0.0, 0.0))
        if zw and zh and zx < x + w and x < zx + zw and zy < y + h and y < zy + zh:
            return True
    return False


def evaluate_reading(
    items: Iterable[tuple[LabelledImage, ImageReading]],
    *,
    findings: Sequence[str] = ("no finding", "pneumonia", "effusion", "atelectasis", "edema", "cardiomegaly",
                               "consolidation", "pneumothorax", "opacity", "nodule/mass"),
    rounds: int = 500,
) -> ReadingReport:
    """Score readings against labels; CIs resample patients."""
    pairs = list(items)
    report = ReadingReport(images=len(pairs), patients=len({lab.patient_id for lab, _ in pairs}))
    groups = [lab.patient_id for lab, _ in pairs]
    aucs, f1s, f1s_present = [], [], []
    for finding in findings:
        truth = np.array([int(finding in lab.findings) for lab, _ in pairs])
        scored = [_score(reading, finding) for _, reading in pairs]
        scores = np.array([s for s, _ in scored])
        predicted = np.array([p for _, p in scored])
        if not len(truth):
            continue
        a, f = auc(truth, scores), f1(truth, predicted)
        called = np.array([int(_status(reading, finding) == "present") for _, reading in pairs])
        f_present = f1(truth, called)
        report.per_finding[finding] = {
            "positives": int(truth.sum()), "auc": a, "f1": f, "f1_present": f_present,
            "auc_ci": bootstrap_ci(groups, on_rows(auc, truth, scores), rounds=rounds),
            "f1_ci": bootstrap_ci(groups, on_rows(f1, truth, predicted), rounds=rounds),
        }
        if truth.sum() >= 50 and not math.isnan(a):
            aucs.append(a)
        if finding in F1_FINDINGS and not math.isnan(f):
            f1s.append(f)
            f1s_present.append(f_present)
    report.macro_auc = float(np.mean(aucs)) if aucs else float("nan")
    report.macro_f1 = float(np.mean(f1s)) if f1s else float("nan")
    report.macro_f1_present = float(np.nanmean(f1s_present)) if f1s_present else float("nan")
    viewed = [(lab.view.upper(), reading.view.upper()) for lab, reading in pairs if lab.view and reading.view]
    if viewed:
        correct = np.array([int(t == p) for t, p in viewed])
        report.view_accuracy = float(correct.mean())
        view_groups = [lab.patient_id for lab, reading in pairs if lab.view and reading.view]
        report.view_ci = bootstrap_ci(view_groups, lambda ix: float(correct[ix].mean()), rounds=rounds)
    hits = [_hit(reading, box[0], box[1:], lab.size) for lab, reading in pairs for box in lab.boxes]
    report.boxes = len(hits)
    report.localisation = float(np.mean(hits)) if hits else float("nan")
    peaks = [_peak_hit(reading, box[1:], lab.size) for lab, reading in pairs for box in lab.boxes]
    report.localisation_peak = float(np.mean(peaks)) if peaks else float("nan")
    placed = [_point_hit(reading, box[0], box[1:], lab.size) for lab, reading in pairs for box in lab.boxes]
    report.localisation_finding = float(np.mean(placed)) if placed else float("nan")
    return report


def dice(predicted: np.ndarray, truth: np.ndarray) -> float:
    """Dice overlap of two boolean masks of the same shape (1.0 when both are empty)."""
    p, t = np.asarray(predicted, dtype=bool), np.asarray(truth, dtype=bool)
    total = int(p.sum() + t.sum())
    return 1.0 if total == 0 else 2.0 * int((p & t).sum()) / total


__all__ = [
    "F1_FINDINGS", "NIH_FINDINGS", "LabelledImage", "ReadingReport", "auc", "bootstrap_ci", "dice",
    "evaluate_reading", "f1", "parse_boxes", "parse_nih_labels",
]
