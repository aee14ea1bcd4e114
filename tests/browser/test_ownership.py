"""Whose verification it is, tried in Chromium as the person and as a stranger would: the widget's page reloaded,
a second tab, another browser, and the two ways a public site key let a stranger read a victim's proof token.

The site key is public: a stranger loads the shop's page (or copies its key) and uses it from a browser of their
own. Each start through it makes a verification of its own, reached only with the client secret its answer gave
to the page that started it.
"""

from __future__ import annotations

import requests
from playwright.sync_api import Browser, Page, expect

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


def secret_of(page: Page) -> str:
    """The client secret the page's widget keeps for its verification (in the tab's sessionStorage)."""
    kept: str = page.evaluate(
        "() => { for (const k of Object.keys(sessionStorage)) if (k.startsWith('verify:')) "
        "return JSON.parse(sessionStorage.getItem(k)).secret; return ''; }"
    )
    return kept


def confirm(page: Page, code: str) -> None:
    page.get_by_label("Code from the message").fill(code)
    page.get_by_role("button", name="Confirm").click()


def confirmed(page: Page) -> None:
    """The widget says the phone is confirmed."""
    expect(page.locator("#phone-step [data-r=ok]")).to_have_text(f"✓ Phone {SHOWN} confirmed.")


def test_a_reload_takes_up_the_same_verification(page: Page, service: Server, site: Site) -> None:
    page.goto(site.page(service.base, channel="sms", country="RU"))
    code = start_sms(page, service)
    first = started_id(page)
    mark = service.smsc.mark()
    page.reload()
    expect(page.get_by_label("Code from the message")).to_be_visible()
    expect(page.locator("#phone-step [data-r=sent]")).to_have_text(f"We sent a code to {SHOWN}.")
    assert service.smsc.since(mark, "sms") == []  # nothing new was sent: it is the same verification
    confirm(page, code)
    confirmed(page)
    assert verified(service.base, token_of(page))["verification_id"] == first


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
    try:
        stranger.goto(url)
        start_sms(stranger, service)
        assert started_id(stranger) != victim  # the stranger's start is a verification of its own
        confirm(page, code)
        confirmed(page)
        for secret in ("", secret_of(stranger)):
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
    try:
        stranger.goto(site.page(service.base, channel="sms", country="RU"))
        start_sms(stranger, service)
        planted = started_id(stranger)
        mark = service.smsc.mark()
        backend = requests.post(f"{service.base}/v1/verifications", json={"phone": PHONE}, headers=AUTH, timeout=10)
        assert backend.status_code == 201, backend.text  # a verification and a code of its own
        mine = backend.json()["id"]
        assert mine != planted and "client_secret" not in backend.json()
        code = sms_code(service.smsc, mark)[1]
        # The stranger cannot read the backend's verification, nor approve the planted one with its code.
        status, body = stranger.evaluate(READ, [service.base, SITE_KEY, mine, secret_of(stranger)])
        assert status == 404, body
        checked = requests.post(
            f"{service.base}/v1/verifications/{mine}/check", json={"code": code}, headers=AUTH, timeout=10
        )
        assert checked.json()["status"] == "approved", checked.text
        status, body = stranger.evaluate(CHECK, [service.base, SITE_KEY, planted, secret_of(stranger), code])
        assert status in (422, 429), body  # a wrong code for the planted one (or the phone locked): never approved
        status, body = stranger.evaluate(READ, [service.base, SITE_KEY, planted, secret_of(stranger)])
        assert status == 200 and '"approved"' not in body and "token" not in body, body
    finally:
        stranger.context.close()
