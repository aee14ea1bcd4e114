"""The JSON of the wire: orjson, with the stdlib behind it for what orjson refuses."""

from __future__ import annotations

import json
import math

import pytest

from verify.web.views import dumps, loads


def test_dumps_is_compact_and_keeps_the_order_of_the_keys() -> None:
    assert dumps({"b": 1, "a": [True, None, "é"]}) == '{"b":1,"a":[true,null,"é"]}'.encode()
    assert dumps({"a": 1}, newline=True) == b'{"a":1}\n'


def test_a_lone_surrogate_is_escaped_as_the_stdlib_did() -> None:
    assert dumps({"a": "\ud800"}, newline=True) == b'{"a":"\\ud800"}\n'


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (b'{"phone": "+7999"}', {"phone": "+7999"}),
        (b'{"phone": "\\ud800"}', {"phone": "\ud800"}),  # orjson refuses it; judged as a field, as before
        ("\ufeff{}".encode(), {}),  # a byte order mark
    ],
)
def test_loads_parses_what_the_stdlib_parsed(raw: bytes, expected: object) -> None:
    assert loads(raw) == expected == json.loads(raw)


def test_loads_still_takes_nan_as_the_stdlib_did() -> None:
    assert math.isnan(loads(b"[NaN]")[0])


@pytest.mark.parametrize("raw", [b"{", b"\xff\xfe", b"[1,]"])
def test_loads_refuses_what_neither_parses(raw: bytes) -> None:
    with pytest.raises(ValueError):
        loads(raw)
