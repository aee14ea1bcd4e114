"""``verify dev`` (what ``make run`` runs) serves the README's walk-through exactly as written."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from importlib import metadata
from pathlib import Path

import pytest
import requests

from tests.redis_servers import EmbeddedCluster
from verify import create_app
from verify.cli import check_config, main
from verify.config import Settings
from verify.embedded import EmbeddedRedis, free_port
from verify.errors import ConfigError

README = Path(__file__).resolve().parent.parent / "README.md"


def walkthrough() -> str:
    """The shell snippets between the README's walkthrough markers, in order."""
    text = README.read_text(encoding="utf-8")
    section = text.split("<!-- walkthrough -->", 1)[1].split("<!-- /walkthrough -->", 1)[0]
    return "\n".join(re.findall(r"```sh\n(.*?)```", section, flags=re.DOTALL))


class DevServer:
    def __init__(self, process: subprocess.Popen[bytes], base: str, cwd: Path) -> None:
        self.process, self.base, self.cwd = process, base, cwd


@pytest.fixture(scope="module")
def dev_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DevServer]:
    """``verify dev`` in an empty directory with no VERIFY_* settings, as on a fresh clone."""
    cwd = Path(tmp_path_factory.mktemp("clone"))
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("VERIFY_")}
    log = cwd / "dev.log"
    with log.open("w") as sink:
        process = subprocess.Popen(
            [sys.executable, "-m", "verify.cli", "dev", "--port", str(port), "--workers", "1"],
            cwd=cwd,
            env=env,
            stdout=sink,
            stderr=subprocess.STDOUT,
        )
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    try:
        while True:
            try:
                if requests.get(f"{base}/healthz", timeout=1).status_code == 200:
                    break
            except (requests.ConnectionError, requests.Timeout):  # a worker still booting on a busy machine
                pass
            if process.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"verify dev did not come up:\n{log.read_text()}")
            time.sleep(0.1)
        yield DevServer(process, base, cwd)
    finally:  # whatever failed: never leave verify dev (and its redis-server) running
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def test_dev_prints_a_working_key_and_keeps_it(dev_server: DevServer) -> None:
    key = json.loads((dev_server.cwd / ".dev" / "secrets.json").read_text())["api_key"]
    banner = (dev_server.cwd / "dev.log").read_text()
    assert f"API key: {key}" in banner and f"Authorization: Bearer {key}" in banner
    response = requests.post(
        f"{dev_server.base}/v1/verifications",
        json={"phone": "+79990000001"},
        headers={"Authorization": f"Bearer {key}"},
        timeout=10,
    )
    assert response.status_code == 201
    assert oct((dev_server.cwd / ".dev" / "secrets.json").stat().st_mode & 0o777) == "0o600"
    assert (dev_server.cwd / ".dev" / "redis").is_dir()


def test_the_readme_walkthrough_works_as_written(dev_server: DevServer) -> None:
    script = walkthrough()
    assert "BASE=http://127.0.0.1:8000" in script and "/sandbox/calls" in script
    script = script.replace("127.0.0.1:8000", dev_server.base.removeprefix("http://"))
    result = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", script], cwd=dev_server.cwd, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stdout + result.stderr
    out = result.stdout
    assert '"status":"pending"' in out and '"phone":"+79991234567"' in out
    assert '"completed_via":"code"' in out and '"valid":true' in out
    assert out.count('"completed_via":"call"') == 2  # the sandbox call's answer, then the poll
    assert '"token":"' in out.rsplit("\n", 2)[-2]


def test_dev_stops_its_redis_on_exit(dev_server: DevServer) -> None:
    redis_pid = int(
        subprocess.run(
            ["pgrep", "-P", str(dev_server.process.pid), "-f", "redis-server"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.split()[0]
    )
    dev_server.process.send_signal(signal.SIGTERM)
    assert dev_server.process.wait(timeout=30) == 0
    with pytest.raises(ProcessLookupError):
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            os.kill(redis_pid, 0)
            time.sleep(0.05)


CONFIG_ENV = {
    "VERIFY_API_KEYS": "api-key-0123456789-secret",
    "VERIFY_SECRET_KEY": "secret-key-0123456789-x",
    "VERIFY_REDIS_URL": "redis://user:redis-password@127.0.0.1:1/0",
    "VERIFY_SMS_PROVIDERS": "smsc,zoomconnect,d7",
    "VERIFY_CALL_PROVIDER": "smsc",
    "VERIFY_SMSC_LOGIN": "acme",
    "VERIFY_SMSC_PASSWORD": "smsc-password-x",
    "VERIFY_SMSC_SECRET": "smsc-hook-x",
    "VERIFY_ZOOMCONNECT_EMAIL": "ops@example.com",
    "VERIFY_ZOOMCONNECT_TOKEN": "zoom-token-x",
    "VERIFY_D7_TOKEN": "d7-token-x",
}


def test_check_config_prints_settings_with_secrets_masked(capsys: pytest.CaptureFixture[str]) -> None:
    assert check_config(live=False, env=CONFIG_ENV) == 0
    out = capsys.readouterr().out
    for secret in (
        "api-key-0123456789-secret",
        "secret-key-0123456789-x",
        "redis-password",
        "smsc-password-x",
        "smsc-hook-x",
        "zoom-token-x",
        "d7-token-x",
    ):
        assert secret not in out
    assert "redis://user:****@127.0.0.1:1/0" in out
    assert re.search(r"VERIFY_SMSC_PASSWORD\s+set \(masked\)", out)
    assert re.search(r"VERIFY_SMSC_LOGIN\s+acme", out) and re.search(r"VERIFY_ZOOMCONNECT_EMAIL\s+ops@example.com", out)
    assert "SMS failover chain: smsc -> zoomconnect -> d7" in out and "call: smsc" in out
    assert re.search(r"VERIFY_REDIS_MIN_REPLICAS\s+0\n", out)


def test_check_config_lists_every_template_with_its_encoding_and_parts(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    (tmp_path / "sms.nl.txt").write_text("{code} is uw {brand}-code. " + "x" * 140, encoding="utf-8")
    env = {
        **CONFIG_ENV,
        "VERIFY_TEMPLATES_DIR": str(tmp_path),
        "VERIFY_BRAND": "Acme",
        "VERIFY_VOICE_PROVIDERS": "smsc",
    }
    assert check_config(live=False, env=env) == 0
    out = capsys.readouterr().out
    assert "voice failover chain: smsc" in out and "Templates (brand 'Acme', 15 min, a 6-digit code)" in out
    assert "  sms.en: GSM-7, 1 part: {code} is your {brand} code. It expires in {minutes} min.\n" in out
    assert "  sms.ru: UCS-2, 1 part: {code} — ваш код {brand}. Действует {minutes} мин.\n" in out
    assert "  sms.nl: GSM-7, 2 parts: {code} is uw {brand}-code. " in out  # the operator's, and what it costs
    assert "  voice.en: spoken: Your {brand} code is {code}. Again: {code}.\n" in out
    assert len(re.findall(r"^  (sms|voice)\.", out, re.MULTILINE)) == 16 * 2 + 1


def test_check_config_flags_crc32_for_smsc_callbacks(capsys: pytest.CaptureFixture[str]) -> None:
    assert check_config(live=False, env=CONFIG_ENV) == 0
    assert "WARNING" not in capsys.readouterr().out
    assert check_config(live=False, env={**CONFIG_ENV, "VERIFY_SMSC_HASH": "sha1,crc32"}) == 0
    out = capsys.readouterr().out
    assert re.search(r"VERIFY_SMSC_HASH\s+sha1,crc32", out)
    assert re.search(r"WARNING: VERIFY_SMSC_HASH lists crc32: .* not a MAC", out)


@pytest.mark.parametrize(
    ("drop", "variable"),
    [
        ("VERIFY_ZOOMCONNECT_TOKEN", "VERIFY_ZOOMCONNECT_TOKEN"),
        ("VERIFY_SMSC_PASSWORD", "VERIFY_SMSC_PASSWORD"),
        ("VERIFY_D7_TOKEN", "VERIFY_D7_TOKEN"),
        ("VERIFY_SMSC_SECRET", "VERIFY_SMSC_SECRET"),
        ("VERIFY_API_KEYS", "VERIFY_API_KEYS"),
    ],
)
def test_check_config_names_the_missing_variable(capsys: pytest.CaptureFixture[str], drop: str, variable: str) -> None:
    env = {k: v for k, v in CONFIG_ENV.items() if k != drop}
    assert check_config(live=False, env=env) == 2
    assert capsys.readouterr().err.startswith(f"configuration error: {variable} ")


@pytest.mark.parametrize("url", ["http://127.0.0.1:6379", "redis+sentinel://h:26379", "redis+cluster://h"])
def test_a_redis_url_of_no_known_form_fails_the_check_and_the_start(
    capsys: pytest.CaptureFixture[str], url: str
) -> None:
    env = {**CONFIG_ENV, "VERIFY_REDIS_URL": url}
    assert check_config(live=False, env=env) == 2
    assert capsys.readouterr().err.startswith("configuration error: VERIFY_REDIS_URL ")
    with pytest.raises(ConfigError, match=r"^VERIFY_REDIS_URL "):
        create_app(Settings.from_env(env), background=False)


def test_the_console_script_exits_non_zero_on_a_bad_configuration() -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("VERIFY_")}
    result = subprocess.run(
        [sys.executable, "-m", "verify.cli", "check-config"], env=env, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 2 and "VERIFY_API_KEYS" in result.stderr


def test_version_prints_the_installed_version_and_needs_no_settings(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in [name for name in os.environ if name.startswith("VERIFY_")]:
        monkeypatch.delenv(name)
    with pytest.raises(SystemExit) as exited:
        main(["--version"])
    assert exited.value.code == 0
    assert capsys.readouterr().out == f"verify {metadata.version('verify')}\n"


SANDBOX_ENV = {
    "VERIFY_API_KEYS": "api-key-0123456789-secret",
    "VERIFY_SECRET_KEY": "secret-key-0123456789-x",
    "VERIFY_SANDBOX": "1",
}


def test_check_config_live_reports_a_single_server(
    redis_server: EmbeddedRedis, capsys: pytest.CaptureFixture[str]
) -> None:
    assert check_config(live=True, env={**SANDBOX_ENV, "VERIFY_REDIS_URL": redis_server.url}) == 0
    out = capsys.readouterr().out
    assert f"Redis\n  server 127.0.0.1:{redis_server.port} (role master)\n" in out
    assert "sandbox: unlimited (sandbox)" in out


def test_check_config_live_reports_the_cluster_it_found(
    redis_cluster: EmbeddedCluster, capsys: pytest.CaptureFixture[str]
) -> None:
    seed = redis_cluster.nodes[0].port  # one seed is enough: the rest are found
    assert check_config(live=True, env={**SANDBOX_ENV, "VERIFY_REDIS_URL": f"redis+cluster://127.0.0.1:{seed}"}) == 0
    out = capsys.readouterr().out
    found = re.findall(r"cluster node 127\.0\.0\.1:(\d+) \(primary, (\d+) slots\)", out)
    assert sorted(int(port) for port, _ in found) == sorted(node.port for node in redis_cluster.nodes)
    assert sum(int(slots) for _, slots in found) == 16384


def test_check_config_live_fails_when_redis_does_not_answer(capsys: pytest.CaptureFixture[str]) -> None:
    port = free_port()
    assert check_config(live=True, env={**SANDBOX_ENV, "VERIFY_REDIS_URL": f"redis://127.0.0.1:{port}/0"}) == 1
    assert "Redis\n  FAILED: ConnectionError" in capsys.readouterr().out
    cluster = f"redis+cluster://127.0.0.1:{port}"
    assert check_config(live=True, env={**SANDBOX_ENV, "VERIFY_REDIS_URL": cluster}) == 2
    assert capsys.readouterr().err.startswith("configuration error: VERIFY_REDIS_URL names a cluster that does not")
