"""Where the lungs are denser than normal films at the same place: a per-position opacity z-score map.

The six zone z-scores (:mod:`medrag.reading.zones`) say *which third* of a lung is dense; this map says
*where*. Each film's lung fields are framed by their bounding box and resampled to a ``grid`` x ``grid``
frame, the brightness standardised by the lung pixels' own mean and SD (so exposure matters less). An
:class:`OpacityTemplate` holds the mean and SD of that frame over normal films (NIH "No Finding", fitted by
``python -m medrag.training.opacity_template_fit``, per view); a film's map is its frame minus the mean, in
SDs, smoothed, and put back over its lungs. Its peak is the reading's "where" for an opacity.

Why not the classifier's class-activation map: on the 36 NIH boxes of held-out patients the map's peak fell in
the box 4 times (11 %), below a random point in the lungs (22 %); this map's peak 11 times (31 %, BENCHMARKS.md).
"""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image
from scipy import ndimage

from medrag.errors import ConfigError
from medrag.fsutil import atomic_write_text

DEFAULT_TEMPLATE = Path(__file__).resolve().parent / "weights" / "opacity_template.json"
#: Frame cells per side (the segmenter works at 128 px, so a lung field is about 40 x 80 of its pixels).
GRID = 32
#: Added to every cell's SD so cells at the lung edge (few films, little spread) cannot dominate the map.
SD_FLOOR = 0.2
#: Gaussian smoothing of the z-scores, in frame cells (a lobe's opacity spans several cells; noise does not).
SMOOTH_CELLS = 1.0
#: The viewer's colour scale saturates at this many SD (untinted under 1 SD).
MAX_Z = 3.0
#: A cell counts only where at least this share of the normal films had lung (the frame's corners and the
#: mediastinum between the lungs are lung in few films: their statistics say nothing).
MIN_COVERAGE = 0.5


def _resize(values: np.ndarray, rows: int, cols: int) -> np.ndarray:
    return np.asarray(Image.fromarray(values.astype(np.float32), mode="F").resize((cols, rows),
                                                                                Image.Resampling.BILINEAR))


def lung_frame(lungs: np.ndarray) -> tuple[int, int, int, int] | None:
    """(top, bottom, left, right) of the lungs' bounding box (exclusive ends), or None without lungs."""
    rows, cols = np.nonzero(lungs)
    if len(rows) < 50:
        return None
    return int(rows.min()), int(rows.max()) + 1, int(cols.min()), int(cols.max()) + 1


def framed(small: np.ndarray, lungs: np.ndarray, grid: int = GRID) -> tuple[np.ndarray, np.ndarray] | None:
    """(standardised brightness, lung coverage >= 0.5) of the lungs' frame at ``grid`` x ``grid``, or None."""
    frame = lung_frame(lungs)
    if frame is None:
        return None
    top, bottom, left, right = frame
    values = small[lungs]
    z = (small - float(values.mean())) / (float(values.std()) + 1e-6)
    inside = _resize(lungs[top:bottom, left:right].astype(np.float32), grid, grid) >= 0.5
    return _resize(z[top:bottom, left:right], grid, grid), inside


@dataclass(frozen=True)
class OpacityTemplate:
    """Normal films' framed brightness: mean, SD and lung coverage per cell, per view ("all", "PA", "AP")."""

    mean: dict[str, np.ndarray]
    sd: dict[str, np.ndarray]
    #: the share of the view's normal films with lung in each cell
    coverage: dict[str, np.ndarray]
    films: dict[str, int]
    source: str = ""

    @property
    def grid(self) -> int:
        """Cells per side."""
        return int(self.mean["all"].shape[0])

    def for_view(self, view: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(mean, SD, coverage) of the view's normal films, or of all of them when that view has none."""
        key = view.upper() if view and view.upper() in self.mean else "all"
        return self.mean[key], self.sd[key], self.coverage[key]

    @classmethod
    def fit(cls, frames: dict[str, list[tuple[np.ndarray, np.ndarray]]], source: str) -> OpacityTemplate:
        """Per-cell mean and SD (lung cells only) of each view's framed normal films (``view`` → frames)."""
        mean, sd, coverage, films = {}, {}, {}, {}
        for view, items in frames.items():
            if not items:
                continue
            values = np.stack([v for v, _ in items])
            weight = np.stack([m for _, m in items]).astype(np.float64)
            count = weight.sum(0).clip(min=1.0)
            mu = (values * weight).sum(0) / count
            sd[view] = np.sqrt((((values - mu) ** 2) * weight).sum(0) / count).astype(np.float32)
            mean[view] = mu.astype(np.float32)
            coverage[view] = weight.mean(0).astype(np.float32)
            films[view] = len(items)
        if "all" not in mean:
            raise ConfigError("an opacity template needs normal films under 'all'")
        return cls(mean, sd, coverage, films, source)

    def to_json(self) -> str:
        """The template as JSON (cells rounded to 4 decimals)."""
        return json.dumps({
            "source": self.source, "grid": self.grid, "sd_floor": SD_FLOOR, "smooth_cells": SMOOTH_CELLS,
            "films": self.films,
            "mean": {k: np.round(v, 4).tolist() for k, v in self.mean.items()},
            "sd": {k: np.round(v, 4).tolist() for k, v in self.sd.items()},
            "coverage": {k: np.round(v, 3).tolist() for k, v in self.coverage.items()},
        }, indent=0)

    def save(self, path: Path) -> None:
        """Write the template atomically."""
        atomic_write_text(path, self.to_json())

    @classmethod
    def load(cls, path: Path = DEFAULT_TEMPLATE) -> OpacityTemplate:
        """Read a template written by :meth:`save`."""
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            mean = {k: np.asarray(v, dtype=np.float32) for k, v in data["mean"].items()}
            sd = {k: np.asarray(v, dtype=np.float32) for k, v in data["sd"].items()}
            coverage = {k: np.asarray(v, dtype=np.float32) for k, v in data["coverage"].items()}
            template = cls(mean, sd, coverage, {k: int(v) for k, v in data["films"].items()},
                           str(data.get("source", "")))
            grids = (*mean.values(), *sd.values(), *coverage.values())
            if any(m.shape != (template.grid, template.grid) for m in grids) or set(sd) != set(mean) != set(coverage):
                raise ValueError("cells are not square grids of one size for every view")
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise ConfigError(f"opacity template {path} is unreadable ({exc}); restore it from git or refit it with "
                              "`python -m medrag.training.opacity_template_fit`") from exc
        return template


@functools.lru_cache(maxsize=1)
def default_template() -> OpacityTemplate:
    """The shipped template (fitted on NIH normal films), read once."""
    return OpacityTemplate.load(DEFAULT_TEMPLATE)


def opacity_map(small: np.ndarray, lungs: np.ndarray, template: OpacityTemplate, view: str = "") -> np.ndarray:
    """SD by which each lung pixel is denser than normal films there (``small``'s shape; 0 outside the lungs).

    Negative values (darker than normal) are kept as 0: the map shows opacity, not lucency. Cells that are not
    lung on this film, or on too few normal films (:data:`MIN_COVERAGE`), give no evidence (0).
    """
    out = np.zeros(small.shape, dtype=np.float32)
    frame = lung_frame(lungs)
    got = framed(small, lungs, template.grid)
    if frame is None or got is None:
        return out
    values, inside = got
    mean, sd, coverage = template.for_view(view)
    z = np.where(inside & (coverage >= MIN_COVERAGE), (values - mean) / (sd + SD_FLOOR), 0.0)
    z = ndimage.gaussian_filter(z, SMOOTH_CELLS, mode="nearest")
    top, bottom, left, right = frame
    out[top:bottom, left:right] = _resize(z, bottom - top, right - left)
    out[~lungs] = 0.0
    return np.maximum(out, 0.0)


__all__ = ["DEFAULT_TEMPLATE", "GRID", "MAX_Z", "MIN_COVERAGE", "SD_FLOOR", "SMOOTH_CELLS", "OpacityTemplate",
           "default_template", "framed", "lung_frame", "opacity_map"]
