"""Writing rows into SQL Server through the TDS bulk copy (pymssql's ``bulk_copy``): for the SQL
Server destination and for building a SQL Server source (dumps, sample data).
"""
import datetime as dt
import re
import decimal
import itertools
import pickle
import tempfile
import uuid

from ...errors import SchemaError
from ..base import SIDE
from .catalog import READ_AS_TEXT
from .connection import ident, qualified
from .types import column_type

# pymssql's bulk_copy has traps (read in its _mssql.pyx): uuid.UUID, datetime.date and
# datetime.time are refused; datetime is cut to milliseconds; Decimal is sent with a fixed
# precision of 33 and money columns crash. ``bulk_value`` sends each of those as text, which
# FreeTDS converts on the client. What it would still convert wrongly (years before 1753, offsets,
# non-ASCII text in code-page columns, empty strings: mssql_ddl's carriers say which) sends its
# row to a side table, typed so that the server converts it, and from there into the table in
# one INSERT ... SELECT, never row by row.

TEXT_TYPES = {"char", "nchar", "varchar", "nvarchar", "text", "ntext", "xml", "bpchar", "character",
              "character varying", "json", "jsonb"}
BINARY_TYPES = {"binary", "varbinary", "image", "bytea"}
# read as text (catalog.read_sql), they go by the side table and the server makes them again
# from it (``from_text``)
FROM_TEXT = READ_AS_TEXT
STAGING = "#so_luigi_empties"
MASK = "so_luigi_mask"


def bulk_value(v):
    """A value as pymssql's bulk_copy can send it without loss: ISO text with four-digit years
    and every fractional digit for time types, plain digits (never 1E-7) for decimals."""
    if isinstance(v, dt.datetime):
        text = v.replace(tzinfo=None).isoformat(sep=" ", timespec="microseconds")
        if v.tzinfo is None:
            return text
        minutes = int(v.utcoffset().total_seconds() // 60)     # datetimeoffset's documented form
        return f"{text} {'-' if minutes < 0 else '+'}{abs(minutes) // 60:02d}:{abs(minutes) % 60:02d}"
    if isinstance(v, dt.time):
        return v.isoformat(timespec="microseconds")
    if isinstance(v, dt.date):
        return v.isoformat()
    if isinstance(v, decimal.Decimal):
        return format(v, "f")
    if isinstance(v, uuid.UUID):
        return str(v)
    if isinstance(v, memoryview):
        return bytes(v)
    return v


# what a text value ending in blanks carries through the side table's own bulk copy (which would
# trim them too); mask '2' says to take it off again
END_MARK = "|"


def bulk_rows(rows, carriers, everything=False):
    """(rows for the table, rows for the side table). ``carriers``: per column, what to send for a
    value (carrier), or SIDE when the bulk copy cannot deliver it; a row holding any such value
    goes to the side table as text, with a mask appended, one digit per column: '1' where the
    value was empty (sent as NULL), '2' where it ends in blanks (sent with END_MARK after them),
    else '0'. ``everything``: every row goes to the side table."""
    direct, side = [], []
    for row in rows:
        sent = [None if v is None else bulk_value(v) for v in row]
        out = [(SIDE if isinstance(carry, NullKept) else None) if v is None else carry(v)
               for v, carry in zip(sent, carriers)]
        if not everything and not any(v is SIDE for v in out):
            direct.append(tuple(out))
            continue
        mask = ["1" if v == "" or v == b"" else "2" if isinstance(v, str) and v.endswith(" ") else "0"
                for v in sent]
        side.append(tuple(None if m == "1" else v + END_MARK if m == "2" else v for v, m in zip(sent, mask))
                    + ("".join(mask),))
    return direct, side


def staging_table_sql(table, types, name=STAGING, extra=()):
    """A side table: the table's loaded columns (all but those it computes) with ``types``
    (mssql_ddl.load_type), every column nullable, no identity, then the mask column and
    ``extra`` [name, type] columns (bulk_copy binds by position)."""
    cols = [f"{ident(c.name)} {t} NULL" for c, t in zip(table.loaded_columns, types)]
    cols += [f"{MASK} varchar(max) NOT NULL"] + [f"{ident(n)} {t} NOT NULL" for n, t in extra]
    return f"CREATE TABLE {name} ({', '.join(cols)})"


def unmask_sql(schema, table, source=STAGING, casts=None, kinds=None):
    """One INSERT ... SELECT from ``source``, '' (or 0x) where the mask says so, and each column
    with a type in ``casts`` (per column, or None) CAST to it from its text (``from_text`` for
    the FROM_TEXT types; ``kinds``: sql_variant column -> the base types its rows hold). Text for
    code-page columns is not cast: the INSERT converts it with the column's own collation."""
    loaded = table.loaded_columns
    casts = casts or [None] * len(loaded)
    # what the column is in SQL Server decides (a PostgreSQL enum or inet is text there)
    held = [column_type(c, table.dialect or "mssql", table).split("(")[0] for c in loaded]

    def value(i, c):
        if held[i - 1] not in TEXT_TYPES | BINARY_TYPES | FROM_TEXT:
            expr = ident(c.name)
        elif held[i - 1] in BINARY_TYPES:
            expr = f"CASE WHEN SUBSTRING({MASK}, {i}, 1) = '1' THEN 0x ELSE {ident(c.name)} END"
        else:                           # LEN counts up to the mark, which is no blank
            expr = (f"CASE WHEN SUBSTRING({MASK}, {i}, 1) = '1' THEN N'' WHEN SUBSTRING({MASK}, {i}, 1) = '2' "
                    f"THEN LEFT({ident(c.name)}, LEN({ident(c.name)}) - 1) ELSE {ident(c.name)} END")
        if casts[i - 1] in FROM_TEXT:
            return from_text(casts[i - 1], expr, (kinds or {}).get(c.name, ()))
        return f"CAST({expr} AS {casts[i - 1]})" if casts[i - 1] else expr
    q = qualified(schema, table.name)
    cols = ", ".join(ident(c.name) for c in loaded)
    insert = (f"INSERT INTO {q} WITH (TABLOCK) ({cols}) SELECT "
              f"{', '.join(value(i, c) for i, c in enumerate(loaded, start=1))} FROM {source}")
    if table.identity_columns:
        return f"SET IDENTITY_INSERT {q} ON; {insert}; SET IDENTITY_INSERT {q} OFF"
    return insert


# a sql_variant's base type as catalog.variant_sql prints it, and how its value's text reads back
VARIANT_KIND = re.compile(r"(bigint|int|smallint|tinyint|bit|float|real|money|smallmoney|date|datetime|"
                          r"smalldatetime|uniqueidentifier|(decimal|numeric)\(\d+,\d+\)|"
                          r"(time|datetime2|datetimeoffset)\(\d\)|(n?(var)?char|(var)?binary)\(\d+\))")


def _variant_value(kind, text):
    base = kind.split("(")[0]
    longest = 4000 if base in ("nchar", "nvarchar") else 8000
    if base in ("char", "varchar", "nchar", "nvarchar", "binary", "varbinary") and int(kind[len(base) + 1:-1]) > longest:
        kind = f"{base}({longest})"         # Babelfish reports 65534 bytes of any nvarchar
    if base in ("date", "time", "datetime", "smalldatetime", "datetime2", "datetimeoffset"):
        return f"CONVERT({kind}, {text}, 121)"
    if base in ("binary", "varbinary"):
        return f"CONVERT({kind}, {text}, 1)"
    return f"CAST({text} AS {kind})"


def _separator(text):
    """Where U+001F is in ``text``, by code point: under most collations a control character
    weighs nothing, and CHARINDEX finds it anywhere (Babelfish: at 0)."""
    return f"CHARINDEX(NCHAR(31) COLLATE Latin1_General_100_BIN2, {text} COLLATE Latin1_General_100_BIN2)"


def from_text(final, text, kinds=()):
    """The value of type ``final`` (FROM_TEXT) from ``text``, as catalog.read_sql printed it:
    hierarchyid from its path; geography and geometry from EWKT (SRID=n;WKT); sql_variant from
    its base type, U+001F and its value, as a value of that base type again (``kinds``: the
    base types present, each checked against VARIANT_KIND)."""
    if final in ("geography", "geometry"):
        semi = f"CHARINDEX(';', {text})"
        return (f"{final}::STGeomFromText(SUBSTRING({text}, {semi} + 1, 2147483647), "
                f"CAST(SUBSTRING({text}, 6, {semi} - 6) AS int))")
    if final != "sql_variant":
        return f"CAST({text} AS {final})"
    if not kinds:
        return "CAST(NULL AS sql_variant)"
    sep = _separator(text)
    value = f"SUBSTRING({text}, {sep} + 1, 2147483647)"
    whens = " ".join(f"WHEN N'{k}' THEN CAST({_variant_value(k, value)} AS sql_variant)" for k in kinds)
    return f"CASE LEFT({text}, {sep} - 1) {whens} END"


def variant_kinds(cur, source, table):
    """sql_variant column of ``table`` -> the base types its rows in ``source`` (a side table)
    hold; a base type so_luigi cannot make again stops here, naming it."""
    found = {}
    for col in [c for c in table.loaded_columns if c.data_type == "sql_variant"]:
        c = ident(col.name)
        cur.execute(f"SELECT DISTINCT LEFT({c}, {_separator(c)} - 1) FROM {source} WHERE {c} IS NOT NULL")
        found[col.name] = sorted(row[0] for row in cur.fetchall())
        for kind in found[col.name]:
            if not VARIANT_KIND.fullmatch(kind):
                raise SchemaError(f"{table.qualified}.{col.name} holds a sql_variant of base type {kind}, "
                                  "which so_luigi cannot write into SQL Server; exclude the table with --tables")
    return found


def _bulk_copy(conn, dest, rows, batch_rows):
    """pymssql's bulk_copy of an iterator (TABLOCK; KEEPIDENTITY whenever the table has an
    identity column), not started when there is no row at all."""
    rows = iter(rows)
    for first in rows:
        conn.bulk_copy(dest, itertools.chain([first], rows), batch_size=batch_rows, tablock=True)
        return


class _Spill:
    """Rows set aside: in memory up to ``max_bytes``, then in a temporary file."""

    def __init__(self, max_bytes):
        self.file = tempfile.SpooledTemporaryFile(max_size=max_bytes)
        self.count = 0

    def add(self, rows):
        pickle.dump(rows, self.file)
        self.count += len(rows)

    def rows(self):
        self.file.seek(0)
        while True:
            try:
                yield from pickle.load(self.file)
            except EOFError:
                return


def bulk_load(conn, schema, table, columns, batches, batch_rows, spill_bytes=16 << 20, on_batch=None,
              side=None):
    """Batches of row tuples into an existing table through the TDS bulk copy; returns the rows.

    ``columns``: per loaded column (destination type, side-table type, carrier), as
    bulk_columns gives them. The values of the columns the table computes are read but not sent
    (the server computes them): such a table's rows all go by the side table, whose INSERT names
    the other columns (a bulk copy into it fails on Babelfish: 'Computed columns cannot be used
    in BULK COPY'), as do those of a table with a FROM_TEXT column. ``on_batch(rows)`` sees every batch as read (checksums,
    progress). Rows holding a value the bulk copy cannot deliver are set aside (``spill_bytes`` in memory at most) and, after the others, bulk copied into
    ``side`` = (table name, values appended to each row) for the caller to apply later, or
    without ``side`` into a temporary table put into the table at once. Identity values are
    kept (SET IDENTITY_INSERT, as freebcp -E does: pymssql asks FreeTDS for KEEPIDENTITY only
    after FreeTDS has begun the bulk load). Runs in the connection's transaction, whatever it is.
    """
    spill = _Spill(spill_bytes)
    total = [0]
    carriers = [carry for _, _, carry in columns]
    keep = table.loaded_positions
    computes = len(keep) < len(table.columns)
    # FreeTDS's bulk copy knows no sql_variant, hierarchyid or spatial column, not even for a NULL
    everything = computes or any(final in FROM_TEXT for final, _, _ in columns)

    def direct():
        for rows in batches:
            if on_batch is not None:
                on_batch(rows)
            total[0] += len(rows)
            if computes:
                rows = [tuple(row[i] for i in keep) for row in rows]
            plain, masked = bulk_rows(rows, carriers, everything)
            if masked:
                spill.add(masked)
            yield from plain
    q = qualified(schema, table.name)
    cur = conn.cursor()
    try:
        if table.identity_columns:
            cur.execute(f"SET IDENTITY_INSERT {q} ON")
        _bulk_copy(conn, q, direct(), batch_rows)
        if table.identity_columns:
            cur.execute(f"SET IDENTITY_INSERT {q} OFF")
        if spill.count and side is not None:
            name, extra = side
            _bulk_copy(conn, name, (row + tuple(extra) for row in spill.rows()), batch_rows)
        elif spill.count:
            cur.execute(staging_table_sql(table, [load for _, load, _ in columns]))
            _bulk_copy(conn, STAGING, spill.rows(), batch_rows)
            cur.execute(unmask_sql(schema, table, STAGING, side_casts(columns), variant_kinds(cur, STAGING, table)))
            cur.execute(f"DROP TABLE {STAGING}")
    finally:
        spill.file.close()
    return total[0]


def insert_sql(table, rows):
    """A multi-row INSERT of ``rows`` rows with %s parameters (2,100 parameters at most); the
    sample generator's way in (test data only)."""
    cols = ", ".join(ident(c.name) for c in table.columns)
    one = "(" + ", ".join(["%s"] * len(table.columns)) + ")"
    return f"INSERT INTO {qualified(table.schema, table.name)} ({cols}) VALUES " + ", ".join([one] * rows)


# --- the bulk copy's blind spots ----------------------------------------------------------------
# Destination tables are created with their real types and pymssql's bulk_copy sends each value as
# ``bulk_value`` makes it; FreeTDS converts it to the column's type on the client (its convert.c).
# A few values come out wrong or not at all, each seen against a TDS server
# (tests/test_mssql_integration.py):
#   * date, datetime2, datetimeoffset before 1753: the year becomes 19xx or 20xx (store_year);
#   * datetimeoffset with an offset other than +00:00: the load fails (without one it is UTC);
#   * non-ASCII text in a char/varchar column: its UTF-8 bytes are stored as code-page bytes;
#   * '' and b'': bound with length 0, which DB-Library sends as NULL;
#   * text ending in blanks, in a varchar/nvarchar column: FreeTDS's bulk copy trims them (on
#     SQL Server too: 'Brian ' arrives as 'Brian'); char/nchar pad them back, so those are kept;
#   * xml: left to the server, which parses it (not proven to pass FreeTDS's bulk metadata);
#   * negative smallmoney: Babelfish 4.3 reads the bulk copy's 4 bytes as unsigned.
# And datetime, which counts 1/300 s, is sent as SQL Server prints it (.000, .003, .007):
# FreeTDS truncates a finer time to the tick below, so .079999 (how a driver returns .080) would
# land on .077.
# A row holding such a value goes to the side table instead, where the column has ``load_type``
# (text) and the server converts it in the one INSERT ... SELECT that moves the side table's rows
# in: converted on the way in, never by rewriting the table after the load.

def _precision(final):
    """p of decimal(p,s)."""
    return int(final.split("(")[1].split(",")[0].rstrip(")"))


def load_type(final):
    """A column's type in the side table, given its destination type: text that the server
    converts where FreeTDS would not convert some values right, else the type itself."""
    if final in ("date", "smallmoney") or final.startswith(("datetime2(", "datetimeoffset(", "time(")):
        return "varchar(40)"                       # ISO text; SQL Server parses it whatever the language
    if final == "xml" or final in FROM_TEXT:
        return "nvarchar(max)"
    if final.startswith(("decimal(", "numeric(")) and _precision(final) > EXACT_DIGITS:
        return "varchar(50)"                       # see _few_digits
    if re.fullmatch(r"n?(var)?char\((\d+|max)\)", final):
        # unbounded: a value ending in blanks travels with a mark appended (see bulk_rows)
        return "nvarchar(max)"
    return final



def _text(v):
    """ASCII is the same bytes in UTF-8 and in every code page SQL Server's collations use."""
    if not isinstance(v, str):
        return v
    return v if v.strip(" ") != "" and v.isascii() else SIDE     # blanks only: trimmed to nothing


def _varying_text(v):
    """_text, and blanks at the end, which the bulk copy would trim, kept by the side table."""
    if isinstance(v, str) and v.endswith(" "):
        return SIDE
    return _text(v)



def _unicode(v):
    return SIDE if isinstance(v, str) and v.strip(" ") == "" else v


def _varying_unicode(v):
    return SIDE if v == "" or isinstance(v, str) and v.endswith(" ") else v



def _binary(v):
    return SIDE if v == b"" else v



def _from_1753(v):
    return v if isinstance(v, str) and v[:4] >= "1753" else SIDE



def _utc_from_1753(v):
    """ISO text ending in ' +00:00' (bulk_value's and CONVERT 121's form): sent without it."""
    if isinstance(v, str) and v.endswith(" +00:00") and v[:4] >= "1753":
        return v[:-7]
    return SIDE



def _nearest_tick(v):
    """ISO text of a datetime: its fraction as the nearest 1/300 s tick, in milliseconds."""
    if not isinstance(v, str) or "." not in v:
        return v
    head, frac = v.split(".", 1)
    ticks = round(int(frac[:6].ljust(6, "0")) * 300 / 1_000_000)
    if ticks == 300:                # rounds up into the next second
        head = (dt.datetime.fromisoformat(head) + dt.timedelta(seconds=1)).isoformat(sep=" ")
        ticks = 0
    return f"{head}.{round(ticks * 10 / 3):03d}"



def _not_negative(v):
    return SIDE if isinstance(v, str) and v.startswith("-") else v



def _always_side(v):
    return SIDE



# FreeTDS's bulk copy can corrupt a decimal of more than 28 digits sent as text: seen on
# Babelfish, 12345678901234567890123456789012345678 into decimal(38,0) arrived as
# 12345678901234567890123456789012345678.8 (the last digit once more, one more scale digit),
# depending on what the process had allocated before (a second connection opened first was
# enough). The server converts the same text exactly.
EXACT_DIGITS = 28


def _few_digits(v):
    """A decimal's text goes straight in when it has at most EXACT_DIGITS digits."""
    if isinstance(v, str) and len(v) - v.startswith("-") - ("." in v) > EXACT_DIGITS:
        return SIDE
    return v



def _as_is(v):
    return v



def carrier(final):
    """How a value (as ``bulk_value`` made it) of a column of type ``final`` goes straight in:
    a function returning what to send, or SIDE."""
    base = final.split("(")[0]
    if base in ("char", "nchar"):       # padded with blanks by the server anyway
        return _text if base == "char" else _unicode
    if base in ("varchar", "nvarchar"):
        return _varying_text if base == "varchar" else _varying_unicode
    if base in ("binary", "varbinary"):
        return _binary
    if base in ("date", "datetime2"):
        return _from_1753
    if base == "datetimeoffset":
        return _utc_from_1753
    if base == "smallmoney":
        return _not_negative
    if base in ("decimal", "numeric") and _precision(final) > EXACT_DIGITS:
        return _few_digits
    if base == "datetime":
        return _nearest_tick
    if base in ("xml", "time") or base in FROM_TEXT:
        # time: the bulk copy's conversion of its text is a microsecond off for some fractions
        # (00:59:59.99999 arrives as .999989): the server converts the same text exactly
        return _always_side
    return _as_is



class NullKept:
    """The carrier of a column with a DEFAULT: the bulk copy puts the default where a row sends
    NULL (FreeTDS asks for no KEEP_NULLS, and pymssql cannot), so a NULL goes by the side table,
    whose INSERT keeps it."""

    def __init__(self, carry):
        self.carry = carry

    def __call__(self, v):
        return self.carry(v)


def bulk_columns(table, source_dialect):
    """Per loaded column of ``table`` in SQL Server (all but those it computes): (destination
    type, side-table type, carrier)."""
    finals = [column_type(c, source_dialect, table) for c in table.loaded_columns]
    return [(final, load_type(final), NullKept(carrier(final)) if c.default and not c.identity else carrier(final))
            for c, final in zip(table.loaded_columns, finals)]



def side_casts(columns):
    """Per column of ``bulk_columns``, the type its side-table text is CAST to on the way in, or
    None: none where the types agree, and none for text, which the INSERT converts with the
    column's own collation (a CAST would use the database's, and cut a value too long in silence
    where the INSERT stops)."""
    return [final if load != final and not final.startswith(("char", "varchar", "nchar", "nvarchar")) else None
            for final, load, _ in columns]
