"""PostgreSQL, as a source and as a destination (see ``so_luigi.dialects`` for the files)."""
from . import types, writer  # noqa: F401 -- dialects.value_kind reads types
from .destination import PostgresDestination as Destination
from .source import PostgresSource as Source

EXPRESSIONS = {}        # module names: a PostgreSQL source's expressions need no translation into PostgreSQL


