"""The ceiling of bench/load.py: a bare Flask app that makes exactly one Redis round trip per request.

No ``verify`` code. ``POST /ceiling`` parses a small JSON body, runs one pipeline (HSET + PEXPIRE on a
random key) and answers JSON. It shows what Flask, gunicorn's gevent workers and redis-py with hiredis
can serve per request on this machine. bench/load.py serves it with the service's gunicorn argv (and
Redis client options) and divides the service's req/s by it.

    gunicorn 'ceiling:create_app("redis://127.0.0.1:6379/0")'  (with bench/ on PYTHONPATH)
"""

from __future__ import annotations

import secrets

import redis
from flask import Flask, Response, abort, jsonify, request

TTL_MS = 60_000


def create_app(redis_url: str) -> Flask:
    """The ceiling app, with its own Redis client (the options of ``verify.store.Store.from_url``)."""
    app = Flask(__name__)
    client = redis.Redis.from_url(
        redis_url, decode_responses=True, socket_timeout=2, socket_connect_timeout=1, health_check_interval=15
    )
    app.extensions["ceiling"] = client

    @app.get("/healthz")
    def healthz() -> Response:
        return jsonify({"status": "ok"})

    @app.post("/ceiling")
    def ceiling() -> tuple[Response, int]:
        body = request.get_json(silent=True)
        phone = body.get("phone") if isinstance(body, dict) else None
        if not isinstance(phone, str) or not phone:
            abort(400)
        key = f"ceiling:{secrets.token_hex(8)}"
        pipe = client.pipeline(transaction=False)
        pipe.hset(key, mapping={"phone": phone, "status": "pending"})
        pipe.pexpire(key, TTL_MS)
        pipe.execute()
        return jsonify({"id": key, "status": "pending"}), 201

    return app
