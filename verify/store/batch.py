"""The batch engine: every command goes through a batch, the commands of one step of a request, sent in one round
trip (a pipeline), each answering through an :class:`Op` once the batch has run. ``store.run(Batch.get, id)`` is a
batch of one. Commands whose reply nobody waits for (statistics, the sandbox gateway's copies of its messages) are
deferred (:meth:`~verify.store.Store.defer`): they ride along with the next batch and cost no round trip of their own.

The commands themselves are methods of the subject modules' parts of :class:`~verify.store.Batch`
(``verifications``, ``quotas``, ...), each queuing one command through :meth:`BatchEngine._command` or
:meth:`BatchEngine._script`.

Driver errors become :class:`~verify.errors.StoreUnavailable` (503); redis-py reconnects by itself. A Redis
that timed out is not asked again for :data:`FAIL_FAST_S`, so a request (and the requests behind it) fails within
about one timeout rather than one per round trip.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Generic, TypeVar, cast

import redis
from redis.client import Pipeline
from redis.cluster import ClusterPipeline, RedisCluster
from redis.commands.core import Script
from redis.exceptions import NoScriptError

from verify.errors import ReplicasUnconfirmed, StoreUnavailable
from verify.store.scripts import A, Lua

if TYPE_CHECKING:
    from verify.store import Batch, Store

FAIL_FAST_S = 1.0
WAIT_REPLICAS_MS = 1000
READS = frozenset({"GET", "HGETALL", "HMGET", "LRANGE", "ZRANGE", "EXISTS"})  # commands that change nothing

T = TypeVar("T")


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


def ignore(_: Any) -> None:
    """A reply nobody reads."""
    return None


class BatchEngine:
    """Queues commands and sends them in one round trip; the subjects' commands are parts of
    :class:`~verify.store.Batch` built on it."""

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
            queue(cast("Batch", self))  # every engine is a Batch
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
        """The replies, errors included: on one server through the store's lean road (:mod:`verify.store.wire`),
        or, behind Sentinel, redis-py's pipeline (a single command skips its bookkeeping).

        On a cluster each command names its node, found from its first key in the client's slot table: left to
        itself, redis-py 8's cluster pipeline asks the default node for the keys of every ``EVALSHA`` (``COMMAND
        GETKEYS``), a round trip per script and a dependency on a node the batch may not touch. A ``MOVED`` reply
        is still followed (redis-py sends that command again by its key).
        """
        store = self._store
        if store.wire is not None:
            return store.wire.send(commands)
        client = store.client
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

    def _script(self, decode: Callable[[Any], T], lua: Lua[A], keys: list[str], args: A, *rest: Any) -> Op[T]:
        """Queue ``lua`` with its KEYS, its record of arguments, and what follows the record (quota items, ...)."""
        op = Op(decode)
        script = lua.script
        self._ops.append((op, script, ("EVALSHA", script.sha, len(keys), *keys, *args, *rest)))
        return op
