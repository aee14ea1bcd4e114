"""gunicorn settings for ``gunicorn wsgi:app -c gunicorn.conf.py``.

gevent workers: a request mostly waits on Redis or a gateway, so one process serves many at once.
PORT and WEB_CONCURRENCY follow the usual platform conventions. Without WEB_CONCURRENCY, one worker per CPU this
process may run on (a gevent worker keeps one core busy; docs/performance.md measured more to do no better).

Logs hold no secrets (README "Production"): :class:`verify.logs.RedactingLogger` redacts gunicorn's error log and
the app's own lines (``verify.*``, which it sends to the error log, in its format), each line one JSON object.
``VERIFY_LOG_FORMAT=text`` picks :class:`verify.logs.TextLogger` instead, gunicorn's readable format: the logger
class is chosen here because gunicorn sets up its logging in the master, before the app and its Settings exist
(which read the same variable through the same :func:`verify.logs.log_format`, so both agree). There is no access
log: the app logs one line per request (``verify.request``: route template, status, duration, request id), and
gunicorn's raw access line would carry the path and query string, where gateways put secrets.
"""

import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from verify.logs import LOGGER_CLASSES, log_format

bind = os.environ.get("GUNICORN_BIND") or f"0.0.0.0:{os.environ.get('PORT', '8000')}"
workers = int(os.environ.get("WEB_CONCURRENCY") or len(os.sched_getaffinity(0)))
worker_class = "gevent"
worker_connections = 1000
# Longer than the whole provider chain may take, so a slow gateway does not get the worker killed.
timeout = 60
graceful_timeout = 20
control_socket_disable = True
# No access log: the app's request line (verify/web/observe.py) replaces it.
accesslog = None
# Importing verify.logs imports nothing of the app (verify/__init__.py is lazy), so the master stays free of ssl
# and requests until gevent has patched each worker. A VERIFY_LOG_FORMAT that is neither json nor text stops the
# start here, naming the variable.
logger_class = LOGGER_CLASSES[log_format(os.environ.get("VERIFY_LOG_FORMAT"))]

# Prometheus metrics in multiprocess mode (README "Metrics"): each worker writes its samples to files in
# PROMETHEUS_MULTIPROC_DIR, and /metrics, served by any worker, adds them up. prometheus_client picks its mode when
# first imported, in each worker, so the variable is set here, in the master, before any worker starts. An unset
# directory is made for this run and removed after it. The hooks touch only files: importing prometheus_client
# here would import ssl into the master before gevent patches the workers.
# gunicorn reads this file again on SIGHUP, with the variable set by then: whether this run made the directory is
# kept in the environment too, so that on_exit still removes it after a reload.
MADE_METRICS_DIR = "VERIFY_MADE_METRICS_DIR"


def _check_tenants() -> None:
    """With ``VERIFY_TENANTS_FILE``: read the file whole, once it has stopped changing, into a private copy, and have
    ``verify check-config`` validate that copy in a process of its own (validating here would import the app into
    the master). Valid, the workers started from now on read that copy (``VERIFY_TENANTS_SNAPSHOT``), so one never
    reads a file half rewritten, and all of them read the same. This runs at the start and again on every SIGHUP
    (gunicorn reads this file again): a bad file stops the start, naming the line; on a reload it is refused,
    logged, and the workers gunicorn starts keep serving the last good one.
    """
    source = os.environ.get("VERIFY_TENANTS_FILE")
    if not source:
        return
    text, problem = _settled(Path(source))
    copy = ""
    if not problem:
        handle, copy = tempfile.mkstemp(prefix="verify-tenants-", suffix=".toml")
        with os.fdopen(handle, "wb") as file:
            file.write(text)
        checked = subprocess.run(
            [sys.executable, "-m", "verify.cli", "check-config"],
            env={**os.environ, "VERIFY_TENANTS_SNAPSHOT": copy},
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        problem = "" if checked.returncode == 0 else checked.stderr.strip().removeprefix("configuration error: ")
    previous = os.environ.get("VERIFY_TENANTS_SNAPSHOT")
    if not problem:
        os.environ["VERIFY_TENANTS_SNAPSHOT"] = copy
        if previous:
            Path(previous).unlink(missing_ok=True)  # the workers read it when they started; none will again
        return
    if copy:
        Path(copy).unlink(missing_ok=True)
    if not previous:
        raise SystemExit(f"verify: configuration error: {problem}")
    print(f"verify: the tenants file was not reloaded, the last good one still serves: {problem}", file=sys.stderr)


def _settled(path: Path, tries: int = 20, pause: float = 0.25) -> tuple[bytes, str]:
    """The file's bytes once two reads ``pause`` seconds apart agree (a file being written is waited for, so a copy is
    not cut at a tenant's end and taken for a file with fewer tenants), and "" or why it cannot be had."""
    try:
        text = path.read_bytes()
        for _ in range(tries):
            time.sleep(pause)
            again = path.read_bytes()
            if again == text:
                return text, ""
            text = again
    except OSError as err:
        return b"", f"VERIFY_TENANTS_FILE cannot be read ({err})"
    return b"", f"VERIFY_TENANTS_FILE kept changing for {tries * pause:.0f} s: write it whole, then reload"


_check_tenants()  # first: a bad file stops the start before anything is made that on_exit would remove
if not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix="verify-metrics-")
    os.environ[MADE_METRICS_DIR] = os.environ["PROMETHEUS_MULTIPROC_DIR"]


def on_starting(server: Any) -> None:
    """Empty the metrics directory: the samples of an earlier run are not this run's."""
    for stale in Path(os.environ["PROMETHEUS_MULTIPROC_DIR"]).glob("*.db"):
        stale.unlink()


def child_exit(server: Any, worker: Any) -> None:
    """A dead worker's live gauges go (prometheus_client's ``mark_process_dead``); its counters still count."""
    for live in Path(os.environ["PROMETHEUS_MULTIPROC_DIR"]).glob(f"gauge_live*_{worker.pid}.db"):
        live.unlink(missing_ok=True)


def worker_exit(server: Any, worker: Any) -> None:
    """After the worker's last in-flight request: stop its event delivery loop between two events."""
    stop = getattr(getattr(worker, "wsgi", None), "extensions", {}).get("verify.events.stop")
    if stop is not None:
        stop()


def on_exit(server: Any) -> None:
    """Remove the metrics directory this run made, and the tenants file's last copy."""
    if os.environ.get(MADE_METRICS_DIR) == os.environ["PROMETHEUS_MULTIPROC_DIR"]:
        shutil.rmtree(os.environ["PROMETHEUS_MULTIPROC_DIR"], ignore_errors=True)
    if os.environ.get("VERIFY_TENANTS_SNAPSHOT"):
        Path(os.environ["VERIFY_TENANTS_SNAPSHOT"]).unlink(missing_ok=True)
