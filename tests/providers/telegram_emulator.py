"""A local Telegram Gateway API: docs/gateways/telegram.md §2-§7, served under :attr:`Emulator.url`.

``Emulator.url`` stands for ``https://gatewayapi.telegram.org/``. Like Telegram it takes a method's parameters from
the query string, a form body or a JSON body, by GET or POST, with the method name in any case, and answers every
call with ``{"ok": true, "result": ...}`` or ``{"ok": false, "error": "<STRING>"}`` (compact JSON, UTF-8). The token
is ``Authorization: Bearer <token>`` or the ``access_token`` parameter; any other gets ``ACCESS_TOKEN_INVALID``.
Served:

- ``sendVerificationMessage``: checks ``phone_number`` (E.164), ``code`` (4..8 digits), ``ttl`` (30..3600),
  ``payload`` (128 bytes), ``callback_url`` (HTTPS, 256 bytes; ``allow_http`` lets tests call back to 127.0.0.1),
  answers a ``RequestStatus`` (``delivery_status`` ``sent``) and keeps the request for reports, confirmations and
  revocations. A number in :attr:`TelegramEmulator.no_account` has no Telegram: ``ok: false``, nothing charged;
- ``checkVerificationStatus`` (``request_id``, ``code``): the ``RequestStatus`` with ``verification_status``
  ``code_valid`` or ``code_invalid``;
- ``revokeVerificationMessage`` (``request_id``): ``true`` (taken), and the request's status becomes ``revoked``;
- ``checkSendAbility``: a charged ``RequestStatus`` (never called by ``verify``; here so the notes' §5 can be tried).

Error strings: §7 names only ``ACCESS_TOKEN_INVALID``. The others here (:data:`NO_ACCOUNT`, :data:`NO_BALANCE`,
the validation errors) are the emulator's own stand-ins, **unconfirmed**; the provider reads ``ok: false`` by prefix
and must not depend on them. The HTTP status of an ``ok: false`` answer is unconfirmed too: ``error_status`` (200 by
default). ``mode = "error:<name>"`` answers one of :attr:`TelegramEmulator.ERRORS`; ``malformed`` answers HTML with
200; ``reply`` overrides everything with a canned ``(status, body)``.

Reports to us (§6, §7): :func:`report_body` builds a ``RequestStatus`` body, :func:`signed_headers` signs it, and
:meth:`TelegramEmulator.post_report` POSTs one about a request it took to that request's ``callback_url``: signed
with the emulator's token, or another (a bad signature), at any time (a stale one); :meth:`TelegramEmulator.replay`
posts the last one again, byte for byte.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import requests
from werkzeug.wrappers import Request, Response

from tests.providers.emulator import Emulator, Seen

TOKEN = "123456:test-gateway-token"  # the token of the vector in docs/gateways/telegram.md §8
REQUEST_COST = 0.01
BALANCE = 10.0
ACCESS_TOKEN_INVALID = "ACCESS_TOKEN_INVALID"  # the one error string §7 names
NO_ACCOUNT = "PHONE_NUMBER_NOT_ON_TELEGRAM"  # unconfirmed: the emulator's stand-in
NO_BALANCE = "BALANCE_NOT_ENOUGH"  # unconfirmed: the emulator's stand-in
OTHER_ERROR = "SOMETHING_WENT_WRONG"  # any string §7 does not list
E164 = re.compile(r"\+?[1-9][0-9]{6,14}")
CODE = re.compile(r"[0-9]{4,8}")
POST_TIMEOUT = 5.0


def compact(document: Any) -> bytes:
    """JSON as Telegram writes it: no spaces, UTF-8 (the vector's body in docs/gateways/telegram.md §8)."""
    return json.dumps(document, separators=(",", ":"), ensure_ascii=False).encode()


def signature(token: str, timestamp: str, body: bytes) -> str:
    """``X-Request-Signature`` (docs/gateways/telegram.md §7), computed here independently of the module under test."""
    key = hashlib.sha256(token.encode()).digest()
    return hmac.new(key, f"{timestamp}\n".encode() + body, hashlib.sha256).hexdigest()


def signed_headers(token: str, timestamp: int | str, body: bytes) -> dict[str, str]:
    """The headers of a report: JSON, its timestamp, and its signature with ``token``."""
    stamp = str(timestamp)
    return {
        "Content-Type": "application/json",
        "X-Request-Timestamp": stamp,
        "X-Request-Signature": signature(token, stamp, body),
    }


def report_body(
    request_id: str,
    phone: str,
    status: str,
    updated_at: int,
    *,
    cost: float = REQUEST_COST,
    refunded: bool | None = None,
    payload: str | None = None,
) -> bytes:
    """A ``RequestStatus`` as a report carries it, in the vector's field order (docs/gateways/telegram.md §8);
    ``is_refunded`` and ``payload`` only when given."""
    document: dict[str, Any] = {"request_id": request_id, "phone_number": phone, "request_cost": cost}
    if refunded is not None:
        document["is_refunded"] = refunded
    document["delivery_status"] = {"status": status, "updated_at": updated_at}
    if payload is not None:
        document["payload"] = payload
    return compact(document)


@dataclass
class Taken:
    """A send the emulator took: what a report, a confirmation or a revocation refers to."""

    request_id: str
    phone: str
    code: str
    callback_url: str
    payload: str | None
    status: str = "sent"


@dataclass(frozen=True)
class Posted:
    """A report the emulator posted: where, and exactly which bytes."""

    url: str
    headers: dict[str, str]
    body: bytes


class TelegramEmulator(Emulator):
    """The Gateway API of one account (``token``) with ``BALANCE`` to spend."""

    ERRORS = ("access-token-invalid", "no-account", "no-balance", "other")

    def __init__(self, token: str = TOKEN, clock: Callable[[], float] = time.time) -> None:
        super().__init__()
        self.token = token
        self.clock = clock
        self.no_account: set[str] = set()  # numbers (E.164) with no Telegram account
        self.allow_http = False  # accept an http callback_url (to post reports to a local receiver)
        self.error_status = 200  # the HTTP status of an ok: false answer (unconfirmed)
        self.reply: tuple[int, Any] | None = None  # a canned (status, JSON body) for everything
        self.taken: dict[str, Taken] = {}
        self.posted: list[Posted] = []
        self.balance = BALANCE

    # ---- the API ----

    def answer(self, request: Request, seen: Seen) -> Response:
        """The answer to ``request`` in the current ``mode``."""
        error = self.mode.removeprefix("error:") if self.mode.startswith("error:") else ""
        assert not error or error in self.ERRORS, f"unknown error mode {self.mode!r}"
        if self.reply is not None:
            return Response(compact(self.reply[1]), self.reply[0], mimetype="application/json")
        if self.mode == "malformed":
            return Response("<html><body>Maintenance</body></html>", 200, mimetype="text/html")
        params = _params(request)
        if error == "access-token-invalid" or not self._authorized(request, params):
            return self._error(ACCESS_TOKEN_INVALID)
        method = request.path.strip("/").lower()
        if method == "sendverificationmessage":
            return self._send(params, error)
        if method in ("checkverificationstatus", "revokeverificationmessage"):
            taken = self.taken.get(str(params.get("request_id", "")))
            if taken is None:
                return self._error("REQUEST_ID_INVALID")
            if method == "revokeverificationmessage":
                taken.status = "revoked"
                return self._ok(True)
            return self._ok(self._status(taken, _verification(taken, params.get("code"), self.clock())))
        if method == "checksendability":
            return self._send_ability(params)
        return self._error("METHOD_NOT_FOUND", 404)

    def _send(self, params: dict[str, Any], error: str) -> Response:
        phone, code = str(params.get("phone_number", "")), str(params.get("code", ""))
        callback, payload = str(params.get("callback_url", "")), params.get("payload")
        invalid = (
            "PHONE_NUMBER_INVALID"
            if not E164.fullmatch(phone)
            else "CODE_INVALID"
            if not CODE.fullmatch(code)
            else "TTL_INVALID"
            if "ttl" in params and not _in_range(params["ttl"], 30, 3600)
            else "PAYLOAD_INVALID"
            if payload is not None and len(str(payload).encode()) > 128
            else "CALLBACK_URL_INVALID"
            if callback and (len(callback.encode()) > 256 or not self._callback_scheme_ok(callback))
            else ""
        )
        if invalid:
            return self._error(invalid)
        if error == "no-account" or phone in self.no_account or "+" + phone in self.no_account:
            return self._error(NO_ACCOUNT)
        if error == "no-balance" or self.balance < REQUEST_COST:
            return self._error(NO_BALANCE)
        if error == "other":
            return self._error(OTHER_ERROR)
        taken = Taken(secrets.token_hex(8), phone, code, callback, None if payload is None else str(payload))
        self.taken[taken.request_id] = taken
        self.balance = round(self.balance - REQUEST_COST, 2)
        return self._ok(self._status(taken))

    def _send_ability(self, params: dict[str, Any]) -> Response:
        phone = str(params.get("phone_number", ""))
        if not E164.fullmatch(phone):
            return self._error("PHONE_NUMBER_INVALID")
        if phone in self.no_account or "+" + phone in self.no_account:
            return self._error(NO_ACCOUNT)
        self.balance = round(self.balance - REQUEST_COST, 2)
        return self._ok({"request_id": secrets.token_hex(8), "phone_number": phone, "request_cost": REQUEST_COST})

    def _status(self, taken: Taken, verification: dict[str, Any] | None = None) -> dict[str, Any]:
        status: dict[str, Any] = {
            "request_id": taken.request_id,
            "phone_number": taken.phone,
            "request_cost": REQUEST_COST,
            "remaining_balance": self.balance,
            "delivery_status": {"status": taken.status, "updated_at": int(self.clock())},
        }
        if verification is not None:
            status["verification_status"] = verification
        if taken.payload is not None:
            status["payload"] = taken.payload
        return status

    def _authorized(self, request: Request, params: dict[str, Any]) -> bool:
        header = request.headers.get("Authorization", "")
        given = header.removeprefix("Bearer ") if header.startswith("Bearer ") else str(params.get("access_token", ""))
        return hmac.compare_digest(given.encode(), self.token.encode())

    def _callback_scheme_ok(self, url: str) -> bool:
        return url.startswith("https://") or (self.allow_http and url.startswith("http://"))

    def _ok(self, result: Any) -> Response:
        return Response(compact({"ok": True, "result": result}), 200, mimetype="application/json")

    def _error(self, error: str, status: int | None = None) -> Response:
        body = compact({"ok": False, "error": error})
        return Response(body, status or self.error_status, mimetype="application/json")

    # ---- reports to us ----

    def post_report(
        self,
        request_id: str,
        status: str,
        *,
        at: int | None = None,
        token: str | None = None,
        url: str | None = None,
        refunded: bool | None = None,
    ) -> requests.Response:
        """POST a report about the send ``request_id`` to its ``callback_url`` (or ``url``): ``status`` at ``at``
        (now by default; an old time makes it stale), signed with ``token`` (the account's by default; another one
        makes a bad signature). ``expired`` reports carry ``is_refunded: true`` unless ``refunded`` says."""
        taken = self.taken[request_id]
        taken.status = status
        stamp = int(self.clock()) if at is None else at
        if refunded is None and status == "expired":
            refunded = True
        body = report_body(request_id, taken.phone, status, stamp, refunded=refunded, payload=taken.payload)
        posted = Posted(url or taken.callback_url, signed_headers(token or self.token, stamp, body), body)
        assert posted.url, "this send named no callback_url"
        return self._post(posted)

    def replay(self) -> requests.Response:
        """POST the last report again: the same URL, headers and bytes (a captured report, replayed)."""
        return self._post(self.posted[-1])

    def _post(self, posted: Posted) -> requests.Response:
        self.posted.append(posted)
        return requests.post(posted.url, data=posted.body, headers=posted.headers, timeout=POST_TIMEOUT)


def _params(request: Request) -> dict[str, Any]:
    """A method's parameters: query, then form or JSON body (the body wins)."""
    params: dict[str, Any] = dict(request.args.items())
    if request.mimetype == "application/x-www-form-urlencoded":
        params.update(request.form.items())
    elif request.is_json:
        body = request.get_json(silent=True)
        if isinstance(body, dict):
            params.update(body)
    return params


def _in_range(value: Any, low: int, high: int) -> bool:
    try:
        number = int(value)
    except (TypeError, ValueError):
        return False
    return low <= number <= high and not isinstance(value, bool)


def _verification(taken: Taken, code: Any, now: float) -> dict[str, Any] | None:
    if code is None:
        return None
    entered = str(code)
    status = "code_valid" if hmac.compare_digest(entered.encode(), taken.code.encode()) else "code_invalid"
    return {"status": status, "updated_at": int(now), "code_entered": entered}
