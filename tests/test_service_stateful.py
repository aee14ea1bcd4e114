"""The service's invariants under any sequence of starts (on one channel or a fallback chain), resends (with or
without a channel switch), cancels, checks, calls, gateway failures, fallback steps and expiry, driven by Hypothesis
against the real Redis:

- a phone has at most one pending verification per channel;
- the sends to a phone stay within its limits (``VERIFY_LIMIT_PHONE``, a sliding-window counter);
- a verification is approved at most once, and a code that approved never works again;
- every approval has exactly one ``verification.approved`` event (customer events are on);
- nothing is sent for a verification once it is approved, and no verification gets more than ``VERIFY_MAX_SENDS``
  sends, fallback steps included.
"""

from __future__ import annotations

import json
from collections import Counter, defaultdict
from dataclasses import replace
from fractions import Fraction

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import Bundle, RuleBasedStateMachine, invariant, multiple, rule, run_state_machine_as_test
from prometheus_client import CollectorRegistry

from tests.conftest import MovableClock, make_settings
from verify.app import build_service
from verify.embedded import EmbeddedRedis
from verify.errors import VerifyError
from verify.metrics import Metrics
from verify.model import Step
from verify.providers.base import CallNumber, CallReceived, Provider, ProviderError, Sent, SmsMessage
from verify.quotas import Quotas
from verify.store import Store

PHONES = ("+79991234567", "+79991234568")
CHAINED = "+79991234569"  # a phone only chains start for, so that their steps meet fewer other verifications
IP = "203.0.113.7"
T0 = 1_800_000_000.0


class Gateway(Provider):
    """Sends SMS and hands out call numbers, logging what went out; fails everything while ``down``."""

    name = "double"

    def __init__(self, clock: MovableClock) -> None:
        self.clock = clock
        self.down = False
        self.sent: list[tuple[str, float, str]] = []  # (phone, when, verification id): SMS, spoken codes, calls
        self.codes: dict[str, str] = {}  # verification id -> its newest code

    def send_sms(self, message: SmsMessage) -> Sent:
        if self.down:
            raise ProviderError(self.name, "down", transient=True)
        self.sent.append((message.to, self.clock(), message.verification_id))
        self.codes[message.verification_id] = message.code
        return Sent(self.name, f"m{len(self.sent)}")

    def start_call(self, phone: str, verification_id: str) -> CallNumber:
        if self.down:
            raise ProviderError(self.name, "down", transient=True)
        self.sent.append((phone, self.clock(), verification_id))
        self.codes.pop(verification_id, None)
        return CallNumber(self.name, "+447700900001", ("+447700900001",))

    def balance(self) -> str:
        return "1"


class Verifications(RuleBasedStateMachine):
    ids = Bundle("ids")
    url = ""  # the test's Redis, set before the run

    def __init__(self) -> None:
        super().__init__()
        url = self.url
        # The phone's limits at their defaults; the breaker out of the way, so a gateway that is back sends at once.
        config = replace(
            make_settings(url),
            breaker_failures=1000,
            limit_ip="100000/hour",
            limit_prefix="100000/hour",
            events_url="http://127.0.0.1:9/hooks",
            events_secrets=("events-secret",),
        )
        self.clock = MovableClock(T0)
        self.store = Store.from_url(url, config.redis_prefix)
        self.store.client.flushall()
        self.gateway = Gateway(self.clock)
        self.service = build_service(
            config, self.store, self.clock, Metrics(CollectorRegistry()), [self.gateway], self.gateway, [self.gateway]
        )
        self.max_sends = config.max_sends
        self.events = self.service.events
        self.limits = Quotas.from_settings(config).phone
        self.approvals: Counter[str] = Counter()
        self.approved_at: dict[str, float] = {}
        self.approved_codes: list[tuple[str, str]] = []

    def teardown(self) -> None:
        self.store.close()

    def _approved(self, vid: str, code: str | None = None) -> None:
        self.approvals[vid] += 1
        self.approved_at.setdefault(vid, self.clock())
        if code is not None:
            self.approved_codes.append((vid, code))

    @rule(target=ids, phone=st.sampled_from(PHONES), channel=st.sampled_from(("sms", "call")))
    def start(self, phone: str, channel: str) -> object:
        try:
            return self.service.start(phone, channel, None, client_ip=IP).verification.id
        except VerifyError:  # limited, in progress, every gateway down
            return multiple()

    @rule(
        target=ids,
        phone=st.sampled_from((*PHONES, CHAINED)),
        chain=st.sampled_from(((("sms", 1), ("voice", 30)), (("voice", 30), ("sms", 1)))),
    )
    def start_chain(self, phone: str, chain: tuple[tuple[str, int], ...]) -> object:
        steps = tuple(Step(channel, wait) for channel, wait in chain)
        try:
            return self.service.start(phone, steps[0].channel, None, client_ip=IP, chain=steps).verification.id
        except VerifyError:
            return multiple()

    @rule(seconds=st.sampled_from((0, 1, 30)))
    def fallback(self, seconds: int) -> None:
        """What the workers' loop does every second, ``seconds`` later: move journaled steps, take the due ones."""
        self.clock.advance(seconds)
        self.events.collect()
        self.service.run_fallback()

    @rule(vid=ids, channel=st.sampled_from((None, "sms", "call", "voice")))
    def resend(self, vid: str, channel: str | None) -> None:
        try:
            self.service.resend(vid, channel, client_ip=IP)
        except VerifyError:
            pass

    @rule(vid=ids)
    def cancel(self, vid: str) -> None:
        try:
            self.service.cancel(vid)
        except VerifyError:
            pass

    @rule(vid=ids, right=st.booleans())
    def check(self, vid: str, right: bool) -> None:
        code = self.gateway.codes.get(vid, "000000")
        if not right:
            code = "000000" if code != "000000" else "111111"
        try:
            if self.service.check(vid, code, client_ip=IP).status == "approved":
                self._approved(vid, code)
        except VerifyError:
            pass

    @rule(phone=st.sampled_from(PHONES))
    def call(self, phone: str) -> None:
        approved = self.service.handle(CallReceived(phone, self.clock()))
        if approved is not None:
            self._approved(approved.id)

    @rule(vid=ids)
    def expire(self, vid: str) -> None:
        """What Redis does when a verification's TTL runs out: the record and its phone index go."""
        record: dict[str, str] = self.store.client.hgetall(self.store.record_key(vid))  # type: ignore[assignment]
        self.store.client.delete(self.store.record_key(vid))
        for channel in ("sms", "call", "voice"):
            index = self.store.index_key(record.get("p", PHONES[0]), channel)
            if self.store.client.get(index) == vid:
                self.store.client.delete(index)

    @rule(seconds=st.sampled_from((1, 29, 30, 200, 600, 3600)))
    def wait(self, seconds: int) -> None:
        self.clock.advance(seconds)

    @rule(down=st.booleans())
    def gateway_state(self, down: bool) -> None:
        self.gateway.down = down

    @rule()
    def reuse_an_approved_code(self) -> None:
        for vid, code in self.approved_codes:
            with pytest.raises(VerifyError):
                self.service.check(vid, code, client_ip=IP)

    @invariant()
    def one_pending_verification_per_phone_and_channel(self) -> None:
        pending: Counter[tuple[str, str]] = Counter()
        for key in self.store.client.scan_iter(match="*:vf:*"):
            if key.endswith(":final"):  # the copy events keep of a verification as it finally was
                continue
            record: dict[str, str] = self.store.client.hgetall(key)  # type: ignore[assignment]
            if record.get("s") == "pending" and int(record.get("n", 0)) > 0:  # FIELDS in verify/store/verifications.py
                pending[(record["p"], record["ch"])] += 1
        assert all(n <= 1 for n in pending.values()), pending

    @invariant()
    def approved_at_most_once(self) -> None:
        assert all(n <= 1 for n in self.approvals.values()), self.approvals

    @invariant()
    def one_event_per_approval(self) -> None:
        self.events.collect()  # what the workers' loop does every second
        _, data = self.store.schedule_keys("events")
        approved: Counter[str] = Counter()
        for raw in self.store.client.hvals(data):
            event = json.loads(raw)["event"]
            if event["type"] == "verification.approved":
                approved[event["data"]["id"]] += 1
        assert approved == +self.approvals, (approved, self.approvals)

    @invariant()
    def sends_stay_within_the_phone_limits(self) -> None:
        """At every send, the sliding-window estimate of the sends before it stays under each window's amount:
        the current fixed window's count plus the previous window's, weighted by how much of it still overlaps."""
        assert self.limits is not None
        by_phone: defaultdict[str, list[float]] = defaultdict(list)
        for phone, when, _ in self.gateway.sent:
            by_phone[phone].append(when)
        for times in by_phone.values():
            for window in self.limits.windows:
                length = window.seconds * 1000
                stamps = [int(t * 1000) for t in times]
                for i, now in enumerate(stamps):
                    index = now // length
                    current = sum(1 for t in stamps[:i] if t // length == index)
                    previous = sum(1 for t in stamps[:i] if t // length == index - 1)
                    weighted = previous * Fraction(length - (now - index * length), length) + current
                    assert weighted + 1 <= window.amount, (window.text, stamps)

    @invariant()
    def nothing_is_sent_after_an_approval_nor_beyond_max_sends(self) -> None:
        sends = Counter(vid for _, _, vid in self.gateway.sent)
        assert all(n <= self.max_sends for n in sends.values()), sends
        late = [(vid, when) for _, when, vid in self.gateway.sent if when > self.approved_at.get(vid, when)]
        assert not late, late


def test_the_invariants_hold_whatever_the_sequence(
    redis_server: EmbeddedRedis, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(Verifications, "url", redis_server.url)
    run_state_machine_as_test(
        Verifications,
        settings=settings(
            max_examples=60,
            stateful_step_count=40,
            deadline=None,
            derandomize=True,
            suppress_health_check=[HealthCheck.too_slow],
        ),
    )
