"""analyze(): event order, streaming, summary, neighbours, history row, failure isolation, refusals."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from medrag import events as ev
from medrag.pipeline import impression_of, run_to_completion
from medrag.reasoners import ReasoningRequest
from medrag.records import Summary


def _first_demo_image(workbench) -> tuple[Path, str]:  # type: ignore[no-untyped-def]
    frame = workbench.store.cases_frame(label="cardiomegaly")
    if frame.empty:
        frame = workbench.store.cases_frame()
    row = frame.iloc[0]
    return Path(row["image_path"]), str(row["label"])


def test_image_analysis_streams_in_order_and_saves_history(demo_workbench) -> None:  # type: ignore[no-untyped-def]
    path, _ = _first_demo_image(demo_workbench)
    before = demo_workbench.store.count_analyses()
    events = list(demo_workbench.analyze(path, k=5, web=True))
    kinds = [type(e).__name__ for e in events if not isinstance(e, (ev.StageStarted, ev.ReasoningToken))]
    assert kinds == ["InputReady", "GuardChecked", "NeighboursFound", "ReasoningDone", "SummaryReady",
                     "WebResultsReady", "AnalysisSaved", "AnalysisFinished"]
    tokens = [e.text for e in events if isinstance(e, ev.ReasoningToken)]
    done = next(e for e in events if isinstance(e, ev.ReasoningDone))
    assert len(tokens) > 20 and "".join(tokens) == done.text and done.backend == "evidence"
    neighbours = next(e for e in events if isinstance(e, ev.NeighboursFound)).neighbours
    assert len(neighbours) == 5 and neighbours[0].score >= neighbours[-1].score
    # The image is in the library, so its own case comes first.
    assert neighbours[0].image_path == str(path) and neighbours[0].score > 0.99
    web = next(e for e in events if isinstance(e, ev.WebResultsReady))
    assert "off" in web.status
    saved = next(e for e in events if isinstance(e, ev.AnalysisSaved))
    assert demo_workbench.store.count_analyses() == before + 1
    row = demo_workbench.store.get_analysis(saved.analysis_id)
    assert row["reasoning"] == done.text and row["reasoner_backend"] == "evidence"
    assert len(row["neighbours"]) == 5 and set(row["timings"]) >= {"input", "guard", "neighbours", "reasoning", "summary"}
    assert Path(row["upload_path"]).is_file() and Path(row["upload_path"]).parent.parent.name == "uploads"


def test_exclusion_finds_same_finding_neighbours(demo_workbench) -> None:  # type: ignore[no-untyped-def]
    path, label = _first_demo_image(demo_workbench)
    own = demo_workbench.store.cases_frame(label=label).iloc[0]["case_id"]
    result = run_to_completion(demo_workbench.analyze(path, save=False, web=False, exclude_case_ids={own}))
    assert all(n.case_id != own for n in result["neighbours"])
    assert result["summary"].label


def test_text_question_is_answered_from_library(demo_workbench) -> None:  # type: ignore[no-untyped-def]
    result = run_to_completion(demo_workbench.analyze(None, question="What does cardiomegaly look like on a chest x-ray?", save=False, web=False))
    assert result["guard"].allowed
    assert result["neighbours"], "text search returns library cases"
    assert "Question:" in result["reasoning"].text


def test_off_topic_question_is_refused_and_not_saved(demo_workbench) -> None:  # type: ignore[no-untyped-def]
    before = demo_workbench.store.count_analyses()
    result = run_to_completion(demo_workbench.analyze(None, question="What is the best pizza in Rome?"))
    assert not result["guard"].allowed and result["finished"].refused
    assert "reasoning" not in result and demo_workbench.store.count_analyses() == before


def test_unreadable_input_fails_cleanly(demo_workbench, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    bad = tmp_path / "notes.png"
    bad.write_text("this is not an image")
    result = run_to_completion(demo_workbench.analyze(bad))
    assert [f.stage for f in result["failed"]] == ["input"]
    assert "image" in result["failed"][0].message.lower()
    assert result["finished"].refused


class _BrokenReasoner:
    name = "broken"
    model = "none"

    def stream(self, request: ReasoningRequest) -> Iterator[str]:
        raise ConnectionError("server went away")
        yield ""  # pragma: no cover


def test_failing_reasoner_does_not_stop_independent_stages(demo_workbench, monkeypatch: pytest.MonkeyPatch) -> None:  # type: ignore[no-untyped-def]
    path, _ = _first_demo_image(demo_workbench)
    monkeypatch.setitem(demo_workbench._members, "reasoner", _BrokenReasoner())
    result = run_to_completion(demo_workbench.analyze(path, web=False))
    assert [f.stage for f in result["failed"]] == ["reasoning"]
    assert "server went away" in result["failed"][0].message
    assert result["neighbours"] and result["summary"].label  # summary falls back to the similar cases
    row = demo_workbench.store.get_analysis(result["analysis_id"])
    assert row["errors"][0]["stage"] == "reasoning"


class _CautiousSummariser:
    name = "cautious"

    def summarise(self, text: str) -> Summary:
        return Summary(label="Cardiomegaly", findings={"cardiomegaly": "present"}, backend=self.name,
                       notes=("the labeler read 20,000 of 90,000 characters",))


def test_summary_notes_reach_the_events_the_history_and_the_reopened_view(demo_workbench, monkeypatch: pytest.MonkeyPatch) -> None:  # type: ignore[no-untyped-def]
    from medrag.ui.analysis import view_from_record

    path, _ = _first_demo_image(demo_workbench)
    monkeypatch.setitem(demo_workbench._members, "summariser", _CautiousSummariser())
    result = run_to_completion(demo_workbench.analyze(path, web=False))
    assert result["summary"].notes == ("the labeler read 20,000 of 90,000 characters",)
    row = demo_workbench.store.get_analysis(result["analysis_id"])
    assert row["meta"]["summary_notes"] == ["the labeler read 20,000 of 90,000 characters"]
    assert row["meta"]["format"] == "png"  # the image metadata is still there beside the notes
    assert view_from_record(row).summary_notes == ["the labeler read 20,000 of 90,000 characters"]


def test_impression_extraction() -> None:
    assert impression_of("**Lungs.** clear\n**Impression.** Cardiomegaly.").strip() == "Cardiomegaly."
    assert impression_of("IMPRESSION: small effusion") == "small effusion"
    assert impression_of("no sections here") == "no sections here"
