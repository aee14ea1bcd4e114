"""The request line (verify/observe.py), in process: one record per request, with the route template, the request
id and only a well-formed verification id; tests/test_logs.py checks the same lines as gunicorn writes them."""

from __future__ import annotations

import logging

import pytest
from flask.testing import FlaskClient

from tests.conftest import AUTH, start


def request_lines(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [record for record in caplog.records if record.name == "verify.request"]


def test_one_line_per_request_with_the_route_template(client: FlaskClient, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, "verify.request")
    vid = start(client, headers={"X-Request-Id": "trace-42"}).get_json()["id"]
    client.get(f"/v1/verifications/{vid}", headers=AUTH)
    first, second = request_lines(caplog)
    assert (first.route, first.status, first.request_id, first.verification_id) == (  # type: ignore[attr-defined]
        "/v1/verifications",
        201,
        "trace-42",
        vid,
    )
    assert second.route == "/v1/verifications/<verification_id>"  # type: ignore[attr-defined]
    assert second.verification_id == vid  # type: ignore[attr-defined]
    assert len(second.request_id) == 32 and second.request_id != "trace-42"  # type: ignore[attr-defined]


def test_a_path_that_is_not_an_id_is_not_logged(client: FlaskClient, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, "verify.request")
    pasted = "eyJ2aWQiOiJhYmMifQ.ZxYwVu.a-proof-token-pasted-as-an-id"
    response = client.get(f"/v1/verifications/{pasted}", headers={**AUTH, "X-Request-Id": "bad id with spaces"})
    assert response.status_code == 404
    (line,) = request_lines(caplog)
    assert line.verification_id == ""  # type: ignore[attr-defined]
    assert pasted not in line.getMessage() and all(pasted not in str(v) for v in vars(line).values())
    assert response.headers["X-Request-Id"] == line.request_id != "bad id with spaces"  # type: ignore[attr-defined]
