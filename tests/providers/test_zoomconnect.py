"""Zoom Connect: the provider contract against the local emulator, the shapes the docs leave open, live tests."""

from __future__ import annotations

import base64
import os
from collections.abc import Iterator
from typing import Any, ClassVar

import pytest
import requests

from tests.providers import contract
from tests.providers.contract import MESSAGE, ErrorCase, ProviderContract
from tests.providers.emulator import Seen
from tests.providers.zoomconnect_emulator import (
    CREDIT_BALANCE,
    EMAIL,
    MESSAGE_ID,
    SEND_ERROR,
    TOKEN,
    ZoomConnectEmulator,
)
from verify.providers.base import Http, InvalidRecipient, ProviderError, SmsMessage
from verify.providers.zoomconnect import ZoomConnectProvider, ZoomConnectSettings

SEND_PATH = "/api/rest/v1/sms/send"
BALANCE_PATH = "/api/rest/v1/account/balance"
# docs/gateways/zoomconnect.md §8: user@example.com:abc123-token
BASIC_VECTOR = "dXNlckBleGFtcGxlLmNvbTphYmMxMjMtdG9rZW4="
LIVE_ENV = ("VERIFY_LIVE_ZOOMCONNECT_EMAIL", "VERIFY_LIVE_ZOOMCONNECT_TOKEN", "VERIFY_LIVE_PHONE")


@pytest.fixture
def emulator() -> Iterator[ZoomConnectEmulator]:
    emulator = ZoomConnectEmulator()
    emulator.start()
    yield emulator
    emulator.stop()


@pytest.fixture
def http() -> Iterator[Http]:
    client = contract.http()
    yield client
    client.session.close()


def build(emulator: ZoomConnectEmulator, http: Http, *, path: str = "", token: str = TOKEN) -> ZoomConnectProvider:
    return ZoomConnectProvider(ZoomConnectSettings(url=emulator.url + path, email=EMAIL, token=token), http)


@pytest.fixture
def provider(emulator: ZoomConnectEmulator, http: Http) -> ZoomConnectProvider:
    return build(emulator, http)


def headers(seen: Seen) -> dict[str, str]:
    return {name.lower(): value for name, value in seen.headers.items()}


def refusal(provider: ZoomConnectProvider, message: SmsMessage = MESSAGE) -> ProviderError:
    with pytest.raises(ProviderError) as caught:
        provider.send_sms(message)
    assert caught.value.provider == "zoomconnect"
    return caught.value


class TestZoomConnectContract(ProviderContract):
    ERROR_CASES: ClassVar[list[ErrorCase]] = [
        ErrorCase("invalid-number", InvalidRecipient, transient=False),
        ErrorCase("empty-message", ProviderError, transient=False),
        ErrorCase("send-error", ProviderError, transient=False),
        ErrorCase("unauthorized", ProviderError, transient=False),
        ErrorCase("forbidden", ProviderError, transient=False),
        ErrorCase("not-found", ProviderError, transient=False),
        ErrorCase("rate-limited", ProviderError, transient=True),
    ]

    def assert_send_request(self, seen: Seen) -> None:
        assert seen.method == "POST" and seen.path == SEND_PATH and seen.query == {}
        sent = headers(seen)
        assert sent["email"] == EMAIL and sent["token"] == TOKEN
        assert sent["content-type"] == "application/json" and sent["accept"] == "application/json"
        assert seen.json() == {
            "recipientNumber": MESSAGE.to,
            "message": MESSAGE.text,
            "dataField": MESSAGE.verification_id,
        }

    def test_error_cases_cover_every_emulated_error(self) -> None:
        assert [case.name for case in self.ERROR_CASES] == list(ZoomConnectEmulator.ERRORS)


class TestSend:
    def test_keeps_the_gateway_message_id(self, provider: ZoomConnectProvider) -> None:
        assert provider.send_sms(MESSAGE).message_id == MESSAGE_ID

    @pytest.mark.parametrize(
        "body", [{"messageId": 40124213, "error": None}, {"messageId": 40124213}], ids=["number", "number-error-absent"]
    )
    def test_message_id_as_a_number(
        self, provider: ZoomConnectProvider, emulator: ZoomConnectEmulator, body: dict[str, Any]
    ) -> None:
        emulator.reply = (200, body)
        assert provider.send_sms(MESSAGE).message_id == "40124213"

    @pytest.mark.parametrize(
        "body",
        [{"messageId": "77", "error": None}, {"messageId": "77"}, {"messageId": "77", "error": ""}],
        ids=["null", "absent", "empty"],
    )
    def test_error_null_or_absent_is_success(
        self, provider: ZoomConnectProvider, emulator: ZoomConnectEmulator, body: dict[str, Any]
    ) -> None:
        emulator.reply = (200, body)
        assert provider.send_sms(MESSAGE).message_id == "77"

    @pytest.mark.parametrize(
        "body",
        [{"messageId": None, "error": SEND_ERROR}, {"error": SEND_ERROR}, {"messageId": "77", "error": SEND_ERROR}],
    )
    def test_a_200_with_an_error_is_final(
        self, provider: ZoomConnectProvider, emulator: ZoomConnectEmulator, body: dict[str, Any]
    ) -> None:
        emulator.reply = (200, body)
        err = refusal(provider)
        assert not err.transient and not isinstance(err, InvalidRecipient)
        assert SEND_ERROR in str(err) and err.payload == body

    @pytest.mark.parametrize(
        "body",
        [
            {},
            {"error": None},
            {"messageId": None},
            {"messageId": " "},
            {"messageId": True},
            {"messageId": {"id": 1}},
            [MESSAGE_ID],
            MESSAGE_ID,
        ],
    )
    def test_a_success_without_a_message_id_is_transient(
        self, provider: ZoomConnectProvider, emulator: ZoomConnectEmulator, body: Any
    ) -> None:
        emulator.reply = (200, body)
        err = refusal(provider)
        assert err.transient and err.payload == body

    def test_the_number_refused_by_validation(
        self, provider: ZoomConnectProvider, emulator: ZoomConnectEmulator
    ) -> None:
        with pytest.raises(InvalidRecipient) as caught:
            provider.send_sms(SmsMessage("+12", "code 1", "1", "v1"))
        assert "code 2" in str(caught.value) and "Invalid mobile number" in str(caught.value)
        assert caught.value.payload["code"] == 2 and emulator.last.json()["recipientNumber"] == "+12"

    def test_an_empty_text_refused_by_validation(self, provider: ZoomConnectProvider) -> None:
        err = refusal(provider, SmsMessage(MESSAGE.to, "", "1", "v1"))
        assert not err.transient and not isinstance(err, InvalidRecipient)
        assert "code 3" in str(err) and "Message cannot be empty" in str(err)

    @pytest.mark.parametrize("code", [2, "2", " 2 "])
    def test_invalid_number_code_as_int_or_string(
        self, provider: ZoomConnectProvider, emulator: ZoomConnectEmulator, code: object
    ) -> None:
        emulator.reply = (400, {"code": code, "message": "Invalid mobile number"})
        with pytest.raises(InvalidRecipient):
            provider.send_sms(MESSAGE)

    @pytest.mark.parametrize(
        "body",
        [
            {"code": "3", "message": "Message cannot be empty"},
            {"code": 99},
            {"message": "Invalid mobile number"},
            {"code": None},
            {"code": True},
            {"code": "two"},
            ["Invalid mobile number"],
            "<html>Bad Request</html>",
        ],
    )
    def test_other_400s_are_final(
        self, provider: ZoomConnectProvider, emulator: ZoomConnectEmulator, body: Any
    ) -> None:
        emulator.reply = (400, body)
        err = refusal(provider)
        assert not err.transient and not isinstance(err, InvalidRecipient)
        assert "HTTP 400" in str(err) and err.payload == body

    @pytest.mark.parametrize("status", [302, 402, 409, 415])
    def test_an_unexpected_status_is_final(
        self, provider: ZoomConnectProvider, emulator: ZoomConnectEmulator, status: int
    ) -> None:
        emulator.reply = (status, {"message": "?"})
        err = refusal(provider)
        assert not err.transient and f"HTTP {status}" in str(err)

    def test_a_wrong_token_is_final_and_not_echoed(self, emulator: ZoomConnectEmulator, http: Http) -> None:
        err = refusal(build(emulator, http, token="wrong-secret-token"))
        assert not err.transient and "401" in str(err) and "wrong-secret-token" not in str(err)

    def test_a_wrong_base_url_is_final(self, emulator: ZoomConnectEmulator, http: Http) -> None:
        err = refusal(build(emulator, http, path="app/"))
        assert not err.transient and "404" in str(err)
        assert emulator.last.path == "/app" + SEND_PATH

    def test_the_call_channel_is_refused(self, provider: ZoomConnectProvider, emulator: ZoomConnectEmulator) -> None:
        with pytest.raises(ProviderError) as caught:
            provider.start_call(MESSAGE.to, MESSAGE.verification_id)
        assert not caught.value.transient and caught.value.provider == "zoomconnect"
        assert emulator.requests == []


class TestBalance:
    def test_reads_the_credit_balance(self, provider: ZoomConnectProvider, emulator: ZoomConnectEmulator) -> None:
        assert provider.balance() == str(CREDIT_BALANCE) == "123.45"
        seen = emulator.last
        assert seen.method == "GET" and seen.path == BALANCE_PATH and seen.body == b""
        sent = headers(seen)
        assert sent["email"] == EMAIL and sent["token"] == TOKEN and sent["accept"] == "application/json"

    @pytest.mark.parametrize(("credits", "shown"), [(100, "100"), ("99.5", "99.5"), (0, "0"), (0.0, "0.0")])
    def test_credit_balance_number_or_string(
        self, provider: ZoomConnectProvider, emulator: ZoomConnectEmulator, credits: object, shown: str
    ) -> None:
        emulator.reply = (200, {"creditBalance": credits, "links": []})
        assert provider.balance() == shown

    @pytest.mark.parametrize("body", [{"links": []}, {"creditBalance": None}, {"creditBalance": False}, []])
    def test_a_balance_without_credits_is_transient(
        self, provider: ZoomConnectProvider, emulator: ZoomConnectEmulator, body: Any
    ) -> None:
        emulator.reply = (200, body)
        with pytest.raises(ProviderError) as caught:
            provider.balance()
        assert caught.value.transient

    @pytest.mark.parametrize(
        ("mode", "transient"),
        [
            ("malformed", True),
            ("error:unauthorized", False),
            ("error:forbidden", False),
            ("error:rate-limited", True),
            ("5xx", True),
        ],
    )
    def test_balance_errors_map_like_send(
        self, provider: ZoomConnectProvider, emulator: ZoomConnectEmulator, mode: str, transient: bool
    ) -> None:
        emulator.mode = mode
        with pytest.raises(ProviderError) as caught:
            provider.balance()
        assert caught.value.transient is transient and caught.value.provider == "zoomconnect"


class TestEmulator:
    """The emulator's own checks, which the provider tests above rely on."""

    BODY: ClassVar[dict[str, str]] = {"recipientNumber": "27821234567", "message": "Hi", "dataField": "user-42"}

    def post(self, emulator: ZoomConnectEmulator, path: str, **kwargs: Any) -> requests.Response:
        with requests.Session() as session:
            return session.post(emulator.url + path, json=kwargs.pop("json", self.BODY), timeout=5, **kwargs)

    def test_the_basic_auth_vector(self, emulator: ZoomConnectEmulator) -> None:
        assert base64.b64encode(f"{EMAIL}:{TOKEN}".encode()).decode() == BASIC_VECTOR
        for path in ("api/rest/v1/sms/send", "api/rest/v1/sms/send.json"):
            answer = self.post(emulator, path, headers={"Authorization": f"Basic {BASIC_VECTOR}"})
            assert answer.status_code == 200 and answer.json() == {"messageId": MESSAGE_ID, "error": None}
        assert "authorization" in headers(emulator.last) and "email" not in headers(emulator.last)

    @pytest.mark.parametrize(
        "auth",
        [
            {},
            {"headers": {"Authorization": "Basic " + base64.b64encode(b"user@example.com:abc123-tokeN").decode()}},
            {"headers": {"Authorization": f"Bearer {TOKEN}"}},
            {"headers": {"email": EMAIL}},
            {"headers": {"email": "other@example.com", "token": TOKEN}},
            {"params": {"email": EMAIL, "token": "nope"}},
        ],
        ids=["none", "basic-wrong", "bearer", "no-token", "wrong-email", "query-wrong"],
    )
    def test_bad_or_missing_credentials_get_401(self, emulator: ZoomConnectEmulator, auth: dict[str, Any]) -> None:
        assert self.post(emulator, "api/rest/v1/sms/send", **auth).status_code == 401

    def test_query_parameter_credentials(self, emulator: ZoomConnectEmulator) -> None:
        answer = self.post(emulator, "api/rest/v1/sms/send", params={"email": EMAIL, "token": TOKEN})
        assert answer.status_code == 200

    def test_get_on_send_gives_an_example_body(self, emulator: ZoomConnectEmulator) -> None:
        with requests.Session() as session:
            answer = session.get(emulator.url + "api/rest/v1/sms/send", auth=(EMAIL, TOKEN), timeout=5)
        assert answer.status_code == 200 and {"recipientNumber", "message"} <= set(answer.json())

    def test_bulk_answers_per_item(self, emulator: ZoomConnectEmulator) -> None:
        items = [self.BODY, {"recipientNumber": "12", "message": "Hi"}, {"recipientNumber": "+27821234567"}]
        answer = self.post(
            emulator,
            "api/rest/v1/sms/send-bulk",
            auth=(EMAIL, TOKEN),
            json={"sendSmsRequests": items, "defaultDateToSend": None, "messagesPerMinute": 0},
        )
        assert answer.json() == {
            "sendSmsResponses": [
                {"messageId": MESSAGE_ID, "error": None},
                {"messageId": None, "error": "Invalid mobile number"},
                {"messageId": None, "error": "Message cannot be empty"},
            ]
        }

    def test_a_body_that_is_not_json_is_refused(self, emulator: ZoomConnectEmulator) -> None:
        with requests.Session() as session:
            answer = session.post(
                emulator.url + "api/rest/v1/sms/send",
                auth=(EMAIL, TOKEN),
                timeout=5,
                data={"recipientNumber": "+27821234567", "message": "Hi"},
            )
        assert answer.status_code == 415


@pytest.mark.live
@pytest.mark.skipif(
    not all(os.environ.get(name) for name in LIVE_ENV),
    reason=f"set {', '.join(LIVE_ENV)} to test against the real Zoom Connect",
)
class TestZoomConnectLive:
    """Sends one real SMS to ``VERIFY_LIVE_PHONE`` (E.164) and reads the real balance."""

    @pytest.fixture
    def live(self) -> Iterator[ZoomConnectProvider]:
        client = Http(3.0, 15.0)
        yield ZoomConnectProvider(
            ZoomConnectSettings(email=os.environ[LIVE_ENV[0]], token=os.environ[LIVE_ENV[1]]), client
        )
        client.session.close()

    def test_balance(self, live: ZoomConnectProvider) -> None:
        assert float(live.balance()) >= 0

    def test_send(self, live: ZoomConnectProvider) -> None:
        sent = live.send_sms(
            SmsMessage(os.environ[LIVE_ENV[2]], "verify live test: 000000", "000000", "live-test-zoomconnect")
        )
        assert sent.provider == "zoomconnect" and sent.message_id
