"""A local Zoom Connect: the REST API of docs/gateways/zoomconnect.md §1-§5, served under :attr:`Emulator.url`.

``Emulator.url`` stands for the base URL ``https://www.zoomconnect.com/app/``. Served:

- ``POST api/rest/v1/sms/send`` (and ``.../sms/send.json``, as in the vendor's snippets): validates
  ``recipientNumber`` (400 ``RestErrorDTO`` code 2) and ``message`` (code 3), answers
  ``{"messageId": "40124213", "error": null}``; ``GET`` on that path gives an example request body;
- ``POST api/rest/v1/sms/send-bulk``: per-item ``error`` strings;
- ``GET api/rest/v1/account/balance``: ``{"creditBalance": 123.45, "links": [...]}``;
- anything else: 404.

Every request needs the ``email``/``token`` headers, ``Authorization: Basic base64(email:token)`` or the
``email``/``token`` query parameters (docs/gateways/zoomconnect.md §2); anything else gets 401.

Modes ``error:<name>``, one per documented error (docs/gateways/zoomconnect.md §5): ``invalid-number`` and
``empty-message`` (400, send only), ``send-error`` (200 with an ``error`` string, send only), ``unauthorized`` (401),
``forbidden`` (403), ``not-found`` (404), ``rate-limited`` (429, which the docs only mention for polling).
``malformed`` answers 200 with HTML. For the shapes the docs leave open (``error`` absent, ``messageId`` a number,
``code`` a string, ...), a test sets :attr:`ZoomConnectEmulator.reply`.

Callbacks to us (docs/gateways/zoomconnect.md §6, §7): :func:`zoom_callback` builds a reply or delivery report as
Zoom Connect sends it, signed with the HMAC-SHA1 ``checksum``; :func:`post_callback` POSTs one to a URL.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
from collections.abc import Mapping
from typing import Any, Literal
from urllib.parse import urlencode

import requests
from werkzeug.wrappers import Request, Response

from tests.providers.emulator import Emulator, Seen

EMAIL = "user@example.com"  # the credentials of the Basic-auth vector in docs/gateways/zoomconnect.md §8
TOKEN = "abc123-token"
MESSAGE_ID = "40124213"
CREDIT_BALANCE = 123.45
API = "/api/rest/v1/"
RECIPIENT = re.compile(r"\+?[1-9][0-9]{6,14}")  # "+27821234567" or "27821234567"
REST_ERRORS = {2: "Invalid mobile number", 3: "Message cannot be empty"}
SEND_ERROR = "Message could not be sent"
EXAMPLE_REQUEST = {
    "recipientNumber": "+27821234567",
    "message": "Hello",
    "campaign": "campaign",
    "dataField": "data",
    "dateToSend": "201405161005",
}
# The order the vendor's examples list the parameters in (docs/gateways/zoomconnect.md §6), which is not the signing
# order; others go last.
CALLBACK_ORDER = {
    "reply": (
        "from",
        "to",
        "repliedToMessageId",
        "messageId",
        "message",
        "date",
        "campaign",
        "dataField",
        "nonce",
        "nonce-date",
        "checksum",
    ),
    "delivery": ("nonce", "status", "messageId", "checksum", "nonce-date"),
}
FORM = "application/x-www-form-urlencoded"
POST_TIMEOUT = 5.0


class ZoomConnectEmulator(Emulator):
    """Zoom Connect's REST API for one account (``email``, ``token``) holding ``CREDIT_BALANCE`` credits."""

    ERRORS = ("invalid-number", "empty-message", "send-error", "unauthorized", "forbidden", "not-found", "rate-limited")

    def __init__(self, email: str = EMAIL, token: str = TOKEN) -> None:
        super().__init__()
        self.email = email
        self.token = token
        # (status, JSON body) to answer an authenticated request with, instead of the documented shapes.
        self.reply: tuple[int, Any] | None = None

    def answer(self, request: Request, seen: Seen) -> Response:
        """The answer to ``request`` in the current ``mode``."""
        error = self.mode.removeprefix("error:") if self.mode.startswith("error:") else ""
        assert not error or error in self.ERRORS, f"unknown error mode {self.mode!r}"
        if error == "unauthorized" or not self._authorized(request):
            return Response("Unauthorized", 401, {"WWW-Authenticate": 'Basic realm="zoomconnect"'})
        if error == "forbidden":
            return Response("Forbidden", 403)
        if error == "rate-limited":
            return Response("Too Many Requests", 429)
        route = (request.method, request.path.removesuffix(".json"))
        known = {
            ("POST", API + "sms/send"),
            ("GET", API + "sms/send"),
            ("POST", API + "sms/send-bulk"),
            ("GET", API + "account/balance"),
        }
        if error == "not-found" or route not in known:
            return Response("Not Found", 404)
        if self.reply is not None:
            return _json(self.reply[1], self.reply[0])
        if self.mode == "malformed":
            return Response("<html><body>Maintenance</body></html>", 200, mimetype="text/html")
        if route == ("GET", API + "account/balance"):
            return _json({"creditBalance": CREDIT_BALANCE, "links": [{"rel": "self", "href": request.base_url}]})
        if request.method == "GET":
            return _json(EXAMPLE_REQUEST)
        if not request.is_json:
            return Response("Unsupported Media Type", 415)  # the real API also takes XML; we do not emulate it
        body = request.get_json(silent=True)
        if request.path.removesuffix(".json").endswith("send-bulk"):
            items = body.get("sendSmsRequests") if isinstance(body, dict) else None
            return _json({"sendSmsResponses": [_bulk_item(item) for item in items or []]})
        if error == "send-error":
            return _json({"messageId": None, "error": SEND_ERROR})
        code = 2 if error == "invalid-number" else 3 if error == "empty-message" else _invalid(body)
        if code:
            return _json(
                {
                    "code": code,
                    "message": REST_ERRORS[code],
                    "developerMessage": REST_ERRORS[code],
                    "moreInfoUrl": None,
                    "status": "BAD_REQUEST",
                },
                400,
            )
        return _json({"messageId": MESSAGE_ID, "error": None})

    def _authorized(self, request: Request) -> bool:
        auth = request.authorization
        if auth is not None and auth.type == "basic":
            email, token = auth.username or "", auth.password or ""
        else:
            email = request.headers.get("email") or request.args.get("email", "")
            token = request.headers.get("token") or request.args.get("token", "")
        return hmac.compare_digest(email.encode(), self.email.encode()) and hmac.compare_digest(
            token.encode(), self.token.encode()
        )


def _invalid(body: Any) -> int:
    """The ``RestErrorDTO`` code a send request earns (0 when it is valid)."""
    fields = body if isinstance(body, dict) else {}
    number, message = fields.get("recipientNumber"), fields.get("message")
    if not isinstance(number, str) or not RECIPIENT.fullmatch(number):
        return 2
    if not isinstance(message, str) or not message:
        return 3
    return 0


def _bulk_item(item: Any) -> dict[str, Any]:
    code = _invalid(item)
    return {"messageId": None, "error": REST_ERRORS[code]} if code else {"messageId": MESSAGE_ID, "error": None}


def _json(body: Any, status: int = 200) -> Response:
    return Response(json.dumps(body), status, mimetype="application/json")


def sign(params: Mapping[str, str], secret: str) -> str:
    """The ``checksum`` of docs/gateways/zoomconnect.md §7: HMAC-SHA1 over every other parameter as ``key=value``,
    sorted, joined by ``&``."""
    message = "&".join(f"{key}={value}" for key, value in sorted(params.items()) if key != "checksum")
    return hmac.new(secret.encode(), message.encode(), hashlib.sha1).hexdigest()


def zoom_callback(
    kind: Literal["reply", "delivery"], params: Mapping[str, str], *, secret: str, in_query: bool = True
) -> tuple[bytes, bytes, str]:
    """A callback as Zoom Connect sends it: ``(query_string, body, content_type)``.

    ``params`` are the raw values; a ``checksum`` signed with ``secret`` is added unless ``params`` has one already
    (to replay a captured or forged callback). They go in the vendor's order, form-encoded (a space becomes ``+``,
    a literal ``+`` ``%2B``), in the query string with no body, or with ``in_query=False`` in a form body.
    """
    assert kind in CALLBACK_ORDER, f"unknown callback kind {kind!r}"
    signed = dict(params)
    signed.setdefault("checksum", sign(params, secret))
    order = CALLBACK_ORDER[kind]
    pairs = sorted(signed.items(), key=lambda item: order.index(item[0]) if item[0] in order else len(order))
    encoded = urlencode(pairs).encode("ascii")
    return (encoded, b"", "") if in_query else (b"", encoded, FORM)


def post_callback(
    url: str, kind: Literal["reply", "delivery"], params: Mapping[str, str], *, secret: str, in_query: bool = True
) -> requests.Response:
    """POST :func:`zoom_callback`'s callback to ``url`` (the message forward or delivery report URL)."""
    query, body, content_type = zoom_callback(kind, params, secret=secret, in_query=in_query)
    target = url + ("&" if "?" in url else "?") + query.decode("ascii") if query else url
    headers = {"Content-Type": content_type} if content_type else {}
    return requests.post(target, data=body, headers=headers, timeout=POST_TIMEOUT)
