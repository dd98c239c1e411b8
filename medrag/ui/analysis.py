"""How an :class:`~medrag.analysis.Analysis` reads in the stage log: each stage's title and one-line outcome.

Pure text (no streamlit): the Analyze page labels its live status boxes with it, and the History page
labels the boxes of a reopened analysis the same way.
"""

from __future__ import annotations

from medrag.analysis import Analysis

#: What each stage is called in the stage log.
STAGE_TITLES: dict[str, str] = {
    "input": "Reading the input",
    "guard": "Domain check",
    "findings": "Image reading",
    "neighbours": "Finding similar cases",
    "reasoning": "Reasoning",
    "summary": "Label and findings",
    "web": "Web references",
    "save": "Saving to history",
}


def _input_line(analysis: Analysis, took: str) -> str:
    noted = f" · {len(analysis.notes)} note{'s' if len(analysis.notes) > 1 else ''}" if analysis.notes else ""
    if analysis.input_kind == "text":
        return f"Input: a text question{noted}{took}"
    width, height = analysis.meta.get("width"), analysis.meta.get("height")
    fmt = str(analysis.meta.get("format") or "image").upper()
    return f"Input: {fmt} {width}×{height}{noted}{took}"


def stage_line(analysis: Analysis, stage: str) -> str:
    """One-line outcome of a finished stage (the status box label)."""
    title = STAGE_TITLES.get(stage, stage)
    seconds = analysis.timings.get(stage)
    took = f" · {seconds:.2f} s" if seconds is not None else ""
    if stage in analysis.failures:
        return f"{title}: failed{took}"
    if stage == "input":
        return _input_line(analysis, took)
    if stage == "guard":
        if analysis.verdict is None:
            return f"{title}{took}"
        return f"{title}: {'passed' if analysis.verdict.allowed else 'refused'}{took}"
    if stage == "findings":
        reading = analysis.reading
        if reading is None:
            return f"{title}: no image reader configured{took}"
        seen = [f.name for f in reading.findings.values() if f.status == "present"]
        what = ", ".join(seen[:3]) + ("…" if len(seen) > 3 else "") if seen else "nothing definite"
        return f"{title} by {' + '.join(reading.readers) or '?'}: {what}{took}"
    if stage == "neighbours":
        return f"Found {len(analysis.neighbours)} similar cases with the {analysis.encoder or '?'} encoder{took}"
    if stage == "reasoning":
        model = f" ({analysis.reasoner_model})" if analysis.reasoner_model else ""
        return f"Reasoning by {analysis.reasoner_backend or '?'}{model}{took}"
    if stage == "summary":
        return f"Label: {analysis.label or '—'}{took}"
    if stage == "web":
        return f"Web: {analysis.web_status or 'no results'}{took}"
    if stage == "save":
        return f"Saved to history as #{analysis.analysis_id}{took}" if analysis.analysis_id else f"{title}{took}"
    return f"{title}{took}"


__all__ = ["STAGE_TITLES", "stage_line"]
