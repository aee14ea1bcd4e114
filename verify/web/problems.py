"""The one renderer: every error becomes an ``application/problem+json`` response (RFC 9457) here.

Domain errors (``verify/errors.py``) name their problem as class data and carry their context; a Redis error the
store did not turn into :class:`StoreUnavailable` is an outage too; werkzeug's HTTP errors keep their status; and
anything else is a logged 500 that says nothing of its cause.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import redis
from flask import Flask
from werkzeug.exceptions import HTTPException
from werkzeug.wrappers import Response

from verify.errors import DeliveryFailed, ReplicasUnconfirmed, StoreUnavailable, Unauthorized, VerifyError
from verify.web.views import dumps

log = logging.getLogger(__name__)

PROBLEM_JSON = "application/problem+json"
TYPE_BASE = "/problems/"
MAY_HAVE_BEEN_APPLIED = (
    "The change may have been applied: read the verification before trying again, or retry a start with the same "
    "Idempotency-Key"
)


def problem(
    status: int,
    slug: str,
    title: str,
    detail: str,
    extra: dict[str, Any] | None = None,
    headers: dict[str, str] | None = None,
) -> Response:
    """Render one ``application/problem+json`` response."""
    body = {"type": TYPE_BASE + slug, "title": title, "status": status, "detail": detail, **(extra or {})}
    response = Response(dumps(body), status=status, mimetype=PROBLEM_JSON)
    for name, value in (headers or {}).items():
        response.headers[name] = value
    return response


def render(err: VerifyError, *, write: bool = False) -> Response:
    """The response for a domain error: its problem and context, with ``Retry-After`` where it has one. A store
    outage met by a ``write`` (a request that changes state) says that the change may have been applied."""
    headers = {}
    extra = err.context()
    if err.retry_after is not None:
        headers["Retry-After"] = str(err.retry_after)
        extra["retry_after"] = err.retry_after
    if isinstance(err, Unauthorized):
        headers["WWW-Authenticate"] = 'Bearer realm="verify"'
    if isinstance(err, StoreUnavailable | DeliveryFailed):
        log.error("%s: %s", err.slug, err.detail)
    detail = err.detail
    # A timeout cannot tell whether Redis applied a write (ReplicasUnconfirmed says so itself).
    if isinstance(err, StoreUnavailable) and write and not isinstance(err, ReplicasUnconfirmed):
        detail += f". {MAY_HAVE_BEEN_APPLIED}"
    return problem(err.status, err.slug, err.title, detail, extra, headers)


def _render_store_error(err: Exception, *, write: bool = False) -> Response:
    return render(StoreUnavailable(f"Redis failed: {type(err).__name__}"), write=write)


def _render_http_exception(err: HTTPException) -> Response:
    status = err.code or 500
    slug = (err.name or "error").lower().replace(" ", "-").replace("'", "")
    headers = {k: v for k, v in err.get_headers() if k.lower() in ("allow", "retry-after")}
    return problem(status, slug, err.name or "Error", err.description or err.name or "Error", headers=headers)


def _render_unexpected(err: Exception) -> Response:
    log.exception("unhandled error", exc_info=err)
    return problem(500, VerifyError.slug, VerifyError.title, "The server failed; the error was logged.")


def register(app: Flask, writing: Callable[[], bool]) -> None:
    """Install the renderer for domain errors, Redis errors, werkzeug's HTTP errors, and anything unexpected;
    ``writing`` tells whether the request being answered changes state."""
    app.register_error_handler(VerifyError, lambda err: render(err, write=writing()))
    # A Redis error the store did not turn into StoreUnavailable is an outage too, never a 500.
    app.register_error_handler(redis.RedisError, lambda err: _render_store_error(err, write=writing()))
    app.register_error_handler(HTTPException, _render_http_exception)
    app.register_error_handler(Exception, _render_unexpected)
