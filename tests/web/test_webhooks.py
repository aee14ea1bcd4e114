"""Gateway webhooks end to end: the emulators POST over HTTP to the app served on loopback, and the API shows
the result. Forged, altered, stale and replayed requests each get their status and change nothing."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest
import requests
from flask import Flask
from flask.testing import FlaskClient

from tests.conftest import AUTH, PHONE, MovableClock, make_settings, serving, start
from tests.providers import d7_emulator, smsc_emulator, zoomconnect_emulator
from tests.providers.contract import HTTP_CONNECT_TIMEOUT, HTTP_READ_TIMEOUT
from tests.providers.d7_emulator import D7Emulator
from tests.providers.smsc_emulator import SmscEmulator
from tests.providers.zoomconnect_emulator import EMAIL, TOKEN, ZoomConnectEmulator
from verify import create_app
from verify.config import Settings
from verify.embedded import EmbeddedRedis
from verify.providers.d7 import D7Settings
from verify.providers.smsc import SmscSettings
from verify.providers.zoomconnect import ZoomConnectSettings
from verify.store import Batch

SMSC_KEY, SMSC_SECRET, ZOOM_SECRET, D7_HOOK = "smsc-key-0123", "smsc-hook-secret", "zoom-hook-secret", "d7-hook-token"
PHONE_DIGITS = PHONE.removeprefix("+")


@pytest.fixture
def gateways() -> Iterator[tuple[SmscEmulator, ZoomConnectEmulator, D7Emulator]]:
    emulators = (SmscEmulator(apikey=SMSC_KEY), ZoomConnectEmulator(), D7Emulator("legacy"))
    for emulator in emulators:
        emulator.start()
    yield emulators
    for emulator in emulators:
        emulator.stop()


def gateway_settings(redis_url: str, smsc: SmscEmulator, zoom: ZoomConnectEmulator, d7: D7Emulator) -> Settings:
    return replace(
        make_settings(redis_url),
        sandbox=False,
        sms_providers=("smsc",),
        call_provider="smsc",
        http_connect_timeout=HTTP_CONNECT_TIMEOUT,
        http_read_timeout=HTTP_READ_TIMEOUT,
        public_url="https://verify.example",
        gateway_settings={
            "smsc": SmscSettings(url=smsc.url, apikey=SMSC_KEY, secrets=(SMSC_SECRET,)),
            "zoomconnect": ZoomConnectSettings(url=zoom.url, email=EMAIL, token=TOKEN, secrets=(ZOOM_SECRET,)),
            "d7": D7Settings(
                api="legacy",
                url=d7.url,
                username=d7_emulator.USERNAME,
                password=d7_emulator.PASSWORD,
                webhook_tokens=(D7_HOOK,),
            ),
        },
    )


@pytest.fixture
def settings(redis_url: str, gateways: tuple[SmscEmulator, ZoomConnectEmulator, D7Emulator]) -> Settings:
    return gateway_settings(redis_url, *gateways)


@pytest.fixture
def served(app: Flask) -> Iterator[str]:
    """The app's base URL on loopback, for gateways to call."""
    with serving(app) as base:
        yield base


def get(client: FlaskClient, vid: str) -> dict[str, object]:
    body: dict[str, object] = client.get(f"/v1/verifications/{vid}", headers=AUTH).get_json()
    return body


def stored_message_id(client: FlaskClient, vid: str) -> str:
    record = client.application.extensions["verify"].store.run(Batch.get, vid)
    assert record is not None and record.message_id
    return str(record.message_id)


def sent_code(smsc: SmscEmulator) -> str:
    """The code in the last SMS sent: its only run of 4 or more digits (the text also says "15 min")."""
    (code,) = re.findall(r"\d{4,}", str(smsc.last.form["mes"]))
    return str(code)


# SMSC


def test_a_call_to_the_handed_out_number_approves(
    client: FlaskClient, served: str, gateways: tuple[SmscEmulator, ...], clock: MovableClock
) -> None:
    vid = start(client, channel="call").get_json()["id"]
    call = {"waitcall": "1", "phone": PHONE_DIGITS, "ts": str(int(clock()))}
    response = smsc_emulator.post_callback(
        f"{served}/webhooks/smsc", call, secret=SMSC_SECRET, hash="sha1", charset="utf-8"
    )
    assert response.status_code == 200
    approved = get(client, vid)
    assert approved["status"] == "approved" and approved["completed_via"] == "call" and approved["token"]
    again = smsc_emulator.post_callback(
        f"{served}/webhooks/smsc", call, secret=SMSC_SECRET, hash="sha1", charset="utf-8"
    )
    assert again.status_code == 200 and get(client, vid) == approved  # a repeated delivery changes nothing


def test_a_replayed_old_call_callback_approves_nothing(client: FlaskClient, served: str, clock: MovableClock) -> None:
    captured = {"waitcall": "1", "phone": PHONE_DIGITS, "ts": str(int(clock()))}
    clock.advance(3600)  # an hour later somebody starts a new call verification for the same phone
    vid = start(client, channel="call").get_json()["id"]
    response = smsc_emulator.post_callback(f"{served}/webhooks/smsc", captured, secret=SMSC_SECRET)
    assert response.status_code == 200  # harmless, so SMSC stops retrying
    assert get(client, vid)["status"] == "pending"


@pytest.mark.parametrize("tamper", ["wrong-secret", "altered", "unsigned"])
def test_forged_smsc_callbacks_are_403_and_change_nothing(
    client: FlaskClient, served: str, clock: MovableClock, tamper: str
) -> None:
    vid = start(client, channel="call").get_json()["id"]
    call = {"waitcall": "1", "phone": PHONE_DIGITS, "ts": str(int(clock()))}
    query, body, content_type = smsc_emulator.smsc_callback(
        call, secret="not-the-secret" if tamper == "wrong-secret" else SMSC_SECRET
    )
    if tamper == "altered":
        body = body.replace(str(int(clock())).encode(), str(int(clock()) + 1).encode())
    if tamper == "unsigned":
        query, body, content_type = smsc_emulator.smsc_callback(call, secret=None)
    response = requests.post(
        f"{served}/webhooks/smsc?{query}", data=body, headers={"Content-Type": content_type}, timeout=5
    )
    assert response.status_code == 403
    assert response.headers["Content-Type"] == "application/problem+json"
    assert get(client, vid)["status"] == "pending"


@pytest.mark.parametrize("charset", ["windows-1251", "koi8-r", "utf-8"])
@pytest.mark.parametrize("fmt_json", [False, True])
def test_an_sms_reply_with_the_code_approves(
    client: FlaskClient, served: str, charset: str, fmt_json: bool, gateways: tuple[SmscEmulator, ...]
) -> None:
    vid = start(client).get_json()["id"]
    reply = {
        "id": "77",
        "sms_id": vid,
        "phone": PHONE_DIGITS,
        "mes": f"Код {sent_code(gateways[0])}",
        "to": "79990000000",
        "sent": str(int(time.time())),
        "time": str(int(time.time())),
    }
    response = smsc_emulator.post_callback(
        f"{served}/webhooks/smsc", reply, secret=SMSC_SECRET, charset=charset, fmt_json=fmt_json
    )
    assert response.status_code == 200
    assert get(client, vid)["completed_via"] == "sms_reply"


def test_a_reply_from_another_phone_approves_nothing(
    client: FlaskClient, served: str, gateways: tuple[SmscEmulator, ...]
) -> None:
    vid = start(client).get_json()["id"]
    reply = {"id": "78", "sms_id": vid, "phone": "79997654321", "mes": sent_code(gateways[0]), "to": "79990000000"}
    assert smsc_emulator.post_callback(f"{served}/webhooks/smsc", reply, secret=SMSC_SECRET).status_code == 200
    assert get(client, vid)["status"] == "pending"


def test_smsc_delivery_statuses(client: FlaskClient, served: str) -> None:
    vid = start(client).get_json()["id"]
    for code, expected in (("0", "sent"), ("1", "delivered"), ("20", "delivered")):
        status = {"id": vid, "phone": PHONE_DIGITS, "status": code, "ts": str(int(time.time()))}
        assert smsc_emulator.post_callback(f"{served}/webhooks/smsc", status, secret=SMSC_SECRET).status_code == 200
        assert get(client, vid)["delivery"] == {"provider": "smsc", "status": expected}  # final stays final


def test_a_spoken_codes_call_is_reported_through_the_smsc_handler(
    app: Flask, served: str, gateways: tuple[SmscEmulator, ZoomConnectEmulator, D7Emulator]
) -> None:
    voice = create_app(
        replace(app.extensions["verify"].settings, voice_providers=("smsc",)), background=False
    ).test_client()
    vid = voice.post("/v1/verifications", json={"phone": PHONE, "channel": "voice"}, headers=AUTH).get_json()["id"]
    sent = gateways[0].last.form
    assert (sent["call"], sent["id"]) == ("1", vid) and sent["mes"].startswith("Your Verify code is ")
    # Nobody picked up: an undelivered status (docs/gateways/smsc.md §8), on the same handler as an SMS's.
    status = {"id": vid, "phone": PHONE_DIGITS, "status": "20", "err": "1", "ts": str(int(time.time()))}
    assert smsc_emulator.post_callback(f"{served}/webhooks/smsc", status, secret=SMSC_SECRET).status_code == 200
    assert get(voice, vid)["delivery"] == {"provider": "smsc", "status": "failed"}
    assert get(voice, vid)["channel"] == "voice"


def test_an_unknown_phone_is_harmless(served: str, clock: MovableClock) -> None:
    call = {"waitcall": "1", "phone": "79990000001", "ts": str(int(clock()))}
    assert smsc_emulator.post_callback(f"{served}/webhooks/smsc", call, secret=SMSC_SECRET).status_code == 200


def test_webhooks_get_503_while_redis_is_down(
    tmp_path: Path, gateways: tuple[SmscEmulator, ZoomConnectEmulator, D7Emulator]
) -> None:
    server = EmbeddedRedis(tmp_path)
    server.start()
    try:
        with serving(create_app(gateway_settings(server.url, *gateways), background=False)) as base:
            server.stop()
            call = {"waitcall": "1", "phone": PHONE_DIGITS, "ts": str(int(time.time()))}
            response = smsc_emulator.post_callback(f"{base}/webhooks/smsc", call, secret=SMSC_SECRET)
            assert response.status_code == 503  # SMSC retries, so nothing is lost
            dlr = d7_emulator.post_dlr(f"{base}/webhooks/d7/{D7_HOOK}", d7_emulator.dlr_fields("x", "DELIVRD"))
            assert dlr.status_code == 503 and dlr.text != "ACK/Jasmin"
    finally:
        server.stop()


# Zoom Connect


def zoom_reply(
    vid: str, text: str, clock: MovableClock, nonce: str = "5f0e0b7c-1111-2222-3333-444455556666", age: float = 0
) -> dict[str, str]:
    stamp = time.strftime("%Y%m%d%H%M%S", time.gmtime(clock() - age))
    return {
        "from": PHONE,
        "repliedToMessageId": "40124213",
        "messageId": "124567",
        "message": text,
        "date": stamp[:12],
        "dataField": vid,
        "nonce": nonce,
        "nonce-date": stamp,
    }


def test_a_zoom_connect_reply_approves_once_and_a_replay_is_refused(
    client: FlaskClient, served: str, gateways: tuple[SmscEmulator, ...], clock: MovableClock
) -> None:
    vid = start(client).get_json()["id"]
    url = f"{served}/webhooks/zoomconnect/reply"
    params = zoom_reply(vid, f"my code is {sent_code(gateways[0])}", clock)
    assert zoomconnect_emulator.post_callback(url, "reply", params, secret=ZOOM_SECRET).status_code == 200
    assert get(client, vid)["completed_via"] == "sms_reply"
    replayed = zoomconnect_emulator.post_callback(url, "reply", params, secret=ZOOM_SECRET, in_query=False)
    assert replayed.status_code == 403


@pytest.mark.parametrize("case", ["stale", "wrong-secret"])
def test_stale_or_forged_zoom_connect_replies_change_nothing(
    client: FlaskClient, served: str, gateways: tuple[SmscEmulator, ...], clock: MovableClock, case: str
) -> None:
    vid = start(client).get_json()["id"]
    params = zoom_reply(vid, sent_code(gateways[0]), clock, age=901 if case == "stale" else 0)
    secret = "guess" if case == "wrong-secret" else ZOOM_SECRET
    response = zoomconnect_emulator.post_callback(
        f"{served}/webhooks/zoomconnect/reply", "reply", params, secret=secret
    )
    assert response.status_code == 403 and get(client, vid)["status"] == "pending"


def test_a_zoom_connect_delivery_report(
    redis_url: str, clock: MovableClock, gateways: tuple[SmscEmulator, ZoomConnectEmulator, D7Emulator]
) -> None:
    settings = replace(gateway_settings(redis_url, *gateways), sms_providers=("zoomconnect",))
    app = create_app(settings, clock=clock, background=False)
    client = app.test_client()
    with serving(app) as base:
        vid = start(client).get_json()["id"]
        stamp = time.strftime("%Y%m%d%H%M%S", time.gmtime(clock()))
        report = {"messageId": "40124213", "status": "DELIVERED", "nonce": "dlr-nonce-1", "nonce-date": stamp}
        response = zoomconnect_emulator.post_callback(
            f"{base}/webhooks/zoomconnect/delivery", "delivery", report, secret=ZOOM_SECRET
        )
        assert response.status_code == 200
        assert get(client, vid)["delivery"] == {"provider": "zoomconnect", "status": "delivered"}


# D7


@pytest.mark.parametrize("api", ["legacy", "v1"])
def test_d7_delivery_reports(
    redis_url: str, clock: MovableClock, api: str, gateways: tuple[SmscEmulator, ZoomConnectEmulator, D7Emulator]
) -> None:
    smsc, zoom, d7 = gateways
    d7.api = api
    configured = gateway_settings(redis_url, smsc, zoom, d7)
    d7_settings = replace(configured.gateway_settings["d7"], api=api, token=d7_emulator.TOKEN)
    app = create_app(
        replace(configured, sms_providers=("d7",), gateway_settings={**configured.gateway_settings, "d7": d7_settings}),
        clock=clock,
        background=False,
    )
    client = app.test_client()
    with serving(app) as base:
        vid = start(client).get_json()["id"]
        sent = d7.last.json()
        if api == "legacy":
            assert sent["dlr-url"] == f"https://verify.example/webhooks/d7/{D7_HOOK}"
            message_id = stored_message_id(client, vid)
            url = f"{base}/webhooks/d7/{D7_HOOK}"
            ack = d7_emulator.post_dlr(url, d7_emulator.dlr_fields(message_id, "ESME_ROK"))
            assert ack.status_code == 200 and ack.text == "ACK/Jasmin"
            assert (
                d7_emulator.post_dlr(url, d7_emulator.dlr_fields(message_id, "UNDELIV"), method="GET").text
                == "ACK/Jasmin"
            )
            wrong = d7_emulator.post_dlr(
                f"{base}/webhooks/d7/not-the-token", d7_emulator.dlr_fields(message_id, "DELIVRD")
            )
            assert wrong.status_code == 404
        else:
            assert sent["message_globals"]["report_url"] == f"https://verify.example/webhooks/d7/{D7_HOOK}/report"
            message_id = stored_message_id(client, vid)
            url = f"{base}/webhooks/d7/{D7_HOOK}/report"
            assert d7_emulator.post_report(url, d7_emulator.report_fields(message_id, "sent")).status_code == 200
            assert (
                d7_emulator.post_report(
                    url, d7_emulator.report_fields(message_id, "undelivered"), as_json=True
                ).status_code
                == 200
            )
        assert get(client, vid)["delivery"] == {"provider": "d7", "status": "failed"}


def test_webhooks_of_unconfigured_gateways_are_404(redis_url: str, clock: MovableClock) -> None:
    client = create_app(make_settings(redis_url), clock=clock, background=False).test_client()
    for path in ("/webhooks/smsc", "/webhooks/zoomconnect/reply", "/webhooks/d7/x", "/webhooks/d7/x/report"):
        response = client.post(path, data=b"a=b")
        assert response.status_code == 404 and response.mimetype == "application/problem+json"
