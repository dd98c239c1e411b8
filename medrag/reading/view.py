"""The film's view: PA, AP (NIH's View Position) or lateral.

PA versus AP is a logistic regression (weights in ``weights/view.json``, fitted by
``python -m medrag.training.view_train`` on NIH films split by patient) over the segmenter's pooled
bottleneck features plus the masks' geometry and image statistics: AP films are mostly bedside films with
devices, burned-in "PORTABLE" text, a magnified heart and higher, smaller-looking lungs. Lateral is a
heuristic only, NOT validated: the shared data holds no lateral film. A film is called lateral when the lung
mask is one field with no dip between two lungs; otherwise PA or AP.
"""

from __future__ import annotations

import functools
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from medrag.errors import ConfigError
from medrag.fsutil import atomic_write_text

if TYPE_CHECKING:
    from medrag.reading.segment import Segmentation

VIEW_WEIGHTS = Path(__file__).resolve().parent / "weights" / "view.json"

GEOMETRY_NAMES: tuple[str, ...] = (
    "lung_area", "lung_top", "lung_bottom", "lung_left", "lung_right", "lung_aspect", "heart_area", "ctr",
    "heart_top", "right_left_area", "mean", "sd", "p01", "p05", "p50", "p95", "p99", "top_band", "bottom_band",
    "left_band", "right_band", "white_share", "black_share",
)


@dataclass(frozen=True)
class ViewCall:
    """The view and the classifier's probability for it."""

    label: str
    probability: float


def geometry_features(small: np.ndarray, lungs: np.ndarray, heart: np.ndarray) -> np.ndarray:
    """The :data:`GEOMETRY_NAMES` values of one film (masks and image at the working resolution)."""
    n = float(small.size)
    size = small.shape[0]
    out: list[float] = []
    if lungs.any():
        rows, cols = np.flatnonzero(lungs.any(axis=1)), np.flatnonzero(lungs.any(axis=0))
        top, bottom, left, right = rows[0] / size, rows[-1] / size, cols[0] / size, cols[-1] / size
        half = lungs.shape[1] // 2
        ratio = float(lungs[:, :half].sum() + 1) / float(lungs[:, half:].sum() + 1)
        out += [lungs.sum() / n, top, bottom, left, right, (bottom - top) / max(right - left, 1e-3)]
    else:
        out += [0.0, 0.5, 0.5, 0.5, 0.5, 1.0]
        ratio = 1.0
    if heart.any() and lungs.any():
        hcols, hrows = np.flatnonzero(heart.any(axis=0)), np.flatnonzero(heart.any(axis=1))
        lcols = np.flatnonzero(lungs.any(axis=0))
        out += [heart.sum() / n, (hcols[-1] - hcols[0] + 1) / (lcols[-1] - lcols[0] + 1), hrows[0] / size]
    else:
        out += [0.0, 0.5, 0.5]
    band = max(1, size // 10)
    p = np.percentile(small, [1, 5, 50, 95, 99])
    out += [ratio, float(small.mean()), float(small.std()), *map(float, p), float(small[:band].mean()),
            float(small[-band:].mean()), float(small[:, :band].mean()), float(small[:, -band:].mean()),
            float((small > 0.95).mean()), float((small < 0.05).mean())]
    return np.asarray(out, dtype=np.float32)


def view_features(seg: Segmentation, lungs: np.ndarray, heart: np.ndarray) -> np.ndarray:
    """The classifier's input: pooled network features, then :func:`geometry_features`."""
    return np.concatenate([seg.features.astype(np.float32), geometry_features(seg.small, lungs, heart)])


@dataclass(frozen=True)
class ViewModel:
    """Logistic regression P(AP) over standardised features."""

    mean: np.ndarray
    scale: np.ndarray
    coef: np.ndarray
    intercept: float
    meta: dict[str, object]

    def p_ap(self, features: np.ndarray) -> float:
        """Probability that the film is AP."""
        z = float(((features - self.mean) / self.scale) @ self.coef + self.intercept)
        return 1.0 / (1.0 + math.exp(-max(-50.0, min(50.0, z))))

    def save(self, path: Path = VIEW_WEIGHTS) -> None:
        """Write the model as JSON."""
        payload = {"mean": self.mean.tolist(), "scale": self.scale.tolist(), "coef": self.coef.tolist(),
                   "intercept": self.intercept, "meta": self.meta}
        atomic_write_text(Path(path), json.dumps(payload) + "\n")

    @classmethod
    def load(cls, path: Path = VIEW_WEIGHTS) -> ViewModel:
        """Read a model written by :meth:`save`."""
        if not Path(path).is_file():
            raise ConfigError(f"view classifier {path} is missing: restore it from git or refit it with "
                              "`python -m medrag.training.view_train`.")
        data = json.loads(Path(path).read_text(encoding="utf-8"))
        return cls(np.asarray(data["mean"], dtype=np.float64), np.asarray(data["scale"], dtype=np.float64),
                   np.asarray(data["coef"], dtype=np.float64), float(data["intercept"]), dict(data.get("meta", {})))


@functools.lru_cache(maxsize=1)
def default_view_model() -> ViewModel:
    """The shipped PA/AP classifier."""
    return ViewModel.load(VIEW_WEIGHTS)


def lateral_score(lungs: np.ndarray) -> float:
    """0-1: how much the lung mask looks like one lateral field (1 = no dip between two lungs).

    The dip is the least lung per column in the middle 30-70 % of the mask's width over the most.
    """
    if not lungs.any():
        return 0.0
    profile = lungs.sum(axis=0).astype(np.float64)
    cols = np.flatnonzero(profile)
    c0, c1 = cols[0], cols[-1]
    middle = profile[c0 + int(0.3 * (c1 - c0)): c0 + int(0.7 * (c1 - c0)) + 1]
    return float(middle.min() / profile.max()) if middle.size else 0.0


def classify_view(seg: Segmentation, lungs: np.ndarray, heart: np.ndarray) -> ViewCall:
    """PA, AP or lateral for one segmented film."""
    lateral = lateral_score(lungs)
    if lateral >= 0.75:
        return ViewCall("lateral", round(min(1.0, lateral), 3))
    p = default_view_model().p_ap(view_features(seg, lungs, heart))
    return ViewCall("AP", round(p, 4)) if p >= 0.5 else ViewCall("PA", round(1.0 - p, 4))


__all__ = ["GEOMETRY_NAMES", "VIEW_WEIGHTS", "ViewCall", "ViewModel", "classify_view", "default_view_model",
           "geometry_features", "lateral_score", "view_features"]
