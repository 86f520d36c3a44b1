"""The package layout: no import cycle between tflgraph's modules, at run time or under
TYPE_CHECKING, and every package is named in the README's code map."""

from __future__ import annotations

import ast
from pathlib import Path

import networkx as nx

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "tflgraph"


def _module(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _exists(module: str) -> bool:
    p = ROOT / module.replace(".", "/")
    return p.with_suffix(".py").exists() or (p / "__init__.py").exists()


def import_graph() -> nx.DiGraph:
    """module -> module for every `import tflgraph...` / `from tflgraph... import`, wherever it
    stands (top level, inside a function, under TYPE_CHECKING)."""
    g = nx.DiGraph()
    for path in PACKAGE.rglob("*.py"):
        me = _module(path)
        g.add_node(me)
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.level:
                raise AssertionError(f"{me}: relative import; tflgraph imports absolutely")
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("tflgraph"):
                for alias in node.names:
                    sub = f"{node.module}.{alias.name}"
                    g.add_edge(me, sub if _exists(sub) else node.module)
            elif isinstance(node, ast.Import):
                for alias in node.names:
                    if alias.name.startswith("tflgraph."):
                        g.add_edge(me, alias.name)
    return g


def test_no_import_cycles():
    g = import_graph()
    g.remove_node("tflgraph")  # the public API imports everything and nothing imports it back
    cycles = list(nx.simple_cycles(g))
    assert not cycles, f"import cycles: {cycles}"


def test_the_public_api_is_imported_by_no_module():
    g = import_graph()
    users = sorted(m for m in g.predecessors("tflgraph") if m != "tflgraph.cli")
    assert not users, f"modules importing the top-level package: {users}"


def test_code_map_names_every_package():
    readme = (ROOT / "README.md").read_text()
    section = readme[readme.index("## Code map") :].split("\n## ", 1)[0]
    packages = [p.parent.relative_to(ROOT).as_posix() for p in PACKAGE.glob("*/__init__.py")]
    assert packages
    missing = [p for p in packages if f"`{p}/`" not in section]
    assert not missing, f"packages missing from the README's code map: {missing}"
    assert "`passes/`" in section
