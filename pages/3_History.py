"""History: every saved analysis; open one exactly as it was, annotate it, delete it, export, plot."""

from __future__ import annotations

import hashlib
import io
import math

import pandas as pd
import streamlit as st

from medrag.ui import data, images, state
from medrag.ui.figures import labels_over_time, similarity_distribution
from medrag.ui.lessons import add_to_lesson_set
from medrag.ui.overlays import reading_figure
from medrag.ui.page import error_boundary, setup_page
from medrag.ui.panels import (
    render_label_and_findings,
    render_metadata,
    render_outcome,
    render_similar,
    render_stage_log,
)
from medrag.ui.references import render_web
from medrag.ui.roles import is_educator
from medrag.ui.safe import escape_markdown
from medrag.ui.tables import history_table, neighbour_scores, short_time
from medrag.ui.truth_panel import (
    analysed_case,
    expert_regions,
    render_case_truth,
    render_history_agreement,
    seen_in_training,
)
from medrag.ui.viewer import PLOTLY_CONFIG, view_controls

#: Analyses listed per page of the table.
PAGE_ROWS = 50
#: The trends are drawn over at most this many of the latest matching analyses.
PLOT_ROWS = 2000

workbench = setup_page("History", "history")

if data.count_analyses(workbench) == 0:
    st.info("No analyses yet. Every analysis you run is saved here.")
    st.page_link("pages/1_Analyze.py", label="Start an analysis", icon=":material/play_circle:")
    st.stop()

# ---------------------------------------------------------------------------------------------- table
search_col, label_col, backend_col = st.columns([2, 1, 1])
search = search_col.text_input("Search", key="history_search", placeholder="label, file name, question, notes or tags")
query = search.strip() or None
label_filter = label_col.multiselect("Labels", data.history_values(workbench, "label", query), key="history_labels")
backend_filter = backend_col.multiselect(
    "Reasoning backends", data.history_values(workbench, "reasoner_backend", query), key="history_backends"
)
total = data.count_history(workbench, search=query, labels=label_filter, backends=backend_filter)
pages = max(1, math.ceil(total / PAGE_ROWS))
page_no = min(int(st.session_state[state.HISTORY_PAGE]), pages - 1)
if pages > 1:
    page_no = int(st.number_input(
        f"Page (of {pages:,}; {PAGE_ROWS} analyses a page)", min_value=1, max_value=pages, value=page_no + 1,
        key=f"history_page_{pages}",
    )) - 1
st.session_state[state.HISTORY_PAGE] = page_no
table = history_table(data.history_page(
    workbench, offset=page_no * PAGE_ROWS, limit=PAGE_ROWS, search=query, labels=label_filter, backends=backend_filter,
))
st.caption(f"{total:,} matching analyses" + (f" · page {page_no + 1:,} of {pages:,}" if pages > 1 else ""))

# The table's key follows what it lists, so a row picked on one page or search cannot outlive it.
listed = hashlib.sha1(repr((query, label_filter, backend_filter, page_no)).encode("utf-8")).hexdigest()[:12]
selection = st.dataframe(
    table, hide_index=True, width="stretch", height=min(38 + 35 * len(table), 320), key=f"history_table_{listed}",
    on_select="rerun", selection_mode="single-row",
    column_config={
        "date": st.column_config.DatetimeColumn("date (UTC)", format="YYYY-MM-DD HH:mm:ss"),
        "similarity": st.column_config.NumberColumn(format="%.3f"),
        "seconds": st.column_config.NumberColumn("time taken (s)", format="%.2f"),
    },
)
rows = selection.selection.rows if selection is not None else []
if rows and 0 <= rows[0] < len(table):
    picked = int(table.iloc[rows[0]]["id"])
    if picked != st.session_state.get(state.HISTORY_LAST_PICK):
        st.session_state[state.HISTORY_LAST_PICK] = picked
        st.session_state[state.HISTORY_OPEN] = picked


def _matching(limit: int | None = None) -> pd.DataFrame:
    """The matching analyses (the latest ``limit``) with all their columns; exports build it when pressed."""
    everything = data.history_frame(workbench, search=query, limit=limit)
    keep = pd.Series(True, index=everything.index)
    if label_filter:
        keep &= everything["label"].fillna("").isin(label_filter)
    if backend_filter:
        keep &= everything["reasoner_backend"].fillna("").isin(backend_filter)
    return everything[keep]


def _parquet() -> bytes:
    buffer = io.BytesIO()
    _matching().to_parquet(buffer, index=False)
    return buffer.getvalue()


export_csv, export_parquet, _ = st.columns([1, 1, 3])
export_csv.download_button(
    "Export CSV", lambda: _matching().to_csv(index=False).encode("utf-8"), file_name="medrag-history.csv",
    mime="text/csv", key="history_csv",
)
export_parquet.download_button(
    "Export Parquet", _parquet, file_name="medrag-history.parquet",
    mime="application/vnd.apache.parquet", key="history_parquet",
)

# ---------------------------------------------------------------------------------------------- one analysis
ids = [int(i) for i in table["id"]]
wanted = st.session_state.get(state.HISTORY_OPEN)
if wanted is not None and int(wanted) not in ids and data.get_analysis(workbench, int(wanted)) is not None:
    ids.insert(0, int(wanted))  # sent from Analyze, or picked before the page changed: still openable
if not ids:
    st.caption("No analysis matches these filters.")
    st.stop()
names = {int(r["id"]): f"#{int(r['id'])} · {r['label'] or '—'} · {r['input']}" for r in table.to_dict("records")}
opened = st.selectbox(
    "Open analysis", ids, index=ids.index(int(wanted)) if wanted is not None and int(wanted) in ids else 0,
    format_func=lambda i: names.get(i, f"#{i}"),
)
st.session_state[state.HISTORY_OPEN] = opened
analysis = data.get_analysis(workbench, opened)
if analysis is None:
    st.warning(f"Analysis #{opened} no longer exists.")
    st.stop()

st.subheader(f"Analysis #{analysis.analysis_id}")
st.caption(
    f"{short_time(analysis.created_at)} UTC · {escape_markdown(analysis.input_name or analysis.question)} · "
    f"{analysis.total_seconds:.2f} s · encoder {escape_markdown(analysis.encoder or '—')} · "
    f"summariser {escape_markdown(analysis.summariser_backend or '—')}"
)
if analysis.question:
    st.markdown("**Question**")
    st.text(analysis.question)
image_col, reasoning_col = st.columns([1, 1], gap="large")
with image_col:
    if analysis.image_path:
        with error_boundary():
            pixels, meta = images.load_image_file(analysis.image_path)
            shown = view_controls("history_view", analysis.meta or meta)
            figure = reading_figure(pixels, shown, analysis.reading, "history",
                                    regions=expert_regions(analysed_case(workbench, analysis.case_id)))
            st.plotly_chart(figure, config=PLOTLY_CONFIG, key="history_image")
            render_metadata(analysis.meta or meta)
    else:
        st.caption("Text question: no image.")
with reasoning_col:
    render_stage_log(analysis)
    if render_outcome(analysis):
        render_label_and_findings(analysis)
        read_case = analysed_case(workbench, analysis.case_id)
        render_case_truth(read_case, analysis, trained_on=seen_in_training(workbench, read_case))

    if not is_educator():
        st.caption("Adding to lesson sets, notes, tags and deleting are for the educator (sign in in the sidebar).")
    else:
        add_to_lesson_set(workbench, analysis, key="history")
        with st.form("history_notes"):
            notes = st.text_area("Notes", value=analysis.user_notes, key=f"history_notes_{opened}")
            tags = st.text_input("Tags (comma-separated)", value=", ".join(analysis.tags),
                                 key=f"history_tags_{opened}")
            if st.form_submit_button("Save notes and tags"):
                with error_boundary():
                    data.update_analysis_notes(workbench, opened, notes, [t.strip() for t in tags.split(",")])
                    st.success("Notes and tags saved.")
        confirm = st.checkbox(f"Yes, delete analysis #{opened}", key=f"history_confirm_{opened}")
        if st.button("Delete this analysis", disabled=not confirm, key="history_delete"):
            with error_boundary():
                data.delete_analysis(workbench, opened)
                st.session_state[state.HISTORY_OPEN] = None
                st.toast(f"Deleted analysis #{opened}")
                st.rerun()

if analysis.ok:
    with error_boundary():
        render_similar(workbench, analysis, "history")
    render_web(analysis)

# ---------------------------------------------------------------------------------------------- plots
st.subheader("Trends")
recent = _matching(PLOT_ROWS)
if total > len(recent):
    st.caption(f"Over the latest {len(recent):,} of the {total:,} matching analyses.")
if recent.empty:
    st.caption("No analysis matches these filters.")
    st.stop()
plot_left, plot_right = st.columns(2)
with plot_left:
    st.plotly_chart(labels_over_time(recent), config=PLOTLY_CONFIG, key="history_labels_plot")
with plot_right:
    scores = neighbour_scores(recent)
    if scores.empty:
        st.caption("No neighbour similarities saved yet.")
    else:
        st.plotly_chart(similarity_distribution(scores), config=PLOTLY_CONFIG, key="history_scores_plot")
        st.caption("Image and text questions apart: their similarities come from different encoders.")
with error_boundary():
    render_history_agreement(workbench, recent)
