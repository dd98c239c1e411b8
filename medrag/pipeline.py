"""``analyze()``: the one orchestration of an analysis, consumed alike by the CLI, the app and the tests.

input → guard → neighbours → reasoning (streamed) → summary → web → save. Each stage is timed; a failing
stage yields :class:`StageFailed` (and is logged with its traceback) while the stages that do not depend on
it still run. Only a refused or unreadable input ends the stream early. The events are folded into one
:class:`~medrag.analysis.Analysis` as they are yielded; that record is what the history saves.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Iterator
from pathlib import Path
from types import TracebackType

from medrag.analysis import Analysis
from medrag.engine.protocol import AnalysisEngine
from medrag.errors import BackendUnavailableError, EmptyInputError, MedRAGError
from medrag.events import (
    AnalysisFinished,
    AnalysisSaved,
    Event,
    GuardChecked,
    ImageFindingsReady,
    InputReady,
    NeighboursFound,
    ReasoningDone,
    ReasoningToken,
    Stage,
    StageFailed,
    StageStarted,
    SummaryReady,
    WebResultsReady,
)
from medrag.reasoners import ReasoningRequest
from medrag.reasoners.base import Reasoner
from medrag.records import CXRImage, GuardVerdict, Neighbour, Summary
from medrag.textsafe import one_line, printable

log = logging.getLogger("medrag.pipeline")

MAX_QUESTION_CHARS = 4000
_IMPRESSION = re.compile(r"\**\s*impression\s*[.:]?\s*\**\s*[:.]?", re.IGNORECASE)


def impression_of(reasoning: str) -> str:
    """The impression section of a reasoning text (what the summariser condenses), else the whole text."""
    matches = list(_IMPRESSION.finditer(reasoning))
    if not matches:
        return reasoning
    tail = reasoning[matches[-1].end():].strip()
    return tail or reasoning


class _StageRun:
    """Times one stage and turns an exception inside it into a :class:`StageFailed` (logged with traceback).

    Used as ``with _StageRun("web") as run: ...``; afterwards ``run.failure`` is the event to yield, if any.
    ``BaseException``s that are not ``Exception`` (KeyboardInterrupt, GeneratorExit) pass through.
    """

    def __init__(self, stage: Stage) -> None:
        self.stage = stage
        self.started = time.perf_counter()
        self.failure: StageFailed | None = None

    @property
    def seconds(self) -> float:
        return time.perf_counter() - self.started

    def __enter__(self) -> _StageRun:
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> bool:
        if exc is None or not isinstance(exc, Exception):
            return False
        expected = isinstance(exc, MedRAGError)
        log.log(logging.INFO if expected else logging.WARNING, "stage %s failed", self.stage, exc_info=exc)
        # One line without terminal escapes: the message may quote a server's or a file's text, and it is
        # printed by the CLI and stored in the history.
        message = one_line(str(exc) if expected else f"{type(exc).__name__}: {exc}")
        self.failure = StageFailed(
            stage=self.stage, message=message, error_type=type(exc).__name__, seconds=self.seconds
        )
        return True


def _store_upload(engine: AnalysisEngine, image: CXRImage) -> Path:
    from medrag.imaging import store_upload

    return store_upload(image, engine.settings.uploads_dir)


def analyze(
    engine: AnalysisEngine,
    source: Path | bytes | str | None = None,
    *,
    question: str = "",
    name: str = "",
    k: int | None = None,
    web: bool = True,
    save: bool = True,
    label_filter: str | None = None,
    dataset_filter: str | None = None,
    exclude_case_ids: set[str] | None = None,
    case_id: str = "",
) -> Iterator[Event]:
    """Analyse an image (path or bytes) and/or a text question, yielding events as each stage finishes.

    ``case_id`` names the library case being analysed (it is excluded from its own neighbours).
    """
    settings = engine.settings
    k = k or settings.k
    record = Analysis(case_id=case_id)
    t_all = time.perf_counter()

    def emit(event: Event) -> Event:
        record.apply(event)
        return event

    def finish(refused: bool = False) -> Event:
        total = time.perf_counter() - t_all
        return emit(AnalysisFinished(stage="save", timings=dict(record.timings), total_seconds=total, refused=refused))

    # ---- input
    yield emit(StageStarted(stage="input"))
    image: CXRImage | None = None
    notes: list[str] = []
    question = printable(question or "").strip()
    with _StageRun("input") as run:
        if source is None and not question:
            raise EmptyInputError("Nothing to analyse: give an image (PNG, JPEG or DICOM) or type a question.")
        # Before anything is written: a data folder moved away must not be re-created by the upload copy.
        engine.check_location()
        if len(question) > MAX_QUESTION_CHARS:
            notes.append(f"The question was cut to its first {MAX_QUESTION_CHARS:,} of {len(question):,} characters.")
            question = question[:MAX_QUESTION_CHARS]
        thumb = upload = ""
        measurements: dict[str, float] = {}
        if source is not None:
            from medrag.imaging import load_image, measure, save_thumbnail

            raw = Path(source) if isinstance(source, str) else source
            image = load_image(raw, name=name or (str(raw) if isinstance(raw, Path) else ""))
            name = name or (raw.name if isinstance(raw, Path) else "upload")
            thumb = str(save_thumbnail(image, settings.thumbs_dir))
            upload = str(_store_upload(engine, image))
            measurements = {key: float(v) for key, v in measure(image).items() if isinstance(v, (int, float))}
            measurements.setdefault("width", float(image.shape[1]))
            measurements.setdefault("height", float(image.shape[0]))
            if not case_id:
                case_id = _same_library_case(engine, image, notes)
    if run.failure is not None:
        yield emit(run.failure)
        yield finish(refused=True)
        return
    yield emit(InputReady(
        stage="input", kind="image" if image is not None else "text",
        name=printable(name, keep_newlines=False)[:300], question=question,
        image_hash=image.pixel_hash if image else "", thumb_path=thumb, upload_path=upload,
        meta=dict(image.meta) if image else {}, measurements=measurements, notes=tuple(notes), seconds=run.seconds,
        case_id=case_id,
    ))

    # ---- guard
    yield emit(StageStarted(stage="guard"))
    t_guard = time.perf_counter()
    verdict = _check_domain(engine, question, image)
    yield emit(GuardChecked(stage="guard", verdict=verdict, seconds=time.perf_counter() - t_guard))
    if not verdict.allowed:
        yield finish(refused=True)
        return

    # ---- findings (what the image readers see; a text question has none)
    if image is not None:
        yield emit(StageStarted(stage="findings"))
        with _StageRun("findings") as run:
            reading = engine.read_image(image)
            ready_reading = (
                ImageFindingsReady(stage="findings", reading=reading, seconds=run.seconds) if reading else None
            )
        if run.failure is not None:
            yield emit(run.failure)
        elif ready_reading is not None:
            yield emit(ready_reading)

    # ---- neighbours
    yield emit(StageStarted(stage="neighbours"))
    neighbours: list[Neighbour] = []
    with _StageRun("neighbours") as run:
        if image is not None:
            kind, encoder_name, vector = "image", engine.image_encoder_name, engine.embed_image(image)
            exclude = set(exclude_case_ids or ()) | ({case_id} if case_id else set())
            neighbours = engine.search_vector(
                kind, vector, k, label=label_filter, dataset=dataset_filter, exclude=exclude or None
            )
        else:
            encoder_name = engine.text_encoder_name
            kind, vector = engine.embed_question(question)
            neighbours = engine.search_vector(kind, vector, k, label=label_filter, dataset=dataset_filter)
        found = NeighboursFound(stage="neighbours", neighbours=tuple(neighbours), encoder=encoder_name,
                                query_vector=vector if kind == "image" else None, seconds=run.seconds)
    yield emit(run.failure or found)

    # ---- reasoning
    yield emit(StageStarted(stage="reasoning"))
    request = ReasoningRequest(
        image=image, question=question, neighbours=tuple(neighbours), measurements=dict(record.measurements),
        reading=record.reading,
    )
    pieces: list[str] = []
    with _StageRun("reasoning") as run:
        reasoner: Reasoner = engine.reasoner
        first_token = 0.0
        fallback_notes: tuple[str, ...] = ()
        while True:
            try:
                for piece in reasoner.stream(request):
                    if not pieces:
                        first_token = run.seconds
                    pieces.append(piece)
                    yield emit(ReasoningToken(stage="reasoning", text=piece))
                break
            except BackendUnavailableError as exc:
                # A model server that is down, busy or too slow before its first token: the offline reasoner
                # writes this reading (with a note), so the analysis still has one. A stream cut midway fails.
                if pieces or reasoner.name == "evidence":
                    raise
                from medrag.reasoners.evidence import EvidenceReasoner

                # One line without terminal escapes, as a failed stage's message: it may quote the server's text.
                fallback_notes = (one_line(f"{exc} The offline evidence reasoner wrote this reading instead."),)
                log.info("reasoner %s unavailable; the evidence reasoner takes over", reasoner.name)
                reasoner = EvidenceReasoner()
        done = ReasoningDone(stage="reasoning", text="".join(pieces), backend=reasoner.name, model=reasoner.model,
                             seconds=run.seconds, first_token_seconds=first_token, notes=fallback_notes)
    yield emit(run.failure or done)
    reasoning = "".join(pieces) if run.failure is None else ""

    # ---- summary
    yield emit(StageStarted(stage="summary"))
    with _StageRun("summary") as run:
        summary = _summarise(engine, reasoning, request)
        if reasoning.strip():
            from medrag.consistency import reconcile

            summary = reconcile(summary, reasoning)
        ready = SummaryReady(stage="summary", summary=summary, seconds=run.seconds)
    yield emit(run.failure or ready)

    # ---- web
    yield emit(StageStarted(stage="web"))
    with _StageRun("web") as run:
        results: tuple[object, ...] = ()
        status, query = "web search off for this analysis", ""
        if web:
            from medrag.websearch import search_references, web_query_for

            query = web_query_for(record.label, question)
            found_refs, status = search_references(query, settings, cache=engine.web_cache)
            results = tuple(found_refs)
        refs = WebResultsReady(stage="web", results=results, status=status, query=query, seconds=run.seconds)  # type: ignore[arg-type]
    yield emit(run.failure or refs)

    # ---- save
    if save and settings.save_history:
        yield emit(StageStarted(stage="save"))
        with _StageRun("save") as run:
            record.total_seconds = time.perf_counter() - t_all
            analysis_id = engine.save_analysis(record)
            saved = AnalysisSaved(stage="save", analysis_id=analysis_id, seconds=run.seconds)
        yield emit(run.failure or saved)
    yield finish()


def _same_library_case(engine: AnalysisEngine, image: CXRImage, notes: list[str]) -> str:
    """The id of the library case with exactly these pixels ("" when there is none), with a note saying so.

    The same film analysed from the library is left out of its own similar cases; an upload of it must read the
    same way, or its own label would lead the similar-case vote at similarity 1.00."""
    from medrag.casenames import case_title

    try:
        case = engine.library_case(image.pixel_hash)
    except MedRAGError as exc:  # a store that cannot answer must not stop the analysis
        log.warning("could not look the upload up in the library: %s", exc)
        return ""
    if case is None:
        return ""
    notes.append(f"This image is already in the library ({one_line(case_title(case))}); it is left out of its own "
                 "similar cases, as when it is analysed from the library.")
    return case.case_id


def _check_domain(engine: AnalysisEngine, question: str, image: CXRImage | None) -> GuardVerdict:
    """The guard's verdict on the question and the image; a guard that fails refuses (never lets through)."""
    from medrag.guard import check_image, check_text

    verdicts: list[GuardVerdict] = []
    try:
        if question:
            verdicts.append(check_text(question, engine.text_encoder))
        if image is not None:
            verdicts.append(check_image(image))
    except Exception as exc:  # the guard itself failing must not let a request through unchecked
        log.warning("the domain guard failed", exc_info=exc)
        verdicts.append(GuardVerdict(False, f"The domain check failed ({exc}); try again.", kind="text"))
    refusal = next((v for v in verdicts if not v.allowed), None)
    return refusal or (verdicts[-1] if verdicts else GuardVerdict(True, "ok"))


def _summarise(engine: AnalysisEngine, reasoning: str, request: ReasoningRequest) -> Summary:
    if reasoning.strip():
        return engine.summariser.summarise(impression_of(reasoning))
    # No reasoning (its backend failed): condense the similar-case evidence instead.
    from medrag.labels import label_text
    from medrag.reasoners.evidence import EvidenceReasoner

    summary = label_text(impression_of(EvidenceReasoner().compose(request)))
    return Summary(summary.label, summary.findings, backend="rules (similar cases)", notes=summary.notes)


def run_analysis(engine: AnalysisEngine, source: Path | bytes | str | None = None, **options: object) -> Analysis:
    """Run a whole analysis and return its record (CLI batch use, tests, benchmarks)."""
    return Analysis.fold(analyze(engine, source, **options), into=Analysis(case_id=str(options.get("case_id") or "")))  # type: ignore[arg-type]


__all__ = ["MAX_QUESTION_CHARS", "analyze", "impression_of", "run_analysis"]
