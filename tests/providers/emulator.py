"""A base for local gateway emulators: a werkzeug app on 127.0.0.1 in a thread, recording every request.

Each gateway's emulator subclasses :class:`Emulator` and answers in that gateway's exact wire format
(docs/gateways/). Tests steer it with ``mode``:

- ``"ok"``: success;
- ``"error:<name>"``: one of the gateway's documented errors, named by the emulator;
- ``"5xx"``: HTTP 500 (or 503) with an HTML body;
- ``"timeout"``: answer only after ``slow_seconds`` (longer than the client's read timeout);
- ``"malformed"``: HTTP 200 with a body that is not the gateway's format.
"""

from __future__ import annotations

import json
import threading
import time
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


class Emulator:
    """Subclasses implement :meth:`answer`. Start with :meth:`start`, stop with :meth:`stop`."""

    slow_seconds = 1.5

    def __init__(self) -> None:
        self.requests: list[Seen] = []
        self.mode = "ok"
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
        """Stop serving."""
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
        if self.mode == "timeout":
            time.sleep(self.slow_seconds)
        if self.mode == "5xx":
            response = Response("<html><body>502 Bad Gateway</body></html>", status=502, mimetype="text/html")
        else:
            response = self.answer(request, seen)
        return response(environ, start_response)
