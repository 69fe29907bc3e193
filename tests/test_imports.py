"""The shape of the package: every import points down, and only `__main__` imports the command line.

The imports are read from the source (ast), every one of them, the ones
inside functions included: an import put off to keep start-up fast still
ties two modules together.
"""

import ast
from pathlib import Path

from conftest import REPO

PACKAGE = REPO / "illume"


def module_name(path: Path) -> str:
    parts = path.relative_to(REPO).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(path): path for path in sorted(PACKAGE.rglob("*.py"))}


def imports(name: str) -> set[str]:
    """Return the modules of the package that module NAME imports, anywhere in its code."""
    path = MODULES[name]
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: from . import x, from ..errors import y
                anchor = package.split(".")
                anchor = anchor[: len(anchor) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            found.add(base)
            # `from illume import buffer` imports the module illume.buffer.
            found.update(f"{base}.{alias.name}" for alias in node.names if f"{base}.{alias.name}" in MODULES)
    return {module for module in found if module in MODULES and module != name}


GRAPH = {name: imports(name) for name in MODULES}


def find_circle() -> list[str] | None:
    """Return a circle of imports as the list of modules along it, or None."""
    done: set[str] = set()

    def visit(name: str, path: list[str]) -> list[str] | None:
        if name in path:
            return path[path.index(name):] + [name]
        if name in done:
            return None
        for imported in sorted(GRAPH[name]):
            circle = visit(imported, path + [name])
            if circle:
                return circle
        done.add(name)
        return None

    for name in sorted(GRAPH):
        circle = visit(name, [])
        if circle:
            return circle
    return None


def test_the_walk_sees_the_package():
    # Guards the test below against reading nothing: these imports exist.
    assert {"illume.cli", "illume.answer", "illume.output", "illume.backends.http"} <= set(MODULES)
    assert "illume.answer" in GRAPH["illume.cli"]
    assert "illume.backends.http" in GRAPH["illume.backends"]  # inside a function
    assert "illume.buffer" in GRAPH["illume.answer"]  # `from illume import buffer as buf`, inside a function


def test_no_import_circle():
    assert find_circle() is None, " -> ".join(find_circle())


def test_only_main_imports_the_command_line():
    assert sorted(name for name, imported in GRAPH.items() if "illume.cli" in imported) == ["illume.__main__"]
