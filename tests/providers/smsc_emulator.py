"""A local SMSC: ``send.php``, ``wait_call.php`` and ``balance.php`` as docs/gateways/smsc.md §1-§6 describe them.

Like SMSC it takes the same parameters by GET query or POST form, checks ``apikey`` or ``login`` + ``psw`` (the
password or its lowercase MD5 hex) before anything else, and reports every error with HTTP 200. It answers
``fmt=3`` with JSON; any other ``fmt`` gets the default plain-text form (``fmt=0``), which is what SMSC does
for a client that forgets to ask for JSON.

Knobs besides ``mode`` (``"ok"``, ``"error:<N>"`` for SMSC error N, ``"5xx"``, ``"timeout"``, ``"malformed"``):

- ``all_phones``: the shape of ``wait_call``'s ``all_phones`` (docs/gateways/smsc.md §4 leaves list vs string open);
- ``json_types``: ``"documented"`` (ids and counts as numbers, amounts and phones as strings, as captured),
  ``"strings"`` (every value a string, as one client's tests had it) or ``"numbers"`` (every numeric string
  a JSON number);
- ``send_extra``: fields added to a send success (``cost``/``balance`` as with ``cost=3``, ``phones`` with ``op=1``);
- ``malformed_body``: the body of ``mode = "malformed"``.

:func:`smsc_callback` builds a callback to our handler as SMSC sends it (docs/gateways/smsc.md §7-§9, vectors in
§10), and :func:`post_callback` POSTs one to a local URL.
"""

from __future__ import annotations

import hashlib
import json
import re
import zlib
from typing import Any, Literal
from urllib.parse import urlencode

import requests
from werkzeug.wrappers import Request, Response

from tests.providers.emulator import Emulator, Seen

# Descriptions as captured (docs/gateways/smsc.md §6); the texts of 1, 4 and 5 were never captured, so these
# follow the vendor's meaning table (the same section).
DESCRIPTIONS = {
    1: "parameters error",
    2: "authorise error",
    3: "no money",
    4: "IP address is temporarily blocked",
    5: "invalid date format",
    6: "message is denied",
    7: "invalid number",
    8: "can't to deliver",
    9: "duplicate request, wait a minute",
}
WITH_ID = frozenset({3, 6, 7, 8})  # errors that name the message (send.php)
AUTO_ID = 1563  # SMSC's id for a message sent without a client id
CALL_NUMBERS = ("79010000000", "79010000001")

AllPhones = Literal["list", "comma", "semicolon", "spaces", "single", "absent"]
JsonTypes = Literal["documented", "strings", "numbers"]


class SmscEmulator(Emulator):
    """SMSC's HTTP API on 127.0.0.1. Credentials: ``apikey``, or ``login`` + ``password``."""

    def __init__(self, apikey: str = "", login: str = "", password: str = "") -> None:
        super().__init__()
        self.apikey, self.login, self.password = apikey, login, password
        self.all_phones: AllPhones = "list"
        self.call_numbers: tuple[str, ...] = CALL_NUMBERS
        self.balance = "250.80"
        self.json_types: JsonTypes = "documented"
        self.send_extra: dict[str, Any] = {}
        self.malformed_body = "<html><body>Site under maintenance</body></html>"

    def answer(self, request: Request, seen: Seen) -> Response:
        """SMSC's reply to one request: the forced error or body of ``mode``, else what SMSC would say."""
        params = {**seen.query, **seen.form}
        endpoint = seen.path.rsplit("/", 1)[-1]
        if endpoint not in ("send.php", "wait_call.php", "balance.php"):
            return Response("<html><body>404 Not Found</body></html>", status=404, mimetype="text/html")
        if self.mode == "malformed":
            return Response(self.malformed_body, mimetype="text/html")
        if self.mode.startswith("error:"):
            return self._error(int(self.mode.removeprefix("error:")), endpoint, params)
        if not self._authorised(params):
            return self._error(2, endpoint, params)
        if endpoint == "send.php":
            if not params.get("phones") or not params.get("mes"):
                return self._error(1, endpoint, params)
            return self._reply({"id": params.get("id") or AUTO_ID, "cnt": 1, **self.send_extra}, params)
        if endpoint == "wait_call.php":
            if not params.get("phone"):
                return self._error(1, endpoint, params)
            return self._reply({"phone": self.call_numbers[0], **self._all_phones()}, params)
        currency = {"currency": "RUR"} if params.get("cur") == "1" else {}
        return self._reply({"balance": self.balance, **currency}, params)

    def _authorised(self, params: dict[str, str]) -> bool:
        if self.apikey and params.get("apikey") == self.apikey:
            return True
        md5 = hashlib.md5(self.password.encode(), usedforsecurity=False).hexdigest()
        return bool(self.login) and params.get("login") == self.login and params.get("psw") in (self.password, md5)

    def _all_phones(self) -> dict[str, Any]:
        first, numbers = self.call_numbers[0], self.call_numbers
        shapes: dict[str, dict[str, Any]] = {
            "list": {"all_phones": list(numbers)},
            "comma": {"all_phones": ",".join(numbers)},
            "semicolon": {"all_phones": "; ".join(numbers)},
            "spaces": {"all_phones": " ".join(numbers)},
            "single": {"all_phones": first},
            "absent": {},
        }
        return shapes[self.all_phones]

    def _error(self, code: int, endpoint: str, params: dict[str, str]) -> Response:
        body: dict[str, Any] = {"error": DESCRIPTIONS.get(code, "unknown error"), "error_code": code}
        if code in WITH_ID and endpoint == "send.php":
            body["id"] = params.get("id") or AUTO_ID
        return self._reply(body, params)

    def _reply(self, body: dict[str, Any], params: dict[str, str]) -> Response:
        if params.get("fmt") != "3":
            return Response(_plain(body), mimetype="text/plain")
        typed = {key: _typed(value, self.json_types) for key, value in body.items()}
        return Response(json.dumps(typed), mimetype="application/json")


def _typed(value: Any, json_types: JsonTypes) -> Any:
    if isinstance(value, list):
        return [_typed(v, json_types) for v in value]
    if json_types == "strings":
        return str(value)
    if json_types == "numbers" and isinstance(value, str):
        for kind in (int, float):
            try:
                return kind(value)
            except ValueError:
                pass
    return value


def _plain(body: dict[str, Any]) -> str:
    """The ``fmt=0`` text form (wait_call's is unconfirmed: ``phone`` alone)."""
    if "error_code" in body:
        suffix = f", ID - {body['id']}" if "id" in body else ""
        return f"ERROR = {body['error_code']} ({body['error']}){suffix}"
    if "cnt" in body:
        return f"OK - {body['cnt']} SMS, ID - {body['id']}"
    return str(body.get("balance", body.get("phone")))


HashName = Literal["md5", "sha1", "crc32"]
# The fields each kind of callback signs, in order (docs/gateways/smsc.md §9).
SIGNED = {"sms": ("phone", "mes", "to"), "call": ("phone", "ts"), "status": ("id", "phone", "status")}


def smsc_callback(
    fields: dict[str, str],
    *,
    secret: str | None,
    hash: HashName = "md5",
    crc32_hex: bool = False,
    charset: str = "windows-1251",
    fmt_json: bool = False,
    hash_encoding: str | None = None,
    json_numbers: bool = False,
    options_in_query: bool = False,
) -> tuple[str, bytes, str]:
    """One SMSC callback to our handler: (the query string SMSC calls our URL with, body, content type).

    The handler URL is taken to be configured as ``?<hash>=<secret>[&charset=<charset>][&fmt=3]``: ``charset`` is
    left out for windows-1251 (SMSC's default, what an operator who sets none gets), and no hash option without a
    ``secret``. SMSC posts every one of the URL's parameters in the body ("all parameters are passed by POST"), the
    secret replaced by its hash, so the query string is empty and the secret never travels. With
    ``options_in_query``, ``charset`` and ``fmt`` come in the query string instead, as SMSC sends parameters written
    after a ``!`` in the URL (``https://host/!charset=utf-8?sha1=<secret>``). The kind follows ``fields``
    (``mes``: incoming SMS, ``waitcall``: call, else status); the hash field is added after them, over the kind's
    colon-joined fields and the secret encoded in ``hash_encoding`` (default the charset). The posted options come
    last in the body (the status example of docs/gateways/smsc.md §10); with ``fmt_json``, as members of the JSON
    object.

    The body is a form in ``charset`` (``application/x-www-form-urlencoded``, a space as ``+``) or, with
    ``fmt_json``, a JSON object in ``charset`` (``application/json``; SMSC's JSON content type is unconfirmed), its
    integer and decimal strings as JSON numbers with ``json_numbers`` (SMSC's JSON value types are unconfirmed).
    """
    kind = "sms" if "mes" in fields else "call" if "waitcall" in fields else "status"
    body_fields = dict(fields)
    if secret is not None:
        message = ":".join([*(fields.get(name, "") for name in SIGNED[kind]), secret])
        body_fields[hash] = callback_hash(hash, message.encode(hash_encoding or charset), crc32_hex=crc32_hex)
    options = {
        **({"charset": charset} if charset.lower() != "windows-1251" else {}),
        **({"fmt": "3"} if fmt_json else {}),
    }
    query = urlencode(options) if options_in_query else ""
    if not options_in_query:
        body_fields.update(options)
    if fmt_json:
        values = {
            key: _number(value) if json_numbers and key not in options else value for key, value in body_fields.items()
        }
        return query, json.dumps(values, ensure_ascii=False).encode(charset), "application/json"
    return query, urlencode(body_fields, encoding=charset).encode("ascii"), "application/x-www-form-urlencoded"


def callback_hash(hash: HashName, data: bytes, *, crc32_hex: bool = False) -> str:
    """The value of SMSC's ``md5``/``sha1``/``crc32`` field over ``data``: lowercase hex, or PHP ``crc32()`` decimal."""
    if hash == "crc32":
        crc = zlib.crc32(data) & 0xFFFFFFFF
        return f"{crc:08x}" if crc32_hex else str(crc)
    return hashlib.new(hash, data, usedforsecurity=False).hexdigest()


def post_callback(
    url: str,
    fields: dict[str, str],
    *,
    secret: str | None,
    hash: HashName = "md5",
    crc32_hex: bool = False,
    charset: str = "windows-1251",
    fmt_json: bool = False,
    hash_encoding: str | None = None,
    json_numbers: bool = False,
    options_in_query: bool = False,
    timeout: float = 5.0,
) -> requests.Response:
    """POST :func:`smsc_callback`'s callback to a local ``url`` (the handler URL without its query), as SMSC would."""
    query, body, content_type = smsc_callback(
        fields,
        secret=secret,
        hash=hash,
        crc32_hex=crc32_hex,
        charset=charset,
        fmt_json=fmt_json,
        hash_encoding=hash_encoding,
        json_numbers=json_numbers,
        options_in_query=options_in_query,
    )
    target = f"{url}{'&' if '?' in url else '?'}{query}" if query else url
    return requests.post(
        target, data=body, headers={"Content-Type": content_type}, timeout=timeout, allow_redirects=False
    )


def _number(value: str) -> Any:
    if re.fullmatch(r"-?(0|[1-9]\d*)", value):
        return int(value)
    if re.fullmatch(r"-?(0|[1-9]\d*)\.\d+", value):
        return float(value)
    return value
