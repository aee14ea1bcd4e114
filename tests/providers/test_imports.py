"""The arrows hold: ``verify/providers/`` imports nothing above it, and config reaches gateways only through the list.

Imports are read from the source (every one, those under ``TYPE_CHECKING`` included), so a type-only back arrow
fails as well.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "verify"
# The leaf helpers a gateway module may use: each imports no verify module but these.
LEAVES = {"verify.env", "verify.clock", "verify.errors"}


def imported(path: Path) -> set[str]:
    """Every ``verify`` module ``path`` imports (``from verify import env`` counts as ``verify.env``)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names if alias.name.split(".")[0] == "verify"}
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "verify":
            assert node.level == 0, f"{path}: relative import"
            if node.module == "verify":
                found |= {f"verify.{alias.name}" for alias in node.names}
            else:
                found.add(node.module)
    return found


def module_path(module: str) -> Path:
    """The source file of a ``verify`` module."""
    base = PACKAGE.parent.joinpath(*module.split("."))
    return base / "__init__.py" if base.is_dir() else base.with_suffix(".py")


@pytest.mark.parametrize("path", sorted(PACKAGE.joinpath("providers").glob("*.py")), ids=lambda p: p.name)
def test_a_provider_module_imports_nothing_above_providers(path: Path) -> None:
    above = {m for m in imported(path) if not m.startswith("verify.providers") and m not in LEAVES}
    assert above == set(), f"{path.name} imports {sorted(above)}"


@pytest.mark.parametrize("leaf", sorted(LEAVES))
def test_the_leaves_import_only_leaves(leaf: str) -> None:
    assert imported(module_path(leaf)) <= LEAVES


def test_config_reaches_the_gateways_only_through_the_list() -> None:
    modules = imported(PACKAGE / "config.py")
    assert "verify.gateways" in modules
    assert {m for m in modules if m.startswith("verify.providers")} == set()
    listed = imported(PACKAGE / "gateways.py")
    assert listed and all(m.startswith("verify.providers") for m in listed)  # config -> gateways -> providers


@pytest.mark.parametrize("path", sorted(PACKAGE.joinpath("providers").glob("*_webhooks.py")), ids=lambda p: p.name)
def test_a_webhooks_module_never_imports_its_gateway_module(path: Path) -> None:
    """``<name>.py`` imports ``<name>_webhooks.py`` for its declaration, never the other way round (no cycle)."""
    gateway = "verify.providers." + path.stem.removesuffix("_webhooks")
    assert gateway not in imported(path), f"{path.name} imports {gateway}"
    assert f"verify.providers.{path.stem}" in imported(module_path(gateway))
