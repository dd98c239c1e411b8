"""The anatomy measurements beside the classifier: fitting, selection, applying, and refusing a bad stamp."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from medrag.errors import ConfigError
from medrag.reading.base import FindingRead, ImageReading, Overlays
from medrag.reading.fusion import (
    DEFAULT_FUSION,
    FusionModel,
    anatomy_features,
    feature_text,
    fuse_readings,
    is_fused,
)

FEATURES = ["ctr", "left costophrenic recess z"]


def _stamp(**change: object) -> dict[str, object]:
    """A hand-made fusion: cardiomegaly from the ratio, weight 1 on the standardised ratio, nothing else."""
    cardiomegaly = {"coef": [2.0, 0.0], "intercept": 0.0, "mean": [0.5, 0.0], "scale": [0.05, 1.0],
                    "cnn_centre": 0.0, "cnn_spread": 1.0, "anatomy_centre": 0.0, "anatomy_spread": 1.0,
                    "a": 1.0, "b": -1.0, "threshold": 0.6, "auc": 0.76}
    stamp: dict[str, object] = {"features": FEATURES, "medians": [0.48, 0.0], "classes": {"cardiomegaly": cardiomegaly},
                                "cnn_weights_sha256": "abc"}
    stamp.update(change)
    return stamp


def _anatomy(ctr: float | None) -> ImageReading:
    measurements = {"left costophrenic recess z": 0.3}
    if ctr is not None:
        measurements["ctr"] = ctr
    return ImageReading(measurements=measurements, view="PA", view_probability=0.95, readers=("anatomy",),
                        overlays=Overlays(opacity=np.array([[0.0, 1.0], [3.0, 0.0]], np.float32)))


def _cnn(probability: float = 0.5) -> ImageReading:
    return ImageReading(findings={
        "cardiomegaly": FindingRead("cardiomegaly", "uncertain", probability, source="medrag-cnn", threshold=0.55),
        "pneumonia": FindingRead("pneumonia", "present", 0.7, source="medrag-cnn", threshold=0.4),
    }, readers=("medrag-cnn",))


def test_a_large_heart_on_the_measurements_raises_the_classifiers_word_and_says_why() -> None:
    fusion = FusionModel.from_dict(_stamp())
    small, large = (fusion.fuse(_cnn(), _anatomy(ctr)).findings["cardiomegaly"] for ctr in (0.42, 0.62))
    assert large.probability is not None and small.probability is not None
    assert large.probability > 0.9 > 0.1 > small.probability
    assert (large.status, small.status) == ("present", "absent")
    assert large.threshold == 0.6
    assert "cardiothoracic ratio 0.62" in large.evidence
    assert "the classifier's 0.50 weighed with the measurements" in large.evidence
    assert "cardiothoracic ratio 0.42" in small.evidence  # what argues against it, when the measurements do
    assert is_fused(large) and not is_fused(_cnn().findings["cardiomegaly"])  # merging won't count them twice
    # a class the fusion does not cover keeps the classifier's own word
    assert fusion.fuse(_cnn(), _anatomy(0.62)).findings["pneumonia"] == _cnn().findings["pneumonia"]


def test_a_missing_measurement_takes_the_training_median() -> None:
    fusion = FusionModel.from_dict(_stamp())
    missing = fusion.fuse(_cnn(), _anatomy(None)).findings["cardiomegaly"]
    at_median = fusion.fuse(_cnn(), _anatomy(0.48)).findings["cardiomegaly"]
    assert missing.probability == pytest.approx(at_median.probability)


def test_a_fused_class_read_poorly_stays_possible() -> None:
    fusion = FusionModel.from_dict(_stamp(classes={"cardiomegaly": {**_stamp()["classes"]["cardiomegaly"],  # type: ignore[index]
                                                                    "auc": 0.65}}))
    read = fusion.fuse(_cnn(), _anatomy(0.7)).findings["cardiomegaly"]
    assert read.status == "uncertain" and "at most 'possible'" in read.evidence


def test_nothing_is_fused_without_the_anatomy_reading() -> None:
    fusion = FusionModel.from_dict(_stamp())
    readings = [_cnn()]
    assert fuse_readings(readings, fusion) == readings
    assert fuse_readings([_anatomy(0.7), _cnn()], None)[1] == _cnn()


@pytest.mark.parametrize("broken", [{"classes": {"cardiomegaly": {"coef": [1.0]}}}, {"features": None},
                                    {"classes": {"cardiomegaly": {**_stamp()["classes"]["cardiomegaly"],  # type: ignore[index]
                                                                  "coef": [1.0, 2.0, 3.0]}}}])
def test_a_malformed_stamp_says_how_to_refit(broken: dict[str, object], tmp_path: Path) -> None:
    path = tmp_path / "medrag-fusion.json"
    path.write_text(json.dumps(_stamp(**broken)), encoding="utf-8")
    with pytest.raises(ConfigError, match="python -m medrag.training.fusion_fit"):
        FusionModel.load(path)
    path.write_text("{not json", encoding="utf-8")
    with pytest.raises(ConfigError, match="python -m medrag.training.fusion_fit"):
        FusionModel.load(path)


def test_the_features_come_from_the_anatomy_reading() -> None:
    features = anatomy_features(_anatomy(0.55))
    assert features["ctr"] == 0.55 and features["view AP"] == 0.0 and features["devices"] == 0.0
    assert (features["opacity map max"], features["opacity map mean"]) == (3.0, 2.0)
    assert features["opacity map share over 2 SD"] == 0.5
    assert feature_text("left costophrenic recess z", 2.14) == "left costophrenic recess +2.1 SD against normal films"
    # every measurement the stamp fuses reads as words, never as the reader's key
    fusion = FusionModel.load()
    for name in fusion.features:
        text = feature_text(name, 1.0)
        assert "_" not in text and "asymmetry " not in text, text
    assert feature_text("cp_angle_right", 76.64) == "right costophrenic angle 77°"
    assert feature_text("right costophrenic angle", 101.2) == "right costophrenic angle 101°"
    assert feature_text("cp_blunted_left", 1.0) == "left costophrenic angle blunted"
    assert feature_text("hemithorax_asymmetry", 0.33) == "the left hemithorax more opaque (0.33 image SD)"
    assert feature_text("asymmetry opacity_difference", -0.33) == feature_text("hemithorax_asymmetry", 0.33)
    assert feature_text("view AP", 1.0) == "an AP view"


def test_the_fit_fuses_only_a_class_the_measurements_read_on_the_training_patients() -> None:
    from medrag.reading.cnn import CLASSES
    from medrag.training.cnn_data import Film
    from medrag.training.fusion_fit import fit

    rng = np.random.default_rng(0)
    j = CLASSES.index("cardiomegaly")
    films, features, probabilities = [], [], []
    for i in range(400):
        labels = [int(v) for v in rng.random(len(CLASSES)) < 0.25]
        ctr = 0.45 + 0.1 * labels[j] + rng.normal(0, 0.04)  # the ratio tells cardiomegaly, nothing else
        films.append(Film(f"f{i}.png", Path(f"f{i}.png"), f"p{i // 2}", tuple(labels), ()))
        features.append({"ctr": ctr, "noise": float(rng.normal()), "left costophrenic recess z": math.nan})
        probabilities.append(np.clip(0.3 + 0.2 * np.array(labels) + rng.normal(0, 0.25, len(CLASSES)), 0.01, 0.99))
    trained = {f"p{k}" for k in range(140)}  # 280 training films, 120 held out
    stamp = fit(features, np.array(probabilities), films, trained, seed=0)
    assert list(stamp["classes"]) == ["cardiomegaly"]
    assert stamp["selection"]["out_of_fold_auc"]["cardiomegaly"] > 0.9
    gain = stamp["metrics"]["auc_gain"]["cardiomegaly"]
    assert gain["fused"] > gain["classifier"] and gain["difference_ci95"][0] > 0
    model = FusionModel.from_dict({**stamp, "cnn_weights_sha256": "x"})
    assert model.features == ("ctr", "left costophrenic recess z", "noise")
    assert math.isfinite(model.medians[1])  # never measured: a finite stand-in, not NaN


def test_the_shipped_fusion_matches_the_shipped_classifier() -> None:
    from medrag.reading.cnn import CnnReader
    from medrag.reading.cnn_reader import ACCEPTABLE_AUC

    stamp = json.loads(DEFAULT_FUSION.read_text(encoding="utf-8"))
    assert stamp["cnn_weights_sha256"] == CnnReader().identity
    assert stamp["data"]["sha256"] == CnnReader().meta["data"]["sha256"]
    chosen = {name for name, auc in stamp["selection"]["out_of_fold_auc"].items() if auc >= ACCEPTABLE_AUC}
    assert set(FusionModel.load().classes) == chosen


def test_a_fusion_fitted_on_other_weights_is_not_used(monkeypatch: pytest.MonkeyPatch) -> None:
    from medrag.reading import combine

    class Member:
        def __init__(self, name: str, sha: str = "") -> None:
            self.name, self.model = name, name
            self.cnn = type("Cnn", (), {"meta": {"weights_sha256": sha}})()

        def read(self, pixels: np.ndarray, *, view_hint: str | None = None) -> ImageReading:
            return ImageReading(readers=(self.name,))

    monkeypatch.setattr(combine, "default_fusion", lambda: FusionModel.from_dict(_stamp()))
    notes: list[str] = []
    assert combine._fusion_for([Member("anatomy"), Member("medrag-cnn", "abc")], notes) is not None
    assert combine._fusion_for([Member("medrag-cnn", "abc")], notes) is None and not notes
    assert combine._fusion_for([Member("anatomy"), Member("medrag-cnn", "other")], notes) is None
    assert "fitted on other medrag-cnn weights" in notes[0] and "fusion_fit" in notes[0]
