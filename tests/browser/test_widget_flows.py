"""The widget in Chromium, on a customer's page of another origin, against the service: each flow from the phone
input to the proof token, with axe-core run on every step and a screenshot of the final state (tests/artifacts/).

The Procfile's gunicorn serves the flows that need no special settings (SMS by an SMSC emulator, calls by the
sandbox call gateway); the captcha and the rate limit run against an in-process app configured for them.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import pytest
import requests
from playwright.sync_api import Page, expect

from tests.browser.conftest import SITE_KEY, Site, assert_accessible, events, save_screenshot, sms_code
from tests.conftest import AUTH, PHONE
from tests.servers import Server

SHOWN = "+7 999 123-45-67"
# A stand-in for the browser's WebOTP (headless Chromium has none): it records the request, resolves it when the
# test calls window.otp.resolve(code), and notes the abort.
WEBOTP = """
window.OTPCredential = function OTPCredential() {};
window.otp = {calls: [], aborted: false, resolve: null};
navigator.credentials.get = (options) => new Promise((resolve, reject) => {
  window.otp.calls.push(options.otp);
  window.otp.resolve = (code) => resolve({type: "otp", id: "", code});
  options.signal.addEventListener("abort", () => {
    window.otp.aborted = true;
    reject(new DOMException("aborted", "AbortError"));
  });
});
"""


def alert(page: Page) -> Any:
    return page.locator("#phone-step [role=alert]")


def status(page: Page) -> Any:
    return page.locator("#phone-step [role=status]")


def token_of(page: Page) -> str:
    value: str = page.locator('form input[type=hidden][name="verify_token"]').input_value()
    return value


def verified(server_url: str, token: str) -> dict[str, Any]:
    """What POST /v1/tokens/verify (the customer's backend, with its API key) says of ``token``."""
    response = requests.post(f"{server_url}/v1/tokens/verify", json={"token": token}, headers=AUTH, timeout=10)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def start_sms(page: Page, service: Server) -> str:
    """Type the phone, send, and return the code SMSC was given (the widget is then on its code step)."""
    mark = service.smsc.mark()
    page.get_by_label("Phone number").fill("8 (999) 123-45-67")
    page.get_by_role("button", name="Send code").click()
    expect(page.get_by_label("Code from the message")).to_be_focused()
    return sms_code(service.smsc, mark)[1]


def test_sms_code_typed_in(page: Page, axe_source: str, service: Server, site: Site) -> None:
    page.add_init_script(WEBOTP)
    page.goto(site.page(service.base, channel="sms", country="RU"))
    phone = page.get_by_label("Phone number")
    expect(phone).to_have_attribute("autocomplete", "tel")
    assert_accessible(page, axe_source, "phone")
    # The form cannot be sent before the phone is confirmed.
    page.get_by_role("button", name="Sign up").click()
    expect(alert(page)).to_have_text("Confirm your phone number first.")
    expect(phone).to_be_focused()
    assert "/submitted" not in page.url

    mark = service.smsc.mark()
    phone.fill("8 (999) 123-45-67")
    page.get_by_role("button", name="Send code").click()
    code_input = page.get_by_label("Code from the message")
    expect(code_input).to_be_focused()
    expect(code_input).to_have_attribute("autocomplete", "one-time-code")
    expect(code_input).to_have_attribute("inputmode", "numeric")
    expect(status(page)).to_have_text(f"We sent a code to {SHOWN}.")
    expect(page.get_by_role("button", name=re.compile(r"^Send again \(0:0\d\)$"))).to_be_disabled()
    code = sms_code(service.smsc, mark)[1]
    assert page.evaluate("window.otp.calls") == [{"transport": ["sms"]}]
    assert_accessible(page, axe_source, "code")
    save_screenshot(page, "sms-code-step")

    code_input.fill(code)
    page.get_by_role("button", name="Confirm").click()
    done = page.get_by_role("paragraph").filter(has_text=f"Phone {SHOWN} confirmed.")
    expect(done).to_be_focused()
    expect(status(page)).to_have_text(f"✓ Phone {SHOWN} confirmed.")
    assert page.evaluate("window.otp.aborted"), "the WebOTP request outlived the code step"
    token = token_of(page)
    assert verified(service.base, token)["phone"] == PHONE
    started, approved = events(page)
    assert started["type"] == "verify:started"
    assert started["detail"] == {"id": started["detail"]["id"], "phone": PHONE, "channel": "sms"}
    assert approved == {
        "type": "verify:approved",
        "detail": {"token": token, "phone": PHONE, "id": started["detail"]["id"]},
    }
    assert_accessible(page, axe_source, "approved")
    save_screenshot(page, "sms-typed-in")


def test_webotp_fills_in_the_code_and_submits_it(page: Page, axe_source: str, service: Server, site: Site) -> None:
    page.add_init_script(WEBOTP)
    page.goto(site.page(service.base, country="RU"))
    code = start_sms(page, service)
    page.evaluate("code => window.otp.resolve(code)", code)  # the browser read the SMS
    expect(page.get_by_role("paragraph").filter(has_text=f"Phone {SHOWN} confirmed.")).to_be_focused()
    expect(page.get_by_label("Code from the message")).to_have_value(code)
    assert verified(service.base, token_of(page))["completed_via"] == "code"
    assert_accessible(page, axe_source, "approved")
    save_screenshot(page, "webotp")


def test_call_confirmed_through_the_sandbox(page: Page, axe_source: str, service: Server, site: Site) -> None:
    page.goto(site.page(service.base, channel="call"))
    page.get_by_label("Phone number").fill("+7 999 123 45 67")
    page.get_by_role("button", name="Call to confirm").click()
    dial = page.get_by_role("paragraph").filter(has_text=re.compile(rf"^Call \+[\d -]+ now from {re.escape(SHOWN)}\.$"))
    expect(dial).to_be_focused()
    number = dial.get_by_role("link")
    expect(number).to_have_attribute("href", re.compile(r"^tel:\+\d+$"))
    left = page.get_by_text(re.compile(r"^Time left: 1[45]:\d\d$"))
    shown = left.inner_text()
    expect(left).not_to_have_text(shown)  # a live countdown
    assert_accessible(page, axe_source, "call")
    save_screenshot(page, "call-step")

    called = requests.post(service.url("/sandbox/calls"), json={"phone": PHONE}, timeout=10)
    assert called.status_code == 200, called.text
    # The widget polls the verification and sees the approval.
    expect(page.get_by_role("paragraph").filter(has_text=f"Phone {SHOWN} confirmed.")).to_be_focused()
    assert verified(service.base, token_of(page))["completed_via"] == "call"
    assert_accessible(page, axe_source, "approved")
    save_screenshot(page, "call")


def test_telegram_picked_and_its_code_typed_in(page: Page, axe_source: str, service: Server, site: Site) -> None:
    page.goto(site.page(service.base, channel="sms,telegram", country="RU"))
    shown = page.get_by_role("radio").evaluate_all("rs => rs.map((r) => [r.value, r.labels[0].textContent.trim()])")
    assert shown == [["sms", "Text message with a code"], ["telegram", "Telegram message with a code"]]
    page.get_by_label("Name").fill("Ann")
    page.get_by_label("Phone number").fill("8 (999) 123-45-67")
    page.get_by_role("radio", name="Telegram message with a code").check()
    mark = service.smsc.mark()
    page.get_by_role("button", name="Send code").click()
    code_input = page.get_by_label("Code from the message")
    expect(code_input).to_be_focused()
    # A code to type, like an SMS's: "sent", not "calling".
    expect(page.get_by_role("paragraph").filter(has_text=f"We sent a code to {SHOWN}.")).to_be_visible()
    expect(status(page)).to_have_text(f"We sent a code to {SHOWN}.")
    (started,) = events(page)
    assert started["detail"] == {"id": started["detail"]["id"], "phone": PHONE, "channel": "telegram"}
    # The sandbox gateway got it as a Telegram message; no SMS went out.
    outbox = requests.get(service.url("/sandbox/messages"), params={"phone": PHONE}, timeout=10)
    assert outbox.status_code == 200, outbox.text
    message = outbox.json()["messages"][0]
    assert (message["channel"], message["current"]) == ("telegram", True)
    assert message["verification_id"] == started["detail"]["id"]
    assert service.smsc.since(mark) == []
    assert_accessible(page, axe_source, "telegram code")
    save_screenshot(page, "telegram-code-step")

    code_input.fill(message["code"])
    page.get_by_role("button", name="Confirm").click()
    expect(page.get_by_role("paragraph").filter(has_text=f"Phone {SHOWN} confirmed.")).to_be_focused()
    page.get_by_role("button", name="Sign up").click()
    page.wait_for_url(re.compile(r"/submitted\?"))
    proof = verified(service.base, page.locator("#field-verify_token").inner_text())
    assert (proof["phone"], proof["channel"], proof["completed_via"]) == (PHONE, "telegram", "code")
    save_screenshot(page, "telegram-submitted")


def test_a_wrong_code_then_the_right_one(page: Page, axe_source: str, service: Server, site: Site) -> None:
    page.goto(site.page(service.base, country="RU"))
    code = start_sms(page, service)
    code_input = page.get_by_label("Code from the message")
    code_input.fill("000000" if code != "000000" else "111111")
    code_input.press("Enter")  # the widget's step, not the form
    expect(alert(page)).to_have_text(re.compile(r"^Wrong code\. Attempts left: \d+\.$"))
    expect(code_input).to_have_attribute("aria-invalid", "true")
    expect(code_input).to_be_focused()
    assert "/submitted" not in page.url
    assert_accessible(page, axe_source, "wrong code")

    code_input.fill(code)
    page.get_by_role("button", name="Confirm").click()
    expect(page.get_by_role("paragraph").filter(has_text=f"Phone {SHOWN} confirmed.")).to_be_focused()
    expect(alert(page)).to_have_text("")
    assert verified(service.base, token_of(page))["phone"] == PHONE
    save_screenshot(page, "wrong-then-right")


def test_resend_after_the_cooldown(page: Page, axe_source: str, service: Server, site: Site) -> None:
    page.goto(site.page(service.base, country="RU"))
    start_sms(page, service)
    resend = page.get_by_role("button", name=re.compile(r"^Send again"))
    expect(resend).to_have_text(re.compile(r"^Send again \(0:0[1-3]\)$"))  # counts the cooldown down
    expect(resend).to_be_disabled()
    expect(resend).to_have_text("Send again")  # once RESEND_COOLDOWN_S has passed
    expect(resend).to_be_enabled()
    mark = service.smsc.mark()
    resend.click()
    code = sms_code(service.smsc, mark)[1]
    code_input = page.get_by_label("Code from the message")
    expect(code_input).to_be_focused()
    expect(resend).to_be_disabled()  # a new cooldown
    assert_accessible(page, axe_source, "resent")
    code_input.fill(code)
    code_input.press("Enter")
    expect(page.get_by_role("paragraph").filter(has_text=f"Phone {SHOWN} confirmed.")).to_be_focused()
    assert verified(service.base, token_of(page))["phone"] == PHONE
    save_screenshot(page, "resent")


def test_a_foreign_origin_is_refused(page: Page, axe_source: str, service: Server, foreign_site: Site) -> None:
    console: list[str] = []
    page.on("console", lambda message: console.append(message.text))
    page.goto(foreign_site.page(service.base))
    mark = service.smsc.mark()
    page.get_by_label("Phone number").fill("+79991234567")
    page.get_by_role("button", name="Send code").click()
    expect(alert(page)).to_have_text("No connection to the verification service. Try again.")
    expect(page.get_by_label("Phone number")).to_be_focused()
    assert any("CORS policy" in line for line in console), console  # refused by the browser, for want of CORS
    assert page.locator('input[name="verify_token"]').count() == 0
    assert service.smsc.since(mark) == []
    assert events(page) == []
    # What the browser met: the preflight from this origin is refused without CORS headers.
    preflight = requests.options(
        service.url("/v1/verifications"),
        timeout=10,
        headers={
            "Origin": foreign_site.origin,
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "content-type,x-verify-site-key",
        },
    )
    assert preflight.status_code == 403 and "Access-Control-Allow-Origin" not in preflight.headers
    assert_accessible(page, axe_source, "refused")
    save_screenshot(page, "foreign-origin")


def test_keyboard_only_from_the_phone_to_the_submitted_form(
    page: Page, axe_source: str, service: Server, site: Site
) -> None:
    page.goto(site.page(service.base, channel="choice"))

    def focused() -> str:
        label: str = page.evaluate("""() => {
            const el = document.activeElement;
            return el.labels && el.labels.length ? el.labels[0].textContent : el.textContent;
        }""")
        return label.strip()

    keyboard = page.keyboard
    keyboard.press("Tab")
    assert focused() == "Name"
    keyboard.type("Ann")
    keyboard.press("Tab")
    assert focused() == "Phone number"
    keyboard.type("+79991234567")
    keyboard.press("Tab")
    assert focused() == "Text message with a code"  # the checked radio of the choice
    keyboard.press("ArrowDown")
    assert focused() == "Call from this phone"
    expect(page.get_by_role("button", name="Call to confirm")).to_be_visible()
    keyboard.press("ArrowUp")
    assert focused() == "Text message with a code"
    keyboard.press("Tab")
    assert focused() == "Send code"
    mark = service.smsc.mark()
    keyboard.press("Enter")
    expect(page.get_by_label("Code from the message")).to_be_focused()
    code = sms_code(service.smsc, mark)[1]
    assert_accessible(page, axe_source, "code")
    keyboard.type(code)
    keyboard.press("Enter")
    expect(page.get_by_role("paragraph").filter(has_text=f"Phone {SHOWN} confirmed.")).to_be_focused()
    keyboard.press("Tab")
    assert focused() == "Sign up"
    keyboard.press("Enter")
    page.wait_for_url(re.compile(r"/submitted\?"))
    expect(page.locator("#field-name")).to_have_text("Ann")
    assert verified(service.base, page.locator("#field-verify_token").inner_text())["phone"] == PHONE
    assert_accessible(page, axe_source, "submitted")
    save_screenshot(page, "keyboard-submitted")


def test_russian_from_the_page_language(page: Page, axe_source: str, service: Server, site: Site) -> None:
    page.goto(site.page(service.base, lang="ru"))
    phone = page.get_by_label("Номер телефона")
    expect(page.get_by_role("button", name="Получить код")).to_be_visible()
    assert_accessible(page, axe_source, "phone (ru)")
    mark = service.smsc.mark()
    phone.fill("+7 999 123-45-67")
    with page.expect_response(lambda r: r.request.method == "POST" and r.url.endswith("/v1/verifications")) as sent:
        phone.press("Enter")
    assert sent.value.json()["locale"] == "ru"
    code_input = page.get_by_label("Код из SMS")
    expect(code_input).to_be_focused()
    expect(status(page)).to_have_text(f"Мы отправили код на {SHOWN}.")
    text, code = sms_code(service.smsc, mark)
    assert re.search("[\u0400-\u04ff]", text), text  # the SMS is in Russian too
    code_input.fill("000000" if code != "000000" else "111111")
    page.get_by_role("button", name="Подтвердить").click()
    expect(alert(page)).to_have_text(re.compile(r"^Неверный код\. Осталось попыток: \d+\.$"))
    assert_accessible(page, axe_source, "wrong code (ru)")
    code_input.fill(code)
    code_input.press("Enter")
    expect(page.get_by_role("paragraph").filter(has_text=f"Номер {SHOWN} подтверждён.")).to_be_focused()
    assert_accessible(page, axe_source, "approved (ru)")
    save_screenshot(page, "russian")


def test_data_verify_locale_wins_over_the_page_language(page: Page, service: Server, site: Site) -> None:
    page.goto(site.page(service.base, lang="ru", locale="en"))
    expect(page.get_by_label("Phone number")).to_be_visible()


def test_the_captcha_is_shown_and_solved(
    page: Page, axe_source: str, in_process: Callable[..., str], site: Site
) -> None:
    base = in_process(captcha_mode="always")
    page.goto(site.page(base))
    page.get_by_label("Phone number").fill("+79991234567")
    with page.expect_response(lambda r: r.status == 428) as first:
        page.get_by_role("button", name="Send code").click()
    image = page.get_by_role("img", name="Captcha: letters and digits to type")
    expect(image).to_have_attribute("src", first.value.json()["captcha"]["image"])
    answer = page.get_by_label("Characters in the picture")
    expect(answer).to_be_focused()
    expect(alert(page)).to_have_text("Type the characters in the picture, then send again.")
    assert_accessible(page, axe_source, "captcha")
    save_screenshot(page, "captcha-step")

    answer.fill("wrong")
    with page.expect_response(lambda r: r.status == 428) as second:
        answer.press("Enter")
    expect(alert(page)).to_have_text("The characters did not match. Try this new picture.")
    challenge = second.value.json()["captcha"]
    expect(image).to_have_attribute("src", challenge["image"])
    expect(answer).to_have_value("")
    solution = requests.get(f"{base}/sandbox/captcha/{challenge['id']}", timeout=10).json()["answer"]
    answer.fill(solution)
    page.get_by_role("button", name="Send code").click()
    code_input = page.get_by_label("Code from the message")
    expect(code_input).to_be_focused()
    messages = requests.get(f"{base}/sandbox/messages", params={"phone": PHONE}, timeout=10).json()["messages"]
    code_input.fill(messages[0]["code"])
    code_input.press("Enter")
    expect(page.get_by_role("paragraph").filter(has_text=f"Phone {SHOWN} confirmed.")).to_be_focused()
    assert_accessible(page, axe_source, "approved")
    save_screenshot(page, "captcha")


def test_a_rate_limit_counts_down(page: Page, axe_source: str, in_process: Callable[..., str], site: Site) -> None:
    base = in_process(limit_ip="1/minute")
    page.clock.install()  # the page's timers, so the wait can be run through instead of waited for
    page.goto(site.page(base))
    start_ok = page.get_by_label("Phone number")
    start_ok.fill("+79991234567")
    page.get_by_role("button", name="Send code").click()
    expect(page.get_by_label("Code from the message")).to_be_focused()
    page.get_by_role("button", name="Change number").click()
    phone = page.get_by_label("Phone number")
    expect(phone).to_be_focused()
    phone.fill("+79991234568")
    with page.expect_response(lambda r: r.status == 429) as refused:
        page.get_by_role("button", name="Send code").click()
    problem = refused.value.json()
    assert (problem["type"], problem["limit"]) == ("/problems/rate-limited", "ip")
    expect(alert(page)).to_have_text("Too many attempts.")
    expect(phone).not_to_have_attribute("aria-invalid", "true")  # nothing wrong with what was typed
    wait = page.get_by_text(re.compile(r"^Try again in \d+:\d\d$"))
    expect(wait).to_be_visible()
    send = page.get_by_role("button", name="Send code")
    expect(send).to_be_disabled()
    assert_accessible(page, axe_source, "rate limited")
    save_screenshot(page, "rate-limited")

    def seconds() -> int:
        minutes, secs = wait.inner_text().removeprefix("Try again in ").split(":")
        return int(minutes) * 60 + int(secs)

    before = seconds()
    assert 0 < before <= problem["retry_after"]
    page.clock.fast_forward(1000)
    expect(wait).not_to_have_text(f"Try again in {before // 60}:{before % 60:02d}")
    assert seconds() < before
    page.clock.fast_forward(problem["retry_after"] * 1000)
    expect(status(page)).to_have_text("You can try again now.")
    expect(alert(page)).to_have_text("")
    expect(send).to_be_enabled()


@pytest.mark.parametrize(
    ("key", "url"), [("pk_unknown", None), (SITE_KEY, "http://127.0.0.1:9/")], ids=["unknown key", "data-verify-url"]
)
def test_no_answer_is_put_in_words(page: Page, service: Server, site: Site, key: str, url: str | None) -> None:
    # An unknown key: the service answers 401 without CORS headers, so the page sees no answer at all.
    # data-verify-url wins over the script's origin: here it names a port nothing listens on.
    page.goto(site.page(service.base, **{"site-key": key, "url": url or service.base}))
    mark = service.smsc.mark()
    page.get_by_label("Phone number").fill("+79991234567")
    page.get_by_role("button", name="Send code").click()
    expect(alert(page)).to_have_text("No connection to the verification service. Try again.")
    expect(page.get_by_role("button", name="Send code")).to_be_enabled()
    assert service.smsc.since(mark) == []
