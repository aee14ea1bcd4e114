"""Events for the customer's backend: ``verification.approved``, ``verification.failed``, ``verification.expired``.

No event is lost between two Redis calls. The transition an event follows writes it in the same script: an
approval (``lua/complete.lua``) or a failure report (``lua/set_delivery.lua``) puts the event, with the
verification as it then is, in its slot's **journal**, and a send (``lua/end_send.lua``) puts a **watch** for its
expiry there. In the same round trip, before the script, the request gives a **hint** (a counter per hash tag in
one sorted set) that the slot's journal may hold entries. The sweep, in every worker, moves journal entries to the
**outbox** (events) and the **expiry** schedule, then forgets the hint unless another came meanwhile. Moving is
safe to repeat: an event already queued or delivered (delivered ids are remembered for a day) is not queued
again, so each event goes out once per its stable id. The transitions also keep a copy of the verification as it
finally was (``<record>:final``, an hour longer than the record), so an expiry event carries that, not the
verification as it was at its last send.

Each event waits in the outbox until ``VERIFY_EVENTS_URL`` answers 2xx, so it survives a restart and reaches the
receiver at least once; a failed attempt is retried with exponential backoff (the first retry within 10 s) for up
to 24 h. Every POST is signed: ``Verify-Signature: t=<unix>,v1=<hex HMAC-SHA256 of "<t>.<body>">``, with the first
of ``VERIFY_EVENTS_SECRET``.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import secrets
import threading
import weakref
from collections.abc import Callable
from typing import Any

import requests

from verify.clock import Clock, rfc3339
from verify.config import Settings
from verify.errors import StoreUnavailable
from verify.store import SHARDS, Batch, Record, Store

log = logging.getLogger(__name__)

# verification.approved and verification.failed are journaled by the scripts (lua/complete.lua, set_delivery.lua).
EXPIRED = "verification.expired"
OUTBOX, EXPIRY = "events", "expiry"
FIRST_RETRY_S = 5
MAX_RETRY_DELAY_S = 3600
GIVE_UP_AFTER_S = 24 * 3600
LEASE_MS = 60_000
BATCH = 50
FINAL_GRACE_MS = 3600 * 1000  # how long the copy of a verification as it finally was outlives it
REMEMBER_DELIVERED_MS = 2 * GIVE_UP_AFTER_S * 1000
UNFINISHED = ("pending", "max_attempts_reached")  # the statuses whose end is an expiry

Render = Callable[[Record], dict[str, Any]]


def signature(secret: str, timestamp: int, body: bytes) -> str:
    """The ``Verify-Signature`` header value for ``body`` sent at ``timestamp``."""
    mac = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={mac}"


def retry_delay(attempts: int) -> int:
    """Seconds before the next try after ``attempts`` failed ones: 5, 10, 20, ... at most an hour."""
    return int(min(FIRST_RETRY_S * 2 ** (attempts - 1), MAX_RETRY_DELAY_S))


class Events:
    """Journals, moves, delivers and sweeps events. Inert when ``VERIFY_EVENTS_URL`` is unset.

    ``render`` turns a stored verification into its wire form (what the API returns for it).
    """

    def __init__(self, settings: Settings, store: Store, clock: Clock, render: Render) -> None:
        self.url = settings.events_url
        self._secret = settings.events_secrets[0] if settings.events_secrets else ""  # the newest signs
        self._store = store
        self._clock = clock
        self._render = render
        self._timeout = (settings.http_connect_timeout, settings.http_read_timeout)
        self._session = requests.Session()
        weakref.finalize(self, self._session.close)

    @property
    def enabled(self) -> bool:
        """Whether a receiver is configured."""
        return self.url is not None

    @property
    def grace_ms(self) -> int:
        """How long a verification's final copy outlives it (0: events are off, no copy is kept)."""
        return FINAL_GRACE_MS if self.enabled else 0

    def new_id(self) -> str:
        """A stable id for an event a transition may journal ("" when events are off: nothing is journaled)."""
        return "evt_" + secrets.token_hex(12) if self.enabled else ""

    def hint(self, batch: Batch, verification_id: str) -> None:
        """Queue, ahead of a transition that may journal something, the hint that leads the sweep to it."""
        if self.enabled:
            batch.hint_journal(verification_id)

    def sweep(self) -> int:
        """Move journaled entries, then turn due watches into ``verification.expired``; returns how many events
        were queued."""
        return self.collect() + self.expire()

    def collect(self) -> int:
        """Move every hinted journal's entries to the outbox and the expiry schedule; returns the events queued.

        Shard by shard and journal by journal: one that cannot be reached (its cluster node is down) waits for a
        later sweep, and the others move on.
        """
        queued = unreachable = 0
        for shard in range(SHARDS):
            try:
                hinted = self._store.run(Batch.journal_hints, shard, BATCH)
            except StoreUnavailable:
                unreachable += 1
                continue
            for tag, count in hinted:
                try:
                    queued += self._move(tag, count)
                except StoreUnavailable:
                    unreachable += 1
        if unreachable:
            log.warning("events: %d journal shards or journals could not be reached; they wait for a later sweep",
                        unreachable)
        return queued

    def _move(self, tag: str, count: int) -> int:
        """Move one journal's entries (repeatable: what was queued or delivered before is not queued again)."""
        entries = self._store.run(Batch.journal, tag)
        batch = self._store.batch()
        moves = []
        for entry_id, raw in entries.items():
            entry = json.loads(raw)
            record = Record.from_flat(entry["record"])
            if record is None:
                continue
            if entry["kind"] == "event":
                moves.append(self._enqueue(batch, entry_id, entry["type"], entry["at"] / 1000, record))
            else:
                batch.schedule(EXPIRY, record.id, int(entry["due"]), json.dumps(entry["record"]))
        batch.run()
        done = self._store.batch()
        done.forget_journal(tag, list(entries))
        done.unhint_journal(tag, count)
        done.run()
        return sum(1 for op in moves if op.value)

    def expire(self) -> int:
        """Turn due watches whose verification ended unapproved into ``verification.expired``; returns how many."""
        expired = 0
        now_ms = int(self._clock() * 1000)
        for verification_id, data in self._store.run(Batch.claim_due, EXPIRY, now_ms, LEASE_MS, BATCH):
            record = self._store.run(Batch.get, verification_id)
            batch = self._store.batch()
            if record is not None and record.status in UNFINISHED:
                # Not over yet (a resend moved its expiry, or Redis has not dropped it yet): look again then.
                batch.schedule(EXPIRY, verification_id, max(record.expires_at, now_ms + 1000), data)
            else:
                final = record or self._store.run(Batch.final_copy, verification_id) \
                    or Record.from_flat(json.loads(data))
                if final is not None and final.status in UNFINISHED:
                    self._enqueue(batch, f"evt_x{verification_id}", EXPIRED, self._clock(), final)
                    expired += 1
                batch.unschedule(EXPIRY, verification_id)
                batch.drop_final_copy(verification_id)
            batch.run()
        return expired

    def _enqueue(self, batch: Batch, event_id: str, event_type: str, at: float, record: Record) -> Any:
        envelope = {"event": {"id": event_id, "type": event_type, "created_at": rfc3339(at),
                              "data": self._render(record)}, "attempts": 0, "queued_at": self._clock()}
        return batch.enqueue_event(event_id, int(self._clock() * 1000), json.dumps(envelope))

    def deliver(self) -> int:
        """POST every due event once; returns how many the receiver took."""
        delivered = 0
        for event_id, raw in self._store.run(Batch.claim_due, OUTBOX, int(self._clock() * 1000), LEASE_MS, BATCH):
            envelope = json.loads(raw)
            batch = self._store.batch()
            now = self._clock()
            if self._post(envelope["event"]):
                batch.delivered_event(event_id, int(now * 1000), REMEMBER_DELIVERED_MS)
                delivered += 1
            elif now - envelope["queued_at"] > GIVE_UP_AFTER_S:
                log.error("event %s (%s) dropped: not delivered in %d h", event_id, envelope["event"]["type"],
                          GIVE_UP_AFTER_S // 3600)
                batch.delivered_event(event_id, int(now * 1000), REMEMBER_DELIVERED_MS)  # never to come back
            else:
                envelope["attempts"] += 1
                due = now + retry_delay(envelope["attempts"])
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
            for step in (self.collect, self.expire, self.deliver):  # one failing (a cluster node down) stops no other
                try:
                    step()
                except StoreUnavailable as err:
                    log.warning("events: %s paused: %s", step.__name__, err)
            stop.wait(interval)
