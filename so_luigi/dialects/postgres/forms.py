"""How PostgreSQL values travel into a database without PostgreSQL's types (SQL Server): arrays as
JSON, enums as their labels, domains as their base type, and the types with no counterpart as their
PostgreSQL text. The source reads them so (source.batches), the destination types and checks them
so (mssql types, destination, to_tsql): one definition for both sides."""
from dataclasses import replace

from ..base import type_name


# PostgreSQL types SQL Server has no counterpart for, carried as their PostgreSQL text (what
# ``col::text`` prints, which casts back in PostgreSQL): (n) of nvarchar, or max
TEXT_FORM = {
    "inet": 43, "cidr": 43, "macaddr": 17, "macaddr8": 23, "pg_lsn": 17, "interval": 100, "timetz": 30,
    "bit": -1, "varbit": -1, "tsvector": -1, "tsquery": -1, "xml": -1, "point": -1, "line": -1,
    "lseg": -1, "box": -1, "path": -1, "polygon": -1, "circle": -1, "name": 64, "txid_snapshot": -1,
    "pg_snapshot": -1, **{r: -1 for r in ("int4range", "int8range", "numrange", "tsrange", "tstzrange",
                                           "daterange", "int4multirange", "int8multirange", "nummultirange",
                                           "tsmultirange", "tstzmultirange", "datemultirange")},
}


def user_type(col, table):
    """The entry of ``table.types`` (postgres catalog.user_types) for a column's type, or None."""
    for entry in (table.types if table is not None else []):
        if entry.get("typname") == col.data_type:
            return entry
    return None


def pg_form(col, table):
    """How a PostgreSQL column's values travel into SQL Server: (form, what it needs):
    ("json", col) an array, as its JSON text (array_to_json); ("enum", labels) an enum, as its
    label; ("text", col) a type SQL Server has none of, as its PostgreSQL text; (None, column) a
    built-in type, read by the driver: for a domain, its base type's column."""
    if col.data_type.startswith("_") or (col.source_type or "").rstrip().endswith("]"):
        return "json", col
    if not col.user_type:
        return ("text" if type_name(col.data_type) in TEXT_FORM else None), col
    entry = user_type(col, table)
    if entry and entry["kind"] == "e":
        return "enum", list(entry["labels"] or [])
    if entry and entry["kind"] == "d" and entry.get("base"):
        base = entry["base"]
        bare = base.split(".")[-1].strip('"')
        inner = replace(col, data_type=type_name(bare), source_type=base,
                        user_type=not builtin(base), precision=None, length=None, scale=None)
        return pg_form(inner, table)
    return "text", col


def builtin(pg_type):
    """A type format_type() prints unqualified (PostgreSQL's own) rather than schema.name."""
    return "." not in pg_type.split("(")[0]
