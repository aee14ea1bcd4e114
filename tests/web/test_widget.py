"""GET /widget.js and GET /demo as files: what is served, its size, its caching; the flows in a browser are in
tests/browser/."""

from __future__ import annotations

import re
import shutil
import subprocess
from dataclasses import replace
from pathlib import Path

import pytest
from flask.testing import FlaskClient

from tests.conftest import make_settings
from verify import create_app, errors

SCRIPT = Path(__file__).resolve().parents[2] / "verify" / "static" / "widget.js"
MAX_BYTES = 20 * 1024


def test_the_script_is_small_and_standalone() -> None:
    source = SCRIPT.read_bytes()
    assert len(source) < MAX_BYTES, f"widget.js is {len(source)} bytes, over 20 KB unminified"
    text = source.decode("utf-8")
    # No dependency: nothing imported, required or loaded from elsewhere.
    assert not re.search(r"^\s*import\b|\bimport\(|\brequire\(|createElement\(\s*[\"']script|https?://", text, re.M)


def strings(locale: str) -> tuple[set[str], set[str]]:
    """The names of the widget's strings in ``locale`` (``en``, ``ru``), and of its problem messages."""
    text = SCRIPT.read_text(encoding="utf-8")
    block = re.search(rf"^    {locale}: {{\n(.*?)^    }},$", text, re.M | re.S)
    assert block is not None, locale
    words, _, problems = block.group(1).partition("      p: {")
    return set(re.findall(r"(?:^|[\s,])(\w+): [\"`]", words)), set(re.findall(r'^\s*"?([a-z-]+)"?: "', problems, re.M))


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


def test_english_and_russian_have_the_same_strings() -> None:
    assert strings("en") == strings("ru")
    words, problems = strings("en")
    assert {"phone", "code", "callnow", "left", "ok", "retry", "net", "down"} <= words
    assert {"invalid-code", "rate-limited", "forbidden"} <= problems


def test_every_problem_a_site_key_can_meet_is_put_in_words() -> None:
    worded = strings("en")[1]
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
        r'<div data-verify-site-key="pk_first" data-verify-channel="choice"\s+'
        r'data-verify-country="RU"></div>',
        html,
    ), html
    assert '<script src="/widget.js"></script>' in html
    assert 'id="inbox"' in html  # sandbox mode: the sandbox phone beside the form


def test_the_demo_outside_sandbox_mode_has_no_sandbox_panel(redis_url: str) -> None:
    settings = replace(make_settings(redis_url, site_keys=(("pk_first", ("http://127.0.0.1:8000",)),)), sandbox=False)
    html = create_app(settings, background=False).test_client().get("/demo").get_data(as_text=True)
    assert 'data-verify-site-key="pk_first"' in html
    assert "/sandbox/" not in html and 'id="inbox"' not in html


@pytest.mark.parametrize(
    ("query", "attribute"),
    [("?lang=ru", ' data-verify-locale="ru"'), ("?lang=en", ' data-verify-locale="en"'), ("?lang=xx", ""), ("", "")],
)
def test_the_demo_language(redis_url: str, query: str, attribute: str) -> None:
    settings = make_settings(redis_url, site_keys=(("pk_first", ("http://127.0.0.1:8000",)),))
    html = create_app(settings, background=False).test_client().get("/demo" + query).get_data(as_text=True)
    assert f'data-verify-channel="choice"{attribute}></div>' in html
