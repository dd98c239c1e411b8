"""The heart and the cardiothoracic ratio: from the segmenter's heart channel, or from the brightness profile.

The segmenter learned hearts from phantoms only (no real film here has a heart mask). On phantoms its heart
channel is confident (mean probability inside the mask about 0.95) and exact (Dice 0.98); on real films it is
not (about 0.6-0.7, and its mask spills into the lungs), and a ratio from it barely separates NIH
cardiomegaly from normal films. So when the channel is not confident, the heart is found the classic way:
on each row of the lower lungs, from the midline outwards, the heart border is where the brightness falls
halfway from the heart's to that lung's. That ratio separates NIH cardiomegaly from normal films with AUC
0.71 (PA, 390 films) / 0.74 (AP, 288); medians 0.51 against 0.41 on PA (docs/reading-anatomy.md).
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

#: Mean heart probability inside the heart mask above which the heart channel is trusted.
HEART_CONFIDENT = 0.85


def thorax_width(lungs: np.ndarray) -> int:
    """Max horizontal width across both lungs (outer edges), in mask pixels; 0 without lungs."""
    rows = np.flatnonzero(lungs.any(axis=1))
    widths = [np.flatnonzero(lungs[r]) for r in rows]
    return max((int(c[-1] - c[0] + 1) for c in widths), default=0)


def cardiothoracic_ratio(heart: np.ndarray, lungs: np.ndarray) -> float | None:
    """Max horizontal heart width / max horizontal width across both lungs; None without both."""
    if not heart.any() or not lungs.any():
        return None
    hcols = np.flatnonzero(heart.any(axis=0))
    thorax = thorax_width(lungs)
    return float((hcols[-1] - hcols[0] + 1) / thorax) if thorax > 0 else None


def profile_heart(small: np.ndarray, right: np.ndarray, left: np.ndarray) -> tuple[np.ndarray, float | None]:
    """(heart mask, cardiothoracic ratio) from brightness profiles of the rows 50-92 % down the lungs.

    On each row the borders are where the smoothed brightness, walking out from the midline (between the
    lungs' centres), falls below halfway between the midline's and that lung's lateral half's median. Rows
    without a brighter middle are skipped; the ratio takes the 90th percentile of the row widths (robust to
    a stray row). None when fewer than three rows could be measured.
    """
    heart = np.zeros(small.shape, dtype=bool)
    if not right.any() or not left.any():
        return heart, None
    lungs = right | left
    img = ndimage.gaussian_filter(small, 1.0)
    rows = np.flatnonzero(lungs.any(axis=1))
    top, height = int(rows[0]), int(rows[-1] - rows[0])
    r_cols, l_cols = np.flatnonzero(right.any(axis=0)), np.flatnonzero(left.any(axis=0))
    mid = int(round((ndimage.center_of_mass(right)[1] + ndimage.center_of_mass(left)[1]) / 2))
    widths = []
    for r in range(top + int(0.5 * height), top + int(0.92 * height)):
        a, b = np.flatnonzero(right[r]), np.flatnonzero(left[r])
        if a.size < 3 or b.size < 3:
            continue
        lung_r, lung_l = np.median(img[r, a[: max(1, a.size // 2)]]), np.median(img[r, b[b.size // 2:]])
        centre = np.median(img[r, max(0, mid - 2): mid + 3])
        if centre - max(lung_r, lung_l) < 0.03:
            continue
        c0 = mid
        while c0 > r_cols[0] and img[r, c0] > (centre + lung_r) / 2:
            c0 -= 1
        c1 = mid
        while c1 < l_cols[-1] and img[r, c1] > (centre + lung_l) / 2:
            c1 += 1
        heart[r, c0: c1 + 1] = True
        widths.append(c1 - c0)
    thorax = thorax_width(lungs)
    if len(widths) < 3 or thorax == 0:
        return heart, None
    return heart, float(np.percentile(widths, 90) / thorax)


def choose_heart(heart_prob: np.ndarray, heart_mask: np.ndarray, small: np.ndarray, lungs: np.ndarray,
                 right: np.ndarray, left: np.ndarray) -> tuple[np.ndarray, float | None, str, float]:
    """(heart mask, ratio, method, confidence): the heart channel when confident, else the profile."""
    confidence = float(heart_prob[heart_mask].mean()) if heart_mask.any() else 0.0
    if confidence >= HEART_CONFIDENT:
        return heart_mask, cardiothoracic_ratio(heart_mask, lungs), "heart mask", confidence
    heart, ctr = profile_heart(small, right, left)
    return heart, ctr, "brightness profile", confidence


__all__ = ["HEART_CONFIDENT", "cardiothoracic_ratio", "choose_heart", "profile_heart", "thorax_width"]
