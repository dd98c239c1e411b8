"""Offline in a real browser: every request the app makes goes to its own server and nowhere else.

A `streamlit run` on 127.0.0.1 (the browser test's fixture), Chromium through Playwright recording every
request (page loads, scripts, fonts, favicons, images, websockets); every page in the sidebar is opened,
an analysis is run (so the result panels, plots and neighbour cards are drawn) and the Compare tabs are
opened. Fails on any request to a host other than 127.0.0.1 / localhost. Skips without Chromium or
Playwright.
"""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlsplit

import pytest

from test_browser_e2e import CHROMIUM, _shot, _upload_file, server, wait_idle  # noqa: F401 - server is a fixture

pytestmark = [pytest.mark.browser, pytest.mark.slow, pytest.mark.timeout(300)]

#: Hosts the app may talk to: its own server.
LOCAL_HOSTS = {"127.0.0.1", "localhost", "::1"}
#: Schemes that never leave the browser.
LOCAL_SCHEMES = {"data", "blob", "about", "chrome-extension", "chrome"}


def _foreign(url: str) -> bool:
    parts = urlsplit(url)
    if parts.scheme in LOCAL_SCHEMES:
        return False
    return (parts.hostname or "") not in LOCAL_HOSTS


def test_no_request_leaves_the_machine(server: str, tmp_path: Path) -> None:  # noqa: F811 - the fixture
    from playwright.sync_api import expect, sync_playwright

    upload = _upload_file(tmp_path)
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=["--no-sandbox"])
        try:
            context = browser.new_context(viewport={"width": 1440, "height": 1000})
            seen: list[str] = []
            context.on("request", lambda request: seen.append(request.url))
            # A request that would leave the machine is recorded and then refused, so a test machine
            # with a network behaves like one without (and the test never waits on a remote host).
            context.route(
                lambda url: _foreign(url), lambda route: route.abort("blockedbyclient")
            )
            page = context.new_page()
            page.on("websocket", lambda ws: seen.append(ws.url))
            page.goto(server)
            wait_idle(page, timeout_s=180)

            links = page.locator('[data-testid="stSidebar"] a[data-testid="stPageLink-NavLink"]')
            # A link's text is its icon's ligature name, then its label: keep the label.
            names = [text.strip().splitlines()[-1].strip() for text in links.all_inner_texts() if text.strip()]
            assert {"Analyze", "Library", "History", "Compare", "Settings"} <= set(names), names
            for name in names:
                page.locator('[data-testid="stSidebar"]').get_by_role("link", name=name).click()
                wait_idle(page)
                if name == "Analyze":
                    page.locator('[data-testid="stFileUploaderDropzoneInput"]').set_input_files(str(upload))
                    wait_idle(page)
                    page.get_by_role("button", name="Analyze", exact=True).click()
                    saved = page.get_by_test_id("stAlertContentSuccess").filter(has_text="Saved to history as #")
                    expect(saved).to_be_visible(timeout=120_000)
                    wait_idle(page)
                    # The "Open in History" button shows its whole label (it was cut off in a narrow column).
                    button = page.get_by_role("button", name="Open in History")
                    expect(button).to_be_visible()
                    clipped = button.evaluate(
                        "b => [b, ...b.querySelectorAll('*')].some(e => e.scrollWidth > e.clientWidth + 1)"
                    )
                    assert not clipped, "the Open in History button's label is cut off"
                    _shot(page, "offline_analyze")
                    page.get_by_role("tab", name="Library map").click()  # drawn only when its tab is opened
                    wait_idle(page)
                    expect(page.get_by_text("Library map (PCA of image embeddings)")).to_be_visible()
                    _shot(page, "offline_analyze_map")
                if name == "Compare":
                    page.get_by_role("tab", name="Quiz").click()
                    wait_idle(page)
                # Also load each page afresh by its address: a first load fetches the favicon and the fonts.
                page.reload()
                wait_idle(page)
            _shot(page, "offline_last_page")
        finally:
            browser.close()
    foreign = sorted({url for url in seen if _foreign(url)})
    assert seen, "no request was recorded"
    assert foreign == [], f"the app asked hosts other than its own server: {foreign[:20]}"
