"""SMS size: encoding (GSM-7 or UCS-2) and the number of parts a text is sent in.

The rules are those of ../shared/providers.md section 4, shared with the gateways: a text is GSM-7 when
every character is in the GSM 03.38 basic or extension table (extension characters cost two septets),
otherwise the whole text is UCS-2 (UTF-16 units; astral characters cost two). One SMS holds 160 septets or
70 units; longer texts go in parts of 153 septets or 67 units, never splitting an escape pair or a
surrogate pair.
"""

from __future__ import annotations

from dataclasses import dataclass

import gsm0338  # noqa: F401 - registers the "gsm03.38" codec

GSM7, UCS2 = "GSM-7", "UCS-2"
SINGLE = {GSM7: 160, UCS2: 70}
PART = {GSM7: 153, UCS2: 67}


@dataclass(frozen=True)
class SmsSize:
    """How a text travels: its ``encoding``, its length in ``units`` (septets or UTF-16 units), ``parts``."""

    encoding: str
    units: int
    parts: int


def measure(text: str) -> SmsSize:
    """The encoding, length and part count of ``text``."""
    try:
        costs = [len(ch.encode("gsm03.38")) for ch in text]
        encoding = GSM7
    except UnicodeEncodeError:
        costs = [len(ch.encode("utf-16-le")) // 2 for ch in text]
        encoding = UCS2
    units = sum(costs)
    if units <= SINGLE[encoding]:
        return SmsSize(encoding, units, 1)
    parts, filled = 1, 0
    for cost in costs:
        if filled + cost > PART[encoding]:
            parts, filled = parts + 1, 0
        filled += cost
    return SmsSize(encoding, units, parts)
