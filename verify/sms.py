"""SMS texts: their size (encoding and parts), and the lines that let a phone autofill the code.

:func:`measure` says how a text travels: GSM-7 when every character is in the GSM 03.38 tables (an extension
character costs two septets), else UCS-2 for the whole text, and how many parts that takes (160/153 septets or
70/67 UTF-16 units, never splitting an escape or surrogate pair), as the gateways count them; Android's 140-byte
limit is checked against the same count.

:func:`compose` appends to the rendered template the app hash of Android's SMS Retriever and the WebOTP line
``@<host> #<code>``, one per line with the WebOTP line last: a layout both formats read. It refuses an
``app_hash`` text that does not fit one SMS rather than send a message the phone will not autofill. The rules,
the specifications they come from and the size vectors: docs/texts.md.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from string import Formatter
from urllib.parse import urlsplit

import gsm0338  # noqa: F401 - registers the "gsm03.38" codec
import idna

GSM7, UCS2 = "GSM-7", "UCS-2"
SINGLE = {GSM7: 160, UCS2: 70}
PART = {GSM7: 153, UCS2: 67}
# The app hash of Android's SMS Retriever: 11 characters of standard base64. Anchored, so match() is enough.
APP_HASH_RE = re.compile(r"\A[A-Za-z0-9+/]{11}\Z")
RETRIEVER_MAX_BYTES = 140  # "Be no longer than 140 bytes": one SMS, whatever its encoding
# What Chrome's WebOTP parser accepts as a host; anything else in the line would make it skip the message.
_WEBOTP_HOST_RE = re.compile(r"[a-z0-9.-]+")
_ASCII_WHITESPACE = frozenset("\t\n\f\r ")  # the Infra standard's, which ends a WebOTP token


@dataclass(frozen=True)
class SmsSize:
    """How a text travels: its ``encoding``, its length in ``units`` (septets or UTF-16 units), ``parts``."""

    encoding: str
    units: int
    parts: int

    @property
    def octets(self) -> int:
        """Bytes of user data the text takes: septets packed 7 bits each (GSM-7), or 2 per unit (UCS-2)."""
        return -(-self.units * 7 // 8) if self.encoding == GSM7 else 2 * self.units


def measure(text: str) -> SmsSize:
    """The encoding, length and part count of ``text``."""
    try:
        costs = [len(ch.encode("gsm03.38")) for ch in text]
        encoding = GSM7
    except UnicodeEncodeError:
        costs = [len(ch.encode("utf-16-le")) // 2 for ch in text]
        encoding = UCS2
    units = sum(costs)
    if units <= SINGLE[encoding]:
        return SmsSize(encoding, units, 1)
    parts, filled = 1, 0
    for cost in costs:
        if filled + cost > PART[encoding]:
            parts, filled = parts + 1, 0
        filled += cost
    return SmsSize(encoding, units, parts)


class UnfitForAutofill(ValueError):
    """The client's ``app_hash`` cannot work: it is malformed, or the text it would go in is longer than the SMS
    Retriever reads. ``reason`` says which, by how much, and what to change; the API answers 400 naming
    ``app_hash`` rather than send a message the phone will not autofill."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def webotp_host(origin: str) -> str:
    """The host a WebOTP line names for a page of ``origin`` (``https://shop.example`` -> ``shop.example``).

    :class:`ValueError` when no WebOTP line can name that origin: the spec binds a code to https on the default
    port, so ``http://`` and any port but 443 are refused rather than bound to a different origin.
    """
    parts = urlsplit(origin.strip())
    if parts.scheme.lower() != "https":
        raise ValueError(f"{origin!r}: a WebOTP code is bound to an https origin, and this one is not https")
    if parts.username is not None or parts.path not in ("", "/") or parts.query or parts.fragment:
        raise ValueError(f"{origin!r} is not an origin (scheme://host only)")
    try:
        port = parts.port
    except ValueError:
        raise ValueError(f"{origin!r} has an invalid port") from None
    if port not in (None, 443):
        raise ValueError(f"{origin!r}: the WebOTP line carries no port, so it cannot name a page on port {port}")
    return _webotp_host(parts.netloc.rpartition(":")[0] if port else parts.netloc)


def _webotp_host(host: str) -> str:
    """``host`` as the WebOTP line must spell it: lowercase, internationalized labels as punycode A-labels."""
    if ":" in host or host.startswith("["):
        raise ValueError(f"WebOTP host {host!r}: the line takes a host name without a port (and no IPv6 literal)")
    try:
        ascii_host = idna.encode(host, uts46=True).decode("ascii")
    except (idna.IDNAError, UnicodeError) as err:
        raise ValueError(f"WebOTP host {host!r} is not a valid host name: {err}") from None
    if not _WEBOTP_HOST_RE.fullmatch(ascii_host):  # idna allows nothing else either; this is Chrome's rule
        raise ValueError(f"WebOTP host {host!r} has characters outside a-z, 0-9, '.', '-'")
    return ascii_host


def compose(text: str, code: str, *, origin_host: str | None, app_hash: str | None) -> str:
    """The SMS to send: ``text`` (the localized template, rendered with ``code``), then the app hash on its own
    line (``app_hash``), then the WebOTP line ``@<origin_host> #<code>`` (``origin_host``), joined by single LFs.

    ``origin_host`` is written lowercase and as punycode; a port, or anything else no WebOTP parser accepts,
    raises :class:`ValueError` (it comes from configuration, see :func:`webotp_host`). With ``app_hash`` the whole
    message must fit one SMS of 140 bytes, and a malformed hash or a longer message raises
    :class:`UnfitForAutofill` with a reason a client can act on. Without ``app_hash`` any length is fine: WebOTP
    reads the reassembled message.
    """
    if not code or "#" in code or any(ch in _ASCII_WHITESPACE for ch in code):
        raise ValueError(f"code {code!r} cannot be a WebOTP token: it must be non-empty, without whitespace or '#'")
    if code not in text:
        raise ValueError("the text must contain the code it carries")
    lines = [text]
    if app_hash is not None:
        if not APP_HASH_RE.match(app_hash):
            raise UnfitForAutofill(
                f"app_hash must be your app's 11-character SMS Retriever hash (letters, digits, "
                f"'+' and '/'), not {len(app_hash)} characters like {app_hash[:16]!r}"
            )
        lines.append(app_hash)
    if origin_host is not None:
        lines.append(f"@{_webotp_host(origin_host)} #{code}")
    message = "\n".join(lines)
    if app_hash is not None:
        _require_one_sms(message)
    return message


def _require_one_sms(message: str) -> None:
    size = measure(message)
    if size.octets <= RETRIEVER_MAX_BYTES:
        return
    over = size.octets - RETRIEVER_MAX_BYTES
    if size.encoding == GSM7:
        doubles = sorted({ch for ch in message if len(ch.encode("gsm03.38")) == 2})
        why = f"it is GSM-7, so one message holds {SINGLE[GSM7]} septets, and it needs {size.units}"
        if doubles:
            why += f" (each {' or '.join(map(repr, doubles))} takes two)"
        fix = "Start without app_hash, or with a shorter template."
    else:
        culprit = next(ch for ch in message if not _is_gsm7(ch))
        why = (
            f"it is UCS-2 (the template has characters outside GSM-7, such as {culprit!r}), so one message "
            f"holds {SINGLE[UCS2]} UTF-16 units, and it needs {size.units}"
        )
        fix = f"Start without app_hash, or with a shorter template, or one in GSM-7 ({SINGLE[GSM7]} characters fit)."
    raise UnfitForAutofill(
        f"with app_hash the SMS must fit one message of {RETRIEVER_MAX_BYTES} bytes for Android's SMS Retriever, "
        f"but this one takes {size.octets} bytes, {over} over: {why}. {fix}"
    )


def _is_gsm7(ch: str) -> bool:
    try:
        ch.encode("gsm03.38")
    except UnicodeEncodeError:
        return False
    return True


# ---- templates: one per channel and locale ----

# The channels whose code is carried by a text: an SMS's, or the one a call speaks.
TEXT_CHANNELS = ("sms", "voice")
#: What a template is for: a channel's texts, and that channel's texts for a payment (PSD2 dynamic linking), which
#: name what the code approves: ``sms-payment``, ``voice-payment``.
TEMPLATE_KINDS = (*TEXT_CHANNELS, *(f"{channel}-payment" for channel in TEXT_CHANNELS))
PLACEHOLDERS = frozenset({"code", "brand", "minutes"})
PAYMENT_PLACEHOLDERS = frozenset({"amount", "currency", "payee"})  # a payment's templates must name all three
DEFAULT_LOCALE = "en"
# The longest code a template must carry in at most this many SMS parts (VERIFY_CODE_LENGTH allows 10 digits).
LONGEST_CODE, MAX_PARTS = "0" * 10, 2
# A payment's text also carries its amount and payee (up to 64 characters): it may take one part more.
MAX_PAYMENT_PARTS = 3
# A BCP 47 tag, loosely: a language of 2-8 letters, then subtags of 1-8 letters or digits ("pt-BR", "zh-Hant-TW").
LOCALE_RE = re.compile(r"[A-Za-z]{2,8}(?:[-_][A-Za-z0-9]{1,8}){0,7}")

# Written for one SMS part with a 6-digit code and a brand of up to 11 characters: GSM-7 where the language can be
# written correctly in it (the Spanish and Portuguese texts choose words without the accents GSM-7 lacks), else at
# most 70 UCS-2 units. tests/test_sms.py counts each one's parts.
SMS_TEMPLATES: dict[str, str] = {
    "en": "{code} is your {brand} code. It expires in {minutes} min.",
    "ru": "{code} — ваш код {brand}. Действует {minutes} мин.",
    "uk": "{code} — ваш код {brand}. Дійсний {minutes} хв.",
    "kk": "{code} — {brand} растау коды. {minutes} мин жарамды.",
    "uz": "{code} - {brand} tasdiqlash kodi. {minutes} daqiqa amal qiladi.",
    "de": "{code} ist Ihr {brand}-Code. Gültig für {minutes} Min.",
    "fr": "{code} est votre code {brand}. Valable {minutes} min.",
    "es": "{code} es tu clave de {brand}. Caduca en {minutes} min.",
    "pt": "{brand}: use {code} para confirmar. Expira em {minutes} min.",
    "it": "{code} è il tuo codice {brand}. Scade tra {minutes} min.",
    "tr": "{code} {brand} doğrulama kodunuzdur. {minutes} dk geçerlidir.",
    "ar": "{code} هو رمز {brand} الخاص بك. صالح لمدة {minutes} دقيقة.",
    "hi": "{code} आपका {brand} कोड है। {minutes} मिनट तक मान्य।",
    "id": "{code} adalah kode {brand} Anda. Berlaku {minutes} menit.",
    "zh": "{code}是您的{brand}验证码，{minutes}分钟内有效。",  # noqa: RUF001 - CJK punctuation
    "ja": "{brand}の認証コード：{code}（{minutes}分間有効）",  # noqa: RUF001 - CJK punctuation
}
# Written for the ear and short (a call is billed by its length): the code, its digits said one by one
# (render() spells them "1, 2, 3"), said twice.
VOICE_TEMPLATES: dict[str, str] = {
    "en": "Your {brand} code is {code}. Again: {code}.",
    "ru": "Ваш код {brand}: {code}. Повторяю: {code}.",
    "uk": "Ваш код {brand}: {code}. Повторюю: {code}.",
    "kk": "Сіздің {brand} кодыңыз: {code}. Қайталаймын: {code}.",
    "uz": "Sizning {brand} kodingiz: {code}. Takror: {code}.",
    "de": "Ihr {brand}-Code lautet {code}. Noch einmal: {code}.",
    "fr": "Votre code {brand} est {code}. Je répète : {code}.",
    "es": "Su código de {brand} es {code}. Repito: {code}.",
    "pt": "O seu código {brand} é {code}. Repito: {code}.",
    "it": "Il suo codice {brand} è {code}. Ripeto: {code}.",
    "tr": "{brand} kodunuz {code}. Tekrar ediyorum: {code}.",
    "ar": "رمز {brand} الخاص بك هو {code}. أكرر: {code}.",
    "hi": "आपका {brand} कोड है {code}. फिर से: {code}.",
    "id": "Kode {brand} Anda adalah {code}. Sekali lagi: {code}.",
    "zh": "您的{brand}验证码是{code}。再说一遍：{code}。",  # noqa: RUF001 - CJK punctuation
    "ja": "{brand}の認証コードは{code}です。もう一度：{code}。",  # noqa: RUF001 - CJK punctuation
}
# A payment's texts (PSD2 dynamic linking): what the code approves, its amount, currency and payee, with the code and
# (in an SMS) how long it is valid. Written as the texts above: an SMS in GSM-7 where the language can be written in it
# (the same word choices, and Uzbek's o' with the apostrophe), within 2 parts with a 6-digit code and a typical payment
# (12.50 EUR to "Shop Ltd"), and within 3 with the longest (a 64-character payee); a spoken text short and with the
# code twice. tests/test_sms.py counts the parts and pins the spoken wording.
PAYMENT_SMS_TEMPLATES: dict[str, str] = {
    "en": "{code} is your {brand} code to pay {amount} {currency} to {payee}. Expires in {minutes} min.",
    "ru": "{code} — код {brand} для оплаты {amount} {currency}, получатель: {payee}. Действует {minutes} мин.",
    "uk": "{code} — код {brand} для оплати {amount} {currency}, отримувач: {payee}. Дійсний {minutes} хв.",
    "kk": "{code} — {amount} {currency} төлеу үшін {brand} коды. Алушы: {payee}. {minutes} мин жарамды.",
    "uz": (
        "{code} - {amount} {currency} to'lash uchun {brand} kodi. Qabul qiluvchi: {payee}. "
        "{minutes} daqiqa amal qiladi."
    ),
    "de": "{code} ist Ihr {brand}-Code für die Zahlung von {amount} {currency} an {payee}. Gültig für {minutes} Min.",
    "fr": "{code} est votre code {brand} pour payer {amount} {currency} à {payee}. Valable {minutes} min.",
    "es": "{code} es tu clave de {brand} para pagar {amount} {currency} a {payee}. Caduca en {minutes} min.",
    "pt": "{brand}: use {code} para pagar {amount} {currency} a {payee}. Expira em {minutes} min.",
    "it": "{code} è il tuo codice {brand} per pagare {amount} {currency} a {payee}. Scade tra {minutes} min.",
    "tr": "{code}, {payee} alıcısına {amount} {currency} ödemesi için {brand} kodunuzdur. {minutes} dk geçerlidir.",  # noqa: RUF001 - Turkish dotless i
    "ar": "{code} هو رمز {brand} لدفع {amount} {currency} إلى {payee}. صالح لمدة {minutes} دقيقة.",
    "hi": "{code} आपका {brand} कोड है, {payee} को {amount} {currency} के भुगतान के लिए। {minutes} मिनट तक मान्य।",
    "id": "{code} adalah kode {brand} Anda untuk membayar {amount} {currency} ke {payee}. Berlaku {minutes} menit.",
    "zh": "{code}是您向{payee}支付{amount} {currency}的{brand}验证码，{minutes}分钟内有效。",  # noqa: RUF001 - CJK punctuation
    "ja": "{payee}への{amount} {currency}のお支払い用の{brand}認証コード：{code}（{minutes}分間有効）",  # noqa: RUF001 - CJK punctuation
}
PAYMENT_VOICE_TEMPLATES: dict[str, str] = {
    "en": "Your {brand} code to pay {amount} {currency} to {payee} is {code}. Again: {code}.",
    "ru": "Код {brand} для оплаты {amount} {currency}, получатель {payee}: {code}. Повторяю: {code}.",
    "uk": "Код {brand} для оплати {amount} {currency}, отримувач {payee}: {code}. Повторюю: {code}.",
    "kk": "{amount} {currency} төлеу үшін {brand} кодыңыз, алушы {payee}: {code}. Қайталаймын: {code}.",
    "uz": "{amount} {currency} to'lash uchun {brand} kodingiz, qabul qiluvchi {payee}: {code}. Takror: {code}.",
    "de": "Ihr {brand}-Code für die Zahlung von {amount} {currency} an {payee} lautet {code}. Noch einmal: {code}.",
    "fr": "Votre code {brand} pour payer {amount} {currency} à {payee} est {code}. Je répète : {code}.",
    "es": "Su código de {brand} para pagar {amount} {currency} a {payee} es {code}. Repito: {code}.",
    "pt": "O seu código {brand} para pagar {amount} {currency} a {payee} é {code}. Repito: {code}.",
    "it": "Il suo codice {brand} per pagare {amount} {currency} a {payee} è {code}. Ripeto: {code}.",
    "tr": "{payee} alıcısına {amount} {currency} ödemesi için {brand} kodunuz {code}. Tekrar ediyorum: {code}.",  # noqa: RUF001 - Turkish dotless i
    "ar": "رمز {brand} لدفع {amount} {currency} إلى {payee} هو {code}. أكرر: {code}.",
    "hi": "{payee} को {amount} {currency} के भुगतान के लिए आपका {brand} कोड है {code}. फिर से: {code}.",
    "id": "Kode {brand} Anda untuk membayar {amount} {currency} ke {payee} adalah {code}. Sekali lagi: {code}.",
    "zh": "您向{payee}支付{amount} {currency}的{brand}验证码是{code}。再说一遍：{code}。",  # noqa: RUF001 - CJK punctuation
    "ja": "{payee}への{amount} {currency}のお支払い用の{brand}認証コードは{code}です。もう一度：{code}。",  # noqa: RUF001 - CJK punctuation
}

BUILTIN_TEMPLATES: dict[str, dict[str, str]] = {
    "sms": SMS_TEMPLATES,
    "voice": VOICE_TEMPLATES,
    "sms-payment": PAYMENT_SMS_TEMPLATES,
    "voice-payment": PAYMENT_VOICE_TEMPLATES,
}
LOCALES = tuple(SMS_TEMPLATES)


@dataclass(frozen=True)
class Payment:
    """What a payment's code approves (PSD2 dynamic linking): its ``amount`` (a decimal string, as the client gave
    it), ``currency`` (ISO 4217) and ``payee``. Its texts show all three, and its code is bound to them."""

    amount: str
    currency: str
    payee: str


#: ISO 4217's currencies (its list of 2025, funds and metals left out): what a payment's ``currency`` may be.
CURRENCIES = frozenset(
    """AED AFN ALL AMD ANG AOA ARS AUD AWG AZN BAM BBD BDT BGN BHD BIF BMD BND BOB BOV BRL BSD BTN BWP BYN BZD CAD CDF
    CHE CHF CHW CLF CLP CNY COP COU CRC CUC CUP CVE CZK DJF DKK DOP DZD EGP ERN ETB EUR FJD FKP GBP GEL GHS GIP GMD GNF
    GTQ GYD HKD HNL HTG HUF IDR ILS INR IQD IRR ISK JMD JOD JPY KES KGS KHR KMF KPW KRW KWD KYD KZT LAK LBP LKR LRD LSL
    LYD MAD MDL MGA MKD MMK MNT MOP MRU MUR MVR MWK MXN MXV MYR MZN NAD NGN NIO NOK NPR NZD OMR PAB PEN PGK PHP PKR PLN
    PYG QAR RON RSD RUB RWF SAR SBD SCR SDG SEK SGD SHP SLE SLL SOS SRD SSP STN SVC SYP SZL THB TJS TMT TND TOP TRY TTD
    TWD TZS UAH UGX USD USN UYI UYU UYW UZS VED VES VND VUV WST XAF XCD XCG XOF XPF YER ZAR ZMW ZWG ZWL""".split()
)
#: A payment's amount: a decimal string, up to 12 digits before the point and 4 after (ISO 4217's most minor units).
AMOUNT_RE = re.compile(r"(?:0|[1-9][0-9]{0,11})(?:\.[0-9]{1,4})?")
MAX_PAYEE_LENGTH = 64

# The largest payment a template must carry in MAX_PAYMENT_PARTS (a payee of 64 GSM-7 characters).
LONGEST_PAYMENT = Payment("999999999999.99", "EUR", "W" * 64)


class BadTemplate(ValueError):
    """A template that cannot be used; the message says why."""


def kind_of(channel: str, payment: Payment | None) -> str:
    """The template kind of a text on ``channel``: the channel's own, or for a payment ``<channel>-payment``."""
    return f"{channel}-payment" if payment is not None else channel


def spoken(code: str) -> str:
    """A code as a voice says it best: its digits one by one (``1, 2, 3``)."""
    return ", ".join(code)


def render(template: str, channel: str, code: str, brand: str, minutes: int, payment: Payment | None = None) -> str:
    """``template`` filled in; a spoken code's digits come one by one (:func:`spoken`); a payment's amount,
    currency and payee as the client gave them."""
    shown = {"code": spoken(code) if channel == "voice" else code, "brand": brand, "minutes": minutes}
    if payment is not None:
        shown.update(amount=payment.amount, currency=payment.currency, payee=payment.payee)
    return template.format(**shown)


def check_template(template: str, kind: str, brand: str, minutes: int) -> SmsSize:
    """Refuse a template of ``kind`` (:data:`TEMPLATE_KINDS`) that lacks ``{code}`` (a payment's: or one of
    ``{amount}``, ``{currency}``, ``{payee}``), uses another placeholder (or a format spec, or stray braces), or, for
    an SMS, makes a 10-digit code take more than 2 parts (a payment's, with the longest payment: 3); returns its size
    with a 10-digit code."""
    channel, payment = kind.partition("-")[0], LONGEST_PAYMENT if kind.endswith("-payment") else None
    known = PLACEHOLDERS | (PAYMENT_PLACEHOLDERS if payment else frozenset())
    try:
        fields = [(name, spec, conversion) for _, name, spec, conversion in Formatter().parse(template)]
    except ValueError as err:
        raise BadTemplate(f"is not a template ({err}); write a literal brace as {{{{ or }}}}") from None
    names = {name for name, _, _ in fields if name is not None}
    unknown = sorted(names - known)
    if unknown or any(spec or conversion for name, spec, conversion in fields if name is not None):
        allowed = ", ".join(f"{{{p}}}" for p in sorted(known))
        raise BadTemplate(f"may use only {allowed}, as they are (unknown: {', '.join(unknown) or 'a format spec'})")
    missing = sorted(({"code"} | (PAYMENT_PLACEHOLDERS if payment else set())) - names)
    if missing:
        raise BadTemplate(
            f"must contain the placeholder{'s' * (len(missing) > 1)} {', '.join(f'{{{m}}}' for m in missing)}"
        )
    size = measure(render(template, channel, LONGEST_CODE, brand, minutes, payment))
    most = MAX_PAYMENT_PARTS if payment else MAX_PARTS
    if channel == "sms" and size.parts > most:
        raise BadTemplate(
            f"makes a {len(LONGEST_CODE)}-digit code take {size.parts} SMS parts ({size.encoding}, {size.units} "
            f"units with the brand {brand!r}{' and the longest payment' if payment else ''}); at most {most} are "
            "allowed"
        )
    return size


@functools.lru_cache(maxsize=256)
def locale_candidates(tag: str) -> tuple[str, ...]:
    """The locales a BCP 47 ``tag`` may be served in, the most specific first: ``pt-BR`` -> ``pt-br``, ``pt``. (The
    tags clients send are few: each is split once.)"""
    subtags = tag.replace("_", "-").lower().split("-")
    return tuple("-".join(subtags[:n]) for n in range(len(subtags), 0, -1))
