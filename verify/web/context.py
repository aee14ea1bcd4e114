"""What every blueprint needs of a request: the app's parts, the JSON body and its fields, the bearer key."""

from __future__ import annotations

import hmac
import unicodedata
from typing import Any

from flask import current_app, g, request

from verify import phone
from verify.captcha import Answer
from verify.config import Settings
from verify.errors import InvalidRequest, Unauthorized
from verify.metrics import Metrics
from verify.service import Service
from verify.sms import AMOUNT_RE, CURRENCIES, MAX_PAYEE_LENGTH, Payment
from verify.tenancy import Tenancy
from verify.web.views import loads

MAX_FIELD_LENGTH = 256


def service() -> Service:
    """The service of this request's tenant (the one its key named, ``verify/web/api.py``), else the implicit
    tenant's (``app.extensions["verify"]``): the one webhooks and the public endpoints use for what every tenant
    shares."""
    svc: Service = g.get("service") or current_app.extensions["verify"]
    return svc


def tenancy() -> Tenancy:
    """Every tenant's service (``app.extensions["verify.tenancy"]``)."""
    tenants: Tenancy = current_app.extensions["verify.tenancy"]
    return tenants


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
    body: dict[str, Any], name: str, *, required: bool = False, choices: tuple[str, ...] = (), prefix: str = ""
) -> str | None:
    """``body[name]`` as a string, checked against ``choices``; absent or null gives ``None``. Errors name the field
    ``<prefix><name>`` (an object's member: ``context.amount``)."""
    value = body.get(name)
    field = prefix + name
    if value is None:
        if required:
            raise InvalidRequest(field, f"{field} is required")
        return None
    if not isinstance(value, str):
        raise InvalidRequest(field, f"{field} must be a string")
    if not value.isascii():
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:  # a lone surrogate: valid JSON, but not text
            raise InvalidRequest(field, f"{field} is not valid Unicode text") from None
    if len(value) > MAX_FIELD_LENGTH:
        raise InvalidRequest(field, f"{field} must be at most {MAX_FIELD_LENGTH} characters")
    if choices and value not in choices:
        raise InvalidRequest(field, f"{field} must be one of: {', '.join(choices)}")
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
    given = bearer(what).encode()
    ok = False
    for candidate in accepted:
        ok |= hmac.compare_digest(given, candidate.encode())
    if not ok:
        raise Unauthorized(f"send Authorization: Bearer <{what}>")


def bearer(what: str) -> str:
    """The key of ``Authorization: Bearer <key>``; :class:`Unauthorized` naming ``what`` to send without one."""
    scheme, _, key = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not key.strip():
        raise Unauthorized(f"send Authorization: Bearer <{what}>")
    return key.strip()


def payment_field(body: dict[str, Any]) -> Payment | None:
    """The body's ``context``, a payment (PSD2 dynamic linking): ``{"amount", "currency", "payee"}``, each required:
    the amount a decimal string, the currency an ISO 4217 code, the payee at most 64 characters without control or
    format characters (which could hide or reorder what the person reads). Absent or null gives ``None``."""
    value = body.get("context")
    if value is None:
        return None
    if not isinstance(value, dict):
        raise InvalidRequest("context", "context must be an object: {amount, currency, payee}")
    unknown = sorted(set(value) - {"amount", "currency", "payee"})
    if unknown:
        raise InvalidRequest(f"context.{unknown[0]}", f"context has only amount, currency and payee, not {unknown[0]}")
    amount = string_field(value, "amount", required=True, prefix="context.")
    currency = string_field(value, "currency", required=True, prefix="context.")
    payee = string_field(value, "payee", required=True, prefix="context.")
    assert amount is not None and currency is not None and payee is not None  # noqa: S101 - required
    if not AMOUNT_RE.fullmatch(amount):
        raise InvalidRequest("context.amount", "amount must be a decimal string such as 12.50 (up to 4 decimals)")
    if currency not in CURRENCIES:
        raise InvalidRequest("context.currency", "currency must be an ISO 4217 code such as EUR, in capitals")
    if not payee.strip() or len(payee) > MAX_PAYEE_LENGTH or any(_unprintable(ch) for ch in payee):
        raise InvalidRequest(
            "context.payee", f"payee must be 1 to {MAX_PAYEE_LENGTH} characters, none of them control characters"
        )
    return Payment(amount, currency, payee)


def _unprintable(ch: str) -> bool:
    """A control, format, surrogate, private or unassigned character, or a line or paragraph separator."""
    return unicodedata.category(ch) in ("Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp")
