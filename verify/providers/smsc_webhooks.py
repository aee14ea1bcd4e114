"""SMSC's callbacks to our handler (docs/gateways/smsc.md §7-§9): delivery statuses, incoming SMS and call
verifications.

:func:`parse_callback` verifies the md5/sha1/crc32 field of a callback and maps it to events, reading the charset
and format the handler URL chose; :func:`parse_webhook` is the webhook pipeline's entry, declared with the gateway
in ``verify/providers/smsc.py`` (which imports this module, never the other way round).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import zlib
from collections.abc import Collection, Mapping
from typing import Any, Literal, Protocol, TypedDict, cast
from urllib.parse import parse_qsl, unquote_plus

from verify.errors import WebhookRejected
from verify.providers.base import (
    CallReceived,
    DeliveryReport,
    Event,
    Inbound,
    SmsReceived,
    Webhook,
    WebhookRoute,
    e164,
    scalar,
)

NAME = "smsc"  # the gateway's name, which its events carry


class CallbackSettings(Protocol):
    """What the callbacks read of the gateway's settings (``SmscSettings`` in ``verify/providers/smsc.py``)."""

    @property
    def secrets(self) -> tuple[str, ...]:
        """The handler URL's secrets, newest first (``VERIFY_SMSC_SECRET``); empty only in sandbox mode."""

    @property
    def hashes(self) -> tuple[str, ...]:
        """The hash algorithms a callback may be signed with (``VERIFY_SMSC_HASH``)."""


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
    route: str, inbound: Inbound, args: Mapping[str, str], settings: CallbackSettings, now: float, max_age: int
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
            provider=NAME,
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
        provider=NAME,
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
    """A callback value as SMSC signed it: a string untouched (spaces count), a number as ``scalar`` reads it."""
    return value if isinstance(value, str) else scalar(value)


def _timestamp(value: object) -> float | None:
    text = scalar(value)
    return float(text) if TIMESTAMP.fullmatch(text) else None
