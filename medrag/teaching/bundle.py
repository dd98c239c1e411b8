"""A lesson set as a zip a colleague can import: ``manifest.json``, ``images/``, ``notes.md``.

The manifest holds the set's name, description and, per case in order: its teaching note, label, dataset,
view, patient id, report, the metadata worth keeping (fine label, age, sex, the NIH boxes, the licence)
and the educator's annotations. Images are written as 8-bit PNG from the decoded pixels: no file
metadata travels (a DICOM header could hold a name), and identical pixels get the same case id on the
other side, so a colleague with the same library gets no duplicates.

Importing writes the images and a labels CSV under ``<data folder>/imports/lesson-<digest>/``, imports
them like any folder (so they are embedded and searchable), and creates the set, renamed if the name is
taken. Everything read from the zip is checked: names, sizes (:mod:`medrag.teaching.ziputil`), types and
lengths of the manifest's fields.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from PIL import Image

from medrag.errors import InputError
from medrag.fsutil import atomic_write, atomic_write_text
from medrag.teaching.model import Annotation, ItemRef, LessonSet, clean_name, clean_note
from medrag.teaching.sets import set_views
from medrag.teaching.ziputil import read_zip, safe_name
from medrag.textsafe import one_line, printable

if TYPE_CHECKING:
    from medrag.library import IngestReport
    from medrag.store.factory import AnyStore
    from medrag.workbench import Workbench

FORMAT = "medrag-lesson-set"
VERSION = 1
#: Metadata of a case that travels with it (keys of ``Case.extra``).
EXPORTED_EXTRA: tuple[str, ...] = (
    "fine_label",
    "finding_labels",
    "sex",
    "age",
    "population",
    "findings",
    "bbox_xywh_in_output_px",
    "bbox",
    "expert_labels_google2019",
    "license",
    "source_repo",
    "source_path",
)
#: Most cases one bundle may hold.
MAX_ITEMS = 1_000
#: Longest report or text field read from a manifest.
MAX_TEXT_CHARS = 100_000
_CSV_COLUMNS = ("image", "label", "report", "patient_id", "view", "dataset", "synthetic", *EXPORTED_EXTRA)


@dataclass
class ImportedSet:
    """What an import made: the set, how many cases it holds, the library import's report, notes."""

    set_id: int
    name: str
    cases: int
    report: IngestReport
    notes: list[str] = field(default_factory=list)


def _png(path: str) -> tuple[bytes, tuple[int, int]]:
    from medrag.imaging import load_image

    image = load_image(Path(path))
    pixels = image.uint8_pixels()
    buffer = io.BytesIO()
    Image.fromarray(pixels, mode="L").save(buffer, format="PNG", compress_level=6)
    return buffer.getvalue(), (int(pixels.shape[1]), int(pixels.shape[0]))


def _annotation_dict(a: Annotation) -> dict[str, Any]:
    return {"shape": a.shape, "x0": a.x0, "y0": a.y0, "x1": a.x1, "y1": a.y1, "label": a.label}


def export_bundle(store: AnyStore, lesson: LessonSet) -> bytes:
    """The set as zip bytes (items whose case or analysis is gone are left out and listed in the manifest)."""
    import zipfile

    items: list[dict[str, Any]] = []
    skipped: list[str] = []
    images: dict[str, bytes] = {}
    for item, view in set_views(store, lesson):
        if view.missing or not view.image_path:
            skipped.append(f"{item.position}: {view.title}")
            continue
        data, (width, height) = _png(view.image_path)
        name = f"images/{len(items) + 1:03d}.png"
        images[name] = data
        refs = [item.ref] + ([ItemRef("case", view.case.case_id)] if view.case and item.ref.kind == "analysis" else [])
        extra = {k: str(view.extra[k]) for k in EXPORTED_EXTRA if view.extra.get(k) not in (None, "")}
        items.append(
            {
                "position": len(items) + 1,
                "image": name,
                "width": width,
                "height": height,
                "note": item.note,
                "title": view.title,
                "label": view.label,
                "dataset": view.dataset or "lesson",
                "view": view.view,
                "patient_id": view.patient_id,
                "synthetic": view.synthetic,
                "report": view.text,
                "extra": extra,
                "from": item.ref.kind,
                "annotations": [_annotation_dict(a) for a in store.annotations_for(refs)],
            }
        )
    manifest = {
        "format": FORMAT,
        "version": VERSION,
        "name": lesson.name,
        "description": lesson.description,
        "items": items,
        "skipped": skipped,
    }
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("manifest.json", json.dumps(manifest, indent=2, ensure_ascii=False))
        archive.writestr("notes.md", _notes_markdown(lesson, items))
        for name, data in images.items():
            archive.writestr(name, data, compress_type=zipfile.ZIP_STORED)  # PNG is compressed already
    return buffer.getvalue()


def _notes_markdown(lesson: LessonSet, items: list[dict[str, Any]]) -> str:
    lines = [f"# {lesson.name}", "", lesson.description, ""]
    for entry in items:
        lines += [
            f"## {entry['position']}. {entry['title']}",
            "",
            f"Answer: {entry['label']}",
            "",
            entry["note"] or "(no note)",
            "",
        ]
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------- import
def _text(value: Any, what: str, limit: int = MAX_TEXT_CHARS, *, lines: bool = False) -> str:
    if value is None:
        return ""
    if not isinstance(value, (str, int, float, bool)):
        raise InputError(f"The bundle's {what} is not text; the manifest was not made by MedRAG.")
    text = printable(str(value)) if lines else one_line(value)
    if len(text) > limit:
        raise InputError(f"The bundle's {what} is {len(text):,} characters, over the {limit:,} allowed.")
    return text.strip()


def _number(value: Any, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise InputError(f"The bundle's {what} is not a number; the manifest was not made by MedRAG.")
    return float(value)


def parse_manifest(files: dict[str, bytes]) -> dict[str, Any]:
    """The checked manifest of a bundle's files (an :class:`InputError` says what is wrong)."""
    raw = files.get("manifest.json")
    if raw is None:
        raise InputError(
            "The zip has no manifest.json: it is not a MedRAG lesson set (export one from the Lessons page)."
        )
    try:
        manifest = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InputError(f"The bundle's manifest.json is not valid JSON ({exc}); export the set again.") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise InputError("The zip's manifest is not a MedRAG lesson set; export one from the Lessons page.")
    version = manifest.get("version")
    if not isinstance(version, int) or version > VERSION:
        raise InputError(
            f"The lesson set was exported by a newer MedRAG (format {version}); upgrade MedRAG to import it."
        )
    items = manifest.get("items")
    if not isinstance(items, list) or not items or len(items) > MAX_ITEMS:
        raise InputError(f"The bundle must list between 1 and {MAX_ITEMS:,} cases.")
    out_items = []
    for index, entry in enumerate(items, start=1):
        where = f"case {index}"
        if not isinstance(entry, dict):
            raise InputError(f"The bundle's {where} is not an object; export the set again.")
        image = safe_name(str(entry.get("image", "")))
        if image is None or str(image) not in files or image.suffix.lower() not in (".png", ".jpg", ".jpeg"):
            raise InputError(f"The bundle's {where} names an image that is not in the zip; export the set again.")
        annotations = entry.get("annotations") or []
        if not isinstance(annotations, list):
            raise InputError(f"The bundle's {where} has annotations that are not a list.")
        extra_in = entry.get("extra") or {}
        if not isinstance(extra_in, dict):
            raise InputError(f"The bundle's {where} has metadata that is not an object.")
        out_items.append(
            {
                "image": str(image),
                "note": clean_note(_text(entry.get("note"), f"{where} note", lines=True)),
                "label": _text(entry.get("label"), f"{where} label", 200) or "unlabelled",
                "dataset": _text(entry.get("dataset"), f"{where} dataset", 200) or "lesson",
                "view": _text(entry.get("view"), f"{where} view", 50),
                "patient_id": _text(entry.get("patient_id"), f"{where} patient id", 200),
                "synthetic": entry.get("synthetic") is True,
                "report": _text(entry.get("report"), f"{where} report", lines=True),
                "extra": {k: _text(extra_in[k], f"{where} {k}", 10_000) for k in EXPORTED_EXTRA if k in extra_in},
                "annotations": [
                    {
                        "shape": _text(a.get("shape"), f"{where} annotation shape", 10),
                        "label": _text(a.get("label"), f"{where} annotation label", 120),
                        **{k: _number(a.get(k), f"{where} annotation {k}") for k in ("x0", "y0", "x1", "y1")},
                    }
                    for a in annotations
                    if isinstance(a, dict)
                ],
            }
        )
    return {
        "name": clean_name(_text(manifest.get("name"), "set name", 500) or "Imported lesson", "lesson-set name"),
        "description": clean_note(_text(manifest.get("description"), "description", lines=True)),
        "items": out_items,
    }


def _free_name(store: AnyStore, wanted: str) -> str:
    if store.lesson_set_by_name(wanted) is None:
        return wanted
    for n in range(2, 1000):
        candidate = f"{wanted[:100]} (imported {n})"
        if store.lesson_set_by_name(candidate) is None:
            return candidate
    raise InputError(f"Too many lesson sets are named like {wanted!r}; rename some first.")


def import_bundle(workbench: Workbench, source: bytes | Path, *, name: str | None = None) -> ImportedSet:
    """Import a lesson-set zip: its images into the library, then the set with its notes and annotations."""
    from medrag.imaging import load_image

    payload = source if isinstance(source, bytes) else Path(source).read_bytes()
    files = read_zip(payload)
    manifest = parse_manifest(files)
    store = workbench.store
    folder = workbench.settings.data_dir / "imports" / f"lesson-{hashlib.sha256(payload).hexdigest()[:16]}"
    rows, paths = [], []
    for index, entry in enumerate(manifest["items"], start=1):
        target = folder / "images" / f"{index:03d}{Path(entry['image']).suffix.lower()}"
        target.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(target, files[entry["image"]], durable=False)
        paths.append(target)
        rows.append(
            {
                "image": target.relative_to(folder).as_posix(),
                "label": entry["label"],
                "report": entry["report"],
                "patient_id": entry["patient_id"],
                "view": entry["view"],
                "dataset": entry["dataset"],
                "synthetic": "true" if entry["synthetic"] else "false",
                **entry["extra"],
            }
        )
    text = io.StringIO()
    writer = csv.DictWriter(text, fieldnames=list(_CSV_COLUMNS), lineterminator="\n", extrasaction="ignore")
    writer.writeheader()
    writer.writerows(rows)
    atomic_write_text(folder / "labels.csv", text.getvalue(), durable=False)
    report = workbench.ingest(folder, labels_csv=folder / "labels.csv")
    case_ids = []
    for path in paths:
        try:
            case_ids.append(load_image(path).pixel_hash)
        except InputError:
            case_ids.append("")
    present = store.existing_case_ids([c for c in case_ids if c])
    set_name = _free_name(store, clean_name(name, "lesson-set name") if name else manifest["name"])
    set_id = store.create_lesson_set(set_name, manifest["description"])
    notes: list[str] = []
    cases = 0
    for index, (entry, case_id) in enumerate(zip(manifest["items"], case_ids, strict=True), start=1):
        if case_id not in present:
            notes.append(f"case {index} could not be imported (see the import report); it is left out of the set")
            continue
        ref = ItemRef("case", case_id)
        cases += store.add_lesson_items(set_id, [ref], entry["note"])
        existing = {(a.shape, a.x0, a.y0, a.x1, a.y1, a.label) for a in store.annotations_for([ref])}
        for spec in entry["annotations"]:
            annotation = Annotation(
                ref, spec["shape"], spec["x0"], spec["y0"], spec["x1"], spec["y1"], spec["label"]
            ).normalised()
            key = (annotation.shape, annotation.x0, annotation.y0, annotation.x1, annotation.y1, annotation.label)
            if key not in existing:
                store.add_annotation(annotation)
                existing.add(key)
    if set_name != manifest["name"]:
        notes.append(f"a set named {manifest['name']!r} exists already, so this one is {set_name!r}")
    return ImportedSet(set_id, set_name, cases, report, notes)


__all__ = ["EXPORTED_EXTRA", "FORMAT", "VERSION", "ImportedSet", "export_bundle", "import_bundle", "parse_manifest"]
