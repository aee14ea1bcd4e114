"""Tenants from one file, through the app (``verify/tenancy.py``): each tenant's key reaches its own verifications,
idempotency keys, tokens and events only (another tenant's id is the same 404 as an unknown one), its own brand,
code length, limits and breakers; a phone's quotas are shared by every tenant; a gateway's event goes to the one
tenant it concerns; a deployment that adds the file keeps its verifications. On one server and on a 3-node cluster
(a tenant's keys and the shared phone quota must share a slot)."""

from __future__ import annotations

import hashlib
import hmac
from pathlib import Path
from typing import Any

import pytest
from flask.testing import FlaskClient
from itsdangerous import BadSignature, URLSafeTimedSerializer
from prometheus_client.parser import text_string_to_metric_families
from werkzeug.test import TestResponse

from tests.conftest import API_KEY, PHONE, SECRET_KEY, MovableClock, Receiver, serving, single_and_cluster
from verify import create_app
from verify.config import Settings
from verify.embedded import free_port
from verify.store import Store, tag_for
from verify.tenants import hash_key

SHOP_KEY = "shop-api-key-0123456789"
BANK_KEY = "bank-api-key-0123456789"
SHOP = {"Authorization": f"Bearer {SHOP_KEY}"}
BANK = {"Authorization": f"Bearer {BANK_KEY}"}
IMPLICIT = {"Authorization": f"Bearer {API_KEY}"}
PK_SHOP = {"X-Verify-Site-Key": "pk_shop", "Origin": "https://shop.example"}

TENANTS = f"""
[tenants.shop]
brand = "Shop"
api_keys = ["{hash_key(SHOP_KEY)}"]
code_length = 4
site_keys = {{ pk_shop = ["https://shop.example"] }}
limits = {{ ip = "100/hour", phone = "3/10 minutes" }}

[tenants.bank]
brand = "Bank"
api_keys = ["{hash_key(BANK_KEY)}"]
limits = {{ phone = "3/10 minutes" }}
"""


def tenant_settings(redis_url: str, path: Path, text: str = TENANTS, **extra: str) -> Settings:
    path.write_text(text)
    return Settings.from_env(
        {
            "VERIFY_API_KEYS": API_KEY,
            "VERIFY_SECRET_KEY": SECRET_KEY,
            "VERIFY_REDIS_URL": redis_url,
            "VERIFY_SANDBOX": "1",
            "VERIFY_CAPTCHA_MODE": "off",
            "VERIFY_TENANTS_FILE": str(path),
            **extra,
        }
    )


@pytest.fixture(params=["single", "cluster"])
def redis_url(request: pytest.FixtureRequest) -> str:
    return single_and_cluster(request)


@pytest.fixture
def client(redis_url: str, clock: MovableClock, tmp_path: Path) -> FlaskClient:
    app = create_app(tenant_settings(redis_url, tmp_path / "tenants.toml"), clock=clock, background=False)
    return app.test_client()


def begin(client: FlaskClient, headers: dict[str, str], phone: str = PHONE, **fields: Any) -> TestResponse:
    return client.post("/v1/verifications", json={"phone": phone, **fields}, headers=headers)


def newest(client: FlaskClient, phone: str = PHONE) -> dict[str, Any]:
    message: dict[str, Any] = client.get("/sandbox/messages", query_string={"phone": phone}).get_json()["messages"][0]
    return message


def test_each_tenant_sends_its_brand_and_code_length(client: FlaskClient) -> None:
    shop = begin(client, SHOP, "+79990000001")
    assert shop.status_code == 201
    text = newest(client, "+79990000001")
    assert "Shop" in text["text"] and len(text["code"]) == 4
    bank = begin(client, BANK, "+79990000002")
    assert bank.status_code == 201
    text = newest(client, "+79990000002")
    assert "Bank" in text["text"] and len(text["code"]) == 6
    implicit = begin(client, IMPLICIT, "+79990000003")
    assert implicit.status_code == 201
    assert "Verify" in newest(client, "+79990000003")["text"]


def test_another_tenants_verification_is_not_found(client: FlaskClient) -> None:
    started = begin(client, SHOP)
    vid = started.get_json()["id"]
    code = newest(client)["code"]
    unknown = "0" * 28
    for headers in (BANK, IMPLICIT):
        for method, path, body in (
            ("GET", f"/v1/verifications/{vid}", None),
            ("POST", f"/v1/verifications/{vid}/check", {"code": code}),
            ("POST", f"/v1/verifications/{vid}/resend", {}),
            ("DELETE", f"/v1/verifications/{vid}", None),
        ):
            answer = client.open(path, method=method, json=body, headers=headers)
            like_unknown = client.open(path.replace(vid, unknown), method=method, json=body, headers=headers)
            assert answer.status_code == like_unknown.status_code == 404, (headers, path)
            assert answer.get_json()["detail"] == like_unknown.get_json()["detail"]
    # Nothing the other tenants tried changed it: still pending, the code still works for its own tenant.
    assert client.get(f"/v1/verifications/{vid}", headers=SHOP).get_json()["status"] == "pending"
    checked = client.post(f"/v1/verifications/{vid}/check", json={"code": code}, headers=SHOP)
    assert checked.get_json()["status"] == "approved"


def test_a_site_key_reaches_only_its_tenant(client: FlaskClient) -> None:
    bank = begin(client, BANK).get_json()["id"]
    answer = client.get(f"/v1/verifications/{bank}", headers={**PK_SHOP, "X-Verify-Client-Secret": "x" * 32})
    assert answer.status_code == 404
    mine = begin(client, PK_SHOP, "+79990000009")
    assert mine.status_code == 201
    assert len(newest(client, "+79990000009")["code"]) == 4  # the shop's code length: its site key is the shop's


def test_idempotency_keys_are_each_tenants_own(client: FlaskClient) -> None:
    key = {"Idempotency-Key": "order-1"}
    shop = begin(client, {**SHOP, **key})
    again = begin(client, {**SHOP, **key})
    assert again.get_json()["id"] == shop.get_json()["id"]
    bank = begin(client, {**BANK, **key}, "+79990000004")
    assert bank.status_code == 201 and bank.get_json()["id"] != shop.get_json()["id"]


def test_a_token_is_valid_for_its_tenant_only(client: FlaskClient) -> None:
    vid = begin(client, SHOP).get_json()["id"]
    token = client.post(
        f"/v1/verifications/{vid}/check", json={"code": newest(client)["code"]}, headers=SHOP
    ).get_json()["token"]
    assert client.post("/v1/tokens/verify", json={"token": token}, headers=SHOP).status_code == 200
    for other in (BANK, IMPLICIT):
        assert client.post("/v1/tokens/verify", json={"token": token}, headers=other).status_code == 400


def test_a_tenants_token_is_checked_offline_with_its_derived_key(client: FlaskClient) -> None:
    vid = begin(client, SHOP).get_json()["id"]
    token = client.post(
        f"/v1/verifications/{vid}/check", json={"code": newest(client)["code"]}, headers=SHOP
    ).get_json()["token"]
    # As the README's "Checking a token offline" says for a tenant.
    key = hmac.new(SECRET_KEY.encode(), b"verify tenant shop", hashlib.sha256).hexdigest()
    assert URLSafeTimedSerializer([key], salt="verify.proof").loads(token)["vid"] == vid
    with pytest.raises(BadSignature):
        URLSafeTimedSerializer([SECRET_KEY], salt="verify.proof").loads(token)


def test_a_phones_limit_holds_across_tenants(client: FlaskClient) -> None:
    # 3 codes per 10 minutes to one phone, whichever tenant sends them: the count is the phone's.
    sent = 0
    for headers in (SHOP, BANK, SHOP, BANK, IMPLICIT):
        started = begin(client, headers)
        if started.status_code == 201:
            sent += 1
            assert client.delete(f"/v1/verifications/{started.get_json()['id']}", headers=headers).status_code == 200
        else:
            assert started.status_code == 429
            assert started.get_json()["limit"] == "phone"
    assert sent == 3


def test_redis_keys_carry_the_tenant(client: FlaskClient, redis_url: str) -> None:
    vid = begin(client, SHOP).get_json()["id"]
    store = Store.from_url(redis_url, "")
    try:
        every = {"target_nodes": "all"} if store.cluster else {}
        keys = {str(key) for key in store.client.keys("*", **every)}
    finally:
        store.close()
    tag = tag_for(PHONE)
    assert f"verify:t:shop:{{{tag}}}:vf:{vid}" in keys
    assert f"verify:{{{tag}}}:q:phone:{PHONE}" in keys  # the phone's quota: shared
    assert not any(key.startswith("verify:t:bank:") and ":vf:" in key for key in keys)


def test_a_reply_goes_to_the_tenant_it_concerns(client: FlaskClient) -> None:
    vid = begin(client, BANK).get_json()["id"]
    code = newest(client)["code"]
    replied = client.post("/sandbox/replies", json={"phone": PHONE, "text": code}).get_json()
    assert replied["approved"] and replied["verification"]["id"] == vid


def test_a_call_that_two_tenants_could_claim_approves_neither(client: FlaskClient) -> None:
    shop = begin(client, SHOP, channel="call").get_json()["id"]
    bank = begin(client, BANK, channel="call").get_json()["id"]
    assert client.post("/sandbox/calls", json={"phone": PHONE}).status_code == 404
    for vid, headers in ((shop, SHOP), (bank, BANK)):
        assert client.get(f"/v1/verifications/{vid}", headers=headers).get_json()["status"] == "pending"
    assert client.delete(f"/v1/verifications/{bank}", headers=BANK).status_code == 200
    # The bank's is over: a call now concerns the shop's alone... but a call made while two were pending cannot
    # be told apart from one made for the canceled one: within a tenant that approves none either (_called_for).
    called = client.post("/sandbox/calls", json={"phone": PHONE})
    assert called.status_code == 200 and called.get_json()["id"] == shop


def test_an_unknown_key_is_refused(client: FlaskClient) -> None:
    answer = begin(client, {"Authorization": "Bearer not-a-key-of-anyone-0000"})
    assert answer.status_code == 401


def test_each_tenant_has_its_own_breakers(redis_url: str, clock: MovableClock, tmp_path: Path) -> None:
    # shop's hook is down: its breaker opens at the first failure; the implicit tenant's gateways are not shop's.
    text = TENANTS.replace(
        "code_length = 4\n",
        f'code_length = 4\nsms_providers = ["hook"]\n'
        f'hook = {{ url = "http://127.0.0.1:{free_port()}/send", secret = ["shop-hook-secret-0123"] }}\n',
    )
    settings = tenant_settings(redis_url, tmp_path / "tenants.toml", text, VERIFY_BREAKER_FAILURES="1")
    client = create_app(settings, clock=clock, background=False).test_client()
    assert begin(client, SHOP).status_code == 503
    assert begin(client, IMPLICIT).status_code == 201
    breakers = {
        (sample.labels["tenant"], sample.labels["provider"]): sample.value
        for family in text_string_to_metric_families(client.get("/metrics").get_data(as_text=True))
        if family.name == "verify_breaker_open"
        for sample in family.samples
    }
    # (shop's other channels still go through the sandbox, in sandbox mode)
    assert breakers == {("default", "sandbox"): 0, ("shop", "hook"): 1, ("shop", "sandbox"): 0, ("bank", "sandbox"): 0}


def test_each_tenants_events_go_to_its_own_receiver(redis_url: str, clock: MovableClock, tmp_path: Path) -> None:
    shop_hooks, bank_hooks = Receiver(), Receiver()
    with serving(shop_hooks) as shop_base, serving(bank_hooks) as bank_base:
        text = TENANTS.replace(
            "code_length = 4\n",
            f'code_length = 4\nevents_url = "{shop_base}/events"\nevents_secret = ["shop-events-secret-0123"]\n',
        ).replace(
            "[tenants.bank]\n",
            f'[tenants.bank]\nevents_url = "{bank_base}/events"\nevents_secret = ["bank-events-secret-0123"]\n',
        )
        app = create_app(tenant_settings(redis_url, tmp_path / "tenants.toml", text), clock=clock, background=False)
        client = app.test_client()
        approved = {}
        for headers, phone in ((SHOP, "+79990000001"), (BANK, "+79990000002"), (IMPLICIT, "+79990000003")):
            vid = begin(client, headers, phone).get_json()["id"]
            code = newest(client, phone)["code"]
            assert (
                client.post(f"/v1/verifications/{vid}/check", json={"code": code}, headers=headers).status_code == 200
            )
            approved[phone] = vid
        for svc in app.extensions["verify.tenancy"].services.values():  # what each tenant's loop does
            svc.events.sweep()
            svc.events.deliver()
    for hooks, secret, phone in (
        (shop_hooks, "shop-events-secret-0123", "+79990000001"),
        (bank_hooks, "bank-events-secret-0123", "+79990000002"),
    ):
        assert [event["data"]["id"] for event in hooks.events()] == [approved[phone]]
        ((headers, body),) = hooks.received
        parts = dict(item.split("=", 1) for item in headers["Verify-Signature"].split(","))
        assert parts["v1"] == hmac.new(secret.encode(), f"{parts['t']}.".encode() + body, hashlib.sha256).hexdigest()


def test_a_deployment_that_adds_the_file_keeps_its_verifications(
    redis_url: str, clock: MovableClock, tmp_path: Path
) -> None:
    # Before the file: one tenant. Its pending verification is still its, with the same key, once the file is added.
    before = Settings.from_env(
        {
            "VERIFY_API_KEYS": API_KEY,
            "VERIFY_SECRET_KEY": SECRET_KEY,
            "VERIFY_REDIS_URL": redis_url,
            "VERIFY_SANDBOX": "1",
            "VERIFY_CAPTCHA_MODE": "off",
        }
    )
    old = create_app(before, clock=clock, background=False).test_client()
    vid = begin(old, IMPLICIT).get_json()["id"]
    code = newest(old)["code"]
    new = create_app(tenant_settings(redis_url, tmp_path / "tenants.toml"), clock=clock, background=False).test_client()
    assert new.get(f"/v1/verifications/{vid}", headers=IMPLICIT).get_json()["status"] == "pending"
    assert new.get(f"/v1/verifications/{vid}", headers=SHOP).status_code == 404
    checked = new.post(f"/v1/verifications/{vid}/check", json={"code": code}, headers=IMPLICIT).get_json()
    assert checked["status"] == "approved"
    assert new.post("/v1/tokens/verify", json={"token": checked["token"]}, headers=IMPLICIT).status_code == 200


def test_a_tenant_that_requires_a_payment_refuses_a_start_without_one(
    redis_url: str, clock: MovableClock, tmp_path: Path
) -> None:
    text = TENANTS.replace('brand = "Bank"\n', 'brand = "Bank"\npsd2 = true\n')
    client = create_app(
        tenant_settings(redis_url, tmp_path / "t.toml", text), clock=clock, background=False
    ).test_client()
    refused = begin(client, BANK)
    assert refused.status_code == 400 and refused.get_json()["field"] == "context"
    payment = {"amount": "12.50", "currency": "EUR", "payee": "Shop Ltd"}
    assert begin(client, BANK, context=payment).status_code == 201
    assert "12.50" in newest(client)["text"] and "Bank" in newest(client)["text"]
    assert begin(client, SHOP, "+79990000005").status_code == 201  # shop does not require one


def test_a_phones_wrong_codes_count_across_tenants(redis_url: str, clock: MovableClock, tmp_path: Path) -> None:
    # Three wrong codes a day for one phone, whichever tenant's verification they were typed into: then every check
    # of that phone is refused, in both tenants, the right code included.
    text = TENANTS.replace('phone = "3/10 minutes" }', 'phone = "3/10 minutes", phone_failures = "3/day" }').replace(
        'limits = { phone = "3/10 minutes" }', 'limits = { phone = "3/10 minutes", phone_failures = "3/day" }'
    )
    settings = tenant_settings(redis_url, tmp_path / "t.toml", text)
    client = create_app(settings, clock=clock, background=False).test_client()
    shop = begin(client, SHOP).get_json()["id"]
    shop_code = newest(client)["code"]
    bank = begin(client, BANK).get_json()["id"]
    bank_code = newest(client)["code"]
    answers = []
    for vid, headers, wrong in (
        (shop, SHOP, "0000"),
        (bank, BANK, "000000"),
        (shop, SHOP, "1111"),
        (bank, BANK, "111111"),
    ):
        if wrong in (shop_code, bank_code):
            wrong = wrong.replace(wrong[0], "2")
        answers.append(client.post(f"/v1/verifications/{vid}/check", json={"code": wrong}, headers=headers))
    assert [a.status_code for a in answers] == [422, 422, 422, 429]
    assert answers[-1].get_json()["limit"] == "phone_failures"
    for vid, headers, code in ((shop, SHOP, shop_code), (bank, BANK, bank_code)):
        refused = client.post(f"/v1/verifications/{vid}/check", json={"code": code}, headers=headers)
        assert refused.status_code == 429 and refused.get_json()["limit"] == "phone_failures"
