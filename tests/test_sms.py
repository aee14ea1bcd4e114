"""SMS texts: the size vectors of docs/texts.md §1, and the autofill formats of ``compose``.

The WebOTP checks parse with ``parse_otp_message`` below, a transcription of the WICG spec's parsing algorithm
(https://wicg.github.io/sms-one-time-codes/#parsing), and also with Chrome's pattern; the SMS Retriever checks
count bytes at the exact 140-byte boundary in both encodings.
"""

from __future__ import annotations

import re
from pathlib import Path

import idna
import pytest
from hypothesis import event, given, settings
from hypothesis import strategies as st

from verify.sms import (
    APP_HASH_RE,
    LOCALES,
    PAYMENT_SMS_TEMPLATES,
    PAYMENT_VOICE_TEMPLATES,
    SMS_TEMPLATES,
    VOICE_TEMPLATES,
    BadTemplate,
    Payment,
    SmsSize,
    UnfitForAutofill,
    check_template,
    compose,
    locale_candidates,
    measure,
    render,
    webotp_host,
)


@pytest.mark.parametrize(
    ("text", "encoding", "units", "parts"),
    [
        ("a" * 160, "GSM-7", 160, 1),
        ("a" * 161, "GSM-7", 161, 2),
        ("a" * 306, "GSM-7", 306, 2),
        ("a" * 307, "GSM-7", 307, 3),
        ("€" * 80, "GSM-7", 160, 1),
        ("€" * 81, "GSM-7", 162, 2),
        ("[" * 76 + "a" * 7, "GSM-7", 159, 1),
        ("a" * 152 + "€" + "a" * 10, "GSM-7", 164, 2),
        ("П" * 70, "UCS-2", 70, 1),
        ("П" * 71, "UCS-2", 71, 2),
        ("П" * 134, "UCS-2", 134, 2),
        ("П" * 135, "UCS-2", 135, 3),
        ("😀" * 35, "UCS-2", 70, 1),
        ("😀" * 36, "UCS-2", 72, 2),
        ("Hello ç", "UCS-2", 7, 1),
        ("Hello Ç", "GSM-7", 7, 1),
    ],
)
def test_size_vectors(text: str, encoding: str, units: int, parts: int) -> None:
    assert measure(text) == SmsSize(encoding, units, parts)


def test_an_escape_pair_is_never_split() -> None:
    # 152 septets, then a 2-septet extension character: it moves whole to part 2 (153 would split it).
    assert measure("a" * 152 + "€" + "a" * 151).parts == 2
    assert measure("a" * 152 + "€" + "a" * 152).parts == 3


def test_a_surrogate_pair_is_never_split() -> None:
    assert measure("П" * 66 + "😀" + "П" * 65).parts == 2
    assert measure("П" * 66 + "😀" + "П" * 66).parts == 3


def test_default_templates_fit_one_sms() -> None:
    assert measure("Your verification code: 1234567890") == SmsSize("GSM-7", 34, 1)
    assert measure("Ваш код подтверждения: 123456").encoding == "UCS-2"


# ---- One-tap autofill: WebOTP and Android's SMS Retriever ----

CODE, HOST, HASH = "123456", "shop.example", "FA+9qCX9VSu"
# Two texts of the kind a template renders to, one GSM-7 and one UCS-2 (the previous release's defaults).
EN_TEMPLATE, RU_TEMPLATE = "Your verification code: {code}", "Ваш код подтверждения: {code}"
EN, RU = EN_TEMPLATE.format(code=CODE), RU_TEMPLATE.format(code=CODE)
# Chrome's parser (content/browser/sms/sms_parser.cc): the first match anywhere in the message.
CHROME_OTP_RE = re.compile(r"(?:^|[\t\n\f\r ])@([a-zA-Z0-9.-]+) #([^#\t\n\f\r ]+)")
ASCII_WHITESPACE = "\t\n\f\r "


def parse_otp_message(message: str) -> tuple[str, str, str | None] | None:
    """The spec's "parse an origin-bound one-time code message": (top-level host, code, embedded host) or None."""
    line = message.replace("\r\n", "\n").replace("\r", "\n").split("\n")[-1]  # "last line"
    position = 0

    def marked_token(marker: str) -> str | None:  # "extract a marked token"
        nonlocal position
        if position >= len(line) or line[position] != marker:
            return None
        position += 1
        start = position
        while position < len(line) and line[position] not in ASCII_WHITESPACE:
            position += 1
        return line[start:position] or None

    host = marked_token("@")
    if host is None or position >= len(line) or line[position] != " ":
        return None
    position += 1
    code = marked_token("#")
    if code is None:
        return None
    embedded = None
    if position < len(line) and line[position] == " ":
        position += 1
        embedded = marked_token("@")
    return host, code, embedded


def test_the_parser_follows_the_spec_examples() -> None:
    # The examples of the spec's "Authoring" section, so the oracle below is itself checked.
    assert parse_otp_message("747723 is your ExampleCo authentication code.\n\n@example.com #747723") == (
        "example.com",
        "747723",
        None,
    )
    assert parse_otp_message("@example.com #747723 @ecommerce.example $future") == (
        "example.com",
        "747723",
        "ecommerce.example",
    )
    assert parse_otp_message("something @example.com #747723") is None
    assert parse_otp_message("#747723 @ecommerce.example @example.com") is None
    assert parse_otp_message("@example.com code #747723") is None
    assert parse_otp_message("@example.com  #747723") is None
    assert parse_otp_message("@example.com\t#747723") is None
    assert parse_otp_message("@example.com #747723\n") is None  # the last line is then empty


@pytest.mark.parametrize(
    ("text", "host", "app_hash", "expected"),
    [
        (EN, None, None, "Your verification code: 123456"),
        (EN, HOST, None, "Your verification code: 123456\n@shop.example #123456"),
        (RU, HOST, None, "Ваш код подтверждения: 123456\n@shop.example #123456"),
        (EN, None, HASH, "Your verification code: 123456\nFA+9qCX9VSu"),
        (RU, None, HASH, "Ваш код подтверждения: 123456\nFA+9qCX9VSu"),
        (EN, HOST, HASH, "Your verification code: 123456\nFA+9qCX9VSu\n@shop.example #123456"),
        (RU, HOST, HASH, "Ваш код подтверждения: 123456\nFA+9qCX9VSu\n@shop.example #123456"),
    ],
)
def test_the_exact_texts(text: str, host: str | None, app_hash: str | None, expected: str) -> None:
    assert compose(text, CODE, origin_host=host, app_hash=app_hash) == expected


@pytest.mark.parametrize("text", [EN, RU], ids=["en-gsm7", "ru-ucs2"])
@pytest.mark.parametrize("app_hash", [None, HASH])
def test_the_webotp_line_is_last_and_the_hash_directly_above(text: str, app_hash: str | None) -> None:
    message = compose(text, CODE, origin_host=HOST, app_hash=app_hash)
    lines = message.split("\n")
    assert lines[-1] == "@shop.example #123456"  # one U+0020 between the tokens, '@' and '#' as sigils
    assert parse_otp_message(message) == (HOST, CODE, None)
    match = CHROME_OTP_RE.search(message)
    assert match is not None and match.groups() == (HOST, CODE)
    assert lines[:-1] == ([text, HASH] if app_hash else [text])  # the template's lines stay as they were
    assert measure(message).encoding == measure(text).encoding  # the added lines never change the encoding


def test_without_webotp_the_hash_is_the_last_line() -> None:
    # So it also meets the SMS Retriever's older rule, "end with the 11-character hash".
    message = compose(EN, CODE, origin_host=None, app_hash=HASH)
    assert message.endswith("\n" + HASH) and parse_otp_message(message) is None


def _gsm7_text(septets: int, filler: str = "a") -> str:
    """A text carrying CODE that, with the hash line, is exactly ``septets`` long."""
    fixed = len(" " + CODE + "\n" + HASH)
    return filler * (septets - fixed) + " " + CODE


@pytest.mark.parametrize(("septets", "octets"), [(157, 138), (158, 139), (159, 140), (160, 140)])
def test_gsm7_up_to_140_bytes_fits(septets: int, octets: int) -> None:
    message = compose(_gsm7_text(septets), CODE, origin_host=None, app_hash=HASH)
    size = measure(message)
    assert (size.encoding, size.units, size.octets, size.parts) == ("GSM-7", septets, octets, 1)


def test_gsm7_at_141_bytes_is_refused() -> None:
    with pytest.raises(UnfitForAutofill) as refused:
        compose(_gsm7_text(161), CODE, origin_host=None, app_hash=HASH)
    assert (
        str(refused.value)
        == refused.value.reason
        == (
            "with app_hash the SMS must fit one message of 140 bytes for Android's SMS Retriever, but this one takes "
            "141 bytes, 1 over: it is GSM-7, so one message holds 160 septets, and it needs 161. Start without "
            "app_hash, or with a shorter template."
        )
    )
    assert isinstance(refused.value, ValueError)


def test_the_webotp_line_counts_toward_the_140_bytes() -> None:
    line = len("\n@shop.example #123456")
    compose(_gsm7_text(160 - line), CODE, origin_host=HOST, app_hash=HASH)
    with pytest.raises(UnfitForAutofill, match="141 bytes, 1 over"):
        compose(_gsm7_text(161 - line), CODE, origin_host=HOST, app_hash=HASH)


def test_extension_characters_count_two_septets() -> None:
    # 158 plain septets and one '€' (two) is 160: fits; a second '€' instead of an 'a' makes 161.
    fits = "€" + _gsm7_text(158)
    assert measure(compose(fits, CODE, origin_host=None, app_hash=HASH)) == SmsSize("GSM-7", 160, 1)
    with pytest.raises(UnfitForAutofill, match=r"141 bytes, 1 over: .* it needs 161 \(each '€' takes two\)"):
        compose("€" + fits[1:].replace("a", "€", 1), CODE, origin_host=None, app_hash=HASH)
    with pytest.raises(UnfitForAutofill, match=r"\(each '\[' or '€' takes two\)"):
        compose("€[" + fits[1:], CODE, origin_host=None, app_hash=HASH)


def _ucs2_text(units: int, filler: str = "П") -> str:
    fixed = len(" " + CODE + "\n" + HASH)
    return filler * (units - fixed) + " " + CODE


@pytest.mark.parametrize(("units", "octets"), [(69, 138), (70, 140)])
def test_ucs2_up_to_140_bytes_fits(units: int, octets: int) -> None:
    # A UCS-2 message is an even number of bytes: 139 and 141 do not occur, 138/140/142 are the boundary.
    message = compose(_ucs2_text(units), CODE, origin_host=None, app_hash=HASH)
    size = measure(message)
    assert (size.encoding, size.units, size.octets, size.parts) == ("UCS-2", units, octets, 1)


def test_ucs2_at_142_bytes_is_refused() -> None:
    with pytest.raises(UnfitForAutofill) as refused:
        compose(_ucs2_text(71), CODE, origin_host=None, app_hash=HASH)
    assert refused.value.reason == (
        "with app_hash the SMS must fit one message of 140 bytes for Android's SMS Retriever, but this one takes "
        "142 bytes, 2 over: it is UCS-2 (the template has characters outside GSM-7, such as 'П'), so one message "
        "holds 70 UTF-16 units, and it needs 71. Start without app_hash, or with a shorter template, or one in "
        "GSM-7 (160 characters fit)."
    )


def test_an_astral_character_counts_two_units() -> None:
    assert measure(compose("😀" + _ucs2_text(68), CODE, origin_host=None, app_hash=HASH)).units == 70
    with pytest.raises(UnfitForAutofill, match="142 bytes, 2 over"):
        compose("😀" + _ucs2_text(69), CODE, origin_host=None, app_hash=HASH)


def test_one_non_gsm_character_makes_the_whole_text_ucs2() -> None:
    # 'ç' (lowercase) is not GSM-7: a 70-character English text that fits as GSM-7 no longer fits.
    text = _gsm7_text(71)
    compose(text, CODE, origin_host=None, app_hash=HASH)
    with pytest.raises(UnfitForAutofill, match=r"142 bytes, 2 over: it is UCS-2 .*such as 'ç'"):
        compose("ç" + text[1:], CODE, origin_host=None, app_hash=HASH)


def test_the_default_russian_template_with_both_lines_fits_up_to_9_digits() -> None:
    # The README's example of a 400: 10 digits take the Russian text with both lines to 71 units.
    for digits, fits in ((9, True), (10, False)):
        code = "0" * digits
        text = RU_TEMPLATE.format(code=code)
        if fits:
            assert measure(compose(text, code, origin_host=HOST, app_hash=HASH)).octets == 138
        else:
            with pytest.raises(UnfitForAutofill, match="142 bytes, 2 over: it is UCS-2"):
                compose(text, code, origin_host=HOST, app_hash=HASH)


def test_without_app_hash_any_length_goes() -> None:
    # WebOTP reads the reassembled message; only the SMS Retriever has a byte limit.
    text = "П" * 200 + " " + CODE
    message = compose(text, CODE, origin_host=HOST, app_hash=None)
    assert measure(message).parts == 4 and parse_otp_message(message) == (HOST, CODE, None)


@pytest.mark.parametrize(
    "app_hash",
    [
        "FA+9qCX9VS",
        "FA+9qCX9VSuX",
        "FA-9qCX9VSu",
        "FA+9qCX9VS_",
        "FA+9qCX9VS=",
        "FA+9qCX9VSu\n",
        " FA+9qCX9VSu",
        "",
    ],
)
def test_a_malformed_app_hash_is_refused(app_hash: str) -> None:
    assert not APP_HASH_RE.match(app_hash)
    with pytest.raises(UnfitForAutofill, match="app_hash must be your app's 11-character SMS Retriever hash"):
        compose(EN, CODE, origin_host=None, app_hash=app_hash)


def test_the_app_hash_alphabet_is_base64() -> None:
    for app_hash in ("FA+9qCX9VSu", "abcdefghijk", "ABCDEFGHIJK", "0123456789+", "///////////"):
        assert APP_HASH_RE.match(app_hash)


@pytest.mark.parametrize(
    ("host", "written"),
    [
        ("shop.example", "shop.example"),
        ("Shop.EXAMPLE", "shop.example"),
        ("магазин.example", "xn--80aairftm.example"),
        ("Магазин.Example", "xn--80aairftm.example"),
        ("xn--80aairftm.example", "xn--80aairftm.example"),
        ("bücher.example", "xn--bcher-kva.example"),
        ("straße.de", "xn--strae-oqa.de"),  # UTS #46 nontransitional, as browsers' URL parsers: ß stays ß
        ("localhost", "localhost"),
    ],
)
def test_the_host_is_written_as_an_origin_holds_it(host: str, written: str) -> None:
    message = compose(EN, CODE, origin_host=host, app_hash=None)
    assert message.split("\n")[-1] == f"@{written} #{CODE}"
    match = CHROME_OTP_RE.search(message)
    assert match is not None and match.groups() == (written, CODE)


@pytest.mark.parametrize(
    "host",
    [
        "shop.example:8443",
        "shop.example:443",
        "[::1]",
        "::1",
        "my_shop.example",
        "shop example",
        "shop.example/",
        "user@shop.example",
        "",
        "a..example",
        "-shop.example",
        "☃.example",
    ],
)
def test_a_host_no_webotp_parser_takes_is_refused(host: str) -> None:
    with pytest.raises(ValueError, match="WebOTP host") as refused:
        compose(EN, CODE, origin_host=host, app_hash=None)
    assert not isinstance(refused.value, UnfitForAutofill)  # configuration, not the client's to fix


@pytest.mark.parametrize(
    ("origin", "host"),
    [
        ("https://shop.example", "shop.example"),
        ("https://Shop.Example/", "shop.example"),
        ("https://shop.example:443", "shop.example"),
        ("https://магазин.example", "xn--80aairftm.example"),
    ],
)
def test_webotp_host_of_an_origin(origin: str, host: str) -> None:
    assert webotp_host(origin) == host


@pytest.mark.parametrize(
    ("origin", "why"),
    [
        ("http://shop.example", "not https"),
        ("https://shop.example:8443", "cannot name a page on port 8443"),
        ("https://shop.example:99999", "invalid port"),
        ("https://[::1]", "no IPv6 literal"),
        ("https://shop.example/login", "not an origin"),
        ("https://user@shop.example", "not an origin"),
        ("shop.example", "not https"),
    ],
)
def test_webotp_host_refuses_what_the_line_cannot_name(origin: str, why: str) -> None:
    with pytest.raises(ValueError, match=re.escape(why)):
        webotp_host(origin)


@pytest.mark.parametrize(
    ("text", "code"),
    [
        ("code 12 34", "12 34"),
        ("code 12#34", "12#34"),
        ("code ", ""),
        ("code 1234", "5678"),
        ("code\t1\t", "1\t"),
    ],
)
def test_a_code_the_line_cannot_carry_is_refused(text: str, code: str) -> None:
    with pytest.raises(ValueError):
        compose(text, code, origin_host=HOST, app_hash=None)


def test_the_readme_shows_the_exact_texts() -> None:
    readme = (Path(__file__).parent.parent / "README.md").read_text(encoding="utf-8")
    # The built-in templates with VERIFY_BRAND unset and the default 15 minutes, as the README says.
    en, ru = (render(SMS_TEMPLATES[locale], "sms", CODE, "Verify", 15) for locale in ("en", "ru"))
    for host, app_hash, text in ((HOST, None, en), (HOST, None, ru), (None, HASH, en), (HOST, HASH, en)):
        message = compose(text, CODE, origin_host=host, app_hash=app_hash)
        size = measure(message)
        assert f"({size.encoding}, {size.octets} bytes):\n\n```\n{message}\n```" in readme
    assert measure(compose(ru, CODE, origin_host=None, app_hash=HASH)).octets == 108
    with pytest.raises(UnfitForAutofill, match="this one takes 152 bytes"):  # "Russian with both lines is 152 bytes"
        compose(ru, CODE, origin_host=HOST, app_hash=HASH)
    custom = "Ваш код подтверждения для входа в магазин: {code}. Никому не сообщайте этот код."
    with pytest.raises(UnfitForAutofill) as refused:
        compose(custom.format(code=CODE), CODE, origin_host=None, app_hash=HASH)
    assert custom in readme and f'"detail": "{refused.value.reason}"' in readme


# Property tests: whatever the template renders to, the output parses back by the spec's algorithm.

GSM7_CHARS = "aZ09 .:#@-_\r\n€[^|é"  # '€[^|' are extension characters: two septets each
TEXT_ALPHABET = st.sampled_from(list(GSM7_CHARS + "\tПжЁç😀\u200b"))
CODES = st.from_regex(r"[0-9]{4,10}", fullmatch=True)
ASCII_LABELS = st.from_regex(r"[a-z0-9]{1,8}(-[a-z0-9]{1,8})?", fullmatch=True)
LABELS = st.one_of(ASCII_LABELS, ASCII_LABELS.map(str.upper), st.sampled_from(["магазин", "Bücher", "例え", "ёж"]))
HOSTS = st.lists(LABELS, min_size=1, max_size=4).map(".".join).filter(lambda h: len(h) <= 253)
HASHES = st.from_regex(r"[A-Za-z0-9+/]{11}", fullmatch=True)


@st.composite
def texts(draw: st.DrawFn, code: str) -> str:
    # Lengths drawn evenly up to past one SMS, so both sides of the 140-byte limit come up in either encoding.
    alphabet = draw(st.sampled_from([st.sampled_from(list(GSM7_CHARS)), TEXT_ALPHABET]))
    length = draw(st.integers(0, 170))
    before = draw(st.integers(0, length))
    return (
        draw(st.text(alphabet, min_size=before, max_size=before))
        + code
        + draw(st.text(alphabet, min_size=length - before, max_size=length - before))
    )


@settings(deadline=None, max_examples=400)
@given(st.data(), CODES, st.none() | HOSTS, st.none() | HASHES)
def test_compose_always_parses_back(data: st.DataObject, code: str, host: str | None, app_hash: str | None) -> None:
    text = data.draw(texts(code))
    expected_lines = [
        text,
        *([app_hash] if app_hash else []),
        *([f"@{idna.encode(host, uts46=True).decode()} #{code}"] if host else []),
    ]
    expected = "\n".join(expected_lines)
    size = measure(expected)
    event(
        f"{size.encoding}, app_hash {'refused' if app_hash and size.octets > 140 else bool(app_hash)}, "
        f"WebOTP {bool(host)}"
    )
    if app_hash and size.octets > 140:
        with pytest.raises(UnfitForAutofill, match=rf"takes {size.octets} bytes, {size.octets - 140} over"):
            compose(text, code, origin_host=host, app_hash=app_hash)
        return
    message = compose(text, code, origin_host=host, app_hash=app_hash)
    assert message == expected
    if app_hash:
        assert measure(message).parts == 1
    normalized = message.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    if host:
        parsed = parse_otp_message(message)
        assert parsed == (idna.encode(host, uts46=True).decode(), code, None)
        assert parsed[0] == parsed[0].lower() and parsed[0].isascii()
    if app_hash:
        assert normalized[-2 if host else -1] == app_hash


@given(st.text(TEXT_ALPHABET, max_size=200))
def test_140_bytes_is_exactly_one_sms(text: str) -> None:
    size = measure(text)
    assert (size.octets <= 140) == (size.parts == 1)


# ---- Built-in templates: one SMS part each, and the spoken wording ----

BRAND = "ExampleShop"  # 11 characters, as long as an alphanumeric sender name
GSM7_LOCALES = {"en", "uz", "de", "fr", "es", "pt", "it", "id"}


@pytest.mark.parametrize("locale", LOCALES)
def test_every_builtin_sms_template_fits_one_part_with_a_6_digit_code(locale: str) -> None:
    size = measure(render(SMS_TEMPLATES[locale], "sms", "123456", BRAND, 15))
    # GSM-7 where the language can be written in it, else UCS-2 within one part's 70 units.
    assert (size.encoding, size.parts) == ("GSM-7" if locale in GSM7_LOCALES else "UCS-2", 1), size
    assert check_template(SMS_TEMPLATES[locale], "sms", BRAND, 15).parts <= 2  # and a 10-digit code in 2


def test_the_builtin_locales_are_the_issues_sixteen_in_both_channels() -> None:
    wanted = {"en", "ru", "uk", "kk", "uz", "de", "fr", "es", "pt", "it", "tr", "ar", "hi", "id", "zh", "ja"}
    assert set(SMS_TEMPLATES) == set(VOICE_TEMPLATES) == wanted


SPOKEN = "1, 2, 3, 4, 5, 6"


@pytest.mark.parametrize(
    ("locale", "wording"),
    [
        ("en", f"Your Acme code is {SPOKEN}. Again: {SPOKEN}."),
        ("ru", f"Ваш код Acme: {SPOKEN}. Повторяю: {SPOKEN}."),
        ("uk", f"Ваш код Acme: {SPOKEN}. Повторюю: {SPOKEN}."),
        ("kk", f"Сіздің Acme кодыңыз: {SPOKEN}. Қайталаймын: {SPOKEN}."),
        ("uz", f"Sizning Acme kodingiz: {SPOKEN}. Takror: {SPOKEN}."),
        ("de", f"Ihr Acme-Code lautet {SPOKEN}. Noch einmal: {SPOKEN}."),
        ("fr", f"Votre code Acme est {SPOKEN}. Je répète : {SPOKEN}."),
        ("es", f"Su código de Acme es {SPOKEN}. Repito: {SPOKEN}."),
        ("pt", f"O seu código Acme é {SPOKEN}. Repito: {SPOKEN}."),
        ("it", f"Il suo codice Acme è {SPOKEN}. Ripeto: {SPOKEN}."),
        ("tr", f"Acme kodunuz {SPOKEN}. Tekrar ediyorum: {SPOKEN}."),
        ("ar", f"رمز Acme الخاص بك هو {SPOKEN}. أكرر: {SPOKEN}."),
        ("hi", f"आपका Acme कोड है {SPOKEN}. फिर से: {SPOKEN}."),
        ("id", f"Kode Acme Anda adalah {SPOKEN}. Sekali lagi: {SPOKEN}."),
        ("zh", f"您的Acme验证码是{SPOKEN}。再说一遍：{SPOKEN}。"),  # noqa: RUF001 - CJK punctuation
        ("ja", f"Acmeの認証コードは{SPOKEN}です。もう一度：{SPOKEN}。"),  # noqa: RUF001 - CJK punctuation
    ],
)
def test_the_spoken_text_says_the_digits_one_by_one_twice(locale: str, wording: str) -> None:
    assert render(VOICE_TEMPLATES[locale], "voice", "123456", "Acme", 15) == wording
    assert wording.count(SPOKEN) == 2


# ---- Built-in payment templates (PSD2 dynamic linking): what the code approves, in every locale ----

TYPICAL_PAYMENT = Payment("12.50", "EUR", "Shop Ltd")


def test_every_locale_has_both_payment_templates() -> None:
    assert set(PAYMENT_SMS_TEMPLATES) == set(PAYMENT_VOICE_TEMPLATES) == set(LOCALES)
    assert len(LOCALES) == 16


@pytest.mark.parametrize("locale", LOCALES)
@pytest.mark.parametrize("kind", ["sms-payment", "voice-payment"])
def test_every_builtin_payment_template_passes_the_check(locale: str, kind: str) -> None:
    templates = PAYMENT_SMS_TEMPLATES if kind == "sms-payment" else PAYMENT_VOICE_TEMPLATES
    # A 10-digit code and the longest payment (a 64-character payee): an SMS in at most 3 parts.
    size = check_template(templates[locale], kind, "Verify", 15)
    if kind == "sms-payment":
        assert size.parts <= 3, size


@pytest.mark.parametrize("locale", LOCALES)
def test_every_builtin_payment_sms_fits_two_parts_with_a_typical_payment(locale: str) -> None:
    template = PAYMENT_SMS_TEMPLATES[locale]
    text = render(template, "sms", "123456", "Verify", 15, TYPICAL_PAYMENT)
    size = measure(text)
    # GSM-7 wherever the locale's plain SMS is, else UCS-2; either way within 2 parts.
    assert size.encoding == ("GSM-7" if locale in GSM7_LOCALES else "UCS-2"), (text, size)
    assert size.parts <= 2, (text, size)
    # It says what the code approves, the code, and how long it is valid.
    for shown in ("12.50", "EUR", "Shop Ltd", "123456"):
        assert shown in text
    assert "{minutes}" in template


@pytest.mark.parametrize(
    ("locale", "wording"),
    [
        ("en", f"Your Verify code to pay 12.50 EUR to Shop Ltd is {SPOKEN}. Again: {SPOKEN}."),
        ("ru", f"Код Verify для оплаты 12.50 EUR, получатель Shop Ltd: {SPOKEN}. Повторяю: {SPOKEN}."),
        ("uk", f"Код Verify для оплати 12.50 EUR, отримувач Shop Ltd: {SPOKEN}. Повторюю: {SPOKEN}."),
        ("kk", f"12.50 EUR төлеу үшін Verify кодыңыз, алушы Shop Ltd: {SPOKEN}. Қайталаймын: {SPOKEN}."),
        ("uz", f"12.50 EUR to'lash uchun Verify kodingiz, qabul qiluvchi Shop Ltd: {SPOKEN}. Takror: {SPOKEN}."),
        ("de", f"Ihr Verify-Code für die Zahlung von 12.50 EUR an Shop Ltd lautet {SPOKEN}. Noch einmal: {SPOKEN}."),
        ("fr", f"Votre code Verify pour payer 12.50 EUR à Shop Ltd est {SPOKEN}. Je répète : {SPOKEN}."),
        ("es", f"Su código de Verify para pagar 12.50 EUR a Shop Ltd es {SPOKEN}. Repito: {SPOKEN}."),
        ("pt", f"O seu código Verify para pagar 12.50 EUR a Shop Ltd é {SPOKEN}. Repito: {SPOKEN}."),
        ("it", f"Il suo codice Verify per pagare 12.50 EUR a Shop Ltd è {SPOKEN}. Ripeto: {SPOKEN}."),
        ("tr", f"Shop Ltd alıcısına 12.50 EUR ödemesi için Verify kodunuz {SPOKEN}. Tekrar ediyorum: {SPOKEN}."),  # noqa: RUF001 - Turkish dotless i
        ("ar", f"رمز Verify لدفع 12.50 EUR إلى Shop Ltd هو {SPOKEN}. أكرر: {SPOKEN}."),
        ("hi", f"Shop Ltd को 12.50 EUR के भुगतान के लिए आपका Verify कोड है {SPOKEN}. फिर से: {SPOKEN}."),
        ("id", f"Kode Verify Anda untuk membayar 12.50 EUR ke Shop Ltd adalah {SPOKEN}. Sekali lagi: {SPOKEN}."),
        ("zh", f"您向Shop Ltd支付12.50 EUR的Verify验证码是{SPOKEN}。再说一遍：{SPOKEN}。"),  # noqa: RUF001 - CJK punctuation
        ("ja", f"Shop Ltdへの12.50 EURのお支払い用のVerify認証コードは{SPOKEN}です。もう一度：{SPOKEN}。"),  # noqa: RUF001 - CJK punctuation
    ],
)
def test_the_spoken_payment_text_names_the_payment_then_says_the_code_twice(locale: str, wording: str) -> None:
    assert render(PAYMENT_VOICE_TEMPLATES[locale], "voice", "123456", "Verify", 15, TYPICAL_PAYMENT) == wording
    assert wording.count(SPOKEN) == 2
    assert max(wording.index(shown) for shown in ("12.50", "EUR", "Shop Ltd")) < wording.index(SPOKEN)


@pytest.mark.parametrize(
    ("template", "why"),
    [
        ("Your code", "must contain the placeholder {code}"),
        ("{code} for {user}", "unknown: user"),
        ("{code:>8}", "a format spec"),
        ("{code!r}", "a format spec"),
        ("{code} {", "not a template"),
        ("{code} " + "x" * 300, "take 3 SMS parts"),
    ],
)
def test_a_template_is_refused_with_its_reason(template: str, why: str) -> None:
    with pytest.raises(BadTemplate, match=re.escape(why)):
        check_template(template, "sms", "Acme", 15)


def test_a_long_voice_template_is_not_counted_in_sms_parts() -> None:
    assert check_template("{code} " + "x" * 400, "voice", "Acme", 15).parts > 2


@pytest.mark.parametrize(
    ("tag", "candidates"),
    [("pt-BR", ("pt-br", "pt")), ("zh_Hant_TW", ("zh-hant-tw", "zh-hant", "zh")), ("EN", ("en",))],
)
def test_locale_candidates_go_from_the_most_specific_to_the_language(tag: str, candidates: tuple[str, ...]) -> None:
    assert locale_candidates(tag) == candidates
