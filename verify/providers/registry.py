"""Which gateways an app uses: built once from the settings."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from verify.clock import Clock
from verify.config import Settings
from verify.providers import d7, smsc, zoomconnect
from verify.providers.base import Http, Inbound, Provider, Webhook, WebhookRoute
from verify.providers.d7 import D7Provider
from verify.providers.sandbox import SandboxProvider
from verify.providers.smsc import SmscProvider
from verify.providers.zoomconnect import ZoomConnectProvider
from verify.store import Store


@dataclass(frozen=True)
class Gateways:
    """The SMS failover chain and the call provider, built once per app."""

    sms: list[Provider]
    call: Provider | None

    @property
    def all(self) -> list[Provider]:
        """Every gateway in use, each once."""
        return list({id(p): p for p in [*self.sms, *([self.call] if self.call else [])]}.values())


def build(settings: Settings, store: Store, clock: Clock) -> Gateways:
    """The gateways named by the settings, sharing one HTTP session."""
    http = Http(settings.http_connect_timeout, settings.http_read_timeout)
    made: dict[str, Provider] = {}
    for name in settings.providers:
        if name == "sandbox":
            made[name] = SandboxProvider(store, clock)
        elif name == "smsc" and settings.smsc:
            made[name] = SmscProvider(settings.smsc, http)
        elif name == "zoomconnect" and settings.zoomconnect:
            made[name] = ZoomConnectProvider(settings.zoomconnect, http)
        elif name == "d7" and settings.d7:
            made[name] = D7Provider(settings.d7, http, settings.public_url)
    return Gateways(
        [made[name] for name in settings.sms_providers],
        made[settings.call_provider] if settings.call_provider else None,
    )


@dataclass(frozen=True)
class WebhookGateway:
    """A gateway's callbacks: the URLs it calls under ``/webhooks``, and its module's verify-and-parse step
    (``parse(route name, inbound, path args, its settings, now, max age)``), given its settings when configured."""

    name: str
    routes: tuple[WebhookRoute, ...]
    parse: Callable[[str, Inbound, Mapping[str, str], Any, float, int], Webhook]
    settings: Callable[[Settings], object | None]


WEBHOOK_GATEWAYS = (
    WebhookGateway("smsc", smsc.WEBHOOKS, smsc.parse_webhook, lambda s: s.smsc),
    WebhookGateway("zoomconnect", zoomconnect.WEBHOOKS, zoomconnect.parse_webhook, lambda s: s.zoomconnect),
    WebhookGateway("d7", d7.WEBHOOKS, d7.parse_webhook, lambda s: s.d7),
)
