"""Library: browse and filter cases, open one, import a folder, re-index."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pandas as pd
import streamlit as st

from medrag.casenames import case_caption, case_facts, case_from_row, case_title
from medrag.ui import data, images, state
from medrag.ui.lessons import add_to_lesson_set
from medrag.ui.page import error_boundary, setup_page
from medrag.ui.panels import render_metadata
from medrag.ui.resources import prepare_after_import
from medrag.ui.safe import escape_markdown
from medrag.ui.upload_import import render_upload_import
from medrag.ui.viewer import PLOTLY_CONFIG, image_figure, view_controls

ALL = "all"
SHOWN = 2000

workbench = setup_page("Library", "photo_library")

browse_tab, import_tab = st.tabs(["Browse", "Import and re-index"], key="library_tabs", on_change="rerun")

if browse_tab.open:  # only the open tab runs
    with browse_tab, error_boundary():
        labels = data.label_counts(workbench)
        # "any with effusion" gathers a multi-label library's combinations ("edema + effusion", …)
        counts = {**{data.ANY_LABEL_PREFIX + f: n for f, n in data.finding_counts(labels).items()}, **labels}
        datasets = data.dataset_counts(workbench)
        left, mid, right = st.columns([1, 1, 2])
        label = left.selectbox("Label", [ALL, *counts], key="library_label",
                               format_func=lambda v: v if v == ALL else f"{v} ({counts.get(v, 0)})")
        dataset = mid.selectbox("Dataset", [ALL, *datasets], key="library_dataset",
                                format_func=lambda v: v if v == ALL else f"{v} ({datasets.get(v, 0)})")
        text = right.text_input("Search reports and labels", key="library_text",
                                placeholder="e.g. effusion, cardiac silhouette",
                                help="Matches inside a label too: \"effusion\" finds \"effusion + infiltration\"")
        frame = data.cases_frame(
            workbench,
            label=None if label == ALL else label, dataset=None if dataset == ALL else dataset,
            text=text.strip() or None, limit=SHOWN + 1,
        )
        more = len(frame) > SHOWN
        frame = frame.head(SHOWN)
        st.caption(f"{len(frame):,}{'+' if more else ''} matching cases of {data.count_cases(workbench):,}"
                   + (f" (showing the first {SHOWN:,})" if more else ""))
        cases = [case_from_row(row) for row in frame.to_dict("records")]
        shown = pd.DataFrame({
            "case_id": [c.case_id for c in cases],
            "case": [case_title(c) for c in cases],
            "label": [c.label for c in cases],
            "dataset": [c.dataset for c in cases],
            "view": [c.view for c in cases],
            "report": [case_caption(c, 160) for c in cases],
        }, columns=["case_id", "case", "label", "dataset", "view", "report"])
        titles = dict(zip(shown["case_id"], shown["case"], strict=True))
        # The table's key follows the filters: a row picked in one result must not outlive it (a stale
        # row number would point past the end of a shorter result, or at another case).
        filters = hashlib.sha1(repr((label, dataset, text.strip())).encode("utf-8")).hexdigest()[:12]
        selection = st.dataframe(
            shown, hide_index=True, width="stretch", height=320, key=f"library_table_{filters}",
            on_select="rerun", selection_mode="single-row",
            column_config={"case_id": None,  # the hash id: kept for the selection, never shown
                           "case": st.column_config.TextColumn("case", width="large"),
                           "report": st.column_config.TextColumn("report (or what is known)", width="large")},
        )
        rows = selection.selection.rows if selection is not None else []
        ids = list(shown["case_id"])
        if rows and 0 <= rows[0] < len(ids):
            picked = ids[rows[0]]
            if picked != st.session_state[state.LIBRARY_LAST_PICK]:
                # A newly clicked row wins over the selectbox until another row is clicked.
                st.session_state[state.LIBRARY_LAST_PICK] = picked
                st.session_state[state.LIBRARY_OPEN] = picked
        if ids and st.session_state[state.LIBRARY_OPEN] not in ids:
            st.session_state[state.LIBRARY_OPEN] = ids[0]
        if ids:
            opened = st.selectbox(
                "Open case", ids, help="Or click a row in the table; type to search the names",
                format_func=lambda cid: titles.get(cid, cid),
                key=state.bind_widget("library_open_select", state.LIBRARY_OPEN),
                on_change=state.store_widget, args=("library_open_select", state.LIBRARY_OPEN),
            )
            case = data.get_case(workbench, opened)
            if case is not None:
                viewer, details = st.columns([1, 1], gap="large")
                with viewer:
                    pixels, meta = images.load_image_file(case.image_path)
                    view = view_controls("library_view", meta)
                    st.plotly_chart(image_figure(pixels, view), config=PLOTLY_CONFIG, key="library_image")
                with details:
                    st.caption("Label")
                    st.subheader(escape_markdown(case.label), anchor=False)
                    st.caption(escape_markdown(case_title(case)))
                    if case.report:
                        st.markdown("**Report**")
                        st.text(case.report)
                    else:
                        st.markdown("**No report; what is known**")
                        st.text(case_facts(case))
                    render_metadata(meta)
                    add_to_lesson_set(workbench, case, key="library")
                    if st.button("Analyze this case", type="primary", key="library_analyze"):
                        st.session_state[state.ANALYZE_MODE] = "library"
                        st.session_state[state.ANALYZE_CASE] = case.case_id
                        st.session_state[state.ANALYZE_PINNED] = case.case_id  # whatever Analyze's filters
                        st.switch_page("pages/1_Analyze.py")

if import_tab.open:  # only the open tab runs
    with import_tab:
        st.markdown(
            "Import a folder of images (PNG, JPEG, DICOM), optionally with a labels CSV "
            "(columns such as `image`, `label`, `report`). Re-importing is incremental: unchanged files are skipped."
        )
        flash = st.session_state[state.LIBRARY_FLASH]
        if flash:
            st.session_state[state.LIBRARY_FLASH] = None
            st.success(escape_markdown(flash["summary"]))
            for note in flash["notes"]:
                st.caption(escape_markdown(note))
            if flash["errors"]:
                st.warning(f"{len(flash['errors'])} files were skipped:")
                st.dataframe(
                    {"file": [e[0] for e in flash["errors"]], "why": [e[1] for e in flash["errors"]]}, hide_index=True
                )
        with st.form("library_import"):
            folder = st.text_input("Folder (or .parquet / Open-i .tgz) on this machine", key="import_folder")
            labels_csv = st.text_input("Labels CSV (optional)", key="import_csv")
            submitted = st.form_submit_button("Import", type="primary")
        if submitted:
            with error_boundary():
                if not folder.strip():
                    st.warning("Give the path of a folder to import.")
                else:
                    bar = st.progress(0.0, text="Reading the folder…")

                    def on_progress(done: int, total: int) -> None:
                        bar.progress(min(done / max(total, 1), 1.0), text=f"Imported {done:,} / {total:,} images")

                    with st.spinner("Importing and indexing…"):
                        report = data.import_folder(
                            workbench,
                            Path(folder.strip()).expanduser(),
                            labels_csv=Path(labels_csv.strip()).expanduser() if labels_csv.strip() else None,
                            on_progress=on_progress,
                        )
                    bar.progress(1.0, text="Embedding the reports for text search and laying out the library map…")
                    prepare_after_import(workbench)
                    bar.progress(1.0, text="Done")
                    # Rerun so the table above lists the new cases; the outcome is shown once after it.
                    st.session_state[state.LIBRARY_FLASH] = {
                        "summary": report.summary(), "notes": list(report.notes),
                        "errors": [(str(a), str(b)) for a, b in report.errors],
                    }
                    st.rerun()

        render_upload_import(workbench)
        st.divider()
        st.markdown("**Re-index**: re-embed every case with the current image encoder and rebuild the index.")
        if st.button("Re-index the library", key="library_reindex"):
            with error_boundary(), st.spinner("Re-embedding and rebuilding the index…"):
                index = data.reindex(workbench)
                st.success(f"Index rebuilt: {len(index):,} cases with the {workbench.image_encoder.name} encoder.")
