"""Every statement on the marker tables in the destination database: the completion targets of
every so_luigi task (their luigi Targets are ``so_luigi.targets``), the run's plan, and what the
report, ``status``, snapshots and syncs read and write. Nothing else reads or writes them.

One schema (``[target] marker_schema``, default ``so_luigi``) holds:

* ``runs``          one row per run_id: which source it copies, into which schema;
* ``tables``        a table's plan marker (its definition as planned, partition count) and,
                    once ``completed_at`` is set, its complete marker with the verification figures;
* ``partitions``    the stored partition plan (key ranges), so a rerun reuses the same ranges;
* ``loaded``        one row per loaded partition, inserted in the same transaction as its rows;
* ``replications``  one row per finished ReplicateAll (run_id + table selection).

(and ``proofs``, ``syncs``, ``synced`` of re-syncs; ``schema_version``), all defined once in
``state.schema``. The destination is PostgreSQL or SQL Server; the queries are written once in the
SQL both speak (``%s`` parameters work in psycopg2 and pymssql alike) and the destination's dialect
(``flavor()``, its ``state`` module) holds the few pieces that differ: types, the clock,
transaction-scoped locks, elapsed seconds.
"""
import json
import os
import socket
import threading
import uuid

from ..config import marker_schema, target_endpoint
from ..dialects import destination
from ..dialects.base import Table
from . import schema

def flavor():
    """The destination's marker SQL where it differs between databases (its dialect's ``state``)."""
    return destination(target_endpoint()).state


def m():
    """The marker schema, quoted."""
    return flavor().ident(marker_schema())


def ensure_schema(conn):
    """The marker tables, created or migrated up to this release's version (state.schema);
    serialised so parallel workers never race on DDL. Committed."""
    f = flavor()
    return schema.ensure(conn, f, m(), lambda cur: f.lock(cur, "so_luigi.markers"))


def lock(cur, *parts):
    """Transaction-scoped lock on one marker (run, table, partition): concurrent runs queue here."""
    flavor().lock(cur, "\x1f".join(map(str, parts)))


def worker_id():
    """host:pid of the luigi process doing the work (Luigi runs each task in a forked child)."""
    import multiprocessing
    child = multiprocessing.current_process().name != "MainProcess"
    return f"{socket.gethostname()}:{os.getppid() if child else os.getpid()}"


# --- runs -----------------------------------------------------------------------------------

def check_run(cur, run_id, source_ep, target_ep):
    """True if run_id is registered for this source and schemas, False if not registered at all;
    a run_id begun from another source or into another schema is refused."""
    from ..errors import ConfigError
    cur.execute(f"SELECT source, source_schema, target_schema FROM {m()}.runs WHERE run_id = %s", (run_id,))
    row = cur.fetchone()
    now = (source_ep.url.redacted, source_ep.schema, target_ep.schema)
    if row is not None and tuple(row) != now:
        raise ConfigError(
            f"run_id {run_id!r} was started copying {row[0]} schema {row[1]} into schema {row[2]}, "
            f"not {now[0]} schema {now[1]} into {now[2]}: pass another --run-id, or "
            f"`so-luigi reset --run-id {run_id}` to start it afresh")
    return row is not None


def register_run(conn, run_id, source_ep, target_ep):
    """Record which source a run_id copies; refuse to continue a run_id begun elsewhere."""
    ensure_schema(conn)
    with conn.cursor() as cur:
        lock(cur, "run", run_id)
        if not check_run(cur, run_id, source_ep, target_ep):
            cur.execute(f"INSERT INTO {m()}.runs (run_id, source, source_schema, target_schema) "
                        "VALUES (%s, %s, %s, %s)",
                        (run_id, source_ep.url.redacted, source_ep.schema, target_ep.schema))
    conn.commit()


# --- plan -----------------------------------------------------------------------------------

def is_planned(cur, run_id, table):
    cur.execute(f"SELECT 1 FROM {m()}.tables WHERE run_id = %s AND table_name = %s", (run_id, table))
    return cur.fetchone() is not None


def planned_among(cur, run_id, tables):
    """Those of ``tables`` the run has planned (one query)."""
    if not tables:
        return set()
    cur.execute(f"SELECT table_name FROM {m()}.tables WHERE run_id = %s "
                f"AND table_name IN ({', '.join(['%s'] * len(tables))})", (run_id, *tables))
    return {row[0] for row in cur.fetchall()}


def store_plan(cur, run_id, table_def, ranges, source_rows, chunk_rows, source_bytes=None):
    """The table's definition and partitions, under a new plan id (bulk files record it)."""
    cur.execute(f"INSERT INTO {m()}.tables (run_id, table_name, definition, partitions, source_rows, "
                "source_bytes, plan_id) VALUES (%s, %s, %s, %s, %s, %s, %s)",
                (run_id, table_def.run_name, json.dumps(table_def.to_json()), len(ranges), source_rows, source_bytes,
                 uuid.uuid4().hex))
    last = source_rows - chunk_rows * (len(ranges) - 1)
    def bound(v):           # (integer, key values as JSON): one of them, or neither (unbounded)
        return (None, json.dumps(v)) if isinstance(v, list) else (v, None)
    cur.executemany(f"INSERT INTO {m()}.partitions (run_id, table_name, partition, lo, hi, rows, lo_key, hi_key) "
                    "VALUES (%s, %s, %s, %s, %s, %s, %s, %s)",
                    [(run_id, table_def.run_name, i, bound(lo)[0], bound(hi)[0], chunk_rows if i < len(ranges) - 1 else last,
                      bound(lo)[1], bound(hi)[1]) for i, (lo, hi) in enumerate(ranges)])


def update_definition(cur, run_id, table_def):
    """The stored definition, after completing the table learned what the destination refused
    (``not_carried``): the report reads it there."""
    cur.execute(f"UPDATE {m()}.tables SET definition = %s WHERE run_id = %s AND table_name = %s",
                (json.dumps(table_def.to_json()), run_id, table_def.run_name))


def _bounds(lo, hi, lo_key, hi_key):
    return (json.loads(lo_key) if lo_key else lo), (json.loads(hi_key) if hi_key else hi)


def planned_table(conn, run_id, table, sizes=False):
    """(Table definition, partition count) as stored when the table was planned; with
    ``sizes``, its source rows and bytes then too."""
    with conn.cursor() as cur:
        cur.execute(f"SELECT definition, partitions, source_rows, source_bytes FROM {m()}.tables "
                    "WHERE run_id = %s AND table_name = %s", (run_id, table))
        row = cur.fetchone()
    if row is None:
        raise not_planned(run_id, table)
    return (_definition(row[0]), *row[1:4]) if sizes else (_definition(row[0]), row[1])


def not_planned(run_id, table):
    """The error for a table the run has not planned."""
    from ..errors import SchemaError
    return SchemaError(f"table {table} is not planned in run {run_id!r}: run ReplicateAll")


def planned_tables(conn, run_id):
    """{table: Table definition} of every table the run planned, in one query."""
    with conn.cursor() as cur:
        cur.execute(f"SELECT table_name, definition FROM {m()}.tables WHERE run_id = %s", (run_id,))
        return {name: _definition(definition) for name, definition in cur.fetchall()}


def _definition(stored):
    return Table.from_json(json.loads(stored) if isinstance(stored, str) else stored)   # jsonb comes parsed


def partition_weights(conn, run_id, table):
    """Expected MB of each planned partition, from the table's size when planned (0 if unknown)."""
    with conn.cursor() as cur:
        cur.execute(f"SELECT CAST(p.rows AS float) * coalesce(t.source_bytes, 0) "
                    f"/ CASE WHEN t.source_rows > 1 THEN t.source_rows ELSE 1 END / 1e6 "
                    f"FROM {m()}.partitions p JOIN {m()}.tables t "
                    "ON t.run_id = p.run_id AND t.table_name = p.table_name "
                    "WHERE p.run_id = %s AND p.table_name = %s ORDER BY p.partition", (run_id, table))
        return [int(r[0]) for r in cur.fetchall()]


def partition_plan(conn, run_id, table, partition):
    """(plan id, lo, hi, the run's source snapshot) of a planned partition, or None when it is not
    planned (read only): what a bulk file must have been cut for to be loaded."""
    with conn.cursor() as cur:
        if not marker_table_exists(cur, "partitions"):
            return None
        cur.execute(f"SELECT t.plan_id, p.lo, p.hi, p.lo_key, p.hi_key, r.source_snapshot FROM {m()}.partitions p "
                    f"JOIN {m()}.tables t ON t.run_id = p.run_id AND t.table_name = p.table_name "
                    f"JOIN {m()}.runs r ON r.run_id = p.run_id "
                    "WHERE p.run_id = %s AND p.table_name = %s AND p.partition = %s", (run_id, table, partition))
        row = cur.fetchone()
    return None if row is None else (row[0], *_bounds(*row[1:5]), row[5])


def partition_range(conn, run_id, table, partition):
    """(lo, hi, expected rows) of a planned partition."""
    with conn.cursor() as cur:
        cur.execute(f"SELECT lo, hi, rows, lo_key, hi_key FROM {m()}.partitions WHERE run_id = %s AND table_name = %s "
                    "AND partition = %s", (run_id, table, partition))
        row = cur.fetchone()
    if row is None:
        from ..errors import SchemaError
        raise SchemaError(f"partition {partition} of {table} is not in the plan of run {run_id!r}")
    return (*_bounds(row[0], row[1], row[3], row[4]), row[2])


# --- loaded partitions ----------------------------------------------------------------------

def is_loaded(cur, run_id, table, partition):
    """Whether the partition is loaded, at the run's snapshot or an earlier one."""
    return loaded_state(cur, run_id, table, partition) is not None


def loaded_state(cur, run_id, table, partition):
    """None (not loaded), "fresh" (read or proven at the run's snapshot) or "stale" (read at a
    snapshot since lost: to be proven at the run's)."""
    cur.execute(f"SELECT CASE WHEN {AT_RUNS.format(x='x')} THEN 1 ELSE 0 END FROM {m()}.loaded x "
                f"JOIN {m()}.runs r ON r.run_id = x.run_id "
                "WHERE x.run_id = %s AND x.table_name = %s AND x.partition = %s", (run_id, table, partition))
    row = cur.fetchone()
    return None if row is None else ("fresh" if row[0] else "stale")


def loaded_states(cur, run_id, table):
    """{partition: "fresh" or "stale"} of the table's loaded partitions (see loaded_state), in one query."""
    cur.execute(f"SELECT x.partition, CASE WHEN {AT_RUNS.format(x='x')} THEN 1 ELSE 0 END FROM {m()}.loaded x "
                f"JOIN {m()}.runs r ON r.run_id = x.run_id WHERE x.run_id = %s AND x.table_name = %s", (run_id, table))
    return {int(p): "fresh" if at else "stale" for p, at in cur.fetchall()}


def mark_proven(cur, run_id, table, partition, snapshot, proven="same"):
    """A partition (None: every one of the table) is equal to the source at ``snapshot``
    (proven: a partition read at a lost snapshot; None: a sync's check, which does not count as
    a recovery)."""
    cur.execute(f"UPDATE {m()}.loaded SET snapshot = %s, proven = coalesce(%s, proven) "
                "WHERE run_id = %s AND table_name = %s" + ("" if partition is None else " AND partition = %s"),
                (snapshot, proven, run_id, table) + (() if partition is None else (partition,)))


def adopt_snapshot(cur, run_id, snapshot):
    """What the run read at its lost snapshot is taken as read at ``snapshot`` without proof
    (--not-consistent, or every table already complete: nothing more is read)."""
    cur.execute(f"UPDATE {m()}.loaded SET snapshot = %s WHERE run_id = %s", (snapshot, run_id))
    cur.execute(f"UPDATE {m()}.tables SET snapshot = %s WHERE run_id = %s AND completed_at IS NOT NULL",
                (snapshot, run_id))


def stale(conn, run_id, tables):
    """(partitions, complete tables) of ``tables`` read at a snapshot the run no longer reads at."""
    with conn.cursor() as cur:
        cur.execute(f"SELECT x.table_name FROM {m()}.loaded x JOIN {m()}.runs r ON r.run_id = x.run_id "
                    f"WHERE x.run_id = %s AND NOT {AT_RUNS.format(x='x')}", (run_id,))
        partitions = [n for (n,) in cur.fetchall() if n in tables]
        cur.execute(f"SELECT t.table_name FROM {m()}.tables t JOIN {m()}.runs r ON r.run_id = t.run_id "
                    f"WHERE t.run_id = %s AND t.completed_at IS NOT NULL AND NOT {AT_RUNS.format(x='t')}", (run_id,))
        complete = [n for (n,) in cur.fetchall() if n in tables]
    conn.rollback()
    return len(partitions), len(complete)


def proven_counts(conn, run_id):
    """(partitions proven equal at a later snapshot, partitions recopied at it)."""
    with conn.cursor() as cur:
        cur.execute(f"SELECT proven, count(*) FROM {m()}.loaded WHERE run_id = %s AND proven IS NOT NULL "
                    "GROUP BY proven", (run_id,))
        found = dict(cur.fetchall())
    return int(found.get("same", 0)), int(found.get("recopied", 0))


def count_attempt(run_id, table, partition):
    """Record, in its own committed transaction, that a load of this partition begins; returns
    how many began before. Called under the partition's lock (SQL Server destinations)."""
    with destination(target_endpoint()).session() as conn, conn.cursor() as cur:
        cur.execute(f"UPDATE {m()}.partitions SET attempts = attempts + 1 "
                    "WHERE run_id = %s AND table_name = %s AND partition = %s", (run_id, table, partition))
        cur.execute(f"SELECT attempts FROM {m()}.partitions WHERE run_id = %s AND table_name = %s "
                    "AND partition = %s", (run_id, table, partition))
        before = cur.fetchone()[0] - 1
        conn.commit()
    return before


def peak_rss_kb():
    """This process's peak resident memory (VmHWM; not getrusage, which survives exec)."""
    try:
        with open("/proc/self/status") as fh:
            return next(int(line.split()[1]) for line in fh if line.startswith("VmHWM"))
    except (OSError, StopIteration):
        return None


def first_via(cur, run_id, via):
    """Whether no partition of the run has been loaded ``via`` yet."""
    # not a count: that would read every marker of the run, once per table
    cur.execute(f"SELECT CASE WHEN EXISTS (SELECT 1 FROM {m()}.loaded WHERE run_id = %s AND via = %s) "
                "THEN 0 ELSE 1 END", (run_id, via))
    return cur.fetchone()[0] == 1


def insert_loaded(cur, run_id, table, partition, rows, nbytes, seconds, checksum, via, changed=0, snapshot=None,
                  proven=None, first=None):
    """The partition's marker (``snapshot``: the source snapshot its rows were read at);
    returns True when it is the run's first load that went ``via`` (``first``, when the caller
    knows: then ``cur`` only writes, and may be a Deferred one)."""
    if first is None:
        first = first_via(cur, run_id, via)
    cur.execute(f"INSERT INTO {m()}.loaded (run_id, table_name, partition, rows, bytes, seconds, "
                "checksum, via, changed, peak_kb, worker, snapshot, proven) "
                "VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
                (run_id, table, partition, rows, nbytes, seconds, checksum, via, changed, peak_rss_kb(),
                 worker_id(), snapshot, proven))
    return first


def loaded_totals(cur, run_id, table):
    """(partitions loaded, rows, bytes, summed source checksum or None)."""
    cur.execute(f"SELECT count(*), coalesce(sum(rows), 0), coalesce(sum(bytes), 0), "
                f"sum(checksum) FROM {m()}.loaded WHERE run_id = %s AND table_name = %s",
                (run_id, table))
    n, rows, nbytes, checksum = cur.fetchone()
    return n, int(rows), int(nbytes), (int(checksum) if checksum is not None else None)


# --- complete tables and runs ---------------------------------------------------------------

def untouched(cur, run_id, table):
    """Whether the table has no loaded marker and is not complete (one query)."""
    cur.execute(f"SELECT (SELECT count(*) FROM {m()}.loaded WHERE run_id = %s AND table_name = %s) + "
                f"(SELECT count(*) FROM {m()}.tables WHERE run_id = %s AND table_name = %s "
                "AND completed_at IS NOT NULL)", (run_id, table, run_id, table))
    return cur.fetchone()[0] == 0


def is_complete(cur, run_id, table):
    cur.execute(f"SELECT 1 FROM {m()}.tables WHERE run_id = %s AND table_name = %s "
                "AND completed_at IS NOT NULL", (run_id, table))
    return cur.fetchone() is not None


def mark_complete(cur, run_id, table, rows, nbytes, source_checksum, target_checksum, verdict, snapshot=None,
                  seconds=None):
    """``seconds``: the table's own work (a table copied at once); by default, since it was planned."""
    f = flavor()
    cur.execute(f"UPDATE {m()}.tables SET completed_at = {f.now}, rows = %s, bytes = %s, "
                f"seconds = coalesce(%s, {f.seconds_since('planned_at')}), "
                "source_checksum = %s, target_checksum = %s, verdict = %s, snapshot = %s "
                "WHERE run_id = %s AND table_name = %s AND completed_at IS NULL",
                (rows, nbytes, seconds, source_checksum, target_checksum, verdict, snapshot, run_id, table))
    if not getattr(cur, "deferred", False) and cur.rowcount != 1:
        raise RuntimeError(f"table {table} of run {run_id} was completed concurrently")


def mark_replicated(conn, run_id, tables_key):
    with conn.cursor() as cur:
        lock(cur, "replicated", run_id)
        cur.execute(f"SELECT count(*) FROM {m()}.replications WHERE run_id = %s AND tables = %s",
                    (run_id, tables_key))
        if cur.fetchone()[0] == 0:
            cur.execute(f"INSERT INTO {m()}.replications (run_id, tables) VALUES (%s, %s)", (run_id, tables_key))
    conn.commit()


def report_rows(conn, run_id, tables=None):
    """Per-table figures of a run, for the end-of-run summary and `so-luigi report`."""
    with conn.cursor() as cur:
        cur.execute(
            f"SELECT t.table_name, t.partitions, "
            f"       (SELECT count(*) FROM {m()}.loaded l WHERE l.run_id = t.run_id "
            f"        AND l.table_name = t.table_name), "
            f"       coalesce(t.rows, (SELECT sum(rows) FROM {m()}.loaded l WHERE l.run_id = t.run_id "
            f"        AND l.table_name = t.table_name)), "
            f"       coalesce(t.bytes, (SELECT sum(bytes) FROM {m()}.loaded l WHERE l.run_id = t.run_id "
            f"        AND l.table_name = t.table_name)), "
            f"       coalesce(t.seconds, {flavor().seconds_since('t.planned_at')}), "
            f"       t.verdict, CASE WHEN t.completed_at IS NULL THEN 0 ELSE 1 END, "
            f"       (SELECT coalesce(sum(changed), 0) FROM {m()}.loaded l WHERE l.run_id = t.run_id "
            f"        AND l.table_name = t.table_name) "
            f"FROM {m()}.tables t WHERE t.run_id = %s ORDER BY t.table_name", (run_id,))
        rows = cur.fetchall()
    if tables is not None:
        rows = [r for r in rows if r[0] in tables]
    return rows


def run_progress(conn, run_id, tables):
    """(partitions loaded in the run, how many of ``tables`` are not complete)."""
    with conn.cursor() as cur:
        cur.execute(f"SELECT count(*) FROM {m()}.loaded WHERE run_id = %s", (run_id,))
        loaded = cur.fetchone()[0]
        cur.execute(f"SELECT table_name FROM {m()}.tables WHERE run_id = %s AND completed_at IS NOT NULL", (run_id,))
        complete = {r[0] for r in cur.fetchall()}
    return int(loaded), len([t for t in tables if t not in complete])


def run_known(run_id):
    """Whether the run is registered (read only: no marker table is created)."""
    conn = shared_connection()
    with conn.cursor() as cur:
        if not marker_table_exists(cur, "runs"):
            return False
        cur.execute(f"SELECT 1 FROM {m()}.runs WHERE run_id = %s", (run_id,))
        return cur.fetchone() is not None


def source_reading(conn, run_id):
    """(the source snapshot the run reads at, how it reads its source in words): (None, None)
    before it was decided (so_luigi.snapshot)."""
    with conn.cursor() as cur:
        cur.execute(f"SELECT source_snapshot, source_read FROM {m()}.runs WHERE run_id = %s", (run_id,))
        row = cur.fetchone()
    return (row[0], row[1]) if row else (None, None)


def reset(conn, run_id, tables=None):
    """Forget a run (or some of its tables) so the next run copies them afresh."""
    with conn.cursor() as cur:
        if tables:
            names = ", ".join(["%s"] * len(tables))
            for name in ("loaded", "partitions", "tables", "synced", "proofs"):
                if marker_table_exists(cur, name):
                    cur.execute(f"DELETE FROM {m()}.{name} WHERE run_id = %s AND table_name IN ({names})",
                                (run_id, *tables))
            cur.execute(f"DELETE FROM {m()}.replications WHERE run_id = %s", (run_id,))
        else:
            for name in ("loaded", "partitions", "tables", "replications", "synced", "proofs", "syncs", "objects",
                         "steps", "runs"):
                if marker_table_exists(cur, name):
                    cur.execute(f"DELETE FROM {m()}.{name} WHERE run_id = %s", (run_id,))
    conn.commit()


# --- re-syncs (so_luigi.sync) ------------------------------------------------------------------

def unfinished_sync(cur, run_id):
    """(generation, pass, source snapshot) of the run's sync that has not finished, or None."""
    cur.execute(f"SELECT generation, pass, source_snapshot FROM {m()}.syncs WHERE run_id = %s "
                "AND finished_at IS NULL ORDER BY generation DESC", (run_id,))
    row = cur.fetchone()
    return None if row is None else (int(row[0]), int(row[1]), row[2])


def start_sync(cur, run_id, snapshot):
    """A new sync of the run: its generation (1 for the first)."""
    cur.execute(f"SELECT coalesce(max(generation), 0) + 1 FROM {m()}.syncs WHERE run_id = %s", (run_id,))
    generation = int(cur.fetchone()[0])
    cur.execute(f"INSERT INTO {m()}.syncs (run_id, generation, pass, source_snapshot) VALUES (%s, %s, 1, %s)",
                (run_id, generation, snapshot))
    return generation


def new_sync_pass(cur, run_id, generation, snapshot):
    """The sync begins again from ``snapshot``: steps done at the old one no longer count."""
    cur.execute(f"UPDATE {m()}.syncs SET pass = pass + 1, source_snapshot = %s WHERE run_id = %s "
                "AND generation = %s", (snapshot, run_id, generation))


def is_synced(cur, run_id, generation, table, item, any_pass=False):
    """Whether the sync's step ``item`` of ``table`` is done (in its current pass, unless ``any_pass``)."""
    cur.execute(f"SELECT 1 FROM {m()}.synced s JOIN {m()}.syncs g ON g.run_id = s.run_id "
                "AND g.generation = s.generation WHERE s.run_id = %s AND s.generation = %s "
                "AND s.table_name = %s AND s.item = %s" + ("" if any_pass else " AND s.pass = g.pass"),
                (run_id, generation, table, item))
    return cur.fetchone() is not None


def insert_synced(cur, run_id, generation, table, item, outcome, proof=None, rows=None, changes=(0, 0, 0),
                  seconds=0.0, checksum=None):
    """A done step of the sync, in its current pass; ``changes``: rows (inserted, updated, deleted);
    ``checksum``: a range's, found the same on both sides."""
    cur.execute(f"INSERT INTO {m()}.synced (run_id, generation, pass, table_name, item, outcome, proof, rows, "
                "inserted, updated, deleted, seconds, checksum) "
                f"SELECT run_id, generation, pass, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s FROM {m()}.syncs "
                "WHERE run_id = %s AND generation = %s",
                (table, item, outcome, proof, rows, *changes, seconds, checksum, run_id, generation))


def synced_steps(cur, run_id, generation, table):
    """{item: (outcome, rows, checksum)} of the table's steps in the sync's current pass."""
    cur.execute(f"SELECT s.item, s.outcome, s.rows, s.checksum FROM {m()}.synced s JOIN {m()}.syncs g "
                "ON g.run_id = s.run_id AND g.generation = s.generation AND g.pass = s.pass "
                "WHERE s.run_id = %s AND s.generation = %s AND s.table_name = %s", (run_id, generation, table))
    return {item: (outcome, rows, None if checksum is None else int(checksum))
            for item, outcome, rows, checksum in cur.fetchall()}


def partition_ranges(conn, run_id, table):
    """[(lo, hi)] of the table's planned partitions, in order."""
    with conn.cursor() as cur:
        cur.execute(f"SELECT lo, hi, lo_key, hi_key FROM {m()}.partitions WHERE run_id = %s AND table_name = %s "
                    "ORDER BY partition", (run_id, table))
        return [_bounds(*row) for row in cur.fetchall()]


def forget_synced_partitions(cur, run_id, generation, table):
    """The table's partitions are checked again, scan and all (its verification after the sync failed)."""
    cur.execute(f"DELETE FROM {m()}.synced WHERE run_id = %s AND generation = %s AND table_name = %s "
                "AND (item LIKE 'partition %%' OR item LIKE 'scan%%')", (run_id, generation, table))


def finish_sync(cur, run_id, generation):
    cur.execute(f"UPDATE {m()}.syncs SET finished_at = {flavor().now} WHERE run_id = %s AND generation = %s "
                "AND finished_at IS NULL", (run_id, generation))


def sync_figures(conn, run_id, generation):
    """{table: {item kind: figures}} of a sync, every pass: per table (partitions checked in the
    last pass, partitions recopied, inserted, updated, deleted, seconds of its partition steps,
    proofs used, the table step's outcome)."""
    with conn.cursor() as cur:
        cur.execute(f"SELECT s.table_name, s.item, s.outcome, s.proof, s.inserted, s.updated, s.deleted, s.seconds, "
                    f"CASE WHEN s.pass = g.pass THEN 1 ELSE 0 END, s.rows FROM {m()}.synced s JOIN {m()}.syncs g "
                    "ON g.run_id = s.run_id AND g.generation = s.generation "
                    "WHERE s.run_id = %s AND s.generation = %s ORDER BY s.table_name, s.pass", (run_id, generation))
        rows = cur.fetchall()
    out = {}
    for table, item, outcome, proof, ins, upd, dele, seconds, current, nrows in rows:
        t = out.setdefault(table, {"checked": 0, "recopied": 0, "inserted": 0, "updated": 0, "deleted": 0,
                                   "seconds": 0.0, "proofs": set(), "verdict": None, "split": 0})
        if item.startswith("partition "):
            t["checked"] += int(current)
            t["recopied"] += outcome == "recopied"
            t["proofs"].add(proof)
            t["inserted"] += int(ins)
            t["updated"] += int(upd)
            t["deleted"] += int(dele)
            t["seconds"] += float(seconds)
        elif item == "plan":
            t["split"] = int(nrows or 0)      # new partitions planned past the old last key
        elif item in ("table", "scan") and current:
            t["verdict"] = outcome if item == "table" else t["verdict"]
            t["seconds"] += float(seconds)
    return out


def partition_step(cur, run_id, table):
    """Rows per partition of the table's plan (its first partition's)."""
    cur.execute(f"SELECT rows FROM {m()}.partitions WHERE run_id = %s AND table_name = %s AND partition = 0",
                (run_id, table))
    return int(cur.fetchone()[0])


def split_last(cur, run_id, table, last, top, ranges, sizes):
    """The plan's open last range closed at ``top``; ``ranges`` (integer keys) planned after it."""
    cur.execute(f"UPDATE {m()}.partitions SET hi = %s WHERE run_id = %s AND table_name = %s AND partition = %s",
                (top, run_id, table, last))
    cur.executemany(f"INSERT INTO {m()}.partitions (run_id, table_name, partition, lo, hi, rows) "
                    "VALUES (%s, %s, %s, %s, %s, %s)",
                    [(run_id, table, last + 1 + i, lo, hi, n) for i, ((lo, hi), n) in enumerate(zip(ranges, sizes))])
    cur.execute(f"UPDATE {m()}.tables SET partitions = %s WHERE run_id = %s AND table_name = %s",
                (last + 1 + len(ranges), run_id, table))
    cur.execute(f"DELETE FROM {m()}.proofs WHERE run_id = %s AND table_name = %s AND partition = %s",
                (run_id, table, last))


def collapse_partitions(cur, run_id, table, rows):
    """A table recopied whole: one partition, of every row, replaces its plan (and markers)."""
    for name in ("loaded", "proofs", "partitions"):
        cur.execute(f"DELETE FROM {m()}.{name} WHERE run_id = %s AND table_name = %s", (run_id, table))
    cur.execute(f"INSERT INTO {m()}.partitions (run_id, table_name, partition, lo, hi, rows) "
                "VALUES (%s, %s, 0, NULL, NULL, %s)", (run_id, table, rows))
    cur.execute(f"UPDATE {m()}.tables SET partitions = 1 WHERE run_id = %s AND table_name = %s", (run_id, table))


def update_figures(cur, run_id, table, rows, nbytes, source_checksum, target_checksum, verdict, snapshot=None):
    """A synced (or proven) table's figures, as its verification at ``snapshot`` found them."""
    cur.execute(f"UPDATE {m()}.tables SET rows = %s, bytes = %s, source_checksum = %s, target_checksum = %s, "
                "verdict = %s, snapshot = %s WHERE run_id = %s AND table_name = %s",
                (rows, nbytes, source_checksum, target_checksum, verdict, snapshot, run_id, table))


def replace_loaded(cur, run_id, table, partition, rows, nbytes, seconds, checksum, via, changed=0, snapshot=None,
                   proven=None):
    """A recopied partition's marker, in its recopy's transaction."""
    cur.execute(f"DELETE FROM {m()}.loaded WHERE run_id = %s AND table_name = %s AND partition = %s",
                (run_id, table, partition))
    insert_loaded(cur, run_id, table, partition, rows, nbytes, seconds, checksum, via, changed, snapshot, proven)


def proof(cur, run_id, table, partition):
    """(rows, rowversion watermark) recorded for a partition when it was last read, or None."""
    cur.execute(f"SELECT rows, watermark FROM {m()}.proofs WHERE run_id = %s AND table_name = %s AND partition = %s",
                (run_id, table, partition))
    row = cur.fetchone()
    return None if row is None else (int(row[0]), int(row[1]))


def record_proof(cur, run_id, table, partition, rows, watermark):
    cur.execute(f"DELETE FROM {m()}.proofs WHERE run_id = %s AND table_name = %s AND partition = %s",
                (run_id, table, partition))
    if watermark is not None:
        cur.execute(f"INSERT INTO {m()}.proofs (run_id, table_name, partition, rows, watermark) "
                    "VALUES (%s, %s, %s, %s, %s)", (run_id, table, partition, rows, watermark))


# --- the luigi Target -----------------------------------------------------------------------

_local = threading.local()


def shared_connection():
    """This thread's autocommit destination connection for marker checks and progress queries,
    opened on first use (a forked worker, or another thread, opens its own: a pymssql
    connection used by two threads at once hangs)."""
    conn, f = getattr(_local, "conn", None), destination(target_endpoint())
    owner = (os.getpid(), str(f.endpoint.url.raw))
    if getattr(_local, "owner", None) != owner or conn is None or getattr(conn, "closed", False):
        _local.conn, _local.owner = f.connect(autocommit=True), owner
    return _local.conn


_present = set()    # (pid, marker table) the catalog has shown to exist: tables are never dropped


def marker_table_exists(cur, name):
    """Whether marker table ``name`` exists, asked of the destination's catalog (never inferred
    from an error, whose number and wording differ between servers)."""
    qualified = f"{m()}.{flavor().ident(name)}"
    key = (os.getpid(), target_endpoint().url.raw, qualified)
    if key not in _present:
        cur.execute(flavor().exists_sql, (qualified,))
        if not cur.fetchone()[0]:
            return False
        _present.add(key)
    return True


# --- what the source holds besides its tables -----------------------------------------------------

def note_objects(conn, run_id, found):
    """The run's list of source objects it does not carry, [(kind, name, why)], as the source
    has them now (replacing the last list, but for the tables left out: note_tables_left_out);
    committed."""
    with conn.cursor() as cur:
        lock(cur, "objects", run_id)
        note_objects_in(cur, run_id, found)
    conn.commit()


def note_objects_in(cur, run_id, found):
    """note_objects in the caller's transaction (the caller holds the run's step lock)."""
    cur.execute(f"DELETE FROM {m()}.objects WHERE run_id = %s AND kind <> 'table'", (run_id,))
    add_objects(cur, run_id, found)


def note_tables_left_out(conn, run_id, left_out):
    """The source tables the run leaves out, [(name, why)], as found at this scheduling
    (replacing the last list); committed."""
    with conn.cursor() as cur:
        lock(cur, "objects", run_id)
        cur.execute(f"DELETE FROM {m()}.objects WHERE run_id = %s AND kind = 'table'", (run_id,))
        add_objects(cur, run_id, [("table", name, why) for name, why in left_out])
    conn.commit()


def add_objects(cur, run_id, found):
    """More source objects the run does not carry, [(kind, name, why)], in the caller's transaction."""
    if found:
        cur.executemany(f"INSERT INTO {m()}.objects (run_id, kind, name, why) VALUES (%s, %s, %s, %s)",
                        [(run_id, *row) for row in found])


def step_done(cur, run_id, step):
    cur.execute(f"SELECT 1 FROM {m()}.steps WHERE run_id = %s AND step = %s", (run_id, step))
    return cur.fetchone() is not None


def mark_step(cur, run_id, step):
    cur.execute(f"INSERT INTO {m()}.steps (run_id, step) VALUES (%s, %s)", (run_id, step))


COPIED = "every table copied"     # a run that ended not complete (objects not carried) read all it needs


def mark_copied(cur, run_id):
    """The run read everything it copies, though the copy is not complete: its snapshot may go."""
    lock(cur, run_id, "objects", COPIED)
    if not step_done(cur, run_id, COPIED):
        mark_step(cur, run_id, COPIED)


def objects(conn, run_id):
    """[(kind, name, why)] the run noted (note_objects), by kind and name."""
    with conn.cursor() as cur:
        if not marker_table_exists(cur, "objects"):
            return []
        cur.execute(f"SELECT kind, name, why FROM {m()}.objects WHERE run_id = %s ORDER BY kind, name", (run_id,))
        return [tuple(r) for r in cur.fetchall()]


# --- the destination tables so_luigi created ------------------------------------------------------

def own(cur, schema, table, run_id):
    """``schema.table`` is so_luigi's, created for ``run_id`` (in the transaction creating it)."""
    cur.execute(f"DELETE FROM {m()}.owned WHERE schema_name = %s AND table_name = %s", (schema, table))
    cur.execute(f"INSERT INTO {m()}.owned (schema_name, table_name, run_id) VALUES (%s, %s, %s)",
                (schema, table, run_id))


def owns(cur, schema, table):
    """Whether so_luigi created ``schema.table`` (Destination.owned: it may replace or drop it)."""
    if not marker_table_exists(cur, "owned"):
        return False
    cur.execute(f"SELECT 1 FROM {m()}.owned WHERE schema_name = %s AND table_name = %s", (schema, table))
    return cur.fetchone() is not None


def disown(cur, places):
    """The tables [(schema, table)] were dropped."""
    for where, table in places:
        cur.execute(f"DELETE FROM {m()}.owned WHERE schema_name = %s AND table_name = %s", (where, table))


# --- completion targets (so_luigi.targets) ----------------------------------------------------------

# a marker row ``x`` read at the snapshot its run reads at now (or where there are none: a source
# that exports no snapshot, a row of a release before snapshots were recorded)
AT_RUNS = "({x}.snapshot IS NULL OR r.source_snapshot IS NULL OR {x}.snapshot = r.source_snapshot)"

EXISTS = {
    # read (or proven) at the run's snapshot: one read at a snapshot since lost is not done
    "complete": ("tables", "SELECT 1 FROM {m}.tables t JOIN {m}.runs r ON r.run_id = t.run_id "
                           "WHERE t.run_id = %s AND t.table_name = %s AND t.completed_at IS NOT NULL AND " + AT_RUNS.format(x="t")),
    "loaded": ("loaded", "SELECT 1 FROM {m}.loaded x JOIN {m}.runs r ON r.run_id = x.run_id "
                         "WHERE x.run_id = %s AND x.table_name = %s AND x.partition = %s AND " + AT_RUNS.format(x="x")),
    "loaded at any snapshot": ("loaded", "SELECT 1 FROM {m}.loaded WHERE run_id = %s AND table_name = %s "
                                         "AND partition = %s"),
    "step": ("steps", "SELECT 1 FROM {m}.steps WHERE run_id = %s AND step = %s"),
    "replicated": ("replications", "SELECT 1 FROM {m}.replications WHERE run_id = %s AND tables = %s"),
    # a step of a sync (run_id, generation, table, item), done in the sync's current pass
    "synced": ("synced", "SELECT 1 FROM {m}.synced s JOIN {m}.syncs g ON g.run_id = s.run_id "
                         "AND g.generation = s.generation AND g.pass = s.pass "
                         "WHERE s.run_id = %s AND s.generation = %s AND s.table_name = %s AND s.item = %s"),
}


def marker_exists(kind, *key):
    """Whether the marker ``kind`` ('loaded', 'complete', 'replicated' or 'synced') of ``key``
    is there: one indexed lookup through this thread's shared connection (reopened once after a
    server restart). A marker table not created yet means nothing exists yet."""
    table, query = EXISTS[kind]

    def ask(cur):
        cur.execute(query.format(m=m()), key)
        return cur.fetchone() is not None
    return _on_shared(table, False, ask)


def _on_shared(table, absent, ask):
    """``ask(cursor)`` through this thread's shared connection, reopened once after a server
    restart; ``absent`` when the marker table ``table`` is not created yet."""
    for attempt in (1, 2):
        conn = shared_connection()
        try:
            with conn.cursor() as cur:
                if not marker_table_exists(cur, table):
                    return absent
                return ask(cur)
        except flavor().lost:
            _local.conn = None            # a server restart: reconnect once
            if attempt == 2:
                raise


def not_complete(run_id, tables):
    """Those of ``tables`` not complete at the run's snapshot (as marker_exists('complete') asks
    of one), in their order: one query through this thread's shared connection."""
    if not tables:
        return []
    query = (f"SELECT t.table_name FROM {m()}.tables t JOIN {m()}.runs r ON r.run_id = t.run_id "
             f"WHERE t.run_id = %s AND t.table_name IN ({', '.join(['%s'] * len(tables))}) "
             "AND t.completed_at IS NOT NULL AND " + AT_RUNS.format(x="t"))

    def ask(cur):
        cur.execute(query, (run_id, *tables))
        done = {row[0] for row in cur.fetchall()}
        return [t for t in tables if t not in done]
    return _on_shared("tables", list(tables), ask)


# --- the run's source snapshot (so_luigi.snapshot) ---------------------------------------------

def record_reading(conn, run_id, snapshot, consistency):
    """The snapshot ``run_id`` reads its source at, and how it reads it in words; committed."""
    cur = conn.cursor()
    cur.execute(f"UPDATE {m()}.runs SET source_snapshot = %s, source_read = %s, seen_at = {flavor().now} "
                "WHERE run_id = %s", (snapshot, consistency, run_id))
    conn.commit()


def mark_seen(cur, run_id):
    """A process of the run is alive now (autocommit)."""
    cur.execute(f"UPDATE {m()}.runs SET seen_at = {flavor().now} WHERE run_id = %s", (run_id,))


def holder_view(cur, run_id, snapshot):
    """What a snapshot holder needs to know: (the snapshot the run reads at now, seconds since a
    process of the run was last seen, whether the run was replicated, whether an unfinished sync
    reads at ``snapshot``); None when the run is not registered."""
    f = flavor()
    cur.execute(f"SELECT source_snapshot, {f.seconds_since('seen_at')} FROM {m()}.runs WHERE run_id = %s",
                (run_id,))
    row = cur.fetchone()
    if row is None:
        return None
    cur.execute(f"SELECT count(*) FROM {m()}.replications WHERE run_id = %s", (run_id,))
    replicated = cur.fetchone()[0] > 0
    if not replicated and marker_table_exists(cur, "steps"):   # every table copied, the copy incomplete
        replicated = step_done(cur, run_id, COPIED)
    cur.execute(f"SELECT count(*) FROM {m()}.syncs WHERE run_id = %s AND finished_at IS NULL "
                "AND source_snapshot = %s", (run_id, snapshot))
    syncing = cur.fetchone()[0] > 0
    return row[0], (None if row[1] is None else float(row[1])), replicated, syncing


# --- small questions of the tasks, the CLI and the report --------------------------------------

def is_replicated(cur, run_id):
    """Whether any ReplicateAll of the run finished."""
    cur.execute(f"SELECT count(*) FROM {m()}.replications WHERE run_id = %s", (run_id,))
    return cur.fetchone()[0] > 0


def next_generation(cur, run_id):
    """The generation a new sync of the run would take."""
    cur.execute(f"SELECT coalesce(max(generation), 0) + 1 FROM {m()}.syncs WHERE run_id = %s", (run_id,))
    return int(cur.fetchone()[0])


def planned_names(cur, run_id):
    """Names of the tables the run planned."""
    cur.execute(f"SELECT table_name FROM {m()}.tables WHERE run_id = %s", (run_id,))
    return [r[0] for r in cur.fetchall()]


def planned_size(cur, run_id, table):
    """(source rows, source bytes) of a table when it was planned."""
    cur.execute(f"SELECT source_rows, source_bytes FROM {m()}.tables WHERE run_id = %s AND table_name = %s",
                (run_id, table))
    return cur.fetchone()


STATUS_SQL = """
SELECT t.table_name, t.partitions, t.source_rows, CASE WHEN t.completed_at IS NULL THEN 0 ELSE 1 END,
       t.verdict, count(l.partition), coalesce(sum(l.rows), 0), coalesce(sum(l.bytes), 0),
       {elapsed}, coalesce(t.seconds, 0)
FROM {m}.tables t
LEFT JOIN {m}.loaded l ON l.run_id = t.run_id AND l.table_name = t.table_name
WHERE t.run_id = %s
GROUP BY t.table_name, t.partitions, t.source_rows, t.completed_at, t.verdict, t.planned_at, t.seconds
ORDER BY t.table_name
"""


def status_rows(cur, run_id):
    """Per table of the run: (name, partitions, source rows, complete, verdict, partitions loaded,
    rows loaded, bytes loaded, seconds since its load began, seconds it took)."""
    f = flavor()
    cur.execute(STATUS_SQL.format(m=m(), elapsed=f.seconds_since(f.load_started)), (run_id,))
    return cur.fetchall()


# --- dumps loaded into a source database (so_luigi.dump) -------------------------------------------

def dump_loaded(db, key):
    """Whether the dump of fingerprint ``key`` was loaded into the schema of ``db`` (a Destination
    over the database the dump was loaded into)."""
    f, q = db.state, f"{db.state.ident(marker_schema())}.{db.state.ident('dumps')}"
    conn = db.connect(autocommit=True)
    try:
        cur = conn.cursor()
        cur.execute(f.exists_sql, (q,))
        if not cur.fetchone()[0]:
            return False
        cur.execute(f"SELECT 1 FROM {q} WHERE schema_name = %s AND fingerprint = %s", (db.schema, key))
        return cur.fetchone() is not None
    finally:
        conn.close()


def mark_dump(db, key, rows):
    """The dump of fingerprint ``key`` is what the schema of ``db`` now holds."""
    f, mq = db.state, db.state.ident(marker_schema())
    conn = db.connect(autocommit=True)
    try:
        cur = conn.cursor()
        for statement in f.create_schema(mq) + schema.statements(f, mq, schema.DUMPS_TABLE):
            cur.execute(statement)
        cur.execute(f"DELETE FROM {mq}.dumps WHERE schema_name = %s", (db.schema,))
        cur.execute(f"INSERT INTO {mq}.dumps (schema_name, fingerprint, rows) VALUES (%s, %s, %s)",
                    (db.schema, key, rows))
    finally:
        conn.close()
