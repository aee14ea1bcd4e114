"""Channel telegram end to end: the app, the real Redis, and a local Telegram Gateway API that speaks its wire format
(tests/providers/telegram_emulator.py; docs/gateways/telegram.md)."""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path

import pytest
from flask import Flask
from flask.testing import FlaskClient
from werkzeug.wrappers import Request, Response

from tests.conftest import AUTH, PHONE, check, make_settings, serving, start
from tests.providers.emulator import Seen
from tests.providers.telegram_emulator import TOKEN, TelegramEmulator
from tests.servers import Call, gunicorn_server, send
from verify import create_app
from verify.embedded import EmbeddedRedis
from verify.providers.telegram import TelegramSettings

PUBLIC_URL = "https://verify.example"


@pytest.fixture
def telegram() -> Iterator[TelegramEmulator]:
    emulator = TelegramEmulator()
    emulator.start()
    yield emulator
    emulator.stop()


@pytest.fixture
def app(redis_url: str, telegram: TelegramEmulator) -> Flask:
    settings = replace(
        make_settings(redis_url),
        sandbox=False,
        telegram_providers=("telegram",),
        public_url=PUBLIC_URL,
        gateway_settings={"telegram": TelegramSettings(tokens=(TOKEN, "654321:old-token"), url=telegram.url)},
    )
    return create_app(settings, background=False)


@pytest.fixture
def served(app: Flask) -> Iterator[str]:
    with serving(app) as base:
        yield base


def eventually(condition: Callable[[], object], what: str, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.02)


def calls(telegram: TelegramEmulator, method: str) -> list[dict[str, object]]:
    return [dict(seen.json() or {}) for seen in telegram.requests if seen.path.endswith("/" + method)]


def get(client: FlaskClient, vid: str) -> dict[str, object]:
    body: dict[str, object] = client.get(f"/v1/verifications/{vid}", headers=AUTH).get_json()
    return body


def started(client: FlaskClient, telegram: TelegramEmulator) -> tuple[str, str]:
    """A telegram verification started: its id, and the request id Telegram gave its message."""
    vid = str(start(client, channel="telegram").get_json()["id"])
    (request_id,) = telegram.taken
    return vid, request_id


def test_a_telegram_code_is_ours_its_ttl_the_challenges_and_a_right_check_is_confirmed_off_the_request(
    client: FlaskClient, telegram: TelegramEmulator
) -> None:
    started = start(client, channel="telegram")
    assert started.status_code == 201, started.get_json()
    body = started.get_json()
    (sent,) = calls(telegram, "sendVerificationMessage")
    assert sent["phone_number"] == PHONE and sent["ttl"] == 900 and sent["payload"] == body["id"]
    assert sent["callback_url"] == f"{PUBLIC_URL}/webhooks/telegram"
    assert re.fullmatch(r"\d{6}", str(sent["code"]))
    request_id = next(iter(telegram.taken))
    assert (body["channel"], body["delivery"]) == ("telegram", {"provider": "telegram", "status": "sent"})
    assert check(client, body["id"], "000000" if sent["code"] != "000000" else "111111").status_code == 422
    approved = check(client, body["id"], str(sent["code"]))
    assert approved.status_code == 200 and approved.get_json()["status"] == "approved"
    # Telegram is told the code was right, after the answer (a worker thread), once: its conversion figures.
    eventually(lambda: calls(telegram, "checkVerificationStatus"), "checkVerificationStatus")
    assert calls(telegram, "checkVerificationStatus") == [{"request_id": request_id, "code": sent["code"]}]


def test_a_cancel_revokes_the_message(client: FlaskClient, telegram: TelegramEmulator) -> None:
    vid, request_id = started(client, telegram)
    assert client.delete(f"/v1/verifications/{vid}", headers=AUTH).status_code == 200
    eventually(lambda: calls(telegram, "revokeVerificationMessage"), "revokeVerificationMessage")
    assert calls(telegram, "revokeVerificationMessage") == [{"request_id": request_id}]
    assert calls(telegram, "checkVerificationStatus") == []


def test_a_phone_with_no_telegram_fails_like_any_gateway_and_takes_no_quota(
    client: FlaskClient, telegram: TelegramEmulator
) -> None:
    telegram.no_account.add(PHONE)
    for _ in range(4):  # the phone's limit is 3 in 10 minutes: each failure gave its quota back
        failed = start(client, channel="telegram")
        assert failed.status_code == 503 and failed.get_json()["type"] == "/problems/delivery-failed"
    telegram.no_account.clear()
    assert start(client, channel="telegram").status_code == 201


def test_reports_update_the_delivery_and_forgeries_and_replays_change_nothing(
    client: FlaskClient, telegram: TelegramEmulator, served: str
) -> None:
    hook = f"{served}/webhooks/telegram"
    vid, request_id = started(client, telegram)
    assert telegram.post_report(request_id, "delivered", url=hook, token="999:someone-else").status_code == 403
    assert telegram.post_report(request_id, "delivered", url=hook, at=int(time.time()) - 3600).status_code == 403
    assert get(client, vid)["delivery"] == {"provider": "telegram", "status": "sent"}
    assert telegram.post_report(request_id, "delivered", url=hook).status_code == 200
    assert get(client, vid)["delivery"] == {"provider": "telegram", "status": "delivered"}
    assert telegram.replay().status_code == 403  # the same signed bytes again
    assert telegram.post_report(request_id, "read", url=hook, token="654321:old-token").status_code == 200  # rotation
    assert get(client, vid)["delivery"] == {"provider": "telegram", "status": "read"}
    assert telegram.post_report(request_id, "expired", url=hook).status_code == 200
    assert get(client, vid)["delivery"] == {"provider": "telegram", "status": "read"}  # final stays final


def metric(client: FlaskClient, name: str) -> float:
    found = re.search(
        rf'^{name}{{provider="telegram",tenant="default"}} (\S+)$', client.get("/metrics").get_data(as_text=True), re.M
    )
    return float(found.group(1)) if found else 0.0


def test_an_expired_code_is_a_failed_delivery_its_cost_and_refund_counted_once(
    client: FlaskClient, telegram: TelegramEmulator, served: str
) -> None:
    hook = f"{served}/webhooks/telegram"
    vid, request_id = started(client, telegram)
    assert telegram.post_report(request_id, "sent", url=hook).status_code == 200
    assert (metric(client, "verify_gateway_cost_total"), metric(client, "verify_gateway_refunds_total")) == (0, 0)
    assert telegram.post_report(request_id, "expired", url=hook).status_code == 200
    assert get(client, vid)["delivery"] == {"provider": "telegram", "status": "failed"}
    # The same report again, signed anew a second later (not a replay of the same bytes): counted once.
    assert telegram.post_report(request_id, "expired", url=hook, at=int(time.time()) + 1).status_code == 200
    assert metric(client, "verify_gateway_cost_total") == pytest.approx(0.01)
    assert metric(client, "verify_gateway_refunds_total") == 1


def test_the_checks_answer_does_not_wait_for_telegram(
    client: FlaskClient, telegram: TelegramEmulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The emulator holds checkVerificationStatus until the check has answered: a check that waited for Telegram
    would hold it until the emulator gave up (5 s), and the order below would be the other way round."""
    answered, order = threading.Event(), []
    answer = telegram.answer

    def held(request: Request, seen: Seen) -> Response:
        if seen.path.endswith("/checkVerificationStatus"):
            order.append("telegram asked" if answered.wait(5) else "telegram asked first")
        return answer(request, seen)

    monkeypatch.setattr(telegram, "answer", held)
    vid = start(client, channel="telegram").get_json()["id"]
    code = str(calls(telegram, "sendVerificationMessage")[0]["code"])
    assert check(client, vid, code).status_code == 200
    answered.set()
    eventually(lambda: order, "checkVerificationStatus")
    assert order == ["telegram asked"]


def test_a_failing_confirmation_changes_nothing(client: FlaskClient, telegram: TelegramEmulator) -> None:
    vid = start(client, channel="telegram").get_json()["id"]
    code = str(calls(telegram, "sendVerificationMessage")[0]["code"])
    telegram.mode = "error:other"
    assert check(client, vid, code).status_code == 200
    eventually(lambda: calls(telegram, "checkVerificationStatus"), "checkVerificationStatus")
    assert get(client, vid)["status"] == "approved"


def test_under_the_procfiles_gunicorn_a_right_code_is_confirmed_and_a_report_lands(
    redis_server: EmbeddedRedis, telegram: TelegramEmulator, tmp_path: Path
) -> None:
    """What ships: gevent workers run the confirmation in their background pool, and the report route is served."""
    settings = {"VERIFY_TELEGRAM_TOKEN": TOKEN, "VERIFY_TELEGRAM_URL": telegram.url, "VERIFY_PUBLIC_URL": PUBLIC_URL}
    with gunicorn_server(redis_server.url, tmp_path, settings, workers=2, name="telegram") as server:
        number = "+79991239901"  # a phone of its own: this Redis is the session's
        started = send(server, Call("POST", "/v1/verifications", {"phone": number, "channel": "telegram"}, "10.1.0.1"))
        assert started.status == 201, started
        vid, code = str(started.body["id"]), str(calls(telegram, "sendVerificationMessage")[0]["code"])
        request_id = next(iter(telegram.taken))
        report = telegram.post_report(request_id, "delivered", url=server.url("/webhooks/telegram"))
        assert report.status_code == 200
        checked = send(server, Call("POST", f"/v1/verifications/{vid}/check", {"code": code}, "10.1.0.1"))
        assert checked.status == 200 and checked.body["delivery"] == {"provider": "telegram", "status": "delivered"}
        eventually(lambda: calls(telegram, "checkVerificationStatus"), "checkVerificationStatus from a worker")
        assert calls(telegram, "checkVerificationStatus") == [{"request_id": request_id, "code": code}]
        assert "Traceback" not in server.tail(200)
