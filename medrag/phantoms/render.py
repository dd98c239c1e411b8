"""Compose a phantom: the normal chest, its findings, then the detector's response and noise."""

from __future__ import annotations

import math

import numpy as np
from scipy import ndimage

from medrag.errors import InputError
from medrag.phantoms.anatomy import (
    airways,
    body_outline,
    cavity,
    clavicles,
    gastric_bubble,
    hila,
    mediastinum,
    ribs,
    scapulae,
    spine,
    vessel_segments,
)
from medrag.phantoms.findings import Layers, Scene, paint_findings
from medrag.phantoms.geometry import Frame, soft, splat_segments
from medrag.phantoms.plan import anatomy_for, plan_findings


def generate_phantom(findings: frozenset[str], seed: int, size: int = 256) -> np.ndarray:
    """A synthetic PA chest radiograph showing ``findings`` (empty = normal).

    Returns a ``size`` x ``size`` float32 array in [0, 1] (bone white, lungs dark),
    deterministic per (findings, seed). Unknown finding names raise InputError.
    """
    if size < 64:
        raise InputError(f"phantom size must be at least 64 pixels, got {size}.")
    plan = plan_findings(findings, seed)
    a = anatomy_for(seed)
    frame = Frame(size, a)
    u, v = frame.u, frame.v
    au = np.abs(u)
    rng_tex = np.random.default_rng([seed, 1])
    rng_noise = np.random.default_rng([seed, 2])
    px = frame.px_per_u / 100.0  # pixels per 0.01 u: blurs scale with the image

    inside, wall, dome = cavity(u, v, a)
    heart, whole_mediastinum = mediastinum(u, v, plan.ctr)
    body, thickness = body_outline(au, v, a)
    lung = inside * (1.0 - 0.8 * whole_mediastinum)
    depth = 0.7 + 0.3 * np.sqrt(np.clip(1 - ((au - 0.5) / 0.6) ** 2, 0, 1))

    tex = ndimage.gaussian_filter(rng_tex.standard_normal(u.shape, dtype=np.float32), 1.1 * px)
    tex /= tex.std() + 1e-6
    segments = np.concatenate([vessel_segments(rng_tex, -1), vessel_segments(rng_tex, 1)])
    vessels = ndimage.gaussian_filter(splat_segments(frame, segments), (1.25 + 1.2 * plan.edema_severity) * px)
    vessels *= 1.0 / (float(vessels.max()) * 0.5 + 1e-6)
    fade = np.exp(-((au - 0.26) ** 2) / 0.3 - ((v - 0.44) ** 2) / 0.45)
    vessel_att = 0.2 * np.clip(vessels, 0, 1.2) * (0.35 + 0.65 * fade)

    scene = Scene(seed=seed, anatomy=a, frame=frame, u=u, v=v, au=au, px=px, cavity=inside, wall=wall,
                  dome=dome, lung=lung, body=body)
    layers = Layers(extra=np.zeros_like(u), lung_air=lung.copy(), vessel_mask=np.ones_like(u))
    paint_findings(scene, plan, layers)

    trachea, carina = airways(u, v, body)
    air = 0.56 * depth * a.soft
    att = (
        thickness
        - air * layers.lung_air
        + (vessel_att * layers.vessel_mask + 0.018 * tex * layers.vessel_mask + 0.1 * hila(u, v)) * lung
        + layers.extra
        - 0.15 * trachea
        - 0.12 * carina * body
        - 0.3 * gastric_bubble(u, v, a) * body
        + 0.1 * heart * (1.0 - inside) * soft(v - dome - 0.03, 0.03)
        + 0.14 * ribs(frame, a, au) * body * soft(v - 0.98, 0.08) * (1.0 - 0.5 * whole_mediastinum)
        + 0.32 * clavicles(frame, au) * body
        + 0.08 * spine(frame, a, au) * body * soft(v - 0.9, 0.2)
        + 0.1 * scapulae(au, v) * body
    )
    # Detector response: saturating, with per-patient exposure and a heel effect.
    k = 1.3
    img = (1.0 - np.exp(-k * np.clip(att, 0, None))) / (1.0 - math.exp(-k * 1.5))
    img = np.clip(img * (1.0 + 0.04 * (v - 0.5)) + a.brightness, 0, 1) ** a.gamma
    img = ndimage.gaussian_filter(img, 0.4 * px)
    img += rng_noise.standard_normal(img.shape, dtype=np.float32) * np.float32(a.noise)
    return np.clip(img, 0.0, 1.0).astype(np.float32)


__all__ = ["generate_phantom"]
