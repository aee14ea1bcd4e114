"""Time: the injectable clock type and the one RFC 3339 formatter."""

from __future__ import annotations

import math
import time
from collections.abc import Callable

Clock = Callable[[], float]
"""Returns unix seconds. The service takes one so tests can move time instead of sleeping."""

system_clock: Clock = time.time


def rfc3339(seconds: float, *, round_up: bool = False) -> str:
    """``2026-11-22T03:13:46Z``. Rounds down, or up where the caller must not act too early."""
    whole = math.ceil(seconds) if round_up else math.floor(seconds)
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(whole))
