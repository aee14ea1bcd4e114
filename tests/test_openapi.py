"""The public contract: openapi.yaml against the app.

- the document is valid OpenAPI 3.0.3 and is what GET /openapi.yaml serves;
- its operations are exactly the app's routes (sandbox ones only in sandbox mode), bearer auth exactly on /v1,
  and its problem schemas are exactly the domain errors of ``verify.errors``;
- the gateways' webhooks answer plain text, and their scenarios run against an app with every gateway configured
  (the gateways themselves are never called);
- every documented response (status and problem type) is produced by a scenario against a real Redis and
  conforms to the document, and nothing is documented that no scenario produces; likewise every `limit` a
  `rate-limited` answer may name, per operation; and `Retry-After` says what `retry_after` says;
- schemathesis fuzzes every operation against a sandbox app over a real Redis: no 5xx, and every response
  conforms (status, content type, headers, body), once with the default abuse protection (so the fuzzer, one
  client IP, soon meets 429) and once with none (so every request reaches its handler); and the webhooks again
  with every gateway configured.
"""

from __future__ import annotations

import base64
import json
import re
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal, get_args
from wsgiref.types import StartResponse, WSGIEnvironment

import pytest
import redis
import schemathesis
import yaml
from flask import Flask
from flask.testing import FlaskClient
from openapi_spec_validator import validate
from werkzeug.test import TestResponse
from werkzeug.wrappers import Request, Response

from tests.conftest import API_KEY, AUTH, PHONE, SECRET_KEY, MovableClock, make_settings, serving
from tests.providers import d7_emulator, hook_emulator, smsc_emulator, telegram_emulator, zoomconnect_emulator
from verify import MAX_BODY_BYTES, create_app, errors
from verify.app import StoreOutbox
from verify.captcha import PUMP_REFRESH_MS
from verify.config import Settings
from verify.embedded import EmbeddedRedis, free_port
from verify.providers.base import CallNumber, InvalidRecipient, ProviderError, Sent, SmsMessage
from verify.providers.d7 import D7Settings
from verify.providers.hook import HookSettings
from verify.providers.sandbox import SandboxProvider
from verify.providers.smsc import SmscSettings
from verify.providers.telegram import TelegramSettings
from verify.providers.zoomconnect import ZoomConnectSettings
from verify.quotas import LimitName
from verify.service import Service
from verify.store import Batch
from verify.tenants import hash_key
from verify.web import problems

SPEC_PATH = Path(__file__).resolve().parent.parent / "openapi.yaml"
SPEC: dict[str, Any] = yaml.safe_load(SPEC_PATH.read_text(encoding="utf-8"))
HTTP_METHODS = ("get", "put", "post", "delete", "patch", "options", "head", "trace")
# Successes that are files, not JSON: path -> media type.
SERVED_FILES = {"/widget.js": "text/javascript", "/demo": "text/html", "/favicon.ico": "image/x-icon"}
# Flask's name for a path variable -> the spec's.
PATH_PARAMS = {"verification_id": "id"}
OTHER_PHONE = "+79991234500"
UNKNOWN_ID = "0" * 28
UNKNOWN_CAPTCHA = "0" * 24
# Every abuse limit, by the name a `rate-limited` problem gives it (its setting is `limit_<name>`).
LIMITS = tuple(name for name in get_args(LimitName) if name != "captcha_ip")  # the captcha's counter never refuses
SETTING_OF = {"deployment": "global"}  # the limits whose setting has another name (VERIFY_LIMIT_GLOBAL)
RATE_LIMITED = errors.RateLimited.slug
# The gateways of the webhook scenarios: only their settings matter, as webhooks never call a gateway.
SMSC_SECRET, ZOOM_SECRET, D7_TOKEN = "smsc-hook-secret", "zoom-secret", "hook-token"
SMSC = SmscSettings(url="http://127.0.0.1:9/", apikey="k", secrets=(SMSC_SECRET,))
ZOOMCONNECT = ZoomConnectSettings(url="http://127.0.0.1:9/", email="e@example.com", token="t", secrets=(ZOOM_SECRET,))
D7 = D7Settings(api="legacy", url="http://127.0.0.1:9/", username="u", password="p", webhook_tokens=(D7_TOKEN,))
# Telegram's reports verify with any of its tokens: the new one (which would send) and the old one (rotation).
TELEGRAM_TOKEN, TELEGRAM_OLD_TOKEN = telegram_emulator.TOKEN, "654321:old-gateway-token"
TELEGRAM = TelegramSettings(tokens=(TELEGRAM_TOKEN, TELEGRAM_OLD_TOKEN), url="http://127.0.0.1:9/")
# The hook's reports verify with any key of VERIFY_HOOK_SECRET: the new one (which would sign) and the old one.
HOOK_SECRET, HOOK_OLD_SECRET = hook_emulator.SECRET, "hook-secret-older-456789"
HOOK = HookSettings(url="http://127.0.0.1:9/hook", secrets=(HOOK_SECRET, HOOK_OLD_SECRET))
# Every gateway with webhooks, configured.
GATEWAY_SETTINGS: dict[str, Any] = {
    "smsc": SMSC,
    "zoomconnect": ZOOMCONNECT,
    "d7": D7,
    "telegram": TELEGRAM,
    "hook": HOOK,
}
# Path parameter values that reach the handler (with the gateways configured); others get UNKNOWN_ID.
PATH_EXAMPLES = {"kind": "reply", "token": D7_TOKEN}
# What "conforms to the document" means for one response.
CONFORMANCE = [
    schemathesis.checks.status_code_conformance,
    schemathesis.checks.content_type_conformance,
    schemathesis.checks.response_headers_conformance,
    schemathesis.checks.response_schema_conformance,
]


class AppSlot:
    """A WSGI app that forwards to the app a fixture puts in ``target``.

    ``SCHEMA.parametrize()`` needs the schema, and so its app, at import time, but the app needs the
    session's Redis, which exists only once fixtures run. (``schemathesis.pytest.from_fixture`` would solve
    this, but schemathesis 4.32 breaks on pytest 9: ``'Function' object has no attribute '_nodeid'``.)
    """

    def __init__(self) -> None:
        self.target: Flask | None = None

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        assert self.target is not None, "the fuzz_app fixture installs the app"
        return self.target(environ, start_response)


@schemathesis.deserializer("text/plain", "text/javascript", "text/html")
def plain_text(ctx: schemathesis.DeserializationContext, response: schemathesis.Response) -> str:
    """The webhooks' acknowledgements, the widget's script and its demo page: without a deserializer, schemathesis
    checks no text body at all."""
    return response.content.decode(response.encoding or "utf-8")


FUZZ_APP = AppSlot()
SCHEMA = schemathesis.openapi.from_path(SPEC_PATH)
SCHEMA.app = FUZZ_APP
# Bounded and reproducible: ~25 examples per operation and phase, fixed seed, no example database.
SCHEMA.config.generation.update(max_examples=25, deterministic=True, database="none")
SCHEMA.config.seed = 20261122


# reading the spec


def spec_operations(tag: str | None = None) -> set[tuple[str, str]]:
    """``(METHOD, /path/{param})`` for every operation in the spec, or those tagged ``tag``."""
    return {
        (method.upper(), path)
        for path, item in SPEC["paths"].items()
        for method, operation in item.items()
        if method in HTTP_METHODS and (tag is None or tag in operation.get("tags", []))
    }


def resolve(node: Any) -> Any:
    """Follow local ``$ref``s."""
    while isinstance(node, dict) and "$ref" in node:
        target: Any = SPEC
        for part in node["$ref"].removeprefix("#/").split("/"):
            target = target[part]
        node = target
    return node


def problem_types(node: Any) -> set[str]:
    """The problem ``type`` enums a response schema allows (through ``$ref``, ``oneOf``, ``allOf``)."""
    if node is None:
        return set()
    node = resolve(node)
    found = set(node.get("properties", {}).get("type", {}).get("enum", []))
    for key in ("oneOf", "allOf", "anyOf"):
        for sub in node.get(key, []):
            found |= problem_types(sub)
    return {t for t in found if t.startswith(problems.TYPE_BASE)}


def documented_responses() -> set[tuple[str, int, str | None]]:
    """``(operation, status, problem slug)``; the slug is ``None`` for success and untyped problems."""
    documented: set[tuple[str, int, str | None]] = set()
    for method, path in spec_operations():
        for status, response in SPEC["paths"][path][method.lower()]["responses"].items():
            content = resolve(response).get("content", {})
            problem = content.get("application/problem+json", {}).get("schema")
            slugs: set[str | None] = {t.removeprefix(problems.TYPE_BASE) for t in problem_types(problem)}
            documented |= {(f"{method} {path}", int(status), slug) for slug in slugs or {None}}
    return documented


def path_parameters(template: str, path: str) -> dict[str, str] | None:
    """The parameters of ``path`` if it matches ``template`` (``/v1/verifications/{id}``), else ``None``."""
    pattern = re.sub(r"\\\{([^}]+)\\\}", r"(?P<\1>[^/]+)", re.escape(template))
    match = re.fullmatch(pattern, path)
    return match.groupdict() if match else None


def flattened(node: Any) -> tuple[dict[str, Any], Any]:
    """The properties and ``items`` of a schema, merged over ``allOf``/``oneOf``/``anyOf``."""
    node = resolve(node)
    properties = dict(node.get("properties", {}))
    items = node.get("items")
    for key in ("allOf", "oneOf", "anyOf"):
        for sub in node.get(key, []):
            sub_properties, sub_items = flattened(sub)
            properties |= sub_properties
            items = items or sub_items
    return properties, items


def undocumented_members(value: Any, node: Any, where: str = "$") -> list[str]:
    """Object members in ``value`` that the schema ``node`` does not name: every field must be documented."""
    properties, items = flattened(node)
    if isinstance(value, dict):
        return [
            found
            for name, member in value.items()
            for found in (
                [f"{where}.{name}"]
                if name not in properties
                else undocumented_members(member, properties[name], f"{where}.{name}")
            )
        ]
    if isinstance(value, list) and items is not None:
        return [
            found for i, member in enumerate(value) for found in undocumented_members(member, items, f"{where}[{i}]")
        ]
    return []


def response_schema(method: str, path: str, status: int, media_type: str | None) -> Any:
    response = resolve(SPEC["paths"][path][method.lower()]["responses"][str(status)])
    return response["content"][media_type]["schema"]


def problem_schema(node: Any, slug: str) -> Any:
    """The schema of problem type ``slug`` in a response schema: itself, or its ``oneOf`` branch."""
    node = resolve(node)
    branches = [sub for sub in node.get("oneOf", [node]) if problem_types(sub) == {problems.TYPE_BASE + slug}]
    assert len(branches) == 1, (slug, node)
    return branches[0]


def member_enum(node: Any, member: str) -> set[Any] | None:
    """The values a schema allows for its ``member``: the enums along its ``allOf`` chain, intersected."""
    node = resolve(node)
    enum = node.get("properties", {}).get(member, {}).get("enum")
    allowed = set(enum) if enum is not None else None
    for sub in node.get("allOf", []):
        sub_allowed = member_enum(sub, member)
        if sub_allowed is not None:
            allowed = sub_allowed if allowed is None else allowed & sub_allowed
    return allowed


def documented_limits() -> dict[str, set[Any] | None]:
    """For each operation that may answer ``rate-limited``: the ``limit`` names its schema allows."""
    limits = {}
    for operation, status, slug in documented_responses():
        if slug == RATE_LIMITED:
            method, path = operation.split(" ", 1)
            schema = response_schema(method, path, status, problems.PROBLEM_JSON)
            limits[operation] = member_enum(problem_schema(schema, slug), "limit")
    return limits


def assert_retry_after_matches(body: Any, header: str | None) -> None:
    """A problem's ``retry_after`` is always sent as the ``Retry-After`` header too, with the same value."""
    if isinstance(body, dict) and "retry_after" in body:
        assert header == str(body["retry_after"]), (header, body)


# the document


def test_spec_is_valid_openapi_3_0_3() -> None:
    assert SPEC["openapi"] == "3.0.3"
    validate(SPEC)


def test_app_serves_the_spec(client: FlaskClient) -> None:
    response = client.get("/openapi.yaml")
    assert response.status_code == 200
    assert response.mimetype == "application/yaml"
    assert response.get_data() == SPEC_PATH.read_bytes()


def test_errors_are_problem_json_successes_json_and_webhook_acks_text() -> None:
    for method, path in spec_operations():
        for status, response in SPEC["paths"][path][method.lower()]["responses"].items():
            if int(status) == 304:  # /widget.js or a language of it revalidated: no body
                assert "content" not in resolve(response), (method, path, status)
                continue
            media_types = set(resolve(response)["content"])
            if int(status) >= 400:
                assert media_types == {"application/problem+json"}, (method, path, status)
            elif path.startswith("/webhooks/") or path == "/metrics":  # what gateways and Prometheus expect
                assert media_types == {"text/plain"}, (method, path, status)
            elif path in SERVED_FILES:  # the widget's script and its demo page
                assert media_types == {SERVED_FILES[path]}, (method, path, status)
            elif path != "/openapi.yaml":
                assert media_types == {"application/json"}, (method, path, status)


# operations <-> routes


def app_operations(app: Flask) -> set[tuple[str, str]]:
    """``(METHOD, /path/{param})`` for every route of ``app``, HEAD and OPTIONS aside."""
    operations = set()
    for rule in app.url_map.iter_rules():
        if rule.endpoint == "static":
            continue
        path = re.sub(r"<(?:[^<>:]+:)?([^<>]+)>", lambda m: "{" + PATH_PARAMS.get(m[1], m[1]) + "}", rule.rule)
        operations |= {(method, path) for method in (rule.methods or set()) - {"HEAD", "OPTIONS"}}
    return operations


def test_every_route_is_documented(app: Flask) -> None:
    assert app_operations(app) - spec_operations() == set()


def test_every_documented_operation_is_a_route(app: Flask) -> None:
    assert spec_operations() - app_operations(app) == set()


def test_sandbox_operations_exist_only_in_sandbox_mode(redis_url: str) -> None:
    sandbox = spec_operations("sandbox")
    assert sandbox
    assert {path for _, path in sandbox} == {path for _, path in spec_operations() if path.startswith("/sandbox/")}
    plain = create_app(make_settings(redis_url, sandbox=False), background=False)
    assert app_operations(plain) == spec_operations() - sandbox


def test_webhook_operations_are_exactly_the_webhooks_paths() -> None:
    webhooks = spec_operations("webhooks")
    assert webhooks
    assert {path for _, path in webhooks} == {path for _, path in spec_operations() if path.startswith("/webhooks/")}


# What a site key may do (verify/web/api.py SITE_KEY_ENDPOINTS); tests/test_site_keys.py checks the app keeps to it.
SITE_KEY_OPERATIONS = {"startVerification", "getVerification", "checkVerification", "resendVerification"}


@pytest.mark.parametrize("gateways", [False, True], ids=["sandbox", "gateways"])
def test_bearer_auth_is_documented_exactly_where_the_app_requires_it(env: Env, gateways: bool) -> None:
    # Webhooks answer 404 in the sandbox app; with the gateways configured they must not ask for a key either.
    client = env.gateways().client if gateways else env.client
    assert "security" not in SPEC, "security is declared per operation"
    for method, path in sorted(spec_operations()):
        operation = SPEC["paths"][path][method.lower()]
        url = re.sub(r"\{([^}]+)\}", lambda m: PATH_EXAMPLES.get(m[1], UNKNOWN_ID), path)
        response = client.open(url, method=method, json={}, query_string={"phone": PHONE})
        if path == "/metrics":  # open unless VERIFY_METRICS_TOKEN is set (tests/test_metrics.py sets one)
            assert response.status_code == 200
            assert operation["security"] == [{}, {"metricsAuth": []}] and "401" in operation["responses"]
            continue
        required = response.status_code == 401
        assert required == path.startswith("/v1/"), (method, path, response.status_code)
        site_key = operation["operationId"] in SITE_KEY_OPERATIONS
        expected: list[dict[str, list[str]]] = [{"bearerAuth": []}]
        if site_key:
            expected.append({"siteKey": []})
        assert operation.get("security", []) == (expected if required else []), (method, path)
        if required:  # a site key may be refused (403) on every /v1 operation
            assert "403" in operation["responses"], (method, path)
        assert ("401" in operation["responses"]) == required, (method, path)
        if required:
            assert response.headers["WWW-Authenticate"] == 'Bearer realm="verify"'
            assert (
                client.open(
                    url, method=method, json={}, headers={"Authorization": "Bearer wrong-key-0123456789"}
                ).status_code
                == 401
            )


def error_classes(cls: type[errors.VerifyError] = errors.VerifyError) -> Iterator[type[errors.VerifyError]]:
    """Every error a client can get: the subclasses of ``cls``, less the private bases that share context."""
    for sub in cls.__subclasses__():
        if not sub.__name__.startswith("_"):
            yield sub
        yield from error_classes(sub)


def test_problem_schemas_are_exactly_the_domain_errors() -> None:
    schemas = SPEC["components"]["schemas"]
    documented = {name for name in schemas if name.endswith("Problem") and name != "Problem"}
    assert documented == {cls.__name__ + "Problem" for cls in error_classes()}
    for cls in error_classes():
        base, specific = schemas[cls.__name__ + "Problem"]["allOf"]
        assert base == {"$ref": "#/components/schemas/Problem"}
        assert specific["properties"]["type"]["enum"] == [problems.TYPE_BASE + cls.slug], cls
        assert specific["properties"]["status"]["enum"] == [cls.status], cls


# every documented response happens, and conforms


Run = Callable[["Env"], TestResponse]


@dataclass(frozen=True)
class Scenario:
    """One way to make ``operation`` answer ``status`` (with problem type ``problem``, and ``members`` in its body)."""

    operation: str  # "POST /v1/verifications/{id}/check"
    status: int
    problem: str | None
    run: Run
    members: dict[str, Any] = field(default_factory=dict)  # {"limit": "ip"}

    def __str__(self) -> str:
        members = " ".join(f"{name}={value}" for name, value in self.members.items())
        return f"{self.operation} {self.status} {self.problem or ''} {members}".strip()


SCENARIOS: list[Scenario] = []


def scenario(operation: str, status: int, problem: str | None = None, **members: Any) -> Callable[[Run], Run]:
    def register(run: Run) -> Run:
        SCENARIOS.append(Scenario(operation, status, problem, run, members))
        return run

    return register


class Failing(SandboxProvider):
    """A gateway that fails every send with ``error``."""

    name = "failing"

    def __init__(self, service: Service, error: ProviderError) -> None:
        super().__init__(StoreOutbox(service.store), service.clock)
        self.error = error

    def send_sms(self, message: SmsMessage) -> Sent:
        raise self.error

    def start_call(self, phone: str, verification_id: str) -> CallNumber:
        raise self.error


class Meanwhile(SandboxProvider):
    """The sandbox gateway, but while it sends the first SMS another client makes the request ``meanwhile``."""

    def __init__(self, service: Service, meanwhile: Callable[[], TestResponse]) -> None:
        super().__init__(StoreOutbox(service.store), service.clock)
        self.meanwhile = meanwhile
        self.response: TestResponse | None = None

    def send_sms(self, message: SmsMessage) -> Sent:
        if self.response is None:
            self.response = self.meanwhile()
        return super().send_sms(message)


class TelegramStub(SandboxProvider):
    """The sandbox gateway under Telegram's name: the code is kept for ``Env.code`` as ever, and the message gets a
    Telegram request id that reports can name (the Gateway API itself is never called)."""

    name = "telegram"

    def __init__(self, service: Service) -> None:
        super().__init__(StoreOutbox(service.store), service.clock)

    def send_sms(self, message: SmsMessage) -> Sent:
        super().send_sms(message)
        return Sent(self.name, f"tg-{message.verification_id}")


class HookStub(SandboxProvider):
    """The sandbox gateway under the hook's name: the code is kept for ``Env.code`` as ever, and the message gets the
    id a receiver would answer, which reports can name (no receiver is ever called)."""

    name = "hook"

    def __init__(self, service: Service) -> None:
        super().__init__(StoreOutbox(service.store), service.clock)

    def send_sms(self, message: SmsMessage) -> Sent:
        super().send_sms(message)
        return Sent(self.name, f"rcv-{message.verification_id}")


@dataclass
class Env:
    """A sandbox app over the test Redis, its client and clock, and the steps scenarios are made of."""

    app: Flask
    client: FlaskClient
    clock: MovableClock

    @property
    def service(self) -> Service:
        svc: Service = self.app.extensions["verify"]
        return svc

    def request(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        auth: bool = True,
        data: bytes | None = None,
        headers: dict[str, str] | None = None,
        query: dict[str, str] | None = None,
    ) -> TestResponse:
        all_headers = {**(AUTH if auth else {}), **(headers or {})}
        if data is not None:
            return self.client.open(
                path, method=method, data=data, headers=all_headers, content_type="application/json"
            )
        return self.client.open(path, method=method, json=body, headers=all_headers, query_string=query)

    def start(self, phone: str = PHONE, **fields: Any) -> dict[str, Any]:
        response = self.request("POST", "/v1/verifications", {"phone": phone, **fields})
        assert response.status_code == 201, response.get_json()
        body: dict[str, Any] = response.get_json()
        return body

    def code(self, phone: str = PHONE) -> str:
        messages = self.client.get("/sandbox/messages", query_string={"phone": phone}).get_json()["messages"]
        code: str = messages[0]["code"]
        return code

    def approved(self) -> dict[str, Any]:
        vid = self.start()["id"]
        response = self.request("POST", f"/v1/verifications/{vid}/check", {"code": self.code()})
        assert response.status_code == 200, response.get_json()
        body: dict[str, Any] = response.get_json()
        return body

    def wait_cooldown(self) -> None:
        self.clock.advance(self.service.settings.resend_cooldown)

    def dead(self) -> Env:
        """The same app over a Redis that does not answer."""
        app = create_app(
            replace(self.service.settings, redis_url=f"redis://127.0.0.1:{free_port()}/0"),
            clock=self.clock,
            background=False,
        )
        return Env(app, app.test_client(), self.clock)

    def configured(self, **overrides: Any) -> Env:
        """An app over the same Redis and clock, with ``overrides`` to this one's settings."""
        app = create_app(replace(self.service.settings, **overrides), clock=self.clock, background=False)
        return Env(app, app.test_client(), self.clock)

    def gateways(self, **overrides: Any) -> Env:
        """The same app with SMSC, Zoom Connect, D7, Telegram and the hook configured (and ``overrides``), so their
        webhooks answer.

        SMS and calls still go through the sandbox gateway, so ``code`` works; the real gateways are never called.
        """
        return self.configured(gateway_settings={**GATEWAY_SETTINGS, **overrides})

    def callback(
        self, method: str, path: str, query: str | bytes = "", body: bytes = b"", content_type: str = ""
    ) -> TestResponse:
        """A gateway's request: a raw query string and body, no API key."""
        query_string = query.decode("ascii") if isinstance(query, bytes) else query
        return self.client.open(
            path, method=method, query_string=query_string, data=body, content_type=content_type or None
        )


@pytest.fixture
def env(app: Flask, client: FlaskClient, clock: MovableClock) -> Env:
    return Env(app, client, clock)


V = "/v1/verifications"
T = "/v1/tokens/verify"
TOO_LARGE = b" " * (MAX_BODY_BYTES + 1)


def _vid(env: Env, **fields: Any) -> str:
    vid: str = env.start(**fields)["id"]
    return vid


# service

scenario("GET /healthz", 200)(lambda env: env.client.get("/healthz"))
scenario("GET /readyz", 200)(lambda env: env.client.get("/readyz"))
scenario("GET /readyz", 503, "store-unavailable")(lambda env: env.dead().client.get("/readyz"))
scenario("GET /openapi.yaml", 200)(lambda env: env.client.get("/openapi.yaml"))
scenario("GET /widget.js", 200)(lambda env: env.client.get("/widget.js"))
scenario("GET /widget.js", 304)(
    lambda env: env.client.get("/widget.js", headers={"If-None-Match": env.client.get("/widget.js").headers["ETag"]})
)
scenario("GET /demo", 200)(
    lambda env: env.configured(site_keys=(("pk_demo", ("http://localhost",)),)).client.get("/demo?lang=ru")
)
scenario("GET /demo", 404, "not-found")(lambda env: env.client.get("/demo"))  # no VERIFY_SITE_KEYS
scenario("GET /widget/{lang}.json", 200)(lambda env: env.client.get("/widget/ar.json"))
scenario("GET /widget/{lang}.json", 304)(
    lambda env: env.client.get(
        "/widget/ja.json", headers={"If-None-Match": env.client.get("/widget/ja.json").headers["ETag"]}
    )
)
scenario("GET /widget/{lang}.json", 404, "not-found")(lambda env: env.client.get("/widget/xx.json"))
scenario("GET /favicon.ico", 200)(lambda env: env.client.get("/favicon.ico"))
scenario("GET /metrics", 200)(lambda env: env.client.get("/metrics"))
scenario("GET /metrics", 401, "unauthorized")(
    lambda env: env.configured(metrics_tokens=("metrics-token-0123",)).client.get("/metrics")
)

# start


@scenario("POST /v1/verifications", 201)
def _start_created(env: Env) -> TestResponse:
    response = env.request("POST", V, {"phone": "8 (999) 123-45-67", "country": "ru", "locale": "ru"})
    body = response.get_json()
    assert response.headers["Location"] == f"{V}/{body['id']}"
    assert (body["phone"], body["status"], body["channel"], body["locale"]) == (PHONE, "pending", "sms", "ru")
    assert "Idempotent-Replayed" not in response.headers
    return response


@scenario("POST /v1/verifications", 201)
def _start_call(env: Env) -> TestResponse:
    response = env.request("POST", V, {"phone": PHONE, "channel": "call"})
    assert response.get_json()["call"]["number"] in response.get_json()["call"]["numbers"]
    return response


@scenario("POST /v1/verifications", 201)
def _start_telegram(env: Env) -> TestResponse:
    # In sandbox mode the sandbox gateway serves the channel (VERIFY_TELEGRAM_TOKEN would make it Telegram's).
    response = env.request("POST", V, {"phone": PHONE, "channel": "telegram"})
    body = response.get_json()
    assert (body["channel"], "sms" in body) == ("telegram", False)  # Telegram writes the message: no SMS size
    assert body["delivery"] == {"provider": "sandbox", "status": "sent"}
    return response


scenario("POST /v1/verifications", 400, "invalid-request")(  # the channel is off: no token, no sandbox
    lambda env: env.configured(telegram_providers=()).request("POST", V, {"phone": PHONE, "channel": "telegram"})
)


@scenario("POST /v1/verifications", 200)
def _start_returns_the_pending_one(env: Env) -> TestResponse:
    first = env.start()
    response = env.request("POST", V, {"phone": PHONE})
    assert response.get_json() == first
    assert "Location" not in response.headers
    return response


@scenario("POST /v1/verifications", 200)
def _start_replayed(env: Env) -> TestResponse:
    env.start()
    env.wait_cooldown()
    key = {"Idempotency-Key": "k-200"}
    first = env.request("POST", V, {"phone": PHONE}, headers=key)  # a new code: it sent, so it is kept
    assert first.status_code == 200
    env.wait_cooldown()  # a new start would now send a new code; a replay must not
    response = env.request("POST", V, {"phone": PHONE}, headers=key)
    assert response.headers["Idempotent-Replayed"] == "true"
    assert response.get_json() == first.get_json()
    return response


scenario("POST /v1/verifications", 400, "invalid-request")(lambda env: env.request("POST", V, data=b"[1]"))
scenario("POST /v1/verifications", 400, "invalid-request")(
    lambda env: env.request("POST", V, {"phone": PHONE, "channel": "fax"})
)
scenario("POST /v1/verifications", 400, "invalid-request")(
    lambda env: env.request("POST", V, {"phone": PHONE}, headers={"Idempotency-Key": "k" * 256})
)
scenario("POST /v1/verifications", 400, "invalid-phone")(lambda env: env.request("POST", V, {"phone": "+7 999"}))
scenario("POST /v1/verifications", 401, "unauthorized")(
    lambda env: env.request("POST", V, {"phone": PHONE}, auth=False)
)
scenario("POST /v1/verifications", 413, "request-entity-too-large")(lambda env: env.request("POST", V, data=TOO_LARGE))


@scenario("POST /v1/verifications", 409, "start-in-progress")
def _start_while_the_first_code_is_sent(env: Env) -> TestResponse:
    slow = Meanwhile(env.service, lambda: env.request("POST", V, {"phone": PHONE}))
    env.service.sms_providers = [slow]
    env.start()
    assert slow.response is not None
    return slow.response


@scenario("POST /v1/verifications", 409, "idempotency-in-progress")
def _idempotent_start_while_the_first_runs(env: Env) -> TestResponse:
    key = {"Idempotency-Key": "k-409"}
    slow = Meanwhile(env.service, lambda: env.request("POST", V, {"phone": PHONE}, headers=key))
    env.service.sms_providers = [slow]
    assert env.request("POST", V, {"phone": PHONE}, headers=key).status_code == 201
    assert slow.response is not None
    return slow.response


def _site(env: Env) -> Env:
    """The app with one site key, pk_shop, for https://shop.example."""
    return env.configured(site_keys=(("pk_shop", ("https://shop.example",)),))


SITE = {"X-Verify-Site-Key": "pk_shop", "Origin": "https://shop.example"}
FOREIGN = {"X-Verify-Site-Key": "pk_shop", "Origin": "https://evil.example"}


scenario("POST /v1/verifications", 403, "forbidden")(
    lambda env: _site(env).request("POST", V, {"phone": PHONE}, auth=False, headers=FOREIGN)
)
scenario("GET /v1/verifications/{id}", 403, "forbidden")(
    lambda env: _site(env).request("GET", f"{V}/{_vid(env)}", auth=False, headers=FOREIGN)
)
scenario("POST /v1/verifications/{id}/check", 403, "forbidden")(
    lambda env: _site(env).request("POST", f"{V}/{_vid(env)}/check", {"code": "123456"}, auth=False, headers=FOREIGN)
)
scenario("POST /v1/verifications/{id}/resend", 403, "forbidden")(
    lambda env: _site(env).request("POST", f"{V}/{_vid(env)}/resend", {}, auth=False, headers=FOREIGN)
)
scenario("DELETE /v1/verifications/{id}", 403, "forbidden")(  # a site key may not cancel
    lambda env: _site(env).request("DELETE", f"{V}/{_vid(env)}", auth=False, headers=SITE)
)
scenario("POST /v1/tokens/verify", 403, "forbidden")(
    lambda env: _site(env).request("POST", "/v1/tokens/verify", {"token": "x"}, auth=False, headers=SITE)
)


@scenario("POST /v1/verifications", 422, "idempotency-mismatch")
def _idempotency_key_reused(env: Env) -> TestResponse:
    key = {"Idempotency-Key": "k-422"}
    assert env.request("POST", V, {"phone": PHONE}, headers=key).status_code == 201
    return env.request("POST", V, {"phone": OTHER_PHONE}, headers=key)


@scenario("POST /v1/verifications", 503, "delivery-failed")
def _start_nothing_delivered(env: Env) -> TestResponse:
    working = env.service.sms_providers
    env.service.sms_providers = [Failing(env.service, ProviderError("failing", "gateway down", transient=True))]
    response = env.request("POST", V, {"phone": PHONE})
    env.service.sms_providers = working
    env.start()  # 201: the failed start left nothing behind
    return response


scenario("POST /v1/verifications", 503, "store-unavailable")(
    lambda env: env.dead().request("POST", V, {"phone": PHONE})
)

# start: abuse protection

# A UK VoIP number: VERIFY_DENIED_NUMBER_TYPES refuses VoIP by default.
scenario("POST /v1/verifications", 400, "phone-not-allowed")(
    lambda env: env.request("POST", V, {"phone": "+445612345678"})
)
scenario("POST /v1/verifications", 400, "phone-not-allowed")(
    lambda env: env.configured(allowed_countries=("RU", "KZ")).request("POST", V, {"phone": "+447400123456"})
)


def _challenge(env: Env, phone: str = PHONE) -> dict[str, Any]:
    """The captcha a start of ``phone`` is asked to solve."""
    response = env.request("POST", V, {"phone": phone})
    assert response.status_code == 428, response.get_json()
    challenge: dict[str, Any] = response.get_json()["captcha"]
    return challenge


def _captcha_answer(env: Env, challenge_id: str) -> TestResponse:
    return env.request("GET", f"/sandbox/captcha/{challenge_id}", auth=False)


@scenario("POST /v1/verifications", 428, "captcha-required")
def _start_needs_a_captcha(env: Env) -> TestResponse:
    always = env.configured(captcha_mode="always")
    response = always.request("POST", V, {"phone": PHONE})
    image = response.get_json()["captcha"]["image"]
    assert base64.b64decode(image.removeprefix("data:image/png;base64,")).startswith(b"\x89PNG\r\n\x1a\n")
    assert always.service.store.run(Batch.find, PHONE, "sms") is None  # nothing was started, nothing sent
    return response


@scenario("POST /v1/verifications", 201)
def _start_with_a_solved_captcha(env: Env) -> TestResponse:
    always = env.configured(captcha_mode="always")
    challenge = _challenge(always)["id"]
    answer = _captcha_answer(always, challenge).get_json()["answer"]
    return always.request("POST", V, {"phone": PHONE, "captcha": {"id": challenge, "answer": answer.lower()}})


@scenario("POST /v1/verifications", 428, "captcha-required")
def _start_with_a_wrong_captcha_answer(env: Env) -> TestResponse:
    always = env.configured(captcha_mode="always")
    challenge = _challenge(always)["id"]
    response = always.request("POST", V, {"phone": PHONE, "captcha": {"id": challenge, "answer": "wrong"}})
    assert response.get_json()["captcha"]["id"] != challenge  # a new challenge: the old one is used up
    assert _captcha_answer(always, challenge).status_code == 404
    return response


@scenario("POST /v1/verifications", 428, "captcha-required")
def _start_from_a_busy_ip(env: Env) -> TestResponse:
    adaptive = env.configured(captcha_mode="adaptive", captcha_after=1)
    assert adaptive.request("POST", V, {"phone": PHONE}).status_code == 201
    assert adaptive.request("POST", V, {"phone": PHONE}).status_code == 200  # a reload sends nothing: not asked
    return adaptive.request("POST", V, {"phone": OTHER_PHONE})


@scenario("POST /v1/verifications", 428, "captcha-required")
def _start_to_a_country_under_sms_pumping(env: Env) -> TestResponse:
    adaptive = env.configured(captcha_mode="adaptive", captcha_after=1000, pumping_min_starts=2, pumping_threshold=0.5)
    for phone in ("+79991230001", "+79991230002"):  # SMS starts to RU, none approved
        assert adaptive.request("POST", V, {"phone": phone}).status_code == 201
    env.clock.advance(PUMP_REFRESH_MS / 1000)  # the worker reads the statistics again
    response = adaptive.request("POST", V, {"phone": PHONE})
    assert adaptive.request("POST", V, {"phone": PHONE, "channel": "call"}).status_code == 201  # calls stay open
    return response


def _widget(env: Env, provider: str, siteverify: str = "http://127.0.0.1:9/siteverify") -> Env:
    return env.configured(
        captcha_mode="always", captcha_provider=provider, captcha_secret="captcha-secret", captcha_verify_url=siteverify
    )


@scenario("POST /v1/verifications", 428, "captcha-required")
def _start_needs_a_widget_token(env: Env) -> TestResponse:
    for provider in ("hcaptcha", "recaptcha"):
        assert _challenge(_widget(env, provider)) == {"provider": provider}
    # A token that cannot be checked (siteverify does not answer) fails closed.
    response = _widget(env, "turnstile").request("POST", V, {"phone": PHONE, "captcha": {"token": "good-token"}})
    assert response.get_json()["captcha"] == {"provider": "turnstile"}
    return response


def _siteverify(environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
    """A siteverify endpoint (Turnstile, hCaptcha and reCAPTCHA speak the same form) that accepts one token."""
    form = Request(environ).form
    success = (form.get("secret"), form.get("response"), form.get("remoteip")) == (
        "captcha-secret",
        "good-token",
        "127.0.0.1",
    )
    return Response(json.dumps({"success": success}), mimetype="application/json")(environ, start_response)


@scenario("POST /v1/verifications", 201)
def _start_with_a_widget_token(env: Env) -> TestResponse:
    with serving(_siteverify) as base:
        widget = _widget(env, "turnstile", f"{base}/siteverify")
        assert widget.request("POST", V, {"phone": PHONE, "captcha": {"token": "bad-token"}}).status_code == 428
        return widget.request("POST", V, {"phone": PHONE, "captcha": {"token": "good-token"}})


def _used_up_ip_limit(env: Env) -> Env:
    """An app whose client IP has used up its start and resend budget (VERIFY_LIMIT_IP)."""
    limited = env.configured(limit_ip="1/hour")
    assert limited.request("POST", V, {"phone": PHONE}).status_code == 201
    return limited


scenario("POST /v1/verifications", 429, "rate-limited", limit="ip")(
    lambda env: _used_up_ip_limit(env).request("POST", V, {"phone": OTHER_PHONE})
)


def test_a_request_refused_before_it_sends_takes_no_ip_quota(env: Env) -> None:
    limited = env.configured(limit_ip="1/hour")
    assert limited.request("POST", V, data=b"[1]").status_code == 400
    assert limited.request("POST", f"{V}/{UNKNOWN_ID}/resend").status_code == 404
    assert limited.request("POST", V, {"phone": PHONE}).status_code == 201


@scenario("POST /v1/verifications", 429, "rate-limited", limit="phone")
def _start_over_the_phone_limit(env: Env) -> TestResponse:
    # VERIFY_LIMIT_PHONE's default, 3/10 minutes: a fourth code to one phone is refused.
    for _ in range(3):
        assert env.request("DELETE", f"{V}/{_vid(env)}").status_code == 200
    response = env.request("POST", V, {"phone": "8 (999) 123-45-67", "country": "RU"})  # one quota per number
    assert 0 < response.get_json()["retry_after"] <= 1200  # a sliding window of 10 minutes
    last = env.service.store.run(Batch.find, PHONE, "sms")
    assert last is not None and last.status == "canceled"  # the refused start created nothing
    return response


def _start_over(limit: str, first: str, then: str) -> Run:
    """Two starts whose codes count against the same ``limit``, set to one code an hour."""

    def run(env: Env) -> TestResponse:
        limited = env.configured(**{f"limit_{limit}": "1/hour"})
        assert limited.request("POST", V, {"phone": first}).status_code == 201
        return limited.request("POST", V, {"phone": then})

    return run


scenario("POST /v1/verifications", 429, "rate-limited", limit="prefix")(
    _start_over("prefix", "+79991230001", "+79991239999")
)
scenario("POST /v1/verifications", 429, "rate-limited", limit="country")(
    _start_over("country", "+79991230001", "+79161234567")
)
scenario("POST /v1/verifications", 429, "rate-limited", limit="global")(
    _start_over("global", "+79991230001", "+447400123456")
)


SHOP_KEY = "shop-api-key-0123456789"
SHOP = {"Authorization": f"Bearer {SHOP_KEY}"}


def _tenants(env: Env, cap: str) -> FlaskClient:
    """An app with a tenants file (tenant ``shop``, ``SHOP_KEY``) whose ``VERIFY_LIMIT_GLOBAL`` is ``cap``: the
    deployment's cap over every tenant together."""
    with tempfile.TemporaryDirectory() as directory:
        path = Path(directory) / "tenants.toml"
        path.write_text(f'[tenants.shop]\napi_keys = ["{hash_key(SHOP_KEY)}"]\n')
        settings = Settings.from_env(
            {
                "VERIFY_API_KEYS": API_KEY,
                "VERIFY_SECRET_KEY": SECRET_KEY,
                "VERIFY_REDIS_URL": env.service.settings.redis_url,
                "VERIFY_SANDBOX": "1",
                "VERIFY_CAPTCHA_MODE": "off",
                "VERIFY_LIMIT_GLOBAL": cap,
                "VERIFY_TENANTS_FILE": str(path),
            }
        )
    return create_app(settings, clock=env.clock, background=False).test_client()


@scenario("POST /v1/verifications", 429, "rate-limited", limit="deployment")
def _start_over_the_deployment_cap(env: Env) -> TestResponse:
    # A tenant's code counts against the implicit tenant's start.
    capped = _tenants(env, "1/hour")
    assert capped.post(V, json={"phone": "+79991230001"}, headers=SHOP).status_code == 201
    return capped.post(V, json={"phone": "+447400123456"}, headers=AUTH)


@scenario("POST /v1/verifications/{id}/resend", 429, "rate-limited", limit="deployment")
def _resend_over_the_deployment_cap(env: Env) -> TestResponse:
    capped = _tenants(env, "2/hour")
    assert capped.post(V, json={"phone": "+79991230001"}, headers=SHOP).status_code == 201
    vid = capped.post(V, json={"phone": PHONE}, headers=AUTH).get_json()["id"]
    env.wait_cooldown()
    return capped.post(f"{V}/{vid}/resend", headers=AUTH)


@scenario("POST /v1/verifications", 429, "rate-limited", limit="captcha_challenges")
def _start_past_the_captcha_challenges(env: Env) -> TestResponse:
    limited = env.configured(captcha_mode="always", limit_captcha_challenges="1/hour")
    assert limited.request("POST", V, {"phone": PHONE}).status_code == 428
    return limited.request("POST", V, {"phone": PHONE})


@scenario("POST /v1/verifications", 429, "rate-limited", limit="voice_phone")
def _start_voice_past_the_phones_voice_limit(env: Env) -> TestResponse:
    limited = env.configured(limit_voice_phone="1/hour")
    first = limited.request("POST", V, {"phone": PHONE, "channel": "voice"})
    assert first.status_code == 201
    assert limited.request("DELETE", f"{V}/{first.get_json()['id']}").status_code == 200
    assert limited.request("POST", V, {"phone": PHONE}).status_code == 201  # an SMS is not a voice send
    return limited.request("POST", V, {"phone": PHONE, "channel": "voice"})


@scenario("POST /v1/verifications", 429, "rate-limited", limit="voice_ip")
def _start_voice_past_the_ips_voice_limit(env: Env) -> TestResponse:
    limited = env.configured(limit_voice_ip="1/hour")
    assert limited.request("POST", V, {"phone": "+79991230001", "channel": "voice"}).status_code == 201
    return limited.request("POST", V, {"phone": "+447400123456", "channel": "voice"})


# read, cancel

scenario("GET /v1/verifications/{id}", 200)(lambda env: env.request("GET", f"{V}/{_vid(env)}"))
scenario("GET /v1/verifications/{id}", 401, "unauthorized")(
    lambda env: env.request("GET", f"{V}/{_vid(env)}", auth=False)
)
scenario("GET /v1/verifications/{id}", 404, "not-found")(lambda env: env.request("GET", f"{V}/{UNKNOWN_ID}"))
scenario("GET /v1/verifications/{id}", 404, "not-found")(lambda env: env.request("GET", f"{V}/not-an-id"))
scenario("GET /v1/verifications/{id}", 503, "store-unavailable")(
    lambda env: env.dead().request("GET", f"{V}/{UNKNOWN_ID}")
)


@scenario("GET /v1/verifications/{id}", 200)
def _get_approved(env: Env) -> TestResponse:
    approved = env.approved()
    response = env.request("GET", f"{V}/{approved['id']}")
    body = response.get_json()
    assert body == approved
    assert (body["status"], body["completed_via"]) == ("approved", "code")
    return response


@scenario("GET /v1/verifications/{id}", 200)
def _get_read_on_telegram(env: Env) -> TestResponse:
    gateways, vid, request_id = _telegram_sent(env)
    assert _telegram(gateways, _telegram_report(env, request_id, "read", payload=vid)).status_code == 200
    response = gateways.request("GET", f"{V}/{vid}")
    assert response.get_json()["delivery"] == {"provider": "telegram", "status": "read"}
    return response


@scenario("GET /v1/verifications/{id}", 200)
def _get_revoked_on_telegram(env: Env) -> TestResponse:
    gateways, vid, request_id = _telegram_sent(env)
    assert gateways.request("DELETE", f"{V}/{vid}").status_code == 200
    assert _telegram(gateways, _telegram_report(env, request_id, "revoked", payload=vid)).status_code == 200
    response = gateways.request("GET", f"{V}/{vid}")
    assert response.get_json()["delivery"] == {"provider": "telegram", "status": "revoked"}
    return response


@scenario("DELETE /v1/verifications/{id}", 200)
def _cancel(env: Env) -> TestResponse:
    vid = _vid(env)
    assert env.request("DELETE", f"{V}/{vid}").get_json()["status"] == "canceled"
    return env.request("DELETE", f"{V}/{vid}")  # twice is harmless


scenario("DELETE /v1/verifications/{id}", 401, "unauthorized")(
    lambda env: env.request("DELETE", f"{V}/{_vid(env)}", auth=False)
)
scenario("DELETE /v1/verifications/{id}", 404, "not-found")(lambda env: env.request("DELETE", f"{V}/{UNKNOWN_ID}"))
scenario("DELETE /v1/verifications/{id}", 409, "not-pending")(
    lambda env: env.request("DELETE", f"{V}/{env.approved()['id']}")
)
scenario("DELETE /v1/verifications/{id}", 503, "store-unavailable")(
    lambda env: env.dead().request("DELETE", f"{V}/{UNKNOWN_ID}")
)

# check


@scenario("POST /v1/verifications/{id}/check", 200)
def _check_right_code(env: Env) -> TestResponse:
    vid = _vid(env)
    response = env.request("POST", f"{V}/{vid}/check", {"code": f" {env.code()} "})
    assert response.get_json()["status"] == "approved"
    return response


scenario("POST /v1/verifications/{id}/check", 400, "invalid-request")(
    lambda env: env.request("POST", f"{V}/{_vid(env)}/check", {"code": "12a456"})
)
scenario("POST /v1/verifications/{id}/check", 401, "unauthorized")(
    lambda env: env.request("POST", f"{V}/{_vid(env)}/check", {"code": "123456"}, auth=False)
)
scenario("POST /v1/verifications/{id}/check", 404, "not-found")(
    lambda env: env.request("POST", f"{V}/{UNKNOWN_ID}/check", {"code": "123456"})
)
scenario("POST /v1/verifications/{id}/check", 413, "request-entity-too-large")(
    lambda env: env.request("POST", f"{V}/{UNKNOWN_ID}/check", data=TOO_LARGE)
)
scenario("POST /v1/verifications/{id}/check", 503, "store-unavailable")(
    lambda env: env.dead().request("POST", f"{V}/{UNKNOWN_ID}/check", {"code": "123456"})
)


def _wrong_code(env: Env, vid: str) -> TestResponse:
    code = env.code()
    wrong = f"{(int(code) + 1) % 10 ** len(code):0{len(code)}d}"
    return env.request("POST", f"{V}/{vid}/check", {"code": wrong})


@scenario("POST /v1/verifications/{id}/check", 409, "not-pending")
def _check_canceled(env: Env) -> TestResponse:
    vid = _vid(env)
    env.request("DELETE", f"{V}/{vid}")
    response = env.request("POST", f"{V}/{vid}/check", {"code": env.code()})
    assert response.get_json()["verification_status"] == "canceled"
    return response


scenario("POST /v1/verifications/{id}/check", 409, "wrong-channel")(
    lambda env: env.request("POST", f"{V}/{_vid(env, channel='call')}/check", {"code": "123456"})
)


@scenario("POST /v1/verifications/{id}/check", 422, "invalid-code")
def _check_wrong_code(env: Env) -> TestResponse:
    response = _wrong_code(env, _vid(env))
    assert response.get_json()["attempts_left"] == env.service.settings.max_attempts - 1
    return response


@scenario("POST /v1/verifications/{id}/check", 429, "max-attempts")
def _check_last_attempt(env: Env) -> TestResponse:
    vid = _vid(env)
    for _ in range(env.service.settings.max_attempts - 1):
        assert _wrong_code(env, vid).status_code == 422
    response = _wrong_code(env, vid)
    assert env.request("GET", f"{V}/{vid}").get_json()["status"] == "max_attempts_reached"
    assert env.request("POST", f"{V}/{vid}/check", {"code": env.code()}).status_code == 429
    return response


@scenario("POST /v1/verifications/{id}/check", 429, "rate-limited", limit="check_ip")
def _check_over_the_ip_limit(env: Env) -> TestResponse:
    limited = env.configured(limit_check_ip="1/hour")
    vid = _vid(limited)
    assert _wrong_code(limited, vid).status_code == 422
    response = limited.request("POST", f"{V}/{vid}/check", {"code": limited.code()})
    # Answered before the verification is looked up: guessing ids costs quota too.
    assert limited.request("POST", f"{V}/{UNKNOWN_ID}/check", {"code": "123456"}).get_json()["limit"] == "check_ip"
    assert _get(limited, vid)["status"] == "pending"
    return response


@scenario("POST /v1/verifications/{id}/check", 429, "rate-limited", limit="phone_failures")
def _check_after_too_many_wrong_codes(env: Env) -> TestResponse:
    limited = env.configured(limit_phone_failures="2/day")
    first = _vid(limited)
    assert _wrong_code(limited, first).status_code == 422
    assert limited.request("DELETE", f"{V}/{first}").status_code == 200
    vid = _vid(limited)  # wrong codes count per phone, across its verifications
    assert _wrong_code(limited, vid).status_code == 422
    response = limited.request("POST", f"{V}/{vid}/check", {"code": limited.code()})  # the right code included
    assert 0 < response.get_json()["retry_after"] <= 2 * 86400  # a sliding window of a day
    assert _get(limited, vid)["attempts_left"] == limited.service.settings.max_attempts - 1
    return response


# resend


@scenario("POST /v1/verifications/{id}/resend", 200)
def _resend(env: Env) -> TestResponse:
    started = env.start()
    old = env.code()
    env.wait_cooldown()
    response = env.request("POST", f"{V}/{started['id']}/resend", data=b"")
    assert response.get_json()["sends_left"] == started["sends_left"] - 1
    new = env.code()
    if new != old:  # the old code no longer works
        assert env.request("POST", f"{V}/{started['id']}/check", {"code": old}).status_code == 422
    return response


@scenario("POST /v1/verifications/{id}/resend", 200)
def _resend_switching_to_call(env: Env) -> TestResponse:
    vid = _vid(env)
    env.wait_cooldown()
    response = env.request("POST", f"{V}/{vid}/resend", {"channel": "call"})
    assert response.get_json()["channel"] == "call"
    assert "number" in response.get_json()["call"]
    return response


@scenario("POST /v1/verifications/{id}/resend", 200)
def _resend_switching_to_telegram(env: Env) -> TestResponse:
    vid = _vid(env)
    env.wait_cooldown()
    response = env.request("POST", f"{V}/{vid}/resend", {"channel": "telegram"})
    body = response.get_json()
    assert (body["channel"], "sms" in body) == ("telegram", False)
    assert env.request("POST", f"{V}/{vid}/check", {"code": env.code()}).status_code == 200
    return response


scenario("POST /v1/verifications/{id}/resend", 400, "invalid-request")(
    lambda env: env.request("POST", f"{V}/{_vid(env)}/resend", {"channel": "fax"})
)
scenario("POST /v1/verifications/{id}/resend", 401, "unauthorized")(
    lambda env: env.request("POST", f"{V}/{_vid(env)}/resend", auth=False)
)
scenario("POST /v1/verifications/{id}/resend", 404, "not-found")(
    lambda env: env.request("POST", f"{V}/{UNKNOWN_ID}/resend")
)
scenario("POST /v1/verifications/{id}/resend", 413, "request-entity-too-large")(
    lambda env: env.request("POST", f"{V}/{UNKNOWN_ID}/resend", data=TOO_LARGE)
)
scenario("POST /v1/verifications/{id}/resend", 503, "store-unavailable")(
    lambda env: env.dead().request("POST", f"{V}/{UNKNOWN_ID}/resend")
)


@scenario("POST /v1/verifications/{id}/resend", 400, "invalid-phone")
def _resend_refused_number(env: Env) -> TestResponse:
    vid = _vid(env)
    env.service.sms_providers = [Failing(env.service, InvalidRecipient("failing", "no such subscriber"))]
    env.wait_cooldown()
    return env.request("POST", f"{V}/{vid}/resend")


@scenario("POST /v1/verifications/{id}/resend", 409, "not-pending")
def _resend_canceled(env: Env) -> TestResponse:
    vid = _vid(env)
    env.request("DELETE", f"{V}/{vid}")
    return env.request("POST", f"{V}/{vid}/resend")


@scenario("POST /v1/verifications/{id}/resend", 429, "resend-cooldown")
def _resend_too_early(env: Env) -> TestResponse:
    vid = _vid(env)
    env.clock.advance(10)
    response = env.request("POST", f"{V}/{vid}/resend")
    assert response.headers["Retry-After"] == str(response.get_json()["retry_after"])
    wait = env.service.settings.resend_cooldown - 10
    assert wait <= response.get_json()["retry_after"] <= wait + 1
    return response


@scenario("POST /v1/verifications/{id}/resend", 429, "max-sends")
def _resend_none_left(env: Env) -> TestResponse:
    # VERIFY_MAX_SENDS codes to one phone: more than VERIFY_LIMIT_PHONE allows by default, so it is off here.
    env = env.configured(limit_phone="")
    vid = _vid(env)
    for _ in range(env.service.settings.max_sends - 1):
        env.wait_cooldown()
        assert env.request("POST", f"{V}/{vid}/resend").status_code == 200
    env.wait_cooldown()
    response = env.request("POST", f"{V}/{vid}/resend")
    assert env.request("GET", f"{V}/{vid}").get_json()["sends_left"] == 0
    return response


def _resend_over(limit: str, sends: int = 1, **overrides: str) -> Run:
    """A verification that had ``sends`` codes, and a resend past the cooldown that ``limit`` refuses."""

    def run(env: Env) -> TestResponse:
        limited = env.configured(**overrides)
        vid = _vid(limited)
        for _ in range(sends - 1):
            limited.wait_cooldown()
            assert limited.request("POST", f"{V}/{vid}/resend").status_code == 200
        limited.wait_cooldown()
        before, code = _get(limited, vid), limited.code()
        response = limited.request("POST", f"{V}/{vid}/resend")
        # Refused, it changes nothing: no send used, the code still works.
        assert _get(limited, vid) == before
        assert limited.request("POST", f"{V}/{vid}/check", {"code": code}).status_code == 200
        return response

    return run


scenario("POST /v1/verifications/{id}/resend", 429, "rate-limited", limit="ip")(_resend_over("ip", limit_ip="1/hour"))
# VERIFY_LIMIT_PHONE's default: 3 codes in 10 minutes.
scenario("POST /v1/verifications/{id}/resend", 429, "rate-limited", limit="phone")(_resend_over("phone", sends=3))
scenario("POST /v1/verifications/{id}/resend", 429, "rate-limited", limit="prefix")(
    _resend_over("prefix", limit_prefix="1/hour")
)
scenario("POST /v1/verifications/{id}/resend", 429, "rate-limited", limit="country")(
    _resend_over("country", limit_country="1/hour")
)
scenario("POST /v1/verifications/{id}/resend", 429, "rate-limited", limit="global")(
    _resend_over("global", limit_global="1/hour")
)


@scenario("POST /v1/verifications/{id}/resend", 429, "rate-limited", limit="voice_phone")
def _resend_voice_past_the_phones_voice_limit(env: Env) -> TestResponse:
    limited = env.configured(limit_voice_phone="1/hour")
    vid = limited.request("POST", V, {"phone": PHONE, "channel": "voice"}).get_json()["id"]
    limited.wait_cooldown()
    return limited.request("POST", f"{V}/{vid}/resend")


@scenario("POST /v1/verifications/{id}/resend", 429, "rate-limited", limit="voice_ip")
def _resend_switching_to_voice_past_the_ips_voice_limit(env: Env) -> TestResponse:
    limited = env.configured(limit_voice_ip="1/hour")
    assert limited.request("POST", V, {"phone": "+79991230001", "channel": "voice"}).status_code == 201
    vid = limited.request("POST", V, {"phone": PHONE}).get_json()["id"]
    limited.wait_cooldown()
    return limited.request("POST", f"{V}/{vid}/resend", {"channel": "voice"})


@scenario("POST /v1/verifications/{id}/resend", 503, "delivery-failed")
def _resend_nothing_delivered(env: Env) -> TestResponse:
    vid = _vid(env)
    code = env.code()
    env.service.sms_providers = [Failing(env.service, ProviderError("failing", "gateway down", transient=True))]
    env.wait_cooldown()
    response = env.request("POST", f"{V}/{vid}/resend")
    # The previous code stays valid.
    assert env.request("POST", f"{V}/{vid}/check", {"code": code}).status_code == 200
    return response


# tokens


@scenario("POST /v1/tokens/verify", 200)
def _token_valid(env: Env) -> TestResponse:
    approved = env.approved()
    response = env.request("POST", T, {"token": approved["token"]})
    body = response.get_json()
    assert (body["verification_id"], body["phone"], body["verified_at"]) == (
        approved["id"],
        PHONE,
        approved["verified_at"],
    )
    return response


scenario("POST /v1/tokens/verify", 400, "invalid-request")(lambda env: env.request("POST", T, {"token": 1}))
scenario("POST /v1/tokens/verify", 400, "invalid-token")(lambda env: env.request("POST", T, {"token": "a.b.c"}))
# No Redis needed: a dead store changes nothing.
scenario("POST /v1/tokens/verify", 400, "invalid-token")(lambda env: env.dead().request("POST", T, {"token": "a.b.c"}))
scenario("POST /v1/tokens/verify", 401, "unauthorized")(
    lambda env: env.request("POST", T, {"token": "a.b.c"}, auth=False)
)
scenario("POST /v1/tokens/verify", 413, "request-entity-too-large")(lambda env: env.request("POST", T, data=TOO_LARGE))


@scenario("POST /v1/tokens/verify", 410, "token-expired")
def _token_expired(env: Env) -> TestResponse:
    token = env.approved()["token"]
    env.clock.advance(env.service.settings.token_ttl + 1)
    return env.request("POST", T, {"token": token})


# sandbox


@scenario("GET /sandbox/messages", 200)
def _messages(env: Env) -> TestResponse:
    env.start()
    response = env.request("GET", "/sandbox/messages", auth=False, query={"phone": PHONE})
    assert [m["to"] for m in response.get_json()["messages"]] == [PHONE]
    return response


@scenario("GET /sandbox/messages", 200)
def _messages_telegram(env: Env) -> TestResponse:
    env.start(channel="telegram")
    response = env.request("GET", "/sandbox/messages", auth=False, query={"phone": PHONE})
    assert [m["channel"] for m in response.get_json()["messages"]] == ["telegram"]
    return response


scenario("GET /sandbox/messages", 400, "invalid-request")(
    lambda env: env.request("GET", "/sandbox/messages", auth=False)
)
scenario("GET /sandbox/messages", 400, "invalid-phone")(
    lambda env: env.request("GET", "/sandbox/messages", auth=False, query={"phone": "nope"})
)
scenario("GET /sandbox/messages", 503, "store-unavailable")(
    lambda env: env.dead().request("GET", "/sandbox/messages", auth=False, query={"phone": PHONE})
)


@scenario("POST /sandbox/calls", 200)
def _call_in(env: Env) -> TestResponse:
    env.start(channel="call")
    response = env.request("POST", "/sandbox/calls", {"phone": PHONE}, auth=False)
    assert (response.get_json()["status"], response.get_json()["completed_via"]) == ("approved", "call")
    return response


scenario("POST /sandbox/calls", 400, "invalid-request")(
    lambda env: env.request("POST", "/sandbox/calls", {}, auth=False)
)
scenario("POST /sandbox/calls", 400, "invalid-phone")(
    lambda env: env.request("POST", "/sandbox/calls", {"phone": "+7 999"}, auth=False)
)
scenario("POST /sandbox/calls", 404, "not-found")(
    lambda env: env.request("POST", "/sandbox/calls", {"phone": PHONE}, auth=False)
)
scenario("POST /sandbox/calls", 413, "request-entity-too-large")(
    lambda env: env.request("POST", "/sandbox/calls", data=TOO_LARGE, auth=False)
)
scenario("POST /sandbox/calls", 503, "store-unavailable")(
    lambda env: env.dead().request("POST", "/sandbox/calls", {"phone": PHONE}, auth=False)
)


@scenario("POST /sandbox/replies", 200)
def _reply_with_code(env: Env) -> TestResponse:
    env.start()
    response = env.request("POST", "/sandbox/replies", {"phone": PHONE, "text": f"it is {env.code()}!"}, auth=False)
    assert response.get_json()["approved"] is True
    assert response.get_json()["verification"]["completed_via"] == "sms_reply"
    return response


@scenario("POST /sandbox/replies", 200)
def _reply_without_code(env: Env) -> TestResponse:
    env.start()
    response = env.request("POST", "/sandbox/replies", {"phone": PHONE, "text": "hello"}, auth=False)
    assert response.get_json() == {"approved": False, "verification": None}
    return response


scenario("POST /sandbox/replies", 400, "invalid-request")(
    lambda env: env.request("POST", "/sandbox/replies", {"phone": PHONE}, auth=False)
)
scenario("POST /sandbox/replies", 400, "invalid-phone")(
    lambda env: env.request("POST", "/sandbox/replies", {"phone": "nope", "text": "123456"}, auth=False)
)
scenario("POST /sandbox/replies", 413, "request-entity-too-large")(
    lambda env: env.request("POST", "/sandbox/replies", data=TOO_LARGE, auth=False)
)
scenario("POST /sandbox/replies", 503, "store-unavailable")(
    lambda env: env.dead().request("POST", "/sandbox/replies", {"phone": PHONE, "text": "123456"}, auth=False)
)


@scenario("GET /sandbox/captcha/{challenge_id}", 200)
def _captcha_answered(env: Env) -> TestResponse:
    always = env.configured(captcha_mode="always")
    challenge = _challenge(always)["id"]
    response = _captcha_answer(always, challenge)
    answer = response.get_json()["answer"]
    assert _captcha_answer(always, challenge).get_json() == {"answer": answer}  # reading it uses nothing up
    solved = always.request("POST", V, {"phone": PHONE, "captcha": {"id": challenge, "answer": answer}})
    assert solved.status_code == 201
    return response


scenario("GET /sandbox/captcha/{challenge_id}", 404, "not-found")(lambda env: _captcha_answer(env, UNKNOWN_CAPTCHA))
scenario("GET /sandbox/captcha/{challenge_id}", 404, "not-found")(lambda env: _captcha_answer(env, "not-a-captcha"))


@scenario("GET /sandbox/captcha/{challenge_id}", 404, "not-found")
def _captcha_used(env: Env) -> TestResponse:
    always = env.configured(captcha_mode="always")
    challenge = _challenge(always)["id"]
    wrong = always.request("POST", V, {"phone": PHONE, "captcha": {"id": challenge, "answer": "wrong"}})
    assert wrong.status_code == 428
    return _captcha_answer(always, challenge)


@scenario("GET /sandbox/captcha/{challenge_id}", 404, "not-found")
def _captcha_expired(env: Env) -> TestResponse:
    always = env.configured(captcha_mode="always")
    challenge = _challenge(always)["id"]
    store = always.service.store
    key = store.captcha_key(challenge)
    for stored in (key, f"{key}:plain"):
        assert 0 < store.client.pttl(stored) <= 300_000  # a challenge lives 5 minutes: make them pass
        store.client.pexpire(stored, 1)
    time.sleep(0.01)
    return _captcha_answer(always, challenge)


scenario("GET /sandbox/captcha/{challenge_id}", 503, "store-unavailable")(
    lambda env: _captcha_answer(env.dead(), UNKNOWN_CAPTCHA)
)


# webhooks

PHONE_DIGITS = PHONE.removeprefix("+")
SMSC_HOOK = "/webhooks/smsc"
ZOOM_HOOK = "/webhooks/zoomconnect"
D7_DLR = f"/webhooks/d7/{D7_TOKEN}"
D7_REPORT = f"/webhooks/d7/{D7_TOKEN}/report"
TELEGRAM_HOOK = "/webhooks/telegram"
ZoomKind = Literal["reply", "delivery"]


def _get(env: Env, vid: str) -> dict[str, Any]:
    body: dict[str, Any] = env.request("GET", f"{V}/{vid}").get_json()
    return body


def _smsc(env: Env, fields: dict[str, str], **options: Any) -> TestResponse:
    """POST an SMSC callback signed with the configured secret (``options`` as for ``smsc_callback``)."""
    query, body, content_type = smsc_emulator.smsc_callback(fields, **{"secret": SMSC_SECRET, **options})
    return env.callback("POST", SMSC_HOOK, query, body, content_type)


def _smsc_call(env: Env, phone: str = PHONE_DIGITS) -> dict[str, str]:
    return {"waitcall": "1", "phone": phone, "ts": str(int(env.clock()))}


def _zoom(
    env: Env, kind: ZoomKind, params: dict[str, str], *, secret: str = ZOOM_SECRET, in_query: bool = True
) -> TestResponse:
    """POST a Zoom Connect callback signed with ``secret``, its parameters in the query or a form body."""
    query, body, content_type = zoomconnect_emulator.zoom_callback(kind, params, secret=secret, in_query=in_query)
    return env.callback("POST", f"{ZOOM_HOOK}/{kind}", query, body, content_type)


def _nonce(env: Env, nonce: str = "5f0e0b7c-1111-2222-3333-444455556666", age: float = 0) -> dict[str, str]:
    """``nonce`` and a ``nonce-date`` signed ``age`` seconds ago by the app's clock."""
    return {"nonce": nonce, "nonce-date": time.strftime("%Y%m%d%H%M%S", time.gmtime(env.clock() - age))}


def _zoom_reply(env: Env, vid: str, text: str, **nonce: Any) -> dict[str, str]:
    signed = _nonce(env, **nonce)
    return {
        "from": PHONE,
        "repliedToMessageId": "40124213",
        "messageId": "124567",
        "message": text,
        "date": signed["nonce-date"][:12],
        "dataField": vid,
        **signed,
    }


def _zoom_delivery(env: Env) -> dict[str, str]:
    return {"messageId": "40124213", "status": "DELIVERED", **_nonce(env, "dlr-nonce-1")}


def _d7(env: Env, callback: d7_emulator.Callback, path: str = D7_DLR) -> TestResponse:
    method, query, body, content_type = callback
    return env.callback(method, path, query, body, content_type)


def _dlr(method: str = "POST") -> d7_emulator.Callback:
    return d7_emulator.dlr_callback(d7_emulator.dlr_fields("d7-message-1", "DELIVRD"), method=method)


def _report(as_json: bool = False) -> d7_emulator.Callback:
    return d7_emulator.report_callback(d7_emulator.report_fields("d7-request-1", "delivered"), as_json=as_json)


def _telegram(env: Env, body: bytes, *, token: str = TELEGRAM_TOKEN, age: float = 0) -> TestResponse:
    """POST a Telegram report signed with ``token`` at ``age`` seconds ago by the app's clock."""
    headers = telegram_emulator.signed_headers(token, int(env.clock() - age), body)
    return env.client.post(TELEGRAM_HOOK, data=body, headers=headers)


def _telegram_sent(env: Env) -> tuple[Env, str, str]:
    """The app with the gateways configured and a telegram verification sent under Telegram's name: the app, the
    verification's id and Telegram's request id for its message."""
    gateways = env.gateways()
    gateways.service.chains["telegram"] = [TelegramStub(gateways.service)]
    started = gateways.start(channel="telegram")
    assert started["delivery"] == {"provider": "telegram", "status": "sent"}
    return gateways, started["id"], f"tg-{started['id']}"


def _telegram_report(env: Env, request_id: str, status: str, **fields: Any) -> bytes:
    return telegram_emulator.report_body(request_id, PHONE, status, int(env.clock()), **fields)


# SMSC


@scenario("POST /webhooks/smsc", 200)
def _smsc_call_approves(env: Env) -> TestResponse:
    gateways = env.gateways()
    vid = _vid(gateways, channel="call")
    response = _smsc(gateways, _smsc_call(env), hash="sha1", charset="utf-8")
    assert response.get_data() == b"OK"
    approved = _get(gateways, vid)
    assert (approved["status"], approved["completed_via"]) == ("approved", "call")
    repeat = _smsc(gateways, _smsc_call(env), hash="sha1", charset="utf-8")
    assert (repeat.status_code, repeat.get_data()) == (200, b"OK")  # harmless: SMSC stops retrying
    assert _get(gateways, vid) == approved
    return response


@scenario("POST /webhooks/smsc", 200)
def _smsc_json_reply_approves(env: Env) -> TestResponse:
    gateways = env.gateways()
    vid = _vid(gateways)
    reply = {"id": "77", "sms_id": vid, "phone": PHONE_DIGITS, "mes": f"Код {gateways.code()}", "to": "79990000000"}
    response = _smsc(gateways, reply, charset="koi8-r", fmt_json=True, json_numbers=True)
    assert _get(gateways, vid)["completed_via"] == "sms_reply"
    return response


# A status for a message we do not know (windows-1251 form, crc32): harmless.
scenario("POST /webhooks/smsc", 200)(
    lambda env: _smsc(env.gateways(), {"id": UNKNOWN_ID, "phone": PHONE_DIGITS, "status": "1"}, hash="md5")
)
# A correct crc32 is no proof of the secret (a forger computes it): refused unless VERIFY_SMSC_HASH lists it.
scenario("POST /webhooks/smsc", 403, "webhook-rejected")(
    lambda env: _smsc(env.gateways(), _smsc_call(env), hash="crc32")
)
scenario("POST /webhooks/smsc", 200)(
    lambda env: _smsc(env.gateways(smsc=replace(SMSC, hashes=("sha1", "crc32"))), _smsc_call(env), hash="crc32")
)
scenario("POST /webhooks/smsc", 403, "webhook-rejected")(
    lambda env: _smsc(env.gateways(), _smsc_call(env), secret=None)
)
scenario("POST /webhooks/smsc", 403, "webhook-rejected")(
    lambda env: _smsc(env.gateways(), _smsc_call(env), secret="not-the-secret")
)


@scenario("POST /webhooks/smsc", 403, "webhook-rejected")
def _smsc_altered(env: Env) -> TestResponse:
    gateways = env.gateways()
    vid = _vid(gateways, channel="call")
    query, body, content_type = smsc_emulator.smsc_callback(_smsc_call(env, "79997654321"), secret=SMSC_SECRET)
    response = gateways.callback(
        "POST", SMSC_HOOK, query, body.replace(b"79997654321", PHONE_DIGITS.encode()), content_type
    )
    assert _get(gateways, vid)["status"] == "pending"
    return response


scenario("POST /webhooks/smsc", 404, "not-found")(lambda env: _smsc(env, _smsc_call(env)))
scenario("POST /webhooks/smsc", 413, "request-entity-too-large")(
    lambda env: env.gateways().request("POST", SMSC_HOOK, data=TOO_LARGE, auth=False)
)
scenario("POST /webhooks/smsc", 503, "store-unavailable")(lambda env: _smsc(env.gateways().dead(), _smsc_call(env)))

# Zoom Connect


@scenario("POST /webhooks/zoomconnect/{kind}", 200)
def _zoom_reply_approves(env: Env) -> TestResponse:
    gateways = env.gateways()
    vid = _vid(gateways)
    response = _zoom(gateways, "reply", _zoom_reply(env, vid, f"my code is {gateways.code()}"))
    assert response.get_data() == b"OK"
    assert _get(gateways, vid)["completed_via"] == "sms_reply"
    return response


# A report on a message we do not know, in a form body: harmless.
scenario("POST /webhooks/zoomconnect/{kind}", 200)(
    lambda env: _zoom(env.gateways(), "delivery", _zoom_delivery(env), in_query=False)
)


@scenario("POST /webhooks/zoomconnect/{kind}", 403, "webhook-rejected")
def _zoom_replayed(env: Env) -> TestResponse:
    gateways = env.gateways()
    assert _zoom(gateways, "delivery", _zoom_delivery(env)).status_code == 200
    return _zoom(gateways, "delivery", _zoom_delivery(env), in_query=False)


@scenario("POST /webhooks/zoomconnect/{kind}", 403, "webhook-rejected")
def _zoom_forged(env: Env) -> TestResponse:
    gateways = env.gateways()
    vid = _vid(gateways)
    response = _zoom(gateways, "reply", _zoom_reply(env, vid, gateways.code()), secret="guess")
    assert _get(gateways, vid)["status"] == "pending"
    return response


scenario("POST /webhooks/zoomconnect/{kind}", 403, "webhook-rejected")(
    lambda env: _zoom(env.gateways(), "reply", _zoom_reply(env, UNKNOWN_ID, "123456", age=901))
)
scenario("POST /webhooks/zoomconnect/{kind}", 403, "webhook-rejected")(
    lambda env: _zoom(env.gateways(), "reply", _zoom_reply(env, UNKNOWN_ID, "123456", age=-120))
)
# No VERIFY_ZOOMCONNECT_SECRET: nothing can be verified.
scenario("POST /webhooks/zoomconnect/{kind}", 403, "webhook-rejected")(
    lambda env: _zoom(env.gateways(zoomconnect=replace(ZOOMCONNECT, secrets=())), "delivery", _zoom_delivery(env))
)
scenario("POST /webhooks/zoomconnect/{kind}", 404, "not-found")(lambda env: _zoom(env, "delivery", _zoom_delivery(env)))
scenario("POST /webhooks/zoomconnect/{kind}", 404, "not-found")(
    lambda env: env.gateways().callback(
        "POST",
        f"{ZOOM_HOOK}/status",
        *zoomconnect_emulator.zoom_callback("delivery", _zoom_delivery(env), secret=ZOOM_SECRET),
    )
)
scenario("POST /webhooks/zoomconnect/{kind}", 413, "request-entity-too-large")(
    lambda env: env.gateways().request("POST", f"{ZOOM_HOOK}/reply", data=TOO_LARGE, auth=False)
)
scenario("POST /webhooks/zoomconnect/{kind}", 503, "store-unavailable")(
    lambda env: _zoom(env.gateways().dead(), "delivery", _zoom_delivery(env))
)

# D7


def _d7_dlr_scenarios(method: str) -> None:
    operation = f"{method} /webhooks/d7/{{token}}"

    @scenario(operation, 200)
    def _acknowledged(env: Env) -> TestResponse:
        # A receipt on a message we do not know is harmless; Jasmin retries unless the body is exactly its ACK.
        response = _d7(env.gateways(), _dlr(method))
        assert response.get_data() == b"ACK/Jasmin"
        return response

    # Not a receipt at all: acknowledged too, or Jasmin would retry it for ever.
    scenario(operation, 200)(lambda env: _d7(env.gateways(), d7_emulator.dlr_callback({"level": "1"}, method=method)))
    scenario(operation, 404, "not-found")(lambda env: _d7(env.gateways(), _dlr(method), "/webhooks/d7/not-the-token"))
    scenario(operation, 404, "not-found")(lambda env: _d7(env, _dlr(method)))
    # No VERIFY_D7_WEBHOOK_TOKEN: no token works.
    scenario(operation, 404, "not-found")(
        lambda env: _d7(env.gateways(d7=replace(D7, webhook_tokens=())), _dlr(method))
    )
    scenario(operation, 503, "store-unavailable")(lambda env: _d7(env.gateways().dead(), _dlr(method)))


_d7_dlr_scenarios("GET")
_d7_dlr_scenarios("POST")
scenario("POST /webhooks/d7/{token}", 413, "request-entity-too-large")(
    lambda env: env.gateways().request("POST", D7_DLR, data=TOO_LARGE, auth=False)
)

scenario("POST /webhooks/d7/{token}/report", 200)(lambda env: _d7(env.gateways(), _report(), D7_REPORT))
scenario("POST /webhooks/d7/{token}/report", 200)(lambda env: _d7(env.gateways(), _report(as_json=True), D7_REPORT))
scenario("POST /webhooks/d7/{token}/report", 404, "not-found")(
    lambda env: _d7(env.gateways(), _report(), "/webhooks/d7/not-the-token/report")
)
scenario("POST /webhooks/d7/{token}/report", 404, "not-found")(lambda env: _d7(env, _report(), D7_REPORT))
scenario("POST /webhooks/d7/{token}/report", 413, "request-entity-too-large")(
    lambda env: env.gateways().request("POST", D7_REPORT, data=TOO_LARGE, auth=False)
)
scenario("POST /webhooks/d7/{token}/report", 503, "store-unavailable")(
    lambda env: _d7(env.gateways().dead(), _report(), D7_REPORT)
)

# Telegram

TELEGRAM_REPORT = "POST /webhooks/telegram"


@scenario(TELEGRAM_REPORT, 200)
def _telegram_read_past_delivered(env: Env) -> TestResponse:
    gateways, vid, request_id = _telegram_sent(env)
    delivered = _telegram(gateways, _telegram_report(env, request_id, "delivered", payload=vid))
    assert (delivered.status_code, delivered.get_data()) == (200, b"OK")
    assert _get(gateways, vid)["delivery"] == {"provider": "telegram", "status": "delivered"}
    response = _telegram(gateways, _telegram_report(env, request_id, "read", payload=vid))
    assert _get(gateways, vid)["delivery"] == {"provider": "telegram", "status": "read"}
    return response


@scenario(TELEGRAM_REPORT, 200)
def _telegram_expired_is_failed(env: Env) -> TestResponse:
    # Signed with the older token (rotation), without our payload: the message is found by its request id.
    gateways, vid, request_id = _telegram_sent(env)
    report = _telegram_report(env, request_id, "expired", refunded=True)
    response = _telegram(gateways, report, token=TELEGRAM_OLD_TOKEN)
    assert _get(gateways, vid)["delivery"] == {"provider": "telegram", "status": "failed"}
    return response


# A verified body that is no delivery report (only what Telegram knows of the code): harmless, acknowledged.
scenario(TELEGRAM_REPORT, 200)(
    lambda env: _telegram(
        env.gateways(),
        telegram_emulator.compact({"request_id": "tg-1", "verification_status": {"status": "code_valid"}}),
    )
)


@scenario(TELEGRAM_REPORT, 403, "webhook-rejected")
def _telegram_forged(env: Env) -> TestResponse:
    gateways, vid, request_id = _telegram_sent(env)
    response = _telegram(gateways, _telegram_report(env, request_id, "delivered", payload=vid), token="guess")
    assert _get(gateways, vid)["delivery"]["status"] == "sent"
    return response


@scenario(TELEGRAM_REPORT, 403, "webhook-rejected")
def _telegram_replayed(env: Env) -> TestResponse:
    gateways = env.gateways()
    body = _telegram_report(env, "tg-unknown", "delivered")
    headers = telegram_emulator.signed_headers(TELEGRAM_TOKEN, int(env.clock()), body)
    assert gateways.client.post(TELEGRAM_HOOK, data=body, headers=headers).status_code == 200
    return gateways.client.post(TELEGRAM_HOOK, data=body, headers=headers)


scenario(TELEGRAM_REPORT, 403, "webhook-rejected")(  # unsigned
    lambda env: env.gateways().client.post(TELEGRAM_HOOK, json={"request_id": "tg-1"})
)
scenario(TELEGRAM_REPORT, 403, "webhook-rejected")(  # stale
    lambda env: _telegram(env.gateways(), _telegram_report(env, "tg-1", "delivered"), age=901)
)
scenario(TELEGRAM_REPORT, 403, "webhook-rejected")(  # from the future
    lambda env: _telegram(env.gateways(), _telegram_report(env, "tg-1", "delivered"), age=-120)
)
scenario(TELEGRAM_REPORT, 404, "not-found")(lambda env: _telegram(env, _telegram_report(env, "tg-1", "delivered")))
scenario(TELEGRAM_REPORT, 413, "request-entity-too-large")(
    lambda env: env.gateways().request("POST", TELEGRAM_HOOK, data=TOO_LARGE, auth=False)
)
scenario(TELEGRAM_REPORT, 503, "store-unavailable")(
    lambda env: _telegram(env.gateways().dead(), _telegram_report(env, "tg-1", "delivered"))
)


# The hook (docs/gateways/hook.md §4): reports signed like our events, with any key of VERIFY_HOOK_SECRET.

HOOK_HOOK = "/webhooks/hook"
HOOK_REPORT = "POST /webhooks/hook"


def _hook(env: Env, body: bytes, *, secret: str = HOOK_SECRET, age: float = 0) -> TestResponse:
    """POST a hook report signed with ``secret`` at ``age`` seconds ago by the app's clock."""
    headers = hook_emulator.signed_headers(secret, int(env.clock() - age), body)
    return env.client.post(HOOK_HOOK, data=body, headers=headers)


def _hook_sent(env: Env) -> tuple[Env, str, str]:
    """The app with the gateways configured and an SMS verification sent under the hook's name: the app, the
    verification's id and the receiver's id for its message."""
    gateways = env.gateways()
    gateways.service.sms_providers = [HookStub(gateways.service)]
    started = gateways.start()
    assert started["delivery"] == {"provider": "hook", "status": "sent"}
    return gateways, started["id"], f"rcv-{started['id']}"


@scenario(HOOK_REPORT, 200)
def _hook_read_past_delivered(env: Env) -> TestResponse:
    gateways, vid, message_id = _hook_sent(env)
    delivered = _hook(gateways, hook_emulator.report_body("delivered", verification_id=vid, message_id=message_id))
    assert (delivered.status_code, delivered.get_data()) == (200, b"OK")
    assert _get(gateways, vid)["delivery"] == {"provider": "hook", "status": "delivered"}
    response = _hook(gateways, hook_emulator.report_body("read", verification_id=vid, message_id=message_id))
    assert _get(gateways, vid)["delivery"] == {"provider": "hook", "status": "read"}
    return response


@scenario(HOOK_REPORT, 200)
def _hook_undelivered_is_failed(env: Env) -> TestResponse:
    # Signed with the older key (rotation), without our id: the message is found by the receiver's id.
    gateways, vid, message_id = _hook_sent(env)
    response = _hook(gateways, hook_emulator.report_body("undelivered", message_id=message_id), secret=HOOK_OLD_SECRET)
    assert _get(gateways, vid)["delivery"] == {"provider": "hook", "status": "failed"}
    return response


# A verified body that is no delivery report (no status): harmless, acknowledged.
scenario(HOOK_REPORT, 200)(lambda env: _hook(env.gateways(), b'{"id":"abcd0123456789abcdef01234567"}'))


@scenario(HOOK_REPORT, 403, "webhook-rejected")
def _hook_forged(env: Env) -> TestResponse:
    gateways, vid, message_id = _hook_sent(env)
    body = hook_emulator.report_body("delivered", verification_id=vid, message_id=message_id)
    response = _hook(gateways, body, secret="guessed-hook-secret-0")
    assert _get(gateways, vid)["delivery"]["status"] == "sent"
    return response


@scenario(HOOK_REPORT, 403, "webhook-rejected")
def _hook_replayed(env: Env) -> TestResponse:
    gateways = env.gateways()
    body = hook_emulator.report_body("delivered", message_id="rcv-unknown")
    headers = hook_emulator.signed_headers(HOOK_SECRET, int(env.clock()), body)
    assert gateways.client.post(HOOK_HOOK, data=body, headers=headers).status_code == 200
    return gateways.client.post(HOOK_HOOK, data=body, headers=headers)


scenario(HOOK_REPORT, 403, "webhook-rejected")(  # unsigned
    lambda env: env.gateways().client.post(HOOK_HOOK, json={"message_id": "rcv-1", "status": "delivered"})
)
scenario(HOOK_REPORT, 403, "webhook-rejected")(  # stale
    lambda env: _hook(env.gateways(), hook_emulator.report_body("delivered", message_id="rcv-1"), age=901)
)
scenario(HOOK_REPORT, 403, "webhook-rejected")(  # from the future
    lambda env: _hook(env.gateways(), hook_emulator.report_body("delivered", message_id="rcv-1"), age=-120)
)
scenario(HOOK_REPORT, 404, "not-found")(lambda env: _hook(env, hook_emulator.report_body("delivered", message_id="x")))
scenario(HOOK_REPORT, 413, "request-entity-too-large")(
    lambda env: env.gateways().request("POST", HOOK_HOOK, data=TOO_LARGE, auth=False)
)
scenario(HOOK_REPORT, 503, "store-unavailable")(
    lambda env: _hook(env.gateways().dead(), hook_emulator.report_body("delivered", message_id="rcv-1"))
)


@pytest.mark.parametrize("case", SCENARIOS, ids=str)
def test_documented_response_happens_and_conforms(case: Scenario, env: Env) -> None:
    response = case.run(env)
    method, path = case.operation.split(" ", 1)
    parameters = path_parameters(path, response.request.path)
    assert (response.request.method, parameters is not None) == (method, True), response.request.path
    body = response.get_json(silent=True)
    assert response.status_code == case.status, body
    if case.status >= 400:
        assert body is not None and case.problem is not None
        assert response.mimetype == "application/problem+json"
        assert body["type"] == problems.TYPE_BASE + case.problem
    else:
        assert case.problem is None
    if case.members:
        assert body is not None and {name: body.get(name) for name in case.members} == case.members
    assert_retry_after_matches(body, response.headers.get("Retry-After"))
    operation = SCHEMA[path][method]
    operation.Case(path_parameters=parameters, query=dict(response.request.args)).validate_response(
        response, checks=CONFORMANCE
    )
    if body is not None:
        assert undocumented_members(body, response_schema(method, path, case.status, response.mimetype)) == []


def test_every_documented_response_has_a_scenario() -> None:
    def matches(documented: tuple[str, int, str | None], produced: tuple[str, int, str | None]) -> bool:
        # A documented slug of None (success, or a problem schema without a type enum) matches any.
        return documented[:2] == produced[:2] and documented[2] in (None, produced[2])

    documented = documented_responses()
    produced = {(case.operation, case.status, case.problem) for case in SCENARIOS}
    assert {d for d in documented if not any(matches(d, p) for p in produced)} == set()
    # A scenario's response that the spec does not document fails its conformance check anyway; this keeps
    # the table itself honest.
    assert {p for p in produced if not any(matches(d, p) for d in documented)} == set()


def test_every_documented_limit_has_a_scenario() -> None:
    """Each operation's ``rate-limited`` names exactly the limits a scenario hits there, and all are the app's."""
    produced: dict[str, set[Any]] = {}
    for case in SCENARIOS:
        if case.problem == RATE_LIMITED:
            assert "limit" in case.members, f"{case}: which limit?"
            produced.setdefault(case.operation, set()).add(case.members["limit"])
    assert produced == documented_limits()
    assert member_enum(SPEC["components"]["schemas"]["RateLimitedProblem"], "limit") == set(LIMITS)
    assert {limit for limits in produced.values() for limit in limits} == set(LIMITS)


# fuzzing


@pytest.fixture(scope="module", params=["defaults", "unlimited"])
def fuzz_app(request: pytest.FixtureRequest, redis_server: EmbeddedRedis) -> Iterator[Flask]:
    """One sandbox app for a whole fuzz run (real clock), on a flushed Redis.

    ``defaults``: the default settings, abuse protection included (the rate limits and the adaptive captcha): the
    fuzzer, one client IP, soon uses up the ``ip`` limit, and from then on starts and resends are 429
    ``rate-limited``, answered before the body is read. ``unlimited``: no limit and no captcha, so that every
    request reaches its handler.
    """
    client = redis.Redis.from_url(redis_server.url)
    client.flushall()
    client.close()
    settings = replace(make_settings(redis_server.url), captcha_mode=Settings.captcha_mode)
    if request.param == "unlimited":
        unlimited: dict[str, Any] = {f"limit_{SETTING_OF.get(name, name)}": "" for name in LIMITS}
        settings = replace(settings, captcha_mode="off", **unlimited)
    FUZZ_APP.target = create_app(settings, background=False)
    yield FUZZ_APP.target
    FUZZ_APP.target = None


def assert_members_documented(case: Any, response: Any) -> None:
    """Every member of a JSON response that the document describes is documented, and Retry-After is right."""
    media_type = response.headers.get("content-type", [""])[0].split(";")[0]
    # The coverage phase also sends undocumented methods (expecting 405); those have no schema to compare.
    documented_statuses = SPEC["paths"][case.path].get(case.method.lower(), {}).get("responses", {})
    if media_type.endswith("json") and str(response.status_code) in documented_statuses:
        documented = response_schema(case.method, case.path, response.status_code, media_type)
        assert undocumented_members(response.json(), documented) == []
        assert_retry_after_matches(response.json(), response.headers.get("retry-after", [None])[0])


@SCHEMA.parametrize()
def test_fuzz_every_operation(case: Any, fuzz_app: Flask) -> None:
    # Every default check, including no 5xx (a 503 too: Redis is up), conformance of status, content type,
    # headers and body, negative data rejected with 4xx, and 401 without or with a wrong key.
    # Not positive_data_acceptance: JSON Schema cannot say which strings are dialable phone numbers or
    # correctly signed tokens, so schema-valid input is legitimately answered 400 invalid-phone/invalid-token.
    # No gateway is configured here, so every webhook answers 404, also when a required header (Telegram's signature)
    # is missing: that check belongs to test_fuzz_webhooks, which covers them configured.
    excluded = [schemathesis.checks.positive_data_acceptance]
    if case.path.startswith("/webhooks/"):
        excluded.append(schemathesis.checks.missing_required_header)
    response = case.call_and_validate(headers=AUTH, excluded_checks=excluded)
    assert_members_documented(case, response)


GATEWAYS_FUZZ_APP = AppSlot()
WEBHOOKS_SCHEMA = schemathesis.openapi.from_path(SPEC_PATH).include(tag="webhooks")
WEBHOOKS_SCHEMA.app = GATEWAYS_FUZZ_APP
WEBHOOKS_SCHEMA.config.generation.update(max_examples=25, deterministic=True, database="none")
WEBHOOKS_SCHEMA.config.seed = 20261122


@pytest.fixture(scope="module", params=["signed", "unsigned"])
def gateways_fuzz_app(request: pytest.FixtureRequest, redis_server: EmbeddedRedis) -> Iterator[Flask]:
    """A sandbox app with every gateway configured, on a flushed Redis: SMSC callbacks signed as in production,
    or (sandbox mode without VERIFY_SMSC_SECRET) unsigned, so that fuzzed ones reach the service."""
    client = redis.Redis.from_url(redis_server.url)
    client.flushall()
    client.close()
    smsc = SMSC if request.param == "signed" else replace(SMSC, secrets=())
    GATEWAYS_FUZZ_APP.target = create_app(
        replace(make_settings(redis_server.url), gateway_settings={**GATEWAY_SETTINGS, "smsc": smsc}),
        background=False,
    )
    yield GATEWAYS_FUZZ_APP.target
    GATEWAYS_FUZZ_APP.target = None


@WEBHOOKS_SCHEMA.parametrize()
def test_fuzz_webhooks(case: Any, gateways_fuzz_app: Flask) -> None:
    # The right D7 token, so that fuzzed receipts and reports get past it (a wrong one is only ever 404).
    # Zoom Connect, Telegram and hook callbacks (and signed SMSC ones) cannot be signed by the fuzzer: they exercise
    # parsing, then 403.
    if "token" in (case.path_parameters or {}):
        case.path_parameters["token"] = D7_TOKEN
    # Not positive_data_acceptance: schema-valid callbacks are legitimately refused (403) without a valid signature.
    # Not negative_data_rejection, inapplicable to webhooks: a gateway retries anything but 200, so an authentic
    # callback the service cannot use (an unknown field value, a receipt without an id) is acknowledged with 200.
    response = case.call_and_validate(
        excluded_checks=[schemathesis.checks.positive_data_acceptance, schemathesis.checks.negative_data_rejection]
    )
    assert_members_documented(case, response)


# inputs the fuzzer does not generate


@pytest.mark.parametrize("path", [V, f"{V}/{UNKNOWN_ID}/check", T, "/sandbox/replies"])
@pytest.mark.deep_nesting
def test_deeply_nested_body_is_a_400(env: Env, path: str) -> None:
    response = env.request("POST", path, data=b"[" * 50_000)
    assert response.status_code == 400
    assert response.get_json()["type"] == "/problems/invalid-request"


@pytest.mark.parametrize("suffix", [":final", ":final:final", "*", "{}", "%0A", "x" * 10_000])
@pytest.mark.parametrize(
    ("method", "path", "body"),
    [("GET", "", None), ("POST", "/check", {"code": "123456"}), ("POST", "/resend", {}), ("DELETE", "", None)],
)
def test_a_crafted_id_is_a_404_on_every_route(
    env: Env, suffix: str, method: str, path: str, body: dict[str, str] | None
) -> None:
    # After a wrong check, a record's final copy (<id>:final) exists when events are on: an id that names it, or
    # any other key, must be refused before it reaches Redis.
    events = env.configured(events_url="https://example.com/hook", events_secrets=("events-secret-0123",))
    vid = events.start()["id"]
    assert events.request("POST", f"{V}/{vid}/check", {"code": "000000"}).status_code in (200, 422)
    response = events.request(method, f"{V}/{vid}{suffix}{path}", body)
    assert response.status_code == 404, response.get_data(as_text=True)
    assert response.get_json()["type"] == "/problems/not-found"
    assert events.request("GET", f"{V}/{vid}").get_json()["status"] == "pending"


def test_token_that_is_not_utf8_encodable_is_a_400(env: Env) -> None:
    response = env.request("POST", T, data=b'{"token": "\\ud800"}')
    assert response.status_code == 400, response.get_json()
    SCHEMA[T]["POST"].Case().validate_response(response, checks=CONFORMANCE)


@pytest.mark.parametrize("member", ["id", "answer"])
def test_captcha_that_is_not_utf8_encodable_is_refused(env: Env, member: str) -> None:
    always = env.configured(captcha_mode="always")
    captcha = {"id": _challenge(always)["id"], "answer": "ABCDE", member: "\ud800"}
    response = always.request("POST", V, data=json.dumps({"phone": PHONE, "captcha": captcha}).encode())
    assert response.status_code in (400, 428), response.get_json()
    SCHEMA[V]["POST"].Case().validate_response(response, checks=CONFORMANCE)


def test_replayed_201_keeps_its_location(env: Env) -> None:
    key = {"Idempotency-Key": "k-201"}
    first = env.request("POST", V, {"phone": PHONE}, headers=key)
    replay = env.request("POST", V, {"phone": PHONE}, headers=key)
    assert (first.status_code, replay.status_code, replay.headers["Idempotent-Replayed"]) == (201, 201, "true")
    assert replay.headers.get("Location") == first.headers["Location"]
    SCHEMA[V]["POST"].Case().validate_response(replay, checks=CONFORMANCE)


def test_a_resend_racing_a_cancel_is_not_revived(env: Env) -> None:
    vid = _vid(env)
    env.wait_cooldown()
    service = env.service
    (gateway,) = service.sms_providers
    real_send = gateway.send_sms

    def send_then_cancel(message: SmsMessage) -> Sent:
        sent = real_send(message)
        assert env.request("DELETE", f"{V}/{vid}").status_code == 200  # another client's DELETE lands meanwhile
        return sent

    gateway.send_sms = send_then_cancel  # type: ignore[method-assign]
    response = env.request("POST", V, {"phone": PHONE})  # due for a new code: a resend of the pending one
    assert response.status_code == 200 and response.get_json()["status"] == "canceled", response.get_json()
    SCHEMA[V]["POST"].Case().validate_response(response, checks=CONFORMANCE)
    gateway.send_sms = real_send  # type: ignore[method-assign]
    assert env.request("POST", V, {"phone": PHONE}).status_code == 201  # the next start begins anew


# where the request schemas draw the line: the app accepts what they allow, and refuses what they forbid (the fuzzers'
# negative data fails the run when the app accepts input the document forbids; these pin the edges by hand)


def allows(schema: str, body: dict[str, str]) -> bool:
    """Whether the request schema ``schema`` allows these string members: their lengths and patterns."""
    properties = SPEC["components"]["schemas"][schema]["properties"]
    return all(
        properties[name].get("minLength", 0) <= len(value) <= properties[name].get("maxLength", len(value))
        and re.search(properties[name].get("pattern", ""), value) is not None
        for name, value in body.items()
    )


@pytest.mark.parametrize(
    ("path", "schema", "body", "accepted"),
    [
        (V, "StartRequest", {"phone": PHONE, "country": ""}, True),  # empty is absent
        (V, "StartRequest", {"phone": "8 999 123-45-67", "country": " ru "}, True),  # any case, blanks around
        (V, "StartRequest", {"phone": PHONE, "app_hash": ""}, True),  # empty is absent
        (V, "StartRequest", {"phone": PHONE, "country": "RUS"}, False),
        (V, "StartRequest", {"phone": PHONE, "country": "R1"}, False),
        (V, "StartRequest", {"phone": ""}, False),
        (V, "StartRequest", {"phone": PHONE, "app_hash": "FA+9qCX9VS"}, False),
        (f"{V}/{{id}}/check", "CheckRequest", {"code": ""}, False),
        (f"{V}/{{id}}/check", "CheckRequest", {"code": "12a456"}, False),
        (T, "TokenVerifyRequest", {"token": ""}, False),
        ("/sandbox/calls", "SandboxCallRequest", {"phone": ""}, False),
        ("/sandbox/replies", "SandboxReplyRequest", {"phone": "", "text": "123456"}, False),
    ],
)
def test_request_schemas_allow_what_the_app_accepts(
    env: Env, path: str, schema: str, body: dict[str, str], accepted: bool
) -> None:
    assert allows(schema, body) is accepted
    if "{id}" in path:
        path = path.replace("{id}", _vid(env))
    response = env.request("POST", path, body)
    assert (response.status_code < 400) is accepted, response.get_json()
    if not accepted:
        assert response.status_code == 400, response.get_json()
