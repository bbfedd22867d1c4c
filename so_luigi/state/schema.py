"""The marker tables' one definition, as numbered migrations, and bringing a destination up to it.

Every database gets the same tables from the same list: each migration is a few neutral steps
(``Table``: create it, or add the columns it lacks; ``DropKey``) that the destination's dialect
renders in its own SQL (``Destination.state``: types, ``CREATE TABLE``, ``ADD COLUMN``). A fresh
destination runs them all; an older one runs those after the version it records in
``schema_version``. Marker schemas made before versioning (no ``schema_version``) are version 0:
migration 1 creates what they lack and adds every column later releases added, so it is also what
brings them up. ``definition()`` folds the migrations into the tables as they end up, which
``tests/test_state.py`` compares with each database's catalog.

Neutral types: ``id`` (a run_id), ``name`` (a table's name), ``text`` (unbounded), ``text:N``
(bounded where a database wants a length), ``int``, ``bigint``, ``float``, ``checksum`` (an exact
integer of up to 38 digits), ``json``, ``time`` (a moment, with its zone). A default is ``now``
or an integer.
"""
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Column:
    name: str
    type: str
    null: bool = True
    default: object = None    # None, "now" or an int


def col(name, type_, null=True, default=None):
    return Column(name, type_, null, default)


@dataclass(frozen=True)
class Table:
    """Create the table with its key when missing; add any of its columns it lacks (nullable or
    with a default: an existing table may hold rows)."""
    name: str
    columns: tuple
    key: tuple = ()


@dataclass(frozen=True)
class DropKey:
    """Drop the table's primary key, if it has one."""
    table: str


@dataclass(frozen=True)
class Migration:
    version: int
    what: str
    steps: tuple = field(default_factory=tuple)


MIGRATIONS = (
    Migration(1, "one definition for every database (was: a DDL per database, with hand-made additions)", (
        Table("runs", (
            col("run_id", "id", False),
            col("source", "text:1000", False),          # the redacted URL: never a password
            col("source_schema", "name", False),
            col("target_schema", "name", False),
            col("created_at", "time", False, "now"),
            col("source_snapshot", "text:200"),         # the exported snapshot the run reads at
            col("source_read", "text:400"),             # how it reads its source, in words
            col("seen_at", "time"),                     # when a process of the run was last alive
        ), key=("run_id",)),
        Table("tables", (
            col("run_id", "id", False),
            col("table_name", "name", False),
            col("definition", "json", False),           # the source table as planned, types mapped
            col("partitions", "int", False),
            col("source_rows", "bigint", False),        # when planned: counted, or estimated
            col("source_bytes", "bigint"),              # size on disk when planned
            col("planned_at", "time", False, "now"),
            col("completed_at", "time"),                # the table-complete marker
            col("rows", "bigint"),
            col("bytes", "bigint"),
            col("seconds", "float"),
            col("source_checksum", "checksum"),
            col("target_checksum", "checksum"),
            col("verdict", "text:200"),
            col("plan_id", "text:40"),                  # which plan a bulk file was cut for
        ), key=("run_id", "table_name")),
        Table("partitions", (
            col("run_id", "id", False),
            col("table_name", "name", False),
            col("partition", "int", False),
            col("lo", "bigint"),                        # exclusive lower key bound, NULL = unbounded
            col("hi", "bigint"),                        # inclusive upper key bound, NULL = unbounded
            col("rows", "bigint", False),               # rows expected when planned
            col("attempts", "int", False, 0),           # loads begun (destinations that count them)
            col("lo_key", "text"),                      # bounds on a key that is not one integer:
            col("hi_key", "text"),                      # the key's values, as JSON
        ), key=("run_id", "table_name", "partition")),
        Table("loaded", (
            col("run_id", "id", False),
            col("table_name", "name", False),
            col("partition", "int", False),
            col("rows", "bigint", False),
            col("bytes", "bigint", False),
            col("seconds", "float", False),
            col("checksum", "checksum"),                # the rows' checksum as read from the source
            col("via", "text:40", False),               # stream, server-file, client-file, bulk-copy
            col("changed", "bigint", False, 0),         # values changed by the [data] nul policy
            col("peak_kb", "bigint"),                   # peak RSS of the loading process
            col("worker", "text:300", False),
            col("loaded_at", "time", False, "now"),
        ), key=("run_id", "table_name", "partition")),
        # no key: a selection of thousands of tables is longer than an index entry may be
        # (store.mark_replicated inserts under a lock instead)
        Table("replications", (
            col("run_id", "id", False),
            col("tables", "text", False),
            col("completed_at", "time", False, "now"),
        )),
        DropKey("replications"),
        Table("syncs", (                                # one row per --sync of a run
            col("run_id", "id", False),
            col("generation", "int", False),            # the run's first sync is 1
            col("pass", "int", False, 1),               # begun again from a new source snapshot
            col("source_snapshot", "text:200"),
            col("started_at", "time", False, "now"),
            col("finished_at", "time"),
        ), key=("run_id", "generation")),
        Table("synced", (                               # one row per step a sync took
            col("run_id", "id", False),
            col("generation", "int", False),
            col("pass", "int", False),
            col("table_name", "name", False),
            col("item", "text:300", False),             # plan, partition N, table, foreign key NAME
            col("outcome", "text:200", False),          # same, recopied, split, or the verdict
            col("proof", "text:40"),                    # checksum or rowversion
            col("rows", "bigint"),
            col("inserted", "bigint", False, 0),
            col("updated", "bigint", False, 0),
            col("deleted", "bigint", False, 0),
            col("seconds", "float", False, 0),
            col("synced_at", "time", False, "now"),
        ), key=("run_id", "generation", "pass", "table_name", "item")),
        Table("proofs", (
            col("run_id", "id", False),
            col("table_name", "name", False),
            col("partition", "int", False),
            col("rows", "bigint", False),               # the range's rows when last read or checked
            col("watermark", "bigint", False),          # SQL Server's MIN_ACTIVE_ROWVERSION() before
        ), key=("run_id", "table_name", "partition")),
    )),
    Migration(2, "the tables so_luigi created, in the marker schema (was: a comment on each table)", (
        Table("owned", (
            col("schema_name", "name", False),
            col("table_name", "name", False),
            col("run_id", "id", False),
            col("created_at", "time", False, "now"),
        ), key=("schema_name", "table_name")),
    )),
    Migration(3, "what the source holds besides its tables, which a run does not carry", (
        Table("objects", (                              # no key: a name may be longer than a key may
            col("run_id", "id", False),
            col("kind", "text:100", False),             # view, function, trigger, ...
            col("name", "text", False),
            col("why", "text", False),
            col("noted_at", "time", False, "now"),
        )),
    )),
    Migration(4, "steps of a run besides its tables (the source's other objects, before and after the rows)", (
        Table("steps", (
            col("run_id", "id", False),
            col("step", "text:200", False),
            col("done_at", "time", False, "now"),
        ), key=("run_id", "step")),
    )),
    Migration(5, "the source snapshot each partition and table was read or proven at (a lost snapshot is recovered)", (
        Table("loaded", (
            col("snapshot", "text:200"),                # read at; NULL: a source without snapshots
            col("proven", "text:40"),                   # proven at a later snapshot: same, or recopied
        )),
        Table("tables", (
            col("snapshot", "text:200"),                # verified at
        )),
    )),
    Migration(6, "a sync's checksum of each range found the same (a table's verdict composed from one scan per side)", (
        Table("synced", (
            col("checksum", "checksum"),                # the range's, both sides (found the same)
        )),
    )),
)

VERSION = MIGRATIONS[-1].version

# which version the marker tables are at, one row per migration applied
VERSION_TABLE = Table("schema_version", (
    col("version", "int", False),
    col("what", "text:400", False),
    col("applied_at", "time", False, "now"),
), key=("version",))


# the dumps a database was built from (so_luigi.dump), in the marker schema of that database
DUMPS_TABLE = Table("dumps", (
    col("schema_name", "name", False),
    col("fingerprint", "text:3000", False),
    col("rows", "bigint", False),
    col("loaded_at", "time", False, "now"),
))


def definition():
    """{table: {column: Column}} and {table: key}: the marker tables as every migration leaves them."""
    tables, keys = {}, {}
    for migration in MIGRATIONS:
        for step in migration.steps:
            if isinstance(step, Table):
                columns = tables.setdefault(step.name, {})
                for c in step.columns:
                    columns.setdefault(c.name, c)
                keys.setdefault(step.name, tuple(step.key))
            elif isinstance(step, DropKey):
                keys[step.table] = ()
    return tables, keys


def statements(dialect, m, step):
    """SQL ``dialect`` (a Destination's ``state``) runs for one step in marker schema ``m`` (quoted)."""
    if isinstance(step, Table):
        out = [dialect.create_table(m, step.name, step.columns, step.key)]
        return out + [dialect.add_column(m, step.name, c) for c in step.columns]
    if isinstance(step, DropKey):
        return [dialect.drop_key(m, step.table)]
    raise TypeError(f"unknown marker schema step {step!r}")


def ensure(conn, dialect, m, lock):
    """Bring the marker schema ``m`` in ``conn``'s database up to VERSION, once: under ``lock``
    (a function of the cursor taking a transaction-scoped lock), so parallel workers queue and
    the first one migrates. Committed. Returns the versions applied."""
    applied = []
    conn.commit()                   # its own transaction, from its first statement:
    with conn.cursor() as cur:
        # READ COMMITTED (both databases speak it), whatever the role's default: a worker that
        # waited for the lock must see the version the one before it committed
        cur.execute("SET TRANSACTION ISOLATION LEVEL READ COMMITTED")
        lock(cur)
        for statement in dialect.create_schema(m):
            cur.execute(statement)
        cur.execute(dialect.exists_sql, (f"{m}.{dialect.ident('schema_version')}",))
        at = 0
        if cur.fetchone()[0]:
            cur.execute(f"SELECT coalesce(max(version), 0) FROM {m}.schema_version")
            at = int(cur.fetchone()[0])
        if at > VERSION:
            from ..errors import SchemaError
            raise SchemaError(f"the marker tables in {m} are at version {at}, newer than this so_luigi "
                              f"knows ({VERSION}): upgrade so_luigi, or set [target] marker_schema")
        for statement in statements(dialect, m, VERSION_TABLE) if at < VERSION else []:
            cur.execute(statement)
        for migration in MIGRATIONS:
            if migration.version <= at:
                continue
            for step in migration.steps:
                for statement in statements(dialect, m, step):
                    cur.execute(statement)
            cur.execute(f"INSERT INTO {m}.schema_version (version, what) VALUES (%s, %s)",
                        (migration.version, migration.what))
            applied.append(migration.version)
    conn.commit()
    return applied
