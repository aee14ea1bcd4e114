"""SMSC (smsc.ru / smscentre.com): SMS through ``send.php``, call-in numbers through ``wait_call.php``.

Wire format: docs/gateways/smsc.md. Every request is a form POST (SMSC takes GET or POST with the same names),
so the credentials travel in the body and never in a URL or an access log. Every answer is asked for as JSON
(``fmt=3``). SMSC reports its errors with HTTP 200 and a body ``{"error": "<text>", "error_code": <N>[, "id": <id>]}``,
the same on every endpoint.

The JSON value types are unconfirmed (ids, counts and amounts were seen both as numbers and as strings), so
every value is read leniently.

Callbacks to our handler (docs/gateways/smsc.md §7-§9): :func:`parse_callback` verifies the md5/sha1/crc32 field
of a delivery status, incoming SMS or call verification and maps it to events, reading the charset and format the
handler URL chose.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import zlib
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, TypedDict, cast
from urllib.parse import parse_qsl, unquote_plus

from verify import env
from verify.errors import ConfigError, WebhookRejected
from verify.providers.base import (
    PAYLOAD_LIMIT,
    AppSettings,
    CallNumber,
    CallReceived,
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
    SmsReceived,
    Webhook,
    WebhookRoute,
    e164,
    integer,
    json_of,
    scalar,
)


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


HASH_ALGORITHMS = ("sha1", "md5", "crc32")
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
    if any(h not in HASH_ALGORITHMS for h in hashes):
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

    name = "smsc"

    def __init__(self, settings: SmscSettings, http: Http) -> None:
        self._settings = settings
        self._http = http

    def send_sms(self, message: SmsMessage) -> Sent:
        """POST ``send.php``; the gateway's message id is our verification id, echoed back."""
        # phones keeps its "+": without it SMSC may "auto-correct" the number. id is our verification id
        # (hex, under 40 characters, so a valid SMSC string id); status callbacks then carry it.
        params = {"phones": message.to, "mes": message.text, "id": message.verification_id, "charset": "utf-8"}
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


# --- Callbacks to our handler (docs/gateways/smsc.md §7-§9) --------------------------------------------------------

HashName = Literal["md5", "sha1", "crc32"]
HASHES: tuple[HashName, ...] = ("md5", "sha1", "crc32")
# Options of the handler URL's query string. SMSC acts on them; they are never callback fields, and the value of
# md5/sha1/crc32 there is our secret itself, never a hash.
OPTIONS = frozenset({"charset", "fmt", *HASHES})
DEFAULT_CHARSET = "windows-1251"  # SMSC's default when the handler URL names no charset
CHARSETS = {
    "utf-8": "utf-8",
    "utf8": "utf-8",
    "koi8-r": "koi8-r",
    "koi8r": "koi8-r",
    "windows-1251": "windows-1251",
    "cp1251": "windows-1251",
}
MAX_CALLBACK_FIELDS = 100  # a status callback has about twenty; more is not SMSC
# charset and fmt as SMSC posts them: form fields, or members of a JSON body. ASCII in every charset.
POSTED_OPTION = re.compile(rb"(?:^|&)(charset|fmt)=([A-Za-z0-9_.%+-]{0,32})(?=&|$)", re.IGNORECASE)
POSTED_JSON_OPTION = re.compile(rb'"(charset|fmt)"\s*:\s*"?([A-Za-z0-9_.-]{0,32})', re.IGNORECASE)
MAX_OPTION_SCAN = 64 * 1024
# The fields each kind's hash covers, in order (docs/gateways/smsc.md §9). Every other field is unsigned.
SIGNED = {"sms": ("phone", "mes", "to"), "call": ("phone", "ts"), "status": ("id", "phone", "status")}
# docs/gateways/smsc.md §8: -1 and 0 are on their way; anything not listed is taken as not final either.
DELIVERED_CODES = frozenset({1, 2, 4})  # delivered, read, link clicked
FAILED_CODES = frozenset({-3, -2, 3, 20, 22, 23, 24, 25})
TIMESTAMP = re.compile(r"\d{1,12}(\.\d{1,6})?")  # unix seconds; "nan", "1e9", "1_000" and signs are refused
INTEGER = re.compile(r"-?\d{1,4}")

Scalar = str | int | float


class Callback(TypedDict, total=False):
    """One callback's fields as they arrive (docs/gateways/smsc.md §7): strings in a form body, strings or numbers
    in JSON (unconfirmed).

    Any other field (HLR and voice extras, the handler URL's own ``?a=b`` parameters) is kept as well.
    """

    # delivery status
    id: Scalar  # our verification id (we send it as SMSC's message id)
    phone: Scalar
    status: Scalar
    time: Scalar  # status: "DD.MM.YY hh:mm:ss"; incoming SMS: unix seconds
    ts: Scalar
    err: Scalar
    syserr: Scalar
    cnt: Scalar
    type: Scalar
    cost: Scalar
    flag: Scalar
    sender: Scalar
    # incoming SMS (``id`` is then SMSC's id of the inbound message)
    sms_id: Scalar
    mes: Scalar
    to: Scalar
    smsc: Scalar
    sent: Scalar
    # call verification
    waitcall: Scalar
    # signatures
    md5: str
    sha1: str
    crc32: Scalar


WEBHOOKS = (WebhookRoute("/smsc", ("POST",), "callback"),)


def parse_webhook(
    route: str, inbound: Inbound, args: Mapping[str, str], settings: SmscSettings, now: float, max_age: int
) -> Webhook:
    """The webhook pipeline's entry (``verify/web/webhooks.py``): one handler URL for every kind of callback, signed
    with one of ``VERIFY_SMSC_SECRET`` in one of ``VERIFY_SMSC_HASH``; unsigned only in sandbox mode (no secret).
    SMSC sends no nonce: a call's replay protection is its signed ``ts``, which the service checks."""
    return Webhook(parse_callback(inbound, settings.secrets or None, algorithms=settings.hashes))


def parse_callback(
    inbound: Inbound, secrets: tuple[str, ...] | None, *, algorithms: Collection[str] = ("sha1", "md5")
) -> list[Event]:
    """Verify an SMSC callback (delivery status, incoming SMS or call verification) and map it to events.

    The handler URL configured at SMSC is ``.../webhooks/smsc?<md5|sha1|crc32>=<secret>[&charset=...][&fmt=3]``.
    SMSC posts those parameters in the body (the secret replaced by its hash), and only those written after a ``!``
    in the URL in the query string, so ``charset`` and ``fmt`` are read from either: the query string first, else
    the body, scanned before it is decoded (the values are ASCII in every charset). They say how to read the
    body: ``charset`` (``windows-1251``, SMSC's default, ``koi8-r`` or ``utf-8``, any case; anything else is read
    as windows-1251) and ``fmt=3`` for JSON. The body is a form
    (percent-encoded bytes in that charset) or, with ``fmt=3``, a JSON content type or a body starting with ``{``
    or ``[``, JSON: one object, or a list of objects (whether SMSC batches is unconfirmed), values strings or
    numbers (unconfirmed). JSON is read as UTF-8 when it is valid UTF-8 (PHP's ``json_encode`` only writes
    UTF-8; Cyrillic in windows-1251 or koi8-r practically never is), else in the charset. Query parameters other
    than those options are added under the body's fields (SMSC echoes them in the body anyway); the options
    themselves never are, so the secret never reaches ``raw``.

    Kinds (vendor advice, docs/gateways/smsc.md §7): ``mes`` present is an incoming SMS, ``waitcall`` a call,
    anything else a status.

    With ``secrets`` set (the current one first, then those being rotated out), the body must carry a hash field
    (``md5``, ``sha1`` or ``crc32``) named in ``algorithms``, and every hash field it carries must match
    (docs/gateways/smsc.md §9), under any one of the secrets, the colon-joined signed fields and the secret:
    ``id:phone:status``, ``phone:mes:to`` or ``phone:ts``, values as decoded (a JSON ``1700000000.0`` as
    ``1700000000``, an absent field as empty). md5/sha1 are hex in either case; crc32 is decimal (PHP's
    ``crc32``, also signed as on 32-bit PHP) or hex (unconfirmed). A non-ASCII input is tried in the callback's
    charset, UTF-8 and windows-1251 (which one SMSC hashes is unconfirmed). ``secrets`` None skips the check
    (sandbox mode only); no secret, or an empty one, verifies nothing, so every callback is refused.
    ``algorithms`` (``VERIFY_SMSC_HASH``, sha1 and md5 by default) keeps a forger from choosing crc32, which is
    not a MAC: from one captured callback, crc32 of any same-length text can be computed without the secret.

    :raises WebhookRejected: 403, and only that, when the hash is missing or wrong, the body has more than
        ``MAX_CALLBACK_FIELDS`` fields or a field twice with different values (which was signed is unknowable),
        or a call verification has no numeric ``ts`` (its replay protection rests on it). The reason never
        contains the secret.
    :returns: per callback, :class:`SmsReceived` (``phone`` E.164, ``received_at`` the ``time`` or ``sent``
        unix seconds, else 0.0 (both unsigned); ``verification_id`` and ``reply_to`` the unsigned ``sms_id``,
        since our verification id is SMSC's message id), :class:`CallReceived` (``received_at`` the signed
        ``ts``) or :class:`DeliveryReport` (``message_id`` and ``verification_id`` the ``id``; ``status`` the code
        mapped to ``sent``/``delivered``/``failed`` (docs/gateways/smsc.md §8), ``raw_status`` the code as text).
        A verified callback that lacks what its kind needs (phone, id, an integer status), or whose signed fields
        other than ``mes`` hold a ``:`` (a signature moved between kinds: ``phone:mes:to`` re-read as
        ``phone:ts``), gives no event: answering 200 stops SMSC retrying it 50 times.
    """
    options = {key.lower(): value for key, value in _pairs(inbound.query_string, "latin-1")}
    for key, value in _posted_options(inbound.body).items():
        options.setdefault(key, value)
    charset = CHARSETS.get(options.get("charset", "").strip().lower(), DEFAULT_CHARSET)
    extras = {key: value for key, value in _pairs(inbound.query_string, charset) if key.lower() not in OPTIONS}
    mimetype = inbound.content_type.split(";")[0].strip().lower()
    if (
        options.get("fmt", "").strip() == "3"
        or mimetype == "application/json"
        or mimetype.endswith("+json")
        or inbound.body.lstrip()[:1] in (b"{", b"[")
    ):
        payloads = _json_payloads(inbound.body, charset)
    else:
        payloads = [_unique(_pairs(inbound.body, charset))]
    events: list[Event] = []
    for payload in payloads:
        fields = cast(Callback, {**extras, **payload})
        event = _callback_event(fields, secrets, charset, algorithms)
        if event is not None:
            events.append(event)
    return events


def _posted_options(body: bytes) -> dict[str, str]:
    """``charset`` and ``fmt`` as SMSC posts them, found in the raw body: a form field or a JSON member."""
    found: dict[str, str] = {}
    for pattern in (POSTED_OPTION, POSTED_JSON_OPTION):
        for name, value in pattern.findall(body[:MAX_OPTION_SCAN]):
            found.setdefault(name.decode().lower(), unquote_plus(value.decode()))
    return found


def _pairs(raw: bytes, charset: str) -> list[tuple[str, str]]:
    # latin-1 maps each byte to one code point, so parse_qsl percent-decodes to the original bytes, then the charset.
    try:
        return parse_qsl(
            raw.decode("latin-1"),
            keep_blank_values=True,
            encoding=charset,
            errors="replace",
            max_num_fields=MAX_CALLBACK_FIELDS,
        )
    except ValueError as err:
        raise WebhookRejected(f"smsc callback has more than {MAX_CALLBACK_FIELDS} fields") from err


def _unique(pairs: list[tuple[str, str]]) -> dict[str, str]:
    fields: dict[str, str] = {}
    for key, value in pairs:
        if fields.setdefault(key, value) != value:
            raise WebhookRejected(f"smsc callback carries {key!r} twice with different values")
    return fields


def _json_payloads(body: bytes, charset: str) -> list[dict[str, Any]]:
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        text = body.decode(charset, errors="replace")
    try:
        parsed = json.loads(text.lstrip("\ufeff"))
    except (ValueError, RecursionError):  # RecursionError: "[[[[..." nested deeper than the parser goes
        parsed = {}  # nothing to verify: refused when a secret is set, no event otherwise
    items = parsed if isinstance(parsed, list) else [parsed]
    if len(items) > MAX_CALLBACK_FIELDS:
        raise WebhookRejected(f"smsc callback has more than {MAX_CALLBACK_FIELDS} objects")
    payloads = [item if isinstance(item, dict) else {} for item in items]
    if any(len(payload) > MAX_CALLBACK_FIELDS for payload in payloads):
        raise WebhookRejected(f"smsc callback has more than {MAX_CALLBACK_FIELDS} fields")
    return [{str(key): value for key, value in payload.items()} for payload in payloads]


def _callback_event(
    fields: Callback, secrets: tuple[str, ...] | None, charset: str, algorithms: Collection[str]
) -> Event | None:
    kind = "sms" if "mes" in fields else "call" if "waitcall" in fields else "status"
    signed = [_exact(fields.get(name)) for name in SIGNED[kind]]
    if secrets is not None:
        _check_signature(fields, signed, secrets, charset, algorithms)
    if any(":" in value for name, value in zip(SIGNED[kind], signed, strict=True) if name != "mes"):
        return None
    raw = dict(fields)
    phone = e164(scalar(fields.get("phone")))
    if kind == "call":
        received_at = _timestamp(fields.get("ts"))
        if received_at is None:
            raise WebhookRejected("smsc call callback without a numeric ts")
        return CallReceived(phone=phone, received_at=received_at, raw=raw) if phone else None
    if kind == "sms":
        if not phone:
            return None
        sms_id = scalar(fields.get("sms_id"))
        received_at = _timestamp(fields.get("time"))
        received_at = _timestamp(fields.get("sent")) if received_at is None else received_at
        return SmsReceived(
            phone=phone,
            text=_exact(fields.get("mes")),
            received_at=received_at or 0.0,
            provider=SmscProvider.name,
            verification_id=sms_id,
            reply_to=sms_id,
            raw=raw,
        )
    message_id, raw_status = scalar(fields.get("id")), scalar(fields.get("status"))
    if not message_id or not INTEGER.fullmatch(raw_status):
        return None
    code = int(raw_status)
    status = "delivered" if code in DELIVERED_CODES else "failed" if code in FAILED_CODES else "sent"
    return DeliveryReport(
        provider=SmscProvider.name,
        message_id=message_id,
        status=status,
        raw_status=raw_status,
        verification_id=message_id,
        raw=raw,
    )


def _check_signature(
    fields: Callback, signed: list[str], secrets: tuple[str, ...], charset: str, algorithms: Collection[str]
) -> None:
    given = {name: scalar(fields.get(name)) for name in HASHES if name in fields}
    if not secrets or not all(secrets):
        raise WebhookRejected("smsc callbacks cannot be verified: the configured secret is empty")
    if not any(given.get(name) for name in HASHES if name in algorithms):
        raise WebhookRejected(f"smsc callback without a signature ({' or '.join(algorithms)} field)")
    inputs = [data for secret in secrets for data in _hash_inputs(":".join([*signed, secret]), charset)]
    for name, value in given.items():
        received = value.lower().encode()  # bytes: compare_digest refuses non-ASCII str
        expected = [digest.encode() for data in inputs for digest in _digests(name, data)]
        # Every candidate is compared (a list, not a short-circuiting generator), in constant time each.
        if not any([hmac.compare_digest(received, digest) for digest in expected]):
            raise WebhookRejected(f"smsc callback {name} does not match")


def _hash_inputs(message: str, charset: str) -> list[bytes]:
    """The bytes SMSC may have hashed: ASCII as it is; else in the callback's charset, UTF-8 or windows-1251."""
    if message.isascii():
        return [message.encode("ascii")]
    inputs = []
    for encoding in dict.fromkeys((charset, "utf-8", "windows-1251")):
        try:
            inputs.append(message.encode(encoding))
        except UnicodeEncodeError:
            continue
    return inputs


def _digests(name: str, data: bytes) -> list[str]:
    if name == "crc32":
        crc = zlib.crc32(data) & 0xFFFFFFFF
        signed = crc - (1 << 32) if crc >= 1 << 31 else crc  # 32-bit PHP's crc32()
        return list(dict.fromkeys([str(crc), f"{crc:08x}", f"{crc:x}", str(signed)]))
    # SMSC's scheme, not our choice; the flag keeps FIPS builds of OpenSSL from refusing md5/sha1 outright.
    return [hashlib.new(name, data, usedforsecurity=False).hexdigest()]


def _exact(value: object) -> str:
    """A callback value as SMSC signed it: a string untouched (spaces count), a number as :func:`_text` reads it."""
    return value if isinstance(value, str) else scalar(value)


def _timestamp(value: object) -> float | None:
    text = scalar(value)
    return float(text) if TIMESTAMP.fullmatch(text) else None


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
    "smsc",
    SmscSettings,
    _make,
    calls=True,  # wait_call.php hands out numbers to call
    webhooks=WEBHOOKS,
    parse=parse_webhook,
    risks=_risks,
    warnings=_warnings,
)
