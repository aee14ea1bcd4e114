"""The Lua transitions, run on a real Redis 6.2 (embedded) and, when installed, on Redis 7."""

from __future__ import annotations

import shutil
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from redis.connection import AbstractConnection
from redis.crc import key_slot

from tests.redis_servers import EmbeddedCluster, EmbeddedSentinel, free_cluster_port
from verify.embedded import EmbeddedRedis, free_port
from verify.errors import ConfigError, ReplicasUnconfirmed, StoreUnavailable
from verify.quotas import Limit, Quota, Window, parse
from verify.store import (
    ID_RE,
    MAX_CONNECTIONS,
    SHARDS,
    Batch,
    Outcome,
    Record,
    SendCommit,
    Source,
    Store,
    new_id,
    shard_of,
    tag_for,
)
from verify.store.connection import parse_url
from verify.store.keys import MESSAGE_BUCKETS

PHONE = "+79991234567"
LEASE, TTL, COOLDOWN = 120_000, 900_000, 30_000
T0 = 1_800_000_000_000


def _system_redis_7() -> str | None:
    path = shutil.which("redis-server", path="/usr/bin:/usr/local/bin")
    if path is None:
        return None
    version = subprocess.run([path, "--version"], capture_output=True, text=True, check=True).stdout
    return path if " v=7." in version or " v=8." in version else None


@pytest.fixture(scope="module", params=["embedded-6.2", "system-7", "cluster"])
def server(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, redis_server: EmbeddedRedis
) -> Iterator[EmbeddedRedis | EmbeddedCluster]:
    """The scripts must run on the embedded Redis 6.2, on 7.x, and on a 3-node cluster (one slot each)."""
    if request.param == "embedded-6.2":
        yield redis_server
        return
    if request.param == "cluster":
        yield request.getfixturevalue("redis_cluster")
        return
    binary = _system_redis_7()
    if binary is None:
        pytest.skip("no Redis 7 on this machine (apt-get install redis-server gives one); 6.2 ran")
    seven = EmbeddedRedis(Path(tmp_path_factory.mktemp("redis7")), binary=binary)
    seven.start()
    yield seven
    seven.stop()


@pytest.fixture
def store(server: EmbeddedRedis | EmbeddedCluster) -> Iterator[Store]:
    s = Store.from_url(server.url, "test:")
    s.client.flushall()
    yield s
    s.close()


def _sms(code_hash: str = "h1") -> SendCommit:
    return SendCommit("sms", code_hash, "sandbox", "m1")


def _start(
    store: Store,
    now: int = T0,
    nonce: str = "n1",
    channel: str = "sms",
    phone: str = PHONE,
    quota: Limit | None = None,
    max_sends: int = 5,
) -> Outcome[Any]:
    return store.run(Batch.start, phone, "RU", channel, "en", now, LEASE, COOLDOWN, max_sends, nonce, quota)


def _end(
    store: Store,
    record: Record,
    nonce: str,
    commit: SendCommit | None,
    now: int = T0,
    quota: Limit | None = None,
    taken_at: int = T0,
) -> Outcome[Any]:
    return store.run(Batch.end_send, record, nonce, now, TTL, quota, taken_at, commit)


def _begin(
    store: Store, vid: str, now: int, nonce: str, max_sends: int = 5, quota: Limit | None = None
) -> Outcome[Any]:
    return store.run(Batch.begin_send, vid, now, COOLDOWN, max_sends, LEASE, nonce, quota)


def _complete(
    store: Store,
    vid: str,
    via: str,
    candidates: list[str],
    max_attempts: int = 5,
    now: int = T0,
    failures: Limit | None = None,
) -> Outcome[Any]:
    return store.run(Batch.complete, vid, via, max_attempts, now, TTL, failures, candidates)


def _sent(store: Store, code_hash: str = "h1", now: int = T0, channel: str = "sms") -> str:
    opened = _start(store, now, channel=channel)
    assert opened.outcome == "created" and opened.record is not None
    assert _end(store, opened.record, "n1", replace_channel(_sms(code_hash), channel), now).outcome == "sent"
    return opened.record.id


def replace_channel(commit: SendCommit, channel: str) -> SendCommit:
    return SendCommit(channel, commit.code_hash if channel == "sms" else "", commit.provider, commit.message_id)


def test_server_version(store: Store, server: EmbeddedRedis) -> None:
    version = str(store.client.info("server")["redis_version"])
    assert version.startswith(("6.2", "7.", "8."))


def test_start_creates_and_reserves_for_the_send_lease(store: Store) -> None:
    opened = _start(store)
    assert opened.outcome == "created" and opened.record is not None
    record = opened.record
    assert ID_RE.match(record.id) and record.id.startswith(tag_for(PHONE))
    assert (record.status, record.sends, record.attempts, record.expires_at) == ("pending", 0, 0, T0 + LEASE)
    assert record.country == "RU"  # kept, so that an approval need not parse the phone again
    assert 0 < store.client.pttl(store.record_key(record.id)) <= LEASE
    assert store.client.hget(store.record_key(record.id), "x") == "n1"  # the reservation (FIELDS: "sending")
    # Its first send is in flight: a second start is told so, and reserves nothing.
    assert _start(store, T0 + 1, "n2").outcome == "in_progress"
    other_channel = _start(store, channel="call")
    assert other_channel.outcome == "created" and other_channel.record is not None
    assert other_channel.record.id != record.id


def test_start_returns_the_pending_one_until_a_resend_is_due(store: Store) -> None:
    vid = _sent(store)
    inside = _start(store, T0 + COOLDOWN - 1, "n2")
    assert inside.outcome == "existing" and inside.record is not None and inside.record.id == vid
    assert "x" not in store.client.hgetall(store.record_key(vid))
    due = _start(store, T0 + COOLDOWN, "n2")
    assert due.outcome == "resend" and due.record is not None and due.record.id == vid
    assert _start(store, T0 + COOLDOWN + 1, "n3").outcome == "existing"  # in flight: nothing more reserved
    out_of_sends = _start(store, T0 + COOLDOWN, "n4", channel="call", max_sends=0)
    assert out_of_sends.outcome == "created"  # another channel has its own verification


def test_start_takes_the_phone_quota_with_the_reservation(store: Store) -> None:
    quota = parse("phone", "2/10 minutes")
    key = store.phone_quota_key("phone", PHONE)
    first = _start(store, quota=quota)
    assert first.outcome == "created" and first.record is not None
    assert _start(store, channel="call", quota=quota).outcome == "created"  # both channels share the quota
    refused = _start(store, T0 + 1, "n3", channel="sms", phone=PHONE, quota=quota)
    assert refused.outcome == "in_progress"  # the sms one is still sending: nothing taken
    _end(store, first.record, "n1", None, quota=quota)  # the failed send gives its quota back
    again = _start(store, T0 + 2, "n4", quota=quota)
    assert again.outcome == "created"
    limited = _start(store, T0 + 3, "n5", channel="sms", phone="+79991234500", quota=quota)
    assert limited.outcome == "created"  # another phone, another quota
    assert store.client.ttl(key) > 0
    # A third send to PHONE within the window is refused, and says when one more will fit.
    cancel = store.run(Batch.cancel, again.record.id if again.record else "")
    assert cancel.outcome == "canceled"
    refused = _start(store, T0 + 4, "n6", quota=quota)
    assert refused.outcome == "limited" and refused.refusal is not None and refused.record is None
    assert refused.refusal.window.text == "2/10 minutes" and refused.refusal.limit.name == "phone"


def test_commit_stores_only_the_hash_and_restarts_the_ttl(store: Store) -> None:
    vid = _sent(store, code_hash="hmac-of-code")
    raw = store.client.hgetall(store.record_key(vid))
    assert raw["h"] == "hmac-of-code" and raw["n"] == "1" and raw["ls"] == str(T0)
    assert LEASE < store.client.pttl(store.record_key(vid)) <= TTL
    assert LEASE < store.client.pttl(store.index_key(PHONE, "sms")) <= TTL
    assert "x" not in raw


def test_a_failed_first_send_leaves_nothing_but_the_given_back_quota(store: Store) -> None:
    quota = parse("phone", "1/10 minutes")
    opened = _start(store, quota=quota)
    assert opened.record is not None
    assert _end(store, opened.record, "n1", None, quota=quota).outcome == "deleted"
    assert list(store.client.scan_iter()) == []  # the quota went back to nothing, and so did its key
    assert _start(store, T0 + 1, "n2", quota=quota).outcome == "created"  # the quota came back


def test_a_failed_resend_keeps_the_old_code(store: Store) -> None:
    vid = _sent(store, code_hash="old")
    record = store.run(Batch.get, vid)
    assert record is not None
    assert _begin(store, vid, T0 + 30_000, "n2").outcome == "ok"
    assert _end(store, record, "n2", None, T0 + 30_000).outcome == "kept"
    raw = store.client.hgetall(store.record_key(vid))
    assert (raw["h"], raw["n"], raw["ls"]) == ("old", "1", str(T0))


def test_begin_send_refusals(store: Store) -> None:
    vid = _sent(store)
    assert _begin(store, vid, T0 + 29_999, "n").outcome == "cooldown"
    assert _begin(store, vid, T0 + 30_000, "n", max_sends=1).outcome == "max_sends"
    assert _begin(store, vid, T0 + 30_000, "n2").outcome == "ok"
    assert _begin(store, vid, T0 + 60_000, "n3").outcome == "in_flight"
    # A reservation whose worker died lapses after the lease.
    assert _begin(store, vid, T0 + 30_000 + LEASE, "n3").outcome == "ok"
    record = store.run(Batch.get, vid)
    assert record is not None
    assert _end(store, record, "n2", _sms()).outcome == "stale"
    assert _begin(store, "ffff" + "0" * 24, T0, "n").outcome == "missing"
    limited = _begin(store, vid, T0 + 30_000 + 2 * LEASE, "n4", quota=parse("phone", "0/hour"))
    assert limited.outcome == "limited" and limited.refusal is not None and limited.record is not None


def test_wrong_codes_count_up_to_the_limit(store: Store) -> None:
    vid = _sent(store, code_hash="right")
    for left in (2, 1):
        outcome = _complete(store, vid, "code", ["wrong-a", "wrong-b"], max_attempts=3)
        assert outcome.outcome == "wrong" and outcome.record is not None
        assert 3 - outcome.record.attempts == left
    last = _complete(store, vid, "code", ["wrong"], max_attempts=3)
    assert last.outcome == "wrong" and last.record is not None and last.record.status == "max_attempts_reached"
    assert _complete(store, vid, "code", ["right"], max_attempts=3).outcome == "max_attempts"
    assert "h" not in store.client.hgetall(store.record_key(vid))


def test_wrong_codes_of_a_phone_lock_every_check_of_it(store: Store) -> None:
    failures = parse("phone_failures", "2/day")
    vid = _sent(store, code_hash="right")
    for _ in range(2):
        assert _complete(store, vid, "code", ["wrong"], failures=failures).outcome == "wrong"
    locked = _complete(store, vid, "code", ["right"], failures=failures)
    assert locked.outcome == "locked" and locked.refusal is not None and locked.record is not None
    assert locked.refusal.limit.name == "phone_failures" and locked.record.attempts == 2  # not judged
    assert locked.refusal.retry_after == 86400  # a day after the last failure
    # A reply is a guess like a check: locked out too.
    assert _complete(store, vid, "sms_reply", ["right"], failures=failures).outcome == "locked"
    assert store.client.exists(store.phone_quota_key("fail", PHONE))


def test_the_lock_counts_consecutive_failures_cleared_by_an_approval(store: Store) -> None:
    failures = parse("phone_failures", "3/day")
    day = 86_400_000
    first = _sent(store, code_hash="right")
    assert _complete(store, first, "code", ["wrong"], failures=failures).outcome == "wrong"
    assert _complete(store, first, "code", ["wrong"], failures=failures, now=T0 + 1).outcome == "wrong"
    assert _complete(store, first, "code", ["right"], failures=failures, now=T0 + 2).outcome == "approved"
    assert not store.client.exists(store.phone_quota_key("fail", PHONE))  # the run of failures ended
    # Failures are not forgotten as a window slides: three, a day less a second apart each, still lock...
    second = _sent(store, code_hash="right", now=T0 + 10)
    for n in range(3):
        at = T0 + 10 + n * (day - 1000)
        assert _complete(store, second, "code", ["wrong"], 9, at, failures).outcome == "wrong"
    last = T0 + 10 + 2 * (day - 1000)
    assert _complete(store, second, "code", ["right"], 9, last + day - 1, failures).outcome == "locked"
    # ...until a whole quiet day has passed since the last one.
    assert _complete(store, second, "code", ["right"], 9, last + day, failures).outcome == "approved"


def test_approval_happens_once_and_burns_the_code(store: Store) -> None:
    vid = _sent(store, code_hash="right")
    first = _complete(store, vid, "code", ["other-key-hash", "right"], now=T0 + 5)
    assert first.outcome == "approved" and first.record is not None
    assert (first.record.status, first.record.completed_via, first.record.verified_at) == ("approved", "code", T0 + 5)
    assert _complete(store, vid, "code", ["right"]).outcome == "not_pending"
    assert "h" not in store.client.hgetall(store.record_key(vid))


def test_replies_count_their_wrong_codes_and_calls_need_the_call_channel(store: Store) -> None:
    vid = _sent(store, code_hash="right")
    assert store.run(Batch.complete, vid, "sms_reply", 5, T0, TTL, None, ["a", "b"], submitted=2).outcome == "wrong"
    assert _complete(store, vid, "call", []).outcome == "wrong_channel"
    record = store.run(Batch.get, vid)
    assert record is not None and record.attempts == 2
    assert _complete(store, vid, "sms_reply", ["right"]).outcome == "approved"


def test_switching_channel_moves_the_phone_index(store: Store) -> None:
    vid = _sent(store)
    record = store.run(Batch.get, vid)
    assert record is not None
    assert _begin(store, vid, T0 + 30_000, "n2").outcome == "ok"
    call = SendCommit("call", "", "sandbox", "m2", "+447700900001", ("+447700900001", "+447700900002"))
    ended = _end(store, record, "n2", call, T0 + 30_000)
    assert ended.outcome == "sent" and ended.record is not None and ended.superseded == ""
    assert ended.record.channel == "call" and ended.record.call_numbers == ("+447700900001", "+447700900002")
    assert store.client.get(store.index_key(PHONE, "sms")) is None
    found = store.run(Batch.find, PHONE, "call")
    assert found is not None and found.id == vid


def test_switching_to_a_channel_supersedes_its_pending_verification(store: Store) -> None:
    call_vid = _sent(store, channel="call")
    sms_vid = _sent(store)
    record = store.run(Batch.get, sms_vid)
    assert record is not None
    assert _begin(store, sms_vid, T0 + 30_000, "n2").outcome == "ok"
    ended = _end(store, record, "n2", SendCommit("call", "", "sandbox", "m2", "+447700900001"), T0 + 30_000)
    assert ended.outcome == "sent" and ended.superseded == call_vid
    old = store.run(Batch.get, call_vid)
    assert old is not None and old.status == "canceled"
    found = store.run(Batch.find, PHONE, "call")
    assert found is not None and found.id == sms_vid


def test_cancel(store: Store) -> None:
    vid = _sent(store)
    assert store.run(Batch.cancel, vid).outcome == "canceled"
    assert store.run(Batch.cancel, vid).outcome == "canceled"
    assert _complete(store, vid, "code", ["h1"]).outcome == "not_pending"
    approved = _sent(store, now=T0 + 1)
    _complete(store, approved, "code", ["h1"])
    assert store.run(Batch.cancel, approved).outcome == "not_pending"
    assert store.run(Batch.cancel, "ffff" + "0" * 24).outcome == "missing"


def test_every_key_of_a_phone_shares_one_cluster_slot(store: Store) -> None:
    quota, failures = parse("phone", "3/hour"), parse("phone_failures", "3/hour")
    opened = _start(store, quota=quota)
    assert opened.record is not None
    _end(store, opened.record, "n1", _sms("right"))
    _complete(store, opened.record.id, "code", ["wrong"], failures=failures)
    store.run(Batch.outbox_push, PHONE, {"to": PHONE})
    keys = [
        store.record_key(opened.record.id),
        store.index_key(PHONE, "sms"),
        store.index_key(PHONE, "call"),
        store.outbox_key(PHONE),
        store.phone_quota_key("phone", PHONE),
        store.phone_quota_key("fail", PHONE),
    ]
    assert all(k.startswith("test:{" + tag_for(PHONE) + "}:") for k in keys)
    assert len({key_slot(k.encode()) for k in keys}) == 1
    assert sorted(list(store.client.scan_iter())) == sorted(k for k in keys if store.client.exists(k))


def _legacy_record(store: Store, code_hash: str) -> str:
    """A sent verification as the previous version wrote it: long field names, its id stored too."""
    vid = new_id(PHONE)
    old = {
        "id": vid,
        "phone": PHONE,
        "country": "RU",
        "channel": "sms",
        "locale": "",
        "status": "pending",
        "attempts": "0",
        "sends": "1",
        "created_at": str(T0),
        "last_sent_at": str(T0),
        "expires_at": str(T0 + TTL),
        "delivery_status": "sent",
        "code_hash": code_hash,
        "call_number": "",
        "call_numbers": "",
        "provider": "sandbox",
        "message_id": "m1",
        "sms_encoding": "GSM-7",
        "sms_parts": "1",
    }
    store.client.hset(store.record_key(vid), items=[item for pair in old.items() for item in pair])
    store.client.pexpire(store.record_key(vid), TTL)
    store.client.set(store.index_key(PHONE, "sms"), vid, px=TTL)
    return vid


def test_a_record_of_the_previous_version_is_read_and_renamed_in_place(store: Store) -> None:
    vid = _legacy_record(store, "right")
    read = store.run(Batch.get, vid)
    assert read is not None and (read.id, read.phone, read.status, read.sends, read.sms_parts) == (
        vid,
        PHONE,
        "pending",
        1,
        1,
    )
    # The API key's start finds it through its index (inside its cooldown), and renames its fields on the way.
    existing = _start(store, T0 + 1, "n2")
    assert existing.outcome == "existing" and existing.record == read
    raw = store.client.hgetall(store.record_key(vid))
    assert raw["s"] == "pending" and raw["h"] == "right" and raw["n"] == "1" and raw["gw"] == "sandbox"
    assert not {"id", "status", "code_hash", "locale", "call_number"} & set(raw)  # the old names, and empty values
    assert TTL - 1000 < store.client.pttl(store.record_key(vid)) <= TTL  # the TTL kept
    approved = _complete(store, vid, "code", ["right"], now=T0 + 2)
    assert approved.outcome == "approved" and approved.record is not None and approved.record.id == vid
    # Each transition renames it first: a wrong code, a cancel, a delivery report or a resend of an old record.
    for transition in (
        lambda v: _complete(store, v, "code", ["wrong"]).outcome == "wrong",
        lambda v: store.run(Batch.cancel, v).outcome == "canceled",
        lambda v: store.run(Batch.set_delivery, v, "sandbox", "m1", "delivered", "DELIVRD").outcome == "updated",
        lambda v: _begin(store, v, T0 + COOLDOWN, "n3").outcome == "ok",
    ):
        store.client.flushall()
        old = _legacy_record(store, "right")
        assert transition(old)
        assert "status" not in store.client.hgetall(store.record_key(old))


def test_a_record_stays_a_compact_hash(store: Store) -> None:
    # Redis keeps a small hash as one ziplist (listpack from Redis 7) while every value is at most 64 bytes
    # (hash-max-ziplist-value): a record that outgrew it would take several times the memory.
    def encoding(vid: str) -> str:
        return str(store.client.object("encoding", store.record_key(vid)))

    quota = parse("phone", "5/hour")
    site = store.run(
        Batch.start,
        PHONE,
        "RU",
        "sms",
        "pt-BR",
        T0,
        LEASE,
        COOLDOWN,
        5,
        "n1",
        quota,
        Source("pk_site_" + "k" * 24, "a" * 11, "login.example.com", "c" * 64),
        LEASE,
    )
    assert site.record is not None and encoding(site.record.id) in ("ziplist", "listpack")
    commit = SendCommit("sms", "f" * 64, "zoomconnect", "9" * 36, sms_encoding="UCS-2", sms_parts=3)
    assert _end(store, site.record, "n1", commit, quota=quota).outcome == "sent"
    assert encoding(site.record.id) in ("ziplist", "listpack")
    store.run(Batch.set_delivery, site.record.id, "zoomconnect", "9" * 36, "failed", "x" * 64)
    assert _complete(store, site.record.id, "code", ["wrong"]).outcome == "wrong"
    assert _complete(store, site.record.id, "code", ["f" * 64], now=T0 + 1).outcome == "approved"
    assert encoding(site.record.id) in ("ziplist", "listpack")
    call = _start(store, T0 + 2, "n2", channel="call")
    assert call.record is not None
    numbers = ("+447700900001", "+447700900002", "+447700900003")
    assert (
        _end(store, call.record, "n2", SendCommit("call", "", "sandbox", "m" * 40, numbers[0], numbers)).outcome
        == "sent"
    )
    assert encoding(call.record.id) in ("ziplist", "listpack")


def test_message_ids_are_remembered_in_shared_buckets_for_their_memory(store: Store) -> None:
    day = 86_400_000
    memory = 2 * day
    for n in range(200):
        store.run(Batch.remember_message, "d7", f"msg-{n}", f"vid-{n}", memory, T0 + n)
    buckets = list(store.client.scan_iter(match="test:msgs:*"))
    assert len(buckets) <= MESSAGE_BUCKETS  # not a key per message
    assert all(0 < store.client.pttl(key) <= (T0 // day + 3) * day - T0 for key in buckets)
    found = [store.run(Batch.message_verification, "d7", f"msg-{n}", memory, T0 + memory) for n in range(200)]
    assert found == [f"vid-{n}" for n in range(200)]  # remembered for `memory` at least
    assert store.run(Batch.message_verification, "zoomconnect", "msg-1", memory, T0) is None  # another gateway's
    assert (
        store.run(Batch.message_verification, "d7", "msg-1", memory, (T0 // day + 3) * day) is None
    )  # at most a day more
    # What the previous version wrote, a key per message, is still read.
    store.client.set(store.legacy_message_key("d7", "old"), "vid-old", px=memory)
    assert store.run(Batch.message_verification, "d7", "old", memory, T0) == "vid-old"


def test_malformed_ids_are_unknown(store: Store) -> None:
    assert store.run(Batch.get, "../../etc") is None
    assert store.run(Batch.get, "ABCD" + "0" * 24) is None


def test_idempotency_claim(store: Store) -> None:
    assert store.run(Batch.claim_idempotency, "k", {"fingerprint": "f"}, 1000) is None
    assert store.run(Batch.claim_idempotency, "k", {"fingerprint": "g"}, 1000) == {"fingerprint": "f"}
    store.run(Batch.finish_idempotency, "k", {"fingerprint": "f", "status": 201, "body": {}}, 60_000)
    assert store.run(Batch.claim_idempotency, "k", {"fingerprint": "f"}, 1000) == {
        "fingerprint": "f",
        "status": 201,
        "body": {},
    }
    store.run(Batch.release_idempotency, "k")
    assert store.run(Batch.claim_idempotency, "k", {"fingerprint": "f"}, 1000) is None


# quotas


def _take(store: Store, quota: Quota, now: int) -> bool:
    return store.run(Batch.take, quota, now).refusal is None


def test_a_quota_takes_exactly_its_amount_then_says_when_one_more_fits(store: Store) -> None:
    quota = Quota(parse("ip", "3/10 minutes;5/day") or Limit("ip", ()), "203.0.113.7")
    window = 600_000
    start = (T0 // window) * window  # the start of a fixed window, so the previous one is empty
    assert [_take(store, quota, start + i) for i in range(4)] == [True, True, True, False]
    refused = store.run(Batch.take, quota, start + 3).refusal
    assert refused is not None and refused.window.text == "3/10 minutes"
    # All 3 are in the current window; the next one fits once that window has moved a third past its end
    # (3 * (1 - elapsed/window) <= 2), and not a second earlier.
    due = start + window + window // 3
    assert refused.retry_after == -(-(due - (start + 3)) // 1000)
    assert not _take(store, quota, due - 1000)
    assert _take(store, quota, due)
    assert _take(store, quota, due + window // 3)
    assert not _take(store, quota, due + window // 3 + 1)  # 5/day binds now: 5 taken in the day
    day = store.run(Batch.take, quota, due + window).refusal
    assert day is not None and day.window.text == "5/day"


def test_a_refused_take_counts_nothing_and_a_give_back_returns_one(store: Store) -> None:
    quota = Quota(parse("prefix", "2/hour") or Limit("prefix", ()), "+7999123")
    assert _take(store, quota, T0) and _take(store, quota, T0 + 1)
    for _ in range(5):
        assert not _take(store, quota, T0 + 2)
    store.run(Batch.give, quota, T0)
    assert _take(store, quota, T0 + 3)
    assert not _take(store, quota, T0 + 4)


def test_a_give_back_after_the_window_moved_comes_off_the_previous_count(store: Store) -> None:
    quota = Quota(parse("global", "2/minute") or Limit("global", ()), "all")
    start = (T0 // 60_000) * 60_000
    assert _take(store, quota, start) and _take(store, quota, start + 1)
    assert not _take(store, quota, start + 60_000)  # the previous window still weighs 2 * (1 - 0)
    store.run(Batch.give, quota, start)
    assert _take(store, quota, start + 60_000)


def test_a_counter_counts_beside_the_limit_and_never_refuses(store: Store) -> None:
    counter = Limit("captcha_ip", (Window(2, 3600, "2/hour"),))
    quota = Quota(parse("ip", "4/hour") or Limit("ip", ()), "203.0.113.7", counter)
    overs = [store.run(Batch.take, quota, T0 + i).over for i in range(4)]
    assert overs == [False, False, True, True]
    assert store.run(Batch.take, quota, T0 + 5).refusal is not None  # the ip limit refuses; the counter never does
    store.run(Batch.give, quota, T0)
    assert store.run(Batch.take, quota, T0 + 6).over  # the give-back took one off the counter too: 4 counted


def test_a_quota_key_is_bounded_whatever_the_limit(store: Store) -> None:
    small = Quota(parse("ip", "10/hour") or Limit("ip", ()), "small")
    huge = Quota(parse("ip", "1000000/hour") or Limit("ip", ()), "huge")
    for i in range(500):
        _take(store, small, T0 + i)
        _take(store, huge, T0 + i)
    sizes = [store.client.memory_usage(store.quota_key(q)) or 0 for q in (small, huge)]
    assert max(sizes) < 200 and abs(sizes[0] - sizes[1]) <= 8  # the same, but for the digits of the count
    assert 3600_000 < store.client.pttl(store.quota_key(huge)) <= 7200_000


def test_pumping_statistics_are_a_ring_of_minutes_in_shards(store: Store) -> None:
    ids = [new_id(f"+7999000{i:04d}") for i in range(60)]  # verifications of many phones: every shard gets some
    for minute in range(90):  # an hour and a half of traffic, 3 starts and 1 approval a minute
        now = T0 + minute * 60_000
        for i in range(3):
            store.run(Batch.pump_count, "RU", ids[(minute * 3 + i) % 60], "started", now)
        store.run(Batch.pump_count, "RU", ids[minute % 60], "approved", now)
    keys = [store.pump_key("RU", shard) for shard in range(SHARDS)]
    assert len(set(keys)) == SHARDS and all(0 < store.client.hlen(key) <= 60 for key in keys)
    stats = store.run(Batch.pump_read, "RU", T0 + 89 * 60_000, 0.5, 50)
    assert (stats.started, stats.approved, stats.pumping, stats.warn) == (180, 60, True, True)
    assert store.run(Batch.pump_warning, "RU")  # the first to log it
    assert not store.run(Batch.pump_warning, "RU")  # and not again within 5 minutes
    again = store.run(Batch.pump_read, "RU", T0 + 89 * 60_000 + 1, 0.5, 50)
    assert again.pumping and not again.warn  # nor does a read ask for it
    store.client.delete(store.pump_warned_key("RU"))  # as 5 minutes later
    assert store.run(Batch.pump_read, "RU", T0 + 95 * 60_000, 0.5, 50).warn
    assert not store.run(Batch.pump_read, "RU", T0 + 89 * 60_000, 0.7, 50).pumping  # 2/3 unapproved: under 0.7
    assert not store.run(Batch.pump_read, "RU", T0 + 89 * 60_000, 0.5, 181).pumping  # too few starts
    assert store.run(Batch.pump_read, "RU", T0 + 200 * 60_000, 0.5, 1).started == 0  # all old


def test_a_dead_redis_raises_store_unavailable(tmp_path: Path) -> None:
    server = EmbeddedRedis(tmp_path)
    server.start()
    store = Store.from_url(server.url, "test:")
    assert store.ping()
    server.stop()
    assert not store.ping()
    with pytest.raises(StoreUnavailable):
        _start(store)
    with pytest.raises(StoreUnavailable):
        store.run(Batch.get, "ffff" + "0" * 24)
    server.start()
    assert _start(store).outcome == "created"  # scripts are loaded again into the restarted server
    server.stop()


def test_more_concurrent_requests_than_connections_wait_for_one(store: Store) -> None:
    barrier = threading.Barrier(MAX_CONNECTIONS + 50)
    failures: list[Exception] = []

    def hold_a_connection() -> None:
        barrier.wait()
        try:  # a blocking pop holds its connection for 0.2 s without blocking the server
            store.client.blpop(["test:nothing"], timeout=0.2)
        except redis.RedisError as err:
            failures.append(err)

    threads = [threading.Thread(target=hold_a_connection) for _ in range(MAX_CONNECTIONS + 50)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert failures == []


def test_deferred_commands_go_first_with_the_next_batch(store: Store) -> None:
    vid = new_id(PHONE)
    store.defer(lambda batch: batch.pump_count("RU", vid, "started", T0))
    assert not store.client.exists(store.pump_key("RU", shard_of(vid)))  # nothing sent yet: it waits for a round trip
    store.run(Batch.get, "not-an-id")  # a malformed id is never sent: no round trip, so nothing goes
    assert not store.client.exists(store.pump_key("RU", shard_of(vid)))
    stats = store.run(Batch.pump_read, "RU", T0, 0.5, 1)  # the next round trip carries it, ahead of the read
    assert (stats.started, stats.approved) == (1, 0)
    store.run(Batch.pump_read, "RU", T0, 0.5, 1)
    assert store.run(Batch.pump_read, "RU", T0, 0.5, 1).started == 1  # sent once


def test_phones_spread_over_every_node_of_a_cluster(redis_cluster: EmbeddedCluster) -> None:
    store = Store.from_url(redis_cluster.url, "test:")
    store.client.flushall()
    nodes = set()
    for i in range(30):
        phone = f"+7999123{i:04d}"
        opened = _start(store, phone=phone)
        assert opened.outcome == "created" and opened.record is not None
        node = store.client.get_node_from_key(store.record_key(opened.record.id))  # type: ignore[union-attr]
        assert node is not None
        nodes.add((node.host, node.port))
        # ...while every key of one verification is in one slot, hence on one node.
        keys = [
            store.record_key(opened.record.id),
            store.index_key(phone, "sms"),
            store.phone_quota_key("phone", phone),
        ]
        assert len({key_slot(k.encode()) for k in keys}) == 1
    assert nodes == {("127.0.0.1", node.port) for node in redis_cluster.nodes}
    store.close()


def test_a_cluster_batch_sends_each_command_straight_to_its_node(redis_cluster: EmbeddedCluster) -> None:
    # Left to itself, redis-py's cluster pipeline asks the default node for every EVALSHA's keys (COMMAND GETKEYS):
    # a round trip more per script, to a node the batch may not need.
    store = Store.from_url(redis_cluster.url, "test:")
    store.client.flushall()

    def commands() -> int:
        total = 0
        for node in redis_cluster.nodes:
            with redis.Redis(port=node.port) as client:
                total += int(client.info("commandstats").get("cmdstat_command", {}).get("calls", 0))
        return total

    _start(store, phone=PHONE)  # the scripts loaded
    before = commands()
    batch = store.batch()
    opened = [
        batch.start(f"+7999123{i:04d}", "RU", "sms", "en", T0, LEASE, COOLDOWN, 5, "n1", None) for i in range(10)
    ]  # ten phones, spread over the three nodes
    batch.run()
    assert all(op.value.outcome == "created" for op in opened)
    assert commands() == before
    store.close()


@pytest.mark.parametrize("url", ["redis+cluster://127.0.0.1:{port}", "redis+sentinel://127.0.0.1:{port}/mymaster"])
def test_a_cluster_or_sentinel_that_does_not_answer_stops_the_start(url: str) -> None:
    with pytest.raises(ConfigError) as caught:
        Store.from_url(url.format(port=free_port()), "test:")
    assert caught.value.variable == "VERIFY_REDIS_URL"


@pytest.mark.parametrize(
    ("args", "reason"),
    [
        (("--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf"), "no node owns a slot"),  # not created
        ((), "Cluster mode is not enabled"),  # a plain server named as a cluster
    ],
)
def test_a_cluster_that_is_not_ready_stops_the_start(tmp_path: Path, args: tuple[str, ...], reason: str) -> None:
    node = EmbeddedRedis(tmp_path, port=free_cluster_port(), args=args)
    node.start()
    try:
        with pytest.raises(ConfigError) as caught:
            Store.from_url(f"redis+cluster://127.0.0.1:{node.port}", "test:")
        assert caught.value.variable == "VERIFY_REDIS_URL" and reason in str(caught.value)
    finally:
        node.stop()


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:6379",
        "redis+cluster://",
        "redis+cluster://host",
        "redis+sentinel://127.0.0.1:26379",
        "redis+cluster://127.0.0.1:x",
    ],
)
def test_a_malformed_redis_url_names_the_variable(url: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_url(url)
    assert caught.value.variable == "VERIFY_REDIS_URL"


def test_every_form_of_the_redis_url() -> None:
    assert parse_url("redis://:pw@127.0.0.1:6379/0")[0] == "redis"
    assert parse_url("rediss://h:6380/0")[0] == "rediss"
    assert parse_url("redis+cluster://:secret@h1:7000,h2:7001") == (
        "redis+cluster",
        "secret",
        [("h1", 7000), ("h2", 7001)],
        "",
    )
    assert parse_url("redis+sentinel://h1:26379,h2:26380/mymaster") == (
        "redis+sentinel",
        None,
        [("h1", 26379), ("h2", 26380)],
        "mymaster",
    )


# Behind Sentinel a write waits for a replica (WAIT, in its round trip)


def _wait_online(master: EmbeddedRedis, replicas: int) -> None:
    """Wait until the master's ROLE lists ``replicas`` replicas online (synced)."""
    with redis.Redis(port=master.port) as client:
        for _ in range(200):
            if len(client.execute_command("ROLE")[2]) == replicas:
                return
            time.sleep(0.05)
    raise AssertionError(f"the master never had {replicas} replica(s) online")


def test_a_write_no_replica_confirms_is_a_503_that_says_it_may_have_landed(tmp_path: Path) -> None:
    master = EmbeddedRedis(tmp_path / "master")
    master.start()
    replica = EmbeddedRedis(tmp_path / "replica", args=("--replicaof", "127.0.0.1", str(master.port)))
    replica.start()
    try:
        _wait_online(master, 1)
        store = Store(redis.Redis(port=master.port, decode_responses=True), "test:", wait_replicas=1)
        errors: list[BaseException] = []
        store.on_error = errors.append
        assert store.run(Batch.claim_nonce, "p", "a", 60_000)
        replica.stop()
        with pytest.raises(ReplicasUnconfirmed, match="\\(0 confirmed it\\): it may have been applied; retry"):
            store.run(Batch.claim_nonce, "p", "b", 60_000)
        assert store.client.exists(store.nonce_key("p", "b"))  # it was applied, unconfirmed
        assert [type(err) for err in errors] == [ReplicasUnconfirmed]  # counted: verify_redis_errors_total
        store.close()
    finally:
        replica.stop()
        master.stop()


# Sentinel: writes wait for the master's replicas (WAIT), as many as it has online


@pytest.fixture
def sentinel(tmp_path: Path) -> Iterator[EmbeddedSentinel]:
    """A master, its replica (in sync) and a sentinel."""
    watched = EmbeddedSentinel(tmp_path / "sentinel")
    watched.start()
    _wait_online(watched.master, 1)
    yield watched
    watched.stop()


def _sentinel_store(sentinel: EmbeddedSentinel, min_replicas: int = 0) -> tuple[Store, list[BaseException]]:
    store = Store.from_url(sentinel.url, "test:", min_replicas=min_replicas)
    errors: list[BaseException] = []
    store.on_error = errors.append
    return store, errors


def _timed_write(store: Store, nonce: str) -> float:
    """Write once (a webhook nonce); how long it took."""
    began = time.monotonic()
    assert store.run(Batch.claim_nonce, "p", nonce, 60_000)
    return time.monotonic() - began


def test_a_write_waits_for_the_replica_then_goes_on_unconfirmed_without_one(
    sentinel: EmbeddedSentinel, caplog: pytest.LogCaptureFixture
) -> None:
    store, errors = _sentinel_store(sentinel)
    on_replica = redis.Redis(port=sentinel.replica.port, decode_responses=True)
    _timed_write(store, "a")
    assert on_replica.exists(store.nonce_key("p", "a"))  # acknowledged once the replica had it
    assert store.replicas == 1 and store.health() == "confirmed"
    sentinel.kill(sentinel.replica)
    _wait_online(sentinel.master, 0)
    # The store still counts the replica: the next write waits for it in vain, and its 503 says it may have landed.
    with pytest.raises(ReplicasUnconfirmed, match="0 confirmed it\\): it may have been applied; retry"):
        store.run(Batch.claim_nonce, "p", "b", 60_000)
    assert store.client.exists(store.nonce_key("p", "b"))
    # The next write reads the master's replicas (ROLE, in its own round trip): none; the sentinel finds the replica
    # down (none could take over), so the write goes on unconfirmed, and the writes after it wait for nobody.
    assert _timed_write(store, "c") >= 0.9  # its WAIT was sent before the answer to ROLE came
    assert store.replicas == 0 and store.mode == "degraded" and store.health() == "degraded"
    assert max(_timed_write(store, f"d{i}") for i in range(5)) < 0.5
    assert [type(err) for err in errors] == [ReplicasUnconfirmed, ReplicasUnconfirmed]  # both WAITs that came short
    degraded = [r for r in caplog.records if "writes go on unconfirmed (degraded)" in r.getMessage()]
    assert len(degraded) == 1 and degraded[0].levelname == "WARNING"
    assert not [r for r in caplog.records if "refused" in r.getMessage()]
    # The replica comes back: once the store has looked again, writes wait for it again.
    store.replicas_every = 0.1
    sentinel.revive(sentinel.replica)
    _wait_online(sentinel.master, 1)
    time.sleep(0.2)
    _timed_write(store, "e")  # sent without WAIT, with ROLE: learns of the replica
    _timed_write(store, "f")
    assert on_replica.exists(store.nonce_key("p", "f")) and store.replicas == 1 and store.health() == "confirmed"
    assert len([r for r in caplog.records if "online again" in r.getMessage()]) == 1
    on_replica.close()
    store.close()


def test_with_a_replica_required_writes_without_one_keep_failing(
    sentinel: EmbeddedSentinel, caplog: pytest.LogCaptureFixture
) -> None:
    store, errors = _sentinel_store(sentinel, min_replicas=1)
    _timed_write(store, "a")
    sentinel.kill(sentinel.replica)
    _wait_online(sentinel.master, 0)
    for nonce in ("b", "c", "d"):  # a write that read ROLE as well (the second) fails all the same
        with pytest.raises(ReplicasUnconfirmed, match="may have been applied"):
            store.run(Batch.claim_nonce, "p", nonce, 60_000)
    assert store.replicas == 0 and store.health() == "refusing"
    assert len(errors) == 3
    refused = [r for r in caplog.records if "writes are refused (503)" in r.getMessage()]
    assert len(refused) == 1 and refused[0].levelname == "ERROR" and "VERIFY_REDIS_MIN_REPLICAS=1" in refused[0].message
    store.close()


def test_a_master_the_sentinels_do_not_vouch_for_refuses_unconfirmed_writes(
    sentinel: EmbeddedSentinel, caplog: pytest.LogCaptureFixture
) -> None:
    # The master loses its replica while the sentinel is gone: nobody confirms that the replica is not being
    # promoted elsewhere (what a master sees while a failover takes it over), so its writes must not go on.
    store, _ = _sentinel_store(sentinel)
    _timed_write(store, "a")
    sentinel.kill(sentinel.sentinel)
    sentinel.kill(sentinel.replica)
    _wait_online(sentinel.master, 0)
    for nonce in ("b", "c"):
        with pytest.raises(ReplicasUnconfirmed):
            store.run(Batch.claim_nonce, "p", nonce, 60_000)
    assert store.replicas == 0 and store.health() == "refusing"
    assert len([r for r in caplog.records if "the sentinels do not confirm" in r.getMessage()]) == 1
    store.close()


def test_a_planned_failover_loses_no_acknowledged_write(
    sentinel: EmbeddedSentinel, monkeypatch: pytest.MonkeyPatch
) -> None:
    # While SENTINEL FAILOVER promotes the replica, the old master sees no replica online either; a write it
    # acknowledged unconfirmed would be lost when it is made the new master's replica. The sentinel's failover flags
    # keep its writes waiting (503) until the store follows the new master. (A WAIT of 0.1 s: the store notices the
    # lost replica well within the second or two the promotion takes.)
    monkeypatch.setattr("verify.store.batch.WAIT_REPLICAS_MS", 100)
    store, _ = _sentinel_store(sentinel)
    acknowledged: list[str] = []
    stop = threading.Event()

    def write() -> None:
        for i in range(100_000):
            if stop.is_set():
                return
            try:
                store.run(Batch.claim_nonce, "p", str(i), 600_000)
                acknowledged.append(str(i))
            except StoreUnavailable:
                time.sleep(0.01)

    writers = [threading.Thread(target=write) for _ in range(2)]
    for thread in writers:
        thread.start()
    try:
        time.sleep(0.3)
        with redis.Redis(port=sentinel.sentinel.port) as watcher:
            watcher.execute_command("SENTINEL", "FAILOVER", sentinel.service)
        deadline = time.monotonic() + 30
        while sentinel.master_port() != sentinel.replica.port or len(acknowledged) < 50:
            assert time.monotonic() < deadline, "no failover, or no write on the new master"
            time.sleep(0.1)
        during = len(acknowledged)
        while len(acknowledged) < during + 20:
            assert time.monotonic() < deadline, "no write on the new master"
            time.sleep(0.1)
    finally:
        stop.set()
        for thread in writers:
            thread.join()
    with redis.Redis(port=sentinel.replica.port) as new_master:  # what every later read meets
        pipe = new_master.pipeline(transaction=False)
        for nonce in acknowledged:
            pipe.exists(store.nonce_key("p", nonce))
        assert all(pipe.execute()), "an acknowledged write is gone from the new master"
    store.close()


def test_reading_the_replicas_costs_no_round_trip(sentinel: EmbeddedSentinel, monkeypatch: pytest.MonkeyPatch) -> None:
    store, _ = _sentinel_store(sentinel)
    store.client.ping()  # the connection is made (its handshake, and asking the sentinel, is not a request's)
    sent: list[bytes] = []
    real = AbstractConnection.send_packed_command

    def counting(self: AbstractConnection, command: Any, check_health: bool = True) -> None:
        sent.append(b"".join(command) if isinstance(command, list) else command)
        real(self, command, check_health)  # type: ignore[no-untyped-call]

    monkeypatch.setattr(AbstractConnection, "send_packed_command", counting)
    _timed_write(store, "a")  # the first write learns the replicas: ROLE and WAIT ride along
    _timed_write(store, "b")  # the next one only waits
    assert len(sent) == 2
    assert b"ROLE" in sent[0] and b"WAIT" in sent[0] and b"ROLE" not in sent[1] and b"WAIT" in sent[1]
    store.run(Batch.get, "ffff" + "0" * 24)  # a read waits for nobody
    assert b"WAIT" not in sent[2]
    store.close()


def test_a_user_that_may_not_run_role_keeps_waiting_for_a_replica(
    sentinel: EmbeddedSentinel, caplog: pytest.LogCaptureFixture
) -> None:
    with redis.Redis(port=sentinel.master.port) as admin:
        admin.execute_command("ACL", "SETUSER", "app", "on", ">app-password", "~*", "+@all", "-@dangerous")
    client = redis.Redis(port=sentinel.master.port, username="app", password="app-password", decode_responses=True)
    store = Store(client, "test:", wait_replicas=1)
    _timed_write(store, "a")
    _timed_write(store, "b")
    assert store.replicas is None and store.health() == "confirmed"
    assert len([r for r in caplog.records if "refuses ROLE" in r.getMessage()]) == 1
    sentinel.kill(sentinel.replica)
    _wait_online(sentinel.master, 0)
    with pytest.raises(ReplicasUnconfirmed):  # it cannot tell the replica is gone: as before, writes need one
        store.run(Batch.claim_nonce, "p", "c", 60_000)
    store.close()


def test_a_malformed_id_never_names_a_key(store: Store) -> None:
    for crafted in ("a" * 28 + ":final", "*", "{}", "a" * 28 + "\n", "A" * 28):
        with pytest.raises(ValueError, match="not a verification id"):
            store.record_key(crafted)
        assert store.run(Batch.get, crafted) is None  # refused before Redis


def test_undoing_writes_kept_across_failures_are_bounded(store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("verify.store.connection.MAX_DEFERRED", 3)

    def releasing(key: str) -> Callable[[Batch], object]:
        return lambda batch: batch.release_idempotency(key)

    undo = [(releasing(f"k{n}"), True) for n in range(5)]
    counts: list[tuple[Callable[[Batch], object], bool]] = [(lambda batch: None, False)]
    store.keep_deferred([*undo, *counts], sent=True)  # a batch that was sent: only what must be done stays
    assert [entry for entry in store._deferred if not entry[1]] == []
    assert [entry[0] for entry in store._deferred] == [entry[0] for entry in undo[-3:]]  # the newest three
    store.keep_deferred(counts, sent=False)  # nothing was sent: everything stays
    assert store._deferred[0] == counts[0]
