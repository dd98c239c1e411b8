"""``xrv``: torchxrayvision's pretrained DenseNet121 pathology head as an image reader.

Only when its weights are present (``medrag models pull xrv-densenet121-all`` or ``import``): the same file
the ``xrv`` encoder uses, read from torchxrayvision's cache folder, never downloaded. Its 18 outputs are
mapped onto MedRAG's findings; with the official weights they are normalised to the model's operating
points (0.5 = the operating threshold), so 0.5 is where "possible" begins.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

import numpy as np

from medrag.errors import BackendUnavailableError
from medrag.inference_lock import torch_inference
from medrag.reading.base import FindingRead, ImageReading, ReaderSpec, register_reader, status_from_probability

if TYPE_CHECKING:
    from medrag.config import Settings

#: torchxrayvision pathology → MedRAG finding (several may feed one finding: the highest wins).
PATHOLOGY_FINDINGS: dict[str, str] = {
    "Atelectasis": "atelectasis", "Consolidation": "consolidation", "Infiltration": "opacity",
    "Lung Opacity": "opacity", "Pneumothorax": "pneumothorax", "Edema": "edema", "Emphysema": "emphysema",
    "Effusion": "effusion", "Pneumonia": "pneumonia", "Cardiomegaly": "cardiomegaly", "Nodule": "nodule/mass",
    "Mass": "nodule/mass", "Fracture": "fracture",
}
#: On the operating-point scale: at or above PRESENT_AT "present", at or above UNCERTAIN_AT "uncertain".
PRESENT_AT = 0.65
UNCERTAIN_AT = 0.5


class XRVReader:
    """torchxrayvision DenseNet121 (all datasets) pathology probabilities."""

    name = "xrv"

    def __init__(self, settings: Settings) -> None:
        from medrag.encoders.xrv import XRV_WEIGHTS, _load_model
        from medrag.weights import fix_command, xrv_weights_path

        path = xrv_weights_path(XRV_WEIGHTS, settings.xrv_cache_dir)
        if not path.is_file():
            raise BackendUnavailableError(
                f"torchxrayvision weights {XRV_WEIGHTS} are not in {path.parent}; {fix_command('xrv-densenet121-all')}."
            )
        from medrag.devices import select_device

        self.device = settings.torch_device or select_device()
        self._model = _load_model(path, self.device)
        self.model = XRV_WEIGHTS

    def probabilities(self, pixels: np.ndarray) -> dict[str, float]:
        """Pathology name → probability (operating-point normalised when the weights define the points)."""
        import torch

        from medrag.encoders.xrv import preprocess

        model = self._model
        batch = torch.from_numpy(preprocess(pixels)[None]).to(self.device)
        with torch_inference():
            out = model(batch)
            if getattr(model, "op_threshs", None) is None:
                out = torch.sigmoid(out)
        values = out[0].float().cpu().numpy()
        names = list(getattr(model, "pathologies", []))
        return {name: float(v) for name, v in zip(names, values, strict=False) if name and np.isfinite(v)}

    def read(self, pixels: np.ndarray, *, view_hint: str | None = None) -> ImageReading:
        """The pathology head's findings on one image."""
        started = time.perf_counter()
        best: dict[str, tuple[float, str]] = {}
        for pathology, probability in self.probabilities(pixels).items():
            finding = PATHOLOGY_FINDINGS.get(pathology)
            if finding and probability > best.get(finding, (-1.0, ""))[0]:
                best[finding] = (probability, pathology)
        findings = {
            finding: FindingRead(
                finding, status_from_probability(p, PRESENT_AT, UNCERTAIN_AT), p,
                evidence=f"torchxrayvision {pathology} output {p:.2f}", source="xrv",
            )
            for finding, (p, pathology) in best.items()
        }
        return ImageReading(findings=findings, readers=("xrv",), seconds=time.perf_counter() - started)


def _factory(settings: Settings) -> XRVReader:
    return XRVReader(settings)


register_reader(
    ReaderSpec("xrv", _factory, "torchxrayvision DenseNet121 pathology head (needs its weights)", weight_free=False)
)

__all__ = ["PATHOLOGY_FINDINGS", "PRESENT_AT", "UNCERTAIN_AT", "XRVReader"]
