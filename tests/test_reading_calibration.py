"""A library's own calibration (``medrag eval reading --write-calibration``): fitted, measured, used, removed."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from medrag.errors import ConfigError
from medrag.reading.calibration import (
    ClassCalibration,
    LibraryCalibration,
    RecalibratedCnn,
    calibration_path,
    load_calibration,
    save_calibration,
)
from medrag.reading.cnn import CnnOutput


class _Cnn:
    """The parts of CnnReader the calibration wraps: a fixed forward pass."""

    meta = {"weights_sha256": "abc", "thresholds": {"effusion": 0.2, "edema": 0.3, "no finding": 0.4}}
    thresholds = {"effusion": 0.2, "edema": 0.3, "no finding": 0.4}

    def forward(self, pixels: np.ndarray, box: object = None) -> CnnOutput:
        return CnnOutput(logits={"effusion": 1.0, "edema": -2.0, "no finding": 0.5},
                         probabilities={"effusion": 0.6, "edema": 0.1, "no finding": 0.55}, features=None)

    def heatmap(self, pixels: np.ndarray, name: str, box: object = None) -> np.ndarray:
        return np.full(pixels.shape, 0.25, np.float32)


def _calibration(**changes: object) -> LibraryCalibration:
    base = LibraryCalibration("abc", {"effusion": ClassCalibration(2.0, -1.0, 0.7),
                                      "edema": ClassCalibration(1.0, 0.0, 0.05)},
                              {"edema": ClassCalibration(0.5, 0.1, 0.33)}, 1.5, 40, 38, "2026-12-04 19:00 UTC",
                              {"shipped_macro_f1": 0.25, "library_macro_f1": 0.31})
    return LibraryCalibration(**{**base.__dict__, **changes})  # type: ignore[arg-type]


def test_a_recalibrated_classifier_reads_its_refitted_classes_from_their_logits_and_keeps_the_rest() -> None:
    wrapped = RecalibratedCnn(_Cnn(), _calibration(), keep=frozenset({"edema"}))
    out = wrapped.forward(np.zeros((8, 8)))
    # effusion: sigmoid(2 * 1.0 - 1.0); edema is fused (kept as shipped); no finding was not refitted.
    assert math.isclose(out.probabilities["effusion"], 1 / (1 + math.exp(-1.0)), rel_tol=1e-12)
    assert out.probabilities["edema"] == 0.1 and out.probabilities["no finding"] == 0.55
    assert wrapped.thresholds == {"effusion": 0.7, "edema": 0.3, "no finding": 0.4}
    assert out.logits == _Cnn().forward(np.zeros((1, 1))).logits  # the ranking is the network's
    assert float(wrapped.heatmap(np.zeros((4, 4)), "effusion").max()) == 0.25
    assert wrapped.meta["weights_sha256"] == "abc"


def test_a_calibration_round_trips_and_a_damaged_file_says_how_to_fix_it(tmp_path: Path) -> None:
    assert load_calibration(tmp_path) is None
    written = save_calibration(tmp_path, _calibration())
    assert written == calibration_path(tmp_path) and load_calibration(tmp_path) == _calibration()
    data = json.loads(written.read_text())
    data["classes"]["effusion"]["a"] = "NaN"
    written.write_text(json.dumps(data))
    with pytest.raises(ConfigError, match="--write-calibration"):
        load_calibration(tmp_path)
    written.write_text("{not json")
    with pytest.raises(ConfigError, match="--remove-calibration"):
        load_calibration(tmp_path)


def test_build_readers_uses_the_librarys_calibration_only_for_the_weights_it_was_fitted_on(tmp_path: Path) -> None:
    from medrag.config import Settings
    from medrag.reading.cnn import CnnReader
    from medrag.reading.combine import build_readers

    settings = Settings(data_dir=tmp_path, web_provider="off")
    shipped = build_readers(settings)
    assert shipped.normal_margin is None and not any("calibrated" in n for n in shipped.notes)
    sha = CnnReader().identity
    save_calibration(tmp_path, _calibration(cnn_weights_sha256=sha))
    calibrated = build_readers(settings)
    cnn = next(m for m in calibrated.members if m.name == "medrag-cnn")
    assert isinstance(cnn.cnn, RecalibratedCnn) and calibrated.normal_margin == 1.5
    assert any("calibrated to this library" in n and "40 labelled films" in n for n in calibrated.notes)
    assert calibrated.fusion is not None and calibrated.fusion.classes["edema"].threshold == 0.33
    assert build_readers(settings, library_calibration=False).normal_margin is None
    save_calibration(tmp_path, _calibration(cnn_weights_sha256="other weights"))
    stale = build_readers(settings)
    assert stale.normal_margin is None and any("fitted for other medrag-cnn weights" in n for n in stale.notes)


def test_cli_writes_a_measured_calibration_that_the_librarys_analyses_then_use_and_removes_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from medrag.cli import main
    from medrag.config import Settings
    from medrag.pipeline import run_analysis
    from medrag.workbench import Workbench
    from test_eval_reading import _labelled_library

    data = _labelled_library(tmp_path, films=24)
    out = tmp_path / "reading.json"
    assert main(["--data-dir", str(data), "eval", "reading", "--rounds", "10", "--write-calibration",
                 "--json", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "cross-fitted over 3 halvings" in printed and "with the shipped numbers on the same films" in printed
    written = json.loads(out.read_text())["calibration"]
    assert written["films"] == 24 and written["figures"]["halvings"] == 3
    # 12 effusion and 12 normal films: both refit; the rarer classes (no positives) keep the shipped numbers.
    assert written["figures"]["refitted_classes"] == ["effusion", "no finding"]
    assert set(written["classes"]) == {"effusion", "no finding"}
    per_class = written["figures"]["per_class"]
    assert per_class["effusion"]["positives"] == per_class["no finding"]["positives"] == 12
    assert per_class["edema"] == {"positives": 0, "f1_library": per_class["edema"]["f1_library"]}  # no shipped F1
    for name in ("effusion", "no finding"):  # both F1s, the shipped one from the eval of these same films
        assert 0.0 <= per_class[name]["f1_shipped"] <= 1.0 and 0.0 <= per_class[name]["f1_library"] <= 1.0
    assert load_calibration(data) is not None

    wb = Workbench(Settings(data_dir=data, web_provider="off"))
    image = next(iter(wb.store.get_cases(list(wb.store.cases_frame()["case_id"])).values())).image_path
    analysis = run_analysis(wb, Path(image), web=False, save=False)
    assert analysis.reading is not None
    assert any("calibrated to this library" in n for n in analysis.reading.notes)
    # The library's own eval still scores the shipped numbers, and says the analyses read otherwise.
    assert main(["--data-dir", str(data), "eval", "reading", "--rounds", "10"]) == 0
    assert "This library's analyses read with its own calibration (24 films" in capsys.readouterr().out

    assert main(["--data-dir", str(data), "eval", "reading", "--calibration", "off"]) == 0
    assert "now read with the shipped calibration; its own is kept" in capsys.readouterr().out
    assert not load_calibration(data).active  # type: ignore[union-attr]
    assert main(["--data-dir", str(data), "eval", "reading", "--rounds", "10"]) == 0
    assert "switched off" in capsys.readouterr().out
    assert main(["--data-dir", str(data), "eval", "reading", "--calibration", "on"]) == 0
    assert "now read with its own calibration (fitted on its 24 labelled films" in capsys.readouterr().out

    assert main(["--data-dir", str(data), "eval", "reading", "--remove-calibration"]) == 0
    assert "read with the shipped calibration again" in capsys.readouterr().out
    assert main(["--data-dir", str(data), "eval", "reading", "--calibration", "on"]) == 2
    assert "no calibration of its own to switch on" in capsys.readouterr().err
    assert load_calibration(data) is None
    assert main(["--data-dir", str(data), "eval", "reading", "--remove-calibration"]) == 0
    assert "already read with the shipped one" in capsys.readouterr().out


def test_a_refit_leaves_the_classes_outside_the_well_sampled_set_at_their_shipped_numbers() -> None:
    from medrag.evaluation.reading import LabelledImage
    from medrag.evaluation.reading_crossfit import CrossFitFilm, refit, well_sampled
    from medrag.reading.base import ImageReading

    meta = {"calibration": {"a": {"effusion": 1.0, "edema": 0.8}, "b": {"effusion": 0.0, "edema": -0.2}},
            "thresholds": {"effusion": 0.3, "edema": 0.25}}
    films = []
    for i in range(12):
        findings = frozenset({"effusion"} if i < 6 else set()) | ({"edema"} if i == 0 else set())
        label = LabelledImage(f"c{i}", f"p{i}", findings, "PA", (), (64, 64))
        logits = {"effusion": 2.0 if i < 6 else -2.0, "edema": 0.1 * i}
        films.append(CrossFitFilm(label, ImageReading(), (64, 64), logits, {"effusion": 0.5, "edema": 0.5}))
    assert well_sampled(films, 5) == frozenset({"effusion"}) and well_sampled(films, 1) == {"effusion", "edema"}
    numbers = refit(films, meta, np.ones(12, dtype=bool), None, well_sampled(films, 5))
    assert numbers.classes["edema"] == ClassCalibration(0.8, -0.2, 0.25)  # one positive: shipped numbers kept
    effusion = numbers.classes["effusion"]
    assert effusion != ClassCalibration(1.0, 0.0, 0.3)  # refitted on these films, which it separates perfectly
    assert effusion.probability(2.0) > effusion.threshold > effusion.probability(-2.0)


def test_the_settings_table_sets_each_class_beside_the_shipped_numbers(tmp_path: Path) -> None:
    from medrag.evaluation.calibration_view import calibration_rows

    weights = tmp_path / "weights"
    weights.mkdir()
    (weights / "medrag-cnn.json").write_text(json.dumps({
        "classes": ["no finding", "effusion", "edema", "cardiomegaly"],
        "thresholds": {"no finding": 0.4, "effusion": 0.2, "edema": 0.3, "cardiomegaly": 0.06}}))
    (weights / "medrag-fusion.json").write_text(json.dumps({"classes": {"edema": {"threshold": 0.25}}}))
    figures = {"min_positives": 10, "per_class": {
        "no finding": {"positives": 3}, "effusion": {"positives": 30, "f1_shipped": 0.2, "f1_library": 0.41},
        "edema": {"positives": 12, "f1_shipped": 0.1, "f1_library": 0.3}, "cardiomegaly": {"positives": 2}}}
    rows = {r.finding: r for r in calibration_rows(_calibration(figures=figures), weights)}
    assert list(rows) == ["no finding", "effusion", "edema", "cardiomegaly"]  # the classifier's order
    effusion, edema, normal = rows["effusion"], rows["edema"], rows["no finding"]
    assert effusion.refitted and effusion.fitted_here == "yes"
    assert (effusion.shipped_threshold, effusion.library_threshold) == (0.2, 0.7)
    assert (effusion.f1_shipped, effusion.f1_library, effusion.positives) == (0.2, 0.41, 30)
    # A fused class's threshold is the fused probability's, shipped and refitted.
    assert edema.fused and (edema.shipped_threshold, edema.library_threshold) == (0.25, 0.33)
    assert edema.fitted_here == "yes, on the fused score"
    assert not normal.refitted and normal.fitted_here == "no: 3 positives, fewer than 10"
    assert normal.library_threshold == normal.shipped_threshold == 0.4
    # A file written before the per-class figures were stored still shows its thresholds.
    old = {r.finding: r for r in calibration_rows(_calibration(), weights)}
    assert old["effusion"].positives is None and old["effusion"].library_threshold == 0.7
    assert old["no finding"].fitted_here == "no"


def test_a_calibration_switched_off_is_kept_and_the_analyses_read_with_the_shipped_numbers(tmp_path: Path) -> None:
    from medrag.config import Settings
    from medrag.reading.calibration import set_calibration_active
    from medrag.reading.cnn import CnnReader
    from medrag.reading.combine import build_readers

    with pytest.raises(ConfigError, match="--write-calibration"):
        set_calibration_active(tmp_path, False)
    settings = Settings(data_dir=tmp_path, web_provider="off")
    save_calibration(tmp_path, _calibration(cnn_weights_sha256=CnnReader().identity))
    assert build_readers(settings).normal_margin == 1.5
    off = set_calibration_active(tmp_path, False)
    assert not off.active and load_calibration(tmp_path) == off  # kept, with every number
    shipped = build_readers(settings)
    assert shipped.normal_margin is None and not any("calibrated to this library" in n for n in shipped.notes)
    assert set_calibration_active(tmp_path, True).active and build_readers(settings).normal_margin == 1.5
    data = json.loads(calibration_path(tmp_path).read_text())
    data["active"] = "no"
    calibration_path(tmp_path).write_text(json.dumps(data))
    with pytest.raises(ConfigError, match="cannot read"):
        load_calibration(tmp_path)
    del data["active"]  # a file written before the switch existed is in use
    calibration_path(tmp_path).write_text(json.dumps(data))
    assert load_calibration(tmp_path).active  # type: ignore[union-attr]


def test_a_running_workbench_picks_up_a_calibration_written_or_removed_beside_it(tmp_path: Path) -> None:
    from medrag.config import Settings
    from medrag.reading.calibration import remove_calibration
    from medrag.reading.cnn import CnnReader
    from medrag.workbench import Workbench

    wb = Workbench(Settings(data_dir=tmp_path, web_provider="off"))
    shipped = wb.backends.reader
    assert wb.backends.reader is shipped  # built once while nothing changes
    save_calibration(tmp_path, _calibration(cnn_weights_sha256=CnnReader().identity))
    calibrated = wb.backends.reader
    assert calibrated is not shipped and calibrated.normal_margin == 1.5
    assert wb.backends.reader is calibrated
    remove_calibration(tmp_path)
    assert wb.backends.reader.normal_margin is None


def test_the_eval_keeps_for_the_refits_what_reading_every_film_again_would_give(tmp_path: Path) -> None:
    """The refits used to read every film a second time (186 s of a Settings-page fit on 972 films, half of it
    the second read); the eval's own reads are now kept for them instead."""
    from medrag.config import Settings
    from medrag.evaluation.film_tap import FilmTap
    from medrag.evaluation.reading_crossfit import read_films, readers_for_cross_fit
    from medrag.evaluation.reading_run import evaluate_library, labelled_cases
    from medrag.reading.combine import build_readers
    from medrag.workbench import Workbench
    from test_eval_reading import _labelled_library

    data = _labelled_library(tmp_path, films=6)
    wb = Workbench(Settings(data_dir=data, web_provider="off"))
    cases = list(wb.store.get_cases(list(wb.store.cases_frame()["case_id"])).values())
    reader = build_readers(wb.settings, library_calibration=False)
    tap = FilmTap(reader)

    def read(pixels: np.ndarray, view: str | None) -> object:
        tap.start()
        return reader.read(pixels, view_hint=view)

    evaluate_library(cases, read, rounds=5, on_read=tap.keep)
    anatomy, cnn = readers_for_cross_fit(build_readers(wb.settings, library_calibration=False).members)
    again = read_films(labelled_cases(cases), anatomy, cnn)
    assert len(tap.films) == len(again) == 6 and tap.skipped == 0
    for kept, second in zip(tap.films, again, strict=True):
        assert kept.label == second.label and kept.size == second.size
        assert kept.anatomy.statuses() == second.anatomy.statuses()
        assert kept.anatomy.zones.keys() == second.anatomy.zones.keys()
        for name, p in second.probabilities.items():  # the same forward pass: equal to far below any threshold
            assert abs(kept.probabilities[name] - p) < 1e-6 and abs(kept.logits[name] - second.logits[name]) < 1e-4

    # A film a reader failed on leaves nothing behind, rather than the previous film's reading.
    tap.start()
    tap.keep(tap.films[0].label, tap.films[0].anatomy)
    assert tap.skipped == 1 and len(tap.films) == 6
