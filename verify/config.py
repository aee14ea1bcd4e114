"""Settings: the only module that reads the environment.

Every setting is read once, validated at start, and kept in a frozen :class:`Settings`. Each is declared once, on
its field: the variable, its reader and whether it is secret (``verify/env.py``), which serves both
:meth:`Settings.from_env` and :meth:`Settings.describe` (``verify check-config``). A gateway declares its own
settings in its module (``SmscSettings`` in ``verify/providers/smsc.py``, ...); they are read by walking the gateway
list (``verify/gateways.py``), never written here. A bad value raises :class:`~verify.errors.ConfigError`, whose
message names the variable.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import phonenumbers
from limits import parse_many

from verify import env
from verify.env import Env
from verify.errors import ConfigError
from verify.gateways import GATEWAYS, Gateway
from verify.logs import DEFAULT_LOG_FORMAT, LOG_FORMAT, LOG_FORMATS
from verify.sms import BUILTIN_TEMPLATES, LOCALE_RE, TEMPLATE_KINDS, BadTemplate, check_template, measure
from verify.tenants import IMPLICIT, TENANTS_FILE, TENANTS_SNAPSHOT, TenantsFile, field_of, key_digest, tenant_secrets

log = logging.getLogger(__name__)

# Variables other modules name.
API_KEYS = "VERIFY_API_KEYS"
SECRET_KEY = "VERIFY_SECRET_KEY"  # noqa: S105 - a variable name
REDIS_URL = "VERIFY_REDIS_URL"
REDIS_MIN_REPLICAS = "VERIFY_REDIS_MIN_REPLICAS"
SANDBOX = "VERIFY_SANDBOX"
SMS_PROVIDERS = "VERIFY_SMS_PROVIDERS"
CALL_PROVIDER = "VERIFY_CALL_PROVIDER"
VOICE_PROVIDERS = "VERIFY_VOICE_PROVIDERS"
TELEGRAM_TOKEN = "VERIFY_TELEGRAM_TOKEN"  # noqa: S105 - a variable name
DEFAULT_CHANNELS = "VERIFY_DEFAULT_CHANNELS"
FALLBACK_AFTER = "VERIFY_FALLBACK_AFTER"
PSD2 = "VERIFY_PSD2"
#: The channels a fallback chain may hold: those that carry a code (a ``call`` verification is confirmed by the
#: person's call, and has no code to send again).
CODE_CHANNELS = ("sms", "voice", "telegram")
TELEGRAM_MAX_CODE = 8  # digits of a code Telegram's Gateway API sends
PUBLIC_URL = "VERIFY_PUBLIC_URL"
EVENTS_URL = "VERIFY_EVENTS_URL"
SITE_KEYS = "VERIFY_SITE_KEYS"
METRICS_TOKEN = "VERIFY_METRICS_TOKEN"  # noqa: S105 - a variable name
METRICS_DIR = "PROMETHEUS_MULTIPROC_DIR"

BRAND = "VERIFY_BRAND"
TEMPLATES_DIR = "VERIFY_TEMPLATES_DIR"
DEFAULT_BRAND = "Verify"
MAX_BRAND_LENGTH = 30
# phonenumbers' number types, by the names VERIFY_DENIED_NUMBER_TYPES uses.
NUMBER_TYPES: dict[str, int] = {
    "fixed_line": phonenumbers.PhoneNumberType.FIXED_LINE,
    "mobile": phonenumbers.PhoneNumberType.MOBILE,
    "fixed_line_or_mobile": phonenumbers.PhoneNumberType.FIXED_LINE_OR_MOBILE,
    "toll_free": phonenumbers.PhoneNumberType.TOLL_FREE,
    "premium_rate": phonenumbers.PhoneNumberType.PREMIUM_RATE,
    "shared_cost": phonenumbers.PhoneNumberType.SHARED_COST,
    "voip": phonenumbers.PhoneNumberType.VOIP,
    "personal_number": phonenumbers.PhoneNumberType.PERSONAL_NUMBER,
    "pager": phonenumbers.PhoneNumberType.PAGER,
    "uan": phonenumbers.PhoneNumberType.UAN,
    "voicemail": phonenumbers.PhoneNumberType.VOICEMAIL,
    "unknown": phonenumbers.PhoneNumberType.UNKNOWN,
}
CAPTCHA_MODES = ("adaptive", "always", "off")
# siteverify endpoints of the token captchas; "builtin" draws its own images.
CAPTCHA_VERIFY_URLS = {
    "builtin": "",
    "turnstile": "https://challenges.cloudflare.com/turnstile/v0/siteverify",
    "hcaptcha": "https://api.hcaptcha.com/siteverify",
    "recaptcha": "https://www.google.com/recaptcha/api/siteverify",
}
MIN_SECRET_LENGTH = 16
MIN_API_KEY_LENGTH = 16


# readers of this module's settings (the generic ones are in verify/env.py)


def _min_replicas(e: Env, name: str, default: Any, seen: Mapping[str, Any]) -> Any:
    count = env.integer(0, 16)(e, name, default, seen)
    if count and not seen["redis_url"].startswith("redis+sentinel://"):
        raise ConfigError(
            name, "applies to redis+sentinel:// only: the replicas of the sentinels' master confirm writes"
        )
    return count


def _keys(min_length: int, *, tenants_may_hold: bool = False) -> env.Reader:
    """A key list, newest first; ``tenants_may_hold``: empty is allowed when a tenants file gives the keys (and for a
    tenant, whose keys are its own)."""

    def reader(e: Env, name: str, default: Any, seen: Mapping[str, Any]) -> Any:
        keys = tuple(k.strip() for k in e.get(name, "").split(",") if k.strip())
        if not keys and tenants_may_hold and (env.raw(e, TENANTS_FILE) or seen.get("tenant")):
            return ()
        if not keys:
            raise ConfigError(name, "is required: a comma-separated list of keys, the newest first")
        if any(len(k) < min_length for k in keys):
            raise ConfigError(name, f"every key must be at least {min_length} characters long")
        return keys

    return reader


def _country(e: Env, name: str, default: Any, seen: Mapping[str, Any]) -> Any:
    code = env.raw(e, name).upper()
    if code and code not in phonenumbers.SUPPORTED_REGIONS:
        raise ConfigError(name, f"must be an ISO 3166-1 alpha-2 region, not {code!r}")
    return code or None


def _countries(e: Env, name: str, default: Any, seen: Mapping[str, Any]) -> Any:
    codes = tuple(c.strip().upper() for c in e.get(name, "").split(",") if c.strip())
    unknown = [c for c in codes if c not in phonenumbers.SUPPORTED_REGIONS]
    if unknown:
        raise ConfigError(name, f"must list ISO 3166-1 alpha-2 regions; unknown: {', '.join(unknown)}")
    return codes


def _number_types(e: Env, name: str, default: Any, seen: Mapping[str, Any]) -> Any:
    if name not in e:  # set but empty denies none
        return default
    names = tuple(n.strip().lower() for n in e[name].split(",") if n.strip())
    unknown = [n for n in names if n not in NUMBER_TYPES]
    if unknown:
        raise ConfigError(name, f"must list types from {', '.join(NUMBER_TYPES)}; unknown: {', '.join(unknown)}")
    return names


def minutes_of(challenge_ttl: int) -> int:
    """The ``{minutes}`` of the texts: how long a code stays valid, in whole minutes rounded up."""
    return -(-challenge_ttl // 60)


def _brand(e: Env, name: str, default: Any, seen: Mapping[str, Any]) -> Any:
    brand = env.raw(e, name) or default
    if len(brand) > MAX_BRAND_LENGTH or any(not ch.isprintable() for ch in brand):
        raise ConfigError(name, f"must be a product name of at most {MAX_BRAND_LENGTH} printable characters")
    return brand


def _template(channel: str) -> env.Reader:
    """An override of one template from a variable (``VERIFY_SMS_TEMPLATE``: sms.en); unset: ""."""

    def reader(e: Env, name: str, default: Any, seen: Mapping[str, Any]) -> Any:
        template = e.get(name, "")
        if template:
            try:
                check_template(template, channel, seen["brand"], minutes_of(seen["challenge_ttl"]))
            except BadTemplate as err:
                raise ConfigError(name, str(err)) from None
        return template

    return reader


TEMPLATE_FILE_RE = re.compile(rf"({'|'.join(TEMPLATE_KINDS)})\.({LOCALE_RE.pattern})\.txt")


def _template_files(e: Env, name: str, default: Any, seen: Mapping[str, Any]) -> Any:
    """The templates of ``VERIFY_TEMPLATES_DIR``, one file per kind and locale (``sms.de.txt``, ``voice.pt-br.txt``,
    ``sms-payment.de.txt``), as ``((kind, locale, template), ...)``; each is checked like a built-in one."""
    directory = env.raw(e, TEMPLATES_DIR)
    if not directory:
        return ()
    if not os.path.isdir(directory):
        raise ConfigError(TEMPLATES_DIR, f"must name an existing directory, not {directory!r}")
    found: list[tuple[str, str, str]] = []
    for entry in sorted(os.listdir(directory)):
        if entry.startswith("."):
            continue
        matched = TEMPLATE_FILE_RE.fullmatch(entry)
        if not matched:
            raise ConfigError(
                TEMPLATES_DIR,
                f"has {entry!r}: name each file <kind>.<locale>.txt, the kind one of {', '.join(TEMPLATE_KINDS)} "
                "and the locale a BCP 47 tag (sms.de.txt, voice.pt-br.txt, sms-payment.de.txt)",
            )
        channel, locale = matched.group(1), matched.group(2).replace("_", "-").lower()
        try:
            with open(os.path.join(directory, entry), encoding="utf-8") as file:
                template = file.read().strip()
        except (OSError, UnicodeDecodeError) as err:
            raise ConfigError(TEMPLATES_DIR, f"{entry}: cannot be read as UTF-8 ({err})") from None
        try:
            check_template(template, channel, seen["brand"], minutes_of(seen["challenge_ttl"]))
        except BadTemplate as err:
            raise ConfigError(TEMPLATES_DIR, f"{entry} {err}") from None
        overridden = {"en": "VERIFY_SMS_TEMPLATE", "ru": "VERIFY_SMS_TEMPLATE_RU"}.get(locale)
        if channel == "sms" and overridden and e.get(overridden):
            raise ConfigError(TEMPLATES_DIR, f"{entry} and {overridden} both set sms.{locale}: keep one")
        found.append((channel, locale, template))
    return tuple(found)


def _default_locale(e: Env, name: str, default: Any, seen: Mapping[str, Any]) -> Any:
    locale = (env.raw(e, name) or default).replace("_", "-").lower()
    known = set(BUILTIN_TEMPLATES["sms"]) | {loc for channel, loc, _ in seen["template_files"] if channel == "sms"}
    if locale not in known:
        raise ConfigError(name, f"must be a locale with an SMS template ({', '.join(sorted(known))}), not {locale!r}")
    return locale


def _limit(e: Env, name: str, default: Any, seen: Mapping[str, Any]) -> Any:
    """Limits such as ``3/10 minutes;10/day``; ``none`` (or ``off``) switches a limit with a default off."""
    value = env.raw(e, name)
    if not value:
        return default
    if value.lower() in ("none", "off", "0"):
        return ""
    try:
        parse_many(value)
    except ValueError:
        raise ConfigError(name, f"must be limits such as '3/10 minutes;10/day', not {value!r}") from None
    return value


def _chain(channel: str) -> env.Reader:
    """An ordered failover chain of the gateways that serve ``channel``. Unset: the sandbox in sandbox mode; else
    the SMS chain is required, and any other channel is off (``()``)."""

    def reader(e: Env, name: str, default: Any, seen: Mapping[str, Any]) -> Any:
        value = env.raw(e, name)
        if not value:
            if seen["sandbox"]:
                return ("sandbox",)
            if channel == "sms":
                raise ConfigError(name, "is required outside sandbox mode (or set VERIFY_SANDBOX=1)")
            return ()
        names = tuple(n.strip().lower() for n in value.split(",") if n.strip())
        known = [gateway.name for gateway in seen["gateways"] if channel in gateway.channels]
        if any(n not in known for n in names) or len(set(names)) != len(names):
            raise ConfigError(name, f"must list distinct providers from {', '.join(known)}")
        return names

    return reader


def _telegram(e: Env, name: str, default: Any, seen: Mapping[str, Any]) -> Any:
    """The telegram channel's gateway: Telegram's own Gateway API once ``VERIFY_TELEGRAM_TOKEN`` is set, else the
    sandbox in sandbox mode, else none (the channel is off)."""
    if env.raw(e, TELEGRAM_TOKEN):
        if seen["code_length"] > TELEGRAM_MAX_CODE:
            raise ConfigError(
                "VERIFY_CODE_LENGTH",
                f"must be at most {TELEGRAM_MAX_CODE} with Telegram: it sends codes of 4 to 8 digits",
            )
        return ("telegram",)
    return ("sandbox",) if seen["sandbox"] else ()


def _call_provider(e: Env, name: str, default: Any, seen: Mapping[str, Any]) -> Any:
    value = env.raw(e, name).lower()
    if not value:
        return "sandbox" if seen["sandbox"] else None
    known = [gateway.name for gateway in seen["gateways"] if "call" in gateway.channels]
    if value not in known:
        raise ConfigError(name, f"must be one of {', '.join(known)}")
    return value


def _default_channels(e: Env, name: str, default: Any, seen: Mapping[str, Any]) -> Any:
    """The channel, or the fallback chain, of a start that names none: configured channels, distinct; a chain of
    two or more only of channels that carry a code."""
    value = env.raw(e, name)
    if not value:
        return default
    names = tuple(n.strip().lower() for n in value.split(",") if n.strip())
    configured = {
        "sms": seen["sms_providers"],
        "voice": seen["voice_providers"],
        "telegram": seen["telegram_providers"],
        "call": seen["call_provider"],
    }
    allowed = CODE_CHANNELS if len(names) > 1 else tuple(configured)
    if not names or len(set(names)) != len(names) or any(n not in allowed for n in names):
        raise ConfigError(name, f"must list distinct channels from {', '.join(allowed)} (a chain carries a code)")
    off = [n for n in names if not configured[n]]
    if off:
        raise ConfigError(name, f"names {', '.join(off)}, which no gateway serves here")
    return names


def _gateways(e: Env, name: str, default: Any, seen: Mapping[str, Any]) -> Any:
    """The gateway list :meth:`Settings.from_env` was given (its readers look at it in ``seen``)."""
    return tuple(seen.get("gateways", default))


def _gateway_settings(e: Env, name: str, default: Any, seen: Mapping[str, Any]) -> Any:
    """Each gateway's own settings, by walking the list, read only when it is named in the SMS chain or as the call
    provider."""
    named = {*seen["sms_providers"], *seen["voice_providers"], *seen["telegram_providers"], seen["call_provider"]}
    return {
        gateway.name: env.read(gateway.settings, e, seen)
        for gateway in seen["gateways"]
        if gateway.settings is not None and gateway.name in named
    }


def _captcha_secret(e: Env, name: str, default: Any, seen: Mapping[str, Any]) -> Any:
    provider = seen["captcha_provider"]
    return (
        env.required(f"VERIFY_CAPTCHA_PROVIDER is {provider}")(e, name, default, seen) if provider != "builtin" else ""
    )


def _captcha_url(e: Env, name: str, default: Any, seen: Mapping[str, Any]) -> Any:
    return env.url()(e, name, None, seen) or CAPTCHA_VERIFY_URLS[seen["captcha_provider"]]


def _fraction(e: Env, name: str, default: Any, seen: Mapping[str, Any]) -> Any:
    value = env.raw(e, name)
    try:
        share = float(value) if value else default
    except ValueError:
        raise ConfigError(name, f"must be a number between 0 and 1, not {value!r}") from None
    if not 0 < share <= 1:
        raise ConfigError(name, f"must be more than 0 and at most 1, not {share}")
    return share


SITE_KEY_RE = re.compile(r"pk_[A-Za-z0-9_-]{3,64}")
ORIGIN_RE = re.compile(r"https?://[a-z0-9.-]+(?::[0-9]{1,5})?")


def _site_keys(e: Env, name: str, default: Any, seen: Mapping[str, Any]) -> Any:
    """``pk_shop=https://shop.example|https://www.shop.example,pk_two=...`` as ``((key, origins), ...)``."""
    keys: dict[str, tuple[str, ...]] = {}
    for item in (i.strip() for i in env.raw(e, name).split(",") if i.strip()):
        key, _, listed = item.partition("=")
        key = key.strip()
        if not SITE_KEY_RE.fullmatch(key):
            raise ConfigError(name, f"names a key {key!r}: a site key is pk_ and 3 to 64 letters, digits, - or _")
        origins = tuple(o.strip().lower().rstrip("/") for o in listed.split("|") if o.strip())
        bad = [o for o in origins if not ORIGIN_RE.fullmatch(o)]
        if not origins or bad:
            raise ConfigError(
                name,
                f"gives {key} {', '.join(bad) or 'no origin'}: list origins as "
                "scheme://host[:port] (no path), separated by |",
            )
        if key in keys:
            raise ConfigError(name, f"lists {key} twice")
        keys[key] = origins
    return tuple(keys.items()) or default


def _directory(e: Env, name: str, default: Any, seen: Mapping[str, Any]) -> Any:
    value = env.raw(e, name)
    if value and not os.path.isdir(value):
        raise ConfigError(name, f"must name an existing directory, not {value!r}")
    return value or default


def _events_secret_needed(e: Env, seen: Mapping[str, Any]) -> str | None:
    return f"{EVENTS_URL} is set" if seen["events_url"] else None


def _tenants(e: Env, name: str, default: Any, seen: Mapping[str, Any]) -> Any:
    """Each tenant of ``VERIFY_TENANTS_FILE`` (as gunicorn's master last checked it: ``VERIFY_TENANTS_SNAPSHOT``),
    read as the environment with the tenant's fields over it. What is the deployment's own is not a tenant's: its
    Redis keys are under ``<VERIFY_REDIS_PREFIX>t:<id>:`` (its phones' quotas excepted, verify/store/keys.py), its
    secret keys are derived from ``VERIFY_SECRET_KEY``, and its API keys, site keys, events receiver and global
    limit are only those the file gives it."""
    path = env.raw(e, TENANTS_FILE)
    if not path or seen.get("tenant"):
        return default
    file = TenantsFile.read(path, env.raw(e, TENANTS_SNAPSHOT) or path)
    tenants = []
    taken = {key_digest(key): IMPLICIT for key in seen["api_keys"]} | {key: IMPLICIT for key, _ in seen["site_keys"]}
    for spec in file.specs(taken):
        own = {
            **e,
            API_KEYS: "",
            SITE_KEYS: "",
            "VERIFY_LIMIT_GLOBAL": "",  # the deployment's cap over all tenants; a tenant's own is its limits.global
            # Events carry a tenant's phones and tokens: they go to its own receiver or nowhere, never another's.
            EVENTS_URL: "",
            "VERIFY_EVENTS_SECRET": "",
            **spec.environ,
            SECRET_KEY: tenant_secrets(seen["secret_keys"], spec.id),
            "VERIFY_REDIS_PREFIX": f"{seen['redis_prefix']}t:{spec.id}:",
        }
        try:
            settings = env.read(Settings, own, {"gateways": seen["gateways"], "tenant": spec.id})
        except ConfigError as err:
            message = str(err).removeprefix(f"{err.variable} ")
            raise file.error(spec.id, field_of(err.variable), message) from None
        if settings.events_url and not settings.events_url.startswith("https://") and not settings.sandbox:
            raise file.error(spec.id, "events_url", "must be an https URL outside sandbox mode: events carry tokens")
        tenants.append(Tenant(spec.id, settings, spec.api_key_hashes))
    return tuple(tenants)


def _var(name: str, read: env.Reader, *, secret: bool = False) -> dict[str, Any]:
    return env.var(name, read, secret=secret)


@dataclass(frozen=True)
class Settings:
    """Validated settings. Build with :meth:`from_env`; tests use :func:`dataclasses.replace`."""

    api_keys: tuple[str, ...] = field(
        metadata=_var(API_KEYS, _keys(MIN_API_KEY_LENGTH, tenants_may_hold=True), secret=True)
    )
    secret_keys: tuple[str, ...] = field(metadata=_var(SECRET_KEY, _keys(MIN_SECRET_LENGTH), secret=True))
    # One server (redis://, rediss://), a cluster (redis+cluster://) or a sentinel's master (redis+sentinel://): the
    # store reads its forms (verify.store.connection.parse_url), and refuses a wrong one when the app starts.
    redis_url: str = field(default="redis://127.0.0.1:6379/0", metadata=_var(REDIS_URL, env.text))
    redis_prefix: str = field(default="verify:", metadata=_var("VERIFY_REDIS_PREFIX", env.text))
    # Sentinel: how many replicas must confirm a write (WAIT) before it is acknowledged. 0: each write waits for one
    # replica while the master has one online, and goes on unconfirmed (degraded) while it has none, as Redis's own
    # min-replicas-to-write 0 does; 1 or more: fewer confirming replicas give 503 (the write may have been applied).
    redis_min_replicas: int = field(default=0, metadata=_var(REDIS_MIN_REPLICAS, _min_replicas))
    challenge_ttl: int = field(default=900, metadata=_var("VERIFY_CHALLENGE_TTL", env.integer(1, 86400)))
    code_length: int = field(default=6, metadata=_var("VERIFY_CODE_LENGTH", env.integer(4, 10)))
    max_attempts: int = field(default=5, metadata=_var("VERIFY_MAX_ATTEMPTS", env.integer(1, 100)))
    max_sends: int = field(default=5, metadata=_var("VERIFY_MAX_SENDS", env.integer(1, 100)))
    resend_cooldown: int = field(default=30, metadata=_var("VERIFY_RESEND_COOLDOWN", env.integer(0, 86400)))
    token_ttl: int = field(default=3600, metadata=_var("VERIFY_TOKEN_TTL", env.integer(1, 30 * 86400)))
    idempotency_ttl: int = field(default=86400, metadata=_var("VERIFY_IDEMPOTENCY_TTL", env.integer(60, 7 * 86400)))
    default_country: str | None = field(default=None, metadata=_var("VERIFY_DEFAULT_COUNTRY", _country))
    sandbox: bool = field(default=False, metadata=_var(SANDBOX, env.flag))
    # The texts: the product's name in them, overrides of the built-in templates (verify/sms.py), the fallback locale.
    brand: str = field(default=DEFAULT_BRAND, metadata=_var(BRAND, _brand))
    sms_template: str = field(default="", metadata=_var("VERIFY_SMS_TEMPLATE", _template("sms")))  # sms.en
    sms_template_ru: str = field(default="", metadata=_var("VERIFY_SMS_TEMPLATE_RU", _template("sms")))  # sms.ru
    template_files: tuple[tuple[str, str, str], ...] = field(default=(), repr=False, metadata=_var("", _template_files))
    templates_dir: str | None = field(default=None, metadata=_var(TEMPLATES_DIR, env.text))
    default_locale: str = field(default="en", metadata=_var("VERIFY_DEFAULT_LOCALE", _default_locale))
    # The gateways this service can use (verify/gateways.py): what the two variables below may name.
    gateways: tuple[Gateway[Any], ...] = field(default=GATEWAYS, repr=False, metadata=_var("", _gateways))
    sms_providers: tuple[str, ...] = field(default=("sandbox",), metadata=_var(SMS_PROVIDERS, _chain("sms")))
    call_provider: str | None = field(default="sandbox", metadata=_var(CALL_PROVIDER, _call_provider))
    # The gateways that speak a code (channel voice), in failover order; unset outside sandbox mode: voice is off.
    voice_providers: tuple[str, ...] = field(default=("sandbox",), metadata=_var(VOICE_PROVIDERS, _chain("voice")))
    # The gateway of the telegram channel (set by VERIFY_TELEGRAM_TOKEN, see _telegram).
    telegram_providers: tuple[str, ...] = field(default=("sandbox",), metadata=_var("", _telegram))
    # What a start that names no channel does: one channel, or a fallback chain ("telegram,sms,voice"); () is "sms".
    default_channels: tuple[str, ...] = field(default=(), metadata=_var(DEFAULT_CHANNELS, _default_channels))
    # How long a fallback chain's step waits for an approval before the next one is sent (a start may say per step).
    fallback_after: int = field(default=60, metadata=_var(FALLBACK_AFTER, env.integer(1, 86400)))
    # PSD2 dynamic linking: every start must name the payment its code approves (its `context`).
    psd2: bool = field(default=False, metadata=_var(PSD2, env.flag))
    # How long a send may take before its reservation lapses (and a fallback step's claim with it, for another worker
    # to take): the whole gateway chain, with its timeouts, must fit in it.
    send_lease: int = field(default=120, metadata=_var("VERIFY_SEND_LEASE", env.integer(5, 3600)))
    public_url: str | None = field(default=None, metadata=_var(PUBLIC_URL, env.url()))
    http_connect_timeout: float = field(
        default=3.0, metadata=_var("VERIFY_HTTP_CONNECT_TIMEOUT", env.number(120, "seconds"))
    )
    http_read_timeout: float = field(
        default=10.0, metadata=_var("VERIFY_HTTP_READ_TIMEOUT", env.number(120, "seconds"))
    )
    breaker_failures: int = field(default=5, metadata=_var("VERIFY_BREAKER_FAILURES", env.integer(1, 1000)))
    breaker_cooldown: int = field(default=60, metadata=_var("VERIFY_BREAKER_COOLDOWN", env.integer(1, 86400)))
    # The settings of each gateway in use that has settings, by name, in the list's order ({"smsc": SmscSettings}).
    gateway_settings: Mapping[str, Any] = field(default_factory=dict, metadata=_var("", _gateway_settings))
    webhook_max_age: int = field(default=900, metadata=_var("VERIFY_WEBHOOK_MAX_AGE", env.integer(60, 86400)))
    events_url: str | None = field(default=None, metadata=_var(EVENTS_URL, env.url()))
    # The first signs.
    events_secrets: tuple[str, ...] = field(
        default=(), metadata=_var("VERIFY_EVENTS_SECRET", env.secrets(required_when=_events_secret_needed), secret=True)
    )
    # Abuse limits in the notation of the limits library ("3/10 minutes;10/day"); "" means no limit.
    limit_phone: str = field(default="3/10 minutes;10/day", metadata=_var("VERIFY_LIMIT_PHONE", _limit))
    # A spoken code costs more than an SMS and rings a phone: voice sends take these too, on top of all the others.
    limit_voice_phone: str = field(default="2/10 minutes;4/day", metadata=_var("VERIFY_LIMIT_VOICE_PHONE", _limit))
    limit_voice_ip: str = field(default="5/hour;20/day", metadata=_var("VERIFY_LIMIT_VOICE_IP", _limit))
    limit_ip: str = field(default="10/hour;50/day", metadata=_var("VERIFY_LIMIT_IP", _limit))
    limit_prefix: str = field(default="20/hour", metadata=_var("VERIFY_LIMIT_PREFIX", _limit))
    limit_country: str = field(default="", metadata=_var("VERIFY_LIMIT_COUNTRY", _limit))
    limit_global: str = field(default="", metadata=_var("VERIFY_LIMIT_GLOBAL", _limit))
    limit_check_ip: str = field(default="60/minute", metadata=_var("VERIFY_LIMIT_CHECK_IP", _limit))
    limit_phone_failures: str = field(default="100/day", metadata=_var("VERIFY_LIMIT_PHONE_FAILURES", _limit))
    limit_captcha_challenges: str = field(
        default="10/minute;60/day", metadata=_var("VERIFY_LIMIT_CAPTCHA_CHALLENGES", _limit)
    )
    trusted_proxies: int = field(default=0, metadata=_var("VERIFY_TRUSTED_PROXIES", env.integer(0, 10)))
    allowed_countries: tuple[str, ...] = field(default=(), metadata=_var("VERIFY_ALLOWED_COUNTRIES", _countries))
    denied_number_types: tuple[str, ...] = field(
        default=("premium_rate", "shared_cost", "voip", "uan", "pager"),
        metadata=_var("VERIFY_DENIED_NUMBER_TYPES", _number_types),
    )
    captcha_mode: str = field(default="adaptive", metadata=_var("VERIFY_CAPTCHA_MODE", env.choice(*CAPTCHA_MODES)))
    captcha_after: int = field(default=3, metadata=_var("VERIFY_CAPTCHA_AFTER", env.integer(1, 100000)))
    captcha_provider: str = field(
        default="builtin", metadata=_var("VERIFY_CAPTCHA_PROVIDER", env.choice(*CAPTCHA_VERIFY_URLS))
    )
    captcha_secret: str = field(default="", metadata=_var("VERIFY_CAPTCHA_SECRET", _captcha_secret, secret=True))
    captcha_verify_url: str = field(default="", metadata=_var("VERIFY_CAPTCHA_VERIFY_URL", _captcha_url))
    pumping_threshold: float = field(default=0.8, metadata=_var("VERIFY_PUMPING_THRESHOLD", _fraction))
    pumping_min_starts: int = field(default=50, metadata=_var("VERIFY_PUMPING_MIN_STARTS", env.integer(1, 10**9)))
    # json (one object per line) or text. gunicorn's logger class writes the lines; gunicorn.conf.py picks it from this
    # same variable with verify.logs.log_format, which reads it as this field does (verify/logs.py says why there).
    log_format: str = field(default=DEFAULT_LOG_FORMAT, metadata=_var(LOG_FORMAT, env.choice(*LOG_FORMATS)))
    # Publishable keys of the web widget and the origins each may be used from: ((key, (origin, ...)), ...).
    site_keys: tuple[tuple[str, tuple[str, ...]], ...] = field(default=(), metadata=_var(SITE_KEYS, _site_keys))
    # Bearer tokens that GET /metrics asks for (any listed one works); unset, /metrics is open like /healthz.
    metrics_tokens: tuple[str, ...] = field(default=(), metadata=_var(METRICS_TOKEN, env.secrets(), secret=True))
    # prometheus_client's multiprocess directory: where each gunicorn worker writes its samples, so that /metrics
    # adds them up (gunicorn.conf.py and `verify dev` set it; unset, each process counts alone).
    metrics_dir: str | None = field(default=None, metadata=_var(METRICS_DIR, _directory))
    # Many products in one deployment (verify/tenants.py): the file, and each tenant it declares, read last (a
    # tenant's settings are these with its own fields over them).
    tenants_file: str | None = field(default=None, metadata=_var(TENANTS_FILE, env.text))
    tenants: tuple[Tenant, ...] = field(default=(), repr=False, metadata=_var("", _tenants))

    @classmethod
    def from_env(
        cls, environ: Mapping[str, str] | None = None, gateways: Sequence[Gateway[Any]] = GATEWAYS
    ) -> Settings:
        """Read and validate every ``VERIFY_*`` variable (``os.environ`` by default), those of ``gateways``
        (the list in ``verify/gateways.py`` by default) included."""
        settings = env.read(cls, os.environ if environ is None else environ, {"gateways": tuple(gateways)})
        _warn(settings)
        return settings

    def describe(self) -> list[tuple[str, str]]:
        """Every setting as ``(variable, value)`` for operators, secrets masked."""
        return env.describe(self)

    def warnings(self) -> list[str]:
        """What this configuration allows that weakens the service: logged at start and shown by check-config."""
        return [risk for gateway, own in self.configured_gateways() for risk in gateway.risks(own)]

    def configured_gateways(self) -> Iterator[tuple[Gateway[Any], Any]]:
        """Each gateway that has its settings here, with them, in the list's order."""
        for gateway in self.gateways:
            if gateway.name in self.gateway_settings:
                yield gateway, self.gateway_settings[gateway.name]

    def site_key_origins(self, key: str) -> tuple[str, ...] | None:
        """The origins a site key may be used from; ``None`` for a key that is not configured."""
        return dict(self.site_keys).get(key)

    def templates(self) -> dict[str, dict[str, str]]:
        """Every text template, by channel then locale: the built-in ones, then the files of
        ``VERIFY_TEMPLATES_DIR``, then ``VERIFY_SMS_TEMPLATE`` (sms.en) and ``VERIFY_SMS_TEMPLATE_RU`` (sms.ru)."""
        table = {channel: dict(builtin) for channel, builtin in BUILTIN_TEMPLATES.items()}
        for channel, locale, template in self.template_files:
            table[channel][locale] = template
        for locale, template in (("en", self.sms_template), ("ru", self.sms_template_ru)):
            if template:
                table["sms"][locale] = template
        return table

    def tenant_list(self) -> list[Tenant]:
        """Every tenant: the environment's own (:data:`~verify.tenants.IMPLICIT`, with ``VERIFY_API_KEYS`` and
        ``VERIFY_SITE_KEYS``; the only one without a tenants file), then the file's."""
        implicit = replace(self, limit_global="", tenants=()) if self.tenants else self  # its cap is everyone's
        return [Tenant(IMPLICIT, implicit, tuple(key_digest(key) for key in self.api_keys)), *self.tenants]

    @property
    def deployment_cap(self) -> str:
        """With a tenants file, ``VERIFY_LIMIT_GLOBAL`` caps every tenant's sends together (``deployment``)."""
        return self.limit_global if self.tenants else ""

    @property
    def fallback_wait(self) -> int:
        """How long a fallback step waits when the start gives no ``wait``: ``VERIFY_FALLBACK_AFTER``, at most the
        challenge's life (a longer wait would outlive the code it waits on)."""
        return min(self.fallback_after, self.challenge_ttl)

    @property
    def minutes(self) -> int:
        """The texts' ``{minutes}`` (:func:`minutes_of`)."""
        return minutes_of(self.challenge_ttl)

    @property
    def providers(self) -> tuple[str, ...]:
        """Every gateway in use, once each: the SMS chain, the voice chain, the telegram gateway, the call provider."""
        named = (
            *self.sms_providers,
            *self.voice_providers,
            *self.telegram_providers,
            *((self.call_provider,) if self.call_provider else ()),
        )
        return tuple(dict.fromkeys(named))


@dataclass(frozen=True)
class Tenant:
    """One product of the deployment: its id, its settings (the environment's under its own fields), and the
    SHA-256 digests of its API keys."""

    id: str
    settings: Settings
    api_key_hashes: tuple[str, ...]


def _warn(settings: Settings, whose: str = "") -> None:
    """Log what is allowed but probably not meant; ``whose``: the tenant whose settings these are (``tenant shop:``
    begins each of its lines)."""
    said: list[str] = []
    if not settings.sandbox and "sandbox" in settings.sms_providers:
        said.append(f"{SMS_PROVIDERS} includes 'sandbox' without {SANDBOX}=1: those messages are never delivered")
    if not settings.sandbox and settings.brand == DEFAULT_BRAND:
        said.append(f"{BRAND} is not set: the texts call the product {DEFAULT_BRAND!r}; set it to your product's name")
    longest_code = "0" * settings.code_length
    for locale, template in settings.templates()["sms"].items():
        size = measure(template.format(code=longest_code, brand=settings.brand, minutes=settings.minutes))
        if size.parts > 1:
            said.append(
                f"the SMS template sms.{locale} renders to {size.parts} SMS parts ({size.encoding}, {size.units} "
                f"units): every code costs {size.parts} messages"
            )
    said += settings.warnings()
    for gateway, own in settings.configured_gateways():
        said += gateway.warnings(own, settings)
    for warning in said:
        log.warning("%s%s", f"tenant {whose}: " if whose else "", warning)
    for tenant in settings.tenants:
        _warn(tenant.settings, tenant.id)
