"""Typed events yielded by :func:`medrag.pipeline.analyze`, in this order:

``StageStarted``/``GuardChecked`` → ``NeighboursFound`` → ``ReasoningToken``* → ``ReasoningDone``
→ ``SummaryReady`` → ``WebResultsReady`` → ``AnalysisSaved`` → ``AnalysisFinished``.
A failing stage yields ``StageFailed`` and the stages that do not depend on it still run.
Every event except tokens carries the stage's wall time in ``seconds``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from medrag.records import GuardVerdict, Neighbour, Summary, WebResult

Stage = Literal["input", "guard", "neighbours", "reasoning", "summary", "web", "save"]
STAGES: tuple[Stage, ...] = ("input", "guard", "neighbours", "reasoning", "summary", "web", "save")


@dataclass(frozen=True)
class Event:
    """Base of every pipeline event."""

    stage: Stage


@dataclass(frozen=True)
class StageStarted(Event):
    """A stage begins (lets a UI open its status box before slow work)."""


@dataclass(frozen=True)
class InputReady(Event):
    """The input was decoded: image metadata/measurements or the text question."""

    kind: Literal["image", "text"] = "image"
    image_hash: str = ""
    thumb_path: str = ""
    meta: dict[str, Any] = field(default_factory=dict)
    measurements: dict[str, float] = field(default_factory=dict)
    seconds: float = 0.0


@dataclass(frozen=True)
class GuardChecked(Event):
    """The domain guard's verdict. If ``verdict.allowed`` is false the analysis stops here."""

    verdict: GuardVerdict = GuardVerdict(True, "")
    seconds: float = 0.0


@dataclass(frozen=True)
class NeighboursFound(Event):
    """The k most similar library cases."""

    neighbours: tuple[Neighbour, ...] = ()
    encoder: str = ""
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
