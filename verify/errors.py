"""One exception tree, and the one renderer that turns errors into ``application/problem+json``.

Domain errors carry their HTTP status, problem type and extra fields as class data, so the mapping to HTTP
lives here and nowhere else. :class:`ConfigError` is deliberately *not* a :class:`VerifyError`: a broken
configuration must stop the start, and no handler may turn it into a response.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, ClassVar

import redis
from werkzeug.exceptions import HTTPException
from werkzeug.wrappers import Response

if TYPE_CHECKING:
    from flask import Flask

log = logging.getLogger(__name__)

PROBLEM_JSON = "application/problem+json"
TYPE_BASE = "/problems/"


class ConfigError(Exception):
    """A setting is missing or wrong. The message names the environment variable to fix."""

    def __init__(self, variable: str, message: str) -> None:
        super().__init__(f"{variable} {message}")
        self.variable = variable


class VerifyError(Exception):
    """Base of every error a client can see. Subclasses set ``status``, ``slug`` and ``title``."""

    status: ClassVar[int] = 500
    slug: ClassVar[str] = "internal-error"
    title: ClassVar[str] = "Internal error"

    def __init__(self, detail: str | None = None, *, retry_after: int | None = None, **extra: Any) -> None:
        super().__init__(detail or self.title)
        self.detail = detail or self.title
        self.retry_after = retry_after
        self.extra = extra


class InvalidRequest(VerifyError):
    status, slug, title = 400, "invalid-request", "Invalid request"

    def __init__(self, field: str, detail: str) -> None:
        super().__init__(detail, field=field)


class InvalidPhone(VerifyError):
    status, slug, title = 400, "invalid-phone", "Invalid phone number"

    def __init__(self, detail: str, field: str = "phone") -> None:
        super().__init__(detail, field=field)


class InvalidToken(VerifyError):
    status, slug, title = 400, "invalid-token", "Invalid token"


class Unauthorized(VerifyError):
    status, slug, title = 401, "unauthorized", "Missing or wrong API key"


class WebhookRejected(VerifyError):
    status, slug, title = 403, "webhook-rejected", "Webhook signature, age or nonce rejected"


class NotFound(VerifyError):
    status, slug, title = 404, "not-found", "Not found"


class Forbidden(VerifyError):
    status, slug, title = 403, "forbidden", "Not allowed with this key or from this origin"


class NotPending(VerifyError):
    status, slug, title = 409, "not-pending", "Verification is not pending"


class WrongChannel(VerifyError):
    status, slug, title = 409, "wrong-channel", "Verification is not confirmed by a code"


class StartInProgress(VerifyError):
    status, slug, title = 409, "start-in-progress", "A start for this phone is still being sent"


class IdempotencyInProgress(VerifyError):
    status, slug, title = 409, "idempotency-in-progress", "A request with this Idempotency-Key is in progress"


class TokenExpired(VerifyError):
    status, slug, title = 410, "token-expired", "Token expired"


class InvalidCode(VerifyError):
    status, slug, title = 422, "invalid-code", "Wrong code"


class IdempotencyMismatch(VerifyError):
    status, slug, title = 422, "idempotency-mismatch", "Idempotency-Key reused with a different request"


class MaxAttempts(VerifyError):
    status, slug, title = 429, "max-attempts", "Too many wrong codes"


class ResendCooldown(VerifyError):
    status, slug, title = 429, "resend-cooldown", "Too early to send another code"


class MaxSends(VerifyError):
    status, slug, title = 429, "max-sends", "No sends left for this verification"


class CaptchaRequired(VerifyError):
    status, slug, title = 428, "captcha-required", "Captcha required"


class RateLimited(VerifyError):
    status, slug, title = 429, "rate-limited", "Too many requests"

    def __init__(self, limit: str, value: str, retry_after: int) -> None:
        super().__init__(f"the {limit} limit ({value}) is used up; retry later", retry_after=retry_after, limit=limit)


class PhoneNotAllowed(VerifyError):
    status, slug, title = 400, "phone-not-allowed", "This phone number is not accepted"

    def __init__(self, detail: str) -> None:
        super().__init__(detail, field="phone")


class StoreUnavailable(VerifyError):
    status, slug, title = 503, "store-unavailable", "Storage is unavailable"


class ReplicasUnconfirmed(StoreUnavailable):
    """The Redis master ran a write, but fewer replicas than required confirmed it in time (``WAIT``): the change may
    have been applied, and a failover now could lose it. The client retries, and its retry meets either the change
    or the state before it."""

    def __init__(self, required: int, confirmed: int) -> None:
        super().__init__(
            f"Redis could not copy the change to {required} replica(s) in time ({confirmed} confirmed it): "
            "it may have been applied; retry"
        )
        self.required = required
        self.confirmed = confirmed


class DeliveryFailed(VerifyError):
    status, slug, title = 503, "delivery-failed", "No gateway could deliver the message"


def problem(
    status: int,
    slug: str,
    title: str,
    detail: str,
    extra: dict[str, Any] | None = None,
    headers: dict[str, str] | None = None,
) -> Response:
    """Render one ``application/problem+json`` response (RFC 9457)."""
    body = {"type": TYPE_BASE + slug, "title": title, "status": status, "detail": detail, **(extra or {})}
    response = Response(json.dumps(body), status=status, mimetype=PROBLEM_JSON)
    for name, value in (headers or {}).items():
        response.headers[name] = value
    return response


def render(err: VerifyError, *, write: bool = False) -> Response:
    """The response for a domain error: its problem, with ``Retry-After`` where it has one. A store outage met by
    a ``write`` (a request that changes state) says that the change may have been applied."""
    headers = {}
    extra = dict(err.extra)
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


MAY_HAVE_BEEN_APPLIED = (
    "The change may have been applied: read the verification before trying again, or retry a start with the same "
    "Idempotency-Key"
)


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
    """Install the renderer for domain errors, werkzeug's HTTP errors, and anything unexpected; ``writing`` tells
    whether the request being answered changes state (the web layer's to know)."""
    app.register_error_handler(VerifyError, lambda err: render(err, write=writing()))
    # A Redis error the store did not turn into StoreUnavailable is an outage too, never a 500.
    app.register_error_handler(redis.RedisError, lambda err: _render_store_error(err, write=writing()))
    app.register_error_handler(HTTPException, _render_http_exception)
    app.register_error_handler(Exception, _render_unexpected)
