"""Render the Grafana dashboard (docs/grafana/verify.json) from real scrapes of a running ``verify``.

No Grafana runs here, so this draws the dashboard itself, for the README's screenshot. It starts the Procfile's
gunicorn (tests/servers.py) on an embedded Redis, with SMSC (the test suite's emulator, answering in a gateway's
time) first in the SMS chain and the sandbox gateway behind it, drives a varied workload for about a minute, and
scrapes ``/metrics`` every 2 seconds meanwhile. Then it evaluates every panel's PromQL over those scrapes, draws each
panel as inline SVG in an HTML page styled like Grafana's dark theme, and screenshots the page in Chromium
(Playwright). Run it from the repository root, as a module (it uses the test suite's server helpers)::

    .venv/bin/python -m docs.grafana.render                     # writes docs/grafana/screenshot.png
    .venv/bin/python -m docs.grafana.render --seconds 30 --html /tmp/verify.html --out /tmp/verify.png

The workload, as fractions of ``--seconds``: people in RU, GB, US, DE, IN and BR verify throughout (most enter the
right code, some a wrong one first, some answer by SMS reply or by call, some get the code by voice or Telegram,
some start a fallback chain and check the code of its next channel: the SMS after an unread Telegram message, the
voice call after an SMS that SMSC reports undeliverable; some give up and their verification expires, a few cancel;
SMSC reports most SMS delivered and a few undeliverable), while a bot starts SMS to NG numbers
and never enters a code, until the SMS-pumping guard asks it for captchas. From 0.20 SMSC answers 502 (the sends fail
over to the sandbox gateway and SMSC's breaker opens), from 0.30 it times out, from 0.42 it is back. At 0.48 come
abuse: an IP farming starts through captchas until its IP limit, a phone over its limit, forged SMSC callbacks and an
IP guessing codes until ``check_ip`` stops it. From 0.62 the customer's event receiver is down for a while, and at
0.70 Redis is paused for 2.5 seconds.

The evaluator (:func:`parse`, :class:`Evaluator`) knows the PromQL the dashboard uses: selectors with label matchers,
``rate``, ``increase``, ``histogram_quantile``, ``vector``, ``clamp_min``, ``sum``/``max``/``min``/``avg``/``count``
``by``, arithmetic, comparisons as filters, and ``or``. Two differences from Prometheus: ``increase`` is the exact
difference between the scrapes at the window's ends (no extrapolation), and a series missing from a scrape counts
as 0 there (the server starts empty, and prometheus_client shows a labelled counter only once it has counted).
"""

from __future__ import annotations

import argparse
import html
import io
import itertools
import json
import math
import random
import re
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import phonenumbers
import redis
import requests
from PIL import Image
from prometheus_client.parser import text_string_to_metric_families
from werkzeug.wrappers import Request, Response

from tests.conftest import serving
from tests.providers.emulator import Seen
from tests.providers.smsc_emulator import smsc_callback
from tests.servers import AUTH, CountingSmsc, Server, gunicorn_server
from verify.embedded import EmbeddedRedis

HERE = Path(__file__).resolve().parent
DASHBOARD = HERE / "verify.json"
SCREENSHOT = HERE / "screenshot.png"
CHROMIUM = "/usr/lib/chromium/chromium"

# ---------------------------------------------------------------------------------------------------------------
# Scrapes and the PromQL the dashboard uses

Labels = tuple[tuple[str, str], ...]
Vector = dict[Labels, float]


@dataclass(frozen=True)
class Scrape:
    """One ``/metrics`` page: when it was read (unix seconds) and every sample, by sample name then labels."""

    at: float
    samples: dict[str, dict[Labels, float]]


def parse_scrape(text: str, at: float) -> Scrape:
    """A scrape from the Prometheus text format."""
    samples: dict[str, dict[Labels, float]] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples.setdefault(sample.name, {})[tuple(sorted(sample.labels.items()))] = float(sample.value)
    return Scrape(at, samples)


@dataclass(frozen=True)
class Number:
    """A literal."""

    value: float


@dataclass(frozen=True)
class Selector:
    """``name{label op "value", ...}``, with ``[range]`` when ``range_s`` is set."""

    name: str
    matchers: tuple[tuple[str, str, str], ...]
    range_s: float | None


@dataclass(frozen=True)
class Call:
    """``func(args)``."""

    func: str
    args: tuple[Node, ...]


@dataclass(frozen=True)
class Aggregate:
    """``op by (labels) (expr)``."""

    op: str
    by: tuple[str, ...]
    expr: Node


@dataclass(frozen=True)
class Binary:
    """``lhs op rhs``: arithmetic, a comparison (a filter), or ``or``."""

    op: str
    lhs: Node
    rhs: Node


Node = Number | Selector | Call | Aggregate | Binary

TOKEN = re.compile(
    r"""\s*(?:
    (?P<duration>\d+(?:ms|[smhdwy]))(?![\w.])
  | (?P<number>\d+(?:\.\d*)?(?:[eE][-+]?\d+)?)
  | (?P<string>"(?:[^"\\]|\\.)*")
  | (?P<ident>[A-Za-z_:][\w:]*)
  | (?P<op>=~|!~|!=|==|>=|<=|[-+*/(){}\[\],=<>])
)""",
    re.VERBOSE,
)
UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800, "y": 31536000}
AGGREGATIONS = frozenset({"sum", "max", "min", "avg", "count"})
COMPARISONS = frozenset({"==", "!=", ">", "<", ">=", "<="})
FUNCTIONS = frozenset({"rate", "increase", "histogram_quantile", "vector", "clamp_min"})
REDUCERS: dict[str, Callable[[list[float]], float]] = {
    "sum": math.fsum,
    "max": max,
    "min": min,
    "count": lambda values: float(len(values)),
    "avg": lambda values: math.fsum(values) / len(values),
}


def tokenize(text: str) -> list[tuple[str, str]]:
    """``(kind, text)`` pairs; raises ValueError at the first character no token starts with."""
    tokens, pos = [], 0
    text = text.rstrip()
    while pos < len(text):
        match = TOKEN.match(text, pos)
        if match is None or match.lastgroup is None:
            raise ValueError(f"cannot read {text[pos : pos + 20]!r} in {text!r}")
        tokens.append((match.lastgroup, match.group(match.lastgroup)))
        pos = match.end()
    return tokens


def seconds(duration: str) -> float:
    """``"90s"``, ``"5m"``, ``"1h"`` in seconds."""
    match = re.fullmatch(r"(\d+)(ms|[smhdwy])", duration)
    if match is None:
        raise ValueError(f"not a duration: {duration!r}")
    return int(match.group(1)) * UNITS[match.group(2)]


class _Parser:
    def __init__(self, text: str) -> None:
        self.text = text
        self.tokens = tokenize(text)
        self.pos = 0

    def peek(self) -> str | None:
        return self.tokens[self.pos][1] if self.pos < len(self.tokens) else None

    def take(self, expected: str | None = None) -> tuple[str, str]:
        if self.pos >= len(self.tokens):
            raise ValueError(f"{self.text!r} ends early")
        token = self.tokens[self.pos]
        if expected is not None and token[1] != expected:
            raise ValueError(f"expected {expected!r}, got {token[1]!r} in {self.text!r}")
        self.pos += 1
        return token

    def parse(self) -> Node:
        node = self.union()
        if self.pos != len(self.tokens):
            raise ValueError(f"unexpected {self.tokens[self.pos][1]!r} in {self.text!r}")
        return node

    def union(self) -> Node:
        node = self.comparison()
        while self.peek() == "or":
            self.take()
            node = Binary("or", node, self.comparison())
        return node

    def comparison(self) -> Node:
        node = self.additive()
        while (op := self.peek()) in COMPARISONS and op is not None:
            self.take()
            node = Binary(op, node, self.additive())
        return node

    def additive(self) -> Node:
        node = self.multiplicative()
        while (op := self.peek()) in ("+", "-") and op is not None:
            self.take()
            node = Binary(op, node, self.multiplicative())
        return node

    def multiplicative(self) -> Node:
        node = self.operand()
        while (op := self.peek()) in ("*", "/") and op is not None:
            self.take()
            node = Binary(op, node, self.operand())
        return node

    def grouping(self) -> tuple[str, ...]:
        self.take("by")
        self.take("(")
        labels = []
        while self.peek() != ")":
            labels.append(self.take()[1])
            if self.peek() == ",":
                self.take()
        self.take(")")
        return tuple(labels)

    def operand(self) -> Node:
        kind, text = self.take()
        if text == "(":
            node = self.union()
            self.take(")")
            return node
        if kind == "number":
            return Number(float(text))
        if kind != "ident":
            raise ValueError(f"unexpected {text!r} in {self.text!r}")
        if text in AGGREGATIONS:
            by = self.grouping() if self.peek() == "by" else ()
            self.take("(")
            expr = self.union()
            self.take(")")
            if not by and self.peek() == "by":
                by = self.grouping()
            return Aggregate(text, by, expr)
        if self.peek() == "(":
            if text not in FUNCTIONS:
                raise ValueError(f"unknown function {text}() in {self.text!r}")
            self.take("(")
            args = [self.union()]
            while self.peek() == ",":
                self.take()
                args.append(self.union())
            self.take(")")
            return Call(text, tuple(args))
        return self.selector(text)

    def selector(self, name: str) -> Selector:
        matchers = []
        if self.peek() == "{":
            self.take()
            while self.peek() != "}":
                label = self.take()[1]
                op = self.take()[1]
                kind, value = self.take()
                if op not in ("=", "!=", "=~", "!~") or kind != "string":
                    raise ValueError(f"bad matcher {label}{op}{value} in {self.text!r}")
                matchers.append((label, op, json.loads(value)))
                if self.peek() == ",":
                    self.take()
            self.take("}")
        range_s = None
        if self.peek() == "[":
            self.take()
            range_s = seconds(self.take()[1])
            self.take("]")
        return Selector(name, tuple(matchers), range_s)


def parse(expr: str) -> Node:
    """The expression's syntax tree; raises ValueError on PromQL outside the subset (see the module docstring)."""
    return _Parser(expr).parse()


def selectors(node: Node) -> Iterator[Selector]:
    """Every selector in ``node``."""
    match node:
        case Selector():
            yield node
        case Call(args=args):
            for arg in args:
                yield from selectors(arg)
        case Aggregate(expr=expr):
            yield from selectors(expr)
        case Binary(lhs=lhs, rhs=rhs):
            yield from selectors(lhs)
            yield from selectors(rhs)
        case Number():
            pass


def expand(expr: str, variables: Mapping[str, str]) -> str:
    """``expr`` with Grafana's ``$name`` and ``${name}`` replaced from ``variables``."""

    def value(match: re.Match[str]) -> str:
        name = match.group(1) or match.group(2)
        if name not in variables:
            raise ValueError(f"no value for ${name} in {expr!r}")
        return variables[name]

    return re.sub(r"\$\{(\w+)\}|\$(\w+)", value, expr)


def _matches(labels: Labels, matchers: Sequence[tuple[str, str, str]]) -> bool:
    have = dict(labels)
    for label, op, wanted in matchers:
        value = have.get(label, "")
        ok = {"=": value == wanted, "!=": value != wanted}.get(op)
        if ok is None:
            ok = bool(re.fullmatch(wanted, value)) == (op == "=~")
        if not ok:
            return False
    return True


def _arith(op: str, a: float, b: float) -> float:
    if op == "+":
        return a + b
    if op == "-":
        return a - b
    if op == "*":
        return a * b
    if b == 0:
        return math.nan if a == 0 else math.copysign(math.inf, a)
    return a / b


def _compare(op: str, a: float, b: float) -> bool:
    return {"==": a == b, "!=": a != b, ">": a > b, "<": a < b, ">=": a >= b, "<=": a <= b}[op]


def _quantile(q: float, buckets: list[tuple[float, float]]) -> float:
    """Prometheus's bucket interpolation over cumulative ``(le, count)`` pairs."""
    buckets.sort()
    if len(buckets) < 2 or buckets[-1][0] != math.inf or buckets[-1][1] <= 0:
        return math.nan
    rank = q * buckets[-1][1]
    index = next(i for i, (_, count) in enumerate(buckets) if count >= rank)
    upper, count = buckets[index]
    if upper == math.inf:
        return buckets[-2][0]
    lower, below = buckets[index - 1] if index > 0 else (0.0, 0.0)
    if count == below:
        return upper
    return lower + (upper - lower) * (rank - below) / (count - below)


class Evaluator:
    """Evaluates parsed expressions over a run's scrapes, at any time between the first and the last."""

    def __init__(self, scrapes: Sequence[Scrape]) -> None:
        self.scrapes = sorted(scrapes, key=lambda scrape: scrape.at)

    def scrape_at(self, t: float) -> Scrape | None:
        """The newest scrape read at or before ``t``."""
        found = None
        for scrape in self.scrapes:
            if scrape.at > t + 1e-6:
                break
            found = scrape
        return found

    def instant(self, node: Node, t: float) -> Vector:
        """The value of ``node`` at ``t`` as a vector (a scalar is the one series without labels)."""
        value = self._eval(node, t)
        return {(): value} if isinstance(value, float) else value

    def range(self, node: Node, times: Sequence[float]) -> dict[Labels, list[tuple[float, float]]]:
        """``node`` at each of ``times``: each series' ``(t, value)`` points, NaN and infinities left out."""
        series: dict[Labels, list[tuple[float, float]]] = {}
        for t in times:
            for labels, value in self.instant(node, t).items():
                if math.isfinite(value):
                    series.setdefault(labels, []).append((t, value))
        return series

    def _eval(self, node: Node, t: float) -> float | Vector:
        match node:
            case Number(value=value):
                return value
            case Selector(name=name, matchers=matchers, range_s=None):
                scrape = self.scrape_at(t)
                found = scrape.samples.get(name, {}) if scrape else {}
                return {labels: value for labels, value in found.items() if _matches(labels, matchers)}
            case Selector():
                raise ValueError(f"a range selector outside rate() or increase(): {node.name}")
            case Call(func="rate" | "increase", args=(Selector(range_s=float() | int()) as selector,)):
                return self._increase(selector, t, per_second=node.func == "rate")
            case Call(func="histogram_quantile", args=(q_node, inner)):
                q, vector = self._eval(q_node, t), self._vector(inner, t)
                if not isinstance(q, float):
                    raise ValueError("histogram_quantile() wants a number first")
                groups: dict[Labels, list[tuple[float, float]]] = {}
                for labels, value in vector.items():
                    le = dict(labels).get("le")
                    if le is not None:
                        rest = tuple(pair for pair in labels if pair[0] != "le")
                        groups.setdefault(rest, []).append((float(le), value))
                return {labels: _quantile(q, buckets) for labels, buckets in groups.items()}
            case Call(func="vector", args=(Number(value=value),)):
                return {(): value}
            case Call(func="clamp_min", args=(inner, Number(value=floor))):
                return {labels: max(value, floor) for labels, value in self._vector(inner, t).items()}
            case Call():
                raise ValueError(f"unsupported call {node.func}() with {len(node.args)} arguments")
            case Aggregate(op=op, by=by, expr=expr):
                grouped: dict[Labels, list[float]] = {}
                for labels, value in self._vector(expr, t).items():
                    key = tuple(pair for pair in labels if pair[0] in by)
                    grouped.setdefault(key, []).append(value)
                return {key: REDUCERS[op](values) for key, values in grouped.items()}
            case Binary(op=op, lhs=lhs_node, rhs=rhs_node):
                return self._binary(op, self._eval(lhs_node, t), self._eval(rhs_node, t))
        raise ValueError(f"cannot evaluate {node!r}")

    def _vector(self, node: Node, t: float) -> Vector:
        value = self._eval(node, t)
        if isinstance(value, float):
            raise ValueError(f"expected a vector, got the number {value}")
        return value

    def _increase(self, selector: Selector, t: float, *, per_second: bool) -> Vector:
        assert selector.range_s is not None
        now, before = self.scrape_at(t), self.scrape_at(t - selector.range_s)
        if now is None:
            return {}
        earlier = before.samples.get(selector.name, {}) if before else {}
        result = {}
        for labels, value in now.samples.get(selector.name, {}).items():
            if _matches(labels, selector.matchers):
                grown = max(value - earlier.get(labels, 0.0), 0.0)
                result[labels] = grown / selector.range_s if per_second else grown
        return result

    @staticmethod
    def _binary(op: str, lhs: float | Vector, rhs: float | Vector) -> float | Vector:
        if op == "or":
            if isinstance(lhs, float) or isinstance(rhs, float):
                raise ValueError("'or' joins two vectors")
            return {**rhs, **lhs}
        if isinstance(lhs, float) and isinstance(rhs, float):
            if op in COMPARISONS:
                raise ValueError("a comparison of two numbers needs 'bool'")
            return _arith(op, lhs, rhs)
        if op in COMPARISONS:
            if isinstance(lhs, float):
                raise ValueError("a filter compares a vector with something")
            if isinstance(rhs, float):
                return {labels: value for labels, value in lhs.items() if _compare(op, value, rhs)}
            return {
                labels: value for labels, value in lhs.items() if labels in rhs and _compare(op, value, rhs[labels])
            }
        if isinstance(lhs, float):
            assert not isinstance(rhs, float)
            return {labels: _arith(op, lhs, value) for labels, value in rhs.items()}
        if isinstance(rhs, float):
            return {labels: _arith(op, value, rhs) for labels, value in lhs.items()}
        return {labels: _arith(op, value, rhs[labels]) for labels, value in lhs.items() if labels in rhs}


# ---------------------------------------------------------------------------------------------------------------
# Panels' data


@dataclass(frozen=True)
class Frame:
    """One series of a panel: its legend, labels, and ``(t, value)`` points (one for an instant query)."""

    name: str
    labels: Labels
    points: tuple[tuple[float, float], ...]


def legend(template: str, labels: Labels) -> str:
    """Grafana's legend: ``{{label}}`` replaced by the label's value; without a template, the label set."""
    if template and template != "__auto":
        have = dict(labels)
        return re.sub(r"\{\{\s*(\w+)\s*\}\}", lambda m: have.get(m.group(1), ""), template)
    return "{" + ", ".join(f'{k}="{v}"' for k, v in labels) + "}" if labels else "value"


def variables_for(scrapes: Sequence[Scrape], rate_interval_s: int) -> dict[str, str]:
    """What Grafana would put in for the dashboard's variables: every tenant, country, channel and gateway ("All"),
    the time range of the scrapes, and the default conversion window."""
    span = max(1, round(scrapes[-1].at - scrapes[0].at))
    return {
        "datasource": "prometheus",
        "tenant": ".*",
        "country": ".*",
        "channel": ".*",
        "provider": ".*",
        "window": "1h",
        "__range": f"{span}s",
        "__rate_interval": f"{rate_interval_s}s",
    }


def panel_frames(panel: Mapping[str, Any], evaluator: Evaluator, variables: Mapping[str, str]) -> list[Frame]:
    """Every series the panel's targets give over the run: range queries at each scrape, instant ones at the end."""
    times = [scrape.at for scrape in evaluator.scrapes]
    frames = []
    for target in panel.get("targets", []):
        node = parse(expand(target["expr"], variables))
        if target.get("instant"):
            points = {
                labels: [(times[-1], value)]
                for labels, value in evaluator.instant(node, times[-1]).items()
                if math.isfinite(value)
            }
        else:
            points = evaluator.range(node, times)
        for labels in sorted(points):
            frames.append(Frame(legend(target.get("legendFormat", ""), labels), labels, tuple(points[labels])))
    return frames


# ---------------------------------------------------------------------------------------------------------------
# Drawing: Grafana's dark theme, in HTML and SVG

PAGE_WIDTH = 1600
PAD = 16
GAP = 8
CELL = 30
HEADER = 32
BACKGROUND = "#111217"
PANEL = "#181b1f"
BORDER = "rgba(204, 204, 220, 0.12)"
TEXT = "#ccccdc"
MUTED = "rgba(204, 204, 220, 0.65)"
GRID = "rgba(204, 204, 220, 0.09)"
FONT = "Inter, Helvetica, Arial, 'Liberation Sans', sans-serif"
NAMED = {
    "green": "#73BF69",
    "dark-green": "#37872D",
    "red": "#F2495C",
    "orange": "#FF9830",
    "yellow": "#FADE2A",
    "blue": "#5794F2",
    "purple": "#B877D9",
    "text": "#CCCCDC",
}
CLASSIC = (
    "#7EB26D",
    "#EAB839",
    "#6ED0E0",
    "#EF843C",
    "#E24D42",
    "#1F78C1",
    "#BA43A9",
    "#705DA0",
    "#508642",
    "#CCA300",
    "#447EBC",
    "#C15C17",
    "#890F02",
    "#0A437C",
    "#6D1F62",
    "#584477",
)
GRADIENTS = {"continuous-BlPu": ("#5794F2", "#B877D9")}
CLOCK_ICON = (
    '<svg width="12" height="12" viewBox="0 0 12 12" style="vertical-align:-2px"><circle cx="6" cy="6" '
    f'r="5" fill="none" stroke="{TEXT}"/><path d="M6 3v3l2 1.5" fill="none" stroke="{TEXT}"/></svg>'
)
CHAR = 6.6  # px per character of 12px text, for layout estimates


def colour(name: str) -> str:
    """A Grafana colour name as CSS."""
    return NAMED.get(name, name)


def esc(text: str) -> str:
    """``text`` for HTML and SVG."""
    return html.escape(text, quote=True)


def _trim(number: str) -> str:
    return number.rstrip("0").rstrip(".") if "." in number else number


def _num(value: float, decimals: int | None) -> str:
    if decimals is not None:
        return f"{value:.{decimals}f}"
    size = abs(value)
    return _trim(f"{value:.{0 if size >= 100 else 1 if size >= 10 else 2}f}")


def fmt(value: float, unit: str, decimals: int | None = None) -> str:
    """``value`` as Grafana shows it in ``unit`` (percentunit, s, reqps, cpm, short, none)."""
    if unit == "percentunit":
        return f"{_num(value * 100, decimals)}%"
    if unit == "s":
        if value == 0:
            return "0 s"
        if abs(value) < 1:
            return f"{_num(value * 1000, None)} ms"
        return f"{_num(value, None)} s"
    if unit == "reqps":
        return f"{_num(value, decimals)} req/s"
    if unit == "cpm":
        return f"{_num(value, decimals)} cpm"
    if unit == "short":
        for size, suffix in ((1e9, " Bil"), (1e6, " Mil"), (1e3, " K")):
            if abs(value) >= size:
                return f"{_num(value / size, None)}{suffix}"
    return _num(value, decimals)


def threshold_colour(value: float, thresholds: Mapping[str, Any]) -> str:
    """The colour of the highest step at or below ``value``."""
    chosen = "green"
    for step in thresholds.get("steps", []):
        if step["value"] is None or value >= step["value"]:
            chosen = step["color"]
    return colour(chosen)


def mapped(value: float, mappings: Sequence[Mapping[str, Any]]) -> tuple[str | None, str | None]:
    """A value mapping's ``(text, colour)`` for ``value``, or ``(None, None)``."""
    for mapping in mappings:
        if mapping.get("type") != "value":
            continue
        for key, result in mapping.get("options", {}).items():
            if float(key) == value:
                return result.get("text"), colour(result["color"]) if result.get("color") else None
    return None, None


def series_colours(panel: Mapping[str, Any], frames: Sequence[Frame]) -> list[str]:
    """Each frame's colour: a fixed colour from an override (by name or by regex), else the classic palette."""
    overrides = panel.get("fieldConfig", {}).get("overrides", [])
    result = []
    for index, frame in enumerate(frames):
        chosen = CLASSIC[index % len(CLASSIC)]
        for override in overrides:
            matcher = override["matcher"]
            hit = (matcher["id"] == "byName" and matcher["options"] == frame.name) or (
                matcher["id"] == "byRegexp" and re.fullmatch(matcher["options"], frame.name) is not None
            )
            if hit:
                for prop in override["properties"]:
                    if prop["id"] == "color":
                        chosen = colour(prop["value"]["fixedColor"])
        result.append(chosen)
    return result


def nice_ticks(top: float, count: int) -> list[float]:
    """Round axis ticks from 0 to at least ``top``."""
    if top <= 0:
        top = 1.0
    raw = top / max(count, 1)
    magnitude = 10 ** math.floor(math.log10(raw))
    step = next(m * magnitude for m in (1, 2, 2.5, 5, 10) if m * magnitude >= raw)
    ticks = [0.0]
    while ticks[-1] < top - 1e-9:
        ticks.append(round(ticks[-1] + step, 10))
    return ticks


def _clock(t: float) -> str:
    return datetime.fromtimestamp(t).strftime("%H:%M:%S")


def legend_html(names: Sequence[str], colours: Sequence[str]) -> str:
    """Grafana's list legend: a colour bar and the name of each series."""
    items = "".join(
        f'<span class="li"><i style="background:{c}"></i>{esc(n)}</span>' for n, c in zip(names, colours, strict=True)
    )
    return f'<div class="legend">{items}</div>'


def legend_rows(names: Sequence[str], width: float) -> int:
    """How many lines the legend takes in ``width`` pixels (an estimate)."""
    rows, used = 1, 0.0
    for name in names:
        item = 14 + 6 + len(name) * CHAR + 16
        if used and used + item > width:
            rows, used = rows + 1, 0.0
        used += item
    return rows


def timeseries(
    panel: Mapping[str, Any], frames: Sequence[Frame], width: float, height: float, span: tuple[float, float]
) -> str:
    """A time series panel's body: axes, grid, lines or bars (stacked when configured), and its legend."""
    defaults = panel["fieldConfig"]["defaults"]
    custom = defaults.get("custom", {})
    unit = defaults.get("unit", "short")
    if not frames:
        return '<div class="nodata">No data</div>'
    colours = series_colours(panel, frames)
    rows = min(legend_rows([f.name for f in frames], width), 3)
    legend_h = rows * 18 + 6
    stacked = custom.get("stacking", {}).get("mode") == "normal"
    bars = custom.get("drawStyle") == "bars"
    times = sorted({t for frame in frames for t, _ in frame.points})
    values = [dict(frame.points) for frame in frames]
    tops = []
    for t in times:
        present = [v[t] for v in values if t in v]
        tops.append(math.fsum(present) if stacked else max(present, default=0.0))
    top = max(defaults.get("max", 0), max(tops, default=0.0))
    right, top_pad = 8.0, 8.0
    plot_h = height - legend_h - top_pad - 24
    ticks = nice_ticks(defaults.get("max") or top * 1.05, max(2, int(plot_h // 45)))
    labels = [fmt(tick, unit, 0 if unit == "percentunit" else None) for tick in ticks]
    left = max(len(label) for label in labels) * CHAR + 14
    plot_w = width - left - right
    t0, t1 = span
    y_max = ticks[-1]

    def x(t: float) -> float:
        return left + (t - t0) / (t1 - t0) * plot_w

    def y(v: float) -> float:
        return top_pad + plot_h - (v / y_max) * plot_h

    parts = [
        f'<svg width="{width:.0f}" height="{height - legend_h:.0f}">',
        "".join(
            f'<linearGradient id="g{panel["id"]}_{i}" x1="0" y1="0" x2="0" y2="1">'
            f'<stop offset="0" stop-color="{c}" stop-opacity="{custom.get("fillOpacity", 0) / 100:.2f}"/>'
            f'<stop offset="1" stop-color="{c}" stop-opacity="0.02"/></linearGradient>'
            for i, c in enumerate(colours)
        ).join(("<defs>", "</defs>")),
    ]
    for tick, label in zip(ticks, labels, strict=True):
        parts.append(
            f'<line x1="{left}" x2="{width - right}" y1="{y(tick):.1f}" y2="{y(tick):.1f}" '
            f'stroke="{GRID}"/><text x="{left - 6}" y="{y(tick) + 4:.1f}" class="ax" '
            f'text-anchor="end">{esc(label)}</text>'
        )
    step = next(s for s in (5, 10, 15, 30, 60, 120, 300, 600) if plot_w / ((t1 - t0) / s) >= 70)
    tick_t = math.ceil(t0 / step) * step
    while tick_t <= t1 and x(tick_t) + 26 <= width:  # no label cut by the edge
        parts.append(
            f'<line x1="{x(tick_t):.1f}" x2="{x(tick_t):.1f}" y1="{top_pad}" y2="{top_pad + plot_h}" '
            f'stroke="{GRID}"/><text x="{x(tick_t):.1f}" y="{top_pad + plot_h + 15}" class="ax" '
            f'text-anchor="middle">{_clock(tick_t)}</text>'
        )
        tick_t += step
    base = dict.fromkeys(times, 0.0)
    slot = plot_w / max(len(times), 1)
    bar_w = max(2.0, min(14.0, slot * 0.7))
    for index, (series, c) in enumerate(zip(values, colours, strict=True)):
        mine = [t for t in times if t in series]
        if not mine:
            continue
        lows = [base[t] if stacked else 0.0 for t in mine]
        highs = [low + series[t] for low, t in zip(lows, mine, strict=True)]
        if bars:
            for t, low, high in zip(mine, lows, highs, strict=True):
                if high > low:
                    parts.append(
                        f'<rect x="{x(t) - bar_w / 2:.1f}" y="{y(high):.1f}" width="{bar_w:.1f}" '
                        f'height="{max(y(low) - y(high), 0.5):.1f}" fill="{c}" fill-opacity="0.8"/>'
                    )
        else:
            line = " ".join(f"{x(t):.1f},{y(v):.1f}" for t, v in zip(mine, highs, strict=True))
            if custom.get("fillOpacity", 0) > 0:
                floor = " ".join(f"{x(t):.1f},{y(v):.1f}" for t, v in reversed(list(zip(mine, lows, strict=True))))
                parts.append(f'<polygon points="{line} {floor}" fill="url(#g{panel["id"]}_{index})"/>')
            parts.append(
                f'<polyline points="{line}" fill="none" stroke="{c}" stroke-width="'
                f'{custom.get("lineWidth", 1)}" stroke-linejoin="round"/>'
            )
        if stacked:
            for t, high in zip(mine, highs, strict=True):
                base[t] = high
    parts.append("</svg>")
    return "".join(parts) + legend_html([f.name for f in frames], colours)


def _reduce(frame: Frame, calc: str) -> float:
    values = [v for _, v in frame.points]
    return math.fsum(values) / len(values) if calc == "mean" else values[-1]


def stat(panel: Mapping[str, Any], frames: Sequence[Frame], width: float, height: float) -> tuple[str, str | None]:
    """A stat panel's body, and its background colour when ``colorMode`` is ``background``."""
    defaults, options = panel["fieldConfig"]["defaults"], panel["options"]
    unit, decimals = defaults.get("unit", "short"), defaults.get("decimals")
    calc = options["reduceOptions"]["calcs"][0]
    cells = []
    for frame in frames:
        value = _reduce(frame, calc)
        text, mapped_colour = mapped(value, defaults.get("mappings", []))
        cells.append(
            (
                frame,
                text or fmt(value, unit, decimals),
                mapped_colour or threshold_colour(value, defaults["thresholds"]),
            )
        )
    if not cells:
        shown = defaults.get("noValue", "No data")
        cells.append((Frame("", (), ()), shown, threshold_colour(0, defaults["thresholds"])))
    background = options.get("colorMode") == "background"
    show_names = options.get("textMode") == "value_and_name" or len(cells) > 1
    cell_w = width / len(cells)
    body = []
    for frame, text, c in cells:
        size = min(height * (0.34 if show_names else 0.46), cell_w / (max(len(text), 3) * 0.62), 56)
        name = f'<div class="sname">{esc(frame.name)}</div>' if show_names else ""
        value_colour = "#fff" if background else c
        spark = ""
        if options.get("graphMode") == "area" and len(frame.points) > 1:
            spark = _sparkline(frame, cell_w, height * 0.42, c)
        body.append(
            f'<div class="cell" style="width:{cell_w:.0f}px">{name}<div class="big" style="font-size:'
            f'{size:.0f}px;color:{value_colour}">{esc(text)}</div>{spark}</div>'
        )
    return f'<div class="stat">{"".join(body)}</div>', cells[0][2] if background else None


def _sparkline(frame: Frame, width: float, height: float, c: str) -> str:
    values = [v for _, v in frame.points]
    top = max(values) or 1.0
    t0, t1 = frame.points[0][0], frame.points[-1][0]
    points = [((t - t0) / (t1 - t0) * width, height - v / top * (height - 4)) for t, v in frame.points]
    line = " ".join(f"{px:.1f},{py:.1f}" for px, py in points)
    return (
        f'<svg class="spark" width="{width:.0f}" height="{height:.0f}"><polygon points="0,{height:.0f} {line} '
        f'{width:.0f},{height:.0f}" fill="{c}" fill-opacity="0.18"/><polyline points="{line}" fill="none" '
        f'stroke="{c}" stroke-width="1.5"/></svg>'
    )


def bargauge(panel: Mapping[str, Any], frames: Sequence[Frame], width: float, height: float) -> str:
    """A horizontal gradient bar gauge: name, bar, value per series."""
    defaults = panel["fieldConfig"]["defaults"]
    unit, decimals = defaults.get("unit", "short"), defaults.get("decimals")
    if not frames:
        return '<div class="nodata">No data</div>'
    values = [frame.points[-1][1] for frame in frames]
    low, high = defaults.get("min", 0), defaults.get("max") or max(max(values), 1e-9)
    name_w = min(max(len(f.name) for f in frames) * 8 + 24, width * 0.4)
    value_w = max(len(fmt(v, unit, decimals)) for v in values) * 9 + 12
    bar_w = width - name_w - value_w
    row_h = min(height / len(frames), 34)
    mode = defaults.get("color", {}).get("mode", "thresholds")
    out = []
    for frame, value in zip(frames, values, strict=True):
        share = max(0.0, min(1.0, (value - low) / (high - low))) if high > low else 0.0
        c = GRADIENTS[mode][1] if mode in GRADIENTS else threshold_colour(value, defaults["thresholds"])
        start = GRADIENTS[mode][0] if mode in GRADIENTS else threshold_colour(low, defaults["thresholds"])
        out.append(
            f'<div class="bg" style="height:{row_h:.0f}px"><span class="bgn" style="width:{name_w:.0f}px">'
            f'{esc(frame.name)}</span><span class="bgt" style="width:{bar_w:.0f}px;height:{row_h * 0.62:.0f}px">'
            f'<span style="width:{share * 100:.1f}%;background:linear-gradient(90deg,{start}66,{c})"></span></span>'
            f'<span class="bgv" style="width:{value_w:.0f}px;color:{c};font-size:{min(row_h * 0.6, 20):.0f}px">'
            f"{esc(fmt(value, unit, decimals))}</span></div>"
        )
    return f'<div class="bars">{"".join(out)}</div>'


def state_timeline(
    panel: Mapping[str, Any], frames: Sequence[Frame], width: float, height: float, span: tuple[float, float]
) -> str:
    """One row per series, coloured by its mapped state over time, and the states' legend."""
    defaults = panel["fieldConfig"]["defaults"]
    mappings = defaults.get("mappings", [])
    states = [
        (text, c)
        for m in mappings
        for text, c in ((o.get("text", k), colour(o.get("color", "text"))) for k, o in m.get("options", {}).items())
    ]
    legend = legend_html([s for s, _ in states], [c for _, c in states])
    if not frames:
        return '<div class="nodata">No data</div>' + legend
    t0, t1 = span
    name_w = max(len(f.name) for f in frames) * CHAR + 16
    plot_w = width - name_w - 8
    row_h = min((height - 48) / len(frames), 34)
    svg = [f'<svg width="{width:.0f}" height="{row_h * len(frames) + 20:.0f}">']
    for row, frame in enumerate(frames):
        top = row * row_h
        svg.append(
            f'<text x="{name_w - 8}" y="{top + row_h / 2 + 4:.1f}" class="ax" text-anchor="end">'
            f"{esc(frame.name)}</text>"
        )
        runs: list[tuple[float, float]] = []  # (start, value): a run lasts until the next one starts
        for t, value in frame.points:
            if not runs or runs[-1][1] != value:  # mergeValues
                runs.append((t, value))
        for index, (t, value) in enumerate(runs):
            end = runs[index + 1][0] if index + 1 < len(runs) else t1
            _, c = mapped(value, mappings)
            fill = c or threshold_colour(value, defaults["thresholds"])
            x0 = name_w + (t - t0) / (t1 - t0) * plot_w
            x1 = name_w + (end - t0) / (t1 - t0) * plot_w
            svg.append(
                f'<rect x="{x0:.1f}" y="{top + row_h * 0.1:.1f}" width="{max(x1 - x0, 1):.1f}" '
                f'height="{row_h * 0.8:.1f}" fill="{fill}" fill-opacity="0.85"/>'
            )
    axis_y = row_h * len(frames) + 14
    step = next(s for s in (5, 10, 15, 30, 60, 120, 300, 600) if plot_w / ((t1 - t0) / s) >= 70)
    tick = math.ceil(t0 / step) * step
    while tick <= t1 and name_w + (tick - t0) / (t1 - t0) * plot_w + 26 <= width:
        svg.append(
            f'<text x="{name_w + (tick - t0) / (t1 - t0) * plot_w:.1f}" y="{axis_y:.0f}" class="ax" '
            f'text-anchor="middle">{_clock(tick)}</text>'
        )
        tick += step
    svg.append("</svg>")
    return "".join(svg) + legend


STYLE = f"""
* {{ box-sizing: border-box; }}
body {{ margin: 0; background: {BACKGROUND}; color: {TEXT}; font-family: {FONT}; font-size: 12px; }}
header {{ display: flex; align-items: center; height: 48px; padding: 0 {PAD}px; border-bottom: 1px solid {BORDER};
  background: {PANEL}; gap: 12px; }}
header .logo {{ width: 22px; height: 22px; border-radius: 5px; background: linear-gradient(135deg, #F05A28, #FBCA0A);
  }}
header .crumbs {{ font-size: 14px; color: {MUTED}; }} header .crumbs b {{ color: {TEXT}; font-weight: 500; }}
header .spacer {{ flex: 1; }}
header .note {{ color: {MUTED}; font-size: 12px; }}
.btn {{ border: 1px solid {BORDER}; border-radius: 2px; padding: 5px 10px; background: #22252b; color: {TEXT};
  font-size: 12px; white-space: nowrap; }}
.vars {{ display: flex; gap: 8px; padding: 12px {PAD}px 0; }}
.var {{ display: flex; border: 1px solid {BORDER}; border-radius: 2px; font-size: 12px; }}
.var span {{ padding: 6px 8px; }} .var .k {{ background: #22252b; color: {TEXT}; border-right: 1px solid {BORDER};
  font-weight: 500; }}
.var .v {{ color: {TEXT}; }} .var .v:after {{ content: " \\2304"; color: {MUTED}; }}
main {{ position: relative; margin: {PAD}px; }}
.panel {{ position: absolute; background: {PANEL}; border: 1px solid {BORDER}; border-radius: 2px;
  overflow: hidden; }}
.ph {{ height: {HEADER}px; line-height: {HEADER}px; padding: 0 8px; font-size: 14px; font-weight: 500;
  color: {TEXT}; white-space: nowrap; overflow: hidden; text-overflow: ellipsis; }}
.pb {{ position: absolute; left: 8px; right: 8px; top: {HEADER}px; bottom: 8px; }}
.row {{ position: absolute; font-size: 16px; font-weight: 500; color: {TEXT}; display: flex; align-items: center;
  gap: 8px; }}
.row:before {{ content: "\\2304"; color: {MUTED}; font-size: 14px; position: relative; top: -3px; }}
.ax {{ fill: {MUTED}; font-size: 11px; font-family: {FONT}; }}
.legend {{ display: flex; flex-wrap: wrap; gap: 2px 16px; padding-top: 4px; max-height: 60px; overflow: hidden; }}
.li {{ display: inline-flex; align-items: center; gap: 6px; color: {TEXT}; white-space: nowrap; }}
.li i {{ display: inline-block; width: 14px; height: 4px; border-radius: 2px; }}
.stat {{ display: flex; height: 100%; }}
.cell {{ position: relative; display: flex; flex-direction: column; align-items: center; justify-content: center;
  height: 100%; }}
.big {{ font-weight: 500; line-height: 1.1; position: relative; z-index: 1; }}
.sname {{ font-size: 14px; color: {TEXT}; margin-bottom: 4px; position: relative; z-index: 1; }}
.spark {{ position: absolute; bottom: 0; left: 0; }}
.bars {{ display: flex; flex-direction: column; justify-content: space-around; height: 100%; }}
.bg {{ display: flex; align-items: center; }}
.bgn {{ color: {TEXT}; font-size: 13px; white-space: nowrap; overflow: hidden; text-overflow: ellipsis;
  padding-right: 10px; text-align: right; }}
.bgt {{ display: flex; background: rgba(204, 204, 220, 0.06); border-radius: 2px; overflow: hidden; }}
.bgt span {{ display: block; height: 100%; border-radius: 2px; }}
.bgv {{ text-align: right; font-weight: 500; padding-left: 8px; white-space: nowrap; }}
.nodata {{ display: flex; height: 60%; align-items: center; justify-content: center; color: {MUTED};
  font-size: 14px; }}
"""


def render_page(dashboard: Mapping[str, Any], scrapes: Sequence[Scrape], rate_interval_s: int = 10) -> str:
    """The dashboard as a static HTML page drawn from ``scrapes`` (at least two)."""
    evaluator = Evaluator(scrapes)
    variables = variables_for(evaluator.scrapes, rate_interval_s)
    span = (evaluator.scrapes[0].at, evaluator.scrapes[-1].at)
    inner = PAGE_WIDTH - 2 * PAD
    column = (inner - 23 * GAP) / 24
    boxes = []
    bottom = 0.0
    for panel in dashboard["panels"]:
        grid = panel["gridPos"]
        left, top = grid["x"] * (column + GAP), grid["y"] * (CELL + GAP)
        width = grid["w"] * column + (grid["w"] - 1) * GAP
        height = grid["h"] * CELL + (grid["h"] - 1) * GAP
        bottom = max(bottom, top + height)
        if panel["type"] == "row":
            boxes.append(
                f'<div class="row" style="left:{left:.0f}px;top:{top:.0f}px;width:{width:.0f}px;'
                f'height:{height:.0f}px">{esc(panel["title"])}</div>'
            )
            continue
        frames = panel_frames(panel, evaluator, variables)
        body_w, body_h = width - 18, height - HEADER - 10
        background = None
        if panel["type"] == "timeseries":
            body = timeseries(panel, frames, body_w, body_h, span)
        elif panel["type"] == "stat":
            body, background = stat(panel, frames, body_w, body_h)
        elif panel["type"] == "bargauge":
            body = bargauge(panel, frames, body_w, body_h)
        elif panel["type"] == "state-timeline":
            body = state_timeline(panel, frames, body_w, body_h, span)
        else:
            raise ValueError(f"no drawing for panel type {panel['type']!r}")
        fill = (
            f"background:linear-gradient(120deg,{background}d9,{background});border-color:transparent"
            if background
            else ""
        )
        boxes.append(
            f'<section class="panel" style="left:{left:.0f}px;top:{top:.0f}px;width:{width:.0f}px;'
            f'height:{height:.0f}px;{fill}"><div class="ph">{esc(panel["title"])}</div>'
            f'<div class="pb">{body}</div></section>'
        )
    labels = {v["name"]: v.get("label", v["name"]) for v in dashboard["templating"]["list"]}
    shown = {
        "datasource": "Prometheus",
        "tenant": "All",
        "country": "All",
        "channel": "All",
        "provider": "All",
        "window": "1h",
    }
    chips = "".join(
        f'<div class="var"><span class="k">{esc(labels[name])}</span><span class="v">{esc(value)}</span></div>'
        for name, value in shown.items()
        if name in labels
    )
    when = f"{datetime.fromtimestamp(span[0]):%Y-%m-%d %H:%M:%S} to {datetime.fromtimestamp(span[1]):%H:%M:%S}"
    note = (
        f"static render of docs/grafana/verify.json from {len(scrapes)} real /metrics scrapes (docs/grafana/render.py)"
    )
    return (
        f'<!doctype html><html><head><meta charset="utf-8"><title>{esc(dashboard["title"])}</title>'
        f'<style>{STYLE}</style></head><body><header><div class="logo"></div><div class="crumbs">Home '
        f'&rsaquo; Dashboards &rsaquo; <b>{esc(dashboard["title"])}</b></div><div class="spacer"></div>'
        f'<div class="note">{esc(note)}</div><div class="btn">{CLOCK_ICON} {esc(when)}</div>'
        f'<div class="btn">&#8635; {esc(dashboard.get("refresh", ""))}</div></header>'
        f'<div class="vars">{chips}</div><main style="height:{bottom:.0f}px">{"".join(boxes)}</main>'
        "</body></html>"
    )


def screenshot(page_html: str, out: Path, chromium: str = CHROMIUM) -> None:
    """Screenshot ``page_html`` (the whole page) in headless Chromium to ``out``, a PNG."""
    from playwright.sync_api import sync_playwright  # only needed here, and slow to import

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, args=["--headless", "--no-sandbox", "--disable-gpu"])
        try:
            page = browser.new_page(viewport={"width": PAGE_WIDTH, "height": 900})
            page.set_content(page_html, wait_until="load")
            png = page.screenshot(full_page=True)
        finally:
            browser.close()
    # A flat dark theme needs few colours: 256 of them keep the page as it looks (gradients aside, which show a few
    # bands) at a third of the size. Dithering would smooth the bands and make the file larger than the original.
    image = Image.open(io.BytesIO(png)).convert("RGB")
    image.quantize(colors=256, method=Image.Quantize.FASTOCTREE, dither=Image.Dither.NONE).save(out, optimize=True)


# ---------------------------------------------------------------------------------------------------------------
# The workload

WEBHOOK_SECRET = "smsc-handler-secret-0123456789"
METRICS_TOKEN = "metrics-token-0123456789abcdef"
EVENTS_SECRET = "events-secret-0123456789abcdef"
# A realistic Russian text: Cyrillic is UCS-2, 70 characters a part, so this one costs two parts.
RU_TEMPLATE = "Ваш код подтверждения для входа в Пример: {code}. Никому не сообщайте этот код, даже сотрудникам."
COUNTRIES = {"RU": 5, "GB": 3, "US": 3, "DE": 2, "IN": 3, "BR": 2, "NG": 3}
PUMPED = "NG"
# How verifications end, and how often (weights): the code checked (after a wrong one, sometimes), sent back by SMS,
# a call made, a code heard in a voice call or read in Telegram, the code of a fallback chain's next channel checked
# (:data:`CHAINS`); or never called, canceled, undeliverable, abandoned (these expire).
OUTCOMES = {
    "check": 40,
    "wrong_then_check": 14,
    "reply": 10,
    "call": 11,
    "call_unanswered": 3,
    "voice": 6,
    "telegram": 4,
    "telegram_then_sms": 5,
    "undeliverable_then_voice": 3,
    "cancel": 7,
    "undeliverable": 4,
    "abandon": 12,
}
# The channel a start names, for outcomes not on SMS; a chain's outcome names its channels instead.
CHANNELS = {"call": "call", "call_unanswered": "call", "voice": "voice", "telegram": "telegram"}
# Fallback chains: the start's channels. The person never uses the first channel's code (Telegram not read; the SMS
# that SMSC reports undeliverable, or that the sandbox gateway took, not answered) and checks the code the next
# channel brings, after the step's wait or at once after the failure report. Every step names its wait: one without
# gets VERIFY_FALLBACK_AFTER (60 s), more than a challenge TTL under a minute (tests/test_dashboard.py's) allows.
CHAINS: dict[str, list[dict[str, Any]]] = {
    "telegram_then_sms": [{"channel": "telegram", "wait": 1}, {"channel": "sms", "wait": 2}],
    "undeliverable_then_voice": [{"channel": "sms", "wait": 2}, {"channel": "voice", "wait": 2}],
}
# How long a person waits for a chain's next channel to bring the code (the step's wait, and the workers' loop's
# second, and a Redis pause); then they give up, and the verification expires.
STEP_PATIENCE_S = 12.0
# Mobile number ranges: a prefix, then that many random digits (a number that is not valid there is drawn again).
NUMBERS = {
    "RU": ("+7999", 7),
    "GB": ("+4477", 8),
    "US": ("+1201", 7),
    "DE": ("+49151", 8),
    "IN": ("+9198", 8),
    "BR": ("+55119", 8),
    "NG": ("+234803", 7),
}


def server_settings(events_url: str, challenge_ttl: int) -> dict[str, str]:
    """The server's settings for the workload (on top of tests/servers.py's sandbox defaults)."""
    return {
        "VERIFY_SMS_PROVIDERS": "smsc,sandbox",  # SMSC first; the sandbox gateway takes over when it fails
        "VERIFY_SMSC_SECRET": WEBHOOK_SECRET,
        "VERIFY_METRICS_TOKEN": METRICS_TOKEN,
        "VERIFY_EVENTS_URL": events_url,
        "VERIFY_EVENTS_SECRET": EVENTS_SECRET,
        "VERIFY_CHALLENGE_TTL": str(challenge_ttl),
        "VERIFY_RESEND_COOLDOWN": "0",
        "VERIFY_BREAKER_FAILURES": "4",
        "VERIFY_BREAKER_COOLDOWN": "8",
        "VERIFY_HTTP_READ_TIMEOUT": "1",
        "VERIFY_PUMPING_MIN_STARTS": "8",
        "VERIFY_SMS_TEMPLATE_RU": RU_TEMPLATE,
    }


class JitterySmsc(CountingSmsc):
    """SMSC's emulator taking a gateway's time to answer: mostly 40 to 250 ms, now and then more."""

    def __init__(self, seed: int) -> None:
        super().__init__()
        self._rng = random.Random(seed)
        self._lock = threading.Lock()

    def answer(self, request: Request, seen: Seen) -> Response:
        """SMSC's answer, after a gateway's delay."""
        with self._lock:
            delay = self._rng.lognormvariate(math.log(0.09), 0.7)
        time.sleep(min(delay, 0.9))
        return super().answer(request, seen)


class EventsReceiver:
    """The customer's endpoint for events: 200, or 503 while ``down``."""

    def __init__(self) -> None:
        self.down = False
        self.received = 0

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Any:
        """WSGI."""
        self.received += 1
        return Response("", status=503 if self.down else 200)(environ, start_response)


def scrape(server: Server, session: requests.Session | None = None) -> Scrape:
    """``GET /metrics`` with the bearer token, parsed."""
    response = (session or requests).get(
        server.url("/metrics"), headers={"Authorization": f"Bearer {METRICS_TOKEN}"}, timeout=30
    )
    response.raise_for_status()
    return parse_scrape(response.text, time.time())


class Workload:
    """The people, bots and incidents of the run; each scenario is a method, usable on its own."""

    def __init__(self, server: Server, seed: int = 7) -> None:
        self.server = server
        self.rng = random.Random(seed)
        self._lock = threading.Lock()
        self._ips = itertools.count(1)
        self._used: set[str] = set()
        self.answers: Counter[str] = Counter()

    # helpers

    def random(self) -> float:
        """A number in [0, 1) from the run's seeded generator."""
        with self._lock:
            return self.rng.random()

    def number(self, country: str) -> str:
        """A valid mobile number of ``country`` whose prefix (all but the last 4 digits) this run has not used, so
        that the prefix limit stays out of the way."""
        prefix, digits = NUMBERS[country]
        with self._lock:
            for _ in range(10000):
                number = prefix + "".join(self.rng.choice("0123456789") for _ in range(digits))
                parsed = phonenumbers.parse(number)
                if (
                    number[:-4] not in self._used
                    and phonenumbers.is_valid_number(parsed)
                    and phonenumbers.region_code_for_number(parsed) == country
                ):
                    self._used.add(number[:-4])
                    return number
        raise RuntimeError(f"no unused number prefix left in {prefix}")

    def ip(self) -> str:
        """A client IP not used before in this run (sent as X-Forwarded-For)."""
        with self._lock:
            n = next(self._ips)
        return f"10.{n >> 16 & 255}.{n >> 8 & 255}.{n & 255}"

    def post(self, session: requests.Session, path: str, body: Mapping[str, Any], ip: str) -> requests.Response:
        """An API request from client ``ip``."""
        response = session.post(
            self.server.url(path), json=dict(body), headers={**AUTH, "X-Forwarded-For": ip}, timeout=30
        )
        with self._lock:
            self.answers[f"{path.split('/')[-1] if 'check' in path else path} {response.status_code}"] += 1
        return response

    def code(self, session: requests.Session, phone: str, channel: str = "sms", patience: float = 0.0) -> str | None:
        """The code last sent to ``phone`` on ``channel`` (an SMS from SMSC's wire or the sandbox gateway's outbox,
        any other channel from the outbox), waiting up to ``patience`` seconds for one to come."""
        deadline = time.monotonic() + patience
        while True:
            if channel == "sms":
                for delivered in reversed(list(self.server.smsc.delivered)):
                    if delivered.kind == "sms" and delivered.phone.lstrip("+") == phone.lstrip("+"):
                        found = re.findall(r"\d{4,10}", delivered.text)
                        return found[-1] if found else None
            response = session.get(self.server.url("/sandbox/messages"), params={"phone": phone}, timeout=30)
            messages = response.json().get("messages", []) if response.ok else []
            for message in messages:
                if message["channel"] == channel:
                    return str(message["code"])
            if time.monotonic() >= deadline:
                return None
            time.sleep(0.2)

    def callback(self, session: requests.Session, fields: dict[str, str], secret: str = WEBHOOK_SECRET) -> int:
        """An SMSC callback to ``/webhooks/smsc``, signed with ``secret``; returns the status."""
        query, body, content_type = smsc_callback(fields, secret=secret, hash="sha1")
        response = session.post(
            self.server.url("/webhooks/smsc") + (f"?{query}" if query else ""),
            data=body,
            headers={"Content-Type": content_type},
            timeout=30,
        )
        with self._lock:
            self.answers[f"webhook {response.status_code}"] += 1
        return response.status_code

    # scenarios

    def person(self, session: requests.Session, country: str) -> None:
        """Someone verifying their phone, in one of the ways people do; in the pumped country, a bot."""
        with self._lock:
            outcome = "bot" if country == PUMPED else self.rng.choices(list(OUTCOMES), list(OUTCOMES.values()))[0]
        self.verify(session, country, outcome)

    def verify(self, session: requests.Session, country: str, outcome: str) -> None:
        """One verification to a new number of ``country`` that ends in ``outcome`` (a key of :data:`OUTCOMES`, or
        ``"bot"``: started and never looked at again). SMSC reports each SMS it took delivered, or undeliverable."""
        phone, ip = self.number(country), self.ip()
        body: dict[str, Any] = {"phone": phone}
        if outcome in CHAINS:
            body["channels"] = CHAINS[outcome]
        else:
            body["channel"] = CHANNELS.get(outcome, "sms")
        if country == "RU":
            body["locale"] = "ru"
        started = self.post(session, "/v1/verifications", body, ip)
        if started.status_code != 201 or outcome in ("bot", "abandon", "call_unanswered"):
            return
        verification = started.json()
        vid, gateway = verification["id"], verification.get("delivery", {}).get("provider")
        if outcome == "call":
            session.post(self.server.url("/sandbox/calls"), json={"phone": phone}, timeout=30)
            return
        if outcome in ("voice", "telegram") or outcome in CHAINS:
            self.off_sms(session, outcome, phone, vid, gateway, ip)
            return
        if gateway == "smsc":
            report = "20" if outcome == "undeliverable" else "1"
            self.callback(session, {"id": vid, "phone": phone.lstrip("+"), "status": report})
        if outcome == "undeliverable":
            return
        if outcome == "cancel":
            session.delete(
                self.server.url(f"/v1/verifications/{vid}"), headers={**AUTH, "X-Forwarded-For": ip}, timeout=30
            )
            return
        code = self.code(session, phone)
        if code is None:
            return
        if outcome == "wrong_then_check":
            self.post(session, f"/v1/verifications/{vid}/check", {"code": "0" * len(code)}, ip)
        if outcome == "reply":
            self.callback(session, {"phone": phone.lstrip("+"), "mes": code, "to": "79990000000"})
        else:
            self.post(session, f"/v1/verifications/{vid}/check", {"code": code}, ip)

    def off_sms(
        self, session: requests.Session, outcome: str, phone: str, vid: str, gateway: str | None, ip: str
    ) -> None:
        """The rest of a verification started on voice or telegram (the code checked), or on a fallback chain: the
        first channel's code left alone (an SMS that SMSC took is reported undeliverable), the code of the next
        channel checked once it comes."""
        channel = outcome
        if outcome in CHAINS:
            steps = [step["channel"] for step in CHAINS[outcome]]
            if steps[0] == "sms" and gateway == "smsc":
                self.callback(session, {"id": vid, "phone": phone.lstrip("+"), "status": "20"})
            channel = steps[1]
        code = self.code(session, phone, channel, STEP_PATIENCE_S if outcome in CHAINS else 0.0)
        if code is not None:
            self.post(session, f"/v1/verifications/{vid}/check", {"code": code}, ip)

    def captcha_farm(self, session: requests.Session, starts: int = 16) -> None:
        """One IP starting to new numbers: captchas after 3 starts (one answered wrong first), then refused by its IP
        limit (10 an hour), which it keeps trying."""
        ip = self.ip()
        wrong_once = True
        for _ in range(starts):
            body: dict[str, Any] = {"phone": self.number("GB")}
            answer = self.post(session, "/v1/verifications", body, ip)
            while answer.status_code == 428:
                challenge = answer.json()["captcha"]["id"]
                solved = session.get(self.server.url(f"/sandbox/captcha/{challenge}"), timeout=30).json()["answer"]
                guess = "wrong" if wrong_once else solved
                wrong_once = False
                answer = self.post(
                    session, "/v1/verifications", {**body, "captcha": {"id": challenge, "answer": guess}}, ip
                )

    def phone_over_limit(self, session: requests.Session) -> None:
        """One phone started and canceled until its phone limit (3 in 10 minutes) refuses the next start."""
        phone = self.number("DE")
        for _ in range(4):
            ip = self.ip()
            started = self.post(session, "/v1/verifications", {"phone": phone}, ip)
            if started.status_code != 201:
                return
            session.delete(
                self.server.url(f"/v1/verifications/{started.json()['id']}"),
                headers={**AUTH, "X-Forwarded-For": ip},
                timeout=30,
            )

    def forgeries(self, session: requests.Session, count: int = 6) -> None:
        """Callbacks to SMSC's handler signed with the wrong secret."""
        for n in range(count):
            self.callback(session, {"id": f"forged{n}", "phone": "79990000000", "status": "1"}, secret="guessed")

    def guesser(self, session: requests.Session, checks: int = 75) -> None:
        """One IP guessing codes, a new verification every 5 guesses, on past ``check_ip`` (60 a minute)."""
        ip = self.ip()
        vid = ""
        for n in range(checks):
            if n % 5 == 0:
                started = self.post(session, "/v1/verifications", {"phone": self.number("US")}, self.ip())
                if started.status_code != 201:
                    return
                vid = started.json()["id"]
            self.post(session, f"/v1/verifications/{vid}/check", {"code": f"{n:06d}"}, ip)

    def redis_pause(self, seconds: float) -> None:
        """Redis answers no one for ``seconds`` (``CLIENT PAUSE ... ALL``): requests meanwhile time out."""
        client = redis.Redis.from_url(self.server.redis_url)
        try:
            client.client_pause(int(seconds * 1000), all=True)
        finally:
            client.close()


def run(
    server: Server, receiver: EventsReceiver, duration: float, seed: int = 7, threads: int = 3, every: float = 2.0
) -> list[Scrape]:
    """The workload of the module docstring for ``duration`` seconds; returns the scrapes taken meanwhile."""
    workload = Workload(server, seed)
    stop = threading.Event()
    scrapes = [scrape(server)]
    errors: list[BaseException] = []
    countries, weights = list(COUNTRIES), list(COUNTRIES.values())

    def people(index: int) -> None:
        rng = random.Random(seed * 100 + index)
        with requests.Session() as session:
            while not stop.is_set():
                try:
                    workload.person(session, rng.choices(countries, weights)[0])
                except requests.RequestException as err:
                    errors.append(err)
                stop.wait(rng.uniform(0.05, 0.35))

    def scraper() -> None:
        with requests.Session() as session:
            while not stop.wait(every):
                scrapes.append(scrape(server, session))

    started = time.monotonic()
    workers = [threading.Thread(target=people, args=(i,), daemon=True) for i in range(threads)]
    workers.append(threading.Thread(target=scraper, daemon=True))
    for worker in workers:
        worker.start()

    def at(fraction: float) -> None:
        stop.wait(max(0.0, started + fraction * duration - time.monotonic()))

    with requests.Session() as session:
        at(0.20)
        server.smsc.mode = "5xx"
        at(0.30)
        server.smsc.mode = "timeout"
        at(0.42)
        server.smsc.mode = "ok"
        at(0.48)
        workload.captcha_farm(session)
        workload.phone_over_limit(session)
        workload.forgeries(session)
        workload.guesser(session)
        at(0.62)
        receiver.down = True
        at(0.70)
        workload.redis_pause(2.5)
        at(0.76)
        receiver.down = False
        at(1.0)
    stop.set()
    for worker in workers:
        worker.join(60)
    scrapes.append(scrape(server))
    print(
        f"{len(scrapes)} scrapes over {scrapes[-1].at - scrapes[0].at:.0f} s; answers: {dict(workload.answers)}; "
        f"client errors: {len(errors)}"
    )
    return scrapes


def main(argv: Sequence[str] | None = None) -> int:
    """Run the workload, render the page, screenshot it."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--seconds", type=float, default=60.0, help="how long the workload runs (default 60)")
    parser.add_argument("--workers", type=int, default=2, help="gunicorn workers (default 2)")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--out", type=Path, default=SCREENSHOT, help=f"the PNG (default {SCREENSHOT})")
    parser.add_argument("--html", type=Path, help="also write the HTML page here")
    parser.add_argument("--chromium", default=CHROMIUM, help=f"the Chromium binary (default {CHROMIUM})")
    args = parser.parse_args(argv)
    dashboard = json.loads(DASHBOARD.read_text())
    with tempfile.TemporaryDirectory(prefix="verify-dashboard-") as tmp:
        store = EmbeddedRedis(Path(tmp))
        store.start()
        smsc = JitterySmsc(args.seed)
        smsc.start()
        receiver = EventsReceiver()
        try:
            with (
                serving(receiver) as events_base,
                gunicorn_server(
                    store.url,
                    Path(tmp),
                    server_settings(f"{events_base}/events", 20),
                    workers=args.workers,
                    smsc=smsc,
                    name="dashboard",
                ) as server,
            ):
                scrapes = run(server, receiver, args.seconds, args.seed)
        finally:
            smsc.stop()
            store.stop()
    page = render_page(dashboard, scrapes)
    if args.html:
        args.html.write_text(page)
    screenshot(page, args.out, args.chromium)
    print(f"wrote {args.out} ({args.out.stat().st_size // 1024} KB)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
