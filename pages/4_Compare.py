"""Compare (teaching): two to four cases side by side with shared zoom and window/level, and a label quiz."""

from __future__ import annotations

import random
from pathlib import Path

import streamlit as st

from medrag.analysis import Analysis
from medrag.casenames import case_caption, case_title
from medrag.ui import data, images, overlays, pickers, state
from medrag.ui.lessons import add_to_lesson_set
from medrag.ui.page import error_boundary, setup_page
from medrag.ui.panels import render_neighbour_grid
from medrag.ui.safe import defang_markdown, escape_markdown, shorten
from medrag.ui.truth_panel import expert_regions
from medrag.ui.viewer import PLOTLY_CONFIG, image_figure, linked_figure, needs_windowing, view_controls

workbench = setup_page("Compare", "compare")
#: Side of each padded square in the linked figure (px of the figure's image coordinates).
COMPARE_SIDE = 512

compare_tab, quiz_tab = st.tabs(["Side by side", "Quiz"], key="compare_tabs", on_change="rerun")

# ---------------------------------------------------------------------------------------------- side by side
if compare_tab.open:  # only the open tab runs
    with compare_tab, error_boundary():
        # the switch is drawn to the right of the filter, after it: its value this run decides the counts
        label_counts = pickers.label_counts(workbench, real_only=pickers.real_only_now(workbench))
        labels = list(label_counts)
        if st.session_state[state.COMPARE_LABEL] not in labels:
            st.session_state[state.COMPARE_LABEL] = pickers.ALL_LABELS
        filter_left, filter_right = st.columns([3, 1], vertical_alignment="bottom")
        label = filter_left.selectbox(
            "List cases with label", labels, format_func=pickers.label_format(label_counts),
            key=state.bind_widget("compare_label", state.COMPARE_LABEL),
            on_change=state.store_widget, args=("compare_label", state.COMPARE_LABEL),
            help="Narrows the list to choose from; the cases already chosen stay",
        )
        with filter_right:
            real_only = pickers.real_only_toggle(workbench, "compare_real")
        choices = data.case_choices(workbench, label=pickers.chosen_label(label), real_only=real_only)
        known = set(data.case_index(workbench)["case_id"])
        current = [c for c in (st.session_state[state.COMPARE_CASES] or []) if c in known]
        if st.session_state[state.COMPARE_CASES] is None:
            # Start with one case of each of the first labels, so the comparison is instructive at once.
            firsts = choices.drop_duplicates("label")["case_id"].tolist()
            current = (firsts if len(firsts) >= 2 else list(choices["case_id"]))[:2]
        st.session_state[state.COMPARE_CASES] = current
        # The chosen cases stay choosable whatever the filter, so narrowing the list never drops them.
        ids = current + [cid for cid in pickers.limited(choices) if cid not in set(current)]
        titles = pickers.titles_for(workbench, ids, choices)
        chosen = st.multiselect(
            "Cases (two to four)", ids, max_selections=4, format_func=lambda cid: titles.get(cid, cid),
            key=state.bind_widget("compare_cases", state.COMPARE_CASES),
            on_change=state.store_widget, args=("compare_cases", state.COMPARE_CASES),
            help="Type to search by file name, label, dataset, patient, age, view or fine label",
        )
        if len(chosen) < 2:
            st.info("Pick at least two cases.")
        else:
            cases = data.get_cases(workbench, chosen)
            chosen = [cid for cid in chosen if cid in cases]
            loaded = [images.load_image_file(cases[cid].image_path) for cid in chosen]
            # Window/level matters only for DICOM or >8-bit images; an 8-bit PNG gets the plain controls.
            wide = next((meta for _, meta in loaded if needs_windowing(meta)), loaded[0][1])
            view = view_controls("compare_view", wide)
            short = [shorten(titles.get(cid, cases[cid].label), 48) for cid in chosen]
            figure = linked_figure([pixels for pixels, _ in loaded], short, view, side=COMPARE_SIDE)
            if st.toggle("Show what the reading sees", key="compare_overlays",
                         help="Lung and heart outlines, flagged zones, the classifier's heatmap and devices, "
                              "read from each image the first time it is shown; and the expert boxes of the "
                              "cases that have them"):
                readings = [overlays.case_reading(workbench, cid, cases[cid].image_path) for cid in chosen]
                boxed = [expert_regions(cases[cid]) for cid in chosen]
                drawable = {layer for reading, regions in zip(readings, boxed, strict=True)
                            for layer in overlays.available_layers(reading, regions)}
                available = [layer for layer in overlays.LAYERS if layer in drawable]
                layers = overlays.layer_toggles("compare", available)
                shapes = [(int(px.shape[0]), int(px.shape[1])) for px, _ in loaded]
                placements = overlays.linked_placements(shapes, COMPARE_SIDE)
                for reading, regions, shape, placement in zip(readings, boxed, shapes, placements, strict=True):
                    overlays.add_overlays(figure, reading, shape, placement, layers, regions)
            st.plotly_chart(figure, config=PLOTLY_CONFIG, key="compare_figure")
            st.caption("Zoom or pan one image and the others follow; window/level applies to all.")
            add_to_lesson_set(workbench, chosen, key="compare", label="Add these cases to a lesson set")
            for column, cid in zip(st.columns(len(chosen)), chosen, strict=True):
                with column:
                    shown = cases[cid]
                    st.markdown(f"**{escape_markdown(shown.label)}**")
                    st.caption(escape_markdown(case_title(shown)))
                    st.text(case_caption(shown, 400))


# ---------------------------------------------------------------------------------------------- quiz
def _new_question() -> None:
    counts = data.label_counts(workbench)
    if not counts:
        return
    label = random.choice(list(counts))  # every label equally likely, however rare
    case_id = random.choice(sorted(data.case_ids_where(workbench, label=label)))
    st.session_state[state.QUIZ] = {
        "case_id": case_id,
        "truth": label,
        "answered": False,
        "answer": None,
        "analysis": None,
    }


def _submit(answer: str | None) -> None:
    quiz = st.session_state[state.QUIZ]
    if quiz is None or quiz["answered"] or answer is None:
        return
    quiz["answered"], quiz["answer"] = True, answer
    score = st.session_state[state.QUIZ_SCORE]
    score["asked"] += 1
    score["right"] += int(answer == quiz["truth"])


if quiz_tab.open:  # only the open tab runs
    with quiz_tab, error_boundary():
        score = st.session_state[state.QUIZ_SCORE]
        top_left, top_right = st.columns([3, 1])
        top_left.markdown(
            "Look at the image, pick the label, then reveal the truth, the reasoning and the nearest cases."
        )
        top_right.metric("Score", f"{score['right']} / {score['asked']}")
        st.button("New quiz case", type="primary", key="quiz_new", on_click=_new_question)
        quiz = st.session_state[state.QUIZ]
        if quiz is not None:
            case = data.get_case(workbench, quiz["case_id"])
            if case is None:
                st.warning("That case left the library; draw a new one.")
            else:
                image_col, answer_col = st.columns([1, 1], gap="large")
                with image_col:
                    st.plotly_chart(image_figure(images.load_pixels(case.image_path), title="Quiz case"),
                                    config=PLOTLY_CONFIG, key="quiz_image")
                with answer_col:
                    choice = st.radio(
                        "Your label",
                        sorted(data.label_counts(workbench)),
                        index=None,
                        key=f"quiz_answer_{case.case_id}",
                        disabled=quiz["answered"],
                    )
                    st.button("Reveal", key="quiz_reveal", disabled=quiz["answered"] or choice is None,
                              on_click=_submit, args=(choice,))
                    if quiz["answered"]:
                        if quiz["answer"] == quiz["truth"]:
                            st.success(f"Correct: the label is {escape_markdown(quiz['truth'])}.")
                        else:
                            st.error(
                                f"Not quite: the label is {escape_markdown(quiz['truth'])} "
                                f"(you chose {escape_markdown(quiz['answer'])})."
                            )
                        st.caption(escape_markdown(case_title(case)))
                        st.text(case_caption(case, 600))
                if quiz["answered"]:
                    if quiz["analysis"] is None:
                        with st.spinner("Reasoning over the nearest cases…"):
                            quiz["analysis"] = Analysis.fold(workbench.analyze(
                                Path(case.image_path), k=state.current_k(), web=False, save=False,
                                case_id=case.case_id,
                            ), into=Analysis(case_id=case.case_id))
                    analysis = quiz["analysis"]
                    if analysis.failures:
                        for message in analysis.failures.values():
                            st.error(defang_markdown(message))
                    title = f"Reasoning ({analysis.reasoner_backend or '?'}) · label: {analysis.label or '—'}"
                    with st.expander(escape_markdown(title), expanded=True):
                        st.markdown(defang_markdown(analysis.reasoning))
                    st.subheader("Nearest cases")
                    render_neighbour_grid(analysis, "quiz", openable=False)
