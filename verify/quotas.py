"""Abuse limits as data: which quotas a request takes, in what amounts. No Flask, no Redis.

Where each limit lives, and why:

- ``phone`` (codes sent to one phone, start or resend, both channels) is taken inside the script that reserves
  the send (``lua/start.lua``, ``lua/begin_send.lua``): its key shares the phone's hash tag, so taking it and
  reserving the send are one atomic step next to the verification it guards, and a failed send gives it back in
  ``lua/end_send.lua``.
- ``phone_failures`` (wrong codes for one phone) is tested and counted inside ``lua/complete.lua``, in the same
  step that judges the code: of any number of concurrent wrong codes, exactly the limit's amount are judged.
- ``ip`` (start and resend from one client IP, one budget), ``prefix``, ``country`` and ``global`` each live in
  their own key (their own Redis Cluster slot) and are taken by ``lua/take.lua``, all in one pipeline once the
  send is reserved. A request refused by any of them, or that ends up sending nothing (a captcha still needed, a
  gateway failure), gives back what it took (``lua/give.lua``). The adaptive captcha's per-IP start counter is a
  field of the ``ip`` key, counted in the same script, so the two can never disagree.
- ``captcha_challenges`` (builtin captcha images made for one client IP) is taken by ``lua/take.lua`` only when
  a start needs a captcha, before the image is drawn: a 428 costs a few times a plain refusal (an image, and its
  answer kept five minutes), so a client that only collects challenges is refused (429) without either.
- ``voice_phone`` and ``voice_ip`` (spoken codes to one phone, from one client IP) are taken by a voice send on top
  of every limit above, by ``lua/take.lua`` with the others: a call costs more than an SMS and rings a phone, so they
  may be tighter. A voice send counts towards ``phone`` and ``ip`` as well, like any send.
- ``check_ip`` is taken by ``lua/take.lua`` too, before the code is judged, and never given back: a check is
  work done whatever its outcome.
- With a tenants file, ``phone``, ``phone_failures`` and ``voice_phone`` protect the phone's owner, so their counts
  are the deployment's, shared by every tenant (each tenant's amounts judge the shared count); ``ip``, ``prefix``,
  ``country``, ``global`` and ``check_ip`` are each tenant's own, and ``deployment`` (``VERIFY_LIMIT_GLOBAL``) caps
  all tenants together, taken with the others by ``lua/take.lua`` (``verify/store/keys.py``, ``SHARED_LIMITS``).

One mechanism serves every limit, with the app's clock (tests move time rather than sleep) and one renderer for its
429; docs/performance.md says why not flask-limiter.

Every quota is a sliding-window counter (the count in the current fixed window plus the previous window's count
weighted by how much of it still overlaps): two numbers per window, whatever the limit's size. Starts that only
return the pending verification take nothing.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from limits import parse_many

from verify.config import Settings

LimitName = Literal[
    "ip",
    "check_ip",
    "phone",
    "prefix",
    "country",
    "global",
    "phone_failures",
    "captcha_ip",
    "captcha_challenges",
    "voice_phone",
    "voice_ip",
    "deployment",
]
CAPTCHA_WINDOW_S = 3600


@dataclass(frozen=True)
class Window:
    """One part of a limit: ``amount`` per ``seconds``, e.g. 3 per 600 (``text`` is how the setting wrote it)."""

    amount: int
    seconds: int
    text: str

    @property
    def field(self) -> str:
        """Its field in the quota's Redis hash: one per window length."""
        return str(self.seconds)


@dataclass(frozen=True)
class Limit:
    """A named limit and its windows; a request must fit in all of them."""

    name: LimitName
    windows: tuple[Window, ...]

    def window(self, field: str) -> Window:
        """The window stored in ``field``."""
        return next(w for w in self.windows if w.field == field)


@dataclass(frozen=True)
class Quota:
    """What one request takes from one key: ``limit`` for ``identity``; ``counter`` is counted alongside but
    never refuses (the adaptive captcha's per-IP starts)."""

    limit: Limit
    identity: str
    counter: Limit | None = None


@dataclass(frozen=True)
class Refusal:
    """A limit said no: which one, which of its windows, and in how many seconds a retry can pass."""

    limit: Limit
    window: Window
    retry_after: int


def parse(name: LimitName, value: str) -> Limit | None:
    """``"3/10 minutes;10/day"`` as a :class:`Limit`; ``""`` (switched off) gives ``None``."""
    if not value:
        return None
    parts = [p.strip() for p in value.split(";") if p.strip()]
    windows = tuple(
        Window(item.amount, item.get_expiry(), text) for item, text in zip(parse_many(value), parts, strict=True)
    )
    return Limit(name, windows)


def prefix_of(phone: str) -> str:
    """The number range a phone belongs to: its E.164 form without the last 4 digits."""
    return phone[:-4]


@dataclass(frozen=True)
class Quotas:
    """Every limit of the settings, parsed once."""

    ip: Limit | None
    phone: Limit | None
    prefix: Limit | None
    country: Limit | None
    global_: Limit | None
    check_ip: Limit | None
    phone_failures: Limit | None
    captcha_ip: Limit | None
    captcha_challenges: Limit | None
    voice_phone: Limit | None = None
    voice_ip: Limit | None = None
    # With a tenants file: the deployment's cap over every tenant (VERIFY_LIMIT_GLOBAL), on top of a tenant's own.
    deployment: Limit | None = None

    @classmethod
    def from_settings(cls, settings: Settings, cap: str = "") -> Quotas:
        """The limits ``settings`` configure (``VERIFY_LIMIT_*``, ``VERIFY_CAPTCHA_AFTER``); ``cap``: the
        deployment's over all tenants (a tenant's ``global`` is its own)."""
        adaptive = settings.captcha_mode == "adaptive"
        return cls(
            ip=parse("ip", settings.limit_ip),
            phone=parse("phone", settings.limit_phone),
            prefix=parse("prefix", settings.limit_prefix),
            country=parse("country", settings.limit_country),
            global_=parse("global", settings.limit_global),
            check_ip=parse("check_ip", settings.limit_check_ip),
            phone_failures=parse("phone_failures", settings.limit_phone_failures),
            captcha_challenges=parse("captcha_challenges", settings.limit_captcha_challenges),
            voice_phone=parse("voice_phone", settings.limit_voice_phone),
            voice_ip=parse("voice_ip", settings.limit_voice_ip),
            deployment=parse("deployment", cap),
            captcha_ip=Limit(
                "captcha_ip", (Window(settings.captcha_after, CAPTCHA_WINDOW_S, f"{settings.captcha_after}/hour"),)
            )
            if adaptive
            else None,
        )

    def for_send(self, client_ip: str, phone: str, country: str, *, start: bool, channel: str = "sms") -> list[Quota]:
        """The quotas a send on ``channel`` takes besides ``phone`` (taken with the reservation), one per key.

        A start also counts towards the adaptive captcha's per-IP counter, kept with the IP's quota; a voice send
        also takes the voice limits.
        """
        counter = self.captcha_ip if start else None
        ip = self.ip or (Limit("ip", ()) if counter else None)
        taken = [Quota(ip, client_ip, counter)] if ip else []
        taken += [
            Quota(limit, identity)
            for limit, identity in (
                (self.prefix, prefix_of(phone)),
                (self.country, country),
                (self.global_, "all"),
                (self.deployment, "all"),
            )
            if limit
        ]
        if channel == "voice":
            voice = ((self.voice_phone, phone), (self.voice_ip, client_ip))
            taken += [Quota(limit, identity) for limit, identity in voice if limit]
        return taken
