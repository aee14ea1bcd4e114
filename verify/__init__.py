"""verify: self-hosted phone verification. ``from verify import create_app`` (see :mod:`verify.app`).

Importing the package imports nothing else: gunicorn's master loads ``verify.logs`` for its logger class before
gevent patches each worker, and the app (requests and ssl among its imports) must be imported only after that
(gevent issue 1016). So the app's names are loaded when first used.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from verify._version import version

if TYPE_CHECKING:
    from verify.app import MAX_BODY_BYTES, create_app

__all__ = ["MAX_BODY_BYTES", "create_app", "version"]


def __getattr__(name: str) -> Any:
    if name in ("MAX_BODY_BYTES", "create_app"):
        from verify import app

        return getattr(app, name)
    raise AttributeError(f"module 'verify' has no attribute {name!r}")
