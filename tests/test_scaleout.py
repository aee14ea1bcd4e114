"""Scale-out (issue 10): the Procfile's gunicorn on a real Redis Cluster and behind a real Sentinel.

- Two app instances (two gunicorn masters on different ports) share one 3-node cluster: a verification started on
  one is checked on the other, a limit taken on one binds on the other, an event is delivered once.
- A cluster primary is killed under load: the requests whose keys live on it get 503 problems, the rest keep
  working, and after it comes back everything works again by itself.
- Sentinel: under a steady stream of starts and checks, ``SENTINEL FAILOVER`` moves the master; the same gunicorn
  follows it, the switch costs 503 problems and never a 500, nothing approved is lost, and no code works twice.
- Sentinel, a crash: the master of a master, ONE replica and three sentinels is killed (SIGKILL) under that stream.
  The replica is promoted and has no replica of its own: writes go on unconfirmed within seconds (degraded, said on
  /readyz, in the metrics and in the log) and become confirmed again when the old master is back as its replica.
  With ``VERIFY_REDIS_MIN_REPLICAS=1`` they are refused (503) until then instead.

The servers, the SMSC emulator and the burst helper are :mod:`tests.servers`; what was sent is what the emulator
accepted on the wire.
"""

from __future__ import annotations

import re
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import redis
import requests
from redis.cluster import RedisCluster

from tests.conftest import Receiver, make_settings, serving
from tests.redis_servers import EmbeddedCluster, EmbeddedSentinel
from tests.servers import Call, CountingSmsc, Reply, Server, burst, gunicorn_server, send
from verify.quotas import Quota, Quotas
from verify.store import Store, shard_of, tag_for

EVENTS_SECRET = "events-secret-0123456789"
IP_PER_HOUR = 10  # the default VERIFY_LIMIT_IP, 10/hour;50/day
STORE_UNAVAILABLE = "/problems/store-unavailable"


@pytest.fixture(scope="module")
def logs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Where the servers' logs go."""
    return Path(tmp_path_factory.mktemp("gunicorn"))


def phone(i: int) -> str:
    """``+7 999 <i>``: a different number (and prefix block) for each ``i`` below 10 000."""
    return f"+79990{i:06d}"


def start(number: str, ip: str) -> Call:
    return Call("POST", "/v1/verifications", {"phone": number}, ip)


def check(verification_id: str, code: str, ip: str) -> Call:
    return Call("POST", f"/v1/verifications/{verification_id}/check", {"code": code}, ip)


def code_for(smsc: CountingSmsc, number: str) -> str:
    """The code of the newest SMS the emulator accepted for ``number``."""
    sms = next(d for d in reversed(smsc.delivered) if d.kind == "sms" and d.phone == number)
    found = re.search(r"\d{6}", sms.text)
    assert found, sms
    return found.group()


def is_problem(reply: Reply, status: int, problem: str) -> bool:
    return (
        reply.status == status
        and reply.problem == problem
        and reply.content_type.startswith("application/problem+json")
    )


def wait_for(condition: Callable[[], object], what: str, timeout: float = 30.0) -> None:
    """Poll ``condition()`` every 0.1 s until it is true."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout} s: {what}")
        time.sleep(0.1)


# two app instances on one cluster


@dataclass
class Instances:
    one: Server
    other: Server
    receiver: Receiver


@pytest.fixture(scope="module")
def instances(redis_cluster: EmbeddedCluster, logs: Path) -> Iterator[Instances]:
    """Two gunicorn masters (one worker each) on the session cluster, sharing an SMSC emulator and an events
    receiver."""
    receiver = Receiver()
    smsc = CountingSmsc()
    smsc.start()
    settings = {"VERIFY_CAPTCHA_MODE": "off", "VERIFY_EVENTS_SECRET": EVENTS_SECRET}
    try:
        with serving(receiver) as base:
            receiver.url = f"{base}/hooks/verify"
            settings["VERIFY_EVENTS_URL"] = receiver.url
            with (
                gunicorn_server(redis_cluster.url, logs, settings, workers=1, smsc=smsc, name="one") as one,
                gunicorn_server(redis_cluster.url, logs, settings, workers=1, smsc=smsc, name="other") as other,
            ):
                yield Instances(one, other, receiver)
    finally:
        smsc.stop()


@pytest.fixture
def pair(instances: Instances) -> Instances:
    """The two instances on an empty cluster."""
    instances.one.reset()
    return instances


def test_a_verification_started_on_one_instance_is_checked_on_the_other(pair: Instances) -> None:
    number = phone(1)
    started = send(pair.one, start(number, "198.51.100.1"))
    assert started.status == 201, started
    vid = str(started.body["id"])
    checked = send(pair.other, check(vid, code_for(pair.one.smsc, number), "198.51.100.1"))
    assert checked.status == 200 and checked.body["status"] == "approved", checked
    again = send(pair.one, check(vid, code_for(pair.one.smsc, number), "198.51.100.1"))
    assert again.status != 200, again  # approved once, on either instance


def test_a_limit_taken_on_one_instance_binds_on_the_other(pair: Instances) -> None:
    mark = pair.one.smsc.mark()
    # 40 starts from one IP at once, to 40 numbers, every other one to each instance.
    replies = burst([pair.one, pair.other], [start(phone(100 + i), "203.0.113.10") for i in range(40)])
    sent = pair.one.smsc.since(mark, "sms")
    summary = Counter(reply.summary() for reply in replies)
    assert len(sent) == IP_PER_HOUR, f"{len(sent)} SMS for 40 starts from one IP over two instances: {summary}"
    assert summary == {"201": IP_PER_HOUR, "429 /problems/rate-limited ip": 40 - IP_PER_HOUR}
    assert {reply.call.json["phone"] for reply in replies if reply.status == 201 and reply.call.json} == {
        d.phone for d in sent
    }


def test_each_event_is_delivered_once_by_two_instances(pair: Instances) -> None:
    before = len(pair.receiver.received)
    approved = []
    for i in range(12):  # approvals on both instances, so that both journal and both delivery loops run
        number, there, back = phone(200 + i), (pair.one, pair.other)[i % 2], (pair.other, pair.one)[i % 2]
        started = send(there, start(number, f"198.51.100.{i}"))
        assert started.status == 201, started
        checked = send(back, check(str(started.body["id"]), code_for(there.smsc, number), f"198.51.100.{i}"))
        assert checked.status == 200, checked
        approved.append(str(started.body["id"]))

    def approvals() -> list[dict[str, object]]:
        return [e for e in pair.receiver.events()[before:] if e["type"] == "verification.approved"]

    wait_for(lambda: len(approvals()) >= len(approved), "every approval delivered")
    time.sleep(3)  # both loops ran a few more times: a duplicate would have come by now
    events = approvals()
    assert sorted(e["data"]["id"] for e in events) == sorted(approved)  # type: ignore[index]
    assert len({e["id"] for e in events}) == len(events) == len(approved)


# a cluster node dies


@pytest.fixture
def own_cluster(tmp_path: Path) -> Iterator[EmbeddedCluster]:
    """A 3-node cluster of this test's own: it gets a node killed."""
    cluster = EmbeddedCluster(tmp_path / "cluster")
    cluster.start()
    yield cluster
    cluster.stop()


def node_of(store: Store, key: str) -> int:
    """The port of the cluster node that holds ``key``."""
    assert isinstance(store.client, RedisCluster)
    port: int = store.client.get_node_from_key(key).port  # type: ignore[no-untyped-call]
    return port


def flow_nodes(store: Store, ip: str, number: str) -> tuple[int, set[int]]:
    """The ports of the cluster nodes a start and a check from ``ip`` for ``number`` touch: its phone's slot's, and
    the others (its IP's and number range's quotas, the IP's check quota, SMSC's circuit breaker, the events
    journal's hint shard; the defaults: no country or global limit, and here the captcha is off)."""
    quotas = Quotas.from_settings(make_settings("redis://unused"))
    assert quotas.check_ip is not None
    taken = [*quotas.for_send(ip, number, "RU", start=True), Quota(quotas.check_ip, ip)]
    others = [
        store.breaker_key("smsc"),
        store.journal_hints_key(shard_of(tag_for(number))),  # (events on)
        *(store.quota_key(quota) for quota in taken),
    ]
    return node_of(store, f"{{{tag_for(number)}}}"), {node_of(store, key) for key in others}


def pick_flows(store: Store, victim: int) -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
    """(IP, number) pairs, one IP and number range each so that no IP or range limit binds: 20 whose keys all avoid
    the node on port ``victim``, and 10 whose phone's slot alone is on it."""
    spared: list[tuple[str, str]] = []
    doomed: list[tuple[str, str]] = []
    for i in range(1, 1000):
        ip, number = f"10.{i // 250}.{i % 250}.1", f"+7999{i:03d}4567"
        phone_node, others = flow_nodes(store, ip, number)
        if victim in others:
            continue
        if phone_node != victim and len(spared) < 20:
            spared.append((ip, number))
        elif phone_node == victim and len(doomed) < 10:
            doomed.append((ip, number))
    assert len(spared) == 20 and len(doomed) == 10
    return spared, doomed


def victim_of(cluster: EmbeddedCluster, store: Store) -> int:
    """The index in ``cluster.nodes`` of a primary that holds neither SMSC's breaker (which every send reads) nor
    the events outbox (which every delivery uses)."""
    assert isinstance(store.client, RedisCluster)
    keys = (store.breaker_key("smsc"), store.schedule_keys("events")[0], store.delivered_key())
    deadline = time.monotonic() + 30
    while True:
        # A cluster just made may not have settled its roles when the client first asked (seen once in a full run:
        # no primary free of those keys): ask again until it has.
        primaries = {node.port for node in store.client.get_primaries()}  # type: ignore[no-untyped-call]
        shared = {node_of(store, key) for key in keys}
        free = [i for i, node in enumerate(cluster.nodes) if node.port in primaries and node.port not in shared]
        if free and len(primaries) == len(cluster.nodes) // (1 + cluster.replicas):
            return free[0]
        if time.monotonic() > deadline:
            raise AssertionError(f"no primary free of {keys}: primaries {primaries}, theirs {shared}")
        time.sleep(0.2)
        store.client.nodes_manager.initialize()


def test_a_dead_primary_fails_only_its_own_keys_and_recovers(own_cluster: EmbeddedCluster, logs: Path) -> None:
    store = Store.from_url(own_cluster.url, make_settings("redis://unused").redis_prefix)
    victim = victim_of(own_cluster, store)
    spared, doomed = pick_flows(store, own_cluster.nodes[victim].port)
    receiver = Receiver()
    with (
        serving(receiver) as base,
        gunicorn_server(
            own_cluster.url,
            logs,
            {"VERIFY_CAPTCHA_MODE": "off", "VERIFY_EVENTS_URL": f"{base}/hooks", "VERIFY_EVENTS_SECRET": EVENTS_SECRET},
            workers=1,
            name="nodedeath",
        ) as server,
    ):
        # Before: everything works, a verification lives on the victim.
        ip, number = doomed[0]
        on_victim = send(server, start(number, ip))
        assert on_victim.status == 201, on_victim
        own_cluster.kill(victim)
        load = burst(server, [start(number, ip) for ip, number in spared[:10] + doomed[1:6]])
        for reply in load[:10]:
            assert reply.status == 201, reply  # nothing they need is on the dead node
        for reply in load[10:]:
            assert is_problem(reply, 503, STORE_UNAVAILABLE), reply  # their phone's slot is on it
        for (ip, number), reply in zip(spared, load[:10], strict=False):
            checked = send(server, check(str(reply.body["id"]), code_for(server.smsc, number), ip))
            assert checked.status == 200, checked
        gone = send(server, Call("GET", f"/v1/verifications/{on_victim.body['id']}"))
        assert is_problem(gone, 503, STORE_UNAVAILABLE), gone
        # Their events go out while the node is down (the journals on it wait; the others are swept).
        approved = {str(reply.body["id"]) for reply in load[:10]}
        wait_for(
            lambda: approved <= {e["data"]["id"] for e in receiver.events() if e["type"] == "verification.approved"},
            "their approvals delivered",
        )
        # The node comes back (empty: it had no replica and no persistence): its slots work again by themselves.
        own_cluster.revive(victim)
        ip, number = doomed[6]
        wait_for(lambda: send(server, start(number, ip)).status == 201, "a start on the revived node")
        for ip, number in spared[10:12] + doomed[7:9]:
            assert send(server, start(number, ip)).status == 201
        assert "Traceback" not in server.tail(400)
    store.close()


def test_a_dead_primary_s_replica_takes_over_its_slots(tmp_path: Path, logs: Path) -> None:
    cluster = EmbeddedCluster(tmp_path / "cluster", replicas=1)  # 3 primaries, each with a replica
    cluster.start()
    try:
        store = Store.from_url(cluster.url, make_settings("redis://unused").redis_prefix)
        victim = victim_of(cluster, store)
        spared, doomed = pick_flows(store, cluster.nodes[victim].port)
        with gunicorn_server(cluster.url, logs, {"VERIFY_CAPTCHA_MODE": "off"}, workers=1, name="promotion") as server:
            ip, number = doomed[0]
            before = send(server, start(number, ip))
            assert before.status == 201, before
            code = code_for(server.smsc, number)
            with redis.Redis(port=cluster.nodes[victim].port) as primary:
                assert primary.wait(1, 5000) == 1  # the replica has it
            cluster.kill(victim)
            ip, number = spared[0]
            assert send(server, start(number, ip)).status == 201  # the other primaries serve on
            # Its replica is promoted (cluster-node-timeout 2 s) and the service finds it by itself.
            path = f"/v1/verifications/{before.body['id']}"
            wait_for(lambda: send(server, Call("GET", path)).status == 200, "the promoted replica serving")
            checked = send(server, check(str(before.body["id"]), code, doomed[0][0]))
            assert checked.status == 200 and checked.body["status"] == "approved", checked
            for ip, number in doomed[1:4] + spared[1:3]:
                assert send(server, start(number, ip)).status == 201
            assert "Traceback" not in server.tail(400)
        store.close()
    finally:
        cluster.stop()


# Sentinel failover under load


@dataclass
class Stream:
    """A steady stream of start-then-check flows from a few threads, recording every answer."""

    server: Server
    stop: threading.Event = field(default_factory=threading.Event)
    replies: list[tuple[float, Reply]] = field(default_factory=list)
    approvals: Counter[str] = field(default_factory=Counter)  # verification id -> checks answered 200
    codes: dict[str, str] = field(default_factory=dict)
    errors: list[BaseException] = field(default_factory=list)
    # Checks answered 409 not-pending when tried again after a 503: the first try's write landed although its answer
    # could not say so (its replica's acknowledgement was lost in the switch). Each must be approved.
    landed: list[str] = field(default_factory=list)
    numbers: Iterator[int] = field(default_factory=lambda: iter(range(10**6)))

    def _send(self, call: Call) -> Reply:
        reply = send(self.server, call, timeout=10)
        self.replies.append((time.monotonic(), reply))
        return reply

    def _flow(self) -> None:
        number = phone(next(self.numbers))
        ip = f"10.9.{int(number[-4:]) // 250}.{int(number[-4:]) % 250}"
        started = self._send(start(number, ip))
        if started.status != 201:
            return
        vid = str(started.body["id"])
        code = self.codes[vid] = code_for(self.server.smsc, number)
        for tries in range(50):  # a check answered 503 is tried again, as a client would
            checked = self._send(check(vid, code, ip))
            if checked.status == 200:
                self.approvals[vid] += 1
            if checked.status == 409 and tries and is_problem(checked, 409, "/problems/not-pending"):
                self.landed.append(vid)
            if checked.status != 503:
                return
            time.sleep(0.1)

    def run(self) -> None:
        try:
            while not self.stop.is_set():
                self._flow()
        except BaseException as err:
            self.errors.append(err)

    def approved_since(self, moment: float) -> int:
        return sum(1 for at, reply in self.replies if at > moment and reply.status == 200)

    def failed_since(self, moment: float) -> list[tuple[float, Reply]]:
        """The answers after ``moment`` that were server errors (503: the writes that failed)."""
        return [(at, reply) for at, reply in list(self.replies) if at > moment and reply.status >= 500]

    def steady_since(self, moment: float, seconds: float = 2.0) -> bool:
        """Whether, after ``moment``, the last failure is ``seconds`` old and 10 starts or checks succeeded since."""
        last = max((at for at, _ in self.failed_since(moment)), default=moment)
        succeeded = sum(1 for at, reply in list(self.replies) if at > last and reply.status in (200, 201))
        return time.monotonic() - last >= seconds and succeeded >= 10

    def finish(self, threads: list[threading.Thread]) -> None:
        self.stop.set()
        for thread in threads:
            thread.join(60)
        assert self.errors == []

    def loses_nothing(self, server: Server) -> None:
        """Every approval answered 200 is still approved, each code worked once, and works no more."""
        assert all(count == 1 for count in self.approvals.values()), self.approvals

        def still_approved(vid: str) -> None:
            got = send(server, Call("GET", f"/v1/verifications/{vid}"))
            assert got.status == 200 and got.body["status"] == "approved", got
            again = send(server, check(vid, self.codes[vid], "10.8.0.1"))
            assert again.status != 200, again

        with ThreadPoolExecutor(8) as pool:
            list(pool.map(still_approved, list(self.approvals)))


def streaming(server: Server, threads: int = 4) -> tuple[Stream, list[threading.Thread]]:
    """A :class:`Stream` on ``server`` from ``threads`` threads, running."""
    stream = Stream(server)
    running = [threading.Thread(target=stream.run, daemon=True) for _ in range(threads)]
    for thread in running:
        thread.start()
    return stream, running


def scraped(server: Server, name: str, **labels: str) -> float | None:
    """The value of one sample on ``/metrics`` (``None`` when absent)."""
    text = requests.get(server.url("/metrics"), timeout=10).text
    selector = ",".join(f'{k}="{v}"' for k, v in labels.items())
    found = re.search(rf"^{name}{{{selector}}} (\S+)$" if labels else rf"^{name} (\S+)$", text, re.MULTILINE)
    return float(found.group(1)) if found else None


def crash_the_master(sentinel: EmbeddedSentinel, stream: Stream) -> tuple[float, float]:
    """Once the stream has 20 approvals, SIGKILL the master and wait for the sentinels to promote its replica;
    returns the moments of the kill and of the promotion."""
    wait_for(lambda: len(stream.approvals) >= 20, "20 approvals before the crash")
    old = sentinel.master_port()
    assert old == sentinel.master.port
    killed_at = time.monotonic()
    sentinel.kill(sentinel.master)
    wait_for(lambda: sentinel.master_port() != old, "the sentinels promote the replica", timeout=30)
    return killed_at, time.monotonic()


# A check answered 503 is tried again every 0.1 s: no IP limit may end a flow instead.
CONFIG_PREFIX = "verify:"  # the servers' VERIFY_REDIS_PREFIX (the default)
CRASH_SETTINGS = {
    "VERIFY_CAPTCHA_MODE": "off",
    "VERIFY_LIMIT_IP": "none",
    "VERIFY_LIMIT_PREFIX": "none",
    "VERIFY_LIMIT_CHECK_IP": "none",
}
OUTAGE_BOUND_S = 20.0


def test_a_sentinel_failover_under_load_loses_nothing(tmp_path: Path, logs: Path) -> None:
    sentinel = EmbeddedSentinel(tmp_path / "sentinel")
    sentinel.start()
    try:
        watcher = redis.Redis(port=sentinel.sentinel.port, decode_responses=True)
        first = watcher.sentinel_get_master_addr_by_name(sentinel.service)
        store = Store.from_url(sentinel.url, "t:")  # what check-config --live prints
        assert store.topology() == [f"sentinel master 127.0.0.1:{sentinel.master.port} (1 replicas)"]
        with gunicorn_server(
            sentinel.url,
            logs,
            {"VERIFY_CAPTCHA_MODE": "off", "VERIFY_LIMIT_IP": "none", "VERIFY_LIMIT_PREFIX": "none"},
            workers=2,
            name="sentinel",
        ) as server:
            pid = server.process.pid
            stream = Stream(server)
            threads = [threading.Thread(target=stream.run, daemon=True) for _ in range(4)]
            for thread in threads:
                thread.start()
            wait_for(lambda: len(stream.approvals) >= 20, "20 approvals before the failover")
            switched_at = time.monotonic()
            before = set(stream.approvals)
            watcher.execute_command("SENTINEL", "FAILOVER", sentinel.service)  # type: ignore[no-untyped-call]
            wait_for(
                lambda: watcher.sentinel_get_master_addr_by_name(sentinel.service) != first,
                "the sentinel names the new master",
            )
            # The same gunicorn (no restart) serves on the new master.
            wait_for(lambda: stream.approved_since(time.monotonic() - 1) >= 10, "approvals on the new master")
            stream.stop.set()
            for thread in threads:
                thread.join(30)
            assert stream.errors == []
            assert server.process.pid == pid and server.process.poll() is None
            statuses = Counter(reply.status for _, reply in stream.replies)
            print(f"answers across the failover: {dict(statuses)}; approvals: {len(stream.approvals)}")
            assert set(statuses) <= {200, 201, 409, 503}, statuses  # never a 500
            assert statuses[409] == len(stream.landed), stream.landed  # a 409 only when a retried check had landed
            for _, reply in stream.replies:
                if reply.status == 503:
                    assert is_problem(reply, 503, STORE_UNAVAILABLE), reply
            for vid in stream.landed:
                got = send(server, Call("GET", f"/v1/verifications/{vid}"))
                assert got.status == 200 and got.body["status"] == "approved", got
            # Nothing approved before the switch is lost, and no code worked twice, across it or after it.
            assert all(count == 1 for count in stream.approvals.values()), stream.approvals
            for vid in before:
                got = send(server, Call("GET", f"/v1/verifications/{vid}"))
                assert got.status == 200 and got.body["status"] == "approved", got
                again = send(server, check(vid, stream.codes[vid], "10.8.0.1"))
                assert again.status != 200, again
            assert stream.approved_since(switched_at) >= 10
            # The old master comes back as the new one's replica (writes went on meanwhile: no replica could take
            # over from the new master).
            promoted = [f"sentinel master 127.0.0.1:{sentinel.replica.port} (1 replicas)"]
            wait_for(lambda: store.topology() == promoted, "the old master a replica of the new one")
        store.close()
    finally:
        sentinel.stop()


def test_a_master_crash_that_leaves_no_replica_costs_seconds_not_a_minute(tmp_path: Path, logs: Path) -> None:
    sentinel = EmbeddedSentinel(tmp_path / "sentinel", replicas=1, sentinels=3, down_after_ms=2000)
    sentinel.start()
    try:
        with gunicorn_server(sentinel.url, logs, CRASH_SETTINGS, workers=2, name="crash") as server:
            stream, threads = streaming(server)
            killed_at, promoted_at = crash_the_master(sentinel, stream)
            # The promoted replica has no replica: writes go on, unconfirmed, within seconds of the promotion.
            wait_for(lambda: stream.steady_since(killed_at), "writes succeed steadily again", timeout=OUTAGE_BOUND_S)
            failed = stream.failed_since(killed_at)
            outage = max((at for at, _ in failed), default=killed_at) - killed_at
            acknowledged = min(
                at for at, r in list(stream.replies) if at > killed_at + outage and r.status in (200, 201)
            )
            ready = requests.get(server.url("/readyz"), timeout=10)
            assert (ready.status_code, ready.json()) == (
                200,
                {"status": "degraded", "redis": "no replica confirms writes"},
            )
            # A scrape reads the master's ROLE: one that meets a connection the crash broke leaves the gauges out.
            wait_for(lambda: scraped(server, "verify_redis_degraded") == 1, "the degraded gauge", 5)
            assert scraped(server, "verify_redis_replicas") == 0
            # Each worker's first write on the new master waited for the replica it knew of, in vain: counted.
            assert (scraped(server, "verify_redis_errors_total", kind="wait_timeout") or 0) >= 1
            stream.finish(threads)
            print(
                f"kill -9 of the master: promoted after {promoted_at - killed_at:.1f} s, writes failed for "
                f"{outage:.1f} s ({len(failed)} answers 503), the next one was acknowledged after "
                f"{acknowledged - killed_at:.1f} s"
            )
            assert outage < OUTAGE_BOUND_S
            assert set(Counter(reply.status for _, reply in stream.replies)) <= {200, 201, 409, 503}  # never a 500
            for _, reply in failed:
                assert is_problem(reply, 503, STORE_UNAVAILABLE), reply
            stream.loses_nothing(server)
            # The old master comes back, empty; the sentinels make it the new master's replica (after 8 s), and
            # writes wait for it again: what is acknowledged now is on the replica.
            sentinel.revive(sentinel.master)
            wait_for(lambda: scraped(server, "verify_redis_degraded") == 0, "the old master back as a replica", 40)
            assert requests.get(server.url("/readyz"), timeout=10).json() == {"status": "ok"}
            on_replica = redis.Redis(port=sentinel.master.port)
            keys = Store(on_replica, CONFIG_PREFIX)
            for i in range(3):
                number = phone(900_000 + i)
                started = send(server, start(number, "10.7.0.1"))
                assert started.status == 201, started
                checked = send(server, check(str(started.body["id"]), code_for(server.smsc, number), "10.7.0.1"))
                assert checked.status == 200, checked
                status = on_replica.hget(keys.record_key(str(started.body["id"])), "s")  # FIELDS: "status"
                assert status == b"approved"
            keys.close()
            log = server.log.read_text(errors="replace")
            # Once per worker and change (a worker may see the sentinels hesitate once while the old master comes
            # back), not once per request.
            assert 1 <= log.count("writes go on unconfirmed (degraded)") <= 4
            assert 1 <= log.count("replica(s) online again") <= 2
            assert "Traceback" not in log
    finally:
        sentinel.stop()


def test_with_a_replica_required_a_master_crash_refuses_writes_until_one_is_back(tmp_path: Path, logs: Path) -> None:
    sentinel = EmbeddedSentinel(tmp_path / "sentinel", replicas=1, sentinels=3, down_after_ms=2000)
    sentinel.start()
    try:
        settings = {**CRASH_SETTINGS, "VERIFY_REDIS_MIN_REPLICAS": "1"}
        with gunicorn_server(sentinel.url, logs, settings, workers=2, name="strict") as server:
            stream, threads = streaming(server)
            killed_at, promoted_at = crash_the_master(sentinel, stream)
            # Every write on the new master waits for a replica it does not have: 503, "it may have been applied".
            wait_for(
                lambda: any(
                    "may have been applied" in str(r.body.get("detail")) for _, r in stream.failed_since(promoted_at)
                ),
                "a write refused on the new master",
            )
            refusing_from = time.monotonic()
            ready = requests.get(server.url("/readyz"), timeout=10)
            assert ready.status_code == 503 and "VERIFY_REDIS_MIN_REPLICAS" in ready.json()["detail"], ready.text
            wait_for(lambda: scraped(server, "verify_redis_degraded") == 1, "the degraded gauge", 5)
            time.sleep(3)
            held = [(at, r) for at, r in list(stream.replies) if at > refusing_from]
            assert held and all(is_problem(r, 503, STORE_UNAVAILABLE) for _, r in held), Counter(
                r.status for _, r in held
            )
            # The old master comes back as the new master's replica: writes are confirmed again.
            revived_at = time.monotonic()
            sentinel.revive(sentinel.master)
            wait_for(lambda: stream.steady_since(revived_at), "writes confirmed by the revived replica", timeout=40)
            recovered_at = max(at for at, _ in stream.failed_since(killed_at))
            stream.finish(threads)
            print(
                f"kill -9 of the master, a replica required: promoted after {promoted_at - killed_at:.1f} s, writes "
                f"refused for {recovered_at - killed_at:.1f} s, {recovered_at - revived_at:.1f} s of it after the old "
                "master was started again"
            )
            assert requests.get(server.url("/readyz"), timeout=10).json() == {"status": "ok"}
            stream.loses_nothing(server)
            log = server.log.read_text(errors="replace")
            assert 1 <= log.count("writes are refused (503)") <= 2
            assert "writes go on unconfirmed" not in log and "Traceback" not in log
    finally:
        sentinel.stop()
