"""Settings declared once: each field of a settings dataclass carries its variable, its reader and whether it is
secret (:func:`var`), so :func:`read` (``Settings.from_env``) and :func:`describe` (``verify check-config``)
work from the same declaration, and a gateway declares its own settings in its own module.

A reader gets the environment, the variable's name, the field's default and what was read before it (fields are
read in their order), and raises :class:`~verify.errors.ConfigError` naming the variable.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable, Mapping
from typing import Any, TypeVar
from urllib.parse import urlsplit

from verify.errors import ConfigError

Env = Mapping[str, str]
T = TypeVar("T")
Reader = Callable[[Env, str, Any, Mapping[str, Any]], Any]


def var(name: str, read: Reader, *, secret: bool = False) -> dict[str, Any]:
    """The metadata of a settings field: ``field(default=..., metadata=var("VERIFY_X", integer(1, 10)))``. A
    nested settings dataclass (a gateway's) has no variable of its own: ``var("", its reader)``."""
    return {"env": name, "read": read, "secret": secret}


def read(cls: type[T], env: Env, context: Mapping[str, Any] | None = None) -> T:
    """An instance of the settings dataclass ``cls`` read from ``env``; ``context``: what the readers of a nested
    one (a gateway's) may look at in the enclosing settings."""
    seen: dict[str, Any] = dict(context or {})
    values: dict[str, Any] = {}
    for f in dataclasses.fields(cls):  # type: ignore[arg-type]
        if "read" not in f.metadata:
            continue
        default = f.default if f.default is not dataclasses.MISSING else None
        values[f.name] = seen[f.name] = f.metadata["read"](env, f.metadata["env"], default, seen)
    return cls(**values)


def describe(settings: object) -> list[tuple[str, str]]:
    """Every variable of a settings dataclass (and of those nested in it, directly or in a mapping by name) as
    ``(name, value)``, secrets masked."""
    rows: list[tuple[str, str]] = []
    for f in dataclasses.fields(settings):  # type: ignore[arg-type]
        value = getattr(settings, f.name)
        if f.metadata.get("env"):
            rows.append((f.metadata["env"], _show(value, secret=f.metadata["secret"])))
        if dataclasses.is_dataclass(value):
            rows += describe(value)
        elif isinstance(value, Mapping):  # nested settings by name (the gateways')
            rows += [row for nested in value.values() if dataclasses.is_dataclass(nested) for row in describe(nested)]
    return rows


def name_of(cls: type[Any], field_name: str) -> str:
    """The variable a settings field is read from."""
    return str(next(f.metadata["env"] for f in dataclasses.fields(cls) if f.name == field_name))


def _show(value: object, *, secret: bool) -> str:
    if value in (None, "", ()):
        return "(unset)"
    if dataclasses.is_dataclass(value):
        return "configured"
    if secret:
        return f"set ({len(value)} keys, masked)" if isinstance(value, tuple) else "set (masked)"
    if isinstance(value, tuple):  # a list, or a list of (name, items) pairs as it was written: a=x|y,b=z
        return ",".join(f"{v[0]}={'|'.join(v[1])}" if isinstance(v, tuple) else str(v) for v in value)
    if isinstance(value, bool):
        return str(int(value))
    if isinstance(value, str) and "://" in value:
        return re.sub(r"(//[^/@:]*:)[^/@]*@", r"\1****@", value)  # redis://user:secret@host
    return str(value)


# readers


def raw(env: Env, name: str) -> str:
    """The variable's value, stripped ("" when unset)."""
    return env.get(name, "").strip()


def text(env: Env, name: str, default: Any, seen: Mapping[str, Any]) -> Any:
    """Any text; unset keeps the default."""
    return raw(env, name) or default


def flag(env: Env, name: str, default: Any, seen: Mapping[str, Any]) -> bool:
    """``1``/``0`` (or true/false, yes/no, on/off)."""
    value = raw(env, name).lower()
    if value in ("", "0", "false", "no", "off"):
        return False
    if value in ("1", "true", "yes", "on"):
        return True
    raise ConfigError(name, f"must be 1 or 0, not {value!r}")


def integer(low: int, high: int) -> Reader:
    """A whole number from ``low`` to ``high``."""

    def reader(env: Env, name: str, default: Any, seen: Mapping[str, Any]) -> Any:
        value = raw(env, name)
        if not value:
            return default
        try:
            number = int(value)
        except ValueError:
            raise ConfigError(name, f"must be a whole number, not {value!r}") from None
        if not low <= number <= high:
            raise ConfigError(name, f"must be between {low} and {high}, not {number}")
        return number

    return reader


def number(high: float, unit: str) -> Reader:
    """A number more than 0 and at most ``high`` (``unit`` says what of, in the error)."""

    def reader(env: Env, name: str, default: Any, seen: Mapping[str, Any]) -> Any:
        value = raw(env, name)
        try:
            result = float(value) if value else default
        except ValueError:
            raise ConfigError(name, f"must be a number of {unit}, not {value!r}") from None
        if not 0 < result <= high:
            raise ConfigError(name, f"must be more than 0 and at most {high:g} {unit}, not {result}")
        return result

    return reader


def choice(*choices: str) -> Reader:
    """One of ``choices``, any case; unset keeps the default."""

    def reader(env: Env, name: str, default: Any, seen: Mapping[str, Any]) -> Any:
        value = raw(env, name).lower() or default
        if value not in choices:
            raise ConfigError(name, f"must be one of {', '.join(choices)}, not {value!r}")
        return value

    return reader


def url(*, base: bool = False) -> Reader:
    """An http(s) URL; ``base`` ones end in ``/``."""

    def reader(env: Env, name: str, default: Any, seen: Mapping[str, Any]) -> Any:
        value = raw(env, name)
        if not value:
            return default
        if not value.startswith(("http://", "https://")) or not urlsplit(value).netloc:
            raise ConfigError(name, f"must be an http(s) URL, not {value!r}")
        return value if not base or value.endswith("/") else value + "/"

    return reader


def listed(*, lower: bool = False) -> Reader:
    """A comma-separated list; unset keeps the default."""

    def reader(env: Env, name: str, default: Any, seen: Mapping[str, Any]) -> Any:
        items = tuple(i.strip().lower() if lower else i.strip() for i in raw(env, name).split(",") if i.strip())
        return items or default

    return reader


def secrets(*, required_when: Callable[[Env, Mapping[str, Any]], str | None] | None = None) -> Reader:
    """A comma-separated secret list, newest first: the first signs what we send, any verifies what we receive.
    ``required_when`` says why it is required now (the reason, or ``None``)."""

    def reader(env: Env, name: str, default: Any, seen: Mapping[str, Any]) -> Any:
        values = tuple(v.strip() for v in raw(env, name).split(",") if v.strip())
        reason = required_when(env, seen) if required_when else None
        if reason and not values:
            raise ConfigError(name, f"is required because {reason}")
        return values

    return reader


def required(because: str) -> Reader:
    """Text that must be set, ``because`` (a gateway is configured, ...)."""

    def reader(env: Env, name: str, default: Any, seen: Mapping[str, Any]) -> Any:
        value = raw(env, name)
        if not value:
            raise ConfigError(name, f"is required because {because}")
        return value

    return reader
