"""What the gateways send and say: a message id's verification, webhook nonces already seen, and the sandbox gateway's
outbox (its recent messages to a phone).

A message id's verification is kept for ``memory_ms`` at least (late delivery reports), in hashes rather than a key
per message (``lua/remember_message.lua``): time is cut in windows of ``memory_ms / MESSAGE_WINDOWS``, and the ids sent
in one window go to its buckets (:data:`~verify.store.keys.MESSAGE_BUCKETS`, by a hash of the id), which expire
together, :data:`MESSAGE_WINDOWS` windows after their own ends. So an id is remembered for ``memory_ms`` to
``memory_ms`` and a window, and a lookup reads the buckets of its id in the last ``MESSAGE_WINDOWS + 1`` windows.
"""

from __future__ import annotations

import json

from verify.store.batch import BatchEngine, Joined, Op, ignore
from verify.store.scripts import RememberMessageArgs

OUTBOX_LENGTH = 20
OUTBOX_TTL_MS = 24 * 3600 * 1000
MESSAGE_WINDOWS = 2


class MessageCommands(BatchEngine):
    """The messages' commands, a part of :class:`~verify.store.Batch`."""

    def remember_message(
        self, provider: str, message_id: str, verification_id: str, memory_ms: int, now_ms: int
    ) -> Op[None]:
        """Map a gateway's message id to our verification, for at least ``memory_ms`` (as long as reports may come);
        see ``lua/remember_message.lua``."""
        window_ms = memory_ms // MESSAGE_WINDOWS
        window = now_ms // window_ms
        return self._script(
            ignore,
            self._store.scripts.remember_message,
            [self._store.message_bucket_key(provider, message_id, window)],
            RememberMessageArgs(message_id, verification_id, (window + 1 + MESSAGE_WINDOWS) * window_ms - now_ms),
        )

    def message_verification(self, provider: str, message_id: str, memory_ms: int, now_ms: int) -> Op[str | None]:
        """Our verification id for a gateway's message id, remembered within ``memory_ms`` (what
        :meth:`remember_message` was given) of ``now_ms``."""
        window_ms = memory_ms // MESSAGE_WINDOWS
        window = now_ms // window_ms
        parts: list[Op[str | None]] = [
            self._command(lambda v: v, "HGET", self._store.message_bucket_key(provider, message_id, w), message_id)
            for w in range(window, window - MESSAGE_WINDOWS - 1, -1)
        ]
        # What the previous version wrote, a key per message: read until the last of them expires, two days after
        # the upgrade; then this goes, with Keys.legacy_message_key.
        parts.append(self._command(lambda v: v, "GET", self._store.legacy_message_key(provider, message_id)))
        return Joined(parts, lambda found: next((v for v in found if v), None))

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
