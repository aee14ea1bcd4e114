"""Phone numbers: the only place raw input is parsed (with ``phonenumbers``)."""

from __future__ import annotations

import functools

import phonenumbers

from verify.errors import InvalidPhone, InvalidRequest

MAX_RAW_LENGTH = 64


def normalize(raw: str, country: str | None) -> str:
    """Return ``raw`` as E.164, reading national formats in ``country`` (ISO alpha-2).

    ``8 (999) 123-45-67`` with ``RU`` and ``+7 999 123 45 67`` both give ``+79991234567``.
    Raises :class:`InvalidPhone` for anything that is not a valid, dialable number.
    """
    if len(raw) > MAX_RAW_LENGTH:
        raise InvalidPhone(f"phone must be at most {MAX_RAW_LENGTH} characters")
    return _read(raw, country)[0]


def region(raw: str) -> str:
    """Validate an ISO 3166-1 alpha-2 region code given in a request's ``country`` field."""
    code = raw.strip().upper()
    if code not in phonenumbers.SUPPORTED_REGIONS:
        raise InvalidRequest("country", "country must be an ISO 3166-1 alpha-2 region code such as RU or US")
    return code


def mask(e164: str) -> str:
    """Mask a number for logs: ``+79991234567`` -> ``+7999***4567``."""
    return e164[:5] + "***" + e164[-4:] if len(e164) > 9 else "***"


def country_of(e164: str) -> str:
    """The ISO region of an E.164 number (``ZZ`` when unknown)."""
    return _facts(e164)[0]


def type_of(e164: str) -> int:
    """phonenumbers' type of an E.164 number (mobile, VoIP, premium rate...)."""
    return _facts(e164)[1]


# Parsing is the costly part of a start (issue 19: phonenumbers took 3-4% of a worker), and a request asks for a
# number's country and type several times (limits, statistics, the allowlist): one parse answers all three, and
# recent answers are kept, keyed by the raw input and country. Clients mostly send E.164, which is also how the
# country and type are asked for, so one entry serves a request. They are facts of the number: never stale.
@functools.lru_cache(maxsize=4096)
def _read(raw: str, country: str | None) -> tuple[str, str, int]:
    """``raw`` read in ``country``: its E.164 form, its ISO region (``ZZ`` when unknown) and phonenumbers' type; a
    :class:`InvalidPhone` (not kept) when it is not a valid number."""
    try:
        number = phonenumbers.parse(raw, country)
    except phonenumbers.NumberParseException as err:
        hint = "" if country or raw.strip().startswith("+") else " (give it in +E.164 form or pass country)"
        raise InvalidPhone(f"phone is not a phone number{hint}") from err
    if not phonenumbers.is_valid_number(number):
        raise InvalidPhone("phone is not a valid number for its country")
    return (
        phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164),
        phonenumbers.region_code_for_number(number) or "ZZ",
        phonenumbers.number_type(number),
    )


def _facts(e164: str) -> tuple[str, int]:
    try:
        _, region, kind = _read(e164, None)
    except InvalidPhone:  # not from normalize (a number a gateway reported): its facts all the same
        number = phonenumbers.parse(e164)
        return phonenumbers.region_code_for_number(number) or "ZZ", phonenumbers.number_type(number)
    return region, kind
