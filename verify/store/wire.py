"""The lean road to one Redis server: a batch's commands packed by hiredis, written in one ``send`` on one of the
client pool's connections, and their replies read back in order, without redis-py's pipeline around them.

Profiled under load (issue 19, docs/performance.md), redis-py's pipeline machinery took about a third of a worker:
per command the generic encoder and per-argument checks; per batch the pipeline object, its retry wrapper and
observability hooks, and the pool's checkout, which polls the socket (``can_read``: a ``poll`` system call) to
make sure the connection holds no stale reply. Here a batch is packed with one ``hiredis.pack_command`` per command,
taken from the pool's queue and handed back to it, and its replies read with the connection's own
``read_response`` and the client's reply callbacks, so every reply is what ``redis.Redis`` would have returned.

What the checkout's poll guarded against cannot happen on this road: a connection goes back to the queue only
after every reply of its batch was read; any failure in between (a timeout, an error, a greenlet killed) drops
its socket first (redis-py's ``send_packed_command`` and ``read_response`` do so themselves, and :meth:`Wire.send`
for the rest). A socket that the server closed while the connection sat idle fails the send or the first read with
a ``ConnectionError``: the batch is sent again, once, on a fresh socket, as redis-py's ``Retry`` of the client does
(``Connection.from_url``). A timeout is not retried. The pool's health check (a ``PING`` after 15 s idle) still
runs, in ``send_packed_command``.

Used for the one-server form of ``VERIFY_REDIS_URL`` (``redis://``, ``rediss://``, ``unix://``), whose pool the
store makes itself (:class:`redis.BlockingConnectionPool`). Behind Sentinel (whose pool follows the master) and on
a cluster (whose pipeline follows the slots) a batch goes through redis-py's pipeline.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from queue import Empty
from typing import Any

import hiredis
import redis
from redis.connection import AbstractConnection

Command = tuple[Any, ...]


class Wire:
    """Sends a batch of commands to one Redis server over ``client``'s pooled connections."""

    def __init__(self, client: redis.Redis) -> None:
        pool = client.connection_pool
        if not isinstance(pool, redis.BlockingConnectionPool):
            raise TypeError("the lean road needs the store's own BlockingConnectionPool")
        self._pool = pool
        self._timeout = pool.timeout
        self._pid = os.getpid()
        # The client's reply callbacks (HGETALL's list to dict, SET's OK to True, ...), by command name.
        self._callbacks: dict[str, Callable[..., Any]] = {
            name.upper(): callback for name, callback in client.response_callbacks.items()
        }

    def send(self, commands: Sequence[Command]) -> list[Any]:
        """Every command's reply, in order: a Redis error (``NoScriptError``, ``ResponseError``) as its reply, not
        raised. A connection or timeout error is raised (``redis.ConnectionError``, ``redis.TimeoutError``), after
        one new try on a fresh socket for a ``ConnectionError``."""
        try:
            packed = [b"".join([hiredis.pack_command(command) for command in commands])]
        except TypeError as err:  # what redis-py raises for an argument it cannot send
            raise redis.DataError(str(err)) from err
        connection = self._take()
        try:
            try:
                return self._exchange(connection, packed, commands)
            except redis.ConnectionError:
                connection.disconnect()  # type: ignore[no-untyped-call]
                return self._exchange(connection, packed, commands)  # it connects again to send
        except BaseException:
            connection.disconnect()  # type: ignore[no-untyped-call]  # replies may be left on the socket: no other batch may read them
            raise
        finally:
            self._pool.pool.put_nowait(connection)

    def _exchange(self, connection: AbstractConnection, packed: list[bytes], commands: Sequence[Command]) -> list[Any]:
        connection.send_packed_command(packed)  # type: ignore[no-untyped-call]
        callbacks = self._callbacks
        replies: list[Any] = []
        for command in commands:
            try:
                reply = connection.read_response()
            except redis.ResponseError as err:
                replies.append(err)
                continue
            callback = callbacks.get(command[0])
            replies.append(reply if callback is None else callback(reply))
        return replies

    def _take(self) -> AbstractConnection:
        """A connection from the pool's queue (a slot without one makes one), waiting up to the pool's timeout when
        all are in use; in a process forked since, the pool starts afresh first (redis-py's ``_checkpid``)."""
        pool = self._pool
        if os.getpid() != self._pid:
            pool._checkpid()
            self._pid = os.getpid()
        try:
            connection: AbstractConnection | None = pool.pool.get(block=True, timeout=self._timeout)
        except Empty:
            raise redis.ConnectionError("No connection available.") from None
        if connection is None:
            try:
                connection = pool.make_connection()  # type: ignore[no-untyped-call]
            except BaseException:
                pool.pool.put_nowait(None)
                raise
        return connection
