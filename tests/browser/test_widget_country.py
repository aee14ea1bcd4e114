"""The widget in Chromium as a new user meets it: a national number (``8 999 123 45 67``) is read in the page's
country (``data-verify-country``), else the country of the browser's language, else one the person picks from a
list; a number the guessed country cannot read brings that list up; and the service's own words for a 400 are shown
under the widget's. Then the widget in each of its languages, Arabic right to left."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import pytest
from playwright.sync_api import Page, expect

from tests.browser.conftest import Site, assert_accessible, i18n, save_screenshot, sms_code
from tests.servers import Server
from verify.web.widget import LOCALES

SHOWN = "+7 999 123-45-67"
NATIONAL = "8 999 123 45 67"  # the README's example


def alert(page: Page) -> Any:
    return page.locator("#phone-step [role=alert]")


def started(page: Page, send: Callable[[], None]) -> dict[str, Any]:
    """The body of the start that ``send()`` makes the widget post."""
    with page.expect_request(lambda r: r.method == "POST" and r.url.endswith("/v1/verifications")) as sent:
        send()
    body = sent.value.post_data_json
    assert isinstance(body, dict)
    return body


def confirm(page: Page, service: Server, mark: int, lang: str = "en") -> None:
    """Type the code SMSC was given since ``mark`` and see the phone confirmed."""
    w = i18n()[lang]["widget"]
    code_input = page.get_by_label(w["code"])
    expect(code_input).to_be_focused()
    code_input.fill(sms_code(service.smsc, mark)[1])
    code_input.press("Enter")
    expect(page.get_by_role("paragraph").filter(has_text=w["ok"].replace("{p}", SHOWN))).to_be_focused()


@pytest.mark.parametrize("lang", ["en", "ru"])
def test_a_national_number_in_the_pages_country(
    page: Page, axe_source: str, service: Server, site: Site, lang: str
) -> None:
    w = i18n()[lang]["widget"]
    page.goto(site.page(service.base, lang=lang, channel="choice", country="RU"))
    expect(page.get_by_label(w["phone"])).to_be_visible()
    expect(page.locator("#phone-step select")).to_be_hidden()  # the page said which country: nothing to ask
    mark = service.smsc.mark()
    page.get_by_label(w["phone"]).fill(NATIONAL)
    body = started(page, page.get_by_role("button", name=w["send"]).click)
    assert (body["phone"], body["country"], body["locale"]) == (NATIONAL, "RU", lang)
    assert_accessible(page, axe_source, f"code ({lang})")
    confirm(page, service, mark, lang)


@pytest.mark.parametrize("locale", ["ru-RU", "ru"])
def test_a_national_number_in_the_browser_languages_country(
    page_in: Callable[[str], Page], service: Server, site: Site, locale: str
) -> None:
    page = page_in(locale)
    page.goto(site.page(service.base, lang="en"))  # an English page, a Russian browser
    phone = page.get_by_label("Phone number")
    expect(phone).to_be_visible()
    expect(page.locator("#phone-step select")).to_be_hidden()
    mark = service.smsc.mark()
    phone.fill(NATIONAL)
    assert started(page, page.get_by_role("button", name="Send code").click)["country"] == "RU"
    confirm(page, service, mark)


def test_without_a_country_the_person_picks_it_and_sees_what_the_service_said(
    page_in: Callable[[str], Page], axe_source: str, service: Server, site: Site
) -> None:
    page = page_in("en")  # English, of no particular country
    page.goto(site.page(service.base))
    country = page.get_by_label("Country")
    expect(country).to_be_visible()
    expect(country).to_have_value("")
    expect(country.locator("option").first).to_have_text("Choose the country")
    expect(country.locator('option[value="RU"]')).to_have_text("Russia (\u2066+7\u2069)")
    expect(country.locator('option[value="DE"]')).to_have_text("Germany (\u2066+49\u2069)")
    assert_accessible(page, axe_source, "country list")
    phone = page.get_by_label("Phone number")
    phone.fill(NATIONAL)
    assert "country" not in started(page, page.get_by_role("button", name="Send code").click)
    # The widget's words, then the service's (the 400's detail), which say what to do.
    expect(alert(page)).to_have_text(
        "This does not look like a phone number. Check it and its country, or type it with + and the country code."
        "Phone is not a phone number (give it in +E.164 form or pass country)"
    )
    expect(alert(page).locator('span[lang="en"]')).to_have_text(
        "Phone is not a phone number (give it in +E.164 form or pass country)"
    )
    expect(phone).to_have_attribute("aria-invalid", "true")
    expect(phone).to_be_focused()
    assert_accessible(page, axe_source, "invalid phone")
    save_screenshot(page, "country-asked")

    country.select_option("RU")
    mark = service.smsc.mark()
    assert started(page, page.get_by_role("button", name="Send code").click)["country"] == "RU"
    confirm(page, service, mark)


def test_a_country_guessed_wrong_brings_up_the_list(page: Page, axe_source: str, service: Server, site: Site) -> None:
    page.goto(site.page(service.base))  # the browser says en-US: a US number is expected
    country = page.locator("#phone-step select")
    expect(page.get_by_label("Phone number")).to_be_visible()
    expect(country).to_be_hidden()
    page.get_by_label("Phone number").fill(NATIONAL)
    assert started(page, page.get_by_role("button", name="Send code").click)["country"] == "US"
    expect(alert(page).locator('span[lang="en"]')).to_have_text("Phone is not a valid number for its country")
    # The country is what was wrong: the list comes up on the guess, focused.
    expect(page.get_by_label("Country")).to_be_focused()
    expect(country).to_have_value("US")
    assert_accessible(page, axe_source, "country guessed wrong")
    page.keyboard.type("Russia")  # a select takes the typed name
    expect(country).to_have_value("RU")
    mark = service.smsc.mark()
    assert started(page, page.get_by_role("button", name="Send code").click)["country"] == "RU"
    confirm(page, service, mark)


def test_a_problem_the_widget_has_no_words_for_is_said_in_the_services(page: Page, service: Server, site: Site) -> None:
    page.goto(site.page(service.base, country="XX"))  # a page's mistake: no such country
    page.get_by_label("Phone number").fill(NATIONAL)
    page.get_by_role("button", name="Send code").click()
    expect(alert(page)).to_have_text("Country must be an ISO 3166-1 alpha-2 region code such as RU or US")
    assert "went wrong" not in alert(page).inner_text()


@pytest.mark.parametrize("lang", LOCALES)
def test_the_widget_speaks_the_pages_language(page: Page, service: Server, site: Site, lang: str) -> None:
    w = i18n()[lang]["widget"]
    page.goto(site.page(service.base, lang=lang, channel="choice"))
    widget = page.locator("#phone-step")
    expect(page.get_by_label(w["phone"])).to_be_visible()
    expect(page.get_by_role("radio", name=w["call"])).to_be_visible()
    expect(page.get_by_role("button", name=w["send"])).to_be_visible()
    expect(widget).to_have_attribute("lang", lang)
    expect(widget).to_have_attribute("dir", "rtl" if lang == "ar" else "ltr")
    page.get_by_role("button", name=w["send"]).click()
    expect(alert(page)).to_have_text(w["empty"])


def test_a_regional_page_language_is_its_base_language(page: Page, service: Server, site: Site) -> None:
    page.goto(site.page(service.base, lang="pt-BR"))
    expect(page.get_by_label("Número de telefone")).to_be_visible()
    expect(page.locator("#phone-step")).to_have_attribute("lang", "pt")


def test_arabic_is_right_to_left_with_numbers_left_to_right(
    page: Page, axe_source: str, service: Server, site: Site
) -> None:
    w = i18n()["ar"]["widget"]
    page.goto(site.page(service.base, lang="ar", country="RU"))
    phone = page.get_by_label(w["phone"])
    expect(phone).to_be_visible()
    assert page.locator("#phone-step").evaluate("el => getComputedStyle(el).direction") == "rtl"
    assert phone.evaluate("el => getComputedStyle(el).direction") == "ltr"
    assert_accessible(page, axe_source, "phone (ar)")
    mark = service.smsc.mark()
    phone.fill(NATIONAL)
    with page.expect_response(lambda r: r.request.method == "POST" and r.url.endswith("/v1/verifications")) as sent:
        page.get_by_role("button", name=w["send"]).click()
    body = sent.value.request.post_data_json
    assert isinstance(body, dict)
    assert (body["locale"], sent.value.json()["locale"]) == ("ar", "ar")
    assert re.search("[\u0600-\u06ff]", sms_code(service.smsc, mark)[0])  # the SMS is in Arabic too
    code_input = page.get_by_label(w["code"])
    expect(code_input).to_be_focused()
    # The number inside the Arabic sentence is isolated, so it still reads +7 999 123-45-67.
    expect(page.locator("#phone-step [data-r=sent]")).to_have_text(w["sent"].replace("{p}", f"\u2066{SHOWN}\u2069"))
    assert_accessible(page, axe_source, "code (ar)")
    code_input.fill(sms_code(service.smsc, mark)[1])
    code_input.press("Enter")
    expect(page.get_by_role("paragraph").filter(has_text=re.compile(re.escape(SHOWN)))).to_be_focused()
    save_screenshot(page, "arabic")


def test_without_its_language_file_the_widget_speaks_english(page: Page, service: Server, site: Site) -> None:
    # data-verify-url names a port nothing listens on: the German strings cannot be had.
    page.goto(site.page(service.base, lang="de", url="http://127.0.0.1:9/"))
    expect(page.get_by_label("Phone number")).to_be_visible()
    expect(page.locator("#phone-step")).to_have_attribute("lang", "en")
