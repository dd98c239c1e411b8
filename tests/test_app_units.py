"""The app's pure helpers: escaping, stage lines, figures, viewer maths, tables; panels via AppTest."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from streamlit.testing.v1 import AppTest

from medrag.analysis import Analysis
from medrag.events import (
    AnalysisFinished,
    AnalysisSaved,
    GuardChecked,
    InputReady,
    NeighboursFound,
    ReasoningDone,
    ReasoningToken,
    StageFailed,
    StageStarted,
    SummaryReady,
)
from medrag.records import GuardVerdict, Neighbour, Summary, WebResult
from medrag.ui.analysis import stage_line
from medrag.ui.figures import library_map_figure, scores_bar, similarity_distribution, votes_frame
from medrag.ui.safe import defang_markdown, escape_markdown, safe_url, shorten
from medrag.ui.tables import history_table, neighbour_scores
from medrag.ui.viewer import ViewSettings, downsample, linked_figure, needs_windowing, pad_to_square, render_pixels


def _neighbours(n: int = 3) -> tuple[Neighbour, ...]:
    return tuple(
        Neighbour(case_id=f"c{i}", score=0.9 - 0.1 * i, rank=i + 1, label="effusion" if i % 2 else "normal",
                  dataset="synthetic", report=f"Report {i}.", thumb_path="", image_path="")
        for i in range(n)
    )


def _events() -> list:
    return [
        StageStarted(stage="input"),
        InputReady(stage="input", kind="image", meta={"format": "png", "width": 64, "height": 64}, seconds=0.01),
        StageStarted(stage="guard"),
        GuardChecked(stage="guard", verdict=GuardVerdict(True, "looks like a chest X-ray", kind="image"), seconds=0.02),
        StageStarted(stage="neighbours"),
        NeighboursFound(stage="neighbours", neighbours=_neighbours(), encoder="classic", seconds=0.03),
        StageStarted(stage="reasoning"),
        ReasoningToken(stage="reasoning", text="**Lungs.** "),
        ReasoningToken(stage="reasoning", text="Clear."),
        ReasoningDone(stage="reasoning", text="**Lungs.** Clear.", backend="evidence", model="m1", seconds=0.2),
        StageStarted(stage="summary"),
        SummaryReady(
            stage="summary",
            summary=Summary("effusion", {"effusion": "present", "pneumothorax": "absent"}),
            seconds=0.01,
        ),
        StageStarted(stage="web"),
        StageFailed(stage="web", message="provider down; try later", error_type="WebSearchError", seconds=0.5),
        StageStarted(stage="save"),
        AnalysisSaved(stage="save", analysis_id=7, seconds=0.01),
        AnalysisFinished(stage="save", timings={"input": 0.01, "guard": 0.02}, total_seconds=0.9),
    ]


# ---------------------------------------------------------------------------------------------- safe text
def test_escape_markdown_neutralises_links_html_and_maths() -> None:
    nasty = "[click](javascript:alert(1)) <img src=x onerror=alert(1)> $x^2$ **bold**"
    escaped = escape_markdown(nasty)
    assert re.search(r"(?<!\\)[\[\]()<>$*]", escaped) is None  # every special character is escaped
    assert escaped.replace("\\", "") == nasty


def test_defang_keeps_emphasis_but_kills_links_images_and_html() -> None:
    text = "**Impression.** ![x](http://evil/p.png) [a](http://b) <b>hi</b> $1$"
    out = defang_markdown(text)
    assert out.startswith("**Impression.**")
    assert "![x](" not in out and "[a](" not in out and "<b>" not in out and "$1$" not in out
    assert out.replace("\\", "") == text


@pytest.mark.parametrize(
    ("url", "ok"),
    [
        ("https://radiopaedia.org/articles/x", True),
        ("http://nih.gov", True),
        ("javascript:alert(1)", False),
        ("data:text/html,hi", False),
        ("https://", False),
        ("ftp://x.org/a", False),
        ("https://a.org/ b", False),
        (None, False),
    ],
)
def test_safe_url_accepts_only_http_links(url: object, ok: bool) -> None:
    assert (safe_url(url) is not None) is ok


def test_shorten_collapses_whitespace_and_cuts() -> None:
    assert shorten("a\n\n b   c") == "a b c"
    cut = shorten("word " * 100, 20)
    assert len(cut) <= 20 and cut.endswith("…")


# ---------------------------------------------------------------------------------------------- analysis record
def test_analysis_folds_a_full_event_stream() -> None:
    view = Analysis.fold(_events())
    assert view.ok and view.finished
    assert view.reasoning == "**Lungs.** Clear."
    assert view.reasoner_backend == "evidence" and view.label == "effusion"
    assert [n.case_id for n in view.neighbours] == ["c0", "c1", "c2"]
    assert view.analysis_id == 7
    assert view.failures == {"web": "provider down; try later"}
    assert view.web_status == "provider down; try later"
    assert view.stages == ["input", "guard", "neighbours", "reasoning", "summary", "web", "save"]
    assert view.findings_rows()[0] == {"finding": "effusion", "status": "present"}
    assert stage_line(view, "save").startswith("Saved to history as #7")
    assert "failed" in stage_line(view, "web")


def test_view_marks_a_refusal() -> None:
    events = [
        StageStarted(stage="input"),
        InputReady(stage="input", kind="text", seconds=0.0),
        StageStarted(stage="guard"),
        GuardChecked(stage="guard", verdict=GuardVerdict(False, "not a medical question", kind="text")),
        AnalysisFinished(stage="save", refused=True),
    ]
    view = Analysis.fold(events)
    assert view.refused and not view.ok
    assert "refused" in stage_line(view, "guard")


def test_unreadable_input_is_a_failure_not_a_refusal() -> None:
    events = [StageStarted(stage="input"), StageFailed(stage="input", message="not an image"),
              AnalysisFinished(stage="save", refused=True)]
    view = Analysis.fold(events)
    assert not view.refused and not view.ok and view.failures["input"] == "not an image"


def test_a_saved_row_reopens_as_the_live_analysis() -> None:
    live = Analysis.fold(_events())
    record = {
        "id": 7,
        "created_at": "2026-01-01 10:00:00",
        "input_kind": "image",
        "input_name": "x.png",
        "question": "",
        "upload_path": "/u/x.png",
        "thumb_path": "/t/x.png",
        "encoder": "classic",
        "reasoner_backend": "evidence",
        "reasoner_model": "m1",
        "summariser_backend": "rules",
        "reasoning": live.reasoning,
        "label": live.label,
        "findings": live.findings,
        "neighbours": [n.__dict__ for n in live.neighbours],
        "web_results": [{"title": "T", "url": "https://nih.gov/a", "domain": "nih.gov", "snippet": "s"}],
        "web_status": "1 result from serpapi",
        "guard": {"allowed": True, "reason": "ok", "score": 0.5, "kind": "image"},
        "meta": {"format": "png", "summary_notes": ["the labeler read part of the text"]},
        "timings": {"input": 0.1, "reasoning": 0.2},
        "errors": [{"stage": "web", "message": "m"}],
        "total_seconds": 0.9,
    }
    view = Analysis.from_row(record)
    assert view.ok and view.analysis_id == 7 and view.image_path == "/u/x.png"
    assert view.neighbours == live.neighbours
    assert view.web_results == [WebResult("T", "https://nih.gov/a", "nih.gov", "s")]
    assert view.stages == ["input", "reasoning", "web"]
    assert view.failures == {"web": "m"}
    assert view.summary_notes == ["the labeler read part of the text"]


def test_a_cut_question_is_a_note_not_a_failure_and_survives_the_store_row() -> None:
    note = "The question was cut to its first 4,000 of 5,000 characters."
    events = _events()
    events[1] = InputReady(stage="input", kind="text", name="", question="q" * 4000, notes=(note,), seconds=0.01)
    live = Analysis.fold(events)
    assert live.ok and "input" not in live.failures and live.notes == [note]
    assert live.all_notes[0] == note
    assert stage_line(live, "input").startswith("Input: a text question · 1 note")
    reopened = Analysis.from_row({**live.to_row(), "id": 7})
    assert reopened.notes == [note] and reopened.ok and reopened.label == live.label


def test_query_position_projects_the_carried_vector_without_embedding_again() -> None:
    from medrag.engine.search import LibraryMap
    from medrag.ui.resources import query_position

    library_map = LibraryMap(generation=1, case_ids=["a", "b"], coords=np.zeros((2, 2), np.float32),
                             mean=np.zeros(3, np.float32), components=np.eye(3, dtype=np.float32)[:2])

    class _Engine:
        image_encoder_name = "classic"

        def library_map(self) -> LibraryMap:
            return library_map

        def embed_image(self, image: object) -> np.ndarray:
            raise AssertionError("a fresh analysis is placed by its own vector, not embedded again")

    fresh = Analysis(input_kind="image", encoder="classic", query_vector=np.array([0.5, -1.0, 9.0], np.float32))
    assert query_position(_Engine(), fresh) == pytest.approx((0.5, -1.0))  # type: ignore[arg-type]
    assert query_position(_Engine(), Analysis(input_kind="text")) is None  # type: ignore[arg-type]
    assert query_position(_Engine(), Analysis(input_kind="image", encoder="classic")) is None  # type: ignore[arg-type]


# ---------------------------------------------------------------------------------------------- viewer
def test_render_pixels_window_invert_and_identity() -> None:
    ramp = np.linspace(0, 1, 64, dtype=np.float32).reshape(8, 8)
    assert np.allclose(render_pixels(ramp, ViewSettings()), ramp)
    inverted = render_pixels(ramp, ViewSettings(inverted=True))
    assert np.allclose(inverted, 1 - ramp)
    narrow = render_pixels(ramp, ViewSettings(center=0.5, width=0.2))
    assert narrow.min() == 0.0 and narrow.max() == 1.0
    assert (narrow == 0).sum() > (ramp == 0).sum()  # the window clips the dark end
    enhanced = render_pixels(np.tile(ramp, (8, 8)) * 0.3 + 0.3, ViewSettings(enhanced=True))
    assert enhanced.max() - enhanced.min() > 0.3  # CLAHE stretches a low-contrast image


def test_downsample_and_pad_keep_aspect() -> None:
    wide = np.random.default_rng(0).random((300, 600), dtype=np.float32)
    small = downsample(wide, 100)
    assert small.shape == (50, 100)
    assert downsample(wide, 1000) is not None and downsample(wide, 1000).shape == (300, 600)
    square = pad_to_square(wide, 64)
    assert square.shape == (64, 64)
    assert square[0].max() == 0.0 and square[32].max() > 0.0  # letterboxed top, image in the middle


def test_needs_windowing_for_dicom_and_16_bit_only() -> None:
    assert needs_windowing({"format": "dicom", "bit_depth": 12})
    assert needs_windowing({"format": "png", "bit_depth": 16})
    assert not needs_windowing({"format": "png", "bit_depth": 8})
    assert not needs_windowing(None)


def test_linked_figure_shares_axes() -> None:
    images = [np.zeros((40, 40), np.float32), np.ones((30, 50), np.float32)]
    fig = linked_figure(images, ["a", "b"], ViewSettings(), side=32)
    assert len(fig.data) == 2
    assert fig.layout.xaxis2.matches == "x" and fig.layout.yaxis2.matches == "y"
    assert all(trace.source.startswith("data:image/png;base64,") for trace in fig.data)


# ---------------------------------------------------------------------------------------------- figures + tables
def test_scores_bar_and_map_highlight_neighbours_and_escape_hover() -> None:
    neighbours = _neighbours(3)
    bar = scores_bar(neighbours)
    assert sorted(sum((list(t.y) for t in bar.data), [])) == sorted(n.score for n in neighbours)
    frame = pd.DataFrame(
        {
            "case_id": ["c0", "c1", "c2", "c3"],
            "x": [0.0, 1.0, 2.0, 3.0],
            "y": [0.0, 1.0, 0.5, 0.2],
            "label": ["normal", "effusion", "normal", "<b>x</b>"],
            "dataset": ["s"] * 4,
            "snippet": ["<script>", "", "", ""],
        }
    )
    fig = library_map_figure(frame, query_xy=(0.5, 0.5), neighbour_ids=["c1", "c2", "missing"])
    names = [t.name for t in fig.data]
    assert "query" in names and "nearest cases" in names
    ringed = next(t for t in fig.data if t.name == "nearest cases")
    assert list(ringed.x) == [1.0, 2.0]
    dumped = fig.to_json()
    assert "<script>" not in dumped and "<b>x</b>" not in dumped


def test_votes_frame_and_similarity_distribution() -> None:
    frame = votes_frame([("normal", 0.75), ("effusion", 0.25)])
    assert list(frame["label"]) == ["normal", "effusion"] and frame["share"].sum() == pytest.approx(1.0)
    scores = pd.DataFrame({"score": [0.9, 0.8], "which": ["top match", "all neighbours"]})
    assert len(similarity_distribution(scores).data) == 2


def test_history_table_and_scores_from_saved_rows() -> None:
    history = pd.DataFrame({
        "id": [2, 1], "created_at": pd.to_datetime(["2026-01-02", "2026-01-01"]), "input_kind": ["image", "text"],
        "input_name": ["a.png", "question"], "question": ["", "effusion?"], "label": ["normal", "effusion"],
        "reasoner_backend": ["evidence", "evidence"], "total_seconds": [0.5, 0.25],
        "neighbours": [json.dumps([{"case_id": "c9", "label": "normal", "score": 0.8, "rank": 1},
                                   {"case_id": "c8", "label": "normal", "score": 0.7, "rank": 2}]), "[]"],
    })
    table = history_table(history)
    assert list(table.columns) == ["id", "date", "input", "label", "backend", "top match", "similarity", "seconds"]
    assert table.iloc[0]["top match"] == "normal" and table.iloc[0]["similarity"] == pytest.approx(0.8)
    assert table.iloc[1]["input"] == "“effusion?”" and pd.isna(table.iloc[1]["similarity"])
    scores = neighbour_scores(history)
    assert sorted(scores["which"]) == ["all neighbours", "all neighbours", "top match"]


# ---------------------------------------------------------------------------------------------- panels (AppTest)
def _panels_app() -> None:
    import streamlit as st

    from medrag.analysis import Analysis  # AppTest runs this function's body on its own
    from medrag.records import WebResult
    from medrag.ui.panels import render_label_and_findings, render_outcome
    from medrag.ui.references import render_web

    view = Analysis(
        label="effusion",
        findings={"effusion": "present", "pneumothorax": "absent", "edema": "uncertain"},
        finished=True,
        web_results=[
            WebResult(
                "Pleural effusion [link](javascript:x)",
                "https://radiopaedia.org/articles/effusion",
                "radiopaedia.org",
                "<b>snip</b>",
            ),
            WebResult("Evil", "javascript:alert(1)", "nih.gov", "s", image_url="javascript:bad"),
        ],
        web_status="2 results from tavily",
        notes=["The question was cut to its first 4,000 of 9,000 characters."],
        summary_notes=["the labeler read part of the text"],
    )
    if st.session_state.get("refuse"):
        view.refused = True
        from medrag.records import GuardVerdict

        view.verdict = GuardVerdict(False, "This is not a chest X-ray question.")
    if render_outcome(view):
        render_label_and_findings(view)
        render_web(view)


def test_panels_render_findings_and_only_safe_web_links() -> None:
    at = AppTest.from_function(_panels_app).run()
    assert not at.exception
    assert [h.value for h in at.subheader][0] == "effusion"
    findings = at.dataframe[0].value
    assert list(findings["status"]) == ["present", "uncertain", "absent"]
    buttons = at.get("link_button")
    assert [b.proto.url for b in buttons] == ["https://radiopaedia.org/articles/effusion"]
    titles = [m.value for m in at.markdown if "Pleural" in m.value]
    assert titles and "](javascript" not in titles[0]
    assert any(t.value == "<b>snip</b>" for t in at.text)  # shown as text, not HTML
    notes = [c.value.replace("\\", "") for c in at.caption if ":material/info:" in c.value]
    assert len(notes) == 2 and "cut to its first 4,000" in notes[0] and "labeler" in notes[1]


def test_panels_show_a_refusal_instead_of_results() -> None:
    at = AppTest.from_function(_panels_app)
    at.session_state["refuse"] = True
    at.run()
    assert not at.exception
    assert any("Refused by the domain guard" in w.value for w in at.warning)
    assert not at.subheader


def test_spawn_safe_main_hides_the_page_file_from_workers_and_restores_it(monkeypatch: pytest.MonkeyPatch) -> None:
    import sys
    import types

    from medrag.ui.resources import spawn_safe_main

    page = types.ModuleType("__main__")
    page.__file__ = "/app/pages/1_Analyze.py"  # what Streamlit's script runner installs
    monkeypatch.setitem(sys.modules, "__main__", page)
    with spawn_safe_main():
        assert not hasattr(sys.modules["__main__"], "__file__")
    assert page.__file__ == "/app/pages/1_Analyze.py"
    with pytest.raises(RuntimeError), spawn_safe_main():
        raise RuntimeError("boom")
    assert page.__file__ == "/app/pages/1_Analyze.py"


def test_store_lease_holds_the_file_while_used_and_lets_go_when_idle(tmp_path) -> None:  # type: ignore[no-untyped-def]
    import time

    import duckdb

    from medrag.config import Settings
    from medrag.ui.resources import StoreLease
    from medrag.workbench import Workbench

    workbench = Workbench(Settings(data_dir=tmp_path))
    lease = StoreLease(workbench, linger_s=0.3)
    lease.touch()
    assert lease.held
    assert workbench.store.count_cases() == 0  # calls work on the held connection
    time.sleep(0.15)
    lease.touch()  # activity pushes the release back
    time.sleep(0.2)
    assert lease.held
    deadline = time.monotonic() + 5
    while lease.held and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not lease.held
    # Released: the file is closed, so the store's next call opens it afresh and still works.
    assert workbench.store.count_cases() == 0
    con = duckdb.connect(str(workbench.settings.db_path))  # nobody holds the file now
    con.close()


def test_compute_line_names_the_device_and_the_openclip_model(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import torch

    from medrag.config import Settings
    from medrag.ui.tables import compute_line

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)  # the same answer on a GPU machine
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)
    monkeypatch.delenv("MEDRAG_DEVICE", raising=False)
    line = compute_line(Settings(data_dir=tmp_path))
    assert "`cpu` (chosen automatically)" in line and "model: not set" in line
    line = compute_line(Settings(data_dir=tmp_path, device="cuda", openclip_model="local-dir:/models/my`clip"))
    assert "`cuda` is not usable here" in line and "`local-dir:/models/myclip`" in line


def test_the_image_reading_stage_says_which_readers_ran_and_what_they_found() -> None:
    from medrag.reading.base import FindingRead, ImageReading

    reading = ImageReading(findings={
        "effusion": FindingRead("effusion", "present", 0.9, ("right lower zone",)),
        "support devices": FindingRead("support devices", "present"),
        "edema": FindingRead("edema", "absent", 0.02),
    }, readers=("anatomy", "medrag-cnn"))
    analysis = Analysis(reading=reading, timings={"findings": 0.12})
    expected = "Image reading by anatomy + medrag-cnn: effusion, support devices · 0.12 s"
    assert stage_line(analysis, "findings") == expected
    nothing = Analysis(reading=ImageReading(findings={"edema": FindingRead("edema", "absent")}, readers=("anatomy",)))
    assert stage_line(nothing, "findings") == "Image reading by anatomy: nothing definite"
    assert "no image reader" in stage_line(Analysis(), "findings")


def test_the_warm_up_is_marked_finished_even_when_a_backend_fails(tmp_path: Path) -> None:
    from types import SimpleNamespace

    from medrag.errors import BackendUnavailableError
    from medrag.ui import resources

    def broken() -> None:
        raise BackendUnavailableError("no weights here")

    workbench = SimpleNamespace(settings=SimpleNamespace(data_dir=tmp_path), backend_status=broken)
    assert not resources.warm_up_finished(workbench)  # type: ignore[arg-type]
    resources._warm(workbench)  # type: ignore[arg-type]
    assert resources.warm_up_finished(workbench)  # type: ignore[arg-type]  # the Analyze page stops saying "loading"
