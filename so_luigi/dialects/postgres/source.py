"""PostgreSQL as a source: its catalog, its partitions cut along the key, and its rows read as
COPY data (into the stream, a bulk file) or as row tuples (for a SQL Server destination).

Reads run in read-only transactions; given the run's ``snapshot`` (so_luigi.snapshot), every
connection imports it first, so every read of the run sees the source at one moment. Rows into
PostgreSQL travel as ``COPY TO STDOUT`` output, binary when the destination keeps every column's type (stream.binary_compatible), written from
C straight into an OS pipe or the bulk file.
"""
import atexit
import multiprocessing
from contextlib import contextmanager, nullcontext

import psycopg2

from ...errors import SnapshotGone
from ...stream import binary_compatible
from ..base import Source
from . import catalog, checksum, connection, ddl, forms, snapshot
from .connection import ident, qualified


# (source, schemas, excluded, snapshot) -> the objects.Dump made at that snapshot by this process
_dumps = {}


class PostgresSource(Source):
    dialect = "postgres"
    checksum_family = "postgres"
    driver = "psycopg2"
    binary_copy = True
    exports_snapshots = True
    dumps_schema = True
    catalog = catalog

    def translate(self, exc, role):
        return connection.translate(exc)

    _pinned = None

    def connect(self):
        """A read-only session, in a transaction at the run's snapshot when it has one (within
        ``pinned``, the one session every read shares)."""
        if self._pinned is not None:
            return self._pinned
        conn = connection.connect(self.endpoint)
        if not self.snapshot:
            conn.set_session(readonly=True)
            return conn
        snapshot.enter(conn, self.snapshot)
        return conn

    @contextmanager
    def pinned(self):
        """Every read of this Source within goes through one session, in one read-only
        transaction at the run's snapshot: the session a read ends is not rolled back (nor
        closed) but kept for the next. Three statements saved per read (BEGIN, SET TRANSACTION
        SNAPSHOT, ROLLBACK), four reads per small table."""
        if self._pinned is not None:
            yield
            return
        conn = self.connect()
        self._pinned = _Kept(conn)
        try:
            yield
        finally:
            self._pinned = None
            conn.close()

    def estimates(self, conn, tables):
        return catalog.estimates(conn, tables)

    def schema_dump(self, exclude=()):
        """``pg_dump --schema-only`` of the copied schemas (objects.Dump, closed by its caller),
        at the run's snapshot while it is held, else at a snapshot of its own. At the run's
        snapshot, the dump the main process made is kept for the run's other step (both object
        steps from one pg_dump: 0.15 s each for 500 tables), and removed when it exits."""
        from . import objects
        held = self.snapshot if self.snapshot and self.can_import(self.snapshot) else None
        key = (self.endpoint.url.raw, tuple(self.endpoint.schemas), tuple(exclude), held)
        if held is not None and _dumps.get(key) is not None and _dumps[key].path is not None:
            return nullcontext(_dumps[key])
        dump = objects.Dump(self.endpoint.url.raw, list(self.endpoint.schemas), exclude, snapshot=held)
        if held is None or multiprocessing.parent_process() is not None:
            return dump         # a worker's (Luigi forks one per task): gone when its step is done
        _dumps[key] = dump
        atexit.register(dump.close)
        return nullcontext(dump)

    def can_import(self, snapshot):
        try:
            type(self)(self.endpoint, snapshot).connect().close()
            return True
        except SnapshotGone:
            return False

    def export_snapshot(self):
        """(a connection holding a new snapshot, its name, when it was taken in words)."""
        conn = connection.connect(self.endpoint)
        name, taken = snapshot.export(conn)
        return conn, name, taken

    def snapshot_held(self, conn):
        return snapshot.still_held(conn)

    def measure(self, conn, table, rows_per_partition, by_position=False):
        """A table without a single integer key is cut into ranges of heap blocks (ctid ranges,
        read by TID range scans, PostgreSQL 14+) when the destination takes such partitions.
        Exact only at one snapshot, where every row version lies at one place: the run's."""
        size = catalog.table_bytes(conn, table)
        if table.int_key is None and by_position and conn.server_version >= 140000:
            table.cut = "ctid"
            rows, bounds, step = catalog.block_boundaries(conn, table, lambda n: rows_per_partition(n, size))
        else:
            rows, bounds, step = catalog.count_and_boundaries(conn, table, lambda n: rows_per_partition(n, size))
        return size, rows, bounds, step

    def copy_format(self, table, checksum=True):
        return "binary" if binary_compatible(table) else "text"

    def copy_reader(self, table, lo, hi, checksum, buffer_bytes):
        """COPY (SELECT range) TO STDOUT into the sink: psycopg2 writes each row from C."""
        fmt = self.copy_format(table)

        def read(sink):
            conn = self.connect()
            try:
                with conn.cursor() as cur:
                    cur.copy_expert(ddl.copy_out_sql(table, lo, hi, fmt, cur), sink, size=256 * 1024)
                    rows = cur.rowcount
                conn.rollback()
                return rows, None, 0
            except psycopg2.Error as exc:
                raise connection.translate(exc, conn) from exc     # says "source": the error itself may not
            finally:
                conn.close()
        read.os_pipe = True
        return read

    def extract(self, table, lo, hi, fmt, sink, checksum):
        with self.session() as conn, conn.cursor() as cur:
            cur.copy_expert(ddl.copy_out_sql(table, lo, hi, fmt, cur), sink, size=256 * 1024)
            return cur.rowcount, None, 0

    def text_reader(self, table, lo, hi, exprs, where=None, options="FORMAT text"):
        """read(sink): COPY (with ``options``) of ``exprs`` over the range's rows (those where
        ``where`` holds, when given) into the sink, which psycopg2 writes from C; returns the rows."""
        def read(sink):
            conn = self.connect()
            try:
                with conn.cursor() as cur:
                    select = cur.mogrify(*_select(table, exprs, lo, hi, where)).decode()
                    cur.copy_expert(f"COPY ({select}) TO STDOUT WITH ({options})", sink, size=256 * 1024)
                    rows = cur.rowcount
                conn.rollback()
                return rows
            except psycopg2.Error as exc:
                raise connection.translate(exc, conn) from exc
            finally:
                conn.close()
        return read

    def batches(self, table, lo, hi, batch_rows, where=None):
        """Through a server-side cursor: rows arrive as they are fetched. json comes as its
        text and money as numeric, the values psycopg2 would otherwise parse or localise; arrays
        as JSON text, a domain as its base type, and the types SQL Server has none of (enums,
        ranges, inet, ...) as their PostgreSQL text (forms.pg_form). ``where``: only the rows
        where it holds."""
        def expr(c):
            form, inner = forms.pg_form(c, table)     # inner: a domain's base type, else the column
            name = ident(c.name)
            if form == "json":
                return f"array_to_json({name})::text"
            if form in ("enum", "text") or inner.data_type in ("json", "jsonb"):
                return f"{name}::text"
            if inner.data_type == "money":
                return f"{name}::numeric"
            return name if inner is c else f"{name}::{inner.source_type}"
        exprs = [expr(c) for c in table.loaded_columns]
        if where is None:
            query, params = ddl.range_sql(f"SELECT {', '.join(exprs)} FROM {qualified(table.schema, table.name)}",
                                          table, lo, hi)
        else:
            query, params = _select(table, exprs, lo, hi, where)
        conn = self.connect()
        try:
            cur = conn.cursor(name="so_luigi_partition")
            cur.execute(query, params)
            yield from iter(lambda: cur.fetchmany(batch_rows), [])
        finally:
            conn.close()

    def figures(self, table, method=None):
        q = qualified(table.schema, table.name)
        with self.session() as conn, conn.cursor() as cur:
            cur.execute(checksum.row_checksum_sql(table.schema, table.name, method, table) if method
                        else f"SELECT count(*), NULL FROM {q}")
            count, total = cur.fetchone()
        return int(count), (None if total is None else int(total))

    def range_figures(self, table, lo, hi, method):
        with self.session() as conn, conn.cursor() as cur:
            cur.execute(*ddl.range_sql(checksum.row_checksum_sql(table.schema, table.name, method, table), table, lo, hi))
            count, total = cur.fetchone()
        return int(count), int(total)

    def scans_ranges(self, table, method):
        return bool(method) and table.int_key is not None and table.cut != "ctid"

    def figures_by_range(self, table, cuts, method):
        with self.session() as conn, conn.cursor() as cur:
            return checksum.by_range(cur, checksum.row_checksum_sql(table.schema, table.name, method, table),
                                     table.int_key, cuts)

    def tail(self, conn, table, after, step):
        return catalog.tail_boundaries(conn, table, after, step)

    def sequence_positions(self, table):
        """Read outside the snapshot: a sequence is not transactional, so its position is the
        one it has now, at least as far as any row the copy holds (as pg_dump takes it)."""
        wanted = [c.name for c in table.columns if c.identity and c.sequence]
        if not wanted:
            return {}
        q = qualified(table.schema, table.name)
        positions = {}
        with connection.session(self.endpoint) as conn, conn.cursor() as cur:
            for name in wanted:
                # pg_sequences: no privilege on the sequence needed (SELECT on the table is all a
                # reader has); its last_value is NULL for a sequence never drawn from, or one the
                # role may not read: then the copy's continues after the largest value copied
                cur.execute("SELECT s.last_value FROM pg_sequences s WHERE format('%%I.%%I', s.schemaname, "
                            "s.sequencename) = pg_get_serial_sequence(%s, %s)", (q, name))
                row = cur.fetchone()
                if row and row[0] is not None:
                    positions[name] = (row[0], True)
        return positions

    def row_hash(self, table, destination_version):
        """How both PostgreSQL servers hash rows, when the destination keeps the source's types:
        'columns' (each value's own hash function, XORed; PostgreSQL 11+) when every column type
        has one in checksum.HASH_EXTENDED, else 'record' (hash_record_extended, PostgreSQL 14+) when
        this server can hash the row, else 'text' (the row's text)."""
        if not binary_compatible(table) or destination_version < 110000:
            return "text"
        with self.session() as conn, conn.cursor() as cur:
            if conn.server_version < 110000:
                return "text"
            if checksum.column_hash_expr(table) is not None:
                return "columns"
            if conn.server_version < 140000 or destination_version < 140000:
                return "text"
            # in a savepoint: the session may be one every read shares (pinned), which a
            # failed statement would leave unusable
            cur.execute("SAVEPOINT so_luigi_probe")
            try:
                cur.execute(f"SELECT hash_record_extended(r, 0) FROM {qualified(table.schema, table.name)} r LIMIT 1")
            except psycopg2.Error:          # a column type without a hash function
                cur.execute("ROLLBACK TO SAVEPOINT so_luigi_probe; RELEASE SAVEPOINT so_luigi_probe")
                return "text"
            cur.execute("RELEASE SAVEPOINT so_luigi_probe")
        return "record"


def _select(table, exprs, lo, hi, where=None):
    """(sql, params): ``exprs`` over the range's rows, those where ``where`` holds when given."""
    inner, params = ddl.range_sql(f"SELECT * FROM {qualified(table.schema, table.name)}", table, lo, hi)
    safe = (lambda s: s.replace("%", "%%")) if params is not None else (lambda s: s)
    return (f"SELECT {safe(', '.join(exprs))} FROM ({inner}) AS so_luigi_rows"
            + (f" WHERE {safe(where)}" if where else "")), params


class _Kept:
    """A connection lent to every read within PostgresSource.pinned: ending a read (rollback,
    close) leaves its transaction open for the next."""

    def __init__(self, conn):
        self._conn = conn

    def __getattr__(self, name):
        return getattr(self._conn, name)

    def rollback(self):
        pass

    def close(self):
        pass
