"""Captcha escalation for starts: when an IP starts too often, always, or for a country under SMS pumping.

``builtin`` draws images with the ``captcha`` package and keeps only an HMAC of each answer in Redis, for 5
minutes and for one use. The HMAC covers the client IP the challenge was given to, so an answer solved from one
address admits no start from another. ``turnstile``, ``hcaptcha`` and ``recaptcha`` check the client's token with
the provider's siteverify endpoint (``secret``, ``response``, ``remoteip``).

The adaptive rule's per-IP start counter is kept with the IP's quota (``verify/quotas.py``), so it is taken in the
same step. The SMS-pumping breaker watches, per country, the share of SMS verifications started in the last hour
that were not approved; past ``VERIFY_PUMPING_THRESHOLD`` (over at least ``VERIFY_PUMPING_MIN_STARTS`` starts) new
SMS starts to that country need a captcha, until the share falls back. Its statistics are per-minute counters
(``lua/pump.lua``) in 8 shards, each start counting in its phone's shard, so that no key is written by every start.
Calls stay open: the person pays.

Everything else here that reads or writes Redis queues its command on the caller's :class:`~verify.store.Batch`,
so the captcha costs no round trip of its own. The pumping verdict is the exception: each worker re-reads a
country's shards at most every :data:`PUMP_REFRESH_MS`, in a round trip of its own, and keeps its last verdict
when they cannot be read. A start thus reads none of them, and a Redis Cluster node that is down fails only the
starts whose own keys live on it.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import logging
import secrets
import weakref
from dataclasses import dataclass
from typing import Any

import requests
from captcha.image import ImageCaptcha

from verify.config import Settings
from verify.errors import StoreUnavailable
from verify.metrics import Metrics
from verify.store import Batch, Op, Store

log = logging.getLogger(__name__)

#: How old a worker's pumping verdict for a country may be (ms, app clock) before it reads the statistics again.
PUMP_REFRESH_MS = 5_000

TTL_S = 300
ALPHABET = "ABCDEFGHJKLMNPQRSTUVWXYZ23456789"  # no 0/O or 1/I look-alikes
LENGTH = 5


@dataclass(frozen=True)
class Answer:
    """What the client sent back: ``id`` + ``answer`` (builtin) or ``token`` (siteverify providers)."""

    id: str = ""
    answer: str = ""
    token: str = ""


class Captcha:
    """Decides when a start needs a captcha, issues challenges and checks answers."""

    def __init__(self, settings: Settings, store: Store, metrics: Metrics) -> None:
        self._settings = settings
        self._store = store
        self._metrics = metrics
        self._key = hmac.new(settings.secret_keys[0].encode(), b"verify.captcha", hashlib.sha256).digest()
        self._session = requests.Session()
        weakref.finalize(self, self._session.close)
        self._pumping: dict[str, tuple[int, bool]] = {}  # country -> (read at, in ms; verdict)

    @property
    def on(self) -> bool:
        """Whether starts may be asked for a captcha at all (``VERIFY_CAPTCHA_MODE`` is not ``off``)."""
        return self._settings.captcha_mode != "off"

    def needed(self, *, busy_ip: bool, pumping: bool) -> bool:
        """Whether a start that would send needs a captcha: always, or (adaptive) from a busy IP or to a country
        under SMS pumping."""
        mode = self._settings.captcha_mode
        return mode == "always" or (mode == "adaptive" and (busy_ip or pumping))

    def lookup(self, batch: Batch, answer: Answer | None) -> Op[str | None] | None:
        """Queue the taking of a builtin answer's stored digest (single use, right or wrong)."""
        if answer is None or not answer.id or self._settings.captcha_provider != "builtin":
            return None
        return batch.captcha_take(answer.id)

    def solved(self, answer: Answer | None, client_ip: str, stored: Op[str | None] | None) -> bool:
        """Whether ``answer`` solves the challenge given to ``client_ip`` (``stored``: what :meth:`lookup` took)."""
        if answer is None:
            return False
        if self._settings.captcha_provider == "builtin":
            digest = stored.value if stored is not None else None
            solved = digest is not None and hmac.compare_digest(digest, self._digest(answer.answer, client_ip))
        else:
            solved = bool(answer.token) and self._siteverify(answer.token, client_ip)
        self._metrics.captcha_answers.labels("solved" if solved else "wrong").inc()
        return solved

    def challenge(self, batch: Batch, client_ip: str) -> dict[str, Any]:
        """A new challenge for ``client_ip`` (its answer is queued on ``batch``): a builtin image, or the name of
        the token provider."""
        provider = self._settings.captcha_provider
        self._metrics.captcha_challenges.labels().inc()
        if provider != "builtin":
            return {"provider": provider}
        challenge_id = secrets.token_hex(12)
        text = "".join(secrets.choice(ALPHABET) for _ in range(LENGTH))
        batch.captcha_put(
            challenge_id, self._digest(text, client_ip), TTL_S * 1000, text if self._settings.sandbox else None
        )
        png = ImageCaptcha(width=160, height=60).generate(text, format="png").getvalue()
        return {"id": challenge_id, "image": "data:image/png;base64," + base64.b64encode(png).decode()}

    def sandbox_answer(self, challenge_id: str) -> str | None:
        """The plain answer of a builtin challenge, kept only in sandbox mode (for tests and demos)."""
        return self._store.run(Batch.captcha_answer, challenge_id) if self._settings.sandbox else None

    def _digest(self, text: str, client_ip: str) -> str:
        message = f"{client_ip}\n{text.strip().lower()}".encode()
        return hmac.new(self._key, message, hashlib.sha256).hexdigest()

    def _siteverify(self, token: str, client_ip: str) -> bool:
        settings = self._settings
        try:
            response = self._session.post(
                settings.captcha_verify_url,
                timeout=(settings.http_connect_timeout, settings.http_read_timeout),
                data={"secret": settings.captcha_secret, "response": token, "remoteip": client_ip},
            )
            return response.status_code == 200 and response.json().get("success") is True
        except (requests.RequestException, ValueError, AttributeError) as err:
            # Fail closed: without the provider's word the start is not let through.
            log.warning("captcha siteverify failed: %s", type(err).__name__)
            return False

    # the SMS-pumping breaker

    def pumping(self, country: str, now_ms: int) -> bool:
        """Whether SMS pumping is suspected in ``country``, as this worker last read it (at most
        :data:`PUMP_REFRESH_MS` ago); logs it once per 5 minutes across workers."""
        read_at, verdict = self._pumping.get(country, (None, False))
        if read_at is not None and now_ms - read_at < PUMP_REFRESH_MS:
            return verdict
        self._pumping[country] = (now_ms, verdict)  # one read at a time: meanwhile the others use the last verdict
        settings = self._settings
        try:
            stats = self._store.run(
                Batch.pump_read, country, now_ms, settings.pumping_threshold, settings.pumping_min_starts
            )
            if stats.warn and self._store.run(Batch.pump_warning, country):
                log.warning(
                    "SMS pumping suspected for %s: %d of %d SMS starts in the last hour are not approved; "
                    "SMS starts there need a captcha",
                    country,
                    stats.started - stats.approved,
                    stats.started,
                )
        except StoreUnavailable as err:
            log.warning(
                "the SMS-pumping statistics of %s could not be read (%s); keeping the last verdict", country, err
            )
            return verdict
        self._pumping[country] = (now_ms, stats.pumping)
        self._metrics.pumping.labels(country).set(1 if stats.pumping else 0)
        return stats.pumping
