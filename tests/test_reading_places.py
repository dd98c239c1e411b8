"""medrag.reading.places: the one point a reading gives for each finding, and what the evaluation makes of it."""

from __future__ import annotations

import numpy as np

from medrag.evaluation.reading import LabelledImage, evaluate_reading
from medrag.reading.base import FindingRead, ImageReading, Overlays
from medrag.reading.combine import merge_readings
from medrag.reading.places import (
    NORMAL_AREA_RATIO,
    apex_point,
    costophrenic_point,
    effusion_side,
    finding_point,
    pneumothorax_side,
)

SIZE = (200, 200)  # (height, width)


def _square(x0: float, y0: float, x1: float, y1: float) -> list[tuple[float, float]]:
    return [(x0, y0), (x1, y0), (x1, y1), (x0, y1)]


def _reading(effusion_where: tuple[str, ...] = (), zones: dict[str, dict[str, float]] | None = None,
             opacity: np.ndarray | None = None) -> ImageReading:
    """A film drawn as boxes: the patient's right lung on the image's left (x 20-90), the left lung on its right
    (x 110-180), both y 20-170; the heart x 80-140, y 100-160 (its centre (110, 130))."""
    contours = {"right lung": _square(20, 20, 90, 170), "left lung": _square(110, 20, 180, 170),
                "heart": _square(80, 100, 140, 160)}
    findings = {"effusion": FindingRead("effusion", "uncertain", None, effusion_where, "", "anatomy")}
    return ImageReading(findings=findings, zones=zones or {},
                        overlays=Overlays(contours=contours, opacity=opacity))


def test_cardiomegaly_points_at_the_heart_centre() -> None:
    x, y = finding_point(_reading(), "cardiomegaly", SIZE) or (0.0, 0.0)
    assert abs(x - 110) < 1 and abs(y - 130) < 1


def test_effusion_points_at_the_named_sides_costophrenic_angle() -> None:
    # the named side wins over denser zones elsewhere; the angle is low and lateral (away from the midline)
    zones = {"right lower zone": {"z": 3.0}, "left lower zone": {"z": 0.1}}
    x, y = finding_point(_reading(("left lower zone",), zones), "effusion", SIZE) or (0.0, 0.0)
    assert (x, y) == (180.0, 170.0)
    assert effusion_side(_reading((), zones)) == "right"
    x, y = finding_point(_reading((), zones), "effusion", SIZE) or (0.0, 0.0)
    assert (x, y) == (20.0, 170.0)


def test_costophrenic_point_with_one_lung_uses_its_own_centre() -> None:
    # a lung whose outline slopes: its lowest band reaches furthest out on the right of the image
    outline = [(10.0, 10.0), (60.0, 10.0), (80.0, 100.0), (40.0, 100.0)]
    assert costophrenic_point(outline, {"left lung": outline}) == (80.0, 100.0)


def test_other_findings_take_the_opacity_peak_and_nothing_gives_none() -> None:
    grid = np.zeros((10, 10), dtype=np.float32)
    grid[2, 7] = 3.0
    x, y = finding_point(_reading(opacity=grid), "pneumonia", SIZE) or (0.0, 0.0)
    assert 140 <= x <= 160 and 40 <= y <= 60  # the cell's place on the 200 px film
    assert finding_point(ImageReading(), "pneumonia", SIZE) is None
    assert effusion_side(ImageReading()) == ""


def test_evaluation_scores_each_box_by_the_point_for_its_finding() -> None:
    grid = np.zeros((10, 10), dtype=np.float32)
    grid[2, 7] = 3.0  # the opacity peak: upper right of the image, far from the heart
    heart_box = ("cardiomegaly", 75.0, 95.0, 70.0, 70.0)
    lower_left_box = ("effusion", 150.0, 150.0, 45.0, 40.0)  # the patient's left costophrenic angle
    labelled = LabelledImage("c1", "p1", frozenset({"cardiomegaly", "effusion"}), "PA",
                             (heart_box, lower_left_box), SIZE)
    report = evaluate_reading([(labelled, _reading(("left lower zone",), opacity=grid))], rounds=10)
    assert report.boxes == 2
    assert report.localisation_finding == 1.0
    assert report.localisation_peak == 0.0  # the one peak is in neither box


def test_merged_reading_places_an_unplaced_effusion_on_the_denser_base() -> None:
    zones = {"right lower zone": {"z": 0.2}, "left lower zone": {"z": 2.4}}
    anatomy = ImageReading(zones=zones, readers=("anatomy",))
    classifier = ImageReading(findings={"effusion": FindingRead("effusion", "present", 0.7, (), "", "medrag-cnn")},
                              readers=("medrag-cnn",))
    merged = merge_readings([anatomy, classifier], size=SIZE)
    assert merged.findings["effusion"].where == ("left lower zone",)
    absent = ImageReading(findings={"effusion": FindingRead("effusion", "absent", 0.05, (), "", "medrag-cnn")})
    assert merge_readings([anatomy, absent], size=SIZE).findings["effusion"].where == ()


def _with_lung_areas(ratio: float, where: tuple[str, ...] = ()) -> ImageReading:
    reading = _reading()
    findings = {"pneumothorax": FindingRead("pneumothorax", "present", 0.6, where, "", "medrag-cnn")}
    return ImageReading(findings=findings, measurements={"asymmetry area_ratio": ratio},
                        overlays=reading.overlays)


def test_pneumothorax_points_at_the_apex_of_the_smaller_lung_field() -> None:
    # the right lung (the image's left) at half the left's area: collapsed, so the air is on the right
    assert pneumothorax_side(_with_lung_areas(0.5)) == "right"
    assert finding_point(_with_lung_areas(0.5), "pneumothorax", SIZE) == (55.0, 20.0)
    # normal films' right lung is a little smaller than the left: a ratio within their spread names no side
    assert pneumothorax_side(_with_lung_areas(NORMAL_AREA_RATIO * 0.9)) == ""
    assert pneumothorax_side(_with_lung_areas(NORMAL_AREA_RATIO)) == ""
    assert pneumothorax_side(_with_lung_areas(1.2)) == "left"
    assert finding_point(_with_lung_areas(1.2), "pneumothorax", SIZE) == (145.0, 20.0)
    assert finding_point(_with_lung_areas(0.9), "pneumothorax", SIZE) is None  # no side, and no map to fall back on
    # a side the reading names wins; unmeasured lungs give no side and fall back to the map
    assert pneumothorax_side(_with_lung_areas(0.5, ("left upper zone",))) == "left"
    assert pneumothorax_side(_with_lung_areas(float("nan"))) == ""


def test_apex_point_is_the_middle_of_the_outlines_top() -> None:
    dome = [(10.0, 50.0), (30.0, 12.0), (40.0, 10.0), (50.0, 12.0), (70.0, 50.0), (70.0, 200.0), (10.0, 200.0)]
    x, y = apex_point(dome)
    assert y == 10.0 and 30.0 <= x <= 50.0


def test_merged_reading_places_an_unplaced_pneumothorax_in_the_smaller_lungs_upper_zone() -> None:
    anatomy = ImageReading(measurements={"asymmetry area_ratio": 0.55}, readers=("anatomy",))
    seen = ImageReading(findings={"pneumothorax": FindingRead("pneumothorax", "present", 0.6, (), "", "medrag-cnn")},
                        readers=("medrag-cnn",))
    placed = merge_readings([anatomy, seen], size=SIZE).findings["pneumothorax"]
    assert placed.where == ("right upper zone",)
    assert "smaller lung field" in placed.evidence and "0.55" in placed.evidence  # the reading says why
    absent = ImageReading(findings={"pneumothorax": FindingRead("pneumothorax", "absent", 0.01, (), "",
                                                                "medrag-cnn")})
    assert merge_readings([anatomy, absent], size=SIZE).findings["pneumothorax"].where == ()
