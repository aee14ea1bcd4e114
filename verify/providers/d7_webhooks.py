"""D7 Networks' callbacks (docs/gateways/d7.md: §4 legacy DLR, §7 v1 report webhook, §8 no signatures).

The legacy API throws Jasmin DLRs to ``<public>/webhooks/d7/<token>`` and the v1 API posts reports to
``<public>/webhooks/d7/<token>/report``. Neither is signed, so the secret path token (:func:`check_token`) plus the
message id matching one of our records is all the authentication there is. :func:`parse_dlr` and
:func:`parse_report` map them to :class:`DeliveryReport` events and never raise: a callback they cannot read yields
no event, because answering an error would only make the gateway retry it. :func:`parse_webhook` is the webhook
pipeline's entry, declared with the gateway in ``verify/providers/d7.py`` (which imports this module, never the
other way round).
"""

from __future__ import annotations

import email.parser
import email.policy
import hmac
import json
import re
from collections.abc import Mapping
from typing import Any, Protocol
from urllib.parse import parse_qsl

from verify.errors import NotFound
from verify.providers.base import DeliveryReport, Event, Inbound, Webhook, WebhookRoute, scalar

NAME = "d7"


class CallbackSettings(Protocol):
    """What the callbacks read of the gateway's settings (``D7Settings`` in ``verify/providers/d7.py``)."""

    @property
    def webhook_tokens(self) -> tuple[str, ...]:
        """The reports' path tokens (``VERIFY_D7_WEBHOOK_TOKEN``): the first goes in the callback URLs, any is
        accepted."""


LEGACY_ACK = "ACK/Jasmin"
"""The body the legacy DLR handler must answer with (status < 400): any other body makes Jasmin retry the DLR."""

# Jasmin's terminal receipt statuses (SMPP 3.4 table B-2). UNKNOWN and anything new are not known to be final.
_RECEIPT_STATUS = {
    "DELIVRD": "delivered",
    "ACCEPTD": "sent",
    "UNKNOWN": "sent",
    "EXPIRED": "failed",
    "DELETED": "failed",
    "UNDELIV": "failed",
    "REJECTD": "failed",
}
# v1 report statuses, lower case with "-" and " " as "_"; both failure spellings of docs/gateways/d7.md §7.
_REPORT_STATUS = {
    "delivered": "delivered",
    "sent": "sent",
    "scheduled": "sent",
    "accepted": "sent",
    **dict.fromkeys(
        (
            "un_delivered",
            "undelivered",
            "not_reachable",
            "spam_content",
            "insufficient_credit",
            "failed",
            "rejected",
            "expired",
        ),
        "failed",
    ),
}
_BOUNDARY = re.compile(r"[0-9A-Za-z'()+_,./:=? -]{0,69}[0-9A-Za-z'()+_,./:=?-]")  # RFC 2046 section 5.1.1


WEBHOOKS = (
    WebhookRoute("/d7/<token>", ("GET", "POST"), "dlr", ack=LEGACY_ACK),
    WebhookRoute("/d7/<token>/report", ("POST",), "report"),
)


def parse_webhook(
    route: str, inbound: Inbound, args: Mapping[str, str], settings: CallbackSettings, now: float, max_age: int
) -> Webhook:
    """The webhook pipeline's entry (``verify/web/webhooks.py``): the legacy API's Jasmin DLR (``dlr``, answered
    ``ACK/Jasmin``) or the v1 API's report (``report``), both behind the secret path token, which D7 does not
    sign anything else with: a wrong token is 404, like a URL that does not exist."""
    check_token(args.get("token", ""), settings.webhook_tokens)
    return Webhook(parse_dlr(inbound) if route == "dlr" else parse_report(inbound))


def check_token(given: str, expected: tuple[str, ...]) -> None:
    """Refuse a callback whose path token is none of ``expected`` (the current one and those being rotated out),
    comparing with every one of them in constant time.

    Any refusal is ``404``: Jasmin stops retrying at once on a 404 (a 403 would be retried to no end), and a
    prober cannot tell a wrong token from a URL that does not exist. No ``expected`` token (reports not set up)
    refuses every token, the empty one included.
    """
    raw = given.encode("utf-8", "surrogatepass")
    matches = [hmac.compare_digest(raw, token.encode("utf-8", "surrogatepass")) for token in expected if token]
    if not any(matches):
        raise NotFound("unknown webhook")


def parse_dlr(inbound: Inbound) -> list[Event]:
    """The legacy API's Jasmin DLR (GET query or POST form; both are read, the body wins) as a report.

    ``ESME_ROK`` (the SMSC took the message) is ``sent``, any other ``ESME_*`` ``failed``; receipts map by
    :data:`_RECEIPT_STATUS`, unknown ones to ``sent``. The status decides, not ``level``: current Jasmin sends
    level 2 on receipts and older versions the requested level 3, but only level 1 ever carries ``ESME_*``.
    ``raw_status`` is ``"<level>:<message_status>"``. A DLR without an id or a status yields nothing.
    """
    events: list[Event] = []
    for fields in _payloads(inbound):
        message_id, status = scalar(fields.get("id")), scalar(fields.get("message_status"))
        if not message_id or not status:
            continue
        code = status.upper()
        if code.startswith("ESME_"):
            ours = "sent" if code == "ESME_ROK" else "failed"
        else:
            ours = _RECEIPT_STATUS.get(code, "sent")
        events.append(DeliveryReport(NAME, message_id, ours, f"{scalar(fields.get('level'))}:{status}", raw=fields))
    return events


def parse_report(inbound: Inbound) -> list[Event]:
    """The v1 report webhook (form or JSON body, unconfirmed which; a JSON list gives one report each).

    The message is named by ``request_id``, the id :meth:`verify.providers.d7.D7Provider.send_sms` returned;
    statuses map by :data:`_REPORT_STATUS` case-insensitively, unknown ones to ``sent``. A report without
    ``request_id`` or ``status``, or a body that cannot be read, yields nothing.
    """
    events: list[Event] = []
    for fields in _payloads(inbound):
        request_id, status = scalar(fields.get("request_id")), scalar(fields.get("status"))
        if not request_id or not status:
            continue
        key = re.sub(r"[-\s]+", "_", status.lower())
        events.append(DeliveryReport(NAME, request_id, _REPORT_STATUS.get(key, "sent"), status, raw=fields))
    return events


def _payloads(inbound: Inbound) -> list[dict[str, Any]]:
    """The callback's field sets: query fields overlaid with the body's (form, multipart or JSON)."""
    query = _form(inbound.query_string)
    body = inbound.body.strip()
    kind = inbound.content_type.split(";")[0].strip().lower()
    if not body:
        return [query]
    # The v1 encoding is unconfirmed: a body that looks like JSON is read as JSON whatever its declared type.
    if body[:1] in (b"{", b"[") or kind == "application/json" or kind.endswith("+json"):
        try:
            document = json.loads(body)
        except (ValueError, RecursionError):
            return []
        items = document if isinstance(document, list) else [document]
        return [query | item for item in items if isinstance(item, dict)]
    if kind == "multipart/form-data" or body.startswith(b"--"):
        return [query | _multipart(body)]
    return [query | _form(body)]


def _form(raw: bytes) -> dict[str, Any]:
    """URL-encoded fields (UTF-8, undecodable bytes replaced); a repeated field keeps its last value."""
    return dict(parse_qsl(raw.decode("utf-8", "replace"), keep_blank_values=True, encoding="utf-8", errors="replace"))


def _multipart(body: bytes) -> dict[str, Any]:
    """``multipart/form-data`` fields, the boundary taken from the body's first line (the type is often cut)."""
    boundary = body.split(b"\n", 1)[0].removeprefix(b"--").rstrip(b"\r").decode("latin-1")
    if not _BOUNDARY.fullmatch(boundary):
        return {}
    head = f'Content-Type: multipart/form-data; boundary="{boundary}"\r\n\r\n'.encode("latin-1")
    message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(head + body)
    fields: dict[str, Any] = {}
    for part in message.iter_parts():
        name, value = part.get_param("name", header="content-disposition"), part.get_payload(decode=True)
        if isinstance(name, str) and isinstance(value, bytes):
            fields[name] = value.decode("utf-8", "replace")
    return fields
