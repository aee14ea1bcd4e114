"""Parametrizes each provider's contract tests over its documented errors."""

from __future__ import annotations

import pytest


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "error_case" in metafunc.fixturenames and metafunc.cls is not None:
        cases = metafunc.cls.ERROR_CASES
        metafunc.parametrize("error_case", cases, ids=[c.name for c in cases])
