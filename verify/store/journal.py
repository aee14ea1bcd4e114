"""The events journal and the schedules (:mod:`verify.events`): each slot's journal of what the transitions wrote
(``lua/_journal.lua``), the hints that point the sweep to it, the outbox of customer events with the ids delivered
(``lua/enqueue.lua``, ``lua/delivered.lua``), the watch for expiring verifications (``lua/claim_due.lua``), and what
is kept of a verification after Redis dropped it."""

from __future__ import annotations

from verify.store.batch import BatchEngine, Op, ignore
from verify.store.keys import TAG_LENGTH, shard_of
from verify.store.scripts import ClaimDueArgs, DeliveredArgs, EnqueueArgs, HintArgs, UnhintArgs


class JournalCommands(BatchEngine):
    """The journal's and schedules' commands, a part of :class:`~verify.store.Batch`."""

    def schedule(self, name: str, member: str, due_ms: int, data: str, *, earlier: bool = False) -> Op[None]:
        """Put ``member`` (with ``data``) on schedule ``name`` at ``due_ms``; replaces an earlier entry, or with
        ``earlier`` only moves one sooner (``ZADD LT``)."""
        due, payload = self._store.schedule_keys(name)
        self._command(ignore, "HSET", payload, member, data)
        return self._command(ignore, "ZADD", due, *(["LT"] if earlier else []), due_ms, member)

    def claim_due(self, name: str, now_ms: int, lease_ms: int, limit: int) -> Op[list[tuple[str, str]]]:
        """Due entries of schedule ``name`` as ``(member, data)``, leased to this caller; see ``claim_due.lua``."""
        due, payload = self._store.schedule_keys(name)
        return self._script(
            lambda flat: list(zip(flat[::2], flat[1::2], strict=True)),
            self._store.scripts.claim_due,
            [due, payload],
            ClaimDueArgs(now_ms, lease_ms, limit),
        )

    def unschedule(self, name: str, member: str) -> Op[None]:
        """Take ``member`` off schedule ``name``."""
        due, payload = self._store.schedule_keys(name)
        self._command(ignore, "ZREM", due, member)
        return self._command(ignore, "HDEL", payload, member)

    def hint_journal(self, verification_id: str) -> Op[None]:
        """Say that the journal of ``verification_id``'s slot may get an entry (queued around the transition); see
        ``lua/hint.lua``."""
        tag = verification_id[:TAG_LENGTH]
        shard = shard_of(tag)
        keys = [self._store.journal_hints_key(shard), self._store.journal_hint_sequence_key(shard)]
        return self._script(ignore, self._store.scripts.hint, keys, HintArgs(tag))

    def journal_hints(self, shard: int, limit: int) -> Op[list[tuple[str, int]]]:
        """Up to ``limit`` hinted slots of one shard, as (hash tag, the number of its last hint)."""
        return self._command(
            lambda pairs: [(tag, int(count)) for tag, count in pairs],  # redis-py pairs them
            "ZRANGE",
            self._store.journal_hints_key(shard),
            0,
            limit - 1,
            "WITHSCORES",
        )

    def journal(self, tag: str) -> Op[dict[str, str]]:
        """The entries of one slot's journal: entry id -> JSON."""
        return self._command(lambda h: h or {}, "HGETALL", self._store.journal_key(tag))

    def forget_journal(self, tag: str, entry_ids: list[str]) -> Op[None]:
        """Remove moved entries from a slot's journal."""
        if not entry_ids:
            return self._command(ignore, "EXISTS", self._store.journal_key(tag))
        return self._command(ignore, "HDEL", self._store.journal_key(tag), *entry_ids)

    def unhint_journal(self, tag: str, count: int) -> Op[bool]:
        """Forget a slot's hint unless another came since it was read (its number changed); see
        ``lua/unhint.lua``."""
        hints = self._store.journal_hints_key(shard_of(tag))
        return self._script(bool, self._store.scripts.unhint, [hints], UnhintArgs(tag, count))

    def enqueue_event(self, event_id: str, due_ms: int, envelope: str) -> Op[bool]:
        """Queue an event unless it was queued or delivered before; see ``lua/enqueue.lua``."""
        due, data = self._store.schedule_keys("events")
        return self._script(
            bool,
            self._store.scripts.enqueue,
            [due, data, self._store.delivered_key()],
            EnqueueArgs(event_id, due_ms, envelope),
        )

    def delivered_event(self, event_id: str, now_ms: int, remember_ms: int) -> Op[None]:
        """An event is done with: off the outbox, remembered; see ``lua/delivered.lua``."""
        due, data = self._store.schedule_keys("events")
        return self._script(
            ignore,
            self._store.scripts.delivered,
            [due, data, self._store.delivered_key()],
            DeliveredArgs(event_id, now_ms, remember_ms),
        )

    def final_copy(self, verification_id: str) -> Op[dict[str, str]]:
        """What the transitions kept of the verification as it finally was, after Redis dropped it: every field
        with events on, only its status with events off (``lua/_journal.lua``); empty when nothing was kept."""
        return self._command(lambda h: h or {}, "HGETALL", self._store.record_key(verification_id) + ":final")

    def drop_final_copy(self, verification_id: str) -> Op[None]:
        """Its expiry was seen to: the final copy is not needed any more."""
        return self._command(ignore, "DEL", self._store.record_key(verification_id) + ":final")
