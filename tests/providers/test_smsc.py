"""SMSC against its local emulator: the shared contract, then what is SMSC's own (auth, call-in, lenient JSON)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any, ClassVar

import pytest

from tests.providers import contract
from tests.providers.contract import MESSAGE, ErrorCase, ProviderContract
from tests.providers.emulator import Seen
from tests.providers.smsc_emulator import AllPhones, SmscEmulator
from verify.providers.base import CallNumber, Http, InvalidRecipient, NoMoney, ProviderError, Sent, SmsMessage
from verify.providers.smsc import SmscProvider, SmscSettings

APIKEY = "k3y-0123456789abcdef"
LOGIN, PASSWORD = "acme", "s3cret-pass"
SENDER = "ACME"
CALLER = "+79991234567"
SECRETS = (APIKEY, LOGIN, PASSWORD)


@pytest.fixture
def emulator() -> Iterator[SmscEmulator]:
    emulator = SmscEmulator(apikey=APIKEY, login=LOGIN, password=PASSWORD)
    emulator.start()
    yield emulator
    emulator.stop()


@pytest.fixture
def provider(emulator: SmscEmulator) -> SmscProvider:
    return SmscProvider(SmscSettings(url=emulator.url, apikey=APIKEY, sender=SENDER), contract.http())


def smsc(emulator: SmscEmulator, **settings: Any) -> SmscProvider:
    return SmscProvider(SmscSettings(url=emulator.url, **settings), contract.http())


class TestSmscContract(ProviderContract):
    """Every send error SMSC documents (docs/gateways/smsc.md §6), with the policy of ``verify.providers.smsc``."""

    ERROR_CASES: ClassVar[list[ErrorCase]] = [
        ErrorCase("1", ProviderError, transient=False),  # error in parameters
        ErrorCase("2", ProviderError, transient=False),  # login/password or IP not allowed
        ErrorCase("3", NoMoney, transient=True),  # no money: fail over, logged at error level
        ErrorCase("4", ProviderError, transient=True),  # IP temporarily blocked
        ErrorCase("5", ProviderError, transient=False),  # invalid date format
        ErrorCase("6", ProviderError, transient=False),  # message forbidden
        ErrorCase("7", InvalidRecipient, transient=False),  # invalid number format
        ErrorCase("8", InvalidRecipient, transient=False),  # cannot be delivered to this number
        ErrorCase("9", ProviderError, transient=True),  # duplicate / too frequent
        ErrorCase("42", ProviderError, transient=False),  # undocumented: final
    ]

    def assert_send_request(self, seen: Seen) -> None:
        assert (seen.method, seen.path, seen.query) == ("POST", "/send.php", {})
        assert seen.headers["Content-Type"] == "application/x-www-form-urlencoded"
        assert seen.form == {
            "apikey": APIKEY,
            "phones": "+79991234567",
            "mes": MESSAGE.text,
            "id": MESSAGE.verification_id,
            "sender": SENDER,
            "charset": "utf-8",
            "fmt": "3",
        }


def test_send_returns_the_echoed_id(provider: SmscProvider) -> None:
    assert provider.send_sms(MESSAGE).message_id == MESSAGE.verification_id


def test_error_message_names_code_and_description(provider: SmscProvider, emulator: SmscEmulator) -> None:
    emulator.mode = "error:3"
    with pytest.raises(NoMoney) as caught:
        provider.send_sms(MESSAGE)
    assert "no money" in str(caught.value) and "error 3" in str(caught.value)
    assert caught.value.payload == {"error": "no money", "error_code": 3, "id": MESSAGE.verification_id}


def test_login_and_password_auth(emulator: SmscEmulator) -> None:
    provider = smsc(emulator, login=LOGIN, password=PASSWORD)
    assert provider.send_sms(MESSAGE).message_id == MESSAGE.verification_id
    form = emulator.last.form
    assert (form["login"], form["psw"]) == (LOGIN, PASSWORD) and "apikey" not in form


def test_apikey_wins_over_login(emulator: SmscEmulator) -> None:
    smsc(emulator, apikey=APIKEY, login="someone", password="else").balance()
    assert emulator.last.form["apikey"] == APIKEY
    assert "login" not in emulator.last.form and "psw" not in emulator.last.form


@pytest.mark.parametrize("settings", [{"apikey": "wrong"}, {"login": LOGIN, "password": "wrong"}])
def test_wrong_credentials_are_final(emulator: SmscEmulator, settings: dict[str, str]) -> None:
    with pytest.raises(ProviderError) as caught:
        smsc(emulator, **settings).send_sms(MESSAGE)
    assert not caught.value.transient and "error 2 (authorise error)" in str(caught.value)


def test_no_sender_sends_no_sender_field(emulator: SmscEmulator) -> None:
    smsc(emulator, apikey=APIKEY).send_sms(MESSAGE)
    assert "sender" not in emulator.last.form
    assert emulator.last.form["phones"] == MESSAGE.to


def test_unicode_text_arrives_intact(provider: SmscProvider, emulator: SmscEmulator) -> None:
    text = "Ваш код подтверждения: 123456"
    provider.send_sms(SmsMessage(MESSAGE.to, text, "123456", MESSAGE.verification_id))
    assert emulator.last.form["mes"] == text and emulator.last.form["charset"] == "utf-8"


def test_a_voice_message_is_send_php_with_call_1(provider: SmscProvider, emulator: SmscEmulator) -> None:
    # docs/gateways/smsc.md §3.1: the same send.php as an SMS, with call=1; the text in mes is spoken.
    spoken = "Your Acme code is 1, 2, 3, 4, 5, 6. Again: 1, 2, 3, 4, 5, 6."
    sent = provider.send_sms(SmsMessage(MESSAGE.to, spoken, "123456", "v1", channel="voice"))
    assert emulator.last.path.endswith("/send.php") and sent == Sent("smsc", "v1")
    form = emulator.last.form
    assert (form["call"], form["mes"], form["phones"], form["id"]) == ("1", spoken, MESSAGE.to, "v1")
    provider.send_sms(MESSAGE)  # an SMS never asks for a call
    assert "call" not in emulator.last.form


def test_all_strings_are_accepted(provider: SmscProvider, emulator: SmscEmulator) -> None:
    emulator.json_types = "strings"
    emulator.send_extra = {"cost": "1.44", "balance": "1020.35"}
    sent = provider.send_sms(SmsMessage(MESSAGE.to, MESSAGE.text, "1", "7"))
    assert sent.message_id == "7" and emulator.last.form["id"] == "7"
    assert provider.balance() == "250.80 RUR"
    emulator.mode = "error:7"
    with pytest.raises(InvalidRecipient):
        provider.send_sms(MESSAGE)
    emulator.mode = "error:9"
    with pytest.raises(ProviderError) as caught:
        provider.send_sms(MESSAGE)
    assert caught.value.transient
    assert raw(emulator, "send.php") == {"error": "duplicate request, wait a minute", "error_code": "9"}


def raw(emulator: SmscEmulator, endpoint: str) -> object:
    """What the emulator puts on the wire (proves a JSON variant is really what the provider parsed)."""
    data = {"apikey": APIKEY, "phones": "+79991234567", "mes": "x", "phone": "79991234567", "cur": "1", "fmt": "3"}
    return contract.http().request("smsc", "POST", emulator.url + endpoint, data=data).json()


def test_all_numbers_are_accepted(provider: SmscProvider, emulator: SmscEmulator) -> None:
    emulator.json_types = "numbers"
    emulator.send_extra = {"cost": 1.44, "balance": 1020.35}
    assert provider.send_sms(SmsMessage(MESSAGE.to, MESSAGE.text, "1", "1563")).message_id == "1563"
    assert provider.balance() == "250.8 RUR"
    assert provider.start_call(CALLER, "v").numbers == ("+79010000000", "+79010000001")
    assert raw(emulator, "send.php") == {"id": 1563, "cnt": 1, "cost": 1.44, "balance": 1020.35}
    assert raw(emulator, "wait_call.php") == {"phone": 79010000000, "all_phones": [79010000000, 79010000001]}
    assert raw(emulator, "balance.php") == {"balance": 250.8, "currency": "RUR"}


def test_auto_assigned_numeric_id(provider: SmscProvider, emulator: SmscEmulator) -> None:
    assert provider.send_sms(SmsMessage(MESSAGE.to, MESSAGE.text, "1", "")).message_id == "1563"


@pytest.mark.parametrize(
    "body", ["{}", "[]", '{"cnt": 1}', '{"id": "", "cnt": 1}', '{"id": null}', "OK - 1 SMS, ID - 1563", ""]
)
def test_neither_success_nor_error_is_transient(provider: SmscProvider, emulator: SmscEmulator, body: str) -> None:
    emulator.mode, emulator.malformed_body = "malformed", body
    with pytest.raises(ProviderError) as caught:
        provider.send_sms(MESSAGE)
    assert caught.value.transient and not isinstance(caught.value, InvalidRecipient | NoMoney)


@pytest.mark.parametrize(
    ("body", "transient"),
    [
        ('{"error": "x", "error_code": "8"}', None),  # string code: InvalidRecipient
        ('{"error": "x", "error_code": " 4 "}', True),
        ('{"error": "x", "error_code": 8.0}', None),  # a float code: still 8
        ('{"error": "something new"}', False),  # an error without a code: final
        ('{"error": "x", "error_code": "n/a"}', False),
    ],
)
def test_error_code_parsing(provider: SmscProvider, emulator: SmscEmulator, body: str, transient: bool | None) -> None:
    emulator.mode, emulator.malformed_body = "malformed", body
    with pytest.raises(ProviderError) as caught:
        provider.send_sms(MESSAGE)
    if transient is None:
        assert isinstance(caught.value, InvalidRecipient)
    else:
        assert caught.value.transient is transient and not isinstance(caught.value, InvalidRecipient)


@pytest.mark.parametrize("shape", ["list", "comma", "semicolon", "spaces", "single", "absent"])
def test_call_numbers_in_every_all_phones_shape(
    provider: SmscProvider, emulator: SmscEmulator, shape: AllPhones
) -> None:
    emulator.all_phones = shape
    call = provider.start_call(CALLER, "abcd0123456789abcdef01234567")
    expected = ("+79010000000",) if shape in ("single", "absent") else ("+79010000000", "+79010000001")
    assert call == CallNumber("smsc", "+79010000000", expected, message_id="")
    seen = emulator.last
    assert (seen.method, seen.path, seen.query) == ("POST", "/wait_call.php", {})
    assert seen.form == {"apikey": APIKEY, "phone": "79991234567", "fmt": "3", "charset": "utf-8"}


def test_call_number_comes_first_and_numbers_are_distinct(provider: SmscProvider, emulator: SmscEmulator) -> None:
    emulator.call_numbers = ("79010000002", "79010000001", "+7 901 000-00-02", "79010000001")
    emulator.all_phones = "list"
    call = provider.start_call(CALLER, "v")
    assert call.number == "+79010000002"
    assert call.numbers == ("+79010000002", "+79010000001")


def test_call_number_is_first_even_if_listed_later(provider: SmscProvider, emulator: SmscEmulator) -> None:
    emulator.mode = "malformed"
    emulator.malformed_body = '{"phone": 79585551234, "all_phones": "79585551235,79585551234"}'
    call = provider.start_call(CALLER, "v")
    assert call.numbers == ("+79585551234", "+79585551235")


@pytest.mark.parametrize("body", ['{"all_phones": ["79010000000"]}', '{"phone": "n/a"}', '{"phone": ""}'])
def test_call_without_a_number_is_transient(provider: SmscProvider, emulator: SmscEmulator, body: str) -> None:
    emulator.mode, emulator.malformed_body = "malformed", body
    with pytest.raises(ProviderError) as caught:
        provider.start_call(CALLER, "v")
    assert caught.value.transient


@pytest.mark.parametrize(
    ("code", "raises", "transient"),
    [
        ("1", ProviderError, False),
        ("2", ProviderError, False),
        ("4", ProviderError, True),
        ("9", ProviderError, True),
        ("3", NoMoney, True),
        ("7", InvalidRecipient, False),
    ],
)
def test_call_errors(
    provider: SmscProvider, emulator: SmscEmulator, code: str, raises: type[ProviderError], transient: bool
) -> None:
    emulator.mode = f"error:{code}"
    with pytest.raises(raises) as caught:
        provider.start_call(CALLER, "v")
    assert caught.value.transient is transient and f"error {code} " in str(caught.value)
    if raises is ProviderError:
        assert not isinstance(caught.value, InvalidRecipient | NoMoney)


def test_call_5xx_is_transient(provider: SmscProvider, emulator: SmscEmulator) -> None:
    emulator.mode = "5xx"
    with pytest.raises(ProviderError) as caught:
        provider.start_call(CALLER, "v")
    assert caught.value.transient


def test_balance(provider: SmscProvider, emulator: SmscEmulator) -> None:
    assert provider.balance() == "250.80 RUR"
    seen = emulator.last
    assert (seen.method, seen.path, seen.query) == ("POST", "/balance.php", {})
    assert seen.form == {"apikey": APIKEY, "cur": "1", "fmt": "3"}


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ('{"balance": "250.80"}', "250.80"),  # the captured form, no currency
        ('{"balance": 250.8, "currency": "RUR"}', "250.8 RUR"),
        ('{"balance": 0, "currency": ""}', "0"),
        ('{"balance": "-12.50", "currency": "KZT"}', "-12.50 KZT"),
    ],
)
def test_balance_parsing(provider: SmscProvider, emulator: SmscEmulator, body: str, expected: str) -> None:
    emulator.mode, emulator.malformed_body = "malformed", body
    assert provider.balance() == expected


@pytest.mark.parametrize(("mode", "body"), [("error:2", ""), ("malformed", "{}"), ("malformed", "250.80")])
def test_balance_failures(provider: SmscProvider, emulator: SmscEmulator, mode: str, body: str) -> None:
    emulator.mode, emulator.malformed_body = mode, body
    with pytest.raises(ProviderError) as caught:
        provider.balance()
    assert caught.value.transient is (mode == "malformed")


@pytest.mark.parametrize("settings", [{"apikey": APIKEY}, {"login": LOGIN, "password": PASSWORD}])
def test_credentials_never_in_a_url(emulator: SmscEmulator, settings: dict[str, str]) -> None:
    provider = smsc(emulator, **settings)
    auth = {"apikey": APIKEY} if "apikey" in settings else {"login": LOGIN, "psw": PASSWORD}
    provider.send_sms(MESSAGE)
    provider.start_call(CALLER, "v")
    provider.balance()
    emulator.mode = "error:8"
    with pytest.raises(InvalidRecipient):
        provider.send_sms(MESSAGE)
    assert [s.path for s in emulator.requests] == ["/send.php", "/wait_call.php", "/balance.php", "/send.php"]
    for seen in emulator.requests:
        assert seen.method == "POST" and seen.query == {}
        assert not any(secret in seen.path for secret in SECRETS)
        assert auth.items() <= seen.form.items()


def test_emulator_speaks_smsc_for_get_and_plain_formats(emulator: SmscEmulator) -> None:
    """The emulator itself: GET works like POST, and without fmt=3 SMSC answers in plain text."""
    http = contract.http()
    got = http.request(
        "smsc",
        "GET",
        emulator.url + "send.php",
        params={"login": LOGIN, "psw": PASSWORD, "phones": "+79991234567", "mes": "hi", "fmt": "3"},
    )
    assert got.json() == {"id": 1563, "cnt": 1}
    plain = http.request("smsc", "POST", emulator.url + "send.php", data={"apikey": APIKEY, "phones": "1"})
    assert plain.text == "ERROR = 1 (parameters error)"
    emulator.mode = "error:7"
    plain = http.request("smsc", "POST", emulator.url + "send.php", data={"id": "175"})
    assert plain.text == "ERROR = 7 (invalid number), ID - 175"


# Live: a real SMSC account, opt-in. Never runs without credentials, so never in CI by accident.
LIVE_APIKEY = os.environ.get("VERIFY_LIVE_SMSC_APIKEY", "")
LIVE_LOGIN = os.environ.get("VERIFY_LIVE_SMSC_LOGIN", "")
LIVE_PASSWORD = os.environ.get("VERIFY_LIVE_SMSC_PASSWORD", "")
LIVE_PHONE = os.environ.get("VERIFY_LIVE_PHONE", "")
LIVE_URL = os.environ.get("VERIFY_LIVE_SMSC_URL", "") or SmscSettings.url


@pytest.mark.live
@pytest.mark.skipif(
    not ((LIVE_APIKEY or (LIVE_LOGIN and LIVE_PASSWORD)) and LIVE_PHONE),
    reason="set VERIFY_LIVE_SMSC_APIKEY (or VERIFY_LIVE_SMSC_LOGIN and VERIFY_LIVE_SMSC_PASSWORD) "
    "and VERIFY_LIVE_PHONE to run against the real SMSC",
)
class TestSmscLive:
    """Sends a real SMS to ``VERIFY_LIVE_PHONE`` and spends money on the account."""

    @pytest.fixture
    def live(self) -> SmscProvider:
        settings = SmscSettings(
            url=LIVE_URL,
            apikey=LIVE_APIKEY,
            login=LIVE_LOGIN,
            password=LIVE_PASSWORD,
            sender=os.environ.get("VERIFY_LIVE_SMSC_SENDER", ""),
        )
        return SmscProvider(settings, Http(5.0, 20.0))

    def test_balance(self, live: SmscProvider) -> None:
        balance = live.balance()
        assert balance and balance[0] in "-0123456789"

    def test_send(self, live: SmscProvider) -> None:
        vid = os.urandom(14).hex()
        sent = live.send_sms(SmsMessage(LIVE_PHONE, "verify live test: 000000", "000000", vid))
        assert sent.provider == "smsc" and sent.message_id == vid

    def test_wrong_apikey_is_final(self) -> None:
        wrong = SmscProvider(SmscSettings(url=LIVE_URL, apikey="verify-live-test-wrong-key"), Http(5.0, 20.0))
        with pytest.raises(ProviderError) as caught:
            wrong.balance()
        assert not caught.value.transient and "error 2" in str(caught.value)
