"""The tenants file (``verify/tenants.py``, read by ``verify/config.py``): each field lands on the setting it
overrides, anything left out comes from the environment, the tenant's own keys are never inherited, and a bad file
stops the start naming the line, the tenant and the field; ``verify check-config`` and ``verify hash-key``."""

from __future__ import annotations

import hashlib
import io
from pathlib import Path

import pytest

from verify.cli import check_config, main
from verify.config import Settings
from verify.errors import ConfigError
from verify.providers.base import CallReceived
from verify.tenancy import Tenancy
from verify.tenants import IMPLICIT, hash_key, tenant_secrets

SHOP_KEY = "shop-api-key-0123456789"
ENV = {
    "VERIFY_API_KEYS": "env-api-key-0123456789",
    "VERIFY_SECRET_KEY": "env-secret-key-0123456789",
    "VERIFY_SANDBOX": "1",
    "VERIFY_SITE_KEYS": "pk_env=https://env.example",
    "VERIFY_LIMIT_GLOBAL": "1000/hour",
    "VERIFY_BRAND": "Env",
    "VERIFY_EVENTS_URL": "https://env.example/events",
    "VERIFY_EVENTS_SECRET": "env-events-secret-0123",
}
GOOD = f"""# two products
[tenants.shop]
brand = "Shop"
api_keys = ["{hash_key(SHOP_KEY)}"]
code_length = 4
challenge_ttl = 300
site_keys = {{ pk_shop = ["https://shop.example", "https://www.shop.example"] }}
limits = {{ ip = "10/hour", phone = "3/10 minutes", global = "500/day" }}
default_channels = ["sms", "voice"]
allowed_countries = ["RU", "KZ"]
psd2 = true

[tenants.bank]
api_keys = ["{hash_key("bank-api-key-0123456789")}"]
sms_providers = ["hook", "sandbox"]
hook = {{ url = "https://bank.example/send-sms", secret = ["bank-hook-secret-0123"] }}
events_url = "https://bank.example/events"
events_secret = ["bank-events-secret-0123"]
"""


def read(tmp_path: Path, text: str, **env: str) -> Settings:
    path = tmp_path / "tenants.toml"
    path.write_text(text)
    return Settings.from_env({**ENV, "VERIFY_TENANTS_FILE": str(path), **env})


def refused(tmp_path: Path, text: str, **env: str) -> str:
    with pytest.raises(ConfigError) as raised:
        read(tmp_path, text, **env)
    assert raised.value.variable == "VERIFY_TENANTS_FILE"
    return str(raised.value)


def test_each_field_overrides_its_setting_and_the_rest_is_the_environments(tmp_path: Path) -> None:
    settings = read(tmp_path, GOOD)
    tenants = {tenant.id: tenant for tenant in settings.tenant_list()}
    assert list(tenants) == [IMPLICIT, "shop", "bank"]
    shop, bank = tenants["shop"].settings, tenants["bank"].settings
    assert (shop.brand, shop.code_length, shop.challenge_ttl, shop.psd2) == ("Shop", 4, 300, True)
    assert (shop.limit_ip, shop.limit_phone, shop.limit_global) == ("10/hour", "3/10 minutes", "500/day")
    assert shop.default_channels == ("sms", "voice") and shop.allowed_countries == ("RU", "KZ")
    assert shop.site_keys == (("pk_shop", ("https://shop.example", "https://www.shop.example")),)
    assert tenants["shop"].api_key_hashes == (hashlib.sha256(SHOP_KEY.encode()).hexdigest(),)
    # Left out: the environment's (the brand, the code length, the IP limit's default)...
    assert (bank.brand, bank.code_length, bank.limit_ip) == ("Env", 6, "10/hour;50/day")
    assert bank.sms_providers == ("hook", "sandbox") and bank.events_url == "https://bank.example/events"
    assert bank.gateway_settings["hook"].secrets == ("bank-hook-secret-0123",)
    # ...but never its keys, its prefix, its secret keys or the deployment's cap.
    for tenant in ("shop", "bank"):
        own = tenants[tenant].settings
        assert own.api_keys == ()
        assert own.redis_prefix == f"verify:t:{tenant}:"
        assert own.secret_keys == (tenant_secrets(("env-secret-key-0123456789",), tenant),)
    assert bank.site_keys == () and bank.limit_global == ""
    assert shop.events_url is None and shop.events_secrets == ()  # not the environment's receiver
    assert settings.deployment_cap == "1000/hour"
    # The implicit tenant keeps the environment's keys and prefix; its cap is everyone's.
    implicit = tenants[IMPLICIT].settings
    assert implicit.redis_prefix == "verify:" and implicit.site_keys == (("pk_env", ("https://env.example",)),)
    assert implicit.limit_global == ""


def test_without_the_file_there_is_one_tenant_as_before() -> None:
    settings = Settings.from_env(ENV)
    (only,) = settings.tenant_list()
    assert only.id == IMPLICIT and only.settings is settings and settings.deployment_cap == ""
    assert settings.limit_global == "1000/hour"  # the one tenant's own global limit, as before


def test_api_keys_may_be_left_to_the_file(tmp_path: Path) -> None:
    settings = read(tmp_path, GOOD, VERIFY_API_KEYS="")
    assert settings.api_keys == () and len(settings.tenants) == 2
    with pytest.raises(ConfigError, match="VERIFY_API_KEYS is required"):
        Settings.from_env({**ENV, "VERIFY_API_KEYS": ""})


@pytest.mark.parametrize(
    ("change", "line", "tenant", "field", "says"),
    [
        (("code_length = 4", "code_lenght = 4"), 5, "shop", "code_lenght", "is not a tenant's field"),
        (("code_length = 4", "code_length = 40"), 5, "shop", "code_length", "between 4 and 10"),
        (("code_length = 4", 'code_length = "4"'), 5, "shop", "code_length", "whole number"),
        (('phone = "3/10 minutes"', 'phone = "3 a fortnight"'), 8, "shop", "limits.phone", "must be limits"),
        (('ip = "10/hour"', 'ipv6 = "10/hour"'), 8, "shop", "limits.ipv6", "is not a field of limits"),
        (("psd2 = true", 'psd2 = "yes"'), 11, "shop", "psd2", "true or false"),
        (
            ('sms_providers = ["hook", "sandbox"]', 'sms_providers = ["carrier-pigeon"]'),
            15,
            "bank",
            "sms_providers",
            "distinct providers",
        ),
        (
            ('allowed_countries = ["RU", "KZ"]', 'allowed_countries = ["XX"]'),
            10,
            "shop",
            "allowed_countries",
            "unknown: XX",
        ),
        (
            ("[tenants.bank]", '[tenants.bank]\nsite_keys = { pk_shop = ["https://x.example"] }'),
            14,
            "bank",
            "site_keys",
            "pk_shop is tenant 'shop''s too",
        ),
        (
            ("[tenants.bank]", '[tenants.bank]\nsite_keys = { pk_env = ["https://x.example"] }'),
            14,
            "bank",
            "site_keys",
            "pk_env is tenant 'default''s too",
        ),
        (
            (f'api_keys = ["{hash_key("bank-api-key-0123456789")}"]', f'api_keys = ["{hash_key(SHOP_KEY)}"]'),
            14,
            "bank",
            "api_keys",
            "is tenant 'shop''s too",
        ),
        (
            (f'api_keys = ["{hash_key("bank-api-key-0123456789")}"]', 'api_keys = ["bank-api-key-0123456789"]'),
            14,
            "bank",
            "api_keys",
            '"sha256:"',
        ),
        ((f'api_keys = ["{hash_key("bank-api-key-0123456789")}"]', ""), 13, "bank", "api_keys", "is required"),
        (("[tenants.bank]", "[tenants.Bank]"), 13, "Bank", "id", "lowercase"),
    ],
)
def test_a_bad_file_names_its_line_tenant_and_field(
    tmp_path: Path, change: tuple[str, str], line: int, tenant: str, field: str, says: str
) -> None:
    assert change[0] in GOOD
    message = refused(tmp_path, GOOD.replace(change[0], change[1], 1))
    assert f"tenants.toml, line {line}: tenant {tenant!r}, {field}: " in message
    assert says in message


@pytest.mark.parametrize(
    ("change", "line", "field"),
    [
        (('"https://bank.example/events"', '"http://bank.example/events"'), 17, "events_url"),
        (('"https://bank.example/send-sms"', '"http://bank.example/send-sms"'), 16, "hook.url"),
    ],
)
def test_outside_sandbox_mode_what_carries_codes_or_tokens_is_https(
    tmp_path: Path, change: tuple[str, str], line: int, field: str
) -> None:
    production = {
        "VERIFY_SANDBOX": "0",
        "VERIFY_SMS_PROVIDERS": "hook",
        "VERIFY_VOICE_PROVIDERS": "hook",
        "VERIFY_HOOK_URL": "https://env.example/hook",
    }
    text = GOOD.replace(change[0], change[1]).replace('"hook", "sandbox"', '"hook"')
    assert read(tmp_path, text, **{**production, "VERIFY_SANDBOX": "1"}, VERIFY_HOOK_SECRET="env-hook-secret-0123")
    message = refused(tmp_path, text, **production, VERIFY_HOOK_SECRET="env-hook-secret-0123")
    assert f"line {line}: tenant 'bank', {field}: " in message and "https" in message


def test_a_syntax_error_names_its_line(tmp_path: Path) -> None:
    message = refused(tmp_path, GOOD.replace('brand = "Shop"', 'brand = "Shop'))
    assert "not valid TOML" in message and "line 3" in message


def test_a_table_per_field_is_found_on_its_own_line(tmp_path: Path) -> None:
    text = GOOD.replace('limits = { ip = "10/hour", phone = "3/10 minutes", global = "500/day" }\n', "")
    text += '\n[tenants.shop.limits]\nip = "10/hour"\nphone = "ten a day"\n'
    message = refused(tmp_path, text)
    line = text.splitlines().index('phone = "ten a day"') + 1
    assert f"line {line}: tenant 'shop', limits.phone" in message


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("", "declares no tenant"),
        ("[tenant.shop]\nbrand = 'x'\n", "unknown table 'tenant'"),
        ('tenants = "shop"', "declares no tenant"),
    ],
)
def test_a_file_without_tenants_is_refused(tmp_path: Path, text: str, says: str) -> None:
    assert says in refused(tmp_path, text)


def test_an_unreadable_file_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="VERIFY_TENANTS_FILE cannot be read"):
        Settings.from_env({**ENV, "VERIFY_TENANTS_FILE": str(tmp_path / "missing.toml")})


def test_check_config_lists_the_tenants(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "tenants.toml"
    path.write_text(GOOD)
    assert check_config(live=False, env={**ENV, "VERIFY_TENANTS_FILE": str(path)}) == 0
    out = capsys.readouterr().out
    assert f"Tenants ({path})" in out
    assert "  shop: brand 'Shop', 1 API key(s), 1 site key(s), a 4-digit code for 300 s" in out
    assert "Redis keys under 'verify:t:bank:'" in out
    assert "bank-hook-secret" not in out and "bank-events-secret" not in out
    path.write_text(GOOD.replace("code_length = 4", "code_length = 40"))
    assert check_config(live=False, env={**ENV, "VERIFY_TENANTS_FILE": str(path)}) == 2
    assert "line 5: tenant 'shop', code_length" in capsys.readouterr().err


def test_hash_key_prints_what_the_file_lists(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("sys.stdin", io.StringIO(SHOP_KEY + "\n"))
    assert main(["hash-key"]) == 0
    assert capsys.readouterr().out.strip() == "sha256:" + hashlib.sha256(SHOP_KEY.encode()).hexdigest()
    assert main(["hash-key", "short"]) == 2
    assert "at least 16" in capsys.readouterr().err


def test_a_tenants_warnings_are_logged_with_its_id(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    # Outside sandbox mode, shop's texts name no product of its own and its SMS go nowhere: said once, as shop's.
    text = GOOD.replace('brand = "Shop"\n', 'sms_providers = ["sandbox"]\n')
    production = {"VERIFY_SANDBOX": "0", "VERIFY_SMS_PROVIDERS": "hook", "VERIFY_VOICE_PROVIDERS": "hook"}
    hook = {"VERIFY_HOOK_URL": "https://env.example/hook", "VERIFY_HOOK_SECRET": "env-hook-secret-0123"}
    with caplog.at_level("WARNING", logger="verify.config"):
        read(tmp_path, text.replace(', "sandbox"]', "]"), **production, **hook, VERIFY_BRAND="")
    said = [record.getMessage() for record in caplog.records]
    assert "tenant shop: VERIFY_SMS_PROVIDERS includes 'sandbox' without VERIFY_SANDBOX=1" in "\n".join(said)
    assert sum(m.startswith("tenant shop: VERIFY_BRAND is not set") for m in said) == 1
    assert sum(m.startswith("VERIFY_BRAND is not set") for m in said) == 1  # the environment's own
    assert not any(m.startswith("tenant bank: VERIFY_SMS_PROVIDERS") for m in said)
    assert not any("secret-0123" in m for m in said)


@pytest.mark.parametrize(
    ("old", "new", "field", "says"),
    [
        ('brand = "Shop"', "brand = 3", "brand", "must be a string"),
        ('brand = "Shop"', 'brand = "  "', "brand", "must not be empty"),
        (
            'limits = { ip = "10/hour", phone = "3/10 minutes", global = "500/day" }',
            'limits = "10/hour"',
            "limits",
            "must be a table",
        ),
        ('allowed_countries = ["RU", "KZ"]', 'allowed_countries = ["RU,KZ"]', "allowed_countries", "without commas"),
        ('allowed_countries = ["RU", "KZ"]', "allowed_countries = [1]", "allowed_countries", "list of strings"),
        (f'api_keys = ["{hash_key(SHOP_KEY)}"]', f'api_keys = "{hash_key(SHOP_KEY)}"', "api_keys", "must be a list"),
        (
            f'api_keys = ["{hash_key(SHOP_KEY)}"]',
            f'api_keys = ["{hash_key(SHOP_KEY)}", "{hash_key(SHOP_KEY)}"]',
            "api_keys",
            "twice",
        ),
        (
            'site_keys = { pk_shop = ["https://shop.example", "https://www.shop.example"] }',
            'site_keys = ["pk_shop"]',
            "site_keys",
            "must be a table",
        ),
        (
            'site_keys = { pk_shop = ["https://shop.example", "https://www.shop.example"] }',
            "site_keys = { pk_shop = [1] }",
            "site_keys",
            "must list its origins",
        ),
        (
            'site_keys = { pk_shop = ["https://shop.example", "https://www.shop.example"] }',
            'site_keys = { pk_shop = "ftp://shop.example" }',
            "site_keys",
            "scheme://host",
        ),
        ("[tenants.shop]\n", "[tenants]\nshop = 3\n[tenants.shop2]\n", "id", "must be a table"),
    ],
)
def test_a_field_of_the_wrong_shape_names_its_line(tmp_path: Path, old: str, new: str, field: str, says: str) -> None:
    assert old in GOOD
    text = GOOD.replace(old, new, 1)
    message = refused(tmp_path, text)
    tenant = "shop"
    written = new.split("\n")[1] if field == "id" else new  # a tenant that is no table: where it is (shop = 3)
    line = next(number for number, text_line in enumerate(text.splitlines(), 1) if text_line.startswith(written))
    assert f"line {line}: tenant {tenant!r}, {field}: " in message
    assert says in message


def test_one_string_stands_for_a_list_of_one(tmp_path: Path) -> None:
    text = GOOD.replace('allowed_countries = ["RU", "KZ"]', 'allowed_countries = "RU"').replace(
        '{ pk_shop = ["https://shop.example", "https://www.shop.example"] }', '{ pk_shop = "https://shop.example" }'
    )
    shop = read(tmp_path, text).tenants[0].settings
    assert shop.allowed_countries == ("RU",) and shop.site_keys == (("pk_shop", ("https://shop.example",)),)


def test_an_event_two_tenants_could_claim_changes_neither(caplog: pytest.LogCaptureFixture) -> None:
    class Claiming:
        def __init__(self) -> None:
            self.handled = 0
            self.settings = Settings.from_env(ENV)

        def concerns(self, event: object) -> bool:
            return True

        def handle(self, event: object) -> None:
            self.handled += 1

    one, two = Claiming(), Claiming()
    tenancy = Tenancy({IMPLICIT: one, "shop": two}, {})  # type: ignore[dict-item]
    with caplog.at_level("WARNING"):
        assert tenancy.handle(CallReceived("+79991234567", 0.0)) is None
    assert one.handled == two.handled == 0
    assert "CallReceived concerns verifications of 2 tenants (default, shop): it changes none" in caplog.text


def test_the_issues_example_file_is_read_as_written(tmp_path: Path) -> None:
    shop_hash, bank_hash = hash_key("shop-api-key-0123456789"), hash_key("bank-api-key-0123456789")
    text = f"""[tenants.shop]
brand = "Shop"
api_keys = ["{shop_hash}"]
code_length = 4
site_keys = {{ pk_shop = ["https://shop.example"] }}
limits = {{ ip = "10/hour", phone = "3/10 minutes" }}

[tenants.bank]
brand = "Bank"
api_keys = ["{bank_hash}"]
psd2 = true
sms_providers = ["hook", "smsc"]
hook = {{ url = "https://bank.example/send-sms", secret = ["bank-hook-secret-0123"] }}
"""
    smsc = {"VERIFY_SMS_PROVIDERS": "smsc", "VERIFY_SMSC_APIKEY": "k", "VERIFY_SMSC_SECRET": "smsc-secret"}
    shop, bank = read(tmp_path, text, **smsc).tenants
    assert (shop.settings.brand, shop.settings.code_length, shop.settings.limit_ip) == ("Shop", 4, "10/hour")
    assert (bank.settings.psd2, bank.settings.sms_providers) == (True, ("hook", "smsc"))
    assert bank.settings.gateway_settings["hook"].url == "https://bank.example/send-sms"
    assert bank.settings.gateway_settings["smsc"].apikey == "k"
