"""The package layout: no import cycle between tflgraph's modules, at run time or under
TYPE_CHECKING; every package is named in the README's code map; test modules share builders
through helper modules in tests/ (never by importing each other or benchmarks/) and register
no pass when imported."""

from __future__ import annotations

import ast
from pathlib import Path

import networkx as nx

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "tflgraph"
TESTS = ROOT / "tests"


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


def imported_modules(path: Path) -> set[str]:
    """Top-level names of the modules a file imports, wherever the import stands."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
    return {name.split(".")[0] for name in names}


def mentions(path: Path, text: str) -> bool:
    """Whether a string constant of the file is `text`."""
    tree = ast.parse(path.read_text())
    return any(isinstance(n, ast.Constant) and n.value == text for n in ast.walk(tree))


# The lead renames this file and points its import at modelbuild when merging issue 17's work.
def test_test_modules_share_builders_through_helpers_only():
    """A test module imports no other test module (shared builders live in tests/ helper
    modules) and no code from benchmarks/, neither as a module nor loaded by file path."""
    bad = []
    for path in sorted([*TESTS.glob("*.py"), *TESTS.glob("passes/*.py")]):
        imported = imported_modules(path)
        bad += [
            f"{path.relative_to(ROOT)} imports {name}"
            for name in sorted(imported)
            if name.startswith("test_") or name == "benchmarks"
        ]
        if "importlib" in imported and mentions(path, "benchmarks"):
            bad.append(f"{path.relative_to(ROOT)} loads code from benchmarks/")
    assert sorted(bad) == [], bad


def _registers(call: ast.AST) -> bool:
    """Whether `call` is a call of `register(...)`/`rule(...)`, or of what such a call returns."""
    while isinstance(call, ast.Call):
        fn = call.func
        name = fn.attr if isinstance(fn, ast.Attribute) else getattr(fn, "id", None)
        if name in ("register", "rule"):
            return True
        call = fn
    return False


def test_test_modules_register_no_pass_when_imported():
    """Test passes and rules are registered by fixtures that unregister them, so that no test
    module leaves a pass in the global registry for the tests that run after it."""
    bad = []
    for path in sorted([*TESTS.glob("*.py"), *TESTS.glob("passes/*.py")]):
        for node in ast.parse(path.read_text()).body:
            calls = getattr(node, "decorator_list", [])
            if isinstance(node, (ast.Expr, ast.Assign)):
                calls = [node.value]
            if any(_registers(c) for c in calls):
                bad.append(f"{path.relative_to(ROOT)}:{node.lineno}")
    assert not bad, f"registered at import: {bad}"
