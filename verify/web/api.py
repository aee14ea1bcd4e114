"""HTTP API: blueprint ``/v1`` (authenticated) and the public health and spec endpoints.

Parses and validates input (``verify/web/context.py``), calls the service, answers with its JSON views
(``verify/web/views.py``). No Redis and no providers here.
"""

from __future__ import annotations

import hashlib
import json
from importlib import resources
from typing import Any

from flask import Blueprint, Response, g, jsonify, request
from werkzeug.wrappers import Response as BaseResponse

from verify._version import version
from verify.config import CODE_CHANNELS, REDIS_MIN_REPLICAS
from verify.errors import Forbidden, InvalidRequest, Unauthorized
from verify.model import API_CALLER, Caller, Step
from verify.service import CHANNELS, Source
from verify.sms import APP_HASH_RE, LOCALE_RE, webotp_host
from verify.web.client_ip import client_ip
from verify.web.context import (
    bearer,
    captcha_field,
    json_body,
    payment_field,
    phone_field,
    service,
    settings,
    string_field,
    tenancy,
)
from verify.web.problems import problem
from verify.web.views import proof_json, to_json

v1 = Blueprint("v1", __name__, url_prefix="/v1")
public = Blueprint("public", __name__)

MAX_IDEMPOTENCY_KEY_LENGTH = 255
SITE_KEY_HEADER = "X-Verify-Site-Key"
CLIENT_SECRET_HEADER = "X-Verify-Client-Secret"  # noqa: S105 - a header name
# What a site key may do: start, read, check and resend the verifications it started.
SITE_KEY_ENDPOINTS = frozenset({"v1.start", "v1.get", "v1.check", "v1.resend"})


# /v1


@v1.before_request
def authenticate() -> BaseResponse | None:
    """Require ``Authorization: Bearer <key>`` with an API key (VERIFY_API_KEYS, or a tenant's in the tenants file),
    or a site key from one of its origins. The key names the tenant whose service serves the request
    (``verify/tenancy.py``): another tenant's verifications are not found by it.

    A site key (``X-Verify-Site-Key``, publishable: it is in every visitor's browser) may start verifications,
    and read, check and resend the ones it started with the client secret each start's answer gave
    (``X-Verify-Client-Secret``), from the origins VERIFY_SITE_KEYS lists for it, and nothing else; its requests
    get CORS headers for that origin. A request with both headers is an API key's: the key decides.
    """
    tenants = tenancy()
    if request.method == "OPTIONS":
        return _preflight(tenants.site_origins())
    key = request.headers.get(SITE_KEY_HEADER)
    if key is None or "Authorization" in request.headers:
        # The key names its tenant (a tenants file, verify/tenancy.py): what it reaches is that tenant's alone.
        g.service = tenants.by_api_key(bearer("API key"))
        if g.service is None:
            raise Unauthorized("send Authorization: Bearer <API key>")
        return None
    g.service = tenants.by_site_key(key)
    origins = g.service.settings.site_key_origins(key) if g.service else None
    if origins is None:
        raise Unauthorized(f"{SITE_KEY_HEADER} names no configured site key")
    origin = request.headers.get("Origin") or _same_origin()
    if origin.lower() not in origins:
        raise Forbidden("this site key may not be used from this origin (or without an Origin)")
    g.cors_origin = origin
    if request.endpoint not in SITE_KEY_ENDPOINTS:
        raise Forbidden("a site key may only start, read, check and resend the verifications it started")
    g.site_key = key
    return None


def _same_origin() -> str:
    """This server's own origin for a request the browser marks as coming from a page of it: browsers send no
    ``Origin`` on a same-origin GET (the demo page polling its verification), but always ``Sec-Fetch-Site``, which
    a page's script cannot set. "" for anything else."""
    return request.host_url.rstrip("/") if request.headers.get("Sec-Fetch-Site") == "same-origin" else ""


def _preflight(origins: frozenset[str]) -> BaseResponse:
    """A CORS preflight: allowed for an origin that some site key lists (which key comes only with the request
    itself, which is refused if its key does not list the origin)."""
    origin = request.headers.get("Origin", "")
    if origin.lower() not in origins:
        raise Forbidden("no site key may be used from this origin")
    response = Response(status=204)
    response.headers.update(
        {
            "Access-Control-Allow-Origin": origin,
            "Access-Control-Allow-Methods": "GET, POST",
            "Access-Control-Allow-Headers": f"Content-Type, Idempotency-Key, {SITE_KEY_HEADER}, {CLIENT_SECRET_HEADER}",
            "Access-Control-Max-Age": "600",
            "Vary": "Origin",
        }
    )
    return response


@v1.after_request
def cors(response: BaseResponse) -> BaseResponse:
    """Let the site key's page read the answer (errors included): only for the origin that key allows."""
    origin = g.get("cors_origin")
    if origin:
        response.headers["Access-Control-Allow-Origin"] = origin
        response.headers["Access-Control-Expose-Headers"] = "Retry-After, X-Request-Id"
        response.headers.add("Vary", "Origin")
    return response


def site_key() -> str:
    """The site key of this request ("" for an API key, which reaches every verification)."""
    key: str = g.get("site_key", "")
    return key


def caller() -> Caller:
    """Who asks for an existing verification: an API key, or a site key with the client secret it was given."""
    return Caller(site_key(), request.headers.get(CLIENT_SECRET_HEADER, "")) if site_key() else API_CALLER


@v1.post("/verifications")
def start() -> Response:
    """Start a verification, or return the phone's pending one; honours Idempotency-Key."""
    body = json_body()
    key = request.headers.get("Idempotency-Key")
    if key is not None and not 0 < len(key) <= MAX_IDEMPOTENCY_KEY_LENGTH:
        raise InvalidRequest("Idempotency-Key", f"Idempotency-Key must be 1 to {MAX_IDEMPOTENCY_KEY_LENGTH} characters")
    if key is None:
        status, payload, _ = _start(body)
        return _started(status, payload)
    fingerprint = hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()
    if site_key():  # a site key's keys are its own and its client's address's: no replay of another's
        key = f"{site_key()}\n{client_ip()}\n{key}"
    replay = service().claim_idempotency(key, fingerprint)
    if replay is not None:
        response = _started(replay.status, replay.body)
        response.headers["Idempotent-Replayed"] = "true"
        return response
    try:
        status, payload, sent = _start(body)
    except BaseException:
        service().release_idempotency(key)
        raise
    if sent:
        service().finish_idempotency(key, fingerprint, status, payload)
    else:  # nothing sent, nothing to repeat: its replay is the same start again, and it keeps no record
        service().release_idempotency(key)
    return _started(status, payload)


def _start(body: dict[str, Any]) -> tuple[int, dict[str, Any], bool]:
    """The start's status and body, and whether it sent anything."""
    e164 = phone_field(body)
    channel = string_field(body, "channel", choices=CHANNELS)
    chain = _chain(body)
    if chain and channel:
        raise InvalidRequest("channels", "give channel or channels, not both")
    if not chain and not channel:  # VERIFY_DEFAULT_CHANNELS: one channel, or a chain
        defaults = settings().default_channels
        chain = tuple(Step(name, settings().fallback_wait) for name in defaults) if len(defaults) > 1 else ()
        channel = defaults[0] if len(defaults) == 1 else None
    locale = string_field(body, "locale")
    if locale is not None and not LOCALE_RE.fullmatch(locale):
        raise InvalidRequest("locale", "locale must be a BCP 47 language tag such as en, pt-BR or zh-Hant")
    app_hash = string_field(body, "app_hash") or ""
    if app_hash and not APP_HASH_RE.fullmatch(app_hash):
        raise InvalidRequest("app_hash", "app_hash must be the app's 11-character SMS Retriever hash")
    otp_host = _webotp_host(g.cors_origin) if site_key() else ""
    started = service().start(
        e164,
        chain[0].channel if chain else channel or "sms",
        locale,
        client_ip=client_ip(),
        captcha=captcha_field(body),
        source=Source(site_key(), app_hash, otp_host),
        chain=chain,
        payment=payment_field(body),
    )
    payload = to_json(started.verification)
    if started.client_secret:
        payload["client_secret"] = started.client_secret
    return (201 if started.created else 200), payload, started.sent


def _chain(body: dict[str, Any]) -> tuple[Step, ...]:
    """The body's ``channels``: a fallback chain of distinct channels that carry a code, each a name or
    ``{"channel": name, "wait": seconds}`` (the wait before the next step; ``VERIFY_FALLBACK_AFTER`` when not
    given). ``()`` when absent."""
    value = body.get("channels")
    if value is None:
        return ()
    if not isinstance(value, list) or not 0 < len(value) <= len(CODE_CHANNELS):
        raise InvalidRequest("channels", f"channels must be a list of 1 to {len(CODE_CHANNELS)} channels")
    steps = []
    for index, item in enumerate(value):
        field = f"channels[{index}]"
        entry = item if isinstance(item, dict) else {"channel": item}
        unknown = sorted(set(entry) - {"channel", "wait"})
        if unknown:
            raise InvalidRequest(f"{field}.{unknown[0]}", f"a step has only channel and wait, not {unknown[0]}")
        name = entry.get("channel")
        if name == "call":
            raise InvalidRequest(field, "call cannot be a fallback step: the person calls us, and no code is sent")
        if name not in CODE_CHANNELS:
            raise InvalidRequest(field, f"{field} must be one of: {', '.join(CODE_CHANNELS)}")
        wait = entry.get("wait", settings().fallback_wait)
        limit = settings().challenge_ttl
        if isinstance(wait, bool) or not isinstance(wait, int) or not 1 <= wait <= limit:
            raise InvalidRequest(f"{field}.wait", f"wait must be a whole number of seconds from 1 to {limit}")
        steps.append(Step(name, wait))
    if len({step.channel for step in steps}) != len(steps):
        raise InvalidRequest("channels", "each channel may appear once in channels")
    return tuple(steps)


def _webotp_host(origin: str) -> str:
    """The host a site key's texts name in their last line, ``@<host> #<code>``: the page's own, so the browser
    offers the code to that page only. "" for an origin a WebOTP line cannot name (http, another port): its
    texts are the template alone."""
    try:
        return webotp_host(origin)
    except ValueError:
        return ""


def _started(status: int, payload: dict[str, Any]) -> Response:
    """A start's answer. A site key's carries the client secret, the proof that later requests for this
    verification come from the client that started it (an idempotent replay carries it too)."""
    response = jsonify(payload)
    response.status_code = status
    if status == 201:
        response.headers["Location"] = f"/v1/verifications/{payload['id']}"
    g.verification_id = payload["id"]  # for the request's log line (verify/web/observe.py)
    return response


@v1.get("/verifications/<verification_id>")
def get(verification_id: str) -> Response:
    """A verification; approved ones carry ``completed_via`` and the proof ``token``."""
    return jsonify(to_json(service().get(verification_id, caller())))


@v1.post("/verifications/<verification_id>/check")
def check(verification_id: str) -> Response:
    """Check a code."""
    body = json_body()
    code = string_field(body, "code", required=True)
    assert code is not None  # noqa: S101 - required
    code = code.strip()
    if not code.isascii() or not code.isdigit():
        raise InvalidRequest("code", "code must be a string of digits")
    payment = payment_field(body)  # a payment's code is right only with the context its start named
    checked = service().check(verification_id, code, client_ip=client_ip(), caller=caller(), payment=payment)
    return jsonify(to_json(checked))


@v1.post("/verifications/<verification_id>/resend")
def resend(verification_id: str) -> Response:
    """Send a new code, optionally switching channel."""
    channel = string_field(json_body(optional=True), "channel", choices=CHANNELS)
    return jsonify(to_json(service().resend(verification_id, channel, client_ip=client_ip(), caller=caller())))


@v1.delete("/verifications/<verification_id>")
def cancel(verification_id: str) -> Response:
    """Cancel a verification."""
    return jsonify(to_json(service().cancel(verification_id)))


@v1.post("/tokens/verify")
def verify_token() -> Response:
    """Check a proof token and return what it proves."""
    token = string_field(json_body(), "token", required=True)
    assert token is not None  # noqa: S101 - required
    return jsonify(proof_json(service().verify_token(token)))


# public


@public.get("/healthz")
def healthz() -> Response:
    """The process is up, and which release it runs (to tell, during a rolling deploy, which instance is which)."""
    return jsonify({"status": "ok", "version": version()})


@public.get("/readyz")
def readyz() -> BaseResponse:
    """Redis answers: 200, else 503 ``/store-unavailable``.

    Behind Sentinel, a master without a replica online still serves (writes go on unconfirmed): 200, so that load
    balancers keep routing, with a body that says so. With ``VERIFY_REDIS_MIN_REPLICAS`` set, writes are refused then,
    and so is readiness (503), as while the sentinels do not confirm that no replica could take over (a failover).
    """
    health = service().ready()
    if health == "confirmed":
        return jsonify({"status": "ok"})
    if health == "degraded":
        return jsonify({"status": "degraded", "redis": "no replica confirms writes"})
    detail = (
        "Redis does not answer"
        if health == "down"
        else "the Redis master has fewer replicas online than a write needs: writes are refused (see "
        f"{REDIS_MIN_REPLICAS})"
    )
    return problem(503, "store-unavailable", "Storage is unavailable", detail, headers={"Retry-After": "1"})


@public.get("/openapi.yaml")
def openapi() -> Response:
    """The OpenAPI description of this service."""
    spec = resources.files("verify").joinpath("openapi.yaml").read_text(encoding="utf-8")
    return Response(spec, mimetype="application/yaml")
