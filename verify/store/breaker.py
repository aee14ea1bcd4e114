"""The gateways' circuit breakers, shared by every worker (``lua/breaker_failure.lua``)."""

from __future__ import annotations

from dataclasses import dataclass

from verify.store.batch import BatchEngine, Op, ignore
from verify.store.scripts import BreakerFailureArgs


@dataclass(frozen=True)
class Breaker:
    """A gateway's circuit breaker: its failure streak, and until when (unix ms) it is open."""

    failures: int = 0
    open_until: int = 0


class BreakerCommands(BatchEngine):
    """The breakers' commands, a part of :class:`~verify.store.Batch`."""

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
            BreakerFailureArgs(now_ms, threshold, cooldown_ms),
        )

    def breaker_reset(self, provider: str) -> Op[None]:
        """A success after failures closes the breaker and clears the streak."""
        return self._command(ignore, "DEL", self._store.breaker_key(provider))
