"""PostgreSQL as the destination: tables created with mapped types, partitions loaded by COPY
(FREEZE where the layout allows), key, indexes and sequences after verification, and the marker
tables' DDL and locks.

Layouts (``layout``): a plain table, or one range-partitioned on the integer key with a child
table per partition, created in the load's own transaction so its COPY may FREEZE the rows.
Rows arrive streamed (a source's COPY data through a bounded pipe into ``COPY FROM STDIN``) or
from a partition's bulk file, which the server reads itself when it can.
"""
import contextlib
import copy

import psycopg2

from .. import bulk, encode
from ..errors import DataError, SchemaError, one_line
from ..stream import batched, chunk_size, copy_rows, stream
from . import pg_types, tsql_expr
from . import postgres as pg
from .base import Destination, Written, by_hash_sql, changes_sql, percent_safe, pg_ident, pg_qualified

OWNER_COMMENT = "so_luigi run "

PG_DDL = """
CREATE SCHEMA IF NOT EXISTS {m};
CREATE TABLE IF NOT EXISTS {m}.runs (
    run_id        text PRIMARY KEY,
    source        text NOT NULL,          -- redacted URL: never a password
    source_schema text NOT NULL,
    target_schema text NOT NULL,
    created_at    timestamptz NOT NULL DEFAULT now());
CREATE TABLE IF NOT EXISTS {m}.tables (
    run_id          text NOT NULL,
    table_name      text NOT NULL,
    definition      jsonb NOT NULL,       -- the source table as planned, with mapped types
    partitions      integer NOT NULL,
    source_rows     bigint NOT NULL,      -- when planned: counted, or estimated (big tables)
    source_bytes    bigint,               -- size on disk when planned (schedules big partitions first)
    planned_at      timestamptz NOT NULL DEFAULT clock_timestamp(),
    completed_at    timestamptz,          -- the table-complete marker
    rows            bigint,
    bytes           bigint,
    seconds         double precision,
    source_checksum numeric,
    target_checksum numeric,
    verdict         text,
    PRIMARY KEY (run_id, table_name));
CREATE TABLE IF NOT EXISTS {m}.partitions (
    run_id     text NOT NULL,
    table_name text NOT NULL,
    partition  integer NOT NULL,
    lo         bigint,                    -- exclusive lower key bound, NULL = unbounded
    hi         bigint,                    -- inclusive upper key bound, NULL = unbounded
    rows       bigint NOT NULL,           -- rows expected when planned (for progress)
    PRIMARY KEY (run_id, table_name, partition));
CREATE TABLE IF NOT EXISTS {m}.loaded (
    run_id     text NOT NULL,
    table_name text NOT NULL,
    partition  integer NOT NULL,
    rows       bigint NOT NULL,
    bytes      bigint NOT NULL,
    seconds    double precision NOT NULL,
    checksum   numeric,                   -- rows' checksum as read from the source (row path only)
    via        text NOT NULL,             -- stream, server-file or client-file
    changed    bigint NOT NULL DEFAULT 0, -- values changed by the [data] nul policy
    peak_kb    bigint,                    -- peak RSS of the loading process (Linux VmHWM)
    worker     text NOT NULL,
    loaded_at  timestamptz NOT NULL DEFAULT clock_timestamp(),
    PRIMARY KEY (run_id, table_name, partition));
CREATE TABLE IF NOT EXISTS {m}.replications (
    run_id       text NOT NULL,
    tables       text NOT NULL,
    completed_at timestamptz NOT NULL DEFAULT clock_timestamp(),
    PRIMARY KEY (run_id, tables));
-- how the run reads its source (so_luigi.snapshot): added to marker tables of earlier releases too
ALTER TABLE {m}.runs ADD COLUMN IF NOT EXISTS source_snapshot text,         -- exported snapshot read at
                     ADD COLUMN IF NOT EXISTS source_read text,          -- in words, for the report
                     ADD COLUMN IF NOT EXISTS seen_at timestamptz;   -- a process of the run last alive
ALTER TABLE {m}.tables ADD COLUMN IF NOT EXISTS plan_id text;        -- which plan a bulk file was cut for
ALTER TABLE {m}.partitions ADD COLUMN IF NOT EXISTS lo_key text,     -- bounds on a key that is not one
                           ADD COLUMN IF NOT EXISTS hi_key text;     -- integer: the key's values (JSON)
-- re-syncs (so_luigi.sync): one row per ``--sync`` of a run, then one per step it took
CREATE TABLE IF NOT EXISTS {m}.syncs (
    run_id          text NOT NULL,
    generation      integer NOT NULL,     -- the run's first sync is 1
    pass            integer NOT NULL DEFAULT 1,   -- begun again from a new source snapshot
    source_snapshot text,
    started_at      timestamptz NOT NULL DEFAULT clock_timestamp(),
    finished_at     timestamptz,
    PRIMARY KEY (run_id, generation));
CREATE TABLE IF NOT EXISTS {m}.synced (
    run_id     text NOT NULL,
    generation integer NOT NULL,
    pass       integer NOT NULL,
    table_name text NOT NULL,
    item       text NOT NULL,             -- 'plan', 'partition N', 'table', 'foreign key NAME'
    outcome    text NOT NULL,             -- same, recopied, split, or the table's verdict
    proof      text,                      -- checksum or rowversion
    rows       bigint,
    inserted   bigint NOT NULL DEFAULT 0,
    updated    bigint NOT NULL DEFAULT 0,
    deleted    bigint NOT NULL DEFAULT 0,
    seconds    double precision NOT NULL DEFAULT 0,
    synced_at  timestamptz NOT NULL DEFAULT clock_timestamp(),
    PRIMARY KEY (run_id, generation, pass, table_name, item));
CREATE TABLE IF NOT EXISTS {m}.proofs (
    run_id     text NOT NULL,
    table_name text NOT NULL,
    partition  integer NOT NULL,
    rows       bigint NOT NULL,           -- the range's rows when last read or checked
    watermark  bigint NOT NULL,           -- SQL Server's MIN_ACTIVE_ROWVERSION() just before
    PRIMARY KEY (run_id, table_name, partition));
"""

# COPYs running now into the destination database, for ``so-luigi status``
IN_FLIGHT_SQL = """
SELECT c.relname, p.tuples_processed
FROM pg_stat_progress_copy p JOIN pg_class c ON c.oid = p.relid
WHERE p.datname = current_database() AND p.command = 'COPY FROM'
"""


class _Discard:
    """A sink that keeps nothing: the rows were read for their checksum alone."""

    def write(self, data, rows=None):
        return len(data)


class PostgresDestination(Destination):
    dialect = "postgres"
    checksum_family = "postgres"
    driver = "psycopg2"
    bulk_files = True
    cuts_by_position = True   # a partition's rows and marker commit together: no range is ever cleared

    # --- marker SQL ---------------------------------------------------------------------------
    ident = staticmethod(pg_ident)
    now = "clock_timestamp()"
    # when a table's first partition began loading (else when it was planned), for rates
    load_started = "coalesce(min(l.loaded_at - make_interval(secs => l.seconds)), t.planned_at)"
    # the catalog's answer to "is there such a table", for the name as the SQL spells it
    exists_sql = "SELECT to_regclass(%s) IS NOT NULL"
    lost = (psycopg2.OperationalError, psycopg2.InterfaceError)

    @staticmethod
    def seconds_since(column):
        return f"extract(epoch FROM clock_timestamp() - {column})"

    @staticmethod
    def lock(cur, key):
        cur.execute("SELECT pg_advisory_xact_lock(hashtextextended(%s, 0))", (key,))

    @staticmethod
    def marker_ddl(m):
        return [PG_DDL.format(m=m)]

    # --- connections --------------------------------------------------------------------------
    def translate(self, exc, role):
        return pg.translate(exc)

    def connect(self, autocommit=False):
        return pg.connect(self.endpoint, autocommit=autocommit)

    def session(self):
        return pg.session(self.endpoint)

    def qualified(self, schema, name):
        return pg_qualified(schema, name)

    # --- planning -----------------------------------------------------------------------------
    def map_types(self, tables, source, overrides=None):
        pg_types.check_mappable(tables, source.dialect, pg_types.load_overrides() if overrides is None else overrides)

    def layout(self, table, partitions, layout, mode):
        """plain or partitioned (see the README's bulk section for the trade-offs).

        auto is partitioned in bulk mode, plain in streaming mode. Partitioning needs more than
        one partition of an integer key, and no unique index without that key (PostgreSQL
        requires the partition key in every unique index of a partitioned table).
        """
        if layout == "auto":
            layout = "partitioned" if mode == "bulk" else "plain"
        if layout != "partitioned":
            return "plain"
        key = table.int_key
        if partitions < 2 or key is None:
            return "plain"
        if any(idx.unique and key not in [c for c, _ in idx.columns] for idx in table.indexes):
            return "plain"
        if any(c.kind in ("unique", "exclude") for c in table.constraints):
            return "plain"
        return "partitioned"

    def carry(self, table):
        """From SQL Server: defaults, CHECK constraints and filtered indexes' predicates in
        PostgreSQL's words where tsql_expr finds a faithful form; each one it cannot translate
        is listed, with the reason (a filtered index goes whole: unfiltered it could refuse rows)."""
        if table.dialect != "mssql":
            return
        booleans = [c.name for c in table.columns if c.pg_type == "boolean"]
        for col in [c for c in table.columns if c.default]:
            try:
                col.default = tsql_expr.default_for(col.default, col.name, table, col.name in booleans)
            except tsql_expr.Untranslatable as why:
                table.not_carried.append([f"default of {col.name} ({col.default})", f"not translated: {why}"])
                col.default = ""
        kept = []
        for idx in table.indexes:
            try:
                idx.where = idx.where and tsql_expr.translate(idx.where, table, booleans)
                kept.append(idx)
            except tsql_expr.Untranslatable as why:
                table.not_carried.append([f"index {idx.name} (WHERE {idx.where})", f"not translated: {why}"])
        table.indexes = kept
        carried = []
        for con in table.constraints:
            if con.kind == "check":
                try:
                    con.definition = (f"CHECK ({tsql_expr.translate(con.definition, table, booleans)})"
                                      + ("" if con.validated else " NOT VALID"))
                except tsql_expr.Untranslatable as why:
                    table.not_carried.append([f"check {con.name} ({con.definition})", f"not translated: {why}"])
                    continue
            carried.append(con)
        table.constraints = carried

    def constraint_state(self, cur, table, name):
        cur.execute("SELECT convalidated FROM pg_constraint WHERE conrelid = to_regclass(%s) AND conname = %s",
                    (pg_qualified(self.schema, table.name), name))
        row = cur.fetchone()
        return None if row is None else ("valid" if row[0] else "not valid")

    def add_foreign_key(self, cur, table, fk):
        cols = ", ".join(pg_ident(c) for c in fk.columns)
        refs = ", ".join(pg_ident(c) for c in fk.ref_columns)
        timing = (" DEFERRABLE" + (" INITIALLY DEFERRED" if fk.deferred else "")) if fk.deferrable else ""
        match = f" MATCH {fk.match}" if fk.match else ""
        # a partitioned table takes no NOT VALID key (before PostgreSQL 18): added checked there
        not_valid = "" if table.layout == "partitioned" else " NOT VALID"
        cur.execute(f"ALTER TABLE {pg_qualified(self.schema, table.name)} ADD CONSTRAINT {pg_ident(fk.name)} "
                    f"FOREIGN KEY ({cols}) REFERENCES {pg_qualified(self.schema, fk.ref_table)} ({refs}){match} "
                    f"ON UPDATE {fk.on_update} ON DELETE {fk.on_delete}{timing}{not_valid}")

    def validate_constraint(self, cur, table, name):
        cur.execute(f"ALTER TABLE {pg_qualified(self.schema, table.name)} VALIDATE CONSTRAINT {pg_ident(name)}")

    def create(self, cur, run_id, table):
        cur.execute(f"CREATE SCHEMA IF NOT EXISTS {pg_ident(self.schema)}")
        self._drop_previous(cur, table.name)
        for statement in pg.create_table_statements(self.schema, table):
            cur.execute(statement)
        for statement, what in pg.default_statements(self.schema, table):
            pg.optional(statement, what, table)(cur)
        cur.execute(f"COMMENT ON TABLE {percent_safe(pg_qualified(self.schema, table.name))} IS %s",
                    (f"{OWNER_COMMENT}{run_id}",))

    def _drop_previous(self, cur, name):
        """Replace a table an earlier so_luigi run created; never touch one it did not."""
        cur.execute("SELECT obj_description(to_regclass(%s), 'pg_class'), to_regclass(%s) IS NOT NULL",
                    (pg_qualified(self.schema, name),) * 2)
        comment, exists = cur.fetchone()
        if not exists:
            return
        if not (comment or "").startswith(OWNER_COMMENT):
            raise SchemaError(f"destination table {self.schema}.{name} already exists and was not created by "
                              f"so_luigi: drop it, or set [target] schema to another schema")
        self._drop_referencing_keys(cur, name)
        cur.execute(f"DROP TABLE {pg_qualified(self.schema, name)}")

    def _drop_referencing_keys(self, cur, name):
        """Foreign keys of other so_luigi tables that reference ``name`` go first (their step
        adds them again); one of a table so_luigi did not create stops, naming it."""
        cur.execute("SELECT conrelid::regclass::text, conname, coalesce(obj_description(conrelid, 'pg_class'), '') "
                    "FROM pg_constraint WHERE contype = 'f' AND conparentid = 0 AND confrelid = to_regclass(%s) "
                    "AND conrelid <> confrelid", (pg_qualified(self.schema, name),))
        for child, constraint, comment in cur.fetchall():
            if not comment.startswith(OWNER_COMMENT):
                raise SchemaError(f"destination table {self.schema}.{name} is referenced by foreign key {constraint} "
                                  f"of {child}, which so_luigi did not create: drop that key to replace the table")
            cur.execute(f"ALTER TABLE {child} DROP CONSTRAINT {pg_ident(constraint)}")

    # --- loading ------------------------------------------------------------------------------
    def _into(self, cur, part):
        """Where a partition's rows go, whether COPY may FREEZE them, and how to get it ready.

        * partitioned layout: a new child table per partition, created in the load's
          transaction, so COPY FREEZE applies; it is attached to the parent before the commit;
        * a plain table of one partition: truncated in the load's transaction, so FREEZE applies;
        * a plain table of several partitions: loaded side by side by parallel workers, without FREEZE.
        """
        table = part.table
        if part.replace:                # a sync's recopy: rows routed by the table, as they stand
            return table, False, lambda: None
        if table.layout == "partitioned":
            child = copy.copy(table)
            child.name = pg.partition_name(table, part.number)

            def prepare():
                for statement in pg.create_partition_sql(self.schema, table, part.number, part.lo, part.hi):
                    cur.execute(statement)
            return child, True, prepare
        if part.partitions == 1:
            return table, True, lambda: cur.execute(f"TRUNCATE {pg_qualified(self.schema, table.name)}")
        return table, False, lambda: None

    def write(self, conn, cur, part, source, mode, buffer_bytes, checksum):
        into, freeze, prepare = self._into(cur, part)
        watch = part.watch(conn.get_backend_pid()) if part.watch else contextlib.nullcontext()
        if mode == "bulk":
            written = self._load_file(cur, into, part, prepare, freeze, buffer_bytes, watch)
        else:
            prepare()
            read = source.copy_reader(part.table, part.lo, part.hi, checksum, buffer_bytes)
            # rows that never pass through Python are counted by the destination server
            with watch if getattr(read, "os_pipe", False) else contextlib.nullcontext():
                (src_rows, src_sum, changed), stored, nbytes = stream(
                    read, self._copy_in(cur, into, source.copy_format(part.table), buffer_bytes, freeze),
                    buffer_bytes, part.progress)
            written = Written(src_rows, stored, nbytes, src_sum, "stream", changed,
                              "rows stream from the source cursor into COPY FROM STDIN")
        if part.table.layout == "partitioned" and not part.replace:
            cur.execute(pg.attach_partition_sql(self.schema, part.table, part.number, part.lo, part.hi))
        return written

    def _copy_in(self, cur, into, fmt, buffer_bytes, freeze):
        """The stream's writer: COPY ... FROM STDIN reading the pipe; returns the rows stored."""
        def write(pipe):
            cur.copy_expert(pg.copy_in_sql(self.schema, into, fmt, freeze), pipe, size=chunk_size(buffer_bytes))
            return cur.rowcount
        return write

    def _load_file(self, cur, into, part, prepare, freeze, buffer_bytes, watch):
        """COPY the partition's extracted file (in the format its manifest says, whatever [bulk]
        says now) into ``into``; ``prepare()`` (re)creates or truncates it first.

        Server-side when it can, inside a savepoint so a refusal costs nothing; else streamed.
        """
        manifest = bulk.read_manifest(bulk.files_for(part.run_id, part.table.name, part.number))
        if not bulk.cut_for(manifest, part.plan):
            raise DataError(f"{part.table.name} partition {part.number}: its bulk file was cut for another plan "
                            f"of the table (plan {manifest.get('plan')}, keys {manifest.get('lo')}..{manifest.get('hi')}) "
                            f"and is never loaded; rerun: the partition is extracted again")
        fmt = manifest.get("format", "csv")
        files = bulk.files_for(part.run_id, part.table.name, part.number, fmt=fmt)
        src_sum = None if manifest["checksum"] is None else int(manifest["checksum"])

        def written(stored, via, how):
            return Written(manifest["rows"], stored, manifest["bytes"], src_sum, via, manifest.get("changed", 0), how)
        with watch:
            if files.local and not files.compressed:
                cur.execute("SAVEPOINT so_luigi_bulk")
                try:
                    prepare()
                    literal = cur.mogrify("%s", (files.server,)).decode()
                    cur.execute(pg.copy_in_sql(self.schema, into, fmt, freeze, source=literal))
                    stored = cur.rowcount
                    cur.execute("RELEASE SAVEPOINT so_luigi_bulk")
                    return written(stored, "server-file",
                                   f"the server reads the files itself (COPY FROM '{files.server}')")
                except psycopg2.Error as exc:
                    cur.execute("ROLLBACK TO SAVEPOINT so_luigi_bulk")
                    why = one_line(exc.pgerror or exc)
            else:
                why = "gzip files" if files.compressed else "the files are not on a local path"
            prepare()
            with bulk.open_file(files.data, "rb") as fh:
                cur.copy_expert(pg.copy_in_sql(self.schema, into, fmt, freeze), fh, size=chunk_size(buffer_bytes))
            return written(cur.rowcount, "client-file",
                           f"the client streams the files through COPY FROM STDIN ({why})")

    # --- completing ---------------------------------------------------------------------------
    def checksum_method(self, source, table, conn):
        """Between two PostgreSQL servers, the row hash both compute (PostgresSource.row_hash);
        from another source, none: its rows were hashed as COPY text lines when they were read,
        and checksum_sql hashes the stored rows' text the same way."""
        if source.checksum_family != self.checksum_family:
            return None
        return source.row_hash(table, conn.server_version)

    def tallies(self, table, verify):
        """``--verify tally``: the destination's figure is the sum of the rows its COPYs stored,
        each committed with its partition's marker, instead of a count(*). Not for an unlogged
        table, which a crash empties after those counts were committed: it is counted."""
        return verify == "tally" and not table.unlogged

    def figures(self, table, verify, method):
        if verify != "full":
            sql = f"SELECT count(*), NULL FROM {pg_qualified(self.schema, table.name)}"
        elif method:
            sql = pg.row_checksum_sql(self.schema, table.name, method, table)
        else:
            sql = pg.checksum_sql(self.schema, table)
        with pg.session(self.endpoint) as conn, conn.cursor() as cur:
            cur.execute(sql)
            count, total = cur.fetchone()
        return int(count), (None if total is None else int(total))

    def finish_steps(self, table, partitions, positions=None):
        return pg.finish_table_steps(self.schema, table, partitions, positions)

    # --- re-syncing ---------------------------------------------------------------------------
    def _figures_sql(self, table, method):
        if method:
            return pg.row_checksum_sql(self.schema, table.name, method, table)
        return pg.checksum_sql(self.schema, table)

    def range_figures(self, table, lo, hi, method):
        with pg.session(self.endpoint) as conn, conn.cursor() as cur:
            cur.execute(*pg.range_sql(self._figures_sql(table, method), table, lo, hi))
            count, total = cur.fetchone()
        return int(count), int(total)

    def source_figures(self, source, table, lo, hi, method, buffer_bytes):
        """The server's checksum between two PostgreSQL servers; from SQL Server, the md5 of
        each row's COPY text line as the stream computes it, its lines thrown away."""
        if method:
            return source.range_figures(table, lo, hi, method)
        rows, total, _ = source.copy_reader(table, lo, hi, True, buffer_bytes)(_Discard())
        return int(rows), int(total or 0)

    def clear_range(self, cur, table, lo, hi):
        cur.execute(*pg.range_sql(f"DELETE FROM {pg_qualified(self.schema, table.name)}", table, lo, hi))
        return cur.rowcount

    def _hashed(self, table, lo, hi):
        """(SQL, params): the partition's key columns and a 64-bit hash of each whole row."""
        keys = ", ".join(pg_ident(c) for c in table.primary_key)
        select = (f"SELECT {keys + ', ' if keys else ''}hashtextextended(r::text, 0) AS so_h "
                  f"FROM {pg_qualified(self.schema, table.name)} r")
        return pg.range_sql(select, table, lo, hi)

    def note_before(self, cur, table, lo, hi):
        sql, params = self._hashed(table, lo, hi)
        if not table.primary_key:
            sql = by_hash_sql(sql)
        cur.execute("DROP TABLE IF EXISTS pg_temp.so_luigi_before")
        cur.execute(f"CREATE TEMP TABLE so_luigi_before ON COMMIT DROP AS {sql}", params)

    def changes(self, cur, table, lo, hi):
        sql, params = self._hashed(table, lo, hi)
        cur.execute(changes_sql(sql, table.primary_key, "so_luigi_before", pg_ident), params)
        found = tuple(int(v) for v in cur.fetchone())
        cur.execute("DROP TABLE so_luigi_before")
        return found

    def release_foreign_keys(self, cur, table):
        q = pg_qualified(self.schema, table.name)
        cur.execute("SELECT conname FROM pg_constraint WHERE contype = 'f' AND conparentid = 0 "
                    "AND conrelid = to_regclass(%s)", (q,))
        own = {fk.name for fk in table.foreign_keys}
        for (name,) in cur.fetchall():
            if name in own:
                cur.execute(f"ALTER TABLE {q} DROP CONSTRAINT {pg_ident(name)}")
        self._drop_referencing_keys(cur, table.name)

    def sequence_steps(self, table, positions):
        return pg.sequence_sql(self.schema, table, positions)

    # --- maintenance --------------------------------------------------------------------------
    def drop_tables(self, cur, names):
        for name in names:
            cur.execute("SELECT to_regclass(%s) IS NOT NULL", (pg_qualified(self.schema, name),))
            if cur.fetchone()[0]:
                self._drop_referencing_keys(cur, name)
            cur.execute(f"DROP TABLE IF EXISTS {pg_qualified(self.schema, name)}")

    def rows_in_flight(self, cur):
        cur.execute(IN_FLIGHT_SQL)
        return cur.fetchall()

    def replace_table(self, table, rows):
        """Dropped, created with the types so_luigi maps the definition's to, COPYed, keyed and
        committed; returns (rows, bytes)."""
        pg_types.map_table(table, table.dialect or "mssql")
        with pg.session(self.endpoint) as conn, conn.cursor() as cur:
            cur.execute(f"CREATE SCHEMA IF NOT EXISTS {pg_ident(self.schema)}")
            cur.execute(f"DROP TABLE IF EXISTS {pg_qualified(self.schema, table.name)}")
            for statement in pg.create_table_statements(self.schema, table):
                cur.execute(statement)
            count, nbytes = self.copy_rows(cur, table, rows)
            for statement in pg.finish_table_sql(self.schema, table):
                statement(cur) if callable(statement) else cur.execute(statement)
            conn.commit()
        return count, nbytes

    def copy_rows(self, cur, table, rows, buffer_bytes=32 << 20, batch_rows=2000):
        """COPY Python row tuples (in column order) into an existing table; returns (rows, bytes)."""
        encoder = encode.make_row_encoder(table)
        (count, _, _), _, nbytes = stream(
            lambda sink: copy_rows(batched(rows, batch_rows), encoder, sink, False, table),
            self._copy_in(cur, table, "text", buffer_bytes, False), buffer_bytes)
        return count, nbytes
