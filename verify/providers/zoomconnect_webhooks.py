"""Zoom Connect's callbacks (docs/gateways/zoomconnect.md §6, §7): replies to our messages and delivery reports.

:func:`parse_callback` verifies a reply or delivery report (HMAC-SHA1 ``checksum``, ``nonce``, ``nonce-date``
freshness) and maps it to events; storing the nonce against replays is the caller's job. :func:`parse_webhook` is
the webhook pipeline's entry, declared with the gateway in ``verify/providers/zoomconnect.py`` (which imports this
module, never the other way round).
"""

from __future__ import annotations

import datetime
import hashlib
import hmac
import re
from collections.abc import Mapping
from typing import Literal, Protocol, TypedDict, cast
from urllib.parse import parse_qsl
from zoneinfo import ZoneInfo

from verify.errors import NotFound, WebhookRejected
from verify.providers.base import (
    DeliveryReport,
    Event,
    Inbound,
    SmsReceived,
    Webhook,
    WebhookRoute,
    e164,
    require_fresh,
)

NAME = "zoomconnect"  # the gateway's name, which its events carry
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


class CallbackSettings(Protocol):
    """What the callbacks read of the gateway's settings (``ZoomConnectSettings`` in
    ``verify/providers/zoomconnect.py``)."""

    @property
    def secrets(self) -> tuple[str, ...]:
        """The checksum secrets, newest first (``VERIFY_ZOOMCONNECT_SECRET``); any verifies."""

    @property
    def tz(self) -> str:
        """The IANA time zone of ``nonce-date`` (``VERIFY_ZOOMCONNECT_TZ``)."""


WEBHOOKS = (WebhookRoute("/zoomconnect/<kind>", ("POST",), "callback"),)


def parse_webhook(
    route: str, inbound: Inbound, args: Mapping[str, str], settings: CallbackSettings, now: float, max_age: int
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
    require_fresh("zoomconnect callback", signed_at, now, max_age, skew)
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
        provider=NAME,
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
        provider=NAME,
        message_id=message_id,
        status=DELIVERY_STATUSES.get(raw_status.strip().upper(), "sent"),
        raw_status=raw_status,
        verification_id=fields.get("dataField", "").strip(),
        raw=dict(params),
    )
