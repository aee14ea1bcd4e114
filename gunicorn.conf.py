"""gunicorn settings for ``gunicorn wsgi:app -c gunicorn.conf.py``.

gevent workers: a request mostly waits on Redis or a gateway, so one process serves many at once.
PORT and WEB_CONCURRENCY follow the usual platform conventions.

Logs hold no secrets (README "Production"): :class:`verify.logs.RedactingLogger` redacts the access log, gunicorn's
error log and the app's own lines (``verify.*``, which it sends to the error log, in its format).
"""

import importlib.util
import os
from pathlib import Path
from types import ModuleType


def _verify_logs() -> ModuleType:
    """verify/logs.py, loaded by its path: ``import verify.logs`` would run verify/__init__.py, which imports the
    whole app, requests and its ssl included, into the master, before gevent patches each worker (gevent issue 1016:
    the unpatched SSLContext that urllib3 keeps may break or block every HTTPS call to a gateway). Once the package
    imports its app lazily, ``logger_class = "verify.logs.RedactingLogger"`` does the same."""
    package = importlib.util.find_spec("verify")  # finds the package without running it
    if package is None or not package.submodule_search_locations:
        raise RuntimeError("gunicorn.conf.py: the verify package is not importable from here")
    spec = importlib.util.spec_from_file_location(
        "verify.logs", Path(next(iter(package.submodule_search_locations))) / "logs.py")
    if spec is None or spec.loader is None:
        raise RuntimeError("gunicorn.conf.py: verify/logs.py is missing")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)  # not put in sys.modules: the app's own verify.logs, if imported, is another
    return module


bind = os.environ.get("GUNICORN_BIND") or f"0.0.0.0:{os.environ.get('PORT', '8000')}"
workers = int(os.environ.get("WEB_CONCURRENCY", "2"))
worker_class = "gevent"
worker_connections = 1000
# Longer than the whole provider chain may take, so a slow gateway does not get the worker killed.
timeout = 60
graceful_timeout = 20
control_socket_disable = True
accesslog = "-"
# The default format (method, path and query, status, length, referer, user agent) plus the duration in ms, each
# URL redacted by the logger class.
access_log_format = '%(h)s %(l)s %(u)s %(t)s "%(r)s" %(s)s %(b)s "%(f)s" "%(a)s" %(M)sms'
logger_class = _verify_logs().RedactingLogger
