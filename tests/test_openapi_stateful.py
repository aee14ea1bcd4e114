"""The contract under schemathesis's stateful phase: chains of calls along openapi.yaml's links.

openapi.yaml links a start (``POST /v1/verifications``, 201 and 200) to the read, check, resend and cancel of the
verification it returned (``$response.body#/id``). Schemathesis builds a state machine from those links and runs
chains of calls against the Procfile's gunicorn (the document loaded from its ``GET /openapi.yaml``, so the links
tested are those the server serves) over a real Redis: every response must conform to the document (status, content
type, headers, body), no answer may be a 5xx, and schema-invalid input must be refused.

Left alone, the fuzzer would never reach a right code: a random phone is rarely a valid number, and a random code is
never the one sent. So the machine plays a client that knows them: a positive start goes to one of a few real
numbers, and about half the positive checks of a verification it started carry the code the SMSC emulator was
given. The test then asserts that the chains really went through: at least one check answered
200 ``approved``, and the links to read, resend and cancel reached a live verification (200).
"""

from __future__ import annotations

import json
import re
import time
import zlib
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any, get_args

import pytest
import redis
import schemathesis
import yaml
from hypothesis import HealthCheck, Phase, settings
from schemathesis.config import SchemathesisConfig

from tests.conftest import AUTH
from tests.servers import Server, gunicorn_server
from verify.embedded import EmbeddedRedis
from verify.quotas import LimitName

START = "POST /v1/verifications"
GET = "GET /v1/verifications/{id}"
CHECK = "POST /v1/verifications/{id}/check"
RESEND = "POST /v1/verifications/{id}/resend"
CANCEL = "DELETE /v1/verifications/{id}"
# Valid mobile numbers: a positive start goes to one of them (picked by the phone the fuzzer drew), so starts meet
# their pending verification (200) as well as create one (201).
PHONES = ("+79991234567", "+79991234568", "+79991234569", "+447911123456", "+4915112345678")
# Bounded: 10 to 15 s on a shared 2-core machine (the run prints its time when it fails).
MAX_SCENARIOS = 60
MAX_STEPS = 8
# The links openapi.yaml declares, and no others: schemathesis would otherwise infer links from every response that
# holds an `id` (a check's, a resend's), and start chains at a check or a resend of a random id, a 404.
ONLY_DECLARED_LINKS = SchemathesisConfig.from_dict({"phases": {"stateful": {"inference": {"algorithms": []}}}})
# Not positive_data_acceptance: JSON Schema cannot say which strings are dialable numbers or right codes, so
# schema-valid input is legitimately answered 400 invalid-phone or 422 invalid-code. Not use_after_free: DELETE
# cancels a verification, which stays readable as `canceled` until it expires (as documented), not a 404.
EXCLUDED = [schemathesis.checks.positive_data_acceptance, schemathesis.checks.use_after_free]
Case = schemathesis.Case[Any]


SPEC: dict[str, Any] = yaml.safe_load((Path(__file__).resolve().parent.parent / "openapi.yaml").read_text("utf-8"))


def _resolved(node: dict[str, Any]) -> dict[str, Any]:
    """``node``, or what its ``$ref`` (``#/components/...``) points to."""
    ref = node.get("$ref")
    if ref is None:
        return node
    target = SPEC
    for part in ref.removeprefix("#/").split("/"):
        target = target[part]
    return target


def test_a_start_links_to_everything_done_with_its_verification() -> None:
    # Both answers that carry a verification (201 created, 200 the pending one) lead to the four operations on it.
    operations = {
        op["operationId"]: (method, path)
        for path, item in SPEC["paths"].items()
        for method, op in item.items()
        if isinstance(op, dict) and "operationId" in op
    }
    for status in ("201", "200"):
        links = SPEC["paths"]["/v1/verifications"]["post"]["responses"][status]["links"]
        targets = {}
        for link in map(_resolved, links.values()):
            assert link["parameters"] == {"id": "$response.body#/id"}, link
            targets[link["operationId"]] = operations[link["operationId"]]
        assert targets == {
            "getVerification": ("get", "/v1/verifications/{id}"),
            "checkVerification": ("post", "/v1/verifications/{id}/check"),
            "resendVerification": ("post", "/v1/verifications/{id}/resend"),
            "cancelVerification": ("delete", "/v1/verifications/{id}"),
        }


# No abuse limit, no captcha and no resend cooldown, so that chains reach their handlers.
UNLIMITED = {
    "VERIFY_CAPTCHA_MODE": "off",
    "VERIFY_RESEND_COOLDOWN": "0",
    **{f"VERIFY_LIMIT_{name.upper()}": "none" for name in get_args(LimitName) if name != "captcha_ip"},
}


@pytest.fixture(scope="module")
def served(redis_server: EmbeddedRedis, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    with gunicorn_server(redis_server.url, tmp_path_factory.mktemp("stateful"), UNLIMITED, workers=2) as server:
        yield server


def _positive_body(case: Case) -> dict[str, Any] | None:
    """The JSON object a positive case sends; ``None`` for a negative case, or one without such a body."""
    positive = case.meta is not None and case.meta.generation.mode.is_positive
    return case.body if positive and isinstance(case.body, dict) else None


def _pick(value: object, n: int) -> int:
    """A stable choice among ``n`` made by the data the fuzzer drew (so a shrunk or replayed example picks alike)."""
    return zlib.crc32(json.dumps(value, sort_keys=True, default=str).encode()) % n


def test_chains_of_calls_conform_and_reach_an_approval(served: Server) -> None:
    store = redis.Redis.from_url(served.redis_url)
    schema = schemathesis.openapi.from_url(served.url("/openapi.yaml"), config=ONLY_DECLARED_LINKS).include(
        tag="verifications"
    )
    answered: Counter[tuple[str, int]] = Counter()
    approved: list[str] = []
    right_codes_sent = 0

    def sent_code(phone: str) -> str | None:
        """The code of the newest SMS the emulator took for ``phone`` (a scenario's start sent it)."""
        sent = [d.text for d in served.smsc.delivered if d.kind == "sms" and d.phone == phone]
        found = re.search(r"\d{6}", sent[-1]) if sent else None
        return found.group() if found else None

    class Client(schema.as_state_machine()):  # type: ignore[misc]  # schemathesis builds the class at run time
        """Schemathesis's chains, with the API key, real numbers, and the right code about half the time."""

        def setup(self) -> None:
            # Each scenario starts from an empty store: the same calls get the same answers (201, not the 200 of a
            # start that an earlier scenario left pending), which Hypothesis needs to replay and shrink a failure.
            store.flushall()
            self.phones: dict[str, str] = {}  # verification id -> its phone, for the ones this scenario started

        def get_call_kwargs(self, case: Case) -> dict[str, Any]:
            return {"headers": AUTH}

        def before_call(self, case: Case) -> None:
            nonlocal right_codes_sent
            # Only positive cases are changed, and they stay schema-valid: a negative one keeps what makes it invalid.
            body = _positive_body(case)
            if body is None:
                return
            label = case.operation.label
            if label == START:
                # A real number, and no `country` (two random letters rarely name a region).
                others = {name: value for name, value in body.items() if name != "country"}
                case.body = {**others, "phone": PHONES[_pick(body.get("phone"), len(PHONES))]}
            elif label == CHECK and (phone := self.phones.get(case.path_parameters.get("id", ""))):
                code = sent_code(phone)
                if code is not None and _pick(body, 2) == 0:
                    case.body = {**body, "code": code}
                    right_codes_sent += 1

        def after_call(self, response: schemathesis.Response, case: Case) -> None:
            super().after_call(response, case)
            label = case.operation.label
            answered[label, response.status_code] += 1
            if label == START and response.status_code in (200, 201):
                verification = response.json()
                self.phones[verification["id"]] = verification["phone"]
            if label == CHECK and response.status_code == 200 and response.json()["status"] == "approved":
                approved.append(response.json()["id"])

        def validate_response(
            self, response: schemathesis.Response, case: Case, additional_checks: Any = None, **kwargs: Any
        ) -> None:
            case.validate_response(
                response,
                additional_checks=additional_checks,
                excluded_checks=EXCLUDED,
                headers=kwargs.get("headers"),  # the API key is ours, not generated: ignored_auth probes without it
                transport_kwargs=kwargs or None,
                recorder=self.recorder,
            )

    began = time.monotonic()
    try:
        Client.run(
            settings=settings(
                max_examples=MAX_SCENARIOS,
                stateful_step_count=MAX_STEPS,
                phases=[Phase.generate],
                deadline=None,
                database=None,
                derandomize=True,
                suppress_health_check=list(HealthCheck),
            )
        )
    finally:
        store.close()
    elapsed = time.monotonic() - began
    summary = f"{elapsed:.1f} s; answers: {dict(sorted(answered.items()))}; right codes sent: {right_codes_sent}"
    # The chains reached what only a linked, right call reaches: a fresh verification, read, resent, canceled, and
    # approved by its code. (No 5xx and every answer conformant: the checks above raised otherwise.)
    assert answered[START, 201] and answered[START, 200], summary
    assert answered[GET, 200] and answered[RESEND, 200] and answered[CANCEL, 200], summary
    assert approved, summary
    assert not [status for (_, status), _ in answered.items() if status >= 500], summary
