"""A hostile client against the Procfile's gunicorn and a real Redis, replaying the attacks of issue 17: a stranger
with the public site key going for a victim's proof token, anonymous traffic that would fill Redis, crafted ids,
and guessing through SMS replies.

The server trusts one proxy (``VERIFY_TRUSTED_PROXIES=1``, set by tests/servers.py), so each request names its
client's address in ``X-Forwarded-For``, as the attacker's curl did.
"""

from __future__ import annotations

import os
import re
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
import redis
import requests

from tests.providers.smsc_emulator import smsc_callback
from tests.servers import AUTH, Server, gunicorn_server
from verify.embedded import EmbeddedRedis

SMSC_SECRET = "smsc-callback-secret-17"
SHOP = "https://shop.example"
SITE = {"X-Verify-Site-Key": "pk_shop", "Origin": SHOP}
VICTIM = "+79995550030"
SETTINGS = {
    "VERIFY_SITE_KEYS": f"pk_shop={SHOP}",
    "VERIFY_SMSC_SECRET": SMSC_SECRET,
    "VERIFY_CAPTCHA_MODE": "adaptive",
    "VERIFY_CAPTCHA_AFTER": "3",
}


@pytest.fixture(scope="module")
def attacked(redis_server: EmbeddedRedis, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    with gunicorn_server(redis_server.url, tmp_path_factory.mktemp("attacks"), SETTINGS, workers=2) as server:
        yield server


@pytest.fixture
def server(attacked: Server) -> Server:
    attacked.reset()
    return attacked


def call(
    server: Server,
    method: str,
    path: str,
    ip: str,
    body: object | None = None,
    headers: dict[str, str] | None = None,
) -> requests.Response:
    return requests.request(
        method,
        server.url(path),
        json=body,
        headers={**(headers if headers is not None else AUTH), "X-Forwarded-For": ip},
        timeout=30,
    )


def site(secret: str = "") -> dict[str, str]:
    return {**SITE, "X-Verify-Client-Secret": secret} if secret else SITE


def newest_code(server: Server, phone: str) -> str:
    sent = [d for d in server.smsc.delivered if d.kind == "sms" and d.phone == phone]
    assert sent, f"no SMS to {phone}"
    found = re.search(r"#(\d{6})\s*$", sent[-1].text) or re.search(r"\d{6}", sent[-1].text)
    assert found is not None, sent[-1].text
    return found.group(found.lastindex or 0)


def keys(server: Server, pattern: str) -> list[str]:
    client = redis.Redis.from_url(server.redis_url, decode_responses=True)
    try:
        return sorted(client.scan_iter(match=pattern, count=1000))
    finally:
        client.close()


# the token theft


def test_a_stranger_s_start_for_the_victim_s_phone_gets_nothing_of_the_victim_s(server: Server) -> None:
    victim = call(server, "POST", "/v1/verifications", "10.3.0.1", {"phone": VICTIM}, site())
    assert victim.status_code == 201, victim.text
    vid, secret = victim.json()["id"], victim.json()["client_secret"]
    victim_code = newest_code(server, VICTIM)
    stranger = call(server, "POST", "/v1/verifications", "10.66.0.1", {"phone": VICTIM}, site())
    assert stranger.status_code == 201, stranger.text  # a verification of its own, quota and all
    assert stranger.json()["id"] != vid and vid not in stranger.text and "retry_after" not in stranger.text
    approved = call(server, "POST", f"/v1/verifications/{vid}/check", "10.3.0.1", {"code": victim_code}, site(secret))
    assert approved.json()["status"] == "approved", approved.text
    token = approved.json()["token"]
    for secret_tried in ("", stranger.json()["client_secret"], "A" * 43):
        read = call(server, "GET", f"/v1/verifications/{vid}", "10.66.0.1", headers=site(secret_tried))
        assert read.status_code == 404 and token not in read.text, read.text
        for path, body in (
            (f"/v1/verifications/{vid}/check", {"code": victim_code}),
            (f"/v1/verifications/{vid}/resend", {}),
        ):
            tried = call(server, "POST", path, "10.66.0.1", body, site(secret_tried))
            assert tried.status_code == 404 and token not in tried.text, tried.text


def test_a_verification_planted_with_the_site_key_never_serves_the_backend_s_login(server: Server) -> None:
    planted = call(server, "POST", "/v1/verifications", "10.66.0.1", {"phone": VICTIM}, site())
    assert planted.status_code == 201
    pid, psecret = planted.json()["id"], planted.json()["client_secret"]
    backend = call(server, "POST", "/v1/verifications", "10.3.0.1", {"phone": VICTIM})
    assert backend.status_code == 201 and backend.json()["id"] != pid, backend.text
    code = newest_code(server, VICTIM)  # the backend's SMS: what the person types into the login form
    checked = call(server, "POST", f"/v1/verifications/{backend.json()['id']}/check", "10.3.0.1", {"code": code})
    assert checked.json()["status"] == "approved"
    read = call(server, "GET", f"/v1/verifications/{backend.json()['id']}", "10.66.0.1", headers=site(psecret))
    assert read.status_code == 404 and checked.json()["token"] not in read.text
    mine = call(server, "GET", f"/v1/verifications/{pid}", "10.66.0.1", headers=site(psecret)).json()
    assert mine["status"] == "pending" and "token" not in mine


# what anonymous traffic leaves in Redis


def test_reloads_with_new_idempotency_keys_leave_a_bounded_number_of_keys(server: Server) -> None:
    # The attack: many "reloads" of one pending start, each with a fresh Idempotency-Key. Through the site key each
    # is a start of its own, so the IP and phone limits refuse all but a few, and a refusal stores nothing; through
    # the API key each returns the pending verification and, having sent nothing, keeps no record either.
    n = 300
    answers = [
        call(server, "POST", "/v1/verifications", "10.9.0.1", {"phone": VICTIM}, {**site(), "Idempotency-Key": f"k{i}"})
        for i in range(n)
    ]
    assert {a.status_code for a in answers} <= {201, 428, 429}
    sent = sum(a.status_code == 201 for a in answers)
    assert sent <= 3  # the phone's limit (3 in 10 minutes), under the captcha
    assert len(keys(server, "*idem*")) == sent
    call(server, "POST", "/v1/verifications", "10.3.0.1", {"phone": "+79995550031"})
    for i in range(n):
        reload = call(
            server,
            "POST",
            "/v1/verifications",
            "10.3.0.1",
            {"phone": "+79995550031"},
            {**AUTH, "Idempotency-Key": f"a{i}"},
        )
        assert reload.status_code == 200
    assert len(keys(server, "*idem*")) == sent
    assert len(keys(server, "*")) < 40, keys(server, "*")


def test_refused_starts_leave_no_quota_keys_behind(server: Server) -> None:
    # One address past the captcha and its limits: 200 starts of 200 phones, all but the first few refused (428,
    # then 429). A phone's quota taken and given back leaves nothing.
    answers = [call(server, "POST", "/v1/verifications", "10.8.0.1", {"phone": f"+7999777{i:04d}"}) for i in range(200)]
    statuses = [a.status_code for a in answers]
    assert set(statuses) <= {201, 428, 429} and statuses.count(201) == 3, statuses
    assert len(keys(server, "*q:phone:*")) == 3, keys(server, "*q:phone:*")


# crafted ids


@pytest.mark.parametrize("suffix", [":final", ":final:final", "*", "{}", "\n", "x" * 3_000, "x" * 10_000])
def test_a_crafted_id_is_a_404_on_every_route(server: Server, suffix: str) -> None:
    # gunicorn itself answers 414 to a request line over 4094 bytes (its limit_request_line), before the app.
    too_long = 414 if len(suffix) > 4000 else 404
    started = call(server, "POST", "/v1/verifications", "10.4.0.1", {"phone": VICTIM})
    vid = started.json()["id"]
    wrong = call(server, "POST", f"/v1/verifications/{vid}/check", "10.4.0.1", {"code": "000001"})
    assert wrong.status_code in (200, 422)  # a final copy may now exist (events), as in the report
    crafted = quote(vid + suffix, safe="")
    for method, path, body in (
        ("GET", f"/v1/verifications/{crafted}", None),
        ("POST", f"/v1/verifications/{crafted}/check", {"code": "123456"}),
        ("POST", f"/v1/verifications/{crafted}/resend", {}),
        ("DELETE", f"/v1/verifications/{crafted}", None),
    ):
        answer = call(server, method, path, "10.4.0.1", body)
        assert answer.status_code == too_long, (method, path, answer.text[:300])
        assert too_long == 414 or answer.headers["Content-Type"] == "application/problem+json"
    assert keys(server, "*:final:final*") == []
    assert call(server, "GET", f"/v1/verifications/{vid}", "10.4.0.1").json()["status"] == "pending"


# guessing through SMS replies


def reply(server: Server, text: str, n: int, phone: str = VICTIM) -> requests.Response:
    fields = {"id": f"in-{n}", "phone": phone.lstrip("+"), "mes": text, "to": "79990000000"}
    _, body, content_type = smsc_callback(fields, secret=SMSC_SECRET, hash="sha1")
    return requests.post(server.url("/webhooks/smsc"), data=body, headers={"Content-Type": content_type}, timeout=30)


def test_guessing_through_sms_replies_takes_attempts_and_a_guess_list_nothing(server: Server) -> None:
    started = call(server, "POST", "/v1/verifications", "10.5.0.1", {"phone": VICTIM})
    vid = started.json()["id"]
    code = newest_code(server, VICTIM)
    guesses = [f"{n:06d}" for n in range(1, 200) if f"{n:06d}" != code]
    for n in range(50):  # 50 replies of 10 codes each: each rejected whole
        assert reply(server, " ".join(guesses[n % 19 * 10 : n % 19 * 10 + 10]), n).status_code == 200
    assert call(server, "GET", f"/v1/verifications/{vid}", "10.5.0.1").json()["attempts_left"] == 5
    assert reply(server, " ".join(guesses[:3]), 100).status_code == 200  # a few candidates: each an attempt
    assert call(server, "GET", f"/v1/verifications/{vid}", "10.5.0.1").json()["attempts_left"] == 2
    assert reply(server, " ".join(guesses[3:5]), 101).status_code == 200
    body: dict[str, Any] = call(server, "GET", f"/v1/verifications/{vid}", "10.5.0.1").json()
    assert body["status"] == "max_attempts_reached" and body["attempts_left"] == 0
    assert reply(server, code, 102).status_code == 200  # too late: the verification is spent
    assert call(server, "GET", f"/v1/verifications/{vid}", "10.5.0.1").json()["status"] == "max_attempts_reached"


def test_the_wrong_code_lock_holds_across_verifications_until_an_approval(
    redis_server: EmbeddedRedis, tmp_path: Path
) -> None:
    settings = {**SETTINGS, "VERIFY_LIMIT_PHONE_FAILURES": "4/day", "VERIFY_CAPTCHA_MODE": "off"}
    with gunicorn_server(redis_server.url, tmp_path, settings, workers=1) as locked:
        locked.reset()
        first = call(locked, "POST", "/v1/verifications", "10.6.0.1", {"phone": VICTIM}).json()["id"]
        for _ in range(3):
            assert call(
                locked, "POST", f"/v1/verifications/{first}/check", "10.6.0.1", {"code": "000000"}
            ).status_code in (422,)
        right = newest_code(locked, VICTIM)
        assert call(locked, "POST", f"/v1/verifications/{first}/check", "10.6.0.1", {"code": right}).status_code == 200
        # The approval ended the run: four more wrong codes (on a new verification) before the phone locks.
        second = call(locked, "POST", "/v1/verifications", "10.6.0.1", {"phone": VICTIM}).json()["id"]
        for _ in range(4):
            assert (
                call(locked, "POST", f"/v1/verifications/{second}/check", "10.6.0.1", {"code": "000000"}).status_code
                == 422
            )
        third = call(locked, "POST", "/v1/verifications", "10.6.0.1", {"phone": VICTIM}).json()["id"]
        refused = call(
            locked, "POST", f"/v1/verifications/{third}/check", "10.6.0.1", {"code": newest_code(locked, VICTIM)}
        )
        assert refused.status_code == 429 and refused.json()["limit"] == "phone_failures", refused.text
        assert int(refused.headers["Retry-After"]) > 86_000


# Redis frozen mid-load


def test_starts_answered_503_while_redis_froze_converge_on_retry(server: Server, redis_server: EmbeddedRedis) -> None:
    # A stream of starts (each with its Idempotency-Key) while Redis freezes for 3 s. Each start answered 503 may
    # have been applied; retried with the same key it must succeed within seconds (no 120 s lock-out), and in the
    # end every phone got exactly one code, and that code approves.
    assert redis_server.process is not None
    phones = [f"+799{i:02d}555660" for i in range(48)]  # prefixes of their own: no prefix limit
    answers: dict[str, int] = {}

    bodies: dict[str, str] = {}

    def start(i: int) -> int:
        headers = {**AUTH, "Idempotency-Key": f"s-{i}"}
        answer = call(server, "POST", "/v1/verifications", f"10.20.0.{i + 1}", {"phone": phones[i]}, headers)
        bodies[phones[i]] = answer.text
        return answer.status_code

    def stream(part: int) -> None:
        for i in range(part, len(phones), 4):
            answers[phones[i]] = start(i)
            time.sleep(0.1)

    threads = [threading.Thread(target=stream, args=(part,)) for part in range(4)]
    for thread in threads:
        thread.start()
    time.sleep(0.5)
    os.kill(redis_server.process.pid, signal.SIGSTOP)
    try:
        time.sleep(3)
    finally:
        os.kill(redis_server.process.pid, signal.SIGCONT)
    for thread in threads:
        thread.join(60)
    assert set(answers.values()) <= {201, 503}, answers
    assert 503 in answers.values(), "the freeze met no start: nothing was tried"
    for i, number in enumerate(phones):
        deadline = time.monotonic() + 10
        while answers[number] != 201 and answers[number] != 200:
            assert time.monotonic() < deadline, f"{number}: {bodies[number]} 10 s after Redis came back"
            time.sleep(0.5)
            answers[number] = start(i)
    for number in phones:
        sent = [d for d in server.smsc.delivered if d.kind == "sms" and d.phone == number]
        assert len(sent) == 1, f"{number}: {len(sent)} codes sent"
    # Each code approves its phone's verification.
    for i, number in enumerate(phones[:8]):
        replay = call(
            server,
            "POST",
            "/v1/verifications",
            f"10.20.0.{i + 1}",
            {"phone": number},
            {**AUTH, "Idempotency-Key": f"s-{i}"},
        )
        vid = replay.json()["id"]
        checked = call(
            server, "POST", f"/v1/verifications/{vid}/check", "10.21.0.1", {"code": newest_code(server, number)}
        )
        assert checked.json().get("status") == "approved", (number, checked.text)
