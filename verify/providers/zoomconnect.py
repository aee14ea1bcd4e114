"""Zoom Connect (zoomconnect.com): SMS through its REST API (wire format: docs/gateways/zoomconnect.md).

Requests and responses are JSON, authenticated by the ``email`` and ``token`` headers
(docs/gateways/zoomconnect.md §2). Our verification id travels in ``dataField``, which Zoom Connect echoes in
replies and delivery reports, so they map back to the verification; the ``messageId`` it returns is what the
service keeps. Zoom Connect has no call verification, so :meth:`Provider.start_call` keeps the base refusal.

Error policy: a 400 ``RestErrorDTO`` with code 2 is a number the gateway refuses (:class:`InvalidRecipient`);
any other refusal (other 400s, 401/403 credentials, 404, a 200 carrying an ``error``) is final for this request;
429 throttling is transient. A 200 we cannot read is transient: the gateway misbehaved, another one may not.

Callbacks (docs/gateways/zoomconnect.md §6, §7), replies and delivery reports, are verified and parsed in
``verify/providers/zoomconnect_webhooks.py``; the declaration at the end of this module names its routes and
parser.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, TypedDict, cast
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import requests

from verify import env
from verify.errors import ConfigError
from verify.providers.base import (
    PAYLOAD_LIMIT,
    AppSettings,
    Gateway,
    Http,
    InvalidRecipient,
    Provider,
    ProviderError,
    Sent,
    Shared,
    SmsMessage,
    integer,
    json_of,
    scalar,
)
from verify.providers.zoomconnect_webhooks import NAME, WEBHOOKS, parse_webhook

SEND_PATH = "api/rest/v1/sms/send"
BALANCE_PATH = "api/rest/v1/account/balance"
INVALID_NUMBER = 2  # RestErrorDTO code "Invalid mobile number"; 3 is "Message cannot be empty"
STATUS_REASONS = {
    400: "request refused",
    401: "credentials refused",
    403: "forbidden",
    404: "unknown resource (check the URL)",
}


class SendRequest(TypedDict):
    """``WebServiceSendSmsRequest`` as we send it (``campaign`` and ``dateToSend`` are optional, unused)."""

    recipientNumber: str  # E.164
    message: str
    dataField: str  # our verification id, echoed in webhooks


class SendResponse(TypedDict, total=False):
    """``WebServiceSendSmsResponse``. Unconfirmed: ``error`` null or absent on success; ``messageId`` type."""

    messageId: str | int | None
    error: str | None


class RestError(TypedDict, total=False):
    """``RestErrorDTO``, the body of a 400. Only ``code`` (int or string) and ``message`` are relied on."""

    code: int | str
    message: str
    developerMessage: str | None
    moreInfoUrl: str | None
    status: str


class BalanceResponse(TypedDict, total=False):
    """The body of ``GET account/balance``."""

    creditBalance: float | int | str
    links: list[Any]


def _zone(env_: env.Env, name: str, default: Any, seen: Mapping[str, Any]) -> Any:
    zone = env.raw(env_, name) or default
    try:
        ZoneInfo(zone)
    except (ZoneInfoNotFoundError, ValueError):
        raise ConfigError(name, f"must be an IANA time zone such as UTC or Africa/Johannesburg, not {zone!r}") from None
    return zone


@dataclass(frozen=True)
class ZoomConnectSettings:
    """Zoom Connect: account e-mail and REST API token; the webhook checksum secrets (any verifies) and time zone."""

    url: str = field(
        default="https://www.zoomconnect.com/app/", metadata=env.var("VERIFY_ZOOMCONNECT_URL", env.url(base=True))
    )
    email: str = field(
        default="", metadata=env.var("VERIFY_ZOOMCONNECT_EMAIL", env.required("zoomconnect is a configured provider"))
    )
    token: str = field(
        default="",
        metadata=env.var("VERIFY_ZOOMCONNECT_TOKEN", env.required("zoomconnect is a configured provider"), secret=True),
    )
    secrets: tuple[str, ...] = field(
        default=(), metadata=env.var("VERIFY_ZOOMCONNECT_SECRET", env.secrets(), secret=True)
    )
    tz: str = field(default="UTC", metadata=env.var("VERIFY_ZOOMCONNECT_TZ", _zone))


class ZoomConnectProvider(Provider):
    """Sends SMS through Zoom Connect's REST API and reads the account's credit balance."""

    name = NAME

    def __init__(self, settings: ZoomConnectSettings, http: Http) -> None:
        self._settings = settings
        self._http = http

    def send_sms(self, message: SmsMessage) -> Sent:
        """``POST api/rest/v1/sms/send``; the gateway's ``messageId`` becomes :attr:`Sent.message_id`."""
        body: SendRequest = {
            "recipientNumber": message.to,
            "message": message.text,
            "dataField": message.verification_id,
        }
        reply: SendResponse = self._call("POST", SEND_PATH, body)
        if reply.get("error"):
            # The gateway understood the request and declined it; sending it again would not change that.
            raise ProviderError(self.name, f"not sent: {reply.get('error')}", transient=False, payload=reply)
        message_id = scalar(reply.get("messageId"))
        if not message_id:
            raise ProviderError(
                self.name, "HTTP 200 without a messageId", transient=True, payload=reply, kind="malformed"
            )
        return Sent(self.name, message_id)

    def balance(self) -> str:
        """``creditBalance`` of ``GET api/rest/v1/account/balance``, in credits, as the gateway states it."""
        reply: BalanceResponse = self._call("GET", BALANCE_PATH)
        credits = scalar(reply.get("creditBalance"), amount=True)
        if not credits:
            raise ProviderError(
                self.name, "HTTP 200 without a creditBalance", transient=True, payload=reply, kind="malformed"
            )
        return credits

    def _call(self, method: str, path: str, body: SendRequest | None = None) -> Any:
        """One authenticated request: the JSON object of a 2xx answer, or the mapped :class:`ProviderError`."""
        # ``json=`` adds ``Content-Type: application/json`` when there is a body.
        headers = {"email": self._settings.email, "token": self._settings.token, "Accept": "application/json"}
        response = self._http.request(self.name, method, self._settings.url + path, headers=headers, json=body)
        if not 200 <= response.status_code < 300:
            raise self._refusal(response)
        reply = json_of(self.name, response)
        if not isinstance(reply, dict):
            raise ProviderError(
                self.name,
                f"HTTP {response.status_code} with JSON that is not an object",
                transient=True,
                payload=reply,
                kind="malformed",
            )
        return reply

    def _refusal(self, response: requests.Response) -> ProviderError:
        """The error for a non-2xx answer (5xx never gets here: :class:`Http` raised it already)."""
        status = response.status_code
        try:
            payload: Any = response.json()
        except ValueError:  # 401/403/404/429 bodies are undocumented; keep whatever came
            payload = response.text[:PAYLOAD_LIMIT]
        if status == 429:
            return ProviderError(self.name, "HTTP 429 (throttled)", transient=True, payload=payload)
        if status == 400 and isinstance(payload, dict):
            error = cast(RestError, payload)  # a JSON object; its fields are read leniently
            code, text = integer(error.get("code")), scalar(error.get("message"))
            detail = f"HTTP 400 code {code if code is not None else '?'}: {text or 'no message'}"
            if code == INVALID_NUMBER:
                return InvalidRecipient(self.name, detail, payload=payload)
            return ProviderError(self.name, detail, transient=False, payload=payload)
        reason = STATUS_REASONS.get(status, "unexpected status")
        return ProviderError(self.name, f"HTTP {status} ({reason})", transient=False, payload=payload)


# ---- the declaration (verify/gateways.py lists it) ----


def _warnings(settings: ZoomConnectSettings, app: AppSettings) -> list[str]:
    if settings.secrets:
        return []
    return [
        f"{env.name_of(ZoomConnectSettings, 'secrets')} is unset: Zoom Connect replies and delivery reports are "
        "refused (403)"
    ]


def _make(settings: ZoomConnectSettings, shared: Shared) -> ZoomConnectProvider:
    return ZoomConnectProvider(settings, shared.http)


GATEWAY = Gateway(NAME, ZoomConnectSettings, _make, webhooks=WEBHOOKS, parse=parse_webhook, warnings=_warnings)
