"""The layer package's import graph has no cycle, and every module imports on its own in a fresh interpreter.

The graph counts every ``import`` of a flagbridge module, lazy ones inside functions included (a lazy import
only defers a cycle), and leaves out ``if TYPE_CHECKING:`` blocks (never executed).
"""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from pathlib import Path

from tests.conftest import ROOT

LAYER = ROOT / "layers" / "shared"
PACKAGE = LAYER / "flagbridge"


def _module_name(path: Path) -> str:
    parts = path.relative_to(LAYER).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _imports(path: Path, modules: set[str]) -> set[str]:
    """The flagbridge modules ``path`` imports (a ``from package import name`` counts ``package.name`` if a module)."""
    found: set[str] = set()

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.If) and _is_type_checking(node):
            for child in node.orelse:
                visit(child)
            return
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names if alias.name in modules)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0 and node.module in modules:
            found.add(node.module)
            found.update(f"{node.module}.{a.name}" for a in node.names if f"{node.module}.{a.name}" in modules)
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(ast.parse(path.read_text(encoding="utf-8")))
    return found


def import_graph() -> dict[str, set[str]]:
    paths = {_module_name(path): path for path in PACKAGE.rglob("*.py")}
    modules = set(paths)
    # importing a.b.c runs a/__init__ and a/b/__init__ first: an edge to every parent package, except the
    # importer's own ancestors (already in sys.modules while it runs: a package's modules may import each other)
    graph = {name: _imports(path, modules) for name, path in paths.items()}
    for name in list(graph):
        own = set(_parents(name))
        parents = {parent for target in graph[name] for parent in _parents(target) if parent in modules}
        graph[name] = (graph[name] | parents) - own
    return graph


def _parents(module: str) -> list[str]:
    parts = module.split(".")
    return [".".join(parts[:index]) for index in range(1, len(parts) + 1)]


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle of ``graph`` as a path, or None."""
    state: dict[str, int] = {}  # 1 visiting, 2 done
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for target in sorted(graph.get(node, ())):
            if state.get(target) == 1:
                return [*stack[stack.index(target) :], target]
            if target not in state and (cycle := visit(target)):
                return cycle
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (cycle := visit(node)):
            return cycle
    return None


def test_the_layer_package_has_no_import_cycle() -> None:
    graph = import_graph()
    assert "flagbridge.config" in graph and "flagbridge.cdp.config" in graph["flagbridge.config"]
    assert find_cycle(graph) is None


def test_the_cycle_finder_finds_a_cycle() -> None:
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def test_every_module_imports_first_then_the_others_in_either_order() -> None:
    # Given a fresh interpreter, where each layer module in turn is imported first with flagbridge unloaded
    # (third-party modules stay loaded: they are not what this is about), then every other in one of two orders
    names = sorted(import_graph())
    # Each module's source is compiled once and its code object reused: every import still executes the module
    # afresh, but the checkout has no bytecode (PYTHONDONTWRITEBYTECODE), and compiling each of the package's
    # sources again for every first module was about half of this test's time.
    script = (
        "import importlib, importlib.machinery, sys\n"
        "compile_source = importlib.machinery.SourceFileLoader.source_to_code\n"
        "compiled = {}\n"
        "def source_to_code(loader, data, path, *args, **kwargs):\n"
        "    if (path, data) not in compiled:\n"
        "        compiled[path, data] = compile_source(loader, data, path, *args, **kwargs)\n"
        "    return compiled[path, data]\n"
        "importlib.machinery.SourceFileLoader.source_to_code = source_to_code\n"
        "names = sys.argv[1:]\n"
        "for index, first in enumerate(names):\n"
        "    for loaded in [m for m in sys.modules if m == 'flagbridge' or m.startswith('flagbridge.')]:\n"
        "        del sys.modules[loaded]\n"
        "    order = names if index % 2 else names[::-1]\n"
        "    try:\n"
        "        for name in [first, *order]:\n"
        "            importlib.import_module(name)\n"
        "    except Exception as exc:\n"
        "        print(f'{first} first: {type(exc).__name__}: {exc}')\n"
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(LAYER), str(ROOT)])}

    # When it runs
    result = subprocess.run([sys.executable, "-c", script, *names], capture_output=True, text=True, env=env)

    # Then every order imports
    assert result.returncode == 0, result.stderr
    assert result.stdout == ""
