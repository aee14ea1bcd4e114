"""The app factory. :func:`create_app` builds the WSGI app: settings -> store, secrets, gateways, service ->
blueprints -> error handlers. Per-app objects live in ``app.extensions["verify"]``; there is no module-level state.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial

from flask import Flask, request
from prometheus_client import CollectorRegistry

from verify.captcha import Captcha
from verify.clock import Clock, system_clock
from verify.config import Settings
from verify.events import Events
from verify.metrics import Exposition, Metrics, State
from verify.model import view
from verify.providers.base import Http, Provider, Shared
from verify.service import Service
from verify.store import SOCKET_TIMEOUT_S, Store
from verify.tenancy import Tenancy
from verify.tenants import IMPLICIT
from verify.tokens import Secrets
from verify.web import api, observe, problems, sandbox, webhooks, widget
from verify.web.client_ip import trust_proxies
from verify.web.views import Json, to_json

MAX_BODY_BYTES = 64 * 1024


def create_app(settings: Settings | None = None, *, clock: Clock = system_clock, background: bool = True) -> Flask:
    """Build the app from ``settings`` (read from the environment when not given).

    With ``background`` true, each process sweeps expiries (and, with ``VERIFY_EVENTS_URL`` set, delivers customer
    events) in a daemon thread (a greenlet under gunicorn's gevent workers); the workers share the outbox in Redis.
    Tests pass ``background=False`` and drive ``Events`` themselves.
    """
    settings = settings or Settings.from_env()
    app = Flask(__name__)
    app.config["MAX_CONTENT_LENGTH"] = MAX_BODY_BYTES
    app.json = Json(app)

    app.register_blueprint(api.public)
    app.register_blueprint(api.v1)
    app.register_blueprint(webhooks.bp, gateways=settings.gateways)
    app.register_blueprint(widget.bp)
    if settings.sandbox:
        app.register_blueprint(sandbox.bp)
        logging.getLogger(__name__).warning(
            "sandbox mode: /sandbox/* endpoints are on and reveal codes; never use it in production"
        )

    metrics = Metrics(CollectorRegistry(auto_describe=True))
    store = Store.from_url(settings.redis_url, settings.redis_prefix, min_replicas=settings.redis_min_replicas)
    store.on_error = metrics.redis_error
    tenancy = build_tenancy(settings, store, clock, metrics)
    trust_proxies(app, settings)
    app.extensions["verify"] = tenancy.default
    app.extensions["verify.tenancy"] = tenancy
    observe.install(
        app,
        metrics,
        Exposition(metrics, State(tenancy.stores(), clock), settings.metrics_dir),
        settings.metrics_tokens,
    )
    if background:  # the expiry sweep runs always (the expired metric); events go out only with a receiver
        stop = threading.Event()
        loops = []
        for tenant, service in tenancy.services.items():
            # Fallback chains need two channels that carry a code; without them the loop does not look for steps.
            also = {"fallback": partial(service.run_fallback, stop)} if service.chains_possible else {}
            name = "verify-events" if tenant == IMPLICIT else f"verify-events-{tenant}"
            loops.append(threading.Thread(target=service.events.run, args=(stop, 1.0, also), name=name, daemon=True))
            loops[-1].start()
        # The loop stops after the event it is posting, so waiting one POST and one Redis round trip is enough.
        app.extensions["verify.events.stop"] = stopper(
            stop, loops, settings.http_connect_timeout + settings.http_read_timeout + SOCKET_TIMEOUT_S
        )
    problems.register(app, lambda: request.method not in ("GET", "HEAD", "OPTIONS"))
    return app


@dataclass(frozen=True)
class Gateways:
    """The SMS failover chain, the call provider, the voice chain and the telegram gateway, built once per app."""

    sms: list[Provider]
    call: Provider | None
    voice: list[Provider]
    telegram: list[Provider]

    @property
    def all(self) -> list[Provider]:
        """Every gateway in use, each once."""
        return list(
            {id(p): p for p in [*self.sms, *([self.call] if self.call else []), *self.voice, *self.telegram]}.values()
        )


def build_tenancy(settings: Settings, store: Store, clock: Clock, metrics: Metrics) -> Tenancy:
    """Each tenant's gateways and service (``settings.tenant_list()``), the implicit one's over ``store`` and the
    others' over the same connections under their own prefixes, each counting under its ``tenant`` label
    (:meth:`Metrics.for_tenant`); with a tenants file, ``VERIFY_LIMIT_GLOBAL`` caps them all together."""
    services: dict[str, Service] = {}
    api_keys: dict[str, str] = {}
    for tenant in settings.tenant_list():
        own = tenant.settings
        tenant_store = store if tenant.id == IMPLICIT else store.for_tenant(own.redis_prefix)
        gateways = build_gateways(own, tenant_store, clock)
        services[tenant.id] = build_service(
            own,
            tenant_store,
            clock,
            metrics.for_tenant(tenant.id),  # counted under its id (the app's own object is the implicit tenant's)
            gateways.sms,
            gateways.call,
            gateways.voice,
            gateways.telegram,
            cap=settings.deployment_cap,
        )
        api_keys |= dict.fromkeys(tenant.api_key_hashes, tenant.id)
    return Tenancy(services, api_keys)


def build_gateways(settings: Settings, store: Store, clock: Clock) -> Gateways:
    """The gateways the settings name, each built once by its declaration, sharing one HTTP session."""
    http = Http(settings.http_connect_timeout, settings.http_read_timeout)
    shared = Shared(settings, http, clock, StoreOutbox(store))
    declared = {gateway.name: gateway for gateway in settings.gateways}
    made: dict[str, Provider] = {}
    for name in settings.providers:
        gateway = declared[name]
        made[name] = gateway.make(settings.gateway_settings[name] if gateway.settings else None, shared)
    return Gateways(
        [made[name] for name in settings.sms_providers],
        made[settings.call_provider] if settings.call_provider else None,
        [made[name] for name in settings.voice_providers],
        [made[name] for name in settings.telegram_providers],
    )


class StoreOutbox:
    """The sandbox gateway's outbox in the store: each message is written with the send's commit, in its round trip
    (``Store.defer``)."""

    def __init__(self, store: Store) -> None:
        self._store = store

    def keep(self, phone: str, message: dict[str, str]) -> None:
        """Queue ``message`` to ``phone`` on the store's next batch."""
        self._store.defer(lambda batch: batch.outbox_push(phone, message))


def stopper(stop: threading.Event, loops: list[threading.Thread], timeout: float) -> Callable[[], None]:
    """What ``app.extensions["verify.events.stop"]`` holds: a call that stops the event loops (one per tenant) and
    waits at most ``timeout`` seconds for them to end. gunicorn.conf.py's ``worker_exit`` calls it once the worker
    has finished its requests, so a loop is not killed between posting an event and marking it delivered (which
    would post it again after the lease ran out)."""

    def stop_and_join() -> None:
        log = logging.getLogger(__name__)
        stop.set()
        log.info("events: the loop is stopping; waiting up to %.0f s for the event being posted", timeout)
        deadline = time.monotonic() + timeout
        for loop in loops:
            loop.join(max(0.0, deadline - time.monotonic()))
        if any(loop.is_alive() for loop in loops):
            log.warning(
                "events: the loop did not stop within %.0f s; an event it was posting may go out again", timeout
            )

    return stop_and_join


def build_service(
    settings: Settings,
    store: Store,
    clock: Clock,
    metrics: Metrics,
    sms: list[Provider],
    call: Provider | None,
    voice: list[Provider] | None = None,
    telegram: list[Provider] | None = None,
    *,
    cap: str = "",
) -> Service:
    """The service, with its secrets, events and captcha, over ``store`` and the gateways given (no voice or
    telegram gateway unless ``voice`` or ``telegram`` lists some); ``cap``: the deployment's limit over all
    tenants."""
    secrets = Secrets(settings.secret_keys, settings.token_ttl, clock)
    events = Events(settings, store, clock, lambda record: to_json(view(record, settings, secrets)), metrics)
    captcha = Captcha(settings, store, metrics)
    chains = {"voice": voice or [], "telegram": telegram or []}
    return Service(settings, store, secrets, sms, call, clock, events, captcha, metrics, chains, cap)
