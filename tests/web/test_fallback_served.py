"""Fallback chains (issue 20 §3) as they ship: the Procfile's gunicorn, the real Redis, the gateways' wire emulators.

tests/test_fallback.py drives the state machine by hand with an injected clock; here nothing is driven: the chain's
steps are taken by the background loop of real gevent workers (the sweep moves them to their shard's schedule, a
worker claims what is due), on the real clock, and what was sent is what the SMSC emulator accepted on the wire
(:class:`tests.servers.CountingSmsc`: a ``send.php`` it answered with success; ``call=1`` is a voice call that speaks
the code digit by digit). Telegram is the Gateway API emulator, which answers ``ok: false`` for a number it is told
has no Telegram account.

One gunicorn (two workers) serves the module, with Telegram and voice through SMSC configured, the captcha off, the IP
limit at 10 an hour, a send lease of 5 s (the shortest allowed; the gateway timeouts, 1 s to connect and 3 s to read,
fit in it) so that a dead worker's step comes back within the test. Redis is flushed before each test. Waits are the
real ones, kept short with per-step ``wait`` of 1 or 2 s. The last test kills one of the workers (the master starts
another); it holds a gateway request open with the emulator's :meth:`~tests.providers.emulator.Emulator.hold`.
"""

from __future__ import annotations

import math
import re
import signal
import time
from collections import Counter
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import psutil
import pytest
import requests

from tests.providers.emulator import Seen
from tests.providers.telegram_emulator import TOKEN, TelegramEmulator
from tests.servers import AUTH, Call, Server, burst, eventually, gunicorn_server, send
from verify.embedded import EmbeddedRedis

LEASE_S = 5  # VERIFY_SEND_LEASE: how long a claimed step (and its reserved send) stays with its worker
IP_PER_HOUR = 10  # VERIFY_LIMIT_IP
CODE_LENGTH = 6  # VERIFY_CODE_LENGTH's default
SMS_THEN_VOICE = [{"channel": "sms", "wait": 1}, "voice"]


@pytest.fixture(scope="module")
def telegram() -> Iterator[TelegramEmulator]:
    emulator = TelegramEmulator()
    emulator.start()
    yield emulator
    emulator.stop()


@pytest.fixture(scope="module")
def module_server(
    redis_server: EmbeddedRedis, telegram: TelegramEmulator, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Server]:
    settings = {
        "VERIFY_CAPTCHA_MODE": "off",
        "VERIFY_VOICE_PROVIDERS": "smsc",
        "VERIFY_TELEGRAM_TOKEN": TOKEN,
        "VERIFY_TELEGRAM_URL": telegram.url,
        "VERIFY_LIMIT_IP": f"{IP_PER_HOUR}/hour",
        "VERIFY_SEND_LEASE": str(LEASE_S),
        "VERIFY_HTTP_CONNECT_TIMEOUT": "1",
        "VERIFY_HTTP_READ_TIMEOUT": "3",
    }
    logs = Path(tmp_path_factory.mktemp("gunicorn"))
    with gunicorn_server(redis_server.url, logs, settings, workers=2, name="fallback") as server:
        yield server


@pytest.fixture
def server(module_server: Server, telegram: TelegramEmulator) -> Iterator[Server]:
    """The module's server on an empty Redis, its emulators answering normally; its log lines of this test are
    printed after it (pytest shows them when the test fails)."""
    module_server.reset()
    telegram.no_account.clear()
    telegram.taken.clear()
    offset = module_server.log_size()
    yield module_server
    for hold in module_server.smsc.holds:
        hold.release()
    module_server.smsc.holds.clear()
    print(f"--- the end of {module_server.log} during this test ---\n{module_server.log_since(offset)}")


# helpers


def phone(block: int) -> str:
    """``+7 999 <block> 4567``: different blocks have different prefixes, so the prefix limit never binds."""
    return f"+7999{block:03d}4567"


def start(number: str, ip: str, channels: list[Any]) -> Call:
    return Call("POST", "/v1/verifications", {"phone": number, "channels": channels}, ip)


def begin(server: Server, number: str, ip: str, channels: list[Any]) -> dict[str, Any]:
    """A chained start of ``number`` from ``ip``, answered 201: its body."""
    started = send(server, start(number, ip, channels))
    assert started.status == 201, started
    body: dict[str, Any] = started.body
    return body


def approve(server: Server, verification_id: str, code: str, ip: str) -> dict[str, Any]:
    """Check ``code``, which must approve: the answer's body."""
    checked = send(server, Call("POST", f"/v1/verifications/{verification_id}/check", {"code": code}, ip))
    assert checked.status == 200 and checked.body["status"] == "approved", checked
    body: dict[str, Any] = checked.body
    return body


def get(server: Server, verification_id: str) -> dict[str, Any]:
    response = requests.get(server.url(f"/v1/verifications/{verification_id}"), headers=AUTH, timeout=5)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def attempts(body: dict[str, Any]) -> list[tuple[str, str, str]]:
    """A verification's ``fallback.attempts`` as (channel, provider, status)."""
    return [(a["channel"], a["provider"], a["status"]) for a in body["fallback"]["attempts"]]


def sms_code(text: str) -> str:
    """The code an SMS carries: its one run of ``CODE_LENGTH`` digits."""
    (code,) = re.findall(rf"(?<!\d)\d{{{CODE_LENGTH}}}(?!\d)", text)
    return str(code)


def spoken_code(text: str) -> str:
    """The code a voice text speaks, digit by digit (``1, 2, 3``), twice; it holds no run of digits."""
    spoken = re.findall(r"\d(?:, \d)+", text)
    assert len(spoken) == 2 and len(set(spoken)) == 1, text
    assert not re.search(r"\d\d", text), text
    code = spoken[0].replace(", ", "")
    assert len(code) == CODE_LENGTH, text
    return str(code)


def is_call(seen: Seen) -> bool:
    """A ``send.php`` request for a voice call (``call=1``), by query or form."""
    return seen.path.endswith("/send.php") and {**seen.query, **seen.form}.get("call") == "1"


def calls_since(server: Server, index: int) -> list[Seen]:
    """The ``call=1`` requests SMSC received (answered or not) after ``index`` of its requests."""
    return [seen for seen in server.smsc.requests[index:] if is_call(seen)]


def parse_time(text: str) -> float:
    """An RFC 3339 time of the API (``2026-11-22T03:13:46Z``) as a unix time."""
    return datetime.fromisoformat(text).timestamp()


# 1. a refused first channel: the next one at once, in the same request, with the same code


def test_a_telegram_start_to_a_number_without_telegram_falls_to_sms_at_once_with_the_same_code(
    server: Server, telegram: TelegramEmulator
) -> None:
    number, ip = phone(101), "203.0.113.1"
    telegram.no_account.add(number)
    seen, mark = len(telegram.requests), server.smsc.mark()
    body = begin(server, number, ip, ["telegram", "sms"])
    # Telegram was asked, with a code, and refused it (ok: false: no account).
    (asked,) = [s.json() for s in telegram.requests[seen:] if s.path.endswith("/sendVerificationMessage")]
    assert asked["phone_number"] == number and not telegram.taken
    # The SMS went out before the start answered: it is there the moment the answer is.
    (sms,) = server.smsc.since(mark)
    assert (sms.kind, sms.phone) == ("sms", number)
    assert sms_code(sms.text) == asked["code"]
    assert body["channel"] == "sms" and body["delivery"] == {"provider": "smsc", "status": "sent"}
    fallback = body["fallback"]
    assert fallback["channels"] == [{"channel": "telegram", "wait": 60}, {"channel": "sms", "wait": 60}]
    assert attempts(body) == [("telegram", "telegram", "failed"), ("sms", "smsc", "sent")]
    assert fallback["next"] is None and fallback["stopped"] is None  # sms was the chain's last step
    approve(server, body["id"], asked["code"], ip)


# 2. not approved within its wait: the same code by voice; approved in time: nothing more


def test_an_sms_not_approved_within_its_wait_is_followed_by_a_call_speaking_the_same_code(server: Server) -> None:
    number, ip = phone(102), "203.0.113.2"
    mark = server.smsc.mark()
    sent_at = time.monotonic()
    body = begin(server, number, ip, SMS_THEN_VOICE)
    assert body["channel"] == "sms" and body["fallback"]["next"]["channel"] == "voice"
    assert body["fallback"]["channels"] == [{"channel": "sms", "wait": 1}, {"channel": "voice", "wait": 60}]
    (sms,) = server.smsc.since(mark)
    code = sms_code(sms.text)

    (call,) = eventually(lambda: server.smsc.since(mark, "voice"), "the voice call", timeout=6)
    called_after = time.monotonic() - sent_at
    assert called_after >= 1, f"the call came {called_after:.2f} s after the start, before its 1 s wait"
    assert call.phone == number and spoken_code(call.text) == code

    shown = eventually(lambda: (b := get(server, body["id"]))["channel"] == "voice" and b, "channel voice", 5)
    assert shown["delivery"] == {"provider": "smsc", "status": "sent"}
    assert attempts(shown) == [("sms", "smsc", "sent"), ("voice", "smsc", "sent")]
    assert shown["fallback"]["next"] is None and shown["fallback"]["stopped"] is None
    approve(server, body["id"], code, ip)
    assert [d.kind for d in server.smsc.since(mark)] == ["sms", "voice"]


def test_an_sms_approved_within_its_wait_stops_the_chain(server: Server) -> None:
    number, ip = phone(103), "203.0.113.3"
    mark, seen = server.smsc.mark(), len(server.smsc.requests)
    before, before_wall = time.monotonic(), time.time()
    body = begin(server, number, ip, [{"channel": "sms", "wait": 2}, "voice"])
    after, after_wall = time.monotonic(), time.time()
    # The step is due 2 s after the send was committed, inside the request (due_at is rounded down to the second).
    assert math.floor(before_wall + 2) <= parse_time(body["fallback"]["next"]["due_at"]) <= after_wall + 2
    (sms,) = server.smsc.since(mark)
    approved = approve(server, body["id"], sms_code(sms.text), ip)
    assert time.monotonic() < before + 2, "the check came after the step was due: this test proves nothing"
    assert approved["fallback"]["next"] is None

    time.sleep(max(0.0, after + 2 + 3 - time.monotonic()))  # 3 s past the due time: a step is taken within about 2 s
    assert calls_since(server, seen) == []
    assert [d.kind for d in server.smsc.since(mark)] == ["sms"]
    shown = get(server, body["id"])
    assert shown["status"] == "approved" and shown["channel"] == "sms"
    assert attempts(shown) == [("sms", "smsc", "sent")] and shown["fallback"]["next"] is None


# 3. the automatic steps take the IP quota: a burst from one IP sends the IP limit, starts and steps together


def test_fifty_chained_starts_from_one_ip_send_the_ip_limit_in_all_steps_included(server: Server) -> None:
    ip = "203.0.113.4"
    mark = server.smsc.mark()
    replies = burst(server, [start(phone(200 + i), ip, SMS_THEN_VOICE) for i in range(50)])
    tally = Counter(reply.summary() for reply in replies)
    assert tally == {"201": IP_PER_HOUR, "429 /problems/rate-limited ip": 50 - IP_PER_HOUR}, tally
    created: dict[str, dict[str, Any]] = {  # phone -> the start's answer
        str(reply.call.json["phone"]): reply.body for reply in replies if reply.status == 201 and reply.call.json
    }
    assert all(body["fallback"]["next"]["channel"] == "voice" for body in created.values())

    def settled() -> list[dict[str, Any]] | None:
        bodies = [get(server, body["id"]) for body in created.values()]
        return bodies if all(b["fallback"]["next"] is None for b in bodies) else None

    bodies = eventually(settled, "every chain's voice step to be taken", timeout=10)
    sent = server.smsc.since(mark)
    assert len(sent) == IP_PER_HOUR, f"{len(sent)} messages for {IP_PER_HOUR} starts: {Counter(d.kind for d in sent)}"
    assert {d.kind for d in sent} == {"sms"}
    assert sorted(d.phone for d in sent) == sorted(created)
    for shown in bodies:
        assert shown["fallback"]["stopped"] == "rate_limited:ip", shown
        assert shown["channel"] == "sms" and attempts(shown) == [("sms", "smsc", "sent")], shown


# 4. a worker killed while its step's gateway request hangs: the step is sent once, by another worker, after the lease


def owner(server: Server, held_port: int) -> psutil.Process:
    """The gunicorn worker (a child of our master) whose TCP connection from ``held_port`` goes to the SMSC
    emulator."""
    emulator_port = urlsplit(server.smsc.url).port
    master = psutil.Process(server.process.pid)
    for worker in master.children():
        for connection in worker.net_connections(kind="tcp"):
            remote = connection.raddr
            if connection.laddr.port == held_port and remote and remote.port == emulator_port:
                return worker
    raise AssertionError(f"no worker of {master.pid} holds the connection from port {held_port}")


def test_a_step_whose_worker_dies_mid_send_is_sent_once_by_another_after_the_lease(server: Server) -> None:
    """A worker claims the voice step, reserves its send and asks SMSC to call; SMSC holds the request. The worker
    is killed (SIGKILL) while it waits, then the held request fails (HTTP 502, which the emulator does not count
    as delivered). That models a worker that died before the gateway took the step: the message never went out, and
    the worker never committed or gave back anything. Nobody else may take the step within its lease; after it,
    another worker (the other one, or the one gunicorn's master starts in its place) must send it, once, with the
    same code, and the verification must say voice."""
    number, ip = phone(104), "203.0.113.5"
    mark, seen = server.smsc.mark(), len(server.smsc.requests)
    hold = server.smsc.hold(is_call)
    vid = str(begin(server, number, ip, SMS_THEN_VOICE)["id"])
    (sms,) = server.smsc.since(mark)
    code = sms_code(sms.text)

    assert hold.arrived.wait(8), "no worker asked SMSC for the call"
    (held,) = hold.caught
    worker = owner(server, held.peer[1])
    assert worker.ppid() == server.process.pid  # ours: a worker of the gunicorn this module started
    others = {p.pid for p in psutil.Process(server.process.pid).children()} - {worker.pid}
    worker.send_signal(signal.SIGKILL)
    worker.wait(timeout=5)
    assert time.monotonic() - held.at < 3, "the worker was killed after its read timeout: it may have given up"
    hold.release()  # the dead worker's request fails: nothing was sent

    # Within the lease the step stays with its dead owner: no other call=1 request arrives.
    time.sleep(max(0.0, held.at + LEASE_S - 1 - time.monotonic()))
    assert [s for s in calls_since(server, seen) if s is not held.seen] == []
    assert server.smsc.since(mark, "voice") == []

    (call,) = eventually(lambda: server.smsc.since(mark, "voice"), "the call after the lease", timeout=LEASE_S + 6)
    assert call.phone == number and spoken_code(call.text) == code
    shown = eventually(lambda: (b := get(server, vid))["channel"] == "voice" and b, "channel voice", 5)
    assert attempts(shown) == [("sms", "smsc", "sent"), ("voice", "smsc", "sent")]
    assert shown["fallback"]["next"] is None and shown["fallback"]["stopped"] is None
    time.sleep(1.5)  # a few turns of both workers' loops: a second owner would have called by now
    assert [d.kind for d in server.smsc.since(mark)] == ["sms", "voice"]
    assert len(calls_since(server, seen)) == 2  # the held one, and the one that was answered
    approve(server, vid, code, ip)

    # gunicorn's master replaced the dead worker.
    master = psutil.Process(server.process.pid)
    eventually(lambda: len(master.children()) == 2, "the master to start a new worker", timeout=10)
    assert worker.pid not in {p.pid for p in master.children()} and others <= {p.pid for p in master.children()}
