"""SQL Server as destination: DDL, the ownership mark, partition clearing.

Tables are created as heaps with the source's columns; the primary key (clustered), secondary
indexes and identity seed come after every partition is loaded (``finish_table_sql``, ``reseed_sql``),
as for PostgreSQL. Statements and (sql, params) pairs are for pymssql, whose placeholder is %s.
A source table is what a source's ``describe`` made of it.
"""
import re

from ...errors import SchemaError
from .catalog import range_sql
from .connection import ident, literal, qualified
from .types import _check_names, _names, _pk_name, column_type


OWNER_PROPERTY = "so_luigi"   # the extended property marking a table so_luigi created



def create_sequence_sql(seq, schema):
    """A SQL Server source's sequence (Column.sequence) a DEFAULT draws from, in ``schema``
    unless there (tables may share one): type, start, step, bounds, cycling."""
    q = qualified(schema, seq["name"])
    data_type = seq["type"] if re.fullmatch(r"(tiny|small|big)?int|(decimal|numeric)(\(\d+(,\s*0)?\))?", seq["type"]) else "bigint"
    return (f"IF OBJECT_ID({literal(q)}, 'SO') IS NULL CREATE SEQUENCE {q} AS {data_type} START WITH {int(seq['start'])} "
            f"INCREMENT BY {int(seq['increment'])} MINVALUE {int(seq['min'])} MAXVALUE {int(seq['max'])} "
            f"{'CYCLE' if seq['cycle'] else 'NO CYCLE'}")


def create_schema_sql(schema):
    """CREATE SCHEMA must be alone in its batch, hence EXEC; SCHEMA_ID takes the bare name."""
    _check_names([schema])
    return f"IF SCHEMA_ID({literal(schema)}) IS NULL EXEC({literal('CREATE SCHEMA ' + ident(schema))})"



def _collate(col, sql_type):
    """A SQL Server source column's collation, for text types: code page and case sensitivity
    (keys, unique indexes) stay the source's, not the destination database's default."""
    if not col.collation or not re.fullmatch(r"n?(var)?char\(\d+\)|n?varchar\(max\)", sql_type):
        return ""
    if not re.fullmatch(r"\w+", col.collation):
        raise SchemaError(f"collation {col.collation!r} of column {col.name} is not a collation name; "
                          "exclude the table with --tables")
    return f" COLLATE {col.collation}"



def create_table_sql(schema, table, source_dialect):
    """CREATE TABLE as a heap: the destination types, NULL / NOT NULL as the source, IDENTITY(1,1),
    a SQL Server source's computed columns as they are (Destination.carry decides which).

    NULL is always spelled out: without it the session's ANSI_NULL_DFLT settings decide. Identity
    values are inserted as read (bulk copy KEEPIDENTITY); ``reseed_sql`` moves the seed.
    """
    _check_names([schema] + _names(table))
    cols = []
    for c in table.columns:
        if c.generated and source_dialect == "mssql":      # a computed column, as the source has it
            persisted = " PERSISTED" + ("" if c.nullable else " NOT NULL") if c.persisted else ""
            cols.append(f"{ident(c.name)} AS ({c.generated}){persisted}")
            continue
        final = column_type(c, source_dialect, table)
        collate = _collate(c, final) if source_dialect == "mssql" else ""     # PostgreSQL's: Destination.carry
        spec = f"{ident(c.name)} {final}{collate}" + (" SPARSE" if c.sparse else "")
        spec += f" IDENTITY({_seeded(c)}) NOT NULL" if c.identity else (" NULL" if c.nullable else " NOT NULL")
        if c.default and not c.identity:
            spec += f" DEFAULT {c.default}"         # T-SQL: the source's, or Destination.carry's
        cols.append(spec)
    return f"CREATE TABLE {qualified(schema, table.name)} (\n    " + ",\n    ".join(cols) + "\n)"



def _seeded(col):
    """IDENTITY's (seed, increment): a SQL Server source's own, else (1, 1)."""
    return f"{int(col.seed)},{int(col.increment)}" if col.seed is not None else "1,1"



def drop_table_sql(schema, name):
    return f"DROP TABLE {qualified(schema, name)}"




def _index_sql(q, table, idx):
    """A PostgreSQL unique index lets many rows hold NULL, SQL Server's only one: from a PostgreSQL
    source, a unique index on nullable columns covers the rows where all are set, as there."""
    cols = ", ".join(f"{ident(c)} {d}" for c, d in idx.columns)
    unique = "UNIQUE " if idx.unique else ""
    nullable = [c for c, _ in idx.columns if table.column(c).nullable]
    # a SQL Server source's filter as it is, a PostgreSQL partial index's as Destination.carry wrote it
    filters = [idx.where] if idx.where else []
    if idx.unique and nullable and table.dialect == "postgres":
        filters += [f"{ident(c)} IS NOT NULL" for c in nullable]
    where = f" WHERE {' AND '.join(filters)}" if filters else ""
    include = f" INCLUDE ({', '.join(ident(c) for c in idx.include)})" if idx.include else ""
    return f"CREATE {unique}NONCLUSTERED INDEX {ident(idx.name)} ON {q} ({cols}){include}{where}"



def identity_sql(schema, table, col):
    """(largest value of identity column ``col``, the table's current identity value)."""
    q = qualified(schema, table.name)
    return f"SELECT MAX({ident(col)}), IDENT_CURRENT({literal(q)}) FROM {q}"



def reseed_sql(schema, table, maximum):
    """DBCC CHECKIDENT with the table's largest identity value as a literal: it takes no subquery,
    and Babelfish no variable either. After RESEED to m on a table with rows, the next value is
    m + 1; an empty table keeps its seed (the caller sends nothing). The name is a plain literal
    when it is ASCII (the same in every code page), as Babelfish 4.3 misreads N'...' there."""
    q = qualified(schema, table.name)
    name = "'" + q.replace("'", "''") + "'" if q.isascii() else literal(q)
    return f"DBCC CHECKIDENT ({name}, RESEED, {int(maximum)}) WITH NO_INFOMSGS"



def finish_table_sql(schema, table):
    """Statements run once every partition is loaded: clustered primary key (columns in the
    source's order), then nonclustered indexes. Each index build takes its statistics with a
    full scan; other columns' statistics SQL Server creates when a query first needs them
    (AUTO_CREATE_STATISTICS), so no UPDATE STATISTICS (which Babelfish refuses besides).

    Index names are kept: SQL Server's need only be unique per table, so both a SQL Server and a
    PostgreSQL source's names fit.
    """
    _check_names([schema] + _names(table))
    q = qualified(schema, table.name)
    out = []
    if table.primary_key:
        cols = ", ".join(ident(c) for c in table.primary_key)
        out.append(f"ALTER TABLE {q} ADD CONSTRAINT {ident(_pk_name(table))} PRIMARY KEY CLUSTERED ({cols})")
    out += [_index_sql(q, table, idx) for idx in table.indexes]
    # a SQL Server source's CHECK constraints as its catalog prints them (PostgreSQL's are not
    # carried: Destination.carry); an untrusted one stays untrusted (WITH NOCHECK)
    out += [f"ALTER TABLE {q}{'' if con.validated else ' WITH NOCHECK'} ADD CONSTRAINT {ident(con.name)} "
            f"CHECK {con.definition}" for con in table.constraints if con.kind == "check"]
    return out



def foreign_key_sql(schema, table, fk, ref_columns):
    """ALTER TABLE ... ADD CONSTRAINT ... FOREIGN KEY: checked as it is added (WITH CHECK, SQL
    Server's default), unless the source's key is not trusted (WITH NOCHECK)."""
    cols = ", ".join(ident(c) for c in fk.columns)
    refs = ", ".join(ident(c) for c in ref_columns)
    return (f"ALTER TABLE {qualified(schema, table.name)}{'' if fk.validated else ' WITH NOCHECK'} ADD CONSTRAINT "
            f"{ident(fk.name)} FOREIGN KEY ({cols}) REFERENCES {qualified(fk.ref_schema or schema, fk.ref_table)} ({refs}) "
            f"ON DELETE {fk.on_delete} ON UPDATE {fk.on_update}")



def owner_mark_sql(schema, name, value):
    """Mark a table as so_luigi's, as COMMENT ON TABLE does on PostgreSQL: an extended property."""
    return ("EXEC sys.sp_addextendedproperty @name = N'" + OWNER_PROPERTY + "', @value = %s, "
            "@level0type = N'SCHEMA', @level0name = %s, @level1type = N'TABLE', @level1name = %s",
            (value, schema, name))



def owner_query_sql(schema, name):
    """The mark's value, or no row when the table or its mark does not exist (sql_variant is cast:
    DB-Lib clients cannot read it)."""
    return ("SELECT CAST(value AS nvarchar(4000)) FROM sys.fn_listextendedproperty(N'" + OWNER_PROPERTY
            + "', N'SCHEMA', %s, N'TABLE', %s, NULL, NULL)", (schema, name))



def clear_range_sql(schema, table, lo, hi):
    """(sql, params) deleting a partition's key range (lo, hi] before it is loaded again, or the
    whole table when it has no integer key: a rerun never duplicates rows. DELETE, not TRUNCATE,
    so it needs no ALTER permission and commits with the load. TABLOCKX: the delete's first lock
    on the table is then the one it keeps, so it waits for other partitions' bulk (BU) locks
    instead of holding row locks they wait for (a deadlock when two retries run at once)."""
    return range_sql(f"DELETE FROM {qualified(schema, table.name)} WITH (TABLOCKX)", table, lo, hi)



def declared_table_sql(schema, table, primary_key=False):
    """CREATE TABLE with each column's type as the definition declares it (a SQL Server table's
    own source_type): for building a source, not for a copy."""
    cols = [f"{ident(c.name)} {c.source_type}" + (" IDENTITY(1,1)" if c.identity else "")
            + (" NULL" if c.nullable else " NOT NULL") for c in table.columns]
    if primary_key:
        cols.append(f"CONSTRAINT {ident(table.pk_name)} PRIMARY KEY CLUSTERED "
                    f"({', '.join(ident(c) for c in table.primary_key)})")
    return f"CREATE TABLE {qualified(schema, table.name)} ({', '.join(cols)})"
