"""The HTTP API end to end through Flask, over the real Redis."""

from __future__ import annotations

import json
import os
import re
import signal
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import replace
from importlib import metadata
from pathlib import Path
from typing import Any

import pytest
import redis
from flask import Flask
from flask.testing import FlaskClient
from werkzeug.test import TestResponse

import verify
from tests.conftest import (
    AUTH,
    PHONE,
    MovableClock,
    RoundTrips,
    check,
    last_code,
    make_settings,
    single_and_cluster,
    start,
)
from verify import create_app
from verify.app import StoreOutbox
from verify.clock import rfc3339
from verify.config import Settings
from verify.embedded import EmbeddedRedis
from verify.errors import StoreUnavailable
from verify.providers.base import Sent, SmsMessage
from verify.providers.sandbox import SandboxProvider
from verify.service import COMMIT_PATIENCE_S, Service
from verify.store import FAIL_FAST_S, SOCKET_TIMEOUT_S

RFC3339 = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$")


@pytest.fixture(params=["single", "cluster"])
def redis_url(request: pytest.FixtureRequest) -> str:
    """This suite runs on a single Redis and on a 3-node cluster."""
    return single_and_cluster(request)


def _problem(response: object, status: int, slug: str) -> dict[str, object]:
    assert isinstance(response, TestResponse)
    assert response.status_code == status, response.get_data(as_text=True)
    assert response.mimetype == "application/problem+json"
    body = response.get_json()
    assert isinstance(body, dict)
    assert body["type"] == f"/problems/{slug}" and body["status"] == status
    assert isinstance(body["title"], str) and isinstance(body["detail"], str)
    return body


# auth


@pytest.mark.parametrize(
    "header",
    [None, "Bearer wrong-key-0123456789", "Basic dGVzdA==", "Bearer ", f"Token {AUTH['Authorization'].split()[1]}"],
)
def test_a_missing_or_wrong_key_is_401(client: FlaskClient, header: str | None) -> None:
    headers = {"Authorization": header} if header is not None else {}
    response = client.post("/v1/verifications", json={"phone": PHONE}, headers=headers)
    _problem(response, 401, "unauthorized")
    assert response.headers["WWW-Authenticate"].startswith("Bearer")


def test_every_listed_key_works_so_keys_can_rotate(redis_url: str, clock: MovableClock) -> None:
    settings = replace(make_settings(redis_url), api_keys=("new-key-0123456789", "old-key-0123456789"))
    client = create_app(settings, clock=clock, background=False).test_client()
    for key in settings.api_keys:
        response = client.get("/v1/verifications/" + "f" * 28, headers={"Authorization": f"Bearer {key}"})
        _problem(response, 404, "not-found")


# start


def test_start_returns_201_with_the_documented_shape(client: FlaskClient) -> None:
    response = start(client, "8 (999) 123-45-67", country="RU")
    assert response.status_code == 201
    body = response.get_json()
    assert set(body) == {
        "id",
        "status",
        "channel",
        "phone",
        "locale",
        "created_at",
        "expires_at",
        "resend_after",
        "attempts_left",
        "sends_left",
        "delivery",
        "sms",
    }
    assert body["delivery"] == {"provider": "sandbox", "status": "sent"}
    assert body["sms"] == {"encoding": "GSM-7", "parts": 1}
    assert (body["status"], body["channel"], body["phone"]) == ("pending", "sms", PHONE)
    assert (body["attempts_left"], body["sends_left"]) == (5, 4)
    assert all(RFC3339.match(body[k]) for k in ("created_at", "expires_at", "resend_after"))
    assert response.headers["Location"] == f"/v1/verifications/{body['id']}"


def test_formatting_variants_are_one_phone(client: FlaskClient) -> None:
    first = start(client, "8 (999) 123-45-67", country="RU").get_json()
    for raw in ("+7 999 123 45 67", "+7 (999) 123-45-67", "+79991234567"):
        again = start(client, raw)
        assert again.status_code == 200 and again.get_json()["id"] == first["id"]
    messages = client.get("/sandbox/messages", query_string={"phone": PHONE}).get_json()["messages"]
    assert len(messages) == 1


def test_default_country_reads_national_numbers(redis_url: str, clock: MovableClock) -> None:
    client = create_app(
        replace(make_settings(redis_url), default_country="RU"), clock=clock, background=False
    ).test_client()
    assert start(client, "8 999 123-45-67").get_json()["phone"] == PHONE


@pytest.mark.parametrize("phone", ["12345", "+7 999", "not a phone", "8 (999) 123-45-67", "+" + "1" * 70])
def test_invalid_phones(client: FlaskClient, phone: str) -> None:
    body = _problem(start(client, phone), 400, "invalid-phone")
    assert body["field"] == "phone"


@pytest.mark.parametrize(
    ("payload", "field"),
    [
        ({}, "phone"),
        ({"phone": 79991234567}, "phone"),
        ({"phone": None}, "phone"),
        ({"phone": PHONE, "channel": "fax"}, "channel"),
        ({"phone": PHONE, "channel": 1}, "channel"),
        ({"phone": PHONE, "locale": "d"}, "locale"),
        ({"phone": PHONE, "locale": "en US"}, "locale"),
        ({"phone": PHONE, "country": "Russia"}, "country"),
        ({"phone": PHONE, "country": ["RU"]}, "country"),
        ({"phone": "\ud800"}, "phone"),
        ({"phone": PHONE, "locale": "\udfff"}, "locale"),
    ],
)
def test_body_errors_name_the_field(client: FlaskClient, payload: dict[str, object], field: str) -> None:
    response = client.post("/v1/verifications", json=payload, headers=AUTH)
    assert _problem(response, 400, "invalid-request")["field"] == field


@pytest.mark.parametrize("raw", [b"", b"{", b"[]", b'"phone"', b"\xff\xfe", b"null", b"[" * 30_000])
@pytest.mark.deep_nesting
def test_unparseable_bodies(client: FlaskClient, raw: bytes) -> None:
    response = client.post("/v1/verifications", data=raw, headers={**AUTH, "Content-Type": "application/json"})
    assert _problem(response, 400, "invalid-request")["field"] == "body"


def test_a_call_start_hands_out_a_number(client: FlaskClient) -> None:
    body = start(client, channel="call").get_json()
    assert body["channel"] == "call"
    assert body["call"] == {"number": "+447700900001", "numbers": ["+447700900001", "+447700900002"]}
    assert client.get("/sandbox/messages", query_string={"phone": PHONE}).get_json() == {"messages": []}


def test_the_call_channel_needs_a_call_provider(redis_url: str, clock: MovableClock) -> None:
    client = create_app(
        replace(make_settings(redis_url), call_provider=None), clock=clock, background=False
    ).test_client()
    assert _problem(start(client, channel="call"), 400, "invalid-request")["field"] == "channel"


# fallback chains (the chain's behaviour: tests/test_fallback.py; end to end: tests/web/test_fallback_served.py)


def test_a_chain_start_answers_with_its_fallback(client: FlaskClient, clock: MovableClock) -> None:
    response = start(client, channels=[{"channel": "sms", "wait": 45}, "voice"])
    assert response.status_code == 201
    body = response.get_json()
    assert body["channel"] == "sms"
    assert body["fallback"] == {
        "channels": [{"channel": "sms", "wait": 45}, {"channel": "voice", "wait": 60}],
        "attempts": [{"channel": "sms", "provider": "sandbox", "status": "sent", "at": body["created_at"]}],
        "next": {"channel": "voice", "due_at": rfc3339(clock() + 45)},
        "stopped": None,
    }
    assert client.get(f"/v1/verifications/{body['id']}", headers=AUTH).get_json()["fallback"] == body["fallback"]


def test_one_channel_answers_as_it_always_did(client: FlaskClient) -> None:
    assert "fallback" not in start(client, channel="sms").get_json()
    assert "fallback" not in start(client, "+79991234568", channels=["voice"]).get_json()


@pytest.mark.parametrize(
    ("channels", "field"),
    [
        ([], "channels"),
        ("sms", "channels"),
        (["sms", "voice", "telegram", "sms"], "channels"),
        (["sms", "sms"], "channels"),
        (["sms", "call"], "channels[1]"),
        (["sms", "fax"], "channels[1]"),
        ([7], "channels[0]"),
        ([{"wait": 5}], "channels[0]"),
        ([{"channel": "sms", "wait": 0}], "channels[0].wait"),
        ([{"channel": "sms", "wait": 901}], "channels[0].wait"),
        ([{"channel": "sms", "wait": "5"}], "channels[0].wait"),
        ([{"channel": "sms", "wait": True}], "channels[0].wait"),
        ([{"channel": "sms", "after": 5}], "channels[0].after"),
    ],
)
def test_a_malformed_chain_is_a_400_naming_the_field(client: FlaskClient, channels: Any, field: str) -> None:
    assert _problem(start(client, channels=channels), 400, "invalid-request")["field"] == field
    assert client.get("/sandbox/messages", query_string={"phone": PHONE}).get_json() == {"messages": []}


def test_a_step_named_without_a_wait_waits_at_most_the_code_s_life(redis_url: str, clock: MovableClock) -> None:
    """With VERIFY_CHALLENGE_TTL under VERIFY_FALLBACK_AFTER, a plain chain is not a 400 about a wait never sent."""
    client = create_app(replace(make_settings(redis_url), challenge_ttl=30), clock=clock, background=False)
    body = start(client.test_client(), channels=["sms", "voice"]).get_json()
    assert body["fallback"]["channels"] == [{"channel": "sms", "wait": 30}, {"channel": "voice", "wait": 30}]


def test_channel_and_channels_together_are_a_400(client: FlaskClient) -> None:
    assert _problem(start(client, channel="sms", channels=["sms", "voice"]), 400, "invalid-request")["field"] == (
        "channels"
    )


def test_a_chain_with_a_channel_that_has_no_gateway_is_a_400_naming_it(redis_url: str, clock: MovableClock) -> None:
    app = create_app(replace(make_settings(redis_url), voice_providers=()), clock=clock, background=False)
    client = app.test_client()
    problem = _problem(start(client, channels=["sms", "voice"]), 400, "invalid-request")
    assert problem["field"] == "channels[1]" and "VERIFY_VOICE_PROVIDERS" in str(problem["detail"])
    assert client.get("/sandbox/messages", query_string={"phone": PHONE}).get_json() == {"messages": []}


def test_default_channels_make_the_chain_of_a_start_that_names_none(redis_url: str, clock: MovableClock) -> None:
    settings = replace(make_settings(redis_url), default_channels=("telegram", "sms"), fallback_after=30)
    client = create_app(settings, clock=clock, background=False).test_client()
    body = start(client).get_json()
    assert body["channel"] == "telegram"
    assert body["fallback"]["channels"] == [{"channel": "telegram", "wait": 30}, {"channel": "sms", "wait": 30}]
    named = start(client, "+79991234568", channel="sms").get_json()  # one channel named: as it always was
    assert named["channel"] == "sms" and "fallback" not in named


def test_russian_locale(client: FlaskClient) -> None:
    start(client, locale="ru")
    message = client.get("/sandbox/messages", query_string={"phone": PHONE}).get_json()["messages"][0]
    assert message["text"] == f"{message['code']} — ваш код Verify. Действует 15 мин."


# idempotency


def test_an_idempotency_key_replays_the_first_response_and_sends_nothing(
    client: FlaskClient, clock: MovableClock
) -> None:
    headers = {"Idempotency-Key": "signup-42"}
    first = start(client, headers=headers)
    clock.advance(60)  # past the cooldown: without the key this start would send again
    second = start(client, headers=headers)
    assert (first.status_code, second.status_code) == (201, 201)
    assert second.get_json() == first.get_json() and second.headers["Idempotent-Replayed"] == "true"
    assert len(client.get("/sandbox/messages", query_string={"phone": PHONE}).get_json()["messages"]) == 1
    without_key = start(client)
    assert without_key.status_code == 200 and without_key.get_json()["sends_left"] == 3


def test_an_idempotency_key_with_another_body_is_refused(client: FlaskClient) -> None:
    start(client, headers={"Idempotency-Key": "k1"})
    _problem(start(client, "+79991234568", headers={"Idempotency-Key": "k1"}), 422, "idempotency-mismatch")


def test_a_failed_request_does_not_burn_its_idempotency_key(client: FlaskClient) -> None:
    _problem(start(client, "12345", headers={"Idempotency-Key": "k2"}), 400, "invalid-phone")
    _problem(start(client, "12345", headers={"Idempotency-Key": "k2"}), 400, "invalid-phone")
    _problem(start(client, headers={"Idempotency-Key": "x" * 256}), 400, "invalid-request")


# get, check


def test_unknown_and_malformed_ids_are_404(client: FlaskClient) -> None:
    for vid in ("f" * 28, "nope", "F" * 28, "0" * 100):
        _problem(client.get(f"/v1/verifications/{vid}", headers=AUTH), 404, "not-found")
        _problem(check(client, vid, "123456"), 404, "not-found")


def test_check_approves_with_a_token_and_get_shows_it(client: FlaskClient) -> None:
    vid = start(client).get_json()["id"]
    approved = check(client, vid, last_code(client))
    assert approved.status_code == 200
    body = approved.get_json()
    assert (body["status"], body["completed_via"]) == ("approved", "code") and RFC3339.match(body["verified_at"])
    assert client.get(f"/v1/verifications/{vid}", headers=AUTH).get_json() == body
    proof = client.post("/v1/tokens/verify", json={"token": body["token"]}, headers=AUTH)
    assert proof.get_json() == {
        "valid": True,
        "phone": PHONE,
        "channel": "sms",
        "verification_id": vid,
        "completed_via": "code",
        "verified_at": body["verified_at"],
    }


def test_wrong_codes_then_max_attempts(client: FlaskClient) -> None:
    vid = start(client).get_json()["id"]
    code = last_code(client)
    wrong = "000000" if code != "000000" else "111111"
    for left in (4, 3, 2, 1):
        assert _problem(check(client, vid, wrong), 422, "invalid-code")["attempts_left"] == left
    _problem(check(client, vid, wrong), 429, "max-attempts")
    assert client.get(f"/v1/verifications/{vid}", headers=AUTH).get_json()["status"] == "max_attempts_reached"
    _problem(check(client, vid, code), 429, "max-attempts")


@pytest.mark.parametrize("code", ["", "12 34a", "١٢٣٤٥٦"])
def test_malformed_codes_are_refused_without_costing_an_attempt(client: FlaskClient, code: str) -> None:
    vid = start(client).get_json()["id"]
    assert _problem(check(client, vid, code), 400, "invalid-request")["field"] == "code"
    assert client.get(f"/v1/verifications/{vid}", headers=AUTH).get_json()["attempts_left"] == 5


def test_a_code_works_once(client: FlaskClient) -> None:
    vid = start(client).get_json()["id"]
    code = last_code(client)
    assert check(client, vid, code).status_code == 200
    _problem(check(client, vid, code), 409, "not-pending")


def test_of_concurrent_correct_checks_exactly_one_approves(client: FlaskClient) -> None:
    vid = start(client).get_json()["id"]
    code = last_code(client)
    app = client.application
    barrier = threading.Barrier(8)
    statuses: list[int] = []

    def attempt() -> None:
        own = app.test_client()
        barrier.wait()
        statuses.append(check(own, vid, code).status_code)

    threads = [threading.Thread(target=attempt) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(statuses) == [200] + [409] * 7


# resend, cancel


def test_resend_cooldown_then_new_code(client: FlaskClient, clock: MovableClock) -> None:
    vid = start(client).get_json()["id"]
    old = last_code(client)
    clock.advance(12.5)
    early = client.post(f"/v1/verifications/{vid}/resend", headers=AUTH)
    assert _problem(early, 429, "resend-cooldown")["retry_after"] == 18
    assert early.headers["Retry-After"] == "18"
    clock.advance(18)
    resent = client.post(f"/v1/verifications/{vid}/resend", json={}, headers=AUTH)
    assert resent.status_code == 200 and resent.get_json()["sends_left"] == 3
    new = last_code(client)
    if new != old:
        _problem(check(client, vid, old), 422, "invalid-code")
    assert check(client, vid, new).status_code == 200


def test_resend_past_max_sends(redis_url: str, clock: MovableClock) -> None:
    client = create_app(
        replace(make_settings(redis_url), max_sends=2, resend_cooldown=0), clock=clock, background=False
    ).test_client()
    vid = start(client).get_json()["id"]
    assert client.post(f"/v1/verifications/{vid}/resend", headers=AUTH).get_json()["sends_left"] == 0
    _problem(client.post(f"/v1/verifications/{vid}/resend", headers=AUTH), 429, "max-sends")


def test_resend_switches_channel(client: FlaskClient, clock: MovableClock) -> None:
    vid = start(client).get_json()["id"]
    clock.advance(30)
    body = client.post(f"/v1/verifications/{vid}/resend", json={"channel": "call"}, headers=AUTH).get_json()
    assert body["channel"] == "call" and body["call"]["number"] == "+447700900001"
    bad = client.post(f"/v1/verifications/{vid}/resend", json={"channel": "pigeon"}, headers=AUTH)
    assert _problem(bad, 400, "invalid-request")["field"] == "channel"


def test_cancel(client: FlaskClient) -> None:
    vid = start(client).get_json()["id"]
    canceled = client.delete(f"/v1/verifications/{vid}", headers=AUTH)
    assert canceled.status_code == 200 and canceled.get_json()["status"] == "canceled"
    _problem(check(client, vid, last_code(client)), 409, "not-pending")
    _problem(client.post(f"/v1/verifications/{vid}/resend", headers=AUTH), 409, "not-pending")
    assert start(client).status_code == 201


# tokens


@pytest.mark.parametrize("token", ["garbage", "a.b.c", ""])
def test_bad_tokens(client: FlaskClient, token: str) -> None:
    _problem(client.post("/v1/tokens/verify", json={"token": token}, headers=AUTH), 400, "invalid-token")


def test_expired_token(client: FlaskClient, clock: MovableClock) -> None:
    vid = start(client).get_json()["id"]
    token = check(client, vid, last_code(client)).get_json()["token"]
    clock.advance(3601)
    _problem(client.post("/v1/tokens/verify", json={"token": token}, headers=AUTH), 410, "token-expired")


def test_tokens_survive_secret_rotation(redis_url: str, clock: MovableClock) -> None:
    old = make_settings(redis_url)
    client = create_app(old, clock=clock, background=False).test_client()
    vid = start(client).get_json()["id"]
    code = last_code(client)
    rotated = create_app(
        replace(old, secret_keys=("brand-new-secret-0123", *old.secret_keys)), clock=clock, background=False
    ).test_client()
    token = check(rotated, vid, code).get_json()["token"]  # a code hashed under the old key still matches
    assert rotated.post("/v1/tokens/verify", json={"token": token}, headers=AUTH).status_code == 200
    _problem(client.post("/v1/tokens/verify", json={"token": token}, headers=AUTH), 400, "invalid-token")


# health, errors, outage


def test_health_and_spec(client: FlaskClient) -> None:
    assert client.get("/healthz").get_json() == {"status": "ok", "version": metadata.version("verify")}
    assert client.get("/readyz").status_code == 200
    spec = client.get("/openapi.yaml")
    assert spec.status_code == 200 and spec.get_data(as_text=True).startswith("openapi:")


def test_the_version_falls_back_when_the_package_is_not_installed(monkeypatch: pytest.MonkeyPatch) -> None:
    def not_installed(name: str) -> str:
        raise metadata.PackageNotFoundError(name)

    monkeypatch.setattr(metadata, "version", not_installed)
    verify.version.cache_clear()  # the installed version may be cached by an earlier test, and is again afterwards
    try:
        assert verify.version() == "0+unknown"
    finally:
        verify.version.cache_clear()


def test_framework_errors_are_problems_too(client: FlaskClient) -> None:
    _problem(client.get("/nowhere"), 404, "not-found")
    wrong_method = client.put("/v1/verifications", headers=AUTH)
    _problem(wrong_method, 405, "method-not-allowed")
    assert "POST" in wrong_method.headers["Allow"]
    _problem(client.post("/v1/verifications", data=b"x" * 70_000, headers=AUTH), 413, "request-entity-too-large")


def test_redis_outage_gives_503_then_recovers(tmp_path: Path, clock: MovableClock) -> None:
    server = EmbeddedRedis(tmp_path)
    server.start()
    try:
        client = create_app(make_settings(server.url), clock=clock, background=False).test_client()
        vid = start(client).get_json()["id"]
        server.stop()
        _problem(start(client, "+79991234568"), 503, "store-unavailable")
        _problem(client.get(f"/v1/verifications/{vid}", headers=AUTH), 503, "store-unavailable")
        _problem(check(client, vid, "123456"), 503, "store-unavailable")
        _problem(client.get("/readyz"), 503, "store-unavailable")
        server.start()  # same port, empty: the service reconnects by itself
        assert client.get("/readyz").status_code == 200
        assert start(client, "+79991234568").status_code == 201
    finally:
        server.stop()


def test_no_sandbox_routes_outside_sandbox_mode(redis_url: str, clock: MovableClock) -> None:
    settings: Settings = replace(make_settings(redis_url), sandbox=False)
    client = create_app(settings, clock=clock, background=False).test_client()
    _problem(client.get("/sandbox/messages", query_string={"phone": PHONE}), 404, "not-found")
    _problem(client.post("/sandbox/calls", json={"phone": PHONE}), 404, "not-found")
    _problem(client.post("/sandbox/replies", json={"phone": PHONE, "text": "1"}), 404, "not-found")


def test_an_unexpected_failure_is_a_problem_too_and_leaks_nothing(app: Flask, caplog: pytest.LogCaptureFixture) -> None:
    def boom() -> str:
        raise RuntimeError("secret internals")

    app.add_url_rule("/boom", view_func=boom)
    body = _problem(app.test_client().get("/boom"), 500, "internal-error")
    assert "secret internals" not in json.dumps(body)
    assert "secret internals" in caplog.text  # logged for the operator


# Redis round trips per request: pinned, so they cannot creep back (a pipeline or a script counts as one).

Counted = Callable[[Callable[[], TestResponse]], tuple[int, int]]


@pytest.fixture
def round_trips(redis_round_trips: RoundTrips) -> Counted:
    """``count(request)``: the Redis round trips ``request()`` made (writes to a Redis socket), and its status."""

    def count(request: Callable[[], TestResponse]) -> tuple[int, int]:
        before = redis_round_trips.sent
        status = request().status_code
        return redis_round_trips.sent - before, status

    return count


def on_one_server(redis_url: str, why: str) -> None:
    """Skip on the cluster run, saying ``why``."""
    if redis_url.startswith("redis+cluster://"):
        pytest.skip(why)


PER_NODE = "on a cluster a batch is one round trip per node it touches: these pins are for one server"


def test_round_trips_per_request(redis_url: str, clock: MovableClock, round_trips: Counted) -> None:
    on_one_server(redis_url, PER_NODE)
    # The defaults: sandbox gateway, every default limit on, the adaptive captcha (not yet asking).
    settings = replace(make_settings(redis_url), captcha_mode="adaptive")
    client = create_app(settings, clock=clock, background=False).test_client()
    warm = start(client, "+79991230000").get_json()["id"]  # loads the scripts into Redis
    check(client, warm, last_code(client, "+79991230000"))

    # A start: reserve and admit (start.lua, the quotas, the reads, in one pipeline), then commit (the sandbox
    # gateway's copy of the message goes with it).
    assert round_trips(lambda: start(client, PHONE)) == (2, 201)
    assert round_trips(lambda: start(client, PHONE)) == (2, 200)  # a reload: the same, then it gives back
    vid = start(client, PHONE).get_json()["id"]
    assert round_trips(lambda: client.get(f"/v1/verifications/{vid}", headers=AUTH)) == (1, 200)
    code = last_code(client)
    # One: complete.lua takes the client IP's check quota (its gate) and judges the code, in one script; the
    # approval's count for the pumping guard goes with the next request's round trip.
    assert round_trips(lambda: check(client, vid, "000000" if code != "000000" else "111111")) == (1, 422)
    assert round_trips(lambda: check(client, vid, code)) == (1, 200)
    other = start(client, "+79991230001").get_json()["id"]
    clock.advance(settings.resend_cooldown)
    # A resend: reserve (its phone is not known before), admit, commit.
    assert round_trips(lambda: client.post(f"/v1/verifications/{other}/resend", headers=AUTH)) == (3, 200)


def test_a_chained_start_costs_the_round_trips_of_any_start(
    redis_url: str, clock: MovableClock, round_trips: Counted
) -> None:
    """A fallback chain and the client's address go into the scripts a start runs anyway (a step's round trips are
    pinned in tests/test_fallback.py)."""
    on_one_server(redis_url, PER_NODE)
    client = create_app(make_settings(redis_url), clock=clock, background=False).test_client()
    start(client, "+79991230000")  # loads the scripts into Redis
    assert round_trips(lambda: start(client, PHONE, channels=["sms", "voice"])) == (2, 201)


def test_round_trips_through_a_site_key(redis_url: str, clock: MovableClock, round_trips: Counted) -> None:
    """A site key's ownership is judged inside the scripts, and its client secret before Redis: no round trip."""
    on_one_server(redis_url, PER_NODE)
    settings = replace(
        make_settings(redis_url), captcha_mode="adaptive", site_keys=(("pk_shop", ("https://shop.example",)),)
    )
    client = create_app(settings, clock=clock, background=False).test_client()
    site = {"X-Verify-Site-Key": "pk_shop", "Origin": "https://shop.example"}
    start(client, "+79991230000")  # loads the scripts into Redis
    assert round_trips(lambda: client.post("/v1/verifications", json={"phone": PHONE}, headers=site)) == (2, 201)
    started = client.post("/v1/verifications", json={"phone": PHONE}, headers=site).get_json()
    vid, own = started["id"], {**site, "X-Verify-Client-Secret": started["client_secret"]}
    assert round_trips(lambda: client.get(f"/v1/verifications/{vid}", headers=own)) == (1, 200)
    # Without its client secret, or with a malformed id, a request is refused before it reaches Redis.
    assert round_trips(lambda: client.get(f"/v1/verifications/{vid}", headers=site)) == (0, 404)
    assert round_trips(lambda: client.get(f"/v1/verifications/{vid}:final", headers=own)) == (0, 404)
    code = last_code(client)
    checked = round_trips(lambda: client.post(f"/v1/verifications/{vid}/check", json={"code": code}, headers=own))
    assert checked == (1, 200)


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[EmbeddedRedis]:
    """A redis-server of this test's own, to freeze (SIGSTOP) or stop; thawed and stopped at the end."""
    server = EmbeddedRedis(tmp_path)
    server.start()
    assert server.process is not None
    try:
        yield server
    finally:
        if server.process.poll() is None:
            os.kill(server.process.pid, signal.SIGCONT)
        server.stop()


def pid_of(server: EmbeddedRedis) -> int:
    assert server.process is not None
    return server.process.pid


class FreezesRedis(SandboxProvider):
    """The sandbox gateway, but Redis freezes while it sends (SIGSTOP) and comes back ``after`` seconds later."""

    def __init__(self, service: Service, pid: int, after: float) -> None:
        super().__init__(StoreOutbox(service.store), service.clock)
        self.pid, self.after = pid, after

    def send_sms(self, message: SmsMessage) -> Sent:
        sent = super().send_sms(message)
        os.kill(self.pid, signal.SIGSTOP)
        threading.Timer(self.after, os.kill, (self.pid, signal.SIGCONT)).start()
        return sent


def test_a_send_the_gateway_took_is_committed_once_redis_is_back(own_redis: EmbeddedRedis, clock: MovableClock) -> None:
    # The SMS is out when Redis freezes: the commit is tried again (within COMMIT_PATIENCE_S), so the code sent
    # works, the answer is the verification, and a retry neither meets a reservation (409) nor sends again.
    app = create_app(make_settings(own_redis.url), clock=clock, background=False)
    client = app.test_client()
    service: Service = app.extensions["verify"]
    service.sms_providers = [FreezesRedis(service, pid_of(own_redis), after=SOCKET_TIMEOUT_S + 0.5)]
    began = time.monotonic()
    started = start(client)
    assert started.status_code == 201, started.get_data(as_text=True)
    assert time.monotonic() - began < COMMIT_PATIENCE_S + SOCKET_TIMEOUT_S
    service.sms_providers = [SandboxProvider(StoreOutbox(service.store), service.clock)]
    again = start(client)
    assert again.status_code == 200 and again.get_json()["id"] == started.get_json()["id"]
    messages = client.get("/sandbox/messages", query_string={"phone": PHONE}).get_json()["messages"]
    assert len(messages) == 1
    checked = check(client, started.get_json()["id"], messages[0]["code"])
    assert checked.get_json()["status"] == "approved", checked.get_data(as_text=True)


def test_a_fallback_step_the_gateway_took_while_redis_froze_is_committed_once(
    own_redis: EmbeddedRedis, clock: MovableClock
) -> None:
    """Redis freezes right after the voice gateway took a fallback step: the worker's commit is tried again until
    Redis is back, so the step is recorded and never sent a second time, by this worker's next loop or any other."""
    app = create_app(make_settings(own_redis.url), clock=clock, background=False)
    client = app.test_client()
    service: Service = app.extensions["verify"]
    vid = start(client, channels=[{"channel": "sms", "wait": 5}, "voice"]).get_json()["id"]
    service.events.collect()
    clock.advance(5)
    sandbox = service.chains["voice"]
    service.chains["voice"] = [FreezesRedis(service, pid_of(own_redis), after=SOCKET_TIMEOUT_S + 0.5)]
    assert service.run_fallback() == 1
    service.chains["voice"] = sandbox
    for _ in range(2):  # later loops, the lease run out: nothing more to send
        clock.advance(service.settings.send_lease)
        service.events.collect()
        service.run_fallback()
    messages = client.get("/sandbox/messages", query_string={"phone": PHONE}).get_json()["messages"]
    assert [m["channel"] for m in messages] == ["voice", "sms"] and messages[0]["code"] == messages[1]["code"]
    shown = client.get(f"/v1/verifications/{vid}", headers=AUTH).get_json()
    assert shown["channel"] == "voice" and [a["channel"] for a in shown["fallback"]["attempts"]] == ["sms", "voice"]


def test_a_fallback_step_due_while_redis_is_frozen_is_sent_once_it_is_back(
    own_redis: EmbeddedRedis, clock: MovableClock
) -> None:
    """The workers' loop meets a frozen Redis: it fails fast (StoreUnavailable, which the loop logs and waits out),
    and once Redis answers again the due step goes out, once."""
    app = create_app(make_settings(own_redis.url), clock=clock, background=False)
    client = app.test_client()
    service: Service = app.extensions["verify"]
    start(client, channels=[{"channel": "sms", "wait": 5}, "voice"])
    service.events.collect()
    clock.advance(5)
    os.kill(pid_of(own_redis), signal.SIGSTOP)
    try:
        began = time.monotonic()
        with pytest.raises(StoreUnavailable):
            service.run_fallback()
        assert time.monotonic() - began < 2 * SOCKET_TIMEOUT_S + 1
    finally:
        os.kill(pid_of(own_redis), signal.SIGCONT)
    deadline = time.monotonic() + 10
    while True:
        try:
            if service.run_fallback():
                break
        except StoreUnavailable:  # the store's fail-fast pause, which the workers' loop logs and waits out too
            pass
        assert time.monotonic() < deadline, "the due step was never taken once Redis was back"
        time.sleep(0.2)
    clock.advance(service.settings.send_lease)
    service.run_fallback()
    messages = client.get("/sandbox/messages", query_string={"phone": PHONE}).get_json()["messages"]
    assert [m["channel"] for m in messages] == ["voice", "sms"]


def test_a_start_that_timed_out_is_undone_so_its_retry_is_not_locked_out(
    own_redis: EmbeddedRedis, clock: MovableClock
) -> None:
    # Redis freezes under a start: the reservation is queued in Redis and runs when it wakes, after the client
    # got its 503. The retry must start at once (not 409 start-in-progress for the send lease), send one code, and
    # the phone's quota must hold that one send only.
    settings = replace(make_settings(own_redis.url), limit_phone="2/hour")
    client = create_app(settings, clock=clock, background=False).test_client()
    start(client, "+79991230000")  # loads the scripts
    os.kill(pid_of(own_redis), signal.SIGSTOP)
    try:
        timed_out = start(client)
        assert timed_out.status_code == 503, timed_out.get_data(as_text=True)
    finally:
        os.kill(pid_of(own_redis), signal.SIGCONT)
    time.sleep(FAIL_FAST_S)
    retried = start(client)
    assert retried.status_code == 201, retried.get_data(as_text=True)
    assert len(client.get("/sandbox/messages", query_string={"phone": PHONE}).get_json()["messages"]) == 1
    clock.advance(30)  # past the cooldown: a resend is the phone's second send of its 2 an hour, unless the
    # reservation's quota had stayed taken
    resent = client.post(f"/v1/verifications/{retried.get_json()['id']}/resend", json={}, headers=AUTH)
    assert resent.status_code == 200, resent.get_json()


def test_an_idempotency_key_whose_claim_timed_out_is_free_for_the_retry(
    own_redis: EmbeddedRedis, clock: MovableClock
) -> None:
    # The claim is queued in the frozen Redis and lands when it wakes, after the client got its 503: left there, it
    # would answer the retry with 409 idempotency-in-progress for the claim's lease.
    client = create_app(make_settings(own_redis.url), clock=clock, background=False).test_client()
    start(client, "+79991230000")  # loads the scripts
    key = {"Idempotency-Key": "k-frozen"}
    os.kill(pid_of(own_redis), signal.SIGSTOP)
    try:
        assert start(client, headers=key).status_code == 503
    finally:
        os.kill(pid_of(own_redis), signal.SIGCONT)
    time.sleep(FAIL_FAST_S)
    retried = start(client, headers=key)
    assert retried.status_code == 201, retried.get_data(as_text=True)
    replayed = start(client, headers=key)
    assert replayed.headers["Idempotent-Replayed"] == "true" and replayed.get_json() == retried.get_json()


def test_a_503_of_a_write_says_it_may_have_been_applied(own_redis: EmbeddedRedis, clock: MovableClock) -> None:
    client = create_app(make_settings(own_redis.url), clock=clock, background=False).test_client()
    vid = start(client).get_json()["id"]
    own_redis.stop()
    written = check(client, vid, "123456")
    assert written.status_code == 503
    assert "may have been applied" in written.get_json()["detail"]
    read = client.get(f"/v1/verifications/{vid}", headers=AUTH)
    assert read.status_code == 503 and "may have been applied" not in read.get_json()["detail"]


def test_a_frozen_redis_fails_each_request_within_one_timeout(own_redis: EmbeddedRedis, clock: MovableClock) -> None:
    settings = replace(make_settings(own_redis.url), captcha_mode="adaptive")
    client = create_app(settings, clock=clock, background=False).test_client()
    vid = start(client).get_json()["id"]
    os.kill(pid_of(own_redis), signal.SIGSTOP)  # frozen: connections are accepted, nothing is answered
    try:
        requests: tuple[Callable[[], TestResponse], ...] = (
            lambda: start(client, "+79991230001"),
            lambda: check(client, vid, "123456"),
            lambda: client.get(f"/v1/verifications/{vid}", headers=AUTH),
        )
        for request in requests:
            began = time.monotonic()
            response = request()
            took = time.monotonic() - began
            assert response.status_code == 503, response.get_data(as_text=True)
            assert response.get_json()["type"] == "/problems/store-unavailable"
            # One Redis timeout at most (the store then fails fast for a moment), never one per round trip.
            assert took < 1.5 * SOCKET_TIMEOUT_S, took
    finally:
        os.kill(pid_of(own_redis), signal.SIGCONT)
    time.sleep(FAIL_FAST_S)
    assert client.get(f"/v1/verifications/{vid}", headers=AUTH).status_code == 200  # recovered by itself


def test_round_trips_with_events_on(redis_url: str, clock: MovableClock, round_trips: Counted) -> None:
    on_one_server(redis_url, PER_NODE)
    # With a receiver configured, the state changes journal their events in the same scripts: no round trip more.
    settings = replace(
        make_settings(redis_url),
        captcha_mode="adaptive",
        events_url="http://127.0.0.1:9/hooks",
        events_secrets=("events-secret",),
    )
    client = create_app(settings, clock=clock, background=False).test_client()
    warm = start(client, "+79991230000").get_json()["id"]
    check(client, warm, last_code(client, "+79991230000"))
    assert round_trips(lambda: start(client, PHONE)) == (2, 201)
    vid, code = start(client, PHONE).get_json()["id"], last_code(client)
    assert round_trips(lambda: check(client, vid, code)) == (1, 200)
    assert round_trips(lambda: client.delete(f"/v1/verifications/{warm}", headers=AUTH)) == (1, 409)


MEMORY_PER_START = 1228  # bytes (1.2 KiB): the bound the README states (1.12-1.14 KB measured), sandbox copies aside
SANDBOX_COPY = 400  # bytes per start: the sandbox gateway's copy of its text with its verification id (361 B measured)


def stored_bytes(client: redis.Redis) -> int:
    """What Redis holds for the data: the keys and values, and the key tables' slots (MEMORY STATS); not the
    clients' buffers or the script cache, which vary with what ran before on the shared server."""
    stats = client.memory_stats()
    tables = stats.get("db.0", {})
    return (
        int(stats["dataset.bytes"])
        + int(tables.get("overhead.hashtable.main", 0))
        + int(tables.get("overhead.hashtable.expires", 0))
    )


def drop_sandbox_copies(client: redis.Redis) -> int:
    """Delete the sandbox gateway's outboxes (its copies of the texts, for /sandbox/messages); returns how many."""
    outboxes = list(client.scan_iter(match="*:outbox:*", count=1000))
    for i in range(0, len(outboxes), 500):
        client.delete(*outboxes[i : i + 500])
    return len(outboxes)


def test_redis_memory_per_start_is_bounded(redis_url: str, clock: MovableClock, redis_client: redis.Redis) -> None:
    on_one_server(redis_url, "MEMORY STATS is one server's: on a cluster the bytes spread over the nodes")
    # Every default but the limits a single test client would hit; the captcha's counter and the pumping
    # statistics still count every start.
    settings = replace(
        make_settings(redis_url),
        captcha_mode="adaptive",
        captcha_after=100_000,
        limit_ip="100000/hour",
        limit_prefix="100000/hour",
        pumping_min_starts=10**9,
    )
    client = create_app(settings, clock=clock, background=False).test_client()
    assert start(client, "+79990000000").status_code == 201  # scripts loaded, shared keys made
    drop_sandbox_copies(redis_client)
    before = stored_bytes(redis_client)
    starts = 2000  # enough that the key tables' power-of-two sizes weigh little
    for i in range(starts):
        assert start(client, f"+7999{(1 + i * 1_234_567) % 10**7:07d}").status_code == 201
    # As every worker's sweep leaves it within a second: the journal hints are gone, the expiry watches moved.
    events = client.application.extensions["verify"].events
    while events.collect() or events.backlog:
        pass
    with_copies = stored_bytes(redis_client)
    # What a verification costs with a real gateway, which keeps no copy of its texts: the sandbox's outboxes go
    # before the count (the key tables keep the slots they took, and those are counted). They are held apart.
    assert drop_sandbox_copies(redis_client) == starts
    per_start = (stored_bytes(redis_client) - before) / starts
    assert 0 < per_start < MEMORY_PER_START
    assert 0 < (with_copies - before) / starts - per_start < SANDBOX_COPY


def test_every_key_starts_with_the_prefix(redis_url: str, clock: MovableClock, redis_client: redis.Redis) -> None:
    settings = replace(
        make_settings(redis_url),
        redis_prefix="acme:",
        captcha_mode="adaptive",
        captcha_after=1,
        limit_country="100/hour",
        limit_global="1000/hour",
    )
    client = create_app(settings, clock=clock, background=False).test_client()
    vid = start(client).get_json()["id"]
    check(client, vid, "000000" if last_code(client) != "000000" else "111111")  # check_ip, phone_failures
    check(client, vid, last_code(client))  # the pumping guard's approvals
    assert start(client, "+79991230001").status_code == 428  # a captcha challenge
    keys: list[str] = list(redis_client.scan_iter())  # every node's, on a cluster
    assert len(keys) >= 10 and all(key.startswith("acme:") for key in keys), keys
