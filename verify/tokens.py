"""Signed secrets: proof tokens, code HMACs and sealed client secrets, each with its own salt, all keyed by a
rotating key list; and the client secrets themselves.

``VERIFY_SECRET_KEY`` lists keys newest first: the first key signs, every key verifies.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from dataclasses import dataclass
from typing import Any

from itsdangerous import BadData, SignatureExpired, TimestampSigner, URLSafeTimedSerializer

from verify.clock import Clock
from verify.errors import InvalidToken, TokenExpired
from verify.sms import Payment

PROOF_SALT = "verify.proof"
CODE_SALT = b"verify.code"
SEAL_SALT = b"verify.client-secret-seal"
CLIENT_SECRET_BYTES = 32


def new_client_secret() -> tuple[str, str]:
    """A fresh client secret and its hash (:func:`client_secret_hash`), the only form of it Redis keeps."""
    secret = _b64(secrets.token_bytes(CLIENT_SECRET_BYTES))
    return secret, client_secret_hash(secret)


def client_secret_hash(given: str) -> str:
    """What a verification's record keeps of its client secret: SHA-256, cut to 128 bits. The secret is 256
    random bits, so a fast hash is enough; a record read out of Redis does not give it."""
    return _b64(hashlib.sha256(given.encode("utf-8", "replace")).digest()[:16])


@dataclass(frozen=True)
class Proof:
    """What an approved verification proves; the payload of a proof token."""

    verification_id: str
    phone: str
    channel: str
    completed_via: str
    verified_at: int  # unix seconds
    payment: Payment | None = None  # what a payment's code approved (PSD2 dynamic linking)


class _ProofSigner(TimestampSigner):
    """A timestamp signer whose "now" is set by :class:`Secrets`.

    Signing uses the approval time, so a verification's token is the same on every read and expires
    ``token_ttl`` after approval; verifying uses the service clock.
    """

    now: int = 0

    def get_timestamp(self) -> int:
        return self.now


class Secrets:
    """Proof-token signing and code hashing over one list of secret keys (newest first)."""

    def __init__(self, keys: tuple[str, ...], token_ttl: int, clock: Clock) -> None:
        # itsdangerous signs with the *last* key of its list and verifies with all of them.
        self._serializer = URLSafeTimedSerializer(list(reversed(keys)), salt=PROOF_SALT, signer=_ProofSigner)
        self._code_keys = [hmac.new(k.encode(), CODE_SALT, hashlib.sha256).digest() for k in keys]
        self._seal_keys = [hmac.new(k.encode(), SEAL_SALT, hashlib.sha256).digest() for k in keys]
        self.token_ttl = token_ttl
        self._clock = clock

    def _signer(self, now: int) -> _ProofSigner:
        signer = self._serializer.make_signer()
        assert isinstance(signer, _ProofSigner)  # noqa: S101 - the serializer was built with it
        signer.now = now
        return signer

    def sign(self, proof: Proof) -> str:
        """Sign ``proof`` with the newest key, timestamped at its approval."""
        payload = {
            "vid": proof.verification_id,
            "phone": proof.phone,
            "channel": proof.channel,
            "via": proof.completed_via,
            "at": proof.verified_at,
        }
        if proof.payment is not None:
            payload["pay"] = [proof.payment.amount, proof.payment.currency, proof.payment.payee]
        return self._signer(proof.verified_at).sign(self._serializer.dump_payload(payload)).decode("ascii")

    def verify(self, token: str) -> Proof:
        """Check a proof token's signature and age; raise :class:`TokenExpired` or :class:`InvalidToken`."""
        if not token.isascii():  # tokens are URL-safe base64; this also keeps lone surrogates out of itsdangerous
            raise InvalidToken("token signature does not verify")
        try:
            signed = self._signer(int(self._clock())).unsign(token, max_age=self.token_ttl)
            payload: Any = self._serializer.load_payload(signed)
        except SignatureExpired as err:
            raise TokenExpired(f"token is older than {self.token_ttl} s") from err
        except BadData as err:
            raise InvalidToken("token signature does not verify") from err
        try:
            paid = payload.get("pay")
            return Proof(
                str(payload["vid"]),
                str(payload["phone"]),
                str(payload["channel"]),
                str(payload["via"]),
                int(payload["at"]),
                Payment(*map(str, paid)) if paid is not None else None,
            )
        except (KeyError, TypeError, ValueError) as err:
            raise InvalidToken("token payload is not a verify proof") from err

    def code_hash(self, verification_id: str, code: str, payment: Payment | None = None) -> str:
        """HMAC of a code under the newest key: the form a code is checked in (a fallback chain also keeps its code
        sealed, for its next steps: :meth:`seal_code`)."""
        return self._code_hashes(verification_id, code, payment)[0]

    def code_candidates(self, verification_id: str, codes: list[str], payment: Payment | None = None) -> list[str]:
        """HMACs of each submitted code under every key, so codes stored before a rotation still match; with the
        ``payment`` the check names, which a payment's code is bound to."""
        return [h for code in codes for h in self._code_hashes(verification_id, code, payment)]

    def _code_hashes(self, verification_id: str, code: str, payment: Payment | None) -> list[str]:
        # A payment's code is bound to what it approves (PSD2 dynamic linking): its HMAC covers the amount, the
        # currency and the payee, so a check naming another one fails like a wrong code (and counts as an attempt).
        bound = f"{code}\x1f{payment.amount}\x1f{payment.currency}\x1f{payment.payee}" if payment else code
        msg = f"{verification_id}:{bound}".encode()
        return [hmac.new(key, msg, hashlib.sha256).hexdigest() for key in self._code_keys]

    def seal(self, secret: str, context: str) -> str:
        """``secret`` (a client secret) encrypted for a stored idempotent response, so that a replay can hand it
        back while Redis holds no usable copy: XORed with an HMAC of ``context`` (the raw Idempotency-Key and its
        scope, which Redis keeps only hashed) under the newest key, and tagged with that key's fingerprint."""
        return self._seal(_unb64(secret), context)

    def unseal(self, sealed: str, context: str) -> str | None:
        """The client secret :meth:`seal` sealed, or ``None`` when the key that sealed it has been retired."""
        raw = self._unseal(sealed, context)
        return None if raw is None else _b64(raw)

    def seal_code(self, verification_id: str, code: str) -> str:
        """A fallback chain's code, sealed like a client secret (:meth:`seal`) for its next steps to send the same
        one: Redis alone cannot read it, and Redis with the key could already find a code from its HMAC."""
        return self._seal(code.encode("ascii"), f"code:{verification_id}")

    def unseal_code(self, verification_id: str, sealed: str) -> str | None:
        """The code :meth:`seal_code` sealed, or ``None`` when the key that sealed it has been retired."""
        raw = self._unseal(sealed, f"code:{verification_id}")
        return None if raw is None else raw.decode("ascii", "replace")

    def _seal(self, raw: bytes, context: str) -> str:
        key = self._seal_keys[0]
        pad = hmac.new(key, context.encode(), hashlib.sha256).digest()[: len(raw)]
        return f"{_fingerprint(key)}.{_b64(bytes(a ^ b for a, b in zip(raw, pad, strict=True)))}"

    def _unseal(self, sealed: str, context: str) -> bytes | None:
        tag, _, body = sealed.partition(".")
        for key in self._seal_keys:
            if _fingerprint(key) == tag:
                raw = _unb64(body)
                pad = hmac.new(key, context.encode(), hashlib.sha256).digest()[: len(raw)]
                return bytes(a ^ b for a, b in zip(raw, pad, strict=True))
        return None


def _fingerprint(key: bytes) -> str:
    return hmac.new(key, b"fingerprint", hashlib.sha256).hexdigest()[:8]


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
