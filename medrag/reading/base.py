"""What an image reading is: findings with a probability, a status, where they are and why.

A *reader* looks at the pixels (not at similar cases) and returns an :class:`ImageReading`. Readers are
registered by name (``anatomy``, ``medrag-cnn``, ``xrv``) like the encoders; :mod:`medrag.reading.combine`
runs the configured ones and merges what they found. The evidence reasoner writes its sections from
this record, the findings table shows it, and the viewer draws its overlays.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from medrag.records import FindingStatus
from medrag.registry import Registry

if TYPE_CHECKING:
    from medrag.config import Settings

#: The six lung zones, named by the PATIENT's side (the patient's right is the image's left on PA/AP).
ZONES: tuple[str, ...] = (
    "right upper zone", "right middle zone", "right lower zone",
    "left upper zone", "left middle zone", "left lower zone",
)


#: How a finding is named in prose.
DISPLAY: dict[str, str] = {
    "effusion": "pleural effusion",
    "nodule/mass": "nodule or mass",
    "opacity": "airspace opacity",
    "support devices": "support devices",
    "no finding": "no acute abnormality",
}


#: Findings that do not make a film abnormal (a normal film may carry ECG leads).
NOT_ABNORMAL: tuple[str, ...] = ("no finding", "support devices")


def display(name: str) -> str:
    """A finding's name in prose."""
    return DISPLAY.get(name, name)


@dataclass(frozen=True)
class FindingRead:
    """One finding as a reader saw it."""

    name: str
    status: FindingStatus
    #: calibrated probability, when the reader gives one
    probability: float | None = None
    #: lung zones (``ZONES``) or other named places where it is
    where: tuple[str, ...] = ()
    #: the measured statement behind it, e.g. "right lower zone 2.1 SD more opaque than normal films"
    evidence: str = ""
    #: which reader said so
    source: str = ""
    #: the probability at or above which its reader calls it present (the classifier's per-class threshold)
    threshold: float | None = None

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        out: dict[str, Any] = {"name": self.name, "status": self.status, "probability": self.probability,
                               "where": list(self.where), "evidence": self.evidence, "source": self.source}
        if self.threshold is not None:
            out["threshold"] = self.threshold
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> FindingRead:
        """The inverse of :meth:`to_dict` (unknown keys ignored)."""
        probability, threshold = data.get("probability"), data.get("threshold")
        return cls(
            name=str(data.get("name", "")), status=data.get("status", "not mentioned"),
            probability=None if probability is None else float(probability),
            where=tuple(str(w) for w in data.get("where") or ()), evidence=str(data.get("evidence") or ""),
            source=str(data.get("source") or ""), threshold=None if threshold is None else float(threshold),
        )


@dataclass(frozen=True)
class DeviceMark:
    """A device found on the film: its kind and its box in original-image pixels."""

    kind: str
    x: float
    y: float
    w: float
    h: float
    score: float = 0.0


@dataclass(frozen=True)
class Overlays:
    """What the viewer can draw over the image, in original-image pixel coordinates."""

    #: closed polylines [(x, y), ...] per structure: "right lung", "left lung", "heart"
    contours: dict[str, list[tuple[float, float]]] = field(default_factory=dict)
    #: boxes of flagged zones: zone name → (x, y, w, h)
    zone_boxes: dict[str, tuple[float, float, float, float]] = field(default_factory=dict)
    #: a coarse heatmap in [0, 1] covering the whole image, and the finding it is for
    heatmap: np.ndarray | None = field(default=None, compare=False)
    heatmap_finding: str = ""
    devices: tuple[DeviceMark, ...] = ()
    #: a coarse map over the whole image: SD by which the lungs are denser than normal films there (0 elsewhere)
    opacity: np.ndarray | None = field(default=None, compare=False)


@dataclass(frozen=True)
class ImageReading:
    """Everything the configured readers found on one image."""

    findings: dict[str, FindingRead] = field(default_factory=dict)
    #: named numbers behind the findings (ctr, zone z-scores, costophrenic angles, ...)
    measurements: dict[str, float] = field(default_factory=dict)
    view: str = ""
    view_probability: float = 0.0
    ctr: float | None = None
    #: False on AP or supine films, where the ratio overstates heart size
    ctr_reliable: bool = True
    #: zone → {"mean": opacity, "z": SD from the library's normal films}
    zones: dict[str, dict[str, float]] = field(default_factory=dict)
    devices: tuple[DeviceMark, ...] = ()
    overlays: Overlays = field(default_factory=Overlays)
    #: the readers that ran ("anatomy", "medrag-cnn", ...)
    readers: tuple[str, ...] = ()
    notes: tuple[str, ...] = ()
    seconds: float = 0.0

    def statuses(self) -> dict[str, FindingStatus]:
        """Finding → status, for the findings the readers assessed."""
        return {name: read.status for name, read in self.findings.items()}

    def flagged_zones(self, z_threshold: float = 2.0) -> list[str]:
        """Zones more opaque than the normal films by at least ``z_threshold`` SD, most opaque first."""
        scored = [(zone, values.get("z", 0.0)) for zone, values in self.zones.items()]
        return [zone for zone, z in sorted(scored, key=lambda item: -item[1]) if z >= z_threshold]


class Reader(Protocol):
    """Looks at an image and says what it sees."""

    name: str
    model: str

    def read(self, pixels: np.ndarray, *, view_hint: str | None = None) -> ImageReading:
        """Read one image (2-D float32 pixels in [0, 1])."""
        ...


@dataclass(frozen=True)
class ReaderSpec:
    """A registry entry: how to build a reader and whether it needs downloaded weights."""

    name: str
    factory: Callable[[Settings], Reader]
    description: str = ""
    weight_free: bool = True


#: Every known reader; the built-ins register themselves when their module is imported.
readers: Registry[ReaderSpec] = Registry(
    "image reader", ("medrag.reading.anatomy_reader", "medrag.reading.cnn_reader", "medrag.reading.xrv_reader")
)


def register_reader(spec: ReaderSpec) -> None:
    """Add (or replace) a reader."""
    readers.register(spec.name, spec)


def status_from_probability(probability: float, present_at: float, uncertain_at: float) -> FindingStatus:
    """A calibrated probability as a status: present, uncertain, or absent (the reader looked and did not see it)."""
    if probability >= present_at:
        return "present"
    if probability >= uncertain_at:
        return "uncertain"
    return "absent"




def reading_to_dict(reading: ImageReading) -> dict[str, Any]:
    """A JSON-ready dict of a reading (the history keeps it, so History can redraw the overlays)."""
    overlays = reading.overlays
    heatmap = None
    if overlays.heatmap is not None:
        heatmap = np.round(np.asarray(overlays.heatmap, dtype=np.float32), 3).tolist()
    opacity = None
    if overlays.opacity is not None:
        opacity = np.round(np.asarray(overlays.opacity, dtype=np.float32), 2).tolist()
    return {
        "findings": {name: read.to_dict() for name, read in reading.findings.items()},
        "measurements": {k: float(v) for k, v in reading.measurements.items()},
        "view": reading.view, "view_probability": float(reading.view_probability),
        "ctr": None if reading.ctr is None else float(reading.ctr), "ctr_reliable": bool(reading.ctr_reliable),
        "zones": {zone: {k: float(v) for k, v in values.items()} for zone, values in reading.zones.items()},
        "devices": [vars(d).copy() for d in reading.devices],
        "overlays": {
            "contours": {k: [[float(x), float(y)] for x, y in pts] for k, pts in overlays.contours.items()},
            "zone_boxes": {k: [float(v) for v in box] for k, box in overlays.zone_boxes.items()},
            "heatmap": heatmap, "heatmap_finding": overlays.heatmap_finding, "opacity": opacity,
        },
        "readers": list(reading.readers), "notes": list(reading.notes), "seconds": float(reading.seconds),
    }


def reading_from_dict(data: dict[str, Any]) -> ImageReading:
    """The inverse of :func:`reading_to_dict`."""
    over = data.get("overlays") or {}
    devices = tuple(DeviceMark(**{k: d[k] for k in ("kind", "x", "y", "w", "h", "score") if k in d})
                    for d in data.get("devices") or [] if isinstance(d, dict))
    heatmap = over.get("heatmap")
    opacity = over.get("opacity")
    overlays = Overlays(
        contours={str(k): [(float(x), float(y)) for x, y in pts] for k, pts in (over.get("contours") or {}).items()},
        zone_boxes={str(k): (float(b[0]), float(b[1]), float(b[2]), float(b[3]))
                    for k, b in (over.get("zone_boxes") or {}).items() if len(b) == 4},
        heatmap=None if heatmap is None else np.asarray(heatmap, dtype=np.float32),
        heatmap_finding=str(over.get("heatmap_finding") or ""), devices=devices,
        opacity=None if opacity is None else np.asarray(opacity, dtype=np.float32),
    )
    ctr = data.get("ctr")
    return ImageReading(
        findings={str(k): FindingRead.from_dict(v) for k, v in (data.get("findings") or {}).items()},
        measurements={str(k): float(v) for k, v in (data.get("measurements") or {}).items()},
        view=str(data.get("view") or ""), view_probability=float(data.get("view_probability") or 0.0),
        ctr=None if ctr is None else float(ctr), ctr_reliable=bool(data.get("ctr_reliable", True)),
        zones={str(z): {k: float(v) for k, v in vals.items()} for z, vals in (data.get("zones") or {}).items()},
        devices=devices, overlays=overlays, readers=tuple(data.get("readers") or ()),
        notes=tuple(data.get("notes") or ()), seconds=float(data.get("seconds") or 0.0),
    )


__all__ = [
    "DISPLAY", "NOT_ABNORMAL", "ZONES", "DeviceMark", "FindingRead", "ImageReading", "Overlays", "Reader",
    "ReaderSpec", "display", "reading_from_dict", "reading_to_dict", "readers", "register_reader",
    "status_from_probability",
]
