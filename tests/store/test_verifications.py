"""How a stored record is read back (verify/store/verifications.py): ``Record.from_hash`` and ``from_flat`` build what
the dataclass's own constructor builds from the same fields, for any hash a script may return."""

from __future__ import annotations

from dataclasses import FrozenInstanceError, fields, replace
from typing import Any

import hypothesis
import pytest
from hypothesis import strategies as st

from verify.store.verifications import FIELDS, LEGACY_FIELDS, Record

INTEGERS = {f.name for f in fields(Record) if f.type == "int"}
ATTRIBUTES = {f.name for f in fields(Record)}
SHORT = {short: name for name, short in FIELDS.items() if name in ATTRIBUTES}


def _by_constructor(stored: dict[str, str], verification_id: str) -> Record:
    """The record as the dataclass's __init__ makes it: the reading the table-driven one must equal."""
    h = {LEGACY_FIELDS.get(name, name): value for name, value in stored.items()}
    values: dict[str, Any] = {}
    for short, name in SHORT.items():
        if short in h:
            value: Any = h[short]
            if name in INTEGERS:
                value = int(value or 0)
            elif name == "call_numbers":
                value = tuple(n for n in value.split(",") if n)
            values[name] = value
    values.setdefault("locale", "")
    for name in INTEGERS:
        values.setdefault(name, 0)
    return Record(id=h.get("id") or verification_id, **values)


def _value(name: str) -> st.SearchStrategy[str]:
    if SHORT.get(name) in INTEGERS or name in INTEGERS:
        return st.sampled_from(("", "0")) | st.integers(min_value=0, max_value=2**53).map(str)
    return st.text(max_size=12)


NAMES = sorted({*FIELDS.values(), *LEGACY_FIELDS, "id", "unknown"})


@hypothesis.settings(max_examples=300, deadline=None)
@hypothesis.given(
    stored=st.fixed_dictionaries(
        {"p": st.text(max_size=16), "ch": st.sampled_from(("sms", "call", "voice")), "s": st.just("pending")},
        optional={name: _value(name) for name in NAMES if name not in ("p", "ch", "s")},
    ),
    verification_id=st.sampled_from(("", "b6768fc21433241df779026eb4ed")),
)
def test_a_hash_reads_as_the_constructor_builds_it(stored: dict[str, str], verification_id: str) -> None:
    expected = _by_constructor(stored, verification_id)
    assert Record.from_hash(stored, verification_id) == expected
    flat = [item for pair in stored.items() for item in pair]
    read = Record.from_flat(flat, verification_id)
    assert read == expected and repr(read) == repr(expected)
    assert read is not None and vars(read).keys() == ATTRIBUTES  # every field, and nothing else (no code hash)
    assert type(read.attempts) is int and type(read.call_numbers) is tuple


def test_a_record_without_its_phone_channel_or_status_is_refused() -> None:
    for missing in ("p", "ch", "s"):
        stored = {"p": "+79991230001", "ch": "sms", "s": "pending"}
        del stored[missing]
        with pytest.raises(KeyError):
            Record.from_hash(stored)
    assert Record.from_flat([]) is None


def test_a_read_record_is_frozen_and_replaceable() -> None:
    stored = {"p": "+79991230001", "ch": "sms", "s": "pending", "n": "2"}
    record = Record.from_hash(stored, "b6768fc21433241df779026eb4ed")
    with pytest.raises(FrozenInstanceError):
        record.status = "approved"  # type: ignore[misc]
    assert replace(record, status="approved").sends == 2
    assert hash(record) == hash(Record.from_hash(stored, record.id))
