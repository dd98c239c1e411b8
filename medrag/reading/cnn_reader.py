"""``medrag-cnn``: this project's trained classifier as a registered reader, with a heatmap for where.

Its calibrated probability decides each class's status: at or above the class's trained threshold
"present", above :data:`UNCERTAIN_SHARE` of it "uncertain", else "absent". The heatmap (class activation)
is made for the most probable abnormal finding; :mod:`medrag.reading.combine` names the lung zone under
its peak.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from medrag.errors import BackendUnavailableError
from medrag.reading.base import FindingRead, ImageReading, Overlays, ReaderSpec, register_reader

if TYPE_CHECKING:
    from medrag.config import Settings
    from medrag.reading.cnn import CnnReader

#: The classifier's classes that MedRAG names differently.
CLASS_FINDINGS: dict[str, str] = {"infiltration": "opacity"}
#: A probability above this share of the class threshold reads as "uncertain".
UNCERTAIN_SHARE = 0.85
#: The heatmap kept in the history is this coarse (cells per side).
HEATMAP_CELLS = 32


def _status(probability: float, threshold: float) -> str:
    if probability >= threshold:
        return "present"
    return "uncertain" if probability >= UNCERTAIN_SHARE * threshold else "absent"


def _coarse(heatmap: np.ndarray, cells: int = HEATMAP_CELLS) -> np.ndarray:
    h, w = heatmap.shape
    rows = np.linspace(0, h, cells + 1).astype(int)
    cols = np.linspace(0, w, cells + 1).astype(int)
    out = np.zeros((cells, cells), np.float32)
    for i in range(cells):
        for j in range(cells):
            block = heatmap[rows[i] : max(rows[i + 1], rows[i] + 1), cols[j] : max(cols[j + 1], cols[j] + 1)]
            out[i, j] = float(block.mean()) if block.size else 0.0
    peak = float(out.max())
    return out / peak if peak > 0 else out


class MedragCnnReader:
    """The committed medrag-cnn weights (loaded on first use, checksum-checked, never downloaded)."""

    name = "medrag-cnn"

    def __init__(self, cnn: CnnReader) -> None:
        self.cnn = cnn
        self.model = f"medrag-cnn@{str(cnn.meta.get('weights_sha256', ''))[:12]}"

    def read(self, pixels: np.ndarray, *, view_hint: str | None = None) -> ImageReading:
        """Calibrated probabilities for every class, and a heatmap for the most probable abnormal one."""
        output = self.cnn.forward(pixels)
        thresholds = self.cnn.thresholds
        findings: dict[str, FindingRead] = {}
        for name, probability in output.probabilities.items():
            finding = CLASS_FINDINGS.get(name, name)
            status = _status(probability, thresholds.get(name, 0.5))
            findings[finding] = FindingRead(finding, status, float(probability), source="medrag-cnn")  # type: ignore[arg-type]
        abnormal = [(p, c) for c, p in output.probabilities.items() if c != "no finding"]
        heatmap, heatmap_finding = None, ""
        if abnormal:
            probability, top = max(abnormal)
            if findings[CLASS_FINDINGS.get(top, top)].status != "absent":
                heatmap = _coarse(self.cnn.heatmap(pixels, top))
                heatmap_finding = CLASS_FINDINGS.get(top, top)
        return ImageReading(findings=findings, overlays=Overlays(heatmap=heatmap, heatmap_finding=heatmap_finding),
                            readers=("medrag-cnn",))

    def trained_patients(self) -> set[str]:
        """Patient ids the classifier learned from (left out of ``medrag eval reading``)."""
        data = self.cnn.meta.get("data") or {}
        return set(data.get("train_patients") or self.cnn.meta.get("train_patients") or ())


def _factory(settings: Settings) -> MedragCnnReader:
    from medrag.reading.cnn import TRAIN_COMMAND, CnnReader

    cnn = CnnReader()
    if not cnn.available():
        raise BackendUnavailableError(f"the medrag-cnn weights are missing from the repository; `{TRAIN_COMMAND}`")
    return MedragCnnReader(cnn)


register_reader(ReaderSpec("medrag-cnn", _factory, "MedRAG's trained finding classifier with heatmaps (offline)"))

__all__ = ["CLASS_FINDINGS", "HEATMAP_CELLS", "UNCERTAIN_SHARE", "MedragCnnReader"]
