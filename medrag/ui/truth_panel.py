"""An analysis of a library case held against that case's own labels (Analyze and History).

A learner who reads a case whose answer is known should see where the reading agreed, missed and over-called.
The panel starts closed with a neutral title, so the answer is not given away before it is opened.
"""

from __future__ import annotations

import pandas as pd
import streamlit as st

from medrag.analysis import Analysis
from medrag.case_truth import CaseTruth, case_truth, compare_findings, summary
from medrag.records import Case
from medrag.teaching.regions import Region, regions_for
from medrag.ui import data
from medrag.ui.safe import escape_markdown
from medrag.workbench import Workbench

#: How a verdict reads in the table (a marker first, so the column scans at a glance).
VERDICT_TEXT = {
    "found": "✓ found", "agrees": "✓ agrees", "called possible": "~ possible", "missed": "✗ missed",
    "possible, not in the labels": "~ possible, unlabelled", "over-called": "✗ over-called",
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


__all__ = ["VERDICT_TEXT", "analysed_case", "expert_regions", "render_case_truth", "seen_in_training", "truth_frame"]
