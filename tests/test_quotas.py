"""Abuse limits against the real Redis: per phone, IP, prefix, country, global, checks, wrong codes per phone;
formatting variants and spoofed X-Forwarded-For do not get around them; Retry-After is right."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from flask.testing import FlaskClient
from werkzeug.test import TestResponse

from tests.conftest import AUTH, PHONE, MovableClock, check, last_code, make_settings, start
from verify import create_app
from verify.config import Settings
from verify.embedded import EmbeddedRedis
from verify.store import Batch


def client_with(redis_url: str, clock: MovableClock, **overrides: Any) -> FlaskClient:
    settings: Settings = replace(make_settings(redis_url), **{"resend_cooldown": 0, **overrides})
    return create_app(settings, clock=clock, background=False).test_client()


def limited(response: TestResponse, name: str) -> int:
    """Assert a 429 ``/rate-limited`` naming ``name``; returns its Retry-After."""
    assert response.status_code == 429, response.get_data(as_text=True)
    body = response.get_json()
    assert body["type"] == "/problems/rate-limited" and body["limit"] == name
    retry_after = int(response.headers["Retry-After"])
    assert body["retry_after"] == retry_after
    return retry_after


def resend(client: FlaskClient, vid: str, **headers: str) -> TestResponse:
    return client.post(f"/v1/verifications/{vid}/resend", headers={**AUTH, **headers})


def retry_after_is_right(clock: MovableClock, retry: Callable[[], TestResponse], name: str) -> int:
    """The refused request is refused again one second before its Retry-After, and passes at it."""
    retry_after = limited(retry(), name)
    clock.advance(retry_after - 1)
    limited(retry(), name)
    clock.advance(1)
    assert retry().status_code != 429
    return retry_after


def test_the_phone_limit_counts_sends_and_says_when_to_retry(redis_url: str, clock: MovableClock) -> None:
    client = client_with(redis_url, clock)  # default VERIFY_LIMIT_PHONE: 3/10 minutes;10/day
    vid = start(client).get_json()["id"]
    for _ in range(2):
        assert resend(client, vid).status_code == 200
    # A start that sends nothing (the pending verification is returned) is not a send: a reload never fails.
    client2 = client_with(redis_url, clock, resend_cooldown=30)
    assert start(client2).status_code == 200
    # A sliding window of 10 minutes: the 3 sends weigh less as their window slides by, so the 4th is due once
    # 1/3 of a window has passed after the end of the one they were counted in (0 to 20 minutes from now).
    assert 0 < retry_after_is_right(clock, lambda: resend(client, vid), "phone") <= 1200


def test_formatting_variants_share_one_phone_quota(redis_url: str, clock: MovableClock) -> None:
    client = client_with(redis_url, clock)
    for raw, country in (("+7 999 123 45 67", None), ("8 (999) 123-45-67", "RU"), ("79991234567", "RU")):
        body = start(client, raw, **({"country": country} if country else {})).get_json()
        assert client.delete(f"/v1/verifications/{body['id']}", headers=AUTH).status_code == 200
    limited(start(client, "+7 (999) 123-45-67"), "phone")


def test_the_ip_limit_is_shared_by_start_and_resend(redis_url: str, clock: MovableClock) -> None:
    client = client_with(redis_url, clock, limit_ip="3/hour")
    vid = start(client, "+79991230001").get_json()["id"]
    assert start(client, "+79991230002").status_code == 201
    assert resend(client, vid).status_code == 200
    limited(resend(client, vid), "ip")
    assert 0 < retry_after_is_right(clock, lambda: start(client, "+79991230003"), "ip") <= 7200


def test_reloads_that_send_nothing_cost_no_ip_quota(redis_url: str, clock: MovableClock) -> None:
    client = client_with(redis_url, clock, limit_ip="2/hour", resend_cooldown=30)
    first = start(client).get_json()
    for _ in range(5):  # a signup page reloaded inside the cooldown: the same verification, nothing sent
        again = start(client)
        assert again.status_code == 200 and again.get_json()["id"] == first["id"]
    assert start(client, "+79991230001").status_code == 201
    limited(start(client, "+79991230002"), "ip")


def test_starts_refused_before_sending_give_their_ip_quota_back(redis_url: str, clock: MovableClock) -> None:
    client = client_with(redis_url, clock, limit_ip="2/hour", limit_phone="1/hour", captcha_mode="always")
    service = client.application.extensions["verify"]
    # Another worker's first send to this phone is in flight: 409 start-in-progress, five times.
    service.store.run(Batch.start, PHONE, "RU", "sms", "", int(clock() * 1000), 120_000, 0, 5, "n", None)
    for _ in range(5):
        assert start(client).status_code == 409
    # The phone limit refuses (its first start sent; it asks a captcha, which is then solved).
    other = "+79991230001"
    captcha = start(client, other).get_json()["captcha"]
    answer = client.get(f"/sandbox/captcha/{captcha['id']}").get_json()["answer"]
    first = start(client, other, captcha={"id": captcha["id"], "answer": answer})
    assert first.status_code == 201
    client.delete(f"/v1/verifications/{first.get_json()['id']}", headers=AUTH)
    for _ in range(5):
        limited(start(client, other), "phone")
    # Asked for a captcha and not answering it: 428, five times.
    for _ in range(5):
        assert start(client, "+79991230002").status_code == 428
    # None of the 16 refusals took any of the 2 starts an hour this IP has; the solved start took one.
    captcha = start(client, "+79991230003").get_json()["captcha"]
    answer = client.get(f"/sandbox/captcha/{captcha['id']}").get_json()["answer"]
    assert start(client, "+79991230003", captcha={"id": captcha["id"], "answer": answer}).status_code == 201
    limited(start(client, "+79991230004"), "ip")  # and now the IP's two are taken


def test_a_spoofed_x_forwarded_for_changes_nothing_without_trusted_proxies(redis_url: str, clock: MovableClock) -> None:
    client = client_with(redis_url, clock, limit_ip="2/hour")
    for i in range(2):
        assert start(client, f"+7999123000{i}", headers={"X-Forwarded-For": f"203.0.113.{i}"}).status_code == 201
    limited(start(client, "+79991230009", headers={"X-Forwarded-For": "203.0.113.99"}), "ip")


def test_x_forwarded_for_counts_behind_a_trusted_proxy(redis_url: str, clock: MovableClock) -> None:
    client = client_with(redis_url, clock, limit_ip="2/hour", trusted_proxies=1)
    proxy = {"REMOTE_ADDR": "10.0.0.1"}

    def via_proxy(phone: str, forwarded: str) -> TestResponse:
        return client.post(
            "/v1/verifications",
            json={"phone": phone},
            environ_base=proxy,
            headers={**AUTH, "X-Forwarded-For": forwarded},
        )

    assert via_proxy("+79991230001", "203.0.113.1").status_code == 201
    assert via_proxy("+79991230002", "203.0.113.1").status_code == 201
    limited(via_proxy("+79991230003", "203.0.113.1"), "ip")
    # Another client behind the same proxy has its own budget; a forged extra hop does not help the first one.
    assert via_proxy("+79991230004", "203.0.113.2").status_code == 201
    limited(via_proxy("+79991230005", "198.51.100.7, 203.0.113.1"), "ip")


@pytest.mark.parametrize(
    ("setting", "name", "phones"),
    [
        ("limit_prefix", "prefix", ["+79991230001", "+79991239999", "+79991235555"]),
        ("limit_country", "country", ["+79991230001", "+79161234567", "+79031234567"]),
        ("limit_global", "global", ["+79991230001", "+447400123456", "+16502530000"]),
    ],
)
def test_prefix_country_and_global_limits(
    redis_url: str, clock: MovableClock, setting: str, name: str, phones: list[str]
) -> None:
    client = client_with(redis_url, clock, **{setting: "2/hour"})
    for phone in phones[:2]:
        assert start(client, phone).status_code == 201
    limited(start(client, phones[2]), name)
    other = "+447400123456" if name != "global" else None
    if other and name == "country":
        assert start(client, other).status_code == 201  # another country has its own quota


def test_a_refused_start_does_not_count_against_the_other_limits(redis_url: str, clock: MovableClock) -> None:
    client = client_with(redis_url, clock, limit_phone="1/hour", limit_prefix="2/hour")
    vid = start(client, "+79991230001").get_json()["id"]
    for _ in range(3):
        limited(resend(client, vid), "phone")
    assert start(client, "+79991230002").status_code == 201  # the prefix saw 2 sends, not 5
    limited(start(client, "+79991230003"), "prefix")


def test_the_check_ip_limit(redis_url: str, clock: MovableClock) -> None:
    client = client_with(redis_url, clock, limit_check_ip="3/minute")
    vid = start(client).get_json()["id"]
    for _ in range(3):
        assert check(client, vid, "000000").status_code in (200, 422)
    code = last_code(client)
    assert 0 < retry_after_is_right(clock, lambda: check(client, vid, code), "check_ip") <= 120


def test_wrong_codes_per_phone_lock_checks_but_not_starts(redis_url: str, clock: MovableClock) -> None:
    client = client_with(redis_url, clock, limit_phone_failures="3/day", max_attempts=10)
    vid = start(client).get_json()["id"]
    code = last_code(client)
    wrong = "000000" if code != "000000" else "111111"
    for _ in range(3):
        assert check(client, vid, wrong).status_code == 422
    limited(check(client, vid, code), "phone_failures")  # the right code included
    client.delete(f"/v1/verifications/{vid}", headers=AUTH)
    fresh = start(client)  # starting is still allowed...
    assert fresh.status_code == 201
    limited(check(client, fresh.get_json()["id"], last_code(client)), "phone_failures")  # ...checking is not
    other = start(client, "+79991230001").get_json()["id"]  # another phone is not locked
    assert check(client, other, last_code(client, "+79991230001")).status_code == 200


def test_a_lockout_expires_when_its_retry_after_says(redis_url: str, clock: MovableClock) -> None:
    client = client_with(redis_url, clock, limit_phone_failures="2/day")
    vid = start(client).get_json()["id"]
    code = last_code(client)
    for _ in range(2):
        assert check(client, vid, "000000" if code != "000000" else "111111").status_code == 422
    retry_after = retry_after_is_right(clock, lambda: check(client, vid, code), "phone_failures")
    assert 0 < retry_after <= 2 * 86400


def test_limit_answers_do_not_reveal_whether_a_phone_was_seen(redis_url: str, clock: MovableClock) -> None:
    client = client_with(redis_url, clock, limit_global="1/hour", resend_cooldown=30)
    assert start(client, "+79991230001").status_code == 201
    seen, unseen = start(client, "+79991230001"), start(client, "+79991239876")
    assert seen.status_code == 200  # its pending verification, nothing sent
    client.delete(f"/v1/verifications/{seen.get_json()['id']}", headers=AUTH)
    seen_again = start(client, "+79991230001")
    a, b = seen_again.get_json(), unseen.get_json()
    assert (seen_again.status_code, unseen.status_code) == (429, 429)
    assert {k: v for k, v in a.items() if k != "retry_after"} == {k: v for k, v in b.items() if k != "retry_after"}


@pytest.mark.parametrize("phone", ["+445612345678", "+449012345678", "+33884012345", "+445512345678", "+447640123456"])
def test_number_types_that_pumping_abuses_are_refused(client: FlaskClient, phone: str) -> None:
    response = start(client, phone)
    assert response.status_code == 400
    assert response.get_json()["type"] == "/problems/phone-not-allowed" and response.get_json()["field"] == "phone"


def test_denied_types_are_configurable(redis_url: str, clock: MovableClock) -> None:
    client = client_with(redis_url, clock, denied_number_types=())
    assert start(client, "+445612345678").status_code == 201


def test_the_country_allowlist(redis_url: str, clock: MovableClock) -> None:
    client = client_with(redis_url, clock, allowed_countries=("RU", "KZ"))
    assert start(client, PHONE).status_code == 201
    refused = start(client, "+447400123456", channel="call")
    assert refused.status_code == 400 and refused.get_json()["type"] == "/problems/phone-not-allowed"


def test_a_dead_redis_is_503_even_for_the_limiter(tmp_path: Path, clock: MovableClock) -> None:
    server = EmbeddedRedis(tmp_path)
    server.start()
    client = client_with(server.url, clock)
    server.stop()
    response = start(client)
    assert response.status_code == 503 and response.get_json()["type"] == "/problems/store-unavailable"
    response = check(client, "f" * 28, "123456")
    assert response.status_code == 503
