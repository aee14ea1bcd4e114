"""Quotas and statistics: sliding-window quotas taken and given back atomically (``lua/take.lua``, ``lua/give.lua``,
with ``lua/_quota.lua``; a phone's are taken inside its verification's transitions), and the SMS-pumping guard's
per-country statistics (``lua/pump.lua``). Which quotas a request takes is :mod:`verify.quotas`'s.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from verify.quotas import Limit, Quota, Refusal
from verify.store.batch import BatchEngine, Joined, Op, ignore
from verify.store.keys import SHARDS, shard_of
from verify.store.scripts import GiveArgs, PumpArgs, TakeArgs

PUMP_WARN_EVERY_MS = 300_000

PumpCount = Literal["started", "approved"]


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


def quota_items(limit: Limit | None, *, counter: bool = False) -> list[str | int]:
    """A limit's windows as ``_quota.lua`` reads them: a count, then field, amount, window (ms) for each."""
    windows = limit.windows if limit else ()
    out: list[str | int] = [len(windows)]
    for w in windows:
        out += [("n" if counter else "") + str(w.seconds), w.amount, w.seconds * 1000]
    return out


def quota_ttl(*limits: Limit | None) -> int:
    """A quota key lives twice its longest window past its last write: the previous window still counts."""
    return 2000 * max((w.seconds for limit in limits if limit for w in limit.windows), default=1)


def as_refusal(limit: Limit | None, field: str, wait_ms: int) -> Refusal:
    assert limit is not None  # noqa: S101 - only a limit refuses
    window = next(w for w in limit.windows if str(w.seconds) == field)
    return Refusal(limit, window, max(1, -(-int(wait_ms) // 1000)))


class QuotaCommands(BatchEngine):
    """The quotas' and statistics' commands, a part of :class:`~verify.store.Batch`."""

    def take(self, quota: Quota, now_ms: int) -> Op[Taken]:
        """Take one from ``quota`` (all its windows or none) and count its counter; see ``lua/take.lua``."""
        limit, counter = quota.limit, quota.counter

        def decode(reply: list[Any]) -> Taken:
            if reply[0] == 1:
                return Taken(quota, None, over=bool(counter and reply[1]))
            return Taken(quota, as_refusal(limit, reply[1], reply[2]))

        return self._script(
            decode,
            self._store.scripts.take,
            [self._store.quota_key(quota)],
            TakeArgs(now_ms, quota_ttl(limit, counter)),
            *quota_items(limit),
            *quota_items(counter, counter=True),
        )

    def give(self, quota: Quota, taken_at: int) -> Op[None]:
        """Give back what :meth:`take` took at ``taken_at``; see ``lua/give.lua``."""
        items = quota_items(quota.limit)[1:] + quota_items(quota.counter, counter=True)[1:]
        return self._script(
            ignore,
            self._store.scripts.give,
            [self._store.quota_key(quota)],
            GiveArgs(taken_at),
            len(items) // 3,
            *items,
        )

    def pump_count(self, country: str, verification_id: str, what: PumpCount, now_ms: int) -> Op[None]:
        """Count an SMS verification started or approved in ``country``, in its shard; see ``lua/pump.lua``."""
        key = self._store.pump_key(country, shard_of(verification_id))
        return self._script(ignore, self._store.scripts.pump, [key], PumpArgs(what, now_ms))

    def pump_read(self, country: str, now_ms: int, threshold: float, min_starts: int) -> Op[Pumping]:
        """Whether SMS pumping is suspected in ``country``: more than ``threshold`` of at least ``min_starts`` SMS
        verifications started in the last hour were not approved. ``warn`` unless it was logged lately."""
        store = self._store
        shards = [
            self._script(
                lambda r: (int(r[0]), int(r[1])),
                store.scripts.pump,
                [store.pump_key(country, shard)],
                PumpArgs("read", now_ms),
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
