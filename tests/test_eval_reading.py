"""``medrag eval reading``'s arithmetic: AUC, F1, patient bootstrap, view accuracy, localisation, Dice."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from medrag.evaluation.reading import (
    LabelledImage,
    auc,
    bootstrap_ci,
    dice,
    evaluate_reading,
    f1,
    parse_boxes,
    parse_nih_labels,
)
from medrag.reading.base import FindingRead, ImageReading, Overlays


def test_auc_matches_the_pairwise_definition() -> None:
    rng = np.random.default_rng(3)
    y = rng.integers(0, 2, 60)
    s = np.round(rng.random(60), 1)  # ties on purpose
    pos, neg = s[y == 1], s[y == 0]
    pairwise = np.mean([1.0 if p > n else 0.5 if p == n else 0.0 for p in pos for n in neg])
    assert math.isclose(auc(y, s), pairwise, rel_tol=0, abs_tol=1e-12)
    assert math.isnan(auc([1, 1], [0.2, 0.3]))


def test_f1_and_dice() -> None:
    assert f1([1, 1, 0, 0], [1, 0, 1, 0]) == 0.5
    a = np.zeros((4, 4), bool)
    a[:2] = True
    b = np.zeros((4, 4), bool)
    b[1:3] = True
    assert dice(a, b) == 0.5 and dice(a, a) == 1.0


def test_nih_labels_and_boxes_parse() -> None:
    assert parse_nih_labels("Effusion|Infiltration|Hernia") == {"effusion", "opacity"}
    assert parse_boxes("Pneumonia:301,298,108,90|Infiltrate:1,2,3,4") == (
        ("pneumonia", 301.0, 298.0, 108.0, 90.0), ("opacity", 1.0, 2.0, 3.0, 4.0))


def test_bootstrap_resamples_patients_not_images() -> None:
    # Two patients with ten identical films each: a per-image bootstrap would be tight; by patient it spans both.
    groups = ["a"] * 10 + ["b"] * 10
    values = np.array([0.0] * 10 + [1.0] * 10)
    low, high = bootstrap_ci(groups, lambda ix: float(values[ix].mean()), rounds=300)
    assert low == 0.0 and high == 1.0


def _reading(p_effusion: float, view: str, peak: tuple[int, int] | None = None) -> ImageReading:
    heatmap = None
    if peak is not None:
        heatmap = np.zeros((8, 8), np.float32)
        heatmap[peak] = 1.0
    status = "present" if p_effusion >= 0.5 else "absent"
    return ImageReading(findings={"effusion": FindingRead("effusion", status, p_effusion)}, view=view,
                        overlays=Overlays(heatmap=heatmap, heatmap_finding="effusion"))


def test_evaluate_reading_scores_findings_views_and_boxes() -> None:
    items = [
        (LabelledImage("c1", "p1", frozenset({"effusion"}), "PA", (("effusion", 0, 0, 128, 128),), (256, 256)),
         _reading(0.9, "PA", peak=(1, 1))),
        (LabelledImage("c2", "p2", frozenset(), "AP"), _reading(0.2, "AP")),
        (LabelledImage("c3", "p3", frozenset({"effusion"}), "AP", (("effusion", 200, 200, 50, 50),), (256, 256)),
         _reading(0.6, "PA", peak=(1, 1))),
        (LabelledImage("c4", "p4", frozenset(), "PA"), _reading(0.7, "PA")),
    ]
    report = evaluate_reading(items, findings=("effusion",), rounds=50)
    assert report.per_finding["effusion"]["auc"] == 0.75
    assert math.isclose(report.per_finding["effusion"]["f1"], 0.8)
    assert report.view_accuracy == 0.75
    assert report.boxes == 2 and report.localisation == 0.5
    assert '"auc": 0.75' in report.to_json()


def _labelled_library(tmp_path: Path, films: int = 16) -> Path:
    """A data folder of phantom films labelled like NIH's (half effusion, half no finding, PA), one per patient."""
    import io

    from PIL import Image

    from medrag.config import Settings
    from medrag.phantoms import generate_phantom
    from medrag.workbench import Workbench

    incoming = tmp_path / "incoming"
    (incoming / "images").mkdir(parents=True)
    rows = ["image,label,dataset,patient_id,view,fine_label"]
    for i in range(films):
        effusion = i % 2 == 0
        pixels = generate_phantom(frozenset({"effusion"} if effusion else set()), seed=910_000 + i, size=192)
        buffer = io.BytesIO()
        Image.fromarray(np.round(np.clip(pixels, 0, 1) * 255).astype(np.uint8)).save(buffer, format="PNG")
        (incoming / "images" / f"nih_{i:04d}_000.png").write_bytes(buffer.getvalue())
        label, fine = ("effusion", "Effusion") if effusion else ("normal", "No Finding")
        rows.append(f"images/nih_{i:04d}_000.png,{label},nih,nih_p{i},PA,{fine}")
    (incoming / "labels.csv").write_text("\n".join(rows) + "\n")
    data = tmp_path / "data"
    Workbench(Settings(data_dir=data, web_provider="off")).ingest(incoming,
                                                                               labels_csv=incoming / "labels.csv")
    return data


def test_cli_eval_reading_prints_saves_and_feeds_the_quality_section(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from medrag.cli import main
    from medrag.evaluation.quality import READING, library_eval, library_rows, model_quality

    data = _labelled_library(tmp_path)
    out = tmp_path / "reading.json"
    assert main(["--data-dir", str(data), "eval", "reading", "--rounds", "20", "--json", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "16 films of 16 patients" in printed and "effusion" in printed
    report = json.loads(out.read_text())
    assert report["per_finding"]["effusion"]["positives"] == 8
    assert 0.0 <= report["per_finding"]["effusion"]["auc"] <= 1.0
    saved = library_eval(data)  # kept in the data folder for the Settings page
    assert saved is not None and saved["command"].startswith("medrag eval reading --rounds 20")
    assert saved["report"]["images"] == 16
    rows = {(r.model, r.measure): r for r in library_rows(saved)}
    assert rows[(READING, "AUC effusion")].target == 0.80 and rows[(READING, "macro F1")].target == 0.45
    assert not any(model == "medrag-cnn" for model, _ in rows)  # the whole reading is scored, not the classifier
    # The shipped models' own held-out figures, beside the targets.
    shipped = {(r.model, r.measure): r for r in model_quality()}
    lung = shipped[("segmenter", "lung Dice, real films")]
    assert lung.value is not None and lung.ci95 is not None and lung.ci95[0] <= lung.value <= lung.ci95[1]
    assert lung.met is (lung.value >= 0.92)
    assert ("medrag-cnn", "macro AUC") in shipped and ("view", "PA/AP accuracy, NIH films") in shipped
    fused = shipped[("medrag-cnn + anatomy", "AUC cardiomegaly")]  # the classifier with the measurements
    assert fused.target == 0.80 and fused.ci95 is not None and fused.ci95[0] <= (fused.value or 0) <= fused.ci95[1]
    assert ("medrag-cnn + anatomy", "macro F1") in shipped


def test_quality_without_metadata_or_eval_is_empty_not_an_error(tmp_path: Path) -> None:
    from medrag.evaluation.quality import library_eval, model_quality

    assert model_quality(tmp_path) == []
    assert library_eval(tmp_path) is None
    (tmp_path / "eval").mkdir()
    (tmp_path / "eval" / "reading.json").write_text("{not json")
    assert library_eval(tmp_path) is None


def test_both_shared_label_layouts_give_labelled_films() -> None:
    """cxr-real names its columns fine_label / bbox_xywh_in_output_px, nih-train finding_labels / bbox."""
    from medrag.evaluation.reading_run import labelled_cases
    from medrag.records import Case

    real = Case("r1", "pneumonia", "cxr-real", "/x/r1.png", "", patient_id="nih_1", view="AP",
                extra={"fine_label": "Pneumonia|Effusion", "bbox_xywh_in_output_px": "Pneumonia:10,20,30,40",
                       "width": 512, "height": 512})
    nih = Case("n1", "", "nih-train", "/x/n1.jpg", "", patient_id="nih_2", view="PA",
               extra={"finding_labels": "Cardiomegaly", "bbox": "Cardiomegaly:96,108,143,113"})
    unlabelled = Case("u1", "normal", "other", "/x/u1.png", "", patient_id="p9", extra={"label": "normal"})
    trained = Case("t1", "", "nih-train", "/x/t1.jpg", "", patient_id="nih_3", extra={"finding_labels": "Edema"})
    got = {case.case_id: label for case, label in labelled_cases([real, nih, unlabelled, trained], {"nih_3"})}
    assert set(got) == {"r1", "n1"}
    assert got["r1"].findings == frozenset({"pneumonia", "effusion"}) and got["r1"].size == (512, 512)
    assert got["r1"].boxes == (("pneumonia", 10.0, 20.0, 30.0, 40.0),)
    assert got["n1"].findings == frozenset({"cardiomegaly"})
    assert got["n1"].boxes == (("cardiomegaly", 96.0, 108.0, 143.0, 113.0),)
    assert got["n1"].size == (0, 0)  # filled from the decoded image when it is read


def test_quality_table_never_rounds_a_miss_into_a_met_figure() -> None:
    from medrag.evaluation.quality import QualityRow
    from medrag.ui.tables import quality_frame

    rows = [QualityRow("medrag-cnn", "macro F1", 0.449857, None, 0.45, "held-out"),
            QualityRow("medrag-cnn", "macro AUC", 0.6929, (0.65, 0.73), 0.75, "held-out"),
            QualityRow("segmenter", "lung Dice", 0.95, None, None, "held-out")]
    frame = quality_frame(rows)
    assert list(frame["value"]) == ["0.4499", "0.693", "0.950"]
    assert list(frame["met"]) == ["no", "no", ""]


def test_cli_eval_reading_cross_fit_refits_on_patient_halves_and_feeds_the_quality_section(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from medrag.cli import main
    from medrag.evaluation.quality import READING, library_eval, library_rows

    data = _labelled_library(tmp_path)
    out = tmp_path / "reading.json"
    assert main(["--data-dir", str(data), "eval", "reading", "--rounds", "20", "--cross-fit", "2",
                 "--json", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "Cross-fitted (2 halvings of 16 patients)" in printed and "cross-fitted macro F1: mean" in printed
    crossed = json.loads(out.read_text())["cross_fit"]
    assert crossed["films"] == 16 and crossed["halvings"] == 2 and len(crossed["rows"]) == 3
    assert crossed["rows"][0]["fit"].startswith("every film") and "seed 1" in crossed["rows"][2]["fit"]
    halves = [row["macro_f1"] for row in crossed["rows"][1:]]
    assert math.isclose(crossed["macro_f1_mean"], sum(halves) / 2, rel_tol=1e-9)
    assert all(row["normal_margins"] and len(row["normal_margins"]) == (1 if i == 0 else 2)
               for i, row in enumerate(crossed["rows"]))  # one margin chosen per fitting set
    saved = library_eval(data)
    assert saved is not None and "--cross-fit 2" in saved["command"]
    rows = {(r.model, r.measure): r for r in library_rows(saved)}
    assert rows[(READING, "macro F1, cross-fitted")].target == 0.45
    assert rows[(READING, "F1 no finding, cross-fitted")].target == 0.80
    # Bad input gets a clear error, and the saved eval stays as it was.
    assert main(["--data-dir", str(data), "eval", "reading", "--cross-fit", "-1"]) != 0
    assert "--cross-fit takes the number of halvings" in capsys.readouterr().err
    assert library_eval(data) == saved


def test_cross_fit_refuses_too_few_patients_and_readers_it_cannot_refit() -> None:
    from medrag.errors import ConfigError
    from medrag.evaluation.reading_crossfit import CrossFitFilm, cross_fit, readers_for_cross_fit

    label = LabelledImage("c1", "p1", frozenset({"effusion"}), "PA", (), (64, 64))
    films = [CrossFitFilm(label, ImageReading(), (64, 64), {"effusion": 0.0}, {"effusion": 0.5})] * 3
    with pytest.raises(ConfigError, match="at least 4 patients"):
        cross_fit(films, {}, None)

    class Anatomy:
        name = "anatomy"

    with pytest.raises(ConfigError, match="MEDRAG_READERS=anatomy,medrag-cnn"):
        readers_for_cross_fit([Anatomy()])
