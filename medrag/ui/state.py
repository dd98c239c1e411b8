"""Session-state keys and their defaults, initialised in one place (:func:`init_state`)."""

from __future__ import annotations

import copy
from typing import Any

import streamlit as st

#: Neighbours to retrieve; set on the Settings page, used by Analyze and the quiz.
K = "k"
#: The last analysis shown on Analyze (a :class:`medrag.analysis.Analysis`).
LAST_RESULT = "last_result"
#: The neighbour opened side by side with the query, per result panel: {panel key: case id}.
OPEN_NEIGHBOUR = "open_neighbour"
#: Analyze input mode: "upload", "library" or "question" (the Library page sets "library").
ANALYZE_MODE = "analyze_mode_value"
#: The library case picked on Analyze (the Library page sets it too).
ANALYZE_CASE = "analyze_case_id"
#: The history row to open on the History page.
HISTORY_OPEN = "history_open_id"
#: The last history table row clicked (so a new click wins over the selectbox).
HISTORY_LAST_PICK = "history_last_pick"
#: The library case opened on the Library page.
LIBRARY_OPEN = "library_open_id"
#: The last library table row clicked.
LIBRARY_LAST_PICK = "library_last_pick"
#: Compare: the case ids shown side by side (None until the page picks a first pair).
COMPARE_CASES = "compare_case_ids"
#: Library: the last import's outcome, shown once after the page refreshes (dict or None).
LIBRARY_FLASH = "library_flash"
#: Quiz: the current question (dict: case_id, truth, answered, answer, analysis) or None.
QUIZ = "quiz"
#: Quiz: the session's score.
QUIZ_SCORE = "quiz_score"
#: Whether Analyze runs a web search (mirrors the toggle across page switches); None until the page
#: decides (on when a provider has its key, else off).
WEB_ON = "web_on"
#: Analyze: the label the case picker is filtered by.
ANALYZE_LABEL = "analyze_label_value"
#: Analyze: a case sent from another page (Library), kept in the picker whatever the filters until they change.
ANALYZE_PINNED = "analyze_pinned_case"
#: Analyze: what the last result was run on, (mode, input id), so a different input hides it.
LAST_INPUT = "last_input"
#: "Real cases only" for the pickers and the map (shared by every page); None until the library decides
#: (on once it holds real cases).
REAL_ONLY = "real_only"
#: Compare: the label the case picker is filtered by.
COMPARE_LABEL = "compare_label_value"
#: History: the page of the table shown (0-based).
HISTORY_PAGE = "history_page_no"

_DEFAULTS: dict[str, Any] = {
    LAST_RESULT: None,
    OPEN_NEIGHBOUR: {},
    ANALYZE_MODE: "upload",
    ANALYZE_CASE: None,
    HISTORY_OPEN: None,
    HISTORY_LAST_PICK: None,
    LIBRARY_OPEN: None,
    LIBRARY_LAST_PICK: None,
    COMPARE_CASES: None,
    LIBRARY_FLASH: None,
    QUIZ: None,
    QUIZ_SCORE: {"right": 0, "asked": 0},
    WEB_ON: None,
    ANALYZE_LABEL: None,
    ANALYZE_PINNED: None,
    LAST_INPUT: None,
    REAL_ONLY: None,
    COMPARE_LABEL: None,
    HISTORY_PAGE: 0,
}


def init_state(default_k: int) -> None:
    """Give every app key its default once per session (``default_k`` comes from the settings)."""
    for key, value in _DEFAULTS.items():
        if key not in st.session_state:
            st.session_state[key] = copy.deepcopy(value)
    if K not in st.session_state:
        st.session_state[K] = int(default_k)


def current_k() -> int:
    """The k the user chose (Settings page), as an int."""
    return int(st.session_state[K])


def bind_widget(widget_key: str, state_key: str) -> str:
    """Seed a widget from a persistent key and return the widget key.

    Streamlit drops a widget's own state when its page is left; the value lives on under
    ``state_key`` and is copied back into the widget before it is drawn. Pass
    ``on_change=store_widget, args=(widget_key, state_key)`` to the widget.
    """
    st.session_state[widget_key] = st.session_state[state_key]
    return widget_key


def store_widget(widget_key: str, state_key: str) -> None:
    """Copy a widget's value to its persistent key (an ``on_change`` callback)."""
    st.session_state[state_key] = st.session_state[widget_key]
