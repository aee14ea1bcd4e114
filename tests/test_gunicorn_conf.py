"""gunicorn.conf.py, what the Procfile serves with: workers follow the CPUs unless WEB_CONCURRENCY says otherwise; a
tenants file is copied for the workers only once it has stopped changing (tests/web/test_tenants_served.py serves
it)."""

from __future__ import annotations

import os
import runpy
import threading
import time
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


def test_a_tenants_file_is_copied_once_it_stopped_changing(tmp_path: Path) -> None:
    settled = runpy.run_path(str(CONF))["_settled"]
    path = tmp_path / "tenants.toml"
    path.write_text('[tenants.shop]\nbrand = "S')  # cut short: still being written

    def writer() -> None:
        time.sleep(0.05)
        path.write_text('[tenants.shop]\nbrand = "Shop"\n')

    thread = threading.Thread(target=writer)
    thread.start()
    text, problem = settled(path, tries=10, pause=0.5)
    thread.join()
    assert (text, problem) == (b'[tenants.shop]\nbrand = "Shop"\n', "")
    assert settled(tmp_path / "missing.toml")[1].startswith("VERIFY_TENANTS_FILE cannot be read")


def test_a_tenants_file_that_never_settles_is_not_copied(tmp_path: Path) -> None:
    settled = runpy.run_path(str(CONF))["_settled"]
    path = tmp_path / "tenants.toml"
    path.write_text("0")
    stop = threading.Event()

    def writer() -> None:
        count = 0
        while not stop.is_set():
            count += 1
            path.write_text(str(count))
            time.sleep(0.01)

    thread = threading.Thread(target=writer)
    thread.start()
    try:
        text, problem = settled(path, tries=3, pause=0.1)
    finally:
        stop.set()
        thread.join()
    assert text == b"" and "kept changing" in problem
