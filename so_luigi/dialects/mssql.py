"""SQL Server (2016+, Azure SQL, Babelfish) as source: connect, catalog, partition reads.

Names come from INFORMATION_SCHEMA, which keeps their case everywhere; sys.* views are used only
for what they alone hold (identity, secondary indexes), joined by object and column ids. Rows
come through pymssql's DB-API cursor and are turned into COPY text by ``encode``.

Written against SQL Server's documented catalog; it runs only where a server is reachable
(tests/test_mssql_integration.py with SO_TEST_MSSQL_URL).
"""
import datetime as dt
import decimal
import itertools
import pickle
import re
import tempfile
import uuid
from contextlib import contextmanager

from .. import planning
from ..errors import ConnectError, SchemaError, TransientError
from ..planning import boundaries_sql, ranged
from .base import SIDE, Column, Index, Table, mssql_ident
from .postgres import sql


def qualified(schema, name):
    return f"{mssql_ident(schema)}.{mssql_ident(name)}"


def connect(endpoint, autocommit=True):
    import pymssql
    url = endpoint.url
    try:
        conn = pymssql.connect(server=url.host, port=str(url.port or 1433), user=url.user,
                               password=url.password, database=url.database, login_timeout=15,
                               appname=f"so_luigi {endpoint.role}", charset="UTF-8",
                               autocommit=autocommit)
    except (pymssql.OperationalError, pymssql.InterfaceError) as exc:
        raise connect_error(exc, endpoint) from None
    return conn


@contextmanager
def session(endpoint):
    """A transaction (pymssql begins one itself when autocommit is off): rolled back on any
    error, always closed."""
    conn = connect(endpoint, autocommit=False)
    try:
        yield conn
    except BaseException:
        try:
            conn.rollback()
        except Exception:  # noqa: BLE001 -- a lost connection has nothing to roll back
            pass
        raise
    finally:
        conn.close()


def _message(exc):
    """The server's words, one line: without the bytes repr, DB-Lib's 'error message N, severity
    S' headers and its 'General SQL Server error: Check messages from the SQL Server' filler."""
    args = getattr(exc, "args", ())
    if args and isinstance(args[0], tuple):         # pymssql: OperationalError((number, message))
        args = args[0]
    detail = args[1] if len(args) > 1 and isinstance(args[0], int) else str(exc)
    if isinstance(detail, bytes):
        detail = detail.decode("utf-8", "replace")
    detail = re.sub(r"DB-Lib error message \d+, severity \d+:?", "\n", str(detail))
    lines = []
    for line in detail.splitlines():
        line = re.sub(r"General SQL Server error: Check messages from the SQL Server\.?", "", line).strip(" ;")
        if line and line not in lines:
            lines.append(line)
    return "; ".join(lines) or str(exc)


def connect_error(exc, ep):
    import socket
    msg = _message(exc)
    url = ep.url
    where = f"{ep.role} {url.redacted}"
    if "Login failed" in msg:
        return ConnectError(f"{where}: login failed for user {url.user!r}: wrong password or user "
                            f"(set [{ep.role}] url or SO_{ep.role.upper()}_URL)")
    if "Cannot open database" in msg:
        return ConnectError(f"{where}: database {url.database!r} does not exist or the login cannot open it")
    if "Unable to connect" in msg or "unavailable or does not exist" in msg:
        try:
            socket.getaddrinfo(url.host, None)
        except OSError:
            return ConnectError(f"{where}: unknown host {url.host!r}")
        return TransientError(f"{where}: no SQL Server answers at {url.host}:{url.port or 1433} "
                              "(server down or port closed)")
    return ConnectError(f"{where}: {msg}")


# Errors worth a retry: a deadlock victim, a lost or refused connection (DB-Library's 200xx),
# a server shutting down, Azure SQL's "service busy / database unavailable". pymssql raises
# OperationalError for nearly every server error, so the number decides, not the class.
TRANSIENT_ERRORS = {1205, 233, 6005, 10053, 10054, 10060, 20003, 20004, 20006, 20009, 20047,
                    40197, 40501, 40613, 49918, 49919, 49920}


def error_number(exc):
    """The server's (or DB-Library's) error number of a pymssql exception, or None."""
    if isinstance(getattr(exc, "number", None), int):       # _mssql's own exceptions (bulk copy)
        return exc.number
    args = getattr(exc, "args", ())
    first = args[0] if args else None
    if isinstance(first, tuple) and first:      # pymssql raises OperationalError((number, message))
        first = first[0]
    if isinstance(first, int):
        return first
    found = re.search(r"DB-Lib error message (\d+)", str(exc))
    return int(found.group(1)) if found else None


def translate(exc, role="source"):
    """A pymssql error raised while working becomes a one-line SoLuigiError."""
    from ..errors import SoLuigiError
    import pymssql
    msg = _message(exc)
    number = error_number(exc)
    if number is not None and not 20000 <= number < 21000:     # the server's own (20xxx are DB-Lib's)
        msg = f"{msg} (error {number})"
    lost = re.search(r"connection|not connected|unable to connect|timed? ?out", msg, re.IGNORECASE)
    if number in TRANSIENT_ERRORS or (isinstance(exc, pymssql.InterfaceError) and lost):
        return TransientError(f"{role} SQL Server: connection lost, server unavailable or deadlock: {msg}")
    if "permission" in msg.lower() or "denied" in msg.lower():
        grant = "SELECT" if role == "source" else "CREATE TABLE, ALTER on the schema, INSERT and ADMINISTER BULK OPERATIONS"
        return SchemaError(f"{role} SQL Server: permission denied, grant {grant} or use another login: {msg}")
    return SoLuigiError(f"{role} SQL Server: {msg}")


def schema_exists(conn, schema):
    cur = conn.cursor()
    cur.execute("SELECT 1 FROM INFORMATION_SCHEMA.SCHEMATA WHERE SCHEMA_NAME = %s", (schema,))
    return cur.fetchone() is not None


def list_tables(conn, schema):
    cur = conn.cursor()
    cur.execute(sql("mssql_tables.sql"), {"schema": schema})
    return [r[0] for r in cur.fetchall()]


def _source_type(data_type, length, precision, scale, fsp):
    if data_type in ("char", "nchar", "varchar", "nvarchar", "binary", "varbinary"):
        return f"{data_type}({'max' if length == -1 else length})"
    if data_type in ("decimal", "numeric"):
        return f"{data_type}({precision},{scale})"
    if data_type in ("time", "datetime2", "datetimeoffset"):
        return f"{data_type}({fsp})"
    return data_type


def describe(conn, schema, name):
    params = {"schema": schema, "table": name, "qualified": qualified(schema, name)}
    cur = conn.cursor()
    cur.execute(sql("mssql_columns.sql"), params)
    rows = cur.fetchall()
    if not rows:
        raise SchemaError(f"table {schema}.{name} not found in the source")
    columns = []
    for cname, dtype, nullable, length, precision, scale, fsp, identity, computed, collation in rows:
        dtype = dtype.lower()
        if computed:
            raise SchemaError(f"{schema}.{name}.{cname} is a computed column, which so_luigi cannot "
                              "copy yet; exclude the table with --tables")
        is_time = dtype in ("time", "datetime2", "datetimeoffset")
        columns.append(Column(
            name=cname, data_type=dtype, nullable=bool(nullable), length=length,
            precision=fsp if is_time else precision, scale=scale, identity=bool(identity),
            source_type=_source_type(dtype, length, precision, scale, fsp), collation=collation or ""))
    table = Table(schema=schema, name=name, columns=columns, dialect="mssql")
    cur.execute(sql("mssql_primary_key.sql"), params)
    for constraint, column in cur.fetchall():
        table.pk_name = constraint
        table.primary_key.append(resolve_column(table, column))
    cur.execute(sql("mssql_indexes.sql"), params)
    by_name = {}
    for idx_name, unique, column, descending, filtered in cur.fetchall():
        if filtered:
            continue
        idx = by_name.setdefault(idx_name, Index(name=idx_name, columns=[], unique=bool(unique)))
        idx.columns.append([resolve_column(table, column), "DESC" if descending else "ASC"])
    table.indexes = list(by_name.values())
    return table


def resolve_column(table, name):
    """A column named by a key or index, as the table's column list spells it. SQL Server
    compares identifiers by the database collation, mostly case-insensitive, and its catalog
    views need not agree on case (Babelfish's KEY_COLUMN_USAGE says ``id`` where COLUMNS says
    ``Id``): an exact match first, else the one column equal ignoring case."""
    names = [c.name for c in table.columns]
    if name in names:
        return name
    same = [n for n in names if n.casefold() == name.casefold()]
    if len(same) != 1:
        raise SchemaError(f"{table.qualified}: key or index column {name!r} is not one of its columns "
                          f"({', '.join(names)})")
    return same[0]


def count_and_boundaries(conn, table, step_for):
    """(rows, boundaries, step): the exact count, then the keys closing each full chunk of
    ``step = step_for(rows)`` rows; for a big table with fresh statistics on its key, the
    histogram's estimate and cuts instead (statistics_cuts), with no scan at all."""
    key = table.int_key
    q = qualified(table.schema, table.name)
    cur = conn.cursor()
    if key is not None:
        estimated = statistics_cuts(cur, q, step_for)
        if estimated is not None:
            return estimated
    cur.execute(f"SELECT COUNT_BIG(*) FROM {q}")
    rows = cur.fetchone()[0]
    step = step_for(rows)
    if key is None or rows <= step:
        return rows, [], step
    cur.execute(boundaries_sql(mssql_ident, q, key, step))
    return rows, [r[0] for r in cur.fetchall()], step


# The primary key's statistics (created with its index, so they share its id): the histogram's
# points as (key, rows up to and with it), and how many rows changed since they were taken.
# sys.dm_db_stats_histogram needs SQL Server 2016 SP1 CU2 or Azure SQL; where it is missing
# (Babelfish, older builds) the statement fails and the rows are numbered instead.
STATISTICS_SQL = """
SELECT CAST(h.range_high_key AS bigint), h.range_rows + h.equal_rows, p.rows, p.modification_counter
FROM sys.indexes i
CROSS APPLY sys.dm_db_stats_properties(i.object_id, i.index_id) p
CROSS APPLY sys.dm_db_stats_histogram(i.object_id, i.index_id) h
WHERE i.object_id = OBJECT_ID(%s) AND i.is_primary_key = 1
ORDER BY h.step_number
"""


def statistics_cuts(cur, q, step_for):
    """(estimated rows, cuts, step) from the key's histogram, or None when the table is small
    (numbering it is cheap and exact), the statistics are missing or stale (more than a tenth of
    the rows changed since), or the server cannot say."""
    import pymssql
    try:
        cur.execute(STATISTICS_SQL, (q,))
        steps = cur.fetchall()
    except pymssql.Error:
        return None
    if not steps:
        return None
    rows, changed = steps[0][2] or 0, steps[0][3] or 0
    if rows < planning.STATISTICS_FROM_ROWS or changed > rows / 10:
        return None
    points = list(zip([int(k) for k, *_ in steps], itertools.accumulate(float(n) for _, n, *_ in steps)))
    total = int(round(points[-1][1]))
    step = step_for(total)
    if total <= step:
        return None                 # one partition: the exact count is the cheaper answer
    return total, planning.cdf_cuts(points, step, total), step


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


def select_sql(table, lo, hi):
    """SELECT of one partition: (sql, params) for pymssql."""
    cols = ", ".join(mssql_ident(c.name) for c in table.columns)
    return ranged(f"SELECT {cols} FROM {qualified(table.schema, table.name)}", mssql_ident, table.int_key, lo, hi)


# --- writing: the TDS bulk copy (the SQL Server destination and dump loads) -------------------
#
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


def bulk_rows(rows, carriers):
    """(rows for the table, rows for the side table). ``carriers``: per column, what to send for a
    value (mssql_ddl.carrier), or SIDE when the bulk copy cannot deliver it; a row holding any
    such value goes to the side table as text, its empty strings as NULL and a mask ('0'/'1' per
    column, '1' where the value was empty) appended."""
    direct, side = [], []
    for row in rows:
        sent = [None if v is None else bulk_value(v) for v in row]
        out = [v if v is None else carry(v) for v, carry in zip(sent, carriers)]
        if not any(v is SIDE for v in out):
            direct.append(tuple(out))
            continue
        empty = [v == "" or v == b"" for v in sent]
        side.append(tuple(None if e else v for v, e in zip(sent, empty))
                    + ("".join("1" if e else "0" for e in empty),))
    return direct, side


def staging_table_sql(table, types, name=STAGING, extra=()):
    """A side table: the table's columns with ``types`` (mssql_ddl.load_type), every column
    nullable, no identity, then the mask column and ``extra`` [name, type] columns (bulk_copy
    binds by position)."""
    cols = [f"{mssql_ident(c.name)} {t} NULL" for c, t in zip(table.columns, types)]
    cols += [f"{MASK} varchar(max) NOT NULL"] + [f"{mssql_ident(n)} {t} NOT NULL" for n, t in extra]
    return f"CREATE TABLE {name} ({', '.join(cols)})"


def unmask_sql(schema, table, source=STAGING, casts=None):
    """One INSERT ... SELECT from ``source``, '' (or 0x) where the mask says so, and each column
    with a type in ``casts`` (per column, or None) CAST to it from its text. Text for code-page
    columns is not cast: the INSERT converts it with the column's own collation."""
    casts = casts or [None] * len(table.columns)

    def value(i, c):
        if c.data_type not in TEXT_TYPES | BINARY_TYPES:
            expr = mssql_ident(c.name)
        else:
            empty = "0x" if c.data_type in BINARY_TYPES else "N''"
            expr = f"CASE WHEN SUBSTRING({MASK}, {i}, 1) = '1' THEN {empty} ELSE {mssql_ident(c.name)} END"
        return f"CAST({expr} AS {casts[i - 1]})" if casts[i - 1] else expr
    q = qualified(schema, table.name)
    cols = ", ".join(mssql_ident(c.name) for c in table.columns)
    insert = (f"INSERT INTO {q} WITH (TABLOCK) ({cols}) SELECT "
              f"{', '.join(value(i, c) for i, c in enumerate(table.columns, start=1))} FROM {source}")
    if table.identity_columns:
        return f"SET IDENTITY_INSERT {q} ON; {insert}; SET IDENTITY_INSERT {q} OFF"
    return insert


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

    ``columns``: per column (destination type, side-table type, carrier), as
    mssql_ddl.bulk_columns gives them. ``on_batch(rows)`` sees every batch as read (checksums,
    progress). Rows holding a value the bulk copy cannot deliver are set aside (``spill_bytes`` in memory at most) and, after the others, bulk copied into
    ``side`` = (table name, values appended to each row) for the caller to apply later, or
    without ``side`` into a temporary table put into the table at once. Identity values are
    kept (SET IDENTITY_INSERT, as freebcp -E does: pymssql asks FreeTDS for KEEPIDENTITY only
    after FreeTDS has begun the bulk load). Runs in the connection's transaction, whatever it is.
    """
    spill = _Spill(spill_bytes)
    total = [0]
    carriers = [carry for _, _, carry in columns]

    def direct():
        for rows in batches:
            if on_batch is not None:
                on_batch(rows)
            total[0] += len(rows)
            plain, masked = bulk_rows(rows, carriers)
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
            cur.execute(unmask_sql(schema, table))
            cur.execute(f"DROP TABLE {STAGING}")
    finally:
        spill.file.close()
    return total[0]


def insert_sql(table, rows):
    """A multi-row INSERT of ``rows`` rows with %s parameters (2,100 parameters at most); the
    sample generator's way in (test data only)."""
    cols = ", ".join(mssql_ident(c.name) for c in table.columns)
    one = "(" + ", ".join(["%s"] * len(table.columns)) + ")"
    return f"INSERT INTO {qualified(table.schema, table.name)} ({cols}) VALUES " + ", ".join([one] * rows)
