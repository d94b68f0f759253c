"""The layers stay layers: no import circle among genfill's modules, lazy imports inside functions included."""

from __future__ import annotations

import ast
import re
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src"


def module_name(path: Path) -> str:
    parts = list(path.relative_to(SRC).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def import_graph() -> dict[str, set[str]]:
    """genfill module -> the genfill modules it imports anywhere in its file (top level or in a function).
    `from genfill.a import b` counts as importing genfill.a.b when that is a module, else genfill.a."""
    files = {module_name(p): p for p in (SRC / "genfill").rglob("*.py")}
    graph: dict[str, set[str]] = {}
    for name, path in files.items():
        deps = set()
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:  # relative import
                    base = ".".join(package.split(".")[: len(package.split(".")) - node.level + 1] + ([base] if base else []))
                targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in files else base for a in node.names]
            else:
                continue
            deps |= {t for t in targets if t in files and t != name}
        graph[name] = deps
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}  # 1 = on the current path, 2 = done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for dep in sorted(graph[node]):
            if state.get(dep) == 1:
                return path[path.index(dep):] + [dep]
            if dep not in state and (cycle := visit(dep)):
                return cycle
        path.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (cycle := visit(node)):
            return cycle
    return None


def test_no_import_cycle_in_genfill():
    graph = import_graph()
    assert "genfill.evaljob" in graph and "genfill.device" in graph["genfill.train"]
    cycle = find_cycle(graph)
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


def test_the_cycle_finder_finds_lazy_cycles():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def architecture_layers() -> dict[str, int]:
    """module -> layer rank (0 = top) from ARCHITECTURE.md: `**Layer**` headings, then one bullet per module."""
    ranks, rank = {}, -1
    text = (SRC.parent / "ARCHITECTURE.md").read_text().split("## One image")[0]
    for line in text.splitlines():
        if line.startswith("**"):
            rank += 1
        elif line.startswith("- `"):
            for path in re.findall(r"`([\w/]+\.py)`", line.split(":")[0]):
                ranks[module_name(SRC / "genfill" / path)] = rank
    return ranks


def test_architecture_lists_every_module_and_imports_point_down():
    graph = import_graph()
    ranks = architecture_layers()
    assert set(ranks) == set(graph), set(graph) ^ set(ranks)
    upward = [f"{a} -> {b}" for a, deps in graph.items() for b in deps if ranks[b] < ranks[a]]
    assert upward == []


def test_leaf_modules_import_nothing_from_genfill_but_errors():
    graph = import_graph()
    for leaf in ("genfill.validate", "genfill.pixels", "genfill.device", "genfill.errors"):
        assert graph[leaf] <= {"genfill.errors"}, (leaf, graph[leaf])
    assert graph["genfill.typed"] <= {"genfill.errors", "genfill.validate"}, graph["genfill.typed"]


def test_no_library_function_is_named_like_a_test():
    names = [f"{module_name(p)}.{node.name}" for p in (SRC / "genfill").rglob("*.py")
             for node in ast.walk(ast.parse(p.read_text()))
             if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef))
             and node.name.lower().startswith("test")]
    assert names == []
