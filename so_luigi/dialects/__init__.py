"""The databases so_luigi speaks, each as a ``Source`` and a ``Destination`` (see ``base``).

These two functions are the one place a dialect is chosen; everything above them talks to the
protocols. Below them, per dialect: ``postgres`` and ``mssql`` (connections, catalog reads, SQL
text), ``mssql_bulk`` (SQL Server's writer, the TDS bulk copy), ``pg_types`` and ``mssql_ddl``
(each destination's type rules, as data).
"""
from .mssql_destination import MssqlDestination
from .mssql_source import MssqlSource
from .pg_destination import PostgresDestination
from .pg_source import PostgresSource

SOURCES = {"postgres": PostgresSource, "mssql": MssqlSource}
DESTINATIONS = {"postgres": PostgresDestination, "mssql": MssqlDestination}


def source(endpoint, snapshot=None):
    """The Source for ``endpoint`` (a config.Endpoint), reading at ``snapshot`` where it can."""
    return SOURCES[endpoint.url.dialect](endpoint, snapshot)


def destination(endpoint):
    """The Destination for ``endpoint`` (a config.Endpoint)."""
    return DESTINATIONS[endpoint.url.dialect](endpoint)


def translate(exc, src, dst):
    """A driver error raised while working as a one-line SoLuigiError naming its side, or None
    for an error of no driver."""
    sides = [side for side in (src, dst) if side.owns(exc)]
    if not sides:
        return None
    role = sides[0].endpoint.role if len(sides) == 1 else "source or target"
    return sides[0].translate(exc, role)
