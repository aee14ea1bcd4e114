"""The sandbox gateway: sends nothing, keeps recent messages per phone in an outbox for developers and tests."""

from __future__ import annotations

from verify.clock import Clock, rfc3339
from verify.providers.base import CallNumber, Gateway, Outbox, Provider, Sent, Shared, SmsMessage

# Fictional numbers (Ofcom's range for drama): nothing real is ever dialled.
CALL_NUMBERS = ("+447700900001", "+447700900002")


class SandboxProvider(Provider):
    """Keeps each message (an SMS, a spoken text) in its outbox instead of sending it."""

    name = "sandbox"

    def __init__(self, outbox: Outbox, clock: Clock) -> None:
        self._outbox = outbox
        self._clock = clock

    def send_sms(self, message: SmsMessage) -> Sent:
        """Keep the message for ``GET /sandbox/messages`` (the app's outbox writes it with the send's commit): what
        that page shows but the phone, which the outbox is kept by. ``id`` is the verification's, so the page can tell
        the code that works (its newest message) from the ones a resend replaced."""
        copy = {
            "text": message.text,
            "code": message.code,
            "sent_at": rfc3339(self._clock()),
            "id": message.verification_id,
        }
        if message.channel != "sms":  # an SMS's channel goes unsaid: the outbox's memory is pinned
            copy["channel"] = message.channel
        self._outbox.keep(message.to, copy)
        return Sent(self.name, f"sandbox-{message.verification_id}")

    def balance(self) -> str:
        """The sandbox never runs out."""
        return "unlimited (sandbox)"

    def start_call(self, phone: str, verification_id: str) -> CallNumber:
        """Hand out a fictional number; ``POST /sandbox/calls`` plays the person calling it."""
        return CallNumber(self.name, CALL_NUMBERS[0], CALL_NUMBERS, f"sandbox-{verification_id}")


def _make(settings: None, shared: Shared) -> SandboxProvider:
    return SandboxProvider(shared.outbox, shared.clock)


GATEWAY: Gateway[None] = Gateway("sandbox", None, _make, channels=frozenset({"sms", "call", "voice", "telegram"}))
