"""A quiz on one finding: "Is there an effusion on this film?", answered with the finding or "no <finding>".

A multi-label library such as NIH's has one label per combination of findings ("edema + effusion"; 185 of
them on nih-train), so a quiz by label offers combinations as answers and a learner cannot tell which finding
was asked about. A finding quiz asks about one finding over every case of its source: the answer is the
finding when the case's label names it, else "no <finding>", and the two answers take turns (half the
questions show the finding, however rare it is). Its "where is it?" questions are cases with the finding and
a region of it (an NIH box, a phantom's disc, an educator's box).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from medrag.case_truth import box_text, label_parts, part_counts
from medrag.errors import InputError
from medrag.teaching.items import ItemView, library_views
from medrag.teaching.regions import Region, educator_regions, parse_nih_boxes, phantom_findings, phantom_seed

if TYPE_CHECKING:
    from medrag.records import Case
    from medrag.store.factory import AnyStore
    from medrag.teaching.model import Annotation

#: Labels that say a film shows no finding (never a finding to ask about).
NORMAL_LABELS = frozenset({"normal", "no finding"})
#: Findings named without an article in a question ("Is there cardiomegaly on this film?").
UNCOUNTED_FINDINGS = frozenset({"atelectasis", "cardiomegaly", "consolidation", "covid19", "edema", "emphysema",
                                "fibrosis", "infiltration", "pleural thickening", "pneumonia"})
#: NIH's box names that differ from its label names.
BOX_ALIASES = {"infiltrate": "infiltration"}


def quiz_findings(label_counts: dict[str, int]) -> dict[str, int]:
    """{finding: cases whose label names it}, most common first, over every part of every label ("normal" is
    the absence of findings and is left out)."""
    return {part: n for part, n in part_counts(label_counts).items() if part.lower() not in NORMAL_LABELS}


def answers_for(finding: str) -> tuple[str, str]:
    """The two answers of a question on ``finding``: itself and "no <finding>"."""
    return finding, f"no {finding}"


def question_for(finding: str) -> str:
    """The question a learner sees: "Is there an effusion on this film?"."""
    named = finding if finding in UNCOUNTED_FINDINGS else f"{'an' if finding[:1] in 'aeiou' else 'a'} {finding}"
    return f"Is there {named} on this film?"


def finding_views(store: AnyStore, finding: str, dataset: str | None, real_only: bool) -> list[ItemView]:
    """Every case of ``dataset`` (all datasets for None; real ones only with ``real_only``), refused when none
    names ``finding``."""
    views = library_views(store, dataset=dataset, real_only=real_only)
    if not any(finding in label_parts(v.label) for v in views):
        where = f" of dataset {dataset!r}" if dataset else ""
        real = " real" if real_only else ""
        raise InputError(f"No{real} case{where} has a label naming {finding!r}; choose a finding from the list.")
    return views


def answer_for(label: str, finding: str) -> str:
    """The right answer for a case labelled ``label``: ``finding`` when the label names it, else "no <finding>"."""
    present, absent = answers_for(finding)
    return present if finding in label_parts(label) else absent


def _names(text: str, finding: str) -> bool:
    name = text.replace(" (NIH expert box)", "").strip().lower()
    return BOX_ALIASES.get(name, name) == finding.lower()


def regions_of(regions: Sequence[Region], finding: str) -> tuple[Region, ...]:
    """The regions that outline ``finding`` (NIH names its boxes "Infiltrate" where its label says
    "Infiltration")."""
    return tuple(r for r in regions if _names(r.label, finding))


def has_region_of(case: Case | None, annotations: Sequence[Annotation], finding: str) -> bool:
    """Whether a region outlines ``finding`` on the case (cheap: no image is read)."""
    if any(_names(r.label, finding) for r in educator_regions(annotations)):
        return True
    if case is None:
        return False
    if any(_names(name, finding) for name, *_ in parse_nih_boxes(box_text(case.extra))):
        return True
    return phantom_seed(case) is not None and any(_names(name, finding) for name in phantom_findings(case))


__all__ = ["BOX_ALIASES", "NORMAL_LABELS", "UNCOUNTED_FINDINGS", "answer_for", "answers_for", "finding_views",
           "has_region_of", "question_for", "quiz_findings", "regions_of"]
