"""A lesson set as one self-contained HTML handout: each case's image and note, the answers at the end.

The file works offline and alone: images are embedded as base64 JPEG, the style is inline, there is no
script, and a Content-Security-Policy forbids loading anything (``default-src 'none'``). Every piece of
text (names, notes, reports, labels) goes through :func:`html.escape`: nothing from the data becomes HTML.
"""

from __future__ import annotations

import base64
import html
import io
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

from PIL import Image

from medrag.teaching.annotations import annotations_of, draw_annotations
from medrag.teaching.model import Annotation, LessonSet
from medrag.teaching.sets import set_views

if TYPE_CHECKING:
    from medrag.store.factory import AnyStore

#: Longest side of an image in the handout (enough to read a film on paper or a screen).
IMAGE_SIDE = 768
#: Longest side of the annotated image beside an answer.
ANSWER_IMAGE_SIDE = 384
_STYLE = """
body{font-family:system-ui,-apple-system,"Segoe UI",sans-serif;max-width:60rem;margin:2rem auto;padding:0 1rem;
 color:#1d2433}
h1{margin-bottom:.2rem} .disclaimer{color:#555;font-size:.9rem;border-left:4px solid #f0b400;padding:.3rem .6rem}
section.case{page-break-inside:avoid;margin:2rem 0;border-top:1px solid #ddd;padding-top:1rem}
img{max-width:100%;height:auto;background:#000}
.note{white-space:pre-wrap;background:#f6f7f9;padding:.6rem;border-radius:4px}
.answers section{page-break-inside:avoid;margin:1.2rem 0} .answers{page-break-before:always}
.meta{color:#555;font-size:.9rem} .report{white-space:pre-wrap;font-size:.9rem}
"""
_CSP = "default-src 'none'; img-src data:; style-src 'unsafe-inline'"


@dataclass(frozen=True)
class HandoutEntry:
    """One case of the handout."""

    number: int
    image_jpeg: bytes | None
    note: str
    answer: str
    title: str = ""
    details: tuple[tuple[str, str], ...] = ()
    report: str = ""
    answer_image_jpeg: bytes | None = None


def jpeg_bytes(image: Image.Image, side: int, quality: int = 85) -> bytes:
    """``image`` shrunk to ``side`` pixels on its longer side (never enlarged), as JPEG bytes."""
    copy = image.copy()
    copy.thumbnail((side, side), Image.Resampling.LANCZOS)
    buffer = io.BytesIO()
    copy.convert("RGB").save(buffer, format="JPEG", quality=quality, optimize=True)
    return buffer.getvalue()


def _data_uri(jpeg: bytes) -> str:
    return "data:image/jpeg;base64," + base64.b64encode(jpeg).decode("ascii")


def _esc(text: object) -> str:
    return html.escape(str(text), quote=True)


def render_handout(
    title: str, description: str, entries: Sequence[HandoutEntry], *, when: datetime | None = None
) -> str:
    """The handout's HTML: a header, one section a case (image, note), then the answers."""
    stamp = (when or datetime.now(UTC)).strftime("%Y-%m-%d")
    out = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f'<meta http-equiv="Content-Security-Policy" content="{_CSP}">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{_esc(title)}</title><style>{_STYLE}</style></head><body>",
        f"<h1>{_esc(title)}</h1>",
        f'<p class="meta">MedRAG lesson handout · {len(entries)} cases · {_esc(stamp)}</p>',
        '<p class="disclaimer">For education and research only — not for clinical use.</p>',
    ]
    if description:
        out.append(f'<p class="note">{_esc(description)}</p>')
    for entry in entries:
        out.append(f'<section class="case" id="case-{entry.number}"><h2>Case {entry.number}</h2>')
        if entry.image_jpeg:
            out.append(f'<img src="{_data_uri(entry.image_jpeg)}" alt="Case {entry.number}">')
        else:
            out.append('<p class="meta">(image not available)</p>')
        if entry.note:
            out.append(f'<p class="note">{_esc(entry.note)}</p>')
        out.append("</section>")
    out.append('<div class="answers"><h2>Answers</h2>')
    for entry in entries:
        out.append(
            f'<section id="answer-{entry.number}"><h3>Case {entry.number}: {_esc(entry.answer or "unlabelled")}</h3>'
        )
        if entry.title:
            out.append(f'<p class="meta">{_esc(entry.title)}</p>')
        if entry.details:
            out.append("<ul>" + "".join(f"<li>{_esc(k)}: {_esc(v)}</li>" for k, v in entry.details) + "</ul>")
        if entry.answer_image_jpeg:
            out.append(f'<img src="{_data_uri(entry.answer_image_jpeg)}" alt="Case {entry.number}, annotated">')
        if entry.report:
            out.append(f'<p class="report">{_esc(entry.report)}</p>')
        out.append("</section>")
    out.append("</div></body></html>")
    return "\n".join(out)


def _images(path: str, annotations: Sequence[Annotation]) -> tuple[bytes | None, bytes | None]:
    from medrag.errors import InputError
    from medrag.imaging import load_image

    try:
        pixels = load_image(Path(path)).uint8_pixels()
    except (InputError, OSError):
        return None, None
    plain = jpeg_bytes(Image.fromarray(pixels, mode="L"), IMAGE_SIDE)
    marked = jpeg_bytes(draw_annotations(pixels, annotations), ANSWER_IMAGE_SIDE) if annotations else None
    return plain, marked


def handout_for_set(store: AnyStore, lesson: LessonSet, *, annotated_answers: bool = True) -> str:
    """The handout of a lesson set (annotations, when there are any, drawn on the answers' images)."""
    entries = []
    for number, (item, view) in enumerate(set_views(store, lesson), start=1):
        annotations = annotations_of(store, item.ref, view.case) if annotated_answers and not view.missing else []
        plain, marked = _images(view.image_path, annotations) if view.image_path else (None, None)
        details = ((("dataset", view.dataset),) if view.dataset else ()) + view.details
        if view.synthetic:
            details = (("synthetic", "yes: a generated phantom, not a patient"), *details)
        entries.append(
            HandoutEntry(
                number=number,
                image_jpeg=plain,
                note=item.note,
                answer=view.label,
                title=view.title,
                details=details,
                report=view.text[:4000],
                answer_image_jpeg=marked,
            )
        )
    return render_handout(lesson.name, lesson.description, entries)


__all__ = ["ANSWER_IMAGE_SIDE", "IMAGE_SIDE", "HandoutEntry", "handout_for_set", "jpeg_bytes", "render_handout"]
