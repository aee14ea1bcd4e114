"""The version of the installed distribution, in a module of its own: whoever needs it imports it from here, never
from the package's ``__init__`` (which loads the app lazily)."""

from __future__ import annotations

from functools import cache
from importlib import metadata


@cache
def version() -> str:
    """The installed distribution's version (``pip show verify``), as ``verify --version``, ``/healthz`` and
    ``verify_build_info`` report it; ``0+unknown`` when run from a tree that was never installed, since a health
    check should not fail over it."""
    try:
        return metadata.version("verify")
    except metadata.PackageNotFoundError:
        return "0+unknown"
