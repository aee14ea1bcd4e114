"""Settings: the only module that reads the environment.

Every setting is read once, validated at start, and kept in a frozen :class:`Settings`.
A bad value raises :class:`~verify.errors.ConfigError`, whose message names the variable to set.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import phonenumbers
from limits import parse_many

from verify.errors import ConfigError
from verify.sms import measure

log = logging.getLogger(__name__)

API_KEYS = "VERIFY_API_KEYS"
SECRET_KEY = "VERIFY_SECRET_KEY"  # noqa: S105 - a variable name
REDIS_URL = "VERIFY_REDIS_URL"
REDIS_PREFIX = "VERIFY_REDIS_PREFIX"
CHALLENGE_TTL = "VERIFY_CHALLENGE_TTL"
CODE_LENGTH = "VERIFY_CODE_LENGTH"
MAX_ATTEMPTS = "VERIFY_MAX_ATTEMPTS"
MAX_SENDS = "VERIFY_MAX_SENDS"
RESEND_COOLDOWN = "VERIFY_RESEND_COOLDOWN"
TOKEN_TTL = "VERIFY_TOKEN_TTL"  # noqa: S105 - a variable name
DEFAULT_COUNTRY = "VERIFY_DEFAULT_COUNTRY"
SANDBOX = "VERIFY_SANDBOX"
SMS_TEMPLATE = "VERIFY_SMS_TEMPLATE"
SMS_TEMPLATE_RU = "VERIFY_SMS_TEMPLATE_RU"
SMS_PROVIDERS = "VERIFY_SMS_PROVIDERS"
CALL_PROVIDER = "VERIFY_CALL_PROVIDER"
IDEMPOTENCY_TTL = "VERIFY_IDEMPOTENCY_TTL"
PUBLIC_URL = "VERIFY_PUBLIC_URL"
HTTP_CONNECT_TIMEOUT = "VERIFY_HTTP_CONNECT_TIMEOUT"
HTTP_READ_TIMEOUT = "VERIFY_HTTP_READ_TIMEOUT"
BREAKER_FAILURES = "VERIFY_BREAKER_FAILURES"
BREAKER_COOLDOWN = "VERIFY_BREAKER_COOLDOWN"
SMSC_URL = "VERIFY_SMSC_URL"
SMSC_LOGIN = "VERIFY_SMSC_LOGIN"
SMSC_PASSWORD = "VERIFY_SMSC_PASSWORD"  # noqa: S105 - a variable name
SMSC_APIKEY = "VERIFY_SMSC_APIKEY"
SMSC_SENDER = "VERIFY_SMSC_SENDER"
ZOOMCONNECT_URL = "VERIFY_ZOOMCONNECT_URL"
ZOOMCONNECT_EMAIL = "VERIFY_ZOOMCONNECT_EMAIL"
ZOOMCONNECT_TOKEN = "VERIFY_ZOOMCONNECT_TOKEN"  # noqa: S105 - a variable name
D7_API = "VERIFY_D7_API"
D7_URL = "VERIFY_D7_URL"
D7_USERNAME = "VERIFY_D7_USERNAME"
D7_PASSWORD = "VERIFY_D7_PASSWORD"  # noqa: S105 - a variable name
D7_TOKEN = "VERIFY_D7_TOKEN"  # noqa: S105 - a variable name
D7_SENDER = "VERIFY_D7_SENDER"
D7_WEBHOOK_TOKEN = "VERIFY_D7_WEBHOOK_TOKEN"  # noqa: S105 - a variable name
SMSC_SECRET = "VERIFY_SMSC_SECRET"  # noqa: S105 - a variable name
SMSC_HASH = "VERIFY_SMSC_HASH"
ZOOMCONNECT_SECRET = "VERIFY_ZOOMCONNECT_SECRET"  # noqa: S105 - a variable name
ZOOMCONNECT_TZ = "VERIFY_ZOOMCONNECT_TZ"
WEBHOOK_MAX_AGE = "VERIFY_WEBHOOK_MAX_AGE"
EVENTS_URL = "VERIFY_EVENTS_URL"
EVENTS_SECRET = "VERIFY_EVENTS_SECRET"  # noqa: S105 - a variable name
LIMIT_PHONE = "VERIFY_LIMIT_PHONE"
LIMIT_IP = "VERIFY_LIMIT_IP"
LIMIT_PREFIX = "VERIFY_LIMIT_PREFIX"
LIMIT_COUNTRY = "VERIFY_LIMIT_COUNTRY"
LIMIT_GLOBAL = "VERIFY_LIMIT_GLOBAL"
LIMIT_CHECK_IP = "VERIFY_LIMIT_CHECK_IP"
LIMIT_PHONE_FAILURES = "VERIFY_LIMIT_PHONE_FAILURES"
TRUSTED_PROXIES = "VERIFY_TRUSTED_PROXIES"
ALLOWED_COUNTRIES = "VERIFY_ALLOWED_COUNTRIES"
DENIED_NUMBER_TYPES = "VERIFY_DENIED_NUMBER_TYPES"
CAPTCHA_MODE = "VERIFY_CAPTCHA_MODE"
CAPTCHA_AFTER = "VERIFY_CAPTCHA_AFTER"
CAPTCHA_PROVIDER = "VERIFY_CAPTCHA_PROVIDER"
CAPTCHA_SECRET = "VERIFY_CAPTCHA_SECRET"  # noqa: S105 - a variable name
CAPTCHA_VERIFY_URL = "VERIFY_CAPTCHA_VERIFY_URL"
PUMPING_THRESHOLD = "VERIFY_PUMPING_THRESHOLD"
PUMPING_MIN_STARTS = "VERIFY_PUMPING_MIN_STARTS"

SECRET_SETTINGS = frozenset({API_KEYS, SECRET_KEY, SMSC_PASSWORD, SMSC_APIKEY, ZOOMCONNECT_TOKEN, D7_PASSWORD,
                             D7_TOKEN, D7_WEBHOOK_TOKEN, SMSC_SECRET, ZOOMCONNECT_SECRET, EVENTS_SECRET,
                             CAPTCHA_SECRET})

DEFAULT_SMS_TEMPLATE = "Your verification code: {code}"
DEFAULT_SMS_TEMPLATE_RU = "Ваш код подтверждения: {code}"
KNOWN_SMS_PROVIDERS = ("sandbox", "smsc", "zoomconnect", "d7")
KNOWN_CALL_PROVIDERS = ("sandbox", "smsc")
D7_DEFAULT_URLS = {"legacy": "https://rest-api.d7networks.com/", "v1": "https://api.d7networks.com/"}
# phonenumbers' number types, by the names VERIFY_DENIED_NUMBER_TYPES uses.
NUMBER_TYPES: dict[str, int] = {
    "fixed_line": phonenumbers.PhoneNumberType.FIXED_LINE, "mobile": phonenumbers.PhoneNumberType.MOBILE,
    "fixed_line_or_mobile": phonenumbers.PhoneNumberType.FIXED_LINE_OR_MOBILE,
    "toll_free": phonenumbers.PhoneNumberType.TOLL_FREE, "premium_rate": phonenumbers.PhoneNumberType.PREMIUM_RATE,
    "shared_cost": phonenumbers.PhoneNumberType.SHARED_COST, "voip": phonenumbers.PhoneNumberType.VOIP,
    "personal_number": phonenumbers.PhoneNumberType.PERSONAL_NUMBER, "pager": phonenumbers.PhoneNumberType.PAGER,
    "uan": phonenumbers.PhoneNumberType.UAN, "voicemail": phonenumbers.PhoneNumberType.VOICEMAIL,
    "unknown": phonenumbers.PhoneNumberType.UNKNOWN,
}
DEFAULT_DENIED_NUMBER_TYPES = ("premium_rate", "shared_cost", "voip", "uan", "pager")
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
# The hash algorithms an SMSC callback may be signed with, by default: not crc32, which a forger can compute.
SMSC_HASHES = ("sha1", "md5")


@dataclass(frozen=True)
class SmscSettings:
    """SMSC (smsc.ru / smscentre.com): ``login`` + ``password``, or ``apikey``."""

    url: str = "https://smsc.ru/sys/"
    login: str = ""
    password: str = ""
    apikey: str = ""
    sender: str = ""
    # The secrets of the handler URL's md5=/sha1=/crc32=, newest first (any verifies); empty only in sandbox mode.
    secrets: tuple[str, ...] = ()
    hashes: tuple[str, ...] = SMSC_HASHES  # the hash algorithms a callback may be signed with


@dataclass(frozen=True)
class ZoomConnectSettings:
    """Zoom Connect: account e-mail and REST API token; the webhook checksum secrets (any verifies) and time zone."""

    url: str = "https://www.zoomconnect.com/app/"
    email: str = ""
    token: str = ""
    secrets: tuple[str, ...] = ()
    tz: str = "UTC"


@dataclass(frozen=True)
class D7Settings:
    """D7 Networks: ``legacy`` (Basic auth) or ``v1`` (Bearer token) API."""

    api: str = "v1"
    url: str = D7_DEFAULT_URLS["v1"]
    username: str = ""
    password: str = ""
    token: str = ""
    sender: str = ""
    webhook_tokens: tuple[str, ...] = ()  # the first goes in the callback URLs; any is accepted


@dataclass(frozen=True)
class Settings:
    """Validated settings. Build with :meth:`from_env`; tests use :func:`dataclasses.replace`."""

    api_keys: tuple[str, ...]
    secret_keys: tuple[str, ...]
    redis_url: str = "redis://127.0.0.1:6379/0"
    redis_prefix: str = "verify:"
    challenge_ttl: int = 900
    code_length: int = 6
    max_attempts: int = 5
    max_sends: int = 5
    resend_cooldown: int = 30
    token_ttl: int = 3600
    idempotency_ttl: int = 86400
    default_country: str | None = None
    sandbox: bool = False
    sms_template: str = DEFAULT_SMS_TEMPLATE
    sms_template_ru: str = DEFAULT_SMS_TEMPLATE_RU
    sms_providers: tuple[str, ...] = ("sandbox",)
    call_provider: str | None = "sandbox"
    public_url: str | None = None
    http_connect_timeout: float = 3.0
    http_read_timeout: float = 10.0
    breaker_failures: int = 5
    breaker_cooldown: int = 60
    smsc: SmscSettings | None = None
    zoomconnect: ZoomConnectSettings | None = None
    d7: D7Settings | None = None
    webhook_max_age: int = 900
    events_url: str | None = None
    events_secrets: tuple[str, ...] = ()  # the first signs
    # Abuse limits in the notation of the limits library ("3/10 minutes;10/day"); "" means no limit.
    limit_phone: str = "3/10 minutes;10/day"
    limit_ip: str = "10/hour;50/day"
    limit_prefix: str = "20/hour"
    limit_country: str = ""
    limit_global: str = ""
    limit_check_ip: str = "60/minute"
    limit_phone_failures: str = "100/day"
    trusted_proxies: int = 0
    allowed_countries: tuple[str, ...] = ()
    denied_number_types: tuple[str, ...] = DEFAULT_DENIED_NUMBER_TYPES
    captcha_mode: str = "adaptive"
    captcha_after: int = 3
    captcha_provider: str = "builtin"
    captcha_secret: str = ""
    captcha_verify_url: str = ""
    pumping_threshold: float = 0.8
    pumping_min_starts: int = 50

    def warnings(self) -> list[str]:
        """What this configuration allows that weakens the service: logged at start and shown by check-config."""
        found = []
        if self.smsc and "crc32" in self.smsc.hashes:
            found.append(f"{SMSC_HASH} lists crc32: SMSC callbacks signed with crc32 are accepted, and crc32 is not a "
                         "MAC. From one captured callback anyone can compute a valid crc32 for another phone without "
                         "the secret, and so approve its call verification. List only sha1 (and md5).")
        return found

    @property
    def providers(self) -> tuple[str, ...]:
        """Every gateway in use: the SMS chain, then the call provider if it is not in the chain."""
        extra = (self.call_provider,) if self.call_provider and self.call_provider not in self.sms_providers else ()
        return self.sms_providers + extra

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        """Read and validate every ``VERIFY_*`` variable (``os.environ`` by default)."""
        env = os.environ if env is None else env
        api_keys = _key_list(env, API_KEYS, MIN_API_KEY_LENGTH)
        secret_keys = _key_list(env, SECRET_KEY, MIN_SECRET_LENGTH)
        sandbox = _flag(env, SANDBOX)
        sms_providers = _providers(env, sandbox)
        call_provider = _call_provider(env, sandbox)
        named = {*sms_providers, call_provider}
        settings = cls(
            api_keys=api_keys,
            secret_keys=secret_keys,
            redis_url=_str(env, REDIS_URL, cls.redis_url),
            redis_prefix=_str(env, REDIS_PREFIX, cls.redis_prefix),
            challenge_ttl=_int(env, CHALLENGE_TTL, cls.challenge_ttl, 1, 86400),
            code_length=_int(env, CODE_LENGTH, cls.code_length, 4, 10),
            max_attempts=_int(env, MAX_ATTEMPTS, cls.max_attempts, 1, 100),
            max_sends=_int(env, MAX_SENDS, cls.max_sends, 1, 100),
            resend_cooldown=_int(env, RESEND_COOLDOWN, cls.resend_cooldown, 0, 86400),
            token_ttl=_int(env, TOKEN_TTL, cls.token_ttl, 1, 30 * 86400),
            idempotency_ttl=_int(env, IDEMPOTENCY_TTL, cls.idempotency_ttl, 60, 7 * 86400),
            default_country=_country(env),
            sandbox=sandbox,
            sms_template=_template(env, SMS_TEMPLATE, DEFAULT_SMS_TEMPLATE),
            sms_template_ru=_template(env, SMS_TEMPLATE_RU, DEFAULT_SMS_TEMPLATE_RU),
            sms_providers=sms_providers,
            call_provider=call_provider,
            public_url=_url(env, PUBLIC_URL, None),
            http_connect_timeout=_float(env, HTTP_CONNECT_TIMEOUT, cls.http_connect_timeout),
            http_read_timeout=_float(env, HTTP_READ_TIMEOUT, cls.http_read_timeout),
            breaker_failures=_int(env, BREAKER_FAILURES, cls.breaker_failures, 1, 1000),
            breaker_cooldown=_int(env, BREAKER_COOLDOWN, cls.breaker_cooldown, 1, 86400),
            smsc=_smsc(env, sandbox) if "smsc" in named else None,
            zoomconnect=_zoomconnect(env) if "zoomconnect" in named else None,
            d7=_d7(env) if "d7" in named else None,
            webhook_max_age=_int(env, WEBHOOK_MAX_AGE, cls.webhook_max_age, 60, 86400),
            events_url=_url(env, EVENTS_URL, None),
            events_secrets=_secrets(env, EVENTS_SECRET, required_by=EVENTS_URL if env.get(EVENTS_URL, "").strip()
                                    else None),
            limit_phone=_limit(env, LIMIT_PHONE, cls.limit_phone),
            limit_ip=_limit(env, LIMIT_IP, cls.limit_ip),
            limit_prefix=_limit(env, LIMIT_PREFIX, cls.limit_prefix),
            limit_country=_limit(env, LIMIT_COUNTRY, cls.limit_country),
            limit_global=_limit(env, LIMIT_GLOBAL, cls.limit_global),
            limit_check_ip=_limit(env, LIMIT_CHECK_IP, cls.limit_check_ip),
            limit_phone_failures=_limit(env, LIMIT_PHONE_FAILURES, cls.limit_phone_failures),
            trusted_proxies=_int(env, TRUSTED_PROXIES, cls.trusted_proxies, 0, 10),
            allowed_countries=_countries(env),
            denied_number_types=_number_types(env),
            captcha_mode=_choice(env, CAPTCHA_MODE, CAPTCHA_MODES),
            captcha_after=_int(env, CAPTCHA_AFTER, cls.captcha_after, 1, 100000),
            captcha_provider=(provider := _choice(env, CAPTCHA_PROVIDER, tuple(CAPTCHA_VERIFY_URLS))),
            captcha_secret=_required(env, CAPTCHA_SECRET, CAPTCHA_PROVIDER) if provider != "builtin" else "",
            captcha_verify_url=_url(env, CAPTCHA_VERIFY_URL, None) or CAPTCHA_VERIFY_URLS[provider],
            pumping_threshold=_fraction(env, PUMPING_THRESHOLD, cls.pumping_threshold),
            pumping_min_starts=_int(env, PUMPING_MIN_STARTS, cls.pumping_min_starts, 1, 10**9),
        )
        _warn(settings)
        return settings

    def describe(self) -> list[tuple[str, str]]:
        """Every setting as ``(variable, value)`` for operators, secrets masked."""
        rows: list[tuple[str, object]] = [
            (API_KEYS, self.api_keys), (SECRET_KEY, self.secret_keys), (REDIS_URL, _mask_url(self.redis_url)),
            (REDIS_PREFIX, self.redis_prefix), (CHALLENGE_TTL, self.challenge_ttl), (CODE_LENGTH, self.code_length),
            (MAX_ATTEMPTS, self.max_attempts), (MAX_SENDS, self.max_sends), (RESEND_COOLDOWN, self.resend_cooldown),
            (TOKEN_TTL, self.token_ttl), (IDEMPOTENCY_TTL, self.idempotency_ttl),
            (DEFAULT_COUNTRY, self.default_country), (SANDBOX, int(self.sandbox)),
            (SMS_TEMPLATE, self.sms_template), (SMS_TEMPLATE_RU, self.sms_template_ru),
            (SMS_PROVIDERS, ",".join(self.sms_providers)), (CALL_PROVIDER, self.call_provider),
            (PUBLIC_URL, self.public_url), (HTTP_CONNECT_TIMEOUT, self.http_connect_timeout),
            (HTTP_READ_TIMEOUT, self.http_read_timeout), (BREAKER_FAILURES, self.breaker_failures),
            (BREAKER_COOLDOWN, self.breaker_cooldown), (WEBHOOK_MAX_AGE, self.webhook_max_age),
            (EVENTS_URL, self.events_url), (EVENTS_SECRET, self.events_secrets),
            (LIMIT_PHONE, self.limit_phone), (LIMIT_IP, self.limit_ip), (LIMIT_PREFIX, self.limit_prefix),
            (LIMIT_COUNTRY, self.limit_country), (LIMIT_GLOBAL, self.limit_global),
            (LIMIT_CHECK_IP, self.limit_check_ip), (LIMIT_PHONE_FAILURES, self.limit_phone_failures),
            (TRUSTED_PROXIES, self.trusted_proxies), (ALLOWED_COUNTRIES, ",".join(self.allowed_countries)),
            (DENIED_NUMBER_TYPES, ",".join(self.denied_number_types)), (CAPTCHA_MODE, self.captcha_mode),
            (CAPTCHA_AFTER, self.captcha_after), (CAPTCHA_PROVIDER, self.captcha_provider),
            (CAPTCHA_SECRET, self.captcha_secret), (CAPTCHA_VERIFY_URL, self.captcha_verify_url),
            (PUMPING_THRESHOLD, self.pumping_threshold), (PUMPING_MIN_STARTS, self.pumping_min_starts),
        ]
        if self.smsc:
            rows += [(SMSC_URL, self.smsc.url), (SMSC_LOGIN, self.smsc.login), (SMSC_PASSWORD, self.smsc.password),
                     (SMSC_APIKEY, self.smsc.apikey), (SMSC_SENDER, self.smsc.sender),
                     (SMSC_SECRET, self.smsc.secrets), (SMSC_HASH, ",".join(self.smsc.hashes))]
        if self.zoomconnect:
            rows += [(ZOOMCONNECT_URL, self.zoomconnect.url), (ZOOMCONNECT_EMAIL, self.zoomconnect.email),
                     (ZOOMCONNECT_TOKEN, self.zoomconnect.token), (ZOOMCONNECT_SECRET, self.zoomconnect.secrets),
                     (ZOOMCONNECT_TZ, self.zoomconnect.tz)]
        if self.d7:
            rows += [(D7_API, self.d7.api), (D7_URL, self.d7.url), (D7_USERNAME, self.d7.username),
                     (D7_PASSWORD, self.d7.password), (D7_TOKEN, self.d7.token), (D7_SENDER, self.d7.sender),
                     (D7_WEBHOOK_TOKEN, self.d7.webhook_tokens)]
        return [(name, _show(name, value)) for name, value in rows]


def _show(name: str, value: object) -> str:
    if value in (None, "", ()):
        return "(unset)"
    if name in SECRET_SETTINGS:
        return f"set ({len(value)} keys, masked)" if isinstance(value, tuple) else "set (masked)"
    return str(value)


def _mask_url(url: str) -> str:
    """``redis://user:secret@host`` -> ``redis://user:****@host``."""
    return re.sub(r"(//[^/@:]*:)[^/@]*@", r"\1****@", url)


def _warn(settings: Settings) -> None:
    """Log what is allowed but probably not meant."""
    if not settings.sandbox and "sandbox" in settings.sms_providers:
        log.warning("%s includes 'sandbox' without %s=1: those messages are never delivered", SMS_PROVIDERS, SANDBOX)
    longest_code = "0" * settings.code_length
    for name, template in ((SMS_TEMPLATE, settings.sms_template), (SMS_TEMPLATE_RU, settings.sms_template_ru)):
        size = measure(template.format(code=longest_code))
        if size.parts > 1:
            log.warning("%s renders to %d SMS parts (%s, %d units): every code costs %d messages",
                        name, size.parts, size.encoding, size.units, size.parts)
    for warning in settings.warnings():
        log.warning("%s", warning)
    if settings.d7 and not (settings.public_url and settings.d7.webhook_tokens):
        log.warning("d7 gets no delivery reports: set %s and %s", PUBLIC_URL, D7_WEBHOOK_TOKEN)
    if settings.smsc and not settings.smsc.secrets:
        log.warning("!!! %s is unset: /webhooks/smsc accepts UNSIGNED callbacks, so anyone can confirm a call "
                    "verification. Allowed only because %s=1.", SMSC_SECRET, SANDBOX)
    if settings.zoomconnect and not settings.zoomconnect.secrets:
        log.warning("%s is unset: Zoom Connect replies and delivery reports are refused (403)", ZOOMCONNECT_SECRET)


def _str(env: Mapping[str, str], name: str, default: str) -> str:
    return env.get(name, "").strip() or default


def _flag(env: Mapping[str, str], name: str) -> bool:
    raw = env.get(name, "").strip().lower()
    if raw in ("", "0", "false", "no", "off"):
        return False
    if raw in ("1", "true", "yes", "on"):
        return True
    raise ConfigError(name, f"must be 1 or 0, not {raw!r}")


def _int(env: Mapping[str, str], name: str, default: int, low: int, high: int) -> int:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ConfigError(name, f"must be a whole number, not {raw!r}") from None
    if not low <= value <= high:
        raise ConfigError(name, f"must be between {low} and {high}, not {value}")
    return value


def _choice(env: Mapping[str, str], name: str, choices: tuple[str, ...]) -> str:
    """One of ``choices``; the first is the default."""
    value = env.get(name, "").strip().lower() or choices[0]
    if value not in choices:
        raise ConfigError(name, f"must be one of {', '.join(choices)}, not {value!r}")
    return value


def _fraction(env: Mapping[str, str], name: str, default: float) -> float:
    raw = env.get(name, "").strip()
    try:
        value = float(raw) if raw else default
    except ValueError:
        raise ConfigError(name, f"must be a number between 0 and 1, not {raw!r}") from None
    if not 0 < value <= 1:
        raise ConfigError(name, f"must be more than 0 and at most 1, not {value}")
    return value


def _limit(env: Mapping[str, str], name: str, default: str) -> str:
    """A limit string such as ``3/10 minutes;10/day``; ``none`` (or ``off``) switches a limit with a default off."""
    raw = env.get(name)
    if raw is None or not raw.strip():
        return default
    value = raw.strip()
    if value.lower() in ("none", "off", "0"):
        return ""
    try:
        parse_many(value)
    except ValueError:
        raise ConfigError(name, f"must be limits such as '3/10 minutes;10/day', not {value!r}") from None
    return value


def _countries(env: Mapping[str, str]) -> tuple[str, ...]:
    codes = tuple(c.strip().upper() for c in env.get(ALLOWED_COUNTRIES, "").split(",") if c.strip())
    unknown = [c for c in codes if c not in phonenumbers.SUPPORTED_REGIONS]
    if unknown:
        raise ConfigError(ALLOWED_COUNTRIES, f"must list ISO 3166-1 alpha-2 regions; unknown: {', '.join(unknown)}")
    return codes


def _number_types(env: Mapping[str, str]) -> tuple[str, ...]:
    raw = env.get(DENIED_NUMBER_TYPES)
    if raw is None:
        return DEFAULT_DENIED_NUMBER_TYPES
    names = tuple(n.strip().lower() for n in raw.split(",") if n.strip())
    unknown = [n for n in names if n not in NUMBER_TYPES]
    if unknown:
        raise ConfigError(DENIED_NUMBER_TYPES, f"must list types from {', '.join(NUMBER_TYPES)}; unknown: "
                                               f"{', '.join(unknown)}")
    return names


def _float(env: Mapping[str, str], name: str, default: float) -> float:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ConfigError(name, f"must be a number of seconds, not {raw!r}") from None
    if not 0 < value <= 120:
        raise ConfigError(name, f"must be more than 0 and at most 120 seconds, not {value}")
    return value


def _url(env: Mapping[str, str], name: str, default: str | None) -> str | None:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    if not raw.startswith(("http://", "https://")):
        raise ConfigError(name, f"must be an http(s) URL, not {raw!r}")
    return raw


def _base_url(env: Mapping[str, str], name: str, default: str) -> str:
    url = _url(env, name, default) or default
    return url if url.endswith("/") else url + "/"


def _required(env: Mapping[str, str], name: str, needed_by: str) -> str:
    value = env.get(name, "").strip()
    if not value:
        reason = f"{needed_by} is set" if needed_by.startswith("VERIFY_") else f"{needed_by} is a configured provider"
        raise ConfigError(name, f"is required because {reason}")
    return value


def _smsc(env: Mapping[str, str], sandbox: bool) -> SmscSettings:
    login, password, apikey = (env.get(n, "").strip() for n in (SMSC_LOGIN, SMSC_PASSWORD, SMSC_APIKEY))
    if not apikey:
        if not login:
            raise ConfigError(SMSC_APIKEY, f"(or {SMSC_LOGIN} and {SMSC_PASSWORD}) is required because smsc "
                                           "is a configured provider")
        password = _required(env, SMSC_PASSWORD, "smsc")
    secrets = _secrets(env, SMSC_SECRET)
    if not secrets and not sandbox:
        raise ConfigError(SMSC_SECRET, "is required (the md5=/sha1=/crc32= secret of the SMSC handler URL): without "
                                       "it anyone could post a confirmation call")
    if any(not re.fullmatch(r"[A-Za-z0-9_-]+", secret) for secret in secrets):
        raise ConfigError(SMSC_SECRET, "may hold only Latin letters, digits, - and _ (SMSC's rule), comma-separated")
    hashes = tuple(h.strip().lower() for h in env.get(SMSC_HASH, "").split(",") if h.strip()) or SMSC_HASHES
    if any(h not in ("sha1", "md5", "crc32") for h in hashes):
        raise ConfigError(SMSC_HASH, f"must list hash algorithms from sha1, md5, crc32, not {','.join(hashes)!r}")
    return SmscSettings(url=_base_url(env, SMSC_URL, SmscSettings.url), login=login, password=password,
                        apikey=apikey, sender=env.get(SMSC_SENDER, "").strip(), secrets=secrets,
                        hashes=tuple(dict.fromkeys(hashes)))


def _zoomconnect(env: Mapping[str, str]) -> ZoomConnectSettings:
    tz = env.get(ZOOMCONNECT_TZ, "").strip() or "UTC"
    try:
        ZoneInfo(tz)
    except (ZoneInfoNotFoundError, ValueError):
        raise ConfigError(ZOOMCONNECT_TZ, f"must be an IANA time zone such as UTC or Africa/Johannesburg, not {tz!r}") \
            from None
    return ZoomConnectSettings(url=_base_url(env, ZOOMCONNECT_URL, ZoomConnectSettings.url),
                               email=_required(env, ZOOMCONNECT_EMAIL, "zoomconnect"),
                               token=_required(env, ZOOMCONNECT_TOKEN, "zoomconnect"),
                               secrets=_secrets(env, ZOOMCONNECT_SECRET), tz=tz)


def _d7(env: Mapping[str, str]) -> D7Settings:
    api = env.get(D7_API, "").strip().lower() or "v1"
    if api not in D7_DEFAULT_URLS:
        raise ConfigError(D7_API, f"must be legacy or v1, not {api!r}")
    if api == "legacy":
        username, password, token = _required(env, D7_USERNAME, "d7"), _required(env, D7_PASSWORD, "d7"), ""
    else:
        username, password, token = "", "", _required(env, D7_TOKEN, "d7")
    return D7Settings(api=api, url=_base_url(env, D7_URL, D7_DEFAULT_URLS[api]), username=username,
                      password=password, token=token, sender=env.get(D7_SENDER, "").strip(),
                      webhook_tokens=_secrets(env, D7_WEBHOOK_TOKEN))


def _secrets(env: Mapping[str, str], name: str, *, required_by: str | None = None) -> tuple[str, ...]:
    """A comma-separated secret list, newest first: the first signs what we send, any verifies what we receive."""
    values = tuple(v.strip() for v in env.get(name, "").split(",") if v.strip())
    if required_by and not values:
        raise ConfigError(name, f"is required because {required_by} is set")
    return values


def _key_list(env: Mapping[str, str], name: str, min_length: int) -> tuple[str, ...]:
    keys = tuple(k.strip() for k in env.get(name, "").split(",") if k.strip())
    if not keys:
        raise ConfigError(name, "is required: a comma-separated list of keys, the newest first")
    if any(len(k) < min_length for k in keys):
        raise ConfigError(name, f"every key must be at least {min_length} characters long")
    return keys


def _country(env: Mapping[str, str]) -> str | None:
    raw = env.get(DEFAULT_COUNTRY, "").strip().upper()
    if not raw:
        return None
    if raw not in phonenumbers.SUPPORTED_REGIONS:
        raise ConfigError(DEFAULT_COUNTRY, f"must be an ISO 3166-1 alpha-2 region, not {raw!r}")
    return raw


def _template(env: Mapping[str, str], name: str, default: str) -> str:
    template = env.get(name) or default
    try:
        rendered = template.format(code="0000")
    except (IndexError, KeyError, ValueError):
        raise ConfigError(name, "may use only the placeholder {code}") from None
    if "0000" not in rendered:
        raise ConfigError(name, "must contain the placeholder {code}")
    return template


def _providers(env: Mapping[str, str], sandbox: bool) -> tuple[str, ...]:
    raw = env.get(SMS_PROVIDERS, "").strip()
    if not raw:
        if sandbox:
            return ("sandbox",)
        raise ConfigError(SMS_PROVIDERS, "is required outside sandbox mode (or set VERIFY_SANDBOX=1)")
    names = tuple(n.strip().lower() for n in raw.split(",") if n.strip())
    unknown = [n for n in names if n not in KNOWN_SMS_PROVIDERS]
    if unknown or len(set(names)) != len(names):
        raise ConfigError(SMS_PROVIDERS, f"must list distinct providers from {', '.join(KNOWN_SMS_PROVIDERS)}")
    return names


def _call_provider(env: Mapping[str, str], sandbox: bool) -> str | None:
    raw = env.get(CALL_PROVIDER, "").strip().lower()
    if not raw:
        return "sandbox" if sandbox else None
    if raw not in KNOWN_CALL_PROVIDERS:
        raise ConfigError(CALL_PROVIDER, f"must be one of {', '.join(KNOWN_CALL_PROVIDERS)}")
    return raw
