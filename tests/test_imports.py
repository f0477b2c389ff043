"""Import cycles among repeatlens' own modules, lazy (function-level) imports included: read
from the source with ``ast`` (nothing is imported, so no torch)."""

from __future__ import annotations

import ast
from pathlib import Path

import repeatlens

ROOT = Path(repeatlens.__file__).parent


def _is_type_checking(node: ast.If) -> bool:
    return isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test)


def module_graph(root: Path = ROOT) -> dict[str, set[str]]:
    """Every module of the package -> the package's modules it imports anywhere in its body
    (but under ``if TYPE_CHECKING:``); ``from pkg import name`` counts as ``pkg.name`` when that
    is a module, else as ``pkg``."""
    package = root.name
    files = {}
    for f in root.rglob("*.py"):
        parts = list(f.relative_to(root.parent).with_suffix("").parts)
        files[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = f
    graph: dict[str, set[str]] = {}
    for name, f in files.items():
        tree = ast.parse(f.read_text(encoding="utf-8"), str(f))
        skip = {id(n) for node in ast.walk(tree) if _is_type_checking(node) for n in ast.walk(node)}
        edges = set()
        for node in ast.walk(tree):
            if id(node) in skip or not isinstance(node, (ast.Import, ast.ImportFrom)):
                continue
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            else:
                base = node.module or ""
                if node.level:
                    anchor = name.split(".") if f.name == "__init__.py" else name.split(".")[:-1]
                    base = ".".join(anchor[: len(anchor) - node.level + 1] + ([base] if base else []))
                targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in files else base for a in node.names]
            for t in targets:
                while t and t not in files:
                    t = t.rpartition(".")[0]
                if t and (t == package or t.startswith(package + ".")) and t != name:
                    edges.add(t)
        graph[name] = edges
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    out: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while (w := stack.pop()) != v:
                comp.append(w)
            if comp:
                out.append(sorted([v, *comp]))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return sorted(out)


def test_the_cycle_finder_finds_a_lazy_cycle(tmp_path: Path) -> None:
    pkg = tmp_path / "pkg"
    (pkg / "sub").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "sub" / "__init__.py").write_text("from .a import f\n")
    (pkg / "sub" / "a.py").write_text("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from pkg import c\ndef f():\n    from pkg.sub import b\n")
    (pkg / "sub" / "b.py").write_text("from pkg.sub.a import f\n")
    (pkg / "c.py").write_text("import pkg.sub.a\n")
    graph = module_graph(pkg)
    assert graph["pkg.sub.a"] == {"pkg.sub.b"} and graph["pkg.c"] == {"pkg.sub.a"} and graph["pkg.sub"] == {"pkg.sub.a"}
    assert cycles(graph) == [["pkg.sub.a", "pkg.sub.b"]]


def test_results_has_no_import_cycle() -> None:
    found = cycles(module_graph())
    assert [c for c in found if any(m.startswith("repeatlens.results") for m in c)] == []


def test_no_import_cycle() -> None:
    """Every module of the package, lazy imports included: none imports itself back."""
    assert cycles(module_graph()) == []
