"""What a library case's source says it shows, and how an analysis' findings table compares with it.

Two kinds of source truth reach a library:

- NIH ChestX-ray14's ``Finding Labels`` (text-mined from the reports, about 90 % accurate) and expert boxes.
  The shared folders spell the columns two ways: cxr-real ``fine_label`` / ``bbox_xywh_in_output_px``,
  nih-train ``finding_labels`` / ``bbox`` (NIH's own CSV: ``Finding Labels``). Every reader goes through
  :func:`fine_label_text` and :func:`box_text` so both layouts work everywhere.
- a synthetic phantom's drawn findings (``findings``, exact by construction).

:func:`compare_findings` sets each finding the source speaks to beside the analysis' status, so a learner sees
what the reading found, missed and over-called on a case whose answer is known.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

from medrag.records import FINDINGS, PHANTOM_FINDINGS, Case

#: NIH ``Finding Labels`` → MedRAG finding (the names of :data:`medrag.records.FINDINGS`).
NIH_FINDINGS: dict[str, str] = {
    "No Finding": "no finding", "Pneumonia": "pneumonia", "Effusion": "effusion", "Edema": "edema",
    "Atelectasis": "atelectasis", "Cardiomegaly": "cardiomegaly", "Consolidation": "consolidation",
    "Pneumothorax": "pneumothorax", "Infiltration": "opacity", "Nodule": "nodule/mass", "Mass": "nodule/mass",
    "Emphysema": "emphysema",
}
#: Where a case's metadata keeps NIH's ``Finding Labels`` (cxr-real, nih-train, NIH's Data_Entry CSV).
FINE_LABEL_KEYS: tuple[str, ...] = ("fine_label", "finding_labels", "Finding Labels")
#: Where a case's metadata keeps NIH's expert boxes, ``Finding:x,y,w,h`` in the stored image's pixels.
BOX_KEYS: tuple[str, ...] = ("bbox_xywh_in_output_px", "bbox")

Verdict = Literal["found", "called possible", "missed", "over-called", "possible, not in the labels", "agrees"]


def _text(value: Any) -> str:
    return "" if value is None else str(value).strip()


def fine_label_text(extra: Mapping[str, Any] | None) -> str:
    """NIH's ``Finding Labels`` of a case's metadata (``"Effusion|Infiltration"``), "" when it has none."""
    for key in FINE_LABEL_KEYS:
        value = _text((extra or {}).get(key))
        if value:
            return value
    return ""


def box_text(extra: Mapping[str, Any] | None) -> str:
    """NIH's expert boxes of a case's metadata (``"Pneumonia:301,298,108,90|…"``), "" when it has none."""
    for key in BOX_KEYS:
        value = _text((extra or {}).get(key))
        if value:
            return value
    return ""


def nih_names(fine: str) -> list[str]:
    """``"Effusion|Pleural_Thickening"`` → ["Effusion", "Pleural_Thickening"] (empty parts dropped)."""
    return [part.strip() for part in str(fine or "").split("|") if part.strip()]


def label_from_nih(fine: str) -> str:
    """A library label from NIH's ``Finding Labels``: "normal" for No Finding, else the findings in NIH's order
    joined as MedRAG writes combined labels (``"effusion + infiltration"``); "" when there are none."""
    names = nih_names(fine)
    if not names:
        return ""
    if names == ["No Finding"]:
        return "normal"
    return " + ".join(name.replace("_", " ").lower() for name in names if name != "No Finding")


def label_parts(label: str) -> list[str]:
    """The findings a combined label names ("edema + effusion" → ["edema", "effusion"])."""
    return [part.strip() for part in str(label).split(" + ") if part.strip()]


def part_counts(counts: dict[str, int]) -> dict[str, int]:
    """{label part: cases whose label names it} from {label: cases}, most common first."""
    totals: dict[str, int] = {}
    for label, n in counts.items():
        for part in dict.fromkeys(label_parts(label)):
            totals[part] = totals.get(part, 0) + n
    return dict(sorted(totals.items(), key=lambda item: (-item[1], item[0])))


def finding_counts(counts: dict[str, int]) -> dict[str, int]:
    """{finding: cases whose label names it} for the findings some combined label names, most common first."""
    combined = {part for label in counts if " + " in label for part in label_parts(label)}
    return {part: n for part, n in part_counts(counts).items() if part in combined}


@dataclass(frozen=True)
class CaseTruth:
    """What a case's source says: the MedRAG findings it shows, those it speaks to, and its other labels."""

    source: Literal["nih", "phantom"]
    #: findings the source says the case shows ("no finding" for a normal case)
    findings: frozenset[str]
    #: every finding the source would have named had the case shown it (the rest it says nothing about)
    scored: frozenset[str]
    #: source labels with no MedRAG finding (NIH's Hernia, Fibrosis, Pleural_Thickening)
    other: tuple[str, ...] = ()
    boxes: int = 0

    @property
    def description(self) -> str:
        """Where the truth comes from and how far to trust it, for a caption."""
        if self.source == "phantom":
            return "the phantom's drawn findings (exact by construction)"
        return "NIH's labels (text-mined from the reports, about 90 % accurate)"


def case_truth(case: Case | None) -> CaseTruth | None:
    """The source truth of a library case, or None when its source gives none (a folder label is not truth)."""
    if case is None:
        return None
    extra = case.extra or {}
    fine = fine_label_text(extra)
    if fine:
        names = nih_names(fine)
        found = frozenset(NIH_FINDINGS[n] for n in names if n in NIH_FINDINGS)
        other = tuple(n.replace("_", " ") for n in names if n not in NIH_FINDINGS)
        boxes = box_text(extra).count(":")
        return CaseTruth("nih", found, frozenset(NIH_FINDINGS.values()), other, boxes)
    if case.synthetic and "findings" in extra:
        drawn = frozenset(f.strip() for f in str(extra.get("findings") or "").split("|") if f.strip())
        return CaseTruth("phantom", (drawn & set(PHANTOM_FINDINGS)) or frozenset({"no finding"}),
                         frozenset({*PHANTOM_FINDINGS, "no finding"}))
    return None


@dataclass(frozen=True)
class TruthRow:
    """One finding: whether the source names it, the analysis' status, and the verdict."""

    finding: str
    in_labels: bool
    status: str
    verdict: Verdict


def _verdict(in_labels: bool, status: str) -> Verdict:
    if in_labels:
        return {"present": "found", "uncertain": "called possible"}.get(status, "missed")  # type: ignore[return-value]
    return {"present": "over-called", "uncertain": "possible, not in the labels"}.get(  # type: ignore[return-value]
        status, "agrees")


def compare_findings(truth: CaseTruth, findings: Mapping[str, str]) -> list[TruthRow]:
    """Each finding the source speaks to and the analysis' status of it (a missing one is "not mentioned").

    Rows come in :data:`FINDINGS` order, the source's findings and everything the analysis called first, then
    the findings both leave out ("agrees")."""
    order = [f for f in FINDINGS if f in truth.scored] + sorted(truth.scored - set(FINDINGS))
    rows = [TruthRow(f, f in truth.findings, str(findings.get(f, "not mentioned")),
                     _verdict(f in truth.findings, str(findings.get(f, "not mentioned")))) for f in order]
    return sorted(rows, key=lambda row: row.verdict == "agrees")


def summary(rows: list[TruthRow]) -> str:
    """One line: how many findings agree, and which were missed or over-called."""
    def named(verdicts: set[str]) -> list[str]:
        return [row.finding for row in rows if row.verdict in verdicts]

    agree = len(named({"found", "agrees"}))
    parts = [f"agrees on {agree} of {len(rows)} findings"]
    for title, verdicts in (("missed", {"missed"}), ("over-called", {"over-called"}),
                            ("possible", {"called possible", "possible, not in the labels"})):
        found = named(verdicts)
        if found:
            parts.append(f"{title}: {', '.join(found)}")
    return "; ".join(parts)


@dataclass(frozen=True)
class Agreement:
    """Over many analyses of labelled cases, how one finding's status compared with the labels."""

    finding: str
    #: analyses whose case's labels name the finding
    labelled: int = 0
    found: int = 0
    possible: int = 0
    missed: int = 0
    over_called: int = 0
    #: "possible" where the labels do not name it
    possible_unlabelled: int = 0

    @property
    def sensitivity(self) -> float:
        """Share of the labelled analyses that called it (present or possible); NaN with none labelled."""
        return (self.found + self.possible) / self.labelled if self.labelled else float("nan")

    @property
    def precision(self) -> float:
        """Share of its calls (present or possible) that the labels name; NaN with no call."""
        calls = self.found + self.possible + self.over_called + self.possible_unlabelled
        return (self.found + self.possible) / calls if calls else float("nan")


_COUNTED = {"found": "found", "called possible": "possible", "missed": "missed", "over-called": "over_called",
            "possible, not in the labels": "possible_unlabelled"}


def agreement(comparisons: Iterable[list[TruthRow]]) -> list[Agreement]:
    """Per finding (in :data:`FINDINGS` order), the verdicts of many analyses added up (``compare_findings`` of
    each); findings no analysis labels or calls are left out."""
    counts: dict[str, dict[str, int]] = {}
    for rows in comparisons:
        for row in rows:
            tally = counts.setdefault(row.finding, dict.fromkeys(("labelled", *_COUNTED.values()), 0))
            tally["labelled"] += int(row.in_labels)
            if row.verdict in _COUNTED:
                tally[_COUNTED[row.verdict]] += 1
    order = [f for f in FINDINGS if f in counts] + sorted(set(counts) - set(FINDINGS))
    out = [Agreement(f, **counts[f]) for f in order]
    return [a for a in out if a.labelled or a.over_called or a.possible_unlabelled]


__all__ = [
    "BOX_KEYS",
    "FINE_LABEL_KEYS",
    "NIH_FINDINGS",
    "Agreement",
    "CaseTruth",
    "TruthRow",
    "agreement",
    "box_text",
    "case_truth",
    "compare_findings",
    "finding_counts",
    "fine_label_text",
    "label_from_nih",
    "label_parts",
    "nih_names",
    "part_counts",
    "summary",
]
