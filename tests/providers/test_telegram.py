"""Telegram Gateway: the provider contract against the local emulator, the exact requests (send, confirm, revoke),
the error policy, the settings and the declaration, and opt-in live tests."""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import replace
from typing import Any, ClassVar

import pytest
import requests

from tests.providers import contract
from tests.providers.contract import MESSAGE, ErrorCase, ProviderContract
from tests.providers.emulator import Seen
from tests.providers.telegram_emulator import (
    ACCESS_TOKEN_INVALID,
    NO_ACCOUNT,
    OTHER_ERROR,
    REQUEST_COST,
    TOKEN,
    TelegramEmulator,
)
from tests.providers.zoomconnect_emulator import ZoomConnectEmulator
from verify import env
from verify.errors import ConfigError
from verify.gateways import GATEWAYS
from verify.providers import telegram
from verify.providers.base import Http, InvalidRecipient, NoMoney, ProviderError, SmsMessage
from verify.providers.telegram import TelegramProvider, TelegramSettings
from verify.providers.zoomconnect import ZoomConnectProvider, ZoomConnectSettings

PUBLIC_URL = "https://verify.example"
CALLBACK = "https://verify.example/webhooks/telegram"
SENDER = "verify_codes"
OLD_TOKEN = "654321:older-gateway-token"
LIVE_ENV = ("VERIFY_LIVE_TELEGRAM_TOKEN", "VERIFY_LIVE_PHONE")


@pytest.fixture
def emulator() -> Iterator[TelegramEmulator]:
    emulator = TelegramEmulator()
    emulator.start()
    yield emulator
    emulator.stop()


@pytest.fixture
def http() -> Iterator[Http]:
    client = contract.http()
    yield client
    client.session.close()


def build(
    emulator: TelegramEmulator,
    http: Http,
    *,
    public_url: str | None = PUBLIC_URL,
    tokens: tuple[str, ...] = (TOKEN, OLD_TOKEN),
    sender: str = "",
) -> TelegramProvider:
    return TelegramProvider(TelegramSettings(tokens=tokens, url=emulator.url, sender=sender), http, public_url)


@pytest.fixture
def provider(emulator: TelegramEmulator, http: Http) -> TelegramProvider:
    return build(emulator, http)


def headers(seen: Seen) -> dict[str, str]:
    return {name.lower(): value for name, value in seen.headers.items()}


def assert_method_call(seen: Seen, method: str) -> None:
    """A JSON POST to ``<url><method>`` with the first token as Bearer, and nothing in the query string."""
    assert seen.method == "POST" and seen.path == f"/{method}" and seen.query == {}
    sent = headers(seen)
    assert sent["authorization"] == f"Bearer {TOKEN}"
    assert sent["content-type"] == "application/json" and sent["accept"] == "application/json"


def refusal(provider: TelegramProvider, message: SmsMessage = MESSAGE) -> ProviderError:
    with pytest.raises(ProviderError) as caught:
        provider.send_sms(message)
    assert caught.value.provider == "telegram"
    return caught.value


class TestTelegramContract(ProviderContract):
    ERROR_CASES: ClassVar[list[ErrorCase]] = [
        ErrorCase("access-token-invalid", ProviderError, transient=False),
        ErrorCase("no-account", ProviderError, transient=True),
        ErrorCase("no-balance", NoMoney, transient=True),
        ErrorCase("other", ProviderError, transient=True),
    ]

    def assert_send_request(self, seen: Seen) -> None:
        assert_method_call(seen, "sendVerificationMessage")
        # MESSAGE.ttl is 0 (not said): no ttl. Our code, never the text.
        assert seen.json() == {
            "phone_number": MESSAGE.to,
            "code": MESSAGE.code,
            "callback_url": CALLBACK,
            "payload": MESSAGE.verification_id,
        }
        assert MESSAGE.text.encode() not in seen.body

    def test_error_cases_cover_every_emulated_error(self) -> None:
        assert [case.name for case in self.ERROR_CASES] == list(TelegramEmulator.ERRORS)


class TestSend:
    def test_the_request_id_is_the_message_id(self, provider: TelegramProvider, emulator: TelegramEmulator) -> None:
        sent = provider.send_sms(MESSAGE)
        assert sent.provider == "telegram" and list(emulator.taken) == [sent.message_id]
        taken = emulator.taken[sent.message_id]
        assert (taken.phone, taken.code, taken.payload) == (MESSAGE.to, MESSAGE.code, MESSAGE.verification_id)

    @pytest.mark.parametrize(
        ("ttl", "sent"), [(1, 30), (29, 30), (30, 30), (300, 300), (3600, 3600), (3601, 3600), (86400, 3600)]
    )
    def test_ttl_is_clamped_to_what_telegram_takes(
        self, provider: TelegramProvider, emulator: TelegramEmulator, ttl: int, sent: int
    ) -> None:
        provider.send_sms(replace(MESSAGE, ttl=ttl))
        assert emulator.last.json()["ttl"] == sent

    def test_no_ttl_when_the_message_says_none(self, provider: TelegramProvider, emulator: TelegramEmulator) -> None:
        provider.send_sms(replace(MESSAGE, ttl=0))
        assert "ttl" not in emulator.last.json()

    def test_the_code_is_sent_as_text_whatever_the_channel(
        self, provider: TelegramProvider, emulator: TelegramEmulator
    ) -> None:
        provider.send_sms(replace(MESSAGE, code="012345", channel="telegram", text="Код 012345"))
        body = emulator.last.json()
        assert body["code"] == "012345" and set(body) == {"phone_number", "code", "callback_url", "payload"}

    def test_the_sender_channel_when_set(self, emulator: TelegramEmulator, http: Http) -> None:
        build(emulator, http, sender=SENDER).send_sms(MESSAGE)
        assert emulator.last.json()["sender_username"] == SENDER

    def test_no_callback_url_without_a_public_url(self, emulator: TelegramEmulator, http: Http) -> None:
        build(emulator, http, public_url=None).send_sms(MESSAGE)
        assert "callback_url" not in emulator.last.json()

    def test_the_public_url_trailing_slash_is_not_doubled(self, emulator: TelegramEmulator, http: Http) -> None:
        build(emulator, http, public_url="https://verify.example/base/").send_sms(MESSAGE)
        assert emulator.last.json()["callback_url"] == "https://verify.example/base/webhooks/telegram"

    def test_a_callback_url_longer_than_256_bytes_is_left_out(self, emulator: TelegramEmulator, http: Http) -> None:
        fits = "https://v.example/" + "a" * (256 - len("https://v.example/") - len("/webhooks/telegram"))
        assert len(telegram.callback_url(fits)) == 256
        build(emulator, http, public_url=fits).send_sms(MESSAGE)
        assert emulator.last.json()["callback_url"] == telegram.callback_url(fits)
        build(emulator, http, public_url=fits + "a").send_sms(MESSAGE)
        assert "callback_url" not in emulator.last.json()

    def test_a_payload_longer_than_128_bytes_is_left_out(
        self, provider: TelegramProvider, emulator: TelegramEmulator
    ) -> None:
        provider.send_sms(replace(MESSAGE, verification_id="v" * 128))
        assert emulator.last.json()["payload"] == "v" * 128
        provider.send_sms(replace(MESSAGE, verification_id="v" * 129))
        assert "payload" not in emulator.last.json()

    def test_the_first_token_sends(self, emulator: TelegramEmulator, http: Http) -> None:
        emulator.token = OLD_TOKEN
        err = refusal(build(emulator, http))  # TOKEN first: refused by an account whose token is OLD_TOKEN
        assert not err.transient and ACCESS_TOKEN_INVALID in str(err)
        assert build(emulator, http, tokens=(OLD_TOKEN, TOKEN)).send_sms(MESSAGE).message_id

    def test_a_wrong_token_is_final_and_not_echoed(self, emulator: TelegramEmulator, http: Http) -> None:
        err = refusal(build(emulator, http, tokens=("999:wrong-secret-token",)))
        assert not err.transient and "token refused" in str(err) and "wrong-secret-token" not in str(err)
        assert err.payload == {"ok": False, "error": ACCESS_TOKEN_INVALID}

    def test_a_number_without_telegram_fails_over(self, provider: TelegramProvider, emulator: TelegramEmulator) -> None:
        emulator.no_account.add(MESSAGE.to)
        err = refusal(provider)
        assert err.transient and not isinstance(err, InvalidRecipient) and err.kind == "rejected"
        assert NO_ACCOUNT in str(err) and err.payload == {"ok": False, "error": NO_ACCOUNT}
        assert emulator.taken == {}
        assert provider.send_sms(replace(MESSAGE, to="+79991234568")).message_id  # another number is sent

    @pytest.mark.parametrize("status", [200, 400, 401, 403, 404, 429])
    def test_ok_false_is_read_whatever_the_http_status(
        self, provider: TelegramProvider, emulator: TelegramEmulator, status: int
    ) -> None:
        emulator.error_status = status
        emulator.mode = "error:other"
        err = refusal(provider)
        assert err.transient and OTHER_ERROR in str(err) and f"HTTP {status}" in str(err)
        emulator.mode = "error:access-token-invalid"
        assert not refusal(provider).transient

    @pytest.mark.parametrize(
        "error",
        ["NO_TELEGRAM_ACCOUNT", "PHONE_NUMBER_INVALID", "FLOOD_WAIT_30", "", None, 42, ["X"]],
        ids=["no-account", "phone-invalid", "flood", "empty", "null", "number", "list"],
    )
    def test_any_other_error_string_is_transient_and_kept(
        self, provider: TelegramProvider, emulator: TelegramEmulator, error: Any
    ) -> None:
        emulator.reply = (200, {"ok": False, "error": error})
        err = refusal(provider)
        assert err.transient and not isinstance(err, NoMoney | InvalidRecipient)
        assert err.payload == {"ok": False, "error": error}
        if isinstance(error, str) and error:
            assert error in str(err)

    @pytest.mark.parametrize("error", ["ACCESS_TOKEN_REQUIRED", "access_token_invalid", "ACCESS_TOKEN_EXPIRED"])
    def test_any_access_token_error_is_final(
        self, provider: TelegramProvider, emulator: TelegramEmulator, error: str
    ) -> None:
        emulator.reply = (401, {"ok": False, "error": error})
        err = refusal(provider)
        assert not err.transient and err.kind == "rejected"

    @pytest.mark.parametrize("error", ["BALANCE_NOT_ENOUGH", "INSUFFICIENT_FUNDS", "NOT_ENOUGH_MONEY"])
    def test_a_balance_error_is_no_money(
        self, provider: TelegramProvider, emulator: TelegramEmulator, error: str
    ) -> None:
        emulator.reply = (200, {"ok": False, "error": error})
        err = refusal(provider)
        assert isinstance(err, NoMoney) and err.transient and err.kind == "no_money" and error in str(err)

    @pytest.mark.parametrize(
        "result",
        [
            {},
            {"request_id": ""},
            {"request_id": None},
            {"request_id": True},
            {"request_id": {"id": 1}},
            None,
            "abc",
            [],
        ],
    )
    def test_ok_without_a_request_id_is_transient_malformed(
        self, provider: TelegramProvider, emulator: TelegramEmulator, result: Any
    ) -> None:
        emulator.reply = (200, {"ok": True, "result": result})
        err = refusal(provider)
        assert err.transient and err.kind == "malformed" and err.payload == result

    def test_a_request_id_as_a_number(self, provider: TelegramProvider, emulator: TelegramEmulator) -> None:
        emulator.reply = (200, {"ok": True, "result": {"request_id": 123456789, "request_cost": "0.01"}})
        assert provider.send_sms(MESSAGE).message_id == "123456789"

    @pytest.mark.parametrize("body", [{}, {"ok": "true", "result": {"request_id": "x"}}, [True], "ok"])
    def test_a_2xx_without_the_envelope_is_transient_malformed(
        self, provider: TelegramProvider, emulator: TelegramEmulator, body: Any
    ) -> None:
        emulator.reply = (200, body)
        err = refusal(provider)
        assert err.transient and err.kind == "malformed"

    @pytest.mark.parametrize(("status", "transient"), [(404, False), (401, False), (403, False), (429, True)])
    def test_a_status_without_the_envelope(
        self, provider: TelegramProvider, emulator: TelegramEmulator, status: int, transient: bool
    ) -> None:
        emulator.reply = (status, "<html>nope</html>")
        err = refusal(provider)
        assert err.transient is transient and f"HTTP {status}" in str(err)

    def test_ok_true_with_an_error_status_is_not_success(
        self, provider: TelegramProvider, emulator: TelegramEmulator
    ) -> None:
        emulator.reply = (400, {"ok": True, "result": {"request_id": "x"}})
        assert refusal(provider).transient

    def test_a_wrong_base_url_is_refused(self, emulator: TelegramEmulator, http: Http) -> None:
        provider = TelegramProvider(TelegramSettings(tokens=(TOKEN,), url=emulator.url + "bot/"), http, None)
        err = refusal(provider)  # the emulator's own 404 envelope: an unlisted string, so transient (§4)
        assert "METHOD_NOT_FOUND (HTTP 404)" in str(err) and err.transient
        assert emulator.last.path == "/bot/sendVerificationMessage"

    def test_the_call_channel_is_refused(self, provider: TelegramProvider, emulator: TelegramEmulator) -> None:
        with pytest.raises(ProviderError) as caught:
            provider.start_call(MESSAGE.to, MESSAGE.verification_id)
        assert not caught.value.transient and emulator.requests == []

    def test_a_provider_without_a_token_cannot_be_built(self, emulator: TelegramEmulator, http: Http) -> None:
        with pytest.raises(ValueError, match="token"):
            build(emulator, http, tokens=())


class TestConfirm:
    def test_the_request(self, provider: TelegramProvider, emulator: TelegramEmulator) -> None:
        request_id = provider.send_sms(MESSAGE).message_id
        provider.confirm(request_id, MESSAGE.code)
        assert_method_call(emulator.last, "checkVerificationStatus")
        assert emulator.last.json() == {"request_id": request_id, "code": MESSAGE.code}

    def test_the_emulator_counts_the_code(self, provider: TelegramProvider, emulator: TelegramEmulator) -> None:
        """What Telegram answers about the code is not read: our own check approved it."""
        request_id = provider.send_sms(MESSAGE).message_id
        provider.confirm(request_id, "000000")
        assert emulator.last.json()["code"] == "000000"

    def test_an_unknown_request_id_is_refused(self, provider: TelegramProvider) -> None:
        with pytest.raises(ProviderError) as caught:
            provider.confirm("no-such-request", MESSAGE.code)
        assert "REQUEST_ID_INVALID" in str(caught.value) and caught.value.provider == "telegram"

    @pytest.mark.parametrize(
        ("mode", "transient"),
        [("5xx", True), ("malformed", True), ("timeout", True), ("error:access-token-invalid", False)],
    )
    def test_errors_map_like_send(
        self, provider: TelegramProvider, emulator: TelegramEmulator, mode: str, transient: bool
    ) -> None:
        request_id = provider.send_sms(MESSAGE).message_id
        emulator.mode = mode
        with pytest.raises(ProviderError) as caught:
            provider.confirm(request_id, MESSAGE.code)
        assert caught.value.transient is transient


class TestRevoke:
    def test_the_request(self, provider: TelegramProvider, emulator: TelegramEmulator) -> None:
        request_id = provider.send_sms(MESSAGE).message_id
        provider.revoke(request_id)
        assert_method_call(emulator.last, "revokeVerificationMessage")
        assert emulator.last.json() == {"request_id": request_id}
        assert emulator.taken[request_id].status == "revoked"

    def test_false_is_a_final_refusal(self, provider: TelegramProvider, emulator: TelegramEmulator) -> None:
        emulator.reply = (200, {"ok": True, "result": False})
        with pytest.raises(ProviderError) as caught:
            provider.revoke("abc")
        assert not caught.value.transient and caught.value.kind == "rejected"

    @pytest.mark.parametrize("result", [None, "true", 1, {"ok": True}])
    def test_a_result_that_is_not_a_boolean_is_transient_malformed(
        self, provider: TelegramProvider, emulator: TelegramEmulator, result: Any
    ) -> None:
        emulator.reply = (200, {"ok": True, "result": result})
        with pytest.raises(ProviderError) as caught:
            provider.revoke("abc")
        assert caught.value.transient and caught.value.kind == "malformed"

    def test_an_unknown_request_id_is_refused(self, provider: TelegramProvider) -> None:
        with pytest.raises(ProviderError) as caught:
            provider.revoke("no-such-request")
        assert "REQUEST_ID_INVALID" in str(caught.value)

    @pytest.mark.parametrize(("mode", "transient"), [("5xx", True), ("error:access-token-invalid", False)])
    def test_errors_map_like_send(
        self, provider: TelegramProvider, emulator: TelegramEmulator, mode: str, transient: bool
    ) -> None:
        emulator.mode = mode
        with pytest.raises(ProviderError) as caught:
            provider.revoke("abc")
        assert caught.value.transient is transient


def test_other_gateways_confirm_and_revoke_nothing(http: Http) -> None:
    """The base's defaults: no request, no error."""
    zoom = ZoomConnectEmulator()
    zoom.start()
    try:
        provider = ZoomConnectProvider(ZoomConnectSettings(url=zoom.url, email="e", token="t"), http)
        provider.confirm("40124213", "123456")
        provider.revoke("40124213")
        assert zoom.requests == []
    finally:
        zoom.stop()


class TestBalance:
    def test_not_reported_before_a_send(self, provider: TelegramProvider, emulator: TelegramEmulator) -> None:
        assert (
            provider.balance() == "not reported by the Gateway API (it tells remaining_balance only in a send's answer)"
        )
        assert emulator.requests == []  # every method costs money or needs a request id

    def test_the_remaining_balance_of_the_last_send(
        self, provider: TelegramProvider, emulator: TelegramEmulator
    ) -> None:
        provider.send_sms(MESSAGE)
        provider.send_sms(MESSAGE)
        assert emulator.balance == 10.0 - 2 * REQUEST_COST
        assert provider.balance().startswith(f"{emulator.balance} (remaining_balance at the last send")

    def test_a_send_without_a_balance_keeps_the_last_one(
        self, provider: TelegramProvider, emulator: TelegramEmulator
    ) -> None:
        provider.send_sms(MESSAGE)
        emulator.reply = (200, {"ok": True, "result": {"request_id": "x", "remaining_balance": None}})
        provider.send_sms(MESSAGE)
        assert provider.balance().startswith("9.99 ")


class TestSettings:
    def test_read_from_the_environment(self) -> None:
        settings = env.read(
            TelegramSettings,
            {"VERIFY_TELEGRAM_TOKEN": f" {TOKEN} , {OLD_TOKEN} ", "VERIFY_TELEGRAM_SENDER": SENDER},
        )
        assert settings == TelegramSettings(tokens=(TOKEN, OLD_TOKEN), url=telegram.DEFAULT_URL, sender=SENDER)
        assert telegram.DEFAULT_URL == "https://gatewayapi.telegram.org/"

    def test_the_token_is_required_and_secret(self) -> None:
        with pytest.raises(ConfigError) as caught:
            env.read(TelegramSettings, {"VERIFY_TELEGRAM_URL": "https://gw.example"})
        assert caught.value.variable == "VERIFY_TELEGRAM_TOKEN" and "telegram is a configured provider" in str(
            caught.value
        )
        shown = dict(env.describe(TelegramSettings(tokens=(TOKEN, OLD_TOKEN))))
        assert shown["VERIFY_TELEGRAM_TOKEN"] == "set (2 keys, masked)" and TOKEN not in str(shown)

    def test_the_url_is_a_base_url(self) -> None:
        settings = env.read(
            TelegramSettings, {"VERIFY_TELEGRAM_TOKEN": TOKEN, "VERIFY_TELEGRAM_URL": "https://gw.example"}
        )
        assert settings.url == "https://gw.example/"
        with pytest.raises(ConfigError) as caught:
            env.read(TelegramSettings, {"VERIFY_TELEGRAM_TOKEN": TOKEN, "VERIFY_TELEGRAM_URL": "gw.example"})
        assert caught.value.variable == "VERIFY_TELEGRAM_URL"


class App:
    """The app settings a declaration's warnings read."""

    def __init__(self, public_url: str | None) -> None:
        self.public_url = public_url


class TestDeclaration:
    def test_listed_once_for_the_telegram_channel_only(self) -> None:
        assert [g for g in GATEWAYS if g.name == "telegram"] == [telegram.GATEWAY]
        assert telegram.GATEWAY.channels == frozenset({"telegram"})
        assert telegram.GATEWAY.settings is TelegramSettings
        (route,) = telegram.GATEWAY.webhooks
        assert (route.rule, route.methods, route.name, route.ack) == ("/telegram", ("POST",), "report", "OK")

    def test_make_uses_the_public_url(self, emulator: TelegramEmulator, http: Http) -> None:
        shared: Any = type("Shared", (), {"http": http, "app": App(PUBLIC_URL)})()
        provider = telegram.GATEWAY.make(TelegramSettings(tokens=(TOKEN,), url=emulator.url), shared)
        provider.send_sms(MESSAGE)
        assert emulator.last.json()["callback_url"] == CALLBACK

    @pytest.mark.parametrize(
        ("public_url", "warned"),
        [
            (PUBLIC_URL, ""),
            (None, "set VERIFY_PUBLIC_URL"),
            ("http://verify.example", "not https"),
            ("https://v.example/" + "a" * 300, "longer than 256 bytes"),
        ],
    )
    def test_warnings(self, public_url: str | None, warned: str) -> None:
        warnings = telegram.GATEWAY.warnings(TelegramSettings(tokens=(TOKEN,)), App(public_url))
        assert (warnings == []) if not warned else (len(warnings) == 1 and warned in warnings[0])

    def test_an_http_api_url_is_a_risk(self) -> None:
        assert telegram.GATEWAY.risks(TelegramSettings(tokens=(TOKEN,))) == []
        (risk,) = telegram.GATEWAY.risks(TelegramSettings(tokens=(TOKEN,), url="http://gw.example/"))
        assert "VERIFY_TELEGRAM_URL" in risk and "clear text" in risk


class TestEmulator:
    """The emulator's own behaviour, which the tests above rely on (docs/gateways/telegram.md §2, §3)."""

    def call(self, emulator: TelegramEmulator, method: str, **kwargs: Any) -> requests.Response:
        with requests.Session() as session:
            return session.request(kwargs.pop("verb", "POST"), emulator.url + method, timeout=5, **kwargs)

    def test_parameters_by_query_form_or_json_and_any_method_case(self, emulator: TelegramEmulator) -> None:
        params = {"phone_number": MESSAGE.to, "code": "1234", "access_token": TOKEN}
        for kwargs in ({"verb": "GET", "params": params}, {"data": params}, {"json": params}):
            answer = self.call(emulator, "SENDVERIFICATIONMESSAGE", **kwargs)
            assert answer.status_code == 200 and answer.json()["ok"] is True, kwargs
        assert len(emulator.taken) == 3

    def test_the_answer_is_compact_json(self, emulator: TelegramEmulator) -> None:
        answer = self.call(emulator, "nope", headers={"Authorization": "Bearer x"})
        assert answer.content == b'{"ok":false,"error":"ACCESS_TOKEN_INVALID"}'

    @pytest.mark.parametrize(
        ("body", "error"),
        [
            ({"phone_number": "12", "code": "1234"}, "PHONE_NUMBER_INVALID"),
            ({"phone_number": MESSAGE.to, "code": "123"}, "CODE_INVALID"),
            ({"phone_number": MESSAGE.to, "code": "123456789"}, "CODE_INVALID"),
            ({"phone_number": MESSAGE.to, "code": "1234", "ttl": 29}, "TTL_INVALID"),
            ({"phone_number": MESSAGE.to, "code": "1234", "ttl": 3601}, "TTL_INVALID"),
            ({"phone_number": MESSAGE.to, "code": "1234", "payload": "p" * 129}, "PAYLOAD_INVALID"),
            ({"phone_number": MESSAGE.to, "code": "1234", "callback_url": "http://x.example/"}, "CALLBACK_URL_INVALID"),
        ],
    )
    def test_it_checks_the_send(self, emulator: TelegramEmulator, body: dict[str, Any], error: str) -> None:
        answer = self.call(emulator, "sendVerificationMessage", json=body, headers={"Authorization": f"Bearer {TOKEN}"})
        assert answer.json() == {"ok": False, "error": error} and emulator.taken == {}

    def test_check_send_ability_is_charged(self, emulator: TelegramEmulator) -> None:
        answer = self.call(
            emulator,
            "checkSendAbility",
            json={"phone_number": MESSAGE.to},
            headers={"Authorization": f"Bearer {TOKEN}"},
        )
        assert answer.json()["result"]["request_cost"] == REQUEST_COST and emulator.balance < 10.0


@pytest.mark.live
@pytest.mark.skipif(
    not all(os.environ.get(name) for name in LIVE_ENV),
    reason=f"set {', '.join(LIVE_ENV)} to test against the real Telegram Gateway (costs one code)",
)
class TestTelegramLive:
    """Sends one real code to ``VERIFY_LIVE_PHONE`` (E.164; free when it is the account owner's own number), confirms
    it, and revokes it."""

    @pytest.fixture
    def live(self) -> Iterator[TelegramProvider]:
        client = Http(3.0, 15.0)
        yield TelegramProvider(TelegramSettings(tokens=(os.environ[LIVE_ENV[0]],)), client, None)
        client.session.close()

    def test_send_confirm_revoke(self, live: TelegramProvider) -> None:
        sent = live.send_sms(
            SmsMessage(os.environ[LIVE_ENV[1]], "", "0000", "live-test-telegram", channel="telegram", ttl=60)
        )
        assert sent.provider == "telegram" and sent.message_id
        live.confirm(sent.message_id, "0000")
        live.revoke(sent.message_id)
        assert "remaining_balance" in live.balance() or "not reported" in live.balance()
