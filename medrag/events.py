"""Typed events yielded by :func:`medrag.pipeline.analyze`, in this order:

``StageStarted``/``GuardChecked`` → ``ImageFindingsReady`` (images) → ``NeighboursFound`` → ``ReasoningToken``*
→ ``ReasoningDone`` → ``SummaryReady`` → ``WebResultsReady`` → ``AnalysisSaved`` → ``AnalysisFinished``.
A failing stage yields ``StageFailed`` and the stages that do not depend on it still run.
Every event except tokens carries the stage's wall time in ``seconds``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

from medrag.reading.base import ImageReading
from medrag.records import GuardVerdict, Neighbour, Summary, WebResult

Stage = Literal["input", "guard", "findings", "neighbours", "reasoning", "summary", "web", "save"]
STAGES: tuple[Stage, ...] = ("input", "guard", "findings", "neighbours", "reasoning", "summary", "web", "save")


@dataclass(frozen=True)
class Event:
    """Base of every pipeline event."""

    stage: Stage


@dataclass(frozen=True)
class StageStarted(Event):
    """A stage begins (lets a UI open its status box before slow work)."""


@dataclass(frozen=True)
class InputReady(Event):
    """The input was decoded: image metadata/measurements and the (cleaned) question.

    ``upload_path`` is the stored copy of the decoded image the UI shows; ``notes`` are caveats (a question
    cut to length) that travel with the analysis without failing the stage. ``case_id`` names the library case
    with exactly these pixels, when the image is one ("" otherwise).
    """

    kind: Literal["image", "text"] = "image"
    name: str = ""
    question: str = ""
    image_hash: str = ""
    thumb_path: str = ""
    upload_path: str = ""
    meta: dict[str, Any] = field(default_factory=dict)
    measurements: dict[str, float] = field(default_factory=dict)
    notes: tuple[str, ...] = ()
    seconds: float = 0.0
    case_id: str = ""


@dataclass(frozen=True)
class GuardChecked(Event):
    """The domain guard's verdict. If ``verdict.allowed`` is false the analysis stops here."""

    verdict: GuardVerdict = GuardVerdict(True, "")
    seconds: float = 0.0


@dataclass(frozen=True)
class ImageFindingsReady(Event):
    """What the image readers saw: findings with probabilities, where they are, measurements, overlays."""

    reading: ImageReading = ImageReading()
    seconds: float = 0.0


@dataclass(frozen=True)
class NeighboursFound(Event):
    """The k most similar library cases, and the query's vector (it places the query on the library map)."""

    neighbours: tuple[Neighbour, ...] = ()
    encoder: str = ""
    query_vector: np.ndarray | None = field(default=None, compare=False, repr=False)
    seconds: float = 0.0


@dataclass(frozen=True)
class ReasoningToken(Event):
    """One streamed piece of reasoning text."""

    text: str = ""


@dataclass(frozen=True)
class ReasoningDone(Event):
    """The whole reasoning text and the backend that actually produced it."""

    text: str = ""
    backend: str = ""
    model: str = ""
    seconds: float = 0.0
    first_token_seconds: float = 0.0
    #: caveats about who wrote it (the configured model server was down and the offline reasoner took over)
    notes: tuple[str, ...] = ()


@dataclass(frozen=True)
class SummaryReady(Event):
    """Label and findings condensed from the reasoning."""

    summary: Summary = Summary("", {})
    seconds: float = 0.0


@dataclass(frozen=True)
class WebResultsReady(Event):
    """References from allowlisted sites, or why web search is off (``status``)."""

    results: tuple[WebResult, ...] = ()
    status: str = ""
    query: str = ""
    seconds: float = 0.0


@dataclass(frozen=True)
class AnalysisSaved(Event):
    """The history row's id."""

    analysis_id: int = 0
    seconds: float = 0.0


@dataclass(frozen=True)
class StageFailed(Event):
    """A stage failed; ``message`` says what to do next. Later independent stages still run."""

    message: str = ""
    error_type: str = ""
    seconds: float = 0.0


@dataclass(frozen=True)
class AnalysisFinished(Event):
    """The end of the stream, with per-stage timings (seconds) and the total."""

    timings: dict[str, float] = field(default_factory=dict)
    total_seconds: float = 0.0
    refused: bool = False
