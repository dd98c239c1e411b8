"""Regression tests for the defects found in the teaching walk (#13) and for readable case names.

The app tests run on a mixed library: the synthetic demo phantoms plus 36 cases imported as real images
(phantom pixels under a labels CSV that says what the real images' CSV says: dataset, patient, sex, age,
view, fine label, no report), in labels normal / pneumonia / covid19. One test reads the real images in
../shared/data/cxr-real when they are there.
"""

from __future__ import annotations

import io
import re
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image
from streamlit.testing.v1 import AppTest

from medrag.casenames import SYNTHETIC_MARK, case_caption, case_title, is_synthetic, real_cases
from medrag.records import Case, Neighbour
from pgsuite import folder_store

REPO = Path(__file__).resolve().parents[1]
APP = str(REPO / "streamlit_app.py")
DEMO_CASES = 24
REAL_LABELS = ("normal", "pneumonia", "covid19")
PER_LABEL = 12
HASH = re.compile(r"\b[0-9a-f]{32,}\b")
MICROSECONDS = re.compile(r"\d{2}:\d{2}:\d{2}\.\d")


def _png(findings: frozenset[str], seed: int, size: int = 160) -> bytes:
    from medrag.phantoms import generate_phantom

    pixels = generate_phantom(findings, seed=seed, size=size)
    buffer = io.BytesIO()
    Image.fromarray(np.round(np.clip(pixels, 0, 1) * 255).astype(np.uint8)).save(buffer, format="PNG")
    return buffer.getvalue()


def _write_real_like(folder: Path) -> Path:
    """36 images and a labels CSV shaped like ../shared/data/cxr-real's (no reports, demographics in columns)."""
    paint = {"normal": frozenset(), "pneumonia": frozenset({"consolidation"}), "covid19": frozenset({"edema"})}
    rows = ["image,label,dataset,patient_id,view,sex,age,fine_label,population,synthetic"]
    for li, label in enumerate(REAL_LABELS):
        (folder / "images" / label).mkdir(parents=True, exist_ok=True)
        for i in range(PER_LABEL):
            name = f"images/{label}/nih_{li:02d}{i:04d}_000.png"
            (folder / name).write_bytes(_png(paint[label], seed=70_000 + 100 * li + i))
            fine = {"normal": "No Finding", "pneumonia": "Infiltration|Pneumonia", "covid19": "COVID-19"}[label]
            rows.append(f"{name},{label},nih,nih_{li}{i},{'PA' if i % 2 else 'AP'},{'MF'[i % 2]},{30 + i},{fine},"
                        f"adult,false")
    csv_path = folder / "labels.csv"
    csv_path.write_text("\n".join(rows) + "\n")
    return csv_path


@pytest.fixture(scope="module")
def mixed_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A data folder with the demo phantoms and 36 real-like cases (built once for this module)."""
    from medrag.config import Settings
    from medrag.workbench import Workbench

    folder = tmp_path_factory.mktemp("teaching-data")
    incoming = tmp_path_factory.mktemp("real-like")
    labels = _write_real_like(incoming)
    workbench = Workbench(Settings(data_dir=folder, demo_cases=DEMO_CASES, web_provider="off"))
    workbench.ensure_library()
    workbench.ingest(incoming, labels_csv=labels)
    del workbench
    return folder


@pytest.fixture()
def mixed(mixed_dir: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("MEDRAG_DATA_DIR", str(mixed_dir))
    monkeypatch.setenv("MEDRAG_DEMO_CASES", str(DEMO_CASES))
    monkeypatch.setenv("MEDRAG_WEB", "off")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    return mixed_dir


def _app(page: str, **state: object) -> AppTest:
    at = AppTest.from_file(APP, default_timeout=180)
    for key, value in state.items():
        at.session_state[key] = value
    at.switch_page(page).run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def _plain(text: str) -> str:
    return text.replace("\\", "")


def _texts(at: AppTest) -> list[str]:
    """Every piece of text on the page: markdown, captions, alerts, text, and the stage boxes' labels."""
    found: list[str] = []
    for group in (at.markdown, at.caption, at.info, at.warning, at.error, at.success, at.text, at.subheader):
        found += [_plain(str(e.value)) for e in group]
    found += [_plain(b.label) for b in [*at.status, *at.expander]]
    return found


def at_captions(at: AppTest) -> list[str]:
    return [_plain(c.value) for c in at.caption]


def _case_label(mixed: Path, case_id: str) -> str:

    case = folder_store(mixed).get_case(case_id)
    assert case is not None
    return case.label


# ---------------------------------------------------------------------------------------------- case names
def _nih_case(**changes: object) -> Case:
    base = dict(
        case_id="ab" * 32, label="pneumonia", dataset="nih", image_path="/x/images/pneumonia/nih_00001745_001.png",
        thumb_path="", report="", patient_id="nih_1745", view="PA", synthetic=False,
        extra={"fine_label": "Infiltration|Pneumonia", "sex": "M", "age": "53.0", "population": "adult (NIH)",
               "source_file": "images/pneumonia/nih_00001745_001.png"},
    )
    base.update(changes)
    return Case(**base)  # type: ignore[arg-type]


def test_case_title_names_file_label_dataset_patient_demographics_view_and_fine_label() -> None:
    title = case_title(_nih_case())
    assert title == "nih_00001745_001.png · pneumonia · nih · patient nih_1745 · M 53 y · PA · Infiltration, Pneumonia"
    assert not HASH.search(title)


def test_synthetic_cases_are_always_marked_and_filtered_out() -> None:
    phantom = _nih_case(dataset="synthetic", synthetic=True, patient_id="syn-0-1", extra={},
                        image_path="/d/demo/images/effusion/syn_0_00012.png", report="FINDINGS: effusion.")
    flagged_only = _nih_case(synthetic=True)
    assert case_title(phantom).startswith(SYNTHETIC_MARK) and "syn_0_00012.png" in case_title(phantom)
    assert case_title(flagged_only).startswith(SYNTHETIC_MARK)
    assert is_synthetic(phantom) and is_synthetic(flagged_only) and not is_synthetic(_nih_case())
    real = _nih_case()
    assert real_cases([phantom, real, flagged_only]) == [real]


def test_a_hash_named_file_is_never_the_title() -> None:
    stored = _nih_case(image_path="/data/images/ab/" + "ab" * 32 + ".png", extra={})
    assert not HASH.search(case_title(stored)) and case_title(stored).startswith("nih image")


def test_caption_is_the_report_else_the_fine_label_and_demographics() -> None:
    assert case_caption(_nih_case(report="Right lower lobe consolidation.  ")) == "Right lower lobe consolidation."
    caption = case_caption(_nih_case())
    assert caption.startswith("No report") and "Infiltration, Pneumonia" in caption and "M 53 y" in caption
    assert "(no report)" not in caption


def test_real_images_get_readable_titles(real_data: Path, tmp_path: Path) -> None:
    from medrag.config import Settings
    from medrag.workbench import Workbench

    rows = (real_data / "labels.csv").read_text(encoding="utf-8").splitlines()
    header, body = rows[0], rows[1:]
    picked = [line for line in body if "/nih_" in line][:2] + [line for line in body if "/kermany_" in line][:2]
    subset = tmp_path / "subset.csv"
    subset.write_text("\n".join([header, *picked]) + "\n", encoding="utf-8")
    workbench = Workbench(Settings(data_dir=tmp_path / "data", web_provider="off"))
    workbench.ingest(real_data, labels_csv=subset)
    cases = list(workbench.store.get_cases(list(workbench.store.cases_frame()["case_id"])).values())
    assert len(cases) == 4
    for case in cases:
        title = case_title(case)
        assert not HASH.search(title) and not title.startswith(SYNTHETIC_MARK)
        assert Path(case.image_path).name in title and case.dataset in title and case.view in title
        assert case_caption(case).startswith("No report")  # these have none: the facts instead
    nih = next(c for c in cases if c.dataset == "nih")
    assert f"{nih.extra['sex']} {nih.extra['age']} y" in case_title(nih)


# ---------------------------------------------------------------------------------------------- Library
def test_library_selection_then_a_search_does_not_crash(mixed: Path) -> None:
    at = _app("pages/2_Library.py")
    table = at.dataframe[0]
    last_row = len(table.value) - 1
    assert last_row > 10
    # A row picked in the full list, then a search that leaves far fewer rows.
    at.session_state[table.key] = {"selection": {"rows": [last_row], "columns": [], "cells": []}}
    at.text_input(key="library_text").input("effusion").run()
    assert not at.exception, [e.value for e in at.exception]
    assert not at.error, [e.value for e in at.error]
    shown = at.dataframe[0].value
    assert 0 < len(shown) < last_row
    assert at.selectbox(key="library_open_select").value in set(shown["case_id"])


def test_library_lists_readable_names_and_reports_or_facts(mixed: Path) -> None:
    at = _app("pages/2_Library.py")
    shown = at.dataframe[0].value
    assert {"case", "report"} <= set(shown.columns)
    assert not any(HASH.search(name) for name in shown["case"])
    assert not any(HASH.search(option) for option in at.selectbox(key="library_open_select").options)
    assert "(no report)" not in set(shown["report"])
    real = shown[shown["dataset"] == "nih"]
    assert len(real) == 3 * PER_LABEL and all(r.startswith("No report · fine label:") for r in real["report"])
    # Opening a real case without a report shows what is known instead.
    at.selectbox(key="library_open_select").set_value(real.iloc[0]["case_id"]).run()
    assert any("No report; what is known" in m for m in _texts(at))


# ---------------------------------------------------------------------------------------------- Analyze pickers
def test_choosing_a_label_moves_the_case_box_to_that_label_and_analyze_runs_on_it(mixed: Path) -> None:
    at = _app("pages/1_Analyze.py", analyze_mode_value="library")
    at.toggle(key="analyze_real").set_value(False).run()  # phantoms too: the walk started on one
    first = at.selectbox(key="analyze_case").value
    assert _case_label(mixed, first) != "pneumonia"
    at.selectbox(key="analyze_case_label").set_value("pneumonia").run()
    assert not at.exception, [e.value for e in at.exception]
    chosen = at.selectbox(key="analyze_case").value
    assert _case_label(mixed, chosen) == "pneumonia"
    at.button(key="analyze_run").click().run()
    assert not at.exception, [e.value for e in at.exception]
    assert at.session_state["last_result"].case_id == chosen


def test_label_filters_count_the_cases_they_list_under_the_real_only_switch(mixed: Path) -> None:
    at = _app("pages/1_Analyze.py", analyze_mode_value="library")
    labels = at.selectbox(key="analyze_case_label")
    assert labels.options[0] == f"all labels ({3 * PER_LABEL})"  # the real cases only, as the switch says
    assert f"pneumonia ({PER_LABEL})" in labels.options
    at.toggle(key="analyze_real").set_value(False).run()
    options = at.selectbox(key="analyze_case_label").options
    assert options[0] == f"all labels ({3 * PER_LABEL + DEMO_CASES})"
    assert len(at.selectbox(key="analyze_case").options) == 3 * PER_LABEL + DEMO_CASES
    # Compare draws its switch after its filter: the counts still follow it (the switch is shared).
    at.switch_page("pages/4_Compare.py").run()
    assert not at.exception, [e.value for e in at.exception]
    assert at.selectbox(key="compare_label").options[0] == f"all labels ({3 * PER_LABEL + DEMO_CASES})"
    at.toggle(key="compare_real").set_value(True).run()
    assert at.selectbox(key="compare_label").options[0] == f"all labels ({3 * PER_LABEL})"


def test_analyze_picker_lists_readable_names_real_only_by_default(mixed: Path) -> None:
    at = _app("pages/1_Analyze.py", analyze_mode_value="library")
    box = at.selectbox(key="analyze_case")
    assert at.toggle(key="analyze_real").value is True  # the library holds real cases: on by default
    assert len(box.options) == 3 * PER_LABEL  # every real case is choosable
    assert not any(HASH.search(o) for o in box.options)
    assert not any(o.startswith(SYNTHETIC_MARK) for o in box.options)
    assert all(".png · " in o and " · nih · patient " in o for o in box.options)
    at.toggle(key="analyze_real").set_value(False).run()
    options = at.selectbox(key="analyze_case").options
    assert len(options) == 3 * PER_LABEL + DEMO_CASES
    assert sum(o.startswith(SYNTHETIC_MARK) for o in options) == DEMO_CASES
    # The switch is shared: Compare starts with the same choice.
    at.switch_page("pages/4_Compare.py").run()
    assert at.toggle(key="compare_real").value is False


def test_a_case_sent_from_the_library_stays_picked_until_a_filter_changes(mixed: Path) -> None:
    at = _app("pages/2_Library.py")
    phantom = next(r for r in at.dataframe[0].value.itertuples() if r.dataset == "synthetic").case_id
    at.selectbox(key="library_open_select").set_value(phantom).run()
    at.button(key="library_analyze").click().run()
    at.switch_page("pages/1_Analyze.py").run()
    assert at.selectbox(key="analyze_case").value == phantom  # though "real cases only" is on
    at.selectbox(key="analyze_case_label").set_value("covid19").run()
    assert _case_label(mixed, at.selectbox(key="analyze_case").value) == "covid19"


# ---------------------------------------------------------------------------------------------- Analyze results
def _upload_and_run(at: AppTest, name: str = "query.png", seed: int = 4242) -> None:
    at.file_uploader(key="analyze_upload").set_value((name, _png(frozenset({"effusion"}), seed), "image/png")).run()
    at.button(key="analyze_run").click().run()
    assert not at.exception, [e.value for e in at.exception]
    assert any("Saved to history as #" in s.value for s in at.success)


def test_switching_the_input_hides_the_previous_result(mixed: Path) -> None:
    at = _app("pages/1_Analyze.py")
    _upload_and_run(at)
    assert any(t.startswith("Reasoning by") for t in _texts(at))
    at.button_group[0].set_value("library").run()
    assert not at.exception
    texts = _texts(at)
    assert not any(t.startswith("Reasoning by") for t in texts), "the old reasoning sits beside a new image"
    assert not any("Saved to history as #" in t for t in texts)
    assert not [b for b in at.button if (b.key or "").startswith("analyze_open_")]
    assert any("previous analysis" in t and "is hidden" in t for t in at_captions(at))
    # Back to the upload mode (its box emptied by the switch): the result comes back with its own image.
    at.button_group[0].set_value("upload").run()
    assert any(t.startswith("Reasoning by") for t in _texts(at))


def test_cards_show_reports_or_facts_and_the_map_marks_real_and_synthetic(mixed: Path) -> None:
    at = _app("pages/1_Analyze.py")
    _upload_and_run(at)
    assert not any("(no report)" in t for t in _texts(at))
    last = at.session_state["last_result"]
    cards = [t for t in (e.value for e in at.text) if t.startswith(("No report · fine label:", "FINDINGS"))]
    assert len(cards) >= len(last.neighbours)
    at.session_state["analyze_similar_tabs"] = "Library map"  # tabs run lazily: open the map's
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    assert at.toggle(key="analyze_map_real").value is True  # the map's "real cases only" switch
    assert at.get("plotly_chart")


def test_web_search_is_off_without_a_key_and_said_once(mixed: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MEDRAG_WEB", "auto")
    for name in ("SERPAPI_API_KEY", "TAVILY_API_KEY"):
        monkeypatch.delenv(name, raising=False)
    at = _app("pages/1_Analyze.py")
    web = at.toggle(key="analyze_web")
    assert web.value is False and web.disabled
    _upload_and_run(at)
    said = [t for t in _texts(at) if "web search off" in t.lower()]
    assert len(said) == 1, said


def test_the_refusal_reason_is_shown_once(mixed: Path) -> None:
    at = _app("pages/1_Analyze.py")
    at.button_group[0].set_value("question").run()
    at.text_input(key="analyze_question").input("What is the best pizza topping in Naples?").run()
    at.button(key="analyze_run").click().run()
    assert not at.exception
    reason = at.session_state["last_result"].verdict.reason
    shown = [t for t in _texts(at) if _plain(reason) in t]
    assert len(shown) == 1, shown


# ---------------------------------------------------------------------------------------------- Compare
def test_compare_label_filter_keeps_the_choice_and_lists_every_match(mixed: Path) -> None:
    at = _app("pages/4_Compare.py")
    before = at.multiselect(key="compare_cases").value
    assert len(before) == 2
    at.selectbox(key="compare_label").set_value("pneumonia").run()
    assert not at.exception, [e.value for e in at.exception]
    picker = at.multiselect(key="compare_cases")
    assert picker.value == before, "choosing a label filter wiped the selection"
    assert not any(i.value == "Pick at least two cases." for i in at.info)

    real_pneumonia = set(folder_store(mixed).cases_frame(label="pneumonia", dataset="nih")["case_id"])
    assert len(picker.options) == len(set(before) | real_pneumonia)  # every match, and the chosen ones
    assert not any(HASH.search(o) for o in picker.options)
    assert len([o for o in picker.options if " · pneumonia · " in o]) == PER_LABEL


def test_compare_offers_no_dicom_window_for_8_bit_images(mixed: Path) -> None:
    at = _app("pages/4_Compare.py")
    assert len(at.multiselect(key="compare_cases").value) == 2
    assert not any("DICOM or 16-bit" in c for c in at_captions(at))
    assert any(e.label.startswith("Window / level") for e in at.expander)


# ---------------------------------------------------------------------------------------------- History
def test_history_times_have_no_microseconds(mixed: Path) -> None:
    at = _app("pages/1_Analyze.py")
    _upload_and_run(at)
    at.switch_page("pages/3_History.py").run()
    assert not at.exception, [e.value for e in at.exception]
    assert any(" UTC · " in c for c in at_captions(at))
    assert not any(MICROSECONDS.search(c) for c in at_captions(at))
    dates = at.dataframe[0].value["date"]
    assert (pd.to_datetime(dates).dt.microsecond == 0).all()
    at.switch_page("streamlit_app.py").run()
    latest = next(d.value for d in at.dataframe if "date" in d.value.columns)
    assert (pd.to_datetime(latest["date"]).dt.microsecond == 0).all()


def test_history_pages_through_the_analyses(mixed: Path) -> None:
    at = _app("pages/3_History.py")
    assert not at.exception

    total = folder_store(mixed).count_analyses()
    assert any(c.startswith(f"{total:,} matching analyses") for c in at_captions(at))


# ---------------------------------------------------------------------------------------------- plots
def _neighbours(scores: list[float], labels: list[str]) -> list[Neighbour]:
    pairs = enumerate(zip(scores, labels, strict=True))
    return [Neighbour(case_id=f"c{i}", score=s, rank=i + 1, label=label) for i, (s, label) in pairs]


def test_scores_bar_zooms_to_the_scores_and_says_so() -> None:
    from medrag.ui.figures import scores_bar

    fig = scores_bar(_neighbours([0.94, 0.93, 0.925, 0.91], ["normal", "pneumonia", "normal", "covid19"]))
    low, high = fig.layout.yaxis.range
    assert 0.85 < low < 0.91 and 0.94 < high <= 1.0
    assert any("not 0" in a.text for a in fig.layout.annotations)


def test_one_colour_per_label_in_every_chart() -> None:
    from medrag.ui.figures import label_colour, labels_over_time, library_map_figure, scores_bar

    bar = scores_bar(_neighbours([0.9, 0.8], ["pneumonia", "normal"]))
    assert list(bar.data[0].marker.color) == [label_colour("pneumonia"), label_colour("normal")]
    frame = pd.DataFrame({
        "case_id": ["a", "b", "c", "d"], "x": [0.0, 1.0, 2.0, 3.0], "y": [0.0, 1.0, 0.0, 1.0],
        "label": ["normal", "pneumonia", "covid19", "pneumonia"], "dataset": ["nih", "nih", "hannover", "synthetic"],
        "snippet": [""] * 4, "synthetic": [False, False, False, True], "title": ["a.png", "b.png", "c.png", "d.png"],
    })
    fig = library_map_figure(frame)
    by_name = {t.name: t for t in fig.data}
    pneumonia = label_colour("pneumonia")
    assert by_name["pneumonia"].marker.color == pneumonia == by_name["pneumonia (synthetic)"].marker.color
    assert by_name["pneumonia"].marker.symbol != by_name["pneumonia (synthetic)"].marker.symbol
    days = pd.to_datetime(["2026-01-01", "2026-01-02"])
    history = pd.DataFrame({"created_at": days, "label": ["normal", "pneumonia"]})
    over_time = {t.name: t.marker.color for t in labels_over_time(history).data}
    assert over_time == {"normal": label_colour("normal"), "pneumonia": label_colour("pneumonia")}
    # The three labels of the real images are far apart (not three pinks).
    rgb = [np.array([int(label_colour(n)[i : i + 2], 16) for i in (1, 3, 5)]) for n in REAL_LABELS]
    assert min(np.linalg.norm(a - b) for i, a in enumerate(rgb) for b in rgb[i + 1 :]) > 120
    assert label_colour("Effusion + Edema") == label_colour("effusion  +  edema")  # stable, whitespace aside


def test_history_similarity_distribution_keeps_image_and_text_apart() -> None:
    import json

    from medrag.ui.figures import similarity_distribution
    from medrag.ui.tables import neighbour_scores

    history = pd.DataFrame({
        "input_kind": ["image", "text"],
        "neighbours": [json.dumps([{"score": 0.92, "rank": 1}, {"score": 0.9, "rank": 2}]),
                       json.dumps([{"score": 0.61, "rank": 1}])],
    })
    scores = neighbour_scores(history)
    assert set(scores[scores["query"] == "text"]["score"]) == {0.61}
    assert set(scores[scores["query"] == "image"]["score"]) == {0.92, 0.9}
    fig = similarity_distribution(scores)
    assert fig.layout.xaxis2 is not None  # a panel per kind of query
    assert {a.text for a in fig.layout.annotations} == {"image queries", "text queries"}


# ---------------------------------------------------------------------------------------------- speed
def test_reports_are_embedded_once_per_distinct_text(tmp_path: Path) -> None:
    from medrag.config import Settings
    from medrag.workbench import Workbench

    workbench = Workbench(Settings(data_dir=tmp_path / "data", demo_cases=12, web_provider="off"))
    workbench.ensure_library()
    incoming = tmp_path / "incoming"
    labels = _write_real_like(incoming)
    workbench.ingest(incoming, labels_csv=labels)
    encoder = workbench.text_encoder
    asked: list[str] = []
    original = encoder.embed_text

    def counting(texts):  # type: ignore[no-untyped-def]
        asked.extend(texts)
        return original(texts)

    encoder.embed_text = counting
    try:
        index = workbench.ensure_index("text")
    finally:
        del encoder.embed_text
    assert len(index) == 12 + 3 * PER_LABEL
    assert len(asked) == len(set(asked))  # the 36 report-less cases share three texts
    assert len(asked) <= 12 + 3
    # The shared vectors are those of the text itself.
    hits = workbench.search_text("covid19", k=PER_LABEL)
    assert {n.label for n in hits} == {"covid19"}


def test_an_import_from_the_library_page_embeds_the_reports_before_the_first_question(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MEDRAG_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("MEDRAG_DEMO_CASES", "6")
    monkeypatch.setenv("MEDRAG_WEB", "off")
    incoming = tmp_path / "incoming"
    labels = _write_real_like(incoming)
    at = _app("pages/2_Library.py", library_tabs="Import and re-index")
    at.text_input(key="import_folder").input(str(incoming))
    at.text_input(key="import_csv").input(str(labels))
    next(b for b in at.form_submit_button if b.label == "Import").click().run()
    assert not at.exception, [e.value for e in at.exception]
    from medrag.ui import resources

    workbench = resources.get_workbench()
    # Part of the import (with its progress bar): nothing is left for the first text question to embed.
    assert resources.text_index_ready(workbench)
    encoder = workbench.text_encoder
    assert not workbench.store.cases_missing_embeddings(encoder.name, encoder.version)


def test_cases_imported_by_another_process_are_embedded_in_the_background(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from medrag.config import Settings
    from medrag.ui import resources
    from medrag.workbench import Workbench

    monkeypatch.setenv("MEDRAG_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("MEDRAG_DEMO_CASES", "6")
    monkeypatch.setenv("MEDRAG_WEB", "off")
    _app("pages/5_Settings.py")  # the app is up: its warm-up embeds the demo library's reports
    workbench = resources.get_workbench()
    deadline = time.monotonic() + 120
    while not resources.text_index_ready(workbench) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert resources.text_index_ready(workbench)
    # `medrag ingest` in another process (here another Workbench on the same folder) adds cases...
    incoming = tmp_path / "incoming"
    labels = _write_real_like(incoming)
    Workbench(Settings(data_dir=tmp_path / "data", web_provider="off")).ingest(incoming, labels_csv=labels)
    assert not resources.text_index_ready(workbench)
    _app("pages/5_Settings.py")  # ...and the next page run notices and embeds their reports meanwhile
    deadline = time.monotonic() + 120
    while not resources.text_index_ready(workbench) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert resources.text_index_ready(workbench)
    encoder = workbench.text_encoder
    assert not workbench.store.cases_missing_embeddings(encoder.name, encoder.version)
