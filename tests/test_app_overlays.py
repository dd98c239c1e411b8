"""The viewer overlays what the reading used (outlines, zones, heatmap, devices) on Analyze, History and Compare."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from streamlit.testing.v1 import AppTest

REPO = Path(__file__).resolve().parents[1]
APP = str(REPO / "streamlit_app.py")
DEMO_CASES = 24

pytestmark = pytest.mark.slow


@pytest.fixture()
def data_dir(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> Path:
    folder = tmp_path_factory.getbasetemp() / "medrag-overlay-data"
    monkeypatch.setenv("MEDRAG_DATA_DIR", str(folder))
    monkeypatch.setenv("MEDRAG_DEMO_CASES", str(DEMO_CASES))
    monkeypatch.setenv("MEDRAG_WEB", "off")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    return folder


def _phantom_png() -> bytes:
    from medrag.phantoms import generate_phantom

    pixels = generate_phantom(frozenset({"effusion"}), seed=987_321, size=256)
    buffer = io.BytesIO()
    Image.fromarray(np.round(np.clip(pixels, 0, 1) * 255).astype(np.uint8)).save(buffer, format="PNG")
    return buffer.getvalue()


def _figures(at: AppTest) -> list[dict]:
    return [json.loads(chart.proto.spec) for chart in at.get("plotly_chart")]


def _trace_names(figure: dict) -> list[str]:
    return [trace.get("name", "") for trace in figure["data"]]


def _image_figure(at: AppTest) -> dict:
    return next(f for f in _figures(at) if f["data"] and f["data"][0].get("type") == "image")


def test_analyze_and_history_draw_the_reading_with_toggles(data_dir: Path) -> None:
    at = AppTest.from_file(APP, default_timeout=240)
    at.switch_page("pages/1_Analyze.py").run()
    at.file_uploader(key="analyze_upload").set_value(("phantom.png", _phantom_png(), "image/png")).run()
    assert not [t for t in at.toggle if (t.key or "").startswith("analyze_overlay_")]  # nothing read yet
    at.button(key="analyze_run").click().run()
    assert not at.exception, [e.value for e in at.exception]
    reading = at.session_state["last_result"].reading
    assert reading is not None and reading.overlays.contours
    names = _trace_names(_image_figure(at))
    assert {"right lung", "left lung"} <= set(names), names
    # The image is shown at most 1,024 px a side: the outline lies inside the shown image.
    figure = _image_figure(at)
    lung = next(t for t in figure["data"] if t.get("name") == "right lung")
    assert 0 <= min(lung["x"]) and max(lung["x"]) <= 256 and 0 <= min(lung["y"]) and max(lung["y"]) <= 256

    at.toggle(key="analyze_overlay_outlines").set_value(False).run()  # a rerun redraws without re-analysing
    assert not at.exception
    assert "right lung" not in _trace_names(_image_figure(at))

    analysis_id = at.session_state["last_result"].analysis_id
    history = AppTest.from_file(APP, default_timeout=240)
    history.session_state["history_open_id"] = analysis_id
    history.switch_page("pages/3_History.py").run()
    assert not history.exception, [e.value for e in history.exception]
    assert history.toggle(key="history_overlay_outlines").value is True  # the saved reading, same layers
    assert {"right lung", "left lung"} <= set(_trace_names(_image_figure(history)))


def test_compare_overlays_each_image_on_its_own_axes(data_dir: Path) -> None:
    at = AppTest.from_file(APP, default_timeout=240)
    at.switch_page("pages/4_Compare.py").run()
    assert not at.exception, [e.value for e in at.exception]
    plain = _image_figure(at)
    assert all(t.get("type") == "image" for t in plain["data"])  # off by default: nothing is read
    at.toggle(key="compare_overlays").set_value(True).run()
    assert not at.exception, [e.value for e in at.exception]
    figure = _image_figure(at)
    outlines = [t for t in figure["data"] if t.get("name") == "right lung"]
    assert len(outlines) == 2, _trace_names(figure)
    assert {t.get("xaxis", "x") for t in outlines} == {"x", "x2"}  # one per subplot, on that subplot's axes
    for trace in outlines:
        assert 0 <= min(trace["x"]) and max(trace["x"]) <= 512  # inside the 512-px padded square


def test_a_library_case_is_held_against_its_own_labels_and_boxes(data_dir: Path) -> None:
    """A phantom's drawn findings are its truth: the viewer can draw where they are, and after the analysis a
    closed panel sets the findings table beside them."""
    at = AppTest.from_file(APP, default_timeout=240)
    at.session_state["analyze_mode_value"] = "library"
    at.switch_page("pages/1_Analyze.py").run()
    assert not at.exception, [e.value for e in at.exception]
    labels = [o.rsplit(" (", 1)[0] for o in at.selectbox(key="analyze_case_label").options]  # "label (n)"
    at.selectbox(key="analyze_case_label").set_value(next(o for o in labels if "effusion" in o)).run()
    # Before any analysis: the expert layer alone, drawn as dashed discs with the finding's name.
    assert at.toggle(key="analyze_overlay_expert").value is True
    figure = _image_figure(at)
    expert = [s for s in figure["layout"].get("shapes", []) if s.get("line", {}).get("dash") == "dash"]
    assert expert and all(s["type"] == "circle" for s in expert)
    assert any("effusion (drawn)" in a.get("text", "") for a in figure["layout"]["annotations"])
    at.toggle(key="analyze_overlay_expert").set_value(False).run()
    assert not [s for s in _image_figure(at)["layout"].get("shapes", []) if s.get("line", {}).get("dash") == "dash"]

    at.button(key="analyze_run").click().run()
    assert not at.exception, [e.value for e in at.exception]
    result = at.session_state["last_result"]
    panel = next(e for e in at.expander if e.label == "Compare with this case's own labels")
    table = panel.dataframe[0].value
    row = table[table["finding"] == "effusion"].iloc[0]
    assert row["labelled"] == "yes"
    assert row["reading"] == result.findings.get("effusion", "not mentioned")  # the table the page shows
    assert row["verdict"].split(" ", 1)[1] in {"found", "possible", "missed"}
    assert any("phantom's drawn findings" in c.value for c in panel.caption)

    history = AppTest.from_file(APP, default_timeout=240)
    history.session_state["history_open_id"] = result.analysis_id
    history.switch_page("pages/3_History.py").run()
    assert not history.exception, [e.value for e in history.exception]
    assert any(e.label == "Compare with this case's own labels" for e in history.expander)
    assert history.toggle(key="history_overlay_expert").value is True
    # Under the trends: the history's analyses of labelled cases added up per finding.
    assert history.toggle(key="history_truth_trained").value is True
    summed = next(d.value for d in history.dataframe if "sensitivity" in d.value.columns)
    effusion = summed[summed["finding"] == "effusion"].iloc[0]
    assert effusion["labelled"] == 1 and effusion["found"] + effusion["possible"] + effusion["missed"] == 1


def test_a_finding_filter_lists_every_case_whose_combined_label_names_it(data_dir: Path) -> None:
    """NIH's labels are combinations ("edema + effusion"): a filter by one finding gathers them."""
    from medrag.ui.data import finding_counts, label_parts

    assert label_parts("edema + effusion") == ["edema", "effusion"]
    assert finding_counts({"effusion": 3, "edema + effusion": 2, "normal": 9}) == {"effusion": 5, "edema": 2}
    at = AppTest.from_file(APP, default_timeout=240)
    at.session_state["analyze_mode_value"] = "library"
    at.switch_page("pages/1_Analyze.py").run()
    shown = at.selectbox(key="analyze_case_label").options  # "label (cases)"
    counts = {o.rsplit(" (", 1)[0]: int(o.rsplit(" (", 1)[1].rstrip(")").replace(",", "")) for o in shown}
    options = list(counts)
    combined = [o for o in options if " + " in o]
    assert combined, options  # the demo library draws findings together
    finding = combined[0].split(" + ")[0]
    assert f"any with {finding}" in options and options.index(f"any with {finding}") < options.index(combined[0])
    at.selectbox(key="analyze_case_label").set_value(f"any with {finding}").run()
    assert not at.exception, [e.value for e in at.exception]
    listed = at.selectbox(key="analyze_case").options
    assert len(listed) == counts[f"any with {finding}"]  # the filter lists as many cases as it said
    assert counts[f"any with {finding}"] == sum(n for o, n in counts.items() if finding in label_parts(o)
                                                and not o.startswith(("any with ", "all labels")))
    assert any(combined[0] in title for title in listed)  # the combination is among them
    # Each title names the case's label among its " · " parts.
    assert all(any(finding in label_parts(part) for part in title.split(" · ")) for title in listed)
    assert len(listed) > sum(1 for title in listed if finding in title.split(" · "))  # more than the exact label

    # The Library page's own filter gathers them too (in the store: any of the labels naming the finding).
    library = AppTest.from_file(APP, default_timeout=240)
    library.switch_page("pages/2_Library.py").run()
    assert not library.exception, [e.value for e in library.exception]
    library.selectbox(key="library_label").set_value(f"any with {finding}").run()
    assert not library.exception, [e.value for e in library.exception]
    shown = library.dataframe[0].value
    assert len(shown) == len(listed) and all(finding in label_parts(v) for v in shown["label"])
