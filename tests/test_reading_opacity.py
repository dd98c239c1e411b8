"""The opacity map (issue #11's "where"): denser-than-normal lung places, the template behind it, and its use
in the merged reading, the evaluation and the viewer."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import plotly.graph_objects as go
import pytest

from medrag.errors import ConfigError
from medrag.evaluation.reading import LabelledImage, evaluate_reading
from medrag.reading.base import FindingRead, ImageReading, Overlays, reading_from_dict, reading_to_dict
from medrag.reading.combine import merge_readings
from medrag.reading.grids import densest_region, peak
from medrag.reading.opacity import DEFAULT_TEMPLATE, OpacityTemplate, framed, opacity_map

SIZE = 128


def _lungs() -> np.ndarray:
    lungs = np.zeros((SIZE, SIZE), bool)
    lungs[20:110, 15:58] = True  # the image's left: the patient's right lung
    lungs[20:110, 70:113] = True
    return lungs


def _film(rng: np.random.Generator, patch: tuple[slice, slice] | None = None) -> np.ndarray:
    small = np.full((SIZE, SIZE), 0.8, np.float32)
    small[_lungs()] = 0.3
    small += rng.normal(0, 0.02, small.shape).astype(np.float32)
    if patch is not None:
        small[patch] += 0.3  # an airspace opacity: denser (brighter) than the lung around it
    return small


def _template(rng: np.random.Generator) -> OpacityTemplate:
    frames = [framed(_film(rng), _lungs()) for _ in range(12)]
    return OpacityTemplate.fit({"all": [f for f in frames if f is not None]}, "synthetic normal films")


def test_the_map_peaks_on_a_dense_patch_and_is_zero_outside_the_lungs() -> None:
    rng = np.random.default_rng(0)
    template = _template(rng)
    patch = (slice(80, 100), slice(20, 40))  # the patient's right lower lung
    values = opacity_map(_film(rng, patch), _lungs(), template)
    assert values.shape == (SIZE, SIZE) and float(values[~_lungs()].max()) == 0.0
    row, col, top = peak(values)
    assert 80 <= row * SIZE <= 100 and 20 <= col * SIZE <= 40, (row * SIZE, col * SIZE)
    assert top >= 2.0  # several SD denser than the normal films there
    clean = opacity_map(_film(rng), _lungs(), template)
    assert float(clean.max()) < top / 2


def test_no_lungs_give_an_empty_map() -> None:
    template = _template(np.random.default_rng(1))
    assert not opacity_map(np.zeros((SIZE, SIZE), np.float32), np.zeros((SIZE, SIZE), bool), template).any()


def test_a_template_round_trips_and_a_broken_one_says_how_to_refit(tmp_path: Path) -> None:
    template = _template(np.random.default_rng(2))
    template.save(tmp_path / "t.json")
    loaded = OpacityTemplate.load(tmp_path / "t.json")
    assert loaded.grid == template.grid and loaded.films == {"all": 12}
    assert np.allclose(loaded.mean["all"], template.mean["all"], atol=1e-4)
    mean, _, _ = loaded.for_view("AP")  # no AP films in this template: all films stand in
    assert mean is loaded.mean["all"]
    (tmp_path / "bad.json").write_text('{"mean": {"all": [[1, 2], [3]]}}')
    with pytest.raises(ConfigError, match="opacity_template_fit"):
        OpacityTemplate.load(tmp_path / "bad.json")


def test_the_shipped_template_is_fitted_on_nih_normal_films_and_stamped_with_its_box_check() -> None:
    data = json.loads(DEFAULT_TEMPLATE.read_text())
    template = OpacityTemplate.load(DEFAULT_TEMPLATE)
    assert set(template.mean) == {"all", "PA", "AP"} and template.films["all"] == 630
    assert "labels.csv sha256" in template.source
    assert data["localisation"]["boxes"] == 36 and 0 <= data["localisation"]["hits"] <= 36


def test_the_anatomy_reading_carries_the_map_inside_its_lungs() -> None:
    from medrag.phantoms import generate_phantom
    from medrag.reading.anatomy import read_anatomy
    from medrag.reading.anatomy_reader import reading_from_anatomy

    anatomy = read_anatomy(generate_phantom(frozenset({"consolidation"}), seed=4242, size=256))
    assert anatomy.opacity.shape == anatomy.lungs.shape
    assert float(anatomy.opacity[~anatomy.lungs].max(initial=0.0)) == 0.0
    reading = reading_from_anatomy(anatomy)
    assert reading.overlays.opacity is None or reading.overlays.opacity.shape == (32, 32)


def _with_opacity(peak_cell: tuple[int, int]) -> ImageReading:
    grid = np.zeros((10, 10), np.float32)
    grid[peak_cell] = 3.0
    return ImageReading(findings={"opacity": FindingRead("opacity", "present", None, (), "dense", "anatomy")},
                        overlays=Overlays(zone_boxes={"right lower zone": (0.0, 60.0, 50.0, 40.0),
                                                      "left lower zone": (50.0, 60.0, 50.0, 40.0)}, opacity=grid),
                        readers=("anatomy",))


def test_a_seen_lung_opacity_is_placed_at_the_maps_peak_not_the_heatmaps() -> None:
    heatmap = np.zeros((10, 10), np.float32)
    heatmap[8, 7] = 1.0  # the classifier's heatmap points to the patient's left lower zone
    cnn = ImageReading(findings={"pneumonia": FindingRead("pneumonia", "present", 0.7, source="medrag-cnn")},
                       overlays=Overlays(heatmap=heatmap, heatmap_finding="pneumonia"), readers=("medrag-cnn",))
    merged = merge_readings([_with_opacity((8, 2)), cnn], size=(100, 100))  # the map: the right lower zone
    assert merged.findings["pneumonia"].where == ("right lower zone",)
    assert merged.findings["opacity"].where == ("right lower zone",)
    assert merged.overlays.opacity is not None and merged.overlays.heatmap is not None
    again = reading_from_dict(json.loads(json.dumps(reading_to_dict(merged))))
    assert again.overlays.opacity is not None and float(again.overlays.opacity[8, 2]) == 3.0


def test_a_faint_map_places_nothing() -> None:
    faint = _with_opacity((8, 2))
    assert faint.overlays.opacity is not None
    faint.overlays.opacity[8, 2] = 0.5  # under one SD denser than normal: not a place
    pneumonia = ImageReading(findings={"pneumonia": FindingRead("pneumonia", "present", 0.7, source="medrag-cnn")})
    assert merge_readings([faint, pneumonia], size=(100, 100)).findings["pneumonia"].where == ()


def test_localisation_counts_the_maps_peak() -> None:
    box = (("pneumonia", 0.0, 60.0, 50.0, 40.0),)
    items = [(LabelledImage("c1", "p1", frozenset({"pneumonia"}), "PA", box, (100, 100)), _with_opacity((8, 2))),
             (LabelledImage("c2", "p2", frozenset({"pneumonia"}), "PA", box, (100, 100)), _with_opacity((1, 8)))]
    report = evaluate_reading(items, findings=("pneumonia",), rounds=20)
    assert report.boxes == 2 and report.localisation_peak == 0.5


def test_the_viewer_draws_the_map_as_its_own_layer() -> None:
    from medrag.ui.overlays import Placement, add_overlays, available_layers

    reading = _with_opacity((8, 2))
    assert "opacity" in available_layers(reading)
    fig = add_overlays(go.Figure(), reading, (100, 100), Placement(1.0, 1.0), {"opacity"})
    assert [t.name for t in fig.data] == ["opacity", "densest region"]
    cross = fig.data[1]
    assert cross.x[0] == pytest.approx(25.0) and cross.y[0] == pytest.approx(85.0)  # cell (8, 2) of 10 x 10
    assert "opacity" not in available_layers(ImageReading())


def test_the_densest_region_outweighs_one_hotter_cell_and_its_point_lies_inside_it() -> None:
    grid = np.zeros((12, 12), np.float32)
    grid[1, 10] = 3.0  # one hot cell: noise more often than a finding
    grid[6:10, 1:5] = 2.0  # a 4 x 4 region, each cell two thirds as hot
    row, col, top = densest_region(grid)
    assert top == 3.0 and (row, col) != peak(grid)[:2]
    assert 6 <= row * 12 < 10 and 1 <= col * 12 < 5
    crescent = np.zeros((12, 12), np.float32)
    crescent[2:10, 2] = 2.0
    crescent[2, 2:9] = 2.0
    crescent[9, 2:9] = 2.0  # a C whose mass centre lies in its empty middle
    row, col, _ = densest_region(crescent)
    assert crescent[int(row * 12), int(col * 12)] > 0
    assert densest_region(np.zeros((4, 4), np.float32))[2] == 0.0  # an empty map: its first cell, value 0
