"""The provider interface, the messages it takes and returns, and the events gateways report.

A provider only maps data: our :class:`SmsMessage` to its request, its response to :class:`Sent` or a
:class:`ProviderError`. Failover across providers is the service's job.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any, ClassVar


@dataclass(frozen=True)
class SmsMessage:
    """One SMS to send. ``code`` is there for the sandbox outbox; real gateways only send ``text``."""

    to: str  # E.164
    text: str
    code: str
    verification_id: str


@dataclass(frozen=True)
class Sent:
    """A gateway accepted a message."""

    provider: str
    message_id: str


@dataclass(frozen=True)
class CallNumber:
    """A gateway will confirm the verification when the person calls ``number`` (any of ``numbers``)."""

    provider: str
    number: str  # E.164
    numbers: tuple[str, ...]
    message_id: str = ""


class ProviderError(Exception):
    """A gateway did not take the request.

    ``transient`` errors (timeouts, 5xx, throttling, no money) move on to the next provider; the others
    are final for this request.
    """

    def __init__(self, provider: str, message: str, *, transient: bool,
                 payload: Any = None) -> None:
        super().__init__(f"{provider}: {message}")
        self.provider = provider
        self.transient = transient
        self.payload = payload


class InvalidRecipient(ProviderError):
    """The gateway says the number cannot receive messages: the client gets 400, and no failover."""

    def __init__(self, provider: str, message: str, payload: Any = None) -> None:
        super().__init__(provider, message, transient=False, payload=payload)


class Provider(ABC):
    """A gateway that sends SMS and, optionally, hands out numbers to call."""

    name: ClassVar[str]

    @abstractmethod
    def send_sms(self, message: SmsMessage) -> Sent:
        """Send ``message``; raise :class:`ProviderError` if the gateway refuses or fails."""

    def start_call(self, phone: str, verification_id: str) -> CallNumber:
        """Ask for a number that ``phone`` must call; gateways without call verification refuse."""
        raise ProviderError(self.name, "does not support call verification", transient=False)


@dataclass(frozen=True)
class CallReceived:
    """The person called the number handed out for a ``call`` verification."""

    phone: str  # E.164 of the caller
    received_at: float  # unix seconds
    raw: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class SmsReceived:
    """An inbound SMS from ``phone``: a reply that may carry the code."""

    phone: str  # E.164 of the sender
    text: str
    received_at: float
    raw: dict[str, Any] = field(default_factory=dict)


Event = CallReceived | SmsReceived
