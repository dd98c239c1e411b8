"""Synthetic chest X-ray phantoms with ground-truth findings, and the demo library built from them.

The phantoms are drawn procedurally (no third-party images): body outline, lungs with branching
vascular markings, posterior and anterior ribs, clavicles, spine, trachea, hila, heart, aortic
knob, diaphragm domes and a gastric bubble. Findings are drawn on top of the same anatomy:

* ``cardiomegaly``: a heart wider than half the thorax (CTR 0.58-0.68 instead of 0.40-0.48);
* ``effusion``: dependent fluid filling the costophrenic angle with a meniscus rising laterally,
  silhouetting the hemidiaphragm;
* ``pneumothorax``: an apicolateral air rim without lung markings outside a visible visceral
  pleural line;
* ``consolidation``: a patchy air-space opacity in one lobe with air bronchograms;
* ``nodule/mass``: a round opacity (mass when larger than 3 cm);
* ``edema``: bilateral perihilar haze (bat wing), indistinct vessels and Kerley B lines.

Patients differ in size, heart size, diaphragm, ribs, vessels, noise and exposure, but are positioned
like well-centred PA films (tilt within 1.5°, midline within 1.2 % of the width) with similar
technique, and every finding is drawn to be seen (nodules 2 cm or more, effusions and pneumothoraces
of at least 20 % of the lung, dense consolidations). Wider positioning and exposure ranges made
the set-up, not the findings, decide which demo cases looked alike (bench/encoder_experiments/exp11:
the original ranges gave same-label top-5 retrieval 0.33, chance 0.12).

Everything is deterministic per ``seed``: the anatomy depends on the seed only and each finding
on its own random stream, so ``generate_phantom({"effusion"}, 7)`` differs from
``generate_phantom(frozenset(), 7)`` only by the effusion. Images follow the PA convention:
the patient's right is on the image left.
"""

from __future__ import annotations

import csv
import io
import math
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable

import numpy as np
from PIL import Image
from scipy import ndimage

from medrag.errors import InputError

#: Findings a phantom can show, in the fixed order used for labels (names as in records.FINDINGS).
FINDING_NAMES: tuple[str, ...] = (
    "cardiomegaly",
    "effusion",
    "pneumothorax",
    "consolidation",
    "nodule/mass",
    "edema",
)

#: Pairs used in the demo library (clinically plausible co-occurrences).
DEMO_PAIRS: tuple[tuple[str, str], ...] = (
    ("cardiomegaly", "effusion"),
    ("cardiomegaly", "edema"),
    ("effusion", "edema"),
    ("effusion", "consolidation"),
    ("effusion", "nodule/mass"),
    ("pneumothorax", "consolidation"),
)

CSV_COLUMNS: tuple[str, ...] = (
    "image", "label", "report", "patient_id", "view", "dataset", "findings", "synthetic",
)


# --------------------------------------------------------------------------- plan


@dataclass(frozen=True)
class _Anatomy:
    cx: float  # midline, fraction of width
    top: float  # lung apex, fraction of height
    half_width: float  # thorax half-width (inner ribs), fraction of width
    height: float  # apex to costophrenic angle, fraction of height
    angle: float  # rotation, degrees
    ctr: float  # cardiothoracic ratio of this patient's normal heart
    dome_r: float  # right hemidiaphragm peak, v units
    dome_l: float
    gamma: float  # exposure
    brightness: float
    noise: float
    soft: float  # soft-tissue thickness
    rib_phase: float
    rib_gap: float


@dataclass(frozen=True)
class FindingPlan:
    """Where and how large each finding of a phantom is (shared by the image and its report)."""

    findings: frozenset[str]
    ctr: float
    effusion_side: int = 0  # -1 = patient right (image left), +1 = patient left, 2 = both
    effusion_size: float = 0.0
    pneumothorax_side: int = 0
    pneumothorax_size: float = 0.0
    consolidation_side: int = 0
    consolidation_zone: str = ""
    nodule_side: int = 0
    nodule_zone: str = ""
    nodule_u: float = 0.0
    nodule_v: float = 0.0
    nodule_mm: float = 0.0
    edema_severity: float = 0.0


def _validate(findings: Iterable[str]) -> frozenset[str]:
    found = frozenset(findings)
    unknown = sorted(found - set(FINDING_NAMES))
    if unknown:
        raise InputError(
            f"unknown phantom finding(s) {unknown}; choose from {', '.join(FINDING_NAMES)} "
            "(an empty set draws a normal chest)."
        )
    return found


def _anatomy(seed: int) -> _Anatomy:
    # Positioning and exposure ranges are narrow on purpose (see the module docstring and exp11):
    # wider ones (±4° tilt, gamma 0.8-1.25) swamped the findings for similar-case retrieval.
    rng = np.random.default_rng([seed, 0])
    return _Anatomy(
        cx=0.5 + rng.uniform(-0.012, 0.012),
        top=rng.uniform(0.105, 0.135),
        half_width=rng.uniform(0.345, 0.375),
        height=rng.uniform(0.62, 0.66),
        angle=rng.uniform(-1.5, 1.5),
        ctr=rng.uniform(0.40, 0.48),
        dome_r=rng.uniform(0.72, 0.78),
        dome_l=rng.uniform(0.77, 0.83),
        gamma=rng.uniform(0.9, 1.12),
        brightness=rng.uniform(-0.02, 0.02),
        noise=rng.uniform(0.006, 0.016),
        soft=rng.uniform(0.85, 1.05),
        rib_phase=rng.uniform(-0.02, 0.02),
        rib_gap=rng.uniform(0.085, 0.1),
    )


def _finding_rng(seed: int, name: str) -> np.random.Generator:
    return np.random.default_rng([seed, 100 + FINDING_NAMES.index(name)])


def _zone(v: float) -> str:
    return "upper" if v < 0.38 else ("mid" if v < 0.62 else "lower")


def plan_findings(findings: Iterable[str], seed: int) -> FindingPlan:
    """The sizes, sides and places of ``findings`` for ``seed`` (what the report describes)."""
    found = _validate(findings)
    anatomy = _anatomy(seed)
    values: dict[str, Any] = {"findings": found, "ctr": anatomy.ctr}
    if "cardiomegaly" in found:
        values["ctr"] = float(_finding_rng(seed, "cardiomegaly").uniform(0.58, 0.68))
    if "effusion" in found:
        rng = _finding_rng(seed, "effusion")
        both = "edema" in found and rng.uniform() < 0.5
        values["effusion_side"] = 2 if both else int(rng.choice([-1, 1]))
        values["effusion_size"] = float(rng.uniform(0.2, 0.42))
    if "pneumothorax" in found:
        rng = _finding_rng(seed, "pneumothorax")
        values["pneumothorax_side"] = int(rng.choice([-1, 1]))
        values["pneumothorax_size"] = float(rng.uniform(0.2, 0.34))
    if "consolidation" in found:
        rng = _finding_rng(seed, "consolidation")
        side = int(rng.choice([-1, 1]))
        zones = ["upper", "lower"] + (["mid"] if side < 0 else ["lingula"])
        values["consolidation_side"] = side
        values["consolidation_zone"] = str(rng.choice(zones))
    if "nodule/mass" in found:
        rng = _finding_rng(seed, "nodule/mass")
        side = int(rng.choice([-1, 1]))
        # Keep it off the heart: the left lung beside the heart is narrow below the hilum.
        v = float(rng.uniform(0.15, 0.42) if side > 0 else rng.uniform(0.18, 0.62))
        values.update(
            nodule_side=side,
            nodule_u=side * float(rng.uniform(0.45, 0.78)),
            nodule_v=v,
            nodule_zone=_zone(v),
            nodule_mm=float(rng.choice([rng.uniform(20, 30), rng.uniform(34, 58)], p=[0.4, 0.6])),
        )
    if "edema" in found:
        values["edema_severity"] = float(_finding_rng(seed, "edema").uniform(0.6, 1.0))
    return FindingPlan(**values)


# --------------------------------------------------------------------------- drawing helpers


def _smoothstep(edge0: float, edge1: float, x: np.ndarray) -> np.ndarray:
    t = np.clip((x - edge0) * (1.0 / (edge1 - edge0)), 0.0, 1.0)
    return t * t * (3.0 - 2.0 * t)


def _soft(signed_distance: np.ndarray, width: float) -> np.ndarray:
    """1 inside (distance < 0), 0 outside, a linear edge ``2 * width`` wide (the final blur
    rounds it off; a linear ramp costs half of a smoothstep)."""
    return np.clip(0.5 - signed_distance * (0.5 / width), 0.0, 1.0)


class _Frame:
    """Maps between pixels and normalised thorax coordinates (u across, v down).

    u = 0 on the midline and +-1 at the inner rib margins (u > 0 = image right = patient left);
    v = 0 at the lung apices and 1 at the costophrenic angles.
    """

    def __init__(self, size: int, anatomy: _Anatomy) -> None:
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


def _splat_segments(frame: _Frame, segments: np.ndarray, samples: int = 14) -> np.ndarray:
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


def _vessel_segments(rng: np.random.Generator, side: int) -> np.ndarray:
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
    band = _soft(edge, 0.012) * inside
    cortex = np.exp(-((edge / 0.011) ** 2)) * inside
    return band, cortex


def _ribs(frame: _Frame, a: _Anatomy, au: np.ndarray) -> np.ndarray:
    """Posterior ribs (arcs from the spine curving down laterally) and fainter anterior ribs."""
    v = frame.v
    curve = -0.12 * au + 0.5 * au * au
    thick = (a.rib_gap * (0.42 + 0.12 * au)).astype(np.float32)
    band, cortex = _periodic_band(v - curve + 0.14 - a.rib_phase, a.rib_gap, thick, 11)
    posterior = (0.6 * band + 0.22 * cortex) * _smoothstep(0.07, 0.13, au) * _soft(au - 1.1, 0.05)
    curve_a = 0.2 - 0.42 * np.clip(1.08 - au, 0, None) ** 1.5
    band_a, cortex_a = _periodic_band(v - curve_a + 0.04 - a.rib_phase, a.rib_gap * 1.05, thick * 0.8, 7)
    anterior = (0.28 * band_a + 0.1 * cortex_a) * _smoothstep(0.25, 0.55, au) * _soft(au - 1.08, 0.04)
    return posterior + anterior


def _clavicles(frame: _Frame, au: np.ndarray) -> np.ndarray:
    centre = 0.02 - 0.10 * au + 0.05 * np.sin(au * 5.0)
    edge = np.abs(frame.v - centre) - 0.032
    extent = _smoothstep(0.07, 0.14, au) * _soft(au - 1.0, 0.06)
    return (_soft(edge, 0.01) + 0.5 * np.exp(-((edge / 0.01) ** 2))) * extent


def _spine(frame: _Frame, a: _Anatomy, au: np.ndarray) -> np.ndarray:
    body = _soft(au - 0.085, 0.02)
    phase = (frame.v + 0.14 - a.rib_phase) / a.rib_gap * math.pi
    sin2 = np.sin(phase) ** 2
    discs = 1.0 - 0.25 * sin2
    pedicles = np.exp(-(((au - 0.065) / 0.016) ** 2)) * (0.3 + 0.3 * sin2 * sin2)
    return body * discs + pedicles


def _cavity(u: np.ndarray, v: np.ndarray, a: _Anatomy) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The air-filled thoracic cavity (both lungs, mediastinum excluded), the rib-cage wall
    half-width and the diaphragm height at each point."""
    au = np.abs(u)
    wall = 0.58 + 0.42 * np.sin(np.pi / 2 * np.clip((v + 0.02) / 0.74, 0, 1))
    apex = 0.01 + 1.4 * (au - 0.5) ** 2
    peak = np.where(u < 0, np.float32(a.dome_r), np.float32(a.dome_l))
    dome = 1.0 - (1.0 - peak) * np.clip(1 - ((au - 0.44) / 0.62) ** 2, 0, 1)
    cavity = (
        _soft(au - wall, 0.025)
        * _soft(apex - v, 0.03)
        * _soft(v - dome, 0.012)
        * _soft(0.1 - au, 0.02)
    )
    return cavity, wall, dome


def _mediastinum(u: np.ndarray, v: np.ndarray, ctr: float) -> tuple[np.ndarray, np.ndarray]:
    """(heart, whole mediastinum): the heart rests on the diaphragm, wider to the patient's left."""
    heart_c = 0.17 + (ctr - 0.44) * 0.5
    heart_top, heart_bottom = 0.42 - (ctr - 0.44) * 0.3, 1.02
    hv = (v - (heart_top + heart_bottom) / 2) / ((heart_bottom - heart_top) / 2)
    hu = (u - heart_c) / ctr
    heart = _soft(np.abs(hu) ** 2.4 + np.abs(hv) ** 2.2 - 1.0, 0.08)
    upper = _soft(np.abs(u - 0.02) - 0.13 - 0.03 * v, 0.03) * _soft(v - 0.6, 0.06)
    knob = _soft(np.hypot((u - 0.17) / 0.09, (v - 0.25) / 0.075) - 1.0, 0.2)
    return heart, np.maximum(np.maximum(heart, upper), knob)


# --------------------------------------------------------------------------- the phantom


def generate_phantom(findings: frozenset[str], seed: int, size: int = 256) -> np.ndarray:
    """A synthetic PA chest radiograph showing ``findings`` (empty = normal).

    Returns a ``size`` x ``size`` float32 array in [0, 1] (bone white, lungs dark),
    deterministic per (findings, seed). Unknown finding names raise InputError.
    """
    if size < 64:
        raise InputError(f"phantom size must be at least 64 pixels, got {size}.")
    plan = plan_findings(findings, seed)
    a = _anatomy(seed)
    frame = _Frame(size, a)
    u, v = frame.u, frame.v
    au = np.abs(u)
    rng_tex = np.random.default_rng([seed, 1])
    rng_noise = np.random.default_rng([seed, 2])
    px = frame.px_per_u / 100.0  # pixels per 0.01 u: blurs scale with the image

    cavity, wall, dome = _cavity(u, v, a)
    heart, mediastinum = _mediastinum(u, v, plan.ctr)

    # Body: neck widening to the shoulders; soft tissue thicker centrally.
    body_w = 0.36 + 0.9 * _smoothstep(-0.34, 0.0, v)
    body = _soft(au - body_w, 0.05)
    thickness = a.soft * body * (0.42 + 0.36 * np.clip(1 - (au / (body_w + 0.1)) ** 2, 0, 1))

    lung = cavity * (1.0 - 0.8 * mediastinum)
    depth = 0.7 + 0.3 * np.sqrt(np.clip(1 - ((au - 0.5) / 0.6) ** 2, 0, 1))

    tex = ndimage.gaussian_filter(rng_tex.standard_normal(u.shape, dtype=np.float32), 1.1 * px)
    tex /= tex.std() + 1e-6
    segments = np.concatenate([_vessel_segments(rng_tex, -1), _vessel_segments(rng_tex, 1)])
    vessels = ndimage.gaussian_filter(_splat_segments(frame, segments), (1.25 + 1.2 * plan.edema_severity) * px)
    vessels *= 1.0 / (float(vessels.max()) * 0.5 + 1e-6)
    fade = np.exp(-((au - 0.26) ** 2) / 0.3 - ((v - 0.44) ** 2) / 0.45)
    vessel_att = 0.2 * np.clip(vessels, 0, 1.2) * (0.35 + 0.65 * fade)

    extra = np.zeros_like(u)  # attenuation added by findings
    lung_air = lung.copy()  # how much of the lung still holds air
    vessel_mask = np.ones_like(u)

    if "effusion" in plan.findings:
        sides = (-1, 1) if plan.effusion_side == 2 else (plan.effusion_side,)
        for side in sides:
            on_side = _smoothstep(-0.02, 0.02, side * u)
            level = 1.0 - plan.effusion_size - 0.22 * np.clip((au - 0.2) / 0.8, 0, 1) ** 2
            fluid = _soft(level - v, 0.02) * on_side * _soft(au - wall - 0.03, 0.02)
            fluid *= _soft(v - dome - 0.05, 0.03) * _soft(0.1 - au, 0.02)
            lung_air *= 1.0 - fluid
            vessel_mask *= 1.0 - fluid
            extra += fluid * (0.1 + 0.12 * np.clip((v - level) / 0.25, 0, 1)) * body

    if "pneumothorax" in plan.findings:
        side = plan.pneumothorax_side
        shrink = 1.0 - plan.pneumothorax_size
        anchor_u, anchor_v = side * 0.2, 0.92
        su = anchor_u + (u - anchor_u) / shrink
        sv = anchor_v + (v - anchor_v) / shrink
        collapsed = _cavity(su, sv, a)[0]
        on_side = _smoothstep(-0.02, 0.02, side * u)
        pleural_space = lung * (1.0 - collapsed) * on_side
        vessel_mask *= 1.0 - pleural_space
        lung_air = lung_air + 0.3 * pleural_space
        # The visceral pleural line: a thin bright ridge along the collapsed lung's soft edge.
        edge = np.clip(1.0 - np.abs(collapsed - 0.5) * 2.0, 0.0, 1.0) * on_side * lung
        extra += 0.16 * edge + 0.08 * collapsed * on_side * lung

    if "consolidation" in plan.findings:
        rng = _finding_rng(seed, "consolidation")
        side = plan.consolidation_side
        cv = {"upper": 0.27, "mid": 0.58, "lingula": 0.58, "lower": 0.76}[plan.consolidation_zone]
        cu = side * (0.6 if plan.consolidation_zone in ("mid", "lingula") else 0.55)
        blob = np.exp(-(((u - cu) / 0.34) ** 2) - ((v - cv) / 0.21) ** 2)
        field = ndimage.gaussian_filter(rng.standard_normal(u.shape).astype(np.float32), 3.0 * px)
        field = (field - field.mean()) / (field.std() + 1e-6)
        patch = np.clip(blob * 2.0 + 0.25 * field - 0.4, 0, 1)
        patch = ndimage.gaussian_filter(patch, 1.2 * px) * cavity
        bronchi = []
        for _ in range(4):
            ang = rng.uniform(-0.6, 0.6)
            ang = ang if side > 0 else math.pi - ang
            u0, v0 = cu - side * 0.2, cv + rng.uniform(-0.07, 0.07)
            for step in range(4):
                u1, v1 = u0 + math.cos(ang) * 0.06, v0 + math.sin(ang) * 0.06
                bronchi.append((u0, v0, u1, v1, 1.0 - 0.15 * step))
                u0, v0 = u1, v1
                ang += rng.uniform(-0.3, 0.3)
        air_bronchograms = ndimage.gaussian_filter(
            _splat_segments(frame, np.asarray(bronchi, dtype=np.float32)), 0.5 * px)
        air_bronchograms = np.clip(air_bronchograms / (air_bronchograms.max() + 1e-6), 0, 1)
        lung_air *= 1.0 - 0.85 * patch
        extra += patch * 0.09 - 0.25 * air_bronchograms * patch
        vessel_mask *= 1.0 - 0.7 * patch

    if "nodule/mass" in plan.findings:
        rng = _finding_rng(seed, "nodule/mass")
        radius_u = plan.nodule_mm / 300.0  # a thorax ~300 mm wide spans 2 u
        du = u - plan.nodule_u
        dv = (v - plan.nodule_v) * (a.height / a.half_width)  # round in pixels
        r = np.hypot(du, dv)
        theta = np.arctan2(dv, du)
        lobes = 1.0 + (0.08 if plan.nodule_mm > 30 else 0.03) * np.sin(3 * theta + rng.uniform(0, 6))
        nodule = _soft(r - radius_u * lobes, 0.01 + 0.06 * radius_u)
        extra += nodule * (0.3 + 0.25 * np.sqrt(np.clip(1 - (r / (radius_u * 1.05)) ** 2, 0, 1)))

    if "edema" in plan.findings:
        rng = _finding_rng(seed, "edema")
        sev = plan.edema_severity
        bat = np.exp(-(((au - 0.26) / 0.36) ** 2) - ((v - 0.5) / 0.28) ** 2)
        mottle = ndimage.gaussian_filter(rng.standard_normal(u.shape).astype(np.float32), 2.0 * px)
        mottle /= mottle.std() + 1e-6
        haze = np.clip(bat * (1.0 + 0.25 * mottle), 0, 1.2) * cavity
        lung_air *= 1.0 - 0.7 * sev * haze
        kerley = []
        for side in (-1, 1):
            for _ in range(int(rng.integers(6, 10))):
                kv = rng.uniform(0.66, 0.92)
                wall_u = 0.58 + 0.42 * math.sin(math.pi / 2 * min((kv + 0.02) / 0.74, 1.0))
                length = rng.uniform(0.06, 0.12)
                kerley.append((side * (wall_u - 0.02), kv, side * (wall_u - 0.02 - length),
                               kv + rng.uniform(-0.01, 0.01), 1.0))
        lines = ndimage.gaussian_filter(_splat_segments(frame, np.asarray(kerley, dtype=np.float32)), 0.45 * px)
        lines = np.clip(lines / (np.percentile(lines[lines > 0], 90) + 1e-6), 0, 1) * cavity
        extra += 0.22 * sev * lines

    hila = sum(np.exp(-(((u - s * 0.24) / 0.07) ** 2) - ((v - 0.45) / 0.11) ** 2) for s in (-1, 1))
    trachea = _soft(np.abs(u - 0.01) - 0.035, 0.012) * _soft(v - 0.34, 0.02) * body
    carina = sum(
        _soft(np.abs(u - s * 0.12 * (v - 0.34) / 0.12) - 0.028, 0.012) * _soft(0.34 - v, 0.01)
        * _soft(v - 0.46, 0.02)
        for s in (-1, 1)
    )
    bubble = _soft(np.hypot((u - 0.45) / 0.13, (v - a.dome_l - 0.1) / 0.055) - 1.0, 0.25)
    scapula = _smoothstep(0.82, 0.98, au) * _soft(au - 1.12, 0.04) * _soft(v - 0.5, 0.08)

    air = 0.56 * depth * a.soft
    att = (
        thickness
        - air * lung_air
        + (vessel_att * vessel_mask + 0.018 * tex * vessel_mask + 0.1 * hila) * lung
        + extra
        - 0.15 * trachea
        - 0.12 * carina * body
        - 0.3 * bubble * body
        + 0.1 * heart * (1.0 - cavity) * _soft(v - dome - 0.03, 0.03)
        + 0.14 * _ribs(frame, a, au) * body * _soft(v - 0.98, 0.08) * (1.0 - 0.5 * mediastinum)
        + 0.32 * _clavicles(frame, au) * body
        + 0.08 * _spine(frame, a, au) * body * _soft(v - 0.9, 0.2)
        + 0.1 * scapula * body
    )
    # Detector response: saturating, with per-patient exposure and a heel effect.
    k = 1.3
    img = (1.0 - np.exp(-k * np.clip(att, 0, None))) / (1.0 - math.exp(-k * 1.5))
    img = np.clip(img * (1.0 + 0.04 * (v - 0.5)) + a.brightness, 0, 1) ** a.gamma
    img = ndimage.gaussian_filter(img, 0.4 * px)
    img += rng_noise.standard_normal(img.shape, dtype=np.float32) * np.float32(a.noise)
    return np.clip(img, 0.0, 1.0).astype(np.float32)


def finding_centres(findings: Iterable[str], seed: int, size: int = 256) -> dict[str, tuple[int, int]]:
    """Approximate (row, col) pixel of each finding in ``generate_phantom(findings, seed, size)``.

    Useful to mark the ground truth on a phantom (teaching overlays) and to test the drawing.
    For a bilateral effusion the patient's right side is given.
    """
    plan = plan_findings(findings, seed)
    frame = _Frame(size, _anatomy(seed))
    points: dict[str, tuple[float, float]] = {}
    if "cardiomegaly" in plan.findings:
        points["cardiomegaly"] = (0.17 + (plan.ctr - 0.44) * 0.5, 0.72)
    if "effusion" in plan.findings:
        side = -1 if plan.effusion_side == 2 else plan.effusion_side
        points["effusion"] = (side * 0.82, 0.8)
    if "pneumothorax" in plan.findings:
        points["pneumothorax"] = (plan.pneumothorax_side * 0.72, 0.25)
    if "consolidation" in plan.findings:
        zone = plan.consolidation_zone
        cu = plan.consolidation_side * (0.6 if zone in ("mid", "lingula") else 0.55)
        points["consolidation"] = (cu, {"upper": 0.27, "mid": 0.58, "lingula": 0.58, "lower": 0.76}[zone])
    if "nodule/mass" in plan.findings:
        points["nodule/mass"] = (plan.nodule_u, plan.nodule_v)
    if "edema" in plan.findings:
        points["edema"] = (-0.4, 0.5)
    out: dict[str, tuple[int, int]] = {}
    for name, (u, v) in points.items():
        row, col = frame.to_px(np.asarray(u), np.asarray(v))
        out[name] = (int(round(float(row))), int(round(float(col))))
    return out


# --------------------------------------------------------------------------- reports

_SIDE = {-1: "right", 1: "left", 2: "bilateral"}


def _size_word(fraction: float) -> str:
    return "small" if fraction < 0.22 else ("moderate" if fraction < 0.33 else "large")


def _pick(rng: np.random.Generator, options: list[str]) -> str:
    return options[int(rng.integers(len(options)))]


def phantom_report(findings: frozenset[str], seed: int) -> str:
    """A templated radiology report for the phantom ``generate_phantom(findings, seed)``.

    "FINDINGS:" then "IMPRESSION:"; wording varies with ``seed``; sides and sizes match the image;
    key findings that are absent are negated (e.g. "No pleural effusion or pneumothorax.").
    """
    plan = plan_findings(findings, seed)
    rng = np.random.default_rng([seed, 3])
    found = plan.findings
    lines: list[str] = [_pick(rng, ["PA view of the chest.", "Frontal (PA) chest radiograph.",
                                    "Single PA view of the chest."])]
    impression: list[str] = []

    if "cardiomegaly" in found:
        lines.append(_pick(rng, [
            f"The heart is enlarged (cardiothoracic ratio about {plan.ctr:.2f}).",
            f"Cardiomegaly, with a cardiothoracic ratio of approximately {plan.ctr:.2f}.",
            "The cardiac silhouette is enlarged.",
        ]))
        impression.append("Cardiomegaly")
    else:
        lines.append(_pick(rng, [
            "The heart size is normal.", "Normal cardiac size.",
            "The cardiomediastinal silhouette is within normal limits.",
        ]))

    if "edema" in found:
        lines.append(_pick(rng, [
            "Bilateral perihilar airspace haziness with indistinct pulmonary vessels and Kerley B lines, "
            "consistent with pulmonary edema.",
            "Perihilar haze in a bat-wing distribution, vascular indistinctness and septal (Kerley B) lines: "
            "interstitial and alveolar pulmonary edema.",
        ]))
        impression.append("Pulmonary edema")

    if "consolidation" in found:
        zone = plan.consolidation_zone
        side = _SIDE[plan.consolidation_side]
        where = "lingula" if zone == "lingula" else (
            f"{side} middle lobe" if zone == "mid" else f"{side} {zone} lobe")
        lines.append(_pick(rng, [
            f"Patchy airspace consolidation in the {where} with air bronchograms.",
            f"There is a focal consolidation in the {where}; air bronchograms are seen.",
            f"Airspace opacity in the {where}, with air bronchograms, compatible with consolidation.",
        ]))
        impression.append(f"Consolidation in the {where}")

    if "nodule/mass" in found:
        kind = "mass" if plan.nodule_mm > 30 else "nodule"
        side = _SIDE[plan.nodule_side]
        size_cm = plan.nodule_mm / 10.0
        lines.append(_pick(rng, [
            f"A {size_cm:.1f} cm round {kind} projects over the {side} {plan.nodule_zone} zone.",
            f"There is a well-circumscribed {size_cm:.1f} cm pulmonary {kind} in the {side} "
            f"{plan.nodule_zone} zone.",
        ]))
        impression.append(f"{size_cm:.1f} cm {side} {plan.nodule_zone} zone pulmonary {kind}; "
                          "CT recommended for further characterisation")

    if "effusion" in found:
        size = _size_word(plan.effusion_size)
        if plan.effusion_side == 2:
            text = f"{size.capitalize()} bilateral pleural effusions"
            lines.append(f"{text} with blunting of both costophrenic angles.")
        else:
            side = _SIDE[plan.effusion_side]
            text = f"{size.capitalize()} {side} pleural effusion"
            lines.append(_pick(rng, [
                f"{text} with blunting of the {side} costophrenic angle and a meniscus.",
                f"Blunting of the {side} costophrenic angle with a meniscus, in keeping with a "
                f"{size} {side} pleural effusion.",
            ]))
        impression.append(text)

    if "pneumothorax" in found:
        side = _SIDE[plan.pneumothorax_side]
        size = _size_word(plan.pneumothorax_size)
        lines.append(_pick(rng, [
            f"A visceral pleural line is seen in the {side} apex and lateral hemithorax with no lung "
            f"markings beyond it: {size} {side} pneumothorax.",
            f"{size.capitalize()} {side} pneumothorax, with a visible pleural edge and absent lung markings "
            "peripherally.",
        ]))
        impression.append(f"{size.capitalize()} {side} pneumothorax")

    # Negations for absent key findings.
    lung_findings = {"edema", "consolidation", "nodule/mass"} & found
    if not lung_findings and "pneumothorax" not in found:
        lines.append(_pick(rng, ["The lungs are clear.", "The lungs are well expanded and clear.",
                                 "Clear lungs."]))
    if "consolidation" not in found and "edema" not in found:
        lines.append(_pick(rng, ["No focal consolidation.", "No focal airspace consolidation."]))
    if "edema" not in found:
        lines.append(_pick(rng, ["No pulmonary edema.", "No signs of pulmonary edema."]))
    if "nodule/mass" not in found:
        lines.append(_pick(rng, ["No pulmonary nodule or mass.", "No suspicious nodule or mass."]))
    absent_pleural = [name for name in ("effusion", "pneumothorax") if name not in found]
    if absent_pleural == ["effusion", "pneumothorax"]:
        lines.append(_pick(rng, ["No pleural effusion or pneumothorax.",
                                 "No pneumothorax or pleural effusion."]))
    elif absent_pleural == ["effusion"]:
        lines.append("No pleural effusion.")
    elif absent_pleural == ["pneumothorax"]:
        lines.append("No pneumothorax.")
    lines.append(_pick(rng, ["The osseous structures are intact.", "No acute osseous abnormality.",
                             "Bones are unremarkable."]))

    if impression:
        impression_text = ". ".join(impression) + "."
    else:
        impression_text = _pick(rng, ["No acute cardiopulmonary abnormality.",
                                      "Normal chest radiograph.", "No acute cardiopulmonary process."])
    return "FINDINGS: " + " ".join(lines) + "\nIMPRESSION: " + impression_text


# --------------------------------------------------------------------------- demo library


def label_for(findings: Iterable[str]) -> str:
    """"normal" or the findings joined with " + " in :data:`FINDING_NAMES` order."""
    found = _validate(findings)
    ordered = [name for name in FINDING_NAMES if name in found]
    return " + ".join(ordered) if ordered else "normal"


def _slug(label: str) -> str:
    return label.replace(" + ", "+").replace("/", "-").replace(" ", "_")


def demo_mix(n: int, seed: int = 0) -> list[frozenset[str]]:
    """The findings of ``n`` demo cases: ~30% normal, ~50% single findings, ~20% pairs, shuffled."""
    n_normal = round(n * 0.30)
    n_pairs = round(n * 0.20)
    n_single = n - n_normal - n_pairs
    cases: list[frozenset[str]] = [frozenset()] * n_normal
    cases += [frozenset({FINDING_NAMES[i % len(FINDING_NAMES)]}) for i in range(n_single)]
    cases += [frozenset(DEMO_PAIRS[i % len(DEMO_PAIRS)]) for i in range(n_pairs)]
    order = np.random.default_rng([seed, 7]).permutation(len(cases))
    return [cases[i] for i in order]


def _png_bytes(pixels: np.ndarray) -> bytes:
    buf = io.BytesIO()
    u8 = np.round(np.clip(pixels, 0, 1) * 255).astype(np.uint8)
    Image.fromarray(u8, mode="L").save(buf, format="PNG", compress_level=1)
    return buf.getvalue()


def _write_if_changed(path: Path, payload: bytes) -> bool:
    """Write ``payload`` unless the file already holds exactly it; True if written.

    Atomic (temp file + ``os.replace``) so a reader never sees half a file; not fsynced, because
    the demo library can always be regenerated and 240 fsyncs cost seconds.
    """
    if path.is_file() and path.stat().st_size == len(payload) and path.read_bytes() == payload:
        return False
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(payload)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return True


def build_demo_library(out_dir: Path, n: int = 240, seed: int = 0, *, size: int = 256) -> Path:
    """Write ``n`` phantom PNGs under ``out_dir/images/<label>/`` and ``out_dir/labels.csv``.

    Columns: image (path relative to ``out_dir``), label, report, patient_id, view, dataset
    ("synthetic"), findings (pipe-separated), synthetic ("true"). Idempotent: files whose bytes
    would not change are not rewritten. Returns the CSV path.
    """
    if n < 1:
        raise InputError(f"n must be at least 1, got {n}.")
    out_dir = Path(out_dir)
    rows: list[dict[str, str]] = []
    for i, found in enumerate(demo_mix(n, seed)):
        case_seed = seed * 1_000_003 + i
        label = label_for(found)
        rel = f"images/{_slug(label)}/syn_{seed}_{i:05d}.png"
        _write_if_changed(out_dir / rel, _png_bytes(generate_phantom(found, case_seed, size)))
        rows.append({
            "image": rel,
            "label": label,
            "report": phantom_report(found, case_seed),
            "patient_id": f"syn-{seed}-{i:05d}",
            "view": "PA",
            "dataset": "synthetic",
            "findings": "|".join(name for name in FINDING_NAMES if name in found),
            "synthetic": "true",
        })
    text = io.StringIO()
    writer = csv.DictWriter(text, fieldnames=list(CSV_COLUMNS), lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    csv_path = out_dir / "labels.csv"
    _write_if_changed(csv_path, text.getvalue().encode("utf-8"))
    return csv_path
