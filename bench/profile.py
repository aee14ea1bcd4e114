"""Where a gunicorn worker's time goes under load: py-spy's samples of each worker, in the issue's buckets.

``.venv/bin/python -m bench.load --profile DIR`` records every worker of the service with py-spy (``py-spy record
--format raw``: one line per distinct stack, ``frame;frame;... count``) over each measured phase, writes the raw
stacks to ``DIR/<phase>-<pid>.txt`` and prints each phase's shares, computed here. ``.venv/bin/python -m
bench.profile FILE...`` prints the shares of files recorded before.

A stack counts for the first bucket, from the outermost frame in, whose library it enters: a log line's JSON
counts for ``logging``, not ``json``; a Redis reply parsed inside redis-py counts for ``redis client``. C extensions
(hiredis, orjson) have no frames of their own: their time counts for the Python frame that called them. Stacks in no
bucket count for the framework (``flask/werkzeug``), the server (``gunicorn/gevent``: accepting, reading and
writing sockets, the hub waiting), the app's own code (``verify``) or ``other``.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from collections import Counter
from pathlib import Path

#: (bucket, how a frame's file path begins after py-spy's "(", relative to its site-packages), tried in this order
#: on every frame from the outermost in.
BUCKETS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("logging", ("(logging/", "(verify/logs.py")),
    ("redis client", ("(redis/", "(hiredis/", "(verify/store/wire.py")),  # redis-py, and the store's lean road
    ("prometheus_client", ("(prometheus_client/", "(verify/metrics.py")),
    ("json", ("(json/",)),
    ("phonenumbers", ("(phonenumbers/",)),
    ("itsdangerous", ("(itsdangerous/",)),
)
#: When no bucket above took a stack: the first of these whose files appear in it, from the innermost frame out.
FALLBACK: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("verify", ("(verify/",)),
    ("flask/werkzeug", ("(flask/", "(werkzeug/")),
    ("gunicorn/gevent", ("(gunicorn/", "(gevent/")),
)
SAMPLE_RATE = 250  # samples per second


def bucket(stack: str) -> str:
    """The bucket of one stack (``frame;frame;...``, outermost first)."""
    frames = stack.split(";")
    for frame in frames:
        for name, paths in BUCKETS:
            if any(path in frame for path in paths):
                return name
    for frame in reversed(frames):
        for name, paths in FALLBACK:
            if any(path in frame for path in paths):
                return name
    return "other"


def shares(raw: str) -> dict[str, float]:
    """Each bucket's share of the samples of py-spy's raw output ``raw``, largest first."""
    counts: Counter[str] = Counter()
    for line in raw.splitlines():
        stack, _, count = line.rpartition(" ")
        if stack and count.isdigit():
            counts[bucket(stack)] += int(count)
    total = sum(counts.values())
    return {name: n / total for name, n in counts.most_common()} if total else {}


def record(pid: int, seconds: float, out: Path) -> subprocess.Popen[bytes]:
    """Start py-spy on process ``pid`` for ``seconds``, writing raw stacks to ``out``; wait on the process."""
    spy = Path(sys.executable).with_name("py-spy")
    return subprocess.Popen(
        [
            str(spy),
            "record",
            "--pid",
            str(pid),
            "--duration",
            str(max(1, round(seconds))),
            "--rate",
            str(SAMPLE_RATE),
            "--format",
            "raw",
            "--nonblocking",
            "--output",
            str(out),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def line(name: str, share: dict[str, float]) -> str:
    """One phase's shares as one report line."""
    return f"{name}: " + ", ".join(f"{bucket} {value:.0%}" for bucket, value in share.items())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Bucket py-spy raw profiles (bench.load --profile).")
    parser.add_argument("files", nargs="+", type=Path)
    args = parser.parse_args(argv)
    merged = "\n".join(path.read_text() for path in args.files)
    for path in args.files:
        print(line(path.name, shares(path.read_text())))
    if len(args.files) > 1:
        print(line("all", shares(merged)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
