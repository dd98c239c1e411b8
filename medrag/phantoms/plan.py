"""What a phantom shows, decided before anything is drawn: the patient's anatomy and each finding's plan.

The image (:mod:`medrag.phantoms.render`) and its report (:mod:`medrag.phantoms.reports`) both read the
same :class:`FindingPlan`, so a report's sides, sizes and zones always match its picture.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np

from medrag.errors import InputError
from medrag.records import PHANTOM_FINDINGS

#: Findings a phantom can show, in the fixed order used for labels (names as in records.FINDINGS).
FINDING_NAMES: tuple[str, ...] = PHANTOM_FINDINGS


@dataclass(frozen=True)
class Anatomy:
    """One patient's build, positioning and exposure (depends on the seed only)."""

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


def validate_findings(findings: Iterable[str]) -> frozenset[str]:
    """``findings`` as a frozenset; InputError naming the valid choices for an unknown one."""
    found = frozenset(findings)
    unknown = sorted(found - set(FINDING_NAMES))
    if unknown:
        raise InputError(
            f"unknown phantom finding(s) {unknown}; choose from {', '.join(FINDING_NAMES)} "
            "(an empty set draws a normal chest)."
        )
    return found


def anatomy_for(seed: int) -> Anatomy:
    """The patient drawn for ``seed`` (the same whatever the findings)."""
    # Positioning and exposure ranges are narrow on purpose (see the package docstring and
    # docs/encoder-experiments.md): wider ones (±4° tilt, gamma 0.8-1.25) swamped the findings
    # for similar-case retrieval.
    rng = np.random.default_rng([seed, 0])
    return Anatomy(
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


def finding_rng(seed: int, name: str) -> np.random.Generator:
    """The random stream of one finding: adding a finding never changes another one's draws."""
    return np.random.default_rng([seed, 100 + FINDING_NAMES.index(name)])


def _zone(v: float) -> str:
    return "upper" if v < 0.38 else ("mid" if v < 0.62 else "lower")


def plan_findings(findings: Iterable[str], seed: int) -> FindingPlan:
    """The sizes, sides and places of ``findings`` for ``seed`` (what the report describes)."""
    found = validate_findings(findings)
    anatomy = anatomy_for(seed)
    values: dict[str, Any] = {"findings": found, "ctr": anatomy.ctr}
    if "cardiomegaly" in found:
        values["ctr"] = float(finding_rng(seed, "cardiomegaly").uniform(0.58, 0.68))
    if "effusion" in found:
        rng = finding_rng(seed, "effusion")
        both = "edema" in found and rng.uniform() < 0.5
        values["effusion_side"] = 2 if both else int(rng.choice([-1, 1]))
        values["effusion_size"] = float(rng.uniform(0.2, 0.42))
    if "pneumothorax" in found:
        rng = finding_rng(seed, "pneumothorax")
        values["pneumothorax_side"] = int(rng.choice([-1, 1]))
        values["pneumothorax_size"] = float(rng.uniform(0.2, 0.34))
    if "consolidation" in found:
        rng = finding_rng(seed, "consolidation")
        side = int(rng.choice([-1, 1]))
        zones = ["upper", "lower"] + (["mid"] if side < 0 else ["lingula"])
        values["consolidation_side"] = side
        values["consolidation_zone"] = str(rng.choice(zones))
    if "nodule/mass" in found:
        rng = finding_rng(seed, "nodule/mass")
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
        values["edema_severity"] = float(finding_rng(seed, "edema").uniform(0.6, 1.0))
    return FindingPlan(**values)


__all__ = [
    "FINDING_NAMES",
    "Anatomy",
    "FindingPlan",
    "anatomy_for",
    "finding_rng",
    "plan_findings",
    "validate_findings",
]
