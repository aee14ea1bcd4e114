"""verify/clock.py: the one RFC 3339 formatter, whose strftime is done once per second it is asked for."""

from __future__ import annotations

import time

import hypothesis
from hypothesis import strategies as st

from verify.clock import rfc3339


def test_rfc3339_rounds_down_unless_asked_up() -> None:
    assert rfc3339(1795338902.042) == "2026-11-22T09:15:02Z"
    assert rfc3339(1795338902.042, round_up=True) == "2026-11-22T09:15:03Z"
    assert rfc3339(1795338902.0, round_up=True) == "2026-11-22T09:15:02Z"
    assert rfc3339(0) == "1970-01-01T00:00:00Z"


@hypothesis.given(seconds=st.floats(min_value=0, max_value=4e9), round_up=st.booleans())
def test_rfc3339_is_strftime_of_the_whole_second(seconds: float, round_up: bool) -> None:
    whole = -int(-seconds // 1) if round_up else int(seconds // 1)
    expected = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(whole))
    assert rfc3339(seconds, round_up=round_up) == expected == rfc3339(seconds, round_up=round_up)
