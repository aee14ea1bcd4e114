"""Fixtures of the browser tests: Debian's Chromium driven by Playwright, axe-core injected into each page, a
customer's signup page served from its own origin, and the service (the Procfile's gunicorn, or an in-process app
for the settings of a single test).

The customer's page and the service are on different 127.0.0.1 ports, so every API call of the widget is a real
cross-origin request: a CORS preflight, then the request with its ``Origin``. A second copy of the page, on a port
that no site key lists, is the foreign origin.

These tests skip, saying why, when there is no Chromium (``.ci/run`` installs Debian's as root) or when axe-core is
missing (``make test`` installs it with npm into ``.venv/node``; without npm it cannot).
"""

from __future__ import annotations

import html
import json
import re
import shutil
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import pytest
from flask import Flask
from playwright.sync_api import Browser, Page, Playwright, expect, sync_playwright
from werkzeug.wrappers import Request, Response

from tests.conftest import flushed, make_settings, serving
from tests.servers import CountingSmsc, Server, gunicorn_server
from verify import create_app
from verify.embedded import EmbeddedRedis

ROOT = Path(__file__).resolve().parent.parent.parent
CHROMIUM_PATHS = (Path("/usr/lib/chromium/chromium"), Path("/usr/bin/chromium"))
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
AXE_JS = ROOT / ".venv" / "node" / "node_modules" / "axe-core" / "axe.min.js"
ARTIFACTS = ROOT / "tests" / "artifacts"
SITE_KEY = "pk_test"
RESEND_COOLDOWN_S = 2
# Long enough for a gunicorn worker's first answer on a busy 2-core machine; a failure still ends in seconds.
STEP_TIMEOUT_MS = 10_000
expect.set_options(timeout=STEP_TIMEOUT_MS)
# What the page records: every event the widget dispatches, in order.
RECORD_EVENTS = """
window.verifyEvents = [];
for (const name of ["verify:started", "verify:approved"]) {
  document.addEventListener(name, (e) => window.verifyEvents.push({type: e.type, detail: e.detail}));
}
"""


def chromium() -> Path | None:
    """Debian's Chromium, if installed."""
    return next((path for path in CHROMIUM_PATHS if path.exists()), None)


@pytest.fixture(scope="session")
def driver() -> Iterator[Playwright]:
    """Playwright's driver, started once."""
    if chromium() is None:
        pytest.skip(
            f"no Chromium at {' or '.join(map(str, CHROMIUM_PATHS))}: install Debian's with "
            "`apt-get install chromium` (.ci/run does, as root)"
        )
    with sync_playwright() as driver:
        yield driver


@pytest.fixture(scope="session")
def browser(driver: Playwright) -> Iterator[Browser]:
    """Headless Chromium (Debian's: Playwright's own download does not exist here)."""
    launched = driver.chromium.launch(executable_path=str(chromium()), args=CHROMIUM_ARGS)
    yield launched
    launched.close()


@pytest.fixture(scope="session")
def axe_source() -> str:
    """axe-core's script, to inject into pages."""
    if not AXE_JS.exists():
        if shutil.which("npm") is None:
            pytest.skip("npm is not installed, so axe-core (npm's axe-core@4) cannot be installed into .venv/node")
        pytest.skip(f"axe-core is not installed at {AXE_JS}: `make test` installs it with npm")
    return AXE_JS.read_text(encoding="utf-8")


@pytest.fixture
def page(browser: Browser, axe_source: str) -> Iterator[Page]:
    """A fresh page (own cookies and storage) that records the widget's events in ``window.verifyEvents``."""
    # The browser's language is English (US) unless a test opens a context of its own: the widget takes a country
    # for national numbers from it.
    context = browser.new_context(viewport={"width": 900, "height": 720}, locale="en-US")
    opened = context.new_page()
    opened.set_default_timeout(STEP_TIMEOUT_MS)
    opened.add_init_script(RECORD_EVENTS)
    yield opened
    context.close()


@pytest.fixture
def page_in(browser: Browser) -> Iterator[Callable[[str], Page]]:
    """``page_in(locale)``: a fresh page like :func:`page`'s, in a browser whose language is ``locale`` (``ru-RU``,
    ``ru``, ``en``): what ``navigator.languages`` and ``Accept-Language`` say."""
    with ExitStack() as stack:

        def open_page(locale: str) -> Page:
            context = browser.new_context(viewport={"width": 900, "height": 720}, locale=locale)
            stack.callback(context.close)
            opened = context.new_page()
            opened.set_default_timeout(STEP_TIMEOUT_MS)
            opened.add_init_script(RECORD_EVENTS)
            return opened

        yield open_page


def i18n() -> dict[str, Any]:
    """Every language's strings (verify/static/i18n.json): ``{lang: {"widget": {...}, "demo": {...}}}``."""
    loaded: dict[str, Any] = json.loads((ROOT / "verify" / "static" / "i18n.json").read_text(encoding="utf-8"))
    return loaded


def assert_accessible(page: Page, axe_source: str, step: str) -> None:
    """axe-core finds no serious or critical violation in the page as it is now."""
    if not page.evaluate("typeof window.axe === 'object'"):
        page.add_script_tag(content=axe_source)
    violations: list[dict[str, Any]] = page.evaluate("""async () => {
        const result = await axe.run(document, {resultTypes: ["violations"]});
        return result.violations.filter((v) => v.impact === "serious" || v.impact === "critical")
            .map((v) => ({id: v.id, impact: v.impact, help: v.help, nodes: v.nodes.map((n) => n.html)}));
    }""")
    assert violations == [], f"axe at step {step!r}: {violations}"


def save_screenshot(page: Page, name: str) -> Path:
    """The page as it looks now, kept as tests/artifacts/<name>.png (git-ignored)."""
    ARTIFACTS.mkdir(exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path


def events(page: Page) -> list[dict[str, Any]]:
    """The widget's events so far."""
    recorded: list[dict[str, Any]] = page.evaluate("window.verifyEvents")
    return recorded


# the customer's site


PAGE = """<!doctype html>
<html lang="{lang}">
<head><meta charset="utf-8"><title>Shop: sign up</title></head>
<body>
<main>
<h1>Sign up</h1>
<form action="/submitted" method="get">
  <label for="name">Name</label>
  <input id="name" name="name" autocomplete="name">
  <div id="phone-step" {attributes}></div>
  <button type="submit">Sign up</button>
</form>
</main>
<script src="{verify}/widget.js"></script>
</body>
</html>
"""

SUBMITTED = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Received</title></head>
<body><main><h1>Received</h1><dl>{fields}</dl></main></body></html>
"""


def customer_site(environ: dict[str, Any], start_response: Any) -> Any:
    """A shop's signup form with the widget, as a customer would write it.

    ``GET /?verify=<service base>&lang=..&<widget attribute>=..``: the page, with ``data-verify-<name>`` for each
    other parameter (``channel``, ``locale``, ``country``, ``url``, ``site-key``); ``GET /submitted``: what the
    form sent, as a definition list with ids ``field-<name>``.
    """
    request = Request(environ)
    if request.path == "/submitted":
        fields = "".join(
            f'<dt>{html.escape(k)}</dt><dd id="field-{html.escape(k)}">{html.escape(v)}</dd>'
            for k, v in request.args.items()
        )
        body = SUBMITTED.format(fields=fields)
    elif request.path == "/":
        args = dict(request.args.items())
        verify, lang = args.pop("verify"), args.pop("lang", "en")
        args.setdefault("site-key", SITE_KEY)
        attributes = " ".join(f'data-verify-{html.escape(k)}="{html.escape(v)}"' for k, v in args.items())
        body = PAGE.format(lang=html.escape(lang), verify=html.escape(verify), attributes=attributes)
    else:
        return Response("not found", status=404)(environ, start_response)
    return Response(body, mimetype="text/html")(environ, start_response)


@dataclass(frozen=True)
class Site:
    """One served copy of the customer's site."""

    origin: str

    def page(self, verify: str, **params: str) -> str:
        """The signup page's URL, its widget talking to the service at ``verify``."""
        return f"{self.origin}/?{urlencode({'verify': verify, **params})}"


@pytest.fixture(scope="session")
def site() -> Iterator[Site]:
    """The customer's site, on the origin the test site key lists."""
    with serving(customer_site) as origin:
        yield Site(origin)


@pytest.fixture(scope="session")
def foreign_site() -> Iterator[Site]:
    """The same page on another port: an origin no site key lists."""
    with serving(customer_site) as origin:
        yield Site(origin)


# the service


@pytest.fixture(scope="module")
def gunicorn(redis_server: EmbeddedRedis, site: Site, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """The Procfile's gunicorn (2 workers) with the test site key for the customer's origin; SMS go to an SMSC
    emulator, calls to the sandbox call gateway. No captcha, the default rate limits, and a resend cooldown of
    ``RESEND_COOLDOWN_S`` so that a test can wait it out."""
    settings = {
        "VERIFY_SITE_KEYS": f"{SITE_KEY}={site.origin}",
        "VERIFY_CAPTCHA_MODE": "off",
        "VERIFY_RESEND_COOLDOWN": str(RESEND_COOLDOWN_S),
    }
    with gunicorn_server(redis_server.url, tmp_path_factory.mktemp("gunicorn"), settings, workers=2) as server:
        yield server


@pytest.fixture
def service(gunicorn: Server) -> Server:
    """The gunicorn service, with an empty Redis."""
    gunicorn.reset()
    return gunicorn


class Slot:
    """A WSGI app that forwards to ``app``: served before the app exists, so that the app's settings can name the
    origin it is served from."""

    def __init__(self) -> None:
        self.app: Flask | None = None

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Any:
        assert self.app is not None
        return self.app(environ, start_response)


@pytest.fixture
def in_process(redis_server: EmbeddedRedis, site: Site) -> Iterator[Callable[..., str]]:
    """``in_process(**settings)``: the base URL of a sandbox app (SMS and calls by the sandbox gateway) served in a
    thread, on an empty Redis, with the given settings and the test site key for the customer's origin and its own
    (for /demo, whose page is the service's)."""
    with ExitStack() as stack:

        def serve(**overrides: Any) -> str:
            slot = Slot()
            base = stack.enter_context(serving(slot))
            settings = make_settings(
                flushed(redis_server.url), site_keys=((SITE_KEY, (site.origin, base)),), **overrides
            )
            slot.app = create_app(settings, background=False)
            return base

        yield serve


# reading what was sent


def sms_code(smsc: CountingSmsc, mark: int, timeout: float = 10.0) -> tuple[str, str]:
    """The text and code of the first SMS SMSC accepted after ``mark``."""
    deadline = time.monotonic() + timeout
    while not (sent := smsc.since(mark, "sms")):
        assert time.monotonic() < deadline, "no SMS was sent"
        time.sleep(0.05)
    return sent[0].text, code_in(sent[0].text)


def code_in(text: str) -> str:
    """The code in an SMS: its WebOTP line's, else the first run of digits."""
    found = re.search(r"#(\d+)\s*$", text) or re.search(r"\d{4,}", text)
    assert found is not None, text
    return found.group(found.lastindex or 0)
