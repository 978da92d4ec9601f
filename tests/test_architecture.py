"""The package's shape: small modules, no import cycle between its packages, and none
between the modules of a package kept layered (``llmship.eval``).

A *package* here is a first-level subpackage of ``src/llmship`` (``llmship.rollout``) or a
top-level module (``llmship.errors``). An import counts when it runs: at module level or inside
a function. Between packages, imports under ``if TYPE_CHECKING:`` are skipped, because they
never run and exist to name types; between the modules of a layered package they count too,
because a type-only loop still ties the modules into one knot (each needs the other to be
read). The graph is read from the source with :mod:`ast`, so nothing is imported.
``docs/architecture.md`` describes the direction the imports go.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from itertools import pairwise
from pathlib import Path

SRC = Path(__file__).resolve().parent.parent / "src" / "llmship"
MAX_LINES = 600


def _modules() -> Iterator[tuple[str, Path]]:
    for path in sorted(SRC.rglob("*.py")):
        parts = path.relative_to(SRC.parent).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        yield ".".join(parts), path


def _package(module: str) -> str:
    """``llmship.rollout.controller`` -> ``rollout``; ``llmship.errors`` -> ``errors``."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


def _is_type_checking(test: ast.expr) -> bool:
    if isinstance(test, ast.Name):
        return test.id == "TYPE_CHECKING"
    return isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"


def _runtime_imports(
    node: ast.AST, module: str, is_package: bool, *, type_checking: bool = False
) -> Iterator[str]:
    """Every module of llmship that ``node`` imports when it runs (absolute names); with
    ``type_checking``, those imported under ``if TYPE_CHECKING:`` as well."""
    for child in ast.iter_child_nodes(node):
        if isinstance(child, ast.If) and _is_type_checking(child.test) and not type_checking:
            for other in child.orelse:
                yield from _runtime_imports(other, module, is_package)
            continue
        if isinstance(child, ast.Import):
            yield from (alias.name for alias in child.names if alias.name.startswith("llmship"))
        elif isinstance(child, ast.ImportFrom):
            if child.level:
                base = module.split(".")
                if not is_package:
                    base = base[:-1]
                base = base[: len(base) - (child.level - 1)]
                target = ".".join([*base, child.module] if child.module else base)
            else:
                target = child.module or ""
            if target.startswith("llmship"):
                yield target
                yield from (f"{target}.{alias.name}" for alias in child.names)
        else:
            yield from _runtime_imports(child, module, is_package, type_checking=type_checking)


def _package_graph() -> dict[str, dict[str, str]]:
    """package -> {imported package: "module imports module" (one example)}."""
    modules = list(_modules())
    known = {name for name, _ in modules}
    graph: dict[str, dict[str, str]] = {}
    for module, path in modules:
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        source = _package(module)
        edges = graph.setdefault(source, {})
        for target in _runtime_imports(tree, module, path.name == "__init__.py"):
            if target not in known:
                continue  # ``from llmship.x import name``: the name, not a module
            other = _package(target)
            if other and source and other != source:
                edges.setdefault(other, f"{module} imports {target}")
    return graph


def _module_graph(
    package: str, *, type_checking: bool, root: Path = SRC.parent
) -> dict[str, dict[str, str]]:
    """module -> {imported module: "module imports module"}, between the modules of
    ``package`` (``llmship.eval``) under ``root``. The package's own ``__init__`` is no
    target: it has run before any of its modules does, whatever they import."""
    base = root.joinpath(*package.split("."))
    modules: dict[str, Path] = {}
    for path in sorted(base.rglob("*.py")):
        parts = path.relative_to(root).with_suffix("").parts
        modules[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    graph: dict[str, dict[str, str]] = {}
    for module, path in modules.items():
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        imports = _runtime_imports(
            tree, module, path.name == "__init__.py", type_checking=type_checking
        )
        edges = graph.setdefault(module, {})
        for target in imports:
            if target in modules and target not in (module, package):
                edges.setdefault(target, f"{module} imports {target}")
    return graph


def _module_cycles(package: str, *, root: Path = SRC.parent) -> list[str]:
    """The import cycles among the modules of ``package``, type-only imports counted, spelled."""
    graph = _module_graph(package, type_checking=True, root=root)
    return [_spell(c, graph) for c in _cycles(graph)]


def _cycles(graph: dict[str, dict[str, str]]) -> list[list[str]]:
    """One shortest cycle per strongly connected group of packages."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    groups: list[set[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for nxt in graph.get(node, {}):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            group = set()
            while True:
                top = stack.pop()
                group.add(top)
                if top == node:
                    break
            if len(group) > 1:
                groups.append(group)

    for node in sorted(graph):
        if node not in index:
            visit(node)
    cycles = []
    for group in groups:
        start = min(group)
        paths = [[start]]
        found: list[str] | None = None
        while paths and found is None:
            path = paths.pop(0)
            for nxt in sorted(graph.get(path[-1], {})):
                if nxt == start:
                    found = [*path, start]
                    break
                if nxt in group and nxt not in path:
                    paths.append([*path, nxt])
        assert found is not None
        cycles.append(found)
    return cycles


def _spell(cycle: list[str], graph: dict[str, dict[str, str]]) -> str:
    steps = "; ".join(graph[a][b] for a, b in pairwise(cycle))
    return f"{' -> '.join(cycle)} ({steps})"


def test_no_module_is_over_600_lines() -> None:
    lengths = {
        str(path.relative_to(SRC.parent)): len(path.read_text(encoding="utf-8").splitlines())
        for _, path in _modules()
    }
    long = {name: n for name, n in lengths.items() if n > MAX_LINES}
    over = sorted(f"{name} ({n} lines)" for name, n in long.items())
    assert not over, f"modules over {MAX_LINES} lines, split them: {', '.join(over)}"


def test_no_import_cycle_between_packages() -> None:
    graph = _package_graph()
    cycles = _cycles(graph)
    spelled = [_spell(c, graph) for c in cycles]
    assert not spelled, "import cycles between packages of llmship:\n" + "\n".join(spelled)


def test_analysis_is_pure() -> None:
    """``llmship.analysis`` decides from numbers alone: of llmship it uses only ``errors``."""
    graph = _package_graph()
    assert set(graph.get("analysis", {})) <= {"errors"}, graph["analysis"]


def test_the_check_sees_a_cycle() -> None:
    """The cycle finder spells out a loop and ignores imports that only name types."""
    graph = {"a": {"b": "x imports y"}, "b": {"a": "y imports x"}, "c": {"a": "z imports x"}}
    assert [_spell(c, graph) for c in _cycles(graph)] == ["a -> b -> a (x imports y; y imports x)"]
    tree = ast.parse(
        "from typing import TYPE_CHECKING\n"
        "if TYPE_CHECKING:\n    from llmship.rollout import x\n"
        "def f():\n    from . import sibling\n"
    )
    found = list(_runtime_imports(tree, "llmship.eval.dataset", is_package=False))
    assert found == ["llmship.eval", "llmship.eval.sibling"]


def test_no_import_cycle_between_modules_of_eval() -> None:
    """``llmship.eval`` is layered: the data types (``cases``) at the bottom, then the
    checks and scoring functions, the metric table, and the runner on top."""
    cycles = _module_cycles("llmship.eval")
    assert not cycles, "import cycles between modules of llmship.eval:\n" + "\n".join(cycles)


def test_the_module_check_sees_a_type_only_cycle(tmp_path: Path) -> None:
    """A loop closed by an import under TYPE_CHECKING is a cycle; the package's
    ``__init__`` importing its modules is none."""
    package = tmp_path / "llmship" / "demo"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text("from llmship.demo import a, b, c\n")
    (package / "a.py").write_text("from llmship.demo import b\n")
    (package / "b.py").write_text(
        "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from llmship.demo.a import X\n"
    )
    (package / "c.py").write_text("def f():\n    from llmship import demo\n")
    assert _module_cycles("llmship.demo", root=tmp_path) == [
        "llmship.demo.a -> llmship.demo.b -> llmship.demo.a "
        "(llmship.demo.a imports llmship.demo.b; llmship.demo.b imports llmship.demo.a)"
    ]
    runtime = _module_graph("llmship.demo", type_checking=False, root=tmp_path)
    assert _cycles(runtime) == []
