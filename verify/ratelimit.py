"""Abuse limits, with flask-limiter's storage and moving-window strategy on the service's Redis.

Two kinds of keys:

- the client IP, for ``start``/``resend`` (``VERIFY_LIMIT_IP``, one budget shared by both) and ``check``
  (``VERIFY_LIMIT_CHECK_IP``): flask-limiter route limits, checked before the view runs;
- the phone and what it belongs to, for ``start``/``resend``: the phone itself, its prefix (E.164 without the
  last 4 digits), its country, and everything (``global``); and wrong codes per phone
  (``VERIFY_LIMIT_PHONE_FAILURES``), which blocks every check of that phone, the right code included, until the
  window moves on. These are checked by the API once the phone is known, with the same limiter's strategy.

Phone keys are always E.164, so formatting variants of one number share one quota. A request refused by one
phone limit is not counted against the others. Over a limit the client gets 429 ``/rate-limited`` with
``Retry-After`` and ``limit`` naming the limit; the answer is the same whether or not the phone was seen before.
The client IP is ``remote_addr``; ``X-Forwarded-For`` counts only for ``VERIFY_TRUSTED_PROXIES`` hops (ProxyFix).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from flask import Flask, Response, g, request
from flask_limiter import Limiter
from flask_limiter.errors import RateLimitExceeded
from limits import RateLimitItem, parse_many
from redis import ConnectionPool
from werkzeug.middleware.proxy_fix import ProxyFix

from verify.config import Settings
from verify.errors import RateLimited, render
from verify.phone import country_of

IP, CHECK_IP = "ip", "check_ip"
PHONE, PREFIX, COUNTRY, GLOBAL, PHONE_FAILURES = "phone", "prefix", "country", "global", "phone_failures"


def client_ip() -> str:
    """The client's address, after ProxyFix applied the trusted proxies' X-Forwarded-For."""
    return request.remote_addr or "unknown"


def _deducted(response: Response) -> bool:
    """Whether a request costs IP quota: all do, except a start that only returned the pending verification
    (a reloaded signup page must never fail)."""
    return bool(g.get("verify_sent", True))


@dataclass(frozen=True)
class _Rule:
    name: str
    items: list[RateLimitItem]


class Limits:
    """The app's limiter: route limits by IP, and limits by phone the API applies once the phone is known."""

    def __init__(self, app: Flask, settings: Settings, pool: ConnectionPool) -> None:
        if settings.trusted_proxies:
            app.wsgi_app = ProxyFix(app.wsgi_app, x_for=settings.trusted_proxies)  # type: ignore[method-assign]
        # The store's connection pool: one set of Redis connections per app, with the store's timeouts. The route
        # limits swallow storage errors (they also run after the response, where no error handler can answer):
        # with Redis down the view itself fails next, with 503 store-unavailable.
        self.limiter = Limiter(client_ip, app=app, storage_uri=settings.redis_url, strategy="moving-window",
                               storage_options={"connection_pool": pool},  # type: ignore[dict-item]
                               key_prefix=f"{settings.redis_prefix}limits", headers_enabled=False,
                               swallow_errors=True)
        self._rules = {name: _Rule(name, parse_many(value)) for name, value in (
            (PHONE, settings.limit_phone), (PREFIX, settings.limit_prefix), (COUNTRY, settings.limit_country),
            (GLOBAL, settings.limit_global), (PHONE_FAILURES, settings.limit_phone_failures)) if value}
        for endpoint, scope, value in (("v1.start", IP, settings.limit_ip), ("v1.resend", IP, settings.limit_ip),
                                       ("v1.check", CHECK_IP, settings.limit_check_ip)):
            if value:
                view: Callable[..., Any] = app.view_functions[endpoint]
                app.view_functions[endpoint] = self.limiter.shared_limit(
                    value, scope=scope, deduct_when=_deducted)(view)
        app.register_error_handler(RateLimitExceeded, self._route_limit_hit)

    def _route_limit_hit(self, err: RateLimitExceeded) -> Response:
        current = self.limiter.current_limit
        retry_after = max(1, math.ceil(current.reset_at - time.time())) if current else 1
        scope = err.limit.scope if isinstance(err.limit.scope, str) else IP
        return render(RateLimited(scope, str(err.limit.limit), retry_after))

    def sends(self, phone: str) -> None:
        """Count a start or resend for ``phone`` against the phone, prefix, country and global limits."""
        self._take([(PHONE, phone), (PREFIX, phone[:-4]), (COUNTRY, country_of(phone)), (GLOBAL, "all")])

    def may_check(self, phone: str) -> None:
        """Refuse any check of ``phone`` while its wrong codes have used up their window."""
        rule = self._rules.get(PHONE_FAILURES)
        if rule:
            for item in rule.items:
                if not self.limiter.limiter.test(item, PHONE_FAILURES, phone):
                    self._refuse(rule.name, item, (PHONE_FAILURES, phone))

    def wrong_code(self, phone: str) -> None:
        """Count a wrong code against ``phone``'s rolling failure budget."""
        rule = self._rules.get(PHONE_FAILURES)
        if rule:
            for item in rule.items:
                self.limiter.limiter.hit(item, PHONE_FAILURES, phone)

    def _take(self, keys: list[tuple[str, str]]) -> None:
        """Test every applicable limit first, then count the request against all of them."""
        applicable = [(self._rules[name], key) for name, key in keys if name in self._rules]
        for rule, key in applicable:
            for item in rule.items:
                if not self.limiter.limiter.test(item, rule.name, key):
                    self._refuse(rule.name, item, (rule.name, key))
        for rule, key in applicable:
            for item in rule.items:
                self.limiter.limiter.hit(item, rule.name, key)

    def _refuse(self, name: str, item: RateLimitItem, identifiers: tuple[str, str]) -> None:
        reset_at = self.limiter.limiter.get_window_stats(item, *identifiers).reset_time
        raise RateLimited(name, str(item), max(1, math.ceil(reset_at - time.time())))
