"""The Lua scripts (``lua/<name>.lua``): their sources, with the libraries they include, loaded once per store, and
the arguments each takes.

A script's first line may include libraries (``-- include: _args _quota``): their text goes in front of its own,
since Redis runs one self-contained source per script. Every script runs on Redis 6.2 and later, in one Redis
Cluster slot (its keys share a hash tag).

A script's ARGV is one record per call, declared three times in the same order: the fields of its record here
(``StartArgs`` for ``start.lua``), its header's ``ARGV, by name`` list, and its ``args({...})`` call, which reads them
by name (``lua/_args.lua``); tests/store/test_scripts.py holds the three together. Adding an argument shifts no
index. Arguments of variable length (quota items, candidate hashes, fields to store) follow the record, read from
``rest``. Its KEYS stay positional, each documented in its header as ``KEYS[n]``.
"""

from __future__ import annotations

import re
from importlib import resources
from typing import Any, Generic, NamedTuple, TypeVar

import redis
from redis.cluster import RedisCluster
from redis.commands.core import Script

INCLUDE = re.compile(r"^-- include: (.+)$", re.MULTILINE)

#: A script's record of arguments.
A = TypeVar("A", bound=tuple[Any, ...])


class StartArgs(NamedTuple):
    """``lua/start.lua``'s ARGV; then quota items."""

    prefix: str
    id: str
    now: int
    lease: int
    phone: str
    channel: str
    locale: str
    cooldown: int
    max_sends: int
    nonce: str
    quota_ttl: int
    country: str
    owner: str
    app_hash: str
    otp_host: str
    cs: str
    remember: int
    chain: str
    ip: str
    amount: str
    currency: str
    payee: str


class BeginSendArgs(NamedTuple):
    """``lua/begin_send.lua``'s ARGV; then quota items."""

    now: int
    cooldown: int
    max_sends: int
    lease: int
    nonce: str
    quota_prefix: str
    quota_ttl: int
    caller: str
    step: str


class EndSendArgs(NamedTuple):
    """``lua/end_send.lua``'s ARGV; then the quota items taken."""

    nonce: str
    result: str
    now: int
    ttl: int
    quota_prefix: str
    taken_at: int
    grace: int
    hint: str


class CompleteArgs(NamedTuple):
    """``lua/complete.lua``'s ARGV; then the gate's items, the wrong-code quota's items, the candidates."""

    via: str
    max_attempts: int
    now: int
    keep: int
    quota_prefix: str
    quota_ttl: int
    event_id: str
    grace: int
    caller: str
    submitted: int
    gate_ttl: int
    hint: str


class CancelArgs(NamedTuple):
    """``lua/cancel.lua``'s ARGV."""

    grace: int


class FindArgs(NamedTuple):
    """``lua/find.lua``'s ARGV."""

    prefix: str


class PhoneVerificationsArgs(NamedTuple):
    """``lua/phone_verifications.lua``'s ARGV."""

    prefix: str
    since: int


class SetDeliveryArgs(NamedTuple):
    """``lua/set_delivery.lua``'s ARGV."""

    provider: str
    message_id: str
    status: str
    raw_status: str
    event_id: str
    grace: int
    now: int
    hint: str


class TakeArgs(NamedTuple):
    """``lua/take.lua``'s ARGV; then the limit's items, then the counters' items."""

    now: int
    ttl: int


class GiveArgs(NamedTuple):
    """``lua/give.lua``'s ARGV; then the items taken, limit and counters alike."""

    taken_at: int


class PumpArgs(NamedTuple):
    """``lua/pump.lua``'s ARGV."""

    what: str
    now: int


class BreakerFailureArgs(NamedTuple):
    """``lua/breaker_failure.lua``'s ARGV."""

    now: int
    threshold: int
    cooldown: int


class RememberMessageArgs(NamedTuple):
    """``lua/remember_message.lua``'s ARGV."""

    message_id: str
    id: str
    ttl: int


class IdempotencyArgs(NamedTuple):
    """``lua/idempotency.lua``'s ARGV."""

    claim: str
    lease: int


class ClaimDueArgs(NamedTuple):
    """``lua/claim_due.lua``'s ARGV."""

    now: int
    lease: int
    limit: int


class EnqueueArgs(NamedTuple):
    """``lua/enqueue.lua``'s ARGV."""

    event_id: str
    due: int
    envelope: str


class DeliveredArgs(NamedTuple):
    """``lua/delivered.lua``'s ARGV."""

    event_id: str
    now: int
    remember: int


class HintArgs(NamedTuple):
    """``lua/hint.lua``'s ARGV."""

    tag: str


class UnhintArgs(NamedTuple):
    """``lua/unhint.lua``'s ARGV."""

    tag: str
    seen: int


class Lua(Generic[A]):
    """One script as a store runs it: its name, its record of arguments (``args``) and its registered source."""

    __slots__ = ("args", "name", "script")

    def __init__(self, client: redis.Redis | RedisCluster, name: str, args: type[A]) -> None:
        self.name = name
        self.args = args
        self.script: Script = client.register_script(source(name))


class Scripts:
    """The Lua scripts, loaded once per store (``lua/<name>.lua``, with the libraries they include)."""

    def __init__(self, client: redis.Redis | RedisCluster) -> None:
        self._client = client
        self.start = Lua(client, "start", StartArgs)
        self.begin_send = Lua(client, "begin_send", BeginSendArgs)
        self.end_send = Lua(client, "end_send", EndSendArgs)
        self.complete = Lua(client, "complete", CompleteArgs)
        self.cancel = Lua(client, "cancel", CancelArgs)
        self.find = Lua(client, "find", FindArgs)
        self.phone_verifications = Lua(client, "phone_verifications", PhoneVerificationsArgs)
        self.set_delivery = Lua(client, "set_delivery", SetDeliveryArgs)
        self.take = Lua(client, "take", TakeArgs)
        self.give = Lua(client, "give", GiveArgs)
        self.pump = Lua(client, "pump", PumpArgs)
        self.breaker_failure = Lua(client, "breaker_failure", BreakerFailureArgs)
        self.idempotency = Lua(client, "idempotency", IdempotencyArgs)
        self.remember_message = Lua(client, "remember_message", RememberMessageArgs)
        self.claim_due = Lua(client, "claim_due", ClaimDueArgs)
        self.enqueue = Lua(client, "enqueue", EnqueueArgs)
        self.delivered = Lua(client, "delivered", DeliveredArgs)
        self.hint = Lua(client, "hint", HintArgs)
        self.unhint = Lua(client, "unhint", UnhintArgs)

    def all(self) -> list[Lua[Any]]:
        """Every script."""
        return [lua for lua in vars(self).values() if isinstance(lua, Lua)]

    def load(self) -> None:
        """Load every script into Redis: in one round trip, or into every primary of a cluster."""
        scripts = [lua.script for lua in self.all()]
        if isinstance(self._client, RedisCluster):
            for script in scripts:
                self._client.script_load(script.script)  # SCRIPT LOAD goes to every primary
            return
        pipe = self._client.pipeline(transaction=False)
        for script in scripts:
            pipe.script_load(script.script)
        pipe.execute()


def source(name: str) -> str:
    """A script's source, with the libraries (``_<name>.lua``) its first line includes put in front."""
    text = resources.files("verify.store").joinpath("lua", f"{name}.lua").read_text(encoding="utf-8")
    include = INCLUDE.match(text)
    libraries = [source(lib) for lib in include.group(1).split()] if include else []
    return "\n".join([*libraries, text])
