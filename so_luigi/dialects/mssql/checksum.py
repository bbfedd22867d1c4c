"""Content checksums of rows in SQL Server: computed by the server (a SHA2-256 of each row's JSON
text, summed), when both sides are SQL Server, and in Python from rows as pymssql returns them,
when the other side is not."""
import datetime as dt
import logging
import decimal
import struct
import uuid

from ...encode import md5
from ..base import type_name
from ..postgres.forms import pg_form
from .catalog import READ_AS_TEXT, range_sql, read_sql
from .connection import ident, literal, qualified
from .types import _mapped

log = logging.getLogger("luigi-interface.so_luigi")


# The JSON checksum (row_hash_sql, summed by summed_sql): an order-independent sum over rows.
#
# Each row becomes one JSON text (FOR JSON ... INCLUDE_NULL_VALUES, so NULL and '' differ),
# hashed with SHA2-256; the first 8 bytes as BIGINT, summed as DECIMAL(38,0), cannot overflow.
# It is used on both sides when source and destination are SQL Server with identical column
# types, so the same server function formats each value on both. CHECKSUM_AGG is not used: it
# XORs 32-bit hashes, and two equal changes cancel. Columns get positional JSON keys, so a
# column name with a dot (a path in FOR JSON PATH) or a clash cannot change or break the text.
# Binary columns are not in the JSON (Babelfish's FOR JSON refuses them) but appended to its
# bytes, each as 0x00 for NULL or 0x01, its length and its bytes, so no two rows run together.
# The aggregate is over a derived table: SQL Server refuses a subquery inside SUM().



def summed_sql(row_hash, schema, table, lo=None, hi=None):
    """(sql, params): (COUNT_BIG(*), the sum of ``row_hash``, an expression of the row aliased
    ``t``) of the table, or of its partition (lo, hi] (params None for the whole table)."""
    inner, params = range_sql(f"SELECT {row_hash} AS h FROM {qualified(schema, table.name)} AS t", table, lo, hi)
    return f"SELECT COUNT_BIG(*), ISNULL(SUM(h), 0) FROM ({inner}) AS r", params



def held_types(table):
    """{column: the T-SQL type name SQL Server holds it as}: a PostgreSQL table's types mapped."""
    return {c.name: (_mapped(c, table.dialect, table) if table.dialect == "postgres" else c.data_type).split("(")[0]
            for c in table.columns}


def row_hash_sql(table):
    """The JSON checksum's hash of one row of the table aliased ``t``, a DECIMAL(38,0). The columns
    are taken as SQL Server holds them: a table read from PostgreSQL has its types mapped first
    (PostgreSQL's ``timestamp`` is a date and time, SQL Server's a rowversion)."""
    numbered = list(enumerate(table.columns, start=1))
    held = held_types(table)
    binary = {"binary", "varbinary", "image", "timestamp", "rowversion"}
    # money as the decimal it is: Babelfish 4.3's FOR JSON crashes on money's extremes
    as_decimal = {"money": "decimal(19,4)", "smallmoney": "decimal(10,4)"}

    def json_col(c):
        col = f"t.{ident(c.name)}"
        if held[c.name] in READ_AS_TEXT:
            return read_sql(c)          # as text (the base type of a sql_variant included)
        return f"CAST({col} AS {as_decimal[held[c.name]]})" if held[c.name] in as_decimal else col
    cols = ", ".join(f"{json_col(c)} AS [{i}]" for i, c in numbered if held[c.name] not in binary)
    row = f"(SELECT {cols or '1 AS [0]'} FOR JSON PATH, WITHOUT_ARRAY_WRAPPER, INCLUDE_NULL_VALUES)"
    parts = [f"CAST({row} AS varbinary(max))"]
    for _, c in numbered:
        if held[c.name] in binary:
            col = f"CAST(t.{ident(c.name)} AS varbinary(max))"
            parts.append(f"ISNULL(0x01 + CAST(CAST(DATALENGTH({col}) AS bigint) AS binary(8)) + {col}, 0x00)")
    return f"CAST(CAST(SUBSTRING(HASHBYTES('SHA2_256', {' + '.join(parts)}), 1, 8) AS BIGINT) AS DECIMAL(38,0))"


# The "lines" checksum of rows copied from PostgreSQL (postgres checksum.line_checksum_sql is the
# source's side): each value's text by its PostgreSQL type, as the PostgreSQL side prints it,
# made here from the value SQL Server holds; the text types (nvarchar) as they are
LINE_TEXT = {
    **{t: "{x}" for t in ("int2", "int4", "int8", "oid", "xid", "numeric")},    # CAST to text: digits at the scale
    "bool": "CAST({x} AS int)",
    "money": "CAST({x} AS decimal(19,4))",
    # floats as the integer of their IEEE bits; bytes as their length and the head of their md5
    # (Babelfish converts no bytes to hex)
    "float4": "CAST(CAST({x} AS binary(4)) AS int)",
    "float8": "CAST(CAST({x} AS binary(8)) AS bigint)",
    "bytea": ("CONVERT(varchar(20), DATALENGTH({x})) + ':' + "
              "CONVERT(varchar(20), CAST(SUBSTRING(HASHBYTES('MD5', {x}), 1, 8) AS bigint))"),
    "uuid": "LOWER(CAST({x} AS char(36)))",
    # days, and microseconds, since 2000-01-01 (UTC for an offset), microseconds since midnight:
    # what PostgreSQL stores, and a DATEDIFF a tenth of the cost of a CONVERT with a style on
    # Babelfish (whose style 121 also drops trailing zeros)
    "date": "DATEDIFF(day, CAST('2000-01-01' AS date), {x})",
    "timestamp": "DATEDIFF_BIG(microsecond, CAST('2000-01-01' AS datetime2(6)), {x})",
    "timestamptz": "DATEDIFF_BIG(microsecond, CAST('2000-01-01 00:00:00 +00:00' AS datetimeoffset(6)), {x})",
    "time": "DATEDIFF_BIG(microsecond, CAST('00:00:00' AS time(6)), {x})",
    "bpchar": "RTRIM({x})",                 # PostgreSQL's bpchar::text drops the padding
}



_BYTES = LINE_TEXT["bytea"].replace("{x}", "CAST({x} AS varbinary(max))")     # HASHBYTES takes no image

# The same "lines" checksum of a SQL Server table copied into PostgreSQL (the destination's side
# is postgres checksum.line_checksum_sql, by the PostgreSQL type each column became): by SQL
# Server type, the text PostgreSQL's side prints of the value the copy stored. Only where the
# column has its type's rule (types.MSSQL, no override); any other type (xml, sql_variant,
# hierarchyid, spatial) keeps the md5 of the COPY lines computed as they are read.
FROM_MSSQL = {
    **{t: "{x}" for t in ("tinyint", "smallint", "int", "bigint", "decimal", "numeric",
                          "varchar", "nvarchar", "text", "ntext", "sysname")},
    "bit": LINE_TEXT["bool"],
    "money": "CAST({x} AS decimal(19,4))", "smallmoney": "CAST({x} AS decimal(10,4))",
    "float": LINE_TEXT["float8"], "real": LINE_TEXT["float4"],
    "date": LINE_TEXT["date"], "time": LINE_TEXT["time"],
    "datetime2": LINE_TEXT["timestamp"], "smalldatetime": LINE_TEXT["timestamp"],
    # 1/300 s ticks, stored by PostgreSQL at milliseconds: rounded as SQL Server rounds to datetime2(3)
    "datetime": LINE_TEXT["timestamp"].replace("{x}", "CAST({x} AS datetime2(3))"),
    "datetimeoffset": LINE_TEXT["timestamptz"],
    "char": LINE_TEXT["bpchar"], "nchar": LINE_TEXT["bpchar"],
    **{t: _BYTES for t in ("binary", "varbinary", "image", "timestamp", "rowversion")},
    "uniqueidentifier": LINE_TEXT["uuid"],
}



def lines_computable(table):
    """Whether every column of a SQL Server table has its FROM_MSSQL text: its type has one, and
    the PostgreSQL type it became is its rule's (an override may change values, and the md5 of
    the COPY lines then says whether it did)."""
    from ..postgres.types import MSSQL, render
    return bool(table.columns) and all(
        c.data_type in FROM_MSSQL and c.data_type in MSSQL and c.pg_type == render(MSSQL[c.data_type], c)
        and (c.data_type not in ("decimal", "numeric") or c.precision is not None) for c in table.columns)



# How a server hashes the UTF-8 bytes of an nvarchar: Babelfish's HASHBYTES already takes them
# (it holds text as UTF-8); SQL Server 2019+ through a varchar in a UTF-8 collation; SQL Server
# 2016 and 2017 have no UTF-8 collation, so no form: the destination's rows are read back
UTF8_FORMS = {"nvarchar": "{text}",
              "collate": "CAST({text} COLLATE Latin1_General_100_BIN2_UTF8 AS varchar(max))"}
UTF8_PROBE = "\u00e9\U0001F600\x1f"



def utf8_form(cur):
    """The UTF8_FORMS entry this server hashes the UTF-8 bytes with (probed: the server's md5 of
    UTF8_PROBE compared with Python's), or None."""
    import pymssql
    want = md5(UTF8_PROBE.encode("utf-8")).digest()
    for form, template in UTF8_FORMS.items():
        try:
            cur.execute(f"SELECT HASHBYTES('MD5', {template.format(text=literal(UTF8_PROBE))})")
            if bytes(cur.fetchone()[0] or b"") == want:
                return form
        except pymssql.DatabaseError:         # no such collation (SQL Server 2016, 2017: error 448)
            continue
    return None



_UTF8_FORMS = {}          # server URL -> utf8_form, asked once per process



def server_utf8_form(endpoint, otherwise):
    """utf8_form of the server at ``endpoint``, asked once per process on a session of its own;
    when it has none, ``otherwise`` (what full verification does instead) is logged."""
    from .connection import connect
    key = endpoint.url.raw
    if key not in _UTF8_FORMS:
        conn = connect(endpoint)
        try:
            _UTF8_FORMS[key] = utf8_form(conn.cursor())
        finally:
            conn.close()
        if _UTF8_FORMS[key] is None:
            log.info("SQL Server cannot hash UTF-8 here (no UTF-8 collation before SQL Server 2019): %s", otherwise)
    return _UTF8_FORMS[key]



def line_text_sql(col, table):
    """The "lines" text of a column, aliased ``t``, as nvarchar(max): of a table read from
    PostgreSQL (held here), or of a SQL Server table copied into PostgreSQL (FROM_MSSQL)."""
    if table.dialect == "mssql":
        text = FROM_MSSQL[col.data_type]
    else:
        form, inner = pg_form(col, table)
        text = "{x}" if form is not None else LINE_TEXT.get(type_name(inner.data_type), "{x}")
    return f"CAST({text.format(x=f't.{ident(col.name)}')} AS nvarchar(max))"



def line_hash_sql(table, form):
    """The md5 of one row's "lines" text in UTF-8 (``form``: a UTF8_FORMS key), as summed_sql sums
    row_hash_sql. Every field is nvarchar(max) before ISNULL, which takes its first
    argument's type (and would cut N'\\N' to an nchar(1))."""
    fields = [f"ISNULL({line_text_sql(c, table)}, N'\\N')" for c in table.columns]
    line = " + NCHAR(31) + ".join(fields) or "CAST(N'' AS nvarchar(max))"
    hashed = f"HASHBYTES('MD5', {UTF8_FORMS[form].format(text=f'({line})')})"
    return f"CAST(CAST(SUBSTRING({hashed}, 1, 8) AS BIGINT) AS DECIMAL(38,0))"



def method_checksum_sql(method, schema, table, utf8_form, lo=None, hi=None):
    """(sql, params) of the server-side checksum ``method`` ("lines", else the JSON one) of the
    table, or of (lo, hi]; ``utf8_form()`` is asked only for "lines"."""
    row = line_hash_sql(table, utf8_form()) if method == "lines" else row_hash_sql(table)
    return summed_sql(row, schema, table, lo, hi)



def line_checksum_sql(schema, table, form, lo=None, hi=None):
    """(sql, params): (COUNT_BIG(*), the sum of line_hash_sql) of the table, or of its partition
    (lo, hi]."""
    return summed_sql(line_hash_sql(table, form), schema, table, lo, hi)



def _float4(v):
    return repr(struct.unpack("f", struct.pack("f", v))[0])



def canonical_encoders(table):
    """Per column, the value as text for the content checksum when the two sides are different
    databases: computed in Python from what each driver returns, the same function on both sides
    (real columns compared at single precision: PostgreSQL prints them shortest, SQL Server
    returns the stored float)."""
    def for_column(col):
        if col.data_type in ("real", "float4") or (col.data_type == "float" and (col.precision or 53) <= 24):
            return _float4
        return _canonical
    return [for_column(c) for c in table.columns]



def _by_isinstance(v):
    """The canonical text of any value, subclasses included: _canonical's fallback."""
    if isinstance(v, decimal.Decimal):
        return format(v.normalize(), "f")   # money comes back from SQL Server with 4 decimals
    if isinstance(v, bool):
        return "t" if v else "f"
    if isinstance(v, (bytes, bytearray, memoryview)):
        return bytes(v).hex()
    if isinstance(v, dt.datetime) and v.tzinfo is not None:
        return v.astimezone(dt.timezone.utc).isoformat(sep=" ")
    if isinstance(v, float):
        return repr(v)
    return str(v)


def _datetime(v):
    return v.astimezone(dt.timezone.utc).isoformat(sep=" ") if v.tzinfo is not None else str(v)


def _hex(v):
    return bytes(v).hex()


# by the value's exact type, one dict lookup instead of a chain of isinstance (a third of
# rows_checksum's time); a type not here (a subclass) goes through _by_isinstance
_BY_TYPE = {int: str, bool: lambda v: "t" if v else "f", float: repr,
            decimal.Decimal: lambda v: format(v.normalize(), "f"), bytes: bytes.hex, bytearray: _hex,
            memoryview: _hex, dt.datetime: _datetime, dt.date: str, dt.time: str, uuid.UUID: str}


def _canonical(v):
    """A value's text for the cross-database checksum, the same function on both sides."""
    kind = type(v)
    if kind is str:
        return v
    fn = _BY_TYPE.get(kind)
    return fn(v) if fn is not None else _by_isinstance(v)


def rows_checksum(rows, encoders):
    """Order-independent sum of each row's first 8 md5 bytes (as PostgreSQL's rows are summed)."""
    total, from_bytes = 0, int.from_bytes
    for row in rows:
        text = "\x1f".join(["\\N" if v is None else f(v) for f, v in zip(encoders, row)])
        total += from_bytes(md5(text.encode("utf-8", "surrogatepass")).digest()[:8], "big", signed=True)
    return total
