"""The embedded redis-server of ``make run`` and the tests."""

from __future__ import annotations

from pathlib import Path

import redis

from verify.embedded import EmbeddedRedis


def test_a_persistent_server_keeps_its_data_across_a_restart(tmp_path: Path) -> None:
    server = EmbeddedRedis(tmp_path, persist=True)
    server.start()
    try:
        client = redis.Redis.from_url(server.url, decode_responses=True)
        assert client.config_get("save") == {"save": "60 1"}
        client.set("kept", "yes")
        client.close()
    finally:
        server.stop()  # SIGTERM: redis-server saves before it exits, as save is configured
    again = EmbeddedRedis(tmp_path, port=server.port, persist=True)
    again.start()
    try:
        client = redis.Redis.from_url(again.url, decode_responses=True)
        assert client.get("kept") == "yes"
        client.close()
    finally:
        again.stop()


def test_a_test_server_keeps_nothing(tmp_path: Path) -> None:
    server = EmbeddedRedis(tmp_path)
    server.start()
    try:
        client = redis.Redis.from_url(server.url, decode_responses=True)
        assert client.config_get("save") == {"save": ""}
        client.close()
    finally:
        server.stop()
