"""A base for local gateway emulators: a werkzeug app on 127.0.0.1 in a thread, recording every request.

Each gateway's emulator subclasses :class:`Emulator` and answers in that gateway's exact wire format
(docs/gateways/). Tests steer it with ``mode``:

- ``"ok"``: success;
- ``"error:<name>"``: one of the gateway's documented errors, named by the emulator;
- ``"5xx"``: HTTP 500 (or 503) with an HTML body;
- ``"timeout"``: answer only after ``slow_seconds`` (longer than the client's read timeout);
- ``"malformed"``: HTTP 200 with a body that is not the gateway's format.

Besides ``mode``, :meth:`Emulator.hold` keeps chosen requests waiting, unanswered, until the test releases them: a
gateway that hangs while the test does something to the client that sent the request (:class:`Hold`).
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from werkzeug.serving import BaseWSGIServer, make_server
from werkzeug.wrappers import Request, Response


@dataclass
class Seen:
    """One request the emulator received."""

    method: str
    path: str
    query: dict[str, str]
    form: dict[str, str]
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        """The body parsed as JSON."""
        return json.loads(self.body)


@dataclass(frozen=True)
class Held:
    """A request :class:`Hold` caught: what it was, who sent it (``peer``: the client's address and port, which name
    its connection), and when it arrived (``time.monotonic()``)."""

    seen: Seen
    peer: tuple[str, int]
    at: float


class Hold:
    """The next ``count`` requests that ``matches`` accepts wait, unanswered, until :meth:`release` (or ``limit``
    seconds); each is then answered HTTP 502 without :meth:`Emulator.answer`: the gateway failed it and sent
    nothing (a subclass that counts what it accepted in :meth:`Emulator.answer` does not count it). Later requests,
    and those ``matches`` refuses, are answered as usual."""

    def __init__(self, matches: Callable[[Seen], bool], count: int, limit: float) -> None:
        self.matches = matches
        self.left = count
        self.limit = limit
        self.caught: list[Held] = []
        self.arrived = threading.Event()  # set when the first request is caught
        self.released = threading.Event()
        self._lock = threading.Lock()

    def catch(self, seen: Seen, peer: tuple[str, int]) -> bool:
        """Whether ``seen`` is held (then it is in :attr:`caught`)."""
        with self._lock:
            if self.left <= 0 or not self.matches(seen):
                return False
            self.left -= 1
            self.caught.append(Held(seen, peer, time.monotonic()))
        self.arrived.set()
        return True

    def release(self) -> None:
        """Let every held request go (each gets its 502), now and from now on."""
        self.released.set()


class Emulator:
    """Subclasses implement :meth:`answer`. Start with :meth:`start`, stop with :meth:`stop`."""

    slow_seconds = 1.5

    def __init__(self) -> None:
        self.requests: list[Seen] = []
        self.mode = "ok"
        self.holds: list[Hold] = []
        self._server: BaseWSGIServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        """Base URL, ending in ``/``."""
        assert self._server is not None
        return f"http://127.0.0.1:{self._server.server_port}/"

    def start(self) -> Emulator:
        """Serve on a free loopback port in a daemon thread."""
        self._server = make_server("127.0.0.1", 0, self._wsgi, threaded=True)
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving (held requests are let go)."""
        for hold in self.holds:
            hold.release()
        if self._server is not None and self._thread is not None and self._thread.is_alive():
            self._server.shutdown()
            self._server.server_close()
            self._thread.join()

    @property
    def last(self) -> Seen:
        """The newest request."""
        return self.requests[-1]

    def answer(self, request: Request, seen: Seen) -> Response:
        """The gateway's response to ``request`` in the current ``mode``."""
        raise NotImplementedError

    def hold(self, matches: Callable[[Seen], bool], count: int = 1, limit: float = 30.0) -> Hold:
        """Hold the next ``count`` requests ``matches`` accepts until the returned :class:`Hold` is released (at most
        ``limit`` seconds); then they fail with HTTP 502."""
        hold = Hold(matches, count, limit)
        self.holds.append(hold)
        return hold

    def _wsgi(self, environ: dict[str, Any], start_response: Any) -> Any:
        request = Request(environ)
        body = request.get_data(cache=True)
        seen = Seen(
            request.method,
            request.path,
            dict(request.args.items()),
            dict(request.form.items()) if request.mimetype == "application/x-www-form-urlencoded" else {},
            dict(request.headers.items()),
            body,
        )
        self.requests.append(seen)
        peer = (str(environ.get("REMOTE_ADDR", "")), int(environ.get("REMOTE_PORT") or 0))
        hold = next((hold for hold in list(self.holds) if hold.catch(seen, peer)), None)
        if hold is not None:
            hold.released.wait(hold.limit)
            failed = Response("<html><body>502 Bad Gateway</body></html>", status=502, mimetype="text/html")
            return failed(environ, start_response)
        if self.mode == "timeout":
            time.sleep(self.slow_seconds)
        if self.mode == "5xx":
            response = Response("<html><body>502 Bad Gateway</body></html>", status=502, mimetype="text/html")
        else:
            response = self.answer(request, seen)
        return response(environ, start_response)
