"""D7 Networks (wire format: docs/gateways/d7.md): the legacy REST API and the current v1 API.

The legacy API (``rest-api.d7networks.com``) is a hosted Jasmin REST API with Basic auth; the current one
(``api.d7networks.com``) takes a Bearer token. One class serves both: ``settings.api`` picks a
:class:`_Generation`, the small table of paths and mapping functions below, and everything else (auth
header, callback URL, HTTP, error normalization) is shared. D7 is used for SMS only, not call verification.

Where docs/gateways/d7.md marks a shape "unconfirmed" (D7's own error texts, v1 error bodies, balance bodies),
parsing is lenient: any JSON shape is accepted and matched on keywords, never on exact texts.

Callbacks (docs/gateways/d7.md §4, §7, §8), the legacy API's Jasmin DLRs and the v1 API's reports, are checked
and parsed in ``verify/providers/d7_webhooks.py``; the declaration at the end of this module names its routes and
parser.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Required, TypedDict
from urllib.parse import quote

from requests.auth import HTTPBasicAuth

from verify import env
from verify.providers.base import (
    PAYLOAD_LIMIT,
    AppSettings,
    Gateway,
    Http,
    InvalidRecipient,
    NoMoney,
    Provider,
    ProviderError,
    Sent,
    Shared,
    SmsMessage,
    json_of,
)
from verify.providers.d7_webhooks import NAME, WEBHOOKS, parse_webhook

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


# ---- the declaration (verify/gateways.py lists it) ----


def _warnings(settings: D7Settings, app: AppSettings) -> list[str]:
    if app.public_url and settings.webhook_tokens:
        return []
    return [f"d7 gets no delivery reports: set VERIFY_PUBLIC_URL and {env.name_of(D7Settings, 'webhook_tokens')}"]


def _make(settings: D7Settings, shared: Shared) -> D7Provider:
    return D7Provider(settings, shared.http, shared.app.public_url)


GATEWAY = Gateway(NAME, D7Settings, _make, webhooks=WEBHOOKS, parse=parse_webhook, warnings=_warnings)
