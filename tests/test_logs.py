"""Log lines: one JSON object each, one per request, and never a secret (issues 9 and 11).

The end-to-end part runs what ships: the Procfile's gunicorn with gunicorn.conf.py (:mod:`tests.servers`), two workers,
with SMSC and D7 configured. It sends what the gateways and the clients really send: an SMS verification from start to
proof token (a wrong code, then the right one), SMSC callbacks with the handler URL's ``sha1=``/``md5=``/``crc32=``
secret in the query string (right and wrong secrets), D7 receipts and reports with the webhook token in the path (right
and wrong tokens), API calls with the API key in the query string, a 404, requests with an ``X-Request-Id`` that is kept
(a UUID, a trace id) and ones that are not (malformed, or a secret a client put there: the API key, the code, the proof
token, a token-like string), requests gunicorn cannot parse, and a send that fails at both gateways so the app logs
errors. Then it stops the server and reads everything it wrote (stdout and stderr: gunicorn's lines, the app's, the
request lines): every line must be a JSON object; every secret value and every code sent is searched for in every line,
and every phone number sent must appear only masked; and the lines that must be there instead (the request line of each
request, with its route template, its verification and its request id; the redacted error lines) are looked for, so it
cannot pass by logging nothing. A second, short run checks that ``VERIFY_LOG_FORMAT=text`` gives gunicorn's readable
lines.

The unit part pins :func:`verify.logs.redact`, what :class:`verify.logs.RedactingLogger` does to each access log
atom and to the error log's records, the JSON fields (:class:`verify.logs.JsonFormatter`), and where the format is
chosen (gunicorn.conf.py, ``Settings.log_format``, ``verify dev``).
"""

from __future__ import annotations

import contextvars
import io
import json
import logging
import os
import re
import runpy
import socket
import subprocess
import sys
import threading
import time
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from types import SimpleNamespace
from typing import Any
from unittest import mock
from urllib.parse import urlencode

import hypothesis
import pytest
import redis
import requests
from flask.testing import FlaskClient
from gunicorn.config import Config  # type: ignore[import-untyped]
from hypothesis import strategies as st

from tests.conftest import API_KEY, SECRET_KEY
from tests.providers import d7_emulator
from tests.providers.d7_emulator import D7Emulator, post_dlr, post_report, report_fields
from tests.providers.smsc_emulator import HashName, smsc_callback
from tests.providers.telegram_emulator import TelegramEmulator
from tests.servers import AUTH, ROOT, SMSC_APIKEY, CountingSmsc, Server, gunicorn_server
from verify import cli
from verify.cli import gunicorn_command
from verify.config import Settings
from verify.embedded import EmbeddedRedis
from verify.errors import ConfigError
from verify.logs import (
    LOGGER_CLASSES,
    REDACTED,
    REQUEST_ID,
    JsonFormatter,
    RedactingLogger,
    Redaction,
    TextLogger,
    _log_thread_exception,
    log_format,
    log_info,
    log_request,
    redact,
)

SMSC_SECRET = "smscSecret-Q7w9Zr4T2pLx"
WRONG_SMSC_SECRET = "wrongSmsc-V4n7Jd3Qs6Ay"
D7_WEBHOOK_TOKEN = "d7hook-K3v8Nq2Rm5WsY1"
WRONG_D7_TOKEN = "d7wrong-E9r2Wb5Ht8Zc"
D7_API_TOKEN = "d7api-B6y1Hc9Fj4PeU0"
WRONG_API_KEY = "wrong-api-key-T5u2Xg8Lk1Md"
PUBLIC_URL = "https://verify.example.com"
CODE_LENGTH = 8  # 8 digits: a code cannot be mistaken for a pid, a port or a duration in the log
SETTINGS = {
    "VERIFY_SMS_PROVIDERS": "smsc,d7",
    "VERIFY_CALL_PROVIDER": "smsc",
    "VERIFY_SMSC_SECRET": SMSC_SECRET,
    "VERIFY_SMSC_HASH": "sha1,md5,crc32",
    "VERIFY_D7_API": "v1",
    "VERIFY_D7_TOKEN": D7_API_TOKEN,
    "VERIFY_D7_WEBHOOK_TOKEN": D7_WEBHOOK_TOKEN,
    "VERIFY_PUBLIC_URL": PUBLIC_URL,
    "VERIFY_CODE_LENGTH": str(CODE_LENGTH),
    "VERIFY_CAPTCHA_MODE": "off",
    "VERIFY_RESEND_COOLDOWN": "0",
    "VERIFY_BREAKER_FAILURES": "1000",
    "VERIFY_VOICE_PROVIDERS": "smsc",
}
TELEGRAM_TOKEN = "777001:tg-gateway-Zq8vR2mK5w"
TIMEOUT = 10.0
# The phones of the scenario (each a number the log may show only masked).
PHONES = ("+79991230001", "+79991230002", "+79991230003", "+79991230004", "+79991230005", "+79991230006")
# X-Request-Id values: taken as they are (a trace id, a UUID), and refused (a blank, a character outside the set, too
# long, and shapes a secret has: each would once have been logged and echoed as it was).
START_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
GOOD_ID = "0b7e2d1c-4a5f-4e3b-9c8d-7a6b5c4d3e2f"
BAD_IDS = ("not a good id", "id<script>", "x" * 129)
SIX_DIGIT_CODE = "604173"
TOKEN_LIKE = "sk_live_4eC39HqLyjWDarjtT1zdp7dc"
# Secrets sent as X-Request-Id, by name (the code and the proof token of the scenario are added as it runs).
SECRET_IDS = {"api key": API_KEY, "six-digit code": SIX_DIGIT_CODE, "token-like": TOKEN_LIKE}
GENERATED_ID = re.compile(r"[0-9a-f]{32}")
TIME = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z")
TEXT_LINE = re.compile(r"\[\d{4}-\d\d-\d\d \d\d:\d\d:\d\d [-+]\d{4}\] \[\d+\] \[(DEBUG|INFO|WARNING|ERROR|CRITICAL)\] ")

Record = dict[str, Any]


@dataclass
class Logged:
    """What the server wrote (its lines, and those that are JSON objects, parsed), and every secret value that went
    through it, by name."""

    text: str = ""
    records: list[Record] = field(default_factory=list)
    not_json: list[str] = field(default_factory=list)
    secrets: dict[str, str] = field(default_factory=dict)
    statuses: dict[str, int] = field(default_factory=dict)  # what each request of the scenario was answered
    echoed: dict[str, str] = field(default_factory=dict)  # the X-Request-Id each request got back, by name
    verification_id: str = ""  # of the SMS verification, whose API lines are looked for

    def keep(self, name: str, value: str) -> str:
        """Remember ``value`` as a secret the log must not hold."""
        assert value, name
        self.secrets[name] = value
        return value

    def read(self, text: str) -> None:
        """Take the server's whole output."""
        self.text = text
        for line in text.splitlines():
            try:
                record = json.loads(line)
            except ValueError:
                record = None
            if isinstance(record, dict):
                self.records.append(record)
            else:
                self.not_json.append(line)

    def where(self, **fields: object) -> list[Record]:
        """The records with these values."""
        return [r for r in self.records if all(r.get(name) == value for name, value in fields.items())]

    def matching(self, pattern: str, **fields: object) -> list[Record]:
        """The records with these values whose message matches the regular expression ``pattern``."""
        found = re.compile(pattern)
        return [r for r in self.where(**fields) if found.search(str(r.get("message", "")))]

    def requests(self, method: str, route: str, status: int) -> list[Record]:
        """The request lines of ``method route`` answered ``status``."""
        return self.where(logger="verify.request", method=method, route=route, status=status)


# the end-to-end run


@pytest.fixture(scope="module")
def logged(redis_server: EmbeddedRedis, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Logged]:
    """Run the whole scenario against one server, stop it, and hand over everything it wrote."""
    client = redis.Redis.from_url(redis_server.url)
    client.flushall()
    client.close()
    result = Logged()
    for name, value in (
        ("VERIFY_SMSC_SECRET", SMSC_SECRET),
        ("wrong SMSC secret", WRONG_SMSC_SECRET),
        ("VERIFY_D7_WEBHOOK_TOKEN", D7_WEBHOOK_TOKEN),
        ("wrong D7 token", WRONG_D7_TOKEN),
        ("VERIFY_D7_TOKEN", D7_API_TOKEN),
        ("VERIFY_API_KEYS", API_KEY),
        ("wrong API key", WRONG_API_KEY),
        ("VERIFY_SECRET_KEY", SECRET_KEY),
        ("VERIFY_SMSC_APIKEY", SMSC_APIKEY),
        ("VERIFY_TELEGRAM_TOKEN", TELEGRAM_TOKEN),
        ("six-digit code as X-Request-Id", SIX_DIGIT_CODE),
        ("token-like X-Request-Id", TOKEN_LIKE),
    ):
        result.keep(name, value)
    d7 = D7Emulator("v1", token=D7_API_TOKEN)
    d7.start()
    smsc = CountingSmsc()
    smsc.start()
    telegram = TelegramEmulator(token=TELEGRAM_TOKEN)
    telegram.start()
    log_dir = tmp_path_factory.mktemp("logs")
    settings = {**SETTINGS, "VERIFY_D7_URL": d7.url, "VERIFY_TELEGRAM_TOKEN": TELEGRAM_TOKEN}
    try:
        with gunicorn_server(
            redis_server.url, log_dir, {**settings, "VERIFY_TELEGRAM_URL": telegram.url}, workers=2, smsc=smsc
        ) as server:
            _scenario(server, d7, result)
            _voice_and_telegram(server, telegram, result)
            log = server.log
        result.read(log.read_text(encoding="utf-8", errors="replace"))  # the server has stopped: all of it
    finally:
        telegram.stop()
        smsc.stop()
        d7.stop()
    yield result


def _scenario(server: Server, d7: D7Emulator, result: Logged) -> None:
    _api(server, result)
    _request_ids(server, result)
    _call(server, result)
    _smsc_callbacks(server, result)
    _d7(server, d7, result)
    _failing_gateways(server, d7, result)
    _unparseable(server, result)


def _api(server: Server, result: Logged) -> None:
    """An SMS verification from start to proof token, with a wrong code, a wrong key and keys in the query."""
    auth = {"Authorization": f"Bearer {API_KEY}"}
    mark = server.smsc.mark()
    started = requests.post(
        server.url("/v1/verifications"),
        json={"phone": PHONES[0]},
        headers={**auth, "X-Request-Id": START_ID},
        timeout=TIMEOUT,
    )
    assert started.status_code == 201, started.text
    result.echoed["start"] = started.headers.get("X-Request-Id", "")
    verification_id = result.verification_id = started.json()["id"]
    code = _code(server.smsc.since(mark, "sms")[0].text)
    result.keep("code sent by SMSC", code)
    wrong = f"{(int(code) + 1) % 10**CODE_LENGTH:0{CODE_LENGTH}d}"
    result.keep("wrong code", wrong)
    check = server.url(f"/v1/verifications/{verification_id}/check")
    result.statuses["wrong code"] = requests.post(
        check, json={"code": wrong}, headers=auth, timeout=TIMEOUT
    ).status_code
    # A client that sends the code, then the proof token, as its request id too.
    approved = requests.post(check, json={"code": code}, headers={**auth, "X-Request-Id": code}, timeout=TIMEOUT)
    assert approved.status_code == 200, approved.text
    result.echoed["code"] = approved.headers.get("X-Request-Id", "")
    token = result.keep("proof token (sms)", approved.json()["token"])
    verified = requests.post(
        server.url("/v1/tokens/verify"), json={"token": token}, headers={**auth, "X-Request-Id": token}, timeout=TIMEOUT
    )
    assert verified.status_code == 200, verified.text
    result.echoed["proof token"] = verified.headers.get("X-Request-Id", "")
    result.statuses["wrong key"] = requests.post(
        server.url("/v1/verifications"),
        json={"phone": PHONES[1]},
        headers={"Authorization": f"Bearer {WRONG_API_KEY}"},
        timeout=TIMEOUT,
    ).status_code
    # A client that puts its key or the proof token in the URL, and a browser page whose URL holds the token.
    result.statuses["key in query"] = requests.get(
        server.url(f"/v1/verifications/{verification_id}"),
        params={"api_key": API_KEY, "access_token": token},
        headers=auth,
        timeout=TIMEOUT,
    ).status_code
    result.statuses["referer"] = requests.get(
        server.url("/healthz"),
        headers={"Referer": f"https://app.example.com/done?token={token}&step=2"},
        timeout=TIMEOUT,
    ).status_code
    result.statuses["not found"] = requests.get(server.url("/no/such/page"), timeout=TIMEOUT).status_code


def _request_ids(server: Server, result: Logged) -> None:
    """A UUID as X-Request-Id, taken as it is; malformed ones and secrets, each replaced by a new id."""
    for name, given in (
        ("good", GOOD_ID),
        *((f"bad {i}", bad) for i, bad in enumerate(BAD_IDS)),
        *SECRET_IDS.items(),
    ):
        answer = requests.get(server.url("/healthz"), headers={"X-Request-Id": given}, timeout=TIMEOUT)
        result.statuses[f"{name} request id"] = answer.status_code
        result.echoed[name] = answer.headers.get("X-Request-Id", "")


def _call(server: Server, result: Logged) -> None:
    """A call verification through SMSC's wait_call, approved by SMSC's signed callback."""
    auth = {"Authorization": f"Bearer {API_KEY}"}
    started = requests.post(
        server.url("/v1/verifications"),
        json={"phone": "+79991230003", "channel": "call"},
        headers=auth,
        timeout=TIMEOUT,
    )
    assert started.status_code == 201, started.text
    verification_id = started.json()["id"]
    fields = {"phone": "79991230003", "waitcall": "1", "ts": str(int(time.time()))}
    result.statuses["smsc call sha1"] = _smsc(server, fields, "sha1", SMSC_SECRET).status_code
    got = requests.get(server.url(f"/v1/verifications/{verification_id}"), headers=auth, timeout=TIMEOUT)
    assert got.json()["status"] == "approved", got.text
    result.keep("proof token (call)", got.json()["token"])


def _smsc(
    server: Server,
    fields: dict[str, str],
    hash: HashName,
    secret: str,
    *,
    name: str | None = None,
    utf8_json: bool = False,
    crc32_hex: bool = False,
) -> requests.Response:
    """An SMSC callback signed with ``secret``, POSTed to the handler URL with ``?<name>=<secret>`` in its query
    string (``name`` is ``hash`` unless given), followed by ``charset=utf-8&fmt=3`` with ``utf8_json``."""
    _, body, content_type = smsc_callback(
        fields,
        secret=secret,
        hash=hash,
        crc32_hex=crc32_hex,
        charset="utf-8" if utf8_json else "windows-1251",
        fmt_json=utf8_json,
    )
    query = urlencode({name or hash: secret, **({"charset": "utf-8", "fmt": "3"} if utf8_json else {})})
    return requests.post(
        server.url(f"/webhooks/smsc?{query}"),
        data=body,
        headers={"Content-Type": content_type},
        timeout=TIMEOUT,
        allow_redirects=False,
    )


def _smsc_callbacks(server: Server, result: Logged) -> None:
    """Delivery statuses signed every way SMSC signs, with the right secret and a wrong one."""
    fields = {
        "id": result.verification_id,
        "phone": "79991230001",
        "status": "1",
        "ts": str(int(time.time())),
        "cnt": "1",
        "type": "0",
    }
    sends: dict[str, requests.Response] = {
        "smsc sha1": _smsc(server, fields, "sha1", SMSC_SECRET),
        "smsc md5": _smsc(server, fields, "md5", SMSC_SECRET),
        "smsc crc32": _smsc(server, fields, "crc32", SMSC_SECRET),
        "smsc crc32 hex": _smsc(server, fields, "crc32", SMSC_SECRET, crc32_hex=True),
        "smsc json utf-8": _smsc(server, fields, "sha1", SMSC_SECRET, utf8_json=True),
        "smsc wrong secret": _smsc(server, fields, "sha1", WRONG_SMSC_SECRET),
        # The option's name in capitals, as an operator may type it into SMSC's cabinet.
        "smsc SHA1": _smsc(server, fields, "sha1", SMSC_SECRET, name="SHA1"),
    }
    for name, answer in sends.items():
        result.statuses[name] = answer.status_code


def _d7(server: Server, d7: D7Emulator, result: Logged) -> None:
    """An SMS sent through D7, its v1 report, legacy receipts (POST and GET), with the right token and wrong ones."""
    auth = {"Authorization": f"Bearer {API_KEY}"}
    server.smsc.mode = "5xx"  # SMSC fails, so the chain moves on to D7
    try:
        started = requests.post(
            server.url("/v1/verifications"), json={"phone": "+79991230004"}, headers=auth, timeout=TIMEOUT
        )
    finally:
        server.smsc.mode = "ok"
    assert started.status_code == 201, started.text
    sent = d7.last.json()["messages"][0]["content"]
    result.keep("code sent by D7", _code(sent))
    request_id = d7.issued[-1]
    right, wrong = f"/webhooks/d7/{D7_WEBHOOK_TOKEN}", f"/webhooks/d7/{WRONG_D7_TOKEN}"
    receipt = d7_emulator.dlr_fields(request_id, "DELIVRD")
    result.statuses.update(
        {
            "d7 report": post_report(server.url(right + "/report"), report_fields(request_id, "delivered")).status_code,
            "d7 report wrong token": post_report(
                server.url(wrong + "/report"), report_fields(request_id, "delivered")
            ).status_code,
            "d7 dlr": post_dlr(server.url(right), receipt).status_code,
            "d7 dlr get": post_dlr(server.url(right), receipt, method="GET").status_code,
            "d7 dlr wrong token": post_dlr(server.url(wrong), receipt).status_code,
            # A public URL that ends in "/" gives D7 a URL with "//": werkzeug redirects it.
            "d7 dlr double slash": post_dlr(server.url(f"/webhooks//d7/{D7_WEBHOOK_TOKEN}"), receipt).status_code,
        }
    )


def _failing_gateways(server: Server, d7: D7Emulator, result: Logged) -> None:
    """A start both gateways refuse: the app logs each failure, D7's echoing our report URL with its token."""
    auth = {"Authorization": f"Bearer {API_KEY}"}
    server.smsc.mode = "5xx"
    d7.reply = (
        400,
        {
            "detail": {
                "code": "INVALID_REPORT_URL",
                "message": f"report_url {PUBLIC_URL}/webhooks/d7/{D7_WEBHOOK_TOKEN}/report is not reachable",
            }
        },
    )
    try:
        failed = requests.post(
            server.url("/v1/verifications"), json={"phone": "+79991230005"}, headers=auth, timeout=TIMEOUT
        )
    finally:
        server.smsc.mode = "ok"
        d7.reply = None
    result.statuses["both gateways fail"] = failed.status_code


def _unparseable(server: Server, result: Logged) -> None:
    """Requests gunicorn refuses or the app fails on, each with a secret in its URL."""
    smsc = f"/webhooks/smsc?sha1={SMSC_SECRET}&charset=utf-8"
    d7 = f"/webhooks/d7/{D7_WEBHOOK_TOKEN}"
    host = f"Host: {server.host}:{server.port}\r\nConnection: close\r\n"
    raw: dict[str, bytes] = {
        # Not printable ASCII in the target: gunicorn's message quotes the whole request line.
        "raw utf-8 in smsc query": f"POST {smsc}&mes=Привет HTTP/1.1\r\n{host}Content-Length: 0\r\n\r\n".encode(),
        "raw utf-8 in d7 query": f"GET {d7}?text=Привет HTTP/1.1\r\n{host}\r\n".encode(),
        "request line too long": f"GET {smsc}&pad={'x' * 5000} HTTP/1.1\r\n{host}\r\n".encode(),
        # Two Content-Lengths: refused after the request line was read, so gunicorn logs an access line for it.
        "two content lengths": (
            f"POST {d7}/report HTTP/1.1\r\n{host}Content-Length: 0\r\nContent-Length: 1\r\n\r\n".encode()
        ),
        # A chunked body that is not: the app fails while reading it, in the webhook, and logs the exception.
        "bad chunked body": (
            f"POST {smsc} HTTP/1.1\r\n{host}Transfer-Encoding: chunked\r\n"
            "Content-Type: application/x-www-form-urlencoded\r\n\r\nzz\r\nid=1\r\n0\r\n\r\n"
        ).encode(),
    }
    for name, data in raw.items():
        result.statuses[name] = _raw(server, data)


def _raw(server: Server, data: bytes) -> int:
    """Send bytes as they are; the answer's status (0 when the connection closed without one)."""
    with socket.create_connection((server.host, server.port), timeout=TIMEOUT) as sock:
        sock.sendall(data)
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    found = re.match(rb"HTTP/1\.[01] (\d{3})", answer)
    return int(found.group(1)) if found else 0


def _voice_and_telegram(server: Server, telegram: TelegramEmulator, result: Logged) -> None:
    """A spoken code through SMSC (its digits spelt out), and a Telegram code with its signed reports (a good one, a
    forged one, a replay), its right check (confirmed to Telegram from the worker) and a cancel (revoked)."""
    auth = {"Authorization": f"Bearer {API_KEY}"}
    mark = server.smsc.mark()
    voice = requests.post(
        server.url("/v1/verifications"), json={"phone": PHONES[4], "channel": "voice"}, headers=auth, timeout=TIMEOUT
    )
    assert voice.status_code == 201, voice.text
    spoken = server.smsc.since(mark, "voice")[0].text
    digits = re.search(r"\d(?:, \d)+", spoken)
    assert digits is not None, spoken
    result.keep("code spoken by SMSC", digits.group().replace(", ", ""))
    result.keep("code as spoken", digits.group())
    started = requests.post(
        server.url("/v1/verifications"), json={"phone": PHONES[3], "channel": "telegram"}, headers=auth, timeout=TIMEOUT
    )
    assert started.status_code == 201, started.text
    vid = started.json()["id"]
    code = result.keep("code sent by Telegram", str(telegram.last.json()["code"]))
    request_id = next(iter(telegram.taken))
    hook = server.url("/webhooks/telegram")
    result.statuses["telegram report"] = telegram.post_report(request_id, "delivered", url=hook).status_code
    result.keep("telegram report signature", telegram.posted[-1].headers["X-Request-Signature"])
    result.statuses["telegram replay"] = telegram.replay().status_code
    result.statuses["telegram forged"] = telegram.post_report(
        request_id, "read", url=hook, token="999:forger"
    ).status_code
    checked = requests.post(
        server.url(f"/v1/verifications/{vid}/check"), json={"code": code}, headers=auth, timeout=TIMEOUT
    )
    assert checked.status_code == 200, checked.text
    result.keep("proof token (telegram)", checked.json()["token"])
    deadline = time.monotonic() + TIMEOUT
    while not any(seen.path.endswith("/checkVerificationStatus") for seen in telegram.requests):
        assert time.monotonic() < deadline, "no checkVerificationStatus"
        time.sleep(0.05)
    other = requests.post(
        server.url("/v1/verifications"), json={"phone": PHONES[2], "channel": "telegram"}, headers=auth, timeout=TIMEOUT
    )
    assert other.status_code == 201, other.text
    result.keep("second code sent by Telegram", str(telegram.last.json()["code"]))
    result.statuses["telegram cancel"] = requests.delete(
        server.url(f"/v1/verifications/{other.json()['id']}"), headers=auth, timeout=TIMEOUT
    ).status_code
    while not any(seen.path.endswith("/revokeVerificationMessage") for seen in telegram.requests):
        assert time.monotonic() < deadline, "no revokeVerificationMessage"
        time.sleep(0.05)
    # A fallback chain: the Telegram code unread for a second, then the same code spoken by SMSC from a worker's
    # loop (the code is kept sealed on the record between the two).
    mark = server.smsc.mark()
    chained = requests.post(
        server.url("/v1/verifications"),
        json={"phone": PHONES[5], "channels": [{"channel": "telegram", "wait": 1}, "voice"]},
        headers=auth,
        timeout=TIMEOUT,
    )
    assert chained.status_code == 201, chained.text
    result.keep("code of a chain", str(telegram.last.json()["code"]))
    while not server.smsc.since(mark, "voice"):
        assert time.monotonic() < deadline + TIMEOUT, "no fallback step to voice"
        time.sleep(0.05)


def _code(text: str) -> str:
    found = re.search(rf"(?<!\d)\d{{{CODE_LENGTH}}}(?!\d)", text)
    assert found is not None, text
    return found.group()


# what the log must not hold


def _pieces(value: str) -> list[str]:
    """The value, and each long part of a dotted token (a proof token's payload, time and signature)."""
    return [value, *(part for part in value.split(".") if len(part) >= 12 and part != value)]


def _searched(logged: Logged) -> list[str]:
    """Every line as written, and every JSON line again with its values decoded (a ``\\u`` escape hides nothing)."""
    decoded = [" ".join(str(value) for value in record.values()) for record in logged.records]
    return [*logged.text.splitlines(), *decoded]


def test_no_secret_reaches_any_log_line(logged: Logged) -> None:
    leaks = {}
    for name, value in logged.secrets.items():
        pattern = re.compile(
            "|".join(
                rf"(?<![0-9A-Za-z]){re.escape(piece)}(?![0-9A-Za-z])" if piece.isdigit() else re.escape(piece)
                for piece in _pieces(value)
            )
        )
        lines = [pattern.sub("X" * 8, line) for line in _searched(logged) if pattern.search(line)]
        if lines:
            leaks[name] = lines
    assert not leaks, "secrets in the server's log (values replaced by X):\n" + json.dumps(
        leaks, indent=1, ensure_ascii=False
    )


def test_phones_appear_only_masked(logged: Logged) -> None:
    # The national digits of each number, however written (+7999..., 7999..., %2B7999...).
    numbers = re.compile("|".join(rf"(?<!\d){phone[1:]}(?!\d)" for phone in PHONES))
    assert [line for line in _searched(logged) if numbers.search(line)] == []
    assert logged.matching(rf"sent via smsc to {re.escape('+7999***0001')}$", logger="verify.service")


def test_the_traffic_was_answered_as_expected(logged: Logged) -> None:
    # What each request got, so the log lines checked below are those of handled requests.
    expected = {
        "wrong code": 422,
        "wrong key": 401,
        "key in query": 200,
        "referer": 200,
        "not found": 404,
        "good request id": 200,
        **{f"bad {i} request id": 200 for i in range(len(BAD_IDS))},
        **{f"{name} request id": 200 for name in SECRET_IDS},
        "telegram report": 200,
        "telegram replay": 403,
        "telegram forged": 403,
        "telegram cancel": 200,
        "smsc call sha1": 200,
        "smsc sha1": 200,
        "smsc md5": 200,
        "smsc crc32": 200,
        "smsc crc32 hex": 200,
        "smsc json utf-8": 200,
        "smsc SHA1": 200,
        "smsc wrong secret": 403,
        "d7 report": 200,
        "d7 report wrong token": 404,
        "d7 dlr": 200,
        "d7 dlr get": 200,
        "d7 dlr wrong token": 404,
        "d7 dlr double slash": 308,
        "both gateways fail": 503,
        "raw utf-8 in smsc query": 400,
        "raw utf-8 in d7 query": 400,
        "request line too long": 414,
        "two content lengths": 400,
        "bad chunked body": 500,
    }
    assert {name: logged.statuses.get(name) for name in expected} == expected


# what the log must hold instead


def test_every_line_is_one_json_object(logged: Logged) -> None:
    assert logged.not_json == []
    assert len(logged.records) > 50
    for record in logged.records:
        assert TIME.fullmatch(record["time"]), record
        assert record["level"] in ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"), record
        assert isinstance(record["logger"], str) and isinstance(record["message"], str), record
        assert isinstance(record["pid"], int), record


def test_gunicorn_lines_are_json_too(logged: Logged) -> None:
    assert logged.matching(r"^Starting gunicorn ", logger="gunicorn.error", level="INFO")
    booted = logged.matching(r"^Booting worker with pid: \d+$", logger="gunicorn.error")
    assert len(booted) == 2
    assert logged.matching(r"^Shutting down: Master$", logger="gunicorn.error")
    # Two workers: the request lines come from both.
    assert {r["pid"] for r in logged.where(logger="verify.request")} == {r["pid"] for r in booted}


@pytest.mark.parametrize(
    ("method", "route", "status"),
    [
        ("POST", "/v1/verifications", 201),
        ("POST", "/v1/verifications", 401),
        ("POST", "/v1/verifications", 503),
        ("POST", "/v1/tokens/verify", 200),
        ("GET", "/healthz", 200),
        ("GET", "<unmatched>", 404),
        ("POST", "/webhooks/smsc", 200),
        ("POST", "/webhooks/smsc", 403),
        ("POST", "/webhooks/smsc", 500),  # the app failed reading the body
        ("POST", "/webhooks/d7/<token>/report", 200),
        ("POST", "/webhooks/d7/<token>/report", 404),
        ("POST", "/webhooks/d7/<token>", 200),
        ("GET", "/webhooks/d7/<token>", 200),
        ("POST", "/webhooks/d7/<token>", 404),
        ("POST", "<unmatched>", 308),  # werkzeug's redirect of //webhooks
    ],
)
def test_each_request_has_its_line_with_the_route_template(
    logged: Logged, method: str, route: str, status: int
) -> None:
    lines = logged.requests(method, route, status)
    assert lines, f"no request line for {method} {route} {status}; the request lines:\n" + "\n".join(
        r["message"] for r in logged.where(logger="verify.request")
    )
    for line in lines:
        assert line["level"] == "INFO"
        assert re.fullmatch(rf"{method} {re.escape(route)} {status} \d+\.\dms", line["message"]), line
        assert isinstance(line["duration_ms"], float) and line["duration_ms"] >= 0, line
        assert isinstance(line["verification_id"], str), line


def test_request_lines_carry_the_verification(logged: Logged) -> None:
    verification_id = logged.verification_id
    [started] = logged.where(logger="verify.request", request_id=START_ID)
    assert started["verification_id"] == verification_id
    check = "/v1/verifications/<verification_id>/check"
    for status in (422, 200):  # the SMS verification's wrong and right codes (the Telegram one was checked too)
        lines = logged.requests("POST", check, status)
        assert [line["verification_id"] for line in lines].count(verification_id) == 1, lines
    # A GET with the key and the proof token in its query string: the route has neither.
    [got] = [
        r
        for r in logged.requests("GET", "/v1/verifications/<verification_id>", 200)
        if r["verification_id"] == verification_id
    ]
    assert "?" not in got["message"]
    for line in logged.where(logger="verify.request"):
        assert "?" not in line["route"] and line["route"] in line["message"], line


def test_one_line_per_request(logged: Logged) -> None:
    ids = [r["request_id"] for r in logged.where(logger="verify.request")]
    assert len(ids) == len(set(ids))


def test_the_request_id_is_echoed_and_logged(logged: Logged) -> None:
    assert logged.echoed["good"] == GOOD_ID
    assert logged.where(logger="verify.request", request_id=GOOD_ID, route="/healthz")
    # Every line logged while a request is served carries its id: the start's line of the app says what it sent.
    assert logged.echoed["start"] == START_ID
    [sent] = logged.matching(r"^verification \S+ sent via smsc to \+7999\*\*\*0001$", request_id=START_ID)
    assert sent["logger"] == "verify.service"
    [line] = logged.where(logger="verify.request", request_id=START_ID)
    assert (line["route"], line["status"], line["verification_id"]) == (
        "/v1/verifications",
        201,
        logged.verification_id,
    )


def test_a_malformed_request_id_is_replaced(logged: Logged) -> None:
    for i, bad in enumerate(BAD_IDS):
        generated = logged.echoed[f"bad {i}"]
        assert GENERATED_ID.fullmatch(generated), generated
        assert logged.where(logger="verify.request", request_id=generated, route="/healthz")
        assert bad not in logged.text
    # Requests that sent none get one too, each its own.
    others = [
        r["request_id"] for r in logged.where(logger="verify.request") if r["request_id"] not in (GOOD_ID, START_ID)
    ]
    assert others and all(GENERATED_ID.fullmatch(request_id) for request_id in others)


@pytest.mark.parametrize("name", [*SECRET_IDS, "code", "proof token"])
def test_a_secret_sent_as_the_request_id_is_neither_logged_nor_echoed(logged: Logged, name: str) -> None:
    given = (
        SECRET_IDS.get(name) or logged.secrets[{"code": "code sent by SMSC", "proof token": "proof token (sms)"}[name]]
    )
    generated = logged.echoed[name]
    assert GENERATED_ID.fullmatch(generated) and generated != given, generated
    # Its request was logged, under the new id, and no line holds the value (test_no_secret_reaches_any_log_line
    # searches the same lines for each piece of it, the proof token's parts included).
    assert len(logged.where(logger="verify.request", request_id=generated)) == 1
    pattern = re.compile(rf"(?<![0-9A-Za-z]){re.escape(given)}(?![0-9A-Za-z])")
    assert [line for line in _searched(logged) if pattern.search(line)] == []


def test_the_error_log_shows_unparseable_requests_redacted(logged: Logged) -> None:
    refused = logged.matching(
        r"^Invalid request from ip=127\.0\.0\.1: Invalid HTTP request line", logger="gunicorn.error", level="WARNING"
    )
    assert len(refused) == 2, refused
    assert any(f"/webhooks/smsc?sha1={REDACTED}&charset=utf-8&mes=" in r["message"] for r in refused), refused
    assert any(f"/webhooks/d7/{REDACTED}?text=" in r["message"] for r in refused), refused
    assert logged.matching(r"Invalid request from ip=127\.0\.0\.1: Request Line is too large", logger="gunicorn.error")
    # Refused after its request line was read: no request line (the app never saw it), gunicorn's warning only.
    assert logged.matching(
        r"^Invalid request from ip=127\.0\.0\.1: Invalid HTTP Header: 'CONTENT-LENGTH'$", logger="gunicorn.error"
    )


def test_the_app_logs_its_errors_redacted(logged: Logged) -> None:
    assert logged.matching(r"^gateway failed: smsc: HTTP 502", level="WARNING")
    [d7] = logged.matching(r"^gateway failed: d7: HTTP 400")
    assert f"{PUBLIC_URL}/webhooks/d7/{REDACTED}/report is not reachable" in d7["message"]
    assert GENERATED_ID.fullmatch(d7["request_id"])  # logged while the start was served
    assert logged.matching(r"^delivery-failed: every gateway failed", level="ERROR")
    [unhandled] = logged.matching(r"^unhandled error$", level="ERROR")  # the bad chunked body
    assert unhandled["exception"].startswith("Traceback (most recent call last):"), unhandled
    [request] = logged.where(logger="verify.request", request_id=unhandled["request_id"])
    assert (request["route"], request["status"]) == ("/webhooks/smsc", 500)


def test_a_fallback_step_is_logged_without_its_code(logged: Logged) -> None:
    """The worker's loop says which verification moved on, from and to which channel, and why; the code it sent
    again is in no line (test_no_secret_reaches_any_log_line)."""
    [step] = logged.matching(r"^verification [0-9a-f]{28} falls back from telegram to voice \(wait\)$", level="INFO")
    assert step["logger"] == "verify.service"


def test_the_master_does_not_import_the_app(logged: Logged) -> None:
    # Loading the logger class must not import requests and ssl into the master before gevent patches the workers.
    assert "MonkeyPatchWarning" not in logged.text


# VERIFY_LOG_FORMAT=text


def test_the_text_format_is_readable(redis_server: EmbeddedRedis, tmp_path: Path) -> None:
    client = redis.Redis.from_url(redis_server.url)
    client.flushall()
    client.close()
    with gunicorn_server(redis_server.url, tmp_path, {"VERIFY_LOG_FORMAT": "text"}, workers=1) as server:
        assert requests.get(server.url("/healthz"), headers={"X-Request-Id": GOOD_ID}, timeout=TIMEOUT).ok
        started = requests.post(
            server.url("/v1/verifications"),
            json={"phone": PHONES[0]},
            params={"api_key": API_KEY},
            headers=AUTH,
            timeout=TIMEOUT,
        )
        assert started.status_code == 201, started.text
        log = server.log
    lines = log.read_text(encoding="utf-8").splitlines()
    assert [line for line in lines if not TEXT_LINE.match(line)] == []
    text = "\n".join(lines)
    assert re.search(r"\] \[INFO\] Booting worker with pid: \d+$", text, re.MULTILINE)
    assert re.search(r"\] \[INFO\] GET /healthz 200 \d+\.\dms$", text, re.MULTILINE)
    assert re.search(r"\] \[INFO\] POST /v1/verifications 201 \d+\.\dms$", text, re.MULTILINE)
    assert re.search(r"\] \[INFO\] verification \S+ sent via smsc to \+7999\*\*\*0001$", text, re.MULTILINE)
    assert API_KEY not in text and PHONES[0][1:] not in text


# redact(): the text rules


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("/webhooks/smsc?sha1=s3cret", f"/webhooks/smsc?sha1={REDACTED}"),
        ("/webhooks/smsc?charset=utf-8&MD5=s3cret&fmt=3", f"/webhooks/smsc?charset=utf-8&MD5={REDACTED}&fmt=3"),
        ("/webhooks/smsc?crc32=s3cret", f"/webhooks/smsc?crc32={REDACTED}"),
        (
            "/x?token=a&psw=b&apikey=c&api_key=d&password=e&secret=f&key=g&code=h&signature=i&checksum=j",
            "/x?"
            + "&".join(
                f"{name}={REDACTED}"
                for name in (
                    "token",
                    "psw",
                    "apikey",
                    "api_key",
                    "password",
                    "secret",
                    "key",
                    "code",
                    "signature",
                    "checksum",
                )
            ),
        ),
        (
            "/x?access_token=a&Idempotency-Key=b&client_secret=c&sig=d&hmac=e&otp=f&pin=g&auth=h",
            "/x?"
            + "&".join(
                f"{name}={REDACTED}"
                for name in ("access_token", "Idempotency-Key", "client_secret", "sig", "hmac", "otp", "pin", "auth")
            ),
        ),
        # What an inbound SMS says may be the code: its text is not logged either.
        (
            "/webhooks/zoomconnect/reply?from=%2B27725551234&message=1234&messageId=9",
            f"/webhooks/zoomconnect/reply?from=%2B2772***1234&message={REDACTED}&messageId=9",
        ),
        ("/x?mes=1234&text=1234&content=1234", f"/x?mes={REDACTED}&text={REDACTED}&content={REDACTED}"),
        # Names percent-encoded, or with a suffix.
        ("/x?%73ha1=s3cret&sha1%5B%5D=s3cret", f"/x?%73ha1={REDACTED}&sha1%5B%5D={REDACTED}"),
        # Harmless parameters are kept, and an empty value says the parameter came empty.
        ("/webhooks/smsc?charset=utf-8&fmt=3&id=7&status=1", "/webhooks/smsc?charset=utf-8&fmt=3&id=7&status=1"),
        # Phone numbers are masked, as in the app's own lines.
        ("/sandbox/messages?phone=%2B79991234567", "/sandbox/messages?phone=%2B7999***4567"),
        (
            "/x?from=%2b27725551234&to=27725550000&phone=+79991234567&msisdn=12345",
            "/x?from=%2b2772***1234&to=2772***0000&phone=+7999***4567&msisdn=12345",
        ),
        ("/webhooks/smsc?sha1=&fmt=3", "/webhooks/smsc?sha1=&fmt=3"),
        # A URL inside a parameter, percent-encoded.
        (
            "/x?next=https%3A%2F%2Fh%2Fwebhooks%2Fsmsc%3Fsha1%3Ds3cret%26charset%3Dutf-8",
            f"/x?next=https%3A%2F%2Fh%2Fwebhooks%2Fsmsc%3Fsha1%3D{REDACTED}%26charset%3Dutf-8",
        ),
        # D7's path token, in every shape its route takes.
        ("/webhooks/d7/t0ken", f"/webhooks/d7/{REDACTED}"),
        ("/webhooks/d7/t0ken/report", f"/webhooks/d7/{REDACTED}/report"),
        ("/webhooks/d7/t0ken?id=1&level=2", f"/webhooks/d7/{REDACTED}?id=1&level=2"),
        ("//webhooks//d7//t0ken/report", f"//webhooks//d7//{REDACTED}/report"),
        ("/Webhooks/D7/t0ken", f"/Webhooks/D7/{REDACTED}"),
        ("/webhooks%2Fd7%2Ft0ken%2Freport", f"/webhooks%2Fd7%2F{REDACTED}%2Freport"),
        (
            '{"report_url": "https:\\/\\/h\\/webhooks\\/d7\\/t0ken\\/report"}',
            f'{{"report_url": "https:\\/\\/h\\/webhooks\\/d7\\/{REDACTED}\\/report"}}',
        ),
        ("/webhooks/d7/", "/webhooks/d7/"),
        # gunicorn quotes a request line it cannot parse with repr(): escapes are part of the value.
        (
            "'GET /webhooks/d7/t0k\\xd0\\x9fen?text=\\xd0\\x9f\\xd1\\x80 HTTP/1.1'",
            f"'GET /webhooks/d7/{REDACTED}?text={REDACTED} HTTP/1.1'",
        ),
        ("/webhooks/d7", "/webhooks/d7"),
        # The route template of the request line names the token; it holds none.
        ("POST /webhooks/d7/<token>/report 200 1.0ms", "POST /webhooks/d7/<token>/report 200 1.0ms"),
        ("/webhooks/d7/<token>", "/webhooks/d7/<token>"),
        ("/webhooks/d7/<token>x", f"/webhooks/d7/{REDACTED}"),
        # Credentials and secrets in free text: headers, JSON and Python reprs.
        ("Authorization: Bearer abcdefgh12345678", f"Authorization: Bearer {REDACTED}"),
        ("Authorization: Basic Zm9vOmJhcg==", f"Authorization: Basic {REDACTED}"),
        (
            '{"code": "12345678", "token": "a.b.c", "phone": "+7999"}',
            f'{{"code": "{REDACTED}", "token": "{REDACTED}", "phone": "+7999"}}',
        ),
        ("{'psw': 'pa\\'ss', 'login': 'me'}", f"{{'psw': '{REDACTED}', 'login': 'me'}}"),
        ('{"code": 12345678}', f'{{"code": {REDACTED}}}'),
        (
            "VERIFY_SECRET_KEY=abc VERIFY_API_KEYS=k1,k2 PORT=8000",
            f"VERIFY_SECRET_KEY={REDACTED} VERIFY_API_KEYS={REDACTED} PORT=8000",
        ),
        # Lines with nothing to hide are left alone.
        (
            "Invalid request from ip=127.0.0.1: Request Line is too large (5075 > 4094)",
            "Invalid request from ip=127.0.0.1: Request Line is too large (5075 > 4094)",
        ),
        ("verification 0123abcd sent via smsc to +7999***4567", "verification 0123abcd sent via smsc to +7999***4567"),
    ],
)
def test_redact(text: str, expected: str) -> None:
    assert redact(text) == expected
    assert redact(expected) == expected  # redacting twice changes nothing


# RedactingLogger: the access log's atoms and the error log's records


@pytest.fixture
def gunicorn_logger(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[RedactingLogger, Path, Path]]:
    """A RedactingLogger (or the class given as the fixture's parameter) writing its error and access logs to files;
    the loggers and hooks it touches are restored after."""
    names = ("gunicorn.error", "gunicorn.access", "verify", "")
    saved = {
        name: (logging.getLogger(name).handlers[:], logging.getLogger(name).level, logging.getLogger(name).propagate)
        for name in names
    }
    excepthook = threading.excepthook
    logging.getLogger().handlers = []  # as in gunicorn's process: nothing configured the root logger (pytest did)
    cfg = Config()
    errors, accesses = tmp_path / "error.log", tmp_path / "access.log"
    cfg.set("errorlog", str(errors))
    cfg.set("accesslog", str(accesses))
    logger_class: type[RedactingLogger] = getattr(request, "param", RedactingLogger)
    logger = logger_class(cfg)
    try:
        yield logger, errors, accesses
    finally:
        logging.captureWarnings(False)
        threading.excepthook = excepthook
        for name, (handlers, level, propagate) in saved.items():
            for handler in logging.getLogger(name).handlers:
                if handler not in handlers:
                    handler.close()
            logging.getLogger(name).handlers = handlers
            logging.getLogger(name).setLevel(level)
            logging.getLogger(name).propagate = propagate


def _records(path: Path) -> list[Record]:
    """A JSON log file's lines, each parsed (each must be one JSON object)."""
    records = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]
    assert all(isinstance(record, dict) for record in records)
    return records


def _request(uri: str, headers: list[tuple[str, str]]) -> tuple[Any, Any, dict[str, Any]]:
    path, _, query = uri.partition("?")
    environ = {
        "REQUEST_METHOD": "POST",
        "RAW_URI": uri,
        "PATH_INFO": path,
        "QUERY_STRING": query,
        "SERVER_PROTOCOL": "HTTP/1.1",
        "REMOTE_ADDR": "203.0.113.9",
        **{"HTTP_" + name.upper().replace("-", "_"): value for name, value in headers},
    }
    request = SimpleNamespace(headers=[(name.upper(), value) for name, value in headers])
    response = SimpleNamespace(
        status="308 Permanent Redirect",
        sent=12,
        headers=[("Location", "/webhooks/d7/s3cret-token"), ("Content-Length", "12")],
    )
    return response, request, environ


ALL_ATOMS = (
    '%(h)s %(l)s %(u)s %(t)s "%(r)s" %(s)s %(m)s %(U)s %(q)s %(H)s %(b)s %(B)s "%(f)s" "%(a)s" %(T)s %(D)s '
    "%(M)s %(L)s %(p)s %({Authorization}i)s %({x-api-key}i)s %({cookie}i)s %({referer}i)s %({user-agent}i)s "
    "%({location}o)s %({raw_uri}e)s %({query_string}e)s %({http_authorization}e)s %({http_referer}e)s"
)


def test_every_atom_is_redacted(gunicorn_logger: tuple[RedactingLogger, Path, Path]) -> None:
    logger, _, _ = gunicorn_logger
    logger.cfg.set("access_log_format", ALL_ATOMS)
    response, request, environ = _request(
        "/webhooks//d7/s3cret-token?sha1=s3cret-sha",
        [
            ("Authorization", "Bearer s3cret-key-0123"),
            ("X-Api-Key", "s3cret-key-4567"),
            ("Cookie", "session=s3cret-cookie"),
            ("Referer", "https://h/cb?psw=s3cret-psw"),
            ("User-Agent", "curl"),
        ],
    )
    atoms = logger.atoms(response, request, environ, timedelta(milliseconds=3))
    leaked = {key: value for key, value in atoms.items() if isinstance(value, str) and "s3cret" in value}
    assert leaked == {}
    assert {key for key, value in atoms.items() if isinstance(value, str)} == {
        "h",
        "l",
        "u",
        "t",
        "r",
        "s",
        "m",
        "U",
        "q",
        "H",
        "b",
        "f",
        "a",
        "L",
        "p",
        "{authorization}i",
        "{x-api-key}i",
        "{cookie}i",
        "{referer}i",
        "{user-agent}i",
        "{location}o",
        "{raw_uri}e",
        "{query_string}e",
        "{http_authorization}e",
        "{http_referer}e",
    }
    assert atoms["r"] == f"POST /webhooks//d7/{REDACTED}?sha1={REDACTED} HTTP/1.1"
    assert atoms["U"] == f"/webhooks//d7/{REDACTED}"
    assert atoms["q"] == f"sha1={REDACTED}"
    assert atoms["f"] == f"https://h/cb?psw={REDACTED}"
    assert atoms["{authorization}i"] == atoms["{x-api-key}i"] == atoms["{cookie}i"] == REDACTED
    assert atoms["{user-agent}i"] == "curl"
    assert atoms["{location}o"] == f"/webhooks/d7/{REDACTED}"
    assert atoms["{raw_uri}e"] == atoms["r"].split(" ")[1]
    assert atoms["{query_string}e"] == f"sha1={REDACTED}"
    assert atoms["{http_authorization}e"] == REDACTED
    assert atoms["{http_referer}e"] == atoms["{referer}i"] == atoms["f"]
    assert (atoms["s"], atoms["b"], atoms["M"], atoms["h"]) == ("308", "12", 3, "203.0.113.9")


def test_atoms_the_format_does_not_use_are_left_out(gunicorn_logger: tuple[RedactingLogger, Path, Path]) -> None:
    logger, _, _ = gunicorn_logger
    atoms = logger.atoms(
        *_request("/webhooks/smsc?sha1=s3cret", [("Authorization", "Bearer s3cret-key-0123")]), timedelta(0)
    )
    assert "{authorization}i" not in atoms and "{raw_uri}e" not in atoms and "q" not in atoms
    assert atoms["r"] == f"POST /webhooks/smsc?sha1={REDACTED} HTTP/1.1"


def test_a_percent_encoded_route_is_shown_decoded_and_redacted(
    gunicorn_logger: tuple[RedactingLogger, Path, Path],
) -> None:
    logger, _, _ = gunicorn_logger
    logger.cfg.set("access_log_format", ALL_ATOMS)
    response, request, environ = _request("/webhooks/%64%37/s3cret-token/report", [])
    environ["PATH_INFO"] = "/webhooks/d7/s3cret-token/report"
    atoms = logger.atoms(response, request, environ, timedelta(0))
    assert atoms["r"] == f"POST /webhooks/d7/{REDACTED}/report HTTP/1.1"
    assert atoms["{raw_uri}e"] == f"/webhooks/d7/{REDACTED}/report"
    assert atoms["U"] == f"/webhooks/d7/{REDACTED}/report"


def test_access_lines_are_written_redacted(gunicorn_logger: tuple[RedactingLogger, Path, Path]) -> None:
    # gunicorn.conf.py has no access log any more; `gunicorn_command(access_log=True)` (the bench) still writes one.
    logger, _, accesses = gunicorn_logger
    logger.cfg.set("access_log_format", '%(r)s %(U)s?%(q)s "%(f)s" %({authorization}i)s %({raw_uri}e)s')
    logger.access(
        *_request(
            "/webhooks/smsc?md5=s3cret", [("Authorization", "Basic Zm9vOmJhcg=="), ("Referer", "/webhooks/d7/s3cret")]
        ),
        timedelta(0),
    )
    text = accesses.read_text()
    assert "s3cret" not in text and "Zm9v" not in text, text
    [line] = _records(accesses)
    assert line["logger"] == "gunicorn.access"
    assert line["message"].startswith(f"POST /webhooks/smsc?md5={REDACTED} HTTP/1.1 /webhooks/smsc?md5={REDACTED} ")


def test_error_log_records_are_redacted(gunicorn_logger: tuple[RedactingLogger, Path, Path]) -> None:
    logger, errors, _ = gunicorn_logger
    # What gunicorn logs when the app raises, and what Flask logs when an error handler fails.
    try:
        raise ValueError("cannot read /webhooks/smsc?sha1=s3cret-in-exception")
    except ValueError:
        logger.exception("Error handling request %s %s", "POST", "/webhooks/smsc?sha1=s3cret-in-args")
    logging.getLogger("verify").error("Exception on %s [%s]", "/webhooks/d7/s3cret-in-flask/report", "POST")
    logging.getLogger("verify.service").info("verification %s approved by %s", "abc", "code")
    logging.getLogger("urllib3.connectionpool").warning("Retrying: /sys/send.php?psw=s3cret-in-library")
    logger.debug("not written at the default level: %s", "s3cret-debug")
    assert "s3cret" not in errors.read_text()
    gunicorn, flask, app, library = _records(errors)
    assert (gunicorn["level"], gunicorn["logger"], gunicorn["message"]) == (
        "ERROR",
        "gunicorn.error",
        f"Error handling request POST /webhooks/smsc?sha1={REDACTED}",
    )
    assert gunicorn["exception"].startswith("Traceback (most recent call last):\n")
    assert gunicorn["exception"].endswith(f"ValueError: cannot read /webhooks/smsc?sha1={REDACTED}")
    assert (flask["level"], flask["logger"], flask["message"]) == (
        "ERROR",
        "verify",
        f"Exception on /webhooks/d7/{REDACTED}/report [POST]",
    )
    assert (app["level"], app["logger"], app["message"]) == (
        "INFO",
        "verify.service",
        "verification abc approved by code",
    )
    assert (library["level"], library["logger"], library["message"]) == (
        "WARNING",
        "urllib3.connectionpool",
        f"Retrying: /sys/send.php?psw={REDACTED}",
    )


@pytest.mark.parametrize("gunicorn_logger", [TextLogger], indirect=True)
def test_the_text_logger_writes_gunicorn_s_format_redacted(gunicorn_logger: tuple[RedactingLogger, Path, Path]) -> None:
    logger, errors, accesses = gunicorn_logger
    try:
        raise ValueError("cannot read /webhooks/smsc?sha1=s3cret-in-exception")
    except ValueError:
        logger.exception("Error handling request %s %s", "POST", "/webhooks/smsc?sha1=s3cret-in-args")
    logging.getLogger("verify.request").info(
        "%s %s %s %.1fms",
        "POST",
        "/webhooks/d7/<token>",
        200,
        1.25,
        extra={"request_id": "r1", "route": "/webhooks/d7/<token>"},
    )
    logger.access(*_request("/webhooks/smsc?md5=s3cret", []), timedelta(0))
    text = errors.read_text()
    assert "s3cret" not in text + accesses.read_text(), text
    assert re.match(
        r"\[\d{4}-\d\d-\d\d \d\d:\d\d:\d\d [-+]\d{4}\] \[\d+\] \[ERROR\] Error handling request POST "
        rf"/webhooks/smsc\?sha1={re.escape(REDACTED)}\nTraceback",
        text,
    ), text
    assert f"ValueError: cannot read /webhooks/smsc?sha1={REDACTED}\n" in text
    assert re.search(r"\] \[INFO\] POST /webhooks/d7/<token> 200 1\.2ms$", text, re.MULTILINE), text
    assert accesses.read_text().startswith("203.0.113.9 - - [")


def test_a_line_that_cannot_be_formatted_or_redacted_is_not_written_raw(
    gunicorn_logger: tuple[RedactingLogger, Path, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    _, errors, _ = gunicorn_logger
    logging.getLogger("verify.x").error("bad format %d", "/webhooks/d7/s3cret")
    monkeypatch.setattr("verify.logs.redact", lambda text: 1 / 0)
    logging.getLogger("verify.x").error(
        "fails %s", "/webhooks/smsc?sha1=s3cret", extra={"route": "/webhooks/d7/s3cret"}
    )
    assert "s3cret" not in errors.read_text()
    unformattable, withheld = _records(errors)
    assert unformattable["message"] == f"unformattable log message: 'bad format %d' ('/webhooks/d7/{REDACTED}',)"
    assert withheld["message"] == "a log line was withheld: redacting it failed (ZeroDivisionError)"
    assert "route" not in withheld  # an extra field that could not be redacted is dropped


def test_a_reload_does_not_stack_filters(gunicorn_logger: tuple[RedactingLogger, Path, Path]) -> None:
    logger, errors, _ = gunicorn_logger
    for _ in range(2):
        before = logger.error_log.handlers + logger.access_log.handlers
        logger.setup(logger.cfg)
        for handler in before:  # gunicorn drops its old handlers on a reload, without closing them
            handler.close()
    logging.getLogger("verify").warning("once %s", "/webhooks/d7/s3cret")
    assert errors.read_text().count("once") == 1
    assert all(
        sum(isinstance(f, type(logger.redaction)) for f in handler.filters) == 1
        for handler in logger.error_log.handlers
    )
    # gunicorn's own handlers (pytest attaches its capture handlers to every logger that does not propagate).
    assert all(
        isinstance(handler.formatter, JsonFormatter)
        for handler in logger.error_log.handlers
        if getattr(handler, "_gunicorn", False)
    )


# JSON lines: the fields


def test_a_request_line_has_its_fields_typed(gunicorn_logger: tuple[RedactingLogger, Path, Path]) -> None:
    _, errors, _ = gunicorn_logger
    logging.getLogger("verify.request").info(
        "%s %s %s %.1fms",
        "POST",
        "/v1/verifications/<verification_id>/check",
        200,
        4.25,
        extra={
            "request_id": "req-1",
            "method": "POST",
            "route": "/v1/verifications/<verification_id>/check",
            "status": 200,
            "duration_ms": 4.25,
            "verification_id": "00ab1234",
        },
    )
    [line] = _records(errors)
    assert TIME.fullmatch(line.pop("time"))
    assert isinstance(line.pop("pid"), int)
    assert line == {
        "level": "INFO",
        "logger": "verify.request",
        "message": "POST /v1/verifications/<verification_id>/check 200 4.2ms",
        "request_id": "req-1",
        "method": "POST",
        "route": "/v1/verifications/<verification_id>/check",
        "status": 200,
        "duration_ms": 4.25,
        "verification_id": "00ab1234",
    }


def test_the_time_is_rfc3339_utc_with_milliseconds() -> None:
    record = logging.makeLogRecord({"msg": "x", "created": 1795338902.042, "msecs": 42.0})
    assert json.loads(JsonFormatter().format(record))["time"] == "2026-11-22T09:15:02.042Z"


def test_lines_logged_during_a_request_carry_its_id(gunicorn_logger: tuple[RedactingLogger, Path, Path]) -> None:
    _, errors, _ = gunicorn_logger

    def served() -> None:
        logging.getLogger("verify.service").info("before")
        token = REQUEST_ID.set("req-7")
        try:
            logging.getLogger("verify.service").info("during")
            logging.getLogger("gunicorn.error").info("gunicorn's, during")
            logging.getLogger("verify.request").info("given", extra={"request_id": "req-given"})
        finally:
            REQUEST_ID.reset(token)
        logging.getLogger("verify.service").info("after")

    # A fresh context, as each gevent greenlet (each request) has: the test client of another test may leave a
    # request context open in this thread's, with its id.
    contextvars.Context().run(served)
    before, during, gunicorn, given, after = _records(errors)
    assert "request_id" not in before and "request_id" not in after
    assert during["request_id"] == gunicorn["request_id"] == "req-7"
    assert given["request_id"] == "req-given"


def test_every_field_is_redacted_and_each_line_is_one_line(gunicorn_logger: tuple[RedactingLogger, Path, Path]) -> None:
    _, errors, _ = gunicorn_logger

    class Url:
        def __str__(self) -> str:
            return "https://h/webhooks/smsc?sha1=s3cret-object"

    logging.getLogger("verify.x").warning(
        "two\nlines, Привет, \U0001f600 %s",
        "/webhooks/d7/s3cret-arg/report",
        extra={
            "route": "/webhooks/d7/<token>/report",
            "target": "/webhooks/d7/s3cret-extra",
            "url": Url(),
            "header": "Bearer s3cret-bearer-0123",
            "count": 3,
            "ratio": float("nan"),
            "flag": True,
            "none": None,
        },
    )
    text = errors.read_text(encoding="utf-8")
    assert "s3cret" not in text and text.isascii() and text.count("\n") == 1, text
    [line] = _records(errors)
    assert line["message"] == f"two\nlines, Привет, \U0001f600 /webhooks/d7/{REDACTED}/report"
    assert line["route"] == "/webhooks/d7/<token>/report"
    assert line["target"] == f"/webhooks/d7/{REDACTED}"
    assert line["url"] == f"https://h/webhooks/smsc?sha1={REDACTED}"
    assert line["header"] == f"Bearer {REDACTED}"
    assert (line["count"], line["ratio"], line["flag"], line["none"]) == (3, "nan", True, None)


def test_warnings_and_dying_threads_are_log_lines(gunicorn_logger: tuple[RedactingLogger, Path, Path]) -> None:
    _, errors, _ = gunicorn_logger
    with warnings.catch_warnings():
        warnings.simplefilter("always")
        warnings.warn("deprecated: /webhooks/d7/s3cret-warning", UserWarning, stacklevel=1)
    thread = threading.Thread(name="verify-events")
    try:
        raise RuntimeError("lost /webhooks/smsc?sha1=s3cret-thread")
    except RuntimeError as err:
        _log_thread_exception(threading.ExceptHookArgs((RuntimeError, err, err.__traceback__, thread)))
    assert "s3cret" not in errors.read_text()
    warned, died = _records(errors)
    assert (warned["logger"], warned["level"]) == ("py.warnings", "WARNING")
    assert f"UserWarning: deprecated: /webhooks/d7/{REDACTED}" in warned["message"]
    assert (died["logger"], died["level"], died["message"]) == (
        "verify",
        "ERROR",
        "uncaught exception in thread verify-events",
    )
    assert died["exception"].endswith(f"RuntimeError: lost /webhooks/smsc?sha1={REDACTED}")


def test_the_logger_class_loads_nothing_of_the_app() -> None:
    # gunicorn's master imports it before gevent patches the workers: no ssl, requests or app may come with it.
    code = (
        "import sys, verify.logs; "
        "print(sorted(m for m in ('ssl', 'requests', 'urllib3', 'flask', 'verify.app') if m in sys.modules))"
    )
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert loaded.strip() == "[]"


# VERIFY_LOG_FORMAT: gunicorn.conf.py, Settings and `verify dev` read it alike


def _settings(log_format: str | None) -> Settings:
    env = {"VERIFY_API_KEYS": API_KEY, "VERIFY_SECRET_KEY": SECRET_KEY, "VERIFY_SANDBOX": "1"}
    return Settings.from_env(env if log_format is None else {**env, "VERIFY_LOG_FORMAT": log_format})


def _gunicorn_conf(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, log_format: str | None) -> dict[str, Any]:
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(tmp_path))  # else loading it makes a directory
    if log_format is None:
        monkeypatch.delenv("VERIFY_LOG_FORMAT", raising=False)
    else:
        monkeypatch.setenv("VERIFY_LOG_FORMAT", log_format)
    return runpy.run_path(str(ROOT / "gunicorn.conf.py"))


@pytest.mark.parametrize(
    ("value", "expected"),
    [(None, "json"), ("", "json"), ("json", "json"), ("text", "text"), (" TEXT ", "text"), ("Json", "json")],
)
def test_gunicorn_and_the_app_read_the_format_alike(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, value: str | None, expected: str
) -> None:
    assert log_format(value) == _settings(value).log_format == expected
    conf = _gunicorn_conf(monkeypatch, tmp_path, value)
    assert conf["logger_class"] == LOGGER_CLASSES[expected]
    assert conf["accesslog"] is None  # the app's request lines replace it


def test_a_format_that_is_neither_stops_the_start_naming_the_variable(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    with pytest.raises(ConfigError, match="VERIFY_LOG_FORMAT"):
        _settings("xml")
    with pytest.raises(ValueError, match="VERIFY_LOG_FORMAT must be one of json, text, not 'xml'"):
        _gunicorn_conf(monkeypatch, tmp_path, "xml")


def test_the_logger_classes_are_those_named() -> None:
    assert LOGGER_CLASSES == {"json": "verify.logs.RedactingLogger", "text": "verify.logs.TextLogger"}
    assert (RedactingLogger.log_format, TextLogger.log_format) == ("json", "text")


def test_the_bench_serves_with_the_redacting_logger() -> None:
    command = gunicorn_command("verify:create_app()", "127.0.0.1", 8000, 2, access_log=True)
    assert command[command.index("--logger-class") + 1] == "verify.logs.RedactingLogger"
    command = gunicorn_command("verify:create_app()", "127.0.0.1", 8000, 2, access_log=False, log_format="text")
    assert command[command.index("--logger-class") + 1] == "verify.logs.TextLogger"
    assert "--access-logfile" not in command


@pytest.mark.parametrize(
    ("value", "logger_class"), [(None, "verify.logs.TextLogger"), ("json", "verify.logs.RedactingLogger")]
)
def test_verify_dev_logs_text_unless_told(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, value: str | None, logger_class: str
) -> None:
    started: list[tuple[list[str], dict[str, str]]] = []

    class Gunicorn:
        def __init__(self, argv: list[str], env: dict[str, str]) -> None:
            started.append((argv, env))

        def wait(self) -> int:
            return 0

    for name in [name for name in os.environ if name.startswith("VERIFY_")]:
        monkeypatch.delenv(name)
    monkeypatch.delenv("PROMETHEUS_MULTIPROC_DIR", raising=False)
    (tmp_path / "metrics").mkdir()
    (tmp_path / "metrics" / "counter_123.db").write_bytes(b"an earlier run's")
    if value is not None:
        monkeypatch.setenv("VERIFY_LOG_FORMAT", value)
    monkeypatch.setenv("VERIFY_REDIS_URL", "redis://127.0.0.1:1/0")  # never reached: gunicorn is not started
    # The module's, so for this test the process's: nothing else runs meanwhile.
    monkeypatch.setattr("verify.cli.subprocess.Popen", Gunicorn)
    monkeypatch.setattr("verify.cli.signal.signal", lambda *args: None)
    assert cli.run_dev("127.0.0.1", 8000, 1, tmp_path) == 0
    [(argv, env)] = started
    assert argv[argv.index("--logger-class") + 1] == logger_class
    assert env["VERIFY_LOG_FORMAT"] == (value or "text")
    assert "--access-logfile" not in argv  # the app's request lines replace gunicorn's access log
    # the demo page has its site key, for the addresses the server answers on
    assert env["VERIFY_SITE_KEYS"] == "pk_demo=http://127.0.0.1:8000|http://localhost:8000"
    # and its workers' metrics add up, from an empty directory
    assert env["PROMETHEUS_MULTIPROC_DIR"] == str(tmp_path / "metrics") and not any((tmp_path / "metrics").iterdir())


# The request line, written without a log record (issue 19)

# The request line as verify/web/observe.py logged it before it was written directly (at 6e8e849): what the direct
# line must equal, byte for byte.


def _logged_as_before(
    log: logging.Logger, method: str, route: str, status: int, seconds: float, request_id: str, verification_id: str
) -> None:
    log.info(
        "%s %s %s %.1fms",
        method,
        route,
        status,
        seconds * 1000,
        extra={
            "request_id": request_id,
            "method": method,
            "route": route,
            "status": status,
            "duration_ms": round(seconds * 1000, 3),
            "verification_id": verification_id,
        },
    )


class _Writes(io.StringIO):
    """A stream that counts its writes."""

    def __init__(self) -> None:
        super().__init__()
        self.writes: list[str] = []

    def write(self, text: str) -> int:
        self.writes.append(text)
        return super().write(text)


@contextmanager
def _json_logger(name: str) -> Iterator[tuple[logging.Logger, _Writes]]:
    """A logger whose one handler is set up as RedactingLogger sets up gunicorn's: a stream, its JsonFormatter and
    a Redaction filter; restored after."""
    log = logging.getLogger(name)
    saved = log.handlers[:], log.level, log.propagate
    stream = _Writes()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    handler.addFilter(Redaction())
    log.handlers, log.propagate = [handler], False
    log.setLevel(logging.INFO)
    try:
        yield log, stream
    finally:
        log.handlers, log.level, log.propagate = saved


def _handled(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The names of the loggers whose records go through ``logging.Logger.handle`` from now on."""
    handled: list[str] = []
    handle = logging.Logger.handle

    def spy(self: logging.Logger, record: logging.LogRecord) -> None:
        handled.append(record.name)
        handle(self, record)

    monkeypatch.setattr(logging.Logger, "handle", spy)
    return handled


SAMPLE_REQUEST = ("POST", "/v1/verifications/<verification_id>/check", 200, 0.004213, START_ID, "1a2b0c3d4e5f")


def test_the_request_line_is_written_without_a_record(
    gunicorn_logger: tuple[RedactingLogger, Path, Path], client: FlaskClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    logger, errors, _ = gunicorn_logger
    # As in a worker: the app's lines reach gunicorn's error log only (pytest hangs its capture handlers on every
    # logger that does not propagate, and a handler of another kind gets the line through logging).
    logging.getLogger("verify").handlers = [h for h in logger.error_log.handlers if getattr(h, "_gunicorn", False)]
    handled = _handled(monkeypatch)
    assert client.get("/healthz", headers={"X-Request-Id": START_ID}).status_code == 200
    assert client.post("/webhooks/d7/s3cret-token/report?sha1=s3cret").status_code == 404
    assert "verify.request" not in handled
    assert "s3cret" not in errors.read_text()
    healthz, d7 = [line for line in _records(errors) if line["logger"] == "verify.request"]
    assert TIME.fullmatch(healthz.pop("time")) and healthz.pop("pid") == os.getpid()
    assert healthz.pop("duration_ms") >= 0
    assert healthz == {
        "level": "INFO",
        "logger": "verify.request",
        "message": healthz["message"],
        "request_id": START_ID,
        "method": "GET",
        "route": "/healthz",
        "status": 200,
        "verification_id": "",
    }
    assert re.fullmatch(r"GET /healthz 200 \d+\.\dms", healthz["message"])
    assert (d7["method"], d7["route"], d7["status"]) == ("POST", "/webhooks/d7/<token>/report", 404)
    assert re.fullmatch(r"POST /webhooks/d7/<token>/report 404 \d+\.\dms", d7["message"])


def test_its_bytes_are_those_of_its_record(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("time.time", lambda: 1795338902.042917)
    with _json_logger("verify.request") as (log, stream):
        log_request(log, *SAMPLE_REQUEST)
        _logged_as_before(log, *SAMPLE_REQUEST)
    direct, before = stream.getvalue().splitlines(keepends=True)
    assert (
        direct
        == before
        == (
            '{"time": "2026-11-22T09:15:02.042Z", "level": "INFO", "logger": "verify.request", "message": '
            '"POST /v1/verifications/<verification_id>/check 200 4.2ms", "pid": ' + str(os.getpid()) + ", "
            '"request_id": "4bf92f3577b34da6a3ce929d0e0e4736", "method": "POST", '
            '"route": "/v1/verifications/<verification_id>/check", "status": 200, "duration_ms": 4.213, '
            '"verification_id": "1a2b0c3d4e5f"}\n'
        )
    )
    assert stream.writes == [direct, before]  # one write each: the whole line with its newline


# Texts that redact() changes, and texts JSON escapes.
SECRET_TEXTS = (
    "/webhooks/d7/s3cret-token/report",
    "/webhooks/smsc?sha1=s3cret-sha&phone=%2B79991230001",
    "Bearer s3cret-bearer-0123",
    '{"token": "s3cret-json"}',
    'quote " backslash \\ newline \n Привет \U0001f600 \x00',
)


@hypothesis.settings(deadline=None, max_examples=300)
@hypothesis.given(
    method=st.sampled_from(("GET", "POST", "OTHER")) | st.sampled_from(SECRET_TEXTS) | st.text(max_size=20),
    route=st.sampled_from(("/healthz", "/webhooks/d7/<token>", *SECRET_TEXTS)) | st.text(max_size=40),
    status=st.integers(min_value=100, max_value=599),
    seconds=st.floats(min_value=0, max_value=1e4),
    request_id=st.sampled_from((START_ID, *SECRET_TEXTS)) | st.text(max_size=40),
    verification_id=st.sampled_from(("", "1a2b0c3d4e5f", *SECRET_TEXTS)) | st.text(max_size=40),
    created=st.floats(min_value=1e9, max_value=4e9),
)
def test_any_request_line_is_redacted_and_written_as_its_record_was(
    method: str, route: str, status: int, seconds: float, request_id: str, verification_id: str, created: float
) -> None:
    fields = (method, route, status, seconds, request_id, verification_id)

    def both() -> str:
        with mock.patch("time.time", return_value=created), _json_logger("verify.request") as (log, stream):
            log_request(log, *fields)
            _logged_as_before(log, *fields)
        return stream.getvalue()

    # Outside any request: a fresh context, so that no request id an earlier test's request left behind in this
    # thread fills the record's empty one (the record path takes the serving request's id, the direct one is given
    # it: the same id while a request is served).
    direct, before = contextvars.Context().run(both).splitlines(keepends=True)
    assert direct == before
    assert "s3cret" not in direct and direct.isascii() and direct.endswith("}\n")


def test_a_secret_in_a_field_is_redacted_on_the_direct_path(monkeypatch: pytest.MonkeyPatch) -> None:
    handled = _handled(monkeypatch)
    with _json_logger("verify.request") as (log, stream):
        log_request(log, "POST", "/webhooks/d7/s3cret-token", 200, 0.001, "sha1=s3cret-sha", "Bearer s3cret-bearer")
    assert handled == []
    [line] = _records_of(stream)
    assert "s3cret" not in stream.getvalue()
    assert (line["route"], line["request_id"], line["verification_id"]) == (
        f"/webhooks/d7/{REDACTED}",
        f"sha1={REDACTED}",
        f"Bearer {REDACTED}",
    )
    assert line["message"] == f"POST /webhooks/d7/{REDACTED} 200 1.0ms"


def test_a_line_that_cannot_be_redacted_is_withheld_through_logging(monkeypatch: pytest.MonkeyPatch) -> None:
    with _json_logger("verify.request") as (log, stream):
        handled = _handled(monkeypatch)
        monkeypatch.setattr("verify.logs.redact", lambda text: 1 / 0)
        log_request(log, "POST", "/webhooks/d7/<token>", 200, 0.001, START_ID, "")
    assert handled == ["verify.request"]
    [line] = _records_of(stream)
    assert line["message"] == "a log line was withheld: redacting it failed (ZeroDivisionError)"
    assert "route" not in line


@pytest.mark.parametrize("gunicorn_logger", [TextLogger], indirect=True)
def test_the_text_format_gets_the_request_line_through_logging(
    gunicorn_logger: tuple[RedactingLogger, Path, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    _, errors, _ = gunicorn_logger
    handled = _handled(monkeypatch)
    log_request(logging.getLogger("verify.request"), *SAMPLE_REQUEST)
    assert handled == ["verify.request"]
    assert re.search(
        r"\] \[INFO\] POST /v1/verifications/<verification_id>/check 200 4\.2ms$", errors.read_text(), re.MULTILINE
    )


def test_any_other_handler_or_a_record_factory_gets_the_record(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    # pytest's capture handler (a StreamHandler subclass) beside the JSON one: both get the record.
    with _json_logger("verify.request") as (log, stream):
        log.addHandler(caplog.handler)
        log_request(log, *SAMPLE_REQUEST)
        [record] = caplog.records
        assert record.route == "/v1/verifications/<verification_id>/check"  # type: ignore[attr-defined]
        log.removeHandler(caplog.handler)
        factory = logging.getLogRecordFactory()

        def traced(*args: Any, **kwargs: Any) -> logging.LogRecord:
            record = factory(*args, **kwargs)
            record.trace_id = "t-1"
            return record

        monkeypatch.setattr(logging, "_logRecordFactory", traced)
        log_request(log, *SAMPLE_REQUEST)
    first, traced_line = _records_of(stream)
    assert "trace_id" not in first and traced_line["trace_id"] == "t-1"


def test_the_levels_count_on_the_direct_path(monkeypatch: pytest.MonkeyPatch) -> None:
    handled = _handled(monkeypatch)
    with _json_logger("verify.request") as (log, stream):
        log.setLevel(logging.WARNING)
        log_request(log, *SAMPLE_REQUEST)
        log.setLevel(logging.INFO)
        log.handlers[0].setLevel(logging.WARNING)
        log_request(log, *SAMPLE_REQUEST)
    assert stream.getvalue() == ""
    assert handled == ["verify.request"]  # the handler's level is logging's to apply, as it was


# The app's own lines on the hot path (service.py: a code sent, a verification approved) take the same direct path.
@hypothesis.settings(deadline=None, max_examples=300)
@hypothesis.given(
    message=st.sampled_from(("verification %s sent via %s to %s", "no arguments", "%(a)s and %(b)s", *SECRET_TEXTS))
    | st.text(max_size=40),
    args=st.lists(st.sampled_from(SECRET_TEXTS) | st.text(max_size=20) | st.integers() | st.floats(), max_size=3),
    mapping=st.booleans(),
    request_id=st.sampled_from(("", START_ID, *SECRET_TEXTS)) | st.text(max_size=40),
    created=st.floats(min_value=1e9, max_value=4e9),
)
def test_any_app_line_is_redacted_and_written_as_its_record_was(
    message: str, args: list[object], mapping: bool, request_id: str, created: float
) -> None:
    arguments: tuple[object, ...] = ({"a": args[0], "b": "sha1=s3cret"},) if mapping and args else tuple(args)

    def both() -> tuple[str, list[str]]:
        REQUEST_ID.set(request_id)
        handled: list[str] = []
        with (
            mock.patch("time.time", return_value=created),
            mock.patch.object(logging.Logger, "handle", lambda self, record: handled.append(record.name)),
            _json_logger("verify.service") as (log, stream),
        ):
            log_info(log, message, *arguments)
        with mock.patch("time.time", return_value=created), _json_logger("verify.service") as (log, before):
            log.info(message, *arguments)
        return stream.getvalue() + before.getvalue(), handled

    record = logging.LogRecord("verify.service", logging.INFO, __file__, 0, message, arguments, None)
    try:
        record.getMessage()
    except Exception:  # any error the % operator raises
        formats = False
    else:
        formats = True
    lines, handled = contextvars.Context().run(both)
    # Only a message its arguments do not format goes through logging (which writes what it writes of such a line).
    assert handled == ([] if formats else ["verify.service"])
    if not formats:
        return
    direct, before = lines.splitlines(keepends=True)
    assert direct == before
    assert "s3cret" not in direct and direct.isascii() and direct.endswith("}\n")


def test_an_app_line_on_the_direct_path(monkeypatch: pytest.MonkeyPatch) -> None:
    handled = _handled(monkeypatch)
    monkeypatch.setattr("time.time", lambda: 1795338902.042917)
    token = REQUEST_ID.set(START_ID)
    try:
        with _json_logger("verify.service") as (log, stream):
            log_info(log, "verification %s sent via %s to %s", "1a2b0c3d4e5f", "smsc", "+7999***4567")
            log_info(log, "a code in a URL: %s", "https://x/?sha1=s3cret")
            log.setLevel(logging.WARNING)
            log_info(log, "not at WARNING")
    finally:
        REQUEST_ID.reset(token)
    assert handled == []
    assert stream.writes == [
        '{"time": "2026-11-22T09:15:02.042Z", "level": "INFO", "logger": "verify.service", "message": '
        '"verification 1a2b0c3d4e5f sent via smsc to +7999***4567", "pid": ' + str(os.getpid()) + ", "
        '"request_id": "4bf92f3577b34da6a3ce929d0e0e4736"}\n',
        '{"time": "2026-11-22T09:15:02.042Z", "level": "INFO", "logger": "verify.service", "message": '
        f'"a code in a URL: https://x/?sha1={REDACTED}", "pid": ' + str(os.getpid()) + ", "
        '"request_id": "4bf92f3577b34da6a3ce929d0e0e4736"}\n',
    ]


def test_an_app_line_goes_through_logging_where_the_request_line_would(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    with _json_logger("verify.service") as (log, stream):
        handled = _handled(monkeypatch)
        log.addHandler(caplog.handler)  # a handler of another kind
        log_info(log, "verification %s approved by %s", "1a2b0c3d4e5f", "code")
        log.removeHandler(caplog.handler)
        monkeypatch.setattr("verify.logs.redact", lambda text: 1 / 0)  # a line that cannot be built
        log_info(log, "verification %s approved by %s", "1a2b0c3d4e5f", "code")
    assert handled == ["verify.service", "verify.service"]
    [record] = caplog.records
    assert record.getMessage() == "verification 1a2b0c3d4e5f approved by code"
    approved, withheld = _records_of(stream)
    assert approved["message"] == "verification 1a2b0c3d4e5f approved by code"
    assert withheld["message"] == "a log line was withheld: redacting it failed (ZeroDivisionError)"


def _records_of(stream: io.StringIO) -> list[Record]:
    records = [json.loads(line) for line in stream.getvalue().splitlines()]
    assert all(isinstance(record, dict) for record in records)
    return records
