"""The contract every provider meets, re-run against each gateway's local emulator.

A provider's test module subclasses :class:`ProviderContract` and defines the fixtures ``emulator`` (started,
speaking that gateway's wire format) and ``provider`` (built against ``emulator.url`` with the short
timeouts of :data:`HTTP`), plus ``ERROR_CASES``: each documented error the emulator can produce with
``mode = "error:<name>"`` and what the provider must raise for it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import pytest

from tests.providers.emulator import Emulator, Seen
from verify.providers.base import Http, InvalidRecipient, Provider, ProviderError, Sent, SmsMessage

# Short timeouts, so the timeout case takes a second at most (the emulator sleeps 1.5 s), with room for an answer
# that a loaded machine (the suite runs one process per core, each with its servers) makes slow.
HTTP_CONNECT_TIMEOUT, HTTP_READ_TIMEOUT = 1.0, 1.0
MESSAGE = SmsMessage(
    to="+79991234567",
    text="Your verification code: 123456",
    code="123456",
    verification_id="abcd0123456789abcdef01234567",
)


def http() -> Http:
    """The shared HTTP client with test timeouts."""
    return Http(HTTP_CONNECT_TIMEOUT, HTTP_READ_TIMEOUT)


@dataclass(frozen=True)
class ErrorCase:
    """A documented gateway error: the emulator's name for it, and what the provider must raise."""

    name: str
    raises: type[ProviderError]
    transient: bool


class ProviderContract:
    """Tests every provider passes. Subclasses set ``ERROR_CASES`` and provide the two fixtures."""

    ERROR_CASES: ClassVar[list[ErrorCase]] = []

    def assert_send_request(self, seen: Seen) -> None:
        """Check the request the gateway received for :data:`MESSAGE`: path, auth and every field."""
        raise NotImplementedError

    def test_send_ok(self, provider: Provider, emulator: Emulator) -> None:
        sent = provider.send_sms(MESSAGE)
        assert isinstance(sent, Sent) and sent.provider == provider.name and sent.message_id
        assert len(emulator.requests) == 1
        self.assert_send_request(emulator.last)

    def test_documented_errors(self, provider: Provider, emulator: Emulator, error_case: ErrorCase) -> None:
        emulator.mode = f"error:{error_case.name}"
        with pytest.raises(error_case.raises) as caught:
            provider.send_sms(MESSAGE)
        assert caught.value.transient is error_case.transient
        assert caught.value.provider == provider.name
        if error_case.raises is not InvalidRecipient:
            assert not isinstance(caught.value, InvalidRecipient)

    def test_5xx_is_transient(self, provider: Provider, emulator: Emulator) -> None:
        emulator.mode = "5xx"
        with pytest.raises(ProviderError) as caught:
            provider.send_sms(MESSAGE)
        assert caught.value.transient and "502" in str(caught.value)

    def test_timeout_is_transient_and_not_retried(self, provider: Provider, emulator: Emulator) -> None:
        emulator.mode = "timeout"
        with pytest.raises(ProviderError) as caught:
            provider.send_sms(MESSAGE)
        assert caught.value.transient and "timed out" in str(caught.value)
        assert len(emulator.requests) == 1  # the gateway may have sent it: no second request

    def test_malformed_body_is_transient(self, provider: Provider, emulator: Emulator) -> None:
        emulator.mode = "malformed"
        with pytest.raises(ProviderError) as caught:
            provider.send_sms(MESSAGE)
        assert caught.value.transient

    def test_unreachable_gateway_is_transient(self, provider: Provider, emulator: Emulator) -> None:
        emulator.stop()
        with pytest.raises(ProviderError) as caught:
            provider.send_sms(MESSAGE)
        assert caught.value.transient

    def test_balance(self, provider: Provider, emulator: Emulator) -> None:
        balance = provider.balance()
        assert isinstance(balance, str) and balance
