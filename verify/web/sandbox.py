"""Developer endpoints of sandbox mode (``VERIFY_SANDBOX=1``): read sent codes, play a call or a reply.

Registered only in sandbox mode; otherwise these paths are 404 like any unknown path.
"""

from __future__ import annotations

from typing import Any

from flask import Blueprint, Response, jsonify, request

from verify import phone
from verify.errors import InvalidRequest, NotFound
from verify.providers.base import CallReceived, SmsReceived
from verify.web.context import json_body, now, phone_field, service, settings, string_field, tenancy
from verify.web.views import to_json

bp = Blueprint("sandbox", __name__, url_prefix="/sandbox")


@bp.get("/messages")
def messages() -> Response:
    """Messages the sandbox gateway "sent" to ``?phone=``, newest first, each with its channel (``sms``, ``voice``:
    the text a call would speak), its verification's id and whether it is ``current``: whether it carries the code
    of its verification's newest message, the one that works (a resend replaces the code, so the older ones are
    superseded; a fallback step sends the same code again, so the one before stays current)."""
    raw = request.args.get("phone")
    if not raw:
        raise InvalidRequest("phone", "phone is required, e.g. ?phone=%2B79991234567")
    e164 = phone.normalize(raw, settings().default_country)
    return jsonify({"messages": _marked(service().outbox(e164))})


def _marked(outbox: list[dict[str, str]]) -> list[dict[str, Any]]:
    """The outbox (newest first) as the page shows it. A message kept before the copies named their verification
    has none: it is current if it is the newest such one."""
    newest: dict[str | None, str] = {}  # each verification's newest code
    marked: list[dict[str, Any]] = []
    for m in outbox:
        verification_id = m.get("id")
        shown: dict[str, Any] = {k: m[k] for k in ("to", "text", "code", "sent_at")}
        shown["channel"] = m.get("channel", "sms")
        if verification_id is not None:
            shown["verification_id"] = verification_id
        shown["current"] = newest.setdefault(verification_id, m["code"]) == m["code"]
        marked.append(shown)
    return marked


@bp.post("/calls")
def calls() -> Response:
    """Act as the person calling the number of their pending ``call`` verification: approves it."""
    e164 = phone_field(json_body(), country_field=None)
    approved = tenancy().handle(CallReceived(e164, now()))
    if approved is None:
        raise NotFound("this phone has no pending call verification")
    return jsonify(to_json(approved))


@bp.post("/replies")
def replies() -> Response:
    """Act as an inbound SMS from ``phone``: approves its pending sms verification if ``text`` has the code."""
    body = json_body()
    e164 = phone_field(body, country_field=None)
    text = string_field(body, "text", required=True)
    assert text is not None  # noqa: S101 - required
    approved = tenancy().handle(SmsReceived(e164, text, now()))
    return jsonify({"approved": approved is not None, "verification": to_json(approved) if approved else None})


@bp.get("/captcha/<challenge_id>")
def captcha_answer(challenge_id: str) -> Response:
    """The answer of a builtin captcha, so end-to-end tests and demos can pass it (sandbox mode only)."""
    answers = (svc.captcha.sandbox_answer(challenge_id) for svc in tenancy().services.values() if svc.captcha)
    answer = next((found for found in answers if found is not None), None)  # each tenant keeps its own challenges
    if answer is None:
        raise NotFound("no such captcha, or it expired or was used")
    return jsonify({"answer": answer})
