"""Fallback chains (issue 20 §3): the same code on the next channel when a send fails or is not approved in time.

The state machine with an injected clock and gateway doubles, over the real Redis (one server and a cluster). The
workers' loop is driven by hand: ``events.collect()`` moves a journaled step to its shard's schedule, and
``run_fallback()`` claims and takes what is due. tests/web/test_fallback.py has the API, the wire emulators and
gunicorn.
"""

from __future__ import annotations

import threading
from dataclasses import replace

import pytest
from prometheus_client import CollectorRegistry

from tests.conftest import PHONE, MovableClock, RoundTrips, single_and_cluster
from tests.test_service import IP, Failing, Recording
from verify.app import StoreOutbox, build_service
from verify.config import Settings
from verify.errors import DeliveryFailed, InvalidRequest, RateLimited
from verify.metrics import Metrics
from verify.model import Step
from verify.providers.base import DeliveryReport, Provider, ProviderError
from verify.providers.sandbox import SandboxProvider
from verify.service import Service, Source
from verify.store import Batch, Client, Store

SMS_VOICE = (Step("sms", 45), Step("voice", 60))


@pytest.fixture(params=["single", "cluster"])
def redis_url(request: pytest.FixtureRequest) -> str:
    return single_and_cluster(request)


class Gateways:
    """A recording double per channel (``sms``, ``voice``, ``telegram``); ``fail`` swaps one for a failing one."""

    def __init__(self) -> None:
        self.sms = Recording.named("smsgw")()
        self.voice = Recording.named("voicegw")()
        self.telegram: Provider = Recording.named("tggw")()

    def codes(self) -> list[tuple[str, str]]:
        """Every message sent, as (channel, code), in the order of the channels."""
        sent = [*self.sms.sent, *self.voice.sent]
        if isinstance(self.telegram, Recording):
            sent += self.telegram.sent
        return [(m.channel, m.code) for m in sent]


def make(settings: Settings, clock: MovableClock, gateways: Gateways) -> Service:
    store = Store.from_url(settings.redis_url, settings.redis_prefix)
    sandbox = SandboxProvider(StoreOutbox(store), clock)
    metrics = Metrics(CollectorRegistry())
    return build_service(
        settings, store, clock, metrics, [gateways.sms], sandbox, [gateways.voice], [gateways.telegram]
    )


@pytest.fixture
def gateways() -> Gateways:
    return Gateways()


@pytest.fixture
def service(settings: Settings, clock: MovableClock, gateways: Gateways) -> Service:
    return make(settings, clock, gateways)


def work(service: Service) -> int:
    """One turn of a worker's loop, as far as fallback goes: move journaled steps, take the due ones."""
    service.events.collect()
    return service.run_fallback()


def steps_taken(service: Service, source: str, target: str, reason: str) -> float:
    value = service.metrics.registry.get_sample_value(
        "verify_fallback_steps_total",
        {"tenant": "default", "from_channel": source, "to_channel": target, "reason": reason},
    )
    return value or 0.0


def test_a_chain_sends_its_first_channel_and_says_what_comes_next(
    service: Service, gateways: Gateways, clock: MovableClock
) -> None:
    started = service.start(PHONE, "sms", None, client_ip=IP, chain=SMS_VOICE)
    v = started.verification
    assert v.channel == "sms" and [m.channel for m in gateways.sms.sent] == ["sms"] and not gateways.voice.sent
    assert v.fallback is not None
    assert v.fallback.steps == SMS_VOICE
    assert [(a.channel, a.provider, a.status) for a in v.fallback.attempts] == [("sms", "smsgw", "sent")]
    assert v.fallback.attempts[0].at == pytest.approx(clock())
    assert v.fallback.next_channel == "voice" and v.fallback.next_at == pytest.approx(clock() + 45)
    assert v.fallback.stopped is None


def test_one_channel_is_today_s_verification(service: Service) -> None:
    """A start without a chain (or with a chain of one step) keeps no chain, and is shown without one."""
    assert service.start(PHONE, "sms", None, client_ip=IP).verification.fallback is None
    assert (
        service.start("+79991234568", "sms", None, client_ip=IP, chain=(Step("sms", 5),)).verification.fallback is None
    )
    assert work(service) == 0


def test_not_approved_within_its_wait_the_same_code_goes_by_voice(
    service: Service, gateways: Gateways, clock: MovableClock
) -> None:
    started = service.start(PHONE, "sms", None, client_ip=IP, chain=SMS_VOICE)
    assert work(service) == 0  # not due: the schedule holds it, nothing is sent
    clock.advance(44)
    assert work(service) == 0 and not gateways.voice.sent
    clock.advance(1)
    assert work(service) == 1
    ((_, sms_code),) = [(m.channel, m.code) for m in gateways.sms.sent]
    (voice,) = gateways.voice.sent
    assert voice.channel == "voice" and voice.code == sms_code and sms_code in voice.text.replace(", ", "")
    v = service.get(started.verification.id)
    assert v.channel == "voice" and v.delivery is not None and v.delivery.provider == "voicegw"
    assert v.fallback is not None and v.fallback.next_at is None and v.fallback.stopped is None
    assert [(a.channel, a.status) for a in v.fallback.attempts] == [("sms", "sent"), ("voice", "sent")]
    assert v.sends_left == service.settings.max_sends - 2
    assert steps_taken(service, "sms", "voice", "wait") == 1
    clock.advance(3600)
    assert work(service) == 0 and len(gateways.voice.sent) == 1  # the chain's last step: nothing more
    assert service.check(started.verification.id, sms_code, client_ip=IP).status == "approved"


def test_an_approval_stops_the_chain(service: Service, gateways: Gateways, clock: MovableClock) -> None:
    started = service.start(PHONE, "sms", None, client_ip=IP, chain=SMS_VOICE)
    service.check(started.verification.id, gateways.sms.sent[0].code, client_ip=IP)
    clock.advance(46)
    work(service)
    assert not gateways.voice.sent
    v = service.get(started.verification.id)
    assert v.status == "approved" and v.fallback is not None and v.fallback.next_at is None


def test_a_cancel_stops_the_chain(service: Service, gateways: Gateways, clock: MovableClock) -> None:
    started = service.start(PHONE, "sms", None, client_ip=IP, chain=SMS_VOICE)
    service.cancel(started.verification.id)
    clock.advance(46)
    work(service)
    assert not gateways.voice.sent


def test_expiry_stops_the_chain(
    service: Service, gateways: Gateways, clock: MovableClock, redis_client: Client
) -> None:
    started = service.start(PHONE, "sms", None, client_ip=IP, chain=SMS_VOICE)
    service.events.collect()
    clock.advance(45)
    redis_client.delete(service.store.record_key(started.verification.id))  # what Redis does at the record's TTL
    assert work(service) == 1
    assert not gateways.voice.sent
    clock.advance(service.settings.send_lease)
    assert work(service) == 0  # and its schedule forgot it


def test_a_gateway_that_refuses_falls_to_the_next_channel_at_once_with_the_same_code(
    settings: Settings, clock: MovableClock, gateways: Gateways
) -> None:
    gateways.telegram = Failing.named("tggw")(ProviderError("tggw", "not sent: PHONE_NUMBER_NOT_FOUND", transient=True))
    service = make(settings, clock, gateways)
    chain = (Step("telegram", 60), Step("sms", 60), Step("voice", 60))
    started = service.start(PHONE, "telegram", None, client_ip=IP, chain=chain)
    v = started.verification
    (sms,) = gateways.sms.sent
    assert v.channel == "sms" and not gateways.voice.sent
    assert v.fallback is not None
    assert [(a.channel, a.provider, a.status) for a in v.fallback.attempts] == [
        ("telegram", "tggw", "failed"),
        ("sms", "smsgw", "sent"),
    ]
    assert v.fallback.next_channel == "voice"
    assert steps_taken(service, "telegram", "sms", "failed") == 1
    clock.advance(60)
    assert work(service) == 1
    (voice,) = gateways.voice.sent
    assert voice.code == sms.code
    assert service.check(v.id, sms.code, client_ip=IP).status == "approved"


def test_a_chain_whose_every_channel_fails_sends_nothing_and_keeps_nothing(
    settings: Settings, clock: MovableClock, gateways: Gateways
) -> None:
    error = ProviderError("x", "down", transient=True)
    gateways.sms, gateways.voice = Failing.named("smsgw")(error), Failing.named("voicegw")(error)  # type: ignore[assignment]
    service = make(settings, clock, gateways)
    with pytest.raises(DeliveryFailed):
        service.start(PHONE, "sms", None, client_ip=IP, chain=SMS_VOICE)
    assert service.store.run(Batch.find, PHONE, "sms") is None
    # The phone's quota was given back each time: the default 3 per 10 minutes still allow three more tries.
    for _ in range(3):
        with pytest.raises(DeliveryFailed):
            service.start(PHONE, "sms", None, client_ip=IP, chain=SMS_VOICE)


def test_a_failed_delivery_report_makes_the_next_step_due_now(
    service: Service, gateways: Gateways, clock: MovableClock
) -> None:
    started = service.start(PHONE, "sms", None, client_ip=IP, chain=SMS_VOICE)
    work(service)
    report = DeliveryReport("smsgw", "m1", "failed", "UNDELIV")
    service.handle(report)
    assert work(service) == 1
    (voice,) = gateways.voice.sent
    assert voice.code == gateways.sms.sent[0].code
    v = service.get(started.verification.id)
    assert v.fallback is not None
    assert [(a.channel, a.status) for a in v.fallback.attempts] == [("sms", "failed"), ("voice", "sent")]
    assert steps_taken(service, "sms", "voice", "failed") == 1
    service.handle(report)  # a repeated report: nothing more
    assert work(service) == 0 and len(gateways.voice.sent) == 1


def test_a_limit_that_refuses_a_step_stops_the_chain_and_says_why(
    settings: Settings, clock: MovableClock, gateways: Gateways
) -> None:
    service = make(replace(settings, limit_ip="1/hour"), clock, gateways)
    started = service.start(PHONE, "sms", None, client_ip=IP, chain=SMS_VOICE)
    clock.advance(45)
    work(service)
    assert not gateways.voice.sent
    v = service.get(started.verification.id)
    assert v.fallback is not None and v.fallback.stopped == "rate_limited:ip" and v.fallback.next_at is None
    assert v.channel == "sms" and v.sends_left == service.settings.max_sends - 1
    clock.advance(3600)
    assert work(service) == 0 and not gateways.voice.sent


def test_a_step_takes_the_quotas_of_a_resend(settings: Settings, clock: MovableClock, gateways: Gateways) -> None:
    """Two sends an hour from the IP: a start and its step use both, and the next start is refused."""
    service = make(replace(settings, limit_ip="2/hour"), clock, gateways)
    service.start(PHONE, "sms", None, client_ip=IP, chain=SMS_VOICE)
    clock.advance(45)
    assert work(service) == 1 and len(gateways.voice.sent) == 1
    with pytest.raises(RateLimited):
        service.start("+79991234568", "sms", None, client_ip=IP)


def test_max_sends_stops_the_chain(settings: Settings, clock: MovableClock, gateways: Gateways) -> None:
    service = make(replace(settings, max_sends=1), clock, gateways)
    started = service.start(PHONE, "sms", None, client_ip=IP, chain=SMS_VOICE)
    clock.advance(45)
    work(service)
    assert not gateways.voice.sent
    v = service.get(started.verification.id)
    assert v.fallback is not None and v.fallback.stopped == "max_sends"


def test_a_client_resend_restarts_the_wait_and_the_steps_carry_its_new_code(
    service: Service, gateways: Gateways, clock: MovableClock
) -> None:
    started = service.start(PHONE, "sms", None, client_ip=IP, chain=SMS_VOICE)
    clock.advance(30)
    service.resend(started.verification.id, None, client_ip=IP)
    _, second = gateways.sms.sent
    clock.advance(15)
    assert work(service) == 0 and not gateways.voice.sent  # due 45 s after the resend, not after the start
    clock.advance(30)
    assert work(service) == 1
    (voice,) = gateways.voice.sent
    assert voice.code == second.code
    v = service.get(started.verification.id)
    assert v.fallback is not None and [a.channel for a in v.fallback.attempts] == ["sms", "sms", "voice"]


def test_a_chain_may_not_name_a_channel_without_a_gateway(settings: Settings, clock: MovableClock) -> None:
    store = Store.from_url(settings.redis_url, settings.redis_prefix)
    sms = Recording.named("smsgw")()
    service = build_service(settings, store, clock, Metrics(CollectorRegistry()), [sms], None, [], [])
    with pytest.raises(InvalidRequest) as raised:
        service.start(PHONE, "sms", None, client_ip=IP, chain=(Step("sms", 5), Step("voice", 5)))
    assert raised.value.field == "channels[1]" and "VERIFY_VOICE_PROVIDERS" in str(raised.value)
    assert not sms.sent and not service.chains_possible


def test_two_workers_take_a_due_step_once(settings: Settings, clock: MovableClock, gateways: Gateways) -> None:
    """Workers racing for the same due steps: each step is sent once (the claim, then the send's reservation)."""
    workers = [make(settings, clock, gateways) for _ in range(4)]
    phones = [f"+7999123456{i}" for i in range(5)]
    for phone in phones:
        workers[0].start(phone, "sms", None, client_ip=f"203.0.113.{phone[-1]}", chain=SMS_VOICE)
    workers[0].events.collect()
    clock.advance(45)
    barrier = threading.Barrier(len(workers))

    def run(worker: Service) -> None:
        barrier.wait()
        worker.run_fallback()

    threads = [threading.Thread(target=run, args=(w,)) for w in workers]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(m.to for m in gateways.voice.sent) == sorted(phones)


def test_a_step_whose_owner_died_is_taken_by_another_worker_once_its_lease_runs_out(
    service: Service, gateways: Gateways, clock: MovableClock
) -> None:
    """The owner claimed the step and reserved its send, then died before the gateway took it (it never commits).
    Within the lease nobody else sends it; after, the next worker does, once."""
    started = service.start(PHONE, "sms", None, client_ip=IP, chain=SMS_VOICE)
    service.events.collect()
    clock.advance(45)
    now, lease = int(clock() * 1000), service.settings.send_lease * 1000
    schedule = f"fallback:{int(started.verification.id[0], 16) % 8}"
    (claimed,) = service.store.run(Batch.claim_due, schedule, now, lease, 10)  # the owner's claim
    begun = service.store.run(
        Batch.begin_send, started.verification.id, now, 0, 5, lease, "dead-owner", service.quotas.phone, "", 0
    )
    assert claimed[0] == f"{started.verification.id}.0" and begun.outcome == "ok"
    clock.advance(service.settings.send_lease - 1)
    assert work(service) == 0 and not gateways.voice.sent
    clock.advance(1)
    assert work(service) == 1
    assert len(gateways.voice.sent) == 1
    clock.advance(service.settings.send_lease)
    assert work(service) == 0 and len(gateways.voice.sent) == 1


def test_a_step_costs_five_round_trips(
    service: Service, gateways: Gateways, clock: MovableClock, redis_url: str, redis_round_trips: RoundTrips
) -> None:
    """Claiming a shard's due steps is one round trip (8 per worker loop, one per shard); a due step is then read,
    reserved, admitted, committed and taken off its schedule: five."""
    if redis_url.startswith("redis+cluster://"):
        pytest.skip("on a cluster a batch is one round trip per node it touches: these pins are for one server")
    service.start(PHONE, "sms", None, client_ip=IP, chain=SMS_VOICE)
    service.events.collect()
    clock.advance(45)
    before = redis_round_trips.sent
    assert service.run_fallback() == 1 and len(gateways.voice.sent) == 1
    assert redis_round_trips.sent - before == 8 + 5


def test_chains_cannot_send_a_phone_more_than_its_limit(
    service: Service, gateways: Gateways, clock: MovableClock
) -> None:
    """A stranger starting chains to someone else's phone, from many addresses, with the shortest waits: every step
    takes the phone's quota (3 sends in 10 minutes by default), so the phone gets no more than without chains."""
    chain = (Step("sms", 1), Step("voice", 1), Step("telegram", 1))
    started = 0
    for n in range(6):
        try:
            service.start(PHONE, "sms", None, client_ip=f"198.51.100.{n}", source=Source(owner="pk_shop"), chain=chain)
            started += 1
        except RateLimited:
            pass
        for _ in range(3):
            clock.advance(1)
            work(service)
    assert started >= 1
    assert len(gateways.codes()) == 3


class Confirming(Recording):
    """A gateway that, like Telegram's, wants to hear of a right code and of a cancel."""

    name = "tggw"

    def __init__(self) -> None:
        super().__init__()
        self.told: list[tuple[str, ...]] = []

    def confirm(self, message_id: str, code: str) -> None:
        self.told.append(("confirm", message_id, code))

    def revoke(self, message_id: str) -> None:
        self.told.append(("revoke", message_id))


@pytest.mark.parametrize("end", ["check", "cancel"])
def test_a_chain_that_left_telegram_still_tells_telegram_of_the_code(
    settings: Settings, clock: MovableClock, gateways: Gateways, end: str
) -> None:
    """The person may read the code in Telegram after the chain moved on to SMS: the right code is confirmed to
    Telegram (its conversion figures), and a cancel revokes its message, as for a verification still on Telegram."""
    telegram = Confirming()
    gateways.telegram = telegram
    service = make(settings, clock, gateways)
    started = service.start(PHONE, "telegram", None, client_ip=IP, chain=(Step("telegram", 30), Step("sms", 30)))
    clock.advance(30)
    assert work(service) == 1
    code = telegram.sent[0].code
    if end == "check":
        assert service.check(started.verification.id, code, client_ip=IP).status == "approved"
    else:
        service.cancel(started.verification.id)
    service._background.shutdown(wait=True)
    assert telegram.told == ([("confirm", "m1", code)] if end == "check" else [("revoke", "m1")])


def lifecycle(service: Service, name: str) -> dict[tuple[str, str], float]:
    """A lifecycle counter's values by (channel, gateway)."""
    return {
        (sample.labels["channel"], sample.labels["provider"]): sample.value
        for metric in service.metrics.registry.collect()
        if metric.name == f"verify_verifications_{name}"
        for sample in metric.samples
        if sample.name.endswith("_total")
    }


def test_a_chain_is_counted_where_it_started(
    service: Service, gateways: Gateways, clock: MovableClock, redis_client: Client
) -> None:
    """Approvals over starts per channel stay a conversion rate: a chain that started by SMS and was approved after
    its voice step counts as an SMS start and an SMS approval; one that expired after its step, as an SMS expiry."""
    approved = service.start(PHONE, "sms", None, client_ip=IP, chain=SMS_VOICE).verification.id
    expiring = service.start("+79991234568", "sms", None, client_ip=IP, chain=SMS_VOICE).verification.id
    clock.advance(45)
    assert work(service) == 2 and len(gateways.voice.sent) == 2
    service.check(approved, gateways.voice.sent[0].code, client_ip=IP)
    assert service.get(approved).channel == "voice"
    assert lifecycle(service, "started") == {("sms", "smsgw"): 2}
    assert lifecycle(service, "approved") == {("sms", "smsgw"): 1}
    service.events.collect()
    redis_client.delete(service.store.record_key(expiring))  # what Redis does at the record's TTL
    clock.advance(service.settings.challenge_ttl)
    assert service.events.expire() == 1
    assert lifecycle(service, "expired") == {("sms", "smsgw"): 1}


def test_a_step_without_a_wait_waits_at_most_the_code_s_life(settings: Settings) -> None:
    assert replace(settings, fallback_after=60, challenge_ttl=30).fallback_wait == 30
    assert replace(settings, fallback_after=60).fallback_wait == 60


def test_a_client_resend_that_a_limit_refuses_leaves_the_chain_be(
    settings: Settings, clock: MovableClock, gateways: Gateways
) -> None:
    service = make(replace(settings, limit_ip="1/hour"), clock, gateways)
    started = service.start(PHONE, "sms", None, client_ip=IP, chain=SMS_VOICE)
    clock.advance(30)
    with pytest.raises(RateLimited):
        service.resend(started.verification.id, None, client_ip=IP)
    v = service.get(started.verification.id)
    assert v.fallback is not None and v.fallback.stopped is None and v.fallback.next_channel == "voice"


def test_a_failed_report_between_a_sweep_s_read_and_its_forget_is_not_lost(
    service: Service, gateways: Gateways, clock: MovableClock
) -> None:
    """A sweep reads the slot's journal (the send's step entry), a failure report then makes the step due now, and
    the sweep forgets what it read: the failure's own entry survives, and the step goes out now, not after the
    wait."""
    vid = service.start(PHONE, "sms", None, client_ip=IP, chain=SMS_VOICE).verification.id
    tag = vid[:4]
    read = service.store.run(Batch.journal, tag)  # a sweep's read...
    assert f"step:{vid}" in read
    service.handle(DeliveryReport("smsgw", "m1", "failed", "UNDELIV"))  # ...a report meanwhile...
    service.store.run(Batch.forget_journal, tag, list(read))  # ...and the sweep forgets what it read
    assert work(service) == 1
    assert [m.code for m in gateways.voice.sent] == [gateways.sms.sent[0].code]
