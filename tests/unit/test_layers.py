"""The layers point inward: the domain (`sagas/`) imports neither the wiring
(`orchestrator/`) nor the adapters (`services/`), the adapters do not import the wiring,
the service imports none of the development tools (`devstack/`, `bench/`; they may use
it, never the reverse), and no module imports itself back through others. The source is
read, not imported, so an import inside a function or under TYPE_CHECKING counts too."""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("orchestrator", "sagas", "services")
DEVTOOLS = ("devstack", "bench", "tests")
OUTWARD = {
    "sagas": ("orchestrator", "services", *DEVTOOLS),
    "services": ("orchestrator", *DEVTOOLS),
    "orchestrator": DEVTOOLS,
}


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported(path: Path) -> Iterator[str]:
    """Every module the file names in an import (`from a import b`: a, and a.b)."""
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            yield node.module
            yield from (f"{node.module}.{alias.name}" for alias in node.names)


def modules(packages: tuple[str, ...] = PACKAGES) -> dict[str, Path]:
    return {
        module_name(path): path for package in packages for path in (ROOT / package).rglob("*.py")
    }


@pytest.mark.parametrize("package", sorted(OUTWARD))
def test_a_layer_imports_nothing_outward_of_it(package: str) -> None:
    outward = sorted(
        f"{module_name(path)} imports {name}"
        for path in (ROOT / package).rglob("*.py")
        for name in imported(path)
        if name.split(".")[0] in OUTWARD[package]
    )
    assert outward == []


def test_no_module_imports_itself_back() -> None:
    found = modules()
    graph = {
        name: {other for other in imported(path) if other in found and other != name}
        for name, path in found.items()
    }
    cycles: list[list[str]] = []
    done: set[str] = set()

    def visit(name: str, trail: list[str]) -> None:
        if name in trail:
            cycles.append([*trail[trail.index(name) :], name])
            return
        if name in done:
            return
        for other in sorted(graph[name]):
            visit(other, [*trail, name])
        done.add(name)

    for name in sorted(graph):
        visit(name, [])
    assert cycles == []


def test_the_production_entry_points_import_no_development_tool() -> None:
    """What `coupon-service` and `coupon-saga` can reach, however deep: the service alone."""
    found = modules(PACKAGES + DEVTOOLS)
    entry_points = ("orchestrator.main", "orchestrator.cli")
    reached, queue = set(entry_points), list(entry_points)
    while queue:
        for other in imported(found[queue.pop()]):
            if other in found and other not in reached:
                reached.add(other)
                queue.append(other)
    assert sorted(name for name in reached if name.split(".")[0] in DEVTOOLS) == []


# The console renders what sagas/operations.py (the replay tool's code) finds and does: it
# drives no saga itself, opens no store, and is handed its ports by the app.
CONSOLE_NEVER = (
    "orchestrator.saga",
    "orchestrator.bootstrap",
    "orchestrator.metrics",
    "orchestrator.claims",
    "services",
    "asyncpg",
    "redis",
    "pymongo",
)


def test_the_console_reaches_the_stores_only_through_the_ports() -> None:
    outward = sorted(
        f"{module_name(path)} imports {name}"
        for path in (ROOT / "orchestrator" / "console").rglob("*.py")
        for name in imported(path)
        if any(name == never or name.startswith(f"{never}.") for never in CONSOLE_NEVER)
    )
    assert outward == []
