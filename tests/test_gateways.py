"""Adding a gateway is its module, one line in ``verify/gateways.py`` and its tests (docs/adding-a-provider.md).

The walkthrough, done here without touching any other module: the first section is what
``verify/providers/toy.py`` would hold, and :data:`WITH_TOY` is the one line the list gets. The toy gateway then
has its settings read from the environment (only when it is named), shows in ``verify check-config``, sends SMS in
the failover chain, and serves its webhook through the common pipeline.
"""

from __future__ import annotations

import hmac
import json
import logging
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field

import pytest
from werkzeug.wrappers import Request, Response

from tests.conftest import API_KEY, AUTH, PHONE, SECRET_KEY, MovableClock, check, make_settings, start
from tests.providers.emulator import Emulator, Seen
from verify import create_app, env
from verify.cli import check_config
from verify.config import Settings
from verify.errors import ConfigError, NotFound, WebhookRejected
from verify.gateways import GATEWAYS
from verify.providers.base import (
    AppSettings,
    DeliveryReport,
    Gateway,
    Http,
    Inbound,
    Provider,
    ProviderError,
    Sent,
    Shared,
    SmsMessage,
    Webhook,
    WebhookRoute,
    json_of,
    scalar,
)

# ---- the toy gateway's module: settings, provider, webhook, declaration ----


@dataclass(frozen=True)
class ToySettings:
    """Toy: a bearer token, and the secrets its delivery reports carry in a header (any verifies)."""

    url: str = field(default="https://toy.example/", metadata=env.var("VERIFY_TOY_URL", env.url(base=True)))
    token: str = field(
        default="", metadata=env.var("VERIFY_TOY_TOKEN", env.required("toy is a configured provider"), secret=True)
    )
    secrets: tuple[str, ...] = field(default=(), metadata=env.var("VERIFY_TOY_SECRET", env.secrets(), secret=True))


class ToyProvider(Provider):
    """``POST send`` with JSON; the answer's ``id`` is the message id."""

    name = "toy"

    def __init__(self, settings: ToySettings, http: Http) -> None:
        self._settings = settings
        self._http = http

    def send_sms(self, message: SmsMessage) -> Sent:
        """Send one SMS; a success without an id is a transient error."""
        body = {"to": message.to, "text": message.text}
        headers = {"Authorization": f"Bearer {self._settings.token}"}
        response = self._http.request(self.name, "POST", self._settings.url + "send", json=body, headers=headers)
        reply = json_of(self.name, response)
        message_id = scalar(reply.get("id")) if isinstance(reply, dict) else ""
        if response.status_code != 200 or not message_id:
            raise ProviderError(self.name, f"HTTP {response.status_code}", transient=True, payload=reply)
        return Sent(self.name, message_id)

    def balance(self) -> str:
        """The toy never says."""
        return "unknown (toy)"


def parse_toy_webhook(
    route: str, inbound: Inbound, args: Mapping[str, str], settings: ToySettings, now: float, max_age: int
) -> Webhook:
    """A delivery report ``{"id": ..., "status": "delivered"|"failed"}``, its secret in ``X-Toy-Secret``."""
    given = inbound.headers.get("X-Toy-Secret", "").encode()
    if not any([hmac.compare_digest(given, secret.encode()) for secret in settings.secrets]):
        raise WebhookRejected("toy report without a valid secret")
    report = json.loads(inbound.body)
    return Webhook([DeliveryReport("toy", str(report["id"]), str(report["status"]), str(report["status"]), raw=report)])


def _toy_warnings(settings: ToySettings, app: AppSettings) -> list[str]:
    return [] if settings.secrets else ["VERIFY_TOY_SECRET is unset: toy delivery reports are refused (403)"]


def _make_toy(settings: ToySettings, shared: Shared) -> ToyProvider:
    return ToyProvider(settings, shared.http)


TOY = Gateway(
    "toy",
    ToySettings,
    _make_toy,
    webhooks=(WebhookRoute("/toy/report", ("POST",), "report", ack="THANKS"),),
    parse=parse_toy_webhook,
    warnings=_toy_warnings,
)

# ---- the one line in verify/gateways.py ----

WITH_TOY = (*GATEWAYS, TOY)

# ---- its tests ----

TOY_TOKEN = "toy-token-0123"
TOY_SECRET = "toy-hook-secret"


class ToyEmulator(Emulator):
    """The toy's wire: ``POST /send`` with the bearer token answers ``{"id": "toy-<n>"}``."""

    def answer(self, request: Request, seen: Seen) -> Response:
        if seen.headers.get("Authorization") != f"Bearer {TOY_TOKEN}":
            return Response(json.dumps({"error": "unauthorized"}), status=401, mimetype="application/json")
        return Response(json.dumps({"id": f"toy-{len(self.requests)}"}), mimetype="application/json")


@pytest.fixture
def toy() -> Iterator[ToyEmulator]:
    emulator = ToyEmulator()
    emulator.start()
    yield emulator
    emulator.stop()


def toy_env(toy: ToyEmulator, redis_url: str = "redis://127.0.0.1:6379/0") -> dict[str, str]:
    return {
        "VERIFY_API_KEYS": API_KEY,
        "VERIFY_SECRET_KEY": SECRET_KEY,
        "VERIFY_REDIS_URL": redis_url,
        "VERIFY_CAPTCHA_MODE": "off",
        "VERIFY_SMS_PROVIDERS": "toy",
        "VERIFY_TOY_URL": toy.url,
        "VERIFY_TOY_TOKEN": TOY_TOKEN,
        "VERIFY_TOY_SECRET": TOY_SECRET,
    }


def test_the_toy_settings_are_read_from_the_environment_only_when_it_is_named(toy: ToyEmulator) -> None:
    settings = Settings.from_env(toy_env(toy), WITH_TOY)
    assert settings.gateway_settings["toy"] == ToySettings(url=toy.url, token=TOY_TOKEN, secrets=(TOY_SECRET,))
    with pytest.raises(ConfigError) as caught:
        Settings.from_env({**toy_env(toy), "VERIFY_TOY_TOKEN": ""}, WITH_TOY)
    assert caught.value.variable == "VERIFY_TOY_TOKEN"
    unnamed = Settings.from_env({**toy_env(toy), "VERIFY_SMS_PROVIDERS": "sandbox", "VERIFY_SANDBOX": "1"}, WITH_TOY)
    assert "toy" not in unnamed.gateway_settings


def test_without_its_line_the_toy_is_unknown(toy: ToyEmulator) -> None:
    with pytest.raises(ConfigError, match=r"must list distinct providers from sandbox, smsc, zoomconnect, d7, hook$"):
        Settings.from_env(toy_env(toy))
    with pytest.raises(ConfigError, match=r"from sandbox, smsc, zoomconnect, d7, hook, toy$"):
        Settings.from_env({**toy_env(toy), "VERIFY_SMS_PROVIDERS": "toy,toy"}, WITH_TOY)
    with pytest.raises(ConfigError, match=r"must be one of sandbox, smsc$"):  # the toy declares no calls
        Settings.from_env({**toy_env(toy), "VERIFY_CALL_PROVIDER": "toy"}, WITH_TOY)


def test_the_toy_shows_in_check_config(toy: ToyEmulator, capsys: pytest.CaptureFixture[str]) -> None:
    assert check_config(live=False, env=toy_env(toy), gateways=WITH_TOY) == 0
    out = capsys.readouterr().out
    assert re.search(rf"VERIFY_TOY_URL\s+{re.escape(toy.url)}\n", out)
    assert re.search(r"VERIFY_TOY_TOKEN\s+set \(masked\)", out) and TOY_TOKEN not in out and TOY_SECRET not in out
    assert "SMS failover chain: toy" in out


def test_its_start_time_warning_is_logged(toy: ToyEmulator, caplog: pytest.LogCaptureFixture) -> None:
    Settings.from_env(toy_env(toy), WITH_TOY)
    assert "VERIFY_TOY_SECRET" not in caplog.text
    with caplog.at_level(logging.WARNING):
        Settings.from_env({**toy_env(toy), "VERIFY_TOY_SECRET": ""}, WITH_TOY)
    assert "VERIFY_TOY_SECRET is unset: toy delivery reports are refused (403)" in caplog.text


def test_the_toy_sends_sms_and_serves_its_webhook(toy: ToyEmulator, redis_url: str, clock: MovableClock) -> None:
    app = create_app(Settings.from_env(toy_env(toy, redis_url), WITH_TOY), clock=clock, background=False)
    client = app.test_client()
    started = start(client)
    assert started.status_code == 201, started.get_data(as_text=True)
    body = started.get_json()
    assert body["delivery"] == {"provider": "toy", "status": "sent"}
    sent = toy.last.json()
    assert toy.last.path == "/send" and sent["to"] == PHONE
    code = re.search(r"\d{6}", sent["text"])
    assert code is not None

    report = json.dumps({"id": "toy-1", "status": "delivered"})
    forged = client.post("/webhooks/toy/report", data=report, headers={"X-Toy-Secret": "wrong"})
    assert forged.status_code == 403
    acked = client.post("/webhooks/toy/report", data=report, headers={"X-Toy-Secret": TOY_SECRET})
    assert acked.status_code == 200 and acked.get_data(as_text=True) == "THANKS"
    shown = client.get(f"/v1/verifications/{body['id']}", headers=AUTH).get_json()
    assert shown["delivery"] == {"provider": "toy", "status": "delivered"}
    assert check(client, body["id"], code.group()).get_json()["status"] == "approved"


def test_an_app_built_without_the_toy_has_no_toy_route(redis_url: str, clock: MovableClock) -> None:
    client = create_app(make_settings(redis_url), clock=clock, background=False).test_client()
    assert client.post("/webhooks/toy/report", data="{}").status_code == 404


def test_a_gateway_declared_without_webhooks_refuses_any_callback_as_not_found() -> None:
    (sandbox,) = [gateway for gateway in GATEWAYS if gateway.name == "sandbox"]
    with pytest.raises(NotFound) as caught:
        sandbox.parse("report", Inbound("POST", b"", b"{}", "application/json"), {}, None, 0.0, 900)
    assert caught.value.status == 404
