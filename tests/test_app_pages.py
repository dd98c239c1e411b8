"""AppTest smoke test: every page runs on a fresh data folder with no exception and shows its main parts.

The first run builds a small synthetic demo library (MEDRAG_DEMO_CASES) in a temporary data folder
shared by the app test files of this session; the app keeps one Workbench per data folder.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

REPO = Path(__file__).resolve().parents[1]
APP = str(REPO / "streamlit_app.py")
DISCLAIMER = "For education and research only — not for clinical use."
DEMO_CASES = 24

pytestmark = pytest.mark.slow


@pytest.fixture()
def app(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> AppTest:
    """The home page, run once, over the shared demo data folder (built on first use)."""
    data_dir = tmp_path_factory.getbasetemp() / "medrag-app-data"
    monkeypatch.setenv("MEDRAG_DATA_DIR", str(data_dir))
    monkeypatch.setenv("MEDRAG_DEMO_CASES", str(DEMO_CASES))
    monkeypatch.setenv("MEDRAG_WEB", "off")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    at = AppTest.from_file(APP, default_timeout=180)
    at.run()
    return at


def _no_exception(at: AppTest) -> None:
    assert not at.exception, [e.value for e in at.exception]
    assert not at.error, [e.value for e in at.error]


def _has_disclaimer(at: AppTest) -> None:
    assert any(DISCLAIMER in i.value for i in at.info), "the research-only disclaimer is missing"


def test_home_shows_library_backends_start_link_and_history(app: AppTest) -> None:
    _no_exception(app)
    _has_disclaimer(app)
    metrics = {m.label: m.value for m in app.metric}
    assert metrics["Cases"] == str(DEMO_CASES)
    assert metrics["Index size"] == str(DEMO_CASES)
    assert metrics["Image encoder"]
    backends = app.dataframe[0].value
    assert set(backends["stage"]) >= {"image encoder", "reasoner", "summariser"}
    assert any(c.value.replace("\\", "").startswith("Web search:") for c in app.caption)
    assert any(link.proto.page == "Analyze" for link in app.get("page_link"))
    assert [s.value for s in app.subheader] == ["Library", "Backends in use", "Latest analyses"]


def test_analyze_page_has_inputs_viewer_and_button(app: AppTest) -> None:
    app.switch_page("pages/1_Analyze.py").run()
    _no_exception(app)
    _has_disclaimer(app)
    assert app.get("button_group"), "the input-mode control is missing"
    assert app.file_uploader, "the upload box is missing"
    run = app.button(key="analyze_run")
    assert run.disabled  # nothing chosen yet
    assert app.toggle(key="analyze_web") is not None


def test_analyze_page_library_case_shows_the_viewer(app: AppTest) -> None:
    app.switch_page("pages/1_Analyze.py").run()
    app.button_group[0].set_value("library").run()
    _no_exception(app)
    assert app.selectbox(key="analyze_case").value
    assert not app.button(key="analyze_run").disabled
    assert app.get("plotly_chart"), "the image viewer is missing"
    assert app.slider(key="analyze_view_level").value == 0.5


def test_library_page_lists_and_opens_cases(app: AppTest) -> None:
    app.switch_page("pages/2_Library.py").run()
    _no_exception(app)
    _has_disclaimer(app)
    cases = app.dataframe[0].value
    assert len(cases) == DEMO_CASES
    assert app.selectbox(key="library_open_select").value == cases.iloc[0]["case_id"]
    assert any(c.value == "Label" for c in app.caption)
    assert app.get("plotly_chart")
    labels = app.selectbox(key="library_label")
    # options are shown as "label (count)"; "any with <finding>" entries come first (tested in test_app_overlays)
    some_label = next(o for o in labels.options[1:] if not o.startswith("any with ")).rsplit(" (", 1)[0]
    labels.set_value(some_label).run()
    filtered = app.dataframe[0].value
    assert 0 < len(filtered) < DEMO_CASES and set(filtered["label"]) == {some_label}
    app.session_state["library_tabs"] = "Import and re-index"  # tabs run lazily: open the other one
    app.run()
    assert not app.exception
    assert app.text_input(key="import_folder") is not None and app.button(key="library_reindex") is not None
    assert not app.dataframe  # the browse tab did not run


def test_history_page_runs_empty_or_not(app: AppTest) -> None:
    app.switch_page("pages/3_History.py").run()
    _no_exception(app)
    _has_disclaimer(app)
    assert app.info or app.get("download_button")


def test_compare_page_shows_two_cases_and_the_quiz(app: AppTest) -> None:
    app.switch_page("pages/4_Compare.py").run()
    _no_exception(app)
    _has_disclaimer(app)
    assert len(app.multiselect(key="compare_cases").value) == 2
    assert app.get("plotly_chart")
    app.session_state["compare_tabs"] = "Quiz"
    app.run()
    assert not app.exception
    assert app.button(key="quiz_new") is not None
    assert any(m.label == "Score" for m in app.metric)


def test_settings_page_shows_models_keys_paths_and_k(app: AppTest) -> None:
    app.switch_page("pages/5_Settings.py").run()
    _no_exception(app)
    _has_disclaimer(app)
    tables = [d.value for d in app.dataframe]
    models = next(t for t in tables if "model" in t.columns and "status" in t.columns)
    assert set(models["status"]) <= {"ready", "missing"} and len(models) >= 3
    keys = next(t for t in tables if "key" in t.columns)
    assert set(keys["key"]) == {"SERPAPI_API_KEY", "TAVILY_API_KEY", "OPENAI_API_KEY", "MEDRAG_OPENAI_BASE_URL"}
    assert set(keys["set"]) <= {"yes", "no"}
    paths = next(t for t in tables if "path" in t.columns)
    assert str(Path(paths.iloc[0]["path"]).name) == "medrag-app-data"
    quality = next(t for t in tables if "measure" in t.columns and "target" in t.columns)
    lung = quality[quality["measure"] == "lung Dice, real films"].iloc[0]
    assert lung["target"] == "≥ 0.92" and lung["met"] in {"yes", "no"} and lung["95% CI"]
    assert (quality["model"] == "medrag-cnn").sum() >= 10  # per-class AUCs, macro AUC and F1
    fixes = "\n".join(c.value for c in app.code)
    for name in models[models["status"] == "missing"]["model"]:  # each missing model's commands, once each
        assert fixes.count(f"medrag models pull {name}  # online") == 1
        assert f"medrag models pull {name}" not in "".join(m.value for m in app.markdown)
    assert any("medrag eval reading" in c.value for c in app.code)  # this library not evaluated yet: how to
    k = app.number_input(key="settings_k")
    assert k.value == 5
    k.set_value(3).run()
    assert app.session_state["k"] == 3
