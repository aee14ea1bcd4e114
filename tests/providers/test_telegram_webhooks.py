"""Telegram Gateway reports: the signature vector of docs/gateways/telegram.md §8, every rejection, key rotation,
the age window, the replay nonce, the status mapping and lenient parsing, and reports posted over the wire by the
emulator."""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Iterator
from typing import Any

import pytest
from werkzeug.wrappers import Request, Response

from tests.providers.contract import MESSAGE
from tests.providers.emulator import Emulator, Seen
from tests.providers.telegram_emulator import TOKEN, TelegramEmulator, report_body, signed_headers
from tests.providers.webhook_contract import only_event
from verify.errors import WebhookRejected
from verify.providers.base import DeliveryReport, Http, Inbound, Webhook
from verify.providers.telegram import TelegramProvider, TelegramSettings
from verify.providers.telegram_webhooks import WEBHOOKS, parse_report, parse_webhook, signature

# docs/gateways/telegram.md §8, copied exactly.
VECTOR_TOKEN = "123456:test-gateway-token"
VECTOR_TIMESTAMP = "1700000000"
VECTOR_BODY = (
    b'{"request_id":"abc123","phone_number":"+79991234567","request_cost":0.01,'
    b'"delivery_status":{"status":"delivered","updated_at":1700000000}}'
)
VECTOR_SIGNATURE = "f66233d4be10998f455a7a2b79bba6d9fb1160de0da87f24f89fb23a32be3b4d"
NOW = 1700000000
MAX_AGE = 900
OLD_TOKEN = "654321:older-gateway-token"
VID = "abcd0123456789abcdef01234567"


def inbound(body: bytes, headers: dict[str, str]) -> Inbound:
    return Inbound("POST", b"", body, "application/json", headers)


def vector() -> Inbound:
    return inbound(
        VECTOR_BODY,
        {
            "Content-Type": "application/json",
            "X-Request-Timestamp": VECTOR_TIMESTAMP,
            "X-Request-Signature": VECTOR_SIGNATURE,
        },
    )


def signed(body: bytes, *, token: str = TOKEN, at: int = NOW) -> Inbound:
    return inbound(body, signed_headers(token, at, body))


def report(status: str = "delivered", **fields: Any) -> bytes:
    return report_body(fields.pop("request_id", "abc123"), "+79991234567", status, NOW, **fields)


def parse(request: Inbound, *, now: float = NOW, tokens: tuple[str, ...] = (TOKEN,)) -> Webhook:
    return parse_report(request, tokens, now, MAX_AGE)


def forbidden(request: Inbound, *, now: float = NOW, tokens: tuple[str, ...] = (TOKEN,)) -> str:
    with pytest.raises(WebhookRejected) as caught:
        parse(request, now=now, tokens=tokens)
    assert caught.value.status == 403
    return caught.value.detail


def report_of(webhook: Webhook) -> DeliveryReport:
    return only_event(webhook, DeliveryReport)


# --- the vector of docs/gateways/telegram.md §8 -----------------------------------------------------------------


def test_the_vector_signature() -> None:
    assert signature(VECTOR_TOKEN, VECTOR_TIMESTAMP, VECTOR_BODY) == VECTOR_SIGNATURE
    assert signed_headers(VECTOR_TOKEN, VECTOR_TIMESTAMP, VECTOR_BODY)["X-Request-Signature"] == VECTOR_SIGNATURE


def test_the_vector_verifies_and_maps() -> None:
    webhook = parse(vector(), tokens=(VECTOR_TOKEN,))
    assert report_of(webhook) == DeliveryReport(
        provider="telegram",
        message_id="abc123",
        status="delivered",
        raw_status="delivered",
        verification_id="",
        raw=json.loads(VECTOR_BODY),
        cost=0.01,
        refunded=False,
    )
    assert report_of(webhook).raw["request_cost"] == 0.01
    assert webhook.nonce == VECTOR_SIGNATURE


def test_the_emulator_writes_the_vector_body() -> None:
    assert report_body("abc123", "+79991234567", "delivered", NOW) == VECTOR_BODY


def test_the_key_is_the_raw_sha256_of_the_token_not_the_token_or_its_hex() -> None:
    """The two easy mistakes give other signatures, which are refused."""
    message = VECTOR_TIMESTAMP.encode() + b"\n" + VECTOR_BODY
    for key in (VECTOR_TOKEN.encode(), hashlib.sha256(VECTOR_TOKEN.encode()).hexdigest().encode()):
        wrong = hmac.new(key, message, hashlib.sha256).hexdigest()
        assert wrong != VECTOR_SIGNATURE
        headers = {"X-Request-Timestamp": VECTOR_TIMESTAMP, "X-Request-Signature": wrong}
        assert "does not match" in forbidden(inbound(VECTOR_BODY, headers), tokens=(VECTOR_TOKEN,))


# --- rejections -----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("missing", ["X-Request-Signature", "X-Request-Timestamp"])
def test_a_missing_header_is_rejected(missing: str) -> None:
    headers = signed_headers(TOKEN, NOW, report())
    del headers[missing]
    reason = forbidden(inbound(report(), headers))
    assert ("signature" if missing == "X-Request-Signature" else "timestamp") in reason


@pytest.mark.parametrize("stamp", ["", "soon", "1700000000.5", "-1700000000", "1e9", "17000000000000"])
def test_an_unreadable_timestamp_is_rejected(stamp: str) -> None:
    body = report()
    headers = {"X-Request-Timestamp": stamp, "X-Request-Signature": signature(TOKEN, stamp, body)}
    assert "timestamp" in forbidden(inbound(body, headers))


@pytest.mark.parametrize("given", ["0" * 63, "0" * 65, "z" * 64, VECTOR_SIGNATURE[:-1] + " ", "sha256=" + "0" * 64])
def test_a_signature_that_is_not_64_hex_digits_is_rejected(given: str) -> None:
    headers = {"X-Request-Timestamp": VECTOR_TIMESTAMP, "X-Request-Signature": given}
    assert forbidden(inbound(VECTOR_BODY, headers), tokens=(VECTOR_TOKEN,))


def test_a_report_signed_with_another_token_is_rejected() -> None:
    assert forbidden(signed(report(), token="999:not-ours")) == "telegram report signature does not match"


def test_an_altered_body_or_timestamp_is_rejected() -> None:
    genuine = signed(report(request_id="someone-else"))
    body = genuine.body.replace(b"someone-else", b"abc123")
    assert "does not match" in forbidden(inbound(body, genuine.headers))
    later = {**genuine.headers, "X-Request-Timestamp": str(NOW + 1)}
    assert "does not match" in forbidden(inbound(genuine.body, later))
    assert report_of(parse(genuine)).message_id == "someone-else"


def test_a_body_with_one_more_byte_is_rejected() -> None:
    genuine = signed(report())
    assert "does not match" in forbidden(inbound(genuine.body + b"\n", genuine.headers))


def test_rejections_never_tell_the_token_or_the_expected_signature() -> None:
    body = report()
    expected = signature(TOKEN, str(NOW), body)
    reasons = [
        forbidden(signed(body, token="999:not-ours")),
        forbidden(inbound(body, {"X-Request-Timestamp": str(NOW), "X-Request-Signature": "0" * 64})),
        forbidden(signed(body), now=NOW + MAX_AGE + 1),
    ]
    for reason in reasons:
        assert TOKEN not in reason and expected not in reason


def test_no_token_refuses_every_report_and_an_empty_token_is_no_key() -> None:
    assert "does not match" in forbidden(signed(report()), tokens=())
    assert "does not match" in forbidden(signed(report(), token=""), tokens=("",))


# --- key rotation ---------------------------------------------------------------------------------------------------


def test_any_listed_token_verifies_during_a_rotation() -> None:
    signed_with_old = signed(report(), token=OLD_TOKEN)
    assert report_of(parse(signed_with_old, tokens=(TOKEN, OLD_TOKEN))).status == "delivered"
    assert report_of(parse(signed(report()), tokens=(TOKEN, OLD_TOKEN))).status == "delivered"
    assert "does not match" in forbidden(signed_with_old, tokens=(TOKEN,))


def test_parse_webhook_reads_the_settings_tokens() -> None:
    settings = TelegramSettings(tokens=(TOKEN, OLD_TOKEN))
    webhook = parse_webhook("report", signed(report(), token=OLD_TOKEN), {}, settings, NOW, MAX_AGE)
    assert report_of(webhook).message_id == "abc123"
    with pytest.raises(WebhookRejected):
        parse_webhook("report", signed(report(), token=OLD_TOKEN), {}, TelegramSettings(tokens=(TOKEN,)), NOW, 900)


# --- age ------------------------------------------------------------------------------------------------------------


def test_a_stale_timestamp_is_rejected() -> None:
    assert parse(signed(report()), now=NOW + MAX_AGE).events
    assert "stale" in forbidden(signed(report()), now=NOW + MAX_AGE + 1)


def test_a_timestamp_beyond_the_skew_is_rejected() -> None:
    assert parse(signed(report()), now=NOW - 60).events
    assert "future" in forbidden(signed(report()), now=NOW - 61)


def test_the_skew_and_max_age_are_the_callers() -> None:
    request = signed(report())
    assert parse_report(request, (TOKEN,), NOW - 120, MAX_AGE, skew=120).events
    with pytest.raises(WebhookRejected):
        parse_report(request, (TOKEN,), NOW - 121, MAX_AGE, skew=120)
    with pytest.raises(WebhookRejected):
        parse_report(request, (TOKEN,), NOW + 11, 10)


def test_the_signature_is_checked_before_the_age() -> None:
    """A forged report is refused as forged, whatever time it claims."""
    assert "does not match" in forbidden(signed(report(), token="999:not-ours"), now=NOW + 10 * MAX_AGE)


# --- the replay nonce -----------------------------------------------------------------------------------------------


def test_the_same_bytes_give_the_same_nonce() -> None:
    body = report()
    first, second = parse(signed(body)), parse(signed(body))
    assert first.nonce == second.nonce == signature(TOKEN, str(NOW), body)


def test_a_report_signed_afresh_is_a_new_nonce() -> None:
    """Telegram retrying a report at a new time is not a replay, and neither is the next status."""
    body = report()
    nonces = {parse(signed(body)).nonce, parse(signed(body, at=NOW + 1), now=NOW + 1).nonce}
    nonces.add(parse(signed(report("read"))).nonce)
    assert len(nonces) == 3


def test_an_uppercase_signature_verifies_with_the_same_nonce() -> None:
    """Upper case is the same signature: a replay cannot pass as new by changing its case."""
    request = signed(report())
    upper = {**request.headers, "X-Request-Signature": request.headers["X-Request-Signature"].upper()}
    assert parse(inbound(request.body, upper)).nonce == parse(request).nonce


def test_header_names_in_any_case() -> None:
    request = signed(report())
    lower = {name.lower(): value for name, value in request.headers.items()}
    assert parse(inbound(request.body, lower)).events


# --- mapping --------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw_status", "status"),
    [
        ("sent", "sent"),
        ("delivered", "delivered"),
        ("read", "read"),
        ("expired", "failed"),
        ("revoked", "revoked"),
        ("Delivered", "delivered"),
        ("something_new", "sent"),
    ],
)
def test_statuses(raw_status: str, status: str) -> None:
    event = report_of(parse(signed(report(raw_status))))
    assert (event.status, event.raw_status) == (status, raw_status)


def test_the_payload_is_our_verification_id_and_cost_and_refund_are_kept() -> None:
    event = report_of(parse(signed(report("expired", payload=VID, refunded=True))))
    assert event.verification_id == VID and event.status == "failed"
    assert event.raw["request_cost"] == 0.01 and event.raw["is_refunded"] is True
    assert (event.cost, event.refunded) == (0.01, True)


def test_numbers_as_strings_and_missing_optional_fields() -> None:
    body = b'{"request_id":123,"request_cost":"0.01","delivery_status":{"status":"read","updated_at":"1700000000"}}'
    event = report_of(parse(signed(body)))
    assert (event.message_id, event.status, event.verification_id) == ("123", "read", "")
    assert event.raw["request_cost"] == "0.01" and (event.cost, event.refunded) == (0.01, False)


@pytest.mark.parametrize("cost", ['"free"', "-1", "null", '"nan"', "true"])
def test_a_cost_that_is_not_a_price_is_not_said(cost: str) -> None:
    body = b'{"request_id":"r1","request_cost":%s,"delivery_status":{"status":"delivered"}}' % cost.encode()
    assert report_of(parse(signed(body))).cost is None


def test_a_payload_that_is_not_text_is_no_verification_id() -> None:
    body = report(payload=None)
    document = {**json.loads(body), "payload": {"id": VID}}
    assert report_of(parse(signed(json.dumps(document).encode()))).verification_id == ""


@pytest.mark.parametrize(
    "body",
    [
        b"",
        b"not json",
        b"[1, 2]",
        b'"abc123"',
        b'{"phone_number":"+79991234567"}',
        b'{"request_id":"abc123"}',
        b'{"request_id":"abc123","delivery_status":null}',
        b'{"request_id":"abc123","delivery_status":{"updated_at":1}}',
        b'{"request_id":"","delivery_status":{"status":"delivered"}}',
        b'{"request_id":"abc123","verification_status":{"status":"code_valid","updated_at":1}}',
    ],
)
def test_a_verified_body_without_a_delivery_status_gives_no_events(body: bytes) -> None:
    webhook = parse(signed(body))
    assert webhook == Webhook([], signature(TOKEN, str(NOW), body))


def test_the_route() -> None:
    (route,) = WEBHOOKS
    assert (route.rule, route.methods, route.ack) == ("/telegram", ("POST",), "OK")


# --- over the wire --------------------------------------------------------------------------------------------------


class Receiver(Emulator):
    """Our side of the report: parses it at the emulator's time, refuses a nonce seen before, answers as the app."""

    def __init__(self, now: float) -> None:
        super().__init__()
        self.now = now
        self.nonces: set[str] = set()
        self.webhooks: list[Webhook] = []

    def answer(self, request: Request, seen: Seen) -> Response:
        arrived = Inbound(request.method, request.query_string, seen.body, request.mimetype, dict(request.headers))
        try:
            webhook = parse_report(arrived, (TOKEN,), self.now, MAX_AGE)
            if webhook.nonce in self.nonces:
                raise WebhookRejected("this nonce was seen before: a replayed request")
        except WebhookRejected as err:
            return Response(err.detail, err.status)
        self.nonces.add(webhook.nonce)
        self.webhooks.append(webhook)
        return Response("OK", 200)


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    receiver = Receiver(NOW)
    receiver.start()
    yield receiver
    receiver.stop()


@pytest.fixture
def emulator() -> Iterator[TelegramEmulator]:
    emulator = TelegramEmulator(clock=lambda: NOW)
    emulator.allow_http = True
    emulator.start()
    yield emulator
    emulator.stop()


def sent_through(emulator: TelegramEmulator, receiver: Receiver) -> str:
    """Send :data:`MESSAGE` with the receiver as our public URL; the request id."""
    http = Http(1.0, 2.0)
    provider = TelegramProvider(TelegramSettings(tokens=(TOKEN,), url=emulator.url), http, receiver.url.rstrip("/"))
    try:
        return provider.send_sms(MESSAGE).message_id
    finally:
        http.session.close()


def test_reports_reach_the_callback_url_signed(emulator: TelegramEmulator, receiver: Receiver) -> None:
    request_id = sent_through(emulator, receiver)
    for status, ours in (("delivered", "delivered"), ("read", "read")):
        response = emulator.post_report(request_id, status)
        assert (response.status_code, response.text) == (200, "OK")
        event = report_of(receiver.webhooks[-1])
        assert (event.message_id, event.status, event.verification_id) == (request_id, ours, MESSAGE.verification_id)
    assert receiver.last.path == "/webhooks/telegram" and receiver.last.method == "POST"
    assert receiver.last.body == emulator.posted[-1].body


def test_an_expired_report_carries_the_refund(emulator: TelegramEmulator, receiver: Receiver) -> None:
    request_id = sent_through(emulator, receiver)
    assert emulator.post_report(request_id, "expired").ok
    event = report_of(receiver.webhooks[-1])
    assert event.status == "failed" and event.raw["is_refunded"] is True


def test_a_bad_signature_a_stale_report_and_a_replay_are_refused(
    emulator: TelegramEmulator, receiver: Receiver
) -> None:
    request_id = sent_through(emulator, receiver)
    assert emulator.post_report(request_id, "delivered", token="999:not-ours").status_code == 403
    assert emulator.post_report(request_id, "delivered", at=NOW - MAX_AGE - 1).status_code == 403
    assert receiver.webhooks == []
    assert emulator.post_report(request_id, "delivered").status_code == 200
    replayed = emulator.replay()
    assert (replayed.status_code, replayed.text) == (403, "this nonce was seen before: a replayed request")
    assert receiver.requests[-1].body == receiver.requests[-2].body
    assert receiver.requests[-1].headers["X-Request-Signature"] == receiver.requests[-2].headers["X-Request-Signature"]
    assert len(receiver.webhooks) == 1
