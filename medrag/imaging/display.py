"""Viewer transforms on [0, 1] pixels: window/level, negative, contrast enhancement (display only)."""

from __future__ import annotations

import numpy as np

from medrag.errors import InputError


def apply_window(pixels: np.ndarray, center: float, width: float) -> np.ndarray:
    """Linear window on the [0, 1] scale: ``center - width/2`` -> 0, ``center + width/2`` -> 1."""
    if not width > 0:
        raise InputError(f"window width must be positive, got {width}; try a width such as 0.5.")
    low = center - width / 2.0
    out = (np.asarray(pixels, dtype=np.float32) - np.float32(low)) / np.float32(width)
    return np.clip(out, 0.0, 1.0).astype(np.float32)


def invert(pixels: np.ndarray) -> np.ndarray:
    """Negative image (1 - pixels)."""
    return (1.0 - np.asarray(pixels, dtype=np.float32)).astype(np.float32)


def enhance_contrast(pixels: np.ndarray) -> np.ndarray:
    """Contrast-limited adaptive histogram equalisation (CLAHE) for viewing."""
    from skimage.exposure import equalize_adapthist

    arr = np.clip(np.asarray(pixels, dtype=np.float64), 0.0, 1.0)
    return np.asarray(equalize_adapthist(arr, clip_limit=0.01), dtype=np.float32)


__all__ = ["apply_window", "enhance_contrast", "invert"]
