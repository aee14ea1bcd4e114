"""Proof tokens and code HMACs: signing, expiry, tampering, key rotation, offline verification."""

from __future__ import annotations

import time

import pytest
from itsdangerous import URLSafeTimedSerializer

from tests.conftest import MovableClock
from verify.errors import InvalidToken, TokenExpired
from verify.tokens import PROOF_SALT, Proof, Secrets, client_secret_hash, new_client_secret

NEW, OLD = "new-secret-key-0123456789", "old-secret-key-0123456789"
PROOF = Proof("abcd" + "0" * 24, "+79991234567", "sms", "code", 1_700_000_000)


def test_round_trip() -> None:
    secrets = Secrets((NEW,), 3600, MovableClock(PROOF.verified_at + 10))
    assert secrets.verify(secrets.sign(PROOF)) == PROOF


def test_the_same_proof_signs_to_the_same_token() -> None:
    secrets = Secrets((NEW,), 3600, MovableClock(PROOF.verified_at + 10))
    assert secrets.sign(PROOF) == secrets.sign(PROOF)


def test_expiry_counts_from_approval() -> None:
    clock = MovableClock(PROOF.verified_at + 3600)
    secrets = Secrets((NEW,), 3600, clock)
    token = secrets.sign(PROOF)
    assert secrets.verify(token) == PROOF
    clock.advance(2)
    with pytest.raises(TokenExpired):
        secrets.verify(token)


@pytest.mark.parametrize(
    "mangle",
    [
        lambda t: t[:-2] + ("AA" if not t.endswith("AA") else "BB"),
        lambda t: "x" + t,
        lambda t: "",
        lambda t: "not.a.token",
    ],
)
def test_tampered_tokens_are_invalid(mangle: object) -> None:
    secrets = Secrets((NEW,), 3600, MovableClock(PROOF.verified_at))
    assert callable(mangle)
    with pytest.raises(InvalidToken):
        secrets.verify(mangle(secrets.sign(PROOF)))


def test_rotation_first_key_signs_all_keys_verify() -> None:
    clock = MovableClock(PROOF.verified_at)
    before = Secrets((OLD,), 3600, clock).sign(PROOF)
    rotated = Secrets((NEW, OLD), 3600, clock)
    assert rotated.verify(before) == PROOF
    after = rotated.sign(PROOF)
    assert Secrets((NEW,), 3600, clock).verify(after) == PROOF
    with pytest.raises(InvalidToken):
        Secrets((OLD,), 3600, clock).verify(after)


def test_a_token_of_another_salt_is_invalid() -> None:
    other = URLSafeTimedSerializer(NEW, salt="something-else").dumps({"vid": "x"})
    with pytest.raises(InvalidToken):
        Secrets((NEW,), 3600, MovableClock(PROOF.verified_at)).verify(other)


def test_offline_verification_as_the_readme_shows() -> None:
    token = Secrets((NEW, OLD), 3600, MovableClock(PROOF.verified_at)).sign(PROOF)
    # What a customer's backend does, with only itsdangerous and the secret key list (newest first).
    serializer = URLSafeTimedSerializer(list(reversed([NEW, OLD])), salt=PROOF_SALT)
    data, signed_at = serializer.loads(token, max_age=10**10, return_timestamp=True)
    assert data == {
        "vid": PROOF.verification_id,
        "phone": PROOF.phone,
        "channel": "sms",
        "via": "code",
        "at": PROOF.verified_at,
    }
    assert int(signed_at.timestamp()) == PROOF.verified_at


def test_code_hashes_survive_rotation() -> None:
    clock = MovableClock(0)
    stored = Secrets((OLD,), 3600, clock).code_hash("vid", "123456")
    rotated = Secrets((NEW, OLD), 3600, clock)
    assert stored in rotated.code_candidates("vid", ["123456"])
    assert stored not in rotated.code_candidates("vid", ["123457"])
    assert stored not in rotated.code_candidates("other-vid", ["123456"])
    assert "123456" not in stored


def test_a_signed_payload_that_is_no_proof_is_invalid() -> None:
    # Signed with our key and salt (a leaked key's forgery, or another release's token), but not our payload.
    signed = URLSafeTimedSerializer([NEW], salt=PROOF_SALT).dumps({"vid": PROOF.verification_id})  # signed now
    with pytest.raises(InvalidToken, match="not a verify proof"):
        Secrets((NEW,), 3600, MovableClock(time.time() + 10)).verify(signed)


def test_client_secrets_are_random_and_kept_only_as_a_hash() -> None:
    made = [new_client_secret() for _ in range(50)]
    assert len({secret for secret, _ in made}) == 50
    for secret, digest in made:
        assert len(secret) == 43 and secret not in digest and digest == client_secret_hash(secret)
        assert len(digest) == 22  # 128 bits: what a record keeps
    assert client_secret_hash("\udc80") != client_secret_hash("")  # not text: hashed all the same, never an error


def test_a_sealed_client_secret_opens_only_with_its_context_and_a_live_key() -> None:
    clock = MovableClock(0)
    old = Secrets((OLD,), 3600, clock)
    rotated = Secrets((NEW, OLD), 3600, clock)
    secret, _ = new_client_secret()
    sealed = old.seal(secret, "pk_shop\n10.0.0.1\nk-1")
    assert secret not in sealed and sealed != old.seal(secret, "pk_shop\n10.0.0.1\nk-2")
    assert old.unseal(sealed, "pk_shop\n10.0.0.1\nk-1") == secret
    assert rotated.unseal(sealed, "pk_shop\n10.0.0.1\nk-1") == secret  # sealed before the rotation: still opens
    assert rotated.unseal(sealed, "pk_shop\n10.0.0.2\nk-1") != secret  # another scope: noise, not the secret
    assert rotated.seal(secret, "c").split(".")[0] != sealed.split(".")[0]  # the newest key seals
    assert Secrets((NEW,), 3600, clock).unseal(sealed, "pk_shop\n10.0.0.1\nk-1") is None  # its key retired
