"""D7 Networks callbacks: the legacy Jasmin DLR, the v1 report webhook and the path token.

Their wire format: docs/gateways/d7.md §4, §7 and §8.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator

import pytest
from werkzeug.wrappers import Request, Response

from tests.providers.d7_emulator import (
    DLR_HEADERS,
    FORM,
    dlr_callback,
    dlr_fields,
    post_dlr,
    post_report,
    report_callback,
    report_fields,
)
from tests.providers.emulator import Emulator, Seen
from verify.errors import NotFound
from verify.providers.base import DeliveryReport, Event, Inbound
from verify.providers.d7_webhooks import LEGACY_ACK, check_token, parse_dlr, parse_report

MESSAGE_ID = "c723d42a-c3ee-452c-940b-3d8e8b944868"  # docs/gateways/d7.md §9
REQUEST_ID = "d9835609-a4e0-10ea-a26a-eeafbe700fef"  # docs/gateways/d7.md §9
TOKEN = "hook-token-123"

# The examples of docs/gateways/d7.md §9, byte for byte.
EXAMPLE_DLR = (
    b"id=c723d42a-c3ee-452c-940b-3d8e8b944868&level=2&message_status=DELIVRD&connector=smppc01"
    b"&id_smsc=2567&sub=001&dlvrd=001&subdate=2411211005&donedate=2411211006&err=000&text=Hello"
)
EXAMPLE_REPORT = (
    b"request_id=d9835609-a4e0-10ea-a26a-eeafbe700fef&msg_id=7053a678-75fe-11ed-9e31-0242ac14001c"
    b"&recipient=%2B971501234567&originator=SignOTP&status=delivered"
)

Parser = Callable[[Inbound], list[Event]]


def inbound(
    method: str,
    query: bytes,
    body: bytes,
    content_type: str,
    headers: dict[str, str] | None = None,
) -> Inbound:
    return Inbound(method, query, body, content_type, headers or {})


def dlr(fields: dict[str, str], method: str = "POST") -> list[Event]:
    return parse_dlr(Inbound(*dlr_callback(fields, method=method), headers=DLR_HEADERS))


def report(fields: dict[str, str], *, as_json: bool = False) -> list[Event]:
    return parse_report(Inbound(*report_callback(fields, as_json=as_json)))


def only(events: list[Event]) -> DeliveryReport:
    assert len(events) == 1
    event = events[0]
    assert isinstance(event, DeliveryReport)
    return event


# ---- legacy DLR (docs/gateways/d7.md §4) ----


def test_the_documented_dlr_is_a_delivered_report_keeping_every_field() -> None:
    events = parse_dlr(inbound("POST", b"", EXAMPLE_DLR, FORM, DLR_HEADERS))
    assert events == [
        DeliveryReport(
            provider="d7",
            message_id=MESSAGE_ID,
            status="delivered",
            raw_status="2:DELIVRD",
            raw={
                "id": MESSAGE_ID,
                "level": "2",
                "message_status": "DELIVRD",
                "connector": "smppc01",
                "id_smsc": "2567",
                "sub": "001",
                "dlvrd": "001",
                "subdate": "2411211005",
                "donedate": "2411211006",
                "err": "000",
                "text": "Hello",
            },
        )
    ]


def test_the_acknowledgement_is_exactly_what_jasmin_expects() -> None:
    assert LEGACY_ACK == "ACK/Jasmin"


@pytest.mark.parametrize(
    ("message_status", "status"),
    [
        ("ESME_ROK", "sent"),
        ("ESME_RINVDSTADR", "failed"),
        ("ESME_RINVNUMDESTS", "failed"),
        ("ESME_RTHROTTLED", "failed"),
        ("ESME_RSUBMITFAIL", "failed"),
        ("ESME_RX_T_APPN", "failed"),
        ("esme_rok", "sent"),  # lenient about case
    ],
)
def test_level_1_maps_the_submit_result(message_status: str, status: str) -> None:
    event = only(dlr(dlr_fields(MESSAGE_ID, message_status, level=1)))
    assert (event.message_id, event.status, event.raw_status) == (MESSAGE_ID, status, f"1:{message_status}")
    assert event.raw["message_status"] == message_status


@pytest.mark.parametrize(
    ("message_status", "status"),
    [
        ("DELIVRD", "delivered"),
        ("ACCEPTD", "sent"),
        ("EXPIRED", "failed"),
        ("DELETED", "failed"),
        ("UNDELIV", "failed"),
        ("REJECTD", "failed"),
        ("UNKNOWN", "sent"),  # not known to be final
        ("ENROUTE", "sent"),  # not in Jasmin's list: not final either
        ("delivrd", "delivered"),
    ],
)
@pytest.mark.parametrize("level", [2, 3])  # current Jasmin sends 2 on receipts, older versions the requested 3
def test_receipts_map_the_terminal_status(message_status: str, status: str, level: int) -> None:
    event = only(dlr(dlr_fields(MESSAGE_ID, message_status, level=level)))
    assert (event.message_id, event.status, event.raw_status) == (MESSAGE_ID, status, f"{level}:{message_status}")
    assert event.raw["id_smsc"] == "2567"


@pytest.mark.parametrize("method", ["GET", "POST"])
def test_get_and_post_dlrs_read_the_same(method: str) -> None:
    method_, query, body, _ = dlr_callback(dlr_fields(MESSAGE_ID, "UNDELIV"), method=method)
    assert method_ == method
    assert (query, body) == ((query, b"") if method == "GET" else (b"", body))  # the fields travel in one place
    event = only(parse_dlr(inbound(method, query, body, FORM, DLR_HEADERS)))
    assert (event.message_id, event.status, event.raw_status) == (MESSAGE_ID, "failed", "2:UNDELIV")


def test_a_post_dlr_reads_the_query_too_and_the_body_wins() -> None:
    query = b"id=c723d42a-c3ee-452c-940b-3d8e8b944868&level=2&message_status=ACCEPTD&note=from-query"
    body = b"level=2&message_status=DELIVRD"
    event = only(parse_dlr(inbound("POST", query, body, FORM)))
    assert (event.message_id, event.status, event.raw_status) == (MESSAGE_ID, "delivered", "2:DELIVRD")
    assert event.raw["note"] == "from-query"


def test_dlr_values_are_url_decoded_as_utf8() -> None:
    fields = {**dlr_fields(MESSAGE_ID, "DELIVRD"), "text": "Код 123 + ok"}
    assert only(dlr(fields)).raw["text"] == "Код 123 + ok"


@pytest.mark.parametrize(
    "body",
    [
        b"level=2&message_status=DELIVRD",  # no id
        b"id=&level=2&message_status=DELIVRD",  # empty id
        b"id=%20%20&level=1&message_status=ESME_ROK",  # blank id
        b"id=c723d42a-c3ee-452c-940b-3d8e8b944868&level=2",  # no status: says nothing
        b"",
        b"&&&=",
        b"\xff\xfe\x00garbage",
        b"%zz%",
    ],
)
def test_a_dlr_without_id_or_status_gives_nothing(body: bytes) -> None:
    assert parse_dlr(inbound("POST", b"", body, FORM)) == []


# ---- v1 report webhook (docs/gateways/d7.md §7) ----


def test_the_documented_report_is_a_delivered_report_named_by_request_id() -> None:
    events = parse_report(inbound("POST", b"", EXAMPLE_REPORT, FORM))
    assert events == [
        DeliveryReport(
            provider="d7",
            message_id=REQUEST_ID,
            status="delivered",
            raw_status="delivered",
            raw={
                "request_id": REQUEST_ID,
                "msg_id": "7053a678-75fe-11ed-9e31-0242ac14001c",
                "recipient": "+971501234567",
                "originator": "SignOTP",
                "status": "delivered",
            },
        )
    ]


def test_the_documented_report_as_the_json_the_vendor_page_prints() -> None:
    fields = dict(item.split("=") for item in EXAMPLE_REPORT.decode().replace("%2B", "+").split("&"))
    event = only(parse_report(inbound("POST", b"", json.dumps(fields).encode(), "application/json")))
    assert (event.message_id, event.status, event.raw_status, event.raw) == (
        REQUEST_ID,
        "delivered",
        "delivered",
        fields,
    )


@pytest.mark.parametrize(
    ("raw_status", "status"),
    [
        ("delivered", "delivered"),
        ("sent", "sent"),
        ("scheduled", "sent"),
        ("accepted", "sent"),
        ("un_delivered", "failed"),
        ("undelivered", "failed"),
        ("not_reachable", "failed"),
        ("spam_content", "failed"),
        ("insufficient_credit", "failed"),
        ("failed", "failed"),
        ("rejected", "failed"),
        ("expired", "failed"),
        ("DELIVERED", "delivered"),
        ("Un_Delivered", "failed"),
        ("UNDELIVERED", "failed"),
        ("un-delivered", "failed"),
        ("Not Reachable", "failed"),
        (" delivered ", "delivered"),
        ("queued", "sent"),  # unknown: not known to be final
    ],
)
@pytest.mark.parametrize("as_json", [False, True], ids=["form", "json"])
def test_report_statuses(raw_status: str, status: str, as_json: bool) -> None:
    event = only(report(report_fields(REQUEST_ID, raw_status), as_json=as_json))
    assert (event.provider, event.message_id, event.status) == ("d7", REQUEST_ID, status)
    assert event.raw_status == raw_status.strip()
    assert event.raw["status"] == raw_status  # the payload as received


@pytest.mark.parametrize("content_type", ["text/plain", FORM, "", "application/octet-stream"])
def test_a_json_body_is_read_whatever_its_declared_type(content_type: str) -> None:
    body = json.dumps(report_fields(REQUEST_ID, "un_delivered")).encode()
    event = only(parse_report(inbound("POST", b"", body, content_type)))
    assert (event.message_id, event.status) == (REQUEST_ID, "failed")


def test_json_content_type_parameters_and_vendor_types_are_json() -> None:
    body = b'  {"request_id": "r-1", "status": "sent"}'
    for content_type in ("application/json; charset=utf-8", "application/vnd.d7+json"):
        assert only(parse_report(inbound("POST", b"", body, content_type))).message_id == "r-1"


def test_json_numbers_are_read_as_text_and_a_list_gives_one_report_each() -> None:
    body = json.dumps(
        [
            {"request_id": 12345, "status": "delivered"},
            {"request_id": "r-2", "status": "expired"},
            "not an object",
            {"status": "sent"},
        ]
    ).encode()
    events = parse_report(inbound("POST", b"", body, "application/json"))
    assert [(e.message_id, e.status) for e in events if isinstance(e, DeliveryReport)] == [
        ("12345", "delivered"),
        ("r-2", "failed"),
    ]


def test_a_multipart_form_report_is_read() -> None:
    body = (
        b'--Xy9z\r\nContent-Disposition: form-data; name="request_id"\r\n\r\n'
        + REQUEST_ID.encode()
        + b'\r\n--Xy9z\r\nContent-Disposition: form-data; name="recipient"\r\n\r\n+971501234567'
        b'\r\n--Xy9z\r\nContent-Disposition: form-data; name="status"\r\n\r\nundelivered\r\n--Xy9z--\r\n'
    )
    for content_type in ("multipart/form-data", ""):  # the boundary parameter is not needed
        event = only(parse_report(inbound("POST", b"", body, content_type)))
        assert (event.message_id, event.status, event.raw_status) == (REQUEST_ID, "failed", "undelivered")
        assert event.raw["recipient"] == "+971501234567"


@pytest.mark.parametrize(
    ("body", "content_type"),
    [
        (b"msg_id=m-1&status=delivered", FORM),  # no request_id
        (b"request_id=&status=delivered", FORM),
        (b"request_id=r-1", FORM),  # no status
        (b'{"msg_id": "m-1", "status": "delivered"}', "application/json"),
        (b'{"request_id": {"id": "r-1"}, "status": "delivered"}', "application/json"),
        (b'{"request_id": true, "status": "delivered"}', "application/json"),
        (b'{"request_id": "r-1", "status": null}', "application/json"),
        (b'{"request_id": "r-1", "status": "delivered"', "application/json"),  # cut short
        (b"request_id=r-1&status=delivered", "application/json"),  # declared JSON, is not
        (b"null", "application/json"),
        (b'"request_id"', "application/json"),
        (b"[1, 2, 3]", "application/json"),
        (b"[]", "application/json"),
        (b"{" * 5000 + b"}" * 5000, "application/json"),
        (b"[" * 100_000, "application/json"),  # deeper than the recursion limit
        (b"\xff\xfe\xfd", "application/json"),
        (b"\xff\xfe\xfd", FORM),
        (b'--\x00bad boundary"\r\n\r\n', "multipart/form-data"),
        (b"--abc\r\nno headers at all", "multipart/form-data"),
        (b"--abc", ""),
        (b"", FORM),
    ],
)
@pytest.mark.deep_nesting
def test_a_malformed_report_gives_nothing(body: bytes, content_type: str) -> None:
    assert parse_report(inbound("POST", b"", body, content_type)) == []


def _bodies() -> Iterator[tuple[bytes, str]]:
    multipart = (
        b'--b0\r\nContent-Disposition: form-data; name="request_id"\r\n\r\nr-1\r\n'
        b'--b0\r\nContent-Disposition: form-data; name="status"\r\n\r\nsent\r\n--b0--\r\n'
    )
    for whole, content_type in (
        (EXAMPLE_DLR, FORM),
        (EXAMPLE_REPORT, FORM),
        (multipart, "multipart/form-data"),
        (json.dumps(report_fields(REQUEST_ID, "sent")).encode(), "application/json"),
    ):
        for end in range(len(whole) + 1):
            yield whole[:end], content_type
            yield whole[:end] + b"\xc3", content_type  # a cut multi-byte character


@pytest.mark.parametrize("parse", [parse_dlr, parse_report], ids=["dlr", "report"])
def test_no_truncation_of_a_valid_body_raises(parse: Parser) -> None:
    results = [parse(inbound("POST", body, body, content_type)) for body, content_type in _bodies()]
    assert all(isinstance(events, list) for events in results)
    assert any(results)  # the whole bodies still parse
    assert not all(results)  # and the cut ones mostly do not


# ---- the path token (docs/gateways/d7.md §8) ----


def test_the_right_token_passes() -> None:
    check_token(TOKEN, (TOKEN,))  # raises if refused


def test_any_listed_token_passes_during_a_rotation() -> None:
    check_token(TOKEN, ("the-new-token", TOKEN))
    check_token("the-new-token", ("the-new-token", TOKEN))
    with pytest.raises(NotFound):
        check_token(TOKEN, ("the-new-token",))


@pytest.mark.parametrize(
    "given",
    [
        "wrong-token-456",
        "",
        "hook-token-12",  # a prefix
        "h",
        "hook-token-1234",  # longer
        "HOOK-TOKEN-123",
        " hook-token-123",
        "hook-token-123\x00",
        "ключ",
        "\udc80",  # a lone surrogate, as a badly decoded path may carry
    ],
)
def test_any_other_token_is_an_unknown_webhook(given: str) -> None:
    with pytest.raises(NotFound) as caught:
        check_token(given, (TOKEN,))
    assert (caught.value.status, caught.value.detail) == (404, "unknown webhook")


@pytest.mark.parametrize("given", ["", "anything"])
def test_without_a_configured_token_every_callback_is_unknown(given: str) -> None:
    with pytest.raises(NotFound) as caught:
        check_token(given, ())
    assert caught.value.status == 404
    with pytest.raises(NotFound):
        check_token(given, ("",))


# ---- the emulator's callback helpers, over HTTP ----


class Receiver(Emulator):
    """Our side of a callback: records each request as an :class:`Inbound` and answers ``reply``."""

    def __init__(self, reply: str) -> None:
        super().__init__()
        self.reply = reply
        self.inbound: list[Inbound] = []

    def answer(self, request: Request, seen: Seen) -> Response:
        self.inbound.append(
            Inbound(request.method, request.query_string, seen.body, request.mimetype, dict(request.headers.items()))
        )
        return Response(self.reply, mimetype="text/plain")


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    server = Receiver(LEGACY_ACK)
    server.start()
    yield server
    server.stop()


@pytest.mark.parametrize("method", ["POST", "GET"])
def test_post_dlr_throws_like_jasmin(receiver: Receiver, method: str) -> None:
    response = post_dlr(receiver.url + "webhooks/d7/" + TOKEN, dlr_fields(MESSAGE_ID, "DELIVRD"), method=method)
    assert (response.status_code, response.text) == (200, "ACK/Jasmin")
    seen, got = receiver.last, receiver.inbound[-1]
    assert (seen.method, seen.path) == (method, "/webhooks/d7/" + TOKEN)
    assert seen.headers["User-Agent"] == "Jasmin gateway/1.0 DLRThrower"
    assert seen.headers["Content-Type"] == FORM
    assert (bool(seen.query), bool(seen.body)) == ((True, False) if method == "GET" else (False, True))
    event = only(parse_dlr(got))
    assert (event.message_id, event.status, event.raw_status) == (MESSAGE_ID, "delivered", "2:DELIVRD")


@pytest.mark.parametrize("as_json", [False, True], ids=["form", "json"])
def test_post_report_posts_form_or_json(receiver: Receiver, as_json: bool) -> None:
    response = post_report(
        receiver.url + "webhooks/d7/x/report", report_fields(REQUEST_ID, "un_delivered"), as_json=as_json
    )
    assert response.status_code == 200
    seen, got = receiver.last, receiver.inbound[-1]
    assert (seen.method, seen.path, seen.query) == ("POST", "/webhooks/d7/x/report", {})
    assert got.content_type == ("application/json" if as_json else FORM)
    assert seen.form.get("status") == (None if as_json else "un_delivered")
    event = only(parse_report(got))
    assert (event.message_id, event.status, event.raw_status) == (REQUEST_ID, "failed", "un_delivered")
