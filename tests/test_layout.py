"""The package's shape, read from its source: no import cycles (imports inside functions
included), and no branch on a dialect outside ``so_luigi/dialects``."""
import ast
import pathlib

import pytest

PACKAGE = pathlib.Path(__file__).resolve().parent.parent / "so_luigi"


def module_name(path):
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def modules():
    return {module_name(p): p for p in PACKAGE.rglob("*.py")}


def imports(name, path, known):
    """Modules of the package ``name`` imports anywhere in its file, at top level or not. Importing
    ``a.b`` from outside package ``a`` also runs ``a``'s __init__, so that counts as an import of
    ``a``; a module's own packages are initialized before it runs, so they never count."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()

    def add(target):
        parts = target.split(".")
        for n in range(1, len(parts) + 1):
            candidate = ".".join(parts[:n])
            ancestor = name.startswith(candidate + ".")     # initialized before ``name`` runs
            if candidate in known and not ancestor and candidate != name:
                found.add(candidate)
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                add(alias.name)
        elif isinstance(node, ast.ImportFrom):
            base = package
            for _ in range(node.level - 1):
                base = base.rpartition(".")[0]
            target = (f"{base}.{node.module}" if node.module else base) if node.level else node.module
            add(target)
            for alias in node.names:
                add(f"{target}.{alias.name}")
    return found


def test_the_modules_import_each_other_without_a_cycle():
    known = modules()
    graph = {name: imports(name, path, known) for name, path in known.items()}
    assert "so_luigi.dialects.pg_destination" in graph["so_luigi.dialects"]      # the reader works
    done, path = set(), []

    def visit(node):
        if node in path:
            cycle = path[path.index(node):] + [node]
            pytest.fail("import cycle: " + " -> ".join(cycle))
        if node in done:
            return
        path.append(node)
        for nxt in sorted(graph[node]):
            visit(nxt)
        path.pop()
        done.add(node)
    for name in sorted(graph):
        visit(name)


def dialect_branches(path):
    """Comparisons with a dialect's name ('postgres', 'mssql') in a file."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Compare):
            values = [node.left, *node.comparators]
            names = [v.value for v in values if isinstance(v, ast.Constant)]
            text = ast.unparse(node)
            if any(n in ("postgres", "mssql") for n in names) or ".dialect" in text and len(values) > 1:
                found.append(f"{path.relative_to(PACKAGE.parent)}:{node.lineno}: {text}")
    return found


def test_only_the_dialects_package_branches_on_a_dialect():
    """config parses the URL's scheme into a dialect name; everything else asks a Source or a
    Destination (so_luigi/dialects/__init__.py chooses them)."""
    outside = [p for p in PACKAGE.rglob("*.py")
               if "dialects" not in p.relative_to(PACKAGE).parts and p.name != "config.py"]
    branches = [b for p in outside for b in dialect_branches(p)]
    assert branches == []
    # the check sees a branch where there is one
    assert dialect_branches(PACKAGE / "config.py")
