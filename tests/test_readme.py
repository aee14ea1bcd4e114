"""The README's code examples, run as written: the offline token check and the events receiver."""

from __future__ import annotations

import json
import re
import time
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import MovableClock
from verify.events import signature
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
