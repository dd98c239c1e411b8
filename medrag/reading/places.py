"""Where a reading puts each finding, as one point: what a teacher would point at on the film.

- cardiomegaly: the centre of the heart's outline (the enlarged thing is the heart itself);
- effusion: the costophrenic angle (the lowest, most lateral part of a lung's outline) on the side the reading
  names, else on the side whose lower zone or costophrenic recess is denser than normal films;
- pneumothorax: the apex of the lung field that is smaller than normal films' proportion, by more than their
  spread (a collapsed lung draws in from the chest wall, and free air rises to the apex of an upright film);
- every other finding: the middle of the denser-than-normal map's densest region, else the classifier heatmap's
  hottest cell.

Points are (x, y) in original-image pixels; ``None`` when the reading has nothing to point with. Sides are the
patient's, as everywhere in :mod:`medrag.reading`.
"""

from __future__ import annotations

import numpy as np

from medrag.reading.base import ImageReading
from medrag.reading.grids import densest_region, peak

#: The costophrenic angle is looked for in this lowest share of a lung outline's height.
ANGLE_BAND = 0.1
#: The right lung's area over the left's on normal films: the median of the anatomy reader's ratio on the 630
#: NIH "No Finding" films of nih-train (log ratio -0.073, SD 0.18; 2026-12-07). The heart makes the left smaller.
NORMAL_AREA_RATIO = 0.93
#: The SD of the log of that ratio on the same films: a ratio within one SD of normal names no side.
NORMAL_AREA_LOG_SD = 0.18


def finding_point(reading: ImageReading, finding: str, size: tuple[int, int]) -> tuple[float, float] | None:
    """The point (x, y) the reading gives for ``finding`` on an image of ``size`` (height, width)."""
    contours = reading.overlays.contours
    if finding == "cardiomegaly" and contours.get("heart"):
        return _centre(contours["heart"])
    if finding == "effusion":
        side = effusion_side(reading)
        if side and contours.get(f"{side} lung"):
            return costophrenic_point(contours[f"{side} lung"], contours)
    if finding == "pneumothorax":
        side = pneumothorax_side(reading)
        if side and contours.get(f"{side} lung"):
            return apex_point(contours[f"{side} lung"])
    return map_peak(reading, size)


def map_peak(reading: ImageReading, size: tuple[int, int]) -> tuple[float, float] | None:
    """The middle of the opacity map's densest region (else the heatmap's hottest cell), in image pixels."""
    opacity, heatmap = reading.overlays.opacity, reading.overlays.heatmap
    grid, locate = (opacity, densest_region) if opacity is not None else (heatmap, peak)
    if grid is None or not np.asarray(grid).size:
        return None
    row, col, _ = locate(np.asarray(grid))
    return float(col * size[1]), float(row * size[0])


def effusion_side(reading: ImageReading) -> str:
    """"right" or "left": the side the reading places an effusion on, else the denser lower hemithorax."""
    read = reading.findings.get("effusion")
    return side_of_effusion(read.where if read else (), reading.zones, reading.measurements)


def side_of_effusion(where: tuple[str, ...], zones: dict[str, dict[str, float]],
                     measurements: dict[str, float]) -> str:
    """The side named in ``where``, else the one whose lower zone or costophrenic recess is the more SD denser
    than normal films ("" when neither was measured)."""
    for zone in where:
        for side in ("right", "left"):
            if zone.startswith(side):
                return side
    scores = {side: max(zones.get(f"{side} lower zone", {}).get("z", -np.inf),
                        measurements.get(f"{side} costophrenic recess z", -np.inf))
              for side in ("right", "left")}
    best = max(scores, key=lambda s: scores[s])
    return best if np.isfinite(scores[best]) else ""


def pneumothorax_side(reading: ImageReading) -> str:
    """"right" or "left": the side the reading places a pneumothorax on, else the smaller lung field."""
    read = reading.findings.get("pneumothorax")
    return side_of_pneumothorax(read.where if read else (), reading.measurements)


def side_of_pneumothorax(where: tuple[str, ...], measurements: dict[str, float]) -> str:
    """The side named in ``where``, else the lung whose area is smaller than :data:`NORMAL_AREA_RATIO` makes it
    by more than :data:`NORMAL_AREA_LOG_SD` ("" when the areas were not measured or are within normal spread)."""
    for zone in where:
        for side in ("right", "left"):
            if zone.startswith(side):
                return side
    ratio = measurements.get("asymmetry area_ratio", float("nan"))
    if not np.isfinite(ratio) or ratio <= 0:
        return ""
    off = float(np.log(ratio / NORMAL_AREA_RATIO))
    if abs(off) < NORMAL_AREA_LOG_SD:
        return ""
    return "right" if off < 0 else "left"


def apex_point(outline: list[tuple[float, float]]) -> tuple[float, float]:
    """The top of a lung ``outline``: the middle of its points in the highest :data:`ANGLE_BAND` of its height."""
    points = np.asarray(outline, dtype=np.float64)
    top, bottom = float(points[:, 1].min()), float(points[:, 1].max())
    high = points[points[:, 1] <= top + ANGLE_BAND * (bottom - top) / 2]
    return float(np.median(high[:, 0])), top


def costophrenic_point(outline: list[tuple[float, float]],
                       contours: dict[str, list[tuple[float, float]]]) -> tuple[float, float]:
    """The most lateral point of the lowest :data:`ANGLE_BAND` of a lung ``outline`` (lateral: away from the
    midway between both lungs' centres, or from the outline's own centre when the other lung is missing)."""
    points = np.asarray(outline, dtype=np.float64)
    lungs = [np.asarray(c, dtype=np.float64) for k, c in contours.items() if k.endswith("lung") and c]
    centres = [lung.mean(axis=0)[0] for lung in lungs]
    midline = float(np.mean(centres)) if len(centres) == 2 else float(points[:, 0].mean())
    own = float(points[:, 0].mean())
    top, bottom = float(points[:, 1].min()), float(points[:, 1].max())
    low = points[points[:, 1] >= bottom - ANGLE_BAND * (bottom - top)]
    outward = np.sign(own - midline) or 1.0
    x, y = low[int(np.argmax(outward * low[:, 0]))]
    return float(x), float(y)


def _centre(outline: list[tuple[float, float]]) -> tuple[float, float]:
    """The area centroid of a closed outline (the vertices' mean when it encloses no area)."""
    pts = np.asarray(outline, dtype=np.float64)
    x, y = pts[:, 0], pts[:, 1]
    xn, yn = np.roll(x, -1), np.roll(y, -1)
    cross = x * yn - xn * y
    area = cross.sum() / 2
    if abs(area) < 1e-9:
        return float(x.mean()), float(y.mean())
    return float(((x + xn) * cross).sum() / (6 * area)), float(((y + yn) * cross).sum() / (6 * area))


__all__ = [
    "ANGLE_BAND",
    "NORMAL_AREA_LOG_SD",
    "NORMAL_AREA_RATIO",
    "apex_point",
    "costophrenic_point",
    "effusion_side",
    "finding_point",
    "map_peak",
    "pneumothorax_side",
    "side_of_effusion",
    "side_of_pneumothorax",
]
