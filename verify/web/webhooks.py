"""Gateway callbacks: blueprint ``/webhooks``, one pipeline for every gateway (after anymail's webhook views).

Each gateway module declares the URLs it is called on (``WEBHOOKS``) and owns the verification and parsing of its
callbacks (``parse_webhook``: signature, token or checksum against its secret list, age, body formats); the
registry lists them (``verify.providers.registry.WEBHOOK_GATEWAYS``). One view serves them all: verify and parse
-> refuse a nonce seen before -> ``service.handle`` each event -> the acknowledgement that gateway expects.
Policy on status codes, since gateways retry on anything but success:

- 200 for anything handled or harmless (an unknown phone, an already approved verification, a repeat), so
  the gateway stops retrying;
- 403 for a forged, altered, stale or replayed request, which changes nothing;
- 404 for a gateway that is not configured, or a D7 URL with the wrong token;
- 503 while Redis is down, so the gateway retries later and nothing is lost (a nonce claimed for a callback that
  then failed is released, so the retry is not taken for a replay).
"""

from __future__ import annotations

from flask import Blueprint, Response, request

from verify.errors import NotFound, WebhookRejected
from verify.providers.base import CallReceived, DeliveryReport, Inbound, SmsReceived, Webhook
from verify.providers.base import WebhookRejected as Rejected
from verify.providers.registry import WEBHOOK_GATEWAYS
from verify.web.context import service

bp = Blueprint("webhooks", __name__, url_prefix="/webhooks")

_GATEWAYS = {gateway.name: gateway for gateway in WEBHOOK_GATEWAYS}
# The kind of each event in the metrics (verify_webhooks_total).
KINDS = {CallReceived: "call", SmsReceived: "inbound_sms", DeliveryReport: "delivery_report"}
_ACKS = {(gateway.name, route.name): route.ack for gateway in WEBHOOK_GATEWAYS for route in gateway.routes}


def callback(gateway: str, route: str, **args: str) -> Response:
    """Any gateway's callback: verify, parse, refuse a replay, apply its events, acknowledge."""
    svc = service()
    counted = svc.metrics.webhooks
    try:
        hook = _verified(gateway, route, args)
    except (NotFound, WebhookRejected):
        counted.labels(gateway, "none", "rejected").inc()
        raise
    results = []
    try:
        for event in hook.events:
            results.append((KINDS[type(event)], "ignored" if svc.handle(event) is None else "accepted"))
    except BaseException:
        if hook.nonce:
            svc.release_nonce(gateway, hook.nonce)
        raise
    for kind, result in results or [("none", "ignored")]:  # counted once applied: a retried failure counts once
        counted.labels(gateway, kind, result).inc()
    return Response(_ACKS[(gateway, route)], mimetype="text/plain")


def _verified(gateway: str, route: str, args: dict[str, str]) -> Webhook:
    """The callback, verified and parsed by its gateway's module, its nonce claimed; :class:`NotFound` for a gateway
    that is not configured or a wrong URL, :class:`WebhookRejected` for a forged, stale or replayed one."""
    svc = service()
    hooks = _GATEWAYS[gateway]
    settings = hooks.settings(svc.settings)
    if settings is None:
        raise NotFound(f"{gateway} is not a configured gateway")
    inbound = Inbound(
        request.method,
        request.query_string,
        request.get_data(cache=True),
        request.mimetype,
        dict(request.headers.items()),
    )
    try:
        hook: Webhook = hooks.parse(route, inbound, args, settings, svc.clock(), svc.settings.webhook_max_age)
    except Rejected as err:
        if err.status == 404:
            raise NotFound("no such webhook") from err
        raise WebhookRejected(err.reason) from err
    if hook.nonce and not svc.claim_nonce(gateway, hook.nonce):
        raise WebhookRejected("this nonce was seen before: a replayed request")
    return hook


for _gateway in WEBHOOK_GATEWAYS:
    for _route in _gateway.routes:
        bp.add_url_rule(
            _route.rule,
            endpoint=f"{_gateway.name}_{_route.name}",
            view_func=callback,
            methods=list(_route.methods),
            defaults={"gateway": _gateway.name, "route": _route.name},
        )
