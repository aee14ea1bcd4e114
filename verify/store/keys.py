"""Every Redis key of the store, built in one place.

Keys carry ``VERIFY_REDIS_PREFIX`` and a hash tag. A verification's tag is derived from its phone and is the first
four characters of its id, so a verification, its phone index, its phone's quotas and its sandbox outbox share one
Redis Cluster slot, and every script touches a single slot. Keys of other things (a client IP's quota, a country's
statistics, a gateway's breaker) are tagged by that thing.
"""

from __future__ import annotations

import functools
import hashlib
import re
import secrets
from typing import Literal

from verify.quotas import Quota

ID_RE = re.compile(r"[0-9a-f]{28}")  # use fullmatch: "$" would let a trailing newline through
TAG_LENGTH = 4
#: A gateway's message ids of one window are kept in this many hashes (:meth:`Keys.message_bucket_key`): few enough
#: that each holds many ids (a key of its own costs more than the id it holds), enough to spread over a cluster.
MESSAGE_BUCKETS = 64
#: Keys that every request would otherwise write (the events journal hints, a country's pumping statistics) are split
#: in this many shards, by the first hex digit of the phone's hash tag, so that they spread over a Cluster's nodes.
SHARDS = 8


@functools.lru_cache(maxsize=1024)
def tag_for(phone: str) -> str:
    """The hash tag of a phone's keys; spreads phones over Cluster slots. (A request names its phone's keys several
    times: hashed once.)"""
    return hashlib.sha256(phone.encode()).hexdigest()[:TAG_LENGTH]


def new_id(phone: str) -> str:
    """A fresh verification id: the phone's hash tag followed by 96 random bits."""
    return tag_for(phone) + secrets.token_hex(12)


def shard_of(tag: str) -> int:
    """The shard (of :data:`SHARDS`) of a hash tag, a verification id or anything beginning with either."""
    return int(tag[0], 16) % SHARDS


#: The limits of :meth:`Keys.quota_key` whose counts every tenant shares (:attr:`Keys.shared_prefix`): a phone's
#: spoken codes, which protect its owner, and the deployment's cap over all tenants. A phone's own quotas (codes sent,
#: wrong codes) are always the deployment's (:meth:`Keys.phone_quota_key`), so a phone cannot be bombed by spreading
#: starts over tenants.
SHARED_LIMITS = frozenset({"voice_phone", "deployment"})


class Keys:
    """The key builders of a store (a part of :class:`~verify.store.Store`), under its ``prefix``.

    A tenant's store (:meth:`~verify.store.Store.for_tenant`) has a prefix of its own, so every key that makes a
    tenant's identity (its verifications, their phone indexes, its idempotency keys, its events, its IPs' quotas) is
    apart from every other tenant's, and a key that belongs to the deployment, whoever asks, stays under
    ``shared_prefix``: a phone's quotas (:meth:`phone_quota_key`, :data:`SHARED_LIMITS`), the deployment's cap and the
    sandbox's outbox.
    """

    prefix: str
    shared_prefix: str

    def _tagged(self, tag: str, prefix: str | None = None) -> str:
        return f"{self.prefix if prefix is None else prefix}{{{tag}}}:"

    def record_key(self, verification_id: str) -> str:
        """The hash of one verification. A malformed id (``<id>:final``, ``*``) would name another key: every
        caller checks ids first (``ID_RE``), and one that did not fails here rather than reach that key."""
        if not ID_RE.fullmatch(verification_id):
            raise ValueError("not a verification id")
        return f"{self._tagged(verification_id[:TAG_LENGTH])}vf:{verification_id}"

    def record_prefix(self, phone: str) -> str:
        """What the record keys of ``phone``'s verifications begin with (their ids carry its tag)."""
        return f"{self._tagged(tag_for(phone))}vf:"

    def index_key(self, phone: str, channel: str) -> str:
        """Points from a phone and channel to the API keys' newest verification."""
        return f"{self._tagged(tag_for(phone))}ph:{phone}:{channel}"

    def site_key_index(self, phone: str) -> str:
        """The site keys' verifications of a phone, by creation time (``lua/start.lua``)."""
        return f"{self._tagged(tag_for(phone))}sk:{phone}"

    def phone_quota_key(self, name: Literal["phone", "fail"], phone: str) -> str:
        """A phone's send quota (``phone``) or wrong-code quota (``fail``), in the phone's slot."""
        return f"{self._tagged(tag_for(phone), self.shared_prefix)}q:{name}:{phone}"

    def phone_quota_prefix(self, name: Literal["phone", "fail"], verification_id: str) -> str:
        """A phone quota's key without the phone, in the slot of the verification (a script appends its phone)."""
        return f"{self._tagged(verification_id[:TAG_LENGTH], self.shared_prefix)}q:{name}:"

    def quota_key(self, quota: Quota) -> str:
        """The key of a quota that is not a phone's: a client IP's, a number range's, a country's, everyone's."""
        prefix = self.shared_prefix if quota.limit.name in SHARED_LIMITS else self.prefix
        return f"{prefix}q:{{{quota.limit.name}:{quota.identity}}}"

    def pump_key(self, country: str, shard: int) -> str:
        """One shard of a country's SMS-pumping statistics."""
        return f"{self.prefix}pump:{{country:{country}:{shard}}}"

    def pump_warned_key(self, country: str) -> str:
        """Present for 5 minutes after SMS pumping in a country was logged."""
        return f"{self.prefix}pump:{{country:{country}}}:warned"

    def outbox_key(self, phone: str) -> str:
        """The sandbox provider's recent messages to one phone."""
        return f"{self._tagged(tag_for(phone), self.shared_prefix)}outbox:{phone}"

    def breaker_key(self, provider: str) -> str:
        """The circuit breaker of one gateway, shared by every worker."""
        return f"{self.prefix}breaker:{{{provider}}}"

    def message_bucket_key(self, provider: str, message_id: str, window: int) -> str:
        """The hash that points from a gateway's message ids, those of one bucket (of :data:`MESSAGE_BUCKETS`, by a
        hash of the id) sent in one window, to our verification ids (for delivery reports and replies)."""
        bucket = hashlib.sha256(message_id.encode()).digest()[0] % MESSAGE_BUCKETS
        return f"{self.prefix}msgs:{{{provider}:{bucket:02x}}}:{window}"

    def legacy_message_key(self, provider: str, message_id: str) -> str:
        """Where the previous version kept a message id's verification id, a key each (read until its last expires,
        two days after the upgrade)."""
        return f"{self.prefix}msg:{{{provider}:{message_id}}}"

    def nonce_key(self, provider: str, nonce: str) -> str:
        """A webhook nonce already seen."""
        return f"{self.prefix}nonce:{{{provider}}}:{nonce}"

    def captcha_key(self, challenge_id: str) -> str:
        """The HMAC of one builtin captcha's answer (and, in sandbox mode, ``<key>:plain``)."""
        return f"{self.prefix}captcha:{{{challenge_id}}}"

    def journal_key(self, tag: str) -> str:
        """The events journal of one hash tag's slot (``lua/_journal.lua``)."""
        return f"{self._tagged(tag)}journal"

    def journal_hints_key(self, shard: int) -> str:
        """Which slots' journals may hold entries, for the hash tags of one shard (:func:`shard_of`): hash tag ->
        the number of its last hint (``lua/hint.lua``)."""
        return f"{self.prefix}{{journals:{shard}}}"

    def journal_hint_sequence_key(self, shard: int) -> str:
        """The counter that numbers one shard's hints, in the hints' slot."""
        return f"{self.prefix}{{journals:{shard}}}:seq"

    def delivered_key(self) -> str:
        """The ids of events delivered (or given up on) lately, in the outbox's slot."""
        return f"{self.prefix}{{events}}:delivered"

    def schedule_keys(self, name: str) -> tuple[str, str]:
        """A schedule (sorted set of due times) and its data hash, in one slot: ``events`` or ``expiry``."""
        return f"{self.prefix}{{{name}}}:due", f"{self.prefix}{{{name}}}:data"

    def idempotency_key(self, key: str) -> str:
        """Where the response to one Idempotency-Key is kept."""
        digest = hashlib.sha256(key.encode()).hexdigest()
        return f"{self.prefix}idem:{{{digest[:TAG_LENGTH]}}}:{digest}"
