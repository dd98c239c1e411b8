"""The educator's sign-in in the sidebar, and the check every write the pages make goes through.

With no ``MEDRAG_EDUCATOR_PASSWORD_HASH`` (a workstation) every session is the educator and nothing is shown.
With one, a session is a learner until the educator signs in; :func:`require_educator` is called by the
writing functions of :mod:`medrag.ui.data`, :mod:`medrag.ui.lessons` and :mod:`medrag.ui.annotate`, so no
button a learner finds can change the history, the lesson sets or the annotations.
"""

from __future__ import annotations

import streamlit as st

from medrag.roles import Role, require, verify_password
from medrag.ui.appconfig import app_settings

#: Session-state key of the signed-in role.
ROLE_KEY = "medrag_role"


def class_mode() -> bool:
    """Whether an educator password is configured (the app is served to a class)."""
    return app_settings().educator_password_hash is not None


def current_role() -> Role:
    """The educator on a workstation; in class mode, the educator only after signing in."""
    if not class_mode():
        return "educator"
    return "educator" if st.session_state.get(ROLE_KEY) == "educator" else "learner"


def is_educator() -> bool:
    """Whether this session may change the history, the lesson sets and the annotations."""
    return current_role() == "educator"


def require_educator(action: str) -> None:
    """Raise :class:`~medrag.errors.PermissionDeniedError` (shown as its message) unless this is the educator."""
    require(current_role(), action)


def _sign_in() -> None:
    stored = app_settings().educator_password_hash
    typed = str(st.session_state.get("roles_password") or "")
    st.session_state["roles_password"] = ""
    if stored is not None and typed and verify_password(typed, stored):
        st.session_state[ROLE_KEY] = "educator"
        st.session_state["roles_failed"] = False
    else:
        st.session_state["roles_failed"] = True


def _sign_out() -> None:
    st.session_state[ROLE_KEY] = "learner"


def render_sign_in() -> None:
    """In class mode: who this session is, and the educator's sign-in or sign-out (sidebar)."""
    if not class_mode():
        return
    with st.sidebar:
        if is_educator():
            st.caption("Signed in as the **educator**.")
            st.button("Sign out", key="roles_sign_out", on_click=_sign_out)
            return
        st.caption("You are a **learner**: analyse, browse and take quizzes.")
        with st.expander("Educator sign-in"):
            st.text_input("Class password", type="password", key="roles_password")
            st.button("Sign in", key="roles_sign_in", on_click=_sign_in)
            if st.session_state.get("roles_failed"):
                st.error("That is not the educator's password.")


__all__ = ["ROLE_KEY", "class_mode", "current_role", "is_educator", "render_sign_in", "require_educator"]
