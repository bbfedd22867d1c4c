"""The package's shape, read from its source: no import cycles (imports inside functions
included); everything one database knows in its own package under ``so_luigi/dialects``, every
package with the same files; no driver import and no branch on a dialect outside them; an engine
that imports no Luigi."""
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
    assert "so_luigi.dialects.postgres" in graph["so_luigi.dialects"]      # the reader works
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


DRIVERS = {"psycopg2", "pymssql", "psycopg", "pyodbc", "mssql_python"}


def top_level_imports(path):
    """Top-level names of every module ``path`` imports (absolute imports), anywhere in it."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and not node.level and node.module:
            found.add(node.module.split(".")[0])
    return found


def test_only_the_dialect_packages_import_a_database_driver():
    outside = [p for p in PACKAGE.rglob("*.py") if "dialects" not in p.relative_to(PACKAGE).parts]
    found = [f"{p.relative_to(PACKAGE.parent)}: {', '.join(sorted(top_level_imports(p) & DRIVERS))}"
             for p in outside if top_level_imports(p) & DRIVERS]
    assert found == []
    # the check sees a driver import where there is one
    assert top_level_imports(PACKAGE / "dialects" / "postgres" / "connection.py") & DRIVERS == {"psycopg2"}


# what every database's package holds, each file with the same role (see so_luigi/dialects/__init__.py)
DIALECT_FILES = {"__init__", "connection", "catalog", "types", "ddl", "checksum", "source", "destination",
                 "state", "writer"}


def test_every_database_is_one_package_with_the_same_files():
    from so_luigi import dialects
    packages = sorted(p for p in (PACKAGE / "dialects").iterdir() if p.is_dir() and (p / "__init__.py").exists())
    assert [p.name for p in packages] == sorted(dialects.PACKAGES)
    for package in packages:
        names = {p.stem for p in package.glob("*.py")}
        assert DIALECT_FILES <= names, f"{package.name} lacks {sorted(DIALECT_FILES - names)}"
        assert list(package.glob("sql/*.sql")), f"{package.name} has no catalog queries"
        mod = dialects.PACKAGES[package.name]
        assert mod.Source.dialect == mod.Destination.dialect == package.name
        assert mod.Destination.state is not None


# the Luigi layer: tasks and their targets, the settings as luigi.Config sections, the one module
# using Luigi's private parts, the CLI (luigid, demo); the engine below it imports no Luigi
LUIGI_LAYER = {"tasks", "targets", "luigi_config", "luigi_internals", "cli", "__init__"}


def test_the_engine_imports_no_luigi():
    engine = [p for p in PACKAGE.rglob("*.py") if module_name(p).split(".", 1)[-1] not in LUIGI_LAYER
              and p.name != "__init__.py" or p.parent != PACKAGE and p.name == "__init__.py"]
    found = [str(p.relative_to(PACKAGE.parent)) for p in engine if "luigi" in top_level_imports(p)]
    assert found == []
    assert "luigi" in top_level_imports(PACKAGE / "tasks.py")      # the check sees it where it is
