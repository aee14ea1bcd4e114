"""Phone normalization with phonenumbers."""

from __future__ import annotations

from typing import Any

import phonenumbers
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


def test_a_number_is_parsed_once_for_its_form_country_and_type(monkeypatch: pytest.MonkeyPatch) -> None:
    parsed: list[str] = []
    real = phonenumbers.parse

    def counting(raw: str, region: str | None = None, *args: Any, **kwargs: Any) -> phonenumbers.PhoneNumber:
        parsed.append(raw)
        return real(raw, region, *args, **kwargs)

    monkeypatch.setattr(phonenumbers, "parse", counting)
    phone._read.cache_clear()  # what earlier tests read
    e164 = phone.normalize("+7 999 555-01-23", None)
    assert e164 == "+79995550123" and parsed == ["+7 999 555-01-23"]
    assert phone.normalize("+79995550123", None) == e164  # as clients mostly send it: parsed once more, then kept
    assert (phone.country_of(e164), phone.type_of(e164)) == ("RU", phonenumbers.PhoneNumberType.MOBILE)
    assert phone.normalize("+79995550123", None) == e164
    assert parsed == ["+7 999 555-01-23", "+79995550123"]


def test_facts_of_a_number_that_is_not_valid_are_still_told() -> None:
    # A gateway may report a number that normalize would refuse: its country and type, unvalidated.
    assert (phone.country_of("+7999123"), phone.type_of("+7999123")) == ("RU", phonenumbers.PhoneNumberType.UNKNOWN)
    assert phone.country_of("+4412") == "ZZ"
