"""Zoom Connect (zoomconnect.com): SMS through its REST API (wire format: docs/gateways/zoomconnect.md).

Requests and responses are JSON, authenticated by the ``email`` and ``token`` headers
(docs/gateways/zoomconnect.md §2). Our verification id travels in ``dataField``, which Zoom Connect echoes in
replies and delivery reports, so they map back to the verification; the ``messageId`` it returns is what the
service keeps. Zoom Connect has no call verification, so :meth:`Provider.start_call` keeps the base refusal.

Error policy: a 400 ``RestErrorDTO`` with code 2 is a number the gateway refuses (:class:`InvalidRecipient`);
any other refusal (other 400s, 401/403 credentials, 404, a 200 carrying an ``error``) is final for this request;
429 throttling is transient. A 200 we cannot read is transient: the gateway misbehaved, another one may not.

Callbacks (docs/gateways/zoomconnect.md §6, §7): :func:`parse_callback` verifies a reply or delivery report
(HMAC-SHA1 ``checksum``, ``nonce``, ``nonce-date`` freshness) and maps it to events; storing the nonce against
replays is the caller's job.
"""

from __future__ import annotations

import datetime
import hashlib
import hmac
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, TypedDict, cast
from urllib.parse import parse_qsl
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import requests

from verify import env
from verify.errors import ConfigError, NotFound, WebhookRejected
from verify.providers.base import (
    PAYLOAD_LIMIT,
    AppSettings,
    DeliveryReport,
    Event,
    Gateway,
    Http,
    Inbound,
    InvalidRecipient,
    Provider,
    ProviderError,
    Sent,
    Shared,
    SmsMessage,
    SmsReceived,
    Webhook,
    WebhookRoute,
    e164,
    integer,
    json_of,
    scalar,
)

SEND_PATH = "api/rest/v1/sms/send"
BALANCE_PATH = "api/rest/v1/account/balance"
INVALID_NUMBER = 2  # RestErrorDTO code "Invalid mobile number"; 3 is "Message cannot be empty"
STATUS_REASONS = {
    400: "request refused",
    401: "credentials refused",
    403: "forbidden",
    404: "unknown resource (check the URL)",
}

# Callbacks (docs/gateways/zoomconnect.md §6, §7).
FORM = "application/x-www-form-urlencoded"
MAX_CALLBACK_FIELDS = 100  # a callback has about ten; more is not Zoom Connect
CONDITIONAL = ("campaign", "dataField")  # "included only when not null": how a null arrives is unknown
# yyyyMMddHHmmss; the vendor text also shows 16 digits (2014051610050102), so up to 3 more digits are ignored.
NONCE_DATE = re.compile(r"(\d{14})\d{0,3}")
DELIVERY_STATUSES = {
    "DELIVERED": "delivered",
    "FAILED": "failed",
    "FAILED_REFUNDED": "failed",
    "FAILED_OPTOUT": "failed",
}  # SENT, SCHEDULED, UNKNOWN and anything new: "sent"


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


# The parameters of the two callbacks (docs/gateways/zoomconnect.md §6) as they arrive, all strings; any other
# parameter (e.g. ``to``) is kept and signed too. The functional form because ``from`` and ``nonce-date`` are not
# identifiers.
ReplyCallback = TypedDict(
    "ReplyCallback",
    {
        "from": str,
        "to": str,
        "repliedToMessageId": str,
        "messageId": str,
        "message": str,
        "date": str,  # yyyyMMddHHmm
        "campaign": str,
        "dataField": str,
        "nonce": str,
        "nonce-date": str,
        "checksum": str,
    },
    total=False,
)
DeliveryCallback = TypedDict(
    "DeliveryCallback",
    {
        "messageId": str,
        "status": str,
        "campaign": str,
        "dataField": str,  # unconfirmed for delivery reports
        "nonce": str,
        "nonce-date": str,
        "checksum": str,
    },
    total=False,
)


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

    name = "zoomconnect"

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


WEBHOOKS = (WebhookRoute("/zoomconnect/<kind>", ("POST",), "callback"),)


def parse_webhook(
    route: str, inbound: Inbound, args: Mapping[str, str], settings: ZoomConnectSettings, now: float, max_age: int
) -> Webhook:
    """The webhook pipeline's entry (``verify/web/webhooks.py``): ``/zoomconnect/reply`` (message forward URL) or
    ``/zoomconnect/delivery`` (delivery report URL), any other kind 404; refused (403) while no
    ``VERIFY_ZOOMCONNECT_SECRET`` is set, since no checksum can then be verified. The nonce it returns is the
    pipeline's to refuse twice."""
    kind = args.get("kind", "")
    if kind not in ("reply", "delivery"):
        raise NotFound(f"no Zoom Connect callback named {kind!r}")
    if not settings.secrets:
        raise WebhookRejected("VERIFY_ZOOMCONNECT_SECRET is not set, so no Zoom Connect callback can be verified")
    return parse_callback(
        inbound, "reply" if kind == "reply" else "delivery", settings.secrets, now, ZoneInfo(settings.tz), max_age
    )


def parse_callback(
    inbound: Inbound,
    kind: Literal["reply", "delivery"],
    secrets: tuple[str, ...],
    now: float,
    tz: datetime.tzinfo,
    max_age: int,
    skew: int = 60,
) -> Webhook:
    """Verify a Zoom Connect callback and map it: a ``reply`` (message forward URL) or a ``delivery`` report.

    Parameters are read from the query string and from a form body alike (which one Zoom Connect uses is
    unconfirmed), UTF-8 and percent-decoded with form semantics (``+`` is a space, ``%2B`` a plus). A parameter
    sent twice must carry the same value both times.

    :raises WebhookRejected: 403 when the ``checksum`` is missing or wrong (HMAC-SHA1 keyed by any of ``secrets``,
        the current one and those being rotated out, over every other parameter, docs/gateways/zoomconnect.md §7),
        when ``nonce`` is missing, or when ``nonce-date`` (``yyyyMMddHHmmss`` in ``tz``) is missing, unreadable,
        more than ``max_age`` seconds before ``now`` or more than ``skew`` seconds after it; 404 for an unknown
        ``kind``. Nothing about the expected checksum is ever told.
    :raises ValueError: ``secrets`` is empty or holds an empty one (a configuration error: anyone can compute that
        HMAC).
    :returns: one :class:`SmsReceived` (``received_at`` is the signed ``nonce-date``) or one
        :class:`DeliveryReport`, and the ``nonce``, which the caller must refuse to see twice within ``max_age``.
        A verified callback lacking what its kind needs (``from``/``message``, ``messageId``/``status``) gives
        no events: answering 200 stops the gateway retrying something that can never succeed.
    """
    if kind not in ("reply", "delivery"):
        raise NotFound(f"no Zoom Connect callback named {kind!r}")
    if not secrets or not all(secrets):
        raise ValueError("the Zoom Connect callback secret is empty")
    params = _callback_params(inbound)
    _check_checksum(params, secrets)
    nonce = params.get("nonce", "")
    if not nonce:
        raise WebhookRejected("zoomconnect callback without a nonce")
    signed_at = _nonce_time(params.get("nonce-date", ""), tz)
    if signed_at is None:
        raise WebhookRejected("zoomconnect callback without a readable nonce-date")
    if now - signed_at > max_age:
        raise WebhookRejected(f"zoomconnect callback is stale ({now - signed_at:.0f} s old)")
    if signed_at - now > skew:
        raise WebhookRejected(f"zoomconnect callback is from the future ({signed_at - now:.0f} s ahead)")
    event = _reply(params, signed_at) if kind == "reply" else _delivery(params)
    events: list[Event] = [event] if event is not None else []
    return Webhook(events, nonce)


def _callback_params(inbound: Inbound) -> dict[str, str]:
    pairs = _form_pairs(inbound.query_string)
    mimetype = inbound.content_type.split(";")[0].strip().lower()
    if inbound.body and mimetype in (FORM, ""):  # a body without a type is read as a form too (lenient)
        pairs += _form_pairs(inbound.body)
    params: dict[str, str] = {}
    for key, value in pairs:
        # Which of two different values was signed is unknowable, so neither is trusted.
        if params.setdefault(key, value) != value:
            raise WebhookRejected(f"zoomconnect callback carries {key!r} twice with different values")
    return params


def _form_pairs(raw: bytes) -> list[tuple[str, str]]:
    try:
        return parse_qsl(
            raw.decode("utf-8"),
            keep_blank_values=True,
            encoding="utf-8",
            errors="strict",
            max_num_fields=MAX_CALLBACK_FIELDS,
        )
    except UnicodeDecodeError as err:  # the values could not be what was signed
        raise WebhookRejected("zoomconnect callback parameters are not UTF-8") from err
    except ValueError as err:
        raise WebhookRejected(f"zoomconnect callback has more than {MAX_CALLBACK_FIELDS} parameters") from err


def _check_checksum(params: dict[str, str], secrets: tuple[str, ...]) -> None:
    given = params.get("checksum", "").strip().lower().encode()
    if not given:
        raise WebhookRejected("zoomconnect callback without a checksum")
    signed = {key: value for key, value in params.items() if key != "checksum"}
    variants = [signed]
    # If a null campaign/dataField arrives as an empty parameter, the sender may have left it out of the checksum.
    # Only an empty, optional parameter is ever dropped, so nothing that was not signed changes any event.
    unsigned = {key: value for key, value in signed.items() if value or key not in CONDITIONAL}
    if unsigned != signed:
        variants.append(unsigned)
    # Every candidate is compared (a list, not a short-circuiting generator), in constant time each.
    matches = [
        hmac.compare_digest(_checksum(secret.encode(), variant).encode(), given)
        for secret in secrets
        for variant in variants
    ]
    if not any(matches):
        raise WebhookRejected("zoomconnect callback checksum does not match")


def _checksum(key: bytes, params: dict[str, str]) -> str:
    """``key=value`` sorted by key (code point order is UTF-8 byte order), joined by ``&``, raw values
    (docs/gateways/zoomconnect.md §7)."""
    message = "&".join(f"{name}={value}" for name, value in sorted(params.items()))
    return hmac.new(key, message.encode(), hashlib.sha1).hexdigest()


def _nonce_time(raw: str, tz: datetime.tzinfo) -> float | None:
    match = NONCE_DATE.fullmatch(raw.strip())
    if match is None:
        return None
    try:
        moment = datetime.datetime.strptime(match.group(1), "%Y%m%d%H%M%S")  # naive: the zone is tz
    except ValueError:  # e.g. month 13
        return None
    return moment.replace(tzinfo=tz).timestamp()


def _reply(params: dict[str, str], signed_at: float) -> SmsReceived | None:
    fields = cast(ReplyCallback, params)
    phone, text = e164(fields.get("from", "")), fields.get("message")
    if not phone or text is None:
        return None
    # ``date`` has minute precision and may be older than the verification it answers; the signed nonce-date
    # is to the second and always after the reply arrived.
    return SmsReceived(
        phone=phone,
        text=text,
        received_at=signed_at,
        provider=ZoomConnectProvider.name,
        verification_id=fields.get("dataField", "").strip(),
        reply_to=fields.get("repliedToMessageId", "").strip(),
        raw=dict(params),
    )


def _delivery(params: dict[str, str]) -> DeliveryReport | None:
    fields = cast(DeliveryCallback, params)
    message_id, raw_status = fields.get("messageId", "").strip(), fields.get("status", "")
    if not message_id or not raw_status.strip():
        return None
    return DeliveryReport(
        provider=ZoomConnectProvider.name,
        message_id=message_id,
        status=DELIVERY_STATUSES.get(raw_status.strip().upper(), "sent"),
        raw_status=raw_status,
        verification_id=fields.get("dataField", "").strip(),
        raw=dict(params),
    )


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


GATEWAY = Gateway("zoomconnect", ZoomConnectSettings, _make, webhooks=WEBHOOKS, parse=parse_webhook, warnings=_warnings)
