"""Codes bound to a payment (issue 21 §2, PSD2 dynamic linking), through the API over the real Redis: the text shows
what the code approves, a check must name it again (another one costs an attempt like a wrong code), the proof
token carries it, and ``VERIFY_PSD2`` requires it."""

from __future__ import annotations

import re
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import redis
from flask.testing import FlaskClient

from tests.conftest import AUTH, PHONE, MovableClock, make_settings, start
from tests.servers import Call, gunicorn_server, send
from verify import create_app
from verify.embedded import EmbeddedRedis

PAYMENT = {"amount": "12.50", "currency": "EUR", "payee": "Shop Ltd"}


def messages(client: FlaskClient, phone: str = PHONE) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = client.get("/sandbox/messages", query_string={"phone": phone}).get_json()["messages"]
    return found


def check(client: FlaskClient, vid: str, code: str, context: dict[str, str] | None = None) -> Any:
    body: dict[str, Any] = {"code": code}
    if context is not None:
        body["context"] = context
    return client.post(f"/v1/verifications/{vid}/check", json=body, headers=AUTH)


def test_a_payment_s_text_shows_what_the_code_approves(client: FlaskClient) -> None:
    started = start(client, context=PAYMENT)
    assert started.status_code == 201
    assert started.get_json()["context"] == PAYMENT
    (message,) = messages(client)
    assert message["text"] == f"{message['code']} is your Verify code to pay 12.50 EUR to Shop Ltd. Expires in 15 min."


def test_a_spoken_payment_says_it_too(client: FlaskClient) -> None:
    start(client, channel="voice", locale="ru", context=PAYMENT)
    (message,) = messages(client)
    spoken = ", ".join(message["code"])
    assert message["channel"] == "voice"
    assert message["text"] == (f"Код Verify для оплаты 12.50 EUR, получатель Shop Ltd: {spoken}. Повторяю: {spoken}.")


def test_the_right_code_with_its_payment_approves_and_the_token_carries_it(client: FlaskClient) -> None:
    vid = start(client, context=PAYMENT).get_json()["id"]
    code = messages(client)[0]["code"]
    approved = check(client, vid, code, PAYMENT)
    assert approved.status_code == 200
    body = approved.get_json()
    assert body["status"] == "approved" and body["context"] == PAYMENT
    proof = client.post("/v1/tokens/verify", json={"token": body["token"]}, headers=AUTH).get_json()
    assert proof["valid"] and proof["context"] == PAYMENT and proof["verification_id"] == vid


@pytest.mark.parametrize(
    "other",
    [
        {**PAYMENT, "amount": "1250"},
        {**PAYMENT, "amount": "12.5"},
        {**PAYMENT, "currency": "USD"},
        {**PAYMENT, "payee": "Shop Ltd."},
        None,
    ],
)
def test_a_check_naming_another_payment_is_a_wrong_code_and_costs_an_attempt(
    client: FlaskClient, other: dict[str, str] | None
) -> None:
    vid = start(client, context=PAYMENT).get_json()["id"]
    code = messages(client)[0]["code"]
    refused = check(client, vid, code, other)
    assert refused.status_code == 422 and refused.get_json()["type"] == "/problems/invalid-code"
    assert refused.get_json()["attempts_left"] == 4
    assert check(client, vid, code, PAYMENT).get_json()["status"] == "approved"


def test_a_payment_context_on_a_verification_of_no_payment_is_a_wrong_code(client: FlaskClient) -> None:
    vid = start(client).get_json()["id"]
    code = messages(client)[0]["code"]
    assert check(client, vid, code, PAYMENT).status_code == 422
    approved = check(client, vid, code).get_json()
    assert approved["status"] == "approved" and "context" not in approved
    proof = client.post("/v1/tokens/verify", json={"token": approved["token"]}, headers=AUTH).get_json()
    assert "context" not in proof


def test_a_resend_and_a_fallback_step_show_the_payment_too(client: FlaskClient, clock: MovableClock) -> None:
    vid = start(client, channels=[{"channel": "sms", "wait": 5}, "voice"], context=PAYMENT).get_json()["id"]
    service = client.application.extensions["verify"]
    service.events.collect()
    clock.advance(5)
    assert service.run_fallback() == 1
    voice, _ = messages(client)
    assert voice["channel"] == "voice" and "12.50 EUR" in voice["text"] and "Shop Ltd" in voice["text"]
    clock.advance(30)
    resent = client.post(f"/v1/verifications/{vid}/resend", json={"channel": "sms"}, headers=AUTH)
    assert resent.status_code == 200
    newest = messages(client)[0]
    assert "12.50 EUR to Shop Ltd" in newest["text"]
    assert check(client, vid, newest["code"], PAYMENT).get_json()["status"] == "approved"


@pytest.mark.parametrize(
    ("context", "field"),
    [
        ("12.50 EUR", "context"),
        ({"amount": "12.50", "currency": "EUR"}, "context.payee"),
        ({**PAYMENT, "memo": "x"}, "context.memo"),
        ({**PAYMENT, "amount": 12.5}, "context.amount"),
        ({**PAYMENT, "amount": "12,50"}, "context.amount"),
        ({**PAYMENT, "amount": "-1"}, "context.amount"),
        ({**PAYMENT, "amount": "012.50"}, "context.amount"),
        ({**PAYMENT, "amount": "1.23456"}, "context.amount"),
        ({**PAYMENT, "amount": "1" * 13}, "context.amount"),
        ({**PAYMENT, "currency": "eur"}, "context.currency"),
        ({**PAYMENT, "currency": "EURO"}, "context.currency"),
        ({**PAYMENT, "currency": "XAU"}, "context.currency"),
        ({**PAYMENT, "payee": ""}, "context.payee"),
        ({**PAYMENT, "payee": "   "}, "context.payee"),
        ({**PAYMENT, "payee": "S" * 65}, "context.payee"),
        ({**PAYMENT, "payee": "Shop\nLtd"}, "context.payee"),
        ({**PAYMENT, "payee": "Shop\u202eLtd"}, "context.payee"),
        ({**PAYMENT, "payee": "Shop\u200bLtd"}, "context.payee"),
    ],
)
def test_a_malformed_context_is_a_400_naming_the_field(client: FlaskClient, context: Any, field: str) -> None:
    refused = start(client, context=context)
    assert refused.status_code == 400 and refused.get_json()["field"] == field, refused.get_json()
    assert messages(client) == []


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"channel": "telegram"}, "channel"),
        ({"channel": "call"}, "channel"),
        ({"channels": ["sms", "telegram"]}, "channels[1]"),
    ],
)
def test_a_payment_goes_only_where_its_text_shows_it(client: FlaskClient, body: dict[str, Any], field: str) -> None:
    refused = start(client, context=PAYMENT, **body)
    assert refused.status_code == 400 and refused.get_json()["field"] == field
    assert messages(client) == []


def test_a_resend_of_a_payment_to_telegram_is_refused_and_sends_nothing(
    client: FlaskClient, clock: MovableClock
) -> None:
    vid = start(client, context=PAYMENT).get_json()["id"]
    clock.advance(30)
    refused = client.post(f"/v1/verifications/{vid}/resend", json={"channel": "telegram"}, headers=AUTH)
    assert refused.status_code == 400 and refused.get_json()["field"] == "channel"
    assert len(messages(client)) == 1


def test_with_psd2_every_start_needs_a_context(redis_url: str, clock: MovableClock) -> None:
    client = create_app(replace(make_settings(redis_url), psd2=True), clock=clock, background=False).test_client()
    refused = start(client)
    assert refused.status_code == 400 and refused.get_json()["field"] == "context"
    assert start(client, context=PAYMENT).status_code == 201


def test_under_the_procfile_s_gunicorn_with_smsc(redis_server: EmbeddedRedis, tmp_path: Path) -> None:
    """What issue 21 asks, through the Procfile's gunicorn and SMSC's wire: the SMS shows the amount and the payee; a
    check with another amount is refused and costs an attempt; the right one approves, and the token carries the
    context."""
    client = redis.Redis.from_url(redis_server.url)
    client.flushall()
    client.close()
    with gunicorn_server(redis_server.url, tmp_path, {"VERIFY_CAPTCHA_MODE": "off"}, workers=2) as server:
        mark = server.smsc.mark()
        started = send(server, Call("POST", "/v1/verifications", {"phone": PHONE, "context": PAYMENT}))
        assert started.status == 201, started.body
        (sms,) = server.smsc.since(mark, "sms")
        assert "12.50 EUR" in sms.text and "Shop Ltd" in sms.text
        code = re.findall(r"\d{6}", sms.text)[0]
        vid = started.body["id"]
        other = {**PAYMENT, "amount": "125.00"}
        refused = send(server, Call("POST", f"/v1/verifications/{vid}/check", {"code": code, "context": other}))
        assert refused.status == 422 and refused.body["attempts_left"] == 4
        approved = send(server, Call("POST", f"/v1/verifications/{vid}/check", {"code": code, "context": PAYMENT}))
        assert approved.status == 200 and approved.body["context"] == PAYMENT
        proof = send(server, Call("POST", "/v1/tokens/verify", {"token": approved.body["token"]}))
        assert proof.status == 200 and proof.body["context"] == PAYMENT
