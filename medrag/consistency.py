"""The label and findings table must never contradict the reasoning they came from.

The summariser condenses the impression; :func:`reconcile` reads the rest of the reasoning too (with the
same labeler, the similar-case section and the restated question left out) and fixes the findings table
where the two disagree: a finding the body reports but the impression leaves out is taken from the body,
a finding the body reports and the impression rules out becomes "uncertain", and each change is a note.
"""

from __future__ import annotations

import re

from medrag.reading.base import NOT_ABNORMAL
from medrag.records import FINDINGS, FindingStatus, Summary

# The restated question and quotes of similar cases' reports say nothing about this image.
_QUESTION_LINE = re.compile(r"^\s*(?:Question:|Similar case \d|Case \d+ \([\d.]+\) report:).*$", re.MULTILINE)
_IMPRESSION = re.compile(r"\**\s*impression\s*[.:]?\s*\**\s*[:.]?", re.IGNORECASE)


def reasoning_body(reasoning: str) -> str:
    """The reasoning without its impression section and without the restated question."""
    matches = list(_IMPRESSION.finditer(reasoning))
    # The heading stays (with nothing under it) so the labeler still sees where the section before it ends:
    # a similar-case section right above the impression is skipped like anywhere else.
    body = reasoning[: matches[-1].end()] if matches else reasoning
    return _QUESTION_LINE.sub("", body)


def reconcile(summary: Summary, reasoning: str) -> Summary:
    """``summary`` with its findings made to agree with the whole ``reasoning`` (notes say what changed)."""
    from medrag.labels import label_text

    body = reasoning_body(reasoning)
    if not body.strip():
        return summary
    stated = label_text(body).findings
    findings: dict[str, FindingStatus] = dict(summary.findings)
    notes = list(summary.notes)
    for name in FINDINGS:
        if name == "no finding":
            continue
        said, table = stated.get(name, "not mentioned"), findings.get(name, "not mentioned")
        if {said, table} == {"present", "absent"}:
            findings[name] = "uncertain"
            notes.append(f"The reasoning both reports and rules out {name}; the table shows it as uncertain.")
        elif table == "not mentioned" and said != "not mentioned":
            findings[name] = said
            if said in ("present", "uncertain"):
                notes.append(f"The impression leaves out {name}, which the reasoning reports as {said}.")
    abnormal = any(findings.get(n) in ("present", "uncertain") for n in FINDINGS if n not in NOT_ABNORMAL)
    if abnormal and findings.get("no finding") in ("present", "uncertain"):
        findings["no finding"] = "absent"
        notes.append("An abnormality is reported, so the table does not call the film normal.")
    if findings == dict(summary.findings):
        return summary
    return Summary(summary.label, findings, backend=summary.backend, notes=tuple(notes))


def contradictions(summary: Summary, reasoning: str) -> list[str]:
    """Findings whose table status the reasoning's body contradicts (empty when they agree)."""
    from medrag.labels import label_text

    stated = label_text(reasoning_body(reasoning)).findings
    return [
        name for name in FINDINGS
        if {stated.get(name, "not mentioned"), summary.findings.get(name, "not mentioned")} == {"present", "absent"}
    ]


__all__ = ["contradictions", "reasoning_body", "reconcile"]
