"""SMS size: the vectors of providers.md section 5.5."""

from __future__ import annotations

import pytest

from verify.sms import SmsSize, measure


@pytest.mark.parametrize(("text", "encoding", "units", "parts"), [
    ("a" * 160, "GSM-7", 160, 1),
    ("a" * 161, "GSM-7", 161, 2),
    ("a" * 306, "GSM-7", 306, 2),
    ("a" * 307, "GSM-7", 307, 3),
    ("€" * 80, "GSM-7", 160, 1),
    ("€" * 81, "GSM-7", 162, 2),
    ("[" * 76 + "a" * 7, "GSM-7", 159, 1),
    ("a" * 152 + "€" + "a" * 10, "GSM-7", 164, 2),
    ("П" * 70, "UCS-2", 70, 1),
    ("П" * 71, "UCS-2", 71, 2),
    ("П" * 134, "UCS-2", 134, 2),
    ("П" * 135, "UCS-2", 135, 3),
    ("😀" * 35, "UCS-2", 70, 1),
    ("😀" * 36, "UCS-2", 72, 2),
    ("Hello ç", "UCS-2", 7, 1),
    ("Hello Ç", "GSM-7", 7, 1),
])
def test_providers_md_vectors(text: str, encoding: str, units: int, parts: int) -> None:
    assert measure(text) == SmsSize(encoding, units, parts)


def test_an_escape_pair_is_never_split() -> None:
    # 152 septets, then a 2-septet extension character: it moves whole to part 2 (153 would split it).
    assert measure("a" * 152 + "€" + "a" * 151).parts == 2
    assert measure("a" * 152 + "€" + "a" * 152).parts == 3


def test_a_surrogate_pair_is_never_split() -> None:
    assert measure("П" * 66 + "😀" + "П" * 65).parts == 2
    assert measure("П" * 66 + "😀" + "П" * 66).parts == 3


def test_default_templates_fit_one_sms() -> None:
    assert measure("Your verification code: 1234567890") == SmsSize("GSM-7", 34, 1)
    assert measure("Ваш код подтверждения: 123456").encoding == "UCS-2"
