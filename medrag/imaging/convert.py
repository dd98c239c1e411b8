"""Pixel conversions shared by the decoders: to finite values, to [0, 1], colour to luma."""

from __future__ import annotations

from typing import Any

import numpy as np

from medrag.errors import UnsupportedImageError

#: Colourfulness above which a converted colour image is reported as having visible colour.
VISIBLE_COLOUR = 10.0


def colourfulness(rgb: np.ndarray) -> float:
    """Hasler & Suesstrunk (2003) colourfulness of an RGB uint8 array (0 for gray)."""
    arr = np.asarray(rgb, dtype=np.float32)
    if arr.ndim != 3 or arr.shape[2] < 3:
        return 0.0
    r, g, b = arr[..., 0], arr[..., 1], arr[..., 2]
    rg = r - g
    yb = 0.5 * (r + g) - b
    std_root = float(np.sqrt(rg.std() ** 2 + yb.std() ** 2))
    mean_root = float(np.sqrt(rg.mean() ** 2 + yb.mean() ** 2))
    return std_root + 0.3 * mean_root


def replace_non_finite(arr: np.ndarray, warnings: list[str]) -> np.ndarray:
    """``arr`` with NaN/inf replaced by its lowest finite value (and a warning); raises when none is finite."""
    finite = np.isfinite(arr)
    if finite.all():
        return arr
    if not finite.any():
        raise UnsupportedImageError("the image has no finite pixel values (all NaN or infinite); re-export it.")
    bad = int((~finite).sum())
    low = float(arr[finite].min())
    warnings.append(f"{bad} non-finite pixel values (NaN/inf) replaced by the lowest value.")
    return np.where(finite, arr, low).astype(arr.dtype)


def minmax(arr: np.ndarray, full_scale: float | None = None) -> np.ndarray:
    """float32 stretched to [0, 1]; a constant image keeps its level relative to ``full_scale`` when given."""
    arr = arr.astype(np.float64, copy=False)
    low, high = float(arr.min()), float(arr.max())
    if high > low:
        return ((arr - low) / (high - low)).astype(np.float32)
    level = low / full_scale if full_scale else 0.0
    return np.full(arr.shape, np.clip(level, 0.0, 1.0), dtype=np.float32)


def rgb_to_gray(rgb: np.ndarray, meta: dict[str, Any], warnings: list[str], what: str) -> np.ndarray:
    """uint8 RGB -> float luma in [0, 1]; records colourfulness and the conversion in ``meta``/``warnings``."""
    small = rgb
    step = max(1, max(rgb.shape[:2]) // 512)
    if step > 1:
        small = rgb[::step, ::step]
    colour = colourfulness(small)
    meta["colourfulness"] = round(colour, 3)
    meta["converted_from_rgb"] = True
    if colour > VISIBLE_COLOUR:
        warnings.append(f"{what} image with visible colour (colourfulness {colour:.0f}) converted to grayscale.")
    else:
        warnings.append(f"{what} image converted to grayscale (it has almost no colour).")
    # ITU-R BT.601 luma, as Pillow's convert("L"), one channel at a time (no 3-channel float copy);
    # the float32 sums are the same, bit for bit, as those of the whole-array expression.
    gray = rgb[..., 0].astype(np.float32) * 0.299
    gray += rgb[..., 1].astype(np.float32) * 0.587
    gray += rgb[..., 2].astype(np.float32) * 0.114
    gray /= np.float32(255.0)
    return gray


def to_unit_float32(pixels: np.ndarray) -> np.ndarray:
    """C-contiguous float32 in [0, 1]: 8-bit input scaled by 1/255, floats clipped (in place when the
    decoder handed over an array of its own)."""
    if pixels.dtype == np.uint8:
        out = pixels.astype(np.float32)
        out /= np.float32(255.0)
        return out
    if pixels.dtype == np.float32 and pixels.flags.c_contiguous and pixels.flags.writeable and pixels.flags.owndata:
        return np.clip(pixels, 0.0, 1.0, out=pixels)
    return np.ascontiguousarray(np.clip(pixels, 0.0, 1.0), dtype=np.float32)


__all__ = ["VISIBLE_COLOUR", "colourfulness", "minmax", "replace_non_finite", "rgb_to_gray", "to_unit_float32"]
