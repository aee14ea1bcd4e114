"""``GET /metrics``: under the Procfile's gunicorn with two workers, every counter moves by exactly what was done
(the workers' samples add up); in process, the counters the gunicorn run does not reach (captchas, expiries, events,
the pumping guard, Redis errors), and each tenant of a tenants file counted under its own ``tenant`` label."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import redis
import requests
from flask.testing import FlaskClient
from prometheus_client import CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import API_KEY, SECRET_KEY, MovableClock, Receiver, check, last_code, make_settings, serving, start
from tests.providers.smsc_emulator import smsc_callback
from tests.redis_servers import EmbeddedSentinel
from tests.servers import AUTH, Server, gunicorn_server
from verify import create_app
from verify.config import Settings
from verify.embedded import EmbeddedRedis
from verify.errors import ReplicasUnconfirmed
from verify.metrics import Metrics
from verify.store import Batch
from verify.tenants import hash_key

METRICS_TOKEN = "metrics-token-0123456789"
SMSC_SECRET = "smsc-callback-secret-42"
D7_TOKEN = "d7-path-token-never-a-label"
Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]
# The label of a tenant's metrics, without a tenants file: the implicit tenant's.
DEFAULT = {"tenant": "default"}
# The metrics that count a tenant's work, labelled ``tenant``; every other metric is the deployment's.
TENANTED = {
    *(f"verify_verifications_{name}" for name in ("started", "approved", "expired", "canceled", "failed")),
    "verify_fallback_steps",
    "verify_sms_messages",
    "verify_sms_parts",
    "verify_gateway_cost",
    "verify_gateway_refunds",
    "verify_provider_request_duration_seconds",
    "verify_provider_errors",
    "verify_failovers",
    "verify_rate_limited",
    "verify_captcha_challenges",
    "verify_captcha_answers",
    "verify_pumping_guard_active",
    "verify_events",
    "verify_breaker_open",  # read from Redis at a scrape: each tenant has its own breakers
}


def parse(text: str) -> Samples:
    """Every sample of a scrape, by name and labels."""
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


class Scrapes:
    """Scrapes of one server, and the change of a sample between two of them."""

    def __init__(self, server: Server) -> None:
        self.server = server
        self.before = self.scrape()

    def scrape(self) -> Samples:
        response = requests.get(
            self.server.url("/metrics"), headers={"Authorization": f"Bearer {METRICS_TOKEN}"}, timeout=10
        )
        assert response.status_code == 200, response.text
        assert response.headers["Content-Type"].startswith("text/plain; version=")
        return parse(response.text)

    def moved(self, after: Samples, name: str, **labels: str) -> float:
        key = (name, frozenset(labels.items()))
        return after.get(key, 0.0) - self.before.get(key, 0.0)


@pytest.fixture(scope="module")
def server(redis_server: EmbeddedRedis, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    settings = {
        "VERIFY_METRICS_TOKEN": METRICS_TOKEN,
        "VERIFY_SMSC_SECRET": SMSC_SECRET,
        "VERIFY_D7_TOKEN": "d7-api-token",
        "VERIFY_D7_WEBHOOK_TOKEN": D7_TOKEN,
        "VERIFY_BREAKER_FAILURES": "1",
        "VERIFY_LIMIT_IP": "3/hour",
        "VERIFY_CAPTCHA_MODE": "off",
    }
    with gunicorn_server(redis_server.url, tmp_path_factory.mktemp("metrics"), settings, workers=2) as running:
        running.reset()
        yield running


def post(server: Server, path: str, ip: str, body: object | None = None) -> requests.Response:
    return requests.post(server.url(path), json=body, headers={**AUTH, "X-Forwarded-For": ip}, timeout=30)


def started(server: Server, phone: str, ip: str, **fields: str) -> tuple[str, str]:
    """Start a verification; its id and the code SMSC was given (or "" for a call)."""
    mark = server.smsc.mark()
    response = post(server, "/v1/verifications", ip, {"phone": phone, **fields})
    assert response.status_code == 201, response.text
    sent = server.smsc.since(mark, "sms")
    code = re.search(r"\d{6}", sent[0].text).group() if sent else ""  # type: ignore[union-attr]
    return response.json()["id"], code


def test_metrics_need_the_token(server: Server) -> None:
    assert requests.get(server.url("/metrics"), timeout=10).status_code == 401
    wrong = requests.get(server.url("/metrics"), headers={"Authorization": "Bearer wrong"}, timeout=10)
    assert wrong.status_code == 401 and wrong.headers["Content-Type"] == "application/problem+json"


def test_counters_move_by_exactly_what_was_done(server: Server) -> None:
    scrapes = Scrapes(server)
    smsc = server.smsc
    # Four SMS starts, one in Russian (UCS-2); two approved (one after a wrong code), one canceled.
    first, first_code = started(server, "+79990010001", "10.1.0.1")
    second, second_code = started(server, "+79990010002", "10.1.0.2")
    third, _ = started(server, "+79990010003", "10.1.0.3", locale="ru")
    british, _ = started(server, "+447400123456", "10.1.0.4")
    assert post(server, f"/v1/verifications/{first}/check", "10.1.0.1", {"code": first_code}).status_code == 200
    wrong = "000000" if second_code != "000000" else "111111"
    assert post(server, f"/v1/verifications/{second}/check", "10.1.0.2", {"code": wrong}).status_code == 422
    assert post(server, f"/v1/verifications/{second}/check", "10.1.0.2", {"code": second_code}).status_code == 200
    assert requests.delete(server.url(f"/v1/verifications/{third}"), headers=AUTH, timeout=10).status_code == 200
    # A call verification through the sandbox's call channel, approved by the simulated call.
    started(server, "+79990010005", "10.1.0.5", channel="call")
    assert post(server, "/sandbox/calls", "10.1.0.5", {"phone": "+79990010005"}).status_code == 200
    # SMSC reports the British message undeliverable, then repeats itself; a forger tries too.
    fields = {"id": british, "phone": "447400123456", "status": "20"}
    for secret, status in ((SMSC_SECRET, 200), (SMSC_SECRET, 200), ("forged", 403)):
        _, body, content_type = smsc_callback(fields, secret=secret, hash="sha1")
        assert (
            requests.post(
                server.url("/webhooks/smsc"), data=body, headers={"Content-Type": content_type}, timeout=10
            ).status_code
            == status
        )
    assert requests.post(server.url(f"/webhooks/d7/{D7_TOKEN}x/report"), json={}, timeout=10).status_code == 404
    # One IP past its limit of 3 an hour: three sends, one refusal.
    for n in range(3):
        started(server, f"+7999002000{n}", "10.1.0.9")
    assert post(server, "/v1/verifications", "10.1.0.9", {"phone": "+79990020009"}).status_code == 429
    # The gateway fails: one error opens its breaker (VERIFY_BREAKER_FAILURES=1), and the next start skips it.
    smsc.mode = "5xx"
    assert post(server, "/v1/verifications", "10.1.0.10", {"phone": "+79990030001"}).status_code == 503
    smsc.mode = "ok"
    assert post(server, "/v1/verifications", "10.1.0.11", {"phone": "+79990030002"}).status_code == 503
    assert requests.get(server.url("/no/such/route"), timeout=10).status_code == 404

    after = scrapes.scrape()
    moved = scrapes.moved
    by_smsc = {**DEFAULT, "provider": "smsc"}
    sms_ru = {**by_smsc, "channel": "sms", "country": "RU"}
    sms_gb = {**by_smsc, "channel": "sms", "country": "GB"}
    call_ru = {**DEFAULT, "channel": "call", "provider": "sandbox", "country": "RU"}
    assert moved(after, "verify_verifications_started_total", **sms_ru) == 6
    assert moved(after, "verify_verifications_started_total", **sms_gb) == 1
    assert moved(after, "verify_verifications_started_total", **call_ru) == 1
    assert moved(after, "verify_verifications_approved_total", **sms_ru) == 2
    assert moved(after, "verify_verifications_approved_total", **call_ru) == 1
    assert moved(after, "verify_verifications_canceled_total", **sms_ru) == 1
    assert moved(after, "verify_verifications_failed_total", **sms_gb) == 1
    assert moved(after, "verify_sms_messages_total", **by_smsc, encoding="GSM-7") == 6
    assert moved(after, "verify_sms_messages_total", **by_smsc, encoding="UCS-2") == 1
    assert moved(after, "verify_sms_parts_total", **by_smsc, encoding="GSM-7") == 6
    assert moved(after, "verify_provider_request_duration_seconds_count", **by_smsc, operation="send_sms") == 8
    assert moved(after, "verify_provider_errors_total", **by_smsc, operation="send_sms", kind="http_5xx") == 1
    assert moved(after, "verify_failovers_total", **by_smsc, reason="error") == 1
    assert moved(after, "verify_failovers_total", **by_smsc, reason="breaker_open") == 1
    assert after[("verify_breaker_open", frozenset({("tenant", "default"), ("provider", "smsc")}))] == 1
    assert after[("verify_breaker_open", frozenset({("tenant", "default"), ("provider", "sandbox")}))] == 0
    assert moved(after, "verify_webhooks_total", provider="smsc", kind="delivery_report", result="accepted") == 1
    assert moved(after, "verify_webhooks_total", provider="smsc", kind="delivery_report", result="ignored") == 1
    assert moved(after, "verify_webhooks_total", provider="smsc", kind="none", result="rejected") == 1
    assert moved(after, "verify_webhooks_total", provider="d7", kind="none", result="rejected") == 1
    assert moved(after, "verify_rate_limited_total", **DEFAULT, limit="ip") == 1
    route = "/v1/verifications"
    assert moved(after, "verify_http_requests_total", method="POST", route=route, status="201") == 8
    assert moved(after, "verify_http_requests_total", method="POST", route=route, status="429") == 1
    assert moved(after, "verify_http_requests_total", method="POST", route=route, status="503") == 2
    check_route = "/v1/verifications/<verification_id>/check"
    assert moved(after, "verify_http_requests_total", method="POST", route=check_route, status="200") == 2
    assert moved(after, "verify_http_requests_total", method="POST", route=check_route, status="422") == 1
    assert moved(after, "verify_http_requests_total", method="GET", route="<unmatched>", status="404") == 1
    assert moved(after, "verify_http_request_duration_seconds_count", method="POST", route=check_route) == 3
    assert (
        moved(after, "verify_http_requests_total", method="POST", route="/webhooks/d7/<token>/report", status="404")
        == 1
    )
    assert after[("verify_build_info", frozenset({("version", server_version(server))}))] == 1
    # Nothing that identifies a person or a request is a label: no phone, no verification id, no path token.
    text = requests.get(server.url("/metrics"), headers={"Authorization": f"Bearer {METRICS_TOKEN}"}, timeout=10).text
    for secret in ("79990010001", first, british, D7_TOKEN, SMSC_SECRET, METRICS_TOKEN):
        assert secret not in text


def server_version(server: Server) -> str:
    version: str = requests.get(server.url("/healthz"), timeout=10).json()["version"]
    return version


# In process: the counters a short gunicorn run does not reach.


def counted(client: FlaskClient, name: str, **labels: str) -> float:
    metrics: Metrics = client.application.extensions["verify.metrics"][0]
    return metrics.registry.get_sample_value(name, labels) or 0.0


def test_captchas_are_counted(redis_url: str, clock: MovableClock) -> None:
    settings = replace(make_settings(redis_url), captcha_mode="always")
    client = create_app(settings, clock=clock, background=False).test_client()
    challenge = start(client).get_json()["captcha"]
    assert start(client, captcha={"id": challenge["id"], "answer": "wrong"}).status_code == 428
    challenge = start(client).get_json()["captcha"]
    answer = client.get(f"/sandbox/captcha/{challenge['id']}").get_json()["answer"]
    assert start(client, captcha={"id": challenge["id"], "answer": answer}).status_code == 201
    # The first challenge, the one after the wrong answer, the second.
    assert counted(client, "verify_captcha_challenges_total", **DEFAULT) == 3
    assert counted(client, "verify_captcha_answers_total", **DEFAULT, result="wrong") == 1
    assert counted(client, "verify_captcha_answers_total", **DEFAULT, result="solved") == 1


def test_the_pumping_guard_state_is_a_gauge(redis_url: str, clock: MovableClock) -> None:
    settings = replace(
        make_settings(redis_url),
        captcha_mode="adaptive",
        pumping_min_starts=2,
        pumping_threshold=0.5,
        captcha_after=1000,
        limit_ip="1000/hour",
        limit_prefix="1000/hour",
    )
    client = create_app(settings, clock=clock, background=False).test_client()
    assert start(client, "+79990040001").status_code == 201
    assert counted(client, "verify_pumping_guard_active", **DEFAULT, country="RU") == 0
    assert start(client, "+79990040002").status_code == 201
    clock.advance(6)  # the worker reads the statistics again (PUMP_REFRESH_MS)
    assert start(client, "+79990040003").status_code == 428  # 2 of 2 starts unapproved: every start needs a captcha
    assert counted(client, "verify_pumping_guard_active", **DEFAULT, country="RU") == 1


def test_redis_errors_are_counted(tmp_path: Path, clock: MovableClock) -> None:
    redis = EmbeddedRedis(tmp_path)
    url = redis.start()
    try:
        client = create_app(make_settings(url), clock=clock, background=False).test_client()
        assert start(client).status_code == 201
    finally:
        redis.stop()
    assert start(client, "+79990050001").status_code == 503
    assert counted(client, "verify_redis_errors_total", kind="connection") == 1
    scraped = client.get("/metrics")  # without Redis: no breakers, and no error
    assert scraped.status_code == 200 and b"verify_breaker_open" not in scraped.data


def test_expiries_and_event_deliveries_are_counted(redis_url: str, clock: MovableClock) -> None:
    receiver = Receiver(fail_first=1)
    with serving(receiver) as url:
        # A key prefix of its own: this module's gunicorn, on the same Redis, sweeps expiries in the background
        # too, and would take this test's watch (and, without a receiver, count it but queue no event).
        settings = replace(
            make_settings(redis_url),
            redis_prefix="expiries:",
            challenge_ttl=1,
            events_url=url,
            events_secrets=("events-secret-0123",),
        )
        client = create_app(settings, clock=clock, background=False).test_client()
        approved = start(client).get_json()["id"]
        check(client, approved, last_code(client))
        expiring = start(client, "+79990060001").get_json()["id"]  # left to expire
        service = client.application.extensions["verify"]
        events = service.events
        events.sweep()
        assert events.deliver() == 0  # the receiver fails once: retried later
        assert counted(client, "verify_events_total", **DEFAULT, type="verification.approved", result="retried") == 1
        deadline = time.monotonic() + 10
        while service.store.run(Batch.get, expiring) is not None:  # the record's real Redis TTL runs out
            assert time.monotonic() < deadline, "Redis never dropped the record"
            time.sleep(0.1)
        clock.advance(60)
        events.sweep()
        assert events.deliver() == 2
    sms_ru = {**DEFAULT, "channel": "sms", "provider": "sandbox", "country": "RU"}
    assert counted(client, "verify_verifications_expired_total", **sms_ru) == 1
    assert counted(client, "verify_events_total", **DEFAULT, type="verification.approved", result="delivered") == 1
    assert counted(client, "verify_events_total", **DEFAULT, type="verification.expired", result="delivered") == 1


def test_a_write_no_replica_confirmed_is_a_redis_error_of_its_own_kind() -> None:
    metrics = Metrics(CollectorRegistry())
    metrics.redis_error(ReplicasUnconfirmed(1, 0))  # the store tells of every WAIT that came back short
    metrics.redis_error(redis.TimeoutError("Timeout reading from socket"))
    assert metrics.registry.get_sample_value("verify_redis_errors_total", {"kind": "wait_timeout"}) == 1
    assert metrics.registry.get_sample_value("verify_redis_errors_total", {"kind": "timeout"}) == 1


def test_a_sentinel_master_without_a_replica_is_said_on_readyz_and_in_the_metrics(
    tmp_path: Path, clock: MovableClock
) -> None:
    sentinel = EmbeddedSentinel(tmp_path / "sentinel")
    sentinel.start()
    try:
        settings = make_settings(sentinel.url)
        degraded = create_app(settings, clock=clock, background=False).test_client()
        strict = create_app(replace(settings, redis_min_replicas=1), clock=clock, background=False).test_client()
        deadline = time.monotonic() + 10
        while degraded.get("/readyz").get_json() != {"status": "ok"}:  # until the replica has synced
            assert time.monotonic() < deadline, "the replica never synced"
            time.sleep(0.05)
        assert start(degraded).status_code == 201  # confirmed by the replica
        assert parse(degraded.get("/metrics").text)[("verify_redis_replicas", frozenset())] == 1
        sentinel.kill(sentinel.replica)
        while degraded.get("/readyz").get_json() == {"status": "ok"}:
            assert time.monotonic() < deadline, "the replica's crash unseen"
            time.sleep(0.05)
        ready = degraded.get("/readyz")
        assert (ready.status_code, ready.get_json()) == (
            200,
            {"status": "degraded", "redis": "no replica confirms writes"},
        )
        assert start(degraded, "+79990060001").status_code == 201  # unconfirmed
        scraped = parse(degraded.get("/metrics").text)
        assert (
            scraped[("verify_redis_degraded", frozenset())] == 1
            and scraped[("verify_redis_replicas", frozenset())] == 0
        )
        refused = strict.get("/readyz")
        assert refused.status_code == 503 and "VERIFY_REDIS_MIN_REPLICAS" in refused.get_json()["detail"]
        failed = start(strict, "+79990060002")
        assert failed.status_code == 503 and "it may have been applied" in failed.get_json()["detail"]
        sentinel.revive(sentinel.replica)
        while degraded.get("/readyz").get_json() != {"status": "ok"}:
            assert time.monotonic() < deadline + 30, "the replica's return unseen"
            time.sleep(0.1)
        assert strict.get("/readyz").status_code == 200
        assert parse(degraded.get("/metrics").text)[("verify_redis_degraded", frozenset())] == 0
    finally:
        sentinel.stop()


def test_label_children_are_bound_once_and_every_count_lands(
    client: FlaskClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Issue 19: a request's metrics take their children from the Metrics' own table after the first time, so
    # prometheus_client's labels() (its checks, conversions and lock) runs once per label set, not per request.
    metrics: Metrics = client.application.extensions["verify.metrics"][0]
    bound: list[tuple[str, ...]] = []
    names = {"requests": metrics.http_requests, "latency": metrics.http_latency, "started": metrics.started.family}
    for name, metric in names.items():

        def spy(*values: str, _name: str = name, _labels: Any = metric.labels) -> Any:
            bound.append((_name, *values))
            return _labels(*values)

        monkeypatch.setattr(metric, "labels", spy)
    for _ in range(3):
        assert client.get("/healthz").status_code == 200
    assert client.get("/nowhere").status_code == 404
    assert start(client, "+79990070001").status_code == start(client, "+79990070002").status_code == 201
    assert bound == [
        ("requests", "GET", "/healthz", "200"),
        ("latency", "GET", "/healthz"),
        ("requests", "GET", "<unmatched>", "404"),
        ("latency", "GET", "<unmatched>"),
        ("started", "default", "sms", "sandbox", "RU"),
        ("requests", "POST", "/v1/verifications", "201"),
        ("latency", "POST", "/v1/verifications"),
    ]
    assert counted(client, "verify_http_requests_total", method="GET", route="/healthz", status="200") == 3
    assert counted(client, "verify_http_request_duration_seconds_count", method="GET", route="/healthz") == 3
    assert counted(client, "verify_http_requests_total", method="POST", route="/v1/verifications", status="201") == 2
    started = {**DEFAULT, "channel": "sms", "provider": "sandbox", "country": "RU"}
    assert counted(client, "verify_verifications_started_total", **started) == 2
    monkeypatch.undo()
    # The child kept is the one labels() gives: every count goes where it would have gone.
    kept = metrics.started.labels("sms", "sandbox", "RU")
    assert kept is metrics.started.labels("sms", "sandbox", "RU") is metrics.started.family.labels(*started.values())


# Tenants: each counted under its own label.

SHOP_KEY = "shop-api-key-0123456789"
BANK_KEY = "bank-api-key-0123456789"
TENANTS = f"""
[tenants.shop]
brand = "Shop"
api_keys = ["{hash_key(SHOP_KEY)}"]

[tenants.bank]
brand = "Bank"
api_keys = ["{hash_key(BANK_KEY)}"]
"""


def test_each_tenant_counts_under_its_own_label(redis_url: str, clock: MovableClock, tmp_path: Path) -> None:
    tenants = tmp_path / "tenants.toml"
    tenants.write_text(TENANTS)
    settings = Settings.from_env(
        {
            "VERIFY_API_KEYS": API_KEY,
            "VERIFY_SECRET_KEY": SECRET_KEY,
            "VERIFY_REDIS_URL": redis_url,
            "VERIFY_SANDBOX": "1",
            "VERIFY_CAPTCHA_MODE": "off",
            "VERIFY_TENANTS_FILE": str(tenants),
        }
    )
    client = create_app(settings, clock=clock, background=False).test_client()
    keys = {"shop": SHOP_KEY, "bank": BANK_KEY, "default": API_KEY}
    # The shop starts two and approves one, the bank starts one and approves it, the implicit tenant starts one.
    for tenant, phone, approve in (
        ("shop", "+79990080001", True),
        ("shop", "+79990080002", False),
        ("bank", "+79990080003", True),
        ("default", "+79990080004", False),
    ):
        headers = {"Authorization": f"Bearer {keys[tenant]}"}
        started = start(client, phone, headers=headers)
        assert started.status_code == 201, started.get_json()
        if approve:
            path = f"/v1/verifications/{started.get_json()['id']}/check"
            checked = client.post(path, json={"code": last_code(client, phone)}, headers=headers)
            assert checked.get_json()["status"] == "approved"
    for tenant, starts, approvals in (("shop", 2, 1), ("bank", 1, 1), ("default", 1, 0)):
        sms_ru = {"tenant": tenant, "channel": "sms", "provider": "sandbox", "country": "RU"}
        assert counted(client, "verify_verifications_started_total", **sms_ru) == starts, tenant
        assert counted(client, "verify_verifications_approved_total", **sms_ru) == approvals, tenant
        sms = {"tenant": tenant, "provider": "sandbox", "encoding": "GSM-7"}
        assert counted(client, "verify_sms_messages_total", **sms) == starts, tenant
    # GET /metrics: the tenant label's values are the file's tenants and the implicit one, on a tenant's metrics
    # only; what belongs to the deployment (here the HTTP requests) carries none.
    scraped = client.get("/metrics")
    assert scraped.status_code == 200
    seen: set[str] = set()
    for family in text_string_to_metric_families(scraped.get_data(as_text=True)):
        for sample in family.samples:
            # (in process, a counter's ``_created`` samples come as a family of their own)
            tenanted = family.name.removesuffix("_created") in TENANTED
            assert ("tenant" in sample.labels) == tenanted, (family.name, sample.labels)
            if "tenant" in sample.labels:
                seen.add(sample.labels["tenant"])
    assert seen == {"default", "shop", "bank"}
    assert counted(client, "verify_http_requests_total", method="POST", route="/v1/verifications", status="201") == 4


def test_a_tenants_view_shares_the_metrics_and_binds_its_children_once() -> None:
    metrics = Metrics(CollectorRegistry())
    shop = metrics.for_tenant("shop")
    assert metrics.for_tenant("shop") is shop and metrics.for_tenant("default") is metrics
    assert shop.tenant == "shop" and shop.registry is metrics.registry and shop.webhooks is metrics.webhooks
    assert shop.started.family is metrics.started.family
    labels = {"tenant": "shop", "channel": "sms", "provider": "sandbox", "country": "RU"}
    child = shop.started.labels("sms", "sandbox", "RU")
    assert child is shop.started.labels("sms", "sandbox", "RU") is shop.started.family.labels(*labels.values())
    child.inc()
    shop.captcha_challenges.labels().inc()
    assert metrics.registry.get_sample_value("verify_verifications_started_total", labels) == 1
    assert metrics.registry.get_sample_value("verify_captcha_challenges_total", {"tenant": "shop"}) == 1
    assert metrics.registry.get_sample_value("verify_captcha_challenges_total", {"tenant": "default"}) is None
