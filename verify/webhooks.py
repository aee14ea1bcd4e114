"""Gateway callbacks: blueprint ``/webhooks``. Each handler verifies, parses, and hands events to the service.

The flow is ``provider.parse_*(request)`` (which verifies the signature, token or age first) ->
``service.handle(event)`` -> the acknowledgement that gateway expects. Policy on status codes, since gateways
retry on anything but success:

- 200 for anything handled or harmless (an unknown phone, an already approved verification, a repeat), so
  the gateway stops retrying;
- 403 for a forged, altered, stale or replayed request, which changes nothing;
- 404 for a gateway that is not configured, or a D7 URL with the wrong token;
- 503 while Redis is down, so the gateway retries later and nothing is lost.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar
from zoneinfo import ZoneInfo

from flask import Blueprint, Response, request

from verify.api import service
from verify.errors import NotFound, WebhookRejected
from verify.providers import d7, smsc, zoomconnect
from verify.providers.base import Event, Inbound
from verify.providers.base import WebhookRejected as Rejected

bp = Blueprint("webhooks", __name__, url_prefix="/webhooks")

ZOOMCONNECT_KINDS = ("reply", "delivery")
T = TypeVar("T")


def _inbound() -> Inbound:
    return Inbound(request.method, request.query_string, request.get_data(cache=True), request.mimetype,
                   dict(request.headers.items()))


def _verified(parse: Callable[[], T]) -> T:
    """Run a provider's verify-and-parse step, turning its rejection into our problem response."""
    try:
        return parse()
    except Rejected as err:
        if err.status == 404:
            raise NotFound("no such webhook") from err
        raise WebhookRejected(err.reason) from err


def _apply(events: list[Event], ack: str = "OK") -> Response:
    for event in events:
        service().handle(event)
    return Response(ack, mimetype="text/plain")


@bp.post("/smsc")
def smsc_callback() -> Response:
    """SMSC: delivery statuses, inbound SMS and confirmation calls (``waitcall=1``), md5/sha1/crc32 signed."""
    settings = service().settings.smsc
    if settings is None:
        raise NotFound("smsc is not a configured gateway")
    inbound = _inbound()
    return _apply(_verified(lambda: smsc.parse_callback(inbound, settings.secrets or None,
                                                        algorithms=settings.hashes)))


@bp.post("/zoomconnect/<kind>")
def zoomconnect_callback(kind: str) -> Response:
    """Zoom Connect: ``reply`` (inbound SMS) or ``delivery`` (report); HMAC-SHA1 checksum, nonce and age."""
    svc = service()
    settings = svc.settings.zoomconnect
    if settings is None or kind not in ZOOMCONNECT_KINDS:
        raise NotFound("no such webhook")
    if not settings.secrets:
        raise WebhookRejected("VERIFY_ZOOMCONNECT_SECRET is not set, so no Zoom Connect callback can be verified")
    inbound = _inbound()
    hook = _verified(lambda: zoomconnect.parse_callback(
        inbound, "reply" if kind == "reply" else "delivery", settings.secrets, svc.clock(), ZoneInfo(settings.tz),
        svc.settings.webhook_max_age))
    if not svc.claim_nonce("zoomconnect", hook.nonce):
        raise WebhookRejected("this nonce was seen before: a replayed request")
    try:
        return _apply(hook.events)
    except BaseException:
        svc.release_nonce("zoomconnect", hook.nonce)
        raise


def _d7_verified(token: str) -> None:
    settings = service().settings.d7
    if settings is None:
        raise NotFound("no such webhook")
    _verified(lambda: d7.check_token(token, settings.webhook_tokens))


@bp.route("/d7/<token>", methods=["GET", "POST"])
def d7_dlr(token: str) -> Response:
    """D7 legacy (Jasmin) delivery receipt; Jasmin wants the body ``ACK/Jasmin`` or it retries."""
    _d7_verified(token)
    inbound = _inbound()
    return _apply(_verified(lambda: d7.parse_dlr(inbound)), ack=d7.LEGACY_ACK)


@bp.post("/d7/<token>/report")
def d7_report(token: str) -> Response:
    """D7 v1 delivery report (form or JSON)."""
    _d7_verified(token)
    inbound = _inbound()
    return _apply(_verified(lambda: d7.parse_report(inbound)))
