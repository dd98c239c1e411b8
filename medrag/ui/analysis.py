"""What an analysis looks like to the app: :class:`AnalysisView`, built from pipeline events or a history row.

Pure data (no streamlit): the Analyze page fills one from the live event stream and keeps it in session
state; the History page rebuilds one from a saved row, so both render through the same components.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from collections.abc import Iterable
from typing import Any

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
    SummaryReady,
    WebResultsReady,
)
from medrag.records import FINDINGS, GuardVerdict, Neighbour, WebResult

#: What each stage is called in the stage log.
STAGE_TITLES: dict[str, str] = {
    "input": "Reading the input",
    "guard": "Domain check",
    "neighbours": "Finding similar cases",
    "reasoning": "Reasoning",
    "summary": "Label and findings",
    "web": "Web references",
    "save": "Saving to history",
}


@dataclass
class AnalysisView:
    """Everything the result panels show about one analysis."""

    input_kind: str = "image"
    input_name: str = ""
    question: str = ""
    #: The decoded image to show (library image, stored upload or thumbnail); "" for text questions.
    image_path: str = ""
    thumb_path: str = ""
    #: Library case analysed (excluded from its own neighbours), if any.
    case_id: str = ""
    meta: dict[str, Any] = field(default_factory=dict)
    measurements: dict[str, float] = field(default_factory=dict)
    verdict: GuardVerdict | None = None
    refused: bool = False
    failures: dict[str, str] = field(default_factory=dict)
    neighbours: list[Neighbour] = field(default_factory=list)
    encoder: str = ""
    reasoning: str = ""
    reasoner_backend: str = ""
    reasoner_model: str = ""
    summariser_backend: str = ""
    summary_notes: list[str] = field(default_factory=list)
    label: str = ""
    findings: dict[str, str] = field(default_factory=dict)
    web_results: list[WebResult] = field(default_factory=list)
    web_status: str = ""
    analysis_id: int | None = None
    timings: dict[str, float] = field(default_factory=dict)
    total_seconds: float = 0.0
    created_at: str = ""
    #: Stages that ran (in order), for the stage log.
    stages: list[str] = field(default_factory=list)
    finished: bool = False

    # ------------------------------------------------------------------ from events
    def apply(self, event: Event) -> None:
        """Fold one pipeline event into the view."""
        if event.stage not in self.stages and not isinstance(event, AnalysisFinished):
            self.stages.append(event.stage)
        seconds = getattr(event, "seconds", None)
        if isinstance(seconds, float) and not isinstance(event, AnalysisFinished):
            self.timings[event.stage] = seconds
        if isinstance(event, ReasoningToken):
            self.reasoning += event.text
        elif isinstance(event, InputReady):
            self.input_kind = event.kind
            self.meta = dict(event.meta)
            self.measurements = dict(event.measurements)
            self.thumb_path = event.thumb_path
        elif isinstance(event, GuardChecked):
            self.verdict = event.verdict
            self.refused = not event.verdict.allowed
        elif isinstance(event, NeighboursFound):
            self.neighbours = list(event.neighbours)
            self.encoder = event.encoder
        elif isinstance(event, ReasoningDone):
            self.reasoning = event.text
            self.reasoner_backend, self.reasoner_model = event.backend, event.model
        elif isinstance(event, SummaryReady):
            self.label = event.summary.label
            self.findings = dict(event.summary.findings)
            self.summariser_backend = event.summary.backend
            self.summary_notes = list(event.summary.notes)
        elif isinstance(event, WebResultsReady):
            self.web_results = list(event.results)
            self.web_status = event.status
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

    # ------------------------------------------------------------------ derived
    @property
    def ok(self) -> bool:
        """Finished, not refused, and the input could be read."""
        return self.finished and not self.refused and "input" not in self.failures

    def findings_rows(self) -> list[dict[str, str]]:
        """Findings in display order (the standard list first, then any extra names)."""
        names = [n for n in FINDINGS if n in self.findings] + [n for n in self.findings if n not in FINDINGS]
        return [{"finding": name, "status": str(self.findings[name])} for name in names]

    def stage_line(self, stage: str) -> str:
        """One-line outcome of a finished stage (the status box label)."""
        title = STAGE_TITLES.get(stage, stage)
        seconds = self.timings.get(stage)
        took = f" · {seconds:.2f} s" if seconds is not None else ""
        if stage in self.failures:
            return f"{title}: failed{took}"
        if stage == "input":
            if self.input_kind == "text":
                return f"Input: a text question{took}"
            width, height = self.meta.get("width"), self.meta.get("height")
            fmt = str(self.meta.get("format") or "image").upper()
            return f"Input: {fmt} {width}×{height}{took}"
        if stage == "guard":
            if self.verdict is None:
                return f"{title}{took}"
            return f"{title}: {'passed' if self.verdict.allowed else 'refused'}{took}"
        if stage == "neighbours":
            return f"Found {len(self.neighbours)} similar cases with the {self.encoder or '?'} encoder{took}"
        if stage == "reasoning":
            model = f" ({self.reasoner_model})" if self.reasoner_model else ""
            return f"Reasoning by {self.reasoner_backend or '?'}{model}{took}"
        if stage == "summary":
            return f"Label: {self.label or '—'}{took}"
        if stage == "web":
            return f"Web: {self.web_status or 'no results'}{took}"
        if stage == "save":
            return f"Saved to history as #{self.analysis_id}{took}" if self.analysis_id else f"{title}{took}"
        return f"{title}{took}"


def _neighbour(item: dict[str, Any]) -> Neighbour:
    known = Neighbour.__dataclass_fields__
    return Neighbour(**{k: v for k, v in item.items() if k in known})


def _web_result(item: dict[str, Any]) -> WebResult:
    known = WebResult.__dataclass_fields__
    return WebResult(**{k: str(v or "") for k, v in item.items() if k in known})


def view_from_record(record: dict[str, Any]) -> AnalysisView:
    """Rebuild the view of a saved analysis (``Store.get_analysis`` row) exactly as it was shown."""
    guard = record.get("guard") or {}
    verdict = GuardVerdict(**{k: v for k, v in guard.items() if k in GuardVerdict.__dataclass_fields__}) if guard else None
    failures = {str(e.get("stage", "")): str(e.get("message", "")) for e in record.get("errors") or [] if isinstance(e, dict)}
    timings = {str(k): float(v) for k, v in (record.get("timings") or {}).items()}
    view = AnalysisView(
        input_kind=str(record.get("input_kind") or "image"),
        input_name=str(record.get("input_name") or ""),
        question=str(record.get("question") or ""),
        image_path=str(record.get("upload_path") or record.get("thumb_path") or ""),
        thumb_path=str(record.get("thumb_path") or ""),
        meta=dict(record.get("meta") or {}),
        verdict=verdict,
        refused=bool(verdict is not None and not verdict.allowed),
        failures=failures,
        neighbours=[_neighbour(n) for n in record.get("neighbours") or []],
        encoder=str(record.get("encoder") or ""),
        reasoning=str(record.get("reasoning") or ""),
        reasoner_backend=str(record.get("reasoner_backend") or ""),
        reasoner_model=str(record.get("reasoner_model") or ""),
        summariser_backend=str(record.get("summariser_backend") or ""),
        summary_notes=[str(n) for n in (record.get("meta") or {}).get("summary_notes") or []],
        label=str(record.get("label") or ""),
        findings={str(k): str(v) for k, v in (record.get("findings") or {}).items()},
        web_results=[_web_result(r) for r in record.get("web_results") or []],
        web_status=str(record.get("web_status") or ""),
        analysis_id=int(record["id"]) if record.get("id") is not None else None,
        timings=timings,
        total_seconds=float(record.get("total_seconds") or 0.0),
        created_at=str(record.get("created_at") or ""),
        finished=True,
    )
    view.stages = [s for s in STAGE_TITLES if s in timings or s in failures]
    return view


def collect(events: Iterable[Event], view: AnalysisView | None = None) -> AnalysisView:
    """Fold a whole event stream into a view without rendering anything (quiz, tests, benchmarks)."""
    target = view or AnalysisView()
    for event in events:
        target.apply(event)
    return target
