"""gunicorn settings for ``gunicorn wsgi:app -c gunicorn.conf.py``.

gevent workers: a request mostly waits on Redis or a gateway, so one process serves many at once.
PORT and WEB_CONCURRENCY follow the usual platform conventions. Without WEB_CONCURRENCY, one worker per CPU this
process may run on (a gevent worker keeps one core busy; docs/performance.md measured more to do no better).

Logs hold no secrets (README "Production"): :class:`verify.logs.RedactingLogger` redacts the access log, gunicorn's
error log and the app's own lines (``verify.*``, which it sends to the error log, in its format).
"""

import os

bind = os.environ.get("GUNICORN_BIND") or f"0.0.0.0:{os.environ.get('PORT', '8000')}"
workers = int(os.environ.get("WEB_CONCURRENCY") or len(os.sched_getaffinity(0)))
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
# Importing verify.logs imports nothing of the app (verify/__init__.py is lazy), so the master stays free of ssl
# and requests until gevent has patched each worker.
logger_class = "verify.logs.RedactingLogger"
