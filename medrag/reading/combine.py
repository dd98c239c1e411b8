"""Runs the configured image readers and merges what they saw into one :class:`ImageReading`.

Merging: the anatomy reader's measurements, zones, view, devices and overlays are kept as they are; each
finding takes the status of the reader that gives a calibrated probability (the classifier), and the
measured evidence and places of the others (the anatomy reader); where the classifier says "possible" and a
measurement says "present", the measurement settles it; where the classifier says "present" at a probability
under one half and a measurement says "absent", the finding is "possible". A fused finding (below) already
weighs the measurements, so they add evidence and place to it but never move its status. Where only one
reader speaks of a finding, its word stands. Last, "no finding" and the abnormal findings are made to agree
(:func:`_settle_normal`).
Before merging, where both the anatomy reader and the classifier ran, the classifier's word on the classes the
measurements help read is re-read with them (:mod:`medrag.reading.fusion`). A reader that cannot load (missing
weights) is skipped with a note; a reader that fails on one image is skipped for that image with a note, so one
broken reader never hides the others.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import TYPE_CHECKING

import numpy as np

from medrag.errors import BackendUnavailableError, ConfigError
from medrag.reading.base import NOT_ABNORMAL, FindingRead, ImageReading, Overlays, Reader, display, readers
from medrag.reading.cnn import classifier_identity
from medrag.reading.fusion import FIT_COMMAND, FusionModel, default_fusion, fuse_readings, is_fused
from medrag.reading.grids import densest_region, peak

if TYPE_CHECKING:
    from medrag.config import Settings

log = logging.getLogger("medrag.reading")

#: Status strength, for merging two readers' word on one finding.
_STRENGTH = {"present": 3, "uncertain": 2, "absent": 1, "not mentioned": 0}


class CombinedReader:
    """The configured readers, run in order on each image."""

    name = "readers"

    def __init__(self, members: Sequence[Reader], notes: Sequence[str] = (), fusion: FusionModel | None = None,
                 normal_margin: float | None = None) -> None:
        self.members = list(members)
        self.notes = tuple(notes)
        self.fusion = fusion
        #: None: the shipped :data:`NORMAL_MARGIN`; a library's calibration sets its own
        self.normal_margin = normal_margin

    @property
    def model(self) -> str:
        """The readers that will run, e.g. "anatomy + medrag-cnn"."""
        return " + ".join(f"{m.name}" for m in self.members) or "none"

    def trained_patients(self) -> set[str]:
        """Patient ids a trained reader among the members learned from (its reading of them is no fair test)."""
        out: set[str] = set()
        for member in self.members:
            trained = getattr(member, "trained_patients", None)
            if callable(trained):
                out |= trained()
        return out

    def read(self, pixels: np.ndarray, *, view_hint: str | None = None) -> ImageReading | None:
        """Every reader's view of one image, merged (None when no reader is configured)."""
        if not self.members:
            return None
        started = time.perf_counter()
        readings: list[ImageReading] = []
        notes = list(self.notes)
        for member in self.members:
            try:
                readings.append(member.read(pixels, view_hint=view_hint))
            except Exception as exc:  # one reader failing must not hide what the others saw
                log.warning("image reader %s failed", member.name, exc_info=exc)
                notes.append(
                    f"The {member.name} reader failed on this image ({type(exc).__name__}); its findings are missing."
                )
        merged = merge_readings(fuse_readings(readings, self.fusion), size=(int(pixels.shape[0]), int(pixels.shape[1])),
                                normal_margin=self.normal_margin)
        return replace(merged, notes=(*merged.notes, *notes), seconds=time.perf_counter() - started)


def build_readers(settings: Settings, *, library_calibration: bool = True) -> CombinedReader:
    """The readers ``settings.readers`` names; unavailable ones are left out with a note saying why.

    With ``library_calibration`` (the default) and a calibration written for this data folder
    (``medrag eval reading --write-calibration``), the classifier, the fusion and the merge read with it."""
    members: list[Reader] = []
    notes: list[str] = []
    for name in settings.readers:
        try:
            members.append(readers.get(name).factory(settings))
        except (BackendUnavailableError, ConfigError) as exc:
            log.warning("image reader %s unavailable: %s", name, exc)
            notes.append(f"The {name} reader is unavailable: {exc}")
    combined = CombinedReader(members, notes, _fusion_for(members, notes))
    return _calibrated(combined, settings) if library_calibration else combined


def _calibrated(combined: CombinedReader, settings: Settings) -> CombinedReader:
    """``combined`` reading with the data folder's own calibration, when it has one that fits these weights."""
    from medrag.reading.calibration import RecalibratedCnn, load_calibration
    from medrag.reading.cnn_reader import MedragCnnReader

    notes = list(combined.notes)
    try:
        calibration = load_calibration(settings.data_dir)
    except ConfigError as exc:
        log.warning("library calibration unreadable: %s", exc)
        return CombinedReader(combined.members, [*notes, f"The shipped calibration is used: {exc}"],
                              combined.fusion)
    cnn = next((m for m in combined.members if isinstance(m, MedragCnnReader)), None)
    if calibration is None or cnn is None or not calibration.active:
        return combined
    if calibration.cnn_weights_sha256 != classifier_identity(cnn.cnn.meta):
        notes.append("The library's calibration was fitted for other medrag-cnn weights, so the shipped one is "
                     "used; write it again with `medrag eval reading --write-calibration`.")
        return CombinedReader(combined.members, notes, combined.fusion)
    keep = frozenset(combined.fusion.classes) if combined.fusion else frozenset()
    recalibrated = MedragCnnReader(RecalibratedCnn(cnn.cnn, calibration, keep))  # type: ignore[arg-type]
    members = [recalibrated if m is cnn else m for m in combined.members]
    fusion = calibration.apply_to_fusion(combined.fusion) if combined.fusion else None
    return CombinedReader(members, [*notes, calibration.note()], fusion, calibration.normal_margin)


def _fusion_for(members: Sequence[Reader], notes: list[str]) -> FusionModel | None:
    """The shipped fusion when both readers it joins are configured and it was fitted on these weights."""
    names = {m.name for m in members}
    if not {"anatomy", "medrag-cnn"} <= names:
        return None
    try:
        fusion = default_fusion()
    except ConfigError as exc:
        log.warning("fusion unavailable: %s", exc)
        notes.append(f"The measurements are not fused with the classifier: {exc}")
        return None
    cnn = next(m for m in members if m.name == "medrag-cnn")
    weights = classifier_identity(getattr(getattr(cnn, "cnn", None), "meta", {}))
    if fusion is not None and fusion.cnn_weights_sha256 != weights:
        notes.append("The measurements are not fused with the classifier: the fusion was fitted on other "
                     f"medrag-cnn weights; refit it with `{FIT_COMMAND}`.")
        return None
    return fusion


def merge_readings(readings: Sequence[ImageReading], size: tuple[int, int] | None = None, *,
                   normal_margin: float | None = None) -> ImageReading:
    """One reading from several: a probability-bearing reader's status wins, the others add evidence and place.

    ``size`` is the image's (height, width): with it, the heatmap's peak names the lung zone it falls in.
    ``normal_margin`` replaces :data:`NORMAL_MARGIN` (for the benchmark that chooses it).
    """
    if not readings:
        return ImageReading()
    base = readings[0]
    findings: dict[str, FindingRead] = {}
    for reading in readings:
        for name, read in reading.findings.items():
            findings[name] = _merge_finding(findings.get(name), read)
    measurements: dict[str, float] = {}
    zones: dict[str, dict[str, float]] = {}
    contours: dict[str, list[tuple[float, float]]] = {}
    zone_boxes: dict[str, tuple[float, float, float, float]] = {}
    heatmap, heatmap_finding, opacity = None, "", None
    for reading in readings:
        measurements.update(reading.measurements)
        zones.update(reading.zones)
        contours.update(reading.overlays.contours)
        zone_boxes.update(reading.overlays.zone_boxes)
        if reading.overlays.heatmap is not None and heatmap is None:
            heatmap, heatmap_finding = reading.overlays.heatmap, reading.overlays.heatmap_finding
        if reading.overlays.opacity is not None and opacity is None:
            opacity = reading.overlays.opacity
    if size is not None:
        _place_findings(findings, opacity, heatmap, heatmap_finding, zone_boxes, size)
    _place_pleural(findings, zones, measurements)
    _settle_normal(findings, NORMAL_MARGIN if normal_margin is None else normal_margin)
    _stand_in(findings)
    with_view = next((r for r in readings if r.view), base)
    with_ctr = next((r for r in readings if r.ctr is not None), base)
    devices = next((r.devices for r in readings if r.devices), ())
    return ImageReading(
        findings=findings, measurements=measurements, view=with_view.view, view_probability=with_view.view_probability,
        ctr=with_ctr.ctr, ctr_reliable=with_ctr.ctr_reliable, zones=zones, devices=devices,
        overlays=Overlays(contours=contours, zone_boxes=zone_boxes, heatmap=heatmap,
                          heatmap_finding=heatmap_finding, devices=devices, opacity=opacity),
        readers=tuple(name for r in readings for name in r.readers),
        notes=tuple(note for r in readings for note in r.notes),
    )


#: A classifier's "present" below this calibrated probability becomes "possible" when a measurement says absent.
CONTRADICTED_BELOW = 0.5
#: Findings seen as denser lung: a seen one without a place takes the zone of the opacity map's peak.
LUNG_OPACITY_FINDINGS: tuple[str, ...] = ("pneumonia", "consolidation", "opacity", "atelectasis", "edema",
                                          "nodule/mass")
#: The opacity map's peak places a finding only when it is at least this many SD denser than normal films.
PLACING_Z = 1.0


def _place_findings(findings: dict[str, FindingRead], opacity: np.ndarray | None, heatmap: np.ndarray | None,
                    heatmap_finding: str, zone_boxes: dict[str, tuple[float, float, float, float]],
                    size: tuple[int, int]) -> None:
    """Give seen findings without a place one: lung opacities the zone of the opacity map's densest region
    (measured density); otherwise the heatmap's finding its peak zone. On the 36 NIH boxes of held-out patients
    the opacity map's place fell inside the box 61 % of the time, the classifier heatmap's peak 11 %
    (BENCHMARKS.md)."""
    opacity_zone = ""
    if opacity is not None and float(np.max(opacity)) >= PLACING_Z:
        opacity_zone = peak_zone(opacity, zone_boxes, size, locate=densest_region)
    for name in LUNG_OPACITY_FINDINGS:
        read = findings.get(name)
        if opacity_zone and read is not None and read.status in ("present", "uncertain") and not read.where:
            findings[name] = replace(read, where=(opacity_zone,))
    if heatmap is not None and heatmap_finding in findings and not findings[heatmap_finding].where:
        zone = peak_zone(heatmap, zone_boxes, size)
        if zone:
            findings[heatmap_finding] = replace(findings[heatmap_finding], where=(zone,))


#: A call rules out a called normal film when it stands this many times as far above its threshold as "no finding"
#: does above its own. Chosen like the thresholds, on the classifier's 299 held-out films: the best of 1, 1.25,
#: 1.5 and 2 for the reading's macro F1 (1.25: 0.494 against 0.475 at 1). The choice made on one half of the
#: patients and scored on the other (``bench/bench_reading_crossfit.py``) gives 0.458 against 0.439 at 1.
NORMAL_MARGIN = 1.25


def _settle_normal(findings: dict[str, FindingRead], factor: float) -> None:
    """Make "no finding" and the abnormal findings agree: a film is not both normal and abnormal.

    When "no finding" is called (present or possible) beside abnormal findings (present or possible), the
    better-supported word stands: a finding outweighs "normal" when it stands at least ``factor`` times as
    far above its own threshold as "no finding" does above its own (probability ÷ threshold, :func:`margin`;
    a finding only a measurement reads has no probability and always does). Then "no finding" is absent.
    Otherwise each call is weaker than the call of a normal film, so each becomes absent, its evidence saying
    why. (The weak classes' F1 thresholds sit near their base rates, so their margins run high.)

    A measurement beside the classifier's probability does not settle this by itself. The fused classes'
    probabilities weigh theirs already (effusion, edema, cardiomegaly). A lung zone over 2 SD is weak
    evidence: on the classifier's 1,195 training films it is flagged on 11 % of normal films and 16 % of
    abnormal ones, a likelihood ratio of 1.5. When either did settle it, 59 of the 113 normal films of
    held-out patients read abnormal (no finding F1 0.54; 0.60 without). (The F1 thresholds of weak classes
    sit near the base rate. Before the margins were compared, nearly every film read "possible consolidation"
    at probability 0.05, and no NIH film of 248 held-out patients was called normal.)
    """
    normal = findings.get("no finding")
    if normal is None or normal.status not in ("present", "uncertain") or normal.probability is None:
        return
    calls = [n for n, r in findings.items() if n not in NOT_ABNORMAL and r.status in ("present", "uncertain")]
    if not calls:
        return
    normal_margin = margin(normal)
    if any(margin(findings[n]) >= factor * normal_margin for n in calls):
        findings["no finding"] = replace(normal, status="absent")
        return
    for name in calls:
        read = findings[name]
        why = f"a normal film is the likelier reading (probability of no finding {normal.probability:.2f})"
        findings[name] = replace(read, status="absent", where=(),
                                 evidence="; ".join(e for e in (read.evidence, why) if e))


#: A finding no reader calls (the classifier at chance on it) is read from these: consolidation is airspace
#: opacity, so it is "possible" where pneumonia or an airspace opacity is called, and absent where neither is.
STANDS_IN_FOR: dict[str, tuple[str, ...]] = {"consolidation": ("pneumonia", "opacity")}


def _stand_in(findings: dict[str, FindingRead]) -> None:
    """Give a "not mentioned" finding of :data:`STANDS_IN_FOR` a status from the findings that stand in for it
    (never more than "possible": it is inferred, not seen)."""
    for name, proxies in STANDS_IN_FOR.items():
        read = findings.get(name)
        known = [findings[p] for p in proxies if p in findings and findings[p].status != "not mentioned"]
        if read is None or read.status != "not mentioned" or not known:
            continue
        called = [r for r in known if r.status in ("present", "uncertain")]
        if called:
            named = " and ".join(f"{display(r.name)} is {'called' if r.status == 'present' else 'possible'}"
                                 for r in called)
            why = f"possible because {named}"
            status, where = "uncertain", next((r.where for r in called if r.where), ())
        else:
            names = [display(r.name) for r in known]
            why = f"neither {' nor '.join(names)} is called" if len(names) > 1 else f"no {names[0]} is called"
            status, where = "absent", ()
        findings[name] = replace(read, status=status, where=where,  # type: ignore[arg-type]
                                 evidence="; ".join(e for e in (read.evidence, why) if e))


def margin(read: FindingRead) -> float:
    """How far a finding's probability stands above the threshold its reader calls it at (1.0: on it).

    Without a probability (a measurement) it is infinite; without a threshold, one half is assumed (the
    classifier's default)."""
    if read.probability is None:
        return float("inf")
    return float(read.probability) / (read.threshold if read.threshold else 0.5)


def _place_pleural(findings: dict[str, FindingRead], zones: dict[str, dict[str, float]],
                   measurements: dict[str, float]) -> None:
    """A seen effusion without a place goes to the lower zone of the side whose base is denser than normal, a
    seen pneumothorax to the upper zone of the smaller lung field (the sides
    :func:`medrag.reading.places.finding_point` points at)."""
    from medrag.reading.places import NORMAL_AREA_RATIO, side_of_effusion, side_of_pneumothorax

    ratio = measurements.get("asymmetry area_ratio", float("nan"))
    sides = {
        "effusion": (lambda: side_of_effusion((), zones, measurements), "lower zone",
                     "placed on the side whose base is denser than on normal films"),
        "pneumothorax": (lambda: side_of_pneumothorax((), measurements), "upper zone",
                         f"placed on the side of the smaller lung field (right-to-left area {ratio:.2f}, "
                         f"normal films {NORMAL_AREA_RATIO:.2f})"),
    }
    for name, (side_of, zone, why) in sides.items():
        read = findings.get(name)
        if read is None or read.where or read.status not in ("present", "uncertain"):
            continue
        side = side_of()
        if side:
            evidence = "; ".join(e for e in (read.evidence, why) if e)
            findings[name] = replace(read, where=(f"{side} {zone}",), evidence=evidence)


def peak_zone(heatmap: np.ndarray, zone_boxes: dict[str, tuple[float, float, float, float]],
              size: tuple[int, int], locate: Callable[[np.ndarray], tuple[float, float, float]] = peak) -> str:
    """The zone whose box holds the map's point (``locate``: its hottest cell by default; "" when none does)."""
    row, col, _ = locate(heatmap)
    y, x = row * size[0], col * size[1]
    for zone, (zx, zy, zw, zh) in zone_boxes.items():
        if zx <= x <= zx + zw and zy <= y <= zy + zh:
            return zone
    return ""


def _merge_finding(current: FindingRead | None, new: FindingRead) -> FindingRead:
    if current is None:
        return new
    # The calibrated reader decides the status; ties go to the stronger statement.
    if (new.probability is not None) != (current.probability is not None):
        decider, other = (new, current) if new.probability is not None else (current, new)
    else:
        decider, other = (new, current) if _STRENGTH[new.status] > _STRENGTH[current.status] else (current, new)
    if is_fused(decider) and decider.status != "not mentioned":
        # Its probability already weighs the measurements (the fusion): counting them again would call a
        # ratio over its band "present" on a fused probability of 0.1.
        pass
    elif decider.status == "not mentioned" and other.status != "not mentioned":
        # The calibrated reader does not call this one (at chance on it): the other reader's word stands.
        decider = replace(decider, status=other.status)
    elif decider.status == "absent" and other.status in ("present", "uncertain"):
        # A measurement points to it though the classifier does not: say "possible", not "no".
        decider = replace(decider, status="uncertain")
    elif (decider.status == "present" and decider.probability is not None and decider.probability < CONTRADICTED_BELOW
          and other.status == "absent" and other.probability is None):
        # The classifier's threshold (chosen for F1) calls it at a low probability, and a measurement says no
        # (both costophrenic angles sharp, a normal ratio): "possible", not a flat "yes".
        decider = replace(decider, status="uncertain")
    elif decider.status == "uncertain" and other.status == "present" and other.probability is None:
        # The classifier says "possible" and a measurement says "present" (a ratio over its band, a zone
        # over 2 SD, a device seen): the measurement settles it.
        decider = replace(decider, status="present")
    evidence = "; ".join(e for e in (decider.evidence, other.evidence) if e)
    where = decider.where or other.where
    sources = " + ".join(s for s in (decider.source, other.source) if s)
    return replace(decider, evidence=evidence, where=where, source=sources)


__all__ = ["CONTRADICTED_BELOW", "LUNG_OPACITY_FINDINGS", "NORMAL_MARGIN", "PLACING_Z", "CombinedReader",
           "STANDS_IN_FOR", "build_readers", "margin", "merge_readings", "peak_zone"]
