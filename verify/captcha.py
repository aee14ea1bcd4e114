"""Captcha escalation for starts: when an IP starts too often, always, or for a country under SMS pumping.

``builtin`` draws images with the ``captcha`` package and keeps only an HMAC of each answer in Redis, for 5
minutes and for one use. ``turnstile``, ``hcaptcha`` and ``recaptcha`` check the client's token with the
provider's siteverify endpoint (``secret``, ``response``, ``remoteip``).

The SMS-pumping breaker watches, per country, the share of SMS verifications started in the last hour that
were not approved; past ``VERIFY_PUMPING_THRESHOLD`` (over at least ``VERIFY_PUMPING_MIN_STARTS`` starts) new
SMS starts to that country need a captcha, until the share falls back. Calls stay open: the person pays.
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
from limits import RateLimitItemPerHour
from limits.strategies import RateLimiter

from verify.config import Settings
from verify.errors import CaptchaRequired
from verify.phone import country_of
from verify.store import Store

log = logging.getLogger(__name__)

TTL_S = 300
ALPHABET = "ABCDEFGHJKLMNPQRSTUVWXYZ23456789"  # no 0/O or 1/I look-alikes
LENGTH = 5
# A window counter read through limits: a "limit" no one reaches, so hit() only counts and stats read the count.
COUNTER = RateLimitItemPerHour(10**9)


@dataclass(frozen=True)
class Answer:
    """What the client sent back: ``id`` + ``answer`` (builtin) or ``token`` (siteverify providers)."""

    id: str = ""
    answer: str = ""
    token: str = ""


class Captcha:
    """Decides when a start needs a captcha, issues challenges and checks answers."""

    def __init__(self, settings: Settings, store: Store, limiter: RateLimiter) -> None:
        self._settings = settings
        self._store = store
        self._limiter = limiter
        self._key = hmac.new(settings.secret_keys[0].encode(), b"verify.captcha", hashlib.sha256).digest()
        self._session = requests.Session()
        weakref.finalize(self, self._session.close)
        self._ip_starts = RateLimitItemPerHour(settings.captcha_after)

    def gate(self, client_ip: str, phone: str, channel: str, answer: Answer | None) -> None:
        """Let the start through, or raise :class:`CaptchaRequired` with a fresh challenge."""
        mode = self._settings.captcha_mode
        if mode == "off":
            return
        # Every start counts for the adaptive rule, so a client that solves captchas keeps being asked.
        busy_ip = not self._limiter.hit(self._ip_starts, "captcha_ip", client_ip)
        pumping = channel == "sms" and self.pumping(country_of(phone))
        if mode == "adaptive" and not busy_ip and not pumping:
            return
        if answer is not None and self._solved(answer, client_ip):
            return
        detail = ("the captcha answer was wrong or expired; solve this new one" if answer is not None
                  else "solve the captcha and repeat the start with its answer")
        raise CaptchaRequired(detail, captcha=self.challenge())

    def challenge(self) -> dict[str, Any]:
        """A new challenge for the client: a builtin image, or the name of the token provider."""
        provider = self._settings.captcha_provider
        if provider != "builtin":
            return {"provider": provider}
        challenge_id = secrets.token_hex(12)
        text = "".join(secrets.choice(ALPHABET) for _ in range(LENGTH))
        self._store.captcha_put(challenge_id, self._digest(text), TTL_S * 1000,
                                text if self._settings.sandbox else None)
        png = ImageCaptcha(width=160, height=60).generate(text, format="png").getvalue()
        return {"id": challenge_id, "image": "data:image/png;base64," + base64.b64encode(png).decode()}

    def sandbox_answer(self, challenge_id: str) -> str | None:
        """The plain answer of a builtin challenge, kept only in sandbox mode (for tests and demos)."""
        return self._store.captcha_answer(challenge_id) if self._settings.sandbox else None

    def _digest(self, text: str) -> str:
        return hmac.new(self._key, text.strip().lower().encode(), hashlib.sha256).hexdigest()

    def _solved(self, answer: Answer, client_ip: str) -> bool:
        if self._settings.captcha_provider == "builtin":
            stored = self._store.captcha_take(answer.id) if answer.id else None  # single use, right or wrong
            return stored is not None and hmac.compare_digest(stored, self._digest(answer.answer))
        return bool(answer.token) and self._siteverify(answer.token, client_ip)

    def _siteverify(self, token: str, client_ip: str) -> bool:
        settings = self._settings
        try:
            response = self._session.post(settings.captcha_verify_url, timeout=(settings.http_connect_timeout,
                                                                                 settings.http_read_timeout),
                                          data={"secret": settings.captcha_secret, "response": token,
                                                "remoteip": client_ip})
            return response.status_code == 200 and response.json().get("success") is True
        except (requests.RequestException, ValueError, AttributeError) as err:
            # Fail closed: without the provider's word the start is not let through.
            log.warning("captcha siteverify failed: %s", type(err).__name__)
            return False

    # the SMS-pumping breaker

    def count_start(self, phone: str) -> None:
        """An SMS verification was started for ``phone``."""
        self._limiter.hit(COUNTER, "pump_starts", country_of(phone))

    def count_approval(self, phone: str) -> None:
        """An SMS verification of ``phone`` was approved."""
        self._limiter.hit(COUNTER, "pump_approved", country_of(phone))

    def pumping(self, country: str) -> bool:
        """Whether the country's share of unapproved SMS starts in the last hour passes the threshold."""
        starts = COUNTER.amount - self._limiter.get_window_stats(COUNTER, "pump_starts", country).remaining
        if starts < self._settings.pumping_min_starts:
            return False
        approved = COUNTER.amount - self._limiter.get_window_stats(COUNTER, "pump_approved", country).remaining
        share = max(0, starts - approved) / starts
        if share <= self._settings.pumping_threshold:
            return False
        if self._store.claim_nonce("pumping-warning", country, 300_000):  # at most one warning per 5 minutes
            log.warning("SMS pumping suspected for %s: %d of %d SMS starts in the last hour are not approved; "
                        "SMS starts there need a captcha", country, starts - approved, starts)
        return True
