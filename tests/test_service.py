"""The state machine with an injected clock and gateway doubles, over the real Redis."""

from __future__ import annotations

import ast
import time
from dataclasses import replace
from pathlib import Path
from typing import Self, cast

import pytest
from prometheus_client import CollectorRegistry

from tests.conftest import PHONE, MovableClock, single_and_cluster
from verify.app import StoreOutbox, build_service
from verify.config import Settings
from verify.errors import (
    DeliveryFailed,
    InvalidCode,
    InvalidPhone,
    MaxAttempts,
    MaxSends,
    NotFound,
    NotPending,
    ResendCooldown,
    StartInProgress,
    WrongChannel,
)
from verify.metrics import Metrics
from verify.providers.base import (
    CallReceived,
    InvalidRecipient,
    Provider,
    ProviderError,
    Sent,
    SmsMessage,
    SmsReceived,
)
from verify.providers.sandbox import SandboxProvider
from verify.service import MAX_REPLY_CODES, Service, Source
from verify.store import Batch, Store

IP = "203.0.113.7"


@pytest.fixture(params=["single", "cluster"])
def redis_url(request: pytest.FixtureRequest) -> str:
    """This suite runs on a single Redis and on a 3-node cluster."""
    return single_and_cluster(request)


class Named(Provider):
    """A gateway double; ``Cls.named("x")`` gives a subclass whose provider name (breaker key) is ``x``."""

    name = "double"

    @classmethod
    def named(cls, name: str) -> type[Self]:
        return cast("type[Self]", type(name, (cls,), {"name": name}))


class Recording(Named):
    """Accepts every SMS and remembers it."""

    name = "recording"

    def __init__(self) -> None:
        self.sent: list[SmsMessage] = []

    def send_sms(self, message: SmsMessage) -> Sent:
        self.sent.append(message)
        return Sent(self.name, f"m{len(self.sent)}")

    def balance(self) -> str:
        return "1"


class Failing(Named):
    """Refuses every SMS with ``error``."""

    name = "failing"

    def __init__(self, error: ProviderError) -> None:
        self.error = error
        self.calls = 0

    def send_sms(self, message: SmsMessage) -> Sent:
        self.calls += 1
        raise self.error

    def balance(self) -> str:
        raise self.error


def make_service(settings: Settings, clock: MovableClock, *sms: Provider) -> Service:
    store = Store.from_url(settings.redis_url, settings.redis_prefix)
    sandbox = SandboxProvider(StoreOutbox(store), clock)
    return build_service(settings, store, clock, Metrics(CollectorRegistry()), list(sms) or [sandbox], sandbox)


@pytest.fixture
def gateway() -> Recording:
    return Recording()


@pytest.fixture
def service(settings: Settings, clock: MovableClock, gateway: Recording) -> Service:
    return make_service(settings, clock, gateway)


def test_start_sends_a_code_of_the_configured_length(settings: Settings, clock: MovableClock) -> None:
    gateway = Recording()
    service = make_service(replace(settings, code_length=8), clock, gateway)
    started = service.start(PHONE, "sms", None, client_ip=IP)
    assert started.created and started.verification.status == "pending"
    (message,) = gateway.sent
    assert message.to == PHONE and len(message.code) == 8 and message.code.isdigit()
    assert message.text == f"{message.code} is your Verify code. It expires in 15 min."
    assert started.verification.expires_at == pytest.approx(clock() + 900)
    assert started.verification.resend_after == pytest.approx(clock() + 30)


def test_russian_locale_uses_the_russian_template(service: Service, gateway: Recording) -> None:
    service.start(PHONE, "sms", "ru", client_ip=IP)
    assert gateway.sent[0].text == f"{gateway.sent[0].code} — ваш код Verify. Действует 15 мин."


def test_a_second_start_inside_the_cooldown_sends_nothing(
    service: Service, gateway: Recording, clock: MovableClock
) -> None:
    first = service.start(PHONE, "sms", None, client_ip=IP)
    clock.advance(29)
    again = service.start(PHONE, "sms", None, client_ip=IP)
    assert not again.created and again.verification.id == first.verification.id
    assert len(gateway.sent) == 1 and again.verification.sends_left == 4


def test_a_second_start_after_the_cooldown_sends_a_new_code_that_replaces_the_old(
    service: Service, gateway: Recording, clock: MovableClock
) -> None:
    first = service.start(PHONE, "sms", None, client_ip=IP)
    clock.advance(30)
    again = service.start(PHONE, "sms", None, client_ip=IP)
    assert again.verification.id == first.verification.id and len(gateway.sent) == 2
    assert again.verification.sends_left == 3
    old, new = gateway.sent[0].code, gateway.sent[1].code
    if old != new:
        with pytest.raises(InvalidCode):
            service.check(first.verification.id, old, client_ip=IP)
    assert service.check(first.verification.id, new, client_ip=IP).status == "approved"


def test_starts_after_the_last_send_return_the_verification_without_failing(
    settings: Settings, clock: MovableClock
) -> None:
    gateway = Recording()
    service = make_service(replace(settings, max_sends=2), clock, gateway)
    vid = service.start(PHONE, "sms", None, client_ip=IP).verification.id
    clock.advance(30)
    service.start(PHONE, "sms", None, client_ip=IP)
    clock.advance(30)
    again = service.start(PHONE, "sms", None, client_ip=IP)
    assert again.verification.id == vid and again.verification.sends_left == 0 and len(gateway.sent) == 2
    with pytest.raises(MaxSends):
        service.resend(vid, None, client_ip=IP)


def test_a_start_while_the_first_send_is_in_flight_asks_to_retry(service: Service, clock: MovableClock) -> None:
    # Another worker has opened the verification and is still waiting for its gateway.
    opened = service.store.run(Batch.start, PHONE, "RU", "sms", "", int(clock() * 1000), 120_000, 30_000, 5, "n", None)
    assert opened.outcome == "created"
    with pytest.raises(StartInProgress) as caught:
        service.start(PHONE, "sms", None, client_ip=IP)
    assert caught.value.retry_after == 1


def test_resend_respects_the_cooldown(service: Service, clock: MovableClock) -> None:
    vid = service.start(PHONE, "sms", None, client_ip=IP).verification.id
    clock.advance(10.2)
    with pytest.raises(ResendCooldown) as caught:
        service.resend(vid, None, client_ip=IP)
    assert caught.value.retry_after == 20
    clock.advance(20)
    assert service.resend(vid, None, client_ip=IP).sends_left == 3


def test_resend_can_switch_to_a_call(service: Service, clock: MovableClock) -> None:
    vid = service.start(PHONE, "sms", None, client_ip=IP).verification.id
    clock.advance(30)
    switched = service.resend(vid, "call", client_ip=IP)
    assert switched.channel == "call" and switched.call is not None
    assert switched.call.number == "+447700900001"
    assert service.handle(CallReceived(PHONE, clock())) is not None
    assert service.get(vid).completed_via == "call"


def test_wrong_codes_then_max_attempts(service: Service, gateway: Recording) -> None:
    vid = service.start(PHONE, "sms", None, client_ip=IP).verification.id
    wrong = "000000" if gateway.sent[0].code != "000000" else "111111"
    for left in (4, 3, 2, 1):
        with pytest.raises(InvalidCode) as caught:
            service.check(vid, wrong, client_ip=IP)
        assert caught.value.attempts_left == left
    with pytest.raises(MaxAttempts):
        service.check(vid, wrong, client_ip=IP)
    assert service.get(vid).status == "max_attempts_reached"
    with pytest.raises(MaxAttempts):
        service.check(vid, gateway.sent[0].code, client_ip=IP)


def test_a_new_start_after_max_attempts_is_a_new_verification(service: Service, gateway: Recording) -> None:
    vid = service.start(PHONE, "sms", None, client_ip=IP).verification.id
    for _ in range(5):
        with pytest.raises((InvalidCode, MaxAttempts)):
            service.check(vid, "0" * 5, client_ip=IP)
    fresh = service.start(PHONE, "sms", None, client_ip=IP)
    assert fresh.created and fresh.verification.id != vid


def test_a_code_works_once_and_yields_a_token(service: Service, gateway: Recording) -> None:
    vid = service.start(PHONE, "sms", None, client_ip=IP).verification.id
    approved = service.check(vid, gateway.sent[0].code, client_ip=IP)
    assert approved.status == "approved" and approved.completed_via == "code" and approved.token
    proof = service.verify_token(approved.token)
    assert (proof.verification_id, proof.phone, proof.channel, proof.completed_via) == (vid, PHONE, "sms", "code")
    with pytest.raises(NotPending):
        service.check(vid, gateway.sent[0].code, client_ip=IP)
    assert service.get(vid).token == approved.token


def test_a_call_verification_has_no_code(service: Service) -> None:
    vid = service.start(PHONE, "call", None, client_ip=IP).verification.id
    with pytest.raises(WrongChannel):
        service.check(vid, "123456", client_ip=IP)


def test_cancel(service: Service, gateway: Recording) -> None:
    vid = service.start(PHONE, "sms", None, client_ip=IP).verification.id
    assert service.cancel(vid).status == "canceled"
    with pytest.raises(NotPending):
        service.check(vid, gateway.sent[0].code, client_ip=IP)
    with pytest.raises(NotFound):
        service.cancel("ffff" + "0" * 24)


def test_every_gateway_failing_leaves_no_verification(settings: Settings, clock: MovableClock) -> None:
    down = Failing.named("down")(ProviderError("down", "timeout", transient=True))
    also_down = Failing.named("also")(ProviderError("also", "5xx", transient=True))
    service = make_service(settings, clock, down, also_down)
    with pytest.raises(DeliveryFailed):
        service.start(PHONE, "sms", None, client_ip=IP)
    assert (down.calls, also_down.calls) == (1, 1)
    assert service.store.client.keys("*vf:*") == [] and service.store.client.keys("*ph:*") == []


def test_failover_to_the_next_gateway(settings: Settings, clock: MovableClock) -> None:
    down, up = Failing.named("down")(ProviderError("down", "timeout", transient=True)), Recording()
    service = make_service(settings, clock, down, up)
    started = service.start(PHONE, "sms", None, client_ip=IP)
    assert started.created and len(up.sent) == 1
    assert service.store.run(Batch.get, started.verification.id) is not None


def test_a_refused_number_is_invalid_and_does_not_fail_over(settings: Settings, clock: MovableClock) -> None:
    refusing, up = Failing.named("gw")(InvalidRecipient("gw", "invalid number")), Recording()
    service = make_service(settings, clock, refusing, up)
    with pytest.raises(InvalidPhone):
        service.start(PHONE, "sms", None, client_ip=IP)
    assert up.sent == [] and service.store.client.keys("*vf:*") == []
    assert not service.store.client.exists("verify:breaker:{gw}")


def test_a_failed_resend_keeps_the_old_code_valid(settings: Settings, clock: MovableClock) -> None:
    gateway = Recording()
    service = make_service(settings, clock, gateway)
    vid = service.start(PHONE, "sms", None, client_ip=IP).verification.id
    service.sms_providers = [Failing.named("down")(ProviderError("down", "timeout", transient=True))]
    clock.advance(30)
    with pytest.raises(DeliveryFailed):
        service.resend(vid, None, client_ip=IP)
    assert service.get(vid).sends_left == 4
    assert service.check(vid, gateway.sent[0].code, client_ip=IP).status == "approved"


def test_a_reply_with_the_code_approves(service: Service, gateway: Recording, clock: MovableClock) -> None:
    vid = service.start(PHONE, "sms", None, client_ip=IP).verification.id
    code = gateway.sent[0].code
    assert service.handle(SmsReceived(PHONE, "no digits here", clock())) is None
    assert service.handle(SmsReceived(PHONE, "12", clock())) is None
    assert service.get(vid).attempts_left == 5  # a text with no code-like number is no attempt
    wrong = "000000" if code != "000000" else "111111"
    assert service.handle(SmsReceived(PHONE, f"code {wrong}", clock())) is None
    assert service.get(vid).attempts_left == 4  # a wrong code replied is an attempt, as one typed
    approved = service.handle(SmsReceived(PHONE, f"My code is {code}, thanks", clock()))
    assert approved is not None and approved.completed_via == "sms_reply" and approved.token
    assert service.handle(SmsReceived(PHONE, code, clock())) is None  # replayed: nothing changes
    assert service.get(vid).verified_at == approved.verified_at


def test_a_reply_s_wrong_codes_count_as_attempts_and_a_guess_list_is_ignored(
    service: Service, gateway: Recording, clock: MovableClock
) -> None:
    vid = service.start(PHONE, "sms", None, client_ip=IP).verification.id
    code = gateway.sent[0].code
    wrong = [f"{n:06d}" for n in range(1, 12) if f"{n:06d}" != code]
    # More candidates than MAX_REPLY_CODES, the right one among them: rejected whole, no attempt taken.
    assert service.handle(SmsReceived(PHONE, " ".join([*wrong[:MAX_REPLY_CODES], code]), clock())) is None
    assert service.get(vid).attempts_left == 5 and service.get(vid).status == "pending"
    # Up to MAX_REPLY_CODES wrong ones: each is an attempt.
    assert service.handle(SmsReceived(PHONE, " ".join(wrong[:MAX_REPLY_CODES]), clock())) is None
    assert service.get(vid).attempts_left == 5 - MAX_REPLY_CODES
    assert service.handle(SmsReceived(PHONE, " ".join(wrong[3:5]), clock())) is None
    assert service.get(vid).status == "max_attempts_reached"


def test_a_reply_never_approves_a_site_key_s_verification(
    service: Service, gateway: Recording, clock: MovableClock
) -> None:
    # A stranger's start with the public key texts the phone a code: a reply to it must not hand them a proof.
    vid = service.start(PHONE, "sms", None, client_ip=IP, source=Source("pk_shop")).verification.id
    code = gateway.sent[0].code
    assert service.handle(SmsReceived(PHONE, code, clock())) is None
    assert service.get(vid).status == "pending"


def test_a_call_approves_only_a_pending_call_verification(service: Service, clock: MovableClock) -> None:
    assert service.handle(CallReceived(PHONE, clock())) is None
    sms = service.start(PHONE, "sms", None, client_ip=IP).verification.id
    assert service.handle(CallReceived(PHONE, clock())) is None
    call = service.start(PHONE, "call", None, client_ip=IP).verification.id
    approved = service.handle(CallReceived(PHONE, clock()))
    assert approved is not None and approved.id == call
    assert service.handle(CallReceived(PHONE, clock())) is None
    assert service.get(sms).status == "pending"


def test_a_call_approves_a_site_key_s_verification_only_when_it_is_the_phone_s_one(
    service: Service, clock: MovableClock
) -> None:
    # A call says only that the phone called one of our numbers. Alone, a site key's call verification is it.
    lone = service.start(PHONE, "call", None, client_ip=IP, source=Source("pk_shop")).verification.id
    approved = service.handle(CallReceived(PHONE, clock()))
    assert approved is not None and approved.id == lone
    # Two site keys' (a person's, a stranger's planted one): the call may be for either, so it approves neither.
    other = "+79991234500"
    first = service.start(other, "call", None, client_ip=IP, source=Source("pk_shop")).verification.id
    second = service.start(other, "call", None, client_ip="10.66.0.1", source=Source("pk_shop")).verification.id
    assert service.handle(CallReceived(other, clock())) is None
    assert {service.get(first).status, service.get(second).status} == {"pending"}


def test_a_call_approves_the_api_key_s_verification_first_and_a_planted_one_never_after_it(
    service: Service, clock: MovableClock
) -> None:
    planted = service.start(PHONE, "call", None, client_ip="10.66.0.1", source=Source("pk_shop")).verification.id
    backend = service.start(PHONE, "call", None, client_ip=IP).verification.id
    approved = service.handle(CallReceived(PHONE, clock()))  # the API key's: only the backend can read it
    assert approved is not None and approved.id == backend
    # The person calls again (a redial): the backend's is over, but recent, so the planted one is not taken for it.
    assert service.handle(CallReceived(PHONE, clock())) is None
    assert service.get(planted).status == "pending"


def test_challenges_expire_by_redis_ttl(settings: Settings, clock: MovableClock) -> None:
    service = make_service(replace(settings, challenge_ttl=1), clock, Recording())
    vid = service.start(PHONE, "sms", None, client_ip=IP).verification.id
    assert service.get(vid).status == "pending"
    time.sleep(1.2)  # a real TTL in Redis: wait it out (1 s is the smallest TTL the setting allows)
    with pytest.raises(NotFound):
        service.get(vid)
    assert service.start(PHONE, "sms", None, client_ip=IP).created


def test_the_circuit_breaker_skips_a_failing_gateway_then_tries_it_again(
    settings: Settings, clock: MovableClock
) -> None:
    settings = replace(settings, breaker_failures=3, breaker_cooldown=60)
    down, up = Failing.named("down")(ProviderError("down", "timeout", transient=True)), Recording()
    service = make_service(settings, clock, down, up)
    for i in range(3):
        service.start(f"+7999123456{i}", "sms", None, client_ip=IP)
    assert down.calls == 3 and len(up.sent) == 3
    # Open: every worker (here a second service on the same Redis) skips it for the cooldown.
    other_worker = make_service(settings, clock, down, up)
    other_worker.start("+79991234570", "sms", None, client_ip=IP)
    clock.advance(59)
    service.start("+79991234571", "sms", None, client_ip=IP)
    assert down.calls == 3 and len(up.sent) == 5
    # Half open after the cooldown: one more try; its failure re-opens the breaker at once.
    clock.advance(1)
    service.start("+79991234572", "sms", None, client_ip=IP)
    service.start("+79991234573", "sms", None, client_ip=IP)
    assert down.calls == 4 and len(up.sent) == 7
    # The gateway recovers: after the cooldown its success closes the breaker and clears the streak.
    clock.advance(60)
    recovered = Recording.named("down")()
    service.sms_providers = [recovered, up]
    service.start("+79991234574", "sms", None, client_ip=IP)
    assert len(recovered.sent) == 1 and len(up.sent) == 7
    assert not service.store.client.exists(service.store.breaker_key("down"))


def test_a_breaker_needs_consecutive_failures(settings: Settings, clock: MovableClock) -> None:
    settings = replace(settings, breaker_failures=2)
    flaky = Failing.named("flaky")(ProviderError("flaky", "timeout", transient=True))
    service = make_service(settings, clock, flaky, Recording())
    service.start("+79991234560", "sms", None, client_ip=IP)
    service.store.run(Batch.breaker_reset, "flaky")  # a success in between resets the streak
    service.start("+79991234561", "sms", None, client_ip=IP)
    assert service.store.run(Batch.breaker, "flaky").open_until == 0
    service.start("+79991234562", "sms", None, client_ip=IP)
    assert service.store.run(Batch.breaker, "flaky").open_until > clock() * 1000


def test_all_breakers_open_is_a_delivery_failure(settings: Settings, clock: MovableClock) -> None:
    settings = replace(settings, breaker_failures=1)
    down = Failing.named("down")(ProviderError("down", "timeout", transient=True))
    service = make_service(settings, clock, down)
    with pytest.raises(DeliveryFailed):
        service.start("+79991234560", "sms", None, client_ip=IP)
    with pytest.raises(DeliveryFailed):
        service.start("+79991234561", "sms", None, client_ip=IP)
    assert down.calls == 1


def _imports(module: str) -> set[str]:
    """The modules ``verify.<module>`` imports at run time (absolute names), read from its source; a package is read
    from its ``__init__.py``, and ``from <package> import <module>`` counts as importing that module too."""
    root = Path(__file__).resolve().parent.parent
    base = root / "verify" / module.replace(".", "/")
    path = base / "__init__.py" if base.is_dir() else base.with_suffix(".py")
    tree = ast.parse(path.read_text(encoding="utf-8"))
    for block in ast.walk(tree):  # what only the type checker imports does not count
        if isinstance(block, ast.If) and isinstance(block.test, ast.Name) and block.test.id == "TYPE_CHECKING":
            block.body = []
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
            package = root.joinpath(*node.module.split("."))
            found |= {f"{node.module}.{a.name}" for a in node.names if package.joinpath(f"{a.name}.py").is_file()}
    return found


def test_the_service_imports_nothing_that_imports_flask() -> None:
    seen, todo = set(), ["service"]
    while todo:
        module = todo.pop()
        seen.add(module)
        for name in _imports(module):
            assert name.split(".")[0] != "flask", f"verify.{module} imports {name}"
            if name.startswith("verify.") and name[len("verify.") :] not in seen:
                todo.append(name[len("verify.") :])
    assert {"store", "quotas", "failover", "captcha", "events"} <= seen
    assert not any(module.startswith("web") for module in seen)


def test_only_the_store_talks_to_redis() -> None:
    package = Path(__file__).resolve().parent.parent / "verify"
    for path in package.rglob("*.py"):
        module = ".".join(path.relative_to(package).with_suffix("").parts)
        talks = {name for name in _imports(module) if name.split(".")[0] in ("redis", "limits")}
        rules = {
            "store": talks,
            "web.problems": {"redis"},  # exception types, to render them
            "embedded": {"redis"},  # pings the redis-server it starts
            "config": {"limits"},
            "quotas": {"limits"},
        }
        # config and quotas parse limit strings; "store" is the package, every module of it
        allowed = rules.get(module, rules.get(module.partition(".")[0], set()))
        assert talks <= allowed, f"verify/{path.name} imports {talks - allowed}"


def test_a_gateway_error_echoing_the_message_logs_no_code(
    settings: Settings, clock: MovableClock, caplog: pytest.LogCaptureFixture
) -> None:
    class Echoing(Named):
        name = "echo"

        def send_sms(self, message: SmsMessage) -> Sent:
            raise ProviderError(self.name, f"HTTP 400: cannot deliver {message.text!r} to {message.to}", transient=True)

        def balance(self) -> str:
            return "0"

    gateway = Recording()
    make_service(settings, clock, Echoing(), gateway).start(PHONE, "sms", None, client_ip=IP)
    assert "gateway failed: echo: HTTP 400: cannot deliver" in caplog.text
    assert gateway.sent[0].code not in caplog.text and PHONE[1:] not in caplog.text
