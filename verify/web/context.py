"""What every blueprint needs of a request: the app's parts, the JSON body and its fields, the bearer key."""

from __future__ import annotations

import hmac
from typing import Any

from flask import current_app, request

from verify import phone
from verify.captcha import Answer
from verify.config import Settings
from verify.errors import InvalidRequest, Unauthorized
from verify.metrics import Metrics
from verify.service import Service
from verify.web.views import loads

MAX_FIELD_LENGTH = 256


def service() -> Service:
    """The app's service (``app.extensions["verify"]``)."""
    svc: Service = current_app.extensions["verify"]
    return svc


def settings() -> Settings:
    """The app's settings."""
    return service().settings


def now() -> float:
    """The time by the app's clock (the tests move it)."""
    return service().clock()


def metrics() -> Metrics:
    """The app's metrics."""
    return service().metrics


# input


def json_body(*, optional: bool = False) -> dict[str, Any]:
    """The request body as a JSON object; :class:`InvalidRequest` naming ``body`` otherwise."""
    raw = request.get_data(cache=True)
    if not raw.strip():
        if optional:
            return {}
        raise InvalidRequest("body", "the body must be a JSON object")
    try:
        body = loads(raw)
    except (ValueError, RecursionError):
        raise InvalidRequest("body", "the body is not valid JSON (or nests too deeply)") from None
    if not isinstance(body, dict):
        raise InvalidRequest("body", "the body must be a JSON object")
    return body


def string_field(
    body: dict[str, Any], name: str, *, required: bool = False, choices: tuple[str, ...] = ()
) -> str | None:
    """``body[name]`` as a string, checked against ``choices``; absent or null gives ``None``."""
    value = body.get(name)
    if value is None:
        if required:
            raise InvalidRequest(name, f"{name} is required")
        return None
    if not isinstance(value, str):
        raise InvalidRequest(name, f"{name} must be a string")
    if not value.isascii():
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:  # a lone surrogate: valid JSON, but not text
            raise InvalidRequest(name, f"{name} is not valid Unicode text") from None
    if len(value) > MAX_FIELD_LENGTH:
        raise InvalidRequest(name, f"{name} must be at most {MAX_FIELD_LENGTH} characters")
    if choices and value not in choices:
        raise InvalidRequest(name, f"{name} must be one of: {', '.join(choices)}")
    return value


def phone_field(body: dict[str, Any], country_field: str | None = "country") -> str:
    """The body's ``phone`` as E.164, reading national formats in ``country`` or the default country."""
    raw = string_field(body, "phone", required=True)
    assert raw is not None  # noqa: S101 - required
    country = string_field(body, country_field) if country_field else None
    region = phone.region(country) if country else settings().default_country
    return phone.normalize(raw, region)


def captcha_field(body: dict[str, Any]) -> Answer | None:
    """The body's ``captcha``: ``{"id", "answer"}`` (builtin) or ``{"token"}`` (Turnstile, hCaptcha, reCAPTCHA)."""
    value = body.get("captcha")
    if value is None:
        return None
    if not isinstance(value, dict):
        raise InvalidRequest("captcha", 'captcha must be an object: {"id", "answer"} or {"token"}')
    try:
        fields = {name: string_field(value, name) or "" for name in ("id", "answer", "token")}
    except InvalidRequest as err:
        raise InvalidRequest("captcha", f"captcha.{err.detail}") from None
    return Answer(fields["id"], fields["answer"], fields["token"])


def require_bearer(accepted: tuple[str, ...], what: str) -> None:
    """Require ``Authorization: Bearer <one of accepted>``, compared in constant time with every one of them;
    :class:`Unauthorized` naming ``what`` to send otherwise."""
    scheme, _, key = request.headers.get("Authorization", "").partition(" ")
    given = key.strip().encode()
    ok = False
    for candidate in accepted:
        ok |= hmac.compare_digest(given, candidate.encode())
    if scheme.lower() != "bearer" or not ok:
        raise Unauthorized(f"send Authorization: Bearer <{what}>")
