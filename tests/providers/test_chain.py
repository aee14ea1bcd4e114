"""The configured gateways end to end through the API: failover order, circuit breaker, call channel,
refused numbers, and ``verify check-config --live``, against the three wire-format emulators."""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, replace

import pytest
from flask.testing import FlaskClient

from tests.conftest import AUTH, PHONE, MovableClock, make_settings, start
from tests.providers.contract import HTTP_CONNECT_TIMEOUT, HTTP_READ_TIMEOUT
from tests.providers.d7_emulator import PASSWORD as D7_PASSWORD
from tests.providers.d7_emulator import TOKEN as D7_TOKEN
from tests.providers.d7_emulator import USERNAME as D7_USERNAME
from tests.providers.d7_emulator import D7Emulator
from tests.providers.smsc_emulator import SmscEmulator
from tests.providers.zoomconnect_emulator import EMAIL, TOKEN, ZoomConnectEmulator
from verify.app import build_gateways
from verify.cli import check_config
from verify.config import Settings
from verify.providers.d7 import D7Settings
from verify.providers.smsc import SmscSettings
from verify.providers.zoomconnect import ZoomConnectSettings
from verify.store import Store

SMSC_KEY = "smsc-api-key-0123"


@dataclass
class Gateways:
    smsc: SmscEmulator
    zoom: ZoomConnectEmulator
    d7: D7Emulator


@pytest.fixture
def gateways() -> Iterator[Gateways]:
    emulators = Gateways(SmscEmulator(apikey=SMSC_KEY), ZoomConnectEmulator(), D7Emulator("v1"))
    for emulator in (emulators.smsc, emulators.zoom, emulators.d7):
        emulator.start()
    yield emulators
    for emulator in (emulators.smsc, emulators.zoom, emulators.d7):
        emulator.stop()


@pytest.fixture
def settings(redis_url: str, gateways: Gateways) -> Settings:
    """Production-like: no sandbox, the chain smsc -> zoomconnect -> d7, calls through smsc."""
    return replace(
        make_settings(redis_url),
        sandbox=False,
        sms_providers=("smsc", "zoomconnect", "d7"),
        call_provider="smsc",
        voice_providers=(),
        telegram_providers=(),
        http_connect_timeout=HTTP_CONNECT_TIMEOUT,
        http_read_timeout=HTTP_READ_TIMEOUT,
        breaker_failures=2,
        public_url="https://verify.example",
        gateway_settings={
            "smsc": SmscSettings(url=gateways.smsc.url, apikey=SMSC_KEY),
            "zoomconnect": ZoomConnectSettings(url=gateways.zoom.url, email=EMAIL, token=TOKEN),
            "d7": D7Settings(api="v1", url=gateways.d7.url, token=D7_TOKEN, webhook_tokens=("hook-token",)),
        },
    )


def _code(text: str) -> str:
    found = re.search(r"\d{6}", text)
    assert found is not None, text
    return found.group()


def test_the_first_gateway_sends_and_the_code_it_carried_approves(client: FlaskClient, gateways: Gateways) -> None:
    body = start(client).get_json()
    assert body["delivery"] == {"provider": "smsc", "status": "sent"}
    assert body["sms"] == {"encoding": "GSM-7", "parts": 1}
    sent = gateways.smsc.last.form
    assert sent["id"] == body["id"] and sent["phones"] == PHONE
    assert gateways.zoom.requests == [] and gateways.d7.requests == []
    checked = client.post(f"/v1/verifications/{body['id']}/check", json={"code": _code(sent["mes"])}, headers=AUTH)
    assert checked.get_json()["status"] == "approved"


def test_failover_follows_the_chain_order(client: FlaskClient, gateways: Gateways) -> None:
    gateways.smsc.mode = "5xx"
    first = start(client).get_json()
    assert first["delivery"]["provider"] == "zoomconnect"
    assert gateways.zoom.last.json()["dataField"] == first["id"]
    gateways.zoom.mode = "timeout"
    second = start(client, "+79991234568").get_json()
    assert second["delivery"]["provider"] == "d7"
    assert gateways.d7.last.json()["messages"][0]["recipients"] == ["+79991234568"]
    assert len(gateways.smsc.requests) == 2 and len(gateways.zoom.requests) == 2


def test_no_money_fails_over_and_is_logged_as_an_error(
    client: FlaskClient, gateways: Gateways, caplog: pytest.LogCaptureFixture
) -> None:
    gateways.smsc.mode = "error:3"
    assert start(client).get_json()["delivery"]["provider"] == "zoomconnect"
    (record,) = [r for r in caplog.records if "smsc" in r.getMessage() and "gateway failed" in r.getMessage()]
    assert record.levelname == "ERROR" and "no money" in record.getMessage()


def test_when_every_gateway_fails_nothing_is_left_pending(client: FlaskClient, gateways: Gateways) -> None:
    gateways.smsc.mode, gateways.zoom.mode, gateways.d7.mode = "5xx", "malformed", "error:no-credit"
    response = start(client)
    assert response.status_code == 503 and response.get_json()["type"] == "/problems/delivery-failed"
    store = client.application.extensions["verify"].store
    assert store.client.keys("*vf:*") == [] and store.client.keys("*ph:*") == []
    gateways.smsc.mode = "ok"
    assert start(client).status_code == 201  # nothing blocks the next start


def test_a_refused_number_is_400_without_failover(client: FlaskClient, gateways: Gateways) -> None:
    gateways.smsc.mode = "error:7"
    response = start(client)
    assert response.status_code == 400 and response.get_json()["type"] == "/problems/invalid-phone"
    assert gateways.zoom.requests == [] and gateways.d7.requests == []


def test_the_breaker_skips_a_failing_gateway_for_its_cooldown(
    client: FlaskClient, gateways: Gateways, clock: MovableClock
) -> None:
    gateways.smsc.mode = "5xx"
    for phone in ("+79991234561", "+79991234562"):
        assert start(client, phone).get_json()["delivery"]["provider"] == "zoomconnect"
    assert len(gateways.smsc.requests) == 2
    gateways.smsc.mode = "ok"
    assert start(client, "+79991234563").get_json()["delivery"]["provider"] == "zoomconnect"
    assert len(gateways.smsc.requests) == 2  # skipped while open
    clock.advance(60)
    assert start(client, "+79991234564").get_json()["delivery"]["provider"] == "smsc"


@pytest.mark.parametrize("shape", ["list", "comma", "single", "absent"])
def test_call_channel_through_wait_call(client: FlaskClient, gateways: Gateways, shape: str) -> None:
    gateways.smsc.all_phones = shape  # type: ignore[assignment]
    body = start(client, channel="call").get_json()
    number = gateways.smsc.call_numbers[0]
    expected = [number] if shape in ("single", "absent") else list(gateways.smsc.call_numbers)
    assert body["call"] == {"number": "+" + number.lstrip("+"), "numbers": ["+" + n.lstrip("+") for n in expected]}
    assert body["delivery"] == {"provider": "smsc", "status": "sent"} and "sms" not in body
    assert gateways.smsc.last.path.endswith("/wait_call.php") and gateways.smsc.last.form["phone"] == PHONE[1:]


def test_a_failed_wait_call_is_a_delivery_failure(client: FlaskClient, gateways: Gateways) -> None:
    gateways.smsc.mode = "error:9"
    response = start(client, channel="call")
    assert response.status_code == 503 and response.get_json()["type"] == "/problems/delivery-failed"


def test_build_shares_one_instance_per_gateway(settings: Settings, redis_url: str, clock: MovableClock) -> None:
    built = build_gateways(settings, Store.from_url(redis_url, "x:"), clock)
    assert [p.name for p in built.sms] == ["smsc", "zoomconnect", "d7"]
    assert built.call is built.sms[0] and [p.name for p in built.all] == ["smsc", "zoomconnect", "d7"]


def test_check_config_live_prints_each_balance(
    gateways: Gateways, redis_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    env = {
        "VERIFY_API_KEYS": "api-key-0123456789",
        "VERIFY_SECRET_KEY": "secret-key-0123456789",
        "VERIFY_REDIS_URL": redis_url,
        "VERIFY_SMS_PROVIDERS": "smsc,zoomconnect,d7",
        "VERIFY_CALL_PROVIDER": "smsc",
        "VERIFY_SMSC_URL": gateways.smsc.url,
        "VERIFY_SMSC_APIKEY": SMSC_KEY,
        "VERIFY_SMSC_SECRET": "smsc-hook-secret",
        "VERIFY_ZOOMCONNECT_URL": gateways.zoom.url,
        "VERIFY_ZOOMCONNECT_EMAIL": EMAIL,
        "VERIFY_ZOOMCONNECT_TOKEN": TOKEN,
        "VERIFY_D7_API": "legacy",
        "VERIFY_D7_URL": gateways.d7.url,
        "VERIFY_D7_USERNAME": D7_USERNAME,
        "VERIFY_D7_PASSWORD": D7_PASSWORD,
    }
    gateways.d7.api = "legacy"
    assert check_config(live=True, env=env) == 0
    out = capsys.readouterr().out
    assert re.search(r"smsc: 250\.80", out) and re.search(r"zoomconnect: \d", out) and re.search(r"d7: \d", out)
    assert SMSC_KEY not in out and TOKEN not in out
    gateways.zoom.mode = "error:unauthorized"
    assert check_config(live=True, env=env) == 1
    assert "zoomconnect: FAILED" in capsys.readouterr().out
