"""The browser side: ``GET /widget.js``, the embeddable verification step, and ``GET /demo``, a signup page using it.

The script is package data (``verify/static/widget.js``), read once per app when the blueprint is registered, and
served with a strong ETag: a page's browser revalidates it and gets 304 while the release is the same.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from importlib import resources

from flask import Blueprint, Response, current_app, render_template_string, request, url_for
from flask.blueprints import BlueprintSetupState
from werkzeug.wrappers import Response as BaseResponse

from verify.errors import NotFound
from verify.web.context import settings

bp = Blueprint("widget", __name__)

# The script's URL carries no version, so a cache may keep it only briefly before it revalidates (a 304 while the
# ETag is the same): a new release reaches every page within this many seconds.
MAX_AGE_S = 300
DEMO_LOCALES = ("en", "ru")


@dataclass(frozen=True)
class Assets:
    """The widget's script with its ETag, and the demo page's template."""

    script: bytes
    etag: str
    demo: str

    @classmethod
    def load(cls) -> Assets:
        """Read the files shipped in ``verify/static``."""
        static = resources.files("verify").joinpath("static")
        script = static.joinpath("widget.js").read_bytes()
        return cls(script, hashlib.sha256(script).hexdigest()[:32], static.joinpath("demo.html").read_text("utf-8"))


@bp.record_once
def _load(state: BlueprintSetupState) -> None:
    state.app.extensions["verify.widget"] = Assets.load()


def assets() -> Assets:
    """The app's :class:`Assets`."""
    loaded: Assets = current_app.extensions["verify.widget"]
    return loaded


@bp.get("/widget.js")
def script() -> BaseResponse:
    """The widget's script: any page may load it (``<script src>``, with ``crossorigin`` and SRI too)."""
    loaded = assets()
    response = Response(loaded.script, mimetype="text/javascript")
    response.set_etag(loaded.etag)
    response.headers["Cache-Control"] = f"public, max-age={MAX_AGE_S}"
    # Public code: readable by any origin, so a page can pin it with integrity="sha384-..." crossorigin="anonymous",
    # and embeddable by pages that send Cross-Origin-Embedder-Policy.
    response.headers["Access-Control-Allow-Origin"] = "*"
    response.headers["Cross-Origin-Resource-Policy"] = "cross-origin"
    response.headers["X-Content-Type-Options"] = "nosniff"
    return response.make_conditional(request)


@bp.get("/demo")
def demo() -> str:
    """A signup page with the widget, on the first site key; in sandbox mode, with the sandbox phone beside it."""
    config = settings()
    if not config.site_keys:
        raise NotFound(
            "the demo needs a site key: set VERIFY_SITE_KEYS (e.g. pk_demo=http://127.0.0.1:8000, the "
            "origin this page is served from); `verify dev` adds one in sandbox mode"
        )
    locale = request.args.get("lang")
    return render_template_string(
        assets().demo,
        site_key=config.site_keys[0][0],
        sandbox=config.sandbox,
        country=config.default_country or "",
        locale=locale if locale in DEMO_LOCALES else "",
        script=url_for("widget.script"),
    )
