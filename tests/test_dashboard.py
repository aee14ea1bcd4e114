"""The Grafana dashboard (docs/grafana/verify.json) is a valid dashboard over metrics a real ``/metrics`` serves.

The first tests read the file alone: its structure, a layout without overlaps, a datasource that imports anywhere,
a tenant variable that filters every query on a tenant's metric, and PromQL that the renderer
(docs/grafana/render.py) can evaluate. The others start the Procfile's gunicorn, drive
every kind of traffic the dashboard shows (the renderer's own scenarios: each way a verification ends, on each
channel and through fallback chains, an SMSC outage, captchas, a phone over its limit, forged callbacks, a Redis
pause, customer events), scrape ``/metrics`` with the bearer token, and check that every metric a query names is a
family of that scrape (prometheus_client's parser), and that every panel finds a series in it.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests
from prometheus_client import CollectorRegistry
from prometheus_client.metrics_core import Metric
from prometheus_client.parser import text_string_to_metric_families

from docs.grafana import render
from tests.conftest import serving
from tests.servers import AUTH, ROOT, Server, gunicorn_server
from verify.embedded import EmbeddedRedis
from verify.metrics import TENANTED_STATE, Metrics, Tenanted

DASHBOARD_FILE = ROOT / "docs" / "grafana" / "verify.json"
GRID_WIDTH = 24
# How long to wait for what the workers do on their own (expiries, event deliveries) to show in a scrape. A bound,
# not a measurement: the test stops polling as soon as everything is there.
SETTLE_S = 30.0
CHALLENGE_TTL_S = 3  # short, so an abandoned verification expires during the test
METRIC = re.compile(r"\bverify_[a-z_]+\b")
HISTOGRAM_SUFFIXES = ("_bucket", "_sum", "_count")


def dashboard() -> dict[str, Any]:
    """The dashboard, parsed."""
    parsed: dict[str, Any] = json.loads(DASHBOARD_FILE.read_text())
    return parsed


def data_panels() -> list[dict[str, Any]]:
    """Every panel but the rows (a row only heads a section: it has no query)."""
    return [panel for panel in dashboard()["panels"] if panel["type"] != "row"]


def queries() -> list[str]:
    """Every PromQL expression: the panels' targets and the template variables' queries."""
    exprs = [target["expr"] for panel in data_panels() for target in panel["targets"]]
    exprs += [variable["definition"] for variable in dashboard()["templating"]["list"] if variable["type"] == "query"]
    return exprs


def tenant_families() -> set[str]:
    """The metric families labelled ``tenant``: those of a tenant's work (verify/metrics.py)."""
    metrics = Metrics(CollectorRegistry())
    counted = {
        family.name
        for value in vars(metrics).values()
        if isinstance(value, Tenanted)
        for family in value.family.describe()
    }
    return counted | TENANTED_STATE  # and each tenant's breakers, read from Redis at a scrape


def family_name(name: str) -> str:
    """The family a sample name a query names belongs to: ``x_total``, ``x_bucket``, ``x_sum``, ``x_count`` to
    ``x``."""
    return next((name.removesuffix(s) for s in ("_total", *HISTOGRAM_SUFFIXES) if name.endswith(s)), name)


# the file alone


def test_the_file_is_a_dashboard() -> None:
    board = dashboard()
    assert board["title"] and board["uid"] and board["panels"]
    assert isinstance(board["schemaVersion"], int) and board["schemaVersion"] >= 36
    ids = [panel["id"] for panel in board["panels"]]
    assert len(ids) == len(set(ids)), f"panel ids repeat: {sorted(ids)}"
    for panel in board["panels"]:
        assert panel["type"] and panel["title"], panel
        grid = panel["gridPos"]
        assert {"x", "y", "w", "h"} <= set(grid) and all(isinstance(grid[k], int) for k in "xywh"), panel["title"]
        assert grid["x"] >= 0 and grid["y"] >= 0 and grid["w"] > 0 and grid["h"] > 0, panel["title"]
        assert grid["x"] + grid["w"] <= GRID_WIDTH, f"{panel['title']} is wider than the grid"
        if panel["type"] == "row":
            assert grid["w"] == GRID_WIDTH and grid["h"] == 1 and not panel.get("targets"), panel["title"]
    for panel in data_panels():
        assert panel["targets"], f"{panel['title']} has no query"
        for target in panel["targets"]:
            assert target["expr"].strip(), f"{panel['title']} has a target without expr"


def test_no_two_panels_overlap() -> None:
    placed: list[tuple[str, set[tuple[int, int]]]] = []
    for panel in dashboard()["panels"]:
        grid = panel["gridPos"]
        cells = {
            (x, y) for x in range(grid["x"], grid["x"] + grid["w"]) for y in range(grid["y"], grid["y"] + grid["h"])
        }
        for title, taken in placed:
            assert not cells & taken, f"{panel['title']} overlaps {title}"
        placed.append((panel["title"], cells))


def test_it_imports_anywhere_through_a_datasource_variable() -> None:
    """No datasource uid of the machine it was made on: every query goes to the ``$datasource`` the viewer picks."""
    variables = {v["name"]: v for v in dashboard()["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource" and variables["datasource"]["query"] == "prometheus"
    for name in ("tenant", "country", "channel"):
        assert variables[name]["type"] == "query" and variables[name]["includeAll"], name
    for panel in data_panels():
        assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}, panel["title"]
        for target in panel["targets"]:
            assert target.get("datasource", panel["datasource"]) == panel["datasource"], panel["title"]


def test_a_tenant_variable_filters_every_query_on_a_tenants_metric() -> None:
    """``$tenant`` (any of the tenants the scrapes have, All by default) narrows every selector of a metric labelled
    ``tenant``; the deployment's metrics (HTTP, Redis, webhooks) have no such label to filter by."""
    variable = next(v for v in dashboard()["templating"]["list"] if v["name"] == "tenant")
    assert variable["type"] == "query" and variable["datasource"] == {"type": "prometheus", "uid": "${datasource}"}
    query = "label_values(verify_verifications_started_total, tenant)"
    assert variable["definition"] == variable["query"]["query"] == query
    assert variable["multi"] and variable["includeAll"] and variable["allValue"] == ".*"
    assert variable["current"]["value"] == ["$__all"]
    tenanted = tenant_families()
    assert {"verify_verifications_started", "verify_sms_parts", "verify_events"} <= tenanted
    assert not tenanted & {"verify_http_requests", "verify_webhooks", "verify_redis_errors"}
    picked = "picked-tenants"
    variables = {**render.variables_for([render.Scrape(0.0, {}), render.Scrape(60.0, {})], 10), "tenant": picked}
    filtered = set()
    for panel in data_panels():
        for target in panel["targets"]:
            for selector in render.selectors(render.parse(render.expand(target["expr"], variables))):
                family = family_name(selector.name)
                if family in tenanted:
                    assert ("tenant", "=~", picked) in selector.matchers, (panel["title"], selector.name)
                    filtered.add(family)
                else:
                    assert all(label != "tenant" for label, _, _ in selector.matchers), (panel["title"], selector.name)
    assert filtered == tenanted & {family_name(name) for expr in queries() for name in METRIC.findall(expr)}


def test_every_query_is_promql_the_renderer_evaluates() -> None:
    """The screenshot is drawn from these very queries: each one parses, its variables filled in as Grafana would."""
    scrape = render.Scrape(0.0, {})
    variables = render.variables_for([scrape, render.Scrape(60.0, {})], 10)
    for panel in data_panels():
        for target in panel["targets"]:
            node = render.parse(render.expand(target["expr"], variables))
            assert {s.name for s in render.selectors(node)} == set(METRIC.findall(target["expr"])), target["expr"]


def test_headline_units() -> None:
    """Conversion is a ratio shown in percent, latencies in seconds, request rates per second."""
    units = {panel["title"]: panel["fieldConfig"]["defaults"].get("unit") for panel in data_panels()}
    assert units["Conversion"] == "percentunit" and units["Gateway p95 latency"] == "s"
    assert units["Requests by route"] == "reqps" and units["Latency p95 by route"] == "s"


# a real scrape


@dataclass(frozen=True)
class Scraped:
    """The text of the first scrape (before any traffic) and of the last one."""

    first: str
    last: str
    first_at: float
    last_at: float


def family_of(name: str, families: dict[str, Metric]) -> Metric | None:
    """The family a query's metric name belongs to: ``x_total`` to counter ``x``, ``x_bucket``/``_sum``/``_count``
    to histogram ``x``, any other name to itself (a gauge)."""
    for suffix in HISTOGRAM_SUFFIXES:
        family = families.get(name.removesuffix(suffix))
        if name.endswith(suffix) and family is not None and family.type == "histogram":
            return family
    family = families.get(name.removesuffix("_total"))
    if name.endswith("_total") and family is not None and family.type == "counter":
        return family
    family = families.get(name)
    return family if family is not None and family.type in ("gauge", "unknown") else None


def missing_metrics(text: str) -> list[str]:
    """The metric names the dashboard queries that ``text`` has no family (or no sample) for."""
    families = {family.name: family for family in text_string_to_metric_families(text)}
    missing = []
    for name in sorted({name for expr in queries() for name in METRIC.findall(expr)}):
        family = family_of(name, families)
        if family is None or not any(sample.name == name for sample in family.samples):
            missing.append(name)
    return missing


def get_metrics(server: Server) -> str:
    """``GET /metrics`` with the bearer token."""
    response = requests.get(
        server.url("/metrics"), headers={"Authorization": f"Bearer {render.METRICS_TOKEN}"}, timeout=30
    )
    assert response.status_code == 200, response.text
    return response.text


@pytest.fixture(scope="module")
def scraped(redis_server: EmbeddedRedis, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Scraped]:
    """The renderer's scenarios, once each, against the Procfile's gunicorn (2 workers); the scrapes around them."""
    redis_url = redis_server.url
    receiver = render.EventsReceiver()
    with (
        serving(receiver) as events_base,
        gunicorn_server(
            redis_url,
            Path(tmp_path_factory.mktemp("dashboard")),
            render.server_settings(f"{events_base}/events", CHALLENGE_TTL_S),
            workers=2,
        ) as server,
    ):
        server.reset()
        first_at, first = time.time(), get_metrics(server)
        workload = render.Workload(server, seed=3)
        with requests.Session() as session:
            for outcome in render.OUTCOMES:
                workload.verify(session, "GB", outcome)
            workload.verify(session, "RU", "check")  # UCS-2, in two parts
            workload.verify(session, render.PUMPED, "bot")
            server.smsc.mode = "5xx"  # errors, failovers to the sandbox gateway, SMSC's breaker opens
            for _ in range(6):
                workload.verify(session, "US", "check")
            server.smsc.mode = "ok"
            workload.captcha_farm(session, starts=5)
            workload.phone_over_limit(session)
            workload.forgeries(session, count=2)
            workload.redis_pause(3.0)
            # Needs Redis: times out (2 s), a 503 and a Redis error.
            paused = session.get(
                server.url("/v1/verifications/vf_during_the_pause"),
                headers={**AUTH, "X-Forwarded-For": workload.ip()},
                timeout=30,
            )
            assert paused.status_code in (404, 503), paused.text
        deadline = time.monotonic() + SETTLE_S
        last = get_metrics(server)
        while missing_metrics(last) and time.monotonic() < deadline:
            time.sleep(0.5)
            last = get_metrics(server)
        yield Scraped(first, last, first_at, time.time())


def test_every_metric_the_dashboard_queries_is_in_a_real_scrape(scraped: Scraped) -> None:
    missing = missing_metrics(scraped.last)
    assert not missing, f"the dashboard queries metrics /metrics does not serve: {missing}"


def test_the_metrics_labelled_tenant_in_a_real_scrape_are_a_tenants(scraped: Scraped) -> None:
    """Without a tenants file every tenant's metric says ``tenant="default"`` (what ``$tenant`` lists), and the
    deployment's say no tenant."""
    tenanted = tenant_families()
    seen = set()
    for family in text_string_to_metric_families(scraped.last):
        for sample in family.samples:
            assert ("tenant" in sample.labels) == (family.name in tenanted), (family.name, sample.labels)
            if "tenant" in sample.labels:
                assert sample.labels["tenant"] == "default", sample
                seen.add(family.name)
    assert "verify_verifications_started" in seen


def test_every_panel_finds_a_series_in_the_scrape(scraped: Scraped) -> None:
    """The queries' label names and values match what the app records (a typo in ``result="rejected"`` would
    leave a panel empty), and the page draws."""
    scrapes = [render.parse_scrape(scraped.first, scraped.first_at), render.parse_scrape(scraped.last, scraped.last_at)]
    evaluator = render.Evaluator(scrapes)
    variables = render.variables_for(scrapes, 10)
    empty = [panel["title"] for panel in data_panels() if not render.panel_frames(panel, evaluator, variables)]
    assert not empty, f"panels without a series after the workload: {empty}"
    page = render.render_page(dashboard(), scrapes)
    assert all(panel["title"] in page for panel in data_panels())


def panel_labels(scraped: Scraped, title: str) -> set[render.Labels]:
    """The label sets of the series the panel titled ``title`` draws from the first and the last scrape."""
    scrapes = [render.parse_scrape(scraped.first, scraped.first_at), render.parse_scrape(scraped.last, scraped.last_at)]
    (panel,) = [panel for panel in data_panels() if panel["title"] == title]
    frames = render.panel_frames(panel, render.Evaluator(scrapes), render.variables_for(scrapes, 10))
    return {frame.labels for frame in frames}


def test_conversion_by_channel_shows_every_channel(scraped: Scraped) -> None:
    """Voice and Telegram verifications (started on their own, or reached through a fallback chain) have their line
    next to SMS and call."""
    channels = {dict(labels).get("channel") for labels in panel_labels(scraped, "Conversion by channel")}
    assert channels == {"sms", "call", "voice", "telegram"}


def test_conversion_by_channel_is_a_rate(scraped: Scraped) -> None:
    """A chain is counted where it started, approved wherever it was (verify's lifecycle labels): no channel's
    conversion goes over 100% for approvals its chains brought from another channel."""
    scrapes = [render.parse_scrape(scraped.first, scraped.first_at), render.parse_scrape(scraped.last, scraped.last_at)]
    (panel,) = [panel for panel in data_panels() if panel["title"] == "Conversion by channel"]
    frames = render.panel_frames(panel, render.Evaluator(scrapes), render.variables_for(scrapes, 10))
    values = {dict(frame.labels).get("channel"): [v for _, v in frame.points] for frame in frames}
    assert values and all(0 <= v <= 1 for points in values.values() for v in points), values


def test_fallback_steps_show_each_move_and_why(scraped: Scraped) -> None:
    """The renderer's two chains: Telegram unread, the SMS after its wait; an SMS that SMSC reports undeliverable,
    the voice call at once."""
    steps = {
        (have.get("from_channel"), have.get("to_channel"), have.get("reason"))
        for have in map(dict, panel_labels(scraped, "Fallback steps"))
    }
    assert steps == {("telegram", "sms", "wait"), ("sms", "voice", "failed")}
