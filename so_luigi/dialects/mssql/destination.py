"""SQL Server (2016+, Azure SQL, Babelfish) as the destination: tables created with their real
types (``mssql_ddl``, the type rules), partitions written through the TDS bulk-load path, key,
indexes and identity after verification, and the marker tables' DDL and locks.

* ``create``: CREATE TABLE from the source catalog (``mssql_ddl``), and its side table;
* ``write``:  rows read from the source cursor in batches go through pymssql's ``bulk_copy``
              (TABLOCK, KEEPIDENTITY) in the partition's transaction;
* finishing:  count and content checksum against the source, then primary key, indexes and the
              identity reseed.

Exactly once, two ways at the same time: rows and marker commit in one transaction, and a load
that is not the partition's first attempt starts by deleting the partition's key range (each
attempt is counted in ``partitions.attempts``, committed before its rows are sent). If the bulk
load honours the transaction, as SQL Server documents, that delete finds nothing; if a driver
ever committed a batch on its own and the process died, the next attempt deletes those rows
before loading the range again. Either way a key range is never loaded twice. (A partition of a
PostgreSQL table cut by ctid ranges has no key range to delete: the transaction alone keeps it
once, and a driver that broke it would show as a count mismatch at verification.) A first attempt
skips the delete: the table has no key yet, so it would scan the whole heap, and its locks
would conflict with the bulk-update locks of the table's other partitions loading in parallel.

Values go as ``bulk.bulk_load`` sends them, around pymssql's bulk-copy traps: see that module
and ``bulk.carrier``. Rows holding a value the bulk copy cannot deliver exactly (an empty
string, a year before 1753, a non-UTC offset, non-ASCII text in a code-page column) are bulk
copied into the table's side table in the marker schema (``empties_<table>``, with the partition
number, its columns typed so the server can convert them) in the partition's transaction;
before verification ``prepare`` moves them into the table in one INSERT ... SELECT that puts the
empty strings back and converts the rest. Applying them once, from one session, keeps the
parallel partition loads to bulk (BU) locks only, which never block each other.

Runs against SQL Server and Babelfish for PostgreSQL alike (tests/test_mssql_integration.py
with SO_TEST_MSSQL_URL).
"""
import hashlib
import logging
import re

from ...config import marker_schema
from ...errors import SchemaError
from ..base import Constraint, Destination, Index, Written, by_hash_sql, changes_sql
from . import bulk, catalog, checksum, connection, ddl, fast, freebcp, state, types
from .checksum import canonical_encoders, rows_checksum
from ..postgres.connection import ident as pg_ident
from ..postgres.forms import pg_form, user_type
from .connection import ident, percent_safe

log = logging.getLogger("luigi-interface.so_luigi")
OWNER = "so_luigi run "
SIDE_EXTRA = [("so_luigi_partition", "int")]
_SAID_NO_FREEBCP = set()        # tables whose log said why freebcp does not write them



def batch_rows_for(buffer_bytes, source_rows, source_bytes):
    """Rows per batch so a batch of average rows stays within a quarter of the buffer."""
    avg = (source_bytes or 0) / max(source_rows or 1, 1) or 200
    return int(max(100, min(100_000, buffer_bytes / 4 / avg)))


def payload_bytes(rows):
    """The characters and bytes of the rows' str and bytes values, summed column by column: a
    column of one such type (and NULLs) by len() in C, a mixed one value by value (a value at a
    time in Python costs five times as much on a 13-column row)."""
    total = 0
    for column in zip(*rows):
        kinds = set(map(type, column))
        kinds.discard(type(None))
        if kinds == {str} or kinds == {bytes}:
            total += sum(map(len, filter(None, column)))
        elif any(issubclass(k, (str, bytes)) for k in kinds):
            total += sum(len(v) for v in column if isinstance(v, (str, bytes)))
    return total


def side_table(table_name, schema="dbo"):
    """The table's side table for rows the bulk copy cannot carry exactly, in the marker schema
    (a table of a schema other than dbo has the schema in its name)."""
    named = table_name if schema == "dbo" else f"{schema}.{table_name}"
    name = f"empties_{named}"
    if len(name) > 128:
        name = "empties_" + hashlib.sha1(named.encode("utf-8")).hexdigest()
    return f"{ident(marker_schema())}.{ident(name)}"


def foreign_key_refused(fk):
    """Why a PostgreSQL foreign key has no SQL Server form, or None: SQL Server checks every key
    at once, with MATCH SIMPLE."""
    if fk.match == "FULL":
        return "MATCH FULL: SQL Server has only MATCH SIMPLE"
    if fk.deferrable:
        return "DEFERRABLE: SQL Server checks every foreign key at once"
    return None


_NUMBER = re.compile(r"^\(*(-?\d+(\.\d+)?)\)*(::(integer|bigint|smallint|numeric|real|double precision))?$")
_TEXT = re.compile(r"^'((?:[^']|'')*)'::(text|character varying|character|bpchar|varchar)$")
_CLOCK = {"now()": "SYSDATETIMEOFFSET()", "CURRENT_TIMESTAMP": "SYSDATETIMEOFFSET()",
          "LOCALTIMESTAMP": "SYSDATETIME()", "CURRENT_DATE": "CAST(GETDATE() AS date)",
          "gen_random_uuid()": "NEWID()"}


def computed_refused(col, table):
    """Why a SQL Server computed column cannot be re-created as it is in another SQL Server, or
    None: its definition in PostgreSQL's words (Babelfish's catalog prints some so), or a call of
    a function so_luigi does not carry (schema.function(...); a column's method, such as
    hierarchyid's GetLevel(), is the type's own)."""
    text = col.computed
    if "::" in text or "~" in text:
        return "the source's catalog prints it in PostgreSQL's words, not T-SQL"
    columns = {c.name.lower() for c in table.columns}
    for owner, function in re.findall(r"\[?(\w+)\]?\s*\.\s*\[?(\w+)\]?\s*\(", text):
        if owner.lower() not in columns:
            return f"it calls {owner}.{function}(), a function so_luigi does not carry"
    return None


def default_in_tsql(col, table=None):
    """A PostgreSQL column default in T-SQL where its meaning is the same: a number, a string (an
    enum's label too), a boolean, the clock (into the column's own type), a new UUID; None for any
    other (listed)."""
    text = col.default.strip()
    number, string = _NUMBER.match(text), _TEXT.match(text)
    if not string and pg_form(col, table)[0] == "enum":
        string = re.match(r"^'((?:[^']|'')*)'::\S+$", text)
    if number:
        return f"({number.group(1)})"
    if string:
        return f"(N'{string.group(1)}')"
    if text in ("true", "false") and col.data_type in ("bool", "boolean"):
        return "((1))" if text == "true" else "((0))"
    if text in _CLOCK:
        return f"({_CLOCK[text]})"
    return None


class MssqlDestination(Destination):
    dialect = "mssql"
    checksum_family = "tsql"
    driver = "pymssql"
    counts_attempts = True
    cuts_by_position = True   # a ctid range has no key to clear on a retry: the transaction alone
                              # keeps it once, and verification would catch a driver that did not

    state = state             # the marker tables' SQL in SQL Server's words

    # --- connections --------------------------------------------------------------------------
    def translate(self, exc, role):
        return connection.translate(exc, role)

    def connect(self, autocommit=False):
        return connection.connect(self.endpoint, autocommit=autocommit)

    def session(self):
        return connection.session(self.endpoint)

    def qualified(self, schema, name):
        return connection.qualified(schema, name)

    # --- planning -----------------------------------------------------------------------------
    def map_types(self, tables, source, overrides=None):
        types.check_mappable(tables, source.dialect)

    def carry(self, table):
        """From PostgreSQL: plain indexes, unique constraints, foreign keys with their actions,
        CHECKs over numbers (postgres/to_tsql.py) and the defaults ``default_in_tsql`` gives the
        same meaning; its other indexes, CHECKs and defaults are listed."""
        if table.dialect == "mssql":
            # Babelfish's catalog prints some CHECK definitions in PostgreSQL's words (x ~~ 'a%',
            # 'a'::text): not T-SQL, so not carried; SQL Server's are T-SQL
            for con in [c for c in table.constraints if c.kind == "check" and ("::" in c.definition or "~" in c.definition)]:
                table.not_carried.append([f"check {con.name} ({con.definition})",
                                          "the source's catalog prints it in PostgreSQL's words, not T-SQL"])
                table.constraints.remove(con)
            for col in [c for c in table.columns if c.computed]:
                why = computed_refused(col, table)
                entries = [n for n in table.not_carried if n[0].startswith(f"computation of {col.name} (")]
                if why:
                    for entry in entries:
                        entry[1] = f"a plain column holding the source's values: not re-created, {why}"
                    continue
                col.generated = col.computed        # re-created as it is: the server computes it
                table.not_carried = [n for n in table.not_carried if n not in entries]
            for col in [c for c in table.columns if c.drawn_sequence]:   # Babelfish prints nextval('s')
                col.default = f"(NEXT VALUE FOR {connection.qualified(self._sequence_schema(table, col), col.sequence['name'])})"
            return
        if table.dialect != "postgres":
            return
        why = "a PostgreSQL definition, not translated for SQL Server"
        from .. import expressions
        to_tsql = expressions(table.dialect, self.dialect)
        for idx in [i for i in table.indexes if not i.plain]:
            try:
                idx.columns, idx.include, idx.where = to_tsql.index(idx.definition, table)
                held = [types.column_type(table.column(c), table.dialect, table) for c, _ in idx.columns]
                if any(types._is_max(t) for t in held):
                    raise to_tsql.Untranslatable("a key column is (max) in SQL Server, which an index cannot hold")
                idx.plain = True
            except to_tsql.Untranslatable as reason:
                table.not_carried.append([f"index {idx.name} (USING {idx.definition})", f"not translated: {reason}"])
        keys = []
        for con in table.constraints:
            if con.kind == "unique":        # columns only: a unique index there, as before
                table.indexes.append(Index(name=con.name, columns=[[c, "ASC"] for c in con.columns], unique=True))
                continue
            if con.kind == "check":
                try:
                    con.definition = to_tsql.check(con.definition, table)
                    keys.append(con)
                except to_tsql.Untranslatable as reason:
                    table.not_carried.append([f"check {con.name} ({con.definition})", f"not translated: {reason}"])
                continue
            refused = con.kind == "foreign_key" and foreign_key_refused(con)
            if con.kind == "foreign_key" and not refused:
                for side in ("on_update", "on_delete"):         # the same but for when it is checked
                    if getattr(con, side) == "RESTRICT":
                        setattr(con, side, "NO ACTION")
                keys.append(con)
                continue
            table.not_carried.append([f"{con.kind.replace('_', ' ')} {con.name} ({con.definition})", refused or why])
        keys += self._type_checks(table, to_tsql)
        for col in [c for c in table.columns if c.default]:
            default = default_in_tsql(col, table)
            if default is None:
                table.not_carried.append([f"default of {col.name} ({col.default})", why])
            col.default = default or ""
        for col in [c for c in table.columns if c.collation]:
            table.not_carried.append([f"collation of {col.name} ({col.collation})", why])
            col.collation = ""
        if table.comment is not None:
            table.not_carried.append([f"comment on {table.name}", f"{why}: PostgreSQL comments are not carried"])
        for col in [c for c in table.columns if c.comment is not None]:
            table.not_carried.append([f"comment on {col.name}", f"{why}: PostgreSQL comments are not carried"])
            col.comment = None
        table.comment = None
        for col in [c for c in table.columns if c.generated]:
            # the values still come: the column holds what the source computed
            table.not_carried.append([f"generation of {col.name} (GENERATED ALWAYS AS ({col.generated}) STORED)",
                                      f"{why}: a plain column holding the source's values"])
            col.generated = ""
        table.indexes = [i for i in table.indexes if i.plain]
        table.constraints = keys

    def _type_checks(self, table, to_tsql):
        """What a column's PostgreSQL type enforced, as CHECKs: an enum's labels (compared by
        their exact characters: to_tsql.exact_text), a domain's CHECKs where they translate
        (else listed)."""
        out = []
        for col in table.columns:
            form, inner = pg_form(col, table)
            if form == "enum":
                labels = ", ".join(to_tsql.exact_literal(label) for label in inner)
                out.append(Constraint(name=f"{table.name}_{col.name}_enum"[:128], kind="check",
                                      definition=f"({to_tsql.exact_text(ident(col.name))} IN ({labels}))"))
            entry = user_type(col, table)
            checks = (entry.get("checks") or []) if entry and entry["kind"] == "d" else []
            for check in checks:
                name, _, definition = check.partition(" CHECK ")
                written = re.sub(r"\bVALUE\b", lambda _: pg_ident(col.name), definition)
                try:
                    out.append(Constraint(name=f"{table.name}_{col.name}_{name.split(' ', 1)[-1].strip(chr(34))}"[:128],
                                          kind="check", definition=to_tsql.check("CHECK " + written, table)))
                except to_tsql.Untranslatable as reason:
                    table.not_carried.append([f"check of domain {entry['name']} on {col.name} ({definition})",
                                              f"not translated: {reason}"])
        return out

    def _side(self, table):
        return side_table(table.name, self.schema_of(table))

    def constraint_state(self, cur, table, name):
        cur.execute("SELECT CAST(is_not_trusted AS int) FROM sys.foreign_keys WHERE parent_object_id = OBJECT_ID(%s) "
                    "AND name = %s", (connection.qualified(self.schema_of(table), table.name), name))
        row = cur.fetchone()
        return None if row is None else ("not valid" if row[0] else "valid")

    def add_foreign_key(self, cur, table, fk):
        """Checked as it is added (SQL Server has no NOT VALID then VALIDATE in one pass that
        lets writes in; Babelfish takes no WITH [NO]CHECK at all)."""
        cur.execute(ddl.foreign_key_sql(self.schema_of(table), table, fk, fk.ref_columns))

    def validate_constraint(self, cur, table, name):
        cur.execute(f"ALTER TABLE {connection.qualified(self.schema_of(table), table.name)} WITH CHECK CHECK CONSTRAINT "
                    f"{ident(name)}")

    def _sequence_schema(self, table, col):
        return col.sequence.get("target_schema") or self.schema_of(table)

    def create(self, cur, run_id, table):
        schema = self.schema_of(table)
        cur.execute(ddl.create_schema_sql(schema))
        for col in [c for c in table.columns if c.drawn_sequence]:    # before the DEFAULT naming it
            cur.execute(ddl.create_schema_sql(self._sequence_schema(table, col)))
            cur.execute(ddl.create_sequence_sql(col.sequence, self._sequence_schema(table, col)))
        self._drop_previous(cur, schema, table.name)
        cur.execute(ddl.create_table_sql(self.schema_of(table), table, table.dialect))
        side = self._side(table)
        cur.execute(f"DROP TABLE IF EXISTS {side}")
        cur.execute(bulk.staging_table_sql(table, [load for _, load, _ in bulk.bulk_columns(table, table.dialect)],
                                            side, SIDE_EXTRA))
        sql, params = ddl.owner_mark_sql(schema, table.name, f"{OWNER}{run_id}")
        cur.execute(sql, params)

    def _drop_previous(self, cur, schema, name):
        """Replace a table an earlier so_luigi run created; never touch one it did not."""
        cur.execute("SELECT OBJECT_ID(%s, 'U')", (connection.qualified(schema, name),))
        if cur.fetchone()[0] is None:
            return
        sql, params = ddl.owner_query_sql(schema, name)
        cur.execute(sql, params)
        row = cur.fetchone()
        if not (row and str(row[0] or "").startswith(OWNER)):
            raise SchemaError(f"destination table {schema}.{name} already exists and was not created by "
                              f"so_luigi: drop it, or set [target] schema (schema_map) to another schema")
        self._drop_referencing_keys(cur, schema, name)
        cur.execute(ddl.drop_table_sql(schema, name))

    def _drop_referencing_keys(self, cur, where, name):
        """Foreign keys of other tables that reference ``name`` go first (their step adds them
        again), only from tables so_luigi created; another's stops, naming it."""
        cur.execute("SELECT OBJECT_SCHEMA_NAME(parent_object_id), OBJECT_NAME(parent_object_id), name FROM sys.foreign_keys "
                    "WHERE referenced_object_id = OBJECT_ID(%s) AND parent_object_id <> referenced_object_id",
                    (connection.qualified(where, name),))
        for schema, child, constraint in cur.fetchall():
            sql, params = ddl.owner_query_sql(schema, child)
            cur.execute(sql, params)
            row = cur.fetchone()
            if not (row and str(row[0] or "").startswith(OWNER)):
                raise SchemaError(f"destination table {where}.{name} is referenced by foreign key {constraint} "
                                  f"of {schema}.{child}, which so_luigi did not create: drop that key to replace the table")
            cur.execute(f"ALTER TABLE {connection.qualified(schema, child)} DROP CONSTRAINT {ident(constraint)}")

    # --- loading ------------------------------------------------------------------------------
    def write(self, conn, cur, part, source, mode, buffer_bytes, checksum):
        """Bulk copy the range's rows (a retry clears the range first), through freebcp where it
        can (``_freebcp_plan``), else or when it fails through pymssql; the rows' checksum is
        summed here, from the values as read, when the source cannot compute this server's."""
        way = self._freebcp_plan(part, source, checksum, conn)
        if way is not None:
            try:
                return self._write_by_freebcp(conn, cur, part, source, way, buffer_bytes)
            except (freebcp.Unsafe, freebcp.Failed) as exc:
                why = "a value did not come out as its field" if isinstance(exc, freebcp.Unsafe) else str(exc)
                log.warning("%s partition %d: freebcp could not write it (%s): written through pymssql instead",
                            part.table.name, part.number, why)
                self._clear_apart(part)         # its committed batches go first
        return self._write_by_pymssql(conn, cur, part, source, buffer_bytes, checksum)

    def _freebcp_plan(self, part, source, checksum, conn):
        """(select expressions, predicate of the rows left to pymssql) when the partition goes
        through freebcp, else None (logged once per table when the URL asked for freebcp)."""
        table = part.table
        writer = getattr(self.endpoint.url.options, "writer", "") or "auto"
        # a table cut by heap position has no range to clear on a retry, unless it is one partition
        if writer == "pymssql" or not part.apart or part.replace or (table.cut == "ctid" and part.partitions > 1) \
                or not hasattr(source, "text_reader"):
            return None
        rows = (part.size or (None, None))[0]
        if writer == "auto" and (rows is None or rows / max(part.partitions, 1) < freebcp.MIN_ROWS):
            return None
        why = ("freebcp is not installed" if not freebcp.found() else freebcp.usable(self.endpoint)
               or ("its rows are hashed in Python" if checksum and self.checksum_method(source, table, conn) is None
                   else None))
        way = freebcp.plan(table, bulk.bulk_columns(table, table.dialect)) if why is None else why
        if isinstance(way, str):
            if table.name not in _SAID_NO_FREEBCP:
                _SAID_NO_FREEBCP.add(table.name)
                (log.warning if writer == "freebcp" else log.info)(
                    "%s: written through pymssql, not freebcp: %s", table.name, way)
            return None
        return way

    def _write_by_freebcp(self, conn, cur, part, source, way, buffer_bytes):
        """The rows freebcp carries through freebcp (its own connection, committing as it goes),
        the others through pymssql in the partition's transaction."""
        table = part.table
        exprs, bad = way
        if part.retry:
            self._clear_retry(cur, part, self._clear_apart(part))
        read = source.text_reader(table, part.lo, part.hi, exprs, bad and f"NOT coalesce({bad}, false)",
                                  freebcp.COPY_OPTIONS)
        rows, nbytes = freebcp.run(self.endpoint, connection.qualified(self.schema_of(table), table.name),
                                   bool(table.identity_columns), len(exprs), read, part.progress)
        more = {"rows": 0, "bytes": 0}
        if bad:
            batch = batch_rows_for(buffer_bytes, *(part.size or (None, None)))

            def seen(batch_rows):
                more["rows"] += len(batch_rows)
                more["bytes"] += payload_bytes(batch_rows)
                if part.progress is not None:
                    part.progress.update(rows + more["rows"])
            bulk.bulk_load(conn, self.schema_of(table), table, bulk.bulk_columns(table, table.dialect),
                           source.batches(table, part.lo, part.hi, batch, where=f"coalesce({bad}, false)"), batch,
                           spill_bytes=buffer_bytes // 4, on_batch=seen, side=(self._side(table), (part.number,)))
        total = rows + more["rows"]
        return Written(total, total, nbytes + more["bytes"], None, "freebcp", 0,
                       "rows go through FreeTDS's freebcp (its bulk copy in C, TABLOCK, committed as it goes; "
                       "a retry clears the range), those it would convert wrongly through pymssql's bulk_copy")

    def _clear_retry(self, cur, part, removed):
        """A retry's side-table rows of the partition deleted in its transaction, and the rows an
        earlier attempt left said (``removed``: those already deleted from the table)."""
        cur.execute(f"DELETE FROM {percent_safe(self._side(part.table))} WITH (TABLOCKX) "
                    f"WHERE {SIDE_EXTRA[0][0]} = %s", (part.number,))
        removed += cur.rowcount
        if removed > 0:
            log.warning("%s partition %d: removed %d rows an interrupted earlier attempt left",
                        part.table.name, part.number, removed)

    def _clear_apart(self, part):
        """The partition's key range deleted and committed on a connection of its own (freebcp's
        bulk load would wait for this transaction's locks); the rows removed."""
        c = self.connect(autocommit=True)
        try:
            sql, params = ddl.clear_range_sql(self.schema_of(part.table), part.table, part.lo, part.hi)
            cur = c.cursor()
            cur.execute(sql, params)
            return max(cur.rowcount, 0)
        finally:
            c.close()

    def _write_by_pymssql(self, conn, cur, part, source, buffer_bytes, checksum):
        table = part.table
        if part.retry:
            removed = 0
            if table.cut != "ctid":     # rows cut by where they lay in the source have no range here
                sql, params = ddl.clear_range_sql(self.schema_of(table), table, part.lo, part.hi)
                cur.execute(sql, params)
                removed = cur.rowcount
            self._clear_retry(cur, part, removed)
        batch = batch_rows_for(buffer_bytes, *(part.size or (None, None)))
        # hashed here only where the two servers compute no checksum alike
        by_servers = checksum and self.checksum_method(source, table, conn) is not None
        encoders = canonical_encoders(table) if checksum and not by_servers else None
        stats = {"rows": 0, "bytes": 0, "checksum": 0 if encoders else None}

        def seen(rows):
            if encoders:
                stats["checksum"] += rows_checksum(rows, encoders)
            stats["rows"] += len(rows)
            stats["bytes"] += payload_bytes(rows)
            if part.progress is not None:
                part.progress.update(stats["rows"])
        bulk.bulk_load(conn, self.schema_of(table), table, bulk.bulk_columns(table, table.dialect),
                        source.batches(table, part.lo, part.hi, batch), batch,
                        spill_bytes=buffer_bytes // 4, on_batch=seen,
                        side=None if part.replace else (self._side(table), (part.number,)))
        return Written(stats["rows"], stats["rows"], stats["bytes"], stats["checksum"], "bulk-copy", 0,
                       "rows go through the TDS bulk copy (pymssql bulk_copy, TABLOCK)")

    # --- completing ---------------------------------------------------------------------------
    def prepare(self, conn, table):
        """Once every partition is in: the side table's rows into the table, converted by the
        server as they go in. Its own transaction, and idempotent (the side table goes with the
        insert), so a crash here is repeated harmlessly."""
        cur = conn.cursor()
        side = self._side(table)
        cur.execute("SELECT OBJECT_ID(%s, 'U')", (side,))
        if cur.fetchone()[0] is not None:
            casts = bulk.side_casts(bulk.bulk_columns(table, table.dialect))
            cur.execute(bulk.unmask_sql(self.schema_of(table), table, side, casts, bulk.variant_kinds(cur, side, table)))
            cur.execute(f"DROP TABLE {side}")
        conn.commit()

    def checksum_method(self, source, table, conn):
        """Between two SQL Servers, the JSON checksum both compute (checksum.row_hash_sql); from a
        PostgreSQL source, the "lines" checksum both compute (checksum.line_checksum_sql), where
        this server can hash UTF-8; else none: the rows were hashed as read, and are read back
        here to compare."""
        if source.checksum_family == self.checksum_family:
            return "json"
        return "lines" if table.dialect == "postgres" and self._utf8_form() else None

    def _utf8_form(self):
        return checksum.server_utf8_form(self.endpoint, "full verification reads each table copied from PostgreSQL back")

    def _checksum_sql(self, table, method, lo=None, hi=None):
        """(sql, params) of the server-side checksum ``method`` of the table, or of (lo, hi]."""
        return checksum.method_checksum_sql(method, self.schema_of(table), table, self._utf8_form, lo, hi)

    def figures(self, table, verify, method):
        if verify == "full" and not method:         # read back on a session of its own
            return self._read_back(f"SELECT {', '.join(ident(c.name) for c in table.columns)} "
                                   f"FROM {connection.qualified(self.schema_of(table), table.name)}", None, table)
        conn = connection.connect(self.endpoint)
        try:
            cur = conn.cursor()
            if verify == "full":
                sql, _ = self._checksum_sql(table, method)
                cur.execute(sql)
                count, total = cur.fetchone()
                return int(count), int(total)
            cur.execute(f"SELECT COUNT_BIG(*) FROM {connection.qualified(self.schema_of(table), table.name)}")
            return int(cur.fetchone()[0]), None
        finally:
            conn.close()

    def finish_steps(self, table, partitions, positions=None):
        return [], ddl.finish_table_sql(self.schema_of(table), table) + [lambda cur: self._reseed(cur, table),
                                                                          lambda cur: self._restart(cur, table)]

    # --- re-syncing ---------------------------------------------------------------------------
    def _read_back(self, select, params, table):
        """(rows, checksum) of rows read back and hashed as the source's were on the way in:
        as Arrow batches through mssql-python where it can (``fast``), else through pymssql."""
        found = fast.read_back(self.endpoint, select, params, table)
        if found is not None:
            return found
        encoders = canonical_encoders(table)
        conn = connection.connect(self.endpoint)
        try:
            cur = conn.cursor()
            cur.execute(select, params) if params is not None else cur.execute(select)
            count = total = 0
            for rows in iter(lambda: cur.fetchmany(5000), []):
                count += len(rows)
                total += rows_checksum(rows, encoders)
            return count, total
        finally:
            conn.close()

    def range_figures(self, table, lo, hi, method):
        if method:
            conn = connection.connect(self.endpoint)
            try:
                cur = conn.cursor()
                sql, params = self._checksum_sql(table, method, lo, hi)
                cur.execute(sql, params) if params is not None else cur.execute(sql)
                count, total = cur.fetchone()
                return int(count), int(total)
            finally:
                conn.close()
        return self._read_back(*catalog.range_sql(
            f"SELECT {', '.join(ident(c.name) for c in table.columns)} "
            f"FROM {connection.qualified(self.schema_of(table), table.name)}", table, lo, hi), table)

    def source_figures(self, source, table, lo, hi, method, buffer_bytes):
        if method:
            return source.range_figures(table, lo, hi, method)
        encoders, count, total = canonical_encoders(table), 0, 0
        for rows in source.batches(table, lo, hi, 5000):
            count += len(rows)
            total += rows_checksum(rows, encoders)
        return count, total

    def clear_range(self, cur, table, lo, hi):
        cur.execute(*ddl.clear_range_sql(self.schema_of(table), table, lo, hi))
        return cur.rowcount

    def _hashed(self, table, lo, hi, into=""):
        keys = ", ".join(ident(c) for c in table.primary_key)
        return catalog.range_sql(f"SELECT {keys + ', ' if keys else ''}{checksum.row_hash_sql(table)} AS so_h{into} "
                               f"FROM {connection.qualified(self.schema_of(table), table.name)} AS t", table, lo, hi)

    def note_before(self, cur, table, lo, hi):
        cur.execute("IF OBJECT_ID('tempdb..#so_luigi_before') IS NOT NULL DROP TABLE #so_luigi_before")
        if table.primary_key:
            cur.execute(*self._hashed(table, lo, hi, " INTO #so_luigi_before"))
        else:
            sql, params = self._hashed(table, lo, hi)
            cur.execute(by_hash_sql(sql, " INTO #so_luigi_before"), params)

    def changes(self, cur, table, lo, hi):
        sql, params = self._hashed(table, lo, hi)
        cur.execute(changes_sql(sql, table.primary_key, "#so_luigi_before", ident), params)
        found = tuple(int(v) for v in cur.fetchone())
        cur.execute("DROP TABLE #so_luigi_before")
        return found

    def release_foreign_keys(self, cur, table):
        q = connection.qualified(self.schema_of(table), table.name)
        cur.execute("SELECT name FROM sys.foreign_keys WHERE parent_object_id = OBJECT_ID(%s)", (q,))
        own = {fk.name.casefold() for fk in table.foreign_keys}
        for (name,) in cur.fetchall():
            if name.casefold() in own:
                cur.execute(f"ALTER TABLE {q} DROP CONSTRAINT {ident(name)}")
        self._drop_referencing_keys(cur, self.schema_of(table), table.name)

    def sequence_steps(self, table, positions):
        return [lambda cur: self._reseed(cur, table), lambda cur: self._restart(cur, table)]

    def _restart(self, cur, table):
        """Each sequence a DEFAULT draws from restarts past the last value the source's gave
        (SQL Server 2017+ says which), the values copied and where it stands here (another table
        sharing it may have moved it on); a step further than needed leaves a gap, never a
        duplicate."""
        for col in [c for c in table.columns if c.drawn_sequence]:
            seq, q = col.sequence, connection.qualified(self._sequence_schema(table, col), col.sequence["name"])
            up = int(seq["increment"]) > 0
            cur.execute(f"SELECT {'MAX' if up else 'MIN'}({ident(col.name)}) FROM "
                        f"{connection.qualified(self.schema_of(table), table.name)}")
            seen = [v for v in (seq.get("last"), cur.fetchone()[0]) if v is not None]
            if not seen:
                continue            # never drawn from, nothing copied: at its start
            # where it stands here, read by drawing (Babelfish's sys.sequences is empty): never backwards
            cur.execute(f"SELECT NEXT VALUE FOR {q}")
            seen.append(int(cur.fetchone()[0]) - int(seq["increment"]))
            following = (max(seen) if up else min(seen)) + int(seq["increment"])
            if int(seq["min"]) <= following <= int(seq["max"]):
                cur.execute(f"ALTER SEQUENCE {q} RESTART WITH {int(following)}")

    def _reseed(self, cur, table):
        """Each identity column's next value past the largest copied one, unless the bulk copy's
        explicit values already moved it there (SQL Server keeps the largest value inserted under
        IDENTITY_INSERT as the current one)."""
        for col in table.identity_columns:
            cur.execute(ddl.identity_sql(self.schema_of(table), table, col))
            maximum, current = cur.fetchone()
            if maximum is not None and (current is None or current < maximum):
                # Babelfish counts no bulk-copied row as drawn from the identity, so its next value
                # after RESEED m is m itself (SQL Server's for a table never inserted into): one
                # increment further there leaves a gap, never a duplicate
                cur.execute("SELECT CAST(SERVERPROPERTY('babelfish') AS nvarchar(100)), IDENT_INCR(%s)",
                            (connection.qualified(self.schema_of(table), table.name),))
                babelfish, step = cur.fetchone()
                cur.execute(ddl.reseed_sql(self.schema_of(table), table, maximum + (int(step or 1) if babelfish else 0)))

    # --- maintenance --------------------------------------------------------------------------
    def drop_tables(self, cur, places):
        for schema, name in places:
            self._drop_referencing_keys(cur, schema, name)
            cur.execute(f"DROP TABLE IF EXISTS {connection.qualified(schema, name)}")
            cur.execute(f"DROP TABLE IF EXISTS {side_table(name, schema)}")
