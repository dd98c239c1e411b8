"""Uniform LBP codes (0..9) for the experiments, built on the encoder's own ``lbp_codes``.

skimage's local_binary_pattern(P=8, R=1) samples the diagonals by bilinear interpolation and costs
about 7 ms on a 256-px image (exp03 timing); the 3×3 square-neighbour version costs about 0.5 ms.
"""

from __future__ import annotations

import numpy as np

from medrag.encoders.classic import _UNIFORM, lbp_codes as _codes8

UNIFORM_LUT = _UNIFORM.argmax(axis=1).astype(np.uint8)


def lbp_codes(img: np.ndarray) -> np.ndarray:
    """Rotation-invariant uniform LBP codes (0..9) of the interior pixels of a uint8 image."""
    return UNIFORM_LUT[_codes8(img)]
