"""MedRAG home: the library, the backends in use and why, a start button and the latest analyses.

Run with ``streamlit run streamlit_app.py``; the other pages live in ``pages/``.
"""

from __future__ import annotations

import streamlit as st

from medrag.errors import MedRAGError
from medrag.ui import data
from medrag.ui.page import error_boundary, setup_page
from medrag.ui.safe import escape_markdown
from medrag.ui.tables import backends_frame, history_table, web_search_line

workbench = setup_page("MedRAG", "pulmonology")
settings = workbench.settings

st.markdown(
    "A local chest X-ray case workbench: upload an image or pick a library case, read the step-wise "
    "reasoning, and compare it with the most similar cases in your library."
)
st.page_link("pages/1_Analyze.py", label="Start an analysis", icon=":material/play_circle:")

st.subheader("Library")
with error_boundary():
    labels = data.label_counts(workbench)
    cols = st.columns(4)
    cols[0].metric("Cases", f"{data.count_cases(workbench):,}")
    cols[1].metric("Labels", len(labels))
    try:
        index = workbench.index("image")
        cols[2].metric("Image encoder", workbench.image_encoder.name)
        cols[3].metric("Index size", f"{len(index):,}")
    except MedRAGError as exc:
        cols[2].metric("Image encoder", settings.image_encoder)
        cols[3].metric("Index size", "—")
        st.warning(escape_markdown(str(exc)))
    if labels:
        st.caption("Labels: " + ", ".join(f"{escape_markdown(name)} ({count})" for name, count in labels.items()))

st.subheader("Backends in use")
with error_boundary():
    with st.spinner("Loading the backends…"):
        frame = backends_frame(workbench)
    st.dataframe(frame, hide_index=True, width="stretch")
    st.caption(escape_markdown(web_search_line(settings)))

st.subheader("Latest analyses")
with error_boundary():
    latest = history_table(data.history_page(workbench, offset=0, limit=5))
    if latest.empty:
        st.caption("No analyses yet: start one above.")
    else:
        st.dataframe(latest, hide_index=True, width="stretch", column_config={
            "date": st.column_config.DatetimeColumn("date (UTC)", format="YYYY-MM-DD HH:mm:ss"),
            "similarity": st.column_config.NumberColumn(format="%.3f"),
        })
        st.page_link("pages/3_History.py", label="All history", icon=":material/history:")
