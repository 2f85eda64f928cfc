"""The shape of the code base that issue "One shape for the four apps" asks for, checked on every run.

No function over 60 lines, no module over 600 lines (tests and migrations aside), and no import cycle
between the project's modules, counting imports inside functions (which only hide a cycle) but not
those under ``if TYPE_CHECKING:`` (annotations, never executed).
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("ads", "backbone", "bench", "catalog", "chatbot", "config", "recommend", "search")
MAX_FUNCTION_LINES = 60
MAX_MODULE_LINES = 600


def project_modules() -> dict[str, Path]:
    """Dotted module name -> file, for every project module but migrations."""
    modules = {}
    for package in PACKAGES:
        for path in (ROOT / package).rglob("*.py"):
            if "migrations" in path.parts:
                continue
            parts = path.relative_to(ROOT).with_suffix("").parts
            modules[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return modules


def runtime_nodes(tree: ast.AST):
    """Every node of ``tree`` but those under ``if TYPE_CHECKING:`` (annotations only, never run)."""
    for node in ast.iter_child_nodes(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            yield from (n for child in node.orelse for n in [child, *runtime_nodes(child)])
            continue
        yield node
        yield from runtime_nodes(node)


def imported(tree: ast.AST, name: str, modules: dict[str, Path]) -> set[str]:
    """The project modules that module ``name`` imports anywhere in its body (functions included)."""
    found = set()
    for node in runtime_nodes(tree):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            targets = [node.module, *(f"{node.module}.{alias.name}" for alias in node.names)]
        else:
            continue
        found.update(t for t in targets if t in modules and t != name)
    return found


def test_no_function_over_60_lines_and_no_module_over_600():
    too_long = []
    for name, path in project_modules().items():
        source = path.read_text()
        if source.count("\n") > MAX_MODULE_LINES:
            too_long.append(f"module {name}: {source.count(chr(10))} lines")
        for node in ast.walk(ast.parse(source)):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                length = node.end_lineno - node.lineno + 1
                if length > MAX_FUNCTION_LINES:
                    too_long.append(f"{name}:{node.lineno} {node.name}: {length} lines")
    assert not too_long, "\n".join(too_long)


def test_no_import_cycles_between_project_modules():
    modules = project_modules()
    graph = {name: imported(ast.parse(path.read_text()), name, modules) for name, path in modules.items()}
    # a package's __init__ re-exporting its own submodules is not a cycle of concerns
    graph = {
        n: {t for t in ts if not (t.startswith(n + ".") and modules[n].name == "__init__.py")}
        for n, ts in graph.items()
    }
    cycles, state = [], {}

    def visit(node: str, path: list[str]) -> None:
        state[node] = "open"
        for target in sorted(graph[node]):
            if state.get(target) == "open":
                cycles.append(" -> ".join([*path[path.index(target) :], target]))
            elif target not in state:
                visit(target, [*path, target])
        state[node] = "done"

    for name in sorted(graph):
        if name not in state:
            visit(name, [name])
    assert not cycles, "\n".join(cycles)
