"""The neutral table model, the two protocols every dialect implements, and identifier quoting.

A ``Table`` describes a source table as found in its catalog; the destination's type rules
(``pg_types``, ``mssql_ddl``) add each column's destination type. It round-trips through JSON so
the definition a run planned with is stored in the marker tables and reused by every later task.

``Source`` and ``Destination`` are what ``load`` needs of a database: one subclass of each per
dialect (``pg_source``, ``mssql_source``, ``pg_destination``, ``mssql_destination``), chosen in
``dialects.source`` / ``dialects.destination`` and nowhere else.
"""
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field

# a value a writer cannot send as it is: its row takes the slower, exact way (see mssql_ddl.carrier)
SIDE = type("Side", (), {"__repr__": lambda self: "SIDE"})()

INTEGER_TYPES = {"tinyint", "smallint", "int", "integer", "bigint", "int2", "int4", "int8"}


@dataclass
class Column:
    name: str
    data_type: str            # lower-case base type name as the source catalog spells it
    nullable: bool = True
    length: int = None        # character/binary length; -1 means (max)
    precision: int = None     # numeric precision, or fractional-second digits of time types
    scale: int = None
    identity: bool = False
    source_type: str = ""     # the full type as declared, for messages and the type report
    pg_type: str = ""         # filled by typemap.map_table
    kind: str = ""            # value converter kind, filled by typemap.map_table
    collation: str = ""       # SQL Server text columns: carried to a SQL Server destination;
                              # PostgreSQL: a collation other than the type's, qualified
    default: str = ""         # the column's DEFAULT expression as the source prints it
    sequence: dict = None     # PostgreSQL: the sequence an identity or serial column draws from
                              # (name, type, start, increment, min, max, cache, cycle)
    identity_kind: str = ""   # PostgreSQL identity: "a" GENERATED ALWAYS, "d" BY DEFAULT; "" serial
    seed: int = None          # SQL Server IDENTITY(seed, increment), when not (1, 1)
    increment: int = None
    generated: str = ""       # a generated (PostgreSQL STORED) column's expression: the destination
                              # computes its values, which are not copied but are verified
    user_type: bool = False   # PostgreSQL: a type the source defines (enum, domain, composite, range,
                              # an extension's): created before the table, values travel as text
    comment: str = None       # PostgreSQL: COMMENT ON COLUMN, when it has one
    computed: str = ""        # SQL Server: a computed column's expression as the catalog prints it;
                              # its values are read (and verified) whatever the destination does
    persisted: bool = False   # SQL Server: the computed column is PERSISTED
    sparse: bool = False      # SQL Server: a SPARSE column (kept into SQL Server; storage only)

    @property
    def drawn_sequence(self):
        """The sequence a SQL Server column's DEFAULT draws from (NEXT VALUE FOR), which no
        column owns: its ``sequence`` with ``standalone`` set; None for any other column."""
        return self.sequence if self.sequence and self.sequence.get("standalone") else None


@dataclass
class Index:
    name: str
    columns: list             # [[column, "ASC"|"DESC"], ...] of a plain index (no expression)
    unique: bool = False
    definition: str = ""      # PostgreSQL: pg_get_indexdef after "USING " (method, operator classes,
                              # collations, NULLS order, expressions, INCLUDE, predicate)
    plain: bool = True        # btree on columns alone, as any destination can build it
    include: list = field(default_factory=list)   # SQL Server: INCLUDE columns
    where: str = ""           # SQL Server: a filtered index's predicate (in the destination's
                              # words once Destination.carry has translated it)


@dataclass
class Constraint:
    """A constraint besides the primary key: what the destination needs to rebuild it, in the
    source's words (``definition``) and, for a foreign key, in parts every dialect can spell."""
    name: str
    kind: str                 # "check", "unique", "exclude" or "foreign_key"
    definition: str           # as the source prints it (PostgreSQL: pg_get_constraintdef)
    validated: bool = True    # False: NOT VALID in the source, and so in the copy
    deferrable: bool = False
    deferred: bool = False
    index: str = ""           # unique: its index's definition after "USING "
    columns: list = field(default_factory=list)
    ref_schema: str = ""      # foreign key: the referenced table
    ref_table: str = ""
    ref_columns: list = field(default_factory=list)
    match: str = ""           # "FULL", or "" for MATCH SIMPLE
    on_update: str = "NO ACTION"
    on_delete: str = "NO ACTION"


@dataclass
class Table:
    schema: str
    name: str
    columns: list
    primary_key: list = field(default_factory=list)
    pk_name: str = ""
    indexes: list = field(default_factory=list)
    dialect: str = ""         # the source's: SQL Server index names are per table, PostgreSQL's per schema
    layout: str = "plain"     # destination layout chosen when planned: plain or partitioned (see load.py)
    unlogged: bool = False    # loaded UNLOGGED, SET LOGGED when complete
    cut: str = "key"          # partitions cut on the integer key, or by "ctid" (heap block) ranges
    constraints: list = field(default_factory=list)   # Constraint, besides the primary key
    not_carried: list = field(default_factory=list)   # [[object, why]]: what the copy leaves out
    types: list = field(default_factory=list)   # PostgreSQL: the user-defined types its columns need,
                                                # those they depend on first (catalog.user_types)
    comment: str = None       # PostgreSQL: COMMENT ON TABLE, when it has one
    key: str = ""             # what the run calls it: its name, or schema.name when the run copies
                              # several schemas (markers, --tables, the report)
    target_schema: str = ""   # the destination schema it goes into (set when planned)

    @property
    def run_name(self):
        return self.key or self.name

    @property
    def qualified(self):
        return f"{self.schema}.{self.name}"

    def column(self, name):
        for c in self.columns:
            if c.name == name:
                return c
        raise KeyError(f"{self.qualified} has no column {name!r}")

    @property
    def int_key(self):
        """The single integer primary-key column partitions are cut on, or None."""
        if len(self.primary_key) != 1:
            return None
        col = self.column(self.primary_key[0])
        return col.name if col.data_type in INTEGER_TYPES else None

    @property
    def foreign_keys(self):
        return [c for c in self.constraints if c.kind == "foreign_key"]

    def referenced(self, fk, names):
        """The table foreign key ``fk`` references, as the run's table ``names`` spell it; None
        when the run does not copy it (a schema it does not copy, or a table left out)."""
        if self.key and self.key != self.name:          # the run names tables schema.table
            return same_name(f"{fk.ref_schema}.{fk.ref_table}", names)
        return same_name(fk.ref_table, names) if same_name(fk.ref_schema, [self.schema]) else None

    @property
    def loaded_columns(self):
        """The columns whose values travel: all but those the destination generates."""
        return [c for c in self.columns if not c.generated]

    @property
    def loaded_positions(self):
        """Where the loaded_columns are among the columns (0-based)."""
        return [i for i, c in enumerate(self.columns) if not c.generated]

    @property
    def identity_columns(self):
        return [c.name for c in self.columns if c.identity]

    def to_json(self):
        return asdict(self)

    @classmethod
    def from_json(cls, data):
        data = dict(data)
        data["columns"] = [Column(**c) for c in data["columns"]]
        data["indexes"] = [Index(**i) for i in data.get("indexes", [])]
        data["constraints"] = [Constraint(**c) for c in data.get("constraints", [])]
        return cls(**data)


def by_hash_sql(hashed, into=""):
    """A keyless range's noted rows: each row hash (``so_h``) with how many rows have it (``so_n``);
    ``into``: T-SQL's `` INTO #table``."""
    return f"SELECT so_h, COUNT(*) AS so_n{into} FROM ({hashed}) h GROUP BY so_h"


def changes_sql(hashed, keys, before, ident):
    """(inserted, updated, deleted) rows of a recopied range, in SQL both dialects speak: its rows
    now (``hashed``: the key columns and each row's hash ``so_h``) against the table ``before``
    noted before the delete. Rows are matched by key; without one, by hash, counted."""
    if keys:
        on = " AND ".join(f"a.{ident(c)} = b.{ident(c)}" for c in keys)
        return (f"SELECT COALESCE(SUM(CASE WHEN b.so_h IS NULL THEN 1 ELSE 0 END), 0), "
                f"COALESCE(SUM(CASE WHEN a.so_h <> b.so_h THEN 1 ELSE 0 END), 0), "
                f"COALESCE(SUM(CASE WHEN a.so_h IS NULL THEN 1 ELSE 0 END), 0) "
                f"FROM ({hashed}) a FULL OUTER JOIN {before} b ON {on}")
    now, then = "COALESCE(a.so_n, 0)", "COALESCE(b.so_n, 0)"
    return (f"SELECT COALESCE(SUM(CASE WHEN {now} > {then} THEN {now} - {then} ELSE 0 END), 0), 0, "
            f"COALESCE(SUM(CASE WHEN {then} > {now} THEN {then} - {now} ELSE 0 END), 0) "
            f"FROM ({by_hash_sql(hashed)}) a FULL OUTER JOIN {before} b ON a.so_h = b.so_h")


_SQL_NAMES = {
    "integer": "int4", "smallint": "int2", "bigint": "int8", "boolean": "bool", "real": "float4",
    "double precision": "float8", "character varying": "varchar", "character": "bpchar",
    "char": "bpchar", "decimal": "numeric", "timestamp without time zone": "timestamp",
    "timestamp with time zone": "timestamptz", "time without time zone": "time",
    "time with time zone": "timetz",
}


def type_name(pg_type):
    """A type's base name as PostgreSQL's catalog spells it (typname), from any SQL spelling:
    'numeric(10,2)' -> 'numeric', 'timestamp(3) without time zone' -> 'timestamp', 'integer' -> 'int4'."""
    text = pg_type.strip().lower()
    if text.endswith("]"):
        return "array"
    name = " ".join(part.split("(")[0] for part in text.replace(")", ") ").split() if part[:1] != "(")
    name = name.replace("  ", " ").strip()
    return _SQL_NAMES.get(name, name)


NOT_COPIED = "which this run does not copy"     # why a foreign key is not carried


def same_name(name, names):
    """``name`` as ``names`` spell it: the exact one, else the only one equal ignoring case (SQL
    Server compares names by its collation, and Babelfish's catalog prints them lower-case);
    None when there is none."""
    if name in names:
        return name
    same = [n for n in names if n.casefold() == (name or "").casefold()]
    return same[0] if len(same) == 1 else None










# --- the protocols ------------------------------------------------------------------------------

@dataclass
class Slice:
    """One partition as a destination writes it: its place in the plan and what the step knows."""
    run_id: str
    table: Table
    partitions: int           # how many the table has
    number: int
    lo: int = None            # exclusive lower key bound, None = unbounded
    hi: int = None            # inclusive upper key bound, None = unbounded
    retry: bool = False       # an earlier attempt may have left rows (destinations that count attempts)
    progress: object = None   # progress.Progress, or None
    monitor: object = None    # monitor(): an autocommit destination connection to watch a load through
    size: tuple = None        # (source rows, source bytes) of the table when planned
    plan: tuple = None        # (plan id, lo, hi): what a bulk file must have been cut for
    replace: bool = False     # a sync's recopy: the range was just cleared in this transaction,
                              # the table stands finished (no FREEZE, no new child, no side table)
    unfrozen: bool = False    # a lone partition loaded without FREEZE, so without the TRUNCATE it needs
    fresh: bool = False       # the table was created in the load's transaction: FREEZE needs no TRUNCATE
    apart: bool = False       # its rows may commit before its marker, on another connection: the
                              # caller counts attempts and a retry clears the range (load_partition)


@dataclass
class Written:
    """What writing a partition did: rows read from the source and stored, and how."""
    source_rows: int
    rows: int
    bytes: int
    checksum: int = None      # of the rows as read, when the source's rows were hashed on the way
    via: str = "stream"       # stream, stream-binary, server-file, client-file, bulk-copy or freebcp:
                              # kept in the marker
    changed: int = 0          # values changed by the [data] nul policy
    how: str = ""             # logged once per table: which way the rows went


class _Database:
    dialect = ""              # postgres or mssql: the name the type rules are keyed by
    checksum_family = ""      # servers of one family compute one content checksum server-side
    driver = ""               # the top-level module of its driver's exceptions

    def __init__(self, endpoint):
        self.endpoint = endpoint
        self.schema = endpoint.schema

    def __repr__(self):
        return f"{type(self).__name__}({self.endpoint})"

    def owns(self, exc):
        """Whether ``exc`` is an error of this database's driver."""
        return type(exc).__module__.split(".")[0] == self.driver

    def translate(self, exc, role):
        """The driver error ``exc`` as a one-line SoLuigiError (``role``: source, target, or
        both when the two are of one dialect)."""
        raise NotImplementedError


class Source(_Database):
    """A database so_luigi copies from.

    Every method opens its own connection unless it is given one: partitions are read by
    many processes at once.
    """
    binary_copy = False       # its rows can travel in PostgreSQL's binary COPY format
    exports_snapshots = False  # every session of the run can read it at one moment (so_luigi.snapshot)
    dumps_schema = False      # schema_dump gives what its schemas hold besides the tables
    catalog = None            # the dialect's module: schema_exists, list_tables, describe, table_bytes

    def __init__(self, endpoint, snapshot=None):
        super().__init__(endpoint)
        self.snapshot = snapshot  # the run's, for a source that exports_snapshots

    # connections and catalog
    def connect(self):
        raise NotImplementedError

    @contextmanager
    def session(self):
        conn = self.connect()
        try:
            yield conn
        finally:
            conn.close()

    @contextmanager
    def pinned(self):
        """Within, this Source's reads may share one session and one transaction (at the run's
        snapshot) where its dialect keeps one (PostgreSQL): a task copying many small tables
        then opens no session per read."""
        yield

    def estimates(self, conn, tables):
        """{run name: (bytes on disk, the planner's row estimate or None, the most rows it can
        hold now)} of ``tables`` in one query, where the catalog offers it; None otherwise (each
        table is then measured)."""
        return None

    def schema_exists(self, conn, schema):
        return self.catalog.schema_exists(conn, schema)

    def describe(self, conn, key):
        """The Table the run calls ``key`` (see find_tables), as its catalog defines it."""
        schema, name = self.locate(conn, key)
        table = self.catalog.describe(conn, schema, name)
        table.key = key
        return table

    @property
    def describes_many(self):
        """Whether the catalog describes many tables in one go (``describe_all``)."""
        return hasattr(self.catalog, "describe_many")

    def describe_all(self, conn, keys):
        """The Tables of ``keys``, in their order: in one go where the catalog can, else one by one."""
        if not self.describes_many:
            return [self.describe(conn, key) for key in keys]
        tables = self.catalog.describe_many(conn, [self.locate(conn, key) for key in keys])
        for table, key in zip(tables, keys):
            table.key = key
        return tables

    def other_objects(self, conn):
        """[(kind, name)] of what the copied schemas hold besides the tables so_luigi copies
        (views, functions, triggers, ...), none of which it carries: for the report."""
        schemas = sorted({schema for schema, _ in self.tables(conn).values()})
        return [(kind, f"{schema}.{name}" if len(schemas) > 1 else name) for schema in schemas
                for kind, name in self.catalog.other_objects(conn, schema)]

    def tables(self, conn):
        """{run's name: (schema, table)} of every base table of the copied schemas: the
        configured ones, else every user schema (so_luigi's marker schema left out). A table's
        run name is its own when they are one schema, else ``schema.table``."""
        if getattr(self, "_tables", None) is None:
            from ..config import marker_schema
            from ..errors import SchemaError
            ep = self.endpoint
            found = [(s, n) for s, n in self.catalog.all_tables(conn) if s != marker_schema()]
            if ep.schemas:
                absent = [s for s in ep.schemas if not self.schema_exists(conn, s)]
                if absent:
                    raise SchemaError(f"schema {', '.join(map(repr, absent))} not found in {ep.role} "
                                      f"{ep.url.redacted} (set [{ep.role}] schemas or schema)")
                found = [(s, n) for s, n in found if s in ep.schemas]
            schemas = {s for s, _ in found}
            self._tables = {(f"{s}.{n}" if len(schemas) > 1 else n): (s, n) for s, n in found}
        return self._tables

    def locate(self, conn, key):
        """(schema, table) of the run's name ``key``."""
        found = self.tables(conn)
        if key not in found:
            from ..errors import SchemaError
            raise SchemaError(f"table {key!r} not found in the {self.endpoint.role}'s copied schemas")
        return found[key]

    def find_tables(self, conn, wanted=None):
        """The run's names of the copied schemas' base tables, or of the ``wanted`` subset;
        unknown names fail clearly."""
        from ..errors import SchemaError
        ep = self.endpoint
        names = list(self.tables(conn))
        where = f"schema {ep.schemas[0]!r}" if len(ep.schemas) == 1 else (
            f"schemas {', '.join(map(repr, ep.schemas))}" if ep.schemas else "user schemas")
        if not wanted:
            if not names:
                raise SchemaError(f"the {where} of {ep.role} {ep.url.redacted} hold no tables")
            return names
        missing = [w for w in wanted if w not in names]
        if missing:
            hints = []
            for w in missing:
                same = [n for n in names if n.lower() == w.lower() or n.lower().endswith("." + w.lower())]
                hints.append(f"{w!r}" + (f" (did you mean {same[0]!r}?)" if len(same) == 1 else ""))
            shown = ", ".join(names[:50]) + (f", ... ({len(names)} in all)" if len(names) > 50 else "")
            raise SchemaError(f"table {', '.join(hints)} not found in the {ep.role}'s {where}; "
                              f"tables there: {shown or '(none)'}")
        return list(wanted)

    def schema_dump(self, exclude=()):
        """What its schema holds besides the tables, as a destination that ``restores_dumps``
        can re-create it (PostgreSQL: objects.Dump); None where there is no such thing."""
        return None

    def can_import(self, snapshot):
        """Whether a session can still read at ``snapshot`` (its holder alive)."""
        return False

    def export_snapshot(self):
        """(a connection holding a new snapshot every session can import, its name, when it was
        taken in words): for a source that exports_snapshots."""
        raise NotImplementedError

    def snapshot_held(self, conn):
        """Whether the connection of export_snapshot still holds its snapshot."""
        raise NotImplementedError

    def consistency(self):
        """How the run reads it, in words, when it cannot share a snapshot (for the report)."""
        return "read live"

    # cutting
    def measure(self, conn, table, rows_per_partition, by_position=False):
        """(bytes on disk, row count, boundaries, rows per partition): what planning needs.
        ``rows_per_partition(rows, bytes)`` gives the step once the size and count are known.
        ``by_position``: the destination can take partitions that are no key range (it never
        clears a range), so a table without a single integer key may be cut by where its rows
        lie (``table.cut`` says how it was cut)."""
        raise NotImplementedError

    # reading
    def copy_format(self, table, checksum=True):
        """The COPY format its rows reach PostgreSQL in: binary (its own types unchanged), text,
        or csv; ``checksum``: whether the reader hashes the rows as it reads them."""
        return "text"

    def copy_reader(self, table, lo, hi, checksum, buffer_bytes):
        """``read(sink)`` writing the range as COPY ``copy_format`` data into ``sink``; returns
        (rows, checksum of the rows as read or None, values changed). A reader writing from C
        sets ``read.os_pipe`` (stream.stream then gives it an OS pipe)."""
        raise NotImplementedError

    def extract(self, table, lo, hi, fmt, fh, checksum):
        """Write the range into the binary file ``fh`` as ``fmt`` (csv or binary); returns (rows,
        checksum or None, bytes, values changed)."""
        raise NotImplementedError

    def batches(self, table, lo, hi, batch_rows):
        """Lists of row tuples of the range, as the driver returns them; one list in memory at a time."""
        raise NotImplementedError

    # verification
    def computes_lines(self, table):
        """Whether this server computes the "lines" checksum of the table (a PostgreSQL
        destination's, of another family's rows) instead of its rows being hashed as read."""
        return False

    def figures(self, table, method=None):
        """(count, checksum): the checksum by ``method`` (a server-side one its destination
        agreed to), None without one."""
        raise NotImplementedError

    def sequence_positions(self, table):
        """{column: (last value, is_called)} of the sequences the table's columns draw from, as
        they stand now, for the copy's sequences to take; {} where the source has none to give."""
        return {}

    # re-syncing (so_luigi.sync)
    def range_figures(self, table, lo, hi, method):
        """(count, checksum by ``method``) of one partition, computed by the server."""
        raise NotImplementedError

    def scans_ranges(self, table, method):
        """Whether figures_by_range can compare this table's ranges in one scan."""
        return False

    def figures_by_range(self, table, cuts, method):
        """{range number: (count, checksum by ``method``)} of every range of the table's integer
        key that ``cuts`` (ascending; range i is (cuts[i-1], cuts[i]]) make, in one scan; a range
        without rows is absent. Only where scans_ranges (else each range is read alone)."""
        raise NotImplementedError

    def tail(self, conn, table, after, step):
        """(rows with an integer key above ``after`` (None: all), the keys closing each full
        ``step`` of them): where a sync plans rows past the old last key."""
        raise NotImplementedError

    def watermark(self, table):
        """A proof of change cheaper than a checksum: the value that every row written from
        now on will carry at least in the table's ``rowversion`` column (SQL Server's
        MIN_ACTIVE_ROWVERSION()), or None when the table or the server offers none."""
        return None

    def changed_since(self, table, lo, hi, watermark):
        """(rows of the partition, how many carry a rowversion at or above ``watermark``)."""
        raise NotImplementedError


class Destination(_Database):
    """A database so_luigi copies into, where its marker tables live too.

    Besides the steps of a table, its ``state`` (its dialect's state module) holds the few
    pieces of marker SQL that differ between databases (``state.markers`` writes the rest once):
    ``ident``, ``now``, ``load_started``, ``exists_sql``, ``lost``, ``seconds_since``, ``lock``,
    and the types and DDL ``state.schema`` renders its one definition with.
    """
    state = None
    owned = None              # owned(cur, schema, name): whether so_luigi created that table, as the
                              # marker tables say (set by the engine: this layer reads no markers)
    bulk_files = False        # can load partitions from extracted files (--mode bulk)
    cuts_by_position = False  # takes partitions that are not key ranges (Source.measure)
    counts_attempts = False   # a partition's load might commit part of its rows: attempts are counted
    restores_dumps = False    # re-creates what a source's schema_dump holds (PostgreSQL from PostgreSQL)
    copies_at_once = False    # a small table's rows, verification, finish and both markers can commit
                              # in one transaction (load.copy_at_once)

    def deferred(self, cur):
        """A cursor whose writes may wait for one round trip with others (its ``flush``), or
        ``cur`` itself where the driver cannot render statements ahead."""
        return cur

    def rewrites(self, table):
        """Whether ``carry`` rewrites ``table`` in place (its expressions translated from
        another dialect's words)."""
        from . import expressions
        return expressions(table.dialect, self.dialect) is not None

    def check_replaceable(self, cur, tables):
        """SchemaError naming the first of ``tables`` in the way (there, and not so_luigi's)
        before they are created as they are copied; nothing to check where none are."""

    def absent(self, cur, tables):
        """The run names of ``tables`` whose destination table does not exist yet, in a schema
        that does (``create`` may then skip looking): none known here."""
        return set()

    def connect(self, autocommit=False):
        raise NotImplementedError

    def session(self):
        """A transaction: rolled back on any error, always closed."""
        raise NotImplementedError

    def qualified(self, schema, name):
        raise NotImplementedError

    def schema_of(self, table):
        """The destination schema ``table`` goes into (planned with it; a definition stored
        before schemas were mapped goes into the main one)."""
        return table.target_schema or self.schema

    # planning
    def map_types(self, tables, source, overrides=None):
        """Fill each column's destination type; one SchemaError naming every column it cannot hold."""
        raise NotImplementedError

    def layout(self, table, partitions, layout, mode):
        return "plain"

    def carry(self, table):
        """Take out of ``table`` the indexes, constraints and defaults this destination cannot
        build as the source defines them, each listed in ``table.not_carried`` with the reason."""

    def constraint_state(self, cur, table, name):
        """None when the table has no constraint ``name``; else "valid" or "not valid"."""
        raise NotImplementedError

    def add_foreign_key(self, cur, table, fk):
        """ALTER TABLE ... ADD CONSTRAINT ... FOREIGN KEY ... NOT VALID: a brief lock, no scan."""
        raise NotImplementedError

    def validate_constraint(self, cur, table, name):
        raise NotImplementedError

    def create(self, cur, run_id, table):
        """In the planning transaction: the schema, the table (replacing one an earlier run of
        so_luigi created, refusing any other), and whatever its loads need beside it."""
        raise NotImplementedError

    # loading
    def write(self, conn, cur, part, source, mode, buffer_bytes, checksum):
        """Store ``part`` (a Slice) in the open transaction: streamed from ``source``, or in bulk
        mode from its extracted file. Returns Written; the caller checks the counts, inserts the
        marker and commits."""
        raise NotImplementedError

    def write_files(self, conn, cur, parts, buffer_bytes):
        """Bulk mode (a destination with bulk_files): every partition of a plain table from its
        file, in the open transaction, the table emptied first. Returns a Written per part."""
        raise NotImplementedError

    # completing
    def prepare(self, conn, table):
        """Before verification, in its own committed transaction (nothing by default)."""

    def figures_in(self, cur, table, verify, method):
        """``figures`` in ``cur``'s transaction, which holds the rows it has just written
        (destinations that ``copies_at_once``)."""
        raise NotImplementedError

    def checksum_method(self, source, table, conn):
        """The server-side checksum both sides compute for ``table``, or None: then the source's
        rows were hashed as they were read, and ``figures`` hashes the stored rows the same way."""
        return None

    def tallies(self, table, verify):
        """Whether the rows each partition's COPY stored may stand for a count of the table."""
        return False

    def figures(self, table, verify, method):
        """(count, checksum or None) of the stored table, computed as the source's side is."""
        raise NotImplementedError

    def finish_steps(self, table, partitions, positions=None):
        """(statements to run beside the verification scans, statements after it agrees);
        ``positions``: the source's Source.sequence_positions."""
        raise NotImplementedError

    # re-syncing (so_luigi.sync)
    def range_figures(self, table, lo, hi, method):
        """(count, checksum) of one stored partition, as ``figures`` computes the table's."""
        raise NotImplementedError

    def scans_ranges(self, table, method):
        return False

    def figures_by_range(self, table, cuts, method):
        """As Source.figures_by_range, of the stored rows."""
        raise NotImplementedError

    def source_figures(self, source, table, lo, hi, method, buffer_bytes):
        """(count, checksum) of the source's partition, computed so as to compare with
        range_figures: by the source server with ``method``, else from its rows as read."""
        raise NotImplementedError

    def quiet_triggers(self, cur, table):
        """Before a recopy, in its transaction: the table's triggers and rules that would act on
        its delete and insert disabled; returns the statements enabling them again, as they were."""
        return []

    def clear_range(self, cur, table, lo, hi):
        """Delete the stored partition in the open transaction; returns the rows deleted."""
        raise NotImplementedError

    def note_before(self, cur, table, lo, hi):
        """Keep each stored row's key and hash of the partition, for ``changes`` after its recopy."""
        raise NotImplementedError

    def changes(self, cur, table, lo, hi):
        """(inserted, updated, deleted) rows of the partition since ``note_before``: by key; a
        table without a key has no updates, only rows that came and went."""
        raise NotImplementedError

    def release_foreign_keys(self, cur, table):
        """Drop the table's foreign keys and those of other so_luigi tables referencing it (a
        recopy deletes and inserts rows; the sync's foreign-key steps add them again, validated)."""
        raise NotImplementedError

    def sequence_steps(self, table, positions):
        """Statements that move the table's identities and sequences past the rows it holds now."""
        return []

    # maintenance
    def drop_tables(self, cur, names):
        """``reset --drop-tables``: the tables and anything created beside them."""
        raise NotImplementedError

    def rows_in_flight(self, cur, tables):
        """[(table, rows)] of loads of ``tables`` running now, for ``so-luigi status``."""
        return []
