"""Failover across gateways, with a circuit breaker per gateway that every worker shares through Redis.

The chain is tried in order (``VERIFY_SMS_PROVIDERS``), skipping gateways whose breaker is open. A number the
gateway refuses stops the chain (400, no failover): another gateway would refuse it too. Any other failure counts
against that gateway's breaker and moves on to the next one. After ``VERIFY_BREAKER_FAILURES`` failures in a row
the breaker opens for ``VERIFY_BREAKER_COOLDOWN`` seconds; then one send is tried again ("half open"), and a success
closes it.

The breakers' state is read by the caller in a round trip it makes anyway (see :meth:`Service._send`), and a
success writes to Redis only when it ends a failure streak: a healthy gateway costs no write.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable, Mapping, Sequence
from typing import TypeVar

from verify.clock import Clock
from verify.config import Settings
from verify.errors import DeliveryFailed, InvalidPhone
from verify.metrics import Metrics
from verify.providers.base import CallNumber, InvalidRecipient, NoMoney, Provider, ProviderError, Sent
from verify.store import Batch, Breaker, Store

log = logging.getLogger(__name__)
DIGITS = re.compile(r"\d{4,}")

T = TypeVar("T", Sent, CallNumber)


class Failover:
    """Delivers through a chain of gateways."""

    def __init__(self, settings: Settings, store: Store, clock: Clock, metrics: Metrics) -> None:
        self._metrics = metrics
        self._threshold = settings.breaker_failures
        self._cooldown_s = settings.breaker_cooldown
        self._store = store
        self._clock = clock

    def run(
        self,
        chain: Sequence[Provider],
        breakers: Mapping[str, Breaker],
        operation: str,
        attempt: Callable[[Provider], T],
    ) -> T:
        """The first gateway's result that is not a failure; :class:`DeliveryFailed` when every one failed or is
        paused, :class:`InvalidPhone` when one refused the number. ``breakers`` is each gateway's state as read
        before the send; ``operation`` names the attempt in the metrics (``send_sms``, ``start_call``)."""
        metrics = self._metrics
        for provider in chain:
            breaker = breakers.get(provider.name, Breaker())
            now_ms = int(self._clock() * 1000)
            if breaker.open_until > now_ms:
                log.info("skipping %s: its circuit breaker is open", provider.name)
                metrics.failovers.labels(provider.name, "breaker_open").inc()
                continue
            started = time.perf_counter()
            try:
                result = attempt(provider)
            except ProviderError as err:
                metrics.provider_latency.labels(provider.name, operation).observe(time.perf_counter() - started)
                metrics.provider_errors.labels(provider.name, operation, err.kind).inc()
                if isinstance(err, InvalidRecipient):
                    self._closed(provider, breaker)
                    raise InvalidPhone(f"the gateway refused the number ({err})") from err
                metrics.failovers.labels(provider.name, "error").inc()
                level = logging.WARNING if err.transient and not isinstance(err, NoMoney) else logging.ERROR
                # A gateway's error text may echo our request: never its digits (the code, the phone).
                log.log(level, "gateway failed: %s", DIGITS.sub("#", str(err)))
                if self._store.run(
                    Batch.breaker_failure, provider.name, now_ms, self._threshold, self._cooldown_s * 1000
                ):
                    log.error("circuit breaker of %s is open for %d s", provider.name, self._cooldown_s)
                continue
            metrics.provider_latency.labels(provider.name, operation).observe(time.perf_counter() - started)
            self._closed(provider, breaker)
            return result
        raise DeliveryFailed("every gateway failed or is paused by its circuit breaker; nothing was sent")

    def _closed(self, provider: Provider, breaker: Breaker) -> None:
        """The gateway answered: end its failure streak, if it had one."""
        if breaker.failures:
            self._store.run(Batch.breaker_reset, provider.name)
