"""The layering of docs/architecture.md, held by walking every import of ``verify/`` (run-time, type-only and
function-local alike): web -> service -> store and gateways -> providers, and no arrow back, no loop between folders.
"""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "verify"

# Bottom first. A module may import its own unit (a folder, or a top-level module) and any unit below it, never one
# above: so no two units can import each other, however far round (config <-> providers was such a loop).
UNITS = (
    "errors",  # the exception tree: imports nothing of ours
    "clock",
    "_version",
    "logs",
    "sms",
    "phone",
    "env",  # how a setting is declared and read
    "tenants",  # the tenants file's shape, what its fields override
    "embedded",  # a redis-server for `verify dev` and the tests
    "providers",  # one module per gateway: maps data; a leaf but for the helpers above
    "gateways",  # THE list of gateways
    "config",  # the settings: walks the gateway list for the gateways' own
    "quotas",  # which quotas a request takes (limit strings, from the settings)
    "store",  # every Redis key and transition
    "metrics",
    "tokens",
    "captcha",
    "failover",
    "events",
    "model",  # what the service answers: a verification's view, a start's result, who asks
    "service",  # the state machine
    "tenancy",  # every tenant's service, and which one a request or an event is for
    "web",  # blueprints, request helpers, the problem renderer, JSON views
    "app",  # the factory: builds everything above
    "cli",
    "__init__",  # create_app and version, loaded lazily
)
BELOW_WEB = UNITS[: UNITS.index("web")]
WEB_STACK = ("flask", "werkzeug")


def unit_of(path: Path) -> str:
    """The unit a file of ``verify/`` belongs to: its folder, or its own name for a top-level module."""
    return path.relative_to(PACKAGE).parts[0].removesuffix(".py")


def module_of(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports(path: Path) -> set[str]:
    """Every module ``path`` imports, absolute (``from verify import env`` is ``verify.env``)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    package = module_of(path) if path.name == "__init__.py" else module_of(path).rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            found.add(base)
            if base == "verify":  # `from verify import env`: the module env
                found |= {f"verify.{alias.name}" for alias in node.names}
    return found


def unit_of_module(name: str) -> str | None:
    """The unit of an imported ``verify`` module (``None`` for anything else, or the package itself)."""
    parts = name.split(".")
    if parts[0] != "verify" or len(parts) == 1:
        return None
    return parts[1]


def arrows() -> list[tuple[Path, str, str]]:
    """(file, its unit, the unit it imports) for every import of one verify unit by another."""
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        own = unit_of(path)
        for name in imports(path):
            target = unit_of_module(name)
            if target is not None and target != own:
                found.append((path, own, target))
    return found


def test_every_unit_is_placed() -> None:
    units = {unit_of(path) for path in PACKAGE.rglob("*.py")}
    assert units == set(UNITS), f"place these in UNITS (and docs/architecture.md): {units ^ set(UNITS)}"


def test_imports_point_down_only() -> None:
    against = [
        f"verify/{path.relative_to(PACKAGE)} ({own}) imports {target}, which is above it"
        for path, own, target in arrows()
        if UNITS.index(target) > UNITS.index(own)
    ]
    assert against == []


def test_no_loop_between_folders() -> None:
    # Implied by the order above, but said outright: the unit graph has no cycle.
    graph: dict[str, set[str]] = {}
    for _, own, target in arrows():
        graph.setdefault(own, set()).add(target)

    def reaches(start: str, goal: str, seen: set[str]) -> bool:
        for nxt in graph.get(start, ()):
            if nxt == goal or (nxt not in seen and reaches(nxt, goal, seen | {nxt})):
                return True
        return False

    loops = sorted(unit for unit in graph if reaches(unit, unit, {unit}))
    assert loops == []


def test_nothing_below_the_web_layer_imports_the_web_stack() -> None:
    found = [
        f"verify/{path.relative_to(PACKAGE)} imports {name}"
        for path in sorted(PACKAGE.rglob("*.py"))
        if unit_of(path) in BELOW_WEB
        for name in imports(path)
        if name.split(".")[0] in WEB_STACK
    ]
    assert found == []


def test_the_walker_sees_what_it_must() -> None:
    # The checks above are only as good as the walk: it must see every form of import.
    imported = imports(PACKAGE / "web" / "api.py")
    assert {"verify.service", "verify.web.context", "flask"} <= imported
    assert "verify.env" in imports(PACKAGE / "config.py")  # `from verify import env`
    assert "verify.app" in imports(PACKAGE / "__init__.py")  # a function-local import
    assert any(target == "service" for _, own, target in arrows() if own == "web")
