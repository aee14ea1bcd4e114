"""The Telegram Gateway's delivery reports (docs/gateways/telegram.md §6, §7).

Telegram POSTs a ``RequestStatus`` as JSON to the ``callback_url`` a send named, ``<public>/webhooks/telegram``,
signed with ``X-Request-Timestamp`` and ``X-Request-Signature`` (HMAC-SHA256 keyed with SHA256 of the API token).
:func:`parse_report` verifies the signature against every token of the list and the timestamp's age, then maps the
delivery status to a :class:`DeliveryReport`. :func:`parse_webhook` is the webhook pipeline's entry, declared with
the gateway in ``verify/providers/telegram.py`` (which imports this module, never the other way round).
"""

from __future__ import annotations

import hashlib
import hmac
import math
import re
from collections.abc import Mapping
from typing import Protocol, TypedDict

from verify.errors import WebhookRejected
from verify.providers.base import DeliveryReport, Inbound, Webhook, WebhookRoute, json_object, require_fresh, scalar

NAME = "telegram"  # the gateway's name, which its events carry
TIMESTAMP_HEADER = "X-Request-Timestamp"
SIGNATURE_HEADER = "X-Request-Signature"
SKEW = 60  # seconds a report's timestamp may be ahead of our clock
_TIMESTAMP = re.compile(r"[0-9]{1,12}")  # Unix seconds, as digits (docs/gateways/telegram.md §7)
_SIGNATURE = re.compile(r"[0-9a-f]{64}")  # lowercase hex of a SHA-256 HMAC (upper case is read too)

# DeliveryStatus.status (docs/gateways/telegram.md §6) to ours. "read" and "revoked" are Telegram's words, kept as
# statuses of their own: "read" is "delivered" and more, "revoked" the answer to our revoke. "expired" (neither
# delivered nor read within ``ttl``; the fee is refunded) is a failed delivery. Anything new is "sent" (not final).
DELIVERY_STATUSES = {
    "sent": "sent",
    "delivered": "delivered",
    "read": "read",
    "expired": "failed",
    "revoked": "revoked",
}


class DeliveryStatus(TypedDict, total=False):
    """``DeliveryStatus``: ``status`` (sent, delivered, read, expired, revoked) and ``updated_at`` (Unix seconds)."""

    status: str
    updated_at: int


class VerificationStatus(TypedDict, total=False):
    """``VerificationStatus``: what Telegram knows of the code the person entered (only ``checkVerificationStatus``
    with a code tells it anything, for codes we make)."""

    status: str  # code_valid | code_invalid | code_max_attempts_exceeded | expired
    updated_at: int
    code_entered: str


class RequestStatus(TypedDict, total=False):
    """``RequestStatus``: the result of a send and the body of a report. Read leniently: numbers may come as strings,
    and every field but ``request_id`` may be missing."""

    request_id: str
    phone_number: str
    request_cost: float
    is_refunded: bool
    remaining_balance: float
    delivery_status: DeliveryStatus
    verification_status: VerificationStatus
    payload: str


class CallbackSettings(Protocol):
    """What the reports read of the gateway's settings (``TelegramSettings`` in ``verify/providers/telegram.py``)."""

    @property
    def tokens(self) -> tuple[str, ...]:
        """The API tokens, newest first (``VERIFY_TELEGRAM_TOKEN``): a report signed with any of them verifies."""


WEBHOOKS = (WebhookRoute("/telegram", ("POST",), "report"),)  # Telegram wants HTTP 200; the body is ours


def parse_webhook(
    route: str, inbound: Inbound, args: Mapping[str, str], settings: CallbackSettings, now: float, max_age: int
) -> Webhook:
    """The webhook pipeline's entry (``verify/web/webhooks.py``): ``POST /webhooks/telegram``, a delivery report."""
    return parse_report(inbound, settings.tokens, now, max_age)


def signature(token: str, timestamp: str, body: bytes) -> str:
    """``X-Request-Signature`` for a report (docs/gateways/telegram.md §7): lowercase hex of HMAC-SHA256 keyed with
    the 32 raw bytes of SHA256(``token``), over ``<timestamp>`` + LF + the raw body."""
    key = hashlib.sha256(token.encode("utf-8")).digest()
    return hmac.new(key, timestamp.encode("ascii") + b"\n" + body, hashlib.sha256).hexdigest()


def parse_report(inbound: Inbound, tokens: tuple[str, ...], now: float, max_age: int, skew: int = SKEW) -> Webhook:
    """Verify a Telegram report and map it.

    :raises WebhookRejected: 403 when the timestamp or the signature is missing or malformed, when the signature
        matches none of ``tokens`` (each compared in constant time, all of them every time), or when the timestamp
        is more than ``max_age`` seconds before ``now`` or more than ``skew`` seconds after it. No reason tells
        anything about the expected signature. No ``tokens`` refuses every report.
    :returns: at most one :class:`DeliveryReport` (none when the verified body is not a ``RequestStatus`` with a
        ``request_id`` and a delivery status: answering 200 stops Telegram retrying it), and the nonce, which the
        pipeline refuses to see twice: the verified signature, unique to this timestamp and body, so the same bytes
        posted again are a replay, while a report Telegram signs afresh is not.
    """
    headers = {name.lower(): value for name, value in inbound.headers.items()}
    timestamp = headers.get(TIMESTAMP_HEADER.lower(), "").strip()
    given = headers.get(SIGNATURE_HEADER.lower(), "").strip().lower()
    if not given:
        raise WebhookRejected("telegram report without a signature")
    if not _TIMESTAMP.fullmatch(timestamp):
        raise WebhookRejected("telegram report without a readable timestamp")
    if not _SIGNATURE.fullmatch(given):
        raise WebhookRejected("telegram report signature is not 64 hex digits")
    # A list, not a short-circuiting generator: every token is tried, each in constant time.
    matches = [
        hmac.compare_digest(signature(token, timestamp, inbound.body).encode(), given.encode())
        for token in tokens
        if token
    ]
    if not any(matches):
        raise WebhookRejected("telegram report signature does not match")
    signed_at = int(timestamp)
    require_fresh("telegram report", signed_at, now, max_age, skew)
    report = _report(inbound.body)
    return Webhook([report] if report is not None else [], given)


def _report(body: bytes) -> DeliveryReport | None:
    """The :class:`DeliveryReport` of a ``RequestStatus`` body, or ``None``."""
    document = json_object(body)
    if document is None:
        return None
    delivery = document.get("delivery_status")
    request_id = scalar(document.get("request_id"))
    raw_status = scalar(delivery.get("status")) if isinstance(delivery, dict) else ""
    if not request_id or not raw_status:
        return None
    try:  # a number, or a number as a string (leniently); anything else is "not said"
        cost: float | None = float(scalar(document.get("request_cost"), amount=True))
    except ValueError:
        cost = None
    return DeliveryReport(
        provider=NAME,
        message_id=request_id,
        status=DELIVERY_STATUSES.get(raw_status.lower(), "sent"),
        raw_status=raw_status,
        verification_id=scalar(document.get("payload")),
        raw=document,
        cost=cost if cost is not None and math.isfinite(cost) and cost >= 0 else None,
        refunded=document.get("is_refunded") in (True, "true", "True", 1, "1"),
    )
