"""The connection to Redis: the forms of ``VERIFY_REDIS_URL``, the client each gives, what it is connected to, and
the state a store keeps per process beside it (writes deferred to the next batch, a Redis that timed out a moment
ago). Behind Sentinel, how writes are confirmed is :mod:`verify.store.replicas`'s.
"""

from __future__ import annotations

import copy
import math
import time
import weakref
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Literal, Self

import redis
from redis.backoff import NoBackoff
from redis.cluster import ClusterNode, RedisCluster
from redis.exceptions import RedisClusterException
from redis.retry import Retry
from redis.sentinel import Sentinel, SentinelConnectionPool

from verify.config import REDIS_URL
from verify.errors import ConfigError, StoreUnavailable
from verify.store.replicas import REPLICAS_EVERY_S, Mode, Replicas
from verify.store.scripts import Scripts
from verify.store.wire import Wire

if TYPE_CHECKING:
    from verify.store import Batch

REDIS_SCHEMES = ("redis", "rediss", "unix", "redis+cluster", "redis+sentinel")
SOCKET_TIMEOUT_S = 2.0
CONNECT_TIMEOUT_S = 1.0
#: How many deferred writes a process keeps while Redis fails (Store.defer).
MAX_DEFERRED = 10_000
MAX_CONNECTIONS = 100
CLUSTER_MAX_CONNECTIONS = 1000  # per node, or for the sentinel's master: a worker's gevent connections
Client = redis.Redis | RedisCluster
#: What ``/readyz`` says of the store: a :data:`~verify.store.replicas.Mode`, or ``down`` when Redis does not answer.
Health = Literal["confirmed", "degraded", "refusing", "down"]


def parse_url(url: str) -> tuple[str, str | None, list[tuple[str, int]], str]:
    """``VERIFY_REDIS_URL`` as (scheme, password, [(host, port)], sentinel service); a ConfigError naming it when it
    is none of the accepted forms. For ``redis://``, ``rediss://`` and ``unix://`` only the scheme is read here."""
    scheme, _, rest = url.partition("://")
    if scheme not in REDIS_SCHEMES or not rest:
        raise ConfigError(
            REDIS_URL,
            f"must be redis://, rediss://, redis+cluster://host:port[,host:port...] "
            f"or redis+sentinel://host:port[,...]/<service>, not {url!r}",
        )
    if scheme not in ("redis+cluster", "redis+sentinel"):
        return scheme, None, [], ""
    hosts, _, path = rest.partition("/")
    credentials, _, hosts = hosts.rpartition("@")
    password = credentials.partition(":")[2] or None
    service = path.strip("/")
    nodes = []
    for item in hosts.split(","):
        host, _, port = item.strip().rpartition(":")
        if not host or not port.isdigit():
            raise ConfigError(REDIS_URL, f"must list host:port pairs separated by commas, not {item!r}")
        nodes.append((host, int(port)))
    if scheme == "redis+sentinel" and not service:
        raise ConfigError(REDIS_URL, "must name the sentinel service: redis+sentinel://host:port/<service>")
    return scheme, password, nodes, service


class Connection(Replicas):
    """A store's connection to Redis (the part of :class:`~verify.store.Store` that is not its keys or batches)."""

    def __init__(
        self,
        client: Client,
        prefix: str,
        *,
        wait_replicas: int = 0,
        min_replicas: int = 0,
        sentinel: Sentinel | None = None,
        service: str = "",
    ) -> None:
        self.client = client
        self.prefix = self.shared_prefix = prefix
        self.cluster = isinstance(client, RedisCluster)
        # Sentinel: a batch that writes waits until this many replicas have it, so a failover loses nothing that
        # was acknowledged (WAIT, in the same round trip); with fewer online and the sentinels' consent, it goes on
        # unconfirmed, unless min_replicas (VERIFY_REDIS_MIN_REPLICAS) must confirm it.
        self.wait_replicas = wait_replicas
        self.min_replicas = min_replicas
        self._sentinel, self._service = sentinel, service
        # The master's online replicas at the last look (ROLE); None: not known.
        self.replicas: int | None = None
        self.replicas_every = REPLICAS_EVERY_S
        # When (monotonic) the ROLE of that count was asked: answers to earlier questions are older news, ignored.
        # Stale: a failure since; the next write asks again.
        self._replicas_at = -math.inf
        self._replicas_stale = True
        self._role_refused = False  # the Redis user may not run ROLE (an ACL without @dangerous)
        # What the sentinels said, and when it was asked: the master a majority of them name, and whether a write to
        # it may go on unconfirmed (see _ask_sentinels).
        self._view: tuple[Any, bool] = (None, False)
        self._view_at = -math.inf
        self.mode: Mode = "confirmed"
        self.scripts = Scripts(client)
        # One server through the store's own pool: batches take the lean road (store/wire.py).
        self.wire = (
            Wire(client)
            if isinstance(client, redis.Redis) and isinstance(client.connection_pool, redis.BlockingConnectionPool)
            else None
        )
        self.down_until = 0.0
        # Told of every Redis failure a batch meets (the app counts them: verify_redis_errors_total).
        self.on_error: Callable[[BaseException], object] = lambda err: None
        self._deferred: list[tuple[Callable[[Batch], object], bool]] = []
        # Close the sockets when the store goes, rather than leave them to the garbage collector.
        weakref.finalize(self, client.close)

    @classmethod
    def from_url(cls, url: str, prefix: str, *, min_replicas: int = 0) -> Self:
        """Connect to ``url`` (``VERIFY_REDIS_URL``): ``redis://`` or ``rediss://`` (one server, connected lazily),
        ``redis+cluster://[:password@]host:port[,host:port...]`` or
        ``redis+sentinel://[:password@]host:port[,host:port...]/<service>`` (the master only: a limit read from a
        lagging replica would be a limit bypassed). A cluster or a sentinel that does not answer, or has no master,
        is a :class:`~verify.errors.ConfigError` naming the variable: the app does not start. ``min_replicas``
        (``VERIFY_REDIS_MIN_REPLICAS``, Sentinel only): how many replicas must confirm a write.

        Short timeouts and no retry of a timeout: a dead Redis must give a quick 503, not a hang. A refused or
        reset connection is retried once at once, on a fresh connection (a Redis that restarted). A request holds
        a connection only for a round trip; :data:`MAX_CONNECTIONS` per worker (per node) are enough, and past them
        a request waits for one (single server) rather than failing, as redis-py's default pool would.
        """
        options: dict[str, Any] = {
            "decode_responses": True,
            "socket_timeout": SOCKET_TIMEOUT_S,
            "socket_connect_timeout": CONNECT_TIMEOUT_S,
            "retry": Retry(NoBackoff(), 1, supported_errors=(redis.ConnectionError,)),
        }
        scheme, password, nodes, service = parse_url(url)
        if scheme == "redis+cluster":
            try:
                cluster = RedisCluster(
                    startup_nodes=[ClusterNode(host, port) for host, port in nodes],  # type: ignore[no-untyped-call]
                    password=password,
                    max_connections=CLUSTER_MAX_CONNECTIONS,
                    require_full_coverage=False,
                    **options,
                )
                state = cluster.cluster_info().get("cluster_state")
            except IndexError as err:  # redis-py's, when the nodes answer but none owns a slot
                raise ConfigError(
                    REDIS_URL, "names a cluster that is not ready (no node owns a slot: was the cluster created?)"
                ) from err
            except (redis.RedisError, RedisClusterException) as err:
                raise ConfigError(
                    REDIS_URL, f"names a cluster that does not answer or is not ready ({type(err).__name__}: {err})"
                ) from err
            if state != "ok":
                cluster.close()
                raise ConfigError(REDIS_URL, f"names a cluster that is not ready (cluster_state: {state})")
            return cls(cluster, prefix)
        if scheme == "redis+sentinel":
            sentinel = Sentinel(
                nodes,
                sentinel_kwargs={
                    "password": password,
                    "socket_timeout": SOCKET_TIMEOUT_S,
                    "socket_connect_timeout": CONNECT_TIMEOUT_S,
                },
                password=password,
                **options,
            )
            try:
                sentinel.discover_master(service)
            except redis.RedisError as err:
                raise ConfigError(
                    REDIS_URL, f"names sentinels that know no master {service!r} ({type(err).__name__}: {err})"
                ) from err
            client = sentinel.master_for(
                service, max_connections=CLUSTER_MAX_CONNECTIONS, health_check_interval=15, **options
            )
            return cls(
                client,
                prefix,
                wait_replicas=max(1, min_replicas),
                min_replicas=min_replicas,
                sentinel=sentinel,
                service=service,
            )
        pool = redis.BlockingConnectionPool.from_url(
            url, max_connections=MAX_CONNECTIONS, timeout=SOCKET_TIMEOUT_S, health_check_interval=15, **options
        )
        return cls(redis.Redis(connection_pool=pool), prefix)

    def topology(self) -> list[str]:
        """What this store is connected to, for ``verify check-config --live``: the nodes and their roles."""
        try:
            return self._topology()
        except redis.RedisError as err:
            raise StoreUnavailable(f"{type(err).__name__}: {err}") from err

    def _topology(self) -> list[str]:
        if isinstance(self.client, RedisCluster):
            slots: dict[str, int] = {}
            ranges: dict[tuple[int, int], dict[str, Any]] = self.client.cluster_slots()  # type: ignore[assignment]
            for (start, end), owners in ranges.items():
                primary = f"{owners['primary'][0]}:{owners['primary'][1]}"
                slots[primary] = slots.get(primary, 0) + end - start + 1
            return [
                f"cluster node {node.host}:{node.port} ({node.server_type}, "
                f"{slots.get(f'{node.host}:{node.port}', 0)} slots)"
                for node in self.client.get_nodes()  # type: ignore[no-untyped-call]
            ]
        info = self.client.info("replication")
        pool = self.client.connection_pool
        if isinstance(pool, SentinelConnectionPool):
            host, port = pool.get_master_address()  # type: ignore[no-untyped-call]
            return [f"sentinel master {host}:{port} ({info.get('connected_slaves', 0)} replicas)"]
        kwargs = pool.connection_kwargs
        where = kwargs.get("path") or f"{kwargs.get('host')}:{kwargs.get('port')}"
        return [f"server {where} (role {info.get('role')})"]

    def for_tenant(self, prefix: str) -> Self:
        """This store for one tenant: its keys under ``prefix``, the shared ones (a phone's quotas,
        :class:`~verify.store.keys.Keys`) still under this store's, over the same connections and scripts. Its
        deferred writes ride on its own batches. The store it was made from must outlive it: it owns the sockets."""
        tenant = copy.copy(self)
        tenant.prefix = prefix
        tenant._deferred = []
        return tenant

    def defer(self, queue: Callable[[Batch], object], *, until_done: bool = False) -> None:
        """Have ``queue`` put its commands on the next batch this store runs (in this process), whoever runs it.

        For writes that need no answer: the pumping guard's counts and the sandbox gateway's message copies, which
        may be lost with that batch; and (``until_done``) the undoing of what a failed request may have left, which
        waits for the next round trip when that one fails too (it may then run twice: it must be repeatable), up to
        :data:`MAX_DEFERRED` of them, past which the oldest are dropped. A request's next round trip carries them,
        so they cost none of their own.
        """
        self._deferred.append((queue, until_done))

    def keep_deferred(self, deferred: list[tuple[Callable[[Batch], object], bool]], *, sent: bool) -> None:
        """Put back what a failed batch carried of :meth:`defer`'s writes: all of them when nothing was sent, else
        only those that must be done (the rest may have been applied, and must not be twice)."""
        kept = [entry for entry in deferred if entry[1] or not sent]
        self._deferred = [*kept, *self._deferred]
        undoing = [entry for entry in self._deferred if entry[1]]
        if len(undoing) > MAX_DEFERRED:
            drop = {id(entry) for entry in undoing[: len(undoing) - MAX_DEFERRED]}
            self._deferred = [entry for entry in self._deferred if id(entry) not in drop]

    def close(self) -> None:
        """Close every connection now (a store made for a while: the CLI's, the tests')."""
        self.client.close()
        if isinstance(self.client, redis.Redis):
            self.client.connection_pool.disconnect()  # a pool handed to the client is not closed with it

    def ping(self) -> bool:
        """Whether Redis answers."""
        try:
            return bool(self.client.ping())
        except redis.RedisError:
            return False

    def health(self) -> Health:
        """What ``/readyz`` says: whether Redis answers and, behind Sentinel, how writes are confirmed now (the
        master's ``ROLE`` and, when it has fewer replicas than a write waits for, the sentinels: off the requests'
        path)."""
        if not self.wait_replicas:
            return "confirmed" if self.ping() else "down"
        try:
            replicas = self.replicas_now()
        except StoreUnavailable:
            return "down"
        if replicas is not None and replicas < self.wait_replicas:
            self._unconfirmed_allowed(self._master(), time.monotonic())
        return self._note()
