"""What calling Telegram's ``checkSendAbility`` before every send would cost (issue 20 §2; telegram.md §5).

Sends ``--sends`` codes through the real provider (``verify.providers.telegram``, our HTTP session) to the local
Gateway API emulator, once as ``verify`` does (``sendVerificationMessage`` alone) and once checking first
(``checkSendAbility``, then the send with its ``request_id``), alternating, and prints each way's time per start
(p50, p95) and requests per start. The emulator answers on loopback at once: the difference is the floor of what
the check adds, our side's work for one more HTTPS request; against the real API each check adds a round trip to
``gatewayapi.telegram.org`` on top, which this machine cannot reach.

    .venv/bin/python -m bench.telegram_check [--sends 400]
"""

from __future__ import annotations

import argparse
import statistics
import time
from typing import Any

from tests.providers.telegram_emulator import TOKEN, TelegramEmulator
from verify.providers.base import Http, SmsMessage
from verify.providers.telegram import TelegramProvider, TelegramSettings


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sends", type=int, default=400)
    sends = parser.parse_args().sends
    emulator = TelegramEmulator()
    emulator.balance = 1e9  # the emulator's account, funded for the run (its default pays for 1,000 messages)
    emulator.start()
    try:
        provider = TelegramProvider(TelegramSettings(tokens=(TOKEN,), url=emulator.url), Http(3.0, 10.0), None)
        timings: dict[str, list[float]] = {"send": [], "check, then send": []}
        for n in range(2 * sends + 20):
            phone = f"+7999{n:07d}"
            message = SmsMessage(phone, "", "123456", "", "telegram", 900)
            checking = n % 2 == 1
            started = time.perf_counter()
            if checking:
                status: Any = provider._call("checkSendAbility", {"phone_number": phone})
                assert status.get("request_id"), status
            provider.send_sms(message)
            if n >= 20:  # the first ones warm the connection pool up
                timings["check, then send" if checking else "send"].append((time.perf_counter() - started) * 1000)
        requests = len(emulator.requests)
    finally:
        emulator.stop()
    for way, ms in timings.items():
        p95 = statistics.quantiles(ms, n=20)[18]
        print(f"{way:>17}: p50 {statistics.median(ms):.2f} ms, p95 {p95:.2f} ms per start ({len(ms)} starts)")
    print(f"requests to the emulator: {requests} for {2 * sends + 20} starts, half of them checked first")


if __name__ == "__main__":
    main()
