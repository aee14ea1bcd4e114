"""The hook gateway under the Procfile's gunicorn, on the real Redis, with a receiver written in the test
(tests/providers/hook_emulator.py: it checks our signature as docs/gateways/hook.md §2 tells a receiver to).

What issue 21 §3 asks: the receiver gets signed messages (SMS and spoken); a 500 from it fails over to the next
gateway (the sandbox) and counts against its circuit breaker; a signed delivery report to the message's
``callback_url`` updates the verification's delivery; an unsigned one gets 403 and changes nothing.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from urllib.parse import urlsplit

import pytest
import requests

from tests.providers import hook_emulator
from tests.providers.hook_emulator import SECRET, HookReceiver, signed_headers
from tests.servers import Call, Server, gunicorn_server, send
from verify.embedded import EmbeddedRedis

PUBLIC_URL = "https://verify.example"
OLD_SECRET = "hook-secret-older-456789"
PHONES = iter(f"+7999123{n:04d}" for n in range(100))  # a phone each: the phone limits stay out of the way
IPS = iter(f"10.21.3.{n}" for n in range(1, 250))  # and a client IP each: so do the IP limits and the captcha


@pytest.fixture(scope="module")
def receiver() -> Iterator[HookReceiver]:
    receiver = HookReceiver(secrets=(SECRET,))
    receiver.start()
    yield receiver
    receiver.stop()


@pytest.fixture(scope="module")
def server(
    redis_server: EmbeddedRedis, receiver: HookReceiver, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Server]:
    """Sandbox mode (so the receiver may be http on loopback), the hook first in the SMS chain and the sandbox
    after it, the hook alone in the voice chain; a breaker that opens after 2 failures."""
    settings = {
        "VERIFY_SMS_PROVIDERS": "hook,sandbox",
        "VERIFY_VOICE_PROVIDERS": "hook",
        "VERIFY_HOOK_URL": receiver.url + "hook",
        "VERIFY_HOOK_SECRET": f"{SECRET},{OLD_SECRET}",
        "VERIFY_PUBLIC_URL": PUBLIC_URL,
        "VERIFY_BREAKER_FAILURES": "2",
        "VERIFY_BREAKER_COOLDOWN": "3600",
    }
    with gunicorn_server(redis_server.url, tmp_path_factory.mktemp("hook"), settings, workers=2, name="hook") as server:
        yield server


@pytest.fixture(autouse=True)
def fresh(server: Server, receiver: HookReceiver) -> None:
    server.reset()  # no verification, counter or breaker from the test before
    receiver.mode, receiver.reply = "ok", None


def start(server: Server, channel: str = "sms") -> tuple[str, dict[str, object]]:
    """Start a verification on ``channel`` for a new phone; its phone and the answer's body."""
    phone = next(PHONES)
    started = send(server, Call("POST", "/v1/verifications", {"phone": phone, "channel": channel}, next(IPS)))
    assert started.status == 201, started
    return phone, started.body


def delivery(server: Server, vid: str) -> object:
    shown = send(server, Call("GET", f"/v1/verifications/{vid}"))
    assert shown.status == 200, shown
    return shown.body["delivery"]


def report(server: Server, callback_url: str, body: bytes, headers: dict[str, str]) -> requests.Response:
    """POST a report to ``callback_url``'s path on this server (its public host, verify.example, is not this one)."""
    return requests.post(server.url(urlsplit(callback_url).path), data=body, headers=headers, timeout=10)


def test_the_receiver_gets_signed_messages(server: Server, receiver: HookReceiver) -> None:
    refused, before = receiver.refused, len(receiver.messages)
    phone, body = start(server)
    assert body["delivery"] == {"provider": "hook", "status": "sent"}
    (message,) = receiver.messages[before:]
    assert receiver.refused == refused  # the receiver checked the signature, and it held
    assert (message["id"], message["phone"], message["channel"]) == (body["id"], phone, "sms")
    assert message["code"] in message["text"] and len(message["code"]) == 6
    assert message["callback_url"] == f"{PUBLIC_URL}/webhooks/hook" and message["locale"] == body["locale"] == "en"
    assert receiver.last.headers["Verify-Signature"].startswith("t=")
    checked = send(server, Call("POST", f"/v1/verifications/{body['id']}/check", {"code": message["code"]}))
    assert checked.status == 200 and checked.body["status"] == "approved"


def test_a_spoken_code_goes_to_the_receiver_too(server: Server, receiver: HookReceiver) -> None:
    before = len(receiver.messages)
    _, body = start(server, "voice")
    (message,) = receiver.messages[before:]
    assert (body["channel"], body["delivery"]) == ("voice", {"provider": "hook", "status": "sent"})
    assert (message["id"], message["channel"]) == (body["id"], "voice")


def test_a_500_fails_over_to_the_next_gateway_and_opens_the_breaker(server: Server, receiver: HookReceiver) -> None:
    receiver.reply = (500, b'{"error": "provider down"}')  # after the receiver checked our signature
    asked = len(receiver.requests)
    for attempt in range(2):
        phone, body = start(server)
        assert body["delivery"] == {"provider": "sandbox", "status": "sent"}, attempt
        outbox = requests.get(server.url("/sandbox/messages"), params={"phone": phone}, timeout=10).json()
        assert [m["verification_id"] for m in outbox["messages"]] == [body["id"]]
        assert len(receiver.requests) == asked + attempt + 1  # the hook was tried first, each time
    # VERIFY_BREAKER_FAILURES=2: the hook is skipped now, whichever worker answers.
    for _ in range(2):
        _, body = start(server)
        assert body["delivery"] == {"provider": "sandbox", "status": "sent"}
    assert len(receiver.requests) == asked + 2


def test_a_signed_report_updates_the_delivery_and_an_unsigned_one_is_403(
    server: Server, receiver: HookReceiver
) -> None:
    before = len(receiver.messages)
    _, body = start(server)
    vid = str(body["id"])
    (message,) = receiver.messages[before:]
    message_id = f"rcv-{before + 1}"  # what the receiver answered: the id the service kept for the message
    callback = message["callback_url"]
    delivered = hook_emulator.report_body("delivered", verification_id=vid, message_id=message_id)

    unsigned = report(server, callback, delivered, {"Content-Type": "application/json"})
    assert unsigned.status_code == 403 and unsigned.headers["Content-Type"] == "application/problem+json"
    forged = report(server, callback, delivered, signed_headers("not-our-secret-0000", int(time.time()), delivered))
    assert forged.status_code == 403
    assert delivery(server, vid) == {"provider": "hook", "status": "sent"}

    signed = signed_headers(SECRET, int(time.time()), delivered)
    accepted = report(server, callback, delivered, signed)
    assert (accepted.status_code, accepted.text) == (200, "OK")
    assert delivery(server, vid) == {"provider": "hook", "status": "delivered"}
    assert report(server, callback, delivered, signed).status_code == 403  # the same signed bytes again: a replay

    # Signed with the older key of VERIFY_HOOK_SECRET (a rotation): accepted too.
    read = hook_emulator.report_body("read", verification_id=vid, message_id=message_id)
    assert report(server, callback, read, signed_headers(OLD_SECRET, int(time.time()), read)).status_code == 200
    assert delivery(server, vid) == {"provider": "hook", "status": "read"}
    assert "Traceback" not in server.tail(200)


def test_no_log_line_holds_a_secret_a_signature_a_code_or_a_token(server: Server, receiver: HookReceiver) -> None:
    """Last in this module: everything the tests above and this one sent went through the Procfile's gunicorn, whose
    whole log (every line, and every JSON line's values decoded) holds neither key of VERIFY_HOOK_SECRET, nor any
    Verify-Signature we sent or received, nor a code the receiver got, nor a proof token."""
    before = len(receiver.messages)
    _, body = start(server)
    (message,) = receiver.messages[before:]
    vid, callback = str(body["id"]), message["callback_url"]
    delivered = hook_emulator.report_body("delivered", verification_id=vid, message_id=f"rcv-{before + 1}")
    signed = signed_headers(SECRET, int(time.time()), delivered)
    assert report(server, callback, delivered, signed).status_code == 200
    forged = signed_headers("forger-secret-00000000", int(time.time()), delivered)
    assert report(server, callback, delivered, forged).status_code == 403
    checked = send(server, Call("POST", f"/v1/verifications/{vid}/check", {"code": message["code"]}))
    assert checked.status == 200
    marker = "5eed0f1a9b3c4d2e8f7a6b5c4d3e2f10"  # an X-Request-Id of the form the service keeps
    requests.get(server.url("/healthz"), headers={"X-Request-Id": marker}, timeout=10)
    deadline = time.monotonic() + 10
    while marker not in server.log.read_text(encoding="utf-8", errors="replace"):  # the workers write as they go
        assert time.monotonic() < deadline, "the last request's line never reached the log"
        time.sleep(0.05)
    text = server.log.read_text(encoding="utf-8", errors="replace")
    decoded = []
    for line in text.splitlines():
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if isinstance(record, dict):
            decoded.append(" ".join(str(value) for value in record.values()))
    searched = "\n".join([text, *decoded])
    signatures = {seen.headers.get("Verify-Signature", "") for seen in receiver.requests} | {
        signed["Verify-Signature"],
        forged["Verify-Signature"],
    }
    secrets = {
        "VERIFY_HOOK_SECRET": SECRET,
        "its older key": OLD_SECRET,
        "the forger's key": "forger-secret-00000000",
        "proof token": str(checked.body["token"]),
        **{f"signature {n}": value.rpartition("v1=")[2] for n, value in enumerate(sorted(signatures)) if value},
        **{f"code {n}": str(m["code"]) for n, m in enumerate(receiver.messages)},
    }
    assert len(secrets) > 8
    leaked = {name for name, value in secrets.items() if value in searched}
    assert not leaked, leaked
