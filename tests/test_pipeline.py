"""analyze(): event order, streaming, summary, neighbours, history row, failure isolation, refusals."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from medrag import events as ev
from medrag.analysis import Analysis
from medrag.pipeline import MAX_QUESTION_CHARS, impression_of, run_analysis
from medrag.reasoners import ReasoningRequest
from medrag.records import Summary


@pytest.fixture()
def use_backend(demo_workbench) -> Iterator[Callable[[str, Any], None]]:  # type: ignore[no-untyped-def]
    """Put a backend into the shared workbench for one test; the originals are put back afterwards."""
    originals: dict[str, Any] = {}

    def use(stage: str, member: Any) -> None:
        originals.setdefault(stage, demo_workbench.backends.get(stage))
        demo_workbench.backends.use(stage, member)

    yield use
    for stage, member in originals.items():
        demo_workbench.backends.use(stage, member)


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
    assert kinds == ["InputReady", "GuardChecked", "ImageFindingsReady", "NeighboursFound", "ReasoningDone",
                     "SummaryReady", "WebResultsReady", "AnalysisSaved", "AnalysisFinished"]
    reading = next(e for e in events if isinstance(e, ev.ImageFindingsReady)).reading
    assert "anatomy" in reading.readers and reading.findings
    tokens = [e.text for e in events if isinstance(e, ev.ReasoningToken)]
    done = next(e for e in events if isinstance(e, ev.ReasoningDone))
    assert len(tokens) > 20 and "".join(tokens) == done.text and done.backend == "evidence"
    neighbours = next(e for e in events if isinstance(e, ev.NeighboursFound)).neighbours
    assert len(neighbours) == 5 and neighbours[0].score >= neighbours[-1].score
    # The image is in the library: it is that case, left out of its own neighbours (as from the Library mode).
    own = demo_workbench.store.cases_frame().set_index("image_path").loc[str(path), "case_id"]
    assert all(n.case_id != own for n in neighbours) and neighbours[0].score < 0.9999
    web = next(e for e in events if isinstance(e, ev.WebResultsReady))
    assert "off" in web.status
    saved = next(e for e in events if isinstance(e, ev.AnalysisSaved))
    assert demo_workbench.store.count_analyses() == before + 1
    row = demo_workbench.store.get_analysis(saved.analysis_id)
    assert row.reasoning == done.text and row.reasoner_backend == "evidence"
    assert len(row.neighbours) == 5 and set(row.timings) >= {"input", "guard", "neighbours", "reasoning", "summary"}
    assert Path(row.upload_path).is_file() and Path(row.upload_path).parent.parent.name == "uploads"
    # The events already told the app where the upload is: nothing needs re-reading after the save.
    ready = next(e for e in events if isinstance(e, ev.InputReady))
    assert ready.upload_path == row.upload_path and ready.name == path.name
    found = next(e for e in events if isinstance(e, ev.NeighboursFound))
    assert found.query_vector is not None and found.query_vector.ndim == 1


def test_exclusion_finds_same_finding_neighbours(demo_workbench) -> None:  # type: ignore[no-untyped-def]
    path, label = _first_demo_image(demo_workbench)
    own = demo_workbench.store.cases_frame(label=label).iloc[0]["case_id"]
    result = run_analysis(demo_workbench, path, save=False, web=False, exclude_case_ids={own})
    assert result.neighbours and all(n.case_id != own for n in result.neighbours)
    assert result.label


def test_a_library_case_is_left_out_of_its_own_neighbours(demo_workbench) -> None:  # type: ignore[no-untyped-def]
    path, label = _first_demo_image(demo_workbench)
    own = str(demo_workbench.store.cases_frame(label=label).iloc[0]["case_id"])
    result = run_analysis(demo_workbench, path, save=False, web=False, case_id=own)
    assert result.case_id == own and result.neighbours
    assert all(n.case_id != own for n in result.neighbours)


def test_an_upload_of_a_library_film_is_that_case_and_not_its_own_neighbour(  # type: ignore[no-untyped-def]
    demo_workbench, tmp_path: Path
) -> None:
    path, _ = _first_demo_image(demo_workbench)
    own = str(demo_workbench.store.cases_frame().set_index("image_path").loc[str(path), "case_id"])
    copy = tmp_path / "renamed upload.png"
    copy.write_bytes(path.read_bytes())
    result = run_analysis(demo_workbench, copy, save=False, web=False)
    assert result.case_id == own and result.neighbours
    assert all(n.case_id != own for n in result.neighbours)
    assert any("already in the library" in n and "left out of its own similar cases" in n for n in result.notes)
    from PIL import Image, ImageOps

    flipped = tmp_path / "flipped.png"  # another film (upside down): not in the library
    ImageOps.flip(Image.open(copy)).save(flipped)
    fresh = run_analysis(demo_workbench, flipped, save=False, web=False)
    assert fresh.case_id == "" and not any("already in the library" in n for n in fresh.notes)


def test_text_question_is_answered_from_library(demo_workbench) -> None:  # type: ignore[no-untyped-def]
    result = run_analysis(
        demo_workbench, None, question="What does cardiomegaly look like on a chest x-ray?", save=False, web=False
    )
    assert result.verdict is not None and result.verdict.allowed
    assert result.neighbours, "text search returns library cases"
    assert "Question:" in result.reasoning
    assert result.query_vector is None  # only an image query is placed on the library map


def test_off_topic_question_is_refused_and_not_saved(demo_workbench) -> None:  # type: ignore[no-untyped-def]
    before = demo_workbench.store.count_analyses()
    result = run_analysis(demo_workbench, None, question="What is the best pizza in Rome?")
    assert result.verdict is not None and not result.verdict.allowed and result.refused and result.finished
    assert "reasoning" not in result.stages and demo_workbench.store.count_analyses() == before


def test_unreadable_input_fails_cleanly(demo_workbench, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    bad = tmp_path / "notes.png"
    bad.write_text("this is not an image")
    result = run_analysis(demo_workbench, bad)
    assert list(result.failures) == ["input"]
    assert "image" in result.failures["input"].lower()
    assert result.finished and not result.ok


class _BrokenReasoner:
    name = "broken"
    model = "none"

    def stream(self, request: ReasoningRequest) -> Iterator[str]:
        raise ConnectionError("server went away")
        yield ""  # pragma: no cover


def test_failing_reasoner_does_not_stop_independent_stages(demo_workbench, use_backend) -> None:  # type: ignore[no-untyped-def]
    path, _ = _first_demo_image(demo_workbench)
    use_backend("reasoner", _BrokenReasoner())
    result = run_analysis(demo_workbench, path, web=False)
    assert list(result.failures) == ["reasoning"]
    assert "server went away" in result.failures["reasoning"]
    assert result.neighbours and result.label  # summary falls back to the similar cases
    row = demo_workbench.store.get_analysis(result.analysis_id)
    assert row is not None and list(row.failures) == ["reasoning"]


class _CautiousSummariser:
    name = "cautious"

    def summarise(self, text: str) -> Summary:
        return Summary(label="Cardiomegaly", findings={"cardiomegaly": "present"}, backend=self.name,
                       notes=("the labeler read 20,000 of 90,000 characters",))


def test_summary_notes_reach_the_events_the_history_and_the_reopened_analysis(demo_workbench, use_backend) -> None:  # type: ignore[no-untyped-def]
    path, _ = _first_demo_image(demo_workbench)
    use_backend("summariser", _CautiousSummariser())
    events = list(demo_workbench.analyze(path, web=False))
    ready = next(e for e in events if isinstance(e, ev.SummaryReady))
    # The summariser's own caveat comes first; the consistency check may add its own after it.
    assert ready.summary.notes[0] == "the labeler read 20,000 of 90,000 characters"
    result = Analysis.fold(events)
    assert result.summary_notes[0] == "the labeler read 20,000 of 90,000 characters"
    assert "the labeler read 20,000 of 90,000 characters" in result.all_notes
    row = demo_workbench.store.get_analysis(result.analysis_id)
    assert row is not None and row.summary_notes == list(ready.summary.notes)
    assert row.meta["format"] == "png"  # the image metadata is still there beside the notes
    assert row.all_notes == result.all_notes


def test_a_question_over_the_limit_is_cut_with_a_note_saved_and_reopened(demo_workbench) -> None:  # type: ignore[no-untyped-def]
    question = "What are the signs of a pleural effusion on a chest x-ray? " * 80
    assert len(question) > MAX_QUESTION_CHARS + 1
    result = run_analysis(demo_workbench, None, question=question, web=False)
    assert result.ok and result.failures == {}, result.failures
    assert len(result.question) == MAX_QUESTION_CHARS
    assert len(result.notes) == 1 and f"{MAX_QUESTION_CHARS:,} of {len(question.strip()):,}" in result.notes[0]
    assert result.neighbours and result.reasoning and result.label and result.analysis_id
    row = demo_workbench.store.get_analysis(result.analysis_id)
    assert row is not None and row.ok and row.failures == {}
    assert row.notes == result.notes and row.question == result.question
    assert row.reasoning == result.reasoning and row.label == result.label
    assert [n.case_id for n in row.neighbours] == [n.case_id for n in result.neighbours]


def test_impression_extraction() -> None:
    assert impression_of("**Lungs.** clear\n**Impression.** Cardiomegaly.").strip() == "Cardiomegaly."
    assert impression_of("IMPRESSION: small effusion") == "small effusion"
    assert impression_of("no sections here") == "no sections here"


class _ContradictingSummariser:
    name = "contradicting"

    def summarise(self, text: str) -> Summary:
        return Summary(label="Normal", findings={"no finding": "present", "effusion": "absent"}, backend=self.name)


class _EffusionReasoner:
    name = "effusion-reasoner"
    model = "fixed"

    def stream(self, request: object) -> Iterator[str]:
        yield "**Pleura.** Large right pleural effusion.\n**Impression.** No acute abnormality.\n"


def test_the_findings_table_never_contradicts_the_reasoning(demo_workbench, use_backend) -> None:  # type: ignore[no-untyped-def]
    path, _ = _first_demo_image(demo_workbench)
    use_backend("reasoner", _EffusionReasoner())
    use_backend("summariser", _ContradictingSummariser())
    result = run_analysis(demo_workbench, path, web=False, save=False)
    # The body reports an effusion the summary ruled out: the table says uncertain, and the film is not "normal".
    assert result.findings["effusion"] == "uncertain"
    assert result.findings["no finding"] == "absent"
    assert any("effusion" in note for note in result.summary_notes)
