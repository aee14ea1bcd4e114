"""GET /demo in Chromium: the signup page with the widget on the service's first site key, and in sandbox mode the
sandbox phone beside it (its inbox, and a button that plays the call). axe-core runs on every step."""

from __future__ import annotations

import re
from collections.abc import Callable

from playwright.sync_api import Page, expect

from tests.browser.conftest import assert_accessible, save_screenshot

SHOWN = "+7 999 123-45-67"


def test_demo_signup_with_the_code_from_the_sandbox_inbox(
    page: Page, axe_source: str, in_process: Callable[..., str]
) -> None:
    base = in_process()
    page.goto(f"{base}/demo")
    assert_accessible(page, axe_source, "demo")
    page.get_by_label("Name").fill("Ann")
    page.get_by_label("Phone number").fill("+79991234567")
    page.get_by_role("button", name="Send code").click()
    code_input = page.get_by_label("Code from the message")
    expect(code_input).to_be_focused()
    # The sandbox panel polls the inbox of the phone being verified.
    message = page.locator("#inbox li").first
    expect(message).to_have_text(re.compile(r"\d{4,}"))
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


def test_demo_call_simulated(page: Page, axe_source: str, in_process: Callable[..., str]) -> None:
    base = in_process()
    page.goto(f"{base}/demo?lang=ru")
    page.get_by_label("Номер телефона").fill("+79991234567")
    page.get_by_label("Звонком с этого номера").check()  # noqa: RUF001 - Russian
    page.get_by_role("button", name="Подтвердить звонком").click()
    dial = page.get_by_role("paragraph").filter(has_text=re.compile(rf"^Позвоните на .+ {re.escape(SHOWN)}\.$"))
    expect(dial).to_be_focused()
    simulate = page.get_by_role("button", name="Simulate the call")
    assert_accessible(page, axe_source, "demo call")
    simulate.click()
    approved = page.get_by_role("paragraph").filter(has_text=f"Номер {SHOWN} подтверждён.")
    problem = page.get_by_role("alert").filter(has_text=re.compile("."))
    expect(approved.or_(problem)).to_be_visible()  # whichever comes first: the widget's next poll decides
    assert problem.count() == 0, problem.inner_text()
    expect(approved).to_be_focused()
    expect(simulate).to_be_hidden()
    assert_accessible(page, axe_source, "demo call approved")
    save_screenshot(page, "demo-call")
