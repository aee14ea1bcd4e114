"""Who the client is: its address, as the abuse limits count it.

The client IP is ``remote_addr``; ``X-Forwarded-For`` counts only for ``VERIFY_TRUSTED_PROXIES`` hops (werkzeug's
ProxyFix), so a client cannot pick its own address. Which quotas a request takes, and where, is in
``verify/quotas.py``.
"""

from __future__ import annotations

from flask import Flask, request
from werkzeug.middleware.proxy_fix import ProxyFix

from verify.config import Settings


def client_ip() -> str:
    """The client's address, after ProxyFix applied the trusted proxies' X-Forwarded-For."""
    return request.remote_addr or "unknown"


def trust_proxies(app: Flask, settings: Settings) -> None:
    """Believe ``X-Forwarded-For`` for the ``VERIFY_TRUSTED_PROXIES`` hops in front of the app, and no more."""
    if settings.trusted_proxies:
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=settings.trusted_proxies)  # type: ignore[method-assign]
