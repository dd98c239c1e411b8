"""Ground-truth regions for "where is it?" questions, and scoring a learner's click against them.

Three sources, all in the stored image's pixels (``x`` column, ``y`` row):

- the NIH expert boxes that come with the real images (``bbox_xywh_in_output_px`` or ``bbox`` in a case's
  metadata, ``Finding:x,y,w,h``, several joined by ``;`` or ``|``; :func:`medrag.case_truth.box_text`);
- the phantoms' known finding positions (:func:`medrag.phantoms.finding_centres`), as a disc around each;
- a box an educator drew on the case (an :class:`~medrag.teaching.model.Annotation` of shape ``box``).

A click counts when it falls inside a region, or within a small tolerance of its edge (a click on the
border of a lesion is a correct answer, not a miss).
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from medrag.case_truth import box_text
from medrag.records import Case
from medrag.teaching.model import Annotation

#: A click this fraction of the image's longer side outside a region still counts.
TOLERANCE_FRACTION = 0.02
#: Radius of the disc around a phantom finding's centre, as a fraction of the image's side.
PHANTOM_RADIUS_FRACTION = 0.12
#: The metadata key cxr-real's expert boxes come in (nih-train's is ``bbox``: read both with ``box_text``).
NIH_BOX_KEY = "bbox_xywh_in_output_px"
_BOX = re.compile(
    r"([A-Za-z][A-Za-z _/-]*?)\s*:\s*(\d+(?:\.\d+)?)\s*,\s*(\d+(?:\.\d+)?)\s*,\s*(\d+(?:\.\d+)?)\s*,\s*(\d+(?:\.\d+)?)"
)
_PHANTOM_ID = re.compile(r"^syn-(\d+)-(\d+)$")


@dataclass(frozen=True)
class Region:
    """Where a finding is: a box (corners) or a disc (its bounding box), named after the finding."""

    label: str
    x0: float
    y0: float
    x1: float
    y1: float
    shape: Literal["box", "disc"] = "box"
    source: str = "educator"

    @property
    def centre(self) -> tuple[float, float]:
        """The region's centre (x, y)."""
        return (self.x0 + self.x1) / 2, (self.y0 + self.y1) / 2

    def distance(self, x: float, y: float) -> float:
        """Pixels from (x, y) to the region (0 inside)."""
        if self.shape == "disc":
            cx, cy = self.centre
            return max(0.0, math.hypot(x - cx, y - cy) - (self.x1 - self.x0) / 2)
        dx = max(self.x0 - x, 0.0, x - self.x1)
        dy = max(self.y0 - y, 0.0, y - self.y1)
        return math.hypot(dx, dy)


@dataclass(frozen=True)
class ClickScore:
    """How a click went: right or not, the region it hit (or the nearest one) and how far off it was."""

    correct: bool
    region: Region | None
    distance: float


def parse_nih_boxes(text: object) -> list[tuple[str, float, float, float, float]]:
    """``"Pneumonia:301,298,108,90"`` (several joined by ``;`` or ``|``) → [(finding, x, y, w, h)]."""
    out = []
    for match in _BOX.finditer(str(text or "")):
        name, *numbers = match.groups()
        x, y, w, h = (float(v) for v in numbers)
        if w > 0 and h > 0:
            out.append((name.strip().replace("_", " "), x, y, w, h))
    return out


def nih_regions(case: Case) -> list[Region]:
    """The NIH expert boxes of a real case (none for other cases)."""
    return [
        Region(name, x, y, x + w, y + h, "box", "nih")
        for name, x, y, w, h in parse_nih_boxes(box_text(case.extra))
    ]


def phantom_seed(case: Case) -> int | None:
    """The phantom's seed from its id ``syn-<library seed>-<index>`` (the demo library's scheme), or None."""
    match = _PHANTOM_ID.match(case.patient_id or "")
    if not case.synthetic or match is None:
        return None
    library_seed, index = int(match.group(1)), int(match.group(2))
    return library_seed * 1_000_003 + index


def phantom_findings(case: Case) -> list[str]:
    """The findings drawn on a phantom (its ``findings`` metadata, pipe-separated)."""
    return [f for f in str(case.extra.get("findings") or "").split("|") if f.strip()]


def phantom_regions(case: Case, size: int) -> list[Region]:
    """A disc around each finding drawn on a demo phantom of ``size`` pixels (none for other cases)."""
    seed = phantom_seed(case)
    findings = phantom_findings(case)
    if seed is None or not findings or size <= 0:
        return []
    from medrag.phantoms import finding_centres

    radius = PHANTOM_RADIUS_FRACTION * size
    out = []
    for name, (row, col) in finding_centres(findings, seed, size).items():
        out.append(Region(name, col - radius, row - radius, col + radius, row + radius, "disc", "phantom"))
    return out


def educator_regions(annotations: Iterable[Annotation]) -> list[Region]:
    """The boxes an educator drew (arrows point at a finding but do not outline it, so they are left out)."""
    out = []
    for a in annotations:
        if a.shape == "box" and a.source == "educator":
            box = a.normalised()
            out.append(Region(a.label or "finding", box.x0, box.y0, box.x1, box.y1, "box", "educator"))
    return out


def image_size(path: str | Path) -> tuple[int, int] | None:
    """(width, height) of an image file from its header, or None when it cannot be read."""
    from PIL import Image

    try:
        with Image.open(path) as image:
            return int(image.width), int(image.height)
    except (OSError, ValueError, Image.DecompressionBombError):
        return None


def is_locatable(case: Case | None, annotations: Sequence[Annotation] = ()) -> bool:
    """Whether a case has a ground-truth region (cheap: no image is read)."""
    if educator_regions(annotations):
        return True
    if case is None:
        return False
    return bool(parse_nih_boxes(box_text(case.extra))) or bool(
        phantom_seed(case) is not None and phantom_findings(case)
    )


def regions_for(case: Case | None, annotations: Sequence[Annotation] = (), image_path: str = "") -> list[Region]:
    """Every ground-truth region of an image: the educator's boxes, the NIH boxes, the phantom's findings."""
    out = educator_regions(annotations)
    if case is not None:
        out += nih_regions(case)
        if phantom_seed(case) is not None:
            size = image_size(image_path or case.image_path)
            if size is not None:
                out += phantom_regions(case, min(size))
    return out


def score_click(
    regions: Sequence[Region], x: float, y: float, *, image_side: float, tolerance: float = TOLERANCE_FRACTION
) -> ClickScore:
    """Whether the click (x, y) hits a region, allowing ``tolerance`` × ``image_side`` pixels of slack."""
    if not regions:
        return ClickScore(False, None, math.inf)
    nearest = min(regions, key=lambda r: r.distance(x, y))
    distance = nearest.distance(x, y)
    return ClickScore(distance <= tolerance * max(image_side, 1.0), nearest, distance)


__all__ = [
    "NIH_BOX_KEY",
    "PHANTOM_RADIUS_FRACTION",
    "TOLERANCE_FRACTION",
    "ClickScore",
    "Region",
    "educator_regions",
    "image_size",
    "is_locatable",
    "nih_regions",
    "parse_nih_boxes",
    "phantom_findings",
    "phantom_regions",
    "phantom_seed",
    "regions_for",
    "score_click",
]
