"""SQL Server's catalog as so_luigi reads it (the queries are the .sql files beside this module),
and what planning needs to cut a table: counts, key boundaries from the statistics histogram or
by numbering rows, size.

Names come from INFORMATION_SCHEMA, which keeps their case everywhere; sys.* views are used only
for what they alone hold (identity, secondary indexes), joined by object and column ids.
"""
import itertools
import re
from importlib import resources

from ... import planning
from ...errors import SchemaError
from ...planning import boundaries_sql, ranged
from ..base import Column, Constraint, Index, Table, same_name
from .connection import ident, qualified


def sql(name):
    """The catalog query ``name`` (sql/<name>.sql beside this module)."""
    return resources.files(__package__).joinpath("sql", f"{name}.sql").read_text(encoding="utf-8")


def schema_exists(conn, schema):
    cur = conn.cursor()
    cur.execute("SELECT 1 FROM INFORMATION_SCHEMA.SCHEMATA WHERE SCHEMA_NAME = %s", (schema,))
    return cur.fetchone() is not None



def all_tables(conn):
    """[(schema, table)] of every base table of every user schema (sql/tables.sql)."""
    cur = conn.cursor()
    cur.execute(sql("tables"))
    return [(r[0], r[1]) for r in cur.fetchall()]


def _source_type(data_type, length, precision, scale, fsp):
    if data_type in ("char", "nchar", "varchar", "nvarchar", "binary", "varbinary"):
        return f"{data_type}({'max' if length == -1 else length})"
    if data_type in ("decimal", "numeric"):
        return f"{data_type}({precision},{scale})"
    if data_type in ("time", "datetime2", "datetimeoffset"):
        return f"{data_type}({fsp})"
    return data_type




def other_objects(conn, schema):
    """[(kind, name)]: what the schema holds besides its tables, which so_luigi does not carry (sql/objects.sql)."""
    with conn.cursor() as cur:
        cur.execute(sql("objects"), {"schema": schema})
        return [(kind, name) for kind, name in cur.fetchall()]

COMPUTED_WHY = ("a plain column of its type holding the values the source computed (copied and verified like "
                "the others)")


COLUMN_SET_WHY = ("the XML view of the table's sparse columns, whose values are copied as their own columns; "
                  "not re-created")
XML_SCHEMA_WHY = "the column is copied as untyped xml (schema collections are not carried)"


def _computation(cur, qualified_name, column):
    """A computed column's definition as the source prints it, PERSISTED when it is; '?' from a
    server without sys.computed_columns."""
    try:
        cur.execute("SELECT definition, CAST(is_persisted AS int) FROM sys.computed_columns "
                    "WHERE object_id = OBJECT_ID(%s) AND name = %s", (qualified_name, column))
        row = cur.fetchone()
    except Exception:  # noqa: BLE001 -- the catalog view is missing: say so, copy the values
        return "its definition is not in this server's catalog"
    if not row:
        return "its definition is not in this server's catalog"
    return f"AS {row[0]}" + (" PERSISTED" if row[1] else "")


def describe(conn, schema, name):
    params = {"schema": schema, "table": name, "qualified": qualified(schema, name)}
    cur = conn.cursor()
    cur.execute(sql("columns"), params)
    rows = cur.fetchall()
    if not rows:
        raise SchemaError(f"table {schema}.{name} not found in the source")
    columns, computed_columns, notes = [], [], []
    for (cname, dtype, nullable, length, precision, scale, fsp, identity, computed, collation, seed, step,
         sparse, column_set, xml_schema) in rows:
        dtype = dtype.lower()
        if column_set:
            notes.append([f"column set {cname}", COLUMN_SET_WHY])
            continue
        if xml_schema:
            notes.append([f"XML schema collection {xml_schema} of {cname}", XML_SCHEMA_WHY])
        if computed:
            computed_columns.append((cname, _computation(cur, params["qualified"], cname)))
        is_time = dtype in ("time", "datetime2", "datetimeoffset")
        columns.append(Column(
            name=cname, data_type=dtype, nullable=bool(nullable), length=length,
            precision=fsp if is_time else precision, scale=scale, identity=bool(identity),
            source_type=_source_type(dtype, length, precision, scale, fsp), collation=collation or "",
            sparse=bool(sparse),
            **({"seed": int(seed), "increment": int(step)} if identity and seed is not None and (seed, step) != (1, 1)
               else {})))
    table = Table(schema=schema, name=name, columns=columns, dialect="mssql", not_carried=notes)
    for cname, how in computed_columns:
        table.not_carried.append([f"computation of {cname} ({how})", COMPUTED_WHY])
        if how.startswith("AS "):
            table.column(cname).computed = how[3:].removesuffix(" PERSISTED")
            table.column(cname).persisted = how.endswith(" PERSISTED")
    cur.execute(sql("primary_key"), params)
    for constraint, column in cur.fetchall():
        table.pk_name = constraint
        table.primary_key.append(resolve_column(table, column))
    cur.execute(sql("indexes"), params)
    by_name = {}
    for idx_name, unique, column, descending, included, where, _ in cur.fetchall():
        idx = by_name.setdefault(idx_name, Index(name=idx_name, columns=[], unique=bool(unique), where=where or "",
                                                 plain=not where))
        if included:
            idx.include.append(resolve_column(table, column))
            idx.plain = False
        else:
            idx.columns.append([resolve_column(table, column), "DESC" if descending else "ASC"])
    table.indexes = list(by_name.values())
    cur.execute(sql("defaults"), params)
    for column, _, definition in cur.fetchall():
        col = table.column(resolve_column(table, column))
        if not col.identity:
            col.default = definition
            col.sequence = _sequence(cur, table.schema, definition)
    _constraints(cur, table, params)
    return table


# a default drawing from a sequence: T-SQL's NEXT VALUE FOR [schema].[name], or Babelfish's
# catalog's PostgreSQL words, nextval('name'::regclass)
_NEXT_VALUE = re.compile(r"NEXT\s+VALUE\s+FOR\s+(?:(\[(?:[^\]]|\]\])+\]|\w+)\s*\.\s*)?(\[(?:[^\]]|\]\])+\]|\w+)", re.I)
_NEXTVAL = re.compile(r"^\(*nextval\('(?:[^'.]+\.)?([^'.]+)'(?:::regclass)?\)\)*$", re.I)


def _unbracket(name):
    return name[1:-1].replace("]]", "]") if name.startswith("[") else name


def _sequence(cur, schema, default):
    """The sequence a column's DEFAULT draws from, as Column.sequence holds it, with
    ``standalone`` (no column owns it) and ``last`` (the last value it gave, None when never used
    or not known: sys.sequences.last_used_value is SQL Server 2017's); None for another default."""
    found = _NEXT_VALUE.search(default or "")
    if found:
        schema, name = (_unbracket(found.group(1)) if found.group(1) else schema), _unbracket(found.group(2))
    else:
        found = _NEXTVAL.match((default or "").strip())
        if not found:
            return None
        name = found.group(1)
    settings = ("SELECT SEQUENCE_SCHEMA, DATA_TYPE, CAST(START_VALUE AS decimal(38,0)), CAST(INCREMENT AS decimal(38,0)), "
                "CAST(MINIMUM_VALUE AS decimal(38,0)), CAST(MAXIMUM_VALUE AS decimal(38,0)), CAST(CYCLE_OPTION AS int) "
                "FROM INFORMATION_SCHEMA.SEQUENCES WHERE SEQUENCE_NAME = %s")
    cur.execute(settings + " AND SEQUENCE_SCHEMA = %s", (name, schema))
    row = cur.fetchone()
    if row is None and not (found.re is _NEXT_VALUE and found.group(1)):
        # a name without its schema (Babelfish prints none): the one sequence of that name
        cur.execute(settings, (name,))
        rows = cur.fetchall()
        row = rows[0] if len(rows) == 1 else None
    if row is None:
        return None
    schema, data_type, start, step, low, high, cycle = row
    last = None
    try:
        cur.execute("SELECT CAST(last_used_value AS decimal(38,0)) FROM sys.sequences WHERE object_id = OBJECT_ID(%s)",
                    (qualified(schema, name),))
        got = cur.fetchone()
        last = int(got[0]) if got and got[0] is not None else None
    except Exception:  # noqa: BLE001 -- before SQL Server 2017 (or Babelfish): the column's values decide
        pass
    return {"name": name, "schema": schema, "type": str(data_type).lower(), "start": int(start), "increment": int(step),
            "min": int(low), "max": int(high), "cache": 1, "cycle": bool(cycle), "last": last, "standalone": True}



_ACTIONS = {"NO_ACTION": "NO ACTION", "CASCADE": "CASCADE", "SET_NULL": "SET NULL", "SET_DEFAULT": "SET DEFAULT"}



def _constraints(cur, table, params):
    """CHECK constraints and foreign keys (mssql_constraints.sql); a disabled one is not enforced
    in the source, so it is not carried, and said so."""
    cur.execute(sql("constraints"), params)
    by_name = {}
    for (name, kind, definition, untrusted, disabled, column, ref_schema, ref_table, ref_column,
         on_update, on_delete, _) in cur.fetchall():
        if disabled:
            if name not in by_name:
                table.not_carried.append([f"{'check' if kind == 'C' else 'foreign key'} {name}",
                                          "disabled in the source"])
                by_name[name] = None
            continue
        if kind == "C":
            table.constraints.append(Constraint(name=name, kind="check", definition=definition,
                                                validated=not untrusted))
            continue
        fk = by_name.get(name)
        if fk is None:
            fk = by_name[name] = Constraint(name=name, kind="foreign_key", definition="", validated=not untrusted,
                                            ref_schema=ref_schema, ref_table=ref_table,
                                            on_update=_ACTIONS.get(on_update, "NO ACTION"),
                                            on_delete=_ACTIONS.get(on_delete, "NO ACTION"))
            table.constraints.append(fk)
        fk.columns.append(resolve_column(table, column))
        fk.ref_columns.append(ref_column)
    for fk in table.foreign_keys:
        fk.definition = (f"FOREIGN KEY ({', '.join(fk.columns)}) REFERENCES {fk.ref_schema}.{fk.ref_table} "
                         f"({', '.join(fk.ref_columns)})")



def resolve_column(table, name):
    """A column named by a key or index, as the table's column list spells it. SQL Server
    compares identifiers by the database collation, mostly case-insensitive, and its catalog
    views need not agree on case (Babelfish's KEY_COLUMN_USAGE says ``id`` where COLUMNS says
    ``Id``): an exact match first, else the one column equal ignoring case."""
    names = [c.name for c in table.columns]
    found = same_name(name, names)
    if found is None:
        raise SchemaError(f"{table.qualified}: key or index column {name!r} is not one of its columns "
                          f"({', '.join(names)})")
    return found



def count_and_boundaries(conn, table, step_for):
    """(rows, boundaries, step): the exact count, then the keys closing each full chunk of
    ``step = step_for(rows)`` rows; for a big table with fresh statistics on its key, the
    histogram's estimate and cuts instead (statistics_cuts), with no scan at all. A primary key
    that is not one integer (a uniqueidentifier, text, a date, several columns) is cut the same
    way by its rows' order (``table.cut = "keys"``; each boundary the key's values as text)."""
    key = table.int_key
    q = qualified(table.schema, table.name)
    cur = conn.cursor()
    keys = None if key is not None else ordered_key(table)
    if key is not None or keys is not None:
        estimated = statistics_cuts(cur, q, step_for, keys)
        if estimated is not None:
            if keys is not None:
                table.cut = "keys"
            return estimated
    cur.execute(f"SELECT COUNT_BIG(*) FROM {q}")
    rows = cur.fetchone()[0]
    step = step_for(rows)
    if (key is None and keys is None) or rows <= step:
        return rows, [], step
    if key is not None:
        cur.execute(boundaries_sql(ident, q, key, step))
        return rows, [r[0] for r in cur.fetchall()], step
    table.cut = "keys"
    texts = ", ".join(f"CONVERT(nvarchar(4000), {ident(c.name)}, {KEY_STYLES.get(c.data_type, 0)})"
                      for c in keys)
    order = ", ".join(ident(c.name) for c in keys)
    cur.execute(f"SELECT {texts} FROM (SELECT {order}, ROW_NUMBER() OVER (ORDER BY {order}) AS so_luigi_rn "
                f"FROM {q}) numbered WHERE so_luigi_rn / {int(step)} * {int(step)} = so_luigi_rn ORDER BY so_luigi_rn")
    return rows, [list(r) for r in cur.fetchall()], step



# Key types a partition boundary can carry as text and back exactly, with the CONVERT style
# that does it (121: ODBC canonical with every fractional digit; 1: 0x hex; 2: money's 4
# decimals); any other type (float, time, datetimeoffset, ...) leaves the table one partition
KEY_STYLES = {"tinyint": 0, "smallint": 0, "int": 0, "bigint": 0, "bit": 0, "decimal": 0, "numeric": 0,
              "money": 2, "smallmoney": 2, "date": 121, "datetime": 121, "datetime2": 121, "smalldatetime": 121,
              "char": 0, "nchar": 0, "varchar": 0, "nvarchar": 0, "uniqueidentifier": 0, "binary": 1, "varbinary": 1}



def ordered_key(table):
    """The primary key's columns when every one can bound a partition (KEY_STYLES), else None."""
    cols = [table.column(k) for k in table.primary_key]
    if not cols or any(c.data_type not in KEY_STYLES or c.length == -1 for c in cols):
        return None
    return cols



def range_sql(select, table, lo, hi):
    """``select`` limited to one partition, (lo, hi] in the key's order: on one integer key as
    planning.ranged does, on any other key (``table.cut == "keys"``) by comparing the key's
    columns in order, each boundary value converted back from its text to the column's type."""
    if table.cut != "keys":
        return ranged(select, ident, table.int_key, lo, hi)
    cols = ordered_key(table)
    where, params = [], []
    if lo is not None:
        sql, p = _lexical(cols, lo, ">")
        where.append(sql)
        params += p
    if hi is not None:
        sql, p = _lexical(cols, hi, "<")
        eq, q = _equal(cols, hi)
        where.append(f"({sql} OR {eq})")
        params += p + q
    if not where:
        return select, None
    return select.replace("%", "%%") + " WHERE " + " AND ".join(where), tuple(params)



def _value(col):
    return f"CONVERT({col.source_type}, %s, {KEY_STYLES[col.data_type]})"



def _equal(cols, values):
    cols = cols[:len(values)]
    return "(" + " AND ".join(f"{ident(c.name).replace('%', '%%')} = {_value(c)}" for c in cols) + ")", list(values)



def _lexical(cols, values, op):
    """(key) op (values) in the key's order: k1 op v1, or k1 = v1 and k2 op v2, and so on; ``values``
    may bound a prefix of the key's columns (a cut from statistics)."""
    terms, params = [], []
    cols = cols[:len(values)]
    for i, col in enumerate(cols):
        eq, p = _equal(cols[:i], values[:i]) if i else ("", [])
        term = f"{ident(col.name).replace('%', '%%')} {op} {_value(col)}"
        terms.append(f"({eq[1:-1]} AND {term})" if i else f"({term})")
        params += p + [values[i]]
    return "(" + " OR ".join(terms) + ")", params



# The primary key's statistics (created with its index, so they share its id): the histogram's
# points as (key, rows up to and with it), and how many rows changed since they were taken.
# sys.dm_db_stats_histogram needs SQL Server 2016 SP1 CU2 or Azure SQL; where it is missing
# (Babelfish, older builds) the statement fails and the rows are numbered instead. {key} is
# the histogram's key (an sql_variant of the key's first column) as the planner takes it: a
# bigint, or the text that bounds a range (KEY_STYLES).
_STATISTICS = """
SELECT {key}, h.range_rows + h.equal_rows, p.rows, p.modification_counter
FROM sys.indexes i
CROSS APPLY sys.dm_db_stats_properties(i.object_id, i.index_id) p
CROSS APPLY sys.dm_db_stats_histogram(i.object_id, i.index_id) h
WHERE i.object_id = OBJECT_ID(%s) AND i.is_primary_key = 1
ORDER BY h.step_number
"""



STATISTICS_SQL = _STATISTICS.format(key="CAST(h.range_high_key AS bigint)")



def statistics_cuts(cur, q, step_for, keys=None):
    """(estimated rows, cuts, step) from the key's histogram, or None when the table is small
    (numbering it is cheap and exact), the statistics are missing or stale (more than a tenth of
    the rows changed since), or the server cannot say. An integer key is cut between the
    histogram's points as well (cdf_cuts); any other key (``keys``, its columns) at the points
    themselves, each cut a one-value prefix of the key: the histogram describes its first column
    only, and (lo, hi] on a prefix still takes every row once (range_sql)."""
    import pymssql
    statement = STATISTICS_SQL
    if keys is not None:
        first = keys[0]
        statement = _STATISTICS.format(key=f"CONVERT(nvarchar(4000), CAST(h.range_high_key AS {first.source_type}), "
                                           f"{KEY_STYLES[first.data_type]})")
    try:
        cur.execute(statement, (q,))
        steps = cur.fetchall()
    except pymssql.Error:
        return None
    if not steps:
        return None
    rows, changed = steps[0][2] or 0, steps[0][3] or 0
    if rows < planning.STATISTICS_FROM_ROWS or changed > rows / 10:
        return None
    counts = list(itertools.accumulate(float(n) for _, n, *_ in steps))
    total = int(round(counts[-1]))
    step = step_for(total)
    if total <= step:
        return None                 # one partition: the exact count is the cheaper answer
    if keys is None:
        return total, planning.cdf_cuts(list(zip([int(k) for k, *_ in steps], counts)), step, total), step
    return total, [[k] for k in planning.point_cuts([k for k, *_ in steps], counts, step, total)], step



def table_bytes(conn, table):
    """Size of the table's data pages: it sizes the partitions (--chunk-mb) and schedules the
    biggest first. From sys.dm_db_partition_stats, else from sp_spaceused, which is granted to
    public, for a login without VIEW DATABASE STATE; None when neither answers (partitions are
    then cut by --chunk-rows alone)."""
    name = qualified(table.schema, table.name)
    try:
        cur = conn.cursor()
        cur.execute("SELECT SUM(used_page_count) * 8192 FROM sys.dm_db_partition_stats "
                    "WHERE object_id = OBJECT_ID(%s) AND index_id IN (0, 1)", (name,))
        row = cur.fetchone()
        if row and row[0] is not None:
            return int(row[0])
    except Exception:  # noqa: BLE001 -- a missing privilege: try the procedure granted to public
        pass
    try:
        cur = conn.cursor()
        cur.execute("EXEC sp_spaceused @objname = %s", (name,))
        row = cur.fetchone()              # name, rows, reserved, data, index_size, unused: '123 KB'
        return int(str(row[3]).split()[0]) * 1024 if row else None
    except Exception:  # noqa: BLE001 -- no size only costs the sizing and the ordering
        return None



# sql_variant's value as text, by its base type: each in a form that reads back exactly (17
# digits of a float, 4 decimals of money, every fractional digit of a time, hex of bytes); any
# other base type as CAST to nvarchar prints it
_VARIANT_TEXT = [
    (("float",), "LTRIM(RTRIM(CONVERT(nvarchar(60), CAST({c} AS float), 3)))"),
    (("real",), "LTRIM(RTRIM(CONVERT(nvarchar(60), CAST({c} AS real), 3)))"),
    (("money", "smallmoney"), "LTRIM(RTRIM(CONVERT(nvarchar(60), CAST({c} AS money), 2)))"),
    (("datetime", "smalldatetime"), "CONVERT(nvarchar(60), CAST({c} AS datetime), 121)"),
    (("date",), "CONVERT(nvarchar(60), CAST({c} AS date), 121)"),
    (("time",), "CONVERT(nvarchar(60), CAST({c} AS time(7)), 121)"),
    (("datetime2",), "CONVERT(nvarchar(60), CAST({c} AS datetime2(7)), 121)"),
    (("datetimeoffset",), "CONVERT(nvarchar(60), CAST({c} AS datetimeoffset(7)), 121)"),
    (("binary", "varbinary"), "CONVERT(nvarchar(max), CAST({c} AS varbinary(8000)), 1)"),
]


def variant_sql(name):
    """A sql_variant column as text: its base type (with precision and scale, or length), U+001F,
    then its value as text (``_VARIANT_TEXT``); NULL stays NULL. encode.variant_json makes it
    {"type": ..., "value": ...}."""
    c = ident(name)

    def prop(p):
        return f"CAST(SQL_VARIANT_PROPERTY({c}, '{p}') AS nvarchar(20))"
    base = f"CAST(SQL_VARIANT_PROPERTY({c}, 'BaseType') AS nvarchar(128))"
    sized = (f"CASE WHEN {base} IN ('decimal', 'numeric') THEN N'(' + {prop('Precision')} + N',' + {prop('Scale')} + N')' "
             f"WHEN {base} IN ('time', 'datetime2', 'datetimeoffset') THEN N'(' + {prop('Scale')} + N')' "
             f"WHEN {base} IN ('char', 'varchar', 'binary', 'varbinary') THEN N'(' + {prop('MaxLength')} + N')' "
             f"WHEN {base} IN ('nchar', 'nvarchar') THEN N'(' + CAST(CAST(SQL_VARIANT_PROPERTY({c}, 'MaxLength') AS int) / 2 "
             f"AS nvarchar(20)) + N')' ELSE N'' END")
    whens = " ".join(f"WHEN {base} IN ({', '.join(repr(b) for b in bases)}) THEN {expr.format(c=c)}"
                     for bases, expr in _VARIANT_TEXT)
    value = f"CASE {whens} ELSE CAST({c} AS nvarchar(max)) END"
    return f"CASE WHEN {c} IS NULL THEN CAST(NULL AS nvarchar(max)) ELSE {base} + {sized} + NCHAR(31) + {value} END"


# the types no driver returns as a value of their own: read as text (read_sql), made again from it
# by a SQL Server destination (bulk.from_text), hashed as that text by its checksum
READ_AS_TEXT = frozenset({"sql_variant", "hierarchyid", "geography", "geometry"})


def read_sql(col):
    """How a column is read: as it is, or, for the types no driver returns as a value of their
    own, as text: sql_variant (variant_sql), hierarchyid (its path), geography and geometry (EWKT:
    SRID, then WKT with Z and M)."""
    c = ident(col.name)
    if col.data_type == "sql_variant":
        return variant_sql(col.name)
    if col.data_type == "hierarchyid":
        return f"{c}.ToString()"
    if col.data_type in ("geography", "geometry"):
        return f"CASE WHEN {c} IS NULL THEN NULL ELSE 'SRID=' + CAST({c}.STSrid AS varchar(11)) + ';' + {c}.AsTextZM() END"
    return c


def select_sql(table, lo, hi):
    """SELECT of one partition: (sql, params) for pymssql."""
    cols = ", ".join(read_sql(c) for c in table.columns)
    return range_sql(f"SELECT {cols} FROM {qualified(table.schema, table.name)}", table, lo, hi)
