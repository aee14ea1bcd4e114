"""The verification state machine: start, resend, check, cancel, and gateway events.

Plain arguments in, dataclasses out. The store, the providers and the clock are injected; nothing here imports
Flask. Every transition is one Lua script in the store, and each step of a request is one round trip (a
:class:`~verify.store.Batch`). A send goes:

1. reserve: ``start.lua`` / ``begin_send.lua`` reserve the send and take the phone's quota in one script (a start
   that only returns the pending verification takes nothing and ends here);
2. admit: one batch takes the other quotas (``verify/quotas.py``), reads the captcha answer and the gateways'
   breakers (the pumping verdict is the worker's, re-read every few seconds: ``verify/captcha.py``); a refusal or a
   missing captcha gives back everything taken and rolls back the reservation;
3. deliver: the gateway chain (``verify/failover.py``); a failure gives everything back;
4. commit: ``end_send.lua`` stores the new code, with the message-id index and the statistics in the same batch.

What it answers is plain data, in ``verify/model.py``. This module is longer than the others (about 750 lines) on
purpose: it is the whole state machine, and its transitions share the reservation, admission, rollback and commit
steps above, whose order is what keeps the limits exact and nothing sent or approved twice. Split across modules,
those steps would have to be read side by side anyway.
"""

from __future__ import annotations

import json
import logging
import math
import re
import secrets
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from typing import Any, Literal

from prometheus_client import Counter

from verify.captcha import Answer, Captcha
from verify.clock import Clock, rfc3339
from verify.config import (
    CALL_PROVIDER,
    CODE_CHANNELS,
    NUMBER_TYPES,
    PSD2,
    SMS_PROVIDERS,
    TELEGRAM_TOKEN,
    VOICE_PROVIDERS,
    Settings,
)
from verify.errors import (
    CaptchaRequired,
    DeliveryFailed,
    IdempotencyInProgress,
    IdempotencyMismatch,
    InvalidCode,
    InvalidPhone,
    InvalidRequest,
    MaxAttempts,
    MaxSends,
    NotFound,
    NotPending,
    PhoneNotAllowed,
    RateLimited,
    ResendCooldown,
    StartInProgress,
    StoreUnavailable,
    VerifyError,
    WrongChannel,
)
from verify.events import Events, fallback_schedule
from verify.failover import DIGITS, Failover
from verify.logs import log_info
from verify.metrics import Metrics, Tenanted
from verify.model import (
    API_CALLER,
    Caller,
    Replay,
    Started,
    Step,
    Verification,
    attempts_of,
    chain_text,
    parse_chain,
    view,
)
from verify.phone import country_of, mask, type_of
from verify.providers.base import (
    CallReceived,
    DeliveryReport,
    Event,
    Provider,
    ProviderError,
    SmsMessage,
    SmsReceived,
)
from verify.quotas import Quota, Quotas, Refusal
from verify.sms import (
    TEXT_CHANNELS,
    Payment,
    SmsSize,
    UnfitForAutofill,
    compose,
    kind_of,
    locale_candidates,
    measure,
    render,
)
from verify.store import ID_RE, SHARDS, Batch, Breaker, Health, Op, Outcome, Record, SendCommit, Store, Taken, new_id
from verify.store import Source as Source  # re-exported for the API: who starts a verification
from verify.tokens import Proof, Secrets, new_client_secret

log = logging.getLogger(__name__)

CHANNELS = ("sms", "call", "voice", "telegram")
# The channels whose code a toll-fraud pumper could be paid for: the pumping guard watches them.
PUMPED_CHANNELS = ("sms", "voice")
# How many due fallback steps a worker claims from one shard's schedule at a time.
FALLBACK_BATCH = 20
# How long a request keeps trying to commit a send the gateway took, when Redis fails (see Service._committed).
COMMIT_PATIENCE_S = 6.0
COMMIT_RETRY_S = 0.2
DIGIT_RUN = re.compile(r"\d+")
# A reply may carry the code among other digits; one with more candidates than this is a guess list: ignored.
MAX_REPLY_CODES = 3
API = Source()  # a start through an API key, with no autofill lines
# How far a gateway's signed call time may stray from our clock.
CLOCK_SKEW_S = 60
# How long a gateway's message id still maps to its verification, for late delivery reports.
MESSAGE_MEMORY_S = 2 * 86400


@dataclass(frozen=True)
class _Reservation:
    """A send reserved on ``record`` (``nonce``), with the phone's quota taken at ``at`` (unix ms); ``walk`` is the
    step of its fallback chain it walks the chain from (None: one send on ``channel``)."""

    record: Record
    channel: str
    nonce: str
    at: int
    walk: int | None = None


@dataclass(frozen=True)
class _Admission:
    """What a send queued to be admitted: its quotas taken (at ``at``), whether it may need a captcha (a start),
    the captcha answer it carried, and the gateways' breakers."""

    at: int
    captcha: bool
    takes: list[Op[Taken]]
    answer: Op[str | None] | None
    breakers: dict[str, Op[Breaker]]

    def taken(self) -> list[Quota]:
        """The quotas actually taken (none of them refused)."""
        return [t.value.quota for t in self.takes if t.value.refusal is None]


class Service:
    """Starts, resends, checks and completes verifications."""

    def __init__(
        self,
        settings: Settings,
        store: Store,
        secrets_: Secrets,
        sms_providers: list[Provider],
        call_provider: Provider | None,
        clock: Clock,
        events: Events,
        captcha: Captcha,
        metrics: Metrics,
        chains: dict[str, list[Provider]] | None = None,
        cap: str = "",
    ) -> None:
        self.settings = settings
        self.store = store
        self.secrets = secrets_
        self.sms_providers = sms_providers
        self.call_provider = call_provider
        # The failover chains of the channels besides sms and call: voice, telegram.
        self.chains = chains or {}
        # What a gateway is told after the fact (Telegram's confirm and revoke), off the request path.
        self._background = ThreadPoolExecutor(max_workers=2, thread_name_prefix="verify-gateway")
        self.clock = clock
        self.events = events
        self.captcha = captcha
        self.metrics = metrics
        self.quotas = Quotas.from_settings(settings, cap)  # cap: the deployment's over all tenants (a tenant's)
        self.failover = Failover(settings, store, clock, metrics)
        # Codes are digits, one GSM-7 septet each: a template's size is the same for every code of its length.
        self._templates = settings.templates()
        self._sizes = {
            locale: measure(render(template, "sms", "0" * settings.code_length, settings.brand, settings.minutes))
            for locale, template in self._templates["sms"].items()
        }

    def _now_ms(self) -> int:
        return int(self.clock() * 1000)

    # commands

    def start(
        self,
        phone: str,
        channel: str,
        locale: str | None,
        *,
        client_ip: str,
        captcha: Answer | None = None,
        source: Source = API,
        chain: tuple[Step, ...] = (),
        payment: Payment | None = None,
    ) -> Started:
        """Start verifying ``phone`` (E.164), or (an API key's start) return its pending verification on ``channel``.

        An API key's pending verification gets a new code only once the resend cooldown has passed and sends are
        left; otherwise it is returned as it is, taking no quota and asking no captcha, so a reloaded signup page
        never fails. A site key (``source.owner``) is public: its start proves nothing about who asks, so it always
        makes a verification of its own, taking every quota and the captcha like any new one, and never meets
        another caller's (see lua/start.lua). ``source`` also says what its texts carry for autofill (a text that
        would not autofill is refused before anything is taken, naming ``app_hash``).

        With a fallback ``chain`` of two or more steps (``channel`` is then its first), the same code goes out on
        the next step's channel when a send fails, at once, or when it is not approved within the step's wait, from
        the workers' loop (:meth:`fallback`); each such send takes the quotas a resend would.

        A ``payment`` (PSD2 dynamic linking) is shown in every text and binds the code: a check must name it again.
        Only channels whose text shows it carry one (``sms``, ``voice``); ``VERIFY_PSD2`` requires one.
        """
        if len(chain) > 1:
            channel = chain[0].channel
            for index, step in enumerate(chain):
                if not self._chain(step.channel):
                    self._require_channel(step.channel, f"channels[{index}]")
        else:
            chain = ()
        self._require_channel(channel)
        if payment is None and self.settings.psd2:
            raise InvalidRequest(
                "context", f"every start needs a payment context here ({PSD2}): amount, currency, payee"
            )
        steps = [(f"channels[{i}]", step.channel) for i, step in enumerate(chain)] or [("channel", channel)]
        for field, step_channel in steps:
            self._require_payable(step_channel, payment, field)
        self._require_allowed(phone)
        locale = self.locale(locale, kind_of(channel, payment))
        for _, step_channel in steps:
            if step_channel == "sms":
                code = "0" * self.settings.code_length
                self._compose(locale, "sms", source.app_hash, source.otp_host, code, payment)
        settings = self.settings
        now, nonce, fresh = self._now_ms(), secrets.token_hex(8), new_id(phone)
        client_secret = ""
        if source.owner:
            client_secret, digest = new_client_secret()
            source = replace(source, client_secret_hash=digest)
        # One round trip: the reservation, and everything admitting the send needs. A start that ends up sending
        # nothing gives back what the admission took.
        batch = self.store.batch()
        reserving = batch.start(
            phone,
            country_of(phone),
            channel,
            locale,
            now,
            self.settings.send_lease * 1000,
            settings.resend_cooldown * 1000,
            settings.max_sends,
            nonce,
            self.quotas.phone,
            source,
            self._lifetime_ms(),
            fresh,
            chain_text(chain),
            client_ip,
            payment,
        )
        admission = self._admit(batch, now, client_ip, phone, channel, captcha, start=True)
        try:
            batch.run()
        except StoreUnavailable:
            # Redis may have made the reservation before it failed: a timeout cannot tell. Left alone, it would
            # answer the client's retry with 409 start-in-progress until the send lease ran out. This worker's next
            # round trip undoes it (nothing, if there was none), giving the phone's quota back.
            self.store.defer(
                lambda b: b.unreserve(fresh, phone, channel, nonce, self.quotas.phone, now), until_done=True
            )
            raise
        reserved = reserving.value
        if reserved.outcome in ("limited", "existing", "in_progress"):
            self._give_back(admission.at, admission.taken())
        if reserved.outcome == "limited":
            raise self._limited(reserved.refusal)
        record = _present(reserved)
        if reserved.outcome == "existing":
            return Started(self.view(record), created=False, sent=False)
        if reserved.outcome == "in_progress":
            raise StartInProgress("the first code for this phone is being sent; retry shortly", retry_after=1)
        created = reserved.outcome == "created"
        walk = 0 if created and record.chain else None
        sent = self._send(
            _Reservation(record, channel, nonce, now, walk), admission, client_ip, captcha, created=created
        )
        return Started(sent, created=created, sent=True, client_secret=client_secret)

    def _lifetime_ms(self) -> int:
        """The longest a verification can stay pending: each send restarts its challenge TTL."""
        return self.settings.max_sends * self.settings.challenge_ttl * 1000 + self.settings.send_lease * 1000

    def resend(
        self, verification_id: str, channel: str | None, *, client_ip: str, caller: Caller = API_CALLER
    ) -> Verification:
        """Send a new code (or hand out a new number), optionally switching channel. A site key (``caller``)
        reaches only the verifications it started, with their client secret."""
        self._reach(verification_id, caller)
        if channel:
            self._require_channel(channel)
        settings = self.settings
        now, nonce = self._now_ms(), secrets.token_hex(8)
        begun = self.store.run(
            Batch.begin_send,
            verification_id,
            now,
            settings.resend_cooldown * 1000,
            settings.max_sends,
            self.settings.send_lease * 1000,
            nonce,
            self.quotas.phone,
            caller.proof,
        )
        if begun.outcome == "limited":
            raise self._limited(begun.refusal)
        record = _present(begun)
        if begun.outcome != "ok":
            self._refuse_send(begun.outcome, record)
        channel = channel or record.channel
        batch = self.store.batch()  # the phone was not known before: admitting the send is a round trip of its own
        admission = self._admit(batch, now, client_ip, record.phone, channel, None, start=False)
        batch.run()
        return self._send(_Reservation(record, channel, nonce, now), admission, client_ip, None, created=False)

    def check(
        self,
        verification_id: str,
        code: str,
        *,
        client_ip: str,
        caller: Caller = API_CALLER,
        payment: Payment | None = None,
    ) -> Verification:
        """Check a code. Exactly one correct check approves; wrong ones count against the attempts.

        Every check takes the client IP's ``VERIFY_LIMIT_CHECK_IP`` quota first (never given back: a check is work
        done whatever its outcome): on one server inside the judging script, in one round trip (complete.lua's gate);
        on a cluster, whose IP quota and record live in different slots, in a round trip of its own before. A phone
        whose wrong codes used up ``VERIFY_LIMIT_PHONE_FAILURES`` gets no check at all until the window moves on,
        the right code included. A site key (``caller``) reaches only the
        verifications it started, with their client secret. A payment's code is right only with the same ``payment``
        its start named: another amount, currency or payee is a wrong code, and costs an attempt.
        """
        self._reach(verification_id, caller)
        gate = Quota(self.quotas.check_ip, client_ip) if self.quotas.check_ip else None
        if gate is not None and self.store.cluster:  # its key is in another slot: a round trip of its own, first
            taken = self.store.run(Batch.take, gate, self._now_ms())
            if taken.refusal:
                raise self._limited(taken.refusal)
            gate = None
        outcome = self._complete(verification_id, "code", [code], caller.proof, gate, payment)
        if outcome.outcome in ("locked", "limited"):
            raise self._limited(outcome.refusal)
        record = _present(outcome)
        if outcome.outcome == "approved":
            self._tell_gateway(record, "confirm", code)
            return self._approved(record)
        view = self.view(record)
        if outcome.outcome == "wrong":
            if record.status == "max_attempts_reached":
                raise MaxAttempts("that was the last attempt; start a new verification", attempts_left=0)
            raise InvalidCode("the code is wrong", attempts_left=view.attempts_left)
        if outcome.outcome == "max_attempts":
            raise MaxAttempts("no attempts left; start a new verification", attempts_left=0)
        if outcome.outcome == "wrong_channel":
            raise WrongChannel("a call verification is confirmed by the call, not by a code")
        raise NotPending(f"the verification is {record.status}", verification_status=record.status)

    def cancel(self, verification_id: str) -> Verification:
        """Cancel a verification that is not approved (an API key's request: any verification)."""
        self._reach(verification_id, API_CALLER)
        outcome = self.store.run(Batch.cancel, verification_id, self.events.grace_ms)
        record = _present(outcome)
        if outcome.outcome == "not_pending":
            raise NotPending(f"the verification is {record.status}", verification_status=record.status)
        self._count(self.metrics.canceled, record)
        self._tell_gateway(record, "revoke")
        return self.view(record)

    def _tell_gateway(self, record: Record, what: Literal["confirm", "revoke"], *args: str) -> None:
        """Tell the gateways that sent ``record``'s code (its last send's, and a fallback chain's earlier ones), off the
        request path, that it was entered right (``confirm``, with the code: Telegram counts conversions by it) or
        that it is void (``revoke``). Only a gateway that implements it is called; a failure is logged and counted,
        and changes nothing here."""
        sends = {(record.channel, record.provider, record.message_id)}
        # A fallback chain's earlier sends, which the person may have read the code in (Telegram's, above all).
        sends |= {(str(a[0]), str(a[1]), str(a[4])) for a in attempts_of(record) if len(a) > 4 and a[2] != "failed"}
        for channel, name, message_id in sorted(sends):
            provider = next((p for p in self._chain(channel) if p.name == name), None)
            if provider is None or not message_id or getattr(type(provider), what) is getattr(Provider, what):
                continue
            self._background.submit(self._told, provider, what, record.id, message_id, *args)

    def _told(self, provider: Provider, what: str, verification_id: str, message_id: str, *args: str) -> None:
        started = time.perf_counter()
        try:
            getattr(provider, what)(message_id, *args)
        except ProviderError as err:
            self.metrics.provider_errors.labels(provider.name, what, err.kind).inc()
            log.warning("%s of verification %s failed: %s", what, verification_id, DIGITS.sub("#", str(err)))
        except Exception:
            self.metrics.provider_errors.labels(provider.name, what, "exception").inc()
            log.exception("%s of verification %s failed", what, verification_id)
        finally:
            self.metrics.provider_latency.labels(provider.name, what).observe(time.perf_counter() - started)

    def handle(self, event: Event) -> Verification | None:
        """Apply a gateway event. Idempotent: a repeated event finds nothing left to change.

        Returns the verification the event changed (approved it, or moved its delivery status), else ``None``.
        """
        if isinstance(event, DeliveryReport):
            return self._delivery_report(event)
        if isinstance(event, CallReceived):
            record = self._called_for(event.phone)
            if record is None:
                return None
            # SMSC signs the call time but no nonce: a captured callback replayed later carries an old time.
            started = record.created_at / 1000
            if not started - CLOCK_SKEW_S <= event.received_at <= self.clock() + CLOCK_SKEW_S:
                log.warning(
                    "call callback for verification %s is signed at %s, outside its lifetime: ignored",
                    record.id,
                    rfc3339(event.received_at),
                )
                return None
            return self._approve(record, "call", [])
        runs = self._reply_codes(event)
        record = self._replied_to(event) if runs else None
        if record is None or record.status != "pending" or record.phone != event.phone or record.owner:
            return None
        return self._approve(record, "sms_reply", runs)

    def concerns(self, event: Event) -> bool:
        """Whether ``event`` would change one of this service's verifications (a tenant's), found as :meth:`handle`
        finds it, without changing anything: which tenant a gateway's event is for (``verify/tenancy.py``)."""
        if isinstance(event, DeliveryReport):
            verification_id = self._reported(event)
            return verification_id is not None and self.store.run(Batch.get, verification_id) is not None
        if isinstance(event, CallReceived):
            return self._called_for(event.phone) is not None
        record = self._replied_to(event) if self._reply_codes(event) else None
        return record is not None and record.status == "pending" and record.phone == event.phone and not record.owner

    def _reply_codes(self, event: SmsReceived) -> list[str]:
        """The candidate codes of an inbound SMS: its runs of as many digits as a code has (none past
        :data:`MAX_REPLY_CODES`, logged)."""
        runs = [r for r in DIGIT_RUN.findall(event.text) if len(r) == self.settings.code_length]
        if len(runs) > MAX_REPLY_CODES:
            log.warning("an SMS reply carries %d candidate codes (at most %d): ignored", len(runs), MAX_REPLY_CODES)
            return []
        return runs

    def _called_for(self, phone: str) -> Record | None:
        """The pending call verification that a call from ``phone`` confirms, if it can tell which.

        A gateway reports that the phone called one of our numbers, not which verification it called for. An API
        key's pending one is taken first: only that API key can read it, so it is no prize to a stranger. Else a
        site key's one is taken only when it is the one call verification the phone has in Redis: were there
        another, pending or recently over, the caller may have dialled for that one, and a verification that a
        stranger started with the public site key must never be approved by a call meant for another (see the
        README's site-key threat model). Such a call approves nothing and is logged."""
        since = self._now_ms() - self._lifetime_ms()
        api, site = self.store.run(Batch.phone_verifications, phone, "call", since)
        if api is not None and api.channel == "call" and api.status == "pending" and not api.owner:
            return api
        calls = [r for r in site if r.channel == "call"]
        if api is not None and api.channel == "call" and not api.owner:
            calls.append(api)
        pending = [r for r in calls if r.status == "pending"]
        if len(calls) == 1 and pending:
            return pending[0]
        if pending:
            log.warning(
                "a call from %s cannot say which of %d call verifications it confirms: none approved",
                mask(phone),
                len(calls),
            )
        return None

    def _replied_to(self, event: SmsReceived) -> Record | None:
        """The verification an inbound SMS answers: named by the gateway if it can, else the phone's pending one
        (an API key's: a site key's verification is confirmed on its page, never by a reply, since a person may
        answer a text they never asked for, which a stranger's start sent them)."""
        if event.verification_id and ID_RE.fullmatch(event.verification_id):
            return self.store.run(Batch.get, event.verification_id)
        if event.reply_to and event.provider:
            verification_id = self.store.run(
                Batch.message_verification, event.provider, event.reply_to, MESSAGE_MEMORY_S * 1000, self._now_ms()
            )
            if verification_id:
                return self.store.run(Batch.get, verification_id)
        return self.store.run(Batch.find, event.phone, "sms")

    def _complete(
        self,
        verification_id: str,
        via: str,
        codes: list[str],
        caller: str = "",
        gate: Quota | None = None,
        payment: Payment | None = None,
    ) -> Outcome[Any]:
        """Run complete.lua, taking ``gate`` first (one server), with the codes bound to ``payment``; an approval
        journals its event in the same script (events on)."""
        batch = self.store.batch()
        with self.events.hinted(batch, verification_id):
            completing = batch.complete(
                verification_id,
                via,
                self.settings.max_attempts,
                self._now_ms(),
                self.settings.challenge_ttl * 1000,
                self.quotas.phone_failures,
                self.secrets.code_candidates(verification_id, codes, payment),
                self.events.new_id(),
                self.events.grace_ms,
                caller,
                len(codes),
                gate,
            )
        batch.run()
        return completing.value

    def _approve(self, record: Record, via: str, codes: list[str]) -> Verification | None:
        # A reply answers the text it got, which showed the payment it approves.
        outcome = self._complete(record.id, via, codes, payment=record.payment)
        if outcome.outcome != "approved" or outcome.record is None:
            return None
        return self._approved(outcome.record)

    def _approved(self, record: Record) -> Verification:
        """The pumping guard counts an approval (deferred: a statistic). Its customer event was journaled by the
        approving script itself."""
        log_info(log, "verification %s approved by %s", record.id, record.completed_via)
        self._count(self.metrics.approved, record)
        if self.captcha.on and record.channel in PUMPED_CHANNELS:
            country, now = record.country or country_of(record.phone), self._now_ms()
            self.store.defer(lambda batch: batch.pump_count(country, record.id, "approved", now))
        return self.view(record)

    def _reported(self, event: DeliveryReport) -> str | None:
        """The id of the verification a delivery report is about: named by the gateway, else found by its message."""
        if ID_RE.fullmatch(event.verification_id):
            return event.verification_id
        found = self.store.run(
            Batch.message_verification, event.provider, event.message_id, MESSAGE_MEMORY_S * 1000, self._now_ms()
        )
        return found or None

    def _delivery_report(self, event: DeliveryReport) -> Verification | None:
        verification_id = self._reported(event)
        if not verification_id:
            return None
        batch = self.store.batch()
        with self.events.hinted(batch, verification_id):
            setting = batch.set_delivery(
                verification_id,
                event.provider,
                event.message_id,
                event.status,
                event.raw_status,
                self.events.new_id(),
                self.events.grace_ms,
                self._now_ms(),
            )
        batch.run()
        outcome = setting.value
        if outcome.outcome not in ("updated", "read") or outcome.record is None:
            return None
        if outcome.outcome == "updated" and event.status != "sent":  # the message's first final report: once
            if event.cost:
                self.metrics.gateway_cost.labels(event.provider).inc(event.cost)
            if event.refunded:
                self.metrics.gateway_refunds.labels(event.provider).inc()
        if event.status == "failed":  # its customer event was journaled by set_delivery.lua
            self._count(self.metrics.failed, outcome.record)
            log.warning(
                "verification %s: %s reports delivery failed (%s)", verification_id, event.provider, event.raw_status
            )
        return self.view(outcome.record)

    # queries

    def get(self, verification_id: str, caller: Caller = API_CALLER) -> Verification:
        """The verification with this id; :class:`NotFound` if unknown or expired, or (for a site key,
        ``caller``) started by someone else or asked for without its client secret."""
        self._reach(verification_id, caller)
        record = self._get(verification_id)
        if not caller.owns(record):
            raise NotFound("no such verification, or it has expired")
        return self.view(record)

    def _reach(self, verification_id: str, caller: Caller) -> None:
        """:class:`NotFound`, the same as for an unknown id, unless ``verification_id`` is well formed (before it
        reaches Redis: ``<id>:final`` would name another key) and, for a site key, comes with a client secret
        (whether it is the one its start handed out, and the site key the one that started it, is the script's or
        :meth:`get`'s check: :attr:`Caller.proof`, :meth:`Caller.owns`)."""
        if not ID_RE.fullmatch(verification_id) or (caller.site_key and not caller.client_secret):
            raise NotFound("no such verification, or it has expired")

    def verify_token(self, token: str) -> Proof:
        """Check a proof token."""
        return self.secrets.verify(token)

    def outbox(self, phone: str) -> list[dict[str, str]]:
        """Sandbox messages to ``phone``, newest first."""
        return self.store.run(Batch.outbox, phone)

    def ready(self) -> Health:
        """Whether the store answers and, behind Sentinel, whether a replica confirms writes (see ``Store.health``)."""
        return self.store.health()

    # webhook nonces

    def claim_nonce(self, provider: str, nonce: str) -> bool:
        """True the first time a gateway's webhook nonce is seen; kept twice the accepted webhook age."""
        return self.store.run(Batch.claim_nonce, provider, nonce, 2 * self.settings.webhook_max_age * 1000)

    def release_nonce(self, provider: str, nonce: str) -> None:
        """Forget a nonce whose callback failed to apply, so the gateway's retry goes through."""
        self.store.run(Batch.release_nonce, provider, nonce)

    # idempotency

    def claim_idempotency(self, key: str, fingerprint: str) -> Replay | None:
        """Claim ``key`` for this request, or return the response to replay.

        The same key with another request body is refused, and so is a key whose first request is still
        running.
        """
        try:
            stored = self.store.run(
                Batch.claim_idempotency, key, {"fingerprint": fingerprint}, self.settings.send_lease * 1000
            )
        except StoreUnavailable:  # the claim may have been stored: undo it, or the retry waits for its lease
            self.store.defer(lambda batch: batch.release_idempotency(key), until_done=True)
            raise
        if stored is None:
            return None
        if stored.get("fingerprint") != fingerprint:
            raise IdempotencyMismatch("this Idempotency-Key was used with a different request")
        if "status" not in stored:
            raise IdempotencyInProgress("the first request with this Idempotency-Key is still running", retry_after=1)
        body = stored["body"]
        if "client_secret" in body:
            body = {**body, "client_secret": self.secrets.unseal(body["client_secret"], key)}
            if body["client_secret"] is None:  # sealed under a key retired since: the replay cannot carry it
                del body["client_secret"]
        return Replay(int(stored["status"]), body)

    def finish_idempotency(self, key: str, fingerprint: str, status: int, body: dict[str, Any]) -> None:
        """Keep the response of a successful request for replay; a client secret in it only sealed
        (:meth:`Secrets.seal`, under ``key``, which Redis keeps hashed)."""
        if "client_secret" in body:
            body = {**body, "client_secret": self.secrets.seal(body["client_secret"], key)}
        self.store.run(
            Batch.finish_idempotency,
            key,
            {"fingerprint": fingerprint, "status": status, "body": body},
            self.settings.idempotency_ttl * 1000,
        )

    def release_idempotency(self, key: str) -> None:
        """Forget the claim of a failed request, so that retrying it runs it again. When Redis is what failed, the
        worker's next round trip forgets it, so that the client's retry is not held off for the claim's lease."""
        try:
            self.store.run(Batch.release_idempotency, key)
        except StoreUnavailable:
            self.store.defer(lambda batch: batch.release_idempotency(key), until_done=True)

    # internals

    def _get(self, verification_id: str) -> Record:
        record = self.store.run(Batch.get, verification_id)
        if record is None:
            raise NotFound("no such verification, or it has expired")
        return record

    def _challenge_allowed(self, reserved: _Reservation, admission: _Admission, client_ip: str) -> None:
        """Take the client IP's ``captcha_challenges`` quota before a challenge is drawn; when it is used up, give
        back what the send took and refuse (a round trip of its own, on this path only)."""
        if self.quotas.captcha_challenges is None:
            return
        quota = Quota(self.quotas.captcha_challenges, client_ip)
        taken = self.store.run(Batch.take, quota, self._now_ms())
        if taken.refusal:
            self._abandon(reserved, admission.taken())
            raise self._limited(taken.refusal)

    def _require_allowed(self, phone: str) -> None:
        """SMS-pumping guard: only allowed countries, and no number types that toll fraud abuses."""
        allowed = self.settings.allowed_countries
        if allowed and country_of(phone) not in allowed:
            raise PhoneNotAllowed("numbers of this country are not accepted")
        number_type = type_of(phone)
        if any(number_type == NUMBER_TYPES[name] for name in self.settings.denied_number_types):
            raise PhoneNotAllowed("numbers of this type (premium rate, shared cost, VoIP...) are not accepted")

    def _require_channel(self, channel: str, field: str = "channel") -> None:
        if not self._chain(channel):
            setting = {"call": CALL_PROVIDER, "voice": VOICE_PROVIDERS, "telegram": TELEGRAM_TOKEN}.get(channel)
            raise InvalidRequest(field, f"the {channel} channel is not configured ({setting or SMS_PROVIDERS})")

    def _chain(self, channel: str) -> list[Provider]:
        if channel == "call":
            return [self.call_provider] if self.call_provider else []
        return self.sms_providers if channel == "sms" else self.chains.get(channel, [])

    def locale(self, tag: str | None, kind: str) -> str:
        """The locale a verification's texts of ``kind`` (a channel, or ``<channel>-payment``) are written in, for the
        client's BCP 47 ``tag``: the tag itself, else its language (``pt-BR`` -> ``pt``), else
        ``VERIFY_DEFAULT_LOCALE``."""
        templates = self._texts(kind)
        return next((loc for loc in locale_candidates(tag or "") if loc in templates), self.settings.default_locale)

    def _texts(self, kind: str) -> dict[str, str]:
        """The templates of ``kind`` (a channel, or ``<channel>-payment``) by locale; a Telegram message is written by
        Telegram, and the SMS's text is what the sandbox shows for it."""
        return self._templates.get(kind, self._templates["sms"])

    def _require_payable(self, channel: str, payment: Payment | None, field: str) -> None:
        """A payment's code goes only where its text shows what it approves: by SMS or spoken."""
        if payment is not None and channel not in TEXT_CHANNELS:
            raise InvalidRequest(
                field, f"a payment's code must come with its amount and payee: sms or voice, not {channel}"
            )

    def _admit(
        self, batch: Batch, at: int, client_ip: str, phone: str, channel: str, answer: Answer | None, *, start: bool
    ) -> _Admission:
        """Queue on ``batch`` what admitting a send needs: its quotas taken at ``at``, the captcha answer (a start
        only), and the breakers of the gateways it would use."""
        country = country_of(phone)
        captcha = self.captcha.on and start
        quotas = self.quotas.for_send(client_ip, phone, country, start=start, channel=channel)
        return _Admission(
            at,
            captcha,
            [batch.take(quota, at) for quota in quotas],
            self.captcha.lookup(batch, answer) if captcha else None,
            {provider.name: batch.breaker(provider.name) for provider in self._chain(channel)},
        )

    def _send(
        self, reserved: _Reservation, admission: _Admission, client_ip: str, answer: Answer | None, *, created: bool
    ) -> Verification:
        """Admit, deliver and commit a reserved send; everything taken is given back if nothing is sent."""
        record, channel = reserved.record, reserved.channel
        taken = [op.value for op in admission.takes]
        refused = next((t.refusal for t in taken if t.refusal), None)
        if refused:
            # A fallback step that a limit refuses stops its chain; a client's own resend refused leaves it be.
            stopping = _stop(record, f"rate_limited:{refused.limit.name}") if reserved.walk else ()
            self._abandon(reserved, admission.taken(), chained=stopping)
            raise self._limited(refused)
        if admission.captcha:
            pumping = channel in PUMPED_CHANNELS and self.captcha.pumping(country_of(record.phone), admission.at)
            if self.captcha.needed(busy_ip=any(t.over for t in taken), pumping=pumping) and not self.captcha.solved(
                answer, client_ip, admission.answer
            ):
                self._challenge_allowed(reserved, admission, client_ip)
                challenge = self._abandon(reserved, admission.taken(), captcha_for=client_ip)
                detail = (
                    "the captcha answer was wrong or expired; solve this new one"
                    if answer is not None
                    else "solve the captcha and repeat the start with its answer"
                )
                raise CaptchaRequired(detail, captcha=challenge)
        code = self._code_for(reserved)
        if reserved.walk is not None:
            commit = self._walk(reserved, admission, code)
        else:
            try:
                commit = self._deliver(record, channel, admission.breakers, code)
            except BaseException:
                self._abandon(reserved, admission.taken())
                raise
            if record.chain:  # a client's resend of a chained verification: its steps carry this code from now on
                commit = self._chained(record, commit, record.step, attempts_of(record), code)

        now, settings = self._now_ms(), self.settings

        def committing() -> tuple[Batch, Op[Outcome[Any]]]:
            batch = self.store.batch()
            with self.events.hinted(batch, record.id):
                ended_op = batch.end_send(
                    record,
                    reserved.nonce,
                    now,
                    settings.challenge_ttl * 1000,
                    self.quotas.phone,
                    reserved.at,
                    commit,
                    self.events.grace_ms,
                )
            if commit.message_id:
                # Spare: the SMS is out, so a cluster node down under the index must not lose the code with it (a
                # delivery report for that message is then ignored; a reply still finds it by its phone).
                batch.spare(
                    batch.remember_message(commit.provider, commit.message_id, record.id, MESSAGE_MEMORY_S * 1000, now)
                )
            if created and channel in PUMPED_CHANNELS and self.captcha.on:
                batch.pump_count(country_of(record.phone), record.id, "started", now)
            return batch, ended_op

        ended = self._committed(committing)
        if ended.record is None:
            raise DeliveryFailed("the gateway answered after the verification had lapsed; start again")
        log_info(log, "verification %s sent via %s to %s", record.id, commit.provider, mask(record.phone))
        if created:
            self._count(self.metrics.started, ended.record)
        if commit.sms_parts:
            self.metrics.sms_messages.labels(commit.provider, commit.sms_encoding).inc()
            self.metrics.sms_parts.labels(commit.provider, commit.sms_encoding).inc(commit.sms_parts)
        return self.view(ended.record)  # end_send.lua journaled its expiry watch (events on)

    def _code_for(self, reserved: _Reservation) -> str:
        """The code a send carries: a fallback step's is the one its chain's sends carry (sealed on the record), unless
        the key that sealed it was retired since (then, as for any other send, a new one)."""
        record = reserved.record
        if reserved.walk and record.sealed_code:
            code = self.secrets.unseal_code(record.id, record.sealed_code)
            if code is not None and len(code) == self.settings.code_length and code.isdigit():
                return code
        return f"{secrets.randbelow(10**self.settings.code_length):0{self.settings.code_length}d}"

    def _walk(self, reserved: _Reservation, admission: _Admission, code: str) -> SendCommit:
        """Send ``code`` on the fallback chain's step ``reserved.walk``, and while a step's gateways all fail, on the
        next one at once: each step gives back what the last took and takes a resend's quotas for its own channel,
        with the start's client address. A limit that refuses, or the last step failing, stops the chain (the
        record says why) and rolls the send back, like any send that sends nothing."""
        record = reserved.record
        steps, index, tried = parse_chain(record.chain), reserved.walk or 0, attempts_of(record)
        taken, taken_at, breakers = admission.taken(), admission.at, admission.breakers
        stopped = ""
        try:
            while True:
                channel = steps[index].channel
                try:
                    commit = self._deliver(record, channel, breakers, code)
                except InvalidPhone:
                    stopped = "invalid_phone"
                    raise
                except DeliveryFailed:
                    tried.append([channel, ",".join(p.name for p in self._chain(channel)), "failed", self._now_ms()])
                    if index + 1 == len(steps):
                        stopped = "undeliverable"
                        raise
                    index += 1
                    self._fell_back(record, channel, steps[index].channel, "failed")
                    batch = self.store.batch()
                    for quota in taken:
                        batch.give(quota, taken_at)
                    taken_at = self._now_ms()
                    ip = record.client_ip
                    following = self._admit(batch, taken_at, ip, record.phone, steps[index].channel, None, start=False)
                    batch.run()
                    taken, breakers = following.taken(), following.breakers
                    refused = next((op.value.refusal for op in following.takes if op.value.refusal), None)
                    if refused:
                        stopped = f"rate_limited:{refused.limit.name}"
                        raise self._limited(refused) from None
                    continue
                return self._chained(record, commit, index, tried, code)
        except BaseException:
            self._abandon(reserved, taken, chained=_stop(record, stopped, tried) if stopped else ())
            raise

    def _chained(self, record: Record, commit: SendCommit, index: int, tried: list[list[Any]], code: str) -> SendCommit:
        """``commit`` of a chained verification's send on step ``index``: with its attempt added, the step's wait
        before the next one (if any) and the code sealed for it."""
        steps, now = parse_chain(record.chain), self._now_ms()
        tried = [*tried, [commit.channel, commit.provider, "sent", now, commit.message_id]]
        due = now + steps[index].wait * 1000 if index + 1 < len(steps) else 0
        return replace(
            commit,
            chained=(
                ("fi", str(index)),
                ("fd", str(due) if due else ""),
                ("fa", json.dumps(tried, separators=(",", ":"))),
                ("k", self.secrets.seal_code(record.id, code)),
                ("fs", ""),
            ),
        )

    def _fell_back(self, record: Record, from_channel: str, to_channel: str, reason: str) -> None:
        self.metrics.fallback_steps.labels(from_channel, to_channel, reason).inc()
        log.info("verification %s falls back from %s to %s (%s)", record.id, from_channel, to_channel, reason)

    # fallback chains

    @property
    def chains_possible(self) -> bool:
        """Whether a start may name a fallback chain: two channels that carry a code have gateways here."""
        return sum(1 for channel in CODE_CHANNELS if self._chain(channel)) > 1

    def fallback(self, member: str) -> int:
        """Take the fallback step ``<id>.<step>`` (the step after ``<step>``) of a verification, if it is due: send
        its code on the next channel, as :meth:`_walk` says. Returns when to look at it again (unix ms), or 0 when
        it needs nothing more: the step was taken (the next one, if any, is journaled by its send), another worker
        took it, or the verification is over (approved, canceled, expired) or its chain stopped.

        One owner per step: the send's reservation (``begin_send.lua``, which takes the step only while the record
        is still on it and it is due) keeps every other worker out until it is committed, or until its lease runs
        out, when the owner died: then the next worker to claim it sends it."""
        verification_id, _, step_text = member.partition(".")
        if not ID_RE.fullmatch(verification_id) or not step_text.isdigit():
            return 0
        record, now = self.store.run(Batch.get, verification_id), self._now_ms()
        if record is None or record.status != "pending" or not record.next_at or record.step != int(step_text):
            return 0
        steps = parse_chain(record.chain)
        if record.step + 1 >= len(steps):
            return 0
        if record.next_at > now:
            return record.next_at
        settings, nonce, following = self.settings, secrets.token_hex(8), steps[record.step + 1].channel
        begun = self.store.run(
            Batch.begin_send,
            verification_id,
            now,
            0,
            settings.max_sends,
            settings.send_lease * 1000,
            nonce,
            self.quotas.phone,
            "",
            record.step,
        )
        if begun.outcome == "in_flight":  # a client's resend is being sent: look again once it is done
            return now + 1000
        if begun.outcome == "limited":
            self._limited(begun.refusal)  # counted; the script stopped the chain
        if begun.outcome != "ok" or begun.record is None:
            return 0
        record = begun.record
        reason = "failed" if record.delivery_status == "failed" else "wait"
        self._fell_back(record, steps[record.step].channel, following, reason)
        batch = self.store.batch()
        admission = self._admit(batch, now, record.client_ip, record.phone, following, None, start=False)
        batch.run()
        reserved = _Reservation(record, following, nonce, now, record.step + 1)
        self._send(reserved, admission, record.client_ip, None, created=False)
        return 0

    def run_fallback(self, stop: threading.Event | None = None) -> int:
        """Claim the due fallback steps of every shard, a batch at a time, and take them (:meth:`fallback`);
        returns how many were looked at. Each claim is leased for a send's lease: a worker that dies holding one
        lets it go to the next. Once ``stop`` is set it stops between two steps (their claims lapse)."""
        seen, lease = 0, self.settings.send_lease * 1000
        for shard in range(SHARDS):
            name = fallback_schedule(shard)
            for member, _ in self.store.run(Batch.claim_due, name, self._now_ms(), lease, FALLBACK_BATCH):
                if stop is not None and stop.is_set():
                    return seen
                seen += 1
                try:
                    again = self.fallback(member)
                except StoreUnavailable:
                    raise
                except VerifyError as err:  # refused or undeliverable: the chain stopped, and its record says why
                    log.info("fallback step %s: %s", member, err)
                    again = 0
                except Exception:
                    log.exception("fallback step %s failed; it is tried again in a minute", member)
                    again = self._now_ms() + 60_000
                batch = self.store.batch()
                if again:
                    batch.schedule(name, member, again, "1")
                else:
                    batch.unschedule(name, member)
                batch.run()
        return seen

    def _committed(self, committing: Callable[[], tuple[Batch, Op[Outcome[Any]]]]) -> Outcome[Any]:
        """Run the batch that commits a send the gateway took. The message is out, so a commit that Redis failed
        (or whose answer was lost) is tried again for :data:`COMMIT_PATIENCE_S`, past the store's fail-fast pause:
        otherwise the code sent would never work, and the client's retry would meet the send's reservation (409)
        and then send a second code. end_send.lua is repeatable: a commit that had landed answers ``stale`` with
        the committed record."""
        deadline = time.monotonic() + COMMIT_PATIENCE_S
        while True:
            batch, ending = committing()
            try:
                batch.run()
                return ending.value
            except StoreUnavailable:
                pause = max(COMMIT_RETRY_S, self.store.down_until - time.monotonic())
                if time.monotonic() + pause > deadline:
                    raise
                log.warning("committing a send failed (Redis); trying again in %.1f s", pause)
                time.sleep(pause)

    def _abandon(
        self,
        reserved: _Reservation,
        taken: list[Quota],
        *,
        captcha_for: str | None = None,
        chained: tuple[tuple[str, str], ...] = (),
    ) -> dict[str, Any] | None:
        """Roll back a reserved send that sends nothing, giving back every quota it took, in one round trip; with
        ``captcha_for``, a new captcha challenge for that client goes in the same round trip. ``chained``: what a
        fallback chain keeps of it (its attempts, why the chain stopped)."""
        batch = self.store.batch()
        batch.end_send(
            reserved.record,
            reserved.nonce,
            self._now_ms(),
            self.settings.challenge_ttl * 1000,
            self.quotas.phone,
            reserved.at,
            None,
            chained=chained,
        )
        for quota in taken:
            batch.give(quota, reserved.at)
        challenge = self.captcha.challenge(batch, captcha_for) if captcha_for is not None else None
        batch.run()
        return challenge

    def _give_back(self, taken_at: int, taken: list[Quota]) -> None:
        """Give back quotas taken for a send that was never reserved."""
        batch = self.store.batch()
        for quota in taken:
            batch.give(quota, taken_at)
        batch.run()

    def _limited(self, refusal: Refusal | None) -> RateLimited:
        """The refusal of a limit, counted."""
        assert refusal is not None  # noqa: S101 - a "limited" outcome names its limit
        self.metrics.rate_limited.labels(refusal.limit.name).inc()
        return RateLimited(refusal.limit.name, refusal.window.text, refusal.retry_after)

    def _count(self, counter: Tenanted[Counter], record: Record) -> None:
        """Count ``record`` on one of the lifecycle counters (started, approved, ...), under the channel and gateway
        it started on (:meth:`Record.entry`)."""
        country, (channel, provider) = record.country or country_of(record.phone), record.entry()
        counter.labels(channel, provider or "none", country).inc()

    def _refuse_send(self, outcome: str, record: Record) -> None:
        if outcome == "max_sends":
            raise MaxSends(f"all {self.settings.max_sends} sends are used; start a new verification")
        if outcome in ("cooldown", "in_flight"):
            wait = self.view(record).resend_after - self.clock()
            raise ResendCooldown("wait before sending another code", retry_after=max(1, math.ceil(wait)))
        raise NotPending(f"the verification is {record.status}", verification_status=record.status)

    def _deliver(self, record: Record, channel: str, breakers: dict[str, Op[Breaker]], code: str) -> SendCommit:
        """Send ``code`` (a call: hand out a number) on ``channel``, through its gateways in failover order."""
        chain, states = self._chain(channel), {name: op.value for name, op in breakers.items()}
        if channel == "call":
            call = self.failover.run(chain, states, "start_call", lambda p: p.start_call(record.phone, record.id))
            return SendCommit("call", "", call.provider, call.message_id, call.number, call.numbers)
        payment = record.payment
        self._require_payable(channel, payment, "channel")  # a resend may name another channel
        # A resend may switch channel: the locale the verification was started in, as this channel has it.
        locale = self.locale(record.locale, kind_of(channel, payment))
        text, size = self._compose(locale, channel, record.app_hash, record.otp_host, code, payment)
        message = SmsMessage(record.phone, text, code, record.id, channel, self.settings.challenge_ttl, locale)
        sent = self.failover.run(chain, states, f"send_{channel}", lambda p: p.send_sms(message))
        sms = channel == "sms"
        return SendCommit(
            channel,
            self.secrets.code_hash(record.id, code, payment),
            sent.provider,
            sent.message_id,
            sms_encoding=size.encoding if sms else "",
            sms_parts=size.parts if sms else 0,
        )

    def _compose(
        self, locale: str, channel: str, app_hash: str, otp_host: str, code: str, payment: Payment | None = None
    ) -> tuple[str, SmsSize]:
        """The text carrying ``code`` on ``channel`` (``sms`` or ``voice``; for a ``payment``, its templates) and its
        size: the locale's template, then for an SMS the autofill lines (``verify/sms.py``); :class:`InvalidRequest`
        naming ``app_hash`` for a text a phone would not autofill."""
        settings = self.settings
        template = self._texts(kind_of(channel, payment))[locale]
        text = render(template, channel, code, settings.brand, settings.minutes, payment)
        if channel != "sms":
            return text, measure(text)
        if not (app_hash or otp_host):  # measured once: codes are digits, one GSM-7 septet each
            return text, measure(text) if payment else self._sizes[locale]
        try:
            text = compose(text, code, origin_host=otp_host or None, app_hash=app_hash or None)
        except UnfitForAutofill as err:
            raise InvalidRequest("app_hash", str(err)) from None
        return text, measure(text)

    def view(self, record: Record) -> Verification:
        """The client's view of a stored record; approved ones carry their proof token."""
        return view(record, self.settings, self.secrets)


def _stop(record: Record, why: str, tried: list[list[Any]] | None = None) -> tuple[tuple[str, str], ...]:
    """What a chained verification keeps when its chain stops early (``why``): no next step, and its attempts."""
    if not record.chain:
        return ()
    fields = (("fs", why), ("fd", ""))
    return (*fields, ("fa", json.dumps(tried, separators=(",", ":")))) if tried is not None else fields


def _present(outcome: Outcome[Any]) -> Record:
    if outcome.record is None:
        raise NotFound("no such verification, or it has expired")
    return outcome.record
