"""Settings: defaults, parsing, and errors that name the variable to fix."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path
from typing import Any

import pytest

from verify.config import Settings
from verify.errors import ConfigError
from verify.gateways import GATEWAYS
from verify.providers.d7 import D7Settings
from verify.providers.smsc import SmscSettings

BASE = {"VERIFY_API_KEYS": "a" * 16, "VERIFY_SECRET_KEY": "s" * 16, "VERIFY_SANDBOX": "1"}


def test_defaults() -> None:
    s = Settings.from_env(BASE)
    assert (s.challenge_ttl, s.code_length, s.max_attempts, s.max_sends) == (900, 6, 5, 5)
    assert (s.resend_cooldown, s.token_ttl, s.redis_prefix) == (30, 3600, "verify:")
    assert s.sms_providers == ("sandbox",) and s.call_provider == "sandbox"
    assert (s.sms_template, s.sms_template_ru, s.default_country) == ("", "", None)  # the built-in templates
    assert (s.brand, s.default_locale, s.voice_providers) == ("Verify", "en", ("sandbox",))


def test_key_lists_keep_order_and_strip() -> None:
    s = Settings.from_env(
        {
            **BASE,
            "VERIFY_API_KEYS": " new-key-0123456789 , old-key-0123456789 ",
            "VERIFY_SECRET_KEY": "newest-secret-0123,older-secret-0123",
        }
    )
    assert s.api_keys == ("new-key-0123456789", "old-key-0123456789")
    assert s.secret_keys == ("newest-secret-0123", "older-secret-0123")


def test_values_are_read() -> None:
    s = Settings.from_env(
        {
            **BASE,
            "VERIFY_CODE_LENGTH": "8",
            "VERIFY_DEFAULT_COUNTRY": "ru",
            "VERIFY_SMS_TEMPLATE": "ACME: {code}",
            "VERIFY_REDIS_URL": "redis://h:1/2",
        }
    )
    assert (s.code_length, s.default_country, s.sms_template, s.redis_url) == (8, "RU", "ACME: {code}", "redis://h:1/2")


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("VERIFY_API_KEYS", ""),
        ("VERIFY_API_KEYS", "short"),
        ("VERIFY_SECRET_KEY", ""),
        ("VERIFY_SECRET_KEY", "long-enough-key-1,short"),
        ("VERIFY_CODE_LENGTH", "3"),
        ("VERIFY_CODE_LENGTH", "11"),
        ("VERIFY_CODE_LENGTH", "six"),
        ("VERIFY_CHALLENGE_TTL", "0"),
        ("VERIFY_DEFAULT_COUNTRY", "XX"),
        ("VERIFY_SMS_TEMPLATE", "no placeholder"),
        ("VERIFY_SMS_TEMPLATE", "{code} and {other}"),
        ("VERIFY_SMS_PROVIDERS", "nosuchgateway"),
        ("VERIFY_SMS_PROVIDERS", "sandbox,sandbox"),
        ("VERIFY_CALL_PROVIDER", "nosuchgateway"),
        ("VERIFY_SANDBOX", "maybe"),
        ("VERIFY_PUBLIC_URL", "ftp://verify.example"),
        ("VERIFY_HTTP_READ_TIMEOUT", "0"),
        ("VERIFY_HTTP_CONNECT_TIMEOUT", "soon"),
        ("VERIFY_BREAKER_FAILURES", "0"),
        ("VERIFY_REDIS_MIN_REPLICAS", "-1"),
        ("VERIFY_REDIS_MIN_REPLICAS", "1"),  # the default redis:// URL: no replica confirms anything there
    ],
)
def test_bad_values_name_the_variable(variable: str, value: str) -> None:
    with pytest.raises(ConfigError) as caught:
        Settings.from_env({**BASE, variable: value})
    assert caught.value.variable == variable
    assert str(caught.value).startswith(variable)


def test_replicas_required_of_a_sentinel_master() -> None:
    assert Settings.from_env(BASE).redis_min_replicas == 0  # writes go on without a replica (degraded)
    sentinel = {**BASE, "VERIFY_REDIS_URL": "redis+sentinel://h:26379/mymaster"}
    assert Settings.from_env({**sentinel, "VERIFY_REDIS_MIN_REPLICAS": "1"}).redis_min_replicas == 1
    with pytest.raises(ConfigError, match="redis\\+sentinel:// only"):
        Settings.from_env({**BASE, "VERIFY_REDIS_URL": "redis+cluster://h:7000", "VERIFY_REDIS_MIN_REPLICAS": "1"})


def test_outside_sandbox_a_provider_chain_is_required() -> None:
    env = {k: v for k, v in BASE.items() if k != "VERIFY_SANDBOX"}
    with pytest.raises(ConfigError) as caught:
        Settings.from_env(env)
    assert caught.value.variable == "VERIFY_SMS_PROVIDERS"
    s = Settings.from_env({**env, "VERIFY_SMS_PROVIDERS": "sandbox"})
    assert s.sandbox is False and s.call_provider is None


def test_a_template_over_one_sms_is_warned_about_at_start(caplog: pytest.LogCaptureFixture) -> None:
    Settings.from_env({**BASE, "VERIFY_SMS_TEMPLATE": "x" * 150 + " {code}"})
    assert not caplog.records
    Settings.from_env({**BASE, "VERIFY_SMS_TEMPLATE": "x" * 154 + " {code}"})
    (record,) = caplog.records
    assert record.levelname == "WARNING" and "sms.en renders to 2 SMS parts" in record.getMessage()


def test_d7_without_callbacks_is_warned_about(caplog: pytest.LogCaptureFixture) -> None:
    env = {**BASE, "VERIFY_SMS_PROVIDERS": "d7", "VERIFY_D7_TOKEN": "t"}
    settings = Settings.from_env(env)
    assert settings.gateway_settings["d7"].url == "https://api.d7networks.com/"
    assert "VERIFY_D7_WEBHOOK_TOKEN" in caplog.text
    caplog.clear()
    Settings.from_env({**env, "VERIFY_PUBLIC_URL": "https://verify.example", "VERIFY_D7_WEBHOOK_TOKEN": "hook"})
    assert not caplog.records


def test_gateway_settings_are_read_only_for_named_gateways() -> None:
    s = Settings.from_env(
        {
            **BASE,
            "VERIFY_SMS_PROVIDERS": "smsc,d7",
            "VERIFY_SMSC_APIKEY": "k",
            "VERIFY_SMSC_URL": "http://127.0.0.1:9/sys",
            "VERIFY_D7_API": "legacy",
            "VERIFY_D7_USERNAME": "u",
            "VERIFY_D7_PASSWORD": "p",
        }
    )
    smsc, d7 = s.gateway_settings["smsc"], s.gateway_settings["d7"]
    assert smsc.url == "http://127.0.0.1:9/sys/" and smsc.apikey == "k"
    assert (d7.api, d7.url) == ("legacy", "https://rest-api.d7networks.com/")
    assert list(s.gateway_settings) == ["smsc", "d7"] and s.providers == ("smsc", "d7", "sandbox")


def test_webhook_and_event_secrets_are_lists_for_rotation() -> None:
    s = Settings.from_env(
        {
            **BASE,
            "VERIFY_SMS_PROVIDERS": "smsc,zoomconnect,d7",
            "VERIFY_SMSC_APIKEY": "k",
            "VERIFY_SMSC_SECRET": " new_secret , old-secret ",
            "VERIFY_ZOOMCONNECT_EMAIL": "e@x",
            "VERIFY_ZOOMCONNECT_TOKEN": "t",
            "VERIFY_ZOOMCONNECT_SECRET": "zoom-new,zoom-old",
            "VERIFY_D7_TOKEN": "t",
            "VERIFY_D7_WEBHOOK_TOKEN": "hook-new,hook-old",
            "VERIFY_EVENTS_URL": "https://example.com/hooks",
            "VERIFY_EVENTS_SECRET": "ev-new,ev-old",
        }
    )
    assert s.gateway_settings["smsc"].secrets == ("new_secret", "old-secret")
    assert s.gateway_settings["zoomconnect"].secrets == ("zoom-new", "zoom-old")
    assert s.gateway_settings["d7"].webhook_tokens == ("hook-new", "hook-old")
    assert s.events_secrets == ("ev-new", "ev-old")


def test_smsc_hash_algorithms(caplog: pytest.LogCaptureFixture) -> None:
    smsc = {**BASE, "VERIFY_SMS_PROVIDERS": "smsc", "VERIFY_SMSC_APIKEY": "k", "VERIFY_SMSC_SECRET": "s"}
    default = Settings.from_env(smsc)
    assert default.gateway_settings["smsc"].hashes == ("sha1", "md5") and default.warnings() == []
    assert "crc32" not in caplog.text
    only_sha1 = Settings.from_env({**smsc, "VERIFY_SMSC_HASH": " SHA1 "})
    assert only_sha1.gateway_settings["smsc"].hashes == ("sha1",)
    with_crc32 = Settings.from_env({**smsc, "VERIFY_SMSC_HASH": "sha1,crc32"})
    assert with_crc32.gateway_settings["smsc"].hashes == ("sha1", "crc32")
    (warning,) = with_crc32.warnings()
    assert "crc32" in warning and "not a MAC" in warning and warning in caplog.text  # logged at start
    with pytest.raises(ConfigError) as caught:
        Settings.from_env({**smsc, "VERIFY_SMSC_HASH": "sha256"})
    assert caught.value.variable == "VERIFY_SMSC_HASH"
    with pytest.raises(ConfigError) as caught:
        Settings.from_env({**smsc, "VERIFY_SMSC_SECRET": "good,bad secret"})
    assert caught.value.variable == "VERIFY_SMSC_SECRET"


def _declared(cls: type[Any]) -> set[str]:
    names = set()
    for f in dataclasses.fields(cls):
        if f.metadata.get("env"):
            names.add(f.metadata["env"])
    return names


def test_every_setting_is_declared_once_and_documented() -> None:
    classes: list[type[Any]] = [Settings, *(gateway.settings for gateway in GATEWAYS if gateway.settings)]
    declared = {name for cls in classes for name in _declared(cls)}
    fields = [f for cls in classes for f in dataclasses.fields(cls)]
    assert all("read" in f.metadata for f in fields)  # no field without its reader
    assert len(declared) == sum(1 for f in fields if f.metadata.get("env"))  # no variable twice
    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text(encoding="utf-8")
    table = readme.split("## Settings", 1)[1].split("\n## ", 1)[0]
    documented = set(re.findall(r"`((?:VERIFY|PROMETHEUS)_[A-Z0-9_]+)`", table))
    assert declared - documented == set(), "declared but not in the README's settings table"
    assert documented - declared == set(), "in the README's settings table but not declared"


def test_check_config_lists_every_declared_setting_of_the_configured_gateways() -> None:
    s = Settings.from_env(
        {**BASE, "VERIFY_SMS_PROVIDERS": "smsc,d7", "VERIFY_SMSC_APIKEY": "k", "VERIFY_D7_TOKEN": "t"}
    )
    listed = dict(s.describe())
    assert set(listed) == _declared(Settings) | _declared(SmscSettings) | _declared(D7Settings)
    assert listed["VERIFY_SMSC_APIKEY"] == "set (masked)" and listed["VERIFY_D7_API"] == "v1"


# ---- texts: VERIFY_TEMPLATES_DIR, VERIFY_BRAND, VERIFY_DEFAULT_LOCALE; VERIFY_VOICE_PROVIDERS ----


def test_a_templates_dir_overrides_and_adds_locales(tmp_path: Path) -> None:
    (tmp_path / "sms.en.txt").write_text("{brand} code {code}\n", encoding="utf-8")
    (tmp_path / "sms.pt-BR.txt").write_text("{brand}: seu codigo {code}", encoding="utf-8")
    (tmp_path / "voice.nl.txt").write_text("Uw code is {code}. Nogmaals: {code}.", encoding="utf-8")
    s = Settings.from_env({**BASE, "VERIFY_TEMPLATES_DIR": str(tmp_path), "VERIFY_DEFAULT_LOCALE": "pt-BR"})
    templates = s.templates()
    assert templates["sms"]["en"] == "{brand} code {code}"  # the trailing newline is not part of it
    assert templates["sms"]["pt-br"] == "{brand}: seu codigo {code}" and s.default_locale == "pt-br"
    assert templates["voice"]["nl"].startswith("Uw code") and templates["sms"]["de"].startswith("{code} ist")
    assert dict(s.describe())["VERIFY_TEMPLATES_DIR"] == str(tmp_path)


@pytest.mark.parametrize(
    ("name", "text", "why"),
    [
        ("sms.de.txt", "Ihr Code", "sms.de.txt must contain the placeholder {code}"),
        ("voice.de.txt", "{code} {name}", "voice.de.txt may use only {brand}, {code}, {minutes}"),
        ("sms.de.txt", "{code} " + "ж" * 140, "sms.de.txt makes a 10-digit code take 3 SMS parts"),
        ("email.de.txt", "{code}", "name each file <kind>.<locale>.txt"),
        (
            "sms-payment.de.txt",
            "{code}: {amount} {currency}",
            "sms-payment.de.txt must contain the placeholder {payee}",
        ),
        ("voice.de.txt", "{code} {amount}", "voice.de.txt may use only {brand}, {code}, {minutes}"),
        ("sms.de.txt", b"\xff{code}", "cannot be read as UTF-8"),
    ],
)
def test_a_bad_template_file_stops_the_start_naming_it(tmp_path: Path, name: str, text: str | bytes, why: str) -> None:
    path = tmp_path / name
    path.write_bytes(text if isinstance(text, bytes) else text.encode("utf-8"))
    with pytest.raises(ConfigError, match="VERIFY_TEMPLATES_DIR") as caught:
        Settings.from_env({**BASE, "VERIFY_TEMPLATES_DIR": str(tmp_path)})
    assert why in str(caught.value)


def test_a_template_set_twice_is_refused(tmp_path: Path) -> None:
    (tmp_path / "sms.ru.txt").write_text("{code}", encoding="utf-8")
    with pytest.raises(ConfigError, match=r"VERIFY_SMS_TEMPLATE_RU both set sms\.ru"):
        Settings.from_env({**BASE, "VERIFY_TEMPLATES_DIR": str(tmp_path), "VERIFY_SMS_TEMPLATE_RU": "{code}"})


@pytest.mark.parametrize(
    ("env", "variable"),
    [
        ({"VERIFY_SMS_TEMPLATE": "no code here"}, "VERIFY_SMS_TEMPLATE"),
        ({"VERIFY_SMS_TEMPLATE_RU": "{code} {who}"}, "VERIFY_SMS_TEMPLATE_RU"),
        ({"VERIFY_DEFAULT_LOCALE": "nl"}, "VERIFY_DEFAULT_LOCALE"),
        ({"VERIFY_BRAND": "x" * 31}, "VERIFY_BRAND"),
        ({"VERIFY_BRAND": "Acme\nInc"}, "VERIFY_BRAND"),
        ({"VERIFY_TEMPLATES_DIR": "/nonexistent/templates"}, "VERIFY_TEMPLATES_DIR"),
        ({"VERIFY_VOICE_PROVIDERS": "zoomconnect"}, "VERIFY_VOICE_PROVIDERS"),
        ({"VERIFY_LIMIT_VOICE_PHONE": "often"}, "VERIFY_LIMIT_VOICE_PHONE"),
    ],
)
def test_bad_text_and_voice_settings_name_their_variable(env: dict[str, str], variable: str) -> None:
    with pytest.raises(ConfigError, match=variable):
        Settings.from_env({**BASE, **env})


def test_the_sms_template_variables_keep_working_with_the_new_placeholders() -> None:
    s = Settings.from_env({**BASE, "VERIFY_SMS_TEMPLATE": "{brand} {code} ({minutes} min)", "VERIFY_BRAND": "Acme"})
    assert s.templates()["sms"]["en"] == "{brand} {code} ({minutes} min)" and s.brand == "Acme"


def test_voice_is_off_outside_sandbox_mode_unless_a_chain_is_named() -> None:
    production = {**BASE, "VERIFY_SANDBOX": "0", "VERIFY_SMS_PROVIDERS": "d7", "VERIFY_D7_TOKEN": "t"}
    assert Settings.from_env(production).voice_providers == ()
    s = Settings.from_env(
        {**production, "VERIFY_VOICE_PROVIDERS": "smsc", "VERIFY_SMSC_APIKEY": "k", "VERIFY_SMSC_SECRET": "s" * 16}
    )
    assert s.voice_providers == ("smsc",) and "smsc" in s.gateway_settings  # read because voice names it
    assert s.providers == ("d7", "smsc")


def test_an_unset_brand_is_warned_about_outside_sandbox_mode(caplog: pytest.LogCaptureFixture) -> None:
    production = {**BASE, "VERIFY_SANDBOX": "0", "VERIFY_SMS_PROVIDERS": "d7", "VERIFY_D7_TOKEN": "t"}
    Settings.from_env(production)
    assert "VERIFY_BRAND is not set" in caplog.text
    caplog.clear()
    Settings.from_env({**production, "VERIFY_BRAND": "Acme"})
    assert "VERIFY_BRAND" not in caplog.text


def test_telegram_is_on_with_its_token_and_takes_codes_of_at_most_8_digits() -> None:
    production = {**BASE, "VERIFY_SANDBOX": "0", "VERIFY_SMS_PROVIDERS": "d7", "VERIFY_D7_TOKEN": "t"}
    assert Settings.from_env(production).telegram_providers == ()
    assert Settings.from_env(BASE).telegram_providers == ("sandbox",)  # sandbox mode
    s = Settings.from_env({**production, "VERIFY_TELEGRAM_TOKEN": "1:new,2:old"})
    assert s.telegram_providers == ("telegram",) and s.gateway_settings["telegram"].tokens == ("1:new", "2:old")
    with pytest.raises(ConfigError, match="VERIFY_CODE_LENGTH"):
        Settings.from_env({**production, "VERIFY_TELEGRAM_TOKEN": "1:new", "VERIFY_CODE_LENGTH": "9"})
