"""gunicorn.conf.py, what the Procfile serves with: workers follow the CPUs unless WEB_CONCURRENCY says otherwise."""

from __future__ import annotations

import os
import runpy
from pathlib import Path

import pytest

CONF = Path(__file__).resolve().parent.parent / "gunicorn.conf.py"


@pytest.fixture(autouse=True)
def _metrics_dir(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """A metrics directory of the test's own: without one, loading the file makes one in /tmp and sets the variable
    for the rest of the session (gunicorn's on_exit, which would remove it, never runs here)."""
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(tmp_path))


def test_workers_default_to_the_cpus_this_process_may_use(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("WEB_CONCURRENCY", raising=False)
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1, 2, 3, 4})  # as on a 5-CPU host
    assert runpy.run_path(str(CONF))["workers"] == 5
    monkeypatch.setenv("WEB_CONCURRENCY", "")  # set but empty, as some platforms leave it: the default
    assert runpy.run_path(str(CONF))["workers"] == 5


def test_web_concurrency_overrides_the_workers(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WEB_CONCURRENCY", "3")
    assert runpy.run_path(str(CONF))["workers"] == 3
