"""SQL Server (2016+, Azure SQL, Babelfish) as source: connect, catalog, partition reads.

Names come from INFORMATION_SCHEMA, which keeps their case everywhere; sys.* views are used only
for what they alone hold (identity, secondary indexes), joined by object and column ids. Rows
come through pymssql's DB-API cursor and are turned into COPY text by ``encode``.

Written against SQL Server's documented catalog; it runs only where a server is reachable
(tests/test_mssql_integration.py with SO_TEST_MSSQL_URL).
"""
from ..errors import ConnectError, SchemaError, TransientError
from ..planning import boundaries_sql, predicate
from .base import Column, Index, Table, mssql_ident
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


def _message(exc):
    """The server's or DB-Lib's words, without DB-Lib's 'error message N, severity S' headers."""
    args = getattr(exc, "args", ())
    detail = args[0][1] if args and isinstance(args[0], tuple) and len(args[0]) > 1 else str(exc)
    if isinstance(detail, bytes):
        detail = detail.decode("utf-8", "replace")
    lines = []
    for line in str(detail).splitlines():
        line = line.strip()
        if line and not line.startswith("DB-Lib error message") and "Check messages from the SQL Server" not in line \
                and line not in lines:
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


def translate(exc):
    """A pymssql error raised while working becomes a one-line SoLuigiError."""
    from ..errors import SoLuigiError
    import pymssql
    msg = _message(exc)
    if isinstance(exc, (pymssql.OperationalError, pymssql.InterfaceError)):
        return TransientError(f"source SQL Server: connection lost or server unavailable: {msg}")
    if "permission" in msg.lower() or "denied" in msg.lower():
        return SchemaError(f"source SQL Server: permission denied, grant SELECT or use another login: {msg}")
    return SoLuigiError(f"source SQL Server: {msg}")


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
    for cname, dtype, nullable, length, precision, scale, fsp, identity, computed in rows:
        dtype = dtype.lower()
        if computed:
            raise SchemaError(f"{schema}.{name}.{cname} is a computed column, which so_luigi cannot "
                              "copy yet; exclude the table with --tables")
        is_time = dtype in ("time", "datetime2", "datetimeoffset")
        columns.append(Column(
            name=cname, data_type=dtype, nullable=bool(nullable), length=length,
            precision=fsp if is_time else precision, scale=scale, identity=bool(identity),
            source_type=_source_type(dtype, length, precision, scale, fsp)))
    table = Table(schema=schema, name=name, columns=columns, dialect="mssql")
    cur.execute(sql("mssql_primary_key.sql"), params)
    for constraint, column in cur.fetchall():
        table.pk_name = constraint
        table.primary_key.append(column)
    cur.execute(sql("mssql_indexes.sql"), params)
    by_name = {}
    for idx_name, unique, column, descending, filtered in cur.fetchall():
        if filtered:
            continue
        idx = by_name.setdefault(idx_name, Index(name=idx_name, columns=[], unique=bool(unique)))
        idx.columns.append([column, "DESC" if descending else "ASC"])
    table.indexes = list(by_name.values())
    return table


def count_and_boundaries(conn, table, chunk_rows):
    key = table.int_key
    q = qualified(table.schema, table.name)
    cur = conn.cursor()
    cur.execute(f"SELECT COUNT_BIG(*) FROM {q}")
    rows = cur.fetchone()[0]
    if key is None or rows <= chunk_rows:
        return rows, []
    cur.execute(boundaries_sql(mssql_ident, q, key, chunk_rows))
    return rows, [r[0] for r in cur.fetchall()]


def table_bytes(conn, table):
    """Size of the table's data pages (for scheduling the biggest partitions first); None when
    the login may not read sys.dm_db_partition_stats (VIEW DATABASE STATE)."""
    cur = conn.cursor()
    try:
        cur.execute("SELECT SUM(used_page_count) * 8192 FROM sys.dm_db_partition_stats "
                    "WHERE object_id = OBJECT_ID(%s) AND index_id IN (0, 1)", (qualified(table.schema, table.name),))
        row = cur.fetchone()
        return int(row[0]) if row and row[0] is not None else None
    except Exception:  # noqa: BLE001 -- a missing privilege only costs the ordering
        return None


def select_sql(table, lo, hi):
    """SELECT of one partition: (sql, params) for pymssql."""
    cols = ", ".join(mssql_ident(c.name) for c in table.columns)
    where, params = predicate(mssql_ident, table.int_key, lo, hi) if table.int_key else ("", ())
    return f"SELECT {cols} FROM {qualified(table.schema, table.name)}{where}", params


# --- writing (dump loads; the SQL Server destination builds on this) ---------------------------

def _bulk_value(col):
    """pymssql's bulk copy refuses uuid.UUID and date values: send them as text / datetime."""
    if col.data_type == "uniqueidentifier":
        return lambda v: None if v is None else str(v)
    if col.data_type == "date":
        from datetime import datetime
        return lambda v: None if v is None or isinstance(v, datetime) else datetime(v.year, v.month, v.day)
    return None


def split_for_bulk_copy(table, batch):
    """(rows for bulk copy, rows for INSERT): pymssql's bulk copy sends '' as NULL, so a row
    holding an empty string goes through a parameterised INSERT, which keeps it empty."""
    converters = [(i, f) for i, f in enumerate(_bulk_value(c) for c in table.columns) if f]
    bulk, insert = [], []
    for row in batch:
        if converters:
            row = list(row)
            for i, f in converters:
                row[i] = f(row[i])
            row = tuple(row)
        (insert if any(v == "" for v in row) else bulk).append(row)
    return bulk, insert


def insert_sql(table, rows):
    """A multi-row INSERT of ``rows`` rows with %s parameters (2,100 parameters at most)."""
    cols = ", ".join(mssql_ident(c.name) for c in table.columns)
    one = "(" + ", ".join(["%s"] * len(table.columns)) + ")"
    return f"INSERT INTO {qualified(table.schema, table.name)} ({cols}) VALUES " + ", ".join([one] * rows)


def bulk_load(conn, table, rows, batch_rows=5000):
    """Rows into a SQL Server table through the TDS bulk copy, around pymssql's traps."""
    from ..stream import batched
    per_insert = max(1, min(1000, 2000 // len(table.columns)))
    count = 0
    for batch in batched(rows, batch_rows):
        bulk, insert = split_for_bulk_copy(table, batch)
        if bulk:
            conn.bulk_copy(qualified(table.schema, table.name), bulk, batch_size=len(bulk), tablock=True)
        cur = conn.cursor()
        for chunk in batched(insert, per_insert):
            cur.execute(insert_sql(table, len(chunk)), tuple(v for row in chunk for v in row))
        count += len(batch)
    return count
