"""The import graph of ``huracan/``: no cycles, and nothing below the entry points imports one.

The graph is read from the source with :mod:`ast` (nothing is imported): an edge ``a -> b``
for every ``import b`` / ``from b import x`` in module ``a`` — at the top or inside a function
(a lazy import still couples the two modules) — except those under ``if TYPE_CHECKING:``,
which never run. ``from pkg import name`` is an edge to ``pkg.name`` when that is a module,
else to ``pkg``. Only modules of ``huracan`` count.

The layering, top to bottom:

1. **Entry points** — what a process starts from: ``huracan.cli`` and ``huracan.cli_history``
   (the ``huracan`` command), ``huracan.demo``, ``huracan.worker_process`` (launches and
   watches ``faust -A huracan worker``), ``huracan.__main__`` if there is one, and the
   package ``huracan`` itself (``faust -A huracan`` looks up ``huracan.app`` there). Entry
   points may import each other and everything below.
2. **Composition root** — ``huracan.application``: builds the Faust app and its parts from
   the config. It may import the library, never an entry point.
3. **The library** — every other module (agents, bus, streams, storage, backtest, runtime,
   models, components, observability, domain, config, …). It imports neither an entry point
   nor the composition root; it gets what it needs passed in, or from a library module.

Rules checked: (a) the graph has no cycle; (b) no module of layer 2 or 3 imports a module of
layer 1, and no module of layer 3 imports layer 2.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

PACKAGE = "huracan"
ROOT = Path(__file__).resolve().parents[2] / PACKAGE

ENTRY_POINTS = frozenset(
    {
        "huracan",
        "huracan.__main__",
        "huracan.cli",
        "huracan.cli_history",
        "huracan.demo",
        "huracan.worker_process",
    }
)
COMPOSITION_ROOT = frozenset({"huracan.application"})


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _modules() -> dict[str, Path]:
    return {_module_name(p): p for p in sorted(ROOT.rglob("*.py"))}


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _import_nodes(node: ast.AST) -> Iterator[ast.Import | ast.ImportFrom]:
    """Every import under ``node`` except those in the body of ``if TYPE_CHECKING:``."""
    for child in ast.iter_child_nodes(node):
        if isinstance(child, ast.If) and _is_type_checking(child.test):
            for sub in child.orelse:
                yield from _import_nodes_of(sub)
            continue
        yield from _import_nodes_of(child)


def _import_nodes_of(node: ast.AST) -> Iterator[ast.Import | ast.ImportFrom]:
    if isinstance(node, ast.Import | ast.ImportFrom):
        yield node
    yield from _import_nodes(node)


def _resolve(base: str, name: str | None, modules: dict[str, Path]) -> str | None:
    """The huracan module an import names: ``base.name`` if that is a module, else ``base``."""
    if name is not None and f"{base}.{name}" in modules:
        return f"{base}.{name}"
    return base if base in modules else None


def _edges(name: str, path: Path, modules: dict[str, Path]) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    is_package = path.name == "__init__.py"
    out: set[str] = set()
    for node in _import_nodes(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name == PACKAGE or alias.name.startswith(PACKAGE + "."):
                    target = _resolve(alias.name, None, modules)
                    if target:
                        out.add(target)
            continue
        if node.level:
            anchor = name.split(".")
            if not is_package:
                anchor = anchor[:-1]
            anchor = anchor[: len(anchor) - (node.level - 1)]
            base = ".".join([*anchor, *([node.module] if node.module else [])])
        else:
            base = node.module or ""
        if not (base == PACKAGE or base.startswith(PACKAGE + ".")):
            continue
        for alias in node.names:
            target = _resolve(base, alias.name, modules)
            if target:
                out.add(target)
    out.discard(name)
    return out


def import_graph() -> dict[str, set[str]]:
    modules = _modules()
    return {name: _edges(name, path, modules) for name, path in modules.items()}


def find_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    counter = 0

    def visit(v: str) -> None:
        nonlocal counter
        index[v] = low[v] = counter
        counter += 1
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def upward_imports(graph: dict[str, set[str]]) -> list[str]:
    """``"a -> b"`` for every import of an entry point from below it, or of the composition
    root from the library."""
    bad = []
    for module, targets in sorted(graph.items()):
        if module in ENTRY_POINTS:
            continue
        for target in sorted(targets):
            if target in ENTRY_POINTS or (
                target in COMPOSITION_ROOT and module not in COMPOSITION_ROOT
            ):
                bad.append(f"{module} -> {target}")
    return bad


def test_import_graph_when_read_then_covers_every_module_and_sees_the_known_edges() -> None:
    graph = import_graph()

    assert {"huracan.cli", "huracan.application", "huracan.storage.archive"} <= set(graph)
    assert "huracan.cli_history" in graph["huracan.cli"]
    assert "huracan.config" in graph["huracan.streams.clients"]


def test_find_cycles_when_two_modules_import_each_other_then_reported() -> None:
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}

    assert find_cycles(graph) == [["a", "b", "c"]]


def test_upward_imports_when_library_imports_an_entry_point_then_reported() -> None:
    graph = {
        "huracan.backtest.x": {"huracan.demo"},
        "huracan.agents.y": {"huracan.application"},
        "huracan.cli": {"huracan.demo", "huracan.application"},
        "huracan.application": {"huracan.agents.y"},
    }

    assert upward_imports(graph) == [
        "huracan.agents.y -> huracan.application",
        "huracan.backtest.x -> huracan.demo",
    ]


def test_huracan_when_imports_walked_then_no_cycle() -> None:
    assert find_cycles(import_graph()) == []


def test_huracan_when_imports_walked_then_nothing_below_an_entry_point_imports_one() -> None:
    assert upward_imports(import_graph()) == []
