"""Finding painters: how each finding changes a normal phantom, and where it lies in the image.

A painter reads the :class:`Scene` (the normal chest's geometry) and the :class:`~medrag.phantoms.plan.FindingPlan`
and changes the :class:`Layers`: attenuation added, the lung's remaining air, and how visible the vessels
stay. Painters run in :data:`PAINT_ORDER`; each draws from its own random stream, so a finding never
alters another one. Cardiomegaly has no painter: it is the plan's cardiothoracic ratio, drawn by
:func:`medrag.phantoms.anatomy.mediastinum`.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from medrag.phantoms.anatomy import cavity, heart_centre_u, wall_at
from medrag.phantoms.geometry import Frame, smoothstep, soft, splat_segments
from medrag.phantoms.plan import Anatomy, FindingPlan, anatomy_for, finding_rng, plan_findings

_CONSOLIDATION_V = {"upper": 0.27, "mid": 0.58, "lingula": 0.58, "lower": 0.76}


@dataclass(frozen=True)
class Scene:
    """The normal chest the findings are painted on (maps over thorax coordinates)."""

    seed: int
    anatomy: Anatomy
    frame: Frame
    u: np.ndarray
    v: np.ndarray
    au: np.ndarray  # |u|
    px: float  # pixels per 0.01 u: blurs scale with the image
    cavity: np.ndarray
    wall: np.ndarray
    dome: np.ndarray
    lung: np.ndarray
    body: np.ndarray


@dataclass
class Layers:
    """What the findings change (painters update these in place)."""

    extra: np.ndarray  # attenuation added by findings
    lung_air: np.ndarray  # how much of the lung still holds air
    vessel_mask: np.ndarray  # how visible the lung markings stay


def consolidation_centre(plan: FindingPlan) -> tuple[float, float]:
    """(u, v) centre of the planned consolidation."""
    zone = plan.consolidation_zone
    cu = plan.consolidation_side * (0.6 if zone in ("mid", "lingula") else 0.55)
    return cu, _CONSOLIDATION_V[zone]


def paint_effusion(scene: Scene, plan: FindingPlan, layers: Layers) -> None:
    """Dependent fluid filling the costophrenic angle, a meniscus rising laterally."""
    u, v, au = scene.u, scene.v, scene.au
    sides = (-1, 1) if plan.effusion_side == 2 else (plan.effusion_side,)
    for side in sides:
        on_side = smoothstep(-0.02, 0.02, side * u)
        level = 1.0 - plan.effusion_size - 0.22 * np.clip((au - 0.2) / 0.8, 0, 1) ** 2
        fluid = soft(level - v, 0.02) * on_side * soft(au - scene.wall - 0.03, 0.02)
        fluid *= soft(v - scene.dome - 0.05, 0.03) * soft(0.1 - au, 0.02)
        layers.lung_air *= 1.0 - fluid
        layers.vessel_mask *= 1.0 - fluid
        layers.extra += fluid * (0.1 + 0.12 * np.clip((v - level) / 0.25, 0, 1)) * scene.body


def paint_pneumothorax(scene: Scene, plan: FindingPlan, layers: Layers) -> None:
    """An apicolateral air rim without markings outside the visceral pleural line."""
    u, v, lung = scene.u, scene.v, scene.lung
    side = plan.pneumothorax_side
    shrink = 1.0 - plan.pneumothorax_size
    anchor_u, anchor_v = side * 0.2, 0.92
    su = anchor_u + (u - anchor_u) / shrink
    sv = anchor_v + (v - anchor_v) / shrink
    collapsed = cavity(su, sv, scene.anatomy)[0]
    on_side = smoothstep(-0.02, 0.02, side * u)
    pleural_space = lung * (1.0 - collapsed) * on_side
    layers.vessel_mask *= 1.0 - pleural_space
    layers.lung_air = layers.lung_air + 0.3 * pleural_space
    # The visceral pleural line: a thin bright ridge along the collapsed lung's soft edge.
    edge = np.clip(1.0 - np.abs(collapsed - 0.5) * 2.0, 0.0, 1.0) * on_side * lung
    layers.extra += 0.16 * edge + 0.08 * collapsed * on_side * lung


def paint_consolidation(scene: Scene, plan: FindingPlan, layers: Layers) -> None:
    """A patchy air-space opacity in one lobe, crossed by air bronchograms."""
    u, v, px = scene.u, scene.v, scene.px
    rng = finding_rng(scene.seed, "consolidation")
    side = plan.consolidation_side
    cu, cv = consolidation_centre(plan)
    blob = np.exp(-(((u - cu) / 0.34) ** 2) - ((v - cv) / 0.21) ** 2)
    field = ndimage.gaussian_filter(rng.standard_normal(u.shape).astype(np.float32), 3.0 * px)
    field = (field - field.mean()) / (field.std() + 1e-6)
    patch = np.clip(blob * 2.0 + 0.25 * field - 0.4, 0, 1)
    patch = ndimage.gaussian_filter(patch, 1.2 * px) * scene.cavity
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
        splat_segments(scene.frame, np.asarray(bronchi, dtype=np.float32)), 0.5 * px)
    air_bronchograms = np.clip(air_bronchograms / (air_bronchograms.max() + 1e-6), 0, 1)
    layers.lung_air *= 1.0 - 0.85 * patch
    layers.extra += patch * 0.09 - 0.25 * air_bronchograms * patch
    layers.vessel_mask *= 1.0 - 0.7 * patch


def paint_nodule(scene: Scene, plan: FindingPlan, layers: Layers) -> None:
    """A round opacity, slightly lobulated (more so for a mass, over 3 cm)."""
    a = scene.anatomy
    rng = finding_rng(scene.seed, "nodule/mass")
    radius_u = plan.nodule_mm / 300.0  # a thorax ~300 mm wide spans 2 u
    du = scene.u - plan.nodule_u
    dv = (scene.v - plan.nodule_v) * (a.height / a.half_width)  # round in pixels
    r = np.hypot(du, dv)
    theta = np.arctan2(dv, du)
    lobes = 1.0 + (0.08 if plan.nodule_mm > 30 else 0.03) * np.sin(3 * theta + rng.uniform(0, 6))
    nodule = soft(r - radius_u * lobes, 0.01 + 0.06 * radius_u)
    layers.extra += nodule * (0.3 + 0.25 * np.sqrt(np.clip(1 - (r / (radius_u * 1.05)) ** 2, 0, 1)))


def paint_edema(scene: Scene, plan: FindingPlan, layers: Layers) -> None:
    """Bilateral perihilar haze (bat wing) and Kerley B lines at the lung bases."""
    u, v, au, px = scene.u, scene.v, scene.au, scene.px
    rng = finding_rng(scene.seed, "edema")
    sev = plan.edema_severity
    bat = np.exp(-(((au - 0.26) / 0.36) ** 2) - ((v - 0.5) / 0.28) ** 2)
    mottle = ndimage.gaussian_filter(rng.standard_normal(u.shape).astype(np.float32), 2.0 * px)
    mottle /= mottle.std() + 1e-6
    haze = np.clip(bat * (1.0 + 0.25 * mottle), 0, 1.2) * scene.cavity
    layers.lung_air *= 1.0 - 0.7 * sev * haze
    kerley = []
    for side in (-1, 1):
        for _ in range(int(rng.integers(6, 10))):
            kv = rng.uniform(0.66, 0.92)
            wall_u = wall_at(kv)
            length = rng.uniform(0.06, 0.12)
            kerley.append((side * (wall_u - 0.02), kv, side * (wall_u - 0.02 - length),
                           kv + rng.uniform(-0.01, 0.01), 1.0))
    lines = ndimage.gaussian_filter(splat_segments(scene.frame, np.asarray(kerley, dtype=np.float32)), 0.45 * px)
    lines = np.clip(lines / (np.percentile(lines[lines > 0], 90) + 1e-6), 0, 1) * scene.cavity
    layers.extra += 0.22 * sev * lines


Painter = Callable[[Scene, FindingPlan, Layers], None]

#: The painters in the order they are applied (the order is part of each phantom's exact pixels).
PAINT_ORDER: tuple[tuple[str, Painter], ...] = (
    ("effusion", paint_effusion),
    ("pneumothorax", paint_pneumothorax),
    ("consolidation", paint_consolidation),
    ("nodule/mass", paint_nodule),
    ("edema", paint_edema),
)


def paint_findings(scene: Scene, plan: FindingPlan, layers: Layers) -> None:
    """Apply the painter of every planned finding, in :data:`PAINT_ORDER`."""
    for name, painter in PAINT_ORDER:
        if name in plan.findings:
            painter(scene, plan, layers)


def finding_centres(findings: Iterable[str], seed: int, size: int = 256) -> dict[str, tuple[int, int]]:
    """Approximate (row, col) pixel of each finding in ``generate_phantom(findings, seed, size)``.

    Useful to mark the ground truth on a phantom (teaching overlays) and to test the drawing.
    For a bilateral effusion the patient's right side is given.
    """
    plan = plan_findings(findings, seed)
    frame = Frame(size, anatomy_for(seed))
    points: dict[str, tuple[float, float]] = {}
    if "cardiomegaly" in plan.findings:
        points["cardiomegaly"] = (heart_centre_u(plan.ctr), 0.72)
    if "effusion" in plan.findings:
        side = -1 if plan.effusion_side == 2 else plan.effusion_side
        points["effusion"] = (side * 0.82, 0.8)
    if "pneumothorax" in plan.findings:
        points["pneumothorax"] = (plan.pneumothorax_side * 0.72, 0.25)
    if "consolidation" in plan.findings:
        points["consolidation"] = consolidation_centre(plan)
    if "nodule/mass" in plan.findings:
        points["nodule/mass"] = (plan.nodule_u, plan.nodule_v)
    if "edema" in plan.findings:
        points["edema"] = (-0.4, 0.5)
    out: dict[str, tuple[int, int]] = {}
    for name, (u, v) in points.items():
        row, col = frame.to_px(np.asarray(u), np.asarray(v))
        out[name] = (int(round(float(row))), int(round(float(col))))
    return out


__all__ = [
    "PAINT_ORDER",
    "Layers",
    "Painter",
    "Scene",
    "consolidation_centre",
    "finding_centres",
    "paint_consolidation",
    "paint_edema",
    "paint_effusion",
    "paint_findings",
    "paint_nodule",
    "paint_pneumothorax",
]
