"""Redis state: every key, every TTL, and every atomic transition (one Lua script each, in ``lua/``).

Keys carry ``VERIFY_REDIS_PREFIX`` and a hash tag. A verification's tag is derived from its phone and is the first
four characters of its id, so a verification, its phone index, its phone's quotas and its sandbox outbox share one
Redis Cluster slot, and every script touches a single slot. Keys of other things (a client IP's quota, a country's
statistics, a gateway's breaker) are tagged by that thing.

Every command goes through a :class:`Batch`: the commands of one step of a request, sent in one round trip (a
pipeline), each answering through an :class:`Op` once the batch has run. ``store.run(Batch.get, id)`` is a batch of
one. Commands whose reply nobody waits for (statistics, the sandbox gateway's copies of its messages) are
deferred (:meth:`Store.defer`): they ride along with the next batch and cost no round trip of their own.

Driver errors become :class:`~verify.errors.StoreUnavailable` (503); redis-py reconnects by itself. A Redis
that timed out is not asked again for :data:`FAIL_FAST_S`, so a request (and the requests behind it) fails within
about one timeout rather than one per round trip.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Concatenate, Generic, Literal, ParamSpec, TypeVar

import redis
from redis.client import Pipeline
from redis.cluster import ClusterPipeline, RedisCluster
from redis.commands.core import Script
from redis.exceptions import NoScriptError

from verify.errors import ReplicasUnconfirmed, StoreUnavailable
from verify.quotas import Limit, Quota, Refusal
from verify.store.connection import MAX_CONNECTIONS, SOCKET_TIMEOUT_S, Client, Connection, Health
from verify.store.keys import ID_RE, SHARDS, TAG_LENGTH, Keys, new_id, shard_of, tag_for
from verify.store.replicas import Mode

__all__ = [
    "ID_RE",
    "MAX_CONNECTIONS",
    "SHARDS",
    "SOCKET_TIMEOUT_S",
    "TAG_LENGTH",
    "Client",
    "Health",
    "Mode",
    "new_id",
    "shard_of",
    "tag_for",
]

OUTBOX_LENGTH = 20
OUTBOX_TTL_MS = 24 * 3600 * 1000
FAIL_FAST_S = 1.0
WAIT_REPLICAS_MS = 1000
READS = frozenset({"GET", "HGETALL", "HMGET", "LRANGE", "ZRANGE", "EXISTS"})  # commands that change nothing
PUMP_WARN_EVERY_MS = 300_000

T = TypeVar("T")
OutcomeT = TypeVar("OutcomeT", bound=str)
P = ParamSpec("P")

StartOutcome = Literal["created", "resend", "existing", "in_progress", "limited"]
BeginOutcome = Literal["ok", "missing", "not_pending", "max_sends", "cooldown", "in_flight", "limited"]
EndOutcome = Literal["sent", "not_pending", "kept", "deleted", "stale"]
CompleteOutcome = Literal[
    "approved", "wrong", "max_attempts", "not_pending", "wrong_channel", "no_code", "missing", "locked"
]
CancelOutcome = Literal["canceled", "not_pending", "missing"]
DeliveryOutcome = Literal["updated", "unchanged", "other_message", "missing"]
PumpCount = Literal["started", "approved"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Record:
    """One verification as stored. Times are unix milliseconds; 0 means "not yet"."""

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

    @classmethod
    def from_hash(cls, h: dict[str, str]) -> Record:
        """Build from the record's hash."""
        return cls(
            id=h["id"],
            phone=h["phone"],
            channel=h["channel"],
            locale=h.get("locale", ""),
            status=h["status"],
            attempts=int(h["attempts"]),
            sends=int(h["sends"]),
            created_at=int(h["created_at"]),
            last_sent_at=int(h["last_sent_at"]),
            expires_at=int(h["expires_at"]),
            call_number=h.get("call_number", ""),
            call_numbers=tuple(n for n in h.get("call_numbers", "").split(",") if n),
            provider=h.get("provider", ""),
            message_id=h.get("message_id", ""),
            delivery_status=h.get("delivery_status", ""),
            delivery_raw=h.get("delivery_raw", ""),
            sms_encoding=h.get("sms_encoding", ""),
            sms_parts=int(h.get("sms_parts") or 0),
            completed_via=h.get("completed_via", ""),
            verified_at=int(h.get("verified_at") or 0),
            country=h.get("country", ""),
            owner=h.get("owner", ""),
            app_hash=h.get("app_hash", ""),
            otp_host=h.get("otp_host", ""),
            client_secret_hash=h.get("cs", ""),
        )

    @classmethod
    def from_flat(cls, flat: list[str]) -> Record | None:
        """Build from an HGETALL reply as Lua returns it (``[field, value, ...]``); ``None`` for an empty one."""
        return cls.from_hash(dict(zip(flat[::2], flat[1::2], strict=True))) if flat else None


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

    def fields(self) -> list[str | int]:
        """As HSET field, value pairs."""
        return [
            "channel",
            self.channel,
            "code_hash",
            self.code_hash,
            "call_number",
            self.call_number,
            "call_numbers",
            ",".join(self.call_numbers),
            "provider",
            self.provider,
            "message_id",
            self.message_id,
            "sms_encoding",
            self.sms_encoding,
            "sms_parts",
            self.sms_parts,
        ]


@dataclass(frozen=True)
class Taken:
    """What :meth:`Batch.take` did: took the quota (``refusal`` is ``None``) or not; ``over`` tells whether its
    counter (the adaptive captcha's) is now over its amount."""

    quota: Quota
    refusal: Refusal | None
    over: bool = False


@dataclass(frozen=True)
class Pumping:
    """A country's SMS-pumping statistics over the last hour; ``warn``: log it now (once per 5 minutes)."""

    pumping: bool
    warn: bool
    started: int
    approved: int


@dataclass(frozen=True)
class Source:
    """Who starts a verification, and what its texts carry for autofill: the site key (``owner``; "" for an API
    key) and the hash of the client secret its start hands out, the Android app's SMS Retriever hash, and the host
    of the WebOTP line."""

    owner: str = ""
    app_hash: str = ""
    otp_host: str = ""
    client_secret_hash: str = ""


@dataclass(frozen=True)
class Breaker:
    """A gateway's circuit breaker: its failure streak, and until when (unix ms) it is open."""

    failures: int = 0
    open_until: int = 0


class Op(Generic[T]):
    """The decoded reply of one command of a :class:`Batch`, readable once the batch has run."""

    __slots__ = ("_decode", "_ran", "_value")

    def __init__(self, decode: Callable[[Any], T]) -> None:
        self._decode = decode
        self._value: T | None = None
        self._ran = False

    def _set(self, reply: Any) -> None:
        self._value, self._ran = self._decode(reply), True

    @property
    def value(self) -> T:
        """The reply, decoded."""
        if not self._ran:
            raise RuntimeError("the batch of this command has not run")
        return self._value  # type: ignore[return-value]


class Joined(Op[T]):
    """A value made of several commands' replies, readable once their batch has run."""

    __slots__ = ("_parts",)

    def __init__(self, parts: list[Op[Any]], join: Callable[[list[Any]], T]) -> None:
        super().__init__(join)  # decodes the list of the parts' values
        self._parts = parts

    @property
    def value(self) -> T:
        return self._decode([part.value for part in self._parts])


def _ignore(_: Any) -> None:
    return None


class Store(Connection, Keys):
    """All reads and writes of verification state."""

    def batch(self) -> Batch:
        """An empty batch: queue commands, then :meth:`Batch.run` sends them in one round trip."""
        return Batch(self)

    def run(self, command: Callable[Concatenate[Batch, P], Op[T]], *args: P.args, **kwargs: P.kwargs) -> T:
        """One command in a batch of its own: ``store.run(Batch.get, verification_id)``."""
        batch = Batch(self)
        op = command(batch, *args, **kwargs)
        batch.run()
        return op.value


class Batch:
    """Commands of one step, sent in one round trip. Each method queues one command and returns its :class:`Op`."""

    def __init__(self, store: Store) -> None:
        self._store = store
        self._ops: list[tuple[Op[Any], Script | None, tuple[Any, ...]]] = []
        self._spare: set[int] = set()  # the ids of the ops this batch may go without (see spare())

    def spare(self, op: Op[T]) -> Op[T]:
        """Let the batch go without ``op`` when, on a cluster, the node its key lives on cannot be reached: the rest
        is sent again without it, so that a node down fails only the requests whose own state lives there. For
        writes whose loss costs less than failing the request (what was deferred, a message-id index)."""
        self._spare.add(id(op))
        return op

    def run(self) -> None:
        """Send every queued command in one round trip, and fill in their :class:`Op`\\ s."""
        if not self._ops:
            return
        store = self._store
        deferred, store._deferred = store._deferred, []
        queued = len(self._ops)
        for queue, _ in deferred:
            queue(self)
        for op, _, _ in self._ops[queued:]:
            self.spare(op)  # deferred commands may be lost
        self._ops = self._ops[queued:] + self._ops[:queued]  # what was deferred happened first: it goes first
        if time.monotonic() < store.down_until:
            store.keep_deferred(deferred, sent=False)
            raise StoreUnavailable("Redis timed out a moment ago")
        commands = [command for _, _, command in self._ops]
        writes = store.wait_replicas and any(script or command[0] not in READS for _, script, command in self._ops)
        role: int | None = None  # where ROLE's reply is
        waited = 0  # how many replicas the WAIT asks for
        asked_at, master = time.monotonic(), store._master()
        if writes:  # nothing acknowledged may be lost when the sentinels promote a replica (see the module's doc)
            if store._ask_replicas():
                commands.append(("ROLE",))
                role = len(commands) - 1
            waited = store.wait_replicas
            known = store.replicas
            if (
                known is not None
                and known < waited
                and not store._replicas_stale
                and store._unconfirmed_allowed(master, asked_at - store.replicas_every)
            ):
                waited = known  # degraded: as many as the master has (none: no WAIT)
            if waited:
                commands.append(("WAIT", waited, WAIT_REPLICAS_MS))
        try:
            try:
                replies = self._send(commands)
            except redis.ConnectionError:
                needed = [entry for entry in self._ops if id(entry[0]) not in self._spare]
                if not store.cluster or len(needed) == len(self._ops):
                    raise
                # Sending the rest again is what redis-py itself does after a connection error (and on a cluster
                # it takes every node's connection before it writes to any).
                self._ops = needed
                replies = self._send([command for _, _, command in needed])
            if any(isinstance(reply, NoScriptError) for reply in replies):
                store.scripts.load()  # a new or restarted Redis: those scripts did not run; they will now
            for (op, script, command), reply in zip(self._ops, replies, strict=False):
                if isinstance(reply, NoScriptError) and script is not None:
                    reply = store.client.execute_command(*command)  # type: ignore[no-untyped-call]
                if isinstance(reply, Exception):
                    raise reply
                op._set(reply)
            if role is not None:
                store._learn(replies[role], asked_at)
            if waited:
                self._confirmed(replies[-1], waited, master)
            if writes:
                store._note()
        except redis.RedisError as err:
            store.keep_deferred(deferred, sent=True)
            store.on_error(err)
            store._forget_replicas()
            if isinstance(err, redis.TimeoutError) and not store.cluster:  # one cluster node is not all of Redis
                store.down_until = time.monotonic() + FAIL_FAST_S
            raise StoreUnavailable(f"Redis failed: {type(err).__name__}") from err

    def _confirmed(self, reply: Any, waited: int, master: Any) -> None:
        """Judge a WAIT's reply. Fewer replicas than it asked for fail the request (503: the write may have been
        applied), unless the master does not have them online any more (its ROLE, in this batch or since) and the
        sentinels, asked now, confirm that no replica of it can take over (:meth:`Store._ask_sentinels`): then the
        write goes on unconfirmed, as every write does while that lasts (degraded)."""
        store = self._store
        if isinstance(reply, Exception):
            raise reply
        if reply >= waited:
            return
        store.on_error(ReplicasUnconfirmed(waited, reply))  # counted whether it fails the request or not
        online = store.replicas
        if online is None or reply < min(waited, online) or not store._unconfirmed_allowed(master, time.monotonic()):
            store._forget_replicas()
            store._note()
            raise ReplicasUnconfirmed(waited, reply)

    def _send(self, commands: list[tuple[Any, ...]]) -> list[Any]:
        """The replies, errors included; a single command skips the pipeline's bookkeeping (one server).

        On a cluster each command names its node, found from its first key in the client's slot table: left to
        itself, redis-py 8's cluster pipeline asks the default node for the keys of every ``EVALSHA`` (``COMMAND
        GETKEYS``), a round trip per script and a dependency on a node the batch may not touch. A ``MOVED`` reply
        is still followed (redis-py sends that command again by its key).
        """
        client = self._store.client
        if isinstance(client, RedisCluster):
            pipe: Pipeline | ClusterPipeline = client.pipeline(transaction=False)  # type: ignore[no-untyped-call]
            for command in commands:
                key = command[3] if command[0] == "EVALSHA" else command[1]
                pipe.execute_command(  # type: ignore[no-untyped-call]
                    *command,
                    target_nodes=client.get_node_from_key(key),  # type: ignore[no-untyped-call]
                )
            return pipe.execute(raise_on_error=False)
        if len(commands) == 1:
            try:
                return [client.execute_command(*commands[0])]  # type: ignore[no-untyped-call]
            except redis.ResponseError as err:
                return [err]
        pipe = client.pipeline(transaction=False)
        for command in commands:
            pipe.execute_command(*command)  # type: ignore[no-untyped-call]
        return pipe.execute(raise_on_error=False)

    def _command(self, decode: Callable[[Any], T], *command: Any) -> Op[T]:
        op = Op(decode)
        self._ops.append((op, None, command))
        return op

    def _script(self, decode: Callable[[Any], T], script: Script, keys: list[str], args: list[Any]) -> Op[T]:
        op = Op(decode)
        self._ops.append((op, script, ("EVALSHA", script.sha, len(keys), *keys, *args)))
        return op

    # verifications

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
    ) -> Op[Outcome[StartOutcome]]:
        """Return ``phone``'s pending verification on ``channel`` (an API key's start), or reserve a send and take
        the phone's quota; a site key's start is remembered by the phone for ``remember_ms``; see
        ``lua/start.lua``. A new verification gets the id ``fresh`` (a new one if not given)."""
        s = self._store
        fresh = fresh or new_id(phone)
        quota_key = s.phone_quota_key("phone", phone)
        return self._script(
            _outcome(quota),
            s.scripts.start,
            [s.index_key(phone, channel), s.record_key(fresh), quota_key, s.site_key_index(phone)],
            [
                s.record_prefix(phone),
                fresh,
                now_ms,
                lease_ms,
                phone,
                channel,
                locale,
                cooldown_ms,
                max_sends,
                nonce,
                _ttl(quota),
                country,
                source.owner,
                source.app_hash,
                source.otp_host,
                source.client_secret_hash,
                remember_ms,
                *_items(quota),
            ],
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
    ) -> Op[Outcome[BeginOutcome]]:
        """Reserve a resend and take the phone's quota; see ``lua/begin_send.lua``."""
        s = self._store
        return self._script(
            _outcome(quota),
            s.scripts.begin_send,
            [s.record_key(verification_id)],
            [
                now_ms,
                cooldown_ms,
                max_sends,
                lease_ms,
                nonce,
                s.phone_quota_prefix("phone", verification_id),
                _ttl(quota),
                caller,
                *_items(quota),
            ],
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
    ) -> Op[Outcome[EndOutcome]]:
        """Commit a reserved send (``commit``) or roll it back (``None``, giving the phone's quota back); with
        a ``grace_ms`` (``Events.grace_ms``), journal its expiry watch; see ``lua/end_send.lua``."""
        s = self._store
        channel = commit.channel if commit else record.channel
        keys = [
            s.record_key(record.id),
            s.index_key(record.phone, channel),
            s.index_key(record.phone, record.channel),
            s.journal_key(record.id[:TAG_LENGTH]),
        ]
        args = [
            nonce,
            "sent" if commit else "failed",
            now_ms,
            ttl_ms,
            s.phone_quota_prefix("phone", record.id),
            taken_at,
            grace_ms,
            *_items(quota),
            *(commit.fields() if commit else []),
        ]
        return self._script(_outcome(quota), s.scripts.end_send, keys, args)

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
        args = [
            nonce,
            "failed",
            taken_at,
            0,
            s.phone_quota_prefix("phone", verification_id),
            taken_at,
            0,
            *_items(quota),
        ]
        return self._script(_outcome(quota), s.scripts.end_send, keys, args)

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
    ) -> Op[Outcome[CompleteOutcome]]:
        """Approve once (journaling the approval as ``event_id``, when given), count the ``submitted`` wrong codes
        (``candidates`` are their hashes under every key), or refuse while the phone is locked by its consecutive
        wrong codes; see ``lua/complete.lua``."""
        s = self._store
        return self._script(
            _outcome(failures),
            s.scripts.complete,
            [s.record_key(verification_id), s.journal_key(verification_id[:TAG_LENGTH])],
            [
                via,
                max_attempts,
                now_ms,
                keep_ms,
                s.phone_quota_prefix("fail", verification_id),
                _ttl(failures),
                event_id,
                grace_ms,
                caller,
                submitted,
                *_items(failures),
                *candidates,
            ],
        )

    def cancel(self, verification_id: str, grace_ms: int = 0) -> Op[Outcome[CancelOutcome]]:
        """Cancel unless approved; see ``lua/cancel.lua``."""
        s = self._store
        return self._script(_outcome(None), s.scripts.cancel, [s.record_key(verification_id)], [grace_ms])

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
        return self._script(
            _outcome(None),
            s.scripts.set_delivery,
            [s.record_key(verification_id), s.journal_key(verification_id[:TAG_LENGTH])],
            [provider, message_id, status, raw_status, event_id, grace_ms, now_ms],
        )

    def get(self, verification_id: str) -> Op[Record | None]:
        """The verification with this id, or ``None`` if unknown or expired (a malformed id is never sent)."""
        if not ID_RE.fullmatch(verification_id):
            op: Op[Record | None] = Op(_ignore)
            op._set(None)
            return op
        return self._command(
            lambda h: Record.from_hash(h) if h else None, "HGETALL", self._store.record_key(verification_id)
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
            [s.record_prefix(phone), since_ms],
        )

    def find(self, phone: str, channel: str) -> Op[Record | None]:
        """The newest verification of ``phone`` on ``channel``, whatever its status."""
        s = self._store
        return self._script(Record.from_flat, s.scripts.find, [s.index_key(phone, channel)], [s.record_prefix(phone)])

    # quotas, captchas and statistics

    def take(self, quota: Quota, now_ms: int) -> Op[Taken]:
        """Take one from ``quota`` (all its windows or none) and count its counter; see ``lua/take.lua``."""
        limit, counter = quota.limit, quota.counter

        def decode(reply: list[Any]) -> Taken:
            if reply[0] == 1:
                return Taken(quota, None, over=bool(counter and reply[1]))
            return Taken(quota, _refusal(limit, reply[1], reply[2]))

        return self._script(
            decode,
            self._store.scripts.take,
            [self._store.quota_key(quota)],
            [now_ms, _ttl(limit, counter), *_items(limit), *_items(counter, counter=True)],
        )

    def give(self, quota: Quota, taken_at: int) -> Op[None]:
        """Give back what :meth:`take` took at ``taken_at``; see ``lua/give.lua``."""
        items = _items(quota.limit)[1:] + _items(quota.counter, counter=True)[1:]
        return self._script(
            _ignore, self._store.scripts.give, [self._store.quota_key(quota)], [taken_at, len(items) // 3, *items]
        )

    def pump_count(self, country: str, verification_id: str, what: PumpCount, now_ms: int) -> Op[None]:
        """Count an SMS verification started or approved in ``country``, in its shard; see ``lua/pump.lua``."""
        key = self._store.pump_key(country, shard_of(verification_id))
        return self._script(_ignore, self._store.scripts.pump, [key], [what, now_ms])

    def pump_read(self, country: str, now_ms: int, threshold: float, min_starts: int) -> Op[Pumping]:
        """Whether SMS pumping is suspected in ``country``: more than ``threshold`` of at least ``min_starts`` SMS
        verifications started in the last hour were not approved. ``warn`` unless it was logged lately."""
        store = self._store
        shards = [
            self._script(
                lambda r: (int(r[0]), int(r[1])), store.scripts.pump, [store.pump_key(country, shard)], ["read", now_ms]
            )
            for shard in range(SHARDS)
        ]
        warned = self._command(bool, "EXISTS", store.pump_warned_key(country))

        def join(parts: list[Any]) -> Pumping:
            started, approved = map(sum, zip(*parts[:-1], strict=True))
            pumping = started >= min_starts and started - approved > threshold * started
            return Pumping(pumping, pumping and not parts[-1], started, approved)

        return Joined([*shards, warned], join)

    def pump_warning(self, country: str) -> Op[bool]:
        """Whether to log that SMS pumping is suspected in ``country`` now: at most once per 5 minutes."""
        return self._command(bool, "SET", self._store.pump_warned_key(country), 1, "PX", PUMP_WARN_EVERY_MS, "NX")

    def captcha_put(self, challenge_id: str, digest: str, ttl_ms: int, plain: str | None) -> Op[None]:
        """Keep a challenge's answer digest for ``ttl_ms``; the plain answer too in sandbox mode."""
        key = self._store.captcha_key(challenge_id)
        if plain is not None:
            self._command(_ignore, "SET", key + ":plain", plain, "PX", ttl_ms)
        return self._command(_ignore, "SET", key, digest, "PX", ttl_ms)

    def captcha_take(self, challenge_id: str) -> Op[str | None]:
        """Take a challenge's digest: a challenge is answered once, right or wrong."""
        key = self._store.captcha_key(challenge_id)
        op: Op[str | None] = self._command(lambda d: d, "GETDEL", key)
        self._command(_ignore, "DEL", key + ":plain")
        return op

    def captcha_answer(self, challenge_id: str) -> Op[str | None]:
        """The plain answer kept in sandbox mode."""
        return self._command(lambda d: d, "GET", self._store.captcha_key(challenge_id) + ":plain")

    # gateways

    def breaker(self, provider: str) -> Op[Breaker]:
        """The gateway's circuit breaker."""
        return self._command(
            lambda r: Breaker(int(r[0] or 0), int(r[1] or 0)),
            "HMGET",
            self._store.breaker_key(provider),
            "failures",
            "open_until",
        )

    def breaker_failure(self, provider: str, now_ms: int, threshold: int, cooldown_ms: int) -> Op[int]:
        """Count a failure; until when the breaker is now open (0: still closed). See ``lua/breaker_failure.lua``."""
        return self._script(
            int,
            self._store.scripts.breaker_failure,
            [self._store.breaker_key(provider)],
            [now_ms, threshold, cooldown_ms],
        )

    def breaker_reset(self, provider: str) -> Op[None]:
        """A success after failures closes the breaker and clears the streak."""
        return self._command(_ignore, "DEL", self._store.breaker_key(provider))

    def remember_message(self, provider: str, message_id: str, verification_id: str, ttl_ms: int) -> Op[None]:
        """Map a gateway's message id to our verification, for as long as reports may come."""
        return self._command(
            _ignore, "SET", self._store.message_key(provider, message_id), verification_id, "PX", ttl_ms
        )

    def message_verification(self, provider: str, message_id: str) -> Op[str | None]:
        """Our verification id for a gateway's message id."""
        return self._command(lambda v: v, "GET", self._store.message_key(provider, message_id))

    def outbox_push(self, phone: str, message: dict[str, str]) -> Op[None]:
        """Keep a sandbox message, newest first, trimmed to the last few per phone."""
        key = self._store.outbox_key(phone)
        self._command(_ignore, "LPUSH", key, json.dumps(message))
        self._command(_ignore, "LTRIM", key, 0, OUTBOX_LENGTH - 1)
        return self._command(_ignore, "PEXPIRE", key, OUTBOX_TTL_MS)

    def outbox(self, phone: str) -> Op[list[dict[str, str]]]:
        """Sandbox messages to ``phone``, newest first."""
        return self._command(
            lambda raw: [json.loads(item) for item in raw], "LRANGE", self._store.outbox_key(phone), 0, -1
        )

    # webhook nonces

    def claim_nonce(self, provider: str, nonce: str, ttl_ms: int) -> Op[bool]:
        """True the first time ``nonce`` is seen within ``ttl_ms``; False for a replay."""
        return self._command(bool, "SET", self._store.nonce_key(provider, nonce), "1", "NX", "PX", ttl_ms)

    def release_nonce(self, provider: str, nonce: str) -> Op[None]:
        """Forget a nonce whose callback could not be applied, so the gateway's retry is not taken for a replay."""
        return self._command(_ignore, "DEL", self._store.nonce_key(provider, nonce))

    # schedules: the outbox of customer events and the watch for expiring verifications

    def schedule(self, name: str, member: str, due_ms: int, data: str) -> Op[None]:
        """Put ``member`` (with ``data``) on schedule ``name`` at ``due_ms``; replaces an earlier entry."""
        due, payload = self._store.schedule_keys(name)
        self._command(_ignore, "HSET", payload, member, data)
        return self._command(_ignore, "ZADD", due, due_ms, member)

    def claim_due(self, name: str, now_ms: int, lease_ms: int, limit: int) -> Op[list[tuple[str, str]]]:
        """Due entries of schedule ``name`` as ``(member, data)``, leased to this caller; see ``claim_due.lua``."""
        due, payload = self._store.schedule_keys(name)
        return self._script(
            lambda flat: list(zip(flat[::2], flat[1::2], strict=True)),
            self._store.scripts.claim_due,
            [due, payload],
            [now_ms, lease_ms, limit],
        )

    def unschedule(self, name: str, member: str) -> Op[None]:
        """Take ``member`` off schedule ``name``."""
        due, payload = self._store.schedule_keys(name)
        self._command(_ignore, "ZREM", due, member)
        return self._command(_ignore, "HDEL", payload, member)

    # the events journal (verify/events.py)

    def hint_journal(self, verification_id: str) -> Op[None]:
        """Say that the journal of ``verification_id``'s slot may get an entry (queued ahead of the transition)."""
        tag = verification_id[:TAG_LENGTH]
        return self._command(_ignore, "ZINCRBY", self._store.journal_hints_key(shard_of(tag)), 1, tag)

    def journal_hints(self, shard: int, limit: int) -> Op[list[tuple[str, int]]]:
        """Up to ``limit`` hinted slots of one shard, as (hash tag, hint count)."""
        return self._command(
            lambda pairs: [(tag, int(count)) for tag, count in pairs],  # redis-py pairs them
            "ZRANGE",
            self._store.journal_hints_key(shard),
            0,
            limit - 1,
            "WITHSCORES",
        )

    def journal(self, tag: str) -> Op[dict[str, str]]:
        """The entries of one slot's journal: entry id -> JSON."""
        return self._command(lambda h: h or {}, "HGETALL", self._store.journal_key(tag))

    def forget_journal(self, tag: str, entry_ids: list[str]) -> Op[None]:
        """Remove moved entries from a slot's journal."""
        if not entry_ids:
            return self._command(_ignore, "EXISTS", self._store.journal_key(tag))
        return self._command(_ignore, "HDEL", self._store.journal_key(tag), *entry_ids)

    def unhint_journal(self, tag: str, count: int) -> Op[bool]:
        """Forget a slot's hint unless another came since it was read; see ``lua/unhint.lua``."""
        hints = self._store.journal_hints_key(shard_of(tag))
        return self._script(bool, self._store.scripts.unhint, [hints], [tag, count])

    def enqueue_event(self, event_id: str, due_ms: int, envelope: str) -> Op[bool]:
        """Queue an event unless it was queued or delivered before; see ``lua/enqueue.lua``."""
        due, data = self._store.schedule_keys("events")
        return self._script(
            bool, self._store.scripts.enqueue, [due, data, self._store.delivered_key()], [event_id, due_ms, envelope]
        )

    def delivered_event(self, event_id: str, now_ms: int, remember_ms: int) -> Op[None]:
        """An event is done with: off the outbox, remembered; see ``lua/delivered.lua``."""
        due, data = self._store.schedule_keys("events")
        return self._script(
            _ignore,
            self._store.scripts.delivered,
            [due, data, self._store.delivered_key()],
            [event_id, now_ms, remember_ms],
        )

    def final_copy(self, verification_id: str) -> Op[dict[str, str]]:
        """What the transitions kept of the verification as it finally was, after Redis dropped it: every field
        with events on, only its status with events off (``lua/_journal.lua``); empty when nothing was kept."""
        return self._command(lambda h: h or {}, "HGETALL", self._store.record_key(verification_id) + ":final")

    def drop_final_copy(self, verification_id: str) -> Op[None]:
        """Its expiry was seen to: the final copy is not needed any more."""
        return self._command(_ignore, "DEL", self._store.record_key(verification_id) + ":final")

    # idempotency

    def claim_idempotency(self, key: str, claim: dict[str, Any], lease_ms: int) -> Op[dict[str, Any] | None]:
        """Claim ``key`` (``None``) or return what is stored under it: a claim or a finished response."""
        return self._script(
            lambda stored: json.loads(stored) if stored else None,
            self._store.scripts.idempotency,
            [self._store.idempotency_key(key)],
            [json.dumps(claim), lease_ms],
        )

    def finish_idempotency(self, key: str, result: dict[str, Any], ttl_ms: int) -> Op[None]:
        """Store the response for ``key``; later requests with it replay this."""
        return self._command(_ignore, "SET", self._store.idempotency_key(key), json.dumps(result), "PX", ttl_ms)

    def release_idempotency(self, key: str) -> Op[None]:
        """Drop the claim on ``key`` after a failed request, so the client may retry it."""
        return self._command(_ignore, "DEL", self._store.idempotency_key(key))


def _items(limit: Limit | None, *, counter: bool = False) -> list[str | int]:
    """A limit's windows as ``_quota.lua`` reads them: a count, then field, amount, window (ms) for each."""
    windows = limit.windows if limit else ()
    out: list[str | int] = [len(windows)]
    for w in windows:
        out += [("n" if counter else "") + str(w.seconds), w.amount, w.seconds * 1000]
    return out


def _ttl(*limits: Limit | None) -> int:
    """A quota key lives twice its longest window past its last write: the previous window still counts."""
    return 2000 * max((w.seconds for limit in limits if limit for w in limit.windows), default=1)


def _refusal(limit: Limit | None, field: str, wait_ms: int) -> Refusal:
    assert limit is not None  # noqa: S101 - only a limit refuses
    window = next(w for w in limit.windows if str(w.seconds) == field)
    return Refusal(limit, window, max(1, -(-int(wait_ms) // 1000)))


def _outcome(limit: Limit | None) -> Callable[[list[Any]], Outcome[Any]]:
    """How a transition script's ``{outcome, record[, refused field, ms to wait | superseded id]}`` decodes."""

    def decode(reply: list[Any]) -> Outcome[Any]:
        outcome, flat = reply[0], reply[1]
        refusal = _refusal(limit, reply[2], reply[3]) if len(reply) == 4 else None
        superseded = reply[2] if len(reply) == 3 else ""
        return Outcome(outcome, Record.from_flat(flat), refusal, superseded)

    return decode
