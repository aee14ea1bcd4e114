"""The README's code examples, run as written: the offline token check, the events receiver, the backend check, and
the hook's receiver and report."""

from __future__ import annotations

import json
import re
import sys
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from types import ModuleType, SimpleNamespace
from typing import Any

import pytest
import requests

from tests.conftest import MovableClock, serving
from verify.errors import WebhookRejected
from verify.events import signature
from verify.providers.base import DeliveryReport, Http, Inbound, ProviderError, SmsMessage
from verify.providers.hook import HookProvider, HookSettings
from verify.providers.hook_webhooks import parse_report
from verify.tokens import Proof, Secrets

README = Path(__file__).resolve().parent.parent / "README.md"


def example(name: str) -> dict[str, Any]:
    """Execute the README's ```python block marked ``<!-- example: name -->``; its globals."""
    text = README.read_text(encoding="utf-8")
    found = re.search(rf"<!-- example: {name} -->\n```python\n(.*?)```", text, flags=re.DOTALL)
    assert found is not None, f"README has no example {name!r}"
    namespace: dict[str, Any] = {"__name__": f"readme_{name.replace('-', '_')}"}
    exec(compile(found.group(1), f"README.md:{name}", "exec"), namespace)  # noqa: S102 - our own README
    return namespace


def test_offline_token_check() -> None:
    readme = example("offline-token")
    proof = Proof("abcd" + "0" * 24, "+79991234567", "sms", "code", int(time.time()))
    # The README's keys: "newest-secret" signs now, "older-secret" signed before the rotation.
    now = Secrets(("newest-secret", "older-secret"), 3600, MovableClock(time.time())).sign(proof)
    before = Secrets(("older-secret",), 3600, MovableClock(time.time())).sign(proof)
    assert readme["verified_phone"](now) == readme["verified_phone"](before) == "+79991234567"
    with pytest.raises(PermissionError, match="not a proof"):
        # Not the last character: its low bits are padding, which base64 decoding may ignore.
        readme["verified_phone"](now[:-5] + ("A" if now[-5] != "A" else "B") + now[-4:])
    old = Secrets(("newest-secret",), 3600, MovableClock(0)).sign(replace_time(proof, int(time.time()) - 3601))
    with pytest.raises(PermissionError, match="expired"):
        readme["verified_phone"](old)


def replace_time(proof: Proof, verified_at: int) -> Proof:
    return Proof(proof.verification_id, proof.phone, proof.channel, proof.completed_via, verified_at)


def test_events_receiver() -> None:
    readme = example("receiver")
    readme["EVENTS_SECRET"] = "events-secret-0123456789"
    client = readme["app"].test_client()
    body = json.dumps(
        {"id": "evt_1", "type": "verification.approved", "created_at": "x", "data": {"phone": "+79991234567"}}
    ).encode()

    def post(payload: bytes, header: str) -> int:
        response = client.post(
            "/hooks/verify", data=payload, headers={"Verify-Signature": header, "Content-Type": "application/json"}
        )
        return int(response.status_code)

    good = signature("events-secret-0123456789", int(time.time()), body)
    assert post(body, good) == 204
    assert post(body, good) == 204 and readme["seen"] == {"evt_1"}  # a repeat is dropped, still acknowledged
    assert post(body.replace(b"approved", b"expired"), good) == 400
    assert post(body, signature("another-secret", int(time.time()), body)) == 400
    assert post(body, signature("events-secret-0123456789", int(time.time()) - 3600, body)) == 400
    assert post(body, "garbage") == 400


def test_backend_token_check(redis_url: str, clock: MovableClock) -> None:
    """The README's backend check, as written, against a served app: a proof token gives its phone, anything
    else gives None."""
    from tests.conftest import API_KEY, PHONE, check, last_code, make_settings, serving, start
    from verify import create_app

    app = create_app(make_settings(redis_url), clock=clock, background=False)
    client = app.test_client()
    vid = start(client).get_json()["id"]
    token = check(client, vid, last_code(client)).get_json()["token"]
    readme = example("backend-check")
    with serving(app) as url:
        readme["VERIFY_URL"], readme["API_KEY"] = url, API_KEY
        assert readme["verified_phone"](token) == PHONE
        assert readme["verified_phone"](token[:-5] + ("A" if token[-5] != "A" else "B") + token[-4:]) is None
        readme["API_KEY"] = "wrong-key-0123456789"
        assert readme["verified_phone"](token) is None


# The hook gateway's receiver and report (README "hook: any provider, through your own endpoint")

HOOK_KEY, HOOK_OLD_KEY = "hook-readme-key-0123456789", "hook-readme-old-key-456789"
TWILIO_FROM = "+15005550006"


class StandInTwilio:
    """Stands in for ``twilio.rest.Client``: what the README's receiver asks of it, in ``created``."""

    def __init__(self, created: list[tuple[str, dict[str, str]]]) -> None:
        self.messages = SimpleNamespace(create=lambda **kwargs: self._create("messages", "SM", kwargs))
        self.calls = SimpleNamespace(create=lambda **kwargs: self._create("calls", "CA", kwargs))
        self.created = created

    def _create(self, kind: str, prefix: str, kwargs: dict[str, str]) -> SimpleNamespace:
        self.created.append((kind, kwargs))
        return SimpleNamespace(sid=f"{prefix}{len(self.created)}")


@pytest.fixture
def hook_receiver(monkeypatch: pytest.MonkeyPatch) -> tuple[dict[str, Any], list[tuple[str, dict[str, str]]]]:
    """The README's receiver, its ``twilio`` SDK a stand-in; and what it asked the stand-in to send."""
    created: list[tuple[str, dict[str, str]]] = []
    rest = ModuleType("twilio.rest")
    rest.Client = lambda sid, token: StandInTwilio(created)  # type: ignore[attr-defined]
    package = ModuleType("twilio")
    package.rest = rest  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "twilio", package)
    monkeypatch.setitem(sys.modules, "twilio.rest", rest)
    for name, value in {
        "VERIFY_HOOK_SECRET": f"{HOOK_KEY},{HOOK_OLD_KEY}",
        "TWILIO_ACCOUNT_SID": "AC0123",
        "TWILIO_AUTH_TOKEN": "twilio-token",
        "TWILIO_FROM": TWILIO_FROM,
    }.items():
        monkeypatch.setenv(name, value)
    return example("hook-receiver"), created


def test_hook_receiver_sends_what_verify_posts(
    hook_receiver: tuple[dict[str, Any], list[tuple[str, dict[str, str]]]],
) -> None:
    """verify's own hook gateway, pointed at the README's receiver: SMS and voice go out through the SDK, under the
    id it answers; a rotated key works; a wrong key or an old signature is refused (401: a failed send)."""
    readme, created = hook_receiver
    message = SmsMessage("+79991234567", "Your Verify code: 123456", "123456", "abcd0123456789abcdef01234567")
    http = Http(1.0, 5.0)
    with serving(readme["app"]) as base:

        def provider(key: str, at: Callable[[], float] = time.time) -> HookProvider:
            settings = HookSettings(url=f"{base}/verify-hook", secrets=(key,))
            return HookProvider(settings, http, "https://verify.example", at)

        assert provider(HOOK_KEY).send_sms(message).message_id == "SM1"
        assert created == [("messages", {"to": message.to, "from_": TWILIO_FROM, "body": message.text})]
        spoken = replace(message, channel="voice", text="Code <1 2 3> & more")
        assert provider(HOOK_OLD_KEY).send_sms(spoken).message_id == "CA2"
        twiml = "<Response><Say>Code &lt;1 2 3&gt; &amp; more</Say></Response>"
        assert created[1] == ("calls", {"to": message.to, "from_": TWILIO_FROM, "twiml": twiml})
        for refused in (provider("not-a-key-of-the-receiver"), provider(HOOK_KEY, lambda: time.time() - 301)):
            with pytest.raises(ProviderError, match="HTTP 401"):
                refused.send_sms(message)
        unsigned = requests.post(f"{base}/verify-hook", json={"channel": "sms"}, timeout=5)
        assert unsigned.status_code == 401
    http.session.close()
    assert len(created) == 2


def test_hook_report_is_what_verify_accepts(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VERIFY_HOOK_SECRET", f"{HOOK_KEY},{HOOK_OLD_KEY}")
    readme = example("hook-report")
    posted: list[tuple[str, bytes, dict[str, str]]] = []

    def post(url: str, *, data: bytes, headers: dict[str, str], timeout: float) -> Any:
        posted.append((url, data, headers))
        return SimpleNamespace(raise_for_status=lambda: None)

    readme["requests"] = SimpleNamespace(post=post)
    readme["report"]("https://verify.example/webhooks/hook", "SM1", "undelivered")
    ((url, body, headers),) = posted
    assert url == "https://verify.example/webhooks/hook"
    inbound = Inbound("POST", b"", body, "application/json", headers)
    (event,) = parse_report(inbound, (HOOK_KEY,), time.time(), 900).events
    assert event == DeliveryReport(
        "hook", "SM1", "failed", "undelivered", raw={"message_id": "SM1", "status": "undelivered"}
    )
    with pytest.raises(WebhookRejected):  # signed with the first key: a verify that no longer lists it refuses it
        parse_report(inbound, (HOOK_OLD_KEY,), time.time(), 900)
