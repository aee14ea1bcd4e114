"""What the gateways send and say: a message id's verification, webhook nonces already seen, and the sandbox gateway's
outbox (its recent messages to a phone)."""

from __future__ import annotations

import json

from verify.store.batch import BatchEngine, Op, ignore

OUTBOX_LENGTH = 20
OUTBOX_TTL_MS = 24 * 3600 * 1000


class MessageCommands(BatchEngine):
    """The messages' commands, a part of :class:`~verify.store.Batch`."""

    def remember_message(self, provider: str, message_id: str, verification_id: str, ttl_ms: int) -> Op[None]:
        """Map a gateway's message id to our verification, for as long as reports may come."""
        return self._command(
            ignore, "SET", self._store.message_key(provider, message_id), verification_id, "PX", ttl_ms
        )

    def message_verification(self, provider: str, message_id: str) -> Op[str | None]:
        """Our verification id for a gateway's message id."""
        return self._command(lambda v: v, "GET", self._store.message_key(provider, message_id))

    def outbox_push(self, phone: str, message: dict[str, str]) -> Op[None]:
        """Keep a sandbox message (compact JSON: the phone is the key's), newest first, trimmed to the last few per
        phone."""
        key = self._store.outbox_key(phone)
        self._command(ignore, "LPUSH", key, json.dumps(message, separators=(",", ":")))
        self._command(ignore, "LTRIM", key, 0, OUTBOX_LENGTH - 1)
        return self._command(ignore, "PEXPIRE", key, OUTBOX_TTL_MS)

    def outbox(self, phone: str) -> Op[list[dict[str, str]]]:
        """Sandbox messages to ``phone`` (``to`` is ``phone``), newest first."""
        return self._command(
            lambda raw: [{"to": phone, **json.loads(item)} for item in raw],
            "LRANGE",
            self._store.outbox_key(phone),
            0,
            -1,
        )

    def claim_nonce(self, provider: str, nonce: str, ttl_ms: int) -> Op[bool]:
        """True the first time ``nonce`` is seen within ``ttl_ms``; False for a replay."""
        return self._command(bool, "SET", self._store.nonce_key(provider, nonce), "1", "NX", "PX", ttl_ms)

    def release_nonce(self, provider: str, nonce: str) -> Op[None]:
        """Forget a nonce whose callback could not be applied, so the gateway's retry is not taken for a replay."""
        return self._command(ignore, "DEL", self._store.nonce_key(provider, nonce))
