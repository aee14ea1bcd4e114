"""Events for the customer's backend: ``verification.approved``, ``verification.failed``, ``verification.expired``.

No event is lost between two Redis calls. The transition an event follows writes it in the same script: an
approval (``lua/complete.lua``) or a failure report (``lua/set_delivery.lua``) puts the event, with the
verification as it then is, in its slot's **journal**, and a send (``lua/end_send.lua``) puts a **watch** for its
expiry there. A **hint** (a number never given before, per hash tag in one sorted set) tells that the slot's journal
may hold entries: on one server the script that writes an entry gives it in the same step; on a cluster, where the
hints live in another slot, the request gives it in the same round trip, before and after the script
(:meth:`Events.hinted` says why twice). The sweep, in every worker, moves journal entries to the **outbox**
(events) and the **expiry** schedule, then forgets the hint unless another came meanwhile (its number changed: a
count could come back to the value a slow sweep read, once another worker forgot the hint and a new one began from
1). Moving is safe to repeat: an event already queued or delivered (delivered ids are remembered for a day) is not
queued again, so each event goes out once per its stable id. The transitions also keep a copy of the verification as it
finally was (``<record>:final``, an hour longer than the record), so an expiry event carries that, not the
verification as it was at its last send.

Expiry watches and final copies are kept whether or not events are on: the sweep is also what counts expired
verifications (``verify_verifications_expired_total``), so every process runs it. Events themselves are journaled,
queued and posted only with ``VERIFY_EVENTS_URL`` set.

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
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import requests

from verify.clock import Clock, rfc3339
from verify.config import Settings
from verify.errors import StoreUnavailable
from verify.metrics import Metrics
from verify.phone import country_of
from verify.store import ID_RE, SHARDS, Batch, Record, Store, shard_of

log = logging.getLogger(__name__)

# verification.approved and verification.failed are journaled by the scripts (lua/complete.lua, set_delivery.lua).
EXPIRED = "verification.expired"
OUTBOX, EXPIRY = "events", "expiry"
FALLBACK = "fallback"  # the schedules of fallback steps, one per shard: fallback_schedule()
FIRST_RETRY_S = 5
MAX_RETRY_DELAY_S = 3600
GIVE_UP_AFTER_S = 24 * 3600
LEASE_MS = 60_000
BATCH = 50
FINAL_GRACE_MS = 3600 * 1000  # how long the copy of a verification as it finally was outlives it
REMEMBER_DELIVERED_MS = 2 * GIVE_UP_AFTER_S * 1000
UNFINISHED = ("pending", "max_attempts_reached")  # the statuses whose end is an expiry

Render = Callable[[Record], dict[str, Any]]


def fallback_schedule(shard: int) -> str:
    """The schedule of the fallback steps of one shard's verifications (:func:`~verify.store.shard_of`, by their
    hash tag): one per shard, so that no key takes every chained verification's steps."""
    return f"{FALLBACK}:{shard}"


def signature(secret: str, timestamp: int, body: bytes) -> str:
    """The ``Verify-Signature`` header value for ``body`` sent at ``timestamp``."""
    mac = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={mac}"


def retry_delay(attempts: int) -> int:
    """Seconds before the next try after ``attempts`` failed ones: 5, 10, 20, ... at most an hour."""
    return int(min(FIRST_RETRY_S * 2 ** (attempts - 1), MAX_RETRY_DELAY_S))


class Events:
    """Journals, moves, delivers and sweeps events; counts expiries. Without ``VERIFY_EVENTS_URL`` it only watches
    expiries, for the metrics.

    ``render`` turns a stored verification into its wire form (what the API returns for it).
    """

    def __init__(self, settings: Settings, store: Store, clock: Clock, render: Render, metrics: Metrics) -> None:
        self.url = settings.events_url
        self._secret = settings.events_secrets[0] if settings.events_secrets else ""  # the newest signs
        self._store = store
        self._clock = clock
        self._render = render
        self._metrics = metrics
        self.backlog = False  # whether the last collect left hints for the next (see collect)
        self._timeout = (settings.http_connect_timeout, settings.http_read_timeout)
        self._session = requests.Session()
        weakref.finalize(self, self._session.close)

    @property
    def enabled(self) -> bool:
        """Whether a receiver is configured."""
        return self.url is not None

    @property
    def grace_ms(self) -> int:
        """How long what is kept of a verification's end outlives it (the expiry sweep reads it): a whole copy with
        events on; negative with events off, when only its status is kept (``lua/_journal.lua``)."""
        return FINAL_GRACE_MS if self.enabled else -FINAL_GRACE_MS

    def new_id(self) -> str:
        """A stable id for an event a transition may journal ("" when events are off: nothing is journaled)."""
        return "evt_" + secrets.token_hex(12) if self.enabled else ""

    @contextmanager
    def hinted(self, batch: Batch, verification_id: str) -> Iterator[None]:
        """Bracket, on ``batch``, a transition that may journal something with the hints that lead the sweep to it,
        on a cluster (none for an id that is not one of ours: nothing can be journaled for it). On one server the
        transition's script hints its journal itself, in the same step as the entry (``lua/_journal.lua``), so
        nothing is added here. The hint before survives a crash between the two commands. The hint after counts
        when a sweep reads the hint, then the journal, between the first hint and the transition (a pipeline can
        reach Redis in pieces): the sweep then forgets that first hint, but not the second, which comes after the
        entry."""
        ours = self._store.cluster and ID_RE.fullmatch(verification_id) is not None
        if ours:
            batch.hint_journal(verification_id)
        yield
        if ours:
            batch.hint_journal(verification_id)

    def sweep(self) -> int:
        """Move journaled entries, then turn due watches into ``verification.expired``; returns how many events
        were queued."""
        return self.collect() + self.expire()

    def collect(self) -> int:
        """Move every hinted journal's entries to the outbox and the expiry schedule; returns the events queued.

        Shard by shard, each shard's hinted journals together (three round trips: read, move, forget; every
        start journals its expiry watch, so this keeps up with the traffic). When that fails (a cluster node is
        down), the shard's journals go one by one: one that cannot be reached waits for a later sweep, and the
        others move on. ``self.backlog`` tells whether a shard had more hints than one sweep takes.
        """
        queued = unreachable = 0
        self.backlog = False
        first = secrets.randbelow(SHARDS)  # every worker sweeps every shard: each starts at another, mostly
        for shard in ((first + i) % SHARDS for i in range(SHARDS)):
            try:
                hinted = self._store.run(Batch.journal_hints, shard, BATCH)
            except StoreUnavailable:
                unreachable += 1
                continue
            self.backlog |= len(hinted) == BATCH
            try:
                queued += self._move(hinted)
            except StoreUnavailable:
                for one in hinted:
                    try:
                        queued += self._move([one])
                    except StoreUnavailable:
                        unreachable += 1
        if unreachable:
            log.warning(
                "events: %d journal shards or journals could not be reached; they wait for a later sweep", unreachable
            )
        return queued

    def _move(self, hinted: list[tuple[str, int]]) -> int:
        """Move the entries of journals (hash tag, hint number) to the outbox and the expiry schedule, then forget
        them, in a round trip of their own: no entry is forgotten unless it was queued. Repeatable: what was
        queued or delivered before is not queued again."""
        reading = self._store.batch()
        journals = [(tag, count, reading.journal(tag)) for tag, count in hinted]
        reading.run()
        batch = self._store.batch()
        moves = []
        for _, _, read in journals:
            moves += self._queue(batch, read.value)
        batch.run()
        done = self._store.batch()
        for tag, count, read in journals:
            done.forget_journal(tag, list(read.value))
            done.unhint_journal(tag, count)
        done.run()
        return sum(1 for op in moves if op.value)

    def _queue(self, batch: Batch, entries: dict[str, str]) -> list[Any]:
        """Queue on ``batch`` one journal's events (their enqueue ops) and expiry watches."""
        moves = []
        for entry_id, raw in entries.items():
            entry = json.loads(raw)
            if not entry["record"]:
                continue
            if entry["kind"] == "step":  # "step:<id>[:now]": a fallback chain's next step, for Service.fallback
                verification_id = entry_id.removeprefix("step:").partition(":")[0]
                member = f"{verification_id}.{entry['step']}"
                # Only ever earlier: the worker reschedules a step that is not due yet by the record's time.
                schedule = fallback_schedule(shard_of(verification_id))
                batch.schedule(schedule, member, int(entry["due"]), "1", earlier=True)
            elif entry["kind"] == "event":
                record = Record.from_flat(entry["record"])
                assert record is not None  # noqa: S101 - not empty
                moves.append(self._enqueue(batch, entry_id, entry["type"], entry["at"] / 1000, record))
            else:  # a watch: "watch:<id>"
                # Compact: the expiry schedule holds one of these per verification for as long as it lives.
                data = json.dumps(entry["record"], separators=(",", ":"))
                batch.schedule(EXPIRY, entry_id.removeprefix("watch:"), int(entry["due"]), data)
        return moves

    def expire(self, stop: threading.Event | None = None) -> int:
        """Count due watches whose verification ended unapproved as expired and (events on) turn them into
        ``verification.expired``; returns how many.

        Once ``stop`` is set it stops between two watches, and hands the rest back (see :meth:`_release`)."""
        expired = 0
        now_ms = int(self._clock() * 1000)
        for verification_id, data in self._claimed(EXPIRY, stop):
            record = self._store.run(Batch.get, verification_id)
            batch = self._store.batch()
            expiring: Record | None = None
            if record is not None and record.status in UNFINISHED:
                # Not over yet (a resend moved its expiry, or Redis has not dropped it yet): look again then.
                batch.schedule(EXPIRY, verification_id, max(record.expires_at, now_ms + 1000), data)
            else:
                final = record or self._final(verification_id, data)
                if final is not None and final.status in UNFINISHED:
                    if self.enabled:
                        self._enqueue(batch, f"evt_x{verification_id}", EXPIRED, self._clock(), final)
                    expired += 1
                    expiring = final
                batch.unschedule(EXPIRY, verification_id)
                batch.drop_final_copy(verification_id)
            batch.run()
            if expiring is not None:  # counted once the step that retires its watch is done
                channel, provider = expiring.entry()  # where it started (a fallback chain moves on)
                country = expiring.country or country_of(expiring.phone)
                self._metrics.expired.labels(channel, provider or "none", country).inc()
        return expired

    def _final(self, verification_id: str, watched: str) -> Record | None:
        """How a verification Redis dropped ended: its final copy (whole, or only its status when events are off)
        over what its watch held."""
        flat = json.loads(watched)
        if not flat:
            return None
        # A light watch (events off) holds only the labels the expired count needs (channel, gateway, country, a
        # fallback chain's attempts; a previous version's, the phone too): the rest is what it implies. Fields as
        # stored (Record.from_hash).
        light = {"id": verification_id, "p": "", "cc": "ZZ", "s": "pending"}
        kept: dict[str, str] = self._store.run(Batch.final_copy, verification_id)
        return Record.from_hash({**light, **dict(zip(flat[::2], flat[1::2], strict=True)), **kept})

    def _enqueue(self, batch: Batch, event_id: str, event_type: str, at: float, record: Record) -> Any:
        envelope = {
            "event": {"id": event_id, "type": event_type, "created_at": rfc3339(at), "data": self._render(record)},
            "attempts": 0,
            "queued_at": self._clock(),
        }
        return batch.enqueue_event(event_id, int(self._clock() * 1000), json.dumps(envelope))

    def deliver(self, stop: threading.Event | None = None) -> int:
        """POST every due event once; returns how many the receiver took.

        Once ``stop`` is set it stops between two events: the one being posted is still marked delivered (or
        rescheduled), and the rest are handed back (see :meth:`_release`), so none is posted and left unmarked."""
        delivered = 0
        for event_id, raw in self._claimed(OUTBOX, stop):
            envelope = json.loads(raw)
            batch = self._store.batch()
            now = self._clock()
            if self._post(envelope["event"]):
                batch.delivered_event(event_id, int(now * 1000), REMEMBER_DELIVERED_MS)
                delivered += 1
                result = "delivered"
            elif now - envelope["queued_at"] > GIVE_UP_AFTER_S:
                result = "dropped"
                log.error(
                    "event %s (%s) dropped: not delivered in %d h",
                    event_id,
                    envelope["event"]["type"],
                    GIVE_UP_AFTER_S // 3600,
                )
                batch.delivered_event(event_id, int(now * 1000), REMEMBER_DELIVERED_MS)  # never to come back
            else:
                result = "retried"
                envelope["attempts"] += 1
                due = now + retry_delay(envelope["attempts"])
                batch.schedule(OUTBOX, event_id, int(due * 1000), json.dumps(envelope))
            batch.run()
            self._metrics.events.labels(envelope["event"]["type"], result).inc()
        return delivered

    def _claimed(self, name: str, stop: threading.Event | None) -> Iterator[tuple[str, str]]:
        """The due entries of schedule ``name``, leased to this worker, one at a time; once ``stop`` is set the
        rest are handed back (see :meth:`_release`) instead."""
        claimed_ms = int(self._clock() * 1000)
        claimed = self._store.run(Batch.claim_due, name, claimed_ms, LEASE_MS, BATCH)
        for index, entry in enumerate(claimed):
            if stop is not None and stop.is_set():
                self._release(name, claimed[index:], claimed_ms)
                return
            yield entry

    def _release(self, name: str, entries: list[tuple[str, str]], claimed_ms: int) -> None:
        """Make claimed but untouched entries due now, for the next loop (another worker's) to take at once instead
        of after the lease. Only while the lease is surely still ours: once it may have run out, another worker may
        have taken an entry and finished it, and putting it back would bring it back."""
        now_ms = int(self._clock() * 1000)
        if not entries or now_ms > claimed_ms + LEASE_MS // 2:
            return
        batch = self._store.batch()
        for member, data in entries:
            batch.schedule(name, member, now_ms, data)
        try:
            batch.run()
        except StoreUnavailable as err:  # they come back when the lease runs out
            log.warning("events: %d claimed %s entries not handed back: %s", len(entries), name, err)

    def _post(self, event: dict[str, Any]) -> bool:
        assert self.url is not None  # noqa: S101 - only called when enabled
        body = json.dumps(event, separators=(",", ":")).encode()
        headers = {
            "Content-Type": "application/json",
            "Verify-Signature": signature(self._secret, int(self._clock()), body),
        }
        try:
            response = self._session.post(
                self.url, data=body, headers=headers, timeout=self._timeout, allow_redirects=False
            )
        except requests.RequestException as err:
            log.warning("event %s not delivered: %s", event["id"], type(err).__name__)
            return False
        if not 200 <= response.status_code < 300:
            log.warning("event %s not delivered: HTTP %d", event["id"], response.status_code)
            return False
        return True

    def run(
        self, stop: threading.Event, interval: float = 1.0, also: dict[str, Callable[[], int]] | None = None
    ) -> None:
        """Sweep and deliver until ``stop`` is set: the loop each worker process runs in the background, with the
        steps of ``also`` (the service's fallback steps) after the sweep. Setting ``stop`` ends it between two
        events (after the one being posted is marked), never halfway through one."""
        steps: dict[str, Callable[[], int]] = {"collect": self.collect, "expire": lambda: self.expire(stop)}
        steps.update(also or {})
        if self.enabled:  # without a receiver the loop only watches expiries (the metrics)
            steps["deliver"] = lambda: self.deliver(stop)
        while not stop.is_set():
            for name, step in steps.items():  # one failing (a cluster node down) stops no other
                if stop.is_set():
                    return
                try:
                    step()
                except StoreUnavailable as err:
                    log.warning("events: %s paused: %s", name, err)
            stop.wait(0 if self.backlog else interval)  # a backlog is drained at once (the wait still yields)
