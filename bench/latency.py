"""Latency at one client (issue 19): what one request costs a person waiting, against the ceiling, in one run.

Run it with ``make bench`` (after the throughput run) or ``.venv/bin/python -m bench.latency``, from the top of
the clone (it imports ``bench.load`` and ``tests.redis_servers``).

``bench/load.py`` measures throughput: many connections, the workers' cores full. This measures the other end:
one client thread, nothing else in flight, so a request's latency is its own service time (the gunicorn worker's
CPU for it plus its Redis round trips), not time spent queueing behind other requests. It serves both apps with
the throughput bench's machinery (``bench.load.serving``: the same gunicorn argv from
``verify.cli.gunicorn_command``, ``--workers`` gevent workers, the app's JSON request line and its metrics on,
each app on its own embedded Redis) and the same service settings (sandbox, ``SINGLE_CLIENT_ENV``), and runs
both apps at once, so that their requests can alternate.

One client thread holds one keep-alive HTTP/1.1 connection to each app and sends its requests back to back, in
blocks of ``BLOCK`` requests per endpoint:

1. ``ceiling``: ``POST /ceiling`` to ``bench/ceiling.py`` (one Redis pipeline per request), expecting 201;
2. ``start``: ``POST /v1/verifications`` with a never-used phone each, expecting 201 and ``pending``;
3. (not measured) each code, read from ``GET /sandbox/messages``, as load.py's check phase reads them;
4. ``get``: ``GET /v1/verifications/{id}`` of each of those pending verifications, expecting 200 and
   ``pending``, as a client polling its status would;
5. ``check``: ``POST /v1/verifications/{id}/check`` of each with the right code, expecting 200, ``approved``
   and a token.

Within a block an endpoint's requests follow one another, so each request finds the worker as the one before of
its kind left it, the ceiling's included: interleaving single requests would favour whichever endpoint follows
another request to the same app (a GET after the code's read came out faster than the ceiling that way). Each
block first opens both connections afresh with a ``GET /healthz`` that is not measured: gunicorn closes a
keep-alive connection idle for 2 s, as the ceiling's would be while the service has its turn. The blocks
alternate, so that a burst of other work on a shared machine falls on every endpoint alike: the ratios
are what this run reports, and they hold up better than the milliseconds do. ``--warmup`` requests per endpoint
go first, not counted; then ``--requests`` per endpoint are measured. Each endpoint's p50 is divided by the
ceiling's p50 of the same run and compared with
the issue's targets: start <= 1.5x, check <= 1.3x, get <= 1.3x. Any answer but the expected one (or a broken
connection) is an error, counted and not retried; the exit status is 1 when any request failed, and 2 with
``--enforce-targets`` when a target is missed.
"""

from __future__ import annotations

import argparse
import json
import secrets
import signal
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import quote

from bench.load import (
    ERROR_SAMPLES,
    HOST,
    LOG_TAIL_LINES,
    SINGLE_CLIENT_ENV,
    Client,
    FlowError,
    Phones,
    Server,
    Shared,
    add_procfile_conf,
    busy_machine,
    ceiling_app,
    ceiling_env,
    cpu_percent,
    cpu_snapshot,
    environment,
    exit_on_sigterm,
    service_env,
    serving,
    summarize,
    tails,
)

# The targets: each endpoint's p50 at one client as a multiple of the ceiling's p50, at most.
TARGETS = {"start": 1.5, "check": 1.3, "get": 1.3}
ENDPOINTS = ("ceiling", "start", "get", "check")  # in the order of a block
# Requests per endpoint in a block: long enough runs of one endpoint, and blocks enough (20 at the default
# --requests) that a burst of other work on the machine falls on every endpoint alike.
BLOCK = 100
LABELS = {
    "ceiling": "POST /ceiling",
    "start": "POST /v1/verifications",
    "get": "GET /v1/verifications/{id}",
    "check": "POST /v1/verifications/{id}/check",
}
T = TypeVar("T")
NOTE = (
    "One client: each figure is a request's own service time (worker CPU and Redis round trips), with no "
    "queueing; the load generator shares the machine's cores, so read the ratios, not the milliseconds."
)


def read(client: Client, verification_id: str, op: str = "get") -> None:
    """``GET /v1/verifications/{id}`` with the API key; expects the pending verification of that id."""
    answer = client.request(
        op, "GET", f"/v1/verifications/{quote(verification_id, safe='')}", None, 200, authorized=True
    )
    if answer.get("id") != verification_id or answer.get("status") != "pending":
        raise FlowError(op, f"200 but status {answer.get('status')!r}", json.dumps(answer)[:300])


class OneClient:
    """The one client: a keep-alive connection to each app, and the blocks of requests sent over them."""

    def __init__(self, ceiling_port: int, service_port: int, api_key: str, shared: Shared) -> None:
        self.phones = shared.phones
        self.ceiling = Client(ceiling_port, api_key, shared)
        self.service = Client(service_port, api_key, shared)
        self.reopened = 0

    def send(self, client: Client, call: Callable[[], T]) -> T | None:
        """``call()``, one request over ``client``; ``None`` after an error, which the client counts.

        Counts in ``reopened`` a request that did not find its connection as the request before left it (closed
        by either side, after an error or not): it paid for a TCP handshake too. :meth:`reconnect`'s are not
        counted (the connection is closed before it).
        """
        held = client.conn
        try:
            return call()
        except FlowError as err:
            client.record_error(err.op, err.kind, err.detail)
            return None
        finally:
            self.reopened += held is not None and client.conn is not held

    def block(self, size: int) -> None:
        """``size`` requests to each endpoint, endpoint after endpoint in the order of ``ENDPOINTS``.

        Each endpoint's requests go back to back, so each follows one of its own kind on a worker it keeps busy,
        as the ceiling's do. The codes are read between the starts and the GETs, outside the measured requests.
        Each connection is opened afresh first (see :meth:`reconnect`).
        """
        self.reconnect(self.ceiling)
        self.reconnect(self.service)
        for _ in range(size):
            self.send(self.ceiling, lambda: self.ceiling.ceiling(self.phones.next()))
        started: list[tuple[str, str]] = []
        for _ in range(size):
            phone = self.phones.next()
            made = self.send(self.service, lambda: self.service.start(phone))  # noqa: B023 - called at once
            if made is not None:
                started.append((phone, made))
        pending: list[tuple[str, str]] = []
        for phone, verification_id in started:
            code = self.send(self.service, lambda: self.service.code(phone, op="read code"))  # noqa: B023
            if code is not None:
                pending.append((verification_id, code))
        for verification_id, _ in pending:
            self.send(self.service, lambda: read(self.service, verification_id))  # noqa: B023
        for verification_id, code in pending:
            self.send(self.service, lambda: self.service.check(verification_id, code))  # noqa: B023

    def reconnect(self, client: Client) -> None:
        """Open ``client``'s connection afresh with one request that is not measured (``GET /healthz``).

        A connection idles while the other app has its turn, and gunicorn closes a keep-alive connection idle
        for 2 s (its ``--keep-alive``), which the ceiling's would be on a busy machine: the block's first
        request would meet a broken pipe, or pay for a TCP handshake. Both apps' connections are reopened alike.
        """
        client.close()
        self.send(client, lambda: client.request("reconnect", "GET", "/healthz", None, 200))

    def blocks(self, requests: int) -> None:
        """``requests`` per endpoint, in blocks of ``BLOCK``."""
        for done in range(0, requests, BLOCK):
            self.block(min(BLOCK, requests - done))

    def close(self) -> None:
        """Close both connections."""
        self.ceiling.close()
        self.service.close()


def measure(ceiling_server: Server, service_server: Server, api_key: str, args: argparse.Namespace) -> dict[str, Any]:
    """The warm-up, then the measured blocks; each endpoint's figures and the machine's CPU meanwhile."""
    shared = Shared(measure_from=float("inf"), stop_at=float("inf"), max_requests=0, phones=Phones())
    client = OneClient(ceiling_server.ports[0], service_server.ports[0], api_key, shared)
    both = Server(
        "both",
        service_server.redis_url,
        ceiling_server.redis_nodes + service_server.redis_nodes,
        ceiling_server.redis_processes + service_server.redis_processes,
        ceiling_server.instances + service_server.instances,
    )
    print(
        f"latency: {args.warmup} warm-up + {args.requests} measured requests per endpoint, one client",
        file=sys.stderr,
    )
    try:
        client.blocks(args.warmup)
        client.reopened = 0
        cpu_before = cpu_snapshot(both)
        shared.measure_from = start = time.perf_counter()
        client.blocks(args.requests)
        window = time.perf_counter() - start
        cpu_after = cpu_snapshot(both)
    finally:
        client.close()
    ceiling, service = client.ceiling.stats, client.service.stats
    errors: Counter[tuple[str, str]] = ceiling.errors + service.errors
    measured = {key: n for key, n in errors.items() if not key[1].endswith("(warm-up)")}
    latencies = {**service.latencies, "ceiling": ceiling.latencies["ceiling"]}
    return {
        "window_s": window,
        "endpoints": {
            op: summarize(latencies.get(op, []), sum(n for (o, _), n in measured.items() if o == op), window)
            for op in ENDPOINTS
        },
        "connections_reopened": client.reopened,
        "cpu_percent": cpu_percent(cpu_before, cpu_after, window) if cpu_before and cpu_after and window else {},
        "errors": [{"operation": op, "kind": kind, "count": n} for (op, kind), n in errors.most_common()],
        "error_samples": (ceiling.samples + service.samples)[:ERROR_SAMPLES],
    }


def judge(endpoints: dict[str, dict[str, float]]) -> tuple[dict[str, float], list[dict[str, Any]]]:
    """Each endpoint's p50 as a multiple of the ceiling's, and the targets met or missed."""
    ceiling = endpoints["ceiling"]["p50_ms"]
    ratios = {op: endpoints[op]["p50_ms"] / ceiling for op in TARGETS if ceiling and endpoints[op]["count"]}
    targets = [
        {"target": f"{op} p50 <= {limit:g} x ceiling p50", "value": round(ratios[op], 3), "met": ratios[op] <= limit}
        for op, limit in TARGETS.items()
        if op in ratios
    ]
    return ratios, targets


MARKDOWN_HEADER = (
    "| commit | run | ceiling p50 / p99 ms | start p50 / p99 ms (x ceiling) | check p50 / p99 ms (x ceiling) "
    "| GET p50 / p99 ms (x ceiling) | targets met |\n"
    "|---|---|---|---|---|---|---|"
)


def markdown_row(result: dict[str, Any]) -> str:
    """One line for the latency table of docs/performance.md (header: ``MARKDOWN_HEADER``)."""
    endpoints, ratios, cfg = result["endpoints"], result["ratios"], result["config"]

    def cell(op: str) -> str:
        row = endpoints[op]
        ratio = f" ({ratios[op]:.2f}x)" if op in ratios else ""
        return f"{row['p50_ms']:.2f} / {row['p99_ms']:.2f}{ratio}"

    busy = ", busy machine" if busy_machine(result["cpu_percent"]) else ""
    run = f"{cfg['workers']} w, 1 c, {cfg['requests']} req{busy}"
    met = sum(t["met"] for t in result["targets"])
    return (
        f"| {result['environment']['verify']} | {run} | {cell('ceiling')} | {cell('start')} | {cell('check')} "
        f"| {cell('get')} | {met} of {len(result['targets'])} |"
    )


def report(result: dict[str, Any]) -> str:
    """The human-readable report."""
    cfg, env = result["config"], result["environment"]
    lines = [
        f"verify latency at one client, at {env['verify']}: per endpoint {cfg['warmup']} warm-up + {cfg['requests']} "
        f"measured requests, in blocks of {cfg['block']}; one keep-alive connection per app; 1 gunicorn instance x "
        f"{cfg['workers']} gevent workers per app"
        f"{', the Procfile gunicorn.conf.py' if cfg['procfile_conf'] else ', no gunicorn.conf.py'}",
        "app settings: defaults, sandbox" + "".join(f", {k}={v}" for k, v in cfg["env"].items()),
        f"machine: {env['cpus']} CPUs ({env['cpus_usable']} usable), Python {env['python']}, "
        f"Redis {env['redis']} (embedded), gunicorn {env['gunicorn']}, gevent {env['gevent']}, "
        f"hiredis {env['hiredis']}",
        "",
        f"{'endpoint':<36}{'count':>7}{'errors':>7}{'p50 ms':>8}{'p90 ms':>8}{'p99 ms':>8}{'max ms':>8}"
        f"{'x ceil':>8}{'target':>8}",
    ]
    for op, row in result["endpoints"].items():
        ratio = f"{result['ratios'][op]:.2f}" if op in result["ratios"] else ""
        target = f"<= {TARGETS[op]:g}" if op in TARGETS else ""
        lines.append(
            f"{LABELS[op]:<36}{row['count']:>7}{row['errors']:>7}{row['p50_ms']:>8.2f}{row['p90_ms']:>8.2f}"
            f"{row['p99_ms']:>8.2f}{row['max_ms']:>8.2f}{ratio:>8}{target:>8}"
        )
    lines.append("(x ceil: the endpoint's p50 / the ceiling's p50, in this run)")
    cpu = result["cpu_percent"]
    if cpu:
        lines.append(
            f"CPU while measuring (100% = one core): gunicorn workers {cpu['gunicorn workers']:.0f}%, redis-server "
            f"{cpu['redis-server']:.0f}%, load generator {cpu['load generator']:.0f}%, other processes "
            f"{cpu['other processes']:.0f}%, steal {cpu['steal']:.0f}%"
        )
        if busy_machine(cpu):
            lines.append("  WARNING: other processes (or the hypervisor) took CPU while measuring; run again.")
    if result["connections_reopened"]:
        lines.append(
            f"WARNING: a connection was reopened {result['connections_reopened']} times while measuring: those "
            "requests paid for a TCP handshake too."
        )
    lines.append("")
    lines.append("targets:")
    lines.extend(f"  {'PASS' if t['met'] else 'FAIL'}  {t['target']}: {t['value']:g}" for t in result["targets"])
    lines.append("")
    lines.append("for docs/performance.md:")
    lines.append(MARKDOWN_HEADER)
    lines.append(result["markdown"])
    if result["errors"]:
        lines.append("")
        lines.append("ERRORS:")
        lines.extend(f"  {e['operation']:<10} {e['kind']:<45} x{e['count']}" for e in result["errors"])
        lines.append("  samples:")
        lines.extend(f"    {s}" for s in result["error_samples"])
    lines.append("")
    lines.append(f"Note: {NOTE}")
    return "\n".join(lines)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None, epilog=NOTE)
    parser.add_argument("--requests", type=int, default=2000, help="requests measured per endpoint (default 2000)")
    parser.add_argument(
        "--warmup", type=int, default=200, help="requests per endpoint before measuring, not counted (default 200)"
    )
    parser.add_argument("--workers", type=int, default=2, help="gunicorn gevent workers per app (default 2)")
    add_procfile_conf(parser)
    parser.add_argument(
        "--enforce-targets",
        action="store_true",
        help="exit with status 2 when a target is missed (and no request failed)",
    )
    parser.add_argument("--json", type=Path, metavar="PATH", help="also write the results as JSON to PATH")
    args = parser.parse_args(argv)
    if args.requests < 1 or args.warmup < 0 or args.workers < 1:
        parser.error("--requests and --workers must be >= 1, --warmup >= 0")
    # What bench.load.serving reads besides --workers: one instance, no gunicorn access log (as in production).
    args.instances = 1
    args.access_log = False
    # All the requests come from one IP: the per-IP limits are raised as in the throughput bench (they still run).
    args.env = dict(SINGLE_CLIENT_ENV)
    return args


def run(args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    """Serve both apps, measure, stop them; the results."""
    api_key = "bench_" + secrets.token_urlsafe(24)
    secret_key = secrets.token_urlsafe(32)
    env = ceiling_env()
    logs: dict[str, str] = {}
    with (
        serving("ceiling", ceiling_app, lambda _: env, workdir, args) as ceiling_server,
        serving(
            "service",
            lambda _: "verify:create_app()",
            lambda url: service_env(url, api_key, secret_key, args.env),
            workdir,
            args,
        ) as service_server,
    ):
        result = measure(ceiling_server, service_server, api_key, args)
        result["environment"] = environment(service_server.redis_nodes)
        result["gunicorn"] = {
            "ceiling": ceiling_server.instances[0].command,
            "service": service_server.instances[0].command,
        }
        if result["errors"]:
            logs = {"ceiling": tails(ceiling_server), "service": tails(service_server)}
    result["ratios"], result["targets"] = judge(result["endpoints"])
    result["config"] = {
        "requests": args.requests,
        "warmup": args.warmup,
        "block": BLOCK,
        "workers": args.workers,
        "procfile_conf": args.procfile_conf,
        "host": HOST,
        "env": args.env,
    }
    result["markdown"] = markdown_row(result)
    result["logs"] = logs
    result["note"] = NOTE
    return result


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, exit_on_sigterm)
    with tempfile.TemporaryDirectory(prefix="verify-latency-") as tmp:
        result = run(args, Path(tmp))
    print(report(result))
    for name, log in result["logs"].items():
        print(f"\n{name} gunicorn log (last {LOG_TAIL_LINES} lines):\n{log}")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=2) + "\n")
    if result["errors"]:
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
