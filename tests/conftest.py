"""Shared fixtures: a real redis-server on a free port, settings, a movable clock, the app and its client."""

from __future__ import annotations

import gc
import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from redis.connection import AbstractConnection
from werkzeug.serving import make_server
from werkzeug.test import TestResponse
from werkzeug.wrappers import Request, Response

from tests.redis_servers import EmbeddedCluster
from verify import create_app
from verify.config import Settings
from verify.embedded import EmbeddedRedis
from verify.store import Client, Store

API_KEY = "test-api-key-0123456789"
SECRET_KEY = "test-secret-key-0123456789"
AUTH = {"Authorization": f"Bearer {API_KEY}"}
PHONE = "+79991234567"


class MovableClock:
    """An injected clock that starts at the real time and moves only when a test moves it."""

    def __init__(self, start: float) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def make_settings(redis_url: str, **overrides: Any) -> Settings:
    """Sandbox settings on ``redis_url``, as the environment would give them, with ``overrides``.

    The adaptive captcha is off: every test client starts from 127.0.0.1, and after three starts an hour the
    default would ask it for a captcha. tests/test_captcha.py turns it on; the rate limits stay at their defaults.
    """
    base = Settings.from_env(
        {
            "VERIFY_API_KEYS": API_KEY,
            "VERIFY_SECRET_KEY": SECRET_KEY,
            "VERIFY_REDIS_URL": redis_url,
            "VERIFY_SANDBOX": "1",
            "VERIFY_CAPTCHA_MODE": "off",
        }
    )
    return replace(base, **overrides)


@pytest.fixture(autouse=True)
def _no_collection_in_deep_recursion(request: pytest.FixtureRequest) -> Iterator[None]:
    """Tests marked ``deep_nesting`` run with the garbage collector paused.

    They drive the JSON parser to the recursion limit. A collection that happened to start there would run the
    finalizers of earlier tests' apps (closing their Redis connections) with no stack left for them.
    """
    if request.node.get_closest_marker("deep_nesting") is None:
        yield
        return
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedRedis]:
    """One real redis-server (the embedded 6.2) for the whole run."""
    server = EmbeddedRedis(Path(tmp_path_factory.mktemp("redis")))
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def redis_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedCluster]:
    """A real 3-node Redis Cluster (the embedded 6.2), for the suites that run on it as well."""
    cluster = EmbeddedCluster(Path(tmp_path_factory.mktemp("cluster")))
    cluster.start()
    yield cluster
    cluster.stop()


def flushed(url: str) -> str:
    """``url``'s Redis (a single server or every node of a cluster) emptied; returns ``url``."""
    store = Store.from_url(url, "")
    store.client.flushall()
    store.close()
    return url


@pytest.fixture
def redis_url(redis_server: EmbeddedRedis) -> str:
    """The shared server's URL, flushed before each test. Suites that run on a cluster too override it with
    :func:`single_and_cluster`."""
    return flushed(redis_server.url)


def single_and_cluster(request: pytest.FixtureRequest) -> str:
    """The body of a ``redis_url`` fixture parametrized ``["single", "cluster"]``: the suite runs on both."""
    if request.param == "single":
        return flushed(request.getfixturevalue("redis_server").url)
    return flushed(request.getfixturevalue("redis_cluster").url)


@pytest.fixture
def redis_client(redis_url: str) -> Iterator[Client]:
    """A plain client on the test Redis (cluster-aware), to look at keys and TTLs."""
    store = Store.from_url(redis_url, "")
    yield store.client
    store.close()


@pytest.fixture
def settings(redis_url: str) -> Settings:
    """Default sandbox settings on the test server."""
    return make_settings(redis_url)


@pytest.fixture
def clock() -> MovableClock:
    """The app's clock; ``clock.advance(s)`` moves time instead of sleeping."""
    import time

    return MovableClock(time.time())


@pytest.fixture
def app(settings: Settings, clock: MovableClock) -> Flask:
    """The app under test."""
    return create_app(settings, clock=clock, background=False)


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    """A test client of the app."""
    return app.test_client()


@contextmanager
def serving(app: Any) -> Iterator[str]:
    """Serve a WSGI app on a free loopback port in a thread; yields its base URL."""
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        server.server_close()


@dataclass
class Receiver:
    """A customer's endpoint on loopback that answers ``fail_first`` times with 503, then 200."""

    fail_first: int = 0
    received: list[tuple[dict[str, str], bytes]] = field(default_factory=list)
    answered: list[int] = field(default_factory=list)
    url: str = ""

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Any:
        request = Request(environ)
        self.received.append((dict(request.headers.items()), request.get_data()))
        status = 503 if len(self.received) <= self.fail_first else 200
        self.answered.append(status)
        return Response("", status=status)(environ, start_response)

    def events(self) -> list[dict[str, Any]]:
        return [json.loads(body) for _, body in self.received]


def start(client: FlaskClient, phone: str = PHONE, **fields: Any) -> TestResponse:
    """POST /v1/verifications with the test API key."""
    headers = {**AUTH, **fields.pop("headers", {})}
    return client.post("/v1/verifications", json={"phone": phone, **fields}, headers=headers)


def check(client: FlaskClient, verification_id: str, code: str) -> TestResponse:
    """POST /v1/verifications/{id}/check with the test API key."""
    return client.post(f"/v1/verifications/{verification_id}/check", json={"code": code}, headers=AUTH)


def last_code(client: FlaskClient, phone: str = PHONE) -> str:
    """The code of the newest sandbox SMS to ``phone``."""
    messages = client.get("/sandbox/messages", query_string={"phone": phone}).get_json()["messages"]
    code: str = messages[0]["code"]
    return code


class RoundTrips:
    """How many commands (a pipeline or a script counts as one) went to a Redis socket since this was made: the
    round trips, which tests pin on hot paths (``redis_round_trips``)."""

    def __init__(self) -> None:
        self.sent = 0


@pytest.fixture
def redis_round_trips(monkeypatch: pytest.MonkeyPatch) -> RoundTrips:
    """Counts every write to a Redis socket (redis-py's ``send_packed_command``) while the test runs."""
    counted = RoundTrips()
    real = AbstractConnection.send_packed_command

    def counting(self: AbstractConnection, command: Any, check_health: bool = True) -> None:
        counted.sent += 1
        real(self, command, check_health)  # type: ignore[no-untyped-call]

    monkeypatch.setattr(AbstractConnection, "send_packed_command", counting)
    return counted
