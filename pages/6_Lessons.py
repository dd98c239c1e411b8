"""Lessons: build lesson sets (cases with a teaching note, in order), present them, annotate, share them."""

from __future__ import annotations

import streamlit as st

from medrag.teaching.model import ItemRef
from medrag.ui import annotate, data, images, lessons
from medrag.ui.page import error_boundary, setup_page
from medrag.ui.roles import is_educator
from medrag.ui.safe import escape_markdown

ALL = "all"
#: Most cases a picker offers (filter by label and dataset to reach the rest).
PICKER_CASES = 5_000

workbench = setup_page("Lessons", "school")

st.markdown(
    "A **lesson set** is a named, ordered list of cases, each with a teaching note. Build one here, or add "
    "cases from Library, History, Compare and Analyze with **Add to lesson set**; present it in class, "
    "run it as a quiz on the Quiz page, and share it as an HTML handout or a zip a colleague can import."
)


def case_picker(key: str, *, multiple: bool) -> list[str]:
    """Library cases chosen by label, dataset and the real-only switch; their ids."""
    from medrag.casenames import case_from_row, case_title

    labels = data.label_counts(workbench)
    datasets = data.dataset_counts(workbench)
    has_real = any(name != "synthetic" for name in datasets)
    left, mid, right = st.columns([1, 1, 1], vertical_alignment="bottom")
    label = left.selectbox(
        "Label",
        [ALL, *labels],
        key=f"{key}_label",
        format_func=lambda v: v if v == ALL else f"{v} ({labels.get(v, 0)})",
    )
    dataset = mid.selectbox(
        "Dataset",
        [ALL, *datasets],
        key=f"{key}_dataset",
        format_func=lambda v: v if v == ALL else f"{v} ({datasets.get(v, 0)})",
    )
    real_only = right.toggle(
        "Real cases only",
        value=has_real,
        key=f"{key}_real",
        help="Leave out the synthetic phantoms (they are always marked as such).",
    )
    frame = data.cases_frame(
        workbench,
        label=None if label == ALL else label,
        dataset=None if dataset == ALL else dataset,
        limit=PICKER_CASES,
    )
    if real_only and "synthetic" in frame:
        frame = frame[~frame["synthetic"].astype(bool)]
    rows = [{str(k): v for k, v in row.items()} for row in frame.to_dict("records")]
    titles = {str(row["case_id"]): case_title(case_from_row(row)) for row in rows}
    if multiple:
        return st.multiselect(
            "Cases",
            list(titles),
            format_func=titles.__getitem__,
            key=f"{key}_cases",
            placeholder="Type part of a file name, label or patient",
        )
    picked = st.selectbox(
        "Case",
        list(titles),
        format_func=titles.__getitem__,
        key=f"{key}_case",
        index=None,
        placeholder="Type part of a file name, label or patient",
    )
    return [picked] if picked else []


# ---------------------------------------------------------------------------------------------- the set
with error_boundary():
    sets = lessons.lesson_sets(workbench)
    if is_educator():
        with st.expander("New lesson set", expanded=not sets):
            with st.form("lesson_new_form", clear_on_submit=True):
                new_name = st.text_input("Name", key="lesson_new_name", placeholder="e.g. Normal vs pneumonia")
                new_description = st.text_area("Description (optional)", key="lesson_new_description", height=68)
                if st.form_submit_button("Create", type="primary", key="lesson_create"):
                    with error_boundary():
                        st.session_state["lesson_pending"] = lessons.create_set(workbench, new_name,
                                                                                new_description)
                        st.rerun()
    if not sets:
        st.info("No lesson sets yet: create one above." if is_educator()
                else "No lesson sets yet: the educator makes them.")
        st.stop()
    ids = [s.set_id for s in sets]
    flash = st.session_state.pop("lesson_flash", None)
    if flash:
        st.success(escape_markdown(flash))
    if st.session_state.get("lesson_pending") in ids:
        st.session_state["lesson_current"] = st.session_state.pop("lesson_pending")
    if st.session_state.get("lesson_current") not in ids:
        st.session_state["lesson_current"] = ids[0]
    names = {s.set_id: s.name for s in sets}
    current = st.selectbox(
        "Lesson set",
        ids,
        key="lesson_current",
        format_func=lambda i: f"{names[i]} ({len(next(s for s in sets if s.set_id == i).items)} cases)",
    )
    lesson = lessons.lesson_set(workbench, current)
    if lesson is None:
        st.warning("That set was just deleted; pick another.")
        st.stop()

edit_tab, present_tab, annotate_tab, share_tab = st.tabs(
    ["Edit", "Present", "Annotate", "Share"], key="lesson_tabs", on_change="rerun"
)

if edit_tab.open:
    with edit_tab, error_boundary():
        with st.expander("Rename, describe or delete this set"):
            with st.form("lesson_rename_form"):
                name = st.text_input("Name", value=lesson.name, key=f"lesson_rename_{lesson.set_id}")
                description = st.text_area("Description", value=lesson.description, key=f"lesson_desc_{lesson.set_id}")
                if st.form_submit_button("Save", key="lesson_rename_save"):
                    with error_boundary():
                        lessons.rename_set(workbench, lesson.set_id, name, description)
                        st.rerun()
            sure = st.checkbox("Yes, delete this set (its cases stay in the library)", key="lesson_delete_sure")
            if st.button("Delete set", key="lesson_delete", disabled=not sure):
                lessons.delete_set(workbench, lesson.set_id)
                st.session_state.pop("lesson_current", None)
                st.rerun()

        with st.expander("Add cases from the library", expanded=not lesson.items):
            picked = case_picker("lesson_add", multiple=True)
            note = st.text_area("Teaching note for these cases (optional)", key="lesson_add_note", height=68)
            if st.button("Add to this set", type="primary", key="lesson_add_button", disabled=not picked):
                _, added = lessons.add_items(workbench, lesson.name, [ItemRef("case", c) for c in picked], note)
                st.session_state.pop("lesson_add_cases", None)
                st.toast(f"Added {added} case(s) to {lesson.name}.")
                st.rerun()

        views = lessons.set_views(workbench, lesson)
        if not views:
            st.info("No cases in this set yet.")
        else:
            st.markdown(f"**{len(views)} cases**, in the order they are presented. Edit the notes, then save.")
            for index, (item, view) in enumerate(views):
                thumb, body, buttons = st.columns([1, 6, 2], vertical_alignment="center")
                if view.case is not None and view.case.thumb_path:
                    thumb.image(view.case.thumb_path, width=72)
                body.markdown(f"**{index + 1}.** {escape_markdown(view.title)}")
                if view.missing:
                    body.caption("This case or analysis is gone; remove it from the set.")
                up, down, remove = buttons.columns(3)
                if up.button(
                    ":material/arrow_upward:", key=f"lesson_up_{item.item_id}", disabled=index == 0, help="Move up"
                ):
                    lessons.move_item(workbench, item.item_id, -1)
                    st.rerun()
                if down.button(
                    ":material/arrow_downward:",
                    key=f"lesson_down_{item.item_id}",
                    disabled=index == len(views) - 1,
                    help="Move down",
                ):
                    lessons.move_item(workbench, item.item_id, 1)
                    st.rerun()
                if remove.button(":material/delete:", key=f"lesson_remove_{item.item_id}", help="Remove from the set"):
                    lessons.remove_item(workbench, item.item_id)
                    st.rerun()
            with st.form("lesson_notes_form"):
                notes = {
                    item.item_id: st.text_area(
                        f"Note for case {index + 1}", value=item.note, height=68, key=f"lesson_note_{item.item_id}"
                    )
                    for index, (item, _view) in enumerate(views)
                }
                if st.form_submit_button("Save notes", type="primary", key="lesson_notes_save"):
                    with error_boundary():
                        lessons.save_notes(workbench, notes)
                        st.success("Notes saved.")

if present_tab.open:
    with present_tab, error_boundary():
        lessons.render_presentation(workbench, lesson, key="lesson_present")

if annotate_tab.open:
    with annotate_tab, error_boundary():
        source = st.radio(
            "Annotate", ["a case of this set", "any library case"], horizontal=True, key="lesson_annotate_from"
        )
        target: ItemRef | None = None
        views = lessons.set_views(workbench, lesson)
        if source == "a case of this set":
            usable = [(item, view) for item, view in views if not view.missing and view.image_path]
            if usable:
                position = st.selectbox(
                    "Case",
                    range(len(usable)),
                    key="lesson_annotate_item",
                    format_func=lambda i: f"{i + 1}. {usable[i][1].title}",
                )
                item, view = usable[int(position)]
                target, image_path, case = item.ref, view.image_path, view.case
            else:
                st.info("This set has no case with an image yet.")
        else:
            chosen = case_picker("lesson_annotate_pick", multiple=False)
            if chosen:
                case = data.get_case(workbench, chosen[0])
                if case is not None:
                    target, image_path = ItemRef("case", case.case_id), case.image_path
        if target is not None:
            marks = annotate.overlay_for(workbench, target, case)
            annotate.render_annotation_editor(
                workbench, target, images.load_pixels(image_path), marks, key=f"lesson_annot_{target.key[:48]}"
            )

if share_tab.open:
    with share_tab, error_boundary():
        st.markdown("**Handout**: one HTML file with every image embedded, your notes, and the answers at the end.")
        slug = "".join(c if c.isalnum() else "-" for c in lesson.name.lower()).strip("-") or "lesson"
        if st.button("Prepare the handout and the zip", key="lesson_prepare"):
            st.session_state["lesson_exports"] = {
                "set": lesson.set_id,
                "html": lessons.handout_html(workbench, lesson),
                "zip": lessons.bundle_zip(workbench, lesson),
            }
        exports = st.session_state.get("lesson_exports")
        if exports and exports.get("set") == lesson.set_id:
            left, right = st.columns(2)
            left.download_button(
                "Download handout (HTML)",
                exports["html"],
                file_name=f"{slug}-handout.html",
                mime="text/html",
                key="lesson_handout_download",
                type="primary",
            )
            right.download_button(
                "Download lesson set (zip)",
                exports["zip"],
                file_name=f"{slug}.zip",
                mime="application/zip",
                key="lesson_zip_download",
            )
        st.divider()
        st.markdown("**Import a colleague's lesson set** (a zip exported from MedRAG): its images join your library.")
        upload = st.file_uploader("Lesson set zip", type=["zip"], key="lesson_import_file")
        if upload is not None and st.button("Import the lesson set", key="lesson_import", type="primary"):
            with st.spinner("Importing the images and the set…"):
                imported = lessons.import_bundle(workbench, upload.getvalue())
            st.session_state["lesson_pending"] = imported.set_id
            st.session_state["lesson_flash"] = " ".join(
                [f"Imported the lesson set {imported.name} with {imported.cases} cases.", *imported.notes]
            )
            st.rerun()
