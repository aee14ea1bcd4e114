"""Print how the packages installed in another venv differ from a lock: what `make test-latest` tests.

Usage: ``python tools/lock_diff.py requirements/dev.txt path/to/venv/bin/python``
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

PINNED = re.compile(r"^([A-Za-z0-9._-]+)==([^\s;\\]+)( ;)?")


def normalized(name: str) -> str:
    """A distribution name as PEP 503 compares them."""
    return re.sub(r"[-_.]+", "-", name).lower()


def locked(lock: Path) -> tuple[dict[str, set[str]], set[str]]:
    """Each package of the lock with its pinned versions (a universal lock may pin two, one per Python), and the
    names pinned for some platforms or Pythons only (behind a marker)."""
    pins: dict[str, set[str]] = {}
    marked: set[str] = set()
    for line in lock.read_text(encoding="utf-8").splitlines():
        match = PINNED.match(line)
        if match:
            pins.setdefault(normalized(match[1]), set()).add(match[2])
            if match[3]:
                marked.add(normalized(match[1]))
    return pins, marked


def installed(python: str) -> dict[str, str]:
    """What ``pip list`` says the venv of ``python`` holds, the editable project left out."""
    listed = subprocess.run(  # noqa: S603 - the venv's own interpreter
        [
            python,
            "-m",
            "pip",
            "list",
            "--format",
            "json",
            "--exclude-editable",
            "--disable-pip-version-check",
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return {normalized(row["name"]): row["version"] for row in json.loads(listed)}


def main(argv: list[str]) -> int:
    """Print one line per package whose version is not the lock's, or that only one side has."""
    (pins, marked), have = locked(Path(argv[1])), installed(argv[2])
    have.pop("pip", None)  # the venv's own
    names = sorted(set(have) | (set(pins) - marked))
    rows = [
        f"  {name}: lock {'/'.join(sorted(pins.get(name, {'-'})))}, newest allowed {have.get(name, '-')}"
        for name in names
        if have.get(name) not in pins.get(name, set())
    ]
    print("Versions that differ from the lock:" if rows else "The newest allowed versions are the lock's.")
    print("\n".join(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
