"""An analysis of a library case held against that case's own labels (Analyze and History).

A learner who reads a case whose answer is known should see where the reading agreed, missed and over-called.
The panel starts closed with a neutral title, so the answer is not given away before it is opened.
"""

from __future__ import annotations

import json
import math
from typing import Any

import pandas as pd
import streamlit as st

from medrag.analysis import Analysis
from medrag.case_truth import CaseTruth, TruthRow, agreement, case_truth, compare_findings, summary
from medrag.records import Case
from medrag.teaching.regions import Region, regions_for
from medrag.ui import data
from medrag.ui.safe import escape_markdown
from medrag.workbench import Workbench

#: How a verdict reads in the table (a marker first, so the column scans at a glance).
VERDICT_TEXT = {
    "found": "✓ found", "agrees": "✓ agrees", "called possible": "~ possible", "missed": "✗ missed",
    "possible, not in the labels": "~ not in labels", "over-called": "✗ over-called",
}


def analysed_case(workbench: Workbench, case_id: str | None) -> Case | None:
    """The library case an analysis read (``Analysis.case_id``: picked from the library, or an upload with its
    pixels), None for none or one no longer in the library."""
    return data.get_case(workbench, case_id) if case_id else None


@st.cache_data(show_spinner=False, max_entries=8)
def _trained_patients(data_dir: str, _workbench: Workbench) -> frozenset[str]:
    return frozenset(_workbench.reader_trained_patients())


def seen_in_training(workbench: Workbench, case: Case | None) -> bool:
    """Whether a trained image reader learned from this case's patient (the shipped classifier's training films)."""
    if case is None or not case.patient_id:
        return False
    return case.patient_id in _trained_patients(str(workbench.settings.data_dir), workbench)


def expert_regions(case: Case | None) -> list[Region]:
    """The case's expert boxes (NIH) or drawn findings (phantoms), in its image's pixels; [] for none."""
    return regions_for(case, (), case.image_path) if case is not None else []


def truth_frame(truth: CaseTruth, findings: dict[str, str]) -> pd.DataFrame:
    """One row per finding the source speaks to: in its labels, the reading's status, the verdict."""
    rows = compare_findings(truth, findings)
    return pd.DataFrame({
        "finding": [r.finding for r in rows],
        "labelled": ["yes" if r.in_labels else "—" for r in rows],
        "reading": [r.status for r in rows],
        "verdict": [VERDICT_TEXT[r.verdict] for r in rows],
    })


def render_case_truth(case: Case | None, analysis: Analysis, *, trained_on: bool = False) -> None:
    """A closed expander comparing the analysis' findings table with the case's source labels (nothing when the
    case has none, or the analysis has no findings); ``trained_on``: a reader learned from this patient."""
    truth = case_truth(case)
    if truth is None or not analysis.findings:
        return
    with st.expander("Compare with this case's own labels", icon=":material/fact_check:"):
        rows = compare_findings(truth, analysis.findings)
        st.markdown(f"**The reading {escape_markdown(summary(rows))}.**")
        if trained_on:
            st.warning("This patient's films were among the classifier's training films: the reading has seen this "
                       "answer, so agreeing here says little about how it reads a new film. Cases of other patients "
                       "are the fair test.", icon=":material/school:")
        st.dataframe(truth_frame(truth, analysis.findings), hide_index=True, width="stretch",
                     height=min(36 + 35 * len(rows), 290),
                     column_config={"labelled": st.column_config.TextColumn(width="small")})
        notes = [f"Source: {truth.description}."]
        if truth.other:
            notes.append("The labels also name " + ", ".join(escape_markdown(o) for o in truth.other)
                         + ", which MedRAG does not read.")
        if truth.boxes:
            notes.append("The viewer's *Expert boxes* layer shows where the finding was boxed.")
        if truth.source == "nih":
            notes.append("NIH's labels do not mention devices or fractures, so those are left out here.")
        st.caption(" ".join(notes))


def _json(value: object) -> dict[str, Any]:
    if isinstance(value, dict):
        return value
    try:
        parsed = json.loads(str(value or "{}"))
    except ValueError:
        return {}
    return parsed if isinstance(parsed, dict) else {}


def history_comparisons(workbench: Workbench, frame: pd.DataFrame, *,
                        leave_out_trained: bool) -> tuple[list[list[TruthRow]], int]:
    """Each analysis in ``frame`` (history rows) of a labelled library case held against its labels, and how many
    were left out as the classifier's training patients."""
    picked = [(str(_json(meta).get("case_id") or ""), _json(findings))
              for meta, findings in zip(frame["meta"], frame["findings"], strict=True)]
    cases = data.get_cases(workbench, sorted({cid for cid, _ in picked if cid}))
    trained = _trained_patients(str(workbench.settings.data_dir), workbench) if leave_out_trained else frozenset()
    comparisons, left_out = [], 0
    for case_id, findings in picked:
        case = cases.get(case_id)
        truth = case_truth(case)
        if case is None or truth is None or not findings:
            continue
        if case.patient_id and case.patient_id in trained:
            left_out += 1
            continue
        comparisons.append(compare_findings(truth, {str(k): str(v) for k, v in findings.items()}))
    return comparisons, left_out


def _share(value: float) -> str:
    return "—" if math.isnan(value) else f"{value:.0%}"


def render_history_agreement(workbench: Workbench, frame: pd.DataFrame) -> None:
    """Over the listed analyses of labelled library cases: per finding, found / possible / missed / over-called."""
    st.subheader("Against the library's own labels", anchor=False)
    leave_out = st.toggle("Leave out the classifier's training patients", value=True, key="history_truth_trained",
                          help="The classifier has seen those films' answers: its agreement there is no fair test")
    comparisons, left_out = history_comparisons(workbench, frame, leave_out_trained=leave_out)
    skipped = f" ({left_out:,} of the classifier's training patients left out)" if left_out else ""
    if not comparisons:
        st.caption("None of these analyses is of a library case with labels of its own (NIH's, or a phantom's drawn "
                   f"findings){skipped}.")
        return
    rows = agreement(comparisons)
    st.dataframe(pd.DataFrame({
        "finding": [a.finding for a in rows], "labelled": [a.labelled for a in rows],
        "found": [a.found for a in rows], "possible": [a.possible for a in rows], "missed": [a.missed for a in rows],
        "over-called": [a.over_called for a in rows], "possible, unlabelled": [a.possible_unlabelled for a in rows],
        "sensitivity": [_share(a.sensitivity) for a in rows], "precision": [_share(a.precision) for a in rows],
    }), hide_index=True, width="stretch")
    st.caption(f"{len(comparisons):,} analyses of labelled library cases{skipped}, each the findings table it "
               "showed; \"possible\" counts as a call. A case analysed twice counts twice. For the readers' figures "
               "on a whole labelled library, by patient and with confidence intervals: `medrag eval reading`.")


__all__ = ["VERDICT_TEXT", "analysed_case", "expert_regions", "history_comparisons", "render_case_truth",
           "render_history_agreement", "seen_in_training", "truth_frame"]
