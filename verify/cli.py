"""The ``verify`` console script. ``verify dev`` is what ``make run`` runs."""

from __future__ import annotations

import argparse
import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from verify._version import version
from verify.app import build_gateways
from verify.clock import system_clock
from verify.config import (
    API_KEYS,
    METRICS_DIR,
    MIN_API_KEY_LENGTH,
    REDIS_URL,
    SANDBOX,
    SECRET_KEY,
    SITE_KEYS,
    Settings,
)
from verify.embedded import EmbeddedRedis
from verify.errors import ConfigError, StoreUnavailable
from verify.gateways import GATEWAYS, Gateway
from verify.logs import DEFAULT_LOG_FORMAT, LOG_FORMAT, LOGGER_CLASSES
from verify.providers.base import ProviderError
from verify.sms import Payment, measure, render
from verify.store import Store
from verify.store.connection import parse_url
from verify.tenants import hash_key

DEV_DIR = Path(".dev")
# What check-config shows a payment's templates with.
SAMPLE_PAYMENT = Payment("12.50", "EUR", "Shop Ltd")


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``verify`` command."""
    parser = argparse.ArgumentParser(prog="verify", description=__doc__)
    parser.add_argument("--version", action="version", version=f"%(prog)s {version()}")
    sub = parser.add_subparsers(dest="command", required=True)
    dev = sub.add_parser("dev", help="run the service for development: sandbox gateway, embedded Redis")
    dev.add_argument("--host", default="127.0.0.1")
    dev.add_argument("--port", type=int, default=8000)
    dev.add_argument("--workers", type=int, default=2)
    dev.add_argument("--data-dir", type=Path, default=DEV_DIR)
    check = sub.add_parser(
        "check-config",
        help="print the active settings (secrets masked) and the gateways; exit 2 on a bad configuration",
    )
    check.add_argument(
        "--live", action="store_true", help="also report the Redis topology found and ask each gateway for its balance"
    )
    hashing = sub.add_parser(
        "hash-key", help="print what the tenants file lists for an API key (sha256:<hex>); the key is read from stdin"
    )
    hashing.add_argument("key", nargs="?", help="the key (better piped in: an argument stays in the shell's history)")
    args = parser.parse_args(argv)
    if args.command == "check-config":
        return check_config(live=args.live)
    if args.command == "hash-key":
        key = args.key if args.key is not None else sys.stdin.readline().strip()
        if len(key) < MIN_API_KEY_LENGTH:
            print(f"verify: an API key has at least {MIN_API_KEY_LENGTH} characters", file=sys.stderr)
            return 2
        print(hash_key(key))
        return 0
    return run_dev(args.host, args.port, args.workers, args.data_dir)


def check_config(*, live: bool, env: dict[str, str] | None = None, gateways: Sequence[Gateway[Any]] = GATEWAYS) -> int:
    """Validate the environment's settings (those of ``gateways`` included) and print them; with ``live``, the Redis
    topology found and each gateway's balance.

    Exit status: 0 fine, 1 Redis or a gateway did not answer, 2 a bad configuration (an unreachable cluster or
    sentinel included: the service would not start either).
    """
    try:
        settings = Settings.from_env(env, gateways)
        parse_url(settings.redis_url)  # what the store will make of it
    except ConfigError as err:
        print(f"configuration error: {err}", file=sys.stderr)
        return 2
    width = max(len(name) for name, _ in settings.describe())
    print("Settings")
    for name, value in settings.describe():
        print(f"  {name:<{width}}  {value}")
    print("Gateways")
    print(f"  SMS failover chain: {' -> '.join(settings.sms_providers)}")
    print(f"  call: {settings.call_provider or '(none: the call channel is off)'}")
    print(f"  voice failover chain: {' -> '.join(settings.voice_providers) or '(none: the voice channel is off)'}")
    print(f"Templates (brand {settings.brand!r}, {settings.minutes} min, a {settings.code_length}-digit code)")
    code = "0" * settings.code_length
    for kind, templates in settings.templates().items():
        channel, payment = kind.partition("-")[0], SAMPLE_PAYMENT if kind.endswith("-payment") else None
        for locale, template in sorted(templates.items()):
            size = measure(render(template, channel, code, settings.brand, settings.minutes, payment))
            cost = (
                f"{size.encoding}, {size.parts} part{'s' if size.parts > 1 else ''}" if channel == "sms" else "spoken"
            )
            print(f"  {kind}.{locale}: {cost}{' (paying 12.50 EUR to Shop Ltd)' if payment else ''}: {template}")
    if settings.tenants:
        print(f"Tenants ({settings.tenants_file})")
        for tenant in settings.tenant_list():
            own = tenant.settings
            print(
                f"  {tenant.id}: brand {own.brand!r}, {len(tenant.api_key_hashes)} API key(s), "
                f"{len(own.site_keys)} site key(s), a {own.code_length}-digit code for {own.challenge_ttl} s, "
                f"SMS {' -> '.join(own.sms_providers)}, Redis keys under {own.redis_prefix!r}"
            )
    for warning in settings.warnings():
        print(f"WARNING: {warning}")
    if not live:
        return 0
    try:
        store = Store.from_url(settings.redis_url, settings.redis_prefix, min_replicas=settings.redis_min_replicas)
    except ConfigError as err:
        print(f"configuration error: {err}", file=sys.stderr)
        return 2
    failed = False
    print("Redis")
    try:
        for node in store.topology():
            print(f"  {node}")
    except StoreUnavailable as err:
        failed = True
        print(f"  FAILED: {err}")
    print("Balances")
    for provider in build_gateways(settings, store, system_clock).all:
        try:
            print(f"  {provider.name}: {provider.balance()}")
        except (ProviderError, StoreUnavailable) as err:
            failed = True
            print(f"  {provider.name}: FAILED: {err}")
    return 1 if failed else 0


def dev_secrets(data_dir: Path) -> dict[str, str]:
    """A dev API key and secret key, made once and kept in ``data_dir`` so they survive restarts."""
    path = data_dir / "secrets.json"
    if path.exists():
        stored: dict[str, str] = json.loads(path.read_text())
        return stored
    data_dir.mkdir(parents=True, exist_ok=True)
    made = {"api_key": "dev_" + secrets.token_urlsafe(24), "secret_key": secrets.token_urlsafe(32)}
    path.touch(mode=0o600)
    path.write_text(json.dumps(made))
    return made


def gunicorn_command(
    app: str, host: str, port: int, workers: int, *, access_log: bool, log_format: str = DEFAULT_LOG_FORMAT
) -> list[str]:
    """The argv that serves the WSGI ``app`` (a gunicorn app spec) with gevent workers on ``host:port``.

    ``verify dev`` and ``bench/load.py`` both use it, so the benchmark serves the app as ``verify dev`` does.
    It sets everything on the command line and no config file, so gunicorn reads ``gunicorn.conf.py`` only
    from the current directory; the logger class is one of gunicorn.conf.py's, the one of ``log_format`` (``json``
    or ``text``: give the app's ``Settings.log_format``, so that its lines and gunicorn's agree), so no log line
    holds a secret either way. ``access_log`` adds gunicorn's access log on stdout, besides the app's request lines.
    """
    command = [
        sys.executable,
        "-m",
        "gunicorn",
        app,
        "--bind",
        f"{host}:{port}",
        "--workers",
        str(workers),
        "--worker-class",
        "gevent",
        "--no-control-socket",
        "--logger-class",
        LOGGER_CLASSES[log_format],
    ]
    if access_log:
        command += ["--access-logfile", "-"]
    return command


def run_dev(host: str, port: int, workers: int, data_dir: Path) -> int:
    """Serve with gunicorn in sandbox mode, logging in text unless VERIFY_LOG_FORMAT says otherwise; start an
    embedded Redis unless VERIFY_REDIS_URL is set."""
    env = dict(os.environ)
    made = dev_secrets(data_dir)
    env.setdefault(SANDBOX, "1")
    env.setdefault(LOG_FORMAT, "text")  # read by a person at a terminal; a deployment gets JSON by default
    env.setdefault(API_KEYS, made["api_key"])
    env.setdefault(SECRET_KEY, made["secret_key"])
    # The demo page's site key (/demo), for the addresses this server answers on.
    origins = dict.fromkeys(f"http://{name}:{port}" for name in (host, "127.0.0.1", "localhost"))
    env.setdefault(SITE_KEYS, "pk_demo=" + "|".join(origins))
    if not env.get(METRICS_DIR):  # the workers' metrics add up (gunicorn.conf.py does the same when it is read)
        metrics_dir = data_dir / "metrics"
        shutil.rmtree(metrics_dir, ignore_errors=True)  # an earlier run's samples are not this run's
        metrics_dir.mkdir(parents=True)
        env[METRICS_DIR] = str(metrics_dir)
    embedded = None
    if not env.get(REDIS_URL):
        embedded = EmbeddedRedis(data_dir / "redis", persist=True)
        env[REDIS_URL] = embedded.start()
    try:
        try:
            settings = Settings.from_env(env)
        except ConfigError as err:
            print(f"verify: configuration error: {err}", file=sys.stderr)
            return 2
        key = env[API_KEYS].split(",")[0].strip()
        base = f"http://{host}:{port}"
        print(
            f"""
verify is starting on {base} (sandbox mode: nothing is really sent)
  Redis:   {env[REDIS_URL]}{" (embedded, data in " + str(data_dir / "redis") + ")" if embedded else ""}
  API key: {key}

Open {base}/demo for the whole tour in a browser (the web widget, the sandbox inbox), or try the API:
  curl -s -X POST {base}/v1/verifications -H 'Authorization: Bearer {key}' \\
       -H 'Content-Type: application/json' -d '{{"phone": "+79991234567"}}'
  curl -s '{base}/sandbox/messages?phone=%2B79991234567'
""",
            flush=True,
        )
        # The app's request lines replace gunicorn's access log, as under gunicorn.conf.py.
        command = gunicorn_command(
            "verify:create_app()", host, port, workers, access_log=False, log_format=settings.log_format
        )
        server = subprocess.Popen(command, env=env)  # noqa: S603 - fixed argv, no shell
        signal.signal(signal.SIGTERM, lambda *_: server.terminate())
        try:
            return server.wait()
        except KeyboardInterrupt:
            server.terminate()
            return server.wait()
    finally:
        if embedded is not None:
            embedded.stop()


if __name__ == "__main__":
    sys.exit(main())
