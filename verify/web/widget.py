"""The browser side: ``GET /widget.js``, the embeddable verification step, its languages (``GET /widget/<lang>.json``),
``GET /demo``, a signup page using it, and ``GET /favicon.ico``.

The files are package data (``verify/static``), read once per app when the blueprint is registered. The script and
the languages are served with strong ETags: a page's browser revalidates them and gets 304 while the release is the
same. ``static/i18n.json`` holds every language's strings, the widget's and the demo's; English is also built into
the script, so the widget speaks it without a second request (a test keeps the two equal).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from importlib import resources
from typing import Any

import phonenumbers
from flask import Blueprint, Response, current_app, render_template_string, request, url_for
from flask.blueprints import BlueprintSetupState
from werkzeug.wrappers import Response as BaseResponse

from verify.config import Settings
from verify.errors import NotFound
from verify.web.context import settings

bp = Blueprint("widget", __name__)

# The script's URL carries no version, so a cache may keep it only briefly before it revalidates (a 304 while the
# ETag is the same): a new release reaches every page within this many seconds.
MAX_AGE_S = 300
FAVICON_MAX_AGE_S = 86_400
# The languages of the widget and the demo; widget.js lists the same (a test holds them equal).
LOCALES = ("en", "ru", "uk", "kk", "uz", "de", "fr", "es", "pt", "it", "tr", "ar", "hi", "id", "zh", "ja")
RTL = frozenset({"ar"})
# Every region a national number can be read in, with its calling code ("RU7"): what the widget's country list offers.
REGIONS = " ".join(f"{r}{phonenumbers.country_code_for_region(r)}" for r in sorted(phonenumbers.SUPPORTED_REGIONS))
# The channels the widget can offer, in the order it lists them when VERIFY_DEFAULT_CHANNELS names none of them.
WIDGET_CHANNELS = ("sms", "voice", "telegram", "call")


def offered_channels(config: Settings) -> tuple[str, ...]:
    """The channels the widget offers on this deployment: those of :data:`WIDGET_CHANNELS` with a gateway here, the
    ones ``VERIFY_DEFAULT_CHANNELS`` names first, in its order, then the others in the widget's."""
    served = {
        "sms": config.sms_providers,
        "voice": config.voice_providers,
        "telegram": config.telegram_providers,
        "call": config.call_provider,
    }
    return tuple(c for c in dict.fromkeys((*config.default_channels, *WIDGET_CHANNELS)) if served.get(c))


@dataclass(frozen=True)
class File:
    """A served file's bytes and strong ETag."""

    body: bytes
    etag: str

    @classmethod
    def of(cls, body: bytes) -> File:
        """``body`` with its ETag (a hash of it, the same on every worker and instance)."""
        return cls(body, hashlib.sha256(body).hexdigest()[:32])


@dataclass(frozen=True)
class Assets:
    """The widget's script, each language's file (its strings and the regions), the demo page's template and
    strings, and the favicon."""

    script: File
    languages: dict[str, File]
    demo: str
    demo_strings: dict[str, dict[str, str]]
    favicon: bytes

    @classmethod
    def load(cls) -> Assets:
        """Read the files shipped in ``verify/static``."""
        static = resources.files("verify").joinpath("static")
        strings: dict[str, dict[str, Any]] = json.loads(static.joinpath("i18n.json").read_text("utf-8"))
        languages = {
            lang: File.of(json.dumps({**strings[lang]["widget"], "regions": REGIONS}, ensure_ascii=False).encode())
            for lang in LOCALES
        }
        return cls(
            File.of(static.joinpath("widget.js").read_bytes()),
            languages,
            static.joinpath("demo.html").read_text("utf-8"),
            {lang: strings[lang]["demo"] for lang in LOCALES},
            static.joinpath("favicon.ico").read_bytes(),
        )


@bp.record_once
def _load(state: BlueprintSetupState) -> None:
    state.app.extensions["verify.widget"] = Assets.load()


def assets() -> Assets:
    """The app's :class:`Assets`."""
    loaded: Assets = current_app.extensions["verify.widget"]
    return loaded


def locale(tag: str) -> str | None:
    """The language of ``tag`` (``de``, ``pt-BR``, ``zh_Hant``) that the widget speaks: the tag's own, else its base
    language's; None when it speaks neither."""
    tag = tag.strip().lower().replace("_", "-")
    for candidate in (tag, tag.split("-")[0]):
        if candidate in LOCALES:
            return candidate
    return None


def _public(file: File, mimetype: str) -> BaseResponse:
    """A public file: cacheable briefly and then revalidated, readable by any origin (so a page can pin it with
    integrity="sha384-..." crossorigin="anonymous"), embeddable by pages that send Cross-Origin-Embedder-Policy."""
    response = Response(file.body, mimetype=mimetype)
    response.set_etag(file.etag)
    response.headers["Cache-Control"] = f"public, max-age={MAX_AGE_S}"
    response.headers["Access-Control-Allow-Origin"] = "*"
    response.headers["Cross-Origin-Resource-Policy"] = "cross-origin"
    response.headers["X-Content-Type-Options"] = "nosniff"
    return response.make_conditional(request)


@bp.get("/widget.js")
def script() -> BaseResponse:
    """The widget's script: any page may load it (``<script src>``, with ``crossorigin`` and SRI too)."""
    return _public(assets().script, "text/javascript")


@bp.get("/widget/<lang>.json")
def language(lang: str) -> BaseResponse:
    """One language of the widget (``ru``, ``de``...): its strings, and the regions national numbers can be read in.
    The widget asks for it when it speaks a language other than its built-in English, or shows the country list."""
    file = assets().languages.get(lang)
    if file is None:
        raise NotFound(f"the widget speaks {', '.join(LOCALES)}")
    return _public(file, "application/json")


@bp.get("/favicon.ico")
def favicon() -> BaseResponse:
    """The service's icon, which browsers ask for on every page they open here (the demo, /openapi.yaml...)."""
    response = Response(assets().favicon, mimetype="image/x-icon")
    response.headers["Cache-Control"] = f"public, max-age={FAVICON_MAX_AGE_S}"
    return response


def _demo_locale() -> str:
    """The demo's language: ``?lang=`` (its base language, else English), else the browser's best, else English."""
    asked = request.args.get("lang")
    if asked is not None:
        return locale(asked) or "en"
    for tag, _ in request.accept_languages:
        found = locale(tag)
        if found:
            return found
    return "en"


@bp.get("/demo")
def demo() -> BaseResponse:
    """A signup page with the widget, on the first site key; in sandbox mode, with the sandbox phone beside it.
    Everything on it, the widget included, speaks the language :func:`_demo_locale` picks."""
    config = settings()
    if not config.site_keys:
        raise NotFound(
            "the demo needs a site key: set VERIFY_SITE_KEYS (e.g. pk_demo=http://127.0.0.1:8000, the "
            "origin this page is served from); `verify dev` adds one in sandbox mode"
        )
    lang = _demo_locale()
    loaded = assets()
    words = loaded.demo_strings[lang]
    page = render_template_string(
        loaded.demo,
        lang=lang,
        dir="rtl" if lang in RTL else "ltr",
        t=words,
        intro=words["intro"].split("{verify}", 1),  # around the product's name, which the page sets as code
        languages=[(code, loaded.demo_strings[code]["language"]) for code in LOCALES],
        site_key=config.site_keys[0][0],
        # The channels a person may pick, among those this deployment serves; the first is preselected.
        channels=",".join(offered_channels(config)),
        sandbox=config.sandbox,
        country=config.default_country or "",
        script=url_for("widget.script"),
    )
    response = Response(page, mimetype="text/html")
    if "lang" not in request.args:
        response.vary.add("Accept-Language")
    return response
