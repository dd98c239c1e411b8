"""Sharing lesson sets: the zip round trip between two MedRAGs, hostile zips, browser-upload staging, the handout."""

from __future__ import annotations

import base64
import csv
import io
import json
import re
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from medrag.errors import InputError
from medrag.teaching.bundle import FORMAT, export_bundle, import_bundle, parse_manifest
from medrag.teaching.handout import HandoutEntry, handout_for_set, render_handout
from medrag.teaching.model import Annotation, ItemRef
from medrag.teaching.ziputil import extract_zip, read_zip, safe_name
from test_teaching_store import make_library, write_png


def _workbench(data_dir: Path):  # type: ignore[no-untyped-def]
    from medrag.config import Settings
    from medrag.workbench import Workbench

    return Workbench(Settings(data_dir=data_dir, web_provider="off"))


def _labelled_folder(folder: Path, count: int = 6) -> Path:
    rows = []
    for i in range(count):
        label = "normal" if i % 2 else "pneumonia"
        write_png(folder / f"img{i}.png", 100 + i, side=96)
        box = "Pneumonia:10,12,30,20" if i == 0 else ""
        rows.append(
            {
                "image": f"img{i}.png",
                "label": label,
                "dataset": "nih",
                "patient_id": f"p{i}",
                "view": "PA",
                "fine_label": "Pneumonia" if label == "pneumonia" else "No Finding",
                "bbox_xywh_in_output_px": box,
            }
        )
    with (folder / "labels.csv").open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return folder


def test_a_set_exported_here_imports_there_with_notes_order_and_annotations(tmp_path: Path) -> None:
    here = _workbench(tmp_path / "here")
    report = here.ingest(_labelled_folder(tmp_path / "cases"), labels_csv=tmp_path / "cases" / "labels.csv")
    assert report.added == 6
    cases = here.store.cases_frame()
    order = [str(c) for c in cases.sort_values("patient_id")["case_id"]][:5]
    set_id = here.store.create_lesson_set("Normal vs pneumonia <b>", "For <i>week 3</i>")
    for i, case_id in enumerate(order):
        here.store.add_lesson_items(set_id, [ItemRef("case", case_id)], f"note {i} & more")
    here.store.add_annotation(Annotation(ItemRef("case", order[1]), "arrow", 5, 6, 40, 50, "look here"))
    lesson = here.store.get_lesson_set(set_id)
    assert lesson is not None
    payload = export_bundle(here.store, lesson)

    with zipfile.ZipFile(io.BytesIO(payload)) as archive:
        names = set(archive.namelist())
        manifest = json.loads(archive.read("manifest.json"))
    assert {"manifest.json", "notes.md", "images/001.png", "images/005.png"} <= names
    assert manifest["format"] == FORMAT and [i["note"] for i in manifest["items"]][0] == "note 0 & more"
    assert manifest["items"][0]["extra"]["bbox_xywh_in_output_px"] == "Pneumonia:10,12,30,20"

    there = _workbench(tmp_path / "there")
    imported = import_bundle(there, payload)
    assert imported.name == "Normal vs pneumonia <b>" and imported.cases == 5
    copy = there.store.get_lesson_set(imported.set_id)
    assert copy is not None and copy.description == "For <i>week 3</i>"
    assert [r.ref_id for r in copy.refs] == order  # identical pixels → the same case ids, in the same order
    assert [i.note for i in copy.items] == [f"note {i} & more" for i in range(5)]
    [arrow] = there.store.annotations_for([ItemRef("case", order[1])])
    assert (arrow.shape, arrow.x0, arrow.y1, arrow.label) == ("arrow", 5, 50, "look here")
    moved = there.store.get_case(order[0])
    assert moved is not None and moved.label == "pneumonia" and moved.extra.get("fine_label") == "Pneumonia"
    assert Path(moved.image_path).is_relative_to(there.settings.data_dir / "imports")

    again = import_bundle(there, payload)  # the same zip twice: a second set, no duplicate cases or annotations
    assert again.name == "Normal vs pneumonia <b> (imported 2)" and again.report.added == 0
    assert len(there.store.annotations_for([ItemRef("case", order[1])])) == 1
    assert there.store.count_cases() == 5


def _zip(members: dict[str, bytes | str]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return buffer.getvalue()


def test_hostile_or_broken_bundles_are_refused_with_a_reason(tmp_path: Path) -> None:
    png = io.BytesIO()
    Image.fromarray(np.zeros((8, 8), dtype=np.uint8)).save(png, format="PNG")
    good_item = {"image": "images/001.png", "label": "normal", "note": "n"}
    manifest = {"format": FORMAT, "version": 1, "name": "S", "items": [good_item]}
    assert (
        parse_manifest(read_zip(_zip({"manifest.json": json.dumps(manifest), "images/001.png": png.getvalue()})))[
            "name"
        ]
        == "S"
    )
    cases = [
        ({"images/001.png": png.getvalue()}, "no manifest.json"),
        ({"manifest.json": "{not json"}, "not valid JSON"),
        ({"manifest.json": json.dumps({**manifest, "format": "other"})}, "not a MedRAG lesson set"),
        ({"manifest.json": json.dumps({**manifest, "version": 99})}, "newer MedRAG"),
        ({"manifest.json": json.dumps(manifest)}, "not in the zip"),
        (
            {
                "manifest.json": json.dumps({**manifest, "items": [{**good_item, "image": "../../etc/passwd"}]}),
                "images/001.png": png.getvalue(),
            },
            "not in the zip",
        ),
        (
            {
                "manifest.json": json.dumps({**manifest, "items": [{**good_item, "label": {"x": 1}}]}),
                "images/001.png": png.getvalue(),
            },
            "not text",
        ),
        ({"manifest.json": json.dumps(manifest), "../evil.png": b"x"}, "unsafe name"),
        ({"manifest.json": json.dumps(manifest), "/abs.png": b"x"}, "unsafe name"),
    ]
    for members, message in cases:
        with pytest.raises(InputError, match=message):
            parse_manifest(read_zip(_zip(members)))
    with pytest.raises(InputError, match="not a readable zip"):
        read_zip(b"PK\x03\x04 definitely not a zip")
    assert safe_name("a/./b.png") is not None and safe_name("C:/x.png") is None and safe_name("a/../b") is None


def test_a_zip_bomb_is_refused_before_it_is_unpacked(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import medrag.teaching.ziputil as ziputil

    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("big.png", b"\0" * 5_000_000)  # ~5 KiB compressed
    monkeypatch.setattr(ziputil, "MAX_MEMBER_BYTES", 1_000_000)
    with pytest.raises(InputError, match="over the 0 MiB limit|limit for one file"):
        extract_zip(buffer.getvalue(), tmp_path / "out", (".png",))
    assert not (tmp_path / "out" / "big.png").exists()


def test_browser_uploads_are_staged_with_the_csv_matched_by_file_name(tmp_path: Path) -> None:
    from medrag.ui.upload_import import stage_uploads

    images = {name: write_png(tmp_path / "src" / name, i).read_bytes() for i, name in enumerate(("a.png", "b.png"))}
    labels = b"image,label\nimages/normal/a.png,normal\nimages/pneumonia/b.png,pneumonia\n"
    staged = stage_uploads(
        [*images.items(), ("notes.txt", b"x"), ("../../evil.png", images["a.png"])],
        ("labels.csv", labels),
        tmp_path / "data",
    )
    assert staged.images == 3 and staged.folder.parent == tmp_path / "data" / "imports"
    assert ("notes.txt", "not an image, a zip or a labels CSV") in staged.skipped
    assert (staged.folder / "evil.png").is_file() and not (tmp_path / "evil.png").exists()  # the name, not the path
    assert staged.labels_csv is not None
    assert staged.labels_csv.read_text().splitlines()[1:] == ["a.png,normal", "b.png,pneumonia"]

    folder_zip = _zip(
        {
            "teaching/labels.csv": "image,label\nx/1.png,normal\n",
            "teaching/x/1.png": images["a.png"],
            "__MACOSX/._1.png": b"junk",
            "teaching/readme.md": b"hi",
        }
    )
    zipped = stage_uploads([("set.zip", folder_zip)], None, tmp_path / "data")
    assert zipped.images == 1 and zipped.labels_csv is not None
    assert zipped.folder.name == "teaching" and (zipped.folder / "x" / "1.png").is_file()


def test_a_browser_csv_with_a_long_report_is_staged_and_a_broken_one_is_a_clear_error(tmp_path: Path) -> None:
    from medrag.errors import InputError
    from medrag.ui.upload_import import stage_uploads

    image = write_png(tmp_path / "src" / "a.png", 0).read_bytes()
    report = "Findings: " + "small left effusion. " * 10_000  # 210,000 characters: over csv's default limit
    labels = f'image,label,report\nimages/a.png,effusion,"{report}"\n'.encode()
    staged = stage_uploads([("a.png", image)], ("labels.csv", labels), tmp_path / "data")
    assert staged.labels_csv is not None
    assert len(staged.labels_csv.read_text()) > 200_000 and "a.png,effusion," in staged.labels_csv.read_text()
    broken = b'image,label,report\na.png,normal,"a quote that never closes\n'
    with pytest.raises(InputError, match="labels CSV cannot be read near line"):
        stage_uploads([("a.png", image)], ("labels.csv", broken), tmp_path / "data2")


def test_the_handout_embeds_images_escapes_text_and_puts_answers_last(memory_store, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    make_library(memory_store, tmp_path, phantoms=True)
    set_id = memory_store.create_lesson_set("<script>alert(1)</script> lesson")
    memory_store.add_lesson_items(set_id, [ItemRef("case", "p1")], 'Look <img src="http://evil/x.png"> here')
    memory_store.add_lesson_items(set_id, [ItemRef("case", "s3"), ItemRef("case", "gone")])
    lesson = memory_store.get_lesson_set(set_id)
    page = handout_for_set(memory_store, lesson)  # type: ignore[arg-type]
    assert "<script>" not in page and "&lt;script&gt;alert(1)&lt;/script&gt; lesson" in page
    assert '<img src="http://evil' not in page and "&lt;img src=&quot;http://evil/x.png&quot;&gt;" in page
    assert re.search(r"<(?:img|link|script|iframe)[^>]+(?:src|href)=\"(?!data:)", page) is None  # nothing to fetch
    assert "default-src 'none'" in page
    jpegs = re.findall(r'src="data:image/jpeg;base64,([^"]+)"', page)
    assert len(jpegs) == 3  # two cases, plus p1's NIH box drawn on its answer image
    assert Image.open(io.BytesIO(base64.b64decode(jpegs[0]))).size == (64, 64)
    assert page.index("Case 3") < page.index("Answers") < page.index("Case 1: pneumonia")
    assert "synthetic" in page[page.index("Answers") :] and "(image not available)" in page
    assert render_handout("T", "", [HandoutEntry(1, None, "", "")]).count("<section") == 2
