"""GET /widget.js and GET /demo as files: what is served, its size, its caching; the flows in a browser are in
tests/browser/."""

from __future__ import annotations

import json
import re
import shutil
import struct
import subprocess
from dataclasses import replace
from pathlib import Path
from typing import Any

import phonenumbers
import pytest
from flask.testing import FlaskClient

from tests.conftest import API_KEY, SECRET_KEY, make_settings
from verify import create_app, errors
from verify.config import Settings
from verify.web.widget import LOCALES, WIDGET_CHANNELS, offered_channels

STATIC = Path(__file__).resolve().parents[2] / "verify" / "static"
SCRIPT = STATIC / "widget.js"
I18N = STATIC / "i18n.json"
MAX_BYTES = 20 * 1024


def test_the_script_is_small_and_standalone() -> None:
    source = SCRIPT.read_bytes()
    assert len(source) < MAX_BYTES, f"widget.js is {len(source)} bytes, over 20 KB unminified"
    text = source.decode("utf-8")
    # No dependency: nothing imported, required or loaded from elsewhere.
    assert not re.search(r"^\s*import\b|\bimport\(|\brequire\(|createElement\(\s*[\"']script|https?://", text, re.M)


def i18n() -> dict[str, Any]:
    """Every language's strings: ``{lang: {"widget": {..., "p": {problem: text}}, "demo": {...}}}``."""
    loaded: dict[str, Any] = json.loads(I18N.read_text(encoding="utf-8"))
    return loaded


def built_in_english() -> dict[str, Any]:
    """The English strings widget.js carries (a JSON object on its ``const EN =`` line)."""
    found = re.search(r"^  const EN = (\{.*\});$", SCRIPT.read_text(encoding="utf-8"), re.M)
    assert found is not None
    english: dict[str, Any] = json.loads(found.group(1))
    return english


def flat(strings: dict[str, Any], prefix: str = "") -> dict[str, str]:
    """``{"widget.p.invalid-code": "Wrong code...", ...}``."""
    out: dict[str, str] = {}
    for key, value in strings.items():
        if isinstance(value, dict):
            out |= flat(value, f"{prefix}{key}.")
        else:
            out[prefix + key] = value
    return out


# Problems the widget words on its own: by what they mean for the person, not by their type.
WORDED_APART = {
    "captcha-required": "shows the picture (or names the captcha provider it cannot show)",
    "not-found": "the verification expired: start again",
    "not-pending": "reads it: approved, or expired",
    "unauthorized": "the site may not use the service",
    "store-unavailable": "the service is down",
    "internal-error": "the service is down",
    "invalid-request": "something went wrong, with the status",
    "wrong-channel": "something went wrong, with the status",
}
# Problems a site key never meets: the widget sends no Idempotency-Key, never checks tokens, takes no webhooks.
NOT_FOR_SITE_KEYS = {
    "invalid-token",
    "token-expired",
    "webhook-rejected",
    "idempotency-in-progress",
    "idempotency-mismatch",
}


def error_slugs(cls: type[errors.VerifyError] = errors.VerifyError) -> set[str]:
    return {cls.slug} | {slug for sub in cls.__subclasses__() for slug in error_slugs(sub)}


def test_every_language_has_every_string_with_the_same_placeholders() -> None:
    languages = i18n()
    assert tuple(languages) == LOCALES
    english = flat(languages["en"])
    assert {"widget.phone", "widget.country", "widget.callnow", "widget.p.invalid-code", "demo.current"} <= set(english)
    for lang, strings in languages.items():
        translated = flat(strings)
        assert set(translated) == set(english), lang
        for key, text in translated.items():
            assert text.strip() == text and text, (lang, key)
            assert sorted(re.findall(r"\{\w+\}", text)) == sorted(re.findall(r"\{\w+\}", english[key])), (lang, key)
        # Translated, not copied: a word or two may be the same in both (German "Name", French "Messages").
        if lang != "en":
            assert sum(text == english[key] for key, text in translated.items()) <= 1, lang


def test_the_script_carries_english_and_knows_every_language() -> None:
    assert built_in_english() == i18n()["en"]["widget"]
    found = re.search(r'const LANGS = "([a-z ]+)"\.split', SCRIPT.read_text(encoding="utf-8"))
    assert found is not None
    assert tuple(found.group(1).split()) == LOCALES


def test_the_script_takes_and_names_every_channel_the_demo_may_offer() -> None:
    found = re.search(r"\.filter\(\(c\) => /\^\(([a-z|]+)\)\$/\.test\(c\)\)", SCRIPT.read_text(encoding="utf-8"))
    assert found is not None
    assert tuple(found.group(1).split("|")) == WIDGET_CHANNELS
    assert set(WIDGET_CHANNELS) <= set(built_in_english())


def test_every_problem_a_site_key_can_meet_is_put_in_words() -> None:
    worded = set(i18n()["en"]["widget"]["p"])
    assert error_slugs() - NOT_FOR_SITE_KEYS - set(WORDED_APART) - worded == set()
    assert worded - error_slugs() == set()


@pytest.mark.skipif(shutil.which("node") is None, reason="node is not installed")
def test_the_script_parses() -> None:
    subprocess.run(["node", "--check", str(SCRIPT)], check=True, capture_output=True)


def test_the_script_is_served_as_javascript_with_an_etag(client: FlaskClient) -> None:
    response = client.get("/widget.js")
    assert response.status_code == 200
    assert response.headers["Content-Type"] == "text/javascript; charset=utf-8"
    assert response.get_data() == SCRIPT.read_bytes()
    etag = response.headers["ETag"]
    assert re.fullmatch(r'"[0-9a-f]{32}"', etag)  # strong: the same bytes on every worker and instance
    assert response.headers["Cache-Control"] == "public, max-age=300"
    assert response.headers["Access-Control-Allow-Origin"] == "*"
    assert response.headers["X-Content-Type-Options"] == "nosniff"

    again = client.get("/widget.js", headers={"If-None-Match": etag})
    assert again.status_code == 304
    assert again.get_data() == b""
    assert (again.headers["ETag"], again.headers["Cache-Control"]) == (etag, "public, max-age=300")
    assert client.get("/widget.js", headers={"If-None-Match": f'"0", {etag}'}).status_code == 304
    assert client.get("/widget.js", headers={"If-None-Match": '"0123"'}).status_code == 200
    head = client.head("/widget.js")
    assert (head.status_code, head.headers["ETag"], head.get_data()) == (200, etag, b"")


def test_the_demo_needs_a_site_key(client: FlaskClient) -> None:
    response = client.get("/demo")
    assert response.status_code == 404
    assert response.mimetype == "application/problem+json"
    body = response.get_json()
    assert body["type"] == "/problems/not-found"
    assert "VERIFY_SITE_KEYS" in body["detail"]


def test_the_demo_uses_the_first_site_key(redis_url: str) -> None:
    keys = (("pk_first", ("http://127.0.0.1:8000",)), ("pk_second", ("https://shop.example",)))
    settings = make_settings(redis_url, site_keys=keys, default_country="RU")
    page = create_app(settings, background=False).test_client().get("/demo")
    assert page.status_code == 200
    assert page.mimetype == "text/html"
    html = page.get_data(as_text=True)
    assert re.search(
        r'<div data-verify-site-key="pk_first" data-verify-channel="sms,voice,telegram,call"\s+'
        r'data-verify-country="RU" data-verify-locale="en"></div>',
        html,
    ), html
    assert '<script src="/widget.js"></script>' in html
    assert 'id="inbox"' in html  # sandbox mode: the sandbox phone beside the form


def test_the_demo_outside_sandbox_mode_has_no_sandbox_panel(redis_url: str) -> None:
    settings = replace(make_settings(redis_url, site_keys=(("pk_first", ("http://127.0.0.1:8000",)),)), sandbox=False)
    html = create_app(settings, background=False).test_client().get("/demo").get_data(as_text=True)
    assert 'data-verify-site-key="pk_first"' in html
    assert "/sandbox/" not in html and 'id="inbox"' not in html
    # The person picks only among the channels this deployment serves.
    off = replace(settings, voice_providers=(), telegram_providers=(), call_provider=None)
    page = create_app(off, background=False).test_client().get("/demo").get_data(as_text=True)
    assert 'data-verify-channel="sms"' in page


SANDBOX = {"VERIFY_API_KEYS": API_KEY, "VERIFY_SECRET_KEY": SECRET_KEY, "VERIFY_SANDBOX": "1"}
# Outside sandbox mode: SMS by D7, and neither voice nor call.
PRODUCTION = {
    **SANDBOX,
    "VERIFY_SANDBOX": "0",
    "VERIFY_SMS_PROVIDERS": "d7",
    "VERIFY_D7_TOKEN": "t",
    "VERIFY_BRAND": "Shop",
}
VOICE_BY_SMSC = {"VERIFY_VOICE_PROVIDERS": "smsc", "VERIFY_SMSC_APIKEY": "k", "VERIFY_SMSC_SECRET": "s" * 16}


@pytest.mark.parametrize(
    ("environ", "offered"),
    [
        # VERIFY_DEFAULT_CHANNELS unset: the widget's own order (the sandbox gateway serves telegram)
        (SANDBOX, ("sms", "voice", "telegram", "call")),
        ({**SANDBOX, "VERIFY_DEFAULT_CHANNELS": "voice,sms"}, ("voice", "sms", "telegram", "call")),
        ({**SANDBOX, "VERIFY_DEFAULT_CHANNELS": "call"}, ("call", "sms", "voice", "telegram")),
        ({**SANDBOX, "VERIFY_DEFAULT_CHANNELS": "voice"}, ("voice", "sms", "telegram", "call")),
        ({**SANDBOX, "VERIFY_DEFAULT_CHANNELS": "telegram,voice,sms"}, ("telegram", "voice", "sms", "call")),
        # Outside sandbox mode telegram is off until VERIFY_TELEGRAM_TOKEN is set.
        (PRODUCTION, ("sms",)),
        ({**PRODUCTION, **VOICE_BY_SMSC, "VERIFY_DEFAULT_CHANNELS": "voice,sms"}, ("voice", "sms")),
        ({**PRODUCTION, **VOICE_BY_SMSC, "VERIFY_DEFAULT_CHANNELS": "sms"}, ("sms", "voice")),
        ({**PRODUCTION, "VERIFY_TELEGRAM_TOKEN": "1:t"}, ("sms", "telegram")),
        (
            {**PRODUCTION, "VERIFY_TELEGRAM_TOKEN": "1:t", "VERIFY_DEFAULT_CHANNELS": "telegram,sms"},
            ("telegram", "sms"),
        ),
    ],
)
def test_the_widget_offers_the_served_channels_in_the_order_of_the_default_channels(
    environ: dict[str, str], offered: tuple[str, ...]
) -> None:
    assert offered_channels(Settings.from_env(environ)) == offered


def test_a_channel_without_a_gateway_is_not_offered_even_if_named() -> None:
    chain = Settings.from_env({**SANDBOX, "VERIFY_DEFAULT_CHANNELS": "voice,sms"})
    assert offered_channels(replace(chain, voice_providers=())) == ("sms", "telegram", "call")
    assert offered_channels(replace(chain, call_provider=None)) == ("voice", "sms", "telegram")
    assert offered_channels(replace(chain, sms_providers=())) == ("voice", "telegram", "call")
    assert offered_channels(replace(chain, telegram_providers=())) == ("voice", "sms", "call")


def test_the_demo_lists_the_channels_in_the_order_of_the_default_channels(redis_url: str) -> None:
    chain = Settings.from_env({**SANDBOX, "VERIFY_DEFAULT_CHANNELS": "voice,sms"}).default_channels
    settings = make_settings(redis_url, site_keys=(("pk_first", ("http://127.0.0.1:8000",)),), default_channels=chain)
    page = create_app(settings, background=False).test_client().get("/demo").get_data(as_text=True)
    assert 'data-verify-channel="voice,sms,telegram,call"' in page


def demo_page(redis_url: str, query: str = "", **headers: str) -> str:
    settings = make_settings(redis_url, site_keys=(("pk_first", ("http://127.0.0.1:8000",)),))
    client = create_app(settings, background=False).test_client()
    return client.get("/demo" + query, headers=headers).get_data(as_text=True)


@pytest.mark.parametrize(
    ("query", "lang"),
    [
        ("?lang=ru", "ru"),
        ("?lang=de", "de"),
        ("?lang=pt-BR", "pt"),
        ("?lang=zh_Hant", "zh"),
        ("?lang=xx", "en"),
        ("", "en"),
    ],
)
def test_the_demo_language(redis_url: str, query: str, lang: str) -> None:
    html = demo_page(redis_url, query)
    assert f'<html lang="{lang}" dir="ltr">' in html
    assert f'data-verify-channel="sms,voice,telegram,call" data-verify-locale="{lang}"></div>' in html
    assert f"<h1>{i18n()[lang]['demo']['h1']}</h1>" in html
    assert f'aria-current="page">{i18n()[lang]["demo"]["language"]}</a>' in html


def test_the_demo_in_arabic_is_right_to_left(redis_url: str) -> None:
    assert '<html lang="ar" dir="rtl">' in demo_page(redis_url, "?lang=ar")


def test_without_lang_the_demo_takes_the_browsers_language(redis_url: str) -> None:
    html = demo_page(redis_url, **{"Accept-Language": "xx-YY, pt-BR;q=0.9, en;q=0.5"})
    assert '<html lang="pt" dir="ltr">' in html
    # ?lang= wins over the browser's languages.
    assert '<html lang="ja" dir="ltr">' in demo_page(redis_url, "?lang=ja", **{"Accept-Language": "pt-BR"})


def test_the_demo_links_every_language_in_its_own_words(redis_url: str) -> None:
    html = demo_page(redis_url)
    links = re.findall(r'<a href="\?lang=(\w+)" lang="(\w+)" hreflang="(\w+)"[^>]*>([^<]+)</a>', html)
    assert [(code, name) for code, lang, hreflang, name in links if code == lang == hreflang] == [
        (code, i18n()[code]["demo"]["language"]) for code in LOCALES
    ]


@pytest.mark.parametrize("lang", LOCALES)
def test_a_language_of_the_widget_is_served_with_the_regions(client: FlaskClient, lang: str) -> None:
    response = client.get(f"/widget/{lang}.json")
    assert response.status_code == 200
    assert response.mimetype == "application/json"
    body = response.get_json()
    regions = body.pop("regions").split()
    assert body == i18n()[lang]["widget"]
    # The regions the service reads national numbers in, with their calling codes: what the country list offers.
    assert regions == [f"{r}{phonenumbers.country_code_for_region(r)}" for r in sorted(phonenumbers.SUPPORTED_REGIONS)]
    assert "RU7" in regions and "DE49" in regions
    etag = response.headers["ETag"]
    assert (response.headers["Cache-Control"], response.headers["Access-Control-Allow-Origin"]) == (
        "public, max-age=300",
        "*",
    )
    assert client.get(f"/widget/{lang}.json", headers={"If-None-Match": etag}).status_code == 304


@pytest.mark.parametrize("lang", ["xx", "pt-BR", "EN", "..%2Fwidget"])
def test_a_language_the_widget_does_not_speak_is_404(client: FlaskClient, lang: str) -> None:
    response = client.get(f"/widget/{lang}.json")
    assert response.status_code == 404
    assert response.mimetype == "application/problem+json"


def test_the_favicon_is_an_icon(client: FlaskClient) -> None:
    response = client.get("/favicon.ico")
    assert response.status_code == 200
    assert response.mimetype == "image/x-icon"
    assert response.headers["Cache-Control"] == "public, max-age=86400"
    icon = response.get_data()
    # An ICO directory with one 32x32 image, a PNG.
    reserved, kind, count = struct.unpack("<HHH", icon[:6])
    width, height, _, _, _, _, size, offset = struct.unpack("<BBBBHHII", icon[6:22])
    assert (reserved, kind, count, width, height) == (0, 1, 1, 32, 32)
    assert icon[offset : offset + 8] == b"\x89PNG\r\n\x1a\n" and offset + size == len(icon)
