"""The databases so_luigi speaks, one package each (``postgres``, ``mssql``), every package with
the same files: ``connection`` (sessions, quoting, driver errors), ``catalog`` (+ its .sql),
``types`` (the destination's type rules, as data), ``ddl``, ``checksum``, ``source``,
``destination``, ``state`` (the marker tables' SQL in its words), ``writer``
(building a source), and what only it has
(``snapshot`` and ``progress`` for PostgreSQL; ``bulk``, the TDS bulk copy, and ``tsql``, T-SQL
expressions, for SQL Server). A new database is one new package, registered in PACKAGES.

The functions here are the one place a dialect is chosen; everything above them talks to the
protocols of ``base``.
"""
from . import mssql, postgres

PACKAGES = {"postgres": postgres, "mssql": mssql}


def _package(dialect):
    try:
        return PACKAGES[dialect]
    except KeyError:
        raise ValueError(f"unknown dialect {dialect!r}; known: {', '.join(PACKAGES)}") from None


def reusing_sessions():
    """A context within which sessions opened one after another reuse their connections, where
    a dialect keeps them (PostgreSQL's: ``postgres.connection.reusing``)."""
    return postgres.connection.reusing()


def source(endpoint, snapshot=None):
    """The Source for ``endpoint`` (a config.Endpoint), reading at ``snapshot`` where it can."""
    return _package(endpoint.url.dialect).Source(endpoint, snapshot)


def destination(endpoint):
    """The Destination for ``endpoint`` (a config.Endpoint)."""
    return _package(endpoint.url.dialect).Destination(endpoint)


def replace_table(endpoint, table, rows):
    """Build a source: ``table`` (re)created in ``endpoint``'s schema and filled with ``rows``
    (each dialect's ``writer``: dumps and the generated sample). Returns (rows, bytes or None)."""
    return _package(endpoint.url.dialect).writer.replace_table(endpoint, table, rows)


def expressions(source_dialect, into):
    """The module translating ``source_dialect``'s expressions (defaults, CHECKs, index filters)
    into ``into``'s words, or None where there is nothing to translate (the same database) or
    no translator. Imported when first asked for (the SQL Server one needs sqlglot)."""
    name = _package(source_dialect).EXPRESSIONS.get(into)
    if name is None:
        return None
    import importlib
    return importlib.import_module(f"{_package(source_dialect).__name__}.{name}")


def value_kind(dialect, column):
    """How ``dialect``'s driver returns values of ``column``: its value converter (encode.converter)."""
    return _package(dialect).types.kind_of(column)


def translate(exc, src, dst):
    """A driver error raised while working as a one-line SoLuigiError naming its side, or None
    for an error of no driver."""
    sides = [side for side in (src, dst) if side.owns(exc)]
    if not sides:
        return None
    role = sides[0].endpoint.role if len(sides) == 1 else "source or target"
    return sides[0].translate(exc, role)
