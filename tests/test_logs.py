"""No secret reaches a log line (issue 9): not the access log, not gunicorn's error log, not the app's own lines.

The end-to-end part runs what ships: the Procfile's gunicorn with gunicorn.conf.py (:mod:`tests.servers`), with SMSC
and D7 configured. It sends what the gateways and the clients really send: SMSC callbacks with the handler URL's
``sha1=``/``md5=``/``crc32=`` secret in the query string (right and wrong secrets), D7 receipts and reports with the
webhook token in the path (right and wrong tokens), API calls with the API key and the codes, requests gunicorn
cannot parse, and a send that fails at both gateways so the app logs errors. Then it stops the server and reads
everything it wrote (stdout and stderr: access log, error log, the app's lines) for every secret value, and for the
redacted lines that must be there instead, so it cannot pass by logging nothing.

The unit part pins :func:`verify.logs.redact` and what :class:`verify.logs.RedactingLogger` does to each atom and
to the error log's records.
"""

from __future__ import annotations

import json
import logging
import re
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from types import SimpleNamespace
from typing import Any
from urllib.parse import urlencode

import pytest
import redis
import requests
from gunicorn.config import Config  # type: ignore[import-untyped]

from tests.conftest import API_KEY, SECRET_KEY
from tests.providers import d7_emulator
from tests.providers.d7_emulator import D7Emulator, post_dlr, post_report, report_fields
from tests.providers.smsc_emulator import HashName, smsc_callback
from tests.servers import SMSC_APIKEY, CountingSmsc, Server, gunicorn_server
from verify.cli import gunicorn_command
from verify.embedded import EmbeddedRedis
from verify.logs import REDACTED, RedactingLogger, redact

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
}
TIMEOUT = 10.0


@dataclass
class Logged:
    """What the server wrote, and every secret value that went through it, by name."""

    text: str = ""
    secrets: dict[str, str] = field(default_factory=dict)
    statuses: dict[str, int] = field(default_factory=dict)  # what each request of the scenario was answered
    verification_id: str = ""  # of the SMS verification, whose API lines are looked for

    def keep(self, name: str, value: str) -> str:
        """Remember ``value`` as a secret the log must not hold."""
        assert value, name
        self.secrets[name] = value
        return value

    def lines(self, pattern: str) -> list[str]:
        """The log lines that match the regular expression ``pattern``."""
        found = re.compile(pattern)
        return [line for line in self.text.splitlines() if found.search(line)]


# the end-to-end run


@pytest.fixture(scope="module")
def logged(redis_server: EmbeddedRedis, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Logged]:
    """Run the whole scenario against one server, stop it, and hand over everything it wrote."""
    client = redis.Redis.from_url(redis_server.url)
    client.flushall()
    client.close()
    result = Logged()
    for name, value in (("VERIFY_SMSC_SECRET", SMSC_SECRET), ("wrong SMSC secret", WRONG_SMSC_SECRET),
                        ("VERIFY_D7_WEBHOOK_TOKEN", D7_WEBHOOK_TOKEN), ("wrong D7 token", WRONG_D7_TOKEN),
                        ("VERIFY_D7_TOKEN", D7_API_TOKEN), ("VERIFY_API_KEYS", API_KEY),
                        ("wrong API key", WRONG_API_KEY), ("VERIFY_SECRET_KEY", SECRET_KEY),
                        ("VERIFY_SMSC_APIKEY", SMSC_APIKEY)):
        result.keep(name, value)
    d7 = D7Emulator("v1", token=D7_API_TOKEN)
    d7.start()
    smsc = CountingSmsc()
    smsc.start()
    log_dir = tmp_path_factory.mktemp("logs")
    try:
        with gunicorn_server(redis_server.url, log_dir, {**SETTINGS, "VERIFY_D7_URL": d7.url}, workers=2,
                             smsc=smsc) as server:
            _scenario(server, d7, result)
            log = server.log
        result.text = log.read_text(encoding="utf-8", errors="replace")  # the server has stopped: all of it
    finally:
        smsc.stop()
        d7.stop()
    yield result


def _scenario(server: Server, d7: D7Emulator, result: Logged) -> None:
    _api(server, result)
    _call(server, result)
    _smsc_callbacks(server, result)
    _d7(server, d7, result)
    _failing_gateways(server, d7, result)
    _unparseable(server, result)


def _api(server: Server, result: Logged) -> None:
    """An SMS verification from start to proof token, with a wrong code, a wrong key and keys in the query."""
    auth = {"Authorization": f"Bearer {API_KEY}"}
    mark = server.smsc.mark()
    started = requests.post(server.url("/v1/verifications"), json={"phone": "+79991230001"}, headers=auth,
                            timeout=TIMEOUT)
    assert started.status_code == 201, started.text
    verification_id = result.verification_id = started.json()["id"]
    code = _code(server.smsc.since(mark, "sms")[0].text)
    result.keep("code sent by SMSC", code)
    wrong = f"{(int(code) + 1) % 10**CODE_LENGTH:0{CODE_LENGTH}d}"
    result.keep("wrong code", wrong)
    check = server.url(f"/v1/verifications/{verification_id}/check")
    result.statuses["wrong code"] = requests.post(check, json={"code": wrong}, headers=auth,
                                                  timeout=TIMEOUT).status_code
    approved = requests.post(check, json={"code": code}, headers=auth, timeout=TIMEOUT)
    assert approved.status_code == 200, approved.text
    token = result.keep("proof token (sms)", approved.json()["token"])
    assert requests.post(server.url("/v1/tokens/verify"), json={"token": token}, headers=auth,
                         timeout=TIMEOUT).status_code == 200
    result.statuses["wrong key"] = requests.post(
        server.url("/v1/verifications"), json={"phone": "+79991230002"},
        headers={"Authorization": f"Bearer {WRONG_API_KEY}"}, timeout=TIMEOUT).status_code
    # A client that puts its key or the proof token in the URL, and a browser page whose URL holds the token.
    result.statuses["key in query"] = requests.get(
        server.url(f"/v1/verifications/{verification_id}"), params={"api_key": API_KEY, "access_token": token},
        headers=auth, timeout=TIMEOUT).status_code
    result.statuses["referer"] = requests.get(
        server.url("/healthz"), headers={"Referer": f"https://app.example.com/done?token={token}&step=2"},
        timeout=TIMEOUT).status_code


def _call(server: Server, result: Logged) -> None:
    """A call verification through SMSC's wait_call, approved by SMSC's signed callback."""
    auth = {"Authorization": f"Bearer {API_KEY}"}
    started = requests.post(server.url("/v1/verifications"), json={"phone": "+79991230003", "channel": "call"},
                            headers=auth, timeout=TIMEOUT)
    assert started.status_code == 201, started.text
    verification_id = started.json()["id"]
    fields = {"phone": "79991230003", "waitcall": "1", "ts": str(int(time.time()))}
    result.statuses["smsc call sha1"] = _smsc(server, fields, "sha1", SMSC_SECRET).status_code
    got = requests.get(server.url(f"/v1/verifications/{verification_id}"), headers=auth, timeout=TIMEOUT)
    assert got.json()["status"] == "approved", got.text
    result.keep("proof token (call)", got.json()["token"])


def _smsc(server: Server, fields: dict[str, str], hash: HashName, secret: str, *, name: str | None = None,
          utf8_json: bool = False, crc32_hex: bool = False) -> requests.Response:
    """An SMSC callback signed with ``secret``, POSTed to the handler URL with ``?<name>=<secret>`` in its query
    string (``name`` is ``hash`` unless given), followed by ``charset=utf-8&fmt=3`` with ``utf8_json``."""
    _, body, content_type = smsc_callback(fields, secret=secret, hash=hash, crc32_hex=crc32_hex,
                                          charset="utf-8" if utf8_json else "windows-1251", fmt_json=utf8_json)
    query = urlencode({name or hash: secret, **({"charset": "utf-8", "fmt": "3"} if utf8_json else {})})
    return requests.post(server.url(f"/webhooks/smsc?{query}"), data=body, headers={"Content-Type": content_type},
                         timeout=TIMEOUT, allow_redirects=False)


def _smsc_callbacks(server: Server, result: Logged) -> None:
    """Delivery statuses signed every way SMSC signs, with the right secret and a wrong one."""
    fields = {"id": result.verification_id, "phone": "79991230001", "status": "1",
              "ts": str(int(time.time())), "cnt": "1", "type": "0"}
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
        started = requests.post(server.url("/v1/verifications"), json={"phone": "+79991230004"}, headers=auth,
                                timeout=TIMEOUT)
    finally:
        server.smsc.mode = "ok"
    assert started.status_code == 201, started.text
    sent = d7.last.json()["messages"][0]["content"]
    result.keep("code sent by D7", _code(sent))
    request_id = d7.issued[-1]
    right, wrong = f"/webhooks/d7/{D7_WEBHOOK_TOKEN}", f"/webhooks/d7/{WRONG_D7_TOKEN}"
    receipt = d7_emulator.dlr_fields(request_id, "DELIVRD")
    result.statuses.update({
        "d7 report": post_report(server.url(right + "/report"), report_fields(request_id, "delivered")).status_code,
        "d7 report wrong token": post_report(server.url(wrong + "/report"),
                                             report_fields(request_id, "delivered")).status_code,
        "d7 dlr": post_dlr(server.url(right), receipt).status_code,
        "d7 dlr get": post_dlr(server.url(right), receipt, method="GET").status_code,
        "d7 dlr wrong token": post_dlr(server.url(wrong), receipt).status_code,
        # A public URL that ends in "/" gives D7 a URL with "//": werkzeug redirects it.
        "d7 dlr double slash": post_dlr(server.url(f"/webhooks//d7/{D7_WEBHOOK_TOKEN}"), receipt).status_code,
    })


def _failing_gateways(server: Server, d7: D7Emulator, result: Logged) -> None:
    """A start both gateways refuse: the app logs each failure, D7's echoing our report URL with its token."""
    auth = {"Authorization": f"Bearer {API_KEY}"}
    server.smsc.mode = "5xx"
    d7.reply = (400, {"detail": {"code": "INVALID_REPORT_URL", "message":
                                 f"report_url {PUBLIC_URL}/webhooks/d7/{D7_WEBHOOK_TOKEN}/report is not reachable"}})
    try:
        failed = requests.post(server.url("/v1/verifications"), json={"phone": "+79991230005"}, headers=auth,
                               timeout=TIMEOUT)
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
        "two content lengths": (f"POST {d7}/report HTTP/1.1\r\n{host}Content-Length: 0\r\nContent-Length: 1\r\n\r\n"
                                .encode()),
        # A chunked body that is not: the app fails while reading it, in the webhook, and logs the exception.
        "bad chunked body": (f"POST {smsc} HTTP/1.1\r\n{host}Transfer-Encoding: chunked\r\n"
                             "Content-Type: application/x-www-form-urlencoded\r\n\r\nzz\r\nid=1\r\n0\r\n\r\n").encode(),
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


def _code(text: str) -> str:
    found = re.search(rf"(?<!\d)\d{{{CODE_LENGTH}}}(?!\d)", text)
    assert found is not None, text
    return found.group()


# what the log must not hold


def _pieces(value: str) -> list[str]:
    """The value, and each long part of a dotted token (a proof token's payload, time and signature)."""
    return [value, *(part for part in value.split(".") if len(part) >= 12 and part != value)]


def test_no_secret_reaches_any_log_line(logged: Logged) -> None:
    leaks = {}
    for name, value in logged.secrets.items():
        pattern = re.compile("|".join(rf"(?<![0-9A-Za-z]){re.escape(piece)}(?![0-9A-Za-z])" if piece.isdigit()
                                      else re.escape(piece) for piece in _pieces(value)))
        lines = [pattern.sub("X" * 8, line) for line in logged.text.splitlines() if pattern.search(line)]
        if lines:
            leaks[name] = lines
    assert not leaks, "secrets in the server's log (values replaced by X):\n" + json.dumps(leaks, indent=1,
                                                                                           ensure_ascii=False)


def test_the_traffic_was_answered_as_expected(logged: Logged) -> None:
    # What each request got, so the log lines checked below are those of handled requests.
    expected = {
        "wrong code": 422, "wrong key": 401, "key in query": 200, "referer": 200, "smsc call sha1": 200,
        "smsc sha1": 200, "smsc md5": 200, "smsc crc32": 200, "smsc crc32 hex": 200, "smsc json utf-8": 200,
        "smsc SHA1": 200, "smsc wrong secret": 403,
        "d7 report": 200, "d7 report wrong token": 404, "d7 dlr": 200, "d7 dlr get": 200, "d7 dlr wrong token": 404,
        "d7 dlr double slash": 308, "both gateways fail": 503, "raw utf-8 in smsc query": 400,
        "raw utf-8 in d7 query": 400, "request line too long": 414, "two content lengths": 400,
        "bad chunked body": 500,
    }
    assert {name: logged.statuses.get(name) for name in expected} == expected


# what the log must hold instead


def access(logged: Logged, method: str, target: str, status: int) -> list[str]:
    """The access lines of ``method target`` answered ``status`` (``target`` as logged, a literal)."""
    return logged.lines(rf'"{method} {re.escape(target)} HTTP/1\.1" {status} ')


@pytest.mark.parametrize(("method", "target", "status"), [
    ("POST", f"/webhooks/smsc?sha1={REDACTED}", 200),
    ("POST", f"/webhooks/smsc?md5={REDACTED}", 200),
    ("POST", f"/webhooks/smsc?crc32={REDACTED}", 200),
    ("POST", f"/webhooks/smsc?sha1={REDACTED}&charset=utf-8&fmt=3", 200),
    ("POST", f"/webhooks/smsc?SHA1={REDACTED}", 200),
    ("POST", f"/webhooks/smsc?sha1={REDACTED}", 403),
    ("POST", f"/webhooks/d7/{REDACTED}/report", 200),
    ("POST", f"/webhooks/d7/{REDACTED}/report", 404),
    ("POST", f"/webhooks/d7/{REDACTED}", 200),
    ("POST", f"/webhooks/d7/{REDACTED}", 404),
    ("POST", f"/webhooks//d7/{REDACTED}", 308),
    ("POST", f"/webhooks/d7/{REDACTED}/report", 400),  # refused by gunicorn: two Content-Lengths
    ("POST", f"/webhooks/smsc?sha1={REDACTED}&charset=utf-8", 500),  # the app failed reading the body
    ("POST", "/v1/verifications", 401),
    ("GET", "/healthz", 200),
])
def test_webhook_and_api_lines_are_logged_redacted(logged: Logged, method: str, target: str, status: int) -> None:
    assert access(logged, method, target, status), \
        f"no access line for {method} {target} {status}; the access lines:\n" + "\n".join(logged.lines(r'" \d{3} '))


def test_a_legacy_receipt_by_get_keeps_its_fields_but_not_the_token(logged: Logged) -> None:
    [line] = logged.lines(rf'"GET /webhooks/d7/{re.escape(REDACTED)}\?id=[-0-9a-f]+&level=2&message_status=DELIVRD')
    assert '" 200 ' in line


def test_api_lines_keep_the_path_and_lose_keys_in_the_query(logged: Logged) -> None:
    verification_id = logged.verification_id
    assert access(logged, "POST", f"/v1/verifications/{verification_id}/check", 422)
    assert access(logged, "POST", f"/v1/verifications/{verification_id}/check", 200)
    assert access(logged, "GET", f"/v1/verifications/{verification_id}?api_key={REDACTED}&access_token={REDACTED}",
                  200)
    [referred] = logged.lines(r'"GET /healthz HTTP/1\.1" 200 .*"https://app\.example\.com/done\?token=')
    assert f"token={REDACTED}&step=2" in referred


def test_the_error_log_shows_unparseable_requests_redacted(logged: Logged) -> None:
    refused = logged.lines(r"\[WARNING\] Invalid request from ip=127\.0\.0\.1: Invalid HTTP request line")
    assert len(refused) == 2, refused
    assert any(f"/webhooks/smsc?sha1={REDACTED}&charset=utf-8&mes=" in line for line in refused), refused
    assert any(f"/webhooks/d7/{REDACTED}?text=" in line for line in refused), refused
    assert logged.lines(r"Invalid request from ip=127\.0\.0\.1: Request Line is too large")


def test_the_app_logs_its_errors_redacted(logged: Logged) -> None:
    assert logged.lines(r"\[WARNING\] gateway failed: smsc: HTTP 502")
    [d7] = logged.lines(r"gateway failed: d7: HTTP 400")
    assert f"{PUBLIC_URL}/webhooks/d7/{REDACTED}/report is not reachable" in d7
    assert logged.lines(r"\[ERROR\] delivery-failed: every gateway failed")
    assert logged.lines(r"\[ERROR\] unhandled error")  # the bad chunked body


def test_the_app_lines_are_in_the_error_log_format(logged: Logged) -> None:
    # The app's own lines share gunicorn's error log and its format, as gunicorn.conf.py's post_fork used to do.
    assert logged.lines(r"^\[\d{4}-\d\d-\d\d \d\d:\d\d:\d\d [-+]\d{4}\] \[\d+\] \[INFO\] verification \S+ approved "
                        r"by code")


def test_access_lines_carry_the_duration(logged: Logged) -> None:
    assert logged.lines(r'"GET /healthz HTTP/1\.1" 200 \d+ "-" "python-requests/[\d.]+" \d+ms$')


def test_the_master_does_not_import_the_app(logged: Logged) -> None:
    # Loading the logger class must not import requests and ssl into the master before gevent patches the workers.
    assert "MonkeyPatchWarning" not in logged.text


# redact(): the text rules


@pytest.mark.parametrize(("text", "expected"), [
    ("/webhooks/smsc?sha1=s3cret", f"/webhooks/smsc?sha1={REDACTED}"),
    ("/webhooks/smsc?charset=utf-8&MD5=s3cret&fmt=3", f"/webhooks/smsc?charset=utf-8&MD5={REDACTED}&fmt=3"),
    ("/webhooks/smsc?crc32=s3cret", f"/webhooks/smsc?crc32={REDACTED}"),
    ("/x?token=a&psw=b&apikey=c&api_key=d&password=e&secret=f&key=g&code=h&signature=i&checksum=j",
     "/x?" + "&".join(f"{name}={REDACTED}" for name in ("token", "psw", "apikey", "api_key", "password", "secret",
                                                          "key", "code", "signature", "checksum"))),
    ("/x?access_token=a&Idempotency-Key=b&client_secret=c&sig=d&hmac=e&otp=f&pin=g&auth=h",
     "/x?" + "&".join(f"{name}={REDACTED}" for name in ("access_token", "Idempotency-Key", "client_secret", "sig",
                                                          "hmac", "otp", "pin", "auth"))),
    # What an inbound SMS says may be the code: its text is not logged either.
    ("/webhooks/zoomconnect/reply?from=%2B27725551234&message=1234&messageId=9",
     f"/webhooks/zoomconnect/reply?from=%2B2772***1234&message={REDACTED}&messageId=9"),
    ("/x?mes=1234&text=1234&content=1234", f"/x?mes={REDACTED}&text={REDACTED}&content={REDACTED}"),
    # Names percent-encoded, or with a suffix.
    ("/x?%73ha1=s3cret&sha1%5B%5D=s3cret", f"/x?%73ha1={REDACTED}&sha1%5B%5D={REDACTED}"),
    # Harmless parameters are kept, and an empty value says the parameter came empty.
    ("/webhooks/smsc?charset=utf-8&fmt=3&id=7&status=1", "/webhooks/smsc?charset=utf-8&fmt=3&id=7&status=1"),
    # Phone numbers are masked, as in the app's own lines.
    ("/sandbox/messages?phone=%2B79991234567", "/sandbox/messages?phone=%2B7999***4567"),
    ("/x?from=%2b27725551234&to=27725550000&phone=+79991234567&msisdn=12345",
     "/x?from=%2b2772***1234&to=2772***0000&phone=+7999***4567&msisdn=12345"),
    ("/webhooks/smsc?sha1=&fmt=3", "/webhooks/smsc?sha1=&fmt=3"),
    # A URL inside a parameter, percent-encoded.
    ("/x?next=https%3A%2F%2Fh%2Fwebhooks%2Fsmsc%3Fsha1%3Ds3cret%26charset%3Dutf-8",
     f"/x?next=https%3A%2F%2Fh%2Fwebhooks%2Fsmsc%3Fsha1%3D{REDACTED}%26charset%3Dutf-8"),
    # D7's path token, in every shape its route takes.
    ("/webhooks/d7/t0ken", f"/webhooks/d7/{REDACTED}"),
    ("/webhooks/d7/t0ken/report", f"/webhooks/d7/{REDACTED}/report"),
    ("/webhooks/d7/t0ken?id=1&level=2", f"/webhooks/d7/{REDACTED}?id=1&level=2"),
    ("//webhooks//d7//t0ken/report", f"//webhooks//d7//{REDACTED}/report"),
    ("/Webhooks/D7/t0ken", f"/Webhooks/D7/{REDACTED}"),
    ("/webhooks%2Fd7%2Ft0ken%2Freport", f"/webhooks%2Fd7%2F{REDACTED}%2Freport"),
    ('{"report_url": "https:\\/\\/h\\/webhooks\\/d7\\/t0ken\\/report"}',
     f'{{"report_url": "https:\\/\\/h\\/webhooks\\/d7\\/{REDACTED}\\/report"}}'),
    ("/webhooks/d7/", "/webhooks/d7/"),
    # gunicorn quotes a request line it cannot parse with repr(): escapes are part of the value.
    ("'GET /webhooks/d7/t0k\\xd0\\x9fen?text=\\xd0\\x9f\\xd1\\x80 HTTP/1.1'",
     f"'GET /webhooks/d7/{REDACTED}?text={REDACTED} HTTP/1.1'"),
    ("/webhooks/d7", "/webhooks/d7"),
    # Credentials and secrets in free text: headers, JSON and Python reprs.
    ("Authorization: Bearer abcdefgh12345678", f"Authorization: Bearer {REDACTED}"),
    ("Authorization: Basic Zm9vOmJhcg==", f"Authorization: Basic {REDACTED}"),
    ('{"code": "12345678", "token": "a.b.c", "phone": "+7999"}',
     f'{{"code": "{REDACTED}", "token": "{REDACTED}", "phone": "+7999"}}'),
    ("{'psw': 'pa\\'ss', 'login': 'me'}", f"{{'psw': '{REDACTED}', 'login': 'me'}}"),
    ('{"code": 12345678}', f'{{"code": {REDACTED}}}'),
    ("VERIFY_SECRET_KEY=abc VERIFY_API_KEYS=k1,k2 PORT=8000",
     f"VERIFY_SECRET_KEY={REDACTED} VERIFY_API_KEYS={REDACTED} PORT=8000"),
    # Lines with nothing to hide are left alone.
    ("Invalid request from ip=127.0.0.1: Request Line is too large (5075 > 4094)",
     "Invalid request from ip=127.0.0.1: Request Line is too large (5075 > 4094)"),
    ("verification 0123abcd sent via smsc to +7999***4567", "verification 0123abcd sent via smsc to +7999***4567"),
])
def test_redact(text: str, expected: str) -> None:
    assert redact(text) == expected
    assert redact(expected) == expected  # redacting twice changes nothing


# RedactingLogger: the access log's atoms and the error log's records


@pytest.fixture
def gunicorn_logger(tmp_path: Path) -> Iterator[tuple[RedactingLogger, Path, Path]]:
    """A RedactingLogger writing its error and access logs to files; the loggers it touches are restored after."""
    names = ("gunicorn.error", "gunicorn.access", "verify", "")
    saved = {name: (logging.getLogger(name).handlers[:], logging.getLogger(name).level,
                    logging.getLogger(name).propagate) for name in names}
    logging.getLogger().handlers = []  # as in gunicorn's process: nothing configured the root logger (pytest did)
    cfg = Config()
    errors, accesses = tmp_path / "error.log", tmp_path / "access.log"
    cfg.set("errorlog", str(errors))
    cfg.set("accesslog", str(accesses))
    logger = RedactingLogger(cfg)
    try:
        yield logger, errors, accesses
    finally:
        for name, (handlers, level, propagate) in saved.items():
            for handler in logging.getLogger(name).handlers:
                if handler not in handlers:
                    handler.close()
            logging.getLogger(name).handlers = handlers
            logging.getLogger(name).setLevel(level)
            logging.getLogger(name).propagate = propagate


def _request(uri: str, headers: list[tuple[str, str]]) -> tuple[Any, Any, dict[str, Any]]:
    path, _, query = uri.partition("?")
    environ = {"REQUEST_METHOD": "POST", "RAW_URI": uri, "PATH_INFO": path, "QUERY_STRING": query,
               "SERVER_PROTOCOL": "HTTP/1.1", "REMOTE_ADDR": "203.0.113.9",
               **{"HTTP_" + name.upper().replace("-", "_"): value for name, value in headers}}
    request = SimpleNamespace(headers=[(name.upper(), value) for name, value in headers])
    response = SimpleNamespace(status="308 Permanent Redirect", sent=12,
                               headers=[("Location", "/webhooks/d7/s3cret-token"), ("Content-Length", "12")])
    return response, request, environ


ALL_ATOMS = ('%(h)s %(l)s %(u)s %(t)s "%(r)s" %(s)s %(m)s %(U)s %(q)s %(H)s %(b)s %(B)s "%(f)s" "%(a)s" %(T)s %(D)s '
             '%(M)s %(L)s %(p)s %({Authorization}i)s %({x-api-key}i)s %({cookie}i)s %({referer}i)s %({user-agent}i)s '
             '%({location}o)s %({raw_uri}e)s %({query_string}e)s %({http_authorization}e)s %({http_referer}e)s')


def test_every_atom_is_redacted(gunicorn_logger: tuple[RedactingLogger, Path, Path]) -> None:
    logger, _, _ = gunicorn_logger
    logger.cfg.set("access_log_format", ALL_ATOMS)
    response, request, environ = _request(
        "/webhooks//d7/s3cret-token?sha1=s3cret-sha", [
            ("Authorization", "Bearer s3cret-key-0123"), ("X-Api-Key", "s3cret-key-4567"),
            ("Cookie", "session=s3cret-cookie"), ("Referer", "https://h/cb?psw=s3cret-psw"), ("User-Agent", "curl")])
    atoms = logger.atoms(response, request, environ, timedelta(milliseconds=3))
    leaked = {key: value for key, value in atoms.items() if isinstance(value, str) and "s3cret" in value}
    assert leaked == {}
    assert {key for key, value in atoms.items() if isinstance(value, str)} == {
        "h", "l", "u", "t", "r", "s", "m", "U", "q", "H", "b", "f", "a", "L", "p", "{authorization}i", "{x-api-key}i",
        "{cookie}i", "{referer}i", "{user-agent}i", "{location}o", "{raw_uri}e", "{query_string}e",
        "{http_authorization}e", "{http_referer}e"}
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
    atoms = logger.atoms(*_request("/webhooks/smsc?sha1=s3cret", [("Authorization", "Bearer s3cret-key-0123")]),
                         timedelta(0))
    assert "{authorization}i" not in atoms and "{raw_uri}e" not in atoms and "q" not in atoms
    assert atoms["r"] == f"POST /webhooks/smsc?sha1={REDACTED} HTTP/1.1"


def test_a_percent_encoded_route_is_shown_decoded_and_redacted(
        gunicorn_logger: tuple[RedactingLogger, Path, Path]) -> None:
    logger, _, _ = gunicorn_logger
    logger.cfg.set("access_log_format", ALL_ATOMS)
    response, request, environ = _request("/webhooks/%64%37/s3cret-token/report", [])
    environ["PATH_INFO"] = "/webhooks/d7/s3cret-token/report"
    atoms = logger.atoms(response, request, environ, timedelta(0))
    assert atoms["r"] == f"POST /webhooks/d7/{REDACTED}/report HTTP/1.1"
    assert atoms["{raw_uri}e"] == f"/webhooks/d7/{REDACTED}/report"
    assert atoms["U"] == f"/webhooks/d7/{REDACTED}/report"


def test_access_lines_are_written_redacted(gunicorn_logger: tuple[RedactingLogger, Path, Path]) -> None:
    logger, _, accesses = gunicorn_logger
    logger.cfg.set("access_log_format", '%(r)s %(U)s?%(q)s "%(f)s" %({authorization}i)s %({raw_uri}e)s')
    logger.access(*_request("/webhooks/smsc?md5=s3cret", [("Authorization", "Basic Zm9vOmJhcg=="),
                                                          ("Referer", "/webhooks/d7/s3cret")]),
                  timedelta(0))
    text = accesses.read_text()
    assert "s3cret" not in text and "Zm9v" not in text, text
    assert f"POST /webhooks/smsc?md5={REDACTED} HTTP/1.1" in text


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
    text = errors.read_text()
    assert "s3cret" not in text, text
    assert f"[ERROR] Error handling request POST /webhooks/smsc?sha1={REDACTED}" in text
    assert f"ValueError: cannot read /webhooks/smsc?sha1={REDACTED}" in text
    assert f"[ERROR] Exception on /webhooks/d7/{REDACTED}/report [POST]" in text
    assert "[INFO] verification abc approved by code" in text
    assert f"Retrying: /sys/send.php?psw={REDACTED}" in text


def test_a_line_that_cannot_be_formatted_or_redacted_is_not_written_raw(
        gunicorn_logger: tuple[RedactingLogger, Path, Path], monkeypatch: pytest.MonkeyPatch) -> None:
    _, errors, _ = gunicorn_logger
    logging.getLogger("verify.x").error("bad format %d", "/webhooks/d7/s3cret")
    monkeypatch.setattr("verify.logs.redact", lambda text: 1 / 0)
    logging.getLogger("verify.x").error("fails %s", "/webhooks/smsc?sha1=s3cret")
    text = errors.read_text()
    assert "s3cret" not in text, text
    assert f"unformattable log message: 'bad format %d' ('/webhooks/d7/{REDACTED}',)" in text
    assert "a log line was withheld: redacting it failed (ZeroDivisionError)" in text


def test_a_reload_does_not_stack_filters(gunicorn_logger: tuple[RedactingLogger, Path, Path]) -> None:
    logger, errors, _ = gunicorn_logger
    for _ in range(2):
        before = logger.error_log.handlers + logger.access_log.handlers
        logger.setup(logger.cfg)
        for handler in before:  # gunicorn drops its old handlers on a reload, without closing them
            handler.close()
    logging.getLogger("verify").warning("once %s", "/webhooks/d7/s3cret")
    assert errors.read_text().count("once") == 1
    assert all(sum(isinstance(f, type(logger.redaction)) for f in handler.filters) == 1
               for handler in logger.error_log.handlers)


def test_the_logger_class_loads_nothing_of_the_app() -> None:
    # gunicorn's master imports it before gevent patches the workers: no ssl, requests or app may come with it.
    code = ("import sys, verify.logs; "
            "print(sorted(m for m in ('ssl', 'requests', 'urllib3', 'flask', 'verify.app') if m in sys.modules))")
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert loaded.strip() == "[]"


def test_verify_dev_and_the_bench_serve_with_the_redacting_logger() -> None:
    command = gunicorn_command("verify:create_app()", "127.0.0.1", 8000, 2, access_log=True)
    assert command[command.index("--logger-class") + 1] == "verify.logs.RedactingLogger"
