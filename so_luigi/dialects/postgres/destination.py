"""PostgreSQL as the destination: tables created with mapped types, partitions loaded by COPY
(FREEZE where the layout allows), key, indexes and sequences after verification.

Layouts (``layout``): a plain table, or one range-partitioned on the integer key with a child
table per partition, created in the load's own transaction so its COPY may FREEZE the rows.
Rows arrive streamed (a source's COPY data through a bounded pipe into ``COPY FROM STDIN``) or
from a partition's bulk file, which the server reads itself when it can.
"""
import contextlib
import copy

import psycopg2

from ... import bulk, encode
from ...errors import DataError, SchemaError, one_line
from ...progress import watching
from ...stream import batched, binary_copy, chunk_size, copy_rows, spooled, stream
from ..base import Destination, Written, by_hash_sql, changes_sql
from . import checksum, connection, ddl, progress, state, types
from .connection import ident, literal, qualified

# how releases before the marker table ``owned`` marked the tables they created: still recognised
OWNER_COMMENT = "so_luigi run "


class _Discard:
    """A sink that keeps nothing: the rows were read for their checksum alone."""

    def write(self, data, rows=None):
        return len(data)


class PostgresDestination(Destination):
    dialect = "postgres"
    checksum_family = "postgres"
    driver = "psycopg2"
    bulk_files = True
    restores_dumps = True     # objects.Dump of a PostgreSQL source
    copies_at_once = True
    cuts_by_position = True   # a partition's rows and marker commit together: no range is ever cleared

    state = state             # the marker tables' SQL in PostgreSQL's words

    # --- connections --------------------------------------------------------------------------
    def translate(self, exc, role):
        return connection.translate(exc)

    def connect(self, autocommit=False):
        return connection.connect(self.endpoint, autocommit=autocommit)

    def session(self):
        return connection.session(self.endpoint)

    def qualified(self, schema, name):
        return qualified(schema, name)

    # --- planning -----------------------------------------------------------------------------
    def map_types(self, tables, source, overrides=None):
        """From PostgreSQL, a column of a type the source defines keeps it: the type is created
        before the table (Table.types), its values travel as text. An extension a type comes from
        must be one the destination can create: else the run stops here, before any data moves."""
        if source.dialect == self.dialect:
            for table in tables:
                defined = {t["name"] for t in table.types}
                for col in table.columns:
                    if col.user_type and col.source_type.removesuffix("[]") in defined:
                        col.kind = "text"
            self._check_extensions(tables)
        types.check_mappable(tables, source.dialect, types.load_overrides() if overrides is None else overrides)

    def _check_extensions(self, tables):
        needed = {}
        for table in tables:
            for t in [t for t in table.types if t["kind"] == "x"]:
                needed.setdefault(t["extension"], f"{table.qualified}'s type {t['name']}")
        if not needed:
            return
        with connection.session(self.endpoint) as conn, conn.cursor() as cur:
            cur.execute("SELECT name FROM pg_available_extensions WHERE name = ANY(%s)", (sorted(needed),))
            there = {r[0] for r in cur.fetchall()}
        missing = [f"{name} (for {why})" for name, why in sorted(needed.items()) if name not in there]
        if missing:
            raise SchemaError(f"the destination {self.endpoint.url.redacted} lacks the extension(s) "
                              f"{', '.join(missing)}: install them there (e.g. the server's contrib package), "
                              "or leave those tables out with --tables")

    def layout(self, table, partitions, layout, mode):
        """plain or partitioned (see the README's bulk section for the trade-offs).

        auto is plain, the source's shape, in both modes (bulk mode loads a plain table's files
        in one transaction that truncates it, so every COPY still freezes: write_files). The
        partitioned layout is one a user asks for. Partitioning needs more than
        one partition of an integer key, and no unique index without that key (PostgreSQL
        requires the partition key in every unique index of a partitioned table).
        """
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
        from .. import expressions
        if table.dialect == self.dialect:           # the source's own words
            return
        for col in [c for c in table.columns if c.drawn_sequence]:
            # NEXT VALUE FOR the sequence, which the table's creation makes (ddl.standalone_sequences_sql)
            col.default = f"nextval({literal(ddl.standalone_name(self.schema_of(table), col.sequence))}::regclass)"
        worded = any(c.computed or c.default and not c.drawn_sequence for c in table.columns) or \
            any(idx.where for idx in table.indexes) or any(con.kind == "check" for con in table.constraints)
        # the translator (sqlglot: 0.07 s to import) only for a table with words to translate
        tsql_expr = expressions(table.dialect, self.dialect) if worded else None
        if tsql_expr is None:
            return
        booleans = [c.name for c in table.columns if c.pg_type == "boolean"]
        for col in [c for c in table.columns if c.computed]:
            try:
                col.generated = tsql_expr.generated(col.computed, table)
                table.not_carried = [n for n in table.not_carried if not n[0].startswith(f"computation of {col.name} (")]
            except tsql_expr.Untranslatable as why:
                for entry in table.not_carried:
                    if entry[0].startswith(f"computation of {col.name} ("):
                        entry[1] = f"a plain column holding the source's values: not re-created, {why}"
        for col in [c for c in table.columns if c.default and not c.drawn_sequence]:
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
                    (qualified(self.schema_of(table), table.name), name))
        row = cur.fetchone()
        return None if row is None else ("valid" if row[0] else "not valid")

    def add_foreign_key(self, cur, table, fk):
        cols = ", ".join(ident(c) for c in fk.columns)
        refs = ", ".join(ident(c) for c in fk.ref_columns)
        timing = (" DEFERRABLE" + (" INITIALLY DEFERRED" if fk.deferred else "")) if fk.deferrable else ""
        match = f" MATCH {fk.match}" if fk.match else ""
        # a partitioned table takes no NOT VALID key (before PostgreSQL 18): added checked there
        not_valid = "" if table.layout == "partitioned" else " NOT VALID"
        cur.execute(f"ALTER TABLE {qualified(self.schema_of(table), table.name)} ADD CONSTRAINT {ident(fk.name)} "
                    f"FOREIGN KEY ({cols}) REFERENCES {qualified(fk.ref_schema, fk.ref_table)} ({refs}){match} "
                    f"ON UPDATE {fk.on_update} ON DELETE {fk.on_delete}{timing}{not_valid}")

    def validate_constraint(self, cur, table, name):
        cur.execute(f"ALTER TABLE {qualified(self.schema_of(table), table.name)} VALIDATE CONSTRAINT {ident(name)}")

    def deferred(self, cur):
        return connection.Deferred(cur)

    def absent(self, cur, tables):
        """One query for many tables: a table in none of them, in a schema there, is created
        without the look for one to replace (``create(..., absent=True)``)."""
        places = [(self.schema_of(t), qualified(self.schema_of(t), t.name)) for t in tables]
        cur.execute("SELECT k.i FROM unnest(%s::text[], %s::text[]) WITH ORDINALITY k (s, q, i) "
                    "WHERE to_regclass(k.q) IS NULL AND EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = k.s)",
                    ([s for s, _ in places], [q for _, q in places]))
        return {tables[i - 1].run_name for i, in cur.fetchall()}

    def create(self, cur, run_id, table, absent=False):
        """``absent``: the caller knows the schema is there and the table not (``absent``)."""
        schema = self.schema_of(table)
        if not absent:
            cur.execute(f"CREATE SCHEMA IF NOT EXISTS {ident(schema)}")
            self._drop_previous(cur, schema, table.name)
        ddl.create_types(cur, table.types)
        for statement in ddl.create_table_statements(self.schema_of(table), table):
            cur.execute(statement)
        for statement, what in ddl.default_statements(self.schema_of(table), table):
            ddl.optional(statement, what, table)(cur)
        for statement in ddl.comment_statements(self.schema_of(table), table):
            cur.execute(statement)

    def _ours(self, cur, schema, name, comment):
        """so_luigi created it: the marker tables say so, or (a release before them) its comment."""
        return bool(self.owned and self.owned(cur, schema, name)) or (comment or "").startswith(OWNER_COMMENT)

    def check_replaceable(self, cur, tables):
        """Before ``tables`` are created (as they are copied: load.copy_unplanned), while no row
        has moved: SchemaError naming the first one that exists and was not made by so_luigi
        (what ``create`` would refuse)."""
        absent = self.absent(cur, tables)
        for table in tables:
            if table.run_name not in absent:
                self._existing(cur, self.schema_of(table), table.name)

    def _existing(self, cur, schema, name):
        """Whether the table exists; SchemaError when it does and so_luigi did not create it."""
        cur.execute("SELECT obj_description(to_regclass(%s), 'pg_class'), to_regclass(%s) IS NOT NULL",
                    (qualified(schema, name),) * 2)
        comment, exists = cur.fetchone()
        if exists and not self._ours(cur, schema, name, comment):
            raise SchemaError(f"destination table {schema}.{name} already exists and was not created by "
                              f"so_luigi: drop it, or set [target] schema (schema_map) to another schema")
        return exists

    def _drop_previous(self, cur, schema, name):
        """Replace a table an earlier so_luigi run created; never touch one it did not."""
        if not self._existing(cur, schema, name):
            return
        self._drop_referencing_keys(cur, schema, name)
        cur.execute(f"DROP TABLE {qualified(schema, name)}")

    def _drop_referencing_keys(self, cur, schema, name):
        """Foreign keys of other so_luigi tables that reference ``name`` go first (their step
        adds them again); one of a table so_luigi did not create stops, naming it."""
        cur.execute("SELECT n.nspname, c.relname, k.conrelid::regclass::text, k.conname, "
                    "obj_description(k.conrelid, 'pg_class') FROM pg_constraint k "
                    "JOIN pg_class c ON c.oid = k.conrelid JOIN pg_namespace n ON n.oid = c.relnamespace "
                    "WHERE k.contype = 'f' AND k.conparentid = 0 AND k.confrelid = to_regclass(%s) "
                    "AND k.conrelid <> k.confrelid", (qualified(schema, name),))
        for their_schema, relname, child, constraint, comment in cur.fetchall():
            if not self._ours(cur, their_schema, relname, comment):
                raise SchemaError(f"destination table {schema}.{name} is referenced by foreign key {constraint} "
                                  f"of {child}, which so_luigi did not create: drop that key to replace the table")
            cur.execute(f"ALTER TABLE {child} DROP CONSTRAINT {ident(constraint)}")

    # --- loading ------------------------------------------------------------------------------
    def _into(self, cur, part):
        """Where a partition's rows go, whether COPY may FREEZE them, and how to get it ready.

        * partitioned layout: a new child table per partition, created in the load's
          transaction, so COPY FREEZE applies; it is attached to the parent before the commit;
        * a plain table of one partition: truncated in the load's transaction, so FREEZE applies
          (or created in it: load.copy_unplanned);
        * a plain table of several partitions: loaded side by side by parallel workers, without FREEZE.
        """
        table = part.table
        if part.replace:                # a sync's recopy: rows routed by the table, as they stand
            return table, False, lambda: None
        if table.layout == "partitioned":
            child = copy.copy(table)
            child.name = ddl.partition_name(table, part.number)

            def prepare():
                for statement in ddl.create_partition_sql(self.schema_of(table), table, part.number, part.lo, part.hi):
                    cur.execute(statement)
            return child, True, prepare
        if part.partitions == 1 and part.fresh:
            return table, True, lambda: None
        if part.partitions == 1 and not part.unfrozen:
            return table, True, lambda: cur.execute(f"TRUNCATE {qualified(self.schema_of(table), table.name)}")
        return table, False, lambda: None

    def write(self, conn, cur, part, source, mode, buffer_bytes, checksum):
        into, freeze, prepare = self._into(cur, part)
        pid = conn.get_backend_pid()
        watch = contextlib.nullcontext() if part.monitor is None else \
            watching(lambda: progress.copy_rows(part.monitor().cursor(), pid), part.progress)
        if mode == "bulk":
            written = self._load_file(cur, into, part, prepare, freeze, buffer_bytes, watch)
        else:
            prepare()
            if checksum and source.checksum_family != self.checksum_family:
                checksum = self.checksum_method(source, part.table, conn) is None   # else both servers compute it
            read = source.copy_reader(part.table, part.lo, part.hi, checksum, buffer_bytes)
            # rows that never pass through Python are counted by the destination server
            write = self._copy_in(cur, into, source.copy_format(part.table, checksum), buffer_bytes, freeze,
                                  getattr(read, "may_send_binary", False))
            if part.fresh and getattr(read, "os_pipe", False):     # a tiny table (load.copy_unplanned)
                (src_rows, src_sum, changed), stored, nbytes = spooled(read, write, buffer_bytes)
            else:
                with watch if getattr(read, "os_pipe", False) else contextlib.nullcontext():
                    (src_rows, src_sum, changed), stored, nbytes = stream(read, write, buffer_bytes, part.progress)
            binary = write.sniff and write.used == "binary"      # the reader's choice (encode_arrow)
            written = Written(src_rows, stored, nbytes, src_sum, "stream-binary" if binary else "stream", changed,
                              "rows stream from the source cursor into COPY FROM STDIN"
                              + (" as binary COPY (pgpq)" if binary else ""))
        if part.table.layout == "partitioned" and not part.replace:
            cur.execute(ddl.attach_partition_sql(self.schema_of(part.table), part.table, part.number, part.lo, part.hi))
        return written

    def write_files(self, conn, cur, parts, buffer_bytes):
        """Bulk mode, a plain table of several partitions: every partition's file in the open
        transaction, which truncates the table first so each COPY may FREEZE (the table's pages
        are frozen as with one partition). The server reads the files itself when it can see
        them all (in a savepoint: the truncation and the COPYs share its subtransaction, as FREEZE
        needs); else, after rolling that back, the client streams them. Returns a Written per part."""
        table = parts[0].table
        q = qualified(self.schema_of(table), table.name)
        plans = [self._bulk_file(part) for part in parts]
        if all(files.local and not files.compressed for files, _, _ in plans):
            cur.execute("SAVEPOINT so_luigi_bulk")
            try:
                cur.execute(f"TRUNCATE {q}")
                written = []
                for part, (files, fmt, written_as) in zip(parts, plans):
                    literal = cur.mogrify("%s", (files.server,)).decode()
                    cur.execute(ddl.copy_in_sql(self.schema_of(table), table, fmt, True, source=literal))
                    written.append(written_as(cur.rowcount, "server-file",
                                              f"the server reads the files itself (COPY FROM '{files.server}')"))
                cur.execute("RELEASE SAVEPOINT so_luigi_bulk")
                return written
            except psycopg2.Error as exc:
                cur.execute("ROLLBACK TO SAVEPOINT so_luigi_bulk")
                why = one_line(exc.pgerror or exc)
        else:
            why = "gzip files" if any(f.compressed for f, _, _ in plans) else "the files are not on a local path"
        cur.execute(f"TRUNCATE {q}")
        written = []
        for part, (files, fmt, written_as) in zip(parts, plans):
            with bulk.open_file(files.data, "rb") as fh:
                cur.copy_expert(ddl.copy_in_sql(self.schema_of(table), table, fmt, True), fh, size=chunk_size(buffer_bytes))
            written.append(written_as(cur.rowcount, "client-file",
                                      f"the client streams the files through COPY FROM STDIN ({why})"))
        return written

    def _bulk_file(self, part):
        """(files, format, written(stored, via, how)) of a partition's extracted file, refused when
        it was cut for another plan of the table."""
        manifest = bulk.read_manifest(bulk.files_for(part.run_id, part.table.run_name, part.number))
        if not bulk.cut_for(manifest, part.plan):
            raise DataError(f"{part.table.run_name} partition {part.number}: its bulk file was cut for another plan "
                            f"of the table or read at another source snapshot (plan {manifest.get('plan')}, keys "
                            f"{manifest.get('lo')}..{manifest.get('hi')}, snapshot {manifest.get('snapshot')}) "
                            f"and is never loaded; rerun: the partition is extracted again")
        fmt = manifest.get("format", "csv")
        files = bulk.files_for(part.run_id, part.table.run_name, part.number, fmt=fmt)
        src_sum = None if manifest["checksum"] is None else int(manifest["checksum"])

        def written(stored, via, how):
            return Written(manifest["rows"], stored, manifest["bytes"], src_sum, via, manifest.get("changed", 0), how)
        return files, fmt, written

    def _copy_in(self, cur, into, fmt, buffer_bytes, freeze, sniff=False):
        """The stream's writer: COPY ... FROM STDIN reading the pipe; returns the rows stored.
        ``sniff``: the data may be binary COPY instead of ``fmt``, as its first bytes say."""
        def write(pipe):
            if sniff:
                write.used, pipe = binary_copy(pipe, fmt)
            cur.copy_expert(ddl.copy_in_sql(self.schema_of(into), into, write.used, freeze), pipe,
                            size=chunk_size(buffer_bytes))
            return cur.rowcount
        write.used, write.sniff = fmt, sniff
        return write

    def _load_file(self, cur, into, part, prepare, freeze, buffer_bytes, watch):
        """COPY the partition's extracted file (in the format its manifest says, whatever [bulk]
        says now) into ``into``; ``prepare()`` (re)creates or truncates it first.

        Server-side when it can, inside a savepoint so a refusal costs nothing; else streamed.
        """
        files, fmt, written = self._bulk_file(part)
        with watch:
            if files.local and not files.compressed:
                cur.execute("SAVEPOINT so_luigi_bulk")
                try:
                    prepare()
                    literal = cur.mogrify("%s", (files.server,)).decode()
                    cur.execute(ddl.copy_in_sql(self.schema_of(into), into, fmt, freeze, source=literal))
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
                cur.copy_expert(ddl.copy_in_sql(self.schema_of(into), into, fmt, freeze), fh, size=chunk_size(buffer_bytes))
            return written(cur.rowcount, "client-file",
                           f"the client streams the files through COPY FROM STDIN ({why})")

    # --- completing ---------------------------------------------------------------------------
    def checksum_method(self, source, table, conn):
        """Between two PostgreSQL servers, the row hash both compute (PostgresSource.row_hash);
        from SQL Server, the "lines" checksum both compute (checksum.line_checksum_sql), where
        that server can (MssqlSource.computes_lines); else none: the rows were hashed as COPY
        text lines when they were read, and checksum_sql hashes the stored rows' text the same way."""
        if source.checksum_family != self.checksum_family:
            return "lines" if source.computes_lines(table) else None
        return source.row_hash(table, conn.server_version)

    def tallies(self, table, verify):
        """``--verify tally``: the destination's figure is the sum of the rows its COPYs stored,
        each committed with its partition's marker, instead of a count(*). Not for an unlogged
        table, which a crash empties after those counts were committed: it is counted."""
        return verify == "tally" and not table.unlogged

    def figures(self, table, verify, method):
        with connection.session(self.endpoint) as conn, conn.cursor() as cur:
            return self.figures_in(cur, table, verify, method)

    def figures_in(self, cur, table, verify, method):
        if verify != "full":
            sql = f"SELECT count(*), NULL FROM {qualified(self.schema_of(table), table.name)}"
        elif method:
            sql = checksum.row_checksum_sql(self.schema_of(table), table.name, method, table)
        else:
            sql = checksum.checksum_sql(self.schema_of(table), table)
        cur.execute(sql)
        count, total = cur.fetchone()
        return int(count), (None if total is None else int(total))

    def finish_steps(self, table, partitions, positions=None):
        return ddl.finish_table_steps(self.schema_of(table), table, partitions, positions)

    # --- re-syncing ---------------------------------------------------------------------------
    def _figures_sql(self, table, method):
        if method:
            return checksum.row_checksum_sql(self.schema_of(table), table.name, method, table)
        return checksum.checksum_sql(self.schema_of(table), table)

    def range_figures(self, table, lo, hi, method, cur=None):
        """``cur``: in that transaction (a recopy's, before it commits)."""
        if cur is not None:
            cur.execute(*ddl.range_sql(self._figures_sql(table, method), table, lo, hi))
            count, total = cur.fetchone()
            return int(count), int(total)
        with connection.session(self.endpoint) as conn, conn.cursor() as cur:
            return self.range_figures(table, lo, hi, method, cur)

    def scans_ranges(self, table, method):
        return table.int_key is not None and table.cut != "ctid"

    def figures_by_range(self, table, cuts, method):
        with connection.session(self.endpoint) as conn, conn.cursor() as cur:
            return checksum.by_range(cur, self._figures_sql(table, method), table.int_key, cuts)

    def source_figures(self, source, table, lo, hi, method, buffer_bytes):
        """The server's checksum between two PostgreSQL servers; from SQL Server, the md5 of
        each row's COPY text line as the stream computes it, its lines thrown away."""
        if method:
            return source.range_figures(table, lo, hi, method)
        rows, total, _ = source.copy_reader(table, lo, hi, True, buffer_bytes)(_Discard())
        return int(rows), int(total or 0)

    def quiet_triggers(self, cur, table):
        """The table's user triggers and rules enabled now (those the copy carried from the source,
        objects.py), disabled in the recopy's transaction and enabled again before it commits:
        no other session sees them off."""
        q = qualified(self.schema_of(table), table.name)
        cur.execute("SELECT 'TRIGGER', tgname, tgenabled FROM pg_trigger WHERE tgrelid = to_regclass(%s) "
                    "AND NOT tgisinternal AND tgenabled <> 'D' "
                    "UNION ALL SELECT 'RULE', rulename, ev_enabled FROM pg_rewrite WHERE ev_class = to_regclass(%s) "
                    "AND rulename <> '_RETURN' AND ev_enabled <> 'D'", (q, q))
        found = cur.fetchall()
        how = {"O": "ENABLE", "R": "ENABLE REPLICA", "A": "ENABLE ALWAYS"}
        for kind, name, _ in found:
            cur.execute(f"ALTER TABLE {q} DISABLE {kind} {ident(name)}")
        return [f"ALTER TABLE {q} {how[state]} {kind} {ident(name)}" for kind, name, state in found]

    def clear_range(self, cur, table, lo, hi):
        cur.execute(*ddl.range_sql(f"DELETE FROM {qualified(self.schema_of(table), table.name)}", table, lo, hi))
        return cur.rowcount

    def _hashed(self, table, lo, hi, cur):
        """(SQL, params): the partition's key columns and a 64-bit hash of each whole row. The
        hashes are only compared with each other, in this table: each column's own hash function
        where every column has one (twice as fast), else the row's text (any type)."""
        keys = ", ".join(ident(c) for c in table.primary_key)
        row = (checksum.column_hash_expr(table) if table.dialect == "postgres" else None) \
            or "hashtextextended(r::text, 0)"
        select = (f"SELECT {keys + ', ' if keys else ''}{row} AS so_h "
                  f"FROM {qualified(self.schema_of(table), table.name)} r")
        return ddl.range_sql(select, table, lo, hi)

    def note_before(self, cur, table, lo, hi):
        sql, params = self._hashed(table, lo, hi, cur)
        if not table.primary_key:
            sql = by_hash_sql(sql)
        cur.execute("DROP TABLE IF EXISTS pg_temp.so_luigi_before")
        cur.execute(f"CREATE TEMP TABLE so_luigi_before ON COMMIT DROP AS {sql}", params)

    def changes(self, cur, table, lo, hi):
        sql, params = self._hashed(table, lo, hi, cur)
        cur.execute(changes_sql(sql, table.primary_key, "so_luigi_before", ident), params)
        found = tuple(int(v) for v in cur.fetchone())
        cur.execute("DROP TABLE so_luigi_before")
        return found

    def release_foreign_keys(self, cur, table):
        q = qualified(self.schema_of(table), table.name)
        cur.execute("SELECT conname FROM pg_constraint WHERE contype = 'f' AND conparentid = 0 "
                    "AND conrelid = to_regclass(%s)", (q,))
        own = {fk.name for fk in table.foreign_keys}
        for (name,) in cur.fetchall():
            if name in own:
                cur.execute(f"ALTER TABLE {q} DROP CONSTRAINT {ident(name)}")
        self._drop_referencing_keys(cur, self.schema_of(table), table.name)

    def sequence_steps(self, table, positions):
        return ddl.sequence_sql(self.schema_of(table), table, positions)

    # --- maintenance --------------------------------------------------------------------------
    def drop_tables(self, cur, places):
        for schema, name in places:
            cur.execute("SELECT to_regclass(%s) IS NOT NULL", (qualified(schema, name),))
            if cur.fetchone()[0]:
                self._drop_referencing_keys(cur, schema, name)
            cur.execute(f"DROP TABLE IF EXISTS {qualified(schema, name)}")

    def rows_in_flight(self, cur, tables):
        """A partitioned layout's child tables count for their table."""
        def table_of(schema, relname):
            for name in (f"{schema}.{relname}", relname):   # as a run of several schemas names it, or one
                if name in tables:
                    return name
                child = next((t for t in tables if name.startswith(f"{t}__part")), None)
                if child:
                    return child
            return None
        return progress.in_flight(cur, table_of)

    def copy_rows(self, cur, table, rows, buffer_bytes=32 << 20, batch_rows=2000):
        """COPY Python row tuples (in column order) into an existing table; returns (rows, bytes)."""
        encoder = encode.make_row_encoder(table)
        (count, _, _), _, nbytes = stream(
            lambda sink: copy_rows(batched(rows, batch_rows), encoder, sink, False, table),
            self._copy_in(cur, table, "text", buffer_bytes, False), buffer_bytes)
        return count, nbytes
