"""Lung zones named by the patient's side, their opacity, and z-scores against normal films.

On a PA or AP film the patient's right lung is on the image's left. Each lung is split into thirds of its
own height (upper, middle, lower zone). A zone's *opacity* is its mean brightness in units of the
lung fields' own spread: (zone mean - median of both lungs' darkest quarter) / SD of the image, so exposure
and crop matter less; :class:`ZoneNorms` turns it into SD above the mean of normal films (fitted from NIH
"No Finding" films by ``python -m medrag.training.zone_norms_fit``, or from a library's normal cases).
"""

from __future__ import annotations

import functools
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from scipy import ndimage

from medrag.errors import ConfigError
from medrag.fsutil import atomic_write_text

SIDES: tuple[str, ...] = ("right", "left")
LEVELS: tuple[str, ...] = ("upper", "middle", "lower")
DEFAULT_NORMS = Path(__file__).resolve().parent / "weights" / "zone_norms.json"


def zone_name(side: str, level: str) -> str:
    """``"right lower zone"`` style names (the patient's side), as in :data:`medrag.reading.base.ZONES`."""
    return f"{side} {level} zone"


def split_lungs(lungs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(right, left) lung masks by the PATIENT's side: the patient's right lung is on the image's left.

    The two largest connected components are the lungs; when the lungs touch (one component), they are
    cut at the column with the least lung between the middle 30-70 % of the mask's width.
    """
    mask = np.asarray(lungs, dtype=bool)
    empty = np.zeros_like(mask)
    if not mask.any():
        return empty, empty.copy()
    labels, count = ndimage.label(mask)
    sizes = ndimage.sum_labels(mask, labels, index=np.arange(1, count + 1))
    order = np.argsort(sizes)[::-1]
    cols = np.flatnonzero(mask.any(axis=0))
    c0, c1 = int(cols[0]), int(cols[-1])
    if count >= 2 and sizes[order[1]] >= 0.15 * sizes[order[0]]:
        centres = ndimage.center_of_mass(mask, labels, [order[0] + 1, order[1] + 1])
        split = (centres[0][1] + centres[1][1]) / 2.0
    else:
        profile = mask.sum(axis=0)
        lo, hi = c0 + int(0.3 * (c1 - c0)), c0 + int(0.7 * (c1 - c0)) + 1
        split = float(lo + int(np.argmin(profile[lo:hi]))) if hi > lo else (c0 + c1) / 2.0
    # Every component goes wholly to the side of its centre (small islands included).
    right, left = empty.copy(), empty.copy()
    centres_all = ndimage.center_of_mass(mask, labels, np.arange(1, count + 1))
    for k, (_r, c) in enumerate(centres_all, start=1):
        component = labels == k
        if count >= 2 and sizes[order[1]] >= 0.15 * sizes[order[0]]:
            (right if c < split else left)[component] = True
        else:
            col_index = np.arange(mask.shape[1])[None, :]
            right |= component & (col_index < split)
            left |= component & (col_index >= split)
    return right, left


def zone_masks(right: np.ndarray, left: np.ndarray) -> dict[str, np.ndarray]:
    """The six zone masks: each lung cut into thirds of its own height."""
    out: dict[str, np.ndarray] = {}
    for side, lung in (("right", right), ("left", left)):
        rows = np.flatnonzero(lung.any(axis=1))
        for i, level in enumerate(LEVELS):
            zone = np.zeros_like(lung)
            if rows.size:
                top, height = int(rows[0]), int(rows[-1]) - int(rows[0]) + 1
                a, b = top + int(round(i * height / 3)), top + int(round((i + 1) * height / 3))
                zone[a:b] = lung[a:b]
            out[zone_name(side, level)] = zone
    return out


def zone_opacities(small: np.ndarray, zones: Mapping[str, np.ndarray]) -> dict[str, float]:
    """Each zone's opacity: (zone mean - the lungs' dark-quarter median) / image SD; NaN for an empty zone.

    ``small`` is the grey image at the masks' resolution, in [0, 1].
    """
    union = np.zeros(small.shape, dtype=bool)
    for mask in zones.values():
        union |= mask
    if not union.any():
        return {name: math.nan for name in zones}
    lung_vals = small[union]
    air = float(np.median(lung_vals[lung_vals <= np.percentile(lung_vals, 25)]))
    spread = float(small.std()) + 1e-6
    return {name: (float(small[mask].mean()) - air) / spread if mask.any() else math.nan
            for name, mask in zones.items()}


@dataclass
class ZoneNorms:
    """Mean and SD of each zone's opacity on normal films, overall and per view (PA, AP).

    Any named measurement can be normed the same way (the costophrenic recesses are).
    """

    #: view ("all", "PA", "AP") → zone → (mean, sd, n)
    stats: dict[str, dict[str, tuple[float, float, int]]] = field(default_factory=dict)
    source: str = ""

    @classmethod
    def fit(cls, samples: Sequence[Mapping[str, float]], views: Sequence[str] | None = None,
            source: str = "") -> ZoneNorms:
        """Fit from normal films' zone opacities (one mapping per film), optionally grouped by view
        (a view needs 10 films to get its own norms)."""
        if not samples:
            raise ConfigError("ZoneNorms.fit needs at least one normal film's zone opacities.")
        groups: dict[str, list[Mapping[str, float]]] = {"all": list(samples)}
        for sample, view in zip(samples, views or (), strict=False):
            groups.setdefault(_view_key(view), []).append(sample)
        stats: dict[str, dict[str, tuple[float, float, int]]] = {}
        for key, items in groups.items():
            if key == "" or len(items) < 10:
                continue
            per_zone: dict[str, tuple[float, float, int]] = {}
            for zone in sorted({key for s in items for key in s}):
                vals = np.array([s[zone] for s in items if zone in s and math.isfinite(s[zone])])
                if vals.size >= 2:
                    per_zone[zone] = (float(vals.mean()), float(max(vals.std(ddof=1), 1e-3)), int(vals.size))
            stats[key] = per_zone
        return cls(stats=stats, source=source)

    def z_scores(self, opacities: Mapping[str, float], view: str | None = None) -> dict[str, float]:
        """Each zone's SD above the normal films' mean (the view's norms when fitted, else all films')."""
        table = self.stats.get(_view_key(view or ""), self.stats.get("all", {}))
        out: dict[str, float] = {}
        for zone, value in opacities.items():
            mean, sd, _n = table.get(zone, (math.nan, math.nan, 0))
            out[zone] = (value - mean) / sd if math.isfinite(value) and math.isfinite(mean) else math.nan
        return out

    def to_json(self) -> str:
        """JSON text (see :meth:`from_json`)."""
        payload = {"source": self.source, "opacity": "(zone mean - lungs' darkest-quarter median) / image SD",
                   "stats": {view: {zone: {"mean": round(m, 5), "sd": round(s, 5), "n": n}
                                    for zone, (m, s, n) in table.items()} for view, table in self.stats.items()}}
        return json.dumps(payload, indent=1) + "\n"

    @classmethod
    def from_json(cls, text: str) -> ZoneNorms:
        """Parse :meth:`to_json`'s output."""
        data = json.loads(text)
        stats = {view: {zone: (float(v["mean"]), float(v["sd"]), int(v["n"])) for zone, v in table.items()}
                 for view, table in data.get("stats", {}).items()}
        return cls(stats=stats, source=str(data.get("source", "")))

    def save(self, path: Path) -> None:
        """Write the norms as JSON (atomically)."""
        atomic_write_text(Path(path), self.to_json())

    @classmethod
    def load(cls, path: Path) -> ZoneNorms:
        """Read norms written by :meth:`save`; ConfigError when missing."""
        path = Path(path)
        if not path.is_file():
            raise ConfigError(f"zone norms {path} not found: fit them with "
                              "`python -m medrag.training.zone_norms_fit` or restore them from git.")
        return cls.from_json(path.read_text(encoding="utf-8"))


def _view_key(view: str) -> str:
    v = view.strip().upper()
    return "AP" if v.startswith("AP") else ("PA" if v == "PA" else ("all" if v == "ALL" else ""))


@functools.lru_cache(maxsize=1)
def default_norms() -> ZoneNorms:
    """The norms shipped with the repository (NIH "No Finding" films of ../shared/data/nih-train)."""
    return ZoneNorms.load(DEFAULT_NORMS)


__all__ = [
    "DEFAULT_NORMS", "LEVELS", "SIDES", "ZoneNorms", "default_norms", "split_lungs", "zone_masks", "zone_name",
    "zone_opacities",
]
