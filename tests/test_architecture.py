"""The house's shape, read from the imports of ``api/``: no import circles, and the HTTP schemas
stay at the edge (only ``api/routes/`` and ``api/app.py`` import ``api/schemas/``).

Every import counts, also those inside functions (a lazy import is still a dependency); only
imports under ``if TYPE_CHECKING:`` are left out.
"""

from __future__ import annotations

import ast
import functools
from pathlib import Path

import pytest

API = Path(__file__).resolve().parents[1] / "api"


def _module_name(path: Path) -> str:
    rel = path.relative_to(API.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _modules() -> dict[str, Path]:
    return {_module_name(p): p for p in API.rglob("*.py")}


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _imports(path: Path, name: str, known: set[str]) -> set[str]:
    """The ``api`` modules that module ``name`` (file ``path``) imports."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()

    def target(mod: str) -> str | None:
        # the longest known module that ``mod`` names (``api.a.b.Thing`` → ``api.a.b``)
        while mod and mod not in known:
            mod = mod.rpartition(".")[0]
        return mod or None

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.If) and _is_type_checking(node):
            for child in node.orelse:
                visit(child)
            return
        if isinstance(node, ast.Import):
            for alias in node.names:
                if (t := target(alias.name)) is not None:
                    found.add(t)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                mod = ".".join([*base, *([node.module] if node.module else [])])
            else:
                mod = node.module or ""
            for alias in node.names:
                sub = f"{mod}.{alias.name}"
                t = sub if sub in known else target(mod)
                if t is not None:
                    found.add(t)
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(tree)
    found.discard(name)
    return found


@functools.cache
def import_graph() -> dict[str, set[str]]:
    modules = _modules()
    known = set(modules)
    graph = {name: _imports(path, name, known) for name, path in modules.items()}
    # a package's __init__ importing its own submodules is its face, not a dependency back
    for name in graph:
        graph[name] = {t for t in graph[name] if not (name in known and t.startswith(name + "."))}
    return graph


def strongly_connected(graph: dict[str, set[str]]) -> list[list[str]]:
    """Tarjan's algorithm: the components with more than one module (the circles)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    out: list[list[str]] = []
    counter = 0

    def connect(v: str) -> None:
        nonlocal counter
        index[v] = low[v] = counter
        counter += 1
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                connect(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            connect(v)
    return out


def test_the_graph_is_read() -> None:
    graph = import_graph()
    # the reader itself must see real edges, or the checks below could pass vacuously
    assert "api.app" in graph and "api.settings" in graph["api.app"]
    assert any(t.startswith("api.schemas") for t in graph["api.routes.speech"])


def test_strongly_connected_finds_a_circle() -> None:
    assert strongly_connected({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert strongly_connected({"a": {"b"}, "b": set()}) == []


def test_no_import_circles() -> None:
    circles = strongly_connected(import_graph())
    assert not circles, "import circles in api/: " + "; ".join(" ↔ ".join(c) for c in circles)


@pytest.mark.parametrize("module", sorted(import_graph()))
def test_schemas_stay_at_the_edge(module: str) -> None:
    if module.startswith(("api.routes", "api.schemas")) or module == "api.app":
        return
    schemas = sorted(t for t in import_graph()[module] if t.startswith("api.schemas"))
    assert not schemas, f"{module} imports the HTTP schemas {schemas}; pass domain objects instead"
