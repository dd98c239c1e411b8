"""8-bit pixels and the pixel hash: the two functions every image, case id and model input go through.

Dependency-free on purpose (numpy only): :mod:`medrag.records` needs :func:`to_uint8` for
``CXRImage.uint8_pixels``, and :mod:`medrag.imaging` imports the records, so this lives outside both.
Case ids are pixel hashes: changing either function would re-import every existing library
(``tests/test_imaging.py::test_pixel_hash_is_stable_across_versions`` pins them).
"""

from __future__ import annotations

import hashlib

import numpy as np


def to_uint8(pixels: np.ndarray) -> np.ndarray:
    """Float pixels in [0, 1] -> uint8 (rounded half to even; values outside [0, 1] are clipped, NaN -> 0)."""
    arr = np.asarray(pixels, dtype=np.float32)
    if not np.isfinite(arr).all():
        arr = np.nan_to_num(arr, nan=0.0, posinf=1.0, neginf=0.0)
    # In place on one temporary: a full-size image passes through here once per import of a non-8-bit file.
    scaled = np.clip(arr, 0.0, 1.0)
    scaled *= np.float32(255.0)
    np.round(scaled, out=scaled)
    return scaled.astype(np.uint8)


def compute_pixel_hash(pixels: np.ndarray) -> str:
    """sha256 hex of the 8-bit pixels plus the shape: identical-looking images share it.

    ``pixels`` are floats in [0, 1], or already 8-bit (``uint8``, as :func:`to_uint8` would give).
    """
    u8 = np.ascontiguousarray(pixels if pixels.dtype == np.uint8 else to_uint8(pixels))
    digest = hashlib.sha256(f"{u8.shape[0]}x{u8.shape[1]};".encode())
    digest.update(u8.tobytes())
    return digest.hexdigest()


__all__ = ["compute_pixel_hash", "to_uint8"]
