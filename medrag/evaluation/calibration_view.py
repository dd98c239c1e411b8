"""What the Settings page shows of a library's own calibration: its state, and per class what it changed.

Nothing is computed here: the per-class figures were measured by ``medrag eval reading --write-calibration``
and stored with the calibration (:mod:`medrag.reading.calibration`), the shipped thresholds are the ones
committed beside the weights (``medrag-cnn.json``, and ``medrag-fusion.json`` for the fused classes, whose
threshold applies to the fused probability).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from medrag.evaluation.quality import WEIGHTS_DIR, load_json
from medrag.reading.calibration import LibraryCalibration
from medrag.reading.cnn_reader import CLASS_FINDINGS


@dataclass(frozen=True)
class CalibrationClassRow:
    """One classifier class: how the library's calibration reads it, beside the shipped numbers."""

    #: the finding's name in the reading (the classifier's "infiltration" reads as "opacity")
    finding: str
    #: films of this library carrying the finding (None: written before the count was stored)
    positives: int | None
    refitted: bool
    fused: bool
    shipped_threshold: float | None
    library_threshold: float | None
    #: F1 with the shipped numbers on the library's films, and cross-fitted with its own (F1 findings only)
    f1_shipped: float | None
    f1_library: float | None
    #: the fewest positives a class is refitted with
    min_positives: int

    @property
    def fitted_here(self) -> str:
        """Whether the library's calibration refits this class, and why not when it does not."""
        if self.refitted:
            return "yes, on the fused score" if self.fused else "yes"
        if self.positives is None or not self.min_positives:
            return "no"
        return f"no: {self.positives} positives, fewer than {self.min_positives}"


def _number(value: Any) -> float | None:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def calibration_rows(calibration: LibraryCalibration, weights_dir: Path = WEIGHTS_DIR) -> list[CalibrationClassRow]:
    """One row per shipped classifier class, in the classifier's order."""
    cnn = load_json("medrag-cnn.json", weights_dir)
    fusion = load_json("medrag-fusion.json", weights_dir).get("classes", {})
    shipped = cnn.get("thresholds", {}) if isinstance(cnn.get("thresholds"), dict) else {}
    classes = [str(c) for c in cnn.get("classes", shipped)] or sorted(calibration.classes)
    per_class = calibration.figures.get("per_class") or {}
    minimum = int(calibration.figures.get("min_positives") or 0)
    rows = []
    for c in classes:
        fused = isinstance(fusion, dict) and isinstance(fusion.get(c), dict)
        shipped_threshold = _number(fusion[c].get("threshold")) if fused else _number(shipped.get(c))
        own = calibration.fused.get(c) if fused else calibration.classes.get(c)
        stored = per_class.get(c)
        figures: dict[str, Any] = stored if isinstance(stored, dict) else {}
        positives = figures.get("positives")
        rows.append(CalibrationClassRow(
            finding=CLASS_FINDINGS.get(c, c), positives=int(positives) if isinstance(positives, int) else None,
            refitted=own is not None, fused=fused, shipped_threshold=shipped_threshold,
            library_threshold=own.threshold if own is not None else shipped_threshold,
            f1_shipped=_number(figures.get("f1_shipped")), f1_library=_number(figures.get("f1_library")),
            min_positives=minimum))
    return rows


__all__ = ["CalibrationClassRow", "calibration_rows"]
