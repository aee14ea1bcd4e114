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

import re
from dataclasses import dataclass
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
