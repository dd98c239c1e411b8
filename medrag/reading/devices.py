"""Devices on a chest film from high-attenuation structures: ECG electrodes, lines and tubes, pacemakers.

A heuristic, not a trained detector (the shared data has no device boxes), on a 256 px copy and only over the
body (not on the black background, where burned-in letters sit): ECG electrodes are LoG peaks brighter than
their surroundings in every direction, on an even surround; lines and tubes are thin, long bright pieces (ECG lead
wires look the same at 256 px); a pacemaker is a large, near-white compact blob over the upper chest. Boxes
are in original-image pixels. On 20 hand-labelled NIH films it is weak (electrodes: precision 0.83, recall
0.45; lines: 0.43 / 0.43; docs/reading-anatomy.md).
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from medrag.reading.base import DeviceMark
from medrag.reading.segment import resize_square

WORK = 256
ECG, LINE, PACEMAKER = "ecg electrode", "line or tube", "pacemaker"
#: electrodes: LoG scale (px at 256) and scale-normalised response a peak must pass
ELECTRODE_SIGMA, ELECTRODE_LEVEL = 3.5, 0.03
#: an electrode's rim must be this much brighter than its surroundings in every direction
ELECTRODE_MARGIN = 0.04
#: radii (px at 256) of the rim: from near the centre (a solid disc) out to a ring electrode's edge
INNER_RADII = (1.0, 2.0, 3.0, 4.0, 5.0)
#: an electrode sits on an even background: the surrounding circle may vary by at most this share of the rise
ARM_RATIO = 1.0
#: lines: thin top-hat level (grey units) and the least length (px at 256)
LINE_LEVEL, LINE_LENGTH = 0.07, 40.0


def _pieces(mask: np.ndarray) -> tuple[np.ndarray, list[tuple[slice, slice]]]:
    labels, _count = ndimage.label(mask, structure=np.ones((3, 3), dtype=bool))
    return labels, [s for s in ndimage.find_objects(labels) if s is not None]


def _elongation(component: np.ndarray) -> tuple[float, float]:
    """(major, minor) axis lengths (pixels) of a component from its second moments."""
    rr, cc = np.nonzero(component)
    if rr.size < 3:
        return float(rr.size), 1.0
    cov = np.cov(np.stack([rr, cc]).astype(np.float64))
    evals = np.sort(np.linalg.eigvalsh(cov))[::-1]
    return 4.0 * float(np.sqrt(max(evals[0], 0))), 4.0 * float(np.sqrt(max(evals[1], 0)))


def detect_devices(grey: np.ndarray, lungs: np.ndarray | None = None,
                   scale: tuple[float, float] | None = None) -> list[DeviceMark]:
    """Device marks on a grey film (2-D float in [0, 1]); boxes in ``grey``'s pixels.

    ``lungs`` and ``scale`` are accepted for callers that have them and are not needed: the boxes are mapped
    back from the working copy with ``grey``'s own shape.
    """
    del lungs, scale
    g = resize_square(grey, WORK)
    sy, sx = grey.shape[0] / WORK, grey.shape[1] / WORK
    background = ndimage.grey_opening(g, size=(17, 17))
    on_body = ndimage.uniform_filter(background, 15) > 0.18
    inner = np.zeros_like(on_body)
    edge = int(0.05 * WORK)
    inner[edge:-edge, edge:-edge] = True
    allowed = on_body & inner
    if not allowed.any():
        return []
    marks = _electrodes(g, g - background, allowed, sy, sx) + _lines(g, allowed, sy, sx)
    marks += _pacemakers(g, allowed, sy, sx)
    return sorted(marks, key=lambda m: -m.score)


def _electrodes(g: np.ndarray, tophat: np.ndarray, allowed: np.ndarray, sy: float, sx: float) -> list[DeviceMark]:
    """Bright discs or rings about 8-14 px across (ECG electrodes).

    Candidates are peaks of a scale-normalised LoG; a candidate is kept only when (1) the disc of radius 1-5 px
    around it is brighter than a circle at 8-9 px in EVERY direction (a single rib is bright along the bone, so
    it fails; an end-on vessel is too small for the LoG scale) and (2) that outer circle is even: its brightest
    and darkest directions differ by at most ``ARM_RATIO`` times the disc's rise over it. A rib crossing a
    clavicle passes (1) by the bones' fall-off but not (2): the circle is bright where the bones leave.
    """
    response = -ndimage.gaussian_laplace(tophat, ELECTRODE_SIGMA) * ELECTRODE_SIGMA**2
    peaks = (response == ndimage.maximum_filter(response, size=11)) & (response > ELECTRODE_LEVEL) & allowed
    rows, cols = np.nonzero(peaks)
    if rows.size == 0:
        return []
    angles = np.linspace(0, 2 * np.pi, 16, endpoint=False)
    inner_r, outer_r = np.array(INNER_RADII), np.array([8.0, 9.0])

    def ring(radii: np.ndarray) -> np.ndarray:
        rr = rows[:, None, None] + radii[None, :, None] * np.sin(angles)[None, None, :]
        cc = cols[:, None, None] + radii[None, :, None] * np.cos(angles)[None, None, :]
        vals = ndimage.map_coordinates(g, [rr.ravel(), cc.ravel()], order=1, mode="nearest")
        return vals.reshape(rr.shape).max(axis=1)  # (candidates, angles): brightest radius per direction

    inner, outer = ring(inner_r), ring(outer_r)
    margin = (inner - outer).min(axis=1)
    arms = outer.max(axis=1) - outer.min(axis=1)
    rise = inner.mean(axis=1) - outer.mean(axis=1)
    r = int(round(2.2 * ELECTRODE_SIGMA))
    out = []
    for row, col, m, a, lift in zip(rows, cols, margin, arms, rise, strict=True):
        if m >= ELECTRODE_MARGIN and a <= ARM_RATIO * lift:
            out.append(DeviceMark(ECG, (col - r) * sx, (row - r) * sy, 2 * r * sx, 2 * r * sy,
                                  round(min(1.0, float(m) / (3 * ELECTRODE_MARGIN)), 3)))
    return out


def _lines(g: np.ndarray, allowed: np.ndarray, sy: float, sx: float) -> list[DeviceMark]:
    """Thin (up to ~4 px), long bright pieces: catheters, tubes, drains and ECG lead wires."""
    thin = g - ndimage.grey_opening(g, size=(5, 5))
    labels, slices = _pieces((thin > LINE_LEVEL) & allowed)
    out = []
    for k, sl in enumerate(slices, start=1):
        piece = labels[sl] == k
        if int(piece.sum()) < 20:
            continue
        major, _minor = _elongation(piece)
        if major < LINE_LENGTH:
            continue
        h, w = sl[0].stop - sl[0].start, sl[1].stop - sl[1].start
        contrast = float(thin[sl][piece].mean())
        out.append(DeviceMark(LINE, sl[1].start * sx, sl[0].start * sy, w * sx, h * sy,
                              round(min(1.0, contrast / (2 * LINE_LEVEL) * min(1.0, major / 80)), 3)))
    return out


def _pacemakers(g: np.ndarray, allowed: np.ndarray, sy: float, sx: float) -> list[DeviceMark]:
    """Large, near-white compact blobs (metal) over the upper two thirds of the film."""
    body_vals = g[allowed]
    if body_vals.size == 0:
        return []
    level = max(0.9, float(np.percentile(body_vals, 99.7)))
    metal = (g >= level) & allowed
    metal[int(0.7 * g.shape[0]):] = False
    out = []
    labels, slices = _pieces(ndimage.binary_opening(metal, iterations=2))
    for k, sl in enumerate(slices, start=1):
        piece = labels[sl] == k
        area = int(piece.sum())
        h, w = sl[0].stop - sl[0].start, sl[1].stop - sl[1].start
        if 120 <= area <= 1500 and 0.5 <= h / max(w, 1) <= 2.0 and area >= 0.5 * h * w:
            out.append(DeviceMark(PACEMAKER, sl[1].start * sx, sl[0].start * sy, w * sx, h * sy, 0.8))
    return out


def device_kinds(marks: list[DeviceMark]) -> set[str]:
    """The kinds present in ``marks``."""
    return {m.kind for m in marks}


__all__ = ["ECG", "LINE", "PACEMAKER", "detect_devices", "device_kinds"]
