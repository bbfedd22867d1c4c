"""SQL Server (2016+, Azure SQL, Babelfish) as a source: its catalog (``mssql``), partitions cut
along the key, and rows read through pymssql's cursor in batches.

Into PostgreSQL the rows become COPY text (or CSV for a bulk file) through ``encode``, and their
checksum is computed from those lines on the way (``stream.copy_rows``); into SQL Server they go
as the driver returns them.
"""
from .. import encode
from ..errors import DataError
from ..planning import ranged
from ..stream import bad_unicode, copy_rows, row_encoder
from . import mssql, mssql_ddl
from .base import Source, mssql_ident


class MssqlSource(Source):
    dialect = "mssql"
    checksum_family = "tsql"
    driver = "pymssql"

    def translate(self, exc, role):
        return mssql.translate(exc, role)

    def connect(self):
        return mssql.connect(self.endpoint)

    def schema_exists(self, conn, schema):
        return mssql.schema_exists(conn, schema)

    def list_tables(self, conn, schema):
        return mssql.list_tables(conn, schema)

    def describe(self, conn, name):
        return mssql.describe(conn, self.endpoint.schema, name)

    def measure(self, conn, table, rows_per_partition):
        size = mssql.table_bytes(conn, table)
        rows, bounds, step = mssql.count_and_boundaries(conn, table, lambda n: rows_per_partition(n, size))
        return size, rows, bounds, step

    def _rows(self, table, lo, hi, batch_rows, select=mssql.select_sql):
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

    def copy_reader(self, table, lo, hi, checksum, buffer_bytes):
        """COPY text lines encoded in Python, in batches resized to about a chunk each."""
        from ..stream import chunk_size
        encoder, batch = row_encoder(table), [1000]

        def read(sink):
            return copy_rows(self._rows(table, lo, hi, batch), encoder, sink, checksum, table, batch,
                             chunk_size(buffer_bytes))
        return read

    def extract(self, table, lo, hi, fmt, sink, checksum):
        """CSV; the checksum comes from the same rows' COPY text lines, as a stream's would."""
        to_csv = row_encoder(table, csv=True)
        to_text = row_encoder(table) if checksum else None
        rows, total = 0, 0
        for batch in self._rows(table, lo, hi, [5000]):
            try:
                lines = encode.encode_lines(to_csv(batch))
                if to_text is not None:
                    total += encode.lines_checksum(encode.encode_lines(to_text(batch)))
            except UnicodeEncodeError:
                raise bad_unicode(table, batch, to_csv(batch)) from None
            lines.append(b"")
            sink.write(b"\n".join(lines))
            rows += len(batch)
        return rows, (total if checksum else None), sum(to_csv.changed.values())

    def batches(self, table, lo, hi, batch_rows):
        """Time types with 7 fractional digits come as text: Python's datetime stops at microseconds."""
        def select(table, lo, hi):
            def expr(c):
                if c.data_type in ("datetime2", "datetimeoffset", "time") and (c.precision or 0) > 6:
                    return f"CONVERT(varchar(40), {mssql_ident(c.name)}, 121)"
                return mssql_ident(c.name)
            return ranged(f"SELECT {', '.join(expr(c) for c in table.columns)} "
                          f"FROM {mssql.qualified(table.schema, table.name)}", mssql_ident, table.int_key, lo, hi)
        return self._rows(table, lo, hi, [batch_rows], select)

    def figures(self, table, method=None):
        with self.session() as conn:
            cur = conn.cursor()
            if method:
                cur.execute(mssql_ddl.checksum_sql(table.schema, table))
                count, total = cur.fetchone()
                return int(count), int(total)
            cur.execute(f"SELECT COUNT_BIG(*) FROM {mssql.qualified(table.schema, table.name)}")
            return int(cur.fetchone()[0]), None
