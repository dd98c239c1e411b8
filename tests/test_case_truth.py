"""A library case's own labels (NIH's, in both shared layouts, or a phantom's drawn findings) and how an analysis'
findings table compares with them; the label an NIH-style labels CSV gives at import."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from medrag.case_truth import (
    box_text,
    case_truth,
    compare_findings,
    fine_label_text,
    label_from_nih,
    summary,
)
from medrag.casenames import case_title, fine_label
from medrag.config import Settings
from medrag.library import ingest_path
from medrag.records import Case
from medrag.teaching.annotations import nih_annotations
from medrag.teaching.regions import is_locatable, nih_regions
from pgsuite import folder_store


def _case(label: str = "", extra: dict | None = None, synthetic: bool = False) -> Case:
    return Case("c1", label, "nih", "/x/c1.png", "", patient_id="nih_1", synthetic=synthetic, extra=extra or {})


def test_a_label_made_from_nih_finding_labels() -> None:
    assert label_from_nih("No Finding") == "normal"
    assert label_from_nih("Effusion|Infiltration|Pleural_Thickening") == "effusion + infiltration + pleural thickening"
    assert label_from_nih(" | ") == label_from_nih("") == ""


def test_both_shared_layouts_give_the_same_labels_and_boxes() -> None:
    real = {"fine_label": "Pneumonia", "bbox_xywh_in_output_px": "Pneumonia:10,20,30,40"}
    train = {"finding_labels": "Pneumonia", "bbox": "Pneumonia:10,20,30,40"}
    assert fine_label_text(real) == fine_label_text(train) == "Pneumonia"
    assert box_text(real) == box_text(train) == "Pneumonia:10,20,30,40"
    assert fine_label_text(None) == box_text({"bbox": "  "}) == ""
    # The quiz's "where is it?" regions and the lesson annotations read nih-train's key too.
    for extra in (real, train):
        case = _case("pneumonia", extra)
        assert is_locatable(case)
        region = nih_regions(case)[0]
        assert (region.x0, region.y0, region.x1, region.y1) == (10, 20, 40, 60)
        assert nih_annotations(case)[0].label == "Pneumonia (NIH expert box)"


def test_a_title_does_not_repeat_a_label_made_from_the_fine_labels() -> None:
    made = _case("effusion + infiltration", {"finding_labels": "Effusion|Infiltration"})
    assert fine_label(made) == ""
    assert case_title(made).count("ffusion") == 1
    coarse = _case("pneumonia", {"finding_labels": "Infiltration|Pneumonia"})
    assert fine_label(coarse) == "Infiltration, Pneumonia"


def test_nih_truth_maps_to_medrag_findings_and_keeps_the_rest_aside() -> None:
    truth = case_truth(_case("x", {"finding_labels": "Effusion|Infiltration|Hernia", "bbox": "Effusion:1,2,3,4"}))
    assert truth is not None and truth.source == "nih"
    assert truth.findings == {"effusion", "opacity"}
    assert truth.other == ("Hernia",)
    assert truth.boxes == 1
    assert "no finding" in truth.scored and "support devices" not in truth.scored  # NIH never labels devices
    normal = case_truth(_case("normal", {"fine_label": "No Finding"}))
    assert normal is not None and normal.findings == {"no finding"}


def test_phantom_truth_and_a_case_without_any() -> None:
    drawn = case_truth(_case("effusion + edema", {"findings": "effusion|edema"}, synthetic=True))
    assert drawn is not None and drawn.source == "phantom" and drawn.findings == {"effusion", "edema"}
    blank = case_truth(_case("normal", {"findings": ""}, synthetic=True))
    assert blank is not None and blank.findings == {"no finding"}
    assert case_truth(_case("pneumonia", {"source_file": "pneumonia/a.png"})) is None  # a folder name is no truth
    assert case_truth(None) is None


def test_each_verdict_and_the_order_of_the_rows() -> None:
    truth = case_truth(_case("x", {"finding_labels": "Effusion|Atelectasis|Edema"}))
    assert truth is not None
    findings = {"effusion": "present", "atelectasis": "uncertain", "edema": "absent", "cardiomegaly": "present",
                "pneumonia": "uncertain", "no finding": "absent"}
    rows = compare_findings(truth, findings)
    verdicts = {row.finding: row.verdict for row in rows}
    assert verdicts["effusion"] == "found"
    assert verdicts["atelectasis"] == "called possible"
    assert verdicts["edema"] == "missed"
    assert verdicts["cardiomegaly"] == "over-called"
    assert verdicts["pneumonia"] == "possible, not in the labels"
    assert verdicts["no finding"] == verdicts["pneumothorax"] == "agrees"
    assert next(r for r in rows if r.finding == "pneumothorax").status == "not mentioned"  # not in the table
    first_agree = [r.verdict for r in rows].index("agrees")
    assert all(r.verdict == "agrees" for r in rows[first_agree:])  # what needs a look comes first
    line = summary(rows)
    assert line.startswith(f"agrees on {len(rows) - 4} of {len(rows)} findings")
    assert "missed: edema" in line and "over-called: cardiomegaly" in line
    assert "possible: atelectasis, pneumonia" in line


def test_an_nih_style_labels_csv_labels_its_cases_by_their_findings(tmp_path: Path) -> None:
    """nih-train's labels.csv has no label column: the cases were all labelled "images" (their folder)."""
    folder = tmp_path / "nih"
    (folder / "images").mkdir(parents=True)
    rng = np.random.default_rng(0)
    rows = ["image,finding_labels,patient_id,view,bbox"]
    for i, finding in enumerate(("No Finding", "Effusion|Infiltration", "Pneumonia")):
        Image.fromarray(rng.integers(0, 255, (64, 64), dtype=np.uint8)).save(folder / "images" / f"{i}.png")
        box = '"Pneumonia:5,6,7,8"' if finding == "Pneumonia" else ""
        rows.append(f"images/{i}.png,{finding},nih_{i},PA,{box}")
    (folder / "labels.csv").write_text("\n".join(rows) + "\n", encoding="utf-8")
    settings = Settings(data_dir=tmp_path / "data", image_encoder="classic")
    store = folder_store(settings.data_dir)
    report = ingest_path(folder, settings, store, labels_csv=folder / "labels.csv")
    assert report.added == 3, report.errors
    assert store.label_counts() == {"normal": 1, "effusion + infiltration": 1, "pneumonia": 1}
    boxed = next(iter(store.get_cases(sorted(store.case_ids_where(label="pneumonia"))).values()))
    assert is_locatable(boxed) and case_truth(boxed) is not None
    # Any of several labels (the Library's "any with <finding>" filter), on either store.
    assert sorted(store.cases_frame(labels=["normal", "pneumonia"])["label"]) == ["normal", "pneumonia"]
    assert store.cases_frame(labels=[]).empty

    # A label column, where there is one, still wins.
    (folder / "labels.csv").write_text("image,label,finding_labels\nimages/0.png,my label,Effusion\n", encoding="utf-8")
    other = Settings(data_dir=tmp_path / "data2", image_encoder="classic")
    other_store = folder_store(other.data_dir)
    ingest_path(folder, other, other_store, labels_csv=folder / "labels.csv")
    assert other_store.label_counts() == {"my label": 1}


def test_the_readers_training_patients_are_the_union_of_their_members() -> None:
    from medrag.reading.combine import CombinedReader

    class Trained:
        name = "trained"

        def trained_patients(self) -> set[str]:
            return {"nih_1", "nih_2"}

    class Untrained:
        name = "untrained"

    assert CombinedReader([Trained(), Untrained()]).trained_patients() == {"nih_1", "nih_2"}  # type: ignore[list-item]
    assert CombinedReader([]).trained_patients() == set()


def _panel_app(trained_on: bool) -> None:
    from medrag.analysis import Analysis
    from medrag.records import Case
    from medrag.ui.truth_panel import render_case_truth

    case = Case("c1", "pneumonia", "nih", "/x.png", "", patient_id="nih_1",
                extra={"finding_labels": "Pneumonia|Hernia", "bbox": "Pneumonia:1,2,3,4"})
    render_case_truth(case, Analysis(findings={"pneumonia": "absent", "effusion": "present"}), trained_on=trained_on)
    render_case_truth(Case("c2", "pneumonia", "folder", "/y.png", ""), Analysis(findings={"pneumonia": "present"}))


def test_the_panel_names_what_was_missed_and_warns_when_the_reader_trained_on_the_patient() -> None:
    from streamlit.testing.v1 import AppTest

    for trained_on in (False, True):
        at = AppTest.from_function(_panel_app, kwargs={"trained_on": trained_on}).run()
        assert not at.exception, [e.value for e in at.exception]
        assert len(at.expander) == 1  # the case with no source labels gets no panel
        panel = at.expander[0]
        line = panel.markdown[0].value.replace("\\", "")
        assert "missed: pneumonia" in line and "over-called: effusion" in line
        frame = panel.dataframe[0].value
        assert list(frame.iloc[0]) == ["effusion", "—", "present", "✗ over-called"]
        assert list(frame.iloc[1]) == ["pneumonia", "yes", "absent", "✗ missed"]
        caption = panel.caption[0].value
        assert "Hernia" in caption and "Expert boxes" in caption
        assert bool(panel.warning) is trained_on


def test_importing_the_csv_again_relabels_the_cases_an_earlier_import_named_after_their_folder(tmp_path: Path) -> None:
    """An NIH library imported before the Finding Labels were read is all "images": importing the same folder
    and CSV again puts the findings on it, and leaves every case labelled otherwise alone."""
    folder = tmp_path / "nih"
    (folder / "images").mkdir(parents=True)
    rng = np.random.default_rng(1)
    for i in range(3):
        Image.fromarray(rng.integers(0, 255, (64, 64), dtype=np.uint8)).save(folder / "images" / f"{i}.png")
    settings = Settings(data_dir=tmp_path / "data", image_encoder="classic")
    store = folder_store(settings.data_dir)
    # As an earlier import stored them: the folder's name for two, a hand-given label for the third.
    (folder / "old.csv").write_text("image,patient_id\nimages/0.png,nih_0\nimages/1.png,nih_1\n", encoding="utf-8")
    ingest_path(folder, settings, store, labels_csv=folder / "old.csv")
    (folder / "own.csv").write_text("image,label\nimages/2.png,my own label\n", encoding="utf-8")
    ingest_path(folder, settings, store, labels_csv=folder / "own.csv")
    assert store.label_counts() == {"images": 2, "my own label": 1}

    (folder / "labels.csv").write_text(
        "image,finding_labels,patient_id\nimages/0.png,No Finding,nih_0\nimages/1.png,Effusion|Edema,nih_1\n"
        "images/2.png,Pneumonia,nih_2\n", encoding="utf-8")
    report = ingest_path(folder, settings, store, labels_csv=folder / "labels.csv")
    assert report.relabelled == 2 and report.added == 0
    assert "2 relabelled from the CSV" in report.summary()
    assert store.label_counts() == {"normal": 1, "effusion + edema": 1, "my own label": 1}
    again = ingest_path(folder, settings, store, labels_csv=folder / "labels.csv")
    assert again.relabelled == 0 and "relabelled" not in again.summary()


def test_many_analyses_add_up_per_finding() -> None:
    from medrag.case_truth import agreement

    effusion = case_truth(_case("x", {"finding_labels": "Effusion"}))
    normal = case_truth(_case("x", {"finding_labels": "No Finding"}))
    assert effusion is not None and normal is not None
    comparisons = [
        compare_findings(effusion, {"effusion": "present", "no finding": "absent"}),
        compare_findings(effusion, {"effusion": "uncertain"}),
        compare_findings(effusion, {"effusion": "absent", "cardiomegaly": "present"}),
        compare_findings(normal, {"no finding": "present", "effusion": "uncertain"}),
    ]
    rows = {a.finding: a for a in agreement(comparisons)}
    assert set(rows) == {"no finding", "cardiomegaly", "effusion"}  # nothing labelled or called is left out
    e = rows["effusion"]
    assert (e.labelled, e.found, e.possible, e.missed, e.possible_unlabelled) == (3, 1, 1, 1, 1)
    assert e.sensitivity == 2 / 3 and e.precision == 2 / 3
    c = rows["cardiomegaly"]
    assert c.labelled == 0 and c.over_called == 1 and c.precision == 0.0 and c.sensitivity != c.sensitivity  # NaN
    assert rows["no finding"].labelled == 1 and rows["no finding"].found == 1
    assert [a.finding for a in agreement(comparisons)] == ["no finding", "cardiomegaly", "effusion"]
