"""Sandbox mode's developer endpoints: read sent codes, play the person's call or SMS reply."""

from __future__ import annotations

from typing import Any

from flask.testing import FlaskClient

from tests.conftest import AUTH, PHONE, MovableClock, check, last_code, start
from verify.store import Batch


def messages_to(client: FlaskClient, phone: str = "+7 999 123-45-67") -> list[dict[str, Any]]:
    messages: list[dict[str, Any]] = client.get("/sandbox/messages", query_string={"phone": phone}).get_json()[
        "messages"
    ]
    return messages


def test_messages_newest_first(client: FlaskClient, clock: MovableClock) -> None:
    first = start(client).get_json()["id"]
    clock.advance(30)
    client.delete(f"/v1/verifications/{first}", headers=AUTH)
    second = start(client).get_json()["id"]
    messages = messages_to(client)
    assert [set(m) for m in messages] == [
        {"to", "text", "code", "sent_at", "channel", "verification_id", "current"}
    ] * 2
    assert messages[0]["sent_at"] > messages[1]["sent_at"]
    assert all(m["to"] == PHONE and m["code"] in m["text"] and m["channel"] == "sms" for m in messages)
    # Each is the newest of its own verification.
    assert [(m["verification_id"], m["current"]) for m in messages] == [(second, True), (first, True)]


def test_a_resend_supersedes_the_code_before(client: FlaskClient, clock: MovableClock) -> None:
    vid = start(client).get_json()["id"]
    clock.advance(61)
    assert client.post(f"/v1/verifications/{vid}/resend", headers=AUTH, json={}).status_code == 200
    clock.advance(61)
    assert client.post(f"/v1/verifications/{vid}/resend", headers=AUTH, json={}).status_code == 200
    messages = messages_to(client)
    assert [(m["verification_id"], m["current"]) for m in messages] == [(vid, True), (vid, False), (vid, False)]
    # The current one holds the code that works; a superseded one's no longer does.
    wrong = client.post(f"/v1/verifications/{vid}/check", headers=AUTH, json={"code": messages[1]["code"]})
    assert wrong.status_code == 422
    assert check(client, vid, messages[0]["code"]).status_code == 200


def test_a_fallback_step_keeps_the_message_before_it_current(client: FlaskClient, clock: MovableClock) -> None:
    """A fallback step sends the same code again: the SMS before the spoken one still holds the code that works."""
    vid = start(client, channels=[{"channel": "sms", "wait": 5}, "voice"]).get_json()["id"]
    service = client.application.extensions["verify"]
    service.events.collect()
    clock.advance(5)
    assert service.run_fallback() == 1
    messages = messages_to(client)
    assert [(m["channel"], m["current"]) for m in messages] == [("voice", True), ("sms", True)]
    assert messages[0]["code"] == messages[1]["code"]
    assert check(client, vid, messages[1]["code"]).status_code == 200


def test_messages_kept_before_they_named_their_verification(client: FlaskClient) -> None:
    # What the outbox held before this release: no verification id. The newest of those is taken as current.
    store = client.application.extensions["verify"].store
    for code in ("111111", "222222"):
        store.run(Batch.outbox_push, PHONE, {"text": code, "code": code, "sent_at": "2026-12-07T12:00:00Z"})
    messages = messages_to(client)
    assert [(m["code"], m["current"], "verification_id" in m) for m in messages] == [
        ("222222", True, False),
        ("111111", False, False),
    ]


def test_messages_needs_a_valid_phone(client: FlaskClient) -> None:
    assert client.get("/sandbox/messages").get_json()["field"] == "phone"
    assert client.get("/sandbox/messages", query_string={"phone": "123"}).status_code == 400


def test_a_call_approves_the_pending_call_verification(client: FlaskClient) -> None:
    vid = start(client, channel="call").get_json()["id"]
    called = client.post("/sandbox/calls", json={"phone": "+7 (999) 123-45-67"})
    assert called.status_code == 200
    assert called.get_json()["id"] == vid and called.get_json()["completed_via"] == "call"
    polled = client.get(f"/v1/verifications/{vid}", headers=AUTH).get_json()
    assert polled["status"] == "approved" and polled["token"] == called.get_json()["token"]
    again = client.post("/sandbox/calls", json={"phone": PHONE})
    assert again.status_code == 404 and again.mimetype == "application/problem+json"


def test_a_call_without_a_pending_call_verification_is_404(client: FlaskClient) -> None:
    start(client)  # sms, not call
    assert client.post("/sandbox/calls", json={"phone": PHONE}).status_code == 404
    assert client.post("/sandbox/calls", json={}).get_json()["field"] == "phone"


def test_a_reply_with_the_code_approves(client: FlaskClient) -> None:
    vid = start(client).get_json()["id"]
    code = last_code(client)
    miss = client.post("/sandbox/replies", json={"phone": PHONE, "text": "what is this?"})
    assert miss.get_json() == {"approved": False, "verification": None}
    hit = client.post("/sandbox/replies", json={"phone": PHONE, "text": f"Code: {code}"}).get_json()
    assert hit["approved"] is True and hit["verification"]["id"] == vid
    assert hit["verification"]["completed_via"] == "sms_reply"
    polled = client.get(f"/v1/verifications/{vid}", headers=AUTH).get_json()
    assert polled["status"] == "approved" and polled["completed_via"] == "sms_reply"
    assert client.post("/sandbox/replies", json={"phone": PHONE, "text": 5}).get_json()["field"] == "text"
