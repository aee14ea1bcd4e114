"""The Redis Cluster and Sentinel set-ups that the tests and the benchmark run on, all on 127.0.0.1, built of
:class:`verify.embedded.EmbeddedRedis` servers (they are not part of the installed package)."""

from __future__ import annotations

import socket
import subprocess
import time
from pathlib import Path

import redis

from verify.embedded import EmbeddedRedis, free_port


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
        self.nodes = [
            EmbeddedRedis(
                data_dir / f"node{i}",
                port=free_cluster_port(),
                binary=binary,
                args=(
                    "--cluster-enabled",
                    "yes",
                    "--cluster-config-file",
                    "nodes.conf",
                    "--cluster-node-timeout",
                    "2000",
                    "--cluster-require-full-coverage",
                    "no",
                ),
            )
            for i in range(primaries * (1 + replicas))
        ]
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
        subprocess.run(
            [
                str(cli),
                "--cluster",
                "create",
                *(f"127.0.0.1:{n.port}" for n in self.nodes),
                "--cluster-replicas",
                str(self.replicas),
                "--cluster-yes",
            ],
            check=True,
            capture_output=True,
            timeout=timeout,
        )
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
        self.replica = EmbeddedRedis(
            data_dir / "replica", binary=binary, args=("--replicaof", "127.0.0.1", str(self.master.port))
        )
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
        assert conf is not None
        conf.parent.mkdir(parents=True, exist_ok=True)
        conf.write_text(
            f"sentinel monitor {self.service} 127.0.0.1 {self.master.port} 1\n"
            f"sentinel down-after-milliseconds {self.service} 1000\n"
            f"sentinel failover-timeout {self.service} 5000\n"
        )
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
