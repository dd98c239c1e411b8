"""The exact lung and heart masks of a synthetic phantom, in the pixels of ``generate_phantom``.

Ground truth for training and testing the segmenter. The lungs follow the V7 convention of
../shared/data/cxr-masks (both lungs as drawn by :func:`~medrag.phantoms.anatomy.cavity`, including the lung
behind the heart, without the upper mediastinum and the aortic knob); the heart is
:func:`~medrag.phantoms.anatomy.mediastinum`'s heart where the picture shows it (above the diaphragm). Both
masks ignore findings: an effusion or a pneumothorax lies inside the lung field, as on a real film.
"""

from __future__ import annotations

import numpy as np

from medrag.phantoms.anatomy import cavity, mediastinum
from medrag.phantoms.geometry import Frame, soft
from medrag.phantoms.plan import anatomy_for, plan_findings


def phantom_masks(findings: frozenset[str], seed: int, size: int = 256
                  ) -> tuple[np.ndarray, np.ndarray]:
    """(lungs, heart): soft masks in [0, 1] (float32, ``size`` px square) of ``generate_phantom(findings, seed, size)``.

    Threshold at 0.5 for binary masks; the soft edge is the drawing's own.
    """
    plan = plan_findings(findings, seed)
    a = anatomy_for(seed)
    frame = Frame(size, a)
    u, v = frame.u, frame.v
    inside, _wall, dome = cavity(u, v, a)
    heart, whole = mediastinum(u, v, plan.ctr)
    # The mediastinum above the heart (upper mediastinum and aortic knob) is not lung; the heart may overlap it.
    upper = np.where(heart >= whole, 0.0, whole)
    lungs = inside * (1.0 - upper)
    heart_visible = heart * soft(v - dome - 0.03, 0.03)
    return lungs.astype(np.float32), heart_visible.astype(np.float32)


def phantom_truth_ctr(findings: frozenset[str], seed: int) -> float:
    """The cardiothoracic ratio a phantom was drawn with (heart width over the inner rib-cage width)."""
    return float(plan_findings(findings, seed).ctr)


__all__ = ["phantom_masks", "phantom_truth_ctr"]
