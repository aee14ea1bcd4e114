"""The contract every gateway's callbacks meet, run through the real ``/webhooks`` route of a real app.

A gateway's subclass of :class:`WebhookContract` (``tests/providers/test_webhook_contract.py``) fills in the hooks:
how to start its emulator and configure the app to send through it with a given secret list, and how to build
each callback as that gateway sends it (the emulators' builders do the wire format and the signing). The cases
live here, once: each posts a callback to an app on the test Redis (``create_app`` with the gateway in its
``Settings``) and asserts the HTTP status, the body, and what became of the verification (``GET
/v1/verifications/{id}``): approved or not, delivery status moved or not. A refused callback must leave the
verification exactly as it was.

Policy under test (``verify/web/webhooks.py``): 200 and the gateway's acknowledgement for anything handled or harmless;
403 for forged, altered, unsigned, stale or replayed requests (404 for D7, whose only credential is the path token);
404 for a gateway that is not configured; 503 while Redis is down, so the gateway retries, and the retry succeeds.

Where a case cannot apply to a gateway, its hook calls ``pytest.skip`` with the reason in one sentence.
"""

from __future__ import annotations

import re
from abc import ABC, abstractmethod
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from secrets import token_hex
from typing import Any, ClassVar, Literal, TypeVar

import pytest
import redis
import requests
from flask import Flask
from flask.testing import FlaskClient
from werkzeug.test import TestResponse

from tests.conftest import AUTH, PHONE, MovableClock, make_settings, serving, start
from tests.providers.emulator import Emulator, Seen
from verify import create_app
from verify.config import Settings
from verify.embedded import EmbeddedRedis
from verify.providers.base import Event, Webhook
from verify.store import Batch

# The webhook secrets (SMSC's hash secret, Zoom Connect's checksum key, D7's path token). The app is configured with
# (NEW, OLD): NEW signs, OLD is being rotated out and still verifies. RETIRED was dropped from the list, and GUESS
# never was in it.
NEW, OLD, RETIRED, GUESS = "hook-secret-new-0123", "hook-secret-old-4567", "hook-secret-retired-89", "guessed-secret"
SECRETS = (NEW, OLD)
OTHER_PHONE = "+79997654321"  # not the verification's phone
SECOND_PHONE = "+79991234568"  # a second verification, for batches
UNKNOWN_PHONE = "+79990000001"  # no verification at all
PROBLEM = "application/problem+json"
NONCE_ONLY_USER, NONCE_ONLY_PASSWORD = "webhook-contract-nonces-only", "nonces-only-password"

Channel = Literal["sms", "call"]
Outcome = Literal["delivered", "failed"]

E = TypeVar("E", bound=Event)


def only_event(webhook: Webhook, kind: type[E]) -> E:
    """The one event a parsed callback carries, asserted to be a ``kind`` (a gateway module's tests use it)."""
    (event,) = webhook.events
    assert isinstance(event, kind)
    return event


@dataclass(frozen=True)
class Pending:
    """A verification the gateway under test was asked to deliver (an SMS, or a number to call)."""

    id: str
    phone: str  # E.164
    code: str  # the code in the SMS the gateway was asked to send; "" for a call
    message_id: str  # the gateway's id of that message, as the service stored it; "" for a call
    started_at: float  # the app's clock when it started (callbacks are stamped with it: the clock stands still)


@dataclass(frozen=True)
class Callback:
    """One HTTP request a gateway makes to us: ``path`` is under the app's root and carries any query string."""

    method: str
    path: str
    body: bytes = b""
    content_type: str = ""
    headers: Mapping[str, str] = field(default_factory=dict)

    @property
    def all_headers(self) -> dict[str, str]:
        """The request's headers, its ``Content-Type`` included."""
        return {**self.headers, **({"Content-Type": self.content_type} if self.content_type else {})}


def post(client: FlaskClient, callback: Callback) -> TestResponse:
    """Send ``callback`` through an app's real route."""
    return client.open(callback.path, method=callback.method, data=callback.body, headers=callback.all_headers)


@dataclass
class Gateway:
    """The app under test, configured for one gateway that sends through its emulator, and a client for it."""

    app: Flask
    client: FlaskClient
    clock: MovableClock
    emulator: Emulator
    code_length: int

    def begin(self, channel: Channel = "sms", phone: str = PHONE) -> Pending:
        """Start a verification; the gateway's emulator receives the SMS (or the call-in number request)."""
        sent_before = len(self.emulator.requests)
        response = start(self.client, phone, channel=channel)
        assert response.status_code == 201, response.get_data(as_text=True)
        assert len(self.emulator.requests) == sent_before + 1, "the gateway under test was not asked to send"
        vid: str = response.get_json()["id"]
        record = self.app.extensions["verify"].store.run(Batch.get, vid)
        assert record is not None
        return Pending(vid, phone, "", record.message_id, record.created_at / 1000)

    def with_code(self, pending: Pending, text: str) -> Pending:
        """``pending`` with the code of the SMS text the gateway was asked to send."""
        codes = re.findall(rf"(?<!\d)\d{{{self.code_length}}}(?!\d)", text)
        assert codes, f"no code in {text!r}"
        return Pending(pending.id, pending.phone, codes[-1], pending.message_id, pending.started_at)

    def post(self, callback: Callback) -> TestResponse:
        """Send ``callback`` through the app's real route."""
        return post(self.client, callback)

    def view(self, pending: Pending) -> dict[str, Any]:
        """The verification as the API shows it."""
        response = self.client.get(f"/v1/verifications/{pending.id}", headers=AUTH)
        assert response.status_code == 200, response.get_data(as_text=True)
        body: dict[str, Any] = response.get_json()
        return body


def approved_by_reply(view: Mapping[str, Any]) -> bool:
    """The verification was approved by an inbound SMS carrying its code."""
    return view["status"] == "approved" and view.get("completed_via") == "sms_reply"


def assert_refused(response: TestResponse, status: int, ack: str) -> None:
    """A refusal: the status, a problem document, and never the acknowledgement (which would stop retries)."""
    assert response.status_code == status, response.get_data(as_text=True)
    assert response.mimetype == PROBLEM
    assert response.get_data(as_text=True) != ack


def assert_acknowledged(response: TestResponse, ack: str) -> None:
    """Success as the gateway understands it: 200 and exactly the body it expects."""
    assert response.status_code == 200, response.get_data(as_text=True)
    assert response.get_data(as_text=True) == ack


def parametrize_variants(metafunc: pytest.Metafunc) -> None:
    """For ``pytest_generate_tests``: ``charset_variant`` takes each of the test class's ``CHARSET_VARIANTS``."""
    if "charset_variant" in metafunc.fixturenames and metafunc.cls is not None:
        variants = metafunc.cls.CHARSET_VARIANTS
        metafunc.parametrize("charset_variant", variants, ids=list(variants))


class WebhookContract(ABC):
    """The cases every gateway's callbacks pass. A subclass names the gateway and implements every hook.

    The hooks build callbacks "as the gateway sends them", signed with a given secret (for D7, the path token). The
    *primary* callback is the one that acts on a verification: it approves it where the gateway can approve (an
    SMSC call, a Zoom Connect reply), else it reports it delivered (D7). :meth:`acted` tells whether it did.
    """

    NAME: ClassVar[str]  # the gateway's name: its settings field, its delivery ``provider``
    CHANNEL: ClassVar[Channel] = "sms"  # the channel of the verification the primary callback acts on
    ACK: ClassVar[str] = "OK"  # the body the gateway expects with the 200
    REFUSED: ClassVar[int] = 403  # the status of a forged, altered or unsigned callback
    STALE: ClassVar[int] = 403  # the status of a stale one
    REPLAYED: ClassVar[int] = 403  # the status of the second of two identical callbacks
    CHARSET_VARIANTS: ClassVar[tuple[str, ...]] = ("default",)

    # --- hooks ---------------------------------------------------------------------------------------------------

    @abstractmethod
    def make_emulator(self) -> Emulator:
        """The gateway's emulator, not started."""

    @abstractmethod
    def configure(self, settings: Settings, emulator_url: str, secrets: tuple[str, ...]) -> Settings:
        """``settings`` with this gateway configured (sending through the emulator at ``emulator_url``) and its
        webhook secret list ``secrets``, and sandbox mode off."""

    @abstractmethod
    def sent_text(self, seen: Seen) -> str:
        """The SMS text in the gateway's send request ``seen``."""

    @abstractmethod
    def callback(self, pending: Pending, *, secret: str) -> Callback:
        """The primary callback for ``pending``, signed with ``secret``."""

    @abstractmethod
    def acted(self, view: Mapping[str, Any]) -> bool:
        """Whether the verification shows the primary callback's effect."""

    @abstractmethod
    def report(self, pending: Pending, outcome: Outcome, *, secret: str) -> Callback:
        """A delivery report for ``pending``'s message."""

    @abstractmethod
    def unsigned(self, pending: Pending) -> Callback:
        """The primary callback with its signature (or token) stripped."""

    @abstractmethod
    def altered(self, pending: Pending, *, secret: str) -> Callback:
        """A callback signed with ``secret`` for another phone, then rewritten to act on ``pending``."""

    @abstractmethod
    def weak_algorithm(self, pending: Pending, *, secret: str) -> Callback:
        """The primary callback correctly signed with an algorithm the default settings do not accept."""

    @abstractmethod
    def allow_weak_algorithm(self, settings: Settings) -> Settings:
        """``settings`` accepting the algorithm of :meth:`weak_algorithm`."""

    @abstractmethod
    def stale(self, pending: Pending, *, secret: str, max_age: int) -> Callback:
        """The primary callback, correctly signed, claiming a time the gateway must not accept it for."""

    @abstractmethod
    def reply(self, pending: Pending, *, phone: str, secret: str) -> Callback:
        """An inbound SMS from ``phone`` carrying ``pending``'s code (``pending`` is an SMS verification)."""

    @abstractmethod
    def charset_reply(self, pending: Pending, variant: str, *, secret: str) -> Callback:
        """A reply from ``pending.phone`` with its code and non-ASCII text, encoded as ``variant`` says."""

    @abstractmethod
    def batch(self, pendings: Sequence[Pending], *, secrets: Sequence[str]) -> Callback:
        """One request carrying the primary callback of each of ``pendings``, the i-th signed with ``secrets[i]``."""

    # --- fixtures ------------------------------------------------------------------------------------------------

    @pytest.fixture
    def emulator(self) -> Iterator[Emulator]:
        emulator = self.make_emulator()
        emulator.start()
        yield emulator
        emulator.stop()

    @pytest.fixture
    def gateway(self, redis_url: str, clock: MovableClock, emulator: Emulator) -> Gateway:
        return self.serve(redis_url, clock, emulator)

    def serve(
        self, redis_url: str, clock: MovableClock, emulator: Emulator, settings: Settings | None = None
    ) -> Gateway:
        """An app on ``redis_url`` configured for this gateway with :data:`SECRETS` (or with ``settings``)."""
        settings = settings or self.configure(make_settings(redis_url), emulator.url, SECRETS)
        app = create_app(settings, clock=clock, background=False)
        return Gateway(app, app.test_client(), clock, emulator, settings.code_length)

    def begin(self, gateway: Gateway, channel: Channel | None = None, phone: str = PHONE) -> Pending:
        """Start a verification through the gateway; an SMS one knows the code the gateway was given."""
        pending = gateway.begin(channel or self.CHANNEL, phone)
        if (channel or self.CHANNEL) == "sms":
            pending = gateway.with_code(pending, self.sent_text(gateway.emulator.last))
        return pending

    # --- cases ---------------------------------------------------------------------------------------------------

    def test_callback_acts_and_is_acknowledged(self, gateway: Gateway) -> None:
        pending = self.begin(gateway)
        assert not self.acted(gateway.view(pending))
        assert_acknowledged(gateway.post(self.callback(pending, secret=NEW)), self.ACK)
        assert self.acted(gateway.view(pending))

    def test_callback_over_http(self, gateway: Gateway) -> None:
        """The same bytes through a real HTTP server, as the gateway's own client would send them."""
        pending = self.begin(gateway)
        callback = self.callback(pending, secret=NEW)
        with serving(gateway.app) as base:
            response = requests.request(
                callback.method,
                base + callback.path,
                data=callback.body or None,
                headers=callback.all_headers,
                timeout=5,
                allow_redirects=False,
            )
        assert response.status_code == 200 and response.text == self.ACK
        assert self.acted(gateway.view(pending))

    def test_harmless_callback_is_acknowledged(self, gateway: Gateway) -> None:
        """About no verification we know (an unknown phone or message id): 200 and the ack, so no retries."""
        unknown = Pending(token_hex(14), UNKNOWN_PHONE, "0" * gateway.code_length, token_hex(14), gateway.clock())
        assert_acknowledged(gateway.post(self.callback(unknown, secret=NEW)), self.ACK)

    @pytest.mark.parametrize("outcome", ["delivered", "failed"])
    def test_delivery_report(self, gateway: Gateway, outcome: Outcome) -> None:
        pending = self.begin(gateway, "sms")
        assert gateway.view(pending)["delivery"] == {"provider": self.NAME, "status": "sent"}
        assert_acknowledged(gateway.post(self.report(pending, outcome, secret=NEW)), self.ACK)
        assert gateway.view(pending)["delivery"] == {"provider": self.NAME, "status": outcome}

    def test_forged_callback_is_refused(self, gateway: Gateway) -> None:
        """Valid in shape, signed with a secret that was never configured."""
        pending = self.begin(gateway)
        before = gateway.view(pending)
        assert_refused(gateway.post(self.callback(pending, secret=GUESS)), self.REFUSED, self.ACK)
        assert gateway.view(pending) == before

    def test_altered_callback_is_refused(self, gateway: Gateway) -> None:
        pending = self.begin(gateway)
        before = gateway.view(pending)
        assert_refused(gateway.post(self.altered(pending, secret=NEW)), self.REFUSED, self.ACK)
        assert gateway.view(pending) == before

    def test_missing_signature_is_refused(self, gateway: Gateway) -> None:
        pending = self.begin(gateway)
        before = gateway.view(pending)
        assert_refused(gateway.post(self.unsigned(pending)), self.REFUSED, self.ACK)
        assert gateway.view(pending) == before

    def test_weak_algorithm_is_refused(self, gateway: Gateway, redis_url: str) -> None:
        """A correct signature in an algorithm not allowed is refused; the same bytes pass where it is allowed (so
        the refusal is the algorithm's, not a bad signature's)."""
        pending = self.begin(gateway)
        before = gateway.view(pending)
        callback = self.weak_algorithm(pending, secret=NEW)
        assert_refused(gateway.post(callback), self.REFUSED, self.ACK)
        assert gateway.view(pending) == before
        lenient = self.allow_weak_algorithm(self.configure(make_settings(redis_url), gateway.emulator.url, SECRETS))
        allowing = self.serve(redis_url, gateway.clock, gateway.emulator, settings=lenient)
        assert_acknowledged(allowing.post(callback), self.ACK)
        assert self.acted(gateway.view(pending))

    def test_stale_callback_changes_nothing(self, gateway: Gateway) -> None:
        pending = self.begin(gateway)
        before = gateway.view(pending)
        max_age = gateway.app.extensions["verify"].settings.webhook_max_age
        response = gateway.post(self.stale(pending, secret=NEW, max_age=max_age))
        if self.STALE == 200:  # harmless: the gateway must stop retrying it
            assert_acknowledged(response, self.ACK)
        else:
            assert_refused(response, self.STALE, self.ACK)
        assert gateway.view(pending) == before

    def test_replayed_callback_changes_nothing_more(self, gateway: Gateway) -> None:
        pending = self.begin(gateway)
        callback = self.callback(pending, secret=NEW)
        assert_acknowledged(gateway.post(callback), self.ACK)
        after = gateway.view(pending)
        assert self.acted(after)
        again = gateway.post(callback)
        if self.REPLAYED == 200:  # a repeated delivery: applying it again is idempotent
            assert_acknowledged(again, self.ACK)
        else:
            assert_refused(again, self.REPLAYED, self.ACK)
        assert gateway.view(pending) == after

    def test_reply_with_the_code_approves(self, gateway: Gateway) -> None:
        """The control of the wrong-phone case: the same reply from the verification's own phone approves."""
        pending = self.begin(gateway, "sms")
        assert_acknowledged(gateway.post(self.reply(pending, phone=pending.phone, secret=NEW)), self.ACK)
        assert approved_by_reply(gateway.view(pending))

    def test_reply_from_another_phone_approves_nothing(self, gateway: Gateway) -> None:
        pending = self.begin(gateway, "sms")
        before = gateway.view(pending)
        assert_acknowledged(gateway.post(self.reply(pending, phone=OTHER_PHONE, secret=NEW)), self.ACK)
        assert gateway.view(pending) == before

    def test_charset_variant_approves(self, gateway: Gateway, charset_variant: str) -> None:
        pending = self.begin(gateway, "sms")
        assert_acknowledged(gateway.post(self.charset_reply(pending, charset_variant, secret=NEW)), self.ACK)
        assert approved_by_reply(gateway.view(pending))

    def test_batched_body_applies_every_callback(self, gateway: Gateway) -> None:
        pendings = [self.begin(gateway), self.begin(gateway, phone=SECOND_PHONE)]
        assert_acknowledged(gateway.post(self.batch(pendings, secrets=(NEW, NEW))), self.ACK)
        assert all(self.acted(gateway.view(pending)) for pending in pendings)

    def test_batch_with_one_forged_item_changes_nothing(self, gateway: Gateway) -> None:
        """Verification is all or nothing: a valid item does not ride along with a forged one."""
        pendings = [self.begin(gateway), self.begin(gateway, phone=SECOND_PHONE)]
        before = [gateway.view(pending) for pending in pendings]
        assert_refused(gateway.post(self.batch(pendings, secrets=(NEW, GUESS))), self.REFUSED, self.ACK)
        assert [gateway.view(pending) for pending in pendings] == before

    def test_secret_rotation(self, gateway: Gateway) -> None:
        """Signed with the older secret of the list: accepted. With one dropped from the list: refused."""
        pending = self.begin(gateway)
        before = gateway.view(pending)
        assert_refused(gateway.post(self.callback(pending, secret=RETIRED)), self.REFUSED, self.ACK)
        assert gateway.view(pending) == before
        assert_acknowledged(gateway.post(self.callback(pending, secret=OLD)), self.ACK)
        assert self.acted(gateway.view(pending))

    def test_unconfigured_gateway_is_404(self, redis_url: str, clock: MovableClock) -> None:
        client = create_app(make_settings(redis_url), clock=clock, background=False).test_client()
        pending = Pending(token_hex(14), PHONE, "0" * 6, token_hex(14), clock())
        assert_refused(post(client, self.callback(pending, secret=NEW)), 404, self.ACK)

    def test_redis_failing_mid_callback_is_503_and_the_retry_succeeds(
        self, gateway: Gateway, redis_client: redis.Redis
    ) -> None:
        """Redis fails after the replay check (the nonce claimed) and before the event is applied: 503, and the
        gateway's retry is not taken for a replay. A Redis user that may only SET and DEL stands for that Redis."""
        pending = self.begin(gateway)
        callback = self.callback(pending, secret=NEW)
        redis_client.acl_setuser(
            NONCE_ONLY_USER,
            enabled=True,
            passwords=[f"+{NONCE_ONLY_PASSWORD}"],
            keys=["*"],
            commands=["-@all", "+set", "+del", "+ping"],
            reset=True,
        )
        try:
            url = gateway.app.extensions["verify"].settings.redis_url.replace(
                "redis://", f"redis://{NONCE_ONLY_USER}:{NONCE_ONLY_PASSWORD}@", 1
            )
            failing = self.serve(url, gateway.clock, gateway.emulator)
            assert_refused(failing.post(callback), 503, self.ACK)
        finally:
            redis_client.acl_deluser(NONCE_ONLY_USER)
        assert_acknowledged(gateway.post(callback), self.ACK)
        assert self.acted(gateway.view(pending))

    def test_redis_down_is_503_and_the_retry_succeeds(
        self, tmp_path: Path, clock: MovableClock, emulator: Emulator
    ) -> None:
        server = EmbeddedRedis(tmp_path)
        server.start()
        try:
            gateway = self.serve(server.url, clock, emulator)
            pending = self.begin(gateway)
            callback = self.callback(pending, secret=NEW)
            with redis.Redis.from_url(server.url) as client:
                client.save()  # the data survives the restart (it loads dump.rdb), as a real Redis's does
            server.stop()
            response = gateway.post(callback)
            assert_refused(response, 503, self.ACK)  # the gateway retries later
            server.start()
            assert_acknowledged(gateway.post(callback), self.ACK)  # the retry is not taken for a replay
            assert self.acted(gateway.view(pending))
        finally:
            server.stop()
