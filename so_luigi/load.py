"""The three steps of a table, each one transaction in the destination with its marker.

* ``plan_table``:     describe the source table, cut its partitions, (re)create the destination
                      table and store definition + plan + plan marker together;
* ``load_partition``: stream one key range into the table and insert its ``loaded`` marker in
                      the same transaction: a killed load leaves neither rows nor marker;
* ``complete_table``: build the key and indexes and ANALYZE while count and checksum are
                      compared with the source, then (when they agree) make the key a
                      constraint, move identity sequences past max(id) and set the complete
                      marker, again in one transaction.

Each step takes a transaction-scoped advisory lock on its marker and re-checks it, so two runs
racing for the same step cannot both do it. Into SQL Server the same steps are ``mssql_load``'s;
what both destinations share (claiming a partition, completing a table) is in ``steps``.
"""
import contextlib
import copy
import logging
import time

import psycopg2

from . import bulk, faults, markers, mssql_load, stream, typemap
from .config import source_endpoint, target_endpoint
from .dialects import connect as connect_source, find_tables, module, session as target_session
from .dialects import mssql_ddl
from .dialects import postgres as pg
from .dialects.base import percent_safe, pg_qualified
from .errors import SchemaError, VerificationError
from .planning import plan, rows_per_partition
from .progress import watch_copy
from .steps import both_sides, claim_partition, verify_and_finish

log = logging.getLogger("luigi-interface.so_luigi")  # shown wherever Luigi shows its own log
OWNER_COMMENT = "so_luigi run "


def discover(source_ep, wanted=None, overrides=None, conn=None):
    """Describe and type-map every selected source table; unmappable types stop everything here.
    ``conn``: an open source connection to use (left open), else one of its own."""
    own = conn is None
    conn = connect_source(source_ep) if own else conn
    try:
        names = find_tables(source_ep, conn, wanted)
        tables = [module(source_ep).describe(conn, source_ep.schema, n) for n in names]
    finally:
        if own:
            conn.close()
    typemap.check_mappable(tables, source_ep.url.dialect,
                           typemap.load_overrides() if overrides is None else overrides)
    if target_endpoint().url.dialect == "mssql":
        mssql_ddl.check_mappable(tables, source_ep.url.dialect)
    return tables


def choose_layout(table, partitions, layout, mode):
    """plain or partitioned (see the README's bulk section for the trade-offs).

    auto is partitioned in bulk mode, plain in streaming mode. Partitioning needs more than one
    partition of an integer key, and no unique index without that key (PostgreSQL requires the
    partition key in every unique index of a partitioned table).
    """
    if layout == "auto":
        layout = "partitioned" if mode == "bulk" else "plain"
    if layout != "partitioned":
        return "plain"
    key = table.int_key
    if partitions < 2 or key is None:
        return "plain"
    if any(idx.unique and key not in [c for c, _ in idx.columns] for idx in table.indexes):
        log.info("%s stays a plain table: it has a unique index without %s", table.name, key)
        return "plain"
    return "partitioned"


def plan_table(run_id, table_name, chunk_rows, layout="plain", mode="streaming", unlogged=False,
               chunk_mb=0, table=None, target_conn=None):
    """Describe, partition and create one destination table; store it all with the plan marker.

    ``table``: its definition, when the caller has just discovered it; ``target_conn``: an open
    PostgreSQL destination connection (not in a transaction) to plan through, left open. Each
    connection costs both servers a process start, so planning a table takes one per side.
    """
    source_ep, target_ep = source_endpoint(), target_endpoint()
    conn = connect_source(source_ep)
    try:
        table = table or discover(source_ep, [table_name], conn=conn)[0]
        size = module(source_ep).table_bytes(conn, table)
        row_count, bounds, step = module(source_ep).count_and_boundaries(
            conn, table, lambda rows: rows_per_partition(rows, size, chunk_rows, chunk_mb))
    finally:
        conn.close()
    if target_ep.url.dialect == "mssql":
        return mssql_load.plan_table(run_id, table, row_count, bounds, size, step)
    ranges = plan(row_count, bounds, step)
    table.layout = choose_layout(table, len(ranges), layout, mode)
    table.unlogged = unlogged
    session = contextlib.nullcontext(target_conn) if target_conn is not None else pg.session(target_ep)
    with session as conn, conn.cursor() as cur:
        markers.lock(cur, run_id, table_name)
        if markers.is_planned(cur, run_id, table_name):
            conn.rollback()
            return False
        markers.lock(cur, "schema", target_ep.schema)     # tables are planned side by side
        cur.execute(f"CREATE SCHEMA IF NOT EXISTS {pg.pg_ident(target_ep.schema)}")
        _drop_previous(cur, target_ep.schema, table_name)
        cur.execute(pg.create_table_sql(target_ep.schema, table))
        cur.execute(f"COMMENT ON TABLE {percent_safe(pg_qualified(target_ep.schema, table_name))} IS %s",
                    (f"{OWNER_COMMENT}{run_id}",))
        markers.store_plan(cur, run_id, table, ranges, row_count, step, size)
        faults.pause("plan-commit")
        conn.commit()
    log.info("planned %s: %d rows in %d partition(s), %s layout", table_name, row_count, len(ranges),
             table.layout)
    return True


def ensure_planned(run_id, table_name, chunk_rows, layout, mode, unlogged=False, chunk_mb=0, table=None):
    """Expected MB of each of the table's partitions, planning it first if no process has yet.

    A table planned by an earlier run is first compared with the source as it is now: a copy
    never mixes partitions read before and after a change of the table's definition.
    ``table``: the source table's definition, when the caller has just discovered it.
    """
    target_ep = target_endpoint()
    with target_session(target_ep) as conn:
        try:
            planned, _ = markers.planned_table(conn, run_id, table_name)
        except SchemaError:
            planned = None
        conn.rollback()             # no transaction left open while the source is walked
        if planned is not None:
            changes = definition_changes(planned, table or discover(source_endpoint(), [table_name])[0])
            if changes:
                raise SchemaError(
                    f"source table {planned.qualified} changed since run {run_id!r} planned it "
                    f"({'; '.join(changes)}): partitions read before and after cannot be mixed; "
                    f"`so-luigi reset --run-id {run_id} --tables {table_name}` to copy it afresh")
        else:
            plan_table(run_id, table_name, chunk_rows, layout, mode, unlogged, chunk_mb, table,
                       conn if target_ep.url.dialect == "postgres" else None)
        return markers.partition_weights(conn, run_id, table_name)


def definition_changes(planned, live):
    """What differs between a table as planned and as the source holds it now, in words."""
    def shape(table):
        return {c.name: (c.source_type, c.nullable) for c in table.columns}
    before, now = shape(planned), shape(live)
    changes = [f"column {n} added" for n in now if n not in before]
    changes += [f"column {n} dropped" for n in before if n not in now]
    changes += [f"column {n} was {before[n][0]}{'' if before[n][1] else ' NOT NULL'}, now "
                f"{now[n][0]}{'' if now[n][1] else ' NOT NULL'}" for n in before if n in now and before[n] != now[n]]
    if [n for n in before if n in now] != [n for n in now if n in before]:
        changes.append("columns reordered")
    if planned.primary_key != live.primary_key:
        changes.append(f"primary key was ({', '.join(planned.primary_key)}), now ({', '.join(live.primary_key)})")
    return changes


def _drop_previous(cur, schema, name):
    """Replace a table an earlier so_luigi run created; never touch one it did not."""
    cur.execute("SELECT obj_description(to_regclass(%s), 'pg_class'), to_regclass(%s) IS NOT NULL",
                (pg_qualified(schema, name),) * 2)
    comment, exists = cur.fetchone()
    if not exists:
        return
    if not (comment or "").startswith(OWNER_COMMENT):
        raise SchemaError(f"destination table {schema}.{name} already exists and was not created by "
                          f"so_luigi: drop it, or set [target] schema to another schema")
    cur.execute(f"DROP TABLE {pg_qualified(schema, name)}")


def _destination(cur, schema, table, partitions, partition, lo, hi):
    """Where a partition's rows go, whether COPY may FREEZE them, and how to get it ready.

    * partitioned layout: a new child table per partition, created in the load's transaction,
      so COPY FREEZE applies; it is attached to the parent before the commit;
    * a plain table of one partition: truncated in the load's transaction, so FREEZE applies;
    * a plain table of several partitions: loaded side by side by parallel workers, without FREEZE.
    """
    if table.layout == "partitioned":
        child = copy.copy(table)
        child.name = pg.partition_name(table, partition)

        def prepare():
            for statement in pg.create_partition_sql(schema, table, partition, lo, hi):
                cur.execute(statement)
        return child, True, prepare
    if partitions == 1:
        return table, True, lambda: cur.execute(f"TRUNCATE {pg_qualified(schema, table.name)}")
    return table, False, lambda: None


def load_partition(run_id, table_name, partition, buffer_mb, checksum=True, mode="streaming", progress=None):
    """Load one partition (streamed from the source, or from its bulk file); its rows and its
    marker commit together. Returns stats, or None when it was already loaded."""
    source_ep, target_ep = source_endpoint(), target_endpoint()
    if target_ep.url.dialect == "mssql":
        return mssql_load.load_partition(run_id, table_name, partition, buffer_mb, checksum, progress)
    buffer_bytes = int(buffer_mb * 1024 * 1024)
    with pg.session(target_ep) as conn:
        with conn.cursor() as cur:
            claimed = claim_partition(conn, cur, run_id, table_name, partition, progress)
            if claimed is None:
                return None
            table, partitions, lo, hi = claimed
            started = time.monotonic()
            into, freeze, prepare = _destination(cur, target_ep.schema, table, partitions, partition, lo, hi)
            if mode == "bulk":
                manifest = bulk.read_manifest(bulk.files_for(run_id, table_name, partition))
                fmt = manifest.get("format", "csv")          # as extracted, whatever [bulk] says now
                files = bulk.files_for(run_id, table_name, partition, fmt=fmt)
                src_rows, nbytes, changed = manifest["rows"], manifest["bytes"], manifest.get("changed", 0)
                src_sum = None if manifest["checksum"] is None else int(manifest["checksum"])
                with watch_copy(markers.shared_connection, conn.get_backend_pid(), progress):
                    dst_rows, via, how = bulk.load_file(cur, target_ep.schema, into, files, prepare, freeze,
                                                        buffer_bytes, fmt)
            else:
                prepare()
                via, how = "stream", "rows stream from the source cursor into COPY FROM STDIN"
                read = stream.reader(source_ep, table, lo, hi, checksum, buffer_bytes)
                # rows that never pass through Python are counted by the destination server
                watch = contextlib.nullcontext()
                if getattr(read, "os_pipe", False):
                    watch = watch_copy(markers.shared_connection, conn.get_backend_pid(), progress)
                with watch:
                    (src_rows, src_sum, changed), (dst_rows, _), nbytes = stream.stream(
                        read, stream.copy_into(cur, target_ep.schema, into, stream.source_format(source_ep, table),
                                               buffer_bytes, freeze),
                        buffer_bytes, progress)
            if src_rows != dst_rows:
                raise VerificationError(f"{table_name} partition {partition}: read {src_rows} rows "
                                        f"from the source but COPY stored {dst_rows}")
            if table.layout == "partitioned":
                cur.execute(pg.attach_partition_sql(target_ep.schema, table, partition, lo, hi))
            seconds = time.monotonic() - started
            first = markers.insert_loaded(cur, run_id, table_name, partition, dst_rows, nbytes, seconds,
                                          src_sum, via, changed)
            faults.pause("load-commit")
        conn.commit()
    if first:
        log.info("%s partition %d: %s", table_name, partition, how)
    return {"rows": dst_rows, "bytes": nbytes, "seconds": seconds}


def row_hash_method(source_ep, target_conn, table):
    """How both PostgreSQL servers hash rows, when the destination types are the source's:
    'columns' (each value's own hash function, XORed; PostgreSQL 11+) when every column type has
    one in pg.HASH_EXTENDED, else 'record' (hash_record_extended, PostgreSQL 14+) when the source
    can hash the row, else 'text' (the row's text). None for a SQL Server source, whose rows are
    hashed as they are read."""
    if source_ep.url.dialect != "postgres":
        return None
    if not stream.binary_compatible(table) or target_conn.server_version < 110000:
        return "text"
    with pg.session(source_ep) as conn, conn.cursor() as cur:
        if conn.server_version < 110000:
            return "text"
        if pg.column_hash_expr(table) is not None:
            return "columns"
        if conn.server_version < 140000 or target_conn.server_version < 140000:
            return "text"
        try:
            cur.execute(f"SELECT hash_record_extended(r, 0) FROM {pg_qualified(table.schema, table.name)} r LIMIT 1")
        except psycopg2.Error:          # a column type without a hash function
            return "text"
    return "record"


def _source_figures(source_ep, table, verify, row_hash):
    """(count, checksum or None) of the source table; PostgreSQL computes both itself."""
    conn = connect_source(source_ep)
    try:
        if source_ep.url.dialect == "postgres":
            with conn.cursor() as cur:
                cur.execute(pg.row_checksum_sql(table.schema, table.name, row_hash, table) if verify == "full"
                            else f"SELECT count(*), NULL FROM {pg_qualified(table.schema, table.name)}")
                count, total = cur.fetchone()
        else:
            cur = conn.cursor()
            cur.execute(f"SELECT COUNT_BIG(*) FROM {module(source_ep).qualified(table.schema, table.name)}")
            count, total = cur.fetchone()[0], None
    finally:
        conn.close()
    return int(count), (None if total is None else int(total))


def _target_figures(target_ep, table, verify, row_hash):
    """The destination's count and checksum, computed the way the source's side was."""
    if verify != "full":
        sql = f"SELECT count(*), NULL FROM {pg_qualified(target_ep.schema, table.name)}"
    elif row_hash:
        sql = pg.row_checksum_sql(target_ep.schema, table.name, row_hash, table)
    else:
        sql = pg.checksum_sql(target_ep.schema, table)
    with pg.session(target_ep) as conn, conn.cursor() as cur:
        cur.execute(sql)
        count, total = cur.fetchone()
    return int(count), (None if total is None else int(total))


def tallied(verify, table):
    """``--verify tally``: the destination's figure is the sum of the rows its COPYs stored, each
    committed with its partition's marker, instead of a count(*) over the destination. Not for an
    unlogged table, which a crash empties after those counts were committed: it is counted. (Into
    SQL Server the destination is always counted: its bulk copy's rows are counted by the client,
    not reported by the server.)"""
    return verify == "tally" and not table.unlogged


def committed_tallies():
    """No destination scan: verify_and_finish takes the loaded markers' rows as its count."""
    return None, None


def complete_table(run_id, table_name, verify="full"):
    """Verify against the source, then key, index, sequence, analyze and mark complete."""
    source_ep, target_ep = source_endpoint(), target_endpoint()
    if target_ep.url.dialect == "mssql":
        return mssql_load.complete_table(run_id, table_name, verify)
    with pg.session(target_ep) as conn:
        def figures(table):
            row_hash = row_hash_method(source_ep, conn, table) if verify == "full" else None
            return both_sides(lambda: _source_figures(source_ep, table, verify, row_hash),
                              committed_tallies if tallied(verify, table) else
                              lambda: _target_figures(target_ep, table, verify, row_hash))
        return verify_and_finish(
            conn, run_id, table_name, verify, figures,
            lambda table, partitions: pg.finish_table_steps(target_ep.schema, table, partitions))
