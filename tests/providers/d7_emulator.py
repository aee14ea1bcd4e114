"""A local D7 Networks gateway speaking either API generation's wire format (docs/gateways/d7.md).

``api = "legacy"``: the hosted Jasmin REST API. Falcon checks the ``Accept`` header (415), then Basic auth on
``/secure/*`` (401), then parses the JSON body (412); body keys have ``_`` rewritten to ``-``; Jasmin's HTTP API
then validates the arguments (400) and answers ``{"data": "Success \\"<uuid>"}`` (no closing quote) or
``{"message": "Error \\"<text>"}`` with its status.

``api = "v1"``: Bearer auth (401 with a ``{"detail": {"code", "message"}}`` object), FastAPI validation (422 with
``{"detail": [{"loc", "msg", "type"}]}``), and ``{"request_id", "status": "accepted", "created_at"}``.

``mode = "error:<name>"`` answers one documented error (:data:`LEGACY_ERRORS`, :data:`V1_ERRORS`, plus the
legacy REST layer's ``unauthorized``, ``unparseable-json`` and ``not-acceptable``). ``reply`` overrides
everything with a canned ``(status, body)``, for the shapes docs/gateways/d7.md marks unconfirmed.

The callbacks D7 makes to us are built by :func:`dlr_callback` (legacy: Jasmin's DLRThrower) and
:func:`report_callback` (v1 report webhook), and sent over HTTP by :func:`post_dlr` and :func:`post_report`.
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlencode

import requests
from werkzeug.wrappers import Request, Response

from tests.providers.emulator import Emulator, Seen

# docs/gateways/d7.md §9: "foo:bar" is "Zm9vOmJhcg==" in the Basic auth header.
USERNAME, PASSWORD = "foo", "bar"
TOKEN = "d7-test-token"

# Jasmin's own texts (jasmin/protocols/http/validation.py and endpoints/send.py), as docs/gateways/d7.md §3
# lists them.
LEGACY_ERRORS: dict[str, tuple[int, str]] = {
    "missing-args": (400, "Mandatory arguments not found, please refer to the HTTPAPI specifications."),
    "unknown-arg": (400, "Argument [foo] is unknown."),
    "invalid-to": (400, "Argument [to] has an invalid value: [+7999123456x]."),
    "invalid-from": (400, "Argument [from] has an invalid value: [ThisSenderIsFarTooLong]."),
    "no-content": (400, "content or hex-content not present."),
    "auth-failure": (403, "Authentication failure for username:foo"),
    "authorization-failed": (403, "Authorization failed for username:foo"),
    "no-charge": (403, "Cannot charge submit_sm, check RouterPB log file for details"),
    "no-route": (412, "No route found"),
    "send-failed": (500, "Cannot send submit_sm, check SMPPClientManagerPB log file for details"),
}
V1_ERRORS: dict[str, tuple[int, Any]] = {
    "unauthorized": (
        401,
        {
            "detail": {
                "code": "ACCESS_TOKEN_SIGNATURE_VERIFICATION_FAILED",
                "message": "Access token signature verification failed",
            }
        },
    ),
    # unconfirmed body shapes (docs/gateways/d7.md §6): the documented {"detail": {"code", "message"}} is assumed.
    "no-credit": (402, {"detail": {"code": "INSUFFICIENT_CREDIT", "message": "Insufficient credit"}}),
    "forbidden": (403, {"detail": "Not authenticated"}),  # FastAPI's HTTPBearer without a token
    "not-found": (404, {"detail": {"code": "NOT_FOUND", "message": "Not found"}}),
    "invalid-recipient": (
        422,
        {
            "detail": [
                {
                    "loc": ["body", "messages", 0, "recipients", 0],
                    "msg": "value is not a valid phone number",
                    "type": "value_error",
                }
            ]
        },
    ),
    "invalid-request": (
        422,
        {
            "detail": [
                {
                    "loc": ["body", "message_globals", "originator"],
                    "msg": "ensure this value has at most 11 characters",
                    "type": "value_error.any_str.max_length",
                }
            ]
        },
    ),
    "rate-limited": (429, {"detail": {"code": "TOO_MANY_REQUESTS", "message": "Too many requests"}}),
    "server-error": (500, {"detail": {"code": "INTERNAL_SERVER_ERROR", "message": "Internal server error"}}),
}
FALCON_HELP = {
    "text": "Documentation related to this error",
    "href": "http://docs.jasminsms.com/en/latest/apis/rest/index.html",
    "rel": "help",
}

# Jasmin's HTTP API arguments and their patterns (values compared as text, as Jasmin does).
LEGACY_FIELDS: dict[str, str] = {
    "to": r"\+?\d+",
    "from": r".{1,20}",
    "content": r"(?s).*",
    "hex-content": r"[0-9a-fA-F]*",
    "coding": r"0|1|2|3|4|5|6|7|8|9|10|13|14",
    "dlr": r"yes|no",
    "dlr-url": r"https?://.+",
    "dlr-level": r"[1-3]",
    "dlr-method": r"(?i)get|post",
    "priority": r"[0-3]",
    "validity-period": r"\d+",
    "sdt": r".+",
    "tags": r"[-a-zA-Z0-9,]*",
}
E164 = re.compile(r"\+[1-9]\d{6,14}")
ORIGINATOR = re.compile(r"[A-Za-z0-9 ]{1,11}|\+?\d{1,15}")


def _json(status: int, body: Any) -> Response:
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    return Response(raw, status=status, mimetype="application/json")


def _falcon(status: int, title: str, description: str) -> Response:
    return _json(status, {"title": title, "description": description, "link": FALCON_HELP})


def _jasmin(status: int, text: str) -> Response:
    # The REST layer strips '"' from both ends of the HTTP API's 'Error "<text>"' (and 'Success "<uuid>"').
    return _json(status, {"message": f'Error "{text}'})


def _invalid(loc: list[str | int], msg: str, kind: str = "value_error") -> dict[str, Any]:
    return {"loc": loc, "msg": msg, "type": kind}


class D7Emulator(Emulator):
    """D7 on 127.0.0.1, ``api`` ``"legacy"`` or ``"v1"``; ``issued`` lists the ids it handed out."""

    def __init__(
        self, api: str = "v1", *, username: str = USERNAME, password: str = PASSWORD, token: str = TOKEN
    ) -> None:
        super().__init__()
        self.api = api
        self.username, self.password, self.token = username, password, token
        self.issued: list[str] = []
        self.reply: tuple[int, Any] | None = None
        self.balance_body: Any = (
            {"data": {"balance": "10.23", "sms_count": "ND"}}
            if api == "legacy"
            else {"balance": 12.3, "currency": "USD"}
        )

    def answer(self, request: Request, seen: Seen) -> Response:
        """Answer in the wire format of ``api``."""
        if self.reply is not None:
            return _json(*self.reply)
        return self._legacy(request, seen) if self.api == "legacy" else self._v1(request, seen)

    # ---- legacy: the Falcon middleware, then Jasmin's HTTP API ----

    def _legacy(self, request: Request, seen: Seen) -> Response:
        accept = request.headers.get("Accept")
        if self.mode == "error:not-acceptable" or (accept and not request.accept_mimetypes.accept_json):
            return _falcon(415, "Unsupported media type", "This API supports JSON media type only.")
        expected = request.authorization
        if (
            self.mode == "error:unauthorized"
            or expected is None
            or expected.type != "basic"
            or (expected.username, expected.password) != (self.username, self.password)
        ):
            return _falcon(401, "Authentication required", "Please provide a valid Basic auth token")
        routes = {"/secure/send": "POST", "/secure/balance": "GET"}
        if seen.path not in routes:
            return _json(404, {"title": "404 Not Found"})
        if seen.method != routes[seen.path]:
            return _json(405, {"title": "405 Method Not Allowed"})
        if seen.path == "/secure/balance":
            return self._legacy_error() or _json(200, self.balance_body)
        try:
            params = json.loads(seen.body)
        except ValueError:
            params = None
        if self.mode == "error:unparseable-json" or not isinstance(params, dict):
            return _falcon(
                412, "Cannot parse JSON data", f"Got unparseable json data: {seen.body.decode(errors='replace')}"
            )
        if self.mode == "malformed":
            return Response("<html><body>Success</body></html>", status=200, mimetype="text/html")
        return self._legacy_error() or self._legacy_send({re.sub("_", "-", k): v for k, v in params.items()})

    def _legacy_error(self) -> Response | None:
        name = self.mode.removeprefix("error:")
        if self.mode.startswith("error:") and name in LEGACY_ERRORS:
            return _jasmin(*LEGACY_ERRORS[name])
        return None

    def _legacy_send(self, args: dict[str, Any]) -> Response:
        if not args:
            return _jasmin(*LEGACY_ERRORS["missing-args"])
        for key, value in args.items():
            if key not in LEGACY_FIELDS:
                return _jasmin(400, f"Argument [{key}] is unknown.")
            text = str(value) if isinstance(value, int | float | str) and not isinstance(value, bool) else None
            if text is None or not re.fullmatch(LEGACY_FIELDS[key], text):
                return _jasmin(400, f"Argument [{key}] has an invalid value: [{value}].")
        if "to" not in args:
            return _jasmin(400, "Mandatory argument [to] is not found.")
        if ("content" in args) == ("hex-content" in args):
            return _jasmin(
                400,
                "content or hex-content not present."
                if "content" not in args
                else "content and hex-content cannot be used both in same request.",
            )
        message_id = str(uuid.uuid4())
        self.issued.append(message_id)
        return _json(200, {"data": f'Success "{message_id}'})

    # ---- v1: FastAPI ----

    def _v1(self, request: Request, seen: Seen) -> Response:
        auth = request.headers.get("Authorization", "")
        if not auth:
            return _json(*V1_ERRORS["forbidden"])
        if self.mode == "error:unauthorized" or auth != f"Bearer {self.token}":
            return _json(*V1_ERRORS["unauthorized"])
        name = self.mode.removeprefix("error:")
        if self.mode.startswith("error:") and name in V1_ERRORS:
            return _json(*V1_ERRORS[name])
        if (seen.method, seen.path) == ("GET", "/messages/v1/balance"):
            return _json(200, self.balance_body)
        if (seen.method, seen.path) != ("POST", "/messages/v1/send"):
            return _json(404, {"detail": "Not Found"})
        try:
            body = json.loads(seen.body)
        except ValueError:
            return _json(422, {"detail": [_invalid(["body", 0], "JSON decode error", "json_invalid")]})
        errors = self._v1_validate(body)
        if errors:
            return _json(422, {"detail": errors})
        if self.mode == "malformed":
            return _json(200, {"status": "accepted"})
        request_id = str(uuid.uuid4())
        self.issued.append(request_id)
        created_at = datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
        return _json(200, {"request_id": request_id, "status": "accepted", "created_at": created_at})

    def _v1_validate(self, body: Any) -> list[dict[str, Any]]:
        if not isinstance(body, dict) or not isinstance(body.get("messages"), list) or not body["messages"]:
            return [_invalid(["body", "messages"], "field required", "value_error.missing")]
        errors = []
        for i, message in enumerate(body["messages"]):
            where: list[str | int] = ["body", "messages", i]
            if not isinstance(message, dict):
                errors.append(_invalid(where, "value is not a valid dict", "type_error.dict"))
                continue
            recipients = message.get("recipients")
            if not isinstance(recipients, list) or not recipients:
                errors.append(_invalid([*where, "recipients"], "field required", "value_error.missing"))
            else:
                errors += [
                    _invalid([*where, "recipients", j], "value is not a valid phone number")
                    for j, r in enumerate(recipients)
                    if not (isinstance(r, str) and E164.fullmatch(r))
                ]
            for key, allowed in (
                ("channel", {"sms"}),
                ("msg_type", {"text", "audio", "multimedia", "image"}),
                ("data_coding", {"text", "unicode", "auto"}),
            ):
                if message.get(key) not in allowed:
                    errors.append(_invalid([*where, key], f"value is not one of {sorted(allowed)}"))
            if not isinstance(message.get("content"), str) or not message["content"]:
                errors.append(_invalid([*where, "content"], "field required", "value_error.missing"))
        globals_ = body.get("message_globals", {})
        if not isinstance(globals_, dict):
            return [*errors, _invalid(["body", "message_globals"], "value is not a valid dict", "type_error.dict")]
        originator, report_url = globals_.get("originator"), globals_.get("report_url")
        if originator is not None and not (isinstance(originator, str) and ORIGINATOR.fullmatch(originator)):
            errors.append(_invalid(["body", "message_globals", "originator"], "invalid originator"))
        if report_url is not None and not (isinstance(report_url, str) and re.fullmatch(r"https?://\S+", report_url)):
            errors.append(_invalid(["body", "message_globals", "report_url"], "invalid or missing URL scheme"))
        return errors


# ---- callbacks D7 makes to us ----

FORM = "application/x-www-form-urlencoded"
# jasmin/routing/throwers.py DLRThrower.http_dlr_callback: agent 'Jasmin gateway/1.0 %s' % self.name, and these
# two headers on GET as well as POST.
DLR_HEADERS = {"User-Agent": "Jasmin gateway/1.0 DLRThrower", "Content-Type": FORM, "Accept": "text/plain"}
CALLBACK_TIMEOUT = 5.0

Callback = tuple[str, bytes, bytes, str]
"""``(method, query_string, body, content_type)``, in the order of :class:`verify.providers.base.Inbound`."""


def dlr_fields(message_id: str, message_status: str, *, level: int | None = None) -> dict[str, str]:
    """The fields Jasmin throws for one DLR: level 1 for ``ESME_*`` statuses, else a level-2 receipt.

    The receipt values are those of the DLR example in docs/gateways/d7.md §9; ``connector`` carries the receipt's
    own id (the source quirk of §4).
    """
    level = level if level is not None else 1 if message_status.startswith("ESME_") else 2
    fields = {"id": message_id, "level": str(level), "message_status": message_status}
    if level == 1:
        return {**fields, "connector": "smppc01"}
    return {
        **fields,
        "connector": "2567",
        "id_smsc": "2567",
        "sub": "001",
        "dlvrd": "001",
        "subdate": "2411211005",
        "donedate": "2411211006",
        "err": "000",
        "text": "Hello",
    }


def report_fields(request_id: str, status: str, *, recipient: str = "+971501234567") -> dict[str, str]:
    """The fields of one v1 report (docs/gateways/d7.md §7), with a fresh per-recipient ``msg_id``."""
    return {
        "request_id": request_id,
        "msg_id": str(uuid.uuid4()),
        "recipient": recipient,
        "originator": "SignOTP",
        "status": status,
    }


def dlr_callback(fields: Mapping[str, object], *, method: str = "POST") -> Callback:
    """A DLR as Jasmin's DLRThrower sends it: URL-encoded fields in the query (GET) or a form body (POST).

    The Content-Type is the form type either way (Jasmin sends it on GET too); see :data:`DLR_HEADERS`.
    """
    encoded = urlencode({key: str(value) for key, value in fields.items()}).encode()
    if method.upper() == "GET":
        return "GET", encoded, b"", FORM
    return "POST", b"", encoded, FORM


def report_callback(fields: Mapping[str, object], *, as_json: bool = False) -> Callback:
    """A v1 report: POSTed as a form (the vendor's wording) or, ``as_json``, as the JSON object it prints."""
    if as_json:
        return "POST", b"", json.dumps(dict(fields)).encode(), "application/json"
    return "POST", b"", urlencode({key: str(value) for key, value in fields.items()}).encode(), FORM


def post_dlr(url: str, fields: Mapping[str, object], *, method: str = "POST") -> requests.Response:
    """Throw a DLR at ``url`` as Jasmin does (GET appends ``?<fields>`` to the URL); the caller checks the ACK."""
    verb, query, body, _ = dlr_callback(fields, method=method)
    target = f"{url}?{query.decode()}" if query else url
    return requests.request(
        verb, target, data=body or None, headers=DLR_HEADERS, timeout=CALLBACK_TIMEOUT, allow_redirects=False
    )


def post_report(url: str, fields: Mapping[str, object], *, as_json: bool = False) -> requests.Response:
    """POST a v1 report to ``url``, as a form or as JSON."""
    verb, _, body, content_type = report_callback(fields, as_json=as_json)
    return requests.request(
        verb, url, data=body, headers={"Content-Type": content_type}, timeout=CALLBACK_TIMEOUT, allow_redirects=False
    )
