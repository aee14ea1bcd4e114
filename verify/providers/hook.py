"""The hook gateway: any SMS or voice provider, through the customer's own signed endpoint (docs/gateways/hook.md).

``verify`` POSTs each message as JSON to ``VERIFY_HOOK_URL`` (§1), signed like our events with ``Verify-Signature``
and the first of ``VERIFY_HOOK_SECRET`` (§2); the customer's receiver sends it through whatever provider it likes. A
2xx answer means sent; anything else, or no answer in time, is a failed send, so failover and the circuit breaker
treat the hook like any other gateway (§3). The receiver may report delivery to the message's ``callback_url``,
``<VERIFY_PUBLIC_URL>/webhooks/hook``, signed the same way (§4); those reports are checked and parsed in
``verify/providers/hook_webhooks.py``, whose route and parser the declaration at the end of this module names.

The settings are the service's one receiver and key list. Nothing here reads them but through a :class:`HookSettings`
given to the provider, so a later per-tenant override (another URL or key list for one tenant's messages) is a
``dataclasses.replace`` of it, not a second code path (§6).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, TypedDict, cast

from verify import env
from verify.clock import Clock
from verify.errors import ConfigError
from verify.providers.base import (
    PAYLOAD_LIMIT,
    AppSettings,
    Gateway,
    Http,
    Provider,
    ProviderError,
    Sent,
    Shared,
    SmsMessage,
    json_object,
    scalar,
)
from verify.providers.hook_webhooks import NAME, SIGNATURE_HEADER, WEBHOOKS, parse_webhook, signature

CALLBACK_PATH = "/webhooks/hook"
MESSAGE_ID_LIMIT = 128  # characters of a receiver's message_id kept; a longer one is not used (§3)
MIN_SECRET_LENGTH = 16
CONFIGURED = "hook is a configured provider"


class Message(TypedDict):
    """The body ``verify`` POSTs (§1). ``locale`` and ``callback_url`` are ``null`` when not known."""

    id: str  # our verification id
    phone: str  # E.164
    text: str  # the SMS text, or the text to speak
    code: str
    channel: str  # sms | voice
    locale: str | None
    callback_url: str | None


class Answer(TypedDict, total=False):
    """A 2xx answer's body, read leniently (§3): JSON or not, and only ``message_id`` matters."""

    message_id: str


def _url(env_: env.Env, name: str, default: Any, seen: Mapping[str, Any]) -> Any:
    """Required; an http(s) URL, and ``https`` outside sandbox mode: the body carries the code."""
    value = env.url()(env_, name, default, seen)
    if not value:
        raise ConfigError(name, f"is required because {CONFIGURED}")
    if not value.startswith("https://") and not seen.get("sandbox"):
        raise ConfigError(
            name,
            "must be an https URL outside sandbox mode: every message carries its code (VERIFY_SANDBOX=1 allows http)",
        )
    return value


def _secrets(env_: env.Env, name: str, default: Any, seen: Mapping[str, Any]) -> Any:
    """Required, newest first, each at least :data:`MIN_SECRET_LENGTH` characters."""
    secrets: tuple[str, ...] = env.secrets(required_when=lambda _env, _seen: CONFIGURED)(env_, name, default, seen)
    if any(len(secret) < MIN_SECRET_LENGTH for secret in secrets):
        raise ConfigError(name, f"must list secrets of at least {MIN_SECRET_LENGTH} characters each")
    return secrets


@dataclass(frozen=True)
class HookSettings:
    """The hook: the customer's endpoint and the secrets both ways are signed with (the first signs what we send, any
    verifies a delivery report)."""

    url: str = field(default="", metadata=env.var("VERIFY_HOOK_URL", _url))
    secrets: tuple[str, ...] = field(default=(), metadata=env.var("VERIFY_HOOK_SECRET", _secrets, secret=True))


class HookProvider(Provider):
    """Hands each message, signed, to the customer's endpoint."""

    name = NAME

    def __init__(self, settings: HookSettings, http: Http, public_url: str | None, clock: Clock) -> None:
        if not settings.url or not settings.secrets:
            raise ValueError("the hook gateway needs a URL and a secret")
        self._settings = settings
        self._http = http
        self._clock = clock
        self._callback = callback_url(public_url)

    def send_sms(self, message: SmsMessage) -> Sent:
        """POST the message (§1), signed (§2). A 2xx is sent: its id is the answer's ``message_id`` if it gives one,
        else our verification id (§3)."""
        body = self.body(message)
        headers = {
            "Content-Type": "application/json",
            "Accept": "application/json",
            SIGNATURE_HEADER: signature(self._settings.secrets[0], int(self._clock()), body),
        }
        response = self._http.request(self.name, "POST", self._settings.url, data=body, headers=headers)
        status = response.status_code
        if 200 <= status < 300:
            return Sent(self.name, _message_id(response.content) or message.verification_id)
        # 5xx never get here (Http made them transient). A 3xx is not followed: the URL is wrong, as with a 4xx. Any
        # of them is a failed send, so the chain moves on; only throttling is transient (logged as a warning), the
        # rest an operator must look at (a receiver refusing our signature, a wrong path), so they log as errors.
        raise ProviderError(
            self.name, f"HTTP {status}", transient=status in (408, 429), payload=response.text[:PAYLOAD_LIMIT]
        )

    def body(self, message: SmsMessage) -> bytes:
        """The JSON bytes POSTed for ``message`` (§1): compact, ASCII only (``\\u`` escapes), keys in this order."""
        document: Message = {
            "id": message.verification_id,
            "phone": message.to,
            "text": message.text,
            "code": message.code,
            "channel": message.channel,
            "locale": message.locale or None,
            "callback_url": self._callback or None,
        }
        return json.dumps(document, separators=(",", ":")).encode()

    def balance(self) -> str:
        """The hook has no account to ask: the customer's provider holds the money."""
        return "not reported (hook: your endpoint's provider holds the balance)"


def callback_url(public_url: str | None) -> str:
    """Where delivery reports go, ``<public_url>/webhooks/hook``; ``""`` without a public URL."""
    return public_url.rstrip("/") + CALLBACK_PATH if public_url else ""


def _message_id(content: bytes) -> str:
    """The ``message_id`` of a 2xx answer's JSON object, or ``""`` (no body, not JSON, no id, or a longer id than
    :data:`MESSAGE_ID_LIMIT`)."""
    answer = json_object(content)
    message_id = scalar(cast(Answer, answer).get("message_id")) if answer is not None else ""
    return message_id if len(message_id) <= MESSAGE_ID_LIMIT else ""


# ---- the declaration (verify/gateways.py lists it) ----


def _risks(settings: HookSettings) -> list[str]:
    if settings.url.startswith("https://"):
        return []
    return [f"{env.name_of(HookSettings, 'url')} is not https: every message's code travels in clear text"]


def _warnings(settings: HookSettings, app: AppSettings) -> list[str]:
    if app.public_url:
        return []
    return ["hook gets no delivery reports: set VERIFY_PUBLIC_URL (messages carry callback_url null)"]


def _make(settings: HookSettings, shared: Shared) -> HookProvider:
    return HookProvider(settings, shared.http, shared.app.public_url, shared.clock)


GATEWAY = Gateway(
    NAME,
    HookSettings,
    _make,
    channels=frozenset({"sms", "voice"}),
    webhooks=WEBHOOKS,
    parse=parse_webhook,
    risks=_risks,
    warnings=_warnings,
)
