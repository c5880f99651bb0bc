"""The package's shape: small modules, and a stated reason where one is not."""

from __future__ import annotations

import ast
from pathlib import Path

import dcgan

PACKAGE = Path(dcgan.__file__).parent
LIMIT = 400


def test_every_module_over_the_limit_says_why_in_its_docstring():
    unexplained = []
    for path in sorted(PACKAGE.rglob("*.py")):
        text = path.read_text()
        if text.count("\n") <= LIMIT:
            continue
        doc = ast.get_docstring(ast.parse(text)) or ""
        if f"Over {LIMIT} lines on purpose:" not in doc:
            unexplained.append(f"{path.relative_to(PACKAGE)} ({text.count(chr(10))} lines)")
    assert not unexplained, unexplained


def _module_name(path: Path) -> str:
    parts = ["dcgan", *path.relative_to(PACKAGE).with_suffix("").parts]
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path, name: str, modules: set[str]) -> set[str]:
    """Every dcgan module `name` imports, at top level or inside a function (a deferred import
    hides a cycle; it does not remove it)."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = package
            for _ in range(max(node.level - 1, 0)):
                base = base.rpartition(".")[0]
            base = f"{base}.{node.module}" if node.level and node.module else (node.module or base)
            targets = [base] + [f"{base}.{alias.name}" for alias in node.names]
        else:
            continue
        found |= {t for t in targets if t in modules and t != name}
    return found


def test_no_module_imports_back_into_a_module_that_imports_it():
    paths = {_module_name(p): p for p in PACKAGE.rglob("*.py")}
    # A package's __init__ importing its own submodules is how Python packages work, not a layer
    # violation: only edges between distinct modules that are not package roots count.
    graph = {
        name: {t for t in _imports(path, name, set(paths)) if not name.startswith(t + ".")}
        for name, path in paths.items()
        if path.name != "__init__.py"
    }
    cycles = []
    state: dict[str, int] = {}

    def visit(node: str, trail: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                cycles.append(" -> ".join(trail[trail.index(nxt) :] + [nxt]))
            elif nxt not in state and nxt in graph:
                visit(nxt, [*trail, nxt])
        state[node] = 2

    for name in sorted(graph):
        if name not in state:
            visit(name, [name])
    assert len(graph) > 40, sorted(graph)  # the walk really read the package
    assert not cycles, cycles
