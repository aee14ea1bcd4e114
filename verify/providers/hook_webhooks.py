"""The hook gateway's signature and its delivery reports (docs/gateways/hook.md §2, §4).

Both ways are signed like our events (``verify/events.py``): ``Verify-Signature: t=<unix>,v1=<hex>``, the lowercase
hex HMAC-SHA256 of ``<t>.<raw body>`` keyed with a secret of ``VERIFY_HOOK_SECRET``. The gateway signs what it POSTs
with the first secret (:func:`signature`); the customer's delivery reports, POSTed as JSON to
``<public>/webhooks/hook``, are checked by :func:`parse_report` against every secret of the list, then for age, and
mapped to a :class:`DeliveryReport`. :func:`parse_webhook` is the webhook pipeline's entry, declared with the gateway
in ``verify/providers/hook.py`` (which imports this module, never the other way round).

The signing lives here, not in ``verify/events.py``: a provider module imports nothing above ``verify/providers``,
and the tests hold the two to the same bytes.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Mapping
from typing import Any, Protocol, TypedDict, cast

from verify.errors import WebhookRejected
from verify.providers.base import DeliveryReport, Inbound, Webhook, WebhookRoute, json_object, require_fresh, scalar

NAME = "hook"  # the gateway's name, which its events carry
SIGNATURE_HEADER = "Verify-Signature"
SKEW = 60  # seconds a report's t may be ahead of our clock
STATUS_LIMIT = 64  # characters of a reported status kept
MAX_SIGNATURES = 8  # v1 entries read from one header (a sender rotating its key may send two)
_TIMESTAMP = re.compile(r"[0-9]{1,12}")  # Unix seconds, as digits
_MAC = re.compile(r"[0-9a-f]{64}")  # lowercase hex of a SHA-256 HMAC (upper case is read too)

# A report's status (any case) to ours (docs/gateways/hook.md §4): the words of the common SMS APIs. Anything else,
# "sent", "queued" and "accepted" among them, is "sent": not final.
STATUSES = {
    "delivered": "delivered",
    "read": "read",
    **dict.fromkeys(("failed", "undelivered", "expired", "rejected", "canceled", "cancelled"), "failed"),
}


class Report(TypedDict, total=False):
    """A delivery report's body: our ``id`` and/or the ``message_id`` the receiver answered, a ``status``, and an
    optional ``timestamp`` (kept, not read). Read leniently: ids may be numbers, other members are ignored."""

    id: str
    message_id: str
    status: str
    timestamp: Any


class CallbackSettings(Protocol):
    """What the reports read of the gateway's settings (``HookSettings`` in ``verify/providers/hook.py``)."""

    @property
    def secrets(self) -> tuple[str, ...]:
        """The signing secrets, newest first (``VERIFY_HOOK_SECRET``): a report signed with any of them verifies."""


WEBHOOKS = (WebhookRoute("/hook", ("POST",), "report"),)  # any 2xx will do for the customer; the body is ours


def parse_webhook(
    route: str, inbound: Inbound, args: Mapping[str, str], settings: CallbackSettings, now: float, max_age: int
) -> Webhook:
    """The webhook pipeline's entry (``verify/web/webhooks.py``): ``POST /webhooks/hook``, a delivery report."""
    return parse_report(inbound, settings.secrets, now, max_age)


def mac(secret: str, timestamp: int | str, body: bytes) -> str:
    """The lowercase hex HMAC-SHA256, keyed with ``secret`` (UTF-8), of ``<timestamp>.<body>``."""
    return hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()


def signature(secret: str, timestamp: int, body: bytes) -> str:
    """The ``Verify-Signature`` value for ``body`` signed at ``timestamp``: ``t=<timestamp>,v1=<mac>``, the same
    bytes as an event's (``verify.events.signature``)."""
    return f"t={timestamp},v1={mac(secret, timestamp, body)}"


def read_signature(header: str) -> tuple[str, list[str]]:
    """``t`` and the ``v1`` MACs of a ``Verify-Signature`` value, leniently: parts in any order, spaces around them,
    upper-case hex, several ``v1`` (at most :data:`MAX_SIGNATURES`), and unknown schemes (``v0=``) ignored.

    :raises WebhookRejected: without one readable ``t`` or any ``v1`` of 64 hex digits.
    """
    stamps: list[str] = []
    macs: list[str] = []
    for part in header.split(","):
        key, _, value = part.strip().partition("=")
        if key.strip() == "t":
            stamps.append(value.strip())
        elif key.strip() == "v1":
            macs.append(value.strip().lower())
    if len(stamps) != 1 or not _TIMESTAMP.fullmatch(stamps[0]):
        raise WebhookRejected("hook report signature without one readable t")
    valid = [given for given in macs if _MAC.fullmatch(given)]
    if not valid:
        raise WebhookRejected("hook report signature without a v1 of 64 hex digits")
    return stamps[0], valid[:MAX_SIGNATURES]


def verify(inbound: Inbound, secrets: tuple[str, ...], now: float, max_age: int, skew: int = SKEW) -> str:
    """Check ``inbound``'s ``Verify-Signature`` against every secret, then its age; returns the replay nonce.

    :raises WebhookRejected: 403 when the header is missing or unreadable, when no ``v1`` matches any of ``secrets``
        (each compared in constant time, all of them every time), or when ``t`` is more than ``max_age`` seconds
        before ``now`` or more than ``skew`` seconds after it. No reason tells anything about the expected
        signature. No ``secrets`` refuses everything.
    :returns: the nonce: the SHA-256 of the signed bytes ``<t>.<body>``, whichever key signed them, so the same
        report posted again is a replay even with the other signature of a rotation, or its ``v1`` entries
        reordered; a report signed afresh (another ``t``) is new.
    """
    headers = {name.lower(): value for name, value in inbound.headers.items()}
    header = headers.get(SIGNATURE_HEADER.lower(), "").strip()
    if not header:
        raise WebhookRejected("hook report without a Verify-Signature")
    timestamp, given = read_signature(header)
    # Lists, not short-circuiting generators: every secret against every v1, each in constant time.
    expected = [mac(secret, timestamp, inbound.body).encode() for secret in secrets if secret]
    matches = [hmac.compare_digest(want, candidate.encode()) for want in expected for candidate in given]
    if not any(matches):
        raise WebhookRejected("hook report signature does not match")
    signed_at = int(timestamp)
    require_fresh("hook report", signed_at, now, max_age, skew)
    return hashlib.sha256(f"{timestamp}.".encode() + inbound.body).hexdigest()


def parse_report(inbound: Inbound, secrets: tuple[str, ...], now: float, max_age: int, skew: int = SKEW) -> Webhook:
    """Verify a delivery report (:func:`verify`) and map it.

    :returns: at most one :class:`DeliveryReport` (none when the verified body is not a JSON object with a
        ``status`` and an ``id`` or ``message_id``: answering 200 stops the customer retrying it), and the nonce.
    """
    nonce = verify(inbound, secrets, now, max_age, skew)
    report = _report(inbound.body)
    return Webhook([report] if report is not None else [], nonce)


def _report(body: bytes) -> DeliveryReport | None:
    """The :class:`DeliveryReport` of a verified body, or ``None`` (docs/gateways/hook.md §4).

    The message is named by ``message_id`` (what the receiver answered at send time) or, without one, by ``id``
    (our verification id, which is then also the message id we kept)."""
    document = json_object(body)
    if document is None:
        return None
    report = cast(Report, document)  # a JSON object; its members are read leniently
    verification_id = scalar(report.get("id"))
    message_id = scalar(report.get("message_id")) or verification_id
    raw_status = scalar(report.get("status"))[:STATUS_LIMIT]
    if not message_id or not raw_status:
        return None
    return DeliveryReport(
        provider=NAME,
        message_id=message_id,
        status=STATUSES.get(raw_status.lower(), "sent"),
        raw_status=raw_status,
        verification_id=verification_id,
        raw=document,
    )
