"""History: every saved analysis; open one exactly as it was, annotate it, delete it, export, plot."""

from __future__ import annotations

import io

import streamlit as st

from medrag.ui import data, images, state
from medrag.ui.figures import labels_over_time, similarity_distribution
from medrag.ui.page import error_boundary, setup_page
from medrag.ui.panels import (
    render_label_and_findings,
    render_metadata,
    render_outcome,
    render_similar,
    render_stage_log,
    render_web,
)
from medrag.ui.safe import escape_markdown
from medrag.ui.tables import history_table, neighbour_scores
from medrag.ui.viewer import PLOTLY_CONFIG, image_figure, view_controls

workbench = setup_page("History", "history")

if data.count_analyses(workbench) == 0:
    st.info("No analyses yet. Every analysis you run is saved here.")
    st.page_link("pages/1_Analyze.py", label="Start an analysis", icon=":material/play_circle:")
    st.stop()

# ---------------------------------------------------------------------------------------------- table
search = st.text_input("Search", key="history_search", placeholder="label, file name, question, notes or tags")
history = data.history_frame(workbench, search=search.strip() or None)
table = history_table(history)
left, right = st.columns(2)
label_filter = left.multiselect("Labels", sorted(set(table["label"])), key="history_labels")
backend_filter = right.multiselect("Reasoning backends", sorted(set(table["backend"])), key="history_backends")
keep = table["label"].isin(label_filter) if label_filter else table["label"].notna()
if backend_filter:
    keep &= table["backend"].isin(backend_filter)
table = table[keep]
history = history[keep.to_numpy()]

selection = st.dataframe(
    table, hide_index=True, width="stretch", height=min(38 + 35 * len(table), 320), key="history_table", on_select="rerun",
    selection_mode="single-row",
    column_config={
        "date": st.column_config.DatetimeColumn("date (UTC)", format="YYYY-MM-DD HH:mm:ss"),
        "similarity": st.column_config.NumberColumn(format="%.3f"),
        "seconds": st.column_config.NumberColumn("time taken (s)", format="%.2f"),
    },
)
rows = selection.selection.rows if selection is not None else []
if rows:
    picked = int(table.iloc[rows[0]]["id"])
    if picked != st.session_state.get(state.HISTORY_LAST_PICK):
        st.session_state[state.HISTORY_LAST_PICK] = picked
        st.session_state[state.HISTORY_OPEN] = picked

export_csv, export_parquet, _ = st.columns([1, 1, 3])
export_csv.download_button(
    "Export CSV", history.to_csv(index=False).encode("utf-8"), file_name="medrag-history.csv",
    mime="text/csv", key="history_csv",
)
parquet = io.BytesIO()
history.to_parquet(parquet, index=False)
export_parquet.download_button(
    "Export Parquet", parquet.getvalue(), file_name="medrag-history.parquet",
    mime="application/vnd.apache.parquet", key="history_parquet",
)

# ---------------------------------------------------------------------------------------------- one analysis
ids = [int(i) for i in table["id"]]
if not ids:
    st.caption("No analysis matches these filters.")
    st.stop()
wanted = st.session_state.get(state.HISTORY_OPEN)
opened = st.selectbox(
    "Open analysis", ids, index=ids.index(wanted) if wanted in ids else 0,
    format_func=lambda i: f"#{i} · {table.set_index('id').at[i, 'label'] or '—'} · {table.set_index('id').at[i, 'input']}",
)
st.session_state[state.HISTORY_OPEN] = opened
analysis = data.get_analysis(workbench, opened)
if analysis is None:
    st.warning(f"Analysis #{opened} no longer exists.")
    st.stop()

st.subheader(f"Analysis #{analysis.analysis_id}")
st.caption(
    f"{escape_markdown(analysis.created_at)} UTC · {escape_markdown(analysis.input_name or analysis.question)} · "
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
            st.plotly_chart(image_figure(pixels, shown), config=PLOTLY_CONFIG, key="history_image")
            render_metadata(analysis.meta or meta)
    else:
        st.caption("Text question: no image.")
with reasoning_col:
    render_stage_log(analysis)
    if render_outcome(analysis):
        render_label_and_findings(analysis)

    with st.form("history_notes"):
        notes = st.text_area("Notes", value=analysis.user_notes, key=f"history_notes_{opened}")
        tags = st.text_input("Tags (comma-separated)", value=", ".join(analysis.tags), key=f"history_tags_{opened}")
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
plot_left, plot_right = st.columns(2)
with plot_left:
    st.plotly_chart(labels_over_time(history), config=PLOTLY_CONFIG, key="history_labels_plot")
with plot_right:
    scores = neighbour_scores(history)
    if scores.empty:
        st.caption("No neighbour similarities saved yet.")
    else:
        st.plotly_chart(similarity_distribution(scores), config=PLOTLY_CONFIG, key="history_scores_plot")
