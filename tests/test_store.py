"""The Lua transitions, run on a real Redis 6.2 (embedded) and, when installed, on Redis 7."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from redis.crc import key_slot

from verify.embedded import EmbeddedRedis
from verify.errors import StoreUnavailable
from verify.store import ID_RE, SendCommit, Store, tag_for

PHONE = "+79991234567"
LEASE, TTL = 120_000, 900_000
T0 = 1_800_000_000_000


def _system_redis_7() -> str | None:
    path = shutil.which("redis-server", path="/usr/bin:/usr/local/bin")
    if path is None:
        return None
    version = subprocess.run([path, "--version"], capture_output=True, text=True, check=True).stdout
    return path if " v=7." in version or " v=8." in version else None


@pytest.fixture(scope="module", params=["embedded-6.2", "system-7"])
def server(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory,
           redis_server: EmbeddedRedis) -> Iterator[EmbeddedRedis]:
    """The scripts must run on the embedded Redis 6.2 and on 7.x."""
    if request.param == "embedded-6.2":
        yield redis_server
        return
    binary = _system_redis_7()
    if binary is None:
        pytest.skip("no Redis 7 on this machine (apt-get install redis-server gives one); 6.2 ran")
    seven = EmbeddedRedis(Path(tmp_path_factory.mktemp("redis7")), binary=binary)
    seven.start()
    yield seven
    seven.stop()


@pytest.fixture
def store(server: EmbeddedRedis) -> Iterator[Store]:
    s = Store.from_url(server.url, "test:")
    s.client.flushall()
    yield s
    s.client.close()


def _sms(code_hash: str = "h1") -> SendCommit:
    return SendCommit("sms", code_hash, "sandbox", "m1")


def _sent(store: Store, code_hash: str = "h1", now: int = T0) -> str:
    opened = store.open(PHONE, "sms", "en", now, LEASE)
    assert opened.outcome == "created" and opened.record is not None
    assert store.begin_send(opened.record.id, now, 30_000, 5, LEASE, "n1").outcome == "ok"
    assert store.end_send(opened.record, "n1", now, TTL, _sms(code_hash)).outcome == "sent"
    return opened.record.id


def test_server_version(store: Store, server: EmbeddedRedis) -> None:
    version = str(store.client.info("server")["redis_version"])
    assert version.startswith(("6.2", "7.", "8."))


def test_open_creates_for_the_send_lease_then_returns_the_pending_one(store: Store) -> None:
    opened = store.open(PHONE, "sms", "en", T0, LEASE)
    assert opened.outcome == "created" and opened.record is not None
    record = opened.record
    assert ID_RE.match(record.id) and record.id.startswith(tag_for(PHONE))
    assert (record.status, record.sends, record.attempts, record.expires_at) == ("pending", 0, 0, T0 + LEASE)
    assert 0 < store.client.pttl(store.record_key(record.id)) <= LEASE
    again = store.open(PHONE, "sms", "en", T0 + 1, LEASE)
    assert again.outcome == "existing" and again.record == record
    other_channel = store.open(PHONE, "call", "en", T0, LEASE)
    assert other_channel.outcome == "created" and other_channel.record is not None
    assert other_channel.record.id != record.id


def test_commit_stores_only_the_hash_and_restarts_the_ttl(store: Store) -> None:
    vid = _sent(store, code_hash="hmac-of-code")
    raw = store.client.hgetall(store.record_key(vid))
    assert raw["code_hash"] == "hmac-of-code" and raw["sends"] == "1" and raw["last_sent_at"] == str(T0)
    assert LEASE < store.client.pttl(store.record_key(vid)) <= TTL
    assert LEASE < store.client.pttl(store.index_key(PHONE, "sms")) <= TTL
    assert "sending" not in raw


def test_a_failed_first_send_leaves_nothing(store: Store) -> None:
    opened = store.open(PHONE, "sms", "en", T0, LEASE)
    assert opened.record is not None
    assert store.begin_send(opened.record.id, T0, 30_000, 5, LEASE, "n1").outcome == "ok"
    assert store.end_send(opened.record, "n1", T0, TTL, None).outcome == "deleted"
    assert store.client.keys("*") == []


def test_a_failed_resend_keeps_the_old_code(store: Store) -> None:
    vid = _sent(store, code_hash="old")
    record = store.get(vid)
    assert record is not None
    assert store.begin_send(vid, T0 + 30_000, 30_000, 5, LEASE, "n2").outcome == "ok"
    assert store.end_send(record, "n2", T0 + 30_000, TTL, None).outcome == "kept"
    raw = store.client.hgetall(store.record_key(vid))
    assert (raw["code_hash"], raw["sends"], raw["last_sent_at"]) == ("old", "1", str(T0))


def test_begin_send_refusals(store: Store) -> None:
    vid = _sent(store)
    assert store.begin_send(vid, T0 + 29_999, 30_000, 5, LEASE, "n").outcome == "cooldown"
    assert store.begin_send(vid, T0 + 30_000, 30_000, 1, LEASE, "n").outcome == "max_sends"
    assert store.begin_send(vid, T0 + 30_000, 30_000, 5, LEASE, "n2").outcome == "ok"
    assert store.begin_send(vid, T0 + 60_000, 30_000, 5, LEASE, "n3").outcome == "in_flight"
    # A reservation whose worker died lapses after the lease.
    assert store.begin_send(vid, T0 + 30_000 + LEASE, 30_000, 5, LEASE, "n3").outcome == "ok"
    record = store.get(vid)
    assert record is not None
    assert store.end_send(record, "n2", T0, TTL, _sms()).outcome == "stale"
    assert store.begin_send("ffff" + "0" * 24, T0, 30_000, 5, LEASE, "n").outcome == "missing"


def test_wrong_codes_count_up_to_the_limit(store: Store) -> None:
    vid = _sent(store, code_hash="right")
    for left in (2, 1):
        outcome = store.complete(vid, "code", 3, T0, TTL, ["wrong-a", "wrong-b"])
        assert outcome.outcome == "wrong" and outcome.record is not None
        assert 3 - outcome.record.attempts == left
    last = store.complete(vid, "code", 3, T0, TTL, ["wrong"])
    assert last.outcome == "wrong" and last.record is not None and last.record.status == "max_attempts_reached"
    assert store.complete(vid, "code", 3, T0, TTL, ["right"]).outcome == "max_attempts"
    assert "code_hash" not in store.client.hgetall(store.record_key(vid))


def test_approval_happens_once_and_burns_the_code(store: Store) -> None:
    vid = _sent(store, code_hash="right")
    first = store.complete(vid, "code", 5, T0 + 5, TTL, ["other-key-hash", "right"])
    assert first.outcome == "approved" and first.record is not None
    assert (first.record.status, first.record.completed_via, first.record.verified_at) == ("approved", "code",
                                                                                           T0 + 5)
    assert store.complete(vid, "code", 5, T0, TTL, ["right"]).outcome == "not_pending"
    assert "code_hash" not in store.client.hgetall(store.record_key(vid))


def test_replies_do_not_count_attempts_and_calls_need_the_call_channel(store: Store) -> None:
    vid = _sent(store, code_hash="right")
    assert store.complete(vid, "sms_reply", 5, T0, TTL, ["nope"]).outcome == "no_match"
    assert store.complete(vid, "call", 5, T0, TTL, []).outcome == "wrong_channel"
    record = store.get(vid)
    assert record is not None and record.attempts == 0
    assert store.complete(vid, "sms_reply", 5, T0, TTL, ["right"]).outcome == "approved"


def test_switching_channel_moves_the_phone_index(store: Store) -> None:
    vid = _sent(store)
    record = store.get(vid)
    assert record is not None
    assert store.begin_send(vid, T0 + 30_000, 30_000, 5, LEASE, "n2").outcome == "ok"
    call = SendCommit("call", "", "sandbox", "m2", "+447700900001", ("+447700900001", "+447700900002"))
    ended = store.end_send(record, "n2", T0 + 30_000, TTL, call)
    assert ended.outcome == "sent" and ended.record is not None
    assert ended.record.channel == "call" and ended.record.call_numbers == ("+447700900001", "+447700900002")
    assert store.client.get(store.index_key(PHONE, "sms")) is None
    found = store.find(PHONE, "call")
    assert found is not None and found.id == vid


def test_cancel(store: Store) -> None:
    vid = _sent(store)
    assert store.cancel(vid).outcome == "canceled"
    assert store.cancel(vid).outcome == "canceled"
    assert store.complete(vid, "code", 5, T0, TTL, ["h1"]).outcome == "not_pending"
    approved = _sent(store, now=T0 + 1)
    store.complete(approved, "code", 5, T0, TTL, ["h1"])
    assert store.cancel(approved).outcome == "not_pending"
    assert store.cancel("ffff" + "0" * 24).outcome == "missing"


def test_every_key_of_a_phone_shares_one_cluster_slot(store: Store) -> None:
    vid = _sent(store)
    store.outbox_push(PHONE, {"to": PHONE})
    keys = [store.record_key(vid), store.index_key(PHONE, "sms"), store.index_key(PHONE, "call"),
            store.outbox_key(PHONE)]
    assert all(k.startswith("test:{" + tag_for(PHONE) + "}:") for k in keys)
    assert len({key_slot(k.encode()) for k in keys}) == 1
    assert sorted(store.client.keys("*")) == sorted(k for k in keys if store.client.exists(k))


def test_malformed_ids_are_unknown(store: Store) -> None:
    assert store.get("../../etc") is None
    assert store.get("ABCD" + "0" * 24) is None


def test_idempotency_claim(store: Store) -> None:
    assert store.claim_idempotency("k", {"fingerprint": "f"}, 1000) is None
    assert store.claim_idempotency("k", {"fingerprint": "g"}, 1000) == {"fingerprint": "f"}
    store.finish_idempotency("k", {"fingerprint": "f", "status": 201, "body": {}}, 60_000)
    assert store.claim_idempotency("k", {"fingerprint": "f"}, 1000) == {"fingerprint": "f", "status": 201,
                                                                         "body": {}}
    store.release_idempotency("k")
    assert store.claim_idempotency("k", {"fingerprint": "f"}, 1000) is None


def test_a_dead_redis_raises_store_unavailable(tmp_path: Path) -> None:
    server = EmbeddedRedis(tmp_path)
    server.start()
    store = Store.from_url(server.url, "test:")
    assert store.ping()
    server.stop()
    assert not store.ping()
    with pytest.raises(StoreUnavailable):
        store.open(PHONE, "sms", "en", T0, LEASE)
    with pytest.raises(StoreUnavailable):
        store.get("ffff" + "0" * 24)
    server.start()
    assert store.open(PHONE, "sms", "en", T0, LEASE).outcome == "created"
    server.stop()
