"""The app's import graph, read from the source with ``ast``: every import counts, at module level or
inside a function (a function-level import only hides a cycle until the function runs), except those
under ``if TYPE_CHECKING:``, which never run.

- No cycles among ``annotator``'s modules.
- Services never import ``annotator.tasks``: they send tasks by name (``services/dispatch.py``).
- What the web process loads (its URLs, views, API and admin) never reaches the worker's modules,
  which hold the models and the search space (``tests/backend/test_web_process.py`` checks the same
  at run time, for the modules the requests touch).
"""
from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("annotator", "backend")
WEB_ENTRY_POINTS = ("backend.urls", "backend.wsgi", "annotator.admin")
# The worker's modules: the models and search space (engines), the tasks, and the services that run them.
WORKER_ONLY = ("annotator.engines", "annotator.tasks", "annotator.replays", "annotator.services.prelabel",
               "annotator.services.embeddings", "annotator.services.serving", "annotator.services.search_index",
               "annotator.services.learning")


def module_files() -> dict[str, Path]:
    """Every module of the packages, by dotted name (migrations left out: they import no app code)."""
    modules = {}
    for package in PACKAGES:
        for path in sorted((REPO_ROOT / package).rglob("*.py")):
            if "migrations" in path.parts:
                continue
            parts = path.relative_to(REPO_ROOT).with_suffix("").parts
            modules[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return modules


def _type_checking_only(tree: ast.AST) -> set[int]:
    """The ids of import nodes under ``if TYPE_CHECKING:`` (never run)."""
    hidden = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            hidden.update(id(inner) for stmt in node.body for inner in ast.walk(stmt))
    return hidden


def imported_names(path: Path, module: str, is_package: bool) -> Iterator[str]:
    """Each dotted name the file imports, wherever the import stands (``from a import b`` yields
    ``a.b``, which is the module ``a.b`` if there is one, else a name in ``a``)."""
    tree = ast.parse(path.read_text(), filename=str(path))
    hidden = _type_checking_only(tree)
    for node in ast.walk(tree):
        if id(node) in hidden:
            continue
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = module.split(".") if is_package else module.split(".")[:-1]
                anchor = anchor[: len(anchor) - (node.level - 1)]
                base = ".".join(anchor + ([base] if base else []))
            yield base
            for alias in node.names:
                yield f"{base}.{alias.name}"


def import_graph() -> dict[str, set[str]]:
    """Module -> the app's modules it imports (a submodule import also imports its packages)."""
    files = module_files()
    graph: dict[str, set[str]] = {}
    for module, path in files.items():
        targets = set()
        for name in imported_names(path, module, path.name == "__init__.py"):
            parts = name.split(".")
            for end in range(1, len(parts) + 1):
                candidate = ".".join(parts[:end])
                if candidate in files and candidate != module:
                    targets.add(candidate)
        graph[module] = targets
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle as [a, b, ..., a], or None."""
    state: dict[str, str] = {}  # "open" while on the path, "done" once every edge out is explored
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = "open"
        path.append(node)
        for target in sorted(graph.get(node, ())):
            # A package's own __init__ runs before its submodules: importing a parent package is no cycle.
            if node.startswith(f"{target}."):
                continue
            if state.get(target) == "open":
                return path[path.index(target):] + [target]
            if target not in state and (cycle := visit(target)):
                return cycle
        path.pop()
        state[node] = "done"
        return None

    for start in sorted(graph):
        if start not in state and (cycle := visit(start)):
            return cycle
    return None


def path_between(graph: dict[str, set[str]], start: str, goals: set[str]) -> list[str] | None:
    """The shortest import chain from ``start`` to one of ``goals``, or None."""
    previous: dict[str, str | None] = {start: None}
    queue = [start]
    while queue:
        node = queue.pop(0)
        if node in goals:
            chain = [node]
            while previous[chain[-1]] is not None:
                chain.append(previous[chain[-1]])
            return chain[::-1]
        for target in sorted(graph.get(node, ())):
            if target not in previous:
                previous[target] = node
                queue.append(target)
    return None


def test_the_app_has_no_import_cycle():
    cycle = find_cycle(import_graph())
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


def test_services_never_import_the_tasks_module():
    graph = import_graph()
    offenders = sorted(module for module, targets in graph.items()
                       if module.startswith("annotator.services") and "annotator.tasks" in targets)
    assert offenders == [], f"{', '.join(offenders)} import annotator.tasks; send tasks by name (services/dispatch.py)"


def test_the_web_never_reaches_the_worker_modules():
    graph = import_graph()
    for entry in WEB_ENTRY_POINTS:
        chain = path_between(graph, entry, set(WORKER_ONLY))
        assert chain is None, "the web loads a worker module: " + " -> ".join(chain)


def test_the_walker_sees_function_level_imports_and_names_a_cycle(tmp_path):
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set(), "a.x": {"a"}}) is None
    lazy = tmp_path / "lazy.py"
    lazy.write_text("def later():\n    from annotator.services import frames\n")
    assert "annotator.services.frames" in set(imported_names(lazy, "annotator.views", is_package=False))
    hidden = tmp_path / "hidden.py"
    hidden.write_text("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from annotator import engines\n")
    assert "annotator.engines" not in set(imported_names(hidden, "annotator.views", is_package=False))
