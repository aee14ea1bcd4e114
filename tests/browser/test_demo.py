"""GET /demo in Chromium: the signup page with the widget on the service's first site key, and in sandbox mode the
sandbox phone beside it (its inbox, and a button that plays the call). The whole page follows its language, the
inbox says which code is current after a resend, and nothing the page loads fails (its icon included). axe-core
runs on every step."""

from __future__ import annotations

import re
from collections.abc import Callable

import pytest
from playwright.sync_api import Page, Response, expect

from tests.browser.conftest import assert_accessible, i18n, save_screenshot
from tests.conftest import API_KEY, SECRET_KEY
from verify.config import Settings
from verify.web.widget import LOCALES

SHOWN = "+7 999 123-45-67"


def network_log(page: Page) -> list[str]:
    """What went wrong on the page's network from now on: each answer of 400 or more, and each request that got no
    answer, as ``"<status> <url>"``."""
    problems: list[str] = []

    def answered(response: Response) -> None:
        if response.status >= 400:
            problems.append(f"{response.status} {response.url}")

    page.on("response", answered)
    page.on("requestfailed", lambda request: problems.append(f"failed {request.url}"))
    return problems


def inbox(page: Page) -> list[tuple[str, str]]:
    """The sandbox inbox as shown: each message's class (``current``, ``superseded``) and text."""
    shown: list[tuple[str, str]] = page.locator("#inbox li").evaluate_all(
        "items => items.map((li) => [li.className, li.textContent])"
    )
    return shown


def test_demo_signup_with_the_code_from_the_sandbox_inbox(
    page: Page, axe_source: str, in_process: Callable[..., str]
) -> None:
    base = in_process()
    failed = network_log(page)
    page.goto(f"{base}/demo")
    assert_accessible(page, axe_source, "demo")
    page.get_by_label("Name").fill("Ann")
    page.get_by_label("Phone number").fill("+79991234567")
    page.get_by_role("button", name="Send code").click()
    code_input = page.get_by_label("Code from the message")
    expect(code_input).to_be_focused()
    # The sandbox panel polls the inbox of the phone being verified.
    message = page.locator("#inbox li").first
    expect(message).to_have_text(re.compile(r"^Current code: .*\d{4,}"))
    found = re.search(r"(\d{4,})", message.inner_text())
    assert found is not None
    assert_accessible(page, axe_source, "demo code")
    save_screenshot(page, "demo-code-step")  # docs/widget.png
    code_input.fill(found.group(1))
    code_input.press("Enter")
    expect(page.get_by_role("paragraph").filter(has_text=f"Phone {SHOWN} confirmed.")).to_be_focused()
    page.get_by_role("button", name="Sign up").click()
    expect(page.locator("#result")).to_have_text(re.compile(r"^Welcome, Ann! The form sends verify_token"))
    assert_accessible(page, axe_source, "demo signed up")
    save_screenshot(page, "demo-sms")
    assert failed == []  # no 404 for an icon, a language or anything else


def test_demo_voice_the_sandbox_phone_gets_a_call_that_says_the_code(
    page: Page, axe_source: str, in_process: Callable[..., str]
) -> None:
    base = in_process()
    page.goto(f"{base}/demo")
    page.get_by_label("Phone number").fill("+79991234567")
    page.get_by_role("radio", name="Call that reads out the code").check()
    page.get_by_role("button", name="Send code").click()
    expect(page.get_by_role("paragraph").filter(has_text=f"We are calling {SHOWN} to read out a code.")).to_be_visible()
    # The sandbox phone shows an incoming call, and what it says: the digits one by one, twice.
    call = page.locator("#inbox li").first
    expect(call).to_have_text(re.compile(r"^Incoming call · Current code: Your Verify code is (\d, ){5}\d\. Again: "))
    digits = re.search(r"code is ((?:\d, ){5}\d)\.", call.inner_text())
    assert digits is not None
    assert_accessible(page, axe_source, "demo voice")
    code_input = page.get_by_label("Code from the message")
    code_input.fill(digits.group(1).replace(", ", ""))
    code_input.press("Enter")
    expect(page.get_by_role("paragraph").filter(has_text=f"Phone {SHOWN} confirmed.")).to_be_focused()


def test_demo_offers_the_channels_in_the_order_of_verify_default_channels(
    page: Page, axe_source: str, in_process: Callable[..., str]
) -> None:
    environ = {"VERIFY_API_KEYS": API_KEY, "VERIFY_SECRET_KEY": SECRET_KEY, "VERIFY_SANDBOX": "1"}
    chain = Settings.from_env({**environ, "VERIFY_DEFAULT_CHANNELS": "voice,sms"}).default_channels
    base = in_process(default_channels=chain)
    page.goto(f"{base}/demo")
    widget = page.locator("[data-verify-site-key]")
    radios = widget.get_by_role("radio")
    expect(radios).to_have_count(4)
    # Listed as the chain says, then the channels it does not name; its first channel is preselected.
    shown = radios.evaluate_all("rs => rs.map((r) => [r.value, r.labels[0].textContent.trim(), r.checked])")
    assert shown == [
        ["voice", "Call that reads out the code", True],
        ["sms", "Text message with a code", False],
        ["telegram", "Telegram message with a code", False],
        ["call", "Call from this phone", False],
    ]
    assert_accessible(page, axe_source, "demo voice first")
    # Sending without a pick starts the preselected channel.
    page.get_by_label("Phone number").fill("+79991234567")
    page.get_by_role("button", name="Send code").click()
    expect(page.get_by_role("paragraph").filter(has_text=f"We are calling {SHOWN} to read out a code.")).to_be_visible()
    expect(page.locator("#inbox li").first).to_have_text(re.compile(r"^Incoming call · "))


def test_the_demo_has_an_icon_and_the_service_answers_favicon_ico(page: Page, in_process: Callable[..., str]) -> None:
    base = in_process()
    failed = network_log(page)
    page.goto(f"{base}/demo")
    # The page's own icon (inline, so it costs no request), and /favicon.ico for the pages that have none
    # (/openapi.yaml, /healthz...): both are images Chromium decodes.
    icon = page.locator('link[rel="icon"]').get_attribute("href")
    assert icon is not None and icon.startswith("data:image/svg+xml,")
    sizes = page.evaluate(
        """async (sources) => Promise.all(sources.map(async (src) => {
            const img = new Image();
            img.src = src;
            await img.decode();
            return [img.naturalWidth, img.naturalHeight];
        }))""",
        [icon, f"{base}/favicon.ico"],
    )
    assert sizes == [[32, 32], [32, 32]]
    favicon = page.request.get(f"{base}/favicon.ico")
    assert (favicon.status, favicon.headers["content-type"]) == (200, "image/x-icon")
    assert failed == []


def test_demo_call_simulated(page: Page, axe_source: str, in_process: Callable[..., str]) -> None:
    base = in_process()
    page.goto(f"{base}/demo?lang=ru")
    page.get_by_label("Номер телефона").fill("+79991234567")
    page.get_by_label("Звонком с этого номера").check()  # noqa: RUF001 - Russian
    page.get_by_role("button", name="Подтвердить звонком").click()
    dial = page.get_by_role("paragraph").filter(has_text=re.compile(rf"^Позвоните на .+ {re.escape(SHOWN)}\.$"))
    expect(dial).to_be_focused()
    simulate = page.get_by_role("button", name="Сымитировать звонок")
    assert_accessible(page, axe_source, "demo call")
    simulate.click()
    approved = page.get_by_role("paragraph").filter(has_text=f"Номер {SHOWN} подтверждён.")
    problem = page.get_by_role("alert").filter(has_text=re.compile("."))
    expect(approved.or_(problem)).to_be_visible()  # whichever comes first: the widget's next poll decides
    assert problem.count() == 0, problem.inner_text()
    expect(approved).to_be_focused()
    expect(simulate).to_be_hidden()
    expect(page.locator("#sandbox-status")).to_have_text("Подтверждено.")
    assert_accessible(page, axe_source, "demo call approved")
    save_screenshot(page, "demo-call")


@pytest.mark.parametrize("lang", LOCALES)
def test_the_whole_demo_follows_the_language(page: Page, in_process: Callable[..., str], lang: str) -> None:
    base = in_process()
    demo, widget = i18n()[lang]["demo"], i18n()[lang]["widget"]
    page.goto(f"{base}/demo?lang={lang}")
    html = page.locator("html")
    expect(html).to_have_attribute("lang", lang)
    expect(html).to_have_attribute("dir", "rtl" if lang == "ar" else "ltr")
    expect(page).to_have_title(demo["title"])
    expect(page.get_by_role("heading", level=1)).to_have_text(demo["h1"])
    expect(page.get_by_label(demo["name"], exact=True)).to_be_visible()
    expect(page.get_by_label(widget["phone"])).to_be_visible()
    expect(page.get_by_role("radio", name=widget["telegram"])).to_be_visible()
    expect(page.get_by_role("radio", name=widget["call"])).to_be_visible()
    expect(page.get_by_role("button", name=demo["signup"])).to_be_visible()
    expect(page.get_by_role("heading", name=demo["sandbox"])).to_be_visible()
    expect(page.locator("#sandbox-phone")).to_have_text(demo["note"])
    expect(page.get_by_role("navigation", name=demo["languages"]).locator("[aria-current=page]")).to_have_text(
        demo["language"]
    )
    # The form cannot be sent yet, and the widget says so in the page's language.
    page.get_by_label(demo["name"], exact=True).fill("Ann")
    page.get_by_role("button", name=demo["signup"]).click()
    expect(page.locator("[data-verify-site-key]").get_by_role("alert")).to_have_text(widget["first"])


@pytest.mark.parametrize(("asked", "lang"), [("pt-BR", "pt"), ("zh-Hant-TW", "zh"), ("xx", "en")])
def test_an_unknown_language_falls_back_to_its_base_then_english(
    page: Page, in_process: Callable[..., str], asked: str, lang: str
) -> None:
    base = in_process()
    page.goto(f"{base}/demo?lang={asked}")
    expect(page.locator("html")).to_have_attribute("lang", lang)
    expect(page.get_by_role("heading", level=1)).to_have_text(i18n()[lang]["demo"]["h1"])


def test_without_lang_the_demo_speaks_the_browsers_language(
    page_in: Callable[[str], Page], in_process: Callable[..., str]
) -> None:
    base = in_process()
    page = page_in("de-DE")
    page.goto(f"{base}/demo")
    expect(page.locator("html")).to_have_attribute("lang", "de")
    expect(page.get_by_label("Telefonnummer")).to_be_visible()


def test_arabic_demo_is_right_to_left(page: Page, axe_source: str, in_process: Callable[..., str]) -> None:
    base = in_process()
    page.goto(f"{base}/demo?lang=ar")
    expect(page.get_by_label(i18n()["ar"]["widget"]["phone"])).to_be_visible()
    for selector in ("body", "main", "aside", "[data-verify-site-key]"):
        assert page.locator(selector).evaluate("el => getComputedStyle(el).direction") == "rtl", selector
    assert_accessible(page, axe_source, "demo (ar)")
    save_screenshot(page, "demo-ar")


def test_after_a_resend_the_inbox_marks_the_superseded_code(
    page: Page, axe_source: str, in_process: Callable[..., str]
) -> None:
    base = in_process(resend_cooldown=1)
    demo, widget = i18n()["de"]["demo"], i18n()["de"]["widget"]
    page.goto(f"{base}/demo?lang=de")
    page.get_by_label(demo["name"], exact=True).fill("Ann")
    page.get_by_label(widget["phone"]).fill("+79991234567")
    page.get_by_role("button", name=widget["send"]).click()
    code_input = page.get_by_label(widget["code"])
    expect(code_input).to_be_focused()
    expect(page.locator("#inbox li")).to_have_count(1)
    [(kind, first)] = inbox(page)
    assert kind == "current" and first.startswith(f"{demo['current']}: ")

    resend = page.get_by_role("button", name=widget["resend"], exact=True)
    expect(resend).to_be_enabled()  # the cooldown is a second
    resend.click()
    expect(page.locator("#inbox li")).to_have_count(2)
    (new_kind, new), (old_kind, old) = inbox(page)
    assert (new_kind, old_kind) == ("current", "superseded")
    assert new.startswith(f"{demo['current']}: ")
    assert old == f"{demo['superseded']}: {first.removeprefix(demo['current'] + ': ')}"
    # In words for a screen reader, and struck through for the eye.
    superseded = page.locator("#inbox li.superseded")
    expect(superseded.locator("strong")).to_have_text(f"{demo['superseded']}: ")
    assert superseded.locator("s").evaluate("el => getComputedStyle(el).textDecorationLine") == "line-through"
    assert_accessible(page, axe_source, "demo resent")
    save_screenshot(page, "demo-resent")

    def code(text: str) -> str:
        found = re.search(r"(\d{4,})", text)
        assert found is not None, text
        return found.group(1)

    # The superseded code no longer works; the current one does.
    code_input.fill(code(old))
    code_input.press("Enter")
    expect(page.get_by_role("alert")).to_have_text(re.compile(r"^Falscher Code\."))
    code_input.fill(code(new))
    code_input.press("Enter")
    expect(page.get_by_role("paragraph").filter(has_text=f"Telefonnummer {SHOWN} bestätigt.")).to_be_focused()
    page.get_by_role("button", name=demo["signup"]).click()
    expect(page.locator("#result")).to_have_text(re.compile(r"^Willkommen, Ann! Das Formular sendet verify_token"))
