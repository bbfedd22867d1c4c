"""SQL Server (2016+, Azure SQL, Babelfish) as a source: its catalog (``mssql``), partitions cut
along the key, and rows read through pymssql's cursor in batches.

Into PostgreSQL the rows become CSV when both servers compute the checksum (``computes_lines``),
else COPY text whose lines are hashed on the way (``stream.copy_rows``), through ``encode``; a
stream reads them as Arrow batches through mssql-python instead where it is installed (``fast``,
``encode_arrow``). Into SQL Server they go as pymssql returns them.
"""
import os
from dataclasses import replace

from ... import encode
from ...errors import DataError
from ...planning import boundaries_sql
from ...stream import bad_unicode, batch_encoder, chunk_size, copy_rows, row_encoder
from ..base import Source, type_name
from . import catalog, checksum, connection, fast
from .connection import ident


_ISOLATION = {}     # (url, pid) -> the isolation level its reads use


def _snapshot_allowed(conn):
    """Whether the database allows SNAPSHOT isolation (sys.databases, SQL Server 2005+)."""
    cur = conn.cursor()
    try:
        cur.execute("SELECT snapshot_isolation_state FROM sys.databases WHERE database_id = DB_ID()")
        row = cur.fetchone()
    except Exception:  # noqa: BLE001 -- a server without the column reads live
        return False
    return bool(row) and row[0] == 1


def _loaded(table):
    """(the table as its destination loads it, a function keeping those columns of a batch of
    rows): the columns the destination generates are read, for verification, but not sent."""
    keep = table.loaded_positions
    if len(keep) == len(table.columns):
        return table, lambda batch: batch
    return replace(table, columns=table.loaded_columns), lambda batch: [tuple(r[i] for i in keep) for r in batch]


class MssqlSource(Source):
    dialect = "mssql"
    checksum_family = "tsql"
    driver = "pymssql"
    catalog = catalog

    def __init__(self, endpoint, snapshot=None):
        super().__init__(endpoint, snapshot)
        fast.preload(endpoint.url)

    def translate(self, exc, role):
        return connection.translate(exc, role)

    def connect(self):
        """Reads in SNAPSHOT isolation where ALLOW_SNAPSHOT_ISOLATION is on: each statement (a
        partition's SELECT) sees one moment; SQL Server cannot share one across sessions."""
        conn = connection.connect(self.endpoint)
        key = (self.endpoint.url.raw, os.getpid())
        if key not in _ISOLATION:
            _ISOLATION[key] = "SNAPSHOT" if _snapshot_allowed(conn) else "READ COMMITTED"
        if _ISOLATION[key] == "SNAPSHOT":
            conn.cursor().execute("SET TRANSACTION ISOLATION LEVEL SNAPSHOT")
        return conn

    def consistency(self):
        with self.session():
            pass
        if _ISOLATION[(self.endpoint.url.raw, os.getpid())] == "SNAPSHOT":
            return ("not consistent across partitions: each partition read under SNAPSHOT isolation, "
                    "at its own moment")
        return ("not consistent: read live (READ COMMITTED); ALTER DATABASE ... SET "
                "ALLOW_SNAPSHOT_ISOLATION ON reads each partition at one moment")

    def measure(self, conn, table, rows_per_partition, by_position=False):
        size = catalog.table_bytes(conn, table)
        rows, bounds, step = catalog.count_and_boundaries(conn, table, lambda n: rows_per_partition(n, size))
        return size, rows, bounds, step

    def _rows(self, table, lo, hi, batch_rows, select=catalog.select_sql):
        """Batches of the range; ``batch_rows`` is a one-element list the caller may resize."""
        with self.session() as conn:
            cur = conn.cursor()
            cur.execute(*select(table, lo, hi))
            while True:
                try:
                    batch = cur.fetchmany(batch_rows[0])
                except ValueError as exc:   # a value pymssql cannot build as Python's (a time of 24:00)
                    where = "the first partition" if lo is None else f"the partition after key {lo}"
                    raise DataError(f"{table.qualified}: the source holds a value Python cannot represent "
                                    f"({exc}), in {where}; exclude the table with --tables") from None
                if not batch:
                    return
                yield batch

    def isolation(self):
        """The isolation level this process's reads use (asked of the server once)."""
        key = (self.endpoint.url.raw, os.getpid())
        if key not in _ISOLATION:
            with self.session():
                pass
        return _ISOLATION[key]

    def copy_format(self, table, checksum=True):
        """COPY text, whose lines are hashed as they are read; CSV when the servers compute the
        checksum (pyarrow writes it three times as fast as the text is made), or binary COPY when
        the reader sends it (``may_send_binary``: its first bytes say so)."""
        return "text" if checksum else "csv"

    def copy_reader(self, table, lo, hi, checksum, buffer_bytes):
        """COPY text lines (CSV without ``checksum``, copy_format): Arrow batches made text
        column at a time (``fast``), else rows encoded in Python; in batches resized to about a
        chunk each."""
        def read(sink):
            conn = fast.open_for(self.endpoint, self.isolation, table)
            if conn is not None:
                try:
                    names = None if self.endpoint.url.options.copy == "csv" else \
                        [type_name(c.pg_type) for c in table.columns]
                    encoder = batch_encoder(table, csv=not checksum, type_names=names)
                except BaseException:
                    conn.close()
                    raise
                return fast.reader(conn, table, lo, hi, checksum, buffer_bytes, encoder, self.endpoint)(sink)
            batch = [1000]
            rows = self._rows(table, lo, hi, batch)
            if checksum:
                return copy_rows(rows, row_encoder(table), sink, checksum, table, batch, chunk_size(buffer_bytes))
            loaded, sent = _loaded(table)
            return copy_rows(map(sent, rows), row_encoder(loaded, csv=True), sink, False, loaded, batch,
                             chunk_size(buffer_bytes))
        read.may_send_binary = not checksum         # the Arrow path's BinaryBatchEncoder
        return read

    def extract(self, table, lo, hi, fmt, sink, checksum):
        """CSV; the checksum comes from the same rows' COPY text lines, as a stream's would."""
        loaded, sent = _loaded(table)
        to_csv = row_encoder(loaded, csv=True)
        to_text = row_encoder(table) if checksum else None
        rows, total = 0, 0
        for batch in self._rows(table, lo, hi, [5000]):
            written = sent(batch)
            try:
                lines = encode.encode_lines(to_csv(written))
                if to_text is not None:
                    total += encode.lines_checksum(encode.encode_lines(to_text(batch)))
            except UnicodeEncodeError:
                raise bad_unicode(loaded, written, to_csv(written)) from None
            lines.append(b"")
            sink.write(b"\n".join(lines))
            rows += len(batch)
        return rows, (total if checksum else None), sum(to_csv.changed.values())

    def batches(self, table, lo, hi, batch_rows):
        """Time types with 7 fractional digits come as text: Python's datetime stops at
        microseconds; sql_variant, hierarchyid and spatial types as their text (catalog.read_sql)."""
        def select(table, lo, hi):
            def expr(c):
                if c.data_type in ("datetime2", "datetimeoffset", "time") and (c.precision or 0) > 6:
                    return f"CONVERT(varchar(40), {ident(c.name)}, 121)"
                return catalog.read_sql(c)
            return catalog.range_sql(f"SELECT {', '.join(expr(c) for c in table.columns)} "
                                   f"FROM {connection.qualified(table.schema, table.name)}", table, lo, hi)
        return self._rows(table, lo, hi, [batch_rows], select)

    def computes_lines(self, table):
        """Whether this server computes the "lines" checksum of the table's rows, the one a
        PostgreSQL destination computes of its copy (checksum.FROM_MSSQL): every column's type
        has its text, U+0000 fails a load (a policy that changes values would change the
        destination's checksum), and the server hashes UTF-8."""
        from ...config import section
        return section("data").nul == "fail" and checksum.lines_computable(table) and \
            self._utf8_form() is not None

    def _utf8_form(self):
        return checksum.server_utf8_form(self.endpoint, "full verification hashes each row in Python as it is read")

    def _checksum_sql(self, table, method, lo=None, hi=None):
        """(sql, params) of the server-side checksum ``method`` of the table, or of (lo, hi]."""
        return checksum.method_checksum_sql(method, table.schema, table, self._utf8_form, lo, hi)

    def figures(self, table, method=None):
        with self.session() as conn:
            cur = conn.cursor()
            if method:
                cur.execute(self._checksum_sql(table, method)[0])
                count, total = cur.fetchone()
                return int(count), int(total)
            cur.execute(f"SELECT COUNT_BIG(*) FROM {connection.qualified(table.schema, table.name)}")
            return int(cur.fetchone()[0]), None

    # --- re-syncing -----------------------------------------------------------------------------
    def range_figures(self, table, lo, hi, method):
        with self.session() as conn:
            cur = conn.cursor()
            cur.execute(*self._checksum_sql(table, method, lo, hi))
            count, total = cur.fetchone()
        return int(count), int(total)

    def tail(self, conn, table, after, step):
        key, q = ident(table.int_key), connection.qualified(table.schema, table.name)
        rest = f"(SELECT {key} FROM {q}" + ("" if after is None else f" WHERE {key} > %s") + ") AS so_luigi_tail"
        params = () if after is None else (after,)
        cur = conn.cursor()
        cur.execute(f"SELECT COUNT_BIG(*) FROM {rest}", params)
        rows = cur.fetchone()[0]
        if rows <= step:
            return rows, []
        cur.execute(boundaries_sql(ident, rest, table.int_key, step), params)
        return rows, [r[0] for r in cur.fetchall()]

    def rowversion(self, table):
        """The table's rowversion column, or None."""
        found = [c.name for c in table.columns if c.data_type in ("timestamp", "rowversion")]
        return found[0] if found else None

    def watermark(self, table):
        """MIN_ACTIVE_ROWVERSION(): every row changed by a transaction not yet committed, or by one
        begun later, carries at least this rowversion, so a range with none at or above it, and as
        many rows as when it was read, is unchanged. None without a rowversion column, and on a
        server without the function (Babelfish: its rowversion is an escape hatch, not SQL Server's)."""
        if self.rowversion(table) is None or _NO_WATERMARK.get(self.endpoint.url.raw):
            return None
        with self.session() as conn:
            cur = conn.cursor()
            try:
                cur.execute("SELECT CAST(MIN_ACTIVE_ROWVERSION() AS bigint)")
                return int(cur.fetchone()[0])
            except Exception as exc:  # noqa: BLE001 -- no such function: the checksum stands
                if not (self.owns(exc) and "min_active_rowversion" in str(exc).lower()):
                    raise
                _NO_WATERMARK[self.endpoint.url.raw] = True
                return None

    def changed_since(self, table, lo, hi, watermark):
        rv = ident(self.rowversion(table))
        sql, params = catalog.range_sql(
            f"SELECT COUNT_BIG(*), COUNT_BIG(CASE WHEN CAST({rv} AS bigint) >= {int(watermark)} THEN 1 END) "
            f"FROM {connection.qualified(table.schema, table.name)}", table, lo, hi)
        with self.session() as conn:
            cur = conn.cursor()
            cur.execute(sql, params)
            rows, changed = cur.fetchone()
        return int(rows), int(changed)


_NO_WATERMARK = {}      # source URL -> True: the server has no MIN_ACTIVE_ROWVERSION()
