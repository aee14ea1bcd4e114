"""Redis state: every key, every TTL, and every atomic transition (one Lua script each, in ``lua/``).

Keys carry ``VERIFY_REDIS_PREFIX`` and a hash tag. The tag is derived from the phone and is the first four
characters of every verification id, so a verification, its phone index and its sandbox outbox share one
Redis Cluster slot and every script touches a single slot.
Driver errors become :class:`~verify.errors.StoreUnavailable` (503); redis-py reconnects by itself.
"""

from __future__ import annotations

import hashlib
import json
import re
import secrets
import weakref
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from importlib import resources
from typing import Any

import redis

from verify.errors import StoreUnavailable

ID_RE = re.compile(r"^[0-9a-f]{28}$")
TAG_LENGTH = 4
OUTBOX_LENGTH = 20
OUTBOX_TTL_MS = 24 * 3600 * 1000


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

    @classmethod
    def from_flat(cls, flat: list[str]) -> Record:
        """Build from an HGETALL reply as Lua returns it: ``[field, value, field, value, ...]``."""
        h = dict(zip(flat[::2], flat[1::2], strict=True))
        return cls(
            id=h["id"], phone=h["phone"], channel=h["channel"], locale=h.get("locale", ""),
            status=h["status"], attempts=int(h["attempts"]), sends=int(h["sends"]),
            created_at=int(h["created_at"]), last_sent_at=int(h["last_sent_at"]),
            expires_at=int(h["expires_at"]), call_number=h.get("call_number", ""),
            call_numbers=tuple(n for n in h.get("call_numbers", "").split(",") if n),
            provider=h.get("provider", ""), message_id=h.get("message_id", ""),
            delivery_status=h.get("delivery_status", ""), delivery_raw=h.get("delivery_raw", ""),
            sms_encoding=h.get("sms_encoding", ""),
            sms_parts=int(h.get("sms_parts") or 0), completed_via=h.get("completed_via", ""),
            verified_at=int(h.get("verified_at") or 0),
        )


@dataclass(frozen=True)
class Outcome:
    """What a transition script did (``outcome``) and the record as it left it (``None`` if gone)."""

    outcome: str
    record: Record | None


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


def tag_for(phone: str) -> str:
    """The hash tag of a phone's keys; spreads phones over Cluster slots."""
    return hashlib.sha256(phone.encode()).hexdigest()[:TAG_LENGTH]


def new_id(phone: str) -> str:
    """A fresh verification id: the phone's hash tag followed by 96 random bits."""
    return tag_for(phone) + secrets.token_hex(12)


@contextmanager
def _available() -> Iterator[None]:
    try:
        yield
    except redis.RedisError as err:
        raise StoreUnavailable(f"Redis failed: {type(err).__name__}") from err


class Store:
    """All reads and writes of verification state."""

    def __init__(self, client: redis.Redis, prefix: str) -> None:
        self.client = client
        self.prefix = prefix
        # Close the pool's sockets when the store goes, rather than leave them to the garbage collector.
        weakref.finalize(self, client.connection_pool.disconnect)
        self._scripts = {name: client.register_script(_lua(name)) for name in
                         ("open", "begin_send", "end_send", "complete", "cancel", "idempotency",
                                  "breaker_failure", "set_delivery", "claim_due", "find")}

    @classmethod
    def from_url(cls, url: str, prefix: str) -> Store:
        """Connect lazily to ``url``. Short timeouts: a dead Redis must give a quick 503, not a hang."""
        client = redis.Redis.from_url(url, decode_responses=True, socket_timeout=2,
                                      socket_connect_timeout=1, health_check_interval=15)
        return cls(client, prefix)

    # keys

    def _tagged(self, tag: str) -> str:
        return f"{self.prefix}{{{tag}}}:"

    def record_key(self, verification_id: str) -> str:
        """The hash of one verification."""
        return f"{self._tagged(verification_id[:TAG_LENGTH])}vf:{verification_id}"

    def _record_prefix(self, phone: str) -> str:
        """What the record keys of ``phone``'s verifications begin with (their ids carry its tag)."""
        return f"{self._tagged(tag_for(phone))}vf:"

    def index_key(self, phone: str, channel: str) -> str:
        """Points from a phone and channel to its newest verification."""
        return f"{self._tagged(tag_for(phone))}ph:{phone}:{channel}"

    def outbox_key(self, phone: str) -> str:
        """The sandbox provider's recent messages to one phone."""
        return f"{self._tagged(tag_for(phone))}outbox:{phone}"

    def breaker_key(self, provider: str) -> str:
        """The circuit breaker of one gateway, shared by every worker."""
        return f"{self.prefix}breaker:{{{provider}}}"

    def message_key(self, provider: str, message_id: str) -> str:
        """Points from a gateway's message id to our verification id (for delivery reports and replies)."""
        return f"{self.prefix}msg:{{{provider}:{message_id}}}"

    def nonce_key(self, provider: str, nonce: str) -> str:
        """A webhook nonce already seen."""
        return f"{self.prefix}nonce:{{{provider}}}:{nonce}"

    def schedule_keys(self, name: str) -> tuple[str, str]:
        """A schedule (sorted set of due times) and its data hash, in one slot: ``events`` or ``expiry``."""
        return f"{self.prefix}{{{name}}}:due", f"{self.prefix}{{{name}}}:data"

    def idempotency_key(self, key: str) -> str:
        """Where the response to one Idempotency-Key is kept."""
        digest = hashlib.sha256(key.encode()).hexdigest()
        return f"{self.prefix}idem:{{{digest[:TAG_LENGTH]}}}:{digest}"

    # transitions

    def _run(self, name: str, keys: list[str], args: list[Any]) -> Outcome:
        with _available():
            outcome, flat = self._scripts[name](keys=keys, args=args)
        return Outcome(outcome, Record.from_flat(flat) if flat else None)

    def open(self, phone: str, channel: str, locale: str, now_ms: int, lease_ms: int) -> Outcome:
        """Return the pending verification of ``phone`` on ``channel`` (``existing``) or create one."""
        fresh = new_id(phone)
        return self._run("open", [self.index_key(phone, channel), self.record_key(fresh)],
                         [self._record_prefix(phone), fresh, now_ms, lease_ms, phone, channel,
                          locale])

    def begin_send(self, verification_id: str, now_ms: int, cooldown_ms: int, max_sends: int,
                   lease_ms: int, nonce: str) -> Outcome:
        """Reserve a send; see ``lua/begin_send.lua``."""
        return self._run("begin_send", [self.record_key(verification_id)],
                         [now_ms, cooldown_ms, max_sends, lease_ms, nonce])

    def end_send(self, record: Record, nonce: str, now_ms: int, ttl_ms: int,
                 commit: SendCommit | None) -> Outcome:
        """Commit a reserved send (``commit``) or roll it back (``None``); see ``lua/end_send.lua``."""
        channel = commit.channel if commit else record.channel
        keys = [self.record_key(record.id), self.index_key(record.phone, channel),
                self.index_key(record.phone, record.channel)]
        if commit is None:
            return self._run("end_send", keys, [nonce, "failed", now_ms, ttl_ms, "", "", "", "", "", "", "", 0])
        return self._run("end_send", keys, [
            nonce, "sent", now_ms, ttl_ms, commit.channel, commit.code_hash, commit.call_number,
            ",".join(commit.call_numbers), commit.provider, commit.message_id, commit.sms_encoding,
            commit.sms_parts])

    def complete(self, verification_id: str, via: str, max_attempts: int, now_ms: int, keep_ms: int,
                 candidates: list[str]) -> Outcome:
        """Approve once, or count a wrong code; see ``lua/complete.lua``."""
        return self._run("complete", [self.record_key(verification_id)],
                         [via, max_attempts, now_ms, keep_ms, *candidates])

    def cancel(self, verification_id: str) -> Outcome:
        """Cancel unless approved; see ``lua/cancel.lua``."""
        return self._run("cancel", [self.record_key(verification_id)], [])

    # reads

    def get(self, verification_id: str) -> Record | None:
        """The verification with this id, or ``None`` if unknown, malformed or expired."""
        if not ID_RE.match(verification_id):
            return None
        with _available():
            flat: dict[str, str] = self.client.hgetall(self.record_key(verification_id))  # type: ignore[assignment]
        return Record.from_flat([x for kv in flat.items() for x in kv]) if flat else None

    def find(self, phone: str, channel: str) -> Record | None:
        """The newest verification of ``phone`` on ``channel``, whatever its status."""
        with _available():
            flat = self._scripts["find"](keys=[self.index_key(phone, channel)],
                                         args=[self._record_prefix(phone)])
        return Record.from_flat(flat) if flat else None

    def ping(self) -> bool:
        """Whether Redis answers."""
        try:
            return bool(self.client.ping())
        except redis.RedisError:
            return False

    # sandbox outbox

    def outbox_push(self, phone: str, message: dict[str, str]) -> None:
        """Keep a sandbox message, newest first, trimmed to the last few per phone."""
        key = self.outbox_key(phone)
        with _available():
            pipe = self.client.pipeline(transaction=True)
            pipe.lpush(key, json.dumps(message))
            pipe.ltrim(key, 0, OUTBOX_LENGTH - 1)
            pipe.pexpire(key, OUTBOX_TTL_MS)
            pipe.execute()

    def outbox(self, phone: str) -> list[dict[str, str]]:
        """Sandbox messages to ``phone``, newest first."""
        with _available():
            raw = self.client.lrange(self.outbox_key(phone), 0, -1)
        return [json.loads(item) for item in raw]

    def set_delivery(self, verification_id: str, provider: str, message_id: str, status: str,
                     raw_status: str) -> Outcome:
        """Record a delivery status; see ``lua/set_delivery.lua``."""
        return self._run("set_delivery", [self.record_key(verification_id)],
                         [provider, message_id, status, raw_status])

    def remember_message(self, provider: str, message_id: str, verification_id: str, ttl_ms: int) -> None:
        """Map a gateway's message id to our verification, for as long as reports may come."""
        with _available():
            self.client.set(self.message_key(provider, message_id), verification_id, px=ttl_ms)

    def message_verification(self, provider: str, message_id: str) -> str | None:
        """Our verification id for a gateway's message id."""
        with _available():
            found: str | None = self.client.get(self.message_key(provider, message_id))  # type: ignore[assignment]
        return found

    def claim_nonce(self, provider: str, nonce: str, ttl_ms: int) -> bool:
        """True the first time ``nonce`` is seen within ``ttl_ms``; False for a replay."""
        with _available():
            return bool(self.client.set(self.nonce_key(provider, nonce), "1", nx=True, px=ttl_ms))

    def release_nonce(self, provider: str, nonce: str) -> None:
        """Forget a nonce whose callback could not be applied, so the gateway's retry is not taken for a replay."""
        with _available():
            self.client.delete(self.nonce_key(provider, nonce))

    # captchas

    def captcha_key(self, challenge_id: str) -> str:
        """The HMAC of one builtin captcha's answer (and, in sandbox mode, ``<key>:plain``)."""
        return f"{self.prefix}captcha:{{{challenge_id}}}"

    def captcha_put(self, challenge_id: str, digest: str, ttl_ms: int, plain: str | None) -> None:
        """Keep a challenge's answer digest for ``ttl_ms``; the plain answer too in sandbox mode."""
        key = self.captcha_key(challenge_id)
        with _available():
            pipe = self.client.pipeline(transaction=True)
            pipe.set(key, digest, px=ttl_ms)
            if plain is not None:
                pipe.set(key + ":plain", plain, px=ttl_ms)
            pipe.execute()

    def captcha_take(self, challenge_id: str) -> str | None:
        """Take a challenge's digest: a challenge is answered once, right or wrong."""
        key = self.captcha_key(challenge_id)
        with _available():
            pipe = self.client.pipeline(transaction=True)
            pipe.getdel(key)
            pipe.delete(key + ":plain")
            digest: str | None = pipe.execute()[0]
        return digest

    def captcha_answer(self, challenge_id: str) -> str | None:
        """The plain answer kept in sandbox mode."""
        with _available():
            plain: str | None = self.client.get(self.captcha_key(challenge_id) + ":plain")  # type: ignore[assignment]
        return plain

    # schedules: the outbox of customer events and the watch for expiring verifications

    def schedule(self, name: str, member: str, due_ms: int, data: str) -> None:
        """Put ``member`` (with ``data``) on schedule ``name`` at ``due_ms``; replaces an earlier entry."""
        due, payload = self.schedule_keys(name)
        with _available():
            pipe = self.client.pipeline(transaction=True)
            pipe.hset(payload, member, data)
            pipe.zadd(due, {member: due_ms})
            pipe.execute()

    def claim_due(self, name: str, now_ms: int, lease_ms: int, limit: int) -> list[tuple[str, str]]:
        """Due entries of schedule ``name`` as ``(member, data)``, leased to this caller; see ``claim_due.lua``."""
        due, payload = self.schedule_keys(name)
        with _available():
            flat = self._scripts["claim_due"](keys=[due, payload], args=[now_ms, lease_ms, limit])
        return list(zip(flat[::2], flat[1::2], strict=True))

    def unschedule(self, name: str, member: str) -> None:
        """Take ``member`` off schedule ``name``."""
        due, payload = self.schedule_keys(name)
        with _available():
            pipe = self.client.pipeline(transaction=True)
            pipe.zrem(due, member)
            pipe.hdel(payload, member)
            pipe.execute()

    # circuit breakers

    def breaker_open_until(self, provider: str) -> int:
        """Until when (unix ms) the gateway's breaker is open; 0 when it is closed."""
        with _available():
            raw = self.client.hget(self.breaker_key(provider), "open_until")
        return int(raw) if raw else 0

    def breaker_failure(self, provider: str, now_ms: int, threshold: int, cooldown_ms: int) -> int:
        """Count a failure; returns until when the breaker is now open (0: still closed)."""
        with _available():
            until = self._scripts["breaker_failure"](keys=[self.breaker_key(provider)],
                                                     args=[now_ms, threshold, cooldown_ms])
        return int(until)

    def breaker_success(self, provider: str) -> None:
        """A success closes the breaker and clears the failure streak."""
        with _available():
            self.client.delete(self.breaker_key(provider))

    # idempotency

    def claim_idempotency(self, key: str, claim: dict[str, Any], lease_ms: int) -> dict[str, Any] | None:
        """Claim ``key`` (``None``) or return what is stored under it: a claim or a finished response."""
        with _available():
            stored = self._scripts["idempotency"](keys=[self.idempotency_key(key)],
                                                  args=[json.dumps(claim), lease_ms])
        return json.loads(stored) if stored else None

    def finish_idempotency(self, key: str, result: dict[str, Any], ttl_ms: int) -> None:
        """Store the response for ``key``; later requests with it replay this."""
        with _available():
            self.client.set(self.idempotency_key(key), json.dumps(result), px=ttl_ms)

    def release_idempotency(self, key: str) -> None:
        """Drop the claim on ``key`` after a failed request, so the client may retry it."""
        with _available():
            self.client.delete(self.idempotency_key(key))


def _lua(name: str) -> str:
    return resources.files("verify").joinpath("lua", f"{name}.lua").read_text(encoding="utf-8")

