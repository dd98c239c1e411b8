"""One analysis, one shape: :class:`Analysis`, folded from pipeline events, saved and loaded by the store.

The pipeline yields events; ``Analysis.apply`` folds each into the record as it arrives (the app renders it
live), the store saves it (``to_row``) and reads it back (``from_row``), and the CLI, the History page and
the export read the same fields. Caveats (a question cut to length, a model that gave no label) are
``notes``, never a failed stage: a failed stage is one whose result is missing.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

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
    StageFailed,
    SummaryReady,
    WebResultsReady,
)
from medrag.reading.base import ImageReading, reading_from_dict, reading_to_dict
from medrag.records import FINDINGS, GuardVerdict, Neighbour, Summary, WebResult

#: The pipeline's stages in the order they run (the stage log shows them in this order).
STAGE_ORDER: tuple[str, ...] = ("input", "guard", "findings", "neighbours", "reasoning", "summary", "web", "save")

#: Old history rows logged a truncated question as an ``input`` error; it is a note, not a failure.
_LEGACY_NOTE_PREFIXES = ("question truncated",)


@dataclass
class Analysis:
    """Everything known about one analysis: its input, each stage's result, failures, notes and timings."""

    input_kind: str = "image"
    input_name: str = ""
    question: str = ""
    image_hash: str = ""
    #: the decoded image to show again: the stored 16-bit upload (never the user's own path)
    upload_path: str = ""
    thumb_path: str = ""
    #: the library case analysed (excluded from its own neighbours), if any
    case_id: str = ""
    meta: dict[str, Any] = field(default_factory=dict)
    measurements: dict[str, float] = field(default_factory=dict)
    verdict: GuardVerdict | None = None
    refused: bool = False
    #: what the image readers saw (None for a text question or when no reader ran)
    reading: ImageReading | None = None
    #: stage → message, for stages whose result is missing
    failures: dict[str, str] = field(default_factory=dict)
    #: caveats a reader should see (question cut to length, ...); summary caveats are in ``summary_notes``
    notes: list[str] = field(default_factory=list)
    neighbours: list[Neighbour] = field(default_factory=list)
    encoder: str = ""
    #: the query's embedding (in memory only: it places the query on the library map without re-embedding)
    query_vector: np.ndarray | None = field(default=None, repr=False, compare=False)
    reasoning: str = ""
    reasoner_backend: str = ""
    reasoner_model: str = ""
    summariser_backend: str = ""
    summary_notes: list[str] = field(default_factory=list)
    label: str = ""
    findings: dict[str, str] = field(default_factory=dict)
    web_results: list[WebResult] = field(default_factory=list)
    web_status: str = ""
    web_query: str = ""
    analysis_id: int | None = None
    timings: dict[str, float] = field(default_factory=dict)
    total_seconds: float = 0.0
    created_at: str = ""
    #: the reader's own notes and tags (History page)
    user_notes: str = ""
    tags: list[str] = field(default_factory=list)
    #: stages that ran, in order
    stages: list[str] = field(default_factory=list)
    finished: bool = False

    # ------------------------------------------------------------------ from events
    def apply(self, event: Event) -> None:
        """Fold one pipeline event into the record."""
        if event.stage not in self.stages and not isinstance(event, AnalysisFinished):
            self.stages.append(event.stage)
        seconds = getattr(event, "seconds", None)
        if isinstance(seconds, float) and not isinstance(event, AnalysisFinished):
            self.timings[event.stage] = seconds
        if isinstance(event, ReasoningToken):
            self.reasoning += event.text
        elif isinstance(event, InputReady):
            self._apply_input(event)
        elif isinstance(event, GuardChecked):
            self.verdict = event.verdict
            self.refused = not event.verdict.allowed
        elif isinstance(event, ImageFindingsReady):
            self.reading = event.reading
        elif isinstance(event, NeighboursFound):
            self.neighbours = list(event.neighbours)
            self.encoder = event.encoder
            self.query_vector = event.query_vector
        elif isinstance(event, ReasoningDone):
            self.reasoning = event.text
            self.reasoner_backend, self.reasoner_model = event.backend, event.model
            self.notes.extend(note for note in event.notes if note not in self.notes)
        elif isinstance(event, SummaryReady):
            self.apply_summary(event.summary)
        elif isinstance(event, WebResultsReady):
            self.web_results = list(event.results)
            self.web_status = event.status
            self.web_query = event.query
        elif isinstance(event, AnalysisSaved):
            self.analysis_id = event.analysis_id
        elif isinstance(event, StageFailed):
            self.failures[event.stage] = event.message
            if event.stage == "web":
                self.web_status = event.message
        elif isinstance(event, AnalysisFinished):
            self.timings.update(event.timings)
            self.total_seconds = event.total_seconds
            self.refused = self.refused or (event.refused and "input" not in self.failures)
            self.finished = True

    def _apply_input(self, event: InputReady) -> None:
        self.input_kind = event.kind
        self.input_name = event.name or self.input_name
        self.question = event.question
        self.image_hash = event.image_hash
        self.meta = dict(event.meta)
        self.measurements = dict(event.measurements)
        self.thumb_path = event.thumb_path
        self.upload_path = event.upload_path
        self.notes.extend(note for note in event.notes if note not in self.notes)
        self.case_id = event.case_id or self.case_id

    def apply_summary(self, summary: Summary) -> None:
        """Take the label, findings, backend and caveats of a summary."""
        self.label = summary.label
        self.findings = dict(summary.findings)
        self.summariser_backend = summary.backend
        self.summary_notes = list(summary.notes)

    @classmethod
    def fold(cls, events: Iterable[Event], into: Analysis | None = None) -> Analysis:
        """Consume a whole event stream into one record (CLI, batch use, tests, benchmarks)."""
        target = into if into is not None else cls()
        for event in events:
            target.apply(event)
        return target

    # ------------------------------------------------------------------ derived
    @property
    def ok(self) -> bool:
        """Finished, not refused, and the input could be read."""
        return self.finished and not self.refused and "input" not in self.failures

    @property
    def image_path(self) -> str:
        """The image to show: the stored upload, else the thumbnail ("" for a text question)."""
        return self.upload_path or self.thumb_path

    @property
    def all_notes(self) -> list[str]:
        """The analysis's caveats followed by the summary's."""
        return [*self.notes, *(n for n in self.summary_notes if n not in self.notes)]

    def findings_rows(self) -> list[dict[str, str]]:
        """Findings in display order (the standard list first, then any extra names)."""
        names = [n for n in FINDINGS if n in self.findings] + [n for n in self.findings if n not in FINDINGS]
        return [{"finding": name, "status": str(self.findings[name])} for name in names]

    # ------------------------------------------------------------------ to and from the store
    def to_row(self) -> dict[str, Any]:
        """The history row's columns (JSON-typed ones as Python values; the store encodes them)."""
        meta = _json_safe(self.meta)
        if self.summary_notes:
            meta["summary_notes"] = list(self.summary_notes)
        if self.notes:
            meta["notes"] = list(self.notes)
        if self.case_id:
            meta["case_id"] = self.case_id
        if self.measurements:
            meta["measurements"] = _json_safe(self.measurements)
        if self.web_query:
            meta["web_query"] = self.web_query
        if self.reading is not None:
            meta["reading"] = reading_to_dict(self.reading)
        return {
            "input_kind": self.input_kind,
            "input_name": self.input_name,
            "image_hash": self.image_hash,
            "thumb_path": self.thumb_path,
            "upload_path": self.upload_path,
            "question": self.question,
            "encoder": self.encoder,
            "reasoner_backend": self.reasoner_backend,
            "reasoner_model": self.reasoner_model,
            "summariser_backend": self.summariser_backend,
            "reasoning": self.reasoning,
            "label": self.label,
            "findings": dict(self.findings),
            "neighbours": [dataclasses.asdict(n) for n in self.neighbours],
            "web_results": [dataclasses.asdict(r) for r in self.web_results],
            "web_status": self.web_status,
            "guard": dataclasses.asdict(self.verdict) if self.verdict is not None else {},
            "meta": meta,
            "timings": {str(k): float(v) for k, v in self.timings.items()},
            "errors": [{"stage": stage, "message": message} for stage, message in self.failures.items()],
            "total_seconds": float(self.total_seconds),
            "notes": self.user_notes,
            "tags": list(self.tags),
        }

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> Analysis:
        """Rebuild a saved analysis (a history row with JSON fields decoded) exactly as it was shown."""
        meta = dict(row.get("meta") or {})
        summary_notes = [str(n) for n in meta.pop("summary_notes", None) or []]
        notes = [str(n) for n in meta.pop("notes", None) or []]
        case_id = str(meta.pop("case_id", "") or "")
        measurements = {str(k): float(v) for k, v in (meta.pop("measurements", None) or {}).items() if _is_number(v)}
        web_query = str(meta.pop("web_query", "") or "")
        stored_reading = meta.pop("reading", None)
        reading = reading_from_dict(stored_reading) if isinstance(stored_reading, dict) else None
        failures: dict[str, str] = {}
        for error in row.get("errors") or []:
            if not isinstance(error, dict):
                continue
            stage, message = str(error.get("stage", "")), str(error.get("message", ""))
            if stage == "input" and message.startswith(_LEGACY_NOTE_PREFIXES):
                notes.append(message)
            else:
                failures[stage] = message
        guard = row.get("guard") or {}
        fields = GuardVerdict.__dataclass_fields__
        verdict = GuardVerdict(**{k: v for k, v in guard.items() if k in fields}) if guard else None
        timings = {str(k): float(v) for k, v in (row.get("timings") or {}).items()}
        created = row.get("created_at")
        analysis = cls(
            input_kind=str(row.get("input_kind") or "image"),
            input_name=str(row.get("input_name") or ""),
            question=str(row.get("question") or ""),
            image_hash=str(row.get("image_hash") or ""),
            upload_path=str(row.get("upload_path") or ""),
            thumb_path=str(row.get("thumb_path") or ""),
            case_id=case_id,
            meta=meta,
            measurements=measurements,
            verdict=verdict,
            refused=bool(verdict is not None and not verdict.allowed),
            reading=reading,
            failures=failures,
            notes=notes,
            neighbours=[_known_fields(Neighbour, n) for n in row.get("neighbours") or [] if isinstance(n, dict)],
            encoder=str(row.get("encoder") or ""),
            reasoning=str(row.get("reasoning") or ""),
            reasoner_backend=str(row.get("reasoner_backend") or ""),
            reasoner_model=str(row.get("reasoner_model") or ""),
            summariser_backend=str(row.get("summariser_backend") or ""),
            summary_notes=summary_notes,
            label=str(row.get("label") or ""),
            findings={str(k): str(v) for k, v in (row.get("findings") or {}).items()},
            web_results=[_web_result(r) for r in row.get("web_results") or [] if isinstance(r, dict)],
            web_status=str(row.get("web_status") or ""),
            web_query=web_query,
            analysis_id=int(row["id"]) if row.get("id") is not None else None,
            timings=timings,
            total_seconds=float(row.get("total_seconds") or 0.0),
            created_at=_timestamp(created),
            user_notes=str(row.get("notes") or ""),
            tags=[str(t) for t in row.get("tags") or []],
            finished=True,
        )
        analysis.stages = [s for s in STAGE_ORDER if s in timings or s in failures]
        return analysis


def _known_fields(kind: type[Neighbour], item: dict[str, Any]) -> Neighbour:
    known = kind.__dataclass_fields__
    return kind(**{k: v for k, v in item.items() if k in known})


def _web_result(item: dict[str, Any]) -> WebResult:
    known = WebResult.__dataclass_fields__
    return WebResult(**{k: str(v or "") for k, v in item.items() if k in known})


def _timestamp(value: Any) -> str:
    """A stored timestamp as 'YYYY-MM-DD HH:MM:SS' (no microseconds), "" when absent."""
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return ""
    text = str(value)
    return text.split(".")[0] if "." in text and ":" in text else text


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _json_safe(value: Any) -> Any:
    """``value`` with numpy scalars made Python and anything unknown made text, so it encodes as JSON."""
    if isinstance(value, dict):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    if isinstance(value, (np.floating, np.integer)):
        return value.item()
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    return str(value)


__all__ = ["STAGE_ORDER", "Analysis"]
