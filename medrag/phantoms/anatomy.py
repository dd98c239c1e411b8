"""The normal chest of a phantom: its exact lung and heart masks, bones, vessels, airways and soft tissue.

Each function returns a map over the thorax coordinates of :class:`~medrag.phantoms.geometry.Frame`;
:func:`cavity` (the air-filled lungs) and :func:`mediastinum` (the heart and great vessels) are the exact
masks the picture is drawn from, so measurements on a phantom can be checked against them.
"""

from __future__ import annotations

import math

import numpy as np

from medrag.phantoms.geometry import Frame, smoothstep, soft
from medrag.phantoms.plan import Anatomy


def heart_centre_u(ctr: float) -> float:
    """The heart's horizontal centre (u) for a cardiothoracic ratio: a bigger heart grows to the left."""
    return 0.17 + (ctr - 0.44) * 0.5


def body_outline(au: np.ndarray, v: np.ndarray, a: Anatomy) -> tuple[np.ndarray, np.ndarray]:
    """(body, soft-tissue thickness): the neck widening to the shoulders, thicker centrally."""
    body_w = 0.36 + 0.9 * smoothstep(-0.34, 0.0, v)
    body = soft(au - body_w, 0.05)
    thickness = a.soft * body * (0.42 + 0.36 * np.clip(1 - (au / (body_w + 0.1)) ** 2, 0, 1))
    return body, thickness


def vessel_segments(rng: np.random.Generator, side: int) -> np.ndarray:
    """Branching pulmonary vessels fanning out from one hilum: (u0, v0, u1, v1, weight) rows.

    Grown level by level (vectorised): each branch is three slightly bending segments and
    splits into two thinner, shorter children.
    """
    # Angles in the (u, v) plane for the left lung: 0 = lateral, 90 = down; mirrored for the right.
    ang = np.radians(np.r_[np.linspace(-135, -25, 6), np.linspace(20, 105, 4)] + rng.uniform(-8, 8, 10))
    u0 = np.full(ang.shape, side * 0.26)
    v0 = np.full(ang.shape, 0.44)
    length = rng.uniform(0.2, 0.27, ang.shape)
    weight = np.ones(ang.shape)
    out: list[np.ndarray] = []
    for _depth in range(4):
        direction = ang.copy()
        for _ in range(3):
            direction = direction + rng.uniform(-0.2, 0.2, ang.shape)
            du = np.cos(direction) * length / 3
            u1 = u0 + (du if side > 0 else -du)
            v1 = v0 + np.sin(direction) * length / 3 * 1.1
            out.append(np.stack([u0, v0, u1, v1, weight], axis=1))
            u0, v0 = u1, v1
        turns = rng.uniform(0.2, 0.55, (2, ang.size)) * np.array([[-1.0], [1.0]])
        ang = (ang[None, :] + turns).ravel()
        u0, v0 = np.tile(u0, 2), np.tile(v0, 2)
        length = np.tile(length, 2) * rng.uniform(0.6, 0.78, ang.size)
        weight = np.tile(weight, 2) * 0.62
    return np.concatenate(out).astype(np.float32)


def _periodic_band(w: np.ndarray, gap: float, thick: np.ndarray, count: int) -> tuple[np.ndarray, np.ndarray]:
    """Bands of width ``thick`` every ``gap`` along ``w`` (``count`` of them from w = 0).

    Returns (band, cortex): the filled bands and their bright edges.
    """
    k = np.floor(w / gap)
    centre_dist = np.abs(w - k * gap - 0.5 * gap)
    inside = (k >= 0) & (k < count)
    edge = centre_dist - 0.5 * thick
    band = soft(edge, 0.012) * inside
    cortex = np.exp(-((edge / 0.011) ** 2)) * inside
    return band, cortex


def ribs(frame: Frame, a: Anatomy, au: np.ndarray) -> np.ndarray:
    """Posterior ribs (arcs from the spine curving down laterally) and fainter anterior ribs."""
    v = frame.v
    curve = -0.12 * au + 0.5 * au * au
    thick = (a.rib_gap * (0.42 + 0.12 * au)).astype(np.float32)
    band, cortex = _periodic_band(v - curve + 0.14 - a.rib_phase, a.rib_gap, thick, 11)
    posterior = (0.6 * band + 0.22 * cortex) * smoothstep(0.07, 0.13, au) * soft(au - 1.1, 0.05)
    curve_a = 0.2 - 0.42 * np.clip(1.08 - au, 0, None) ** 1.5
    band_a, cortex_a = _periodic_band(v - curve_a + 0.04 - a.rib_phase, a.rib_gap * 1.05, thick * 0.8, 7)
    anterior = (0.28 * band_a + 0.1 * cortex_a) * smoothstep(0.25, 0.55, au) * soft(au - 1.08, 0.04)
    return posterior + anterior


def clavicles(frame: Frame, au: np.ndarray) -> np.ndarray:
    """Both clavicles, S-shaped, with bright cortices."""
    centre = 0.02 - 0.10 * au + 0.05 * np.sin(au * 5.0)
    edge = np.abs(frame.v - centre) - 0.032
    extent = smoothstep(0.07, 0.14, au) * soft(au - 1.0, 0.06)
    return (soft(edge, 0.01) + 0.5 * np.exp(-((edge / 0.01) ** 2))) * extent


def spine(frame: Frame, a: Anatomy, au: np.ndarray) -> np.ndarray:
    """Vertebral bodies with disc spaces in step with the ribs, and the pedicles."""
    body = soft(au - 0.085, 0.02)
    phase = (frame.v + 0.14 - a.rib_phase) / a.rib_gap * math.pi
    sin2 = np.sin(phase) ** 2
    discs = 1.0 - 0.25 * sin2
    pedicles = np.exp(-(((au - 0.065) / 0.016) ** 2)) * (0.3 + 0.3 * sin2 * sin2)
    return body * discs + pedicles


def cavity(u: np.ndarray, v: np.ndarray, a: Anatomy) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The air-filled thoracic cavity (both lungs, mediastinum excluded), the rib-cage wall
    half-width and the diaphragm height at each point."""
    au = np.abs(u)
    wall = 0.58 + 0.42 * np.sin(np.pi / 2 * np.clip((v + 0.02) / 0.74, 0, 1))
    apex = 0.01 + 1.4 * (au - 0.5) ** 2
    peak = np.where(u < 0, np.float32(a.dome_r), np.float32(a.dome_l))
    dome = 1.0 - (1.0 - peak) * np.clip(1 - ((au - 0.44) / 0.62) ** 2, 0, 1)
    inside = (
        soft(au - wall, 0.025)
        * soft(apex - v, 0.03)
        * soft(v - dome, 0.012)
        * soft(0.1 - au, 0.02)
    )
    return inside, wall, dome


def wall_at(v: float) -> float:
    """The rib-cage wall's half-width (u) at height ``v``, as :func:`cavity` draws it."""
    return 0.58 + 0.42 * math.sin(math.pi / 2 * min((v + 0.02) / 0.74, 1.0))


def mediastinum(u: np.ndarray, v: np.ndarray, ctr: float) -> tuple[np.ndarray, np.ndarray]:
    """(heart, whole mediastinum): the heart rests on the diaphragm, wider to the patient's left."""
    heart_c = heart_centre_u(ctr)
    heart_top, heart_bottom = 0.42 - (ctr - 0.44) * 0.3, 1.02
    hv = (v - (heart_top + heart_bottom) / 2) / ((heart_bottom - heart_top) / 2)
    hu = (u - heart_c) / ctr
    heart = soft(np.abs(hu) ** 2.4 + np.abs(hv) ** 2.2 - 1.0, 0.08)
    upper = soft(np.abs(u - 0.02) - 0.13 - 0.03 * v, 0.03) * soft(v - 0.6, 0.06)
    knob = soft(np.hypot((u - 0.17) / 0.09, (v - 0.25) / 0.075) - 1.0, 0.2)
    return heart, np.maximum(np.maximum(heart, upper), knob)


def hila(u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Both hilar shadows."""
    right, left = (np.exp(-(((u - s * 0.24) / 0.07) ** 2) - ((v - 0.45) / 0.11) ** 2) for s in (-1, 1))
    return right + left


def airways(u: np.ndarray, v: np.ndarray, body: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(trachea, carina with the main bronchi): the lucent airway down the midline."""
    trachea = soft(np.abs(u - 0.01) - 0.035, 0.012) * soft(v - 0.34, 0.02) * body
    right, left = (
        soft(np.abs(u - s * 0.12 * (v - 0.34) / 0.12) - 0.028, 0.012) * soft(0.34 - v, 0.01)
        * soft(v - 0.46, 0.02)
        for s in (-1, 1)
    )
    return trachea, right + left


def gastric_bubble(u: np.ndarray, v: np.ndarray, a: Anatomy) -> np.ndarray:
    """The stomach's air under the left hemidiaphragm."""
    return soft(np.hypot((u - 0.45) / 0.13, (v - a.dome_l - 0.1) / 0.055) - 1.0, 0.25)


def scapulae(au: np.ndarray, v: np.ndarray) -> np.ndarray:
    """The scapulae's medial borders over the lateral upper chest."""
    return smoothstep(0.82, 0.98, au) * soft(au - 1.12, 0.04) * soft(v - 0.5, 0.08)


__all__ = [
    "airways",
    "body_outline",
    "cavity",
    "clavicles",
    "gastric_bubble",
    "heart_centre_u",
    "hila",
    "mediastinum",
    "ribs",
    "scapulae",
    "spine",
    "vessel_segments",
    "wall_at",
]
