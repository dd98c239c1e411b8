"""Lesson sets in the app: the reads and writes the pages make, the "Add to lesson set" widget, presentation mode.

The widget (:func:`add_to_lesson_set`) is one call on any page that shows a case or an analysis. The
presentation (:func:`render_presentation`) shows one case per screen on the full width, its label and
reasoning hidden until revealed; Previous / Reveal / Next answer the arrow keys and the space bar
(Streamlit button shortcuts).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import streamlit as st

from medrag.errors import MedRAGError
from medrag.teaching.items import ItemView
from medrag.teaching.model import ItemRef, LessonItem, LessonSet
from medrag.ui.roles import require_educator
from medrag.ui.safe import defang_markdown, escape_markdown

if TYPE_CHECKING:
    from medrag.teaching.bundle import ImportedSet
    from medrag.workbench import Workbench

#: The choice in the widget's set picker that creates a new set.
NEW_SET = "➕ New lesson set…"
#: Session key: the set being presented → {"pos": index, "revealed": set of item ids}.
PRESENT = "lesson_present"


# ---------------------------------------------------------------------------------------------- reads and writes
def lesson_sets(workbench: Workbench) -> list[LessonSet]:
    """Every lesson set with its items, by name."""
    return workbench.store.lesson_sets()


def lesson_set(workbench: Workbench, set_id: int) -> LessonSet | None:
    """One set, or None when it was deleted."""
    return workbench.store.get_lesson_set(set_id)


def set_views(workbench: Workbench, lesson: LessonSet) -> list[tuple[LessonItem, ItemView]]:
    """A set's items in order, each with its image, name, label and text."""
    from medrag.teaching.sets import set_views as views

    return views(workbench.store, lesson)


def create_set(workbench: Workbench, name: str, description: str = "") -> int:
    """A new, empty set; returns its id."""
    require_educator("create a lesson set")
    return workbench.store.create_lesson_set(name, description)


def rename_set(workbench: Workbench, set_id: int, name: str, description: str) -> None:
    """Rename a set and set its description."""
    require_educator("rename a lesson set")
    workbench.store.rename_lesson_set(set_id, name, description)


def delete_set(workbench: Workbench, set_id: int) -> bool:
    """Delete a set (its cases stay in the library)."""
    require_educator("delete a lesson set")
    return workbench.store.delete_lesson_set(set_id)


def add_items(workbench: Workbench, set_name: str, refs: Sequence[ItemRef], note: str = "") -> tuple[LessonSet, int]:
    """Add cases or analyses to a set by name (created if new); returns the set and how many were added."""
    from medrag.teaching.sets import add_to_set

    require_educator("change a lesson set's items")
    return add_to_set(workbench.store, set_name, refs, note)


def save_notes(workbench: Workbench, notes: dict[int, str]) -> None:
    """Set the teaching notes of several items (item id → note)."""
    require_educator("change a lesson set's items")
    workbench.store.update_lesson_notes(notes)


def move_item(workbench: Workbench, item_id: int, offset: int) -> None:
    """Move an item earlier (negative) or later in its set."""
    require_educator("change a lesson set's items")
    workbench.store.move_lesson_item(item_id, offset)


def remove_item(workbench: Workbench, item_id: int) -> bool:
    """Take an item out of its set."""
    require_educator("change a lesson set's items")
    return workbench.store.remove_lesson_item(item_id)


def handout_html(workbench: Workbench, lesson: LessonSet) -> bytes:
    """The set's self-contained HTML handout, as UTF-8 bytes for a download button."""
    from medrag.teaching.handout import handout_for_set

    return handout_for_set(workbench.store, lesson).encode("utf-8")


def bundle_zip(workbench: Workbench, lesson: LessonSet) -> bytes:
    """The set as a zip a colleague can import."""
    from medrag.teaching.bundle import export_bundle

    return export_bundle(workbench.store, lesson)


def import_bundle(workbench: Workbench, payload: bytes) -> ImportedSet:
    """Import a colleague's lesson-set zip (its images join the library)."""
    from medrag.teaching.bundle import import_bundle as run
    from medrag.ui import data
    from medrag.ui.resources import spawn_safe_main

    require_educator("import a lesson set")
    try:
        with spawn_safe_main():
            return run(workbench, payload)
    finally:
        data.library_changed(workbench)


# ---------------------------------------------------------------------------------------------- the widget
def as_refs(items: object) -> list[ItemRef]:
    """Lesson-item references from a case, a saved analysis, a reference, a case id, or a list of these."""
    from medrag.analysis import Analysis
    from medrag.records import Case

    if isinstance(items, (ItemRef, Case, Analysis, str)):
        items = [items]
    out: list[ItemRef] = []
    for item in items if isinstance(items, Sequence) else []:
        if isinstance(item, ItemRef):
            out.append(item)
        elif isinstance(item, Case):
            out.append(ItemRef("case", item.case_id))
        elif isinstance(item, Analysis) and item.analysis_id is not None:
            out.append(ItemRef("analysis", str(item.analysis_id)))
        elif isinstance(item, str) and item:
            out.append(ItemRef("case", item))
    return out


def add_to_lesson_set(workbench: Workbench, items: object, key: str, *, label: str = "Add to lesson set") -> None:
    """A small popover: pick a lesson set (or name a new one), add a note, add the case(s) to it.

    ``items``: a library case, a saved analysis (unsaved ones are skipped), an :class:`ItemRef`, a case id,
    or a list of these. Nothing is drawn when there is nothing to add.
    """
    chosen = as_refs(items)
    if not chosen:
        return
    with st.popover(label, icon=":material/playlist_add:"):
        names = [s.name for s in lesson_sets(workbench)]
        picked = st.selectbox("Lesson set", [*names, NEW_SET], key=f"{key}_lesson_set")
        name = st.text_input("Name of the new set", key=f"{key}_lesson_new") if picked == NEW_SET else picked
        note = st.text_area("Teaching note (optional)", key=f"{key}_lesson_note", height=80)
        if st.button("Add", type="primary", key=f"{key}_lesson_add", disabled=not (name or "").strip()):
            try:
                lesson, added = add_items(workbench, name or "", chosen, note)
            except MedRAGError as exc:
                st.error(escape_markdown(str(exc)))
            else:
                what = "case" if len(chosen) == 1 else "cases"
                if added:
                    st.success(
                        f"Added {added} {what} to {escape_markdown(lesson.name)} ({len(lesson.items)} in the set)."
                    )
                else:
                    st.info(f"Already in {escape_markdown(lesson.name)}.")


# ---------------------------------------------------------------------------------------------- presentation
def _present_state(set_id: int) -> dict[str, object]:
    states = st.session_state.setdefault(PRESENT, {})
    return states.setdefault(set_id, {"pos": 0, "revealed": set()})


def _go(set_id: int, offset: int, count: int) -> None:
    state = _present_state(set_id)
    state["pos"] = min(max(int(state["pos"]) + offset, 0), max(count - 1, 0))  # type: ignore[call-overload]


def _reveal(set_id: int, item_id: int) -> None:
    revealed = _present_state(set_id)["revealed"]
    assert isinstance(revealed, set)
    revealed ^= {item_id}


def render_presentation(workbench: Workbench, lesson: LessonSet, key: str = "present") -> None:
    """One case per screen on the full width; label, reasoning and note hidden until revealed."""
    from medrag.ui import annotate, images

    views = set_views(workbench, lesson)
    if not views:
        st.info("This set has no cases yet: add some on the Edit tab, or from Library, History, Compare or Analyze.")
        return
    state = _present_state(lesson.set_id)
    pos = min(int(state["pos"]), len(views) - 1)  # type: ignore[call-overload]
    item, view = views[pos]
    revealed = item.item_id in state["revealed"]  # type: ignore[operator]
    bar = st.columns([1, 1, 1, 3], vertical_alignment="center")
    bar[0].button(
        "Previous",
        key=f"{key}_prev",
        icon=":material/arrow_back:",
        shortcut="Left",
        disabled=pos == 0,
        on_click=_go,
        args=(lesson.set_id, -1, len(views)),
        width="stretch",
    )
    bar[1].button(
        "Hide" if revealed else "Reveal",
        key=f"{key}_reveal",
        icon=":material/visibility:",
        shortcut="Space",
        type="primary",
        on_click=_reveal,
        args=(lesson.set_id, item.item_id),
        width="stretch",
    )
    bar[2].button(
        "Next",
        key=f"{key}_next",
        icon=":material/arrow_forward:",
        shortcut="Right",
        disabled=pos >= len(views) - 1,
        on_click=_go,
        args=(lesson.set_id, 1, len(views)),
        width="stretch",
    )
    bar[3].markdown(f"**Case {pos + 1} of {len(views)}** · ← → to move, space to reveal")
    if view.missing or not view.image_path:
        st.warning(escape_markdown(view.title))
        return
    overlay = st.toggle(
        "Show annotations",
        key=f"{key}_overlay",
        value=False,
        help="The educator's boxes and arrows, and the NIH expert boxes where the image has them.",
    )
    pixels = images.load_pixels(view.image_path)
    marks = annotate.overlay_for(workbench, item.ref, view.case) if overlay else []
    st.plotly_chart(
        annotate.annotated_figure(pixels, marks, height=720),
        config={"displaylogo": False, "scrollZoom": True},
        key=f"{key}_image",
    )
    if not revealed:
        st.caption("Label, reasoning and note are hidden: press Reveal (or the space bar).")
        return
    st.subheader(f"Answer: {escape_markdown(view.label or 'unlabelled')}", anchor=False)
    st.caption(escape_markdown(view.title) + (" · synthetic phantom, not a patient" if view.synthetic else ""))
    if view.details:
        st.markdown(" · ".join(f"**{escape_markdown(k)}**: {escape_markdown(v)}" for k, v in view.details))
    if item.note:
        st.markdown("**Teaching note**")
        st.text(item.note)
    if view.text:
        with st.expander("Reasoning" if item.ref.kind == "analysis" else "Report", expanded=True):
            st.markdown(defang_markdown(view.text) if item.ref.kind == "analysis" else escape_markdown(view.text))


__all__ = [
    "NEW_SET",
    "add_items",
    "add_to_lesson_set",
    "as_refs",
    "bundle_zip",
    "create_set",
    "delete_set",
    "handout_html",
    "import_bundle",
    "lesson_set",
    "lesson_sets",
    "move_item",
    "remove_item",
    "rename_set",
    "render_presentation",
    "save_notes",
    "set_views",
]
