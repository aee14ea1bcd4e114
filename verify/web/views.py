"""The JSON views of the service's results: what the API answers and what customer events carry; and JSON itself on
the way in and out (orjson, issue 19: the stdlib's ``json`` took 5-6% of a worker)."""

from __future__ import annotations

import json
from typing import Any

import orjson
from flask import Response
from flask.json.provider import JSONProvider

from verify.clock import rfc3339
from verify.model import Verification
from verify.sms import Payment
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
    if v.payment is not None:
        body["context"] = payment_json(v.payment)
    if v.fallback is not None:
        f = v.fallback
        body["fallback"] = {
            "channels": [{"channel": step.channel, "wait": step.wait} for step in f.steps],
            "attempts": [
                {"channel": a.channel, "provider": a.provider, "status": a.status, "at": rfc3339(a.at)}
                for a in f.attempts
            ],
            "next": {"channel": f.next_channel, "due_at": rfc3339(f.next_at)} if f.next_at is not None else None,
            "stopped": f.stopped,
        }
    return body


def payment_json(payment: Payment) -> dict[str, str]:
    """The wire form of a payment context: what a payment's code approves."""
    return {"amount": payment.amount, "currency": payment.currency, "payee": payment.payee}


def proof_json(proof: Proof) -> dict[str, Any]:
    """The wire form of what a valid proof token proves (``POST /v1/tokens/verify``); a payment's carries its
    ``context``."""
    body: dict[str, Any] = {
        "valid": True,
        "phone": proof.phone,
        "channel": proof.channel,
        "verification_id": proof.verification_id,
        "completed_via": proof.completed_via,
        "verified_at": rfc3339(proof.verified_at),
    }
    if proof.payment is not None:
        body["context"] = payment_json(proof.payment)
    return body


def loads(raw: bytes | str) -> Any:
    """Parse a JSON document with orjson; what orjson refuses and the stdlib accepts (a lone surrogate escape, NaN, a
    byte order mark) is parsed by the stdlib, as before orjson, so that such a body is judged field by field, as it
    always was. ``ValueError`` (``json.JSONDecodeError``) or ``RecursionError`` when neither parses it."""
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError:
        return json.loads(raw)


def dumps(value: Any, *, newline: bool = False) -> bytes:
    """``value`` as compact JSON, UTF-8, keys in their order, with orjson; a string orjson refuses (a lone
    surrogate, which no answer of ours should hold) is escaped by the stdlib, as before orjson."""
    try:
        return orjson.dumps(value, option=orjson.OPT_APPEND_NEWLINE if newline else None)
    except TypeError:
        return (json.dumps(value, separators=(",", ":")) + ("\n" if newline else "")).encode()


class Json(JSONProvider):
    """Flask's JSON (``jsonify``, ``request.get_json``) through :func:`dumps` and :func:`loads`: compact, keys in
    their order, a newline after the document as Flask's own provider writes it."""

    mimetype = "application/json"

    def dumps(self, obj: Any, **kwargs: Any) -> str:
        return dumps(obj).decode()

    def loads(self, s: str | bytes, **kwargs: Any) -> Any:
        return loads(s)

    def response(self, *args: Any, **kwargs: Any) -> Response:
        return Response(dumps(self._prepare_response_obj(args, kwargs), newline=True), mimetype=self.mimetype)
