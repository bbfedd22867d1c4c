"""PostgreSQL, as a source and as a destination (see ``so_luigi.dialects`` for the files)."""
from . import types, writer  # noqa: F401 -- dialects.value_kind reads types
from .destination import PostgresDestination as Destination
from .source import PostgresSource as Source

EXPRESSIONS = {"mssql": "to_tsql"}     # module names: CHECKs in T-SQL (none needed into PostgreSQL)


