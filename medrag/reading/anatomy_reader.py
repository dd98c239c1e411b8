"""``anatomy``: the segmentation-based reader as a registered :class:`~medrag.reading.base.Reader`.

It turns :func:`medrag.reading.anatomy.read_anatomy`'s measurements into findings with their evidence:
blunted costophrenic angles → effusion, the cardiothoracic ratio → cardiomegaly (PA films only; on AP films
it can at most say "possible"), zones more opaque than normal films → airspace opacity, devices → support
devices. These carry no probability: where the classifier also speaks, its calibrated status decides and
these become the evidence (see :mod:`medrag.reading.combine`).
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import numpy as np

from medrag.reading.base import FindingRead, ImageReading, Overlays, ReaderSpec, register_reader
from medrag.reading.grids import block_mean

if TYPE_CHECKING:
    from medrag.config import Settings
    from medrag.reading.anatomy import AnatomyReading

#: Cardiothoracic ratio bands on a PA film: above CTR_PRESENT "present", above CTR_UNCERTAIN "uncertain".
#: On NIH PA films (the brightness-profile ratio, 37 cardiomegaly / 353 normal) 0.55 keeps 82 % of normal
#: films absent-or-uncertain and finds 38 % of cardiomegaly; 0.50 flags 54 % of them, 27 % of normal films.
CTR_PRESENT = 0.55
CTR_UNCERTAIN = 0.50
#: On an AP film the heart is magnified and the ratio never "present"; above this it is "possible" (NIH AP
#: films: 29 % of 17 cardiomegaly, 9 % of 271 normal; 0.60 flagged none of them).
CTR_AP_UNCERTAIN = 0.50
#: Zone opacity z-scores: at or above ZONE_PRESENT the zone is flagged as more opaque.
ZONE_PRESENT = 2.0
#: The opacity map kept in the history is this coarse (cells per side; the segmenter works at 128 px).
OPACITY_CELLS = 32


def _zone_boxes(anatomy: AnatomyReading) -> dict[str, tuple[float, float, float, float]]:
    from medrag.reading.zones import zone_masks

    sy, sx = anatomy.scale
    boxes = {}
    for zone, mask in zone_masks(anatomy.right_lung, anatomy.left_lung).items():
        rows, cols = np.nonzero(mask)
        if len(rows):
            boxes[zone] = (float(cols.min() * sx), float(rows.min() * sy),
                           float((cols.max() - cols.min() + 1) * sx), float((rows.max() - rows.min() + 1) * sy))
    return boxes


def coarse_opacity(opacity: np.ndarray, cells: int = OPACITY_CELLS) -> np.ndarray | None:
    """The opacity map averaged into ``cells`` x ``cells`` blocks (what the history keeps); None when all zero."""
    grid = np.asarray(opacity, dtype=np.float32)
    return block_mean(grid, cells) if grid.size and grid.any() else None


def findings_from_anatomy(anatomy: AnatomyReading) -> dict[str, FindingRead]:
    """The findings the measurements support, each with the measurement behind it."""
    found: dict[str, FindingRead] = {}
    blunted = [side for side, v in anatomy.cp_angles.items() if v.get("blunted") == 1.0]
    measured = [side for side, v in anatomy.cp_angles.items() if math.isfinite(v.get("angle", math.nan))]
    if blunted:
        evidence = "; ".join(f"blunted {side} costophrenic angle ({anatomy.cp_angles[side]['angle']:.0f}°)"
                             for side in blunted)
        found["effusion"] = FindingRead("effusion", "uncertain", None, tuple(f"{s} lower zone" for s in blunted),
                                        evidence, "anatomy")
    elif len(measured) == 2:
        found["effusion"] = FindingRead("effusion", "absent", None, (), "both costophrenic angles sharp", "anatomy")
    ctr = anatomy.ctr
    if ctr is not None:
        caveat = "" if anatomy.ctr_reliable else ", unreliable on this projection"
        evidence = f"cardiothoracic ratio {ctr:.2f}{caveat}"
        if anatomy.view[0] == "AP":
            status = "uncertain" if ctr > CTR_AP_UNCERTAIN else "absent"
        else:
            status = "present" if ctr > CTR_PRESENT else "uncertain" if ctr > CTR_UNCERTAIN else "absent"
        found["cardiomegaly"] = FindingRead("cardiomegaly", status, None, (), evidence, "anatomy")  # type: ignore[arg-type]
    flagged = sorted((z for z, v in anatomy.zones.items() if v.get("z", 0.0) >= ZONE_PRESENT),
                     key=lambda z: -anatomy.zones[z]["z"])
    if flagged:
        evidence = "; ".join(f"{z} {anatomy.zones[z]['z']:.1f} SD more opaque than normal films" for z in flagged[:3])
        found["opacity"] = FindingRead("opacity", "present", None, tuple(flagged), evidence, "anatomy")
    elif anatomy.zones:
        found["opacity"] = FindingRead("opacity", "absent", None, (), "no zone markedly more opaque than normal films",
                                       "anatomy")
    if anatomy.devices:
        kinds = sorted({d.kind for d in anatomy.devices})
        found["support devices"] = FindingRead("support devices", "present", None, (), ", ".join(kinds), "anatomy")
    return found


def reading_from_anatomy(anatomy: AnatomyReading) -> ImageReading:
    """An :class:`ImageReading` of the anatomy measurements (findings, zones, view, devices, outlines)."""
    measurements = {k: float(v) for k, v in anatomy.measurements().items() if math.isfinite(v)}
    for side, values in anatomy.cp_angles.items():
        if math.isfinite(values.get("angle", math.nan)):
            measurements[f"cp_angle_{side}"] = float(values["angle"])
            measurements[f"cp_blunted_{side}"] = float(values.get("blunted", 0.0))
    difference = anatomy.asymmetry.get("opacity_difference", math.nan)
    if math.isfinite(difference):
        measurements["hemithorax_asymmetry"] = -float(difference)  # left minus right: positive = left more opaque
    view, probability = anatomy.view
    return ImageReading(
        findings=findings_from_anatomy(anatomy), measurements=measurements, view=view, view_probability=probability,
        ctr=anatomy.ctr, ctr_reliable=anatomy.ctr_reliable, zones={k: dict(v) for k, v in anatomy.zones.items()},
        devices=anatomy.devices,
        overlays=Overlays(contours=anatomy.contours(), zone_boxes=_zone_boxes(anatomy), devices=anatomy.devices,
                          opacity=coarse_opacity(anatomy.opacity)),
        readers=("anatomy",), notes=anatomy.notes, seconds=anatomy.seconds,
    )


class AnatomyReader:
    """Lungs, heart, ratio, zones, angles, view and devices (weights ship in the repository)."""

    name = "anatomy"
    model = "medrag-anatomy"

    def read(self, pixels: np.ndarray, *, view_hint: str | None = None) -> ImageReading:
        """Segment and measure one film."""
        from medrag.reading.anatomy import read_anatomy

        return reading_from_anatomy(read_anatomy(pixels, view_hint))


def _factory(settings: Settings) -> AnatomyReader:
    return AnatomyReader()


register_reader(ReaderSpec("anatomy", _factory, "lung and heart segmentation with measurements (offline)"))

__all__ = ["CTR_AP_UNCERTAIN", "CTR_PRESENT", "CTR_UNCERTAIN", "OPACITY_CELLS", "AnatomyReader", "coarse_opacity",
           "findings_from_anatomy", "reading_from_anatomy"]
