"""Quiz: a class quiz from a lesson set or library labels, practice or exam, with "where is it?" questions."""

from __future__ import annotations

import streamlit as st

from medrag.ui import quiz
from medrag.ui.page import error_boundary, setup_page

workbench = setup_page("Quiz", "quiz")

run_tab, results_tab = st.tabs(["Run a quiz", "Results"], key="quiz_tabs", on_change="rerun")

if run_tab.open:  # only the open tab runs
    with run_tab, error_boundary():
        quiz.render_run(workbench)

if results_tab.open:
    with results_tab, error_boundary():
        quiz.render_results(workbench)
