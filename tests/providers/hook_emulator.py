"""A customer's hook receiver, written here: what docs/gateways/hook.md §1-§4 ask of one, served under
:attr:`Emulator.url` (``VERIFY_HOOK_URL`` is ``<url>hook``).

It checks each POST as the notes tell a receiver to (§2): ``Verify-Signature`` against its own ``secrets``, computed
here independently of the module under test, and ``t`` no more than ``max_age`` seconds from its clock. A request
that fails the check is answered 401 and counted in :attr:`HookReceiver.refused`; one that passes is kept in
:attr:`HookReceiver.messages` (its JSON body) and answered by ``mode``:

- ``"ok"``: 200 ``{"message_id": "rcv-<n>"}``, or 204 without a body when ``give_id`` is false (§3: both are sent);
- ``"error:<name>"``: one of :data:`ERRORS`, a status with a short JSON body (§3: every one is a failed send);
- ``"malformed"``: 200 with an HTML body (§3: still sent, under our own id);
- ``"5xx"`` and ``"timeout"``: the base's;
- ``reply``: a canned ``(status, body bytes)`` for everything that passes the check.

Reports to us (§4): :func:`report_body` writes one, :func:`signed_headers` signs it, and :func:`post_report` POSTs it.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import time
from collections.abc import Callable
from typing import Any

import requests
from werkzeug.wrappers import Request, Response

from tests.providers.emulator import Emulator, Seen

SECRET = "hook-secret-0123456789"  # the secret of the vectors in docs/gateways/hook.md §2 and §4
PATH = "/hook"
MAX_AGE = 300  # what §2 advises a receiver to accept
POST_TIMEOUT = 5.0
# §3: the answers a receiver may give that are not a 2xx, each a failed send.
ERRORS: dict[str, int] = {
    "bad-request": 400,
    "unauthorized": 401,
    "forbidden": 403,
    "not-found": 404,
    "request-timeout": 408,
    "unprocessable": 422,
    "throttled": 429,
    "redirect": 302,
}
_HEADER = re.compile(r"t=([0-9]+),v1=([0-9a-f]{64})")


def mac(secret: str, timestamp: int | str, body: bytes) -> str:
    """The ``v1`` of §2, computed here independently of ``verify/providers/hook_webhooks.py``."""
    return hmac.new(secret.encode("utf-8"), str(timestamp).encode("ascii") + b"." + body, hashlib.sha256).hexdigest()


def signed_headers(secret: str, timestamp: int, body: bytes) -> dict[str, str]:
    """A report's headers: JSON, and ``Verify-Signature`` with ``secret`` at ``timestamp``."""
    return {"Content-Type": "application/json", "Verify-Signature": f"t={timestamp},v1={mac(secret, timestamp, body)}"}


def report_body(
    status: str, *, verification_id: str | None = None, message_id: str | None = None, timestamp: int | None = None
) -> bytes:
    """A delivery report (§4) with the members given (``verification_id`` as ``id``), in this order, as compact
    JSON."""
    document: dict[str, Any] = {}
    if verification_id is not None:
        document["id"] = verification_id
    if message_id is not None:
        document["message_id"] = message_id
    document["status"] = status
    if timestamp is not None:
        document["timestamp"] = timestamp
    return json.dumps(document, separators=(",", ":")).encode()


def post_report(url: str, body: bytes, *, secret: str = SECRET, at: int | None = None) -> requests.Response:
    """POST ``body`` to ``url`` (a message's ``callback_url``) signed with ``secret`` at ``at`` (now by default)."""
    stamp = int(time.time()) if at is None else at
    return requests.post(url, data=body, headers=signed_headers(secret, stamp, body), timeout=POST_TIMEOUT)


class HookReceiver(Emulator):
    """A receiver that verifies with ``secrets`` (any of them) and keeps what it was asked to send."""

    def __init__(self, secrets: tuple[str, ...] = (SECRET,), clock: Callable[[], float] = time.time) -> None:
        super().__init__()
        self.secrets = secrets
        self.clock = clock
        self.give_id = True
        self.reply: tuple[int, bytes] | None = None
        self.messages: list[dict[str, Any]] = []
        self.refused = 0

    def verified(self, seen: Seen) -> bool:
        """Whether ``seen`` carries a signature of its body, by one of :attr:`secrets`, made within ``MAX_AGE``."""
        found = _HEADER.fullmatch(seen.headers.get("Verify-Signature", ""))
        if found is None or abs(self.clock() - int(found[1])) > MAX_AGE:
            return False
        return any([hmac.compare_digest(mac(secret, found[1], seen.body), found[2]) for secret in self.secrets])

    def answer(self, request: Request, seen: Seen) -> Response:
        """401 unless :meth:`verified`; then the answer ``mode`` (or ``reply``) says."""
        if request.method != "POST" or request.path != PATH:
            return Response("no such receiver", 404)
        if not self.verified(seen):
            self.refused += 1
            return Response(json.dumps({"error": "bad signature"}), 401, mimetype="application/json")
        self.messages.append(seen.json())
        if self.reply is not None:
            return Response(self.reply[1], self.reply[0], mimetype="application/json")
        if self.mode.startswith("error:"):
            name = self.mode.removeprefix("error:")
            status = ERRORS[name]
            headers = {"Location": "https://elsewhere.example/hook"} if status == 302 else {}
            return Response(json.dumps({"error": name}), status, headers=headers, mimetype="application/json")
        if self.mode == "malformed":
            return Response("<html><body>Sent!</body></html>", 200, mimetype="text/html")
        if not self.give_id:
            return Response(status=204)
        return Response(json.dumps({"message_id": f"rcv-{len(self.messages)}"}), 200, mimetype="application/json")
