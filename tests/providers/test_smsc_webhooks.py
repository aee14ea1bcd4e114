"""SMSC callbacks to our handler (docs/gateways/smsc.md §7-§9): the hash vectors of §10, refusals, charsets, kinds,
codes."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterator
from typing import NamedTuple
from urllib.parse import parse_qsl, urlencode

import pytest
from werkzeug.wrappers import Request, Response

from tests.providers.emulator import Emulator, Seen
from tests.providers.smsc_emulator import HashName, callback_hash, post_callback, smsc_callback
from verify.errors import WebhookRejected
from verify.providers import smsc_webhooks
from verify.providers.base import (
    CallReceived,
    DeliveryReport,
    Event,
    Inbound,
    SmsReceived,
)

SECRET = "mysecret"
FORM = "application/x-www-form-urlencoded"
STATUS = {"id": "12345", "phone": "79991234567", "status": "1"}
HELLO = {"phone": "79991234567", "mes": "Hello", "to": "79990000000"}
TEST = {"phone": "79991234567", "mes": "Тест", "to": "79990000000"}
CALL = {"waitcall": "1", "phone": "79991234567", "ts": "1700000000"}
# Cyrillic with Ё and И: in UTF-8, И is D0 98 and 0x98 is the one byte windows-1251 cannot decode.
TEXT = "Код 4821: ЁЖИК, ответьте"


class Vector(NamedTuple):
    """A row of docs/gateways/smsc.md §10: the callback's kind and fields, the hash input's encoding, its hashes."""

    kind: str
    fields: dict[str, str]
    encoding: str
    md5: str
    sha1: str
    crc32: str
    crc32_hex: str


# docs/gateways/smsc.md §10, copied exactly.
VECTORS = [
    Vector(
        "status",
        STATUS,
        "any",
        "c4e3de83ec973176aab5c9d82cedd6d2",
        "016c00bb71513312f1e8cb87254ac2848a9432e9",
        "903588142",
        "35dba92e",
    ),
    Vector(
        "incoming",
        HELLO,
        "any",
        "e6aff73a4b8815e3e53de3b4fae44d16",
        "7b6c48886d6687f7703b72c11ada59bc7184e157",
        "4213112584",
        "fb1eff08",
    ),
    Vector(
        "incoming",
        TEST,
        "utf-8",
        "a8207e3cbc026506e8e1b6f8cc49c296",
        "819378922632a7a6c42016dff7d9ec7797672484",
        "2521887408",
        "9650f2b0",
    ),
    Vector(
        "incoming",
        TEST,
        "windows-1251",
        "aa6a3089d86c80899e51d8cc0f76029a",
        "6a5b91a8aa27c7221280e20dc9d7c3bcd8476e60",
        "4030922217",
        "f042fde9",
    ),
    Vector(
        "waitcall",
        CALL,
        "any",
        "824f4d1893edecf084fff463e70dda66",
        "b313fb8f68745a90b3f2b7ddb3936c7dfb1e6cea",
        "869122596",
        "33cdc224",
    ),
]
HASH_FORMS: list[tuple[HashName, str]] = [
    ("md5", "md5"),
    ("sha1", "sha1"),
    ("crc32", "crc32"),
    ("crc32", "crc32_hex"),
]  # the field, and the Vector attribute of its value
VECTOR_CASES = [
    pytest.param(
        row,
        name,
        getattr(row, column),
        charset,
        id=f"{row.kind}-{row.fields.get('mes', '')}-{row.encoding}-{column}-in-{charset}",
    )
    for row in VECTORS
    for name, column in HASH_FORMS
    for charset in ("windows-1251", "koi8-r", "utf-8")
]

EXPECTED: dict[str, Event] = {
    "status": DeliveryReport(
        provider="smsc", message_id="12345", status="delivered", raw_status="1", verification_id="12345"
    ),
    "waitcall": CallReceived(phone="+79991234567", received_at=1700000000.0),
}


def inbound(query: str, body: bytes, content_type: str = FORM) -> Inbound:
    return Inbound("POST", query.encode("ascii"), body, content_type)


def form(fields: dict[str, str], charset: str = "windows-1251") -> bytes:
    return urlencode(fields, encoding=charset).encode("ascii")


def parse_callback(
    request: Inbound, secret: str | None, *, algorithms: tuple[HashName, ...] = ("md5", "sha1", "crc32")
) -> list[Event]:
    """The parser with one secret and, unless told otherwise, every algorithm: the §10 vectors include crc32. The
    default of ``smsc_webhooks.parse_callback`` (and of ``VERIFY_SMSC_HASH``), sha1 and md5, is tested on its own
    below."""
    return smsc_webhooks.parse_callback(request, (secret,) if secret is not None else None, algorithms=algorithms)


def parse(
    fields: dict[str, str], *, secret: str | None = SECRET, signer: str | None = SECRET, **options: bool | str
) -> list[Event]:
    """Build a callback signed with ``signer`` and parse it with ``secret``."""
    query, body, content_type = smsc_callback(fields, secret=signer, **options)  # type: ignore[arg-type]
    return parse_callback(inbound(query, body, content_type), secret)


def rejected(request: Inbound, secret: str | None = SECRET, **kwargs: tuple[HashName, ...]) -> WebhookRejected:
    with pytest.raises(WebhookRejected) as caught:
        parse_callback(request, secret, **kwargs)
    assert caught.value.status == 403
    assert SECRET not in caught.value.detail and SECRET not in str(caught.value)
    return caught.value


def bare(event: Event) -> Event:
    return dataclasses.replace(event, raw={})


# --- the vectors of docs/gateways/smsc.md §10 --------------------------------------------------------------------


@pytest.mark.parametrize(("row", "name", "value", "charset"), VECTOR_CASES)
def test_every_vector_verifies(row: Vector, name: str, value: str, charset: str) -> None:
    kind, fields = row.kind, row.fields
    query = f"{name}={SECRET}" + ("" if charset == "windows-1251" else f"&charset={charset}")
    events = parse_callback(inbound(query, form({**fields, name: value}, charset)), SECRET)
    assert len(events) == 1
    if kind == "incoming":
        assert bare(events[0]) == SmsReceived(
            phone="+79991234567", text=fields["mes"], received_at=0.0, provider="smsc"
        )
    else:
        assert bare(events[0]) == EXPECTED[kind]
    assert events[0].raw == {**fields, name: value}


@pytest.mark.parametrize(("row", "name", "value", "charset"), VECTOR_CASES)
def test_every_vector_refused_under_another_secret(row: Vector, name: str, value: str, charset: str) -> None:
    query = f"{name}={SECRET}" + ("" if charset == "windows-1251" else f"&charset={charset}")
    request = inbound(query, form({**row.fields, name: value}, charset))
    rejected(request, "othersecret")
    assert parse_callback(request, SECRET)  # the same callback is good under the right secret


@pytest.mark.parametrize(
    ("row", "name", "column"),
    [
        pytest.param(row, name, column, id=f"{row.kind}-{row.fields.get('mes', '')}-{row.encoding}-{column}")
        for row in VECTORS
        for name, column in HASH_FORMS
    ],
)
def test_emulator_computes_every_vector(row: Vector, name: HashName, column: str) -> None:
    charset = "utf-8" if row.encoding == "any" else row.encoding
    _, body, _ = smsc_callback(row.fields, secret=SECRET, hash=name, crc32_hex=column == "crc32_hex", charset=charset)
    assert dict(parse_qsl(body.decode("ascii")))[name] == getattr(row, column)


def test_emulator_reproduces_the_documented_status_example() -> None:
    fields = {
        "id": "12345",
        "phone": "79991234567",
        "status": "1",
        "time": "21.11.24 10:05:00",
        "ts": "1732172700",
        "cnt": "1",
        "type": "0",
        "cost": "2.50",
        "flag": "0",
        "sender": "ACME",
    }
    assert smsc_callback(fields, secret=SECRET, charset="utf-8") == (
        "",  # every parameter of the handler URL is posted; the secret travels only as its hash
        b"id=12345&phone=79991234567&status=1&time=21.11.24+10%3A05%3A00&ts=1732172700&cnt=1&type=0&cost=2.50"
        b"&flag=0&sender=ACME&md5=c4e3de83ec973176aab5c9d82cedd6d2&charset=utf-8",
        FORM,
    )


def test_hex_digests_are_accepted_in_upper_case() -> None:
    for name, column in HASH_FORMS:
        for row in VECTORS[:2]:
            body = form({**row.fields, name: getattr(row, column).upper()})
            assert parse_callback(inbound(f"{name}={SECRET}", body), SECRET)


def test_crc32_as_signed_decimal_of_32_bit_php_is_accepted() -> None:
    signed = str(4213112584 - (1 << 32))  # the "Hello" row's crc32 as 32-bit PHP prints it
    assert parse_callback(inbound("crc32=mysecret", form({**HELLO, "crc32": signed})), SECRET)
    rejected(inbound("crc32=mysecret", form({**HELLO, "crc32": str(4213112584 - (1 << 31))})))


# --- refusals ------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("fields", [STATUS, HELLO, TEST, CALL], ids=["status", "hello", "cyrillic", "waitcall"])
@pytest.mark.parametrize("name", ["md5", "sha1", "crc32"])
def test_forged_with_a_wrong_secret_is_refused(fields: dict[str, str], name: HashName) -> None:
    query, body, content_type = smsc_callback(fields, secret="guessed", hash=name)
    request = inbound(query.replace("guessed", SECRET), body, content_type)
    rejected(request)
    assert parse(fields, hash=name)  # signed with the right secret, the same callback passes


@pytest.mark.parametrize(
    ("fields", "before", "after"),
    [
        (STATUS, b"status=1", b"status=20"),
        (STATUS, b"id=12345", b"id=12346"),
        (STATUS, b"phone=79991234567", b"phone=79991234568"),
        (HELLO, b"mes=Hello", b"mes=Hallo"),
        (HELLO, b"phone=79991234567", b"phone=79991234568"),
        (HELLO, b"to=79990000000", b"to=79990000001"),
        (TEST, b"mes=%D2%E5%F1%F2", b"mes=%D2%E5%F1%F2%21"),
        (CALL, b"ts=1700000000", b"ts=1800000000"),
        (CALL, b"phone=79991234567", b"phone=79995550000"),
    ],
    ids=[
        "status-code",
        "status-id",
        "status-phone",
        "sms-text",
        "sms-phone",
        "sms-to",
        "sms-cyrillic",
        "call-ts",
        "call-phone",
    ],
)
@pytest.mark.parametrize("fmt_json", [False, True], ids=["form", "json"])
def test_a_field_altered_after_signing_is_refused(
    fields: dict[str, str], before: bytes, after: bytes, fmt_json: bool
) -> None:
    query, body, content_type = smsc_callback(fields, secret=SECRET, fmt_json=fmt_json)
    assert parse_callback(inbound(query, body, content_type), SECRET)
    if fmt_json:
        key = before.decode().partition("=")[0]
        new_value = after.decode().partition("=")[2]
        altered = json.loads(body.decode("windows-1251"))
        assert key in altered
        altered[key] = new_value if "%" not in new_value else "Тест!"
        altered_body = json.dumps(altered, ensure_ascii=False).encode("windows-1251")
    else:
        assert before in body
        altered_body = body.replace(before, after)
    rejected(inbound(query, altered_body, content_type))


def test_a_field_sent_twice_with_different_values_is_refused() -> None:
    query, body, _ = smsc_callback(STATUS, secret=SECRET)
    assert parse_callback(inbound(query, body + b"&status=1"), SECRET)  # the same value twice is harmless
    rejected(inbound(query, body + b"&status=20"))
    rejected(inbound(query, b"status=20&" + body))


@pytest.mark.parametrize("fields", [STATUS, HELLO, CALL], ids=["status", "sms", "waitcall"])
@pytest.mark.parametrize("name", ["md5", "sha1", "crc32"])
def test_missing_hash_with_a_secret_is_refused(fields: dict[str, str], name: str) -> None:
    _, body, _ = smsc_callback(fields, secret=None)
    request = inbound(f"{name}={SECRET}", body)  # the handler URL names the hash, the body lacks it
    assert rejected(request).detail.startswith("smsc callback without a signature")
    assert parse_callback(request, None)  # nothing else is wrong with it


def test_an_empty_hash_field_is_refused() -> None:
    rejected(inbound("md5=mysecret", form({**STATUS, "md5": ""})))


def test_the_query_strings_value_is_never_taken_as_the_hash() -> None:
    _, body, _ = smsc_callback(STATUS, secret=None)
    # Not the secret (what SMSC puts there), not even the right hash, is read from the query string.
    rejected(inbound("md5=mysecret", body))
    rejected(inbound("md5=c4e3de83ec973176aab5c9d82cedd6d2", body))
    rejected(inbound("crc32=903588142&sha1=016c00bb71513312f1e8cb87254ac2848a9432e9", body))
    # Nor is the secret itself accepted as the body's hash.
    rejected(inbound("md5=mysecret", form({**STATUS, "md5": SECRET})))


def test_every_hash_field_present_must_match() -> None:
    both = {**STATUS, "md5": "c4e3de83ec973176aab5c9d82cedd6d2", "sha1": "016c00bb71513312f1e8cb87254ac2848a9432e9"}
    assert parse_callback(inbound("md5=mysecret&sha1=mysecret", form(both)), SECRET)
    rejected(inbound("md5=mysecret&sha1=mysecret", form({**both, "sha1": "0" * 40})))
    rejected(inbound("md5=mysecret", form({**both, "crc32": "1"})))


def test_algorithms_restrict_the_accepted_hashes() -> None:
    request = inbound("crc32=mysecret", form({**STATUS, "crc32": "903588142"}))
    assert parse_callback(request, SECRET)
    reason = rejected(request, algorithms=("md5", "sha1")).detail
    assert reason == "smsc callback without a signature (md5 or sha1 field)"
    md5 = inbound("md5=mysecret", form({**STATUS, "md5": "c4e3de83ec973176aab5c9d82cedd6d2"}))
    only_md5: tuple[HashName, ...] = ("md5",)
    assert parse_callback(md5, SECRET, algorithms=only_md5)


def test_crc32_is_refused_unless_listed() -> None:
    # A correct crc32, as a forger can compute it from a captured callback without the secret.
    crc32 = inbound("", form({**STATUS, "crc32": "903588142"}))
    with pytest.raises(WebhookRejected) as caught:
        smsc_webhooks.parse_callback(crc32, (SECRET,))  # the default: sha1 and md5
    assert caught.value.status == 403
    assert smsc_webhooks.parse_callback(crc32, (SECRET,), algorithms=("sha1", "md5", "crc32"))
    sha1 = inbound("", form({**STATUS, "sha1": "016c00bb71513312f1e8cb87254ac2848a9432e9"}))
    assert smsc_webhooks.parse_callback(sha1, (SECRET,))


def test_any_listed_secret_verifies_during_a_rotation() -> None:
    signed_with_old = inbound("", form({**STATUS, "md5": "c4e3de83ec973176aab5c9d82cedd6d2"}))  # mysecret
    assert smsc_webhooks.parse_callback(signed_with_old, ("new-secret", SECRET))
    with pytest.raises(WebhookRejected):
        smsc_webhooks.parse_callback(signed_with_old, ("new-secret",))
    with pytest.raises(WebhookRejected):
        smsc_webhooks.parse_callback(signed_with_old, ("new-secret", ""))  # an empty secret verifies nothing


def test_a_non_ascii_hash_is_refused_not_crashed_on() -> None:
    rejected(inbound("md5=mysecret", form({**STATUS, "md5": "\u0441\u0435"}, "utf-8")))  # Cyrillic look-alikes


def test_an_empty_secret_verifies_nothing() -> None:
    _, body, _ = smsc_callback(STATUS, secret="")
    assert b"md5=" in body
    rejected(inbound("md5=", body), "")


def test_too_many_fields_are_refused() -> None:
    query, body, _ = smsc_callback(STATUS, secret=SECRET)
    padding = b"".join(b"&x%d=1" % n for n in range(100))
    rejected(inbound(query, body + padding))
    rejected(inbound(query, body + padding), None)


@pytest.mark.deep_nesting
def test_a_malformed_json_body_is_refused_with_a_secret_and_ignored_without() -> None:
    rejected(inbound("md5=mysecret&fmt=3", b"{not json", "application/json"))
    assert parse_callback(inbound("fmt=3", b"{not json", "application/json"), None) == []
    assert parse_callback(inbound("fmt=3", b'["a", 1]', "application/json"), None) == []
    rejected(inbound("md5=mysecret&fmt=3", b"[" * 60000, "application/json"))  # deeper than json can go


# --- charsets ------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("options_in_query", [False, True], ids=["posted", "after-!"])
@pytest.mark.parametrize("charset", ["windows-1251", "koi8-r", "utf-8"])
@pytest.mark.parametrize("fmt_json", [False, True], ids=["form", "json"])
@pytest.mark.parametrize("name", ["md5", "crc32"])
def test_cyrillic_text_in_every_charset(charset: str, fmt_json: bool, name: HashName, options_in_query: bool) -> None:
    query, body, content_type = smsc_callback(
        {**HELLO, "mes": TEXT},
        secret=SECRET,
        hash=name,
        charset=charset,
        fmt_json=fmt_json,
        options_in_query=options_in_query,
    )
    options = query.encode() if options_in_query else body
    assert (b"charset" in options) == (charset != "windows-1251")  # windows-1251 is SMSC's default: no option
    assert TEXT.encode("utf-8") not in body or charset == "utf-8"
    events = parse_callback(inbound(query, body, content_type), SECRET)
    assert [(e.text, e.phone) for e in events if isinstance(e, SmsReceived)] == [(TEXT, "+79991234567")]


@pytest.mark.parametrize("hash_encoding", ["utf-8", "windows-1251"])
@pytest.mark.parametrize("charset", ["windows-1251", "koi8-r", "utf-8"])
def test_the_hash_may_be_over_utf8_or_windows_1251_whatever_the_charset(charset: str, hash_encoding: str) -> None:
    events = parse({**HELLO, "mes": TEXT}, charset=charset, hash_encoding=hash_encoding)
    assert [e.text for e in events if isinstance(e, SmsReceived)] == [TEXT]


def test_the_default_charset_is_windows_1251() -> None:
    _, body, _ = smsc_callback({**HELLO, "mes": TEXT}, secret=None, charset="utf-8", options_in_query=True)
    (event,) = parse_callback(inbound("", body), None)  # UTF-8 bytes, but no charset option anywhere
    assert isinstance(event, SmsReceived) and event.text != TEXT
    assert event.text == TEXT.encode("utf-8").decode("windows-1251", errors="replace")


@pytest.mark.parametrize(
    ("option", "charset"),
    [("UTF-8", "utf-8"), ("Koi8-R", "koi8-r"), ("WINDOWS-1251", "windows-1251"), ("iso-8859-5", "windows-1251")],
)
def test_the_charset_option_ignores_case_and_unknown_ones_mean_windows_1251(option: str, charset: str) -> None:
    _, body, _ = smsc_callback({**HELLO, "mes": TEXT}, secret=SECRET, charset=charset)
    (event,) = parse_callback(inbound(f"md5=mysecret&charset={option}", body), SECRET)
    assert isinstance(event, SmsReceived) and event.text == TEXT


def test_json_in_utf8_is_read_as_utf8_even_when_the_charset_says_otherwise() -> None:
    # SMSC builds JSON with PHP's json_encode, which writes only UTF-8; which charset it really uses is unconfirmed.
    fields = {**HELLO, "mes": TEXT, "md5": callback_hash("md5", f"79991234567:{TEXT}:79990000000:mysecret".encode())}
    body = json.dumps(fields, ensure_ascii=False).encode("utf-8")
    for query in ("md5=mysecret&fmt=3", "md5=mysecret&charset=koi8-r&fmt=3"):
        (event,) = parse_callback(inbound(query, body, "application/json"), SECRET)
        assert isinstance(event, SmsReceived) and event.text == TEXT


# --- kinds and their fields ----------------------------------------------------------------------------------------


def test_kinds_are_told_apart_by_mes_then_waitcall() -> None:
    sms, call, status = (
        parse(fields) for fields in ({**STATUS, **CALL, **HELLO}, {**STATUS, **CALL}, {**STATUS, "ts": "1700000000"})
    )
    assert [type(e) for e in (*sms, *call, *status)] == [SmsReceived, CallReceived, DeliveryReport]
    (empty,) = parse({"phone": "79991234567", "mes": "", "to": "79990000000"})
    assert isinstance(empty, SmsReceived) and empty.text == ""


def test_an_incoming_sms_names_its_verification_by_sms_id() -> None:
    (event,) = parse({**HELLO, "id": "7781", "sms_id": "ab12cd34", "time": "1700000100", "sent": "1700000050"})
    assert bare(event) == SmsReceived(
        phone="+79991234567",
        text="Hello",
        received_at=1700000100.0,
        provider="smsc",
        verification_id="ab12cd34",
        reply_to="ab12cd34",
    )
    (event,) = parse({**HELLO, "sent": "1700000050"})
    assert isinstance(event, SmsReceived) and (event.received_at, event.verification_id) == (1700000050.0, "")
    (event,) = parse({**HELLO, "time": "21.11.24 10:05:00", "sent": "soon"})
    assert isinstance(event, SmsReceived) and event.received_at == 0.0


@pytest.mark.parametrize("fmt_json", [False, True], ids=["form", "json"])
def test_values_are_signed_and_kept_exactly_as_received(fmt_json: bool) -> None:
    (event,) = parse({"phone": "+79991234567", "mes": "  4821 \n", "to": "79990000000"}, fmt_json=fmt_json)
    assert isinstance(event, SmsReceived) and (event.phone, event.text) == ("+79991234567", "  4821 \n")
    (event,) = parse({**CALL, "phone": " 79991234567"}, fmt_json=fmt_json)
    assert bare(event) == EXPECTED["waitcall"]


def test_unsigned_fields_may_change_without_breaking_the_signature() -> None:
    # SMSC signs phone:mes:to only, so sms_id (and err, time...) are not protected: the service must check that
    # the verification named by sms_id belongs to the sender's phone.
    query, body, _ = smsc_callback({**HELLO, "sms_id": "aaaa"}, secret=SECRET)
    (event,) = parse_callback(inbound(query, body.replace(b"sms_id=aaaa", b"sms_id=bbbb")), SECRET)
    assert isinstance(event, SmsReceived) and event.verification_id == "bbbb"


@pytest.mark.parametrize(
    ("code", "status"),
    [
        ("-1", "sent"),
        ("0", "sent"),
        ("1", "delivered"),
        ("2", "delivered"),
        ("4", "delivered"),
        ("-3", "failed"),
        ("-2", "failed"),
        ("3", "failed"),
        ("20", "failed"),
        ("22", "failed"),
        ("23", "failed"),
        ("24", "failed"),
        ("25", "failed"),
        ("5", "sent"),
        ("21", "sent"),
        ("99", "sent"),
        ("-4", "sent"),
    ],
)
def test_every_status_code_maps(code: str, status: str) -> None:
    (event,) = parse({**STATUS, "status": code, "err": "0" if code != "20" else "13"})
    assert bare(event) == DeliveryReport(
        provider="smsc", message_id="12345", status=status, raw_status=code, verification_id="12345"
    )
    assert event.raw["err"] == ("13" if code == "20" else "0")


@pytest.mark.parametrize(
    "fields",
    [
        {"phone": "79991234567", "status": "1"},  # no id
        {**STATUS, "status": ""},
        {**STATUS, "status": "delivered"},
        {**STATUS, "status": "1.5"},
        {"phone": "", "mes": "Hello", "to": "79990000000"},
        {"mes": "Hello", "to": "79990000000"},  # no phone
        {"waitcall": "1", "ts": "1700000000"},
        {"waitcall": "1", "phone": "n/a", "ts": "1700000000"},
    ],
    ids=[
        "status-no-id",
        "status-empty",
        "status-word",
        "status-fraction",
        "sms-empty-phone",
        "sms-no-phone",
        "call-no-phone",
        "call-bad-phone",
    ],
)
def test_a_verified_callback_lacking_what_its_kind_needs_gives_no_event(fields: dict[str, str]) -> None:
    assert parse(fields) == []


@pytest.mark.parametrize("ts", ["", "nan", "inf", "1e9", "-1700000000", "1700000000abc", "1_700_000_000"])
def test_a_call_without_a_numeric_ts_is_refused(ts: str) -> None:
    fields = {**CALL, "ts": ts}
    query, body, _ = smsc_callback(fields, secret=SECRET)
    assert rejected(inbound(query, body)).detail == "smsc call callback without a numeric ts"
    rejected(inbound("", form(fields)), None)
    assert parse({**CALL, "ts": "1700000000.25"})[0] == CallReceived(
        "+79991234567",
        1700000000.25,
        {**CALL, "ts": "1700000000.25", "md5": callback_hash("md5", b"79991234567:1700000000.25:mysecret")},
    )


def test_a_call_without_ts_is_refused() -> None:
    fields = {"waitcall": "1", "phone": "79991234567"}
    rejected(inbound(*smsc_callback(fields, secret=SECRET)[:2]))
    rejected(inbound("", form(fields)), None)


def test_an_sms_signature_moved_to_a_call_confirms_nothing() -> None:
    # phone:mes:to and phone:ts hash the same string when phone="<phone>:<mes>" and ts="<to>", so a captured
    # inbound SMS would confirm a call far in the future. A ':' in a signed field other than mes gives no event.
    md5 = callback_hash("md5", b"79991234567:Hello:79990000000:mysecret")
    assert parse_callback(inbound("md5=mysecret", form({**HELLO, "md5": md5})), SECRET)
    forged = {"waitcall": "1", "phone": "79991234567:Hello", "ts": "79990000000", "md5": md5}
    assert parse_callback(inbound("md5=mysecret", form(forged)), SECRET) == []
    status = {
        "id": "12345:79991234567",
        "phone": "1",
        "status": "1",
        "md5": callback_hash("md5", b"12345:79991234567:1:1:mysecret"),
    }
    assert parse_callback(inbound("md5=mysecret", form(status)), SECRET) == []


# --- JSON ----------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "fields", [STATUS, {**STATUS, "status": "-1"}, HELLO, CALL], ids=["status", "sent", "sms", "call"]
)
@pytest.mark.parametrize("name", ["md5", "crc32"])
def test_json_numbers_are_read_leniently(fields: dict[str, str], name: HashName) -> None:
    query, body, content_type = smsc_callback(fields, secret=SECRET, hash=name, fmt_json=True, json_numbers=True)
    assert b'"phone": 79991234567' in body
    (event,) = parse_callback(inbound(query, body, content_type), SECRET)
    (as_strings,) = parse(fields, hash=name)
    assert bare(event) == bare(as_strings)


def test_a_json_float_ts_is_read_as_its_integer() -> None:
    body = json.dumps(
        {"waitcall": 1, "phone": 79991234567, "ts": 1700000000.0, "md5": "824f4d1893edecf084fff463e70dda66"}
    ).encode()
    (event,) = parse_callback(inbound("md5=mysecret&fmt=3", body, "application/json"), SECRET)
    assert bare(event) == EXPECTED["waitcall"]


@pytest.mark.parametrize(
    ("query", "content_type", "prefix"),
    [
        ("md5=mysecret&fmt=3", FORM, b"\xef\xbb\xbf"),
        ("md5=mysecret", "application/json; charset=utf-8", b"\xef\xbb\xbf"),
        ("md5=mysecret", "text/plain", b" \r\n"),
    ],
    ids=["fmt-3", "json-type", "brace"],
)
def test_json_is_recognized_by_fmt_content_type_or_brace(query: str, content_type: str, prefix: bytes) -> None:
    # A byte order mark hides the brace, so only fmt=3 or the content type can tell.
    _, body, _ = smsc_callback(STATUS, secret=SECRET, fmt_json=True)
    (event,) = parse_callback(inbound(query, prefix + body, content_type), SECRET)
    assert bare(event) == EXPECTED["status"]


def test_a_json_list_gives_one_event_per_object_each_verified() -> None:
    objects = [json.loads(smsc_callback(fields, secret=SECRET, fmt_json=True)[1]) for fields in (STATUS, CALL)]
    events = parse_callback(inbound("md5=mysecret&fmt=3", json.dumps(objects).encode(), "application/json"), SECRET)
    assert [bare(e) for e in events] == [EXPECTED["status"], EXPECTED["waitcall"]]
    objects[1]["ts"] = 1800000000
    rejected(inbound("md5=mysecret&fmt=3", json.dumps(objects).encode(), "application/json"))


# --- no secret, query parameters, raw ------------------------------------------------------------------------------


def test_without_a_secret_nothing_is_checked() -> None:
    assert [bare(e) for e in parse(STATUS, secret=None, signer=None)] == [EXPECTED["status"]]
    assert [bare(e) for e in parse(CALL, secret=None, signer="whatever")] == [EXPECTED["waitcall"]]


def test_query_parameters_join_raw_but_never_the_options() -> None:
    query, body, _ = smsc_callback({**STATUS, "campaign": "body"}, secret=SECRET, charset="utf-8")
    (event,) = parse_callback(inbound(f"{query}&campaign=query&site=eu&MD5=mysecret&fmt=0", body), SECRET)
    assert event.raw["campaign"] == "body" and event.raw["site"] == "eu"  # the body wins; the rest is kept
    assert event.raw["md5"] == "c4e3de83ec973176aab5c9d82cedd6d2"
    assert SECRET not in json.dumps(event.raw) and "fmt" not in event.raw and "MD5" not in event.raw


# --- post_callback -------------------------------------------------------------------------------------------------


class Handler(Emulator):
    """Our handler as SMSC sees it: records the callback, answers 200."""

    def answer(self, request: Request, seen: Seen) -> Response:
        return Response("OK", mimetype="text/plain")


@pytest.fixture
def handler() -> Iterator[Handler]:
    handler = Handler()
    handler.start()
    yield handler
    handler.stop()


@pytest.mark.parametrize("fmt_json", [False, True], ids=["form", "json"])
def test_post_callback_delivers_what_smsc_would(handler: Handler, fmt_json: bool) -> None:
    response = post_callback(
        handler.url + "webhooks/smsc",
        {**HELLO, "mes": TEXT},
        secret=SECRET,
        hash="sha1",
        charset="koi8-r",
        fmt_json=fmt_json,
    )
    assert response.status_code == 200
    seen = handler.last
    assert (seen.method, seen.path) == ("POST", "/webhooks/smsc")
    assert seen.query == {} and SECRET.encode() not in seen.body  # posted, and only the hash travels
    options = json.loads(seen.body.decode("koi8-r")) if fmt_json else dict(parse_qsl(seen.body.decode("ascii")))
    assert {k: options[k] for k in ("charset", "fmt") if k in options} == {
        "charset": "koi8-r",
        **({"fmt": "3"} if fmt_json else {}),
    }
    (event,) = parse_callback(inbound(urlencode(seen.query), seen.body, seen.headers["Content-Type"]), SECRET)
    assert isinstance(event, SmsReceived) and event.text == TEXT
