"""The tenants file (``VERIFY_TENANTS_FILE``): many products in one deployment, read with the standard ``tomllib``.

Each ``[tenants.<id>]`` table is turned into what the environment would say for that product alone: a field maps
onto the ``VERIFY_*`` variable it overrides (``code_length`` -> ``VERIFY_CODE_LENGTH``, ``limits.ip`` ->
``VERIFY_LIMIT_IP``), so :mod:`verify.config` validates a tenant with the very readers that validate the
environment, and a tenant that sets nothing is the environment's settings. A tenant's API keys are SHA-256 hashes
(``verify hash-key``), so the file holds no secret but the hook's and the events' signing keys.

An error names the file, the line, the tenant and the field: tomllib says where a syntax error is, and a field's line
is found in the text (:func:`line_of`). Nothing here reads the environment or knows the settings' fields.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from verify.errors import ConfigError

TENANTS_FILE = "VERIFY_TENANTS_FILE"
#: Where gunicorn's master put the copy of the file it checked (gunicorn.conf.py): its workers read that copy, so a
#: file being rewritten during a reload is never read half-written, and a bad one leaves the last good one serving.
TENANTS_SNAPSHOT = "VERIFY_TENANTS_SNAPSHOT"
#: The tenant of the environment's own ``VERIFY_API_KEYS`` and ``VERIFY_SITE_KEYS``: it keeps the Redis keys the
#: deployment had before the file, so adding a file needs no migration.
IMPLICIT = "default"
TENANT_ID_RE = re.compile(r"[a-z0-9][a-z0-9_-]{0,31}")
KEY_HASH_RE = re.compile(r"sha256:([0-9a-f]{64})")

#: A tenant's fields and the variable each overrides, with the TOML type it takes.
FIELDS: dict[str, tuple[str, type]] = {
    "brand": ("VERIFY_BRAND", str),
    "code_length": ("VERIFY_CODE_LENGTH", int),
    "challenge_ttl": ("VERIFY_CHALLENGE_TTL", int),
    "max_attempts": ("VERIFY_MAX_ATTEMPTS", int),
    "max_sends": ("VERIFY_MAX_SENDS", int),
    "resend_cooldown": ("VERIFY_RESEND_COOLDOWN", int),
    "default_channels": ("VERIFY_DEFAULT_CHANNELS", list),
    "default_country": ("VERIFY_DEFAULT_COUNTRY", str),
    "default_locale": ("VERIFY_DEFAULT_LOCALE", str),
    "templates_dir": ("VERIFY_TEMPLATES_DIR", str),
    "allowed_countries": ("VERIFY_ALLOWED_COUNTRIES", list),
    "denied_number_types": ("VERIFY_DENIED_NUMBER_TYPES", list),
    "captcha_mode": ("VERIFY_CAPTCHA_MODE", str),
    "captcha_after": ("VERIFY_CAPTCHA_AFTER", int),
    "psd2": ("VERIFY_PSD2", bool),
    "sms_providers": ("VERIFY_SMS_PROVIDERS", list),
    "voice_providers": ("VERIFY_VOICE_PROVIDERS", list),
    "events_url": ("VERIFY_EVENTS_URL", str),
    "events_secret": ("VERIFY_EVENTS_SECRET", list),
}
#: The fields that are tables, and the variable each of their keys overrides.
TABLES: dict[str, dict[str, str]] = {
    "limits": {
        "ip": "VERIFY_LIMIT_IP",
        "phone": "VERIFY_LIMIT_PHONE",
        "prefix": "VERIFY_LIMIT_PREFIX",
        "country": "VERIFY_LIMIT_COUNTRY",
        "global": "VERIFY_LIMIT_GLOBAL",
        "check_ip": "VERIFY_LIMIT_CHECK_IP",
        "phone_failures": "VERIFY_LIMIT_PHONE_FAILURES",
        "voice_phone": "VERIFY_LIMIT_VOICE_PHONE",
        "voice_ip": "VERIFY_LIMIT_VOICE_IP",
        "captcha_challenges": "VERIFY_LIMIT_CAPTCHA_CHALLENGES",
    },
    "hook": {"url": "VERIFY_HOOK_URL", "secret": "VERIFY_HOOK_SECRET"},
}
#: The variables a tenant's keys are given to (the site keys' validator reads its form: ``pk=origin|origin``).
API_KEYS, SITE_KEYS = "api_keys", "site_keys"
SITE_KEYS_VARIABLE = "VERIFY_SITE_KEYS"


@dataclass(frozen=True)
class Spec:
    """One tenant as the file declares it: its id, the variables it overrides, and its API keys' hashes."""

    id: str
    environ: Mapping[str, str]
    api_key_hashes: tuple[str, ...]


class TenantsFile:
    """A tenants file's text, read once, with what finds a tenant's fields in it."""

    def __init__(self, path: str, text: str) -> None:
        self.path = path
        self.lines = text.splitlines()
        try:
            self.data = tomllib.loads(text)
        except tomllib.TOMLDecodeError as err:  # its message says "(at line N, column M)"
            raise ConfigError(TENANTS_FILE, f"{path}: not valid TOML: {err}") from None

    @classmethod
    def read(cls, path: str, source: str = "") -> TenantsFile:
        """The file at ``path`` (its text read from ``source`` when given: a copy of it), read whole at once."""
        try:
            with open(source or path, encoding="utf-8") as file:
                return cls(path, file.read())
        except (OSError, UnicodeDecodeError) as err:
            raise ConfigError(TENANTS_FILE, f"cannot be read as UTF-8 text ({err})") from None

    def error(self, tenant: str, field: str, message: str) -> ConfigError:
        """An error naming the file, the line of ``field`` in ``tenant`` (of its table when the field is not in
        the text), the tenant and the field."""
        return ConfigError(
            TENANTS_FILE, f"{self.path}, line {self.line_of(tenant, field)}: tenant {tenant!r}, {field}: {message}"
        )

    def line_of(self, tenant: str, field: str = "") -> int:
        """The 1-based line where ``field`` of ``tenant`` is written (``limits.ip``: its ``limits = ...`` line, or
        its ``ip = ...`` line in a ``[tenants.<id>.limits]`` table). Not found there: the line that declares the
        tenant (its ``[tenants.<id>]`` header, or ``<id> = ...`` under ``[tenants]``); else 1."""
        name = rf'(?:{re.escape(tenant)}|"{re.escape(tenant)}"|\'{re.escape(tenant)}\')'
        header = re.compile(rf"\s*\[\s*tenants\s*\.\s*{name}\s*(\.\s*([A-Za-z0-9_-]+)\s*)?\]")
        top, _, inner = field.partition(".")
        found, table = 0, None
        for number, line in enumerate(self.lines, 1):
            if re.match(r"\s*\[\s*tenants\s*\]", line):
                table = "[tenants]"
                continue
            if table == "[tenants]" and re.match(rf"\s*{name}\s*[.=]", line):
                found = found or number
            matched = header.match(line)
            if matched:
                table = matched.group(2) or ""
                found = found or number
                if table == top and inner:
                    found = number
                continue
            if line.lstrip().startswith("["):
                table = None
            key = inner if table == top and inner else top
            if table in ("", top) and field and re.match(rf"\s*{re.escape(key)}\s*=", line):
                return number
        return found or 1

    def specs(self, taken: Mapping[str, str] | None = None) -> list[Spec]:
        """Every tenant, checked for its shape (unknown fields, wrong types, a key of two tenants: ``taken`` has the
        environment's, key digest or site key -> its tenant); what its values mean is checked by the settings'
        readers."""
        unknown = sorted(set(self.data) - {"tenants"})
        if unknown:
            raise ConfigError(TENANTS_FILE, f"{self.path}: unknown table {unknown[0]!r}: declare [tenants.<id>]")
        tenants = self.data.get("tenants")
        if not isinstance(tenants, dict) or not tenants:
            raise ConfigError(TENANTS_FILE, f"{self.path}: declares no tenant: add a [tenants.<id>] table")
        specs, owners = [], dict(taken or {})
        for tenant, table in tenants.items():
            if not TENANT_ID_RE.fullmatch(tenant) or tenant == IMPLICIT:
                raise self.error(
                    tenant,
                    "id",
                    f"an id is 1 to 32 lowercase letters, digits, - or _, and not {IMPLICIT!r} (the environment's)",
                )
            if not isinstance(table, dict):
                raise self.error(tenant, "id", "must be a table: [tenants.<id>]")
            spec = self._spec(tenant, table)
            for key in (*spec.api_key_hashes, *_site_key_names(spec)):
                if key in owners:
                    field = API_KEYS if key in spec.api_key_hashes else SITE_KEYS
                    raise self.error(
                        tenant, field, f"{_short(key)} is tenant {owners[key]!r}'s too: a key has one tenant"
                    )
                owners[key] = tenant
            specs.append(spec)
        return specs

    def _spec(self, tenant: str, table: dict[str, Any]) -> Spec:
        environ: dict[str, str] = {}
        hashes: tuple[str, ...] = ()
        for field, value in table.items():
            if field == API_KEYS:
                hashes = self._hashes(tenant, value)
            elif field == SITE_KEYS:
                environ[SITE_KEYS_VARIABLE] = self._site_keys(tenant, value)
            elif field in TABLES:
                if not isinstance(value, dict):
                    raise self.error(tenant, field, f"must be a table such as {field} = {{ ... }}")
                for key, item in value.items():
                    variable = TABLES[field].get(key)
                    if variable is None:
                        raise self.error(
                            tenant, f"{field}.{key}", f"is not a field of {field} ({', '.join(TABLES[field])})"
                        )
                    environ[variable] = self._value(tenant, f"{field}.{key}", item, list if key == "secret" else str)
            elif field in FIELDS:
                variable, kind = FIELDS[field]
                environ[variable] = self._value(tenant, field, value, kind)
            else:
                known = ", ".join([API_KEYS, SITE_KEYS, *FIELDS, *TABLES])
                raise self.error(tenant, field, f"is not a tenant's field (known: {known})")
        if not hashes:
            raise self.error(tenant, API_KEYS, 'is required: a list of "sha256:<hex>" (verify hash-key makes one)')
        return Spec(tenant, environ, hashes)

    def _value(self, tenant: str, field: str, value: Any, kind: type) -> str:
        """``value`` in the form of its variable: a list comma-separated, a flag 1 or 0."""
        if kind is list:
            if isinstance(value, str):
                value = [value]
            if not isinstance(value, list) or not all(isinstance(v, str) and v and "," not in v for v in value):
                raise self.error(tenant, field, "must be a list of strings (without commas)")
            return ",".join(value)
        if kind is bool:
            if not isinstance(value, bool):
                raise self.error(tenant, field, "must be true or false")
            return "1" if value else "0"
        if kind is int:
            if isinstance(value, bool) or not isinstance(value, int):
                raise self.error(tenant, field, "must be a whole number")
            return str(value)
        if not isinstance(value, str):
            raise self.error(tenant, field, "must be a string")
        if not value.strip():
            raise self.error(tenant, field, "must not be empty (leave the field out to keep the environment's)")
        return value

    def _hashes(self, tenant: str, value: Any) -> tuple[str, ...]:
        if not isinstance(value, list) or not value:
            raise self.error(tenant, API_KEYS, 'must be a list of "sha256:<hex>" (verify hash-key makes one)')
        hashes = []
        for item in value:
            matched = KEY_HASH_RE.fullmatch(item) if isinstance(item, str) else None
            if matched is None:
                raise self.error(
                    tenant, API_KEYS, 'each must be "sha256:" and 64 lowercase hex digits: verify hash-key makes one'
                )
            if matched.group(1) in hashes:
                raise self.error(tenant, API_KEYS, f"lists {_short(matched.group(1))} twice")
            hashes.append(matched.group(1))
        return tuple(hashes)

    def _site_keys(self, tenant: str, value: Any) -> str:
        if not isinstance(value, dict):
            raise self.error(tenant, SITE_KEYS, 'must be a table: { pk_shop = ["https://shop.example"] }')
        items = []
        for key, origins in value.items():
            if isinstance(origins, str):
                origins = [origins]
            if not isinstance(origins, list) or not all(
                isinstance(o, str) and o and not set(o) & set(",|=") for o in origins
            ):
                raise self.error(tenant, SITE_KEYS, f'{key} must list its origins: ["https://shop.example"]')
            items.append(f"{key}={'|'.join(origins)}")
        return ",".join(items)


def field_of(variable: str) -> str:
    """The tenant's field that sets ``variable`` (``limits.ip`` for ``VERIFY_LIMIT_IP``); the variable itself
    when no field does (a tenant's value that the environment's value of another variable refuses)."""
    if variable == SITE_KEYS_VARIABLE:
        return SITE_KEYS
    fields = {var: name for name, (var, _) in FIELDS.items()}
    fields |= {var: f"{table}.{key}" for table, keys in TABLES.items() for key, var in keys.items()}
    return fields.get(variable, variable)


def _site_key_names(spec: Spec) -> list[str]:
    listed = spec.environ.get(SITE_KEYS_VARIABLE, "")
    return [item.partition("=")[0] for item in listed.split(",") if item]


def _short(key: str) -> str:
    """A key's hash or a site key as an error shows it: a site key whole (it is public), a hash by its start."""
    return key if key.startswith("pk_") else f"sha256:{key[:12]}..."


def hash_key(key: str) -> str:
    """What the tenants file lists for an API key: ``sha256:<hex>`` (``verify hash-key``)."""
    return "sha256:" + key_digest(key)


def key_digest(key: str) -> str:
    """The hex SHA-256 of an API key: how a request's bearer key finds its tenant."""
    return hashlib.sha256(key.encode()).hexdigest()


def tenant_secrets(secret_keys: tuple[str, ...], tenant: str) -> str:
    """A tenant's own secret keys, derived from the deployment's (``VERIFY_SECRET_KEY``), in its variable's form:
    its codes' HMACs, client secrets and proof tokens are signed with keys no other tenant has, so a token made for
    one tenant fails every other's check. Rotation carries over: each deployment key derives one."""
    return ",".join(
        hmac.new(key.encode(), f"verify tenant {tenant}".encode(), hashlib.sha256).hexdigest() for key in secret_keys
    )
