"""The hook gateway's delivery reports: the signature (docs/gateways/hook.md §2), the report vector (§4), refusals, key
rotation, age, the replay nonce, and the mapping of a report (§4)."""

from __future__ import annotations

import hashlib
import json
from typing import Any

import pytest

from tests.providers.hook_emulator import SECRET, mac, report_body, signed_headers
from tests.providers.webhook_contract import only_event
from verify import events
from verify.errors import WebhookRejected
from verify.providers.base import DeliveryReport, Inbound, Webhook
from verify.providers.hook import HookSettings
from verify.providers.hook_webhooks import WEBHOOKS, parse_report, parse_webhook, read_signature, signature

NOW = 1_700_000_060
MAX_AGE = 900
OLD_SECRET = "hook-secret-older-456789"
VID = "abcd0123456789abcdef01234567"
# The report vector of docs/gateways/hook.md §4, copied exactly.
VECTOR_BODY = b'{"id":"abcd0123456789abcdef01234567","message_id":"rcv-1","status":"delivered","timestamp":1700000060}'
VECTOR_SIGNATURE = "t=1700000060,v1=323a284f43c07314cf414fd508c503c903e4856a8333fd9e3f6f569e6dc003d6"
VECTOR_NONCE = "7b936592f2bd990037ffd7185fa812905d1e96a2aadae13c4de9c9082786238d"


def inbound(body: bytes, headers: dict[str, str]) -> Inbound:
    return Inbound("POST", b"", body, "application/json", headers)


def signed(body: bytes, *, secret: str = SECRET, at: int = NOW) -> Inbound:
    return inbound(body, signed_headers(secret, at, body))


def with_header(body: bytes, header: str) -> Inbound:
    return inbound(body, {"Content-Type": "application/json", "Verify-Signature": header})


def report(status: str = "delivered", **fields: Any) -> bytes:
    return report_body(status, verification_id=fields.pop("verification_id", VID), **fields)


def parse(request: Inbound, *, now: float = NOW, secrets: tuple[str, ...] = (SECRET,)) -> Webhook:
    return parse_report(request, secrets, now, MAX_AGE)


def forbidden(request: Inbound, *, now: float = NOW, secrets: tuple[str, ...] = (SECRET,)) -> str:
    with pytest.raises(WebhookRejected) as caught:
        parse(request, now=now, secrets=secrets)
    assert caught.value.status == 403
    return caught.value.detail


def report_of(webhook: Webhook) -> DeliveryReport:
    return only_event(webhook, DeliveryReport)


# --- the vector of docs/gateways/hook.md §4 -----------------------------------------------------------------------


def test_the_vector_signature() -> None:
    assert signature(SECRET, NOW, VECTOR_BODY) == VECTOR_SIGNATURE
    assert signed_headers(SECRET, NOW, VECTOR_BODY)["Verify-Signature"] == VECTOR_SIGNATURE
    assert events.signature(SECRET, NOW, VECTOR_BODY) == VECTOR_SIGNATURE  # the events' very scheme


def test_the_vector_verifies_and_maps() -> None:
    webhook = parse(with_header(VECTOR_BODY, VECTOR_SIGNATURE))
    assert report_of(webhook) == DeliveryReport(
        provider="hook",
        message_id="rcv-1",
        status="delivered",
        raw_status="delivered",
        verification_id=VID,
        raw=json.loads(VECTOR_BODY),
    )
    assert webhook.nonce == VECTOR_NONCE == hashlib.sha256(b"1700000060." + VECTOR_BODY).hexdigest()


def test_the_emulator_writes_the_vector_body() -> None:
    assert report_body("delivered", verification_id=VID, message_id="rcv-1", timestamp=NOW) == VECTOR_BODY


# --- reading the header ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ("t=1,v1=" + "a" * 64, ("1", ["a" * 64])),
        (" v1=" + "A" * 64 + " , t=1 ", ("1", ["a" * 64])),
        ("t=1,v0=" + "b" * 64 + ",v1=" + "a" * 64, ("1", ["a" * 64])),
        ("t=1,v1=xyz,v1=" + "a" * 64 + ",v1=" + "c" * 64, ("1", ["a" * 64, "c" * 64])),
        ("t=1," + ",".join(f"v1={i:064x}" for i in range(10)), ("1", [f"{i:064x}" for i in range(8)])),
    ],
    ids=["plain", "order-spaces-case", "v0-ignored", "several-v1", "at-most-8"],
)
def test_the_header_is_read_leniently(header: str, expected: tuple[str, list[str]]) -> None:
    assert read_signature(header) == expected


# --- rejections -----------------------------------------------------------------------------------------------------


def test_a_missing_signature_is_rejected() -> None:
    assert (
        forbidden(inbound(report(), {"Content-Type": "application/json"})) == "hook report without a Verify-Signature"
    )


@pytest.mark.parametrize(
    "header",
    [
        "v1=" + "a" * 64,
        "t=,v1=" + "a" * 64,
        "t=soon,v1=" + "a" * 64,
        "t=1700000060.5,v1=" + "a" * 64,
        "t=-1700000060,v1=" + "a" * 64,
        "t=1700000060000000,v1=" + "a" * 64,
        "t=1,t=2,v1=" + "a" * 64,
    ],
    ids=["no-t", "empty", "word", "fraction", "negative", "too-long", "two-t"],
)
def test_an_unreadable_t_is_rejected(header: str) -> None:
    assert "readable t" in forbidden(with_header(report(), header))


@pytest.mark.parametrize(
    "mac_part",
    ["", "v1=", "v1=" + "0" * 63, "v1=" + "0" * 65, "v1=" + "z" * 64, "v0=" + "0" * 64, "sha256=" + "0" * 64],
    ids=["none", "empty", "63", "65", "not-hex", "v0-only", "other-name"],
)
def test_a_header_without_a_v1_of_64_hex_digits_is_rejected(mac_part: str) -> None:
    assert "v1 of 64 hex digits" in forbidden(with_header(report(), f"t={NOW},{mac_part}"))


def test_a_report_signed_with_another_secret_is_rejected() -> None:
    assert forbidden(signed(report(), secret="a-guessed-secret-0000")) == "hook report signature does not match"


def test_an_altered_body_or_t_is_rejected() -> None:
    genuine = signed(report(message_id="someone-else"))
    assert "does not match" in forbidden(inbound(genuine.body.replace(b"someone-else", b"rcv-1"), genuine.headers))
    later = with_header(genuine.body, genuine.headers["Verify-Signature"].replace(f"t={NOW}", f"t={NOW - 1}"))
    assert "does not match" in forbidden(later)
    assert report_of(parse(genuine)).message_id == "someone-else"  # the control: unaltered, it verifies


def test_a_body_with_one_more_byte_is_rejected() -> None:
    genuine = signed(report())
    assert "does not match" in forbidden(inbound(genuine.body + b"\n", genuine.headers))


def test_rejections_never_tell_the_secret_or_the_expected_signature() -> None:
    body = report()
    expected = mac(SECRET, NOW, body)
    reasons = [
        forbidden(signed(body, secret="a-guessed-secret-0000")),
        forbidden(with_header(body, f"t={NOW},v1={'0' * 64}")),
        forbidden(signed(body), now=NOW + MAX_AGE + 1),
    ]
    for reason in reasons:
        assert SECRET not in reason and expected not in reason


def test_no_secret_refuses_every_report_and_an_empty_secret_is_no_key() -> None:
    assert "does not match" in forbidden(signed(report()), secrets=())
    assert "does not match" in forbidden(signed(report(), secret=""), secrets=("",))


# --- key rotation ---------------------------------------------------------------------------------------------------


def test_any_listed_secret_verifies_during_a_rotation() -> None:
    signed_with_old = signed(report(), secret=OLD_SECRET)
    assert report_of(parse(signed_with_old, secrets=(SECRET, OLD_SECRET))).status == "delivered"
    assert report_of(parse(signed(report()), secrets=(SECRET, OLD_SECRET))).status == "delivered"
    assert "does not match" in forbidden(signed_with_old, secrets=(SECRET,))


def test_one_matching_v1_among_several_verifies() -> None:
    """A sender rotating its key may sign with both: the header then has two v1, and one that matches is enough."""
    body = report()
    header = f"t={NOW},v1={mac('not-ours-any-more-000', NOW, body)},v1={mac(OLD_SECRET, NOW, body)}"
    assert report_of(parse(with_header(body, header), secrets=(SECRET, OLD_SECRET))).status == "delivered"
    assert "does not match" in forbidden(with_header(body, header), secrets=(SECRET,))


def test_parse_webhook_reads_the_settings_secrets() -> None:
    settings = HookSettings(url="https://h.example/", secrets=(SECRET, OLD_SECRET))
    webhook = parse_webhook("report", signed(report(), secret=OLD_SECRET), {}, settings, NOW, MAX_AGE)
    assert report_of(webhook).verification_id == VID
    only_new = HookSettings(url="https://h.example/", secrets=(SECRET,))
    with pytest.raises(WebhookRejected):
        parse_webhook("report", signed(report(), secret=OLD_SECRET), {}, only_new, NOW, MAX_AGE)


# --- age ------------------------------------------------------------------------------------------------------------


def test_a_stale_report_is_rejected() -> None:
    assert parse(signed(report()), now=NOW + MAX_AGE).events
    assert "stale" in forbidden(signed(report()), now=NOW + MAX_AGE + 1)


def test_a_report_beyond_the_skew_is_rejected() -> None:
    assert parse(signed(report()), now=NOW - 60).events
    assert "future" in forbidden(signed(report()), now=NOW - 61)


def test_the_skew_and_max_age_are_the_callers() -> None:
    request = signed(report())
    assert parse_report(request, (SECRET,), NOW - 120, MAX_AGE, skew=120).events
    with pytest.raises(WebhookRejected):
        parse_report(request, (SECRET,), NOW - 121, MAX_AGE, skew=120)
    with pytest.raises(WebhookRejected):
        parse_report(request, (SECRET,), NOW + 11, 10)


def test_the_signature_is_checked_before_the_age() -> None:
    """A forged report is refused as forged, whatever time it claims."""
    forged = signed(report(), secret="a-guessed-secret-0000")
    assert "does not match" in forbidden(forged, now=NOW + 10 * MAX_AGE)


# --- the replay nonce -----------------------------------------------------------------------------------------------


def test_the_same_bytes_give_the_same_nonce() -> None:
    body = report()
    assert (
        parse(signed(body)).nonce == parse(signed(body)).nonce == hashlib.sha256(f"{NOW}.".encode() + body).hexdigest()
    )


def test_the_same_report_under_another_key_or_header_is_the_same_nonce() -> None:
    """A captured report of a rotation, replayed with its other signature only, or with its v1 entries reordered,
    is still a replay."""
    body = report()
    both = (SECRET, OLD_SECRET)
    new, old = mac(SECRET, NOW, body), mac(OLD_SECRET, NOW, body)
    nonces = {
        parse(with_header(body, f"t={NOW},v1={new},v1={old}"), secrets=both).nonce,
        parse(with_header(body, f"v1={old},t={NOW},v1={new}"), secrets=both).nonce,
        parse(with_header(body, f"t={NOW},v1={old}"), secrets=both).nonce,
        parse(with_header(body, f"t={NOW},v1={new.upper()}"), secrets=both).nonce,
    }
    assert len(nonces) == 1


def test_a_report_signed_afresh_is_a_new_nonce() -> None:
    """The customer retrying a report at a new time is not a replay, and neither is the next status."""
    body = report()
    nonces = {parse(signed(body)).nonce, parse(signed(body, at=NOW + 1), now=NOW + 1).nonce}
    nonces.add(parse(signed(report("read"))).nonce)
    assert len(nonces) == 3


def test_header_names_in_any_case() -> None:
    request = signed(report())
    lower = {name.lower(): value for name, value in request.headers.items()}
    assert parse(inbound(request.body, lower)).events


# --- mapping --------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw_status", "status"),
    [
        ("delivered", "delivered"),
        ("DELIVERED", "delivered"),
        ("read", "read"),
        ("failed", "failed"),
        ("undelivered", "failed"),
        ("expired", "failed"),
        ("rejected", "failed"),
        ("canceled", "failed"),
        ("cancelled", "failed"),
        ("sent", "sent"),
        ("queued", "sent"),
        ("accepted", "sent"),
        ("something_new", "sent"),
    ],
)
def test_statuses(raw_status: str, status: str) -> None:
    event = report_of(parse(signed(report(raw_status))))
    assert (event.status, event.raw_status) == (status, raw_status)


@pytest.mark.parametrize(
    ("fields", "message_id", "verification_id"),
    [
        ({"verification_id": VID}, VID, VID),  # no message_id answered at send: ours is the message id
        ({"verification_id": VID, "message_id": "SM123"}, "SM123", VID),
        ({"verification_id": None, "message_id": "SM123"}, "SM123", ""),  # found by the message id alone
    ],
    ids=["id", "both", "message-id"],
)
def test_the_message_is_named_by_message_id_or_id(
    fields: dict[str, Any], message_id: str, verification_id: str
) -> None:
    event = report_of(parse(signed(report(**fields))))
    assert (event.message_id, event.verification_id, event.provider) == (message_id, verification_id, "hook")


def test_numbers_as_ids_and_extra_members() -> None:
    body = b'{"id":123,"message_id":456.0,"status":"failed","timestamp":"2026-12-07T10:00:00Z","error":"30003"}'
    event = report_of(parse(signed(body)))
    assert (event.message_id, event.verification_id, event.status) == ("456", "123", "failed")
    assert event.raw["error"] == "30003" and event.raw["timestamp"] == "2026-12-07T10:00:00Z"


def test_a_long_status_is_cut() -> None:
    event = report_of(parse(signed(report("x" * 100))))
    assert (event.status, event.raw_status) == ("sent", "x" * 64)


@pytest.mark.parametrize(
    "body",
    [
        b"",
        b"not json",
        b"[1, 2]",
        b'[{"id":"abcd0123456789abcdef01234567","status":"delivered"}]',
        b'"delivered"',
        b'{"id":"abcd0123456789abcdef01234567"}',
        b'{"status":"delivered"}',
        b'{"id":"","message_id":null,"status":"delivered"}',
        b'{"id":"abcd0123456789abcdef01234567","status":""}',
        b'{"id":"abcd0123456789abcdef01234567","status":{"code":"delivered"}}',
    ],
)
def test_a_verified_body_that_is_no_report_gives_no_events(body: bytes) -> None:
    webhook = parse(signed(body))
    assert webhook == Webhook([], hashlib.sha256(f"{NOW}.".encode() + body).hexdigest())


def test_the_route() -> None:
    (route,) = WEBHOOKS
    assert (route.rule, route.methods, route.name, route.ack) == ("/hook", ("POST",), "report", "OK")
