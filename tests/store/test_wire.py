"""The lean road to one server (verify/store/wire.py): the same replies as redis-py's, one write per batch, no poll
at checkout, and never a connection handed on with replies left on it."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator
from typing import Any

import pytest
import redis
from redis.connection import AbstractConnection

from verify.embedded import EmbeddedRedis
from verify.store import Store
from verify.store.wire import Wire

KEY = "wire:{test}:h"


@pytest.fixture
def store(redis_server: EmbeddedRedis) -> Iterator[Store]:
    made = Store.from_url(redis_server.url, "wire:")
    made.client.delete(KEY, "wire:{test}:s")
    yield made
    made.close()


def wire(store: Store) -> Wire:
    assert store.wire is not None, "one server: the store takes the lean road"
    return store.wire


def connections(store: Store) -> list[AbstractConnection]:
    """Every connection the store's pool has made."""
    assert isinstance(store.client, redis.Redis)
    made: list[AbstractConnection] = store.client.connection_pool._connections  # type: ignore[attr-defined]
    return made


def test_replies_are_redis_py_s_own(store: Store) -> None:
    commands: list[tuple[Any, ...]] = [
        ("HSET", KEY, "a", "1", "b", "é"),
        ("HGETALL", KEY),
        ("SET", "wire:{test}:s", 7, "PX", 60_000),
        ("GET", "wire:{test}:s"),
        ("PEXPIRE", KEY, 60_000),
        ("GET", "wire:{test}:none"),
        ("HGET", KEY),  # wrong number of arguments: an error, as a reply
        ("EVALSHA", "0" * 40, 0),  # an unknown script: NoScriptError, as a reply
    ]
    replies = wire(store).send(commands)
    pipe = store.client.pipeline(transaction=False)
    for command in commands:
        pipe.execute_command(*command)
    expected = pipe.execute(raise_on_error=False)
    assert replies[0] == 2 and expected[0] == 0  # the fields were new, then already there
    assert replies[1:6] == expected[1:6] == [{"a": "1", "b": "é"}, True, "7", True, None]
    assert type(replies[6]) is type(expected[6]) is redis.ResponseError
    assert type(replies[7]) is type(expected[7]) is redis.exceptions.NoScriptError


def test_a_batch_is_one_write_and_its_checkout_polls_nothing(store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    wire(store).send([("GET", KEY)])  # a connection made
    writes: list[int] = []
    real = AbstractConnection.send_packed_command

    def counting(self: AbstractConnection, command: Any, check_health: bool = True) -> None:
        writes.append(len(command))
        real(self, command, check_health)  # type: ignore[no-untyped-call]

    def polled(self: AbstractConnection) -> bool:
        raise AssertionError("the checkout polled the socket")

    monkeypatch.setattr(AbstractConnection, "send_packed_command", counting)
    monkeypatch.setattr(AbstractConnection, "can_read", polled)
    wire(store).send([("HSET", KEY, "a", "1"), ("HGETALL", KEY), ("PEXPIRE", KEY, 1000)])
    assert writes == [1], "one packed buffer, one send"


def test_a_socket_the_server_closed_is_replaced_once(store: Store, redis_server: EmbeddedRedis) -> None:
    assert wire(store).send([("SET", "wire:{test}:s", "1")]) == [True]
    with redis.Redis.from_url(redis_server.url) as other:
        assert other.execute_command("CLIENT", "KILL", "TYPE", "normal", "SKIPME", "yes") >= 1
    assert wire(store).send([("INCR", "wire:{test}:s")]) == [2], "sent again, once, on a fresh socket"


def test_a_timed_out_batch_leaves_no_reply_for_the_next(
    store: Store, redis_server: EmbeddedRedis, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A timeout mid-batch is not retried, and its late replies never reach the next batch on the same connection.
    store.client.set("wire:{test}:s", "before")
    for connection in connections(store):
        connection.socket_timeout = 0.3
    assert redis_server.process is not None
    os.kill(redis_server.process.pid, signal.SIGSTOP)
    try:
        with pytest.raises(redis.TimeoutError):
            wire(store).send([("SET", "wire:{test}:s", "during"), ("GET", KEY)])
    finally:
        os.kill(redis_server.process.pid, signal.SIGCONT)
    time.sleep(0.1)  # the frozen batch's replies arrive now, to a socket already closed
    assert wire(store).send([("HSET", KEY, "x", "1"), ("GET", "wire:{test}:s")]) == [1, "during"]


def test_an_interrupted_read_drops_the_connection(store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    reads = 0
    real = AbstractConnection.read_response

    def interrupted(self: AbstractConnection, *args: Any, **kwargs: Any) -> Any:
        nonlocal reads
        reads += 1
        if reads == 1:
            raise KeyboardInterrupt  # as a greenlet killed between two replies
        return real(self, *args, **kwargs)

    monkeypatch.setattr(AbstractConnection, "read_response", interrupted)
    with pytest.raises(KeyboardInterrupt):
        wire(store).send([("SET", "wire:{test}:s", "a"), ("SET", "wire:{test}:s", "b")])
    assert wire(store).send([("GET", "wire:{test}:s")]) == ["b"], "not the first batch's second reply"


def test_connections_go_back_to_the_pool(store: Store) -> None:
    for _ in range(20):
        wire(store).send([("PING",)])
    assert len(connections(store)) == 1


def test_sentinel_and_cluster_stores_keep_redis_py_s_pipeline(redis_cluster: Any) -> None:
    cluster = Store.from_url(redis_cluster.url, "wire:")
    try:
        assert cluster.wire is None
    finally:
        cluster.close()
