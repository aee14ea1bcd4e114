"""SMS and call gateways. Each module maps our messages to one gateway's wire format and back."""

from __future__ import annotations

from verify.clock import Clock
from verify.config import Settings
from verify.providers.base import Provider
from verify.providers.sandbox import SandboxProvider
from verify.store import Store


def build(settings: Settings, store: Store, clock: Clock) -> tuple[list[Provider], Provider | None]:
    """The SMS failover chain and the call provider named by the settings."""
    registry: dict[str, Provider] = {"sandbox": SandboxProvider(store, clock)}
    sms = [registry[name] for name in settings.sms_providers]
    call = registry[settings.call_provider] if settings.call_provider else None
    return sms, call
