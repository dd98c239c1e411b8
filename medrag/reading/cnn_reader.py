"""``medrag-cnn``: this project's trained classifier as a registered reader, with a heatmap for where.

Its calibrated probability decides each class's status: at or above the class's trained threshold
"present", above :data:`UNCERTAIN_SHARE` of it "uncertain", else "absent". The heatmap (class activation)
is made for the most probable abnormal finding; :mod:`medrag.reading.combine` names the lung zone under
its peak. A class whose held-out AUC interval reaches chance (its lower 95 % bound at or below
:data:`CHANCE_AUC`: consolidation for the shipped weights, AUC 0.50) is not called by the classifier at all:
its status is "not mentioned", its probability is kept (the evaluation still scores it) and its evidence
says why; another reader's word, or for consolidation the airspace-opacity calls, decide it
(:mod:`medrag.reading.combine`). Capping it at "possible" made nearly every film read "possible
consolidation" at probability 0.05. A class it reads poorly (held-out AUC under :data:`ACCEPTABLE_AUC`, the
usual bar for acceptable discrimination: nodule/mass 0.62, airspace opacity 0.64, cardiomegaly 0.68) is at most
"possible" by the classifier alone; a measurement that says present (a zone over 2 SD, a ratio over its band)
can still make it present. Called "present" at its F1 threshold, nodule/mass was "present" on 127 of 299
held-out films, 26 of them with a nodule or mass.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numpy as np

from medrag.errors import BackendUnavailableError
from medrag.reading.base import FindingRead, ImageReading, Overlays, ReaderSpec, display, register_reader
from medrag.reading.cnn import classifier_identity
from medrag.reading.grids import block_mean

if TYPE_CHECKING:
    from medrag.config import Settings
    from medrag.reading.cnn import CnnReader

#: The classifier's classes that MedRAG names differently.
CLASS_FINDINGS: dict[str, str] = {"infiltration": "opacity"}
#: A probability above this share of the class threshold reads as "uncertain".
UNCERTAIN_SHARE = 0.85
#: A class whose held-out AUC's lower 95 % bound is at or below this is not shown to beat chance.
CHANCE_AUC = 0.5
#: A class whose held-out AUC is under this is read poorly: the classifier alone says at most "possible".
ACCEPTABLE_AUC = 0.7
#: Marks the evidence of a class the classifier is not shown to read (the answer then skips its probability).
UNPROVEN_NOTE = "the classifier is not shown to beat chance for"
#: The heatmap kept in the history is this coarse (cells per side).
HEATMAP_CELLS = 32


def status_for(probability: float, threshold: float) -> str:
    """present at or above the threshold, uncertain above :data:`UNCERTAIN_SHARE` of it, else absent."""
    if probability >= threshold:
        return "present"
    return "uncertain" if probability >= UNCERTAIN_SHARE * threshold else "absent"


def _coarse(heatmap: np.ndarray, cells: int = HEATMAP_CELLS) -> np.ndarray:
    out = block_mean(heatmap, cells)
    peak = float(out.max())
    return out / peak if peak > 0 else out


class MedragCnnReader:
    """The committed medrag-cnn weights (loaded on first use, checksum-checked, never downloaded)."""

    name = "medrag-cnn"

    def __init__(self, cnn: CnnReader) -> None:
        self.cnn = cnn
        self.model = f"medrag-cnn@{classifier_identity(cnn.meta)[:12]}"
        self.unproven = unproven_classes(cnn.meta)
        self.poor = {name: auc for name, auc in held_out_aucs(cnn.meta).items()
                     if auc < ACCEPTABLE_AUC and name not in self.unproven}
        #: called with each film's classifier output (``medrag eval reading`` keeps it for its refits)
        self.on_output: Callable[[Any], None] | None = None

    def read(self, pixels: np.ndarray, *, view_hint: str | None = None) -> ImageReading:
        """Calibrated probabilities for every class, and a heatmap for the most probable abnormal one."""
        output = self.cnn.forward(pixels)
        if self.on_output is not None:
            self.on_output(output)
        thresholds = self.cnn.thresholds
        findings: dict[str, FindingRead] = {}
        for name, probability in output.probabilities.items():
            finding = CLASS_FINDINGS.get(name, name)
            threshold = thresholds.get(name, 0.5)
            status = status_for(probability, threshold)
            evidence = ""
            if name in self.unproven:
                auc, low, high = self.unproven[name]
                evidence = (f"{UNPROVEN_NOTE} {display(finding)} (held-out AUC {auc:.2f}, "
                            f"95% CI {low:.2f}-{high:.2f}), so it does not call it")
                status = "not mentioned"
            elif name in self.poor and status == "present":
                evidence = (f"the classifier reads {display(finding)} poorly (held-out AUC {self.poor[name]:.2f}), "
                            "so it says at most 'possible'")
                status = "uncertain"
            findings[finding] = FindingRead(finding, status, float(probability), evidence=evidence,  # type: ignore[arg-type]
                                            source="medrag-cnn", threshold=float(threshold))
        abnormal = [(p, c) for c, p in output.probabilities.items() if c != "no finding" and c not in self.unproven]
        heatmap, heatmap_finding = None, ""
        if abnormal:
            probability, top = max(abnormal)
            if findings[CLASS_FINDINGS.get(top, top)].status in ("present", "uncertain"):
                heatmap = _coarse(self.cnn.heatmap(pixels, top))
                heatmap_finding = CLASS_FINDINGS.get(top, top)
        return ImageReading(findings=findings, overlays=Overlays(heatmap=heatmap, heatmap_finding=heatmap_finding),
                            readers=("medrag-cnn",))

    def trained_patients(self) -> set[str]:
        """Patient ids the classifier learned from (left out of ``medrag eval reading``)."""
        data = self.cnn.meta.get("data") or {}
        return set(data.get("train_patients") or self.cnn.meta.get("train_patients") or ())


def _per_class(meta: dict[str, object]) -> dict[str, dict[str, Any]]:
    """The held-out figures per class in the weights' stamp (empty when it has none)."""
    metrics = meta.get("metrics")
    per_class = metrics.get("held_out", {}).get("per_class", {}) if isinstance(metrics, dict) else {}
    return {name: figures for name, figures in per_class.items() if isinstance(figures, dict)}


def held_out_aucs(meta: dict[str, object]) -> dict[str, float]:
    """Each class's held-out AUC from the weights' stamp (classes without one left out)."""
    return {name: float(figures["auc"]) for name, figures in _per_class(meta).items()
            if figures.get("auc") is not None}


def unproven_classes(meta: dict[str, object]) -> dict[str, tuple[float, float, float]]:
    """Classes whose held-out AUC interval reaches :data:`CHANCE_AUC`: class → (AUC, low, high)."""
    out = {}
    for name, figures in _per_class(meta).items():
        interval = figures.get("auc_ci95") or []
        if len(interval) == 2 and interval[0] is not None and float(interval[0]) <= CHANCE_AUC:
            out[name] = (float(figures.get("auc", float("nan"))), float(interval[0]), float(interval[1]))
    return out


def _factory(settings: Settings) -> MedragCnnReader:
    from medrag.reading.cnn import TRAIN_COMMAND, CnnReader

    cnn = CnnReader()
    if not cnn.available():
        raise BackendUnavailableError(f"the medrag-cnn weights are missing from the repository; `{TRAIN_COMMAND}`")
    return MedragCnnReader(cnn)


register_reader(ReaderSpec("medrag-cnn", _factory, "MedRAG's trained finding classifier with heatmaps (offline)"))

__all__ = ["ACCEPTABLE_AUC", "CHANCE_AUC", "CLASS_FINDINGS", "HEATMAP_CELLS", "UNCERTAIN_SHARE", "UNPROVEN_NOTE",
           "MedragCnnReader", "held_out_aucs", "status_for", "unproven_classes"]
