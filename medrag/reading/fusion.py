"""The measurements beside the network: medrag-cnn's output fused with a model of the anatomy measurements.

55 films with cardiomegaly cannot teach a network much, but a cardiothoracic ratio from the masks says a lot
about it; the same holds for the costophrenic recesses and effusion. ``medrag-fusion.json`` (fitted by
``python -m medrag.training.fusion_fit``) holds, for each class where the measurements alone read the
training patients acceptably (out-of-fold AUC at least :data:`~medrag.reading.cnn_reader.ACCEPTABLE_AUC`),
a logistic regression on the anatomy reader's measurements, fitted on the classifier's training patients.
Its logit and the classifier's are each standardised (by constants taken over the held-out films, no labels
used) and added with equal weight, then calibrated and thresholded like the classifier's own outputs.

:func:`fuse_readings` applies it when both the ``anatomy`` and ``medrag-cnn`` readers ran on a film: the
classifier's finding for a fused class gets the fused probability, threshold and status, and its evidence
names the measurement that moved it most. Nothing here needs scikit-learn: the model is numbers in JSON.
"""

from __future__ import annotations

import functools
import json
import math
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from medrag.errors import ConfigError
from medrag.reading.base import FindingRead, ImageReading, display
from medrag.reading.cnn_reader import ACCEPTABLE_AUC, CLASS_FINDINGS, status_for

FUSION_NAME = "medrag-fusion.json"
DEFAULT_FUSION = Path(__file__).resolve().parent / "weights" / FUSION_NAME
FIT_COMMAND = "python -m medrag.training.fusion_fit"


def anatomy_features(anatomy: ImageReading) -> dict[str, float]:
    """The named numbers the fusion reads from the anatomy reader's reading (NaN where not measured)."""
    out = {name: float(value) for name, value in anatomy.measurements.items()}
    out["view AP"] = float(anatomy.view == "AP")
    out["view probability"] = float(anatomy.view_probability)
    out["devices"] = float(len(anatomy.devices))
    cells = anatomy.overlays.opacity
    values = np.asarray(cells, dtype=np.float64)[np.asarray(cells) != 0] if cells is not None else np.zeros(0)
    out["opacity map max"] = float(values.max()) if values.size else 0.0
    out["opacity map mean"] = float(values.mean()) if values.size else 0.0
    out["opacity map share over 2 SD"] = float((values > 2).mean()) if values.size else 0.0
    return out


#: Plain words for the measurement names that are not already words (the anatomy reader's keys).
_FEATURE_WORDS: dict[str, str] = {
    "asymmetry area_ratio": "right-to-left lung area ratio",
    "asymmetry height_ratio": "right-to-left lung height ratio",
    "view probability": "the view model's confidence",
}


def feature_text(name: str, value: float) -> str:
    """A feature and its value as the evidence says it ("cardiothoracic ratio 0.58")."""
    side = name.rsplit("_", 1)[-1]
    if name == "ctr":
        return f"cardiothoracic ratio {value:.2f}"
    if name == "devices":
        return f"{value:.0f} device seen" if round(value) == 1 else f"{value:.0f} devices seen"
    if name == "view AP":
        return "an AP view" if value >= 0.5 else "a PA view"
    if name.startswith("cp_blunted_"):
        return f"{side} costophrenic angle {'blunted' if value >= 0.5 else 'sharp'}"
    if name.startswith("cp_angle_") or name.endswith("costophrenic angle"):
        where = side if name.startswith("cp_angle_") else name.split(" ", 1)[0]
        return f"{where} costophrenic angle {value:.0f}°"
    if name in ("hemithorax_asymmetry", "asymmetry opacity_difference"):
        denser = ("left" if value > 0 else "right") if name == "hemithorax_asymmetry" else \
            ("right" if value > 0 else "left")
        return f"the {denser} hemithorax more opaque ({abs(value):.2f} image SD)"
    if name == "opacity map max":
        return f"the densest lung area {value:+.1f} SD against normal films"
    if name == "opacity map mean":
        return f"the lungs {value:+.1f} SD against normal films on average"
    if name == "opacity map share over 2 SD":
        return f"{value:.0%} of the lungs over 2 SD denser than normal films"
    if name.endswith(" z"):
        return f"{name[:-2]} {value:+.1f} SD against normal films"
    return f"{_FEATURE_WORDS.get(name, name)} {value:.2f}"


def logit(probability: Any) -> Any:
    """log(p / (1 - p)) of a probability or an array of them, clipped away from 0 and 1."""
    p = np.clip(probability, 1e-6, 1 - 1e-6)
    return np.log(p / (1 - p))


@dataclass(frozen=True)
class ClassFusion:
    """One class's measurement model, the standardising constants and the calibration of the fused score."""

    name: str
    coef: np.ndarray
    intercept: float
    mean: np.ndarray
    scale: np.ndarray
    cnn_centre: float
    cnn_spread: float
    anatomy_centre: float
    anatomy_spread: float
    a: float
    b: float
    threshold: float
    auc: float

    def anatomy_logit(self, x: np.ndarray) -> float:
        """The measurement model's logit for one feature vector (already imputed)."""
        return float(self.coef @ ((x - self.mean) / self.scale) + self.intercept)

    def score(self, cnn_probability: float, x: np.ndarray) -> float:
        """The fused score before calibration: both logits standardised and added."""
        return float((logit(cnn_probability) - self.cnn_centre) / self.cnn_spread
                     + (self.anatomy_logit(x) - self.anatomy_centre) / self.anatomy_spread)

    def probability(self, cnn_probability: float, x: np.ndarray) -> float:
        """The calibrated fused probability from the classifier's calibrated probability and the features."""
        return float(1.0 / (1.0 + math.exp(-(self.a * self.score(cnn_probability, x) + self.b))))

    def strongest(self, x: np.ndarray, names: tuple[str, ...]) -> str:
        """The feature that pushed this class's measurement model the most the way it leans (up or down)."""
        pushes = self.coef * (x - self.mean) / self.scale
        leaning = 1.0 if self.anatomy_logit(x) >= self.anatomy_centre else -1.0
        return names[int(np.argmax(leaning * pushes))]


@dataclass(frozen=True)
class FusionModel:
    """The fitted fusion: feature names, their medians (for what was not measured) and the fused classes."""

    features: tuple[str, ...]
    medians: np.ndarray
    classes: dict[str, ClassFusion]
    cnn_weights_sha256: str

    def vector(self, features: dict[str, float]) -> np.ndarray:
        """The features in the model's order, a median where a measurement is missing."""
        raw = np.array([features.get(name, math.nan) for name in self.features], dtype=np.float64)
        return np.where(np.isfinite(raw), raw, self.medians)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> FusionModel:
        """Build from the stamp's JSON (raises ConfigError, saying how to refit, when it is malformed)."""
        try:
            names = tuple(str(n) for n in data["features"])
            classes = {}
            for name, c in data["classes"].items():
                classes[name] = ClassFusion(
                    name, np.array(c["coef"], float), float(c["intercept"]), np.array(c["mean"], float),
                    np.array(c["scale"], float), float(c["cnn_centre"]), float(c["cnn_spread"]),
                    float(c["anatomy_centre"]), float(c["anatomy_spread"]), float(c["a"]), float(c["b"]),
                    float(c["threshold"]), float(c["auc"]))
                if not (len(classes[name].coef) == len(classes[name].mean) == len(classes[name].scale) == len(names)):
                    raise ValueError(f"{name}: {len(classes[name].coef)} weights for {len(names)} features")
            return cls(names, np.array(data["medians"], float), classes, str(data["cnn_weights_sha256"]))
        except (KeyError, TypeError, ValueError) as exc:
            raise ConfigError(f"{FUSION_NAME} is malformed ({exc}); refit it with `{FIT_COMMAND}`") from exc

    @classmethod
    def load(cls, path: Path = DEFAULT_FUSION) -> FusionModel:
        """Read a fusion stamp."""
        try:
            return cls.from_dict(json.loads(path.read_text(encoding="utf-8")))
        except (OSError, ValueError) as exc:
            if isinstance(exc, ConfigError):
                raise
            raise ConfigError(f"cannot read {path} ({exc}); refit it with `{FIT_COMMAND}`") from exc

    def fuse(self, cnn: ImageReading, anatomy: ImageReading) -> ImageReading:
        """The classifier's reading with each fused class re-read from its probability and the measurements."""
        x = self.vector(anatomy_features(anatomy))
        findings = dict(cnn.findings)
        for name, model in self.classes.items():
            finding = CLASS_FINDINGS.get(name, name)
            read = findings.get(finding)
            if read is None or read.probability is None or read.status == "not mentioned":
                continue
            probability = model.probability(read.probability, x)
            status = status_for(probability, model.threshold)
            why = model.strongest(x, self.features)
            evidence = (f"the classifier's {read.probability:.2f} weighed with the measurements, most telling "
                        f"{feature_text(why, float(x[self.features.index(why)]))}; held-out AUC together "
                        f"{model.auc:.2f}")
            if model.auc < ACCEPTABLE_AUC and status == "present":
                evidence += f"; read poorly, so at most 'possible' for {display(finding)}"
                status = "uncertain"
            findings[finding] = replace(read, status=status, probability=probability,  # type: ignore[arg-type]
                                        threshold=model.threshold, evidence=evidence, source=FUSED_SOURCE)
        return replace(cnn, findings=findings)


#: The ``source`` of a finding whose probability already weighs the measurements: merging does not count them again.
FUSED_SOURCE = "medrag-cnn with the measurements"


def is_fused(read: FindingRead) -> bool:
    """Whether ``read``'s probability already weighs the anatomy measurements (a fused class)."""
    return FUSED_SOURCE in read.source


@functools.cache
def default_fusion() -> FusionModel | None:
    """The shipped fusion, or None when the repository has none."""
    return FusionModel.load() if DEFAULT_FUSION.is_file() else None


def fuse_readings(readings: list[ImageReading], fusion: FusionModel | None) -> list[ImageReading]:
    """``readings`` with the classifier's replaced by its fused reading when the anatomy reader also ran."""
    if fusion is None:
        return readings
    anatomy = next((r for r in readings if r.readers == ("anatomy",)), None)
    if anatomy is None:
        return readings
    return [fusion.fuse(r, anatomy) if r.readers == ("medrag-cnn",) else r for r in readings]


__all__ = ["DEFAULT_FUSION", "FIT_COMMAND", "FUSED_SOURCE", "FUSION_NAME", "ClassFusion", "FusionModel",
           "anatomy_features",
           "default_fusion", "feature_text", "fuse_readings", "is_fused", "logit"]
