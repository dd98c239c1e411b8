"""Annotations: the educator's boxes and arrows, the NIH expert boxes, and drawing them onto an image.

An educator's annotations are stored (:meth:`medrag.store.Store.add_annotation`); the NIH expert boxes are
read from a real case's metadata each time (:func:`nih_annotations`) and never stored, so a re-import keeps
them right. :func:`draw_annotations` burns them into a copy of the pixels (the handout, the zip preview);
the app draws them as plotly shapes instead (``medrag/ui/annotate.py``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np
from PIL import Image, ImageDraw

from medrag.case_truth import box_text
from medrag.records import Case
from medrag.teaching.model import Annotation, ItemRef
from medrag.teaching.regions import parse_nih_boxes

if TYPE_CHECKING:
    from medrag.store.factory import AnyStore

#: Colour per source: educator annotations in amber, NIH expert boxes in cyan (both readable on grey).
COLOURS: dict[str, tuple[int, int, int]] = {"educator": (255, 190, 0), "nih": (0, 200, 255)}


def nih_annotations(case: Case) -> list[Annotation]:
    """The NIH expert boxes of a real case as annotations (``source="nih"``)."""
    ref = ItemRef("case", case.case_id)
    return [
        Annotation(ref, "box", x, y, x + w, y + h, label=f"{name} (NIH expert box)", source="nih")
        for name, x, y, w, h in parse_nih_boxes(box_text(case.extra))
    ]


def annotations_of(store: AnyStore, ref: ItemRef, case: Case | None = None) -> list[Annotation]:
    """What to overlay on an item: the educator's annotations, then the NIH boxes of its case."""
    out = list(store.annotations_for([ref]))
    if case is not None:
        if ref.kind == "analysis":
            out += store.annotations_for([ItemRef("case", case.case_id)])
        out += nih_annotations(case)
    return out


def _arrow_head(x0: float, y0: float, x1: float, y1: float, size: float) -> list[tuple[float, float]]:
    angle = math.atan2(y1 - y0, x1 - x0)
    spread = math.radians(28)
    return [
        (x1, y1),
        (x1 - size * math.cos(angle - spread), y1 - size * math.sin(angle - spread)),
        (x1 - size * math.cos(angle + spread), y1 - size * math.sin(angle + spread)),
    ]


def draw_annotations(pixels: np.ndarray, annotations: Sequence[Annotation], *, scale: float = 1.0) -> Image.Image:
    """An RGB copy of 8-bit (or [0, 1] float) ``pixels`` with the annotations drawn, coordinates × ``scale``."""
    array = np.asarray(pixels)
    if array.dtype != np.uint8:
        array = np.round(np.clip(array, 0.0, 1.0) * 255).astype(np.uint8)
    image = Image.fromarray(array, mode="L").convert("RGB")
    if not annotations:
        return image
    draw = ImageDraw.Draw(image)
    width = max(2, round(max(image.size) / 200))
    for a in annotations:
        colour = COLOURS.get(a.source, COLOURS["educator"])
        x0, y0, x1, y1 = (v * scale for v in (a.x0, a.y0, a.x1, a.y1))
        if a.shape == "box":
            draw.rectangle([min(x0, x1), min(y0, y1), max(x0, x1), max(y0, y1)], outline=colour, width=width)
            anchor = (min(x0, x1) + width, max(min(y0, y1) - 12 - width, 0))
        else:
            draw.line([(x0, y0), (x1, y1)], fill=colour, width=width)
            draw.polygon(_arrow_head(x0, y0, x1, y1, 6 * width), fill=colour)
            anchor = (x0 + width, max(y0 - 12 - width, 0))
        if a.label:
            draw.text(anchor, a.label[:60], fill=colour)
    return image


__all__ = ["COLOURS", "annotations_of", "draw_annotations", "nih_annotations"]
