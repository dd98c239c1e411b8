"""Analyze: an uploaded image, a library case or a question → streamed reasoning, label, similar cases, web.

The inputs and the Analyze button are drawn before the workbench and the result panels are imported
(pandas, DuckDB, plotly), so the page paints at once; a library case opens the workbench earlier.
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import numpy as np
import streamlit as st

from medrag.analysis import Analysis
from medrag.ui import images, state
from medrag.ui.page import error_boundary, open_workbench, start_page
from medrag.ui.references import render_web
from medrag.ui.safe import escape_markdown

#: Input modes (stored value -> label).
MODES = {"upload": "Upload an image", "library": "Library case", "question": "Question only"}

start_page("Analyze", "radiology")


def _pick_case(case_id: str) -> None:
    st.session_state[state.ANALYZE_CASE] = case_id


def _filters_changed(widget_key: str, state_key: str) -> None:
    """A new label (or the real-only switch): the case box moves to the first case of the new list."""
    if widget_key:
        state.store_widget(widget_key, state_key)
    st.session_state[state.ANALYZE_CASE] = None
    st.session_state[state.ANALYZE_PINNED] = None


# ---------------------------------------------------------------------------------------------- input
mode = st.segmented_control(
    "Input", list(MODES), format_func=MODES.__getitem__,
    key=state.bind_widget("analyze_mode", state.ANALYZE_MODE),
    on_change=state.store_widget, args=("analyze_mode", state.ANALYZE_MODE),
) or "upload"
question = st.text_input(
    "Question (optional with an image)",
    key="analyze_question",
    placeholder="e.g. Is there a pleural effusion? What are the signs of pneumothorax?",
)

source: Path | bytes | None = None
name = ""
case_id = ""
pixels: np.ndarray | None = None
meta: dict[str, Any] = {}
#: What the input is, so a result computed on another input is not shown beside it.
current_input: tuple[str, str] | None = ("question", "") if mode == "question" else None

with error_boundary():
    if mode == "upload":
        upload = st.file_uploader(
            "Chest X-ray (PNG, JPEG or DICOM)",
            type=["png", "jpg", "jpeg", "dcm", "dicom"],
            key="analyze_upload",
            help="The file is decoded locally; DICOM tags are de-identified before they are shown or saved.",
        )
        if upload is not None:
            current_input = ("upload", str(getattr(upload, "file_id", "") or upload.name))
            payload = upload.getvalue()
            pixels, meta = images.decode_upload(payload, upload.name)
            source, name = payload, upload.name
    elif mode == "library":
        from medrag.casenames import case_title, is_synthetic  # the workbench opens early for a library case
        from medrag.ui import data, pickers

        library = open_workbench()
        real_only = pickers.real_only_toggle(library, "analyze_real", on_change=lambda: _filters_changed("", ""))
        pick_left, pick_mid, pick_right = st.columns([2, 4, 1], vertical_alignment="bottom")
        label_counts = pickers.label_counts(library, real_only=real_only)
        labels = list(label_counts)
        if st.session_state[state.ANALYZE_LABEL] not in labels:
            st.session_state[state.ANALYZE_LABEL] = pickers.ALL_LABELS
        label = pick_left.selectbox(
            "Label", labels, format_func=pickers.label_format(label_counts),
            key=state.bind_widget("analyze_case_label", state.ANALYZE_LABEL),
            on_change=_filters_changed, args=("analyze_case_label", state.ANALYZE_LABEL),
        )
        choices = data.case_choices(library, label=pickers.chosen_label(label), real_only=real_only)
        options = pickers.limited(choices)
        pinned = st.session_state[state.ANALYZE_PINNED]
        if pinned and pinned not in options and data.get_case(library, pinned) is not None:
            options.insert(0, pinned)  # sent from the Library page: kept until a filter changes
        if st.session_state[state.ANALYZE_CASE] not in options:
            st.session_state[state.ANALYZE_CASE] = options[0] if options else None
        if options:
            titles = pickers.titles_for(library, options, choices)
            pick_right.button(
                "Random", key="analyze_random", on_click=_pick_case, args=(random.choice(options),),
                help="Pick a random case from the list",
            )
            case_id = pick_mid.selectbox(
                "Case", options, format_func=lambda cid: titles.get(cid, "case no longer in the library"),
                key=state.bind_widget("analyze_case", state.ANALYZE_CASE),
                on_change=state.store_widget, args=("analyze_case", state.ANALYZE_CASE),
                help="Type to search by file name, label, dataset, patient, age, view or fine label",
            )
            case = data.get_case(library, case_id) if case_id else None
            if case is not None:
                current_input = ("library", case.case_id)
                pixels, meta = images.load_image_file(case.image_path)
                source, name = Path(case.image_path), case_title(case)
                st.caption(
                    f"Truth label: **{escape_markdown(case.label)}** · {escape_markdown(case.dataset)}"
                    + (" · synthetic phantom, not a patient" if is_synthetic(case) else "")
                    + " — the case itself is left out of its own neighbours."
                )
        else:
            st.info("No cases with that label" + (" among the real cases." if real_only else "."))

options_left, options_right = st.columns([1, 3])
with options_left:
    from medrag.ui.appconfig import app_settings, web_available

    web_ready = web_available(app_settings())
    if not web_ready:
        st.session_state[state.WEB_ON] = False  # no provider has its key: nothing to switch on
    elif st.session_state[state.WEB_ON] is None:
        st.session_state[state.WEB_ON] = True
    st.toggle(
        "Web search", key=state.bind_widget("analyze_web", state.WEB_ON),
        on_change=state.store_widget, args=("analyze_web", state.WEB_ON), disabled=not web_ready,
        help="Trusted references from allowlisted sites" if web_ready
        else "Off: set SERPAPI_API_KEY or TAVILY_API_KEY to search allowlisted sites (see Settings)",
    )
options_right.caption(f"k = {state.current_k()} similar cases (change it on the Settings page)")

ready = source is not None or (mode == "question" and question.strip())
run = st.button("Analyze", type="primary", disabled=not ready, key="analyze_run")

# Heavy from here on (the inputs above are already on screen).
workbench = open_workbench()
from medrag.ui import data  # noqa: E402
from medrag.ui.lessons import add_to_lesson_set  # noqa: E402
from medrag.ui.overlays import reading_figure  # noqa: E402
from medrag.ui.panels import (  # noqa: E402 - imported after the first paint on purpose
    render_label_and_findings,
    render_metadata,
    render_outcome,
    render_saved,
    render_similar,
    render_stage_log,
    run_live,
)
from medrag.ui.truth_panel import (  # noqa: E402
    analysed_case,
    expert_regions,
    render_case_truth,
    seen_in_training,
)
from medrag.ui.viewer import PLOTLY_CONFIG, view_controls  # noqa: E402

# ---------------------------------------------------------------------------------------------- viewer + reasoning
last: Analysis | None = st.session_state.get(state.LAST_RESULT)
last_input = st.session_state.get(state.LAST_INPUT)
hidden: Analysis | None = None
if last is not None and not run and last_input is not None:
    # The last result belongs beside its own input: the same input, or (after a trip to another page,
    # which empties the upload box) no input yet in the same mode. Another input hides it.
    same = current_input == tuple(last_input) or (current_input is None and mode == last_input[0])
    if not same:
        hidden, last = last, None
if pixels is None and last is not None and last.image_path and not run:
    with error_boundary():
        pixels, meta = images.load_image_file(last.image_path)
        meta = last.meta or meta

#: The library case on screen: the one picked, or the one the last upload turned out to be (its pixels' hash).
shown_case = analysed_case(workbench, case_id or (last.case_id if last is not None and not run else ""))
viewer_col, reasoning_col = st.columns([1, 1], gap="large")
with viewer_col:
    if pixels is not None:
        view = view_controls("analyze_view", meta)
        # The last reading's outlines, zones, heatmap and devices, and the case's expert boxes; a run draws the
        # plain image first (no toggles: the slot is redrawn with them, under the same keys, when it ends).
        layer_slot, figure_slot = st.container(), st.empty()
        with layer_slot:
            figure = reading_figure(pixels, view, last.reading if last is not None and not run else None, "analyze",
                                    regions=() if run else expert_regions(shown_case))
        figure_slot.plotly_chart(figure, config=PLOTLY_CONFIG, key="analyze_image")
        render_metadata(meta)
    elif mode == "question":
        st.caption("Text question: the answer draws on the library cases whose reports match it best.")
    else:
        st.caption("Choose an image to view it here.")

with reasoning_col:
    if run:
        # The events carry everything shown afterwards (stored upload, notes, query vector): nothing is re-read.
        fresh = Analysis(input_name=name or "question", question=question.strip(), case_id=case_id)
        from medrag.ui.resources import warm_up_finished

        loading = st.empty()  # cleared once the analysis has run: a finished one is not waiting for anything
        if not warm_up_finished(workbench):
            loading.caption(":material/hourglass_top: The models are still loading after the server started (once, "
                            "up to about half a minute on a small machine); this analysis starts as soon as they are "
                            "ready.")
        with error_boundary():
            events = workbench.analyze(
                source, question=question, name=name, k=state.current_k(), web=bool(st.session_state[state.WEB_ON]),
                save=True, case_id=case_id,
            )
            run_live(events, fresh)
        loading.empty()
        if fresh.analysis_id is not None:
            data.history_changed(workbench)
        st.session_state[state.LAST_RESULT] = fresh
        st.session_state[state.LAST_INPUT] = current_input
        st.session_state[state.OPEN_NEIGHBOUR] = {**st.session_state[state.OPEN_NEIGHBOUR], "analyze": None}
        last = fresh
        regions = expert_regions(analysed_case(workbench, fresh.case_id))
        if pixels is not None and (fresh.reading is not None or regions):
            with layer_slot:
                figure = reading_figure(pixels, view, fresh.reading, "analyze", regions=regions)
            figure_slot.plotly_chart(figure, config=PLOTLY_CONFIG, key="analyze_image_read")
    elif last is not None:
        st.caption(f"Last analysis: {escape_markdown(last.input_name or last.question or 'question')}")
        render_stage_log(last)
    elif hidden is not None:
        where = f" (saved in History as #{hidden.analysis_id})" if hidden.analysis_id else ""
        st.caption(f"Press Analyze for this input; the previous analysis, of "
                   f"{escape_markdown(hidden.input_name or hidden.question or 'a question')}, is hidden{where}.")
    if last is not None and render_outcome(last):
        render_label_and_findings(last)
        read_case = analysed_case(workbench, last.case_id)
        render_case_truth(read_case, last, trained_on=seen_in_training(workbench, read_case))
        render_saved(last, "analyze")
        add_to_lesson_set(workbench, last, key="analyze")

if last is not None and last.ok:
    with error_boundary():
        render_similar(workbench, last, "analyze")
    render_web(last)
