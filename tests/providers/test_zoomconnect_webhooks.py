"""Zoom Connect callbacks: the checksum vectors of docs/gateways/zoomconnect.md §8, every rejection, where parameters
arrive, the freshness window across time zones, and the mapping of replies and delivery reports."""

from __future__ import annotations

import datetime
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Literal
from urllib.parse import parse_qsl, urlencode
from zoneinfo import ZoneInfo

import pytest
from werkzeug.wrappers import Request, Response

from tests.providers.emulator import Emulator, Seen
from tests.providers.webhook_contract import only_event
from tests.providers.zoomconnect_emulator import FORM, post_callback, sign, zoom_callback
from verify.errors import NotFound, WebhookRejected
from verify.providers.base import DeliveryReport, Inbound, SmsReceived, Webhook
from verify.providers.zoomconnect_webhooks import parse_callback

Kind = Literal["reply", "delivery"]
SECRET = "secret"  # the key of the vectors in docs/gateways/zoomconnect.md §8
UTC = datetime.UTC
JOHANNESBURG = ZoneInfo("Africa/Johannesburg")  # UTC+2 all year
MAX_AGE = 300


@dataclass(frozen=True)
class Vector:
    kind: Kind
    signed: str  # an input string of docs/gateways/zoomconnect.md §8, which is also the parameter set
    checksum: str
    signed_at: float  # the nonce-date, read as UTC


VECTORS = [
    Vector(
        "reply",
        "campaign=campaign&dataField=data&date=201405161005&from=+27726661234&message=Test + Message"
        "&messageId=24567&nonce=e273f177-6275-974f-1a12-0d8b92c5b3cb&nonce-date=2014051610050102"
        "&to=+27725551234",
        "a8feae2be10989b7a9a3d1f38b087a0b5d6d6d9e",
        datetime.datetime(2014, 5, 16, 10, 5, 1, tzinfo=UTC).timestamp(),
    ),
    Vector(
        "reply",
        "campaign=shoe campaign&dataField=custom&date=201404282055&from=+27725551234&message=REPLY"
        "&messageId=124567&nonce=89430dc5-cac1-4795-9dd0-46c9b8233e52&nonce-date=20140428210027"
        "&repliedToMessageId=121212",
        "9097eb6dd65a5758379dd8f6f3fe5c7573e5c547",
        datetime.datetime(2014, 4, 28, 21, 0, 27, tzinfo=UTC).timestamp(),
    ),
    Vector(
        "delivery",
        "messageId=40124213&nonce=6110900b-a3e3-4ae7-9c80-c446086f8882&nonce-date=20160120103235&status=DELIVERED",
        "dc1de3fa8f42f12fc99af57f76d222cb20393f92",
        datetime.datetime(2016, 1, 20, 10, 32, 35, tzinfo=UTC).timestamp(),
    ),
]
# The vendor's worked example (docs/gateways/zoomconnect.md §7): does not verify.
VENDOR_CLAIMED = "9d0e933a457eabf94a73d7e15dd8849e89834464"
# The vendor's delivery report URL as it shows it (docs/gateways/zoomconnect.md §6; its checksum is not made with
# "secret").
VENDOR_DLR_QUERY = (
    b"nonce=6110900b-a3e3-4ae7-9c80-c446086f8882&status=DELIVERED&messageId=40124213"
    b"&checksum=195e39edfffed7e5ac87e85f3a6dd70ed8684b22&nonce-date=20160120103235"
)

REPLY = {
    "from": "+27725551234",
    "to": "+27820000000",
    "repliedToMessageId": "40124213",
    "messageId": "124567",
    "message": "My code is 123456",
    "date": "202401151159",
    "dataField": "abcd0123456789abcdef01234567",
    "nonce": "89430dc5-cac1-4795-9dd0-46c9b8233e52",
    "nonce-date": "20240115120000",
}
DELIVERY = {
    "messageId": "40124213",
    "status": "DELIVERED",
    "nonce": "6110900b-a3e3-4ae7-9c80-c446086f8882",
    "nonce-date": "20240115120000",
}
SIGNED_AT = datetime.datetime(2024, 1, 15, 12, 0, 0, tzinfo=UTC).timestamp()  # their nonce-date, read as UTC


def params_of(signed: str) -> dict[str, str]:
    """The parameters of an input string of docs/gateways/zoomconnect.md §8 (no value there holds ``&`` or ``=``)."""
    pairs = [pair.partition("=") for pair in signed.split("&")]
    return {key: value for key, _, value in pairs}


def inbound(query: bytes = b"", body: bytes = b"", content_type: str = "") -> Inbound:
    return Inbound("POST", query, body, content_type)


def sent(kind: Kind, params: dict[str, str], *, secret: str = SECRET, in_query: bool = True) -> Inbound:
    return inbound(*zoom_callback(kind, params, secret=secret, in_query=in_query))


def parse(
    request: Inbound, kind: Kind = "reply", *, now: float = SIGNED_AT, tz: datetime.tzinfo = UTC, secret: str = SECRET
) -> Webhook:
    return parse_callback(request, kind, (secret,), now, tz, MAX_AGE)


def rejected(
    request: Inbound, kind: Kind = "reply", *, now: float = SIGNED_AT, tz: datetime.tzinfo = UTC, secret: str = SECRET
) -> WebhookRejected:
    with pytest.raises(WebhookRejected) as caught:
        parse(request, kind, now=now, tz=tz, secret=secret)
    return caught.value


def forbidden(
    request: Inbound, kind: Kind = "reply", *, now: float = SIGNED_AT, tz: datetime.tzinfo = UTC, secret: str = SECRET
) -> str:
    error = rejected(request, kind, now=now, tz=tz, secret=secret)
    assert error.status == 403
    return error.detail


def reply_of(webhook: Webhook) -> SmsReceived:
    return only_event(webhook, SmsReceived)


def report_of(webhook: Webhook) -> DeliveryReport:
    return only_event(webhook, DeliveryReport)


# --- the vectors of docs/gateways/zoomconnect.md §8 -------------------------------------------------------------


@pytest.mark.parametrize("vector", VECTORS, ids=["vendor-example", "vendor-reply", "vendor-dlr"])
def test_vector_verifies_with_its_published_checksum(vector: Vector) -> None:
    params = params_of(vector.signed)
    # Encoded by a real form encoder: "+27..." travels as "%2B27...", "Test + Message" as "Test+%2B+Message".
    query = urlencode({**params, "checksum": vector.checksum}).encode()
    webhook = parse(inbound(query), vector.kind, now=vector.signed_at)
    assert webhook.nonce == params["nonce"]
    event = webhook.events[0]
    assert len(webhook.events) == 1
    assert event.raw == {**params, "checksum": vector.checksum}


@pytest.mark.parametrize("vector", VECTORS, ids=["vendor-example", "vendor-reply", "vendor-dlr"])
def test_emulator_signs_the_vectors(vector: Vector) -> None:
    params = params_of(vector.signed)
    assert sign(params, SECRET) == vector.checksum
    query, body, content_type = zoom_callback(vector.kind, params, secret=SECRET)
    assert (body, content_type) == (b"", "")
    assert b"checksum=" + vector.checksum.encode() in query.split(b"&")
    assert parse(inbound(query), vector.kind, now=vector.signed_at).nonce == params["nonce"]


def test_vector_plus_signs_are_form_encoded_and_read_back() -> None:
    vector = VECTORS[0]
    query, _, _ = zoom_callback("reply", params_of(vector.signed), secret=SECRET)
    assert b"from=%2B27726661234" in query and b"message=Test+%2B+Message" in query
    reply = reply_of(parse(inbound(query), now=vector.signed_at))
    assert (reply.phone, reply.text) == ("+27726661234", "Test + Message")


def test_an_unencoded_plus_in_the_query_is_a_space_so_the_checksum_fails() -> None:
    vector = VECTORS[0]
    params = params_of(vector.signed)
    raw = "&".join(f"{key}={value}" for key, value in {**params, "checksum": vector.checksum}.items())
    assert "checksum does not match" in forbidden(inbound(raw.replace(" ", "%20").encode()), now=vector.signed_at)


def test_the_vendors_claimed_checksum_is_rejected() -> None:
    params = {**params_of(VECTORS[0].signed), "checksum": VENDOR_CLAIMED}
    assert "checksum" in forbidden(sent("reply", params), now=VECTORS[0].signed_at)


def test_the_vendors_dlr_url_is_rejected_and_verifies_with_our_checksum() -> None:
    now = VECTORS[2].signed_at
    assert "checksum" in forbidden(inbound(VENDOR_DLR_QUERY), "delivery", now=now)
    ours = VENDOR_DLR_QUERY.replace(b"195e39edfffed7e5ac87e85f3a6dd70ed8684b22", VECTORS[2].checksum.encode())
    assert report_of(parse(inbound(ours), "delivery", now=now)).message_id == "40124213"


def test_an_uppercase_checksum_is_accepted() -> None:
    params = {**DELIVERY, "checksum": sign(DELIVERY, SECRET).upper()}
    assert parse(sent("delivery", params), "delivery").nonce == DELIVERY["nonce"]


# --- rejections -----------------------------------------------------------------------------------------------------


def test_a_checksum_made_with_another_key_is_rejected() -> None:
    assert "checksum does not match" in forbidden(sent("reply", REPLY, secret="not-the-secret"))
    assert reply_of(parse(sent("reply", REPLY, secret="not-the-secret"), secret="not-the-secret"))


@pytest.mark.parametrize("key", sorted(REPLY))
def test_any_altered_value_is_rejected(key: str) -> None:
    query, _, _ = zoom_callback("reply", REPLY, secret=SECRET)
    altered = urlencode([(name, value + "0" if name == key else value) for name, value in _pairs(query)]).encode()
    assert altered != query
    assert "checksum does not match" in forbidden(inbound(altered))


def test_an_added_or_removed_parameter_is_rejected() -> None:
    query, _, _ = zoom_callback("reply", REPLY, secret=SECRET)
    assert "checksum does not match" in forbidden(inbound(query + b"&campaign=x"))
    assert "checksum does not match" in forbidden(inbound(query.replace(b"to=%2B27820000000&", b"")))
    assert reply_of(parse(inbound(query)))


@pytest.mark.parametrize("checksum", [None, ""])
def test_a_missing_checksum_is_rejected(checksum: str | None) -> None:
    query = urlencode({**REPLY, **({} if checksum is None else {"checksum": checksum})}).encode()
    assert forbidden(inbound(query)) == "zoomconnect callback without a checksum"


def test_rejections_never_tell_the_secret_or_the_expected_checksum() -> None:
    secret = "a-rather-long-callback-secret"
    reasons = [
        forbidden(sent("reply", REPLY), secret=secret),
        forbidden(sent("reply", {**REPLY, "checksum": "0" * 40}), secret=secret),
    ]
    expected = sign(REPLY, secret)
    for reason in reasons:
        assert secret not in reason and expected not in reason and expected.upper() not in reason


def test_a_missing_nonce_is_rejected() -> None:
    params = {key: value for key, value in REPLY.items() if key != "nonce"}
    assert forbidden(sent("reply", params)) == "zoomconnect callback without a nonce"
    assert forbidden(sent("reply", {**REPLY, "nonce": ""})) == "zoomconnect callback without a nonce"


@pytest.mark.parametrize(
    "nonce_date",
    [
        None,
        "",
        "yesterday",
        "202401151200",
        "2024011512000",
        "20241315120000",
        "20240115250000",
        "2024-01-15 12:00:00",
        "202401151200001234",
    ],
)
def test_a_missing_or_unreadable_nonce_date_is_rejected(nonce_date: str | None) -> None:
    params = {key: value for key, value in REPLY.items() if key != "nonce-date"}
    if nonce_date is not None:
        params["nonce-date"] = nonce_date
    assert forbidden(sent("reply", params)) == "zoomconnect callback without a readable nonce-date"


def test_a_stale_nonce_date_is_rejected() -> None:
    assert reply_of(parse(sent("reply", REPLY), now=SIGNED_AT + MAX_AGE))
    assert "stale" in forbidden(sent("reply", REPLY), now=SIGNED_AT + MAX_AGE + 1)


def test_a_nonce_date_beyond_the_skew_is_rejected() -> None:
    assert reply_of(parse(sent("reply", REPLY), now=SIGNED_AT - 60))
    assert "future" in forbidden(sent("reply", REPLY), now=SIGNED_AT - 61)


def test_the_skew_and_max_age_are_the_callers() -> None:
    request = sent("delivery", DELIVERY)
    assert parse_callback(request, "delivery", (SECRET,), SIGNED_AT - 120, UTC, MAX_AGE, skew=120).nonce
    with pytest.raises(WebhookRejected):
        parse_callback(request, "delivery", (SECRET,), SIGNED_AT - 121, UTC, MAX_AGE, skew=120)
    assert parse_callback(request, "delivery", (SECRET,), SIGNED_AT + 10, UTC, 10).nonce
    with pytest.raises(WebhookRejected):
        parse_callback(request, "delivery", (SECRET,), SIGNED_AT + 11, UTC, 10)


def test_the_vendors_16_digit_nonce_date_is_read_to_the_second() -> None:
    params = {**REPLY, "nonce-date": "2024011512000099"}
    assert reply_of(parse(sent("reply", params), now=SIGNED_AT + MAX_AGE)).received_at == SIGNED_AT
    assert "stale" in forbidden(sent("reply", params), now=SIGNED_AT + MAX_AGE + 1)


def test_a_value_sent_twice_differently_is_rejected() -> None:
    query, _, _ = zoom_callback("reply", REPLY, secret=SECRET)
    assert "twice" in forbidden(inbound(query + b"&from=%2B79990000000"))
    assert "twice" in forbidden(inbound(query, b"from=%2B79990000000", FORM))
    # The same value twice (query and body alike) is one parameter.
    assert reply_of(parse(inbound(query, query, FORM))).phone == "+27725551234"


def test_parameters_that_are_not_utf8_are_rejected() -> None:
    params = {**REPLY, "message": "\xff"}
    query = urlencode({**params, "checksum": sign(params, SECRET)}, encoding="latin-1").encode()
    assert "UTF-8" in forbidden(inbound(query))
    assert reply_of(parse(inbound(urlencode({**params, "checksum": sign(params, SECRET)}).encode()))).text == "\xff"


def test_too_many_parameters_are_rejected() -> None:
    params = {**REPLY, **{f"x{n}": "1" for n in range(100)}}
    assert "more than 100" in forbidden(sent("reply", params))
    assert reply_of(parse(sent("reply", {**REPLY, **{f"x{n}": "1" for n in range(80)}})))


def test_an_unknown_kind_is_404() -> None:
    with pytest.raises(NotFound):
        parse(sent("reply", REPLY), "sms")  # type: ignore[arg-type]


def test_an_empty_secret_is_a_configuration_error() -> None:
    with pytest.raises(ValueError, match="secret is empty"):
        parse(sent("reply", REPLY, secret=""), secret="")


def test_any_listed_secret_verifies_during_a_rotation() -> None:
    signed_with_old = sent("reply", REPLY)
    assert parse_callback(signed_with_old, "reply", ("rotated-in", SECRET), SIGNED_AT, UTC, MAX_AGE).events
    with pytest.raises(WebhookRejected):
        parse_callback(signed_with_old, "reply", ("rotated-in",), SIGNED_AT, UTC, MAX_AGE)


# --- where the parameters arrive ------------------------------------------------------------------------------------


def test_parameters_in_the_query_string() -> None:
    query, body, content_type = zoom_callback("reply", REPLY, secret=SECRET)
    assert (query != b"", body, content_type) == (True, b"", "")
    assert reply_of(parse(inbound(query))).raw == {**REPLY, "checksum": sign(REPLY, SECRET)}


@pytest.mark.parametrize(
    "content_type", [FORM, "application/x-www-form-urlencoded; charset=UTF-8", "Application/X-WWW-Form-Urlencoded", ""]
)
def test_parameters_in_a_form_body(content_type: str) -> None:
    query, body, form = zoom_callback("reply", REPLY, secret=SECRET, in_query=False)
    assert (query, body != b"", form) == (b"", True, FORM)
    assert reply_of(parse(inbound(body=body, content_type=content_type))).raw == {
        **REPLY,
        "checksum": sign(REPLY, SECRET),
    }


def test_a_body_that_is_not_a_form_is_not_read() -> None:
    _, body, _ = zoom_callback("reply", REPLY, secret=SECRET, in_query=False)
    assert forbidden(inbound(body=body, content_type="application/json")) == "zoomconnect callback without a checksum"


@pytest.mark.parametrize("checksum_in_query", [True, False])
def test_parameters_split_between_query_and_body(checksum_in_query: bool) -> None:
    _, body, _ = zoom_callback("reply", REPLY, secret=SECRET, in_query=False)
    pairs = _pairs(body)
    in_query = [pair for pair in pairs if (pair[0] == "checksum") == checksum_in_query or pair[0] == "from"]
    in_body = [pair for pair in pairs if pair not in in_query]
    assert in_query and in_body
    request = inbound(urlencode(in_query).encode(), urlencode(in_body).encode(), FORM)
    reply = reply_of(parse(request))
    assert (reply.phone, reply.text) == ("+27725551234", "My code is 123456")
    # Either half alone does not verify.
    assert forbidden(inbound(urlencode(in_query).encode()))
    assert forbidden(inbound(body=urlencode(in_body).encode(), content_type=FORM))


def test_the_emulator_sends_the_vendors_order() -> None:
    query, _, _ = zoom_callback("delivery", DELIVERY, secret=SECRET)
    assert [key for key, _ in _pairs(query)] == ["nonce", "status", "messageId", "checksum", "nonce-date"]


def test_a_blank_optional_parameter_may_be_left_out_of_the_checksum() -> None:
    # "campaign and dataField are included only when not null": a null that arrives as an empty parameter.
    query = urlencode({**REPLY, "checksum": sign(REPLY, SECRET), "campaign": ""}).encode()
    assert reply_of(parse(inbound(query))).raw["campaign"] == ""
    # ... and when the empty one was signed, that verifies too.
    assert reply_of(parse(sent("reply", {**REPLY, "campaign": ""})))
    # Only an empty optional one: a value, or an empty required parameter, was not signed.
    assert forbidden(inbound(urlencode({**REPLY, "checksum": sign(REPLY, SECRET), "campaign": "x"}).encode()))
    assert forbidden(inbound(urlencode({**REPLY, "checksum": sign(REPLY, SECRET), "status": ""}).encode()))


# --- time zones -----------------------------------------------------------------------------------------------------


def test_the_nonce_date_is_read_in_the_given_time_zone() -> None:
    local = {**REPLY, "nonce-date": "20240115140000"}  # 14:00 in Johannesburg is 12:00 UTC
    reply = reply_of(parse(sent("reply", local), now=SIGNED_AT, tz=JOHANNESBURG))
    assert reply.received_at == SIGNED_AT
    # Read as UTC the same callback is two hours ahead...
    assert "future" in forbidden(sent("reply", local), now=SIGNED_AT, tz=UTC)
    # ... and a UTC nonce-date read in Johannesburg is two hours old.
    assert "stale" in forbidden(sent("reply", REPLY), now=SIGNED_AT, tz=JOHANNESBURG)


def test_the_freshness_window_moves_with_the_time_zone() -> None:
    local = {**REPLY, "nonce-date": "20240115140000"}
    assert reply_of(parse(sent("reply", local), now=SIGNED_AT + MAX_AGE, tz=JOHANNESBURG))
    assert "stale" in forbidden(sent("reply", local), now=SIGNED_AT + MAX_AGE + 1, tz=JOHANNESBURG)
    assert reply_of(parse(sent("reply", local), now=SIGNED_AT - 60, tz=JOHANNESBURG))
    assert "future" in forbidden(sent("reply", local), now=SIGNED_AT - 61, tz=JOHANNESBURG)


# --- mapping --------------------------------------------------------------------------------------------------------


def test_a_reply_maps_to_sms_received() -> None:
    webhook = parse(sent("reply", REPLY))
    assert webhook.nonce == REPLY["nonce"]
    assert webhook.events == [
        SmsReceived(
            phone="+27725551234",
            text="My code is 123456",
            received_at=SIGNED_AT,
            provider="zoomconnect",
            verification_id="abcd0123456789abcdef01234567",
            reply_to="40124213",
            raw={**REPLY, "checksum": sign(REPLY, SECRET)},
        )
    ]


def test_a_reply_without_data_field_or_replied_to_id() -> None:
    params = {key: value for key, value in REPLY.items() if key not in ("dataField", "repliedToMessageId")}
    reply = reply_of(parse(sent("reply", {**params, "from": "27725551234"})))
    assert (reply.phone, reply.verification_id, reply.reply_to) == ("+27725551234", "", "")


def test_a_reply_keeps_its_text_as_sent() -> None:
    reply = reply_of(parse(sent("reply", {**REPLY, "message": " Код: 123 456 & 7=8 + 9 "})))
    assert reply.text == " Код: 123 456 & 7=8 + 9 "


@pytest.mark.parametrize("missing", ["from", "message"])
def test_a_verified_reply_without_what_it_needs_has_no_events(missing: str) -> None:
    params = {key: value for key, value in REPLY.items() if key != missing}
    assert parse(sent("reply", params)) == Webhook([], REPLY["nonce"])
    assert parse(sent("reply", {**params, missing: "+27725551234"})).events


@pytest.mark.parametrize(
    ("raw_status", "status"),
    [
        ("DELIVERED", "delivered"),
        ("FAILED", "failed"),
        ("FAILED_REFUNDED", "failed"),
        ("FAILED_OPTOUT", "failed"),
        ("SENT", "sent"),
        ("SCHEDULED", "sent"),
        ("UNKNOWN", "sent"),
        ("SOMETHING_NEW", "sent"),
        ("delivered", "delivered"),
        ("Failed_OptOut", "failed"),
        ("failed", "failed"),
    ],
)
def test_a_delivery_report_maps_every_status(raw_status: str, status: str) -> None:
    params = {**DELIVERY, "status": raw_status}
    webhook = parse(sent("delivery", params), "delivery")
    assert webhook == Webhook(
        [
            DeliveryReport(
                provider="zoomconnect",
                message_id="40124213",
                status=status,
                raw_status=raw_status,
                verification_id="",
                raw={**params, "checksum": sign(params, SECRET)},
            )
        ],
        DELIVERY["nonce"],
    )


def test_a_delivery_report_with_our_data_field() -> None:
    report = report_of(parse(sent("delivery", {**DELIVERY, "dataField": "abcd0123"}), "delivery"))
    assert (report.verification_id, report.message_id) == ("abcd0123", "40124213")


@pytest.mark.parametrize("missing", ["messageId", "status"])
def test_a_verified_delivery_report_without_what_it_needs_has_no_events(missing: str) -> None:
    params = {key: value for key, value in DELIVERY.items() if key != missing}
    assert parse(sent("delivery", params), "delivery") == Webhook([], DELIVERY["nonce"])
    assert parse(sent("delivery", {**params, missing: " "}), "delivery") == Webhook([], DELIVERY["nonce"])
    assert parse(sent("delivery", {**params, missing: "DELIVERED"}), "delivery").events


def test_a_reply_sent_to_the_delivery_url_is_no_report() -> None:
    # It has a messageId (the inbound message's), but no status: nothing to report.
    assert parse(sent("delivery", REPLY), "delivery") == Webhook([], REPLY["nonce"])


# --- over the wire --------------------------------------------------------------------------------------------------


class Receiver(Emulator):
    """Our side of the callback: hands each request to :func:`parse_callback` and answers as the app would."""

    def __init__(self) -> None:
        super().__init__()
        self.webhooks: list[Webhook] = []

    def answer(self, request: Request, seen: Seen) -> Response:
        kind: Kind = "delivery" if request.path.endswith("/delivery") else "reply"
        arrived = Inbound(request.method, request.query_string, seen.body, request.mimetype, dict(request.headers))
        try:
            self.webhooks.append(parse_callback(arrived, kind, (SECRET,), SIGNED_AT, UTC, MAX_AGE))
        except WebhookRejected as err:
            return Response(err.detail, err.status)
        return Response("OK", 200)


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    receiver = Receiver()
    receiver.start()
    yield receiver
    receiver.stop()


@pytest.mark.parametrize("in_query", [True, False])
def test_post_callback_reaches_the_parser(receiver: Receiver, in_query: bool) -> None:
    response = post_callback(receiver.url + "zoomconnect/reply", "reply", REPLY, secret=SECRET, in_query=in_query)
    assert response.status_code == 200
    assert reply_of(receiver.webhooks[-1]).raw == {**REPLY, "checksum": sign(REPLY, SECRET)}
    assert bool(receiver.last.query) is in_query and bool(receiver.last.form) is not in_query
    response = post_callback(
        receiver.url + "zoomconnect/delivery?x=1", "delivery", DELIVERY, secret=SECRET, in_query=in_query
    )
    assert response.status_code == 403  # "x" was not signed
    assert receiver.last.method == "POST"


def test_post_callback_with_the_wrong_secret_is_refused(receiver: Receiver) -> None:
    response = post_callback(receiver.url + "zoomconnect/delivery", "delivery", DELIVERY, secret="wrong")
    assert (response.status_code, response.text) == (403, "zoomconnect callback checksum does not match")
    assert post_callback(receiver.url + "zoomconnect/delivery", "delivery", DELIVERY, secret=SECRET).ok
    assert report_of(receiver.webhooks[-1]).status == "delivered"


def _pairs(encoded: bytes) -> list[tuple[str, str]]:
    return parse_qsl(encoded.decode(), keep_blank_values=True)
