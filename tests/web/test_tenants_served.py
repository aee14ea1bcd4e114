"""Tenants (``VERIFY_TENANTS_FILE``) as they ship: the Procfile's gunicorn (2 gevent workers, ``gunicorn.conf.py``),
the real Redis, SMSC's wire emulator and a hook receiver written in the test (tests/providers/hook_emulator.py).

Two tenants, ``shop`` and ``bank``, each with its own brand, code length, per-IP limit, site key and hook secret;
``shop`` sends SMS through SMSC and spoken codes through the hook, ``bank`` sends SMS through the hook (SMSC after
it). SMSC's callbacks are signed (``VERIFY_SMSC_SECRET``, sha1) and calls go through SMSC
(``VERIFY_CALL_PROVIDER=smsc``). What this file proves:

1. each tenant's texts, as the gateways got them, carry its brand and a code of its length (which approves), and
   each tenant's per-IP limit counts its own starts only;
2. with bank's API key, every endpoint answers shop's verification id with the very 404 of an unknown id, an
   Idempotency-Key of shop's replays nothing for bank, shop's proof token fails bank's check, shop's site key does
   not reach bank's verification, and none of it changed the victim's verification;
3. every configured webhook (SMSC's delivery status, inbound SMS and call; the hook's signed delivery report, with a
   secret per tenant) changes the verification of the one tenant it concerns; a hook report signed with bank's
   secret does nothing to shop's verification, and an unsigned one is 403;
4. fifty concurrent starts for one phone, 25 through each tenant's site key, send the phone limit and no more: the
   phone's quota is shared by the tenants, whichever worker takes the start;
5. a bad tenants file stops gunicorn's start with a non-zero exit and an error naming the line;
6. SIGHUP under load swaps the file with no 5xx nor connection error: the new workers serve the new file (a new
   brand, a new tenant's key), and a broken file sent the same way is refused while the last good one keeps
   serving and the master lives on.
"""

from __future__ import annotations

import itertools
import re
import signal
import subprocess
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest
import requests

from tests.providers.hook_emulator import HookReceiver, signed_headers
from tests.providers.smsc_emulator import post_callback
from tests.servers import ROOT, Call, Server, burst, eventually, gunicorn_server, procfile_command, server_env
from verify.embedded import EmbeddedRedis, free_port
from verify.gateways import GATEWAYS
from verify.tenants import hash_key

SHOP_KEY = "shop-served-api-key-0123456789"
BANK_KEY = "bank-served-api-key-0123456789"
CLUB_KEY = "club-served-api-key-0123456789"  # the tenant a reload adds
SHOP_HOOK_SECRET = "shop-hook-secret-0123456789"
BANK_HOOK_SECRET = "bank-hook-secret-0123456789"
SMSC_SECRET = "smscTenants-Q7w9Zr4T2pLx"
PK_SHOP = ("pk_shop", "https://shop.example")
PK_BANK = ("pk_bank", "https://bank.example")
SHOP_BRAND, BANK_BRAND, CLUB_BRAND = "Acme Shop", "First Bank", "Golf Club"
SHOP_CODE, BANK_CODE = 4, 8  # code_length
SHOP_IP_PER_HOUR, BANK_IP_PER_HOUR = 2, 4  # limits.ip
PHONE_PER_10_MINUTES = 3  # limits.phone, the same for both: a phone's count is shared
UNKNOWN_ID = "0" * 28
TIMEOUT = 10.0
LOAD_TIMEOUT = 60.0  # of a request of the load that runs through a reload

_numbers = itertools.count(1)  # next() on a count is atomic: the load threads share it


def new_phone() -> str:
    """A phone of its own (the phone limit stays out of the way; VERIFY_LIMIT_PREFIX is off)."""
    return f"+7999{next(_numbers):07d}"


def new_ip() -> str:
    """A client IP of its own (the IP limits stay out of the way)."""
    n = next(_numbers)
    return f"10.{(n >> 16) & 255}.{(n >> 8) & 255}.{n & 255}"


def tenants_file(hook_url: str, *, shop_brand: str = SHOP_BRAND, club: bool = False) -> str:
    """The tenants file: shop and bank (and, with ``club``, a third tenant with its own API key)."""
    text = f"""\
[tenants.shop]
brand = "{shop_brand}"
api_keys = ["{hash_key(SHOP_KEY)}"]
code_length = {SHOP_CODE}
site_keys = {{ {PK_SHOP[0]} = ["{PK_SHOP[1]}"] }}
limits = {{ ip = "{SHOP_IP_PER_HOUR}/hour", phone = "{PHONE_PER_10_MINUTES}/10 minutes" }}
sms_providers = ["smsc"]
voice_providers = ["hook"]
hook = {{ url = "{hook_url}", secret = ["{SHOP_HOOK_SECRET}"] }}

[tenants.bank]
brand = "{BANK_BRAND}"
api_keys = ["{hash_key(BANK_KEY)}"]
code_length = {BANK_CODE}
site_keys = {{ {PK_BANK[0]} = ["{PK_BANK[1]}"] }}
limits = {{ ip = "{BANK_IP_PER_HOUR}/hour", phone = "{PHONE_PER_10_MINUTES}/10 minutes" }}
sms_providers = ["hook", "smsc"]
hook = {{ url = "{hook_url}", secret = ["{BANK_HOOK_SECRET}"] }}
"""
    if club:
        text += f"""
[tenants.club]
brand = "{CLUB_BRAND}"
api_keys = ["{hash_key(CLUB_KEY)}"]
"""
    return text


def deployment(tenants: Path) -> dict[str, str]:
    """The served settings besides servers.py's (sandbox, SMSC for SMS, trusted X-Forwarded-For)."""
    return {
        "VERIFY_TENANTS_FILE": str(tenants),
        "VERIFY_CAPTCHA_MODE": "off",
        "VERIFY_LIMIT_PREFIX": "none",
        "VERIFY_CALL_PROVIDER": "smsc",
        "VERIFY_SMSC_SECRET": SMSC_SECRET,
        "VERIFY_PUBLIC_URL": "https://verify.example",
    }


@pytest.fixture(scope="module")
def receiver() -> Iterator[HookReceiver]:
    """Both tenants' hook receiver: it checks each message against either tenant's secret. It answers 204 (no id of
    its own), so the message id kept is the verification id and a report may name it by ``id`` alone (hook.md §3)."""
    receiver = HookReceiver(secrets=(SHOP_HOOK_SECRET, BANK_HOOK_SECRET))
    receiver.give_id = False
    receiver.start()
    yield receiver
    receiver.stop()


@pytest.fixture(scope="module")
def module_server(
    redis_server: EmbeddedRedis, receiver: HookReceiver, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Server]:
    logs = Path(tmp_path_factory.mktemp("tenants"))
    path = logs / "tenants.toml"
    path.write_text(tenants_file(receiver.url + "hook"))
    with gunicorn_server(redis_server.url, logs, deployment(path), workers=2, name="tenants") as server:
        yield server


@pytest.fixture
def server(module_server: Server, receiver: HookReceiver) -> Iterator[Server]:
    """The module's server on an empty Redis; its log lines of this test are printed after it (shown on failure)."""
    module_server.reset()
    receiver.mode, receiver.reply = "ok", None
    offset = module_server.log_size()
    yield module_server
    print(f"--- the end of {module_server.log} during this test ---\n{module_server.log_since(offset)}")


# helpers


def api(
    server: Server,
    method: str,
    path: str,
    key: str,
    body: dict[str, Any] | None = None,
    *,
    ip: str | None = None,
    headers: dict[str, str] | None = None,
    timeout: float = TIMEOUT,
) -> requests.Response:
    """One request with API key ``key``, on a connection of its own."""
    sent = {"Authorization": f"Bearer {key}", **({"X-Forwarded-For": ip} if ip else {}), **(headers or {})}
    return requests.request(method, server.url(path), json=body, headers=sent, timeout=timeout)


def post_start(
    server: Server, key: str, phone: str, ip: str, headers: dict[str, str] | None = None
) -> requests.Response:
    """POST /v1/verifications for ``phone`` with API key ``key`` from client IP ``ip``."""
    return api(server, "POST", "/v1/verifications", key, {"phone": phone}, ip=ip, headers=headers)


def by_site_key(
    server: Server, method: str, path: str, site: tuple[str, str], secret: str = "", body: dict[str, Any] | None = None
) -> requests.Response:
    """One request with a site key, from its origin, with a client secret when given."""
    headers = {"X-Verify-Site-Key": site[0], "Origin": site[1], "X-Forwarded-For": new_ip()}
    if secret:
        headers["X-Verify-Client-Secret"] = secret
    return requests.request(method, server.url(path), json=body, headers=headers, timeout=TIMEOUT)


def begin(server: Server, key: str, phone: str, **fields: Any) -> dict[str, Any]:
    """A start with ``key`` from a new IP, answered 201: its body."""
    started = api(server, "POST", "/v1/verifications", key, {"phone": phone, **fields}, ip=new_ip())
    assert started.status_code == 201, started.text
    body: dict[str, Any] = started.json()
    return body


def shown(server: Server, key: str, vid: str) -> dict[str, Any]:
    """GET the verification with ``key``, answered 200: its body."""
    got = api(server, "GET", f"/v1/verifications/{vid}", key)
    assert got.status_code == 200, got.text
    body: dict[str, Any] = got.json()
    return body


def code_in(text: str, brand: str, length: int, origin: str = "") -> str:
    """The code of an English SMS text of ``brand``, which must be ``length`` digits; a site key's start (its
    ``origin``) adds the WebOTP line of the site key's host."""
    webotp = rf"\n@{re.escape(origin.partition('://')[2])} #\1" if origin else ""
    matched = re.fullmatch(rf"(\d+) is your {re.escape(brand)} code\. It expires in \d+ min\.{webotp}", text)
    assert matched is not None, f"not a {brand} text: {text!r}"
    assert len(matched[1]) == length, f"a {len(matched[1])}-digit code in {text!r}; {brand}'s are {length}"
    return matched[1]


def smsc_text(server: Server, mark: int, phone: str) -> str:
    """The one SMS SMSC accepted for ``phone`` since ``mark``."""
    (sms,) = [d for d in server.smsc.since(mark, "sms") if d.phone == phone]
    return sms.text


def leaked(server: Server, *more: str) -> list[str]:
    """What of the tenants' keys (and their hashes), the hook and SMSC secrets and ``more`` (codes, tokens) the
    server's whole log holds: its start, every request line and every reload included."""
    text = server.log.read_text(encoding="utf-8", errors="replace")
    assert '"route"' in text or "verify.request" in text  # the log is the service's, with its request lines
    keys = (SHOP_KEY, BANK_KEY, CLUB_KEY)
    secrets = (*keys, *(hash_key(k).removeprefix("sha256:") for k in keys), SHOP_HOOK_SECRET, BANK_HOOK_SECRET)
    # A code is searched as a number of its own (a year or a port is no code), as tests/test_logs.py does.
    found = [
        re.search(rf"(?<![0-9A-Za-z]){re.escape(v)}(?![0-9A-Za-z])" if v.isdigit() else re.escape(v), text)
        for v in (*secrets, SMSC_SECRET, *more)
    ]
    return [match.group()[:8] for match in found if match]


def hook_message(receiver: HookReceiver, before: int, vid: str) -> dict[str, Any]:
    """The one message the receiver accepted for verification ``vid`` since ``before``."""
    (message,) = [m for m in receiver.messages[before:] if m["id"] == vid]
    return message


def problem(response: requests.Response) -> dict[str, Any]:
    """A problem's members that say what it is (everything but the id a request carries)."""
    body: dict[str, Any] = response.json()
    return {k: v for k, v in body.items() if k not in ("instance", "request_id")}


def digits(phone: str) -> str:
    """A phone as SMSC writes it in callbacks: digits, no +."""
    return phone.lstrip("+")


def smsc_callback(server: Server, fields: dict[str, str], secret: str | None = SMSC_SECRET) -> requests.Response:
    """An SMSC callback to the handler URL, as SMSC posts it (docs/gateways/smsc.md §7, §9): UTF-8, sha1-signed
    with ``secret`` (unsigned when ``None``)."""
    return post_callback(
        server.url("/webhooks/smsc"), fields, secret=secret, hash="sha1", charset="utf-8", timeout=TIMEOUT
    )


def hook_report(server: Server, vid: str, status: str, secret: str | None, at: int | None = None) -> requests.Response:
    """A hook delivery report (docs/gateways/hook.md §4) for ``vid``, signed with ``secret`` at ``at`` (now by default;
    unsigned: ``None``)."""
    body = f'{{"id":"{vid}","status":"{status}"}}'.encode()
    stamp = int(time.time()) if at is None else at
    headers = signed_headers(secret, stamp, body) if secret else {"Content-Type": "application/json"}
    return requests.post(server.url("/webhooks/hook"), data=body, headers=headers, timeout=TIMEOUT)


# 1. brand, code length and limits: each tenant's own


def test_each_tenant_texts_its_brand_and_code_length_and_meets_its_own_ip_limit(
    server: Server, receiver: HookReceiver
) -> None:
    ip = new_ip()
    mark, before = server.smsc.mark(), len(receiver.messages)
    shop = [(phone, post_start(server, SHOP_KEY, phone, ip)) for phone in [new_phone() for _ in range(3)]]
    assert [r.status_code for _, r in shop] == [201, 201, 429], [r.text for _, r in shop]
    assert shop[2][1].json()["limit"] == "ip"
    # The same client IP, bank's key: shop's two starts took nothing of bank's budget, which is its own (4).
    phones = [new_phone() for _ in range(BANK_IP_PER_HOUR + 1)]
    bank = [(phone, post_start(server, BANK_KEY, phone, ip)) for phone in phones]
    assert [r.status_code for _, r in bank] == [201] * BANK_IP_PER_HOUR + [429], [r.text for _, r in bank]
    assert bank[-1][1].json()["limit"] == "ip"

    # Shop's SMS went through SMSC, the two it let through only, in its brand, 4 digits.
    assert sorted(d.phone for d in server.smsc.since(mark)) == sorted(phone for phone, _ in shop[:2])
    for phone, started in shop[:2]:
        code = code_in(smsc_text(server, mark, phone), SHOP_BRAND, SHOP_CODE)
        checked = api(server, "POST", f"/v1/verifications/{started.json()['id']}/check", SHOP_KEY, {"code": code})
        assert checked.status_code == 200 and checked.json()["status"] == "approved", checked.text
    # Bank's through the hook (signed with bank's secret: the receiver checked it), in its brand, 8 digits.
    assert sorted(m["phone"] for m in receiver.messages[before:]) == sorted(phone for phone, _ in bank[:-1])
    for phone, started in bank[:-1]:
        message = hook_message(receiver, before, started.json()["id"])
        assert message["phone"] == phone and message["channel"] == "sms"
        assert code_in(message["text"], BANK_BRAND, BANK_CODE) == message["code"]
    vid = bank[0][1].json()["id"]
    code = hook_message(receiver, before, vid)["code"]
    checked = api(server, "POST", f"/v1/verifications/{vid}/check", BANK_KEY, {"code": code})
    assert checked.status_code == 200 and checked.json()["status"] == "approved", checked.text


# 2. isolation through every endpoint


def test_bank_reaches_nothing_of_shops_and_changes_nothing(server: Server) -> None:
    phone, mark = new_phone(), server.smsc.mark()
    order = {"Idempotency-Key": "order-7"}
    started = post_start(server, SHOP_KEY, phone, new_ip(), order)
    assert started.status_code == 201, started.text
    vid = started.json()["id"]
    code = code_in(smsc_text(server, mark, phone), SHOP_BRAND, SHOP_CODE)
    victim = shown(server, SHOP_KEY, vid)

    for method, path, body in (
        ("GET", f"/v1/verifications/{vid}", None),
        ("POST", f"/v1/verifications/{vid}/check", {"code": code}),
        ("POST", f"/v1/verifications/{vid}/resend", {}),
        ("DELETE", f"/v1/verifications/{vid}", None),
    ):
        theirs = api(server, method, path, BANK_KEY, body, ip=new_ip())
        unknown = api(server, method, path.replace(vid, UNKNOWN_ID), BANK_KEY, body, ip=new_ip())
        assert theirs.status_code == unknown.status_code == 404, (method, path, theirs.text, unknown.text)
        assert problem(theirs) == problem(unknown), (method, path)
    assert [d.phone for d in server.smsc.since(mark)] == [phone]  # bank's resend sent nothing

    # The Idempotency-Key replays for shop; for bank it is a key never seen: a verification of its own.
    again = post_start(server, SHOP_KEY, phone, new_ip(), order)
    assert again.json()["id"] == vid, again.text
    bank = post_start(server, BANK_KEY, phone, new_ip(), order)
    assert bank.status_code == 201 and bank.json()["id"] != vid, bank.text
    assert shown(server, BANK_KEY, bank.json()["id"])["phone"] == phone

    # Nothing bank tried changed shop's verification (attempts and sends left, status, delivery: all of it), and
    # its code approves it, for shop.
    assert shown(server, SHOP_KEY, vid) == victim
    assert victim["status"] == "pending" and victim["delivery"] == {"provider": "smsc", "status": "sent"}
    checked = api(server, "POST", f"/v1/verifications/{vid}/check", SHOP_KEY, {"code": code})
    assert checked.status_code == 200 and checked.json()["status"] == "approved", checked.text
    token = checked.json()["token"]

    # Shop's proof token fails bank's check (bank first: its try does not use the token up), holds for shop.
    refused = api(server, "POST", "/v1/tokens/verify", BANK_KEY, {"token": token})
    assert refused.status_code == 400, refused.text
    proved = api(server, "POST", "/v1/tokens/verify", SHOP_KEY, {"token": token})
    assert proved.status_code == 200 and proved.json()["verification_id"] == vid, proved.text


def test_shops_site_key_does_not_reach_banks_verification(server: Server, receiver: HookReceiver) -> None:
    phone, before = new_phone(), len(receiver.messages)
    started = by_site_key(server, "POST", "/v1/verifications", PK_BANK, body={"phone": phone})
    assert started.status_code == 201, started.text
    vid, secret = started.json()["id"], started.json()["client_secret"]
    code = hook_message(receiver, before, vid)["code"]
    assert len(code) == BANK_CODE
    victim = shown(server, BANK_KEY, vid)
    for method, path, body in (
        ("GET", f"/v1/verifications/{vid}", None),
        ("POST", f"/v1/verifications/{vid}/check", {"code": code}),
        ("POST", f"/v1/verifications/{vid}/resend", {}),
    ):
        theirs = by_site_key(server, method, path, PK_SHOP, secret, body)
        unknown = by_site_key(server, method, path.replace(vid, UNKNOWN_ID), PK_SHOP, secret, body)
        assert theirs.status_code == unknown.status_code == 404, (method, path, theirs.text, unknown.text)
        assert problem(theirs) == problem(unknown), (method, path)
    assert [m["id"] for m in receiver.messages[before:]] == [vid]  # shop's resend sent nothing
    assert shown(server, BANK_KEY, vid) == victim
    own = by_site_key(server, "GET", f"/v1/verifications/{vid}", PK_BANK, secret)
    assert own.status_code == 200 and own.json()["status"] == "pending", own.text
    checked = by_site_key(server, "POST", f"/v1/verifications/{vid}/check", PK_BANK, secret, {"code": code})
    assert checked.status_code == 200 and checked.json()["status"] == "approved", checked.text


# 3. every webhook: the one tenant it concerns


def test_smsc_delivery_status_changes_shops_verification_only(server: Server) -> None:
    phone, mark = new_phone(), server.smsc.mark()
    shop = begin(server, SHOP_KEY, phone)["id"]
    bank = begin(server, BANK_KEY, phone)["id"]
    assert shown(server, BANK_KEY, bank)["delivery"] == {"provider": "hook", "status": "sent"}
    (sms,) = server.smsc.since(mark)
    assert sms.phone == phone
    status = {"id": shop, "phone": digits(phone), "status": "1", "ts": str(int(time.time()))}

    unsigned = smsc_callback(server, status, secret=None)
    forged = smsc_callback(server, status, secret="notOurSecret-0123456789")
    assert (unsigned.status_code, forged.status_code) == (403, 403)
    assert shown(server, SHOP_KEY, shop)["delivery"] == {"provider": "smsc", "status": "sent"}

    accepted = smsc_callback(server, status)
    assert accepted.status_code == 200, accepted.text
    assert shown(server, SHOP_KEY, shop)["delivery"] == {"provider": "smsc", "status": "delivered"}
    assert shown(server, BANK_KEY, bank)["delivery"] == {"provider": "hook", "status": "sent"}
    assert shown(server, BANK_KEY, bank)["status"] == "pending"


def test_smsc_inbound_sms_approves_the_verification_of_the_tenant_it_answers(
    server: Server, receiver: HookReceiver
) -> None:
    phone, mark, before = new_phone(), server.smsc.mark(), len(receiver.messages)
    shop = begin(server, SHOP_KEY, phone)["id"]
    bank = begin(server, BANK_KEY, phone)["id"]
    shop_code = code_in(smsc_text(server, mark, phone), SHOP_BRAND, SHOP_CODE)
    bank_code = hook_message(receiver, before, bank)["code"]
    inbound = {"id": "9001", "phone": digits(phone), "mes": shop_code, "to": "79990000000", "time": "0"}

    # A reply to shop's message (sms_id: SMSC's message id, our verification id) with shop's code.
    answered = smsc_callback(server, {**inbound, "sms_id": shop})
    assert answered.status_code == 200, answered.text
    assert shown(server, SHOP_KEY, shop)["status"] == "approved"
    assert shown(server, BANK_KEY, bank)["status"] == "pending"
    # A reply naming no message, with bank's 8 digits: bank's is the one pending SMS verification it can answer.
    replied = smsc_callback(server, {**inbound, "id": "9002", "mes": f"code {bank_code}"})
    assert replied.status_code == 200, replied.text
    assert shown(server, BANK_KEY, bank)["status"] == "approved"


def test_smsc_call_approves_shops_call_verification_only(server: Server) -> None:
    phone, mark = new_phone(), server.smsc.mark()
    shop = begin(server, SHOP_KEY, phone, channel="call")["id"]
    bank = begin(server, BANK_KEY, phone)["id"]
    assert [(d.kind, d.phone) for d in server.smsc.since(mark)] == [("call", phone)]  # wait_call.php, for shop
    call = {"phone": digits(phone), "waitcall": "1", "ts": str(int(time.time()))}
    assert smsc_callback(server, call, secret=None).status_code == 403
    assert shown(server, SHOP_KEY, shop)["status"] == "pending"

    called = smsc_callback(server, call)
    assert called.status_code == 200, called.text
    assert shown(server, SHOP_KEY, shop)["status"] == "approved"
    assert shown(server, BANK_KEY, bank)["status"] == "pending"


def test_hook_reports_count_only_with_the_tenants_own_secret(server: Server, receiver: HookReceiver) -> None:
    phone, before = new_phone(), len(receiver.messages)
    shop = begin(server, SHOP_KEY, phone, channel="voice")["id"]
    bank = begin(server, BANK_KEY, phone)["id"]
    assert hook_message(receiver, before, shop)["channel"] == "voice"  # the receiver checked shop's signature
    assert hook_message(receiver, before, bank)["channel"] == "sms"  # and bank's
    sent = {"provider": "hook", "status": "sent"}

    unsigned = hook_report(server, shop, "delivered", None)
    assert unsigned.status_code == 403 and unsigned.headers["Content-Type"] == "application/problem+json"
    # Signed by bank (a valid signature: bank's receiver could make it), about shop's verification: bank's secret
    # verifies it, so it is acknowledged (webhooks.py: 200 for the harmless), and it concerns no verification of
    # bank's. (Signed a while ago, so that it differs from shop's report below: the same bytes in the same second are
    # the test after this one's.)
    strangers = hook_report(server, shop, "delivered", BANK_HOOK_SECRET, at=int(time.time()) - 30)
    assert strangers.status_code == 200, strangers.text
    assert shown(server, SHOP_KEY, shop)["delivery"] == sent
    assert shown(server, SHOP_KEY, shop)["status"] == "pending"
    assert shown(server, BANK_KEY, bank)["delivery"] == sent

    own = hook_report(server, shop, "delivered", SHOP_HOOK_SECRET)
    assert own.status_code == 200, own.text
    assert shown(server, SHOP_KEY, shop)["delivery"] == {"provider": "hook", "status": "delivered"}
    assert shown(server, BANK_KEY, bank)["delivery"] == sent
    failed = hook_report(server, bank, "failed", BANK_HOOK_SECRET)
    assert failed.status_code == 200, failed.text
    assert shown(server, BANK_KEY, bank)["delivery"] == {"provider": "hook", "status": "failed"}
    assert shown(server, SHOP_KEY, shop)["delivery"] == {"provider": "hook", "status": "delivered"}


def test_the_webhooks_of_gateways_no_tenant_uses_are_not_there(server: Server) -> None:
    """SMSC's and the hook's are the served deployment's only webhooks (the tests above cover them): every other
    gateway's route answers 404, theirs refuse an unsigned request."""
    routes = [(gateway.name, re.sub(r"<[^>]+>", "x", route.rule)) for gateway in GATEWAYS for route in gateway.webhooks]
    assert {name for name, _ in routes} >= {"smsc", "hook", "telegram", "d7", "zoomconnect"}
    answers = {
        route: requests.post(server.url(f"/webhooks{route[1]}"), timeout=TIMEOUT).status_code for route in routes
    }
    assert answers == {(name, rule): 403 if name in ("smsc", "hook") else 404 for name, rule in routes}, answers


def test_a_strangers_report_does_not_use_up_the_owners_report(server: Server, receiver: HookReceiver) -> None:
    before = len(receiver.messages)
    shop = begin(server, SHOP_KEY, new_phone(), channel="voice")["id"]
    assert hook_message(receiver, before, shop)["channel"] == "voice"
    at = int(time.time())
    assert hook_report(server, shop, "delivered", BANK_HOOK_SECRET, at=at).status_code == 200
    assert shown(server, SHOP_KEY, shop)["delivery"] == {"provider": "hook", "status": "sent"}
    own = hook_report(server, shop, "delivered", SHOP_HOOK_SECRET, at=at)
    assert own.status_code == 200, own.text
    assert shown(server, SHOP_KEY, shop)["delivery"] == {"provider": "hook", "status": "delivered"}


# 4. a burst for one phone over both tenants


def test_fifty_starts_for_one_phone_over_two_tenants_send_the_phone_limit(
    server: Server, receiver: HookReceiver
) -> None:
    phone, mark, before = new_phone(), server.smsc.mark(), len(receiver.messages)
    # Site keys: each start is a verification of its own (an API key's second start would return its pending one).
    calls = [
        Call("POST", "/v1/verifications", {"phone": phone}, new_ip(), (PK_SHOP, PK_BANK)[i % 2]) for i in range(50)
    ]
    replies = burst(server, calls)
    tally = Counter(f"{r.status} {r.limit}".strip() for r in replies)
    assert tally == {"201": PHONE_PER_10_MINUTES, "429 phone": 50 - PHONE_PER_10_MINUTES}, tally
    smsc = server.smsc.since(mark)
    hooked = receiver.messages[before:]
    assert len(smsc) + len(hooked) == PHONE_PER_10_MINUTES, (smsc, hooked)
    assert {d.phone for d in smsc} | {m["phone"] for m in hooked} == {phone}
    created = {str(r.body["id"]) for r in replies if r.status == 201}
    assert {m["id"] for m in hooked} <= created
    # Shop's went through SMSC in shop's brand, bank's through the hook in bank's.
    shop_created = sum(r.status == 201 and r.call.site_key == PK_SHOP for r in replies)
    assert len(smsc) == shop_created and len(hooked) == PHONE_PER_10_MINUTES - shop_created
    assert all(code_in(d.text, SHOP_BRAND, SHOP_CODE, PK_SHOP[1]) for d in smsc)
    assert all(code_in(m["text"], BANK_BRAND, BANK_CODE, PK_BANK[1]) == m["code"] for m in hooked)


DEPLOYMENT_CAP = 5  # VERIFY_LIMIT_GLOBAL per hour, with a tenants file: every tenant's sends together
FAILURES_PER_DAY = 3  # VERIFY_LIMIT_PHONE_FAILURES: a phone's wrong codes, whichever tenant's they were


@pytest.fixture(scope="module")
def capped(
    redis_server: EmbeddedRedis, receiver: HookReceiver, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Server]:
    """A second server on the same file, with a deployment cap and a tight wrong-code limit (its own Redis keys:
    flushed by each test)."""
    logs = Path(tmp_path_factory.mktemp("capped"))
    path = logs / "tenants.toml"
    path.write_text(tenants_file(receiver.url + "hook"))
    limits = {"VERIFY_LIMIT_GLOBAL": f"{DEPLOYMENT_CAP}/hour", "VERIFY_LIMIT_PHONE_FAILURES": f"{FAILURES_PER_DAY}/day"}
    with gunicorn_server(redis_server.url, logs, {**deployment(path), **limits}, workers=2, name="capped") as server:
        yield server


def test_thirty_starts_over_two_tenants_send_the_deployment_cap(capped: Server, receiver: HookReceiver) -> None:
    capped.reset()
    mark, before = capped.smsc.mark(), len(receiver.messages)
    # Each start its own phone and IP, so only the deployment's cap can refuse; 15 through each tenant's site key.
    calls = [
        Call("POST", "/v1/verifications", {"phone": new_phone()}, new_ip(), (PK_SHOP, PK_BANK)[i % 2])
        for i in range(30)
    ]
    replies = burst(capped, calls)
    tally = Counter(r.summary() for r in replies)
    assert tally == {"201": DEPLOYMENT_CAP, "429 /problems/rate-limited deployment": 30 - DEPLOYMENT_CAP}, tally
    sent = len(capped.smsc.since(mark)) + len(receiver.messages[before:])
    assert sent == DEPLOYMENT_CAP


def test_concurrent_wrong_codes_over_two_tenants_are_judged_the_phones_limit(
    capped: Server, receiver: HookReceiver
) -> None:
    capped.reset()
    phone, mark, before = new_phone(), capped.smsc.mark(), len(receiver.messages)
    shop = begin(capped, SHOP_KEY, phone)["id"]
    shop_code = code_in(smsc_text(capped, mark, phone), SHOP_BRAND, SHOP_CODE)
    bank = begin(capped, BANK_KEY, phone)["id"]
    bank_code = hook_message(receiver, before, bank)["code"]
    wrong = {
        shop: ("9" if shop_code[0] != "9" else "8") + shop_code[1:],
        bank: ("9" if bank_code[0] != "9" else "8") + bank_code[1:],
    }
    keys = {shop: SHOP_KEY, bank: BANK_KEY}
    go = threading.Barrier(20)
    answers: list[str] = []

    def check(vid: str) -> None:
        with requests.Session() as session:  # connected before the barrier, so the checks leave together
            session.get(capped.url("/healthz"), timeout=TIMEOUT)
            go.wait(TIMEOUT)
            answer = session.post(
                capped.url(f"/v1/verifications/{vid}/check"),
                json={"code": wrong[vid]},
                headers={"Authorization": f"Bearer {keys[vid]}", "X-Forwarded-For": new_ip()},
                timeout=TIMEOUT,
            )
            answers.append(f"{answer.status_code} {answer.json().get('limit', '')}".strip())

    threads = [threading.Thread(target=check, args=((shop, bank)[i % 2],)) for i in range(20)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(TIMEOUT * 3)
    # Of 20 concurrent wrong codes typed into two tenants' verifications of one phone, exactly the phone's limit
    # were judged (422); the others were refused by it, whichever tenant they went to.
    assert Counter(answers) == {"422": FAILURES_PER_DAY, "429 phone_failures": 20 - FAILURES_PER_DAY}, answers
    for vid, key, code in ((shop, SHOP_KEY, shop_code), (bank, BANK_KEY, bank_code)):  # the right code too, now
        refused = api(capped, "POST", f"/v1/verifications/{vid}/check", key, {"code": code}, ip=new_ip())
        assert refused.status_code == 429 and refused.json()["limit"] == "phone_failures"
    assert leaked(capped, shop_code, bank_code, *wrong.values()) == []


# 5. a bad file stops the start


BAD_FILES = {
    "unknown field": (
        f'[tenants.shop]\nbrand = "Shop"\napi_keys = ["{hash_key(SHOP_KEY)}"]\n\n'
        f'[tenants.bank]\napi_keys = ["{hash_key(BANK_KEY)}"]\ncolour = "blue"\n',
        7,
        "colour",
    ),
    "limit that does not parse": (
        f'[tenants.shop]\napi_keys = ["{hash_key(SHOP_KEY)}"]\nlimits = {{ ip = "lots/hour" }}\n',
        3,
        "limits.ip",
    ),
    "not TOML": (f'[tenants.shop]\napi_keys = ["{hash_key(SHOP_KEY)}"]\nbrand = "Shop\n', 3, "not valid TOML"),
}


@pytest.mark.parametrize("case", list(BAD_FILES))
def test_a_bad_tenants_file_stops_the_start_naming_the_line(
    case: str, redis_server: EmbeddedRedis, tmp_path: Path
) -> None:
    text, line, names = BAD_FILES[case]
    path, temporary = tmp_path / "tenants.toml", tmp_path / "tmp"
    path.write_text(text)
    temporary.mkdir()
    env = server_env(redis_server.url, "http://127.0.0.1:9/", f"127.0.0.1:{free_port()}", 2, deployment(path))
    env["TMPDIR"] = str(temporary)  # where gunicorn.conf.py puts the file's copy (and the metrics directory)
    started = subprocess.run(
        procfile_command(), cwd=ROOT, env=env, capture_output=True, text=True, timeout=60, check=False
    )
    assert started.returncode != 0, started.stderr
    assert "Listening at" not in started.stderr + started.stdout  # it never served
    (error,) = [e for e in started.stderr.splitlines() if e.startswith("verify: configuration error:")]
    assert f"{path}, line {line}" in error or f"line {line}," in error, error
    assert names in error, error
    assert list(temporary.glob("verify-tenants-*")) == []  # the refused copy is gone


def test_a_refused_start_leaves_no_temporary_directory(redis_server: EmbeddedRedis, tmp_path: Path) -> None:
    text, _, _ = BAD_FILES["unknown field"]
    path, temporary = tmp_path / "tenants.toml", tmp_path / "tmp"
    path.write_text(text)
    temporary.mkdir()
    env = server_env(redis_server.url, "http://127.0.0.1:9/", f"127.0.0.1:{free_port()}", 2, deployment(path))
    env["TMPDIR"] = str(temporary)
    started = subprocess.run(
        procfile_command(), cwd=ROOT, env=env, capture_output=True, text=True, timeout=60, check=False
    )
    assert started.returncode != 0, started.stderr
    assert sorted(p.name for p in temporary.iterdir()) == []


# 6. SIGHUP under load


class Load:
    """Threads that keep starting and reading verifications of both tenants until stopped; every answer's status
    (or the error met instead) is kept."""

    def __init__(self, server: Server, threads: int = 2) -> None:
        self.server = server
        self.outcomes: list[str] = []
        self.slowest = 0.0  # seconds: the longest a request took (printed, not asserted)
        self.stop = threading.Event()
        self.threads = [threading.Thread(target=self._run, daemon=True) for _ in range(threads)]

    def __enter__(self) -> Load:
        for thread in self.threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        for thread in self.threads:
            thread.join(TIMEOUT * 3)

    def _run(self) -> None:
        while not self.stop.is_set():
            for key in (SHOP_KEY, BANK_KEY):
                try:
                    started = self._timed("POST", "/v1/verifications", key, {"phone": new_phone()}, new_ip())
                    self.outcomes.append(f"start {started.status_code}")
                    if started.status_code == 201:
                        got = self._timed("GET", f"/v1/verifications/{started.json()['id']}", key)
                        self.outcomes.append(f"get {got.status_code}")
                except requests.RequestException as err:
                    self.outcomes.append(f"error {type(err).__name__}: {err}")

    def _timed(
        self, method: str, path: str, key: str, body: dict[str, Any] | None = None, ip: str | None = None
    ) -> requests.Response:
        # A request may wait in the listen backlog while no worker has loaded the app yet (gunicorn stops the old
        # workers as soon as it has started the new ones): a wait is no failure, so the timeout is generous.
        began = time.monotonic()
        try:
            return api(self.server, method, path, key, body, ip=ip, timeout=LOAD_TIMEOUT)
        finally:
            self.slowest = max(self.slowest, time.monotonic() - began)


def workers_of(server: Server) -> set[int]:
    return {child.pid for child in psutil.Process(server.process.pid).children()}


def reloaded(server: Server, old: set[int]) -> set[int] | None:
    """The workers, once none of ``old`` is left and the full count runs."""
    now = workers_of(server)
    return now if len(now) == 2 and not now & old else None


def test_sighup_under_load_swaps_the_file_and_a_broken_one_leaves_the_last_good_serving(
    redis_server: EmbeddedRedis, receiver: HookReceiver, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path, temporary = tmp_path / "tenants.toml", tmp_path / "tmp"
    hook_url = receiver.url + "hook"
    path.write_text(tenants_file(hook_url))
    temporary.mkdir()
    monkeypatch.setenv("TMPDIR", str(temporary))  # the server's: where gunicorn.conf.py puts the file's copies
    with gunicorn_server(redis_server.url, tmp_path, deployment(path), workers=2, name="reload") as server:
        assert post_start(server, CLUB_KEY, new_phone(), new_ip()).status_code == 401
        with Load(server) as load:
            eventually(lambda: len(load.outcomes) > 10, "the load to be under way")
            first = workers_of(server)
            path.write_text(tenants_file(hook_url, shop_brand="Acme Mart", club=True))
            during = len(load.outcomes)
            server.process.send_signal(signal.SIGHUP)
            second = eventually(lambda: reloaded(server, first), "new workers to replace the old ones", 60)
            assert len(load.outcomes) > during, "no request was made during the reload"

            # Every worker now serves the new file: the new tenant's key works, shop's texts carry its new brand.
            for _ in range(4):
                assert begin(server, CLUB_KEY, new_phone())["id"]
            phone, mark = new_phone(), server.smsc.mark()
            begin(server, SHOP_KEY, phone)
            code_in(smsc_text(server, mark, phone), "Acme Mart", SHOP_CODE)

            # A broken file: refused, the last good one serves on, from workers started after it.
            offset = server.log_size()
            good = tenants_file(hook_url, shop_brand="Acme Mart", club=True)
            path.write_text(good + 'colour = "red"\n')  # in club's table, the line after the last
            during = len(load.outcomes)
            server.process.send_signal(signal.SIGHUP)
            eventually(lambda: reloaded(server, second), "new workers after the refused reload", 60)
            assert len(load.outcomes) > during, "no request was made during the reload"
            # Every line since the reload (the load keeps logging: the master's line may be hundreds back).
            since = server.log_since(offset, 10**6).splitlines()
            (refusal,) = [line for line in since if "the tenants file was not reloaded" in line] or ["(none)"]
            assert "the last good one still serves" in refusal, "\n".join(since[-40:])
            assert f"line {len(good.splitlines()) + 1}: tenant 'club', colour" in refusal, refusal
            for _ in range(4):
                assert begin(server, CLUB_KEY, new_phone())["id"]
            phone, mark = new_phone(), server.smsc.mark()
            begin(server, SHOP_KEY, phone)
            code_in(smsc_text(server, mark, phone), "Acme Mart", SHOP_CODE)
            assert server.process.poll() is None, "the master died"
        outcomes = Counter(load.outcomes)
        print(f"the load: {dict(outcomes)}, the slowest request {load.slowest:.2f} s")
        assert set(outcomes) <= {"start 201", "get 200"}, outcomes
        assert "Traceback" not in server.tail(2000)
        assert leaked(server) == []  # nor did the reloads, refused or not, log a key or a secret
    # Stopped: of the file's copies (one per good reload), none is left.
    assert list(temporary.glob("verify-tenants-*")) == []


def test_no_log_line_holds_a_tenants_secret(module_server: Server) -> None:
    # Last in this file (its tests run in order, on one server): everything the tests above made it log, and a
    # code and a token of each tenant made here.
    made = []
    for key, brand, length in ((SHOP_KEY, SHOP_BRAND, SHOP_CODE), (BANK_KEY, BANK_BRAND, BANK_CODE)):
        phone, mark = new_phone(), module_server.smsc.mark()
        vid = begin(module_server, key, phone, channel="sms")["id"]
        sms = [d.text for d in module_server.smsc.since(mark, "sms") if d.phone == phone]
        code = code_in(sms[0], brand, length) if sms else ""
        if code:
            checked = api(module_server, "POST", f"/v1/verifications/{vid}/check", key, {"code": code}, ip=new_ip())
            made += [code, checked.json()["token"]]
    assert made, "no code went through SMSC to grep for"
    assert leaked(module_server, *made) == []
