"""The provider interface, the shared HTTP client, the events gateways report, and a gateway's declaration.

A provider only maps data: our :class:`SmsMessage` to its request, its response to :class:`Sent` or a
:class:`ProviderError`. :class:`Http` owns the session, timeouts, retries and the normalization of transport
errors. Failover across providers and the circuit breaker are the service's job.

Each gateway's module exports one :class:`Gateway`: everything the app needs to know about it (its name, settings,
constructor, webhook routes and parser, start-time warnings); a gateway with callbacks keeps their routes and
parser in ``<name>_webhooks.py``, which the declaration imports. ``verify/gateways.py`` lists them; nothing in this
package imports anything above it.
"""

from __future__ import annotations

import json
import re
import weakref
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar, Generic, Protocol, TypeVar

import requests
from requests.adapters import HTTPAdapter
from urllib3.util.retry import Retry

from verify.clock import Clock
from verify.errors import NotFound, WebhookRejected

USER_AGENT = "verify/0.1"
PAYLOAD_LIMIT = 2000


@dataclass(frozen=True)
class SmsMessage:
    """One code to send on ``channel``: ``sms`` (``text`` is the SMS), ``voice`` (``text`` is spoken) or ``telegram``
    (the gateway sends ``code`` itself). ``code`` is also there for the sandbox outbox. ``ttl`` is how many seconds
    the code stays valid (0: not said), for gateways that refund a message not delivered in time. ``locale`` is the
    BCP 47 tag ``text`` is written in ("": not said), for gateways that hand it on (the hook)."""

    to: str  # E.164
    text: str
    code: str
    verification_id: str
    channel: str = "sms"
    ttl: int = 0
    locale: str = ""


@dataclass(frozen=True)
class Sent:
    """A gateway accepted a message."""

    provider: str
    message_id: str


@dataclass(frozen=True)
class CallNumber:
    """A gateway will confirm the verification when the person calls ``number`` (any of ``numbers``)."""

    provider: str
    number: str  # E.164
    numbers: tuple[str, ...]
    message_id: str = ""


class ProviderError(Exception):
    """A gateway did not take the request.

    ``transient`` errors (timeouts, 5xx, throttling, no money) move on to the next provider; the others
    are final for this request. ``kind`` sorts it for the metrics: ``timeout``, ``connection``, ``http_5xx``,
    ``malformed`` (a body we cannot read), ``no_money``, ``invalid_recipient`` or ``rejected`` (the gateway said no).
    """

    def __init__(
        self, provider: str, message: str, *, transient: bool, payload: Any = None, kind: str = "rejected"
    ) -> None:
        super().__init__(f"{provider}: {message}")
        self.provider = provider
        self.transient = transient
        self.payload = payload
        self.kind = kind


class InvalidRecipient(ProviderError):
    """The gateway says the number cannot receive messages: the client gets 400, and no failover."""

    def __init__(self, provider: str, message: str, payload: Any = None) -> None:
        super().__init__(provider, message, transient=False, payload=payload, kind="invalid_recipient")


class NoMoney(ProviderError):
    """The account has no money left: transient (another gateway can send), but an operator must act."""

    def __init__(self, provider: str, message: str, payload: Any = None) -> None:
        super().__init__(provider, message, transient=True, payload=payload, kind="no_money")


class Provider(ABC):
    """A gateway that sends SMS and, optionally, hands out numbers to call."""

    name: ClassVar[str]

    @abstractmethod
    def send_sms(self, message: SmsMessage) -> Sent:
        """Send ``message``; raise :class:`ProviderError` if the gateway refuses or fails."""

    def start_call(self, phone: str, verification_id: str) -> CallNumber:
        """Ask for a number that ``phone`` must call; gateways without call verification refuse."""
        raise ProviderError(self.name, "does not support call verification", transient=False)

    def confirm(self, message_id: str, code: str) -> None:
        """Tell the gateway that the person entered ``code``, the right one, for the message ``message_id`` (as
        :attr:`Sent.message_id` named it). The service calls it after an approval, off the request path, and only
        logs a failure: the verification is approved whatever the gateway answers. Gateways that do not count
        conversions do nothing (Telegram asks for it: ``checkVerificationStatus``). Raise :class:`ProviderError`
        if the gateway refuses or fails."""
        return None

    def revoke(self, message_id: str) -> None:
        """Ask the gateway to withdraw the message ``message_id`` (the verification was canceled), where it can
        (Telegram: ``revokeVerificationMessage``); the others do nothing. A delivered message may stay: this only
        asks. Raise :class:`ProviderError` if the gateway refuses or fails."""
        return None

    @abstractmethod
    def balance(self) -> str:
        """The account balance as the gateway states it (for ``verify check-config --live``)."""


class Http:
    """The HTTP session every gateway shares: timeouts, retries and transport-error normalization.

    Only a failed *connect* is retried (once): then the gateway never saw the request. A read timeout is not
    retried, because the gateway may have sent the SMS; the service fails over instead.
    Error messages carry no URL, since some gateways take credentials in the query string.
    """

    def __init__(self, connect_timeout: float, read_timeout: float) -> None:
        self.timeout = (connect_timeout, read_timeout)
        self.session = requests.Session()
        weakref.finalize(self, self.session.close)
        self.session.headers["User-Agent"] = USER_AGENT
        retry = Retry(total=1, connect=1, read=False, status=0, other=0, redirect=0, allowed_methods=None)
        adapter = HTTPAdapter(max_retries=retry)
        self.session.mount("http://", adapter)
        self.session.mount("https://", adapter)

    def request(self, provider: str, method: str, url: str, **kwargs: Any) -> requests.Response:
        """Send one request. Timeouts, connection errors and 5xx raise a transient :class:`ProviderError`."""
        try:
            response = self.session.request(method, url, timeout=self.timeout, allow_redirects=False, **kwargs)
        except requests.Timeout as err:
            raise ProviderError(provider, f"timed out ({type(err).__name__})", transient=True, kind="timeout") from err
        except requests.RequestException as err:
            raise ProviderError(
                provider, f"request failed ({type(err).__name__})", transient=True, kind="connection"
            ) from err
        if response.status_code >= 500:
            raise ProviderError(
                provider,
                f"HTTP {response.status_code}",
                transient=True,
                payload=response.text[:PAYLOAD_LIMIT],
                kind="http_5xx",
            )
        return response


def json_of(provider: str, response: requests.Response) -> Any:
    """The response's JSON body; a body that is not JSON is a transient error (the gateway misbehaved)."""
    try:
        return response.json()
    except ValueError as err:
        raise ProviderError(
            provider,
            f"HTTP {response.status_code} with a body that is not JSON",
            transient=True,
            payload=response.text[:PAYLOAD_LIMIT],
            kind="malformed",
        ) from err


def json_object(body: bytes) -> dict[str, Any] | None:
    """``body`` parsed as a JSON object, or ``None`` for anything else: not JSON, nested deeper than the parser goes,
    or JSON but not an object. A gateway's body is read leniently: what it is not is simply not there."""
    try:
        document: Any = json.loads(body)
    except (ValueError, RecursionError):
        return None
    return document if isinstance(document, dict) else None


def scalar(value: object, *, amount: bool = False) -> str:
    """A JSON scalar as trimmed text, leniently (gateways send ids and codes as numbers or strings):
    ``1563``, ``"1563"`` and ``1563.0`` all give ``"1563"``; null, booleans, objects and lists give ``""``.
    An ``amount`` (a balance) keeps its number as sent: ``0.0`` stays ``"0.0"``."""
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        return ""
    if isinstance(value, float) and value.is_integer() and not amount:
        return str(int(value))
    return str(value).strip()


def integer(value: object) -> int | None:
    """A JSON scalar as a whole number (``7``, ``"7"``, ``" 7 "``, ``7.0``), else ``None``."""
    try:
        return int(scalar(value))
    except ValueError:
        return None


def e164(raw: object) -> str:
    """A gateway's number (``79585551234``, ``+7 958...``, or a JSON number) as E.164 (``+79585551234``)."""
    digits = re.sub(r"\D", "", str(raw))
    return "+" + digits if digits else ""


@dataclass(frozen=True)
class CallReceived:
    """The person called the number handed out for a ``call`` verification.

    ``received_at`` is the call time the gateway signed; the service refuses one from before the
    verification started, so a captured callback replayed later approves nothing.
    """

    phone: str  # E.164 of the caller
    received_at: float  # unix seconds
    raw: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class SmsReceived:
    """An inbound SMS from ``phone``: a reply that may carry the code.

    ``verification_id`` (our id echoed back, e.g. Zoom Connect's ``dataField``) or ``reply_to`` (the gateway's
    id of our message it answers, e.g. SMSC's ``sms_id``) name the verification when the gateway gives them;
    otherwise the phone's pending SMS verification is meant.
    """

    phone: str  # E.164 of the sender
    text: str
    received_at: float
    provider: str = ""
    verification_id: str = ""
    reply_to: str = ""
    raw: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class DeliveryReport:
    """A gateway's delivery status for one of our messages.

    ``status`` is ours: ``sent`` (accepted or on its way), ``delivered``, ``read`` (a messenger saw it read),
    ``failed`` (undelivered, or expired unread) or ``revoked`` (withdrawn at our request); ``raw_status`` keeps the
    gateway's own code (``1``, ``DELIVRD``, ``un_delivered``...). The message is named by the gateway's
    ``message_id`` as it was returned at send time, or by ``verification_id`` when the gateway echoes ours.
    ``cost`` is what the gateway says the message cost (``None``: not said), ``refunded`` whether it gave it back.
    """

    provider: str
    message_id: str
    status: str
    raw_status: str
    verification_id: str = ""
    raw: dict[str, Any] = field(default_factory=dict)
    cost: float | None = None
    refunded: bool = False


Event = CallReceived | SmsReceived | DeliveryReport


@dataclass(frozen=True)
class Inbound:
    """A gateway's HTTP callback as it arrived, free of any web framework.

    ``query_string`` and ``body`` are raw bytes: some gateways (SMSC) choose the charset of the values in a
    query parameter, so decoding is the provider module's job.
    """

    method: str
    query_string: bytes
    body: bytes
    content_type: str  # the mimetype, e.g. "application/x-www-form-urlencoded"
    headers: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Webhook:
    """What a verified callback says: its events, and a nonce when the gateway sends one (replay check)."""

    events: list[Event]
    nonce: str = ""


@dataclass(frozen=True)
class WebhookRoute:
    """One URL under ``/webhooks`` a gateway calls: its werkzeug rule, methods, a name its parser is told, and
    the body the gateway expects on success."""

    rule: str
    methods: tuple[str, ...]
    name: str
    ack: str = "OK"


# ---- a gateway's declaration ----

S = TypeVar("S")


class AppSettings(Protocol):
    """What a gateway may read of the app's own settings (``verify.config.Settings`` has it, among the rest)."""

    @property
    def public_url(self) -> str | None:
        """The service's public base URL (``VERIFY_PUBLIC_URL``), for the callback URLs a gateway is given."""


class Outbox(Protocol):
    """Where the sandbox gateway keeps the messages it pretends to send, for ``GET /sandbox/messages``."""

    def keep(self, phone: str, message: dict[str, str]) -> None:
        """Keep ``message`` to ``phone``; it may be written with the send's commit, in that round trip."""


@dataclass(frozen=True)
class Shared:
    """What the app builds each gateway with, besides the gateway's own settings."""

    app: AppSettings
    http: Http  # one session for every gateway
    clock: Clock
    outbox: Outbox


def _no_webhooks(
    route: str, inbound: Inbound, args: Mapping[str, str], settings: Any, now: float, max_age: int
) -> Webhook:
    raise NotFound("no such webhook")


def _no_warnings(*_: object) -> list[str]:
    return []


@dataclass(frozen=True)
class Gateway(Generic[S]):
    """One gateway, declared once in its module: adding a gateway is its module (and ``<name>_webhooks.py`` for its
    callbacks), one line in ``verify/gateways.py`` and its tests.

    - ``name``: what ``VERIFY_SMS_PROVIDERS`` and ``VERIFY_CALL_PROVIDER`` call it, and its webhooks' prefix;
    - ``settings``: its frozen settings dataclass (fields declared with ``verify.env.var``), read from the
      environment only when the gateway is named; ``None`` for a gateway without settings;
    - ``make(its settings, shared)``: the :class:`Provider` the app uses;
    - ``channels``: what it can do: ``sms`` (a valid name in ``VERIFY_SMS_PROVIDERS``), ``call`` (hand out numbers to
      call: ``VERIFY_CALL_PROVIDER``), ``voice`` (speak a code: ``VERIFY_VOICE_PROVIDERS``), ``telegram``;
    - ``webhooks`` and ``parse(route name, inbound, path args, its settings, now, max age)``: the URLs it calls
      under ``/webhooks`` and the step that verifies and parses them (``verify/web/webhooks.py`` serves them);
    - ``risks(its settings)``: what its configuration allows that weakens the service, logged at start and shown by
      ``verify check-config``;
    - ``warnings(its settings, app settings)``: what is allowed but probably not meant, logged at start.
    """

    name: str
    settings: type[S] | None
    make: Callable[[S, Shared], Provider]
    channels: frozenset[str] = frozenset({"sms"})
    webhooks: tuple[WebhookRoute, ...] = ()
    parse: Callable[[str, Inbound, Mapping[str, str], S, float, int], Webhook] = _no_webhooks
    risks: Callable[[S], list[str]] = _no_warnings
    warnings: Callable[[S, AppSettings], list[str]] = _no_warnings


def require_fresh(what: str, signed_at: float, now: float, max_age: int, skew: int) -> None:
    """Refuse (:class:`WebhookRejected`) a callback signed more than ``max_age`` seconds ago, or more than ``skew``
    seconds ahead of our clock; ``what`` names it in the reason ("telegram report")."""
    if now - signed_at > max_age:
        raise WebhookRejected(f"{what} is stale ({now - signed_at:.0f} s old)")
    if signed_at - now > skew:
        raise WebhookRejected(f"{what} is from the future ({signed_at - now:.0f} s ahead)")
