"""The hook gateway: the provider contract against a receiver written here (tests/providers/hook_emulator.py), the
exact request and its signature (docs/gateways/hook.md §1, §2 and its vector), the answers (§3), the settings and the
declaration, and an opt-in live test against your own receiver."""

from __future__ import annotations

import json
import os
import re
import time
from collections.abc import Iterator
from dataclasses import replace
from types import SimpleNamespace
from typing import Any, ClassVar

import pytest
import requests

from tests.conftest import API_KEY, SECRET_KEY
from tests.providers import contract
from tests.providers.contract import MESSAGE, ErrorCase, ProviderContract
from tests.providers.emulator import Emulator, Seen
from tests.providers.hook_emulator import ERRORS, PATH, SECRET, HookReceiver, mac
from verify import env, events
from verify.cli import check_config
from verify.config import Settings
from verify.errors import ConfigError
from verify.gateways import GATEWAYS
from verify.providers import hook
from verify.providers.base import Http, InvalidRecipient, Provider, ProviderError, SmsMessage
from verify.providers.hook import HookProvider, HookSettings

NOW = 1_700_000_000
PUBLIC_URL = "https://verify.example"
CALLBACK = "https://verify.example/webhooks/hook"
OLD_SECRET = "hook-secret-older-456789"
# The worked vector of docs/gateways/hook.md §2, copied exactly.
VECTOR_MESSAGE = SmsMessage("+79991234567", "Your Verify code: 123456", "123456", "abcd0123456789abcdef01234567")
VECTOR_BODY = (
    b'{"id":"abcd0123456789abcdef01234567","phone":"+79991234567","text":"Your Verify code: 123456",'
    b'"code":"123456","channel":"sms","locale":null,"callback_url":"https://verify.example/webhooks/hook"}'
)
VECTOR_SIGNATURE = "t=1700000000,v1=bd6029f5e15f83f7664e4045f87aea47151b657d552ba5e54a66f5ee49b09e91"


@pytest.fixture
def emulator() -> Iterator[HookReceiver]:
    receiver = HookReceiver(clock=lambda: NOW)
    receiver.start()
    yield receiver
    receiver.stop()


@pytest.fixture
def http() -> Iterator[Http]:
    client = contract.http()
    yield client
    client.session.close()


def build(
    emulator: HookReceiver,
    http: Http,
    *,
    public_url: str | None = PUBLIC_URL,
    secrets: tuple[str, ...] = (SECRET, OLD_SECRET),
    at: float = NOW,
) -> HookProvider:
    return HookProvider(
        HookSettings(url=emulator.url + PATH.lstrip("/"), secrets=secrets), http, public_url, lambda: at
    )


@pytest.fixture
def provider(emulator: HookReceiver, http: Http) -> HookProvider:
    return build(emulator, http)


def refusal(provider: HookProvider, message: SmsMessage = MESSAGE) -> ProviderError:
    with pytest.raises(ProviderError) as caught:
        provider.send_sms(message)
    assert caught.value.provider == "hook"
    return caught.value


class TestHookContract(ProviderContract):
    # docs/gateways/hook.md §3: every answer that is not a 2xx is a failed send (the chain moves on); throttling is
    # transient, the rest want an operator. Nothing is InvalidRecipient: the hook defines no such answer.
    ERROR_CASES: ClassVar[list[ErrorCase]] = [
        ErrorCase(name, ProviderError, transient=status in (408, 429)) for name, status in ERRORS.items()
    ]

    def assert_send_request(self, seen: Seen) -> None:
        """A JSON POST to the URL as configured, signed with the first secret at the provider's clock, carrying
        every field of §1."""
        assert (seen.method, seen.path, seen.query) == ("POST", PATH, {})
        headers = {name.lower(): value for name, value in seen.headers.items()}
        assert headers["content-type"] == "application/json" and headers["accept"] == "application/json"
        assert headers["verify-signature"] == f"t={NOW},v1={mac(SECRET, NOW, seen.body)}"
        assert seen.json() == {
            "id": MESSAGE.verification_id,
            "phone": MESSAGE.to,
            "text": MESSAGE.text,
            "code": MESSAGE.code,
            "channel": "sms",
            "locale": None,
            "callback_url": CALLBACK,
        }

    def test_error_cases_cover_every_emulated_error(self) -> None:
        assert [case.name for case in self.ERROR_CASES] == list(ERRORS)

    def test_malformed_body_is_transient(self, provider: Provider, emulator: Emulator) -> None:
        """Not for the hook: a 2xx means sent, whatever its body (§3). The contract's malformed answer (HTML with
        200) is a message sent under our own id."""
        emulator.mode = "malformed"
        sent = provider.send_sms(MESSAGE)
        assert (sent.provider, sent.message_id) == ("hook", MESSAGE.verification_id)
        assert isinstance(emulator, HookReceiver) and len(emulator.messages) == 1


class TestSend:
    def test_the_vector(self, emulator: HookReceiver, http: Http) -> None:
        """docs/gateways/hook.md §2: these bytes, this header."""
        provider = build(emulator, http, secrets=(SECRET,))
        assert provider.body(VECTOR_MESSAGE) == VECTOR_BODY
        provider.send_sms(VECTOR_MESSAGE)
        assert emulator.last.body == VECTOR_BODY
        assert emulator.last.headers["Verify-Signature"] == VECTOR_SIGNATURE

    def test_signed_exactly_like_our_events(self, provider: HookProvider, emulator: HookReceiver) -> None:
        provider.send_sms(MESSAGE)
        assert emulator.last.headers["Verify-Signature"] == events.signature(SECRET, NOW, emulator.last.body)

    def test_the_receivers_message_id_is_the_message_id(self, provider: HookProvider) -> None:
        assert provider.send_sms(MESSAGE).message_id == "rcv-1"
        assert provider.send_sms(MESSAGE).message_id == "rcv-2"

    @pytest.mark.parametrize(
        ("status", "body", "message_id"),
        [
            (204, b"", MESSAGE.verification_id),
            (200, b'{"message_id": 12345}', "12345"),
            (201, b'{"message_id": " SM123 ", "other": 1}', "SM123"),
            (202, b'{"message_id": null}', MESSAGE.verification_id),
            (200, b'{"message_id": ""}', MESSAGE.verification_id),
            (200, b'{"id": "not-read"}', MESSAGE.verification_id),
            (200, b'["rcv-1"]', MESSAGE.verification_id),
            (200, b"OK", MESSAGE.verification_id),
            (200, json.dumps({"message_id": "m" * 128}).encode(), "m" * 128),
            (200, json.dumps({"message_id": "m" * 129}).encode(), MESSAGE.verification_id),
        ],
        ids=["204", "number", "trimmed", "null", "empty", "other-key", "list", "text", "128", "129"],
    )
    def test_any_2xx_is_sent_and_its_id_read_leniently(
        self, provider: HookProvider, emulator: HookReceiver, status: int, body: bytes, message_id: str
    ) -> None:
        emulator.reply = (status, body)
        assert provider.send_sms(MESSAGE).message_id == message_id

    @pytest.mark.parametrize("status", [301, 302, 307, 400, 401, 403, 404, 409, 410, 413, 422])
    def test_any_other_status_is_a_final_failure(
        self, provider: HookProvider, emulator: HookReceiver, status: int
    ) -> None:
        emulator.reply = (status, b'{"message_id": "rcv-1"}')  # an id in the body changes nothing
        err = refusal(provider)
        assert not err.transient and not isinstance(err, InvalidRecipient) and err.kind == "rejected"
        assert f"HTTP {status}" in str(err)

    @pytest.mark.parametrize("status", [408, 429])
    def test_throttling_is_transient(self, provider: HookProvider, emulator: HookReceiver, status: int) -> None:
        emulator.reply = (status, b"slow down")
        err = refusal(provider)
        assert err.transient and err.payload == "slow down"

    def test_a_redirect_is_not_followed(self, provider: HookProvider, emulator: HookReceiver) -> None:
        emulator.mode = "error:redirect"
        refusal(provider)
        assert len(emulator.requests) == 1

    def test_the_first_secret_signs(self, emulator: HookReceiver, http: Http) -> None:
        emulator.secrets = (OLD_SECRET,)
        err = refusal(build(emulator, http))  # SECRET first: a receiver that knows only OLD_SECRET refuses it
        assert "HTTP 401" in str(err) and not err.transient and emulator.refused == 1
        assert build(emulator, http, secrets=(OLD_SECRET, SECRET)).send_sms(MESSAGE).message_id == "rcv-1"

    def test_the_time_signed_is_the_providers_clock(self, emulator: HookReceiver, http: Http) -> None:
        build(emulator, http, at=NOW + 0.9).send_sms(MESSAGE)
        assert emulator.last.headers["Verify-Signature"].startswith(f"t={NOW},")
        err = refusal(build(emulator, http, at=NOW - 301))  # the receiver refuses an old signature (§2 advice)
        assert "HTTP 401" in str(err)

    def test_the_secret_never_travels(self, provider: HookProvider, emulator: HookReceiver) -> None:
        provider.send_sms(MESSAGE)
        sent = emulator.last
        assert SECRET.encode() not in sent.body and SECRET not in str(sent.headers)

    def test_no_callback_url_without_a_public_url(self, emulator: HookReceiver, http: Http) -> None:
        build(emulator, http, public_url=None).send_sms(MESSAGE)
        body = emulator.last.json()
        assert "callback_url" in body and body["callback_url"] is None

    def test_the_public_url_trailing_slash_is_not_doubled(self, emulator: HookReceiver, http: Http) -> None:
        build(emulator, http, public_url="https://verify.example/base/").send_sms(MESSAGE)
        assert emulator.last.json()["callback_url"] == "https://verify.example/base/webhooks/hook"

    def test_a_spoken_code_and_a_locale(self, provider: HookProvider, emulator: HookReceiver) -> None:
        provider.send_sms(replace(MESSAGE, channel="voice", text="Ваш код: 1 2 3 4 5 6", locale="ru"))
        body = emulator.last.json()
        assert (body["channel"], body["text"], body["locale"]) == ("voice", "Ваш код: 1 2 3 4 5 6", "ru")
        assert emulator.last.body.isascii()  # escaped: any JSON parser reads it, whatever charset it assumes

    def test_the_url_is_used_as_given(self, emulator: HookReceiver, http: Http) -> None:
        settings = HookSettings(url=emulator.url + "hook?tenant=shop", secrets=(SECRET,))
        HookProvider(settings, http, None, lambda: NOW).send_sms(MESSAGE)
        assert (emulator.last.path, emulator.last.query) == (PATH, {"tenant": "shop"})

    def test_balance_asks_nothing(self, provider: HookProvider, emulator: HookReceiver) -> None:
        assert "not reported" in provider.balance() and emulator.requests == []

    def test_calls_are_refused(self, provider: HookProvider, emulator: HookReceiver) -> None:
        with pytest.raises(ProviderError) as caught:
            provider.start_call(MESSAGE.to, MESSAGE.verification_id)
        assert not caught.value.transient and emulator.requests == []

    @pytest.mark.parametrize("settings", [HookSettings(url="", secrets=(SECRET,)), HookSettings(url="https://h/")])
    def test_a_provider_without_a_url_or_a_secret_cannot_be_built(self, settings: HookSettings, http: Http) -> None:
        with pytest.raises(ValueError, match="URL and a secret"):
            HookProvider(settings, http, None, lambda: NOW)


class TestSettings:
    def test_read_from_the_environment(self) -> None:
        settings = env.read(
            HookSettings,
            {"VERIFY_HOOK_URL": "https://hooks.example/sms", "VERIFY_HOOK_SECRET": f" {SECRET} , {OLD_SECRET} "},
        )
        assert settings == HookSettings(url="https://hooks.example/sms", secrets=(SECRET, OLD_SECRET))

    @pytest.mark.parametrize(
        ("environ", "variable", "reason"),
        [
            ({"VERIFY_HOOK_SECRET": SECRET}, "VERIFY_HOOK_URL", "hook is a configured provider"),
            ({"VERIFY_HOOK_URL": "https://h.example/"}, "VERIFY_HOOK_SECRET", "hook is a configured provider"),
            ({"VERIFY_HOOK_URL": "h.example/hook", "VERIFY_HOOK_SECRET": SECRET}, "VERIFY_HOOK_URL", "http(s) URL"),
            ({"VERIFY_HOOK_URL": "http://h.example/", "VERIFY_HOOK_SECRET": SECRET}, "VERIFY_HOOK_URL", "https"),
            (
                {"VERIFY_HOOK_URL": "https://h.example/", "VERIFY_HOOK_SECRET": f"{SECRET},short"},
                "VERIFY_HOOK_SECRET",
                "16",
            ),
        ],
        ids=["no-url", "no-secret", "not-a-url", "http", "short-secret"],
    )
    def test_refused(self, environ: dict[str, str], variable: str, reason: str) -> None:
        with pytest.raises(ConfigError) as caught:
            env.read(HookSettings, environ, {"sandbox": False})
        assert caught.value.variable == variable and reason in str(caught.value)
        assert SECRET not in str(caught.value)

    def test_http_only_in_sandbox_mode(self) -> None:
        environ = {"VERIFY_HOOK_URL": "http://127.0.0.1:8080/hook", "VERIFY_HOOK_SECRET": SECRET}
        assert env.read(HookSettings, environ, {"sandbox": True}).url == "http://127.0.0.1:8080/hook"
        with pytest.raises(ConfigError):
            env.read(HookSettings, environ, {"sandbox": False})

    def test_the_secrets_are_masked(self) -> None:
        shown = dict(env.describe(HookSettings(url="https://h.example/", secrets=(SECRET, OLD_SECRET))))
        assert shown == {"VERIFY_HOOK_URL": "https://h.example/", "VERIFY_HOOK_SECRET": "set (2 keys, masked)"}


BASE_ENV = {"VERIFY_API_KEYS": API_KEY, "VERIFY_SECRET_KEY": SECRET_KEY, "VERIFY_CAPTCHA_MODE": "off"}
HOOK_ENV = {"VERIFY_HOOK_URL": "https://hooks.example/sms", "VERIFY_HOOK_SECRET": f"{SECRET},{OLD_SECRET}"}


class TestInTheChains:
    """The gateway walk (verify/gateways.py): the hook may stand in the SMS chain, the voice chain, or both."""

    @pytest.mark.parametrize(
        ("chains", "sms", "voice"),
        [
            ({"VERIFY_SMS_PROVIDERS": "hook"}, ("hook",), ()),
            (
                {"VERIFY_SMS_PROVIDERS": "smsc,hook", "VERIFY_SMSC_APIKEY": "k", "VERIFY_SMSC_SECRET": "s"},
                ("smsc", "hook"),
                (),
            ),
            (
                {"VERIFY_SMS_PROVIDERS": "d7", "VERIFY_D7_TOKEN": "t", "VERIFY_VOICE_PROVIDERS": "hook"},
                ("d7",),
                ("hook",),
            ),
            ({"VERIFY_SMS_PROVIDERS": "hook", "VERIFY_VOICE_PROVIDERS": "hook"}, ("hook",), ("hook",)),
        ],
        ids=["sms", "sms-failover", "voice", "both"],
    )
    def test_named_in_a_chain_its_settings_are_read(
        self, chains: dict[str, str], sms: tuple[str, ...], voice: tuple[str, ...]
    ) -> None:
        settings = Settings.from_env({**BASE_ENV, **HOOK_ENV, **chains})
        assert (settings.sms_providers, settings.voice_providers) == (sms, voice)
        assert settings.gateway_settings["hook"] == HookSettings("https://hooks.example/sms", (SECRET, OLD_SECRET))

    def test_not_named_its_settings_are_not_read(self) -> None:
        settings = Settings.from_env({**BASE_ENV, "VERIFY_SANDBOX": "1", "VERIFY_HOOK_URL": "not even a URL"})
        assert "hook" not in settings.gateway_settings

    def test_named_without_its_settings_the_start_fails(self) -> None:
        with pytest.raises(ConfigError) as caught:
            Settings.from_env({**BASE_ENV, "VERIFY_SMS_PROVIDERS": "hook"})
        assert caught.value.variable == "VERIFY_HOOK_URL"

    @pytest.mark.parametrize("variable", ["VERIFY_CALL_PROVIDER", "VERIFY_SMS_PROVIDERS"])
    def test_it_hands_out_no_numbers_to_call(self, variable: str) -> None:
        chains = {"VERIFY_SMS_PROVIDERS": "hook", "VERIFY_CALL_PROVIDER": "hook"}
        if variable == "VERIFY_SMS_PROVIDERS":
            chains = {"VERIFY_SMS_PROVIDERS": "hook,hook"}
        with pytest.raises(ConfigError) as caught:
            Settings.from_env({**BASE_ENV, **HOOK_ENV, **chains})
        assert caught.value.variable == variable

    def test_check_config_shows_it_masked(self, capsys: pytest.CaptureFixture[str]) -> None:
        environ = {**BASE_ENV, **HOOK_ENV, "VERIFY_SMS_PROVIDERS": "hook", "VERIFY_PUBLIC_URL": PUBLIC_URL}
        assert check_config(live=False, env=environ) == 0
        out = capsys.readouterr().out
        assert re.search(r"VERIFY_HOOK_URL\s+https://hooks\.example/sms\n", out)
        assert re.search(r"VERIFY_HOOK_SECRET\s+set \(2 keys, masked\)", out)
        assert SECRET not in out and OLD_SECRET not in out and "SMS failover chain: hook" in out


class App:
    """The app settings a declaration's warnings read."""

    def __init__(self, public_url: str | None) -> None:
        self.public_url = public_url


class TestDeclaration:
    def test_listed_once_for_sms_and_voice(self) -> None:
        assert [g for g in GATEWAYS if g.name == "hook"] == [hook.GATEWAY]
        assert hook.GATEWAY.channels == frozenset({"sms", "voice"})
        assert hook.GATEWAY.settings is HookSettings
        (route,) = hook.GATEWAY.webhooks
        assert (route.rule, route.methods, route.name, route.ack) == ("/hook", ("POST",), "report", "OK")

    def test_make_uses_the_public_url_and_the_clock(self, emulator: HookReceiver, http: Http) -> None:
        shared: Any = SimpleNamespace(http=http, app=App(PUBLIC_URL), clock=lambda: NOW + 5)
        provider = hook.GATEWAY.make(HookSettings(url=emulator.url + "hook", secrets=(SECRET,)), shared)
        provider.send_sms(MESSAGE)
        assert emulator.last.json()["callback_url"] == CALLBACK
        assert emulator.last.headers["Verify-Signature"].startswith(f"t={NOW + 5},")

    def test_a_warning_without_a_public_url(self) -> None:
        settings = HookSettings(url="https://h.example/", secrets=(SECRET,))
        assert hook.GATEWAY.warnings(settings, App(PUBLIC_URL)) == []
        (warning,) = hook.GATEWAY.warnings(settings, App(None))
        assert "VERIFY_PUBLIC_URL" in warning and "callback_url null" in warning

    def test_an_http_url_is_a_risk(self) -> None:
        assert hook.GATEWAY.risks(HookSettings(url="https://h.example/", secrets=(SECRET,))) == []
        (risk,) = hook.GATEWAY.risks(HookSettings(url="http://127.0.0.1:8080/", secrets=(SECRET,)))
        assert "VERIFY_HOOK_URL" in risk and "clear text" in risk


class TestReceiver:
    """The receiver's own check, which the tests above rely on (docs/gateways/hook.md §2)."""

    def test_it_refuses_a_post_that_is_not_signed_by_its_secrets(self, emulator: HookReceiver) -> None:
        body = b'{"id":"x"}'
        url = emulator.url + "hook"
        good = {"Verify-Signature": f"t={NOW},v1={mac(SECRET, NOW, body)}"}
        assert requests.post(url, data=body, headers=good, timeout=5).status_code == 200
        for headers in ({}, {"Verify-Signature": f"t={NOW},v1={mac('another-secret-012345', NOW, body)}"}):
            assert requests.post(url, data=body, headers=headers, timeout=5).status_code == 401
        assert emulator.refused == 2 and len(emulator.messages) == 1


# ---- live (opt-in) ----

LIVE_URL = os.environ.get("VERIFY_LIVE_HOOK_URL", "")
LIVE_SECRET = os.environ.get("VERIFY_LIVE_HOOK_SECRET", "")
LIVE_PHONE = os.environ.get("VERIFY_LIVE_PHONE", "")


@pytest.mark.live
@pytest.mark.skipif(
    not (LIVE_URL and LIVE_SECRET and LIVE_PHONE),
    reason="set VERIFY_LIVE_HOOK_URL, VERIFY_LIVE_HOOK_SECRET and VERIFY_LIVE_PHONE to send through your own receiver",
)
class TestHookLive:
    """Sends one real message through your receiver (and so through its provider: it may cost money)."""

    def test_send(self) -> None:
        provider = HookProvider(HookSettings(url=LIVE_URL, secrets=(LIVE_SECRET,)), Http(5.0, 20.0), None, time.time)
        sent = provider.send_sms(replace(MESSAGE, to=LIVE_PHONE, text="verify live test: 000000"))
        assert sent.provider == "hook" and sent.message_id
