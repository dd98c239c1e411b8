"""Merging readers: the calibrated reader decides, measurements add evidence and place, failures are isolated."""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from medrag.reading.base import FindingRead, ImageReading, Overlays, reading_from_dict, reading_to_dict
from medrag.reading.combine import NORMAL_MARGIN, CombinedReader, merge_readings, peak_zone
from medrag.reading.fusion import FUSED_SOURCE

ZONE_BOXES = {"right lower zone": (0.0, 60.0, 50.0, 40.0), "left lower zone": (50.0, 60.0, 50.0, 40.0)}


def _anatomy() -> ImageReading:
    return ImageReading(
        findings={
            "effusion": FindingRead(
                "effusion", "uncertain", None, ("right lower zone",), "blunted right angle", "anatomy"
            ),
            "cardiomegaly": FindingRead("cardiomegaly", "absent", None, (), "cardiothoracic ratio 0.45", "anatomy"),
        },
        view="PA", view_probability=0.9, ctr=0.45, zones={"right lower zone": {"mean": 0.6, "z": 2.5}},
        overlays=Overlays(zone_boxes=ZONE_BOXES), readers=("anatomy",),
    )


def _cnn() -> ImageReading:
    heatmap = np.zeros((10, 10), np.float32)
    heatmap[8, 7] = 1.0  # bottom right of the image: the patient's left lower zone
    return ImageReading(
        findings={
            "effusion": FindingRead("effusion", "absent", 0.1, source="medrag-cnn"),
            "cardiomegaly": FindingRead("cardiomegaly", "present", 0.8, source="medrag-cnn"),
            "pneumonia": FindingRead("pneumonia", "present", 0.7, source="medrag-cnn"),
        },
        overlays=Overlays(heatmap=heatmap, heatmap_finding="pneumonia"), readers=("medrag-cnn",),
    )


def test_the_calibrated_reader_decides_and_measurements_add_evidence() -> None:
    merged = merge_readings([_anatomy(), _cnn()], size=(100, 100))
    cardio = merged.findings["cardiomegaly"]
    assert cardio.status == "present" and cardio.probability == 0.8
    assert "cardiothoracic ratio 0.45" in cardio.evidence and cardio.source == "medrag-cnn + anatomy"
    # The classifier says no effusion, but a blunted angle points to one: "possible", never a flat "no".
    assert merged.findings["effusion"].status == "uncertain"
    assert merged.findings["effusion"].where == ("right lower zone",)
    assert merged.view == "PA" and merged.ctr == 0.45 and merged.readers == ("anatomy", "medrag-cnn")


def test_the_heatmap_peak_names_its_zone() -> None:
    merged = merge_readings([_anatomy(), _cnn()], size=(100, 100))
    assert merged.findings["pneumonia"].where == ("left lower zone",)
    assert peak_zone(np.ones((2, 2)), {}, (100, 100)) == ""


def test_a_failing_reader_is_isolated_with_a_note() -> None:
    class Broken:
        name, model = "broken", "x"

        def read(self, pixels: np.ndarray, *, view_hint: str | None = None) -> ImageReading:
            raise RuntimeError("weights corrupt")

    class Fixed:
        name, model = "fixed", "y"

        def read(self, pixels: np.ndarray, *, view_hint: str | None = None) -> ImageReading:
            return _cnn()

    reading = CombinedReader([Broken(), Fixed()]).read(np.zeros((100, 100), np.float32))
    assert reading is not None and reading.findings["pneumonia"].status == "present"
    assert any("broken reader failed" in note for note in reading.notes)
    assert CombinedReader([]).read(np.zeros((4, 4), np.float32)) is None


def test_a_reading_survives_the_history_round_trip() -> None:
    merged = merge_readings([_anatomy(), _cnn()], size=(100, 100))
    back = reading_from_dict(reading_to_dict(merged))
    assert back.findings == merged.findings and back.zones == merged.zones and back.view == merged.view
    assert back.overlays.zone_boxes == merged.overlays.zone_boxes
    assert back.overlays.heatmap is not None and back.overlays.heatmap.shape == (10, 10)


def test_a_finding_further_above_its_threshold_rules_out_a_normal_film() -> None:
    normal = FindingRead("no finding", "present", 0.4, source="medrag-cnn", threshold=0.35)
    # 0.3 / 0.15 = 2.0 above its threshold against 0.4 / 0.35 = 1.14 for "no finding"
    cnn = ImageReading(findings={"no finding": normal,
                                 "atelectasis": FindingRead("atelectasis", "present", 0.3, threshold=0.15)})
    merged = merge_readings([cnn])
    assert merged.findings["no finding"].status == "absent" and merged.findings["no finding"].probability == 0.4
    assert merged.findings["atelectasis"].status == "present"


def test_a_weak_classifier_call_gives_way_to_a_likelier_normal_film() -> None:
    normal = FindingRead("no finding", "present", 0.87, source="medrag-cnn", threshold=0.35)
    cnn = ImageReading(findings={
        "no finding": normal,
        "consolidation": FindingRead("consolidation", "uncertain", 0.05, ("left lower zone",), threshold=0.057),
        "nodule/mass": FindingRead("nodule/mass", "present", 0.2, threshold=0.14),
    })
    merged = merge_readings([cnn])
    assert merged.findings["no finding"].status == "present"
    for name in ("consolidation", "nodule/mass"):
        read = merged.findings[name]
        assert read.status == "absent" and read.where == () and "normal film is the likelier" in read.evidence
        assert read.probability == cnn.findings[name].probability  # the AUC still scores the probability


def test_a_finding_only_a_measurement_reads_rules_out_a_normal_film() -> None:
    anatomy = ImageReading(findings={
        "opacity": FindingRead("opacity", "present", None, ("right lower zone",), "right lower zone 2.4 SD", "anatomy"),
    })
    cnn = ImageReading(findings={"no finding": FindingRead("no finding", "present", 0.9, threshold=0.35)})
    merged = merge_readings([anatomy, cnn])
    assert merged.findings["opacity"].status == "present" and merged.findings["no finding"].status == "absent"


def test_a_zone_flag_beside_a_weak_classifier_call_does_not_outweigh_a_normal_film() -> None:
    # A zone over 2 SD is weak evidence (likelihood ratio 1.5 on the training films): it raises the
    # classifier's "possible" to "present" but weighs only the classifier's margin against a normal film.
    anatomy = ImageReading(findings={
        "opacity": FindingRead("opacity", "present", None, ("right lower zone",), "right lower zone 2.4 SD", "anatomy"),
    })
    cnn = ImageReading(findings={
        "no finding": FindingRead("no finding", "present", 0.9, threshold=0.35),
        "opacity": FindingRead("opacity", "uncertain", 0.17, threshold=0.19),
    })
    merged = merge_readings([anatomy, cnn])
    assert merged.findings["no finding"].status == "present"
    opacity = merged.findings["opacity"]
    assert opacity.status == "absent" and "2.4 SD" in opacity.evidence
    assert "normal film is the likelier" in opacity.evidence
    stronger = ImageReading(findings={**cnn.findings,
                                      "opacity": FindingRead("opacity", "uncertain", 0.7, threshold=0.19)})
    merged = merge_readings([anatomy, stronger])  # 0.7 / 0.19 = 3.7, over 1.25 x 0.9 / 0.35 = 3.2
    assert merged.findings["no finding"].status == "absent" and merged.findings["opacity"].status == "present"


def test_a_call_must_stand_clearly_further_above_its_threshold_than_a_normal_film() -> None:
    normal = FindingRead("no finding", "present", 0.4, threshold=0.35)  # 1.14 times its threshold
    near = ImageReading(findings={"no finding": normal,
                                  "atelectasis": FindingRead("atelectasis", "present", 0.18, threshold=0.15)})
    merged = merge_readings([near])  # 1.2 times its threshold: above normal's 1.14, under 1.25 x 1.14
    assert NORMAL_MARGIN == 1.25
    assert merged.findings["no finding"].status == "present" and merged.findings["atelectasis"].status == "absent"
    even = merge_readings([near], normal_margin=1.0)  # the benchmark's other choices
    assert even.findings["no finding"].status == "absent" and even.findings["atelectasis"].status == "present"


def test_a_fused_finding_keeps_its_status_beside_the_measurements_it_weighed() -> None:
    anatomy = ImageReading(findings={
        "cardiomegaly": FindingRead("cardiomegaly", "present", None, (), "cardiothoracic ratio 0.61", "anatomy"),
        "effusion": FindingRead("effusion", "absent", None, (), "both costophrenic angles sharp", "anatomy"),
    }, readers=("anatomy",))
    cnn = ImageReading(findings={
        "no finding": FindingRead("no finding", "present", 0.4, threshold=0.35),
        "cardiomegaly": FindingRead("cardiomegaly", "uncertain", 0.1, source=FUSED_SOURCE, threshold=0.12),
        "effusion": FindingRead("effusion", "present", 0.3, source=FUSED_SOURCE, threshold=0.2),
    }, readers=("medrag-cnn",))
    merged = merge_readings([anatomy, cnn])
    cardiomegaly, effusion = merged.findings["cardiomegaly"], merged.findings["effusion"]
    assert cardiomegaly.status == "uncertain" and cardiomegaly.probability == 0.1
    assert "ratio 0.61" in cardiomegaly.evidence
    # not raised to "present" by the ratio it weighed, and not lowered to "possible" by the sharp angles
    assert effusion.status == "present" and "angles sharp" in effusion.evidence
    assert merged.findings["no finding"].status == "absent"  # effusion 1.5 times its threshold, normal 1.14
    unfused = ImageReading(findings={name: replace(read, source="medrag-cnn") for name, read in cnn.findings.items()},
                           readers=("medrag-cnn",))
    assert merge_readings([anatomy, unfused]).findings["effusion"].status == "uncertain"


def test_the_threshold_survives_the_history_round_trip_and_old_rows_still_load() -> None:
    read = FindingRead("effusion", "present", 0.3, threshold=0.145)
    assert FindingRead.from_dict(read.to_dict()) == read
    assert "threshold" not in FindingRead("opacity", "present").to_dict()  # rows without one keep their shape
    assert FindingRead.from_dict({"name": "edema", "status": "absent", "probability": 0.1}).threshold is None


def test_a_measurement_that_says_present_settles_a_classifier_that_says_possible() -> None:
    anatomy = ImageReading(findings={
        "cardiomegaly": FindingRead("cardiomegaly", "present", None, (), "cardiothoracic ratio 0.61", "anatomy"),
        "opacity": FindingRead("opacity", "absent", None, (), "no zone markedly more opaque", "anatomy"),
    }, readers=("anatomy",))
    cnn = ImageReading(findings={
        "cardiomegaly": FindingRead("cardiomegaly", "uncertain", 0.04, source="medrag-cnn"),
        "opacity": FindingRead("opacity", "uncertain", 0.2, source="medrag-cnn"),
    }, readers=("medrag-cnn",))
    merged = merge_readings([anatomy, cnn])
    assert merged.findings["cardiomegaly"].status == "present"  # the ratio over its band decides
    assert merged.findings["opacity"].status == "uncertain"  # a measurement's "absent" does not overrule "possible"


class FakeCnn:
    """Stands in for ``CnnReader``: fixed probabilities, thresholds and held-out figures."""

    def __init__(self, per_class: dict[str, dict[str, object]], thresholds: dict[str, float],
                 probabilities: dict[str, float]) -> None:
        self.meta = {"weights_sha256": "x", "metrics": {"held_out": {"per_class": per_class}}}
        self.thresholds, self.probabilities = thresholds, probabilities

    def forward(self, pixels: np.ndarray) -> object:
        from types import SimpleNamespace

        return SimpleNamespace(probabilities=self.probabilities)

    def heatmap(self, pixels: np.ndarray, name: str) -> np.ndarray:
        return np.zeros(pixels.shape, np.float32)


def _read_with(cnn: FakeCnn) -> ImageReading:
    from medrag.reading.cnn_reader import MedragCnnReader

    return MedragCnnReader(cnn).read(np.zeros((64, 64), np.float32))  # type: ignore[arg-type]


def test_the_classifier_does_not_call_a_class_it_is_not_shown_to_read() -> None:
    from medrag.reading.cnn_reader import unproven_classes

    cnn = FakeCnn({"nodule/mass": {"auc": 0.585, "auc_ci95": [0.498, 0.676]},
                   "edema": {"auc": 0.845, "auc_ci95": [0.718, 0.953]}},
                  {"nodule/mass": 0.1, "edema": 0.1}, {"nodule/mass": 0.9, "edema": 0.9})
    assert set(unproven_classes(cnn.meta)) == {"nodule/mass"}
    reading = _read_with(cnn)
    nodule = reading.findings["nodule/mass"]
    assert nodule.status == "not mentioned" and "not shown to beat chance" in nodule.evidence
    assert "0.50" in nodule.evidence and nodule.probability == 0.9  # kept: the evaluation still scores it
    assert reading.findings["edema"].status == "present"
    assert reading.overlays.heatmap_finding == "edema"  # no heatmap for a class it cannot read


def _with_consolidation_at_chance(**calls: str) -> ImageReading:
    findings = {"consolidation": FindingRead("consolidation", "not mentioned", 0.05, (), "not shown to beat chance",
                                             "medrag-cnn", 0.057)}
    for name, status in calls.items():
        findings[name] = FindingRead(name, status, 0.5 if status == "present" else 0.1,  # type: ignore[arg-type]
                                     ("right lower zone",) if status != "absent" else (), source="medrag-cnn")
    return ImageReading(findings=findings)


def test_consolidation_stands_in_from_the_airspace_opacity_calls() -> None:
    called = merge_readings([_with_consolidation_at_chance(pneumonia="present", opacity="absent")])
    read = called.findings["consolidation"]
    assert read.status == "uncertain" and read.where == ("right lower zone",) and "pneumonia is called" in read.evidence
    clear = merge_readings([_with_consolidation_at_chance(pneumonia="absent", opacity="absent")])
    assert clear.findings["consolidation"].status == "absent"
    assert "neither pneumonia nor airspace opacity" in clear.findings["consolidation"].evidence
    alone = merge_readings([_with_consolidation_at_chance()])  # nothing to infer it from: it stays unsaid
    assert alone.findings["consolidation"].status == "not mentioned"


def test_a_measurement_speaks_for_a_class_the_classifier_cannot_read() -> None:
    anatomy = ImageReading(findings={
        "cardiomegaly": FindingRead("cardiomegaly", "present", None, (), "cardiothoracic ratio 0.61", "anatomy")})
    cnn = ImageReading(findings={"cardiomegaly": FindingRead("cardiomegaly", "not mentioned", 0.04, (),
                                                            "not shown to beat chance", "medrag-cnn")})
    merged = merge_readings([anatomy, cnn]).findings["cardiomegaly"]
    assert merged.status == "present" and merged.probability == 0.04 and "ratio 0.61" in merged.evidence


def test_a_measurement_that_says_absent_tempers_a_weak_present() -> None:
    """The classifier's F1 threshold can call effusion at probability 0.15; with both angles sharp the reading
    says "possible" — but a confident classifier (0.8) stands."""
    anatomy = ImageReading(findings={
        "effusion": FindingRead("effusion", "absent", None, (), "both costophrenic angles sharp", "anatomy"),
    }, readers=("anatomy",))
    for probability, expected in ((0.15, "uncertain"), (0.8, "present")):
        cnn = ImageReading(findings={"effusion": FindingRead("effusion", "present", probability, source="medrag-cnn")},
                           readers=("medrag-cnn",))
        merged = merge_readings([anatomy, cnn]).findings["effusion"]
        assert merged.status == expected
        assert "both costophrenic angles sharp" in merged.evidence


def test_a_class_read_poorly_is_at_most_possible_unless_a_measurement_says_present() -> None:
    cnn = _read_with(FakeCnn({"infiltration": {"auc": 0.64, "auc_ci95": [0.57, 0.71]},
                              "pneumonia": {"auc": 0.71, "auc_ci95": [0.64, 0.78]}},
                             {"infiltration": 0.19, "pneumonia": 0.3}, {"infiltration": 0.6, "pneumonia": 0.6}))
    opacity = cnn.findings["opacity"]
    assert opacity.status == "uncertain" and "reads airspace opacity poorly (held-out AUC 0.64)" in opacity.evidence
    assert cnn.findings["pneumonia"].status == "present"  # AUC 0.71: acceptable, its threshold stands
    zones = ImageReading(findings={"opacity": FindingRead("opacity", "present", None, ("right lower zone",),
                                                          "right lower zone 2.6 SD more opaque", "anatomy")})
    assert merge_readings([zones, cnn]).findings["opacity"].status == "present"  # the measurement settles it
