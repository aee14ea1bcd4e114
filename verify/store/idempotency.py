"""Idempotency-Keys: a request's claim on its key (``lua/idempotency.lua``), then the response it replays."""

from __future__ import annotations

import json
from typing import Any

from verify.store.batch import BatchEngine, Op, ignore
from verify.store.scripts import IdempotencyArgs


class IdempotencyCommands(BatchEngine):
    """The Idempotency-Keys' commands, a part of :class:`~verify.store.Batch`."""

    def claim_idempotency(self, key: str, claim: dict[str, Any], lease_ms: int) -> Op[dict[str, Any] | None]:
        """Claim ``key`` (``None``) or return what is stored under it: a claim or a finished response."""
        return self._script(
            lambda stored: json.loads(stored) if stored else None,
            self._store.scripts.idempotency,
            [self._store.idempotency_key(key)],
            IdempotencyArgs(json.dumps(claim), lease_ms),
        )

    def finish_idempotency(self, key: str, result: dict[str, Any], ttl_ms: int) -> Op[None]:
        """Store the response for ``key``; later requests with it replay this."""
        return self._command(ignore, "SET", self._store.idempotency_key(key), json.dumps(result), "PX", ttl_ms)

    def release_idempotency(self, key: str) -> Op[None]:
        """Drop the claim on ``key`` after a failed request, so the client may retry it."""
        return self._command(ignore, "DEL", self._store.idempotency_key(key))
