"""Content checksums PostgreSQL computes server-side: of COPY text lines (compared with rows a
SQL Server source's driver returned, hashed in Python) and of whole rows (both sides PostgreSQL)."""
from ..base import type_name
from .connection import ident, qualified
from .forms import pg_form
from .types import base_type, is_plain


def _escaped(expr):
    """COPY text escaping in SQL, so the checksum line of a row is exactly its COPY line."""
    return (f"replace(replace(replace(replace({expr}, '\\', '\\\\'), E'\\t', '\\t'), "
            f"E'\\n', '\\n'), E'\\r', '\\r')")



# types whose ::text cast differs from their output function (what COPY prints): bool casts to
# 'true', bpchar drops trailing blanks, inet/cidr add or drop the mask
OUTPUT_NOT_CAST = {"bool": "boolout", "bpchar": "bpcharout", "inet": "inet_out", "cidr": "cidr_out"}



def md5_sum(data):
    """The sum over rows of the signed 64-bit head of md5(``data``), an exact numeric (0 for none)."""
    return f"coalesce(sum(('x' || left(md5({data}), 16))::bit(64)::bigint), 0)"



def checksum_sql(schema, table):
    """count(*) and the sum of the signed 64-bit heads of md5(COPY text line) over all rows.

    Order-independent and exact (numeric sum): the destination's side of a SQL Server source's
    checksum, whose source side Python computes from the rows as read (encode.lines_checksum).
    PostgreSQL sources use row_checksum_sql on both servers instead.
    """
    parts = []
    for c in table.columns:
        name = ident(c.name)
        typ = c.pg_type or c.source_type
        out_fn = OUTPUT_NOT_CAST.get(base_type(typ))
        expr = f"{out_fn}({name})::text" if out_fn else f"{name}::text"
        if not is_plain(typ):
            expr = _escaped(expr)
        parts.append(f"coalesce({expr}, '\\N')")
    line = " || E'\\t' || ".join(parts)
    return f"SELECT count(*), {md5_sum(line)} FROM {qualified(schema, table.name)}"



# 64-bit hash functions PostgreSQL 11+ has for these base types, callable from SQL as
# f(value, seed). (timestamptz is left out: its only function takes timestamp, and the cast to it
# depends on the session's TimeZone.)
HASH_EXTENDED = {
    "int2": "hashint2extended", "int4": "hashint4extended", "int8": "hashint8extended",
    "text": "hashtextextended", "varchar": "hashtextextended", "bpchar": "hashbpcharextended",
    "timestamp": "timestamp_hash_extended", "numeric": "hash_numeric_extended",
    "float4": "hashfloat4extended", "float8": "hashfloat8extended", "uuid": "uuid_hash_extended",
}



COLLATED = {"text", "varchar", "bpchar"}



def column_hash_expr(table):
    """One 64-bit hash of a row from its columns' own hash functions, each column seeded with its
    position (so equal values swapped between columns change it) and NULL hashed as -1 - seed;
    text hashed in the "C" collation, i.e. by its bytes, whatever the column's collation. None
    when a column's type has no entry in HASH_EXTENDED."""
    parts = []
    for seed, col in enumerate(table.columns):
        fn = HASH_EXTENDED.get(col.data_type)
        if fn is None:
            return None
        value = ident(col.name) + (' COLLATE "C"' if col.data_type in COLLATED else "")
        parts.append(f"coalesce({fn}({value}, {seed}), {-1 - seed})")
    return " # ".join(parts) or "0"



# The "lines" checksum a SQL Server destination computes too (mssql checksum.LINE_TEXT): each
# row's values as text, by their PostgreSQL type, in forms both servers print alike (integers and
# decimals as digits at their scale, booleans 1/0, floats as the integer of their IEEE bits,
# bytes as their length and the signed head of their md5, dates and times as the integers
# PostgreSQL stores); the text types as they are (what the copy sends)
LINE_TEXT = {
    **{t: "{v}::text" for t in ("int2", "int4", "int8", "oid", "xid", "numeric", "uuid")},
    "bool": "{v}::int::text",
    "money": "{v}::numeric::numeric(30,4)::text",
    "float4": "('x' || encode(float4send({v}), 'hex'))::bit(32)::int4::text",
    "float8": "('x' || encode(float8send({v}), 'hex'))::bit(64)::int8::text",
    "bytea": "octet_length({v})::text || ':' || ('x' || left(md5({v}), 16))::bit(64)::int8::text",
    # days since 2000-01-01, microseconds since 2000-01-01 (UTC), microseconds since midnight:
    # the integers PostgreSQL stores, as its binary send functions give them
    "date": "('x' || encode(date_send({v}), 'hex'))::bit(32)::int4::text",
    "timestamp": "('x' || encode(timestamp_send({v}), 'hex'))::bit(64)::int8::text",
    "timestamptz": "('x' || encode(timestamptz_send({v}), 'hex'))::bit(64)::int8::text",
    "time": "('x' || encode(time_send({v}), 'hex'))::bit(64)::int8::text",
}



def line_text(col, table):
    """The "lines" text of a column's value (NULL for NULL): by LINE_TEXT for a built-in type (a
    domain's base type), else the text the copy sends (arrays as JSON, enums and types SQL Server
    has none of as their PostgreSQL text). Of a table copied from SQL Server, by the PostgreSQL
    type the column became (what mssql checksum.FROM_MSSQL prints from the source's value)."""
    name = ident(col.name)
    if table.dialect == "mssql":
        return LINE_TEXT.get(type_name(col.pg_type), "{v}::text").format(v=f"({name})")
    form, inner = pg_form(col, table)
    if form == "json":
        return f"array_to_json({name})::text"
    if form is not None:
        return f"{name}::text"
    value = name if inner is col else f"{name}::{inner.source_type}"
    return LINE_TEXT.get(type_name(inner.data_type), "{v}::text").format(v=f"({value})")



def line_checksum_sql(schema, table):
    """count(*) and the sum of the signed 64-bit heads of md5(the row's "lines" text, UTF-8):
    each value's line_text, '\\N' for NULL, joined by U+001F (what the SQL Server destination's
    checksum.line_checksum_sql computes from the rows it holds)."""
    parts = [f"coalesce({line_text(c, table)}, '\\N')" for c in table.columns]
    utf8 = "convert_to(" + (" || chr(31) || ".join(parts) or "''") + ", 'UTF8')"
    return f"SELECT count(*), {md5_sum(utf8)} FROM {qualified(schema, table.name)}"



def row_checksum_sql(schema, name, method="text", table=None):
    """count(*) and the sum of a 64-bit hash of each whole row, for a PostgreSQL source: both
    servers compute it over the same columns. ``method`` 'columns' XORs each value's hash from
    its type's own function (column_hash_expr: Posts at scale 0.5, one core: 1.41 s);
    'record' hashes the row with hash_record_extended (PostgreSQL 14+, any hashable type, same
    types on both sides: 1.78 s, it first copies the whole row into a record); 'text' hashes the
    row's text (record output), which tolerates different but equal-printing types (4.5 s). All
    are several times cheaper than the md5 of COPY lines a SQL Server source needs. 'lines'
    is line_checksum_sql, the one a SQL Server destination computes too.
    """
    if method == "lines":
        return line_checksum_sql(schema, table)
    if method == "columns":
        row = column_hash_expr(table)
    elif method == "record":
        row = "hash_record_extended(r, 0)"
    else:
        row = "hashtextextended(r::text, 0)"
    return f"SELECT count(*), coalesce(sum({row}), 0) FROM {qualified(schema, name)} r"



def by_range_sql(figures_sql, key):
    """``figures_sql`` (SELECT count(*), sum FROM ...) per range of the integer ``key`` that a
    list of cuts makes, in one scan: range i holds (cuts[i-1], cuts[i]], which width_bucket (lower
    bound inclusive) finds with the thresholds cut + 1, the one parameter (by_range passes them).
    The SQL takes parameters, so a '%' of a name is doubled."""
    head, rest = figures_sql.split(" ", 1)
    return (f"{head} width_bucket({ident(key)}::bigint, %s::bigint[]), {rest} GROUP BY 1").replace(
        "%", "%%").replace("%%s::bigint[]", "%s::bigint[]")


def by_range(cur, figures_sql, key, cuts):
    """{range: (count, checksum)} of figures_sql per range of ``key`` that ``cuts`` make
    (by_range_sql), run on ``cur``; a range without rows is absent."""
    cur.execute(by_range_sql(figures_sql, key), ([int(c) + 1 for c in cuts],))
    return {int(b): (int(n), int(total)) for b, n, total in cur.fetchall()}
