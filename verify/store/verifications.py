"""The verifications: their records as stored, and the commands that read them or move them through their states
(one Lua script per transition: ``lua/start.lua``, ``begin_send``, ``end_send``, ``complete``, ``cancel``,
``set_delivery``, and the lookups ``find`` and ``phone_verifications``).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from dataclasses import MISSING, dataclass, fields
from typing import Any, Generic, Literal, TypeVar

from verify.quotas import Limit, Quota, Refusal
from verify.sms import Payment
from verify.store.batch import BatchEngine, Op, ignore
from verify.store.keys import ID_RE, TAG_LENGTH, new_id, shard_of
from verify.store.quotas import as_refusal, quota_items, quota_ttl
from verify.store.scripts import (
    BeginSendArgs,
    CancelArgs,
    CompleteArgs,
    EndSendArgs,
    FindArgs,
    PhoneVerificationsArgs,
    SetDeliveryArgs,
    StartArgs,
)

OutcomeT = TypeVar("OutcomeT", bound=str)

StartOutcome = Literal["created", "resend", "existing", "in_progress", "limited"]
BeginOutcome = Literal["ok", "missing", "not_pending", "max_sends", "cooldown", "in_flight", "limited", "moved"]
EndOutcome = Literal["sent", "not_pending", "kept", "deleted", "stale"]
CompleteOutcome = Literal[
    "approved", "wrong", "max_attempts", "not_pending", "wrong_channel", "no_code", "missing", "locked", "limited"
]
CancelOutcome = Literal["canceled", "not_pending", "missing"]
DeliveryOutcome = Literal["updated", "read", "unchanged", "other_message", "missing"]


#: The record's fields as Redis holds them: short names, since a hash keeps every field's name in every record (a
#: long name cost more than most values), and only the fields that are set. The id is not stored: it ends the
#: record's key, and the scripts add it to a record they return when the caller may not know it (``lua/_record.lua``).
#: docs/performance.md ("Memory per verification") says what each costs.
FIELDS: dict[str, str] = {
    "phone": "p",
    "country": "cc",
    "channel": "ch",
    "locale": "l",
    "status": "s",
    "attempts": "a",
    "sends": "n",
    "created_at": "c",
    "last_sent_at": "ls",
    "expires_at": "e",
    "delivery_status": "d",
    "delivery_raw": "dr",
    "code_hash": "h",
    "call_number": "cn",
    "call_numbers": "cl",
    "sms_encoding": "se",
    "sms_parts": "sp",
    "provider": "gw",
    "message_id": "m",
    "completed_via": "v",
    "verified_at": "va",
    "owner": "o",
    "app_hash": "ah",
    "otp_host": "oh",
    "client_secret_hash": "cs",
    "sending": "x",  # the nonce of a send's reservation (lua/_send.lua)
    "sending_since": "xs",
    # A fallback chain's (service.py; only a verification started with one has them): its steps, the step it is on,
    # when the next one is due, the attempts so far, the code sealed (each step sends the same one), the client's
    # address (a step takes its quotas), and why it stopped early.
    "chain": "fc",
    "step": "fi",
    "next_at": "fd",
    "tried": "fa",
    "sealed_code": "k",
    "client_ip": "ip",
    "stopped": "fs",
    # A payment's (PSD2 dynamic linking; only a verification started with one has them): what its code approves.
    "amount": "pa",
    "currency": "pc",
    "payee": "pp",
}
#: The fields that came after the short names: never stored under a long one.
FIELDS_SINCE_SHORT = (
    "chain",
    "step",
    "next_at",
    "tried",
    "sealed_code",
    "client_ip",
    "stopped",
    "amount",
    "currency",
    "payee",
)
#: The names records had before (the long ones; ``cs`` was already short; ``id`` was stored too), read as the short
#: ones: a record written by the previous version may still be in Redis for its TTL (its final copy an hour longer)
#: after an upgrade. The scripts rename such a record's fields when they touch it (``lua/_record.lua``). Both go once
#: no such record can be left.
LEGACY_FIELDS: dict[str, str] = {
    name: short for name, short in FIELDS.items() if name not in ("client_secret_hash", *FIELDS_SINCE_SHORT)
}


@dataclass(frozen=True)
class Record:
    """One verification as stored (:data:`FIELDS` names its fields in Redis). Times are unix milliseconds; 0 means
    "not yet"."""

    id: str
    phone: str
    channel: str
    locale: str
    status: str
    attempts: int
    sends: int
    created_at: int
    last_sent_at: int
    expires_at: int
    call_number: str = ""
    call_numbers: tuple[str, ...] = ()
    provider: str = ""
    message_id: str = ""
    delivery_status: str = ""
    delivery_raw: str = ""
    sms_encoding: str = ""
    sms_parts: int = 0
    completed_via: str = ""
    verified_at: int = 0
    country: str = ""  # ISO region of the phone, as the start found it
    owner: str = ""  # the site key it was started through ("" for an API key)
    app_hash: str = ""  # the Android app's SMS Retriever hash its texts carry
    otp_host: str = ""  # the host of the WebOTP line its texts end with
    client_secret_hash: str = ""  # a site key's: the hash of the client secret its start handed out
    chain: str = ""  # a fallback chain's steps, "sms:60,voice:60" ("" for one channel; see FIELDS)
    step: int = 0
    next_at: int = 0
    tried: str = ""  # JSON: [[channel, gateway, status, unix ms], ...]
    sealed_code: str = ""
    client_ip: str = ""
    stopped: str = ""
    amount: str = ""  # a payment's (see FIELDS)
    currency: str = ""
    payee: str = ""

    @classmethod
    def from_hash(cls, stored: dict[str, str], verification_id: str = "") -> Record:
        """Build from the record's hash (short names, or a previous version's long ones: :data:`LEGACY_FIELDS`) and
        its id, unless the hash says it (``id``, as a script adds it). A field it does not know is left out; one it
        needs (phone, channel, status) missing raises KeyError."""
        return cls._of(stored.items(), verification_id)

    @classmethod
    def _of(cls, stored: Iterable[tuple[str, str]], verification_id: str) -> Record:
        values = dict(_DEFAULTS)
        for name, value in stored:
            attribute = _ATTRIBUTES.get(name)
            if attribute is not None:
                values[attribute] = value
        for attribute in _REQUIRED:
            if attribute not in values:
                raise KeyError(FIELDS[attribute])
        for attribute in _INTEGERS:
            value = values[attribute]
            if isinstance(value, str):
                values[attribute] = int(value or 0)
        numbers = values["call_numbers"]
        if isinstance(numbers, str):
            values["call_numbers"] = tuple(n for n in numbers.split(",") if n)
        values["id"] = values["id"] or verification_id
        # What the dataclass's __init__ would do, without its 36 object.__setattr__ calls (a record is read on every
        # request, some twice): every field is set, from the hash or its default, and typed as above.
        record = object.__new__(cls)
        record.__dict__.update(values)
        return record

    @property
    def payment(self) -> Payment | None:
        """What its code approves, for a payment's verification; else ``None``."""
        return Payment(self.amount, self.currency, self.payee) if self.amount else None

    def chain_attempts(self) -> list[list[Any]]:
        """A fallback chain's attempts as stored: ``[[channel, gateway, status, unix ms(, message id)], ...]`` (one
        the gateways refused has no message id); ``[]`` for a verification of one channel."""
        tried: list[list[Any]] = json.loads(self.tried) if self.tried else []
        return tried

    def entry(self) -> tuple[str, str]:
        """The channel and gateway its lifecycle is counted under (the metrics' ``channel`` and ``provider``): those
        of its first message. A fallback chain moves ``channel`` and ``provider`` on, and its approval, expiry or
        cancel still counts where it started, so that approvals over starts per channel stay a conversion rate."""
        for attempt in self.chain_attempts():
            if len(attempt) > 4:  # one a gateway took (a refused one has no message id)
                return str(attempt[0]), str(attempt[1])
        return self.channel, self.provider

    @classmethod
    def from_flat(cls, flat: list[str], verification_id: str = "") -> Record | None:
        """Build from a record as Lua returns it (``[field, value, ...]``); ``None`` for an empty one."""
        return cls._of(zip(flat[::2], flat[1::2], strict=True), verification_id) if flat else None


#: How :meth:`Record.from_hash` reads a hash: each name a record's hash may hold (short, a previous version's long
#: one, or ``id``) → its attribute; the attributes it must hold; those stored as integers; every other one's default.
_RECORD_FIELDS = fields(Record)
_NAMES = frozenset(f.name for f in _RECORD_FIELDS)
_ATTRIBUTES: dict[str, str] = {
    stored: name
    for stored, name in (
        *((long, long) for long in LEGACY_FIELDS),
        *((short, name) for name, short in FIELDS.items()),
        ("id", "id"),
    )
    if name in _NAMES  # not the code's hash, nor a send's reservation: no reader needs them
}
_REQUIRED = ("phone", "channel", "status")
_INTEGERS = tuple(f.name for f in _RECORD_FIELDS if f.type == "int")
_DEFAULTS: dict[str, Any] = {
    f.name: (0 if f.type == "int" else "") if f.default is MISSING else f.default
    for f in _RECORD_FIELDS
    if f.name not in _REQUIRED
}


@dataclass(frozen=True)
class Outcome(Generic[OutcomeT]):
    """What a transition script did (``outcome``), the record as it left it (``None`` if gone), and the limit that
    refused it, if one did."""

    outcome: OutcomeT
    record: Record | None
    refusal: Refusal | None = None
    superseded: str = ""


@dataclass(frozen=True)
class SendCommit:
    """What a successful send stores on the verification."""

    channel: str
    code_hash: str
    provider: str
    message_id: str
    call_number: str = ""
    call_numbers: tuple[str, ...] = ()
    sms_encoding: str = ""
    sms_parts: int = 0
    chained: tuple[tuple[str, str], ...] = ()  # a fallback chain's fields (FIELDS), as field, value

    def fields(self) -> list[str | int]:
        """As field, value pairs for ``lua/end_send.lua``, which stores the set ones and removes the empty ones (a
        call's commit leaves no SMS size behind, an SMS's no call number)."""
        values: dict[str, str | int] = {
            "ch": self.channel,
            "h": self.code_hash,
            "cn": self.call_number,
            "cl": ",".join(self.call_numbers),
            "gw": self.provider,
            "m": self.message_id,
            "se": self.sms_encoding,
            "sp": self.sms_parts or "",
            **dict(self.chained),
        }
        return [item for pair in values.items() for item in pair]


@dataclass(frozen=True)
class Source:
    """Who starts a verification, and what its texts carry for autofill: the site key (``owner``; "" for an API
    key) and the hash of the client secret its start hands out, the Android app's SMS Retriever hash, and the host
    of the WebOTP line."""

    owner: str = ""
    app_hash: str = ""
    otp_host: str = ""
    client_secret_hash: str = ""


def _outcome(limit: Limit | None, verification_id: str = "") -> Callable[[list[Any]], Outcome[Any]]:
    """How a transition script's ``{outcome, record[, refused field, ms to wait | superseded id]}`` about
    ``verification_id`` decodes (a script that may return another verification says its id in the record)."""

    def decode(reply: list[Any]) -> Outcome[Any]:
        outcome, flat = reply[0], reply[1]
        refusal = as_refusal(limit, reply[2], reply[3]) if len(reply) == 4 else None
        superseded = reply[2] if len(reply) == 3 else ""
        return Outcome(outcome, Record.from_flat(flat, verification_id), refusal, superseded)

    return decode


class VerificationCommands(BatchEngine):
    """The verifications' commands, a part of :class:`~verify.store.Batch`."""

    def _hint_here(self, verification_id: str) -> tuple[str, list[str]]:
        """What a transition that journals needs to hint its journal itself, in the same step (``lua/_journal.lua``):
        the slot's hash tag and the shard's hints and sequence keys, appended to its KEYS. On one server only: on a
        cluster those keys live in another slot, and the request brackets the transition with hints instead
        (``Events.hinted``); and only for an id of ours (nothing is journaled for another)."""
        s = self._store
        if s.cluster or not ID_RE.fullmatch(verification_id):
            return "", []
        tag = verification_id[:TAG_LENGTH]
        shard = shard_of(tag)
        return tag, [s.journal_hints_key(shard), s.journal_hint_sequence_key(shard)]

    def start(
        self,
        phone: str,
        country: str,
        channel: str,
        locale: str,
        now_ms: int,
        lease_ms: int,
        cooldown_ms: int,
        max_sends: int,
        nonce: str,
        quota: Limit | None,
        source: Source = Source(),
        remember_ms: int = 0,
        fresh: str = "",
        chain: str = "",
        client_ip: str = "",
        payment: Payment | None = None,
    ) -> Op[Outcome[StartOutcome]]:
        """Return ``phone``'s pending verification on ``channel`` (an API key's start), or reserve a send and take
        the phone's quota; a site key's start is remembered by the phone for ``remember_ms``; see
        ``lua/start.lua``. A new verification gets the id ``fresh`` (a new one if not given); with a fallback
        ``chain``, it keeps that and the ``client_ip`` its steps take quotas for; a payment's, what it approves."""
        s = self._store
        fresh = fresh or new_id(phone)
        quota_key = s.phone_quota_key("phone", phone)
        return self._script(
            _outcome(quota),
            s.scripts.start,
            [s.index_key(phone, channel), s.record_key(fresh), quota_key, s.site_key_index(phone)],
            StartArgs(
                prefix=s.record_prefix(phone),
                id=fresh,
                now=now_ms,
                lease=lease_ms,
                phone=phone,
                channel=channel,
                locale=locale,
                cooldown=cooldown_ms,
                max_sends=max_sends,
                nonce=nonce,
                quota_ttl=quota_ttl(quota),
                country=country,
                owner=source.owner,
                app_hash=source.app_hash,
                otp_host=source.otp_host,
                cs=source.client_secret_hash,
                remember=remember_ms,
                chain=chain,
                ip=client_ip if chain else "",
                amount=payment.amount if payment else "",
                currency=payment.currency if payment else "",
                payee=payment.payee if payment else "",
            ),
            *quota_items(quota),
        )

    def begin_send(
        self,
        verification_id: str,
        now_ms: int,
        cooldown_ms: int,
        max_sends: int,
        lease_ms: int,
        nonce: str,
        quota: Limit | None,
        caller: str = "",
        step: int | None = None,
    ) -> Op[Outcome[BeginOutcome]]:
        """Reserve a resend and take the phone's quota, or (``step``) a fallback chain's due step after that one;
        see ``lua/begin_send.lua``."""
        s = self._store
        return self._script(
            _outcome(quota, verification_id),
            s.scripts.begin_send,
            [s.record_key(verification_id)],
            BeginSendArgs(
                now=now_ms,
                cooldown=cooldown_ms,
                max_sends=max_sends,
                lease=lease_ms,
                nonce=nonce,
                quota_prefix=s.phone_quota_prefix("phone", verification_id),
                quota_ttl=quota_ttl(quota),
                caller=caller,
                step="" if step is None else str(step),
            ),
            *quota_items(quota),
        )

    def end_send(
        self,
        record: Record,
        nonce: str,
        now_ms: int,
        ttl_ms: int,
        quota: Limit | None,
        taken_at: int,
        commit: SendCommit | None,
        grace_ms: int = 0,
        chained: tuple[tuple[str, str], ...] = (),
    ) -> Op[Outcome[EndOutcome]]:
        """Commit a reserved send (``commit``) or roll it back (``None``, giving the phone's quota back, and storing
        the ``chained`` fields of a fallback chain's step that sent nothing); with a ``grace_ms``
        (``Events.grace_ms``), journal its expiry watch; see ``lua/end_send.lua``."""
        s = self._store
        channel = commit.channel if commit else record.channel
        keys = [
            s.record_key(record.id),
            s.index_key(record.phone, channel),
            s.index_key(record.phone, record.channel),
            s.journal_key(record.id[:TAG_LENGTH]),
        ]
        hint, hint_keys = self._hint_here(record.id)
        args = EndSendArgs(
            nonce=nonce,
            result="sent" if commit else "failed",
            now=now_ms,
            ttl=ttl_ms,
            quota_prefix=s.phone_quota_prefix("phone", record.id),
            taken_at=taken_at,
            grace=grace_ms,
            hint=hint,
        )
        fields = commit.fields() if commit else [item for pair in chained for item in pair]
        return self._script(
            _outcome(quota, record.id),
            s.scripts.end_send,
            keys + hint_keys,
            args,
            *quota_items(quota),
            *fields,
        )

    def unreserve(
        self, verification_id: str, phone: str, channel: str, nonce: str, quota: Limit | None, taken_at: int
    ) -> Op[Outcome[EndOutcome]]:
        """Roll back the first send that a start may have reserved as ``verification_id`` with ``nonce``, when its
        answer was lost: the reservation and the phone's quota go, and it changes nothing if there was none
        (``stale``); see ``lua/end_send.lua``."""
        s = self._store
        keys = [
            s.record_key(verification_id),
            s.index_key(phone, channel),
            s.index_key(phone, channel),
            s.journal_key(verification_id[:TAG_LENGTH]),
        ]
        args = EndSendArgs(
            nonce=nonce,
            result="failed",
            now=taken_at,
            ttl=0,
            quota_prefix=s.phone_quota_prefix("phone", verification_id),
            taken_at=taken_at,
            grace=0,
            hint="",  # a roll back journals nothing
        )
        return self._script(_outcome(quota, verification_id), s.scripts.end_send, keys, args, *quota_items(quota))

    def complete(
        self,
        verification_id: str,
        via: str,
        max_attempts: int,
        now_ms: int,
        keep_ms: int,
        failures: Limit | None,
        candidates: list[str],
        event_id: str = "",
        grace_ms: int = 0,
        caller: str = "",
        submitted: int = 1,
        gate: Quota | None = None,
    ) -> Op[Outcome[CompleteOutcome]]:
        """Approve once (journaling the approval as ``event_id``, when given), count the ``submitted`` wrong codes
        (``candidates`` are their hashes under every key), or refuse while the phone is locked by its consecutive
        wrong codes; see ``lua/complete.lua``. ``gate``: a quota taken first, in the same script, whatever the
        outcome (outcome ``limited`` when it refuses): one server only, since its key is in another slot."""
        s = self._store
        if gate is not None and s.cluster:
            raise ValueError("on a cluster a gate's key is in another slot than the record's: take it before")
        keys = [s.record_key(verification_id), s.journal_key(verification_id[:TAG_LENGTH])]
        judged, gated = _outcome(failures, verification_id), _outcome(gate.limit if gate else None)
        if gate is not None:
            keys.append(s.quota_key(gate))
        hint, hint_keys = self._hint_here(verification_id)
        return self._script(
            lambda reply: gated(reply) if reply[0] == "limited" else judged(reply),
            s.scripts.complete,
            keys + hint_keys,
            CompleteArgs(
                via=via,
                max_attempts=max_attempts,
                now=now_ms,
                keep=keep_ms,
                quota_prefix=s.phone_quota_prefix("fail", verification_id),
                quota_ttl=quota_ttl(failures),
                event_id=event_id,
                grace=grace_ms,
                caller=caller,
                submitted=submitted,
                gate_ttl=quota_ttl(gate.limit) if gate else 0,
                hint=hint,
            ),
            *quota_items(gate.limit if gate else None),
            *quota_items(failures),
            *candidates,
        )

    def cancel(self, verification_id: str, grace_ms: int = 0) -> Op[Outcome[CancelOutcome]]:
        """Cancel unless approved; see ``lua/cancel.lua``."""
        s = self._store
        return self._script(
            _outcome(None, verification_id), s.scripts.cancel, [s.record_key(verification_id)], CancelArgs(grace_ms)
        )

    def set_delivery(
        self,
        verification_id: str,
        provider: str,
        message_id: str,
        status: str,
        raw_status: str,
        event_id: str = "",
        grace_ms: int = 0,
        now_ms: int = 0,
    ) -> Op[Outcome[DeliveryOutcome]]:
        """Record a delivery status (journaling a failure as ``event_id``, when given); see
        ``lua/set_delivery.lua``."""
        s = self._store
        hint, hint_keys = self._hint_here(verification_id)
        return self._script(
            _outcome(None, verification_id),
            s.scripts.set_delivery,
            [s.record_key(verification_id), s.journal_key(verification_id[:TAG_LENGTH]), *hint_keys],
            SetDeliveryArgs(provider, message_id, status, raw_status, event_id, grace_ms, now_ms, hint),
        )

    def get(self, verification_id: str) -> Op[Record | None]:
        """The verification with this id, or ``None`` if unknown or expired (a malformed id is never sent)."""
        if not ID_RE.fullmatch(verification_id):
            op: Op[Record | None] = Op(ignore)
            op._set(None)
            return op
        return self._command(
            lambda h: Record.from_hash(h, verification_id) if h else None,
            "HGETALL",
            self._store.record_key(verification_id),
        )

    def phone_verifications(self, phone: str, channel: str, since_ms: int) -> Op[tuple[Record | None, list[Record]]]:
        """The API keys' newest verification of ``phone`` on ``channel``, and the site keys' verifications of
        ``phone`` started since ``since_ms`` (any channel, oldest first); see ``lua/phone_verifications.lua``."""
        s = self._store

        def decode(reply: list[Any]) -> tuple[Record | None, list[Record]]:
            site = [record for record in map(Record.from_flat, reply[1]) if record is not None]
            return Record.from_flat(reply[0]), site

        return self._script(
            decode,
            s.scripts.phone_verifications,
            [s.index_key(phone, channel), s.site_key_index(phone)],
            PhoneVerificationsArgs(s.record_prefix(phone), since_ms),
        )

    def find(self, phone: str, channel: str) -> Op[Record | None]:
        """The newest verification of ``phone`` on ``channel``, whatever its status."""
        s = self._store
        return self._script(
            Record.from_flat, s.scripts.find, [s.index_key(phone, channel)], FindArgs(s.record_prefix(phone))
        )
