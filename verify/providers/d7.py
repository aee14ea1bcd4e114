"""D7 Networks (wire format: docs/gateways/d7.md): the legacy REST API and the current v1 API.

The legacy API (``rest-api.d7networks.com``) is a hosted Jasmin REST API with Basic auth; the current one
(``api.d7networks.com``) takes a Bearer token. One class serves both: ``settings.api`` picks a
:class:`_Generation`, the small table of paths and mapping functions below, and everything else (auth
header, callback URL, HTTP, error normalization) is shared. D7 is used for SMS only, not call verification.

Where docs/gateways/d7.md marks a shape "unconfirmed" (D7's own error texts, v1 error bodies, balance bodies),
parsing is lenient: any JSON shape is accepted and matched on keywords, never on exact texts.

Callbacks (docs/gateways/d7.md §4, §7, §8): the legacy API throws Jasmin DLRs to ``<public>/webhooks/d7/<token>``
and the v1 API posts reports to ``<public>/webhooks/d7/<token>/report``. Neither is signed, so the secret path token
(:func:`check_token`) plus the message id matching one of our records is all the authentication there is.
:func:`parse_dlr` and :func:`parse_report` map them to :class:`DeliveryReport` events and never raise: a
callback they cannot read yields no event, because answering an error would only make the gateway retry it.
"""

from __future__ import annotations

import email.parser
import email.policy
import hmac
import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Required, TypedDict
from urllib.parse import parse_qsl, quote

from requests.auth import HTTPBasicAuth

from verify import env
from verify.errors import NotFound
from verify.providers.base import (
    PAYLOAD_LIMIT,
    AppSettings,
    DeliveryReport,
    Event,
    Gateway,
    Http,
    Inbound,
    InvalidRecipient,
    NoMoney,
    Provider,
    ProviderError,
    Sent,
    Shared,
    SmsMessage,
    Webhook,
    WebhookRoute,
    json_of,
    scalar,
)

NAME = "d7"
# docs/gateways/d7.md §2: the legacy id, from 'Success "<uuid>' (no closing quote).
_UUID = re.compile(r"[0-9a-f-]{36}")
# Jasmin says 'Argument [to] has an invalid value: [x].'; accept it without brackets too (docs/gateways/d7.md §3).
_INVALID_ARGUMENT = re.compile(r"argument\s+\[?['\"]?(?P<name>[\w-]+)", re.IGNORECASE)
_TEXT_LIMIT = 300

# Request payloads (docs/gateways/d7.md §2, §5). Responses and callbacks are read leniently, field by field.
# Legacy keys are spelled with "-" (the REST layer rewrites "_" to "-" anyway).
LegacySendRequest = TypedDict(
    "LegacySendRequest",
    {
        "to": Required[str],
        "from": str,
        "content": Required[str],
        "dlr": str,
        "dlr-url": str,
        "dlr-level": int,
        "dlr-method": str,
    },
    total=False,
)


class V1Message(TypedDict):  # one entry of "messages" in POST /messages/v1/send
    channel: str
    recipients: list[str]
    content: str
    msg_type: str
    data_coding: str


class V1Globals(TypedDict, total=False):
    originator: str
    report_url: str


class V1SendRequest(TypedDict):
    messages: list[V1Message]
    message_globals: V1Globals


DEFAULT_URLS = {"legacy": "https://rest-api.d7networks.com/", "v1": "https://api.d7networks.com/"}


def _api_url(env_: env.Env, name: str, default: Any, seen: Mapping[str, Any]) -> Any:
    return env.url(base=True)(env_, name, DEFAULT_URLS[seen["api"]], seen)


def _for(api: str) -> env.Reader:
    """Required with the ``api`` generation, unused with the other."""

    def reader(env_: env.Env, name: str, default: Any, seen: Mapping[str, Any]) -> Any:
        return env.required("d7 is a configured provider")(env_, name, default, seen) if seen["api"] == api else ""

    return reader


@dataclass(frozen=True)
class D7Settings:
    """D7 Networks: ``legacy`` (Basic auth) or ``v1`` (Bearer token) API; the reports' path tokens."""

    api: str = field(default="v1", metadata=env.var("VERIFY_D7_API", env.choice(*DEFAULT_URLS)))
    url: str = field(default=DEFAULT_URLS["v1"], metadata=env.var("VERIFY_D7_URL", _api_url))
    username: str = field(default="", metadata=env.var("VERIFY_D7_USERNAME", _for("legacy")))
    password: str = field(default="", metadata=env.var("VERIFY_D7_PASSWORD", _for("legacy"), secret=True))
    token: str = field(default="", metadata=env.var("VERIFY_D7_TOKEN", _for("v1"), secret=True))
    sender: str = field(default="", metadata=env.var("VERIFY_D7_SENDER", env.text))
    # The first goes in the callback URLs; any is accepted.
    webhook_tokens: tuple[str, ...] = field(
        default=(), metadata=env.var("VERIFY_D7_WEBHOOK_TOKEN", env.secrets(), secret=True)
    )


class D7Provider(Provider):
    """D7 Networks SMS over the legacy (Basic auth) or the v1 (Bearer token) API."""

    name = NAME

    def __init__(self, settings: D7Settings, http: Http, public_url: str | None) -> None:
        if settings.api not in _GENERATIONS:
            raise ValueError(f"unknown D7 API {settings.api!r} (expected legacy or v1)")
        self._settings = settings
        self._http = http
        self._api = _GENERATIONS[settings.api]
        self._headers = {"Accept": "application/json"}
        self._auth: HTTPBasicAuth | None = None
        if settings.api == "legacy":
            self._auth = HTTPBasicAuth(settings.username, settings.password)
        else:
            self._headers["Authorization"] = f"Bearer {settings.token}"
        # Without both there is nowhere to receive reports: the fields are left out (the service warns at start).
        self._callback = None
        if public_url and settings.webhook_tokens:  # the newest token; the older ones are still accepted
            self._callback = f"{public_url.rstrip('/')}/webhooks/d7/{quote(settings.webhook_tokens[0], safe='')}"

    def send_sms(self, message: SmsMessage) -> Sent:
        """Send one SMS; the id is the legacy message uuid or the v1 ``request_id``."""
        payload = self._request(
            "POST", self._api.send_path, self._api.send_body(message, self._settings.sender, self._callback)
        )
        message_id = self._api.message_id(payload)
        if not message_id:
            raise ProviderError(
                NAME,
                "accepted the request but returned no message id",
                transient=True,
                payload=payload,
                kind="malformed",
            )
        return Sent(NAME, message_id)

    def balance(self) -> str:
        """The balance as D7 states it, e.g. ``10.23, sms_count ND (not limited)`` or ``12.3 USD``."""
        payload = self._request("GET", self._api.balance_path, None)
        text = _balance_text(payload)
        if text is None:
            raise ProviderError(
                NAME, "balance response without a balance", transient=True, payload=payload, kind="malformed"
            )
        return text

    def _request(self, method: str, path: str, body: object) -> Any:
        response = self._http.request(
            NAME, method, self._settings.url + path, headers=self._headers, auth=self._auth, json=body
        )
        if 200 <= response.status_code < 300:
            return json_of(NAME, response)
        # An error body that is not JSON (a proxy's page) still has a status worth mapping.
        try:
            refusal: Any = response.json()
        except ValueError:
            refusal = response.text[:PAYLOAD_LIMIT]
        status, text = response.status_code, _describe(refusal)
        # 5xx never get here (Http made them transient). Policy for the rest: final (our request, credentials
        # or account are wrong, and retrying elsewhere is the service's call), except throttling and the
        # cases each generation's table names.
        error = self._api.refusal(status, refusal, text)
        raise error or ProviderError(NAME, f"HTTP {status}: {text}", transient=status in (408, 429), payload=refusal)


# ---- legacy (docs/gateways/d7.md §2, §3) ----


def _legacy_send_body(message: SmsMessage, sender: str, callback: str | None) -> LegacySendRequest:
    """``POST secure/send``: one recipient, text content, DLRs of both levels POSTed to our webhook."""
    body: LegacySendRequest = {"to": message.to, "content": message.text}
    if sender:
        body["from"] = sender
    if callback:
        body.update({"dlr": "yes", "dlr-url": callback, "dlr-level": 3, "dlr-method": "POST"})
    return body


def _legacy_message_id(payload: Any) -> str | None:
    """The uuid inside ``{"data": "Success \\"<uuid>"}``."""
    data = payload.get("data") if isinstance(payload, dict) else None
    found = _UUID.search(data) if isinstance(data, str) else None
    return found.group() if found else None


def _legacy_refusal(status: int, body: Any, text: str) -> ProviderError | None:
    """Jasmin's errors that are not simply final; ``None`` leaves the default (final unless 408/429)."""
    lowered = text.lower()
    if status == 400 and "invalid value" in lowered:
        argument = _INVALID_ARGUMENT.search(text)
        if argument and argument["name"].lower() == "to":
            return InvalidRecipient(NAME, f"HTTP 400: {text}", payload=body)
    if status == 403 and "charge" in lowered:
        return NoMoney(NAME, f"no money: D7 cannot charge the message (HTTP 403: {text})", payload=body)
    if status == 412 and "route" in lowered:
        # No route for this number on this account: another gateway may have one.
        return ProviderError(NAME, f"HTTP 412: {text}", transient=True, payload=body)
    return None


# ---- v1 (docs/gateways/d7.md §5, §6) ----


def _v1_send_body(message: SmsMessage, sender: str, callback: str | None) -> V1SendRequest:
    """``POST messages/v1/send``: one message to one recipient; D7 picks GSM-7 or UCS-2 (``auto``)."""
    globals_: V1Globals = {}
    if sender:
        globals_["originator"] = sender
    if callback:
        globals_["report_url"] = f"{callback}/report"
    return {
        "messages": [
            {
                "channel": "sms",
                "recipients": [message.to],
                "content": message.text,
                "msg_type": "text",
                "data_coding": "auto",
            }
        ],
        "message_globals": globals_,
    }


def _v1_message_id(payload: Any) -> str | None:
    """``request_id`` of ``{"request_id": ..., "status": "accepted"}``."""
    request_id = payload.get("request_id") if isinstance(payload, dict) else None
    return request_id if isinstance(request_id, str) and request_id else None


def _v1_refusal(status: int, body: Any, text: str) -> ProviderError | None:
    """402 (and a 403 about credit) is no money, 422 on the recipients a bad number; ``None`` for the rest."""
    lowered = text.lower()
    if status == 402 or (status == 403 and ("credit" in lowered or "charge" in lowered)):
        return NoMoney(NAME, f"no money: insufficient D7 credit (HTTP {status}: {text})", payload=body)
    if status == 422 and _mentions_recipients(body):
        return InvalidRecipient(NAME, f"HTTP 422: {text}", payload=body)
    return None


def _mentions_recipients(body: Any) -> bool:
    """Whether a validation error is about ``recipients``: by its ``loc``, or by its text if it has none."""
    detail = body.get("detail", body) if isinstance(body, dict) else body
    entries = detail if isinstance(detail, list) else [detail]
    locs = [entry["loc"] for entry in entries if isinstance(entry, dict) and "loc" in entry]
    if locs:
        return any("recipient" in str(loc).lower() for loc in locs)
    return "recipient" in _describe(detail).lower()


# ---- shared ----


@dataclass(frozen=True)
class _Generation:
    send_path: str
    balance_path: str
    send_body: Callable[[SmsMessage, str, str | None], object]
    message_id: Callable[[Any], str | None]
    refusal: Callable[[int, Any, str], ProviderError | None]


_GENERATIONS = {
    "legacy": _Generation("secure/send", "secure/balance", _legacy_send_body, _legacy_message_id, _legacy_refusal),
    "v1": _Generation("messages/v1/send", "messages/v1/balance", _v1_send_body, _v1_message_id, _v1_refusal),
}


def _describe(body: Any) -> str:
    """A short readable text of an error body, whatever its shape.

    Falcon's ``description`` and FastAPI's ``input`` are left out: they can echo the request, and so the code.
    """
    if isinstance(body, list):
        return "; ".join(_describe(item) for item in body)[:_TEXT_LIMIT]
    if isinstance(body, dict):
        if "detail" in body:
            return _describe(body["detail"])
        text = ": ".join(str(body[key]) for key in ("title", "code", "message", "msg") if body.get(key))
        loc = body.get("loc")
        if isinstance(loc, list):
            text = ".".join(map(str, loc)) + ": " + text
        return (text or str(sorted(body)))[:_TEXT_LIMIT]
    return str(body).strip()[:_TEXT_LIMIT]


def _balance_text(payload: Any) -> str | None:
    """``balance`` (string or number) with ``currency`` and ``sms_count``, top level or under ``data``."""
    for candidate in (payload, payload.get("data") if isinstance(payload, dict) else None):
        if not isinstance(candidate, dict):
            continue
        amount = candidate.get("balance")
        if isinstance(amount, bool) or not isinstance(amount, int | float | str) or not str(amount).strip():
            continue
        text = str(amount).strip()
        if isinstance(candidate.get("currency"), str):
            text += f" {candidate['currency']}"
        count = candidate.get("sms_count")
        if count is not None:
            text += ", sms_count ND (not limited)" if count == "ND" else f", sms_count {count}"
        return text
    return None


# ---- callbacks (docs/gateways/d7.md: §4 legacy DLR, §7 v1 report webhook, §8 no signatures) ----

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
    route: str, inbound: Inbound, args: Mapping[str, str], settings: D7Settings, now: float, max_age: int
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

    The message is named by ``request_id``, the id :meth:`D7Provider.send_sms` returned; statuses map by
    :data:`_REPORT_STATUS` case-insensitively, unknown ones to ``sent``. A report without ``request_id`` or
    ``status``, or a body that cannot be read, yields nothing.
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


# ---- the declaration (verify/gateways.py lists it) ----


def _warnings(settings: D7Settings, app: AppSettings) -> list[str]:
    if app.public_url and settings.webhook_tokens:
        return []
    return [f"d7 gets no delivery reports: set VERIFY_PUBLIC_URL and {env.name_of(D7Settings, 'webhook_tokens')}"]


def _make(settings: D7Settings, shared: Shared) -> D7Provider:
    return D7Provider(settings, shared.http, shared.app.public_url)


GATEWAY = Gateway(NAME, D7Settings, _make, webhooks=WEBHOOKS, parse=parse_webhook, warnings=_warnings)
