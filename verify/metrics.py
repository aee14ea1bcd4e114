"""Prometheus metrics: what ``verify`` does and what it costs (README "Metrics").

One :class:`Metrics` per app, its collectors in the app's own registry (no global state: two apps in one process
count apart). Under gunicorn, prometheus_client runs in multiprocess mode (``PROMETHEUS_MULTIPROC_DIR``, set by
gunicorn.conf.py or ``verify dev``): each worker writes its samples to files in that directory, and ``/metrics``,
whichever worker serves it, adds up every worker's. States that live in Redis (the gateways' circuit breakers) are
read from Redis at scrape time, so every worker reports the same state, fresh.

Naming follows Prometheus: a ``verify_`` prefix, ``_total`` counters, ``_seconds`` histograms, and label values
from bounded sets only (a country is its ISO code, a route its template): never a phone, an id or a path.

What a tenant's requests and loops do (their verifications, SMS, gateways, limits, captchas, events) is counted
under its ``tenant`` label (the first), whose values are the ids of the tenants file and ``default``, the implicit
tenant's: each tenant's service counts through :meth:`Metrics.for_tenant`. What belongs to the deployment (HTTP,
Redis, gateway callbacks, which are counted before a tenant is known) carries no ``tenant``; each tenant's breakers,
read from Redis, carry it (:class:`State`).
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterator, Sequence
from typing import Generic, TypeVar

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.registry import Collector

from verify._version import version
from verify.errors import ReplicasUnconfirmed, StoreUnavailable
from verify.store import Breaker, Op, Store
from verify.tenants import IMPLICIT

# The label of the tenant whose work a metric counts (every metric a Tenanted attribute of Metrics holds has it).
TENANT = "tenant"
# A verification's labels: how it travels, through which gateway, to which country.
LIFECYCLE = ("channel", "provider", "country")
PROVIDER_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
HTTP_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
UNMATCHED_ROUTE = "<unmatched>"

_Labelled = TypeVar("_Labelled", Counter, Gauge, Histogram)


class Tenanted(Generic[_Labelled]):
    """One tenant's side of a metric whose first label is ``tenant``: :meth:`labels` takes the values of the others
    and gives the child of (this tenant, those values), looked up once per values and then kept (a hot path calls it on
    every request)."""

    __slots__ = ("_children", "family", "tenant")

    def __init__(self, family: _Labelled, tenant: str) -> None:
        self.family: _Labelled = family  # the prometheus_client metric, every tenant's
        self.tenant = tenant
        self._children: dict[tuple[str, ...], _Labelled] = {}

    def labels(self, *values: str) -> _Labelled:
        """``family.labels(tenant, *values)``, bound once per ``values``: the same child, so every count goes where
        ``labels`` would send it, without its checks, conversions and lock on every request."""
        try:
            return self._children[values]
        except KeyError:
            child = self._children[values] = self.family.labels(self.tenant, *values)
            return child


class Metrics:
    """Every metric the app records, as one tenant counts them (:meth:`for_tenant`; the app's own object is the
    implicit tenant's, ``default``). The deployment's attributes are prometheus_client metrics; a tenant's are
    :class:`Tenanted`, whose ``labels`` put the tenant first and bind each label set once. Label them and count;
    :meth:`request` counts a request served (its children bound once too)."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry
        self.tenant = IMPLICIT
        # The HTTP metrics' children, bound once per label values (see request(); a tenant's metrics bind theirs in
        # Tenanted.labels). Label values come from bounded sets (the module's docstring), and prometheus_client keeps
        # every child it made anyway: these hold no more than it does.
        self._requests: dict[tuple[str, str, int], tuple[Counter, Histogram]] = {}
        self._tenants: dict[str, Metrics] = {IMPLICIT: self}  # every view, shared by them all

        def own(family: _Labelled) -> Tenanted[_Labelled]:
            return Tenanted(family, IMPLICIT)

        def counter(name: str, what: str, *labels: str) -> Tenanted[Counter]:
            """A tenant's counter ``verify_<name>_total``, labelled ``tenant`` and then ``labels``."""
            return own(Counter(f"verify_{name}", what, (TENANT, *labels), registry=registry))

        self.started = counter("verifications_started", "Verifications whose first SMS or call went out.", *LIFECYCLE)
        self.approved = counter(
            "verifications_approved", "Verifications approved: by a code, an SMS reply or a call.", *LIFECYCLE
        )
        self.expired = counter(
            "verifications_expired", "Verifications that ended unapproved at the end of their lifetime.", *LIFECYCLE
        )
        self.canceled = counter("verifications_canceled", "Verifications canceled through the API.", *LIFECYCLE)
        self.failed = counter(
            "verifications_failed", "Verifications whose message the gateway reported undeliverable.", *LIFECYCLE
        )
        # A fallback chain's steps (service.py): from which channel to which, and why (the send failed, or was not
        # approved within its wait).
        self.fallback_steps = counter(
            "fallback_steps",
            "Fallback steps taken: the same code sent on the chain's next channel.",
            "from_channel",
            "to_channel",
            "reason",
        )
        self.sms_messages = counter("sms_messages", "SMS handed to a gateway.", "provider", "encoding")
        self.sms_parts = counter(
            "sms_parts", "Parts of the SMS handed to a gateway: what they cost.", "provider", "encoding"
        )
        # What gateways report a message cost, in their own currency (Telegram: USD), and the messages they refunded
        # (Telegram refunds a code neither delivered nor read within its ttl). Counted once per message.
        self.gateway_cost = counter(
            "gateway_cost", "Cost of the messages a gateway reported, in its currency.", "provider"
        )
        self.gateway_refunds = counter("gateway_refunds", "Messages a gateway reported refunded.", "provider")
        self.provider_latency = own(
            Histogram(
                "verify_provider_request_duration_seconds",
                "How long a gateway took to take (or fail) a request.",
                (TENANT, "provider", "operation"),
                buckets=PROVIDER_BUCKETS,
                registry=registry,
            )
        )
        self.provider_errors = counter(
            "provider_errors", "Gateway requests that failed, by kind.", "provider", "operation", "kind"
        )
        self.failovers = counter(
            "failovers",
            "Sends that gave up on a gateway (then tried the next one, if any): after an "
            "error, or because its circuit breaker was open.",
            "provider",
            "reason",
        )
        # Counted before the callback's tenant is known (and a callback may concern several): the deployment's.
        self.webhooks = Counter(
            "verify_webhooks",
            "Gateway callbacks: each event a callback carried, or the "
            "callback itself when it carried none or was rejected.",
            ("provider", "kind", "result"),
            registry=registry,
        )
        self.rate_limited = counter("rate_limited", "Requests refused by a limit.", "limit")
        self.captcha_challenges = counter("captcha_challenges", "Captcha challenges issued.")
        self.captcha_answers = counter("captcha_answers", "Captcha answers judged.", "result")
        self.pumping = own(  # each tenant's statistics are its own (under its Redis prefix)
            Gauge(
                "verify_pumping_guard_active",
                "1 while the SMS-pumping guard asks every SMS start to this country for a captcha.",
                (TENANT, "country"),
                multiprocess_mode="mostrecent",
                registry=registry,
            )
        )
        self.events = counter(
            "events", "Customer event deliveries: delivered, retried later, dropped.", "type", "result"
        )
        self.redis_errors = Counter("verify_redis_errors", "Redis failures the app saw.", ("kind",), registry=registry)
        self.http_requests = Counter(
            "verify_http_requests", "HTTP requests served.", ("method", "route", "status"), registry=registry
        )
        self.http_latency = Histogram(
            "verify_http_request_duration_seconds",
            "How long a request took to serve.",
            ("method", "route"),
            buckets=HTTP_BUCKETS,
            registry=registry,
        )

    def for_tenant(self, tenant: str) -> Metrics:
        """The metrics as tenant ``tenant`` counts them: the same attributes over the same prometheus_client metrics,
        a tenant's (:class:`Tenanted`) labelled ``tenant`` first. One view per tenant, made once (the app makes one
        per tenant of the file: the label's values are bounded by it); ``default`` is the app's own object."""
        try:
            return self._tenants[tenant]
        except KeyError:
            pass
        view = copy.copy(self)  # shares the registry, the deployment's metrics and their children, the views
        view.tenant = tenant
        for name, value in vars(self).items():
            if isinstance(value, Tenanted):
                setattr(view, name, Tenanted(value.family, tenant))
        self._tenants[tenant] = view
        return view

    def request(self, method: str, route: str, status: int, seconds: float) -> None:
        """Count a request served (``verify_http_requests_total``) and its duration
        (``verify_http_request_duration_seconds``); the two children of a (method, route, status) are bound once."""
        try:
            counted, timed = self._requests[method, route, status]
        except KeyError:
            counted, timed = self._requests[method, route, status] = (
                self.http_requests.labels(method, route, str(status)),
                self.http_latency.labels(method, route),
            )
        counted.inc()
        timed.observe(seconds)

    def redis_error(self, err: BaseException) -> None:
        """Count a Redis failure by its kind (the store calls this): ``wait_timeout`` is a write that fewer replicas
        confirmed than it waited for (Sentinel's WAIT)."""
        name = type(err).__name__
        if isinstance(err, ReplicasUnconfirmed):
            kind = "wait_timeout"
        else:
            kind = "timeout" if "Timeout" in name else "connection" if "Connection" in name else "other"
        self.redis_errors.labels(kind).inc()


#: The families :class:`State` reads that are a tenant's (each tenant's breakers are under its own Redis prefix).
TENANTED_STATE = frozenset({"verify_breaker_open"})


class State(Collector):
    """What lives in Redis, read at each scrape: the circuit breaker of every gateway each tenant uses (one round trip
    per tenant: its breakers are its own), behind Sentinel the master's replicas (its ROLE, one more), and the build. A
    scrape while Redis is down reports neither rather than failing."""

    def __init__(self, tenants: Sequence[tuple[str, Store, Sequence[str]]], clock: Callable[[], float]) -> None:
        """``tenants``: each tenant's id, store and gateways in use, the deployment's (implicit) tenant first."""
        self._tenants = [(tenant, store, tuple(dict.fromkeys(providers))) for tenant, store, providers in tenants]
        self._store = self._tenants[0][1]
        self._clock = clock
        self._version = version()

    def collect(self) -> Iterator[Metric]:
        """The samples of this scrape."""
        info = GaugeMetricFamily("verify_build_info", "The running version (always 1).", labels=("version",))
        info.add_metric((self._version,), 1)
        yield info
        breakers: dict[tuple[str, str], Op[Breaker]] = {}
        try:
            for tenant, store, providers in self._tenants:
                batch = store.batch()
                breakers |= {(tenant, name): batch.breaker(name) for name in providers}
                batch.run()
        except StoreUnavailable:
            return
        now_ms = int(self._clock() * 1000)
        family = GaugeMetricFamily(
            "verify_breaker_open", "1 while the gateway's circuit breaker is open.", labels=(TENANT, "provider")
        )
        for labels, op in breakers.items():
            family.add_metric(labels, 1 if op.value.open_until > now_ms else 0)
        yield family
        yield from self._replication()

    def _replication(self) -> Iterator[Metric]:
        store = self._store
        if not store.wait_replicas:
            return
        try:
            replicas = store.replicas_now()
        except StoreUnavailable:
            return
        if replicas is None:
            return
        online = GaugeMetricFamily(
            "verify_redis_replicas", "Replicas the Sentinel master has online: those that can confirm a write."
        )
        online.add_metric((), replicas)
        yield online
        degraded = GaugeMetricFamily(
            "verify_redis_degraded",
            "1 while the Sentinel master has fewer replicas online than a write waits for: writes go on unconfirmed "
            "(or get 503 with VERIFY_REDIS_MIN_REPLICAS).",
        )
        degraded.add_metric((), 1 if replicas < store.wait_replicas else 0)
        yield degraded


class Exposition:
    """The ``/metrics`` page: this app's registry, or every worker's samples in multiprocess mode, plus
    :class:`State`."""

    def __init__(self, metrics: Metrics, state: State, multiprocess_dir: str | None) -> None:
        if multiprocess_dir:
            self._registry = CollectorRegistry()
            MultiProcessCollector(self._registry, multiprocess_dir)  # type: ignore[no-untyped-call]
        else:
            self._registry = metrics.registry
        self._registry.register(state)

    def render(self) -> bytes:
        """The text format, version 0.0.4."""
        return generate_latest(self._registry)
