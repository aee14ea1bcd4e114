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
    """A master, ``replicas`` replicas and ``sentinels`` sentinels watching them as ``service`` on 127.0.0.1.

    The sentinels agree that the master is down with a majority (the quorum), ``down_after_ms`` after it stopped
    answering, and then one of them promotes a replica. :meth:`kill` crashes a server (SIGKILL), :meth:`revive`
    starts it again (empty: no persistence); the sentinels make a revived old master a replica of the new one.
    """

    def __init__(
        self,
        data_dir: Path,
        *,
        service: str = "mymaster",
        binary: str | None = None,
        replicas: int = 1,
        sentinels: int = 1,
        down_after_ms: int = 1000,
    ) -> None:
        self.service = service
        self.down_after_ms = down_after_ms
        self.master = EmbeddedRedis(data_dir / "master", binary=binary)
        self.replicas = [
            EmbeddedRedis(
                data_dir / f"replica{i}", binary=binary, args=("--replicaof", "127.0.0.1", str(self.master.port))
            )
            for i in range(replicas)
        ]
        self.sentinels = [
            EmbeddedRedis(
                data_dir / f"sentinel{i}",
                binary=binary,
                config=data_dir / f"sentinel{i}" / "sentinel.conf",
                args=("--sentinel",),
            )
            for i in range(sentinels)
        ]

    @property
    def replica(self) -> EmbeddedRedis:
        """The first replica."""
        return self.replicas[0]

    @property
    def sentinel(self) -> EmbeddedRedis:
        """The first sentinel."""
        return self.sentinels[0]

    @property
    def servers(self) -> list[EmbeddedRedis]:
        """The master and the replicas, as they were started (a failover swaps their roles, not this list)."""
        return [self.master, *self.replicas]

    @property
    def url(self) -> str:
        """``redis+sentinel://127.0.0.1:<port>[,127.0.0.1:<port>...]/<service>``: every sentinel."""
        return "redis+sentinel://" + ",".join(f"127.0.0.1:{s.port}" for s in self.sentinels) + f"/{self.service}"

    def start(self, timeout: float = 60.0) -> str:
        """Start them all and wait until every sentinel knows every replica and every other sentinel (a failover
        needs both: a replica to promote, and a majority of the sentinels to elect the one that does it)."""
        for server in self.servers:
            server.start()
        for sentinel in self.sentinels:
            conf = sentinel.config
            assert conf is not None
            conf.parent.mkdir(parents=True, exist_ok=True)
            conf.write_text(
                f"sentinel monitor {self.service} 127.0.0.1 {self.master.port} {len(self.sentinels) // 2 + 1}\n"
                f"sentinel down-after-milliseconds {self.service} {self.down_after_ms}\n"
                f"sentinel failover-timeout {self.service} 5000\n"
            )
            sentinel.start()
        deadline = time.monotonic() + timeout
        for sentinel in self.sentinels:
            client = redis.Redis(port=sentinel.port, decode_responses=True)
            try:
                while not (
                    len(client.execute_command("SENTINEL", "REPLICAS", self.service)) == len(self.replicas)  # type: ignore[no-untyped-call]
                    and len(client.execute_command("SENTINEL", "SENTINELS", self.service)) == len(self.sentinels) - 1  # type: ignore[no-untyped-call]
                ):
                    if time.monotonic() > deadline:
                        raise RuntimeError(f"sentinel {sentinel.port} never saw every replica and sentinel")
                    time.sleep(0.2)
            finally:
                client.close()
        return self.url

    def master_port(self) -> int:
        """The port of the master the first sentinel names now."""
        client = redis.Redis(port=self.sentinel.port, decode_responses=True)
        try:
            return int(client.execute_command("SENTINEL", "GET-MASTER-ADDR-BY-NAME", self.service)[1])  # type: ignore[no-untyped-call]
        finally:
            client.close()

    def kill(self, server: EmbeddedRedis) -> None:
        """Crash ``server`` at once (SIGKILL of the process we started), as ``kill -9`` would."""
        if server.process is not None:
            server.process.kill()
            server.process.wait()

    def revive(self, server: EmbeddedRedis) -> None:
        """Start a killed server again, on its port (empty)."""
        server.start()

    def stop(self) -> None:
        """Stop them all."""
        for server in (*self.sentinels, *reversed(self.servers)):
            server.stop()
