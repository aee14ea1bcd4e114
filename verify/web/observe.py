"""What each request leaves behind: its request id, one log line, and the HTTP metrics; and ``GET /metrics``.

The request line (logger ``verify.request``) names the route template, never the raw path: a token in a path (D7's
webhook URL) or a secret in a query string (SMSC's handler URL) cannot reach it. Under gunicorn it replaces the access
log (gunicorn.conf.py); :func:`verify.logs.log_request` writes it, without a log record under gunicorn's JSON logger
(it is the one line every request writes). The request id is the client's ``X-Request-Id`` when it has a shape no
secret of ours has (:data:`GIVEN_ID`), else a new one; it is returned as ``X-Request-Id`` and carried by every line the
app logs while serving the request (:data:`verify.logs.REQUEST_ID`). The verification a request is about is its
route's ``verification_id``, or ``g.verification_id`` when a view sets it (a start, for the id it made).
"""

from __future__ import annotations

import logging
import re
import secrets
import time

from flask import Blueprint, Flask, Response, current_app, g, request
from prometheus_client import CONTENT_TYPE_LATEST
from werkzeug.wrappers import Response as BaseResponse

from verify.logs import REQUEST_ID, log_request
from verify.metrics import UNMATCHED_ROUTE, Exposition, Metrics
from verify.store import ID_RE
from verify.web.context import require_bearer

log = logging.getLogger("verify.request")

REQUEST_ID_HEADER = "X-Request-Id"
# The client's id is logged and echoed only when it cannot be a secret it pasted there by mistake (an API key, a
# code, a proof token): a UUID (8-4-4-4-12 hex, any version or case; Envoy, Heroku and most clients make these) or a
# W3C trace id (32 lowercase hex digits, not all zeros; nginx's $request_id has this shape, and so do the ids made
# here). Codes are digits of another length, keys (``dev_`` + base64url from ``verify dev``) and proof tokens have
# other characters. Anything else is dropped unseen, not even logged as a hash: a hash of a 6-digit code gives the
# code back after a million guesses. An operator who makes an API key in one of these shapes loses that protection.
GIVEN_ID = re.compile(
    r"[0-9A-Fa-f]{8}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{12}|(?!0{32})[0-9a-f]{32}"
)
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})

bp = Blueprint("observe", __name__)


def install(app: Flask, metrics: Metrics, exposition: Exposition, metrics_tokens: tuple[str, ...]) -> None:
    """Observe every request of ``app``, and serve ``/metrics`` (behind a bearer token when any is set)."""
    app.extensions["verify.metrics"] = (metrics, exposition, metrics_tokens)
    app.before_request(_begin)
    app.after_request(_end)
    app.teardown_request(_teardown)
    app.register_blueprint(bp)


def _begin() -> None:
    given = request.headers.get(REQUEST_ID_HEADER, "")
    request_id = given if GIVEN_ID.fullmatch(given) else secrets.token_hex(16)
    g.request_id = request_id
    g.started = time.perf_counter()
    g.request_id_token = REQUEST_ID.set(request_id)


def _end(response: BaseResponse) -> BaseResponse:
    started: float | None = g.pop("started", None)
    if started is None:  # a request that failed before _begin ran (none do today): nothing to time
        return response
    duration = time.perf_counter() - started
    metrics: Metrics = current_app.extensions["verify.metrics"][0]
    method = request.method if request.method in METHODS else "OTHER"
    route = request.url_rule.rule if request.url_rule is not None else UNMATCHED_ROUTE
    metrics.request(method, route, response.status_code, duration)
    # Only a well-formed id: the path segment is whatever the client sent (a proof token pasted there, say).
    verification_id = g.get("verification_id") or (request.view_args or {}).get("verification_id", "")
    if not ID_RE.fullmatch(verification_id):
        verification_id = ""
    response.headers[REQUEST_ID_HEADER] = g.request_id
    log_request(log, method, route, response.status_code, duration, g.request_id, verification_id)
    return response


def _teardown(error: BaseException | None) -> None:
    token = g.pop("request_id_token", None)
    if token is not None:
        REQUEST_ID.reset(token)


@bp.get("/metrics")
def metrics() -> Response:
    """Every worker's metrics in the Prometheus text format."""
    _, exposition, tokens = current_app.extensions["verify.metrics"]
    if tokens:
        require_bearer(tokens, "VERIFY_METRICS_TOKEN")
    return Response(exposition.render(), content_type=CONTENT_TYPE_LATEST)
