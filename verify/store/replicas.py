"""Behind Sentinel: how a store's writes are confirmed (the part of :class:`~verify.store.Store` that knows the
master's replicas and asks the sentinels).

Behind Sentinel a batch that writes ends with ``WAIT``, in the same round trip: the write is acknowledged once a
replica has it, so a promotion loses nothing acknowledged. When the master has fewer replicas online than a write
waits for (its ``ROLE``, re-read along with a write batch at most every :data:`REPLICAS_EVERY_S`), as after a failover
that left the new master without a replica, a write goes on unconfirmed (degraded: logged once per change of
state, said on ``/readyz`` and in the metrics) instead of failing until one is back, as with Redis's own
``min-replicas-to-write 0``, but only
if the sentinels confirm that no replica of this master can take over from it: a majority of them name it, none is
failing it over, and every replica they know of it is down (or, when every sentinel answers, an old master waiting
to be made a replica). A master whose replica is being promoted (``SENTINEL FAILOVER``, a partition) also sees none
online, and what it acknowledged would be lost. ``VERIFY_REDIS_MIN_REPLICAS`` refuses unconfirmed writes instead.
"""

from __future__ import annotations

import logging
import time
from typing import Any, Literal

import redis
from redis.cluster import RedisCluster
from redis.sentinel import Sentinel

from verify.config import REDIS_MIN_REPLICAS
from verify.errors import StoreUnavailable

#: How old the store's count of the master's online replicas may get: a write batch re-reads it (``ROLE``) when older.
REPLICAS_EVERY_S = 2.0
#: How the store's writes are confirmed behind Sentinel: by as many replicas as they wait for; ``degraded``, they go on
#: without (the master has fewer replicas online, and the sentinels find none that could take over); ``refusing``,
#: they get 503 (fewer than ``VERIFY_REDIS_MIN_REPLICAS``, or the sentinels do not confirm that none could).
Mode = Literal["confirmed", "degraded", "refusing"]

log = logging.getLogger("verify.store")


def _flags(state: dict[str, Any]) -> set[str]:
    """A sentinel's flags of an instance (``master,disconnected``): a string, or a set under RESP3."""
    flags = state.get("flags", "")
    return set(flags.split(",")) if isinstance(flags, str) else set(flags)


class Replicas:
    """What a store knows of the master's replicas, and the sentinels' view of them (set by the connection)."""

    client: redis.Redis | RedisCluster
    wait_replicas: int
    min_replicas: int
    _sentinel: Sentinel | None
    _service: str
    replicas: int | None
    replicas_every: float
    _replicas_at: float
    _replicas_stale: bool
    _role_refused: bool
    _view: tuple[Any, bool]
    _view_at: float
    mode: Mode

    def replicas_now(self) -> int | None:
        """How many replicas the master has online now (``ROLE``, a round trip); ``None`` when the Redis user may not
        run ROLE or the server is not a master (being demoted). Redis down is :class:`StoreUnavailable`."""
        asked_at = time.monotonic()
        try:
            reply = self.client.execute_command("ROLE")  # type: ignore[no-untyped-call]
        except redis.ResponseError as err:
            reply = err
        except redis.RedisError as err:
            raise StoreUnavailable(f"Redis failed: {type(err).__name__}") from err
        return self._learn(reply, asked_at)

    def _master(self) -> Any:
        """The address of the master this store's connections go to, as redis-py last found it (Sentinel)."""
        return getattr(getattr(self.client, "connection_pool", None), "master_address", None)

    def _ask_replicas(self) -> bool:
        """Whether the next write should ask the master's ROLE."""
        if self._role_refused:
            return False
        return self._replicas_stale or time.monotonic() - self._replicas_at >= self.replicas_every

    def _forget_replicas(self) -> None:
        """Re-read the replicas with the next write: the master may have changed, or lost its replica. (An answer
        on its way, to a question asked since the count's, is news all the same: under load there is always one.)"""
        self._replicas_stale = True

    def _learn(self, reply: Any, asked_at: float) -> int | None:
        """Take in a ``ROLE`` reply (``["master", offset, [[host, port, offset], ...]]``, online replicas only) to a
        question asked at ``asked_at``, unless a later question was answered first (a reply waits for the WAIT of its
        batch, up to a second)."""
        if isinstance(reply, redis.ResponseError):  # NOPERM: keep waiting for wait_replicas, as before
            if not self._role_refused:
                log.warning(
                    "Redis refuses ROLE to this user (%s): the store cannot see the master's replicas, so every write "
                    "needs %d replica(s) to confirm it, even after a failover that left none; allow ROLE to the user",
                    reply,
                    self.wait_replicas,
                )
            self._role_refused = True
            return None
        if not (isinstance(reply, list) and reply and reply[0] == "master"):
            return None
        replicas = len(reply[2])
        if asked_at >= self._replicas_at:
            self.replicas = replicas
            self._replicas_at, self._replicas_stale = asked_at, False
        return replicas

    def _unconfirmed_allowed(self, master: Any, since: float) -> bool:
        """Whether a write to ``master`` (an address) may go on with fewer replicas confirming it than it waits for:
        never with ``VERIFY_REDIS_MIN_REPLICAS``; otherwise as the sentinels say (:meth:`_ask_sentinels`), asked again
        unless their answer was asked at ``since`` or later."""
        if self._sentinel is None or self.min_replicas or master is None:
            return False
        if self._view_at < since:
            asked_at = time.monotonic()
            self._view = self._ask_sentinels()
            self._view_at = max(self._view_at, asked_at)
        named, allowed = self._view
        return allowed and named == master

    def _ask_sentinels(self) -> tuple[Any, bool]:
        """The master a majority of the sentinels name, and whether no replica of it can take over from it: none of
        them is failing it over or finds it down, and every replica they know of it is down in every answering
        sentinel's eyes (then it cannot be promoted), or, when every sentinel answered, reports itself a master that
        no sentinel promoted (an old master back, that they will make a replica). A master whose replica is being
        promoted sees it drop too, and its writes would be lost: the failover leader's flags tell, when it answers.

        Each answering sentinel costs a round trip (``SENTINEL MASTER`` and ``REPLICAS``), off the requests' usual
        path: only while the master has fewer replicas online than a write waits for, at most every
        :data:`REPLICAS_EVERY_S` and once for each write that its replica did not confirm.
        """
        assert self._sentinel is not None  # noqa: S101 - only a Sentinel store asks
        sentinels = list(self._sentinel.sentinels)
        views: list[tuple[dict[str, Any], list[dict[str, Any]]]] = []
        for client in sentinels:
            try:
                pipe = client.pipeline(transaction=False)
                pipe.sentinel_master(self._service)
                pipe.sentinel_slaves(self._service)
                master, replicas = pipe.execute()
            except redis.RedisError:
                continue
            views.append((master, replicas))
        named = {(master["ip"], master["port"]) for master, _ in views}
        if len(views) <= len(sentinels) // 2 or len(named) != 1:
            return None, False
        address = named.pop()
        if self._master() not in (None, address):
            try:  # the sentinels moved on: so do redis-py's connections (it asks them only when it opens one)
                self.client.connection_pool.get_master_address()  # type: ignore[union-attr]
            except redis.RedisError:
                pass
        every = len(views) == len(sentinels)
        allowed = True
        for master, replicas in views:
            if master["is_sdown"] or master["is_odown"] or "failover_in_progress" in _flags(master):
                allowed = False
            for replica in replicas:
                flags = _flags(replica)
                down = bool({"s_down", "o_down", "disconnected"} & flags)
                old_master = every and replica.get("role-reported") == "master" and "promoted" not in flags
                if "promoted" in flags or not (down or old_master):
                    allowed = False
        return address, allowed

    def _note(self) -> Mode:
        """The store's :data:`Mode` now; logged when it changes (once per process and change, not per request)."""
        mode: Mode = "confirmed"
        replicas = self.replicas
        if replicas is not None and replicas < self.wait_replicas:
            named, allowed = self._view
            unconfirmed = not self.min_replicas and allowed and named == self._master()
            mode = "degraded" if unconfirmed else "refusing"
        before, self.mode = self.mode, mode
        if mode == before:
            return mode
        if mode == "degraded":
            log.warning(
                "Redis: the master has %d replica(s) online, fewer than a write waits for (%d), and the sentinels find "
                "none that could take over: writes go on unconfirmed (degraded), and a crash of the master now would "
                "lose them; %s=1 refuses them instead",
                replicas,
                self.wait_replicas,
                REDIS_MIN_REPLICAS,
            )
        elif mode == "refusing":
            why = (
                f"fewer than {REDIS_MIN_REPLICAS}={self.min_replicas}"
                if self.min_replicas
                else f"fewer than a write waits for ({self.wait_replicas}), and the sentinels do not confirm that none "
                "could take over (a failover may be under way)"
            )
            log.error("Redis: the master has %d replica(s) online, %s: writes are refused (503)", replicas, why)
        else:
            log.warning("Redis: the master has %d replica(s) online again: writes are confirmed by a replica", replicas)
        return mode
