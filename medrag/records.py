"""Plain data records shared by every module (no heavy imports)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

from medrag.pixels import to_uint8

FindingStatus = Literal["present", "uncertain", "absent", "not mentioned"]
#: Every status a finding can have, strongest first: "absent" means explicitly negated, "not mentioned"
#: means the text (or the reading) says nothing about it — a teaching tool must not call that "absent".
FINDING_STATUSES: tuple[FindingStatus, ...] = ("present", "uncertain", "absent", "not mentioned")

#: The findings every labeler reports (CheXpert-style), in display order.
FINDINGS: tuple[str, ...] = (
    "no finding",
    "cardiomegaly",
    "effusion",
    "pneumothorax",
    "consolidation",
    "opacity",
    "atelectasis",
    "edema",
    "nodule/mass",
    "pneumonia",
    "fracture",
    "support devices",
    "emphysema",
)
#: Findings a synthetic phantom can show, in the fixed order its labels use (:mod:`medrag.phantoms.plan`).
PHANTOM_FINDINGS: tuple[str, ...] = (
    "cardiomegaly", "effusion", "pneumothorax", "consolidation", "nodule/mass", "edema",
)


@dataclass
class CXRImage:
    """A decoded chest X-ray: 2-D float32 pixels in [0, 1] (0 = black) plus metadata.

    ``meta`` holds de-identified, JSON-serialisable metadata: ``format`` (png/jpeg/dicom/...),
    ``width``, ``height``, ``bit_depth``, ``converted_from_rgb`` (bool), ``photometric``,
    ``window`` (center, width) when known, ``dicom`` (dict of de-identified tags),
    ``burned_in_annotation`` (bool) and ``warnings`` (list of str).
    """

    pixels: np.ndarray
    meta: dict[str, Any] = field(default_factory=dict)
    #: sha256 of the normalised 8-bit pixels + shape: identical pixels share it.
    pixel_hash: str = ""
    #: sha256 of the original file bytes ("" for in-memory images).
    file_hash: str = ""
    #: the 8-bit pixels, kept once computed (or straight from an 8-bit file): the hash and thumbnail share it
    _uint8: np.ndarray | None = field(default=None, init=False, repr=False, compare=False)

    @property
    def shape(self) -> tuple[int, int]:
        """(height, width)."""
        return (int(self.pixels.shape[0]), int(self.pixels.shape[1]))

    def uint8_pixels(self) -> np.ndarray:
        """The pixels as 8-bit (:func:`medrag.pixels.to_uint8`), computed at most once; do not modify it."""
        if self._uint8 is None:
            self._uint8 = to_uint8(self.pixels)
        return self._uint8


@dataclass(frozen=True)
class Case:
    """One library case (a row of the ``cases`` table)."""

    case_id: str
    label: str
    dataset: str
    image_path: str
    thumb_path: str
    report: str = ""
    patient_id: str = ""
    view: str = ""
    synthetic: bool = False
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Neighbour:
    """A similar case found by the index."""

    case_id: str
    score: float
    rank: int
    label: str = ""
    dataset: str = ""
    report: str = ""
    thumb_path: str = ""
    image_path: str = ""
    synthetic: bool = False


@dataclass(frozen=True)
class Summary:
    """A one-line label plus structured findings."""

    label: str
    findings: dict[str, FindingStatus]
    backend: str = "rules"
    #: caveats a reader should see beside the label (text cut for labelling, model label missing, ...)
    notes: tuple[str, ...] = ()

    def present(self) -> list[str]:
        """Names of findings marked present."""
        return [name for name, status in self.findings.items() if status == "present"]


@dataclass(frozen=True)
class WebResult:
    """One reference from a trusted medical website (text only, HTML stripped)."""

    title: str
    url: str
    domain: str
    snippet: str
    image_url: str = ""
    provider: str = ""


@dataclass(frozen=True)
class GuardVerdict:
    """The domain guard's decision on a text question or an image."""

    allowed: bool
    reason: str
    score: float = 0.0
    kind: Literal["text", "image"] = "text"
