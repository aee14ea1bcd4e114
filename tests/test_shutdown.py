"""Graceful shutdown: SIGTERM lets gunicorn's workers finish their requests, and the event loop stops between two
events, so no event is lost and none is sent twice.

- In-process: ``Events.deliver(stop)`` stops after the event it is posting (marked delivered) and hands the rest of
  its claim back, due at once, instead of leaving them leased for a minute; ``app.extensions["verify.events.stop"]``
  (what gunicorn.conf.py's ``worker_exit`` calls) returns only once the loop has marked the event it was posting.
- The Procfile's gunicorn with two workers, a slow events receiver and starts and approving checks fired from
  threads, gets SIGTERM while a start waits on the SMS gateway and an event POST waits on the receiver. The start
  still gets its 201, no answer is a 5xx (connections refused once it stopped listening are counted apart), the
  master exits 0 without a graceful timeout, and once a fresh server on the same Redis has emptied the outbox,
  every approved verification (each check answered 200 among them) has exactly one ``verification.approved``.
"""

from __future__ import annotations

import itertools
import os
import re
import signal
import socket
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import requests
from flask.testing import FlaskClient
from werkzeug.wrappers import Request, Response

from tests.conftest import MovableClock, Receiver, check, last_code, serving, start
from tests.providers.emulator import Seen
from tests.servers import AUTH, CountingSmsc, Server, gunicorn_server
from verify import create_app
from verify.config import Settings
from verify.events import OUTBOX
from verify.service import Service
from verify.store import SHARDS, Store

EVENTS_SECRET = "events-secret-0123456789"
APPROVED = "verification.approved"
HOLD_TIMEOUT_S = 20.0  # a held request is let go by then whatever happens, so a failing test does not hang
WAIT_TIMEOUT_S = 20.0
LOAD_THREADS = 4
# Off for this test: every start comes from one client IP and many from one number range; the limits have their own
# tests, and here they would only turn starts into 429s.
NO_LIMITS = {
    "VERIFY_LIMIT_IP": "off",
    "VERIFY_LIMIT_PREFIX": "off",
    "VERIFY_LIMIT_CHECK_IP": "off",
    "VERIFY_CAPTCHA_MODE": "off",
}


def phone(i: int) -> str:
    """A different number for each ``i``."""
    return f"+7999{i:07d}"


def wait_for(condition: Callable[[], object], what: str, timeout: float = WAIT_TIMEOUT_S) -> None:
    """Poll ``condition()`` every 0.05 s until it is true."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout} s: {what}")
        time.sleep(0.05)


# in-process: the loop stops between two events


def approve(client: FlaskClient, number: str) -> str:
    """Start and approve a verification of ``number``; returns its id."""
    vid: str = start(client, number).get_json()["id"]
    assert check(client, vid, last_code(client, number)).status_code == 200
    return vid


def outbox_size(service: Service) -> int:
    return int(service.store.client.zcard(service.store.schedule_keys(OUTBOX)[0]))


def test_delivery_stops_after_the_event_being_posted_and_hands_the_rest_back(
    settings: Settings, clock: MovableClock
) -> None:
    stop = threading.Event()
    receiver = Receiver()

    def sigterm_meanwhile(environ: dict[str, Any], start_response: Any) -> Any:
        stop.set()  # the worker is told to stop while an event is on its way
        return receiver(environ, start_response)

    with serving(sigterm_meanwhile) as base:
        app = create_app(
            replace(settings, events_url=base, events_secrets=(EVENTS_SECRET,)), clock=clock, background=False
        )
        client = app.test_client()
        service: Service = app.extensions["verify"]
        approved = [approve(client, phone(i)) for i in range(3)]
        assert service.events.collect() == 3
        assert service.events.deliver(stop) == 1  # the one being posted is marked, the next two are not posted
        assert len(receiver.received) == 1 and outbox_size(service) == 2
        # Handed back due now (the clock has not moved): the next loop takes them at once, not after the lease.
        assert service.events.deliver() == 2
    events = receiver.events()
    assert sorted(e["data"]["id"] for e in events) == sorted(approved)
    assert len({e["id"] for e in events}) == 3 and outbox_size(service) == 0


def test_the_stop_extension_returns_once_the_event_being_posted_is_marked(settings: Settings) -> None:
    posting = threading.Event()
    receiver = Receiver()

    def slow(environ: dict[str, Any], start_response: Any) -> Any:
        posting.set()
        time.sleep(0.3)  # keeps the POST in flight while the test stops the loop
        return receiver(environ, start_response)

    with serving(slow) as base:
        before = set(threading.enumerate())
        app = create_app(replace(settings, events_url=base, events_secrets=(EVENTS_SECRET,)))  # the loop runs
        (loop,) = [t for t in threading.enumerate() if t not in before and t.name == "verify-events"]
        client = app.test_client()
        service: Service = app.extensions["verify"]
        try:
            vid = approve(client, phone(1))
            assert posting.wait(WAIT_TIMEOUT_S), "the loop never posted the event"
        finally:
            app.extensions["verify.events.stop"]()
        assert not loop.is_alive()
        # Not "posted, and marked later": marked before the stop returned, so the worker may exit now.
        assert outbox_size(service) == 0
        assert [e["data"]["id"] for e in receiver.events()] == [vid]


# the Procfile's gunicorn gets SIGTERM under load


class HoldingSmsc(CountingSmsc):
    """The SMSC emulator, holding the send to ``held`` until :attr:`release` is set."""

    def __init__(self, held: str) -> None:
        super().__init__()
        self.held = held
        self.holding = threading.Event()
        self.release = threading.Event()

    def answer(self, request: Request, seen: Seen) -> Response:
        """SMSC's answer, late for the held number."""
        if {**seen.query, **seen.form}.get("phones") == self.held:
            self.holding.set()
            self.release.wait(HOLD_TIMEOUT_S)
        return super().answer(request, seen)


@dataclass
class SlowReceiver(Receiver):
    """The customer's endpoint, ``delay`` seconds per POST. Once :attr:`armed`, every POST waits for
    :attr:`release`; :attr:`holding` is set when ``hold`` of them wait (one per delivery loop)."""

    delay: float = 0.3
    hold: int = 2
    posts: int = 0  # POSTs begun
    held: int = 0
    armed: threading.Event = field(default_factory=threading.Event)
    holding: threading.Event = field(default_factory=threading.Event)
    release: threading.Event = field(default_factory=threading.Event)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Any:
        with self.lock:
            self.posts += 1
            if self.armed.is_set() and not self.release.is_set():
                self.held += 1
                if self.held == self.hold:
                    self.holding.set()
        if self.armed.is_set():
            self.release.wait(HOLD_TIMEOUT_S)
        else:
            time.sleep(self.delay)
        return super().__call__(environ, start_response)


@dataclass
class Load:
    """Starts and approving checks fired from threads until the server stops listening, and what they got."""

    server: Server
    terminated: threading.Event = field(default_factory=threading.Event)
    numbers: Iterator[int] = field(default_factory=lambda: itertools.count(100))
    started: list[str] = field(default_factory=list)
    approved: list[str] = field(default_factory=list)  # ids whose check answered 200 "approved"
    statuses: list[int] = field(default_factory=list)  # of every answer
    refused_after: list[str] = field(default_factory=list)  # connection errors once SIGTERM was sent
    refused_before: list[str] = field(default_factory=list)  # connection errors before SIGTERM: a failure

    def post(self, path: str, body: dict[str, str]) -> requests.Response | None:
        """POST on a connection of its own; ``None`` when it could not connect or got no answer."""
        try:
            reply = requests.post(self.server.url(path), json=body, headers=AUTH, timeout=30)
        except requests.ConnectionError as err:
            (self.refused_after if self.terminated.is_set() else self.refused_before).append(repr(err))
            return None
        self.statuses.append(reply.status_code)
        return reply

    def run(self) -> None:
        """One thread's loop: start a verification, check it with its code, until a request finds no server."""
        while True:
            number = phone(next(self.numbers))
            started = self.post("/v1/verifications", {"phone": number})
            if started is None:
                return
            if started.status_code != 201:
                continue
            vid = started.json()["id"]
            self.started.append(vid)
            checked = self.post(f"/v1/verifications/{vid}/check", {"code": code_for(self.server.smsc, number)})
            if checked is None:
                return
            if checked.status_code == 200 and checked.json()["status"] == "approved":
                self.approved.append(vid)


def code_for(smsc: CountingSmsc, number: str) -> str:
    """The code in the newest SMS the emulator accepted for ``number``."""
    sms = next(d for d in reversed(smsc.delivered) if d.kind == "sms" and d.phone == number)
    found = re.search(r"\d{6}", sms.text)
    assert found, sms
    return found.group()


def refuses_connections(server: Server) -> bool:
    try:
        socket.create_connection((server.host, server.port), timeout=1).close()
    except (ConnectionRefusedError, ConnectionResetError):  # a reset: the listener closed with our SYN queued
        return True
    return False


def drained(redis_url: str) -> bool:
    """No event waits in the outbox and no journal is hinted: nothing more will be posted."""
    store = Store.from_url(redis_url, Settings.redis_prefix)
    try:
        outbox, _ = store.schedule_keys(OUTBOX)
        waiting = store.client.zcard(outbox) + sum(
            store.client.zcard(store.journal_hints_key(shard)) for shard in range(SHARDS)
        )
    finally:
        store.close()
    return waiting == 0


def test_sigterm_under_load_loses_no_request_and_no_event(redis_url: str, tmp_path: Path) -> None:
    held_number = phone(1)
    smsc = HoldingSmsc(held_number)
    smsc.start()
    receiver = SlowReceiver()
    try:
        with serving(receiver) as base:
            receiver.url = base
            settings = {**NO_LIMITS, "VERIFY_EVENTS_URL": base, "VERIFY_EVENTS_SECRET": EVENTS_SECRET}
            with gunicorn_server(redis_url, tmp_path, settings, workers=2, smsc=smsc, name="first") as first:
                load = Load(first)
                threads = [threading.Thread(target=load.run, daemon=True) for _ in range(LOAD_THREADS)]
                for thread in threads:
                    thread.start()
                # Once the outbox has a backlog (each loop deep in a claim of many events), each loop's next POST
                # waits at the receiver, and a start waits on the gateway: all in flight at SIGTERM.
                wait_for(lambda: len(load.approved) >= 40 and receiver.posts >= 4, "a backlog of events")
                receiver.armed.set()
                assert receiver.holding.wait(WAIT_TIMEOUT_S), "the delivery loops did not both post"
                held: list[requests.Response | None] = []
                held_start = threading.Thread(
                    target=lambda: held.append(load.post("/v1/verifications", {"phone": held_number}))
                )
                held_start.start()
                assert smsc.holding.wait(WAIT_TIMEOUT_S), "the held start never reached the gateway"
                load.terminated.set()
                os.kill(first.process.pid, signal.SIGTERM)
                wait_for(lambda: refuses_connections(first), "the server stopped listening")
                smsc.release.set()  # the start in flight finishes after the server stopped listening
                held_start.join(HOLD_TIMEOUT_S)
                # Each worker has finished its requests and told its loop to stop (worker_exit), and waits for it.
                wait_for(
                    lambda: first.log.read_text(errors="replace").count("events: the loop is stopping") == 2,
                    "both workers stopping their event loops",
                )
                posts_begun = receiver.posts
                receiver.release.set()
                first.process.wait(WAIT_TIMEOUT_S)
                # Each loop finished the POST it was in, and began no other (the rest of its claim was handed back).
                assert receiver.posts == posts_begun, f"{receiver.posts - posts_begun} POSTs begun after the stop"
                for thread in threads:
                    thread.join(WAIT_TIMEOUT_S)
            log = first.log.read_text(errors="replace")
            assert first.process.returncode == 0, first.tail()
            for trouble in (
                "Worker graceful timeout",
                "did not stop within",
                "Exception during worker exit",
                "Traceback",
            ):
                assert trouble not in log, f"{trouble!r} in {first.log}; its end:\n{first.tail(20)}"
            assert held and held[0] is not None and held[0].status_code == 201, held
            assert load.refused_before == [], load.refused_before
            assert not [status for status in load.statuses if status >= 500], Counter(load.statuses)
            assert len(load.refused_after) <= LOAD_THREADS  # each thread stops at its first refused connection

            # A fresh server on the same Redis delivers what the first left in the outbox.
            receiver.delay = 0
            with gunicorn_server(redis_url, tmp_path, settings, workers=1, smsc=smsc, name="fresh") as fresh:
                wait_for(lambda: drained(redis_url), "the outbox emptied by the fresh server")
                session = requests.Session()
                with session:
                    status = {
                        vid: session.get(fresh.url(f"/v1/verifications/{vid}"), headers=AUTH, timeout=30).json()[
                            "status"
                        ]
                        for vid in load.started
                    }
        approved = {vid for vid, state in status.items() if state == "approved"}
        assert set(load.approved) <= approved  # and approvals whose answer was lost count too
        events = [e for e in receiver.events() if e["type"] == APPROVED]
        by_id = Counter(e["id"] for e in events)
        assert [event_id for event_id, n in by_id.items() if n > 1] == [], "an event was posted twice"
        per_verification = Counter(e["data"]["id"] for e in events)
        assert set(per_verification) == approved, "an approval without its event, or an event without approval"
        assert set(per_verification.values()) == {1}
    finally:
        smsc.release.set()
        receiver.release.set()
        smsc.stop()
