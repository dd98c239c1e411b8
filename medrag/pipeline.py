"""``analyze()``: the one orchestration of an analysis, consumed alike by the CLI, the app and the tests.

input → guard → neighbours → reasoning (streamed) → summary → web → save. Each stage is timed; a failing
stage yields :class:`StageFailed` and the stages that do not depend on it still run. Only a refused or
unreadable input ends the stream early.
"""

from __future__ import annotations

import dataclasses
import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from medrag.errors import EmptyInputError, MedRAGError
from medrag.events import (
    AnalysisFinished,
    AnalysisSaved,
    Event,
    GuardChecked,
    InputReady,
    NeighboursFound,
    ReasoningDone,
    ReasoningToken,
    StageFailed,
    StageStarted,
    SummaryReady,
    WebResultsReady,
)
from medrag.reasoners import ReasoningRequest
from medrag.records import CXRImage, GuardVerdict, Neighbour, Summary, WebResult
from medrag.store import AnalysisRecord
from medrag.textsafe import printable

if TYPE_CHECKING:
    from medrag.workbench import Workbench

MAX_QUESTION_CHARS = 4000
_IMPRESSION = re.compile(r"\**\s*impression\s*[.:]?\s*\**\s*[:.]?", re.IGNORECASE)


def impression_of(reasoning: str) -> str:
    """The impression section of a reasoning text (what the summariser condenses), else the whole text."""
    matches = list(_IMPRESSION.finditer(reasoning))
    if not matches:
        return reasoning
    tail = reasoning[matches[-1].end():].strip()
    return tail or reasoning


def _failed(stage: str, exc: BaseException, started: float) -> StageFailed:
    message = str(exc) if isinstance(exc, MedRAGError) else f"{type(exc).__name__}: {exc}"
    return StageFailed(stage=stage, message=message, error_type=type(exc).__name__, seconds=time.perf_counter() - started)  # type: ignore[arg-type]


def _store_upload(workbench: "Workbench", image: CXRImage) -> Path:
    """A content-addressed 16-bit PNG of the decoded pixels: never the user's path, never DICOM tags."""
    import io

    from PIL import Image

    from medrag.imaging import atomic_write

    target = workbench.settings.uploads_dir / image.pixel_hash[:2] / f"{image.pixel_hash}.png"
    if not target.exists():
        target.parent.mkdir(parents=True, exist_ok=True)
        buffer = io.BytesIO()
        Image.fromarray(np.round(np.clip(image.pixels, 0.0, 1.0) * 65535).astype(np.uint16)).save(buffer, format="PNG", compress_level=1)
        atomic_write(target, buffer.getvalue())
    return target


def analyze(
    workbench: "Workbench",
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
) -> Iterator[Event]:
    """Analyse an image (path or bytes) and/or a text question, yielding events as each stage finishes."""
    settings = workbench.settings
    k = k or settings.k
    timings: dict[str, float] = {}
    errors: list[dict[str, str]] = []
    t_all = time.perf_counter()
    question = printable(question or "").strip()

    # ---- input
    t0 = time.perf_counter()
    yield StageStarted(stage="input")
    image: CXRImage | None = None
    thumb = upload = ""
    measurements: dict[str, float] = {}
    try:
        if source is None and not question:
            raise EmptyInputError("Nothing to analyse: give an image (PNG, JPEG or DICOM) or type a question.")
        if len(question) > MAX_QUESTION_CHARS:
            question = question[:MAX_QUESTION_CHARS]
            errors.append({"stage": "input", "message": f"question truncated to {MAX_QUESTION_CHARS} characters"})
        if source is not None:
            from medrag.imaging import load_image, measure, save_thumbnail

            raw = Path(source) if isinstance(source, str) else source
            image = load_image(raw, name=name or (str(raw) if isinstance(raw, Path) else ""))
            name = name or (raw.name if isinstance(raw, Path) else "upload")
            thumb = str(save_thumbnail(image, settings.thumbs_dir))
            upload = str(_store_upload(workbench, image))
            measurements = {k_: float(v) for k_, v in measure(image).items() if isinstance(v, (int, float))}
            measurements.setdefault("width", float(image.shape[1]))
            measurements.setdefault("height", float(image.shape[0]))
    except (MedRAGError, OSError) as exc:
        yield _failed("input", exc, t0)
        yield AnalysisFinished(stage="save", timings={"input": time.perf_counter() - t0}, total_seconds=time.perf_counter() - t_all, refused=True)
        return
    timings["input"] = time.perf_counter() - t0
    yield InputReady(
        stage="input", kind="image" if image is not None else "text", image_hash=image.pixel_hash if image else "",
        thumb_path=thumb, meta=dict(image.meta) if image else {}, measurements=measurements, seconds=timings["input"],
    )

    # ---- guard
    t0 = time.perf_counter()
    yield StageStarted(stage="guard")
    from medrag.guard import check_image, check_text

    verdicts: list[GuardVerdict] = []
    try:
        if question:
            verdicts.append(check_text(question, workbench.text_encoder))
        if image is not None:
            verdicts.append(check_image(image))
    except Exception as exc:  # the guard itself failing must not let a request through unchecked
        verdicts.append(GuardVerdict(False, f"The domain check failed ({exc}); try again.", kind="text"))
    refusal = next((v for v in verdicts if not v.allowed), None)
    verdict = refusal or (verdicts[-1] if verdicts else GuardVerdict(True, "ok"))
    timings["guard"] = time.perf_counter() - t0
    yield GuardChecked(stage="guard", verdict=verdict, seconds=timings["guard"])
    if refusal is not None:
        yield AnalysisFinished(stage="save", timings=timings, total_seconds=time.perf_counter() - t_all, refused=True)
        return

    # ---- neighbours
    t0 = time.perf_counter()
    yield StageStarted(stage="neighbours")
    neighbours: list[Neighbour] = []
    encoder_name = ""
    try:
        if image is not None:
            encoder_name = workbench.image_encoder.name
            neighbours = workbench.search_image(image, k, label=label_filter, dataset=dataset_filter, exclude=exclude_case_ids)
        else:
            encoder_name = workbench.text_encoder.name
            neighbours = workbench.search_text(question, k, label=label_filter, dataset=dataset_filter)
        timings["neighbours"] = time.perf_counter() - t0
        yield NeighboursFound(stage="neighbours", neighbours=tuple(neighbours), encoder=encoder_name, seconds=timings["neighbours"])
    except Exception as exc:
        timings["neighbours"] = time.perf_counter() - t0
        failure = _failed("neighbours", exc, t0)
        errors.append({"stage": "neighbours", "message": failure.message})
        yield failure

    # ---- reasoning
    t0 = time.perf_counter()
    yield StageStarted(stage="reasoning")
    request = ReasoningRequest(image=image, question=question, neighbours=tuple(neighbours), measurements=measurements)
    pieces: list[str] = []
    first_token = 0.0
    reasoner_name = reasoner_model = ""
    try:
        reasoner = workbench.reasoner
        reasoner_name, reasoner_model = reasoner.name, reasoner.model
        for piece in reasoner.stream(request):
            if not pieces:
                first_token = time.perf_counter() - t0
            pieces.append(piece)
            yield ReasoningToken(stage="reasoning", text=piece)
        timings["reasoning"] = time.perf_counter() - t0
        yield ReasoningDone(
            stage="reasoning", text="".join(pieces), backend=reasoner_name, model=reasoner_model,
            seconds=timings["reasoning"], first_token_seconds=first_token,
        )
    except Exception as exc:
        timings["reasoning"] = time.perf_counter() - t0
        failure = _failed("reasoning", exc, t0)
        errors.append({"stage": "reasoning", "message": failure.message})
        yield failure
    reasoning = "".join(pieces)

    # ---- summary
    t0 = time.perf_counter()
    yield StageStarted(stage="summary")
    summary: Summary | None = None
    summariser_name = ""
    try:
        if reasoning.strip():
            summariser = workbench.summariser
            summariser_name = summariser.name
            summary = summariser.summarise(impression_of(reasoning))
        else:
            # No reasoning (its backend failed): condense the similar-case evidence instead.
            from medrag.labels import label_text
            from medrag.reasoners.evidence import EvidenceReasoner

            summariser_name = "rules (similar cases)"
            summary = label_text(impression_of(EvidenceReasoner().compose(request)))
        timings["summary"] = time.perf_counter() - t0
        yield SummaryReady(stage="summary", summary=summary, seconds=timings["summary"])
    except Exception as exc:
        timings["summary"] = time.perf_counter() - t0
        failure = _failed("summary", exc, t0)
        errors.append({"stage": "summary", "message": failure.message})
        yield failure

    # ---- web
    t0 = time.perf_counter()
    yield StageStarted(stage="web")
    results: list[WebResult] = []
    status = "web search off for this analysis"
    query = ""
    try:
        if web:
            from medrag.websearch import search_references, web_query_for

            query = web_query_for(summary.label if summary else "", question)
            results, status = search_references(query, settings, cache=workbench.store)
        timings["web"] = time.perf_counter() - t0
        yield WebResultsReady(stage="web", results=tuple(results), status=status, query=query, seconds=timings["web"])
    except Exception as exc:
        timings["web"] = time.perf_counter() - t0
        failure = _failed("web", exc, t0)
        status = failure.message
        errors.append({"stage": "web", "message": failure.message})
        yield failure

    # ---- save
    if save and settings.save_history:
        t0 = time.perf_counter()
        yield StageStarted(stage="save")
        try:
            record = AnalysisRecord(
                input_kind="image" if image is not None else "text",
                input_name=printable(name, keep_newlines=False)[:300],
                image_hash=image.pixel_hash if image else "",
                thumb_path=thumb,
                upload_path=upload,
                question=question,
                encoder=encoder_name,
                reasoner_backend=reasoner_name,
                reasoner_model=reasoner_model,
                summariser_backend=summariser_name,
                reasoning=reasoning,
                label=summary.label if summary else "",
                findings=dict(summary.findings) if summary else {},
                neighbours=[dataclasses.asdict(n) for n in neighbours],
                web_results=[dataclasses.asdict(r) for r in results],
                web_status=status,
                guard=dataclasses.asdict(verdict),
                meta={
                    **(_json_safe(image.meta) if image else {}),
                    **({"summary_notes": list(summary.notes)} if summary and summary.notes else {}),
                },
                timings=dict(timings),
                errors=errors,
                total_seconds=time.perf_counter() - t_all,
            )
            analysis_id = workbench.store.save_analysis(record)
            timings["save"] = time.perf_counter() - t0
            yield AnalysisSaved(stage="save", analysis_id=analysis_id, seconds=timings["save"])
        except Exception as exc:
            timings["save"] = time.perf_counter() - t0
            yield _failed("save", exc, t0)
    yield AnalysisFinished(stage="save", timings=timings, total_seconds=time.perf_counter() - t_all)


def _json_safe(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    if isinstance(value, (np.floating, np.integer)):
        return value.item()
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    return str(value)


def run_to_completion(events: Iterator[Event]) -> dict[str, Any]:
    """Consume an analysis and collect its results (for tests, benchmarks and batch use)."""
    out: dict[str, Any] = {"tokens": [], "failed": []}
    for event in events:
        if isinstance(event, ReasoningToken):
            out["tokens"].append(event.text)
        elif isinstance(event, StageFailed):
            out["failed"].append(event)
        elif isinstance(event, InputReady):
            out["input"] = event
        elif isinstance(event, GuardChecked):
            out["guard"] = event.verdict
        elif isinstance(event, NeighboursFound):
            out["neighbours"] = list(event.neighbours)
        elif isinstance(event, ReasoningDone):
            out["reasoning"] = event
        elif isinstance(event, SummaryReady):
            out["summary"] = event.summary
        elif isinstance(event, WebResultsReady):
            out["web"] = event
        elif isinstance(event, AnalysisSaved):
            out["analysis_id"] = event.analysis_id
        elif isinstance(event, AnalysisFinished):
            out["finished"] = event
    return out


__all__ = ["analyze", "impression_of", "run_to_completion"]
