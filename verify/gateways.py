"""THE list of gateways: one line each. Adding a gateway is its module in ``verify/providers/`` (and its callbacks'
module, ``<name>_webhooks.py``), one line here, and its tests (docs/adding-a-provider.md).

Each gateway's ``<name>.py`` exports its :class:`~verify.providers.base.Gateway` declaration; everything else (the
settings read for it, the names ``VERIFY_SMS_PROVIDERS`` accepts, its webhook routes, its warnings, building it)
walks this list. The order is the order of the settings' messages and of ``verify check-config``.
"""

from __future__ import annotations

from typing import Any

from verify.providers import d7, hook, sandbox, smsc, telegram, zoomconnect
from verify.providers.base import Gateway

__all__ = ["GATEWAYS", "Gateway"]

GATEWAYS: tuple[Gateway[Any], ...] = (
    sandbox.GATEWAY,
    smsc.GATEWAY,
    zoomconnect.GATEWAY,
    d7.GATEWAY,
    telegram.GATEWAY,
    hook.GATEWAY,
)
