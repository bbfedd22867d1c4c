"""SQL Server as destination: plan, load and complete a table through the TDS bulk-load path.

The same three steps as ``load`` (which hands over here when ``[target] url`` is mssql://), with
the markers in the destination SQL Server (``markers`` speaks both dialects):

* ``plan_table``:     CREATE TABLE from the source catalog (``dialects.mssql_ddl``), stored plan;
* ``load_partition``: rows read from the source cursor in batches go through pymssql's
                      ``bulk_copy`` (TABLOCK, KEEPIDENTITY) in one transaction with the
                      partition's ``loaded`` marker;
* ``complete_table``: count and content checksum against the source, then primary key, indexes,
                      identity reseed, statistics and the complete marker.

Exactly once, two ways at the same time: rows and marker commit in one transaction, and a load
that is not the partition's first attempt starts by deleting the partition's key range (each
attempt is counted in ``partitions.attempts``, committed before its rows are sent). If the bulk
load honours the transaction, as SQL Server documents, that delete finds nothing; if a driver
ever committed a batch on its own and the process died, the next attempt deletes those rows
before loading the range again. Either way a key range is never loaded twice. A first attempt
skips the delete: the table has no key yet, so it would scan the whole heap, and its locks
would conflict with the bulk-update locks of the table's other partitions loading in parallel.

The table is created with its real column types, and values go as ``dialects.mssql.bulk_load``
sends them, around pymssql's bulk-copy traps: see that module and ``mssql_ddl.carrier``. Rows
holding a value the bulk copy cannot deliver exactly (an empty string, a year before 1753, a
non-UTC offset, non-ASCII text in a code-page column) are bulk copied into the table's side
table in the marker schema (``empties_<table>``, with the partition number, its columns typed
so the server can convert them) in the partition's transaction; before verification ``prepare``
moves them into the table in one INSERT ... SELECT that puts the empty strings back and
converts the rest. Applying them once, from one session, keeps the parallel partition loads to
bulk (BU) locks only, which never block each other.

Runs against SQL Server and Babelfish for PostgreSQL alike (tests/test_mssql_integration.py
with SO_TEST_MSSQL_URL).
"""
import datetime as dt
import decimal
import hashlib
import logging
import struct
import time

from . import faults, markers
from .config import source_endpoint, target_endpoint
from .dialects import connect as connect_source
from .dialects import mssql
from .dialects import mssql_ddl as ddl
from .dialects.base import mssql_ident, percent_safe, pg_ident, pg_qualified
from .errors import SchemaError
from .steps import both_sides, claim_partition, verify_and_finish
from .planning import plan, ranged

log = logging.getLogger("luigi-interface.so_luigi")
OWNER = "so_luigi run "


# --- values ---------------------------------------------------------------------------------

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


def _canonical(v):
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


def rows_checksum(rows, encoders):
    """Order-independent sum of each row's first 8 md5 bytes (as load.py sums PostgreSQL's rows)."""
    total = 0
    for row in rows:
        text = "\x1f".join("\\N" if v is None else f(v) for f, v in zip(encoders, row))
        total += int.from_bytes(hashlib.md5(text.encode("utf-8", "surrogatepass")).digest()[:8], "big", signed=True)
    return total


# --- reading the source ---------------------------------------------------------------------

def _pg_select(table, lo, hi):
    """Columns as psycopg2 should return them: json as its text, money as numeric."""
    def expr(c):
        if c.data_type in ("json", "jsonb"):
            return f"{pg_ident(c.name)}::text"
        if c.data_type == "money":
            return f"{pg_ident(c.name)}::numeric"
        return pg_ident(c.name)
    return ranged(f"SELECT {', '.join(expr(c) for c in table.columns)} "
                  f"FROM {pg_qualified(table.schema, table.name)}", pg_ident, table.int_key, lo, hi)


def _mssql_select(table, lo, hi):
    """Time types with 7 fractional digits come as text: Python's datetime stops at microseconds."""
    def expr(c):
        if c.data_type in ("datetime2", "datetimeoffset", "time") and (c.precision or 0) > 6:
            return f"CONVERT(varchar(40), {mssql_ident(c.name)}, 121)"
        return mssql_ident(c.name)
    return ranged(f"SELECT {', '.join(expr(c) for c in table.columns)} "
                  f"FROM {mssql.qualified(table.schema, table.name)}", mssql_ident, table.int_key, lo, hi)


def source_batches(source_ep, table, lo, hi, batch_rows):
    """Batches of row tuples of one key range; one batch in memory at a time."""
    conn = connect_source(source_ep)
    try:
        if source_ep.url.dialect == "postgres":
            cur = conn.cursor(name="so_luigi_partition")     # server-side: rows arrive as fetched
            query, params = _pg_select(table, lo, hi)
        else:
            cur = conn.cursor()
            query, params = _mssql_select(table, lo, hi)
        cur.execute(query, params)
        while True:
            batch = cur.fetchmany(batch_rows)
            if not batch:
                break
            yield batch
    finally:
        conn.close()


def batch_rows_for(buffer_bytes, source_rows, source_bytes):
    """Rows per batch so a batch of average rows stays within a quarter of the buffer."""
    avg = (source_bytes or 0) / max(source_rows or 1, 1) or 200
    return int(max(100, min(100_000, buffer_bytes / 4 / avg)))


# --- steps ----------------------------------------------------------------------------------

def plan_table(run_id, table, row_count, bounds, size, chunk_rows):
    """Create the destination table and store the plan, in one destination transaction."""
    target_ep = target_endpoint()
    ranges = plan(row_count, bounds, chunk_rows)
    table.layout = "plain"
    src_dialect = source_endpoint().url.dialect
    with mssql.session(target_ep) as conn, conn.cursor() as cur:
        markers.lock(cur, run_id, table.name)
        if markers.is_planned(cur, run_id, table.name):
            conn.rollback()
            return False
        markers.lock(cur, "schema", target_ep.schema)     # tables are planned side by side
        cur.execute(ddl.create_schema_sql(target_ep.schema))
        _drop_previous(cur, target_ep.schema, table.name)
        cur.execute(ddl.create_table_sql(target_ep.schema, table, src_dialect))
        side = side_table(table.name)
        cur.execute(f"DROP TABLE IF EXISTS {side}")
        cur.execute(mssql.staging_table_sql(table, [load for _, load, _ in ddl.bulk_columns(table, src_dialect)],
                                            side, SIDE_EXTRA))
        sql, params = ddl.owner_mark_sql(target_ep.schema, table.name, f"{OWNER}{run_id}")
        cur.execute(sql, params)
        markers.store_plan(cur, run_id, table, ranges, row_count, chunk_rows, size)
        faults.pause("plan-commit")
        conn.commit()
    log.info("planned %s: %d rows in %d partition(s) into SQL Server", table.name, row_count, len(ranges))
    return True


def _drop_previous(cur, schema, name):
    """Replace a table an earlier so_luigi run created; never touch one it did not."""
    cur.execute("SELECT OBJECT_ID(%s, 'U')", (f"{mssql_ident(schema)}.{mssql_ident(name)}",))
    if cur.fetchone()[0] is None:
        return
    sql, params = ddl.owner_query_sql(schema, name)
    cur.execute(sql, params)
    row = cur.fetchone()
    if not (row and str(row[0] or "").startswith(OWNER)):
        raise SchemaError(f"destination table {schema}.{name} already exists and was not created by "
                          f"so_luigi: drop it, or set [target] schema to another schema")
    cur.execute(ddl.drop_table_sql(schema, name))


SIDE_EXTRA = [("so_luigi_partition", "int")]


def side_table(table_name):
    """The table's side table for rows holding empty strings, in the marker schema."""
    name = f"empties_{table_name}"
    if len(name) > 128:
        name = "empties_" + hashlib.sha1(table_name.encode("utf-8")).hexdigest()
    return f"{markers.m()}.{mssql_ident(name)}"


def prepare(conn, schema, table, source_dialect):
    """Once every partition is in: the side table's rows into the table, converted by the server
    as they go in. Its own transaction, and idempotent (the side table goes with the insert), so
    a crash here is repeated harmlessly."""
    cur = conn.cursor()
    side = side_table(table.name)
    cur.execute("SELECT OBJECT_ID(%s, 'U')", (side,))
    if cur.fetchone()[0] is not None:
        casts = ddl.side_casts(ddl.bulk_columns(table, source_dialect))
        cur.execute(mssql.unmask_sql(schema, table, side, casts))
        cur.execute(f"DROP TABLE {side}")
    conn.commit()


def _plan_figures(cur, run_id, table_name):
    cur.execute(f"SELECT source_rows, source_bytes FROM {markers.m()}.tables WHERE run_id = %s AND table_name = %s",
                (run_id, table_name))
    return cur.fetchone()


def load_partition(run_id, table_name, partition, buffer_mb, checksum=True, progress=None):
    """Bulk copy one partition's rows and insert its marker in one transaction (a retry clears
    the key range first). Returns stats, or None when another process loaded it meanwhile."""
    source_ep, target_ep = source_endpoint(), target_endpoint()
    same = source_ep.url.dialect == "mssql"
    with mssql.session(target_ep) as conn:
        cur = conn.cursor()
        claimed = claim_partition(conn, cur, run_id, table_name, partition, progress)
        if claimed is None:
            return None
        table, _, lo, hi = claimed
        started = time.monotonic()
        if markers.count_attempt(run_id, table_name, partition):
            sql, params = ddl.clear_range_sql(target_ep.schema, table, lo, hi)
            cur.execute(sql, params)
            removed = cur.rowcount
            cur.execute(f"DELETE FROM {percent_safe(side_table(table_name))} WITH (TABLOCKX) "
                        f"WHERE {SIDE_EXTRA[0][0]} = %s", (partition,))
            if removed + cur.rowcount > 0:
                log.warning("%s partition %d: removed %d rows an interrupted earlier attempt left",
                            table_name, partition, removed + cur.rowcount)
        batch = batch_rows_for(int(buffer_mb * 1024 * 1024), *_plan_figures(cur, run_id, table_name))
        encoders = None if same or not checksum else canonical_encoders(table)
        stats = {"rows": 0, "bytes": 0, "checksum": 0 if encoders else None}

        def seen(rows):
            if encoders:
                stats["checksum"] += rows_checksum(rows, encoders)
            stats["rows"] += len(rows)
            stats["bytes"] += sum(len(v) for r in rows for v in r if isinstance(v, (str, bytes)))
            if progress is not None:
                progress.update(stats["rows"])
        mssql.bulk_load(conn, target_ep.schema, table, ddl.bulk_columns(table, source_ep.url.dialect),
                        source_batches(source_ep, table, lo, hi, batch), batch,
                        spill_bytes=int(buffer_mb * 1024 * 1024) // 4, on_batch=seen,
                        side=(side_table(table_name), (partition,)))
        seconds = time.monotonic() - started
        first = markers.insert_loaded(cur, run_id, table_name, partition, stats["rows"], stats["bytes"], seconds,
                                      stats["checksum"], "bulk-copy")
        faults.pause("load-commit")
        conn.commit()
    if first:
        log.info("%s partition %d: rows go through the TDS bulk copy (pymssql bulk_copy, TABLOCK)",
                 table_name, partition)
    return {"rows": stats["rows"], "bytes": stats["bytes"], "seconds": seconds}


def _source_figures(source_ep, table, verify):
    """(count, checksum or None): SQL Server computes its own; a PostgreSQL source's checksum was
    summed from the rows as they were read (in the loaded markers)."""
    conn = connect_source(source_ep)
    try:
        cur = conn.cursor()
        if source_ep.url.dialect == "mssql" and verify == "full":
            cur.execute(ddl.checksum_sql(table.schema, table))
            count, total = cur.fetchone()
            return int(count), int(total)
        q = (mssql.qualified if source_ep.url.dialect == "mssql" else pg_qualified)(table.schema, table.name)
        cur.execute(f"SELECT count(*) FROM {q}")
        return int(cur.fetchone()[0]), None
    finally:
        conn.close()


def _target_figures(target_ep, table, verify, same):
    """The destination's count and checksum, computed the way the source's were."""
    conn = mssql.connect(target_ep)
    try:
        cur = conn.cursor()
        if verify == "full" and same:
            cur.execute(ddl.checksum_sql(target_ep.schema, table))
            count, total = cur.fetchone()
            return int(count), int(total)
        if verify == "full":
            encoders = canonical_encoders(table)
            cur.execute(f"SELECT {', '.join(mssql_ident(c.name) for c in table.columns)} "
                        f"FROM {mssql.qualified(target_ep.schema, table.name)}")
            count = total = 0
            for rows in iter(lambda: cur.fetchmany(5000), []):
                count += len(rows)
                total += rows_checksum(rows, encoders)
            return count, total
        cur.execute(f"SELECT COUNT_BIG(*) FROM {mssql.qualified(target_ep.schema, table.name)}")
        return int(cur.fetchone()[0]), None
    finally:
        conn.close()


def _reseed(cur, schema, table):
    """Each identity column's next value past the largest copied one, unless the bulk copy's
    explicit values already moved it there (SQL Server keeps the largest value inserted under
    IDENTITY_INSERT as the current one)."""
    for col in table.identity_columns:
        cur.execute(ddl.identity_sql(schema, table, col))
        maximum, current = cur.fetchone()
        if maximum is not None and (current is None or current < maximum):
            cur.execute(ddl.reseed_sql(schema, table, maximum))


def complete_table(run_id, table_name, verify="full"):
    """Verify against the source, then key, indexes, identity seed and the complete marker."""
    source_ep, target_ep = source_endpoint(), target_endpoint()
    same = source_ep.url.dialect == "mssql"
    with mssql.session(target_ep) as conn:
        return verify_and_finish(
            conn, run_id, table_name, verify,
            lambda table: both_sides(lambda: _source_figures(source_ep, table, verify),
                                     lambda: _target_figures(target_ep, table, verify, same)),
            lambda table, partitions: ([], ddl.finish_table_sql(target_ep.schema, table)
                                       + [lambda cur: _reseed(cur, target_ep.schema, table)]),
            lambda table: prepare(conn, target_ep.schema, table, source_ep.url.dialect))
