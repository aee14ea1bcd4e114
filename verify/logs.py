"""Log lines without secrets, one JSON object each: :func:`redact` for any text, :class:`RedactingLogger` for gunicorn.

No log line may hold a key, a token, a secret, a password or a code, and a webhook is logged by its route template,
never by its raw path or query string. Gateways put secrets in their callback URLs (the secret that signs SMSC's
callbacks, D7's path token) and clients may put keys in a query string, so every line that can hold a URL, a header
or a payload goes through :func:`redact`, gunicorn's access and error logs included: it removes secrets by their
shape and masks phone numbers. :class:`JsonFormatter` writes each line as one JSON object;
``VERIFY_LOG_FORMAT=text`` keeps gunicorn's readable lines.

gunicorn's master imports this module before gevent patches the workers, so it imports only the standard library
and gunicorn. What is redacted and why, the JSON fields, and how the format is chosen: docs/logs.md.
"""

from __future__ import annotations

import functools
import json
import logging
import logging.handlers
import math
import os
import re
import threading
import time
from collections.abc import Callable, Mapping
from contextvars import ContextVar
from datetime import timedelta
from json.encoder import encode_basestring_ascii as _escape
from typing import Any
from urllib.parse import quote, unquote, unquote_plus

from gunicorn.glogging import Logger  # type: ignore[import-untyped]  # gunicorn ships no types

REDACTED = "[redacted]"
APP_LOGGER = "verify"

# The id of the request being served (verify/web/observe.py sets it for the request's duration): every line logged
# meanwhile carries it. A context variable, so each gevent greenlet (each request) sees its own.
REQUEST_ID: ContextVar[str] = ContextVar("verify_request_id", default="")

# VERIFY_LOG_FORMAT: read by Settings (the app) and by gunicorn.conf.py (gunicorn), both through these.
LOG_FORMAT = "VERIFY_LOG_FORMAT"
LOG_FORMATS = ("json", "text")
DEFAULT_LOG_FORMAT = "json"
LOGGER_CLASSES = {"json": "verify.logs.RedactingLogger", "text": "verify.logs.TextLogger"}

# A name is secret when, normalized, it is one of these (hash options, short password names, message texts) ...
SECRET_NAMES = frozenset(
    {
        "md5",
        "sha1",
        "sha224",
        "sha256",
        "sha384",
        "sha512",
        "crc",
        "crc32",
        "crc32b",
        "hash",
        "mac",
        "sig",
        "psw",
        "pwd",
        "pass",
        "pin",
        "otp",
        "mes",
        "message",
        "text",
        "content",
        "body",
    }
)
# ... or contains one of these.
SECRET_PARTS = (
    "token",
    "secret",
    "passw",
    "key",
    "code",
    "signature",
    "checksum",
    "hmac",
    "auth",
    "credential",
    "session",
    "cookie",
)

# A parameter whose value is a phone number: masked, not redacted, as the app's own lines do (+7999***4567).
PHONE_NAMES = frozenset({"phone", "phones", "from", "to", "recipient", "msisdn"})

_NORMALIZE = re.compile(r"[-_.\[\]\s]")
_PHONE = re.compile(r"(?P<plus>%2B|\+)?(?P<digits>\d{9,15})", re.IGNORECASE)
_LAST_NAME = re.compile(r"[\w.\-\[\]]*$")
# A character of a value: anything but a separator, a blank, a quote or a backslash, except in the escapes a
# Python repr writes for what is not printable (gunicorn quotes an unparseable request line with repr()).
_CHAR = r"(?:\\x[0-9a-fA-F]{2}|\\u[0-9a-fA-F]{4}|\\U[0-9a-fA-F]{8}|[^&\s\"'\\])"
# name=value, the name possibly percent-encoded; the value runs to the next &, blank, quote or other backslash.
_PARAM = re.compile(rf"(?P<name>[\w.\-%\[\]]+)=(?P<value>{_CHAR}+)")
# The same inside a percent-encoded URL (a URL passed as a parameter): name%3Dvalue, up to %26.
_ENCODED_PARAM = re.compile(
    rf"(?P<lead>^|%3F|%26|[?&=\s\"'\\/])(?P<name>[\w.\-]+)%3D(?P<value>(?:(?!%26){_CHAR})+)", re.IGNORECASE
)
# D7's route, its slashes possibly doubled, percent-encoded or JSON-escaped; the token runs to the next separator.
_SLASH = r"(?:\\?/|%2F)"
_SEGMENT_CHAR = r"(?:\\x[0-9a-fA-F]{2}|\\u[0-9a-fA-F]{4}|(?!%2F)[^/?#\s\"'\\])"
_D7_ROUTE = re.compile(rf"(?P<route>{_SLASH}+webhooks{_SLASH}+d7{_SLASH}+)(?P<value>{_SEGMENT_CHAR}+)", re.IGNORECASE)
# The atoms an access log format names: %(r)s, %({x-forwarded-for}i)s.
_FORMAT_KEY = re.compile(r"%\(([^)]*)\)")
# Authorization header values.
_CREDENTIALS = re.compile(r"\b(?P<scheme>Bearer|Basic)\s+(?P<value>[\w\-.~+/]{8,}=*)", re.IGNORECASE)
# "name": "value", 'name': 'value' and "name": 123 in JSON or a Python repr.
_PAIR = re.compile(
    r"""(?P<q>["'])(?P<name>[\w.\-]+)(?P=q)\s*:\s*"""
    r"""(?:(?P<vq>["'])(?P<value>(?:\\.|(?!(?P=vq))[^\\])+)(?P=vq)|(?P<number>-?\d[\d.]*))"""
)


@functools.lru_cache(maxsize=1024)
def secret_name(name: str) -> bool:
    """Whether a parameter, header or field called ``name`` holds a secret (docs/logs.md §2)."""
    normalized = _NORMALIZE.sub("", name.lower())
    return normalized in SECRET_NAMES or any(part in normalized for part in SECRET_PARTS)


def _param_name(raw: str) -> str:
    """The parameter name in ``raw``: percent-decoded, and only what follows any decoded separator."""
    found = _LAST_NAME.search(unquote_plus(raw))
    return found.group() if found else ""


def _replace(match: re.Match[str], group: str) -> str:
    whole, start, end = match.group(), match.start(group) - match.start(), match.end(group) - match.start()
    return whole[:start] + REDACTED + whole[end:]


def _param(match: re.Match[str]) -> str:
    name = _param_name(match["name"])
    if secret_name(name):
        return _replace(match, "value")
    if _NORMALIZE.sub("", name.lower()) in PHONE_NAMES:
        phone = _PHONE.fullmatch(match["value"])
        if phone:  # masked as the app masks numbers: +7999***4567
            whole, start = match.group(), match.start("value") - match.start()
            return whole[:start] + (phone["plus"] or "") + phone["digits"][:4] + "***" + phone["digits"][-4:]
    return match.group()


def _pair(match: re.Match[str]) -> str:
    if not secret_name(match["name"]):
        return match.group()
    return _replace(match, "value" if match["value"] is not None else "number")


def _d7_token(match: re.Match[str]) -> str:
    # The route template (the request line's route, Flask's rule) names the token; it holds none.
    return match.group() if match["value"] == "<token>" else _replace(match, "value")


def redact(text: str) -> str:
    """``text`` with every secret it visibly holds replaced by ``[redacted]``, and the phone numbers of its
    parameters masked; redacting twice changes nothing.

    For URLs, request lines, log messages and tracebacks alike: see the module's policy for what is secret.
    """
    # Each pattern runs only on text that has what it needs to match: most atoms and lines have none of it.
    lowered = text.lower()
    if "d7" in lowered:
        text = _D7_ROUTE.sub(_d7_token, text)
    if "=" in text:
        text = _PARAM.sub(_param, text)
    if "%3d" in lowered:
        text = _ENCODED_PARAM.sub(_param, text)
    if ":" in text and ('"' in text or "'" in text):
        text = _PAIR.sub(_pair, text)
    if "bearer" in lowered or "basic" in lowered:
        text = _CREDENTIALS.sub(lambda m: _replace(m, "value"), text)
    return text


def redact_target(target: str) -> str:
    """A request target (``RAW_URI``) redacted; a path that hides D7's route behind percent-encoding
    (``/webhooks/%64%37/<token>``, which the app routes like the plain one) is shown decoded, then redacted."""
    path, mark, query = target.partition("?")
    if "%" in path and not _D7_ROUTE.search(path):
        decoded = unquote(path)
        if _D7_ROUTE.search(decoded):
            path = quote(decoded, safe="/:@!$&'()*+,;=~")
    return redact(path + mark + query)


@functools.lru_cache(maxsize=16)
def _format_keys(access_log_format: str) -> frozenset[str]:
    """The atoms an access log format names, as gunicorn looks them up (``{header}i`` and the like in lower case)."""
    return frozenset(key.lower() if key.startswith("{") else key for key in _FORMAT_KEY.findall(access_log_format))


def _atom(key: str, value: str) -> str:
    if key[:1] == "{" and secret_name(key[1:-2]):  # {authorization}i, {http_cookie}e
        return REDACTED if value else value
    return redact(value)


# The attributes every LogRecord has; any other one came as an extra field (``log.info(..., extra={...})``).
_RECORD_ATTRIBUTES = frozenset(logging.makeLogRecord({}).__dict__) | {"message", "asctime", "taskName"}


def _extras(record: logging.LogRecord) -> list[str]:
    return [key for key in record.__dict__ if key not in _RECORD_ATTRIBUTES]


def _plain(value: object) -> bool:
    """Whether an extra field's value is written as it is: a number, a flag or nothing (text is redacted)."""
    return value is None or isinstance(value, bool | int) or (isinstance(value, float) and math.isfinite(value))


class Redaction(logging.Filter):
    """A handler filter that redacts each record before it is written: the message with its arguments, the
    traceback, the stack and every extra field (one that is not a number is redacted as text). It also gives a
    record logged while a request is served that request's id (``request_id``, from :data:`REQUEST_ID`). It changes
    the record itself, so every handler after it writes the redacted text."""

    _formatter = logging.Formatter()

    def filter(self, record: logging.LogRecord) -> bool:
        """Redact ``record`` in place; it is always written."""
        try:
            message = record.getMessage()
        except Exception:  # a wrong format: write what there is, rather than let logging print the raw arguments
            message = f"unformattable log message: {record.msg!r} {record.args!r}"
        try:
            record.msg = redact(message)
            if record.exc_info and not record.exc_text:
                record.exc_text = self._formatter.formatException(record.exc_info)
            if record.exc_text:
                record.exc_text = redact(record.exc_text)
            if record.stack_info:
                record.stack_info = redact(record.stack_info)
            # Read here, in the logging call's own context (greenlet): a handler that wrote later would not see it.
            if not getattr(record, "request_id", "") and (request_id := REQUEST_ID.get()):
                record.request_id = request_id
            for key in _extras(record):
                value = record.__dict__[key]
                if not _plain(value):
                    record.__dict__[key] = redact(value if isinstance(value, str) else str(value))
        except Exception as err:  # a bug here must neither lose the line's existence nor write it unredacted
            record.msg = f"a log line was withheld: redacting it failed ({type(err).__name__})"
            record.exc_info = record.exc_text = record.stack_info = None
            for key in _extras(record):
                del record.__dict__[key]
        record.args = None
        return True


def _timestamp(record: logging.LogRecord) -> str:
    """RFC 3339 in UTC with milliseconds: ``2026-11-22T09:15:02.042Z``."""
    return _rfc3339(record.created, record.msecs)


def _rfc3339(created: float, msecs: float) -> str:
    return f"{_second(int(created))}.{int(msecs):03d}Z"


@functools.lru_cache(maxsize=4)
def _second(seconds: int) -> str:
    # The lines of one second share it: strftime once per second rather than once per line.
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds))


class JsonFormatter(logging.Formatter):
    """Each record as one JSON object on one line: ``time``, ``level``, ``logger``, ``message``, ``pid``, then the
    record's extra fields (``request_id``, the request line's ``method``, ``route``, ``status``, ``duration_ms``,
    ``verification_id``, ...), ``exception`` (the traceback) and ``stack`` when there are.

    It writes what the record holds: the :class:`Redaction` filter of the handler has redacted it before. The
    output is ASCII (``\\u`` escapes), so whatever the stream's encoding each line stays one valid JSON object.
    """

    def format(self, record: logging.LogRecord) -> str:
        """The record as a JSON line (without the newline)."""
        entry: dict[str, Any] = {
            "time": _timestamp(record),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            "pid": record.process,
        }
        for key in _extras(record):
            value = record.__dict__[key]
            entry.setdefault(key, value if _plain(value) or isinstance(value, str) else str(value))
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            entry["exception"] = record.exc_text
        if record.stack_info:
            entry["stack"] = record.stack_info
        return json.dumps(entry)


# The request line's message; its fields follow it in this order (README "Production", docs/logs.md §4).
REQUEST_MESSAGE = "%s %s %s %.1fms"
# The handlers a request line may be written to directly: they write a formatted record to their stream and do
# nothing else (a subclass may, so it gets the record through logging).
_PLAIN_HANDLERS = (logging.StreamHandler, logging.FileHandler)


def log_request(
    log: logging.Logger,
    method: str,
    route: str,
    status: int,
    seconds: float,
    request_id: str,
    verification_id: str,
) -> None:
    """Log the request line of a request (``verify.request``, at INFO): ``method route status 4.2ms`` with the fields
    ``request_id``, ``method``, ``route``, ``status``, ``duration_ms`` and ``verification_id``.

    Where the line would reach only handlers that :class:`RedactingLogger` set up for JSON (a stream, a
    :class:`Redaction` filter, :class:`JsonFormatter`), which is the case under gunicorn with the JSON format, it is
    written to their streams directly, without a log record: the same bytes the record would have given (the same
    fields, in the same order, redacted by the same :func:`redact`), in one ``write`` of the whole line under the
    handler's lock, as the handler writes a line. Anywhere else (the text format, a handler of another kind, a test's
    capture), and if building the line fails, it goes through ``logging`` like any line. The logger's level and
    the handlers' levels count either way. In process a line took 41-48 µs through logging and 11-12 µs this way
    (docs/performance.md, issue 19).
    """
    if not log.isEnabledFor(logging.INFO):
        return
    milliseconds = seconds * 1000
    if _direct(log, lambda: _request_line(log.name, method, route, status, milliseconds, request_id, verification_id)):
        return
    log.info(
        REQUEST_MESSAGE,
        method,
        route,
        status,
        milliseconds,
        extra={
            "request_id": request_id,
            "method": method,
            "route": route,
            "status": status,
            "duration_ms": round(milliseconds, 3),
            "verification_id": verification_id,
        },
    )


def log_info(log: logging.Logger, message: str, *args: object) -> None:
    """``log.info(message, *args)``, for the lines the app logs on its hot path (a code sent, a verification
    approved): written directly where :func:`log_request` writes its line directly, the same bytes their record
    would have given (the message redacted, the serving request's id), else through ``logging``."""
    if log.isEnabledFor(logging.INFO) and not _direct(log, lambda: _info_line(log.name, message, args)):
        log.info(message, *args)


def _direct(log: logging.Logger, line: Callable[[], str]) -> bool:
    """Write ``line()`` to the handlers an INFO record of ``log`` would reach, when each writes JSON as
    :class:`RedactingLogger` set it up (:func:`_json_handlers`); whether it was written. A line that fails to build
    is not: it goes through logging, which redacts it or withholds it as it does any line."""
    handlers = _json_handlers(log)
    if not handlers:
        return False
    try:
        text = line()
    except Exception:
        return False
    for handler in handlers:
        _write(handler, text, log.name)
    return True


def _json_handlers(log: logging.Logger) -> list[logging.StreamHandler[Any]]:
    """The handlers an INFO record of ``log`` would reach, if each writes a JSON line made as :func:`_request_line`
    makes it (else none: the line then goes through logging). A logger filter, or a record factory other than
    logging's (one that adds fields, as tracing libraries do), sends the line through logging too."""
    if log.filters or logging.getLogRecordFactory() is not logging.LogRecord:
        return []
    found: list[logging.StreamHandler[Any]] = []
    logger: logging.Logger | None = log
    while logger is not None:  # as Logger.callHandlers walks them
        for handler in logger.handlers:
            if handler.level > logging.INFO:
                continue
            if not (
                isinstance(handler, logging.StreamHandler)
                and type(handler) in _PLAIN_HANDLERS
                and type(handler.formatter) is JsonFormatter
                and handler.filters
                and all(type(each) is Redaction for each in handler.filters)
                and handler.stream is not None
            ):
                return []
            found.append(handler)
        logger = logger.parent if logger.propagate else None
    return found


# redact() is a function of its text alone, so the method and the route template (a few values each) are redacted once.
_redact_label = functools.lru_cache(maxsize=256)(redact)


def _head(name: str, message: str) -> str:
    """A line's first fields as :class:`JsonFormatter` writes an INFO record of ``name`` once :class:`Redaction` has
    filtered it: time, level, logger, the message through :func:`redact`, pid; each text written as ``json.dumps``
    writes it (with its own escaping function: ASCII only). It ends before the record's extra fields and the
    closing brace."""
    created = time.time()  # as a LogRecord takes its time
    pid = os.getpid() if logging.logProcesses else None
    return (
        f'{{"time": "{_rfc3339(created, (created - int(created)) * 1000)}", '
        f'"level": {_escape(logging.getLevelName(logging.INFO))}, "logger": {_escape(name)}, '
        f'"message": {_escape(redact(message))}, "pid": {"null" if pid is None else int.__repr__(pid)}'
    )


def _request_line(
    name: str, method: str, route: str, status: int, milliseconds: float, request_id: str, verification_id: str
) -> str:
    """The request line as :class:`JsonFormatter` writes its record once :class:`Redaction` has filtered it: the
    same fields in the same order, each text through :func:`redact`, the numbers as they are."""
    duration_ms = round(milliseconds, 3)
    if not math.isfinite(duration_ms):  # the filter would write it as text ("inf"): let it
        raise ValueError(duration_ms)
    return (
        f"{_head(name, REQUEST_MESSAGE % (method, route, status, milliseconds))}, "
        f'"request_id": {_escape(redact(request_id))}, "method": {_escape(_redact_label(method))}, '
        f'"route": {_escape(_redact_label(route))}, "status": {int.__repr__(status)}, '
        f'"duration_ms": {float.__repr__(duration_ms)}, "verification_id": {_escape(redact(verification_id))}}}'
    )


def _info_line(name: str, message: str, args: tuple[object, ...]) -> str:
    """``log.info(message, *args)``'s line as :class:`JsonFormatter` writes its record once :class:`Redaction` has
    filtered it: the message formatted as the record formats it, and the serving request's id, which the filter
    adds, when there is one."""
    formatting: object = args
    if len(args) == 1 and isinstance(args[0], Mapping) and args[0]:  # as a LogRecord takes its arguments
        formatting = args[0]
    request_id = REQUEST_ID.get()
    tail = f', "request_id": {_escape(redact(request_id))}}}' if request_id else "}"
    return _head(name, message % formatting if args else message) + tail


def _write(handler: logging.StreamHandler[Any], line: str, name: str) -> None:
    """What ``StreamHandler.emit`` does with a formatted line: one write of it and the terminator, then a flush,
    under the handler's lock (so lines never interleave, whichever thread or greenlet writes)."""
    handler.acquire()
    try:
        handler.stream.write(line + handler.terminator)
        handler.flush()
    except RecursionError:
        raise
    except Exception:
        handler.handleError(logging.makeLogRecord({"name": name, "msg": line, "levelno": logging.INFO}))
    finally:
        handler.release()


def log_format(value: str | None) -> str:
    """The format ``VERIFY_LOG_FORMAT`` asks for, read as ``Settings.log_format`` reads it: ``json`` or ``text``,
    any case; unset or empty is ``json``. Anything else raises ValueError naming the variable."""
    chosen = (value or "").strip().lower() or DEFAULT_LOG_FORMAT
    if chosen not in LOG_FORMATS:
        raise ValueError(f"{LOG_FORMAT} must be one of {', '.join(LOG_FORMATS)}, not {chosen!r}")
    return chosen


class RedactingLogger(Logger):  # type: ignore[misc]  # gunicorn is untyped
    """gunicorn's logger, without secrets and in JSON: redacted access log atoms, a :class:`Redaction` filter on
    every handler of the error log, and :class:`JsonFormatter` on gunicorn's own handlers (its error log's and, when
    there is one, its access log's; a syslog handler or one from a ``logconfig`` keeps its format).

    It also sends the app's own lines (logger ``verify``) where gunicorn's error log goes, in its format and at
    INFO, and the root logger's too when nothing else configured it (so a library's warning is neither unformatted
    nor unredacted); Python's warnings and the tracebacks of threads that die go there too, rather than raw to
    stderr. ``setup`` runs again on a configuration reload; it then installs all of this on gunicorn's new handlers.
    """

    log_format = "json"

    def __init__(self, cfg: Any) -> None:
        self.redaction = Redaction()
        self.routes_root = False  # whether the root logger's handlers are ours
        super().__init__(cfg)

    def setup(self, cfg: Any) -> None:
        """gunicorn's setup, then the redaction filter on its handlers, its format, and the app's and root's lines
        routed."""
        super().setup(cfg)
        if self.log_format == "json":
            formatter = JsonFormatter()
            for handler in (*self.error_log.handlers, *self.access_log.handlers):
                if getattr(handler, "_gunicorn", False) and not isinstance(handler, logging.handlers.SysLogHandler):
                    handler.setFormatter(formatter)
        error_handlers: list[logging.Handler] = list(self.error_log.handlers)
        app = logging.getLogger(APP_LOGGER)
        app.handlers = list(error_handlers)
        app.setLevel(logging.INFO)
        app.propagate = False
        root = logging.getLogger()
        if not root.handlers or self.routes_root:
            root.handlers = list(error_handlers)
            self.routes_root = True
        # The access log's lines are made of redacted atoms (atoms()); everything else is filtered as it is written.
        for handler in {*error_handlers, *root.handlers}:
            if not any(isinstance(existing, Redaction) for existing in handler.filters):
                handler.addFilter(self.redaction)
        logging.captureWarnings(True)  # logger py.warnings, so the root logger's handlers
        if threading.excepthook is threading.__excepthook__:  # nobody else chose where they go
            threading.excepthook = _log_thread_exception

    def atoms(self, resp: Any, req: Any, environ: dict[str, Any], request_time: timedelta) -> dict[str, Any]:
        """The atoms the access log format uses, each redacted: ``r`` and ``{raw_uri}e`` by :func:`redact_target`,
        secret-named headers and environ variables (``{authorization}i``) whole, every other string by :func:`redact`.

        String atoms the format does not use are left out: nothing is spent on them, and a formatter that reads the
        record's arguments finds no unredacted header there (gunicorn shows a missing atom as ``-``).
        """
        used = _format_keys(self.cfg.access_log_format)
        atoms: dict[str, Any] = {}
        for key, value in super().atoms(resp, req, environ, request_time).items():
            if not isinstance(value, str):
                atoms[key] = value
            elif key in used:
                atoms[key] = _atom(key, value)
        raw_uri = environ.get("RAW_URI")
        if isinstance(raw_uri, str) and {"r", "{raw_uri}e"} & used:
            target = redact_target(raw_uri)
            request_line = f"{environ.get('REQUEST_METHOD', '-')} {target} {environ.get('SERVER_PROTOCOL', '-')}"
            atoms.update((key, value) for key, value in (("r", request_line), ("{raw_uri}e", target)) if key in used)
        return atoms


class TextLogger(RedactingLogger):
    """:class:`RedactingLogger` in gunicorn's own readable format (``VERIFY_LOG_FORMAT=text``, ``verify dev``):
    ``[2026-11-22 09:15:02 +0000] [4242] [INFO] verification ... approved by code``."""

    log_format = "text"


def _log_thread_exception(args: threading.ExceptHookArgs) -> None:
    """``threading.excepthook``: a thread's uncaught exception as an error line, redacted and formatted like any."""
    if args.exc_type is SystemExit:
        return
    name = args.thread.name if args.thread is not None else "?"
    logging.getLogger(APP_LOGGER).error("uncaught exception in thread %s", name, exc_info=args.exc_value)
