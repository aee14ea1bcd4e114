"""The JSON views of the service's results: what the API answers and what customer events carry."""

from __future__ import annotations

from typing import Any

from verify.clock import rfc3339
from verify.model import Verification
from verify.tokens import Proof


def to_json(v: Verification) -> dict[str, Any]:
    """The wire form of a verification (API responses and event payloads)."""
    body: dict[str, Any] = {
        "id": v.id,
        "status": v.status,
        "channel": v.channel,
        "phone": v.phone,
        "locale": v.locale,
        "created_at": rfc3339(v.created_at),
        "expires_at": rfc3339(v.expires_at),
        "resend_after": rfc3339(v.resend_after, round_up=True),
        "attempts_left": v.attempts_left,
        "sends_left": v.sends_left,
    }
    if v.call is not None:
        body["call"] = {"number": v.call.number, "numbers": list(v.call.numbers)}
    if v.delivery is not None:
        body["delivery"] = {"provider": v.delivery.provider, "status": v.delivery.status}
    if v.sms is not None:
        body["sms"] = {"encoding": v.sms.encoding, "parts": v.sms.parts}
    if v.completed_via is not None and v.verified_at is not None:
        body["completed_via"] = v.completed_via
        body["verified_at"] = rfc3339(v.verified_at)
        body["token"] = v.token
    return body


def proof_json(proof: Proof) -> dict[str, Any]:
    """The wire form of what a valid proof token proves (``POST /v1/tokens/verify``)."""
    return {
        "valid": True,
        "phone": proof.phone,
        "channel": proof.channel,
        "verification_id": proof.verification_id,
        "completed_via": proof.completed_via,
        "verified_at": rfc3339(proof.verified_at),
    }
