"""What every page does first: page config, the research-only disclaimer, state, the shared workbench."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import streamlit as st

from medrag.errors import MedRAGError
from medrag.ui import resources, state
from medrag.workbench import Workbench

#: Shown at the top of every page and in the sidebar.
DISCLAIMER = "For education and research only — not for clinical use."


def disclaimer() -> None:
    """The research-only notice (one helper, used by every page)."""
    st.info(DISCLAIMER, icon=":material/school:")
    st.sidebar.caption(f"MedRAG · {DISCLAIMER}")


def show_error(exc: BaseException) -> None:
    """A MedRAG error as its message (which says what to do next), never a traceback."""
    st.error(str(exc), icon=":material/error:")


@contextmanager
def error_boundary() -> Iterator[None]:
    """Show a :class:`MedRAGError` raised inside the block as ``st.error`` and carry on with the page."""
    try:
        yield
    except MedRAGError as exc:
        show_error(exc)


def setup_page(title: str, icon: str, *, build_library: bool = True) -> Workbench:
    """Configure the page, show the disclaimer, initialise session state and return the shared workbench.

    On first start (empty library) the synthetic demo library is built here, with progress shown.
    A :class:`MedRAGError` (locked database, bad setting) is shown and stops the page.
    """
    st.set_page_config(page_title=f"{title} · MedRAG", page_icon=icon, layout="wide")
    st.title(f"{icon} {title}")
    disclaimer()
    try:
        workbench = resources.get_workbench()
        state.init_state(workbench.settings.k)
        if build_library:
            resources.ensure_library_ready(workbench)
            resources.warm_up_in_background(workbench)
    except MedRAGError as exc:
        show_error(exc)
        st.stop()
    return workbench
