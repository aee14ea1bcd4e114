"""Sandbox mode's developer endpoints: read sent codes, play the person's call or SMS reply."""

from __future__ import annotations

from flask.testing import FlaskClient

from tests.conftest import AUTH, PHONE, MovableClock, last_code, start


def test_messages_newest_first(client: FlaskClient, clock: MovableClock) -> None:
    start(client)
    clock.advance(30)
    start(client)
    messages = client.get("/sandbox/messages", query_string={"phone": "+7 999 123-45-67"}).get_json()["messages"]
    assert [set(m) for m in messages] == [{"to", "text", "code", "sent_at", "channel"}] * 2
    assert messages[0]["sent_at"] > messages[1]["sent_at"]
    assert all(m["to"] == PHONE and m["code"] in m["text"] and m["channel"] == "sms" for m in messages)


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
