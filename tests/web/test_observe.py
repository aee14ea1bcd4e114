"""The request line (verify/web/observe.py), in process: one record per request, with the route template, the request
id (the client's only when it cannot be a secret) and only a well-formed verification id; tests/test_logs.py checks
the same lines as gunicorn writes them."""

from __future__ import annotations

import logging
import re
from dataclasses import replace

import pytest
from flask.testing import FlaskClient

from tests.conftest import API_KEY, AUTH, MovableClock, last_code, start
from verify import create_app
from verify.config import Settings

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
GENERATED = re.compile(r"[0-9a-f]{32}")


def request_lines(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [record for record in caplog.records if record.name == "verify.request"]


def test_one_line_per_request_with_the_route_template(client: FlaskClient, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, "verify.request")
    vid = start(client, headers={"X-Request-Id": TRACE_ID}).get_json()["id"]
    client.get(f"/v1/verifications/{vid}", headers=AUTH)
    first, second = request_lines(caplog)
    assert (first.route, first.status, first.request_id, first.verification_id) == (  # type: ignore[attr-defined]
        "/v1/verifications",
        201,
        TRACE_ID,
        vid,
    )
    assert second.route == "/v1/verifications/<verification_id>"  # type: ignore[attr-defined]
    assert second.verification_id == vid  # type: ignore[attr-defined]
    assert GENERATED.fullmatch(second.request_id) and second.request_id != TRACE_ID  # type: ignore[attr-defined]


def test_a_path_that_is_not_an_id_is_not_logged(client: FlaskClient, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, "verify.request")
    pasted = "eyJ2aWQiOiJhYmMifQ.ZxYwVu.a-proof-token-pasted-as-an-id"
    response = client.get(f"/v1/verifications/{pasted}", headers={**AUTH, "X-Request-Id": "bad id with spaces"})
    assert response.status_code == 404
    (line,) = request_lines(caplog)
    assert line.verification_id == ""  # type: ignore[attr-defined]
    assert pasted not in line.getMessage() and all(pasted not in str(v) for v in vars(line).values())
    assert response.headers["X-Request-Id"] == line.request_id != "bad id with spaces"  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    "given",
    [
        "0b7e2d1c-4a5f-4e3b-9c8d-7a6b5c4d3e2f",  # a UUID v4
        "0B7E2D1C-4A5F-4E3B-9C8D-7A6B5C4D3E2F",  # upper case
        "01936a8e-7c2b-7def-8a31-5d2e4f6a7b8c",  # v7
        "00000000-0000-0000-0000-000000000000",  # the nil UUID: any version
        TRACE_ID,  # a W3C trace id, nginx's $request_id
    ],
)
def test_a_uuid_or_a_trace_id_is_kept(client: FlaskClient, caplog: pytest.LogCaptureFixture, given: str) -> None:
    caplog.set_level(logging.INFO, "verify.request")
    response = client.get("/healthz", headers={"X-Request-Id": given})
    (line,) = request_lines(caplog)
    assert response.headers["X-Request-Id"] == line.request_id == given  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    "given",
    [
        API_KEY,
        "123456",  # a code
        "eyJ2aWQiOiJhYmMifQ.ZxYwVu.a-proof-token",
        "pk_shop",  # a site key
        "dev_Qm9vZ2xlLWxpa2Uta2V5LTEyMzQ1Njc4",  # what `verify dev` makes an API key like
        "trace-42",  # well formed, once taken as it was
        "4BF92F3577B34DA6A3CE929D0E0E4736",  # a trace id is lower case
        "0" * 32,  # the invalid trace id
        "4bf92f3577b34da6a3ce929d0e0e473",  # 31 digits
        "4bf92f3577b34da6a3ce929d0e0e47360",  # 33
        "0b7e2d1c4a5f-4e3b-9c8d-7a6b5c4d3e2f",
        "{0b7e2d1c-4a5f-4e3b-9c8d-7a6b5c4d3e2f}",
        "urn:uuid:0b7e2d1c-4a5f-4e3b-9c8d-7a6b5c4d3e2f",
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",  # a traceparent header is not taken
    ],
)
def test_anything_else_is_replaced_and_not_logged(
    client: FlaskClient, caplog: pytest.LogCaptureFixture, given: str
) -> None:
    caplog.set_level(logging.DEBUG)
    response = client.get("/healthz", headers={"X-Request-Id": given})
    (line,) = request_lines(caplog)
    assert response.headers["X-Request-Id"] == line.request_id  # type: ignore[attr-defined]
    assert GENERATED.fullmatch(line.request_id)  # type: ignore[attr-defined]
    assert given not in caplog.text and all(given not in str(v) for v in vars(line).values())


def test_a_code_sent_as_the_request_id_is_not_logged(client: FlaskClient, caplog: pytest.LogCaptureFixture) -> None:
    vid = start(client).get_json()["id"]
    code = last_code(client)
    caplog.set_level(logging.DEBUG)
    response = client.post(
        f"/v1/verifications/{vid}/check", json={"code": code}, headers={**AUTH, "X-Request-Id": code}
    )
    assert response.status_code == 200
    assert response.headers["X-Request-Id"] != code
    assert not re.search(rf"(?<!\d){code}(?!\d)", caplog.text)
    assert all(code not in str(v) for record in caplog.records for v in vars(record).values())


def test_metrics_asks_for_its_token_when_one_is_set(settings: Settings, clock: MovableClock) -> None:
    client = create_app(
        replace(settings, metrics_tokens=("new-token-0123456789", "old-token-0123456789")),
        clock=clock,
        background=False,
    ).test_client()
    for headers in ({}, {"Authorization": "Bearer wrong-token-0123456"}, {"Authorization": "Basic old-token"}):
        refused = client.get("/metrics", headers=headers)
        assert refused.status_code == 401 and "VERIFY_METRICS_TOKEN" in refused.get_json()["detail"]
    for token in ("new-token-0123456789", "old-token-0123456789"):  # any listed one: tokens rotate
        assert client.get("/metrics", headers={"Authorization": f"Bearer {token}"}).status_code == 200
    assert API_KEY not in settings.metrics_tokens
    assert client.get("/metrics", headers=AUTH).status_code == 401  # an API key is not a metrics token
