"""SQL Server (2016+, Azure SQL, Babelfish), as a source and as a destination (see
``so_luigi.dialects`` for the files)."""
from . import types, writer  # noqa: F401 -- dialects.value_kind reads types
from .destination import MssqlDestination as Destination
from .source import MssqlSource as Source

EXPRESSIONS = {"postgres": "tsql"}   # T-SQL defaults, CHECKs and filters in PostgreSQL's words (sqlglot)
