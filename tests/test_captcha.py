"""Captcha escalation end to end: adaptive per IP, always, off; builtin images and siteverify providers;
the SMS-pumping breaker opening and closing."""

from __future__ import annotations

import base64
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from typing import Any
from unittest.mock import patch

import pytest
from flask.testing import FlaskClient
from werkzeug.test import TestResponse
from werkzeug.wrappers import Request, Response

from tests.conftest import MovableClock, check, last_code, make_settings, serving, start
from verify import create_app
from verify.captcha import PUMP_REFRESH_MS
from verify.errors import StoreUnavailable
from verify.store import Batch

PNG = b"\x89PNG\r\n\x1a\n"


def client_with(redis_url: str, clock: MovableClock, **overrides: Any) -> FlaskClient:
    settings = replace(make_settings(redis_url), **{"captcha_mode": "adaptive", **overrides})
    return create_app(settings, clock=clock, background=False).test_client()


def needs_captcha(response: TestResponse) -> dict[str, Any]:
    assert response.status_code == 428, response.get_data(as_text=True)
    body = response.get_json()
    assert body["type"] == "/problems/captcha-required"
    captcha: dict[str, Any] = body["captcha"]
    return captcha


def solve(client: FlaskClient, captcha: dict[str, Any]) -> str:
    answer: str = client.get(f"/sandbox/captcha/{captcha['id']}").get_json()["answer"]
    return answer


def test_captcha_challenges_from_one_ip_are_limited_before_one_is_drawn(redis_url: str, clock: MovableClock) -> None:
    # A 428 draws an image and keeps its answer five minutes: a client that only collects challenges is refused.
    client = client_with(redis_url, clock, captcha_mode="always", limit_captcha_challenges="3/minute")
    store = client.application.extensions["verify"].store
    for i in range(3):
        needs_captcha(start(client, f"+7999123100{i}"))
    with patch("verify.captcha.ImageCaptcha") as drawn:
        refused = start(client, "+79991231009")
        assert refused.status_code == 429 and refused.get_json()["limit"] == "captcha_challenges", refused.get_json()
        assert drawn.call_count == 0
    answers = [k for k in store.client.scan_iter(match="*captcha:*") if not k.endswith(":plain")]  # sandbox copies
    assert len(answers) == 3  # the refused start kept no answer
    clock.advance(120)  # a sliding window: the previous minute's weight is gone a whole window later
    needs_captcha(start(client, "+79991231009"))


def test_adaptive_asks_after_three_starts_an_hour_from_one_ip(redis_url: str, clock: MovableClock) -> None:
    client = client_with(redis_url, clock)
    for i in range(3):
        assert start(client, f"+7999123000{i}").status_code == 201
    captcha = needs_captcha(start(client, "+79991230009"))
    assert captcha["image"].startswith("data:image/png;base64,")
    assert base64.b64decode(captcha["image"].split(",", 1)[1]).startswith(PNG)
    # Wrong: a fresh captcha, and the old one is used up.
    fresh = needs_captcha(start(client, "+79991230009", captcha={"id": captcha["id"], "answer": "nope"}))
    assert fresh["id"] != captcha["id"]
    assert client.get(f"/sandbox/captcha/{captcha['id']}").status_code == 404
    # Right, in any case: the start goes through.
    answer = solve(client, fresh)
    solved = start(client, "+79991230009", captcha={"id": fresh["id"], "answer": answer.lower()})
    assert solved.status_code == 201
    # Reused: refused.
    needs_captcha(start(client, "+79991230008", captcha={"id": fresh["id"], "answer": answer}))


def test_a_captcha_lives_five_minutes(redis_url: str, clock: MovableClock) -> None:
    client = client_with(redis_url, clock, captcha_mode="always")
    captcha = needs_captcha(start(client))
    store = client.application.extensions["verify"].store
    assert 295_000 < store.client.pttl(store.captcha_key(captcha["id"])) <= 300_000
    assert store.client.get(store.captcha_key(captcha["id"])) != solve(client, captcha)  # only an HMAC is kept


def test_a_reloaded_page_is_not_asked_for_a_captcha(redis_url: str, clock: MovableClock) -> None:
    client = client_with(redis_url, clock, captcha_mode="always")
    captcha = needs_captcha(start(client))
    first = start(client, captcha={"id": captcha["id"], "answer": solve(client, captcha)})
    for _ in range(5):  # the same start again inside the resend cooldown: nothing is sent, nothing is asked
        again = start(client)
        assert again.status_code == 200 and again.get_json()["id"] == first.get_json()["id"]
    clock.advance(30)
    needs_captcha(start(client))  # past the cooldown it would send again: asked


def test_always_and_off(redis_url: str, clock: MovableClock) -> None:
    always = client_with(redis_url, clock, captcha_mode="always")
    captcha = needs_captcha(start(always))
    assert start(always, captcha={"id": captcha["id"], "answer": solve(always, captcha)}).status_code == 201
    off = client_with(redis_url, clock, captcha_mode="off")
    for i in range(5):
        assert start(off, f"+7999123001{i}").status_code == 201


def test_a_malformed_captcha_field(redis_url: str, clock: MovableClock) -> None:
    client = client_with(redis_url, clock, captcha_mode="always")
    for value in ("abc", ["x"], {"id": 5, "answer": "x"}):
        response = start(client, captcha=value)
        assert response.status_code == 400 and response.get_json()["field"] == "captcha"


def test_the_sandbox_answer_endpoint_needs_sandbox_mode(redis_url: str, clock: MovableClock) -> None:
    client = client_with(redis_url, clock, captcha_mode="always", sandbox=False)
    captcha = needs_captcha(start(client))
    assert client.get(f"/sandbox/captcha/{captcha['id']}").status_code == 404


@dataclass
class Siteverify:
    """A local siteverify endpoint (Turnstile/hCaptcha/reCAPTCHA speak the same form)."""

    url: str = ""
    seen: list[dict[str, str]] = field(default_factory=list)

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Any:
        request = Request(environ)
        form = dict(request.form.items())
        self.seen.append(form)
        ok = form.get("secret") == "captcha-secret" and form.get("response") == "good-token"
        body = '{"success": true}' if ok else '{"success": false, "error-codes": ["invalid-input-response"]}'
        return Response(body, mimetype="application/json")(environ, start_response)


@pytest.fixture
def siteverify() -> Iterator[Siteverify]:
    target = Siteverify()
    with serving(target) as base:
        target.url = f"{base}/siteverify"
        yield target


@pytest.mark.parametrize("provider", ["turnstile", "hcaptcha", "recaptcha"])
def test_siteverify_providers(redis_url: str, clock: MovableClock, siteverify: Siteverify, provider: str) -> None:
    client = client_with(
        redis_url,
        clock,
        captcha_mode="always",
        captcha_provider=provider,
        captcha_secret="captcha-secret",
        captcha_verify_url=siteverify.url,
    )
    assert needs_captcha(start(client)) == {"provider": provider}
    assert needs_captcha(start(client, captcha={"token": "bad-token"})) == {"provider": provider}
    assert start(client, captcha={"token": "good-token"}).status_code == 201
    assert siteverify.seen[-1] == {"secret": "captcha-secret", "response": "good-token", "remoteip": "127.0.0.1"}


def test_an_unreachable_siteverify_fails_closed(redis_url: str, clock: MovableClock) -> None:
    client = client_with(
        redis_url,
        clock,
        captcha_mode="always",
        captcha_provider="turnstile",
        captcha_secret="captcha-secret",
        captcha_verify_url="http://127.0.0.1:9/siteverify",
    )
    needs_captcha(start(client, captcha={"token": "good-token"}))


def test_the_pumping_breaker_opens_for_sms_and_closes(
    redis_url: str, clock: MovableClock, caplog: pytest.LogCaptureFixture
) -> None:
    client = client_with(redis_url, clock, captcha_after=1000, pumping_min_starts=5, pumping_threshold=0.8)
    ids = [start(client, f"+7999123002{i}").get_json()["id"] for i in range(5)]  # none approved: share 1.0
    assert start(client, "+79991230029").status_code == 201  # the worker's verdict is still the one of the 1st start
    clock.advance(PUMP_REFRESH_MS / 1000)  # then it reads the statistics again
    needs_captcha(start(client, "+79991230030"))
    assert caplog.text.count("SMS pumping suspected for RU") == 1
    assert start(client, "+79991230031", channel="call").status_code == 201  # the person pays for a call
    assert start(client, "+447400123456").status_code == 201  # another country is not affected
    # Two approvals bring the share to 4/6, under the threshold: the breaker closes by itself.
    assert check(client, ids[0], last_code(client, "+79991230020")).status_code == 200
    assert check(client, ids[1], last_code(client, "+79991230021")).status_code == 200
    clock.advance(PUMP_REFRESH_MS / 1000)
    assert start(client, "+79991230032").status_code == 201
    assert caplog.text.count("SMS pumping suspected for RU") == 1  # logged once (per 5 minutes), not per start


def test_the_pumping_verdict_survives_statistics_that_cannot_be_read(
    redis_url: str, clock: MovableClock, caplog: pytest.LogCaptureFixture
) -> None:
    client = client_with(redis_url, clock, captcha_after=1000, pumping_min_starts=2, pumping_threshold=0.5)
    for i in range(2):
        assert start(client, f"+7999123002{i}").status_code == 201
    clock.advance(PUMP_REFRESH_MS / 1000)
    needs_captcha(start(client, "+79991230030"))
    with patch.object(Batch, "pump_read", side_effect=StoreUnavailable("a node is down")):
        clock.advance(PUMP_REFRESH_MS / 1000)
        needs_captcha(start(client, "+79991230031"))  # the last verdict holds: no 503, and no SMS slips through
    assert "could not be read (a node is down); keeping the last verdict" in caplog.text


def test_a_solved_captcha_does_not_reset_the_ip_rule(redis_url: str, clock: MovableClock) -> None:
    client = client_with(redis_url, clock, captcha_after=1)
    assert start(client, "+79991230001").status_code == 201
    captcha = needs_captcha(start(client, "+79991230002"))
    assert (
        start(client, "+79991230002", captcha={"id": captcha["id"], "answer": solve(client, captcha)}).status_code
        == 201
    )
    needs_captcha(start(client, "+79991230003"))


def test_a_captcha_admits_only_the_ip_it_was_given_to(redis_url: str, clock: MovableClock) -> None:
    client = client_with(redis_url, clock, captcha_mode="always", trusted_proxies=1)

    def start_from(ip: str, **fields: Any) -> TestResponse:
        return start(client, "+79991230001", headers={"X-Forwarded-For": ip}, **fields)

    captcha = needs_captcha(start_from("198.51.100.1"))
    answer = {"id": captcha["id"], "answer": solve(client, captcha)}
    needs_captcha(start_from("203.0.113.9", captcha=answer))  # solved elsewhere: refused, and used up
    captcha = needs_captcha(start_from("198.51.100.1"))
    assert (
        start_from("198.51.100.1", captcha={"id": captcha["id"], "answer": solve(client, captcha)}).status_code == 201
    )
