"""Whose verification it is, tried in Chromium as the person and as a stranger would: the widget's page reloaded
(its client secret is in memory only, so it starts afresh), a second tab, another browser, and the two ways a
public site key let a stranger read a victim's proof token.

The site key is public: a stranger loads the shop's page (or copies its key) and uses it from a browser of their
own. Each start through it makes a verification of its own, reached only with the client secret its answer gave
to the page that started it.
"""

from __future__ import annotations

import requests
from playwright.sync_api import Browser, Page, Response, expect

from tests.browser.conftest import RECORD_EVENTS, SITE_KEY, STEP_TIMEOUT_MS, Site, events, sms_code
from tests.browser.test_widget_flows import SHOWN, start_sms, token_of, verified
from tests.conftest import AUTH, PHONE
from tests.servers import Server

# A stranger's page script: the site key, the shop's origin (the browser's own), and an id it learned somehow.
READ = """async ([base, key, id, secret]) => {
  const headers = {"X-Verify-Site-Key": key};
  if (secret) headers["X-Verify-Client-Secret"] = secret;
  const r = await fetch(`${base}/v1/verifications/${id}`, {headers, cache: "no-store"});
  return [r.status, await r.text()];
}"""
CHECK = """async ([base, key, id, secret, code]) => {
  const headers = {"X-Verify-Site-Key": key, "Content-Type": "application/json", "X-Verify-Client-Secret": secret};
  const body = JSON.stringify({code});
  const r = await fetch(`${base}/v1/verifications/${id}/check`, {method: "POST", headers, body});
  return [r.status, await r.text()];
}"""


def other_browser(browser: Browser) -> Page:
    """A page in a browser context of its own: another person's browser (no shared storage)."""
    context = browser.new_context()
    page = context.new_page()
    page.set_default_timeout(STEP_TIMEOUT_MS)
    page.add_init_script(RECORD_EVENTS)
    return page


def started_id(page: Page) -> str:
    """The id of the verification the page's widget started last (its verify:started event)."""
    ids = [e["detail"]["id"] for e in events(page) if e["type"] == "verify:started"]
    assert ids, events(page)
    return str(ids[-1])


def secrets_of(page: Page) -> list[str]:
    """The client secrets the page's starts are given from now on, read off the wire (the widget keeps its own in
    memory only, out of reach of the page's other scripts' storage reads)."""
    given: list[str] = []

    def seen(response: Response) -> None:
        if response.request.method == "POST" and response.url.endswith("/v1/verifications") and response.ok:
            given.append(response.json()["client_secret"])

    page.on("response", seen)
    return given


def stored(page: Page) -> str:
    """All the page's origin keeps in web storage and cookies, as text."""
    kept: str = page.evaluate(
        "() => JSON.stringify([Object.entries(sessionStorage), Object.entries(localStorage), document.cookie])"
    )
    return kept


def confirm(page: Page, code: str) -> None:
    page.get_by_label("Code from the message").fill(code)
    page.get_by_role("button", name="Confirm").click()


def confirmed(page: Page) -> None:
    """The widget says the phone is confirmed."""
    expect(page.locator("#phone-step [data-r=ok]")).to_have_text(f"✓ Phone {SHOWN} confirmed.")


def test_a_reload_starts_afresh_and_leaves_the_secret_nowhere(page: Page, service: Server, site: Site) -> None:
    # The client secret lives in the widget's memory only: a reload loses it, the first verification can no longer
    # be reached from the page, and the person starts again, with a code of a verification of their own.
    given = secrets_of(page)
    page.goto(site.page(service.base, channel="sms", country="RU"))
    first_code = start_sms(page, service)
    first = started_id(page)
    assert len(given) == 1 and given[0] not in stored(page)
    page.reload()
    expect(page.get_by_label("Phone number")).to_be_visible()
    expect(page.get_by_label("Code from the message")).to_be_hidden()
    assert given[0] not in stored(page)
    status, body = page.evaluate(READ, [service.base, SITE_KEY, first, ""])
    assert status == 404, body
    code = start_sms(page, service)
    second = started_id(page)
    assert second != first and len(given) == 2
    if first_code != code:  # the first verification's code is not this one's
        confirm(page, first_code)
        expect(page.locator("#phone-step [role=alert]")).to_contain_text("Wrong code")
    confirm(page, code)
    confirmed(page)
    assert verified(service.base, token_of(page))["verification_id"] == second


def test_a_second_tab_starts_its_own(page: Page, service: Server, site: Site) -> None:
    url = site.page(service.base, channel="sms", country="RU")
    page.goto(url)
    first_code = start_sms(page, service)
    second = page.context.new_page()
    second.add_init_script(RECORD_EVENTS)
    second.goto(url)
    second_code = start_sms(second, service)
    assert started_id(second) != started_id(page)
    if first_code != second_code:  # each tab's code is its own verification's
        confirm(page, second_code)
        expect(page.locator("#phone-step [role=alert]")).to_contain_text("Wrong code")
    confirm(second, second_code)
    confirmed(second)
    confirm(page, first_code)
    confirmed(page)
    assert verified(service.base, token_of(page))["verification_id"] == started_id(page)


def test_a_stranger_s_start_for_the_victim_s_phone_never_reaches_the_victim_s_token(
    page: Page, browser: Browser, service: Server, site: Site
) -> None:
    # The victim verifies on the shop's page; a stranger, in a browser of their own on the same public page and
    # key, starts the same phone and tries to read the victim's verification, with and without a secret.
    url = site.page(service.base, channel="sms", country="RU")
    page.goto(url)
    code = start_sms(page, service)
    victim = started_id(page)
    stranger = other_browser(browser)
    strangers = secrets_of(stranger)
    try:
        stranger.goto(url)
        start_sms(stranger, service)
        assert started_id(stranger) != victim  # the stranger's start is a verification of its own
        confirm(page, code)
        confirmed(page)
        assert len(strangers) == 1
        for secret in ("", strangers[0]):
            status, body = stranger.evaluate(READ, [service.base, SITE_KEY, victim, secret])
            assert status == 404, body
            assert token_of(page) not in body
        # The victim's token is good, and names the victim's verification.
        assert verified(service.base, token_of(page))["verification_id"] == victim
        assert stranger.locator('form input[name="verify_token"]').count() == 0
    finally:
        stranger.context.close()


def test_a_verification_planted_in_a_browser_never_takes_the_backend_s(
    browser: Browser, service: Server, site: Site
) -> None:
    # A stranger plants a verification for the victim's phone with the public key; then the victim logs in
    # through the shop's backend, which starts with its API key and checks the code the victim types.
    stranger = other_browser(browser)
    strangers = secrets_of(stranger)
    try:
        stranger.goto(site.page(service.base, channel="sms", country="RU"))
        start_sms(stranger, service)
        planted = started_id(stranger)
        (secret,) = strangers
        mark = service.smsc.mark()
        backend = requests.post(f"{service.base}/v1/verifications", json={"phone": PHONE}, headers=AUTH, timeout=10)
        assert backend.status_code == 201, backend.text  # a verification and a code of its own
        mine = backend.json()["id"]
        assert mine != planted and "client_secret" not in backend.json()
        code = sms_code(service.smsc, mark)[1]
        # The stranger cannot read the backend's verification, nor approve the planted one with its code.
        status, body = stranger.evaluate(READ, [service.base, SITE_KEY, mine, secret])
        assert status == 404, body
        checked = requests.post(
            f"{service.base}/v1/verifications/{mine}/check", json={"code": code}, headers=AUTH, timeout=10
        )
        assert checked.json()["status"] == "approved", checked.text
        status, body = stranger.evaluate(CHECK, [service.base, SITE_KEY, planted, secret, code])
        assert status in (422, 429), body  # a wrong code for the planted one (or the phone locked): never approved
        status, body = stranger.evaluate(READ, [service.base, SITE_KEY, planted, secret])
        assert status == 200 and '"approved"' not in body and "token" not in body, body
    finally:
        stranger.context.close()
