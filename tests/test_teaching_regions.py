"""Ground-truth regions, localisation scoring, annotation overlays (``medrag.teaching.regions``, ``.annotations``)."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest

from medrag.records import Case
from medrag.teaching.annotations import COLOURS, draw_annotations, nih_annotations
from medrag.teaching.model import Annotation, ItemRef
from medrag.teaching.regions import (
    Region,
    educator_regions,
    is_locatable,
    nih_regions,
    parse_nih_boxes,
    phantom_regions,
    phantom_seed,
    regions_for,
    score_click,
)


def _case(**fields: object) -> Case:
    base: dict[str, object] = {
        "case_id": "c",
        "label": "pneumonia",
        "dataset": "nih",
        "image_path": "",
        "thumb_path": "",
    }
    base.update(fields)
    return Case(**base)  # type: ignore[arg-type]


def test_nih_boxes_are_parsed_one_or_several_and_junk_is_ignored() -> None:
    assert parse_nih_boxes("Pneumonia:301,298,108,90") == [("Pneumonia", 301.0, 298.0, 108.0, 90.0)]
    assert parse_nih_boxes("Pneumonia:1,2,3,4; Nodule:5.5,6,7,8|Mass:0,0,0,9") == [
        ("Pneumonia", 1.0, 2.0, 3.0, 4.0),
        ("Nodule", 5.5, 6.0, 7.0, 8.0),
    ]  # a box of width 0 is no box
    assert parse_nih_boxes("") == parse_nih_boxes(None) == parse_nih_boxes("Pneumonia:a,b,c,d") == []
    region = nih_regions(_case(extra={"bbox_xywh_in_output_px": "Pneumonia:10,20,30,40"}))[0]
    assert (region.x0, region.y0, region.x1, region.y1, region.source) == (10, 20, 40, 60, "nih")


def test_the_real_images_boxes_read_as_the_importer_keeps_them(real_data: Path) -> None:
    with (real_data / "labels.csv").open(newline="", encoding="utf-8") as handle:
        rows = [r for r in csv.DictReader(handle) if r["bbox_xywh_in_output_px"]]
    assert len(rows) >= 20
    for row in rows:
        boxes = parse_nih_boxes(row["bbox_xywh_in_output_px"])
        assert boxes, row["bbox_xywh_in_output_px"]
        for _name, x, y, w, h in boxes:  # inside the stored (downscaled) image
            assert 0 <= x and 0 <= y and x + w <= int(row["width"]) + 1 and y + h <= int(row["height"]) + 1


def test_a_click_inside_on_the_edge_or_outside_a_box() -> None:
    box = Region("pneumonia", 100, 100, 200, 160)
    assert score_click([box], 150, 130, image_side=512).correct
    assert score_click([box], 205, 130, image_side=512).correct  # 5 px out: within 2 % of 512
    far = score_click([box], 260, 130, image_side=512)
    assert not far.correct and far.region == box and far.distance == pytest.approx(60)
    assert not score_click([], 1, 1, image_side=512).correct
    disc = Region("nodule", 0, 0, 20, 20, "disc")
    assert (
        score_click([disc], 10, 19, image_side=100).correct
        and not score_click([disc], 0.5, 0.5, image_side=100).correct
    )


def test_phantom_regions_sit_on_the_drawn_finding() -> None:
    """The disc around a phantom's nodule holds the pixels the nodule changed (its centroid is inside)."""
    from medrag.phantoms import generate_phantom

    case = _case(
        label="nodule/mass",
        dataset="synthetic",
        synthetic=True,
        patient_id="syn-2-00005",
        extra={"findings": "nodule/mass"},
    )
    seed = phantom_seed(case)
    assert seed == 2 * 1_000_003 + 5
    size = 192
    with_nodule = generate_phantom(frozenset({"nodule/mass"}), seed, size)
    without = generate_phantom(frozenset(), seed, size)
    changed = np.abs(with_nodule - without) > 0.05
    rows, cols = np.nonzero(changed)
    assert len(rows) > 20
    [region] = phantom_regions(case, size)
    assert region.source == "phantom" and region.shape == "disc"
    assert region.distance(float(cols.mean()), float(rows.mean())) == 0.0
    assert (
        phantom_regions(_case(patient_id="syn-2-00005", extra={"findings": "nodule/mass"}), size) == []
    )  # not synthetic


def test_educator_boxes_count_and_arrows_do_not() -> None:
    ref = ItemRef("case", "c")
    marks = [
        Annotation(ref, "box", 50, 40, 10, 20, "RLL"),
        Annotation(ref, "arrow", 0, 0, 5, 5, "tip"),
        Annotation(ref, "box", 0, 0, 9, 9, "nih", source="nih"),
    ]
    [region] = educator_regions(marks)
    assert (region.label, region.x0, region.y0, region.x1, region.y1) == ("RLL", 10, 20, 50, 40)
    plain = _case(label="normal")
    assert not is_locatable(plain) and is_locatable(plain, marks[:1])
    assert is_locatable(_case(extra={"bbox_xywh_in_output_px": "Pneumonia:1,1,5,5"}))
    assert [r.source for r in regions_for(_case(extra={"bbox_xywh_in_output_px": "Pneumonia:1,1,5,5"}), marks)] == [
        "educator",
        "nih",
    ]


def test_overlays_are_drawn_in_their_colours() -> None:
    pixels = np.full((100, 120), 0.5, dtype=np.float32)
    ref = ItemRef("case", "c")
    nih = nih_annotations(_case(extra={"bbox_xywh_in_output_px": "Pneumonia:10,10,30,20"}))
    assert nih[0].source == "nih" and "NIH" in nih[0].label
    drawn = np.asarray(draw_annotations(pixels, [*nih, Annotation(ref, "arrow", 60, 80, 100, 40, "tip")]))
    assert drawn.shape == (100, 120, 3)
    assert tuple(drawn[10, 25]) == COLOURS["nih"]  # the box's top edge
    assert tuple(drawn[60, 80]) == COLOURS["educator"]  # on the arrow's line
    assert tuple(drawn[50, 5]) == (127, 127, 127) or tuple(drawn[50, 5]) == (128, 128, 128)  # untouched
    assert np.asarray(draw_annotations(pixels, [])).shape == (100, 120, 3)
