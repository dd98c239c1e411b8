"""The educator's sign-in in the sidebar, and the check every write the pages make goes through.

Two ways to serve a class, either or both:

- a locally configured password (``MEDRAG_EDUCATOR_PASSWORD_HASH``): a session is a learner until someone types
  the educator's password;
- single sign-on through an OpenID Connect provider with Streamlit's ``st.login`` (an ``[auth]`` section in
  ``.streamlit/secrets.toml``; see docs/DEPLOY.md): whoever signs in with an address listed in
  ``MEDRAG_EDUCATOR_EMAILS`` is the educator, everyone else (signed in or not) a learner.

With neither (a workstation) every session is the educator and nothing is shown. :func:`require_educator` is
called by the
writing functions of :mod:`medrag.ui.data`, :mod:`medrag.ui.lessons` and :mod:`medrag.ui.annotate`, so no
button a learner finds can change the history, the lesson sets or the annotations.
"""

from __future__ import annotations

import streamlit as st

from medrag.roles import Role, require, verify_password
from medrag.ui.appconfig import app_settings
from medrag.ui.safe import escape_markdown

#: Session-state key of the signed-in role.
ROLE_KEY = "medrag_role"


def sign_on_provider() -> tuple[bool, str | None]:
    """Whether ``[auth]`` in secrets.toml configures an OIDC provider for ``st.login``, and which one to pass
    (None: the unnamed one in ``[auth]`` itself; else the first named ``[auth.NAME]`` section)."""
    if not st.secrets.load_if_toml_exists() or "auth" not in st.secrets:
        return False, None
    auth = st.secrets["auth"]
    if "client_id" in auth:
        return True, None
    named = [name for name, section in auth.items() if hasattr(section, "get") and "client_id" in section]
    return (True, named[0]) if named else (False, None)


def class_mode() -> bool:
    """Whether the app is served to a class: an educator password or a single sign-on provider is configured."""
    return app_settings().educator_password_hash is not None or sign_on_provider()[0]


def signed_on_email() -> str | None:
    """The lower-cased e-mail of the person signed in through ``st.login``, None when nobody is."""
    if not sign_on_provider()[0] or not st.user.is_logged_in:
        return None
    email = st.user.get("email")
    return str(email).strip().lower() if email else None


def signed_on_name() -> str | None:
    """The name (else the e-mail) of the person signed in through ``st.login``, None when nobody is."""
    email = signed_on_email()
    return None if email is None else str(st.user.get("name") or email)


def current_role() -> Role:
    """The educator on a workstation; in class mode, the educator only after signing in (by password, or by
    single sign-on with an address in ``MEDRAG_EDUCATOR_EMAILS``)."""
    if not class_mode():
        return "educator"
    if st.session_state.get(ROLE_KEY) == "educator":
        return "educator"
    email = signed_on_email()
    return "educator" if email is not None and email in app_settings().educator_emails else "learner"


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


def _render_sign_on(provider: str | None) -> None:
    """The single sign-on part of the sidebar: who is signed in, and the button to sign in or out."""
    email = signed_on_email()
    if email is None:
        label = f"Sign in with {provider}" if provider else "Sign in"
        if st.button(label, key="roles_sign_on"):
            st.login(provider) if provider else st.login()
        return
    name = signed_on_name() or email
    st.caption(f"Signed in as {escape_markdown(name)} ({escape_markdown(email)}).")
    if not app_settings().educator_emails:
        st.warning("No educator is configured: set MEDRAG_EDUCATOR_EMAILS to the educators' e-mail addresses.")
    if st.button("Sign out", key="roles_sign_off"):
        st.logout()


def render_sign_in() -> None:
    """In class mode: who this session is, and the educator's sign-in or sign-out (sidebar)."""
    if not class_mode():
        return
    sign_on, provider = sign_on_provider()
    with st.sidebar:
        if sign_on:
            _render_sign_on(provider)
        if is_educator():
            st.caption("You are the **educator**.")
            if st.session_state.get(ROLE_KEY) == "educator":
                st.button("Sign out", key="roles_sign_out", on_click=_sign_out)
            return
        st.caption("You are a **learner**: analyse, browse and take quizzes.")
        if app_settings().educator_password_hash is None:
            return
        with st.expander("Educator sign-in"):
            st.text_input("Class password", type="password", key="roles_password")
            st.button("Sign in", key="roles_sign_in", on_click=_sign_in)
            if st.session_state.get("roles_failed"):
                st.error("That is not the educator's password.")


__all__ = ["ROLE_KEY", "class_mode", "current_role", "is_educator", "render_sign_in", "require_educator",
           "sign_on_provider", "signed_on_email", "signed_on_name"]
