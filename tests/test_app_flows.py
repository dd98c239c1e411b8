"""AppTest flows: analyze an upload, refuse an off-topic question, reopen from History, play the quiz."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from streamlit.testing.v1 import AppTest

from pgsuite import folder_store

REPO = Path(__file__).resolve().parents[1]
APP = str(REPO / "streamlit_app.py")
DEMO_CASES = 24

pytestmark = pytest.mark.slow


@pytest.fixture()
def data_dir(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The demo data folder shared by the app tests of this session (built by the first app run)."""
    folder = tmp_path_factory.getbasetemp() / "medrag-app-data"
    monkeypatch.setenv("MEDRAG_DATA_DIR", str(folder))
    monkeypatch.setenv("MEDRAG_DEMO_CASES", str(DEMO_CASES))
    monkeypatch.setenv("MEDRAG_WEB", "off")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    return folder


@pytest.fixture()
def analyze(data_dir: Path) -> AppTest:
    """The Analyze page, run once."""
    at = AppTest.from_file(APP, default_timeout=180)
    at.switch_page("pages/1_Analyze.py").run()
    assert not at.exception
    return at


def _phantom_png() -> bytes:
    from medrag.phantoms import generate_phantom

    pixels = generate_phantom(frozenset({"effusion"}), seed=987_654, size=256)
    buffer = io.BytesIO()
    Image.fromarray(np.round(np.clip(pixels, 0, 1) * 255).astype(np.uint8)).save(buffer, format="PNG")
    return buffer.getvalue()


def _count_history(data_dir: Path) -> int:

    return folder_store(data_dir).count_analyses()


def _plain(text: str) -> str:
    return text.replace("\\", "")


def _stage_box(at: AppTest, prefix: str):  # type: ignore[no-untyped-def]
    """The stage box (an expander, live and on re-renders) whose label starts with ``prefix``."""
    boxes = [b for b in [*at.status, *at.expander] if _plain(b.label).startswith(prefix)]
    assert boxes, f"no stage box starting with {prefix!r}"
    return boxes[0]


def _analyze_upload(at: AppTest) -> int:
    at.file_uploader(key="analyze_upload").set_value(("phantom.png", _phantom_png(), "image/png")).run()
    assert not at.exception
    at.button(key="analyze_run").click().run()
    assert not at.exception, [e.value for e in at.exception]
    saved = [s.value for s in at.success if "Saved to history as #" in s.value]
    assert saved, [e.value for e in at.error] + [w.value for w in at.warning]
    return int(saved[0].rsplit("#", 1)[1])


def test_analyze_an_uploaded_image(analyze: AppTest, data_dir: Path) -> None:
    before = _count_history(data_dir)
    analysis_id = _analyze_upload(analyze)
    at = analyze
    assert _count_history(data_dir) == before + 1
    # Reasoning streamed into its status box and is not empty.
    reasoning = _stage_box(at, "Reasoning by")
    # Live boxes are expanders redrawn in place (an st.status costs a 50 ms sleep each), marked done.
    assert reasoning.type == "expander" and reasoning.icon == ":material/check_circle:"
    assert "Impression" in reasoning.markdown[0].value
    # The label and the findings table.
    label = at.session_state["last_result"].label
    assert label and any(_plain(h.value) == label for h in at.subheader)
    findings = next(d.value for d in at.dataframe if "finding" in d.value.columns)
    assert set(findings["status"]) <= {"present", "absent", "uncertain", "not mentioned"}
    # k neighbour cards, each with an Open button.
    k = at.session_state["k"]
    opens = [b for b in at.button if (b.key or "").startswith("analyze_open_")]
    assert len(opens) == k
    assert at.session_state["last_result"].analysis_id == analysis_id
    # A rerun (widget change) re-renders the saved result without running it again.
    at.toggle(key="analyze_view_clahe").set_value(True).run()
    assert not at.exception
    assert _count_history(data_dir) == before + 1
    assert any("Saved to history as #" in s.value for s in at.success)
    assert _stage_box(at, "Reasoning by").type == "expander"  # the stage log, re-drawn from session state
    # Opening a neighbour shows it side by side with the query.
    opens[0].click().run()
    assert not at.exception
    assert at.button(key="analyze_close") is not None


def test_off_topic_question_is_refused(analyze: AppTest, data_dir: Path) -> None:
    before = _count_history(data_dir)
    at = analyze
    at.button_group[0].set_value("question").run()
    at.text_input(key="analyze_question").input("What is the best pizza topping in Naples?").run()
    at.button(key="analyze_run").click().run()
    assert not at.exception
    refusals = [w.value for w in at.warning if "Refused by the domain guard" in w.value]
    assert refusals
    assert not [c for c in at.caption if c.value.startswith("Label")]
    guard = _stage_box(at, "Domain check")
    assert guard.type == "expander" and guard.icon == ":material/error:"
    assert _count_history(data_dir) == before  # a refusal is not saved as an analysis


def test_history_reopens_the_analysis(analyze: AppTest, data_dir: Path) -> None:
    analysis_id = _analyze_upload(analyze)
    label = analyze.session_state["last_result"].label
    reasoning = analyze.session_state["last_result"].reasoning
    analyze.button(key="analyze_to_history").click().run()
    at = analyze
    assert not at.exception
    # st.switch_page moved this run to History; AppTest needs to be told for the runs that follow.
    at.switch_page("pages/3_History.py").run()
    assert any(h.value == f"Analysis #{analysis_id}" for h in at.subheader)
    assert any(_plain(h.value) == label for h in at.subheader)
    shown = _stage_box(at, "Reasoning by")
    assert _plain(shown.markdown[0].value).strip() == reasoning.replace("\\", "").strip()
    table = at.dataframe[0].value
    assert analysis_id in set(table["id"])
    assert len([b for b in at.button if (b.key or "").startswith("history_open_")]) == len(
        at.session_state["last_result"].neighbours
    )
    # Notes and tags are saved on the row.
    at.text_area(key=f"history_notes_{analysis_id}").input("teaching file")
    at.text_input(key=f"history_tags_{analysis_id}").input("effusion, demo")
    next(b for b in at.form_submit_button if b.label == "Save notes and tags").click().run()
    assert any("Notes and tags saved" in s.value for s in at.success)

    saved = folder_store(data_dir).get_analysis(analysis_id)
    assert saved is not None and saved.user_notes == "teaching file" and saved.tags == ["demo", "effusion"]
    # A new session shows what was saved: the write dropped the cached copy of the row.
    fresh = AppTest.from_file(APP, default_timeout=180)
    fresh.session_state["history_open_id"] = analysis_id
    fresh.switch_page("pages/3_History.py").run()
    assert not fresh.exception
    assert fresh.text_area(key=f"history_notes_{analysis_id}").value == "teaching file"


def test_a_question_over_the_limit_reopens_in_history_with_its_results_and_a_note(
    analyze: AppTest, data_dir: Path
) -> None:
    at = analyze
    at.button_group[0].set_value("question").run()
    question = "What are the signs of a pleural effusion on a chest x-ray? " * 80  # > 4,000 characters
    at.text_input(key="analyze_question").input(question).run()
    at.button(key="analyze_run").click().run()
    assert not at.exception, [e.value for e in at.exception]
    last = at.session_state["last_result"]
    assert last.ok and last.failures == {} and last.analysis_id is not None
    assert len(last.notes) == 1 and "cut to its first 4,000" in last.notes[0]
    assert not at.error, [e.value for e in at.error]
    assert any("cut to its first 4,000" in _plain(c.value) for c in at.caption)
    at.button(key="analyze_to_history").click().run()
    at.switch_page("pages/3_History.py").run()
    assert not at.exception, [e.value for e in at.exception]
    assert not at.error, [e.value for e in at.error]  # no stage reads as failed
    assert any(h.value == f"Analysis #{last.analysis_id}" for h in at.subheader)
    assert any(_plain(h.value) == last.label for h in at.subheader)  # the results are shown, not hidden
    assert _plain(_stage_box(at, "Reasoning by").markdown[0].value).strip() == _plain(last.reasoning).strip()
    assert _stage_box(at, "Input: a text question · 1 note").type == "expander"
    assert any("cut to its first 4,000" in _plain(c.value) for c in at.caption)
    assert any(h.value.startswith("Similar cases") for h in at.subheader)
    assert len([b for b in at.button if (b.key or "").startswith("history_open_")]) == len(last.neighbours)


def test_quiz_reveals_the_right_label(data_dir: Path) -> None:
    at = AppTest.from_file(APP, default_timeout=180)
    at.switch_page("pages/4_Compare.py")
    at.session_state["compare_tabs"] = "Quiz"
    at.run()
    at.button(key="quiz_new").click().run()
    quiz = at.session_state["quiz"]
    truth, case_id = quiz["truth"], quiz["case_id"]
    at.radio(key=f"quiz_answer_{case_id}").set_value(truth).run()
    at.button(key="quiz_reveal").click().run()
    assert not at.exception, [e.value for e in at.exception]
    assert any(_plain(s.value) == f"Correct: the label is {truth}." for s in at.success)
    assert next(m.value for m in at.metric if m.label == "Score") == "1 / 1"
    reasoning = [e for e in at.expander if _plain(e.label).startswith("Reasoning")]
    assert reasoning and reasoning[0].markdown[0].value.strip()
    # A wrong answer on the next case keeps the score honest.
    at.button(key="quiz_new").click().run()
    quiz = at.session_state["quiz"]
    wrong = next(o for o in at.radio(key=f"quiz_answer_{quiz['case_id']}").options if o != quiz["truth"])
    at.radio(key=f"quiz_answer_{quiz['case_id']}").set_value(wrong).run()
    at.button(key="quiz_reveal").click().run()
    assert any(_plain(e.value).startswith(f"Not quite: the label is {quiz['truth']}") for e in at.error)
    assert next(m.value for m in at.metric if m.label == "Score") == "1 / 2"


def test_dicom_upload_shows_window_level_and_only_deidentified_tags(analyze: AppTest) -> None:
    import badinputs

    secret = {"PatientName": "Doe^Jane", "PatientID": "SECRET-123", "InstitutionName": "St Elsewhere"}
    data = badinputs.dicom_bytes(rows=128, cols=128, attrs=secret)
    at = analyze
    at.file_uploader(key="analyze_upload").set_value(("scan.dcm", data, "application/dicom")).run()
    assert not at.exception, [e.value for e in at.exception]
    assert any("Window / level (DICOM or 16-bit image)" in c.value for c in at.caption)
    level = at.slider(key="analyze_view_level")
    level.set_value(0.4).run()
    at.slider(key="analyze_view_width").set_value(0.3).run()
    at.toggle(key="analyze_view_invert").set_value(True).run()
    assert not at.exception
    shown = " ".join(
        " ".join(map(str, d.value.to_numpy().ravel())) for d in at.dataframe
    ) + " ".join(t.value for t in at.text) + " ".join(m.value for m in at.markdown)
    assert "dicom" in shown and "DX" in shown  # the format and the kept tags (Modality) are listed
    for value in ("Doe", "Jane", "SECRET-123", "Elsewhere"):
        assert value not in shown


def test_library_sends_a_case_to_analyze(data_dir: Path) -> None:
    at = AppTest.from_file(APP, default_timeout=180)
    at.switch_page("pages/2_Library.py").run()
    cases = at.dataframe[0].value
    wanted = str(cases.iloc[3]["case_id"])
    at.selectbox(key="library_open_select").set_value(wanted).run()
    assert not at.exception
    at.button(key="library_analyze").click().run()
    at.switch_page("pages/1_Analyze.py").run()  # where st.switch_page went
    assert not at.exception
    assert at.button_group[0].value == "library"
    assert at.selectbox(key="analyze_case").value == wanted
    assert not at.button(key="analyze_run").disabled
    # The choice survives a trip to another page and back.
    at.switch_page("pages/5_Settings.py").run()
    at.switch_page("pages/1_Analyze.py").run()
    assert at.selectbox(key="analyze_case").value == wanted


def test_unreadable_upload_is_an_error_message_not_a_crash(analyze: AppTest, data_dir: Path) -> None:
    at = analyze
    at.file_uploader(key="analyze_upload").set_value(("notes.png", b"this is not an image at all", "image/png")).run()
    assert not at.exception
    assert at.error, "the decoding error should be shown"
    assert "Traceback" not in " ".join(e.value for e in at.error)
    assert at.button(key="analyze_run").disabled  # nothing usable to analyse


def test_a_colour_photo_is_refused_by_the_image_guard(analyze: AppTest, data_dir: Path) -> None:
    import badinputs

    before = _count_history(data_dir)
    at = analyze
    at.file_uploader(key="analyze_upload").set_value(("holiday.jpg", badinputs.rgb_photo(), "image/jpeg")).run()
    at.button(key="analyze_run").click().run()
    assert not at.exception
    assert any("Refused by the domain guard" in w.value for w in at.warning)
    assert _count_history(data_dir) == before


def test_library_import_with_labels_csv_then_reindex(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import badinputs

    monkeypatch.setenv("MEDRAG_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("MEDRAG_DEMO_CASES", "6")
    monkeypatch.setenv("MEDRAG_WEB", "off")
    folder = tmp_path / "incoming"
    folder.mkdir()
    for i in range(3):
        (folder / f"img{i}.png").write_bytes(badinputs.png_bytes(size=96, seed=100 + i))
    (folder / "notes.txt").write_text("not an image")
    labels = tmp_path / "labels.csv"
    labels.write_text("image,label,report\n" + "".join(f"img{i}.png,teaching-{i % 2},Report {i}.\n" for i in range(3)))

    at = AppTest.from_file(APP, default_timeout=180)
    at.switch_page("pages/2_Library.py").run()
    assert not at.exception
    before = len(at.dataframe[0].value)
    at.session_state["library_tabs"] = "Import and re-index"
    at.run()
    at.text_input(key="import_folder").input(str(folder))
    at.text_input(key="import_csv").input(str(labels))
    next(b for b in at.form_submit_button if b.label == "Import").click().run()
    assert not at.exception, [e.value for e in at.exception]
    assert not at.error, [e.value for e in at.error]
    assert any("3 added" in _plain(s.value) for s in at.success)
    at.button(key="library_reindex").click().run()
    assert any(_plain(s.value).startswith(f"Index rebuilt: {before + 3} cases") for s in at.success)
    at.session_state["library_tabs"] = "Browse"
    at.run()
    cases = at.dataframe[0].value
    assert len(cases) == before + 3 and {"teaching-0", "teaching-1"} <= set(cases["label"])
