"""Gateway callbacks: blueprint ``/webhooks``, one pipeline for every gateway (after anymail's webhook views).

Each gateway's declaration names the URLs it is called on (``webhooks``) and its webhooks module
(``verify/providers/<name>_webhooks.py``) owns the verification and parsing of its callbacks (``parse``: signature,
token or checksum against its secret list, age, body formats); the routes come from the app's gateway list
(``verify/gateways.py``), given when the blueprint is registered. One view serves them all: verify and parse ->
refuse a nonce seen before -> ``service.handle`` each event -> the acknowledgement that gateway expects.
Policy on status codes, since gateways retry on anything but success:

- 200 for anything handled or harmless (an unknown phone, an already approved verification, a repeat), so
  the gateway stops retrying;
- 403 for a forged, altered, stale or replayed request, which changes nothing;
- 404 for a gateway that is not configured, or a D7 URL with the wrong token;
- 503 while Redis is down, so the gateway retries later and nothing is lost (a nonce claimed for a callback that
  then failed is released, so the retry is not taken for a replay).
"""

from __future__ import annotations

from typing import Any

from flask import Blueprint, Response, request
from flask.sansio.blueprints import BlueprintSetupState

from verify.errors import NotFound, WebhookRejected
from verify.providers.base import CallReceived, DeliveryReport, Gateway, Inbound, SmsReceived, Webhook
from verify.service import Service
from verify.web.context import metrics, now, settings, tenancy

bp = Blueprint("webhooks", __name__, url_prefix="/webhooks")

# The kind of each event in the metrics (verify_webhooks_total).
KINDS = {CallReceived: "call", SmsReceived: "inbound_sms", DeliveryReport: "delivery_report"}


def callback(gateway: str, route: str, **args: str) -> Response:
    """Any gateway's callback: verify, parse, refuse a replay, apply its events, acknowledge."""
    counted = metrics().webhooks
    try:
        hook, tenants = _verified(gateway, route, args)
    except (NotFound, WebhookRejected):
        counted.labels(gateway, "none", "rejected").inc()
        raise
    results = []
    try:
        for event in hook.events:
            applied = tenancy().handle(event, tenants)
            results.append((KINDS[type(event)], "ignored" if applied is None else "accepted"))
    except BaseException:
        if hook.nonce:
            tenants[0].release_nonce(gateway, hook.nonce)
        raise
    for kind, result in results or [("none", "ignored")]:  # counted once applied: a retried failure counts once
        counted.labels(gateway, kind, result).inc()
    ack = next(r.ack for r in _declared(gateway).webhooks if r.name == route)
    return Response(ack, mimetype="text/plain")


def _verified(gateway: str, route: str, args: dict[str, str]) -> tuple[Webhook, list[Service]]:
    """The callback, verified and parsed by its gateway's module, its nonce claimed, with the tenants whose
    settings of that gateway verified it (a tenant may have its own hook secret; tenants that share a gateway's
    settings share its callbacks, and :meth:`Tenancy.handle` finds which one an event is for); :class:`NotFound`
    for a gateway that is not configured or a wrong URL, :class:`WebhookRejected` for a forged, stale or replayed
    one."""
    groups = tenancy().gateway_settings(gateway)
    if not groups:
        raise NotFound(f"{gateway} is not a configured gateway")
    inbound = Inbound(
        request.method,
        request.query_string,
        request.get_data(cache=True),
        request.mimetype,
        dict(request.headers.items()),
    )
    refused: WebhookRejected | None = None
    for own, tenants in groups:
        try:
            hook: Webhook = _declared(gateway).parse(route, inbound, args, own, now(), settings().webhook_max_age)
        except NotFound:  # a URL that must look like no URL at all: not even which part of it was wrong
            continue
        except WebhookRejected as err:
            refused = refused or err
            continue
        # The nonce is claimed among the tenants whose secret verified it: a report another tenant signed (the
        # same bytes in the same second) does not use up the owner's.
        if hook.nonce and not tenants[0].claim_nonce(gateway, hook.nonce):
            raise WebhookRejected("this nonce was seen before: a replayed request")
        return hook, tenants
    if refused is not None:
        raise refused
    raise NotFound("no such webhook")


def _declared(gateway: str) -> Gateway[Any]:
    return next(g for g in settings().gateways if g.name == gateway)


@bp.record
def _routes(state: BlueprintSetupState) -> None:
    """Each route of each gateway in the list given to ``register_blueprint(bp, gateways=...)``."""
    for gateway in state.options["gateways"]:
        for route in gateway.webhooks:
            state.add_url_rule(
                route.rule,
                endpoint=f"{gateway.name}_{route.name}",
                view_func=callback,
                methods=list(route.methods),
                defaults={"gateway": gateway.name, "route": route.name},
            )
