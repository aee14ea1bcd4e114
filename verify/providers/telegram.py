"""The Telegram Gateway API (gatewayapi.telegram.org): verification codes sent to a Telegram account.

Wire format: docs/gateways/telegram.md. Every request is a JSON POST to ``<url><method>`` with the account's token as
``Authorization: Bearer``, so the token never travels in a URL. Every answer is ``{"ok": true, "result": ...}`` or
``{"ok": false, "error": "<STRING>"}`` (§2). Telegram sends the code itself: the request carries ``code`` (ours,
from the message), never the SMS text. ``payload`` carries our verification id, which the reports echo; the
``request_id`` it returns is what the service keeps, and what :meth:`TelegramProvider.confirm` and
:meth:`TelegramProvider.revoke` name.

Error policy (§4): Telegram lists no error strings but the token's, so ``ok: false`` is read by its prefix, never
by an exact text. ``ACCESS_TOKEN_*`` (the token is wrong, an operator must fix it) is final for this request, like
the other gateways' refused credentials; a string about the balance is :class:`NoMoney`; every other string, the
unknown one for a number with no Telegram account among them, is transient, so failover moves on to a gateway that
may reach the person by SMS. Nothing is :class:`InvalidRecipient`: a number Telegram cannot reach may still take an
SMS. We never call ``checkSendAbility`` (§5).

Reports (§6, §7) are verified and parsed in ``verify/providers/telegram_webhooks.py``; the declaration at the end of
this module names its route and parser.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, TypedDict, cast

from verify import env
from verify.providers.base import (
    PAYLOAD_LIMIT,
    AppSettings,
    Gateway,
    Http,
    NoMoney,
    Provider,
    ProviderError,
    Sent,
    Shared,
    SmsMessage,
    scalar,
)
from verify.providers.telegram_webhooks import NAME, WEBHOOKS, RequestStatus, parse_webhook

DEFAULT_URL = "https://gatewayapi.telegram.org/"
SEND, CONFIRM, REVOKE = "sendVerificationMessage", "checkVerificationStatus", "revokeVerificationMessage"
CALLBACK_PATH = "/webhooks/telegram"
TTL_RANGE = (30, 3600)  # seconds Telegram accepts for ``ttl`` (§3)
CALLBACK_LIMIT = 256  # bytes of ``callback_url``
PAYLOAD_BYTES = 128  # bytes of ``payload``
NOT_REPORTED = "not reported by the Gateway API"


class SendRequest(TypedDict, total=False):
    """``sendVerificationMessage`` as we send it; ``code_length`` and ``request_id`` (from ``checkSendAbility``)
    are never sent (§3, §5)."""

    phone_number: str  # E.164
    code: str  # ours, 4..8 digits
    ttl: int  # 30..3600
    callback_url: str
    payload: str  # our verification id
    sender_username: str


class Reply(TypedDict, total=False):
    """Every answer (§2): ``result`` when ``ok``, else ``error``."""

    ok: bool
    result: Any
    error: str


@dataclass(frozen=True)
class TelegramSettings:
    """Telegram Gateway: the API tokens (the first sends, any verifies a report), the base URL and an optional
    verified channel to send from."""

    tokens: tuple[str, ...] = field(
        default=(),
        metadata=env.var(
            "VERIFY_TELEGRAM_TOKEN",
            env.secrets(required_when=lambda _env, _seen: "telegram is a configured provider"),
            secret=True,
        ),
    )
    url: str = field(default=DEFAULT_URL, metadata=env.var("VERIFY_TELEGRAM_URL", env.url(base=True)))
    sender: str = field(default="", metadata=env.var("VERIFY_TELEGRAM_SENDER", env.text))


class TelegramProvider(Provider):
    """Sends verification codes through the Telegram Gateway API; confirms and revokes them."""

    name = NAME

    def __init__(self, settings: TelegramSettings, http: Http, public_url: str | None) -> None:
        if not settings.tokens:
            raise ValueError("the Telegram Gateway needs an API token")
        self._settings = settings
        self._http = http
        self._headers = {"Authorization": f"Bearer {settings.tokens[0]}", "Accept": "application/json"}
        self._callback = callback_url(public_url)
        self._balance = ""  # ``remaining_balance`` of the last send, if Telegram said

    def send_sms(self, message: SmsMessage) -> Sent:
        """``sendVerificationMessage`` with our ``code`` (the text is not sent: Telegram writes the message); the
        ``request_id`` it returns becomes :attr:`Sent.message_id`."""
        body: SendRequest = {"phone_number": message.to, "code": message.code}
        if message.ttl:
            body["ttl"] = min(max(message.ttl, TTL_RANGE[0]), TTL_RANGE[1])
        if self._callback:
            body["callback_url"] = self._callback
        if message.verification_id and len(message.verification_id.encode()) <= PAYLOAD_BYTES:
            body["payload"] = message.verification_id
        if self._settings.sender:
            body["sender_username"] = self._settings.sender
        result = self._call(SEND, body)
        status = cast(RequestStatus, result) if isinstance(result, dict) else RequestStatus()
        request_id = scalar(status.get("request_id"))
        if not request_id:
            raise ProviderError(self.name, "ok without a request_id", transient=True, payload=result, kind="malformed")
        self._balance = scalar(status.get("remaining_balance"), amount=True) or self._balance
        return Sent(self.name, request_id)

    def confirm(self, message_id: str, code: str) -> None:
        """``checkVerificationStatus`` with the ``request_id`` and the right code, so Telegram counts the
        conversion (§3). Our own check is what approves: the ``verification_status`` it answers is not read."""
        self._call(CONFIRM, {"request_id": message_id, "code": code})

    def revoke(self, message_id: str) -> None:
        """``revokeVerificationMessage``: asks Telegram to delete the message. ``true`` means the request was
        taken, not that the message is gone (one already delivered or read stays); ``false`` is a refusal."""
        result = self._call(REVOKE, {"request_id": message_id})
        if result is not True:
            raise ProviderError(
                self.name,
                f"revoke not taken (result {result!r})",
                transient=not isinstance(result, bool),
                payload=result,
                kind="rejected" if isinstance(result, bool) else "malformed",
            )

    def balance(self) -> str:
        """The Gateway API has no balance method (§3): what the last send of this process reported as
        ``remaining_balance``, else :data:`NOT_REPORTED`. Nothing is asked of Telegram (every other method costs
        money or needs a request id)."""
        if self._balance:
            return f"{self._balance} (remaining_balance at the last send; {NOT_REPORTED} otherwise)"
        return f"{NOT_REPORTED} (it tells remaining_balance only in a send's answer)"

    def _call(self, method: str, body: object) -> Any:
        """One authenticated method call: the ``result`` of an ``ok`` answer, or the mapped :class:`ProviderError`."""
        response = self._http.request(self.name, "POST", self._settings.url + method, headers=self._headers, json=body)
        status = response.status_code
        try:
            reply: Any = response.json()
        except ValueError:
            reply = None
        if not isinstance(reply, dict) or not isinstance(reply.get("ok"), bool):
            # Not Telegram's envelope. On a 2xx the gateway misbehaved, and 429 throttles: another gateway may do
            # better. Any other status is no Telegram answer at all (a wrong URL, a proxy refusing us): final.
            payload = response.text[:PAYLOAD_LIMIT] if reply is None else reply
            if 200 <= status < 300 or status == 429:
                kind = "rejected" if status == 429 else "malformed"
                raise ProviderError(
                    self.name, f"HTTP {status} without an ok field", transient=True, payload=payload, kind=kind
                )
            raise ProviderError(self.name, f"HTTP {status}", transient=False, payload=payload)
        envelope = cast(Reply, reply)  # a JSON object with a boolean ok; the rest is read leniently
        if envelope["ok"] and 200 <= status < 300:
            return envelope.get("result")
        raise _refusal(self.name, status, envelope)


def callback_url(public_url: str | None) -> str:
    """The ``callback_url`` for ``public_url``, or ``""`` without one or when it would be longer than Telegram takes
    (256 bytes; the start-time warning says so)."""
    if not public_url:
        return ""
    url = public_url.rstrip("/") + CALLBACK_PATH
    return url if len(url.encode()) <= CALLBACK_LIMIT else ""


def _refusal(provider: str, status: int, reply: Reply) -> ProviderError:
    """The error for an answer that is not ``ok`` (§4; 5xx never gets here: :class:`Http` raised it already)."""
    error = scalar(reply.get("error")) or "no error string"
    detail = f"{error} (HTTP {status})"
    upper = error.upper()
    if upper.startswith("ACCESS_TOKEN"):
        return ProviderError(provider, f"token refused: {detail}", transient=False, payload=reply)
    if any(word in upper for word in ("BALANCE", "FUNDS", "MONEY")):
        return NoMoney(provider, f"no money: {detail}", payload=reply)
    # Any other string, the one for a number without a Telegram account among them: another gateway may still
    # reach the person (by SMS).
    return ProviderError(provider, f"not sent: {detail}", transient=True, payload=reply)


# ---- the declaration (verify/gateways.py lists it) ----


def _risks(settings: TelegramSettings) -> list[str]:
    if settings.url.startswith("https://"):
        return []
    return [
        f"{env.name_of(TelegramSettings, 'url')} is not https: the Telegram Gateway API token travels in clear text "
        "with every request"
    ]


def _warnings(settings: TelegramSettings, app: AppSettings) -> list[str]:
    if not app.public_url:
        return ["telegram gets no delivery reports: set VERIFY_PUBLIC_URL"]
    if not callback_url(app.public_url):
        return [f"telegram gets no delivery reports: VERIFY_PUBLIC_URL{CALLBACK_PATH} is longer than 256 bytes"]
    if not app.public_url.startswith("https://"):
        return ["telegram posts delivery reports only to an HTTPS callback_url: VERIFY_PUBLIC_URL is not https"]
    return []


def _make(settings: TelegramSettings, shared: Shared) -> TelegramProvider:
    return TelegramProvider(settings, shared.http, shared.app.public_url)


GATEWAY = Gateway(
    NAME,
    TelegramSettings,
    _make,
    channels=frozenset({"telegram"}),
    webhooks=WEBHOOKS,
    parse=parse_webhook,
    risks=_risks,
    warnings=_warnings,
)
