"""The HTTP side of the abuse limits: the client IP, and flask-limiter's route limit on checks.

Which limit lives where, and why, is in ``verify/quotas.py``. flask-limiter keeps the one limit whose model fits:
``check_ip`` (``VERIFY_LIMIT_CHECK_IP``), a route limit hit before the view, atomically (its sliding-window-counter
script), and never given back, since a check is work done whatever its outcome. Every other quota needs giving back
when a request ends up sending nothing, so the store takes it in its own Lua, next to the verification it guards.

The client IP is ``remote_addr``; ``X-Forwarded-For`` counts only for ``VERIFY_TRUSTED_PROXIES`` hops (ProxyFix).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from typing import Any

from flask import Flask, request
from flask_limiter import Limiter
from flask_limiter.errors import RateLimitExceeded
from redis import ConnectionPool
from werkzeug.middleware.proxy_fix import ProxyFix
from werkzeug.wrappers import Response

from verify.config import Settings
from verify.errors import RateLimited, render


def client_ip() -> str:
    """The client's address, after ProxyFix applied the trusted proxies' X-Forwarded-For."""
    return request.remote_addr or "unknown"


class RouteLimits:
    """flask-limiter on the store's Redis connections, for the check route."""

    def __init__(self, app: Flask, settings: Settings, pool: ConnectionPool) -> None:
        if settings.trusted_proxies:
            app.wsgi_app = ProxyFix(app.wsgi_app, x_for=settings.trusted_proxies)  # type: ignore[method-assign]
        # The store's connection pool: one set of Redis connections per app, with the store's timeouts. A storage
        # error is not swallowed: the request gets 503 store-unavailable after one Redis timeout, not two.
        self.limiter = Limiter(client_ip, app=app, storage_uri=settings.redis_url, strategy="sliding-window-counter",
                               storage_options={"connection_pool": pool,  # type: ignore[dict-item]
                                                "key_prefix": f"{settings.redis_prefix}limits"},
                               headers_enabled=False,
                               swallow_errors=False)
        if settings.limit_check_ip:
            view: Callable[..., Any] = app.view_functions["v1.check"]
            app.view_functions["v1.check"] = self.limiter.limit(settings.limit_check_ip, scope="check_ip")(view)
        app.register_error_handler(RateLimitExceeded, self._refused)

    def _refused(self, err: RateLimitExceeded) -> Response:
        current = self.limiter.current_limit
        retry_after = max(1, math.ceil(current.reset_at - time.time())) if current else 1
        return render(RateLimited("check_ip", str(err.limit.limit), retry_after))
