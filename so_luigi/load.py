"""The steps of a table, each one transaction in the destination with its marker, on any pair of
source and destination (``dialects.source`` / ``dialects.destination``, the protocols in
``dialects.base``):

* ``plan_table``:        describe the source table, cut its partitions, create the destination
                         table and store definition + plan + plan marker together;
* ``extract_partition``: bulk mode: write one key range as a file, then its manifest (no
                         transaction: the manifest is the target);
* ``load_partition``:    write one key range into the table and insert its ``loaded`` marker in
                         the same transaction: a killed load leaves neither rows nor marker;
* ``complete_table``:    build the key and indexes while count and checksum are compared with
                         the source, then (when they agree) the finishing statements and the
                         complete marker, again in one transaction;
* ``copy_at_once``:      a small table of one partition (tasks.CopyTables): the two steps above
                         in one transaction, both markers with it;
* ``copy_unplanned``:    small tables no process planned yet: each planned and copied as above,
                         all of them in one transaction.

Each step takes a transaction-scoped lock on its marker and re-checks it, so two runs racing
for the same step cannot both do it.
"""
import copy
import logging
import os
import time
from concurrent.futures import ThreadPoolExecutor

from . import bulk, faults, snapshot
from .config import bulk_settings, destination_schema, marker_schema, section, source_endpoint, target_endpoint
from .dialects import destination, source
from .dialects.base import NOT_COPIED, Slice, same_name
from .errors import SchemaError, Unmappable, VerificationError
from .planning import plan, rows_per_partition
from .state import markers
from .verify import judge, missing, table_figures

log = logging.getLogger("luigi-interface.so_luigi")  # shown wherever Luigi shows its own log


def endpoints(run_id=None):
    """(Source, Destination) as configured; the source read at ``run_id``'s snapshot, if it has one.
    The destination knows from the marker tables which of its tables so_luigi created."""
    dst = destination(target_endpoint())
    dst.owned = markers.owns
    return source(source_endpoint(), snapshot.of_run(run_id) if run_id else None), dst


# --- planning -----------------------------------------------------------------------------------

def discover(src, dst, wanted=None, overrides=None, conn=None, refused=None):
    """Describe and type-map every selected source table. ``conn``: an open source connection to
    use (left open), else one of its own. A table with a column the destination cannot take
    stops everything here, unless ``refused`` (a list) is given: then it is left out and
    (run name, why) appended there; the others go on (when none can, it stops)."""
    own = conn is None
    conn = src.connect() if own else conn
    try:
        names = src.find_tables(conn, wanted)
        if src.describes_many or not own or len(names) <= DESCRIBED_ALONE:
            tables = src.describe_all(conn, names)
        else:
            tables = _described_side_by_side(src, conn, names)
    finally:
        if own:
            conn.close()
    for table in tables:
        table.target_schema = destination_schema(table.schema, src.endpoint, dst.endpoint)
        for col in [c for c in table.columns if c.sequence and c.sequence.get("standalone")]:
            col.sequence["target_schema"] = destination_schema(col.sequence["schema"], src.endpoint, dst.endpoint)
    try:
        dst.map_types(tables, src, overrides)
        return tables
    except Unmappable:
        if refused is None:
            raise
    kept = []
    for table in tables:            # which ones, each said on its own
        try:
            dst.map_types([table], src, overrides)
            kept.append(table)
        except Unmappable as exc:
            refused.append((table.run_name, str(exc)))
    if not kept:
        raise Unmappable("no table can be copied: " + "; ".join(why for _, why in refused))
    return kept


# more tables than this, from a source whose catalog describes them one by one, are described
# by DESCRIBERS sessions side by side
DESCRIBED_ALONE = 16
DESCRIBERS = 4


def _described_side_by_side(src, conn, names):
    """The tables ``names`` described through ``conn`` and DESCRIBERS - 1 more sessions (each
    table's catalog queries are a few milliseconds of the source's time, and its cores are many),
    in their order."""
    shares = [names[i::DESCRIBERS] for i in range(DESCRIBERS)]

    def describe(share, own):
        session = src.session() if own else _borrowed(conn)
        with session as c:
            return [src.describe(c, n) for n in share]
    with ThreadPoolExecutor(max_workers=DESCRIBERS) as pool:
        done = list(pool.map(describe, shares, [i > 0 for i in range(DESCRIBERS)]))
    by_name = {n: t for share, tables in zip(shares, done) for n, t in zip(share, tables)}
    return [by_name[n] for n in names]


# why each kind of object the run does not carry is left out, for the report
NOT_CARRIED_WHY = {
    "partitioned table": "its partitions are copied as tables of their own; the partitioned table that "
                         "unites them is carried into PostgreSQL only",
}
NOT_YET = "so_luigi copies tables (rows, keys, indexes, constraints); this kind of object is not carried yet"


def carries_objects(src, dst):
    """Whether the run re-creates what the source's schemas hold besides their tables."""
    return src.dumps_schema and dst.restores_dumps


def note_other_objects(run_id, src, dst):
    """What the source's schemas hold besides their tables and the run does not carry, noted
    for the run's report (a run that carries them notes what it cannot as it goes)."""
    if carries_objects(src, dst):
        return []
    with src.session() as conn:
        found = src.other_objects(conn)
    with dst.session() as conn:
        markers.note_objects(conn, run_id, [(kind, name, NOT_CARRIED_WHY.get(kind, NOT_YET)) for kind, name in found])
    return found


def carry_objects(run_id, step):
    """PostgreSQL from PostgreSQL: what ``pg_dump --schema-only`` holds besides what so_luigi
    builds, at the run's snapshot: functions, sequences no column owns and the like "before"
    the tables are created; partitioned tables (their leaves attached), views, materialized
    views (refreshed), triggers, rules and policies "after" the rows, so no trigger fires on a
    copied row. One destination transaction with the step's marker, so a rerun never does it
    twice; what the destination refuses is rolled back alone and noted for the report. Returns
    how many objects were created, or None when the step was done before or has no place."""
    src, dst = endpoints(run_id)
    if not carries_objects(src, dst):
        return None
    with dst.session() as conn:
        cur = conn.cursor()
        markers.lock(cur, run_id, "objects", step)
        if markers.step_done(cur, run_id, f"objects {step}"):
            conn.rollback()
            return None
        with src.schema_dump(exclude=[marker_schema()]) as dump:
            entries = dump.step(step)
            refused = dump.carry(conn, entries, owners=section("target").owners)
            cur = conn.cursor()
            if step == "before":
                markers.note_objects_in(cur, run_id, [(kind.lower(), name, why)
                                                      for kind, name, why in dump.not_carried()])
        markers.add_objects(cur, run_id, [(kind.lower(), name, f"the destination refused it: {why}")
                                          for kind, name, why in refused])
        markers.mark_step(cur, run_id, f"objects {step}")
        faults.pause(f"objects-{step}")
        conn.commit()
    log.info("carried %d object(s) %s the rows%s", len(entries) - len(refused), step,
             f"; the destination refused {len(refused)}" if refused else "")
    return len(entries) - len(refused)


def cut(src, dst, table_name, chunk_rows, chunk_mb, table=None):
    """(definition, bytes, rows, rows per partition, key ranges) of a source table, as it is now."""
    with src.session() as conn:
        table = table or discover(src, dst, [table_name], conn=conn)[0]
        size, rows, bounds, step = src.measure(
            conn, table, lambda n, size: rows_per_partition(n, size, chunk_rows, chunk_mb), dst.cuts_by_position)
    return table, size, rows, step, plan(rows, bounds, step)


def preview_weights(run_id, table_name, chunk_rows, chunk_mb=0, table=None):
    """The partitions' expected MB as ``plan_table`` would cut them now, read from the source
    alone: what a dry pass (luigi-deps-tree) shows for a table no run has planned yet."""
    table, size, rows, step, ranges = cut(*endpoints(), table_name, chunk_rows, chunk_mb, table)
    per_row_mb = (size or 0) / max(rows, 1) / 1e6      # as markers.partition_weights weighs a stored plan
    last = rows - step * (len(ranges) - 1)
    return [int((step if i < len(ranges) - 1 else last) * per_row_mb) for i in range(len(ranges))]


def plan_table(run_id, table_name, chunk_rows, layout="plain", mode="streaming", unlogged=False,
               chunk_mb=0, table=None, target_conn=None):
    """Describe, partition and create one destination table; store it all with the plan marker.

    ``table``: its definition, when the caller has just discovered it; ``target_conn``: an open
    destination connection (not in a transaction) to plan through, left open. Each connection
    costs both servers a process start, so planning a table takes one per side.
    """
    src, dst = endpoints(run_id)
    table, size, row_count, step, ranges = cut(src, dst, table_name, chunk_rows, chunk_mb, table)
    dst.carry(table)
    table.layout = dst.layout(table, len(ranges), layout, mode)
    table.unlogged = unlogged
    session = _borrowed(target_conn) if target_conn is not None else dst.session()
    with session as conn:
        cur = conn.cursor()
        markers.lock(cur, run_id, table_name)
        if markers.is_planned(cur, run_id, table_name):
            conn.rollback()
            return False
        schema = dst.schema_of(table)
        if shares_objects(table) or (dst.endpoint.url.raw, schema) not in _schemas_made:
            markers.lock(cur, "schema", schema)     # tables are planned side by side
        dst.create(cur, run_id, table)
        markers.own(cur, dst.schema_of(table), table.name, run_id)
        markers.store_plan(cur, run_id, table, ranges, row_count, step, size)
        faults.pause("plan-commit")
        conn.commit()
    _schemas_made.add((dst.endpoint.url.raw, schema))
    log.info("planned %s: %d rows in %d partition(s), %s layout, into %s", table_name, row_count,
             len(ranges), table.layout, dst.dialect)
    return True


# (destination, schema) this process has created a table in (so the schema exists): planning
# into it again needs no lock unless the table creates objects other tables may share
_schemas_made = set()


def shares_objects(table):
    """Whether creating ``table`` creates what another table's creation might create at the same
    time (user-defined types, sequences of their own): done under the schema's lock."""
    return bool(table.types) or any(c.drawn_sequence for c in table.columns)


class _borrowed:
    """A connection someone else opened, as a session: rolled back on error, left open."""

    def __init__(self, conn):
        self.conn = conn

    def __enter__(self):
        return self.conn

    def __exit__(self, kind, exc, tb):
        if kind is not None:
            self.conn.rollback()


def ensure_planned(run_id, table_name, chunk_rows, layout, mode, unlogged=False, chunk_mb=0, table=None):
    """Expected MB of each of the table's partitions, planning it first if no process has yet.

    A table planned by an earlier run is first compared with the source as it is now: a copy
    never mixes partitions read before and after a change of the table's definition.
    ``table``: the source table's definition, when the caller has just discovered it.
    """
    src, dst = endpoints(run_id)
    with dst.session() as conn:
        try:
            planned, _ = markers.planned_table(conn, run_id, table_name)
        except SchemaError:
            planned = None
        conn.rollback()             # no transaction left open while the source is walked
        if planned is not None:
            changes = definition_changes(planned, table or discover(src, dst, [table_name])[0])
            if changes:
                raise SchemaError(
                    f"source table {planned.qualified} changed since run {run_id!r} planned it "
                    f"({'; '.join(changes)}): partitions read before and after cannot be mixed; "
                    f"`so-luigi reset --run-id {run_id} --tables {table_name}` to copy it afresh")
        else:
            plan_table(run_id, table_name, chunk_rows, layout, mode, unlogged, chunk_mb, table, conn)
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


# --- extracting and loading ---------------------------------------------------------------------

def extract_partition(run_id, table_name, partition, checksum=True):
    """Bulk mode: write one partition's rows as a file, then its manifest. Returns the manifest."""
    src, dst = endpoints(run_id)
    settings = bulk_settings()
    with dst.session() as conn:
        table, _ = markers.planned_table(conn, run_id, table_name)
        plan_id, lo, hi, _ = markers.partition_plan(conn, run_id, table_name, partition)
    fmt = bulk.file_format(settings, src, table)
    files = bulk.files_for(run_id, table_name, partition, settings, fmt)
    started = time.monotonic()

    def fill(fh):
        # a local file takes psycopg2's one write per row in C; its position is the size
        local = "://" not in files.data
        sink = fh if local else bulk.Counting(fh)
        rows, total, changed = src.extract(table, lo, hi, fmt, sink, checksum)
        faults.pause("extract-write")       # written, not yet under its final name
        return rows, total, fh.tell() if local else sink.bytes, changed
    rows, total, nbytes, changed = bulk.write_atomically(files.data, settings, fill)
    manifest = {"table": table_name, "partition": partition, "plan": plan_id, "lo": lo, "hi": hi, "snapshot": src.snapshot,
                "rows": rows, "bytes": nbytes, "changed": changed,
                "checksum": None if total is None else str(total), "file": os.path.basename(files.data),
                "format": fmt, "seconds": round(time.monotonic() - started, 3)}
    bulk.write_manifest(files, settings, manifest)
    return manifest


STALE = "stale"     # load_partition's answer for a partition loaded at a lost source snapshot


def load_partition(run_id, table_name, partition, buffer_mb, checksum=True, mode="streaming", progress=None):
    """Load one partition (streamed from the source, or from its bulk file); its rows and its
    marker commit together. Returns stats, None when it was already loaded, or STALE when it was
    loaded at a source snapshot since lost (recover.prove_partition proves it)."""
    if mode == "bulk" and not markers.marker_exists("loaded at any snapshot", run_id, table_name, partition):
        refresh_files(run_id, table_name, [partition], checksum)
    src, dst = endpoints(run_id)
    buffer_bytes = int(buffer_mb * 1024 * 1024)
    with dst.session() as conn:
        cur = conn.cursor()
        claimed = claim_partition(conn, cur, run_id, table_name, partition, progress)
        if claimed is None:
            return None
        if claimed == STALE:
            return STALE
        table, partitions, lo, hi = claimed
        started = time.monotonic()
        # a destination whose load might commit part of its rows counts attempts, committed
        retry = dst.counts_attempts and markers.count_attempt(run_id, table_name, partition) > 0
        watermark = src.watermark(table)      # before the read: a later sync's proof of no change
        part = Slice(run_id, table, partitions, partition, lo, hi, retry, progress,
                     monitor=markers.shared_connection, size=markers.planned_size(cur, run_id, table_name),
                     plan=markers.partition_plan(conn, run_id, table_name, partition), apart=dst.counts_attempts)
        written = dst.write(conn, cur, part, src, mode, buffer_bytes, checksum)
        _stored_all(table_name, partition, written)
        seconds = time.monotonic() - started
        first = markers.insert_loaded(cur, run_id, table_name, partition, written.rows, written.bytes, seconds,
                                      written.checksum, written.via, written.changed,
                                      part.plan[3] if mode == "bulk" and part.plan else src.snapshot)
        if watermark is not None:
            markers.record_proof(cur, run_id, table_name, partition, written.rows, watermark)
        faults.pause("load-commit")
        conn.commit()
    if first:
        log.info("%s partition %d: %s", table_name, partition, written.how)
    return {"rows": written.rows, "bytes": written.bytes, "seconds": seconds}


def load_table_files(run_id, table_name, buffer_mb, checksum=True, progress=None):
    """Bulk mode, a plain table of several partitions: every partition from its file in one
    destination transaction that empties the table first, so each COPY freezes its pages, with
    every partition's loaded marker. A table planned in the partitioned layout, or one whose
    partitions a run began loading one by one, goes on partition by partition. Returns stats, or
    None when nothing was left to load."""
    src, dst = endpoints(run_id)
    with dst.session() as conn:
        table, partitions = markers.planned_table(conn, run_id, table_name)
        cur = conn.cursor()
        states = markers.loaded_states(cur, run_id, table_name)
        conn.rollback()
        if table.layout == "plain" and not states and partitions > 1 and dst.bulk_files:
            refresh_files(run_id, table_name, range(partitions), checksum)
            stats = _load_files(conn, src, dst, run_id, table, partitions, int(buffer_mb * 1024 * 1024), progress)
            if stats is not None:
                return stats
    # partitions loaded at a lost source snapshot are proven by their own tasks, or the table's
    # (recover.complete_table)
    done = [load_partition(run_id, table_name, p, buffer_mb, checksum, "bulk", progress)
            for p in range(partitions) if p not in states]
    done = [d for d in done if d and d != STALE]
    if not done:
        return None
    return {"rows": sum(d["rows"] for d in done), "bytes": sum(d["bytes"] for d in done),
            "seconds": sum(d["seconds"] for d in done)}


def refresh_files(run_id, table_name, numbers, checksum=True):
    """Bulk files of the partitions ``numbers`` that were extracted when the scheduler looked but
    for another plan or at a source snapshot lost since: extracted again here, never loaded stale."""
    conn = markers.shared_connection()
    for p in numbers:
        path = bulk.files_for(run_id, table_name, p).manifest
        if not bulk.manifest_matches(path, lambda: markers.partition_plan(conn, run_id, table_name, p)):
            log.info("%s partition %d: its bulk file is not one of the partition as the run reads it now (another "
                     "plan, or a source snapshot since lost): extracted again", table_name, p)
            extract_partition(run_id, table_name, p, checksum)


def _load_files(conn, src, dst, run_id, table, partitions, buffer_bytes, progress):
    """load_table_files' one transaction, under every partition's lock (taken in order, as
    load_partition takes each); None (rolled back) when a partition got loaded meanwhile."""
    cur = conn.cursor()
    for p in range(partitions):
        markers.lock(cur, run_id, table.run_name, p)
    if any(markers.is_loaded(cur, run_id, table.run_name, p) for p in range(partitions)):
        conn.rollback()
        return None
    started = time.monotonic()
    size = markers.planned_size(cur, run_id, table.run_name)
    parts = []
    for p in range(partitions):
        lo, hi, _ = markers.partition_range(conn, run_id, table.run_name, p)
        parts.append(Slice(run_id, table, partitions, p, lo, hi, progress=progress, size=size,
                           plan=markers.partition_plan(conn, run_id, table.run_name, p)))
    watermark = src.watermark(table)
    written = dst.write_files(conn, cur, parts, buffer_bytes)
    for part, w in zip(parts, written):
        if w.source_rows != w.rows:
            raise VerificationError(f"{table.run_name} partition {part.number}: its file holds {w.source_rows} rows "
                                    f"but the destination stored {w.rows}")
    seconds = time.monotonic() - started
    first = False
    for part, w in zip(parts, written):
        first |= markers.insert_loaded(cur, run_id, table.run_name, part.number, w.rows, w.bytes, seconds / partitions,
                                       w.checksum, w.via, w.changed, part.plan[3] if part.plan else None)
        if watermark is not None:
            markers.record_proof(cur, run_id, table.run_name, part.number, w.rows, watermark)
    faults.pause("load-commit")
    conn.commit()
    if first:
        log.info("%s: %s", table.run_name, written[0].how)
    return {"rows": sum(w.rows for w in written), "bytes": sum(w.bytes for w in written), "seconds": seconds}


UNFROZEN_BYTES = 1 << 20

# (run_id, table) -> (source definition, bytes, expected rows) of a tiny table this process left
# for its CopyTables to plan as it copies it (tasks.ReplicateAll.unplanned_small): a table of the
# run that no marker names yet
unplanned = {}


def unplanned_names(run_id):
    return [name for run, name in unplanned if run == run_id]


def copy_at_once(run_id, table_name, verify, buffer_mb, progress=None):
    """A small table planned as one partition (tasks.CopyTables), copied in one destination
    transaction: its rows, their verification against the source, its key, indexes and
    sequences, its loaded marker and its complete marker commit together, so a kill anywhere
    leaves it untouched or done. The same steps as load_partition then complete_table, without
    the statements and sessions that keep those two apart (about half of a small table's cost).

    Returns its stats, or None where this does not apply: a destination that cannot
    (``copies_at_once``), a table finished alone (unlogged, partitioned), one with a marker
    already (loaded, maybe at a lost snapshot). The caller then takes the two steps."""
    src, dst = endpoints(run_id)
    if not dst.copies_at_once:
        return None
    with dst.session() as conn:
        cur = conn.cursor()
        table, partitions, rows, nbytes = markers.planned_table(conn, run_id, table_name, sizes=True)
        if partitions != 1 or table.unlogged or table.layout == "partitioned":
            conn.rollback()
            return None
        markers.lock(cur, run_id, table_name, 0)
        markers.lock(cur, run_id, table_name)
        if not markers.untouched(cur, run_id, table_name):
            conn.rollback()
            return None
        done = _copy_within(conn, cur, src, dst, run_id, table, rows, nbytes, verify, buffer_mb, progress)
        faults.pause("load-commit")
        conn.commit()
    return _copied(table_name, *done)


def copy_unplanned(run_id, found, verify, buffer_mb, layout, mode, progress_for=lambda name: None):
    """Small tables no process has planned yet, each copied as copy_at_once copies one, all in
    ONE destination transaction, every source read in one session at the run's snapshot; each
    table is created in the transaction that loads it (COPY FREEZE without a TRUNCATE) and its
    plan marker commits with its rows, verification, key, indexes and loaded and complete
    markers. A kill leaves every one of them untouched or done; a run resumes at the tables not
    complete.

    ``found``: [(source definition, bytes on disk, row estimate)] of tables the planner's
    statistics put within half a partition (tasks.ReplicateAll.unplanned_small); their plan is
    that one partition, and the estimate its expected rows (the verification counts them).
    Returns the names copied: the others (planned by another process meanwhile, or which this
    destination does not copy at once) are the caller's. Any error rolls them all back: the
    caller then copies them one by one, so the error names its table."""
    src, dst = endpoints(run_id)
    if not dst.copies_at_once:
        return []
    done, vias = [], set()
    with dst.session() as conn, src.pinned():
        cur = conn.cursor()
        marks = dst.deferred(cur)           # the markers' writes: one round trip before the commit
        names = sorted(t.run_name for t, _, _ in found)
        for name in names:          # in one order: two processes on the same tables queue, never deadlock
            markers.lock(marks, run_id, name)
        _flush(marks)
        planned = markers.planned_among(cur, run_id, names)
        absent = dst.absent(cur, [t for t, _, _ in found])
        for schema in sorted({dst.schema_of(t) for t, _, _ in found if t.run_name not in absent}):
            markers.lock(cur, "schema", schema)     # as plan_table: CREATE SCHEMA one at a time
        for table, nbytes, rows in found:
            if dst.rewrites(table):             # carry() rewrites its expressions: the caller's stays as found
                table = copy.deepcopy(table)
            dst.carry(table)
            table.layout = dst.layout(table, 1, layout, mode)
            if table.run_name in planned or table.layout == "partitioned":
                continue
            dst.create(cur, run_id, table, absent=table.run_name in absent)
            markers.own(marks, dst.schema_of(table), table.name, run_id)
            markers.store_plan(marks, run_id, table, plan(rows, [], rows), rows, rows, nbytes)
            done.append((table.run_name, _copy_within(conn, cur, src, dst, run_id, table, rows, nbytes, verify,
                                                      buffer_mb, progress_for(table.run_name), True, marks, vias)))
        _flush(marks)
        faults.pause("load-commit")
        conn.commit()
    for name, outcome in done:
        _copied(name, *outcome)
    return [name for name, _ in done]


def _flush(marks):
    if hasattr(marks, "flush"):
        marks.flush()


def _copy_within(conn, cur, src, dst, run_id, table, rows, nbytes, verify, buffer_mb, progress, fresh=False,
                 marks=None, vias=None):
    """copy_at_once's steps in ``conn``'s transaction, its commit left to the caller: (what was
    written, the verification, seconds, whether it was the run's first load that way).
    ``marks``: the cursor the markers are written through (``cur`` by default); ``vias``: the
    ways the caller's transaction loaded before (so those are not first)."""
    marks = cur if marks is None else marks
    if progress is not None:        # small on disk, maybe many rows: watched as any partition
        progress.expected = rows
    started = time.monotonic()
    watermark = src.watermark(table)
    # a tiny table's pages are not worth the TRUNCATE that FREEZE needs (a new file: as much as
    # its CREATE TABLE); one created in this transaction needs none
    part = Slice(run_id, table, 1, 0, progress=progress, monitor=markers.shared_connection, fresh=fresh,
                 unfrozen=not fresh and nbytes is not None and nbytes < UNFROZEN_BYTES)
    written = dst.write(conn, cur, part, src, "streaming", int(buffer_mb * 1024 * 1024), verify == "full")
    _stored_all(table.run_name, 0, written)
    seconds = time.monotonic() - started
    method = dst.checksum_method(src, table, conn) if verify == "full" else None
    target = (None, None) if dst.tallies(table, verify) else dst.figures_in(cur, table, verify, method)
    found = judge(verify, 1, 1, written.rows, written.checksum, src.figures(table, method), target)
    if found.problem:
        conn.rollback()
        _unverified(run_id, table.run_name, found)
    refused = list(table.not_carried)
    beside, after = dst.finish_steps(table, 1, src.sequence_positions(table))
    _finish(cur, beside + after, pause=False)
    if table.not_carried != refused:
        markers.update_definition(marks, run_id, table)
    first = None
    if vias is not None:
        first = written.via not in vias and markers.first_via(cur, run_id, written.via)
        vias.add(written.via)
    first = markers.insert_loaded(marks, run_id, table.run_name, 0, written.rows, written.bytes, seconds,
                                  written.checksum, written.via, written.changed, src.snapshot, first=first)
    if watermark is not None:
        markers.record_proof(marks, run_id, table.run_name, 0, written.rows, watermark)
    markers.mark_complete(marks, run_id, table.run_name, found.rows, written.bytes, found.source_checksum,
                          found.target_checksum, found.verdict, src.snapshot, time.monotonic() - started)
    return written, found, seconds, first


def _copied(table_name, written, found, seconds, first):
    """Logs a table copy_at_once committed; its stats."""
    if first:
        log.info("%s partition 0: %s", table_name, written.how)
    log.info("completed %s: %d rows, %s", table_name, found.rows, found.verdict)
    return {"rows": written.rows, "bytes": written.bytes, "seconds": seconds}


def _stored_all(table_name, partition, written):
    if written.source_rows != written.rows:
        raise VerificationError(f"{table_name} partition {partition}: read {written.source_rows} rows "
                                f"from the source but the destination stored {written.rows}")


def claim_partition(conn, cur, run_id, table_name, partition, progress=None):
    """(planned table, its partition count, lo, hi) of a partition, under the partition's lock in
    ``conn``'s transaction; None (the transaction rolled back) when another process, a second run
    on the same destination, loaded it meanwhile; "stale" (rolled back) when it was loaded at a
    source snapshot the run no longer reads at."""
    table, partitions = markers.planned_table(conn, run_id, table_name)
    if partition >= partitions:     # a table cut by heap position, recopied whole (recover)
        conn.rollback()
        return None
    lo, hi, expected = markers.partition_range(conn, run_id, table_name, partition)
    if progress is not None:
        progress.expected = expected
    markers.lock(cur, run_id, table_name, partition)
    state = markers.loaded_state(cur, run_id, table_name, partition)
    if state is not None:
        if state == "fresh":
            log.info("%s partition %d was loaded by another process meanwhile: skipped", table_name, partition)
        conn.rollback()
        return None if state == "fresh" else STALE
    return table, partitions, lo, hi


# --- completing ---------------------------------------------------------------------------------

def complete_table(run_id, table_name, verify="full"):
    """Verify against the source, then key, index, sequence, analyze and mark complete."""
    src, dst = endpoints(run_id)
    with dst.session() as conn:
        return verify_and_finish(conn, run_id, table_name, verify, table_figures(src, dst, conn, verify),
                                 lambda table, partitions: dst.finish_steps(table, partitions,
                                                                            src.sequence_positions(table)),
                                 lambda table: dst.prepare(conn, table), src.snapshot)


# --- the schema alone ------------------------------------------------------------------------------

def create_schema(run_id, tables):
    """--schema-only: every table (``tables``, discovered and type-mapped) created in the
    destination with its key, indexes, constraints and defaults, then the foreign keys among
    them; no rows, no markers but the run's. Each table in one transaction, replacing one an
    earlier so_luigi run made; refused for a run that has planned tables (it would drop them).
    Returns the lines of its report."""
    src, dst = endpoints(run_id)
    names = [t.run_name for t in tables]
    with dst.session() as conn:
        cur = conn.cursor()
        planned = [n for n in names if markers.is_planned(cur, run_id, n)]
        conn.rollback()
        if planned:
            raise SchemaError(f"run {run_id!r} has planned {', '.join(planned)}: --schema-only creates tables "
                              f"afresh; pass another --run-id, or `so-luigi reset --run-id {run_id}` first")
        built = 0
        for table in tables:
            dst.carry(table)
            cur = conn.cursor()
            markers.lock(cur, "schema", dst.schema_of(table))
            dst.create(cur, run_id, table)
            markers.own(cur, dst.schema_of(table), table.name, run_id)
            beside, after = dst.finish_steps(table, 1)
            _finish(cur, beside + after, pause=False)
            conn.commit()
            dst.prepare(conn, table)
            built += len(table.indexes) + len([c for c in table.constraints if c.kind != "foreign_key"])
        keys = 0
        for table in tables:
            for fk in table.foreign_keys:
                ref = table.referenced(fk, names)
                if ref is None:
                    table.not_carried.append([f"foreign key {fk.name}",
                                              f"references {fk.ref_schema}.{fk.ref_table}, {NOT_COPIED}"])
                    continue
                referenced = next(t for t in tables if t.run_name == ref)
                fk.ref_schema, fk.ref_table = dst.schema_of(referenced), referenced.name
                fk.ref_columns = [same_name(c, [col.name for col in referenced.columns]) or c for c in fk.ref_columns]
                cur = conn.cursor()
                dst.add_foreign_key(cur, table, fk)
                if fk.validated and dst.constraint_state(cur, table, fk.name) == "not valid":
                    dst.validate_constraint(cur, table, fk.name)
                conn.commit()
                keys += 1
    lines = [f"so_luigi run {run_id!r}, schema only: {len(tables)} tables created without rows; "
             f"{built} indexes and constraints besides the keys; {keys} foreign keys"]
    missing = [f"  {t.run_name}: {what}: {why}" for t in tables for what, why in t.not_carried]
    if missing:
        lines += [f"not carried ({len(missing)}):"] + missing
    return lines


# --- foreign keys ---------------------------------------------------------------------------------

def foreign_keys(run_id, names, unplanned=None):
    """The foreign keys of the run's planned tables ``names`` that the run can add: (table, key
    name, referenced table) for each key whose referenced table is copied too. ``unplanned``:
    {name: source definition} of those planned later, as they are copied."""
    _, dst = endpoints(run_id)
    found = []
    with dst.session() as conn:
        planned = {**(unplanned or {}), **markers.planned_tables(conn, run_id)}
        conn.rollback()
    for name in names:
        if name not in planned:
            raise markers.not_planned(run_id, name)
        found += [(name, fk.name, planned[name].referenced(fk, names)) for fk in planned[name].foreign_keys
                  if planned[name].referenced(fk, names)]
    return found


def leave_out_constraints(table):
    """--no-constraints: foreign keys and CHECK constraints stay out, listed as left out."""
    for con in [c for c in table.constraints if c.kind in ("foreign_key", "check")]:
        table.not_carried.append([f"{con.kind.replace('_', ' ')} {con.name} ({con.definition})",
                                  "left out: --no-constraints"])
    table.constraints = [c for c in table.constraints if c.kind not in ("foreign_key", "check")]


def _foreign_key(conn, run_id, table_name, name, references=None, dst=None):
    """The table and its key ``name``; with ``references`` (the referenced table as the run
    names it), the key's referenced table (in ``dst``) and columns spelled as that table's
    definition does."""
    table, _ = markers.planned_table(conn, run_id, table_name)
    fk = next(fk for fk in table.foreign_keys if fk.name == name)
    if references is not None:
        referenced, _ = markers.planned_table(conn, run_id, references)
        columns = [c.name for c in referenced.columns]
        fk.ref_schema, fk.ref_table = dst.schema_of(referenced), referenced.name
        fk.ref_columns = [same_name(c, columns) or c for c in fk.ref_columns]
    return table, fk


def foreign_key_done(run_id, table_name, name):
    """Whether the key is in the destination as the source has it: validated, unless the
    source's is NOT VALID."""
    _, dst = endpoints(run_id)
    with dst.session() as conn:
        table, fk = _foreign_key(conn, run_id, table_name, name)
        state = dst.constraint_state(conn.cursor(), table, name)
        conn.rollback()
    return state == ("valid" if fk.validated else "not valid")


def add_foreign_key(run_id, table_name, name, references):
    """Once both tables are complete: the key added NOT VALID (a brief lock, no scan, committed),
    then VALIDATE CONSTRAINT (one scan that lets writes in). A rerun after a failed validation
    finds the key there and validates it again."""
    _, dst = endpoints(run_id)
    faults.pause("foreign-key")
    with dst.session() as conn:
        cur = conn.cursor()
        markers.lock(cur, run_id, table_name, "foreign key", name)
        table, fk = _foreign_key(conn, run_id, table_name, name, references, dst)
        state = dst.constraint_state(cur, table, name)
        try:
            if state is None:
                dst.add_foreign_key(cur, table, fk)       # PostgreSQL: NOT VALID; SQL Server: checked
                conn.commit()
                cur = conn.cursor()
                markers.lock(cur, run_id, table_name, "foreign key", name)
                state = dst.constraint_state(cur, table, name)
            if fk.validated and state == "not valid":
                dst.validate_constraint(cur, table, name)
        except Exception as exc:
            if not dst.owns(exc):
                raise
            try:
                conn.rollback()
            except Exception:  # noqa: BLE001 -- a server that ended the transaction with the error
                pass
            if not _rows_break_it(exc):
                raise dst.translate(exc, "target") from None
            raise VerificationError(
                f"foreign key {name} of {table_name} does not hold in the destination: {_first_words(exc, dst)}; "
                "correct those rows there and rerun: the run resumes at this step") from None
        conn.commit()
    log.info("foreign key %s of %s: added%s", name, table_name, "" if fk.validated else " NOT VALID, as in the source")


def _rows_break_it(exc):
    """Whether a driver error says rows break a foreign key (SQLSTATE 23503; SQL Server's 547)."""
    if getattr(exc, "pgcode", None) == "23503":
        return True
    return "FOREIGN KEY" in str(exc).upper() and ("547" in str(exc) or "conflicted" in str(exc).lower()
                                                   or "violates" in str(exc).lower())


def _first_words(exc, dst):
    """What breaks a constraint, in one line: PostgreSQL's detail (the key), else the server's
    message as the destination words it."""
    diag = getattr(exc, "diag", None)
    said = getattr(diag, "message_detail", None) or str(dst.translate(exc, "target")).split(": ", 1)[-1]
    return " ".join(said.split()).rstrip(".")


def verify_and_finish(conn, run_id, table_name, verify, figures, finish_steps, prepare=None, snapshot=None):
    """Completing a table: all partitions loaded, counts (and checksums) equal on source,
    destination and markers, then the finishing statements and the complete marker in one
    transaction.

    ``figures(table)`` returns ((source count, checksum), (destination count, checksum)); a source
    checksum of None with full verification means the source's rows were checksummed as they were
    read (the sum is in the loaded markers); a destination count of None means the loaded markers'
    rows stand for it (``--verify tally``). ``finish_steps(table, partitions)`` returns two lists
    of statements: the first runs in the finishing transaction while ``figures`` is computed on
    other connections (statements that let readers in, so the destination's verification scan
    can share its pass over the heap with them), the second after the figures agree. When the
    first is empty (SQL Server, unlogged and partitioned tables) the figures come first.
    ``prepare(table)``, when given, runs (and commits) first. ``snapshot``: the source snapshot
    the figures are read at, recorded with the complete marker.
    """
    table, partitions = markers.planned_table(conn, run_id, table_name)
    cur = conn.cursor()
    loaded, rows, nbytes, streamed_sum = markers.loaded_totals(cur, run_id, table_name)
    conn.rollback()
    if loaded != partitions:        # before measuring anything: no figure can mend that
        raise VerificationError(f"{table_name}: {missing(partitions, loaded)}")
    if prepare is not None:
        prepare(table)
    refused = list(table.not_carried)
    beside, after = finish_steps(table, partitions)
    failed = None
    if beside:
        if not _claim_completion(conn, cur, run_id, table_name):
            return None
        with ThreadPoolExecutor(1, thread_name_prefix="so_luigi-verify") as pool:
            measured = pool.submit(figures, table)
            try:
                _finish(cur, beside)
            except Exception as exc:    # reported after the figures: differing counts say more
                conn.rollback()
                failed = exc
            source, target = measured.result()
    else:
        source, target = figures(table)
    found = judge(verify, partitions, loaded, rows, streamed_sum, source, target)
    if found.problem:
        conn.rollback()
        _unverified(run_id, table_name, found)
    if failed is not None:
        raise failed
    dst_count, src_sum, dst_sum, verdict = found.rows, found.source_checksum, found.target_checksum, found.verdict
    if not beside and not _claim_completion(conn, cur, run_id, table_name):
        return None
    _finish(cur, after, pause=not beside)
    if table.not_carried != refused:        # objects the destination refused while finishing
        markers.update_definition(cur, run_id, table)
    markers.mark_complete(cur, run_id, table_name, dst_count, nbytes, src_sum, dst_sum, verdict, snapshot)
    faults.pause("complete-commit")
    conn.commit()
    log.info("completed %s: %d rows, %s", table_name, dst_count, verdict)
    return verdict


def _unverified(run_id, table_name, found):
    reset_hint = f"`so-luigi reset --run-id {run_id} --tables {table_name}` and run again"
    raise VerificationError(f"{table_name}: {found.problem}" + (
        f"; the source may have changed since planning: {reset_hint}" if found.counts_differ else
        f": {reset_hint}; if it persists, report it with the table definition"))


def _claim_completion(conn, cur, run_id, table_name):
    """Take the table's marker lock in ``conn``'s transaction; False (rolled back) when another
    process completed the table meanwhile."""
    markers.lock(cur, run_id, table_name)
    if markers.is_complete(cur, run_id, table_name):
        conn.rollback()
        return False
    return True


def _finish(cur, statements, pause=True):
    """Run each statement (SQL text, or a function of the cursor for a step that reads first)."""
    for n, statement in enumerate(statements):
        if callable(statement):
            statement(cur)
        else:
            cur.execute(statement)
        if n == 0 and pause:
            faults.pause("index-build")
