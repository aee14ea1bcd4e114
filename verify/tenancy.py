"""Every tenant's service, and what finds the one a request or a gateway's event is for (``VERIFY_TENANTS_FILE``).

A request names its tenant by its key: an API key's SHA-256 digest or a site key. Each tenant's service has its own
store prefix, so an id, an idempotency key or an event of another tenant is not found at all (the same 404 as an
unknown one) rather than refused. A gateway's event names no tenant: it goes to the one tenant whose verification it
concerns (:meth:`Service.concerns`); an event that two tenants' verifications could claim (a call or a reply from a
phone that both are verifying) approves neither, as within one tenant a call that cannot tell which verification it
was for approves none.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from typing import Any

from verify.model import Verification
from verify.providers.base import Event
from verify.service import Service
from verify.store import Store
from verify.tenants import IMPLICIT, key_digest

log = logging.getLogger(__name__)


class Tenancy:
    """The services by tenant id, the implicit tenant's (:data:`~verify.tenants.IMPLICIT`) first."""

    def __init__(self, services: Mapping[str, Service], api_keys: Mapping[str, str]) -> None:
        self.services = dict(services)
        self.default = self.services[IMPLICIT]
        self._api_keys = dict(api_keys)  # an API key's digest -> its tenant
        self._site_keys = {key: tenant for tenant, svc in self.services.items() for key, _ in svc.settings.site_keys}
        self._origins = frozenset(
            origin for svc in self.services.values() for _, origins in svc.settings.site_keys for origin in origins
        )

    def by_api_key(self, key: str) -> Service | None:
        """The service of the tenant that holds API key ``key``; ``None`` for a key no tenant holds."""
        tenant = self._api_keys.get(key_digest(key))
        return self.services[tenant] if tenant else None

    def by_site_key(self, key: str) -> Service | None:
        """The service of the tenant whose site key ``key`` is; ``None`` for a key no tenant has."""
        tenant = self._site_keys.get(key)
        return self.services[tenant] if tenant else None

    def site_origins(self) -> frozenset[str]:
        """Every origin any tenant's site key may be used from (a CORS preflight names no key)."""
        return self._origins

    def stores(self) -> list[tuple[str, Store, tuple[str, ...]]]:
        """Each tenant's id, store and gateways in use (what ``/metrics`` reads their breakers from)."""
        return [(tenant, svc.store, svc.settings.providers) for tenant, svc in self.services.items()]

    def tenant_of(self, svc: Service) -> str:
        """The id of ``svc``'s tenant."""
        return next(tenant for tenant, own in self.services.items() if own is svc)

    def gateway_settings(self, gateway: str) -> list[tuple[Any, list[Service]]]:
        """The settings of ``gateway`` that the tenants configure, each once, with the services that use them: a
        callback is verified against each (a tenant may have its own hook secret) and applied only among the
        tenants whose settings verified it."""
        groups: list[tuple[Any, list[Service]]] = []
        for svc in self.services.values():
            own = svc.settings.gateway_settings.get(gateway)
            if own is None:
                continue
            group = next((services for settings, services in groups if settings == own), None)
            if group is None:
                groups.append((own, [svc]))
            else:
                group.append(svc)
        return groups

    def handle(self, event: Event, among: Iterable[Service] | None = None) -> Verification | None:
        """Apply a gateway's event in the one tenant (of ``among``, every tenant by default) whose verification it
        concerns. With one tenant, its service decides alone (no extra round trip)."""
        services = list(self.services.values() if among is None else among)
        if len(services) == 1:
            return services[0].handle(event)
        concerned = [svc for svc in services if svc.concerns(event)]
        if len(concerned) > 1:
            log.warning(
                "a gateway's %s concerns verifications of %d tenants (%s): it changes none",
                type(event).__name__,
                len(concerned),
                ", ".join(self.tenant_of(svc) for svc in concerned),
            )
            return None
        return concerned[0].handle(event) if concerned else None
