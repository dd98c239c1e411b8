"""No import cycles in ``medrag`` (issue #10): a static graph from the AST of every module.

Every ``import``/``from … import`` counts, wherever it is written (module level, inside a function, under
``if TYPE_CHECKING:``): a module that needs another one, even only lazily or for its types, depends on it.
``from medrag.x import y`` imports ``medrag.x`` and, when ``y`` is a submodule, ``medrag.x.y``; importing
``medrag.x.y`` also runs the ``__init__`` of ``medrag.x`` (a package counts as its ``__init__``). A module's
own parent packages are left out: they are always initialised before it runs.
"""

from __future__ import annotations

import ast
from pathlib import Path

import networkx as nx  # installed with torch

ROOT = Path(__file__).resolve().parents[1]


def module_names(root: Path, package: str) -> dict[str, Path]:
    """Dotted module name → file, for every ``.py`` file under ``root/package``."""
    modules: dict[str, Path] = {}
    for path in sorted((root / package).rglob("*.py")):
        parts = path.relative_to(root).with_suffix("").parts
        modules[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return modules


def _imported_names(module: str, is_package: bool, tree: ast.AST) -> set[str]:
    """The dotted names ``tree`` imports (relative imports resolved against ``module``)."""
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = module.split(".") if is_package else module.split(".")[:-1]
                anchor = anchor[: len(anchor) - (node.level - 1)]
                base = ".".join([*anchor, base] if base else anchor)
            names.add(base)
            names.update(f"{base}.{alias.name}" for alias in node.names if alias.name != "*")
    return names


def import_graph(root: Path, package: str) -> nx.DiGraph:
    """Edges ``a → b``: importing module ``a`` imports module ``b`` of ``package``."""
    modules = module_names(root, package)
    graph = nx.DiGraph()
    graph.add_nodes_from(modules)
    for module, path in modules.items():
        own_parents = {".".join(module.split(".")[:i]) for i in range(1, module.count(".") + 1)}
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        for name in _imported_names(module, path.name == "__init__.py", tree):
            # the longest prefix that is a module (``from m import function`` names m), then its parents
            while name and name not in modules:
                name = name.rpartition(".")[0]
            while name:
                if name != module and name not in own_parents:
                    graph.add_edge(module, name)
                name = name.rpartition(".")[0]
    return graph


def import_cycles(root: Path, package: str) -> list[list[str]]:
    """One cycle (``[a, b, …]``: a imports b … imports a) per strongly connected group of modules."""
    graph = import_graph(root, package)
    cycles = []
    for group in nx.strongly_connected_components(graph):
        if len(group) > 1:
            cycle = [a for a, _ in nx.find_cycle(graph.subgraph(group))]
            start = cycle.index(min(cycle))
            cycles.append(cycle[start:] + cycle[:start])
    return sorted(cycles)


def _describe(cycles: list[list[str]]) -> str:
    return "\n".join(" -> ".join([*cycle, cycle[0]]) for cycle in cycles)


def test_medrag_has_no_import_cycles() -> None:
    cycles = import_cycles(ROOT, "medrag")
    assert not cycles, f"import cycles in medrag (see this file's docstring for what counts):\n{_describe(cycles)}"


def test_the_graph_sees_medrag_imports() -> None:
    graph = import_graph(ROOT, "medrag")
    assert graph.number_of_nodes() > 50
    # a package's __init__ is the package; `from medrag.x import y` reaches medrag.x
    assert graph.has_edge("medrag.pipeline", "medrag.events")
    assert not any(graph.has_edge(m, "medrag") for m in graph if m.startswith("medrag."))


def _package(root: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    return root


def test_a_cycle_is_found(tmp_path: Path) -> None:
    root = _package(
        tmp_path,
        {
            "cyc/__init__.py": "",
            "cyc/a.py": "from cyc.b import thing\n",
            "cyc/b.py": "def thing():\n    from . import c\n",  # a function-level relative import
            "cyc/c.py": "import cyc.a as a\n",
            "cyc/free.py": "from cyc import a\n",
        },
    )
    assert import_cycles(root, "cyc") == [["cyc.a", "cyc.b", "cyc.c"]]
    assert import_graph(root, "cyc").has_edge("cyc.free", "cyc.a")  # `from pkg import submodule`


def test_a_cycle_through_a_package_init_is_found(tmp_path: Path) -> None:
    root = _package(
        tmp_path,
        {
            "cyc/__init__.py": "",
            "cyc/sub/__init__.py": "from ..other import x\n",
            "cyc/sub/leaf.py": "",
            # importing cyc.sub.leaf runs cyc/sub/__init__.py, which imports cyc.other
            "cyc/other.py": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from cyc.sub.leaf import y\n",
        },
    )
    assert import_cycles(root, "cyc") == [["cyc.other", "cyc.sub"]]


def test_re_exports_from_a_package_init_are_no_cycle(tmp_path: Path) -> None:
    root = _package(
        tmp_path,
        {
            "ok/__init__.py": "from ok.api import run\n",
            "ok/api.py": "from ok.core.engine import Engine\n\ndef run():\n    return Engine()\n",
            "ok/core/__init__.py": "from .engine import Engine\n",
            "ok/core/engine.py": "from ok.core import helpers\nclass Engine: ...\n",
            "ok/core/helpers.py": "",
        },
    )
    assert import_cycles(root, "ok") == []
