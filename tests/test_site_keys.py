"""Site keys (``VERIFY_SITE_KEYS``): publishable keys a web page uses from its own origins, with CORS. A site key
is held by strangers: its start always makes a verification of its own, it reads, checks and resends only what it
started and only with the client secret the start gave, it falls under every limit and the captcha, and its texts
end with the page's WebOTP line."""

from __future__ import annotations

import base64
from dataclasses import replace
from typing import Any

import pytest
from flask.testing import FlaskClient
from werkzeug.test import TestResponse

from tests.conftest import AUTH, PHONE, MovableClock, make_settings, single_and_cluster, start
from verify import create_app
from verify.config import Settings
from verify.errors import ConfigError
from verify.store import Store
from verify.tokens import client_secret_hash

SHOP = "https://shop.example"
OTHER = "https://other.example"
SITE_KEYS = "pk_shop=https://shop.example|https://www.shop.example,pk_other=https://other.example"
PK = {"X-Verify-Site-Key": "pk_shop", "Origin": SHOP}
BASE = {"VERIFY_API_KEYS": "x" * 16, "VERIFY_SECRET_KEY": "y" * 32, "VERIFY_SANDBOX": "1"}


@pytest.fixture(params=["single", "cluster"])
def redis_url(request: pytest.FixtureRequest) -> str:
    """This suite runs on a single Redis and on a 3-node cluster (ownership is judged inside the scripts)."""
    return single_and_cluster(request)


@pytest.fixture
def client(redis_url: str, clock: MovableClock) -> FlaskClient:
    return client_with(redis_url, clock)


def client_with(redis_url: str, clock: MovableClock, **overrides: Any) -> FlaskClient:
    keys = Settings.from_env({**BASE, "VERIFY_SITE_KEYS": SITE_KEYS}).site_keys
    settings = replace(make_settings(redis_url), **{"site_keys": keys, **overrides})
    return create_app(settings, clock=clock, background=False).test_client()


def site_start(
    client: FlaskClient,
    phone: str = PHONE,
    headers: dict[str, str] | None = None,
    ip: str = "127.0.0.1",
    **fields: Any,
) -> TestResponse:
    return client.post(
        "/v1/verifications", json={"phone": phone, **fields}, headers=headers or PK, environ_base={"REMOTE_ADDR": ip}
    )


def own(started: TestResponse, headers: dict[str, str] | None = None) -> dict[str, str]:
    """The headers of the client that made the start ``started``: its site key and the client secret it got."""
    assert started.status_code == 201, started.get_data(as_text=True)
    return {**(headers or PK), "X-Verify-Client-Secret": started.get_json()["client_secret"]}


def messages(client: FlaskClient, phone: str = PHONE) -> list[dict[str, str]]:
    """The sandbox's texts to ``phone``, newest first."""
    sent: list[dict[str, str]] = client.get("/sandbox/messages", query_string={"phone": phone}).get_json()["messages"]
    return sent


def problem(response: TestResponse, status: int, slug: str) -> dict[str, Any]:
    assert response.status_code == status, response.get_data(as_text=True)
    body: dict[str, Any] = response.get_json()
    assert body["type"] == f"/problems/{slug}"
    return body


def last_text(client: FlaskClient, phone: str = PHONE) -> str:
    text: str = client.get("/sandbox/messages", query_string={"phone": phone}).get_json()["messages"][0]["text"]
    return text


# configuration


def test_site_keys_are_read_with_their_origins() -> None:
    settings = Settings.from_env(
        {
            **BASE,
            "VERIFY_SITE_KEYS": " pk_shop = https://Shop.example/ | https://www.shop.example ,"
            "pk_two=http://127.0.0.1:8123",
        }
    )
    assert settings.site_key_origins("pk_shop") == ("https://shop.example", "https://www.shop.example")
    assert settings.site_key_origins("pk_two") == ("http://127.0.0.1:8123",)
    assert settings.site_key_origins("pk_none") is None


@pytest.mark.parametrize(
    "value",
    [
        "shop=https://shop.example",
        "pk_shop=",
        "pk_shop=shop.example",
        "pk_shop=https://shop.example/signup",
        "pk_shop=ftp://shop.example",
        "pk_a=https://a.example,pk_a=https://b.example",
    ],
)
def test_a_wrong_site_key_setting_names_the_variable(value: str) -> None:
    with pytest.raises(ConfigError, match=r"^VERIFY_SITE_KEYS "):
        Settings.from_env({**BASE, "VERIFY_SITE_KEYS": value})


# origins and CORS


def test_a_site_key_starts_from_its_origin_with_cors(client: FlaskClient) -> None:
    response = site_start(client)
    assert response.status_code == 201
    assert response.headers["Access-Control-Allow-Origin"] == SHOP
    assert "Origin" in response.headers.get_all("Vary")
    assert set(response.headers["Access-Control-Expose-Headers"].split(", ")) == {"Retry-After", "X-Request-Id"}
    www = site_start(client, "+79991234500", {"X-Verify-Site-Key": "pk_shop", "Origin": "https://www.shop.example"})
    assert www.status_code == 201 and www.headers["Access-Control-Allow-Origin"] == "https://www.shop.example"


@pytest.mark.parametrize(
    "headers",
    [
        {"X-Verify-Site-Key": "pk_shop", "Origin": OTHER},  # another key's origin
        {"X-Verify-Site-Key": "pk_shop", "Origin": "https://evil.example"},
        {"X-Verify-Site-Key": "pk_shop"},  # no Origin: not a browser on that page
        {"X-Verify-Site-Key": "pk_shop", "Origin": "null"},
    ],
)
def test_a_site_key_from_a_foreign_origin_or_none_is_refused(client: FlaskClient, headers: dict[str, str]) -> None:
    response = site_start(client, headers=headers)
    problem(response, 403, "forbidden")
    assert "Access-Control-Allow-Origin" not in response.headers
    assert client.get("/sandbox/messages", query_string={"phone": PHONE}).get_json()["messages"] == []


def test_an_unknown_site_key_is_unauthorized(client: FlaskClient) -> None:
    response = site_start(client, headers={"X-Verify-Site-Key": "pk_nope", "Origin": SHOP})
    problem(response, 401, "unauthorized")
    assert "Access-Control-Allow-Origin" not in response.headers


def test_a_preflight_answers_only_an_allowed_origin(client: FlaskClient) -> None:
    asked = {
        "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "content-type,x-verify-site-key",
    }
    allowed = client.options("/v1/verifications", headers={"Origin": SHOP, **asked})
    assert allowed.status_code == 204
    assert allowed.headers["Access-Control-Allow-Origin"] == SHOP
    assert {m.strip() for m in allowed.headers["Access-Control-Allow-Methods"].split(",")} == {"GET", "POST"}
    assert {h.strip().lower() for h in allowed.headers["Access-Control-Allow-Headers"].split(",")} >= {
        "content-type",
        "x-verify-site-key",
    }
    foreign = client.options("/v1/verifications", headers={"Origin": "https://evil.example", **asked})
    problem(foreign, 403, "forbidden")
    assert "Access-Control-Allow-Origin" not in foreign.headers
    assert client.options("/v1/verifications/abc/check", headers=asked).status_code == 403  # no Origin at all


def test_an_api_key_request_gets_no_cors_headers(client: FlaskClient) -> None:
    response = start(client, headers={"Origin": SHOP})
    assert response.status_code == 201 and "Access-Control-Allow-Origin" not in response.headers


# what a site key may do


def test_a_site_key_may_not_cancel_or_check_tokens(client: FlaskClient) -> None:
    vid = site_start(client).get_json()["id"]
    refused = client.delete(f"/v1/verifications/{vid}", headers=PK)
    problem(refused, 403, "forbidden")
    assert refused.headers["Access-Control-Allow-Origin"] == SHOP  # the page may read why
    problem(client.post("/v1/tokens/verify", json={"token": "x"}, headers=PK), 403, "forbidden")


def test_a_site_key_reaches_only_the_verifications_it_started(client: FlaskClient) -> None:
    by_api = start(client, "+79991234501").get_json()["id"]
    other = site_start(client, "+79991234502", {"X-Verify-Site-Key": "pk_other", "Origin": OTHER})
    by_other = other.get_json()["id"]
    mine = site_start(client)
    # Another key's client secret does not open a verification of this key's, nor this one's another's.
    foreign = {**PK, "X-Verify-Client-Secret": other.get_json()["client_secret"]}
    for vid, headers in ((by_api, own(mine)), (by_other, own(mine)), (by_other, foreign)):
        problem(client.get(f"/v1/verifications/{vid}", headers=headers), 404, "not-found")
        problem(
            client.post(f"/v1/verifications/{vid}/check", json={"code": "123456"}, headers=headers), 404, "not-found"
        )
        problem(client.post(f"/v1/verifications/{vid}/resend", json={}, headers=headers), 404, "not-found")
    # nothing was counted or sent on them
    assert client.get(f"/v1/verifications/{by_api}", headers=AUTH).get_json()["attempts_left"] == 5
    vid = mine.get_json()["id"]
    assert "client_secret" not in client.get(f"/v1/verifications/{vid}", headers=own(mine)).get_json()
    code = messages(client)[0]["code"]
    approved = client.post(f"/v1/verifications/{vid}/check", json={"code": code}, headers=own(mine))
    assert approved.status_code == 200 and approved.get_json()["status"] == "approved"
    assert client.get(f"/v1/verifications/{vid}", headers=AUTH).status_code == 200  # the API key reaches all


@pytest.mark.parametrize("channel", ["voice", "telegram"])
def test_a_stranger_with_the_public_key_cannot_ring_or_message_a_victims_verification(
    client: FlaskClient, channel: str
) -> None:
    # The victim started on SMS through the page; a stranger holds the public key and the id (seen, or guessed) but
    # not the client secret: switching it to a call or a Telegram message, reading, checking or cancelling it all
    # meet 404, and nothing is sent on any channel.
    victim = site_start(client)
    vid = victim.get_json()["id"]
    before = messages(client)
    for headers in (PK, {**PK, "X-Verify-Client-Secret": "x" * 43}, {**PK, "X-Forwarded-For": "203.0.113.99"}):
        resend = client.post(f"/v1/verifications/{vid}/resend", json={"channel": channel}, headers=headers)
        problem(resend, 404, "not-found")
        problem(client.get(f"/v1/verifications/{vid}", headers=headers), 404, "not-found")
        check = client.post(f"/v1/verifications/{vid}/check", json={"code": "123456"}, headers=headers)
        problem(check, 404, "not-found")
        assert client.delete(f"/v1/verifications/{vid}", headers=headers).status_code in (401, 403, 404)
    assert messages(client) == before
    view = client.get(f"/v1/verifications/{vid}", headers=AUTH).get_json()
    assert (view["status"], view["channel"], view["attempts_left"], view["sends_left"]) == ("pending", "sms", 5, 4)
    # The victim, with the secret, reaches its own: within the resend cooldown, the switch is only told to wait.
    switched = client.post(f"/v1/verifications/{vid}/resend", json={"channel": channel}, headers=own(victim))
    problem(switched, 429, "resend-cooldown")


def test_a_stranger_cannot_reach_a_victims_chained_payment_nor_make_its_chain_send(
    client: FlaskClient, clock: MovableClock
) -> None:
    # The victim's page started a payment's verification with a fallback chain. A stranger with the public key and
    # the id (seen, or guessed), from another address, with no secret or a made-up one: reading it, checking it
    # (with the payment it shows, or another), resending or switching it, cancelling it all meet 404 or a refusal,
    # and the stranger's requests send nothing; the chain goes on as the victim's.
    payment = {"amount": "99.00", "currency": "EUR", "payee": "Shop Ltd"}
    victim = site_start(client, channels=[{"channel": "sms", "wait": 5}, "voice"], context=payment)
    vid = victim.get_json()["id"]
    code = messages(client)[0]["code"]
    other = {**payment, "amount": "0.01"}
    for headers in (PK, {**PK, "X-Verify-Client-Secret": "x" * 43}, {**PK, "X-Forwarded-For": "203.0.113.99"}):
        problem(client.get(f"/v1/verifications/{vid}", headers=headers), 404, "not-found")
        for context in (payment, other):
            body = {"code": code, "context": context}
            problem(client.post(f"/v1/verifications/{vid}/check", json=body, headers=headers), 404, "not-found")
        for switch in ({}, {"channel": "voice"}, {"channel": "telegram"}):
            resend = client.post(f"/v1/verifications/{vid}/resend", json=switch, headers=headers)
            problem(resend, 404, "not-found")
        assert client.delete(f"/v1/verifications/{vid}", headers=headers).status_code in (401, 403, 404)
    assert len(messages(client)) == 1
    view = client.get(f"/v1/verifications/{vid}", headers=AUTH).get_json()
    assert (view["status"], view["attempts_left"], view["sends_left"]) == ("pending", 5, 4)
    assert view["fallback"]["next"]["channel"] == "voice" and view["fallback"]["stopped"] is None
    # The victim, with the secret and the payment it saw, approves it.
    approved = client.post(
        f"/v1/verifications/{vid}/check", json={"code": code, "context": payment}, headers=own(victim)
    )
    assert approved.status_code == 200 and approved.get_json()["context"] == payment


@pytest.mark.parametrize("secret", [None, "", "x" * 43, "🙂", "a" * 10_000])
def test_a_site_key_without_its_client_secret_reaches_nothing(client: FlaskClient, secret: str | None) -> None:
    # Not even a verification its own key started: the key is public, the secret went only to the starting client.
    started = site_start(client)
    vid = started.get_json()["id"]
    headers = PK if secret is None else {**PK, "X-Verify-Client-Secret": secret}
    code = messages(client)[0]["code"]
    problem(client.get(f"/v1/verifications/{vid}", headers=headers), 404, "not-found")
    problem(client.post(f"/v1/verifications/{vid}/check", json={"code": code}, headers=headers), 404, "not-found")
    problem(client.post(f"/v1/verifications/{vid}/resend", json={}, headers=headers), 404, "not-found")
    assert client.get(f"/v1/verifications/{vid}", headers=AUTH).get_json()["status"] == "pending"


def test_a_site_key_start_never_meets_another_s_verification(client: FlaskClient) -> None:
    # The backend's verification: a stranger's start with the public key neither gets it nor learns it exists.
    by_api = start(client).get_json()
    stranger = site_start(client, ip="10.66.0.1")
    assert stranger.status_code == 201
    assert stranger.get_json()["id"] != by_api["id"] and by_api["id"] not in stranger.get_data(as_text=True)
    assert "Retry-After" not in stranger.headers
    texts = messages(client)
    assert len(texts) == 2  # the stranger's start sent a code of its own
    # The code each verification sent approves only it.
    backend_code, stranger_code = texts[1]["code"], texts[0]["code"]
    if backend_code != stranger_code:
        wrong = client.post(f"/v1/verifications/{by_api['id']}/check", json={"code": stranger_code}, headers=AUTH)
        problem(wrong, 422, "invalid-code")
    approved = client.post(f"/v1/verifications/{by_api['id']}/check", json={"code": backend_code}, headers=AUTH)
    assert approved.get_json()["status"] == "approved"
    sid = stranger.get_json()["id"]
    assert client.get(f"/v1/verifications/{sid}", headers=own(stranger)).get_json()["status"] == "pending"


def test_a_verification_planted_with_the_site_key_never_blocks_or_reaches_the_backend(client: FlaskClient) -> None:
    planted = site_start(client, ip="10.66.0.1")
    backend = start(client)
    assert backend.status_code == 201  # a verification and a code of its own, not the planted one
    assert backend.get_json()["id"] != planted.get_json()["id"]
    assert "client_secret" not in backend.get_json()
    again = start(client)  # the backend's reload: its own pending verification
    assert again.status_code == 200 and again.get_json()["id"] == backend.get_json()["id"]
    backend_code = messages(client)[0]["code"]
    pid = planted.get_json()["id"]
    if backend_code != messages(client)[1]["code"]:
        # The backend's code, typed by the person, never approves the planted one.
        wrong = client.post(f"/v1/verifications/{pid}/check", json={"code": backend_code}, headers=own(planted))
        problem(wrong, 422, "invalid-code")
    checked = client.post(
        f"/v1/verifications/{backend.get_json()['id']}/check", json={"code": backend_code}, headers=AUTH
    )
    assert checked.get_json()["status"] == "approved"
    assert client.get(f"/v1/verifications/{pid}", headers=own(planted)).get_json()["status"] == "pending"


def test_idempotency_keys_of_a_site_key_are_its_own_and_its_client_s(client: FlaskClient) -> None:
    first = start(client, headers={"Idempotency-Key": "k-1"})
    assert first.status_code == 201
    replayed = site_start(client, headers={**PK, "Idempotency-Key": "k-1"})
    assert "Idempotent-Replayed" not in replayed.headers  # not the API key's stored response
    assert replayed.status_code == 201 and replayed.get_json()["id"] != first.get_json()["id"]
    # The same site key and key from the same client replays, the client secret with it (kept sealed: see the next
    # test); from another address it is another request.
    again = site_start(client, headers={**PK, "Idempotency-Key": "k-1"})
    assert again.headers["Idempotent-Replayed"] == "true" and again.get_json() == replayed.get_json()
    elsewhere = site_start(client, headers={**PK, "Idempotency-Key": "k-1"}, ip="10.66.0.1")
    assert "Idempotent-Replayed" not in elsewhere.headers
    assert elsewhere.get_json()["id"] != replayed.get_json()["id"]


def test_redis_keeps_no_usable_copy_of_a_client_secret(redis_url: str, clock: MovableClock) -> None:
    # Events on: records are mirrored whole (their final copies, the journal), the widest Redis ever holds of one.
    client = client_with(redis_url, clock, events_url="http://127.0.0.1:9/hooks", events_secrets=("e" * 16,))
    started = site_start(client, headers={**PK, "Idempotency-Key": "k-1"})
    replayed = site_start(client, headers={**PK, "Idempotency-Key": "k-1"})
    secret = started.get_json()["client_secret"]
    assert replayed.headers["Idempotent-Replayed"] == "true" and replayed.get_json()["client_secret"] == secret
    vid = started.get_json()["id"]
    code = messages(client)[0]["code"]
    approved = client.post(f"/v1/verifications/{vid}/check", json={"code": code}, headers=own(started))
    assert approved.get_json()["status"] == "approved"
    store = Store.from_url(redis_url, "")
    try:
        held = "\n".join(_everything(store.client))
    finally:
        store.close()
    assert vid in held and client_secret_hash(secret) in held  # the record (and its copies) keep the hash
    assert secret not in held
    assert _b64_in(secret) not in held  # nor its bytes in another encoding


def _everything(redis: Any) -> list[str]:
    """Every key and every value Redis holds, as text."""
    out: list[str] = []
    for key in redis.scan_iter(count=1000):
        out.append(key)
        kind = redis.type(key)
        if kind == "string":
            out.append(redis.get(key))
        elif kind == "hash":
            out.extend(f"{k}={v}" for k, v in redis.hgetall(key).items())
        elif kind == "zset":
            out.extend(redis.zrange(key, 0, -1))
        elif kind == "list":
            out.extend(redis.lrange(key, 0, -1))
        elif kind == "set":
            out.extend(redis.smembers(key))
        else:
            raise AssertionError(f"{key}: a {kind} this test does not read")
    return out


def _b64_in(secret: str) -> str:
    """The secret's bytes in standard base64, unpadded (another way a copy could hide)."""
    raw = base64.urlsafe_b64decode(secret + "=" * (-len(secret) % 4))
    return base64.b64encode(raw).decode().rstrip("=")


# limits and captcha


def test_site_key_starts_fall_under_the_ip_limit_and_the_captcha(redis_url: str, clock: MovableClock) -> None:
    client = client_with(redis_url, clock, limit_ip="2/hour", captcha_mode="adaptive", captcha_after=1)
    assert site_start(client, "+79991234510").status_code == 201
    needs = problem(site_start(client, "+79991234511"), 428, "captcha-required")
    answer = client.get(f"/sandbox/captcha/{needs['captcha']['id']}").get_json()["answer"]
    solved = site_start(client, "+79991234511", captcha={"id": needs["captcha"]["id"], "answer": answer})
    assert solved.status_code == 201
    problem(site_start(client, "+79991234512"), 429, "rate-limited")


# the texts


def test_a_site_key_start_ends_its_text_with_the_webotp_line(client: FlaskClient) -> None:
    started = site_start(client)
    vid = started.get_json()["id"]
    code = client.get("/sandbox/messages", query_string={"phone": PHONE}).get_json()["messages"][0]["code"]
    assert last_text(client).splitlines()[-1] == f"@shop.example #{code}"
    assert client.post(f"/v1/verifications/{vid}/resend", json={}, headers=own(started)).status_code in (200, 429)
    start(client, "+79991234520")
    assert "@" not in last_text(client, "+79991234520")  # an API key's text is the template alone


def test_an_app_hash_goes_on_its_own_line(client: FlaskClient) -> None:
    assert start(client, app_hash="FA+9qCX9VSu").status_code == 201
    lines = last_text(client).splitlines()
    assert lines[-1] == "FA+9qCX9VSu"


def test_an_app_hash_that_cannot_autofill_is_refused_before_anything_is_sent(
    redis_url: str, clock: MovableClock
) -> None:
    long_ru = "Ваш одноразовый код для входа в личный кабинет магазина: {code}. Никому его не сообщайте."  # noqa: RUF001
    client = client_with(redis_url, clock, sms_template_ru=long_ru, limit_ip="1/hour")
    body = problem(start(client, locale="ru", app_hash="FA+9qCX9VSu"), 400, "invalid-request")
    assert body["field"] == "app_hash"
    assert client.get("/sandbox/messages", query_string={"phone": PHONE}).get_json()["messages"] == []
    assert start(client, locale="ru").status_code == 201  # the IP's one start an hour was not taken
    problem(start(client, app_hash="not-a-hash"), 400, "invalid-request")


def test_a_same_origin_page_of_the_service_is_its_own_origin(redis_url: str, clock: MovableClock) -> None:
    """The demo page is served by verify itself, and a browser sends no Origin on its same-origin GETs: such a
    request counts as from the service's own origin (Sec-Fetch-Site, which no page script can set)."""
    client = client_with(redis_url, clock, site_keys=(("pk_demo", ("http://localhost",)),))
    started = site_start(client, headers={"X-Verify-Site-Key": "pk_demo", "Origin": "http://localhost"})
    vid, secret = started.get_json()["id"], started.get_json()["client_secret"]
    demo = {"X-Verify-Site-Key": "pk_demo", "X-Verify-Client-Secret": secret}
    polled = client.get(f"/v1/verifications/{vid}", headers={**demo, "Sec-Fetch-Site": "same-origin"})
    assert polled.status_code == 200
    cross = client.get(f"/v1/verifications/{vid}", headers={**demo, "Sec-Fetch-Site": "cross-site"})
    problem(cross, 403, "forbidden")


def test_check_config_shows_site_keys_as_they_are_written() -> None:
    settings = Settings.from_env({**BASE, "VERIFY_SITE_KEYS": SITE_KEYS})
    assert dict(settings.describe())["VERIFY_SITE_KEYS"] == SITE_KEYS
