"""Phone normalization with phonenumbers."""

from __future__ import annotations

import pytest

from verify import phone
from verify.errors import InvalidPhone, InvalidRequest


@pytest.mark.parametrize(
    ("raw", "country"),
    [
        ("8 (999) 123-45-67", "RU"),
        ("+7 999 123 45 67", None),
        ("+7 (999) 123-45-67", "US"),
        ("79991234567", "RU"),
        ("+79991234567", None),
    ],
)
def test_variants_of_one_number_normalize_alike(raw: str, country: str | None) -> None:
    assert phone.normalize(raw, country) == "+79991234567"


@pytest.mark.parametrize(
    ("raw", "country"),
    [
        ("", None),
        ("hello", "RU"),
        ("8 (999) 123-45-67", None),
        ("+7 999", None),
        ("+1 555 0100", None),
        ("1" * 65, None),
        ("+7 000 000 00 00", None),
    ],
)
def test_invalid_numbers(raw: str, country: str | None) -> None:
    with pytest.raises(InvalidPhone):
        phone.normalize(raw, country)


def test_region_codes() -> None:
    assert phone.region(" ru ") == "RU"
    with pytest.raises(InvalidRequest) as caught:
        phone.region("Russia")
    assert caught.value.context() == {"field": "country"}


def test_mask_hides_the_middle() -> None:
    assert phone.mask("+79991234567") == "+7999***4567"
