"""Redis state: every key, every TTL, and every atomic transition (one Lua script each, in ``lua/``). Only here is
Redis.

The store is made of parts, one module each: :mod:`~verify.store.connection` (the URL, the clients, topology) with
:mod:`~verify.store.replicas` (writes confirmed behind Sentinel), :mod:`~verify.store.keys` (every key),
:mod:`~verify.store.scripts` (the Lua scripts and their arguments) and :mod:`~verify.store.batch` (the engine that
sends a step's commands in one round trip). The commands are grouped by what they are about:
:mod:`~verify.store.verifications`, :mod:`~verify.store.quotas`, :mod:`~verify.store.captcha`,
:mod:`~verify.store.breaker`, :mod:`~verify.store.messages`, :mod:`~verify.store.journal` and
:mod:`~verify.store.idempotency`; :class:`Batch` has them all. The rest of the package imports from here.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Concatenate, ParamSpec, TypeVar

from verify.store.batch import FAIL_FAST_S, BatchEngine, Joined, Op
from verify.store.breaker import Breaker, BreakerCommands
from verify.store.captcha import CaptchaCommands
from verify.store.connection import MAX_CONNECTIONS, SOCKET_TIMEOUT_S, Client, Connection, Health
from verify.store.idempotency import IdempotencyCommands
from verify.store.journal import JournalCommands
from verify.store.keys import ID_RE, SHARDS, TAG_LENGTH, Keys, new_id, shard_of, tag_for
from verify.store.messages import MessageCommands
from verify.store.quotas import PumpCount, Pumping, QuotaCommands, Taken
from verify.store.replicas import Mode
from verify.store.verifications import (
    BeginOutcome,
    CancelOutcome,
    CompleteOutcome,
    DeliveryOutcome,
    EndOutcome,
    Outcome,
    Record,
    SendCommit,
    Source,
    StartOutcome,
    VerificationCommands,
)

__all__ = [
    "FAIL_FAST_S",
    "ID_RE",
    "MAX_CONNECTIONS",
    "SHARDS",
    "SOCKET_TIMEOUT_S",
    "TAG_LENGTH",
    "Batch",
    "BeginOutcome",
    "Breaker",
    "CancelOutcome",
    "Client",
    "CompleteOutcome",
    "DeliveryOutcome",
    "EndOutcome",
    "Health",
    "Joined",
    "Mode",
    "Op",
    "Outcome",
    "PumpCount",
    "Pumping",
    "Record",
    "SendCommit",
    "Source",
    "StartOutcome",
    "Store",
    "Taken",
    "new_id",
    "shard_of",
    "tag_for",
]

T = TypeVar("T")
P = ParamSpec("P")


class Batch(
    VerificationCommands,
    QuotaCommands,
    CaptchaCommands,
    BreakerCommands,
    MessageCommands,
    JournalCommands,
    IdempotencyCommands,
    BatchEngine,
):
    """Commands of one step, sent in one round trip. Each method queues one command and returns its :class:`Op`."""


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
