"""What every page does first: page config, the menu, the research-only disclaimer, state, the workbench.

Kept light on purpose: importing this module pulls in neither pandas nor DuckDB nor any model, so a
page can draw its inputs before :func:`open_workbench` does the heavy imports (first paint).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

import streamlit as st

from medrag.errors import MedRAGError
from medrag.ui import state

if TYPE_CHECKING:
    from medrag.workbench import Workbench

log = logging.getLogger("medrag.ui")

#: Shown at the top of every page and in the sidebar.
DISCLAIMER = "For education and research only — not for clinical use."

#: The sidebar menu: (page file, label, Material icon). Built by hand so the home page reads "Home".
PAGES: tuple[tuple[str, str, str], ...] = (
    ("streamlit_app.py", "Home", "pulmonology"),
    ("pages/1_Analyze.py", "Analyze", "radiology"),
    ("pages/2_Library.py", "Library", "photo_library"),
    ("pages/3_History.py", "History", "history"),
    ("pages/4_Compare.py", "Compare", "compare"),
    ("pages/6_Lessons.py", "Lessons", "school"),
    ("pages/7_Quiz.py", "Quiz", "quiz"),
    ("pages/5_Settings.py", "Settings", "settings"),
)


def sidebar_menu() -> None:
    """Links to every page (the automatic menu is switched off in .streamlit/config.toml)."""
    with st.sidebar:
        for path, label, icon in PAGES:
            st.page_link(path, label=label, icon=f":material/{icon}:")
        st.divider()
    from medrag.ui.roles import render_sign_in

    render_sign_in()


def disclaimer() -> None:
    """The research-only notice (one helper, used by every page)."""
    st.info(DISCLAIMER, icon=":material/school:")
    st.sidebar.caption(f"MedRAG · {DISCLAIMER}")


def show_error(exc: BaseException) -> None:
    """A MedRAG error as its message (which says what to do next), never a traceback."""
    from medrag.ui.safe import defang_markdown

    st.error(defang_markdown(str(exc)), icon=":material/error:")


@contextmanager
def error_boundary() -> Iterator[None]:
    """Errors inside the block become an ``st.error`` and the rest of the page still renders.

    A :class:`MedRAGError` shows its message (it says what to do next). Anything else is a bug: its
    traceback goes to the server log and the page says so in one line, without details.
    Streamlit's own rerun/stop signals are BaseExceptions and pass through untouched.
    """
    try:
        yield
    except MedRAGError as exc:
        show_error(exc)
    except Exception as exc:  # noqa: BLE001 - a bug in one panel must not blank the page
        log.exception("unexpected error in the app")
        st.error(
            f"Something went wrong here ({type(exc).__name__}). The details are in the server log; "
            "please report it. The rest of the page still works.",
            icon=":material/bug_report:",
        )


_FAVICON: list[bytes] = []


def favicon() -> bytes:
    """The app's tab icon, drawn here (a teal disc with a white cross) and served by the app itself.

    A ``:material/...:`` page icon would make the browser fetch an SVG from fonts.gstatic.com on every
    page: the app must not talk to any host but its own server.
    """
    if not _FAVICON:
        import numpy as np

        side = 64
        yy, xx = np.mgrid[:side, :side]
        disc = (xx - 31.5) ** 2 + (yy - 31.5) ** 2 <= 31.0**2
        cross = ((abs(xx - 31.5) < 6) & (abs(yy - 31.5) < 20)) | ((abs(yy - 31.5) < 6) & (abs(xx - 31.5) < 20))
        icon = np.zeros((side, side, 4), dtype=np.uint8)
        icon[disc] = (0x2C, 0x7A, 0x7B, 255)  # the theme's primary colour
        icon[disc & cross] = (255, 255, 255, 255)
        import io

        from PIL import Image

        buffer = io.BytesIO()
        Image.fromarray(icon, mode="RGBA").save(buffer, format="PNG")
        _FAVICON.append(buffer.getvalue())  # PNG bytes: set_page_config compares page_icon with strings
    return _FAVICON[0]


def start_page(title: str, icon: str) -> None:
    """Configure the page, draw the menu, title and disclaimer, and initialise session state.

    ``icon`` is a Material Symbols name (no emoji: headless browsers often lack an emoji font); it is
    drawn with the title from the bundled icon font. The tab icon is :func:`favicon` (nothing remote).
    """
    st.set_page_config(page_title=f"{title} · MedRAG", page_icon=favicon(), layout="wide")
    sidebar_menu()
    st.title(f":material/{icon}: {title}")
    disclaimer()
    try:
        from medrag.ui.appconfig import app_settings

        state.init_state(app_settings().k)
    except MedRAGError as exc:
        show_error(exc)
        st.stop()


def open_workbench() -> Workbench:
    """The shared workbench, its store held open for this run; builds the demo library on first start.

    A :class:`MedRAGError` (locked database, bad setting) is shown and stops the page.
    """
    try:
        from medrag.ui import resources

        workbench = resources.get_workbench()
        resources.keep_store_open(workbench)
        resources.ensure_library_ready(workbench)
        resources.warm_up_in_background(workbench)
        resources.refresh_text_index(workbench)  # the library may have grown (an import, the CLI)
    except MedRAGError as exc:
        show_error(exc)
        st.stop()
    return workbench


def setup_page(title: str, icon: str) -> Workbench:
    """:func:`start_page` then :func:`open_workbench`, for pages that need the library at once."""
    start_page(title, icon)
    return open_workbench()
