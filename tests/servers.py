"""Real gunicorn servers for tests that need what ships: the Procfile's command, real workers, a real gateway wire.

:func:`gunicorn_server` runs the Procfile's ``web:`` command (``gunicorn wsgi:app -c gunicorn.conf.py``) as
``python -m gunicorn ...`` with the venv's interpreter, from the repository root, on a free loopback port
(``GUNICORN_BIND``) with ``WEB_CONCURRENCY`` workers. Its environment is explicit: every
``VERIFY_*`` of the calling process is dropped, and the server gets sandbox mode, the test API and secret keys,
the given Redis, ``VERIFY_TRUSTED_PROXIES=1`` (so a test presents distinct client IPs with ``X-Forwarded-For``)
and SMSC as its only SMS gateway, pointed at a :class:`CountingSmsc` emulator, plus the caller's settings.

What the server sent is what the emulator accepted on the wire: an SMS is a ``send.php`` request that SMSC answered
with success, a call is an accepted ``wait_call.php`` (when ``VERIFY_CALL_PROVIDER=smsc``). A request the emulator
refused (``mode = "5xx"``, an error) sent nothing and is not counted.

The server's stdout and stderr (gunicorn's error and access logs, the app's log lines) go to a file; a start that
fails raises with its tail, and :meth:`Server.log_since` gives a test the lines of its own requests.
"""

from __future__ import annotations

import http.client
import json
import os
import shlex
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, TypeVar

import requests
from werkzeug.wrappers import Request, Response

from tests.conftest import API_KEY, SECRET_KEY, flushed
from tests.providers.emulator import Seen
from tests.providers.smsc_emulator import SmscEmulator
from verify.embedded import free_port

T = TypeVar("T")

ROOT = Path(__file__).resolve().parent.parent
SMSC_APIKEY = "smsc-test-apikey-0123456789"
AUTH = {"Authorization": f"Bearer {API_KEY}"}
START_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 30.0
# How long to wait, after the first answer, for every worker to have loaded the app (best effort: a worker
# that is still importing does not accept, so a burst would only meet fewer workers).
WORKERS_READY_TIMEOUT_S = 5.0
# Variables of the calling environment that would change how gunicorn runs.
GUNICORN_VARIABLES = ("GUNICORN_CMD_ARGS", "GUNICORN_BIND", "WEB_CONCURRENCY", "PORT")

Kind = Literal["sms", "call", "voice"]


@dataclass(frozen=True)
class Delivered:
    """One message SMSC accepted: an SMS (``send.php``) or a call-in number (``wait_call.php``), to ``phone``."""

    kind: Kind
    phone: str
    text: str


class CountingSmsc(SmscEmulator):
    """The SMSC emulator, also keeping every send it accepted, in order (thread-safe: a list only appended to)."""

    def __init__(self) -> None:
        super().__init__(apikey=SMSC_APIKEY)
        self.delivered: list[Delivered] = []

    def answer(self, request: Request, seen: Seen) -> Response:
        """SMSC's answer; a success of ``send.php`` or ``wait_call.php`` is recorded as delivered."""
        response = super().answer(request, seen)
        endpoint = seen.path.rsplit("/", 1)[-1]
        if endpoint in ("send.php", "wait_call.php") and self.mode == "ok" and _accepted(response):
            params = {**seen.query, **seen.form}
            if endpoint == "send.php":  # call=1: a spoken code (docs/gateways/smsc.md §3.1)
                kind: Kind = "voice" if params.get("call") == "1" else "sms"
                self.delivered.append(Delivered(kind, params["phones"], params["mes"]))
            else:
                self.delivered.append(Delivered("call", "+" + params["phone"].lstrip("+"), ""))
        return response

    def mark(self) -> int:
        """A position in :attr:`delivered`, for :meth:`since`."""
        return len(self.delivered)

    def since(self, mark: int, kind: Kind | None = None) -> list[Delivered]:
        """What was delivered after ``mark``, of ``kind`` (both kinds when ``None``)."""
        return [d for d in self.delivered[mark:] if kind is None or d.kind == kind]


def _accepted(response: Response) -> bool:
    if response.status_code != 200:
        return False
    body = response.get_data(as_text=True)
    try:
        parsed = json.loads(body)
    except ValueError:
        return body.startswith("OK")  # fmt=0 text
    return isinstance(parsed, dict) and "error_code" not in parsed


class Server:
    """A running gunicorn master (its PID is ours) and what it talks to."""

    def __init__(
        self, process: subprocess.Popen[bytes], base: str, log: Path, smsc: CountingSmsc, redis_url: str
    ) -> None:
        self.process = process
        self.base = base
        self.host, port = base.removeprefix("http://").rsplit(":", 1)
        self.port = int(port)
        self.log = log
        self.smsc = smsc
        self.redis_url = redis_url

    def url(self, path: str) -> str:
        """The absolute URL of ``path`` on this server."""
        return self.base + path

    def reset(self) -> None:
        """Forget every key in the server's Redis (counters, verifications, captchas, breakers) and put the emulator
        back to ``ok``; what it delivered before stays recorded (count with :meth:`CountingSmsc.mark`)."""
        flushed(self.redis_url)
        self.smsc.mode = "ok"

    def log_size(self) -> int:
        """The log's length in bytes, for :meth:`log_since`."""
        return self.log.stat().st_size

    def log_since(self, offset: int, lines: int = 60) -> str:
        """The last ``lines`` lines written to the log after byte ``offset``."""
        with self.log.open("rb") as f:
            f.seek(offset)
            text = f.read().decode("utf-8", "replace")
        return "\n".join(text.splitlines()[-lines:])

    def tail(self, lines: int = 60) -> str:
        """The log's last ``lines`` lines."""
        return self.log_since(0, lines)


def procfile_command() -> list[str]:
    """The Procfile's ``web:`` command, its ``gunicorn`` run by this interpreter (the venv's)."""
    line = next(line for line in (ROOT / "Procfile").read_text().splitlines() if line.startswith("web:"))
    argv = shlex.split(line.removeprefix("web:"))
    if argv[0] != "gunicorn":
        raise RuntimeError(f"the Procfile no longer runs gunicorn: {line!r}")
    return [sys.executable, "-m", "gunicorn", *argv[1:]]


def server_env(redis_url: str, smsc_url: str, bind: str, workers: int, settings: Mapping[str, str]) -> dict[str, str]:
    """The server's whole environment: the caller's without any ``VERIFY_*`` or gunicorn variable, then ours."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("VERIFY_") and k not in GUNICORN_VARIABLES}
    env.update(
        {
            "GUNICORN_BIND": bind,
            "WEB_CONCURRENCY": str(workers),
            "VERIFY_API_KEYS": API_KEY,
            "VERIFY_SECRET_KEY": SECRET_KEY,
            "VERIFY_REDIS_URL": redis_url,
            "VERIFY_SANDBOX": "1",
            "VERIFY_TRUSTED_PROXIES": "1",
            "VERIFY_SMS_PROVIDERS": "smsc",
            "VERIFY_SMSC_URL": smsc_url,
            "VERIFY_SMSC_APIKEY": SMSC_APIKEY,
        }
    )
    for name, value in settings.items():
        if not name.startswith("VERIFY_"):
            raise ValueError(f"{name}: only VERIFY_* settings may be overridden")
        env[name] = value
    return env


@contextmanager
def gunicorn_server(
    redis_url: str,
    log_dir: Path,
    settings: Mapping[str, str] | None = None,
    *,
    workers: int = 3,
    smsc: CountingSmsc | None = None,
    name: str = "gunicorn",
) -> Iterator[Server]:
    """Run the Procfile's command with ``settings`` (``VERIFY_*`` overrides) until the block ends.

    Without ``smsc`` a :class:`CountingSmsc` is started for this server and stopped with it; pass one to share it
    between servers. The log is ``log_dir/<name>-<port>.log``. The server is stopped with SIGTERM to its master's
    PID, then SIGKILL if it has not exited within ``STOP_TIMEOUT_S``.
    """
    with ExitStack() as stack:
        if smsc is None:
            smsc = CountingSmsc()
            smsc.start()
            stack.callback(smsc.stop)
        server = _start(redis_url, log_dir, settings or {}, workers, smsc, name)
        stack.callback(stop_gunicorn, server.process)
        yield server


class _PortTaken(Exception):
    pass


def _start(
    redis_url: str, log_dir: Path, settings: Mapping[str, str], workers: int, smsc: CountingSmsc, name: str
) -> Server:
    return start_gunicorn(
        procfile_command(),
        ROOT,
        lambda bind: server_env(redis_url, smsc.url, bind, workers, settings),
        log_dir,
        name,
        workers,
        smsc,
        redis_url,
    )


def start_gunicorn(
    argv: list[str],
    cwd: Path,
    env_for: Callable[[str], dict[str, str]],
    log_dir: Path,
    name: str,
    workers: int,
    smsc: CountingSmsc,
    redis_url: str,
) -> Server:
    """gunicorn from ``argv`` in ``cwd`` with the environment ``env_for(bind)``, answering on a free loopback port
    (another port if something took it before gunicorn bound it); stop it with :func:`stop_gunicorn`."""
    for _ in range(3):
        port = free_port()
        log = log_dir / f"{name}-{port}.log"
        with log.open("wb") as sink:
            process = subprocess.Popen(
                argv, cwd=cwd, env=env_for(f"127.0.0.1:{port}"), stdout=sink, stderr=subprocess.STDOUT
            )
        server = Server(process, f"http://127.0.0.1:{port}", log, smsc, redis_url)
        try:
            _wait_until_up(server, workers)
        except _PortTaken:
            # Still binding (gunicorn retries for 5 s before it gives up), so no worker exists yet.
            process.kill()
            process.wait()
            continue
        except BaseException:
            stop_gunicorn(process)
            raise
        return server
    raise RuntimeError("gunicorn found its port taken three times")


def _wait_until_up(server: Server, workers: int) -> None:
    # Only our master's own line says the port is ours: another process on a port that was free a moment ago
    # would answer /healthz too.
    listening = f"Listening at: {server.base} ({server.process.pid})"
    deadline = time.monotonic() + START_TIMEOUT_S
    while True:
        log = server.log.read_text(errors="replace")
        if "Connection in use" in log:
            raise _PortTaken
        try:
            # A connection is accepted by the kernel before a worker has loaded the app: allow for a slow load.
            if listening in log and requests.get(server.url("/healthz"), timeout=5).status_code == 200:
                break
        except requests.RequestException:
            pass
        if server.process.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(
                f"gunicorn did not come up (exit code {server.process.poll()}); the end of "
                f"{server.log}:\n{server.tail()}"
            )
        time.sleep(0.05)
    # Each worker loads the app itself and logs sandbox mode's warning when it has.
    deadline = time.monotonic() + WORKERS_READY_TIMEOUT_S
    while server.log.read_text(errors="replace").count("sandbox mode") < workers and time.monotonic() < deadline:
        time.sleep(0.05)


def stop_gunicorn(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM the master (gunicorn lets its workers finish), SIGKILL it after ``STOP_TIMEOUT_S``."""
    if process.poll() is not None:
        return
    os.kill(process.pid, signal.SIGTERM)  # graceful: gunicorn lets its workers finish
    try:
        process.wait(timeout=STOP_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        os.kill(process.pid, signal.SIGKILL)
        process.wait()


# Firing a burst


@dataclass(frozen=True)
class Call:
    """One request of a burst: ``json`` is its body, ``client_ip`` (when given) its ``X-Forwarded-For``, and
    ``site_key`` (when given, as ``(key, origin)``) what it sends instead of the API key, as a web page would."""

    method: str
    path: str
    json: dict[str, object] | None = None
    client_ip: str | None = None
    site_key: tuple[str, str] | None = None


@dataclass(frozen=True)
class Reply:
    """One answer, with its request."""

    call: Call
    status: int
    content_type: str
    body: dict[str, object]
    retried: bool = False  # sent late, on a new connection: see burst()

    @property
    def problem(self) -> str:
        """The problem ``type`` (``""`` for a success)."""
        return str(self.body.get("type", ""))

    @property
    def limit(self) -> str:
        """The ``limit`` named by a 429 ``/problems/rate-limited`` (else ``""``)."""
        return str(self.body.get("limit", ""))

    def summary(self) -> str:
        """``"429 /problems/rate-limited ip"``, ``"201"``: a key to tally a burst by."""
        return " ".join(part for part in (str(self.status), self.problem, self.limit) if part)


def burst(servers: Server | Sequence[Server], calls: list[Call], timeout: float = 30.0) -> list[Reply]:
    """Send every call at once: one thread and one keep-alive connection per call, all released by one barrier.

    Given several servers (app instances sharing one Redis), the calls go to them in turn.

    Before the release each thread has its connection open and in use (a ``GET /healthz``, sent by all threads
    together once all are connected, so that a worker holds each connection), and its request line, headers and
    body encoded; after it, the thread only writes them out. (With requests' Session, building each request took a
    few hundred microseconds of Python, one thread at a time under the GIL: a burst of 50 spread over 20 ms or more
    and a short race in the server went unseen in some runs.) The replies come back in the order of ``calls``.
    """
    connected = threading.Barrier(len(calls), timeout=timeout)
    go = threading.Barrier(len(calls), timeout=timeout)
    replies: list[Reply | None] = [None] * len(calls)
    errors: list[BaseException] = []

    ring = [servers] if isinstance(servers, Server) else list(servers)

    def run(index: int, call: Call) -> None:
        server = ring[index % len(ring)]
        connection = http.client.HTTPConnection(server.host, server.port, timeout=timeout)
        try:
            connection.connect()
            connected.wait()
            connection.request("GET", "/healthz")
            warm = connection.getresponse()
            warm.read()
            if warm.status != 200:
                raise RuntimeError(f"GET /healthz answered {warm.status}")
            body = _prepare(connection, call)
            go.wait()
            try:
                connection.endheaders(body)
                replies[index] = _reply(call, connection.getresponse())
            except (BrokenPipeError, ConnectionResetError, http.client.RemoteDisconnected):
                # gunicorn drops a connection that waited longer than its keepalive (2 s) for a request, without
                # reading it (a slow machine can keep a thread that long at the barrier): the request never reached
                # the app, so it goes again, late, on a new connection.
                connection.close()
                connection = http.client.HTTPConnection(server.host, server.port, timeout=timeout)
                connection.endheaders(_prepare(connection, call))
                replies[index] = _reply(call, connection.getresponse(), retried=True)
        except BaseException as err:  # reported in the caller's thread
            errors.append(err)
            connected.abort()
            go.abort()
        finally:
            connection.close()

    threads = [threading.Thread(target=run, args=(i, call), daemon=True) for i, call in enumerate(calls)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout + 5)
    if errors:
        first = next((e for e in errors if not isinstance(e, threading.BrokenBarrierError)), errors[0])
        raise RuntimeError(f"a request of the burst failed: {first!r}") from first
    missing = [i for i, reply in enumerate(replies) if reply is None]
    if missing:
        raise RuntimeError(f"requests {missing} of the burst got no answer within {timeout} s")
    return [reply for reply in replies if reply is not None]


def send(server: Server, call: Call, timeout: float = 30.0) -> Reply:
    """One request on its own, as :func:`burst` sends each."""
    connection = http.client.HTTPConnection(server.host, server.port, timeout=timeout)
    try:
        connection.endheaders(_prepare(connection, call))
        return _reply(call, connection.getresponse())
    finally:
        connection.close()


def _prepare(connection: http.client.HTTPConnection, call: Call) -> bytes:
    """Buffer the request line and headers in ``connection``; returns the body, for ``endheaders``."""
    body = json.dumps(call.json).encode() if call.json is not None else b""
    connection.putrequest(call.method, call.path)
    credentials = {"X-Verify-Site-Key": call.site_key[0], "Origin": call.site_key[1]} if call.site_key else AUTH
    headers = {**credentials, "Content-Length": str(len(body))}
    if call.json is not None:
        headers["Content-Type"] = "application/json"
    if call.client_ip is not None:
        headers["X-Forwarded-For"] = call.client_ip
    for name, value in headers.items():
        connection.putheader(name, value)
    return body


def _reply(call: Call, response: http.client.HTTPResponse, *, retried: bool = False) -> Reply:
    data = response.read()
    parsed = json.loads(data) if data else {}
    return Reply(
        call,
        response.status,
        response.getheader("Content-Type", ""),
        parsed if isinstance(parsed, dict) else {"value": parsed},
        retried,
    )


def eventually(probe: Callable[[], T | None], what: str, timeout: float = 30.0) -> T:
    """``probe()``'s first true value, polled until ``timeout`` seconds have passed."""
    deadline = time.monotonic() + timeout
    while True:
        value = probe()
        if value:
            return value
        assert time.monotonic() < deadline, f"timed out after {timeout} s waiting for {what}"
        time.sleep(0.02)
