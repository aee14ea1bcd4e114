"""Events for the customer's backend: ``verification.approved``, ``verification.failed``, ``verification.expired``.

Each event waits in Redis (an outbox schedule) until ``VERIFY_EVENTS_URL`` answers 2xx, so it survives a
restart and reaches the receiver at least once; a failed attempt is retried with exponential backoff (the first
retry within 10 s) for up to 24 h. The event id never changes between attempts, so receivers can drop
duplicates. Every POST is signed: ``Verify-Signature: t=<unix>,v1=<hex HMAC-SHA256 of "<t>.<body>">``.

Expiry has no Redis callback one can rely on, so pending verifications are also put on an ``expiry``
schedule at their ``expires_at``; a sweep turns those whose record has gone into ``verification.expired``.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import secrets
import threading
import weakref
from typing import Any

import requests

from verify.clock import Clock, rfc3339
from verify.config import Settings
from verify.errors import StoreUnavailable
from verify.store import Batch, Store

log = logging.getLogger(__name__)

APPROVED, FAILED, EXPIRED = "verification.approved", "verification.failed", "verification.expired"
OUTBOX, EXPIRY = "events", "expiry"
FIRST_RETRY_S = 5
MAX_RETRY_DELAY_S = 3600
GIVE_UP_AFTER_S = 24 * 3600
LEASE_MS = 60_000
BATCH = 50


def signature(secret: str, timestamp: int, body: bytes) -> str:
    """The ``Verify-Signature`` header value for ``body`` sent at ``timestamp``."""
    mac = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={mac}"


def retry_delay(attempts: int) -> int:
    """Seconds before the next try after ``attempts`` failed ones: 5, 10, 20, ... at most an hour."""
    return int(min(FIRST_RETRY_S * 2 ** (attempts - 1), MAX_RETRY_DELAY_S))


class Events:
    """Emits, delivers and sweeps events. Inert when ``VERIFY_EVENTS_URL`` is unset."""

    def __init__(self, settings: Settings, store: Store, clock: Clock) -> None:
        self.url = settings.events_url
        self._secret = settings.events_secrets[0] if settings.events_secrets else ""  # the newest signs
        self._store = store
        self._clock = clock
        self._timeout = (settings.http_connect_timeout, settings.http_read_timeout)
        self._session = requests.Session()
        weakref.finalize(self, self._session.close)

    @property
    def enabled(self) -> bool:
        """Whether a receiver is configured."""
        return self.url is not None

    def emit(self, batch: Batch, event_type: str, data: dict[str, Any]) -> str | None:
        """Queue an event about ``data`` (a verification's wire form) on ``batch``; returns its id."""
        if not self.enabled:
            return None
        now = self._clock()
        event_id = "evt_" + secrets.token_hex(12)
        envelope = {"event": {"id": event_id, "type": event_type, "created_at": rfc3339(now), "data": data},
                    "attempts": 0, "queued_at": now}
        batch.schedule(OUTBOX, event_id, int(now * 1000), json.dumps(envelope))
        return event_id

    def watch_expiry(self, batch: Batch, data: dict[str, Any], expires_at: float) -> None:
        """Expect ``data``'s verification to expire at ``expires_at`` unless it is approved or canceled first."""
        if self.enabled:
            batch.schedule(EXPIRY, data["id"], int(expires_at * 1000), json.dumps(data))

    def unwatch_expiry(self, batch: Batch, verification_id: str) -> None:
        """The verification ended (approved, canceled or superseded): it will not expire as pending."""
        if self.enabled:
            batch.unschedule(EXPIRY, verification_id)

    def sweep(self) -> int:
        """Emit ``verification.expired`` for watched verifications whose record has gone; returns how many."""
        expired = 0
        for verification_id, data in self._store.run(Batch.claim_due, EXPIRY, int(self._clock() * 1000), LEASE_MS,
                                                     BATCH):
            record = self._store.run(Batch.get, verification_id)
            batch = self._store.batch()
            if record is None:
                self.emit(batch, EXPIRED, json.loads(data))
                expired += 1
            if record is not None and record.status in ("pending", "max_attempts_reached"):
                # A resend gave it a new lease of life: look again when that runs out.
                batch.schedule(EXPIRY, verification_id, record.expires_at, data)
            else:
                batch.unschedule(EXPIRY, verification_id)
            batch.run()
        return expired

    def deliver(self) -> int:
        """POST every due event once; returns how many the receiver took."""
        delivered = 0
        for event_id, raw in self._store.run(Batch.claim_due, OUTBOX, int(self._clock() * 1000), LEASE_MS, BATCH):
            envelope = json.loads(raw)
            batch = self._store.batch()
            if self._post(envelope["event"]):
                batch.unschedule(OUTBOX, event_id)
                delivered += 1
            elif self._clock() - envelope["queued_at"] > GIVE_UP_AFTER_S:
                log.error("event %s (%s) dropped: not delivered in %d h", event_id, envelope["event"]["type"],
                          GIVE_UP_AFTER_S // 3600)
                batch.unschedule(OUTBOX, event_id)
            else:
                envelope["attempts"] += 1
                due = self._clock() + retry_delay(envelope["attempts"])
                batch.schedule(OUTBOX, event_id, int(due * 1000), json.dumps(envelope))
            batch.run()
        return delivered

    def _post(self, event: dict[str, Any]) -> bool:
        assert self.url is not None  # noqa: S101 - only called when enabled
        body = json.dumps(event, separators=(",", ":")).encode()
        headers = {"Content-Type": "application/json",
                   "Verify-Signature": signature(self._secret, int(self._clock()), body)}
        try:
            response = self._session.post(self.url, data=body, headers=headers, timeout=self._timeout,
                                          allow_redirects=False)
        except requests.RequestException as err:
            log.warning("event %s not delivered: %s", event["id"], type(err).__name__)
            return False
        if not 200 <= response.status_code < 300:
            log.warning("event %s not delivered: HTTP %d", event["id"], response.status_code)
            return False
        return True

    def run(self, stop: threading.Event, interval: float = 1.0) -> None:
        """Sweep and deliver until ``stop`` is set: the loop each worker process runs in the background."""
        while not stop.is_set():
            try:
                self.sweep()
                self.deliver()
            except StoreUnavailable as err:
                log.warning("events paused: %s", err)
            stop.wait(interval)
