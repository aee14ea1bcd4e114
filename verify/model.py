"""What the service answers, as plain data: a verification as its clients see it (and :func:`view`, which makes one
from a stored record), the result of a start, who asks for an existing verification, an idempotent replay."""

from __future__ import annotations

import hmac
from dataclasses import dataclass
from typing import Any

from verify.config import Settings
from verify.sms import Payment
from verify.store import Record
from verify.tokens import Proof, Secrets, client_secret_hash


@dataclass(frozen=True)
class CallInfo:
    """The number a ``call`` verification's person must dial, and all numbers the gateway might use."""

    number: str
    numbers: tuple[str, ...]


@dataclass(frozen=True)
class Delivery:
    """Which gateway took the message, and what it last reported (``sent``, ``delivered``, ``failed``)."""

    provider: str
    status: str


@dataclass(frozen=True)
class SmsInfo:
    """How the SMS travels: ``GSM-7`` or ``UCS-2``, in how many parts."""

    encoding: str
    parts: int


@dataclass(frozen=True)
class Step:
    """One step of a fallback chain: its channel, and how long (seconds) it waits for an approval before the next
    step is sent."""

    channel: str
    wait: int


def chain_text(steps: tuple[Step, ...]) -> str:
    """A chain as a record keeps it: ``sms:45,voice:60``."""
    return ",".join(f"{step.channel}:{step.wait}" for step in steps)


def parse_chain(text: str) -> tuple[Step, ...]:
    """A chain as :func:`chain_text` wrote it (``()`` for "")."""
    steps = []
    for item in filter(None, text.split(",")):
        channel, _, wait = item.partition(":")
        steps.append(Step(channel, int(wait or 0)))
    return tuple(steps)


@dataclass(frozen=True)
class Attempt:
    """One send of a fallback chain: its channel, the gateway that took it (or the last that refused it), what came
    of it (``sent``, ``delivered``, ``read``, ``failed``, ...), and when (unix seconds)."""

    channel: str
    provider: str
    status: str
    at: float


@dataclass(frozen=True)
class Fallback:
    """A fallback chain as its verification's clients see it: its steps, the attempts so far, the next step and
    when it is due (while one is), and why the chain stopped early (``rate_limited:<limit>``, ``max_sends``,
    ``undeliverable``, ``code_unavailable``), if it did."""

    steps: tuple[Step, ...]
    attempts: tuple[Attempt, ...]
    next_channel: str | None
    next_at: float | None
    stopped: str | None


def attempts_of(record: Record) -> list[list[Any]]:
    """A chained record's attempts (:meth:`Record.chain_attempts`), the last one's status as the gateway's reports left
    it."""
    tried = record.chain_attempts()
    if tried and tried[-1][2] == "sent" and record.delivery_status:
        tried[-1][2] = record.delivery_status
    return tried


def fallback_of(record: Record) -> Fallback | None:
    """The fallback chain of ``record``, ``None`` for a verification started on one channel."""
    if not record.chain:
        return None
    steps = parse_chain(record.chain)
    due = record.status == "pending" and record.next_at and record.step + 1 < len(steps)
    return Fallback(
        steps,
        tuple(Attempt(str(a[0]), str(a[1]), str(a[2]), int(a[3]) / 1000) for a in attempts_of(record)),
        steps[record.step + 1].channel if due else None,
        record.next_at / 1000 if due else None,
        record.stopped or None,
    )


@dataclass(frozen=True)
class Verification:
    """A verification as clients see it. Times are unix seconds."""

    id: str
    status: str
    channel: str
    phone: str
    locale: str | None
    created_at: float
    expires_at: float
    resend_after: float
    attempts_left: int
    sends_left: int
    call: CallInfo | None = None
    delivery: Delivery | None = None
    sms: SmsInfo | None = None
    completed_via: str | None = None
    verified_at: float | None = None
    token: str | None = None
    fallback: Fallback | None = None
    payment: Payment | None = None  # what a payment's code approves (the API's ``context``)


@dataclass(frozen=True)
class Started:
    """The result of a start: ``created`` is false when an existing pending verification was returned (with a new
    code once its cooldown had passed: ``sent``, else as it was). A site key's start carries the new
    verification's ``client_secret``, handed out this once: Redis keeps only its hash."""

    verification: Verification
    created: bool
    sent: bool
    client_secret: str = ""


@dataclass(frozen=True)
class Caller:
    """Who asks for an existing verification: an API key (``site_key`` empty: any verification), or a site key with
    the client secret that the start's answer gave the client that started it."""

    site_key: str = ""
    client_secret: str = ""

    @property
    def proof(self) -> str:
        """What the scripts match against a record's ``owner`` and ``cs``: "" for an API key (any verification)."""
        return f"{self.site_key}\n{client_secret_hash(self.client_secret)}" if self.site_key else ""

    def owns(self, record: Record) -> bool:
        """Whether this caller may reach ``record``: an API key any, a site key only the one it started, with
        that start's client secret."""
        return not self.site_key or (
            record.owner == self.site_key
            and hmac.compare_digest(record.client_secret_hash, client_secret_hash(self.client_secret))
        )


API_CALLER = Caller()  # a request through an API key: any verification


@dataclass(frozen=True)
class Replay:
    """A stored response to replay for a repeated Idempotency-Key."""

    status: int
    body: dict[str, Any]


def view(record: Record, settings: Settings, secrets_: Secrets) -> Verification:
    """The client's view of a stored record; approved ones carry their proof token."""
    token = None
    if record.status == "approved":
        token = secrets_.sign(
            Proof(
                record.id,
                record.phone,
                record.channel,
                record.completed_via,
                record.verified_at // 1000,
                record.payment,
            )
        )
    return Verification(
        id=record.id,
        status=record.status,
        channel=record.channel,
        phone=record.phone,
        locale=record.locale or None,
        created_at=record.created_at / 1000,
        expires_at=record.expires_at / 1000,
        resend_after=(record.last_sent_at / 1000) + settings.resend_cooldown,
        attempts_left=max(0, settings.max_attempts - record.attempts),
        sends_left=max(0, settings.max_sends - record.sends),
        call=CallInfo(record.call_number, record.call_numbers) if record.call_number else None,
        delivery=Delivery(record.provider, record.delivery_status) if record.provider else None,
        sms=SmsInfo(record.sms_encoding, record.sms_parts) if record.sms_parts else None,
        completed_via=record.completed_via or None,
        verified_at=record.verified_at / 1000 if record.verified_at else None,
        token=token,
        fallback=fallback_of(record),
        payment=record.payment,
    )
