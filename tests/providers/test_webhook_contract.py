"""The shared webhook contract (``webhook_contract.py``) for each gateway: SMSC, Zoom Connect, D7 legacy, D7 v1,
Telegram, the hook.

Each class says how its gateway is configured and how it calls us (built by its emulator's callback builders, as
docs/gateways/smsc.md §7-§9, zoomconnect.md §6-§7, d7.md §4, §7-§8, telegram.md §6-§7 and hook.md §2, §4 describe the
calls), and skips, with the reason, the cases its wire format has no room for.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import Any, ClassVar, Literal
from urllib.parse import parse_qsl, quote, urlencode

import pytest

from tests.providers import d7_emulator, hook_emulator, smsc_emulator, telegram_emulator, zoomconnect_emulator
from tests.providers.contract import HTTP_CONNECT_TIMEOUT, HTTP_READ_TIMEOUT
from tests.providers.d7_emulator import D7Emulator
from tests.providers.emulator import Emulator, Seen
from tests.providers.hook_emulator import HookReceiver
from tests.providers.smsc_emulator import HashName, SmscEmulator
from tests.providers.telegram_emulator import TelegramEmulator
from tests.providers.webhook_contract import (
    NEW,
    OTHER_PHONE,
    Callback,
    Channel,
    Outcome,
    Pending,
    WebhookContract,
    approved_by_reply,
    parametrize_variants,
)
from tests.providers.zoomconnect_emulator import ZoomConnectEmulator
from verify.config import Settings
from verify.providers.d7 import D7Settings
from verify.providers.hook import HookSettings
from verify.providers.smsc import SmscSettings
from verify.providers.telegram import TelegramSettings
from verify.providers.zoomconnect import ZoomConnectSettings


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    parametrize_variants(metafunc)


def digits(phone: str) -> str:
    """A phone as SMSC writes it: digits only."""
    return phone.removeprefix("+")


def with_query(path: str, query: str | bytes) -> str:
    text = query.decode("ascii") if isinstance(query, bytes) else query
    return f"{path}?{text}" if text else path


# SMSC (docs/gateways/smsc.md §7-§9): one handler URL, configured as ?sha1=<secret>&charset=utf-8 (the README's
# advice).

SMSC_KEY = "smsc-key-0123"
SMSC_TO = "79990000000"  # our receiving number
# Cyrillic with Ё and И: in UTF-8, И is D0 98, and 0x98 is the one byte windows-1251 cannot decode.
CYRILLIC = "ЁЖИК, ответьте"


class TestSmscWebhooks(WebhookContract):
    NAME = "smsc"
    CHANNEL: ClassVar[Channel] = "call"  # a call to the number handed out approves; an SMS reply too (reply cases)
    STALE = 200  # SMSC sends no nonce: a stale call is answered 200 (no retries) and approves nothing
    REPLAYED = 200  # nor does it send one for replays: a repeat is harmless, and idempotent
    # charset / body format / where the options come: posted in the body, or in the query string (after a "!").
    # windows-1251 is SMSC's default, so its handler URL names no charset (and a form body then has no options to
    # move); koi8-r "is not used with fmt" (docs/gateways/smsc.md §7).
    CHARSET_VARIANTS = (
        "windows-1251/form/body",
        "windows-1251/json/body",
        "windows-1251/json/query",
        "koi8-r/form/body",
        "koi8-r/form/query",
        "utf-8/form/body",
        "utf-8/form/query",
        "utf-8/json/body",
        "utf-8/json/query",
    )

    def make_emulator(self) -> Emulator:
        return SmscEmulator(apikey=SMSC_KEY)

    def configure(self, settings: Settings, emulator_url: str, secrets: tuple[str, ...]) -> Settings:
        return replace(
            settings,
            sandbox=False,
            sms_providers=("smsc",),
            call_provider="smsc",
            http_connect_timeout=HTTP_CONNECT_TIMEOUT,
            http_read_timeout=HTTP_READ_TIMEOUT,
            gateway_settings={"smsc": SmscSettings(url=emulator_url, apikey=SMSC_KEY, secrets=secrets)},
        )

    def sent_text(self, seen: Seen) -> str:
        return seen.form["mes"]

    def _post(
        self,
        fields: dict[str, str],
        *,
        secret: str | None,
        hash: HashName = "sha1",
        charset: str = "utf-8",
        **options: Any,
    ) -> Callback:
        query, body, content_type = smsc_emulator.smsc_callback(
            fields, secret=secret, hash=hash, charset=charset, **options
        )
        return Callback("POST", with_query("/webhooks/smsc", query), body, content_type)

    @staticmethod
    def _call(phone: str, ts: float) -> dict[str, str]:
        return {"waitcall": "1", "phone": digits(phone), "ts": str(int(ts))}

    def callback(self, pending: Pending, *, secret: str) -> Callback:
        return self._post(self._call(pending.phone, pending.started_at), secret=secret)

    def acted(self, view: Mapping[str, Any]) -> bool:
        return view["status"] == "approved" and view.get("completed_via") == "call"

    def report(self, pending: Pending, outcome: Outcome, *, secret: str) -> Callback:
        status = {
            "id": pending.message_id,
            "phone": digits(pending.phone),
            "status": "1" if outcome == "delivered" else "20",
            "ts": str(int(pending.started_at)),
        }
        return self._post(status, secret=secret)

    def unsigned(self, pending: Pending) -> Callback:
        return self._post(self._call(pending.phone, pending.started_at), secret=None)

    def altered(self, pending: Pending, *, secret: str) -> Callback:
        """A genuine call from another phone, its (signed) phone field swapped for the target's."""
        genuine = self._post(self._call(OTHER_PHONE, pending.started_at), secret=secret)
        body = genuine.body.replace(digits(OTHER_PHONE).encode(), digits(pending.phone).encode())
        assert body != genuine.body
        return Callback(genuine.method, genuine.path, body, genuine.content_type)

    def weak_algorithm(self, pending: Pending, *, secret: str) -> Callback:
        # crc32 is linear: from one captured callback anyone computes a valid one for another phone.
        return self._post(self._call(pending.phone, pending.started_at), secret=secret, hash="crc32")

    def allow_weak_algorithm(self, settings: Settings) -> Settings:
        smsc = replace(settings.gateway_settings["smsc"], hashes=("sha1", "md5", "crc32"))
        return replace(settings, gateway_settings={**settings.gateway_settings, "smsc": smsc})

    def stale(self, pending: Pending, *, secret: str, max_age: int) -> Callback:
        # A call signed ten minutes before the verification started (beyond the 60 s of skew): a captured one.
        return self._post(self._call(pending.phone, pending.started_at - 600), secret=secret)

    def _reply_fields(self, pending: Pending, phone: str, text: str) -> dict[str, str]:
        now = str(int(pending.started_at))
        return {
            "id": "77",
            "sms_id": pending.id,
            "phone": digits(phone),
            "mes": text,
            "to": SMSC_TO,
            "sent": now,
            "time": now,
        }

    def reply(self, pending: Pending, *, phone: str, secret: str) -> Callback:
        return self._post(self._reply_fields(pending, phone, f"Code {pending.code}"), secret=secret)

    def charset_reply(self, pending: Pending, variant: str, *, secret: str) -> Callback:
        charset, fmt, where = variant.split("/")
        fields = self._reply_fields(pending, pending.phone, f"Код {pending.code}: {CYRILLIC}")
        # The hash is over the UTF-8 text (SMSC's hash charset is unconfirmed, docs/gateways/smsc.md §9, and UTF-8 is
        # one it may use), so a body read in the wrong charset fails the signature instead of passing by a round trip
        # through it.
        return self._post(
            fields,
            secret=secret,
            charset=charset,
            fmt_json=fmt == "json",
            hash_encoding="utf-8",
            options_in_query=where == "query",
        )

    def batch(self, pendings: Sequence[Pending], *, secrets: Sequence[str]) -> Callback:
        """A JSON list of callbacks (whether SMSC batches is unconfirmed, docs/gateways/smsc.md §7; the parser takes
        lists)."""
        items = []
        for pending, secret in zip(pendings, secrets, strict=True):
            one = self._post(self._call(pending.phone, pending.started_at), secret=secret, fmt_json=True)
            items.append(json.loads(one.body))
        return Callback("POST", "/webhooks/smsc", json.dumps(items, ensure_ascii=False).encode(), "application/json")


# Zoom Connect (docs/gateways/zoomconnect.md §6, §7): a message forward URL and a delivery report URL, HMAC-SHA1
# checksums.

ZOOM_INBOUND_ID = "124567"


class TestZoomConnectWebhooks(WebhookContract):
    NAME = "zoomconnect"
    STALE = 403  # an old nonce-date
    REPLAYED = 403  # a nonce seen before
    CHARSET_VARIANTS = ("utf-8/query", "utf-8/form")  # UTF-8 only; parameters in the query string or a form body

    def make_emulator(self) -> Emulator:
        return ZoomConnectEmulator()

    def configure(self, settings: Settings, emulator_url: str, secrets: tuple[str, ...]) -> Settings:
        return replace(
            settings,
            sandbox=False,
            sms_providers=("zoomconnect",),
            call_provider=None,
            http_connect_timeout=HTTP_CONNECT_TIMEOUT,
            http_read_timeout=HTTP_READ_TIMEOUT,
            gateway_settings={
                "zoomconnect": ZoomConnectSettings(
                    url=emulator_url,
                    email=zoomconnect_emulator.EMAIL,
                    token=zoomconnect_emulator.TOKEN,
                    secrets=secrets,
                )
            },
        )

    def sent_text(self, seen: Seen) -> str:
        text: str = seen.json()["message"]
        return text

    @staticmethod
    def _stamp(at: float) -> str:
        return time.strftime("%Y%m%d%H%M%S", time.gmtime(at))  # nonce-date, in the configured zone (UTC)

    def _reply_params(self, pending: Pending, phone: str, text: str, *, age: float = 0) -> dict[str, str]:
        stamp = self._stamp(pending.started_at - age)
        return {
            "from": phone,
            "repliedToMessageId": pending.message_id,
            "messageId": ZOOM_INBOUND_ID,
            "message": text,
            "date": stamp[:12],
            "dataField": pending.id,
            "nonce": str(uuid.uuid4()),
            "nonce-date": stamp,
        }

    @staticmethod
    def _post(
        kind: Literal["reply", "delivery"], params: Mapping[str, str], *, secret: str, in_query: bool = True
    ) -> Callback:
        query, body, content_type = zoomconnect_emulator.zoom_callback(kind, params, secret=secret, in_query=in_query)
        return Callback("POST", with_query(f"/webhooks/zoomconnect/{kind}", query), body, content_type)

    def callback(self, pending: Pending, *, secret: str) -> Callback:
        return self._post(
            "reply", self._reply_params(pending, pending.phone, f"my code is {pending.code}"), secret=secret
        )

    def acted(self, view: Mapping[str, Any]) -> bool:
        return approved_by_reply(view)

    def report(self, pending: Pending, outcome: Outcome, *, secret: str) -> Callback:
        params = {
            "messageId": pending.message_id,
            "status": "DELIVERED" if outcome == "delivered" else "FAILED",
            "nonce": str(uuid.uuid4()),
            "nonce-date": self._stamp(pending.started_at),
        }
        return self._post("delivery", params, secret=secret)

    def unsigned(self, pending: Pending) -> Callback:
        signed = self.callback(pending, secret="any")
        path, query = signed.path.split("?", 1)
        kept = [(key, value) for key, value in parse_qsl(query, keep_blank_values=True) if key != "checksum"]
        return Callback("POST", with_query(path, urlencode(kept)))

    def altered(self, pending: Pending, *, secret: str) -> Callback:
        """A genuine reply from another phone (with the code), its ``from`` swapped for the target's phone."""
        genuine = self._reply_params(pending, OTHER_PHONE, f"my code is {pending.code}")
        checksum = zoomconnect_emulator.sign(genuine, secret)
        return self._post("reply", {**genuine, "from": pending.phone, "checksum": checksum}, secret=secret)

    def weak_algorithm(self, pending: Pending, *, secret: str) -> Callback:
        pytest.skip("Zoom Connect signs with HMAC-SHA1 only: there is no algorithm to choose or downgrade to.")

    def allow_weak_algorithm(self, settings: Settings) -> Settings:
        pytest.skip("Zoom Connect signs with HMAC-SHA1 only: there is no algorithm to choose or downgrade to.")

    def stale(self, pending: Pending, *, secret: str, max_age: int) -> Callback:
        params = self._reply_params(pending, pending.phone, f"my code is {pending.code}", age=max_age + 60)
        return self._post("reply", params, secret=secret)

    def reply(self, pending: Pending, *, phone: str, secret: str) -> Callback:
        return self._post("reply", self._reply_params(pending, phone, f"my code is {pending.code}"), secret=secret)

    def charset_reply(self, pending: Pending, variant: str, *, secret: str) -> Callback:
        params = self._reply_params(pending, pending.phone, f"Код {pending.code}: {CYRILLIC}")
        return self._post("reply", params, secret=secret, in_query=variant.endswith("/query"))

    def batch(self, pendings: Sequence[Pending], *, secrets: Sequence[str]) -> Callback:
        pytest.skip("Zoom Connect posts one reply or report per request, each with its own nonce and checksum.")


# D7 (docs/gateways/d7.md §4, §7, §8): delivery reports only, unsigned, behind a secret path token.

D7_PUBLIC_URL = "https://verify.example"


class D7Webhooks(WebhookContract):
    """What D7's two API generations share; the subclasses name the generation and its callback."""

    API: ClassVar[Literal["legacy", "v1"]]
    NAME = "d7"
    REFUSED = 404  # a wrong or missing token: a URL that does not exist (Jasmin stops retrying on 404)
    REPLAYED = 200  # no nonce: a repeated report is harmless, and idempotent

    def make_emulator(self) -> Emulator:
        return D7Emulator(self.API)

    def configure(self, settings: Settings, emulator_url: str, secrets: tuple[str, ...]) -> Settings:
        return replace(
            settings,
            sandbox=False,
            sms_providers=("d7",),
            call_provider=None,
            public_url=D7_PUBLIC_URL,
            http_connect_timeout=HTTP_CONNECT_TIMEOUT,
            http_read_timeout=HTTP_READ_TIMEOUT,
            gateway_settings={
                "d7": D7Settings(
                    api=self.API,
                    url=emulator_url,
                    username=d7_emulator.USERNAME,
                    password=d7_emulator.PASSWORD,
                    token=d7_emulator.TOKEN,
                    webhook_tokens=secrets,
                )
            },
        )

    def callback(self, pending: Pending, *, secret: str) -> Callback:
        return self.report(pending, "delivered", secret=secret)

    def acted(self, view: Mapping[str, Any]) -> bool:
        return view.get("delivery") == {"provider": "d7", "status": "delivered"}

    def altered(self, pending: Pending, *, secret: str) -> Callback:
        pytest.skip("D7 signs no field, so there is nothing signed to alter; the path token is the forged case.")

    def weak_algorithm(self, pending: Pending, *, secret: str) -> Callback:
        pytest.skip("D7 signs nothing: its only credential is the path token, with no algorithm to choose.")

    def allow_weak_algorithm(self, settings: Settings) -> Settings:
        pytest.skip("D7 signs nothing: its only credential is the path token, with no algorithm to choose.")

    def stale(self, pending: Pending, *, secret: str, max_age: int) -> Callback:
        pytest.skip("D7 signs no time and sends no nonce, and a late report about our own message is still true.")

    def reply(self, pending: Pending, *, phone: str, secret: str) -> Callback:
        pytest.skip("D7 only reports delivery: no inbound SMS reaches us, so no callback can approve.")

    def charset_reply(self, pending: Pending, variant: str, *, secret: str) -> Callback:
        pytest.skip("D7 only reports delivery (ids and status words), and no option chooses a charset.")


class TestD7LegacyWebhooks(D7Webhooks):
    API = "legacy"
    ACK = "ACK/Jasmin"  # docs/gateways/d7.md §4: anything else makes Jasmin re-queue the DLR

    def sent_text(self, seen: Seen) -> str:
        text: str = seen.json()["content"]
        return text

    def report(self, pending: Pending, outcome: Outcome, *, secret: str) -> Callback:
        fields = d7_emulator.dlr_fields(pending.message_id, "DELIVRD" if outcome == "delivered" else "UNDELIV")
        method, query, body, content_type = d7_emulator.dlr_callback(fields)
        headers = {k: v for k, v in d7_emulator.DLR_HEADERS.items() if k != "Content-Type"}
        return Callback(
            method, with_query(f"/webhooks/d7/{quote(secret, safe='')}", query), body, content_type, headers
        )

    def unsigned(self, pending: Pending) -> Callback:
        report = self.report(pending, "delivered", secret="x")
        return Callback(report.method, "/webhooks/d7", report.body, report.content_type, report.headers)

    def batch(self, pendings: Sequence[Pending], *, secrets: Sequence[str]) -> Callback:
        pytest.skip("Jasmin throws one DLR per request, as form fields (docs/gateways/d7.md §4).")


class TestD7V1Webhooks(D7Webhooks):
    API = "v1"

    def sent_text(self, seen: Seen) -> str:
        text: str = seen.json()["messages"][0]["content"]
        return text

    @staticmethod
    def _path(token: str) -> str:
        return f"/webhooks/d7/{quote(token, safe='')}/report"

    def report(self, pending: Pending, outcome: Outcome, *, secret: str) -> Callback:
        fields = d7_emulator.report_fields(pending.message_id, "delivered" if outcome == "delivered" else "undelivered")
        method, _, body, content_type = d7_emulator.report_callback(fields)
        return Callback(method, self._path(secret), body, content_type)

    def unsigned(self, pending: Pending) -> Callback:
        report = self.report(pending, "delivered", secret="x")
        return Callback(report.method, "/webhooks/d7/report", report.body, report.content_type)

    def batch(self, pendings: Sequence[Pending], *, secrets: Sequence[str]) -> Callback:
        """A JSON list of reports (the report's encoding is unconfirmed, docs/gateways/d7.md §7; the parser takes
        lists)."""
        if len(set(secrets)) > 1:
            pytest.skip("D7 signs no item: one path token covers the whole batch, so no single item can be forged.")
        items = [d7_emulator.report_fields(pending.message_id, "delivered") for pending in pendings]
        return Callback("POST", self._path(secrets[0]), json.dumps(items).encode(), "application/json")


# Telegram (docs/gateways/telegram.md §6, §7): delivery reports only, a RequestStatus in a JSON body signed with
# HMAC-SHA256 keyed by SHA256 of the API token. The "secrets" are the account's API tokens: the first sends (so the
# emulator's account token is NEW), any verifies a report.
#
# The gateway is put in the SMS chain with ``replace``: config.py lets VERIFY_SMS_PROVIDERS name only gateways with
# the "sms" channel, and Telegram has only "telegram". What the service does with the message is the same: the
# provider sends the code (Telegram writes the text), and the reports are handled like any gateway's.

TELEGRAM_PUBLIC_URL = "https://verify.example"


class TestTelegramWebhooks(WebhookContract):
    NAME = "telegram"
    STALE = 403  # an old X-Request-Timestamp
    REPLAYED = 403  # the same signed bytes twice: the signature is the nonce

    def make_emulator(self) -> Emulator:
        return TelegramEmulator(token=NEW)

    def configure(self, settings: Settings, emulator_url: str, secrets: tuple[str, ...]) -> Settings:
        return replace(
            settings,
            sandbox=False,
            sms_providers=("telegram",),
            call_provider=None,
            public_url=TELEGRAM_PUBLIC_URL,
            http_connect_timeout=HTTP_CONNECT_TIMEOUT,
            http_read_timeout=HTTP_READ_TIMEOUT,
            gateway_settings={"telegram": TelegramSettings(tokens=secrets, url=emulator_url)},
        )

    def sent_text(self, seen: Seen) -> str:
        """Telegram writes the message itself: the request carries only the code."""
        code: str = seen.json()["code"]
        return code

    @staticmethod
    def _post(body: bytes, *, secret: str, at: float) -> Callback:
        headers = telegram_emulator.signed_headers(secret, int(at), body)
        content_type = headers.pop("Content-Type")
        return Callback("POST", "/webhooks/telegram", body, content_type, headers)

    @staticmethod
    def _body(pending: Pending, status: str, *, at: float, request_id: str = "") -> bytes:
        return telegram_emulator.report_body(
            request_id or pending.message_id,
            pending.phone,
            status,
            int(at),
            refunded=True if status == "expired" else None,
            payload=pending.id,
        )

    def callback(self, pending: Pending, *, secret: str) -> Callback:
        return self.report(pending, "delivered", secret=secret)

    def acted(self, view: Mapping[str, Any]) -> bool:
        return view.get("delivery") == {"provider": "telegram", "status": "delivered"}

    def report(self, pending: Pending, outcome: Outcome, *, secret: str) -> Callback:
        status = "delivered" if outcome == "delivered" else "expired"
        return self._post(self._body(pending, status, at=pending.started_at), secret=secret, at=pending.started_at)

    def unsigned(self, pending: Pending) -> Callback:
        signed = self.callback(pending, secret=NEW)
        headers = {k: v for k, v in signed.headers.items() if k != "X-Request-Signature"}
        return Callback(signed.method, signed.path, signed.body, signed.content_type, headers)

    def altered(self, pending: Pending, *, secret: str) -> Callback:
        """A genuine report about another request (and no payload), its request_id swapped for ``pending``'s."""
        other = "0" * len(pending.message_id)
        at = pending.started_at
        genuine = telegram_emulator.report_body(other, OTHER_PHONE, "delivered", int(at))
        signed = self._post(genuine, secret=secret, at=at)
        body = genuine.replace(other.encode(), pending.message_id.encode())
        return Callback(signed.method, signed.path, body, signed.content_type, signed.headers)

    def weak_algorithm(self, pending: Pending, *, secret: str) -> Callback:
        pytest.skip("Telegram signs with HMAC-SHA256 only: there is no algorithm to choose or downgrade to.")

    def allow_weak_algorithm(self, settings: Settings) -> Settings:
        pytest.skip("Telegram signs with HMAC-SHA256 only: there is no algorithm to choose or downgrade to.")

    def stale(self, pending: Pending, *, secret: str, max_age: int) -> Callback:
        at = pending.started_at - max_age - 60
        return self._post(self._body(pending, "delivered", at=at), secret=secret, at=at)

    def reply(self, pending: Pending, *, phone: str, secret: str) -> Callback:
        pytest.skip("Telegram only reports delivery: the person types the code into our page, nothing comes back.")

    def charset_reply(self, pending: Pending, variant: str, *, secret: str) -> Callback:
        pytest.skip("Telegram only reports delivery, always as UTF-8 JSON: there is no charset to choose.")

    def batch(self, pendings: Sequence[Pending], *, secrets: Sequence[str]) -> Callback:
        pytest.skip("Telegram posts one RequestStatus per request, each with its own timestamp and signature.")


# The hook (docs/gateways/hook.md §2, §4): the customer's own receiver takes our messages, and may report delivery to
# callback_url as a JSON body signed with Verify-Signature, like our events. The "secrets" are VERIFY_HOOK_SECRET's:
# the first signs what we send (so the receiver checks with NEW), any verifies a report.

HOOK_PUBLIC_URL = "https://verify.example"


class TestHookWebhooks(WebhookContract):
    NAME = "hook"
    STALE = 403  # an old t
    REPLAYED = 403  # the same signed bytes twice: their digest is the nonce

    def make_emulator(self) -> Emulator:
        return HookReceiver(secrets=(NEW,))

    def configure(self, settings: Settings, emulator_url: str, secrets: tuple[str, ...]) -> Settings:
        return replace(
            settings,
            sandbox=False,
            sms_providers=("hook",),
            call_provider=None,
            public_url=HOOK_PUBLIC_URL,
            http_connect_timeout=HTTP_CONNECT_TIMEOUT,
            http_read_timeout=HTTP_READ_TIMEOUT,
            gateway_settings={"hook": HookSettings(url=emulator_url + "hook", secrets=secrets)},
        )

    def sent_text(self, seen: Seen) -> str:
        text: str = seen.json()["text"]
        return text

    @staticmethod
    def _post(body: bytes, *, secret: str, at: float) -> Callback:
        headers = hook_emulator.signed_headers(secret, int(at), body)
        content_type = headers.pop("Content-Type")
        return Callback("POST", "/webhooks/hook", body, content_type, headers)

    def callback(self, pending: Pending, *, secret: str) -> Callback:
        return self.report(pending, "delivered", secret=secret)

    def acted(self, view: Mapping[str, Any]) -> bool:
        return view.get("delivery") == {"provider": "hook", "status": "delivered"}

    def report(self, pending: Pending, outcome: Outcome, *, secret: str) -> Callback:
        status = "delivered" if outcome == "delivered" else "undelivered"
        body = hook_emulator.report_body(status, verification_id=pending.id, message_id=pending.message_id)
        return self._post(body, secret=secret, at=pending.started_at)

    def unsigned(self, pending: Pending) -> Callback:
        signed = self.callback(pending, secret=NEW)
        headers = {k: v for k, v in signed.headers.items() if k != "Verify-Signature"}
        return Callback(signed.method, signed.path, signed.body, signed.content_type, headers)

    def altered(self, pending: Pending, *, secret: str) -> Callback:
        """A genuine report about another message, its ids swapped for ``pending``'s."""
        other_id, other_message = "0" * len(pending.id), "1" * len(pending.message_id)
        genuine = hook_emulator.report_body("delivered", verification_id=other_id, message_id=other_message)
        signed = self._post(genuine, secret=secret, at=pending.started_at)
        body = genuine.replace(other_id.encode(), pending.id.encode()).replace(
            other_message.encode(), pending.message_id.encode()
        )
        return Callback(signed.method, signed.path, body, signed.content_type, signed.headers)

    def weak_algorithm(self, pending: Pending, *, secret: str) -> Callback:
        pytest.skip("The hook signs with HMAC-SHA256 only (v1): there is no algorithm to choose or downgrade to.")

    def allow_weak_algorithm(self, settings: Settings) -> Settings:
        pytest.skip("The hook signs with HMAC-SHA256 only (v1): there is no algorithm to choose or downgrade to.")

    def stale(self, pending: Pending, *, secret: str, max_age: int) -> Callback:
        at = pending.started_at - max_age - 60
        body = hook_emulator.report_body("delivered", verification_id=pending.id, message_id=pending.message_id)
        return self._post(body, secret=secret, at=at)

    def reply(self, pending: Pending, *, phone: str, secret: str) -> Callback:
        pytest.skip("The hook only reports delivery: no inbound SMS reaches us, so no callback can approve.")

    def charset_reply(self, pending: Pending, variant: str, *, secret: str) -> Callback:
        pytest.skip("The hook only reports delivery, always as UTF-8 JSON: there is no charset to choose.")

    def batch(self, pendings: Sequence[Pending], *, secrets: Sequence[str]) -> Callback:
        pytest.skip("The hook takes one report per request, each with its own signature (docs/gateways/hook.md §4).")
