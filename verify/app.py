"""The app factory. :func:`create_app` builds the WSGI app: settings -> store, secrets, providers, service ->
blueprints -> error handlers. Per-app objects live in ``app.extensions["verify"]``; there is no module-level state.
"""

from __future__ import annotations

import logging
import threading

from flask import Flask

from verify import api, errors, sandbox, webhooks
from verify.captcha import Captcha
from verify.clock import Clock, system_clock
from verify.config import Settings
from verify.events import Events
from verify.providers import registry
from verify.ratelimit import trust_proxies
from verify.service import Service, to_json, view
from verify.store import Store
from verify.tokens import Secrets

MAX_BODY_BYTES = 64 * 1024


def create_app(settings: Settings | None = None, *, clock: Clock = system_clock, background: bool = True) -> Flask:
    """Build the app from ``settings`` (read from the environment when not given).

    With ``VERIFY_EVENTS_URL`` set and ``background`` true, each process delivers customer events in a daemon
    thread (a greenlet under gunicorn's gevent workers); the workers share the outbox in Redis. Tests pass
    ``background=False`` and drive ``Events`` themselves.
    """
    settings = settings or Settings.from_env()
    app = Flask(__name__)
    app.config["MAX_CONTENT_LENGTH"] = MAX_BODY_BYTES
    app.json.sort_keys = False  # type: ignore[attr-defined]

    app.register_blueprint(api.public)
    app.register_blueprint(api.v1)
    app.register_blueprint(webhooks.bp)
    if settings.sandbox:
        app.register_blueprint(sandbox.bp)
        logging.getLogger(__name__).warning(
            "sandbox mode: /sandbox/* endpoints are on and reveal codes; never use it in production")

    store = Store.from_url(settings.redis_url, settings.redis_prefix)
    gateways = registry.build(settings, store, clock)
    secrets = Secrets(settings.secret_keys, settings.token_ttl, clock)
    events = Events(settings, store, clock, lambda record: to_json(view(record, settings, secrets)))
    trust_proxies(app, settings)
    app.extensions["verify"] = Service(settings, store, secrets, gateways.sms, gateways.call, clock, events,
                                       Captcha(settings, store))
    if events.enabled and background:
        stop = threading.Event()
        threading.Thread(target=events.run, args=(stop,), name="verify-events", daemon=True).start()
        app.extensions["verify.events.stop"] = stop
    errors.register(app)
    return app
