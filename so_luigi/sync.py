"""Re-sync: bring a finished copy up to date by recopying only the partitions that changed.

``ReplicateAll --sync`` runs one *generation* of a run's syncs (``markers`` tables ``syncs`` and
``synced``), with these steps, each one destination transaction with its marker:

* ``begin``:          the generation (a new one, or the unfinished one a killed sync left), read at
                      a new source snapshot; a generation whose snapshot is gone begins a new
                      *pass* from a new one, in which every step is done again;
* ``plan``:           once per table: rows past the old last key fill the open last range up
                      to the plan's step, then become new partitions of that step;
* ``sync_partition``: the source's and the destination's count and checksum of one key range,
                      computed as the full copy's verification computes them; where they
                      differ (or a ``rowversion`` proves a change), the range is recopied in one
                      transaction: DELETE, COPY, its ``loaded`` marker and its ``synced`` one. In
                      PostgreSQL the deleted rows stay visible to readers until the commit, so
                      no reader sees the range empty;
* ``verify_table``:   the whole table verified against the source as after a full copy, its
                      sequences moved past its rows.

A table without a key range to cut on (cut by heap position, ``table.cut == "ctid"``) is one
unit: checked whole, recopied whole into one partition. Tables new in the source are copied
whole by the usual steps; tables gone from the source are reported and left alone.
"""
import logging
import time

from . import faults, snapshot
from .dialects.base import Slice
from .errors import ConfigError, VerificationError
from .load import endpoints, _finish
from .state import markers
from .verify import both_sides, judge, table_figures

log = logging.getLogger("luigi-interface.so_luigi")


def partition_item(n):
    return f"partition {n}"


# --- the generation -------------------------------------------------------------------------------

def begin(run_id, src, dst, source_ep, target_ep):
    """The generation this process syncs (starting one, or joining the unfinished one), with
    the source snapshot it reads at recorded for every process of the run."""
    with dst.session() as conn:
        cur = conn.cursor()
        markers.lock(cur, "sync", run_id)
        if not markers.check_run(cur, run_id, source_ep, target_ep) or not markers.is_replicated(cur, run_id):
            raise ConfigError(f"--sync brings a finished copy up to date, and run {run_id!r} has none in "
                              f"{target_ep}: run ReplicateAll without --sync first")
        current = markers.unfinished_sync(cur, run_id)
        held = None
        if src.exports_snapshots:
            if current and current[2] and src.can_import(current[2]):
                held = current[2]
            else:
                held, exported_at = snapshot.start_holder(run_id)
        if current is None:
            generation = markers.start_sync(cur, run_id, held)
            log.info("sync %d of run %r begins", generation, run_id)
        else:
            generation = current[0]
            if held != current[2]:
                markers.new_sync_pass(cur, run_id, generation, held)
                log.info("sync %d of run %r: its source snapshot is gone; every partition is checked again "
                         "at a new one", generation, run_id)
            else:
                log.info("sync %d of run %r resumes", generation, run_id)
        if held is None:
            words = src.consistency()
        elif current is not None and held == current[2]:      # the sync's own snapshot, still held
            words = markers.source_reading(conn, run_id)[1]
        else:
            words = f"consistent: the source as of snapshot {held} (exported {exported_at}, for sync {generation})"
        snapshot.record(conn, run_id, held, words)
    snapshot.keep_alive(run_id)
    return generation


def peek(run_id):
    """The generation a sync would run now, read only (a dry pass): the unfinished one, else the next."""
    with markers.shared_connection().cursor() as cur:
        if not markers.marker_table_exists(cur, "syncs"):
            return 1
        current = markers.unfinished_sync(cur, run_id)
        if current:
            return current[0]
        return markers.next_generation(cur, run_id)


def finish(conn, run_id, generation):
    with conn.cursor() as cur:
        markers.finish_sync(cur, run_id, generation)
    conn.commit()


# --- planning: rows past the old last key -----------------------------------------------------------

def plan(run_id, table_name, generation, chunk_rows):
    """Expected MB of each unit the table is checked in, splitting rows past its old last key
    into new partitions first (once per generation)."""
    src, dst = endpoints(run_id)
    with dst.session() as conn:
        cur = conn.cursor()
        markers.lock(cur, run_id, table_name)
        table, partitions = markers.planned_table(conn, run_id, table_name)
        if not markers.is_synced(cur, run_id, generation, table_name, "plan", any_pass=True):
            added = _split_tail(conn, cur, src, dst, run_id, table, partitions, chunk_rows) \
                if table.cut == "key" and table.int_key else 0
            markers.insert_synced(cur, run_id, generation, table_name, "plan", "split" if added else "kept",
                                  rows=added)
            conn.commit()
            if added:
                log.info("sync %d: %s has %d new partition(s) past its old last key", generation, table_name, added)
        weights = markers.partition_weights(conn, run_id, table_name)
        conn.rollback()
    return [sum(weights)] if table.cut == "ctid" else weights


def _split_tail(conn, cur, src, dst, run_id, table, partitions, chunk_rows):
    """The open last range cut again at the plan's step, as the source holds it now: rows past
    its old last key fill it up to a partition's worth, then make new partitions (a few new rows
    stay in it: no sync leaves a trail of tiny partitions). Returns how many were added."""
    last = partitions - 1
    lo, _, _ = markers.partition_range(conn, run_id, table.run_name, last)
    step = markers.partition_step(cur, run_id, table.run_name) if partitions > 1 else chunk_rows
    with src.session() as sconn:
        rows, cuts = src.tail(sconn, table, lo, step)
    cuts = [c for i, c in enumerate(cuts, start=1) if i * step < rows]
    if not cuts:
        return 0
    edges = cuts + [None]
    ranges = list(zip(edges[:-1], edges[1:]))
    sizes = [step] * (len(ranges) - 1) + [rows - step * len(ranges)]
    markers.split_last(cur, run_id, table.run_name, last, cuts[0], ranges, sizes)
    return len(ranges)


# --- every range of a table in one scan per side -------------------------------------------------------

SCAN = "scan"


def scan(run_id, table_name, generation):
    """(the partitions of the table still to check one by one (sync_partition), whether this
    pass's scan found them differing): every one not synced yet in this pass, less those one scan
    per side found the same. That scan counts
    and checksums every range at once on each server (figures_by_range, as the partitions' own
    comparison computes them) and, in one destination transaction, marks the ranges that agree
    "same" with their figures, which the table's verdict is then composed from (verify_table).
    Where a server cannot, or the source proves ranges by rowversion, nothing is scanned."""
    src, dst = endpoints(run_id)
    started = time.monotonic()
    with dst.session() as conn:
        cur = conn.cursor()
        table, partitions = markers.planned_table(conn, run_id, table_name)
        done = markers.synced_steps(cur, run_id, generation, table_name)
        ranges = markers.partition_ranges(conn, run_id, table_name)
        method = dst.checksum_method(src, table, conn)
        conn.rollback()
    units = 1 if table.cut == "ctid" else partitions
    left = [p for p in range(units) if partition_item(p) not in done]
    cuts = _cuts(ranges) if len(ranges) == partitions else None
    if SCAN in done or not left:
        return left, SCAN in done
    if cuts is None or not (src.scans_ranges(table, method) and dst.scans_ranges(table, method)) \
            or src.watermark(table) is not None:
        return left, False
    source, target = both_sides(lambda: src.figures_by_range(table, cuts, method),
                                lambda: dst.figures_by_range(table, cuts, method))
    same = {p for p in left if source.get(p, (0, 0)) == target.get(p, (0, 0))}
    with dst.session() as conn:
        cur = conn.cursor()
        markers.lock(cur, run_id, table_name, SCAN)
        done = markers.synced_steps(cur, run_id, generation, table_name)
        if SCAN not in done:
            for p in left:
                rows, checksum = source.get(p, (0, 0))
                if p in same and partition_item(p) not in done:
                    markers.mark_proven(cur, run_id, table_name, p, src.snapshot, None)
                    markers.insert_synced(cur, run_id, generation, table_name, partition_item(p), "same", "checksum",
                                          rows, checksum=checksum)
                elif p not in same and f"{SCAN} {p}" not in done:   # the source's figures: its recopy's due
                    markers.insert_synced(cur, run_id, generation, table_name, f"{SCAN} {p}", "differs", "checksum",
                                          rows, checksum=checksum)
            markers.insert_synced(cur, run_id, generation, table_name, SCAN, f"{len(same)} of {len(left)} same",
                                  "checksum", sum(n for n, _ in source.values()), seconds=time.monotonic() - started)
            conn.commit()
        done = markers.synced_steps(cur, run_id, generation, table_name)
        conn.rollback()
    log.info("sync %d: %s: %d of %d partition(s) the same in one scan per side", generation, table_name,
             len(same), len(left))
    return [p for p in range(units) if partition_item(p) not in done], True


def _cuts(ranges):
    """The upper bounds closing each range but the last, when the ranges are integer ones that
    tile the whole key (open at both ends, each starting where the one before ends); else None."""
    if not ranges or ranges[0][0] is not None or ranges[-1][1] is not None:
        return None
    cuts = [hi for _, hi in ranges[:-1]]
    if any(not isinstance(c, int) for c in cuts) or any(lo != hi for (_, hi), (lo, _) in zip(ranges, ranges[1:])):
        return None
    return cuts


def composed(src, dst, conn, run_id, table_name, generation, table):
    """((source count, checksum), (destination count, checksum)) of the table, composed from its
    ranges as this pass proved them equal on both sides (found the same by its scan, or recopied
    and checked against the scan's source figures before committing), any other range measured
    again on both servers now; None when the pass scanned nothing."""
    with conn.cursor() as cur:
        done = markers.synced_steps(cur, run_id, generation, table_name)
    conn.rollback()
    if SCAN not in done:
        return None
    method = dst.checksum_method(src, table, conn)
    ranges = markers.partition_ranges(conn, run_id, table_name)
    conn.rollback()
    source, target = [0, 0], [0, 0]
    for p, (lo, hi) in enumerate(ranges):
        outcome, rows, checksum = done.get(partition_item(p), (None, None, None))
        if outcome in ("same", "recopied") and checksum is not None:       # both sides, proven equal
            figures = ((rows, checksum), (rows, checksum))
        else:
            figures = both_sides(lambda: src.range_figures(table, lo, hi, method),
                                 lambda: dst.range_figures(table, lo, hi, method))
        for side, (n, total) in zip((source, target), figures):
            side[0] += n
            side[1] += total
    return tuple(source), tuple(target)


# --- one partition ------------------------------------------------------------------------------------

def sync_partition(run_id, table_name, partition, generation, buffer_mb, progress=None):
    """Compare one partition with the source and recopy it when it differs. Returns the
    outcome ("same" or "recopied"), or None when another process synced it meanwhile."""
    src, dst = endpoints(run_id)
    started = time.monotonic()
    buffer_bytes = int(buffer_mb * 1024 * 1024)
    table, partitions, lo, hi, method, stored = planned_range(src, dst, run_id, table_name, partition)
    whole = table.cut == "ctid"
    if whole:
        lo = hi = None
    watermark = src.watermark(table)                 # before any read of the range
    due = None
    if stored is not None and watermark is not None and not whole:
        rows, changed = src.changed_since(table, lo, hi, stored[1])
        proof, same = "rowversion", rows == stored[0] and changed == 0
    elif (due := scan_said(dst, run_id, generation, table_name, partition)) is not None:
        (rows, _), same, proof = due, False, "checksum"     # this pass's scan found the range differing
    else:
        rows, same = compare_range(src, dst, table, lo, hi, method, buffer_bytes)
        proof = "checksum"
    item = partition_item(partition)
    if same:
        with dst.session() as conn:
            cur = conn.cursor()
            if not _claim(conn, cur, run_id, generation, table_name, partition):
                return None
            if watermark is not None and not whole:
                markers.record_proof(cur, run_id, table_name, partition, rows, watermark)
            if not whole:
                markers.mark_proven(cur, run_id, table_name, partition, src.snapshot, None)
            markers.insert_synced(cur, run_id, generation, table_name, item, "same", proof, rows,
                                  seconds=time.monotonic() - started)
            conn.commit()
        return "same"
    if progress is not None:
        progress.expected = rows
    if src.snapshot is None:        # read live: the scan's figures may not be the source's now
        due = None
    return _recopy(src, dst, run_id, generation, table, partitions, partition, lo, hi, proof, buffer_bytes,
                   progress, started, method, due)


def scan_said(dst, run_id, generation, table_name, partition):
    """(rows, checksum) of the source's range as this pass's scan found it, differing from the
    destination's; None when the pass did not scan the table."""
    with dst.session() as conn:
        done = markers.synced_steps(conn.cursor(), run_id, generation, table_name)
        conn.rollback()
    found = done.get(f"{SCAN} {partition}")
    return None if SCAN not in done or found is None else (found[1], found[2])


def planned_range(src, dst, run_id, table_name, partition):
    """(table, its partition count, lo, hi, checksum method, stored rowversion proof) of a
    planned partition."""
    with dst.session() as conn:
        table, partitions = markers.planned_table(conn, run_id, table_name)
        lo, hi, _ = markers.partition_range(conn, run_id, table_name, partition)
        stored = markers.proof(conn.cursor(), run_id, table_name, partition)
        method = dst.checksum_method(src, table, conn)
        conn.rollback()
    return table, partitions, lo, hi, method, stored


def compare_range(src, dst, table, lo, hi, method, buffer_bytes):
    """(the source's rows in the range, whether its count and checksum equal the destination's),
    both sides computed at once, as the full copy's verification computes them."""
    (rows, src_sum), (dst_rows, dst_sum) = both_sides(
        lambda: dst.source_figures(src, table, lo, hi, method, buffer_bytes),
        lambda: dst.range_figures(table, lo, hi, method))
    return rows, (rows, src_sum) == (dst_rows, dst_sum)


def _claim(conn, cur, run_id, generation, table_name, partition):
    """The partition's lock in ``conn``'s transaction; False (rolled back) when another process
    synced it meanwhile."""
    markers.lock(cur, run_id, table_name, partition)
    if markers.is_synced(cur, run_id, generation, table_name, partition_item(partition)):
        conn.rollback()
        return False
    return True


def _recopy(src, dst, run_id, generation, table, partitions, partition, lo, hi, proof, buffer_bytes, progress,
            started, method=None, due=None):
    """The range recopied (``recopy``) under the sync's claim, with its proof and synced markers.
    ``due``: the source's (rows, checksum) of the range as the pass's scan found it at the sync's
    snapshot; the recopied range must hold the same before it commits, and the figures are kept
    for the table's verdict (composed)."""
    def record(cur, written, changes):
        if watermark is not None:
            markers.record_proof(cur, run_id, table.run_name, partition, written.rows, watermark)
        if due is not None and dst.range_figures(table, lo, hi, method, cur) != due:
            raise VerificationError(f"{table.run_name} partition {partition}: the recopied range does not hold the "
                                    f"rows the sync's scan found in the source ({due[0]} rows, checksum {due[1]}): "
                                    "rerun the same command")
        markers.insert_synced(cur, run_id, generation, table.run_name, partition_item(partition), "recopied", proof,
                              written.rows, changes, time.monotonic() - started,
                              checksum=None if due is None else due[1])
    watermark = None if table.cut == "ctid" else src.watermark(table)
    done = recopy(src, dst, run_id, table, partitions, partition, lo, hi, buffer_bytes, progress, started,
                  lambda conn, cur: _claim(conn, cur, run_id, generation, table.run_name, partition), record)
    return None if done is None else "recopied"


def recopy(src, dst, run_id, table, partitions, partition, lo, hi, buffer_bytes, progress, started, claim, record,
           proven=None):
    """One transaction: the range's stored rows noted and deleted, the source's copied in, the
    changes counted, the partition's loaded marker replaced (read at the source's snapshot;
    ``proven``: what a proof at it found) and the caller's markers added (``record(cur, written,
    changes)``). ``claim(conn, cur)`` takes the partition's lock: False (rolled back) when another
    process did it meanwhile; then None, else (rows, (inserted, updated, deleted))."""
    whole = table.cut == "ctid"
    with dst.session() as conn:
        cur = conn.cursor()
        dst.release_foreign_keys(cur, table)       # its own transaction: the key steps add them back
        conn.commit()
    with dst.session() as conn:
        cur = conn.cursor()
        if not claim(conn, cur):
            return None
        dst.note_before(cur, table, lo, hi)
        awake = dst.quiet_triggers(cur, table)     # the copy's triggers and rules never see its rows
        dst.clear_range(cur, table, lo, hi)
        part = Slice(run_id, table, partitions, partition, lo, hi, progress=progress, replace=True,
                     size=markers.planned_size(cur, run_id, table.run_name))
        written = dst.write(conn, cur, part, src, "streaming", buffer_bytes, True)
        for statement in awake:
            cur.execute(statement)
        if written.source_rows != written.rows:
            raise VerificationError(f"{table.run_name} partition {partition}: read {written.source_rows} rows from the "
                                    f"source but the destination stored {written.rows}")
        changes = dst.changes(cur, table, lo, hi)
        if whole:
            markers.collapse_partitions(cur, run_id, table.run_name, written.rows)
        markers.replace_loaded(cur, run_id, table.run_name, 0 if whole else partition, written.rows, written.bytes,
                               time.monotonic() - started, written.checksum, written.via, written.changed,
                               src.snapshot, proven)
        record(cur, written, changes)
        faults.pause("sync-commit")
        conn.commit()
    inserted, updated, deleted = changes
    log.info("%s partition %d recopied (it differed from the source): %d rows; %d inserted, %d updated, %d deleted",
             table.run_name, partition, written.rows, inserted, updated, deleted)
    return written.rows, changes


# --- the table ------------------------------------------------------------------------------------------

def judged(src, dst, conn, run_id, table_name, verify, generation=None):
    """(table, bytes loaded, verify.judge's finding) of a loaded table, measured on both servers;
    for a sync's ``generation`` that scanned the table, composed from that scan (composed)."""
    with conn.cursor() as cur:
        table, partitions = markers.planned_table(conn, run_id, table_name)
        loaded, rows, nbytes, streamed_sum = markers.loaded_totals(cur, run_id, table_name)
    conn.rollback()
    figures = None if generation is None else composed(src, dst, conn, run_id, table_name, generation, table)
    if figures is None:
        figures = table_figures(src, dst, conn, verify)(table)
    return table, nbytes, judge(verify, partitions, loaded, rows, streamed_sum, *figures)


def verify_table(run_id, table_name, generation, verify="full"):
    """Every partition synced: the table verified against the source as after a full copy,
    its sequences moved past its rows, and its figures and the sync's table marker committed.
    A disagreement (the source changed during a sync that reads it live, or someone wrote into
    the destination) sends the table's partitions back to be checked at the next run."""
    src, dst = endpoints(run_id)
    started = time.monotonic()
    with dst.session() as conn:
        cur = conn.cursor()
        table, nbytes, found = judged(src, dst, conn, run_id, table_name, verify, generation)
        problem = found.problem
        if problem:
            markers.forget_synced_partitions(cur, run_id, generation, table_name)
            conn.commit()
            raise VerificationError(
                f"{table_name} after sync {generation}: {problem}; the source changed while it was read live, or "
                "the destination was written to: rerun the same command, which checks its partitions again")
        dst_count, src_sum, dst_sum, verdict = found.rows, found.source_checksum, found.target_checksum, found.verdict
        steps = dst.sequence_steps(table, src.sequence_positions(table))
        markers.lock(cur, run_id, table_name)
        if markers.is_synced(cur, run_id, generation, table_name, "table"):
            conn.rollback()
            return None
        _finish(cur, steps, pause=False)
        markers.update_figures(cur, run_id, table_name, dst_count, nbytes, src_sum, dst_sum, verdict, src.snapshot)
        markers.insert_synced(cur, run_id, generation, table_name, "table", verdict, rows=dst_count,
                              seconds=time.monotonic() - started)
        conn.commit()
    log.info("sync %d: %s verified: %d rows, %s", generation, table_name, dst_count, verdict)
    return verdict


def foreign_key(run_id, table_name, name, references, generation):
    """The key back in place and validated after both its tables are synced (a recopy drops it)."""
    from .load import add_foreign_key
    add_foreign_key(run_id, table_name, name, references)
    _, dst = endpoints(run_id)
    with dst.session() as conn:
        cur = conn.cursor()
        markers.lock(cur, run_id, table_name, "foreign key", name)
        if not markers.is_synced(cur, run_id, generation, table_name, f"foreign key {name}"):
            markers.insert_synced(cur, run_id, generation, table_name, f"foreign key {name}", "in place")
        conn.commit()


# --- the report --------------------------------------------------------------------------------------------

def render(conn, run_id, generation, names, copied, gone, source_ep=None, target_ep=None):
    """The sync's summary: per table, partitions checked and recopied, rows inserted, updated and
    deleted, the proof used, seconds; tables copied whole and tables gone from the source."""
    figures = markers.sync_figures(conn, run_id, generation)
    head = f"so_luigi run {run_id!r}, sync {generation}"
    if source_ep and target_ep:
        head += f": {source_ep} -> {target_ep}"
    lines = [head, f"{'table':<20} {'checked':>8} {'recopied':>8} {'inserted':>10} {'updated':>10} {'deleted':>10} "
                   f"{'seconds':>8}  proof; verification"]
    recopied = changed = 0
    for name in names:
        if name in copied:
            continue
        t = figures.get(name)
        if t is None:
            lines.append(f"{name:<20} not synced")
            continue
        proofs = "+".join(sorted(p for p in t["proofs"] if p)) or "-"
        split = f"; {t['split']} new partition(s) past the old last key" if t["split"] else ""
        lines.append(f"{name:<20} {t['checked']:>8,} {t['recopied']:>8,} {t['inserted']:>10,} {t['updated']:>10,} "
                     f"{t['deleted']:>10,} {t['seconds']:>8.1f}  {proofs}; {t['verdict'] or 'not verified'}{split}")
        recopied += t["recopied"]
        changed += t["inserted"] + t["updated"] + t["deleted"]
    for name in copied:
        lines.append(f"{name:<20} new in the source: copied whole (see `so-luigi report --run-id {run_id}`)")
    if gone:
        lines.append(f"gone from the source, left in the destination: {', '.join(gone)}")
    if recopied == 0 and not copied:
        lines.append("nothing to do: every partition already equals the source")
    else:
        lines.append(f"{recopied} partition(s) recopied, {changed:,} row(s) changed")
    said = markers.source_reading(conn, run_id)[1]
    if said:
        lines.append(f"source: {said}")
    return "\n".join(lines)
