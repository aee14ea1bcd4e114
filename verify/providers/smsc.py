"""SMSC (smsc.ru / smscentre.com): SMS through ``send.php``, call-in numbers through ``wait_call.php``.

Wire format: docs/gateways/smsc.md. Every request is a form POST (SMSC takes GET or POST with the same names),
so the credentials travel in the body and never in a URL or an access log. Every answer is asked for as JSON
(``fmt=3``). SMSC reports its errors with HTTP 200 and a body ``{"error": "<text>", "error_code": <N>[, "id": <id>]}``,
the same on every endpoint.

The JSON value types are unconfirmed (ids, counts and amounts were seen both as numbers and as strings), so
every value is read leniently.

Callbacks to our handler (docs/gateways/smsc.md §7-§9) are verified and parsed in
``verify/providers/smsc_webhooks.py``; the declaration at the end of this module names its routes and parser.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, TypedDict, cast

from verify import env
from verify.errors import ConfigError
from verify.providers.base import (
    PAYLOAD_LIMIT,
    AppSettings,
    CallNumber,
    Gateway,
    Http,
    InvalidRecipient,
    NoMoney,
    Provider,
    ProviderError,
    Sent,
    Shared,
    SmsMessage,
    e164,
    integer,
    json_of,
    scalar,
)
from verify.providers.smsc_webhooks import HASHES, NAME, WEBHOOKS, parse_webhook


class SendReply(TypedDict, total=False):
    """``send.php`` success: ``cost``/``balance`` only come with ``cost=2|3``, which we do not ask for."""

    id: int | str
    cnt: int | str
    cost: float | str
    balance: float | str


class WaitCallReply(TypedDict, total=False):
    """``wait_call.php`` success: the number to call, and every number that may be assigned (list or string)."""

    phone: int | str
    all_phones: list[int | str] | int | str


class BalanceReply(TypedDict, total=False):
    """``balance.php`` success; ``currency`` comes with ``cur=1`` (unconfirmed field name)."""

    balance: float | str
    currency: str


class ErrorReply(TypedDict, total=False):
    """An SMSC error on any endpoint (HTTP 200). ``id`` comes with codes 3, 6, 7 and 8."""

    error: str
    error_code: int | str
    id: int | str


# SMSC error code -> (what it means, how we treat it). Policy: a number SMSC refuses would be refused by any
# gateway, so 7 and 8 stop the chain with no failover (InvalidRecipient). Throttling (4, 9) and an empty
# account (3, NoMoney: the service logs it at error level, an operator must pay) fail over to the next
# gateway. Everything else, and any code not listed, is a request or account problem: final for this request.
INVALID_RECIPIENT, TRANSIENT, NO_MONEY, FINAL = "invalid recipient", "transient", "no money", "final"
ERRORS: dict[int, tuple[str, str]] = {
    1: ("error in parameters", FINAL),
    2: ("invalid login or password, or IP address not allowed", FINAL),
    3: ("no money on the account", NO_MONEY),
    4: ("IP address temporarily blocked after frequent errors", TRANSIENT),
    5: ("invalid date format", FINAL),
    6: ("message forbidden by its text or sender name", FINAL),
    7: ("invalid phone number format", INVALID_RECIPIENT),
    8: ("message to this number cannot be delivered", INVALID_RECIPIENT),
    9: ("duplicate or too frequent request", TRANSIENT),
}


SECRET_CHARS = re.compile(r"[A-Za-z0-9_-]+")  # SMSC's rule for the handler URL's secret


def _credentials(env_: env.Env, name: str, default: Any, seen: Mapping[str, Any]) -> Any:
    """The login, required (with its password) unless there is an API key."""
    login = env.raw(env_, name)
    if not login and not seen["apikey"]:
        raise ConfigError(
            "VERIFY_SMSC_APIKEY",
            "(or VERIFY_SMSC_LOGIN and VERIFY_SMSC_PASSWORD) is required because smsc is a configured provider",
        )
    return login


def _password(env_: env.Env, name: str, default: Any, seen: Mapping[str, Any]) -> Any:
    needed = seen["login"] and not seen["apikey"]
    return env.required("smsc is a configured provider")(env_, name, default, seen) if needed else ""


def _callback_secrets(env_: env.Env, name: str, default: Any, seen: Mapping[str, Any]) -> Any:
    secrets = env.secrets()(env_, name, default, seen)
    if not secrets and not seen.get("sandbox"):
        raise ConfigError(
            name,
            "is required (the md5=/sha1=/crc32= secret of the SMSC handler URL): without it "
            "anyone could post a confirmation call",
        )
    if not all(SECRET_CHARS.fullmatch(secret) for secret in secrets):
        raise ConfigError(name, "may hold only Latin letters, digits, - and _ (SMSC's rule), comma-separated")
    return secrets


def _hashes(env_: env.Env, name: str, default: Any, seen: Mapping[str, Any]) -> Any:
    hashes = env.listed(lower=True)(env_, name, default, seen)
    if any(h not in HASHES for h in hashes):
        raise ConfigError(name, f"must list hash algorithms from sha1, md5, crc32, not {','.join(hashes)!r}")
    return tuple(dict.fromkeys(hashes))


@dataclass(frozen=True)
class SmscSettings:
    """SMSC (smsc.ru / smscentre.com): ``login`` + ``password``, or ``apikey``; the handler URL's secrets."""

    url: str = field(default="https://smsc.ru/sys/", metadata=env.var("VERIFY_SMSC_URL", env.url(base=True)))
    apikey: str = field(default="", metadata=env.var("VERIFY_SMSC_APIKEY", env.text, secret=True))
    login: str = field(default="", metadata=env.var("VERIFY_SMSC_LOGIN", _credentials))
    password: str = field(default="", metadata=env.var("VERIFY_SMSC_PASSWORD", _password, secret=True))
    sender: str = field(default="", metadata=env.var("VERIFY_SMSC_SENDER", env.text))
    # The secrets of the handler URL's md5=/sha1=/crc32=, newest first (any verifies); empty only in sandbox mode.
    secrets: tuple[str, ...] = field(default=(), metadata=env.var("VERIFY_SMSC_SECRET", _callback_secrets, secret=True))
    # The hash algorithms a callback may be signed with: not crc32 by default, which a forger can compute.
    hashes: tuple[str, ...] = field(default=("sha1", "md5"), metadata=env.var("VERIFY_SMSC_HASH", _hashes))


class SmscProvider(Provider):
    """SMS and call-in verification through SMSC's HTTP API (``/sys/*.php``)."""

    name = NAME

    def __init__(self, settings: SmscSettings, http: Http) -> None:
        self._settings = settings
        self._http = http

    def send_sms(self, message: SmsMessage) -> Sent:
        """POST ``send.php``; the gateway's message id is our verification id, echoed back. A ``voice`` message is
        the same request with ``call=1``: SMSC calls the phone and a synthesized voice speaks ``mes``
        (docs/gateways/smsc.md §11); its delivery statuses come to the same handler as an SMS's."""
        # phones keeps its "+": without it SMSC may "auto-correct" the number. id is our verification id
        # (hex, under 40 characters, so a valid SMSC string id); status callbacks then carry it.
        params = {"phones": message.to, "mes": message.text, "id": message.verification_id, "charset": "utf-8"}
        if message.channel == "voice":
            # Only call=1 is confirmed; the voice and ring-time options (voice=, param=) are left at SMSC's defaults.
            params["call"] = "1"
        if self._settings.sender:
            params["sender"] = self._settings.sender
        reply = cast(SendReply, self._call("send.php", params, "id"))
        return Sent(self.name, scalar(reply["id"]))

    def start_call(self, phone: str, verification_id: str) -> CallNumber:
        """POST ``wait_call.php``: the number ``phone`` must call within 15 minutes, and every alternative.

        SMSC's call-in has no message id: its callback names only the caller's phone, so ``message_id`` is empty.
        """
        # The vendor's example sends the subscriber's number as bare digits (phone=79991234567).
        params = {"phone": e164(phone).removeprefix("+"), "charset": "utf-8"}
        reply = cast(WaitCallReply, self._call("wait_call.php", params, "phone"))
        number = e164(scalar(reply["phone"]))
        if not number:
            raise self._malformed("wait_call.php answered a phone that is not a number", reply)
        listed = (e164(scalar(raw)) for raw in _listed(reply.get("all_phones")))
        numbers = tuple(dict.fromkeys([number, *(n for n in listed if n)]))  # distinct, in order, number first
        return CallNumber(self.name, number, numbers, message_id="")

    def balance(self) -> str:
        """POST ``balance.php``: the balance as SMSC states it (``"250.80"``), with the currency if given."""
        reply = cast(BalanceReply, self._call("balance.php", {"cur": "1"}, "balance"))
        currency = scalar(reply.get("currency", ""))
        return f"{scalar(reply['balance'], amount=True)} {currency}".strip()

    def _call(self, endpoint: str, params: dict[str, str], required: str) -> dict[str, Any]:
        """POST one endpoint; the reply object if it carries ``required``, else the error it states."""
        auth = (
            {"apikey": self._settings.apikey}
            if self._settings.apikey
            else {"login": self._settings.login, "psw": self._settings.password}
        )
        response = self._http.request(
            self.name, "POST", self._settings.url + endpoint, data={**auth, **params, "fmt": "3"}
        )
        body = json_of(self.name, response)
        if isinstance(body, dict) and ("error_code" in body or "error" in body):
            raise self._error(cast(ErrorReply, body))
        if not isinstance(body, dict) or not scalar(body.get(required)):
            raise self._malformed(
                f"{endpoint} answered HTTP {response.status_code} with neither {required!r} nor an error",
                response.text[:PAYLOAD_LIMIT],
            )
        return body

    def _malformed(self, message: str, payload: object) -> ProviderError:
        # Neither a success nor an error: this gateway misbehaved, and another one may do better.
        return ProviderError(self.name, message, transient=True, payload=payload)

    def _error(self, body: ErrorReply) -> ProviderError:
        code = integer(body.get("error_code"))
        meaning, kind = ERRORS.get(code or 0, ("unknown error code", FINAL))
        message = f"error {scalar(body.get('error_code')) or '?'} ({scalar(body.get('error'))}): {meaning}"
        if kind == INVALID_RECIPIENT:
            return InvalidRecipient(self.name, message, payload=body)
        if kind == NO_MONEY:
            return NoMoney(self.name, message, payload=body)
        return ProviderError(self.name, message, transient=kind == TRANSIENT, payload=body)


def _listed(value: object) -> list[object]:
    """``all_phones`` as a list: a JSON list, or one string of numbers separated by ``,``, ``;`` or spaces."""
    if isinstance(value, list):
        return list(value)
    return list(re.split(r"[,;\s]+", scalar(value)))


# --- The declaration (verify/gateways.py lists it) ------------------------------------------------------------------


def _risks(settings: SmscSettings) -> list[str]:
    if "crc32" not in settings.hashes:
        return []
    return [
        f"{env.name_of(SmscSettings, 'hashes')} lists crc32: SMSC callbacks signed with crc32 are "
        "accepted, and crc32 is not a MAC. From one captured callback anyone can compute a valid "
        "crc32 for another phone without the secret, and so approve its call verification. List "
        "only sha1 (and md5)."
    ]


def _warnings(settings: SmscSettings, app: AppSettings) -> list[str]:
    # No secret passes the settings' reader only in sandbox mode.
    if settings.secrets:
        return []
    return [
        f"!!! {env.name_of(SmscSettings, 'secrets')} is unset: /webhooks/smsc accepts UNSIGNED callbacks, so anyone "
        "can confirm a call verification. Allowed only because VERIFY_SANDBOX=1."
    ]


def _make(settings: SmscSettings, shared: Shared) -> SmscProvider:
    return SmscProvider(settings, shared.http)


GATEWAY = Gateway(
    NAME,
    SmscSettings,
    _make,
    channels=frozenset({"sms", "call", "voice"}),  # wait_call.php hands out numbers to call; call=1 speaks a text
    webhooks=WEBHOOKS,
    parse=parse_webhook,
    risks=_risks,
    warnings=_warnings,
)
