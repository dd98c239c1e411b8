"""AppTest flows of the Lessons page: build a set, note it, reorder it, present it, annotate, share it.

A data folder of its own with the small synthetic demo library (shared with test_app_quiz.py), so the
lesson sets made here never meet the other app tests' library.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from medrag.teaching.model import ItemRef

REPO = Path(__file__).resolve().parents[1]
APP = str(REPO / "streamlit_app.py")
DEMO_CASES = 24

pytestmark = pytest.mark.slow


def teaching_app(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> AppTest:
    """The home page, run once, over the teaching tests' demo data folder (built on first use)."""
    data_dir = tmp_path_factory.getbasetemp() / "medrag-app-teaching"
    monkeypatch.setenv("MEDRAG_DATA_DIR", str(data_dir))
    monkeypatch.setenv("MEDRAG_DEMO_CASES", str(DEMO_CASES))
    monkeypatch.setenv("MEDRAG_WEB", "off")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    at = AppTest.from_file(APP, default_timeout=180)
    at.run()
    return at


def store_of(at: AppTest):  # type: ignore[no-untyped-def]
    """The app's store (the same process, so the same DuckDB connection)."""
    from medrag.ui.resources import get_workbench

    return get_workbench().store


def ok(at: AppTest) -> None:
    assert not at.exception, [e.value for e in at.exception]
    assert not at.error, [e.value for e in at.error]


@pytest.fixture()
def app(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> AppTest:
    at = teaching_app(tmp_path_factory, monkeypatch)
    for lesson in store_of(at).lesson_sets():
        store_of(at).delete_lesson_set(lesson.set_id)
    return at


def test_build_note_reorder_present_and_share_a_set(app: AppTest) -> None:
    app.switch_page("pages/6_Lessons.py").run()
    ok(app)
    assert any("No lesson sets yet" in i.value for i in app.info)
    app.text_input(key="lesson_new_name").set_value("Effusion or not")
    app.button(key="lesson_create").click().run()
    ok(app)
    assert app.selectbox(key="lesson_current").value == store_of(app).lesson_set_by_name("Effusion or not").set_id

    picker = app.multiselect(key="lesson_add_cases")
    assert not app.toggle(key="lesson_add_real").value  # only phantoms here: the real-only switch starts off
    titles = list(picker.options)  # AppTest lists the options as shown
    assert all(t.startswith("synthetic phantom") for t in titles) and not any(len(t) == 64 for t in titles)  # no hashes
    chosen = [str(c) for c in store_of(app).cases_frame()["case_id"][:3]]  # the picker's order: the library's
    picker.set_value(chosen).run()
    app.text_area(key="lesson_add_note").set_value("compare the costophrenic angles").run()
    app.button(key="lesson_add_button").click().run()
    ok(app)
    lesson = store_of(app).lesson_set_by_name("Effusion or not")
    assert lesson is not None and [r.ref_id for r in lesson.refs] == chosen
    assert {i.note for i in lesson.items} == {"compare the costophrenic angles"}

    first, second, third = lesson.items
    app.text_area(key=f"lesson_note_{third.item_id}").set_value("the answer is in the bases")
    app.button(key="lesson_notes_save").click().run()
    app.button(key=f"lesson_down_{first.item_id}").click().run()
    ok(app)
    lesson = store_of(app).lesson_set_by_name("Effusion or not")
    assert lesson is not None and [r.ref_id for r in lesson.refs] == [chosen[1], chosen[0], chosen[2]]
    assert lesson.items[2].note == "the answer is in the bases"

    app.session_state["lesson_tabs"] = "Present"
    app.run()
    ok(app)
    assert any("Case 1 of 3" in m.value for m in app.markdown)
    assert not [s for s in app.subheader if s.value.startswith("Answer:")]  # hidden until revealed
    assert app.button(key="lesson_present_prev").disabled
    app.button(key="lesson_present_reveal").click().run()
    case = store_of(app).get_case(chosen[1])
    [answer] = [s.value for s in app.subheader if s.value.startswith("Answer:")]
    assert answer.replace("\\", "") == f"Answer: {case.label}"
    app.button(key="lesson_present_next").click().run()
    app.button(key="lesson_present_next").click().run()
    ok(app)
    assert any("Case 3 of 3" in m.value for m in app.markdown) and app.button(key="lesson_present_next").disabled
    assert not [s for s in app.subheader if s.value.startswith("Answer:")]  # each case is revealed on its own

    app.session_state["lesson_tabs"] = "Annotate"
    app.run()
    ok(app)
    target = ItemRef("case", chosen[1])
    key = f"lesson_annot_{target.key[:48]}"
    app.text_input(key=f"{key}_label").set_value("meniscus")
    for index, value in enumerate((10.0, 20.0, 60.0, 70.0)):
        app.number_input(key=f"{key}_{index}").set_value(value)
    app.button(key=f"{key}_save").click().run()
    ok(app)
    [saved] = store_of(app).annotations_for([target])
    assert (saved.shape, saved.label, saved.x0, saved.y1) == ("box", "meniscus", 10.0, 70.0)
    app.button(key=f"{key}_del_{saved.annotation_id}").click().run()
    assert store_of(app).annotations_for([target]) == []

    app.session_state["lesson_tabs"] = "Share"
    app.run()
    app.button(key="lesson_prepare").click().run()
    ok(app)
    exports = app.session_state["lesson_exports"]
    assert exports["html"].startswith(b"<!DOCTYPE html>") and b"data:image/jpeg;base64," in exports["html"]
    assert exports["zip"][:2] == b"PK"
    assert len(app.get("download_button")) == 2


def test_rename_and_delete_a_set(app: AppTest) -> None:
    store = store_of(app)
    set_id = store.create_lesson_set("Old name")
    app.switch_page("pages/6_Lessons.py").run()
    app.text_input(key=f"lesson_rename_{set_id}").set_value("New name")
    app.button(key="lesson_rename_save").click().run()
    ok(app)
    assert store.get_lesson_set(set_id).name == "New name"  # type: ignore[union-attr]
    assert app.button(key="lesson_delete").disabled
    app.checkbox(key="lesson_delete_sure").check().run()
    app.button(key="lesson_delete").click().run()
    ok(app)
    assert store.get_lesson_set(set_id) is None


def test_add_to_lesson_set_from_library_and_compare(app: AppTest) -> None:
    from medrag.ui.lessons import NEW_SET

    app.switch_page("pages/2_Library.py").run()
    ok(app)
    app.selectbox(key="library_lesson_set").set_value(NEW_SET).run()
    app.text_input(key="library_lesson_new").set_value("From the library").run()
    app.text_area(key="library_lesson_note").set_value("first case").run()
    app.button(key="library_lesson_add").click().run()
    ok(app)
    lesson = store_of(app).lesson_set_by_name("From the library")
    assert lesson is not None and len(lesson.items) == 1 and lesson.items[0].note == "first case"
    assert any("Added 1 case to From the library" in s.value for s in app.success)

    app.switch_page("pages/4_Compare.py").run()
    ok(app)
    app.selectbox(key="compare_lesson_set").set_value("From the library").run()
    app.button(key="compare_lesson_add").click().run()
    ok(app)
    lesson = store_of(app).lesson_set_by_name("From the library")
    assert lesson is not None and len(lesson.items) >= 2  # the compared cases (one may be the first already)


def test_browser_upload_import_and_a_colleagues_set(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Its own small data folder: this test adds cases to the library."""
    import io
    import zipfile

    from test_teaching_store import write_png

    monkeypatch.setenv("MEDRAG_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("MEDRAG_DEMO_CASES", "8")
    monkeypatch.setenv("MEDRAG_WEB", "off")
    at = AppTest.from_file(APP, default_timeout=180)
    at.run()
    at.switch_page("pages/2_Library.py").run()
    at.session_state["library_tabs"] = "Import and re-index"
    at.run()
    ok(at)
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for i in range(3):
            archive.writestr(f"class/img{i}.png", write_png(tmp_path / f"img{i}.png", 40 + i, side=80).read_bytes())
    labels = b"image,label,dataset\nold/place/img0.png,pneumonia,nih\nimg1.png,normal,nih\nimg2.png,normal,nih\n"
    at.file_uploader(key="upload_import_files").set_value([("class.zip", buffer.getvalue(), "application/zip")])
    at.file_uploader(key="upload_import_csv").set_value(("labels.csv", labels, "text/csv"))
    at.run()
    at.button(key="upload_import_run").click().run()
    ok(at)
    assert any("3 seen, 3 added" in s.value for s in at.success), [s.value for s in at.success]
    store = store_of(at)
    assert store.label_counts().get("pneumonia") == 1 and store.dataset_counts().get("nih") == 3

    # Export a set of the new cases, delete it, and import it back through the Share tab.
    ids = [str(c) for c in store.cases_frame(dataset="nih")["case_id"]]
    set_id = store.create_lesson_set("Uploaded")
    store.add_lesson_items(set_id, [ItemRef("case", c) for c in ids], "n")
    from medrag.teaching.bundle import export_bundle

    payload = export_bundle(store, store.get_lesson_set(set_id))  # type: ignore[arg-type]
    at.switch_page("pages/6_Lessons.py").run()
    at.session_state["lesson_tabs"] = "Share"
    at.run()
    at.file_uploader(key="lesson_import_file").set_value(("uploaded.zip", payload, "application/zip"))
    at.run()
    at.button(key="lesson_import").click().run()
    ok(at)
    shown = [s.value.replace("\\", "") for s in at.success]
    assert any("Imported the lesson set Uploaded (imported 2) with 3 cases." in s for s in shown), shown
    assert store.count_cases() == 8 + 3  # the same pixels: no new cases
