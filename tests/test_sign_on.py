"""Single sign-on for a class (issue #14 item 5): Streamlit's ``st.login`` against an OpenID Connect provider.

A real `streamlit run` server whose secrets.toml names a provider on 127.0.0.1 (tests/fakeoidc.py: discovery,
authorise, token with an RS256-signed ID token, JWKS), driven by Chromium. Whoever signs in with an address in
MEDRAG_EDUCATOR_EMAILS is the educator; anyone else, signed in or not, is a learner and cannot make a lesson
set. Skips without Chromium or Playwright.
"""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
from collections.abc import Iterator

import pytest

from fakeoidc import FakeOidcProvider, Person
from pgsuite import store_env
from test_browser_e2e import CHROMIUM, REPO, _free_port, _shot, wait_idle
from test_replicas import start_servers, stop_servers

pytestmark = [pytest.mark.browser, pytest.mark.slow, pytest.mark.timeout(600)]
TEACHER = Person("Teacher@School.example", "Ms Teacher")
PUPIL = Person("pupil@school.example", "A Pupil")


@pytest.fixture(scope="module")
def class_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, FakeOidcProvider]]:
    """(app URL, provider): a demo library, a server whose secrets.toml configures the provider."""
    if not CHROMIUM.exists():
        pytest.skip("Chromium is not installed at /usr/bin/chromium (apt-get install -y chromium)")
    pytest.importorskip("playwright.sync_api", reason="Playwright is not installed (pip install playwright)")
    pytest.importorskip("authlib", reason="Authlib is not installed (pip install -r requirements.txt)")
    folder = tmp_path_factory.mktemp("sign-on")
    data = folder / "data"
    env = {**os.environ, "MEDRAG_DATA_DIR": str(data), "MEDRAG_WEB": "off", "MEDRAG_DEMO_CASES": "12",
           "HF_HUB_OFFLINE": "1", "MEDRAG_EDUCATOR_EMAILS": "teacher@school.example", **store_env(data)}
    built = subprocess.run([sys.executable, "-m", "medrag", "demo", "--n", "12"], cwd=REPO, env=env,
                           capture_output=True, text=True, timeout=300, check=False)
    assert built.returncode == 0, built.stderr[-2000:]
    with FakeOidcProvider(client_id="medrag-class", client_secret=secrets.token_urlsafe(12)) as provider:
        port = _free_port()
        secrets_file = folder / "secrets.toml"
        secrets_file.write_text(
            "[auth]\n"
            f'redirect_uri = "http://127.0.0.1:{port}/oauth2callback"\n'
            f'cookie_secret = "{secrets.token_urlsafe(24)}"\n'
            f'client_id = "{provider.client_id}"\n'
            f'client_secret = "{provider.client_secret}"\n'
            f'server_metadata_url = "{provider.metadata_url}"\n',
            encoding="utf-8",
        )
        procs, urls = start_servers(env, 1, folder, ports=[port], extra_args=("--secrets.files", str(secrets_file)))
        try:
            yield urls[0], provider
        finally:
            stop_servers(procs)


def _sidebar_says(page, *texts: str) -> None:  # type: ignore[no-untyped-def]
    """Wait until the sidebar shows each text (a loaded machine can start the page's script seconds after the
    app shell is idle), then until the script has finished, so what the main area lacks is really absent."""
    from playwright.sync_api import expect

    for text in texts:
        expect(page.get_by_test_id("stSidebar")).to_contain_text(text, timeout=60_000)
    wait_idle(page)


def _sign_in(page, server: str) -> None:  # type: ignore[no-untyped-def]
    """Press the sidebar's Sign in; the provider signs in at once and sends the browser back to the app."""
    page.get_by_test_id("stSidebar").get_by_role("button", name="Sign in").click()
    page.wait_for_url(f"{server}/", timeout=60_000)  # Streamlit sends the browser home after the callback
    page.goto(f"{server}/Lessons")
    wait_idle(page)


def test_an_educator_signs_in_with_the_provider_and_a_learner_cannot_make_sets(
    class_server: tuple[str, FakeOidcProvider],
) -> None:
    from playwright.sync_api import expect, sync_playwright

    server, provider = class_server
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=["--no-sandbox"])
        try:
            anonymous = browser.new_context().new_page()
            anonymous.goto(f"{server}/Lessons")
            wait_idle(anonymous)
            _sidebar_says(anonymous, "You are a learner")
            assert anonymous.get_by_role("button", name="Create", exact=True).count() == 0

            provider.signed_in_as = TEACHER
            teacher = browser.new_context().new_page()
            teacher.goto(f"{server}/Lessons")
            wait_idle(teacher)
            _sign_in(teacher, server)
            _sidebar_says(teacher, "Signed in as Ms Teacher (teacher@school.example)", "You are the educator")
            expect(teacher.get_by_role("button", name="Create", exact=True)).to_have_count(1, timeout=60_000)
            _shot(teacher, "sign-on-educator")

            provider.signed_in_as = PUPIL
            pupil = browser.new_context().new_page()  # a separate browser: its own cookie
            pupil.goto(f"{server}/Lessons")
            wait_idle(pupil)
            _sign_in(pupil, server)
            _sidebar_says(pupil, "Signed in as A Pupil (pupil@school.example)", "You are a learner")
            assert pupil.get_by_role("button", name="Create", exact=True).count() == 0
            _shot(pupil, "sign-on-learner")
            assert provider.issued_to == [TEACHER.email, PUPIL.email]

            teacher.get_by_test_id("stSidebar").get_by_role("button", name="Sign out").click()
            # st.logout sends the browser through /auth/logout (which drops the identity cookie) and then home; a
            # reload before that navigation (a loaded machine runs the click's script late) keeps the cookie
            teacher.wait_for_url(f"{server}/", timeout=60_000)
            teacher.goto(f"{server}/Lessons")
            wait_idle(teacher)
            _sidebar_says(teacher, "You are a learner")  # signed out: back to a learner
            assert "Signed in as" not in teacher.get_by_test_id("stSidebar").inner_text()
        finally:
            browser.close()
