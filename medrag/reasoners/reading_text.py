"""Sentences from an :class:`ImageReading`: what was measured where, how sure, section by section.

The evidence reasoner writes its body and its impression from these, so the impression (which the
summariser condenses into the label and findings table) states exactly the statuses the body argues for.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable

from medrag.reading.base import DISPLAY, DeviceMark, FindingRead, ImageReading, display

#: The reasoning section each finding belongs to.
SECTION_OF: dict[str, str] = {
    "pneumonia": "Lungs", "consolidation": "Lungs", "opacity": "Lungs", "atelectasis": "Lungs", "edema": "Lungs",
    "nodule/mass": "Lungs", "emphysema": "Lungs",
    "effusion": "Pleura", "pneumothorax": "Pleura",
    "cardiomegaly": "Heart and mediastinum",
    "fracture": "Bones and devices", "support devices": "Bones and devices",
}

#: Findings named in the impression when ruled out (the ones a reader of a chest film always checks).
KEY_NEGATIVES: tuple[str, ...] = ("effusion", "pneumothorax", "consolidation", "cardiomegaly")



def _where(read: FindingRead) -> str:
    return f" in the {' and '.join(read.where[:2])}" if read.where else ""


def _probability(read: FindingRead) -> str:
    return f"probability {read.probability:.2f}" if read.probability is not None else ""


def finding_sentence(read: FindingRead) -> str:
    """One finding as a sentence whose wording carries its status (the labeler reads it back the same way)."""
    name = display(read.name)
    detail = ", ".join(part for part in (_probability(read), read.evidence) if part)
    detail = f" ({detail})" if detail else ""
    if read.status == "present":
        # Declarative on purpose: "likely" is a hedge the labeler would read as uncertain.
        return f"{name[0].upper()}{name[1:]}{_where(read)}{detail}."
    if read.status == "uncertain":
        return f"Possible {name}{_where(read)}{detail}."
    if read.status == "absent":
        return f"No {name} is seen{detail}."
    return ""


def technical_lines(reading: ImageReading) -> list[str]:
    """View, and what the view means for the measurements."""
    lines: list[str] = []
    if reading.view:
        sure = f" (probability {reading.view_probability:.2f})" if reading.view_probability else ""
        article = "an" if reading.view[:1].upper() in "AEIOU" else "a"
        lines.append(f"The film looks like {article} {reading.view} view{sure}.")
        if reading.view.upper() == "AP":
            lines.append(
                "On an AP (often bedside) film the heart is magnified, "
                "so the cardiothoracic ratio overstates heart size."
            )
    return lines


def heart_lines(reading: ImageReading) -> list[str]:
    """The measured cardiothoracic ratio with its caveat."""
    if reading.ctr is None:
        return []
    verdict = "above 0.5, the usual upper limit on a PA film" if reading.ctr > 0.5 else "within the usual range (≤ 0.5)"
    line = f"Cardiothoracic ratio measured from the lung and heart outlines: {reading.ctr:.2f}, {verdict}."
    if not reading.ctr_reliable:
        line += " This ratio is unreliable on this film (AP or supine projection)."
    return [line]


def zone_lines(reading: ImageReading, z_threshold: float = 2.0) -> list[str]:
    """Zones more opaque than the library's normal films, and the asymmetry between the hemithoraces."""
    lines = []
    for zone in reading.flagged_zones(z_threshold):
        z = reading.zones[zone].get("z", 0.0)
        lines.append(f"The {zone} is {z:.1f} SD more opaque than the library's normal films.")
    if reading.zones and not lines:
        lines.append(f"No lung zone is more than {z_threshold:.0f} SD more opaque than the library's normal films.")
    asymmetry = reading.measurements.get("hemithorax_asymmetry")
    if asymmetry is not None and abs(asymmetry) >= 0.08:
        side = "left" if asymmetry > 0 else "right"
        lines.append(f"The patient's {side} hemithorax is the more opaque (asymmetry {asymmetry:+.2f}).")
    return lines


def pleura_lines(reading: ImageReading) -> list[str]:
    """Costophrenic angles, per side."""
    lines = []
    for side in ("right", "left"):
        angle = reading.measurements.get(f"cp_angle_{side}")
        if angle is None:
            continue
        blunted = reading.measurements.get(f"cp_blunted_{side}", 0.0) >= 1.0
        if blunted:
            lines.append(f"The {side} costophrenic angle is blunted ({angle:.0f}°).")
        else:
            lines.append(f"The {side} costophrenic angle is sharp ({angle:.0f}°).")
    return lines


#: Each device kind in prose: (one, several).
DEVICE_WORDS: dict[str, tuple[str, str]] = {
    "ecg electrode": ("an ECG electrode", "ECG electrodes"),
    "line or tube": ("a line or tube", "lines or tubes"),
    "pacemaker": ("a pacemaker", "pacemakers"),
}


def _device_side(reading: ImageReading, marks: list[DeviceMark]) -> str:
    """Where the marks lie across the patient's midline (" on the right", " on both sides"), or "" unknown."""
    contours = reading.overlays.contours
    right, left = contours.get("right lung"), contours.get("left lung")
    if not right or not left:
        return ""
    right_x = sum(x for x, _ in right) / len(right)
    left_x = sum(x for x, _ in left) / len(left)
    midline = (right_x + left_x) / 2
    sides = {"right" if (m.x + m.w / 2 < midline) == (right_x < midline) else "left" for m in marks}
    return f" on the {sides.pop()}" if len(sides) == 1 else " on both sides"


def device_lines(reading: ImageReading) -> list[str]:
    """Devices found on the film, grouped by kind, each with its side of the patient ("a line on the right")."""
    if not reading.devices:
        return []
    by_kind: dict[str, list[DeviceMark]] = defaultdict(list)
    for device in reading.devices:
        by_kind[device.kind].append(device)
    named = []
    for kind, marks in sorted(by_kind.items()):
        article = "an" if kind[:1].lower() in "aeiou" else "a"
        one, several = DEVICE_WORDS.get(kind, (f"{article} {kind}", f"{kind}s"))
        named.append((one if len(marks) == 1 else f"{len(marks)} {several}") + _device_side(reading, marks))
    listed = named[0] if len(named) == 1 else ", ".join(named[:-1]) + " and " + named[-1]
    return [f"Devices seen: {listed}."]


def section_lines(reading: ImageReading) -> dict[str, list[str]]:
    """Every body section's sentences, measurements first, then the findings that belong there."""
    lines: dict[str, list[str]] = defaultdict(list)
    lines["Technical assessment"].extend(technical_lines(reading))
    lines["Lungs"].extend(zone_lines(reading))
    lines["Pleura"].extend(pleura_lines(reading))
    lines["Heart and mediastinum"].extend(heart_lines(reading))
    lines["Bones and devices"].extend(device_lines(reading))
    for read in ordered(reading.findings.values()):
        section = SECTION_OF.get(read.name)
        sentence = finding_sentence(read)
        if section and sentence and (read.name != "support devices" or read.status != "present" or not reading.devices):
            lines[section].append(sentence)
    return lines


def ordered(reads: Iterable[FindingRead]) -> list[FindingRead]:
    """Findings strongest first (present, uncertain, absent), then by probability."""
    rank = {"present": 0, "uncertain": 1, "absent": 2, "not mentioned": 3}
    return sorted(reads, key=lambda r: (rank.get(r.status, 4), -(r.probability or 0.0), r.name))


def impression(reading: ImageReading) -> str:
    """One impression that agrees with every statement above it: what is likely, what is possible, what is not."""
    reads = [r for r in ordered(reading.findings.values()) if r.name != "no finding"]
    present = [r for r in reads if r.status == "present"]
    possible = [r for r in reads if r.status == "uncertain"]
    absent = [r.name for r in reads if r.status == "absent" and r.name in KEY_NEGATIVES]
    devices = device_lines(reading)
    parts = [
        f"{display(r.name)[0].upper()}{display(r.name)[1:]}{_where(r)}."
        for r in present if not (r.name == "support devices" and devices)
    ]
    if devices and any(r.name == "support devices" for r in present):
        parts.append("Support devices: " + devices[0].removeprefix("Devices seen: "))
    flagged = reading.flagged_zones()
    if flagged:
        parts.append("Increased opacity in the " + " and ".join(flagged[:2]) + ".")
    parts += [f"Possible {display(r.name)}{_where(r)}." for r in possible]
    # Devices are not an abnormality: a film with ECG leads and nothing else still reads as normal.
    if not [r for r in present if r.name != "support devices"] and not possible and not flagged:
        parts.append("No acute cardiopulmonary abnormality is seen by the image readers.")
    if absent:
        parts.append("No " + _join_or([display(n) for n in absent]) + ".")
    return " ".join(parts)


def _join_or(names: list[str]) -> str:
    return names[0] if len(names) == 1 else ", ".join(names[:-1]) + " or " + names[-1]


__all__ = [
    "DISPLAY", "KEY_NEGATIVES", "SECTION_OF", "device_lines", "display", "finding_sentence", "heart_lines",
    "impression", "ordered", "pleura_lines", "section_lines", "technical_lines", "zone_lines",
]
