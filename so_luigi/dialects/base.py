"""The neutral table model every dialect produces, and identifier quoting helpers.

A ``Table`` describes a source table as found in its catalog; ``typemap`` adds the PostgreSQL type
of each column. It round-trips through JSON so the definition a run planned with is stored in the
marker tables and reused by every later task of that run.
"""
from dataclasses import asdict, dataclass, field

# a value a writer cannot send as it is: its row takes the slower, exact way (see mssql_ddl.carrier)
SIDE = type("Side", (), {"__repr__": lambda self: "SIDE"})()

INTEGER_TYPES = {"tinyint", "smallint", "int", "integer", "bigint", "int2", "int4", "int8"}


@dataclass
class Column:
    name: str
    data_type: str            # lower-case base type name as the source catalog spells it
    nullable: bool = True
    length: int = None        # character/binary length; -1 means (max)
    precision: int = None     # numeric precision, or fractional-second digits of time types
    scale: int = None
    identity: bool = False
    source_type: str = ""     # the full type as declared, for messages and the type report
    pg_type: str = ""         # filled by typemap.map_table
    kind: str = ""            # value converter kind, filled by typemap.map_table
    collation: str = ""       # SQL Server text columns: carried to a SQL Server destination


@dataclass
class Index:
    name: str
    columns: list             # [[column, "ASC"|"DESC"], ...]
    unique: bool = False


@dataclass
class Table:
    schema: str
    name: str
    columns: list
    primary_key: list = field(default_factory=list)
    pk_name: str = ""
    indexes: list = field(default_factory=list)
    dialect: str = ""         # the source's: SQL Server index names are per table, PostgreSQL's per schema
    layout: str = "plain"     # destination layout chosen when planned: plain or partitioned (see load.py)
    unlogged: bool = False    # loaded UNLOGGED, SET LOGGED when complete

    @property
    def qualified(self):
        return f"{self.schema}.{self.name}"

    def column(self, name):
        for c in self.columns:
            if c.name == name:
                return c
        raise KeyError(f"{self.qualified} has no column {name!r}")

    @property
    def int_key(self):
        """The single integer primary-key column partitions are cut on, or None."""
        if len(self.primary_key) != 1:
            return None
        col = self.column(self.primary_key[0])
        return col.name if col.data_type in INTEGER_TYPES else None

    @property
    def identity_columns(self):
        return [c.name for c in self.columns if c.identity]

    def to_json(self):
        return asdict(self)

    @classmethod
    def from_json(cls, data):
        data = dict(data)
        data["columns"] = [Column(**c) for c in data["columns"]]
        data["indexes"] = [Index(**i) for i in data.get("indexes", [])]
        return cls(**data)


def pg_ident(name):
    """Quote a PostgreSQL identifier (always, so case and reserved words survive)."""
    return '"' + name.replace('"', '""') + '"'


def percent_safe(sql):
    """SQL text (names already quoted) for a driver call that also passes parameters: psycopg2
    and pymssql read every '%' as the start of a placeholder, so a name's '%' is doubled."""
    return sql.replace("%", "%%")


def pg_qualified(schema, name):
    return f"{pg_ident(schema)}.{pg_ident(name)}"


def mssql_ident(name):
    return "[" + name.replace("]", "]]") + "]"
