"""The phantom's coordinate frame and drawing primitives (soft edges, rasterised line segments).

Everything is drawn in normalised thorax coordinates: ``u`` across (0 on the midline, ±1 at the inner rib
margins, u > 0 = image right = patient left) and ``v`` down (0 at the lung apices, 1 at the costophrenic
angles). :class:`Frame` maps them to pixels, including the patient's slight tilt.
"""

from __future__ import annotations

import math

import numpy as np

from medrag.phantoms.plan import Anatomy


def smoothstep(edge0: float, edge1: float, x: np.ndarray) -> np.ndarray:
    """0 below ``edge0``, 1 above ``edge1``, a cubic ramp between."""
    t = np.clip((x - edge0) * (1.0 / (edge1 - edge0)), 0.0, 1.0)
    return t * t * (3.0 - 2.0 * t)


def soft(signed_distance: np.ndarray, width: float) -> np.ndarray:
    """1 inside (distance < 0), 0 outside, a linear edge ``2 * width`` wide (the final blur
    rounds it off; a linear ramp costs half of a smoothstep)."""
    return np.clip(0.5 - signed_distance * (0.5 / width), 0.0, 1.0)


class Frame:
    """Maps between pixels and normalised thorax coordinates (u across, v down).

    u = 0 on the midline and +-1 at the inner rib margins (u > 0 = image right = patient left);
    v = 0 at the lung apices and 1 at the costophrenic angles.
    """

    def __init__(self, size: int, anatomy: Anatomy) -> None:
        self.size = size
        self.a = anatomy
        grid = (np.arange(size, dtype=np.float32) + 0.5) / size - 0.5
        y, x = grid[:, None], grid[None, :]
        theta = math.radians(anatomy.angle)
        self.cos, self.sin = math.cos(theta), math.sin(theta)
        xr = self.cos * x + self.sin * y
        yr = -self.sin * x + self.cos * y
        self.u = ((xr + (0.5 - anatomy.cx)) / anatomy.half_width).astype(np.float32)
        self.v = ((yr + (0.5 - anatomy.top)) / anatomy.height).astype(np.float32)
        self.px_per_u = anatomy.half_width * size

    def to_px(self, u: np.ndarray, v: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(row, col) pixel coordinates of thorax points."""
        xr = np.asarray(u) * self.a.half_width + self.a.cx - 0.5
        yr = np.asarray(v) * self.a.height + self.a.top - 0.5
        x = self.cos * xr - self.sin * yr
        y = self.sin * xr + self.cos * yr
        return (y + 0.5) * self.size - 0.5, (x + 0.5) * self.size - 0.5


def splat_segments(frame: Frame, segments: np.ndarray, samples: int = 14) -> np.ndarray:
    """Rasterise line segments (rows of u0, v0, u1, v1, weight) by dense point sampling."""
    canvas = np.zeros(frame.size * frame.size, dtype=np.float32)
    if len(segments) == 0:
        return canvas.reshape(frame.size, frame.size)
    t = np.linspace(0.0, 1.0, samples, dtype=np.float32)[None, :]
    us = segments[:, :1] + (segments[:, 2:3] - segments[:, :1]) * t
    vs = segments[:, 1:2] + (segments[:, 3:4] - segments[:, 1:2]) * t
    rows, cols = frame.to_px(us, vs)
    rows, cols = np.rint(rows).astype(np.int64), np.rint(cols).astype(np.int64)
    weights = np.broadcast_to(segments[:, 4:5], rows.shape)
    keep = (rows >= 0) & (rows < frame.size) & (cols >= 0) & (cols < frame.size)
    flat = rows[keep] * frame.size + cols[keep]
    canvas += np.bincount(flat, weights=weights[keep], minlength=canvas.size).astype(np.float32)
    return canvas.reshape(frame.size, frame.size)


__all__ = ["Frame", "smoothstep", "soft", "splat_segments"]
