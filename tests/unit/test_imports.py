"""The import graph of the project's packages: no cycle, and every arrow points down.

ARCHITECTURE.md: ``starter`` and ``worker`` -> ``activities`` -> ``workflows`` -> ``ledger_db``;
``ledger_db`` imports no temporalio (nor anything above it), ``workflows`` no SQLAlchemy,
psycopg, activities or starter. Every import counts, those inside functions too: an import
deferred to run time still makes the two modules depend on each other.

The graph is read from the source (``ast``), so the test also covers modules no other test
imports, and a failure names the modules and the line.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("ledger_db", "workflows", "activities", "starter")
LAYERS = {"ledger_db": 0, "workflows": 1, "activities": 2, "starter": 3, "worker": 3}
FORBIDDEN_LIBRARIES = {
    "ledger_db": {"temporalio"},
    "workflows": {"sqlalchemy", "psycopg", "alembic"},
}


def _modules() -> dict[str, Path]:
    found = {"worker": ROOT / "worker.py"}
    for package in PACKAGES:
        for path in (ROOT / package).rglob("*.py"):
            relative = path.relative_to(ROOT).with_suffix("")
            if "versions" in relative.parts:  # Alembic revisions are loaded by Alembic alone
                continue
            parts = relative.parts[:-1] if relative.name == "__init__" else relative.parts
            found[".".join(parts)] = path
    return found


MODULES = _modules()


def _imports(module: str, path: Path) -> Iterator[tuple[str, int]]:
    """(imported name, line) of every import statement of the module, wherever it stands."""
    is_package = path.name == "__init__.py"
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name, node.lineno
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = module.split(".")
                parts = parts if is_package else parts[:-1]
                parts = parts[: len(parts) - (node.level - 1)]
                base = ".".join([*parts, *([base] if base else [])])
            for alias in node.names:
                candidate = f"{base}.{alias.name}"
                yield (candidate if candidate in MODULES else base), node.lineno


def _own(name: str) -> str | None:
    """The project module ``name`` is (or lies in), else None for a library."""
    while name and name not in MODULES:
        name = name.rpartition(".")[0]
    return name or None


def _graph() -> dict[str, dict[str, int]]:
    graph: dict[str, dict[str, int]] = {module: {} for module in MODULES}
    for module, path in MODULES.items():
        for name, line in _imports(module, path):
            target = _own(name)
            if target is not None and target != module:
                graph[module].setdefault(target, line)
    return graph


def _cycles(graph: dict[str, dict[str, int]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    counter = 0
    for root in graph:
        if root in index:
            continue
        work = [(root, iter(graph[root]))]
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            advanced = False
            for child in children:
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(graph[child])))
                    advanced = True
                    break
                if child in on_stack:
                    low[node] = min(low[node], index[child])
            if advanced:
                continue
            work.pop()
            if work:
                parent = work[-1][0]
                low[parent] = min(low[parent], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    found.append(sorted(component))
    return found


def _layer(module: str) -> int:
    return LAYERS[module.split(".")[0]]


def test_the_walk_sees_every_package() -> None:
    assert {module.split(".")[0] for module in MODULES} == set(LAYERS)
    graph = _graph()
    # The walk does see arrows, between packages and inside them.
    assert "ledger_db.ledger" in graph["ledger_db"]
    assert "starter.config" in graph["worker"]
    assert "ledger_db.api_keys" in graph["starter.api.auth"]


def test_there_is_no_import_cycle() -> None:
    graph = _graph()
    cycles = _cycles(graph)
    described = [
        " <-> ".join(
            f"{module} (line {graph[module].get(other, '?')})"
            for module, other in zip(cycle, [*cycle[1:], cycle[0]], strict=True)
        )
        for cycle in cycles
    ]
    assert cycles == [], "import cycles:\n" + "\n".join(described)


def test_every_arrow_points_down() -> None:
    upward = [
        f"{module}:{line} imports {target}"
        for module, targets in _graph().items()
        for target, line in targets.items()
        if _layer(target) > _layer(module)
    ]
    assert upward == []


@pytest.mark.parametrize("package", sorted(FORBIDDEN_LIBRARIES))
def test_lower_layers_import_no_forbidden_library(package: str) -> None:
    forbidden = FORBIDDEN_LIBRARIES[package]
    offending = [
        f"{module}:{line} imports {name}"
        for module, path in MODULES.items()
        if module.split(".")[0] == package
        for name, line in _imports(module, path)
        if name.split(".")[0] in forbidden
    ]
    assert offending == []


def test_the_detector_finds_a_cycle() -> None:
    # The cycle search itself, on a made-up graph: a test that cannot fail proves nothing.
    graph = {"a": {"b": 1}, "b": {"c": 1}, "c": {"a": 1}, "d": {"a": 1}}
    assert _cycles(graph) == [["a", "b", "c"]]
