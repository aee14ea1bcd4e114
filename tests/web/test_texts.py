"""Texts in the person's language, and the spoken code (channel voice), through the API over the real Redis."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest
from flask.testing import FlaskClient

from tests.conftest import AUTH, PHONE, MovableClock, check, make_settings, start
from verify import create_app


def messages(client: FlaskClient, phone: str = PHONE) -> list[dict[str, Any]]:
    body = client.get("/sandbox/messages", query_string={"phone": phone}).get_json()
    found: list[dict[str, Any]] = body["messages"]
    return found


def app_client(redis_url: str, clock: MovableClock, **overrides: Any) -> FlaskClient:
    return create_app(replace(make_settings(redis_url), **overrides), clock=clock, background=False).test_client()


@pytest.mark.parametrize(
    ("tag", "used", "text"),
    [
        (None, "en", "{code} is your Verify code. It expires in 15 min."),
        ("de", "de", "{code} ist Ihr Verify-Code. Gültig für 15 Min."),
        ("pt-BR", "pt", "Verify: use {code} para confirmar. Expira em 15 min."),
        ("zh-Hant-TW", "zh", "{code}是您的Verify验证码，15分钟内有效。"),  # noqa: RUF001 - CJK punctuation
        ("ru_RU", "ru", "{code} — ваш код Verify. Действует 15 мин."),
        ("nl-NL", "en", "{code} is your Verify code. It expires in 15 min."),  # no Dutch template: the default
    ],
)
def test_a_locale_falls_back_from_region_to_language_to_the_default(
    client: FlaskClient, tag: str | None, used: str, text: str
) -> None:
    started = start(client, **({"locale": tag} if tag else {}))
    assert started.status_code == 201 and started.get_json()["locale"] == used  # the answer says which was used
    (message,) = messages(client)
    assert message["text"] == text.format(code=message["code"]) and message["channel"] == "sms"


def test_the_brand_and_the_minutes_come_from_the_settings(redis_url: str, clock: MovableClock) -> None:
    client = app_client(redis_url, clock, brand="Acme", challenge_ttl=301)
    start(client, locale="fr")
    (message,) = messages(client)
    assert message["text"] == f"{message['code']} est votre code Acme. Valable 6 min."


def test_the_default_locale_serves_a_start_that_names_none(redis_url: str, clock: MovableClock) -> None:
    client = app_client(redis_url, clock, default_locale="es")
    assert start(client).get_json()["locale"] == "es"
    assert start(client, "+79991234568", locale="xx").get_json()["locale"] == "es"
    assert messages(client)[0]["text"].endswith("es tu clave de Verify. Caduca en 15 min.")


def test_a_voice_code_is_spoken_digit_by_digit_twice_and_checks_like_an_sms(client: FlaskClient) -> None:
    started = start(client, channel="voice", locale="en")
    assert started.status_code == 201
    body = started.get_json()
    assert (body["channel"], body["locale"], body["delivery"]["provider"]) == ("voice", "en", "sandbox")
    assert "sms" not in body  # a call has no SMS parts
    (message,) = messages(client)
    code = message["code"]
    spoken = ", ".join(code)
    assert message["channel"] == "voice"
    assert message["text"] == f"Your Verify code is {spoken}. Again: {spoken}."
    approved = check(client, body["id"], code)
    assert approved.status_code == 200 and approved.get_json()["status"] == "approved"
    assert approved.get_json()["channel"] == "voice"


def test_voice_without_a_voice_gateway_is_a_400_naming_the_channel(redis_url: str, clock: MovableClock) -> None:
    client = app_client(redis_url, clock, voice_providers=())
    response = start(client, channel="voice")
    assert response.status_code == 400
    body = response.get_json()
    assert body["field"] == "channel" and "VERIFY_VOICE_PROVIDERS" in body["detail"]
    assert messages(client) == []


def test_a_voice_send_takes_the_voice_limits_on_top_of_the_others(redis_url: str, clock: MovableClock) -> None:
    client = app_client(redis_url, clock, limit_voice_phone="1/hour", resend_cooldown=0)
    sms = start(client).get_json()["id"]
    assert client.post(f"/v1/verifications/{sms}/resend", headers=AUTH).status_code == 200  # SMS: not counted
    voice = start(client, "+79991234568", channel="voice").get_json()["id"]
    again = client.post(f"/v1/verifications/{voice}/resend", headers=AUTH)
    assert again.status_code == 429 and again.get_json()["limit"] == "voice_phone"
    # Switching the SMS verification to voice is a voice send too; another phone's voice quota is its own.
    switched = client.post(f"/v1/verifications/{sms}/resend", json={"channel": "voice"}, headers=AUTH)
    assert switched.status_code == 200 and switched.get_json()["channel"] == "voice"
    assert [m["channel"] for m in messages(client)] == ["voice", "sms", "sms"]
    # The voice send also counted towards the phone's own limit (3 in 10 minutes by default).
    refused = client.post(f"/v1/verifications/{sms}/resend", json={"channel": "sms"}, headers=AUTH)
    assert refused.status_code == 429 and refused.get_json()["limit"] == "phone"


@pytest.mark.parametrize("tag", ["e", "en US", "toolonglanguage", "en--us", "42"])
def test_a_malformed_locale_is_a_400_naming_it(client: FlaskClient, tag: str) -> None:
    response = start(client, locale=tag)
    assert response.status_code == 400 and response.get_json()["field"] == "locale"
