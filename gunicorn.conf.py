"""gunicorn settings for ``gunicorn wsgi:app -c gunicorn.conf.py``.

gevent workers: a request mostly waits on Redis or a gateway, so one process serves many at once.
PORT and WEB_CONCURRENCY follow the usual platform conventions.
"""

import logging
import os
from typing import Any

bind = os.environ.get("GUNICORN_BIND") or f"0.0.0.0:{os.environ.get('PORT', '8000')}"
workers = int(os.environ.get("WEB_CONCURRENCY", "2"))
worker_class = "gevent"
worker_connections = 1000
# Longer than the whole provider chain may take, so a slow gateway does not get the worker killed.
timeout = 60
graceful_timeout = 20
control_socket_disable = True
accesslog = "-"


def post_fork(server: Any, worker: Any) -> None:
    """The app's own log lines (verify.*: sends, approvals, gateway failures; never codes, keys or tokens) go
    where gunicorn's error log goes, in its format."""
    app_log = logging.getLogger("verify")
    app_log.handlers = list(worker.log.error_log.handlers)
    app_log.setLevel(logging.INFO)
    app_log.propagate = False
