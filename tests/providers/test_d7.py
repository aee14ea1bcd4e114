"""D7 Networks: the provider contract for both API generations, their quirks, and an opt-in live test."""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import replace
from typing import Any, ClassVar

import pytest
import requests

from tests.providers import contract
from tests.providers.contract import MESSAGE, ErrorCase, ProviderContract
from tests.providers.d7_emulator import PASSWORD, TOKEN, USERNAME, D7Emulator
from tests.providers.emulator import Seen
from verify.providers.base import Http, InvalidRecipient, NoMoney, ProviderError, Sent
from verify.providers.d7 import DEFAULT_URLS as D7_DEFAULT_URLS
from verify.providers.d7 import D7Provider, D7Settings

PUBLIC_URL = "https://verify.example"
WEBHOOK_TOKEN = "hook-token-123"
SENDER = "VerifyTest"
CALLBACK = "https://verify.example/webhooks/d7/hook-token-123"
VENDOR_UUID = "c723d42a-c3ee-452c-940b-3d8e8b944868"


def settings_for(emulator: D7Emulator, **overrides: Any) -> D7Settings:
    """Settings of ``emulator.api`` pointing at the emulator, with a sender and a webhook token."""
    if emulator.api == "legacy":
        base = D7Settings(api="legacy", url=emulator.url, username=USERNAME, password=PASSWORD)
    else:
        base = D7Settings(api="v1", url=emulator.url, token=TOKEN)
    return replace(base, **{"sender": SENDER, "webhook_tokens": (WEBHOOK_TOKEN,), **overrides})


def make_provider(emulator: D7Emulator, public_url: str | None = PUBLIC_URL, **overrides: Any) -> D7Provider:
    return D7Provider(settings_for(emulator, **overrides), contract.http(), public_url)


@pytest.fixture(params=["legacy", "v1"])
def any_emulator(request: pytest.FixtureRequest) -> Iterator[D7Emulator]:
    """A started emulator of each generation."""
    emulator = D7Emulator(request.param)
    emulator.start()
    yield emulator
    emulator.stop()


@pytest.fixture
def legacy() -> Iterator[D7Emulator]:
    emulator = D7Emulator("legacy")
    emulator.start()
    yield emulator
    emulator.stop()


@pytest.fixture
def v1() -> Iterator[D7Emulator]:
    emulator = D7Emulator("v1")
    emulator.start()
    yield emulator
    emulator.stop()


def assert_json_request(seen: Seen) -> None:
    assert seen.headers["Accept"] == "application/json"
    assert seen.headers["Content-Type"] == "application/json"


class TestD7LegacyContract(ProviderContract):
    """The contract against the legacy (hosted Jasmin) API."""

    ERROR_CASES: ClassVar[list[ErrorCase]] = [
        ErrorCase("missing-args", ProviderError, transient=False),
        ErrorCase("unknown-arg", ProviderError, transient=False),
        ErrorCase("invalid-to", InvalidRecipient, transient=False),
        ErrorCase("invalid-from", ProviderError, transient=False),
        ErrorCase("no-content", ProviderError, transient=False),
        ErrorCase("unauthorized", ProviderError, transient=False),
        ErrorCase("auth-failure", ProviderError, transient=False),
        ErrorCase("authorization-failed", ProviderError, transient=False),
        ErrorCase("no-charge", NoMoney, transient=True),
        ErrorCase("no-route", ProviderError, transient=True),
        ErrorCase("unparseable-json", ProviderError, transient=False),
        ErrorCase("not-acceptable", ProviderError, transient=False),
        ErrorCase("send-failed", ProviderError, transient=True),
    ]

    @pytest.fixture
    def emulator(self, legacy: D7Emulator) -> D7Emulator:
        return legacy

    @pytest.fixture
    def provider(self, legacy: D7Emulator) -> D7Provider:
        return make_provider(legacy)

    def assert_send_request(self, seen: Seen) -> None:
        assert (seen.method, seen.path, seen.query) == ("POST", "/secure/send", {})
        assert seen.headers["Authorization"] == "Basic Zm9vOmJhcg=="  # docs/gateways/d7.md §9, foo:bar
        assert_json_request(seen)
        assert seen.json() == {
            "to": "+79991234567",
            "from": SENDER,
            "content": MESSAGE.text,
            "dlr": "yes",
            "dlr-url": CALLBACK,
            "dlr-level": 3,
            "dlr-method": "POST",
        }


class TestD7V1Contract(ProviderContract):
    """The contract against the current v1 API."""

    ERROR_CASES: ClassVar[list[ErrorCase]] = [
        ErrorCase("unauthorized", ProviderError, transient=False),
        ErrorCase("no-credit", NoMoney, transient=True),
        ErrorCase("forbidden", ProviderError, transient=False),
        ErrorCase("not-found", ProviderError, transient=False),
        ErrorCase("invalid-recipient", InvalidRecipient, transient=False),
        ErrorCase("invalid-request", ProviderError, transient=False),
        ErrorCase("rate-limited", ProviderError, transient=True),
        ErrorCase("server-error", ProviderError, transient=True),
    ]

    @pytest.fixture
    def emulator(self, v1: D7Emulator) -> D7Emulator:
        return v1

    @pytest.fixture
    def provider(self, v1: D7Emulator) -> D7Provider:
        return make_provider(v1)

    def assert_send_request(self, seen: Seen) -> None:
        assert (seen.method, seen.path, seen.query) == ("POST", "/messages/v1/send", {})
        assert seen.headers["Authorization"] == f"Bearer {TOKEN}"
        assert_json_request(seen)
        assert seen.json() == {
            "messages": [
                {
                    "channel": "sms",
                    "recipients": ["+79991234567"],
                    "content": MESSAGE.text,
                    "msg_type": "text",
                    "data_coding": "auto",
                }
            ],
            "message_globals": {"originator": SENDER, "report_url": f"{CALLBACK}/report"},
        }


# ---- request mapping ----


@pytest.mark.parametrize(("public_url", "webhook_tokens"), [(None, (WEBHOOK_TOKEN,)), (PUBLIC_URL, ()), (None, ())])
def test_no_callback_fields_without_public_url_and_webhook_token(
    any_emulator: D7Emulator, public_url: str | None, webhook_tokens: tuple[str, ...]
) -> None:
    make_provider(any_emulator, public_url, webhook_tokens=webhook_tokens).send_sms(MESSAGE)
    body = any_emulator.last.json()
    if any_emulator.api == "legacy":
        assert body == {"to": MESSAGE.to, "from": SENDER, "content": MESSAGE.text}
    else:
        assert body["message_globals"] == {"originator": SENDER}


def test_public_url_trailing_slash_is_not_doubled(any_emulator: D7Emulator) -> None:
    make_provider(any_emulator, PUBLIC_URL + "/").send_sms(MESSAGE)
    body = any_emulator.last.json()
    url = body["dlr-url"] if any_emulator.api == "legacy" else body["message_globals"]["report_url"]
    assert url.startswith(CALLBACK) and "//webhooks" not in url


def test_sender_omitted_when_unset(any_emulator: D7Emulator) -> None:
    make_provider(any_emulator, sender="").send_sms(MESSAGE)
    body = any_emulator.last.json()
    if any_emulator.api == "legacy":
        assert "from" not in body and body["to"] == MESSAGE.to
    else:
        assert body["message_globals"] == {"report_url": f"{CALLBACK}/report"}


def test_message_id_is_the_one_the_gateway_issued(any_emulator: D7Emulator) -> None:
    sent = make_provider(any_emulator).send_sms(MESSAGE)
    assert sent == Sent("d7", any_emulator.issued[-1])


# ---- the legacy success body ----


@pytest.mark.parametrize(
    "raw",
    [
        b'{"data": "Success \\"c723d42a-c3ee-452c-940b-3d8e8b944868"}',  # the vendor example, byte for byte
        b'{"data": "Success \\"c723d42a-c3ee-452c-940b-3d8e8b944868\\""}',  # if D7 ever closes the quote
        b'{"data":"Success c723d42a-c3ee-452c-940b-3d8e8b944868"}',
    ],
)
def test_uuid_extracted_from_the_quirky_success_body(legacy: D7Emulator, raw: bytes) -> None:
    legacy.reply = (200, raw)
    assert make_provider(legacy).send_sms(MESSAGE) == Sent("d7", VENDOR_UUID)


def test_emulator_success_body_has_no_closing_quote(legacy: D7Emulator) -> None:
    response = requests.post(
        legacy.url + "secure/send",
        auth=(USERNAME, PASSWORD),
        timeout=5,
        json={"to": 79991234567, "content": "Hello", "dlr_level": 3},
    )  # number, "_" key
    assert response.status_code == 200
    assert response.content == b'{"data": "Success \\"' + legacy.issued[-1].encode() + b'"}'


@pytest.mark.parametrize("body", [{"data": "Success"}, {"data": None}, {"message": "ok"}, ["Success"], "Success"])
def test_legacy_success_without_uuid_is_transient(legacy: D7Emulator, body: Any) -> None:
    legacy.reply = (200, body)
    with pytest.raises(ProviderError) as caught:
        make_provider(legacy).send_sms(MESSAGE)
    assert caught.value.transient and "no message id" in str(caught.value)


def test_v1_success_that_is_not_json_is_transient(v1: D7Emulator) -> None:
    v1.reply = (200, b"<html>accepted</html>")
    with pytest.raises(ProviderError) as caught:
        make_provider(v1).send_sms(MESSAGE)
    assert caught.value.transient and "not JSON" in str(caught.value)


# ---- error mapping details ----


@pytest.mark.parametrize(
    "text",
    [
        "Argument [to] has an invalid value: [+7999123456x].",  # Jasmin's source
        "Argument to has an invalid value: +7999123456x.",  # without brackets (docs/gateways/d7.md §3)
    ],
)
def test_legacy_invalid_to_in_either_spelling(legacy: D7Emulator, text: str) -> None:
    legacy.reply = (400, {"message": f'Error "{text}'})
    with pytest.raises(InvalidRecipient):
        make_provider(legacy).send_sms(MESSAGE)


def test_legacy_invalid_other_argument_is_not_the_recipient(legacy: D7Emulator) -> None:
    legacy.reply = (400, {"message": 'Error "Argument [dlr-url] has an invalid value: [x].'})
    with pytest.raises(ProviderError) as caught:
        make_provider(legacy).send_sms(MESSAGE)
    assert not isinstance(caught.value, InvalidRecipient) and not caught.value.transient


def test_no_money_says_so(any_emulator: D7Emulator) -> None:
    any_emulator.mode = "error:no-charge" if any_emulator.api == "legacy" else "error:no-credit"
    with pytest.raises(NoMoney) as caught:
        make_provider(any_emulator).send_sms(MESSAGE)
    assert "no money" in str(caught.value) and caught.value.payload


@pytest.mark.parametrize(
    ("status", "body", "raises", "transient"),
    [
        (403, {"detail": {"code": "INSUFFICIENT_CREDIT", "message": "Not enough credit"}}, NoMoney, True),
        (403, {"detail": "Cannot charge this account"}, NoMoney, True),
        (403, {"detail": {"code": "FORBIDDEN", "message": "Access denied"}}, ProviderError, False),
        (422, {"detail": "Invalid recipient number"}, InvalidRecipient, False),
        (422, {"detail": {"loc": ["body", "messages", 0, "recipients"], "msg": "bad"}}, InvalidRecipient, False),
        (
            422,
            {"detail": [{"loc": ["body", "messages", 0, "content"], "msg": "field required", "type": "missing"}]},
            ProviderError,
            False,
        ),
        (402, b"Payment Required", NoMoney, True),
        (418, {"unexpected": True}, ProviderError, False),
    ],
)
def test_v1_error_bodies_parsed_leniently(
    v1: D7Emulator, status: int, body: Any, raises: type[ProviderError], transient: bool
) -> None:
    v1.reply = (status, body)
    with pytest.raises(raises) as caught:
        make_provider(v1).send_sms(MESSAGE)
    assert caught.value.transient is transient and f"HTTP {status}" in str(caught.value)
    if raises is ProviderError:
        assert type(caught.value) is ProviderError


def test_error_messages_do_not_echo_the_code(legacy: D7Emulator) -> None:
    # Falcon's 412 description repeats the request body, text (and so the code) included.
    legacy.mode = "error:unparseable-json"
    with pytest.raises(ProviderError) as caught:
        make_provider(legacy).send_sms(MESSAGE)
    assert "Cannot parse JSON data" in str(caught.value) and MESSAGE.code not in str(caught.value)


def test_wrong_credentials_are_final(any_emulator: D7Emulator) -> None:
    provider = make_provider(any_emulator, password="wrong", token="wrong")
    with pytest.raises(ProviderError) as caught:
        provider.send_sms(MESSAGE)
    assert not caught.value.transient and "HTTP 401" in str(caught.value)
    assert any_emulator.issued == []


# ---- balance ----


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ({"data": {"balance": "10.23", "sms_count": "ND"}}, "10.23, sms_count ND (not limited)"),
        ({"data": {"balance": 10.23, "sms_count": "ND"}}, "10.23, sms_count ND (not limited)"),
        ({"data": {"balance": 7, "sms_count": 120}}, "7, sms_count 120"),
    ],
)
def test_legacy_balance_string_or_number(legacy: D7Emulator, body: Any, expected: str) -> None:
    legacy.balance_body = body
    assert make_provider(legacy).balance() == expected
    seen = legacy.last
    assert (seen.method, seen.path, seen.headers["Authorization"]) == ("GET", "/secure/balance", "Basic Zm9vOmJhcg==")


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ({"balance": 12.3, "currency": "USD"}, "12.3 USD"),
        ({"data": {"balance": "7.50", "currency": "EUR"}}, "7.50 EUR"),
        ({"balance": 0}, "0"),
    ],
)
def test_v1_balance_shapes(v1: D7Emulator, body: Any, expected: str) -> None:
    v1.balance_body = body
    assert make_provider(v1).balance() == expected
    seen = v1.last
    assert (seen.method, seen.path, seen.headers["Authorization"]) == ("GET", "/messages/v1/balance", f"Bearer {TOKEN}")


@pytest.mark.parametrize("body", [{}, {"data": {"sms_count": "ND"}}, {"balance": None}, {"balance": True}, [1]])
def test_balance_without_a_balance_is_transient(any_emulator: D7Emulator, body: Any) -> None:
    any_emulator.balance_body = body
    with pytest.raises(ProviderError) as caught:
        make_provider(any_emulator).balance()
    assert caught.value.transient and "without a balance" in str(caught.value)


def test_balance_errors_are_mapped_like_send(any_emulator: D7Emulator) -> None:
    provider = make_provider(any_emulator, password="wrong", token="wrong")
    with pytest.raises(ProviderError) as caught:
        provider.balance()
    assert not caught.value.transient and "HTTP 401" in str(caught.value)
    any_emulator.mode = "error:no-charge" if any_emulator.api == "legacy" else "error:no-credit"
    with pytest.raises(NoMoney):
        make_provider(any_emulator).balance()


# ---- the rest of the interface ----


def test_call_channel_refused(any_emulator: D7Emulator) -> None:
    with pytest.raises(ProviderError) as caught:
        make_provider(any_emulator).start_call(MESSAGE.to, MESSAGE.verification_id)
    assert not caught.value.transient and caught.value.provider == "d7" and "call" in str(caught.value)
    assert any_emulator.requests == []


def test_unknown_api_generation_is_refused() -> None:
    with pytest.raises(ValueError, match="legacy or v1"):
        D7Provider(D7Settings(api="v2"), contract.http(), None)


# ---- live (opt-in) ----

LIVE_TOKEN = os.environ.get("VERIFY_LIVE_D7_TOKEN", "")
LIVE_PHONE = os.environ.get("VERIFY_LIVE_PHONE", "")


@pytest.mark.live
@pytest.mark.skipif(
    not (LIVE_TOKEN and LIVE_PHONE),
    reason="set VERIFY_LIVE_D7_TOKEN and VERIFY_LIVE_PHONE to send through the real D7 v1 API",
)
class TestD7Live:
    """Sends one real SMS through D7 v1 (costs money); ``VERIFY_LIVE_D7_SENDER`` optionally sets the sender."""

    @pytest.fixture
    def provider(self) -> D7Provider:
        settings = D7Settings(
            api="v1", url=D7_DEFAULT_URLS["v1"], token=LIVE_TOKEN, sender=os.environ.get("VERIFY_LIVE_D7_SENDER", "")
        )
        return D7Provider(settings, Http(5.0, 20.0), None)

    def test_balance(self, provider: D7Provider) -> None:
        assert provider.balance()

    def test_send(self, provider: D7Provider) -> None:
        sent = provider.send_sms(replace(MESSAGE, to=LIVE_PHONE, text="verify live test: 000000"))
        assert sent.provider == "d7" and sent.message_id
